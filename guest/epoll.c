// SPDX-License-Identifier: MIT
/*
 * guest/epoll.c - epoll for circuit sockets, emulated beside the kernel's.
 *
 * A circuit's readiness lives in its rings, not in a kernel object, so an
 * application's epoll instance cannot see it alone. For each epoll instance
 * that holds circuit fds the preload keeps a shadow: the circuits'
 * registrations (events, data, edge state) and an inner epoll instance
 * holding their doorbells, itself registered in the application's instance.
 * epoll_wait then
 *   1. looks at every registered circuit's ring and reports what is ready,
 *      level or edge triggered, with EPOLLONESHOT as asked;
 *   2. if nothing is, arms the doorbells of what was asked (so a peer's
 *      write or read rings them) and sleeps in the kernel's epoll_wait on
 *      the application's instance: ordinary fds and the inner instance;
 *   3. when the inner instance fires, looks at the rings again.
 * Ordinary fds in the same instance are the kernel's business throughout.
 *
 * Edge-triggered: an event is reported when it becomes ready, or again once
 * the application has consumed the previous edge (a receive or send that
 * returned EAGAIN, counted by the socket), which is what an edge-triggered
 * loop that reads until EAGAIN relies on.
 *
 * The scan is linear in the circuits of an instance: fine for hundreds, the
 * next step for thousands is a ready list fed by the inner instance.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "epoll.h"
#include "procop.h"
#include "sock.h"

#define EXPORT __attribute__((visibility("default")))
#define EP_MAX_FD 65536

struct ep_reg {
	struct ep_reg *next;
	int fd;
	struct csock *cs;
	uint32_t events;
	epoll_data_t data;
	bool disabled;		/* EPOLLONESHOT fired */
	bool dormant;		/* deleted by the app, kept for a quick ADD (see ep_ctl) */
	uint32_t last;		/* reported events (edge-triggered) */
	unsigned int in_gen, out_gen;
	uint64_t rx_seen; /* the peer's producer index at the last EPOLLIN edge */
	int inner_fds[2], ninner; /* doorbells in the inner instance */
	int inner_state;
};

struct ep_shadow {
	pthread_mutex_t lock;
	int inner;
	int op_watch; /* the operator session's fd in the inner instance, or -1 */
	struct ep_reg *regs;
	struct ep_shadow *next; /* all shadows (shadows_lock) */
};

static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
static int (*real_close)(int);
static pthread_once_t real_once = PTHREAD_ONCE_INIT;
static struct ep_shadow *shadows[EP_MAX_FD];
static char op_watch_tag; /* the inner instance's entry for the operator session */
static struct ep_shadow *shadow_list;
static pthread_mutex_t shadows_lock = PTHREAD_MUTEX_INITIALIZER;

static void resolve(void)
{
	real_epoll_ctl = dlsym(RTLD_NEXT, "epoll_ctl");
	real_epoll_pwait = dlsym(RTLD_NEXT, "epoll_pwait");
	real_close = dlsym(RTLD_NEXT, "close");
}

static struct ep_shadow *shadow_of(int epfd, bool create)
{
	struct ep_shadow *sh;
	struct epoll_event ev = { .events = EPOLLIN };

	if (epfd < 0 || epfd >= EP_MAX_FD)
		return NULL;
	sh = __atomic_load_n(&shadows[epfd], __ATOMIC_ACQUIRE);
	if (sh || !create)
		return sh;
	pthread_mutex_lock(&shadows_lock);
	sh = shadows[epfd];
	if (!sh) {
		sh = calloc(1, sizeof(*sh));
		if (sh) {
			pthread_mutex_init(&sh->lock, NULL);
			sh->inner = epoll_create1(EPOLL_CLOEXEC);
			sh->op_watch = -1;
			ev.data.ptr = sh;
			if (sh->inner < 0 || real_epoll_ctl(epfd, EPOLL_CTL_ADD, sh->inner, &ev)) {
				if (sh->inner >= 0)
					real_close(sh->inner);
				free(sh);
				sh = NULL;
			} else {
				sh->next = shadow_list;
				shadow_list = sh;
				__atomic_store_n(&shadows[epfd], sh, __ATOMIC_RELEASE);
			}
		}
	}
	pthread_mutex_unlock(&shadows_lock);
	return sh;
}

/*
 * Keep the inner instance's doorbells in step with the socket's state. They
 * are edge-triggered: a ring of the doorbell is a hint to look at the rings,
 * and a ring nobody consumed must not wake us again and again.
 */
static void reg_sync_inner(struct ep_shadow *sh, struct ep_reg *r)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = r };
	int i;

	/* one waiter of many woken for a listener, as the application asked */
	if (r->events & EPOLLEXCLUSIVE)
		ev.events |= EPOLLEXCLUSIVE;
	if (r->inner_state == (int)r->cs->state)
		return;
	for (i = 0; i < r->ninner; i++)
		real_epoll_ctl(sh->inner, EPOLL_CTL_DEL, r->inner_fds[i], NULL);
	r->ninner = csock_event_fds(r->cs, r->inner_fds);
	for (i = 0; i < r->ninner; i++)
		real_epoll_ctl(sh->inner, EPOLL_CTL_ADD, r->inner_fds[i], &ev);
	r->inner_state = (int)r->cs->state;
}

static void reg_free(struct ep_shadow *sh, struct ep_reg *r)
{
	int i;

	for (i = 0; i < r->ninner; i++)
		real_epoll_ctl(sh->inner, EPOLL_CTL_DEL, r->inner_fds[i], NULL);
	__atomic_sub_fetch(&r->cs->ep_regs, 1, __ATOMIC_RELAXED);
	csock_put(r->cs);
	free(r);
}

/* (Re)start r as a fresh registration for ev; its doorbells stay where they are. */
static void reg_revive(struct ep_shadow *sh, struct ep_reg *r, const struct epoll_event *ev)
{
	if ((r->events ^ ev->events) & EPOLLEXCLUSIVE)
		r->inner_state = -1; /* the doorbells' registration changes with it */
	r->events = ev->events;
	r->data = ev->data;
	r->disabled = false;
	r->dormant = false;
	r->last = 0;
	r->in_gen = r->cs->in_gen - 1; /* a first edge is owed */
	r->out_gen = r->cs->out_gen - 1;
	reg_sync_inner(sh, r);
}

static struct ep_reg **reg_find(struct ep_shadow *sh, int fd)
{
	struct ep_reg **pp;

	for (pp = &sh->regs; *pp; pp = &(*pp)->next)
		if ((*pp)->fd == fd)
			return pp;
	return NULL;
}

int ep_ctl(int epfd, int op, int fd, struct epoll_event *ev, bool *handled)
{
	struct csock *cs = preload_lookup(fd);
	struct ep_shadow *sh;
	struct ep_reg **pp, *r;
	int err = 0;

	pthread_once(&real_once, resolve);
	*handled = cs != NULL;
	if (!cs)
		return 0;
	if (op != EPOLL_CTL_DEL && !ev)
		return -EFAULT;
	sh = shadow_of(epfd, op == EPOLL_CTL_ADD);
	if (!sh)
		return op == EPOLL_CTL_ADD ? -ENOMEM : -ENOENT;
	pthread_mutex_lock(&sh->lock);
	pp = reg_find(sh, fd);
	switch (op) {
	case EPOLL_CTL_ADD:
		if (pp && !(*pp)->dormant) {
			err = -EEXIST;
			break;
		}
		/* what the kernel refuses with EPOLLEXCLUSIVE */
		if ((ev->events & EPOLLEXCLUSIVE) &&
		    (ev->events & ~(EPOLLEXCLUSIVE | EPOLLIN | EPOLLOUT | EPOLLET | EPOLLWAKEUP |
				    EPOLLERR | EPOLLHUP))) {
			err = -EINVAL;
			break;
		}
		if (pp && (*pp)->cs == cs) {
			reg_revive(sh, *pp, ev);
			break;
		}
		if (pp) { /* the fd names another socket now */
			r = *pp;
			*pp = r->next;
			reg_free(sh, r);
		}
		r = calloc(1, sizeof(*r));
		if (!r) {
			err = -ENOMEM;
			break;
		}
		csock_get(cs);
		__atomic_add_fetch(&cs->ep_regs, 1, __ATOMIC_RELAXED);
		r->fd = fd;
		r->cs = cs;
		r->inner_state = -1;
		reg_revive(sh, r, ev);
		r->next = sh->regs;
		sh->regs = r;
		break;
	case EPOLL_CTL_MOD:
		if (!pp || (*pp)->dormant || (*pp)->cs != cs) {
			err = -ENOENT;
			break;
		}
		if ((ev->events | (*pp)->events) & EPOLLEXCLUSIVE) {
			err = -EINVAL; /* not modifiable, as with the kernel */
			break;
		}
		r = *pp;
		r->events = ev->events;
		r->data = ev->data;
		r->disabled = false;
		r->last = 0;
		break;
	case EPOLL_CTL_DEL:
		if (!pp || (*pp)->dormant) {
			err = -ENOENT;
			break;
		}
		/*
		 * Kept, doorbells and all, until the socket's last close: event
		 * loops (ae: redis, redis-benchmark) delete and add a socket
		 * around every request, and each real epoll_ctl of its
		 * doorbells would cost a system call and an allocation.
		 */
		(*pp)->dormant = true;
		break;
	default:
		err = -EINVAL;
	}
	pthread_mutex_unlock(&sh->lock);
	return err;
}

/* What to report for r now (0: nothing), updating its edge state. */
static uint32_t reg_check(struct ep_reg *r, bool arm)
{
	uint32_t want = r->events & (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI), ready, out;
	int fds[2], nfds;
	short fev[2];
	unsigned int in_gen, out_gen;

	if (r->disabled)
		return 0;
	ready = csock_poll(r->cs, want, arm, fds, fev, &nfds);
	if (r->cs->state == CS_LISTENING) {
		struct pollfd p = { .fd = r->cs->op.fd, .events = POLLIN };

		if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN))
			ready |= POLLIN;
	}
	ready &= want | EPOLLERR | EPOLLHUP;
	if (!(r->events & EPOLLET)) {
		out = ready;
	} else {
		uint64_t rx_prod = 0;
		bool prog = csock_arrivals(r->cs, &rx_prod);

		in_gen = __atomic_load_n(&r->cs->in_gen, __ATOMIC_RELAXED);
		out_gen = __atomic_load_n(&r->cs->out_gen, __ATOMIC_RELAXED);
		out = ready & ~r->last;
		/*
		 * A new edge for reading: data arrived since the last one (the
		 * kernel raises one per arrival, and nginx, taking a short read
		 * for "drained", waits for it without ever seeing EAGAIN), or
		 * the application consumed its edge with EAGAIN. For writing,
		 * only the latter: TCP wakes writers only once one found no room.
		 */
		if ((ready & EPOLLIN) && (in_gen != r->in_gen || (prog && rx_prod != r->rx_seen)))
			out |= EPOLLIN;
		if ((ready & EPOLLOUT) && out_gen != r->out_gen)
			out |= EPOLLOUT;
		if (out & EPOLLIN) {
			r->in_gen = in_gen;
			r->rx_seen = rx_prod;
		}
		if (out & EPOLLOUT)
			r->out_gen = out_gen;
		r->last = ready;
		/* as the kernel does: an edge reports everything that is ready */
		if (out)
			out = ready;
	}
	if (out && (r->events & EPOLLONESHOT))
		r->disabled = true;
	return out;
}

/* Fill evs with ready circuits; returns how many. */
static int scan(struct ep_shadow *sh, struct epoll_event *evs, int max, bool arm)
{
	struct ep_reg *r;
	int n = 0;

	for (r = sh->regs; r && n < max; r = r->next) {
		uint32_t e;

		if (r->dormant)
			continue;
		reg_sync_inner(sh, r);
		e = reg_check(r, arm);
		if (!e)
			continue;
		evs[n].events = e;
		evs[n].data = r->data;
		n++;
	}
	return n;
}

/*
 * Take the inner instance's hints: the scan that follows looks at all rings.
 * A doorbell that hung up says more: every process on the other end is gone
 * (the operator keeps no copy), perhaps killed before it could close, which
 * its rings alone never show. Caller holds sh->lock, so every r is alive:
 * freeing one takes its doorbells out of the inner instance first.
 */
static bool drain_inner(struct ep_shadow *sh)
{
	struct epoll_event evs[64];
	bool op_fired = false;
	int n, i;

	do {
		n = real_epoll_pwait(sh->inner, evs, 64, 0, NULL);
		for (i = 0; i < n; i++) {
			struct ep_reg *r = evs[i].data.ptr;

			if (evs[i].data.ptr == &op_watch_tag) {
				op_fired = true;
				continue;
			}

			if ((evs[i].events & (EPOLLHUP | EPOLLERR)) && r->cs->state == CS_CONNECTED)
				csock_peer_hangup(r->cs);
		}
	} while (n == 64);
	return op_fired;
}

/*
 * With sh->lock: the inner instance watches fd, the process's operator
 * session (procop.h), for its hang-up; a new session replaces the old one.
 */
static void watch_operator(struct ep_shadow *sh, int fd)
{
	struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLIN | EPOLLET,
				  .data.ptr = &op_watch_tag };

	if (sh->op_watch == fd)
		return;
	if (sh->op_watch >= 0)
		real_epoll_ctl(sh->inner, EPOLL_CTL_DEL, sh->op_watch, NULL);
	sh->op_watch = fd >= 0 && !real_epoll_ctl(sh->inner, EPOLL_CTL_ADD, fd, &ev) ? fd : -1;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kernel events of the app's instance, minus the shadow's own entry. */
static int kernel_events(int epfd, struct ep_shadow *sh, struct epoll_event *evs, int max,
			 int timeout, const sigset_t *mask, bool *inner_fired)
{
	int n = real_epoll_pwait(epfd, evs, max, timeout, mask), i, k = 0;

	if (n < 0)
		return -errno;
	for (i = 0; i < n; i++) {
		if (evs[i].data.ptr == sh) {
			*inner_fired = true;
			continue;
		}
		evs[k++] = evs[i];
	}
	return k;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Look at the rings (and now and then the kernel's fds) until the budget is spent. */
static int spin(int epfd, struct ep_shadow *sh, struct epoll_event *evs, int max,
		const sigset_t *mask)
{
	int64_t end = mono_ns() + preload_spin_ns();
	unsigned int round = 0;
	bool fired;
	int n;

	do {
		pthread_mutex_lock(&sh->lock);
		n = scan(sh, evs, max, false);
		pthread_mutex_unlock(&sh->lock);
		if (n)
			return n;
		if (!(++round & 15)) {
			n = kernel_events(epfd, sh, evs, max, 0, mask, &fired);
			if (n > 0)
				return n;
		}
	} while (mono_ns() < end);
	return 0;
}

int ep_wait(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *mask,
	    bool *handled)
{
	struct ep_shadow *sh = shadow_of(epfd, false);
	int64_t deadline = timeout < 0 ? -1 : mono_ms() + timeout;
	int n, k;

	pthread_once(&real_once, resolve);
	*handled = sh != NULL;
	if (!sh)
		return 0;
	if (max <= 0)
		return -EINVAL;
	for (;;) {
		bool fired = false, tend;
		int left, retry, wfd;

		pthread_mutex_lock(&sh->lock);
		/* hints consumed: the scan looks at every ring */
		tend = drain_inner(sh);
		if (tend) {
			/* the operator's session hung up or has pushes: see to it, unlocked */
			pthread_mutex_unlock(&sh->lock);
			procop_tick();
			pthread_mutex_lock(&sh->lock);
		}
		n = scan(sh, evs, max, false);
		if (!n)
			n = scan(sh, evs, max, true); /* armed: a later change rings */
		pthread_mutex_unlock(&sh->lock);
		if (n) {
			/* ordinary fds that are ready too, without waiting */
			k = kernel_events(epfd, sh, evs + n, max - n, 0, mask, &fired);
			return k < 0 ? n : n + k;
		}
		if (timeout != 0 && preload_spin_ns()) {
			n = spin(epfd, sh, evs, max, mask);
			if (n)
				return n;
		}
		left = deadline < 0 ? -1 : (int)(deadline - mono_ms());
		if (deadline >= 0 && left < 0)
			left = 0;
		retry = -1;
		if (left != 0) {
			csock_flush_closed();
			/* the operator: its session's hang-up, the next attempt to reach it */
			wfd = procop_watch(&retry);
			pthread_mutex_lock(&sh->lock);
			watch_operator(sh, wfd);
			pthread_mutex_unlock(&sh->lock);
			if (retry >= 0 && (left < 0 || retry < left))
				left = retry;
			else
				retry = -1;
		}
		k = kernel_events(epfd, sh, evs, max, left, mask, &fired);
		if (k != 0)
			return k; /* ordinary events, or an error (EINTR) */
		if (!fired && retry >= 0) {
			procop_tick(); /* an attempt to reach the operator is due */
			continue;
		}
		if (!fired && deadline >= 0 && mono_ms() >= deadline)
			return 0;
		/* a doorbell rang (or a spurious wake-up): look at the rings again */
	}
}

void ep_note_close(int fd, struct csock *cs, bool last_ref)
{
	struct ep_shadow *sh, **pp;

	pthread_once(&real_once, resolve);
	/* an epoll instance closing: its shadow goes with it */
	if (fd >= 0 && fd < EP_MAX_FD && __atomic_load_n(&shadows[fd], __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&shadows_lock);
		sh = shadows[fd];
		shadows[fd] = NULL;
		for (pp = &shadow_list; sh && *pp; pp = &(*pp)->next)
			if (*pp == sh) {
				*pp = sh->next;
				break;
			}
		pthread_mutex_unlock(&shadows_lock);
		if (!sh)
			return;
		while (sh->regs) {
			struct ep_reg *r = sh->regs;

			sh->regs = r->next;
			reg_free(sh, r);
		}
		real_close(sh->inner);
		pthread_mutex_destroy(&sh->lock);
		free(sh);
		return;
	}
	/*
	 * A circuit fd closing: the kernel drops a file from epoll sets when
	 * its last descriptor closes; do the same for the last one we know.
	 */
	if (!cs || !last_ref || !__atomic_load_n(&cs->ep_regs, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&shadows_lock);
	for (sh = shadow_list; sh; sh = sh->next) {
		struct ep_reg **rp;

		pthread_mutex_lock(&sh->lock);
		rp = reg_find(sh, fd);
		if (rp && (*rp)->cs == cs) {
			struct ep_reg *r = *rp;

			*rp = r->next;
			reg_free(sh, r);
		}
		pthread_mutex_unlock(&sh->lock);
	}
	pthread_mutex_unlock(&shadows_lock);
}

/* ---- the libc entry points ---- */

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	bool handled;
	int err;

	pthread_once(&real_once, resolve);
	err = ep_ctl(epfd, op, fd, ev, &handled);
	if (!handled)
		return real_epoll_ctl(epfd, op, fd, ev);
	if (err) {
		errno = -err;
		return -1;
	}
	return 0;
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout,
		       const sigset_t *mask)
{
	bool handled;
	int n;

	pthread_once(&real_once, resolve);
	n = ep_wait(epfd, evs, max, timeout, mask, &handled);
	if (!handled)
		return real_epoll_pwait(epfd, evs, max, timeout, mask);
	if (n < 0) {
		errno = -n;
		return -1;
	}
	return n;
}

EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	return epoll_pwait(epfd, evs, max, timeout, NULL);
}
