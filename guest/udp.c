// SPDX-License-Identifier: MIT
/*
 * guest/udp.c - datagram sockets over circuits: one circuit per peer.
 *
 * A bound socket is a UDP listener at the operator: its session receives a
 * datagram circuit for every peer that starts talking to it. Sending to a
 * new peer asks the operator for a circuit from our bound address (binding
 * port 0 first, as the kernel autobinds), through that same session; the
 * policy is checked then, once per peer. Replies travel back over the same
 * circuit. A receive takes the next datagram of any peer, round-robin, and
 * reports the peer's address; a connect()ed socket hears its peer only.
 *
 * The application's fd is an epoll instance holding the session and every
 * peer's data doorbell (armed while the peer's ring is empty), so it turns
 * readable when a datagram or a new peer may be there, for code that polls
 * it natively as well as through our poll and epoll.
 *
 * As with the kernel, a datagram to a port nobody bound is lost on an
 * unconnected socket and refused (ECONNREFUSED) on a connected one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "procop.h"
#include "sock.h"

#define UDP_PEERS_BACKLOG 256

int udp_init(struct csock *cs, int appfd)
{
	cs->dgram = true;
	cs->evfd = cn_fd_lift(fcntl(appfd, F_DUPFD_CLOEXEC, 0));
	if (cs->evfd < 0)
		return -errno;
	preload_hide(cs->evfd, true);
	return 0;
}

static void watch(struct csock *cs, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };

	ev.data.fd = fd;
	epoll_ctl(cs->evfd, EPOLL_CTL_ADD, fd, &ev);
}

static bool same_addr(const struct cn_addr *a, const struct cn_addr *b)
{
	return a->family == b->family && a->port == b->port && !memcmp(a->addr, b->addr, 16);
}

/*
 * With cs->lock: a binding at the operator for a (port 0: any), through a
 * durable channel (procop.h), so it outlives an operator restart. The
 * operator down: a port of its own is bound here and registered when the
 * operator is back; port 0 needs the operator to pick one: -EHOSTDOWN
 * after waiting up to wait_ns.
 */
static int bind_locked(struct csock *cs, const struct cn_addr *a, int64_t wait_ns)
{
	int err;

	if (cs->state != CS_NEW)
		return -EINVAL;
	if (!csock_operator_path())
		return -ENETUNREACH;
	err = csock_check_local(a);
	if (err)
		return err;
	cs->local = *a;
	cs->backlog = UDP_PEERS_BACKLOG;
	cs->listen_flags = (cs->opt_v6only ? CN_LISTEN_V6ONLY : 0) |
			   (cs->opt_reuseaddr || cs->opt_reuseport ? CN_LISTEN_REUSE : 0);
	err = csock_register(cs, a->port ? 0 : wait_ns);
	if (err == -EHOSTDOWN && a->port && !(err = cn_op_channel_init(&cs->op)))
		cs->op.on_reset = procop_on_reset;
	if (err) {
		memset(&cs->local, 0, sizeof(cs->local));
		return err;
	}
	/* a request on the channel (a new peer) waits this long for its answer */
	cs->op.timeout_ms = 2000;
	cs->state = CS_BOUND;
	preload_hide(cs->op.fd, true);
	preload_hide(cs->op.chan_peer, true);
	watch(cs, cs->op.fd);
	procop_durable_add(cs, true);
	return 0;
}

int udp_bind(struct csock *cs, const struct cn_addr *a)
{
	int err;

	pthread_mutex_lock(&cs->lock);
	err = bind_locked(cs, a, procop_wait_ns());
	pthread_mutex_unlock(&cs->lock);
	return err == -EHOSTDOWN ? -EADDRINUSE : err; /* no port to be had */
}

/* The kernel binds an unbound socket to the wildcard on first use. */
static int autobind_locked(struct csock *cs)
{
	struct cn_addr any = { .family = cs->family == AF_INET6 ? CN_AF_INET6 : CN_AF_INET };

	return cs->state == CS_NEW ? bind_locked(cs, &any, 0) : 0;
}

/*
 * A new peer slot. Peers are allocated one by one and never move: an
 * endpoint points at its own notifiers, so a circuit is opened in place.
 */
static struct udp_peer *peer_add(struct csock *cs)
{
	struct udp_peer *p;

	if (cs->npeers == cs->peers_cap) {
		int cap = cs->peers_cap ? cs->peers_cap * 2 : 8;
		struct udp_peer **np = realloc(cs->peers, (size_t)cap * sizeof(*np));

		if (!np)
			return NULL;
		cs->peers = np;
		cs->peers_cap = cap;
	}
	p = calloc(1, sizeof(*p));
	if (p)
		cs->peers[cs->npeers++] = p;
	return p;
}

static void peer_hide(struct udp_peer *p, bool on)
{
	int i;

	for (i = 0; i < 4; i++)
		if (p->ep.notif[i].ops)
			preload_hide(p->ep.notif[i].fd, on);
	if (p->ep.leased)
		preload_hide(p->ep.lease_fd, on);
}

static void peer_drop(struct csock *cs, int i)
{
	struct udp_peer *p = cs->peers[i];

	if (!p->refused && p->ep.region.base) {
		epoll_ctl(cs->evfd, EPOLL_CTL_DEL, p->ep.notif[0].fd, NULL);
		peer_hide(p, false);
		cn_local_close(&p->ep);
	}
	free(p);
	cs->peers[i] = cs->peers[--cs->npeers];
}

static void peer_ready(struct csock *cs, struct udp_peer *p)
{
	peer_hide(p, true);
	watch(cs, p->ep.notif[0].fd);
	cn_poll_arm(&p->ep.ep, CN_POLLIN);
}

/* Circuits that new peers opened to us. */
static void take_new_peers(struct csock *cs)
{
	for (;;) {
		struct cn_op_conn conn;
		struct udp_peer *p = peer_add(cs);

		if (!p)
			return;
		if (cn_op_accept(&cs->op, &p->ep, &conn, 1)) {
			peer_drop(cs, cs->npeers - 1);
			return;
		}
		p->addr = conn.remote;
		p->circuit_id = conn.circuit_id;
		peer_ready(cs, p);
	}
}

/* With cs->lock: the circuit to dst, set up on first use. */
static int peer_get(struct csock *cs, const struct cn_addr *dst, struct udp_peer **out)
{
	struct cn_op_conn conn;
	struct udp_peer *p;
	int i, err;

	for (i = 0; i < cs->npeers; i++)
		if (same_addr(&cs->peers[i]->addr, dst)) {
			*out = cs->peers[i];
			return 0;
		}
	err = autobind_locked(cs);
	if (err)
		return err;
	/*
	 * The operator down, or not yet told of this binding (it restarted):
	 * no circuit to be had now. The caller drops the datagram, as a
	 * network with no route yet would.
	 */
	if (!procop_up())
		return -EHOSTDOWN;
	err = csock_reregister(cs);
	if (err)
		return err == -EHOSTDOWN ? err : -EADDRNOTAVAIL;
	if (cs->lost)
		return -EADDRNOTAVAIL; /* the operator refused the binding */
	p = peer_add(cs);
	if (!p)
		return -ENOMEM;
	p->addr = *dst;
	err = cn_op_connect(&cs->op, CN_L4_UDP, &cs->local, dst, &p->ep, &conn);
	if (err == -ETIMEDOUT || err == -ECONNABORTED)
		err = -EHOSTDOWN; /* the operator went away while we asked */
	if (err == -ECONNREFUSED) {
		p->refused = true; /* nobody bound there: remembered, like an ICMP error */
	} else if (err) {
		peer_drop(cs, cs->npeers - 1);
		return err;
	} else {
		p->circuit_id = conn.circuit_id;
		peer_ready(cs, p);
	}
	*out = p;
	return 0;
}

int udp_connect(struct csock *cs, const struct sockaddr *sa, socklen_t len)
{
	struct udp_peer *p;
	struct cn_addr dst;
	int err;

	if (sa && len >= sizeof(sa_family_t) && sa->sa_family == AF_UNSPEC) {
		cs->has_default = false; /* dissolve the association */
		return 0;
	}
	err = csock_addr_in(cs, sa, len, &dst);
	if (err)
		return err;
	pthread_mutex_lock(&cs->lock);
	err = peer_get(cs, &dst, &p);
	if (!err || err == -EHOSTDOWN) {
		/* the operator down: the circuit comes with the first send */
		cs->has_default = true;
		cs->default_peer = dst;
		err = 0;
	}
	pthread_mutex_unlock(&cs->lock);
	return err;
}

ssize_t udp_sendv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags,
		  const struct cn_addr *dst)
{
	unsigned int f = (flags & MSG_DONTWAIT) || cs->nonblock ? CN_MSG_DONTWAIT : 0;
	struct cn_addr to;
	struct udp_peer *p;
	size_t total = 0;
	ssize_t n;
	int i, err, tries;

	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (!dst && !cs->has_default)
		return -EDESTADDRREQ;
	to = dst ? *dst : cs->default_peer;
	if (!to.port)
		return -EINVAL;
	for (tries = 0; tries < 2; tries++) {
		pthread_mutex_lock(&cs->lock);
		err = peer_get(cs, &to, &p);
		if (err) {
			pthread_mutex_unlock(&cs->lock);
			/* no operator to set a circuit up: lost, as on a network */
			return err == -EHOSTDOWN ? (ssize_t)total : err;
		}
		if (p->refused) {
			bool connected = cs->has_default && same_addr(&to, &cs->default_peer);
			bool first = !p->sent;

			p->sent = true;
			pthread_mutex_unlock(&cs->lock);
			/*
			 * Gone into the void, as on a network; a connected socket
			 * learns of it afterwards (the ICMP error), like Linux.
			 */
			return connected && !first ? -ECONNREFUSED : (ssize_t)total;
		}
		pthread_mutex_lock(&cs->tx_lock);
		pthread_mutex_unlock(&cs->lock);
		n = cn_sendv(&p->ep.ep, iov, iovcnt, f);
		pthread_mutex_unlock(&cs->tx_lock);
		if (n != -EPIPE && n != -ECONNRESET && n != -EPROTO)
			return n;
		/* the peer closed its socket: forget the circuit, ask again */
		pthread_mutex_lock(&cs->lock);
		for (i = 0; i < cs->npeers; i++)
			if (cs->peers[i] == p)
				peer_drop(cs, i);
		pthread_mutex_unlock(&cs->lock);
	}
	return -ECONNREFUSED;
}

/* With cs->lock: the next datagram of any peer, or -EAGAIN. */
static ssize_t try_recv(struct csock *cs, const struct iovec *iov, int iovcnt, unsigned int f,
			struct cn_addr *from, int *msg_flags)
{
	int k;

	take_new_peers(cs);
	if (cs->has_default) {
		for (k = 0; k < cs->npeers; k++)
			if (cs->peers[k]->refused && same_addr(&cs->peers[k]->addr, &cs->default_peer))
				return -ECONNREFUSED; /* what an ICMP port unreachable leaves */
	}
	for (k = 0; k < cs->npeers; k++) {
		int i = (cs->rr + k) % cs->npeers;
		struct udp_peer *p = cs->peers[i];
		unsigned int of = 0;
		ssize_t n;

		if (p->refused)
			continue;
		if (cs->has_default && !same_addr(&p->addr, &cs->default_peer))
			continue; /* a connected socket hears its peer only */
		n = cn_recvv(&p->ep.ep, iov, iovcnt, f | CN_MSG_DONTWAIT, &of);
		if (n == -EAGAIN)
			continue;
		if (n == -ECONNRESET && cn_ep_connect_status(&p->ep.ep) == -ECONNREFUSED) {
			/* the proxy stack relayed an ICMP port unreachable */
			p->refused = true;
			if (cs->has_default && same_addr(&p->addr, &cs->default_peer))
				return -ECONNREFUSED;
			continue;
		}
		if ((n == 0 && (of & CN_MSGF_EOF)) || n == -ECONNRESET || n == -EPROTO) {
			peer_drop(cs, i); /* that peer closed its socket */
			k--;
			continue;
		}
		if (n < 0)
			return n;
		*from = p->addr;
		if (of & CN_MSGF_TRUNC)
			*msg_flags |= MSG_TRUNC;
		cs->rr = i + 1;
		return n;
	}
	return -EAGAIN;
}

/* With cs->lock: drain and arm every doorbell, then look once more. */
static bool arm_all(struct csock *cs)
{
	int i;

	for (i = 0; i < cs->npeers; i++) {
		struct udp_peer *p = cs->peers[i];
		struct pollfd pf;

		if (p->refused)
			continue;
		cn_notifier_drain(&p->ep.notif[0]);
		if (cn_poll_arm(&p->ep.ep, CN_POLLIN) & CN_POLLIN)
			return true;
		/* a peer gone without a word (killed, exited) only hangs its doorbell up */
		pf.fd = p->ep.notif[0].fd;
		pf.events = POLLIN;
		if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLHUP | POLLERR))) {
			cn_ep_peer_vanished(&p->ep.ep);
			return true; /* the next receive reads its end and drops it */
		}
	}
	return cs->op.npending > 0;
}

ssize_t udp_recvv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags,
		  struct sockaddr *src, socklen_t *srclen, int *msg_flags)
{
	unsigned int f = 0;
	struct cn_addr from;
	int mf = 0, timeout = cs->rcvtimeo_ms;
	ssize_t n;

	if (flags & MSG_PEEK)
		f |= CN_MSG_PEEK;
	if (flags & MSG_TRUNC)
		f |= CN_MSG_TRUNC;
	pthread_mutex_lock(&cs->rx_lock);
	for (;;) {
		struct pollfd pfd = { .fd = cs->evfd, .events = POLLIN };
		bool ready;

		pthread_mutex_lock(&cs->lock);
		if (cs->state == CS_NEW) {
			pthread_mutex_unlock(&cs->lock);
			n = (flags & MSG_DONTWAIT) || cs->nonblock ? -EAGAIN : -ENOTCONN;
			break; /* nothing bound: nothing will ever come */
		}
		n = try_recv(cs, iov, iovcnt, f, &from, &mf);
		ready = n == -EAGAIN && arm_all(cs);
		pthread_mutex_unlock(&cs->lock);
		if (n != -EAGAIN)
			break;
		if (ready)
			continue; /* something came while arming: look again */
		if ((flags & MSG_DONTWAIT) || cs->nonblock)
			break;
		n = wait_for_operator_or(pfd.fd, pfd.events, timeout);
		if (n == -ETIMEDOUT) {
			n = -EAGAIN; /* SO_RCVTIMEO */
			break;
		}
		if (n)
			break;
	}
	pthread_mutex_unlock(&cs->rx_lock);
	if (n >= 0) {
		if (src && srclen)
			csock_addr_out(cs, &from, src, srclen);
		if (msg_flags)
			*msg_flags = mf;
	}
	return n;
}

unsigned int udp_poll(struct csock *cs, unsigned int events, bool arm, int fds[2],
		      short fd_events[2], int *nfds)
{
	unsigned int ready = POLLOUT;
	int i;

	*nfds = 0;
	pthread_mutex_lock(&cs->lock);
	if (cs->state != CS_NEW) {
		struct pollfd p = { .fd = cs->op.fd, .events = POLLIN };

		if (cs->op.npending || (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)))
			ready |= POLLIN;
		for (i = 0; i < cs->npeers && !(ready & POLLIN); i++) {
			struct udp_peer *pe = cs->peers[i];

			if (pe->refused ||
			    (cs->has_default && !same_addr(&pe->addr, &cs->default_peer)))
				continue;
			if (cn_poll(&pe->ep.ep) & (CN_POLLIN | CN_POLLHUP))
				ready |= POLLIN;
		}
		if (!(ready & POLLIN) && (events & POLLIN) && arm) {
			if (arm_all(cs))
				ready |= POLLIN;
			fds[0] = cs->evfd;
			fd_events[0] = POLLIN;
			*nfds = 1;
		}
	}
	pthread_mutex_unlock(&cs->lock);
	if (ready & POLLIN)
		ready |= events & POLLRDNORM;
	ready |= events & POLLWRNORM;
	return ready & (events | POLLERR | POLLHUP);
}

/* procop.c: the operator revoked a circuit; if it is one of our peers', reset it. */
void udp_reset_peer(struct csock *cs, uint64_t circuit_id)
{
	int i;

	/* a thread busy on the socket holds its lock: that peer goes at its next revocation */
	if (pthread_mutex_trylock(&cs->lock))
		return;
	for (i = 0; i < cs->npeers; i++)
		if (!cs->peers[i]->refused && cs->peers[i]->circuit_id == circuit_id)
			cn_revoke(&cs->peers[i]->ep.ep);
	pthread_mutex_unlock(&cs->lock);
}

int udp_readable(struct csock *cs)
{
	int i, n = 0;

	pthread_mutex_lock(&cs->lock);
	for (i = 0; i < cs->npeers; i++)
		if (!cs->peers[i]->refused && cn_poll(&cs->peers[i]->ep.ep) & CN_POLLIN) {
			n = (int)cn_readable(&cs->peers[i]->ep.ep);
			break;
		}
	pthread_mutex_unlock(&cs->lock);
	return n;
}

void udp_release(struct csock *cs)
{
	while (cs->npeers > 0)
		peer_drop(cs, cs->npeers - 1);
	free(cs->peers);
	if (cs->state != CS_NEW) {
		procop_durable_del(cs);
		preload_hide(cs->op.fd, false);
		if (cs->op.durable)
			preload_hide(cs->op.chan_peer, false);
		cn_op_close(&cs->op);
	}
	if (cs->evfd >= 0) {
		preload_hide(cs->evfd, false);
		close(cs->evfd);
	}
}
