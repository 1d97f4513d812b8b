// SPDX-License-Identifier: MIT
/*
 * circuit/region_ivshmem.c - the memory provider of a VM's ivshmem device,
 * for user space in the VM (circnet/vm.h): a window of the device's shared
 * memory (BAR2), mapped through the guest module's character device. The
 * module checks the window against the BAR; we check it against the size
 * the module reports, so a bad request fails here with a clear error.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <circnet/circuit.h>
#include <circnet/ivshmem.h>
#include <circnet/vm.h>

static void ivs_unmap(struct cn_region *r)
{
	if (r->base)
		munmap(r->base, r->size);
}

static const struct cn_region_ops ivshmem_region_ops = {
	.unmap = ivs_unmap,
};

int cn_ivshmem_region_map(struct cn_region *r, int devfd, size_t off, size_t len)
{
	struct cn_ivshmem_info info;
	long page = sysconf(_SC_PAGESIZE);
	void *p;

	if (ioctl(devfd, CN_IVSHMEM_IOC_INFO, &info) < 0)
		return -errno;
	if (!len || off % (size_t)page || len % (size_t)page || off > info.region_size ||
	    len > info.region_size - off)
		return -EINVAL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, devfd, (off_t)off);
	if (p == MAP_FAILED)
		return -errno;
	r->ops = &ivshmem_region_ops;
	r->base = p;
	r->size = len;
	r->fd = -1;
	return 0;
}

void cn_vm_ctl_params(struct cn_circuit_params *p)
{
	memset(p, 0, sizeof(*p));
	p->mode = CN_MODE_STREAM;
	p->ring_size[0] = p->ring_size[1] = CN_VM_CTL_RING;
}

size_t cn_vm_ctl_size(void)
{
	struct cn_circuit_params p;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	cn_vm_ctl_params(&p);
	return (cn_circuit_size(&p) + page - 1) & ~(page - 1);
}
