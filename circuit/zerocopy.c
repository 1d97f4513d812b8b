// SPDX-License-Identifier: MIT
/*
 * circuit/zerocopy.c - the public zero-copy API: reserve/commit for the
 * writer, peek/consume for the reader, blocking when asked to. The copying
 * API (copy.c) and the proxy stacks are built on these calls.
 */
#include "internal.h"

ssize_t cn_reserve(struct cn_endpoint *ep, size_t n, struct cn_span sp[2], unsigned flags)
{
	int64_t deadline = CN_DEADLINE_UNSET;
	uint64_t want;
	ssize_t r;
	int err;

	for (;;) {
		if (ep->mode == CN_MODE_STREAM)
			r = cn_stream_reserve(ep, n, sp, flags);
		else
			r = cn_dgram_reserve(ep, n, sp);
		if (r != -EAGAIN || (flags & CN_MSG_DONTWAIT))
			return r;
		if (ep->mode == CN_MODE_STREAM)
			want = cn_min_u64(n, cn_tx_lowat(ep));
		else
			want = cn_dgram_need(ep, n);
		err = cn_wait_tx(ep, want, &deadline);
		if (err)
			return err;
	}
}

int cn_commit(struct cn_endpoint *ep, size_t n)
{
	int err;

	/* A reset or shutdown since the reserve voids the reservation. */
	if (!ep->resv_active || (cn_st(ep) & CN_ST_TX_DEAD)) {
		ep->resv_active = false;
		err = cn_tx_state_error(ep);
		return err ? err : -EINVAL;
	}
	if (ep->mode == CN_MODE_DGRAM) {
		err = cn_dgram_commit(ep, n);
	} else {
		if (n > ep->resv_len)
			return -EINVAL;
		ep->resv_active = false;
		cn_tx_publish(ep, ep->resv_idx + n);
		err = 0;
	}
	if (!err) {
		ep->stats.tx_bytes += n;
		ep->stats.tx_msgs++;
	}
	return err;
}

ssize_t cn_peek(struct cn_endpoint *ep, struct cn_span sp[2], unsigned flags)
{
	int64_t deadline = CN_DEADLINE_UNSET;
	ssize_t r;
	int err;

	for (;;) {
		if (ep->mode == CN_MODE_STREAM)
			r = cn_stream_peek(ep, sp, SIZE_MAX);
		else
			r = cn_dgram_peek(ep, sp);
		if (r != -EAGAIN || (flags & CN_MSG_DONTWAIT))
			return r;
		err = cn_wait_rx(ep, 1, &deadline);
		if (err)
			return err;
	}
}

int cn_consume(struct cn_endpoint *ep, size_t n)
{
	uint64_t len;

	if (cn_st(ep) & CN_ST_BROKEN)
		return -EPROTO;
	if (cn_st(ep) & CN_ST_RESET) {
		ep->peek_active = false;
		return 0; /* the data is gone with the reset; nothing to release */
	}
	if (ep->mode == CN_MODE_DGRAM) {
		/* A datagram is released whole, whatever n says. */
		if (!ep->peek_active)
			return -EINVAL;
		len = ep->peek_len;
		n = ep->peek_len - sizeof(struct cn_dgram_hdr);
	} else {
		/* Only what the validated cache says is readable. */
		if (n > cn_rx_avail(ep))
			return -EINVAL;
		len = n;
	}
	ep->peek_active = false;
	cn_rx_release(ep, ep->rx.idx + len);
	ep->stats.rx_bytes += n;
	ep->stats.rx_msgs++;
	return 0;
}
