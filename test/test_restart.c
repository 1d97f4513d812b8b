// SPDX-License-Identifier: MIT
/*
 * test/test_restart.c - what the socket calls of a guest do while its
 * operator is down and after it comes back (guest/procop.c): a real
 * circnet-operator, killed with SIGKILL and started again, and this process
 * as guest "srv" under the preload, using plain socket calls.
 *
 *   - a listener stays quiet while the operator is down: accept says
 *     EAGAIN (non-blocking) or blocks, poll/select/epoll (LT and ET) report
 *     nothing, nothing spins; after the restart it accepts again without
 *     any call of the application's but its usual wait;
 *   - a connect waits for the operator up to CIRCNET_OPERATOR_WAIT_MS and
 *     then fails with EHOSTUNREACH, blocking or non-blocking; one made while
 *     the operator is down completes when it is back;
 *   - the reconnect state machine backs off (10 ms doubling to 500 ms): an
 *     operator socket that accepts and hangs up at once sees a bounded
 *     number of attempts, and the process uses next to no CPU;
 *   - a bound UDP socket survives as well.
 *
 * usage: test_restart PATH-TO-circnet-operator PATH-TO-libcircnet-preload.so
 * It runs itself again under the preload, as a guest of its own operator.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define WAIT_MS 600 /* CIRCNET_OPERATOR_WAIT_MS for this test */
#define CONFIG_FMT                                                                     \
	"run-dir %s/run\nnetwork 10.77.0.0/24\n"                                         \
	"guest srv {\n    address 10.77.0.2\n    listen any any\n}\n"                    \
	"guest cli {\n    address 10.77.0.3\n}\n"                                         \
	"%s"                                                                           \
	"deny any from any to any\n"
#define ALLOW_CLI "allow tcp from cli to srv\n"
#define GUEST_ADDR "10.77.0.2"

static const char *operator_bin;
static char dir[40], run_dir[64], cfg_path[64], sock_path[100];
static pid_t op_pid;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* ---- the operator ---- */

static bool sock_reachable(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	bool ok;

	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	ok = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return ok;
}

static void op_start(void)
{
	char *const argv[] = { (char *)operator_bin, "--config", cfg_path, "--log-level", "debug",
			       NULL };
	char *const envp[] = { "PATH=/usr/bin:/bin", NULL }; /* no preload for the operator */
	int i;

	op_pid = fork();
	assert_true(op_pid >= 0);
	if (op_pid == 0) {
		char log[160];
		int fd;

		snprintf(log, sizeof(log), "%s/operator.log", dir);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 2);
		execve(operator_bin, argv, envp);
		_exit(127);
	}
	for (i = 0; i < 500 && !sock_reachable(); i++)
		usleep(10000);
	assert_true(sock_reachable());
}

static void op_kill(void)
{
	int st;

	kill(op_pid, SIGKILL);
	assert_int_equal(waitpid(op_pid, &st, 0), op_pid);
	op_pid = 0;
}

/* ---- sockets ---- */

static struct sockaddr_in sin_of(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	inet_pton(AF_INET, GUEST_ADDR, &a.sin_addr);
	return a;
}

static int listener(uint16_t *port, bool nonblock)
{
	struct sockaddr_in a = sin_of(0);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	assert_true(*port != 0);
	return fd;
}

/* A blocking connect; -errno on failure. */
static int connect_to(uint16_t port, bool nonblock)
{
	struct sockaddr_in a = sin_of(port);
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0), err;

	assert_true(fd >= 0);
	if (!connect(fd, (struct sockaddr *)&a, sizeof(a)) || (nonblock && errno == EINPROGRESS))
		return fd;
	err = errno;
	close(fd);
	return -err;
}

/* Both ways over a connected pair. */
static void check_talks(int a, int b)
{
	char buf[16];

	assert_int_equal(write(a, "ping", 4), 4);
	assert_int_equal(read(b, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(write(b, "pong!", 5), 5);
	assert_int_equal(read(a, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "pong!", 5);
}

struct dialer {
	uint16_t port;
	int delay_ms;
	int fd;
};

/* A client that keeps trying for 5 s (the listener may not be back yet). */
static void *dial(void *arg)
{
	struct dialer *d = arg;
	int64_t end = now_ms() + 5000;

	usleep((useconds_t)d->delay_ms * 1000);
	do {
		d->fd = connect_to(d->port, false);
		if (d->fd >= 0)
			break;
		usleep(20000);
	} while (now_ms() < end);
	return NULL;
}

/* ---- tests ---- */

static void test_listener_quiet_while_down(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN }, out;
	int l, lt, et, i, a;
	uint16_t port;
	struct pollfd p;
	struct timeval tv = { 0, 300000 };
	struct dialer d = { .delay_ms = 0 };
	pthread_t th;
	fd_set r;
	int64_t t0, c0;

	l = listener(&port, true);
	lt = epoll_create1(0);
	et = epoll_create1(0);
	assert_int_equal(epoll_ctl(lt, EPOLL_CTL_ADD, l, &ev), 0);
	ev.events = EPOLLIN | EPOLLET;
	assert_int_equal(epoll_ctl(et, EPOLL_CTL_ADD, l, &ev), 0);
	op_kill();

	/* non-blocking accept: EAGAIN, every time, at once; no other error */
	t0 = now_ms();
	for (i = 0; i < 1000; i++) {
		assert_int_equal(accept4(l, NULL, NULL, SOCK_NONBLOCK), -1);
		assert_int_equal(errno, EAGAIN);
	}
	assert_true(now_ms() - t0 < 500);
	/* nothing to report, in every readiness call, and no spinning while they wait */
	c0 = cpu_ms();
	t0 = now_ms();
	p = (struct pollfd){ .fd = l, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 300), 0);
	FD_ZERO(&r);
	FD_SET(l, &r);
	assert_int_equal(select(l + 1, &r, NULL, NULL, &tv), 0);
	assert_int_equal(epoll_wait(lt, &out, 1, 300), 0);
	assert_int_equal(epoll_wait(et, &out, 1, 300), 0);
	assert_true(now_ms() - t0 >= 1100);
	assert_int_equal(epoll_wait(lt, &out, 1, 1000), 0);
	assert_true(cpu_ms() - c0 < 100);

	/* back: the listener registers again from the wait, and a client gets through */
	op_start();
	d.port = port;
	assert_int_equal(pthread_create(&th, NULL, dial, &d), 0);
	assert_int_equal(epoll_wait(lt, &out, 1, 5000), 1);
	assert_true(out.events & EPOLLIN);
	pthread_join(th, NULL);
	assert_true(d.fd >= 0);
	a = accept4(l, NULL, NULL, 0);
	assert_true(a >= 0);
	check_talks(d.fd, a);
	close(a);
	close(d.fd);
	/* the edge-triggered instance sees the next one */
	assert_int_equal(epoll_wait(et, &out, 1, 0) >= 0, 1);
	d.fd = -1;
	assert_int_equal(pthread_create(&th, NULL, dial, &d), 0);
	assert_int_equal(epoll_wait(et, &out, 1, 5000), 1);
	pthread_join(th, NULL);
	assert_true(d.fd >= 0);
	a = accept4(l, NULL, NULL, 0);
	assert_true(a >= 0);
	check_talks(a, d.fd);
	close(a);
	close(d.fd);
	close(et);
	close(lt);
	close(l);
}

struct acceptor {
	int l;
	volatile int fd;
	volatile bool done;
};

static void *acceptor(void *arg)
{
	struct acceptor *a = arg;

	a->fd = accept(a->l, NULL, NULL);
	a->done = true;
	return NULL;
}

static void test_blocking_accept_waits(void **state)
{
	struct acceptor acc = { .fd = -1 };
	struct dialer d = { .delay_ms = 0 };
	uint16_t port;
	pthread_t th;
	int64_t c0;

	acc.l = listener(&port, false);
	assert_int_equal(pthread_create(&th, NULL, acceptor, &acc), 0);
	usleep(100000);
	op_kill();
	c0 = cpu_ms();
	usleep(700000);
	assert_false(acc.done); /* it blocks: no error */
	assert_true(cpu_ms() - c0 < 100);
	op_start();
	d.port = port;
	dial(&d); /* the blocked accept registers the listener again */
	pthread_join(th, NULL);
	assert_true(acc.done);
	assert_true(acc.fd >= 0);
	assert_true(d.fd >= 0);
	check_talks(d.fd, acc.fd);
	close(acc.fd);
	close(d.fd);
	close(acc.l);
}

static void test_connect_while_down(void **state)
{
	uint16_t port;
	int l = listener(&port, true), fd, err;
	socklen_t len = sizeof(err);
	struct pollfd p;
	int64_t t0;

	op_kill();
	/* blocking: waits the bound, then says what an unreachable host says */
	t0 = now_ms();
	assert_int_equal(connect_to(port, false), -EHOSTUNREACH);
	assert_true(now_ms() - t0 >= WAIT_MS - 50);
	assert_true(now_ms() - t0 < WAIT_MS + 1500);
	/* non-blocking: in progress at once, then the same error through SO_ERROR */
	t0 = now_ms();
	fd = connect_to(port, true);
	assert_true(fd >= 0);
	assert_true(now_ms() - t0 < 100);
	p = (struct pollfd){ .fd = fd, .events = POLLOUT };
	assert_int_equal(poll(&p, 1, 100), 0); /* not yet */
	assert_int_equal(poll(&p, 1, 3000), 1);
	assert_true(p.revents & POLLOUT);
	assert_true(p.revents & POLLERR);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	assert_int_equal(err, EHOSTUNREACH);
	close(fd);
	op_start();
	close(l);
}

static void *restart_later(void *arg)
{
	usleep(250000);
	op_start();
	return arg;
}

static void test_connect_completes_when_back(void **state)
{
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLET }, out;
	uint16_t port;
	int l = listener(&port, false), fd, ep, err, a;
	socklen_t len = sizeof(err);
	pthread_t th;
	int64_t t0;

	op_kill();
	fd = connect_to(port, true);
	assert_true(fd >= 0);
	ep = epoll_create1(0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	t0 = now_ms();
	assert_int_equal(pthread_create(&th, NULL, restart_later, NULL), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 3000), 1);
	pthread_join(th, NULL);
	assert_true(now_ms() - t0 >= 200);
	assert_true(out.events & EPOLLOUT);
	assert_false(out.events & EPOLLERR);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	assert_int_equal(err, 0);
	/* the listener came back too (the operator held the connect for it) */
	a = accept(l, NULL, NULL);
	assert_true(a >= 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	check_talks(fd, a);
	close(a);
	close(fd);
	close(ep);
	close(l);
}

struct fake_op {
	int fd;
	volatile bool stop;
	int attempts;
};

/* An operator socket that accepts and hangs up at once: a broken operator. */
static void *fake_operator(void *arg)
{
	struct fake_op *f = arg;

	while (!f->stop) {
		struct pollfd p = { .fd = f->fd, .events = POLLIN };

		if (poll(&p, 1, 20) == 1) {
			int c = accept(f->fd, NULL, NULL);

			if (c >= 0) {
				f->attempts++;
				close(c);
			}
		}
	}
	return NULL;
}

static void test_reconnect_backs_off(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct fake_op f = { 0 };
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct dialer d = { .delay_ms = 0 };
	uint16_t port;
	int l = listener(&port, true), ep = epoll_create1(0), a;
	pthread_t th;
	int64_t c0;

	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev), 0);
	op_kill();
	f.fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	unlink(sock_path);
	assert_int_equal(bind(f.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f.fd, 16), 0);
	assert_int_equal(pthread_create(&th, NULL, fake_operator, &f), 0);
	c0 = cpu_ms();
	/* 2 s in a wait: attempts at about 0, 10, 30, 70, 150, 310, 630, 1130, 1630 ms */
	assert_int_equal(epoll_wait(ep, &out, 1, 2000), 0);
	f.stop = true;
	pthread_join(th, NULL);
	print_message("     %d attempts in 2 s against a hanging-up operator, %lld ms CPU\n",
		      f.attempts, (long long)(cpu_ms() - c0));
	assert_true(f.attempts >= 4);
	assert_true(f.attempts <= 16);
	assert_true(cpu_ms() - c0 < 150);
	close(f.fd);
	unlink(sock_path);
	/* a real operator again: the listener is back within the longest pause */
	op_start();
	d.port = port;
	assert_int_equal(pthread_create(&th, NULL, dial, &d), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 5000), 1);
	pthread_join(th, NULL);
	assert_true(d.fd >= 0);
	a = accept(l, NULL, NULL);
	assert_true(a >= 0);
	check_talks(d.fd, a);
	close(a);
	close(d.fd);
	close(ep);
	close(l);
}

struct sender {
	uint16_t port;
	volatile bool stop;
};

static void *send_datagrams(void *arg)
{
	struct sender *s = arg;
	struct sockaddr_in a = sin_of(s->port);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	while (!s->stop) {
		sendto(fd, "dgram", 5, 0, (struct sockaddr *)&a, sizeof(a));
		usleep(50000);
	}
	close(fd);
	return NULL;
}

static void test_udp_binding_survives(void **state)
{
	struct sockaddr_in a = sin_of(0);
	socklen_t len = sizeof(a);
	struct sender s = { 0 };
	struct pollfd p;
	pthread_t th;
	char buf[16];
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), i;
	ssize_t n;

	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	s.port = ntohs(a.sin_port);
	op_kill();
	assert_int_equal(recv(fd, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, EAGAIN);
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 300), 0);
	op_start();
	assert_int_equal(pthread_create(&th, NULL, send_datagrams, &s), 0);
	/* readable can come with the new peer's circuit before its first datagram */
	for (i = 0, n = -1; i < 100 && n < 0; i++) {
		assert_int_equal(poll(&p, 1, 5000), 1);
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0)
			assert_int_equal(errno, EAGAIN);
	}
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "dgram", 5);
	s.stop = true;
	pthread_join(th, NULL);
	close(fd);
}

/* The operator's control socket: one request line, the answer into buf. */
static void ctl(const char *req, char *buf, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	size_t got = 0;
	ssize_t n;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", run_dir);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	shutdown(fd, SHUT_WR);
	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = 0;
	close(fd);
}

/*
 * Established circuits outlive the operator, and the new one learns of
 * them again: each end claims its end (proven by the circuit's memory), so
 * circnetctl, limits and reload --reset see them; closing them is counted.
 */
static void test_circuits_claimed(void **state)
{
	uint16_t port;
	int l = listener(&port, false), c, a, i;
	struct pollfd p;
	char out[8192];
	bool seen = false;

	c = connect_to(port, false);
	assert_true(c >= 0);
	a = accept(l, NULL, NULL);
	assert_true(a >= 0);
	op_kill();
	check_talks(c, a);
	op_start();
	/* a wait point registers the listener again and claims both ends */
	p = (struct pollfd){ .fd = l, .events = POLLIN };
	for (i = 0; i < 50 && !seen; i++) {
		assert_int_equal(poll(&p, 1, 20), 0);
		ctl("circuits json\n", out, sizeof(out));
		seen = strstr(out, "\"state\":\"established\"") &&
		       strstr(out, "\"allowed_by\":\"earlier operator\"");
	}
	assert_true(seen);
	ctl("status json\n", out, sizeof(out));
	assert_non_null(strstr(out, "\"circuits\":1,"));
	assert_non_null(strstr(out, "\"claims\":2,"));
	check_talks(a, c);
	close(a);
	close(c);
	/* the closes reach the new operator (flushed before the next sleep) */
	for (i = 0, seen = false; i < 50 && !seen; i++) {
		assert_int_equal(poll(&p, 1, 20), 0);
		ctl("status json\n", out, sizeof(out));
		seen = strstr(out, "\"circuits\":0,") != NULL;
	}
	assert_true(seen);
	close(l);
}

/*
 * A server that closes its listener and listens on the same port again at
 * once (iperf3 does after every test) gets its port every time: the
 * operator may not have read the old channel's hang-up yet.
 */
static void test_listen_again_at_once(void **state)
{
	struct sockaddr_in a = sin_of(7000);
	int i, fd, one = 1;

	for (i = 0; i < 100; i++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		assert_int_equal(listen(fd, 4), 0);
		close(fd);
	}
}

/*
 * The child of test_reload_reset_revokes, as guest cli: connect, say hi,
 * then wait for data in poll (an idle event loop) until the connection
 * breaks. Exit 0 if it broke with ECONNRESET.
 */
static int reset_child(uint16_t port)
{
	struct sockaddr_in a = sin_of(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0), i;
	char buf[16];

	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) || write(fd, "hi", 2) != 2)
		return 2;
	for (i = 0; i < 100; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) != 1)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n < 0)
			return errno == ECONNRESET ? 0 : 3;
		if (n == 0)
			return 4;
	}
	return 5;
}

/*
 * reload --reset revokes a circuit the new policy denies: the operator
 * pushes RESET to both ends; a guest idle in a wait point reads it and
 * resets its end, so both sides see ECONNRESET, even if only one end is
 * honest (here the server's end never looks: it blocks in read).
 */
static void test_reload_reset_revokes(void **state)
{
	uint16_t port;
	int l = listener(&port, false), a, st;
	struct timeval tv = { 5, 0 };
	char out[8192], buf[16], portstr[8], sock_cli[120];
	pid_t child;
	FILE *f;

	snprintf(portstr, sizeof(portstr), "%u", port);
	snprintf(sock_cli, sizeof(sock_cli), "%s/run/guests/cli/operator.sock", dir);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		char *const argv[] = { "test_restart", "-", "-", NULL };

		setenv("CIRCNET_OPERATOR_SOCKET", sock_cli, 1);
		setenv("CIRCNET_TEST_CHILD", portstr, 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	a = accept(l, NULL, NULL);
	assert_true(a >= 0);
	assert_int_equal(read(a, buf, sizeof(buf)), 2);
	/* the same config without the allow line, reloaded with --reset */
	f = fopen(cfg_path, "w");
	assert_non_null(f);
	fprintf(f, CONFIG_FMT, dir, "");
	fclose(f);
	ctl("reload reset\n", out, sizeof(out));
	assert_non_null(strstr(out, "ok"));
	setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(read(a, buf, sizeof(buf)), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(a);
	close(l);
	/* the allow line back for what follows */
	f = fopen(cfg_path, "w");
	assert_non_null(f);
	fprintf(f, CONFIG_FMT, dir, ALLOW_CLI);
	fclose(f);
	ctl("reload\n", out, sizeof(out));
}

/* ---- setup: this process again, under the preload, as guest srv ---- */

static int group_setup(void **state)
{
	snprintf(run_dir, sizeof(run_dir), "%s/run", dir);
	snprintf(cfg_path, sizeof(cfg_path), "%s/circnet.conf", dir);
	op_start();
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[160];

	if (op_pid > 0)
		op_kill();
	if (getenv("CIRCNET_KEEP_TEST_DIR"))
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* The first run: a directory, a config, then exec ourselves under the preload. */
static int prepare_and_reexec(char **argv)
{
	char asan[512], env_sock[256], env_pre[512];
	const char *old_asan = getenv("ASAN_OPTIONS");
	FILE *f;

	snprintf(dir, sizeof(dir), "/tmp/circnet-test-restart.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(cfg_path, sizeof(cfg_path), "%s/circnet.conf", dir);
	f = fopen(cfg_path, "w");
	if (!f)
		return 1;
	fprintf(f, CONFIG_FMT, dir, ALLOW_CLI);
	fclose(f);
	snprintf(env_sock, sizeof(env_sock), "%s/run/guests/srv/operator.sock", dir);
	snprintf(env_pre, sizeof(env_pre), "%s", argv[2]);
	/* a sanitizer build's preload comes before its runtime: allowed here */
	snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", old_asan ? old_asan : "",
		 old_asan ? ":" : "");
	setenv("ASAN_OPTIONS", asan, 1);
	setenv("CIRCNET_OPERATOR_SOCKET", env_sock, 1);
	setenv("CIRCNET_OPERATOR_WAIT_MS", "600", 1);
	setenv("CIRCNET_TEST_DIR", dir, 1);
	setenv("LD_PRELOAD", env_pre, 1);
	execv("/proc/self/exe", argv);
	perror("exec");
	return 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listener_quiet_while_down),
		cmocka_unit_test(test_blocking_accept_waits),
		cmocka_unit_test(test_connect_while_down),
		cmocka_unit_test(test_connect_completes_when_back),
		cmocka_unit_test(test_reconnect_backs_off),
		cmocka_unit_test(test_udp_binding_survives),
		cmocka_unit_test(test_circuits_claimed),
		cmocka_unit_test(test_listen_again_at_once),
		cmocka_unit_test(test_reload_reset_revokes),
	};
	const char *d = getenv("CIRCNET_TEST_DIR");

	if (getenv("CIRCNET_TEST_CHILD"))
		return reset_child((uint16_t)atoi(getenv("CIRCNET_TEST_CHILD")));
	if (argc != 3) {
		fprintf(stderr, "usage: %s CIRCNET-OPERATOR LIBCIRCNET-PRELOAD\n", argv[0]);
		return 2;
	}
	if (!d)
		return prepare_and_reexec(argv);
	snprintf(dir, sizeof(dir), "%s", d);
	snprintf(sock_path, sizeof(sock_path), "%s", getenv("CIRCNET_OPERATOR_SOCKET"));
	operator_bin = argv[1];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
