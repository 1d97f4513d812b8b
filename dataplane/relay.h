/* SPDX-License-Identifier: MIT */
/*
 * dataplane/relay.h - one proxied connection, seen from the circuit: the
 * code every proxy backend shares (kernel sockets here, DPDK + user-space
 * TCP in issue 6). A relay moves bytes between a guest's circuit and a host
 * connection through the backend's host_ops, straight from and into ring
 * spans (the zero-copy API): one copy per byte, made by the host side.
 *
 * Flow control is the rings': a full ring stops reading from the host, a
 * host that takes nothing stops consuming the ring. Half-close and reset
 * cross in both directions. relay_pump() moves what it can and says what
 * the relay waits for; the backend sleeps on that and calls it again.
 */
#ifndef CIRCNET_DATAPLANE_RELAY_H
#define CIRCNET_DATAPLANE_RELAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <circnet/local.h>

struct relay;

/* What the backend provides for the host side of a relay. */
struct relay_host_ops {
	/* Host -> guest: read into iov. Bytes, 0 at EOF, -EAGAIN, or -errno. */
	ssize_t (*recv)(struct relay *r, const struct iovec *iov, int iovcnt);
	/* Guest -> host: write iov. Bytes taken (> 0), -EAGAIN, or -errno. */
	ssize_t (*send)(struct relay *r, const struct iovec *iov, int iovcnt);
	/* The guest shut down writing: send FIN. */
	void (*shutdown_wr)(struct relay *r);
	/* The guest reset (or broke) the circuit: abort the host connection (RST). */
	void (*abort)(struct relay *r);
};

/* What relay_pump() waits for (bits), or RELAY_DONE. */
#define RELAY_WAIT_HOST_IN   0x1u   /* the host connection becoming readable */
#define RELAY_WAIT_HOST_OUT  0x2u   /* the host connection taking more */
#define RELAY_WAIT_GUEST_IN  0x4u   /* the guest writing (data doorbell armed) */
#define RELAY_WAIT_GUEST_OUT 0x8u   /* the guest consuming (space doorbell armed) */
#define RELAY_DONE	     0x100u /* both directions finished, or reset */

struct relay_stats {
	uint64_t to_guest, to_host; /* bytes */
};

struct relay {
	struct cn_local_ep ep; /* our end: acceptor (outbound) or initiator (published) */
	uint64_t circuit_id;
	const struct relay_host_ops *ops;
	bool dgram;	/* a datagram circuit (UDP): one record per datagram */
	bool polled;	/* the backend pumps it every round: never arm the doorbells */
	bool host_eof;	/* host sent FIN: the circuit got a shutdown */
	bool guest_eof; /* guest sent FIN: the host got a shutdown */
	bool reset;	/* one side reset: both are torn down */
	int host_err;	/* what ended the host side, for the logs */
	bool rst_pending; /* the host reset; the guest reads what came first */
	int64_t rst_deadline_ms; /* a guest that does not read by then gets it anyway */
	struct relay_stats st;
};

/*
 * Move bytes both ways until nothing moves. Returns the RELAY_WAIT_* bits to
 * sleep on (the guest-side ones are armed, unless polled: the doorbells will
 * ring), or RELAY_DONE when the relay can be freed.
 */
unsigned int relay_pump(struct relay *r);

/*
 * A host reset held back while the guest reads what came before it is now
 * due (a backend that sleeps calls relay_pump then; a polled one just pumps).
 */
bool relay_rst_due(const struct relay *r);

/* The host connection failed or was reset: reset the guest's circuit. */
void relay_host_failed(struct relay *r, int err);

#endif
