// SPDX-License-Identifier: MIT
/*
 * test/test_local.c - the local transport: sealed memfds, fd passing with
 * SCM_RIGHTS, a circuit between two processes, and refusal of fds that
 * could hurt us (unsealed memfds, non-memfds, too many fds).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <circnet/local.h>

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_memfd_is_sealed(void **state)
{
	struct cn_region r = { 0 };

	(void)state;
	assert_int_equal(cn_memfd_region_create(&r, 10000, "t"), 0);
	assert_int_equal(r.size, 12288);
	assert_int_equal(ftruncate(r.fd, 4096), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(r.fd, 1 << 20), -1);
	assert_int_equal(fcntl(r.fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	cn_region_release(&r);
	assert_int_equal(cn_memfd_region_create(&r, 0, "t"), -EINVAL);
}

static void test_map_refuses_unsafe_fds(void **state)
{
	struct cn_region r = { 0 };
	int fd, pipefd[2];

	(void)state;
	fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8192), 0);
	assert_int_equal(cn_memfd_region_map(&r, fd), -EPERM);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	assert_int_equal(cn_memfd_region_map(&r, fd), -EPERM); /* F_SEAL_SEAL missing */
	close(fd);
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(cn_memfd_region_map(&r, pipefd[0]), -EINVAL);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void test_fd_passing_limits(void **state)
{
	int sv[2], fds[16], got[16], n, i, before;
	char c = 'x';

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	for (i = 0; i < 6; i++)
		fds[i] = dup(0);
	before = count_fds();
	assert_int_equal(cn_send_fds(sv[0], fds, 6, &c, 1), 0);
	/* The receiver expected at most 5: all six are closed, nothing leaks. */
	assert_int_equal(cn_recv_fds(sv[1], got, 5, &n, &c, 1), -EMSGSIZE);
	assert_int_equal(n, 0);
	assert_int_equal(count_fds(), before);
	assert_int_equal(cn_send_fds(sv[0], fds, 6, &c, 1), 0);
	assert_int_equal(cn_recv_fds(sv[1], got, 6, &n, &c, 1), 1);
	assert_int_equal(n, 6);
	for (i = 0; i < 6; i++) {
		assert_true(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
		close(got[i]);
		close(fds[i]);
	}
	close(sv[0]);
	close(sv[1]);
}

/* The operator's job in miniature: create, hand each side its bundle. */
static void two_processes(enum cn_notify_kind kind)
{
	struct cn_circuit_params prm = { .mode = CN_MODE_STREAM, .ring_size = { 8192, 8192 } };
	struct cn_local_fds all;
	struct cn_local_ep me;
	int sv[2], mine[CN_LOCAL_NFDS], theirs[CN_LOCAL_NFDS], n, status;
	unsigned char buf[100000];
	char tag = 'c';
	size_t i, got = 0;
	pid_t pid;
	ssize_t r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(cn_local_create_kind(&prm, kind, &all), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cn_local_ep child;

		close(sv[0]);
		cn_local_fds_close(&all); /* the child only uses what it receives */
		if (cn_recv_fds(sv[1], theirs, CN_LOCAL_NFDS, &n, &tag, 1) != 1 ||
		    n != (kind == CN_NOTIFY_SOCKET ? CN_LOCAL_NFDS_SOCK : CN_LOCAL_NFDS) ||
		    cn_local_open(&child, theirs, n, CN_ROLE_ACCEPTOR))
			_exit(2);
		for (i = 0; i < sizeof(buf); i++)
			buf[i] = (unsigned char)(i * 7);
		if (cn_send(&child.ep, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			_exit(3);
		cn_local_close(&child);
		_exit(0);
	}
	close(sv[1]);
	n = cn_local_select(&all, CN_ROLE_ACCEPTOR, theirs);
	assert_int_equal(cn_send_fds(sv[0], theirs, n, &tag, 1), 0);
	n = cn_local_select(&all, CN_ROLE_INITIATOR, mine);
	for (i = 0; i < (size_t)n; i++)
		mine[i] = fcntl(mine[i], F_DUPFD_CLOEXEC, 0);
	cn_local_fds_close(&all);
	assert_int_equal(cn_local_open(&me, mine, n, CN_ROLE_INITIATOR), 0);
	while ((r = cn_recv(&me.ep, buf + got, sizeof(buf) - got, 0)) > 0)
		got += (size_t)r;
	assert_int_equal(r, 0); /* orderly EOF after the child's close */
	assert_int_equal(got, sizeof(buf));
	for (i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], (unsigned char)(i * 7));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	cn_local_close(&me);
	close(sv[0]);
}

static void test_two_processes_socket_notifiers(void **state)
{
	(void)state;
	two_processes(CN_NOTIFY_SOCKET);
}

static void test_two_processes_eventfd_notifiers(void **state)
{
	(void)state;
	two_processes(CN_NOTIFY_EVENTFD);
}

/*
 * A child takes the acceptor end, sends `send_bytes`, then waits to be
 * killed. Returns its pid; *me is the parent's initiator end.
 */
static pid_t child_then_kill(struct cn_local_ep *me, size_t send_bytes)
{
	struct cn_circuit_params prm = { .mode = CN_MODE_STREAM, .ring_size = { 8192, 8192 } };
	struct cn_local_fds all;
	int fds[CN_LOCAL_NFDS], i, n;
	static char buf[8192];
	pid_t pid;

	assert_int_equal(cn_local_create(&prm, &all), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cn_local_ep child;

		/* Never outlive a failed test: die with the parent, or after 30 s. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(30);
		n = cn_local_select(&all, CN_ROLE_ACCEPTOR, fds);
		for (i = 0; i < n; i++)
			fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		cn_local_fds_close(&all);
		if (cn_local_open(&child, fds, n, CN_ROLE_ACCEPTOR) ||
		    (send_bytes && cn_send(&child.ep, buf, send_bytes, 0) != (ssize_t)send_bytes))
			_exit(2);
		for (;;)
			pause(); /* killed here, without any close */
	}
	n = cn_local_select(&all, CN_ROLE_INITIATOR, fds);
	for (i = 0; i < n; i++)
		fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
	cn_local_fds_close(&all);
	assert_int_equal(cn_local_open(me, fds, n, CN_ROLE_INITIATOR), 0);
	/* Without peer-death detection these calls would sleep: fail instead. */
	cn_ep_set_timeouts(&me->ep, 5000, 5000);
	return pid;
}

static void test_killed_peer_reads_as_eof(void **state)
{
	struct cn_local_ep me;
	char buf[8192];
	pid_t pid;

	(void)state;
	pid = child_then_kill(&me, 3000);
	assert_int_equal(cn_recv(&me.ep, buf, 3000, CN_MSG_WAITALL), 3000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* Everything it sent was read; a dead peer with nothing unread is an EOF. */
	assert_int_equal(cn_recv(&me.ep, buf, sizeof(buf), 0), 0);
	assert_int_equal(cn_send(&me.ep, buf, 1, 0), -EPIPE);
	/* as a FIN reads with TCP: readable, read side hung up; all hung up once we shut down */
	assert_int_equal(cn_poll(&me.ep) & (CN_POLLIN | CN_POLLRDHUP | CN_POLLHUP),
			 CN_POLLIN | CN_POLLRDHUP);
	assert_int_equal(cn_shutdown(&me.ep, SHUT_WR), 0);
	assert_true(cn_poll(&me.ep) & CN_POLLHUP);
	cn_local_close(&me);
}

static void test_killed_peer_with_unread_data_resets(void **state)
{
	struct cn_local_ep me;
	static char buf[8192];
	pid_t pid;

	(void)state;
	pid = child_then_kill(&me, 0);
	assert_int_equal(cn_send(&me.ep, buf, 8192, CN_MSG_DONTWAIT), 8192); /* never read */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(cn_send(&me.ep, buf, 1, 0), -ECONNRESET);
	assert_int_equal(cn_send(&me.ep, buf, 1, 0), -EPIPE);
	cn_local_close(&me);
}

static void test_notifier_fd_types(void **state)
{
	struct cn_circuit_params prm = { .mode = CN_MODE_STREAM };
	struct cn_notifier n = { 0 };
	struct cn_local_fds all;
	struct cn_local_ep l;
	int pfd[2], dg[2], fds[CN_LOCAL_NFDS], i;

	(void)state;
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg), 0);
	assert_int_equal(cn_socket_notifier_init(&n, pfd[0]), -EINVAL);
	assert_int_equal(cn_socket_notifier_init(&n, dg[0]), -EINVAL); /* no hang-up reporting */
	assert_int_equal(cn_eventfd_notifier_init(&n, pfd[0]), -EINVAL);
	/* A bundle with a pipe where a notifier belongs: refused, fds left to us. */
	assert_int_equal(cn_local_create_kind(&prm, CN_NOTIFY_EVENTFD, &all), 0);
	assert_int_equal(cn_local_select(&all, CN_ROLE_INITIATOR, fds), CN_LOCAL_NFDS);
	fds[3] = pfd[1];
	assert_int_equal(cn_local_open(&l, fds, CN_LOCAL_NFDS, CN_ROLE_INITIATOR), -EINVAL);
	for (i = 0; i < CN_LOCAL_NFDS; i++)
		assert_true(fcntl(fds[i], F_GETFD) >= 0);
	cn_local_fds_close(&all);
	/* The same for a socket bundle: both notifiers must be seqpacket ends. */
	assert_int_equal(cn_local_create(&prm, &all), 0);
	assert_int_equal(cn_local_select(&all, CN_ROLE_INITIATOR, fds), CN_LOCAL_NFDS_SOCK);
	fds[2] = dg[0];
	assert_int_equal(cn_local_open(&l, fds, CN_LOCAL_NFDS_SOCK, CN_ROLE_INITIATOR), -EINVAL);
	fds[2] = fds[1]; /* one pair for both doorbells would mix wake-ups */
	assert_int_equal(cn_local_open(&l, fds, CN_LOCAL_NFDS_SOCK, CN_ROLE_INITIATOR), -EINVAL);
	assert_int_equal(cn_local_open(&l, fds, 4, CN_ROLE_INITIATOR), -EINVAL);
	for (i = 0; i < CN_LOCAL_NFDS_SOCK; i++)
		assert_true(fcntl(fds[i], F_GETFD) >= 0);
	cn_local_fds_close(&all);
	close(pfd[0]);
	close(pfd[1]);
	close(dg[0]);
	close(dg[1]);
}

/*
 * Socket bundles share each pair between both sides: we sleep on the end we
 * also signal with. A peer that closes with wake-ups of ours unread at its
 * end leaves ECONNRESET pending on our end, and the kernel reports it before
 * any queued message. That is a hang-up, not an error: wait() must say
 * -EPIPE (peer gone), and the data the peer left must still be read.
 */
static void test_peer_closing_with_unread_wakeups(void **state)
{
	struct cn_circuit_params prm = { .mode = CN_MODE_STREAM, .ring_size = { 8192, 8192 } };
	struct cn_local_fds all;
	struct cn_local_ep a, b;
	int fds[CN_LOCAL_NFDS], i, n;
	char buf[8];

	(void)state;
	assert_int_equal(cn_local_create(&prm, &all), 0);
	n = cn_local_select(&all, CN_ROLE_INITIATOR, fds);
	for (i = 0; i < n; i++)
		fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
	assert_int_equal(cn_local_open(&a, fds, n, CN_ROLE_INITIATOR), 0);
	n = cn_local_select(&all, CN_ROLE_ACCEPTOR, fds);
	for (i = 0; i < n; i++)
		fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
	assert_int_equal(cn_local_open(&b, fds, n, CN_ROLE_ACCEPTOR), 0);
	cn_local_fds_close(&all);
	/* a wake-up of ours that b never consumes, b's answer and its wake-up for us */
	assert_int_equal(send(a.notif[0].fd, "w", 1, MSG_DONTWAIT), 1);
	assert_int_equal(cn_send(&b.ep, "y", 1, 0), 1);
	assert_int_equal(cn_notifier_signal(&b.notif[0]), 0);
	cn_local_close(&b);
	assert_int_equal(cn_notifier_wait(&a.notif[0], 1000), -EPIPE);
	assert_int_equal(cn_recv(&a.ep, buf, sizeof(buf), 0), 1);
	assert_int_equal(buf[0], 'y');
	assert_int_equal(cn_recv(&a.ep, buf, sizeof(buf), 0), 0);
	cn_local_close(&a);
}

static int open_fds(void)
{
	int fd, n = 0;

	for (fd = 0; fd < 4096; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

struct kick_arg {
	struct cn_notifier *n;
	int rc;
};

static void *sleep_on(void *p)
{
	struct kick_arg *a = p;

	a->rc = cn_notifier_wait(a->n, 10000);
	return NULL;
}

static int hooked[2];

static void count_private_fd(int fd, bool on)
{
	(void)fd;
	hooked[on]++;
}

/*
 * Kick eventfds are per thread, not per notifier (event loops never sleep
 * in wait): a socket notifier costs its one fd, a kick that finds no
 * sleeper still ends the next wait, a kick while a thread sleeps wakes it,
 * an exited thread's eventfd serves the next thread, and a forked child
 * makes its own instead of sharing the parent's.
 */
static void test_kick_per_thread(void **state)
{
	struct cn_notifier sleeper, waker;
	struct kick_arg arg = { .rc = 1 };
	int fds[2], before, made, status, i;
	pid_t pid;
	pthread_t t;

	(void)state;
	hooked[0] = hooked[1] = 0;
	cn_private_fd_hook = count_private_fd;
	assert_int_equal(cn_kick_prepare(), 0); /* this thread's, once */
	made = hooked[1];
	assert_int_equal(cn_socket_notifier_pair(fds), 0);
	before = open_fds();
	assert_int_equal(cn_socket_notifier_init(&sleeper, fds[0]), 0);
	assert_int_equal(cn_socket_notifier_init_flags(&waker, fds[1], CN_NOTIFIER_SIGNAL_ONLY), 0);
	assert_int_equal(open_fds(), before);

	/* a kick with nobody asleep: the next wait returns at once, then sleeps again */
	assert_int_equal(cn_notifier_kick(&sleeper), 0);
	assert_int_equal(cn_notifier_wait(&sleeper, 5000), 0);
	assert_int_equal(cn_notifier_wait(&sleeper, 20), -ETIMEDOUT);
	assert_int_equal(open_fds(), before);
	assert_int_equal(hooked[1], made);

	/*
	 * A kick while another thread sleeps wakes it; that thread brings its
	 * own eventfd. The next thread gets the exited one's: nothing new is made.
	 */
	arg.n = &sleeper;
	for (i = 0; i < 2; i++) {
		arg.rc = 1;
		assert_int_equal(pthread_create(&t, NULL, sleep_on, &arg), 0);
		usleep(50000);
		assert_int_equal(cn_notifier_kick(&sleeper), 0);
		assert_int_equal(pthread_join(t, NULL), 0);
		assert_int_equal(arg.rc, 0);
		assert_int_equal(hooked[1], made + 1);
	}
	assert_int_equal(open_fds(), before + 1);

	/* a forked child drops the parent's eventfds and makes its own */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int n = open_fds();

		if (n != before - 1 || cn_kick_prepare() || open_fds() != n + 1)
			_exit(1);
		_exit(cn_notifier_kick(&sleeper) || cn_notifier_wait(&sleeper, 5000) ? 2 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	cn_notifier_release(&sleeper);
	cn_notifier_release(&waker);
	assert_int_equal(open_fds(), before - 2 + 1);
	assert_int_equal(hooked[0], 0);
	cn_private_fd_hook = NULL;
}

/*
 * Plain-I/O mode (seccomp sandboxes allowing only read/write): wake-ups
 * still arrive, a drain never blocks even on a blocking file, and a gone
 * peer costs no SIGPIPE (the default action would end this test). Runs
 * last: the mode is process-wide and one way.
 */
static void test_plain_io_notifier(void **state)
{
	struct cn_notifier sleeper, waker;
	int fds[2];

	(void)state;
	cn_socket_notifier_plain_io();
	assert_int_equal(cn_socket_notifier_pair(fds), 0);
	assert_int_equal(cn_socket_notifier_init(&sleeper, fds[0]), 0);
	assert_int_equal(cn_socket_notifier_init_flags(&waker, fds[1], CN_NOTIFIER_SIGNAL_ONLY), 0);
	/* blocking files, as an application's fcntl can leave them */
	assert_int_equal(fcntl(fds[0], F_SETFL, 0), 0);
	assert_int_equal(fcntl(fds[1], F_SETFL, 0), 0);
	assert_int_equal(cn_notifier_wait(&sleeper, 0), -ETIMEDOUT);
	assert_int_equal(cn_notifier_signal(&waker), 0);
	assert_int_equal(cn_notifier_wait(&sleeper, 1000), 0);
	cn_notifier_drain(&sleeper); /* nothing queued: must return */
	for (int i = 0; i < 1000; i++) /* past the queue limit: never blocks */
		assert_int_equal(cn_notifier_signal(&waker), 0);
	cn_notifier_drain(&sleeper);
	cn_notifier_release(&sleeper);
	assert_int_equal(cn_notifier_signal(&waker), 0); /* no SIGPIPE */
	cn_notifier_release(&waker);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memfd_is_sealed),
		cmocka_unit_test(test_map_refuses_unsafe_fds),
		cmocka_unit_test(test_fd_passing_limits),
		cmocka_unit_test(test_two_processes_socket_notifiers),
		cmocka_unit_test(test_two_processes_eventfd_notifiers),
		cmocka_unit_test(test_killed_peer_reads_as_eof),
		cmocka_unit_test(test_killed_peer_with_unread_data_resets),
		cmocka_unit_test(test_notifier_fd_types),
		cmocka_unit_test(test_peer_closing_with_unread_wakeups),
		cmocka_unit_test(test_kick_per_thread),
		cmocka_unit_test(test_plain_io_notifier), /* last: process-wide mode */
	};

	return cmocka_run_group_tests_name("local", tests, NULL, NULL);
}
