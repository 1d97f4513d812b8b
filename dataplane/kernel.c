// SPDX-License-Identifier: MIT
/*
 * dataplane/kernel.c - the kernel-socket backend of the proxy stack: one
 * epoll loop per thread, each with its own operator session. For every
 * circuit the operator routes off-host it opens a non-blocking TCP socket
 * to the destination, reports the connect's outcome into the circuit (the
 * guest's connect() returns then, with Linux's errno on failure), and then
 * relays (relay.c) between the socket and the circuit.
 *
 * Everything is edge-triggered: the socket (in, out, hang-up) and both of
 * the circuit's doorbells (the guest wrote; the guest made room). A pump
 * runs each direction until it would block, so an edge is never lost: the
 * host side is read or written to EAGAIN, and the guest side is armed
 * (cn_poll_arm) before we sleep.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <circnet/opclient.h>

#include "../operator/log.h"
#include "conn.h"
#include "dataplane.h"
#include "relay.h"

enum src_kind {
	SRC_SESSION,
	SRC_SESSION_UDP,
	SRC_SOCK,
	SRC_DATA,
	SRC_SPACE,
	SRC_PUBLISH,
	SRC_UFLOW,
};

struct ksrc {
	enum src_kind kind;
	struct kconn *c;
};

struct kconn {
	struct dp_conn dc; /* first: the relay, the books, the list (conn.h) */
	struct kloop *loop;
	int fd;
	int64_t deadline_ms; /* connecting: give up then (0: the kernel decides) */
	int eof_err;	     /* the reset seen when connect settled: what EOF really is */
	struct ksrc src_sock, src_data, src_space;
	/* a published port's client held while its guest's backlog is full */
	struct kconn *held_next;
	int64_t retry_ms, hold_ms; /* ask again then; give up then */
};

/* A published host port: every loop listens on it (SO_REUSEPORT). */
struct kpub {
	struct ksrc src;
	int fd;
	unsigned int l4;
	struct cn_addr host; /* family NONE: every address */
};

#define KPUB_MAX DP_PUB_MAX

/* The published ports of one l4, and the set being received (PUBLISH pushes). */
struct kpubset {
	struct kpub pubs[KPUB_MAX];
	int npubs;
	struct dp_pubset_rx next; /* the set being received */
	bool apply_pending; /* a set that came while pub_accept walked this one */
};

/*
 * One client of a published UDP port: its datagrams reach the guest over a
 * circuit of its own, and the guest's replies go back from the shared socket.
 */
struct uflow {
	struct ksrc src_data;
	struct kpub *pub;
	struct cn_addr pub_host; /* finds pub again when the set is rebuilt */
	struct cn_addr client;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct cn_local_ep ep;
	struct cn_op_conn conn;
	int64_t last_ms;
	bool dead;
	struct uflow *next;  /* the loop's flows */
	struct uflow *hnext; /* its hash bucket */
};

#define UFLOW_BUCKETS 1024 /* a datagram finds its flow in one bucket, not a list walk */

struct kloop {
	struct dp_loop *dl;
	struct kpubset sets[2]; /* [0] tcp, [1] udp */
	bool in_accept;
	struct uflow *uflows; /* clients of published UDP ports */
	struct uflow *ugrave; /* released during this batch */
	struct uflow *ubuckets[UFLOW_BUCKETS];
	int epfd;
	struct dp_sessions ses; /* the operator's (session.c) */
	struct ksrc src_session, src_session_udp;
	struct dp_conns conns;
	struct kconn *held; /* published ports' clients waiting for a guest's backlog */
};

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the host side: a kernel TCP socket ---- */

static ssize_t k_recv(struct relay *r, const struct iovec *iov, int iovcnt)
{
	struct kconn *c = (struct kconn *)r;
	ssize_t n = readv(c->fd, iov, iovcnt);

	if (n == 0 && c->eof_err)
		return -c->eof_err; /* SO_ERROR took the reset: the queue ends in it */
	return n < 0 ? -errno : n;
}

static ssize_t k_send(struct relay *r, const struct iovec *iov, int iovcnt)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n = sendmsg(((struct kconn *)r)->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);

	return n < 0 ? -errno : n;
}

static void k_shutdown_wr(struct relay *r)
{
	shutdown(((struct kconn *)r)->fd, SHUT_WR);
}

static void k_abort(struct relay *r)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	/* closing with a zero linger sends RST */
	setsockopt(((struct kconn *)r)->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static const struct relay_host_ops kernel_ops = {
	.recv = k_recv,
	.send = k_send,
	.shutdown_wr = k_shutdown_wr,
	.abort = k_abort,
};

/* ---- connections ---- */

static int ep_add(struct kloop *l, int fd, uint32_t events, struct ksrc *src)
{
	struct epoll_event e = { .events = events, .data.ptr = src };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) ? -errno : 0;
}

static void conn_free(struct kloop *l, struct kconn *c)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->dc.r.ep.notif[0].fd, NULL);
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->dc.r.ep.notif[1].fd, NULL);
	if (c->fd >= 0)
		close(c->fd);
	dp_conn_release(l->dl, &l->conns, &c->dc, dp_sessions_alive(&l->ses, c->dc.op));
}

static void bury(struct kloop *l)
{
	dp_conns_bury(&l->conns);
	while (l->ugrave) {
		struct uflow *f = l->ugrave;

		l->ugrave = f->next;
		free(f);
	}
}

/* The connect is settled: tell the guest, then relay or give up. */
static void conn_settle(struct kloop *l, struct kconn *c, int err)
{
	dp_conn_connected(l->dl, &c->dc, err);
	if (err || relay_pump(&c->dc.r) & RELAY_DONE)
		conn_free(l, c);
}

/* Common to both directions: the relay, the event sources, the books. */
static void conn_init(struct kloop *l, struct kconn *c)
{
	c->loop = l;
	if (!c->dc.op)
		c->dc.op = &l->ses.op;
	c->dc.has_circuit = true;
	c->dc.r.circuit_id = c->dc.conn.circuit_id;
	c->dc.r.ops = &kernel_ops;
	c->dc.r.dgram = c->dc.conn.l4 == CN_L4_UDP;
	c->src_sock = (struct ksrc){ SRC_SOCK, c };
	c->src_data = (struct ksrc){ SRC_DATA, c };
	c->src_space = (struct ksrc){ SRC_SPACE, c };
	dp_conn_track(l->dl, &l->conns, &c->dc);
}

static int conn_watch(struct kloop *l, struct kconn *c)
{
	int err = -ep_add(l, c->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->src_sock);

	if (!err)
		err = -ep_add(l, c->dc.r.ep.notif[0].fd, EPOLLIN | EPOLLET, &c->src_data);
	if (!err)
		err = -ep_add(l, c->dc.r.ep.notif[1].fd, EPOLLIN | EPOLLET, &c->src_space);
	return err;
}

/* --user-timeout: the kernel ends the connection, reads then fail with ETIMEDOUT */
static void set_user_timeout(struct kloop *l, int fd)
{
	unsigned int ms = (unsigned int)l->dl->cfg->user_timeout_ms;

	if (ms)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

/* An inbound connection (a published port): connected already, relay at once. */
static void conn_adopt(struct kloop *l, struct kconn *c)
{
	conn_init(l, c);
	atomic_fetch_add(&l->dl->cnt.connected, 1);
	if (conn_watch(l, c)) {
		relay_host_failed(&c->dc.r, ENOMEM);
		k_abort(&c->dc.r);
		conn_free(l, c);
		return;
	}
	if (relay_pump(&c->dc.r) & RELAY_DONE)
		conn_free(l, c);
}

/* An outbound connection: connect to the off-host destination first. */
static void conn_start(struct kloop *l, struct kconn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = cn_addr_to_sockaddr(&c->dc.conn.local, &ss);
	int one = 1, err = 0;

	conn_init(l, c);
	c->dc.connecting = true;
	if (l->dl->cfg->connect_timeout_ms)
		c->deadline_ms = now_ms() + l->dl->cfg->connect_timeout_ms;
	if (c->dc.r.dgram) {
		/* a connected UDP socket: replies from that peer only, ICMP errors reported */
		c->dc.connecting = false;
		c->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&ss, len) || conn_watch(l, c)) {
			relay_host_failed(&c->dc.r, errno);
			conn_free(l, c);
			return;
		}
		atomic_fetch_add(&l->dl->cnt.connected, 1);
		if (relay_pump(&c->dc.r) & RELAY_DONE)
			conn_free(l, c);
		return;
	}
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		err = errno == EMFILE || errno == ENFILE ? ENOBUFS : errno;
	} else {
		/* bytes come in ring-sized batches already: Nagle only adds delay */
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		set_user_timeout(l, c->fd);
		if (connect(c->fd, (struct sockaddr *)&ss, len) && errno != EINPROGRESS)
			err = errno;
	}
	if (!err)
		err = conn_watch(l, c);
	if (err)
		conn_settle(l, c, err);
	/* else: the socket turns writable (or fails) when the remote answers */
}

static void conn_sock_event(struct kloop *l, struct kconn *c, uint32_t events)
{
	if (c->dc.connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len))
			err = errno;
		if (!err && !(events & EPOLLOUT))
			return; /* not settled yet */
		if (err == ECONNRESET || err == EPIPE) {
			/*
			 * A refused connect reads ECONNREFUSED: a reset means it
			 * was established, and a fast server's bytes and RST came
			 * before we looked. The guest connects, reads those bytes,
			 * then the reset, as on Linux (reading SO_ERROR cleared it).
			 */
			c->eof_err = err;
			err = 0;
		}
		conn_settle(l, c, err);
		return;
	}
	if (relay_pump(&c->dc.r) & RELAY_DONE)
		conn_free(l, c);
}

static void conn_doorbell(struct kloop *l, struct kconn *c, int which, uint32_t events)
{
	cn_notifier_drain(&c->dc.r.ep.notif[which]);
	if (events & (EPOLLHUP | EPOLLERR))
		cn_ep_peer_vanished(&c->dc.r.ep.ep); /* the guest died: EOF or reset */
	if (c->dc.connecting) {
		if (events & (EPOLLHUP | EPOLLERR)) {
			/* nobody waits for this connect any more */
			k_abort(&c->dc.r);
			c->dc.r.reset = true;
			conn_free(l, c);
		}
		return;
	}
	if (relay_pump(&c->dc.r) & RELAY_DONE)
		conn_free(l, c);
}

/* ---- published ports ---- */

static void detach(struct kloop *l, const char *why);

/* An IPv4 client of an IPv6 wildcard listener shows as ::ffff:a.b.c.d: unmap it. */
static void unmap_v4(struct cn_addr *a)
{
	static const uint8_t prefix[12] = { [10] = 0xff, [11] = 0xff };

	if (a->family == CN_AF_INET6 && !memcmp(a->addr, prefix, 12)) {
		memmove(a->addr, a->addr + 12, 4);
		memset(a->addr + 4, 0, 12);
		a->family = CN_AF_INET;
	}
}

static struct kpubset *pubset(struct kloop *l, unsigned int l4)
{
	return &l->sets[l4 == CN_L4_UDP];
}

static const char *l4name(unsigned int l4)
{
	return l4 == CN_L4_UDP ? "udp" : "tcp";
}

static int pub_listen(struct kloop *l, struct kpub *p)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct cn_addr a = p->host;
	int one = 1, fd, type = p->l4 == CN_L4_UDP ? SOCK_DGRAM : SOCK_STREAM;

	if (!a.family) {
		/* every address: the IPv6 wildcard takes IPv4 too */
		a.family = CN_AF_INET6;
	}
	len = cn_addr_to_sockaddr(&a, &ss);
	fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* each loop its share; for UDP the kernel keeps a client on one loop */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || (type == SOCK_STREAM && listen(fd, 1024))) {
		int err = -errno;

		close(fd);
		return err;
	}
	p->fd = fd;
	p->src = (struct ksrc){ SRC_PUBLISH, NULL };
	return ep_add(l, fd, EPOLLIN, &p->src);
}

static void uflow_free(struct kloop *l, struct uflow *f);

/* A complete set arrived: close what is gone, listen on what is new. */
static void pub_apply(struct kloop *l, unsigned int l4)
{
	struct kpubset *ps = pubset(l, l4);
	struct kpub keep[KPUB_MAX];
	int i, j, n = 0;
	char a[64];

	for (i = 0; i < ps->npubs; i++) {
		struct uflow *f, *next;

		for (j = 0; j < ps->next.n; j++)
			if (dp_same_host(&ps->pubs[i].host, &ps->next.host[j]))
				break;
		if (j < ps->next.n) {
			keep[n++] = ps->pubs[i];
			continue;
		}
		/* the UDP clients of a withdrawn port go with it */
		for (f = l->uflows; f; f = next) {
			next = f->next;
			if (f->pub == &ps->pubs[i])
				uflow_free(l, f);
		}
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, ps->pubs[i].fd, NULL);
		close(ps->pubs[i].fd);
		cn_addr_format(&ps->pubs[i].host, a, sizeof(a));
		if (!l->dl->index)
			log_info("withdrawn %s %s", l4name(l4), a);
	}
	for (j = 0; j < ps->next.n; j++) {
		for (i = 0; i < n; i++)
			if (dp_same_host(&keep[i].host, &ps->next.host[j]))
				break;
		if (i < n)
			continue;
		keep[n].host = ps->next.host[j];
		keep[n].l4 = l4;
		i = pub_listen(l, &keep[n]);
		cn_addr_format(&ps->next.host[j], a, sizeof(a));
		if (i) {
			log_err("loop %d: cannot listen on published %s %s: %s", l->dl->index,
				l4name(l4), a, strerror(-i));
			continue;
		}
		if (!l->dl->index)
			log_info("published %s %s", l4name(l4), a);
		n++;
	}
	memcpy(ps->pubs, keep, sizeof(keep[0]) * (size_t)n);
	ps->npubs = n;
	/* kept entries moved: their flows and epoll data pointers follow */
	if (l4 == CN_L4_UDP) {
		struct uflow *f;

		for (f = l->uflows; f; f = f->next)
			for (i = 0; i < n; i++)
				if (dp_same_host(&ps->pubs[i].host, &f->pub_host))
					f->pub = &ps->pubs[i];
	}
	for (i = 0; i < n; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = &ps->pubs[i].src };

		epoll_ctl(l->epfd, EPOLL_CTL_MOD, ps->pubs[i].fd, &e);
	}
}

static void on_publish(void *arg, const struct cn_msg_publish *m)
{
	struct kloop *l = arg;
	struct kpubset *ps = pubset(l, m->l4);

	if (!dp_publish_collect(&ps->next, m))
		return;
	if (l->in_accept)
		ps->apply_pending = true; /* pub_accept walks the sets now */
	else
		pub_apply(l, m->l4);
}

/* ---- published UDP ports ---- */

static struct uflow **uflow_bucket(struct kloop *l, const struct cn_addr *host,
				   const struct cn_addr *client)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < sizeof(client->addr); i++)
		h = (h ^ client->addr[i]) * 1099511628211ull;
	h = (h ^ client->port) * 1099511628211ull;
	h = (h ^ host->port) * 1099511628211ull;
	return &l->ubuckets[h % UFLOW_BUCKETS];
}

static void uflow_free(struct kloop *l, struct uflow *f)
{
	struct uflow **pp;

	for (pp = &l->uflows; *pp; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	for (pp = uflow_bucket(l, &f->pub_host, &f->client); *pp; pp = &(*pp)->hnext)
		if (*pp == f) {
			*pp = f->hnext;
			break;
		}
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, f->ep.notif[0].fd, NULL);
	cn_local_close(&f->ep);
	if (l->ses.udp_attached)
		cn_op_closed(&l->ses.op_udp, f->conn.circuit_id);
	atomic_fetch_sub(&l->dl->cnt.active, 1);
	atomic_fetch_add(&l->dl->cnt.closed, 1);
	/* events of this batch may still name it: freed with the graveyard */
	f->dead = true;
	f->next = l->ugrave;
	l->ugrave = f;
}

/* The guest's replies to one client: out of the shared socket, one per record. */
static void uflow_answers(struct kloop *l, struct uflow *f, uint32_t events)
{
	static unsigned char buf[CN_DGRAM_MAX];
	struct iovec iov = { buf, sizeof(buf) };
	unsigned int of;
	ssize_t n;

	cn_notifier_drain(&f->ep.notif[0]);
	if (events & (EPOLLHUP | EPOLLERR))
		cn_ep_peer_vanished(&f->ep.ep);
	for (;;) {
		of = 0;
		n = cn_recvv(&f->ep.ep, &iov, 1, CN_MSG_DONTWAIT, &of);
		if (n == -EAGAIN) {
			if (cn_poll_arm(&f->ep.ep, CN_POLLIN) &
			    (CN_POLLIN | CN_POLLERR | CN_POLLHUP))
				continue;
			return;
		}
		if (n < 0 || (n == 0 && (of & CN_MSGF_EOF))) {
			uflow_free(l, f); /* the guest closed its socket, or reset */
			return;
		}
		sendto(f->pub->fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&f->ss,
		       f->sslen);
		f->last_ms = now_ms();
		atomic_fetch_add(&l->dl->cnt.to_host, (uint64_t)n);
	}
}

static struct uflow *uflow_find(struct kloop *l, struct kpub *p, const struct cn_addr *client)
{
	struct uflow *f;

	for (f = *uflow_bucket(l, &p->host, client); f; f = f->hnext)
		if (f->pub == p && dp_same_host(&f->client, client))
			return f;
	return NULL;
}

/* A new client: a datagram circuit to the guest's bound socket. */
static struct uflow *uflow_new(struct kloop *l, struct kpub *p, const struct cn_addr *client,
			       const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct cn_addr dst = p->host;
	struct uflow *f, **pp;
	int err;

	if (!l->ses.udp_attached || !(f = calloc(1, sizeof(*f))))
		return NULL;
	if (!dst.family)
		dst.family = client->family; /* the publish matches on the port */
	f->pub = p;
	f->pub_host = p->host;
	f->client = *client;
	memcpy(&f->ss, ss, sslen);
	f->sslen = sslen;
	err = cn_op_connect_flags(&l->ses.op_udp, CN_L4_UDP, client, &dst, CN_CONNECT_PUBLISHED, &f->ep,
				  &f->conn);
	if (err) {
		free(f);
		if (err == -ECONNABORTED)
			detach(l, "operator gone");
		return NULL; /* no guest socket behind it: the datagram is lost */
	}
	f->src_data = (struct ksrc){ SRC_UFLOW, NULL };
	if (ep_add(l, f->ep.notif[0].fd, EPOLLIN | EPOLLET, &f->src_data)) {
		cn_local_close(&f->ep);
		free(f);
		return NULL;
	}
	f->next = l->uflows;
	l->uflows = f;
	pp = uflow_bucket(l, &f->pub_host, client);
	f->hnext = *pp;
	*pp = f;
	atomic_fetch_add(&l->dl->cnt.accepted, 1);
	atomic_fetch_add(&l->dl->cnt.connected, 1);
	atomic_fetch_add(&l->dl->cnt.active, 1);
	return f;
}

/* Datagrams at a published UDP port: each to its client's circuit. */
static void pub_datagrams(struct kloop *l, struct kpub *p)
{
	static unsigned char buf[CN_DGRAM_MAX];
	int i;

	for (i = 0; i < 256; i++) { /* a bounded share per event: others wait their turn */
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct cn_addr client;
		struct uflow *f;
		ssize_t n = recvfrom(p->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&ss,
				     &len);

		if (n < 0)
			return;
		if (cn_addr_from_sockaddr(&client, (struct sockaddr *)&ss, len))
			continue;
		unmap_v4(&client);
		f = uflow_find(l, p, &client);
		if (!f) {
			l->in_accept = true; /* a PUBLISH during the connect must wait */
			f = uflow_new(l, p, &client, &ss, len);
			l->in_accept = false;
			if (!f)
				continue;
		}
		/* a full ring drops the datagram, as a full socket buffer would */
		if (cn_send(&f->ep.ep, buf, (size_t)n, CN_MSG_DONTWAIT) >= 0)
			atomic_fetch_add(&l->dl->cnt.to_guest, (uint64_t)n);
		f->last_ms = now_ms();
		uflow_answers(l, f, 0);
	}
}

static void uflows_expire(struct kloop *l)
{
	int64_t now = now_ms();
	struct uflow *f, *next;

	for (f = l->uflows; f; f = next) {
		next = f->next;
		if (now - f->last_ms > l->dl->cfg->udp_idle_ms)
			uflow_free(l, f);
	}
}

static void pub_accept_all(struct kloop *l, struct kpub *p);

static void pub_apply_pending(struct kloop *l)
{
	unsigned int l4;

	for (l4 = CN_L4_TCP; l4 <= CN_L4_UDP; l4++)
		if (pubset(l, l4)->apply_pending) {
			pubset(l, l4)->apply_pending = false;
			pub_apply(l, l4);
		}
}

/* Connections at a published port: each becomes a circuit to its guest. */
static void pub_accept(struct kloop *l, struct kpub *p)
{
	l->in_accept = true;
	pub_accept_all(l, p);
	l->in_accept = false;
	pub_apply_pending(l);
}

/* A published port's client that gets no guest: reset, as by a closed port. */
static void pub_reset(struct kconn *c)
{
	k_abort(&c->dc.r);
	close(c->fd);
	free(c);
}

/*
 * Ask the operator for the guest behind a published port's client (its
 * address and ours in c->dc.conn). A full backlog holds the client
 * (conn.h); anything else but success resets it.
 */
static void pub_map(struct kloop *l, struct kconn *c)
{
	int err, one = 1;

	err = l->ses.attached
		      ? cn_op_connect_flags(&l->ses.op, CN_L4_TCP, &c->dc.conn.remote,
					    &c->dc.conn.local, CN_CONNECT_PUBLISHED, &c->dc.r.ep,
					    &c->dc.conn)
		      : -ECONNREFUSED;
	if (dp_pub_hold(err, now_ms(), &c->hold_ms, &c->retry_ms)) {
		c->held_next = l->held;
		l->held = c;
		return;
	}
	if (err) {
		pub_reset(c);
		if (err == -ECONNABORTED)
			detach(l, "operator gone");
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_user_timeout(l, c->fd);
	conn_adopt(l, c);
}

/* The held clients whose time to ask again has come. */
static void pub_retry_held(struct kloop *l)
{
	struct kconn *list = l->held, *c;
	int64_t now = now_ms();

	l->held = NULL;
	while (list) {
		c = list;
		list = c->held_next;
		if (now < c->retry_ms) {
			c->held_next = l->held;
			l->held = c;
			continue;
		}
		pub_map(l, c);
	}
}

static void pub_accept_all(struct kloop *l, struct kpub *p)
{
	for (;;) {
		struct sockaddr_storage peer, local;
		socklen_t plen = sizeof(peer), llen = sizeof(local);
		struct cn_addr src, dst;
		struct kconn *c;
		int fd;

		fd = accept4(p->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (getsockname(fd, (struct sockaddr *)&local, &llen) ||
		    cn_addr_from_sockaddr(&src, (struct sockaddr *)&peer, plen) ||
		    cn_addr_from_sockaddr(&dst, (struct sockaddr *)&local, llen) ||
		    !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		unmap_v4(&src);
		unmap_v4(&dst);
		c->fd = fd;
		c->dc.conn.remote = src;
		c->dc.conn.local = dst;
		pub_map(l, c);
	}
}

/* ---- the operator session ---- */

static void detach(struct kloop *l, const char *why)
{
	dp_sessions_detach(l->dl, &l->ses, l->epfd, why);
}

static void start_conn(void *arg, struct dp_conn *d)
{
	struct kconn *c = (struct kconn *)d;

	c->fd = -1;
	conn_start(arg, c);
}

static void session_event(struct kloop *l, struct cn_op *op)
{
	int err = dp_session_take(op, sizeof(struct kconn), start_conn, l);

	if (err)
		detach(l, strerror(-err));
}

/*
 * Connects past their deadline fail with ETIMEDOUT, as a SYN nobody answers;
 * a held-back host reset whose guest did not read in time is sent now.
 */
static void check_deadlines(struct kloop *l)
{
	int64_t now = now_ms();
	struct dp_conn *d, *next;

	for (d = l->conns.head; d; d = next) {
		struct kconn *c = (struct kconn *)d;

		next = d->next; /* a release leaves it valid */
		if (c->dc.connecting && c->deadline_ms && now >= c->deadline_ms)
			conn_settle(l, c, ETIMEDOUT);
		else if (relay_rst_due(&c->dc.r) && (relay_pump(&c->dc.r) & RELAY_DONE))
			conn_free(l, c); /* a guest that did not read before the reset */
	}
}

/* SIGTERM: every connection is reset towards its guest, as a host going down. */
static void shutdown_all(struct kloop *l)
{
	while (l->held) { /* the held clients: reset, as the rest */
		struct kconn *c = l->held;

		l->held = c->held_next;
		pub_reset(c);
	}
	while (l->conns.head) {
		struct kconn *c = (struct kconn *)l->conns.head;

		dp_conn_host_down(&c->dc);
		conn_free(l, c);
	}
	dp_sessions_close(&l->ses, l->epfd);
	while (l->uflows)
		uflow_free(l, l->uflows);
	l->sets[0].next.n = l->sets[1].next.n = 0;
	pub_apply(l, CN_L4_TCP); /* closes every published port */
	pub_apply(l, CN_L4_UDP);
}

size_t kernel_loop_conns(struct dp_loop *dl, char *buf, size_t len)
{
	struct kloop *l = dl->priv;

	return l ? dp_conns_format(dl, &l->conns, buf, len) : 0;
}

void *kernel_loop_main(void *arg)
{
	struct dp_loop *dl = arg;
	struct kloop l = { .dl = dl, .epfd = -1 };

	l.src_session = (struct ksrc){ SRC_SESSION, NULL };
	l.src_session_udp = (struct ksrc){ SRC_SESSION_UDP, NULL };
	l.ses.tcp_tag = &l.src_session;
	l.ses.udp_tag = &l.src_session_udp;
	struct epoll_event evs[256];
	int i, n;

	dp_conns_init(&l.conns);
	l.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l.epfd < 0) {
		log_err("loop %d: epoll_create1: %s", dl->index, strerror(errno));
		atomic_store(&dp_stop, true);
		return NULL;
	}
	dl->priv = &l;
	while (!atomic_load(&dp_stop)) {
		if (dp_sessions_due(&l.ses))
			dp_sessions_attach(dl, &l.ses, l.epfd, on_publish, &l);
		n = epoll_wait(l.epfd, evs, 256, l.held ? DP_PUB_RETRY_MS : 200);
		for (i = 0; i < n; i++) {
			struct ksrc *s = evs[i].data.ptr;

			if (s->c && s->c->dc.dead)
				continue;
			switch (s->kind) {
			case SRC_SESSION:
				if (evs[i].events & (EPOLLHUP | EPOLLERR) &&
				    !(evs[i].events & EPOLLIN))
					detach(&l, "hang-up");
				else
					session_event(&l, &l.ses.op);
				break;
			case SRC_SESSION_UDP:
				if (evs[i].events & (EPOLLHUP | EPOLLERR) &&
				    !(evs[i].events & EPOLLIN))
					detach(&l, "hang-up");
				else
					session_event(&l, &l.ses.op_udp);
				break;
			case SRC_SOCK:
				conn_sock_event(&l, s->c, evs[i].events);
				break;
			case SRC_DATA:
				conn_doorbell(&l, s->c, 0, evs[i].events);
				break;
			case SRC_SPACE:
				conn_doorbell(&l, s->c, 1, evs[i].events);
				break;
			case SRC_PUBLISH: {
				struct kpub *p = container_of(s, struct kpub, src);

				if (p->l4 == CN_L4_UDP) {
					pub_datagrams(&l, p);
					pub_apply_pending(&l);
				} else {
					pub_accept(&l, p);
				}
				break;
			}
			case SRC_UFLOW: {
				struct uflow *f = container_of(s, struct uflow, src_data);

				if (!f->dead)
					uflow_answers(&l, f, evs[i].events);
				break;
			}
			}
		}
		bury(&l);
		dp_sessions_flush(&l.ses);
		check_deadlines(&l);
		if (l.held)
			pub_retry_held(&l);
		uflows_expire(&l);
		bury(&l);
	}
	shutdown_all(&l);
	bury(&l);
	pthread_mutex_lock(&l.conns.lock); /* a status view reading the list is done */
	dl->priv = NULL;
	pthread_mutex_unlock(&l.conns.lock);
	close(l.epfd);
	return NULL;
}
