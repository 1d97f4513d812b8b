// SPDX-License-Identifier: MIT
/*
 * circuit/dgram.c - datagram mode (UDP semantics): records framed by
 * struct cn_dgram_hdr, 8-byte aligned, never split across the ring end.
 *
 * A record that does not fit in the tail of the ring is preceded by a wrap
 * record covering the tail. Since records are at most half a ring, an empty
 * ring always has room for any datagram, so a datagram either fits now
 * (reserve succeeds), fits later (-EAGAIN) or never (-EMSGSIZE).
 *
 * The reader copies each header out of shared memory once and checks type,
 * length, alignment and bounds against what the producer index made
 * readable before it touches the payload.
 */
#include "internal.h"

static uint64_t rec_size(uint64_t payload)
{
	return sizeof(struct cn_dgram_hdr) + cn_align_rec(payload);
}

/* Tail bytes a record of rec bytes must skip (with a wrap record) to stay whole. */
static uint64_t wrap_skip(const struct cn_endpoint *ep, uint64_t rec)
{
	uint64_t tail = ep->tx.size - (ep->tx.idx & ep->tx.mask);

	return tail < rec ? tail : 0;
}

uint64_t cn_dgram_need(const struct cn_endpoint *ep, size_t n)
{
	return wrap_skip(ep, rec_size(n)) + rec_size(n);
}

ssize_t cn_dgram_reserve(struct cn_endpoint *ep, size_t n, struct cn_span sp[2])
{
	uint64_t skip, need;
	int err;

	ep->resv_active = false;
	sp[0] = sp[1] = (struct cn_span){ NULL, 0 };
	if (n > ep->dgram_max) {
		err = cn_tx_prepare(ep, 0);
		return err ? err : -EMSGSIZE;
	}
	need = cn_dgram_need(ep, n);
	err = cn_tx_prepare(ep, need);
	if (err)
		return err;
	if (cn_tx_free(ep) < need)
		return -EAGAIN;
	skip = wrap_skip(ep, rec_size(n));
	ep->resv_idx = ep->tx.idx + skip;
	ep->resv_skip = (uint32_t)skip;
	ep->resv_len = (uint32_t)n;
	ep->resv_active = true;
	sp[0].ptr = ep->tx.data + (ep->resv_idx & ep->tx.mask) + sizeof(struct cn_dgram_hdr);
	sp[0].len = n;
	return (ssize_t)n;
}

static void put_hdr(struct cn_endpoint *ep, uint64_t idx, uint32_t len, uint32_t type)
{
	struct cn_dgram_hdr h = { .len = len, .type = type };

	memcpy(ep->tx.data + (idx & ep->tx.mask), &h, sizeof(h));
}

int cn_dgram_commit(struct cn_endpoint *ep, size_t n)
{
	if (!ep->resv_active || n > ep->resv_len)
		return -EINVAL;
	ep->resv_active = false;
	if (ep->resv_skip)
		put_hdr(ep, ep->tx.idx, 0, CN_REC_WRAP);
	put_hdr(ep, ep->resv_idx, (uint32_t)n, CN_REC_DATA);
	cn_tx_publish(ep, ep->resv_idx + rec_size(n));
	return 0;
}

/* Make sure the rx cache holds at least one record header. 1 = yes, 0 = EOF, <0 error. */
static int dgram_fill(struct cn_endpoint *ep)
{
	bool eof;
	int err;

	err = cn_rx_prepare(ep, 1, &eof);
	if (err || eof)
		return err;
	if (cn_rx_avail(ep))
		return 1;
	return (cn_st(ep) & CN_ST_PEER_FIN) ? 0 : -EAGAIN;
}

/*
 * Returns the next datagram's length with sp[0] pointing at it, 0 with
 * sp[0].ptr == NULL at end of stream, or -errno.
 */
ssize_t cn_dgram_peek(struct cn_endpoint *ep, struct cn_span sp[2])
{
	struct cn_dgram_hdr h;
	uint64_t avail, pos, rec;
	int err, i;

	ep->peek_active = false;
	sp[0] = sp[1] = (struct cn_span){ NULL, 0 };
	/* At most one wrap record precedes a data record: two iterations. */
	for (i = 0; i < 2; i++) {
		err = dgram_fill(ep);
		if (err <= 0)
			return err;
		avail = cn_rx_avail(ep); /* multiple of 8, > 0: refresh checked */
		pos = ep->rx.idx & ep->rx.mask;
		memcpy(&h, ep->rx.data + pos, sizeof(h));
		if (h.type == CN_REC_WRAP) {
			if (pos == 0 || ep->rx.size - pos > avail)
				return cn_violation(ep);
			cn_rx_release(ep, ep->rx.idx + (ep->rx.size - pos));
			continue;
		}
		if (h.type != CN_REC_DATA || h.len > ep->dgram_max)
			return cn_violation(ep);
		rec = rec_size(h.len);
		if (rec > avail || pos + rec > ep->rx.size)
			return cn_violation(ep);
		sp[0].ptr = ep->rx.data + pos + sizeof(h);
		sp[0].len = h.len;
		ep->peek_idx = ep->rx.idx;
		ep->peek_len = (uint32_t)rec;
		ep->peek_active = true;
		return (ssize_t)h.len;
	}
	return cn_violation(ep);
}
