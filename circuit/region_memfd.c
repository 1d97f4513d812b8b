// SPDX-License-Identifier: MIT
/*
 * circuit/region_memfd.c - circuit memory from a sealed memfd (processes and
 * containers on one host). The creator seals the size before anyone else
 * sees the fd; a receiver maps only files that carry those seals, so no
 * holder can shrink the file and make the others' accesses fault.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <circnet/layout.h>
#include <circnet/region.h>

#define CN_REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define CN_REGION_MAX	  ((size_t)CN_DATA_OFF + 2 * (size_t)CN_RING_MAX)

static void memfd_unmap(struct cn_region *r)
{
	if (r->base)
		munmap(r->base, r->size);
	if (r->fd >= 0)
		close(r->fd);
}

static const struct cn_region_ops memfd_ops = { .unmap = memfd_unmap };

/*
 * No MAP_POPULATE: pages are allocated as the rings first touch them, so an
 * idle or short-lived circuit costs a page or two, not both rings in full,
 * and setting a circuit up does not zero half a megabyte three times.
 */
static int map_fd(struct cn_region *r, int fd, size_t size)
{
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (base == MAP_FAILED)
		return -errno;
	r->ops = &memfd_ops;
	r->base = base;
	r->size = size;
	r->fd = fd;
	return 0;
}

int cn_memfd_region_create(struct cn_region *r, size_t size, const char *name)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int fd, err;

	if (size == 0 || size > CN_REGION_MAX)
		return -EINVAL;
	size = (size + page - 1) & ~(page - 1);
	fd = memfd_create(name ? name : "circnet-circuit", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, CN_REQUIRED_SEALS) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	err = map_fd(r, fd, size);
	if (err)
		close(fd);
	return err;
}

int cn_memfd_region_map(struct cn_region *r, int fd)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct stat st;
	int seals;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		return -EINVAL; /* not a memfd (or not sealable) */
	if ((seals & CN_REQUIRED_SEALS) != CN_REQUIRED_SEALS)
		return -EPERM;
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
		return -EPERM; /* could not map it writable */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size <= 0 || (size_t)st.st_size > CN_REGION_MAX || (size_t)st.st_size % page)
		return -EINVAL;
	return map_fd(r, fd, (size_t)st.st_size);
}

void cn_region_release(struct cn_region *r)
{
	if (r->ops)
		r->ops->unmap(r);
	r->ops = NULL;
	r->base = NULL;
	r->size = 0;
	r->fd = -1;
}
