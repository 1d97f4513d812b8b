// SPDX-License-Identifier: MIT
/*
 * circuit/notify_eventfd.c - the eventfd notifier: signal = write(1),
 * wait = poll + read. Non-blocking, so a saturated counter (EAGAIN) simply
 * means a wake-up is already pending. poll() wakes every thread sleeping on
 * the fd, and a thread that drains the counter re-checks its ring before it
 * sleeps again, so no wake-up is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <circnet/notify.h>

static int efd_signal(struct cn_notifier *n)
{
	uint64_t one = 1;

	if (write(n->fd, &one, sizeof(one)) == sizeof(one) || errno == EAGAIN)
		return 0;
	return -errno;
}

static void efd_drain(struct cn_notifier *n)
{
	uint64_t v;

	/* One read resets a non-semaphore eventfd to zero. */
	if (read(n->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
}

static int efd_wait(struct cn_notifier *n, int timeout_ms)
{
	struct pollfd p = { .fd = n->fd, .events = POLLIN };
	int r = poll(&p, 1, timeout_ms);

	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	efd_drain(n);
	return 0;
}

static void efd_release(struct cn_notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
}

static const struct cn_notifier_ops eventfd_ops = {
	.signal = efd_signal,
	.wait = efd_wait,
	.drain = efd_drain,
	.release = efd_release,
	.kick = efd_signal, /* one object: a signal to ourselves is a kick */
};

int cn_eventfd_notifier_init(struct cn_notifier *n, int fd)
{
	int fl;

	if (fd < 0) {
		fd = cn_fd_lift(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
		if (fd < 0)
			return -errno;
	} else {
		char link[64], path[32];
		ssize_t n_;

		/* Refuse what is visibly not an eventfd (when /proc can tell). */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n_ = readlink(path, link, sizeof(link) - 1);
		if (n_ > 0) {
			link[n_] = 0;
			if (strcmp(link, "anon_inode:[eventfd]"))
				return -EINVAL;
		}
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return -errno;
	}
	n->ops = &eventfd_ops;
	n->fd = fd;
	n->aux_fd = -1;
	return 0;
}
