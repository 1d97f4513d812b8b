// SPDX-License-Identifier: MIT
/*
 * guest/opclient.c - the guest side of the operator protocol (opclient.h).
 *
 * The operator is trusted to tell the truth but not to be alive: every wait
 * is bounded, every reply validated like any other message, and a session
 * whose operator vanished reports -ECONNABORTED so that the caller opens a
 * new one (the operator may have restarted).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <circnet/notify.h>
#include <circnet/opclient.h>
#include <circnet/pool.h>

#define DEFAULT_TIMEOUT_MS 10000

/* Receive one validated message; fds (if any) into fds[]. */
static int recv_msg(struct cn_op *op, union cn_msg *m, int *fds, int *nfds, int timeout_ms)
{
	struct pollfd p = { .fd = op->fd, .events = POLLIN };
	const char *why;
	ssize_t n;
	int i, rc;

	for (;;) {
		rc = poll(&p, 1, timeout_ms);
		/*
		 * A signal handler ran (the DPDK tap PMD's SIGIO, an app's
		 * timer): look again. The wait may start over; a signal storm
		 * lengthens it, it never turns it into an error.
		 */
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return timeout_ms == 0 ? -EAGAIN : -ETIMEDOUT;
		*nfds = 0;
		n = cn_recv_fds(op->fd, fds, CN_MSG_MAX_FDS, nfds, m, sizeof(*m));
		if (n == -EAGAIN)
			return -EAGAIN;
		if (n == 0 || n == -ECONNRESET)
			return -ECONNABORTED;
		if (n < 0)
			return (int)n;
		rc = cn_msg_validate(m, (size_t)n, *nfds, &why);
		if (rc) {
			for (i = 0; i < *nfds; i++)
				close(fds[i]);
			return -EPROTO;
		}
		for (i = 0; i < *nfds; i++)
			fds[i] = cn_fd_lift(fds[i]);
		if (m->h.type != CN_MSG_PUBLISH)
			return 0;
		/* the proxy stack's published ports: whenever they come */
		if (op->on_publish)
			op->on_publish(op->cb_arg, &m->publish);
	}
}

static void note_reset(struct cn_op *op, const union cn_msg *m)
{
	if (op->nresets < CN_OP_RESETS)
		op->resets[op->nresets++] = m->reset.circuit_id;
	if (op->on_reset)
		op->on_reset(op->reset_arg, m->reset.circuit_id);
}

/* A NEW_CONN that came while the session was busy: the next accept takes it. */
static void keep_pending(struct cn_op *op, const union cn_msg *m, const int *fds, int nfds)
{
	struct cn_op_pending *p;

	if (op->npending >= CN_OP_PENDING) {
		while (nfds > 0)
			close(fds[--nfds]);
		return;
	}
	p = &op->pending[op->npending++];
	p->msg = m->circuit;
	p->nfds = nfds;
	memcpy(p->fds, fds, sizeof(int) * (size_t)nfds);
}

/*
 * A reply to one of our pipelined connects (cn_op_connect_send) that came
 * while we waited for something else: kept for cn_op_connect_recv. False
 * (nothing taken) when m answers no connect in flight.
 */
static bool keep_reply(struct cn_op *op, const union cn_msg *m, const int *fds, int nfds)
{
	struct cn_op_reply *r = NULL;
	unsigned int i;

	for (i = 0; m->h.seq && i < op->ninflight; i++)
		if (op->inflight[i].seq == m->h.seq && !op->inflight[i].arrived)
			r = &op->inflight[i];
	if (!r)
		return false;
	r->arrived = true;
	r->nfds = 0;
	if (m->h.type == CN_MSG_CONNECT_OK && m->circuit.role == CN_ROLE_INITIATOR) {
		r->err = 0;
		r->msg = m->circuit;
		r->nfds = nfds;
		memcpy(r->fds, fds, sizeof(int) * (size_t)nfds);
		return true;
	}
	r->err = m->h.type == CN_MSG_ERROR && m->error.err > 0 ? (int)m->error.err : EPROTO;
	while (nfds > 0)
		close(fds[--nfds]);
	return true;
}

/*
 * A message nobody is waiting for right now goes where it belongs: a RESET
 * push is noted, a NEW_CONN kept for the next accept, a pipelined connect's
 * reply kept for its collector; anything else (a stray) is dropped.
 */
static void keep_unasked(struct cn_op *op, const union cn_msg *m, int *fds, int nfds)
{
	if (m->h.type == CN_MSG_RESET && m->h.seq == 0)
		note_reset(op, m);
	else if (m->h.type == CN_MSG_NEW_CONN)
		keep_pending(op, m, fds, nfds);
	else if (!keep_reply(op, m, fds, nfds))
		while (nfds > 0)
			close(fds[--nfds]);
}

/* A send's failure: the operator is gone, or (a durable channel) not reading. */
static int send_error(const struct cn_op *op, int err)
{
	if (err == EPIPE || err == ECONNRESET || (op->durable && err == EAGAIN))
		return -ECONNABORTED;
	return -err;
}

/*
 * Send msg (may be NULL) after the pending CLOSED notices, all in one
 * sendmmsg: the operator wakes once for the lot. On a durable channel
 * nothing waits: with no operator reading, its queue fills and notices
 * are dropped (they would mean nothing to the next operator anyway).
 */
static int send_with_closed(struct cn_op *op, const struct cn_msg_hdr *msg)
{
	int flags = MSG_NOSIGNAL | (op->durable ? MSG_DONTWAIT : 0);
	struct cn_msg_id ids[CN_OP_CLOSED_BATCH];
	struct mmsghdr mm[CN_OP_CLOSED_BATCH + 1];
	struct iovec iov[CN_OP_CLOSED_BATCH + 1];
	unsigned int n = 0, i, sent = 0;

	memset(mm, 0, sizeof(mm));
	for (i = 0; i < op->nclosed; i++, n++) {
		cn_msg_init(&ids[i].h, CN_MSG_CLOSED, sizeof(ids[i]), 0);
		ids[i].id = op->closed[i];
		iov[n] = (struct iovec){ &ids[i], sizeof(ids[i]) };
	}
	if (msg)
		iov[n++] = (struct iovec){ (void *)msg, msg->len };
	for (i = 0; i < n; i++) {
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	op->nclosed = 0; /* lost with the session if this fails: it is dead then */
	while (sent < n) {
		int r = sendmmsg(op->fd, mm + sent, n - sent, flags);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return send_error(op, errno);
		}
		sent += (unsigned int)r;
	}
	return 0;
}

/*
 * Send a request and wait for its reply, keeping pushes that come between.
 * pass: an fd to send with the request (a listener's channel), or -1.
 */
static int call_pass(struct cn_op *op, struct cn_msg_hdr *req, int pass, union cn_msg *rep,
		     int *fds, int *nfds)
{
	int err, i;

	if (!++op->seq)
		++op->seq; /* 0 is for pushes */
	req->seq = op->seq;
	if (pass < 0) {
		err = send_with_closed(op, req);
	} else {
		err = op->nclosed ? send_with_closed(op, NULL) : 0;
		if (!err)
			err = cn_send_fds(op->fd, &pass, 1, req, req->len);
		if (err)
			err = send_error(op, -err);
	}
	if (err)
		return err;
	for (;;) {
		*nfds = 0;
		err = recv_msg(op, rep, fds, nfds, op->timeout_ms);
		if (err)
			return err;
		if (rep->h.type == CN_MSG_RESET && rep->h.seq == 0) {
			note_reset(op, rep);
			continue;
		}
		if (rep->h.seq == req->seq)
			break;
		if (rep->h.type == CN_MSG_NEW_CONN) {
			keep_pending(op, rep, fds, *nfds);
			continue;
		}
		if (keep_reply(op, rep, fds, *nfds))
			continue;
		for (i = 0; i < *nfds; i++)
			close(fds[i]); /* a stray push: drop */
	}
	if (rep->h.type == CN_MSG_ERROR)
		return -rep->error.err;
	return 0;
}

static int call(struct cn_op *op, struct cn_msg_hdr *req, union cn_msg *rep, int *fds, int *nfds)
{
	return call_pass(op, req, -1, rep, fds, nfds);
}

int cn_op_open(struct cn_op *op, const char *path)
{
	return cn_op_open_within(op, path, DEFAULT_TIMEOUT_MS);
}

int cn_op_open_within(struct cn_op *op, const char *path, int hello_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct cn_msg_hello req;
	union cn_msg rep;
	int fds[CN_MSG_MAX_FDS], nfds, err;

	memset(op, 0, sizeof(*op));
	op->timeout_ms = hello_ms;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	op->fd = cn_fd_lift(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (op->fd < 0)
		return -errno;
	if (connect(op->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		cn_op_close(op);
		return err;
	}
	cn_msg_init(&req.h, CN_MSG_HELLO, sizeof(req), 0);
	req.pid = (uint32_t)getpid();
	err = call(op, &req.h, &rep, fds, &nfds);
	if (!err && rep.h.type != CN_MSG_HELLO_OK)
		err = -EPROTO;
	if (err) {
		cn_op_close(op);
		return err;
	}
	op->info = rep.hello_ok;
	op->timeout_ms = DEFAULT_TIMEOUT_MS;
	return 0;
}

void cn_op_close(struct cn_op *op)
{
	while (op->npending > 0) {
		struct cn_op_pending *p = &op->pending[--op->npending];

		while (p->nfds > 0)
			close(p->fds[--p->nfds]);
	}
	while (op->ninflight > 0) {
		struct cn_op_reply *r = &op->inflight[--op->ninflight];

		while (r->arrived && r->nfds > 0)
			close(r->fds[--r->nfds]);
	}
	free(op->inflight);
	op->inflight = NULL;
	if (op->fd >= 0 && op->nclosed)
		send_with_closed(op, NULL);
	if (op->fd >= 0)
		close(op->fd);
	op->fd = -1;
	if (op->durable && op->chan_peer >= 0)
		close(op->chan_peer);
	op->durable = false;
	op->chan_peer = -1;
}

bool cn_op_alive(const struct cn_op *op)
{
	struct pollfd p = { .fd = op->fd, .events = POLLRDHUP };

	if (op->fd < 0)
		return false;
	while (poll(&p, 1, 0) < 0)
		if (errno != EINTR)
			return true; /* cannot tell: the next request will */
	return !(p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

int cn_op_listen(struct cn_op *op, unsigned int l4, const struct cn_addr *addr, uint32_t backlog,
		 struct cn_addr *bound, uint64_t *listener_id)
{
	return cn_op_listen_flags(op, l4, addr, backlog, 0, bound, listener_id);
}

int cn_op_listen_flags(struct cn_op *op, unsigned int l4, const struct cn_addr *addr,
		       uint32_t backlog, unsigned int flags, struct cn_addr *bound,
		       uint64_t *listener_id)
{
	struct cn_msg_listen req;
	union cn_msg rep;
	int fds[CN_MSG_MAX_FDS], nfds, err;

	cn_msg_init(&req.h, CN_MSG_LISTEN, sizeof(req), 0);
	req.l4 = (uint8_t)l4;
	req.flags = (uint8_t)flags;
	req.backlog = backlog;
	if (addr)
		req.addr = *addr;
	req.addr.pad = 0;
	err = call(op, &req.h, &rep, fds, &nfds);
	if (err)
		return err;
	if (rep.h.type != CN_MSG_LISTEN_OK)
		return -EPROTO;
	if (bound)
		*bound = rep.listen_ok.bound;
	if (listener_id)
		*listener_id = rep.listen_ok.listener_id;
	return 0;
}

int cn_op_channel_init(struct cn_op *lst)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	memset(lst, 0, sizeof(*lst));
	lst->fd = cn_fd_lift(sv[0]);
	lst->chan_peer = cn_fd_lift(sv[1]);
	lst->durable = true;
	lst->timeout_ms = DEFAULT_TIMEOUT_MS;
	return 0;
}

int cn_op_listen_channel(struct cn_op *ctl, struct cn_op *lst, unsigned int l4,
			 const struct cn_addr *addr, uint32_t backlog, unsigned int flags,
			 struct cn_addr *bound, uint64_t *listener_id)
{
	struct cn_msg_listen req;
	union cn_msg rep;
	int fds[CN_MSG_MAX_FDS], nfds, err;
	bool fresh = !lst->durable;

	if (fresh && (err = cn_op_channel_init(lst)))
		return err;
	cn_msg_init(&req.h, CN_MSG_LISTEN, sizeof(req), 0);
	req.l4 = (uint8_t)l4;
	req.flags = (uint8_t)(flags | CN_LISTEN_CHANNEL);
	req.backlog = backlog;
	if (addr)
		req.addr = *addr;
	req.addr.pad = 0;
	err = call_pass(ctl, &req.h, lst->chan_peer, &rep, fds, &nfds);
	if (!err && rep.h.type != CN_MSG_LISTEN_OK)
		err = -EPROTO;
	if (err) {
		if (fresh)
			cn_op_close(lst);
		return err;
	}
	lst->info = ctl->info;
	if (bound)
		*bound = rep.listen_ok.bound;
	if (listener_id)
		*listener_id = rep.listen_ok.listener_id;
	return 0;
}

int cn_op_unlisten(struct cn_op *op, uint64_t listener_id)
{
	struct cn_msg_id req;
	union cn_msg rep;
	int fds[CN_MSG_MAX_FDS], nfds, err;

	cn_msg_init(&req.h, CN_MSG_UNLISTEN, sizeof(req), 0);
	req.id = listener_id;
	err = call(op, &req.h, &rep, fds, &nfds);
	if (!err && rep.h.type != CN_MSG_OK)
		err = -EPROTO;
	return err;
}

/*
 * A pooled circuit: the chunk is mapped once per process (pool.h); fds are
 * [chunk memfd, data end, space end, lease]; on failure [0] is gone (closed),
 * the others stay the caller's.
 */
static int open_slot(const struct cn_msg_circuit *c, int *fds, int nfds, struct cn_local_ep *ep)
{
	struct cn_circuit_params prm = {
		.mode = c->l4 == CN_L4_TCP ? CN_MODE_STREAM : CN_MODE_DGRAM,
		.ring_size = { c->ring_size[0], c->ring_size[1] },
	};
	size_t size = cn_circuit_size(&prm);
	struct cn_chunk *chunk;
	int err, fd;

	if (nfds != ((c->flags & CN_CIRCUIT_VM) ? CN_POOL_NFDS_VM : CN_POOL_NFDS) || !size)
		return -EPROTO;
	fd = fds[0];
	fds[0] = -1; /* the chunk table's now, whatever happens */
	err = cn_chunk_get(c->chunk_id, fd, &chunk);
	if (err)
		return err;
	if (c->flags & CN_CIRCUIT_VM)
		err = cn_local_open_slot_vm(ep, chunk, c->slot_off, size, fds + 1, fds[5],
					    (enum cn_role)c->role, c->circuit_id);
	else
		err = cn_local_open_slot(ep, chunk, c->slot_off, size, fds + 1, fds[3],
					 (enum cn_role)c->role, c->circuit_id);
	if (err)
		cn_chunk_put(chunk);
	return err;
}

static int open_circuit(struct cn_op *op, const struct cn_msg_circuit *c, int *fds, int nfds,
			struct cn_local_ep *ep, struct cn_op_conn *conn)
{
	int err, i, memfd = -1;

	/*
	 * To map the circuit again after exec, the memfd must outlive the
	 * mapping. A pooled circuit's chunk keeps its own (cn_chunk_fd).
	 */
	if (op->keep_memfd && !c->chunk_id) {
		memfd = fcntl(fds[0], F_DUPFD_CLOEXEC, cn_fd_floor);
		if (memfd < 0 && cn_fd_floor > 0)
			memfd = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
		if (memfd < 0) {
			err = -errno;
			for (i = 0; i < nfds; i++)
				close(fds[i]);
			return err;
		}
	}
	err = c->chunk_id ? open_slot(c, fds, nfds, ep) :
			    cn_local_open(ep, fds, nfds, (enum cn_role)c->role);
	if (err) {
		for (i = 0; i < nfds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		if (memfd >= 0)
			close(memfd);
		return err;
	}
	if (conn) {
		conn->circuit_id = c->circuit_id;
		conn->listener_id = c->listener_id;
		conn->l4 = c->l4;
		conn->role = (enum cn_role)c->role;
		conn->flags = c->flags;
		conn->local = c->local;
		conn->remote = c->remote;
		conn->memfd = memfd;
		conn->chunk_id = c->chunk_id;
		conn->slot_off = c->slot_off;
		conn->ring_size[0] = c->ring_size[0];
		conn->ring_size[1] = c->ring_size[1];
	} else if (memfd >= 0) {
		close(memfd);
	}
	return 0;
}

static void connect_req(struct cn_msg_connect *req, unsigned int l4, const struct cn_addr *src,
			const struct cn_addr *dst, unsigned int flags)
{
	cn_msg_init(&req->h, CN_MSG_CONNECT, sizeof(*req), 0);
	req->l4 = (uint8_t)l4;
	req->flags = flags;
	if (src)
		req->src = *src;
	req->dst = *dst;
	req->src.pad = req->dst.pad = 0;
}

int cn_op_connect(struct cn_op *op, unsigned int l4, const struct cn_addr *src,
		  const struct cn_addr *dst, struct cn_local_ep *ep, struct cn_op_conn *conn)
{
	int err = cn_op_connect_flags(op, l4, src, dst, 0, ep, conn);

	/* a full backlog (EAGAIN from the operator): refused, for a guest */
	return err == -EAGAIN ? -ECONNREFUSED : err;
}

int cn_op_connect_flags(struct cn_op *op, unsigned int l4, const struct cn_addr *src,
			const struct cn_addr *dst, unsigned int flags, struct cn_local_ep *ep,
			struct cn_op_conn *conn)
{
	struct cn_msg_connect req;
	union cn_msg rep;
	int fds[CN_MSG_MAX_FDS], nfds, err;

	connect_req(&req, l4, src, dst, flags);
	err = call(op, &req.h, &rep, fds, &nfds);
	if (err)
		return err;
	if (rep.h.type != CN_MSG_CONNECT_OK || rep.circuit.role != CN_ROLE_INITIATOR) {
		while (nfds > 0)
			close(fds[--nfds]);
		return -EPROTO;
	}
	return open_circuit(op, &rep.circuit, fds, nfds, ep, conn);
}

int cn_op_connect_send(struct cn_op *op, unsigned int l4, const struct cn_addr *src,
		       const struct cn_addr *dst, unsigned int flags, uint32_t *seq)
{
	struct cn_msg_connect req;
	int err;

	if (op->ninflight == CN_OP_INFLIGHT)
		return -EBUSY;
	if (!op->inflight) {
		op->inflight = calloc(CN_OP_INFLIGHT, sizeof(*op->inflight));
		if (!op->inflight)
			return -ENOMEM;
	}
	connect_req(&req, l4, src, dst, flags);
	if (!++op->seq)
		++op->seq; /* 0 is for pushes */
	req.h.seq = op->seq;
	err = send_with_closed(op, &req.h);
	if (err)
		return err;
	op->inflight[op->ninflight++] = (struct cn_op_reply){ .seq = req.h.seq };
	*seq = req.h.seq;
	return 0;
}

/* Read the session until the reply to seq is kept; pushes go where they belong. */
static int await_reply(struct cn_op *op, uint32_t seq, struct cn_op_reply **out)
{
	union cn_msg m;
	int fds[CN_MSG_MAX_FDS], nfds, err;
	unsigned int i;

	for (;;) {
		for (i = 0; i < op->ninflight; i++)
			if (op->inflight[i].seq == seq)
				break;
		if (i == op->ninflight)
			return -ENOENT;
		if (op->inflight[i].arrived) {
			*out = &op->inflight[i];
			return 0;
		}
		nfds = 0;
		err = recv_msg(op, &m, fds, &nfds, op->timeout_ms);
		if (err)
			return err;
		keep_unasked(op, &m, fds, nfds);
	}
}

int cn_op_connect_recv(struct cn_op *op, uint32_t seq, struct cn_local_ep *ep,
		       struct cn_op_conn *conn)
{
	struct cn_op_reply *r, got;
	int err = await_reply(op, seq, &r);

	if (err)
		return err;
	got = *r;
	*r = op->inflight[--op->ninflight]; /* order does not matter */
	if (got.err)
		return -got.err;
	return open_circuit(op, &got.msg, got.fds, got.nfds, ep, conn);
}

int cn_op_accept(struct cn_op *op, struct cn_local_ep *ep, struct cn_op_conn *conn, int nonblock)
{
	struct cn_msg_id ack;
	union cn_msg m;
	int fds[CN_MSG_MAX_FDS], nfds, err;

	for (;;) {
		nfds = 0;
		if (op->npending) {
			struct cn_op_pending *p = &op->pending[0];

			m.circuit = p->msg;
			nfds = p->nfds;
			memcpy(fds, p->fds, sizeof(int) * (size_t)nfds);
			memmove(&op->pending[0], &op->pending[1],
				--op->npending * sizeof(op->pending[0]));
			break;
		}
		err = recv_msg(op, &m, fds, &nfds, nonblock ? 0 : op->timeout_ms);
		if (err)
			return err;
		if (m.h.type == CN_MSG_RESET) {
			note_reset(op, &m);
			continue;
		}
		if (m.h.type == CN_MSG_NEW_CONN && m.circuit.role == CN_ROLE_ACCEPTOR)
			break;
		if (keep_reply(op, &m, fds, nfds))
			continue;
		while (nfds > 0)
			close(fds[--nfds]);
	}
	err = open_circuit(op, &m.circuit, fds, nfds, ep, conn);
	/* the backlog slot is free either way */
	cn_msg_init(&ack.h, CN_MSG_ACCEPTED, sizeof(ack), 0);
	ack.id = m.circuit.circuit_id;
	send_with_closed(op, &ack.h);
	return err;
}

int cn_op_closed(struct cn_op *op, uint64_t circuit_id)
{
	op->closed[op->nclosed++] = circuit_id;
	if (op->nclosed == CN_OP_CLOSED_BATCH)
		return send_with_closed(op, NULL);
	return 0;
}

int cn_op_flush(struct cn_op *op)
{
	return op->nclosed ? send_with_closed(op, NULL) : 0;
}

int cn_op_query(struct cn_op *op, struct cn_msg_query_ok *out)
{
	struct cn_msg_hdr req;
	union cn_msg rep;
	int fds[CN_MSG_MAX_FDS], nfds, err;

	cn_msg_init(&req, CN_MSG_QUERY, sizeof(req), 0);
	err = call(op, &req, &rep, fds, &nfds);
	if (!err && rep.h.type != CN_MSG_QUERY_OK)
		err = -EPROTO;
	if (!err)
		*out = rep.query_ok;
	return err;
}

int cn_op_take_pushes(struct cn_op *op)
{
	int fds[CN_MSG_MAX_FDS], nfds, err, n;
	union cn_msg m;

	for (n = 0; n < 256; n++) {
		nfds = 0;
		err = recv_msg(op, &m, fds, &nfds, 0);
		if (err == -EAGAIN)
			return 0;
		if (err == -ECONNABORTED)
			return err;
		if (err)
			continue; /* a bad message: dropped */
		keep_unasked(op, &m, fds, nfds);
	}
	return 0;
}

int cn_op_claim(struct cn_op *op, const struct cn_op_conn *conn, int memfd)
{
	struct cn_msg_circuit m;
	int err = op->nclosed ? send_with_closed(op, NULL) : 0;

	if (err)
		return err;
	cn_msg_init(&m.h, CN_MSG_CLAIM, sizeof(m), 0);
	m.circuit_id = conn->circuit_id;
	m.l4 = (uint8_t)conn->l4;
	m.role = (uint8_t)conn->role;
	m.local = conn->local;
	m.remote = conn->remote;
	m.local.pad = m.remote.pad = 0;
	m.chunk_id = conn->chunk_id;
	m.slot_off = conn->slot_off;
	m.ring_size[0] = conn->ring_size[0];
	m.ring_size[1] = conn->ring_size[1];
	err = cn_send_fds(op->fd, &memfd, 1, &m, sizeof(m));
	return err ? send_error(op, -err) : 0;
}

int cn_addr_from_sockaddr(struct cn_addr *a, const struct sockaddr *sa, socklen_t len)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		a->family = CN_AF_INET;
		a->port = ntohs(in->sin_port);
		memcpy(a->addr, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		a->family = CN_AF_INET6;
		a->port = ntohs(in6->sin6_port);
		memcpy(a->addr, &in6->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

socklen_t cn_addr_to_sockaddr(const struct cn_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == CN_AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		memcpy(&in6->sin6_addr, a->addr, 16);
		return sizeof(*in6);
	}
	{
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->addr, 4);
		return sizeof(*in);
	}
}

int cn_addr_parse(struct cn_addr *a, const char *s)
{
	char host[64];
	const char *colon;
	unsigned long port;
	char *end;
	size_t n;

	memset(a, 0, sizeof(*a));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		n = (size_t)(rb - s - 1);
		colon = rb + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		n = (size_t)(colon - s);
	}
	if (n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = 0;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || !colon[1] || port > 65535)
		return -EINVAL;
	a->port = (uint16_t)port;
	if (inet_pton(AF_INET, host, a->addr) == 1)
		a->family = CN_AF_INET;
	else if (inet_pton(AF_INET6, host, a->addr) == 1)
		a->family = CN_AF_INET6;
	else
		return -EINVAL;
	return 0;
}

void cn_addr_format(const struct cn_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (a->family == CN_AF_INET) {
		inet_ntop(AF_INET, a->addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, a->port);
	} else if (a->family == CN_AF_INET6) {
		inet_ntop(AF_INET6, a->addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, a->port);
	} else {
		snprintf(buf, len, "*:%u", a->port);
	}
}
