// SPDX-License-Identifier: MIT
/*
 * dataplane/dpdk_main.c - the DPDK backend's life cycle: EAL (its own
 * arguments, before `--`), the port (nic/port.c), the stack on its queue
 * (stack_lwip.c), the polling loop on a worker lcore (pinned by EAL to the
 * core the -l/-c list names), the status view's port and stack figures,
 * and the way down (loop stopped, resets sent, port stopped, EAL cleaned).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>

#include "../nic/port.h"
#include "../operator/log.h"
#include "dataplane.h"
#include "stack.h"

static struct nic_port port;
static unsigned int loop_lcore = RTE_MAX_LCORE; /* RTE_MAX_LCORE: a plain thread */
static pthread_t loop_thread;
static bool eal_up;

int dpdk_eal_init(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);

	if (n < 0) {
		fprintf(stderr, "circnet-dataplane: DPDK would not start (EAL): %s\n",
			rte_strerror(rte_errno));
		return -1;
	}
	eal_up = true;
	return n;
}

/* EAL's lcore entry returns int; the loop's is a thread body */
static int loop_on_lcore(void *loop)
{
	dpdk_loop_main(loop);
	return 0;
}

int dpdk_start(const struct dp_config *cfg, struct dp_loop *loop)
{
	struct nic_port_conf pc = {
		.port_id = cfg->dpdk_port,
		.nqueues = 1,
		.mtu = cfg->dpdk_mtu,
		.priv_size = stack_mbuf_priv_size(),
	};
	struct stack_conf sc = { .has_ip6 = cfg->dpdk_has_ip6,
				 .ip = cfg->dpdk_ip,
				 .mask = cfg->dpdk_mask,
				 .gw = cfg->dpdk_gw,
				 .drop_ppm = cfg->fault_drop_ppm,
				 .tcp_tick_ms = (uint32_t)cfg->tcp_tick_ms };
	char err[256];
	int rc;

	memcpy(sc.ip6, cfg->dpdk_ip6, 16);
	rc = nic_port_open(&port, &pc, err, sizeof(err));
	if (!rc)
		rc = stack_open(&port, 0, &sc, err, sizeof(err));
	if (rc) {
		log_err("%s", err);
		nic_port_close(&port);
		return rc;
	}
	if (!nic_port_link(&port, NULL, NULL))
		log_warn("port %u (%s): link down (continuing: it may come up)", port.port_id,
			 port.name);
	if (rte_lcore_count() > 2)
		log_warn("%u lcores given: the stack polls on one (one lwIP per process; "
			 "run a process per core)",
			 rte_lcore_count());
	/* the main lcore keeps signals and the status view; a worker polls */
	loop_lcore = rte_get_next_lcore(-1, 1, 0);
	if (loop_lcore < RTE_MAX_LCORE) {
		rc = rte_eal_remote_launch(loop_on_lcore, loop, loop_lcore);
		if (rc) {
			log_err("cannot launch the loop on lcore %u: %s", loop_lcore,
				rte_strerror(-rc));
			return rc;
		}
	} else if (pthread_create(&loop_thread, NULL, dpdk_loop_main, loop)) {
		log_err("cannot start the loop");
		return -EAGAIN;
	}
	log_info("port %u (%s, %s) mac %02x:%02x:%02x:%02x:%02x:%02x mtu %u; loop on %s %u",
		 port.port_id, port.name, port.driver, port.mac[0], port.mac[1], port.mac[2],
		 port.mac[3], port.mac[4], port.mac[5], port.mtu,
		 loop_lcore < RTE_MAX_LCORE ? "lcore" : "an unpinned thread, main lcore",
		 loop_lcore < RTE_MAX_LCORE ? loop_lcore : rte_get_main_lcore());
	return 0;
}

void dpdk_stop(void)
{
	if (loop_lcore < RTE_MAX_LCORE)
		rte_eal_wait_lcore(loop_lcore);
	else if (loop_thread)
		pthread_join(loop_thread, NULL);
	stack_close();
	nic_port_close(&port);
	if (eal_up)
		rte_eal_cleanup();
	eal_up = false;
}

size_t dpdk_status(bool json, char *buf, size_t len)
{
	const struct stack_counters *s = stack_counters();
	size_t used = 0;
	int n;

	if (!port.pool || len < 2)
		return 0;
	n = snprintf(buf, len, json ? ",\"port\":" : "");
	used = n > 0 ? (size_t)n : 0;
	used += nic_port_stats(&port, json, buf + used, len - used);
	if (used + 1 >= len)
		return len - 1;
	/* read from another thread: plain counters, a torn read shows a stale figure */
	if (json)
		n = snprintf(buf + used, len - used,
			     ",\"stack\":{\"rx_frames\":%" PRIu64 ",\"tx_frames\":%" PRIu64
			     ",\"rx_bad_cksum\":%" PRIu64 ",\"rx_malformed\":%" PRIu64
			     ",\"rx_copied\":%" PRIu64 ",\"rx_nomem\":%" PRIu64
			     ",\"tx_nombuf\":%" PRIu64 ",\"tx_full\":%" PRIu64
			     ",\"injected_drops\":%" PRIu64 "}",
			     s->rx_frames, s->tx_frames, s->rx_bad_cksum, s->rx_malformed,
			     s->rx_copied, s->rx_nomem, s->tx_nombuf, s->tx_full, s->injected);
	else
		n = snprintf(buf + used, len - used,
			     "stack              %" PRIu64 " frames in, %" PRIu64
			     " out; dropped: %" PRIu64 " bad checksum, %" PRIu64
			     " malformed, %" PRIu64 " no pbuf, %" PRIu64 " no mbuf, %" PRIu64
			     " tx ring full, %" PRIu64 " injected\n",
			     s->rx_frames, s->tx_frames, s->rx_bad_cksum, s->rx_malformed,
			     s->rx_nomem, s->tx_nombuf, s->tx_full, s->injected);
	if (n > 0)
		used += (size_t)n;
	if (used + 1 < len)
		used += stack_describe(json, buf + used, len - used);
	return used < len ? used : len - 1;
}
