// SPDX-License-Identifier: MIT
/*
 * test/test_frame.c - the frame parser (nic/frame.c): well-formed frames are
 * described exactly; every truncation of them, every impossible length and
 * every malformed TCP option is refused with the right verdict; the flow
 * hash matches the published RSS (Toeplitz) verification values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

static size_t put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

/* Ethernet + IPv4 + TCP with opts (padded to 4 by the caller) + payload. */
static size_t build_tcp4(uint8_t *f, const uint8_t *opts, size_t optlen, size_t payload)
{
	size_t doff = 20 + optlen, total = 20 + doff + payload;
	uint8_t *ip = f + 14, *tcp = ip + 20;

	memset(f, 0, 14 + total);
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)total);
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, (uint8_t[]){ 66, 9, 149, 187 }, 4);
	memcpy(ip + 16, (uint8_t[]){ 161, 142, 100, 80 }, 4);
	put16(tcp, 2794);
	put16(tcp + 2, 1766);
	tcp[12] = (uint8_t)(doff / 4) << 4;
	tcp[13] = 0x02;
	if (optlen)
		memcpy(tcp + 20, opts, optlen);
	memset(tcp + doff, 'p', payload);
	return 14 + total;
}

static const uint8_t syn_opts[] = { 2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10,
				    0, 0, 0,	9,    0, 0, 0, 0, 1, 1, 1, 0 };

static void tcp_syn_described(void **state)
{
	uint8_t f[256];
	size_t len = build_tcp4(f, syn_opts, sizeof(syn_opts), 5);
	struct frame_info fi;

	(void)state;
	assert_int_equal(frame_parse(f, len, &fi), FRAME_OK);
	assert_int_equal(fi.ethertype, 0x0800);
	assert_int_equal(fi.ip_version, 4);
	assert_int_equal(fi.l4_proto, 6);
	assert_int_equal(fi.l3_off, 14);
	assert_int_equal(fi.l4_off, 34);
	assert_int_equal(fi.sport, 2794);
	assert_int_equal(fi.dport, 1766);
	assert_int_equal(fi.tcp_flags, 0x02);
	assert_int_equal(fi.tcp.mss, 1460);
	assert_int_equal(fi.tcp.wscale, 7);
	assert_true(fi.tcp.sack_ok);
	assert_true(fi.tcp.has_ts);
	assert_int_equal(fi.tcp.ts_val, 9);
	assert_int_equal(fi.payload_off, 34 + 20 + sizeof(syn_opts));
	assert_int_equal(fi.payload_len, 5);
	assert_false(fi.fragment);
}

/* Every prefix of a good frame is refused as truncated, never read past. */
static void every_truncation_refused(void **state)
{
	uint8_t f[256];
	size_t len = build_tcp4(f, syn_opts, sizeof(syn_opts), 5), n;
	struct frame_info fi;

	(void)state;
	for (n = 0; n < len; n++) {
		uint8_t *copy = test_malloc(n ? n : 1); /* ASan sees a read past n */

		memcpy(copy, f, n);
		assert_int_equal(frame_parse(copy, n, &fi), FRAME_TRUNCATED);
		test_free(copy);
	}
	/* padding after the datagram (short Ethernet frames) is fine */
	memset(f + len, 0, 10);
	assert_int_equal(frame_parse(f, len + 10, &fi), FRAME_OK);
	assert_int_equal(fi.payload_len, 5);
}

static void bad_ip_headers(void **state)
{
	uint8_t f[256];
	size_t len = build_tcp4(f, NULL, 0, 0);
	struct frame_info fi;

	(void)state;
	f[14] = 0x44; /* IHL 4: shorter than the fixed header */
	assert_int_equal(frame_parse(f, len, &fi), FRAME_BAD_L3);
	f[14] = 0x55; /* version 5 */
	assert_int_equal(frame_parse(f, len, &fi), FRAME_BAD_L3);
	f[14] = 0x4f; /* IHL 60 bytes, total 80: past the 40 bytes that came */
	put16(f + 16, 80);
	assert_int_equal(frame_parse(f, len, &fi), FRAME_TRUNCATED);
	put16(f + 16, 40); /* IHL 60 in a datagram of 40 */
	assert_int_equal(frame_parse(f, len, &fi), FRAME_BAD_L3);
	f[14] = 0x45;
	put16(f + 16, 19); /* total length below the header */
	assert_int_equal(frame_parse(f, len, &fi), FRAME_BAD_L3);
	put16(f + 16, 0xffff); /* more than arrived */
	assert_int_equal(frame_parse(f, len, &fi), FRAME_TRUNCATED);
}

static void bad_tcp_headers(void **state)
{
	uint8_t f[256];
	size_t len = build_tcp4(f, NULL, 0, 8);
	struct frame_info fi;

	(void)state;
	f[34 + 12] = 4 << 4; /* data offset 16 bytes */
	assert_int_equal(frame_parse(f, len, &fi), FRAME_BAD_L4);
	f[34 + 12] = 15 << 4; /* 60 bytes of header in a 28-byte segment */
	assert_int_equal(frame_parse(f, len, &fi), FRAME_TRUNCATED);
}

static enum frame_verdict with_opts(const uint8_t *opts, size_t n, struct frame_info *fi)
{
	uint8_t f[256];

	return frame_parse(f, build_tcp4(f, opts, n, 0), fi);
}

static void bad_tcp_options(void **state)
{
	struct frame_info fi;

	(void)state;
	/* a length of 0 or 1 would loop for ever or read the next option's kind */
	assert_int_equal(with_opts((uint8_t[]){ 2, 0, 0, 0 }, 4, &fi), FRAME_BAD_OPTIONS);
	assert_int_equal(with_opts((uint8_t[]){ 99, 1, 0, 0 }, 4, &fi), FRAME_BAD_OPTIONS);
	/* an option that runs past the option space */
	assert_int_equal(with_opts((uint8_t[]){ 1, 1, 99, 9 }, 4, &fi), FRAME_BAD_OPTIONS);
	/* a kind with no room for its length */
	assert_int_equal(with_opts((uint8_t[]){ 1, 1, 1, 2 }, 4, &fi), FRAME_BAD_OPTIONS);
	/* wrong fixed lengths: MSS, window scale, SACK permitted, timestamps */
	assert_int_equal(with_opts((uint8_t[]){ 2, 3, 5, 1 }, 4, &fi), FRAME_BAD_OPTIONS);
	assert_int_equal(with_opts((uint8_t[]){ 3, 4, 7, 0 }, 4, &fi), FRAME_BAD_OPTIONS);
	assert_int_equal(with_opts((uint8_t[]){ 4, 3, 0, 0 }, 4, &fi), FRAME_BAD_OPTIONS);
	assert_int_equal(with_opts((uint8_t[]){ 8, 8, 0, 0, 0, 0, 0, 0 }, 8, &fi),
			 FRAME_BAD_OPTIONS);
	/* a window shift beyond 14 */
	assert_int_equal(with_opts((uint8_t[]){ 3, 3, 15, 0 }, 4, &fi), FRAME_BAD_OPTIONS);
	/* SACK: a partial block, and five blocks */
	assert_int_equal(with_opts((uint8_t[]){ 5, 6, 0, 0, 0, 0, 0, 0 }, 8, &fi),
			 FRAME_BAD_OPTIONS);
	{
		uint8_t five[40] = { 5, 42 }; /* five blocks cannot fit in 40 bytes */

		assert_int_equal(with_opts(five, sizeof(five), &fi), FRAME_BAD_OPTIONS);
	}
	/* good: two SACK blocks, an unknown option skipped by its length, then EOL */
	{
		uint8_t ok[28] = { 1, 1, 5, 18 };

		ok[20] = 253;
		ok[21] = 4;
		assert_int_equal(with_opts(ok, sizeof(ok), &fi), FRAME_OK);
		assert_int_equal(fi.tcp.nsack, 2);
		assert_int_equal(fi.tcp.wscale, -1);
	}
}

static void udp_lengths(void **state)
{
	uint8_t f[64] = { 0 };
	uint8_t *ip = f + 14, *udp = ip + 20;
	struct frame_info fi;

	(void)state;
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, 20 + 12);
	ip[9] = 17;
	put16(udp, 53);
	put16(udp + 2, 5353);
	put16(udp + 4, 12);
	assert_int_equal(frame_parse(f, 14 + 32, &fi), FRAME_OK);
	assert_int_equal(fi.payload_len, 4);
	put16(udp + 4, 7);
	assert_int_equal(frame_parse(f, 14 + 32, &fi), FRAME_BAD_L4);
	put16(udp + 4, 13); /* longer than the datagram */
	assert_int_equal(frame_parse(f, 14 + 32, &fi), FRAME_TRUNCATED);
	/* ... unless this is a first fragment: the datagram goes on in the next ones */
	put16(udp + 4, 1487);
	put16(ip + 6, 0x2000); /* more fragments, offset 0 */
	assert_int_equal(frame_parse(f, 14 + 32, &fi), FRAME_OK);
	assert_true(fi.fragment);
	assert_int_equal(fi.sport, 53);
	assert_int_equal(fi.payload_len, 4);
}

static void vlans_arp_fragments(void **state)
{
	uint8_t f[128] = { 0 };
	struct frame_info fi;
	size_t len;

	(void)state;
	/* ARP with 6/4 addresses: ok; claiming 16-byte hardware addresses: refused */
	put16(f + 12, 0x0806);
	put16(f + 14, 1);
	put16(f + 16, 0x0800);
	f[18] = 6;
	f[19] = 4;
	assert_int_equal(frame_parse(f, 14 + 28, &fi), FRAME_OK);
	assert_int_equal(frame_parse(f, 14 + 27, &fi), FRAME_TRUNCATED);
	f[18] = 16;
	assert_int_equal(frame_parse(f, 14 + 28, &fi), FRAME_BAD_L3);

	/* three VLAN tags: refused; one: its id reported */
	memset(f, 0, sizeof(f));
	put16(f + 12, 0x8100);
	put16(f + 14, 42);
	put16(f + 16, 0x8100);
	put16(f + 18, 43);
	put16(f + 20, 0x88a8);
	put16(f + 22, 44);
	put16(f + 24, 0x0800);
	assert_int_equal(frame_parse(f, 64, &fi), FRAME_BAD_L2);
	put16(f + 16, 0x0806); /* one tag, then ARP claiming 44-byte protocol addresses */
	assert_int_equal(frame_parse(f, 64, &fi), FRAME_TRUNCATED);
	assert_int_equal(fi.vlan, 42);
	assert_int_equal(fi.ethertype, 0x0806);

	/* a later IPv4 fragment: no L4 header is read from it */
	len = build_tcp4(f, NULL, 0, 0);
	put16(f + 14 + 6, 0x0010);
	assert_int_equal(frame_parse(f, len, &fi), FRAME_OK);
	assert_true(fi.fragment);
	assert_int_equal(fi.sport, 0);
}

static void ipv6_extension_chain(void **state)
{
	uint8_t f[256] = { 0 };
	uint8_t *ip = f + 14, *h;
	struct frame_info fi;
	int i;

	(void)state;
	put16(f + 12, 0x86dd);
	ip[0] = 0x60;
	ip[6] = 0; /* hop-by-hop */
	ip[7] = 64;
	h = ip + 40;
	h[0] = 17; /* then UDP */
	h[1] = 0;
	put16(h + 8, 1000);
	put16(h + 10, 2000);
	put16(h + 12, 8);
	put16(ip + 4, 16);
	assert_int_equal(frame_parse(f, 14 + 40 + 16, &fi), FRAME_OK);
	assert_int_equal(fi.l4_proto, 17);
	assert_int_equal(fi.sport, 1000);
	assert_int_equal(fi.l4_off, 14 + 48);
	/* an extension header claiming more than the payload */
	h[1] = 5;
	assert_int_equal(frame_parse(f, 14 + 40 + 16, &fi), FRAME_TRUNCATED);
	/* a chain of 9 destination-options headers: refused, not walked for ever */
	ip[6] = 60;
	for (i = 0; i < 9; i++) {
		h = ip + 40 + 8 * i;
		h[0] = 60;
		h[1] = 0;
	}
	put16(ip + 4, 9 * 8);
	assert_int_equal(frame_parse(f, 14 + 40 + 72, &fi), FRAME_BAD_L3);
}

/* Microsoft's RSS verification values (the default key). */
static void toeplitz_matches_rss(void **state)
{
	uint8_t f[256];
	struct frame_info fi;

	(void)state;
	assert_int_equal(frame_parse(f, build_tcp4(f, NULL, 0, 0), &fi), FRAME_OK);
	assert_int_equal(frame_flow_hash(&fi, NULL), 0x51ccc178);
	fi.l4_proto = 0; /* addresses only */
	assert_int_equal(frame_flow_hash(&fi, NULL), 0x323e8fc2);

	memcpy(fi.src, (uint8_t[]){ 199, 92, 111, 2 }, 4);
	memcpy(fi.dst, (uint8_t[]){ 65, 69, 140, 83 }, 4);
	fi.sport = 14230;
	fi.dport = 4739;
	fi.l4_proto = 6;
	assert_int_equal(frame_flow_hash(&fi, NULL), 0xc626b0ea);
	fi.l4_proto = 0;
	assert_int_equal(frame_flow_hash(&fi, NULL), 0xd718262a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tcp_syn_described),	cmocka_unit_test(every_truncation_refused),
		cmocka_unit_test(bad_ip_headers),	cmocka_unit_test(bad_tcp_headers),
		cmocka_unit_test(bad_tcp_options),	cmocka_unit_test(udp_lengths),
		cmocka_unit_test(vlans_arp_fragments),	cmocka_unit_test(ipv6_extension_chain),
		cmocka_unit_test(toeplitz_matches_rss),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
