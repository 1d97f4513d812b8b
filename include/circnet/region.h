/* SPDX-License-Identifier: MIT */
/*
 * circnet/region.h - where circuit memory comes from.
 *
 * A region is a mapped, shared byte range that holds one circuit. The ring
 * code only sees base and size; providers (memfd now, ivshmem BARs and Xen
 * grant mappings later) own how it is created, shared and unmapped.
 *
 * memfd regions are sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL
 * before they are shared, so no holder can truncate the file under another
 * holder's mapping (which would turn every access into SIGBUS). Mapping an fd
 * received from elsewhere checks those seals and refuses an unsealed file.
 */
#ifndef CIRCNET_REGION_H
#define CIRCNET_REGION_H

#include <stddef.h>

struct cn_region;

struct cn_region_ops {
	void (*unmap)(struct cn_region *r);
};

struct cn_region {
	const struct cn_region_ops *ops;
	void *base;
	size_t size;
	int fd; /* shareable handle (memfd), or -1 */
};

/* Create a sealed memfd of size bytes (rounded up to a page) and map it. */
int cn_memfd_region_create(struct cn_region *r, size_t size, const char *name);

/*
 * Map a memfd received from someone else. Takes ownership of fd on success.
 * Fails with -EPERM if the required seals are missing, -EINVAL if fd is not
 * a sealable file or its size is not usable.
 */
int cn_memfd_region_map(struct cn_region *r, int fd);

/* Unmap and close. Safe on a zeroed or already released region. */
void cn_region_release(struct cn_region *r);

#endif /* CIRCNET_REGION_H */
