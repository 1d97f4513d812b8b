// SPDX-License-Identifier: MIT
/*
 * operator/core.c - guests, sessions and circuit setup: everything a guest
 * can ask the operator for.
 *
 * Identity: each guest has its own operator socket; a session belongs to the
 * guest whose socket it came through (and, if the config names a uid, only
 * that uid may connect: SO_PEERCRED). Nothing a guest sends names a guest,
 * so no message can act for another one.
 *
 * A guest is hostile until proven otherwise: messages are validated before
 * use (proto.c), a session that breaks the protocol is dropped, replies
 * never block (a guest that stops reading its socket loses its session, not
 * our time), and each guest gets a bounded share of every event-loop round
 * so that one flooding guest cannot starve the others.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <circnet/local.h>
#include <circnet/notify.h>

#include "log.h"
#include "operator.h"
#include "policy.h"

#define ROUND_BUDGET	 32 /* messages per guest per event-loop round */
#define SESSION_BATCH	 8  /* messages per session per event */
#define DENY_LOGS_PER_SEC 20

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct guest *guest_by_id(struct op *op, uint64_t id)
{
	struct list *pos;

	if (op->proxy && op->proxy->id == id)
		return op->proxy;
	list_for_each(pos, &op->guests) {
		struct guest *g = container_of(pos, struct guest, link);

		if (g->id == id)
			return g;
	}
	return NULL;
}

struct guest_conf *guest_conf(struct op *op, struct guest *g)
{
	return g == op->proxy ? &op->proxy_conf : &op->cfg->guests[g->conf];
}

static int ep_add(struct op *op, struct evsrc *ev)
{
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = ev };

	return epoll_ctl(op->epfd, EPOLL_CTL_ADD, ev->fd, &e);
}

/* ---- circuits ---- */

static struct circuit **hash_slot(struct op *op, uint64_t id)
{
	return &op->hash[(id * 0x9e3779b97f4a7c15ull) >> 50 & (op->hash_size - 1)];
}

static struct circuit *circuit_find(struct op *op, uint64_t id)
{
	struct circuit *c;

	for (c = *hash_slot(op, id); c; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

static void end_detach_session(struct circuit_end *e)
{
	if (e->s) {
		list_del(&e->link);
		e->s = NULL;
	}
}

static void circuit_free(struct op *op, struct circuit *c)
{
	struct circuit **pp;
	int i;

	if (c->slot) {
		c->slot->c = NULL;
		/* a VM's end never attached (a failed setup) has no lease to give it back */
		pool_vm_ends_drop(op, c->slot);
	}

	for (pp = hash_slot(op, c->id); *pp; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	for (i = 0; i < 2; i++) {
		end_detach_session(&c->end[i]);
		if (c->end[i].g) {
			c->end[i].g->ncircuits--;
			c->end[i].g->mem -= c->mem;
		}
	}
	if (c->queued_in) {
		c->queued_in->queued--;
		c->queued_in->s->g->npending--;
	}
	list_del(&c->link);
	op->ncircuits--;
	free(c);
}

/* One end is done (CLOSED, its session ended, its guest removed). */
static void circuit_end_close(struct op *op, struct circuit *c, int role)
{
	struct circuit_end *e = &c->end[role];

	end_detach_session(e);
	if (e->g) {
		if (c->slot)
			pool_end_closed(op, c->slot, role, e->g);
		e->g->ncircuits--;
		e->g->mem -= c->mem;
		e->g = NULL;
	}
	if (role == CN_ROLE_ACCEPTOR && c->queued_in) {
		c->queued_in->queued--;
		c->queued_in->s->g->npending--;
		c->queued_in = NULL;
	}
	if (!c->end[0].g && !c->end[1].g)
		circuit_free(op, c);
}

/* ---- sending ---- */

/* Never blocks: a guest that does not read its socket is dropped instead. */
static int send_msg(struct session *s, const struct cn_msg_hdr *h, const int *fds, int nfds)
{
	/* a VM's session is its control circuit (vm.c): messages without fds */
	int err = s->vm ? vm_session_send(s->vm, h, nfds) : cn_send_fds(s->ev.fd, fds, nfds, h, h->len);

	if (err)
		log_debug("guest %s session %llu: send %s failed: %s", s->g->name,
			  (unsigned long long)s->id, cn_msg_name(h->type), strerror(-err));
	return err;
}

static int reply_error(struct session *s, uint32_t seq, int err)
{
	struct cn_msg_error m;

	cn_msg_init(&m.h, CN_MSG_ERROR, sizeof(m), seq);
	m.err = err;
	return send_msg(s, &m.h, NULL, 0);
}

/* ---- sessions ---- */

/* A proxy listener is gone: off-host routes of its l4 go to the others. */
static void proxy_forget(struct op *op, struct listener *l)
{
	unsigned int i, n = op->proxy_n[l->l4];

	for (i = 0; i < n; i++)
		if (op->proxy_lst[l->l4][i] == l) {
			op->proxy_lst[l->l4][i] = op->proxy_lst[l->l4][n - 1];
			op->proxy_n[l->l4] = n - 1;
			if (n == 1)
				log_warn("proxy stack: detached: %s off-host routes are unreachable",
					 l->l4 == CN_L4_TCP ? "tcp" : "udp");
			return;
		}
}

/* A session is going: its parked connects (restart grace) go with it. */
static void unpark_session(struct op *op, struct session *s)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &op->parked) {
		struct parked *p = container_of(pos, struct parked, link);

		if (p->s == s) {
			list_del(&p->link);
			op->nparked--;
			free(p);
		}
	}
}

static void vm_session_resets(struct op *op, struct session *s);

static void session_close(struct op *op, struct session *s, const char *why);

/* A VM's session ends: so do its listener sessions first. */
static void vm_children_close(struct op *op, struct session *s)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &s->g->sessions) {
		struct session *t = container_of(pos, struct session, link);

		if (t->vm_parent == s)
			session_close(op, t, NULL);
	}
}

static void session_close(struct op *op, struct session *s, const char *why)
{
	struct guest *g = s->g;

	if (why)
		log_info("guest %s: session %llu (pid %d) closed: %s", g->name,
			 (unsigned long long)s->id, (int)s->pid, why);
	if (op->nparked)
		unpark_session(op, s);
	if (s->vm && !s->vm_parent)
		vm_children_close(op, s);
	if (s->vm)
		vm_session_resets(op, s);
	while (!list_empty(&s->circuits)) {
		struct circuit_end *e = container_of(s->circuits.next, struct circuit_end, link);
		struct circuit *c = container_of(e - e->role, struct circuit, end[0]);

		circuit_end_close(op, c, e->role);
	}
	if (s->lst) {
		proxy_forget(op, s->lst);
		g->nlisteners--;
		list_del(&s->lst->link);
		free(s->lst);
	}
	if (s->ev.fd >= 0) {
		epoll_ctl(op->epfd, EPOLL_CTL_DEL, s->ev.fd, NULL);
		close(s->ev.fd);
	}
	if (s->vm && !s->vm_parent)
		vm_session_gone(s->vm); /* its control circuit is served no more */
	list_del(&s->link);
	g->nsessions--;
	op->nsessions--;
	free(s);
}

/* A session of g on fd (ours: closed on failure), in the event loop. */
static struct session *session_new(struct op *op, struct guest *g, int fd, pid_t pid, uid_t uid)
{
	struct session *s = calloc(1, sizeof(*s));

	if (!s) {
		close(fd);
		return NULL;
	}
	s->ev.kind = EV_SESSION;
	s->ev.fd = fd;
	s->g = g;
	s->id = ++op->next_id;
	s->pid = pid;
	s->uid = uid;
	list_init(&s->circuits);
	if (ep_add(op, &s->ev)) {
		close(fd);
		free(s);
		return NULL;
	}
	list_add_tail(&g->sessions, &s->link);
	g->nsessions++;
	op->nsessions++;
	return s;
}

/*
 * A VM's session (vm.c): its control circuit plays the socket. Not in
 * epoll: vm.c reads the circuit and hands each message to core_vm_dispatch.
 */
struct session *core_vm_session(struct op *op, struct guest *g, struct vm_dev *d, pid_t pid)
{
	struct session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->ev.kind = EV_SESSION;
	s->ev.fd = -1;
	s->vm = d;
	s->g = g;
	s->id = ++op->next_id;
	s->pid = pid;
	list_init(&s->circuits);
	list_add_tail(&g->sessions, &s->link);
	g->nsessions++;
	op->nsessions++;
	return s;
}

static void push_reset(struct circuit *c, int role);

/*
 * A VM's session ends (its device went, its driver asked for a new control
 * circuit, core dropped it): the other ends of its circuits are reset, as
 * a peer host's crash resets TCP connections. An eventfd shows no hang-up,
 * so the other end learns it from us.
 */
static void vm_session_resets(struct op *op, struct session *s)
{
	struct list *pos;

	list_for_each(pos, &s->circuits) {
		struct circuit_end *e = container_of(pos, struct circuit_end, link);
		struct circuit *c = container_of(e - e->role, struct circuit, end[0]);

		if (c->end[!e->role].g) {
			pool_slot_vm_reset(op, c, e->role);
			push_reset(c, !e->role);
		}
	}
}

void core_vm_session_close(struct op *op, struct session *s, const char *why)
{
	session_close(op, s, why);
}

void core_guest_event(struct op *op, struct guest *g)
{
	struct guest_conf *gc = guest_conf(op, g);
	struct session *s;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd;

	fd = accept4(g->ev.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("guest %s: accept: %s", g->name, strerror(errno));
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		log_warn("guest %s: SO_PEERCRED: %s", g->name, strerror(errno));
		close(fd);
		return;
	}
	if (g->vm) {
		/* a VM's circuits live in its devices: its session is its control circuit */
		log_warn("guest %s: refused a session from pid %d: the guest is a VM", g->name,
			 (int)cred.pid);
		close(fd);
		return;
	}
	if (gc->uid >= 0 && (long)cred.uid != gc->uid) {
		log_warn("guest %s: refused a session from pid %d: uid %u is not the guest's uid %ld",
			 g->name, (int)cred.pid, (unsigned int)cred.uid, gc->uid);
		close(fd);
		return;
	}
	if (g->nsessions >= gc->lim.max_sessions) {
		log_warn("guest %s: refused a session from pid %d: max-sessions %u reached",
			 g->name, (int)cred.pid, gc->lim.max_sessions);
		close(fd);
		return;
	}
	s = session_new(op, g, fd, cred.pid, cred.uid);
	if (s)
		log_debug("guest %s: session %llu from pid %d uid %u", g->name,
			  (unsigned long long)s->id, (int)cred.pid, (unsigned int)cred.uid);
}

/* ---- requests ---- */

void core_hello_ok(struct op *op, struct guest *g, uint32_t seq, struct cn_msg_hello_ok *r)
{
	struct guest_conf *gc = guest_conf(op, g);
	int i;

	cn_msg_init(&r->h, CN_MSG_HELLO_OK, sizeof(*r), seq);
	memcpy(r->name, g->name, CN_NAME_MAX);
	r->guest_id = g->id;
	r->naddr = (uint32_t)gc->naddr;
	r->ring_size = gc->lim.ring_size;
	for (i = 0; i < gc->naddr; i++)
		r->addrs[i] = gc->addrs[i];
}

static int handle_hello(struct op *op, struct session *s, const struct cn_msg_hello *m)
{
	struct cn_msg_hello_ok r;

	if (s->hello)
		return reply_error(s, m->h.seq, EISCONN);
	core_hello_ok(op, s->g, m->h.seq, &r);
	s->hello = true;
	log_info("guest %s: registered (session %llu, pid %d, uid %u, declared pid %u)",
		 s->g->name, (unsigned long long)s->id, (int)s->pid, (unsigned int)s->uid, m->pid);
	return send_msg(s, &r.h, NULL, 0);
}

static bool is_loopback(const struct cn_addr *a)
{
	static const uint8_t v6lo[16] = { [15] = 1 };

	if (a->family == CN_AF_INET)
		return a->addr[0] == 127;
	return a->family == CN_AF_INET6 && !memcmp(a->addr, v6lo, 16);
}

static bool is_unspecified(const struct cn_addr *a)
{
	static const uint8_t zero[16];

	return a->family == CN_AF_NONE || !memcmp(a->addr, zero, 16);
}

static bool addr_eq(const struct cn_addr *a, const struct cn_addr *b)
{
	return a->family == b->family && !memcmp(a->addr, b->addr, 16);
}

static bool guest_owns(const struct guest_conf *gc, const struct cn_addr *a)
{
	int i;

	for (i = 0; i < gc->naddr; i++)
		if (addr_eq(&gc->addrs[i], a))
			return true;
	return false;
}

/*
 * The address families a listener takes, as bits (1 << CN_AF_*): 0.0.0.0
 * takes IPv4; :: takes both, as dual-stack Linux does, or IPv6 alone with
 * IPV6_V6ONLY; no family takes both; a specific address its own.
 */
static unsigned int listener_families(const struct listener *l)
{
	const unsigned int v4 = 1u << CN_AF_INET, v6 = 1u << CN_AF_INET6;

	if (l->addr.family == CN_AF_INET)
		return v4;
	if (l->addr.family == CN_AF_INET6)
		return is_unspecified(&l->addr) && !l->v6only ? v4 | v6 : v6;
	return v4 | v6;
}

/* Does listener l take a connection to dst? */
static bool listener_takes(const struct listener *l, unsigned int l4, const struct cn_addr *dst)
{
	if (l->l4 != l4 || l->addr.port != dst->port)
		return false;
	if (is_unspecified(&l->addr))
		return (listener_families(l) >> dst->family) & 1;
	return addr_eq(&l->addr, dst);
}

static struct listener *listener_find(struct guest *g, unsigned int l4, const struct cn_addr *dst)
{
	struct list *pos, *tmp;
	struct listener *wild = NULL;

	list_for_each_safe(pos, tmp, &g->listeners) {
		struct listener *l = container_of(pos, struct listener, link);

		if (!listener_takes(l, l4, dst))
			continue;
		if (!is_unspecified(&l->addr))
			return l; /* a specific address beats a wildcard */
		wild = l; /* among sockets sharing a port, the newest takes new peers */
	}
	return wild;
}

/* Would a listener on (a, v6only) overlap one that exists? */
static bool port_in_use(struct guest *g, unsigned int l4, uint16_t port, const struct cn_addr *a,
			bool v6only, bool reuse)
{
	struct listener probe = { .addr = *a, .v6only = v6only };
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &g->listeners) {
		struct listener *l = container_of(pos, struct listener, link);

		if (l->l4 != l4 || l->addr.port != port)
			continue;
		if (reuse && l->reuse && l4 == CN_L4_UDP)
			continue; /* SO_REUSEADDR datagram sockets share a port */
		if (!(listener_families(l) & listener_families(&probe)))
			continue; /* 0.0.0.0 and a V6ONLY :: live side by side */
		if (is_unspecified(&l->addr) || is_unspecified(a) || addr_eq(&l->addr, a))
			return true;
	}
	return false;
}

/* An ephemeral port no listener of this guest uses, or 0. */
static uint16_t pick_port(struct op *op, struct guest *g, unsigned int l4, const struct cn_addr *a)
{
	unsigned int span = (unsigned int)(op->cfg->eph_hi - op->cfg->eph_lo) + 1, i;

	for (i = 0; i < span; i++) {
		uint16_t port;

		if (g->next_port < op->cfg->eph_lo || g->next_port > op->cfg->eph_hi)
			g->next_port = op->cfg->eph_lo;
		port = g->next_port++;
		if (!a || !port_in_use(g, l4, port, a, false, false))
			return port;
	}
	return 0;
}

/* The published ports of one l4, as one numbered set, to a proxy session. */
static int push_publish(struct op *op, struct session *s, unsigned int l4)
{
	const struct config *cfg = op->cfg;
	struct cn_msg_publish m;
	int i, k = 0, n = 0;

	for (i = 0; i < cfg->npublish; i++)
		n += cfg->publish[i].l4 == l4;
	op->publish_gen++;
	for (i = 0; i < cfg->npublish || (!n && !k); i++) {
		if (n && cfg->publish[i].l4 != l4)
			continue;
		cn_msg_init(&m.h, CN_MSG_PUBLISH, sizeof(m), 0);
		m.gen = op->publish_gen;
		m.index = (uint16_t)k++;
		m.count = (uint16_t)n;
		m.l4 = (uint8_t)l4;
		if (n)
			m.host = cfg->publish[i].host;
		if (send_msg(s, &m.h, NULL, 0))
			return -1;
		if (!n)
			break;
	}
	return 0;
}

void core_push_publish(struct op *op)
{
	unsigned int i, l4;

	for (l4 = CN_L4_TCP; l4 <= CN_L4_UDP; l4++)
		for (i = 0; i < op->proxy_n[l4]; i++)
			push_publish(op, op->proxy_lst[l4][i]->s, l4);
}

/* LISTEN_OK for listener l. */
static void listen_ok(struct cn_msg_listen_ok *r, uint32_t seq, const struct listener *l)
{
	cn_msg_init(&r->h, CN_MSG_LISTEN_OK, sizeof(*r), seq);
	r->listener_id = l->id;
	r->bound = l->addr;
	if (!r->bound.family)
		r->bound.family = CN_AF_INET; /* wildcard shown as 0.0.0.0 */
}

/* The proxy stack takes the off-host routes of one l4 (CN_LISTEN_PROXY). */
static int proxy_listen(struct op *op, struct session *s, const struct cn_msg_listen *m)
{
	struct cn_msg_listen_ok r;
	struct listener *l;

	if (s->g != op->proxy || !(m->flags & CN_LISTEN_PROXY) || !is_unspecified(&m->addr))
		return reply_error(s, m->h.seq, EACCES);
	if (op->proxy_n[m->l4] >= OP_PROXY_MAX)
		return reply_error(s, m->h.seq, ENOBUFS);
	l = calloc(1, sizeof(*l));
	if (!l)
		return reply_error(s, m->h.seq, ENOMEM);
	l->id = ++op->next_id;
	l->s = s;
	l->l4 = m->l4;
	l->backlog = m->backlog ? m->backlog : 1;
	if (l->backlog > op->proxy_conf.lim.max_pending)
		l->backlog = op->proxy_conf.lim.max_pending;
	list_add_tail(&s->g->listeners, &l->link);
	s->g->nlisteners++;
	s->lst = l;
	op->proxy_lst[m->l4][op->proxy_n[m->l4]++] = l;
	if (op->nparked)
		op->unpark_due = true; /* off-host connects waiting for a proxy stack */
	{
		/*
		 * A burst of off-host connects queues one NEW_CONN per circuit on
		 * this socket before the proxy loop reads them: the default send
		 * buffer (about 200 of them) would refuse the rest of the burst.
		 * Room for the backlog's worth, past wmem_max (we are root).
		 */
		int sz = (int)(l->backlog < 4096 ? 4096 : l->backlog) * 2048;

		if (setsockopt(s->ev.fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)))
			setsockopt(s->ev.fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	log_info("proxy stack: takes %s off-host routes (session %llu, pid %d)",
		 m->l4 == CN_L4_TCP ? "tcp" : "udp", (unsigned long long)s->id, (int)s->pid);
	cn_msg_init(&r.h, CN_MSG_LISTEN_OK, sizeof(r), m->h.seq);
	r.listener_id = l->id;
	r.bound = m->addr;
	r.bound.family = CN_AF_INET; /* every off-host address, shown as 0.0.0.0 */
	if (send_msg(s, &r.h, NULL, 0))
		return -1;
	return push_publish(op, s, m->l4);
}

/*
 * Check a guest's LISTEN and make its listener on session owner (the
 * session that asked, or the channel it sent). 0 with *r filled, or a
 * positive errno.
 */
/*
 * A listener goes while its session stays: UNLISTEN, or a channel whose
 * guest closed it (its hang-up not read yet). Connections queued for it die
 * with the channel's socket queue: forget them.
 */
static void listener_drop(struct op *op, struct listener *l)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &op->circuits) {
		struct circuit *c = container_of(pos, struct circuit, link);

		if (c->queued_in == l)
			circuit_end_close(op, c, CN_ROLE_ACCEPTOR);
	}
	proxy_forget(op, l);
	l->s->g->nlisteners--;
	l->s->lst = NULL;
	list_del(&l->link);
	free(l);
}

/* Has the guest closed this session (its hang-up may not be read yet)? */
static bool session_hung_up(const struct session *s)
{
	struct pollfd p = { .fd = s->ev.fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * Before a port is judged taken: listeners on it whose guest has closed
 * them are gone, even if their hang-up waits further down this round's
 * events (a server that closes its listener and listens again at once, as
 * iperf3 does after every test, must get its port). The session itself is
 * closed when its own event is read.
 */
static void reap_closed_listeners(struct op *op, struct guest *g, unsigned int l4, uint16_t port)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &g->listeners) {
		struct listener *l = container_of(pos, struct listener, link);

		if (l->l4 == l4 && l->addr.port == port && session_hung_up(l->s))
			listener_drop(op, l);
	}
}

static int listen_setup(struct op *op, struct session *owner, const struct cn_msg_listen *m,
			struct cn_msg_listen_ok *r)
{
	struct guest *g = owner->g;
	struct guest_conf *gc = guest_conf(op, g);
	struct cn_addr a = m->addr;
	struct listener *l;

	if (!is_unspecified(&a) && !is_loopback(&a) && !guest_owns(gc, &a)) {
		log_warn("guest %s: listen on an address it does not own refused", g->name);
		return EADDRNOTAVAIL;
	}
	if (g->nlisteners >= gc->lim.max_listeners)
		return ENOBUFS;
	if (!a.port) {
		a.port = pick_port(op, g, m->l4, &a);
		if (!a.port)
			return EADDRINUSE;
		/* udp clients bind a port to send from: always allowed */
		if (m->l4 == CN_L4_TCP && !policy_may_listen(gc, m->l4, a.port))
			return EACCES;
	} else {
		if (!policy_may_listen(gc, m->l4, a.port)) {
			log_warn("guest %s: listen on %s port %u refused: not in its listen ports",
				 g->name, m->l4 == CN_L4_TCP ? "tcp" : "udp", a.port);
			return EACCES;
		}
		reap_closed_listeners(op, g, m->l4, a.port);
		if (port_in_use(g, m->l4, a.port, &a, m->flags & CN_LISTEN_V6ONLY,
				m->flags & CN_LISTEN_REUSE))
			return EADDRINUSE;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return ENOMEM;
	l->id = ++op->next_id;
	l->s = owner;
	l->l4 = m->l4;
	l->addr = a;
	l->v6only = m->flags & CN_LISTEN_V6ONLY;
	l->reuse = m->flags & CN_LISTEN_REUSE;
	l->backlog = m->backlog ? m->backlog : 1;
	if (l->backlog > gc->lim.max_pending)
		l->backlog = gc->lim.max_pending;
	list_add_tail(&g->listeners, &l->link);
	g->nlisteners++;
	owner->lst = l;
	listen_ok(r, m->h.seq, l);
	if (op->nparked)
		op->unpark_due = true;
	log_debug("guest %s: listening %s port %u backlog %u", g->name,
		  m->l4 == CN_L4_TCP ? "tcp" : "udp", a.port, l->backlog);
	return 0;
}

static int handle_listen(struct op *op, struct session *s, const struct cn_msg_listen *m)
{
	struct cn_msg_listen_ok r;
	int err;

	if (s->lst)
		return reply_error(s, m->h.seq, EINVAL); /* one listener per session */
	if ((m->flags & CN_LISTEN_PROXY) || s->g == op->proxy)
		return proxy_listen(op, s, m);
	err = listen_setup(op, s, m, &r);
	return err ? reply_error(s, m->h.seq, err) : send_msg(s, &r.h, NULL, 0);
}

/* The session whose socket is the same as fd's (a channel sent again), or NULL. */
static struct session *session_by_socket(struct op *op, const struct stat *st)
{
	struct list *gpos, *gtmp, *spos, *stmp;

	list_for_each_safe(gpos, gtmp, &op->guests) {
		struct guest *g = container_of(gpos, struct guest, link);

		list_for_each_safe(spos, stmp, &g->sessions) {
			struct session *t = container_of(spos, struct session, link);

			if (t->chan_ino && t->chan_ino == (uint64_t)st->st_ino &&
			    t->chan_dev == (uint64_t)st->st_dev)
				return t;
		}
	}
	return NULL;
}

/*
 * Messages a channel holds from before it was handed to us: notices the
 * guest wrote while no operator read them (ACCEPTED for circuits of an
 * operator that is gone). They mean nothing to this one: drop them, and
 * any fds with them, before the channel is served.
 */
static void channel_drain(int fd)
{
	union cn_msg m;
	int fds[CN_LOCAL_NFDS + 1], nfds, i, n;

	for (n = 0; n < 4096; n++) {
		nfds = 0;
		if (cn_recv_fds(fd, fds, CN_LOCAL_NFDS + 1, &nfds, &m, sizeof(m)) <= 0 && !nfds)
			break;
		for (i = 0; i < nfds; i++)
			close(fds[i]);
	}
}

/* A socket a guest may hand us as a channel: a SOCK_SEQPACKET AF_UNIX socket. */
static bool channel_usable(int fd, struct stat *st)
{
	int type = 0, domain = 0;
	socklen_t len = sizeof(int);

	if (fstat(fd, st) || !S_ISSOCK(st->st_mode))
		return false;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_SEQPACKET)
		return false;
	len = sizeof(int);
	return !getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) && domain == AF_UNIX;
}

/*
 * LISTEN with the listener's channel (CN_LISTEN_CHANNEL, proto.h): the
 * channel becomes a session of the asking session's guest and holds the
 * listener; the reply goes to the asking session. Sent again (after an
 * operator restart, or by another process sharing the socket), the same
 * channel finds its listener as it is. chan is ours to close.
 */
static int handle_listen_channel(struct op *op, struct session *s, const struct cn_msg_listen *m,
				 int chan)
{
	struct guest_conf *gc = guest_conf(op, s->g);
	struct cn_msg_listen_ok r;
	struct session *t;
	struct stat st;
	int err;

	if (!s->hello)
		err = ENOTCONN;
	else if ((m->flags & CN_LISTEN_PROXY) || s->g == op->proxy)
		err = EINVAL; /* the proxy stack listens on its sessions */
	else if (chan < 0 || !channel_usable(chan, &st))
		err = EINVAL;
	else
		err = 0;
	if (err) {
		if (chan >= 0)
			close(chan);
		return reply_error(s, m->h.seq, err);
	}
	t = session_by_socket(op, &st);
	if (t) {
		close(chan);
		if (t->g != s->g) {
			/* identity is the socket a session came through, never a channel */
			log_warn("guest %s: refused another guest's listener channel (guest %s)",
				 s->g->name, t->g->name);
			return reply_error(s, m->h.seq, EPERM);
		}
		if (!t->lst)
			return reply_error(s, m->h.seq, EINVAL);
		listen_ok(&r, m->h.seq, t->lst);
		return send_msg(s, &r.h, NULL, 0);
	}
	if (s->g->nsessions >= gc->lim.max_sessions) {
		close(chan);
		return reply_error(s, m->h.seq, ENOBUFS);
	}
	fcntl(chan, F_SETFL, fcntl(chan, F_GETFL) | O_NONBLOCK);
	channel_drain(chan);
	t = session_new(op, s->g, chan, s->pid, s->uid);
	if (!t)
		return reply_error(s, m->h.seq, ENOMEM); /* session_new closed chan */
	t->hello = true;
	t->chan_ino = (uint64_t)st.st_ino;
	t->chan_dev = (uint64_t)st.st_dev;
	err = listen_setup(op, t, m, &r);
	if (err) {
		session_close(op, t, NULL);
		return reply_error(s, m->h.seq, err);
	}
	log_debug("guest %s: listener %llu on channel session %llu", s->g->name,
		  (unsigned long long)t->lst->id, (unsigned long long)t->id);
	return send_msg(s, &r.h, NULL, 0);
}

static int handle_unlisten(struct op *op, struct session *s, const struct cn_msg_id *m)
{
	struct cn_msg_hdr r;

	if (!s->lst || s->lst->id != m->id)
		return reply_error(s, m->h.seq, ENOENT);
	listener_drop(op, s->lst);
	cn_msg_init(&r, CN_MSG_OK, sizeof(r), m->h.seq);
	return send_msg(s, &r, NULL, 0);
}

/* Log a refusal, at most DENY_LOGS_PER_SEC a second per guest. */
static void log_refusal(struct guest *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_refusal(struct guest *g, const char *fmt, ...)
{
	time_t now = time(NULL);
	char line[512];
	va_list ap;

	if (now != g->log_window) {
		if (g->log_dropped)
			log_warn("guest %s: %u more refusals not logged", g->name, g->log_dropped);
		g->log_window = now;
		g->log_count = 0;
		g->log_dropped = 0;
	}
	if (++g->log_count > DENY_LOGS_PER_SEC) {
		g->log_dropped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_warn("%s", line);
}

static struct guest *guest_by_conf(struct op *op, int conf)
{
	return conf >= 0 && conf < op->cfg->nguests ? op->by_conf[conf] : NULL;
}

/* The source address of a new circuit; 0 or a positive errno. */
static int choose_src(struct op *op, struct session *s, const struct cn_msg_connect *m,
		      struct cn_addr *src)
{
	struct guest_conf *gc = guest_conf(op, s->g);
	int i;

	*src = m->src;
	if (is_unspecified(src)) {
		if (is_loopback(&m->dst)) {
			*src = m->dst;
		} else {
			for (i = 0; i < gc->naddr; i++)
				if (gc->addrs[i].family == m->dst.family)
					break;
			if (i == gc->naddr)
				return ENETUNREACH; /* no address of that family */
			*src = gc->addrs[i];
		}
		src->port = m->src.port;
	} else if (!guest_owns(gc, src) && !(is_loopback(src) && is_loopback(&m->dst))) {
		return EADDRNOTAVAIL;
	}
	if (m->l4 == CN_L4_UDP) {
		/* datagram circuits run from a bound socket of the requester */
		if (!m->src.port || !s->lst || s->lst->l4 != CN_L4_UDP ||
		    s->lst->addr.port != m->src.port)
			return EINVAL;
	} else if (!src->port) {
		src->port = pick_port(op, s->g, CN_L4_TCP, NULL);
	}
	return 0;
}

struct setup {
	struct flow flow;
	struct guest *dst;
	struct listener *lst;
	int rule;
	bool proxied; /* to the proxy stack: the circuit is pending */
	struct cn_addr to; /* the acceptor's address (m->dst, or a published guest's) */
	int unparked_err; /* route() said EINPROGRESS: the answer if it cannot wait */
};

/* Where does the connection go, and may it? 0 or a positive errno. */
static int route(struct op *op, struct session *s, const struct cn_msg_connect *m,
		 struct setup *st)
{
	struct config *cfg = op->cfg;
	struct guest *g = s->g;
	char sa[64], da[64];
	enum verdict v;
	int i;

	st->flow.dst_guest = -1;
	if (is_loopback(&m->dst) || guest_owns(guest_conf(op, g), &m->dst))
		st->flow.dst_guest = g->conf;
	else
		st->flow.dst_guest = config_guest_by_addr(cfg, &m->dst);
	st->rule = -1;
	addr_format(&st->flow.src, true, sa, sizeof(sa));
	addr_format(&m->dst, true, da, sizeof(da));
	if (st->flow.dst_guest < 0) {
		v = policy_decide(cfg, &st->flow, &st->rule);
		if (v == VERDICT_PROXY && op->proxy_n[m->l4]) {
			/* the dataplane's event loops take turns */
			st->dst = op->proxy;
			st->lst = op->proxy_lst[m->l4][op->proxy_rr[m->l4]++ % op->proxy_n[m->l4]];
			st->proxied = true;
			return 0;
		}
		if (v == VERDICT_PROXY && mono_ms() < op->grace_end) {
			/* the proxy stack attaches again after a restart: wait for it */
			st->unparked_err = ENETUNREACH;
			return EINPROGRESS;
		}
		if (v == VERDICT_PROXY) {
			/* routed off-host: no proxy stack has attached to this operator */
			log_refusal(g, "guest %s: %s %s -> %s: proxy route (rule at %s:%d) but no "
				    "proxy stack attached", g->name, m->l4 == CN_L4_TCP ? "tcp" : "udp",
				    sa, da, cfg->path, cfg->rules[st->rule].line);
			return ENETUNREACH;
		}
		for (i = 0; i < cfg->nnetworks; i++)
			if (prefix_match(&cfg->networks[i], &m->dst))
				return EHOSTUNREACH; /* on the guest network, nobody there */
		return ENETUNREACH;
	}
	st->dst = guest_by_conf(op, st->flow.dst_guest);
	if (st->flow.dst_guest != g->conf) {
		v = policy_decide(cfg, &st->flow, &st->rule);
		if (v != VERDICT_ALLOW) {
			char where[CFG_PATH_MAX + 32];

			if (st->rule >= 0)
				snprintf(where, sizeof(where), "rule at %s:%d", cfg->path,
					 cfg->rules[st->rule].line);
			else
				snprintf(where, sizeof(where), "default deny");
			log_refusal(g, "denied: %s %s(%s) -> %s(%s) by %s",
				    m->l4 == CN_L4_TCP ? "tcp" : "udp", g->name, sa,
				    cfg->guests[st->flow.dst_guest].name, da, where);
			g->cnt.denied++;
			op->cnt.denied++;
			return ECONNREFUSED;
		}
	}
	if (!st->dst || !(st->lst = listener_find(st->dst, m->l4, &m->dst))) {
		st->unparked_err = ECONNREFUSED;
		return st->dst ? EINPROGRESS : ECONNREFUSED; /* EINPROGRESS: nobody listens yet */
	}
	/* a loopback listener takes only its own guest's loopback connections */
	if (is_loopback(&st->lst->addr) && !is_loopback(&m->dst))
		return ECONNREFUSED;
	return 0;
}

/*
 * A connection at a published host port (CONNECT from the proxy stack with
 * CN_CONNECT_PUBLISHED): the publish says which guest and port. The guest
 * sees the real client as its peer. 0 or a positive errno.
 */
static int route_published(struct op *op, struct session *s, const struct cn_msg_connect *m,
			   struct setup *st)
{
	const struct publish *pub;
	struct guest_conf *gc;
	int i;

	if (s->g != op->proxy || !m->src.family || !m->src.port)
		return EACCES;
	pub = config_publish_find(op->cfg, m->l4, &m->dst);
	if (!pub || !(st->dst = guest_by_conf(op, pub->guest)))
		return ECONNREFUSED;
	gc = guest_conf(op, st->dst);
	/*
	 * The guest's address of the client's family: the guest sees the real
	 * client as its peer, which an IPv4-only guest cannot for an IPv6 one.
	 */
	for (i = 0; i < gc->naddr; i++)
		if (gc->addrs[i].family == m->src.family)
			break;
	if (i == gc->naddr)
		return ECONNREFUSED;
	st->to = gc->addrs[i];
	st->to.port = pub->guest_port;
	st->flow.src = m->src;
	st->flow.dst_guest = pub->guest;
	st->flow.dst = st->to;
	st->rule = RULE_PUBLISHED;
	st->lst = listener_find(st->dst, m->l4, &st->to);
	if (!st->lst || is_loopback(&st->lst->addr)) {
		st->dst->cnt.refused++;
		op->cnt.refused++;
		return ECONNREFUSED;
	}
	return 0;
}

/* Limits on both sides; 0 or a positive errno. */
static int check_limits(struct op *op, struct session *s, struct setup *st, size_t mem)
{
	struct guest_conf *sc = guest_conf(op, s->g), *dc = guest_conf(op, st->dst);
	struct listener *l = st->lst;

	/*
	 * Ends closed in the books but still held (pool.c: a forked child
	 * keeps a connection, or a guest keeps what it said it closed) are
	 * bounded by max-circuits too, separately: they cost the operator a
	 * lease each.
	 */
	if (s->g->ncircuits >= sc->lim.max_circuits || s->g->nlinger > sc->lim.max_circuits ||
	    s->g->mem + mem > sc->lim.max_memory)
		return ENOBUFS;
	if (st->dst->ncircuits >= dc->lim.max_circuits || st->dst->nlinger > dc->lim.max_circuits ||
	    st->dst->mem + mem > dc->lim.max_memory) {
		s->g->cnt.refused++;
		op->cnt.refused++;
		log_debug("guest %s: connection to %s refused: its limits are full", s->g->name,
			  st->dst->name);
		return ECONNREFUSED;
	}
	if (l->queued >= l->backlog || st->dst->npending >= dc->lim.max_pending) {
		/*
		 * EAGAIN: Linux drops a SYN to a full accept queue and the client
		 * tries again. A proxy stack holding a published port's client does
		 * the same (it asks again); a guest's connect reads ECONNREFUSED
		 * (cn_op_connect).
		 */
		s->g->cnt.refused++;
		op->cnt.refused++;
		log_debug("guest %s: connection to %s refused: its backlog is full", s->g->name,
			  st->dst->name);
		return EAGAIN;
	}
	/* same guest on both ends counts twice: the second end must fit as well */
	if (st->dst == s->g && (s->g->ncircuits + 2 > sc->lim.max_circuits ||
				s->g->mem + 2 * mem > sc->lim.max_memory))
		return ENOBUFS;
	return 0;
}

/*
 * A VM's circuit (CN_CIRCUIT_VM, both ends' messages say so): the VM's
 * message names its device and vector pair instead of a chunk.
 */
static bool vm_end_of(const struct circuit *c, int role, struct cn_msg_circuit *r,
		      const struct guest *g)
{
	uint32_t position;
	int vec;

	if (!pool_slot_vm(c->slot, g, &vec, &position))
		return false;
	if (c->slot->vm_ends & (1u << role)) {
		r->chunk_id = position;
		r->vm_vec = (uint8_t)vec;
	}
	return true;
}

static void fill_circuit_msg(struct cn_msg_circuit *r, enum cn_msg_type type, uint32_t seq,
			     const struct circuit *c, int role, uint64_t lst, const struct guest *g)
{
	cn_msg_init(&r->h, type, sizeof(*r), seq);
	r->circuit_id = c->id;
	r->chunk_id = c->chunk_id;
	r->slot_off = c->slot_off;
	r->listener_id = lst;
	r->l4 = (uint8_t)c->l4;
	r->role = (uint8_t)role;
	r->ring_size[0] = c->ring_size[0];
	r->ring_size[1] = c->ring_size[1];
	r->local = c->end[role].addr;
	r->remote = c->end[!role].addr;
	if (c->slot && vm_end_of(c, role, r, g))
		r->flags |= CN_CIRCUIT_VM;
}

/*
 * What a pooled circuit's two ends get (proto.h, CN_POOL_NFDS): the chunk,
 * their ends of two notifier pairs (local.h) and their lease ends (pool.c).
 * Only the guest ends are ours here; the chunk fd stays with the pool.
 */
struct bundle {
	int chunk;
	int wake[2][2]; /* [data, space][role] */
	int lease[2];	/* [role] */
	/* a VM's pair: bit role for a VM's end (it gets no fds), the host end's eventfds */
	unsigned int vm_ends;
	int vmwake[4];
};

static void bundle_close(struct bundle *b)
{
	int i;

	for (i = 0; i < 4; i++) {
		if (b->vmwake[i] >= 0)
			close(b->vmwake[i]);
		b->vmwake[i] = -1;
	}
	for (i = 0; i < 2; i++) {
		if (b->wake[i][0] >= 0)
			close(b->wake[i][0]);
		if (b->wake[i][1] >= 0)
			close(b->wake[i][1]);
		if (b->lease[i] >= 0)
			close(b->lease[i]);
		b->wake[i][0] = b->wake[i][1] = b->lease[i] = -1;
	}
}

static int bundle_make(struct op *op, const struct guest *a, const struct guest *b,
		       const struct cn_circuit_params *prm, struct circuit *c, struct bundle *bd)
{
	struct slot *sl;
	int err = 0, i;

	bd->chunk = -1;
	bd->vm_ends = (a->vm ? 1u : 0u) | (b->vm ? 2u : 0u);
	for (i = 0; i < 4; i++)
		bd->vmwake[i] = -1;
	for (i = 0; i < 2; i++)
		bd->wake[i][0] = bd->wake[i][1] = bd->lease[i] = -1;
	sl = pool_slot_new(op, a, b, cn_circuit_size(prm), bd->lease, &err);
	if (!sl)
		return err;
	c->chunk_id = pool_slot_chunk(sl);
	c->slot_off = pool_slot_off(sl);
	c->slot = sl;
	sl->c = c;
	bd->chunk = pool_slot_fd(sl);
	err = pool_slot_format(sl, prm);
	if (!err && bd->vm_ends && bd->vm_ends != 3) /* the device's vectors are the notifiers */
		err = pool_slot_vm_wake(sl, bd->vmwake);
	for (i = 0; i < 2 && !err && !bd->vm_ends; i++)
		err = cn_socket_notifier_pair(bd->wake[i]);
	if (err)
		bundle_close(bd); /* the leases hang up: the slot comes back by itself */
	return err;
}

static int bundle_select(const struct bundle *b, int role, int out[CN_MSG_MAX_FDS])
{
	int i;

	if (b->vm_ends & (1u << role))
		return 0; /* the VM maps its device and sleeps on its vectors */
	out[0] = b->chunk;
	if (b->vm_ends) {
		for (i = 0; i < 4; i++)
			out[1 + i] = b->vmwake[i];
		out[5] = b->lease[role];
		return CN_POOL_NFDS_VM;
	}
	out[1] = b->wake[0][role];
	out[2] = b->wake[1][role];
	out[3] = b->lease[role];
	return CN_POOL_NFDS;
}

static void end_attach(struct circuit *c, int role, struct guest *g, struct session *s)
{
	struct circuit_end *e = &c->end[role];

	e->g = g;
	e->s = s;
	e->role = (uint8_t)role;
	list_add_tail(&s->circuits, &e->link);
	g->ncircuits++;
	g->mem += c->mem;
}

static struct circuit *circuit_new(struct op *op, unsigned int l4, const struct setup *st,
				   const struct cn_circuit_params *prm, size_t mem)
{
	struct circuit *c = calloc(1, sizeof(*c));
	struct circuit **slot;

	if (!c)
		return NULL;
	c->id = ++op->next_id;
	c->l4 = l4;
	c->ring_size[0] = prm->ring_size[0];
	c->ring_size[1] = prm->ring_size[1];
	c->mem = mem;
	c->created = time(NULL);
	c->rule = st->rule;
	slot = hash_slot(op, c->id);
	c->hnext = *slot;
	*slot = c;
	list_add_tail(&op->circuits, &c->link);
	op->ncircuits++;
	return c;
}

/*
 * The restart grace. A restarted operator knows no listener until the
 * guests register theirs again, which they do within a few hundred ms
 * (guest/procop.c). A connect arriving in that window to a guest port
 * nobody listens on would be refused for nothing: it waits instead, like
 * a SYN that a restarting host answers late, and is decided again when a
 * listener registers or when the grace ends (then refused). Only the
 * connecting guest's session waits; the operator serves everyone else.
 */
static bool park(struct op *op, struct session *s, const struct cn_msg_connect *m)
{
	struct parked *p;

	if (op->nparked >= OP_PARKED_MAX || mono_ms() >= op->grace_end)
		return false;
	p = calloc(1, sizeof(*p));
	if (!p)
		return false;
	p->s = s;
	p->m = *m;
	list_add_tail(&op->parked, &p->link);
	op->nparked++;
	op->parked_total++;
	return true;
}

static int handle_connect(struct op *op, struct session *s, const struct cn_msg_connect *m);

void core_end_round(struct op *op)
{
	struct list todo, *pos, *tmp;

	if (!op->nparked || (!op->unpark_due && mono_ms() < op->grace_end))
		return;
	op->unpark_due = false;
	/* each is decided again once: it parks again if its listener is still missing */
	list_init(&todo);
	list_for_each_safe(pos, tmp, &op->parked) {
		list_del(pos);
		list_add_tail(&todo, pos);
	}
	op->nparked = 0;
	list_for_each_safe(pos, tmp, &todo) {
		struct parked *p = container_of(pos, struct parked, link);
		struct session *s = p->s;
		struct cn_msg_connect m = p->m;

		list_del(pos);
		free(p);
		if (handle_connect(op, s, &m)) {
			/* its parked siblings go with it */
			list_for_each_safe(pos, tmp, &todo) {
				if (container_of(pos, struct parked, link)->s == s) {
					list_del(pos);
					free(container_of(pos, struct parked, link));
				}
			}
			session_close(op, s, "not reading its replies");
		}
	}
}

int core_timeout_ms(struct op *op)
{
	int sweep = pool_sweep(op);
	int64_t left;

	if (!op->nparked)
		return sweep;
	if (op->unpark_due)
		return 0;
	left = op->grace_end - mono_ms();
	if (left <= 0)
		return 0;
	return sweep >= 0 && sweep < left ? sweep : (int)left;
}

static int handle_connect(struct op *op, struct session *s, const struct cn_msg_connect *m)
{
	struct setup st = { .flow = { .l4 = m->l4, .src_guest = s->g->conf, .dst = m->dst } };
	struct cn_circuit_params prm = { 0 };
	struct cn_msg_circuit r;
	struct bundle fds;
	struct circuit *c;
	int ends[CN_MSG_MAX_FDS], nfds, err;
	size_t mem;

	st.to = m->dst;
	if (m->flags & CN_CONNECT_PUBLISHED) {
		err = route_published(op, s, m, &st);
	} else {
		err = choose_src(op, s, m, &st.flow.src);
		if (!err)
			err = route(op, s, m, &st);
	}
	if (err == EINPROGRESS) {
		if (park(op, s, m))
			return 0; /* answered when a listener comes, or the grace ends */
		err = st.unparked_err;
		if (err == ECONNREFUSED) {
			s->g->cnt.refused++;
			op->cnt.refused++;
		} else {
			log_refusal(s->g, "guest %s: proxy route but no proxy stack attached",
				    s->g->name);
		}
	}
	if (err) {
		if (err == ENETUNREACH || err == EHOSTUNREACH) {
			s->g->cnt.unreachable++;
			op->cnt.unreachable++;
		}
		return reply_error(s, m->h.seq, err);
	}
	prm.mode = m->l4 == CN_L4_TCP ? CN_MODE_STREAM : CN_MODE_DGRAM;
	prm.pending = st.proxied && m->l4 == CN_L4_TCP;
	/* each direction's ring is sized by the guest that reads it */
	prm.ring_size[0] = guest_conf(op, st.dst)->lim.ring_size;
	prm.ring_size[1] = guest_conf(op, s->g)->lim.ring_size;
	mem = cn_circuit_size(&prm);
	err = check_limits(op, s, &st, mem);
	if (err)
		return reply_error(s, m->h.seq, err);
	c = circuit_new(op, m->l4, &st, &prm, mem);
	if (!c)
		return reply_error(s, m->h.seq, ENOMEM);
	prm.stamp = c->id;
	err = bundle_make(op, s->g, st.dst, &prm, c, &fds);
	if (err == -EOPNOTSUPP || (err == -ENOBUFS && (s->g->vm || st.dst->vm))) {
		/* what a VM cannot have yet, or its devices are full: a refusal (docs/vms.md) */
		log_refusal(s->g, "guest %s: circuit to %s: %s", s->g->name, st.dst->name,
			    err == -ENOBUFS ? "the VM's pair devices are full" :
					      "not between these kinds of guest yet");
		op->cnt.refused++;
		circuit_free(op, c);
		return reply_error(s, m->h.seq, -err);
	}
	if (err) {
		log_err("guest %s: creating a circuit failed: %s", s->g->name, strerror(-err));
		op->cnt.errors++;
		circuit_free(op, c);
		return reply_error(s, m->h.seq, -err == EMFILE || -err == ENFILE ? ENOBUFS : -err);
	}
	c->end[CN_ROLE_INITIATOR].addr = st.flow.src;
	c->end[CN_ROLE_ACCEPTOR].addr = st.to;

	/* the acceptor first: if it cannot take it, the connector is refused */
	fill_circuit_msg(&r, CN_MSG_NEW_CONN, 0, c, CN_ROLE_ACCEPTOR, st.lst->id, st.dst);
	nfds = bundle_select(&fds, CN_ROLE_ACCEPTOR, ends);
	err = send_msg(st.lst->s, &r.h, ends, nfds);
	if (err) {
		bundle_close(&fds);
		circuit_free(op, c);
		s->g->cnt.refused++;
		op->cnt.refused++;
		if (st.lst->s->g == op->proxy)
			log_warn("guest %s: off-host connection refused: the proxy stack's queue is "
				 "full (%s)", s->g->name, strerror(-err));
		return reply_error(s, m->h.seq, ECONNREFUSED);
	}
	end_attach(c, CN_ROLE_ACCEPTOR, st.dst, st.lst->s);
	c->queued_in = st.lst;
	st.lst->queued++;
	st.dst->npending++;

	fill_circuit_msg(&r, CN_MSG_CONNECT_OK, m->h.seq, c, CN_ROLE_INITIATOR, 0, s->g);
	if (prm.pending)
		r.flags |= CN_CIRCUIT_PENDING;
	nfds = bundle_select(&fds, CN_ROLE_INITIATOR, ends);
	err = send_msg(s, &r.h, ends, nfds);
	/*
	 * Our copies go now. If the reply failed, the acceptor's notifiers see
	 * the initiator's ends close, which it reads as a vanished peer, and
	 * the initiator's lease hangs up here at once.
	 */
	bundle_close(&fds);
	if (err) {
		circuit_end_close(op, c, CN_ROLE_ACCEPTOR);
		return err;
	}
	end_attach(c, CN_ROLE_INITIATOR, s->g, s);
	s->g->cnt.connects++;
	op->cnt.connects++;
	return 0;
}

static int handle_accepted(struct op *op, struct session *s, const struct cn_msg_id *m)
{
	struct circuit *c = circuit_find(op, m->id);

	/* only the session it was pushed to can accept it: others learn nothing */
	if (!c || !c->queued_in || c->queued_in->s != s)
		return 0;
	c->queued_in->queued--;
	c->queued_in->accepted++;
	s->g->npending--;
	c->queued_in = NULL;
	return 0;
}

static int handle_closed(struct op *op, struct session *s, const struct cn_msg_id *m)
{
	struct circuit *c = circuit_find(op, m->id);
	int role;

	if (!c)
		return 0;
	/* a guest may report its own ends only, through any of its sessions */
	for (role = 0; role < 2; role++)
		if (c->end[role].g == s->g) {
			circuit_end_close(op, c, role);
			return 0;
		}
	return 0;
}

void core_end_gone(struct op *op, struct circuit *c, int role)
{
	if (!c->end[role].g)
		return;
	op->ends_gone++;
	log_debug("guest %s: circuit %llu (%s end): its last holder is gone without a CLOSED",
		  c->end[role].g->name, (unsigned long long)c->id,
		  role == CN_ROLE_INITIATOR ? "initiator" : "acceptor");
	circuit_end_close(op, c, role);
}

/* A claim refused: logged (rate-limited), counted, no answer (claims have none). */
static void claim_refused(struct op *op, struct session *s, const struct cn_msg_circuit *m,
			  const char *why)
{
	op->claims_refused++;
	log_refusal(s->g, "guest %s: claim of circuit %llu refused: %s", s->g->name,
		    (unsigned long long)m->circuit_id, why);
}

/*
 * CLAIM: one end of a circuit an earlier operator set up (proto.h). The
 * first end's claim makes the circuit; the other end's joins it when it
 * proves the same memory object and mirrors the addresses. A guest can
 * claim only ends with its own addresses, only ids from before this
 * operator, and never an end another guest holds; what it gains is being
 * counted against its own limits. memfd is ours to close.
 */
static void handle_claim(struct op *op, struct session *s, const struct cn_msg_circuit *m,
			 int memfd)
{
	struct guest_conf *gc = guest_conf(op, s->g);
	int role = m->role, other = !m->role;
	struct circuit *c, **slot;
	struct stat st;
	size_t mem;
	bool ok;

	ok = memfd >= 0 && !fstat(memfd, &st) && S_ISREG(st.st_mode) && st.st_size > 0 &&
	     (uint64_t)st.st_size <= (1ull << 32);
	/* a slot of a chunk: its size follows from its rings, and it lies inside */
	mem = ok ? (size_t)st.st_size : 0;
	if (ok && m->chunk_id) {
		struct cn_circuit_params prm = {
			.mode = m->l4 == CN_L4_TCP ? CN_MODE_STREAM : CN_MODE_DGRAM,
			.ring_size = { m->ring_size[0], m->ring_size[1] },
		};

		mem = cn_circuit_size(&prm);
		ok = mem && m->slot_off <= (uint64_t)st.st_size &&
		     mem <= (uint64_t)st.st_size - m->slot_off;
	}
	if (memfd >= 0)
		close(memfd);
	if (!ok)
		return claim_refused(op, s, m, "not a circuit's memory");
	/*
	 * One of ours whose end is this guest's already: a process that accepted
	 * it through a listener a sibling re-registered with us (its own copy
	 * of the listener still names the earlier operator) claims it with the
	 * rest. Nothing to do, nothing wrong.
	 */
	c = circuit_find(op, m->circuit_id);
	if (c && m->circuit_id >= op->first_id && c->end[role].g == s->g &&
	    addr_eq(&c->end[role].addr, &m->local))
		return;
	if (!m->circuit_id || m->circuit_id >= op->first_id)
		return claim_refused(op, s, m, "not an earlier operator's circuit");
	if (s->g != op->proxy && !is_loopback(&m->local) && !guest_owns(gc, &m->local))
		return claim_refused(op, s, m, "a local address the guest does not own");
	if (c) {
		if (c->rule != RULE_CLAIMED || c->claim_ino != (uint64_t)st.st_ino ||
		    c->claim_dev != (uint64_t)st.st_dev || c->l4 != m->l4 ||
		    c->slot_off != m->slot_off || c->chunk_id != m->chunk_id)
			return claim_refused(op, s, m, "another circuit has that id");
		if (c->end[role].g == s->g && addr_eq(&c->end[role].addr, &m->local))
			return; /* a process sharing the socket claimed it too */
		if (c->end[role].g || c->end[role].s)
			return claim_refused(op, s, m, "that end is claimed already");
		if (!addr_eq(&c->end[role].addr, &m->local) ||
		    !addr_eq(&c->end[other].addr, &m->remote))
			return claim_refused(op, s, m, "the ends' addresses disagree");
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			return claim_refused(op, s, m, "out of memory");
		c->id = m->circuit_id;
		c->l4 = m->l4;
		c->ring_size[0] = m->ring_size[0];
		c->ring_size[1] = m->ring_size[1];
		c->mem = mem;
		c->chunk_id = m->chunk_id;
		c->slot_off = m->slot_off;
		c->created = time(NULL);
		c->rule = RULE_CLAIMED;
		c->claim_dev = (uint64_t)st.st_dev;
		c->claim_ino = (uint64_t)st.st_ino;
		c->end[role].addr = m->local;
		c->end[other].addr = m->remote;
		slot = hash_slot(op, c->id);
		c->hnext = *slot;
		*slot = c;
		list_add_tail(&op->circuits, &c->link);
		op->ncircuits++;
	}
	end_attach(c, role, s->g, s);
	op->claims++;
	log_debug("guest %s: claimed circuit %llu (%s end)", s->g->name,
		  (unsigned long long)c->id, role == CN_ROLE_INITIATOR ? "initiator" : "acceptor");
}

static int handle_query(struct op *op, struct session *s, const struct cn_msg_hdr *m)
{
	struct guest_conf *gc = guest_conf(op, s->g);
	struct cn_msg_query_ok r;

	cn_msg_init(&r.h, CN_MSG_QUERY_OK, sizeof(r), m->seq);
	r.circuits = s->g->ncircuits;
	r.listeners = s->g->nlisteners;
	r.max_circuits = gc->lim.max_circuits;
	r.max_listeners = gc->lim.max_listeners;
	r.circuit_bytes = s->g->mem;
	r.max_circuit_bytes = gc->lim.max_memory;
	return send_msg(s, &r.h, NULL, 0);
}

static int handle_echo(struct session *s, const struct cn_msg_echo *m)
{
	struct cn_msg_echo r = *m;

	r.h.type = CN_MSG_ECHO_OK;
	return send_msg(s, &r.h, NULL, 0);
}

/* 0: keep the session; -1: drop it. chan: a LISTEN's channel fd (ours to close), or -1. */
static int dispatch(struct op *op, struct session *s, const union cn_msg *m, int chan);

/*
 * A VM's LISTEN: the listener gets a session of its own, a child of the
 * VM's session on the same control circuit, so a VM holds as many
 * listeners as its limits allow (its kernel's sockets all share the one
 * circuit) while everything keyed by session stays as for processes.
 */
static int vm_listen(struct op *op, struct session *s, const struct cn_msg_listen *m)
{
	struct cn_msg_listen_ok r;
	struct session *t;
	int err;

	if (!s->hello)
		return reply_error(s, m->h.seq, ENOTCONN);
	if (s->g->nsessions >= guest_conf(op, s->g)->lim.max_sessions)
		return reply_error(s, m->h.seq, ENOBUFS);
	t = core_vm_session(op, s->g, s->vm, s->pid);
	if (!t)
		return reply_error(s, m->h.seq, ENOMEM);
	t->vm_parent = s;
	t->hello = true;
	err = listen_setup(op, t, m, &r);
	if (err) {
		session_close(op, t, NULL);
		return reply_error(s, m->h.seq, err);
	}
	return send_msg(s, &r.h, NULL, 0);
}

/*
 * The VM's listener session that holds listener id (id != 0), or its UDP
 * binding on port; NULL if none.
 */
static struct session *vm_child(struct session *s, uint64_t id, uint16_t port)
{
	struct list *pos;

	list_for_each(pos, &s->g->sessions) {
		struct session *t = container_of(pos, struct session, link);

		if (t->vm_parent != s || !t->lst)
			continue;
		if (id ? t->lst->id == id : t->lst->l4 == CN_L4_UDP && t->lst->addr.port == port)
			return t;
	}
	return NULL;
}

int core_vm_dispatch(struct op *op, struct session *s, const union cn_msg *m)
{
	struct circuit *c;
	struct session *t;
	struct cn_msg_hdr ok;
	int role;

	/* a VM has no channel to give and no claims to make */
	if ((m->h.type == CN_MSG_LISTEN &&
	     (m->listen.flags & (CN_LISTEN_CHANNEL | CN_LISTEN_PROXY))) ||
	    m->h.type == CN_MSG_CLAIM)
		return reply_error(s, m->h.seq, EOPNOTSUPP) ? -1 : 0;
	switch (m->h.type) {
	case CN_MSG_LISTEN:
		return vm_listen(op, s, &m->listen) ? -1 : 0;
	case CN_MSG_CONNECT:
		/*
		 * A datagram circuit runs from a binding of the VM's (a UDP
		 * listener session): it is that session's, as a process's
		 * is its bound socket's channel's.
		 */
		if (m->connect.l4 == CN_L4_UDP && s->hello) {
			t = vm_child(s, 0, m->connect.src.port);
			if (!t)
				return reply_error(s, m->h.seq, EINVAL) ? -1 : 0;
			return dispatch(op, t, m, -1);
		}
		return dispatch(op, s, m, -1);
	case CN_MSG_UNLISTEN:
		t = s->hello && m->id.id ? vm_child(s, m->id.id, 0) : NULL;
		if (!t)
			return reply_error(s, m->h.seq, ENOENT) ? -1 : 0;
		session_close(op, t, NULL);
		cn_msg_init(&ok, CN_MSG_OK, sizeof(ok), m->h.seq);
		return send_msg(s, &ok, NULL, 0) ? -1 : 0;
	case CN_MSG_CLOSED:
		/* an end the VM never attached: its other end must not wait for it */
		c = s->hello ? circuit_find(op, m->id.id) : NULL;
		for (role = 0; c && role < 2; role++)
			if (c->end[role].g == s->g && c->end[!role].g)
				pool_slot_vm_closed(op, c, role);
		return dispatch(op, s, m, -1);
	case CN_MSG_ACCEPTED:
		/* NEW_CONN came from a listener session: the answer belongs there */
		c = circuit_find(op, m->id.id);
		if (c && c->queued_in && c->queued_in->s->vm_parent == s)
			return handle_accepted(op, c->queued_in->s, &m->id);
		return 0;
	default:
		return dispatch(op, s, m, -1);
	}
}

static int dispatch(struct op *op, struct session *s, const union cn_msg *m, int chan)
{
	if (m->h.type == CN_MSG_LISTEN && (m->listen.flags & CN_LISTEN_CHANNEL))
		return handle_listen_channel(op, s, &m->listen, chan) ? -1 : 0;
	if (!s->hello && m->h.type != CN_MSG_HELLO) {
		if (chan >= 0)
			close(chan);
		return reply_error(s, m->h.seq, ENOTCONN) ? -1 : 0;
	}
	switch (m->h.type) {
	case CN_MSG_HELLO:
		return handle_hello(op, s, &m->hello) ? -1 : 0;
	case CN_MSG_LISTEN:
		return handle_listen(op, s, &m->listen) ? -1 : 0;
	case CN_MSG_UNLISTEN:
		return handle_unlisten(op, s, &m->id) ? -1 : 0;
	case CN_MSG_CONNECT:
		return handle_connect(op, s, &m->connect) ? -1 : 0;
	case CN_MSG_ACCEPTED:
		return handle_accepted(op, s, &m->id);
	case CN_MSG_CLOSED:
		return handle_closed(op, s, &m->id);
	case CN_MSG_QUERY:
		return handle_query(op, s, &m->h) ? -1 : 0;
	case CN_MSG_CLAIM:
		handle_claim(op, s, &m->circuit, chan);
		return 0;
	case CN_MSG_ECHO:
		return handle_echo(s, &m->echo) ? -1 : 0;
	default:
		/* a reply type sent to us */
		reply_error(s, m->h.seq, EPROTO);
		return -1;
	}
}

/* Read and handle up to SESSION_BATCH messages. */
void core_session_event(struct op *op, struct session *s, uint32_t events)
{
	struct guest *g = s->g;
	union cn_msg m;
	int i;

	for (i = 0; i < SESSION_BATCH && g->round_msgs < ROUND_BUDGET; i++) {
		int fds[CN_LOCAL_NFDS + 1], nfds = 0, j, err, chan;
		const char *why;
		ssize_t n;

		/* anything longer than the largest message is truncated: -EMSGSIZE */
		n = cn_recv_fds(s->ev.fd, fds, CN_LOCAL_NFDS + 1, &nfds, &m, sizeof(m));
		if (n == -EAGAIN)
			return;
		/*
		 * Guests send no fds but a listener's channel (checked below);
		 * everything else is closed before the message is looked at.
		 */
		chan = -1;
		for (j = 0; j < nfds; j++) {
			if (j == 0 && nfds == 1 &&
			    ((n == (ssize_t)sizeof(m.listen) && m.h.type == CN_MSG_LISTEN) ||
			     (n == (ssize_t)sizeof(m.circuit) && m.h.type == CN_MSG_CLAIM)))
				chan = fds[j];
			else
				close(fds[j]);
		}
		if (n == 0) {
			if (chan >= 0)
				close(chan);
			session_close(op, s, s->lst ? "listener closed" : NULL);
			return;
		}
		g->round_msgs++;
		if (n == -EMSGSIZE) {
			err = -EBADMSG;
			why = "message too long, or too many fds";
		} else if (n < 0) {
			if (chan >= 0)
				close(chan);
			session_close(op, s, strerror((int)-n));
			return;
		} else {
			err = cn_msg_validate(&m, (size_t)n, nfds, &why);
		}
		if (!err && m.h.type >= CN_MSG_ERROR) {
			err = -EBADMSG;
			why = "operator-to-guest message type";
		}
		if (err) {
			if (chan >= 0)
				close(chan);
			log_warn("guest %s: session %llu (pid %d): protocol violation: %s", g->name,
				 (unsigned long long)s->id, (int)s->pid, why);
			g->cnt.protocol++;
			op->cnt.protocol++;
			if (n >= (ssize_t)sizeof(struct cn_msg_hdr))
				reply_error(s, m.h.seq, -err);
			session_close(op, s, NULL);
			return;
		}
		if (dispatch(op, s, &m, chan)) {
			session_close(op, s, "not reading its replies");
			return;
		}
	}
	(void)events;
}

void core_new_round(struct op *op)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &op->guests)
		container_of(pos, struct guest, link)->round_msgs = 0;
	if (op->proxy)
		op->proxy->round_msgs = 0;
}

/* ---- guests ---- */

static int make_dirs(const char *path)
{
	char buf[CFG_PATH_MAX + 64];
	char *p;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

static int guest_socket(struct op *op, struct guest *g, const struct guest_conf *gc)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[CFG_PATH_MAX + 48];
	int fd, err;

	if (g == op->proxy)
		snprintf(dir, sizeof(dir), "%s/proxy", op->run_dir);
	else
		snprintf(dir, sizeof(dir), "%s/guests/%s", op->run_dir, g->name);
	snprintf(g->path, sizeof(g->path), "%s/operator.sock", dir);
	if (strlen(g->path) >= sizeof(sa.sun_path)) {
		log_err("guest %s: socket path %s is too long", g->name, g->path);
		return -ENAMETOOLONG;
	}
	err = make_dirs(dir);
	if (err) {
		log_err("guest %s: cannot create %s: %s", g->name, dir, strerror(-err));
		return err;
	}
	memcpy(sa.sun_path, g->path, strlen(g->path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(g->path); /* a stale socket of an earlier run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
		err = -errno;
		log_err("guest %s: cannot bind %s: %s", g->name, g->path, strerror(errno));
		close(fd);
		return err;
	}
	if (gc->uid >= 0) {
		if (chown(g->path, (uid_t)gc->uid, (gid_t)-1) || chmod(g->path, 0600))
			log_warn("guest %s: cannot hand %s to uid %ld: %s", g->name, g->path,
				 gc->uid, strerror(errno));
	} else {
		chmod(g->path, 0666);
	}
	g->ev.kind = EV_GUEST_SOCK;
	g->ev.fd = fd;
	if (ep_add(op, &g->ev)) {
		err = -errno;
		close(fd);
		unlink(g->path);
		return err;
	}
	if (gc->vm && (err = vm_open(op, g, dir))) {
		epoll_ctl(op->epfd, EPOLL_CTL_DEL, fd, NULL);
		close(fd);
		unlink(g->path);
		return err;
	}
	return 0;
}

static void guest_remove(struct op *op, struct guest *g, bool shutdown)
{
	struct list *pos, *tmp;

	vm_close(op, g); /* a VM's session and devices first: they reset its host peers */

	list_for_each_safe(pos, tmp, &g->sessions)
		session_close(op, container_of(pos, struct session, link),
			      shutdown ? NULL : "guest removed");
	/* circuits with an end here whose session is gone already */
	list_for_each_safe(pos, tmp, &op->circuits) {
		struct circuit *c = container_of(pos, struct circuit, link);
		int role;

		for (role = 0; role < 2; role++)
			if (c->end[role].g == g) {
				circuit_end_close(op, c, role);
				break;
			}
	}
	epoll_ctl(op->epfd, EPOLL_CTL_DEL, g->ev.fd, NULL);
	close(g->ev.fd);
	unlink(g->path);
	list_del(&g->link);
	if (!shutdown)
		log_info("guest %s: removed", g->name);
	free(g);
}

/*
 * The proxy stack's attach point: a guest outside the config with no
 * addresses, root only, limits sized for a host's worth of connections.
 */
static int proxy_sync(struct op *op)
{
	struct guest_conf *pc = &op->proxy_conf;
	struct guest *g;
	int err;

	memset(pc, 0, sizeof(*pc));
	snprintf(pc->name, sizeof(pc->name), "proxy");
	pc->uid = 0;
	pc->lim = op->cfg->defaults;
	pc->lim.max_circuits = 1u << 20;
	pc->lim.max_listeners = 8;
	pc->lim.max_pending = 1u << 16;
	pc->lim.max_sessions = 64;
	pc->lim.max_memory = UINT64_MAX;
	if (op->proxy)
		return 0;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	memcpy(g->name, pc->name, CN_NAME_MAX);
	g->conf = -1;
	g->id = ++op->next_id;
	list_init(&g->sessions);
	list_init(&g->listeners);
	list_init(&g->link);
	op->proxy = g;
	err = guest_socket(op, g, pc);
	if (err) {
		op->proxy = NULL;
		free(g);
		return err;
	}
	log_info("proxy stack attach point: %s", g->path);
	return 0;
}

/* A reload made a guest a VM, or a VM a guest of processes. */
static int vm_sync(struct op *op, struct guest *g)
{
	char dir[CFG_PATH_MAX + 48];

	if (op->cfg->guests[g->conf].vm == (g->vm != NULL))
		return 0;
	if (g->vm) {
		vm_close(op, g);
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/guests/%s", op->run_dir, g->name);
	return vm_open(op, g, dir);
}

int core_sync_guests(struct op *op)
{
	struct guest **by_conf = calloc((size_t)op->cfg->nguests + 1, sizeof(*by_conf));
	struct list *pos, *tmp;
	int i, err = 0;

	if (!by_conf)
		return -ENOMEM;
	free(op->by_conf);
	op->by_conf = by_conf;
	list_for_each_safe(pos, tmp, &op->guests) {
		struct guest *g = container_of(pos, struct guest, link);

		g->conf = config_guest_index(op->cfg, g->name);
		if (g->conf >= 0)
			by_conf[g->conf] = g;
		if (g->conf >= 0)
			err = vm_sync(op, g);
		if (err)
			return err;
	}
	for (i = 0; i < op->cfg->nguests; i++) {
		struct guest *g;

		if (by_conf[i])
			continue;
		g = calloc(1, sizeof(*g));
		if (!g)
			return -ENOMEM;
		memcpy(g->name, op->cfg->guests[i].name, CN_NAME_MAX);
		g->conf = i;
		g->id = ++op->next_id;
		list_init(&g->sessions);
		list_init(&g->listeners);
		err = guest_socket(op, g, &op->cfg->guests[i]);
		if (err) {
			/* nothing removed yet: the caller can go back to the old config */
			free(g);
			return err;
		}
		list_add_tail(&op->guests, &g->link);
		by_conf[i] = g;
		log_info("guest %s: socket %s", g->name, g->path);
	}
	/* only now that the new guests stand: drop those the config no longer has */
	list_for_each_safe(pos, tmp, &op->guests) {
		struct guest *g = container_of(pos, struct guest, link);

		if (g->conf < 0)
			guest_remove(op, g, false);
	}
	return proxy_sync(op);
}

/* ---- policy changes ---- */

static void push_reset(struct circuit *c, int role)
{
	struct session *s = c->end[role].s;
	struct cn_msg_reset m;

	if (!s)
		return;
	cn_msg_init(&m.h, CN_MSG_RESET, sizeof(m), 0);
	m.circuit_id = c->id;
	m.err = ECONNRESET;
	send_msg(s, &m.h, NULL, 0);
}

unsigned int core_reset_denied(struct op *op)
{
	struct list *pos, *tmp;
	unsigned int n = 0;

	list_for_each_safe(pos, tmp, &op->circuits) {
		struct circuit *c = container_of(pos, struct circuit, link);
		struct guest *a = c->end[0].g, *b = c->end[1].g;
		struct flow f = { .l4 = c->l4 };
		int rule;

		if (!a || !b || a == b)
			continue; /* half gone already, or a guest's own loopback */
		if (a == op->proxy)
			continue; /* came in at a published port: publishes are not revoked */
		f.src_guest = a->conf;
		f.src = c->end[0].addr;
		f.dst_guest = b->conf;
		f.dst = c->end[1].addr;
		/* off-host through the proxy stack: still allowed if still routed so */
		if (policy_decide(op->cfg, &f, &rule) == (b == op->proxy ? VERDICT_PROXY : VERDICT_ALLOW))
			continue;
		log_notice("reset circuit %llu %s -> %s: no longer allowed",
			   (unsigned long long)c->id, a->name, b->name);
		push_reset(c, 0);
		push_reset(c, 1);
		circuit_end_close(op, c, 0);
		circuit_end_close(op, c, 1);
		n++;
	}
	op->resets += n;
	return n;
}

int core_init(struct op *op)
{
	struct timespec now;

	/*
	 * Ids (guests, sessions, listeners, circuits) start at the wall clock
	 * in microseconds, so an operator restarted never hands out an id an
	 * earlier one did: guests and circuits that outlived it keep theirs,
	 * and a guest tells a new operator from the one it registered with by
	 * the guest id in HELLO_OK. A setup rate below a million a second
	 * keeps it so.
	 */
	clock_gettime(CLOCK_REALTIME, &now);
	op->next_id = (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000;
	op->first_id = op->next_id + 1;
	list_init(&op->guests);
	list_init(&op->circuits);
	list_init(&op->parked);
	list_init(&op->pools);
	list_init(&op->unswept);
	op->grace_end = mono_ms() + op->grace_ms;
	op->hash_size = 1u << 14;
	op->hash = calloc(op->hash_size, sizeof(*op->hash));
	return op->hash ? 0 : -ENOMEM;
}

void core_fini(struct op *op)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &op->guests)
		guest_remove(op, container_of(pos, struct guest, link), true);
	if (op->proxy) {
		guest_remove(op, op->proxy, true);
		op->proxy = NULL;
	}
	while (!list_empty(&op->circuits))
		circuit_free(op, container_of(op->circuits.next, struct circuit, link));
	pool_fini(op);
	free(op->hash);
	op->hash = NULL;
	free(op->by_conf);
	op->by_conf = NULL;
}
