// SPDX-License-Identifier: MIT
/*
 * guest/sock.c - circuit-backed stream sockets (sock.h).
 *
 * Setup goes through the operator: a process-wide session for connects
 * (one request at a time, reopened after a fork or an operator restart),
 * and one session per listening socket. The data path is the circuit
 * library alone: no operator, no lock shared between sockets.
 *
 * Doorbells: a connected socket's app fd is its end of the data pair. To
 * make it readable exactly when data may be there (for poll and epoll, level
 * or edge triggered), the socket keeps the reader's want flag armed while
 * its ring is empty: whenever a receive finds the ring empty it drains the
 * doorbell, arms it, and looks at the ring again before saying EAGAIN. So a
 * peer write after that point rings the doorbell, and an empty ring leaves
 * the fd quiet.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <circnet/pool.h>

#include "procop.h"
#include "sock.h"

/* ---- the process's session at the operator (procop.c) ---- */

int csock_global_init(void)
{
	return procop_init();
}

void csock_after_fork_child(void)
{
	procop_after_fork_child();
}

/* The guest's own addresses (from the operator's HELLO), for bind checks. */
static int proc_info(struct cn_msg_hello_ok *info)
{
	struct cn_op *op;
	int err = procop_get(&op, procop_wait_ns());

	if (err)
		return err == -EHOSTDOWN ? -EADDRNOTAVAIL : err;
	*info = op->info;
	procop_put(0);
	return 0;
}

/*
 * A connect through the process session. The operator restarted (the
 * session reads ECONNABORTED): once more on a new session. The operator
 * down: wait up to wait_ns for it (-EHOSTDOWN after that).
 */
static int proc_connect(const struct cn_addr *src, const struct cn_addr *dst,
			struct cn_local_ep *ep, struct cn_op_conn *conn, int64_t wait_ns)
{
	struct cn_op *op;
	int err, tries;

	for (tries = 0; tries < 2; tries++) {
		err = procop_get(&op, wait_ns);
		if (err)
			break;
		err = cn_op_connect(op, CN_L4_TCP, src, dst, ep, conn);
		procop_put(err);
		if (err != -ECONNABORTED)
			break;
	}
	return err;
}

void csock_flush_closed(void)
{
	procop_flush_closed();
}

static void proc_closed(uint64_t circuit_id)
{
	procop_closed(circuit_id);
}

/* ---- addresses ---- */

static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* A sockaddr of the socket's family into a protocol address (v4-mapped -> v4). */
int csock_addr_in(const struct csock *cs, const struct sockaddr *sa, socklen_t len,
		   struct cn_addr *a)
{
	if (!sa || len < sizeof(sa_family_t))
		return -EINVAL;
	if (sa->sa_family != cs->family)
		return -EAFNOSUPPORT;
	if ((cs->family == AF_INET && len < sizeof(struct sockaddr_in)) ||
	    (cs->family == AF_INET6 && len < sizeof(struct sockaddr_in6)))
		return -EINVAL;
	cn_addr_from_sockaddr(a, sa, len);
	if (a->family == CN_AF_INET6 && !memcmp(a->addr, v4mapped, 12)) {
		memmove(a->addr, a->addr + 12, 4);
		memset(a->addr + 4, 0, 12);
		a->family = CN_AF_INET;
	}
	return 0;
}

/* A protocol address as the socket's family shows it (v4 on v6 -> v4-mapped). */
int csock_addr_out(const struct csock *cs, const struct cn_addr *a, struct sockaddr *sa,
		    socklen_t *len)
{
	struct sockaddr_storage ss;
	struct cn_addr b = *a;
	socklen_t n;

	if (!sa || !len)
		return -EFAULT;
	if (cs->family == AF_INET6 && b.family != CN_AF_INET6) {
		uint8_t v4[4];

		memcpy(v4, b.addr, 4);
		memcpy(b.addr, v4mapped, 12);
		memcpy(b.addr + 12, v4, 4);
		b.family = CN_AF_INET6;
	} else if (cs->family == AF_INET && b.family != CN_AF_INET) {
		b.family = CN_AF_INET; /* unbound: 0.0.0.0:0 */
		memset(b.addr, 0, sizeof(b.addr));
	}
	n = cn_addr_to_sockaddr(&b, &ss);
	memcpy(sa, &ss, *len < n ? *len : n);
	*len = n;
	return 0;
}

static bool is_loopback(const struct cn_addr *a)
{
	static const uint8_t lo6[16] = { [15] = 1 };

	return (a->family == CN_AF_INET && a->addr[0] == 127) ||
	       (a->family == CN_AF_INET6 && !memcmp(a->addr, lo6, 16));
}

static bool is_any(const struct cn_addr *a)
{
	static const uint8_t zero[16];

	return !memcmp(a->addr, zero, 16);
}

/* ---- lifetime ---- */

/* Our fds behind a socket: hidden from the application's close loops. */
static void hide_fds(struct csock *cs, bool hidden)
{
	int i;

	if (cs->state == CS_LISTENING) {
		preload_hide(cs->op.fd, hidden);
		if (cs->op.durable)
			preload_hide(cs->op.chan_peer, hidden);
	} else if (cs->state == CS_CONNECTED) {
		for (i = 0; i < 4; i++) {
			if (cs->ep.notif[i].ops)
				preload_hide(cs->ep.notif[i].fd, hidden);
		}
		preload_hide(cs->memfd, hidden);
		if (cs->ep.leased)
			preload_hide(cs->ep.lease_fd, hidden);
	}
}

struct csock *csock_new(int family, bool nonblock)
{
	struct csock *cs = calloc(1, sizeof(*cs));

	if (!cs)
		return NULL;
	pthread_mutex_init(&cs->lock, NULL);
	pthread_mutex_init(&cs->rx_lock, NULL);
	pthread_mutex_init(&cs->tx_lock, NULL);
	cs->refs = 1;
	cs->family = family;
	cs->nonblock = nonblock;
	cs->state = CS_NEW;
	cs->rcvtimeo_ms = cs->sndtimeo_ms = -1;
	cs->op.fd = -1;
	cs->memfd = -1;
	cs->evfd = -1;
	return cs;
}

void csock_get(struct csock *cs)
{
	__atomic_add_fetch(&cs->refs, 1, __ATOMIC_SEQ_CST);
}

/* Let go of what the state holds: a listener session, or a circuit. */
static void release_state(struct csock *cs)
{
	if (cs->state == CS_WAITOP) {
		procop_waiting(-1);
		cs->state = CS_NEW;
	}
	hide_fds(cs, false); /* ours to close now */
	if (cs->memfd >= 0)
		close(cs->memfd);
	cs->memfd = -1;
	if (cs->state == CS_LISTENING) {
		procop_durable_del(cs);
		cn_op_close(&cs->op);
	} else if (cs->state == CS_CONNECTED) {
		procop_durable_del(cs);
		/*
		 * Alone with it: close as TCP does (FIN, or a reset if its data
		 * is unread). Shared across a fork: other processes may still
		 * use it, so only let go; the peer sees the last one leave.
		 */
		if (cs->shared)
			cn_local_detach(&cs->ep);
		else
			cn_local_close(&cs->ep);
		proc_closed(cs->circuit_id);
	}
}

void csock_put(struct csock *cs)
{
	if (__atomic_sub_fetch(&cs->refs, 1, __ATOMIC_SEQ_CST))
		return;
	if (cs->dgram) {
		hide_fds(cs, false);
		if (cs->memfd >= 0)
			close(cs->memfd);
		udp_release(cs);
	} else {
		release_state(cs);
	}
	pthread_mutex_destroy(&cs->lock);
	pthread_mutex_destroy(&cs->rx_lock);
	pthread_mutex_destroy(&cs->tx_lock);
	free(cs);
}

/*
 * connect(AF_UNSPEC) on a stream socket, as tcp_disconnect() does: a
 * connection is reset (the peer sees ECONNRESET, for every process holding
 * it), a listener stops listening, and the socket is unconnected again,
 * still bound if the application bound it. *fresh tells the caller to give
 * the application fd a new placeholder in place of the old kernel object.
 */
int csock_disconnect(struct csock *cs, bool *fresh)
{
	bool was_connected;

	*fresh = false;
	pthread_mutex_lock(&cs->lock);
	was_connected = cs->state == CS_CONNECTED;
	if (was_connected) {
		cn_reset(&cs->ep.ep); /* wakes our own blocked threads: they return */
		pthread_mutex_lock(&cs->rx_lock);
		pthread_mutex_lock(&cs->tx_lock);
		release_state(cs);
		pthread_mutex_unlock(&cs->tx_lock);
		pthread_mutex_unlock(&cs->rx_lock);
		*fresh = true;
	} else if (cs->state == CS_LISTENING || cs->state == CS_WAITOP) {
		release_state(cs);
		*fresh = true;
	}
	cs->state = cs->user_bound ? CS_BOUND : CS_NEW;
	if (!cs->user_bound)
		memset(&cs->local, 0, sizeof(cs->local));
	memset(&cs->remote, 0, sizeof(cs->remote));
	/* the reset is reported once, to the next call, as tcp_disconnect() does */
	cs->so_error = was_connected ? ECONNRESET : 0;
	pthread_mutex_unlock(&cs->lock);
	return 0;
}

/* ---- setup ---- */

/* May this guest use a as a local address? 0 or -EADDRNOTAVAIL. */
int csock_check_local(const struct cn_addr *a)
{
	struct cn_msg_hello_ok info;
	int err, i;

	if (is_any(a) || is_loopback(a))
		return 0;
	err = proc_info(&info);
	if (err)
		return err;
	for (i = 0; i < (int)info.naddr; i++)
		if (info.addrs[i].family == a->family && !memcmp(info.addrs[i].addr, a->addr, 16))
			return 0;
	return -EADDRNOTAVAIL;
}

const char *csock_operator_path(void)
{
	return procop_path();
}

int csock_bind(struct csock *cs, const struct sockaddr *sa, socklen_t len)
{
	struct cn_addr a;
	int err;

	err = csock_addr_in(cs, sa, len, &a);
	if (err)
		return err;
	if (cs->dgram)
		return udp_bind(cs, &a);
	pthread_mutex_lock(&cs->lock);
	if (cs->state != CS_NEW) {
		err = -EINVAL; /* bound already */
		goto out;
	}
	err = csock_check_local(&a);
	if (err)
		goto out;
	cs->local = a; /* 0.0.0.0 or ::, the wildcard of its family */
	cs->state = CS_BOUND;
	cs->user_bound = true;
out:
	pthread_mutex_unlock(&cs->lock);
	return err;
}

/*
 * With cs->lock: register the listener's channel (made on the first call)
 * through the process session. -EHOSTDOWN: the operator is not there.
 */
int csock_register(struct csock *cs, int64_t wait_ns)
{
	unsigned int l4 = cs->dgram ? CN_L4_UDP : CN_L4_TCP;
	struct cn_addr bound;
	struct cn_op *op;
	uint64_t inst = 0;
	int err, tries;

	for (tries = 0; tries < 2; tries++) {
		err = procop_get(&op, wait_ns);
		if (err)
			return err;
		inst = op->info.guest_id;
		err = cn_op_listen_channel(op, &cs->op, l4, &cs->local, cs->backlog,
					   cs->listen_flags, &bound, NULL);
		procop_put(err);
		if (err != -ECONNABORTED)
			break;
	}
	if (!err) {
		cs->local = bound;
		__atomic_store_n(&cs->reg_gen, inst, __ATOMIC_RELAXED);
		cs->lost = false;
		cs->op.on_reset = procop_on_reset; /* revocations of accepted circuits come here */
	}
	return err;
}

int csock_listen(struct csock *cs, int backlog, int *session)
{
	int err = 0;

	*session = -1;
	pthread_mutex_lock(&cs->lock);
	if (cs->state == CS_LISTENING)
		goto out; /* a new backlog: kept as it is */
	if (cs->state != CS_NEW && cs->state != CS_BOUND) {
		err = -EINVAL;
		goto out;
	}
	if (!procop_path()) {
		err = -ENETUNREACH;
		goto out;
	}
	if (cs->state == CS_NEW) /* listen without bind: the wildcard, any port */
		cs->local.family = cs->family == AF_INET6 ? CN_AF_INET6 : CN_AF_INET;
	cs->backlog = backlog <= 0 ? 1 : (uint32_t)backlog;
	cs->listen_flags = cs->opt_v6only ? CN_LISTEN_V6ONLY : 0;
	/*
	 * The operator down: a listener on a port of its own is made here and
	 * registered when the operator is back (procop.c), as after a restart;
	 * a port-0 listener needs the operator to pick its port, and waits.
	 */
	err = csock_register(cs, cs->local.port ? 0 : procop_wait_ns());
	if (err == -EHOSTDOWN && cs->local.port && !(err = cn_op_channel_init(&cs->op)))
		cs->op.on_reset = procop_on_reset;
	else if (err == -EHOSTDOWN)
		err = -EADDRINUSE; /* no port to be had */
	if (err)
		goto out;
	cs->op.timeout_ms = -1; /* accept blocks as long as it takes */
	cs->op.keep_memfd = true;
	cs->state = CS_LISTENING;
	hide_fds(cs, true);
	procop_durable_add(cs, true);
	*session = cs->op.fd;
out:
	pthread_mutex_unlock(&cs->lock);
	return err;
}

/*
 * The memfd that proves a connected socket's circuit (claims) and carries it
 * across exec: its chunk's for a pooled circuit (one per chunk and process,
 * the chunk table's), its own otherwise; -1 for none.
 */
static int csock_memfd(const struct csock *cs)
{
	return cn_local_pooled(&cs->ep) ? cn_chunk_fd(cs->ep.chunk) : cs->memfd;
}

/* With cs->lock: claim a connected socket's end of its circuit at a new operator. */
static int claim(struct csock *cs)
{
	struct cn_op_conn conn = {
		.circuit_id = cs->circuit_id,
		.l4 = CN_L4_TCP,
		.role = cs->role,
		.local = cs->local,
		.remote = cs->remote,
		.chunk_id = cs->chunk_id,
		.slot_off = cs->slot_off,
		.ring_size = { cs->ring_size[0], cs->ring_size[1] },
	};
	struct cn_op *op;
	uint64_t inst;
	int err = procop_get(&op, 0);

	if (err)
		return err;
	inst = op->info.guest_id;
	err = cn_op_claim(op, &conn, csock_memfd(cs));
	procop_put(err);
	if (!err)
		__atomic_store_n(&cs->reg_gen, inst, __ATOMIC_RELAXED);
	return err == -ECONNABORTED ? -EHOSTDOWN : err;
}

/*
 * With cs->lock, from procop.c: the operator restarted; claim a connected
 * socket's circuit end with the new one, or register the
 * listener (or bound datagram socket) with the new one. A refusal (the
 * new config no longer allows it, the port went to another socket) leaves
 * the socket in place with nothing to accept, as a listener whose port
 * was taken away: it is tried again with the next operator.
 */
int csock_reregister(struct csock *cs)
{
	int err;

	if (cs->state == CS_CONNECTED && !cs->dgram && csock_memfd(cs) >= 0 &&
	    __atomic_load_n(&cs->reg_gen, __ATOMIC_RELAXED) != procop_instance())
		return claim(cs);
	if (!cs->op.durable || (cs->state != CS_LISTENING && !(cs->dgram && cs->state == CS_BOUND)))
		return 0;
	if (__atomic_load_n(&cs->reg_gen, __ATOMIC_RELAXED) == procop_instance())
		return 0;
	err = csock_register(cs, 0);
	if (err && err != -EHOSTDOWN && err != -ECONNABORTED) {
		__atomic_store_n(&cs->reg_gen, procop_instance(), __ATOMIC_RELAXED);
		cs->lost = true;
	}
	return err == -ECONNABORTED ? -EHOSTDOWN : err;
}

bool csock_tryget(struct csock *cs)
{
	int refs = __atomic_load_n(&cs->refs, __ATOMIC_SEQ_CST);

	while (refs > 0)
		if (__atomic_compare_exchange_n(&cs->refs, &refs, refs + 1, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return true;
	return false;
}

/*
 * The socket now holds the circuit opened into cs->ep: connected, its fds
 * hidden from the application, the data doorbell armed (it is the app fd).
 */
static void take_circuit(struct csock *cs, const struct cn_op_conn *conn)
{
	cs->state = CS_CONNECTED;
	cs->local = conn->local;
	cs->remote = conn->remote;
	cs->circuit_id = conn->circuit_id;
	cs->role = conn->role;
	cs->memfd = conn->memfd;
	cs->chunk_id = conn->chunk_id;
	cs->slot_off = conn->slot_off;
	cs->ring_size[0] = conn->ring_size[0];
	cs->ring_size[1] = conn->ring_size[1];
	hide_fds(cs, true);
	/* claimed again from a new operator after a restart (procop.c) */
	cs->reg_gen = procop_instance();
	if (csock_memfd(cs) >= 0)
		procop_durable_add(cs, false);
	cn_ep_set_spin(&cs->ep.ep, (uint32_t)preload_spin_ns());
	cn_poll_arm(&cs->ep.ep, CN_POLLIN);
}

/*
 * A blocking call's wait: until fd shows events, timeout_ms passes (-1:
 * never), or the process's operator session needs attention (it hung up,
 * or an attempt to reach a restarted operator is due: procop.c), which is
 * given here. 0 to look again, -ETIMEDOUT, or -errno of poll.
 */
int wait_for_operator_or(int fd, short events, int timeout_ms)
{
	struct pollfd p[2] = { { .fd = fd, .events = events } };
	int retry, n = 1, t = timeout_ms, rc;

	p[1].fd = procop_watch(&retry);
	p[1].events = POLLRDHUP | POLLIN;
	if (p[1].fd >= 0)
		n = 2;
	if (retry >= 0 && (t < 0 || retry < t))
		t = retry;
	rc = poll(p, (nfds_t)n, t);
	if (rc < 0)
		return errno == EINTR ? 0 : -errno;
	if ((n == 2 && p[1].revents) || (rc == 0 && t != timeout_ms))
		procop_tick();
	if (rc == 0 && t == timeout_ms)
		return -ETIMEDOUT;
	return p[0].revents & POLLNVAL ? -EBADF : 0;
}

int csock_accept(struct csock *cs, bool nonblock, struct csock **out, int *doorbell)
{
	struct cn_op_conn conn;
	struct csock *n;
	int err;

	if (cs->state != CS_LISTENING)
		return -EINVAL;
	n = csock_new(cs->family, nonblock); /* accept4's SOCK_NONBLOCK */
	if (!n)
		return -ENOMEM;
	/* a listener has no data path: its rx lock serialises accepts, close stays free */
	pthread_mutex_lock(&cs->rx_lock);
	for (;;) {
		err = cn_op_accept(&cs->op, &n->ep, &conn, 1);
		/* nothing yet, or a process sharing the listener took it first */
		if (err != -EAGAIN || cs->nonblock)
			break;
		csock_flush_closed();
		err = wait_for_operator_or(cs->op.fd, POLLIN, -1);
		if (err)
			break;
	}
	pthread_mutex_unlock(&cs->rx_lock);
	if (err) {
		free(n);
		return err == -ETIMEDOUT ? -EAGAIN : err;
	}
	take_circuit(n, &conn);
	n->reg_gen = cs->reg_gen; /* from the operator the listener is registered with */
	*out = n;
	*doorbell = n->ep.notif[0].fd;
	return 0;
}

/*
 * A connect through the proxy stack completes when the remote answers: the
 * circuit is pending until the proxy writes the outcome into it and rings
 * our data doorbell (cn_ep_connect_status). Failed: the socket is FAILED with
 * that errno, as a refused or timed-out kernel connect leaves it.
 */
static void fail_pending(struct csock *cs, int err)
{
	release_state(cs);
	cs->state = CS_FAILED;
	cs->so_error = err;
}

static bool doorbell_hung_up(struct csock *cs);
static bool waitop_settled(struct csock *cs);

/* 0 established, -EINPROGRESS still pending, or the -errno it failed with. */
static int settle(struct csock *cs, bool block)
{
	struct pollfd p;
	int st;

	if (!cs->pending)
		return 0;
	for (;;) {
		st = cn_ep_connect_status(&cs->ep.ep);
		if (st == -EINPROGRESS && doorbell_hung_up(cs))
			st = -ECONNREFUSED; /* the proxy stack went away */
		if (st != -EINPROGRESS) {
			cs->pending = false;
			if (st)
				fail_pending(cs, st == -EPROTO ? ECONNRESET : -st);
			return st == -EPROTO ? -ECONNRESET : st;
		}
		if (!block)
			return -EINPROGRESS;
		cn_notifier_drain(&cs->ep.notif[0]);
		if (cn_ep_connect_status(&cs->ep.ep) != -EINPROGRESS)
			continue;
		p = (struct pollfd){ .fd = cs->ep.notif[0].fd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return -errno;
	}
}

/* For calls other than connect: settled, or the error to return. */
static int settle_for_io(struct csock *cs, bool nonblock)
{
	int err;

	while (cs->state == CS_WAITOP && !waitop_settled(cs)) {
		if (nonblock)
			return -EAGAIN;
		wait_for_operator_or(-1, 0, 100);
	}
	if (!cs->pending)
		return 0;
	pthread_mutex_lock(&cs->lock);
	err = cs->pending ? settle(cs, !nonblock) : 0;
	if (err && err != -EINPROGRESS) {
		cs->so_error = 0; /* reported here, once */
	}
	pthread_mutex_unlock(&cs->lock);
	return err == -EINPROGRESS ? -EAGAIN : err;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* With cs->lock: the circuit conn is the socket's now (a connect succeeded). */
static void connected(struct csock *cs, const struct cn_op_conn *conn)
{
	take_circuit(cs, conn);
	cn_ep_set_timeouts(&cs->ep.ep, cs->rcvtimeo_ms, cs->sndtimeo_ms);
	cs->pending = conn->flags & CN_CIRCUIT_PENDING;
}

/*
 * With cs->lock: a non-blocking connect made while the operator was down
 * (CS_WAITOP) tries again: true once it is settled (connected, or failed
 * with SO_ERROR set: EHOSTUNREACH once the wait's bound passed, as a
 * connect to a host that never answers ARP fails). The circuit's doorbell
 * then replaces the placeholder at the application's fd.
 */
static bool waitop_step(struct csock *cs)
{
	struct cn_op_conn conn;
	int err;

	if (cs->state != CS_WAITOP)
		return true;
	err = proc_connect(cs->waitop_bound ? &cs->local : NULL, &cs->remote, &cs->ep, &conn, 0);
	if (err == -EHOSTDOWN && mono_ns() < cs->waitop_deadline_ns)
		return false;
	procop_waiting(-1);
	if (err) {
		cs->state = CS_FAILED;
		cs->so_error = err == -EHOSTDOWN ? EHOSTUNREACH : -err;
		return true;
	}
	connected(cs, &conn);
	if (preload_install_late(cs->waitop_fd, cs, cs->ep.notif[0].fd)) {
		/* the fd went elsewhere meanwhile: nobody can use the circuit */
		release_state(cs);
		cs->state = CS_FAILED;
		cs->so_error = ECONNABORTED;
	}
	return true;
}

/* A socket in CS_WAITOP: settled now? (takes cs->lock) */
static bool waitop_settled(struct csock *cs)
{
	bool done;

	pthread_mutex_lock(&cs->lock);
	done = waitop_step(cs);
	pthread_mutex_unlock(&cs->lock);
	return done;
}

int csock_connect(struct csock *cs, int fd, const struct sockaddr *sa, socklen_t len,
		  int *doorbell)
{
	struct cn_op_conn conn;
	struct cn_addr dst;
	int err;

	*doorbell = -1;
	if (cs->dgram)
		return udp_connect(cs, sa, len);
	err = csock_addr_in(cs, sa, len, &dst);
	if (err)
		return err;
	if (!dst.port)
		return -ECONNREFUSED;
	pthread_mutex_lock(&cs->lock);
	switch (cs->state) {
	case CS_CONNECTED:
		err = -EISCONN;
		goto out;
	case CS_LISTENING:
		err = -EINVAL;
		goto out;
	case CS_WAITOP:
		if (!waitop_step(cs)) {
			err = -EALREADY;
			goto out;
		}
		if (cs->state == CS_CONNECTED) {
			err = -EISCONN;
			goto out;
		}
		__attribute__((fallthrough)); /* it failed */
	case CS_FAILED:
		/* report the failure once more, then allow a new attempt */
		err = cs->so_error ? -cs->so_error : -ECONNREFUSED;
		cs->so_error = 0;
		cs->state = cs->local.family || cs->local.port ? CS_BOUND : CS_NEW;
		goto out;
	default:
		break;
	}
	err = proc_connect(cs->state == CS_BOUND ? &cs->local : NULL, &dst, &cs->ep, &conn,
			   cs->nonblock ? 0 : procop_wait_ns());
	if (err == -EHOSTDOWN && cs->nonblock) {
		/* the operator is down: in progress until it is back, or the bound passes */
		cs->waitop_bound = cs->state == CS_BOUND;
		cs->waitop_fd = fd;
		cs->waitop_deadline_ns = mono_ns() + procop_wait_ns();
		cs->remote = dst;
		cs->state = CS_WAITOP;
		procop_waiting(1);
		err = -EINPROGRESS;
		goto out;
	}
	if (err == -EHOSTDOWN)
		err = -EHOSTUNREACH; /* waited for the operator up to the bound */
	if (err == -ECONNREFUSED && cs->nonblock) {
		/* Linux reports a refused loopback connect asynchronously */
		cs->state = CS_FAILED;
		cs->so_error = ECONNREFUSED;
		err = -EINPROGRESS;
		goto out;
	}
	if (err)
		goto out;
	connected(cs, &conn);
	*doorbell = cs->ep.notif[0].fd;
	if (cs->nonblock) {
		err = -EINPROGRESS; /* as a non-blocking loopback connect says */
	} else if (cs->pending) {
		err = settle(cs, true);
		if (err) {
			/* returned by connect itself; the socket may connect again */
			cs->so_error = 0;
			cs->state = cs->user_bound ? CS_BOUND : CS_NEW;
			*doorbell = -1;
		}
	}
out:
	pthread_mutex_unlock(&cs->lock);
	return err;
}

/* ---- data ---- */

/* A pending error (a disconnect's reset) once, else otherwise. */
static int take_error(struct csock *cs, int otherwise)
{
	int e = __atomic_exchange_n(&cs->so_error, 0, __ATOMIC_RELAXED);

	return e ? -e : otherwise;
}

/*
 * A reset whose peer left a reason in the status word (the proxy stack:
 * the remote stopped answering, ETIMEDOUT; it became unreachable) reads as
 * that reason, as Linux reports it on a connected socket.
 */
static int map_err(struct csock *cs, ssize_t err)
{
	if ((err == -ECONNRESET || err == -EPIPE) && !cs->reason_given) {
		int st = cn_ep_connect_status(&cs->ep.ep);

		/* once, as Linux: then EPIPE on writes, EOF on reads */
		if (st == -ETIMEDOUT || st == -EHOSTUNREACH || st == -ENETUNREACH) {
			cs->reason_given = true;
			return st;
		}
	}
	return err == -EPROTO ? -ECONNRESET : (int)err;
}

/*
 * A socket open in several processes (fork: sshd's monitor and its child,
 * inetd and its server) has an endpoint copy in each. Before this process
 * uses a direction, take that direction's indices from the circuit, where
 * whichever process used it last published them. Call with the
 * direction's lock held.
 */
static int adopt(struct csock *cs, bool tx)
{
	return cs->shared ? cn_ep_adopt_published(&cs->ep.ep, tx) : 0;
}

ssize_t csock_sendv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags)
{
	unsigned int f = 0;
	ssize_t n;

	if (cs->dgram)
		return udp_sendv(cs, iov, iovcnt, flags, NULL);
	n = settle_for_io(cs, (flags & MSG_DONTWAIT) || cs->nonblock);
	if (n)
		return n;
	if (cs->state == CS_FAILED) {
		int e = cs->so_error;

		cs->so_error = 0;
		return e ? -e : -EPIPE;
	}
	if (cs->state != CS_CONNECTED)
		return take_error(cs, -EPIPE); /* EPIPE: what TCP says when not connected */
	if ((flags & MSG_DONTWAIT) || cs->nonblock)
		f |= CN_MSG_DONTWAIT;
	pthread_mutex_lock(&cs->tx_lock);
	n = adopt(cs, true);
	if (!n)
		n = cn_sendv(&cs->ep.ep, iov, iovcnt, f);
	if (n == -EAGAIN)
		__atomic_add_fetch(&cs->out_gen, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cs->tx_lock);
	return n < 0 ? map_err(cs, n) : n;
}

/* The ring is empty: drain the doorbell, arm it, and look once more. */
static bool rearm_rx(struct csock *cs)
{
	cn_notifier_drain(&cs->ep.notif[0]);
	return cn_poll_arm(&cs->ep.ep, CN_POLLIN) & (CN_POLLIN | CN_POLLHUP | CN_POLLERR);
}

/* A peer killed or gone without FIN shows only as a hang-up of the doorbell. */
static bool doorbell_hung_up(struct csock *cs)
{
	struct pollfd p = { .fd = cs->ep.notif[0].fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* Adopt what this process is not using right now (readiness checks). */
static void adopt_idle(struct csock *cs)
{
	if (!pthread_mutex_trylock(&cs->rx_lock)) {
		adopt(cs, false);
		pthread_mutex_unlock(&cs->rx_lock);
	}
	if (!pthread_mutex_trylock(&cs->tx_lock)) {
		adopt(cs, true);
		pthread_mutex_unlock(&cs->tx_lock);
	}
}

/* One receive, with rx_lock held. */
static ssize_t recv_once(struct csock *cs, const struct iovec *iov, int iovcnt, unsigned int f)
{
	int hangups = 0;
	ssize_t n;

	for (;;) {
		n = cn_recvv(&cs->ep.ep, iov, iovcnt, f, NULL);
		if (n != -EAGAIN || !(f & CN_MSG_DONTWAIT))
			return n;
		if (rearm_rx(cs))
			continue;
		/* armed and still empty; unless the peer is gone, the doorbell will ring */
		if (hangups++ || !doorbell_hung_up(cs))
			return n;
		cn_ep_peer_vanished(&cs->ep.ep); /* then EOF, or a reset */
	}
}

ssize_t csock_recvv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags)
{
	unsigned int f = 0;
	ssize_t n;

	if (cs->dgram)
		return udp_recvv(cs, iov, iovcnt, flags, NULL, NULL, NULL);
	n = settle_for_io(cs, (flags & MSG_DONTWAIT) || cs->nonblock);
	if (n)
		return n;
	if (cs->state != CS_CONNECTED)
		return cs->state == CS_FAILED ? -cs->so_error : take_error(cs, -ENOTCONN);
	if ((flags & MSG_DONTWAIT) || cs->nonblock)
		f |= CN_MSG_DONTWAIT;
	if (flags & MSG_PEEK)
		f |= CN_MSG_PEEK;
	if (flags & MSG_WAITALL)
		f |= CN_MSG_WAITALL;
	pthread_mutex_lock(&cs->rx_lock);
	n = adopt(cs, false);
	if (!n)
		n = recv_once(cs, iov, iovcnt, f);
	if (n > 0 && !(f & CN_MSG_PEEK) && !cn_readable(&cs->ep.ep))
		rearm_rx(cs); /* emptied it: keep the app fd honest for epoll */
	if (n == -EAGAIN)
		__atomic_add_fetch(&cs->in_gen, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cs->rx_lock);
	return n < 0 ? map_err(cs, n) : n;
}

/* ---- sendfile and splice: one copy between the ring and another fd ---- */

static bool fd_ready(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	return poll(&p, 1, 0) == 1 && (p.revents & (events | POLLHUP | POLLERR));
}

/* Fill reserved spans from fd; bytes read, or -errno when none. */
static ssize_t fill_spans(const struct cn_span sp[2], int fd, off_t *off, bool src_nonblock)
{
	ssize_t got = 0, r;
	int i;

	for (i = 0; i < 2 && sp[i].len; i++) {
		if (src_nonblock && !fd_ready(fd, POLLIN))
			return got ? got : -EAGAIN;
		r = off ? pread(fd, sp[i].ptr, sp[i].len, *off + got) : read(fd, sp[i].ptr, sp[i].len);
		if (r < 0)
			return got ? got : -errno;
		got += r;
		if ((size_t)r < sp[i].len)
			break; /* the source has no more for now */
	}
	return got;
}

ssize_t csock_send_from_fd(struct csock *cs, int fd, off_t *off, size_t len, bool nonblock,
			   bool src_nonblock)
{
	unsigned int f = nonblock ? CN_MSG_DONTWAIT : 0;
	struct cn_span sp[2];
	size_t done = 0;
	ssize_t n, got;

	if (cs->dgram)
		return -EINVAL;
	n = settle_for_io(cs, nonblock);
	if (n)
		return n;
	if (cs->state != CS_CONNECTED)
		return take_error(cs, -EPIPE);
	pthread_mutex_lock(&cs->tx_lock);
	n = adopt(cs, true);
	while (!n && done < len) {
		n = cn_reserve(&cs->ep.ep, len - done, sp, f);
		if (n < 0)
			break;
		got = fill_spans(sp, fd, off, src_nonblock);
		cn_commit(&cs->ep.ep, got > 0 ? (size_t)got : 0);
		if (got <= 0) {
			n = got;
			break;
		}
		if (off)
			*off += got;
		done += (size_t)got;
		n = (size_t)got < (size_t)n ? 1 : 0; /* a short read: the source is drained */
	}
	if (n == -EAGAIN)
		__atomic_add_fetch(&cs->out_gen, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cs->tx_lock);
	if (done)
		return (ssize_t)done;
	return n < 0 ? map_err(cs, n) : 0;
}

/*
 * Write one span into a pipe as splice fills one: what fits without
 * blocking, waiting only while the pipe is full and nothing moved yet (and
 * not at all when dst_nonblock). An empty pipe takes its whole capacity at
 * once; otherwise a writable pipe has a free slot, which takes a 4 KiB write.
 */
static ssize_t drain_span(int fd, const char *p, size_t len, bool dst_nonblock)
{
	int queued = -1, cap = fcntl(fd, F_GETPIPE_SZ);
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	size_t done = 0;
	ssize_t w;

	if (cap > 0 && !ioctl(fd, FIONREAD, &queued) && queued == 0) {
		w = write(fd, p, len < (size_t)cap ? len : (size_t)cap);
		if (w < 0)
			return -errno;
		done = (size_t)w;
	}
	while (done < len) {
		if (!fd_ready(fd, POLLOUT)) {
			if (done || dst_nonblock)
				break;
			if (poll(&pfd, 1, -1) < 0)
				return -errno;
			continue;
		}
		w = write(fd, p + done, len - done < 4096 ? len - done : 4096);
		if (w <= 0) {
			if (!done)
				return w < 0 ? -errno : -EAGAIN;
			break;
		}
		done += (size_t)w;
	}
	return done ? (ssize_t)done : -EAGAIN;
}

ssize_t csock_recv_to_fd(struct csock *cs, int fd, size_t len, bool nonblock, bool dst_nonblock)
{
	unsigned int f = (nonblock ? CN_MSG_DONTWAIT : 0) | CN_MSG_PEEK;
	struct cn_span sp[2];
	size_t done = 0;
	ssize_t n, w;
	char probe;
	struct iovec iov = { &probe, 1 };
	int i;

	if (cs->dgram)
		return -EINVAL;
	n = settle_for_io(cs, nonblock);
	if (n)
		return n;
	if (cs->state != CS_CONNECTED)
		return cs->state == CS_FAILED ? -cs->so_error : take_error(cs, -ENOTCONN);
	pthread_mutex_lock(&cs->rx_lock);
	n = adopt(cs, false);
	if (!n)
		n = recv_once(cs, &iov, 1, f); /* waits, sees EOF and vanished peers */
	if (n > 0)
		n = cn_peek(&cs->ep.ep, sp, CN_MSG_DONTWAIT);
	for (i = 0; n > 0 && i < 2 && done < len && sp[i].len; i++) {
		size_t want = sp[i].len < len - done ? sp[i].len : len - done;

		w = drain_span(fd, sp[i].ptr, want, dst_nonblock);
		if (w <= 0) {
			n = done ? 1 : (w ? w : -EAGAIN);
			break;
		}
		done += (size_t)w;
		if ((size_t)w < want)
			break;
	}
	if (done) {
		cn_consume(&cs->ep.ep, done);
		if (!cn_readable(&cs->ep.ep))
			rearm_rx(cs);
	}
	if (n == -EAGAIN)
		__atomic_add_fetch(&cs->in_gen, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&cs->rx_lock);
	if (done)
		return (ssize_t)done;
	return n < 0 ? map_err(cs, n) : 0;
}

int csock_shutdown(struct csock *cs, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (cs->state != CS_CONNECTED)
		return -ENOTCONN;
	return cn_shutdown(&cs->ep.ep, how);
}

/* ---- addresses and options ---- */

int csock_getsockname(struct csock *cs, struct sockaddr *sa, socklen_t *len)
{
	return csock_addr_out(cs, &cs->local, sa, len);
}

int csock_getpeername(struct csock *cs, struct sockaddr *sa, socklen_t *len)
{
	if (cs->dgram) {
		if (!cs->has_default)
			return -ENOTCONN;
		return csock_addr_out(cs, &cs->default_peer, sa, len);
	}
	if (cs->state != CS_CONNECTED)
		return -ENOTCONN;
	return csock_addr_out(cs, &cs->remote, sa, len);
}

static int put_int(void *val, socklen_t *len, int v)
{
	if (!val || !len || *len < sizeof(int))
		return -EINVAL;
	memcpy(val, &v, sizeof(int));
	*len = sizeof(int);
	return 0;
}

static int get_int(const void *val, socklen_t len, int *v)
{
	if (!val || len < sizeof(int))
		return -EINVAL;
	memcpy(v, val, sizeof(int));
	return 0;
}

static int ring_bytes(struct csock *cs, bool rx)
{
	if (cs->state != CS_CONNECTED)
		return 256 << 10;
	return (int)(rx ? cs->ep.ep.rx.size : cs->ep.ep.tx.size);
}

static int timeo_ms(const void *val, socklen_t len, int *ms)
{
	struct timeval tv;

	if (!val || len < sizeof(tv))
		return -EINVAL;
	memcpy(&tv, val, sizeof(tv));
	if (tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return -EDOM;
	*ms = tv.tv_sec || tv.tv_usec ? (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000) : -1;
	return 0;
}

int csock_getsockopt(struct csock *cs, int level, int name, void *val, socklen_t *len)
{
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_ERROR: {
			int e;

			if (cs->pending) {
				pthread_mutex_lock(&cs->lock);
				settle(cs, false);
				pthread_mutex_unlock(&cs->lock);
			}
			e = cs->so_error;

			cs->so_error = 0;
			if (!e && cs->state == CS_CONNECTED)
				e = -cn_take_error(&cs->ep.ep);
			return put_int(val, len, e == EPROTO ? ECONNRESET : e);
		}
		case SO_TYPE:
			return put_int(val, len, cs->dgram ? SOCK_DGRAM : SOCK_STREAM);
		case SO_DOMAIN:
			return put_int(val, len, cs->family);
		case SO_PROTOCOL:
			return put_int(val, len, cs->dgram ? IPPROTO_UDP : IPPROTO_TCP);
		case SO_ACCEPTCONN:
			return put_int(val, len, cs->state == CS_LISTENING);
		case SO_RCVBUF:
			return put_int(val, len, ring_bytes(cs, true));
		case SO_SNDBUF:
			return put_int(val, len, ring_bytes(cs, false));
		case SO_REUSEADDR:
			return put_int(val, len, cs->opt_reuseaddr);
		case SO_REUSEPORT:
			return put_int(val, len, cs->opt_reuseport);
		case SO_KEEPALIVE:
			return put_int(val, len, cs->opt_keepalive);
		default:
			return put_int(val, len, 0);
		}
	}
	if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY)
		return cs->family == AF_INET6 ? put_int(val, len, cs->opt_v6only) : -ENOPROTOOPT;
	if (level == IPPROTO_TCP && name == TCP_INFO) {
		/* no segments, no retransmissions: a connection in good health */
		struct tcp_info ti = { .tcpi_state = TCP_ESTABLISHED, .tcpi_snd_mss = 65483,
				       .tcpi_rcv_mss = 65483, .tcpi_pmtu = 65536 };

		if (!val || !len)
			return -EFAULT;
		if (cs->state != CS_CONNECTED)
			ti.tcpi_state = cs->state == CS_LISTENING ? TCP_LISTEN : TCP_CLOSE;
		memcpy(val, &ti, *len < sizeof(ti) ? *len : sizeof(ti));
		if (*len > sizeof(ti))
			*len = sizeof(ti);
		return 0;
	}
	if (level == IPPROTO_TCP) {
		if (name == TCP_NODELAY)
			return put_int(val, len, cs->opt_nodelay);
		if (name == TCP_MAXSEG)
			return put_int(val, len, 65483);
		return put_int(val, len, 0);
	}
	return -ENOPROTOOPT;
}

int csock_setsockopt(struct csock *cs, int level, int name, const void *val, socklen_t len)
{
	int v = 0, err;

	if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
		err = timeo_ms(val, len, name == SO_RCVTIMEO ? &cs->rcvtimeo_ms : &cs->sndtimeo_ms);
		if (!err && cs->state == CS_CONNECTED)
			cn_ep_set_timeouts(&cs->ep.ep, cs->rcvtimeo_ms, cs->sndtimeo_ms);
		return err;
	}
	if (level == SOL_SOCKET && name == SO_LINGER)
		return len >= sizeof(struct linger) ? 0 : -EINVAL;
	if (level != SOL_SOCKET && level != IPPROTO_TCP && level != IPPROTO_IP &&
	    level != IPPROTO_IPV6)
		return -ENOPROTOOPT;
	if (get_int(val, len, &v))
		return level == SOL_SOCKET || level == IPPROTO_TCP ? -EINVAL : 0;
	if (level == SOL_SOCKET && name == SO_REUSEADDR)
		cs->opt_reuseaddr = !!v;
	else if (level == SOL_SOCKET && name == SO_REUSEPORT)
		cs->opt_reuseport = !!v;
	else if (level == SOL_SOCKET && name == SO_KEEPALIVE)
		cs->opt_keepalive = !!v;
	else if (level == IPPROTO_TCP && name == TCP_NODELAY)
		cs->opt_nodelay = !!v;
	else if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY) {
		if (cs->family != AF_INET6)
			return -ENOPROTOOPT;
		if (cs->state != CS_NEW)
			return -EINVAL; /* as Linux: only before bind */
		cs->opt_v6only = !!v;
	}
	/* buffer sizes, priorities, TOS, keepalive timers...: accepted, nothing to do */
	return 0;
}

int csock_readable(struct csock *cs)
{
	if (cs->dgram)
		return udp_readable(cs);
	if (cs->state != CS_CONNECTED)
		return 0;
	if (cs->shared)
		adopt_idle(cs);
	return (int)cn_readable(&cs->ep.ep);
}

bool csock_arrivals(struct csock *cs, uint64_t *rx_prod)
{
	if (cs->dgram || cs->state != CS_CONNECTED)
		return false;
	*rx_prod = atomic_load_explicit(&cs->ep.ep.rx.ctrl->prod, memory_order_acquire);
	return true;
}

/* ---- readiness ---- */

/* Readiness of a pending connect: true (not ready, fds set) while it lasts. */
static bool pending_poll(struct csock *cs, int fds[2], short fd_events[2], int *nfds)
{
	int st;

	pthread_mutex_lock(&cs->lock);
	st = cs->pending ? settle(cs, false) : 0;
	if (st == -EINPROGRESS) {
		cn_notifier_drain(&cs->ep.notif[0]);
		st = settle(cs, false);
	}
	if (st == -EINPROGRESS) {
		fds[0] = cs->ep.notif[0].fd;
		fd_events[0] = POLLIN;
		*nfds = 1;
	}
	pthread_mutex_unlock(&cs->lock);
	return st == -EINPROGRESS;
}

unsigned int csock_poll(struct csock *cs, unsigned int events, bool arm, int fds[2],
			short fd_events[2], int *nfds)
{
	unsigned int ready, want = events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);

	*nfds = 0;
	if (cs->dgram)
		return udp_poll(cs, events, arm, fds, fd_events, nfds);
	if (cs->state == CS_WAITOP && !waitop_settled(cs))
		return 0; /* still waiting for the operator: wait points wake for it */
	if (cs->pending && pending_poll(cs, fds, fd_events, nfds))
		return 0; /* still connecting: the proxy rings the data doorbell */
	switch (cs->state) {
	case CS_WAITOP:
		return 0;
	case CS_NEW:
	case CS_BOUND:
		return POLLOUT | POLLHUP; /* what an unconnected TCP socket reports */
	case CS_FAILED:
		return POLLOUT | POLLERR | POLLHUP;
	case CS_LISTENING:
		/* the session turns readable when a connection waits */
		fds[0] = cs->op.fd;
		fd_events[0] = POLLIN;
		*nfds = 1;
		return 0;
	case CS_CONNECTED:
		break;
	}
	if (want & POLLRDNORM)
		want |= POLLIN;
	if (want & POLLWRNORM)
		want |= POLLOUT;
	if (cs->shared)
		adopt_idle(cs);
	ready = cn_poll(&cs->ep.ep);
	if (!arm || (ready & (POLLIN | POLLOUT) & want) == (want & (POLLIN | POLLOUT)))
		goto done;
	/*
	 * Arm what is not ready. A doorbell may hold stale rings from wake-ups
	 * nobody consumed: drain it first, or it would wake us at once, for
	 * nothing, forever. A receiver in another thread owns the data
	 * doorbell while it runs; leave it to it.
	 */
	if ((want & POLLIN) && !(ready & POLLIN)) {
		if (!pthread_mutex_trylock(&cs->rx_lock)) {
			cn_notifier_drain(&cs->ep.notif[0]);
			pthread_mutex_unlock(&cs->rx_lock);
		}
		fds[*nfds] = cs->ep.notif[0].fd;
		fd_events[(*nfds)++] = POLLIN;
	}
	if ((want & POLLOUT) && !(ready & POLLOUT)) {
		if (!pthread_mutex_trylock(&cs->tx_lock)) {
			cn_notifier_drain(&cs->ep.notif[1]);
			pthread_mutex_unlock(&cs->tx_lock);
		}
		fds[*nfds] = cs->ep.notif[1].fd;
		fd_events[(*nfds)++] = POLLIN;
	}
	ready = cn_poll_arm(&cs->ep.ep, want & (POLLIN | POLLOUT));
done:
	if (ready & POLLIN)
		ready |= events & POLLRDNORM;
	if (ready & POLLOUT)
		ready |= events & POLLWRNORM;
	return ready & (events | POLLERR | POLLHUP);
}

int csock_event_fds(struct csock *cs, int fds[2])
{
	switch (cs->state) {
	case CS_LISTENING:
		fds[0] = cs->op.fd;
		return 1;
	case CS_CONNECTED:
		fds[0] = cs->ep.notif[0].fd;
		fds[1] = cs->ep.notif[1].fd;
		return 2;
	default:
		return 0;
	}
}

void csock_peer_hangup(struct csock *cs)
{
	if (cs->state == CS_CONNECTED)
		cn_ep_peer_vanished(&cs->ep.ep);
}

/* ---- exec ---- */

static void set_cloexec(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl >= 0)
		fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC);
}

bool csock_export(struct csock *cs, int appfd, struct csock_image *img)
{
	memset(img, 0, sizeof(*img));
	if (cs->dgram)
		return false; /* datagram sockets do not cross exec yet */
	/* a VM's circuit (eventfd notifiers, notif[2] set) does not cross exec yet */
	if (cs->state == CS_CONNECTED &&
	    (csock_memfd(cs) < 0 || !cs->ep.notif[1].ops || cs->ep.notif[2].ops))
		return false;
	img->appfd = appfd;
	img->family = cs->family;
	img->state = (int32_t)cs->state;
	img->nonblock = cs->nonblock;
	img->role = (int32_t)cs->role;
	img->so_error = cs->so_error;
	img->memfd = img->space_fd = img->lease_fd = -1;
	img->rcvtimeo_ms = cs->rcvtimeo_ms;
	img->sndtimeo_ms = cs->sndtimeo_ms;
	img->opts[0] = cs->opt_reuseaddr;
	img->opts[1] = cs->opt_reuseport;
	img->opts[2] = cs->opt_keepalive;
	img->opts[3] = cs->opt_nodelay;
	img->opts[4] = cs->opt_linger;
	img->opts[5] = cs->opt_v6only;
	img->local = cs->local;
	img->remote = cs->remote;
	img->circuit_id = cs->circuit_id;
	img->key = (uint64_t)(uintptr_t)cs;
	img->reg_gen = cs->reg_gen;
	if (cs->state == CS_CONNECTED) {
		/* the data doorbell crosses as the application's fd itself */
		img->memfd = csock_memfd(cs); /* a chunk's: shared by its circuits' images */
		img->space_fd = cs->ep.notif[1].fd;
		set_cloexec(img->memfd, false);
		set_cloexec(img->space_fd, false);
		if (cs->ep.leased) {
			img->lease_fd = cs->ep.lease_fd;
			img->chunk_id = cs->chunk_id;
			img->slot_off = cs->slot_off;
			img->ring_size[0] = cs->ring_size[0];
			img->ring_size[1] = cs->ring_size[1];
			set_cloexec(img->lease_fd, false);
		}
	} else if (cs->state == CS_LISTENING) {
		/* the channel crosses as the application's fd, and we keep its other end */
		img->space_fd = cs->op.chan_peer;
		img->backlog = cs->backlog;
		img->listen_flags = cs->listen_flags;
		set_cloexec(img->space_fd, false);
	}
	return true;
}

void csock_export_undo(struct csock *cs)
{
	if (cs->state == CS_CONNECTED) {
		set_cloexec(csock_memfd(cs), true);
		set_cloexec(cs->ep.notif[1].fd, true);
		if (cs->ep.leased)
			set_cloexec(cs->ep.lease_fd, true);
	} else if (cs->state == CS_LISTENING) {
		set_cloexec(cs->op.chan_peer, true);
	}
}

/* The circuit of an image: a slot of a chunk, or a memfd of its own. 0 or -errno. */
static int import_circuit(struct csock *cs, const struct csock_image *img, int fds[3])
{
	struct cn_circuit_params prm = {
		.mode = CN_MODE_STREAM,
		.ring_size = { img->ring_size[0], img->ring_size[1] },
	};
	struct cn_chunk *chunk;
	int err, fd;

	if (img->lease_fd < 0)
		return cn_local_open(&cs->ep, fds, CN_LOCAL_NFDS_SOCK, cs->role);
	/* img->memfd may name other images' chunk too: csock_import_done closes it */
	fd = cn_fd_lift(fcntl(img->memfd, F_DUPFD_CLOEXEC, 0));
	if (fd < 0)
		return -errno;
	err = cn_chunk_get(img->chunk_id, fd, &chunk);
	if (err)
		return err;
	err = cn_local_open_slot(&cs->ep, chunk, img->slot_off, cn_circuit_size(&prm), fds + 1,
				 img->lease_fd, cs->role, img->circuit_id);
	if (err) {
		cn_chunk_put(chunk);
		return err;
	}
	set_cloexec(img->lease_fd, true);
	cs->chunk_id = img->chunk_id;
	cs->slot_off = img->slot_off;
	cs->ring_size[0] = img->ring_size[0];
	cs->ring_size[1] = img->ring_size[1];
	return 0;
}

struct csock *csock_import(const struct csock_image *img)
{
	struct csock *cs;
	int fds[CN_LOCAL_NFDS_SOCK];

	if ((img->family != AF_INET && img->family != AF_INET6) || img->state < CS_NEW ||
	    img->state > CS_FAILED)
		return NULL;
	cs = csock_new(img->family, img->nonblock);
	if (!cs)
		return NULL;
	cs->state = (enum csock_state)img->state;
	cs->role = img->role ? CN_ROLE_ACCEPTOR : CN_ROLE_INITIATOR;
	cs->so_error = img->so_error;
	cs->rcvtimeo_ms = img->rcvtimeo_ms;
	cs->sndtimeo_ms = img->sndtimeo_ms;
	cs->opt_reuseaddr = img->opts[0];
	cs->opt_reuseport = img->opts[1];
	cs->opt_keepalive = img->opts[2];
	cs->opt_nodelay = img->opts[3];
	cs->opt_linger = img->opts[4];
	cs->opt_v6only = img->opts[5];
	cs->local = img->local;
	cs->remote = img->remote;
	cs->circuit_id = img->circuit_id;
	if (cs->state == CS_LISTENING) {
		if (img->space_fd < 0)
			goto fail;
		cs->op.fd = cn_fd_lift(fcntl(img->appfd, F_DUPFD_CLOEXEC, 0));
		cs->op.timeout_ms = -1;
		cs->op.keep_memfd = true;
		if (cs->op.fd < 0)
			goto fail;
		cs->op.durable = true;
		cs->op.chan_peer = img->space_fd;
		cs->op.on_reset = procop_on_reset;
		set_cloexec(img->space_fd, true);
		cs->backlog = img->backlog;
		cs->listen_flags = img->listen_flags;
		cs->reg_gen = img->reg_gen;
		procop_durable_add(cs, true);
	} else if (cs->state == CS_CONNECTED) {
		/* a circuit of its own keeps a dup of its memfd; a pooled one, its chunk's */
		if (img->lease_fd < 0) {
			cs->memfd = cn_fd_lift(fcntl(img->memfd, F_DUPFD_CLOEXEC, 0));
			if (cs->memfd < 0)
				goto fail;
		}
		fds[0] = img->memfd;
		fds[1] = cn_fd_lift(fcntl(img->appfd, F_DUPFD_CLOEXEC, 0));
		fds[2] = img->space_fd;
		if (fds[1] < 0 || import_circuit(cs, img, fds)) {
			if (fds[1] >= 0)
				close(fds[1]);
			goto fail;
		}
		set_cloexec(img->space_fd, true);
		cs->reg_gen = img->reg_gen;
		procop_durable_add(cs, false);
		cn_ep_set_timeouts(&cs->ep.ep, cs->rcvtimeo_ms, cs->sndtimeo_ms);
		cn_ep_set_spin(&cs->ep.ep, (uint32_t)preload_spin_ns());
		cn_poll_arm(&cs->ep.ep, CN_POLLIN);
	}
	hide_fds(cs, true);
	return cs;
fail:
	if (cs->memfd >= 0)
		close(cs->memfd);
	cs->memfd = -1;
	if (cs->op.fd >= 0)
		close(cs->op.fd);
	cs->state = CS_NEW;
	csock_put(cs);
	return NULL;
}

void csock_import_done(const struct csock_image *img)
{
	/* a chunk's memfd, named by all its circuits' images: the chunk has its own now */
	if (img->state == CS_CONNECTED && img->lease_fd >= 0 && img->memfd >= 0)
		close(img->memfd);
}
