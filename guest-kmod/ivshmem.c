// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * ivshmem.c - the VM side of circnet's ivshmem transport.
 *
 * Owns the ivshmem PCI devices (1af4:1110) the host's operator serves:
 * their registers (BAR0), their shared memory (BAR2) and their MSI-X
 * vectors. Each device becomes a character device, /dev/circnet-ivshmemN
 * (the interface is in include/circnet/ivshmem.h), through which user space
 * maps the memory, sleeps on the vectors and rings the peers' doorbells.
 *
 * With sockets=1 (the default) the kernel uses the devices itself (ctl.c,
 * sock.c): each is mapped into the kernel once, its vectors call hooks
 * instead of waking files, and user space may not open it (-EBUSY), since
 * two users of one control circuit would corrupt each other's stream.
 * sockets=0 leaves every device to user space (circnet-vm, tests).
 *
 * This file never interprets the shared memory: everything in it is the
 * host's and the peers' to write at any time, and the code that does
 * (shared/, the same rings as on the host) validates every index it reads.
 * What this file owns is what a hostile peer cannot reach: the registers,
 * the interrupt counts and the bounds of each mapping.
 *
 * A device that goes away (unbind, hot-unplug) zaps every user mapping of
 * its memory, so a late access gets SIGBUS rather than whatever the bus
 * address holds next, and its open files report POLLERR and -ENODEV.
 */
#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/interrupt.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include <circnet/ivshmem.h>

#include "circnet.h"

#define DRV_NAME "circnet_ivshmem"

bool cn_sockets = true;
module_param_named(sockets, cn_sockets, bool, 0444);
MODULE_PARM_DESC(sockets, "AF_INET stream sockets are circuits (1, default); 0: the devices are user space's");

/* BAR0 registers (QEMU docs/specs/ivshmem-spec.rst) */
#define IVSHMEM_REG_INTRMASK   0x00
#define IVSHMEM_REG_IVPOSITION 0x08
#define IVSHMEM_REG_DOORBELL   0x0c

struct cnv_dev;

struct cnv_vector {
	struct cnv_dev *dev;
	unsigned int index;
	void (*hook)(void *arg); /* the kernel's user of this vector, under dev->hook_lock */
	void *hook_arg;
};

struct cnv_dev {
	struct kref ref; /* the PCI binding and each open file */
	struct pci_dev *pdev;
	void __iomem *regs;
	phys_addr_t shm_phys;
	resource_size_t shm_len;
	void *kbase; /* the kernel's mapping (sockets): unmapped with the last reference */
	spinlock_t hook_lock;
	unsigned int nvec;
	struct cnv_vector vec[CN_IVSHMEM_MAX_VECTORS];
	atomic_t fired[CN_IVSHMEM_MAX_VECTORS]; /* interrupts per vector, ever */
	wait_queue_head_t wq; /* every interrupt: files that watch several vectors */
	wait_queue_head_t vec_wq[CN_IVSHMEM_MAX_VECTORS]; /* files that watch one */
	struct miscdevice misc;
	char name[32];
	int id;
	struct mutex lock; /* files, gone */
	struct list_head files;
	bool gone;
	bool dying; /* remove() has begun: no new kernel circuits */
	u32 position; /* IVPosition, read once at probe */
	struct list_head kdevs_node; /* in cnv_kdevs, while the kernel uses it */
};

struct cnv_file {
	struct cnv_dev *dev;
	struct file *file;
	struct list_head node;
	int seen[CN_IVSHMEM_MAX_VECTORS]; /* fired[] as of this file's last read */
	/*
	 * The vectors this file reports (CN_IVSHMEM_IOC_WATCH; all at open).
	 * A notifier watches one, so an interrupt wakes its sleeper only, not
	 * every sleeper on the device.
	 */
	u64 watch;
};

static DEFINE_IDA(cnv_ids);

/* Devices the kernel uses (sockets), to find them by IVPosition. */
static LIST_HEAD(cnv_kdevs);
static DEFINE_MUTEX(cnv_kdevs_lock);

static void cnv_free(struct kref *ref)
{
	struct cnv_dev *d = container_of(ref, struct cnv_dev, ref);

	/*
	 * A socket may have copied from this memory until it dropped its
	 * reference: only now can the mapping go. (After a hot-unplug the
	 * addresses read as unassigned memory, never as someone else's.)
	 */
	if (d->kbase)
		memunmap(d->kbase);
	ida_free(&cnv_ids, d->id);
	kfree(d);
}

struct cnv_dev *cnv_get(u32 pos)
{
	struct cnv_dev *d, *found = NULL;

	mutex_lock(&cnv_kdevs_lock);
	list_for_each_entry(d, &cnv_kdevs, kdevs_node) {
		if (!READ_ONCE(d->dying) && d->position == pos) {
			kref_get(&d->ref);
			found = d;
			break;
		}
	}
	mutex_unlock(&cnv_kdevs_lock);
	return found;
}

void cnv_hold(struct cnv_dev *d)
{
	kref_get(&d->ref);
}

bool cnv_dying(struct cnv_dev *d)
{
	return READ_ONCE(d->dying);
}

void cnv_put(struct cnv_dev *d)
{
	kref_put(&d->ref, cnv_free);
}

void *cnv_base(struct cnv_dev *d)
{
	return d->kbase;
}

size_t cnv_size(struct cnv_dev *d)
{
	return d->shm_len;
}

unsigned int cnv_nvec(struct cnv_dev *d)
{
	return d->nvec;
}

u32 cnv_position(struct cnv_dev *d)
{
	return d->position;
}

void cnv_ring(struct cnv_dev *d, u32 bell)
{
	/*
	 * From any context, interrupts included: the doorbell is one
	 * register write. remove() sets gone, then waits out every reader
	 * (synchronize_rcu) before BAR0 can be unmapped.
	 */
	rcu_read_lock();
	if (!READ_ONCE(d->gone))
		writel(bell, d->regs + IVSHMEM_REG_DOORBELL);
	rcu_read_unlock();
}

int cnv_hook(struct cnv_dev *d, unsigned int vec, void (*fn)(void *arg), void *arg)
{
	unsigned long flags;
	int err = 0;

	if (vec >= d->nvec)
		return -EINVAL;
	spin_lock_irqsave(&d->hook_lock, flags);
	if (d->vec[vec].hook && (d->vec[vec].hook != fn || d->vec[vec].hook_arg != arg)) {
		err = -EBUSY;
	} else {
		d->vec[vec].hook = fn;
		d->vec[vec].hook_arg = arg;
	}
	spin_unlock_irqrestore(&d->hook_lock, flags);
	return err;
}

void cnv_unhook(struct cnv_dev *d, unsigned int vec)
{
	unsigned long flags;

	if (vec >= d->nvec)
		return;
	spin_lock_irqsave(&d->hook_lock, flags);
	d->vec[vec].hook = NULL;
	d->vec[vec].hook_arg = NULL;
	spin_unlock_irqrestore(&d->hook_lock, flags);
}

static irqreturn_t cnv_irq(int irq, void *arg)
{
	struct cnv_vector *v = arg;

	if (v->dev->kbase) {
		spin_lock(&v->dev->hook_lock);
		if (v->hook)
			v->hook(v->hook_arg);
		spin_unlock(&v->dev->hook_lock);
		return IRQ_HANDLED;
	}
	atomic_inc(&v->dev->fired[v->index]);
	wake_up_interruptible_all(&v->dev->vec_wq[v->index]);
	wake_up_interruptible_all(&v->dev->wq);
	return IRQ_HANDLED;
}

/* The vectors that fired since this file last looked, as a bitmap. */
static u64 cnv_pending(struct cnv_file *cf, bool consume)
{
	struct cnv_dev *d = cf->dev;
	u64 bits = 0;
	unsigned int i;

	for (i = 0; i < d->nvec; i++) {
		int now = atomic_read(&d->fired[i]);

		if (!(READ_ONCE(cf->watch) & (1ull << i)))
			continue;
		if (now != cf->seen[i]) {
			bits |= 1ull << i;
			if (consume)
				cf->seen[i] = now;
		}
	}
	return bits;
}

static int cnv_open(struct inode *inode, struct file *file)
{
	struct cnv_dev *d = container_of(file->private_data, struct cnv_dev, misc);
	struct cnv_file *cf;
	unsigned int i;

	if (d->kbase)
		return -EBUSY; /* the kernel's sockets use this device */
	cf = kzalloc(sizeof(*cf), GFP_KERNEL);
	if (!cf)
		return -ENOMEM;
	mutex_lock(&d->lock);
	if (d->gone) {
		mutex_unlock(&d->lock);
		kfree(cf);
		return -ENODEV;
	}
	kref_get(&d->ref);
	cf->dev = d;
	cf->file = file;
	for (i = 0; i < d->nvec; i++)
		cf->seen[i] = atomic_read(&d->fired[i]);
	cf->watch = ~0ull;
	list_add(&cf->node, &d->files);
	mutex_unlock(&d->lock);
	file->private_data = cf;
	return nonseekable_open(inode, file);
}

static int cnv_release(struct inode *inode, struct file *file)
{
	struct cnv_file *cf = file->private_data;
	struct cnv_dev *d = cf->dev;

	mutex_lock(&d->lock);
	list_del(&cf->node);
	mutex_unlock(&d->lock);
	kfree(cf);
	kref_put(&d->ref, cnv_free);
	return 0;
}

/* Where this file's sleepers wait: its one vector's queue, or the device's. */
static wait_queue_head_t *cnv_queue(struct cnv_file *cf)
{
	u64 w = READ_ONCE(cf->watch);

	if (w && !(w & (w - 1)) && __ffs64(w) < cf->dev->nvec)
		return &cf->dev->vec_wq[__ffs64(w)];
	return &cf->dev->wq;
}

static ssize_t cnv_read(struct file *file, char __user *buf, size_t len, loff_t *ppos)
{
	struct cnv_file *cf = file->private_data;
	struct cnv_dev *d = cf->dev;
	u64 bits;
	int err;

	if (len < sizeof(bits))
		return -EINVAL;
	for (;;) {
		if (READ_ONCE(d->gone))
			return -ENODEV;
		bits = cnv_pending(cf, true);
		if (bits)
			break;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		err = wait_event_interruptible(*cnv_queue(cf),
					       READ_ONCE(d->gone) || cnv_pending(cf, false));
		if (err)
			return err;
	}
	if (copy_to_user(buf, &bits, sizeof(bits)))
		return -EFAULT;
	return sizeof(bits);
}

static __poll_t cnv_poll(struct file *file, poll_table *wait)
{
	struct cnv_file *cf = file->private_data;
	struct cnv_dev *d = cf->dev;

	poll_wait(file, cnv_queue(cf), wait);
	if (READ_ONCE(d->gone))
		return EPOLLERR | EPOLLHUP;
	return cnv_pending(cf, false) ? EPOLLIN | EPOLLRDNORM : 0;
}

/*
 * Pages come in on fault, one at a time, under the device lock: a fault
 * either sees the device gone (SIGBUS) or inserts its page before remove()
 * zaps every mapping. A mapping made whole at mmap() time could slip past
 * remove(), whose zap does not see a VMA that mmap() has not linked yet.
 */
static vm_fault_t cnv_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct cnv_file *cf = vma->vm_private_data;
	struct cnv_dev *d = cf->dev;
	unsigned long pgoff = vmf->pgoff;
	vm_fault_t ret;

	mutex_lock(&d->lock);
	if (d->gone || pgoff >= (d->shm_len >> PAGE_SHIFT))
		ret = VM_FAULT_SIGBUS;
	else
		ret = vmf_insert_pfn(vma, vmf->address, (d->shm_phys >> PAGE_SHIFT) + pgoff);
	mutex_unlock(&d->lock);
	return ret;
}

static const struct vm_operations_struct cnv_vm_ops = {
	.fault = cnv_fault,
};

static int cnv_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct cnv_file *cf = file->private_data;
	struct cnv_dev *d = cf->dev;
	unsigned long size = vma->vm_end - vma->vm_start;
	unsigned long pages = d->shm_len >> PAGE_SHIFT;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	/* bounds in pages first, so that the byte offset cannot overflow */
	if (vma->vm_pgoff >= pages || (size >> PAGE_SHIFT) > pages - vma->vm_pgoff)
		return -EINVAL;
	if (READ_ONCE(d->gone))
		return -ENODEV;
	vma->vm_flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
	vma->vm_private_data = cf;
	vma->vm_ops = &cnv_vm_ops;
	return 0;
}

/*
 * User memory is touched outside the device lock: a fault on it takes the
 * mmap lock, which cnv_fault holds when it takes ours.
 */
static long cnv_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct cnv_file *cf = file->private_data;
	struct cnv_dev *d = cf->dev;
	struct cn_ivshmem_info info;
	long ret = 0;
	unsigned int bit;
	u64 watch;
	u32 bell;

	switch (cmd) {
	case CN_IVSHMEM_IOC_INFO:
		memset(&info, 0, sizeof(info));
		mutex_lock(&d->lock);
		if (d->gone) {
			ret = -ENODEV;
		} else {
			info.region_size = d->shm_len;
			info.ivposition = readl(d->regs + IVSHMEM_REG_IVPOSITION);
			info.vectors = d->nvec;
		}
		mutex_unlock(&d->lock);
		if (!ret && copy_to_user((void __user *)arg, &info, sizeof(info)))
			ret = -EFAULT;
		return ret;
	case CN_IVSHMEM_IOC_WATCH:
		if (copy_from_user(&watch, (void __user *)arg, sizeof(watch)))
			return -EFAULT;
		if (!watch)
			return -EINVAL;
		/* a vector watched from now on starts with what fired so far seen */
		for (bit = 0; bit < d->nvec; bit++)
			if ((watch & ~cf->watch) & (1ull << bit))
				cf->seen[bit] = atomic_read(&d->fired[bit]);
		WRITE_ONCE(cf->watch, watch);
		return 0;
	case CN_IVSHMEM_IOC_RING:
		if (get_user(bell, (u32 __user *)arg))
			return -EFAULT;
		mutex_lock(&d->lock);
		if (d->gone)
			ret = -ENODEV;
		else
			/* the device ignores peers and vectors it does not know */
			writel(bell, d->regs + IVSHMEM_REG_DOORBELL);
		mutex_unlock(&d->lock);
		return ret;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations cnv_fops = {
	.owner = THIS_MODULE,
	.open = cnv_open,
	.release = cnv_release,
	.read = cnv_read,
	.poll = cnv_poll,
	.mmap = cnv_mmap,
	.unlocked_ioctl = cnv_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

static void cnv_free_vectors(struct cnv_dev *d)
{
	unsigned int i;

	for (i = 0; i < d->nvec; i++)
		free_irq(pci_irq_vector(d->pdev, i), &d->vec[i]);
	if (d->nvec)
		pci_free_irq_vectors(d->pdev);
	d->nvec = 0;
}

/* ivshmem-doorbell has MSI-X; ivshmem-plain has no vectors and is memory only. */
static int cnv_setup_vectors(struct cnv_dev *d)
{
	int n, i, err;

	if (!d->pdev->msix_cap)
		return 0;
	n = pci_msix_vec_count(d->pdev);
	if (n <= 0)
		return 0;
	n = min(n, CN_IVSHMEM_MAX_VECTORS);
	n = pci_alloc_irq_vectors(d->pdev, 1, n, PCI_IRQ_MSIX);
	if (n < 0)
		return n;
	for (i = 0; i < n; i++) {
		d->vec[i].dev = d;
		d->vec[i].index = i;
		err = request_irq(pci_irq_vector(d->pdev, i), cnv_irq, 0, d->name, &d->vec[i]);
		if (err)
			break;
	}
	if (!i) {
		pci_free_irq_vectors(d->pdev);
		return err;
	}
	/*
	 * Fewer than the device has (the CPUs' interrupt vectors ran out):
	 * keep what we got. INFO says how many, and user space refuses a
	 * circuit whose vectors are beyond them.
	 */
	if (i < n)
		dev_warn(&d->pdev->dev, "%d of %d vectors: %d\n", i, n, err);
	d->nvec = i;
	return 0;
}

static int cnv_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct cnv_dev *d;
	int err, i;

	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	kref_init(&d->ref);
	mutex_init(&d->lock);
	INIT_LIST_HEAD(&d->files);
	init_waitqueue_head(&d->wq);
	spin_lock_init(&d->hook_lock);
	INIT_LIST_HEAD(&d->kdevs_node);
	for (i = 0; i < CN_IVSHMEM_MAX_VECTORS; i++)
		init_waitqueue_head(&d->vec_wq[i]);
	d->pdev = pdev;
	d->id = ida_alloc(&cnv_ids, GFP_KERNEL);
	if (d->id < 0) {
		err = d->id;
		kfree(d);
		return err;
	}
	snprintf(d->name, sizeof(d->name), "circnet-ivshmem%d", d->id);

	err = pcim_enable_device(pdev);
	if (err)
		goto fail;
	/* an MSI-X interrupt is a write by the device: it needs bus mastering */
	pci_set_master(pdev);
	if (!(pci_resource_flags(pdev, 2) & IORESOURCE_MEM) || !pci_resource_len(pdev, 2) ||
	    !PAGE_ALIGNED(pci_resource_start(pdev, 2))) {
		dev_err(&pdev->dev, "no usable shared memory BAR\n");
		err = -ENODEV;
		goto fail;
	}
	err = pcim_iomap_regions(pdev, BIT(0), DRV_NAME);
	if (err)
		goto fail;
	d->regs = pcim_iomap_table(pdev)[0];
	d->shm_phys = pci_resource_start(pdev, 2);
	d->shm_len = pci_resource_len(pdev, 2) & PAGE_MASK;
	d->position = readl(d->regs + IVSHMEM_REG_IVPOSITION);
	if (cn_sockets) {
		d->kbase = memremap(d->shm_phys, d->shm_len, MEMREMAP_WB);
		if (!d->kbase) {
			err = -ENOMEM;
			goto fail;
		}
	}
	err = cnv_setup_vectors(d);
	if (err)
		goto fail;
	writel(0xffffffff, d->regs + IVSHMEM_REG_INTRMASK);

	d->misc.minor = MISC_DYNAMIC_MINOR;
	d->misc.name = d->name;
	d->misc.fops = &cnv_fops;
	d->misc.mode = 0600;
	d->misc.parent = &pdev->dev;
	err = misc_register(&d->misc);
	if (err)
		goto fail_vectors;
	pci_set_drvdata(pdev, d);
	dev_info(&pdev->dev, "%s: %llu KiB shared, peer id %u, %u vectors%s\n", d->name,
		 (unsigned long long)d->shm_len >> 10, d->position, d->nvec,
		 d->kbase ? ", kernel sockets" : "");
	if (d->kbase) {
		mutex_lock(&cnv_kdevs_lock);
		list_add_tail(&d->kdevs_node, &cnv_kdevs);
		mutex_unlock(&cnv_kdevs_lock);
		cn_ctl_device_added(d);
	}
	return 0;

fail_vectors:
	cnv_free_vectors(d);
fail:
	kref_put(&d->ref, cnv_free);
	return err;
}

static void cnv_remove(struct pci_dev *pdev)
{
	struct cnv_dev *d = pci_get_drvdata(pdev);
	struct cnv_file *cf;
	int i;

	if (d->kbase) {
		/*
		 * Nobody finds the device any more; a circuit attached
		 * meanwhile sees dying where it is listed and resets itself.
		 * Then its circuits are reset and its hooks gone before its
		 * vectors are.
		 */
		mutex_lock(&cnv_kdevs_lock);
		WRITE_ONCE(d->dying, true);
		list_del_init(&d->kdevs_node);
		mutex_unlock(&cnv_kdevs_lock);
		cn_ctl_device_removing(d);
		cn_sock_device_gone(d);
	}
	misc_deregister(&d->misc);
	mutex_lock(&d->lock);
	d->gone = true;
	/* no process may touch the BAR once the device is gone */
	list_for_each_entry(cf, &d->files, node) unmap_mapping_range(cf->file->f_mapping, 0, 0, 1);
	mutex_unlock(&d->lock);
	synchronize_rcu(); /* no doorbell write is under way (cnv_ring) */
	wake_up_interruptible_all(&d->wq);
	for (i = 0; i < CN_IVSHMEM_MAX_VECTORS; i++)
		wake_up_interruptible_all(&d->vec_wq[i]);
	cnv_free_vectors(d);
	kref_put(&d->ref, cnv_free);
}

static const struct pci_device_id cnv_ids_table[] = {
	{ PCI_DEVICE(0x1af4, 0x1110) },
	{ 0 },
};
MODULE_DEVICE_TABLE(pci, cnv_ids_table);

static struct pci_driver cnv_driver = {
	.name = DRV_NAME,
	.id_table = cnv_ids_table,
	.probe = cnv_probe,
	.remove = cnv_remove,
};

int cnv_init(void)
{
	return pci_register_driver(&cnv_driver);
}

void cnv_exit(void)
{
	pci_unregister_driver(&cnv_driver);
}
