// SPDX-License-Identifier: MIT
/*
 * dataplane/relay.c - the circuit side of a proxied connection, shared by
 * every backend (relay.h). Each direction runs until it would block:
 *   host -> guest: reserve free ring space, let the host side read into it,
 *                  commit what came; a full ring arms the space doorbell;
 *   guest -> host: peek the ring's data, let the host side send from it,
 *                  consume what it took; an empty ring arms the data doorbell.
 * Arming is cn_poll_arm(): it sets the want flag and looks again, so a
 * guest that wrote (read) in between is seen now or rings the doorbell.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "relay.h"

#define RELAY_RESERVE_MAX (1u << 30) /* "as much as there is" */
/* how long a polled relay lets the guest read what came before a host reset */
#define RELAY_RST_GRACE_MS 2000

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void relay_host_failed(struct relay *r, int err)
{
	r->host_err = err;
	if (r->reset)
		return;
	/* the remote went silent or away: the guest reads why, not just a reset */
	if (!r->dgram && (err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH))
		cn_ep_set_connect_status(&r->ep.ep, err);
	cn_reset(&r->ep.ep); /* the guest reads ECONNRESET (or the reason above) */
	r->reset = true;
}

/* The ring spans as an iovec for the host side; how many entries. */
static int span_iov(const struct cn_span sp[2], struct iovec iov[2])
{
	iov[0] = (struct iovec){ sp[0].ptr, sp[0].len };
	iov[1] = (struct iovec){ sp[1].ptr, sp[1].len };
	return sp[1].len ? 2 : 1;
}

/*
 * Arm the guest side for ev and look again: true if it became ready
 * meanwhile. A polled relay never arms: its backend looks at the ring again
 * on its next round anyway, and an armed doorbell would only cost the guest
 * a system call per write to wake a core that is not asleep.
 */
static bool ready_after_arm(struct relay *r, unsigned int ev)
{
	if (r->polled)
		return false;
	return cn_poll_arm(&r->ep.ep, ev) & (ev | CN_POLLERR | CN_POLLHUP);
}

/*
 * Wait for the guest to consume: its next read rings our space doorbell
 * (armed even though there is room: the room is not what we wait for).
 */
static unsigned int wait_guest_read(struct relay *r)
{
	if (!r->polled)
		cn_poll_arm(&r->ep.ep, CN_POLLOUT);
	return RELAY_WAIT_GUEST_OUT;
}

bool relay_rst_due(const struct relay *r)
{
	return r->rst_pending && mono_ms() >= r->rst_deadline_ms;
}

/* The guest reset (or broke) the circuit, or left for good: RST to the host. */
static unsigned int abort_host(struct relay *r)
{
	r->ops->abort(r);
	r->reset = true;
	return RELAY_DONE;
}

/*
 * The guest closed its socket: it reads no more, but what it wrote before
 * still goes out (guest_to_host drains it, then its FIN). As Linux does for
 * a closed socket, only data that arrives now earns the host a reset.
 */
static unsigned int guest_closed(struct relay *r)
{
	char byte;
	struct iovec one = { &byte, 1 };
	ssize_t got = r->ops->recv(r, &one, 1);

	if (got == -EAGAIN)
		return RELAY_WAIT_HOST_IN;
	if (got == 0) {
		r->host_eof = true;
		return 0;
	}
	return abort_host(r);
}

/*
 * Datagrams, host -> guest: reserve room for the largest datagram, receive
 * one into it, commit it as one record (an empty datagram is a record too).
 * Datagrams have no end of stream: the relay ends when the guest closes.
 */
static unsigned int dgram_to_guest(struct relay *r)
{
	struct cn_endpoint *ep = &r->ep.ep;
	struct cn_span sp[2];
	struct iovec iov;
	ssize_t n, got;

	for (;;) {
		n = cn_reserve(ep, CN_DGRAM_MAX, sp, CN_MSG_DONTWAIT);
		if (n == -EAGAIN) {
			if (ready_after_arm(r, CN_POLLOUT))
				continue;
			return RELAY_WAIT_GUEST_OUT;
		}
		if (n < 0) {
			/* the guest closed (or reset): nothing to tell a UDP peer */
			r->guest_eof = true;
			r->reset = n != -EPIPE;
			return RELAY_DONE;
		}
		iov = (struct iovec){ sp[0].ptr, sp[0].len };
		got = r->ops->recv(r, &iov, 1);
		if (got == -EAGAIN)
			return RELAY_WAIT_HOST_IN; /* the reservation lapses with the next one */
		if (got < 0) {
			/*
			 * An ICMP error (ECONNREFUSED, ...): the circuit ends with it,
			 * and its status word tells the guest which, as the kernel
			 * tells a connected UDP socket.
			 */
			cn_ep_set_connect_status(ep, (int)-got);
			relay_host_failed(r, (int)-got);
			return RELAY_DONE;
		}
		cn_commit(ep, (size_t)got);
		r->st.to_guest += (uint64_t)got;
	}
}

/* Datagrams, guest -> host: each record is sent whole, as one datagram. */
static unsigned int dgram_to_host(struct relay *r)
{
	struct cn_endpoint *ep = &r->ep.ep;
	struct cn_span sp[2];
	struct iovec iov;
	ssize_t n, sent;

	for (;;) {
		n = cn_peek(ep, sp, CN_MSG_DONTWAIT);
		if (n == -EAGAIN) {
			if (ready_after_arm(r, CN_POLLIN))
				continue;
			return RELAY_WAIT_GUEST_IN;
		}
		if (n < 0 || (n == 0 && !sp[0].ptr)) {
			r->guest_eof = true; /* closed, or reset: the flow is over */
			r->reset = n < 0;
			return RELAY_DONE;
		}
		iov = (struct iovec){ sp[0].ptr, sp[0].len };
		sent = r->ops->send(r, &iov, 1);
		if (sent == -EAGAIN)
			return RELAY_WAIT_HOST_OUT;
		/* a refused or oversized datagram is lost, as on a network */
		cn_consume(ep, (size_t)n);
		if (sent > 0)
			r->st.to_host += (uint64_t)sent;
	}
}

static unsigned int host_to_guest(struct relay *r)
{
	struct cn_endpoint *ep = &r->ep.ep;
	struct cn_span sp[2];
	struct iovec iov[2];
	ssize_t n, got;

	while (!r->host_eof) {
		n = cn_reserve(ep, RELAY_RESERVE_MAX, sp, CN_MSG_DONTWAIT);
		if (n == -EAGAIN) {
			if (ready_after_arm(r, CN_POLLOUT))
				continue;
			return RELAY_WAIT_GUEST_OUT;
		}
		if (n == -EPIPE)
			return guest_closed(r);
		if (n < 0)
			return abort_host(r);
		got = r->ops->recv(r, iov, span_iov(sp, iov));
		cn_commit(ep, got > 0 ? (size_t)got : 0);
		if (got > 0) {
			r->st.to_guest += (uint64_t)got;
			continue;
		}
		if (got == -EAGAIN)
			return RELAY_WAIT_HOST_IN;
		if (got == 0) {
			r->host_eof = true;
			cn_shutdown(ep, SHUT_WR); /* FIN after the data: the guest reads EOF */
			return 0;
		}
		if (got == -ECONNRESET && cn_unconsumed(ep)) {
			/*
			 * As Linux, the data that came before a reset is still read
			 * (a fast server's whole reply can come before the guest's
			 * connect() returns): a reset now would discard it. Wait for
			 * the guest to read it, up to RELAY_RST_GRACE_MS.
			 */
			r->rst_pending = true;
			r->rst_deadline_ms = mono_ms() + RELAY_RST_GRACE_MS;
			return wait_guest_read(r);
		}
		relay_host_failed(r, (int)-got);
		return RELAY_DONE;
	}
	return 0;
}

static unsigned int guest_to_host(struct relay *r)
{
	struct cn_endpoint *ep = &r->ep.ep;
	struct cn_span sp[2];
	struct iovec iov[2];
	ssize_t n, sent;

	while (!r->guest_eof) {
		n = cn_peek(ep, sp, CN_MSG_DONTWAIT);
		if (n == -EAGAIN) {
			if (ready_after_arm(r, CN_POLLIN))
				continue;
			return RELAY_WAIT_GUEST_IN;
		}
		if (n == 0) {
			r->guest_eof = true;
			r->ops->shutdown_wr(r);
			return 0;
		}
		if (n < 0)
			return abort_host(r);
		sent = r->ops->send(r, iov, span_iov(sp, iov));
		if (sent > 0) {
			cn_consume(ep, (size_t)sent);
			r->st.to_host += (uint64_t)sent;
			continue;
		}
		if (sent == -EAGAIN)
			return RELAY_WAIT_HOST_OUT;
		relay_host_failed(r, (int)-sent);
		return RELAY_DONE;
	}
	return 0;
}

unsigned int relay_pump(struct relay *r)
{
	unsigned int wait;

	if (r->reset)
		return RELAY_DONE;
	if (r->rst_pending) {
		/* the guest read it all (or left, or will not read): the reset now */
		if (cn_unconsumed(&r->ep.ep) && !relay_rst_due(r))
			return wait_guest_read(r);
		relay_host_failed(r, ECONNRESET);
		return RELAY_DONE;
	}
	if (r->dgram) {
		wait = dgram_to_guest(r);
		return wait & RELAY_DONE ? RELAY_DONE : wait | dgram_to_host(r);
	}
	wait = host_to_guest(r);
	if (wait & RELAY_DONE)
		return RELAY_DONE;
	wait |= guest_to_host(r);
	if (wait & RELAY_DONE)
		return RELAY_DONE;
	if (r->host_eof && r->guest_eof)
		return RELAY_DONE; /* both FINs crossed; what we wrote stays for the guest */
	return wait;
}
