/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * compat/stdatomic.h: see compat/README. The C11 explicit atomics the ring
 * code uses, on the compiler's __atomic builtins: the same instructions as
 * in user space (a seq_cst store is an xchg on x86), so both sides of a
 * circuit keep the ordering argument of circuit/ring.c whichever of them
 * runs in a kernel.
 */
#ifndef CIRCNET_COMPAT_STDATOMIC_H
#define CIRCNET_COMPAT_STDATOMIC_H

#define memory_order_relaxed __ATOMIC_RELAXED
#define memory_order_acquire __ATOMIC_ACQUIRE
#define memory_order_release __ATOMIC_RELEASE
#define memory_order_acq_rel __ATOMIC_ACQ_REL
#define memory_order_seq_cst __ATOMIC_SEQ_CST

#define atomic_load_explicit(p, o)	       __atomic_load_n((p), (o))
#define atomic_store_explicit(p, v, o)	       __atomic_store_n((p), (v), (o))
#define atomic_exchange_explicit(p, v, o)      __atomic_exchange_n((p), (v), (o))
#define atomic_fetch_or_explicit(p, v, o)      __atomic_fetch_or((p), (v), (o))
#define atomic_fetch_and_explicit(p, v, o)     __atomic_fetch_and((p), (v), (o))
#define atomic_fetch_add_explicit(p, v, o)     __atomic_fetch_add((p), (v), (o))

#define ATOMIC_LLONG_LOCK_FREE 2
#endif
