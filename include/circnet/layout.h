/* SPDX-License-Identifier: MIT */
/*
 * circnet/layout.h - the shared-memory format of a circuit (the wire ABI).
 *
 * This header owns the byte layout that two endpoints (and the operator that
 * formats the region) agree on. Nothing here is trusted at run time: a peer
 * can write any value anywhere in the region at any moment. The reading side
 * loads each field once into a local, validates it and only then uses it
 * (see circuit/ring.c). The header is read exactly once, at attach time.
 *
 *   offset 0      struct cn_layout_hdr      written by the formatter only
 *   offset 256    struct cn_layout_ctrl[0]  ring A control (initiator -> acceptor)
 *   offset 640    struct cn_layout_ctrl[1]  ring B control (acceptor -> initiator)
 *   offset 4096   ring A data (size_a bytes, power of two)
 *   4096+size_a   ring B data (size_b bytes, power of two)
 *
 * The layout is canonical: every offset follows from the two ring sizes, and
 * attach rejects a header that says anything else. Ring data starts page
 * aligned so that memory providers may map rings separately or twice.
 */
#ifndef CIRCNET_LAYOUT_H
#define CIRCNET_LAYOUT_H

#include <stdint.h>
#include <stdatomic.h>

#define CN_LAYOUT_MAGIC	  0x31434e43u /* "CNC1" little endian */
#define CN_LAYOUT_VERSION 1u

#define CN_CACHELINE 64
/*
 * Producer-written, consumer-written and wake-up fields live 128 bytes apart:
 * adjacent-line prefetchers pull 128-byte pairs, so 64 would still share.
 */
#define CN_CTRL_STRIDE 128

#define CN_HDR_OFF	0u
#define CN_CTRL_OFF(d)	(256u + (unsigned)(d)*384u)
#define CN_DATA_OFF	4096u
#define CN_RING_MIN	4096u	       /* smallest ring, bytes */
#define CN_RING_MAX	(1u << 30)     /* largest ring, bytes */
#define CN_RING_DEFAULT (256u * 1024u) /* measured: docs/benchmarks.md */

enum cn_mode {
	CN_MODE_STREAM = 1, /* byte stream, TCP semantics */
	CN_MODE_DGRAM = 2,  /* records with boundaries, UDP semantics */
};

/* Ring indices: A carries initiator -> acceptor, B acceptor -> initiator. */
enum cn_dir {
	CN_RING_A = 0,
	CN_RING_B = 1,
};

struct cn_layout_ring {
	uint64_t ctrl_off;
	uint64_t data_off;
	uint64_t size;
};

struct cn_layout_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t mode;	   /* enum cn_mode */
	uint32_t hdr_size; /* sizeof(struct cn_layout_hdr) */
	uint32_t reserved;
	uint64_t total_size;
	struct cn_layout_ring ring[2];
	/*
	 * Which circuit this is: the operator's id of it (its generation: ids
	 * are never reused), so that a slot of a pair region is attached only as
	 * the circuit the setup message names. 0 outside the operator.
	 */
	uint64_t stamp;
};

/* Producer flags (cn_layout_ctrl.prod_flags), written by the ring's producer. */
#define CN_PF_FIN 0x1u /* producer shut down writing: EOF after draining */
#define CN_PF_RST 0x2u /* producer reset the circuit (abortive close) */

/* Consumer flags (cn_layout_ctrl.cons_flags), written by the ring's consumer. */
#define CN_CF_CLOSED 0x1u /* consumer will never read again: writer gets EPIPE */
#define CN_CF_RST    0x2u /* consumer reset the circuit */

/*
 * Control block of one direction, three 128-byte lines:
 *   prod   written by the producer on every commit
 *   cons   written by the consumer on every consume
 *   wake   written rarely (sleep/wake transitions, shutdown, reset) and read
 *          on every operation by both sides, so it stays cached in both.
 * prod/cons are free-running 64-bit byte counters (position = index & (size
 * - 1)). reader_want/writer_want are the wake-up flags: a sleeper stores how
 * many bytes it waits for (readable resp. free), 0 means "not waiting". The
 * side that makes progress signals the sleeper's notifier only when the flag
 * is set and the amount is reached, so steady state needs no syscalls.
 */
struct cn_layout_ctrl {
	_Alignas(CN_CTRL_STRIDE) _Atomic uint64_t prod;
	_Alignas(CN_CTRL_STRIDE) _Atomic uint64_t cons;
	_Alignas(CN_CTRL_STRIDE) _Atomic uint32_t reader_want;
	_Atomic uint32_t writer_want;
	_Atomic uint32_t prod_flags; /* CN_PF_*, written by the producer */
	_Atomic uint32_t cons_flags; /* CN_CF_*, written by the consumer */
	/*
	 * Connection status, written by the producer. Used in ring B of a
	 * circuit formatted as pending (a connect the acceptor still has to
	 * complete, e.g. the proxy stack's to an off-host address): starts as
	 * CN_STATUS_PENDING, then 0 (established) or a positive errno (failed:
	 * ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ...). Ignored otherwise.
	 */
	_Atomic uint32_t prod_status;
};

#define CN_STATUS_PENDING 0xffffffffu
#define CN_STATUS_ERRNO_MAX 4095u

/*
 * Datagram mode record header. Records start 8-byte aligned and never cross
 * the end of the ring: a record that does not fit in the tail is preceded by
 * a CN_REC_WRAP record that fills the tail (its len is ignored).
 */
struct cn_dgram_hdr {
	uint32_t len;  /* payload bytes */
	uint32_t type; /* CN_REC_DATA or CN_REC_WRAP */
};

#define CN_REC_DATA  0u
#define CN_REC_WRAP  1u
#define CN_REC_ALIGN 8u
#define CN_DGRAM_MAX 65535u /* largest datagram payload; also <= ring/2 - 8 */

_Static_assert(sizeof(struct cn_layout_hdr) <= CN_CTRL_OFF(0), "header overlaps control");
_Static_assert(sizeof(struct cn_layout_ctrl) == 384, "control block size changed");
_Static_assert(CN_CTRL_OFF(1) + sizeof(struct cn_layout_ctrl) <= CN_DATA_OFF,
	       "control overlaps data");
_Static_assert(sizeof(struct cn_dgram_hdr) == CN_REC_ALIGN, "record header size");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free across processes");

#endif /* CIRCNET_LAYOUT_H */
