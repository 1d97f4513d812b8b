// SPDX-License-Identifier: MIT
/*
 * circuit/copy.c - the copying send/recv API (socket semantics), built on
 * the zero-copy cores: one memcpy per span between the caller's iovecs and
 * the ring, no intermediate buffer.
 */
#include <limits.h>
#include <sys/uio.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#include "internal.h"

struct iov_cursor {
	const struct iovec *iov;
	int cnt;
	size_t off; /* within iov[0] */
};

/* Total length of an iovec array, or -EINVAL if it is malformed. */
static ssize_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	int i;

	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
		return -EINVAL;
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
			return -EINVAL;
		total += iov[i].iov_len;
	}
	return (ssize_t)total;
}

/* Copy n bytes between the cursor's iovecs and buf; to_iov picks the direction. */
static void iov_xfer(struct iov_cursor *c, unsigned char *buf, size_t n, bool to_iov)
{
	while (n) {
		size_t chunk = c->iov->iov_len - c->off;
		unsigned char *p = (unsigned char *)c->iov->iov_base + c->off;

		if (chunk == 0) {
			c->iov++;
			c->cnt--;
			c->off = 0;
			continue;
		}
		if (chunk > n)
			chunk = n;
		if (to_iov)
			memcpy(p, buf, chunk);
		else
			memcpy(buf, p, chunk);
		buf += chunk;
		n -= chunk;
		c->off += chunk;
	}
}

static void spans_from_iov(struct iov_cursor *c, const struct cn_span sp[2])
{
	iov_xfer(c, sp[0].ptr, sp[0].len, false);
	if (sp[1].len)
		iov_xfer(c, sp[1].ptr, sp[1].len, false);
}

static void spans_to_iov(struct iov_cursor *c, const struct cn_span sp[2], size_t n)
{
	size_t first = n < sp[0].len ? n : sp[0].len;

	iov_xfer(c, sp[0].ptr, first, true);
	if (n > first)
		iov_xfer(c, sp[1].ptr, n - first, true);
}

static ssize_t stream_sendv(struct cn_endpoint *ep, struct iov_cursor *c, size_t total,
			    unsigned flags)
{
	int64_t deadline = CN_DEADLINE_UNSET;
	struct cn_span sp[2];
	size_t done = 0;
	ssize_t r = 0;

	if (total == 0) {
		r = cn_tx_refresh(ep, false);
		return r ? r : cn_tx_state_error(ep);
	}
	while (done < total) {
		r = cn_stream_reserve(ep, total - done, sp, 0);
		if (r > 0) {
			spans_from_iov(c, sp);
			cn_commit(ep, (size_t)r);
			done += (size_t)r;
			continue;
		}
		if (r != -EAGAIN || (flags & CN_MSG_DONTWAIT))
			break;
		r = cn_wait_tx(ep, cn_min_u64(total - done, cn_tx_lowat(ep)),
			       &deadline);
		if (r)
			break;
	}
	return done ? (ssize_t)done : r;
}

static ssize_t dgram_sendv(struct cn_endpoint *ep, struct iov_cursor *c, size_t total,
			   unsigned flags)
{
	struct cn_span sp[2];
	ssize_t r;

	r = cn_reserve(ep, total, sp, flags);
	if (r < 0)
		return r;
	spans_from_iov(c, sp);
	r = cn_commit(ep, total);
	return r ? r : (ssize_t)total;
}

ssize_t cn_sendv(struct cn_endpoint *ep, const struct iovec *iov, int iovcnt, unsigned flags)
{
	struct iov_cursor c = { iov, iovcnt, 0 };
	ssize_t total = iov_total(iov, iovcnt);

	if (total < 0)
		return total;
	if (ep->mode == CN_MODE_STREAM)
		return stream_sendv(ep, &c, (size_t)total, flags);
	return dgram_sendv(ep, &c, (size_t)total, flags);
}

static ssize_t stream_recvv(struct cn_endpoint *ep, struct iov_cursor *c, size_t total,
			    unsigned flags)
{
	int64_t deadline = CN_DEADLINE_UNSET;
	struct cn_span sp[2];
	size_t done = 0, n;
	ssize_t r, err = 0;

	if (total == 0)
		return 0;
	for (;;) {
		r = cn_stream_peek(ep, sp, total - done);
		if (r > 0) {
			n = cn_min_u64((uint64_t)r, total - done);
			spans_to_iov(c, sp, n);
			if (flags & CN_MSG_PEEK)
				return (ssize_t)(done + n);
			cn_consume(ep, n);
			done += n;
			if (done == total || !(flags & CN_MSG_WAITALL))
				return (ssize_t)done;
			continue;
		}
		if (r != -EAGAIN || (flags & CN_MSG_DONTWAIT))
			break;
		r = cn_wait_rx(ep, (flags & CN_MSG_WAITALL) ? total - done : 1,
			       &deadline);
		if (r) {
			/*
			 * A WAITALL sleeper is woken only once all of it is there;
			 * on timeout or signal, collect what came meanwhile, as
			 * recv(MSG_WAITALL) returns a partial count.
			 */
			if (!(flags & CN_MSG_WAITALL) || err)
				break;
			err = r;
			flags |= CN_MSG_DONTWAIT;
		}
	}
	if (err && r == -EAGAIN)
		r = err; /* report the timeout or signal, not the final pass */
	return done ? (ssize_t)done : r;
}

static ssize_t dgram_recvv(struct cn_endpoint *ep, struct iov_cursor *c, size_t total,
			   unsigned flags, unsigned *out_flags)
{
	struct cn_span sp[2];
	size_t n;
	ssize_t r;

	r = cn_peek(ep, sp, flags);
	if (r < 0)
		return r;
	if (!sp[0].ptr) {
		*out_flags |= CN_MSGF_EOF;
		return 0;
	}
	n = cn_min_u64((uint64_t)r, total);
	spans_to_iov(c, sp, n);
	if (n < (size_t)r)
		*out_flags |= CN_MSGF_TRUNC;
	if (!(flags & CN_MSG_PEEK))
		cn_consume(ep, (size_t)r);
	return (flags & CN_MSG_TRUNC) ? r : (ssize_t)n;
}

ssize_t cn_recvv(struct cn_endpoint *ep, const struct iovec *iov, int iovcnt, unsigned flags,
		 unsigned *out_flags)
{
	struct iov_cursor c = { iov, iovcnt, 0 };
	ssize_t total = iov_total(iov, iovcnt);
	unsigned dummy = 0;

	if (!out_flags)
		out_flags = &dummy;
	*out_flags = 0;
	if (total < 0)
		return total;
	if (ep->mode == CN_MODE_STREAM)
		return stream_recvv(ep, &c, (size_t)total, flags);
	return dgram_recvv(ep, &c, (size_t)total, flags, out_flags);
}
