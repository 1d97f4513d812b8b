// SPDX-License-Identifier: MIT
/*
 * guest/vmtool.c - circnet-vm: the operator's control circuit as seen from
 * inside a VM (circnet/vm.h), through the guest module's character device.
 *
 *   circnet-vm [--device PATH] info             the device: memory, peer id, vectors
 *   circnet-vm [--device PATH] hello            register: the guest's name and addresses
 *   circnet-vm [--device PATH] echo [--bytes N] [--window K]
 *                                               N bytes through the operator and back,
 *                                               K requests in flight, every byte checked
 *   circnet-vm [--device PATH] scribble         a hostile VM: garbage over the control
 *                                               circuit's indices, then a doorbell
 *   circnet-vm scribble-pairs SECONDS           a hostile VM's module: garbage over all
 *                                               of every pair device's memory, and all
 *                                               of its peers' doorbells, for SECONDS
 *   circnet-vm connect IPV4:PORT [--put N] [--get N]
 *                                               a circuit to a host guest's listener:
 *                                               N bytes each way, checked with the
 *                                               peer's FNV-1a (the test server's protocol)
 *   circnet-vm serve PORT [--count N]            listen, and serve N connections from
 *                                               host guests with that protocol
 *
 * A static binary with the same ring code as the host (circuit/), so the
 * VM image needs nothing else. Exit 0 on success, 1 on failure (one line
 * on stderr saying why), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <circnet/circuit.h>
#include <circnet/ivshmem.h>
#include <circnet/layout.h>
#include <circnet/proto.h>
#include <circnet/vm.h>

#define IO_TIMEOUT_MS	 10000 /* a dead operator fails a call, never hangs the VM */
#define ECHO_WINDOW_MAX	 32    /* requests and replies both fit their 16 KiB rings */
#define SERVE_TIMEOUT_MS 60000 /* serve: how long to wait for the next connection */

struct ctl {
	const char *path;
	int fd;
	struct cn_ivshmem_info info;
	struct cn_region region;
	struct cn_notifier notif[4];
	struct cn_endpoint ep;
	bool reset; /* ask for a new control circuit first (all but scribble) */
};

static int die(const char *what, int err)
{
	fprintf(stderr, "circnet-vm: %s: %s\n", what, strerror(err < 0 ? -err : err));
	return 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A control circuit of our own: ring the operator's RESET vector and wait
 * for ours. Whatever the last user left in the circuit (a half message, a
 * scribble) is gone after it.
 */
static int ctl_reset(struct ctl *c)
{
	uint32_t bell = cn_ivshmem_doorbell(CN_VM_PEER_OPERATOR, CN_VM_VEC_RESET);
	int fd = open(c->path, O_RDWR | O_CLOEXEC), err = -ETIMEDOUT;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	double end = now_s() + IO_TIMEOUT_MS / 1000.0;

	if (fd < 0)
		return -errno;
	/* opened before the ring: this file sees the answer's interrupt */
	if (ioctl(fd, CN_IVSHMEM_IOC_RING, &bell) < 0) {
		err = -errno;
		goto out;
	}
	while (now_s() < end) {
		uint64_t bits;
		int r = poll(&p, 1, (int)((end - now_s()) * 1000) + 1);

		if (r < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		if (r <= 0)
			continue;
		if (read(fd, &bits, sizeof(bits)) != (ssize_t)sizeof(bits)) {
			err = -errno;
			break;
		}
		if (bits & (1u << CN_VM_VEC_RESET)) {
			err = 0;
			break;
		}
	}
out:
	close(fd);
	return err;
}

static int ctl_open(struct ctl *c)
{
	/* we sleep on our RX and TX vectors, and ring the operator's */
	static const unsigned int wait_vec[2] = { CN_VM_VEC_RX, CN_VM_VEC_TX };
	int i, err;

	c->fd = open(c->path, O_RDWR | O_CLOEXEC);
	if (c->fd < 0)
		return -errno;
	if (ioctl(c->fd, CN_IVSHMEM_IOC_INFO, &c->info) < 0)
		return -errno;
	err = cn_ivshmem_region_map(&c->region, c->fd, CN_VM_CTL_OFF, cn_vm_ctl_size());
	if (!err && c->reset)
		err = ctl_reset(c);
	if (err)
		return err;
	for (i = 0; i < 4; i++) {
		int fd = open(c->path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
		uint32_t bell = cn_ivshmem_doorbell(CN_VM_PEER_OPERATOR, (uint16_t)wait_vec[i % 2]);

		if (fd < 0)
			return -errno;
		err = cn_ivshmem_notifier_init(&c->notif[i], fd, wait_vec[i % 2], bell);
		if (err) {
			close(fd);
			return err;
		}
	}
	err = cn_ep_attach(&c->ep, c->region.base, c->region.size, CN_ROLE_INITIATOR);
	if (err)
		return err;
	cn_ep_set_notifiers(&c->ep, &c->notif[0], &c->notif[1], &c->notif[2], &c->notif[3]);
	cn_ep_set_timeouts(&c->ep, IO_TIMEOUT_MS, IO_TIMEOUT_MS);
	return 0;
}

static int send_all(struct ctl *c, const struct cn_msg_hdr *h)
{
	ssize_t n = cn_send(&c->ep, h, h->len, 0);

	if (n < 0)
		return (int)n;
	return n == (ssize_t)h->len ? 0 : -EIO;
}

/* One whole, valid message of the type wanted (or ERROR: -its errno). */
static int recv_msg(struct ctl *c, union cn_msg *m, unsigned int type)
{
	const char *why;
	ssize_t n;

	n = cn_recv(&c->ep, m, sizeof(m->h), CN_MSG_WAITALL);
	if (n != (ssize_t)sizeof(m->h))
		return n < 0 ? (int)n : -ECONNRESET;
	if (m->h.len < sizeof(m->h) || m->h.len > sizeof(*m))
		return -EBADMSG;
	n = cn_recv(&c->ep, (char *)m + sizeof(m->h), m->h.len - sizeof(m->h), CN_MSG_WAITALL);
	if (n != (ssize_t)(m->h.len - sizeof(m->h)))
		return n < 0 ? (int)n : -ECONNRESET;
	if (cn_msg_validate(m, m->h.len, 0, &why)) {
		fprintf(stderr, "circnet-vm: bad message from the operator: %s\n", why);
		return -EBADMSG;
	}
	if (m->h.type == CN_MSG_ERROR)
		return -m->error.err;
	return m->h.type == type ? 0 : -EBADMSG;
}

static int cmd_info(struct ctl *c)
{
	printf("device %s: %" PRIu64 " KiB shared memory, peer id %u, %u vectors\n", c->path,
	       (uint64_t)c->info.region_size >> 10, c->info.ivposition, c->info.vectors);
	return 0;
}

/* A request and its answer of type want (ERROR: -its errno). */
static int request(struct ctl *c, const struct cn_msg_hdr *h, union cn_msg *r, unsigned int want)
{
	int err = send_all(c, h);

	return err ? err : recv_msg(c, r, want);
}

/* A new control circuit is a new session: it starts with HELLO. */
static int ctl_hello(struct ctl *c, union cn_msg *r)
{
	struct cn_msg_hello m;

	cn_msg_init(&m.h, CN_MSG_HELLO, sizeof(m), 1);
	m.pid = (uint32_t)getpid();
	return request(c, &m.h, r, CN_MSG_HELLO_OK);
}

static int cmd_hello(struct ctl *c)
{
	union cn_msg r;
	uint32_t i;
	int err;

	err = ctl_hello(c, &r);
	if (err)
		return die("hello", err);
	printf("guest %s (id %" PRIu64 "), ring %u, addresses:", r.hello_ok.name,
	       r.hello_ok.guest_id, r.hello_ok.ring_size);
	for (i = 0; i < r.hello_ok.naddr; i++) {
		const struct cn_addr *a = &r.hello_ok.addrs[i];

		if (a->family == CN_AF_INET)
			printf(" %u.%u.%u.%u", a->addr[0], a->addr[1], a->addr[2], a->addr[3]);
		else
			printf(" (IPv6)");
	}
	printf("\n");
	return 0;
}

/* Request seq's payload: its length and bytes follow from seq alone. */
static void echo_fill(struct cn_msg_echo *m, uint32_t seq, size_t left)
{
	uint32_t x = seq * 2654435761u + 1, i;

	cn_msg_init(&m->h, CN_MSG_ECHO, sizeof(*m), seq);
	m->len = 1 + x % CN_ECHO_MAX;
	if (m->len > left)
		m->len = (uint32_t)left;
	for (i = 0; i < m->len; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		m->data[i] = (uint8_t)x;
	}
}

static int cmd_echo(struct ctl *c, size_t bytes, unsigned int window)
{
	size_t sent = 0, back = 0;
	uint32_t next = 1, expect = 1;
	struct cn_msg_echo m, want;
	double t0, dt;
	union cn_msg r;
	int err;

	err = ctl_hello(c, &r);
	if (err)
		return die("hello", err);
	t0 = now_s();
	while (back < bytes) {
		while (sent < bytes && next - expect < window) {
			echo_fill(&m, next++, bytes - sent);
			sent += m.len;
			err = send_all(c, &m.h);
			if (err)
				return die("echo: send", err);
		}
		err = recv_msg(c, &r, CN_MSG_ECHO_OK);
		if (err)
			return die("echo: reply", err);
		echo_fill(&want, expect, bytes - back);
		want.h.type = CN_MSG_ECHO_OK;
		if (memcmp(&want, &r.echo, sizeof(want))) {
			fprintf(stderr, "circnet-vm: echo: reply %u differs from its request\n",
				expect);
			return 1;
		}
		back += want.len;
		expect++;
	}
	dt = now_s() - t0;
	printf("echo: %zu bytes in %u messages through the operator and back, all checked, "
	       "%.2f s, %.0f round trips/s\n",
	       bytes, expect - 1, dt, (expect - 1) / dt);
	return 0;
}

/* What a hostile VM can do: any bytes over the control blocks, then ring. */
/*
 * What a VM whose module was replaced by a hostile writer does to the
 * memory it shares with its peers: random bytes over every pair device,
 * again and again, ringing every vector of the other side each time, so
 * that the peers' readers (host processes, the operator, another VM's
 * kernel) meet garbage wherever they look.
 */
static int cmd_scribble_pairs(const char *secs_s)
{
	struct { uint8_t *p; size_t len; int fd; unsigned int nvec; } dev[16];
	double end = now_s() + strtod(secs_s, NULL);
	unsigned long passes = 0;
	int n = 0, i;

	for (i = 0; i < 16 && n < 16; i++) {
		struct cn_ivshmem_info info;
		char path[32];
		void *p;
		int fd;

		snprintf(path, sizeof(path), "/dev/circnet-ivshmem%d", i);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (ioctl(fd, CN_IVSHMEM_IOC_INFO, &info) || info.ivposition < 2) {
			close(fd);
			continue;
		}
		p = mmap(NULL, info.region_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			close(fd);
			continue;
		}
		dev[n].p = p;
		dev[n].len = info.region_size;
		dev[n].fd = fd;
		dev[n].nvec = info.vectors;
		n++;
	}
	if (!n) {
		fprintf(stderr, "circnet-vm: no pair device to scribble over\n");
		return 1;
	}
	srand((unsigned int)time(NULL));
	while (now_s() < end) {
		for (i = 0; i < n; i++) {
			uint32_t *w = (uint32_t *)dev[i].p;
			size_t k;
			unsigned int v;

			for (k = 0; k < dev[i].len / 4; k++)
				w[k] = (uint32_t)rand() * 2654435761u;
			for (v = 0; v < dev[i].nvec; v++) {
				uint32_t bell = cn_ivshmem_doorbell(CN_VM_PEER_OPERATOR, (uint16_t)v);

				ioctl(dev[i].fd, CN_IVSHMEM_IOC_RING, &bell);
			}
		}
		passes++;
		usleep(20000);
	}
	printf("scribble-pairs: %lu passes over %d pair devices\n", passes, n);
	return 0;
}

static int cmd_scribble(struct ctl *c)
{
	uint8_t *p = c->region.base;
	size_t i;

	srand((unsigned int)time(NULL));
	for (i = 0; i < CN_DATA_OFF && i < c->region.size; i++)
		p[i] = (uint8_t)rand();
	cn_notifier_signal(&c->notif[2]);
	cn_notifier_signal(&c->notif[3]);
	printf("scribbled over %zu bytes of the control circuit\n", (size_t)CN_DATA_OFF);
	return 0;
}

/* ---- circuits to host guests ---- */

struct vmconn {
	int devfd;
	struct cn_region mem; /* the whole pair device */
	struct cn_notifier notif[4];
	struct cn_endpoint ep;
	uint64_t id;
	int sock; /* >= 0: the same protocol over a kernel TCP socket (the virtio-net baseline) */
};

/* The connection's bytes, over the circuit or the socket: cn_send/cn_recv's conventions. */
static ssize_t k_send(struct vmconn *k, const void *buf, size_t len)
{
	size_t done = 0;

	if (k->sock < 0)
		return cn_send(&k->ep, buf, len, 0);
	while (done < len) {
		ssize_t n = send(k->sock, (const char *)buf + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t k_recv(struct vmconn *k, void *buf, size_t len)
{
	ssize_t n;

	if (k->sock < 0)
		return cn_recv(&k->ep, buf, len, 0);
	do
		n = recv(k->sock, buf, len, 0);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* The pair device whose IVPosition the operator named, opened. */
static int find_device(uint32_t position)
{
	char path[32];
	int i;

	for (i = 0; i < 16; i++) {
		struct cn_ivshmem_info info;
		int fd;

		snprintf(path, sizeof(path), "/dev/circnet-ivshmem%d", i);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!ioctl(fd, CN_IVSHMEM_IOC_INFO, &info) && info.ivposition == position)
			return fd;
		close(fd);
	}
	return -ENODEV;
}

/* The VM's end of a circuit the operator set up in a pair device (CN_CIRCUIT_VM). */
static int conn_open(struct vmconn *k, const struct cn_msg_circuit *m)
{
	struct cn_circuit_params prm = {
		.mode = m->l4 == CN_L4_TCP ? CN_MODE_STREAM : CN_MODE_DGRAM,
		.ring_size = { m->ring_size[0], m->ring_size[1] },
	};
	size_t size = cn_circuit_size(&prm);
	struct cn_ivshmem_info info;
	char path[64];
	int i, err;

	if (!(m->flags & CN_CIRCUIT_VM) || m->chunk_id > UINT32_MAX || !size)
		return -EPROTO;
	k->id = m->circuit_id;
	k->devfd = find_device((uint32_t)m->chunk_id);
	if (k->devfd < 0)
		return k->devfd;
	if (ioctl(k->devfd, CN_IVSHMEM_IOC_INFO, &info) < 0)
		return -errno;
	/* the slot must lie in the device: the operator's word is checked too */
	if (m->slot_off > info.region_size || size > info.region_size - m->slot_off ||
	    2u * m->vm_vec + 1 >= info.vectors)
		return -EPROTO;
	err = cn_ivshmem_region_map(&k->mem, k->devfd, 0, info.region_size);
	if (err)
		return err;
	err = cn_ep_attach_stamped(&k->ep, (char *)k->mem.base + m->slot_off, size,
				   (enum cn_role)m->role, m->circuit_id);
	if (err)
		return err;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", k->devfd);
	for (i = 0; i < 4; i++) {
		unsigned int vec = 2u * m->vm_vec + (unsigned int)(i % 2);
		int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);

		if (fd < 0)
			return -errno;
		err = cn_ivshmem_notifier_init(
			&k->notif[i], fd, vec,
			cn_ivshmem_doorbell(CN_VM_PEER_OPERATOR, (uint16_t)vec));
		if (err) {
			close(fd);
			return err;
		}
	}
	cn_ep_set_notifiers(&k->ep, &k->notif[0], &k->notif[1], &k->notif[2], &k->notif[3]);
	cn_ep_set_timeouts(&k->ep, IO_TIMEOUT_MS, IO_TIMEOUT_MS);
	return 0;
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

static uint8_t pattern(size_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

/* One line from the peer (up to '\n'), NUL-terminated. 1: the peer's EOF before any byte. */
static int recv_line(struct vmconn *k, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	while (n + 1 < len) {
		ssize_t r = k_recv(k, buf + n, 1);

		if (r == 0 && n == 0)
			return 1;
		if (r <= 0)
			return r ? (int)r : -ECONNRESET;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	return 0;
}

/* n bytes of the pattern to the peer, summed into *sum as they go. */
static int send_pattern(struct vmconn *k, size_t n, uint64_t *sum)
{
	uint8_t buf[16384];
	size_t done, i;

	for (done = 0; done < n;) {
		size_t m = n - done < sizeof(buf) ? n - done : sizeof(buf);
		ssize_t w;

		for (i = 0; i < m; i++)
			buf[i] = pattern(done + i);
		*sum = fnv1a(*sum, buf, m);
		w = k_send(k, buf, m);
		if (w != (ssize_t)m)
			return w < 0 ? (int)w : -EIO;
		done += m;
	}
	return 0;
}

/* n bytes from the peer, summed into *sum; its EOF before them is a reset. */
static int recv_summed(struct vmconn *k, size_t n, uint64_t *sum)
{
	uint8_t buf[16384];
	size_t done;

	for (done = 0; done < n;) {
		ssize_t r = k_recv(k, buf, n - done < sizeof(buf) ? n - done : sizeof(buf));

		if (r <= 0)
			return r ? (int)r : -ECONNRESET;
		*sum = fnv1a(*sum, buf, (size_t)r);
		done += (size_t)r;
	}
	return 0;
}

static int send_line(struct vmconn *k, const char *line)
{
	return k_send(k, line, strlen(line)) == (ssize_t)strlen(line) ? 0 : -EIO;
}

#define FNV_OFFSET 0xcbf29ce484222325ull

/*
 * put: "put N\n" and N pattern bytes to the peer, which answers with the
 * FNV-1a of what it got. get: "get N\n"; the peer answers with the FNV-1a
 * of N bytes, then the bytes. Either way every byte is checked.
 */
static int transfer(struct vmconn *k, bool put, size_t bytes)
{
	uint64_t sum = FNV_OFFSET, theirs = 0;
	char line[64];
	int err;

	snprintf(line, sizeof(line), "%s %zu\n", put ? "put" : "get", bytes);
	err = send_line(k, line);
	if (!err && put)
		err = send_pattern(k, bytes, &sum);
	if (!err)
		err = recv_line(k, line, sizeof(line));
	if (err)
		return err > 0 ? -ECONNRESET : err;
	if (sscanf(line, "fnv=%" SCNx64, &theirs) != 1)
		return -EPROTO;
	if (!put && (err = recv_summed(k, bytes, &sum)))
		return err;
	if (sum != theirs) {
		fprintf(stderr,
			"circnet-vm: %s: checksums differ (%016" PRIx64 " here, %016" PRIx64
			" there)\n",
			put ? "put" : "get", sum, theirs);
		return -EBADMSG;
	}
	return 0;
}

static int parse_hostport(const char *s, struct cn_addr *a)
{
	unsigned int b[4], port;
	char tail;

	memset(a, 0, sizeof(*a));
	if (sscanf(s, "%u.%u.%u.%u:%u%c", &b[0], &b[1], &b[2], &b[3], &port, &tail) != 5 ||
	    b[0] > 255 || b[1] > 255 || b[2] > 255 || b[3] > 255 || !port || port > 65535)
		return -EINVAL;
	a->family = CN_AF_INET;
	a->port = (uint16_t)port;
	for (int i = 0; i < 4; i++)
		a->addr[i] = (uint8_t)b[i];
	return 0;
}

/*
 * A connect off-host (through the proxy stack) is pending until the proxy
 * writes how its own connect went into the circuit and rings our data
 * vector: 0, or the errno a kernel connect would have given.
 */
static int settle(struct vmconn *k)
{
	double end = now_s() + IO_TIMEOUT_MS / 1000.0 * 3;

	for (;;) {
		int st = cn_ep_connect_status(&k->ep);

		if (st != -EINPROGRESS)
			return st == -EPROTO ? -ECONNRESET : st;
		cn_notifier_drain(&k->notif[0]);
		if (cn_ep_connect_status(&k->ep) != -EINPROGRESS)
			continue;
		if (now_s() > end)
			return -ETIMEDOUT;
		st = cn_notifier_wait(&k->notif[0], 1000);
		if (st && st != -ETIMEDOUT && st != -EINTR)
			return st;
	}
}

static int transfer_both(struct vmconn *k, size_t put, size_t get)
{
	int err = 0;

	if (put)
		err = transfer(k, true, put);
	if (!err && get)
		err = transfer(k, false, get);
	return err;
}

/*
 * The same put/get over a kernel TCP socket through the VM's own NIC: the
 * packet-switched baseline (virtio-net) that scripts/bench-vms.py sets
 * beside the circuit, in the same VMs and the same run.
 */
static int cmd_tcp_connect(const char *dst, size_t put, size_t get)
{
	struct vmconn k = { .devfd = -1, .sock = -1 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct cn_addr a;
	double t0;
	int err;

	if (parse_hostport(dst, &a)) {
		fprintf(stderr, "circnet-vm: bad address '%s' (IPV4:PORT)\n", dst);
		return 2;
	}
	memcpy(&sa.sin_addr, a.addr, 4);
	sa.sin_port = htons(a.port);
	k.sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (k.sock < 0 || connect(k.sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return die(dst, errno);
	t0 = now_s();
	err = transfer_both(&k, put, get);
	if (err)
		return die("transfer", err);
	printf("RESULT transport=tcp put=%zu get=%zu secs=%.6f\n", put, get, now_s() - t0);
	close(k.sock);
	return 0;
}

static int cmd_connect(struct ctl *c, const char *dst, size_t put, size_t get)
{
	struct cn_msg_connect m;
	struct vmconn k = { .devfd = -1, .sock = -1 };
	struct cn_msg_id closed;
	union cn_msg r;
	double t0;
	int err;

	cn_msg_init(&m.h, CN_MSG_CONNECT, sizeof(m), 2);
	m.l4 = CN_L4_TCP;
	if (parse_hostport(dst, &m.dst)) {
		fprintf(stderr, "circnet-vm: bad address '%s' (IPV4:PORT)\n", dst);
		return 2;
	}
	err = ctl_hello(c, &r);
	if (!err)
		err = request(c, &m.h, &r, CN_MSG_CONNECT_OK);
	if (err)
		return die(dst, err);
	err = conn_open(&k, &r.circuit);
	if (err)
		return die("the circuit", err);
	if (r.circuit.flags & CN_CIRCUIT_PENDING) {
		err = settle(&k);
		if (err)
			return die(dst, err);
	}
	t0 = now_s();
	err = transfer_both(&k, put, get);
	if (err)
		return die("transfer", err);
	printf("connect %s: circuit %" PRIu64 " in pair device %" PRIu64 ", vectors %u/%u: "
	       "%zu bytes out, %zu in, all checked, %.2f s\n",
	       dst, k.id, (uint64_t)r.circuit.chunk_id, 2u * r.circuit.vm_vec,
	       2u * r.circuit.vm_vec + 1, put, get, now_s() - t0);
	printf("RESULT transport=circuit put=%zu get=%zu secs=%.6f\n", put, get, now_s() - t0);
	cn_close(&k.ep);
	cn_msg_init(&closed.h, CN_MSG_CLOSED, sizeof(closed), 0);
	closed.id = k.id;
	return send_all(c, &closed.h) ? 1 : 0;
}

/* The server side of the put/get protocol on one circuit, until the peer's EOF. */
static int serve_conn(struct vmconn *k, size_t *moved)
{
	char line[64], cmd[8];
	size_t n, i;

	for (;;) {
		uint64_t sum = FNV_OFFSET;
		int err = recv_line(k, line, sizeof(line));

		if (err == 1)
			return 0; /* EOF between requests: the peer is done */
		if (err)
			return err;
		if (sscanf(line, "%7s %zu", cmd, &n) != 2 ||
		    (strcmp(cmd, "put") && strcmp(cmd, "get")))
			return -EPROTO;
		if (!strcmp(cmd, "put")) {
			err = recv_summed(k, n, &sum);
			snprintf(line, sizeof(line), "fnv=%016" PRIx64 "\n", sum);
			if (!err)
				err = send_line(k, line);
		} else {
			uint64_t ours = FNV_OFFSET;

			for (i = 0; i < n; i++) /* the sum first: it goes ahead of the bytes */
				sum = fnv1a(sum, (uint8_t[]){ pattern(i) }, 1);
			snprintf(line, sizeof(line), "fnv=%016" PRIx64 "\n", sum);
			err = send_line(k, line);
			if (!err)
				err = send_pattern(k, n, &ours);
		}
		if (err)
			return err;
		*moved += n;
	}
}

/*
 * Listen on PORT (any of the VM's addresses) and serve count connections
 * from host guests, one at a time, with the put/get protocol. The operator
 * pushes each NEW_CONN over the control circuit; ACCEPTED frees its
 * backlog slot.
 */
static int cmd_serve(struct ctl *c, const char *port_s, unsigned long long count)
{
	struct cn_msg_listen l;
	struct cn_msg_id id;
	union cn_msg r;
	unsigned long long served = 0;
	char *end;
	unsigned long port = strtoul(port_s, &end, 10);
	int err;

	if (*end || !port || port > 65535) {
		fprintf(stderr, "circnet-vm: bad port '%s'\n", port_s);
		return 2;
	}
	cn_msg_init(&l.h, CN_MSG_LISTEN, sizeof(l), 2);
	l.l4 = CN_L4_TCP;
	l.backlog = 8;
	l.addr.port = (uint16_t)port;
	err = ctl_hello(c, &r);
	if (!err)
		err = request(c, &l.h, &r, CN_MSG_LISTEN_OK);
	if (err)
		return die("listen", err);
	printf("circnet-vm: serving on port %lu\n", port);
	fflush(stdout);
	cn_ep_set_timeouts(&c->ep, SERVE_TIMEOUT_MS, IO_TIMEOUT_MS);
	while (served < count) {
		struct vmconn k = { .devfd = -1, .sock = -1 };
		size_t moved = 0;

		err = recv_msg(c, &r, CN_MSG_NEW_CONN);
		if (err)
			return die("waiting for a connection", err);
		cn_msg_init(&id.h, CN_MSG_ACCEPTED, sizeof(id), 0);
		id.id = r.circuit.circuit_id;
		err = send_all(c, &id.h);
		if (!err)
			err = conn_open(&k, &r.circuit);
		if (!err)
			err = serve_conn(&k, &moved);
		if (err)
			return die("serving a connection", err);
		printf("serve: circuit %" PRIu64 " from %u.%u.%u.%u:%u: %zu bytes, all checked\n",
		       k.id, r.circuit.remote.addr[0], r.circuit.remote.addr[1],
		       r.circuit.remote.addr[2], r.circuit.remote.addr[3], r.circuit.remote.port,
		       moved);
		cn_close(&k.ep);
		cn_msg_init(&id.h, CN_MSG_CLOSED, sizeof(id), 0);
		id.id = k.id;
		if (send_all(c, &id.h))
			return 1;
		served++;
	}
	return 0;
}

static int cmd_tcp_serve(const char *port_s, unsigned long long count)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	unsigned long port = strtoul(port_s, NULL, 10);
	int one = 1, lfd, err;

	if (!port || port > 65535) {
		fprintf(stderr, "circnet-vm: bad port '%s'\n", port_s);
		return 2;
	}
	sa.sin_port = htons((uint16_t)port);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 8))
		return die("tcp-serve", errno);
	printf("circnet-vm: serving tcp on port %lu\n", port);
	fflush(stdout);
	while (count--) {
		struct vmconn k = { .devfd = -1 };
		size_t moved = 0;

		k.sock = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (k.sock < 0)
			return die("accept", errno);
		err = serve_conn(&k, &moved);
		close(k.sock);
		if (err)
			return die("serving a connection", err);
	}
	close(lfd);
	return 0;
}

static int usage(FILE *f)
{
	fprintf(f,
		"usage: circnet-vm [--device PATH] info | hello | "
		"echo [--bytes N] [--window K] | scribble | scribble-pairs SECONDS |\n"
		"       connect IPV4:PORT [--put N] [--get N] | serve PORT [--count N] |\n"
		"       tcp-connect IPV4:PORT [--put N] [--get N] | tcp-serve PORT [--count N]\n");
	return f == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "window", required_argument, NULL, 'w' },
		{ "put", required_argument, NULL, 'p' },
		{ "get", required_argument, NULL, 'g' },
		{ "count", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctl c = { .path = "/dev/circnet-ivshmem0", .fd = -1 };
	unsigned long long bytes = 1 << 20, window = 8, put = 0, get = 0, count = 1;
	const char *cmd;
	char *end;
	int o, err;

	while ((o = getopt_long(argc, argv, "d:b:w:p:g:c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'd':
			c.path = optarg;
			break;
		case 'b':
		case 'w':
			errno = 0;
			if (o == 'b')
				bytes = strtoull(optarg, &end, 10);
			else
				window = strtoull(optarg, &end, 10);
			if (errno || *end ||
			    (o == 'w' && (window < 1 || window > ECHO_WINDOW_MAX))) {
				fprintf(stderr, "circnet-vm: bad --%s '%s'%s\n",
					o == 'b' ? "bytes" : "window", optarg,
					o == 'w' ? " (1 to 32)" : "");
				return 2;
			}
			break;
		case 'p':
		case 'g':
		case 'c':
			errno = 0;
			*(o == 'p' ? &put : o == 'g' ? &get : &count) = strtoull(optarg, &end, 10);
			if (errno || *end) {
				fprintf(stderr, "circnet-vm: bad --%s '%s'\n",
					o == 'p'   ? "put"
					: o == 'g' ? "get"
						   : "count",
					optarg);
				return 2;
			}
			break;
		case 'h':
			return usage(stdout);
		default:
			return usage(stderr);
		}
	}
	if (optind >= argc)
		return usage(stderr);
	cmd = argv[optind];
	if (optind != argc - 1 -
			      (!strcmp(cmd, "connect") || !strcmp(cmd, "serve") ||
			       !strcmp(cmd, "tcp-connect") || !strcmp(cmd, "tcp-serve") ||
			       !strcmp(cmd, "scribble-pairs")))
		return usage(stderr);
	if (!strcmp(cmd, "scribble-pairs"))
		return cmd_scribble_pairs(argv[optind + 1]);
	/* the baseline over the VM's NIC needs no device */
	if (!strcmp(cmd, "tcp-connect"))
		return cmd_tcp_connect(argv[optind + 1], (size_t)put, (size_t)get);
	if (!strcmp(cmd, "tcp-serve"))
		return cmd_tcp_serve(argv[optind + 1], count);
	if (strcmp(cmd, "info") && strcmp(cmd, "hello") && strcmp(cmd, "echo") &&
	    strcmp(cmd, "scribble") && strcmp(cmd, "connect") && strcmp(cmd, "serve")) {
		fprintf(stderr, "circnet-vm: unknown command '%s'\n", cmd);
		return usage(stderr);
	}
	c.reset = strcmp(cmd, "scribble") != 0;
	err = ctl_open(&c);
	if (err)
		return die(c.path, err);
	if (!strcmp(cmd, "info"))
		return cmd_info(&c);
	if (!strcmp(cmd, "hello"))
		return cmd_hello(&c);
	if (!strcmp(cmd, "echo"))
		return cmd_echo(&c, (size_t)bytes, (unsigned int)window);
	if (!strcmp(cmd, "connect"))
		return cmd_connect(&c, argv[optind + 1], (size_t)put, (size_t)get);
	if (!strcmp(cmd, "serve"))
		return cmd_serve(&c, argv[optind + 1], count);
	return cmd_scribble(&c);
}
