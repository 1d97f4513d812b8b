// SPDX-License-Identifier: MIT
/*
 * bench/ring.c - `circnet-bench ring`: circuits against their baselines,
 * side by side in one run, two processes pinned one per core.
 *
 * goodput   sender streams messages of one size for a fixed time; the
 *           receiver counts bytes from its first byte to EOF.
 *             memcpy        one core copying the same bytes through a
 *                           ring-sized window (the physical reference)
 *             circuit-copy  cn_send / cn_recv (one copy on each side)
 *             circuit-zc    the sender writes each byte straight into the
 *                           ring, the receiver reads each byte in place
 *                           (reserve/commit, peek/consume: no copy)
 *             circuit-blocking  copy API without the spin budget (socket notifiers)
 *             circuit-block-efd the same on eventfd notifiers
 *           Every sender writes each byte it sends and every receiver reads
 *           each byte it receives, so all transports do the same app work;
 *           circuits spin up to --spin ns (default 20 us) before sleeping.
 *             tcp-loopback  TCP over 127.0.0.1, TCP_NODELAY
 *             af-unix       AF_UNIX stream socketpair
 * latency   64-byte ping-pong round trips: circuit busy-poll (both sides
 *           spin on the ring), circuit-blocking / -block-efd (sleeps), TCP and
 *           AF_UNIX (blocking, as applications use them). p50 and p99.
 * ringsize  circuit-copy goodput with 64 KiB messages for several ring
 *           sizes: the measurement behind CN_RING_DEFAULT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <circnet/local.h>

#include "bench.h"
#include "report.h"

enum kind {
	K_MEMCPY,
	K_CIRCUIT_COPY,
	K_CIRCUIT_ZC,
	K_CIRCUIT_POLL,
	K_CIRCUIT_BLOCK, /* copy API, no spinning: every wait is a sleep */
	K_CIRCUIT_BLOCK_EFD, /* the same with eventfd notifiers instead of socket pairs */
	K_TCP,
	K_UNIX,
};

static const char *kind_name[] = {
	[K_MEMCPY] = "memcpy",
	[K_CIRCUIT_COPY] = "circuit-copy",
	[K_CIRCUIT_ZC] = "circuit-zc",
	[K_CIRCUIT_POLL] = "circuit-busypoll",
	[K_CIRCUIT_BLOCK] = "circuit-blocking",
	[K_CIRCUIT_BLOCK_EFD] = "circuit-block-efd",
	[K_TCP] = "tcp-loopback",
	[K_UNIX] = "af-unix",
};

struct cfg {
	double secs;
	int reps;
	uint32_t ring;
	uint32_t spin_ns; /* circuit busy-poll budget before sleeping */
	bool pin;
	const char *json, *csv;
};

/* One end of a connection of any kind. */
struct end {
	enum kind kind;
	int fd;
	struct cn_local_ep *lep; /* circuits */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pin_to(int cpu, bool pin)
{
	cpu_set_t set;

	if (!pin || sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void die(const char *what)
{
	fprintf(stderr, "circnet-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- connection setup: both ends before fork ---- */

struct conn {
	enum kind kind;
	int fd[2];
	struct cn_local_fds cfds;
};

static void tcp_pair(int fd[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (l < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (void *)&a, &alen))
		die("tcp listen");
	fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd[0] < 0 || connect(fd[0], (void *)&a, sizeof(a)))
		die("tcp connect");
	fd[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fd[1] < 0)
		die("tcp accept");
	close(l);
	setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static bool is_blocking(enum kind k)
{
	return k == K_CIRCUIT_BLOCK || k == K_CIRCUIT_BLOCK_EFD;
}

static void conn_setup(struct conn *c, enum kind k, uint32_t ring)
{
	struct cn_circuit_params p = { .mode = CN_MODE_STREAM, .ring_size = { ring, ring } };
	enum cn_notify_kind nk = k == K_CIRCUIT_BLOCK_EFD ? CN_NOTIFY_EVENTFD : CN_NOTIFY_SOCKET;

	memset(c, 0, sizeof(*c));
	c->kind = k;
	if (k == K_TCP)
		tcp_pair(c->fd);
	else if (k == K_UNIX) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->fd))
			die("socketpair");
	} else if (cn_local_create_kind(&p, nk, &c->cfds)) {
		errno = EINVAL;
		die("circuit");
	}
}

/* Take side 0 (initiator/sender) or 1 and release everything else. */
static uint32_t g_spin_ns;

static void conn_take(struct conn *c, int side, struct end *e)
{
	static struct cn_local_ep lep;
	int fds[CN_LOCAL_NFDS], i, n;

	e->kind = c->kind;
	e->lep = NULL;
	e->fd = -1;
	if (c->kind == K_TCP || c->kind == K_UNIX) {
		e->fd = c->fd[side];
		close(c->fd[side ^ 1]);
		return;
	}
	n = cn_local_select(&c->cfds, side ? CN_ROLE_ACCEPTOR : CN_ROLE_INITIATOR, fds);
	for (i = 0; i < n; i++)
		fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
	cn_local_fds_close(&c->cfds);
	if (cn_local_open(&lep, fds, n, side ? CN_ROLE_ACCEPTOR : CN_ROLE_INITIATOR))
		die("circuit open");
	cn_ep_set_spin(&lep.ep, is_blocking(c->kind) ? 0 : g_spin_ns);
	e->lep = &lep;
}

static void end_close(struct end *e)
{
	if (e->lep)
		cn_local_close(e->lep);
	else
		close(e->fd);
}

/* ---- data movement, per kind ---- */

static ssize_t end_send(struct end *e, const void *buf, size_t len)
{
	ssize_t r;

	switch (e->kind) {
	case K_CIRCUIT_COPY:
	case K_CIRCUIT_BLOCK:
	case K_CIRCUIT_BLOCK_EFD:
		return cn_send(&e->lep->ep, buf, len, 0);
	case K_CIRCUIT_POLL:
		do
			r = cn_send(&e->lep->ep, buf, len, CN_MSG_DONTWAIT);
		while (r == -EAGAIN);
		return r;
	default:
		r = send(e->fd, buf, len, MSG_NOSIGNAL);
		return r < 0 ? -errno : r;
	}
}

static ssize_t end_recv(struct end *e, void *buf, size_t len)
{
	ssize_t r;

	switch (e->kind) {
	case K_CIRCUIT_COPY:
	case K_CIRCUIT_BLOCK:
	case K_CIRCUIT_BLOCK_EFD:
		return cn_recv(&e->lep->ep, buf, len, 0);
	case K_CIRCUIT_POLL:
		do
			r = cn_recv(&e->lep->ep, buf, len, CN_MSG_DONTWAIT);
		while (r == -EAGAIN);
		return r;
	default:
		r = recv(e->fd, buf, len, 0);
		return r < 0 ? -errno : r;
	}
}

/* Zero-copy sender: produce msg bytes straight into the ring. */
static int zc_send(struct end *e, size_t msg, unsigned char val)
{
	struct cn_span sp[2];
	ssize_t r;

	while (msg) {
		r = cn_reserve(&e->lep->ep, msg, sp, 0);
		if (r < 0)
			return (int)r;
		memset(sp[0].ptr, val, sp[0].len);
		if (sp[1].len)
			memset(sp[1].ptr, val, sp[1].len);
		cn_commit(&e->lep->ep, (size_t)r);
		msg -= (size_t)r;
	}
	return 0;
}

typedef uint64_t v2u64 __attribute__((vector_size(16), aligned(1)));

/*
 * Read every byte of a span, as an application consuming the data would:
 * every receiver, of every transport, does this once per byte received.
 */
static uint64_t touch(const void *p, size_t len)
{
	const unsigned char *b = p;
	v2u64 a0 = { 0, 0 }, a1 = a0, a2 = a0, a3 = a0;
	uint64_t acc = 0;
	size_t i = 0;

	for (; i + 64 <= len; i += 64) {
		a0 ^= *(const v2u64 *)(b + i);
		a1 ^= *(const v2u64 *)(b + i + 16);
		a2 ^= *(const v2u64 *)(b + i + 32);
		a3 ^= *(const v2u64 *)(b + i + 48);
	}
	for (; i < len; i++)
		acc ^= b[i];
	a0 ^= a1 ^ a2 ^ a3;
	return acc ^ a0[0] ^ a0[1];
}

/* Zero-copy receiver: returns bytes consumed, 0 at EOF. */
static ssize_t zc_recv(struct end *e, uint64_t *sink)
{
	struct cn_span sp[2];
	ssize_t r = cn_peek(&e->lep->ep, sp, 0);

	if (r <= 0)
		return r;
	*sink ^= touch(sp[0].ptr, sp[0].len) ^ touch(sp[1].ptr, sp[1].len);
	cn_consume(&e->lep->ep, (size_t)r);
	return r;
}

static void end_shutdown(struct end *e)
{
	if (e->lep)
		cn_shutdown(&e->lep->ep, SHUT_WR);
	else
		shutdown(e->fd, SHUT_WR);
}

/* ---- goodput ---- */

struct gp_result {
	uint64_t bytes;
	int64_t ns;
};

static double memcpy_goodput(size_t msg, uint32_t ring, double secs)
{
	size_t win = msg > ring ? msg : ring, off = 0;
	unsigned char *src = malloc(win), *dst = malloc(win);
	int64_t t0, deadline;
	uint64_t bytes = 0;
	int i;

	if (!src || !dst)
		die("malloc");
	memset(src, 1, win);
	memset(dst, 2, win);
	t0 = now_ns();
	deadline = t0 + (int64_t)(secs * 1e9);
	do {
		for (i = 0; i < 16; i++) {
			if (off + msg > win)
				off = 0;
			memcpy(dst + off, src + off, msg);
			__asm__ __volatile__("" ::"r"(dst) : "memory");
			off += msg;
			bytes += msg;
		}
	} while (now_ns() < deadline);
	t0 = now_ns() - t0;
	free(src);
	free(dst);
	return (double)bytes * 8 / (double)t0; /* Gbit/s */
}

static void goodput_receiver(struct end *e, size_t msg, int out)
{
	unsigned char *buf = malloc(msg);
	struct gp_result res = { 0, 0 };
	int64_t first = 0;
	uint64_t sink = 0;
	ssize_t r;

	for (;;) {
		r = e->kind == K_CIRCUIT_ZC ? zc_recv(e, &sink) : end_recv(e, buf, msg);
		if (r <= 0)
			break;
		if (e->kind != K_CIRCUIT_ZC)
			sink ^= touch(buf, (size_t)r);
		if (!first)
			first = now_ns();
		res.bytes += (uint64_t)r;
	}
	res.ns = now_ns() - first;
	if (r < 0 || write(out, &res, sizeof(res)) != sizeof(res))
		_exit(1);
	free(buf);
	_exit(sink == 42); /* keep the reads */
}

static double run_goodput(enum kind k, size_t msg, const struct cfg *cfg, uint32_t ring)
{
	struct gp_result res;
	struct conn c;
	struct end e;
	int pfd[2], status;
	unsigned char *buf;
	int64_t deadline;
	unsigned n = 0;
	pid_t pid;

	if (k == K_MEMCPY)
		return memcpy_goodput(msg, ring, cfg->secs);
	conn_setup(&c, k, ring);
	if (pipe2(pfd, O_CLOEXEC))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(pfd[0]);
		pin_to(1, cfg->pin);
		conn_take(&c, 1, &e);
		goodput_receiver(&e, msg, pfd[1]);
	}
	close(pfd[1]);
	pin_to(0, cfg->pin);
	conn_take(&c, 0, &e);
	buf = malloc(msg);
	memset(buf, 0x3c, msg);
	deadline = now_ns() + (int64_t)(cfg->secs * 1e9);
	do {
		ssize_t r;

		/* Every sender writes each byte it sends: in place, or into its buffer. */
		if (k == K_CIRCUIT_ZC) {
			r = zc_send(&e, msg, (unsigned char)n);
		} else {
			memset(buf, (unsigned char)n, msg);
			r = end_send(&e, buf, msg);
		}

		if (r < 0) {
			errno = (int)-r;
			die("send");
		}
	} while ((++n & 7) || now_ns() < deadline);
	end_shutdown(&e);
	if (read(pfd[0], &res, sizeof(res)) != sizeof(res))
		die("receiver result");
	waitpid(pid, &status, 0);
	end_close(&e);
	close(pfd[0]);
	free(buf);
	return res.ns > 0 ? (double)res.bytes * 8 / (double)res.ns : 0;
}

/* ---- latency ---- */

#define MAX_SAMPLES 400000

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int xfer_exact(struct end *e, unsigned char *buf, size_t len, bool sending)
{
	size_t done = 0;
	ssize_t r;

	while (done < len) {
		r = sending ? end_send(e, buf + done, len - done)
			    : end_recv(e, buf + done, len - done);
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

static void run_latency(enum kind k, const struct cfg *cfg, double *p50, double *p99)
{
	static int64_t samples[MAX_SAMPLES];
	unsigned char msg[64] = { 0 };
	int64_t deadline, t0;
	size_t n = 0;
	struct conn c;
	struct end e;
	int status;
	pid_t pid;

	conn_setup(&c, k, cfg->ring);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		pin_to(1, cfg->pin);
		conn_take(&c, 1, &e);
		while (xfer_exact(&e, msg, sizeof(msg), false) == 0)
			if (xfer_exact(&e, msg, sizeof(msg), true))
				break;
		end_close(&e);
		_exit(0);
	}
	pin_to(0, cfg->pin);
	conn_take(&c, 0, &e);
	deadline = now_ns() + (int64_t)(cfg->secs * 1e9);
	while (n < MAX_SAMPLES && (n < 100 || now_ns() < deadline)) {
		t0 = now_ns();
		if (xfer_exact(&e, msg, sizeof(msg), true) ||
		    xfer_exact(&e, msg, sizeof(msg), false))
			die("ping-pong");
		samples[n++] = now_ns() - t0;
	}
	end_shutdown(&e);
	waitpid(pid, &status, 0);
	end_close(&e);
	qsort(samples, n, sizeof(samples[0]), cmp_i64);
	*p50 = (double)samples[n / 2] / 1000.0;
	*p99 = (double)samples[n * 99 / 100] / 1000.0;
}

/* ---- driver ---- */

static void progress(const char *group, const char *t, size_t size, int rep, int reps)
{
	fprintf(stderr, "\r[ring] %-9s %-18s %8zu  rep %d/%d   ", group, t, size, rep, reps);
	fflush(stderr);
}

static void add(struct report *rep, const char *group, enum kind k, size_t size, const char *unit,
		bool hib, const double *s, int n)
{
	struct result r = { .size = size, .higher_is_better = hib, .reps = n };

	snprintf(r.group, sizeof(r.group), "%s", group);
	snprintf(r.transport, sizeof(r.transport), "%s", kind_name[k]);
	snprintf(r.unit, sizeof(r.unit), "%s", unit);
	memcpy(r.samples, s, sizeof(double) * (size_t)n);
	report_add(rep, &r);
}

static void usage(void)
{
	fprintf(stderr, "usage: circnet-bench ring [--quick] [--reps N] [--secs S] [--ring SIZE]\n"
			"                          [--sizes a,b,...] [--spin NS] [--no-pin]\n"
			"                          [--json FILE] [--csv FILE]\n");
	exit(2);
}

static size_t parse_sizes(const char *s, size_t *out, size_t max)
{
	size_t n = 0;
	char *end;

	while (*s && n < max) {
		unsigned long long v = strtoull(s, &end, 0);

		if (end == s || v == 0 || v > (64u << 20))
			usage();
		if (*end == 'k' || *end == 'K')
			v <<= 10, end++;
		else if (*end == 'm' || *end == 'M')
			v <<= 20, end++;
		out[n++] = (size_t)v;
		if (*end == ',')
			end++;
		else if (*end)
			usage();
		s = end;
	}
	return n;
}

int bench_ring(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", 0, 0, 'q' }, { "reps", 1, 0, 'r' },	{ "secs", 1, 0, 's' },
		{ "ring", 1, 0, 'R' },	{ "sizes", 1, 0, 'z' }, { "no-pin", 0, 0, 'P' },
		{ "json", 1, 0, 'j' },	{ "csv", 1, 0, 'c' },	{ "spin", 1, 0, 'S' },
		{ 0, 0, 0, 0 },
	};
	static const char *baselines[] = { "tcp-loopback", "af-unix", "memcpy", NULL };
	static const enum kind gp_kinds[] = { K_MEMCPY,	       K_CIRCUIT_COPY,	    K_CIRCUIT_ZC,
					      K_CIRCUIT_BLOCK, K_CIRCUIT_BLOCK_EFD, K_TCP,
					      K_UNIX };
	static const enum kind lat_kinds[] = { K_CIRCUIT_POLL, K_CIRCUIT_BLOCK, K_CIRCUIT_BLOCK_EFD,
					       K_TCP, K_UNIX };
	static const uint32_t ring_sweep[] = { 16384, 65536, 262144, 1048576, 4194304 };
	size_t sizes[16] = { 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576 };
	size_t nsizes = 8, i, j;
	struct cfg cfg = {
		.secs = 0.4,
		.reps = 3,
		.ring = CN_RING_DEFAULT,
		.pin = true,
		.spin_ns = 20000,
	};
	const struct bench_common common = { .reps = &cfg.reps, .secs = &cfg.secs,
					     .json = &cfg.json, .csv = &cfg.csv };
	double s[REPORT_MAX_REPS], p99s[REPORT_MAX_REPS];
	struct report rep;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'q':
			cfg.secs = 0.15;
			cfg.reps = 1;
			break;
		case 'R':
			cfg.ring = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'z':
			nsizes = parse_sizes(optarg, sizes, 16);
			break;
		case 'P':
			cfg.pin = false;
			break;
		case 'S':
			cfg.spin_ns = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		default:
			if (bench_common_opt(&common, c, optarg) <= 0)
				usage();
		}
	}
	{
		struct cn_circuit_params p = { .mode = CN_MODE_STREAM, .ring_size = { cfg.ring, cfg.ring } };

		if (!cn_circuit_size(&p)) {
			fprintf(stderr,
				"circnet-bench: --ring %u: not a power of two in [%u, %u]\n",
				cfg.ring, CN_RING_MIN, CN_RING_MAX);
			return 2;
		}
	}
	g_spin_ns = cfg.spin_ns;
	signal(SIGPIPE, SIG_IGN);
	report_init(&rep, "ring", baselines);
	snprintf(rep.config, sizeof(rep.config),
		 "secs=%.2f reps=%d ring=%u spin_ns=%u pin=%d cpus=%ld", cfg.secs, cfg.reps,
		 cfg.ring, cfg.spin_ns, cfg.pin, sysconf(_SC_NPROCESSORS_ONLN));
	for (i = 0; i < nsizes; i++) {
		for (j = 0; j < sizeof(gp_kinds) / sizeof(gp_kinds[0]); j++) {
			for (r = 0; r < cfg.reps; r++) {
				progress("goodput", kind_name[gp_kinds[j]], sizes[i], r + 1,
					 cfg.reps);
				s[r] = run_goodput(gp_kinds[j], sizes[i], &cfg, cfg.ring);
			}
			add(&rep, "goodput", gp_kinds[j], sizes[i], "Gbit/s", true, s, cfg.reps);
		}
	}
	for (j = 0; j < sizeof(lat_kinds) / sizeof(lat_kinds[0]); j++) {
		for (r = 0; r < cfg.reps; r++) {
			progress("latency", kind_name[lat_kinds[j]], 64, r + 1, cfg.reps);
			run_latency(lat_kinds[j], &cfg, &s[r], &p99s[r]);
		}
		add(&rep, "rtt-p50", lat_kinds[j], 64, "us", false, s, cfg.reps);
		add(&rep, "rtt-p99", lat_kinds[j], 64, "us", false, p99s, cfg.reps);
	}
	for (j = 0; j < sizeof(ring_sweep) / sizeof(ring_sweep[0]); j++) {
		for (r = 0; r < cfg.reps; r++) {
			progress("ringsize", "circuit-copy", ring_sweep[j], r + 1, cfg.reps);
			s[r] = run_goodput(K_CIRCUIT_COPY, 65536, &cfg, ring_sweep[j]);
		}
		add(&rep, "ring-64K", K_CIRCUIT_COPY, ring_sweep[j], "Gbit/s", true, s, cfg.reps);
	}
	fprintf(stderr, "\r%-70s\r", "");
	printf("circnet-bench ring: %s\n", rep.config);
	report_print_table(&rep, stdout);
	if (cfg.json && report_write_json(&rep, cfg.json))
		die(cfg.json);
	if (cfg.csv && report_write_csv(&rep, cfg.csv))
		die(cfg.csv);
	report_free(&rep);
	return 0;
}
