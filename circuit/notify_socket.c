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
 * (kick: another thread reset or shut down the endpoint) go through a
 * private eventfd that wait() polls as well. Event loops that poll the
 * notifier fd themselves do not need it: they own their wake-ups.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <circnet/notify.h>

#define CN_DRAIN_MAX 64 /* messages read per drain; leftovers only wake us early */

static int sock_signal(struct cn_notifier *n)
{
	static const char tick = 1;

	if (send(n->fd, &tick, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
		return 0;
	/* Full queue: a wake-up is pending. Gone peer: nobody to wake. */
	if (errno == EAGAIN || errno == ENOBUFS || errno == EPIPE || errno == ECONNREFUSED ||
	    errno == ECONNRESET)
		return 0;
	return -errno;
}

static void sock_drain(struct cn_notifier *n)
{
	uint64_t v;
	char buf[16];
	int i;

	for (i = 0; i < CN_DRAIN_MAX; i++)
		if (recv(n->fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
	if (n->aux_fd >= 0 && read(n->aux_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
}

static int sock_wait(struct cn_notifier *n, int timeout_ms)
{
	struct pollfd p[2] = { { .fd = n->fd, .events = POLLIN },
			       { .fd = n->aux_fd, .events = POLLIN } };
	int r = poll(p, n->aux_fd >= 0 ? 2 : 1, timeout_ms);

	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	/*
	 * Read only what poll reported, one message: a waker sends only when
	 * it cleared our want flag, so one is pending per sleep. A leftover
	 * merely ends the next sleep early, and the caller re-checks anyway.
	 */
	if (p[0].revents & POLLIN) {
		char buf[16];

		/*
		 * A peer that closed its end with wake-ups of ours still queued
		 * at it leaves ECONNRESET on our end: it is gone, like a hang-up.
		 */
		if (recv(n->fd, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno != EAGAIN)
			return errno == ECONNRESET || errno == EPIPE ? -EPIPE : -errno;
	}
	if (p[1].revents & POLLIN) {
		uint64_t v;

		if (read(n->aux_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return -errno;
	}
	if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL))
		return -EPIPE; /* the other end is gone for good */
	return 0;
}

static int sock_kick(struct cn_notifier *n)
{
	uint64_t one = 1;

	if (n->aux_fd < 0)
		return 0; /* signal-only: nobody ever sleeps on it */
	if (write(n->aux_fd, &one, sizeof(one)) == sizeof(one) || errno == EAGAIN)
		return 0;
	return -errno;
}

static void sock_release(struct cn_notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
	if (n->aux_fd >= 0)
		close(n->aux_fd);
}

static const struct cn_notifier_ops socket_ops = {
	.signal = sock_signal,
	.wait = sock_wait,
	.drain = sock_drain,
	.release = sock_release,
	.kick = sock_kick,
};

int cn_socket_notifier_init_flags(struct cn_notifier *n, int fd, unsigned int flags)
{
	socklen_t len = sizeof(int);
	int type;

	/* ENOTSOCK for anything that is not a socket */
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
		return -EINVAL;
	if (flags & ~CN_NOTIFIER_SIGNAL_ONLY)
		return -EINVAL;
	n->aux_fd = -1;
	if (!(flags & CN_NOTIFIER_SIGNAL_ONLY)) {
		n->aux_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (n->aux_fd < 0)
			return -errno;
	}
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
