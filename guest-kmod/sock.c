// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * sock.c - AF_INET stream sockets that are circuits: what applications in
 * a VM get from socket(AF_INET, SOCK_STREAM, 0), unmodified and static
 * binaries included; and the family takeover that gives them (and udp.c's
 * datagram sockets) their sockets.
 *
 * How a plain socket() reaches us on Debian's 6.1 kernel: the module takes
 * over the PF_INET family (sock_unregister + sock_register) and creates a
 * circuit socket for user-space stream sockets, handing everything else
 * (datagram, raw, the kernel's own sockets, and every socket while the VM
 * has no session with an operator) to the kernel's inet_create, found
 * through kallsyms. Unloading gives the family back. Newer kernels offer
 * cleaner hooks (IPPROTO_SMC-style protocols chosen by the
 * update_socket_protocol BPF hook, 6.6+); inet_register_protosw cannot
 * take the default stream protocol from TCP (it is permanent), and a
 * preload misses static and Go binaries. docs/vms.md says more.
 *
 * A socket is struct cn_sock: a struct sock (so SOL_SOCKET options, fd
 * passing, fork, epoll and friends are the kernel's own) plus the circuit
 * (kring.c) once connected or accepted. The data path is the host's ring
 * code (shared/): reserve + copy_from_iter + commit, peek + copy_to_iter +
 * consume, no intermediate buffer. Sleepers arm the ring's want flags and
 * sleep on the socket's wait queue, which the circuit's vectors wake.
 *
 * Locking: cs->lock (spinlock) guards the socket's state, its circuit
 * pointer and its accept queue; rx_lock and tx_lock serialise readers and
 * writers (the endpoint's caches are per direction). cn_lock guards the
 * lists the control thread searches (listeners, circuits). Order: cn_lock
 * before cs->lock; the interrupt path takes neither.
 */
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/sockios.h>
#include <asm/ioctls.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <net/ipv6.h>
#include <net/sock.h>
#include <net/tcp_states.h>
#include <stdatomic.h> /* compat/: the ring's flags as shared/ writes them */

#include "sock.h"

LIST_HEAD(cn_listeners);
static LIST_HEAD(cn_conns);
DEFINE_SPINLOCK(cn_lock);


static struct proto cn_proto = {
	.name = "CIRCNET",
	.owner = THIS_MODULE,
	.obj_size = sizeof(struct cn_sock),
};

static const struct proto_ops cn_stream_ops;

/* The circuit's vectors fired, or a local state change: wake every sleeper. */
void cn_sock_wake(void *arg)
{
	struct sock *sk = arg;
	struct socket_wq *wq;

	rcu_read_lock();
	wq = rcu_dereference(sk->sk_wq);
	if (skwq_has_sleeper(wq))
		wake_up_interruptible_all(&wq->wait);
	sk_wake_async(sk, SOCK_WAKE_IO, POLL_IN);
	rcu_read_unlock();
}

/* Errors the ring code reports in terms a TCP application knows. */
int cn_errno(long err)
{
	return err == -EPROTO ? -ECONNRESET : (int)err;
}

int cn_addr_from_user(int fam, const struct sockaddr *uaddr, int len, struct cn_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (fam == AF_INET6) {
		struct sockaddr_in6 sin6 = { 0 };

		if (len < SIN6_LEN_RFC2133)
			return -EINVAL;
		memcpy(&sin6, uaddr, min_t(int, len, sizeof(sin6)));
		if (sin6.sin6_family != AF_INET6)
			return -EAFNOSUPPORT;
		a->port = ntohs(sin6.sin6_port);
		if (ipv6_addr_v4mapped(&sin6.sin6_addr)) {
			a->family = CN_AF_INET;
			memcpy(a->addr, &sin6.sin6_addr.s6_addr32[3], 4);
		} else {
			a->family = CN_AF_INET6;
			memcpy(a->addr, &sin6.sin6_addr, 16);
		}
		return 0;
	} else {
		struct sockaddr_in sin;

		if (len < (int)sizeof(sin))
			return -EINVAL;
		memcpy(&sin, uaddr, sizeof(sin));
		if (sin.sin_family != AF_INET)
			return -EAFNOSUPPORT;
		a->family = CN_AF_INET;
		a->port = ntohs(sin.sin_port);
		memcpy(a->addr, &sin.sin_addr, 4);
		return 0;
	}
}

int cn_addr_to_user(int fam, const struct cn_addr *a, struct sockaddr *uaddr)
{
	if (fam == AF_INET6) {
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(a->port) };

		if (a->family == CN_AF_INET6)
			memcpy(&sin6.sin6_addr, a->addr, 16);
		else if (memchr_inv(a->addr, 0, 4)) /* IPv4 any shows as :: */
			ipv6_addr_set_v4mapped(*(const __be32 *)a->addr, &sin6.sin6_addr);
		memcpy(uaddr, &sin6, sizeof(sin6));
		return sizeof(sin6);
	} else {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(a->port) };

		memcpy(&sin.sin_addr, a->addr, 4);
		memcpy(uaddr, &sin, sizeof(sin));
		return sizeof(sin);
	}
}

bool cn_addr_same(const struct cn_addr *a, const struct cn_addr *b)
{
	return a->family == b->family && a->port == b->port && !memcmp(a->addr, b->addr, 16);
}

static void cn_sock_init_fields(struct cn_sock *cs)
{
	spin_lock_init(&cs->lock);
	mutex_init(&cs->rx_lock);
	mutex_init(&cs->tx_lock);
	INIT_LIST_HEAD(&cs->lnode);
	INIT_LIST_HEAD(&cs->cnode);
	INIT_LIST_HEAD(&cs->accq);
	INIT_LIST_HEAD(&cs->qnode);
	INIT_LIST_HEAD(&cs->peers);
	cs->dflt.family = CN_AF_NONE;
	cs->local.family = CN_AF_INET;
	/* what Linux's TCP reports before anyone sets them */
	cs->tcp_opt[TCP_MAXSEG] = 536;
	cs->tcp_opt[TCP_KEEPIDLE] = 7200;
	cs->tcp_opt[TCP_KEEPINTVL] = 75;
	cs->tcp_opt[TCP_KEEPCNT] = 9;
	cs->tcp_opt[TCP_SYNCNT] = 6;
	cs->tcp_opt[TCP_LINGER2] = 60;
	cs->ip_ttl = 64;
}

struct sock *cn_sk_alloc(struct net *net, struct socket *sock, int family, int type, int kern)
{
	struct sock *sk = sk_alloc(net, family, GFP_KERNEL, &cn_proto, kern);

	if (!sk)
		return NULL;
	/* sk_alloc clears struct sock only: the rest is ours to zero */
	memset((char *)sk + sizeof(*sk), 0, sizeof(struct cn_sock) - sizeof(*sk));
	sock_init_data(sock, sk);
	sk->sk_protocol = type == SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP;
	sk->sk_type = type;
	sk->sk_state = TCP_CLOSE;
	cn_sock_init_fields(cn_sk(sk));
	cn_sk(sk)->local.family = family == AF_INET6 ? CN_AF_INET6 : CN_AF_INET;
	return sk;
}

/* Take the circuit away from the socket (release, disconnect) and close it. */
static void cn_sock_drop_circuit(struct cn_sock *cs, bool reset)
{
	struct cn_kcirc *kc;
	struct cn_msg_id m;

	spin_lock(&cn_lock);
	spin_lock(&cs->lock);
	kc = cs->kc;
	cs->kc = NULL;
	list_del_init(&cs->cnode);
	spin_unlock(&cs->lock);
	spin_unlock(&cn_lock);
	if (!kc)
		return;
	if (reset)
		cn_reset(cn_kcirc_ep(kc));
	else
		cn_close(cn_kcirc_ep(kc));
	cn_kcirc_close(kc);
	if (cs->is_local)
		return;
	cn_msg_init(&m.h, CN_MSG_CLOSED, sizeof(m), 0);
	m.id = cs->circuit_id;
	if (current->flags & PF_KTHREAD)
		cn_ctl_notify_later(CN_MSG_CLOSED, cs->circuit_id);
	else
		cn_ctl_notify(&m.h);
}

/* Give a circuit to a socket (connect done, NEW_CONN): it is findable by id from now. */
static void cn_sock_set_circuit(struct cn_sock *cs, struct cn_kcirc *kc,
				const struct cn_msg_circuit *m)
{
	cs->kc = kc;
	cs->circuit_id = m->circuit_id;
	cs->local = m->local;
	cs->remote = m->remote;
	list_add_tail(&cs->cnode, &cn_conns);
	/* its device is going and may have looked at cn_conns already */
	if (cn_kcirc_dev(kc) && cnv_dying(cn_kcirc_dev(kc)))
		cn_revoke(cn_kcirc_ep(kc));
}

/* ---- pushes from the operator (the control thread) ---- */

void cn_sock_reset(u64 circuit_id, int err)
{
	struct cn_sock *cs;

	spin_lock(&cn_lock);
	list_for_each_entry(cs, &cn_conns, cnode) {
		if (cs->circuit_id != circuit_id)
			continue;
		spin_lock(&cs->lock);
		if (cs->kc)
			cn_revoke(cn_kcirc_ep(cs->kc)); /* wakes its sleepers */
		spin_unlock(&cs->lock);
		break;
	}
	spin_unlock(&cn_lock);
	cn_udp_reset(circuit_id);
}

void cn_sock_device_gone(struct cnv_dev *d)
{
	struct cn_sock *cs;

	spin_lock(&cn_lock);
	list_for_each_entry(cs, &cn_conns, cnode) {
		spin_lock(&cs->lock);
		if (cs->kc && cn_kcirc_dev(cs->kc) == d)
			cn_revoke(cn_kcirc_ep(cs->kc));
		spin_unlock(&cs->lock);
	}
	spin_unlock(&cn_lock);
	cn_udp_device_gone(d);
}

static struct cn_sock *find_listener(u64 id)
{
	struct cn_sock *cs, *found = NULL;

	spin_lock(&cn_lock);
	list_for_each_entry(cs, &cn_listeners, lnode) {
		if (cs->listener_id == id) {
			sock_hold(&cs->sk);
			found = cs;
			break;
		}
	}
	spin_unlock(&cn_lock);
	return found;
}

static void cn_child_free(struct cn_sock *child, bool reset)
{
	cn_sock_drop_circuit(child, reset);
	sock_orphan(&child->sk);
	sock_put(&child->sk);
}

/*
 * A connection to one of our listeners: the child socket exists from now
 * on, with its circuit attached, as TCP's does once the handshake is done;
 * accept() hands it out and says ACCEPTED (which frees the backlog slot).
 */
void cn_sock_new_conn(const struct cn_msg_circuit *m)
{
	struct cn_sock *ls = find_listener(m->listener_id), *child;
	struct cn_kcirc *kc;
	struct sock *sk;
	bool queued = false;
	int err;

	if (!ls) {
		cn_ctl_notify_later(CN_MSG_CLOSED, m->circuit_id);
		return;
	}
	if (ls->sk.sk_type == SOCK_DGRAM) {
		cn_udp_new_peer(ls, m); /* a peer's first datagram is on its way */
		goto out;
	}
	sk = cn_sk_alloc(sock_net(&ls->sk), NULL, ls->sk.sk_family, SOCK_STREAM, 0);
	if (!sk) {
		cn_ctl_notify_later(CN_MSG_CLOSED, m->circuit_id);
		goto out;
	}
	child = cn_sk(sk);
	kc = cn_kcirc_open(m, CN_L4_TCP, cn_sock_wake, sk, &err);
	if (!kc) {
		pr_warn("circnet: connection %llu refused: its circuit is unusable (%d)\n",
			(unsigned long long)m->circuit_id, err);
		cn_ctl_notify_later(CN_MSG_CLOSED, m->circuit_id);
		sk_free(sk);
		goto out;
	}
	sk->sk_state = TCP_ESTABLISHED;
	spin_lock(&cn_lock);
	cn_sock_set_circuit(child, kc, m);
	spin_unlock(&cn_lock);
	spin_lock(&ls->lock);
	if (ls->sk.sk_state == TCP_LISTEN) {
		list_add_tail(&child->qnode, &ls->accq);
		queued = true;
	}
	spin_unlock(&ls->lock);
	if (queued)
		cn_sock_wake(&ls->sk);
	else
		cn_child_free(child, true);
out:
	sock_put(&ls->sk);
}

/* ---- connect ---- */

/* An off-host connect is settled once the proxy stack wrote its outcome. */
static void cn_settle(struct cn_sock *cs)
{
	int st;

	if (!cs->pending || !cs->kc)
		return;
	st = cn_ep_connect_status(cn_kcirc_ep(cs->kc));
	if (st == -EINPROGRESS)
		return;
	cs->pending = false;
	if (!st) {
		cs->sk.sk_state = TCP_ESTABLISHED;
	} else {
		/* the proxy stack's word: a user-space errno or a reset */
		cs->sk.sk_err = -st > 0 && -st < 512 ? -cn_errno(st) : ECONNRESET;
		cs->sk.sk_state = TCP_CLOSE;
	}
}

static void connect_done(struct cn_req *req)
{
	struct cn_sock *cs = container_of(req, struct cn_sock, creq);
	struct sock *sk = &cs->sk;
	struct cn_kcirc *kc = NULL;
	int err = req->err;
	bool dead;

	if (!err) {
		kc = cn_kcirc_open(&req->reply.circuit, CN_L4_TCP, cn_sock_wake, sk, &err);
		if (!kc) {
			cn_ctl_notify_later(CN_MSG_CLOSED, req->reply.circuit.circuit_id);
			err = -ECONNABORTED;
		}
	}
	spin_lock(&cn_lock);
	spin_lock(&cs->lock);
	cs->creq_busy = false;
	dead = sock_flag(sk, SOCK_DEAD);
	if (kc && !dead) {
		cn_sock_set_circuit(cs, kc, &req->reply.circuit);
		cs->pending = req->reply.circuit.flags & CN_CIRCUIT_PENDING;
		sk->sk_state = cs->pending ? TCP_SYN_SENT : TCP_ESTABLISHED;
		cn_settle(cs);
	} else if (!dead) {
		sk->sk_err = -err;
		sk->sk_state = TCP_CLOSE;
	}
	spin_unlock(&cs->lock);
	spin_unlock(&cn_lock);
	if (kc && dead) {
		/* closed while connecting: the circuit is nobody's */
		cn_reset(cn_kcirc_ep(kc));
		cn_ctl_notify_later(CN_MSG_CLOSED, req->reply.circuit.circuit_id);
		cn_kcirc_close(kc);
	}
	cn_sock_wake(sk);
	sock_put(sk); /* the request's */
}

static bool connect_settled(struct cn_sock *cs)
{
	bool done;

	spin_lock(&cs->lock);
	cn_settle(cs);
	done = !cs->creq_busy && !cs->pending;
	spin_unlock(&cs->lock);
	return done;
}

/* Wait while the socket is connecting; 0 once it is not, or the wait's error. */
static int wait_connect(struct cn_sock *cs, long *timeo)
{
	while (!connect_settled(cs)) {
		long t;

		if (!*timeo)
			return -EINPROGRESS;
		if (signal_pending(current))
			return sock_intr_errno(*timeo);
		t = wait_event_interruptible_timeout(*sk_sleep(&cs->sk), connect_settled(cs), *timeo);
		if (t < 0)
			return sock_intr_errno(*timeo);
		*timeo = t;
	}
	return 0;
}

/* ---- connections inside the VM ---- */

/* Loopback, or one of the VM's own addresses: its own listeners answer. */
static bool dst_is_local(const struct cn_addr *dst)
{
	static const u8 v6lo[16] = { [15] = 1 };

	if (dst->family == CN_AF_INET && dst->addr[0] == 127)
		return true;
	if (dst->family == CN_AF_INET6 && !memcmp(dst->addr, v6lo, 16))
		return true;
	return cn_ctl_owns(dst);
}

/* A listener of this VM that takes dst, held; as the operator's listener_takes(). */
static struct cn_sock *find_local_listener(const struct cn_addr *dst)
{
	struct cn_sock *cs, *found = NULL;

	spin_lock(&cn_lock);
	list_for_each_entry(cs, &cn_listeners, lnode) {
		bool any = !memchr_inv(cs->local.addr, 0, sizeof(cs->local.addr));

		if (cs->sk.sk_type != SOCK_STREAM || cs->sk.sk_state != TCP_LISTEN ||
		    cs->local.port != dst->port)
			continue;
		if (any && cs->local.family == CN_AF_INET && dst->family != CN_AF_INET)
			continue;
		if (any && cs->v6only && dst->family != CN_AF_INET6)
			continue;
		if (!any && (cs->local.family != dst->family ||
			     memcmp(cs->local.addr, dst->addr, sizeof(dst->addr))))
			continue;
		sock_hold(&cs->sk);
		found = cs;
		break;
	}
	spin_unlock(&cn_lock);
	return found;
}

static atomic64_t cn_local_ids = ATOMIC64_INIT(0);
static atomic_t cn_local_ports = ATOMIC_INIT(0);

/*
 * A connection to a listener of this VM: no operator, no device. The
 * circuit lives in kernel memory, the child is queued on the listener as
 * NEW_CONN would queue it, and the connect completes at once. Its ids have
 * the top bit set, which the operator's never have (they start at the wall
 * clock in microseconds). The caller holds tx_lock.
 */
static int cn_connect_local(struct cn_sock *cs, const struct cn_addr *dst)
{
	struct cn_sock *ls = find_local_listener(dst), *child;
	struct cn_kcirc *a, *b;
	struct cn_msg_circuit mc = { 0 };
	struct sock *sk;
	unsigned int queued = 0;
	struct cn_sock *q;
	int err;

	if (!ls)
		return -ECONNREFUSED;
	spin_lock(&ls->lock);
	list_for_each_entry(q, &ls->accq, qnode)
		queued++;
	spin_unlock(&ls->lock);
	err = -ECONNREFUSED; /* a full backlog refuses, rather than making the client wait */
	if (queued > max_t(u32, READ_ONCE(ls->sk.sk_max_ack_backlog), 1))
		goto out;
	err = -ENOBUFS;
	sk = cn_sk_alloc(sock_net(&ls->sk), NULL, ls->sk.sk_family, SOCK_STREAM, 0);
	if (!sk)
		goto out;
	child = cn_sk(sk);
	mc.circuit_id = (1ull << 63) | atomic64_inc_return(&cn_local_ids);
	err = cn_kcirc_pair_local(mc.circuit_id, &a, cn_sock_wake, &cs->sk, &b, cn_sock_wake, sk);
	if (err) {
		sk_free(sk);
		goto out;
	}
	mc.local = *dst; /* the source: the same address, a port of our own */
	mc.local.port = cs->local.port ? cs->local.port :
		(u16)(32768 + (u32)atomic_inc_return(&cn_local_ports) % 28232);
	mc.remote = *dst;
	cs->is_local = true;
	child->is_local = true;
	spin_lock(&cn_lock);
	cn_sock_set_circuit(cs, a, &mc);
	swap(mc.local, mc.remote);
	cn_sock_set_circuit(child, b, &mc);
	spin_unlock(&cn_lock);
	sk->sk_state = TCP_ESTABLISHED;
	spin_lock(&cs->lock);
	cs->sk.sk_state = TCP_ESTABLISHED;
	spin_unlock(&cs->lock);
	err = 0;
	spin_lock(&ls->lock);
	if (ls->sk.sk_state == TCP_LISTEN)
		list_add_tail(&child->qnode, &ls->accq);
	else
		err = -ECONNREFUSED;
	spin_unlock(&ls->lock);
	if (err)
		cn_child_free(child, true);
	else
		cn_sock_wake(&ls->sk);
out:
	sock_put(&ls->sk);
	return err;
}

/* connect(AF_UNSPEC); the caller holds tx_lock. */
static int cn_disconnect(struct cn_sock *cs, struct socket *sock)
{
	if (cs->sk.sk_state == TCP_LISTEN)
		return -EINVAL; /* not ours to end here: close() it */
	if (!cs->kc)
		return 0;
	/*
	 * A reader in recv() holds rx_lock and uses the circuit: reset it,
	 * which wakes the reader with an error, and take rx_lock before the
	 * circuit goes.
	 */
	spin_lock(&cs->lock);
	if (cs->kc)
		cn_revoke(cn_kcirc_ep(cs->kc));
	spin_unlock(&cs->lock);
	mutex_lock(&cs->rx_lock);
	cn_sock_drop_circuit(cs, true); /* TCP's disconnect is abortive */
	mutex_unlock(&cs->rx_lock);
	spin_lock(&cs->lock);
	cs->sk.sk_state = TCP_CLOSE;
	cs->sk.sk_err = ECONNRESET; /* as tcp_disconnect: the next call reports it */
	spin_unlock(&cs->lock);
	sock->state = SS_UNCONNECTED;
	return 0;
}

static int cn_connect(struct socket *sock, struct sockaddr *uaddr, int len, int flags)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct sock *sk = sock->sk;
	struct cn_msg_connect m;
	struct cn_addr dst;
	long timeo;
	int err;

	if (len < (int)sizeof(uaddr->sa_family))
		return -EINVAL;
	if (mutex_lock_interruptible(&cs->tx_lock))
		return -ERESTARTSYS;
	if (uaddr->sa_family == AF_UNSPEC) {
		err = cn_disconnect(cs, sock);
		goto out;
	}
	err = cn_addr_from_user(sk->sk_family, uaddr, len, &dst);
	if (err)
		goto out;
	err = -ENETUNREACH;
	if (cs->v6only && dst.family != CN_AF_INET6)
		goto out;
	switch (sock->state) {
	case SS_CONNECTED:
		err = -EISCONN;
		goto out;
	case SS_CONNECTING:
		err = -EALREADY;
		break;
	case SS_UNCONNECTED:
		err = -EISCONN;
		if (sk->sk_state != TCP_CLOSE)
			goto out;
		/* what a failed connect left (an off-host one keeps its circuit) */
		cn_disconnect(cs, sock);
		sk->sk_err = 0;
		cs->is_local = false;
		if (dst_is_local(&dst)) {
			err = cn_connect_local(cs, &dst);
			if (!err)
				sock->state = SS_CONNECTED;
			goto out;
		}
		cn_msg_init(&m.h, CN_MSG_CONNECT, sizeof(m), 0);
		m.l4 = CN_L4_TCP;
		memset(m.pad, 0, sizeof(m.pad));
		m.flags = 0;
		memset(&m.src, 0, sizeof(m.src));
		if (cs->local.port || memchr_inv(cs->local.addr, 0, sizeof(cs->local.addr)))
			m.src = cs->local; /* bind() before connect() */
		m.dst = dst;
		cs->creq.want = CN_MSG_CONNECT_OK;
		cs->creq.done = connect_done;
		sock_hold(sk);
		spin_lock(&cs->lock);
		cs->creq_busy = true;
		sk->sk_state = TCP_SYN_SENT;
		sk->sk_err = 0;
		spin_unlock(&cs->lock);
		sock->state = SS_CONNECTING;
		err = cn_ctl_submit(&cs->creq, &m.h);
		if (err) {
			spin_lock(&cs->lock);
			cs->creq_busy = false;
			sk->sk_state = TCP_CLOSE;
			spin_unlock(&cs->lock);
			sock->state = SS_UNCONNECTED;
			sock_put(sk);
			goto out;
		}
		err = -EINPROGRESS;
		break;
	default:
		err = -EINVAL;
		goto out;
	}
	/* the wait holds no lock: other threads' calls on the socket go on */
	mutex_unlock(&cs->tx_lock);
	timeo = sock_sndtimeo(sk, flags & O_NONBLOCK);
	if (!connect_settled(cs)) {
		if (!timeo)
			return err; /* EINPROGRESS, or EALREADY */
		err = wait_connect(cs, &timeo);
		if (err)
			return err;
	}
	spin_lock(&cs->lock);
	if (sk->sk_state == TCP_CLOSE) {
		spin_unlock(&cs->lock);
		err = sock_error(sk) ?: -ECONNABORTED;
		sock->state = SS_UNCONNECTED;
		return err;
	}
	spin_unlock(&cs->lock);
	sock->state = SS_CONNECTED;
	return 0;
out:
	mutex_unlock(&cs->tx_lock);
	return err;
}

/* ---- bind, listen, accept ---- */

int cn_bind_addr(struct sock *sk, struct sockaddr *uaddr, int len, struct cn_addr *a)
{
	static const u8 v6lo[16] = { [15] = 1 };
	int err;

	/* AF_INET's old habit: AF_UNSPEC with INADDR_ANY binds */
	if (sk->sk_family == AF_INET && len >= (int)sizeof(struct sockaddr_in) &&
	    uaddr->sa_family == AF_UNSPEC &&
	    ((struct sockaddr_in *)uaddr)->sin_addr.s_addr == htonl(INADDR_ANY)) {
		struct sockaddr_in sin;

		memcpy(&sin, uaddr, sizeof(sin));
		sin.sin_family = AF_INET;
		return cn_addr_from_user(AF_INET, (struct sockaddr *)&sin, sizeof(sin), a);
	}
	err = cn_addr_from_user(sk->sk_family, uaddr, len, a);
	if (err)
		return err;
	if (!memchr_inv(a->addr, 0, sizeof(a->addr)))
		return 0; /* every address */
	if ((a->family == CN_AF_INET && a->addr[0] == 127) ||
	    (a->family == CN_AF_INET6 && !memcmp(a->addr, v6lo, 16)))
		return 0;
	return cn_ctl_owns(a) ? 0 : -EADDRNOTAVAIL;
}

static int cn_bind(struct socket *sock, struct sockaddr *uaddr, int len)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct cn_addr a;
	int err = cn_bind_addr(sock->sk, uaddr, len, &a);

	if (err)
		return err;
	mutex_lock(&cs->tx_lock);
	if (cs->sk.sk_state != TCP_CLOSE || cs->local.port || cs->kc)
		err = -EINVAL;
	else
		cs->local = a;
	mutex_unlock(&cs->tx_lock);
	return err;
}

static int cn_listen(struct socket *sock, int backlog)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct sock *sk = sock->sk;
	struct cn_msg_listen m;
	union cn_msg *r;
	int err;

	if (sock->state != SS_UNCONNECTED)
		return -EINVAL;
	mutex_lock(&cs->tx_lock);
	err = 0;
	if (sk->sk_state == TCP_LISTEN) {
		sk->sk_max_ack_backlog = backlog; /* the operator keeps the first */
		goto out;
	}
	err = -EINVAL;
	if (sk->sk_state != TCP_CLOSE || cs->kc)
		goto out;
	err = -ENOMEM;
	r = kmalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		goto out;
	cn_msg_init(&m.h, CN_MSG_LISTEN, sizeof(m), 0);
	m.l4 = CN_L4_TCP;
	m.flags = 0;
	memset(m.pad, 0, sizeof(m.pad));
	m.backlog = clamp(backlog, 1, 4096);
	m.addr = cs->local; /* 0.0.0.0 takes IPv4, :: both (operator/core.c) */
	if (cs->v6only)
		m.flags |= CN_LISTEN_V6ONLY;
	err = cn_ctl_call(&m.h, r, CN_MSG_LISTEN_OK);
	if (!err) {
		cs->listener_id = r->listen_ok.listener_id;
		cs->local.port = r->listen_ok.bound.port;
		sk->sk_max_ack_backlog = backlog;
		spin_lock(&cn_lock);
		spin_lock(&cs->lock);
		sk->sk_state = TCP_LISTEN;
		list_add_tail(&cs->lnode, &cn_listeners);
		spin_unlock(&cs->lock);
		spin_unlock(&cn_lock);
	}
	kfree(r);
out:
	mutex_unlock(&cs->tx_lock);
	return err;
}

static struct cn_sock *accq_pop(struct cn_sock *ls)
{
	struct cn_sock *child;

	spin_lock(&ls->lock);
	child = list_first_entry_or_null(&ls->accq, struct cn_sock, qnode);
	if (child)
		list_del_init(&child->qnode);
	spin_unlock(&ls->lock);
	return child;
}

static bool accq_ready(struct cn_sock *ls)
{
	bool ready;

	spin_lock(&ls->lock);
	ready = !list_empty(&ls->accq) || ls->sk.sk_state != TCP_LISTEN;
	spin_unlock(&ls->lock);
	return ready;
}

static int cn_accept(struct socket *sock, struct socket *newsock, int flags, bool kern)
{
	struct cn_sock *ls = cn_sk(sock->sk), *child;
	long timeo = sock_rcvtimeo(sock->sk, flags & O_NONBLOCK);
	struct cn_msg_id m;

	for (;;) {
		long t;

		if (ls->sk.sk_state != TCP_LISTEN)
			return -EINVAL;
		child = accq_pop(ls);
		if (child)
			break;
		if (!timeo)
			return -EAGAIN;
		if (signal_pending(current))
			return sock_intr_errno(timeo);
		t = wait_event_interruptible_timeout(*sk_sleep(&ls->sk), accq_ready(ls), timeo);
		if (t < 0)
			return sock_intr_errno(timeo);
		timeo = t;
	}
	sock_graft(&child->sk, newsock);
	newsock->state = SS_CONNECTED;
	if (child->is_local)
		return 0;
	cn_msg_init(&m.h, CN_MSG_ACCEPTED, sizeof(m), 0);
	m.id = child->circuit_id;
	cn_ctl_notify(&m.h);
	return 0;
}

/* ---- the data path ---- */

static bool rx_ready(struct cn_sock *cs, void *unused)
{
	bool r;

	spin_lock(&cs->lock);
	r = !cs->kc || (cn_poll_arm(cn_kcirc_ep(cs->kc), CN_POLLIN) &
			(CN_POLLIN | CN_POLLERR | CN_POLLHUP | CN_POLLRDHUP));
	spin_unlock(&cs->lock);
	return r;
}

static bool tx_ready(struct cn_sock *cs, void *unused)
{
	bool r;

	spin_lock(&cs->lock);
	r = !cs->kc ||
	    (cn_poll_arm(cn_kcirc_ep(cs->kc), CN_POLLOUT) & (CN_POLLOUT | CN_POLLERR | CN_POLLHUP));
	spin_unlock(&cs->lock);
	return r;
}

/* Sleep until ready() or the time runs out; 0, -EAGAIN or the signal's error. */
int cn_wait(struct cn_sock *cs, bool (*ready)(struct cn_sock *, void *), void *arg, long *timeo)
{
	long t;

	if (!*timeo)
		return -EAGAIN;
	if (signal_pending(current))
		return sock_intr_errno(*timeo);
	t = wait_event_interruptible_timeout(*sk_sleep(&cs->sk), ready(cs, arg), *timeo);
	if (t < 0)
		return sock_intr_errno(*timeo);
	if (!t && !ready(cs, arg))
		return -EAGAIN;
	*timeo = t ? t : 1;
	return 0;
}

static int ring_fill(const struct cn_ring_view *r);

/* More than have bytes readable, or the stream's end (the caller holds rx_lock). */
static bool rx_more(struct cn_sock *cs, ssize_t have)
{
	struct cn_endpoint *ep = cn_kcirc_ep(cs->kc);

	/* data already waits, so cn_poll_arm would not ask for a wake-up: ask */
	atomic_store_explicit(&ep->rx.ctrl->reader_want, 1, memory_order_seq_cst);
	return ring_fill(&ep->rx) > have ||
	       (cn_poll(ep) & (CN_POLLERR | CN_POLLHUP | CN_POLLRDHUP));
}

static int cn_wait_more(struct cn_sock *cs, ssize_t have, long *timeo)
{
	long t;

	if (signal_pending(current))
		return sock_intr_errno(*timeo);
	t = wait_event_interruptible_timeout(*sk_sleep(&cs->sk), rx_more(cs, have), *timeo);
	if (t < 0)
		return sock_intr_errno(*timeo);
	if (!t)
		return -EAGAIN;
	*timeo = t;
	return 0;
}

/* The circuit a reader or writer uses now, after a connect in flight settled. */
static int cn_data_circuit(struct cn_sock *cs, long *timeo, bool tx, struct cn_endpoint **ep)
{
	struct sock *sk = &cs->sk;
	int err;

	if (sk->sk_state == TCP_LISTEN)
		return tx ? -EPIPE : -ENOTCONN;
	if (sk->sk_state == TCP_SYN_SENT) {
		err = wait_connect(cs, timeo);
		if (err)
			return err == -EINPROGRESS ? -EAGAIN : err;
	}
	if (!cs->kc || sk->sk_state != TCP_ESTABLISHED) {
		err = sock_error(sk);
		return err ? err : tx ? -EPIPE : -ENOTCONN;
	}
	*ep = cn_kcirc_ep(cs->kc);
	return 0;
}

static int cn_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	int flags = msg->msg_flags;
	long timeo = sock_sndtimeo(sock->sk, flags & MSG_DONTWAIT);
	struct cn_endpoint *ep;
	size_t copied = 0;
	int err;

	if (flags & MSG_OOB)
		return -EOPNOTSUPP;
	if (mutex_lock_interruptible(&cs->tx_lock))
		return -ERESTARTSYS;
	err = cn_data_circuit(cs, &timeo, true, &ep);
	if (!err && !len) {
		struct cn_span sp[2];

		err = cn_errno(cn_reserve(ep, 0, sp, CN_MSG_DONTWAIT));
	}
	while (!err && copied < len) {
		struct cn_span sp[2];
		ssize_t r = cn_reserve(ep, len - copied, sp, CN_MSG_DONTWAIT);
		size_t n, first;

		if (r == -EAGAIN) {
			err = cn_wait(cs, tx_ready, NULL, &timeo);
			continue;
		}
		if (r < 0) {
			err = cn_errno(r);
			break;
		}
		first = min_t(size_t, r, sp[0].len);
		n = copy_from_iter(sp[0].ptr, first, &msg->msg_iter);
		if (n == first && (size_t)r > first)
			n += copy_from_iter(sp[1].ptr, r - first, &msg->msg_iter);
		err = cn_commit(ep, n);
		copied += n;
		if (n < (size_t)r) {
			err = copied ? 0 : -EFAULT;
			break;
		}
		err = cn_errno(err);
	}
	mutex_unlock(&cs->tx_lock);
	if (copied)
		return copied;
	if (err == -EPIPE && !(flags & MSG_NOSIGNAL))
		send_sig(SIGPIPE, current, 0);
	return err;
}

static int cn_recvmsg(struct socket *sock, struct msghdr *msg, size_t len, int flags)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	long timeo = sock_rcvtimeo(sock->sk, flags & MSG_DONTWAIT);
	int target = sock_rcvlowat(sock->sk, flags & MSG_WAITALL, len);
	struct cn_endpoint *ep;
	size_t copied = 0;
	int err;

	if (flags & MSG_OOB)
		return -EINVAL;
	if (flags & MSG_ERRQUEUE)
		return -EAGAIN;
	if (mutex_lock_interruptible(&cs->rx_lock))
		return -ERESTARTSYS;
	err = cn_data_circuit(cs, &timeo, false, &ep);
	while (!err && copied < len) {
		struct cn_span sp[2];
		ssize_t r = cn_peek(ep, sp, CN_MSG_DONTWAIT);
		size_t n, first, got;

		if (r == 0)
			break; /* EOF */
		if (r > 0 && (flags & (MSG_PEEK | MSG_WAITALL)) == (MSG_PEEK | MSG_WAITALL) &&
		    (size_t)r < (size_t)target && timeo) {
			/* peek all of it at once: wait for more than is there */
			err = cn_wait_more(cs, r, &timeo);
			if (err == -EAGAIN)
				err = 0, timeo = 0; /* the time is up: peek what there is */
			continue;
		}
		if (r == -EAGAIN) {
			if (copied && !(flags & MSG_WAITALL))
				break;
			err = cn_wait(cs, rx_ready, NULL, &timeo);
			continue;
		}
		if (r < 0) {
			err = cn_errno(r);
			break;
		}
		n = min_t(size_t, r, len - copied);
		first = min_t(size_t, n, sp[0].len);
		got = copy_to_iter(sp[0].ptr, first, &msg->msg_iter);
		if (got == first && n > first)
			got += copy_to_iter(sp[1].ptr, n - first, &msg->msg_iter);
		if (!(flags & MSG_PEEK))
			cn_consume(ep, got);
		copied += got;
		if (got < n) {
			err = copied ? 0 : -EFAULT;
			break;
		}
		if ((flags & MSG_PEEK) || copied >= (size_t)target)
			break;
	}
	/*
	 * A poller stays registered on the wait queue (epoll): keep asking the
	 * peer for a wake-up on its next write, data left or not, so that
	 * edge-triggered epoll sees every arrival as it does with TCP. The
	 * peer clears the flag when it rings, so this costs at most one
	 * interrupt per read.
	 */
	if (!err && skwq_has_sleeper(&sock->wq))
		atomic_store_explicit(&ep->rx.ctrl->reader_want, 1, memory_order_seq_cst);
	mutex_unlock(&cs->rx_lock);
	return copied ? copied : err;
}

/* ---- readiness, names, options, shutdown ---- */

__poll_t cn_poll_mask(unsigned int ev)
{
	__poll_t mask = 0;

	if (ev & CN_POLLIN)
		mask |= EPOLLIN | EPOLLRDNORM;
	if (ev & CN_POLLOUT)
		mask |= EPOLLOUT | EPOLLWRNORM;
	if (ev & CN_POLLERR)
		mask |= EPOLLERR;
	if (ev & CN_POLLHUP)
		mask |= EPOLLHUP;
	if (ev & CN_POLLRDHUP)
		mask |= EPOLLRDHUP;
	return mask;
}

static __poll_t cn_sock_poll(struct file *file, struct socket *sock, poll_table *wait)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct sock *sk = sock->sk;
	__poll_t want = poll_requested_events(wait), mask = 0;
	unsigned int arm = 0;

	sock_poll_wait(file, sock, wait);
	if (want & (EPOLLIN | EPOLLRDNORM))
		arm |= CN_POLLIN;
	if (want & (EPOLLOUT | EPOLLWRNORM))
		arm |= CN_POLLOUT;
	spin_lock(&cs->lock);
	cn_settle(cs);
	if (sk->sk_state == TCP_LISTEN)
		mask = list_empty(&cs->accq) ? 0 : EPOLLIN | EPOLLRDNORM;
	else if (sk->sk_state == TCP_SYN_SENT)
		mask = 0;
	else if (cs->kc)
		mask = cn_poll_mask(cn_poll_arm(cn_kcirc_ep(cs->kc), arm));
	else
		mask = EPOLLOUT | EPOLLWRNORM | EPOLLHUP; /* as TCP's in state CLOSE */
	if (READ_ONCE(sk->sk_err))
		mask |= EPOLLERR;
	spin_unlock(&cs->lock);
	return mask;
}

static int cn_getname(struct socket *sock, struct sockaddr *uaddr, int peer)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	struct cn_addr a;

	spin_lock(&cs->lock);
	if (peer && (!cs->kc || cs->sk.sk_state != TCP_ESTABLISHED)) {
		spin_unlock(&cs->lock);
		return -ENOTCONN;
	}
	a = peer ? cs->remote : cs->local;
	spin_unlock(&cs->lock);
	return cn_addr_to_user(sock->sk->sk_family, &a, uaddr);
}

/*
 * Bytes between a ring's two indices, read from shared memory without
 * touching either side's cache (no lock: a reader or writer may be at
 * work); 0 for indices no correct peer writes.
 */
static int ring_fill(const struct cn_ring_view *r)
{
	u64 prod = atomic_load_explicit(&r->ctrl->prod, memory_order_seq_cst);
	u64 cons = atomic_load_explicit(&r->ctrl->cons, memory_order_seq_cst);

	return prod - cons <= r->size ? (int)min_t(u64, prod - cons, INT_MAX) : 0;
}

static int cn_ioctl(struct socket *sock, unsigned int cmd, unsigned long arg)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	int val = 0;

	if (cmd != SIOCINQ && cmd != SIOCOUTQ && cmd != SIOCOUTQNSD)
		return -ENOIOCTLCMD;
	if (cs->sk.sk_state == TCP_LISTEN)
		return -EINVAL;
	spin_lock(&cs->lock);
	if (cs->kc)
		val = ring_fill(cmd == SIOCINQ ? &cn_kcirc_ep(cs->kc)->rx : &cn_kcirc_ep(cs->kc)->tx);
	spin_unlock(&cs->lock);
	return put_user(val, (int __user *)arg);
}

static void cn_listener_close(struct cn_sock *cs);

static int cn_sock_shutdown(struct socket *sock, int how)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	int err = 0;

	if (how < SHUT_RD || how > SHUT_RDWR)
		return -EINVAL;
	if (cs->sk.sk_state == TCP_LISTEN && how != SHUT_WR) {
		/* as TCP's: the listener stops, a blocked accept() returns EINVAL */
		if (mutex_lock_interruptible(&cs->tx_lock))
			return -ERESTARTSYS;
		if (cs->sk.sk_state == TCP_LISTEN)
			cn_listener_close(cs);
		mutex_unlock(&cs->tx_lock);
		cn_sock_wake(sock->sk);
		return 0;
	}
	spin_lock(&cs->lock);
	if (cs->kc && cs->sk.sk_state == TCP_ESTABLISHED)
		err = cn_errno(cn_shutdown(cn_kcirc_ep(cs->kc), how));
	else if (cs->sk.sk_state != TCP_LISTEN)
		err = -ENOTCONN;
	spin_unlock(&cs->lock);
	cn_sock_wake(sock->sk);
	return err;
}

static bool tcp_opt_known(int name)
{
	switch (name) {
	case TCP_NODELAY: case TCP_MAXSEG: case TCP_CORK: case TCP_KEEPIDLE:
	case TCP_KEEPINTVL: case TCP_KEEPCNT: case TCP_SYNCNT: case TCP_LINGER2:
	case TCP_DEFER_ACCEPT: case TCP_WINDOW_CLAMP: case TCP_QUICKACK:
	case TCP_USER_TIMEOUT: case TCP_FASTOPEN: case TCP_NOTSENT_LOWAT:
	case TCP_FASTOPEN_CONNECT: case TCP_THIN_LINEAR_TIMEOUTS:
		return name < CN_TCP_OPTS;
	default:
		return false;
	}
}

/*
 * TCP and IP options: a circuit has no segments, windows or timers, so
 * they are kept and read back as TCP would (booleans as 0/1), and change
 * nothing. TCP_NODELAY is what it means anyway: every write is visible to
 * the peer at once.
 */
int cn_setsockopt(struct socket *sock, int level, int name, sockptr_t optval,
		  unsigned int optlen)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	int val;

	if (level == SOL_TCP && sock->type != SOCK_STREAM)
		return -ENOPROTOOPT;
	if (level == SOL_TCP && name == TCP_CONGESTION)
		return 0;
	if (level == SOL_IPV6 && sock->sk->sk_family != AF_INET6)
		return -ENOPROTOOPT;
	if (level != SOL_TCP && level != SOL_IP && level != SOL_IPV6)
		return -ENOPROTOOPT;
	if (optlen < sizeof(int))
		return -EINVAL;
	if (copy_from_sockptr(&val, optval, sizeof(val)))
		return -EFAULT;
	if (level == SOL_IPV6) {
		if (name == IPV6_V6ONLY) {
			/* Linux: fixed once the socket has a port */
			if (cs->local.port || cs->kc || cs->listener_id)
				return -EINVAL;
			cs->v6only = !!val;
		} else if (name != IPV6_TCLASS && name != IPV6_UNICAST_HOPS &&
			   name != IPV6_RECVERR && name != IPV6_MTU_DISCOVER) {
			return -ENOPROTOOPT;
		}
		return 0;
	}
	if (level == SOL_IP) {
		if (name == IP_TOS)
			cs->ip_tos = val & 0xff;
		else if (name == IP_TTL)
			cs->ip_ttl = val < 0 ? 64 : val;
		else if (name != IP_RECVERR && name != IP_MTU_DISCOVER && name != IP_BIND_ADDRESS_NO_PORT)
			return -ENOPROTOOPT;
		return 0;
	}
	if (!tcp_opt_known(name))
		return -ENOPROTOOPT;
	switch (name) {
	case TCP_KEEPIDLE:
	case TCP_KEEPINTVL:
		if (val < 1 || val > 32767)
			return -EINVAL;
		break;
	case TCP_KEEPCNT:
		if (val < 1 || val > 127)
			return -EINVAL;
		break;
	case TCP_NODELAY:
	case TCP_CORK:
	case TCP_QUICKACK:
	case TCP_THIN_LINEAR_TIMEOUTS:
	case TCP_FASTOPEN_CONNECT:
		val = !!val;
		break;
	}
	WRITE_ONCE(cs->tcp_opt[name], val);
	return 0;
}

int cn_getsockopt(struct socket *sock, int level, int name, char __user *optval,
		  int __user *optlen)
{
	struct cn_sock *cs = cn_sk(sock->sk);
	int len, val;

	if (get_user(len, optlen))
		return -EFAULT;
	if (len < 0)
		return -EINVAL;
	if (level == SOL_TCP && sock->type != SOCK_STREAM)
		return -ENOPROTOOPT;
	if (level == SOL_TCP && name == TCP_INFO) {
		struct tcp_info info = { .tcpi_state = cs->sk.sk_state };

		len = min_t(int, len, sizeof(info));
		if (put_user(len, optlen) || copy_to_user(optval, &info, len))
			return -EFAULT;
		return 0;
	}
	if (level == SOL_TCP && name == TCP_CONGESTION) {
		static const char name_buf[16] = "cubic";

		len = min_t(int, len, sizeof(name_buf));
		if (put_user(len, optlen) || copy_to_user(optval, name_buf, len))
			return -EFAULT;
		return 0;
	}
	if (level == SOL_IP && (name == IP_TOS || name == IP_TTL))
		val = name == IP_TOS ? cs->ip_tos : cs->ip_ttl;
	else if (level == SOL_IPV6 && sock->sk->sk_family == AF_INET6 && name == IPV6_V6ONLY)
		val = cs->v6only;
	else if (level == SOL_IPV6 && sock->sk->sk_family == AF_INET6 && name == IPV6_TCLASS)
		val = 0;
	else if (level == SOL_IPV6 && sock->sk->sk_family == AF_INET6 && name == IPV6_UNICAST_HOPS)
		val = 64;
	else if (level == SOL_TCP && tcp_opt_known(name))
		val = READ_ONCE(cs->tcp_opt[name]);
	else
		return -ENOPROTOOPT;
	len = min_t(int, len, sizeof(int));
	if (put_user(len, optlen) || copy_to_user(optval, &val, len))
		return -EFAULT;
	return 0;
}

/* ---- release and create ---- */

static void cn_listener_close(struct cn_sock *cs)
{
	struct cn_sock *child;
	struct cn_msg_id m;

	spin_lock(&cn_lock);
	spin_lock(&cs->lock);
	list_del_init(&cs->lnode);
	cs->sk.sk_state = TCP_CLOSE;
	spin_unlock(&cs->lock);
	spin_unlock(&cn_lock);
	cn_msg_init(&m.h, CN_MSG_UNLISTEN, sizeof(m), 0);
	m.id = cs->listener_id;
	cn_ctl_notify(&m.h); /* its OK is dropped: nobody waits for it */
	/* TCP resets connections that were never accepted */
	while ((child = accq_pop(cs)))
		cn_child_free(child, true);
}

static int cn_release(struct socket *sock)
{
	struct sock *sk = sock->sk;
	struct cn_sock *cs;
	bool linger0;

	if (!sk)
		return 0;
	cs = cn_sk(sk);
	/*
	 * Dead first, under the lock connect_done takes: a CONNECT still in
	 * flight then finds nobody and gives its circuit back itself (it
	 * holds its own reference to the socket until it ran).
	 */
	spin_lock(&cs->lock);
	sock_set_flag(sk, SOCK_DEAD);
	spin_unlock(&cs->lock);
	if (sk->sk_state == TCP_LISTEN)
		cn_listener_close(cs);
	linger0 = sock_flag(sk, SOCK_LINGER) && !sk->sk_lingertime;
	cn_sock_drop_circuit(cs, linger0);
	sock_orphan(sk);
	sock->sk = NULL;
	sock_put(sk);
	return 0;
}

#define CN_STREAM_OPS(fam)					\
	{							\
		.family = fam,					\
		.owner = THIS_MODULE,				\
		.release = cn_release,				\
		.bind = cn_bind,				\
		.connect = cn_connect,				\
		.socketpair = sock_no_socketpair,		\
		.accept = cn_accept,				\
		.getname = cn_getname,				\
		.poll = cn_sock_poll,				\
		.ioctl = cn_ioctl,				\
		.listen = cn_listen,				\
		.shutdown = cn_sock_shutdown,			\
		.setsockopt = cn_setsockopt,			\
		.getsockopt = cn_getsockopt,			\
		.sendmsg = cn_sendmsg,				\
		.recvmsg = cn_recvmsg,				\
		.mmap = sock_no_mmap,				\
		.sendpage = sock_no_sendpage,			\
	}

static const struct proto_ops cn_stream_ops = CN_STREAM_OPS(PF_INET);
static const struct proto_ops cn_stream6_ops = CN_STREAM_OPS(PF_INET6);

/* The families we stand in for: the kernel's, then ours. */
static struct cn_family {
	int family;
	const char *symbol;
	const struct net_proto_family *orig;
	struct net_proto_family ours;
	bool taken;
} cn_families[2];

static int cn_create(struct cn_family *f, struct net *net, struct socket *sock, int protocol,
		     int kern)
{
	bool stream = sock->type == SOCK_STREAM && (!protocol || protocol == IPPROTO_TCP);
	bool dgram = sock->type == SOCK_DGRAM && (!protocol || protocol == IPPROTO_UDP);
	bool v6 = f->family == PF_INET6;
	struct sock *sk;

	/*
	 * Other network namespaces (containers in the VM) keep the kernel's
	 * sockets: a circuit would bypass what isolates them.
	 */
	if (kern || !(stream || dgram) || !net_eq(net, &init_net) || !cn_ctl_ready())
		return f->orig->create(net, sock, protocol, kern);
	sk = cn_sk_alloc(net, sock, f->family, sock->type, kern);
	if (!sk)
		return -ENOBUFS;
	if (stream)
		sock->ops = v6 ? &cn_stream6_ops : &cn_stream_ops;
	else
		sock->ops = v6 ? &cn_dgram6_ops : &cn_dgram_ops;
	sock->state = SS_UNCONNECTED;
	if (dgram)
		cn_udp_created(cn_sk(sk));
	return 0;
}

static int cn_inet_create(struct net *net, struct socket *sock, int protocol, int kern)
{
	return cn_create(&cn_families[0], net, sock, protocol, kern);
}

static int cn_inet6_create(struct net *net, struct socket *sock, int protocol, int kern)
{
	return cn_create(&cn_families[1], net, sock, protocol, kern);
}

static struct cn_family cn_families[2] = {
	{ .family = PF_INET, .symbol = "inet_family_ops",
	  .ours = { .family = PF_INET, .create = cn_inet_create, .owner = THIS_MODULE } },
	{ .family = PF_INET6, .symbol = "inet6_family_ops",
	  .ours = { .family = PF_INET6, .create = cn_inet6_create, .owner = THIS_MODULE } },
};

/*
 * kallsyms_lookup_name is not exported since 5.7; a kprobe on it says
 * where it is. Used once, at load, to find the families we stand in for.
 */
static unsigned long cn_lookup(const char *name)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long (*lookup)(const char *name);

	if (register_kprobe(&kp) < 0)
		return 0;
	lookup = (unsigned long (*)(const char *))kp.addr;
	unregister_kprobe(&kp);
	return lookup ? lookup(name) : 0;
}

static void cn_family_give_back(struct cn_family *f)
{
	if (!f->taken)
		return;
	sock_unregister(f->family);
	sock_register(f->orig);
	f->taken = false;
}

static int cn_family_take(struct cn_family *f)
{
	const struct net_proto_family *orig =
		(const struct net_proto_family *)cn_lookup(f->symbol);
	int err;

	if (!orig || orig->family != f->family || !orig->create) {
		pr_err("circnet: cannot find the kernel's %s: sockets stay the kernel's\n",
		       f->symbol);
		return -ENOENT;
	}
	f->orig = orig;
	sock_unregister(f->family);
	err = sock_register(&f->ours);
	if (err) {
		sock_register(orig);
		return err;
	}
	f->taken = true;
	return 0;
}

int cn_sock_init(void)
{
	int err;

	if (!cn_sockets)
		return 0;
	err = proto_register(&cn_proto, 0);
	if (err)
		return err;
	err = cn_family_take(&cn_families[0]);
	if (!err) {
		err = cn_family_take(&cn_families[1]);
		if (err)
			cn_family_give_back(&cn_families[0]);
	}
	if (err)
		proto_unregister(&cn_proto);
	return err;
}

void cn_sock_exit(void)
{
	if (!cn_families[0].taken)
		return;
	cn_family_give_back(&cn_families[1]);
	cn_family_give_back(&cn_families[0]);
	proto_unregister(&cn_proto);
}
