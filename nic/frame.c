// SPDX-License-Identifier: MIT
/*
 * nic/frame.c - the frame parser and the flow hash (frame.h). Each layer
 * reads its header only after checking that the bytes are there, and
 * checks every length it is told against what is left: a header length
 * beyond the frame, a total length shorter than the header, a TCP option
 * that runs past the option space, all end the parse with a verdict.
 * Trailing bytes after the IP datagram (Ethernet padding) are allowed.
 */
#include <string.h>

#include "frame.h"

#define ETH_HLEN     14
#define ETH_P_IPV4   0x0800
#define ETH_P_ARP    0x0806
#define ETH_P_VLAN   0x8100
#define ETH_P_QINQ   0x88a8
#define ETH_P_IPV6   0x86dd
#define PROTO_ICMP   1
#define PROTO_TCP    6
#define PROTO_UDP    17
#define PROTO_ICMPV6 58
#define V6_HOPOPTS   0
#define V6_ROUTING   43
#define V6_FRAGMENT  44
#define V6_DSTOPTS   60

const char *frame_verdict_name(enum frame_verdict v)
{
	static const char *const names[FRAME_VERDICTS] = {
		[FRAME_OK] = "ok",
		[FRAME_TRUNCATED] = "truncated",
		[FRAME_BAD_L2] = "bad link header",
		[FRAME_BAD_L3] = "bad network header",
		[FRAME_BAD_L4] = "bad transport header",
		[FRAME_BAD_OPTIONS] = "bad TCP options",
	};

	return (unsigned int)v < FRAME_VERDICTS ? names[v] : "unknown";
}

/* The TCP options between p and end (both inside the frame). */
static enum frame_verdict tcp_options(const uint8_t *p, const uint8_t *end,
				      struct frame_tcp_opts *o)
{
	while (p < end) {
		uint8_t kind = p[0], olen;

		if (kind == 0) /* end of options */
			break;
		if (kind == 1) { /* no-op */
			p++;
			continue;
		}
		if (end - p < 2)
			return FRAME_BAD_OPTIONS;
		olen = p[1];
		if (olen < 2 || olen > end - p)
			return FRAME_BAD_OPTIONS;
		switch (kind) {
		case 2:
			if (olen != 4)
				return FRAME_BAD_OPTIONS;
			o->mss = frame_rd16(p + 2);
			break;
		case 3:
			if (olen != 3 ||
			    p[2] > 14) /* RFC 7323: a shift above 14 is 14; we refuse */
				return FRAME_BAD_OPTIONS;
			o->wscale = (int8_t)p[2];
			break;
		case 4:
			if (olen != 2)
				return FRAME_BAD_OPTIONS;
			o->sack_ok = true;
			break;
		case 5:
			if (olen < 10 || (olen - 2) % 8 || (olen - 2) / 8 > 4)
				return FRAME_BAD_OPTIONS;
			o->nsack = (uint8_t)((olen - 2) / 8);
			break;
		case 8:
			if (olen != 10)
				return FRAME_BAD_OPTIONS;
			o->has_ts = true;
			o->ts_val = frame_rd32(p + 2);
			o->ts_ecr = frame_rd32(p + 6);
			break;
		default: /* unknown kinds are skipped by their length */
			break;
		}
		p += olen;
	}
	return FRAME_OK;
}

/*
 * L4 at off, up to end (the IP datagram's end). In a first fragment
 * (fi->fragment) the datagram goes on in later frames: a UDP length may
 * exceed what this one holds.
 */
static enum frame_verdict parse_l4(const uint8_t *f, size_t off, size_t end, struct frame_info *fi)
{
	size_t avail = end - off;

	fi->l4_off = (uint16_t)off;
	switch (fi->l4_proto) {
	case PROTO_TCP: {
		size_t doff;

		if (avail < 20)
			return FRAME_TRUNCATED;
		doff = (size_t)(f[off + 12] >> 4) * 4;
		if (doff < 20)
			return FRAME_BAD_L4;
		if (doff > avail)
			return FRAME_TRUNCATED;
		fi->sport = frame_rd16(f + off);
		fi->dport = frame_rd16(f + off + 2);
		fi->tcp_flags = f[off + 13];
		fi->payload_off = (uint16_t)(off + doff);
		fi->payload_len = (uint16_t)(avail - doff);
		return tcp_options(f + off + 20, f + off + doff, &fi->tcp);
	}
	case PROTO_UDP: {
		size_t ulen;

		if (avail < 8)
			return FRAME_TRUNCATED;
		ulen = frame_rd16(f + off + 4);
		if (ulen < 8)
			return FRAME_BAD_L4;
		if (fi->fragment)
			ulen = avail; /* the rest comes in later fragments */
		else if (ulen > avail)
			return FRAME_TRUNCATED;
		fi->sport = frame_rd16(f + off);
		fi->dport = frame_rd16(f + off + 2);
		fi->payload_off = (uint16_t)(off + 8);
		fi->payload_len = (uint16_t)(ulen - 8);
		return FRAME_OK;
	}
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		if (avail < 8)
			return avail < 4 ? FRAME_TRUNCATED : FRAME_BAD_L4;
		fi->payload_off = (uint16_t)(off + 8);
		fi->payload_len = (uint16_t)(avail - 8);
		return FRAME_OK;
	default:
		return FRAME_OK; /* another protocol: the stack decides */
	}
}

static enum frame_verdict parse_ipv4(const uint8_t *f, size_t off, size_t len,
				     struct frame_info *fi)
{
	size_t ihl, total;
	uint16_t frag;

	if (len - off < 20)
		return FRAME_TRUNCATED;
	if (f[off] >> 4 != 4)
		return FRAME_BAD_L3;
	ihl = (size_t)(f[off] & 0xf) * 4;
	total = frame_rd16(f + off + 2);
	if (ihl < 20 || total < ihl)
		return FRAME_BAD_L3;
	if (off + ihl > len || off + total > len)
		return FRAME_TRUNCATED;
	fi->ip_version = 4;
	fi->l3_len = (uint16_t)total;
	fi->l4_proto = f[off + 9];
	memcpy(fi->src, f + off + 12, 4);
	memcpy(fi->dst, f + off + 16, 4);
	frag = frame_rd16(f + off + 6);
	fi->fragment = frag & 0x3fff; /* more fragments, or an offset */
	if (frag & 0x1fff) {
		fi->l4_off = (uint16_t)(off + ihl);
		return FRAME_OK; /* a later fragment: no L4 header in it */
	}
	return parse_l4(f, off + ihl, off + total, fi);
}

static enum frame_verdict parse_ipv6(const uint8_t *f, size_t off, size_t len,
				     struct frame_info *fi)
{
	size_t end, hdr = off + 40;
	uint8_t next;
	int i;

	if (len - off < 40)
		return FRAME_TRUNCATED;
	if (f[off] >> 4 != 6)
		return FRAME_BAD_L3;
	end = hdr + frame_rd16(f + off + 4);
	if (end > len)
		return FRAME_TRUNCATED;
	fi->ip_version = 6;
	fi->l3_len = (uint16_t)(end - off);
	memcpy(fi->src, f + off + 8, 16);
	memcpy(fi->dst, f + off + 24, 16);
	next = f[off + 6];
	for (i = 0; i < FRAME_MAX_EXT6; i++) {
		size_t elen;

		if (next != V6_HOPOPTS && next != V6_ROUTING && next != V6_FRAGMENT &&
		    next != V6_DSTOPTS)
			break;
		if (end - hdr < 8)
			return FRAME_TRUNCATED;
		if (next == V6_FRAGMENT) {
			elen = 8;
			fi->fragment = true;
			if (frame_rd16(f + hdr + 2) & 0xfff8) { /* not the first fragment */
				fi->l4_proto = f[hdr];
				fi->l4_off = (uint16_t)(hdr + 8);
				return FRAME_OK;
			}
		} else {
			elen = ((size_t)f[hdr + 1] + 1) * 8;
		}
		if (elen > end - hdr)
			return FRAME_TRUNCATED;
		next = f[hdr];
		hdr += elen;
	}
	if (i == FRAME_MAX_EXT6)
		return FRAME_BAD_L3; /* a chain that long is an attack, not a packet */
	fi->l4_proto = next;
	return parse_l4(f, hdr, end, fi);
}

enum frame_verdict frame_parse(const uint8_t *f, size_t len, struct frame_info *fi)
{
	size_t off = ETH_HLEN;
	uint16_t type;
	int vlans = 0;

	memset(fi, 0, sizeof(*fi));
	fi->tcp.wscale = -1;
	if (len > UINT16_MAX)
		return FRAME_BAD_L2; /* no Ethernet frame is that long; offsets are 16 bits */
	if (len < ETH_HLEN)
		return FRAME_TRUNCATED;
	type = frame_rd16(f + 12);
	while (type == ETH_P_VLAN || type == ETH_P_QINQ) {
		if (++vlans > FRAME_MAX_VLANS)
			return FRAME_BAD_L2;
		if (len - off < 4)
			return FRAME_TRUNCATED;
		if (!fi->vlan)
			fi->vlan = frame_rd16(f + off) & 0xfff;
		type = frame_rd16(f + off + 2);
		off += 4;
	}
	fi->ethertype = type;
	fi->l3_off = (uint16_t)off;
	switch (type) {
	case ETH_P_IPV4:
		return parse_ipv4(f, off, len, fi);
	case ETH_P_IPV6:
		return parse_ipv6(f, off, len, fi);
	case ETH_P_ARP:
		if (len - off < 8)
			return FRAME_TRUNCATED;
		/* Ethernet/IPv4 ARP is the only kind we answer: 6-byte and 4-byte addresses */
		if (frame_rd16(f + off) == 1 && frame_rd16(f + off + 2) == ETH_P_IPV4 &&
		    (f[off + 4] != 6 || f[off + 5] != 4))
			return FRAME_BAD_L3;
		if (len - off < 8 + 2 * ((size_t)f[off + 4] + f[off + 5]))
			return FRAME_TRUNCATED;
		return FRAME_OK;
	default:
		return FRAME_OK; /* not ours to judge: the stack drops what it does not speak */
	}
}

/* ---- the flow hash ---- */

/* The key RSS NICs ship with (Microsoft's RSS verification key). */
const uint8_t frame_rss_default_key[40] = {
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
	0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
	0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

static uint32_t toeplitz(const uint8_t *key, const uint8_t *in, size_t n)
{
	uint32_t hash = 0, window = frame_rd32(key);
	size_t i;
	int b;

	for (i = 0; i < n; i++) {
		for (b = 7; b >= 0; b--) {
			if (in[i] & (1u << b))
				hash ^= window;
			/* slide the 32-bit window one bit along the key */
			window = window << 1 | ((key[i + 4] >> b) & 1u);
		}
	}
	return hash;
}

uint32_t frame_flow_hash(const struct frame_info *fi, const uint8_t *key)
{
	uint8_t in[36];
	size_t alen = fi->ip_version == 4 ? 4 : 16, n;

	if (fi->ip_version != 4 && fi->ip_version != 6)
		return 0;
	memcpy(in, fi->src, alen);
	memcpy(in + alen, fi->dst, alen);
	n = 2 * alen;
	if (!fi->fragment && (fi->l4_proto == PROTO_TCP || fi->l4_proto == PROTO_UDP)) {
		in[n++] = (uint8_t)(fi->sport >> 8);
		in[n++] = (uint8_t)fi->sport;
		in[n++] = (uint8_t)(fi->dport >> 8);
		in[n++] = (uint8_t)fi->dport;
	}
	return toeplitz(key ? key : frame_rss_default_key, in, n);
}
