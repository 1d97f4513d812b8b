/* SPDX-License-Identifier: MIT */
/*
 * dataplane/lwip/lwipopts.h - how circnet builds lwIP for the DPDK dataplane
 * (from Debian's source package: scripts/lwip-source.sh, docs/dpdk.md).
 *
 * Debian's liblwip is the Hurd's: a 64 KiB window and send buffer, no SACK,
 * no timestamps, software checksums only, a 250 ms TCP timer. For a proxy
 * at 10 Gbit/s we want the TCP that talks to Linux peers on equal terms:
 * scaled windows, SACK, timestamps, per-interface checksum control (the
 * NIC's offloads), RFC 6528 initial sequence numbers and a fine timer.
 * The core only (no sockets, no netconn, no threads): NO_SYS, driven from
 * the polling loop, as stack_lwip.c drives it.
 */
#ifndef CIRCNET_LWIPOPTS_H
#define CIRCNET_LWIPOPTS_H

/* the core, called from one polling thread: no OS layer, no locks */
#define NO_SYS 1
#define LWIP_SOCKET 0
#define LWIP_NETCONN 0
#define LWIP_TIMERS 1
#define SYS_LIGHTWEIGHT_PROT 0

/*
 * Memory: lwIP's pools come from malloc. Connections and queued bytes are
 * bounded by the operator's limits and the windows below, not by pool
 * sizes fixed at build time (a full pool would drop segments silently).
 */
#define MEM_LIBC_MALLOC 1
#define MEMP_MEM_MALLOC 1
#define MEM_ALIGNMENT 8
#define LWIP_NETIF_TX_SINGLE_PBUF 0 /* segments point into the circuit ring (dpdk.c ZC_TX) */

/* protocols */
#define LWIP_ETHERNET 1
#define LWIP_ARP 1
#define ARP_TABLE_SIZE 64
#define ARP_QUEUEING 1
#define ARP_QUEUE_LEN 64
#define LWIP_IPV4 1
#define LWIP_ICMP 1
#define LWIP_RAW 0
#define LWIP_UDP 1
#define LWIP_TCP 1
#define LWIP_IGMP 0
#define LWIP_DHCP 0
#define LWIP_AUTOIP 0
#define LWIP_DNS 0
#define IP_FORWARD 0
#define IP_REASSEMBLY 1
#define IP_FRAG 1
#define IP_REASS_MAX_PBUFS 64 /* a 64 KiB datagram in 1500-byte fragments is 45 */
#define LWIP_IPV6 1
#define LWIP_ICMP6 1
#define LWIP_IPV6_MLD 1
#define MEMP_NUM_MLD6_GROUP 8
#define LWIP_IPV6_AUTOCONFIG 0 /* addresses are configured (--ip6), not learnt */
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS 0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT 0
#define LWIP_IPV6_DHCP6 0
#define LWIP_IPV6_REASS 1
#define LWIP_IPV6_FRAG 1
#define IPV6_FRAG_COPYHEADER 1 /* 64-bit pointers do not fit in the fragment header */
#define LWIP_ND6_NUM_NEIGHBORS 64
#define LWIP_ND6_NUM_DESTINATIONS 64
#define LWIP_ND6_QUEUEING 1
#define LWIP_RANDOMIZE_INITIAL_LOCAL_PORTS 1

/*
 * TCP. A 1 MiB window (scale 5) and send buffer: 10 Gbit/s over an 800 us
 * round trip, and more than a circuit ring holds, so the ring, not lwIP,
 * is what flow control waits on. The MSS is capped by the interface MTU.
 */
#define TCP_MSS 1460
#define LWIP_WND_SCALE 1
#define TCP_RCV_SCALE 5
#define TCP_WND (1024 * 1024)
#define TCP_SND_BUF (1024 * 1024)
#define TCP_SND_QUEUELEN (4 * TCP_SND_BUF / 536)
#define TCP_SNDQUEUELOWAT (TCP_SND_QUEUELEN / 2)
#define TCP_SNDLOWAT 32768 /* read only by the sockets API, kept 16-bit for its check */
#define TCP_OVERSIZE TCP_MSS
#define TCP_QUEUE_OOSEQ 1
#define TCP_OOSEQ_MAX_BYTES TCP_WND
#define LWIP_TCP_SACK_OUT 1
#define LWIP_TCP_MAX_SACK_NUM 4
/*
 * Our patches to lwIP (dataplane/lwip/patches, applied by
 * scripts/lwip-source.sh): the sender acts on the peer's SACK blocks
 * (RFC 6675 recovery; lwIP 2.1 itself only sends them), and a SYN past an
 * old connection's data ends its TIME-WAIT instead of drawing a RST, which
 * the 1 MiB window made likely for a client that reuses its port at once.
 */
#define LWIP_TCP_SACK_IN 1
#define LWIP_TCP_TIMEWAIT_SYN 1
#define LWIP_TCP_TIMESTAMPS 1
#define LWIP_TCP_KEEPALIVE 1
#define TCP_LISTEN_BACKLOG 1
#define TCP_DEFAULT_LISTEN_BACKLOG 0xff
/*
 * The TCP timer every 10 ms (lwIP's slow tick, in which RTOs, delayed ACKs
 * and TIME_WAIT are counted, is twice that), not 250: a minimum RTO of tens
 * of milliseconds, as a datacenter wants, instead of a second.
 */
#define TCP_TMR_INTERVAL 10
/*
 * TIME_WAIT is 2 MSL: 5 s, not 2 min. A proxy that closes first would
 * otherwise hold a 4-tuple per close for minutes, and one destination has
 * 16384 ephemeral ports: at most 136 closes a second. Old duplicates are
 * what TIME_WAIT guards against; clock-driven ISNs (RFC 6528) and
 * timestamps (PAWS) guard too, which is Linux's argument for tw_reuse.
 */
#define TCP_MSL 2500UL

/* checksums: per interface, so the port's offloads can take them over */
#define LWIP_CHECKSUM_CTRL_PER_NETIF 1
#define LWIP_CHECKSUM_ON_COPY 0

/* the hooks: ISNs (RFC 6528), randomness; lwip_port.c has them */
#define LWIP_HOOK_FILENAME "circnet_lwip_hooks.h"
#define LWIP_HOOK_TCP_ISN(lip, lport, rip, rport) circnet_lwip_isn(lip, lport, rip, rport)
#define LWIP_HOOK_ND6_GET_GW(netif, dest)	  circnet_lwip_gw6(netif, dest)

#define LWIP_STATS 0
#define LWIP_NETIF_STATUS_CALLBACK 0
#define LWIP_NETIF_LINK_CALLBACK 0
#define LWIP_NOASSERT_ON_ERROR 1

#endif
