// SPDX-License-Identifier: MIT
/*
 * nic/tso.c - one TSO frame out of a TCP sender's consecutive segments
 * (see tso.h for the rules). Headers only: the caller moves the payloads.
 */
#include "tso.h"

#include <string.h>

#include "frame.h"

#define ETH_LEN	       14
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define IPPROTO_TCP_   6
#define TCP_PSH	       0x08
#define TCP_ACK	       0x10

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* IPv4: the header's length; 0 unless a whole, unfragmented TCP packet. */
static uint16_t ipv4_layout(const uint8_t *ip, size_t caplen, size_t avail, uint16_t *ip_len)
{
	uint16_t ihl, total;

	if (caplen < 20 || (ip[0] >> 4) != 4)
		return 0;
	ihl = (uint16_t)((ip[0] & 0x0f) * 4);
	total = frame_rd16(ip + 2);
	if (ihl < 20 || caplen < ihl || total < ihl || total > avail)
		return 0;
	if (frame_rd16(ip + 6) & 0x3fff) /* MF, or an offset: a fragment */
		return 0;
	if (ip[9] != IPPROTO_TCP_)
		return 0;
	*ip_len = total;
	return ihl;
}

/* IPv6: 40; 0 unless TCP follows the fixed header directly. */
static uint16_t ipv6_layout(const uint8_t *ip, size_t caplen, size_t avail, uint16_t *ip_len)
{
	uint32_t total;

	if (caplen < 40 || (ip[0] >> 4) != 6 || ip[6] != IPPROTO_TCP_)
		return 0;
	total = 40u + frame_rd16(ip + 4);
	if (total > avail)
		return 0;
	*ip_len = (uint16_t)(total > UINT16_MAX ? UINT16_MAX : total);
	return total > UINT16_MAX ? 0 : 40;
}

bool tso_parse(const uint8_t *hdr, size_t caplen, size_t frame_len, struct tso_seg *s)
{
	const uint8_t *ip = hdr + ETH_LEN, *tcp;
	uint16_t ethertype, l3, ip_len = 0, l4;

	if (caplen > frame_len || caplen < ETH_LEN)
		return false;
	memset(s, 0, sizeof(*s));
	ethertype = frame_rd16(hdr + 12);
	if (ethertype == ETHERTYPE_IPV4)
		l3 = ipv4_layout(ip, caplen - ETH_LEN, frame_len - ETH_LEN, &ip_len);
	else if (ethertype == ETHERTYPE_IPV6)
		l3 = ipv6_layout(ip, caplen - ETH_LEN, frame_len - ETH_LEN, &ip_len);
	else
		return false;
	if (!l3 || caplen < (size_t)ETH_LEN + l3 + 20u)
		return false;
	tcp = ip + l3;
	l4 = (uint16_t)((tcp[12] >> 4) * 4);
	if (l4 < 20 || caplen < (size_t)ETH_LEN + l3 + l4 || ip_len <= l3 + l4)
		return false; /* options cut off, or no data */
	s->flags = tcp[13];
	if ((s->flags & ~(TCP_ACK | TCP_PSH)) || !(s->flags & TCP_ACK))
		return false; /* SYN, FIN, RST, URG, ECN: sent as they are */
	s->l2_len = ETH_LEN;
	s->l3_len = l3;
	s->l4_len = l4;
	s->payload = (uint16_t)(ip_len - l3 - l4);
	s->seq = frame_rd32(tcp + 4);
	s->ipv6 = ethertype == ETHERTYPE_IPV6;
	return true;
}

void tso_start(struct tso_frame *t, const uint8_t *hdr, const struct tso_seg *s)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->hdr, hdr, (size_t)s->l2_len + s->l3_len + s->l4_len);
	t->first = *s;
	t->next_seq = s->seq + s->payload;
	t->payload = s->payload;
	t->nsegs = 1;
	t->psh = s->flags & TCP_PSH;
	t->closed = t->psh; /* PSH goes on the last segment only */
}

/* bytes [from, to) of a and b equal */
static bool same(const uint8_t *a, const uint8_t *b, size_t from, size_t to)
{
	return memcmp(a + from, b + from, to - from) == 0;
}

/* The headers agree in everything the NIC copies into every segment it cuts. */
static bool same_headers(const struct tso_frame *t, const uint8_t *hdr, const struct tso_seg *s)
{
	const uint8_t *a = t->hdr, *b = hdr;
	size_t ip = s->l2_len, tcp = ip + s->l3_len, end = tcp + s->l4_len;

	if (s->ipv6 != t->first.ipv6 || s->l3_len != t->first.l3_len ||
	    s->l4_len != t->first.l4_len)
		return false;
	if (!same(a, b, 0, ip))
		return false;
	if (s->ipv6) {
		/* all but the payload length */
		if (!same(a, b, ip, ip + 4) || !same(a, b, ip + 6, tcp))
			return false;
	} else {
		/* all but total length, id and checksum */
		if (!same(a, b, ip, ip + 2) || !same(a, b, ip + 6, ip + 10) ||
		    !same(a, b, ip + 12, tcp))
			return false;
	}
	/* ports; ack, data offset; window; urgent pointer and options */
	return same(a, b, tcp, tcp + 4) && same(a, b, tcp + 8, tcp + 13) &&
	       same(a, b, tcp + 14, tcp + 16) && same(a, b, tcp + 18, end);
}

bool tso_append(struct tso_frame *t, const uint8_t *hdr, const struct tso_seg *s,
		unsigned int max_segs)
{
	if (t->closed || t->nsegs >= max_segs)
		return false;
	if (s->seq != t->next_seq || s->payload > t->first.payload)
		return false;
	if ((uint32_t)t->first.l3_len + t->first.l4_len + t->payload + s->payload > TSO_MAX_BYTES)
		return false;
	if (!same_headers(t, hdr, s))
		return false;
	t->payload += s->payload;
	t->next_seq += s->payload;
	t->nsegs++;
	t->psh = s->flags & TCP_PSH;
	/* a short segment is the last: the NIC cuts every other at the first's size */
	t->closed = t->psh || s->payload < t->first.payload;
	return true;
}

void tso_finish(const struct tso_frame *t, uint8_t *hdr)
{
	uint8_t *ip = hdr + t->first.l2_len, *tcp = ip + t->first.l3_len;

	if (t->first.ipv6)
		put_be16(ip + 4, (uint16_t)(t->first.l4_len + t->payload));
	else
		put_be16(ip + 2, (uint16_t)(t->first.l3_len + t->first.l4_len + t->payload));
	if (t->psh)
		tcp[13] |= TCP_PSH;
}
