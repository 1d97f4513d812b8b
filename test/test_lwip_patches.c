// SPDX-License-Identifier: MIT
/*
 * test/test_lwip_patches.c - our patches to lwIP (dataplane/lwip/patches),
 * driven segment by segment: lwIP connects (or listens) through a netif
 * whose output this test records, and every segment the "peer" sends is
 * built here. The cases are what stock lwIP 2.1 gets wrong. The sender and
 * SACK (0001-sack-recovery.patch):
 *  - one ACK whose SACK blocks cover 3 segments above a hole resends the
 *    hole at once (stock lwIP waits for 3 duplicate ACKs);
 *  - a partial ACK keeps recovery going and resends the next hole;
 *  - the ACK that covers everything sent before recovery ends it;
 *  - a retransmission timeout skips what the peer holds, a second one in a
 *    row resends it all (the peer may have dropped it);
 *  - hostile SACK blocks (inverted, below the ACK, beyond what was sent,
 *    bad lengths) mark nothing and break nothing.
 * Built without the patch (LWIP_TCP_SACK_IN 0), all of these but the last
 * fail. TIME-WAIT (0002-timewait-syn.patch):
 *  - a SYN past the old connection's data opens a new connection (stock
 *    lwIP resets it when it falls in the old window), and one that is not
 *    still does not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <lwip/init.h>
#include <lwip/ip.h>
#include <lwip/ip4.h>
#include <lwip/netif.h>
#include <lwip/pbuf.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/prot/ip4.h>
#include <lwip/prot/tcp.h>
#include <lwip/tcp.h>

#include "lwip_port.h"

#define MSS	 1460
#define NSEG	 10
#define PEER_ISS 1000u

static struct netif nif;
static ip4_addr_t our_ip, peer_ip;
static ip_addr_t peer_addr;	    /* peer_ip, as tcp_connect() takes it (v4 or v6) */
static uint16_t tcp_pcb_local_port; /* our end's port: the peer's segments go there */
static uint16_t peer_port = 80;	    /* the peer's end */

/* What lwIP sent: one entry per TCP segment. */
struct sent {
	uint32_t seq, ack;
	uint16_t len;
	uint8_t flags;
};
static struct sent sent[512];
static int nsent;

static err_t record_output(struct netif *n, struct pbuf *p, const ip4_addr_t *dst)
{
	uint8_t buf[128];
	uint16_t iphl, tcphl, tot;
	const struct tcp_hdr *th;

	(void)n;
	(void)dst;
	assert_true(nsent < (int)(sizeof(sent) / sizeof(sent[0])));
	pbuf_copy_partial(p, buf, sizeof(buf) < p->tot_len ? sizeof(buf) : p->tot_len, 0);
	iphl = (uint16_t)((buf[0] & 0x0f) * 4);
	tot = (uint16_t)(buf[2] << 8 | buf[3]);
	th = (const struct tcp_hdr *)(buf + iphl);
	tcphl = (uint16_t)(TCPH_HDRLEN(th) * 4);
	sent[nsent].seq = lwip_ntohl(th->seqno);
	sent[nsent].ack = lwip_ntohl(th->ackno);
	sent[nsent].len = (uint16_t)(tot - iphl - tcphl);
	sent[nsent].flags = (uint8_t)TCPH_FLAGS(th);
	nsent++;
	return ERR_OK;
}

static err_t nif_init(struct netif *n)
{
	n->output = record_output;
	n->mtu = 1500;
	n->flags = NETIF_FLAG_UP | NETIF_FLAG_LINK_UP;
	NETIF_SET_CHECKSUM_CTRL(n, NETIF_CHECKSUM_DISABLE_ALL);
	return ERR_OK;
}

/* How often lwIP sent data at seq since the log was last cleared. */
static int times_sent(uint32_t seq)
{
	int i, n = 0;

	for (i = 0; i < nsent; i++)
		n += sent[i].len > 0 && sent[i].seq == seq;
	return n;
}

/* The peer's segment: IPv4 + TCP, options as given (padded to 4 bytes). */
static void peer_send(uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *opts, size_t optlen)
{
	size_t padded = (optlen + 3) & ~(size_t)3, tcplen = 20 + padded;
	uint16_t tot = (uint16_t)(20 + tcplen);
	struct pbuf *p = pbuf_alloc(PBUF_RAW, tot, PBUF_RAM);
	uint8_t *b;

	assert_non_null(p);
	b = p->payload;
	memset(b, 0, tot);
	b[0] = 0x45;
	b[2] = (uint8_t)(tot >> 8);
	b[3] = (uint8_t)tot;
	b[8] = 64;
	b[9] = IP_PROTO_TCP;
	memcpy(b + 12, &peer_ip.addr, 4);
	memcpy(b + 16, &our_ip.addr, 4);
	b += 20;
	b[0] = (uint8_t)(peer_port >> 8);
	b[1] = (uint8_t)peer_port;
	b[2] = (uint8_t)(tcp_pcb_local_port >> 8);
	b[3] = (uint8_t)tcp_pcb_local_port;
	b[4] = (uint8_t)(seq >> 24);
	b[5] = (uint8_t)(seq >> 16);
	b[6] = (uint8_t)(seq >> 8);
	b[7] = (uint8_t)seq;
	b[8] = (uint8_t)(ack >> 24);
	b[9] = (uint8_t)(ack >> 16);
	b[10] = (uint8_t)(ack >> 8);
	b[11] = (uint8_t)ack;
	b[12] = (uint8_t)((tcplen / 4) << 4);
	b[13] = flags;
	b[14] = 0xff; /* window 65535 */
	b[15] = 0xff;
	if (optlen)
		memcpy(b + 20, opts, optlen);
	memset(b + 20 + optlen, 1, padded - optlen); /* NOPs */
	assert_int_equal(nif.input(p, &nif), ERR_OK);
}

/* The peer's ACK of ack with SACK blocks (pairs of left, right edges). */
static void peer_ack_sack(uint32_t ack, const uint32_t *edges, int nblocks)
{
	uint8_t o[2 + 2 + 32];
	size_t n = 0;
	int i, k;

	if (nblocks) {
		o[n++] = 1;
		o[n++] = 1;
		o[n++] = 5;
		o[n++] = (uint8_t)(2 + 8 * nblocks);
		for (i = 0; i < 2 * nblocks; i++)
			for (k = 3; k >= 0; k--)
				o[n++] = (uint8_t)(edges[i] >> (8 * k));
	}
	peer_send(PEER_ISS + 1, ack, TCP_ACK, o, n);
}

static struct tcp_pcb *pcb;
static uint32_t seg_seq[NSEG]; /* where each of our data segments starts */

static err_t on_connected(void *arg, struct tcp_pcb *tpcb, err_t err)
{
	(void)arg;
	(void)tpcb;
	return err;
}

/* A connection with SACK agreed, and NSEG full segments sent, none acked. */
static int setup(void **state)
{
	static const uint8_t synack_opts[] = { 2, 4, MSS >> 8, MSS & 0xff, 4, 2 };
	static uint8_t data[NSEG * MSS];
	int i;

	(void)state;
	pcb = tcp_new();
	assert_non_null(pcb);
	nsent = 0;
	assert_int_equal(tcp_connect(pcb, &peer_addr, peer_port, on_connected), ERR_OK);
	tcp_pcb_local_port = pcb->local_port;
	assert_int_equal(nsent, 1); /* the SYN */
	peer_send(PEER_ISS, sent[0].seq + 1, TCP_SYN | TCP_ACK, synack_opts, sizeof(synack_opts));
	assert_int_equal(pcb->state, ESTABLISHED);
	assert_true(pcb->flags & TF_SACK);
	assert_int_equal(pcb->mss, MSS);
	pcb->cwnd = 64 * MSS; /* past slow start: the test is about recovery */
	pcb->ssthresh = 64 * MSS;
	tcp_nagle_disable(pcb);
	nsent = 0;
	assert_int_equal(tcp_write(pcb, data, sizeof(data), TCP_WRITE_FLAG_COPY), ERR_OK);
	assert_int_equal(tcp_output(pcb), ERR_OK);
	assert_int_equal(nsent, NSEG);
	for (i = 0; i < NSEG; i++) {
		seg_seq[i] = sent[i].seq;
		assert_int_equal(sent[i].len, MSS);
	}
	nsent = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tcp_abort(pcb);
	pcb = NULL;
	return 0;
}

static int sacked_count(void)
{
	const struct tcp_seg *s;
	int n = 0;

	for (s = pcb->unacked; s; s = s->next)
		n += (s->flags & TF_SEG_SACKED) != 0;
	for (s = pcb->unsent; s; s = s->next)
		n += (s->flags & TF_SEG_SACKED) != 0;
	return n;
}

/* Run the slow timer until lwIP's retransmission timer fires. */
static void fire_rto(void)
{
	int before = nsent, ticks;

	for (ticks = 0; ticks < 10000 && nsent == before; ticks++)
		tcp_slowtmr();
	assert_true(nsent > before);
}

/* Segment 0 lost; the first ACK SACKs 1-3: the hole goes at once. */
static void test_first_ack_with_sack_resends_the_hole(void **state)
{
	uint32_t blk[] = { seg_seq[1], seg_seq[4] };

	(void)state;
	peer_ack_sack(seg_seq[0], blk, 1);
	assert_int_equal(sacked_count(), 3);
	assert_int_equal(times_sent(seg_seq[0]), 1);
	assert_true(pcb->flags & TF_INFR);
	/* half the flight the windows allowed */
	assert_int_equal(pcb->ssthresh, LWIP_MIN(64 * MSS, 65535) / 2);
}

/* Two SACKed segments above the hole: not lost yet (RFC 6675's DupThresh). */
static void test_two_sacked_are_not_enough(void **state)
{
	uint32_t blk[] = { seg_seq[1], seg_seq[3] };

	(void)state;
	peer_ack_sack(seg_seq[0], blk, 1);
	assert_int_equal(sacked_count(), 2);
	assert_int_equal(times_sent(seg_seq[0]), 0);
	assert_false(pcb->flags & TF_INFR);
}

/* Segments 0 and 5 lost: a partial ACK up to 5 resends 5 and stays in recovery. */
static void test_partial_ack_resends_the_next_hole(void **state)
{
	uint32_t blk1[] = { seg_seq[1], seg_seq[5], seg_seq[6], seg_seq[9] + MSS };
	uint32_t blk2[] = { seg_seq[6], seg_seq[9] + MSS };

	(void)state;
	peer_ack_sack(seg_seq[0], blk1, 2);
	assert_int_equal(times_sent(seg_seq[0]), 1);
	/* the same ACK finds 5 lost too (4 SACKed above it): resent in place of
	   a segment that left the network */
	assert_int_equal(times_sent(seg_seq[5]), 1);
	nsent = 0;
	peer_ack_sack(seg_seq[5], blk2, 1);
	assert_true(pcb->flags & TF_INFR);	     /* partial: recovery goes on */
	assert_int_equal(times_sent(seg_seq[5]), 0); /* once per recovery */
	/* everything sent before recovery, acknowledged: it ends */
	peer_ack_sack(seg_seq[9] + MSS, NULL, 0);
	assert_false(pcb->flags & TF_INFR);
	assert_int_equal(pcb->cwnd, pcb->ssthresh);
	assert_null(pcb->unacked);
}

/* A partial ACK without SACK evidence still resends the segment after it (NewReno). */
static void test_partial_ack_newreno(void **state)
{
	uint32_t blk[] = { seg_seq[1], seg_seq[4] };

	(void)state;
	peer_ack_sack(seg_seq[0], blk, 1); /* enters recovery, resends 0 */
	nsent = 0;
	peer_ack_sack(seg_seq[4], NULL, 0); /* 0 arrived; 4 did not */
	assert_true(pcb->flags & TF_INFR);
	assert_int_equal(times_sent(seg_seq[4]), 1);
}

/* A timeout resends the holes, never what the peer holds. */
static void test_rto_skips_sacked(void **state)
{
	uint32_t blk[] = { seg_seq[2], seg_seq[4] };
	uint32_t ack;
	int i;

	(void)state;
	peer_ack_sack(seg_seq[0], blk, 1); /* 2 and 3 held; not enough for recovery */
	fire_rto();
	assert_int_equal(times_sent(seg_seq[0]), 1);
	/* the peer acks each hole as it fills, SACKing 2-3 until it passes them */
	for (i = 0, ack = seg_seq[1]; i < 3 * NSEG && pcb->unacked; i++) {
		peer_ack_sack(ack, TCP_SEQ_LT(ack, seg_seq[2]) ? blk : NULL,
			      TCP_SEQ_LT(ack, seg_seq[2]) ? 1 : 0);
		/* what lwIP sent last is now at the peer */
		if (nsent && TCP_SEQ_GEQ(sent[nsent - 1].seq + sent[nsent - 1].len, ack))
			ack = sent[nsent - 1].seq + sent[nsent - 1].len;
		if (ack == seg_seq[2])
			ack = seg_seq[4]; /* it held 2 and 3 already */
	}
	assert_null(pcb->unacked);
	assert_null(pcb->unsent);
	assert_int_equal(times_sent(seg_seq[2]), 0);
	assert_int_equal(times_sent(seg_seq[3]), 0);
	for (i = 4; i < NSEG; i++)
		assert_int_equal(times_sent(seg_seq[i]), 1);
}

/* A second timeout before the first one's resending is done: all of it goes. */
static void test_second_rto_forgets_sacks(void **state)
{
	uint32_t blk[] = { seg_seq[2], seg_seq[4] };

	(void)state;
	peer_ack_sack(seg_seq[0], blk, 1);
	assert_int_equal(sacked_count(), 2);
	fire_rto();
	assert_int_equal(sacked_count(), 2);
	fire_rto();
	assert_int_equal(sacked_count(), 0);
}

/* What a hostile peer may write: nothing is marked, nothing breaks. */
static void test_hostile_sack_blocks(void **state)
{
	uint32_t inverted[] = { seg_seq[4], seg_seq[1] };
	uint32_t below[] = { seg_seq[0] - 5 * MSS, seg_seq[0] };
	uint32_t beyond[] = { seg_seq[1], seg_seq[9] + 2 * MSS };
	uint32_t wrapped[] = { seg_seq[1] + 0x80000000u, seg_seq[3] + 0x80000000u };
	/* a SACK option of length 9, one of 250 past the header's end, one of 1 */
	static const uint8_t bad9[] = { 5, 9, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t bad250[] = { 5, 250, 0, 0 };
	static const uint8_t bad1[] = { 5, 1 };
	int i;

	(void)state;
	peer_ack_sack(seg_seq[0], inverted, 1);
	peer_ack_sack(seg_seq[0], below, 1);
	peer_ack_sack(seg_seq[0], beyond, 1);
	peer_ack_sack(seg_seq[0], wrapped, 1);
	peer_send(PEER_ISS + 1, seg_seq[0], TCP_ACK, bad9, sizeof(bad9));
	peer_send(PEER_ISS + 1, seg_seq[0], TCP_ACK, bad250, sizeof(bad250));
	peer_send(PEER_ISS + 1, seg_seq[0], TCP_ACK, bad1, sizeof(bad1));
	assert_int_equal(sacked_count(), 0);
	/* and the connection still works: everything acked */
	peer_ack_sack(seg_seq[9] + MSS, NULL, 0);
	assert_null(pcb->unacked);
	for (i = 0; i < NSEG; i++)
		assert_true(times_sent(seg_seq[i]) <= 1);
}

/* What lwIP sent since the log was cleared: the first segment with these flags, or NULL. */
static const struct sent *sent_with(uint8_t flags)
{
	int i;

	for (i = 0; i < nsent; i++)
		if ((sent[i].flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == flags)
			return &sent[i];
	return NULL;
}

static struct tcp_pcb *accepted;

static err_t on_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	(void)arg;
	(void)err;
	accepted = newpcb;
	return ERR_OK;
}

/* lwIP listens, the peer connects, lwIP closes first: TIME-WAIT. Then SYNs again. */
static void test_timewait_new_syn(void **state)
{
	static const uint8_t syn_opts[] = { 2, 4, MSS >> 8, MSS & 0xff, 4, 2 };
	const uint32_t iss = 5000;
	struct tcp_pcb *l = tcp_new(), *lp;
	const struct sent *s;
	uint32_t our;

	(void)state;
	assert_non_null(l);
	assert_int_equal(tcp_bind(l, IP_ADDR_ANY, 8080), ERR_OK);
	lp = tcp_listen(l);
	assert_non_null(lp);
	tcp_accept(lp, on_accept);
	tcp_pcb_local_port = 8080;
	peer_port = 40000;
	nsent = 0;
	accepted = NULL;
	peer_send(iss, 0, TCP_SYN, syn_opts, sizeof(syn_opts));
	s = sent_with(TCP_SYN | TCP_ACK);
	assert_non_null(s);
	our = s->seq + 1;
	peer_send(iss + 1, our, TCP_ACK, NULL, 0);
	assert_non_null(accepted);
	assert_int_equal(tcp_close(accepted), ERR_OK); /* our FIN first */
	peer_send(iss + 1, our + 1, TCP_ACK | TCP_FIN, NULL, 0);
	assert_int_equal(accepted->state, TIME_WAIT);

	/* an old SYN, at the old connection's own sequence: not a new connection */
	nsent = 0;
	accepted = NULL;
	peer_send(iss, 0, TCP_SYN, syn_opts, sizeof(syn_opts));
	assert_null(sent_with(TCP_SYN | TCP_ACK));
	/* a new one, past what the old connection received (and inside its window) */
	nsent = 0;
	peer_send(iss + 100000, 0, TCP_SYN, syn_opts, sizeof(syn_opts));
	assert_null(sent_with(TCP_RST | TCP_ACK));
	s = sent_with(TCP_SYN | TCP_ACK);
	assert_non_null(s);
	assert_int_equal(s->ack, iss + 100001);
	peer_send(iss + 100001, s->seq + 1, TCP_ACK, NULL, 0);
	assert_non_null(accepted);
	assert_int_equal(accepted->state, ESTABLISHED);
	tcp_abort(accepted);
	tcp_close(lp);
	tcp_pcb_local_port = 0;
	peer_port = 80;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_ack_with_sack_resends_the_hole, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_two_sacked_are_not_enough, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_ack_resends_the_next_hole, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_partial_ack_newreno, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rto_skips_sacked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_rto_forgets_sacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_sack_blocks, setup, teardown),
		cmocka_unit_test(test_timewait_new_syn),
	};

	if (lwip_port_init())
		return 1;
	lwip_init();
	IP4_ADDR(&our_ip, 10, 0, 0, 2);
	IP4_ADDR(&peer_ip, 10, 0, 0, 1);
	ip_addr_copy_from_ip4(peer_addr, peer_ip);
	{
		ip4_addr_t mask, gw;

		IP4_ADDR(&mask, 255, 255, 255, 0);
		ip4_addr_set_zero(&gw);
		if (!netif_add(&nif, &our_ip, &mask, &gw, NULL, nif_init, ip4_input))
			return 1;
	}
	netif_set_default(&nif);
	netif_set_up(&nif);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
