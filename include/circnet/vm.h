/* SPDX-License-Identifier: MIT */
/*
 * circnet/vm.h - circuits over ivshmem: what the operator (operator/vm.c),
 * the guest module (guest-kmod/) and user space in a VM agree on about a
 * VM's devices, and the user-space side of the memory provider and
 * notifier for them (circuit/region_ivshmem.c, circuit/notify_ivshmem.c).
 *
 * The operator is the ivshmem server of each VM guest: QEMU connects an
 * ivshmem-doorbell device to run-dir/guests/NAME/ivshmem.sock, and the
 * operator answers with the device's memory (a sealed memfd) and its
 * vectors' eventfds. On every device the operator is peer CN_VM_PEER_OPERATOR
 * and the VM is peer CN_VM_PEER_GUEST (+ 1 + k on its pair device k).
 *
 * A VM has no Unix socket to the host, so its control channel to the
 * operator is a circuit: the stream circuit at offset 0 of its first device,
 * formatted by the operator (initiator: the VM). It carries the operator
 * protocol's messages (proto.h) as a byte stream, each framed by its
 * header's len and validated exactly as on a session.
 *
 * Vectors: the VM sleeps on its vectors, the operator on its own (eventfds
 * that QEMU writes when the VM rings peer CN_VM_PEER_OPERATOR's vector).
 * CN_VM_VEC_RX: data arrived for the sleeper's reader; CN_VM_VEC_TX: space
 * was freed for its writer. CN_VM_VEC_RESET: whoever attaches the control
 * circuit in the VM (after boot, a reboot, a crash mid-message) rings the
 * operator's RESET vector and waits for its own: the operator has then
 * formatted the circuit anew, and the stream starts from its first byte.
 */
#ifndef CIRCNET_VM_H
#define CIRCNET_VM_H

#include <stddef.h>
#include <stdint.h>

#include <circnet/notify.h>
#include <circnet/region.h>

#define CN_VM_PEER_OPERATOR 0 /* on a pair device: the host peer */
#define CN_VM_PEER_GUEST    1 /* the VM on its control device; pair device k: 2 + k */
#define CN_VM_VECTORS	    4 /* control device: -device ivshmem-doorbell,vectors=4 */

/*
 * Pair devices (operator/vm.c): every device after the first. Each becomes
 * the region of one (VM, host peer) pair on first contact, for as long as
 * it lives. A circuit in it takes vector pair i: vectors 2i (its VM end's
 * reader) and 2i + 1 (its writer), and peer 0's vectors 2i, 2i + 1 wake the
 * host end's. -device ivshmem-doorbell,vectors=32: 16 circuits per peer at
 * once, and a few devices fit a one-CPU VM's interrupt vectors (x86 has
 * about 200 per CPU). Per-circuit wake flags in the memory and one vector
 * per direction would lift the limit (issue 14's multiplexed wake-ups).
 */
#define CN_VM_PAIRS_MAX	    8
#define CN_VM_PAIR_VECTORS  32
#define CN_VM_VEC_RX	    0
#define CN_VM_VEC_TX	    1
#define CN_VM_VEC_RESET	    2 /* VM -> operator: format my control circuit anew; back: done */

#define CN_VM_CTL_OFF  0	  /* the control circuit's place in device 0 */
#define CN_VM_CTL_RING (16 << 10) /* per direction */

struct cn_circuit_params;
/* The control circuit's parameters (a stream, CN_VM_CTL_RING each way). */
void cn_vm_ctl_params(struct cn_circuit_params *p);
/* Its size in the device: whole pages, what both ends map. */
size_t cn_vm_ctl_size(void);

#define CN_VM_MEM_MIN (1ull << 20) /* a device's memory: a power of two in [MIN, MAX] */
#define CN_VM_MEM_MAX (1ull << 30)

/*
 * VM side. Map len bytes at off of the device whose character device is
 * open as devfd (/dev/circnet-ivshmemN; the fd stays the caller's). 0 or -errno.
 */
int cn_ivshmem_region_map(struct cn_region *r, int devfd, size_t off, size_t len);

/*
 * VM side. A notifier on an ivshmem device: wait() sleeps until vector
 * wait_vector fires; signal() rings doorbell (peer << 16 | vector, see
 * <circnet/ivshmem.h>). Takes devfd, which must be an open file of its own
 * (each open file sees every interrupt once; two notifiers sharing one
 * would steal each other's). 0 or -errno.
 */
int cn_ivshmem_notifier_init(struct cn_notifier *n, int devfd, unsigned int wait_vector,
			     uint32_t doorbell);

#endif /* CIRCNET_VM_H */
