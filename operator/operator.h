/* SPDX-License-Identifier: MIT */
/*
 * operator/operator.h - the operator's run-time state: guests with their
 * operator sockets, sessions (one per control connection), listeners and
 * circuits, and the functions of the modules that share it:
 *   core.c    guest sockets, sessions, the protocol's requests, circuits
 *   ctl.c     the control socket behind circnetctl (status views, reload)
 *   main.c    command line, event loop, signals, reload
 * Everything runs in one thread: the operator only sets circuits up, it is
 * never on the data path.
 */
#ifndef CIRCNET_OPERATOR_OPERATOR_H
#define CIRCNET_OPERATOR_OPERATOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <circnet/proto.h>

#include "config.h"
#include "list.h"

#define OP_PROXY_MAX 64 /* proxy listeners per l4 (dataplane event loops) */

/* What an epoll event belongs to: the first member of each owner. */
enum ev_kind {
	EV_GUEST_SOCK,
	EV_SESSION,
	EV_CTL_SOCK,
	EV_SIGNAL,
	EV_LEASE,
	EV_VM_SOCK, /* vm.c: a VM guest's ivshmem.sock */
	EV_VM_DEV,  /* vm.c: QEMU's connection for one device */
	EV_VM_BELL, /* vm.c: one of our vectors on a device */
};

struct evsrc {
	enum ev_kind kind;
	int fd;
};

struct counters {
	uint64_t connects;   /* circuits set up */
	uint64_t refused;    /* no listener, backlog full, peer limits */
	uint64_t denied;     /* by policy */
	uint64_t unreachable;
	uint64_t errors;     /* other failed requests */
	uint64_t protocol;   /* sessions dropped for protocol violations */
};

struct guest {
	struct evsrc ev; /* the guest's operator socket */
	char name[CN_NAME_MAX];
	int conf; /* index in the current config */
	uint64_t id;
	char path[CFG_PATH_MAX + 80];
	struct list sessions;
	struct list listeners;
	uint32_t nsessions, nlisteners, ncircuits, npending;
	/*
	 * Circuit ends closed in the books (CLOSED, its session gone) whose
	 * slot this guest still holds through the end's lease (pool.c): at
	 * most max-circuits of them (check_limits), so a guest that keeps ends
	 * open cannot make the operator hold leases without bound.
	 */
	uint32_t nlinger;
	uint64_t mem;
	uint16_t next_port;
	/* per-round fairness budget and denial log rate limit */
	unsigned int round_msgs;
	time_t log_window;
	unsigned int log_count, log_dropped;
	struct counters cnt;
	struct vm *vm; /* vm.c: a VM guest's attach socket and device, or NULL */
	struct list link;
};

struct listener {
	uint64_t id;
	struct session *s;
	unsigned int l4;
	struct cn_addr addr; /* family NONE: every address of the guest */
	bool v6only;	     /* an IPv6 wildcard that takes IPv6 only */
	bool reuse;	     /* udp: shares its port with other reuse bindings */
	uint32_t backlog;
	uint32_t queued; /* handed to the session, not yet ACCEPTED */
	uint64_t accepted;
	struct list link; /* in guest->listeners */
};

struct session {
	struct evsrc ev; /* fd -1: a VM's session (vm), not in epoll */
	struct vm_dev *vm;
	/*
	 * A VM's listener session: one per listener the VM holds, all on the
	 * VM's one control circuit (core.c), children of its session.
	 */
	struct session *vm_parent;
	struct guest *g;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	bool hello;
	struct listener *lst; /* set once the session listens */
	/* a listener's channel (CN_LISTEN_CHANNEL): its socket, to know it again */
	uint64_t chan_ino, chan_dev;
	struct list circuits; /* circuit ends held through this session */
	struct list link;     /* in guest->sessions */
};

/* One end of a circuit as the operator accounts for it. */
struct circuit_end {
	struct guest *g;      /* NULL once closed */
	struct session *s;    /* the session it was handed to, NULL once gone */
	struct cn_addr addr;  /* this end's local address */
	uint8_t role;	      /* which end: finds the circuit from the end */
	struct list link;     /* in s->circuits */
};

/* pool.c: a slot of a pair region, and the two leases that keep it (pool.c says why) */
struct slot;
struct lease {
	struct evsrc ev; /* our end; fd -1 once it hung up */
	struct slot *sl;
};
struct pchunk;
struct slot {
	struct pchunk *ch;
	uint64_t off;
	size_t size;
	struct lease lease[2]; /* [role] */
	unsigned int live;     /* leases not hung up yet */
	struct circuit *c;     /* the circuit in the books, while there is one */
	uint64_t linger_gid[2]; /* [role]: the guest charged for a lingering end, or 0 */
	struct slot *next_free;
	int vm_vec;  /* a VM's pair: the slot's vector pair of the device, else -1 */
	unsigned int vm_ends; /* a VM's pair: bit role for each VM end still open (no lease) */
	int64_t freed_ms;  /* CLOCK_MONOTONIC, when it became free */
	struct list sweep; /* in op->unswept while free with its pages */
	struct list link;  /* in its chunk */
};

struct circuit {
	uint64_t id;
	uint64_t chunk_id, slot_off; /* where it lives (a claimed one: chunk_id as claimed) */
	struct slot *slot; /* its slot while the slot is held (NULL: claimed, or free already) */
	unsigned int l4;
	struct circuit_end end[2]; /* [CN_ROLE_INITIATOR], [CN_ROLE_ACCEPTOR] */
	struct listener *queued_in; /* waiting for ACCEPTED there */
	uint32_t ring_size[2];
	size_t mem;
	time_t created;
	int rule; /* the policy rule that allowed it, -1 for a guest's own loopback */
#define RULE_PUBLISHED (-2) /* came in at a published port */
#define RULE_CLAIMED (-3)   /* made by an earlier operator, claimed by its ends since */
	uint64_t claim_dev, claim_ino; /* RULE_CLAIMED: its memfd, the proof of a claim */
	struct circuit *hnext;
	struct list link; /* all circuits, oldest first */
};

/*
 * A connect parked in the restart grace (core.c): its guest's listener may
 * not have registered with this operator yet.
 */
struct parked {
	struct session *s;
	struct cn_msg_connect m;
	struct list link; /* in op->parked */
};

#define OP_GRACE_MS_DEFAULT 2000 /* --restart-grace */
#define OP_PARKED_MAX	    4096

struct op {
	struct config *cfg;
	char cfg_path[CFG_PATH_MAX]; /* "" for the built-in config */
	char run_dir[CFG_PATH_MAX];
	bool run_dir_forced;
	int epfd;
	struct evsrc ctl;
	struct list guests;
	struct guest **by_conf; /* runtime guest of each config guest index */
	struct list circuits;
	struct circuit **hash;
	size_t hash_size;
	uint64_t ncircuits, nsessions, next_id;
	/* pair regions (pool.c) */
	struct list pools;
	struct list unswept; /* free slots that still have their pages, oldest first */
	uint64_t npools, nchunks, chunk_bytes, slots_used;
	uint64_t first_id; /* ids below are an earlier operator's (claims) */
	uint64_t claims, claims_refused;
	uint64_t ends_gone; /* ends closed by their lease's hang-up, no CLOSED seen */
	uint64_t vm_devices; /* vm.c: VM devices attached now */
	struct counters cnt;
	time_t started;
	uint64_t reloads, reload_failures, resets;
	char last_reload_error[512];
	bool stop;
	/*
	 * The proxy stack (dataplane/) attaches as a guest of its own, outside
	 * the config: socket run-dir/proxy/operator.sock, root only. Its proxy
	 * listeners take the connections the policy routes off-host.
	 */
	struct guest *proxy;
	struct guest_conf proxy_conf;
	struct listener *proxy_lst[3][OP_PROXY_MAX]; /* by l4: one per dataplane thread */
	unsigned int proxy_n[3], proxy_rr[3];
	uint32_t publish_gen;
	/*
	 * The restart grace: for its first grace_ms, a connect to a guest port
	 * nobody listens on waits for a listener (guests re-register theirs
	 * within a few hundred ms of a restart) instead of being refused.
	 */
	int grace_ms;
	int64_t grace_end; /* CLOCK_MONOTONIC ms */
	struct list parked;
	unsigned int nparked;
	bool unpark_due; /* a listener came: parked connects try again after this round */
	uint64_t parked_total;
};

/* core.c */
int core_init(struct op *op);
void core_fini(struct op *op);
/* Make the runtime guests match op->cfg: create sockets, drop removed guests. */
int core_sync_guests(struct op *op);
void core_guest_event(struct op *op, struct guest *g);
void core_session_event(struct op *op, struct session *s, uint32_t events);
/* Start of an event-loop round: fairness budgets reset. */
void core_new_round(struct op *op);
/* End of a round: parked connects whose listener came, or whose grace ended. */
void core_end_round(struct op *op);
/* How long the event loop may sleep (ms, -1: until an event). */
int core_timeout_ms(struct op *op);
/* Send the published ports to the proxy stack again (after a reload). */
void core_push_publish(struct op *op);
/* Revoke circuits the current policy no longer allows. Returns how many. */
unsigned int core_reset_denied(struct op *op);
struct guest_conf *guest_conf(struct op *op, struct guest *g);
/* The runtime guest with this id (the proxy stack included), or NULL. */
struct guest *guest_by_id(struct op *op, uint64_t id);
/*
 * The last holder of a circuit's end is gone (its lease hung up): the end is
 * closed in the books if it was not already, whether or not its CLOSED came.
 */
void core_end_gone(struct op *op, struct circuit *c, int role);

/* A VM's session: its control circuit (vm.c) carries the messages. */
struct vm_dev;
struct session *core_vm_session(struct op *op, struct guest *g, struct vm_dev *d, pid_t pid);
void core_vm_session_close(struct op *op, struct session *s, const char *why);
/* A message from the VM, validated: 0, or -1 when the session must go. */
int core_vm_dispatch(struct op *op, struct session *s, const union cn_msg *m);
/* vm.c: a message for the VM, over its control circuit (nfds must be 0). 0 or -errno. */
int vm_session_send(struct vm_dev *d, const struct cn_msg_hdr *h, int nfds);
/* vm.c: core closed a VM's session (guest removed, a parked connect failed). */
void vm_session_gone(struct vm_dev *d);

/* HELLO_OK for guest g (for sessions and VM control circuits alike). */
void core_hello_ok(struct op *op, struct guest *g, uint32_t seq, struct cn_msg_hello_ok *r);

/* vm.c: VM guests (circnet/vm.h) */
struct vm_status {
	bool attached, control_ok;
	int pid; /* QEMU's */
	uint64_t memory, messages, resets, attaches, refused, violations;
	unsigned int pair_devices, pairs_assigned;
};
int vm_open(struct op *op, struct guest *g, const char *dir);
void vm_close(struct op *op, struct guest *g);
void vm_sock_event(struct op *op, struct evsrc *ev);
void vm_dev_event(struct op *op, struct evsrc *ev);
void vm_bell_event(struct op *op, struct evsrc *ev);
void vm_status(const struct guest *g, struct vm_status *st);
struct vm_dev;
/*
 * The memory of the VM's device for its pair with host (assigned on first
 * contact, for as long as the device lives): a dup of its memfd, its size
 * and the device. -errno: no device left for a new peer.
 */
int vm_pair_memory(struct op *op, const struct guest *vm, const struct guest *host,
		   size_t *size, struct vm_dev **dev);
int vm_vectors_get(struct vm_dev *d); /* a free vector pair, or -1 */
void vm_vectors_put(struct vm_dev *d, int pair);
int vm_vectors_fds(struct vm_dev *d, int pair, int fds[4]);
/* Wake both of a circuit's vectors on the side that is not gone's. */
void vm_vectors_wake_other(struct vm_dev *d, int pair, const struct guest *gone);
/* The IVPosition by which guest g (one of the pair's VMs) knows the device. */
uint32_t vm_dev_position(const struct vm_dev *d, const struct guest *g);
/* d is which, or which's other half (VM to VM). */
bool vm_dev_is(const struct vm_dev *d, const struct vm_dev *which);

/* pool.c */
struct cn_circuit_params;
/*
 * A slot of size bytes in the pair region of a and b, with both leases:
 * guest_lease[role] is the end for that role's guest (ours to send and
 * close). NULL with *errp set (-ENOMEM, -EMFILE, ...) when no memory or fds
 * are left.
 */
struct slot *pool_slot_new(struct op *op, const struct guest *a, const struct guest *b,
			   size_t size, int guest_lease[2], int *errp);
/* Write the circuit's head into the slot (pwrite: the operator maps no chunk). */
int pool_slot_format(struct slot *sl, const struct cn_circuit_params *prm);
int pool_slot_fd(const struct slot *sl);
uint64_t pool_slot_chunk(const struct slot *sl);
uint64_t pool_slot_off(const struct slot *sl);
/* An end closed in the books: its guest is charged while it still holds the lease. */
void pool_end_closed(struct op *op, struct slot *sl, int role, struct guest *g);
/*
 * A VM's pair (vm.c): true for a slot in a VM's device, with its vector
 * pair and the device's IVPosition; the host end's four eventfds (dups,
 * the caller's: wait_rx, wait_tx, sig_rx, sig_tx); a device gone.
 */
bool pool_slot_vm(const struct slot *sl, const struct guest *g, int *vm_vec, uint32_t *position);
int pool_slot_vm_wake(const struct slot *sl, int fds[4]);
struct vm;
void pool_vm_gone(struct op *op, struct vm_dev *d, const struct vm *gone_vm);
/* The VM ends of a slot whose circuit is freed before they were attached (a failed setup). */
void pool_vm_ends_drop(struct op *op, struct slot *sl);
/* The VM end role of c went without a word: a reset in the circuit, the other end woken. */
void pool_slot_vm_reset(struct op *op, struct circuit *c, int role);
void pool_slot_vm_closed(struct op *op, struct circuit *c, int role);
/* A lease hung up: its end's last holder is gone. */
void pool_lease_event(struct op *op, struct lease *l);
void pool_fini(struct op *op);
/* Return the pages of slots free long enough. ms until the next is due, or -1. */
int pool_sweep(struct op *op);

/* ctl.c */
int ctl_init(struct op *op);
void ctl_event(struct op *op);
void ctl_fini(struct op *op);

/* main.c */
int op_reload(struct op *op, bool reset_denied, char *err, size_t errlen);

#endif
