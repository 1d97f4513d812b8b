// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz_circuit.c - the hostile peer, driven by a fuzzer.
 *
 * The input is a script. Its first byte picks the mode and ring sizes; the
 * rest is a sequence of operations: the local endpoint ("victim") sends,
 * receives, reserves, peeks, polls, shuts down or re-attaches; an honest
 * peer does the same from the other end; and the "scribbler" writes
 * arbitrary values anywhere in the region between operations. The region is
 * a heap block of exactly the circuit's size, so AddressSanitizer reports
 * any access outside it.
 *
 * Invariants checked after every victim operation (abort() on violation):
 *  - the result is data (a length no larger than asked), 0, -EAGAIN, or one
 *    of the errors the API documents;
 *  - every span handed out lies inside the ring it belongs to;
 *  - nothing blocks (all calls are CN_MSG_DONTWAIT).
 *
 * Built for libFuzzer with -Dfuzzing=true (clang); fuzz/standalone.c runs
 * the same target on random and corpus inputs in every ordinary build.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <circnet/circuit.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < bytes && in->left; i++, in->left--)
		v |= (uint64_t)*in->p++ << (8 * i);
	return v;
}

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__,    \
				__LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool allowed_error(ssize_t r)
{
	return r == -EAGAIN || r == -EPIPE || r == -ECONNRESET || r == -EPROTO || r == -EMSGSIZE ||
	       r == -EINVAL;
}

static void check_result(ssize_t r, size_t asked)
{
	CHECK(r >= 0 ? (size_t)r <= asked : allowed_error(r));
}

static void check_spans(const struct cn_ring_view *v, const struct cn_span sp[2], ssize_t r)
{
	int i;

	if (r < 0)
		return;
	for (i = 0; i < 2; i++) {
		const unsigned char *p = sp[i].ptr;

		if (!p) {
			CHECK(sp[i].len == 0);
			continue;
		}
		CHECK(p >= v->data && p <= v->data + v->size);
		CHECK(sp[i].len <= (size_t)(v->data + v->size - p));
	}
	CHECK(sp[0].len + sp[1].len <= v->size);
}

static unsigned char buf[70000];

/* One endpoint operation; the honest peer uses the same code. */
static void endpoint_op(struct cn_endpoint *ep, unsigned op, struct input *in)
{
	struct cn_span sp[2];
	size_t len = (size_t)take(in, 2) % sizeof(buf);
	unsigned flags = CN_MSG_DONTWAIT | ((unsigned)take(in, 1) & (CN_MSG_PEEK | CN_MSG_TRUNC));
	unsigned out;
	ssize_t r;

	switch (op) {
	case 0:
		check_result(cn_send(ep, buf, len, CN_MSG_DONTWAIT), len);
		break;
	case 1: {
		struct iovec iov[2] = { { buf, len / 2 }, { buf + len / 2, len - len / 2 } };

		r = cn_recvv(ep, iov, 2, flags, &out);
		if (flags & CN_MSG_TRUNC)
			check_result(r, CN_DGRAM_MAX); /* real length */
		else
			check_result(r, len);
		break;
	}
	case 2:
		r = cn_reserve(ep, len, sp, CN_MSG_DONTWAIT | (len & 1 ? CN_RESERVE_CONTIG : 0));
		check_result(r, len);
		check_spans(&ep->tx, sp, r);
		if (r > 0) {
			memset(sp[0].ptr, 0x5a, sp[0].len);
			if (sp[1].ptr)
				memset(sp[1].ptr, 0x5b, sp[1].len);
		}
		if (r >= 0)
			check_result(cn_commit(ep, (size_t)r / ((len & 2) ? 2 : 1)), 0);
		break;
	case 3:
		r = cn_peek(ep, sp, CN_MSG_DONTWAIT);
		check_result(r, ep->rx.size);
		check_spans(&ep->rx, sp, r);
		if (r > 0) {
			/* Touch what was handed out: must be inside the region. */
			memcpy(buf, sp[0].ptr, sp[0].len);
			if (sp[1].ptr)
				memcpy(buf + sp[0].len, sp[1].ptr, sp[1].len);
		}
		if (r >= 0)
			check_result(cn_consume(ep, (size_t)r > len ? len : (size_t)r), 0);
		break;
	case 4:
		cn_poll_arm(ep, CN_POLLIN | CN_POLLOUT);
		CHECK(cn_readable(ep) <= ep->rx.size);
		r = cn_take_error(ep);
		CHECK(r == 0 || r == -ECONNRESET || r == -EPROTO);
		break;
	case 5:
		CHECK(cn_shutdown(ep, (int)(len % 3)) <= 0);
		break;
	}
}

static void scribble(unsigned char *mem, size_t total, struct input *in)
{
	uint64_t off = take(in, 3), val = take(in, 8);
	unsigned width = 1u << (take(in, 1) % 4);

	/* Mostly the control page, where it hurts; sometimes anywhere. */
	off = (off & 1) ? (off >> 1) % total : (off >> 1) % CN_DATA_OFF;
	off &= ~(uint64_t)(width - 1); /* atomics need aligned words */
	if (off + width > total)
		return;
	memcpy(mem + off, &val, width);
}

/*
 * Forge a datagram record (or stream bytes) right where the victim reads
 * next and publish a producer index of the forger's choosing: what a peer
 * that knows the consumer index would do.
 */
static void forge_at_reader(const struct cn_endpoint *victim, struct input *in)
{
	const struct cn_ring_view *r = &victim->rx;
	uint64_t pos = r->idx & r->mask;
	struct cn_dgram_hdr h = { (uint32_t)take(in, 3), (uint32_t)take(in, 1) % 3 };
	uint64_t extra = take(in, 2);
	int8_t delta = (int8_t)take(in, 1);

	/* Half the time a length that ends the record near the ring end. */
	if (h.len & 1)
		h.len = (uint32_t)(r->size - pos - sizeof(h) + (uint64_t)(int64_t)delta);

	if (pos + sizeof(h) <= r->size)
		memcpy(r->data + pos, &h, sizeof(h));
	atomic_store(&r->ctrl->prod, r->idx + (extra & ~7ull) % (r->size + 64));
}

/* Targeted writes of the fields the reader trusts least. */
static void scribble_ctrl(unsigned char *mem, const struct cn_endpoint *victim, struct input *in)
{
	struct cn_layout_ctrl *c = (void *)(mem + CN_CTRL_OFF(take(in, 1) & 1));
	uint64_t v = take(in, 8);

	switch (take(in, 1) % 7) {
	case 6:
		forge_at_reader(victim, in);
		break;
	case 0:
		atomic_store(&c->prod, v);
		break;
	case 1:
		atomic_store(&c->cons, v);
		break;
	case 2:
		atomic_fetch_add(&c->prod, v % 4096);
		break;
	case 3:
		atomic_store(&c->prod_flags, (uint32_t)v);
		break;
	case 4:
		atomic_store(&c->cons_flags, (uint32_t)v);
		break;
	case 5:
		atomic_store(&c->reader_want, (uint32_t)v);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct cn_circuit_params prm = { 0 };
	struct cn_endpoint victim, peer;
	unsigned char *mem;
	uint8_t cfg = (uint8_t)take(&in, 1);
	size_t total;
	int steps = 0;

	prm.mode = (cfg & 1) ? CN_MODE_DGRAM : CN_MODE_STREAM;
	prm.ring_size[0] = 4096u << ((cfg >> 1) & 1);
	prm.ring_size[1] = 4096u << ((cfg >> 2) & 1);
	prm.pending = cfg & 16; /* a proxied connect's status word, scribbled on like the rest */
	total = cn_circuit_size(&prm);
	mem = malloc(total);
	CHECK(mem && cn_circuit_format(mem, total, &prm) == 0);
	memset(mem + CN_DATA_OFF, 0, total - CN_DATA_OFF);
	CHECK(cn_ep_attach(&victim, mem, total, (cfg & 8) ? CN_ROLE_ACCEPTOR : CN_ROLE_INITIATOR) ==
	      0);
	CHECK(cn_ep_attach(&peer, mem, total, (cfg & 8) ? CN_ROLE_INITIATOR : CN_ROLE_ACCEPTOR) ==
	      0);
	while (in.left && steps++ < 4096) {
		unsigned op = (unsigned)take(&in, 1);

		switch (op % 10) {
		case 0 ... 5:
			endpoint_op(&victim, op % 10, &in);
			break;
		case 6:
			endpoint_op(&peer, (op >> 4) % 6, &in);
			break;
		case 7:
			scribble(mem, total, &in);
			break;
		case 8:
			scribble_ctrl(mem, &victim, &in);
			break;
		case 9: {
			/* Re-attach as after exec: any control state, any header. */
			struct cn_endpoint again;
			int r = cn_ep_attach(&again, mem, total,
					     (cfg & 8) ? CN_ROLE_ACCEPTOR : CN_ROLE_INITIATOR);

			CHECK(r == 0 || r == -EPROTO);
			if (r == 0)
				victim = again;
			break;
		}
		}
	}
	{
		/* whatever the peer wrote there: a status in range, or EPROTO */
		int st = cn_ep_connect_status(&victim);

		CHECK(st == 0 || st == -EINPROGRESS || st == -EPROTO ||
		      (st < 0 && st >= -(int)CN_STATUS_ERRNO_MAX));
	}
	cn_close(&victim);
	free(mem);
	return 0;
}
