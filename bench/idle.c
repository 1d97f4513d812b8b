// SPDX-License-Identifier: MIT
/*
 * bench/idle.c - circnet-bench idle: N concurrent idle connections between
 * two guests, held at once: how fast they are set up while the count grows,
 * and what each one costs while it idles, against N TCP loopback and N
 * AF_UNIX connections in the same run.
 *
 * A client process (guest a) and a server process (guest b) of a real
 * circnet-operator open N connections; each carries one byte each way and
 * then idles. Measured once all N are open:
 *   idle-shm     shared memory per connection: /proc/meminfo Shmem, after
 *                minus before (circuit memory lives in memfds; sockets have
 *                none)
 *   idle-kernel  kernel memory per connection: Slab + PageTables, after
 *                minus before (socket objects, files, our notifier and lease
 *                socket pairs, the page tables of mapped circuit memory)
 *   idle-total   the two together
 *   idle-fds     open files per connection in client, server and operator
 *   idle-setup   connections per second while the N accumulate
 * System-wide counters: run it on a quiet machine; with N in the thousands
 * the noise of everything else is small per connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <circnet/opclient.h>

#include "bench.h"
#include "opctl.h"
#include "report.h"

enum idle_kind { I_CIRCUIT, I_TCP, I_UNIX, I_NKINDS };

static const char *const idle_name[] = {
	[I_CIRCUIT] = "circuit",
	[I_TCP] = "tcp-loopback",
	[I_UNIX] = "af-unix",
};

struct idle_cfg {
	long n;
	int reps;
	long per_proc[I_NKINDS]; /* connections one process can hold (its fd limit) */
	long share;		 /* this process's part of n (set before fork) */
	long base;		 /* and the index of its first connection */
	struct cn_op *lst;	 /* circuits: the server side's listener session */
	const char *operator_bin, *json, *csv;
	char dir[64];
	struct bench_op op;
	struct sockaddr_storage sa;
	socklen_t salen;
};

#define MAX_PROCS 512

static void raise_fd_limit(long n);

struct meminfo {
	long shmem, slab, pagetables; /* KiB */
};

static void fail(const char *what, int err)
{
	fprintf(stderr, "circnet-bench idle: %s: %s\n", what, strerror(err));
	exit(1);
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void read_meminfo(struct meminfo *m)
{
	char line[256];
	FILE *f = fopen("/proc/meminfo", "r");

	memset(m, 0, sizeof(*m));
	if (!f)
		fail("/proc/meminfo", errno);
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "Shmem: %ld", &m->shmem);
		sscanf(line, "Slab: %ld", &m->slab);
		sscanf(line, "PageTables: %ld", &m->pagetables);
	}
	fclose(f);
}

/*
 * Each connection holds a few fds in each process: make room for N of them
 * where we may (root raises the hard limit); the processes of a side then
 * share the connections (per_proc). The operator holds a lease per circuit
 * end (operator/pool.c): N circuits need 2N fds there, which must fit.
 */
static long op_fds(long n)
{
	return 2 * n + n / 31 + 512;
}

static void plan_fds(struct idle_cfg *c)
{
	struct rlimit rl;

	raise_fd_limit(c->n);
	getrlimit(RLIMIT_NOFILE, &rl);
	/* a circuit end: 2 notifier ends and a lease (+ a chunk memfd, a kick fd per thread) */
	c->per_proc[I_CIRCUIT] = ((long)rl.rlim_cur - 128) / 3;
	c->per_proc[I_TCP] = c->per_proc[I_UNIX] = ((long)rl.rlim_cur - 128) / 2;
	/* 2 leases per circuit, and a 16 MiB chunk per 31 default-sized circuits */
	if (c->per_proc[I_CIRCUIT] < 1 || op_fds(c->n) > (long)rl.rlim_cur) {
		long most = ((long)rl.rlim_cur - 512) * 100 / 204;

		fprintf(stderr, "circnet-bench idle: %ld circuits need %ld fds in the operator; the "
				"limit is %llu and cannot be raised here (run as root, or ask for at "
				"most %ld)\n",
			c->n, op_fds(c->n), (unsigned long long)rl.rlim_cur, most);
		exit(1);
	}
	if ((c->n + c->per_proc[I_CIRCUIT] - 1) / c->per_proc[I_CIRCUIT] > MAX_PROCS)
		fail("too many processes for that many connections", EMFILE);
}

static void raise_fd_limit(long n)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)n * 8 + 1024;
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	long nr_open = 1 << 20;

	if (f) {
		if (fscanf(f, "%ld", &nr_open) != 1)
			nr_open = 1 << 20;
		fclose(f);
	}
	if (want > (rlim_t)nr_open)
		want = (rlim_t)nr_open;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max < want)
		rl.rlim_max = want; /* root may raise it */
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl)) {
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ---- a server: accept its share, one byte back on each, keep them, wait to be killed ---- */

static void circuit_server(struct idle_cfg *c, int ready)
{
	struct cn_local_ep *eps = calloc((size_t)c->share, sizeof(*eps));
	struct cn_op_conn conn;
	struct cn_op op;
	long i;
	char b;
	int err;

	op = *c->lst;
	if (!eps)
		fail("server", ENOMEM);
	op.timeout_ms = -1;
	for (i = 0; i < c->share; i++) {
		err = cn_op_accept(&op, &eps[i], &conn, 0);
		if (err)
			fail("server: accept", -err);
		if (cn_recv(&eps[i].ep, &b, 1, 0) != 1 || cn_send(&eps[i].ep, &b, 1, 0) != 1)
			fail("server: one byte each way", EIO);
	}
	if (write(ready, "a", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static void socket_server(struct idle_cfg *c, int lfd, int ready)
{
	long i;
	char b;

	for (i = 0; i < c->share; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			fail("server: accept", errno);
		if (read(fd, &b, 1) != 1 || write(fd, &b, 1) != 1)
			fail("server: one byte each way", errno ? errno : EIO);
	}
	if (write(ready, "a", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

/* ---- a client: open its share, one byte each way, report the time, keep them ---- */

static void circuit_client(struct idle_cfg *c, int done)
{
	struct cn_local_ep *eps = calloc((size_t)c->share, sizeof(*eps));
	struct cn_op_conn conn;
	struct cn_addr dst;
	struct cn_op op;
	char path[512], b = 'x';
	int64_t t0;
	long i;
	int err;

	snprintf(path, sizeof(path), "%s/guests/a/operator.sock", c->op.run);
	err = eps ? cn_op_open(&op, path) : -ENOMEM;
	if (err)
		fail("client: register with the operator", -err);
	cn_addr_parse(&dst, "10.99.0.2:7000");
	t0 = mono_ns();
	for (i = 0; i < c->share; i++) {
		err = cn_op_connect(&op, CN_L4_TCP, NULL, &dst, &eps[i], &conn);
		if (err) {
			fprintf(stderr, "circnet-bench idle: connection %ld of %ld: ", i + 1, c->share);
			fail("connect through the operator", -err);
		}
		if (cn_send(&eps[i].ep, &b, 1, 0) != 1 || cn_recv(&eps[i].ep, &b, 1, 0) != 1)
			fail("client: one byte each way", EIO);
	}
	t0 = mono_ns() - t0;
	if (write(done, &t0, sizeof(t0)) != sizeof(t0))
		_exit(1);
	for (;;)
		pause();
}

static void socket_client(struct idle_cfg *c, enum idle_kind k, int done)
{
	int fam = k == I_TCP ? AF_INET : AF_UNIX, one = 1;
	char b = 'x';
	int64_t t0 = mono_ns();
	long i;

	for (i = 0; i < c->share; i++) {
		int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			fail("socket", errno);
		/*
		 * One source address has ~28 000 ephemeral ports: spread the
		 * clients over 127.0.0.2, .3, ... (the port is picked at connect)
		 */
		if (fam == AF_INET) {
			struct sockaddr_in src = { .sin_family = AF_INET };

			src.sin_addr.s_addr =
				htonl(INADDR_LOOPBACK + 2 + (uint32_t)((c->base + i) / 20000));
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
			if (bind(fd, (struct sockaddr *)&src, sizeof(src)))
				fail("bind a loopback source", errno);
		}
		if (connect(fd, (struct sockaddr *)&c->sa, c->salen))
			fail("connect", errno);
		if (fam == AF_INET)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1)
			fail("client: one byte each way", errno ? errno : EIO);
	}
	t0 = mono_ns() - t0;
	if (write(done, &t0, sizeof(t0)) != sizeof(t0))
		_exit(1);
	for (;;)
		pause();
}

static int listen_socket(struct idle_cfg *c, enum idle_kind k)
{
	int fd, one = 1;

	memset(&c->sa, 0, sizeof(c->sa));
	if (k == I_TCP) {
		struct sockaddr_in *in = (struct sockaddr_in *)&c->sa;

		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		c->salen = sizeof(*in);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	} else {
		struct sockaddr_un *un = (struct sockaddr_un *)&c->sa;

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s/idle.sock", c->dir);
		unlink(un->sun_path);
		c->salen = sizeof(*un);
	}
	if (fd < 0 || bind(fd, (struct sockaddr *)&c->sa, c->salen) || listen(fd, 4096) ||
	    getsockname(fd, (struct sockaddr *)&c->sa, &c->salen))
		fail("listen", errno);
	return fd;
}

struct idle_sample {
	double rate, shm, kernel, fds; /* conn/s, KiB/conn, KiB/conn, fds/conn */
};

struct side {
	pid_t pid[MAX_PROCS];
	int nproc;
	int pipe_rd; /* each process writes its report here */
};

/*
 * A report from a side's pipe. A process that failed has exited (it said
 * why on stderr): then the run ends here, instead of waiting for a report
 * that will not come. 10 minutes at most.
 */
static void read_report(const struct side *sd, const struct side *other, void *buf, size_t len,
			const char *what)
{
	struct pollfd pfd = { .fd = sd->pipe_rd, .events = POLLIN };
	int64_t end = mono_ns() + (int64_t)600 * 1000000000;
	int i, st;

	while (poll(&pfd, 1, 200) <= 0) {
		for (i = 0; i < sd->nproc + other->nproc; i++) {
			pid_t pid = i < sd->nproc ? sd->pid[i] : other->pid[i - sd->nproc];

			if (waitpid(pid, &st, WNOHANG) == pid)
				fail(what, EIO);
		}
		if (mono_ns() > end)
			fail(what, ETIMEDOUT);
	}
	if (read(sd->pipe_rd, buf, len) != (ssize_t)len)
		fail(what, EIO);
}

/*
 * nproc processes of one side, each holding its share of c->n; each writes
 * its report (one byte for a server, its elapsed ns for a client) to the
 * side's pipe once all its connections are up.
 */
static void spawn_side(struct idle_cfg *c, enum idle_kind k, bool server, int lfd, int nproc,
		       struct side *sd)
{
	int p[2], i;

	if (pipe2(p, O_CLOEXEC))
		fail("pipe", errno);
	sd->nproc = nproc;
	sd->pipe_rd = p[0];
	for (i = 0; i < nproc; i++) {
		c->base = c->n * i / nproc;
		c->share = c->n * (i + 1) / nproc - c->base;
		sd->pid[i] = fork();
		if (sd->pid[i] < 0)
			fail("fork", errno);
		if (sd->pid[i])
			continue;
		close(p[0]);
		if (server && k == I_CIRCUIT)
			circuit_server(c, p[1]);
		else if (server)
			socket_server(c, lfd, p[1]);
		if (lfd >= 0)
			close(lfd);
		if (k == I_CIRCUIT)
			circuit_client(c, p[1]);
		socket_client(c, k, p[1]);
	}
	close(p[1]);
}

static void kill_side(struct side *sd)
{
	int i;

	for (i = 0; i < sd->nproc; i++)
		kill(sd->pid[i], SIGKILL);
	for (i = 0; i < sd->nproc; i++)
		waitpid(sd->pid[i], NULL, 0);
	close(sd->pipe_rd);
}

static int side_fds(const struct side *sd)
{
	int i, n = 0;

	for (i = 0; i < sd->nproc; i++)
		n += bench_count_fds(sd->pid[i]);
	return n;
}

static void run_one(struct idle_cfg *c, enum idle_kind k, struct idle_sample *out)
{
	int nproc = (int)((c->n + c->per_proc[k] - 1) / c->per_proc[k]), lfd = -1, i, fds0;
	struct side srv, cli;
	struct meminfo m0, m1;
	struct cn_op lst;
	int64_t ns, worst = 0;
	char b;

	if (k == I_CIRCUIT) {
		struct cn_addr a = { .port = 7000 };
		char path[512];
		int err;

		/* one listener, shared by the server processes as nginx's workers share theirs */
		snprintf(path, sizeof(path), "%s/guests/b/operator.sock", c->op.run);
		err = cn_op_open(&lst, path);
		if (!err)
			err = cn_op_listen(&lst, CN_L4_TCP, &a, 4096, NULL, NULL);
		if (err)
			fail("server: listen through the operator", -err);
		c->lst = &lst;
	} else {
		lfd = listen_socket(c, k);
	}
	usleep(100 * 1000);
	read_meminfo(&m0);
	fds0 = c->op.pid > 0 ? bench_count_fds(c->op.pid) : 0;
	spawn_side(c, k, true, lfd, nproc, &srv);
	spawn_side(c, k, false, lfd, nproc, &cli);
	if (k == I_CIRCUIT)
		cn_op_close(&lst);
	else
		close(lfd);
	for (i = 0; i < nproc; i++) {
		read_report(&cli, &srv, &ns, sizeof(ns), "a client or server failed");
		if (ns > worst)
			worst = ns;
	}
	for (i = 0; i < nproc; i++)
		read_report(&srv, &cli, &b, 1, "a server failed");
	usleep(200 * 1000); /* let deferred frees settle */
	read_meminfo(&m1);
	out->rate = (double)c->n / ((double)worst / 1e9);
	out->shm = (double)(m1.shmem - m0.shmem) / (double)c->n;
	out->kernel = (double)(m1.slab - m0.slab + m1.pagetables - m0.pagetables) / (double)c->n;
	/* each process's own few fds (stdio, a session) are in here: small per connection */
	out->fds = (double)(side_fds(&srv) + side_fds(&cli) +
			    (c->op.pid > 0 ? bench_count_fds(c->op.pid) : 0) - fds0) /
		   (double)c->n;
	kill_side(&cli);
	kill_side(&srv);
	/* the operator tears the circuits down behind them: let it finish */
	usleep(300 * 1000);
}

static void add(struct report *rep, const char *group, enum idle_kind k, long n, const char *unit,
		bool hib, const double *s, int reps)
{
	struct result r = { .size = (size_t)n, .higher_is_better = hib, .reps = reps };

	snprintf(r.group, sizeof(r.group), "%s", group);
	snprintf(r.transport, sizeof(r.transport), "%s", idle_name[k]);
	snprintf(r.unit, sizeof(r.unit), "%s", unit);
	memcpy(r.samples, s, sizeof(double) * (size_t)reps);
	report_add(rep, &r);
}

static void usage(void)
{
	fprintf(stderr, "usage: circnet-bench idle [--circuits N] [--reps N] [--operator PATH]\n"
			"                          [--json FILE] [--csv FILE]\n");
	exit(2);
}

static struct idle_cfg *cleanup_cfg;
static pid_t main_pid;

static void cleanup(void)
{
	char cmd[128];

	if (!cleanup_cfg || getpid() != main_pid)
		return;
	bench_op_stop(&cleanup_cfg->op);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", cleanup_cfg->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "circnet-bench idle: could not remove %s\n", cleanup_cfg->dir);
}

int bench_idle(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "circuits", 1, 0, 'n' }, { "reps", 1, 0, 'r' }, { "operator", 1, 0, 'o' },
		{ "json", 1, 0, 'j' },	   { "csv", 1, 0, 'c' },  { 0, 0, 0, 0 },
	};
	static const char *baselines[] = { "tcp-loopback", "af-unix", NULL };
	static struct idle_sample s[I_NKINDS][REPORT_MAX_REPS];
	double v[4][REPORT_MAX_REPS];
	struct idle_cfg c = { .n = 10000, .reps = 1 };
	const struct bench_common common = { .reps = &c.reps, .json = &c.json, .csv = &c.csv,
					     .operator_bin = &c.operator_bin };
	char body[512];
	struct report rep;
	int opt, r, k;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'n':
			c.n = atol(optarg);
			if (c.n < 1 || c.n > 1000000)
				usage();
			break;
		default:
			if (bench_common_opt(&common, opt, optarg) <= 0)
				usage();
		}
	}
	if (optind != argc)
		usage();
	if (!c.operator_bin)
		c.operator_bin = bench_find_operator();
	plan_fds(&c);
	snprintf(c.dir, sizeof(c.dir), "/tmp/circnet-bench-idle.XXXXXX");
	if (!mkdtemp(c.dir))
		fail("mkdtemp", errno);
	signal(SIGPIPE, SIG_IGN);
	main_pid = getpid();
	cleanup_cfg = &c;
	atexit(cleanup);
	snprintf(body, sizeof(body),
		 "log-level warning\n"
		 "defaults {\n  max-circuits %ld\n  max-memory 4096G\n  max-pending 4096\n}\n"
		 "guest a {\n  address 10.99.0.1\n}\n"
		 "guest b {\n  address 10.99.0.2\n  listen tcp 7000\n}\n"
		 "allow tcp from a to b port 7000\ndeny any from any to any\n",
		 c.n + 16);
	bench_op_start(&c.op, c.operator_bin, c.dir, "op", body);
	report_init(&rep, "idle", baselines);
	snprintf(rep.config, sizeof(rep.config),
		 "circuits=%ld reps=%d cpus=%ld procs_per_side=%ld/%ld operator=%s", c.n, c.reps,
		 sysconf(_SC_NPROCESSORS_ONLN),
		 (c.n + c.per_proc[I_CIRCUIT] - 1) / c.per_proc[I_CIRCUIT],
		 (c.n + c.per_proc[I_TCP] - 1) / c.per_proc[I_TCP], c.operator_bin);
	for (r = 0; r < c.reps; r++)
		for (k = 0; k < I_NKINDS; k++) {
			fprintf(stderr, "\r[idle] %ld x %-14s rep %d/%d   ", c.n, idle_name[k], r + 1,
				c.reps);
			fflush(stderr);
			run_one(&c, (enum idle_kind)k, &s[k][r]);
		}
	for (k = 0; k < I_NKINDS; k++) {
		for (r = 0; r < c.reps; r++) {
			v[0][r] = s[k][r].rate;
			v[1][r] = s[k][r].shm;
			v[2][r] = s[k][r].kernel;
			v[3][r] = s[k][r].shm + s[k][r].kernel;
		}
		add(&rep, "idle-setup", (enum idle_kind)k, c.n, "conn/s", true, v[0], c.reps);
		add(&rep, "idle-shm", (enum idle_kind)k, c.n, "KiB/conn", false, v[1], c.reps);
		add(&rep, "idle-kernel", (enum idle_kind)k, c.n, "KiB/conn", false, v[2], c.reps);
		add(&rep, "idle-total", (enum idle_kind)k, c.n, "KiB/conn", false, v[3], c.reps);
		for (r = 0; r < c.reps; r++)
			v[0][r] = s[k][r].fds;
		add(&rep, "idle-fds", (enum idle_kind)k, c.n, "fds/conn", false, v[0], c.reps);
	}
	fprintf(stderr, "\r%-60s\r", "");
	printf("circnet-bench idle: %s\n", rep.config);
	report_print_table(&rep, stdout);
	if (c.json && report_write_json(&rep, c.json))
		fail(c.json, errno);
	if (c.csv && report_write_csv(&rep, c.csv))
		fail(c.csv, errno);
	report_free(&rep);
	return 0;
}
