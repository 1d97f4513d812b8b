// SPDX-License-Identifier: MIT
/*
 * dataplane/session.c - a loop's sessions with the operator, the same for
 * every backend (dataplane.h): open the proxy attach point and listen
 * there as the proxy for TCP, and in a second session for UDP (a session
 * holds one listener); the operator then hands these sessions the off-host
 * circuits and pushes the published ports. A lost session (the operator
 * restarted) is tried again at once, then after pauses from 50 ms doubling
 * to 1 s; the LISTEN_OK brings the published ports again, so a restarted
 * operator has its routes and publishes back with no guest doing anything.
 * Circuits waiting on a session are taken into the backend's own connection
 * blocks; established ones never needed the operator.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <circnet/opclient.h>

#include "../operator/log.h"
#include "conn.h"
#include "dataplane.h"

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int dp_session_attach(struct cn_op *op, const struct dp_config *cfg, unsigned int l4,
		      void (*on_publish)(void *arg, const struct cn_msg_publish *m), void *arg)
{
	struct cn_addr any = { 0 }, bound;
	uint64_t id;
	int err = cn_op_open(op, cfg->operator_path);

	if (err)
		return err;
	op->on_publish = on_publish; /* the set follows the LISTEN_OK */
	op->cb_arg = arg;
	err = cn_op_listen_flags(op, l4, &any, cfg->backlog, CN_LISTEN_PROXY, &bound, &id);
	if (err)
		cn_op_close(op);
	return err;
}

/* One session, its fd in epfd under tag. */
static int open_watched(struct dp_loop *dl, struct cn_op *op, unsigned int l4, int epfd, void *tag,
			void (*on_publish)(void *, const struct cn_msg_publish *), void *arg)
{
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = tag };
	int err = dp_session_attach(op, dl->cfg, l4, on_publish, arg);

	if (!err && epoll_ctl(epfd, EPOLL_CTL_ADD, op->fd, &e)) {
		err = -errno;
		cn_op_close(op);
	}
	return err;
}

void dp_sessions_attach(struct dp_loop *dl, struct dp_sessions *s, int epfd,
			void (*on_publish)(void *, const struct cn_msg_publish *), void *arg)
{
	int err = open_watched(dl, &s->op, CN_L4_TCP, epfd, s->tcp_tag, on_publish, arg);

	if (err) {
		if (!s->backoff_ms || log_level >= LOG_DEBUG)
			log_warn("loop %d: cannot attach to the operator at %s: %s (retrying)",
				 dl->index, dl->cfg->operator_path, strerror(-err));
		/* the operator restarting takes tens of ms, an outage longer: back off to 1 s */
		s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 50;
		if (s->backoff_ms > 1000)
			s->backoff_ms = 1000;
		s->next_attach_ms = mono_ms() + s->backoff_ms;
		return;
	}
	s->attached = true;
	s->backoff_ms = 0;
	atomic_fetch_add(&dl->cnt.operator_sessions, 1);
	err = s->tcp_only
		      ? 0
		      : open_watched(dl, &s->op_udp, CN_L4_UDP, epfd, s->udp_tag, on_publish, arg);
	if (err)
		log_warn("loop %d: udp routes not taken: %s", dl->index, strerror(-err));
	s->udp_attached = !err && !s->tcp_only;
	log_info("loop %d: attached to the operator: takes tcp%s off-host routes", dl->index,
		 s->udp_attached ? " and udp" : "");
}

bool dp_publish_collect(struct dp_pubset_rx *rx, const struct cn_msg_publish *m)
{
	if (m->index == 0) {
		rx->gen = m->gen;
		rx->n = 0;
	}
	if (m->gen != rx->gen || m->index != rx->n)
		return false; /* out of order: the next generation will set it right */
	if (m->count && rx->n < DP_PUB_MAX)
		rx->host[rx->n++] = m->host;
	return !m->count || m->index + 1 == m->count;
}

bool dp_sessions_due(const struct dp_sessions *s)
{
	return !s->attached && mono_ms() >= s->next_attach_ms;
}

void dp_sessions_close(struct dp_sessions *s, int epfd)
{
	if (s->attached) {
		if (epfd >= 0)
			epoll_ctl(epfd, EPOLL_CTL_DEL, s->op.fd, NULL);
		cn_op_close(&s->op);
		s->attached = false;
	}
	if (s->udp_attached) {
		if (epfd >= 0)
			epoll_ctl(epfd, EPOLL_CTL_DEL, s->op_udp.fd, NULL);
		cn_op_close(&s->op_udp);
		s->udp_attached = false;
	}
}

void dp_sessions_detach(struct dp_loop *dl, struct dp_sessions *s, int epfd, const char *why)
{
	log_warn("loop %d: operator session lost (%s): retrying", dl->index, why);
	dp_sessions_close(s, epfd);
	s->next_attach_ms = mono_ms();
}

void dp_sessions_flush(struct dp_sessions *s)
{
	if (s->attached)
		cn_op_flush(&s->op);
	if (s->udp_attached)
		cn_op_flush(&s->op_udp);
}

bool dp_sessions_alive(const struct dp_sessions *s, const struct cn_op *op)
{
	return op == &s->op_udp ? s->udp_attached : s->attached;
}

int dp_session_take(struct cn_op *op, size_t size, void (*start)(void *arg, struct dp_conn *c),
		    void *arg)
{
	for (;;) {
		struct dp_conn *c = calloc(1, size);
		int err;

		if (!c)
			return 0; /* they wait: the next event tries again */
		c->op = op;
		err = cn_op_accept(op, &c->r.ep, &c->conn, 1);
		if (err) {
			free(c);
			return err == -EAGAIN ? 0 : err;
		}
		start(arg, c);
	}
}
