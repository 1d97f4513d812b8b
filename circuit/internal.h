/* SPDX-License-Identifier: MIT */
/*
 * circuit/internal.h - what the circuit modules share but users must not see:
 * endpoint state bits, the validated index refresh, publish/release with the
 * wake-up protocol, and the blocking waits.
 */
#ifndef CIRCNET_CIRCUIT_INTERNAL_H
#define CIRCNET_CIRCUIT_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <circnet/circuit.h>

/* Endpoint state, local only (never read back from shared memory). */
#define CN_ST_WR_SHUT	0x01u /* we sent FIN */
#define CN_ST_RD_SHUT	0x02u /* we stopped reading */
#define CN_ST_PEER_FIN	0x04u /* peer FIN latched: rx.peer is final */
#define CN_ST_PEER_GONE 0x08u /* peer will not read our tx ring any more */
#define CN_ST_RESET	0x10u /* reset sent or received: data path is dead */
#define CN_ST_BROKEN	0x20u /* peer violated the protocol */
#define CN_ST_CLOSED	0x40u /* cn_close() was called */
#define CN_ST_PEER_DEAD 0x80u /* the peer's notifier end is gone: it will write no more */

/* States in which nothing may be published any more. */
#define CN_ST_TX_DEAD (CN_ST_RESET | CN_ST_BROKEN | CN_ST_WR_SHUT | CN_ST_CLOSED)

#define CN_PF_KNOWN (CN_PF_FIN | CN_PF_RST)
#define CN_CF_KNOWN (CN_CF_CLOSED | CN_CF_RST)

static inline uint32_t cn_st(const struct cn_endpoint *ep)
{
	return atomic_load_explicit(&ep->state, memory_order_relaxed);
}

/* Set state bits; returns the bits as they were, so one caller wins a race. */
static inline uint32_t cn_st_set(struct cn_endpoint *ep, uint32_t bits)
{
	return atomic_fetch_or_explicit(&ep->state, bits, memory_order_relaxed);
}

static inline uint64_t cn_min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t cn_align_rec(uint64_t n)
{
	return (n + CN_REC_ALIGN - 1) & ~(uint64_t)(CN_REC_ALIGN - 1);
}

/* Free bytes in our tx ring as far as the cached consumer index knows. */
static inline uint64_t cn_tx_free(const struct cn_endpoint *ep)
{
	return ep->tx.size - (ep->tx.idx - ep->tx.peer);
}

/* Readable bytes in our rx ring as far as the cached producer index knows. */
static inline uint64_t cn_rx_avail(const struct cn_endpoint *ep)
{
	return ep->rx.peer - ep->rx.idx;
}

/* ring.c */
int cn_violation(struct cn_endpoint *ep);
int cn_tx_refresh(struct cn_endpoint *ep, bool full);
int cn_rx_refresh(struct cn_endpoint *ep, bool full);
int cn_tx_state_error(struct cn_endpoint *ep);
int cn_tx_prepare(struct cn_endpoint *ep, uint64_t need);
int cn_rx_prepare(struct cn_endpoint *ep, uint64_t want, bool *eof);
int cn_rx_state_error(struct cn_endpoint *ep, bool *eof);
void cn_tx_publish(struct cn_endpoint *ep, uint64_t new_idx);
void cn_rx_release(struct cn_endpoint *ep, uint64_t new_idx);
void cn_send_flags(struct cn_endpoint *ep, uint32_t tx_pflags, uint32_t rx_cflags);
bool cn_latch_peer_reset(struct cn_endpoint *ep);
void cn_wake_local(struct cn_endpoint *ep);
void cn_ring_spans(const struct cn_ring_view *r, uint64_t idx, uint64_t len, struct cn_span sp[2]);
uint64_t cn_tx_lowat(const struct cn_endpoint *ep);

/*
 * wait.c: block until the wanted amount may be there. 0, -EAGAIN (timeout),
 * -EINTR. *deadline starts as CN_DEADLINE_UNSET; the first wait of a call
 * fixes it from the endpoint's timeout, so later waits share one budget.
 */
#define CN_DEADLINE_UNSET INT64_MIN
int cn_wait_rx(struct cn_endpoint *ep, uint64_t want, int64_t *deadline);
int cn_wait_tx(struct cn_endpoint *ep, uint64_t want, int64_t *deadline);

/* stream.c / dgram.c: the non-blocking cores of the zero-copy API. */
ssize_t cn_stream_reserve(struct cn_endpoint *ep, size_t n, struct cn_span sp[2], unsigned flags);
ssize_t cn_stream_peek(struct cn_endpoint *ep, struct cn_span sp[2], size_t want);
ssize_t cn_dgram_reserve(struct cn_endpoint *ep, size_t n, struct cn_span sp[2]);
int cn_dgram_commit(struct cn_endpoint *ep, size_t n);
ssize_t cn_dgram_peek(struct cn_endpoint *ep, struct cn_span sp[2]);

/* Bytes a datagram of n payload bytes needs in the ring right now (wrap included). */
uint64_t cn_dgram_need(const struct cn_endpoint *ep, size_t n);

#endif /* CIRCNET_CIRCUIT_INTERNAL_H */
