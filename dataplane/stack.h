/* SPDX-License-Identifier: MIT */
/*
 * dataplane/stack.h - the user-space TCP/IP stack of the DPDK backend:
 * lwIP (our build of Debian's source, or the packaged liblwip) over one
 * queue pair of a DPDK port (nic/port.h).
 * It owns lwIP's initialisation, the network interface (our address, mask
 * and gateway, ARP, ICMP echo come with it), moving frames between mbufs and
 * pbufs, and lwIP's timers. One per process: lwIP keeps its state in
 * globals, so a second polling core is a second process (docs/dpdk.md).
 *
 * Received frames reach lwIP without a copy (a pbuf that references the
 * mbuf); frames lwIP sends are copied once into an mbuf. Everything runs on
 * the polling thread; nothing here locks.
 */
#ifndef CIRCNET_DATAPLANE_STACK_H
#define CIRCNET_DATAPLANE_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nic_port;
struct rte_ring;

/*
 * Several stacks on one port, one per queue and polling core, in one
 * process (dpdk_main.c loads a copy of the loop module per core: lwIP keeps
 * its state in globals). A TCP flow belongs to the queue the port's RSS
 * gives it; frames another queue got are handed over (rte_ring, no locks).
 * Outbound connections pick their local port so that the remote's replies
 * hash to their own queue. UDP and ICMP live on stack 0. ARP replies and
 * neighbour adverts go to every stack: each keeps its own neighbour cache.
 */
#define STACK_MAX 16

struct stack_group {
	unsigned int n;			   /* stacks (queues) */
	uint16_t reta_size;		   /* the port's RSS table: queue = (hash % size) % n */
	const uint8_t *rss_key;		   /* the key the port hashes with (40 bytes used) */
	struct rte_ring *inbox[STACK_MAX]; /* frames for stack i that another queue got */
};

struct stack_conf {
	uint32_t ip, mask, gw; /* network byte order; gw 0: none (on-link only) */
	bool has_ip6;
	uint8_t ip6[16]; /* an IPv6 address of a /64 (routers: from their adverts) */
	bool has_gw6;
	uint8_t gw6[16];      /* the next hop off the /64; else routers from their adverts */
	uint32_t drop_ppm;    /* fault injection: drop this many per million frames, each way */
	bool no_tso;	      /* send every segment as lwIP cut it, even where the port has TSO */
	uint32_t tcp_tick_ms; /* lwIP's TCP tick (its own: 500 ms); 0: lwIP's */
	struct stack_group *group; /* NULL: the only stack */
	unsigned int index;	   /* ours in the group (= the queue) */
};

struct stack_counters {
	uint64_t rx_frames, tx_frames;
	uint64_t rx_bad_cksum; /* dropped: a wrong checksum (the NIC's verdict or ours) */
	uint64_t rx_copied;    /* multi-segment frames lwIP got as a copy */
	uint64_t rx_malformed; /* dropped: the frame parser refused it (nic/frame.h) */
	uint64_t rx_nomem;     /* dropped: no pbuf */
	uint64_t tx_nombuf;    /* dropped: the pool was empty */
	uint64_t tx_full;      /* dropped: the TX ring stayed full */
	uint64_t tx_malformed; /* dropped: a frame of lwIP's too short for its headers (a bug) */
	uint64_t injected;     /* dropped on purpose (drop_ppm), both ways */
	uint64_t handed_over;  /* frames another stack owns, put in its inbox */
	uint64_t taken_over;   /* frames taken from our inbox */
	uint64_t inbox_full;   /* dropped: the owner's inbox was full */
	uint64_t tso_frames;   /* TSO frames sent (our build, a port with TSO) */
	uint64_t tso_segs;     /* the segments of lwIP's they carried */
};

/*
 * Bring lwIP up on queue q of port (opened, started). Returns 0, or -errno
 * with a one-line reason in err.
 */
int stack_open(struct nic_port *port, uint16_t q, const struct stack_conf *conf, char *err,
	       size_t errlen);
void stack_close(void);

/* Receive one burst into lwIP and run its due timers. Returns frames received. */
unsigned int stack_poll(void);
/* Send what lwIP queued for the wire. Returns frames sent. */
unsigned int stack_flush(void);

const struct stack_counters *stack_counters(void);

/*
 * What TCP this is, for the status view: the lwIP build (ours or Debian's),
 * window, SACK, timestamps, tick, and which checksums the port computes.
 * A text line or a JSON member (",\"tcp\":{...}"). Returns the length.
 */
size_t stack_describe(bool json, char *buf, size_t len);

/*
 * A local port for a connection to remote:rport from local (16-byte
 * addresses, IPv4 in the first 4; ports host order) whose replies the
 * port's RSS gives to this stack's queue: each call the next candidate
 * (one may be taken: bind says). 0 for the only stack: lwIP picks.
 */
uint16_t stack_pick_port(bool v6, const uint8_t remote[16], uint16_t rport,
			 const uint8_t local[16]);

/* The mbuf private area the stack needs per packet (nic_port_conf.priv_size). */
uint16_t stack_mbuf_priv_size(void);

#endif
