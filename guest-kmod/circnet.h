/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * circnet.h - what the guest module's files share (not an interface to
 * anyone outside the module; user space sees include/circnet/ivshmem.h).
 *
 *   ivshmem.c  the PCI driver: devices, their memory, their vectors
 *   kring.c    a circuit's VM end in the kernel: the shared ring code
 *              (shared/, the host's circuit/ unchanged) on a device's
 *              memory, with doorbells and interrupts as its notifiers
 *   ctl.c      the operator's control circuit: the session every socket
 *              of the VM shares (requests, replies, pushes)
 *   sock.c     AF_INET stream sockets as circuits (the family takeover)
 */
#ifndef CIRCNET_KMOD_H
#define CIRCNET_KMOD_H

#include <linux/types.h>
#include <linux/wait.h>

#include <circnet/circuit.h>
#include <circnet/proto.h>

/* ---- ivshmem.c ---- */
struct cnv_dev;

/* Does the kernel own the devices (sockets) rather than user space? */
extern bool cn_sockets;

/* The device whose IVPosition is pos, with a reference; NULL if none. */
struct cnv_dev *cnv_get(u32 pos);
void cnv_hold(struct cnv_dev *d);
void cnv_put(struct cnv_dev *d);
/*
 * The device is being removed: a circuit attached now must be reset at
 * once (checked under the lock that puts it where removal looks for it).
 */
bool cnv_dying(struct cnv_dev *d);
void *cnv_base(struct cnv_dev *d); /* the kernel's mapping of the memory */
size_t cnv_size(struct cnv_dev *d);
unsigned int cnv_nvec(struct cnv_dev *d);
u32 cnv_position(struct cnv_dev *d);
void cnv_ring(struct cnv_dev *d, u32 bell);

/*
 * Call fn(arg) from the interrupt of vector vec (hard interrupt context:
 * a wake-up, nothing more). -EBUSY if the vector has a hook already,
 * -EINVAL if the device has no such vector. After cnv_unhook() returns,
 * fn is not running and will not run for this hook.
 */
int cnv_hook(struct cnv_dev *d, unsigned int vec, void (*fn)(void *arg), void *arg);
void cnv_unhook(struct cnv_dev *d, unsigned int vec);

int cnv_init(void);
void cnv_exit(void);

/* ---- kring.c ---- */
struct cn_kcirc;

/* Called (hard interrupt context) when a circuit's vectors fire. */
typedef void (*cn_kwake_fn)(void *arg);

/*
 * The VM's end of a circuit that a CONNECT_OK or NEW_CONN describes
 * (CN_CIRCUIT_VM): the operator's word is checked against the device (the
 * slot inside its memory, the vectors it has) and the header against the
 * circuit's id. wake(arg) runs when either of its vectors fires.
 */
struct cn_kcirc *cn_kcirc_open(const struct cn_msg_circuit *m, unsigned int l4, cn_kwake_fn wake,
			       void *arg, int *err);
/*
 * A circuit between two sockets of this VM (loopback, or to one of its own
 * addresses): a stream circuit in kernel memory, each end's signal waking
 * the other end. *a is the initiator's end, *b the acceptor's. 0 or -errno.
 */
int cn_kcirc_pair_local(u64 id, struct cn_kcirc **a, cn_kwake_fn wake_a, void *arg_a,
			struct cn_kcirc **b, cn_kwake_fn wake_b, void *arg_b);
/* The control circuit at offset 0 of the control device. */
struct cn_kcirc *cn_kcirc_open_ctl(struct cnv_dev *d, cn_kwake_fn wake, void *arg, int *err);
/* Change who is woken (a queued connection that accept() hands to a socket). */
void cn_kcirc_rehook(struct cn_kcirc *kc, cn_kwake_fn wake, void *arg);
void cn_kcirc_close(struct cn_kcirc *kc);
struct cn_endpoint *cn_kcirc_ep(struct cn_kcirc *kc);
u64 cn_kcirc_id(const struct cn_kcirc *kc);
struct cnv_dev *cn_kcirc_dev(const struct cn_kcirc *kc); /* NULL: a local circuit */

/* ---- ctl.c ---- */
/*
 * A request in flight: the reply of type want (or ERROR) is copied to
 * reply, then done(req) runs in the control thread (it may sleep, not
 * send). A request not answered when the session ends gets err
 * -ECONNABORTED. The submitter keeps req alive until done ran or
 * cn_ctl_cancel() said it never will.
 */
struct cn_req {
	struct list_head node;
	u32 seq;
	u16 want;
	int err;
	union cn_msg reply;
	void (*done)(struct cn_req *req);
};

int cn_ctl_submit(struct cn_req *req, struct cn_msg_hdr *h);
/* Submit and wait (interruptible, bounded). 0, or -errno (ERROR's too). */
int cn_ctl_call(struct cn_msg_hdr *h, union cn_msg *reply, u16 want);
/* true if req was still waiting (done will not run), false if done ran or runs. */
bool cn_ctl_cancel(struct cn_req *req);
/* A message with no reply (CLOSED, ACCEPTED; UNLISTEN's reply is dropped). */
int cn_ctl_notify(struct cn_msg_hdr *h);
/* The same from the control thread, which must never wait for ring space. */
void cn_ctl_notify_later(u16 type, u64 id);
/* Wait (bounded) for the session: true once HELLO is done. */
bool cn_ctl_ready(void);
/* The guest's addresses as the operator gave them at HELLO. */
bool cn_ctl_owns(const struct cn_addr *a);
void cn_ctl_device_added(struct cnv_dev *d);
void cn_ctl_device_removing(struct cnv_dev *d);
int cn_ctl_init(void);
void cn_ctl_exit(void);

/* ---- sock.c: pushes from the operator ---- */
void cn_sock_new_conn(const struct cn_msg_circuit *m);
void cn_sock_reset(u64 circuit_id, int err);
/* A device goes: its circuits are dead (reset), their memory stays mapped. */
void cn_sock_device_gone(struct cnv_dev *d);
int cn_sock_init(void);
void cn_sock_exit(void);

#endif /* CIRCNET_KMOD_H */
