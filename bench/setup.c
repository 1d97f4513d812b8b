// SPDX-License-Identifier: MIT
/*
 * bench/setup.c - circnet-bench setup: how fast connections are set up
 * through the operator, against TCP loopback's and AF_UNIX's connect/accept,
 * measured side by side in one run.
 *
 * One transaction: the client connects, sends one byte, the server accepts,
 * reads it and answers one byte, the client reads it, both close. Reported:
 * transactions per second and the p50/p99 time of one transaction.
 *
 * With --inflight K (the report's size) the client works in batches of K:
 * K connects in flight at once (circuits: K CONNECTs sent before the first
 * reply is read, cn_op_connect_send; sockets: K connects queued in the
 * listener's backlog), then K requests, K answers, K closes. This is how
 * setup scales when a client has many connects in flight (a proxy's upstream
 * pool, wrk, a crawler). Latencies are reported for K = 1 only. Circuits
 * go through a real circnet-operator started for the run (policy checked,
 * memfd and notifiers created, fds passed to both guests, CLOSED reported);
 * "circuit-1k-rules" puts 1000 non-matching rules before the allow rule to
 * show what a long policy costs. TCP clients close with SO_LINGER 0 so that
 * TIME_WAIT does not run the ephemeral ports out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <circnet/opclient.h>

#include "bench.h"
#include "opctl.h"
#include "report.h"

enum setup_kind { S_CIRCUIT, S_CIRCUIT_RULES, S_TCP, S_UNIX, S_NKINDS };

static const char *const setup_name[] = {
	[S_CIRCUIT] = "circuit",
	[S_CIRCUIT_RULES] = "circuit-1k-rules",
	[S_TCP] = "tcp-loopback",
	[S_UNIX] = "af-unix",
};

#define MAX_INFLIGHT 64 /* CN_OP_INFLIGHT */
#define MAX_SIZES    8

struct setup_cfg {
	double secs;
	int reps;
	int sizes[MAX_SIZES]; /* connects in flight, one run each */
	int nsizes;
	const char *operator_bin;
	char dir[64];
	struct bench_op op[S_NKINDS]; /* the operator of a circuit kind */
	const char *json, *csv;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct setup_cfg *cleanup_cfg;
static pid_t main_pid;
static void stop_operators(struct setup_cfg *c);

/* Operators must not outlive a failed run; forked servers leave them alone. */
static void cleanup(void)
{
	if (cleanup_cfg && getpid() == main_pid)
		stop_operators(cleanup_cfg);
}

static void fail(const char *what, int err)
{
	fprintf(stderr, "circnet-bench setup: %s: %s\n", what, strerror(err));
	exit(1);
}

/* ---- the operator for the run ---- */

static void start_operator(struct setup_cfg *c, enum setup_kind k)
{
	char *body = NULL, name[16];
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	int i, extra_rules = k == S_CIRCUIT_RULES ? 1000 : 0;

	if (!f)
		fail("open_memstream", errno);
	fprintf(f, "log-level warning\n"
		   "guest a {\n  address 10.99.0.1\n}\n"
		   "guest b {\n  address 10.99.0.2\n  listen tcp 7000\n}\n");
	/* rules that are checked and do not match: the matcher's worst case */
	for (i = 0; i < extra_rules; i++)
		fprintf(f, "deny tcp from a to 10.%d.%d.0/24 port %d\n", 100 + i / 250, i % 250,
			1 + i);
	fprintf(f, "allow tcp from a to b port 7000\ndeny any from any to any\n");
	fclose(f);
	snprintf(name, sizeof(name), "op-%d", (int)k);
	bench_op_start(&c->op[k], c->operator_bin, c->dir, name, body);
	free(body);
}

static void stop_operators(struct setup_cfg *c)
{
	char cmd[128];
	int k;

	for (k = 0; k < S_NKINDS; k++)
		bench_op_stop(&c->op[k]);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	if (c->dir[0] && system(cmd) != 0)
		fprintf(stderr, "circnet-bench setup: could not remove %s\n", c->dir);
}

/* ---- servers: accept, read a byte, answer it, close; until killed ---- */

static void circuit_server(const char *run, int ready)
{
	char path[160], b;
	struct cn_addr a = { .port = 7000 };
	struct cn_local_ep ep;
	struct cn_op_conn conn;
	struct cn_op op;
	int err;

	snprintf(path, sizeof(path), "%s/guests/b/operator.sock", run);
	err = cn_op_open(&op, path);
	if (!err)
		err = cn_op_listen(&op, CN_L4_TCP, &a, 1024, NULL, NULL);
	if (err)
		fail("server: listen through the operator", -err);
	if (write(ready, "r", 1) != 1)
		_exit(1);
	op.timeout_ms = -1;
	for (;;) {
		err = cn_op_accept(&op, &ep, &conn, 0);
		if (err)
			fail("server: accept", -err);
		{
			ssize_t r = cn_recv(&ep.ep, &b, 1, 0);

			if (r != 1)
				fail("server: request", r < 0 ? (int)-r : EIO);
			if (cn_send(&ep.ep, &b, 1, 0) != 1)
				fail("server: answer", EIO);
		}
		cn_local_close(&ep);
		cn_op_closed(&op, conn.circuit_id);
	}
}

static void socket_server(int lfd, int ready)
{
	char b;

	if (write(ready, "r", 1) != 1)
		_exit(1);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		if (read(fd, &b, 1) == 1 && write(fd, &b, 1) != 1) {
			/* the client went away: nothing to do */
		}
		close(fd);
	}
}

/* ---- clients: one transaction ---- */

struct client {
	enum setup_kind kind;
	struct cn_op op;
	struct cn_addr dst;
	struct sockaddr_storage sa;
	socklen_t salen;
};

/* k circuit transactions, their connects all in flight before the first reply is read. */
static void circuit_txns(struct client *cl, int k)
{
	static struct cn_local_ep ep[MAX_INFLIGHT];
	struct cn_op_conn conn[MAX_INFLIGHT];
	uint32_t seq[MAX_INFLIGHT];
	char b = 'x';
	ssize_t r = 1;
	int err = 0, i;

	if (k == 1) {
		err = cn_op_connect(&cl->op, CN_L4_TCP, NULL, &cl->dst, &ep[0], &conn[0]);
	} else {
		for (i = 0; i < k && !err; i++)
			err = cn_op_connect_send(&cl->op, CN_L4_TCP, NULL, &cl->dst, 0, &seq[i]);
		for (i = 0; i < k && !err; i++)
			err = cn_op_connect_recv(&cl->op, seq[i], &ep[i], &conn[i]);
	}
	if (err)
		fail("connect through the operator", -err);
	for (i = 0; i < k && r == 1; i++)
		r = cn_send(&ep[i].ep, &b, 1, 0);
	for (i = 0; i < k && r == 1; i++)
		r = cn_recv(&ep[i].ep, &b, 1, 0);
	if (r != 1)
		fail("circuit transaction", r < 0 ? (int)-r : EIO);
	for (i = 0; i < k; i++) {
		cn_local_close(&ep[i]);
		cn_op_closed(&cl->op, conn[i].circuit_id);
	}
}

/* k socket transactions, their connects all queued before the first request. */
static void socket_txns(struct client *cl, int k)
{
	int fam = cl->kind == S_TCP ? AF_INET : AF_UNIX, fd[MAX_INFLIGHT], one = 1, i;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	char b = 'x';

	for (i = 0; i < k; i++) {
		fd[i] = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd[i] < 0 || connect(fd[i], (struct sockaddr *)&cl->sa, cl->salen))
			fail("connect", errno);
		if (fam == AF_INET) {
			setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			setsockopt(fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
	}
	for (i = 0; i < k; i++)
		if (write(fd[i], &b, 1) != 1)
			fail("socket transaction", errno ? errno : EIO);
	for (i = 0; i < k; i++)
		if (read(fd[i], &b, 1) != 1)
			fail("socket transaction", errno ? errno : EIO);
	for (i = 0; i < k; i++)
		close(fd[i]);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Run transactions for secs, inflight at a time; rate in txn/s, p50/p99 in microseconds. */
static int64_t self_cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)ru.ru_utime.tv_sec * 1000000000 + ru.ru_utime.tv_usec * 1000 +
	       (int64_t)ru.ru_stime.tv_sec * 1000000000 + ru.ru_stime.tv_usec * 1000;
}

static int64_t ru_ns(const struct rusage *ru)
{
	return (int64_t)ru->ru_utime.tv_sec * 1000000000 + ru->ru_utime.tv_usec * 1000 +
	       (int64_t)ru->ru_stime.tv_sec * 1000000000 + ru->ru_stime.tv_usec * 1000;
}

/*
 * Run transactions for secs, inflight at a time; rate in txn/s, p50/p99 in
 * microseconds, cpu in microseconds of CPU per transaction: client, server
 * and operator together (on a machine with few cores, the number that
 * decides the rate once latency is hidden by connects in flight).
 */
static void run_one(struct setup_cfg *c, enum setup_kind k, int inflight, double *rate,
		    double *p50, double *p99, double *cpu)
{
	int64_t cpu_self, cpu_op = 0;
	struct rusage ru;
	static int64_t lat[1 << 20];
	struct client cl = { .kind = k };
	int ready[2], lfd = -1;
	size_t n = 0;
	int64_t t0, end, t;
	pid_t srv;
	char b;

	if (pipe2(ready, O_CLOEXEC))
		fail("pipe", errno);
	if (k == S_TCP) {
		struct sockaddr_in *in = (struct sockaddr_in *)&cl.sa;
		int one = 1;

		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		cl.salen = sizeof(*in);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd, (struct sockaddr *)in, cl.salen) || listen(lfd, 1024) ||
		    getsockname(lfd, (struct sockaddr *)in, &cl.salen))
			fail("tcp listen", errno);
	} else if (k == S_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&cl.sa;

		lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s/unix.sock", c->dir);
		unlink(un->sun_path);
		cl.salen = sizeof(*un);
		if (bind(lfd, (struct sockaddr *)un, cl.salen) || listen(lfd, 1024))
			fail("unix listen", errno);
	}
	srv = fork();
	if (srv < 0)
		fail("fork", errno);
	if (srv == 0) {
		close(ready[0]);
		if (lfd >= 0)
			socket_server(lfd, ready[1]);
		circuit_server(c->op[k].run, ready[1]);
	}
	close(ready[1]);
	if (read(ready[0], &b, 1) != 1)
		fail("the server did not start", EIO);
	close(ready[0]);
	if (lfd >= 0)
		close(lfd);
	if (k == S_CIRCUIT || k == S_CIRCUIT_RULES) {
		char path[160];
		int err;

		snprintf(path, sizeof(path), "%s/guests/a/operator.sock", c->op[k].run);
		err = cn_op_open(&cl.op, path);
		if (err)
			fail("client: register with the operator", -err);
		cn_addr_parse(&cl.dst, "10.99.0.2:7000");
	}
	cpu_self = self_cpu_ns();
	if (k == S_CIRCUIT || k == S_CIRCUIT_RULES)
		cpu_op = bench_proc_cpu_ns(c->op[k].pid);
	t0 = mono_ns();
	end = t0 + (int64_t)(c->secs * 1e9);
	do {
		t = mono_ns();
		if (k == S_CIRCUIT || k == S_CIRCUIT_RULES)
			circuit_txns(&cl, inflight);
		else
			socket_txns(&cl, inflight);
		lat[n] = mono_ns() - t;
	} while (++n < sizeof(lat) / sizeof(lat[0]) && mono_ns() < end);
	*rate = (double)n * inflight / ((double)(mono_ns() - t0) / 1e9);
	cpu_self = self_cpu_ns() - cpu_self;
	if (k == S_CIRCUIT || k == S_CIRCUIT_RULES)
		cpu_op = bench_proc_cpu_ns(c->op[k].pid) - cpu_op;
	kill(srv, SIGKILL);
	memset(&ru, 0, sizeof(ru));
	wait4(srv, NULL, 0, &ru);
	*cpu = (double)(cpu_self + cpu_op + ru_ns(&ru)) / 1e3 / ((double)n * inflight);
	if (k == S_CIRCUIT || k == S_CIRCUIT_RULES)
		cn_op_close(&cl.op);
	qsort(lat, n, sizeof(lat[0]), cmp_i64);
	*p50 = (double)lat[n / 2] / 1e3;
	*p99 = (double)lat[n * 99 / 100] / 1e3;
}

static void add(struct report *rep, const char *group, enum setup_kind k, int size,
		const char *unit, bool hib, const double *s, int n)
{
	struct result r = { .size = (size_t)size, .higher_is_better = hib, .reps = n };

	snprintf(r.group, sizeof(r.group), "%s", group);
	snprintf(r.transport, sizeof(r.transport), "%s", setup_name[k]);
	snprintf(r.unit, sizeof(r.unit), "%s", unit);
	memcpy(r.samples, s, sizeof(double) * (size_t)n);
	report_add(rep, &r);
}

/* "1,8,32": the in-flight counts to run. 0, or -1 for anything else. */
static int parse_sizes(struct setup_cfg *c, const char *s)
{
	char *end;
	long v;

	c->nsizes = 0;
	for (;;) {
		v = strtol(s, &end, 10);
		if (end == s || v < 1 || v > MAX_INFLIGHT || c->nsizes == MAX_SIZES)
			return -1;
		c->sizes[c->nsizes++] = (int)v;
		if (!*end)
			return 0;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: circnet-bench setup [--quick] [--reps N] [--secs S]\n"
			"                           [--inflight K[,K...]] (1..%d, default 1)\n"
			"                           [--operator PATH] [--json FILE] [--csv FILE]\n",
		MAX_INFLIGHT);
	exit(2);
}

int bench_setup(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", 0, 0, 'q' }, { "reps", 1, 0, 'r' },	   { "secs", 1, 0, 's' },
		{ "json", 1, 0, 'j' },	{ "operator", 1, 0, 'o' }, { "csv", 1, 0, 'c' },
		{ "inflight", 1, 0, 'i' }, { 0, 0, 0, 0 },
	};
	static const char *baselines[] = { "tcp-loopback", "af-unix", NULL };
	struct setup_cfg c = { .secs = 1.0, .reps = 3 };
	const struct bench_common common = { &c.reps, &c.secs, &c.json, &c.csv, &c.operator_bin };
	static double rate[MAX_SIZES][S_NKINDS][REPORT_MAX_REPS],
		p50[MAX_SIZES][S_NKINDS][REPORT_MAX_REPS], p99[MAX_SIZES][S_NKINDS][REPORT_MAX_REPS],
		cpu[MAX_SIZES][S_NKINDS][REPORT_MAX_REPS];
	struct report rep;
	int opt, r, k, z;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'q':
			c.secs = 0.3;
			c.reps = 1;
			break;
		case 'i':
			if (parse_sizes(&c, optarg))
				usage();
			break;
		default:
			if (bench_common_opt(&common, opt, optarg) <= 0)
				usage();
		}
	}
	if (optind != argc)
		usage();
	if (!c.nsizes)
		c.sizes[c.nsizes++] = 1;
	if (!c.operator_bin)
		c.operator_bin = bench_find_operator();
	snprintf(c.dir, sizeof(c.dir), "/tmp/circnet-bench-setup.XXXXXX");
	if (!mkdtemp(c.dir))
		fail("mkdtemp", errno);
	signal(SIGPIPE, SIG_IGN);
	main_pid = getpid();
	cleanup_cfg = &c;
	atexit(cleanup);
	start_operator(&c, S_CIRCUIT);
	start_operator(&c, S_CIRCUIT_RULES);
	report_init(&rep, "setup", baselines);
	snprintf(rep.config, sizeof(rep.config), "secs=%.2f reps=%d cpus=%ld operator=%s", c.secs,
		 c.reps, sysconf(_SC_NPROCESSORS_ONLN), c.operator_bin);
	/* repetitions interleave the transports, so drift hits them all alike */
	for (r = 0; r < c.reps; r++)
		for (z = 0; z < c.nsizes; z++)
			for (k = 0; k < S_NKINDS; k++) {
				fprintf(stderr, "\r[setup] %-18s x%-3d rep %d/%d   ", setup_name[k],
					c.sizes[z], r + 1, c.reps);
				fflush(stderr);
				run_one(&c, (enum setup_kind)k, c.sizes[z], &rate[z][k][r],
					&p50[z][k][r], &p99[z][k][r], &cpu[z][k][r]);
			}
	for (z = 0; z < c.nsizes; z++)
		for (k = 0; k < S_NKINDS; k++) {
			add(&rep, "setup-rate", (enum setup_kind)k, c.sizes[z], "conn/s", true,
			    rate[z][k], c.reps);
			add(&rep, "setup-cpu", (enum setup_kind)k, c.sizes[z], "us-cpu", false,
			    cpu[z][k], c.reps);
			if (c.sizes[z] != 1)
				continue; /* a batch's time is no one connection's */
			add(&rep, "setup-p50", (enum setup_kind)k, 1, "us", false, p50[z][k], c.reps);
			add(&rep, "setup-p99", (enum setup_kind)k, 1, "us", false, p99[z][k], c.reps);
		}
	stop_operators(&c);
	cleanup_cfg = NULL;
	fprintf(stderr, "\r%-60s\r", "");
	printf("circnet-bench setup: %s\n", rep.config);
	report_print_table(&rep, stdout);
	if (c.json && report_write_json(&rep, c.json))
		fail(c.json, errno);
	if (c.csv && report_write_csv(&rep, c.csv))
		fail(c.csv, errno);
	report_free(&rep);
	return 0;
}
