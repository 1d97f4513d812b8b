// SPDX-License-Identifier: MIT
/*
 * circuit/wait.c - blocking: bounded busy-poll, then the wake-up protocol
 * (store want, re-check, sleep on the notifier). See ring.c for why the
 * store/re-check order cannot lose a wake-up.
 */
#include <time.h>

#include "internal.h"

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Absolute deadline for a timeout in ms; -1 = none. Fixed at the first wait of a call. */
static int64_t deadline_of(int64_t *deadline, int timeout_ms)
{
	if (*deadline == CN_DEADLINE_UNSET)
		*deadline = timeout_ms < 0 ? -1 : now_ns() + (int64_t)timeout_ms * 1000000;
	return *deadline;
}

/* Milliseconds left until deadline, rounded up; -1 forever, 0 expired. */
static int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ns();
	if (left <= 0)
		return 0;
	left = (left + 999999) / 1000000;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

#define CN_ST_RX_OVER \
	(CN_ST_PEER_FIN | CN_ST_RESET | CN_ST_BROKEN | CN_ST_RD_SHUT | CN_ST_CLOSED | CN_ST_PEER_DEAD)
#define CN_ST_TX_OVER (CN_ST_RESET | CN_ST_BROKEN | CN_ST_WR_SHUT | CN_ST_PEER_GONE | CN_ST_CLOSED)

/* True when a reader waiting for want bytes should look again. */
static bool rx_ready(struct cn_endpoint *ep, uint64_t want)
{
	if (cn_rx_refresh(ep, true) || ep->pending_err || (cn_st(ep) & CN_ST_RX_OVER))
		return true;
	return cn_rx_avail(ep) >= want;
}

/* True when a writer waiting for want free bytes should look again. */
static bool tx_ready(struct cn_endpoint *ep, uint64_t want)
{
	if (cn_tx_refresh(ep, true) || ep->pending_err || (cn_st(ep) & CN_ST_TX_OVER))
		return true;
	return cn_tx_free(ep) >= want;
}

static bool spin(struct cn_endpoint *ep, bool tx, uint64_t want)
{
	int64_t start = now_ns();
	unsigned i;

	for (i = 1;; i++) {
		if (tx ? tx_ready(ep, want) : rx_ready(ep, want))
			return true;
		cpu_relax();
		if (!(i & 63) && now_ns() - start >= ep->spin_ns)
			return false;
	}
}

static int wait_common(struct cn_endpoint *ep, bool tx, uint64_t want, int64_t *dl)
{
	int64_t deadline = deadline_of(dl, tx ? ep->snd_timeout_ms : ep->rcv_timeout_ms);
	struct cn_ring_view *r = tx ? &ep->tx : &ep->rx;
	_Atomic uint32_t *flag = tx ? &r->ctrl->writer_want : &r->ctrl->reader_want;
	struct cn_notifier *n = tx ? ep->wait_tx : ep->wait_rx;
	struct timespec nap = { 0, 50000 };
	int ms, err;

	want = want < 1 ? 1 : cn_min_u64(want, r->size);
	if (ep->spin_ns && spin(ep, tx, want))
		return 0;
	atomic_store_explicit(flag, (uint32_t)want, memory_order_seq_cst);
	if (tx ? tx_ready(ep, want) : rx_ready(ep, want)) {
		atomic_store_explicit(flag, 0, memory_order_relaxed);
		return 0;
	}
	ms = remaining_ms(deadline);
	if (ms == 0) {
		atomic_store_explicit(flag, 0, memory_order_relaxed);
		return -EAGAIN;
	}
	if (tx)
		ep->stats.tx_sleeps++;
	else
		ep->stats.rx_sleeps++;
	if (n && n->ops) {
		err = cn_notifier_wait(n, ms);
	} else {
		/* No notifier wired: poll the ring with short naps. */
		nanosleep(&nap, NULL);
		err = 0;
	}
	if (err == -ETIMEDOUT)
		err = remaining_ms(deadline) == 0 ? -EAGAIN : 0;
	if (err == -EPIPE) {
		/* Nobody will ever signal us again: settle the state, let the caller look. */
		cn_ep_peer_vanished(ep);
		err = 0;
	}
	if (err)
		atomic_store_explicit(flag, 0, memory_order_relaxed);
	return err;
}

int cn_wait_rx(struct cn_endpoint *ep, uint64_t want, int64_t *deadline)
{
	return wait_common(ep, false, want, deadline);
}

int cn_wait_tx(struct cn_endpoint *ep, uint64_t want, int64_t *deadline)
{
	return wait_common(ep, true, want, deadline);
}
