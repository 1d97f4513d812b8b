// SPDX-License-Identifier: MIT
/*
 * dataplane/dpdk_main.c - the DPDK backend's life cycle: EAL (its own
 * arguments, before `--`), the port (nic/port.c) with a queue per polling
 * core, a stack (stack_lwip.c) and a polling loop (dpdk.c) per queue, each
 * loop on its worker lcore (pinned by EAL to the core the -l/-c list
 * names), the status view's port and stack figures, and the way down
 * (loops stopped, resets sent, port stopped, EAL cleaned).
 *
 * lwIP keeps its state in globals, so two stacks in one process need two
 * copies of it. With our lwIP build the stack and its loop are a module
 * (circnet-dpdk-loop.so), loaded once per core from a copy of its own (a
 * memfd: the dynamic loader maps a file it has not seen as a new object),
 * all in one process with one EAL. The packaged lwIP is linked in: one
 * stack, one polling core.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "../nic/port.h"
#include "../operator/log.h"
#include "dataplane.h"
#include "stack.h"

/* One stack and its loop: their entry points, from the module copy or linked in. */
struct loop_ops {
	int (*stack_open)(struct nic_port *port, uint16_t q, const struct stack_conf *conf,
			  char *err, size_t errlen);
	void (*stack_close)(void);
	const struct stack_counters *(*stack_counters)(void);
	size_t (*stack_describe)(bool json, char *buf, size_t len);
	uint16_t (*stack_mbuf_priv_size)(void);
	void *(*loop_main)(void *loop);
	size_t (*loop_conns)(struct dp_loop *l, char *buf, size_t len);
};

#define INBOX_SIZE 4096 /* frames in flight from one queue's stack to another's */

static struct nic_port port;
static struct loop_ops ops[STACK_MAX];
static unsigned int nstacks;
static struct stack_group group;
static unsigned int loop_lcore[STACK_MAX];
static unsigned int nlaunched;
static pthread_t loop_thread; /* no worker lcore: the one loop runs on a plain thread */
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

#ifdef CIRCNET_LOOP_MODULE
#define MODULE_NAME "circnet-dpdk-loop.so"

/* Next to the executable (a build tree), else where meson installs it. */
static int module_path(char *path, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = 0;
		if ((size_t)snprintf(path, len, "%s/" MODULE_NAME, dirname(exe)) < len &&
		    !access(path, R_OK))
			return 0;
	}
	if ((size_t)snprintf(path, len, "%s/" MODULE_NAME, CIRCNET_MODULE_DIR) >= len)
		return -ENAMETOOLONG;
	return access(path, R_OK) ? -errno : 0;
}

/* A copy of the module in a memfd, loaded: a new set of lwIP's globals. */
static void *load_copy(const char *path, unsigned int k, char *err, size_t errlen)
{
	char name[32], fdpath[64];
	struct stat sb;
	void *h = NULL;
	off_t off = 0;
	int src, fd;

	src = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(name, sizeof(name), "circnet-dpdk-loop-%u", k);
	fd = memfd_create(name, MFD_CLOEXEC);
	if (src < 0 || fd < 0 || fstat(src, &sb)) {
		snprintf(err, errlen, "%.160s: %s", path, strerror(errno));
		goto out;
	}
	while (off < sb.st_size)
		if (sendfile(fd, src, &off, (size_t)(sb.st_size - off)) <= 0) {
			snprintf(err, errlen, "copying %.160s: %s", path, strerror(errno));
			goto out;
		}
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	h = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		snprintf(err, errlen, "loading a copy of %.160s: %s", path, dlerror());
out:
	if (src >= 0)
		close(src);
	if (fd >= 0)
		close(fd); /* the mapping keeps it */
	return h;
}

static int ops_load(unsigned int k, char *err, size_t errlen)
{
	char path[PATH_MAX];
	void *h;
	int rc = module_path(path, sizeof(path));

	if (rc) {
		snprintf(err, errlen,
			 "the stack module " MODULE_NAME " is not next to the binary "
			 "nor in " CIRCNET_MODULE_DIR ": %s",
			 strerror(-rc));
		return rc;
	}
	h = k ? load_copy(path, k, err, errlen) : dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		if (!k)
			snprintf(err, errlen, "loading %.160s: %s", path, dlerror());
		return -ENOEXEC;
	}
#define SYM(field, name)                                                                           \
	do {                                                                                       \
		*(void **)&ops[k].field = dlsym(h, name);                                          \
		if (!ops[k].field) {                                                               \
			snprintf(err, errlen, "%.160s: no %s in it", path, name);                  \
			return -ENOEXEC;                                                           \
		}                                                                                  \
	} while (0)
	SYM(stack_open, "stack_open");
	SYM(stack_close, "stack_close");
	SYM(stack_counters, "stack_counters");
	SYM(stack_describe, "stack_describe");
	SYM(stack_mbuf_priv_size, "stack_mbuf_priv_size");
	SYM(loop_main, "dpdk_loop_main");
	SYM(loop_conns, "dpdk_loop_conns");
#undef SYM
	return 0;
}
#else
static int ops_load(unsigned int k, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	ops[k] = (struct loop_ops){ stack_open,	    stack_close,	  stack_counters,
				    stack_describe, stack_mbuf_priv_size, dpdk_loop_main,
				    dpdk_loop_conns };
	return 0;
}
#endif

unsigned int dpdk_stacks(void)
{
	unsigned int workers = rte_lcore_count() > 1 ? rte_lcore_count() - 1 : 1;

#ifndef CIRCNET_LOOP_MODULE
	if (workers > 1)
		log_warn("%u polling lcores given: with the packaged lwIP one stack polls "
			 "(scripts/lwip-source.sh, then rebuild, for one per core)",
			 workers);
	workers = 1;
#endif
	return workers < STACK_MAX ? workers : STACK_MAX;
}

/* EAL's lcore entry returns int; the loop's is a thread body */
static int loop_on_lcore(void *loop)
{
	ops[((struct dp_loop *)loop)->index].loop_main(loop);
	return 0;
}

static int group_open(unsigned int n, char *err, size_t errlen)
{
	unsigned int k;

	group.n = n;
	group.reta_size = port.reta_size;
	group.rss_key = NULL; /* frame_rss_default_key: port.c gave it to the NIC */
	for (k = 0; k < n; k++) {
		char name[RTE_RING_NAMESIZE];

		snprintf(name, sizeof(name), "cn_inbox_%u", k);
		group.inbox[k] =
			rte_ring_create(name, INBOX_SIZE, (int)rte_socket_id(), RING_F_SC_DEQ);
		if (!group.inbox[k]) {
			snprintf(err, errlen, "inbox of stack %u: %s", k, rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	return 0;
}

static void group_close(void)
{
	unsigned int k;

	for (k = 0; k < STACK_MAX; k++) {
		void *m;

		if (!group.inbox[k])
			continue;
		while (!rte_ring_dequeue(group.inbox[k], &m))
			rte_pktmbuf_free(m);
		rte_ring_free(group.inbox[k]);
		group.inbox[k] = NULL;
	}
}

static int launch(struct dp_loop *loops, unsigned int n)
{
	unsigned int k, lc = rte_get_next_lcore(-1, 1, 0);
	int rc;

	if (lc >= RTE_MAX_LCORE) {
		/* -l with one core: the loop runs unpinned, beside the main thread */
		if (pthread_create(&loop_thread, NULL, ops[0].loop_main, &loops[0]))
			return -EAGAIN;
		nlaunched = 1;
		return 0;
	}
	for (k = 0; k < n && lc < RTE_MAX_LCORE; k++, lc = rte_get_next_lcore(lc, 1, 0)) {
		rc = rte_eal_remote_launch(loop_on_lcore, &loops[k], lc);
		if (rc) {
			log_err("cannot launch loop %u on lcore %u: %s", k, lc, rte_strerror(-rc));
			return rc;
		}
		loop_lcore[k] = lc;
		nlaunched = k + 1;
	}
	return 0;
}

int dpdk_start(const struct dp_config *cfg, struct dp_loop *loops, unsigned int n)
{
	struct nic_port_conf pc = {
		.port_id = cfg->dpdk_port,
		.nqueues = (uint16_t)n,
		.mtu = cfg->dpdk_mtu,
	};
	struct stack_conf sc = { .has_ip6 = cfg->dpdk_has_ip6,
				 .ip = cfg->dpdk_ip,
				 .mask = cfg->dpdk_mask,
				 .gw = cfg->dpdk_gw,
				 .drop_ppm = cfg->fault_drop_ppm,
				 .no_tso = cfg->dpdk_no_tso,
				 .tcp_tick_ms = (uint32_t)cfg->tcp_tick_ms };
	char err[256] = "";
	unsigned int k;
	int rc = 0;

	memcpy(sc.ip6, cfg->dpdk_ip6, 16);
	sc.has_gw6 = cfg->dpdk_has_gw6;
	memcpy(sc.gw6, cfg->dpdk_gw6, 16);
	for (k = 0; k < n && !rc; k++)
		rc = ops_load(k, err, sizeof(err));
	if (!rc) {
		pc.priv_size = ops[0].stack_mbuf_priv_size();
		rc = nic_port_open(&port, &pc, err, sizeof(err));
	}
	if (!rc && n > 1)
		rc = group_open(n, err, sizeof(err));
	for (k = 0; k < n && !rc; k++) {
		sc.group = n > 1 ? &group : NULL;
		sc.index = k;
		rc = ops[k].stack_open(&port, (uint16_t)k, &sc, err, sizeof(err));
		if (!rc)
			nstacks = k + 1;
	}
	if (rc) {
		log_err("%s", err);
		return rc;
	}
	if (!nic_port_link(&port, NULL, NULL))
		log_warn("port %u (%s): link down (continuing: it may come up)", port.port_id,
			 port.name);
	/* the main lcore keeps signals and the status view; the workers poll */
	rc = launch(loops, n);
	if (rc) {
		log_err("cannot start the loops");
		return rc;
	}
	log_info("port %u (%s, %s) mac %02x:%02x:%02x:%02x:%02x:%02x mtu %u; %u stack(s), "
		 "queue i on %s%s",
		 port.port_id, port.name, port.driver, port.mac[0], port.mac[1], port.mac[2],
		 port.mac[3], port.mac[4], port.mac[5], port.mtu, n,
		 loop_thread ? "an unpinned thread" : "the i-th worker lcore",
		 n > 1 && !port.off.rss ? " (no RSS: the stacks hand frames over in software)"
					: "");
	return 0;
}

void dpdk_stop(void)
{
	unsigned int k;

	if (loop_thread)
		pthread_join(loop_thread, NULL);
	else
		for (k = 0; k < nlaunched; k++)
			rte_eal_wait_lcore(loop_lcore[k]);
	for (k = 0; k < nstacks; k++)
		ops[k].stack_close();
	nstacks = 0;
	nic_port_close(&port);
	group_close();
	if (eal_up)
		rte_eal_cleanup();
	eal_up = false;
}

size_t dpdk_conns(struct dp_loop *l, char *buf, size_t len)
{
	if ((unsigned int)l->index >= nstacks)
		return 0;
	return ops[l->index].loop_conns(l, buf, len);
}

/* Every stack's counters, summed: frames are counted once, by the stack that got them. */
/* summed as an array: every counter is a uint64_t and nothing else is there */
_Static_assert(sizeof(struct stack_counters) % sizeof(uint64_t) == 0,
	       "struct stack_counters holds only uint64_t counters");

static void sum_counters(struct stack_counters *t)
{
	unsigned int k;

	memset(t, 0, sizeof(*t));
	for (k = 0; k < nstacks; k++) {
		const uint64_t *c = (const uint64_t *)ops[k].stack_counters();
		uint64_t *sum = (uint64_t *)t;
		size_t i;

		for (i = 0; i < sizeof(*t) / sizeof(uint64_t); i++)
			sum[i] += c[i];
	}
}

size_t dpdk_status(bool json, char *buf, size_t len)
{
	struct stack_counters total, *s = &total;
	size_t used = 0;
	unsigned int k;
	int n;

	if (!port.pool || len < 2 || !nstacks)
		return 0;
	sum_counters(&total);
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
			     ",\"injected_drops\":%" PRIu64 ",\"handed_over\":%" PRIu64
			     ",\"inbox_full\":%" PRIu64 ",\"tso_frames\":%" PRIu64
			     ",\"tso_segs\":%" PRIu64 "}",
			     s->rx_frames, s->tx_frames, s->rx_bad_cksum, s->rx_malformed,
			     s->rx_copied, s->rx_nomem, s->tx_nombuf, s->tx_full, s->injected,
			     s->handed_over, s->inbox_full, s->tso_frames, s->tso_segs);
	else
		n = snprintf(buf + used, len - used,
			     "stack              %" PRIu64 " frames in, %" PRIu64
			     " out; dropped: %" PRIu64 " bad checksum, %" PRIu64
			     " malformed, %" PRIu64 " no pbuf, %" PRIu64 " no mbuf, %" PRIu64
			     " tx ring full, %" PRIu64 " injected; %u stack(s), %" PRIu64
			     " frames handed to another's queue, %" PRIu64
			     " lost to a full inbox; TSO: %" PRIu64 " frames carried %" PRIu64
			     " segments\n",
			     s->rx_frames, s->tx_frames, s->rx_bad_cksum, s->rx_malformed,
			     s->rx_nomem, s->tx_nombuf, s->tx_full, s->injected, nstacks,
			     s->handed_over, s->inbox_full, s->tso_frames, s->tso_segs);
	if (n > 0)
		used += (size_t)n;
	/* each stack's share: which core carried what */
	for (k = 0; k < nstacks && used + 1 < len; k++) {
		const struct stack_counters *c = ops[k].stack_counters();

		if (json)
			n = snprintf(buf + used, len - used,
				     "%s{\"rx_frames\":%" PRIu64 ",\"tx_frames\":%" PRIu64
				     ",\"taken_over\":%" PRIu64 "}%s",
				     k ? "," : ",\"stacks\":[", c->rx_frames, c->tx_frames,
				     c->taken_over, k + 1 == nstacks ? "]" : "");
		else
			n = snprintf(buf + used, len - used,
				     "stack %-12u %" PRIu64 " frames in, %" PRIu64 " out, %" PRIu64
				     " from other queues\n",
				     k, c->rx_frames, c->tx_frames, c->taken_over);
		if (n > 0)
			used += (size_t)n;
	}
	if (used + 1 < len)
		used += ops[0].stack_describe(json, buf + used, len - used);
	return used < len ? used : len - 1;
}
