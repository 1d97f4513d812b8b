/* SPDX-License-Identifier: MIT */
/*
 * circnet/ivshmem.h - what the guest module (guest-kmod/circnet_ivshmem.c)
 * and user space in a VM agree on: the character device each ivshmem
 * doorbell device becomes, /dev/circnet-ivshmemN.
 *
 * Shared by the kernel and user space (only <linux/...> types), as
 * liburing and DPDK share their ring headers.
 *
 *  - mmap(): the device's shared memory (BAR2), from offset 0 up to
 *    region_size; MAP_SHARED only.
 *  - read(): 8 bytes, a bitmap of the vectors (MSI-X interrupts) that fired
 *    since this open file's last read. Blocks until one has, unless the
 *    file is O_NONBLOCK (then EAGAIN). poll() says POLLIN when a read would
 *    return at once. Each open file sees every interrupt: several readers
 *    never steal each other's wake-ups.
 *  - ioctl(CN_IVSHMEM_IOC_INFO): the region's size, our peer id (IVPosition)
 *    and how many vectors the device has.
 *  - ioctl(CN_IVSHMEM_IOC_RING, &doorbell): ring vector (doorbell & 0xffff)
 *    of peer (doorbell >> 16): one interrupt or eventfd signal there.
 *  - ioctl(CN_IVSHMEM_IOC_WATCH, &mask): the vectors this open file reports
 *    (all of them after open; never none). A file that watches one vector
 *    sleeps on that vector's queue alone: an interrupt wakes only the
 *    sleepers that care about it.
 */
#ifndef CIRCNET_IVSHMEM_H
#define CIRCNET_IVSHMEM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CN_IVSHMEM_MAX_VECTORS 64 /* one bit each in a read() bitmap */

struct cn_ivshmem_info {
	__u64 region_size; /* bytes of shared memory (BAR2) */
	__u32 ivposition;  /* our peer id, as the ivshmem server gave it */
	__u32 vectors;	   /* MSI-X vectors in use (<= CN_IVSHMEM_MAX_VECTORS) */
};

#define CN_IVSHMEM_IOC_MAGIC 0xC7
#define CN_IVSHMEM_IOC_INFO  _IOR(CN_IVSHMEM_IOC_MAGIC, 1, struct cn_ivshmem_info)
#define CN_IVSHMEM_IOC_RING  _IOW(CN_IVSHMEM_IOC_MAGIC, 2, __u32)
#define CN_IVSHMEM_IOC_WATCH _IOW(CN_IVSHMEM_IOC_MAGIC, 3, __u64)

static inline __u32 cn_ivshmem_doorbell(__u16 peer, __u16 vector)
{
	return ((__u32)peer << 16) | vector;
}

#endif /* CIRCNET_IVSHMEM_H */
