/* SPDX-License-Identifier: MIT */
/*
 * circuit/kick.h - the calling thread's kick eventfd (kick.c), for the
 * socket notifier: made on the thread's first sleep, from a process-wide
 * pool that never closes one.
 */
#ifndef CIRCNET_KICK_H
#define CIRCNET_KICK_H

/* The calling thread's kick eventfd (nonblocking, hidden), or -errno. */
int cn_kick_fd(void);

#endif /* CIRCNET_KICK_H */
