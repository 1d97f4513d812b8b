// SPDX-License-Identifier: MIT
/*
 * circuit/notify_socket.c - the socket notifier: one end of an AF_UNIX
 * SOCK_SEQPACKET socketpair per notifier holder. The sleeper holds one end
 * and waits on it; the peer holds the other end and signals by sending a
 * byte. Against the eventfd notifier this buys isolation:
 *  - the peer cannot drain our doorbell: it holds a different file;
 *  - signalling can never block: MSG_DONTWAIT applies per call, whatever a
 *    peer does to file status flags, and a full queue (EAGAIN) already
 *    means "a wake-up is pending";
 *  - a peer that is gone for good (exited, killed, closed its end) shows up
 *    as POLLHUP, and wait() reports it as -EPIPE instead of sleeping forever.
 * The kernel caps the queue (a few hundred messages), so a flooding peer
 * costs us at most one bounded drain per wake-up.
 *
 * Sending on our own end reaches the peer, never us, so local wake-ups
 * (kick: another thread reset or shut down the endpoint) go through the
 * sleeping thread's own kick eventfd (kick.c), which wait() polls as well
 * and publishes in aux_fd while it sleeps. A kick that finds no sleeper
 * leaves kick_pending for the next wait(). Event loops that poll the
 * notifier fd themselves never sleep in wait() and pay nothing for this.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <circnet/notify.h>

#include "kick.h"

#define CN_DRAIN_MAX 64 /* messages read per drain; leftovers only wake us early */

/*
 * Plain-I/O mode (see notify.h). write() has no per-call MSG_DONTWAIT or
 * MSG_NOSIGNAL, and the file's O_NONBLOCK is shared with the application's
 * view of a socket (the preload hands out dups of doorbells), so every
 * write or read is preceded by a zero-timeout poll saying it cannot block
 * and that the peer's end is still there (no SIGPIPE).
 */
static atomic_bool plain_io;

void cn_socket_notifier_plain_io(void)
{
	atomic_store_explicit(&plain_io, true, memory_order_relaxed);
}

static bool plain(void)
{
	return atomic_load_explicit(&plain_io, memory_order_relaxed);
}

/* Zero-timeout poll of the notifier fd for `events`; its revents, or 0. */
static short poll_now(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	return poll(&p, 1, 0) == 1 ? p.revents : 0;
}

static int plain_signal(struct cn_notifier *n)
{
	static const char tick = 1;
	short rev = poll_now(n->fd, POLLOUT);

	/* gone peer: nobody to wake; no room: a wake-up is pending */
	if ((rev & (POLLHUP | POLLERR | POLLNVAL)) || !(rev & POLLOUT))
		return 0;
	if (write(n->fd, &tick, 1) == 1 || errno == EAGAIN || errno == EPIPE ||
	    errno == ECONNRESET || errno == ENOBUFS)
		return 0;
	return -errno;
}

/* One queued message, if poll says one is there: > 0 read, 0 none, < 0 error. */
static ssize_t take_one(int fd, void *buf, size_t len)
{
	if (!plain())
		return recv(fd, buf, len, MSG_DONTWAIT);
	if (!(poll_now(fd, POLLIN) & POLLIN))
		return 0;
	return read(fd, buf, len);
}

static int sock_signal(struct cn_notifier *n)
{
	static const char tick = 1;

	if (plain())
		return plain_signal(n);
	if (send(n->fd, &tick, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
		return 0;
	/* Full queue: a wake-up is pending. Gone peer: nobody to wake. */
	if (errno == EAGAIN || errno == ENOBUFS || errno == EPIPE || errno == ECONNREFUSED ||
	    errno == ECONNRESET)
		return 0;
	return -errno;
}

void (*cn_private_fd_hook)(int fd, bool on);

static void sock_drain(struct cn_notifier *n)
{
	char buf[16];
	int i;

	for (i = 0; i < CN_DRAIN_MAX; i++)
		if (take_one(n->fd, buf, sizeof(buf)) <= 0)
			break;
	__atomic_store_n(&n->kick_pending, 0, __ATOMIC_SEQ_CST);
}

static int sock_wait(struct cn_notifier *n, int timeout_ms)
{
	struct pollfd p = { .fd = n->fd, .events = POLLIN };
	int r = cn_kick_sleep(n, &p, timeout_ms);

	if (r < 0)
		return r;
	if (r == 0)
		return -ETIMEDOUT;
	/*
	 * Read only what poll reported, one message: a waker sends only when
	 * it cleared our want flag, so one is pending per sleep. A leftover
	 * merely ends the next sleep early, and the caller re-checks anyway.
	 */
	if (p.revents & POLLIN) {
		char buf[16];

		/*
		 * A peer that closed its end with wake-ups of ours still queued
		 * at it leaves ECONNRESET on our end: it is gone, like a hang-up.
		 */
		if (take_one(n->fd, buf, sizeof(buf)) < 0 && errno != EAGAIN)
			return errno == ECONNRESET || errno == EPIPE ? -EPIPE : -errno;
	}
	if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
		return -EPIPE; /* the other end is gone for good */
	return 0;
}

static void sock_release(struct cn_notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
}

static const struct cn_notifier_ops socket_ops = {
	.signal = sock_signal,
	.wait = sock_wait,
	.drain = sock_drain,
	.release = sock_release,
	.kick = cn_kick_sleeper,
};

int cn_fd_floor;

int cn_fd_lift(int fd)
{
	int moved;

	if (fd < 0 || cn_fd_floor <= 0 || fd >= cn_fd_floor)
		return fd;
	moved = fcntl(fd, F_DUPFD_CLOEXEC, cn_fd_floor);
	if (moved < 0)
		return fd; /* the high range is full: stay where the kernel put it */
	close(fd);
	return moved;
}

int cn_socket_notifier_init_flags(struct cn_notifier *n, int fd, unsigned int flags)
{
	socklen_t len = sizeof(int);
	int type;

	/* ENOTSOCK for anything that is not a socket */
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
		return -EINVAL;
	if (flags & ~CN_NOTIFIER_SIGNAL_ONLY)
		return -EINVAL;
	/* signal-only or not, nothing is made now: sleepers bring their kick fd */
	n->aux_fd = -1;
	n->kick_pending = 0;
	n->ops = &socket_ops;
	n->fd = fd;
	return 0;
}

int cn_socket_notifier_init(struct cn_notifier *n, int fd)
{
	return cn_socket_notifier_init_flags(n, fd, 0);
}

int cn_socket_notifier_pair(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
		return -errno;
	return 0;
}
