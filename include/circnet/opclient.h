/* SPDX-License-Identifier: MIT */
/*
 * circnet/opclient.h - the guest side of the operator protocol
 * (circnet/proto.h): register, listen, connect, accept, report closes.
 * Used by the socket preload, by test guests and by benchmarks.
 *
 * A struct cn_op is one session, i.e. one connection to the guest's operator
 * socket. Calls on one session are not thread-safe; use a session per thread
 * or a lock. A session that listens is the listener's channel: the operator
 * pushes connections on it and its fd turns readable when one is waiting,
 * so it can sit in poll/epoll like a listening socket. All functions return
 * 0 or a negative errno; errors the operator reports (ECONNREFUSED,
 * ENETUNREACH, EACCES, ...) come back as they would from connect or listen.
 * -ECONNABORTED means the operator went away: open a new session.
 */
#ifndef CIRCNET_OPCLIENT_H
#define CIRCNET_OPCLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <circnet/local.h>
#include <circnet/proto.h>

#define CN_OP_RESETS 64
#define CN_OP_PENDING 16 /* connections pushed while a request waited for its reply */
#define CN_OP_CLOSED_BATCH 16
#define CN_OP_INFLIGHT 64 /* pipelined connects per session (cn_op_connect_send) */

/* A pipelined connect's reply, kept until cn_op_connect_recv asks for it. */
struct cn_op_reply {
	uint32_t seq;
	bool arrived;
	int err; /* an ERROR reply's errno (positive), EPROTO for a wrong type; 0: msg */
	struct cn_msg_circuit msg;
	int fds[CN_MSG_MAX_FDS];
	int nfds;
};

struct cn_op {
	int fd;
	/*
	 * A durable listener session (cn_op_listen_channel): fd is our end of a
	 * socketpair, chan_peer the end the operator serves, which we keep too,
	 * so that the operator's death neither hangs fd up nor makes it
	 * readable. Notices on it never block.
	 */
	bool durable;
	int chan_peer;
	uint32_t seq;
	int timeout_ms; /* for replies; default 10 s */
	bool keep_memfd; /* circuits opened here keep a dup of their memfd (conn.memfd) */
	struct cn_msg_hello_ok info; /* who the operator says we are */
	/* RESET pushes that arrived while waiting for a reply */
	unsigned int nresets;
	uint64_t resets[CN_OP_RESETS];
	/* NEW_CONN pushes that arrived during a request (a bound UDP socket's session) */
	unsigned int npending;
	struct cn_op_pending {
		struct cn_msg_circuit msg;
		int fds[CN_MSG_MAX_FDS];
		int nfds;
	} pending[CN_OP_PENDING];
	/* pipelined connects sent and not collected yet (allocated on first use) */
	unsigned int ninflight;
	struct cn_op_reply *inflight;
	/* CLOSED notices not sent yet: they ride along with the next message */
	unsigned int nclosed;
	uint64_t closed[CN_OP_CLOSED_BATCH];
	/* the proxy stack: PUBLISH pushes, whenever they arrive */
	void (*on_publish)(void *arg, const struct cn_msg_publish *m);
	void *cb_arg;
	/* RESET pushes (a revoked circuit), whenever they are read; also noted in resets[] */
	void (*on_reset)(void *arg, uint64_t circuit_id);
	void *reset_arg;
};

/* What a circuit connects: from CONNECT_OK or NEW_CONN. */
struct cn_op_conn {
	uint64_t circuit_id;
	uint64_t listener_id;
	unsigned int l4;
	enum cn_role role;
	struct cn_addr local, remote;
	int memfd; /* with keep_memfd: its memfd (close-on-exec), else -1; pooled: -1, see cn_chunk_fd */
	unsigned int flags; /* CN_CIRCUIT_PENDING: see cn_ep_connect_status() */
	/* a pooled circuit (pool.h): its chunk and slot; chunk_id 0: a memfd of its own */
	uint64_t chunk_id, slot_off;
	uint32_t ring_size[2];
};

/* Connect to a guest's operator socket and register (HELLO). */
int cn_op_open(struct cn_op *op, const char *path);
/* The same, waiting at most hello_ms for the operator's HELLO_OK (-ETIMEDOUT). */
int cn_op_open_within(struct cn_op *op, const char *path, int hello_ms);
void cn_op_close(struct cn_op *op);

/* Listen (tcp) or bind (udp) on addr; port 0 picks one. *bound: what we got. */
int cn_op_listen(struct cn_op *op, unsigned int l4, const struct cn_addr *addr, uint32_t backlog,
		 struct cn_addr *bound, uint64_t *listener_id);
/* The same with CN_LISTEN_* flags (IPV6_V6ONLY). */
int cn_op_listen_flags(struct cn_op *op, unsigned int l4, const struct cn_addr *addr,
		       uint32_t backlog, unsigned int flags, struct cn_addr *bound,
		       uint64_t *listener_id);
int cn_op_unlisten(struct cn_op *op, uint64_t listener_id);

/*
 * Listen through the durable channel lst, asking on session ctl (the
 * process's). lst not open yet: a new channel is made (lst then needs no
 * cn_op_open; cn_op_close closes it). lst durable already: the same
 * channel is sent again, to register it with an operator that restarted
 * (idempotent with the same operator: the listener as it is comes back).
 * Errors as cn_op_listen; the channel survives a failed re-registration.
 */
int cn_op_listen_channel(struct cn_op *ctl, struct cn_op *lst, unsigned int l4,
			 const struct cn_addr *addr, uint32_t backlog, unsigned int flags,
			 struct cn_addr *bound, uint64_t *listener_id);

/*
 * A durable channel not registered anywhere yet (a listener made while the
 * operator is down): cn_op_listen_channel registers it later.
 */
int cn_op_channel_init(struct cn_op *lst);

/*
 * Is the operator behind session op still there? Looks without waiting
 * and without reading: false once the operator's end hung up.
 */
bool cn_op_alive(const struct cn_op *op);

/*
 * Set up a circuit to dst and open our end in *ep. src may be NULL; for udp
 * it must be the address bound on this session.
 */
int cn_op_connect(struct cn_op *op, unsigned int l4, const struct cn_addr *src,
		  const struct cn_addr *dst, struct cn_local_ep *ep, struct cn_op_conn *conn);
/*
 * The same with CN_CONNECT_* flags (the proxy stack's published ports).
 * Unlike cn_op_connect(), -EAGAIN when the listener's backlog is full: a
 * proxy stack holding a client asks again, as a Linux client resends a SYN.
 */
int cn_op_connect_flags(struct cn_op *op, unsigned int l4, const struct cn_addr *src,
			const struct cn_addr *dst, unsigned int flags, struct cn_local_ep *ep,
			struct cn_op_conn *conn);

/*
 * Pipelined connects: cn_op_connect_send() sends the request and returns at
 * once with its sequence number in *seq; cn_op_connect_recv() waits for that
 * request's reply (replies that come first are kept for their own calls;
 * other requests and accepts on the session keep working meanwhile) and
 * opens the circuit as cn_op_connect_flags() does, with its errors. Up to
 * CN_OP_INFLIGHT in flight per session (-EBUSY beyond); -ENOENT for a seq
 * not in flight. Replies never collected are dropped by cn_op_close(); the
 * operator then sees the circuit's lease go and closes that end.
 */
int cn_op_connect_send(struct cn_op *op, unsigned int l4, const struct cn_addr *src,
		       const struct cn_addr *dst, unsigned int flags, uint32_t *seq);
int cn_op_connect_recv(struct cn_op *op, uint32_t seq, struct cn_local_ep *ep,
		       struct cn_op_conn *conn);

/*
 * Take the next connection pushed to this listener session and open it.
 * With nonblock, -EAGAIN if none is waiting; else waits up to timeout_ms.
 */
int cn_op_accept(struct cn_op *op, struct cn_local_ep *ep, struct cn_op_conn *conn, int nonblock);

/*
 * Tell the operator our end of a circuit is closed (no reply). Notices are
 * batched: they go out with this session's next request or accept, when
 * CN_OP_CLOSED_BATCH have gathered, or on cn_op_flush / cn_op_close, so
 * that closing a connection does not cost an operator wake-up of its own.
 */
int cn_op_closed(struct cn_op *op, uint64_t circuit_id);
int cn_op_flush(struct cn_op *op);

int cn_op_query(struct cn_op *op, struct cn_msg_query_ok *out);

/*
 * Read what the operator pushed to an idle session (RESET, PUBLISH;
 * NEW_CONN is kept for the next accept), without waiting. Only when no
 * request is in flight on op (its caller holds the session's lock): a
 * reply would be taken for a push. 0, or -ECONNABORTED once the operator
 * hung up.
 */
int cn_op_take_pushes(struct cn_op *op);

/*
 * After an operator restart: tell the new operator of our end of a circuit
 * an earlier one set up (CN_MSG_CLAIM, proto.h), proven by its memfd. No
 * reply; the operator counts it or logs why not.
 */
int cn_op_claim(struct cn_op *op, const struct cn_op_conn *conn, int memfd);

/* Conversions between socket addresses and protocol addresses. */
int cn_addr_from_sockaddr(struct cn_addr *a, const struct sockaddr *sa, socklen_t len);
socklen_t cn_addr_to_sockaddr(const struct cn_addr *a, struct sockaddr_storage *ss);
/* "10.0.0.1:80", "[fd00::1]:80": 0 or -EINVAL. */
int cn_addr_parse(struct cn_addr *a, const char *s);
/* The same form back, into buf (48 bytes hold any). */
void cn_addr_format(const struct cn_addr *a, char *buf, size_t len);

#endif
