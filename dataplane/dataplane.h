/* SPDX-License-Identifier: MIT */
/*
 * dataplane/dataplane.h - what the proxy stack's modules share:
 *   main.c     command line, signals, threads, the status socket
 *   kernel.c   the kernel-socket backend: one epoll loop per thread
 *   relay.c    the circuit side of a connection (every backend's)
 *   session.c  the operator sessions (every backend's)
 *   conn.c     the connection bookkeeping (every backend's)
 *   dpdk.c     the DPDK backend's polling loop: lwIP TCP <-> relays
 *   dpdk_main.c  its EAL, port, stack and lcore life cycle
 *   stack_lwip.c lwIP on a DPDK queue
 * Each loop attaches to the operator on its own session (the proxy attach
 * point, run-dir/proxy/operator.sock) and takes the off-host connections
 * the operator hands it: loops share nothing on the data path.
 */
#ifndef CIRCNET_DATAPLANE_H
#define CIRCNET_DATAPLANE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <circnet/opclient.h>

struct dp_config {
	char operator_path[256]; /* the proxy attach point */
	int threads;
	int connect_timeout_ms; /* 0: the kernel's own (SYN retries) */
	int user_timeout_ms; /* sent data unacknowledged this long ends a connection (0: the stack's
				retries) */
	uint32_t backlog;    /* connections the operator may queue per loop */
	int udp_idle_ms;     /* a published UDP port's client idle this long is forgotten */
	bool dpdk;	     /* the backend: DPDK + lwIP, else kernel sockets */
	/* the dpdk backend's */
	uint16_t dpdk_port;		      /* DPDK port id */
	uint16_t dpdk_mtu;		      /* 0: the port's */
	uint32_t dpdk_ip, dpdk_mask, dpdk_gw; /* network order */
	bool dpdk_has_ip6, dpdk_has_gw6;
	uint8_t dpdk_ip6[16], dpdk_gw6[16]; /* gw6: off-link IPv6 goes there */
	int idle_sleep_us;		    /* nap this long when idle (0: poll without rest) */
	uint32_t fault_drop_ppm;	    /* tests: lose this many frames per million, each way */
	bool dpdk_no_tso;		    /* dpdk: never merge segments into TSO frames */
	int tcp_tick_ms;		    /* the user-space TCP's timer tick (lwIP's own: 500) */
};

/* Counters of one loop, read by the status view from another thread. */
struct dp_counters {
	_Atomic uint64_t accepted;  /* circuits handed to us */
	_Atomic uint64_t connected; /* host connections established */
	_Atomic uint64_t failed;    /* connects that failed (refused, timeout, ...) */
	_Atomic uint64_t closed;    /* relays finished */
	_Atomic uint64_t resets;    /* relays ended by a reset, either side */
	_Atomic uint64_t active;    /* relays open now */
	_Atomic uint64_t to_guest;  /* bytes */
	_Atomic uint64_t to_host;
	_Atomic uint64_t operator_sessions; /* (re)attachments to the operator */
};

struct dp_loop {
	int index;
	const struct dp_config *cfg;
	pthread_t thread;
	struct dp_counters cnt;
	void *priv; /* the backend's */
};

extern atomic_bool dp_stop;

/*
 * session.c: a loop's two operator sessions (TCP and UDP routes, published
 * ports). dp_session_attach opens one and takes l4's routes; 0 or -errno.
 */
struct dp_conn;
int dp_session_attach(struct cn_op *op, const struct dp_config *cfg, unsigned int l4,
		      void (*on_publish)(void *arg, const struct cn_msg_publish *m), void *arg);

/* The published ports of one l4 as the operator pushes them: one PUBLISH a host. */
#define DP_PUB_MAX 64

struct dp_pubset_rx {
	struct cn_addr host[DP_PUB_MAX];
	int n;
	uint32_t gen;
};

/*
 * Take one PUBLISH into the set being received. True when the set is
 * complete (apply it); pushes out of order wait for the next generation.
 */
bool dp_publish_collect(struct dp_pubset_rx *rx, const struct cn_msg_publish *m);

struct dp_sessions {
	struct cn_op op;     /* tcp: off-host routes, published ports */
	struct cn_op op_udp; /* udp: off-host routes (a session holds one listener) */
	bool attached, udp_attached;
	bool tcp_only;		 /* a second DPDK stack: UDP is the first one's */
	int64_t next_attach_ms;	 /* lost: try again then */
	int backoff_ms;		 /* the pause after a failed try: 50 ms doubling to 1 s */
	void *tcp_tag, *udp_tag; /* each session fd's epoll data */
};

/* Open both, their fds watched in epfd; a failure retries after a pause (50 ms to 1 s). */
void dp_sessions_attach(struct dp_loop *dl, struct dp_sessions *s, int epfd,
			void (*on_publish)(void *arg, const struct cn_msg_publish *m), void *arg);
/* Time to try attaching again. */
bool dp_sessions_due(const struct dp_sessions *s);
/* Lost one (why): close both, retry at once (the operator may be restarting). */
void dp_sessions_detach(struct dp_loop *dl, struct dp_sessions *s, int epfd, const char *why);
void dp_sessions_close(struct dp_sessions *s, int epfd);
/* Send the CLOSED notices gathered. */
void dp_sessions_flush(struct dp_sessions *s);
/* The session op still stands (a CLOSED notice can go to it). */
bool dp_sessions_alive(const struct dp_sessions *s, const struct cn_op *op);
/*
 * Take every circuit waiting on op: each into a zeroed block of size bytes
 * that starts with a struct dp_conn (c->op, c->r.ep, c->conn filled), then
 * start(arg, c). Returns 0, or -errno when the session broke.
 */
int dp_session_take(struct cn_op *op, size_t size, void (*start)(void *arg, struct dp_conn *c),
		    void *arg);

/* dpdk_main.c: EAL up (returns the arguments it took, or -1), the port, the stack and the loop */
int dpdk_eal_init(int argc, char **argv);
/* How many stacks (polling loops) EAL's lcores make: one per worker lcore. */
unsigned int dpdk_stacks(void);
int dpdk_start(const struct dp_config *cfg, struct dp_loop *loops, unsigned int n);
void dpdk_stop(void);
/* The port's and the stack's figures for the status view (JSON: ",\"port\":{...},..."). */
size_t dpdk_status(bool json, char *buf, size_t len);
/* A loop's connections for the status view (the loop's own module copy says). */
size_t dpdk_conns(struct dp_loop *l, char *buf, size_t len);
/* dpdk.c: the polling loop (the thread body) and its connections, for dpdk_main.c. */
void *dpdk_loop_main(void *arg);
size_t dpdk_loop_conns(struct dp_loop *l, char *buf, size_t len);

/* kernel.c: run one loop until dp_stop (the thread body). */
void *kernel_loop_main(void *arg);
/* Text lines, one per open connection of this loop, into buf (status view). */
size_t kernel_loop_conns(struct dp_loop *l, char *buf, size_t len);

#endif
