// SPDX-License-Identifier: MIT
/* test/test_zerocopy.c - reserve/commit and peek/consume, spans across the wrap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pair.h"

#define DW CN_MSG_DONTWAIT

static void advance(struct pair *p, size_t n)
{
	static unsigned char junk[4096];

	assert_int_equal(cn_send(&p->a, junk, n, DW), (ssize_t)n);
	assert_int_equal(cn_recv(&p->b, junk, n, DW), (ssize_t)n);
}

static void test_stream_spans_across_wrap(void **state)
{
	struct pair p;
	struct cn_span sp[2];
	unsigned char out[3000];
	size_t i;

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	advance(&p, 3000); /* the ring end is 1096 bytes ahead */
	assert_int_equal(cn_reserve(&p.a, 3000, sp, DW), 3000);
	assert_int_equal(sp[0].len, 1096);
	assert_int_equal(sp[1].len, 1904);
	assert_ptr_equal(sp[1].ptr, p.mem + CN_DATA_OFF);
	for (i = 0; i < sp[0].len; i++)
		((unsigned char *)sp[0].ptr)[i] = pat(i);
	for (i = 0; i < sp[1].len; i++)
		((unsigned char *)sp[1].ptr)[i] = pat(sp[0].len + i);
	/* Nothing is visible before commit. */
	assert_int_equal(cn_peek(&p.b, sp, DW), -EAGAIN);
	assert_int_equal(cn_commit(&p.a, 3000), 0);
	assert_int_equal(cn_peek(&p.b, sp, DW), 3000);
	assert_int_equal(sp[0].len, 1096);
	assert_int_equal(sp[1].len, 1904);
	assert_int_equal(cn_consume(&p.b, 1000), 0);
	assert_int_equal(cn_recv(&p.b, out, sizeof(out), DW), 2000);
	for (i = 0; i < 2000; i++)
		assert_int_equal(out[i], pat(1000 + i));
	pair_free(&p);
}

static void test_stream_contig_and_partial_commit(void **state)
{
	struct pair p;
	struct cn_span sp[2];
	char buf[64];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_STREAM, 4096), 0);
	advance(&p, 4000);
	assert_int_equal(cn_reserve(&p.a, 500, sp, DW | CN_RESERVE_CONTIG), 96);
	assert_null(sp[1].ptr);
	memcpy(sp[0].ptr, "contiguous", 10);
	/* Commit a prefix only. */
	assert_int_equal(cn_commit(&p.a, 10), 0);
	assert_int_equal(cn_commit(&p.a, 1), -EINVAL); /* nothing reserved */
	assert_int_equal(cn_reserve(&p.a, 8, sp, DW), 8);
	assert_int_equal(cn_commit(&p.a, 9), -EINVAL); /* more than reserved */
	assert_int_equal(cn_recv(&p.b, buf, sizeof(buf), DW), 10);
	assert_memory_equal(buf, "contiguous", 10);
	/* Consume beyond what is readable is refused. */
	assert_int_equal(cn_consume(&p.b, 1), -EINVAL);
	/* A full ring reserves nothing. */
	assert_int_equal(cn_reserve(&p.a, 4096, sp, DW), 4096);
	assert_int_equal(cn_commit(&p.a, 4096), 0);
	assert_int_equal(cn_reserve(&p.a, 1, sp, DW), -EAGAIN);
	pair_free(&p);
}

static void test_dgram_reserve_is_contiguous(void **state)
{
	struct pair p;
	struct cn_span sp[2];

	(void)state;
	assert_int_equal(pair_init(&p, CN_MODE_DGRAM, 4096), 0);
	/* The tail (512) cannot hold a 1000-byte record. */
	assert_int_equal(pair_dgram_to_3584(&p), 0);
	assert_int_equal(cn_reserve(&p.a, 1000, sp, DW), 1000);
	assert_ptr_equal(sp[0].ptr, p.mem + CN_DATA_OFF + sizeof(struct cn_dgram_hdr));
	assert_null(sp[1].ptr);
	memcpy(sp[0].ptr, "datagram", 8);
	assert_int_equal(cn_commit(&p.a, 8), 0); /* shorter than reserved */
	assert_int_equal(cn_peek(&p.b, sp, DW), 8);
	assert_memory_equal(sp[0].ptr, "datagram", 8);
	assert_int_equal(cn_consume(&p.b, 0), 0); /* releases the whole datagram */
	assert_int_equal(cn_consume(&p.b, 0), -EINVAL);
	assert_int_equal(cn_peek(&p.b, sp, DW), -EAGAIN);
	assert_int_equal(cn_reserve(&p.a, 5000, sp, DW), -EMSGSIZE);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_spans_across_wrap),
		cmocka_unit_test(test_stream_contig_and_partial_commit),
		cmocka_unit_test(test_dgram_reserve_is_contiguous),
	};

	return cmocka_run_group_tests_name("zerocopy", tests, NULL, NULL);
}
