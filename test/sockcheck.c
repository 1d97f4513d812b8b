// SPDX-License-Identifier: MIT
/*
 * test/sockcheck.c - one test body for the socket API, run over the kernel's
 * TCP and over circuits (under the preload, in guests): the two outputs must
 * be the same. test/preload.sh runs both and compares.
 *
 *   sockcheck server ADDR PORT     serve the cases, one connection each
 *   sockcheck client HOST PORT     run the cases, print one line per check
 *
 * The first byte of each connection names the case, so the server knows its
 * part. Output holds no addresses or timings, only what must agree.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BIG (1u << 20)

static struct sockaddr_storage server_addr;
static socklen_t server_len;

static const char *errname(int e)
{
	switch (e) {
	case 0: return "ok";
	case EAGAIN: return "EAGAIN";
	case EINPROGRESS: return "EINPROGRESS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case ENOTCONN: return "ENOTCONN";
	case EISCONN: return "EISCONN";
	case EINVAL: return "EINVAL";
	case EBADF: return "EBADF";
	default: return strerror(e);
	}
}

static void die(const char *what)
{
	fprintf(stderr, "sockcheck: %s: %s\n", what, strerror(errno));
	exit(2);
}

static uint32_t crc(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static ssize_t full_write(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0)
			return -1;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int dial(bool nonblock, int *err)
{
	int fd = socket(server_addr.ss_family, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		die("socket");
	*err = connect(fd, (struct sockaddr *)&server_addr, server_len) ? errno : 0;
	return fd;
}

static int open_case(char c)
{
	int err, fd = dial(false, &err);

	if (err) {
		errno = err;
		die("connect");
	}
	if (write(fd, &c, 1) != 1)
		die("case byte");
	return fd;
}

/* ---- client cases ---- */

static void case_echo(void)
{
	unsigned char *out = malloc(BIG), *in = malloc(BIG);
	int fd = open_case('A');
	size_t i;
	ssize_t n;

	for (i = 0; i < BIG; i++)
		out[i] = (unsigned char)(i * 131 + (i >> 9));
	if (full_write(fd, out, BIG) != BIG)
		die("echo write");
	n = recv(fd, in, BIG, MSG_WAITALL);
	printf("echo: %zd bytes back, %s\n", n, n == BIG && !memcmp(in, out, BIG) ? "same" : "DIFFERENT");
	printf("echo: crc %08x\n", crc(in, BIG));
	close(fd);
	free(out);
	free(in);
}

static void case_peek(void)
{
	int fd = open_case('B'), avail = -1;
	char buf[32] = { 0 };
	ssize_t n;

	usleep(100000); /* the server's "hello world" is in by now */
	n = recv(fd, buf, 5, MSG_PEEK);
	printf("peek: %zd '%.5s'\n", n, buf);
	ioctl(fd, FIONREAD, &avail);
	printf("peek: FIONREAD %d\n", avail);
	n = recv(fd, buf, 5, 0);
	printf("peek: then recv %zd '%.5s'\n", n, buf);
	n = recv(fd, buf, 6, MSG_WAITALL);
	printf("peek: waitall %zd '%.6s'\n", n, buf);
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	printf("peek: dontwait on empty: %zd %s\n", n, n < 0 ? errname(errno) : "");
	if (write(fd, "x", 1) != 1)
		die("peek release");
	n = recv(fd, buf, sizeof(buf), 0);
	printf("peek: after the server closed: %zd\n", n);
	close(fd);
}

static void case_shutwr(void)
{
	int fd = open_case('C');
	char buf[32] = { 0 };
	ssize_t n, got = 0;

	if (write(fd, "abc", 3) != 3)
		die("shutwr write");
	printf("shutwr: shutdown %s\n", shutdown(fd, SHUT_WR) ? errname(errno) : "ok");
	while ((n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	printf("shutwr: read '%s' then %zd\n", buf, n);
	n = send(fd, "z", 1, MSG_NOSIGNAL);
	printf("shutwr: send after shutdown: %zd %s\n", n, n < 0 ? errname(errno) : "");
	close(fd);
}

static void case_reset(void)
{
	int fd = open_case('D');
	char buf[128];
	ssize_t n;

	memset(buf, 'r', sizeof(buf));
	if (write(fd, buf, 100) != 100)
		die("reset write");
	usleep(200000); /* the server closes with our 100 bytes unread */
	n = recv(fd, buf, sizeof(buf), 0);
	printf("reset: recv %zd %s\n", n, n < 0 ? errname(errno) : "");
	n = recv(fd, buf, sizeof(buf), 0);
	printf("reset: then %zd\n", n);
	close(fd);
}

static void case_epipe(void)
{
	int fd = open_case('E'), i;
	char buf[4096] = { 0 };
	ssize_t n = 0;

	usleep(200000); /* the server closed after the case byte */
	for (i = 0; i < 10; i++) {
		n = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
		if (n < 0)
			break;
		usleep(20000);
	}
	/* TCP may take one send to learn the peer is gone; both must then fail */
	printf("epipe: send fails: %s\n",
	       n < 0 && (errno == EPIPE || errno == ECONNRESET) ? "broken pipe or reset" : "NO");
	close(fd);
}

static void case_nonblock(void)
{
	int err, fd = dial(true, &err), so = -1, fl, rc;
	socklen_t len = sizeof(so);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	char c = 'F', buf[8];
	ssize_t n;

	printf("nonblock: connect %s\n", err == 0 || err == EINPROGRESS ? "started" : errname(err));
	rc = poll(&p, 1, 2000);
	printf("nonblock: poll out %d revents %#x\n", rc, p.revents);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
	printf("nonblock: SO_ERROR %s\n", errname(so));
	fl = fcntl(fd, F_GETFL);
	printf("nonblock: O_NONBLOCK %s\n", fl & O_NONBLOCK ? "set" : "clear");
	n = recv(fd, buf, sizeof(buf), 0);
	printf("nonblock: recv on empty: %zd %s\n", n, n < 0 ? errname(errno) : "");
	if (send(fd, &c, 1, 0) != 1)
		die("nonblock case byte");
	p.events = POLLIN;
	rc = poll(&p, 1, 2000);
	printf("nonblock: poll in %d revents %#x\n", rc, p.revents);
	n = recv(fd, buf, sizeof(buf), 0);
	printf("nonblock: got %zd '%c'\n", n, n > 0 ? buf[0] : '?');
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	n = recv(fd, buf, sizeof(buf), 0); /* blocks until the server closes */
	printf("nonblock: blocking again, then EOF %zd\n", n);
	close(fd);
}

static void case_select(void)
{
	int fd = open_case('G'), rc, pfd[2], top;
	struct timeval tv = { 2, 0 };
	fd_set r;
	char buf[8];

	if (pipe(pfd))
		die("pipe");
	FD_ZERO(&r);
	FD_SET(fd, &r);
	FD_SET(pfd[0], &r); /* an ordinary fd in the same call, never ready */
	top = fd > pfd[0] ? fd : pfd[0];
	rc = select(top + 1, &r, NULL, NULL, &tv);
	printf("select: %d, socket %s\n", rc, FD_ISSET(fd, &r) ? "readable" : "not readable");
	printf("select: pipe %s\n", FD_ISSET(pfd[0], &r) ? "readable" : "not readable");
	printf("select: read %zd\n", read(fd, buf, sizeof(buf)));
	close(fd);
	close(pfd[0]);
	close(pfd[1]);
}

static void case_refused(void)
{
	struct sockaddr_storage saved = server_addr;
	int err, fd, so = -1;
	socklen_t len = sizeof(so);
	struct pollfd p;

	((struct sockaddr_in *)&server_addr)->sin_port =
		htons(ntohs(((struct sockaddr_in *)&saved)->sin_port) + 1);
	fd = dial(false, &err);
	printf("refused: blocking connect %s\n", errname(err));
	close(fd);
	fd = dial(true, &err);
	if (err == EINPROGRESS) {
		p.fd = fd;
		p.events = POLLOUT;
		poll(&p, 1, 2000);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
		err = so;
	}
	printf("refused: non-blocking connect reports %s\n", errname(err));
	close(fd);
	server_addr = saved;
}

static void case_names(void)
{
	int fd = open_case('I'), type = -1, acc = -1, nd = 1;
	struct sockaddr_storage me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer), len = sizeof(int);
	char b;

	getsockname(fd, (struct sockaddr *)&me, &ml);
	getpeername(fd, (struct sockaddr *)&peer, &pl);
	printf("names: local family %s port %s\n", me.ss_family == server_addr.ss_family ? "same" : "other",
	       ((struct sockaddr_in *)&me)->sin_port ? "set" : "zero");
	printf("names: peer port %s\n",
	       ((struct sockaddr_in *)&peer)->sin_port == ((struct sockaddr_in *)&server_addr)->sin_port ?
		       "matches" :
		       "differs");
	getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
	len = sizeof(int);
	getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len);
	printf("names: SO_TYPE %s SO_ACCEPTCONN %d\n", type == SOCK_STREAM ? "stream" : "other", acc);
	printf("names: TCP_NODELAY set %s\n",
	       setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, sizeof(nd)) ? errname(errno) : "ok");
	printf("names: server says %zd\n", read(fd, &b, 1));
	close(fd);
}

static void case_timeout(void)
{
	int fd = open_case('J');
	struct timeval tv = { 0, 200000 };
	struct timespec t0, t1;
	char buf[8];
	ssize_t n;
	long ms;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = recv(fd, buf, sizeof(buf), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	printf("timeout: recv %zd %s after %s\n", n, n < 0 ? errname(errno) : "",
	       ms >= 150 && ms < 2000 ? "about 200 ms" : "the wrong time");
	close(fd);
}

/*
 * A connected socket takes one fd number, the lowest free, and nothing else
 * the application could see: programs size their tables by fd number (wrk
 * fails a connect whose fd lands past 3 per connection).
 */
static void fd_numbers(void)
{
	int x = open("/dev/null", O_RDONLY), y = open("/dev/null", O_RDONLY), fd, next;

	close(x);
	close(y);
	fd = open_case('K');
	next = open("/dev/null", O_RDONLY);
	printf("fd numbers: the socket took %s, the next open %s\n",
	       fd == x ? "the lowest free" : "another", next == y ? "the next one" : "another");
	close(next);
	close(fd);
}

static void case_dup(void)
{
	int fd, d;
	char buf[8];

	fd_numbers();
	fd = open_case('K');
	d = dup(fd);

	close(fd);
	printf("dup: write on the dup %zd\n", write(d, "k", 1));
	printf("dup: read on the dup %zd\n", read(d, buf, sizeof(buf)));
	close(d);
	{
		ssize_t n = write(d, "k", 1);

		printf("dup: use after close %zd %s\n", n, errname(errno));
	}
}

static const char *evname(uint32_t e)
{
	static char buf[64];

	buf[0] = 0;
	if (e & EPOLLIN)
		strcat(buf, "IN|");
	if (e & EPOLLOUT)
		strcat(buf, "OUT|");
	if (e & EPOLLRDHUP)
		strcat(buf, "RDHUP|");
	if (e & EPOLLHUP)
		strcat(buf, "HUP|");
	if (e & EPOLLERR)
		strcat(buf, "ERR|");
	if (buf[0])
		buf[strlen(buf) - 1] = 0;
	else
		strcpy(buf, "-");
	return buf;
}

static void ep_report(const char *what, int ep, int timeout)
{
	struct epoll_event ev[4];
	int n = epoll_wait(ep, ev, 4, timeout);

	printf("epoll: %s: %d %s\n", what, n, n > 0 ? evname(ev[0].events) : "");
}

static void case_epoll_et(void)
{
	int fd = open_case('L'), ep = epoll_create1(EPOLL_CLOEXEC), got = 0;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
	char buf[16];
	ssize_t n;

	fcntl(fd, F_SETFL, O_NONBLOCK);
	ev.data.fd = fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	ep_report("edge, registered", ep, 300);
	ep_report("edge, nothing new", ep, 100);
	if (write(fd, "g", 1) != 1)
		die("epoll go");
	ep_report("edge, data came", ep, 2000);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		got += (int)n;
	printf("epoll: read %d then %s\n", got, n < 0 ? errname(errno) : "EOF");
	ep_report("edge, drained", ep, 100);
	if (write(fd, "h", 1) != 1)
		die("epoll go 2");
	ep_report("edge, more data", ep, 2000);
	got = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		got += (int)n;
	printf("epoll: read %d then %s\n", got, n < 0 ? errname(errno) : "EOF");
	/* a short read taken as "drained", no EAGAIN (nginx): the next arrival is an edge */
	if (write(fd, "i", 1) != 1)
		die("epoll go 3");
	ep_report("edge, third data", ep, 2000);
	n = read(fd, buf, sizeof(buf));
	printf("epoll: short read %zd\n", n);
	if (write(fd, "j", 1) != 1)
		die("epoll go 4");
	ep_report("edge, after a short read", ep, 2000);
	n = read(fd, buf, sizeof(buf));
	printf("epoll: short read %zd\n", n);
	close(ep);
	close(fd);
}

static void case_epoll_lt(void)
{
	int fd = open_case('M'), ep = epoll_create1(0), pfd[2];
	struct epoll_event ev = { .events = EPOLLIN };
	char buf[16];

	if (pipe(pfd))
		die("pipe");
	ev.data.fd = fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	ev.data.fd = pfd[0];
	epoll_ctl(ep, EPOLL_CTL_ADD, pfd[0], &ev);
	ep_report("level, data came", ep, 2000);
	ep_report("level, still unread", ep, 100);
	printf("epoll: read %zd\n", read(fd, buf, sizeof(buf)));
	ep_report("level, drained", ep, 100);
	if (write(pfd[1], "p", 1) != 1)
		die("pipe write");
	ep_report("level, a pipe in the same set", ep, 100);
	ev.events = EPOLLOUT | EPOLLONESHOT;
	ev.data.fd = fd;
	epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
	epoll_ctl(ep, EPOLL_CTL_DEL, pfd[0], NULL);
	ep_report("oneshot", ep, 100);
	ep_report("oneshot, fired", ep, 100);
	/* deleted and added again around each request, as ae (redis) does */
	printf("epoll: delete %s\n", epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) ? errname(errno) : "ok");
	ep_report("deleted", ep, 100);
	printf("epoll: delete again %s\n",
	       epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) ? errname(errno) : "ok");
	ev.events = EPOLLOUT;
	printf("epoll: modify the deleted %s\n",
	       epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) ? errname(errno) : "ok");
	printf("epoll: add again %s\n", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) ? errname(errno) : "ok");
	printf("epoll: add twice %s\n", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) ? errname(errno) : "ok");
	ep_report("added again", ep, 100);
	close(ep);
	/* EPOLLEXCLUSIVE: what the kernel takes and refuses */
	ep = epoll_create1(0);
	ev.data.fd = fd;
	ev.events = EPOLLIN | EPOLLRDHUP | EPOLLEXCLUSIVE;
	printf("epoll: exclusive with rdhup %s\n",
	       epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) ? errname(errno) : "ok");
	ev.events = EPOLLOUT | EPOLLEXCLUSIVE;
	printf("epoll: exclusive %s\n", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) ? errname(errno) : "ok");
	ep_report("exclusive, writable", ep, 100);
	ev.events = EPOLLIN;
	printf("epoll: exclusive, modify %s\n",
	       epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) ? errname(errno) : "ok");
	close(ep);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
}

/* A client killed before it closes: the server's epoll wakes with EOF, as for a FIN. */
static void case_killed(void)
{
	char buf[80] = { 0 };
	pid_t pid = fork();
	ssize_t n;
	int fd;

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		open_case('Z');
		_exit(0); /* no close: the exit closes it, as a kill would */
	}
	waitpid(pid, NULL, 0);
	fd = open_case('z');
	n = recv(fd, buf, sizeof(buf) - 1, MSG_WAITALL);
	printf("killed peer: the server saw %s\n", n > 0 ? buf : "nothing");
	close(fd);
}

/* A connection shared across fork: the parent lets go, the child carries on. */
static void case_fork(void)
{
	int fd = open_case('N'), status;
	pid_t pid;
	char buf[16];

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		ssize_t n;

		usleep(100000); /* after the parent's close */
		n = write(fd, "ping", 4);
		printf("fork: child wrote %zd\n", n);
		n = recv(fd, buf, sizeof(buf), MSG_WAITALL);
		printf("fork: child read %zd '%.*s'\n", n, n > 0 ? (int)n : 0, buf);
		n = read(fd, buf, sizeof(buf));
		printf("fork: child then %zd\n", n);
		fflush(stdout);
		_exit(0);
	}
	close(fd); /* the child still holds it: the connection stays */
	waitpid(pid, &status, 0);
	printf("fork: child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/*
 * A connection used in turn by a parent and its child (sshd's monitor and
 * its pre-authentication child): each side's bytes keep their order, across
 * more than a ring's worth of data, and the parent carries on after the
 * child is gone. The server echoes everything in upper case.
 */
#define HANDOFF_BYTES 300000

static void handoff_step(int fd, const char *who, const char *msg)
{
	char buf[8] = { 0 };
	ssize_t n = write(fd, msg, 4);

	n = n == 4 ? recv(fd, buf, 4, MSG_WAITALL) : n;
	printf("handoff: %s sent %s, got %zd '%.4s'\n", who, msg, n, n > 0 ? buf : "");
}

static void handoff_child(int fd)
{
	unsigned char *big = malloc(HANDOFF_BYTES);
	ssize_t n;
	size_t i;

	if (!big)
		die("malloc");
	handoff_step(fd, "child", "efgh");
	for (i = 0; i < HANDOFF_BYTES; i++)
		big[i] = (unsigned char)('a' + i % 26);
	n = full_write(fd, big, HANDOFF_BYTES);
	memset(big, 0, HANDOFF_BYTES);
	n = n == HANDOFF_BYTES ? recv(fd, big, HANDOFF_BYTES, MSG_WAITALL) : n;
	for (i = 0; n == HANDOFF_BYTES && i < HANDOFF_BYTES; i++)
		if (big[i] != 'A' + i % 26)
			break;
	printf("handoff: child echoed %zd bytes, %s\n", n, i == HANDOFF_BYTES ? "intact" : "damaged");
	free(big);
}

static void case_handoff(void)
{
	int fd = open_case('H'), status;
	char buf[8];
	pid_t pid;
	ssize_t n;

	handoff_step(fd, "parent", "abcd");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		handoff_child(fd);
		fflush(stdout);
		_exit(0); /* without closing: the parent still has it */
	}
	waitpid(pid, &status, 0);
	handoff_step(fd, "parent", "ijkl");
	shutdown(fd, SHUT_WR);
	n = read(fd, buf, sizeof(buf));
	printf("handoff: parent then %zd\n", n);
	close(fd);
}

/*
 * connect(AF_UNSPEC): the connection is reset (the server tells what it saw
 * on a later connection), the socket is unconnected, and connects again.
 */
static void case_disconnect(void)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = open_case('U'), r;
	char buf[32] = { 0 };
	ssize_t n;

	if (write(fd, "x", 1) != 1)
		die("disconnect x");
	usleep(100000); /* the server has read it and waits for more */
	r = connect(fd, &unspec, sizeof(unspec));
	printf("disconnect: connect(AF_UNSPEC) %s\n", r ? errname(errno) : "ok");
	r = getpeername(fd, (struct sockaddr *)&ss, &sl);
	printf("disconnect: getpeername %s\n", r ? errname(errno) : "ok");
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	printf("disconnect: recv %s\n", n < 0 ? errname(errno) : "data");
	n = send(fd, "y", 1, MSG_NOSIGNAL);
	printf("disconnect: send %s\n", n < 0 ? errname(errno) : "sent");
	r = connect(fd, &unspec, sizeof(unspec));
	printf("disconnect: again, unconnected %s\n", r ? errname(errno) : "ok");
	r = connect(fd, (struct sockaddr *)&server_addr, server_len);
	printf("disconnect: connect again %s\n", r ? errname(errno) : "ok");
	if (!r && write(fd, "B", 1) == 1) {
		n = recv(fd, buf, 11, MSG_WAITALL);
		printf("disconnect: then read %zd '%.*s'\n", n, n > 0 ? (int)n : 0, buf);
	}
	close(fd);
	fd = open_case('V');
	memset(buf, 0, sizeof(buf));
	n = recv(fd, buf, sizeof(buf) - 1, MSG_WAITALL);
	printf("disconnect: the server saw %s\n", n > 0 ? buf : "nothing");
	close(fd);
}

/*
 * splice between the socket and pipes (proxies do it), and sendfile from a
 * file: the server sends SPLICE_BYTES, then counts and checksums what it
 * gets until EOF and reports.
 */
#define SPLICE_BYTES 200000

static void case_splice(void)
{
	static unsigned char buf[SPLICE_BYTES];
	int fd = open_case('S'), p[2], other = open_case('B'), file;
	char path[] = "/tmp/sockcheck-sendfile.XXXXXX", report[64] = { 0 };
	size_t got = 0, i;
	ssize_t n;
	off_t off = 0;

	if (pipe(p))
		die("pipe");
	n = splice(fd, NULL, other, NULL, 10, 0);
	printf("splice: socket to socket %s\n", n < 0 ? errname(errno) : "moved");
	n = splice(fd, &off, p[1], NULL, 10, 0);
	printf("splice: socket at an offset %s\n", n < 0 ? errname(errno) : "moved");
	/* socket -> pipe -> memory, until all arrived */
	while (got < SPLICE_BYTES) {
		n = splice(fd, NULL, p[1], NULL, SPLICE_BYTES - got, 0);
		if (n <= 0)
			break;
		while (n > 0) {
			ssize_t r = read(p[0], buf + got, (size_t)n);

			if (r <= 0)
				die("pipe read");
			got += (size_t)r;
			n -= r;
		}
	}
	for (i = 0; i < got && buf[i] == (unsigned char)(i * 7); i++)
		;
	printf("splice: received %zu, %s\n", got, i == SPLICE_BYTES ? "intact" : "damaged");
	fcntl(fd, F_SETFL, O_NONBLOCK);
	n = splice(fd, NULL, p[1], NULL, 100, 0);
	printf("splice: nothing to read %s\n", n < 0 ? errname(errno) : "moved");
	fcntl(fd, F_SETFL, 0);
	/* memory -> pipe -> socket */
	memset(buf, 'p', 50000);
	if (write(p[1], buf, 50000) != 50000)
		die("pipe write");
	for (got = 0; got < 50000; got += (size_t)n) {
		n = splice(p[0], NULL, fd, NULL, 50000 - got, 0);
		if (n <= 0)
			break;
	}
	printf("splice: sent %zu from a pipe\n", got);
	/* file -> socket */
	file = mkstemp(path);
	if (file < 0)
		die("mkstemp");
	unlink(path);
	memset(buf, 'f', 30000);
	if (write(file, buf, 30000) != 30000)
		die("file write");
	off = 1000;
	n = sendfile(fd, file, &off, 40000);
	printf("sendfile: %zd, offset now %lld\n", n, (long long)off);
	close(file);
	shutdown(fd, SHUT_WR);
	n = recv(fd, report, sizeof(report) - 1, MSG_WAITALL);
	printf("splice: the server got %s\n", n > 0 ? report : "nothing");
	close(p[0]);
	close(p[1]);
	close(fd);
	close(other);
}

/*
 * Threads: two senders on one socket at once (every byte arrives), and a
 * reader blocked in one thread woken by shutdown() from another.
 */
#define THREAD_BYTES 300000

static void *thread_send(void *arg)
{
	static unsigned char chunk[THREAD_BYTES];
	int fd = *(int *)arg;

	memset(chunk, 't', sizeof(chunk));
	return (void *)(intptr_t)full_write(fd, chunk, sizeof(chunk));
}

static void *thread_recv(void *arg)
{
	char buf[16];

	return (void *)(intptr_t)recv(*(int *)arg, buf, sizeof(buf), 0);
}

static void case_threads(void)
{
	int fd = open_case('T');
	pthread_t t[2];
	void *r[2];
	char report[64] = { 0 };
	ssize_t n;

	pthread_create(&t[0], NULL, thread_send, &fd);
	pthread_create(&t[1], NULL, thread_send, &fd);
	pthread_join(t[0], &r[0]);
	pthread_join(t[1], &r[1]);
	printf("threads: senders wrote %zd and %zd\n", (ssize_t)(intptr_t)r[0],
	       (ssize_t)(intptr_t)r[1]);
	shutdown(fd, SHUT_WR);
	n = recv(fd, report, sizeof(report) - 1, MSG_WAITALL);
	printf("threads: the server got %s\n", n > 0 ? report : "nothing");
	close(fd);

	fd = open_case('K'); /* answers one byte with one, then waits */
	pthread_create(&t[0], NULL, thread_recv, &fd);
	usleep(100000);
	shutdown(fd, SHUT_RDWR);
	pthread_join(t[0], &r[0]);
	printf("threads: blocked reader after shutdown: %zd\n", (ssize_t)(intptr_t)r[0]);
	close(fd);
}

/* A connection that crosses exec (sshd re-exec, inetd): the new image uses it. */
static void exec_child(int fd)
{
	char buf[16];
	ssize_t n;

	closefrom(fd + 1); /* daemons close what they do not know of */
	n = write(fd, "ping", 4);
	printf("exec: new image wrote %zd\n", n);
	n = recv(fd, buf, sizeof(buf), MSG_WAITALL);
	printf("exec: new image read %zd '%.*s'\n", n, n > 0 ? (int)n : 0, buf);
	n = read(fd, buf, sizeof(buf));
	printf("exec: then %zd\n", n);
	close(fd);
	exit(0);
}

static void case_exec(void)
{
	int fd = open_case('O'), status;
	char num[16];
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		snprintf(num, sizeof(num), "%d", fd);
		closefrom(fd + 1); /* as sshd does before its re-exec */
		execl("/proc/self/exe", "sockcheck", "exec-child", num, "-", (char *)NULL);
		die("exec");
	}
	close(fd);
	waitpid(pid, &status, 0);
	printf("exec: child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* UDP: unconnected and connected, sizes, truncation, refusal. */
static void case_udp(void)
{
	int s = socket(server_addr.ss_family, SOCK_DGRAM, 0), c;
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from), len;
	struct sockaddr_in bad;
	static char big[8000], in[9000];
	char small[5];
	struct iovec iov = { small, sizeof(small) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct pollfd p;
	ssize_t n;
	int so;

	n = sendto(s, "hello", 5, 0, (struct sockaddr *)&server_addr, server_len);
	printf("udp: sendto %zd\n", n);
	n = recvfrom(s, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
	printf("udp: echo %zd '%.*s' from the server's port: %s\n", n, n > 0 ? (int)n : 0, in,
	       ((struct sockaddr_in *)&from)->sin_port == ((struct sockaddr_in *)&server_addr)->sin_port ?
		       "yes" :
		       "no");
	memset(big, 'b', sizeof(big));
	sendto(s, big, 1000, 0, (struct sockaddr *)&server_addr, server_len);
	sendto(s, big, sizeof(big), 0, (struct sockaddr *)&server_addr, server_len);
	printf("udp: sizes kept: %zd", recv(s, in, sizeof(in), 0));
	printf(" %zd\n", recv(s, in, sizeof(in), 0));
	sendto(s, "truncate me", 11, 0, (struct sockaddr *)&server_addr, server_len);
	n = recvmsg(s, &mh, 0);
	printf("udp: into 5 bytes: %zd, MSG_TRUNC %s\n", n, mh.msg_flags & MSG_TRUNC ? "set" : "clear");
	n = recv(s, in, sizeof(in), MSG_DONTWAIT);
	printf("udp: nothing left: %zd %s\n", n, n < 0 ? errname(errno) : "");
	close(s);

	c = socket(server_addr.ss_family, SOCK_DGRAM, 0);
	printf("udp: connect %s\n",
	       connect(c, (struct sockaddr *)&server_addr, server_len) ? errname(errno) : "ok");
	fl = sizeof(from);
	getpeername(c, (struct sockaddr *)&from, &fl);
	printf("udp: peer port matches: %s\n",
	       ((struct sockaddr_in *)&from)->sin_port == ((struct sockaddr_in *)&server_addr)->sin_port ?
		       "yes" :
		       "no");
	printf("udp: send %zd\n", send(c, "conn", 4, 0));
	p.fd = c;
	p.events = POLLIN;
	n = poll(&p, 1, 2000);
	printf("udp: poll %zd revents %#x\n", n, p.revents);
	n = recv(c, in, sizeof(in), 0);
	printf("udp: recv %zd '%.*s'\n", n, n > 0 ? (int)n : 0, in);
	{
		/* batches, as event loops send and take them */
		static char b1[100], b2[3000], r1[4000], r2[4000], r3[4000];
		struct iovec sv[2] = { { b1, sizeof(b1) }, { b2, sizeof(b2) } };
		struct iovec rv[3] = { { r1, sizeof(r1) }, { r2, sizeof(r2) }, { r3, sizeof(r3) } };
		struct mmsghdr sm[2] = { { .msg_hdr = { .msg_iov = &sv[0], .msg_iovlen = 1 } },
					 { .msg_hdr = { .msg_iov = &sv[1], .msg_iovlen = 1 } } };
		struct mmsghdr rm[3] = { { .msg_hdr = { .msg_iov = &rv[0], .msg_iovlen = 1 } },
					 { .msg_hdr = { .msg_iov = &rv[1], .msg_iovlen = 1 } },
					 { .msg_hdr = { .msg_iov = &rv[2], .msg_iovlen = 1 } } };
		int k;

		k = sendmmsg(c, sm, 2, 0);
		printf("udp: sendmmsg %d: %u %u\n", k, sm[0].msg_len, sm[1].msg_len);
		usleep(200000); /* both echoes are back */
		k = recvmmsg(c, rm, 3, MSG_DONTWAIT, NULL);
		printf("udp: recvmmsg %d: %u %u\n", k, rm[0].msg_len, rm[1].msg_len);
	}
	close(c);

	c = socket(AF_INET, SOCK_DGRAM, 0);
	bad = *(struct sockaddr_in *)&server_addr;
	bad.sin_port = htons(ntohs(bad.sin_port) + 1);
	printf("udp: connect to a closed port %s\n",
	       connect(c, (struct sockaddr *)&bad, sizeof(bad)) ? errname(errno) : "ok");
	printf("udp: first send %zd\n", send(c, "x", 1, 0));
	usleep(100000);
	n = recv(c, in, sizeof(in), MSG_DONTWAIT);
	printf("udp: then recv %zd %s\n", n, n < 0 ? errname(errno) : "");
	len = sizeof(so);
	so = -1;
	getsockopt(c, SOL_SOCKET, SO_TYPE, &so, &len);
	printf("udp: SO_TYPE %s\n", so == SOCK_DGRAM ? "dgram" : "other");
	close(c);
}

/* ---- server ---- */

static char disconnect_seen[32] = "nothing"; /* case 'U', told in case 'V' */

/* What the server saw of a client killed before it could close ('Z', told by 'z'). */
static char peer_gone[64] = "nothing yet";

static void watch_peer_die(int c)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP }, got = { 0 };
	int ep = epoll_create1(0), n;
	char b;

	epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
	n = epoll_wait(ep, &got, 1, 5000);
	snprintf(peer_gone, sizeof(peer_gone), "%d event(s) %s, read %zd", n,
		 n > 0 ? evname(got.events) : "", read(c, &b, 1));
	close(ep);
}

static void serve_one(int c)
{
	static unsigned char big[BIG];
	uint32_t crc_acc = 2166136261u;
	char kind, buf[256];
	ssize_t n;
	size_t got = 0;

	if (read(c, &kind, 1) != 1)
		return;
	switch (kind) {
	case 'Z':
		watch_peer_die(c);
		break;
	case 'z':
		full_write(c, peer_gone, strlen(peer_gone));
		break;
	case 'A':
		while (got < BIG && (n = read(c, big + got, BIG - got)) > 0)
			got += (size_t)n;
		full_write(c, big, got);
		break;
	case 'B':
		full_write(c, "hello world", 11);
		if (read(c, buf, 1) != 1)
			return;
		break;
	case 'C':
		while ((n = read(c, buf + got, sizeof(buf) - got)) > 0)
			got += (size_t)n;
		n = snprintf(buf, sizeof(buf), "got %zu", got);
		full_write(c, buf, (size_t)n);
		break;
	case 'D':
		usleep(100000); /* let the client's bytes arrive, then leave them unread */
		break;
	case 'E':
	case 'J':
		if (kind == 'J')
			(void)!read(c, buf, 1); /* until the client closes */
		break;
	case 'F':
		full_write(c, "y", 1);
		usleep(100000);
		break;
	case 'G':
		usleep(50000);
		full_write(c, "sel", 3);
		break;
	case 'I':
		full_write(c, "i", 1);
		break;
	case 'K':
		if (read(c, buf, 1) == 1)
			full_write(c, "K", 1);
		(void)!read(c, buf, 1);
		break;
	case 'L':
		if (read(c, buf, 1) == 1)
			full_write(c, "abc", 3);
		if (read(c, buf, 1) == 1)
			full_write(c, "de", 2);
		if (read(c, buf, 1) == 1)
			full_write(c, "xyz", 3);
		if (read(c, buf, 1) == 1)
			full_write(c, "w", 1);
		(void)!read(c, buf, 1); /* until the client closes: no FIN race */
		break;
	case 'N':
	case 'O':
		while (got < 4 && (n = read(c, buf + got, 4 - got)) > 0)
			got += (size_t)n;
		if (got == 4)
			full_write(c, "pong", 4);
		break;
	case 'H':
		while ((n = read(c, big, 65536)) > 0) {
			for (ssize_t i = 0; i < n; i++)
				big[i] = (unsigned char)toupper(big[i]);
			if (full_write(c, big, (size_t)n) != n)
				break;
		}
		break;
	case 'S':
		for (got = 0; got < SPLICE_BYTES; got++)
			big[got] = (unsigned char)(got * 7);
		full_write(c, big, SPLICE_BYTES);
		got = 0;
		while ((n = read(c, big, BIG)) > 0) {
			for (ssize_t i = 0; i < n; i++)
				crc_acc = (crc_acc ^ big[i]) * 16777619u;
			got += (size_t)n;
		}
		n = snprintf(buf, sizeof(buf), "%zu bytes, fnv %08x", got, crc_acc);
		full_write(c, buf, (size_t)n);
		break;
	case 'T':
		got = 0;
		while ((n = read(c, big, BIG)) > 0)
			got += (size_t)n;
		n = snprintf(buf, sizeof(buf), "%zu bytes", got);
		full_write(c, buf, (size_t)n);
		break;
	case 'U':
		if (read(c, buf, 1) == 1) {
			n = read(c, buf, 1);
			snprintf(disconnect_seen, sizeof(disconnect_seen), "%s",
				 n < 0 ? errname(errno) : n ? "data" : "EOF");
		}
		break;
	case 'V':
		full_write(c, disconnect_seen, strlen(disconnect_seen));
		break;
	case 'M':
		usleep(50000);
		full_write(c, "x", 1);
		(void)!read(c, buf, 1);
		break;
	}
}

/* UDP echo on the same port, in a child of the server. */
static void udp_echo(const struct sockaddr_in *sa)
{
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	static char buf[65536];

	if (u < 0 || bind(u, (const struct sockaddr *)sa, sizeof(*sa)))
		die("udp bind");
	for (;;) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);

		if (n < 0)
			continue;
		sendto(u, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
	}
}

static __attribute__((noreturn)) void server(const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1, acc = 0;
	socklen_t len = sizeof(acc);

	inet_pton(AF_INET, addr, &sa.sin_addr);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 16))
		die("server listen");
	getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len);
	fprintf(stderr, "sockcheck server: listening (SO_ACCEPTCONN %d)\n", acc);
	if (fork() == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		udp_echo(&sa);
	}
	for (;;) {
		int c = accept(l, NULL, NULL);

		if (c < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		serve_one(c);
		close(c);
	}
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;

	if (argc != 4) {
		fprintf(stderr, "usage: sockcheck server ADDR PORT | client HOST PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "server"))
		server(argv[2], atoi(argv[3]));
	if (!strcmp(argv[1], "exec-child"))
		exec_child(atoi(argv[2]));
	if (getaddrinfo(argv[2], argv[3], &hints, &ai)) {
		fprintf(stderr, "sockcheck: cannot resolve %s\n", argv[2]);
		return 2;
	}
	memcpy(&server_addr, ai->ai_addr, ai->ai_addrlen);
	server_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	case_echo();
	case_peek();
	case_shutwr();
	case_reset();
	case_epipe();
	case_nonblock();
	case_select();
	case_refused();
	case_names();
	case_timeout();
	case_dup();
	case_epoll_et();
	case_epoll_lt();
	case_fork();
	case_killed();
	case_handoff();
	case_disconnect();
	case_splice();
	case_threads();
	case_exec();
	/* VMs have no datagram circuits yet (docs/vms.md): test/vm.sh leaves UDP out */
	if (!getenv("SOCKCHECK_NO_UDP"))
		case_udp();
	return 0;
}
