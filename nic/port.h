/* SPDX-License-Identifier: MIT */
/*
 * nic/port.h - one DPDK Ethernet port, brought up for the proxy stack: any
 * PMD (i40e for an X710 on real hosts, net_tap or net_af_packet in tests).
 * It owns the port's configuration (one RX/TX queue pair per polling core,
 * RSS across them when there is more than one), its packet pool, the
 * offloads it asks for (only those the port reports), link status and the
 * counters the status view shows. It knows nothing of TCP or circuits.
 */
#ifndef CIRCNET_NIC_PORT_H
#define CIRCNET_NIC_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rte_mempool;
struct rte_mbuf;

#define NIC_MAX_QUEUES 16

/* What the port does in hardware (asked for because it reported it). */
struct nic_offloads {
	bool rx_ip_cksum, rx_l4_cksum; /* RX: the PMD marks checksums good or bad */
	bool tx_ip_cksum, tx_l4_cksum; /* TX: the PMD fills them in */
	bool tso;		       /* TX: TCP segmentation */
	bool multi_seg;		       /* TX: frames in chained mbufs */
	bool rss;		       /* RX: spread across queues by hash */
};

struct nic_port {
	uint16_t port_id;
	uint16_t nqueues;
	uint16_t mtu;
	uint8_t mac[6];
	char name[64]; /* the device's name, e.g. 0000:3b:00.0 or net_tap0 */
	char driver[32];
	struct nic_offloads off;
	uint16_t reta_size;   /* RSS: its redirection table (queue = hash % size % nqueues) */
	uint16_t tx_max_segs; /* mbufs one TX frame may chain (the PMD's limit; 0: none given) */
	/*
	 * The largest frame, Ethernet header included, TSO may cut: mtu + 14,
	 * but net_tap's software TSO holds each frame it cuts to the MTU itself
	 */
	uint16_t tso_max_frame;
	struct rte_mempool *pool;
};

struct nic_port_conf {
	uint16_t port_id;
	uint16_t nqueues; /* one per polling core */
	uint16_t rx_desc; /* ring sizes; 0: 1024 */
	uint16_t tx_desc;
	uint32_t pool_size; /* mbufs; 0: enough for the rings and what is in flight */
	uint16_t mtu;	    /* 0: the port's default (1500) */
	uint16_t priv_size; /* bytes of private area per mbuf, for the stack */
};

/*
 * Configure and start the port. On failure returns -errno and writes a
 * one-line reason into err (what DPDK said, and which step).
 */
int nic_port_open(struct nic_port *p, const struct nic_port_conf *conf, char *err, size_t errlen);
void nic_port_close(struct nic_port *p);

/* The link as the PMD reports it: up, speed in Mbit/s (0 if unknown). */
bool nic_port_link(const struct nic_port *p, uint32_t *speed_mbps, bool *full_duplex);

/*
 * The port's counters and each queue's, as text lines ("key value") or as
 * one JSON object, into buf. Returns the length written.
 */
size_t nic_port_stats(const struct nic_port *p, bool json, char *buf, size_t len);

/* How many ports DPDK found (after EAL init). */
unsigned int nic_port_count(void);

#endif
