/* SPDX-License-Identifier: MIT */
/*
 * dataplane/conn.h - a proxied connection as every backend keeps it: its
 * relay, what the operator said of it, its place in the loop's list (which
 * the status view reads from another thread), and its books. The backends
 * (kernel.c, dpdk.c) embed struct dp_conn first in their own connection
 * and add only their host side.
 */
#ifndef CIRCNET_DATAPLANE_CONN_H
#define CIRCNET_DATAPLANE_CONN_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <circnet/opclient.h>

#include "dataplane.h"
#include "relay.h"

/*
 * A published port's client whose guest's backlog is full (EAGAIN from the
 * operator) is held and the operator asked again every DP_PUB_RETRY_MS, as
 * Linux's client would resend its SYN; after DP_PUB_HOLD_MS, a reset.
 */
#define DP_PUB_RETRY_MS 20
#define DP_PUB_HOLD_MS	5000

/*
 * After the operator answered err for a published port's client at time
 * now: true if the client is to be held (a full backlog, within
 * DP_PUB_HOLD_MS of the first refusal), with *retry_ms set to when to ask
 * again. *hold_ms is the caller's, 0 until the first refusal.
 */
static inline bool dp_pub_hold(int err, int64_t now, int64_t *hold_ms, int64_t *retry_ms)
{
	if (err != -EAGAIN)
		return false;
	if (!*hold_ms)
		*hold_ms = now + DP_PUB_HOLD_MS;
	*retry_ms = now + DP_PUB_RETRY_MS;
	return now < *hold_ms;
}

struct dp_conn {
	struct relay r;		     /* first: host ops get the relay */
	struct cn_op_conn conn;	     /* circuit, guest (remote) and destination (local) */
	struct cn_op *op;	     /* the session it came from: CLOSED goes there */
	bool has_circuit;	     /* r.ep holds a circuit */
	bool connecting;	     /* the host connect is not settled */
	bool accepting;		     /* inbound, its guest not known yet */
	bool dead;		     /* released: freed when the batch is over */
	struct dp_conn *prev, *next; /* the loop's list */
	struct dp_conn *grave_next;  /* the graveyard, once released */
};

/* A loop's connections. */
struct dp_conns {
	pthread_mutex_t lock; /* the list only */
	struct dp_conn *head;
	struct dp_conn *grave;
};

void dp_conns_init(struct dp_conns *cs);

/* On the list; counted as accepted and active. */
void dp_conn_track(struct dp_loop *dl, struct dp_conns *cs, struct dp_conn *c);

/*
 * The connect is settled: the outcome goes into the circuit's status word
 * (the guest's connect() returns with it) and into the books.
 */
void dp_conn_connected(struct dp_loop *dl, struct dp_conn *c, int err);

/*
 * Done with it: the books (bytes, resets, closed), the circuit closed and,
 * when tell_operator, a CLOSED notice to its session. It leaves the list
 * for the graveyard: events of this batch may still name it (c->dead), and
 * c->next stays valid for a walk in progress. Freed by dp_conns_bury().
 */
void dp_conn_release(struct dp_loop *dl, struct dp_conns *cs, struct dp_conn *c,
		     bool tell_operator);

/*
 * The proxy goes down (SIGTERM): a pending connect fails with ECONNREFUSED,
 * an open connection is reset towards its guest, and the host side aborted.
 */
void dp_conn_host_down(struct dp_conn *c);

/* Free what was released (each dp_conn is the start of a malloc'd block). */
void dp_conns_bury(struct dp_conns *cs);

/* One line per connection for the status view; the length written. */
size_t dp_conns_format(struct dp_loop *dl, struct dp_conns *cs, char *buf, size_t len);

/* Same family, address and port. */
bool dp_same_host(const struct cn_addr *x, const struct cn_addr *y);

#endif
