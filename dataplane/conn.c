// SPDX-License-Identifier: MIT
/*
 * dataplane/conn.c - the connection bookkeeping every backend shares
 * (conn.h): the loop's list and graveyard, the connect's outcome into the
 * circuit, the books, and the status view's lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../operator/log.h"
#include "conn.h"

void dp_conns_init(struct dp_conns *cs)
{
	memset(cs, 0, sizeof(*cs));
	pthread_mutex_init(&cs->lock, NULL);
}

void dp_conn_track(struct dp_loop *dl, struct dp_conns *cs, struct dp_conn *c)
{
	atomic_fetch_add(&dl->cnt.accepted, 1);
	atomic_fetch_add(&dl->cnt.active, 1);
	pthread_mutex_lock(&cs->lock);
	c->prev = NULL;
	c->next = cs->head;
	if (cs->head)
		cs->head->prev = c;
	cs->head = c;
	pthread_mutex_unlock(&cs->lock);
}

void dp_conn_connected(struct dp_loop *dl, struct dp_conn *c, int err)
{
	char dst[64];

	c->connecting = false;
	if (c->has_circuit)
		cn_ep_set_connect_status(&c->r.ep.ep, err);
	if (!err) {
		atomic_fetch_add(&dl->cnt.connected, 1);
		return;
	}
	cn_addr_format(&c->conn.local, dst, sizeof(dst));
	log_debug("circuit %llu: connect to %s failed: %s", (unsigned long long)c->r.circuit_id,
		  dst, strerror(err));
	atomic_fetch_add(&dl->cnt.failed, 1);
}

void dp_conn_release(struct dp_loop *dl, struct dp_conns *cs, struct dp_conn *c, bool tell_operator)
{
	struct dp_counters *cnt = &dl->cnt;

	if (c->r.reset)
		atomic_fetch_add(&cnt->resets, 1);
	if (c->r.host_err)
		log_debug("circuit %llu: the host side ended: %s",
			  (unsigned long long)c->r.circuit_id, strerror(c->r.host_err));
	atomic_fetch_add(&cnt->to_guest, c->r.st.to_guest);
	atomic_fetch_add(&cnt->to_host, c->r.st.to_host);
	atomic_fetch_add(&cnt->closed, 1);
	atomic_fetch_sub(&cnt->active, 1);
	cn_local_close(&c->r.ep);
	if (c->has_circuit && tell_operator)
		cn_op_closed(c->op, c->r.circuit_id);
	pthread_mutex_lock(&cs->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		cs->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&cs->lock);
	c->dead = true;
	c->grave_next = cs->grave;
	cs->grave = c;
}

void dp_conn_host_down(struct dp_conn *c)
{
	if (c->connecting && c->has_circuit)
		cn_ep_set_connect_status(&c->r.ep.ep, ECONNREFUSED);
	else if (c->has_circuit)
		relay_host_failed(&c->r, ECONNABORTED);
	if (c->r.ops) /* an inbound one still waiting for its guest has none yet */
		c->r.ops->abort(&c->r);
	c->r.reset = true;
}

void dp_conns_bury(struct dp_conns *cs)
{
	while (cs->grave) {
		struct dp_conn *c = cs->grave;

		cs->grave = c->grave_next;
		free(c);
	}
}

static const char *state_name(const struct dp_conn *c)
{
	if (c->accepting)
		return "accepting";
	if (c->connecting)
		return "connecting";
	return c->r.host_eof || c->r.guest_eof ? "closing" : "open";
}

size_t dp_conns_format(struct dp_loop *dl, struct dp_conns *cs, char *buf, size_t len)
{
	size_t used = 0;
	struct dp_conn *c;

	pthread_mutex_lock(&cs->lock);
	for (c = cs->head; c && used + 1 < len; c = c->next) {
		char a[64], b[64];
		int n;

		cn_addr_format(&c->conn.remote, a, sizeof(a));
		cn_addr_format(&c->conn.local, b, sizeof(b));
		n = snprintf(buf + used, len - used, "%d %llu %s %s %s %llu %llu\n", dl->index,
			     (unsigned long long)c->r.circuit_id, a, b, state_name(c),
			     (unsigned long long)c->r.st.to_guest,
			     (unsigned long long)c->r.st.to_host);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	pthread_mutex_unlock(&cs->lock);
	return used;
}

bool dp_same_host(const struct cn_addr *x, const struct cn_addr *y)
{
	return x->family == y->family && x->port == y->port && !memcmp(x->addr, y->addr, 16);
}
