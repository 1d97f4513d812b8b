/* SPDX-License-Identifier: MIT */
/*
 * circnet/notify.h - wake-up objects behind one interface.
 *
 * A circuit endpoint sleeps on its own notifier and signals its peer's. The
 * ring layer only calls these ops, so an ivshmem doorbell or a Xen event
 * channel can replace the eventfd without touching circuit code.
 *
 * Two implementations, both pollable (cn_notifier_fd) and passable over
 * SCM_RIGHTS:
 *  - socket (default of the local transport): each holder has its own end of
 *    a SOCK_SEQPACKET socketpair, so a peer can neither drain our doorbell
 *    nor make our signal block, and its disappearance is seen (-EPIPE);
 *  - eventfd: one shared object, cheaper, for peers that are trusted (both
 *    ends in one process, the host's own proxy stack). A hostile holder of
 *    a shared eventfd could drain it, or saturate it and clear O_NONBLOCK on
 *    the shared file description so that signalling blocks.
 */
#ifndef CIRCNET_NOTIFY_H
#define CIRCNET_NOTIFY_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

struct cn_notifier;

struct cn_notifier_ops {
	/* Deliver one wake-up. Never blocks. 0 or -errno. */
	int (*signal)(struct cn_notifier *n);
	/* Sleep until signalled or timeout_ms passes (-1: forever). Consumes
	 * pending wake-ups. 0 when signalled, -ETIMEDOUT, -EINTR, -EPIPE when
	 * the signalling side is gone for good (it will never signal again). */
	int (*wait)(struct cn_notifier *n, int timeout_ms);
	/* Consume pending wake-ups without sleeping. */
	void (*drain)(struct cn_notifier *n);
	/* Wake a thread of this process sleeping in wait() on this notifier,
	 * without signalling anyone else (local shutdown, reset). Never blocks. */
	int (*kick)(struct cn_notifier *n);
	/* Release resources (close the fd). */
	void (*release)(struct cn_notifier *n);
};

struct cn_notifier {
	const struct cn_notifier_ops *ops;
	int fd; /* pollable fd that turns readable on signal, or -1 */
	/*
	 * Implementation-private, atomic. Socket notifier: the kick eventfd of
	 * the thread sleeping in wait() now, or -1. Kick eventfds are per
	 * thread (circuit/kick.c), not per notifier: event loops never sleep
	 * in wait(), and a socket should cost them no more than its fds.
	 */
	int aux_fd;
	int kick_pending; /* atomic: a kick that found no sleeper, for the next wait() */
	/* Implementation-private: the ivshmem notifier's doorbell and vector (vm.h). */
	uint32_t doorbell;
	uint32_t vector;
};

/*
 * Called for each private fd circnet opens on its own, outside any call
 * that returns it (a thread's kick eventfd, a chunk's memfd): on = true
 * once it is open, before anyone else can see it; on = false just before
 * it is closed. The socket preload hides such fds from the application.
 * NULL (the default): nobody is told.
 */
extern void (*cn_private_fd_hook)(int fd, bool on);

/* Wrap an eventfd (takes ownership). fd < 0 creates a new one. 0 or -errno. */
int cn_eventfd_notifier_init(struct cn_notifier *n, int fd);

/*
 * Where circnet puts the fds it opens or receives for itself (notifier
 * eventfds, operator sessions, memfds): at the lowest free number >=
 * cn_fd_floor, or where the kernel puts them when none is free up there.
 * 0 (the default) changes nothing. The socket preload raises it so that its
 * hidden fds stay out of the low numbers applications size their tables by
 * (select's FD_SETSIZE, event loops sized to the connections they expect).
 */
extern int cn_fd_floor;

/* fd moved to cn_fd_floor or above (the old number closed); fd itself if it cannot be. */
int cn_fd_lift(int fd);

/* Wrap one end of a SOCK_SEQPACKET socketpair (takes ownership); -EINVAL otherwise. */
int cn_socket_notifier_init(struct cn_notifier *n, int fd);
/*
 * The same with flags. CN_NOTIFIER_SIGNAL_ONLY: we only ever signal through
 * it (it wakes the peer) and never wait on it. It once saved the notifier's
 * kick eventfd; kick eventfds are per sleeping thread now, so no notifier
 * makes one and the flag changes nothing (still accepted).
 */
#define CN_NOTIFIER_SIGNAL_ONLY 0x1u
int cn_socket_notifier_init_flags(struct cn_notifier *n, int fd, unsigned int flags);

/* A new pair for the socket notifier: the sleeper keeps fds[0], the waker fds[1]. */
int cn_socket_notifier_pair(int fds[2]);

/*
 * Process-wide: from now on socket notifiers signal and drain with plain
 * write()/read() (after a zero-timeout poll) instead of send()/recv() with
 * per-call flags. For processes that put themselves under a seccomp filter
 * allowing only the basic calls (OpenSSH's pre-authentication sandbox kills
 * on sendto). Costs a poll per signal and per drained message. One way.
 */
void cn_socket_notifier_plain_io(void);

static inline int cn_notifier_signal(struct cn_notifier *n)
{
	return n->ops ? n->ops->signal(n) : 0;
}

static inline int cn_notifier_wait(struct cn_notifier *n, int timeout_ms)
{
	return n->ops ? n->ops->wait(n, timeout_ms) : -ENOTCONN;
}

static inline int cn_notifier_kick(struct cn_notifier *n)
{
	return n->ops ? n->ops->kick(n) : 0;
}

static inline void cn_notifier_drain(struct cn_notifier *n)
{
	if (n->ops)
		n->ops->drain(n);
}

static inline void cn_notifier_release(struct cn_notifier *n)
{
	if (n->ops)
		n->ops->release(n);
	n->ops = NULL;
	n->fd = -1;
	n->aux_fd = -1;
}

static inline int cn_notifier_fd(const struct cn_notifier *n)
{
	return n->fd;
}

/*
 * Open now the calling thread's kick eventfd, which its first sleep in a
 * socket notifier would open: for a process about to enter a sandbox that
 * forbids creating fds. 0 or -errno.
 */
int cn_kick_prepare(void);

#endif /* CIRCNET_NOTIFY_H */
