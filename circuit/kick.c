// SPDX-License-Identifier: MIT
/*
 * circuit/kick.c - the eventfds that end a thread's sleep on a socket
 * notifier from inside its own process (another thread reset or shut the
 * endpoint down): one per sleeping thread, not one per socket.
 *
 * Why per thread: a thread sleeps on one notifier at a time, and a notifier
 * has at most one sleeper (receivers and senders are serialised), so an
 * eventfd per notifier is one per socket that almost never rings, and event
 * loops, which never sleep in a notifier at all, would pay it too.
 *
 * Why a pool that never closes: a kicker reads the sleeper's eventfd and
 * writes it a moment later; if the sleeper's thread had exited and the fd
 * were closed, the number could name an unrelated file by then. Pooled fds
 * stay open, so a late kick at worst ends some thread's sleep early, which
 * every caller of wait() re-checks anyway. The pool holds as many eventfds
 * as threads ever slept at once.
 *
 * After fork the child shares the parent's eventfds: a kick in one process
 * could be drained by the other. The child forgets (closes) them all and
 * makes its own on demand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <circnet/notify.h>

#include "kick.h"

static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t kick_once = PTHREAD_ONCE_INIT;
static pthread_key_t kick_key;
static int *pool_all, *pool_free; /* every eventfd made; those no thread has */
static unsigned int nall, nfree, cap;
static __thread int my_kick = -1;
static __thread unsigned int my_gen; /* the pool generation my_kick is from */
static unsigned int pool_gen;	     /* bumped in a forked child */

/* A thread ends: its eventfd goes back to the pool (the value is fd + 1). */
static void kick_thread_exit(void *v)
{
	int fd = (int)(intptr_t)v - 1;

	pthread_mutex_lock(&kick_lock);
	if (fd >= 0 && my_gen == pool_gen && nfree < cap)
		pool_free[nfree++] = fd;
	pthread_mutex_unlock(&kick_lock);
}

/* Held across fork, so the child's copy of the pool is never caught half-changed. */
static void kick_atfork_prepare(void)
{
	pthread_mutex_lock(&kick_lock);
}

static void kick_atfork_parent(void)
{
	pthread_mutex_unlock(&kick_lock);
}

static void kick_atfork_child(void)
{
	unsigned int i;

	pthread_mutex_init(&kick_lock, NULL);
	for (i = 0; i < nall; i++) {
		if (cn_private_fd_hook)
			cn_private_fd_hook(pool_all[i], false);
		close(pool_all[i]);
	}
	nall = nfree = 0;
	pool_gen++;
	my_kick = -1;
	pthread_setspecific(kick_key, NULL);
}

static void kick_init_once(void)
{
	pthread_key_create(&kick_key, kick_thread_exit);
	pthread_atfork(kick_atfork_prepare, kick_atfork_parent, kick_atfork_child);
}

/* With kick_lock: room for one more eventfd in both lists. */
static int pool_grow(void)
{
	unsigned int ncap = cap ? cap * 2 : 16;
	int *a, *f;

	if (nall < cap)
		return 0;
	a = realloc(pool_all, ncap * sizeof(*a));
	if (!a)
		return -ENOMEM;
	pool_all = a;
	f = realloc(pool_free, ncap * sizeof(*f));
	if (!f)
		return -ENOMEM;
	pool_free = f;
	cap = ncap;
	return 0;
}

int cn_kick_fd(void)
{
	uint64_t v;
	int fd, err;

	if (my_kick >= 0 && my_gen == pool_gen)
		return my_kick;
	pthread_once(&kick_once, kick_init_once);
	pthread_mutex_lock(&kick_lock);
	if (nfree) {
		fd = pool_free[--nfree];
	} else {
		err = pool_grow();
		fd = err ? err : cn_fd_lift(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
		if (fd == -1)
			fd = -errno;
		if (fd >= 0) {
			pool_all[nall++] = fd;
			if (cn_private_fd_hook)
				cn_private_fd_hook(fd, true);
		}
	}
	if (fd >= 0) {
		my_kick = fd;
		my_gen = pool_gen;
	}
	pthread_mutex_unlock(&kick_lock);
	if (fd < 0)
		return fd;
	/* a late kick meant for its last owner */
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	pthread_setspecific(kick_key, (void *)(intptr_t)(fd + 1));
	return fd;
}

int cn_kick_prepare(void)
{
	int fd = cn_kick_fd();

	return fd < 0 ? fd : 0;
}

#define KICKLESS_SLICE_MS 50 /* no kick eventfd to be had: look for kicks this often */

/*
 * Become the notifier's sleeper with this thread's kick eventfd: kfd, or
 * -1 when there is none to be had (out of fds) or, against the contract,
 * another thread sleeps on it already. Either way the sleep is then cut
 * in slices so that a kick still ends it (late, not never).
 */
static int sleeper_enter(struct cn_notifier *n)
{
	int kfd = cn_kick_fd(), none = -1;

	if (kfd < 0 || !__atomic_compare_exchange_n(&n->aux_fd, &none, kfd, false, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST))
		return -1;
	return kfd;
}

int cn_kick_sleep(struct cn_notifier *n, struct pollfd *p, int timeout_ms)
{
	int kfd = sleeper_enter(n);
	struct pollfd fds[2] = { *p, { .fd = kfd, .events = POLLIN } };
	int r, t = timeout_ms;

	/*
	 * A kick that found no sleeper. The kicker sets the flag, then looks
	 * for a sleeper; we became the sleeper, then look at the flag: with
	 * sequentially consistent atomics one of us sees the other.
	 */
	if (__atomic_exchange_n(&n->kick_pending, 0, __ATOMIC_SEQ_CST)) {
		r = 1;
		fds[0].revents = fds[1].revents = 0;
	} else {
		if (kfd < 0 && (t < 0 || t > KICKLESS_SLICE_MS))
			t = KICKLESS_SLICE_MS;
		r = poll(fds, kfd >= 0 ? 2 : 1, t);
		if (r < 0)
			r = -errno;
		else if (r == 0 && t != timeout_ms)
			r = 1; /* a slice ended: the caller re-checks and waits again */
	}
	if (kfd >= 0) {
		__atomic_store_n(&n->aux_fd, -1, __ATOMIC_SEQ_CST);
		if (r > 0 && (fds[1].revents & POLLIN)) {
			uint64_t v;

			__atomic_store_n(&n->kick_pending, 0, __ATOMIC_SEQ_CST);
			if (read(kfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				return -errno;
		}
	}
	p->revents = r > 0 ? fds[0].revents : 0;
	return r;
}

int cn_kick_sleeper(struct cn_notifier *n)
{
	uint64_t one = 1;
	int kfd;

	__atomic_store_n(&n->kick_pending, 1, __ATOMIC_SEQ_CST);
	kfd = __atomic_load_n(&n->aux_fd, __ATOMIC_SEQ_CST);
	if (kfd < 0)
		return 0; /* nobody sleeps: the next wait() sees the flag */
	/* the sleeper may have left already: kick fds are never closed (kick.c) */
	if (write(kfd, &one, sizeof(one)) == sizeof(one) || errno == EAGAIN)
		return 0;
	return -errno;
}
