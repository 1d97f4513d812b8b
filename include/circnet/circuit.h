/* SPDX-License-Identifier: MIT */
/*
 * circnet/circuit.h - one endpoint of a circuit: copy API, zero-copy API,
 * connection state and wake-ups.
 *
 * A circuit is a shared region (circnet/layout.h) with two single-producer,
 * single-consumer rings. The initiator writes ring A and reads ring B; the
 * acceptor the other way round. Each side attaches its own struct
 * cn_endpoint, which keeps the authoritative copies of its own indices and
 * a validated cache of the peer's, so nothing the peer scribbles into the
 * region can make this side read or write outside it.
 *
 * Errors are returned as negative errno values:
 *   -EAGAIN      would block (non-blocking call) or timed out
 *   -EPIPE       writing after local shutdown or after the peer stopped reading
 *   -ECONNRESET  the peer reset the circuit (reported once; then EOF / EPIPE)
 *   -EPROTO      the peer broke the protocol (bad index, record, flag);
 *                the circuit is dead for good. The socket layer reports it
 *                to applications as ECONNRESET.
 *   -EMSGSIZE    datagram larger than the circuit can ever carry
 *   -EINTR       a signal arrived while blocked and nothing was transferred
 *
 * Threads: the send side (send, reserve/commit) and the receive side (recv,
 * peek/consume, cn_readable) may run in two different threads at once, and
 * cn_poll, cn_poll_arm, cn_shutdown, cn_reset and cn_take_error may be called
 * from any thread alongside them. Two threads on the same side need a lock of
 * the caller's; cn_close needs the endpoint to be otherwise idle.
 */
#ifndef CIRCNET_CIRCUIT_H
#define CIRCNET_CIRCUIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <circnet/layout.h>
#include <circnet/notify.h>

enum cn_role {
	CN_ROLE_INITIATOR = 0, /* writes ring A, reads ring B */
	CN_ROLE_ACCEPTOR = 1,  /* writes ring B, reads ring A */
};

struct cn_circuit_params {
	enum cn_mode mode;
	uint32_t ring_size[2]; /* per direction; 0 = CN_RING_DEFAULT */
	bool pending;	       /* the acceptor reports the connect's outcome (layout.h) */
	uint64_t stamp;	       /* the header's stamp (layout.h); 0: none */
};

/* Flags for send/recv/reserve/peek. */
#define CN_MSG_DONTWAIT	  0x01u /* never block: -EAGAIN instead */
#define CN_MSG_PEEK	  0x02u /* recv: copy but do not consume */
#define CN_MSG_WAITALL	  0x04u /* stream recv: block until len bytes, EOF or error */
#define CN_MSG_TRUNC	  0x08u /* dgram recv: return the datagram's real length */
#define CN_RESERVE_CONTIG 0x10u /* reserve: one contiguous span only */

/* Output flags of cn_recvv. */
#define CN_MSGF_TRUNC 0x1u /* the datagram was longer than the buffer */
#define CN_MSGF_EOF   0x2u /* dgram: the peer will send no more (returned 0) */

/* Readiness bits, same values as <poll.h> so callers can pass them through. */
#define CN_POLLIN    0x001u
#define CN_POLLOUT   0x004u
#define CN_POLLERR   0x008u
#define CN_POLLHUP   0x010u
#define CN_POLLRDHUP 0x2000u

struct cn_span {
	void *ptr;
	size_t len;
};

/* Per side, so the sending and the receiving thread never share a counter. */
struct cn_ep_stats {
	uint64_t tx_bytes, tx_msgs;
	uint64_t tx_wakeups; /* peer readers signalled after a commit */
	uint64_t tx_sleeps;  /* times a writer went to sleep */
	uint64_t rx_bytes, rx_msgs;
	uint64_t rx_wakeups; /* peer writers signalled after a consume */
	uint64_t rx_sleeps;  /* times a reader went to sleep */
};

/*
 * Local, validated view of one ring. idx is this side's own index (prod for
 * the ring we write, cons for the ring we read) and is authoritative; peer
 * is the last validated value of the other side's index.
 */
struct cn_ring_view {
	struct cn_layout_ctrl *ctrl;
	unsigned char *data;
	uint64_t size;
	uint64_t mask;
	uint64_t idx;
	uint64_t peer;
};

/* Private fields: use the functions below. Embeddable, no allocation. */
struct cn_endpoint {
	struct cn_ring_view tx, rx;
	enum cn_mode mode;
	uint32_t dgram_max;
	_Atomic uint32_t state;	 /* CN_ST_* (circuit/internal.h), set from either side */
	_Atomic int pending_err; /* reported once: -ECONNRESET */
	/* Wake-ups: we sleep on wait_*, the peer on what we signal via sig_*. */
	struct cn_notifier *wait_rx, *wait_tx, *sig_rx, *sig_tx;
	uint32_t spin_ns;
	int rcv_timeout_ms, snd_timeout_ms;
	/* zero-copy state */
	uint64_t resv_idx; /* where the reserved bytes (or record) start */
	uint32_t resv_len;
	uint32_t resv_skip; /* dgram: tail bytes to cover with a wrap record */
	bool resv_active;
	uint64_t peek_idx; /* dgram: index of the record a peek returned */
	uint32_t peek_len; /* bytes a consume may release */
	bool peek_active;
	struct cn_ep_stats stats;
};

/* ---- setup ---- */

/* Bytes a circuit with these parameters needs; 0 if the parameters are invalid. */
size_t cn_circuit_size(const struct cn_circuit_params *p);

/* Format a zeroed or reused region of size bytes as a new circuit. 0 or -EINVAL. */
int cn_circuit_format(void *base, size_t size, const struct cn_circuit_params *p);

/*
 * Format only the head of a circuit (header and control blocks, the first
 * CN_DATA_OFF bytes) into buf, for a formatter that writes it into memory it
 * does not map (the operator, with pwrite into a pair region's memfd).
 * buflen >= CN_DATA_OFF, buf aligned to CN_CTRL_STRIDE as a region is. 0 or -EINVAL.
 */
int cn_circuit_format_head(void *buf, size_t buflen, const struct cn_circuit_params *p);

/*
 * Attach one endpoint to a formatted region. Reads and validates the header
 * once; later changes to it by anyone are ignored. -EPROTO on a bad header.
 */
int cn_ep_attach(struct cn_endpoint *ep, void *base, size_t size, enum cn_role role);

/* The same, and the header's stamp must be stamp (unless 0): else -EPROTO. */
int cn_ep_attach_stamped(struct cn_endpoint *ep, void *base, size_t size, enum cn_role role,
			 uint64_t stamp);

/*
 * Wire the wake-up objects. wait_rx: we sleep on it for data; wait_tx: for
 * space; sig_rx / sig_tx: the peer's. wait_rx and wait_tx may be the same
 * notifier if only one thread ever blocks on this endpoint at a time.
 * Without notifiers, blocking calls fall back to polling with short sleeps.
 */
void cn_ep_set_notifiers(struct cn_endpoint *ep, struct cn_notifier *wait_rx,
			 struct cn_notifier *wait_tx, struct cn_notifier *sig_rx,
			 struct cn_notifier *sig_tx);

/* Busy-poll budget before sleeping, in nanoseconds (0 = sleep at once). */
void cn_ep_set_spin(struct cn_endpoint *ep, uint32_t spin_ns);

/* Timeouts of blocking calls in milliseconds, -1 = forever (SO_RCVTIMEO/SNDTIMEO). */
void cn_ep_set_timeouts(struct cn_endpoint *ep, int rcv_ms, int snd_ms);

/* ---- copying API (built on the zero-copy API) ---- */

/*
 * Stream: writes up to the total length; a blocking call returns when all
 * bytes are written (or an error stops it after a partial write, which is
 * then returned). Datagram: writes one datagram atomically or nothing.
 */
ssize_t cn_sendv(struct cn_endpoint *ep, const struct iovec *iov, int iovcnt, unsigned flags);

/*
 * Stream: returns 1..len bytes, 0 at EOF. Datagram: one datagram, truncated
 * to the buffer (CN_MSGF_TRUNC in *out_flags; with CN_MSG_TRUNC the real
 * length is returned, as recv(2) does); 0 with CN_MSGF_EOF once the peer
 * shut down and everything was read (a zero-length datagram returns 0
 * without it). out_flags may be NULL.
 */
ssize_t cn_recvv(struct cn_endpoint *ep, const struct iovec *iov, int iovcnt, unsigned flags,
		 unsigned *out_flags);

static inline ssize_t cn_send(struct cn_endpoint *ep, const void *buf, size_t len, unsigned flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return cn_sendv(ep, &iov, 1, flags);
}

static inline ssize_t cn_recv(struct cn_endpoint *ep, void *buf, size_t len, unsigned flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return cn_recvv(ep, &iov, 1, flags, NULL);
}

/* ---- zero-copy API ----
 *
 * Writer: cn_reserve() returns spans pointing into the ring; fill them, then
 * cn_commit() publishes. Reader: cn_peek() returns spans of readable data;
 * cn_consume() releases them. Only one reservation (and one peek) is open
 * at a time; a new reserve/peek replaces the previous one.
 *
 * Stream mode: reserve returns 1..n bytes in up to two spans (the second
 * when the space wraps around the ring end), or only the first span with
 * CN_RESERVE_CONTIG; commit publishes any prefix of it. peek returns every
 * readable byte in up to two spans (0 at EOF); consume releases a prefix.
 *
 * Datagram mode: reserve(n) returns exactly one contiguous span of n bytes
 * (or -EAGAIN / -EMSGSIZE); commit(m) sends one datagram of m <= n bytes.
 * peek returns the next datagram as one span; consume releases it whole.
 * At end of stream peek returns 0 with sp[0].ptr == NULL (a zero-length
 * datagram has a non-NULL pointer).
 *
 * Peeked memory is shared with the peer, which can change it at any time:
 * copy a field out before you validate and use it.
 */
ssize_t cn_reserve(struct cn_endpoint *ep, size_t n, struct cn_span sp[2], unsigned flags);
int cn_commit(struct cn_endpoint *ep, size_t n);
ssize_t cn_peek(struct cn_endpoint *ep, struct cn_span sp[2], unsigned flags);
int cn_consume(struct cn_endpoint *ep, size_t n);

/* ---- state ---- */

/*
 * Current readiness (CN_POLL*), computed from the shared indices and flags
 * without touching either side's local state, so any thread may call it.
 * In datagram mode a ring holding only a wrap record reads as readable once
 * (the next receive skips it and returns -EAGAIN).
 */
unsigned cn_poll(struct cn_endpoint *ep);

/*
 * Readiness for an event loop: arms the wake-up flags for the requested
 * events (CN_POLLIN, CN_POLLOUT) and re-checks, so that if it returns 0 for
 * an event the corresponding wait notifier will be signalled when the event
 * happens. Call again after each wake-up.
 */
unsigned cn_poll_arm(struct cn_endpoint *ep, unsigned events);

/* Bytes ready to read (FIONREAD: stream bytes, or next datagram's length). */
size_t cn_readable(struct cn_endpoint *ep);

/* Bytes written that the peer has not consumed yet (SIOCOUTQ); 0 once broken. */
size_t cn_unconsumed(struct cn_endpoint *ep);

/* SHUT_RD, SHUT_WR or SHUT_RDWR, as shutdown(2). 0 or -errno. */
int cn_shutdown(struct cn_endpoint *ep, int how);

/* Abortive close: the peer gets ECONNRESET. */
void cn_reset(struct cn_endpoint *ep);
/*
 * The operator revoked the circuit (reload --reset): an abortive close whose
 * reset our side reports as well (ECONNRESET once), as a firewall's reset
 * reaches both ends of a TCP connection.
 */
void cn_revoke(struct cn_endpoint *ep);

/*
 * Close as close(2) on a TCP socket would: a reset if unread data is left
 * (the peer sees ECONNRESET), otherwise an orderly FIN; the peer's writes
 * fail with EPIPE. The endpoint is unusable afterwards (the caller unmaps).
 */
void cn_close(struct cn_endpoint *ep);

/* Fetch and clear a pending asynchronous error (SO_ERROR). 0 if none. */
int cn_take_error(struct cn_endpoint *ep);

/*
 * Tell the endpoint its peer is gone for good (a notifier fd reported
 * POLLHUP, or the operator said so). Like a TCP peer whose process died:
 * reads drain what it sent, then EOF, unless it left our data unread, which
 * is a reset; writes fail. Blocking calls notice by themselves.
 */
void cn_ep_peer_vanished(struct cn_endpoint *ep);

/*
 * For an endpoint that several processes hold (each its own copy of this
 * struct, after fork): take our side's index of the tx (tx true) or rx ring,
 * and our shutdown/reset flags of it, from what the control block last
 * published, i.e. where the sibling that used it last left it. Values a
 * correct history cannot produce break the circuit (-EPROTO). Call with the
 * direction idle in this process (-EBUSY during a reservation or peek).
 * Concurrent use by two processes at once is not covered: one at a time.
 */
int cn_ep_adopt_published(struct cn_endpoint *ep, bool tx);

/*
 * Pending circuits (cn_circuit_params.pending): the initiator asks how the
 * acceptor's connect went: 0 established, -EINPROGRESS still connecting, or
 * the -errno it failed with. A value no acceptor may write is -EPROTO. On a
 * circuit not formatted as pending the answer is always 0: only a caller
 * told so by the operator should ask.
 */
int cn_ep_connect_status(struct cn_endpoint *ep);
/* The acceptor settles it (0 or a positive errno) and wakes the initiator. */
int cn_ep_set_connect_status(struct cn_endpoint *ep, int err);

/* True once the peer broke the protocol. */
bool cn_ep_broken(const struct cn_endpoint *ep);

#endif /* CIRCNET_CIRCUIT_H */
