// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * udp.c - AF_INET datagram sockets that are circuits: one datagram circuit
 * per peer, as the socket preload does for processes (guest/udp.c).
 *
 * bind() makes a UDP binding at the operator (LISTEN, l4 UDP); an unbound
 * socket is bound to a port the operator picks on first use. A sendto() to
 * a new peer asks for a circuit from the bound port (CONNECT, l4 UDP); the
 * peer's replies come back over it. A peer that starts talking to us
 * arrives as NEW_CONN on the binding, with its circuit. recvfrom() takes
 * the next datagram of any peer, in turn, and reports the peer's address.
 * Datagrams keep their boundaries in the ring (shared/dgram.c), so
 * MSG_TRUNC and MSG_PEEK behave as UDP's.
 *
 * Where the network would lose a datagram, so do we: an unconnected
 * sendto() that the operator refuses (nobody bound there, the policy says
 * no) succeeds and the datagram is gone. A connect()ed socket learns of it
 * as from an ICMP port unreachable: the next call gets ECONNREFUSED.
 *
 * Peers are added under cs->lock and freed only at release, which no other
 * call of the socket can overlap, so a peer found under the lock stays
 * valid for the call.
 */
#include <linux/module.h>
#include <linux/net.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/sockios.h>
#include <asm/ioctls.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "sock.h"

#define UDP_PEERS_BACKLOG 64 /* peer circuits the operator may queue for a binding */

struct cn_upeer {
	struct list_head node; /* in cs->peers */
	struct cn_kcirc *kc;
	u64 id;
	struct cn_addr remote;
};

/* datagram sockets, for pushes by circuit id (guarded by cn_lock) */
static LIST_HEAD(cn_udp_socks);


static struct cn_upeer *peer_find(struct cn_sock *cs, const struct cn_addr *a)
{
	struct cn_upeer *p, *found = NULL;

	spin_lock(&cs->lock);
	list_for_each_entry(p, &cs->peers, node) {
		if (cn_addr_same(&p->remote, a)) {
			found = p;
			break;
		}
	}
	spin_unlock(&cs->lock);
	return found;
}

static void peer_add(struct cn_sock *cs, struct cn_kcirc *kc, const struct cn_msg_circuit *m,
		     const struct cn_addr *remote)
{
	struct cn_upeer *p = kzalloc(sizeof(*p), GFP_KERNEL);

	if (!p) {
		cn_reset(cn_kcirc_ep(kc));
		cn_kcirc_close(kc);
		cn_ctl_notify_later(CN_MSG_CLOSED, m->circuit_id);
		return;
	}
	p->kc = kc;
	p->id = m->circuit_id;
	p->remote = *remote;
	spin_lock(&cs->lock);
	list_add_tail(&p->node, &cs->peers);
	/* its device is going and may have looked at this list already */
	if (cnv_dying(cn_kcirc_dev(kc)))
		cn_revoke(cn_kcirc_ep(kc));
	spin_unlock(&cs->lock);
	cn_sock_wake(&cs->sk);
}

/* The binding: LISTEN udp at a (port 0: the operator picks). Under tx_lock. */
static int udp_bind_locked(struct cn_sock *cs, const struct cn_addr *a)
{
	struct cn_msg_listen m;
	union cn_msg *r;
	int err;

	if (cs->listener_id)
		return -EINVAL;
	r = kmalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	cn_msg_init(&m.h, CN_MSG_LISTEN, sizeof(m), 0);
	m.l4 = CN_L4_UDP;
	m.flags = (cs->sk.sk_reuse || cs->sk.sk_reuseport) ? CN_LISTEN_REUSE : 0;
	memset(m.pad, 0, sizeof(m.pad));
	m.backlog = UDP_PEERS_BACKLOG;
	m.addr = *a; /* 0.0.0.0 takes IPv4, :: both (operator/core.c) */
	if (cs->v6only)
		m.flags |= CN_LISTEN_V6ONLY;
	err = cn_ctl_call(&m.h, r, CN_MSG_LISTEN_OK);
	if (!err) {
		cs->local = *a;
		cs->local.port = r->listen_ok.bound.port;
		spin_lock(&cn_lock);
		cs->listener_id = r->listen_ok.listener_id;
		list_add_tail(&cs->lnode, &cn_listeners);
		spin_unlock(&cn_lock);
	}
	kfree(r);
	return err;
}

static int udp_autobind_locked(struct cn_sock *cs)
{
	struct cn_addr any = {
		.family = cs->sk.sk_family == AF_INET6 ? CN_AF_INET6 : CN_AF_INET,
	};

	return cs->listener_id ? 0 : udp_bind_locked(cs, &any);
}

static int udp_bind(struct socket *sock, struct sockaddr *uaddr, int len)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct cn_addr a;
	int err = cn_bind_addr(sock->sk, uaddr, len, &a);

	if (err)
		return err;
	mutex_lock(&cs->tx_lock);
	err = udp_bind_locked(cs, &a);
	mutex_unlock(&cs->tx_lock);
	return err;
}

/* A circuit to dst from our binding. Under tx_lock. */
static struct cn_upeer *peer_open(struct cn_sock *cs, const struct cn_addr *dst, int *err)
{
	struct cn_msg_connect m;
	struct cn_kcirc *kc;
	union cn_msg *r;

	*err = udp_autobind_locked(cs);
	if (*err)
		return NULL;
	r = kmalloc(sizeof(*r), GFP_KERNEL);
	if (!r) {
		*err = -ENOMEM;
		return NULL;
	}
	cn_msg_init(&m.h, CN_MSG_CONNECT, sizeof(m), 0);
	m.l4 = CN_L4_UDP;
	memset(m.pad, 0, sizeof(m.pad));
	m.flags = 0;
	memset(&m.src, 0, sizeof(m.src));
	m.src.port = cs->local.port;
	if (memchr_inv(cs->local.addr, 0, sizeof(cs->local.addr)))
		m.src = cs->local;
	m.dst = *dst;
	*err = cn_ctl_call(&m.h, r, CN_MSG_CONNECT_OK);
	if (*err) {
		kfree(r);
		return NULL;
	}
	kc = cn_kcirc_open(&r->circuit, CN_L4_UDP, cn_sock_wake, &cs->sk, err);
	if (!kc) {
		struct cn_msg_id closed;

		cn_msg_init(&closed.h, CN_MSG_CLOSED, sizeof(closed), 0);
		closed.id = r->circuit.circuit_id;
		cn_ctl_notify(&closed.h);
		kfree(r);
		return NULL;
	}
	peer_add(cs, kc, &r->circuit, dst);
	kfree(r);
	return peer_find(cs, dst);
}

void cn_udp_new_peer(struct cn_sock *ls, const struct cn_msg_circuit *m)
{
	struct cn_kcirc *kc;
	int err;

	kc = cn_kcirc_open(m, CN_L4_UDP, cn_sock_wake, &ls->sk, &err);
	if (!kc) {
		pr_warn("circnet: udp peer circuit %llu refused: unusable (%d)\n",
			(unsigned long long)m->circuit_id, err);
		cn_ctl_notify_later(CN_MSG_CLOSED, m->circuit_id);
		return;
	}
	cn_ctl_notify_later(CN_MSG_ACCEPTED, m->circuit_id); /* frees the binding's backlog */
	peer_add(ls, kc, m, &m->remote);
}

/*
 * Revoke the peer circuits that match (by id, or by device): they read as
 * reset, and their sockets live on.
 */
static void udp_revoke(u64 circuit_id, struct cnv_dev *d)
{
	struct cn_upeer *p;
	struct cn_sock *cs;

	spin_lock(&cn_lock);
	list_for_each_entry(cs, &cn_udp_socks, cnode) {
		spin_lock(&cs->lock);
		list_for_each_entry(p, &cs->peers, node)
			if (d ? cn_kcirc_dev(p->kc) == d : p->id == circuit_id)
				cn_revoke(cn_kcirc_ep(p->kc));
		spin_unlock(&cs->lock);
	}
	spin_unlock(&cn_lock);
}

void cn_udp_reset(u64 circuit_id)
{
	udp_revoke(circuit_id, NULL);
}

void cn_udp_device_gone(struct cnv_dev *d)
{
	udp_revoke(0, d);
}

/* ---- send ---- */

static bool peer_writable(struct cn_sock *cs, void *peer)
{
	struct cn_upeer *p = peer;

	return cn_poll_arm(cn_kcirc_ep(p->kc), CN_POLLOUT) & (CN_POLLOUT | CN_POLLERR | CN_POLLHUP);
}

/* Errors of a circuit's setup that a network would turn into a lost datagram. */
static bool lost_on_the_way(int err)
{
	return err == -ECONNREFUSED || err == -EHOSTUNREACH || err == -ENETUNREACH ||
	       err == -EACCES;
}

static int udp_dest(struct cn_sock *cs, struct msghdr *msg, struct cn_addr *dst)
{
	if (msg->msg_name) {
		struct sockaddr *sa = msg->msg_name;
		int err;

		if (msg->msg_namelen >= (int)sizeof(sa->sa_family) && sa->sa_family == AF_UNSPEC &&
		    cs->dflt.family)
			return -EISCONN;
		err = cn_addr_from_user(cs->sk.sk_family, sa, msg->msg_namelen, dst);
		if (err)
			return err;
		if (!dst->port)
			return -EINVAL;
		if (cs->v6only && dst->family != CN_AF_INET6)
			return -ENETUNREACH;
		return 0;
	}
	if (cs->dflt.family == CN_AF_NONE)
		return -EDESTADDRREQ;
	*dst = cs->dflt;
	return 0;
}

static int udp_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct sock *sk = sock->sk;
	long timeo = sock_sndtimeo(sk, msg->msg_flags & MSG_DONTWAIT);
	struct cn_upeer *p;
	struct cn_addr dst;
	struct cn_span sp[2];
	ssize_t r;
	int err;

	if (msg->msg_flags & MSG_OOB)
		return -EOPNOTSUPP;
	if (len > CN_DGRAM_MAX)
		return -EMSGSIZE;
	err = udp_dest(cs, msg, &dst);
	if (err)
		return err;
	if (mutex_lock_interruptible(&cs->tx_lock))
		return -ERESTARTSYS;
	err = sock_error(sk);
	if (err)
		goto out;
	p = peer_find(cs, &dst);
	if (!p) {
		p = peer_open(cs, &dst, &err);
		if (!p) {
			if (lost_on_the_way(err)) {
				/* connected: the refusal comes back, as ICMP's would */
				if (cs->dflt.family && cn_addr_same(&cs->dflt, &dst)) {
					sk->sk_err = -err;
					sk_error_report(sk);
				}
				err = len;
			}
			goto out;
		}
	}
	for (;;) {
		r = cn_reserve(cn_kcirc_ep(p->kc), len, sp, CN_MSG_DONTWAIT);
		if (r != -EAGAIN)
			break;
		err = cn_wait(cs, peer_writable, p, &timeo);
		if (err)
			goto out;
	}
	if (r < 0) {
		err = r == -EMSGSIZE ? -EMSGSIZE : cn_errno(r);
		goto out;
	}
	if (copy_from_iter(sp[0].ptr, len, &msg->msg_iter) != len) {
		err = -EFAULT;
		goto out;
	}
	err = cn_commit(cn_kcirc_ep(p->kc), len);
	err = err ? cn_errno(err) : (int)len;
out:
	mutex_unlock(&cs->tx_lock);
	return err;
}

/* ---- receive ---- */

/*
 * The next peer with a datagram (connect()ed: only that peer), moved to the
 * back so that peers take turns; its datagram in sp, its length in *len.
 */
static struct cn_upeer *next_datagram(struct cn_sock *cs, struct cn_span sp[2], ssize_t *len)
{
	struct cn_upeer *p, *found = NULL;

	spin_lock(&cs->lock);
	list_for_each_entry(p, &cs->peers, node) {
		struct cn_endpoint *ep = cn_kcirc_ep(p->kc);
		ssize_t r;

		if (cs->dflt.family && !cn_addr_same(&cs->dflt, &p->remote))
			continue;
		r = cn_peek(ep, sp, CN_MSG_DONTWAIT);
		if (r > 0 || (r == 0 && sp[0].ptr)) {
			*len = r;
			found = p;
			break;
		}
	}
	if (found)
		list_move_tail(&found->node, &cs->peers);
	spin_unlock(&cs->lock);
	return found;
}

static bool udp_readable(struct cn_sock *cs, void *unused)
{
	struct cn_upeer *p;
	bool ready = READ_ONCE(cs->sk.sk_err) || (cs->sk.sk_shutdown & RCV_SHUTDOWN);

	spin_lock(&cs->lock);
	list_for_each_entry(p, &cs->peers, node) {
		if (ready)
			break;
		if (cs->dflt.family && !cn_addr_same(&cs->dflt, &p->remote))
			continue;
		ready = cn_poll_arm(cn_kcirc_ep(p->kc), CN_POLLIN) & CN_POLLIN;
	}
	spin_unlock(&cs->lock);
	return ready;
}

static int udp_recvmsg(struct socket *sock, struct msghdr *msg, size_t len, int flags)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct sock *sk = sock->sk;
	long timeo = sock_rcvtimeo(sk, flags & MSG_DONTWAIT);
	struct sockaddr *name = msg->msg_name;
	struct cn_span sp[2];
	struct cn_upeer *p;
	ssize_t dlen = 0;
	size_t n;
	int err;

	if (flags & MSG_ERRQUEUE)
		return -EAGAIN;
	if (flags & MSG_OOB)
		return -EOPNOTSUPP;
	if (mutex_lock_interruptible(&cs->rx_lock))
		return -ERESTARTSYS;
	for (;;) {
		err = sock_error(sk);
		if (err)
			goto out;
		p = next_datagram(cs, sp, &dlen);
		if (p)
			break;
		err = 0;
		if (sk->sk_shutdown & RCV_SHUTDOWN)
			goto out;
		err = cn_wait(cs, udp_readable, NULL, &timeo);
		if (err)
			goto out;
	}
	n = min_t(size_t, len, dlen);
	if (copy_to_iter(sp[0].ptr, n, &msg->msg_iter) != n) {
		err = -EFAULT;
		goto out;
	}
	if (!(flags & MSG_PEEK))
		cn_consume(cn_kcirc_ep(p->kc), dlen);
	if (name)
		msg->msg_namelen = cn_addr_to_user(sk->sk_family, &p->remote, name);
	if (n < (size_t)dlen)
		msg->msg_flags |= MSG_TRUNC;
	err = (flags & MSG_TRUNC) ? (int)dlen : (int)n;
out:
	mutex_unlock(&cs->rx_lock);
	return err;
}

/* ---- the rest of the socket ---- */

static int udp_connect(struct socket *sock, struct sockaddr *uaddr, int len, int flags)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct cn_addr dst;
	int err;

	if (len < (int)sizeof(uaddr->sa_family))
		return -EINVAL;
	mutex_lock(&cs->tx_lock);
	if (uaddr->sa_family == AF_UNSPEC) {
		spin_lock(&cs->lock);
		cs->dflt.family = CN_AF_NONE;
		cs->sk.sk_state = TCP_CLOSE;
		spin_unlock(&cs->lock);
		sock->state = SS_UNCONNECTED;
		err = 0;
		goto out;
	}
	err = cn_addr_from_user(sock->sk->sk_family, uaddr, len, &dst);
	if (err)
		goto out;
	err = -ENETUNREACH;
	if (cs->v6only && dst.family != CN_AF_INET6)
		goto out;
	err = udp_autobind_locked(cs);
	if (err)
		goto out;
	spin_lock(&cs->lock);
	cs->dflt = dst;
	cs->sk.sk_state = TCP_ESTABLISHED;
	spin_unlock(&cs->lock);
	sock->state = SS_CONNECTED;
out:
	mutex_unlock(&cs->tx_lock);
	cn_sock_wake(sock->sk);
	return err;
}

static int udp_getname(struct socket *sock, struct sockaddr *uaddr, int peer)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct cn_addr a;

	spin_lock(&cs->lock);
	if (peer && !cs->dflt.family) {
		spin_unlock(&cs->lock);
		return -ENOTCONN;
	}
	a = peer ? cs->dflt : cs->local;
	spin_unlock(&cs->lock);
	return cn_addr_to_user(sock->sk->sk_family, &a, uaddr);
}

static __poll_t udp_poll(struct file *file, struct socket *sock, poll_table *wait)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	sock_poll_wait(file, sock, wait);
	if (udp_readable(cs, NULL))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (READ_ONCE(cs->sk.sk_err))
		mask |= EPOLLERR;
	if (cs->sk.sk_shutdown & RCV_SHUTDOWN)
		mask |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP;
	return mask;
}

static int udp_ioctl(struct socket *sock, unsigned int cmd, unsigned long arg)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct cn_span sp[2];
	ssize_t dlen = 0;
	int val = 0;

	switch (cmd) {
	case SIOCINQ: /* the next datagram's size, as UDP's */
		if (mutex_lock_interruptible(&cs->rx_lock))
			return -ERESTARTSYS;
		if (next_datagram(cs, sp, &dlen))
			val = (int)dlen;
		mutex_unlock(&cs->rx_lock);
		break;
	case SIOCOUTQ:
		break;
	default:
		return -ENOIOCTLCMD;
	}
	return put_user(val, (int __user *)arg);
}

static int udp_shutdown(struct socket *sock, int how)
{
	struct sock *sk = sock->sk;

	if (how < SHUT_RD || how > SHUT_RDWR)
		return -EINVAL;
	if (!cn_sk(sk)->dflt.family)
		return -ENOTCONN;
	sk->sk_shutdown |= how + 1;
	cn_sock_wake(sk);
	return 0;
}

static int udp_release(struct socket *sock)
{
	struct sock *sk = sock->sk;
	struct cn_upeer *p, *tmp;
	struct cn_sock *cs;
	LIST_HEAD(gone);

	if (!sk)
		return 0;
	cs = cn_sk(sk);
	spin_lock(&cn_lock);
	list_del_init(&cs->cnode);
	list_del_init(&cs->lnode);
	spin_lock(&cs->lock);
	list_splice_init(&cs->peers, &gone);
	spin_unlock(&cs->lock);
	spin_unlock(&cn_lock);
	if (cs->listener_id) {
		struct cn_msg_id m;

		cn_msg_init(&m.h, CN_MSG_UNLISTEN, sizeof(m), 0);
		m.id = cs->listener_id;
		cn_ctl_notify(&m.h);
	}
	list_for_each_entry_safe(p, tmp, &gone, node) {
		struct cn_msg_id m;

		cn_close(cn_kcirc_ep(p->kc));
		cn_kcirc_close(p->kc);
		cn_msg_init(&m.h, CN_MSG_CLOSED, sizeof(m), 0);
		m.id = p->id;
		cn_ctl_notify(&m.h);
		kfree(p);
	}
	sock_orphan(sk);
	sock->sk = NULL;
	sock_put(sk);
	return 0;
}

#define CN_DGRAM_OPS(fam)					\
	{							\
		.family = fam,					\
		.owner = THIS_MODULE,				\
		.release = udp_release,				\
		.bind = udp_bind,				\
		.connect = udp_connect,				\
		.socketpair = sock_no_socketpair,		\
		.accept = sock_no_accept,			\
		.getname = udp_getname,				\
		.poll = udp_poll,				\
		.ioctl = udp_ioctl,				\
		.listen = sock_no_listen,			\
		.shutdown = udp_shutdown,			\
		.setsockopt = cn_setsockopt,			\
		.getsockopt = cn_getsockopt,			\
		.sendmsg = udp_sendmsg,				\
		.recvmsg = udp_recvmsg,				\
		.mmap = sock_no_mmap,				\
		.sendpage = sock_no_sendpage,			\
	}

const struct proto_ops cn_dgram_ops = CN_DGRAM_OPS(PF_INET);
const struct proto_ops cn_dgram6_ops = CN_DGRAM_OPS(PF_INET6);

/* A new datagram socket joins the list that pushes search. */
void cn_udp_created(struct cn_sock *cs)
{
	spin_lock(&cn_lock);
	list_add_tail(&cs->cnode, &cn_udp_socks);
	spin_unlock(&cn_lock);
}
