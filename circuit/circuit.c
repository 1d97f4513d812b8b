// SPDX-License-Identifier: MIT
/*
 * circuit/circuit.c - circuit setup (format, attach, parameters) and the
 * connection state machine of an endpoint: readiness, shutdown, reset,
 * close. The data path lives in ring.c, stream.c, dgram.c and copy.c.
 */
#include <sys/socket.h>

#include "internal.h"

static bool ring_size_ok(uint64_t s)
{
	return s >= CN_RING_MIN && s <= CN_RING_MAX && (s & (s - 1)) == 0;
}

static uint32_t effective_size(uint32_t s)
{
	return s ? s : CN_RING_DEFAULT;
}

size_t cn_circuit_size(const struct cn_circuit_params *p)
{
	uint32_t a, b;

	if (!p || (p->mode != CN_MODE_STREAM && p->mode != CN_MODE_DGRAM))
		return 0;
	a = effective_size(p->ring_size[CN_RING_A]);
	b = effective_size(p->ring_size[CN_RING_B]);
	if (!ring_size_ok(a) || !ring_size_ok(b))
		return 0;
	return (size_t)CN_DATA_OFF + a + b;
}

int cn_circuit_format(void *base, size_t size, const struct cn_circuit_params *p)
{
	size_t total = cn_circuit_size(p);

	if (!base || !total || size < total)
		return -EINVAL;
	return cn_circuit_format_head(base, CN_DATA_OFF, p);
}

int cn_circuit_format_head(void *base, size_t buflen, const struct cn_circuit_params *p)
{
	size_t total = cn_circuit_size(p);
	struct cn_layout_hdr h = { 0 };
	uint64_t a, b;

	if (!base || !total || buflen < CN_DATA_OFF)
		return -EINVAL;
	a = effective_size(p->ring_size[CN_RING_A]);
	b = effective_size(p->ring_size[CN_RING_B]);
	h.magic = CN_LAYOUT_MAGIC;
	h.version = CN_LAYOUT_VERSION;
	h.mode = (uint16_t)p->mode;
	h.hdr_size = sizeof(h);
	h.total_size = total;
	h.ring[CN_RING_A] = (struct cn_layout_ring){ CN_CTRL_OFF(0), CN_DATA_OFF, a };
	h.ring[CN_RING_B] = (struct cn_layout_ring){ CN_CTRL_OFF(1), CN_DATA_OFF + a, b };
	h.stamp = p->stamp;
	/*
	 * Only the control page is cleared: ring data is never read before the
	 * peer produced it, and fresh memfd pages are zero anyway.
	 */
	memset(base, 0, CN_DATA_OFF);
	memcpy(base, &h, sizeof(h));
	if (p->pending) {
		struct cn_layout_ctrl *ctrl_b = (void *)((char *)base + CN_CTRL_OFF(CN_RING_B));

		atomic_store_explicit(&ctrl_b->prod_status, CN_STATUS_PENDING, memory_order_relaxed);
	}
	return 0;
}

/* The header must describe exactly the canonical layout for its ring sizes. */
static bool header_ok(const struct cn_layout_hdr *h, size_t size)
{
	struct cn_circuit_params p = { 0 };

	if (h->magic != CN_LAYOUT_MAGIC || h->version != CN_LAYOUT_VERSION ||
	    h->hdr_size != sizeof(*h) || h->reserved != 0)
		return false;
	if (h->ring[0].size > CN_RING_MAX || h->ring[1].size > CN_RING_MAX)
		return false;
	p.mode = (enum cn_mode)h->mode;
	p.ring_size[0] = (uint32_t)h->ring[0].size;
	p.ring_size[1] = (uint32_t)h->ring[1].size;
	if (!p.ring_size[0] || !p.ring_size[1] || cn_circuit_size(&p) != h->total_size)
		return false;
	if (h->total_size > size)
		return false;
	return h->ring[0].ctrl_off == CN_CTRL_OFF(0) && h->ring[1].ctrl_off == CN_CTRL_OFF(1) &&
	       h->ring[0].data_off == CN_DATA_OFF &&
	       h->ring[1].data_off == CN_DATA_OFF + h->ring[0].size;
}

/* Adopt whatever indices the region holds (fresh: zeros; after exec: live). */
static int view_init(struct cn_ring_view *v, unsigned char *base, const struct cn_layout_ring *lr,
		     bool producer, enum cn_mode mode)
{
	uint64_t prod, cons;

	v->ctrl = (struct cn_layout_ctrl *)(base + lr->ctrl_off);
	v->data = base + lr->data_off;
	v->size = lr->size;
	v->mask = lr->size - 1;
	prod = atomic_load_explicit(&v->ctrl->prod, memory_order_seq_cst);
	cons = atomic_load_explicit(&v->ctrl->cons, memory_order_seq_cst);
	if (prod - cons > v->size)
		return -EPROTO;
	if (mode == CN_MODE_DGRAM && ((prod | cons) & (CN_REC_ALIGN - 1)))
		return -EPROTO;
	v->idx = producer ? prod : cons;
	v->peer = producer ? cons : prod;
	return 0;
}

int cn_ep_attach(struct cn_endpoint *ep, void *base, size_t size, enum cn_role role)
{
	return cn_ep_attach_stamped(ep, base, size, role, 0);
}

int cn_ep_attach_stamped(struct cn_endpoint *ep, void *base, size_t size, enum cn_role role,
			 uint64_t stamp)
{
	struct cn_layout_hdr h;
	unsigned txr, rxr;
	uint32_t pf, cf;
	int err;

	if (!ep || !base || size < CN_DATA_OFF ||
	    (role != CN_ROLE_INITIATOR && role != CN_ROLE_ACCEPTOR))
		return -EINVAL;
	memcpy(&h, base, sizeof(h)); /* the one and only read of the header */
	if (!header_ok(&h, size) || (stamp && h.stamp != stamp))
		return -EPROTO;
	memset(ep, 0, sizeof(*ep));
	txr = role == CN_ROLE_INITIATOR ? CN_RING_A : CN_RING_B;
	rxr = txr ^ 1u;
	err = view_init(&ep->tx, base, &h.ring[txr], true, (enum cn_mode)h.mode);
	if (!err)
		err = view_init(&ep->rx, base, &h.ring[rxr], false, (enum cn_mode)h.mode);
	if (err)
		return err;
	ep->mode = (enum cn_mode)h.mode;
	ep->dgram_max =
		(uint32_t)cn_min_u64(CN_DGRAM_MAX, cn_min_u64(h.ring[0].size, h.ring[1].size) / 2 -
							   sizeof(struct cn_dgram_hdr));
	/* Re-attaching (after exec): what we already said still holds. */
	pf = atomic_load_explicit(&ep->tx.ctrl->prod_flags, memory_order_relaxed);
	cf = atomic_load_explicit(&ep->rx.ctrl->cons_flags, memory_order_relaxed);
	if (pf & CN_PF_FIN)
		cn_st_set(ep, CN_ST_WR_SHUT);
	if ((pf & CN_PF_RST) || (cf & CN_CF_RST))
		cn_st_set(ep, CN_ST_RESET);
	ep->rcv_timeout_ms = -1;
	ep->snd_timeout_ms = -1;
	return 0;
}

void cn_ep_set_notifiers(struct cn_endpoint *ep, struct cn_notifier *wait_rx,
			 struct cn_notifier *wait_tx, struct cn_notifier *sig_rx,
			 struct cn_notifier *sig_tx)
{
	ep->wait_rx = wait_rx;
	ep->wait_tx = wait_tx;
	ep->sig_rx = sig_rx;
	ep->sig_tx = sig_tx;
}

void cn_ep_set_spin(struct cn_endpoint *ep, uint32_t spin_ns)
{
	ep->spin_ns = spin_ns;
}

void cn_ep_set_timeouts(struct cn_endpoint *ep, int rcv_ms, int snd_ms)
{
	ep->rcv_timeout_ms = rcv_ms < 0 ? -1 : rcv_ms;
	ep->snd_timeout_ms = snd_ms < 0 ? -1 : snd_ms;
}

unsigned cn_poll(struct cn_endpoint *ep)
{
	const struct cn_layout_ctrl *rx = ep->rx.ctrl, *tx = ep->tx.ctrl;
	uint32_t st = cn_st(ep), pf, cf;
	uint64_t rprod, rcons, tprod, tcons;
	unsigned ev = 0;

	/* Only atomics of the region and of the endpoint: no side's cache. */
	pf = atomic_load_explicit(&rx->prod_flags, memory_order_seq_cst);
	cf = atomic_load_explicit(&tx->cons_flags, memory_order_seq_cst);
	rprod = atomic_load_explicit(&rx->prod, memory_order_seq_cst);
	rcons = atomic_load_explicit(&rx->cons, memory_order_seq_cst);
	tprod = atomic_load_explicit(&tx->prod, memory_order_seq_cst);
	tcons = atomic_load_explicit(&tx->cons, memory_order_seq_cst);
	if ((st & CN_ST_BROKEN) || (pf & ~CN_PF_KNOWN) || (cf & ~CN_CF_KNOWN) ||
	    rprod - rcons > ep->rx.size || tprod - tcons > ep->tx.size)
		return CN_POLLIN | CN_POLLOUT | CN_POLLERR | CN_POLLHUP | CN_POLLRDHUP;
	if ((st & CN_ST_RESET) || (pf & CN_PF_RST) || (cf & CN_CF_RST)) {
		ev = CN_POLLIN | CN_POLLOUT | CN_POLLHUP | CN_POLLRDHUP;
		if (!(st & CN_ST_RESET) ||
		    atomic_load_explicit(&ep->pending_err, memory_order_relaxed))
			ev |= CN_POLLERR; /* not reported yet */
		return ev;
	}
	if (rprod != rcons)
		ev |= CN_POLLIN;
	if ((pf & CN_PF_FIN) || (st & (CN_ST_RD_SHUT | CN_ST_PEER_DEAD)))
		ev |= CN_POLLIN | CN_POLLRDHUP;
	if ((st & (CN_ST_WR_SHUT | CN_ST_PEER_GONE)) || (cf & CN_CF_CLOSED) ||
	    ep->tx.size - (tprod - tcons) >= cn_tx_lowat(ep))
		ev |= CN_POLLOUT;
	/*
	 * A peer that died without closing reads as one that closed (TCP: its
	 * kernel sends the FIN): hung up only once we have shut down too.
	 */
	if (((pf & CN_PF_FIN) || (st & CN_ST_PEER_DEAD)) && (st & CN_ST_WR_SHUT))
		ev |= CN_POLLHUP;
	return ev;
}

unsigned cn_poll_arm(struct cn_endpoint *ep, unsigned events)
{
	unsigned ev = cn_poll(ep);
	bool armed = false;

	if ((events & CN_POLLIN) && !(ev & CN_POLLIN)) {
		atomic_store_explicit(&ep->rx.ctrl->reader_want, 1, memory_order_seq_cst);
		armed = true;
	}
	if ((events & CN_POLLOUT) && !(ev & CN_POLLOUT)) {
		atomic_store_explicit(&ep->tx.ctrl->writer_want, (uint32_t)cn_tx_lowat(ep),
				      memory_order_seq_cst);
		armed = true;
	}
	/* Re-check after arming: see the ordering argument in ring.c. */
	return armed ? cn_poll(ep) : ev;
}

size_t cn_readable(struct cn_endpoint *ep)
{
	struct cn_span sp[2];
	ssize_t r;

	if (ep->mode == CN_MODE_DGRAM) {
		r = cn_dgram_peek(ep, sp);
		return r > 0 ? (size_t)r : 0;
	}
	if (cn_rx_refresh(ep, true) || (cn_st(ep) & CN_ST_RESET))
		return 0;
	return cn_rx_avail(ep);
}

size_t cn_unconsumed(struct cn_endpoint *ep)
{
	/* the refresh checks the peer's consumer index before we trust it */
	if (cn_tx_refresh(ep, true))
		return 0;
	return (size_t)(ep->tx.idx - ep->tx.peer);
}

int cn_shutdown(struct cn_endpoint *ep, int how)
{
	uint32_t old;

	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (cn_st(ep) & CN_ST_BROKEN)
		return -EPROTO;
	if (how != SHUT_WR)
		cn_st_set(ep, CN_ST_RD_SHUT); /* like TCP: the peer is not told */
	if (how != SHUT_RD) {
		old = cn_st_set(ep, CN_ST_WR_SHUT);
		if (!(old & (CN_ST_WR_SHUT | CN_ST_RESET)))
			cn_send_flags(ep, CN_PF_FIN, 0);
	}
	cn_wake_local(ep);
	return 0;
}

void cn_reset(struct cn_endpoint *ep)
{
	if (!(cn_st_set(ep, CN_ST_RESET) & CN_ST_RESET)) {
		cn_send_flags(ep, CN_PF_RST, CN_CF_RST);
		cn_wake_local(ep);
	}
}

void cn_revoke(struct cn_endpoint *ep)
{
	cn_reset(ep);
	atomic_store_explicit(&ep->pending_err, -ECONNRESET, memory_order_relaxed);
	cn_wake_local(ep);
}

void cn_close(struct cn_endpoint *ep)
{
	uint32_t st = cn_st(ep);

	if (st & CN_ST_CLOSED)
		return;
	if (!(st & (CN_ST_RESET | CN_ST_BROKEN))) {
		/* TCP resets a connection closed with unread data. */
		if (ep->mode == CN_MODE_STREAM && cn_rx_refresh(ep, true) == 0 &&
		    !(cn_st(ep) & CN_ST_RESET) && cn_rx_avail(ep) > 0)
			cn_reset(ep);
		else
			cn_send_flags(ep, CN_PF_FIN, CN_CF_CLOSED);
	}
	cn_st_set(ep, CN_ST_CLOSED | CN_ST_WR_SHUT | CN_ST_RD_SHUT);
}

int cn_take_error(struct cn_endpoint *ep)
{
	uint32_t pf = atomic_load_explicit(&ep->rx.ctrl->prod_flags, memory_order_seq_cst);
	uint32_t cf = atomic_load_explicit(&ep->tx.ctrl->cons_flags, memory_order_seq_cst);

	if (cn_st(ep) & CN_ST_BROKEN)
		return -EPROTO;
	/* A reset nobody has noticed yet is reported here, and only here. */
	if (((pf & CN_PF_RST) || (cf & CN_CF_RST)) && cn_latch_peer_reset(ep))
		atomic_store_explicit(&ep->pending_err, 0, memory_order_relaxed);
	else if (!atomic_load_explicit(&ep->pending_err, memory_order_relaxed))
		return 0;
	else
		return atomic_exchange_explicit(&ep->pending_err, 0, memory_order_relaxed);
	return -ECONNRESET;
}

bool cn_ep_broken(const struct cn_endpoint *ep)
{
	return cn_st(ep) & CN_ST_BROKEN;
}

int cn_ep_connect_status(struct cn_endpoint *ep)
{
	uint32_t v = atomic_load_explicit(&ep->rx.ctrl->prod_status, memory_order_acquire);

	if (v == CN_STATUS_PENDING)
		return -EINPROGRESS;
	if (v > CN_STATUS_ERRNO_MAX)
		return -EPROTO;
	return -(int)v;
}

int cn_ep_set_connect_status(struct cn_endpoint *ep, int err)
{
	if (err < 0 || (uint32_t)err > CN_STATUS_ERRNO_MAX)
		return -EINVAL;
	atomic_store_explicit(&ep->tx.ctrl->prod_status, (uint32_t)err, memory_order_seq_cst);
	/* the initiator sleeps on its data doorbell while it waits for this */
	if (ep->sig_rx)
		cn_notifier_signal(ep->sig_rx);
	return 0;
}
