/* SPDX-License-Identifier: MIT */
/*
 * dataplane/dataplane.h - what the proxy stack's modules share:
 *   main.c     command line, signals, threads, the status socket
 *   kernel.c   the kernel-socket backend: one epoll loop per thread
 *   relay.c    the circuit side of a connection (every backend's)
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

struct dp_config {
	char operator_path[256]; /* the proxy attach point */
	int threads;
	int connect_timeout_ms; /* 0: the kernel's own (SYN retries) */
	uint32_t backlog;	/* connections the operator may queue per loop */
	int udp_idle_ms;	/* a published UDP port's client idle this long is forgotten */
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

/* kernel.c: run one loop until dp_stop (the thread body). */
void *kernel_loop_main(void *arg);
/* Text lines, one per open connection of this loop, into buf (status view). */
size_t kernel_loop_conns(struct dp_loop *l, char *buf, size_t len);

#endif
