// SPDX-License-Identifier: MIT
/*
 * circuit/ring.c - the single-producer/single-consumer core: reading the
 * peer's index and flags out of hostile shared memory, publishing our own,
 * and deciding when the peer needs a wake-up.
 *
 * Trust rule: every value this file loads from the region is loaded once
 * into a local, checked against what this side knows for certain (its own
 * index, the ring size, the last validated peer index) and only then kept.
 * Anything impossible marks the endpoint broken (-EPROTO) for good.
 *
 * Wake-up ordering (the lost wake-up argument). The sleeper does
 *     store(want, n) ; load(index) ; sleep if index not far enough
 * and the waker does
 *     store(index, i) ; load(want)  ; signal if want set and reached.
 * All four accesses are seq_cst, so they appear in one total order: either
 * the sleeper's load of the index comes after the waker's store (it sees the
 * progress and does not sleep), or the waker's load of want comes after the
 * sleeper's store (it signals). Both missing is impossible. The notifier
 * keeps a signal that arrives before the sleeper is actually asleep.
 * On x86 the seq_cst store is an xchg, which is the one full barrier per
 * commit that this protocol costs; loads stay plain moves.
 *
 * State flags (FIN, RST, CLOSED) are stored before an unconditional signal
 * of both peer notifiers; the sleeper re-checks flags after storing want, so
 * the same argument covers them.
 */
#include "internal.h"

int cn_violation(struct cn_endpoint *ep)
{
	/* Tell a merely buggy peer; a hostile one may ignore it. */
	if (!(cn_st_set(ep, CN_ST_BROKEN | CN_ST_RESET) & CN_ST_BROKEN)) {
		cn_send_flags(ep, CN_PF_RST, CN_CF_RST);
		cn_wake_local(ep);
	}
	return -EPROTO;
}

/*
 * Add bits to our two flag words (the producer flags of our tx ring, the
 * consumer flags of our rx ring) and wake both of the peer's sleepers: state
 * changes are rare, so they always signal.
 */
void cn_send_flags(struct cn_endpoint *ep, uint32_t tx_pflags, uint32_t rx_cflags)
{
	if (tx_pflags)
		atomic_fetch_or_explicit(&ep->tx.ctrl->prod_flags, tx_pflags, memory_order_seq_cst);
	if (rx_cflags)
		atomic_fetch_or_explicit(&ep->rx.ctrl->cons_flags, rx_cflags, memory_order_seq_cst);
	if (ep->sig_rx)
		cn_notifier_signal(ep->sig_rx);
	if (ep->sig_tx && ep->sig_tx != ep->sig_rx)
		cn_notifier_signal(ep->sig_tx);
}

/*
 * Wake this endpoint's own sleepers after a local state change (reset,
 * shutdown, violation from another thread): they re-check and return, as a
 * thread blocked in recv() returns when another thread shuts the socket down.
 */
void cn_wake_local(struct cn_endpoint *ep)
{
	if (ep->wait_rx)
		cn_notifier_kick(ep->wait_rx);
	if (ep->wait_tx && ep->wait_tx != ep->wait_rx)
		cn_notifier_kick(ep->wait_tx);
}

/*
 * The peer is gone without a word (killed, or it dropped its notifier
 * ends): treat it as a TCP peer whose process died. If it left our data
 * unread, that is a reset; otherwise an orderly close after what it sent.
 * Only shared atomics and state bits are touched: any thread may call this.
 */
void cn_ep_peer_vanished(struct cn_endpoint *ep)
{
	uint64_t prod = atomic_load_explicit(&ep->tx.ctrl->prod, memory_order_seq_cst);
	uint64_t cons = atomic_load_explicit(&ep->tx.ctrl->cons, memory_order_seq_cst);

	if (cn_st_set(ep, CN_ST_PEER_DEAD | CN_ST_PEER_GONE) & CN_ST_PEER_DEAD)
		return;
	/*
	 * Both words are in shared memory (cons is the peer's): they only pick
	 * reset vs EOF for a peer that is gone, and index nothing.
	 */
	if (prod != cons)
		cn_latch_peer_reset(ep);
	cn_wake_local(ep);
}

/* Record a reset by the peer; true for the one caller that saw it first. */
bool cn_latch_peer_reset(struct cn_endpoint *ep)
{
	if (cn_st_set(ep, CN_ST_RESET) & CN_ST_RESET)
		return false;
	atomic_store_explicit(&ep->pending_err, -ECONNRESET, memory_order_relaxed);
	return true;
}

/*
 * Reload the consumer's flags of our tx ring and, when full is set, its
 * index. Valid index: tx.peer <= cons <= tx.idx (modulo 2^64), i.e. the
 * consumer moved forward and not past what we produced. The flags live on
 * the rarely written wake line, so checking them on every call is cheap;
 * the index line bounces, so it is reloaded only when the cache says full.
 */
int cn_tx_refresh(struct cn_endpoint *ep, bool full)
{
	struct cn_ring_view *r = &ep->tx;
	uint32_t flags;
	uint64_t cons;

	if (cn_st(ep) & CN_ST_BROKEN)
		return -EPROTO;
	flags = atomic_load_explicit(&r->ctrl->cons_flags, memory_order_seq_cst);
	if (flags & ~CN_CF_KNOWN)
		return cn_violation(ep);
	if (full) {
		cons = atomic_load_explicit(&r->ctrl->cons, memory_order_seq_cst);
		if (cons - r->peer > r->idx - r->peer)
			return cn_violation(ep);
		if (ep->mode == CN_MODE_DGRAM && (cons & (CN_REC_ALIGN - 1)))
			return cn_violation(ep);
		r->peer = cons;
	}
	if (flags & CN_CF_RST)
		cn_latch_peer_reset(ep);
	else if (flags & CN_CF_CLOSED)
		cn_st_set(ep, CN_ST_PEER_GONE);
	return 0;
}

/*
 * Reload the producer's flags of our rx ring and, when full is set or a FIN
 * shows up, its index. Flags are loaded first: FIN is stored after the final
 * index, so with FIN seen the index loaded next is final and can be latched.
 * Valid index: rx.peer <= prod and prod - rx.idx <= size.
 */
int cn_rx_refresh(struct cn_endpoint *ep, bool full)
{
	struct cn_ring_view *r = &ep->rx;
	uint32_t flags;
	uint64_t prod;

	uint32_t st = cn_st(ep);

	if (st & CN_ST_BROKEN)
		return -EPROTO;
	if (st & (CN_ST_PEER_FIN | CN_ST_RESET))
		return 0; /* nothing the peer writes now can matter */
	flags = atomic_load_explicit(&r->ctrl->prod_flags, memory_order_seq_cst);
	if (flags & ~CN_PF_KNOWN)
		return cn_violation(ep);
	if (flags & CN_PF_RST) {
		cn_latch_peer_reset(ep);
		return 0;
	}
	if (!full && !(flags & CN_PF_FIN) && !(cn_st(ep) & CN_ST_PEER_DEAD))
		return 0;
	prod = atomic_load_explicit(&r->ctrl->prod, memory_order_seq_cst);
	if (prod - r->idx > r->size || prod - r->peer > prod - r->idx)
		return cn_violation(ep);
	if (ep->mode == CN_MODE_DGRAM && (prod & (CN_REC_ALIGN - 1)))
		return cn_violation(ep);
	r->peer = prod;
	/* A vanished peer's last index is final, as after a FIN. */
	if ((flags & CN_PF_FIN) || (cn_st(ep) & CN_ST_PEER_DEAD))
		cn_st_set(ep, CN_ST_PEER_FIN);
	return 0;
}

/*
 * Our side's index of one ring as last published in its control block:
 * where a sibling process holding the same endpoint (fork) left it. The
 * peer can scribble there as well, so take only what a correct history
 * allows: within one ring of the peer's index, in the stated order, record
 * aligned in datagram mode. Ours is prod for tx, cons for rx.
 */
static int adopt_view(struct cn_endpoint *ep, struct cn_ring_view *r, bool tx)
{
	uint64_t prod = atomic_load_explicit(&r->ctrl->prod, memory_order_seq_cst);
	uint64_t cons = atomic_load_explicit(&r->ctrl->cons, memory_order_seq_cst);

	if (prod - cons > r->size)
		return cn_violation(ep);
	if (ep->mode == CN_MODE_DGRAM && ((prod | cons) & (CN_REC_ALIGN - 1)))
		return cn_violation(ep);
	if (tx) {
		r->idx = prod;
		r->peer = cons;
	} else if (cn_st(ep) & CN_ST_PEER_FIN) {
		/* the peer's final index is latched: it does not move any more */
		if (r->peer - cons > r->size)
			return cn_violation(ep);
		r->idx = cons;
	} else {
		r->idx = cons;
		r->peer = prod;
	}
	return 0;
}

int cn_ep_adopt_published(struct cn_endpoint *ep, bool tx)
{
	uint32_t flags;
	int err;

	if (cn_st(ep) & CN_ST_BROKEN)
		return -EPROTO;
	if (ep->resv_active || ep->peek_active)
		return -EBUSY;
	err = adopt_view(ep, tx ? &ep->tx : &ep->rx, tx);
	if (err)
		return err;
	/* what a sibling did to our side: shut down writing, reset */
	if (tx) {
		flags = atomic_load_explicit(&ep->tx.ctrl->prod_flags, memory_order_seq_cst);
		if (flags & CN_PF_FIN)
			cn_st_set(ep, CN_ST_WR_SHUT);
		if (flags & CN_PF_RST)
			cn_st_set(ep, CN_ST_RESET);
	} else {
		flags = atomic_load_explicit(&ep->rx.ctrl->cons_flags, memory_order_seq_cst);
		if (flags & CN_CF_CLOSED)
			cn_st_set(ep, CN_ST_RD_SHUT);
		if (flags & CN_CF_RST)
			cn_st_set(ep, CN_ST_RESET);
	}
	return 0;
}

/* Take the pending asynchronous error, if any (one caller gets it). */
static int take_pending(struct cn_endpoint *ep)
{
	if (!atomic_load_explicit(&ep->pending_err, memory_order_relaxed))
		return 0;
	return atomic_exchange_explicit(&ep->pending_err, 0, memory_order_relaxed);
}

/* The error a write gets now, or 0 if writing may proceed. */
int cn_tx_state_error(struct cn_endpoint *ep)
{
	uint32_t st = cn_st(ep);
	int err;

	if (st & CN_ST_BROKEN)
		return -EPROTO;
	err = take_pending(ep);
	if (err)
		return err;
	if (st & (CN_ST_RESET | CN_ST_WR_SHUT | CN_ST_PEER_GONE | CN_ST_CLOSED))
		return -EPIPE;
	return 0;
}

/*
 * The error a read gets now, or 0. *eof is set when the read side is over
 * (reset reported already, local SHUT_RD) so the caller returns 0.
 */
int cn_rx_state_error(struct cn_endpoint *ep, bool *eof)
{
	uint32_t st = cn_st(ep);
	int err;

	*eof = false;
	if (st & CN_ST_BROKEN)
		return -EPROTO;
	err = take_pending(ep);
	if (err)
		return err;
	if (st & (CN_ST_RESET | CN_ST_RD_SHUT | CN_ST_CLOSED))
		*eof = true;
	return 0;
}

/*
 * Bring the tx cache up to date for a writer that needs `need` free bytes:
 * always check the consumer's flags (cheap), reload its index only when the
 * cache shows less than `need`. 0 or the error the write gets; the caller
 * reads cn_tx_free() for what is there.
 */
int cn_tx_prepare(struct cn_endpoint *ep, uint64_t need)
{
	int err = cn_tx_refresh(ep, false);

	if (!err)
		err = cn_tx_state_error(ep);
	if (err || cn_tx_free(ep) >= need)
		return err;
	err = cn_tx_refresh(ep, true);
	return err ? err : cn_tx_state_error(ep);
}

/* The same for a reader that wants `want` bytes; *eof as cn_rx_state_error. */
int cn_rx_prepare(struct cn_endpoint *ep, uint64_t want, bool *eof)
{
	int err = cn_rx_refresh(ep, false);

	if (!err)
		err = cn_rx_state_error(ep, eof);
	if (err || *eof || cn_rx_avail(ep) >= want)
		return err;
	err = cn_rx_refresh(ep, true);
	return err ? err : cn_rx_state_error(ep, eof);
}

/* Publish produced bytes, then wake the peer's reader if it asked for it. */
void cn_tx_publish(struct cn_endpoint *ep, uint64_t new_idx)
{
	struct cn_ring_view *r = &ep->tx;
	uint64_t want;

	r->idx = new_idx;
	atomic_store_explicit(&r->ctrl->prod, new_idx, memory_order_seq_cst);
	want = atomic_load_explicit(&r->ctrl->reader_want, memory_order_seq_cst);
	if (!want)
		return;
	/* r->peer is an old consumer index, so this overestimates what the
	 * reader sees: we may wake it early, never too late. */
	if (new_idx - r->peer < cn_min_u64(want, r->size))
		return;
	if (atomic_exchange_explicit(&r->ctrl->reader_want, 0, memory_order_seq_cst) &&
	    ep->sig_rx) {
		cn_notifier_signal(ep->sig_rx);
		ep->stats.tx_wakeups++;
	}
}

/* Release consumed bytes, then wake the peer's writer if it asked for it. */
void cn_rx_release(struct cn_endpoint *ep, uint64_t new_idx)
{
	struct cn_ring_view *r = &ep->rx;
	uint64_t want;

	r->idx = new_idx;
	atomic_store_explicit(&r->ctrl->cons, new_idx, memory_order_seq_cst);
	want = atomic_load_explicit(&r->ctrl->writer_want, memory_order_seq_cst);
	if (!want)
		return;
	/* r->peer is an old producer index: free space is overestimated. */
	if (r->size - (r->peer - new_idx) < cn_min_u64(want, r->size))
		return;
	if (atomic_exchange_explicit(&r->ctrl->writer_want, 0, memory_order_seq_cst) &&
	    ep->sig_tx) {
		cn_notifier_signal(ep->sig_tx);
		ep->stats.rx_wakeups++;
	}
}

/* Split len bytes starting at idx into the part before the ring end and the rest. */
void cn_ring_spans(const struct cn_ring_view *r, uint64_t idx, uint64_t len, struct cn_span sp[2])
{
	uint64_t off = idx & r->mask;
	uint64_t first = cn_min_u64(len, r->size - off);

	sp[0].ptr = r->data + off;
	sp[0].len = first;
	sp[1].ptr = len > first ? r->data : NULL;
	sp[1].len = len - first;
}

/*
 * Free space at which the writer counts as writable (POLLOUT) and at which
 * a sleeping writer is woken: a quarter ring, so wake-ups come in batches
 * rather than once per consumed byte.
 */
uint64_t cn_tx_lowat(const struct cn_endpoint *ep)
{
	return ep->tx.size / 4;
}
