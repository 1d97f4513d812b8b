/* SPDX-License-Identifier: MIT */
/*
 * nic/tso.h - one TSO frame out of a TCP sender's consecutive segments.
 *
 * lwIP cuts every segment at the MSS itself. A port with TCP segmentation
 * offload takes one frame of up to 64 KiB and cuts it in hardware: one
 * descriptor, one header and no checksum work per 45 segments instead of
 * one each. This module decides, from headers alone, whether a segment
 * continues the frame being built, and rewrites the first segment's
 * headers for the whole frame once it is complete. A segment continues the
 * frame when it has the same Ethernet and IP headers (bar the IPv4 id,
 * lengths and checksum), the same TCP header bar sequence number, flags
 * and checksum (so the same ack, window and options, timestamps
 * included), the next sequence number, plain ACK flags (PSH allowed on the
 * last), and a payload no larger than the first's, which is the size the
 * NIC cuts at: only the last segment may be shorter.
 *
 * Pure C over bytes, no DPDK: tested without a port (test/test_tso.c).
 * The mbufs are the caller's (dataplane/stack_lwip.c).
 */
#ifndef CIRCNET_NIC_TSO_H
#define CIRCNET_NIC_TSO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ethernet (untagged, as lwIP sends), IP with the most options (IPv4: 60), TCP with 40 */
#define TSO_HDR_MAX (14 + 60 + 60)
/* what one frame may carry: IPv4's total length is 16 bits */
#define TSO_MAX_BYTES 65535u

/* An outgoing TCP segment's layout, from tso_parse(). */
struct tso_seg {
	uint16_t l2_len, l3_len, l4_len; /* headers: Ethernet, IP, TCP */
	uint16_t payload;		 /* TCP payload bytes */
	uint32_t seq;
	uint8_t flags; /* TCP flags */
	bool ipv6;
};

/* The frame being built. */
struct tso_frame {
	uint8_t hdr[TSO_HDR_MAX]; /* the first segment's headers */
	struct tso_seg first;
	uint32_t next_seq; /* where the next segment must start */
	uint32_t payload;  /* all segments' payload bytes */
	uint16_t nsegs;	   /* segments in it */
	bool psh;	   /* the last one carried PSH */
	bool closed;	   /* a short or PSH segment ended it */
};

/*
 * Parse a frame lwIP is sending: hdr holds its first caplen bytes (at least
 * its headers), frame_len is its whole length. True for a TCP segment over
 * untagged IPv4 (no fragment) or IPv6 (TCP right after the fixed header)
 * that carries data and has only ACK and PSH set: what TSO may carry.
 */
bool tso_parse(const uint8_t *hdr, size_t caplen, size_t frame_len, struct tso_seg *s);

/* Start a frame with segment s, whose headers are at hdr. */
void tso_start(struct tso_frame *t, const uint8_t *hdr, const struct tso_seg *s);

/*
 * Whether segment s (headers at hdr) continues t, in at most max_segs
 * segments and TSO_MAX_BYTES bytes; if so, t counts it in.
 */
bool tso_append(struct tso_frame *t, const uint8_t *hdr, const struct tso_seg *s,
		unsigned int max_segs);

/*
 * Rewrite the first segment's headers, at hdr (the frame's own bytes), for
 * the whole frame: the IP length, and PSH when its last segment had it. The
 * checksums stay the caller's (the pseudo-header sum the NIC wants differs
 * per offload API).
 */
void tso_finish(const struct tso_frame *t, uint8_t *hdr);

#endif
