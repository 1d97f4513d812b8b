/* SPDX-License-Identifier: MIT */
/*
 * nic/frame.h - the frame parser: what a received Ethernet frame claims to
 * be, checked against what it is. It owns the validation every frame gets
 * before the stack sees it (a frame off the wire is hostile input: every
 * length and offset is checked against the bytes that arrived) and the
 * flow hash that steers a connection to its core (Toeplitz, the hash RSS
 * NICs compute, so software and hardware steering agree).
 *
 * Pure C over a byte buffer: no DPDK, so it is unit tested and fuzzed in
 * every build.
 */
#ifndef CIRCNET_NIC_FRAME_H
#define CIRCNET_NIC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Big-endian reads from wire bytes, unaligned (shared with nic/tso.c). */
static inline uint16_t frame_rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t frame_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum frame_verdict {
	FRAME_OK = 0,
	FRAME_TRUNCATED,   /* a header or a claimed length runs past the frame */
	FRAME_BAD_L2,	   /* too many VLAN tags */
	FRAME_BAD_L3,	   /* IP version, header length, total length, ARP shape */
	FRAME_BAD_L4,	   /* TCP data offset, UDP length, ICMP too short */
	FRAME_BAD_OPTIONS, /* a TCP option with an impossible length or value */
	FRAME_VERDICTS,
};

#define FRAME_MAX_VLANS 2
#define FRAME_MAX_EXT6	8 /* IPv6 extension headers walked before giving up */

struct frame_tcp_opts {
	uint16_t mss;  /* 0: absent */
	int8_t wscale; /* -1: absent; else 0..14 */
	bool sack_ok;  /* SACK permitted */
	uint8_t nsack; /* SACK blocks carried (0..4) */
	bool has_ts;
	uint32_t ts_val, ts_ecr;
};

struct frame_info {
	uint16_t ethertype;		   /* after any VLAN tags, host order */
	uint16_t vlan;			   /* the outer VLAN id, 0: untagged */
	uint8_t ip_version;		   /* 4, 6, or 0 (ARP, other) */
	uint8_t l4_proto;		   /* IPPROTO_TCP, _UDP, _ICMP, _ICMPV6, ... (0: not IP) */
	bool fragment;			   /* an IP fragment; L4 parsed only for the first */
	uint16_t l3_off, l4_off;	   /* from the frame's start */
	uint16_t payload_off, payload_len; /* L4 payload (0 when not parsed) */
	uint16_t l3_len;		   /* IP total length: what the IP header claims */
	uint8_t src[16], dst[16];	   /* IPv4 in the first 4 bytes */
	uint16_t sport, dport;		   /* host order; 0 when not TCP/UDP */
	uint8_t tcp_flags;
	struct frame_tcp_opts tcp;
};

/* Check and describe one frame of len bytes. */
enum frame_verdict frame_parse(const uint8_t *frame, size_t len, struct frame_info *fi);

const char *frame_verdict_name(enum frame_verdict v);

/*
 * The Toeplitz hash of the flow (addresses, then ports for TCP/UDP) under
 * key (40 bytes; NULL: the well-known default key of RSS NICs). 0 for frames
 * that are not IP.
 */
uint32_t frame_flow_hash(const struct frame_info *fi, const uint8_t *key);

/* That key (Microsoft's): nic/port.c gives it to the NIC, so both hash alike. */
extern const uint8_t frame_rss_default_key[40];

#endif
