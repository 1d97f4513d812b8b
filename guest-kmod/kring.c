// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * kring.c - a circuit's VM end in the kernel: the host's ring code
 * (shared/ring.c, stream.c, circuit.c: one format, one implementation) on
 * the kernel's mapping of a device, with the device's doorbells and
 * interrupts as its notifiers.
 *
 * The notifiers: signal() rings the peer's vector (one register write, any
 * context); kick() wakes this end's own sleepers. Nobody sleeps in a
 * notifier's wait(): kernel sleepers wait on a wait queue that the
 * circuit's vectors wake (the hook), after arming the ring's want flags
 * with cn_poll_arm() (the ordering argument of circuit/ring.c).
 *
 * Everything the operator says about a circuit (device, slot, vectors) is
 * checked against the device before the memory is touched, and the header
 * against the circuit's id; after that, shared/ validates every index.
 */
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/vmalloc.h>

#include <circnet/ivshmem.h>
#include <circnet/vm.h>

#include "circnet.h"

struct cn_knotifier {
	struct cn_notifier n;
	struct cn_kcirc *kc;
};

/* A local circuit's memory and its two ends (cn_kcirc_pair_local). */
struct cn_klocal {
	struct kref ref; /* one per end */
	spinlock_t lock; /* end[] */
	struct cn_kcirc *end[2];
	void *mem;
};

struct cn_kcirc {
	struct cn_endpoint ep;
	struct cn_klocal *local; /* a local circuit: no device */
	unsigned int role;
	struct cn_knotifier notif[4]; /* wait_rx, wait_tx, sig_rx, sig_tx */
	struct cnv_dev *dev;
	unsigned int vec[2]; /* ours: data arrived (reader), space freed (writer) */
	u64 id;
	cn_kwake_fn wake;
	void *wake_arg;
	spinlock_t lock; /* wake, wake_arg */
};

static void kcirc_wake(void *arg);
static void kn_init(struct cn_kcirc *kc);

static int kn_signal(struct cn_notifier *n)
{
	struct cn_knotifier *k = container_of(n, struct cn_knotifier, n);
	struct cn_klocal *l = k->kc->local;
	unsigned long flags;

	if (!l) {
		cnv_ring(k->kc->dev, n->doorbell);
		return 0;
	}
	/* the other end is a socket of this kernel: wake it directly */
	spin_lock_irqsave(&l->lock, flags);
	if (l->end[!k->kc->role])
		kcirc_wake(l->end[!k->kc->role]);
	spin_unlock_irqrestore(&l->lock, flags);
	return 0;
}

static int kn_wait(struct cn_notifier *n, int timeout_ms)
{
	return -EOPNOTSUPP; /* kernel sleepers use wait queues */
}

static void kn_drain(struct cn_notifier *n)
{
}

static void kcirc_wake(void *arg)
{
	struct cn_kcirc *kc = arg;
	unsigned long flags;

	spin_lock_irqsave(&kc->lock, flags);
	if (kc->wake)
		kc->wake(kc->wake_arg);
	spin_unlock_irqrestore(&kc->lock, flags);
}

static int kn_kick(struct cn_notifier *n)
{
	kcirc_wake(container_of(n, struct cn_knotifier, n)->kc);
	return 0;
}

static void kn_release(struct cn_notifier *n)
{
}

static const struct cn_notifier_ops kn_ops = {
	.signal = kn_signal,
	.wait = kn_wait,
	.drain = kn_drain,
	.kick = kn_kick,
	.release = kn_release,
};

/*
 * Attach at base + off of d (its size checked by the caller) and wire the
 * vectors: we sleep on vec_rx / vec_tx and ring the operator's peer with
 * the same numbers (the operator crosses them for a VM peer: operator/vm.c).
 */
static struct cn_kcirc *kcirc_attach(struct cnv_dev *d, size_t off, size_t size,
				     enum cn_role role, u64 id, unsigned int vec_rx,
				     unsigned int vec_tx, cn_kwake_fn wake, void *arg, int *err)
{
	struct cn_kcirc *kc = kzalloc(sizeof(*kc), GFP_KERNEL);

	if (!kc) {
		*err = -ENOMEM;
		return NULL;
	}
	kc->dev = d;
	kc->id = id;
	kc->vec[0] = vec_rx;
	kc->vec[1] = vec_tx;
	kc->wake = wake;
	kc->wake_arg = arg;
	spin_lock_init(&kc->lock);
	*err = cn_ep_attach_stamped(&kc->ep, (char *)cnv_base(d) + off, size, role, id);
	if (*err)
		goto fail;
	kn_init(kc);
	*err = cnv_hook(d, vec_rx, kcirc_wake, kc);
	if (!*err) {
		*err = cnv_hook(d, vec_tx, kcirc_wake, kc);
		if (*err)
			cnv_unhook(d, vec_rx);
	}
	if (*err)
		goto fail;
	return kc;
fail:
	kfree(kc);
	return NULL;
}

/*
 * The device the operator named. A hot-plugged device (scripts/vm-add-peer.py)
 * reaches the operator when QEMU adds it and this kernel a moment later, when
 * PCIe hotplug has probed it; the operator may hand out a circuit in it in
 * between. A circuit left unattached would leave its peer waiting, so wait
 * a little for the probe.
 */
#define CN_DEVICE_WAIT_MS 5000

static struct cnv_dev *cnv_get_wait(u32 pos)
{
	unsigned int waited;
	struct cnv_dev *d;

	for (waited = 0;; waited += 50) {
		d = cnv_get(pos);
		if (d || waited >= CN_DEVICE_WAIT_MS)
			return d;
		msleep(50);
	}
}

struct cn_kcirc *cn_kcirc_open(const struct cn_msg_circuit *m, unsigned int l4, cn_kwake_fn wake,
			       void *arg, int *err)
{
	struct cn_circuit_params prm = {
		.mode = m->l4 == CN_L4_TCP ? CN_MODE_STREAM : CN_MODE_DGRAM,
		.ring_size = { m->ring_size[0], m->ring_size[1] },
	};
	size_t size = cn_circuit_size(&prm);
	struct cn_kcirc *kc;
	struct cnv_dev *d;

	*err = -EPROTO;
	/* the id is the header's stamp: 0 would match any header */
	if (!(m->flags & CN_CIRCUIT_VM) || m->chunk_id > U32_MAX || !size || m->l4 != l4 ||
	    !m->circuit_id || m->vm_vec >= CN_VM_PAIR_VECTORS / 2)
		return NULL;
	d = cnv_get_wait((u32)m->chunk_id);
	if (!d) {
		*err = -ENODEV;
		return NULL;
	}
	/* the slot must lie in the device, its vectors among those we got */
	if (m->slot_off > cnv_size(d) || size > cnv_size(d) - m->slot_off ||
	    2u * m->vm_vec + 1 >= cnv_nvec(d)) {
		cnv_put(d);
		return NULL;
	}
	kc = kcirc_attach(d, m->slot_off, size, (enum cn_role)m->role, m->circuit_id,
			  2u * m->vm_vec, 2u * m->vm_vec + 1, wake, arg, err);
	if (!kc) {
		cnv_put(d);
		return NULL;
	}
	/* the header said what the operator did: a stream circuit for TCP */
	if (cn_kcirc_ep(kc)->mode != (l4 == CN_L4_TCP ? CN_MODE_STREAM : CN_MODE_DGRAM)) {
		cn_kcirc_close(kc);
		*err = -EPROTO;
		return NULL;
	}
	return kc;
}

/* vm.h's cn_vm_ctl_size(), which lives with the user-space provider */
static size_t kctl_size(void)
{
	struct cn_circuit_params p = { .mode = CN_MODE_STREAM,
				       .ring_size = { CN_VM_CTL_RING, CN_VM_CTL_RING } };

	return PAGE_ALIGN(cn_circuit_size(&p));
}

struct cn_kcirc *cn_kcirc_open_ctl(struct cnv_dev *d, cn_kwake_fn wake, void *arg, int *err)
{
	struct cn_kcirc *kc;

	if (kctl_size() > cnv_size(d) || cnv_nvec(d) < CN_VM_VECTORS) {
		*err = -ENODEV;
		return NULL;
	}
	cnv_hold(d); /* cn_kcirc_close() lets go of it, as of a circuit's */
	kc = kcirc_attach(d, CN_VM_CTL_OFF, kctl_size(), CN_ROLE_INITIATOR, 0, CN_VM_VEC_RX,
			  CN_VM_VEC_TX, wake, arg, err);
	if (!kc)
		cnv_put(d);
	return kc;
}

void cn_kcirc_rehook(struct cn_kcirc *kc, cn_kwake_fn wake, void *arg)
{
	unsigned long flags;

	spin_lock_irqsave(&kc->lock, flags);
	kc->wake = wake;
	kc->wake_arg = arg;
	spin_unlock_irqrestore(&kc->lock, flags);
}

static void klocal_free(struct kref *ref)
{
	struct cn_klocal *l = container_of(ref, struct cn_klocal, ref);

	vfree(l->mem);
	kfree(l);
}

static void kn_init(struct cn_kcirc *kc)
{
	unsigned int i;

	for (i = 0; i < 4; i++) {
		unsigned int vec = kc->vec[i % 2];

		kc->notif[i].kc = kc;
		kc->notif[i].n.ops = &kn_ops;
		kc->notif[i].n.fd = -1;
		kc->notif[i].n.aux_fd = -1;
		kc->notif[i].n.vector = vec;
		kc->notif[i].n.doorbell = cn_ivshmem_doorbell(CN_VM_PEER_OPERATOR, (uint16_t)vec);
	}
	cn_ep_set_notifiers(&kc->ep, &kc->notif[0].n, &kc->notif[1].n, &kc->notif[2].n,
			    &kc->notif[3].n);
}

int cn_kcirc_pair_local(u64 id, struct cn_kcirc **a, cn_kwake_fn wake_a, void *arg_a,
			struct cn_kcirc **b, cn_kwake_fn wake_b, void *arg_b)
{
	struct cn_circuit_params p = { .mode = CN_MODE_STREAM, .stamp = id };
	size_t size = cn_circuit_size(&p);
	struct cn_kcirc *end[2] = { NULL, NULL };
	struct cn_klocal *l = kzalloc(sizeof(*l), GFP_KERNEL);
	unsigned int r;
	int err = -ENOMEM;

	if (!l)
		return -ENOMEM;
	kref_init(&l->ref);
	spin_lock_init(&l->lock);
	l->mem = vzalloc(size);
	if (!l->mem)
		goto fail;
	err = cn_circuit_format(l->mem, size, &p);
	for (r = 0; r < 2 && !err; r++) {
		end[r] = kzalloc(sizeof(*end[r]), GFP_KERNEL);
		if (!end[r]) {
			err = -ENOMEM;
			break;
		}
		end[r]->local = l;
		end[r]->role = r;
		end[r]->id = id;
		end[r]->wake = r ? wake_b : wake_a;
		end[r]->wake_arg = r ? arg_b : arg_a;
		spin_lock_init(&end[r]->lock);
		err = cn_ep_attach_stamped(&end[r]->ep, l->mem, size,
					   r ? CN_ROLE_ACCEPTOR : CN_ROLE_INITIATOR, id);
		if (!err)
			kn_init(end[r]);
	}
	if (err)
		goto fail;
	kref_get(&l->ref); /* one per end */
	l->end[0] = end[0];
	l->end[1] = end[1];
	*a = end[0];
	*b = end[1];
	return 0;
fail:
	kfree(end[0]);
	kfree(end[1]);
	vfree(l->mem);
	kfree(l);
	return err;
}

/* The caller closed the endpoint (cn_close / cn_reset) first, if it had to. */
void cn_kcirc_close(struct cn_kcirc *kc)
{
	if (kc->local) {
		struct cn_klocal *l = kc->local;
		unsigned long flags;

		spin_lock_irqsave(&l->lock, flags);
		l->end[kc->role] = NULL;
		spin_unlock_irqrestore(&l->lock, flags);
		kfree(kc);
		kref_put(&l->ref, klocal_free);
		return;
	}
	cnv_unhook(kc->dev, kc->vec[0]);
	cnv_unhook(kc->dev, kc->vec[1]);
	cnv_put(kc->dev);
	kfree(kc);
}

struct cn_endpoint *cn_kcirc_ep(struct cn_kcirc *kc)
{
	return &kc->ep;
}

u64 cn_kcirc_id(const struct cn_kcirc *kc)
{
	return kc->id;
}

struct cnv_dev *cn_kcirc_dev(const struct cn_kcirc *kc)
{
	return kc->dev;
}
