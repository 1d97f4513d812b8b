// SPDX-License-Identifier: MIT
/*
 * dataplane/dpdk.c - the DPDK backend of the proxy stack: one polling loop
 * that owns a NIC queue (nic/port.c), the user-space TCP/IP stack on it
 * (stack_lwip.c) and every connection it carries. For each circuit the
 * operator routes off-host it opens an lwIP TCP connection to the
 * destination, reports the outcome into the circuit (the guest's connect()
 * returns then, with Linux's errno on failure) and relays (relay.c, the
 * code the kernel backend uses) between the connection and the circuit.
 *
 * Nothing here sleeps on a guest: each round receives a burst, lets lwIP
 * run, pumps every connection (the relays are "polled": the guests' rings
 * are looked at, their doorbells never armed, so a guest's write costs it
 * no system call), and sends what lwIP queued. The operator session and
 * the guests' hang-ups (a doorbell socket's HUP) are looked at every few
 * rounds with a zero-timeout epoll. With --idle-sleep, a loop that found
 * nothing to do for a while naps that long in the same epoll: for shared
 * machines and tests; real deployments give the loop its own core.
 *
 * lwIP calls back (connected, received, error) only from stack_poll(), and
 * the callbacks only record what happened: the relay runs after, never
 * inside lwIP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <lwip/tcp.h>
#include <lwip/udp.h>
#ifdef CIRCNET_LWIP_OWN
#include <lwip/priv/tcp_priv.h>
/* (meson checks the source's stamp against every patch; this, the first) */
#if LWIP_TCP_SACK_IN && !defined(TF_SEG_SACKED)
#error "lwIP's source lacks dataplane/lwip/patches: run scripts/lwip-source.sh"
#endif
#endif

#include <circnet/opclient.h>

#include "../nic/port.h"
#include "../operator/log.h"
#include "conn.h"
#include "dataplane.h"
#include "relay.h"
#include "stack.h"

#define RXQ_MAX	     128 /* received chains a connection holds; then lwIP keeps them */
#define EVENT_ROUNDS 64	 /* rounds between looks at the operator and at hang-ups */
#define IDLE_ROUNDS  2048
#define PUB_MAX	     DP_PUB_MAX /* published ports, per l4 */
#define SESSION_TCP  NULL	/* epoll marks: the operator sessions */
#define SESSION_UDP  ((void *)1)

/*
 * Guest -> remote without a copy into lwIP (our lwIP build only: the
 * packaged one copies in tcp_write whatever it is told). lwIP's segments
 * point into the circuit's ring, the only copy is into the mbuf, and the
 * ring is consumed as the remote acknowledges: the ring is the send
 * buffer, as a socket's is. A guest that rewrites bytes it has written
 * only garbles its own stream (checksums catch what changes in flight).
 * The ring stays mapped while lwIP may still read it: a connection freed
 * with bytes lwIP holds is aborted, never closed (conn_free).
 */
#ifdef CIRCNET_LWIP_OWN
#define ZC_TX 1
#else
#define ZC_TX 0
#endif

struct dconn {
	struct dp_conn dc;	   /* first: the relay, the books, the list (conn.h) */
	struct tcp_pcb *pcb;	   /* NULL once lwIP let go of it (error) or we did */
	struct udp_pcb *upcb;	   /* a UDP flow's instead (r.dgram) */
	uint64_t udp_dropped;	   /* datagrams that found the queue full */
	struct pbuf *rxq[RXQ_MAX]; /* received chains, oldest first, not in the circuit yet */
	unsigned int rxq_head, rxq_len;
	uint16_t rx_off; /* consumed bytes of the oldest chain */
	bool rx_fin;	 /* the remote's FIN, after what is in rxq */
	bool connected;
	int host_err; /* lwIP ended the connection: the errno for the guest */
	int64_t deadline_ms;
	size_t zc_handed;	/* ZC_TX: ring bytes lwIP holds (from the consumer index) */
	size_t zc_acked;	/* ZC_TX: of those, what the remote acknowledged this round */
	uint32_t una;		/* the oldest unacknowledged sequence number we last saw */
	int64_t una_since;	/* since when it has not moved, with data in flight (0: none) */
	struct dconn *map_next; /* the loop's accepted connections waiting for a guest */
	int64_t map_retry_ms, map_hold_ms; /* a full guest backlog: ask again then, until */
	/* a client of a published UDP port: its datagrams come from the port's pcb */
	struct udp_pcb *pub_upcb;
	ip_addr_t client_ip;
	u16_t client_port;
	int64_t last_ms;     /* its last datagram either way: idle flows are forgotten */
	struct dconn *hnext; /* its hash bucket */
};

/* A published port: lwIP listens on it; the operator says which guest is behind. */
struct dpub {
	struct tcp_pcb *lpcb; /* tcp */
	struct udp_pcb *upcb; /* udp: each client becomes a flow (a dconn) */
	struct cn_addr host;  /* family NONE: every address (ours) */
};

/* The published ports of one l4, and the set being received (PUBLISH pushes). */
struct dpubset {
	struct dpub pubs[PUB_MAX];
	int npubs;
	struct dp_pubset_rx next; /* the set being received */
	bool apply_pending;
};

#define FLOW_BUCKETS 1024

struct dloop {
	struct dp_loop *dl;
	struct dp_sessions ses; /* the operator's (session.c) */
	int epfd;
	struct dp_conns conns;
	unsigned int idle_rounds;
	int64_t now;		/* ms, read once a round: every timer of the round uses it */
	struct dpubset sets[2]; /* [0] tcp, [1] udp */
	struct dconn *flows[FLOW_BUCKETS]; /* published UDP ports' clients */
	struct dconn *to_map;		   /* accepted, waiting for cn_op_connect to a guest */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What lwIP's error means to a guest, in Linux's words. */
static int lwip_errno(err_t err, bool connecting)
{
	switch (err) {
	case ERR_RST:
		return connecting ? ECONNREFUSED : ECONNRESET;
	case ERR_ABRT: /* lwIP gave up: SYN or data retransmissions ran out */
	case ERR_TIMEOUT:
		return ETIMEDOUT;
	case ERR_RTE:
		return ENETUNREACH;
	case ERR_MEM:
	case ERR_BUF:
		return ENOBUFS;
	case ERR_CLSD:
		return EPIPE;
	default:
		return ECONNABORTED;
	}
}

/*
 * Retransmission timeouts (our lwIP build, whose ticks are real: 20 ms).
 * lwIP starts every connection at an RTO of 3 s and an RTT variance of
 * 3 s, which its one sample per round trip takes a dozen round trips to
 * wear down: an early loss stalls a connection for seconds. We start as
 * RFC 6298 and Linux do instead: 1 s for the SYN, and once the handshake
 * is done, a variance of at most 200 ms (Linux's minimum RTO).
 */
#ifdef CIRCNET_LWIP_OWN
#define RTO_TICK_MS (2 * TCP_TMR_INTERVAL)
static void rto_syn(struct tcp_pcb *pcb)
{
	pcb->rto = 1000 / RTO_TICK_MS;
}

static void rto_established(struct tcp_pcb *pcb)
{
	if (pcb->sv > 200 / RTO_TICK_MS)
		pcb->sv = 200 / RTO_TICK_MS;
	pcb->rto = (s16_t)((pcb->sa >> 3) + pcb->sv);
}
#else
static void rto_syn(struct tcp_pcb *pcb)
{
	(void)pcb; /* the packaged build's ticks are --tcp-tick's: its start is 6 of them */
}

static void rto_established(struct tcp_pcb *pcb)
{
	(void)pcb;
}
#endif

/* ---- lwIP's callbacks: record, never relay ---- */

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct dconn *c = arg;

	if (err == ERR_OK) {
		c->connected = true;
		rto_established(pcb);
	}
	return ERR_OK;
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct dconn *c = arg;

	(void)pcb;
	(void)err;
	if (!p) {
		c->rx_fin = true;
		return ERR_OK;
	}
	if (c->rxq_len == RXQ_MAX)
		return ERR_MEM; /* lwIP keeps it and offers it again */
	c->rxq[(c->rxq_head + c->rxq_len++) % RXQ_MAX] = p;
	return ERR_OK;
}

static void on_err(void *arg, err_t err)
{
	struct dconn *c = arg;

	c->pcb = NULL; /* lwIP freed it */
	/*
	 * The SYN-ACK, a reply and the RST can all come in one burst, before
	 * the loop tells the guest its connect is done: that is a connection
	 * established then reset (read the reply, then ECONNRESET), not a
	 * refused one.
	 */
	c->host_err = lwip_errno(err, c->dc.connecting && !c->connected);
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct dconn *c = arg;

	(void)pcb;
	c->zc_acked += len;
	return ERR_OK;
}

/* What every TCP connection of ours hears from lwIP, outbound or accepted. */
static void pcb_attach(struct dconn *c, struct tcp_pcb *pcb)
{
	tcp_arg(pcb, c);
	tcp_recv(pcb, on_recv);
	tcp_err(pcb, on_err);
	if (ZC_TX)
		tcp_sent(pcb, on_sent);
	/* bytes come in ring-sized batches already: Nagle only adds delay */
	tcp_nagle_disable(pcb);
}

static void pcb_detach(struct tcp_pcb *pcb)
{
	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_err(pcb, NULL);
	tcp_sent(pcb, NULL);
}

/* ---- the host side of the relay: an lwIP TCP connection ---- */

static void rxq_drop_head(struct dconn *c)
{
	pbuf_free(c->rxq[c->rxq_head]);
	c->rxq_head = (c->rxq_head + 1) % RXQ_MAX;
	c->rxq_len--;
	c->rx_off = 0;
}

/* One datagram per call, cut to the room given (as recv on a UDP socket). */
static ssize_t d_recv_dgram(struct dconn *c, const struct iovec *iov)
{
	struct pbuf *p;
	u16_t n;

	if (!c->rxq_len)
		return -EAGAIN;
	p = c->rxq[c->rxq_head];
	n = iov->iov_len < p->tot_len ? (u16_t)iov->iov_len : p->tot_len;
	n = pbuf_copy_partial(p, iov->iov_base, n, 0);
	rxq_drop_head(c);
	return n;
}

static ssize_t d_recv(struct relay *r, const struct iovec *iov, int iovcnt)
{
	struct dconn *c = (struct dconn *)r;
	size_t total = 0, taken;
	int i = 0;
	size_t in_iov = 0;

	if (c->dc.r.dgram)
		return d_recv_dgram(c, iov);
	while (c->rxq_len && i < iovcnt) {
		struct pbuf *p = c->rxq[c->rxq_head];
		size_t want = iov[i].iov_len - in_iov, have = (size_t)p->tot_len - c->rx_off;
		size_t n = want < have ? want : have;

		n = pbuf_copy_partial(p, (char *)iov[i].iov_base + in_iov, (u16_t)n, c->rx_off);
		total += n;
		in_iov += n;
		c->rx_off = (uint16_t)(c->rx_off + n);
		if (c->rx_off == p->tot_len)
			rxq_drop_head(c);
		if (in_iov == iov[i].iov_len) {
			i++;
			in_iov = 0;
		}
	}
	/* what left our queue opens the window again (tcp_recved takes 16 bits) */
	for (taken = total; taken && c->pcb;) {
		u16_t n = taken > UINT16_MAX ? UINT16_MAX : (u16_t)taken;

		tcp_recved(c->pcb, n);
		taken -= n;
	}
	if (total)
		return (ssize_t)total;
	if (c->rx_fin)
		return 0;
	return c->host_err ? -c->host_err : -EAGAIN;
}

/* One record, one datagram (lwIP fragments what exceeds the MTU). */
static ssize_t d_send_dgram(struct dconn *c, const struct iovec *iov)
{
	struct pbuf *p;
	err_t e;

	if (iov->iov_len > 65507)
		return -EMSGSIZE;
	p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)iov->iov_len, PBUF_RAM);
	if (!p)
		return -ENOBUFS; /* lost, as on a network */
	pbuf_take(p, iov->iov_base, (u16_t)iov->iov_len);
	/* a published port's client: from the port, to it */
	e = c->pub_upcb ? udp_sendto(c->pub_upcb, p, &c->client_ip, c->client_port)
			: udp_send(c->upcb, p);
	pbuf_free(p);
	return e == ERR_OK ? (ssize_t)iov->iov_len : -ENOBUFS;
}

/*
 * ZC_TX: hand lwIP what it does not hold yet of the peeked ring (iov starts
 * at the consumer index), by reference. Nothing is "taken": the relay must
 * not consume it; zc_settle() does as the remote acknowledges.
 */
static ssize_t d_send_zc(struct dconn *c, const struct iovec *iov, int iovcnt)
{
	size_t skip = c->zc_handed, total = 0;
	int i;

	for (i = 0; i < iovcnt; i++) {
		const char *base = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		base += skip;
		len -= skip;
		skip = 0;
		while (len) {
			size_t n = tcp_sndbuf(c->pcb);
			u8_t flags = 0;

			if (n > len)
				n = len;
			if (n > UINT16_MAX)
				n = UINT16_MAX;
			if (!n)
				goto out;
			if (n < len || i + 1 < iovcnt)
				flags |= TCP_WRITE_FLAG_MORE;
			if (tcp_write(c->pcb, base, (u16_t)n, flags) != ERR_OK)
				goto out; /* the segment queue is full: the rest waits */
			base += n;
			len -= n;
			total += n;
		}
	}
out:
	if (total) {
		c->zc_handed += total;
		tcp_output(c->pcb);
	}
	return -EAGAIN;
}

/* ZC_TX: release what the remote acknowledged; how many bytes. */
static size_t zc_settle(struct dconn *c)
{
	size_t n = c->zc_acked < c->zc_handed ? c->zc_acked : c->zc_handed;

	c->zc_acked = 0; /* beyond what we handed: a FIN's sequence number */
	if (!n)
		return 0;
	cn_consume(&c->dc.r.ep.ep, n);
	c->zc_handed -= n;
	c->dc.r.st.to_host += n;
	return n;
}

static ssize_t d_send(struct relay *r, const struct iovec *iov, int iovcnt)
{
	struct dconn *c = (struct dconn *)r;
	size_t total = 0;
	int i;

	if (c->dc.r.dgram)
		return d_send_dgram(c, iov);
	if (c->host_err)
		return -c->host_err;
	if (!c->pcb)
		return -EPIPE;
	if (ZC_TX)
		return d_send_zc(c, iov, iovcnt);
	for (i = 0; i < iovcnt; i++) {
		size_t off = 0;

		while (off < iov[i].iov_len) {
			size_t room = tcp_sndbuf(c->pcb);
			size_t n = iov[i].iov_len - off;
			u8_t flags = TCP_WRITE_FLAG_COPY;

			if (n > room)
				n = room;
			if (n > UINT16_MAX)
				n = UINT16_MAX;
			if (!n)
				goto out;
			if (off + n < iov[i].iov_len || i + 1 < iovcnt)
				flags |= TCP_WRITE_FLAG_MORE;
			if (tcp_write(c->pcb, (const char *)iov[i].iov_base + off, (u16_t)n,
				      flags) != ERR_OK)
				goto out; /* the segment queue is full: the rest waits */
			off += n;
			total += n;
		}
	}
out:
	if (!total)
		return -EAGAIN;
	tcp_output(c->pcb);
	return (ssize_t)total;
}

static void d_shutdown_wr(struct relay *r)
{
	struct dconn *c = (struct dconn *)r;

	if (c->pcb) {
		tcp_shutdown(c->pcb, 0, 1);
		tcp_output(c->pcb);
	}
}

static void d_abort(struct relay *r)
{
	struct dconn *c = (struct dconn *)r;

	if (c->pcb) {
		pcb_detach(c->pcb);
		tcp_abort(c->pcb); /* RST to the remote */
		c->pcb = NULL;
	}
}

static const struct relay_host_ops dpdk_ops = {
	.recv = d_recv,
	.send = d_send,
	.shutdown_wr = d_shutdown_wr,
	.abort = d_abort,
};

/* ---- connections ---- */

static struct dconn **flow_bucket(struct dloop *l, const struct udp_pcb *pub, const ip_addr_t *ip,
				  u16_t port)
{
	uint64_t h = 1469598103934665603ull ^ (uintptr_t)pub;
	const uint32_t *w = IP_IS_V6(ip) ? ip_2_ip6(ip)->addr : &ip_2_ip4(ip)->addr;
	int i, n = IP_IS_V6(ip) ? 4 : 1;

	for (i = 0; i < n; i++)
		h = (h ^ w[i]) * 1099511628211ull;
	h = (h ^ port) * 1099511628211ull;
	return &l->flows[h % FLOW_BUCKETS];
}

static void flow_unhash(struct dloop *l, struct dconn *c)
{
	struct dconn **pp;

	for (pp = flow_bucket(l, c->pub_upcb, &c->client_ip, c->client_port); *pp;
	     pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			return;
		}
}

static void conn_free(struct dloop *l, struct dconn *c)
{
	if (c->pcb) {
		pcb_detach(c->pcb);
		/*
		 * Both FINs crossed: close; anything else ends with a reset, and
		 * so does a connection whose segments still point into the ring
		 * that is unmapped below (ZC_TX).
		 */
		if (c->zc_handed && !c->dc.r.reset)
			log_info("circuit %llu: freed with %zu bytes unacknowledged: reset",
				 (unsigned long long)c->dc.r.circuit_id, c->zc_handed);
		if (c->dc.r.reset || c->zc_handed || tcp_close(c->pcb) != ERR_OK)
			tcp_abort(c->pcb);
		c->pcb = NULL;
	}
	if (c->upcb) {
		udp_remove(c->upcb);
		c->upcb = NULL;
		if (c->udp_dropped)
			log_debug("circuit %llu: %llu datagrams found the queue full",
				  (unsigned long long)c->dc.r.circuit_id,
				  (unsigned long long)c->udp_dropped);
	}
	if (c->pub_upcb)
		flow_unhash(l, c);
	while (c->rxq_len)
		rxq_drop_head(c);
	if (c->dc.has_circuit) {
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->dc.r.ep.notif[0].fd, NULL);
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->dc.r.ep.notif[1].fd, NULL);
	}
	dp_conn_release(l->dl, &l->conns, &c->dc, dp_sessions_alive(&l->ses, c->dc.op));
}

/* The connect is settled: tell the guest; a failure ends it. */
static void conn_settle(struct dloop *l, struct dconn *c, int err)
{
	dp_conn_connected(l->dl, &c->dc, err);
	if (err)
		conn_free(l, c);
}

/* Hang-ups of the guest's doorbells: the only events a polled relay takes. */
static int watch_hangups(struct dloop *l, struct dconn *c)
{
	struct epoll_event e = { .events = 0, .data.ptr = c };
	int i;

	for (i = 0; i < 2; i++)
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->dc.r.ep.notif[i].fd, &e))
			return errno;
	return 0;
}

/* A destination in lwIP's terms; false for a family the stack does not speak. */
static bool addr_to_lwip(const struct cn_addr *a, ip_addr_t *ip)
{
	uint32_t v4;

	memset(ip, 0, sizeof(*ip));
	if (a->family == CN_AF_INET) {
		memcpy(&v4, a->addr, 4);
		ip_addr_set_ip4_u32_val(*ip, v4);
		return true;
	}
	if (a->family == CN_AF_INET6) {
		IP_SET_TYPE_VAL(*ip, IPADDR_TYPE_V6);
		memcpy(ip_2_ip6(ip)->addr, a->addr, 16);
		ip6_addr_clear_zone(ip_2_ip6(ip));
		return true;
	}
	return false;
}

/*
 * One of several stacks (stack.h): bind a local port whose replies the
 * port's RSS gives to our queue, from our own address (the tuple must be
 * known before the SYN leaves). The only stack lets lwIP pick.
 */
static bool bind_for_queue(struct dconn *c, const struct dp_config *cfg, const ip_addr_t *dst)
{
	uint8_t remote[16] = { 0 }, local[16] = { 0 };
	bool v6 = IP_IS_V6(dst);
	ip_addr_t src;
	int tries;

	if (v6) {
		if (!cfg->dpdk_has_ip6)
			return true; /* no global address: lwIP picks a link-local one */
		memcpy(remote, ip_2_ip6(dst)->addr, 16);
		memcpy(local, cfg->dpdk_ip6, 16);
		IP_ADDR6(&src, 0, 0, 0, 0);
		memcpy(ip_2_ip6(&src)->addr, local, 16);
		ip6_addr_clear_zone(ip_2_ip6(&src));
	} else {
		uint32_t r = ip4_addr_get_u32(ip_2_ip4(dst));

		memcpy(remote, &r, 4);
		memcpy(local, &cfg->dpdk_ip, 4);
		ip_addr_set_ip4_u32_val(src, cfg->dpdk_ip);
	}
	for (tries = 0; tries < 64; tries++) {
		uint16_t port = stack_pick_port(v6, remote, c->dc.conn.local.port, local);

		if (!port)
			return tries == 0; /* the only stack, or no port of ours left */
		if (tcp_bind(c->pcb, &src, port) == ERR_OK)
			return true;
	}
	return false;
}

static int pcb_open(struct dconn *c, const struct dp_config *cfg)
{
	const struct cn_addr *dst = &c->dc.conn.local;
	ip_addr_t ip;
	err_t e;

	if (!addr_to_lwip(dst, &ip))
		return ENETUNREACH;
	c->pcb = tcp_new_ip_type(IP_GET_TYPE(&ip));
	if (!c->pcb)
		return ENOBUFS;
	if (!bind_for_queue(c, cfg, &ip)) {
		tcp_abort(c->pcb);
		c->pcb = NULL;
		return EADDRNOTAVAIL;
	}
	pcb_attach(c, c->pcb);
	rto_syn(c->pcb);
	e = tcp_connect(c->pcb, &ip, dst->port, on_connected);
	if (e != ERR_OK) {
		pcb_detach(c->pcb);
		tcp_abort(c->pcb);
		c->pcb = NULL;
		return lwip_errno(e, true);
	}
	return 0;
}

static void on_udp_recv(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr,
			u16_t port)
{
	struct dconn *c = arg;

	(void)pcb;
	(void)addr;
	(void)port; /* connected: lwIP passes only the destination's datagrams */
	if (c->rxq_len == RXQ_MAX) {
		c->udp_dropped++; /* a full socket buffer drops too */
		pbuf_free(p);
		return;
	}
	c->rxq[(c->rxq_head + c->rxq_len++) % RXQ_MAX] = p;
}

/* A UDP flow: a connected lwIP pcb; datagrams from that peer only. */
static int udp_open(struct dconn *c)
{
	const struct cn_addr *dst = &c->dc.conn.local;
	ip_addr_t ip;

	if (!addr_to_lwip(dst, &ip))
		return ENETUNREACH;
	c->upcb = udp_new_ip_type(IP_GET_TYPE(&ip));
	if (!c->upcb)
		return ENOBUFS;
	if (udp_connect(c->upcb, &ip, dst->port) != ERR_OK) {
		udp_remove(c->upcb);
		c->upcb = NULL;
		return ENETUNREACH;
	}
	udp_recv(c->upcb, on_udp_recv, c);
	return 0;
}

/* A circuit the operator routed off-host: connect to its destination. */
static void conn_start(struct dloop *l, struct dconn *c)
{
	int err;

	c->dc.r.circuit_id = c->dc.conn.circuit_id;
	c->dc.r.ops = &dpdk_ops;
	c->dc.r.polled = true;
	c->dc.r.dgram = c->dc.conn.l4 == CN_L4_UDP;
	c->dc.has_circuit = true;
	c->dc.connecting = !c->dc.r.dgram;
	if (l->dl->cfg->connect_timeout_ms)
		c->deadline_ms = l->now + l->dl->cfg->connect_timeout_ms;
	dp_conn_track(l->dl, &l->conns, &c->dc);
	err = watch_hangups(l, c);
	if (!err)
		err = c->dc.r.dgram ? udp_open(c) : pcb_open(c, l->dl->cfg);
	if (!c->dc.r.dgram) {
		if (err)
			conn_settle(l, c, err);
		return; /* else it settles when lwIP says */
	}
	/* a UDP flow has no connect: it is up at once, as in the kernel backend */
	if (!err) {
		atomic_fetch_add(&l->dl->cnt.connected, 1);
		return;
	}
	relay_host_failed(&c->dc.r, err);
	atomic_fetch_add(&l->dl->cnt.failed, 1);
	conn_free(l, c);
}

/*
 * --user-timeout, as Linux's TCP_USER_TIMEOUT: data in flight and no
 * acknowledgement for that long ends the connection; the guest reads
 * ETIMEDOUT. Checked every round from the pcb's own fields.
 */
static bool user_timed_out(struct dloop *l, struct dconn *c)
{
	int limit = l->dl->cfg->user_timeout_ms;

	if (!limit || !c->pcb)
		return false;
	if (!c->pcb->unacked && !c->pcb->unsent) {
		c->una_since = 0;
		return false;
	}
	if (!c->una_since || c->pcb->lastack != c->una) {
		c->una = c->pcb->lastack;
		c->una_since = l->now;
		return false;
	}
	return l->now - c->una_since >= limit;
}

/* One connection's turn in a round. Returns the bytes it moved. */
static uint64_t conn_service(struct dloop *l, struct dconn *c)
{
	uint64_t before = c->dc.r.st.to_guest + c->dc.r.st.to_host, moved;

	if (c->dc.accepting)
		return 0;
	if (c->pub_upcb && l->now - c->last_ms > l->dl->cfg->udp_idle_ms) {
		conn_free(l, c); /* a published UDP port's client gone quiet: forgotten */
		return 1;
	}
	if (c->dc.connecting) {
		if (c->connected) /* a reset after it stays for d_recv */
			conn_settle(l, c, 0);
		else if (c->host_err)
			conn_settle(l, c, c->host_err);
		else if (c->deadline_ms && l->now >= c->deadline_ms)
			conn_settle(l, c, ETIMEDOUT);
		if (c->dc.connecting || c->dc.dead)
			return 0;
	}
	if (ZC_TX && c->zc_acked)
		zc_settle(c);
	if (user_timed_out(l, c)) {
		log_info("circuit %llu: nothing acknowledged for %d ms (--user-timeout): reset, "
			 "the guest reads ETIMEDOUT",
			 (unsigned long long)c->dc.r.circuit_id, l->dl->cfg->user_timeout_ms);
		relay_host_failed(&c->dc.r, ETIMEDOUT);
		d_abort(&c->dc.r);
		conn_free(l, c);
		return 1;
	}
	if (relay_pump(&c->dc.r) & RELAY_DONE) {
		conn_free(l, c);
		return 1;
	}
	moved = c->dc.r.st.to_guest + c->dc.r.st.to_host - before;
	if (moved && c->pub_upcb)
		c->last_ms = l->now; /* a published UDP port's client: not idle */
	return moved;
}

/* ---- published ports: lwIP listens, the operator maps each connection to a guest ---- */

static void addr_from_lwip(struct cn_addr *a, const ip_addr_t *ip, u16_t port)
{
	uint32_t v4;

	memset(a, 0, sizeof(*a));
	a->port = port;
	if (IP_IS_V6(ip)) {
		a->family = CN_AF_INET6;
		memcpy(a->addr, ip_2_ip6(ip)->addr, 16);
		return;
	}
	v4 = ip4_addr_get_u32(ip_2_ip4(ip));
	a->family = CN_AF_INET;
	memcpy(a->addr, &v4, 4);
}

/* lwIP completed a handshake on a published port: keep it, map it next round. */
static err_t on_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	struct dloop *l = arg;
	struct dconn *c;

	if (err != ERR_OK || !newpcb)
		return ERR_VAL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		tcp_abort(newpcb);
		return ERR_ABRT;
	}
	c->dc.op = &l->ses.op;
	c->pcb = newpcb;
	c->dc.accepting = true;
	addr_from_lwip(&c->dc.conn.remote, &newpcb->remote_ip, newpcb->remote_port);
	addr_from_lwip(&c->dc.conn.local, &newpcb->local_ip, newpcb->local_port);
	pcb_attach(c, newpcb);
	rto_established(newpcb);
	dp_conn_track(l->dl, &l->conns, &c->dc);
	c->map_next = l->to_map;
	l->to_map = c;
	return ERR_OK;
}

/*
 * Ask the operator for the guest behind each accepted connection. One whose
 * guest's backlog is full stays on the list and is asked about again every
 * DP_PUB_RETRY_MS, for DP_PUB_HOLD_MS (conn.h).
 */
static void map_accepted(struct dloop *l)
{
	struct dconn *held = NULL;

	while (l->to_map) {
		struct dconn *c = l->to_map;
		int err;

		l->to_map = c->map_next;
		if (c->host_err) { /* the client gave up before we asked */
			c->dc.accepting = false;
			conn_free(l, c);
			continue;
		}
		if (c->map_retry_ms && l->now < c->map_retry_ms) {
			c->map_next = held; /* not due yet */
			held = c;
			continue;
		}
		err = l->ses.attached
			      ? cn_op_connect_flags(&l->ses.op, CN_L4_TCP, &c->dc.conn.remote,
						    &c->dc.conn.local, CN_CONNECT_PUBLISHED,
						    &c->dc.r.ep, &c->dc.conn)
			      : -ECONNREFUSED;
		if (dp_pub_hold(err, l->now, &c->map_hold_ms, &c->map_retry_ms)) {
			c->map_next = held;
			held = c;
			continue;
		}
		c->dc.accepting = false;
		if (!err) {
			c->dc.has_circuit = true;
			err = -watch_hangups(l, c);
		}
		if (err) {
			/* nobody listens behind it: as a closed port, a reset */
			c->dc.r.reset = true;
			conn_free(l, c);
			continue;
		}
		c->dc.r.circuit_id = c->dc.conn.circuit_id;
		c->dc.r.ops = &dpdk_ops;
		c->dc.r.polled = true;
		atomic_fetch_add(&l->dl->cnt.connected, 1);
	}
	l->to_map = held;
}

/* ---- clients of published UDP ports: a flow each, relayed like any circuit ---- */

static struct dpub *upub_of(struct dloop *l, const struct udp_pcb *pcb)
{
	int i;

	for (i = 0; i < l->sets[1].npubs; i++)
		if (l->sets[1].pubs[i].upcb == pcb)
			return &l->sets[1].pubs[i];
	return NULL;
}

/* A new client: a datagram circuit to the guest's socket behind the port. */
static struct dconn *flow_new(struct dloop *l, struct udp_pcb *pcb, const ip_addr_t *ip, u16_t port)
{
	struct dpub *p = upub_of(l, pcb);
	struct cn_addr client, dst;
	struct dconn *c, **pp;

	if (!p || !l->ses.udp_attached || !(c = calloc(1, sizeof(*c))))
		return NULL;
	addr_from_lwip(&client, ip, port);
	dst = p->host;
	if (!dst.family)
		dst.family = client.family; /* the publish matches on the port */
	if (cn_op_connect_flags(&l->ses.op_udp, CN_L4_UDP, &client, &dst, CN_CONNECT_PUBLISHED,
				&c->dc.r.ep, &c->dc.conn)) {
		free(c);
		return NULL; /* no guest socket behind it: the datagram is lost */
	}
	c->pub_upcb = pcb;
	c->client_ip = *ip;
	c->client_port = port;
	c->dc.op = &l->ses.op_udp;
	c->dc.has_circuit = true;
	c->dc.r.circuit_id = c->dc.conn.circuit_id;
	c->dc.r.ops = &dpdk_ops;
	c->dc.r.polled = true;
	c->dc.r.dgram = true;
	dp_conn_track(l->dl, &l->conns, &c->dc);
	atomic_fetch_add(&l->dl->cnt.connected, 1);
	pp = flow_bucket(l, pcb, ip, port);
	c->hnext = *pp;
	*pp = c;
	if (watch_hangups(l, c)) {
		conn_free(l, c);
		return NULL;
	}
	return c;
}

/* A datagram at a published UDP port: to its client's flow (made on the first). */
static void on_pub_datagram(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr,
			    u16_t port)
{
	struct dloop *l = arg;
	struct dconn *c;

	for (c = *flow_bucket(l, pcb, addr, port); c; c = c->hnext)
		if (c->pub_upcb == pcb && c->client_port == port &&
		    ip_addr_cmp(&c->client_ip, addr) && !c->dc.dead)
			break;
	if (!c)
		c = flow_new(l, pcb, addr, port);
	if (!c) {
		pbuf_free(p);
		return;
	}
	c->last_ms = l->now;
	on_udp_recv(c, pcb, p, addr, port);
}

static int pub_listen(struct dloop *l, unsigned int l4, struct dpub *p)
{
	static const uint8_t any6[16];
	const struct dp_config *cfg = l->dl->cfg;
	struct tcp_pcb *pcb;
	/* every address: both families on one pcb; a given one: its family's */
	ip_addr_t ip = *IP_ANY_TYPE;
	u8_t type = IPADDR_TYPE_ANY;

	if (p->host.family == CN_AF_INET) {
		uint32_t a;

		memcpy(&a, p->host.addr, 4);
		if (a && a != cfg->dpdk_ip)
			return -EADDRNOTAVAIL; /* another host's address: not ours to serve */
		ip = *IP4_ADDR_ANY;
		type = IPADDR_TYPE_V4;
	} else if (p->host.family == CN_AF_INET6) {
		if (memcmp(p->host.addr, any6, 16) &&
		    (!cfg->dpdk_has_ip6 || memcmp(p->host.addr, cfg->dpdk_ip6, 16)))
			return -EADDRNOTAVAIL;
		ip = *IP6_ADDR_ANY;
		type = IPADDR_TYPE_V6;
	}
	if (l4 == CN_L4_UDP) {
		p->upcb = udp_new_ip_type(type);
		if (!p->upcb)
			return -ENOMEM;
		if (udp_bind(p->upcb, &ip, p->host.port) != ERR_OK) {
			udp_remove(p->upcb);
			return -EADDRINUSE;
		}
		udp_recv(p->upcb, on_pub_datagram, l);
		return 0;
	}
	pcb = tcp_new_ip_type(type);
	if (!pcb)
		return -ENOMEM;
	if (tcp_bind(pcb, &ip, p->host.port) != ERR_OK) {
		tcp_close(pcb);
		return -EADDRINUSE;
	}
	p->lpcb = tcp_listen_with_backlog(pcb, TCP_DEFAULT_LISTEN_BACKLOG);
	if (!p->lpcb) {
		tcp_close(pcb);
		return -ENOMEM;
	}
	tcp_arg(p->lpcb, l);
	tcp_accept(p->lpcb, on_accept);
	return 0;
}

static const char *l4name(unsigned int l4)
{
	return l4 == CN_L4_UDP ? "udp" : "tcp";
}

static void pub_close(struct dloop *l, struct dpub *p)
{
	if (p->lpcb) {
		tcp_arg(p->lpcb, NULL);
		tcp_close(p->lpcb);
	}
	if (p->upcb) {
		struct dp_conn *d, *next;

		/* the clients of a withdrawn port go with it */
		for (d = l->conns.head; d; d = next) {
			next = d->next;
			if (((struct dconn *)d)->pub_upcb == p->upcb)
				conn_free(l, (struct dconn *)d);
		}
		udp_remove(p->upcb);
	}
}

/* A complete set arrived: stop listening on what is gone, listen on what is new. */
static void pub_apply(struct dloop *l, unsigned int l4)
{
	struct dpubset *ps = &l->sets[l4 == CN_L4_UDP];
	struct dpub keep[PUB_MAX];
	int i, j, n = 0, err;
	char a[64];

	for (i = 0; i < ps->npubs; i++) {
		for (j = 0; j < ps->next.n; j++)
			if (dp_same_host(&ps->pubs[i].host, &ps->next.host[j]))
				break;
		if (j < ps->next.n) {
			keep[n++] = ps->pubs[i];
			continue;
		}
		pub_close(l, &ps->pubs[i]);
		cn_addr_format(&ps->pubs[i].host, a, sizeof(a));
		log_info("withdrawn %s %s", l4name(l4), a);
	}
	for (j = 0; j < ps->next.n && n < PUB_MAX; j++) {
		for (i = 0; i < n; i++)
			if (dp_same_host(&keep[i].host, &ps->next.host[j]))
				break;
		if (i < n)
			continue;
		memset(&keep[n], 0, sizeof(keep[n]));
		keep[n].host = ps->next.host[j];
		err = pub_listen(l, l4, &keep[n]);
		cn_addr_format(&ps->next.host[j], a, sizeof(a));
		if (err) {
			log_err("cannot listen on published %s %s: %s", l4name(l4), a,
				strerror(-err));
			continue;
		}
		log_info("published %s %s", l4name(l4), a);
		n++;
	}
	memcpy(ps->pubs, keep, sizeof(keep[0]) * (size_t)n);
	ps->npubs = n;
}

/* Pushed by the operator, also in the middle of a call: only recorded here. */
static void on_publish(void *arg, const struct cn_msg_publish *m)
{
	struct dloop *l = arg;
	struct dpubset *ps = &l->sets[m->l4 == CN_L4_UDP];

	if (dp_publish_collect(&ps->next, m))
		ps->apply_pending = true;
}

static void start_conn(void *arg, struct dp_conn *c)
{
	conn_start(arg, (struct dconn *)c);
}

static void session_event(struct dloop *l, struct cn_op *op)
{
	int err = dp_session_take(op, sizeof(struct dconn), start_conn, l);

	if (err)
		dp_sessions_detach(l->dl, &l->ses, l->epfd, strerror(-err));
}

/*
 * The sessions and the hang-ups; waits up to timeout_ns for them. Returns
 * how many session events came: while they come (a burst of connects),
 * the loop looks every round, not every EVENT_ROUNDS.
 */
static int events(struct dloop *l, long timeout_ns)
{
	struct epoll_event evs[64];
	struct timespec ts = { .tv_sec = 0, .tv_nsec = timeout_ns };
	int i, n, sessions = 0;

	n = epoll_pwait2(l->epfd, evs, 64, &ts, NULL);
	for (i = 0; i < n; i++) {
		struct dconn *c = evs[i].data.ptr;

		if ((void *)c == SESSION_TCP || (void *)c == SESSION_UDP) {
			sessions++;
			if (evs[i].events & (EPOLLHUP | EPOLLERR) && !(evs[i].events & EPOLLIN))
				dp_sessions_detach(l->dl, &l->ses, l->epfd, "hang-up");
			else if (l->ses.attached)
				session_event(l, (void *)c == SESSION_UDP ? &l->ses.op_udp
									  : &l->ses.op);
			continue;
		}
		if (c->dc.dead)
			continue;
		/* the guest died: its end reads as EOF or a reset, as the relay decides */
		cn_ep_peer_vanished(&c->dc.r.ep.ep);
		if (c->dc.connecting) {
			d_abort(&c->dc.r);
			c->dc.r.reset = true;
			conn_free(l, c);
		}
	}
	dp_sessions_flush(&l->ses);
	return sessions;
}

/* ---- the loop ---- */

static void shutdown_all(struct dloop *l)
{
	while (l->conns.head) {
		struct dconn *c = (struct dconn *)l->conns.head;

		dp_conn_host_down(&c->dc);
		conn_free(l, c);
	}
	l->sets[0].next.n = l->sets[1].next.n = 0;
	pub_apply(l, CN_L4_TCP); /* closes every published port */
	pub_apply(l, CN_L4_UDP);
	stack_flush(); /* the resets */
	dp_sessions_close(&l->ses, l->epfd);
}

size_t dpdk_loop_conns(struct dp_loop *dl, char *buf, size_t len)
{
	struct dloop *l = dl->priv;

	return l ? dp_conns_format(dl, &l->conns, buf, len) : 0;
}

void *dpdk_loop_main(void *arg)
{
	struct dp_loop *dl = arg;
	struct dloop l = {
		.dl = dl,
		.epfd = -1,
		.ses = { .tcp_tag = SESSION_TCP, .udp_tag = SESSION_UDP, .tcp_only = dl->index > 0 }
	};
	const struct dp_config *cfg = dl->cfg;
	unsigned int round = 0, i;
	bool hot = false; /* session events came at the last look */

	dp_conns_init(&l.conns);
	{
		sigset_t io; /* main.c blocked it everywhere: this thread takes it (cheap, awake) */

		sigemptyset(&io);
		sigaddset(&io, SIGIO);
		pthread_sigmask(SIG_UNBLOCK, &io, NULL);
	}
	l.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l.epfd < 0) {
		log_err("loop %d: epoll_create1: %s", dl->index, strerror(errno));
		atomic_store(&dp_stop, true);
		return NULL;
	}
	dl->priv = &l;
	while (!atomic_load(&dp_stop)) {
		uint64_t work;
		struct dp_conn *c, *next;

		l.now = now_ms();
		work = stack_poll();
		if (l.to_map) {
			map_accepted(&l);
			work++;
		}
		for (i = 0; i < 2; i++)
			if (l.sets[i].apply_pending) {
				l.sets[i].apply_pending = false;
				pub_apply(&l, i ? CN_L4_UDP : CN_L4_TCP);
			}
		for (c = l.conns.head; c; c = next) {
			next = c->next; /* a release leaves it valid */
			work += conn_service(&l, (struct dconn *)c);
		}
		work += stack_flush();
		if (work)
			l.idle_rounds = 0;
		else
			l.idle_rounds++;
		if (cfg->idle_sleep_us && l.idle_rounds >= IDLE_ROUNDS)
			hot = events(&l, cfg->idle_sleep_us * 1000L) > 0;
		else if (hot || ++round % EVENT_ROUNDS == 0)
			hot = events(&l, 0) > 0;
		if (dp_sessions_due(&l.ses))
			dp_sessions_attach(dl, &l.ses, l.epfd, on_publish, &l);
		dp_conns_bury(&l.conns);
	}
	shutdown_all(&l);
	dp_conns_bury(&l.conns);
	pthread_mutex_lock(&l.conns.lock);
	dl->priv = NULL;
	pthread_mutex_unlock(&l.conns.lock);
	close(l.epfd);
	return NULL;
}
