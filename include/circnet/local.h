/* SPDX-License-Identifier: MIT */
/*
 * circnet/local.h - the local transport: a circuit for processes and
 * containers on one host, made of a sealed memfd and four notifiers (socket
 * pairs by default, eventfds on request), handed to endpoints over Unix
 * sockets with SCM_RIGHTS.
 *
 * The creator (the operator) calls cn_local_create() and sends each endpoint
 * the fds that cn_local_select() picks for its role; the endpoint calls
 * cn_local_open(). Reader and writer sleep on separate notifiers so that two
 * threads blocked on one endpoint (one sending, one receiving) cannot steal
 * each other's wake-ups.
 *
 * With socket notifiers (the default) a bundle is three fds:
 *   [0] memfd   [1] our end of the "data" pair   [2] our end of the "space" pair
 * Each socketpair serves both sides: we sleep on our end for the peer's
 * wake-ups, and a byte we send on our end lands at the peer's end only. So
 * one pair is both our reader's doorbell and the peer reader's, and no fd is
 * shared between the endpoints except the memfd.
 *
 * With eventfd notifiers a bundle is five fds, because an eventfd is one
 * counter that both holders would read:
 *   [0] memfd   [1] wait_rx  [2] wait_tx  [3] sig_rx (peer's wait_rx)
 *   [4] sig_tx (peer's wait_tx)
 */
#ifndef CIRCNET_LOCAL_H
#define CIRCNET_LOCAL_H

#include <circnet/circuit.h>
#include <circnet/region.h>

#define CN_LOCAL_NFDS	   5 /* the most a bundle has (eventfd notifiers) */
#define CN_LOCAL_NFDS_SOCK 3 /* a bundle with socket notifiers */

enum cn_notify_kind {
	CN_NOTIFY_SOCKET = 0,  /* default: isolated ends, peer death seen */
	CN_NOTIFY_EVENTFD = 1, /* shared objects: trusted peers only */
};

/*
 * Everything created for one circuit. Socket kind: wake[0] is the data
 * pair, wake[1] the space pair, end [0] for the initiator and [1] for the
 * acceptor; wake[2] and wake[3] are unused (-1). Eventfd kind: wake[i]
 * serves notifier i (0: the initiator's reader, 1: its writer, 2: the
 * acceptor's reader, 3: its writer), [0] for the sleeper and [1] for the
 * peer that signals it (two descriptors of one eventfd).
 */
struct cn_local_fds {
	enum cn_notify_kind kind;
	int mem;
	int wake[4][2];
};

struct cn_chunk;

struct cn_local_ep {
	struct cn_region region;     /* a circuit of its own (cn_local_open) */
	struct cn_chunk *chunk;	     /* or a slot in a pair region's chunk (pool.h) */
	struct cn_notifier notif[4]; /* wait_rx, wait_tx, sig_rx, sig_tx */
	/*
	 * A slot's lease (cn_local_open_slot): the read end of a pipe whose
	 * write end the operator holds. The kernel counts its holders across
	 * fork, exec and fd passing; when the last one closes it, the operator
	 * sees the pipe has no reader and only then may give the slot to a new
	 * circuit.
	 */
	int lease_fd;
	bool leased;
	struct cn_endpoint ep;
};

/* Create and format a circuit with socket notifiers. All fds are close-on-exec. */
int cn_local_create(const struct cn_circuit_params *p, struct cn_local_fds *out);

/* The same with a chosen notifier kind. 0 or -errno. */
int cn_local_create_kind(const struct cn_circuit_params *p, enum cn_notify_kind kind,
			 struct cn_local_fds *out);

/* Close every fd of a bundle (after it has been handed out). */
void cn_local_fds_close(struct cn_local_fds *f);

/*
 * The fds an endpoint of this role needs, in bundle order (not dup'ed).
 * Returns how many: CN_LOCAL_NFDS_SOCK or CN_LOCAL_NFDS.
 */
int cn_local_select(const struct cn_local_fds *f, enum cn_role role, int out[CN_LOCAL_NFDS]);

/*
 * Map and attach a bundle of nfds fds (3: socket notifiers; 5: one notifier
 * each, socket ends or eventfds). Takes ownership of the fds on success
 * only. The memfd is closed after mapping (the mapping keeps the memory
 * alive). Each notifier fd's kind is recognised; anything else, or a 3-fd
 * bundle that is not two SOCK_SEQPACKET ends, is refused with -EINVAL.
 */
int cn_local_open(struct cn_local_ep *l, const int *fds, int nfds, enum cn_role role);

/*
 * The pooled form (operator circuits): attach the slot [off, off + size) of
 * a mapped chunk, with 2 socket-notifier ends (as a 3-fd bundle's [1] and
 * [2]) and the slot's lease. stamp: the circuit id the slot must have been
 * formatted for (layout.h), 0 to skip the check. Takes the chunk reference
 * and the fds on success only.
 */
int cn_local_open_slot(struct cn_local_ep *l, struct cn_chunk *chunk, uint64_t off, size_t size,
		       const int notif_fds[2], int lease_fd, enum cn_role role, uint64_t stamp);

/*
 * The same for the host end of a VM's circuit (CN_CIRCUIT_VM, proto.h):
 * four eventfd notifiers, wait_rx, wait_tx, sig_rx, sig_tx, as a 5-fd
 * bundle's [1]..[4], in the memory of the VM's device for the pair.
 */
int cn_local_open_slot_vm(struct cn_local_ep *l, struct cn_chunk *chunk, uint64_t off,
			  size_t size, const int notif_fds[4], int lease_fd, enum cn_role role,
			  uint64_t stamp);

/* True for an endpoint whose memory is a pooled slot (then: chunk, lease). */
static inline bool cn_local_pooled(const struct cn_local_ep *l)
{
	return l->chunk != NULL;
}

/* cn_close() the endpoint, unmap, close notifiers. */
void cn_local_close(struct cn_local_ep *l);

/*
 * Unmap and close our notifier ends without a word to the peer. The peer
 * sees us vanish (POLLHUP) once every holder of our ends has closed them:
 * for a socket shared across fork, the last process to close it. It then
 * reads what we sent and gets EOF, or a reset if we left its data unread:
 * what close(2) of a shared TCP socket gives.
 */
void cn_local_detach(struct cn_local_ep *l);

/* Send data with fds attached (SCM_RIGHTS) on a Unix socket. 0 or -errno. */
int cn_send_fds(int sock, const int *fds, int nfds, const void *data, size_t len);

/*
 * Receive data and up to maxfds fds. Received fds are close-on-exec.
 * Returns bytes received (0 on EOF) with *nfds set, or -errno; a message
 * whose fds were truncated (too many) fails with -EMSGSIZE, all fds closed.
 */
ssize_t cn_recv_fds(int sock, int *fds, int maxfds, int *nfds, void *data, size_t len);

#endif /* CIRCNET_LOCAL_H */
