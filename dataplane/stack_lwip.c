// SPDX-License-Identifier: MIT
/*
 * dataplane/stack_lwip.c - lwIP on a DPDK queue (stack.h).
 *
 * Two builds of lwIP fit here. Ours (CIRCNET_LWIP_OWN: Debian's source,
 * lwip/lwipopts.h) is NO_SYS: scaled 1 MiB windows, SACK, timestamps, a
 * 10 ms TCP timer, and checksums left to the port when it offers them.
 * Debian's liblwip is built for the Hurd with NO_SYS=0, but it does not
 * need its tcpip thread: lwip_init() sets it up, sys_check_timeouts() runs
 * its timers from our loop, and its core-locking check stays quiet while no
 * tcpip thread was ever marked. Either way the whole stack runs on the
 * polling thread, called from one place, and never takes a lock.
 *
 * Receive: each mbuf becomes a custom pbuf that points into it (its
 * bookkeeping lives in the mbuf's private area; a multi-segment frame is
 * copied into one pbuf instead). The frame parser (nic/frame.c) checks it
 * before lwIP trusts a length in it; lwIP parses it in place and TCP keeps
 * it until the relay copies it into the circuit, and freeing the pbuf frees
 * the mbuf. Send: lwIP hands us a pbuf chain, copied into an mbuf and sent
 * in bursts at the end of each round. On a port with TSO (our build), a
 * connection's consecutive segments become one frame of up to 64 KiB
 * (nic/tso.h): the headers are copied once, each payload into an mbuf
 * chained to it, and the port cuts it again.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_tcp.h>

#include <lwip/etharp.h>
#include <lwip/init.h>
#include <lwip/opt.h>
#include <lwip/netif.h>
#include <lwip/pbuf.h>
#include <lwip/sys.h>
#include <lwip/timeouts.h>
#include <netif/ethernet.h>

#include "../nic/frame.h"
#include "../nic/port.h"
#include "../nic/tso.h"
#include "stack.h"

#ifdef CIRCNET_LWIP_OWN
#include "lwip/lwip_port.h"
#endif

/* lwIP's, from headers whose struct ip6_hdr clashes with DPDK's netinet/ip6.h */
void tcp_tmr(void);
err_t ethip6_output(struct netif *netif, struct pbuf *q, const ip6_addr_t *ip6addr);

#ifdef CIRCNET_LWIP_OWN
/* our build runs tcp_tmr from its own timer list, at a tick fixed in lwipopts.h */
#define STACK_OWN_TIMER	  1
#define STACK_TCP_TICK_MS (2 * TCP_TMR_INTERVAL)
#else
#define STACK_OWN_TIMER	  0
#define STACK_TCP_TICK_MS 0 /* --tcp-tick's, run by tcp_clock() */
#endif

#define RX_BURST 64
#define TX_BURST 64

/* The private area of every mbuf: lwIP's view of it while it holds it. */
struct rx_pbuf {
	struct pbuf_custom pc; /* first: lwIP frees it through pc.custom_free_function */
	struct rte_mbuf *m;
};

static struct {
	struct netif netif;
	struct nic_port *port;
	uint16_t queue;
	bool up;
	struct rte_mbuf *tx[TX_BURST];
	unsigned int ntx;
	uint32_t drop_ppm;
	uint64_t rng;
	uint32_t tcp_tick_ms, next_tick_ms;
	bool tx_csum, rx_csum;	   /* checksums the port computes or verifies, not lwIP */
	struct stack_group *group; /* NULL, or one of several stacks on the port */
	unsigned int index;	   /* ours in group */
	uint32_t port_cursor;	   /* stack_pick_port's next candidate */
	struct stack_counters cnt;
	/* TSO (our build): the frame being built, last in tx[]; NULL when none */
	bool tso_on;
	unsigned int tso_max_segs;
	struct rte_mbuf *tso_m;
	struct tso_frame tso;
} st;

/* Fault injection (tests): true for drop_ppm frames in a million. xorshift64. */
static bool inject_drop(void)
{
	if (!st.drop_ppm)
		return false;
	st.rng ^= st.rng << 13;
	st.rng ^= st.rng >> 7;
	st.rng ^= st.rng << 17;
	if (st.rng % 1000000 >= st.drop_ppm)
		return false;
	st.cnt.injected++;
	return true;
}

uint16_t stack_mbuf_priv_size(void)
{
	return (uint16_t)RTE_ALIGN(sizeof(struct rx_pbuf), RTE_MBUF_PRIV_ALIGN);
}

const struct stack_counters *stack_counters(void)
{
	return &st.cnt;
}

/* the options either build was made with: its lwipopts.h, seen through opt.h */
#ifdef CIRCNET_LWIP_OWN
#define STACK_BUILD "circnet"
#else
#define STACK_BUILD "debian"
#endif
#if LWIP_WND_SCALE
#define STACK_WSCALE TCP_RCV_SCALE
#else
#define STACK_WSCALE 0
#endif
#define STACK_SACK LWIP_TCP_SACK_OUT
#define STACK_TS   LWIP_TCP_TIMESTAMPS

size_t stack_describe(bool json, char *buf, size_t len)
{
	unsigned int tick = STACK_OWN_TIMER ? STACK_TCP_TICK_MS : st.tcp_tick_ms;
	int n;

	if (json)
		n = snprintf(buf, len,
			     ",\"tcp\":{\"stack\":\"lwIP %s\",\"build\":\"%s\",\"window\":%u,"
			     "\"wscale\":%d,\"sack\":%s,\"timestamps\":%s,\"tick_ms\":%u,"
			     "\"tx_cksum_by_port\":%s,\"rx_cksum_by_port\":%s}",
			     LWIP_VERSION_STRING, STACK_BUILD, (unsigned int)TCP_WND, STACK_WSCALE,
			     STACK_SACK ? "true" : "false", STACK_TS ? "true" : "false", tick,
			     st.tx_csum ? "true" : "false", st.rx_csum ? "true" : "false");
	else
		n = snprintf(buf, len,
			     "tcp                lwIP %s (%s build): window %u KiB, scale %d, "
			     "SACK %s, timestamps %s, tick %u ms; checksums by the port: tx %s, "
			     "rx %s\n",
			     LWIP_VERSION_STRING, STACK_BUILD, (unsigned int)TCP_WND / 1024,
			     STACK_WSCALE, STACK_SACK ? "on" : "off", STACK_TS ? "on" : "off", tick,
			     st.tx_csum ? "yes" : "no", st.rx_csum ? "yes" : "no");
	if (n < 0)
		return 0;
	return (size_t)n < len ? (size_t)n : len - 1;
}

/* ---- send ---- */

static void tso_close(void);

unsigned int stack_flush(void)
{
	unsigned int sent = 0, tries = 0;

	tso_close();
	while (sent < st.ntx && tries++ < 8) {
		sent += rte_eth_tx_burst(st.port->port_id, st.queue, st.tx + sent,
					 (uint16_t)(st.ntx - sent));
	}
	if (sent < st.ntx) {
		/* the wire is behind: what stays is lost, and TCP sends it again */
		st.cnt.tx_full += st.ntx - sent;
		rte_pktmbuf_free_bulk(st.tx + sent, st.ntx - sent);
	}
	st.cnt.tx_frames += sent;
	st.ntx = 0;
	return sent;
}

#ifdef CIRCNET_LWIP_OWN
/*
 * The port computes what lwIP left out (netif_setup): every IPv4 header's
 * checksum, and TCP's from the pseudo-header sum we put in its place, as
 * DPDK's offload contract asks. UDP stays lwIP's: a datagram it fragments
 * has one checksum over all fragments, which no NIC sees whole.
 */
/*
 * The pseudo-header sum the port finishes TCP's checksum from, in place: the
 * headers at m's l2_len and l3_len, IPv4 or IPv6 by its ol_flags (with
 * RTE_MBUF_F_TX_TCP_SEG, DPDK's contract leaves the length out of it).
 */
static void tx_tcp_phdr(struct rte_mbuf *m)
{
	uint8_t *ip = rte_pktmbuf_mtod(m, uint8_t *) + m->l2_len;
	struct rte_tcp_hdr *tcp = (struct rte_tcp_hdr *)(ip + m->l3_len);

	if (m->ol_flags & RTE_MBUF_F_TX_IPV6)
		tcp->cksum = rte_ipv6_phdr_cksum((struct rte_ipv6_hdr *)ip, m->ol_flags);
	else
		tcp->cksum = rte_ipv4_phdr_cksum((struct rte_ipv4_hdr *)ip, m->ol_flags);
}

static bool tx_offload(struct rte_mbuf *m)
{
	uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
	uint16_t len = m->data_len, l3;
	bool tcp = false;

	if (!st.tx_csum)
		return true;
	/*
	 * lwIP built these headers a moment ago: untagged Ethernet, then IPv4
	 * or IPv6 with TCP right behind it (lwIP puts no extension header
	 * before TCP). A short walk finds the offsets; no full parse.
	 */
	if (len < RTE_ETHER_HDR_LEN)
		return false;
	m->l2_len = RTE_ETHER_HDR_LEN;
	switch (rte_be_to_cpu_16(((struct rte_ether_hdr *)f)->ether_type)) {
	case RTE_ETHER_TYPE_IPV4: {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(f + RTE_ETHER_HDR_LEN);

		if (len < RTE_ETHER_HDR_LEN + sizeof(*ip))
			return false;
		l3 = rte_ipv4_hdr_len(ip);
		if (l3 < sizeof(*ip) || RTE_ETHER_HDR_LEN + l3 > len)
			return false;
		tcp = ip->next_proto_id == IPPROTO_TCP &&
		      !(ip->fragment_offset &
			rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK));
		m->l3_len = l3;
		m->ol_flags |= RTE_MBUF_F_TX_IPV4;
		if (st.port->off.tx_ip_cksum) {
			ip->hdr_checksum = 0;
			m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
		}
		if (tcp && st.port->off.tx_l4_cksum &&
		    RTE_ETHER_HDR_LEN + l3 + sizeof(struct rte_tcp_hdr) <= len) {
			m->ol_flags |= RTE_MBUF_F_TX_TCP_CKSUM;
			tx_tcp_phdr(m);
		}
		return true;
	}
	case RTE_ETHER_TYPE_IPV6: {
		struct rte_ipv6_hdr *ip6 = (struct rte_ipv6_hdr *)(f + RTE_ETHER_HDR_LEN);

		l3 = sizeof(*ip6);
		if (len < RTE_ETHER_HDR_LEN + l3)
			return false;
		if (ip6->proto != IPPROTO_TCP || !st.port->off.tx_l4_cksum)
			return true; /* ND, ICMPv6, UDP: lwIP summed them */
		if (RTE_ETHER_HDR_LEN + l3 + sizeof(struct rte_tcp_hdr) > len)
			return false;
		m->l3_len = l3;
		m->ol_flags |= RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_TCP_CKSUM;
		tx_tcp_phdr(m);
		return true;
	}
	default:
		return true; /* ARP */
	}
}
#else
static bool tx_offload(struct rte_mbuf *m)
{
	(void)m;
	return true; /* the packaged lwIP computes every checksum itself */
}
#endif

#ifdef CIRCNET_LWIP_OWN
/*
 * The frame being built is complete: with more than one segment in it, its
 * headers now describe all of them and the port cuts it at the first
 * segment's size (the pseudo-header sum without the length, as DPDK's TSO
 * contract asks). One segment stays an ordinary frame.
 */
static void tso_close(void)
{
	struct rte_mbuf *m = st.tso_m;

	if (!m)
		return;
	st.tso_m = NULL;
	if (st.tso.nsegs < 2)
		return;
	tso_finish(&st.tso, rte_pktmbuf_mtod(m, uint8_t *));
	m->ol_flags |= RTE_MBUF_F_TX_TCP_SEG;
	m->l4_len = st.tso.first.l4_len;
	/*
	 * The port may cut anywhere: the payload is one stretch of the byte
	 * stream. At lwIP's segment size, unless the port's frames must be
	 * smaller (net_tap, nic/port.h).
	 */
	m->tso_segsz = (uint16_t)LWIP_MIN(st.tso.first.payload,
					  st.port->tso_max_frame - st.tso.first.l2_len -
						  st.tso.first.l3_len - st.tso.first.l4_len);
	tx_tcp_phdr(m);
	st.cnt.tso_frames++;
	st.cnt.tso_segs += st.tso.nsegs;
}

/*
 * A segment that continues the frame being built: its payload, in an mbuf
 * of its own, is chained to the frame. ERR_OK when it went in; ERR_MEM (the
 * pool is empty: lwIP sends it again) or ERR_VAL (it does not continue the
 * frame: send it as it is) otherwise.
 */
static err_t tso_add(struct pbuf *p, const uint8_t *hdr, const struct tso_seg *s)
{
	struct rte_mbuf *m;
	char *dst;

	if (!st.tso_m)
		return ERR_VAL;
	m = rte_pktmbuf_alloc(st.port->pool);
	if (!m) {
		st.cnt.tx_nombuf++;
		return ERR_MEM;
	}
	if (!tso_append(&st.tso, hdr, s, st.tso_max_segs) ||
	    !(dst = rte_pktmbuf_append(m, s->payload))) {
		rte_pktmbuf_free(m);
		return ERR_VAL;
	}
	pbuf_copy_partial(p, dst, s->payload, (u16_t)(s->l2_len + s->l3_len + s->l4_len));
	rte_pktmbuf_chain(st.tso_m, m); /* (tso_max_segs keeps it within the limit) */
	return ERR_OK;
}
#else
static void tso_close(void)
{
}
#endif

static err_t link_output(struct netif *netif, struct pbuf *p)
{
	struct rte_mbuf *m;
	char *dst;
#ifdef CIRCNET_LWIP_OWN
	uint8_t copy[TSO_HDR_MAX];
	const uint8_t *hdr = NULL;
	struct tso_seg seg;
	bool tso_seg = false;
#endif

	(void)netif;
	if (p->tot_len > st.port->mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN)
		return ERR_BUF;
	if (inject_drop())
		return ERR_OK; /* "sent", and lost on the way */
#ifdef CIRCNET_LWIP_OWN
	if (st.tso_on) {
		err_t e;

		/*
		 * IPv4 only: DPDK 22.11's software GSO (net_tap's TSO) cannot cut
		 * IPv6, so IPv6 TSO could not be tested here. lwIP's first pbuf
		 * holds the headers (the data is chained to it): they are read in
		 * place, and copied out only when they are split across pbufs.
		 */
		hdr = p->payload;
		tso_seg = tso_parse(hdr, p->len, p->tot_len, &seg);
		if (!tso_seg && p->len < p->tot_len && p->len < sizeof(copy)) {
			hdr = copy;
			tso_seg = tso_parse(
				copy,
				pbuf_copy_partial(p, copy,
						  (u16_t)LWIP_MIN(p->tot_len, sizeof(copy)), 0),
				p->tot_len, &seg);
		}
		tso_seg = tso_seg && !seg.ipv6;
		if (tso_seg) {
			e = tso_add(p, hdr, &seg);
			if (e != ERR_VAL)
				return e;
		}
		tso_close(); /* anything else ends the frame being built */
	}
#endif
	m = rte_pktmbuf_alloc(st.port->pool);
	if (!m) {
		st.cnt.tx_nombuf++;
		return ERR_MEM;
	}
	dst = rte_pktmbuf_append(m, p->tot_len);
	if (!dst) {
		rte_pktmbuf_free(m);
		return ERR_BUF;
	}
	pbuf_copy_partial(p, dst, p->tot_len, 0);
	if (!tx_offload(m)) {
		st.cnt.tx_malformed++; /* not what lwIP sends: a bug, not worth a crash */
		rte_pktmbuf_free(m);
		return ERR_BUF;
	}
	st.tx[st.ntx++] = m;
#ifdef CIRCNET_LWIP_OWN
	if (tso_seg) { /* it may begin a frame */
		tso_start(&st.tso, hdr, &seg);
		st.tso_m = m;
	}
#endif
	if (st.ntx == TX_BURST)
		stack_flush();
	return ERR_OK;
}

static err_t netif_setup(struct netif *netif)
{
	netif->name[0] = 'd';
	netif->name[1] = 'p';
	netif->hwaddr_len = ETH_HWADDR_LEN;
	memcpy(netif->hwaddr, st.port->mac, ETH_HWADDR_LEN);
	netif->mtu = st.port->mtu;
	netif->flags =
		NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
	netif->output = etharp_output;
	netif->output_ip6 = ethip6_output; /* neighbour discovery comes with it */
	netif->flags |= NETIF_FLAG_MLD6;
	netif->linkoutput = link_output;
#ifdef CIRCNET_LWIP_OWN
	{
		u16_t chk = NETIF_CHECKSUM_ENABLE_ALL;

		/* TCP's and IPv4's are the port's when it has them both ways */
		if (st.port->off.tx_ip_cksum)
			chk &= (u16_t)~NETIF_CHECKSUM_GEN_IP;
		if (st.port->off.tx_l4_cksum)
			chk &= (u16_t)~NETIF_CHECKSUM_GEN_TCP;
		if (st.port->off.rx_ip_cksum)
			chk &= (u16_t)~NETIF_CHECKSUM_CHECK_IP;
		if (st.port->off.rx_l4_cksum)
			chk &= (u16_t)~NETIF_CHECKSUM_CHECK_TCP;
		NETIF_SET_CHECKSUM_CTRL(netif, chk);
		st.tx_csum = st.port->off.tx_ip_cksum || st.port->off.tx_l4_cksum;
		st.rx_csum = st.port->off.rx_ip_cksum || st.port->off.rx_l4_cksum;
		/* TSO wants the port's checksums and chained mbufs as well */
		st.tso_on = st.tso_on && st.port->off.tso && st.port->off.multi_seg &&
			    st.port->off.tx_ip_cksum && st.port->off.tx_l4_cksum;
		st.tso_max_segs = st.port->tx_max_segs ? LWIP_MIN(st.port->tx_max_segs, 32u) : 32u;
	}
#endif
	return ERR_OK;
}

/* ---- receive ---- */

static void rx_pbuf_free(struct pbuf *p)
{
	struct rx_pbuf *rp = (struct rx_pbuf *)p;

	rte_pktmbuf_free(rp->m);
}

static bool cksum_bad(const struct rte_mbuf *m)
{
	return (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
	       (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_BAD;
}

/* The frame as a pbuf: in place when it is one segment, else a copy (m freed). */
static struct pbuf *rx_pbuf(struct rte_mbuf *m)
{
	struct pbuf *p;

	if (m->nb_segs == 1) {
		struct rx_pbuf *rp = rte_mbuf_to_priv(m);

		rp->m = m;
		rp->pc.custom_free_function = rx_pbuf_free;
		p = pbuf_alloced_custom(PBUF_RAW, m->data_len, PBUF_REF, &rp->pc,
					rte_pktmbuf_mtod(m, void *), m->data_len);
		if (!p)
			rte_pktmbuf_free(m);
		return p;
	}
	p = m->pkt_len <= UINT16_MAX ? pbuf_alloc(PBUF_RAW, (u16_t)m->pkt_len, PBUF_RAM) : NULL;
	if (p) {
		rte_pktmbuf_read(m, 0, m->pkt_len, p->payload);
		st.cnt.rx_copied++;
	}
	rte_pktmbuf_free(m);
	return p;
}

#ifdef CIRCNET_LWIP_OWN
/*
 * lwIP does not check what the port verifies (netif_setup). The port marks
 * each frame: bad ones were dropped already, good ones pass, and any it
 * could not judge (UNKNOWN: an IPv6 extension header, a tunnel) we check
 * here. A TCP segment in IP fragments is judged by nobody, since lwIP checks
 * it after reassembly only when told to: Linux sets DF on all of TCP, so
 * only a broken or hostile sender fragments it, and it is dropped.
 */
/* TCP's checksum over the pseudo-header (RFC 9293, RFC 8200: the upper-layer length) */
static bool tcp_cksum_ok(const uint8_t *f, const struct frame_info *fi)
{
	uint16_t l4len = (uint16_t)(fi->l3_off + fi->l3_len - fi->l4_off);
	const uint8_t *l3 = f + fi->l3_off;
	uint32_t sum;

	if (fi->ip_version == 4)
		sum = rte_raw_cksum(l3 + 12, 8); /* source and destination */
	else
		sum = rte_raw_cksum(l3 + 8, 32);
	sum += rte_cpu_to_be_16(IPPROTO_TCP) + rte_cpu_to_be_16(l4len);
	sum += rte_raw_cksum(f + fi->l4_off, l4len);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static bool rx_cksum_ok(uint64_t ol_flags, const uint8_t *f, const struct frame_info *fi)
{
	uint64_t ipf = ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
	uint64_t l4f = ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
	const void *l3 = f + fi->l3_off;

	if (!st.rx_csum || !fi->ip_version)
		return true;
	if (fi->ip_version == 4 && st.port->off.rx_ip_cksum && ipf != RTE_MBUF_F_RX_IP_CKSUM_GOOD &&
	    rte_raw_cksum(l3, (size_t)(fi->l4_off - fi->l3_off)) != 0xffff)
		return false;
	if (fi->l4_proto != IPPROTO_TCP || !st.port->off.rx_l4_cksum ||
	    l4f == RTE_MBUF_F_RX_L4_CKSUM_GOOD)
		return true;
	if (fi->fragment)
		return false;
	return tcp_cksum_ok(f, fi);
}
#else
static bool rx_cksum_ok(uint64_t ol_flags, const uint8_t *f, const struct frame_info *fi)
{
	(void)ol_flags, (void)f, (void)fi;
	return true; /* the packaged lwIP checks every checksum itself */
}
#endif

/* One frame to lwIP, once the frame parser has checked every length in it. */
/* A frame of ours, into lwIP, once the frame parser has checked every length in it. */
/*
 * A frame of ours into lwIP. parsed: what the frame parser said of this
 * one-segment frame (its bytes are the pbuf's); NULL: parse it here (a
 * multi-segment frame, once copied whole, or one another stack handed over).
 */
static void rx_local(struct rte_mbuf *m, const struct frame_info *parsed)
{
	uint64_t ol_flags = m->ol_flags; /* a copied frame's mbuf is gone below */
	struct frame_info fi;
	struct pbuf *p;

	p = rx_pbuf(m);
	if (!p) {
		st.cnt.rx_nomem++;
		return;
	}
	/* one contiguous pbuf either way: p->len is the whole frame */
	if (!parsed) {
		if (frame_parse(p->payload, p->len, &fi) != FRAME_OK) {
			st.cnt.rx_malformed++;
			pbuf_free(p);
			return;
		}
		parsed = &fi;
	}
	if (!rx_cksum_ok(ol_flags, p->payload, parsed)) {
		st.cnt.rx_bad_cksum++;
		pbuf_free(p);
		return;
	}
	/* ethernet_input frees p, whatever becomes of the frame */
	if (st.netif.input(p, &st.netif) != ERR_OK)
		pbuf_free(p);
}

/* ---- several stacks on one port (stack.h: struct stack_group) ---- */

enum steer { STEER_FLOW, STEER_FIRST, STEER_ALL };

/* The stack a TCP flow belongs to: the queue the port's RSS gives it. */
static unsigned int flow_owner(const struct frame_info *fi)
{
	uint32_t h = frame_flow_hash(fi, st.group->rss_key);

	if (st.group->reta_size)
		h %= st.group->reta_size;
	return h % st.group->n;
}

static enum steer steer_of(const struct frame_info *fi, const uint8_t *f)
{
	if (fi->ethertype == RTE_ETHER_TYPE_ARP) /* replies teach every stack */
		return rte_be_to_cpu_16(*(const uint16_t *)(f + fi->l3_off + 6)) == 2 ? STEER_ALL
										      : STEER_FIRST;
	if (fi->l4_proto == IPPROTO_TCP && !fi->fragment)
		return STEER_FLOW;
	if (fi->l4_proto == IPPROTO_ICMPV6 && !fi->fragment &&
	    (f[fi->l4_off] == 134 || f[fi->l4_off] == 136 || f[fi->l4_off] == 137))
		return STEER_ALL; /* router and neighbour adverts, redirects */
	return STEER_FIRST;	  /* UDP, ICMP, fragments, solicitations: stack 0's */
}

static void give(unsigned int to, struct rte_mbuf *m)
{
	if (rte_ring_mp_enqueue(st.group->inbox[to], m)) {
		st.cnt.inbox_full++;
		rte_pktmbuf_free(m);
	} else {
		st.cnt.handed_over++;
	}
}

/* True if another stack owns the frame and has it now (or a copy: ARP, ND). */
static bool hand_over(struct rte_mbuf *m, const struct frame_info *fi)
{
	const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *);
	unsigned int owner = 0, i;

	switch (steer_of(fi, f)) {
	case STEER_FLOW:
		owner = flow_owner(fi);
		break;
	case STEER_ALL:
		for (i = 0; i < st.group->n; i++) {
			struct rte_mbuf *copy;

			if (i == st.index)
				continue;
			copy = rte_pktmbuf_copy(m, st.port->pool, 0, UINT32_MAX);
			if (copy)
				give(i, copy);
			else
				st.cnt.rx_nomem++;
		}
		return false;
	case STEER_FIRST:
		break;
	}
	if (owner == st.index)
		return false;
	give(owner, m);
	return true;
}

uint16_t stack_pick_port(bool v6, const uint8_t remote[16], uint16_t rport, const uint8_t local[16])
{
	struct frame_info fi;
	unsigned int tries;

	if (!st.group || st.group->n < 2)
		return 0;
	memset(&fi, 0, sizeof(fi));
	fi.ip_version = v6 ? 6 : 4;
	fi.l4_proto = IPPROTO_TCP;
	memcpy(fi.src, remote, 16); /* the reply's view: from the remote, to us */
	memcpy(fi.dst, local, 16);
	fi.sport = rport;
	/* the ephemeral range, 49152-65535; about one in n candidates is ours */
	for (tries = 0; tries < 16384; tries++) {
		fi.dport = (uint16_t)(49152 + st.port_cursor++ % 16384);
		if (flow_owner(&fi) == st.index)
			return fi.dport;
	}
	return 0;
}

static void rx_one(struct rte_mbuf *m)
{
	struct frame_info fi;

	if (inject_drop()) {
		rte_pktmbuf_free(m);
		return;
	}
	if (cksum_bad(m)) {
		st.cnt.rx_bad_cksum++;
		rte_pktmbuf_free(m);
		return;
	}
	if (m->nb_segs != 1) {
		rx_local(m, NULL); /* copied whole first, then parsed */
		return;
	}
	/* parsed once, in the mbuf: for the steering and for lwIP */
	if (frame_parse(rte_pktmbuf_mtod(m, const uint8_t *), m->data_len, &fi) != FRAME_OK) {
		st.cnt.rx_malformed++;
		rte_pktmbuf_free(m);
		return;
	}
	if (st.group && hand_over(m, &fi))
		return;
	rx_local(m, &fi);
}

/* What other queues got for us. */
static unsigned int rx_inbox(void)
{
	struct rte_mbuf *in[RX_BURST];
	unsigned int n, i;

	if (!st.group)
		return 0;
	n = rte_ring_sc_dequeue_burst(st.group->inbox[st.index], (void **)in, RX_BURST, NULL);
	for (i = 0; i < n; i++)
		rx_local(in[i], NULL); /* checked again: the inbox is another core's word */
	st.cnt.taken_over += n;
	return n;
}

/*
 * lwIP's TCP counts time in ticks of its timer: retransmission timeouts,
 * round-trip estimates, delayed ACKs. Its own timer (250 ms) is tuned for
 * small devices: a minimum RTO of about a second and ACKs delayed 250 ms.
 * We run the same timer faster, so that a tick means tcp_tick_ms and not
 * 500 ms: everything in ticks scales together (TIME_WAIT and keep-alive
 * shrink with it, see docs/dpdk.md).
 */

static void tcp_clock(void)
{
	uint32_t now;

	if (!st.tcp_tick_ms || STACK_OWN_TIMER)
		return;
	now = sys_now();
	if ((int32_t)(now - st.next_tick_ms) < 0)
		return;
	st.next_tick_ms = now + st.tcp_tick_ms / 2; /* tcp_tmr: fast every call, slow every 2nd */
	tcp_tmr();
}

unsigned int stack_poll(void)
{
	struct rte_mbuf *rx[RX_BURST];
	uint16_t n, i;

	n = rte_eth_rx_burst(st.port->port_id, st.queue, rx, RX_BURST);
	for (i = 0; i < n; i++) {
		if (i + 1 < n)
			rte_prefetch0(rte_pktmbuf_mtod(rx[i + 1], void *));
		rx_one(rx[i]);
	}
	st.cnt.rx_frames += n;
	n += rx_inbox();
	sys_check_timeouts();
	tcp_clock();
	return n;
}

/* ---- life cycle ---- */

int stack_open(struct nic_port *port, uint16_t q, const struct stack_conf *conf, char *err,
	       size_t errlen)
{
	ip4_addr_t ip, mask, gw;

	if (st.up) {
		snprintf(err, errlen, "one lwIP stack per process: it is up already");
		return -EBUSY;
	}
	memset(&st, 0, sizeof(st));
	st.port = port;
	st.queue = q;
	st.group = conf->group && conf->group->n > 1 ? conf->group : NULL;
	st.index = conf->index;
	st.drop_ppm = conf->drop_ppm;
	st.tso_on = !conf->no_tso; /* and the port can: netif_setup */
	st.tcp_tick_ms = conf->tcp_tick_ms >= 2 ? conf->tcp_tick_ms : 0;
	st.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)rte_rdtsc();
	st.port_cursor = (uint32_t)(st.rng >> 32); /* where stack_pick_port starts */
#ifdef CIRCNET_LWIP_OWN
	if (conf->tcp_tick_ms && conf->tcp_tick_ms != STACK_TCP_TICK_MS) {
		snprintf(err, errlen,
			 "--tcp-tick %u: this lwIP build ticks every %u ms "
			 "(dataplane/lwip/lwipopts.h)",
			 conf->tcp_tick_ms, STACK_TCP_TICK_MS);
		return -EINVAL;
	}
	if (lwip_port_init()) {
		snprintf(err, errlen, "no random numbers for TCP's sequence numbers (getrandom)");
		return -EIO;
	}
	lwip_port_set_gw6(conf->has_gw6 ? conf->gw6 : NULL);
#else
	if (conf->has_gw6) {
		snprintf(err, errlen,
			 "--gw6 needs our lwIP build (the packaged one has no "
			 "next-hop hook): scripts/lwip-source.sh, then rebuild");
		return -EINVAL;
	}
#endif
	lwip_init();
	ip4_addr_set_u32(&ip, conf->ip);
	ip4_addr_set_u32(&mask, conf->mask);
	ip4_addr_set_u32(&gw, conf->gw);
	if (!netif_add(&st.netif, &ip, &mask, &gw, NULL, netif_setup, ethernet_input)) {
		snprintf(err, errlen, "lwIP would not add the interface");
		return -EINVAL;
	}
	netif_set_default(&st.netif);
	/*
	 * IPv6: a link-local address from the MAC, and ours if given (a /64:
	 * lwIP takes the first 64 bits as on-link). Both usable at once: we
	 * are the only holder of the address, as with IPv4 (no DAD wait).
	 */
	netif_create_ip6_linklocal_address(&st.netif, 1);
	netif_ip6_addr_set_state(&st.netif, 0, IP6_ADDR_PREFERRED);
	if (conf->has_ip6) {
		ip6_addr_t a6;
		s8_t idx;

		memcpy(a6.addr, conf->ip6, 16);
		ip6_addr_clear_zone(&a6);
		if (netif_add_ip6_address(&st.netif, &a6, &idx) != ERR_OK) {
			snprintf(err, errlen, "lwIP would not take the IPv6 address");
			return -EINVAL;
		}
		netif_ip6_addr_set_state(&st.netif, idx, IP6_ADDR_PREFERRED);
	}
	netif_set_up(&st.netif);
	netif_set_link_up(&st.netif);
	/* tell the segment who we are now, not at the first connection */
	etharp_gratuitous(&st.netif);
	stack_flush();
	st.up = true;
	return 0;
}

void stack_close(void)
{
	if (!st.up)
		return;
	stack_flush();
	netif_set_down(&st.netif);
	netif_remove(&st.netif);
	st.up = false;
}
