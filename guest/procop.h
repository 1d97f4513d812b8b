/* SPDX-License-Identifier: MIT */
/*
 * guest/procop.h - the process's session at the operator, and how the
 * process gets through an operator restart. This module owns:
 *   - the process session: one per process, opened on first use, reopened
 *     after a fork (the parent's is the parent's) or once the operator it
 *     led to is gone; connects, bind checks and close notices use it, and
 *     listeners and bound datagram sockets register their channels on it;
 *   - the operator's state as the process sees it: up, or down with the
 *     next attempt due at a time that backs off from 10 ms to 500 ms, so a
 *     process waiting for the operator never spins;
 *   - the durable sockets (listeners, bound datagram sockets) and their
 *     re-registration with an operator that restarted.
 *
 * A listener's channel outlives the operator (opclient.h), so while the
 * operator is down a listener simply has nothing to accept: no error, no
 * readiness. What brings the listeners back is the process's wait points
 * (poll, select, epoll_wait, a blocking accept or receive): they watch the
 * process session for the operator's hang-up and wake for the next
 * attempt, which re-registers every durable socket whose registration
 * belongs to an earlier operator (told apart by the guest id in HELLO_OK,
 * unique per operator run). A server is by definition sitting in one of
 * them, so its listeners come back without any call of its own.
 */
#ifndef CIRCNET_GUEST_PROCOP_H
#define CIRCNET_GUEST_PROCOP_H

#include <stdbool.h>
#include <stdint.h>

#include <circnet/opclient.h>

struct csock;

/*
 * How long a connect (or listen) waits for an operator that is down before
 * it fails with EHOSTUNREACH, as a connect to a host that never answers
 * ARP does: CIRCNET_OPERATOR_WAIT_MS, default 3000, 0-600000.
 */
#define PROCOP_WAIT_MS_DEFAULT 3000

/* From the environment (CIRCNET_OPERATOR_SOCKET, CIRCNET_OPERATOR_WAIT_MS). */
int procop_init(void);
/* In a fork's child: the parent's session is the parent's. */
void procop_after_fork_child(void);
/* The guest's operator socket, or NULL when the process is not a guest. */
const char *procop_path(void);
/* The bound on waiting for the operator, in ns. */
int64_t procop_wait_ns(void);

/*
 * The process session, locked, opened or reopened as needed: 0 with *op.
 * -EHOSTDOWN: the operator is not there (after waiting up to wait_ns);
 * -ENETUNREACH: not a guest; other errors as cn_op_open. Not locked then.
 */
int procop_get(struct cn_op **op, int64_t wait_ns);
/* Unlock; err is the request's result: -ECONNABORTED retires the session. */
void procop_put(int err);
/* Is the operator (as last seen) up? Opens the session if an attempt is due. */
bool procop_up(void);
/* The guest id of the operator this process talks to now (0: none yet). */
uint64_t procop_instance(void);

/*
 * Wait points. procop_watch: before sleeping. Returns the fd to watch for
 * the operator's hang-up and pushes (poll it for POLLRDHUP | POLLIN), or
 * -1; *retry_ms is when
 * to wake at the latest for the next attempt (-1: no need). It opens the
 * session or re-registers durable sockets when that is due, so a process
 * that sleeps nowhere else still recovers. procop_tick: after waking when
 * the watched fd fired or retry_ms passed.
 */
int procop_watch(int *retry_ms);
void procop_tick(void);

/*
 * Sockets that register with the operator and must do so again after a
 * restart: listeners and bound datagram sockets (watched: the process's
 * wait points bring them back), and connected ones (their circuits are
 * claimed again whenever the process next has a session).
 */
void procop_durable_add(struct csock *cs, bool watched);
void procop_durable_del(struct csock *cs);
/* Connects waiting for the operator (non-blocking ones, CS_WAITOP): wait points retry for them. */
void procop_waiting(int delta);

/* opclient's on_reset for every session of ours: the operator revoked a circuit. */
void procop_on_reset(void *arg, uint64_t circuit_id);

/* The process put itself under a seccomp filter (preload.c's prctl). */
void procop_sandboxed(void);

/* Closes, batched on the process session (opclient.h). */
void procop_closed(uint64_t circuit_id);
void procop_flush_closed(void);

#endif
