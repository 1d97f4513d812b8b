// SPDX-License-Identifier: MIT
/*
 * test/test_tso.c - nic/tso.c: which of a sender's segments one TSO frame
 * may carry, and the headers it gets. Segments are built here as lwIP
 * sends them: untagged Ethernet, IPv4 (or IPv6), TCP with timestamps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tso.h"

#define MSS  1448
#define HDR4 (14 + 20 + 32)
#define HDR6 (14 + 40 + 32)

struct seg {
	uint8_t b[TSO_HDR_MAX];
	size_t hdr_len, frame_len;
};

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

/* A data segment: seq, payload bytes, TCP flags, timestamp value, IP id. */
static struct seg mk(int v6, uint32_t seq, uint16_t payload, uint8_t flags, uint32_t tsval,
		     uint16_t id)
{
	struct seg s;
	uint8_t *ip = s.b + 14, *tcp;

	memset(&s, 0, sizeof(s));
	memcpy(s.b, "\x02\0\0\0\0\x01\x02\0\0\0\0\x02", 12);
	if (v6) {
		put16(s.b + 12, 0x86dd);
		ip[0] = 0x60;
		put16(ip + 4, 32u + payload);
		ip[6] = 6;
		ip[7] = 64;
		ip[8] = 0xfd;
		ip[23] = 2;
		ip[24] = 0xfd;
		ip[39] = 1;
		tcp = ip + 40;
		s.hdr_len = HDR6;
	} else {
		put16(s.b + 12, 0x0800);
		ip[0] = 0x45;
		put16(ip + 2, 20u + 32u + payload);
		put16(ip + 4, id);
		put16(ip + 6, 0x4000); /* DF */
		ip[8] = 64;
		ip[9] = 6;
		put16(ip + 10, id ^ 0x5555); /* some checksum: differs with id */
		memcpy(ip + 12, "\x0a\0\0\x02\x0a\0\0\x01", 8);
		tcp = ip + 20;
		s.hdr_len = HDR4;
	}
	put16(tcp, 40000);
	put16(tcp + 2, 5201);
	put32(tcp + 4, seq);
	put32(tcp + 8, 777);
	tcp[12] = 8 << 4;
	tcp[13] = flags;
	put16(tcp + 14, 2048);
	put16(tcp + 16, seq ^ 0xaaaa); /* some checksum: differs per segment */
	memcpy(tcp + 20, "\x01\x01\x08\x0a", 4);
	put32(tcp + 24, tsval);
	put32(tcp + 28, 4242);
	s.frame_len = s.hdr_len + payload;
	return s;
}

#define ACK 0x10
#define PSH 0x08

static struct tso_seg parsed(const struct seg *s)
{
	struct tso_seg t;

	assert_true(tso_parse(s->b, s->hdr_len, s->frame_len, &t));
	return t;
}

static bool append(struct tso_frame *f, const struct seg *s, unsigned int max)
{
	struct tso_seg t = parsed(s);

	return tso_append(f, s->b, &t, max);
}

static void test_parse(void **state)
{
	struct seg s = mk(0, 1000, MSS, ACK, 5, 1);
	struct tso_seg t = parsed(&s);

	(void)state;
	assert_int_equal(t.l2_len, 14);
	assert_int_equal(t.l3_len, 20);
	assert_int_equal(t.l4_len, 32);
	assert_int_equal(t.payload, MSS);
	assert_int_equal(t.seq, 1000);
	assert_false(t.ipv6);
	s = mk(1, 1000, 100, ACK | PSH, 5, 1);
	t = parsed(&s);
	assert_true(t.ipv6);
	assert_int_equal(t.l3_len, 40);
	assert_int_equal(t.payload, 100);
}

/* What TSO must not carry, and frames it cannot read. */
static void test_parse_refuses(void **state)
{
	struct tso_seg t;
	struct seg s;
	static const uint8_t flags[] = { ACK | 0x01, ACK | 0x02, ACK | 0x04, ACK | 0x20,
					 ACK | 0x40, ACK | 0x80, PSH,	     0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(flags); i++) { /* FIN, SYN, RST, URG, ECE, CWR, no ACK */
		s = mk(0, 1, MSS, flags[i], 5, 1);
		assert_false(tso_parse(s.b, s.hdr_len, s.frame_len, &t));
	}
	s = mk(0, 1, 0, ACK, 5, 1); /* a pure ACK */
	assert_false(tso_parse(s.b, s.hdr_len, s.frame_len, &t));
	s = mk(0, 1, MSS, ACK, 5, 1);
	put16(s.b + 14 + 6, 0x2000); /* MF: a fragment */
	assert_false(tso_parse(s.b, s.hdr_len, s.frame_len, &t));
	s = mk(0, 1, MSS, ACK, 5, 1);
	s.b[14 + 9] = 17; /* UDP */
	assert_false(tso_parse(s.b, s.hdr_len, s.frame_len, &t));
	s = mk(0, 1, MSS, ACK, 5, 1);
	assert_false(tso_parse(s.b, s.hdr_len - 1, s.frame_len, &t)); /* options cut off */
	assert_false(tso_parse(s.b, s.hdr_len, s.frame_len - 1, &t)); /* IP longer than frame */
	assert_false(tso_parse(s.b, 13, 13, &t));
	s = mk(1, 1, MSS, ACK, 5, 1);
	s.b[14 + 6] = 0; /* a hop-by-hop header before TCP */
	assert_false(tso_parse(s.b, s.hdr_len, s.frame_len, &t));
	s = mk(0, 1, MSS, ACK, 5, 1);
	s.b[14 + 20 + 12] = 4 << 4; /* data offset under 20 */
	assert_false(tso_parse(s.b, s.hdr_len, s.frame_len, &t));
}

/* Full segments, then a short last one with PSH: one frame, headers for it. */
static void test_merge_and_finish(void **state)
{
	struct tso_frame f;
	struct seg s[4];
	struct tso_seg t;
	int i;

	(void)state;
	for (i = 0; i < 3; i++)
		s[i] = mk(0, 1000 + (uint32_t)i * MSS, MSS, ACK, 5, (uint16_t)(7 + i));
	s[3] = mk(0, 1000 + 3 * MSS, 500, ACK | PSH, 5, 10);
	t = parsed(&s[0]);
	tso_start(&f, s[0].b, &t);
	for (i = 1; i < 4; i++) /* ip id and checksums differ: they may */
		assert_true(append(&f, &s[i], 45));
	assert_int_equal(f.nsegs, 4);
	assert_int_equal(f.payload, 3 * MSS + 500);
	assert_true(f.closed); /* short and PSH: nothing may follow */
	assert_false(append(&f, &s[3], 45));
	tso_finish(&f, s[0].b);
	assert_int_equal(s[0].b[14 + 2] << 8 | s[0].b[14 + 3], 20 + 32 + 3 * MSS + 500);
	assert_int_equal(s[0].b[14 + 20 + 13], ACK | PSH);
	/* IPv6: the payload length */
	s[0] = mk(1, 1, MSS, ACK, 5, 0);
	s[1] = mk(1, 1 + MSS, MSS, ACK, 5, 0);
	t = parsed(&s[0]);
	tso_start(&f, s[0].b, &t);
	assert_true(append(&f, &s[1], 45));
	tso_finish(&f, s[0].b);
	assert_int_equal(s[0].b[14 + 4] << 8 | s[0].b[14 + 5], 32 + 2 * MSS);
	assert_int_equal(s[0].b[14 + 40 + 13], ACK);
}

/* Anything the NIC would copy wrongly into the cut segments ends the frame. */
static void test_what_does_not_merge(void **state)
{
	struct tso_frame f;
	struct seg a = mk(0, 1000, MSS, ACK, 5, 1), b;
	struct tso_seg t = parsed(&a);
	const uint32_t next = 1000 + MSS;

	(void)state;
	tso_start(&f, a.b, &t);
	b = mk(0, next + 1, MSS, ACK, 5, 2); /* a gap */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS, ACK, 6, 2); /* another timestamp */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS + 1, ACK, 5, 2); /* bigger than the cut */
	assert_false(append(&f, &b, 45));
	b = mk(1, next, MSS, ACK, 5, 2); /* the other family */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS, ACK, 5, 2);
	put32(b.b + 14 + 20 + 8, 778); /* another ack */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS, ACK, 5, 2);
	put16(b.b + 14 + 20 + 14, 2049); /* another window */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS, ACK, 5, 2);
	b.b[14 + 20 + 3]++; /* another port */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS, ACK, 5, 2);
	b.b[14 + 16 + 3]++; /* another destination */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS, ACK, 5, 2);
	b.b[14 + 8]--; /* another TTL */
	assert_false(append(&f, &b, 45));
	b = mk(0, next, MSS, ACK, 5, 2);
	b.b[5]++; /* another MAC */
	assert_false(append(&f, &b, 45));
	assert_int_equal(f.nsegs, 1);
	b = mk(0, next, MSS, ACK, 5, 2); /* and the right one does */
	assert_true(append(&f, &b, 45));
	/* a frame that starts with PSH takes nothing more */
	a = mk(0, 1000, MSS, ACK | PSH, 5, 1);
	t = parsed(&a);
	tso_start(&f, a.b, &t);
	b = mk(0, next, MSS, ACK, 5, 2);
	assert_false(append(&f, &b, 45));
}

/* At most max_segs segments, and at most 64 KiB of IP packet. */
static void test_limits(void **state)
{
	struct tso_frame f;
	struct seg a = mk(0, 0, MSS, ACK, 5, 0), b;
	struct tso_seg t = parsed(&a);
	uint32_t i;

	(void)state;
	tso_start(&f, a.b, &t);
	for (i = 1; i < 4; i++) {
		b = mk(0, i * MSS, MSS, ACK, 5, 0);
		assert_true(append(&f, &b, 4));
	}
	b = mk(0, 4 * MSS, MSS, ACK, 5, 0);
	assert_false(append(&f, &b, 4));
	tso_start(&f, a.b, &t);
	for (i = 1; (uint32_t)20 + 32 + (i + 1) * MSS <= TSO_MAX_BYTES; i++) {
		b = mk(0, i * MSS, MSS, ACK, 5, 0);
		assert_true(append(&f, &b, 1000));
	}
	b = mk(0, i * MSS, MSS, ACK, 5, 0);
	assert_false(append(&f, &b, 1000));
	assert_true(20 + 32 + f.payload <= TSO_MAX_BYTES);
	assert_int_equal(f.nsegs, 45);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_merge_and_finish),
		cmocka_unit_test(test_what_does_not_merge),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
