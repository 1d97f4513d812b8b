/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * sock.h - what the socket files share: struct cn_sock, the lists the
 * control thread searches, and the helpers both kinds of socket use.
 * sock.c owns stream sockets and the family, udp.c datagram sockets.
 */
#ifndef CIRCNET_KMOD_SOCK_H
#define CIRCNET_KMOD_SOCK_H

#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <net/sock.h>

#include "circnet.h"

#define CN_TCP_OPTS 32

struct cn_sock {
	/*
	 * First: sk_alloc's object. Kernel code that sees IPPROTO_TCP or
	 * IPPROTO_UDP may read tcp_sk()/udp_sk() fields (SO_TIMESTAMPING's
	 * OPT_ID does): they are there, and zero (cn_sk_alloc).
	 */
	union {
		struct sock sk;
		struct tcp_sock tcp;
		struct udp_sock udp;
	};
	spinlock_t lock;
	struct mutex rx_lock, tx_lock;
	struct cn_kcirc *kc; /* stream: the circuit, connected, accepted, or queued */
	u64 circuit_id;
	struct cn_addr local, remote;
	bool pending; /* an off-host connect the proxy stack has not settled */
	bool creq_busy;
	struct cn_req creq; /* CONNECT in flight */
	u64 listener_id; /* a listener's, or a datagram socket's binding */
	struct list_head lnode; /* in cn_listeners */
	struct list_head cnode; /* in cn_conns while kc is set; datagram: in cn_udp_socks */
	struct list_head accq;	/* listener: accepted by the operator, not by accept() */
	struct list_head qnode; /* in the listener's accq */
	int tcp_opt[CN_TCP_OPTS];
	int ip_tos, ip_ttl;
	bool v6only; /* IPV6_V6ONLY: an AF_INET6 socket that takes IPv6 only */
	bool is_local; /* its circuit is to a socket of this VM: the operator never knew it */
	/* datagram sockets (udp.c): a circuit per peer, under lock */
	struct list_head peers;
	struct cn_addr dflt; /* connect()'s peer: family CN_AF_NONE if none */
};

static inline struct cn_sock *cn_sk(struct sock *sk)
{
	return container_of(sk, struct cn_sock, sk);
}

/* sock.c, guarded by cn_lock */
extern struct list_head cn_listeners;
extern spinlock_t cn_lock;

void cn_sock_wake(void *arg);
int cn_errno(long err);
/*
 * Socket addresses of a socket of family fam (AF_INET or AF_INET6). An
 * AF_INET6 socket is dual-stack: v4-mapped addresses are IPv4 to the
 * operator and show as v4-mapped again. from_user: 0 with *a set, or the
 * errno the call returns; to_user: the length written (uaddr is a
 * sockaddr_storage).
 */
int cn_addr_from_user(int fam, const struct sockaddr *uaddr, int len, struct cn_addr *a);
int cn_addr_to_user(int fam, const struct cn_addr *a, struct sockaddr *uaddr);
bool cn_addr_same(const struct cn_addr *a, const struct cn_addr *b);
struct sock *cn_sk_alloc(struct net *net, struct socket *sock, int family, int type, int kern);
/* A bind()'s address: 0 with *a set, or the errno bind() returns. */
int cn_bind_addr(struct sock *sk, struct sockaddr *uaddr, int len, struct cn_addr *a);
__poll_t cn_poll_mask(unsigned int ev);
/* Sleep until ready(cs, arg) or *timeo runs out: 0, -EAGAIN or the signal's error. */
int cn_wait(struct cn_sock *cs, bool (*ready)(struct cn_sock *, void *), void *arg, long *timeo);
int cn_setsockopt(struct socket *sock, int level, int name, sockptr_t optval,
		  unsigned int optlen);
int cn_getsockopt(struct socket *sock, int level, int name, char __user *optval,
		  int __user *optlen);

/* udp.c */
extern const struct proto_ops cn_dgram_ops, cn_dgram6_ops;
void cn_udp_new_peer(struct cn_sock *ls, const struct cn_msg_circuit *m);
void cn_udp_reset(u64 circuit_id);
void cn_udp_device_gone(struct cnv_dev *d);
void cn_udp_created(struct cn_sock *cs);

#endif /* CIRCNET_KMOD_SOCK_H */
