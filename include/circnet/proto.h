/* SPDX-License-Identifier: MIT */
/*
 * circnet/proto.h - the operator protocol: the binary, versioned messages a
 * guest exchanges with the operator over its SOCK_SEQPACKET control socket.
 *
 * Every message is one packet: a fixed header followed by a fixed-size body
 * chosen by the type; nothing is variable-length, so a decoder checks one
 * exact length per type. Circuit fds travel with SCM_RIGHTS next to the
 * message that announces them (CN_POOL_NFDS: a chunk of the pair region,
 * two notifier ends and a lease).
 * Integers are host-endian: both ends run on the same host.
 *
 * A session (one connection to the guest's operator socket) starts with
 * HELLO. Requests carry a seq that the reply echoes. A session that sends
 * LISTEN becomes that listener's channel: the operator pushes NEW_CONN on it
 * for every connection, the guest answers ACCEPTED once it took one (that is
 * what frees a backlog slot). RESET is pushed on the session that set a
 * circuit up when the operator revokes it. CLOSED and ACCEPTED get no reply.
 */
#ifndef CIRCNET_PROTO_H
#define CIRCNET_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define CN_PROTO_MAGIC	 0x504f4e43u /* "CNOP" in memory */
#define CN_PROTO_VERSION 1
#define CN_NAME_MAX	 32 /* guest names, NUL included */
#define CN_GUEST_ADDRS	 8  /* addresses a guest may own */

enum cn_msg_type {
	/* guest -> operator */
	CN_MSG_HELLO = 1,
	CN_MSG_LISTEN = 2,   /* tcp: listen; udp: bind a datagram socket */
	CN_MSG_UNLISTEN = 3, /* stop; the session stays */
	CN_MSG_CONNECT = 4,  /* tcp, or a udp circuit to one peer */
	CN_MSG_ACCEPTED = 5, /* no reply */
	CN_MSG_CLOSED = 6,   /* no reply */
	CN_MSG_QUERY = 7,
	CN_MSG_CLAIM = 8,    /* no reply; + the circuit's memfd */
	CN_MSG_ECHO = 9,     /* a round trip through the operator (VM control circuits) */
	/* operator -> guest */
	CN_MSG_ERROR = 64,
	CN_MSG_HELLO_OK = 65,
	CN_MSG_LISTEN_OK = 66,
	CN_MSG_CONNECT_OK = 67, /* + CN_POOL_NFDS fds */
	CN_MSG_NEW_CONN = 68,	/* pushed on a listener session; + fds */
	CN_MSG_RESET = 69,	/* pushed: the operator revoked a circuit */
	CN_MSG_QUERY_OK = 70,
	CN_MSG_OK = 71,
	CN_MSG_PUBLISH = 72,	/* pushed to the proxy stack: a published host port */
	CN_MSG_ECHO_OK = 73,	/* ECHO's body, returned as it came */
};

enum cn_proto_l4 {
	CN_L4_TCP = 1,
	CN_L4_UDP = 2,
};

struct cn_msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len; /* whole message, header included */
	uint32_t seq; /* a request's id, echoed by its reply; 0 for pushes */
};

/* A socket address; family 0 means "any / unspecified". */
#define CN_AF_NONE 0
#define CN_AF_INET 4
#define CN_AF_INET6 6
struct cn_addr {
	uint8_t family;
	uint8_t pad;
	uint16_t port; /* host order */
	uint8_t addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
};

struct cn_msg_hello {
	struct cn_msg_hdr h;
	uint32_t pid; /* informative: SO_PEERCRED is what counts */
	uint32_t flags; /* 0 */
};

struct cn_msg_hello_ok {
	struct cn_msg_hdr h;
	char name[CN_NAME_MAX];
	uint64_t guest_id;
	uint32_t naddr;
	uint32_t ring_size; /* this guest's receive ring */
	struct cn_addr addrs[CN_GUEST_ADDRS];
};

#define CN_LISTEN_V6ONLY 0x01u /* an IPv6 wildcard that takes IPv6 only (IPV6_V6ONLY) */
#define CN_LISTEN_REUSE	 0x02u /* udp: share the port with other REUSE bindings (SO_REUSEADDR) */
/*
 * The proxy stack only (its own operator socket, run-dir/proxy/): take every
 * connection that the policy routes off-host for this l4. NEW_CONN then
 * carries local = the off-host destination, remote = the guest. The circuit
 * is pending (layout.h): the proxy reports its connect's outcome in it.
 */
#define CN_LISTEN_PROXY	 0x04u
/*
 * The listener's channel comes with the message (its one fd): a
 * SOCK_SEQPACKET socket of the guest's own (one end of a socketpair whose
 * other end the guest keeps) that becomes a session of the guest; the
 * operator pushes NEW_CONN on it and reads ACCEPTED from it, and the reply
 * comes on the session that asked. Because the guest holds both ends, the
 * channel outlives the operator: its listener neither fails nor turns
 * readable when the operator stops, and after a restart the guest sends the
 * same channel again. A channel that already is a session of this guest
 * (the same socket, sent again by another process sharing it) is answered
 * with its listener as it is: re-registration is idempotent.
 */
#define CN_LISTEN_CHANNEL 0x08u

struct cn_msg_listen {
	struct cn_msg_hdr h;
	uint8_t l4;
	uint8_t flags; /* CN_LISTEN_* */
	uint8_t pad[2];
	uint32_t backlog; /* tcp: pending connections; udp: peer circuits */
	struct cn_addr addr; /* port 0: the operator picks one */
};

struct cn_msg_listen_ok {
	struct cn_msg_hdr h;
	uint64_t listener_id;
	struct cn_addr bound;
};

struct cn_msg_id {
	struct cn_msg_hdr h;
	uint64_t id; /* UNLISTEN: listener; ACCEPTED, CLOSED: circuit */
};

/*
 * CONNECT from the proxy stack only: a connection that arrived at a
 * published host port. src is the real client, dst the host address and port
 * it connected to; the operator finds the publish and the guest listener.
 */
#define CN_CONNECT_PUBLISHED 0x01u

struct cn_msg_connect {
	struct cn_msg_hdr h;
	uint8_t l4;
	uint8_t pad[3];
	uint32_t flags; /* CN_CONNECT_* */
	struct cn_addr src; /* family 0: the operator picks; udp: a bound address */
	struct cn_addr dst;
};

/*
 * CONNECT_OK: the circuit is pending: the acceptor (the proxy stack) is
 * still connecting and reports the outcome in the circuit (layout.h).
 */
#define CN_CIRCUIT_PENDING 0x01u
/*
 * CONNECT_OK and NEW_CONN: one end is a VM (circnet/vm.h), the circuit lives
 * in the memory of the VM's device for this pair. To the VM (over its
 * control circuit, no fds): chunk_id is the device's IVPosition and vm_vec
 * the circuit's vector pair (vectors 2 vm_vec and 2 vm_vec + 1: its reader's
 * and its writer's). To the host end: CN_POOL_NFDS_VM fds.
 */
#define CN_CIRCUIT_VM 0x02u

/*
 * CONNECT_OK and NEW_CONN: the circuit and both ends' addresses. A pooled
 * circuit (chunk_id set: the operator's) comes with CN_POOL_NFDS fds: [0] the
 * chunk's memfd, [1] [2] the receiver's ends of the data and space notifier
 * pairs (local.h), [3] the receiver's end of the slot's lease (local.h: the
 * operator reuses a slot only after both ends' leases hung up). A circuit
 * of its own (chunk_id 0) comes as a bundle of local.h (3 or 5 fds).
 */
#define CN_POOL_NFDS 4
/*
 * The host end of a VM's circuit (CN_CIRCUIT_VM): [0] the device's memfd,
 * eventfds [1] wait_rx [2] wait_tx (QEMU writes them when the VM rings),
 * [3] sig_rx [4] sig_tx (the VM's vectors: QEMU turns them into its
 * interrupts), [5] the lease.
 */
#define CN_POOL_NFDS_VM 6
#define CN_MSG_MAX_FDS	6 /* the most fds any message carries */
struct cn_msg_circuit {
	struct cn_msg_hdr h;
	uint64_t circuit_id;
	uint64_t listener_id; /* NEW_CONN: which listener; CONNECT_OK: 0 */
	uint8_t l4;
	uint8_t role; /* enum cn_role of the receiver */
	uint8_t flags; /* CN_CIRCUIT_* */
	uint8_t vm_vec; /* CN_CIRCUIT_VM to a VM: the vector pair; else 0 */
	uint32_t ring_size[2];
	struct cn_addr local;
	struct cn_addr remote;
	/*
	 * Where the circuit lives (circnet/pool.h): the chunk of the pair
	 * region (its id; the memfd comes with the message) and the slot's
	 * offset in it. The slot's size follows from ring_size and l4.
	 */
	uint64_t chunk_id;
	uint64_t slot_off;
};

/*
 * CLAIM (a struct cn_msg_circuit, type CN_MSG_CLAIM, + 1 fd: the memfd of
 * the circuit's chunk): after an operator restart, a guest tells the new operator of an
 * established circuit it holds one end of (its role, its local and the
 * peer's address, the circuit's id as the earlier operator gave it), so
 * that limits, circnetctl and reload --reset see it again. The memfd is
 * the proof: only the two guests of the pair hold it, and the operator
 * joins the two ends' claims only when both sent the same memory object
 * and the same slot.
 */

struct cn_msg_reset {
	struct cn_msg_hdr h;
	uint64_t circuit_id;
	int32_t err; /* positive errno, e.g. ECONNRESET */
	uint32_t pad;
};

struct cn_msg_error {
	struct cn_msg_hdr h;
	int32_t err; /* positive errno */
	uint32_t pad;
};

struct cn_msg_query_ok {
	struct cn_msg_hdr h;
	uint32_t circuits;  /* this guest's open circuits */
	uint32_t listeners; /* and listeners */
	uint32_t max_circuits;
	uint32_t max_listeners;
	uint64_t circuit_bytes; /* memory of its circuits */
	uint64_t max_circuit_bytes;
};

/*
 * PUBLISH: the operator's published ports, pushed to each proxy session after
 * its proxy LISTEN and after every reload, as a numbered set: messages
 * index 0..count-1 of generation gen (count 0: one message, nothing
 * published). The proxy listens on host (family NONE: every address) and
 * replaces its previous set once the last message of a generation came.
 */
struct cn_msg_publish {
	struct cn_msg_hdr h;
	uint32_t gen;
	uint16_t index;
	uint16_t count;
	uint8_t l4;
	uint8_t pad[7];
	struct cn_addr host;
};

/*
 * ECHO / ECHO_OK: the operator returns len bytes of data unchanged (the
 * rest of data must be zero). A VM checks its control circuit with it
 * (docs/vms.md): every byte goes through the rings both ways.
 */
#define CN_ECHO_MAX 256
struct cn_msg_echo {
	struct cn_msg_hdr h;
	uint32_t len;
	uint32_t pad;
	uint8_t data[CN_ECHO_MAX];
};

/* The largest message of the protocol; receive buffers use this size. */
union cn_msg {
	struct cn_msg_hdr h;
	struct cn_msg_hello hello;
	struct cn_msg_hello_ok hello_ok;
	struct cn_msg_listen listen;
	struct cn_msg_listen_ok listen_ok;
	struct cn_msg_id id;
	struct cn_msg_connect connect;
	struct cn_msg_circuit circuit;
	struct cn_msg_reset reset;
	struct cn_msg_error error;
	struct cn_msg_query_ok query_ok;
	struct cn_msg_publish publish;
	struct cn_msg_echo echo;
};

/* Fill a header for a message of this type and body size. */
void cn_msg_init(struct cn_msg_hdr *h, enum cn_msg_type type, size_t len, uint32_t seq);

/*
 * Validate a received message: magic, version, the exact length of its
 * type, enums and reserved fields, address families and padding, how many
 * fds came with it. Returns 0, or -EPROTO / -EPROTONOSUPPORT (version) /
 * -EBADMSG with *why set to a static one-line reason. The message is a local
 * copy: validated fields cannot change afterwards.
 */
int cn_msg_validate(const void *buf, size_t len, int nfds, const char **why);

/* The most fds a message of this type carries (circuits: 3 or 5, local.h). */
int cn_msg_nfds(enum cn_msg_type type);

/* "hello", "connect", ... for logs; "?" if unknown. */
const char *cn_msg_name(unsigned int type);

#endif /* CIRCNET_PROTO_H */
