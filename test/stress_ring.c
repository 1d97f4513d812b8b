// SPDX-License-Identifier: MIT
/*
 * test/stress_ring.c - full-duplex stress of one circuit.
 *
 * Both endpoints send and receive at once (a sender and a receiver thread
 * each), random chunk sizes, randomly mixing the copy API and the zero-copy
 * API. Every byte is checked against a position-derived pattern (stream) or
 * every datagram against its sequence number, length and content (dgram).
 *
 *   --mode fork     two processes; the circuit travels over SCM_RIGHTS
 *   --mode threads  one process (what ThreadSanitizer can see)
 *   --nonblock      DONTWAIT calls + cn_poll_arm + poll() on the notifier fds
 *   --dgram         datagram mode
 *   --bytes N       per direction (default 32 MiB); --ring SIZE; --seed S
 *   --corrupt-at N  flip stream byte N on the way: the checker must fail
 *
 * Exits 0 on success; any mismatch, error or a run longer than --timeout
 * seconds (default 120) fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <circnet/local.h>

struct opts {
	bool fork_mode, nonblock, dgram;
	uint64_t bytes;
	uint32_t ring;
	uint64_t seed;
	unsigned timeout;
	uint64_t corrupt_at; /* self-test: the initiator flips this stream byte (0 = off) */
};

static struct opts o = { .fork_mode = true, .bytes = 32u << 20, .seed = 1, .timeout = 120 };

struct side {
	struct cn_endpoint *ep;
	int dir; /* direction this side sends: 0 = A, 1 = B */
	const char *name;
	int failed;
	uint64_t moved;
};

/* Byte at stream position i of direction dir. */
static inline unsigned char sbyte(int dir, uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull + (uint64_t)dir * 0x632be59bd9b4e019ull;

	return (unsigned char)(x >> (8 * (i & 7)));
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Datagram seq: length and contents follow from (dir, seq). */
static size_t dlen(int dir, uint64_t seq, size_t max)
{
	uint64_t s = seq * 2654435761u + (uint64_t)dir + 1;

	return (size_t)(rnd(&s) % (max + 1));
}

#define FAIL(sd, ...)                                                                              \
	do {                                                                                       \
		fprintf(stderr, "stress %s: ", (sd)->name);                                        \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		(sd)->failed = 1;                                                                  \
		cn_reset((sd)->ep); /* unblock every other thread */                               \
		return NULL;                                                                       \
	} while (0)

/* Wait until the endpoint is ready for ev, via the notifier fds (epoll-style path). */
static int wait_ready(struct cn_endpoint *ep, unsigned ev)
{
	struct pollfd pfd;
	int r;

	if (cn_poll_arm(ep, ev) & (ev | CN_POLLERR | CN_POLLHUP))
		return 0;
	pfd.fd = cn_notifier_fd(ev == CN_POLLIN ? ep->wait_rx : ep->wait_tx);
	pfd.events = POLLIN;
	r = poll(&pfd, 1, 5000);
	if (r < 0 && errno != EINTR)
		return -errno;
	/* Ready, yet nobody woke us for 5 s: a lost wake-up. */
	if (r == 0 && (cn_poll(ep) & ev)) {
		fprintf(stderr, "stress: lost wake-up (%s)\n", ev == CN_POLLIN ? "in" : "out");
		return -ETIME;
	}
	if (pfd.revents)
		cn_notifier_drain(ev == CN_POLLIN ? ep->wait_rx : ep->wait_tx);
	return 0;
}

static ssize_t tx_chunk(struct cn_endpoint *ep, unsigned char *buf, size_t len, bool zc,
			unsigned fl, int dir, uint64_t pos)
{
	struct cn_span sp[2];
	ssize_t r;
	size_t i, k;

	if (o.corrupt_at && dir == 0 && o.corrupt_at >= pos && o.corrupt_at < pos + len)
		zc = false; /* keep the flipped byte in one place */
	if (!zc) {
		for (i = 0; i < len; i++)
			buf[i] = sbyte(dir, pos + i);
		if (o.corrupt_at && dir == 0 && o.corrupt_at >= pos && o.corrupt_at < pos + len)
			buf[o.corrupt_at - pos] ^= 0x20;
		return cn_send(ep, buf, len, fl);
	}
	r = cn_reserve(ep, len, sp, fl);
	if (r <= 0)
		return r;
	for (k = 0, i = 0; k < 2; k++) {
		size_t j;

		for (j = 0; j < sp[k].len; j++, i++)
			((unsigned char *)sp[k].ptr)[j] = sbyte(dir, pos + i);
	}
	return cn_commit(ep, (size_t)r) ?: r;
}

static void *stream_sender(void *arg)
{
	struct side *sd = arg;
	static _Thread_local unsigned char buf[1 << 17];
	uint64_t s = o.seed * 31 + (uint64_t)sd->dir, pos = 0;
	unsigned fl = o.nonblock ? CN_MSG_DONTWAIT : 0;
	ssize_t r;

	while (pos < o.bytes) {
		size_t len = 1 + rnd(&s) % (rnd(&s) & 1 ? 64 : sizeof(buf) - 1);

		len = len > o.bytes - pos ? o.bytes - pos : len;
		r = tx_chunk(sd->ep, buf, len, rnd(&s) & 1, fl, sd->dir, pos);
		if (r == -EAGAIN && o.nonblock) {
			if (wait_ready(sd->ep, CN_POLLOUT))
				FAIL(sd, "poll failed");
			continue;
		}
		if (r <= 0)
			FAIL(sd, "send at %llu: %s", (unsigned long long)pos, strerror((int)-r));
		pos += (uint64_t)r;
	}
	sd->moved = pos;
	if (cn_shutdown(sd->ep, SHUT_WR))
		FAIL(sd, "shutdown");
	return NULL;
}

static void *stream_receiver(void *arg)
{
	struct side *sd = arg;
	static _Thread_local unsigned char buf[1 << 17];
	uint64_t s = o.seed * 17 + (uint64_t)sd->dir, pos = 0;
	unsigned fl = o.nonblock ? CN_MSG_DONTWAIT : 0;
	int peer = sd->dir ^ 1;
	struct cn_span sp[2];
	ssize_t r;
	size_t i, k;

	for (;;) {
		bool zc = rnd(&s) & 1;
		size_t want = 1 + rnd(&s) % sizeof(buf);

		if (zc) {
			r = cn_peek(sd->ep, sp, fl);
			if (r > 0) {
				size_t n = (size_t)r < want ? (size_t)r : want, c = 0;

				for (k = 0; k < 2 && c < n; k++)
					for (i = 0; i < sp[k].len && c < n; i++, c++)
						if (((unsigned char *)sp[k].ptr)[i] !=
						    sbyte(peer, pos + c))
							FAIL(sd, "zc mismatch at %llu",
							     (unsigned long long)(pos + c));
				if (cn_consume(sd->ep, n))
					FAIL(sd, "consume");
				r = (ssize_t)n;
			}
		} else {
			r = cn_recv(sd->ep, buf, want, fl);
			for (i = 0; r > 0 && i < (size_t)r; i++)
				if (buf[i] != sbyte(peer, pos + i))
					FAIL(sd, "mismatch at %llu", (unsigned long long)(pos + i));
		}
		if (r == -EAGAIN && o.nonblock) {
			if (wait_ready(sd->ep, CN_POLLIN))
				FAIL(sd, "poll failed");
			continue;
		}
		if (r == 0)
			break;
		if (r < 0)
			FAIL(sd, "recv at %llu: %s", (unsigned long long)pos, strerror((int)-r));
		pos += (uint64_t)r;
	}
	if (pos != o.bytes)
		FAIL(sd, "EOF after %llu of %llu bytes", (unsigned long long)pos,
		     (unsigned long long)o.bytes);
	sd->moved = pos;
	return NULL;
}

static void dgram_fill(unsigned char *p, size_t len, int dir, uint64_t seq)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = sbyte(dir, seq * 65599 + i);
	if (len >= 8)
		memcpy(p, &seq, 8);
}

static void *dgram_sender(void *arg)
{
	struct side *sd = arg;
	static _Thread_local unsigned char buf[CN_DGRAM_MAX];
	unsigned fl = o.nonblock ? CN_MSG_DONTWAIT : 0;
	size_t max = sd->ep->dgram_max < 9000 ? sd->ep->dgram_max : 9000;
	uint64_t seq = 0, sent = 0;
	struct cn_span sp[2];
	ssize_t r;

	while (sent < o.bytes) {
		size_t len = dlen(sd->dir, seq, max);

		if (seq & 1) {
			dgram_fill(buf, len, sd->dir, seq);
			r = cn_send(sd->ep, buf, len, fl);
		} else {
			r = cn_reserve(sd->ep, len, sp, fl);
			if (r >= 0) {
				dgram_fill(sp[0].ptr, len, sd->dir, seq);
				r = cn_commit(sd->ep, len) ?: (ssize_t)len;
			}
		}
		if (r == -EAGAIN && o.nonblock) {
			if (wait_ready(sd->ep, CN_POLLOUT))
				FAIL(sd, "poll failed");
			continue;
		}
		if (r != (ssize_t)len)
			FAIL(sd, "dgram send %llu: %zd", (unsigned long long)seq, r);
		seq++;
		sent += len;
	}
	sd->moved = seq;
	if (cn_shutdown(sd->ep, SHUT_WR))
		FAIL(sd, "shutdown");
	return NULL;
}

static void *dgram_receiver(void *arg)
{
	struct side *sd = arg;
	static _Thread_local unsigned char buf[CN_DGRAM_MAX], ref[CN_DGRAM_MAX];
	unsigned fl = o.nonblock ? CN_MSG_DONTWAIT : 0, ofl;
	size_t max = sd->ep->dgram_max < 9000 ? sd->ep->dgram_max : 9000;
	int peer = sd->dir ^ 1;
	uint64_t seq = 0;
	ssize_t r;

	for (;;) {
		struct iovec iov = { buf, sizeof(buf) };
		size_t len = dlen(peer, seq, max);

		r = cn_recvv(sd->ep, &iov, 1, fl, &ofl);
		if (r == -EAGAIN && o.nonblock) {
			if (wait_ready(sd->ep, CN_POLLIN))
				FAIL(sd, "poll failed");
			continue;
		}
		if (r == 0 && (ofl & CN_MSGF_EOF))
			break;
		if (r != (ssize_t)len)
			FAIL(sd, "dgram %llu: got %zd bytes, want %zu", (unsigned long long)seq, r,
			     len);
		dgram_fill(ref, len, peer, seq);
		if (memcmp(buf, ref, len))
			FAIL(sd, "dgram %llu: content mismatch", (unsigned long long)seq);
		seq++;
	}
	sd->moved = seq;
	return NULL;
}

/* Run one endpoint's sender and receiver threads; 0 on success. */
static int run_side(struct cn_endpoint *ep, int dir, const char *name)
{
	struct side tx = { ep, dir, name, 0, 0 }, rx = { ep, dir, name, 0, 0 };
	pthread_t t1, t2;

	pthread_create(&t1, NULL, o.dgram ? dgram_sender : stream_sender, &tx);
	pthread_create(&t2, NULL, o.dgram ? dgram_receiver : stream_receiver, &rx);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	if (tx.failed || rx.failed)
		return 1;
	printf("stress %s: sent %llu %s, received %llu; wake-ups sent %llu, sleeps %llu\n", name,
	       (unsigned long long)tx.moved, o.dgram ? "datagrams" : "bytes",
	       (unsigned long long)rx.moved,
	       (unsigned long long)(ep->stats.tx_wakeups + ep->stats.rx_wakeups),
	       (unsigned long long)(ep->stats.tx_sleeps + ep->stats.rx_sleeps));
	fflush(stdout);
	return 0;
}

struct thread_arg {
	struct cn_endpoint *ep;
	int dir, rc;
	const char *name;
};

static void *side_thread(void *arg)
{
	struct thread_arg *a = arg;

	a->rc = run_side(a->ep, a->dir, a->name);
	return NULL;
}

static int open_pair_end(struct cn_local_fds *all, enum cn_role role, struct cn_local_ep *l)
{
	int fds[CN_LOCAL_NFDS], i, n;

	n = cn_local_select(all, role, fds);
	for (i = 0; i < n; i++)
		fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
	return cn_local_open(l, fds, n, role);
}

static int run_threads(struct cn_local_fds *all)
{
	struct cn_local_ep a, b;
	struct thread_arg ta = { &a.ep, 0, 0, "initiator" }, tb = { &b.ep, 1, 0, "acceptor" };
	pthread_t t1, t2;

	if (open_pair_end(all, CN_ROLE_INITIATOR, &a) || open_pair_end(all, CN_ROLE_ACCEPTOR, &b))
		return 1;
	cn_local_fds_close(all);
	pthread_create(&t1, NULL, side_thread, &ta);
	pthread_create(&t2, NULL, side_thread, &tb);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	cn_local_close(&a);
	cn_local_close(&b);
	return ta.rc || tb.rc;
}

static int run_fork(struct cn_local_fds *all)
{
	int sv[2], fds[CN_LOCAL_NFDS], n, status, rc;
	struct cn_local_ep l;
	char tag = 'C';
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return 1;
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		close(sv[0]);
		cn_local_fds_close(all);
		if (cn_recv_fds(sv[1], fds, CN_LOCAL_NFDS, &n, &tag, 1) != 1 ||
		    cn_local_open(&l, fds, n, CN_ROLE_ACCEPTOR))
			_exit(2);
		rc = run_side(&l.ep, 1, "acceptor");
		cn_local_close(&l);
		_exit(rc);
	}
	close(sv[1]);
	n = cn_local_select(all, CN_ROLE_ACCEPTOR, fds);
	if (cn_send_fds(sv[0], fds, n, &tag, 1))
		return 1;
	rc = open_pair_end(all, CN_ROLE_INITIATOR, &l);
	cn_local_fds_close(all);
	close(sv[0]);
	if (rc)
		return 1;
	rc = run_side(&l.ep, 0, "initiator");
	cn_local_close(&l);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		rc = 1;
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: stress_ring [--mode fork|threads] [--nonblock] [--dgram] "
			"[--bytes N] [--ring SIZE] [--seed S] [--timeout SEC] [--corrupt-at N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "mode", 1, 0, 'm' },	  { "nonblock", 0, 0, 'n' },   { "dgram", 0, 0, 'd' },
		{ "bytes", 1, 0, 'b' },	  { "ring", 1, 0, 'r' },       { "seed", 1, 0, 's' },
		{ "timeout", 1, 0, 't' }, { "corrupt-at", 1, 0, 'c' }, { 0, 0, 0, 0 },
	};
	struct cn_circuit_params prm = { 0 };
	struct cn_local_fds all;
	char *end;
	int c, rc;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (strcmp(optarg, "fork") && strcmp(optarg, "threads"))
				usage();
			o.fork_mode = !strcmp(optarg, "fork");
			break;
		case 'n':
			o.nonblock = true;
			break;
		case 'd':
			o.dgram = true;
			break;
		case 'b':
		case 'r':
		case 's':
		case 't':
		case 'c': {
			unsigned long long v = strtoull(optarg, &end, 0);

			if (*end || end == optarg)
				usage();
			if (c == 'b')
				o.bytes = v;
			else if (c == 'r')
				o.ring = (uint32_t)v;
			else if (c == 's')
				o.seed = v ? v : 1;
			else if (c == 'c')
				o.corrupt_at = v;
			else
				o.timeout = (unsigned)v;
			break;
		}
		default:
			usage();
		}
	}
	alarm(o.timeout); /* a hang is a failure, not a stuck CI job */
	prm.mode = o.dgram ? CN_MODE_DGRAM : CN_MODE_STREAM;
	prm.ring_size[0] = prm.ring_size[1] = o.ring;
	if (cn_local_create(&prm, &all)) {
		fprintf(stderr, "stress: bad ring size %u\n", o.ring);
		return 2;
	}
	rc = o.fork_mode ? run_fork(&all) : run_threads(&all);
	printf("stress %s %s %s: %s\n", o.fork_mode ? "fork" : "threads",
	       o.dgram ? "dgram" : "stream", o.nonblock ? "nonblocking" : "blocking",
	       rc ? "FAILED" : "ok");
	return rc;
}
