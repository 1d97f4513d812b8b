// SPDX-License-Identifier: MIT
/*
 * bench/proxy.c - circnet-bench proxy: a guest reaching a server in the
 * host's network namespace through the kernel-socket proxy stack, against
 * the same client talking to the same server directly over TCP loopback and
 * from a network namespace joined by a veth pair and a Linux bridge (what
 * container networks do), measured side by side in one run.
 *
 * Workloads: a stream (goodput, client to server, SIZE-byte writes) and
 * 64-byte request/response (rate and latency percentiles). The client is
 * this binary ("proxy-client"), run in the host namespace, in the bridged
 * namespace, or as a guest with `circnet run`; the server is a child of
 * the benchmark. A real circnet-operator and circnet-dataplane are started
 * for the run. Needs root (namespaces).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "report.h"

enum px_kind { PX_PROXY, PX_LOOPBACK, PX_BRIDGE, PX_NKINDS };

static const char *const px_name[] = {
	[PX_PROXY] = "circuit-proxy",
	[PX_LOOPBACK] = "tcp-loopback",
	[PX_BRIDGE] = "veth-bridge",
};

#define RR_SIZE 64

struct px_cfg {
	double secs;
	int reps;
	size_t size;
	char bindir[PATH_MAX];
	char dir[64];
	char ns[32], br[32], vh[32], vr[32];
	char net[32]; /* "10.216.N" */
	int port;
	pid_t server, op, dp;
	const char *json, *csv;
};

static struct px_cfg *active;

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "circnet-bench proxy: %s: %s\n", what, strerror(errno));
	exit(1);
}

static ssize_t full_write(int fd, const void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(fd, (const char *)p + done, n - done);

		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return (ssize_t)done;
}

/* ---- the client (a separate process: it may be a guest) ---- */

static int dial(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* proxy-client HOST PORT stream|rr SECS SIZE: one result line on stdout. */
static int client_main(int argc, char **argv)
{
	const char *host, *mode;
	int port, fd;
	size_t size;
	int64_t t0, end, now;

	if (argc != 6)
		return 2;
	host = argv[1];
	port = atoi(argv[2]);
	mode = argv[3];
	size = (size_t)atol(argv[5]);
	if (!size)
		size = 1;
	t0 = mono_ns();
	end = t0 + (int64_t)(atof(argv[4]) * 1e9);
	fd = dial(host, port);
	if (!strcmp(mode, "stream")) {
		char *buf = calloc(1, size);
		uint64_t got = 0;

		if (!buf || write(fd, "S", 1) != 1)
			die("stream");
		while (mono_ns() < end)
			if (full_write(fd, buf, size) < 0)
				die("write");
		shutdown(fd, SHUT_WR);
		if (recv(fd, &got, sizeof(got), MSG_WAITALL) != sizeof(got))
			die("stream count");
		printf("%llu %lld\n", (unsigned long long)got, (long long)(mono_ns() - t0));
		free(buf);
	} else {
		static int64_t lat[1 << 22];
		char msg[RR_SIZE] = { 0 };
		size_t n = 0;

		if (write(fd, "R", 1) != 1)
			die("rr");
		while ((now = mono_ns()) < end && n < sizeof(lat) / sizeof(lat[0])) {
			if (full_write(fd, msg, RR_SIZE) < 0 ||
			    recv(fd, msg, RR_SIZE, MSG_WAITALL) != RR_SIZE)
				die("rr round trip");
			lat[n++] = mono_ns() - now;
		}
		qsort(lat, n, sizeof(lat[0]), cmp_i64);
		printf("%zu %lld %lld %lld\n", n, (long long)(mono_ns() - t0),
		       (long long)(n ? lat[n / 2] : 0), (long long)(n ? lat[n * 99 / 100] : 0));
	}
	close(fd);
	return 0;
}

/* ---- the server ---- */

static void *serve_conn(void *arg)
{
	static char buf[1 << 20];
	int fd = (int)(intptr_t)arg;
	char kind, msg[RR_SIZE];
	uint64_t got = 0;
	ssize_t n;

	if (read(fd, &kind, 1) == 1 && kind == 'S') {
		char *local = malloc(1 << 20);

		while ((n = read(fd, local ? local : buf, 1 << 20)) > 0)
			got += (uint64_t)n;
		full_write(fd, &got, sizeof(got));
		free(local);
	} else if (kind == 'R') {
		while (recv(fd, msg, RR_SIZE, MSG_WAITALL) == RR_SIZE)
			if (full_write(fd, msg, RR_SIZE) < 0)
				break;
	}
	close(fd);
	return NULL;
}

static void server_main(const char *host, int port, int ready)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 64))
		die("server");
	if (write(ready, "r", 1) != 1)
		die("server ready");
	close(ready);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		pthread_t t;

		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd))
			close(fd);
		else
			pthread_detach(t);
	}
}

/* ---- setup ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void teardown(void)
{
	struct px_cfg *c = active;

	if (!c)
		return;
	active = NULL;
	if (c->dp > 0)
		kill(c->dp, SIGTERM);
	if (c->op > 0)
		kill(c->op, SIGTERM);
	if (c->server > 0)
		kill(c->server, SIGKILL);
	while (wait(NULL) > 0)
		;
	sh("ip netns del %s 2>/dev/null; ip link del %s 2>/dev/null; ip link del %s 2>/dev/null",
	   c->ns, c->vh, c->br);
	sh("rm -rf %s", c->dir);
}

static void on_signal(int sig)
{
	teardown();
	_exit(128 + sig);
}

static pid_t spawn(const char *log, char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void setup(struct px_cfg *c)
{
	char conf[128], run[128], opbin[PATH_MAX + 32], dpbin[PATH_MAX + 32], log[128], ok[8];
	char ctlcmd[PATH_MAX + 256];
	int tag = getpid() % 200 + 20, pfd[2], i;
	FILE *f;

	snprintf(c->ns, sizeof(c->ns), "cnbp%d", (int)getpid());
	snprintf(c->br, sizeof(c->br), "cnbp%db", (int)getpid());
	snprintf(c->vh, sizeof(c->vh), "cnbp%dh", (int)getpid());
	snprintf(c->vr, sizeof(c->vr), "cnbp%dr", (int)getpid());
	snprintf(c->net, sizeof(c->net), "10.216.%d", tag);
	c->port = 9000 + tag;
	snprintf(c->dir, sizeof(c->dir), "/tmp/circnet-bench-proxy.XXXXXX");
	if (!mkdtemp(c->dir))
		die("mkdtemp");
	active = c;
	atexit(teardown);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (sh("ip netns add %s && ip link add %s type bridge && ip link set %s up && "
	       "ip addr add %s.1/24 dev %s && ip link add %s type veth peer name %s && "
	       "ip link set %s master %s up && ip link set %s netns %s && "
	       "ip -n %s addr add %s.2/24 dev %s && ip -n %s link set %s up && "
	       "ip -n %s link set lo up",
	       c->ns, c->br, c->br, c->net, c->br, c->vh, c->vr, c->vh, c->br, c->vr, c->ns, c->ns,
	       c->net, c->vr, c->ns, c->vr, c->ns))
		die("network namespace setup (ip)");

	if (pipe(pfd))
		die("pipe");
	c->server = fork();
	if (c->server == 0) {
		char host[40];

		close(pfd[0]);
		snprintf(host, sizeof(host), "%s.1", c->net);
		server_main(host, c->port, pfd[1]);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], ok, 1) != 1)
		die("server start");
	close(pfd[0]);

	snprintf(conf, sizeof(conf), "%s/circnet.conf", c->dir);
	snprintf(run, sizeof(run), "%s/run", c->dir);
	f = fopen(conf, "w");
	if (!f)
		die(conf);
	fprintf(f,
		"run-dir %s\nguest client {\n    address 10.217.0.10\n}\n"
		"proxy tcp from client to %s.0/24\n",
		run, c->net);
	fclose(f);
	snprintf(opbin, sizeof(opbin), "%s/../operator/circnet-operator", c->bindir);
	snprintf(dpbin, sizeof(dpbin), "%s/../dataplane/circnet-dataplane", c->bindir);
	snprintf(log, sizeof(log), "%s/daemons.log", c->dir);
	c->op = spawn(log, (char *[]){ opbin, "--config", conf, NULL });
	usleep(200000);
	c->dp = spawn(log, (char *[]){ dpbin, "--run-dir", run, NULL });
	for (i = 0; i < 100; i++) {
		snprintf(ctlcmd, sizeof(ctlcmd),
			 "%s/../operator/circnetctl --run-dir %s proxy --json 2>/dev/null"
			 " | grep -q '\"operator_sessions\":[1-9]'",
			 c->bindir, run);
		if (!sh("%s", ctlcmd))
			return;
		usleep(100000);
	}
	fprintf(stderr, "circnet-bench proxy: the proxy stack did not attach (see %s)\n", log);
	exit(1);
}

/* Run one client; its result line's numbers into v. */
static int run_client(struct px_cfg *c, enum px_kind k, const char *mode, double v[4])
{
	char cmd[PATH_MAX * 2 + 512], line[256] = { 0 }, host[40], self[PATH_MAX + 32];
	long long a = 0, b = 0, p50 = 0, p99 = 0;
	FILE *p;

	snprintf(host, sizeof(host), "%s.1", c->net);
	snprintf(self, sizeof(self), "%s/circnet-bench", c->bindir);
	switch (k) {
	case PX_PROXY:
		snprintf(cmd, sizeof(cmd),
			 "%s/../guest/circnet run --run-dir %s/run --guest client -- "
			 "%s proxy-client %s %d %s %.2f %zu",
			 c->bindir, c->dir, self, host, c->port, mode, c->secs, c->size);
		break;
	case PX_LOOPBACK:
		snprintf(cmd, sizeof(cmd), "%s proxy-client %s %d %s %.2f %zu", self, host, c->port,
			 mode, c->secs, c->size);
		break;
	default:
		snprintf(cmd, sizeof(cmd), "ip netns exec %s %s proxy-client %s %d %s %.2f %zu",
			 c->ns, self, host, c->port, mode, c->secs, c->size);
	}
	p = popen(cmd, "r");
	if (!p || !fgets(line, sizeof(line), p) ||
	    sscanf(line, "%lld %lld %lld %lld", &a, &b, &p50, &p99) < 2 || b <= 0) {
		if (p)
			pclose(p);
		fprintf(stderr, "circnet-bench proxy: %s %s client failed\n", px_name[k], mode);
		return -1;
	}
	pclose(p);
	if (!strcmp(mode, "stream")) {
		v[0] = (double)a * 8 / ((double)b / 1e9) / 1e9; /* Gbit/s */
	} else {
		v[1] = (double)a / ((double)b / 1e9);
		v[2] = (double)p50 / 1e3;
		v[3] = (double)p99 / 1e3;
	}
	return 0;
}

static void add(struct report *rep, const char *group, enum px_kind k, size_t size,
		const char *unit, bool hib, const double *s, int n)
{
	struct result r = { .size = size, .higher_is_better = hib, .reps = n };

	snprintf(r.group, sizeof(r.group), "%s", group);
	snprintf(r.transport, sizeof(r.transport), "%s", px_name[k]);
	snprintf(r.unit, sizeof(r.unit), "%s", unit);
	memcpy(r.samples, s, sizeof(double) * (size_t)n);
	report_add(rep, &r);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: circnet-bench proxy [--quick] [--reps N] [--secs S] [--size BYTES]\n"
		"                           [--json FILE] [--csv FILE]   (root)\n");
	exit(2);
}

int bench_proxy(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", 0, 0, 'q' }, { "reps", 1, 0, 'r' }, { "secs", 1, 0, 's' },
		{ "size", 1, 0, 'z' },	{ "json", 1, 0, 'j' }, { "csv", 1, 0, 'c' },
		{ 0, 0, 0, 0 },
	};
	static const char *baselines[] = { "tcp-loopback", "veth-bridge", NULL };
	static double v[PX_NKINDS][4][REPORT_MAX_REPS];
	struct px_cfg c = { .secs = 2.0, .reps = 3, .size = 65536 };
	const struct bench_common common = { .reps = &c.reps, .secs = &c.secs, .json = &c.json,
					     .csv = &c.csv };
	char self[PATH_MAX] = { 0 };
	struct report rep;
	int opt, r, k;
	double one[4];

	if (argc >= 2 && !strcmp(argv[0], "proxy-client"))
		return client_main(argc, argv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'q':
			c.secs = 1.0;
			c.reps = 1;
			break;
		case 'z':
			c.size = (size_t)atol(optarg);
			if (c.size < 1 || c.size > (64u << 20))
				usage();
			break;
		default:
			if (bench_common_opt(&common, opt, optarg) <= 0)
				usage();
		}
	}
	if (optind != argc)
		usage();
	if (geteuid()) {
		fprintf(stderr, "circnet-bench proxy: needs root (network namespaces)\n");
		return 1;
	}
	if (readlink("/proc/self/exe", self, sizeof(self) - 1) < 0)
		die("/proc/self/exe");
	snprintf(c.bindir, sizeof(c.bindir), "%s", dirname(self));
	signal(SIGPIPE, SIG_IGN);
	setup(&c);
	report_init(&rep, "proxy", baselines);
	snprintf(rep.config, sizeof(rep.config), "secs=%.2f reps=%d size=%zu rr=%d cpus=%ld",
		 c.secs, c.reps, c.size, RR_SIZE, sysconf(_SC_NPROCESSORS_ONLN));
	for (r = 0; r < c.reps; r++)
		for (k = 0; k < PX_NKINDS; k++) {
			fprintf(stderr, "\r[proxy] %-14s rep %d/%d   ", px_name[k], r + 1, c.reps);
			fflush(stderr);
			if (run_client(&c, (enum px_kind)k, "stream", one) ||
			    run_client(&c, (enum px_kind)k, "rr", one))
				exit(1);
			v[k][0][r] = one[0];
			v[k][1][r] = one[1];
			v[k][2][r] = one[2];
			v[k][3][r] = one[3];
		}
	for (k = 0; k < PX_NKINDS; k++) {
		add(&rep, "goodput", (enum px_kind)k, c.size, "Gbit/s", true, v[k][0], c.reps);
		add(&rep, "rr-rate", (enum px_kind)k, RR_SIZE, "req/s", true, v[k][1], c.reps);
		add(&rep, "rr-p50", (enum px_kind)k, RR_SIZE, "us", false, v[k][2], c.reps);
		add(&rep, "rr-p99", (enum px_kind)k, RR_SIZE, "us", false, v[k][3], c.reps);
	}
	teardown();
	fprintf(stderr, "\r%-60s\r", "");
	printf("circnet-bench proxy: %s\n", rep.config);
	report_print_table(&rep, stdout);
	if (c.json && report_write_json(&rep, c.json))
		die(c.json);
	if (c.csv && report_write_csv(&rep, c.csv))
		die(c.csv);
	report_free(&rep);
	return 0;
}
