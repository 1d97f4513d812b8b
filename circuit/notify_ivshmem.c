// SPDX-License-Identifier: MIT
/*
 * circuit/notify_ivshmem.c - the notifier of a VM's ivshmem device, for
 * user space in the VM (circnet/vm.h): wait = sleep on one MSI-X vector of
 * the device (the guest module counts its interrupts), signal = ring a
 * peer's doorbell (an eventfd on the host: the operator's or a host peer's).
 *
 * Each notifier reads through an open file of its own that watches its
 * one vector (CN_IVSHMEM_IOC_WATCH): the module keeps a "seen" count per
 * vector and per open file, so a read by one notifier never consumes
 * another's wake-up, and an interrupt wakes only its vector's sleeper.
 *
 * Local kicks use the sleeping thread's kick eventfd (kick.c), as the
 * socket notifier does.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <circnet/ivshmem.h>
#include <circnet/vm.h>

#include "kick.h"

static int ivs_signal(struct cn_notifier *n)
{
	__u32 bell = n->doorbell;

	return ioctl(n->fd, CN_IVSHMEM_IOC_RING, &bell) < 0 ? -errno : 0;
}

/* 1: our vector fired; 0: nothing (for us) pending; -errno: the device is gone. */
static int take_bits(struct cn_notifier *n)
{
	uint64_t bits;
	ssize_t r = read(n->fd, &bits, sizeof(bits));

	if (r == (ssize_t)sizeof(bits))
		return (bits >> n->vector) & 1;
	if (r < 0 && errno == EAGAIN)
		return 0;
	return r < 0 ? -errno : -EIO;
}

static void ivs_drain(struct cn_notifier *n)
{
	while (take_bits(n) > 0)
		;
	__atomic_store_n(&n->kick_pending, 0, __ATOMIC_SEQ_CST);
}

static int ivs_wait(struct cn_notifier *n, int timeout_ms)
{
	struct pollfd p = { .fd = n->fd, .events = POLLIN };
	int r = cn_kick_sleep(n, &p, timeout_ms);

	if (r < 0)
		return r;
	if (r == 0)
		return -ETIMEDOUT;
	if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
		return -EPIPE; /* the device is gone */
	if (p.revents & POLLIN) {
		r = take_bits(n);
		if (r == -ENODEV)
			return -EPIPE;
		if (r < 0)
			return r;
	}
	/* a kick or a slice: the caller re-checks its ring */
	return 0;
}

static void ivs_release(struct cn_notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
}

static const struct cn_notifier_ops ivshmem_ops = {
	.signal = ivs_signal,
	.wait = ivs_wait,
	.drain = ivs_drain,
	.release = ivs_release,
	.kick = cn_kick_sleeper,
};

int cn_ivshmem_notifier_init(struct cn_notifier *n, int devfd, unsigned int wait_vector,
			     uint32_t doorbell)
{
	struct cn_ivshmem_info info;
	__u64 watch;

	if (ioctl(devfd, CN_IVSHMEM_IOC_INFO, &info) < 0)
		return -errno;
	if (wait_vector >= info.vectors || wait_vector >= CN_IVSHMEM_MAX_VECTORS)
		return -EINVAL;
	watch = 1ull << wait_vector;
	/* our vector only: the others' interrupts neither wake nor concern us */
	if (ioctl(devfd, CN_IVSHMEM_IOC_WATCH, &watch) < 0)
		return -errno;
	n->ops = &ivshmem_ops;
	n->fd = devfd;
	n->aux_fd = -1;
	n->kick_pending = 0;
	n->vector = wait_vector;
	n->doorbell = doorbell;
	return 0;
}
