// SPDX-License-Identifier: MIT
/*
 * nic/port.c - DPDK port bring-up and counters (port.h). The steps are
 * DPDK's usual ones; what is ours is the policy: ask only for offloads the
 * port reports, size the pool from the rings so that a full RX ring and a
 * full TX ring per queue never starve the other, and say which step failed
 * in words when one does.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "frame.h"
#include "port.h"

#define NIC_DEFAULT_DESC 1024
#define NIC_POOL_CACHE	 256

unsigned int nic_port_count(void)
{
	return rte_eth_dev_count_avail();
}

/* The offloads to ask for: what we can use, masked by what the port has. */
static void pick_offloads(const struct rte_eth_dev_info *info, uint16_t nqueues,
			  struct rte_eth_conf *conf, struct nic_offloads *off)
{
	uint64_t rx = info->rx_offload_capa, tx = info->tx_offload_capa;

	off->rx_ip_cksum = rx & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
	off->rx_l4_cksum =
		(rx & RTE_ETH_RX_OFFLOAD_TCP_CKSUM) && (rx & RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
	off->tx_ip_cksum = tx & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	off->tx_l4_cksum =
		(tx & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) && (tx & RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
	off->tso = tx & RTE_ETH_TX_OFFLOAD_TCP_TSO;
	if (off->rx_ip_cksum)
		conf->rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
	if (off->rx_l4_cksum)
		conf->rxmode.offloads |=
			RTE_ETH_RX_OFFLOAD_TCP_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
	if (off->tx_ip_cksum)
		conf->txmode.offloads |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	if (off->tx_l4_cksum)
		conf->txmode.offloads |=
			RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
	if (off->tso)
		conf->txmode.offloads |= RTE_ETH_TX_OFFLOAD_TCP_TSO;
	off->multi_seg = tx & RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	if (off->multi_seg)
		conf->txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	/* flow -> queue -> core: the hash keeps a connection's segments on one core */
	off->rss = nqueues > 1 && info->flow_type_rss_offloads;
	if (off->rss) {
		/*
		 * The key the software hash uses too (frame_flow_hash): the
		 * stacks can then tell which queue a flow arrives on, and pick
		 * outbound ports that come back to theirs. Longer keys (i40e
		 * takes 52 bytes) see only the first 40 on a 36-byte input.
		 */
		static uint8_t key[64];

		memcpy(key, frame_rss_default_key, sizeof(frame_rss_default_key));
		if (info->hash_key_size >= 40 && info->hash_key_size <= sizeof(key)) {
			conf->rx_adv_conf.rss_conf.rss_key = key;
			conf->rx_adv_conf.rss_conf.rss_key_len = info->hash_key_size;
		} /* else the PMD's own key: frames may land on another queue, and move */
		conf->rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf->rx_adv_conf.rss_conf.rss_hf =
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) &
			info->flow_type_rss_offloads;
	}
}

#define FAIL(step, rc)                                                                             \
	do {                                                                                       \
		snprintf(err, errlen, "port %u (%s): %s: %s", conf->port_id, p->name, step,        \
			 rte_strerror(-(rc)));                                                     \
		return (rc) < 0 ? (rc) : -EIO;                                                     \
	} while (0)

static int setup_queues(struct nic_port *p, const struct nic_port_conf *conf,
			struct rte_eth_dev_info *info, struct rte_eth_conf *ec, char *err,
			size_t errlen)
{
	uint16_t nrx = conf->rx_desc ? conf->rx_desc : NIC_DEFAULT_DESC;
	uint16_t ntx = conf->tx_desc ? conf->tx_desc : NIC_DEFAULT_DESC;
	int socket = rte_eth_dev_socket_id(p->port_id);
	struct rte_eth_txconf txc = info->default_txconf;
	struct rte_eth_rxconf rxc = info->default_rxconf;
	char pool_name[RTE_MEMPOOL_NAMESIZE];
	uint32_t pool;
	uint16_t q;
	int rc;

	rc = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &nrx, &ntx);
	if (rc)
		FAIL("ring sizes", rc);
	/* every ring full at once, plus each core's cache and what TCP holds */
	pool = conf->pool_size ? conf->pool_size
			       : (uint32_t)p->nqueues * (nrx + ntx + 2 * NIC_POOL_CACHE) + 8192;
	snprintf(pool_name, sizeof(pool_name), "cn_mbuf_p%u", p->port_id);
	p->pool = rte_pktmbuf_pool_create(pool_name, pool, NIC_POOL_CACHE, conf->priv_size,
					  RTE_MBUF_DEFAULT_BUF_SIZE, socket < 0 ? 0 : socket);
	if (!p->pool)
		FAIL("packet pool", -rte_errno);
	rxc.offloads = ec->rxmode.offloads;
	txc.offloads = ec->txmode.offloads;
	for (q = 0; q < p->nqueues; q++) {
		rc = rte_eth_rx_queue_setup(p->port_id, q, nrx, socket, &rxc, p->pool);
		if (rc)
			FAIL("rx queue", rc);
		rc = rte_eth_tx_queue_setup(p->port_id, q, ntx, socket, &txc);
		if (rc)
			FAIL("tx queue", rc);
	}
	return 0;
}

int nic_port_open(struct nic_port *p, const struct nic_port_conf *conf, char *err, size_t errlen)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf ec;
	struct rte_ether_addr mac;
	int rc;

	memset(p, 0, sizeof(*p));
	p->port_id = conf->port_id;
	p->nqueues = conf->nqueues ? conf->nqueues : 1;
	if (!rte_eth_dev_is_valid_port(p->port_id)) {
		snprintf(err, errlen, "port %u: no such port (DPDK found %u; check -a/--vdev)",
			 conf->port_id, rte_eth_dev_count_avail());
		return -ENODEV;
	}
	rte_eth_dev_get_name_by_port(p->port_id, p->name);
	rc = rte_eth_dev_info_get(p->port_id, &info);
	if (rc)
		FAIL("device info", rc);
	snprintf(p->driver, sizeof(p->driver), "%s", info.driver_name);
	if (p->nqueues > info.max_rx_queues || p->nqueues > info.max_tx_queues ||
	    p->nqueues > NIC_MAX_QUEUES) {
		snprintf(err, errlen, "port %u (%s): %u queues asked, the port has %u rx / %u tx",
			 p->port_id, p->name, p->nqueues, info.max_rx_queues, info.max_tx_queues);
		return -EINVAL;
	}
	memset(&ec, 0, sizeof(ec));
	pick_offloads(&info, p->nqueues, &ec, &p->off);
	p->reta_size = p->off.rss ? info.reta_size : 0;
	p->tx_max_segs = info.tx_desc_lim.nb_seg_max;
	rc = rte_eth_dev_configure(p->port_id, p->nqueues, p->nqueues, &ec);
	if (rc)
		FAIL("configure", rc);
	if (conf->mtu) {
		rc = rte_eth_dev_set_mtu(p->port_id, conf->mtu);
		if (rc)
			FAIL("mtu", rc);
	}
	rc = setup_queues(p, conf, &info, &ec, err, errlen);
	if (rc)
		return rc;
	rc = rte_eth_dev_start(p->port_id);
	if (rc)
		FAIL("start", rc);
	if (rte_eth_dev_get_mtu(p->port_id, &p->mtu))
		p->mtu = RTE_ETHER_MTU;
	/* net_tap checks the frames its TSO cuts against the MTU, header and all */
	p->tso_max_frame =
		(uint16_t)(p->mtu + (strcmp(p->driver, "net_tap") ? RTE_ETHER_HDR_LEN : 0));
	rte_eth_macaddr_get(p->port_id, &mac);
	memcpy(p->mac, mac.addr_bytes, 6);
	return 0;
}

void nic_port_close(struct nic_port *p)
{
	if (!p->pool)
		return;
	rte_eth_dev_stop(p->port_id);
	rte_eth_dev_close(p->port_id);
	rte_mempool_free(p->pool);
	p->pool = NULL;
}

bool nic_port_link(const struct nic_port *p, uint32_t *speed_mbps, bool *full_duplex)
{
	struct rte_eth_link link;

	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(p->port_id, &link))
		return false;
	if (speed_mbps)
		*speed_mbps = link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : link.link_speed;
	if (full_duplex)
		*full_duplex = link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
	return link.link_status == RTE_ETH_LINK_UP;
}

/* Append to buf; keeps *used within len (a truncated view, never an overflow). */
static void put(char *buf, size_t len, size_t *used, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*used + 1 >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *used, len - *used, fmt, ap);
	va_end(ap);
	if (n > 0)
		*used += (size_t)n < len - *used ? (size_t)n : len - *used - 1;
}

size_t nic_port_stats(const struct nic_port *p, bool json, char *buf, size_t len)
{
	struct rte_eth_stats s;
	uint32_t speed = 0;
	bool fd = false, up = nic_port_link(p, &speed, &fd);
	size_t used = 0;
	uint16_t q;

	memset(&s, 0, sizeof(s));
	rte_eth_stats_get(p->port_id, &s);
	if (len)
		buf[0] = 0;
	if (json) {
		put(buf, len, &used,
		    "{\"port\":%u,\"name\":\"%s\",\"driver\":\"%s\",\"link\":\"%s\","
		    "\"speed_mbps\":%u,\"mtu\":%u,\"queues\":%u,"
		    "\"offloads\":{\"rx_cksum\":%s,\"tx_cksum\":%s,\"tso\":%s,\"multi_seg\":%s,"
		    "\"rss\":%s},"
		    "\"rx_packets\":%" PRIu64 ",\"tx_packets\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
		    ",\"tx_bytes\":%" PRIu64 ",\"rx_missed\":%" PRIu64 ",\"rx_errors\":%" PRIu64
		    ",\"tx_errors\":%" PRIu64 ",\"rx_nombuf\":%" PRIu64 ",\"per_queue\":[",
		    p->port_id, p->name, p->driver, up ? "up" : "down", speed, p->mtu, p->nqueues,
		    p->off.rx_l4_cksum ? "true" : "false", p->off.tx_l4_cksum ? "true" : "false",
		    p->off.tso ? "true" : "false", p->off.multi_seg ? "true" : "false",
		    p->off.rss ? "true" : "false", s.ipackets, s.opackets, s.ibytes, s.obytes,
		    s.imissed, s.ierrors, s.oerrors, s.rx_nombuf);
		for (q = 0; q < p->nqueues && q < RTE_ETHDEV_QUEUE_STAT_CNTRS; q++)
			put(buf, len, &used,
			    "%s{\"queue\":%u,\"rx_packets\":%" PRIu64 ",\"tx_packets\":%" PRIu64
			    ",\"rx_bytes\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 "}",
			    q ? "," : "", q, s.q_ipackets[q], s.q_opackets[q], s.q_ibytes[q],
			    s.q_obytes[q]);
		put(buf, len, &used, "]}");
		return used;
	}
	put(buf, len, &used,
	    "port %u %s driver %s link %s speed %u Mbit/s%s mtu %u queues %u offloads%s%s%s%s%s\n",
	    p->port_id, p->name, p->driver, up ? "up" : "down", speed, fd ? " full-duplex" : "",
	    p->mtu, p->nqueues, p->off.rx_l4_cksum ? " rx-cksum" : "",
	    p->off.tx_l4_cksum ? " tx-cksum" : "", p->off.tso ? " tso" : "",
	    p->off.multi_seg ? " multi-seg" : "", p->off.rss ? " rss" : "");
	put(buf, len, &used,
	    "  rx %" PRIu64 " packets %" PRIu64 " bytes, missed %" PRIu64 ", errors %" PRIu64
	    ", no mbuf %" PRIu64 "\n  tx %" PRIu64 " packets %" PRIu64 " bytes, errors %" PRIu64
	    "\n",
	    s.ipackets, s.ibytes, s.imissed, s.ierrors, s.rx_nombuf, s.opackets, s.obytes,
	    s.oerrors);
	for (q = 0; q < p->nqueues && q < RTE_ETHDEV_QUEUE_STAT_CNTRS; q++)
		put(buf, len, &used,
		    "  queue %u rx %" PRIu64 " packets %" PRIu64 " bytes, tx %" PRIu64
		    " packets %" PRIu64 " bytes\n",
		    q, s.q_ipackets[q], s.q_ibytes[q], s.q_opackets[q], s.q_obytes[q]);
	return used;
}
