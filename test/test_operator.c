// SPDX-License-Identifier: MIT
/*
 * test/test_operator.c - integration tests of the operator: a real
 * circnet-operator process with its own config and run directory, and test
 * guests in this process that speak the protocol through the guest client
 * (a guest is whichever guest socket its session came through, so one
 * process can play several guests). circnetctl is run for real as well.
 *
 * usage: test_operator PATH-TO-circnet-operator PATH-TO-circnetctl
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <circnet/circuit.h>
#include <circnet/layout.h>
#include <circnet/local.h>
#include <circnet/opclient.h>
#include <circnet/pool.h>
#include <circnet/vm.h>

static const char *operator_bin, *ctl_bin;
static char dir[48], run_dir[64], cfg_path[64], log_path[64];
static pid_t op_pid;
static const char *op_grace = "--restart-grace=2000"; /* the default, said out loud */

static const char *const base_config =
	"log-level debug\n"
	"network 10.9.0.0/24\n"
	"defaults {\n"
	"    ring-size 16K\n"
	"}\n"
	"guest web {\n"
	"    address 10.9.0.2 fd09::2\n"
	"    group frontend\n"
	"    listen tcp 80,8080\n"
	"    listen udp 53\n"
	"}\n"
	"guest client {\n"
	"    address 10.9.0.10 fd09::10\n"
	"    group clients\n"
	"    listen udp any\n"
	"    max-circuits 40\n"
	"}\n"
	"guest cache {\n"
	"    address 10.9.0.3\n"
	"    listen tcp 6379\n"
	"}\n"
	"guest locked {\n"
	"    address 10.9.0.20\n"
	"    uid %u\n"
	"}\n"
	"guest flood {\n"
	"    address 10.9.0.30\n"
	"    max-sessions 16\n"
	"}\n"

	"allow tcp from group:clients to web port 80\n"
	"allow tcp from flood to web port 80\n"
	"allow udp from client to web port 53\n"
	"proxy tcp from client to 198.51.100.0/24 port 443\n"
	"%s"
	"deny any from any to any\n";

/* ---- helpers ---- */

static void write_config(const char *extra_rules)
{
	FILE *f = fopen(cfg_path, "w");

	assert_non_null(f);
	fprintf(f, base_config, (unsigned int)getuid() + 4242, extra_rules);
	fclose(f);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static bool ctl_reachable(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", run_dir);
	ok = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return ok;
}

static bool guest_reachable(const char *guest)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/guests/%s/operator.sock", run_dir, guest);
	ok = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return ok;
}

static void op_start(void)
{
	int i;

	op_pid = fork();
	assert_true(op_pid >= 0);
	if (op_pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, 2);
		execl(operator_bin, operator_bin, "--config", cfg_path, "--run-dir", run_dir,
		      op_grace, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 500 && !ctl_reachable(); i++)
		usleep(10000);
	assert_true(ctl_reachable());
	/*
	 * The guests' sockets too: they are bound after the control socket,
	 * which a slow start (a sanitizer) makes visible.
	 */
	for (i = 0; i < 500 && !guest_reachable("client"); i++)
		usleep(10000);
}

static void op_stop(void)
{
	int status;

	kill(op_pid, SIGTERM);
	assert_int_equal(waitpid(op_pid, &status, 0), op_pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	op_pid = 0;
}

/* SIGKILL: the operator dies as in a crash, leaving its sockets behind. */
static void op_kill(void)
{
	int status;

	kill(op_pid, SIGKILL);
	assert_int_equal(waitpid(op_pid, &status, 0), op_pid);
	op_pid = 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run circnetctl; returns its exit status, output (stdout+stderr) in out. */
static int ctl(char *out, size_t len, const char *fmt, ...)
{
	char args[512], cmd[1024];
	size_t got = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s --run-dir %s %s 2>&1", ctl_bin, run_dir, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (got < len - 1) {
		size_t n = fread(out + got, 1, len - 1 - got, p);

		if (!n)
			break;
		got += n;
	}
	out[got] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_log(void)
{
	static char buf[1 << 20];
	int fd = open(log_path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

static unsigned int log_count(const char *needle)
{
	const char *p = read_log();
	unsigned int n = 0;

	while ((p = strstr(p, needle))) {
		n++;
		p++;
	}
	return n;
}

/* The operator logs asynchronously to us: wait a little for a line. */
static bool log_has(const char *needle)
{
	int i;

	for (i = 0; i < 100; i++) {
		if (strstr(read_log(), needle))
			return true;
		usleep(10000);
	}
	return false;
}

static void guest_path(char *buf, size_t len, const char *guest)
{
	snprintf(buf, len, "%s/guests/%s/operator.sock", run_dir, guest);
}

static int open_guest(struct cn_op *op, const char *guest)
{
	char path[256];

	guest_path(path, sizeof(path), guest);
	return cn_op_open(op, path);
}

static struct cn_addr addr(const char *s)
{
	struct cn_addr a;

	assert_int_equal(cn_addr_parse(&a, s), 0);
	return a;
}

static struct cn_addr wildcard(uint16_t port)
{
	struct cn_addr a = { .port = port };

	return a;
}

/* Both directions of an open circuit carry data. */
static void check_talks_ep(struct cn_endpoint *a, struct cn_endpoint *b)
{
	char buf[64];

	assert_int_equal(cn_send(a, "ping", 4, 0), 4);
	assert_int_equal(cn_recv(b, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(cn_send(b, "pong!", 5, 0), 5);
	assert_int_equal(cn_recv(a, buf, sizeof(buf), 0), 5);
	assert_memory_equal(buf, "pong!", 5);
}

static void check_talks(struct cn_local_ep *a, struct cn_local_ep *b)
{
	check_talks_ep(&a->ep, &b->ep);
}

struct listener_g {
	struct cn_op op;
	uint64_t id;
	struct cn_addr bound;
};

static void listen_on(struct listener_g *l, const char *guest, unsigned int l4,
		      struct cn_addr a, uint32_t backlog)
{
	assert_int_equal(open_guest(&l->op, guest), 0);
	assert_int_equal(cn_op_listen(&l->op, l4, &a, backlog, &l->bound, &l->id), 0);
}

/* One established client -> web:80 circuit with both ends open. */
struct conn {
	struct cn_local_ep c, s;
	struct cn_op_conn ci, si;
};

static int connect_pair(struct cn_op *client, struct listener_g *l, const char *dst,
			struct conn *k)
{
	struct cn_addr d = addr(dst);
	int err = cn_op_connect(client, CN_L4_TCP, NULL, &d, &k->c, &k->ci);

	if (err)
		return err;
	assert_int_equal(cn_op_accept(&l->op, &k->s, &k->si, 0), 0);
	return 0;
}

static void close_pair(struct cn_op *client, struct listener_g *l, struct conn *k)
{
	cn_local_close(&k->c);
	cn_local_close(&k->s);
	cn_op_closed(client, k->ci.circuit_id);
	cn_op_closed(&l->op, k->si.circuit_id);
}

static unsigned int own_circuits(struct cn_op *op)
{
	struct cn_msg_query_ok q;

	assert_int_equal(cn_op_query(op, &q), 0);
	return q.circuits;
}

/* ---- tests ---- */

static void test_connect_allowed(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct conn k;
	char out[8192], a[64];

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_string_equal(client.info.name, "client");
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);
	check_talks(&k.c, &k.s);

	/* both ends see the same circuit with matching addresses */
	assert_int_equal(k.ci.circuit_id, k.si.circuit_id);
	assert_int_equal(k.si.listener_id, web.id);
	assert_memory_equal(&k.ci.local, &k.si.remote, sizeof(k.ci.local));
	assert_memory_equal(&k.ci.remote, &k.si.local, sizeof(k.ci.local));
	snprintf(a, sizeof(a), "10.9.0.10:%u", k.ci.local.port);
	assert_true(k.ci.local.port >= 32768);
	assert_int_equal(k.ci.remote.port, 80);

	assert_int_equal(ctl(out, sizeof(out), "circuits --json"), 0);
	assert_non_null(strstr(out, "\"state\":\"established\""));
	assert_non_null(strstr(out, a));
	assert_int_equal(ctl(out, sizeof(out), "listeners"), 0);
	assert_non_null(strstr(out, "web"));
	assert_int_equal(own_circuits(&client), 1);

	/* IPv6 works the same way */
	{
		struct conn k6;

		assert_int_equal(connect_pair(&client, &web, "[fd09::2]:80", &k6), 0);
		assert_int_equal(k6.ci.local.family, CN_AF_INET6);
		check_talks(&k6.c, &k6.s);
		close_pair(&client, &web, &k6);
	}
	close_pair(&client, &web, &k);
	assert_int_equal(own_circuits(&client), 0);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

static void test_loopback_within_guest(void **state)
{
	struct listener_g self;
	struct cn_op client;
	struct conn k;

	/* a guest reaches itself on 127.0.0.1 without any rule */
	listen_on(&self, "cache", CN_L4_TCP, wildcard(6379), 4);
	assert_int_equal(open_guest(&client, "cache"), 0);
	assert_int_equal(connect_pair(&client, &self, "127.0.0.1:6379", &k), 0);
	check_talks(&k.c, &k.s);
	assert_int_equal(k.ci.local.addr[0], 127);
	close_pair(&client, &self, &k);
	cn_op_close(&client);
	cn_op_close(&self.op);
}

static void test_denied_and_logged(void **state)
{
	struct listener_g web, cache;
	struct cn_op client;
	struct cn_local_ep ep;
	struct cn_addr d = addr("10.9.0.2:8080");

	listen_on(&web, "web", CN_L4_TCP, wildcard(8080), 4);
	listen_on(&cache, "cache", CN_L4_TCP, wildcard(6379), 4);
	assert_int_equal(open_guest(&client, "client"), 0);
	/* web listens on 8080, but no rule lets client in there */
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNREFUSED);
	assert_true(log_has("denied: tcp client(10.9.0.10:"));
	assert_true(log_has("-> web(10.9.0.2:8080) by rule at "));
	d = addr("10.9.0.3:6379");
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNREFUSED);
	assert_true(log_has("-> cache(10.9.0.3:6379)"));
	/* nothing reached the listeners */
	assert_int_equal(cn_op_accept(&web.op, &ep, NULL, 1), -EAGAIN);
	assert_int_equal(cn_op_accept(&cache.op, &ep, NULL, 1), -EAGAIN);
	cn_op_close(&client);
	cn_op_close(&web.op);
	cn_op_close(&cache.op);
}

static void test_refused_and_unreachable(void **state)
{
	struct cn_op client;
	struct cn_local_ep ep;
	struct cn_addr d;

	assert_int_equal(open_guest(&client, "client"), 0);
	d = addr("10.9.0.2:80"); /* allowed, but nobody listens */
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNREFUSED);
	d = addr("10.9.0.99:80"); /* on the guest network, no such guest */
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -EHOSTUNREACH);
	d = addr("192.0.2.1:80"); /* off-host, no route */
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ENETUNREACH);
	d = addr("198.51.100.7:443"); /* routed to the proxy stack, which is not there */
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ENETUNREACH);
	assert_true(log_has("no proxy stack attached"));
	d = addr("[fd09::99]:80"); /* not on any configured network */
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ENETUNREACH);
	cn_op_close(&client);
}

static void test_impersonation(void **state)
{
	struct listener_g web;
	struct cn_op client, cache, locked, raw;
	struct cn_local_ep ep;
	struct cn_addr a = addr("10.9.0.2:80"), src = addr("10.9.0.2:0");
	struct conn k;
	char path[256];

	assert_int_equal(open_guest(&client, "client"), 0);
	/* listen on another guest's address */
	assert_int_equal(cn_op_listen(&client, CN_L4_TCP, &a, 4, NULL, NULL), -EADDRNOTAVAIL);
	/* connect pretending to come from web's address */
	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 4);
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, &src, &a, &ep, NULL), -EADDRNOTAVAIL);
	/* a port outside the guest's listen ports */
	assert_int_equal(open_guest(&raw, "web"), 0);
	a = wildcard(22);
	assert_int_equal(cn_op_listen(&raw, CN_L4_TCP, &a, 4, NULL, NULL), -EACCES);
	cn_op_close(&raw);
	/* the socket of a guest with another uid */
	guest_path(path, sizeof(path), "locked");
	assert_int_not_equal(cn_op_open(&locked, path), 0);
	assert_true(log_has("guest locked: refused a session"));
	/* another guest cannot close (or learn about) our circuits */
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);
	assert_int_equal(open_guest(&cache, "cache"), 0);
	assert_int_equal(cn_op_closed(&cache, k.ci.circuit_id), 0);
	assert_int_equal(own_circuits(&cache), 0);
	assert_int_equal(own_circuits(&client), 1);
	check_talks(&k.c, &k.s);
	close_pair(&client, &web, &k);
	cn_op_close(&cache);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

static void test_backlog(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct cn_local_ep eps[3], ep;
	struct cn_addr d = addr("10.9.0.2:80");
	int i;

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 2);
	assert_int_equal(open_guest(&client, "client"), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &eps[i], NULL), 0);
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNREFUSED);
	assert_int_equal(cn_op_accept(&web.op, &ep, NULL, 0), 0);
	/* an accept frees a slot: the operator must have seen the ACCEPTED first */
	for (i = 0; i < 100; i++) {
		int err = cn_op_connect(&client, CN_L4_TCP, NULL, &d, &eps[2], NULL);

		if (!err)
			break;
		assert_int_equal(err, -ECONNREFUSED);
		usleep(10000);
	}
	assert_true(i < 100);
	cn_local_close(&ep);
	for (i = 0; i < 3; i++)
		cn_local_close(&eps[i]);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

static void test_limits(void **state)
{
	struct listener_g web;
	struct cn_op client, sess[17];
	struct cn_local_ep *c = calloc(41, sizeof(*c)), *s = calloc(41, sizeof(*s));
	struct cn_addr d = addr("10.9.0.2:80");
	int i, n = 0;

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 64);
	assert_int_equal(open_guest(&client, "client"), 0);
	/* client: max-circuits 40 */
	for (i = 0; i < 40; i++) {
		assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &c[i], NULL), 0);
		assert_int_equal(cn_op_accept(&web.op, &s[i], NULL, 0), 0);
	}
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &c[40], NULL), -ENOBUFS);
	cn_op_close(&client); /* the session's circuits leave the accounting with it */
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &c[40], NULL), 0);
	assert_int_equal(cn_op_accept(&web.op, &s[40], NULL, 0), 0);
	for (i = 0; i < 41; i++) {
		cn_local_close(&c[i]);
		cn_local_close(&s[i]);
	}
	free(c);
	free(s);
	/* flood: max-sessions 16 */
	for (i = 0; i < 17; i++)
		if (!open_guest(&sess[i], "flood"))
			n++;
	assert_int_equal(n, 16);
	assert_true(log_has("max-sessions 16 reached"));
	for (i = 0; i < 17; i++)
		if (sess[i].fd >= 0)
			cn_op_close(&sess[i]);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

static void test_udp(void **state)
{
	struct listener_g dns, cl;
	struct cn_op plain;
	struct cn_local_ep c, s;
	struct cn_op_conn ci, si;
	struct cn_addr d = addr("10.9.0.2:53");
	char buf[64];

	listen_on(&dns, "web", CN_L4_UDP, wildcard(53), 16);
	listen_on(&cl, "client", CN_L4_UDP, wildcard(0), 16); /* an ephemeral port */
	assert_true(cl.bound.port >= 32768);
	/* datagram circuits run from the bound socket's session only */
	assert_int_equal(open_guest(&plain, "client"), 0);
	assert_int_equal(cn_op_connect(&plain, CN_L4_UDP, &cl.bound, &d, &c, NULL), -EINVAL);
	cn_op_close(&plain);
	assert_int_equal(cn_op_connect(&cl.op, CN_L4_UDP, &cl.bound, &d, &c, &ci), 0);
	assert_int_equal(cn_op_accept(&dns.op, &s, &si, 0), 0);
	assert_int_equal(si.l4, CN_L4_UDP);
	assert_int_equal(si.remote.port, cl.bound.port);
	assert_int_equal(cn_send(&c.ep, "query", 5, 0), 5);
	assert_int_equal(cn_send(&c.ep, "q2", 2, 0), 2);
	assert_int_equal(cn_recv(&s.ep, buf, sizeof(buf), 0), 5);
	assert_int_equal(cn_recv(&s.ep, buf, sizeof(buf), 0), 2);
	assert_int_equal(cn_send(&s.ep, "answer", 6, 0), 6);
	assert_int_equal(cn_recv(&c.ep, buf, sizeof(buf), 0), 6);
	assert_memory_equal(buf, "answer", 6);
	cn_local_close(&c);
	cn_local_close(&s);
	/* udp to a port nobody bound: refused (ICMP port unreachable on Linux) */
	d = addr("10.9.0.2:54");
	assert_int_equal(cn_op_connect(&cl.op, CN_L4_UDP, &cl.bound, &d, &c, NULL), -ECONNREFUSED);
	cn_op_close(&cl.op);
	cn_op_close(&dns.op);
}

static void send_raw(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
}

static int raw_session(const char *guest)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);

	guest_path(sa.sun_path, sizeof(sa.sun_path), guest);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void test_protocol_violations(void **state)
{
	struct cn_msg_hello h;
	union cn_msg m;
	struct timeval tv = { .tv_sec = 5 };
	struct cn_op ok;
	char out[4096];
	int fd;

	/* garbage: dropped without an answer worth reading */
	fd = raw_session("web");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	send_raw(fd, "garbage", 7);
	while (recv(fd, &m, sizeof(m), 0) > 0)
		;
	close(fd);
	/* another version: EPROTONOSUPPORT, then dropped */
	fd = raw_session("web");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cn_msg_init(&h.h, CN_MSG_HELLO, sizeof(h), 7);
	h.h.version = 99;
	send_raw(fd, &h, sizeof(h));
	assert_int_equal(recv(fd, &m, sizeof(m), 0), (ssize_t)sizeof(struct cn_msg_error));
	assert_int_equal(m.h.type, CN_MSG_ERROR);
	assert_int_equal(m.error.err, EPROTONOSUPPORT);
	assert_int_equal(recv(fd, &m, sizeof(m), 0), 0);
	close(fd);
	/* a request before HELLO: ENOTCONN, the session stays */
	fd = raw_session("web");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cn_msg_init(&m.h, CN_MSG_QUERY, sizeof(m.h), 9);
	send_raw(fd, &m, sizeof(m.h));
	assert_int_equal(recv(fd, &m, sizeof(m), 0), (ssize_t)sizeof(struct cn_msg_error));
	assert_int_equal(m.error.err, ENOTCONN);
	/* a message type only the operator sends: dropped */
	cn_msg_init(&m.h, CN_MSG_OK, sizeof(m.h), 10);
	send_raw(fd, &m, sizeof(m.h));
	assert_int_equal(recv(fd, &m, sizeof(m), 0), (ssize_t)sizeof(struct cn_msg_error));
	assert_int_equal(recv(fd, &m, sizeof(m), 0), 0);
	close(fd);
	/* longer than any message: dropped */
	fd = raw_session("web");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	{
		char big[4096] = { 0 };

		send_raw(fd, big, sizeof(big));
		while (recv(fd, &m, sizeof(m), 0) > 0)
			;
	}
	close(fd);
	/* a valid HELLO with an fd attached: guests send no fds */
	fd = raw_session("web");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cn_msg_init(&h.h, CN_MSG_HELLO, sizeof(h), 1);
	{
		int devnull = open("/dev/null", O_RDONLY);

		assert_int_equal(cn_send_fds(fd, &devnull, 1, &h, sizeof(h)), 0);
		close(devnull);
	}
	assert_int_equal(recv(fd, &m, sizeof(m), 0), (ssize_t)sizeof(struct cn_msg_error));
	assert_int_equal(m.error.err, EBADMSG);
	assert_int_equal(recv(fd, &m, sizeof(m), 0), 0);
	close(fd);
	assert_true(log_has("protocol violation: message too long, or too many fds"));
	assert_true(log_has("protocol violation: wrong number of fds for the message type"));
	/* the operator serves everyone else as before */
	assert_int_equal(open_guest(&ok, "web"), 0);
	cn_op_close(&ok);
	assert_int_equal(ctl(out, sizeof(out), "status --json"), 0);
	assert_null(strstr(out, "\"protocol_violations\":0,"));
	assert_null(strstr(out, "\"protocol_violations\":0}"));
}

/*
 * A guest floods the operator from 16 sessions with pipelined connect
 * requests; an honest guest's setups must still go through promptly.
 */
static void flood_child(int secs)
{
	struct cn_op s[16];
	struct cn_msg_connect req;
	union cn_msg m;
	time_t end = time(NULL) + secs;
	unsigned long sent = 0, answered = 0;
	int i, j, n = 0;

	for (i = 0; i < 16; i++)
		if (!open_guest(&s[n], "flood"))
			n++;
	cn_msg_init(&req.h, CN_MSG_CONNECT, sizeof(req), 1);
	req.l4 = CN_L4_TCP;
	req.dst = addr("10.9.0.3:6379"); /* denied: every request costs a policy check */
	while (time(NULL) < end) {
		for (i = 0; i < n; i++) {
			for (j = 0; j < 32; j++)
				if (send(s[i].fd, &req, sizeof(req), MSG_DONTWAIT) == sizeof(req))
					sent++;
			while (recv(s[i].fd, &m, sizeof(m), MSG_DONTWAIT) > 0)
				answered++;
		}
	}
	fprintf(stderr, "flood: %d sessions, %lu requests sent, %lu answered\n", n, sent, answered);
	_exit(answered > 1000 ? 0 : 1);
}

static void test_flood_fairness(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct timespec t0, t1;
	double worst = 0;
	pid_t child;
	int i, status;
	unsigned int denials_before = log_count("denied: tcp flood");

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	fflush(stdout);
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		flood_child(3);
	usleep(300000); /* let the flood build up */
	for (i = 0; i < 200; i++) {
		struct conn k;
		double dt;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (dt > worst)
			worst = dt;
		close_pair(&client, &web, &k);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	printf("honest guest: 200 setups during the flood, worst %.1f ms\n", worst * 1e3);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0); /* the flood was real */
	assert_true(worst < 0.5);
	/* refusals are logged at a bounded rate, not once per request */
	assert_true(log_count("denied: tcp flood") - denials_before <= 5 * 20);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

static void test_reload(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct cn_local_ep ep;
	struct cn_addr d = addr("10.9.0.2:80");
	struct conn k;
	char out[8192], bad[200];
	int i;

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);

	/* a bad file: rejected with file:line:col, old policy in force */
	write_file(cfg_path, "guest web {\n    address 10.9.0.2\n    listen tcp 80-\n}\n");
	kill(op_pid, SIGHUP);
	snprintf(bad, sizeof(bad), "%s:3:16: bad port in '80-'", cfg_path);
	assert_true(log_has(bad));
	assert_true(log_has("reload rejected, the old policy stays in force"));
	assert_int_equal(ctl(out, sizeof(out), "status --json"), 0);
	assert_non_null(strstr(out, "\"reload_failures\":1"));
	assert_int_equal(ctl(out, sizeof(out), "reload"), 1);
	assert_non_null(strstr(out, bad));
	{
		struct conn k2;

		assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k2), 0);
		close_pair(&client, &web, &k2);
	}

	/* a good file that denies client -> web: new setups refused, old circuit kept */
	write_file(cfg_path, "log-level debug\nnetwork 10.9.0.0/24\n"
			     "guest web {\n address 10.9.0.2 fd09::2\n listen tcp 80\n}\n"
			     "guest client {\n address 10.9.0.10\n}\n"
			     "deny tcp from client to web\n");
	assert_int_equal(ctl(out, sizeof(out), "reload"), 0);
	assert_non_null(strstr(out, "0 circuits reset"));
	/* guests gone from the file lose their sockets */
	{
		char path[256];

		guest_path(path, sizeof(path), "cache");
		assert_int_not_equal(access(path, F_OK), 0);
	}
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNREFUSED);
	check_talks(&k.c, &k.s);
	assert_int_equal(ctl(out, sizeof(out), "policy"), 0);
	assert_non_null(strstr(out, "deny"));

	/* reload --reset revokes it: both ends are told */
	assert_int_equal(ctl(out, sizeof(out), "reload --reset"), 0);
	assert_non_null(strstr(out, "1 circuits reset"));
	assert_int_equal(own_circuits(&client), 0); /* a call: picks the RESET push up */
	assert_int_equal(client.nresets, 1);
	assert_int_equal(client.resets[0], k.ci.circuit_id);
	assert_int_equal(cn_op_accept(&web.op, &ep, NULL, 1), -EAGAIN);
	assert_int_equal(web.op.nresets, 1);
	for (i = 0; i < 2; i++)
		cn_local_close(i ? &k.s : &k.c);

	write_config("");
	assert_int_equal(ctl(out, sizeof(out), "reload"), 0);
	{
		struct cn_op cache;

		assert_int_equal(open_guest(&cache, "cache"), 0); /* back, with a new socket */
		cn_op_close(&cache);
	}
	cn_op_close(&client);
	cn_op_close(&web.op);
}

static void test_restart_keeps_circuits(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct cn_local_ep ep;
	struct cn_addr d = addr("10.9.0.2:80");
	struct conn k;

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);
	op_stop();
	/* the data path does not need the operator */
	check_talks(&k.c, &k.s);
	/* new setups fail cleanly while it is down */
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNABORTED);
	cn_op_close(&client);
	assert_true(open_guest(&client, "client") < 0);
	op_start();
	check_talks(&k.c, &k.s);
	/* guests register again and work */
	cn_op_close(&web.op);
	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	{
		struct conn k2;

		assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k2), 0);
		check_talks(&k2.c, &k2.s);
		close_pair(&client, &web, &k2);
	}
	check_talks(&k.c, &k.s);
	cn_local_close(&k.c);
	cn_local_close(&k.s);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

/*
 * A listener on a durable channel (CN_LISTEN_CHANNEL): it lives on its
 * channel, not on the session that asked; the same channel sent again is the
 * same listener; another guest cannot take it; a killed operator leaves it
 * quiet (no hang-up, nothing to read), and a new operator takes it again.
 */
static void test_channel_listener(void **state)
{
	struct cn_op ses, lst = { .fd = -1 }, client, other;
	struct cn_addr bound, any80 = wildcard(80), d = addr("10.9.0.2:80");
	struct pollfd p;
	uint64_t id, id2, id3;
	char out[8192];
	struct conn k;
	int i;

	assert_int_equal(open_guest(&ses, "web"), 0);
	assert_int_equal(cn_op_listen_channel(&ses, &lst, CN_L4_TCP, &any80, 8, 0, &bound, &id), 0);
	assert_true(lst.durable);
	assert_int_equal(bound.port, 80);
	cn_op_close(&ses); /* the asking session goes; the listener stays with its channel */
	assert_int_equal(open_guest(&client, "client"), 0);
	{
		struct listener_g l = { .op = lst, .id = id };

		assert_int_equal(connect_pair(&client, &l, "10.9.0.2:80", &k), 0);
		check_talks(&k.c, &k.s);
		close_pair(&client, &l, &k);
		lst = l.op;
	}
	/* sent again by another session of the guest (a process sharing it): as it is */
	assert_int_equal(open_guest(&ses, "web"), 0);
	assert_int_equal(cn_op_listen_channel(&ses, &lst, CN_L4_TCP, &any80, 8, 0, &bound, &id2), 0);
	assert_true(id2 == id);
	/* another guest that got hold of the channel cannot make it its own */
	assert_int_equal(open_guest(&other, "cache"), 0);
	assert_int_equal(cn_op_listen_channel(&other, &lst, CN_L4_TCP, &any80, 8, 0, NULL, NULL),
			 -EPERM);
	assert_true(log_has("refused another guest's listener channel (guest web)"));
	cn_op_close(&other);
	cn_op_close(&ses);
	cn_op_close(&client);

	op_kill();
	/* the channel outlives the operator: no hang-up, nothing to accept */
	p = (struct pollfd){ .fd = lst.fd, .events = POLLIN | POLLRDHUP };
	assert_int_equal(poll(&p, 1, 200), 0);
	{
		struct cn_local_ep ep;
		struct cn_op_conn conn;

		assert_int_equal(cn_op_accept(&lst, &ep, &conn, 1), -EAGAIN);
	}
	op_start();
	assert_int_equal(poll(&p, 1, 100), 0);
	/* registered again with the new operator: a new listener there, the same channel here */
	assert_int_equal(open_guest(&ses, "web"), 0);
	assert_int_equal(cn_op_listen_channel(&ses, &lst, CN_L4_TCP, &any80, 8, 0, &bound, &id3), 0);
	assert_true(id3 != id);
	assert_int_equal(ctl(out, sizeof(out), "listeners"), 0);
	assert_non_null(strstr(out, "web"));
	assert_int_equal(open_guest(&client, "client"), 0);
	{
		struct listener_g l = { .op = lst, .id = id3 };

		assert_int_equal(connect_pair(&client, &l, "10.9.0.2:80", &k), 0);
		check_talks(&k.c, &k.s);
		close_pair(&client, &l, &k);
		lst = l.op;
	}
	/* the app closes its listener: both ends go, the operator forgets it */
	cn_op_close(&lst);
	for (i = 0; i < 100; i++) {
		struct cn_local_ep ep;
		int err = cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL);

		if (err == -ECONNREFUSED)
			break;
		assert_int_equal(err, 0);
		cn_local_close(&ep);
		usleep(10000);
	}
	assert_true(i < 100);
	cn_op_close(&client);
	cn_op_close(&ses);
}

struct timed_connect {
	struct cn_op *op;
	const char *dst;
	struct cn_local_ep ep;
	int err;
	int64_t ms;
};

static void *timed_connect(void *arg)
{
	struct timed_connect *t = arg;
	struct cn_addr d = addr(t->dst);
	int64_t t0 = now_ms();

	t->err = cn_op_connect(t->op, CN_L4_TCP, NULL, &d, &t->ep, NULL);
	t->ms = now_ms() - t0;
	return NULL;
}

/*
 * The restart grace: in the first --restart-grace ms of an operator, a
 * connect to a guest port nobody listens on waits for the listener (it
 * registers again after a restart) instead of being refused; once the grace
 * is over, refusals are immediate as ever.
 */
static void test_restart_grace(void **state)
{
	struct timed_connect t = { 0 };
	struct listener_g web;
	struct cn_op client;
	struct cn_local_ep ep;
	struct cn_op_conn si;
	struct cn_addr d = addr("10.9.0.2:80");
	pthread_t th;
	int64_t t0;
	char out[8192];

	op_stop();
	op_grace = "--restart-grace=1500";
	op_start();
	assert_int_equal(open_guest(&client, "client"), 0);
	t.op = &client;
	t.dst = "10.9.0.2:80";
	assert_int_equal(pthread_create(&th, NULL, timed_connect, &t), 0);
	usleep(300000);
	assert_int_equal(ctl(out, sizeof(out), "status --json"), 0);
	assert_non_null(strstr(out, "\"parked\":1,"));
	/* the listener comes: the parked connect is decided, and succeeds */
	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	pthread_join(th, NULL);
	assert_int_equal(t.err, 0);
	assert_true(t.ms >= 250);
	assert_int_equal(cn_op_accept(&web.op, &ep, &si, 0), 0);
	check_talks(&t.ep, &ep);
	cn_local_close(&t.ep);
	cn_local_close(&ep);
	cn_op_close(&web.op);
	usleep(100000);
	/* a port nobody listens on any more: refused when the grace ends, not before */
	t0 = now_ms();
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNREFUSED);
	assert_true(now_ms() - t0 >= 500);
	/* after the grace: at once */
	t0 = now_ms();
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, NULL), -ECONNREFUSED);
	assert_true(now_ms() - t0 < 300);
	cn_op_close(&client);
	op_stop();
	op_grace = "--restart-grace=2000";
	op_start();
}

static void test_circnetctl(void **state)
{
	char out[16384], path[256];

	assert_int_equal(ctl(out, sizeof(out), "status"), 0);
	assert_non_null(strstr(out, "guests     5"));
	assert_int_equal(ctl(out, sizeof(out), "guests"), 0);
	assert_non_null(strstr(out, "web              10.9.0.2,fd09::2"));
	assert_int_equal(ctl(out, sizeof(out), "guests --json"), 0);
	assert_non_null(strstr(out, "{\"name\":\"client\""));
	assert_non_null(strstr(out, "\"max_circuits\":40"));
	assert_int_equal(ctl(out, sizeof(out), "policy --json"), 0);
	assert_non_null(strstr(out, "\"action\":\"proxy\",\"proto\":\"tcp\",\"from\":\"client\","
				    "\"to\":\"198.51.100.0/24\",\"ports\":\"443\""));
	assert_int_equal(ctl(out, sizeof(out), "check-config %s", cfg_path), 0);
	assert_non_null(strstr(out, ": ok (5 guests"));
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	write_file(path, "guest a {\n  address 10.0.0.1\n}\nallow tcp from a to nobody\n");
	assert_int_equal(ctl(out, sizeof(out), "check-config %s", path), 1);
	assert_non_null(strstr(out, "bad.conf:4:21: unknown guest 'nobody'"));
	assert_int_equal(ctl(out, sizeof(out), "bogus"), 2);
	assert_int_equal(ctl(out, sizeof(out), "status --yaml"), 2);
}

/* ---- pair regions (operator/pool.c) ---- */

static unsigned long long status_num(const char *key)
{
	char out[16384], *p;

	assert_int_equal(ctl(out, sizeof(out), "status --json"), 0);
	p = strstr(out, key);
	assert_non_null(p);
	return strtoull(p + strlen(key), NULL, 10);
}

/* Wait up to 3 s until the status's total key is n. */
static void wait_status(const char *key, unsigned long long n)
{
	int i;

	for (i = 0; i < 300 && status_num(key) != n; i++)
		usleep(10000);
	assert_int_equal(status_num(key), n);
}

/* Wait until the operator counts n slots in use (leases hang up asynchronously). */
static void wait_slots(unsigned long long n)
{
	wait_status("\"slots_in_use\":", n);
}

static void wait_circuits(unsigned long long n)
{
	wait_status("\"circuits\":", n);
}

/*
 * Circuits between one pair share a chunk; a slot is reused only after
 * every holder of both ends let go (a forked child holding one end keeps
 * it), and a late write into the old circuit never reaches the new one.
 */
static void test_pool_slot_reuse(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct conn k, k2, k3;
	int go[2], status;
	char buf[64];
	pid_t child;

	wait_slots(0);
	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);
	assert_true(k.ci.chunk_id != 0);
	assert_int_equal(k.ci.chunk_id, k.si.chunk_id);
	assert_int_equal(k.ci.slot_off, k.si.slot_off);
	assert_true(cn_local_pooled(&k.c) && cn_local_pooled(&k.s));
	check_talks(&k.c, &k.s);
	wait_slots(1);

	/* a child holds the initiator's end; the parent closes every end it has */
	assert_int_equal(pipe(go), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(go[1]);
		if (read(go[0], buf, 1) != 1)
			_exit(2);
		/* the late write: over all of the old circuit, whatever happened since */
		memset(k.c.region.base, 'L', k.c.region.size);
		_exit(0);
	}
	close(go[0]);
	cn_local_detach(&k.c);
	cn_local_close(&k.s);
	cn_op_closed(&client, k.ci.circuit_id);
	cn_op_closed(&web.op, k.si.circuit_id);

	/* the slot is still held by the child: a new circuit goes elsewhere */
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k2), 0);
	assert_int_equal(k2.ci.chunk_id, k.ci.chunk_id); /* same pair, same chunk */
	assert_true(k2.ci.slot_off != k.ci.slot_off);
	assert_true(k2.ci.circuit_id != k.ci.circuit_id);
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(cn_recv(&k2.s.ep, buf, sizeof(buf), CN_MSG_DONTWAIT), -EAGAIN);
	check_talks(&k2.c, &k2.s);

	/* the child is gone: the old slot is free again, and is reused clean */
	wait_slots(1);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k3), 0);
	assert_int_equal(k3.ci.chunk_id, k.ci.chunk_id);
	assert_int_equal(k3.ci.slot_off, k.ci.slot_off);
	assert_int_equal(cn_recv(&k3.s.ep, buf, sizeof(buf), CN_MSG_DONTWAIT), -EAGAIN);
	check_talks(&k3.c, &k3.s);
	close_pair(&client, &web, &k2);
	close_pair(&client, &web, &k3);
	wait_slots(0);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

/*
 * A guest that scribbles over a whole pair region breaks circuits of that
 * pair only: its ends fail cleanly (no crash, no read outside), the pair
 * (flood, web) next to it keeps working, and a new circuit of the
 * scribbled pair is formatted afresh and works.
 */
static void test_pool_hostile_scribble(void **state)
{
	struct listener_g web;
	struct cn_op client, flood;
	struct conn k[3], f, fresh;
	unsigned char *base;
	size_t size, i;
	char buf[256];
	uint32_t x = 12345;
	int j;

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(open_guest(&flood, "flood"), 0);
	for (j = 0; j < 3; j++)
		assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k[j]), 0);
	assert_int_equal(connect_pair(&flood, &web, "10.9.0.2:80", &f), 0);
	assert_true(f.ci.chunk_id != k[0].ci.chunk_id); /* another pair, another chunk */

	base = cn_chunk_base(k[0].c.chunk);
	size = cn_chunk_size(k[0].c.chunk);
	for (i = 0; i < size; i += 4) {
		x = x * 1103515245u + 12345u;
		memcpy(base + i, &x, 4);
	}
	for (j = 0; j < 3; j++) {
		ssize_t r = cn_recv(&k[j].s.ep, buf, sizeof(buf), CN_MSG_DONTWAIT);

		/* garbage or an error: never a crash, never more than asked */
		assert_true(r <= (ssize_t)sizeof(buf));
		r = cn_send(&k[j].c.ep, "x", 1, CN_MSG_DONTWAIT);
		assert_true(r == 1 || r < 0);
		(void)cn_poll(&k[j].c.ep);
		(void)cn_readable(&k[j].s.ep);
	}
	check_talks(&f.c, &f.s);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &fresh), 0);
	check_talks(&fresh.c, &fresh.s);
	for (j = 0; j < 3; j++)
		close_pair(&client, &web, &k[j]);
	close_pair(&client, &web, &fresh);
	close_pair(&flood, &web, &f);
	wait_slots(0);
	cn_op_close(&client);
	cn_op_close(&flood);
	cn_op_close(&web.op);
}

/*
 * Ends closed in the books but still held (their leases open) are bounded by
 * the guest's max-circuits as well, until they are really let go: a guest
 * cannot make the operator hold slots and leases without bound by sending
 * CLOSED and keeping the circuits.
 */
static void test_pool_lingering(void **state)
{
	static struct conn k[41];
	struct listener_g web;
	struct cn_op client;
	struct cn_local_ep ep;
	struct cn_op_conn ci;
	struct cn_addr d = addr("10.9.0.2:80");
	int i;

	wait_slots(0);
	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 64);
	assert_int_equal(open_guest(&client, "client"), 0); /* max-circuits 40 */
	for (i = 0; i < 41; i++) {
		assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k[i]), 0);
		cn_local_close(&k[i].s);
		cn_op_closed(&web.op, k[i].si.circuit_id);
		cn_op_closed(&client, k[i].ci.circuit_id); /* but keeps it */
	}
	assert_int_equal(own_circuits(&client), 0);
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, &ci), -ENOBUFS);
	for (i = 0; i < 41; i++)
		cn_local_close(&k[i].c);
	wait_slots(0);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k[0]), 0);
	check_talks(&k[0].c, &k[0].s);
	close_pair(&client, &web, &k[0]);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

/*
 * An end whose last holder let go without a CLOSED (a process that accepted
 * through a listener it shares with a sibling, while its own session to a
 * restarted operator was not up yet, has nobody to tell) is closed in the
 * books when its lease hangs up: the circuit does not stay counted.
 */
static void test_pool_end_gone(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct conn k;
	unsigned long long gone = status_num("\"ends_gone\":");

	(void)state;
	wait_slots(0);
	wait_circuits(0);
	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);
	check_talks(&k.c, &k.s);
	assert_int_equal(own_circuits(&client), 1);
	cn_local_close(&k.s); /* the acceptor goes, no CLOSED */
	wait_slots(1);
	wait_circuits(1); /* its end is closed; the client's is still open */
	assert_int_equal(own_circuits(&client), 1);
	assert_int_equal(status_num("\"ends_gone\":"), gone + 1);
	cn_local_close(&k.c); /* and the initiator, no CLOSED either */
	wait_circuits(0);
	wait_slots(0);
	assert_int_equal(own_circuits(&client), 0);
	assert_int_equal(status_num("\"ends_gone\":"), gone + 2);
	/* a CLOSED that comes late for an end already gone is ignored */
	cn_op_closed(&client, k.ci.circuit_id);
	assert_int_equal(own_circuits(&client), 0);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

/*
 * Pipelined connects: many in flight on one session, collected in any
 * order, with a synchronous request and a refused connect among them; at
 * most CN_OP_INFLIGHT; what is never collected is cleaned up.
 */
static void test_pipelined_connects(void **state)
{
	static struct conn k[8];
	struct listener_g web;
	struct cn_op client;
	struct cn_addr d = addr("10.9.0.2:80"), nobody = addr("10.9.0.2:81");
	struct cn_local_ep ep;
	uint32_t seq[8], bad, many[CN_OP_INFLIGHT], extra;
	int i, j;

	(void)state;
	wait_slots(0);
	wait_circuits(0);
	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 64);
	assert_int_equal(open_guest(&client, "client"), 0);
	for (i = 0; i < 8; i++) {
		assert_int_equal(cn_op_connect_send(&client, CN_L4_TCP, NULL, &d, 0, &seq[i]), 0);
		if (i == 3)
			assert_int_equal(cn_op_connect_send(&client, CN_L4_TCP, NULL, &nobody, 0,
							    &bad), 0);
	}
	/* a request in between: the replies before its own are kept */
	assert_int_equal(own_circuits(&client), 8);
	assert_int_equal(cn_op_connect_recv(&client, bad, &ep, NULL), -ECONNREFUSED);
	assert_int_equal(cn_op_connect_recv(&client, bad, &ep, NULL), -ENOENT);
	for (i = 7; i >= 0; i--)
		assert_int_equal(cn_op_connect_recv(&client, seq[i], &k[i].c, &k[i].ci), 0);
	/* accepted in push order, not the order collected: paired up by circuit id */
	for (i = 0; i < 8; i++)
		assert_int_equal(cn_op_accept(&web.op, &k[i].s, &k[i].si, 0), 0);
	for (i = 0; i < 8; i++) {
		for (j = 0; j < 8 && k[j].ci.circuit_id != k[i].si.circuit_id; j++)
			;
		assert_true(j < 8);
		check_talks(&k[j].c, &k[i].s);
	}
	for (i = 0; i < 8; i++)
		close_pair(&client, &web, &k[i]);
	wait_circuits(0);

	/* a full pipeline, then no more until one is collected */
	for (i = 0; i < CN_OP_INFLIGHT; i++)
		assert_int_equal(cn_op_connect_send(&client, CN_L4_TCP, NULL, &nobody, 0, &many[i]),
				 0);
	assert_int_equal(cn_op_connect_send(&client, CN_L4_TCP, NULL, &nobody, 0, &extra), -EBUSY);
	for (i = 0; i < CN_OP_INFLIGHT; i++)
		assert_int_equal(cn_op_connect_recv(&client, many[i], &ep, NULL), -ECONNREFUSED);

	/* connects never collected: the session's close drops their circuits */
	for (i = 0; i < 2; i++)
		assert_int_equal(cn_op_connect_send(&client, CN_L4_TCP, NULL, &d, 0, &seq[i]), 0);
	assert_int_equal(own_circuits(&client), 2);
	cn_op_close(&client);
	for (i = 0; i < 2; i++) {
		assert_int_equal(cn_op_accept(&web.op, &k[i].s, &k[i].si, 0), 0);
		cn_local_close(&k[i].s);
		cn_op_closed(&web.op, k[i].si.circuit_id);
	}
	cn_op_flush(&web.op);
	wait_circuits(0);
	wait_slots(0);
	cn_op_close(&web.op);
}

/* A freed slot gives its data pages back once it stayed free a while. */
static void test_pool_pages_return(void **state)
{
	struct listener_g web;
	struct cn_op client;
	struct conn k;
	static char blob[12000];
	unsigned char vec[64];
	unsigned char *slot;
	size_t pages, i, resident;
	char *p;

	listen_on(&web, "web", CN_L4_TCP, wildcard(80), 16);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(connect_pair(&client, &web, "10.9.0.2:80", &k), 0);
	memset(blob, 'b', sizeof(blob));
	assert_int_equal(cn_send(&k.c.ep, blob, sizeof(blob), 0), (ssize_t)sizeof(blob));
	assert_int_equal(cn_recv(&k.s.ep, blob, sizeof(blob), CN_MSG_WAITALL),
			 (ssize_t)sizeof(blob));
	/* the chunk stays mapped (idle LRU), so the slot's pages can be looked at */
	slot = (unsigned char *)k.c.region.base;
	pages = k.c.region.size / 4096;
	assert_true(pages <= sizeof(vec));
	p = (char *)slot;
	assert_int_equal(mincore(p, pages * 4096, vec), 0);
	for (i = 1, resident = 0; i < pages; i++)
		resident += vec[i] & 1;
	assert_true(resident >= 3); /* ring A's 12000 bytes */
	close_pair(&client, &web, &k);
	wait_slots(0);
	usleep(800 * 1000); /* past the sweep delay (pool.c) */
	status_num("\"slots_in_use\":"); /* the operator ran a round since */
	assert_int_equal(mincore(p, pages * 4096, vec), 0);
	for (i = 1, resident = 0; i < pages; i++)
		resident += vec[i] & 1;
	assert_int_equal(resident, 0);
	assert_true(status_num("\"chunks\":") >= 1);
	cn_op_close(&client);
	cn_op_close(&web.op);
}

/* ---- VM guests: this test plays QEMU (circnet/vm.h, operator/vm.c) ---- */

/* Guest vmx becomes a VM with a reload (and goes away with the next). */
static const char *const vm_guest = "guest vmx {\n"
				    "    address 10.9.0.40\n"
				    "    group clients\n"
				    "    vm ivshmem\n"
				    "    vm-memory 1M\n"
				    "    listen tcp 8080\n"
				    "    listen tcp 8081\n"
				    "}\n"
				    "allow tcp from client to vmx port 8080\n"
				    "allow tcp from client to vmx port 8081\n"
				    "guest vmy {\n"
				    "    address 10.9.0.41\n"
				    "    vm ivshmem\n"
				    "    vm-memory 1M\n"
				    "    listen tcp 9000\n"
				    "}\n"
				    "allow tcp from vmx to vmy port 9000\n";

static void vm_guest_add(void)
{
	char out[4096];

	write_config(vm_guest);
	assert_int_equal(ctl(out, sizeof(out), "reload"), 0);
}

static void vm_guest_remove(void)
{
	char out[4096];

	write_config("");
	assert_int_equal(ctl(out, sizeof(out), "reload"), 0);
}

struct fake_pair { /* a pair device, as QEMU holds it */
	int sock;
	uint32_t position;
	void *mem;
	int host_vec[CN_VM_PAIR_VECTORS]; /* peer 0's: we ring them */
	int vm_vec[CN_VM_PAIR_VECTORS];	  /* ours */
};

struct fake_vm {
	const char *name;
	int sock;
	void *mem;
	size_t size;
	int op_vec[3]; /* the operator's vectors: we ring them */
	int my_vec[CN_VM_VECTORS]; /* ours: the operator rings them */
	struct cn_notifier notif[4];
	struct cn_endpoint ep;
};

static int vm_connect_to(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/guests/%s/ivshmem.sock", run_dir, name);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* One ivshmem-server message: its int64 and its fd (or -1). */
static int64_t vm_msg(int sock, int *fd)
{
	int64_t v = -2;
	int nfds = 0;
	ssize_t n = cn_recv_fds(sock, fd, 1, &nfds, &v, sizeof(v));

	assert_int_equal(n, sizeof(v));
	if (!nfds)
		*fd = -1;
	return v;
}

static void vm_bell(int fd)
{
	uint64_t one = 1;

	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

/* Wait up to 3 s for an eventfd the operator rings. */
static void vm_wait_vec(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v;

	assert_int_equal(poll(&p, 1, 3000), 1);
	assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
}

/* A new control circuit, as the VM's driver asks for one, then attach it. */
static void vm_reset(struct fake_vm *v)
{
	vm_bell(v->op_vec[CN_VM_VEC_RESET]);
	vm_wait_vec(v->my_vec[CN_VM_VEC_RESET]);
	memset(&v->ep, 0, sizeof(v->ep));
	assert_int_equal(cn_ep_attach(&v->ep, v->mem, cn_vm_ctl_size(), CN_ROLE_INITIATOR), 0);
	cn_ep_set_notifiers(&v->ep, &v->notif[0], &v->notif[1], &v->notif[2], &v->notif[3]);
	cn_ep_set_timeouts(&v->ep, 3000, 3000);
}

static int vm_connect(void)
{
	return vm_connect_to("vmx");
}

/* What QEMU's ivshmem-doorbell device gets on connect, checked message by message. */
static void vm_attach_as(struct fake_vm *v, const char *name)
{
	int fd, i, seals;
	struct stat st;

	memset(v, 0, sizeof(*v));
	v->name = name;
	v->sock = vm_connect_to(name);
	assert_int_equal(vm_msg(v->sock, &fd), 0); /* protocol version */
	assert_int_equal(fd, -1);
	assert_int_equal(vm_msg(v->sock, &fd), CN_VM_PEER_GUEST);
	assert_int_equal(fd, -1);
	assert_int_equal(vm_msg(v->sock, &fd), -1); /* the memory */
	assert_true(fd >= 0);
	seals = fcntl(fd, F_GET_SEALS);
	assert_true((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
		    (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 1 << 20);
	v->size = (size_t)st.st_size;
	v->mem = mmap(NULL, v->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(v->mem != MAP_FAILED);
	close(fd);
	for (i = 0; i < 3; i++) {
		assert_int_equal(vm_msg(v->sock, &v->op_vec[i]), CN_VM_PEER_OPERATOR);
		assert_true(v->op_vec[i] >= 0);
	}
	for (i = 0; i < CN_VM_VECTORS; i++) {
		assert_int_equal(vm_msg(v->sock, &v->my_vec[i]), CN_VM_PEER_GUEST);
		assert_true(v->my_vec[i] >= 0);
	}
	/* we sleep on our RX/TX vectors and ring the operator's */
	for (i = 0; i < 2; i++) {
		assert_int_equal(cn_eventfd_notifier_init(&v->notif[i], dup(v->my_vec[i])), 0);
		assert_int_equal(cn_eventfd_notifier_init(&v->notif[2 + i], dup(v->op_vec[i])), 0);
	}
	vm_reset(v);
}

static void vm_attach(struct fake_vm *v)
{
	vm_attach_as(v, "vmx");
}

static void vm_detach(struct fake_vm *v)
{
	int i;

	for (i = 0; i < 4; i++)
		cn_notifier_release(&v->notif[i]);
	for (i = 0; i < 3; i++)
		close(v->op_vec[i]);
	for (i = 0; i < CN_VM_VECTORS; i++)
		close(v->my_vec[i]);
	munmap(v->mem, v->size);
	close(v->sock);
}

/* Pair device k of the same QEMU: id 2 + k, its memory, 64 vectors each side. */
static void vm_attach_pair_as(struct fake_pair *p, const char *name, int k)
{
	struct stat st;
	int fd, i;

	p->sock = vm_connect_to(name);
	assert_int_equal(vm_msg(p->sock, &fd), 0);
	p->position = CN_VM_PEER_GUEST + 1 + (uint32_t)k;
	assert_int_equal(vm_msg(p->sock, &fd), p->position);
	assert_int_equal(vm_msg(p->sock, &fd), -1);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 1 << 20);
	p->mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p->mem != MAP_FAILED);
	close(fd);
	for (i = 0; i < CN_VM_PAIR_VECTORS; i++)
		assert_int_equal(vm_msg(p->sock, &p->host_vec[i]), CN_VM_PEER_OPERATOR);
	for (i = 0; i < CN_VM_PAIR_VECTORS; i++)
		assert_int_equal(vm_msg(p->sock, &p->vm_vec[i]), p->position);
}

static void vm_attach_pair(struct fake_pair *p, int k)
{
	vm_attach_pair_as(p, "vmx", k);
}

static void vm_detach_pair(struct fake_pair *p)
{
	int i;

	for (i = 0; i < CN_VM_PAIR_VECTORS; i++) {
		close(p->host_vec[i]);
		close(p->vm_vec[i]);
	}
	munmap(p->mem, 1 << 20);
	close(p->sock);
}

static void vm_send(struct fake_vm *v, const struct cn_msg_hdr *h)
{
	assert_int_equal(cn_send(&v->ep, h, h->len, 0), (ssize_t)h->len);
}

static void vm_recv(struct fake_vm *v, union cn_msg *m, unsigned int type)
{
	const char *why;

	assert_int_equal(cn_recv(&v->ep, m, sizeof(m->h), CN_MSG_WAITALL), sizeof(m->h));
	assert_true(m->h.len >= sizeof(m->h) && m->h.len <= sizeof(*m));
	assert_int_equal(cn_recv(&v->ep, (char *)m + sizeof(m->h), m->h.len - sizeof(m->h),
				 CN_MSG_WAITALL),
			 (ssize_t)(m->h.len - sizeof(m->h)));
	assert_int_equal(cn_msg_validate(m, m->h.len, 0, &why), 0);
	assert_int_equal(m->h.type, type);
}

static void vm_hello(struct fake_vm *v)
{
	struct cn_msg_hello h;
	union cn_msg r;

	cn_msg_init(&h.h, CN_MSG_HELLO, sizeof(h), 7);
	vm_send(v, &h.h);
	vm_recv(v, &r, CN_MSG_HELLO_OK);
	assert_int_equal(r.h.seq, 7);
	assert_string_equal(r.hello_ok.name, v->name);
	assert_int_equal(r.hello_ok.naddr, 1);
}

/* The VM's own view in `circnetctl guests --json`: vm.KEY. */
static unsigned long long vm_view(const char *key)
{
	char out[32768], *p;

	assert_int_equal(ctl(out, sizeof(out), "guests --json"), 0);
	p = strstr(out, "\"name\":\"vmx\"");
	assert_non_null(p);
	p = strstr(p, "\"vm\":{");
	assert_non_null(p);
	p = strstr(p, key);
	assert_non_null(p);
	p += strlen(key);
	if (!strncmp(p, "true", 4))
		return 1;
	if (!strncmp(p, "false", 5))
		return 0;
	return strtoull(p, NULL, 10);
}

static void wait_vm_view(const char *key, unsigned long long n)
{
	int i;

	for (i = 0; i < 300 && vm_view(key) != n; i++)
		usleep(10000);
	assert_int_equal(vm_view(key), n);
}

static int op_fd_count(void)
{
	char cmd[128], out[32];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "ls /proc/%d/fd | wc -l", (int)op_pid);
	p = popen(cmd, "r");

	assert_non_null(p);
	assert_non_null(fgets(out, sizeof(out), p));
	pclose(p);
	return atoi(out);
}

/*
 * The operator as ivshmem server: the protocol's messages, a sealed memory
 * of vm-memory bytes, HELLO and 4000 pipelined ECHOs over the control
 * circuit (every byte compared), a second QEMU refused while the first
 * holds the VM's device, and nothing left behind once QEMU hangs up.
 */
static void test_vm_control_circuit(void **state)
{
	int fds_before, i, second, status;
	struct fake_pair pd;
	struct cn_msg_echo e;
	struct fake_vm v;
	union cn_msg r;
	pid_t child;
	char buf[8];

	vm_guest_add();
	fds_before = op_fd_count();
	vm_attach(&v);
	wait_status("\"vm_devices\":", 1);
	vm_hello(&v);
	for (i = 0; i < 4000; i++) {
		uint32_t k;

		cn_msg_init(&e.h, CN_MSG_ECHO, sizeof(e), (uint32_t)i + 1);
		e.len = (uint32_t)(i * 37) % (CN_ECHO_MAX + 1);
		for (k = 0; k < e.len; k++)
			e.data[k] = (uint8_t)(i + k);
		vm_send(&v, &e.h);
		if (i >= 31) { /* 32 in flight: both rings hold them */
			vm_recv(&v, &r, CN_MSG_ECHO_OK);
			assert_int_equal(r.h.seq, (uint32_t)i - 30);
			assert_int_equal(r.echo.len, (uint32_t)((i - 31) * 37) % (CN_ECHO_MAX + 1));
			for (k = 0; k < r.echo.len; k++)
				assert_int_equal(r.echo.data[k], (uint8_t)(i - 31 + k));
		}
	}
	for (i = 0; i < 31; i++)
		vm_recv(&v, &r, CN_MSG_ECHO_OK);
	assert_int_equal(r.h.seq, 4000);
	assert_true(vm_view("\"control_messages\":") >= 4001);

	/* the same QEMU's next device is a pair device, free until a peer comes */
	vm_attach_pair(&pd, 0);
	wait_status("\"vm_devices\":", 2);
	assert_int_equal(vm_view("\"pair_devices\":"), 1);
	assert_int_equal(vm_view("\"pairs_assigned\":"), 0);

	/* another QEMU for the same VM: hung up at once, nothing sent */
	child = fork();
	assert_true(child >= 0);
	if (!child) {
		second = vm_connect();
		_exit(recv(second, buf, sizeof(buf), 0) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(vm_view("\"attaches_refused\":"), 1);

	vm_detach_pair(&pd);
	vm_detach(&v);
	wait_status("\"vm_devices\":", 0);
	assert_int_equal(op_fd_count(), fds_before);
}

/*
 * A hostile VM: garbage over the control circuit's indices, then a message
 * of a wrong length, then one longer than any message. Each time the
 * operator drops the circuit, counts it, lives on, and a reset brings a
 * working circuit back. A request the VM may not make yet is answered
 * with an error, not a hang-up.
 */
static void test_vm_hostile(void **state)
{
	struct cn_msg_listen q;
	struct cn_msg_hdr bad;
	struct fake_vm v;
	union cn_msg r;
	uint8_t *p;
	size_t i;

	vm_attach(&v);
	vm_hello(&v);
	p = v.mem;
	for (i = 0; i < CN_DATA_OFF; i++)
		p[i] = (uint8_t)(i * 131 + 7);
	vm_bell(v.op_vec[CN_VM_VEC_RX]);
	vm_bell(v.op_vec[CN_VM_VEC_TX]);
	wait_vm_view("\"violations\":", 1);
	assert_int_equal(vm_view("\"control_ok\":"), 0);

	vm_reset(&v);
	vm_hello(&v);
	cn_msg_init(&bad, CN_MSG_HELLO, sizeof(bad), 1); /* a HELLO is longer */
	vm_send(&v, &bad);
	wait_vm_view("\"violations\":", 2);

	vm_reset(&v);
	cn_msg_init(&bad, CN_MSG_ECHO, sizeof(bad), 2);
	bad.len = 1u << 20; /* longer than any message: only its header is sent */
	assert_int_equal(cn_send(&v.ep, &bad, sizeof(bad), 0), sizeof(bad));
	wait_vm_view("\"violations\":", 3);

	vm_reset(&v);
	assert_int_equal(vm_view("\"control_ok\":"), 1);
	vm_hello(&v);
	cn_msg_init(&q.h, CN_MSG_LISTEN, sizeof(q), 3);
	q.l4 = CN_L4_UDP;
	q.flags = CN_LISTEN_PROXY; /* a VM is not the proxy stack */
	q.backlog = 8;
	q.addr.port = 8080;
	vm_send(&v, &q.h);
	vm_recv(&v, &r, CN_MSG_ERROR);
	assert_int_equal(r.error.err, EOPNOTSUPP);
	q.flags = 0; /* UDP on a port not in its listen ports */
	vm_send(&v, &q.h);
	vm_recv(&v, &r, CN_MSG_ERROR);
	assert_int_equal(r.error.err, EACCES);
	assert_int_equal(vm_view("\"violations\":"), 3);
	vm_detach(&v);
	wait_status("\"vm_devices\":", 0);
	vm_guest_remove();
	assert_true(ctl_reachable());
}

struct vm_bulk {
	struct cn_endpoint *ep;
	size_t bytes;
	uint64_t sum;
	int err;
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

/* Receive bytes and checksum them: the far side of a bulk transfer, in a thread. */
static void *vm_bulk_recv(void *arg)
{
	struct vm_bulk *b = arg;
	uint8_t buf[8192];
	size_t got = 0;

	b->sum = 0xcbf29ce484222325ull;
	while (got < b->bytes) {
		ssize_t n = cn_recv(b->ep, buf, sizeof(buf), 0);

		if (n <= 0) {
			b->err = n ? (int)n : -EPIPE;
			return NULL;
		}
		b->sum = fnv(b->sum, buf, (size_t)n);
		got += (size_t)n;
	}
	return NULL;
}

/* bytes from one endpoint to the other, every byte checked, wake-ups both ways */
static void vm_bulk(struct cn_endpoint *from, struct cn_endpoint *to, size_t bytes)
{
	struct vm_bulk b = { .ep = to, .bytes = bytes };
	uint64_t sum = 0xcbf29ce484222325ull;
	uint8_t buf[7000];
	size_t sent = 0, i;
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, vm_bulk_recv, &b), 0);
	while (sent < bytes) {
		size_t n = bytes - sent < sizeof(buf) ? bytes - sent : sizeof(buf);

		for (i = 0; i < n; i++)
			buf[i] = (uint8_t)((sent + i) * 2654435761u >> 13);
		assert_int_equal(cn_send(from, buf, n, 0), (ssize_t)n);
		sum = fnv(sum, buf, n);
		sent += n;
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(b.err, 0);
	assert_true(b.sum == sum);
}

/* The VM's end of a circuit in its pair device, as its driver would open it. */
static void vm_open_circuit(struct fake_pair *p, const struct cn_msg_circuit *c,
			    struct cn_endpoint *ep, struct cn_notifier n[4])
{
	struct cn_circuit_params prm = { .mode = CN_MODE_STREAM,
					 .ring_size = { c->ring_size[0], c->ring_size[1] } };
	int v = c->vm_vec;

	assert_true(c->flags & CN_CIRCUIT_VM);
	assert_int_equal(c->chunk_id, p->position); /* the pair device's IVPosition */
	assert_true(v < CN_VM_PAIR_VECTORS / 2);
	assert_true(c->slot_off + cn_circuit_size(&prm) <= (1u << 20));
	memset(ep, 0, sizeof(*ep));
	assert_int_equal(cn_ep_attach_stamped(ep, (char *)p->mem + c->slot_off,
					      cn_circuit_size(&prm), (enum cn_role)c->role,
					      c->circuit_id),
			 0);
	assert_int_equal(cn_eventfd_notifier_init(&n[0], dup(p->vm_vec[2 * v])), 0);
	assert_int_equal(cn_eventfd_notifier_init(&n[1], dup(p->vm_vec[2 * v + 1])), 0);
	assert_int_equal(cn_eventfd_notifier_init(&n[2], dup(p->host_vec[2 * v])), 0);
	assert_int_equal(cn_eventfd_notifier_init(&n[3], dup(p->host_vec[2 * v + 1])), 0);
	cn_ep_set_notifiers(ep, &n[0], &n[1], &n[2], &n[3]);
	cn_ep_set_timeouts(ep, 5000, 5000);
}

/* Guest vmx as a VM with one pair device, said HELLO; web listens on port 80. */
static void vm_web_setup(struct listener_g *web, struct fake_vm *v, struct fake_pair *pd)
{
	vm_guest_add();
	listen_on(web, "web", CN_L4_TCP, wildcard(80), 16);
	vm_attach(v);
	vm_attach_pair(pd, 0);
	wait_status("\"vm_devices\":", 2);
	vm_hello(v);
}

/* The VM's CONNECT to dst; its answer, of type want, in r. */
static void vm_request_connect(struct fake_vm *v, const char *dst, unsigned int want,
			       union cn_msg *r)
{
	struct cn_msg_connect m;

	cn_msg_init(&m.h, CN_MSG_CONNECT, sizeof(m), 11);
	m.l4 = CN_L4_TCP;
	m.dst = addr(dst);
	vm_send(v, &m.h);
	vm_recv(v, r, want);
}

/* The VM listens on a TCP port; the listener's id. */
static uint64_t vm_listen(struct fake_vm *v, uint16_t port)
{
	struct cn_msg_listen l;
	union cn_msg r;

	cn_msg_init(&l.h, CN_MSG_LISTEN, sizeof(l), 13);
	l.l4 = CN_L4_TCP;
	l.backlog = 4;
	l.addr.port = port;
	vm_send(v, &l.h);
	vm_recv(v, &r, CN_MSG_LISTEN_OK);
	assert_int_equal(r.listen_ok.bound.port, port);
	return r.listen_ok.listener_id;
}

static void vm_unlisten(struct fake_vm *v, uint64_t id, unsigned int want)
{
	struct cn_msg_id m;
	union cn_msg r;

	cn_msg_init(&m.h, CN_MSG_UNLISTEN, sizeof(m), 14);
	m.id = id;
	vm_send(v, &m.h);
	vm_recv(v, &r, want);
}

static void vm_connect_web(struct fake_vm *v, struct cn_msg_circuit *out)
{
	union cn_msg r;

	vm_request_connect(v, "10.9.0.2:80", CN_MSG_CONNECT_OK, &r);
	*out = r.circuit;
}

/*
 * A VM connects to a process guest's listener: the policy decides as for
 * anyone, the circuit lives in the VM's pair device (assigned to the pair
 * on first contact), the host end gets eventfds of the device's vectors,
 * 2 MiB cross each way with every byte checked, the VM's CLOSED frees the
 * slot and its vectors once the host end has gone too, and a policy
 * denial reads ECONNREFUSED in the VM.
 */
static void test_vm_connect(void **state)
{
	struct cn_notifier n[4];
	struct listener_g web;
	struct cn_local_ep host;
	struct cn_op_conn hi;
	struct cn_msg_circuit c, c2;
	struct cn_endpoint ep;
	struct fake_pair pd;
	struct fake_vm v;
	struct cn_msg_id cl;
	union cn_msg r;
	char link[64], path[64];
	ssize_t len;
	int i;

	vm_web_setup(&web, &v, &pd);
	vm_connect_web(&v, &c);
	assert_int_equal(cn_op_accept(&web.op, &host, &hi, 0), 0);
	assert_int_equal(hi.circuit_id, c.circuit_id);
	assert_int_equal(vm_view("\"pairs_assigned\":"), 1);
	/* the host end sleeps on eventfds that QEMU writes */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", host.notif[0].fd);
	len = readlink(path, link, sizeof(link) - 1);
	assert_true(len > 0);
	link[len] = 0;
	assert_string_equal(link, "anon_inode:[eventfd]");

	vm_open_circuit(&pd, &c, &ep, n);
	vm_bulk(&ep, &host.ep, 2u << 20);
	vm_bulk(&host.ep, &ep, 2u << 20);

	/* both ends close: the slot and its vector pair go back */
	cn_msg_init(&cl.h, CN_MSG_CLOSED, sizeof(cl), 0);
	cl.id = c.circuit_id;
	vm_send(&v, &cl.h);
	for (i = 0; i < 4; i++)
		cn_notifier_release(&n[i]);
	cn_local_close(&host);
	cn_op_closed(&web.op, hi.circuit_id);
	wait_slots(0);

	/* again: the same device, a vector pair free again */
	vm_connect_web(&v, &c2);
	assert_true(c2.vm_vec == c.vm_vec);
	assert_int_equal(cn_op_accept(&web.op, &host, &hi, 0), 0);
	vm_open_circuit(&pd, &c2, &ep, n);
	check_talks_ep(&ep, &host.ep);

	/*
	 * The other way: a VM listens, a process guest connects (a pair
	 * device of its own). The VM holds two listeners on its one control
	 * circuit (its kernel's sockets share it); NEW_CONN names the one
	 * connected to, and UNLISTEN ends one listener, not the session.
	 */
	{
		struct cn_notifier n2[4];
		struct cn_local_ep cl_ep;
		struct cn_op_conn ci;
		struct cn_endpoint vep;
		struct fake_pair pd2;
		struct cn_op client;
		struct cn_addr d = addr("10.9.0.40:8081");
		uint64_t l80, l81;

		vm_attach_pair(&pd2, 1);
		wait_status("\"vm_devices\":", 3);
		l80 = vm_listen(&v, 8080);
		l81 = vm_listen(&v, 8081);
		assert_true(l80 != l81);
		assert_int_equal(open_guest(&client, "client"), 0);
		assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &cl_ep, &ci), 0);
		vm_recv(&v, &r, CN_MSG_NEW_CONN);
		assert_int_equal(r.circuit.role, CN_ROLE_ACCEPTOR);
		assert_int_equal(r.circuit.circuit_id, ci.circuit_id);
		assert_int_equal(r.circuit.listener_id, l81);
		vm_unlisten(&v, l80, CN_MSG_OK);
		vm_unlisten(&v, l80, CN_MSG_ERROR);
		assert_int_equal(status_num("\"listeners\":"), 2); /* 8081 and web's */
		cn_msg_init(&cl.h, CN_MSG_ACCEPTED, sizeof(cl), 0);
		cl.id = r.circuit.circuit_id;
		vm_send(&v, &cl.h);
		vm_open_circuit(&pd2, &r.circuit, &vep, n2);
		vm_bulk(&cl_ep.ep, &vep, 1u << 20);
		vm_bulk(&vep, &cl_ep.ep, 1u << 20);
		assert_int_equal(vm_view("\"pairs_assigned\":"), 2);
		cl.h.type = CN_MSG_CLOSED;
		vm_send(&v, &cl.h);
		for (i = 0; i < 4; i++)
			cn_notifier_release(&n2[i]);
		cn_local_close(&cl_ep);
		cn_op_closed(&client, ci.circuit_id);
		cn_op_close(&client);
		vm_detach_pair(&pd2);
	}

	/* the policy still decides: cache:6379 is not the VM's to reach */
	vm_request_connect(&v, "10.9.0.3:6379", CN_MSG_ERROR, &r);
	assert_int_equal(r.error.err, ECONNREFUSED);

	/*
	 * A hostile VM: 0xff over its whole pair device, then a ring of the
	 * host end's vectors. The host end reads a broken circuit, never
	 * anything outside it; the operator serves on, and a new circuit in
	 * the same device (its head formatted anew) works.
	 */
	{
		struct cn_msg_circuit c3;
		struct cn_local_ep host3;
		struct cn_op_conn hi3;
		struct cn_notifier n3[4];
		struct cn_endpoint ep3;
		uint64_t one = 1;
		char b[8];

		memset(pd.mem, 0xff, 1u << 20);
		assert_int_equal(write(pd.host_vec[2 * c2.vm_vec], &one, sizeof(one)), sizeof(one));
		i = (int)cn_recv(&host.ep, b, sizeof(b), CN_MSG_DONTWAIT);
		assert_true(i < 0 && i != -EAGAIN);
		assert_true(cn_send(&host.ep, "x", 1, CN_MSG_DONTWAIT) < 0);
		assert_true(ctl_reachable());
		vm_connect_web(&v, &c3);
		assert_int_equal(cn_op_accept(&web.op, &host3, &hi3, 0), 0);
		vm_open_circuit(&pd, &c3, &ep3, n3);
		check_talks_ep(&ep3, &host3.ep);
		for (i = 0; i < 4; i++)
			cn_notifier_release(&n3[i]);
		cn_msg_init(&cl.h, CN_MSG_CLOSED, sizeof(cl), 0);
		cl.id = c3.circuit_id;
		vm_send(&v, &cl.h);
		cn_local_close(&host3);
		cn_op_closed(&web.op, hi3.circuit_id);
	}

	/* QEMU goes with a circuit open: the VM's end closes, the host's stays its own */
	for (i = 0; i < 4; i++)
		cn_notifier_release(&n[i]);
	vm_detach_pair(&pd);
	vm_detach(&v);
	wait_status("\"vm_devices\":", 0);
	cn_local_close(&host);
	cn_op_closed(&web.op, hi.circuit_id);
	wait_slots(0);
	wait_circuits(0);
	cn_op_close(&web.op);
	vm_guest_remove();
}

/*
 * Two VMs: the later one's pair device becomes the other half of the
 * earlier one's free device (the same memory, the vectors crossed), and a
 * circuit between them lives there: 1 MiB each way with every byte
 * checked, each VM naming the device by its own IVPosition. The first VM
 * then dies with the circuit open: the second reads ECONNRESET.
 */
static void test_vm_to_vm(void **state)
{
	struct cn_notifier nx[4], ny[4];
	struct cn_endpoint ex, ey;
	struct fake_pair px, py;
	struct fake_vm x, y;
	struct cn_msg_id a;
	struct cn_msg_circuit cx, cy;
	union cn_msg r;
	char buf[16];
	int i;

	vm_guest_add();
	vm_attach_as(&x, "vmx");
	vm_attach_pair_as(&px, "vmx", 0);
	wait_status("\"vm_devices\":", 2);
	vm_attach_as(&y, "vmy");
	vm_attach_pair_as(&py, "vmy", 0);
	wait_status("\"vm_devices\":", 4);
	/* one memory: what x writes, y reads */
	memcpy((char *)px.mem + (1 << 20) - 8, "shared!", 8);
	assert_memory_equal((char *)py.mem + (1 << 20) - 8, "shared!", 8);
	assert_true(log_has("vm vmy: pair device 2 shares vm vmx's device 2"));

	vm_hello(&y);
	vm_listen(&y, 9000);
	vm_hello(&x);
	vm_request_connect(&x, "10.9.0.41:9000", CN_MSG_CONNECT_OK, &r);
	cx = r.circuit;
	vm_recv(&y, &r, CN_MSG_NEW_CONN);
	cy = r.circuit;
	assert_int_equal(cx.circuit_id, cy.circuit_id);
	assert_int_equal(cx.slot_off, cy.slot_off);
	assert_int_equal(cx.vm_vec, cy.vm_vec);
	cn_msg_init(&a.h, CN_MSG_ACCEPTED, sizeof(a), 0);
	a.id = cy.circuit_id;
	vm_send(&y, &a.h);
	vm_open_circuit(&px, &cx, &ex, nx);
	vm_open_circuit(&py, &cy, &ey, ny);
	vm_bulk(&ex, &ey, 1u << 20);
	vm_bulk(&ey, &ex, 1u << 20);
	assert_int_equal(status_num("\"circuits\":"), 1);

	/* x's QEMU goes: y's end reads the reset the operator left in x's place */
	for (i = 0; i < 4; i++)
		cn_notifier_release(&nx[i]);
	vm_detach_pair(&px);
	vm_detach(&x);
	assert_int_equal(cn_recv(&ey, buf, sizeof(buf), 0), -ECONNRESET);
	cn_msg_init(&a.h, CN_MSG_CLOSED, sizeof(a), 0);
	a.id = cy.circuit_id;
	vm_send(&y, &a.h);
	wait_circuits(0);
	wait_slots(0);
	for (i = 0; i < 4; i++)
		cn_notifier_release(&ny[i]);
	vm_detach_pair(&py);
	vm_detach(&y);
	wait_status("\"vm_devices\":", 0);
	vm_guest_remove();
}

/*
 * A setup that fails after its slot was carved: the VM listens, then
 * breaks its control circuit, so the NEW_CONN cannot reach it. The
 * connect is refused and the slot and its vector pair come back, though
 * the VM's end never had a lease to hang up.
 */
static void test_vm_failed_setup(void **state)
{
	struct cn_addr d = addr("10.9.0.40:8080");
	struct cn_local_ep ep;
	struct cn_op_conn ci;
	struct cn_op client;
	struct fake_pair pd;
	struct fake_vm v;
	unsigned long long bad;

	vm_guest_add();
	vm_attach(&v);
	vm_attach_pair(&pd, 0);
	vm_hello(&v);
	vm_listen(&v, 8080);
	bad = vm_view("\"violations\":");
	memset(v.mem, 0xff, CN_DATA_OFF);
	vm_bell(v.op_vec[CN_VM_VEC_RX]);
	wait_vm_view("\"violations\":", bad + 1);
	assert_int_equal(open_guest(&client, "client"), 0);
	assert_int_equal(cn_op_connect(&client, CN_L4_TCP, NULL, &d, &ep, &ci), -ECONNREFUSED);
	wait_slots(0);
	assert_int_equal(status_num("\"circuits\":"), 0);
	cn_op_close(&client);
	vm_detach_pair(&pd);
	vm_detach(&v);
	wait_status("\"vm_devices\":", 0);
	vm_guest_remove();
}

/*
 * A VM answers a circuit it could not attach (its device was not there)
 * with CLOSED alone: the operator leaves the reset the VM would have left,
 * so the host end reads ECONNRESET instead of waiting. One the VM closed
 * itself (FIN written first) ends in EOF, as before.
 */
static void test_vm_unattached(void **state)
{
	struct listener_g web;
	struct cn_local_ep host;
	struct cn_op_conn hi;
	struct cn_msg_circuit c;
	struct cn_notifier n[4];
	struct cn_endpoint ep;
	struct fake_pair pd;
	struct fake_vm v;
	struct cn_msg_id cl;
	char b[8];
	int i;

	vm_web_setup(&web, &v, &pd);

	vm_connect_web(&v, &c);
	assert_int_equal(cn_op_accept(&web.op, &host, &hi, 0), 0);
	cn_ep_set_timeouts(&host.ep, 5000, 5000);
	cn_msg_init(&cl.h, CN_MSG_CLOSED, sizeof(cl), 0);
	cl.id = c.circuit_id;
	vm_send(&v, &cl.h);
	assert_int_equal(cn_recv(&host.ep, b, sizeof(b), 0), -ECONNRESET);
	cn_local_close(&host);
	cn_op_closed(&web.op, hi.circuit_id);

	/* attached and closed by the VM: FIN first, then CLOSED: EOF after the data */
	vm_connect_web(&v, &c);
	assert_int_equal(cn_op_accept(&web.op, &host, &hi, 0), 0);
	cn_ep_set_timeouts(&host.ep, 5000, 5000);
	vm_open_circuit(&pd, &c, &ep, n);
	assert_int_equal(cn_send(&ep, "bye", 3, 0), 3);
	cn_close(&ep);
	cl.id = c.circuit_id;
	vm_send(&v, &cl.h);
	assert_int_equal(cn_recv(&host.ep, b, sizeof(b), CN_MSG_WAITALL), 3);
	assert_int_equal(cn_recv(&host.ep, b, sizeof(b), 0), 0);
	for (i = 0; i < 4; i++)
		cn_notifier_release(&n[i]);
	cn_local_close(&host);
	cn_op_closed(&web.op, hi.circuit_id);
	wait_slots(0);

	vm_detach_pair(&pd);
	vm_detach(&v);
	wait_status("\"vm_devices\":", 0);
	cn_op_close(&web.op);
	vm_guest_remove();
}

static int group_setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/circnet-test-op.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(run_dir, sizeof(run_dir), "%s/run", dir);
	snprintf(cfg_path, sizeof(cfg_path), "%s/circnet.conf", dir);
	snprintf(log_path, sizeof(log_path), "%s/operator.log", dir);
	write_config("");
	op_start();
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[256];

	if (op_pid > 0)
		op_stop();
	if (getenv("CIRCNET_KEEP_TEST_DIR")) {
		fprintf(stderr, "operator log: %s\n", log_path);
		return 0;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_allowed),
		cmocka_unit_test(test_loopback_within_guest),
		cmocka_unit_test(test_denied_and_logged),
		cmocka_unit_test(test_refused_and_unreachable),
		cmocka_unit_test(test_impersonation),
		cmocka_unit_test(test_backlog),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_udp),
		cmocka_unit_test(test_protocol_violations),
		cmocka_unit_test(test_flood_fairness),
		cmocka_unit_test(test_circnetctl),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_restart_keeps_circuits),
		cmocka_unit_test(test_channel_listener),
		cmocka_unit_test(test_restart_grace),
		cmocka_unit_test(test_pool_slot_reuse),
		cmocka_unit_test(test_pool_hostile_scribble),
		cmocka_unit_test(test_pool_pages_return),
		cmocka_unit_test(test_pool_lingering),
		cmocka_unit_test(test_pool_end_gone),
		cmocka_unit_test(test_pipelined_connects),
		cmocka_unit_test(test_vm_control_circuit),
		cmocka_unit_test(test_vm_hostile),
		cmocka_unit_test(test_vm_connect),
		cmocka_unit_test(test_vm_to_vm),
		cmocka_unit_test(test_vm_failed_setup),
		cmocka_unit_test(test_vm_unattached),
	};

	if (argc != 3) {
		fprintf(stderr, "usage: %s CIRCNET-OPERATOR CIRCNETCTL\n", argv[0]);
		return 2;
	}
	operator_bin = argv[1];
	ctl_bin = argv[2];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
