// SPDX-License-Identifier: MIT
/*
 * test/test_hostile.c - a peer that writes garbage into the circuit. Every
 * case must end in data, -EAGAIN or an error on our side, never a crash or
 * a read outside the region (the region is a heap block: ASan watches).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pair.h"

#define DW CN_MSG_DONTWAIT

static void assert_broken(struct pair *p, struct cn_endpoint *ep)
{
	char buf[64];
	struct cn_span sp[2];

	assert_int_equal(cn_recv(ep, buf, sizeof(buf), DW), -EPROTO);
	assert_int_equal(cn_send(ep, buf, 1, DW), -EPROTO);
	assert_int_equal(cn_peek(ep, sp, DW), -EPROTO);
	assert_int_equal(cn_reserve(ep, 1, sp, DW), -EPROTO);
	assert_true(cn_ep_broken(ep));
	assert_true(cn_poll(ep) & CN_POLLERR);
	(void)p;
}

static void test_prod_beyond_ring(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 4097);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EPROTO);
	assert_broken(&p, &p.b);
	/* The violator's side is told with a reset. */
	assert_int_equal(cn_recv(&p.a, buf, sizeof(buf), DW), -ECONNRESET);
	pair_free(&p);
}

static void test_prod_backwards(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	assert_int_equal(cn_send(&p.a, "abcdef", 6, DW), 6);
	assert_int_equal(cn_recv(&p.b, buf, 2, DW), 2);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 1); /* behind what we consumed */
	assert_int_equal(cn_recv(&p.b, buf, 4, DW), 4);	  /* cached, validated data */
	assert_int_equal(cn_recv(&p.b, buf, 8, DW), -EPROTO);
	pair_free(&p);
}

static void test_prod_huge_wraps_u64(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, UINT64_MAX);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EPROTO);
	pair_free(&p);
}

static void test_cons_beyond_prod_and_backwards(void **state)
{
	struct pair p;
	static char buf[4096];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	assert_int_equal(cn_send(&p.a, buf, 4096, DW), 4096);
	/* The consumer claims to have read more than was ever written. */
	atomic_store(&pair_ctrl(&p, CN_RING_A)->cons, 5000);
	assert_int_equal(cn_send(&p.a, buf, 1, DW), -EPROTO);
	pair_free(&p);

	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	assert_int_equal(cn_send(&p.a, buf, 4096, DW), 4096);
	assert_int_equal(cn_recv(&p.b, buf, 2048, DW), 2048);
	assert_int_equal(cn_send(&p.a, buf, 2048, DW), 2048);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->cons, 1000); /* went backwards */
	assert_int_equal(cn_send(&p.a, buf, 1, DW), -EPROTO);
	pair_free(&p);
}

static void test_unknown_flags(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod_flags, 0x80);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EPROTO);
	pair_free(&p);
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	atomic_store(&pair_ctrl(&p, CN_RING_B)->cons_flags, 0x40);
	assert_int_equal(cn_send(&p.b, buf, 1, DW), -EPROTO);
	pair_free(&p);
}

static void write_rec(struct pair *p, uint64_t off, uint32_t len, uint32_t type)
{
	struct cn_dgram_hdr h = { len, type };

	memcpy(p->mem + CN_DATA_OFF + off, &h, sizeof(h));
}

static void dgram_case(uint64_t prod, uint64_t rec_off, uint32_t len, uint32_t type)
{
	struct pair p;
	char buf[64];

	assert_int_equal(pair_init(&p, CN_MODE_DGRAM, 4096), 0);
	write_rec(&p, rec_off, len, type);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, prod);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EPROTO);
	assert_broken(&p, &p.b);
	pair_free(&p);
}

static void test_bad_records(void **state)
{
	(void)state;
	dgram_case(16, 0, 3000, CN_REC_DATA); /* longer than dgram_max */
	dgram_case(16, 0, 100, CN_REC_DATA);  /* longer than what was published */
	dgram_case(16, 0, 4, 7);	      /* unknown type */
	dgram_case(16, 0, 0, CN_REC_WRAP);    /* wrap at ring start */
	dgram_case(12, 0, 4, CN_REC_DATA);    /* misaligned producer index */
	dgram_case(4, 0, 0, CN_REC_DATA);     /* index inside a header */
}

static void test_wrap_then_garbage(void **state)
{
	struct pair p;
	char buf[4096];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_DGRAM, 4096), 0);
	assert_int_equal(pair_dgram_to_3584(&p), 0);
	/* A wrap record whose skip is more than was published. */
	write_rec(&p, 3584, 0, CN_REC_WRAP);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 3584 + 8);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EPROTO);
	pair_free(&p);

	/* Two wraps in a row: the second sits at offset 0. */
	assert_int_equal(pair_init(&p, CN_MODE_DGRAM, 4096), 0);
	assert_int_equal(pair_dgram_to_3584(&p), 0);
	write_rec(&p, 3584, 0, CN_REC_WRAP);
	write_rec(&p, 0, 0, CN_REC_WRAP);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 4096 + 8);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EPROTO);
	pair_free(&p);
}

static void test_record_changes_after_peek(void **state)
{
	struct pair p;
	struct cn_span sp[2];
	char buf[64];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_DGRAM, 4096), 0);
	assert_int_equal(cn_send(&p.a, "12345678", 8, DW), 8);
	assert_int_equal(cn_peek(&p.b, sp, DW), 8);
	/* The peer rewrites the header after we validated it: we keep our copy. */
	write_rec(&p, 0, 4000, CN_REC_DATA);
	assert_int_equal(cn_consume(&p.b, 0), 0);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EAGAIN);
	pair_free(&p);
}

static void test_attach_rejects_bad_headers(void **state)
{
	struct pair p;
	struct cn_endpoint ep;
	struct cn_layout_hdr *h;
	struct cn_layout_hdr saved;

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	h = (struct cn_layout_hdr *)p.mem;
	saved = *h;
#define BAD(stmt)                                                                                  \
	do {                                                                                       \
		*h = saved;                                                                        \
		stmt;                                                                              \
		assert_int_equal(cn_ep_attach(&ep, p.mem, p.size, CN_ROLE_ACCEPTOR), -EPROTO);     \
	} while (0)
	BAD(h->magic ^= 1);
	BAD(h->version = 2);
	BAD(h->mode = 3);
	BAD(h->hdr_size = 8);
	BAD(h->reserved = 1);
	BAD(h->total_size += 4096);
	BAD(h->ring[0].size = 3000);
	BAD(h->ring[0].size = 8192);		   /* total no longer matches */
	BAD(h->ring[1].data_off = 0);		   /* overlaps the header */
	BAD(h->ring[1].ctrl_off = CN_CTRL_OFF(0)); /* shares ring A's control */
	BAD(h->ring[0].size = (uint64_t)1 << 40);
	/* A header claiming more memory than is mapped. */
	*h = saved;
	assert_int_equal(cn_ep_attach(&ep, p.mem, p.size - 4096, CN_ROLE_ACCEPTOR), -EPROTO);
	/* Indices inconsistent at attach time. */
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 1 << 20);
	assert_int_equal(cn_ep_attach(&ep, p.mem, p.size, CN_ROLE_ACCEPTOR), -EPROTO);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 0);
	assert_int_equal(cn_ep_attach(&ep, p.mem, p.size, CN_ROLE_ACCEPTOR), 0);
	assert_int_equal(cn_ep_attach(&ep, p.mem, p.size, 7), -EINVAL);
	assert_int_equal(cn_ep_attach(&ep, p.mem, 100, CN_ROLE_ACCEPTOR), -EINVAL);
	pair_free(&p);
}

static void test_header_scribbled_after_attach(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	memset(p.mem, 0xff, 256); /* header only: the endpoints never reread it */
	assert_int_equal(cn_send(&p.a, "ok", 2, DW), 2);
	assert_int_equal(cn_recv(&p.b, buf, 8, DW), 2);
	pair_free(&p);
}

static void test_wake_flags_garbage_is_harmless(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	atomic_store(&pair_ctrl(&p, CN_RING_A)->reader_want, UINT32_MAX);
	atomic_store(&pair_ctrl(&p, CN_RING_B)->writer_want, UINT32_MAX);
	assert_int_equal(cn_send(&p.a, "ok", 2, DW), 2);
	assert_int_equal(cn_recv(&p.b, buf, 8, DW), 2);
	pair_free(&p);
}

/* A fork sibling adopts our published indices; the peer may have forged them. */
static void test_adopt_forged_indices(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	assert_int_equal(cn_send(&p.a, "abcdef", 6, DW), 6);
	/* within a ring of the peer's index: taken (it only reorders its own data) */
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 100);
	assert_int_equal(cn_ep_adopt_published(&p.a, true), 0);
	assert_int_equal(cn_send(&p.a, "g", 1, DW), 1);
	/* more than a ring ahead of what the peer consumed: refused */
	atomic_store(&pair_ctrl(&p, CN_RING_A)->prod, 4096 + 1);
	assert_int_equal(cn_ep_adopt_published(&p.a, true), -EPROTO);
	assert_broken(&p, &p.a);
	pair_free(&p);

	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	assert_int_equal(cn_send(&p.a, "abcdef", 6, DW), 6);
	/* our consumer index ahead of the peer's producer: refused */
	atomic_store(&pair_ctrl(&p, CN_RING_A)->cons, 7);
	assert_int_equal(cn_ep_adopt_published(&p.b, false), -EPROTO);
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), -EPROTO);
	pair_free(&p);

	assert_int_equal(pair_init(&p, CN_MODE_DGRAM, 4096), 0);
	assert_int_equal(cn_send(&p.a, "abc", 3, DW), 3);
	/* not on a record boundary */
	atomic_store(&pair_ctrl(&p, CN_RING_A)->cons, 4);
	assert_int_equal(cn_ep_adopt_published(&p.b, false), -EPROTO);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prod_beyond_ring),
		cmocka_unit_test(test_prod_backwards),
		cmocka_unit_test(test_prod_huge_wraps_u64),
		cmocka_unit_test(test_cons_beyond_prod_and_backwards),
		cmocka_unit_test(test_unknown_flags),
		cmocka_unit_test(test_bad_records),
		cmocka_unit_test(test_wrap_then_garbage),
		cmocka_unit_test(test_record_changes_after_peek),
		cmocka_unit_test(test_attach_rejects_bad_headers),
		cmocka_unit_test(test_header_scribbled_after_attach),
		cmocka_unit_test(test_wake_flags_garbage_is_harmless),
		cmocka_unit_test(test_adopt_forged_indices),
	};

	return cmocka_run_group_tests_name("hostile", tests, NULL, NULL);
}
