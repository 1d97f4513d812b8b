// SPDX-License-Identifier: MIT
/*
 * guest/procop.c - the process's session at the operator and its recovery
 * (procop.h).
 *
 * States: the session is open (the operator is up as far as we know), or
 * closed with the next attempt due at next_try. A request that finds the
 * operator gone (-ECONNABORTED), or a wait point that sees the session hang
 * up, closes it and makes an attempt due at once: a restart takes the
 * operator a few milliseconds, so the first attempt often succeeds. Each
 * failed attempt doubles the pause, from 10 ms up to 500 ms, so a process
 * waiting through a long outage wakes twice a second at most, and its
 * listeners are back at most half a second after the operator is.
 *
 * Lock order: a socket's lock, then proc.lock; durables.lock is never held
 * with either. Re-registration runs with no lock held and takes each
 * socket's lock with a trylock (a thread busy on that socket gets its turn
 * at the next wait point), so it cannot deadlock with a thread that holds
 * one socket's lock and waits for proc.lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "procop.h"
#include "sock.h"

#define BACKOFF_MIN_NS 10000000LL  /* 10 ms */
#define BACKOFF_MAX_NS 500000000LL /* 500 ms */
#define HELLO_MS       2000	   /* an operator that takes longer counts as absent */

static struct {
	pthread_mutex_t lock;
	char path[108];
	bool open;
	struct cn_op op;
	uint64_t instance;   /* the guest id the operator gave us last (HELLO_OK) */
	int64_t next_try_ns; /* closed: the next attempt, CLOCK_MONOTONIC */
	int64_t backoff_ns;
	bool revive_due; /* durable sockets may belong to an earlier operator */
	int64_t wait_ns;
} proc = { .lock = PTHREAD_MUTEX_INITIALIZER, .wait_ns = PROCOP_WAIT_MS_DEFAULT * 1000000LL };

static struct {
	pthread_mutex_t lock;
	struct csock *head;
} durables = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int ndurable, nwaiting; /* atomics: wait points do nothing while both are 0 */
static bool sandboxed;	       /* prctl(PR_SET_SECCOMP) seen: no new sessions from wait points */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int procop_init(void)
{
	const char *p = getenv("CIRCNET_OPERATOR_SOCKET");
	const char *w = getenv("CIRCNET_OPERATOR_WAIT_MS");

	if (w && *w) {
		char *end;
		long ms = strtol(w, &end, 10);

		if (!*end && ms >= 0 && ms <= 600000)
			proc.wait_ns = ms * 1000000LL;
	}
	if (!p || !*p || strlen(p) >= sizeof(proc.path))
		return -ENOENT;
	memcpy(proc.path, p, strlen(p) + 1);
	return 0;
}

void procop_after_fork_child(void)
{
	/* the session socket is the parent's: replies could go to either */
	pthread_mutex_init(&proc.lock, NULL);
	pthread_mutex_init(&durables.lock, NULL);
	if (proc.open) {
		proc.op.nclosed = 0; /* the parent reports its own closes */
		preload_hide(proc.op.fd, false);
		cn_op_close(&proc.op);
	}
	proc.open = false;
	proc.next_try_ns = 0;
	proc.backoff_ns = 0;
}

const char *procop_path(void)
{
	return proc.path[0] ? proc.path : NULL;
}

int64_t procop_wait_ns(void)
{
	return proc.wait_ns;
}

uint64_t procop_instance(void)
{
	return __atomic_load_n(&proc.instance, __ATOMIC_ACQUIRE);
}

/* With proc.lock: the session is gone; try again at once, then back off. */
static void retire_locked(void)
{
	preload_hide(proc.op.fd, false);
	proc.op.nclosed = 0; /* notices for an operator that is gone */
	cn_op_close(&proc.op);
	proc.open = false;
	proc.next_try_ns = 0;
	proc.backoff_ns = 0;
}

/* The errors of an operator that is not (or not yet) there. */
static bool operator_absent(int err)
{
	return err == -ENOENT || err == -ECONNREFUSED || err == -ECONNABORTED ||
	       err == -ECONNRESET || err == -ETIMEDOUT || err == -EPIPE || err == -EAGAIN;
}

/* With proc.lock: the session, opened if an attempt is due. */
static int open_locked(void)
{
	int64_t now;
	int err;

	if (proc.open)
		return 0;
	if (!proc.path[0])
		return -ENETUNREACH; /* not a guest: no circuit network */
	now = mono_ns();
	if (now < proc.next_try_ns)
		return -EHOSTDOWN;
	/*
	 * Wait points open sessions too: an operator that accepts but does not
	 * answer (stopped, wedged) must not hold the application for long.
	 */
	err = cn_op_open_within(&proc.op, proc.path, HELLO_MS);
	if (err) {
		if (!operator_absent(err))
			return err;
		proc.backoff_ns = proc.backoff_ns ? proc.backoff_ns * 2 : BACKOFF_MIN_NS;
		if (proc.backoff_ns > BACKOFF_MAX_NS)
			proc.backoff_ns = BACKOFF_MAX_NS;
		proc.next_try_ns = now + proc.backoff_ns;
		return -EHOSTDOWN;
	}
	proc.op.keep_memfd = true;
	proc.op.on_reset = procop_on_reset;
	preload_hide(proc.op.fd, true);
	proc.open = true;
	proc.backoff_ns = 0;
	__atomic_store_n(&proc.instance, proc.op.info.guest_id, __ATOMIC_RELEASE);
	if (__atomic_load_n(&durables.head, __ATOMIC_RELAXED))
		proc.revive_due = true;
	return 0;
}

int procop_get(struct cn_op **op, int64_t wait_ns)
{
	int64_t deadline = mono_ns() + wait_ns, next, now;
	struct timespec ts;
	int err;

	for (;;) {
		pthread_mutex_lock(&proc.lock);
		err = open_locked();
		if (!err) {
			*op = &proc.op;
			return 0;
		}
		next = proc.next_try_ns;
		pthread_mutex_unlock(&proc.lock);
		now = mono_ns();
		if (err != -EHOSTDOWN || wait_ns <= 0 || now >= deadline)
			return err;
		if (next > deadline)
			next = deadline;
		if (next < now + 1000000)
			next = now + 1000000;
		ts.tv_sec = (next - now) / 1000000000;
		ts.tv_nsec = (next - now) % 1000000000;
		nanosleep(&ts, NULL);
	}
}

void procop_put(int err)
{
	if (err == -ECONNABORTED && proc.open)
		retire_locked();
	pthread_mutex_unlock(&proc.lock);
}

bool procop_up(void)
{
	bool up;

	pthread_mutex_lock(&proc.lock);
	if (proc.open && !cn_op_alive(&proc.op))
		retire_locked();
	up = !open_locked();
	pthread_mutex_unlock(&proc.lock);
	return up;
}

/*
 * The operator revoked a circuit (reload --reset; proto.h RESET): reset our
 * end, so the peer reads ECONNRESET too, as the kernel would after a
 * firewall's reset. Called with the session's lock held; the socket cannot
 * go while durables.lock is held (release_state leaves the list first).
 */
void procop_on_reset(void *arg, uint64_t circuit_id)
{
	struct csock *cs;

	(void)arg;
	pthread_mutex_lock(&durables.lock);
	for (cs = durables.head; cs; cs = cs->dnext) {
		if (cs->dgram) {
			udp_reset_peer(cs, circuit_id);
			continue;
		}
		if (cs->state == CS_CONNECTED && cs->circuit_id == circuit_id)
			cn_revoke(&cs->ep.ep);
	}
	pthread_mutex_unlock(&durables.lock);
}

/* ---- durable sockets ---- */

void procop_durable_add(struct csock *cs, bool watched)
{
	pthread_mutex_lock(&durables.lock);
	if (!cs->durable) {
		cs->durable = true;
		cs->durable_watched = watched;
		cs->dprev = NULL;
		cs->dnext = durables.head;
		if (durables.head)
			durables.head->dprev = cs;
		durables.head = cs;
		if (watched)
			__atomic_add_fetch(&ndurable, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&durables.lock);
}

void procop_durable_del(struct csock *cs)
{
	pthread_mutex_lock(&durables.lock);
	if (cs->durable) {
		if (cs->dprev)
			cs->dprev->dnext = cs->dnext;
		else
			durables.head = cs->dnext;
		if (cs->dnext)
			cs->dnext->dprev = cs->dprev;
		cs->durable = false;
		if (cs->durable_watched)
			__atomic_sub_fetch(&ndurable, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&durables.lock);
}

void procop_waiting(int delta)
{
	__atomic_add_fetch(&nwaiting, delta, __ATOMIC_RELAXED);
}

/*
 * Register every durable socket whose registration is an earlier
 * operator's. Each is held by a reference taken under durables.lock (never
 * one whose last reference is going), registered with no list lock held.
 */
static void revive(void)
{
	uint64_t inst = procop_instance();
	struct csock **todo = NULL, *cs;
	size_t n = 0, cap = 0, i;
	bool again = false;

	pthread_mutex_lock(&durables.lock);
	for (cs = durables.head; cs; cs = cs->dnext) {
		if (__atomic_load_n(&cs->reg_gen, __ATOMIC_RELAXED) == inst || !csock_tryget(cs))
			continue;
		if (n == cap) {
			struct csock **t = realloc(todo, (cap = cap ? cap * 2 : 16) * sizeof(*t));

			if (!t) {
				csock_put(cs);
				again = true;
				break;
			}
			todo = t;
		}
		todo[n++] = cs;
	}
	pthread_mutex_unlock(&durables.lock);
	for (i = 0; i < n; i++) {
		cs = todo[i];
		if (pthread_mutex_trylock(&cs->lock)) {
			again = true; /* busy: its turn comes at the next wait point */
		} else {
			if (csock_reregister(cs) == -EHOSTDOWN)
				again = true;
			pthread_mutex_unlock(&cs->lock);
		}
		csock_put(cs);
	}
	free(todo);
	if (again) {
		pthread_mutex_lock(&proc.lock);
		proc.revive_due = true;
		pthread_mutex_unlock(&proc.lock);
	}
}

/* ---- wait points ---- */

/*
 * Wait points tend the operator's session for processes that have
 * listeners or bound datagram sockets (they must come back by themselves),
 * connects waiting for it, or a session open already (its pushes: RESET).
 * Established connections alone do not make a process open a session:
 * their claims go out with the process's next session, whenever it has
 * one. A process under a seccomp filter never opens one from a wait point:
 * the filter may kill it for socket().
 */
static bool watching(void)
{
	if (__atomic_load_n(&sandboxed, __ATOMIC_RELAXED))
		return false;
	return __atomic_load_n(&ndurable, __ATOMIC_RELAXED) ||
	       __atomic_load_n(&nwaiting, __ATOMIC_RELAXED) ||
	       __atomic_load_n(&proc.open, __ATOMIC_RELAXED);
}

void procop_sandboxed(void)
{
	__atomic_store_n(&sandboxed, true, __ATOMIC_RELAXED);
}

#define BUSY_RETRY_MS 50 /* another thread holds the session: look again after this */

/*
 * With proc.lock: a wait point's care of the session. Retire it if the
 * operator hung up, read its pushes (RESET: no request is in flight while we
 * hold the lock, so nothing read here can be a reply), open it if an attempt
 * is due. True when re-registration is due, to run with no lock held.
 */
static bool tend_locked(bool check_alive)
{
	bool due;

	if (check_alive && proc.open && !cn_op_alive(&proc.op))
		retire_locked();
	if (check_alive && proc.open && cn_op_take_pushes(&proc.op) == -ECONNABORTED)
		retire_locked();
	open_locked();
	due = proc.revive_due && proc.open;
	if (due)
		proc.revive_due = false;
	return due;
}

/*
 * Wait points never wait for the session's lock: a thread holding it is
 * in a request (a connect the operator may hold for its restart grace), and
 * the application's own events must not wait behind it. They look again
 * a little later instead.
 */
int procop_watch(int *retry_ms)
{
	bool due;
	int fd = -1;

	*retry_ms = -1;
	if (!watching())
		return -1;
	if (pthread_mutex_trylock(&proc.lock)) {
		*retry_ms = BUSY_RETRY_MS;
		return -1;
	}
	due = tend_locked(false);
	if (proc.open) {
		fd = proc.op.fd;
		if (due || proc.revive_due || __atomic_load_n(&nwaiting, __ATOMIC_RELAXED))
			*retry_ms = due || proc.revive_due ? 10 : 100;
	} else {
		int64_t left = proc.next_try_ns - mono_ns();

		*retry_ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
	}
	pthread_mutex_unlock(&proc.lock);
	if (due)
		revive();
	return fd;
}

void procop_tick(void)
{
	bool due;

	if (!watching() || pthread_mutex_trylock(&proc.lock))
		return; /* a thread in a request sees to the session */
	due = tend_locked(true);
	pthread_mutex_unlock(&proc.lock);
	if (due)
		revive();
}

/* ---- close notices ---- */

void procop_flush_closed(void)
{
	if (!__atomic_load_n(&proc.op.nclosed, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&proc.lock);
	if (proc.open && cn_op_flush(&proc.op) == -ECONNABORTED)
		retire_locked();
	pthread_mutex_unlock(&proc.lock);
}

/*
 * Any session of the guest may report its closes: the process's. With the
 * operator down, the notice has nobody to go to: the next operator never
 * knew the circuit, unless it was re-registered, and then it learns of the
 * close when the circuit's other end goes or the guest does.
 */
void procop_closed(uint64_t circuit_id)
{
	pthread_mutex_lock(&proc.lock);
	if (!open_locked() && cn_op_closed(&proc.op, circuit_id) == -ECONNABORTED)
		retire_locked();
	pthread_mutex_unlock(&proc.lock);
}
