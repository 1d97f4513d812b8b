// SPDX-License-Identifier: MIT
/*
 * test/test_wait.c - blocking calls and wake-ups across threads: sleepers
 * are woken by data, space, FIN and RST; timeouts expire; armed readiness
 * turns the notifier fd readable (the epoll path, EPOLLOUT after a full ring
 * included); no signals are sent while nobody sleeps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pair.h"

#define DW CN_MSG_DONTWAIT

static int setup(void **state)
{
	return pair_setup(state, CN_MODE_STREAM, 4096, true);
}

#define teardown pair_teardown

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static bool fd_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, timeout_ms) == 1;
}

struct job {
	struct pair *p;
	int what;
	ssize_t result;
	char buf[8192];
};

enum {
	SEND_LATE,
	CONSUME_LATE,
	FIN_LATE,
	RST_LATE,
	SEND_PIECES,
	RECV_ALL,
	LOCAL_SHUT_RD,
	LOCAL_RESET
};

static void *worker(void *arg)
{
	struct job *j = arg;
	struct pair *p = j->p;
	char b[4096];
	int i;

	msleep(50);
	switch (j->what) {
	case SEND_LATE:
		j->result = cn_send(&p->a, "wake", 4, DW);
		break;
	case CONSUME_LATE:
		j->result = cn_recv(&p->b, b, sizeof(b), DW);
		break;
	case FIN_LATE:
		j->result = cn_shutdown(&p->a, SHUT_WR);
		break;
	case RST_LATE:
		cn_reset(&p->a);
		j->result = 0;
		break;
	case SEND_PIECES:
		for (i = 0; i < 4; i++) {
			cn_send(&p->a, "ab", 2, DW);
			msleep(10);
		}
		j->result = 0;
		break;
	case RECV_ALL:
		j->result = cn_recv(&p->b, j->buf, 8000, CN_MSG_WAITALL);
		break;
	case LOCAL_SHUT_RD:
		j->result = cn_shutdown(&p->b, SHUT_RDWR);
		break;
	case LOCAL_RESET:
		cn_reset(&p->a);
		j->result = 0;
		break;
	}
	return NULL;
}

static void run_with(struct pair *p, int what, pthread_t *t, struct job *j)
{
	j->p = p;
	j->what = what;
	assert_int_equal(pthread_create(t, NULL, worker, j), 0);
}

static void test_recv_woken_by_data(void **state)
{
	struct pair *p = *state;
	struct job j;
	pthread_t t;
	char buf[8];

	run_with(p, SEND_LATE, &t, &j);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), 0), 4);
	pthread_join(t, NULL);
	assert_true(p->b.stats.rx_sleeps >= 1);
	assert_true(p->a.stats.tx_wakeups >= 1);
}

static void test_send_woken_by_space(void **state)
{
	struct pair *p = *state;
	static char big[6000];
	struct job j;
	pthread_t t;

	run_with(p, CONSUME_LATE, &t, &j);
	/* Blocking send writes everything: 4096 now, the rest after the consume. */
	assert_int_equal(cn_send(&p->a, big, sizeof(big), 0), 6000);
	pthread_join(t, NULL);
	assert_int_equal(j.result, 4096);
}

static void test_recv_woken_by_fin_and_rst(void **state)
{
	struct pair *p = *state;
	struct job j;
	pthread_t t;
	char buf[8];

	run_with(p, FIN_LATE, &t, &j);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), 0), 0);
	pthread_join(t, NULL);

	{
		static char fill[4096];

		assert_int_equal(cn_send(&p->b, fill, 4096, 0), 4096); /* fill b -> a */
	}
	run_with(p, RST_LATE, &t, &j);
	assert_int_equal(cn_send(&p->b, buf, 1, 0), -ECONNRESET);
	pthread_join(t, NULL);
}

/* Another thread's shutdown or reset wakes our own blocked calls, as on Linux. */
static void test_local_shutdown_wakes_own_sleepers(void **state)
{
	struct pair *p = *state;
	static char big[8192];
	struct job j;
	pthread_t t;
	char buf[8];

	cn_ep_set_timeouts(&p->b, 5000, 5000); /* without the wake: -EAGAIN, not a hang */
	run_with(p, LOCAL_SHUT_RD, &t, &j);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), 0), 0);
	pthread_join(t, NULL);

	cn_ep_set_timeouts(&p->a, 5000, 5000);
	assert_int_equal(cn_send(&p->a, big, 4096, DW), 4096);
	run_with(p, LOCAL_RESET, &t, &j);
	/* a is blocked writing into a full ring when another thread resets a. */
	assert_int_equal(cn_send(&p->a, big, 1, 0), -EPIPE);
	pthread_join(t, NULL);
}

static void test_waitall(void **state)
{
	struct pair *p = *state;
	struct job j;
	pthread_t t;
	char buf[16];

	run_with(p, SEND_PIECES, &t, &j);
	assert_int_equal(cn_recv(&p->b, buf, 8, CN_MSG_WAITALL), 8);
	assert_memory_equal(buf, "abababab", 8);
	pthread_join(t, NULL);
}

static void test_waitall_larger_than_ring(void **state)
{
	struct pair *p = *state;
	static char big[8000];
	struct job j;
	pthread_t t;
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)pat(i);
	run_with(p, RECV_ALL, &t, &j);
	assert_int_equal(cn_send(&p->a, big, sizeof(big), 0), 8000);
	pthread_join(t, NULL);
	assert_int_equal(j.result, 8000);
	assert_memory_equal(j.buf, big, 8000);
}

static void test_timeout(void **state)
{
	struct pair *p = *state;
	struct timespec t0, t1;
	static char big[8192];
	long ms;

	cn_ep_set_timeouts(&p->b, 80, 80);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(cn_recv(&p->b, big, 8, 0), -EAGAIN);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 79);
	/* A send that times out after a partial write returns the partial count. */
	assert_int_equal(cn_send(&p->b, big, sizeof(big), 0), 4096);
	assert_int_equal(cn_send(&p->b, big, sizeof(big), 0), -EAGAIN);
	/* The flag was withdrawn: the producer has no reason to signal. */
	assert_int_equal(atomic_load(&pair_ctrl(p, CN_RING_B)->writer_want), 0);
}

/* recv(MSG_WAITALL) that times out returns what arrived while it waited. */
static void test_waitall_timeout_returns_partial(void **state)
{
	struct pair *p = *state;
	struct job j;
	pthread_t t;
	char buf[64];

	cn_ep_set_timeouts(&p->b, 300, 300);
	run_with(p, SEND_LATE, &t, &j); /* 4 bytes, 50 ms from now */
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), CN_MSG_WAITALL), 4);
	pthread_join(t, NULL);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), CN_MSG_WAITALL), -EAGAIN);
}

static void test_poll_arm_in(void **state)
{
	struct pair *p = *state;

	assert_int_equal(cn_poll_arm(&p->b, CN_POLLIN) & CN_POLLIN, 0);
	assert_false(fd_readable(p->n[2].fd, 0));
	assert_int_equal(cn_send(&p->a, "x", 1, DW), 1);
	assert_true(fd_readable(p->n[2].fd, 1000));
	assert_true(cn_poll(&p->b) & CN_POLLIN);
}

static void test_pollout_after_full_ring(void **state)
{
	struct pair *p = *state;
	static char big[4096];

	assert_int_equal(cn_send(&p->a, big, 4096, DW), 4096);
	assert_int_equal(cn_poll_arm(&p->a, CN_POLLOUT) & CN_POLLOUT, 0);
	/* Consuming less than the low-water mark does not wake the writer. */
	assert_int_equal(cn_recv(&p->b, big, 100, DW), 100);
	assert_false(fd_readable(p->n[1].fd, 0));
	assert_int_equal(cn_recv(&p->b, big, 1000, DW), 1000);
	assert_true(fd_readable(p->n[1].fd, 1000));
	assert_true(cn_poll(&p->a) & CN_POLLOUT);
}

static void test_no_signals_without_sleepers(void **state)
{
	struct pair *p = *state;
	char buf[64];
	int i;

	for (i = 0; i < 10000; i++) {
		assert_int_equal(cn_send(&p->a, buf, 64, DW), 64);
		assert_int_equal(cn_recv(&p->b, buf, 64, DW), 64);
	}
	assert_int_equal(p->a.stats.tx_wakeups + p->a.stats.rx_wakeups, 0);
	assert_int_equal(p->b.stats.tx_wakeups + p->b.stats.rx_wakeups, 0);
	assert_false(fd_readable(p->n[0].fd, 0));
	assert_false(fd_readable(p->n[2].fd, 0));
}

static void test_spin_avoids_sleep(void **state)
{
	struct pair *p = *state;
	struct job j;
	pthread_t t;
	char buf[8];

	cn_ep_set_spin(&p->b, 500 * 1000 * 1000); /* longer than the sender's delay */
	run_with(p, SEND_LATE, &t, &j);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), 0), 4);
	pthread_join(t, NULL);
	assert_int_equal(p->b.stats.rx_sleeps, 0);
}

/* A reader and a writer of one endpoint blocked at once must both wake. */
struct duo {
	struct pair *p;
	ssize_t r;
};

static void *blocked_reader(void *arg)
{
	struct duo *d = arg;
	char buf[8];

	d->r = cn_recv(&d->p->a, buf, sizeof(buf), 0);
	return NULL;
}

static void test_reader_and_writer_both_blocked(void **state)
{
	struct pair *p = *state;
	static char big[8192];
	struct duo d = { p, 0 };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, blocked_reader, &d), 0);
	assert_int_equal(cn_send(&p->a, big, 4096, DW), 4096);
	msleep(20);
	/* Main thread blocks writing on a; b frees space, then answers. */
	{
		struct job j;
		pthread_t u;

		run_with(p, CONSUME_LATE, &u, &j);
		assert_int_equal(cn_send(&p->a, big, 100, 0), 100);
		pthread_join(u, NULL);
	}
	assert_int_equal(cn_send(&p->b, "hi", 2, DW), 2);
	pthread_join(t, NULL);
	assert_int_equal(d.r, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_recv_woken_by_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_woken_by_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recv_woken_by_fin_and_rst, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_shutdown_wakes_own_sleepers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_waitall, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waitall_larger_than_ring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waitall_timeout_returns_partial, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_poll_arm_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pollout_after_full_ring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_signals_without_sleepers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spin_avoids_sleep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_and_writer_both_blocked, setup,
						teardown),
	};

	return cmocka_run_group_tests_name("wait", tests, NULL, NULL);
}
