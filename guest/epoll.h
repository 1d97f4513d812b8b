/* SPDX-License-Identifier: MIT */
/*
 * guest/epoll.h - epoll emulation for circuit sockets (epoll.c owns it; the
 * libc entry points epoll_ctl, epoll_wait and epoll_pwait live there too).
 */
#ifndef CIRCNET_GUEST_EPOLL_H
#define CIRCNET_GUEST_EPOLL_H

#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>

#include "sock.h"

/* *handled false: not a circuit fd, the kernel's epoll_ctl applies. 0 or -errno. */
int ep_ctl(int epfd, int op, int fd, struct epoll_event *ev, bool *handled);
/* *handled false: no circuit in this instance. Events or -errno. */
int ep_wait(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *mask,
	    bool *handled);
/*
 * fd is about to be closed: an epoll instance loses its shadow; the last fd
 * of a circuit socket leaves every instance it was in.
 */
void ep_note_close(int fd, struct csock *cs, bool last_ref);

#endif
