/* SPDX-License-Identifier: MIT */
/*
 * circuit/kick.h - the calling thread's kick eventfd (kick.c), for the
 * socket notifier: made on the thread's first sleep, from a process-wide
 * pool that never closes one.
 */
#ifndef CIRCNET_KICK_H
#define CIRCNET_KICK_H

#include <poll.h>

#include <circnet/notify.h>

/* The calling thread's kick eventfd (nonblocking, hidden), or -errno. */
int cn_kick_fd(void);

/*
 * Sleep as n's sleeper on p (one pollfd, the notifier's own wake-up fd)
 * and this thread's kick eventfd, up to timeout_ms (-1: forever). A kick
 * (cn_kick_sleeper) ends it, also one made before the sleep began. Returns
 * poll's count (> 0: look at p->revents, which may be 0 after a kick),
 * 0 on timeout, or -errno. With no kick eventfd to be had, the sleep is
 * cut in slices and a slice's end counts as a wake-up: callers re-check.
 */
int cn_kick_sleep(struct cn_notifier *n, struct pollfd *p, int timeout_ms);

/* The kick op of notifiers whose sleepers use cn_kick_sleep(). */
int cn_kick_sleeper(struct cn_notifier *n);

#endif /* CIRCNET_KICK_H */
