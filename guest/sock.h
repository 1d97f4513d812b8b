/* SPDX-License-Identifier: MIT */
/*
 * guest/sock.h - circuit-backed sockets of the preload: what an AF_INET /
 * AF_INET6 stream socket is when the network is circuits. This module owns
 * the socket objects and their operations (bind, listen, accept, connect,
 * send, receive, shutdown, close, options, readiness); preload.c maps the
 * application's fds to them and interposes libc.
 *
 * Every socket the application sees is a real kernel fd:
 *   - fresh or bound: a placeholder (an unconnected AF_UNIX socket);
 *   - listening: a dup of our end of its durable channel (opclient.h), which
 *     turns readable when a connection waits, so poll/epoll/select and
 *     sharing across fork behave as a listening socket does; the channel
 *     outlives the operator, so a restart leaves it quiet (procop.h);
 *   - connected: a dup of its end of the circuit's data doorbell, which turns
 *     readable when the peer signals data; the socket keeps the doorbell
 *     armed whenever its ring is empty, so every arrival is a kernel event.
 * The fd number never changes: dup3 replaces the placeholder in place.
 *
 * Errors are negative errno values, as the circuit library returns them.
 */
#ifndef CIRCNET_GUEST_SOCK_H
#define CIRCNET_GUEST_SOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <circnet/opclient.h>

enum csock_state {
	CS_NEW,	       /* socket(): no address yet */
	CS_BOUND,      /* bind() recorded an address */
	CS_LISTENING,  /* a listener at the operator, on its durable channel */
	CS_CONNECTED,  /* a circuit */
	CS_FAILED,     /* a non-blocking connect that failed: SO_ERROR tells */
	CS_WAITOP,     /* a non-blocking connect waiting for the operator (procop.h) */
};

/* One peer of a datagram socket: a circuit to it (udp.c). */
struct udp_peer {
	struct cn_addr addr;
	struct cn_local_ep ep;
	uint64_t circuit_id;
	bool refused; /* nobody bound there: connected sends fail ECONNREFUSED */
	bool sent;    /* a datagram went to a refused peer: the error is due */
};

struct csock {
	pthread_mutex_t lock;	 /* state changes; never held while blocking on data */
	pthread_mutex_t rx_lock; /* one receiver at a time (the library's contract) */
	pthread_mutex_t tx_lock; /* one sender at a time */
	int refs;		 /* application fds that name this socket */
	int family;		 /* AF_INET or AF_INET6 */
	bool nonblock;		 /* O_NONBLOCK of the file description */
	bool shared;		 /* open across a fork: close must not speak for others */
	bool user_bound;	 /* bind() by the application: kept across a disconnect */
	bool pending;		 /* connected to the proxy stack, which is still connecting */
	enum csock_state state;
	int so_error;
	bool reason_given; /* the proxy's reason for a reset (ETIMEDOUT...) was reported */
	int rcvtimeo_ms, sndtimeo_ms;
	int opt_reuseaddr, opt_reuseport, opt_keepalive, opt_nodelay, opt_linger, opt_v6only;
	struct cn_addr local, remote;
	struct cn_op op; /* CS_LISTENING: its durable channel */
	/* listeners and bound datagram sockets: what registering again takes (procop.c) */
	uint32_t backlog;
	unsigned int listen_flags; /* CN_LISTEN_* */
	uint64_t reg_gen;	   /* the operator registered with (its guest id), 0: none yet */
	bool lost;		   /* the last operator refused it: nothing to accept */
	bool durable;		   /* in procop's list */
	bool durable_watched;	   /* and counted among what wait points watch for */
	struct csock *dnext, *dprev;
	/* CS_WAITOP: the connect to make once the operator is back, or fail at the deadline */
	int64_t waitop_deadline_ns;
	int waitop_fd;	   /* the application's fd, to install the circuit at */
	bool waitop_bound; /* from cs->local */
	struct cn_local_ep ep; /* CS_CONNECTED */
	enum cn_role role;
	int memfd; /* CS_CONNECTED: kept to map the circuit again after exec */
	uint64_t circuit_id;
	uint64_t chunk_id, slot_off; /* a pooled circuit's place (pool.h) */
	uint32_t ring_size[2];
	/*
	 * Bumped when a receive (send) finds nothing to read (no room) and
	 * says EAGAIN: the application consumed its edge, so edge-triggered
	 * epoll may report the event again (epoll.c).
	 */
	unsigned int in_gen, out_gen;
	int ep_regs; /* epoll registrations holding it (epoll.c) */
	/* datagram sockets (udp.c) */
	bool dgram;
	int evfd; /* our dup of the app fd: an epoll instance of the peers' doorbells */
	struct udp_peer **peers;
	int npeers, peers_cap, rr;
	bool has_default; /* connect()ed */
	struct cn_addr default_peer;
};

/* The process's identity at the operator, from CIRCNET_OPERATOR_SOCKET. */
int csock_global_init(void);
/* After fork, in the child: the process session is the parent's. */
void csock_after_fork_child(void);

struct csock *csock_new(int family, bool nonblock);
void csock_get(struct csock *cs);
/* A reference, unless the last one is already gone (procop.c's list walk). */
bool csock_tryget(struct csock *cs);
/*
 * With cs->lock: register the socket's listener (tcp) or binding (udp) at
 * cs->local through its durable channel (made on first use). -EHOSTDOWN:
 * no operator, after waiting up to wait_ns.
 */
int csock_register(struct csock *cs, int64_t wait_ns);
/* With cs->lock: register a listener again with a restarted operator (procop.c). */
int csock_reregister(struct csock *cs);
/*
 * A blocking call's wait on fd (events; fd -1: none) that also tends the
 * process's operator session (procop.h). 0: look again; -ETIMEDOUT.
 */
int wait_for_operator_or(int fd, short events, int timeout_ms);
/* Drop a reference; the last one closes the socket (sends CLOSED, detaches). */
void csock_put(struct csock *cs);

int csock_bind(struct csock *cs, const struct sockaddr *sa, socklen_t len);
/* connect(AF_UNSPEC): see sock.c. *fresh: install a new placeholder at the app fd. */
int csock_disconnect(struct csock *cs, bool *fresh);
/* On success *session is the listener's channel fd to install as the app fd. */
int csock_listen(struct csock *cs, int backlog, int *session);
/* New connected socket; *doorbell is its fd to dup as the new app fd. */
int csock_accept(struct csock *cs, bool nonblock, struct csock **out, int *doorbell);
/*
 * 0 with *doorbell to install as the app fd, or -errno. A non-blocking
 * socket gets -EINPROGRESS (with *doorbell set on success, or CS_FAILED and
 * SO_ERROR on a refusal), as Linux gives for a loopback connect.
 */
int csock_connect(struct csock *cs, int fd, const struct sockaddr *sa, socklen_t len,
		  int *doorbell);

ssize_t csock_sendv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags);
ssize_t csock_recvv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags);
/*
 * sendfile/splice into a stream circuit: up to len bytes read from fd (at
 * *off with pread when off is set) straight into the ring's free space,
 * one copy. nonblock: the socket's; src_nonblock: do not wait for fd.
 * Bytes moved, or -errno when none did.
 */
ssize_t csock_send_from_fd(struct csock *cs, int fd, off_t *off, size_t len, bool nonblock,
			   bool src_nonblock);
/* splice out of a stream circuit: up to len bytes written to fd from the ring. */
ssize_t csock_recv_to_fd(struct csock *cs, int fd, size_t len, bool nonblock, bool dst_nonblock);
int csock_shutdown(struct csock *cs, int how);

int csock_getsockname(struct csock *cs, struct sockaddr *sa, socklen_t *len);
int csock_getpeername(struct csock *cs, struct sockaddr *sa, socklen_t *len);
int csock_getsockopt(struct csock *cs, int level, int name, void *val, socklen_t *len);
int csock_setsockopt(struct csock *cs, int level, int name, const void *val, socklen_t len);
/* FIONREAD */
int csock_readable(struct csock *cs);
/*
 * Arrival counter of a connected stream socket: bytes the peer has ever
 * written to us, as its index in the circuit says. A change means an
 * arrival: a new edge for edge-triggered epoll, as each arrival is in the
 * kernel. False for other sockets. The value only feeds change detection:
 * a peer scribbling on it can cause spurious events, nothing else.
 */
bool csock_arrivals(struct csock *cs, uint64_t *rx_prod);

/*
 * Readiness (POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP) for the events
 * asked. With arm, the doorbells of events not ready are armed, so that
 * polling *fds (up to 2: fd, events) wakes us when they become ready.
 * Returns the ready events; fills fds with what to sleep on.
 */
unsigned int csock_poll(struct csock *cs, unsigned int events, bool arm, int fds[2],
			short fd_events[2], int *nfds);
/* A doorbell reported a hang-up: the peer is gone. */
void csock_peer_hangup(struct csock *cs);

/* The kernel fds that show this socket's events (for epoll): 0..2 of them. */
int csock_event_fds(struct csock *cs, int fds[2]);

/*
 * exec: what a socket is, written before execve and read back by the new
 * image's preload. The fds named here are kept open across the exec.
 */
struct csock_image {
	int32_t appfd;
	int32_t family, state, nonblock, role, so_error;
	int32_t memfd, space_fd;
	int32_t lease_fd; /* a pooled circuit's lease; -1 for a memfd of its own */
	int32_t rcvtimeo_ms, sndtimeo_ms;
	uint64_t chunk_id, slot_off;
	uint32_t ring_size[2];
	int32_t opts[6];
	struct cn_addr local, remote;
	uint64_t circuit_id;
	uint64_t key; /* the same socket under several fds: the same key */
	/* a listener: its channel's other end is space_fd; what registering again takes */
	uint32_t backlog, listen_flags;
	uint64_t reg_gen;
};

/* Fill img; the fds it names lose close-on-exec. false: cannot cross exec. */
bool csock_export(struct csock *cs, int appfd, struct csock_image *img);
/* The exec failed: close-on-exec again. */
void csock_export_undo(struct csock *cs);
/* Rebuild a socket from its image in the new image. NULL on failure. */
struct csock *csock_import(const struct csock_image *img);
/* After every image of an exec is imported: close what images shared (chunk memfds). */
void csock_import_done(const struct csock_image *img);

/* Shared with udp.c. */
int csock_addr_in(const struct csock *cs, const struct sockaddr *sa, socklen_t len,
		  struct cn_addr *a);
int csock_addr_out(const struct csock *cs, const struct cn_addr *a, struct sockaddr *sa,
		   socklen_t *len);
int csock_check_local(const struct cn_addr *a);
const char *csock_operator_path(void);

/* udp.c: datagram sockets, one circuit per peer. appfd is an epoll instance. */
int udp_init(struct csock *cs, int appfd);
int udp_bind(struct csock *cs, const struct cn_addr *a);
int udp_connect(struct csock *cs, const struct sockaddr *sa, socklen_t len);
ssize_t udp_sendv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags,
		  const struct cn_addr *dst);
ssize_t udp_recvv(struct csock *cs, const struct iovec *iov, int iovcnt, int flags,
		  struct sockaddr *src, socklen_t *srclen, int *msg_flags);
unsigned int udp_poll(struct csock *cs, unsigned int events, bool arm, int fds[2],
		      short fd_events[2], int *nfds);
int udp_readable(struct csock *cs);
void udp_reset_peer(struct csock *cs, uint64_t circuit_id);
void udp_release(struct csock *cs);

/* preload.c: the socket an application fd names, or NULL. */
struct csock *preload_lookup(int fd);
/* preload.c: put kernel object obj at fd, if fd still names cs (a late connect). */
int preload_install_late(int fd, struct csock *cs, int obj);
/* preload.c: fds of ours that the application must not close (closefrom, close loops). */
void preload_hide(int fd, bool hidden);
/*
 * Busy-poll budget before sleeping (CIRCNET_SPIN_US, default 0), in ns: for
 * blocking calls on circuits and for epoll_wait.
 */
int64_t preload_spin_ns(void);
/* Report the closes not yet reported to the operator: the process is about to sleep. */
void csock_flush_closed(void);

#endif
