// SPDX-License-Identifier: MIT
/*
 * circuit/stream.c - stream mode (TCP semantics): the non-blocking cores of
 * reserve and peek over a byte ring. Flow control is the ring itself: a
 * writer gets as much space as is free and no more.
 */
#include "internal.h"

ssize_t cn_stream_reserve(struct cn_endpoint *ep, size_t n, struct cn_span sp[2], unsigned flags)
{
	uint64_t len, free;
	int err;

	ep->resv_active = false;
	sp[0] = sp[1] = (struct cn_span){ NULL, 0 };
	n = cn_min_u64(n, ep->tx.size);
	err = cn_tx_prepare(ep, n);
	if (err)
		return err;
	free = cn_tx_free(ep);
	if (n == 0)
		return 0;
	if (free == 0)
		return -EAGAIN;
	len = cn_min_u64(n, free);
	cn_ring_spans(&ep->tx, ep->tx.idx, len, sp);
	if (flags & CN_RESERVE_CONTIG) {
		len = sp[0].len;
		sp[1] = (struct cn_span){ NULL, 0 };
	}
	ep->resv_idx = ep->tx.idx;
	ep->resv_len = (uint32_t)len;
	ep->resv_active = true;
	return (ssize_t)len;
}

ssize_t cn_stream_peek(struct cn_endpoint *ep, struct cn_span sp[2], size_t want)
{
	uint64_t avail;
	bool eof;
	int err;

	ep->peek_active = false;
	sp[0] = sp[1] = (struct cn_span){ NULL, 0 };
	err = cn_rx_prepare(ep, want, &eof);
	if (err || eof)
		return err;
	avail = cn_rx_avail(ep);
	if (avail == 0)
		return (cn_st(ep) & CN_ST_PEER_FIN) ? 0 : -EAGAIN;
	cn_ring_spans(&ep->rx, ep->rx.idx, avail, sp);
	ep->peek_idx = ep->rx.idx;
	ep->peek_len = (uint32_t)avail;
	ep->peek_active = true;
	return (ssize_t)avail;
}
