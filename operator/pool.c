// SPDX-License-Identifier: MIT
/*
 * operator/pool.c - pair regions (circnet/pool.h): the memory the operator
 * gives a pair of guests, in chunks, and the slots that circuits live in.
 *
 * A pair region is created on the first circuit between two guests (a guest
 * and itself, or a guest and the proxy stack, are pairs too) and holds one
 * or more chunks: sealed memfds of CHUNK_SIZE bytes (a circuit larger than
 * that gets a chunk of its own size). A circuit is a slot: an offset and a
 * size in a chunk. The operator never maps a chunk: it formats a slot's head
 * with one pwrite and returns a freed slot's pages with one fallocate, so
 * nothing a guest writes into a chunk can reach the operator.
 *
 * Slot reuse is the dangerous part: a late write from the old circuit must
 * never reach the new one. Each slot has two leases, pipes whose read
 * ends travel with the circuit to its two endpoints; the kernel
 * counts their holders across fork, exec and fd passing, so when the last
 * process holding an end closes it, our write end reports the error of a
 * pipe nobody reads (EPOLLERR). Only when both
 * leases hung up is the slot free (and its pages returned): by then no
 * process of either guest can still use it. A guest that scribbles over its
 * chunks breaks only circuits of its own pairs, and each endpoint validates
 * every index it reads (layout.h) as it always did.
 *
 * Ids of chunks come from the operator's id counter (wall-clock based, never
 * reused across restarts), so a guest's table of mapped chunks (circuit/
 * pool.c) cannot mistake a new operator's chunk for an earlier one's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <circnet/circuit.h>
#include <circnet/layout.h>
#include <circnet/notify.h>

#include "log.h"
#include "operator.h"

#define CHUNK_SIZE	 ((size_t)16 << 20)
#define CHUNK_SEALS	 (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define POOL_EMPTY_KEEP 1 /* empty chunks a pair keeps, so that a busy pair does not churn */
#define POOL_SWEEP_MS	 500 /* a free slot keeps its pages this long (pool_sweep) */

struct pool {
	uint64_t gid[2]; /* the pair's guests by runtime id (ids outlive reloads) */
	char name[2][CN_NAME_MAX];
	struct list chunks;
	unsigned int nchunks;
	struct list link; /* op->pools */
};

struct pchunk {
	struct pool *p;
	uint64_t id;
	int fd;
	/*
	 * A VM's pair (vm.c): the chunk is the memory of the VM's device for
	 * this pair, whole and fixed (a BAR does not grow), and each slot
	 * takes a vector pair of the device. NULL once the device is gone.
	 */
	struct vm_dev *vmdev;
	bool vm;
	size_t size, bump;
	unsigned int used; /* slots handed out and not free yet */
	struct slot *free; /* freed slots, most recent first */
	struct list slots; /* every slot carved from it */
	struct list link;  /* p->chunks */
};

static int64_t mono_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A free slot's data pages go back to the system (the head page stays: the
 * next circuit in the slot rewrites it anyway). Failure only costs memory.
 */
static void slot_punch(struct slot *sl)
{
	struct pchunk *ch = sl->ch;

	list_del(&sl->sweep);
	if (sl->size > CN_DATA_OFF &&
	    fallocate(ch->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(sl->off + CN_DATA_OFF), (off_t)(sl->size - CN_DATA_OFF)) < 0)
		log_debug("pair %s-%s: returning a slot's pages failed: %s", ch->p->name[0],
			  ch->p->name[1], strerror(errno));
}

/*
 * Why not at once: a pair that connects again soon gets the same slot back
 * (free lists are last-in first-out) with its pages still there and still
 * mapped by both ends, so a connect costs no page faults. A slot that stays
 * free POOL_SWEEP_MS returns its pages; so does every slot of a chunk that
 * goes away.
 */
int pool_sweep(struct op *op)
{
	int64_t now = mono_now_ms();

	while (!list_empty(&op->unswept)) {
		struct slot *sl = container_of(op->unswept.next, struct slot, sweep);

		if (now - sl->freed_ms < POOL_SWEEP_MS)
			return (int)(POOL_SWEEP_MS - (now - sl->freed_ms));
		slot_punch(sl);
	}
	return -1;
}

static int64_t pagesz(void)
{
	return sysconf(_SC_PAGESIZE);
}

static struct pool *pool_find(struct op *op, const struct guest *a, const struct guest *b)
{
	struct list *pos;

	list_for_each(pos, &op->pools) {
		struct pool *p = container_of(pos, struct pool, link);

		if ((p->gid[0] == a->id && p->gid[1] == b->id) ||
		    (p->gid[0] == b->id && p->gid[1] == a->id))
			return p;
	}
	return NULL;
}

static struct pool *pool_get(struct op *op, const struct guest *a, const struct guest *b)
{
	struct pool *p = pool_find(op, a, b);

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->gid[0] = a->id;
	p->gid[1] = b->id;
	snprintf(p->name[0], sizeof(p->name[0]), "%s", a->name);
	snprintf(p->name[1], sizeof(p->name[1]), "%s", b->name);
	list_init(&p->chunks);
	list_add_tail(&op->pools, &p->link);
	op->npools++;
	return p;
}

static struct pchunk *chunk_new(struct op *op, struct pool *p, size_t size, int *errp)
{
	struct pchunk *ch = calloc(1, sizeof(*ch));
	char name[16 + 2 * CN_NAME_MAX];

	if (!ch)
		return NULL;
	snprintf(name, sizeof(name), "circnet-pair-%s-%s", p->name[0], p->name[1]);
	ch->fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ch->fd < 0 || ftruncate(ch->fd, (off_t)size) < 0 ||
	    fcntl(ch->fd, F_ADD_SEALS, CHUNK_SEALS) < 0) {
		*errp = -errno;
		log_err("pair %s-%s: a new chunk of %zu bytes failed: %s", p->name[0], p->name[1],
			size, strerror(errno));
		if (ch->fd >= 0)
			close(ch->fd);
		free(ch);
		return NULL;
	}
	ch->fd = cn_fd_lift(ch->fd);
	list_init(&ch->slots);
	ch->p = p;
	ch->id = ++op->next_id;
	ch->size = size;
	list_add_tail(&p->chunks, &ch->link);
	p->nchunks++;
	op->nchunks++;
	op->chunk_bytes += size;
	return ch;
}

/* The pair's device memory as its one chunk (vm.c assigns the device to the pair). */
static struct pchunk *chunk_new_vm(struct op *op, struct pool *p, const struct guest *vm,
				   const struct guest *host, int *errp)
{
	struct pchunk *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->fd = vm_pair_memory(op, vm, host, &ch->size, &ch->vmdev);
	if (ch->fd < 0) {
		*errp = ch->fd;
		free(ch);
		return NULL;
	}
	ch->fd = cn_fd_lift(ch->fd);
	ch->vm = true;
	list_init(&ch->slots);
	ch->p = p;
	ch->id = ++op->next_id;
	list_add_tail(&p->chunks, &ch->link);
	p->nchunks++;
	op->nchunks++;
	op->chunk_bytes += ch->size;
	return ch;
}

static void chunk_free(struct op *op, struct pchunk *ch)
{
	while (!list_empty(&ch->slots)) {
		struct slot *sl = container_of(ch->slots.next, struct slot, link);

		list_del(&sl->link);
		list_del(&sl->sweep);
		free(sl);
	}
	list_del(&ch->link);
	ch->p->nchunks--;
	op->nchunks--;
	op->chunk_bytes -= ch->size;
	close(ch->fd);
	free(ch);
}

/* A freed slot of exactly this size, or a carve from the bump area. */
static struct slot *chunk_take(struct pchunk *ch, size_t size)
{
	struct slot **pp, *sl;

	for (pp = &ch->free; *pp; pp = &(*pp)->next_free)
		if ((*pp)->size == size) {
			sl = *pp;
			*pp = sl->next_free;
			sl->next_free = NULL;
			list_del(&sl->sweep); /* a no-op once swept */
			return sl;
		}
	if (ch->size - ch->bump < size)
		return NULL;
	sl = calloc(1, sizeof(*sl));
	if (!sl)
		return NULL;
	sl->ch = ch;
	list_init(&sl->sweep);
	list_add_tail(&ch->slots, &sl->link);
	sl->off = ch->bump;
	sl->size = size;
	ch->bump += size;
	return sl;
}

/*
 * A lease is a pipe: the guest gets the read end, we keep the write end and
 * never write. A pipe is less than half a socket pair's kernel memory
 * (2.5 against 6 KiB here) and cheaper to make, and the guest's end, being
 * read-only, lets it queue nothing at us.
 */
static int lease_open(struct op *op, struct slot *sl, int role, int *guest_end)
{
	struct epoll_event e = { .events = 0, .data.ptr = &sl->lease[role].ev };
	int sv[2];

	if (pipe2(sv, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	sl->lease[role].ev.kind = EV_LEASE;
	sl->lease[role].ev.fd = cn_fd_lift(sv[1]);
	sl->lease[role].sl = sl;
	/* events 0: only EPOLLERR (no reader is left), which epoll always reports */
	if (epoll_ctl(op->epfd, EPOLL_CTL_ADD, sl->lease[role].ev.fd, &e) < 0) {
		int err = -errno;

		close(sl->lease[role].ev.fd);
		close(sv[0]);
		sl->lease[role].ev.fd = -1;
		return err;
	}
	*guest_end = sv[0];
	return 0;
}

static void lease_close(struct op *op, struct slot *sl, int role)
{
	int fd = sl->lease[role].ev.fd;

	if (fd < 0)
		return;
	if (sl->linger_gid[role]) {
		struct guest *g = guest_by_id(op, sl->linger_gid[role]);

		if (g)
			g->nlinger--;
		sl->linger_gid[role] = 0;
	}
	epoll_ctl(op->epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	sl->lease[role].ev.fd = -1;
	sl->live--;
}

/* Both leases are gone: the slot's pages go back, the slot to its chunk's free list. */
static void slot_release(struct op *op, struct slot *sl)
{
	struct pchunk *ch = sl->ch;
	struct pool *p = ch->p;
	unsigned int empty = 0;
	struct list *pos, *tmp;

	if (sl->c) {
		sl->c->slot = NULL;
		sl->c = NULL;
	}
	if (ch->vmdev && sl->vm_vec >= 0)
		vm_vectors_put(ch->vmdev, sl->vm_vec);
	sl->vm_vec = -1;
	/* its pages go back once it stayed free a while (pool_sweep) */
	sl->freed_ms = mono_now_ms();
	list_add_tail(&op->unswept, &sl->sweep);
	sl->next_free = ch->free;
	ch->free = sl;
	ch->used--;
	op->slots_used--;
	if (ch->used)
		return;
	if (ch->vm && !ch->vmdev) {
		chunk_free(op, ch); /* its VM's device is gone: nothing comes back to it */
		return;
	}
	/* keep POOL_EMPTY_KEEP empty chunks per pair; the rest go */
	list_for_each_safe(pos, tmp, &p->chunks) {
		struct pchunk *c = container_of(pos, struct pchunk, link);

		if (!c->used && ++empty > POOL_EMPTY_KEEP)
			chunk_free(op, c);
	}
}

/*
 * A slot in a VM's pair: in the device's memory, with a vector pair of the
 * device, and a lease for a host end only. A VM's end has no process to
 * hold a lease: it ends when the VM says CLOSED or its session or device
 * goes (pool_end_closed), and a VM that writes on after that breaks only
 * circuits of its own pair. Between two VMs neither end has a lease.
 */
static struct slot *slot_new_vm(struct op *op, struct pool *p, const struct guest *a,
				const struct guest *b, size_t size, int guest_lease[2], int *errp)
{
	unsigned int vm_ends = (a->vm ? 1u : 0u) | (b->vm ? 2u : 0u);
	const struct guest *vm = a->vm ? a : b, *other = a->vm ? b : a;
	size_t page = (size_t)pagesz();
	int host = vm_ends == 3 ? -1 : a->vm ? 1 : 0, err = -ENOBUFS;
	struct pchunk *ch;
	struct list *pos;
	struct slot *sl;

	if (a == b) {
		*errp = -EOPNOTSUPP; /* a VM's own loopback is its kernel's */
		return NULL;
	}
	/* the pair's live device: chunks of devices gone stay only while their slots are used */
	ch = NULL;
	list_for_each(pos, &p->chunks)
		if (container_of(pos, struct pchunk, link)->vmdev)
			ch = container_of(pos, struct pchunk, link);
	if (!ch && !(ch = chunk_new_vm(op, p, vm, other, errp)))
		return NULL;
	*errp = -ENOBUFS;
	size = (size + page - 1) & ~(page - 1);
	sl = chunk_take(ch, size);
	if (!sl)
		return NULL; /* the device's memory is full */
	sl->vm_vec = vm_vectors_get(ch->vmdev);
	sl->lease[0].ev.fd = sl->lease[1].ev.fd = -1;
	guest_lease[0] = guest_lease[1] = -1;
	/* -ENOBUFS when every vector pair is taken */
	if (sl->vm_vec < 0 ||
	    (host >= 0 && (err = lease_open(op, sl, host, &guest_lease[host])))) {
		if (sl->vm_vec >= 0)
			vm_vectors_put(ch->vmdev, sl->vm_vec);
		sl->vm_vec = -1;
		sl->next_free = ch->free;
		ch->free = sl;
		*errp = err;
		return NULL;
	}
	sl->vm_ends = vm_ends;
	sl->live = 2; /* a host's lease and a VM's end, or two VMs' ends */
	sl->c = NULL;
	sl->linger_gid[0] = sl->linger_gid[1] = 0;
	ch->used++;
	op->slots_used++;
	return sl;
}

struct slot *pool_slot_new(struct op *op, const struct guest *a, const struct guest *b, size_t size,
			   int guest_lease[2], int *errp)
{
	size_t page = (size_t)pagesz();
	struct pool *p = pool_get(op, a, b);
	struct pchunk *ch = NULL;
	struct slot *sl = NULL;
	struct list *pos;
	int err, role;

	*errp = -ENOMEM;
	if (!p)
		return NULL;
	if (a->vm || b->vm)
		return slot_new_vm(op, p, a, b, size, guest_lease, errp);
	size = (size + page - 1) & ~(page - 1);
	list_for_each(pos, &p->chunks) {
		/* a VM's device left from before a reload made the guest a process guest: not here */
		if (container_of(pos, struct pchunk, link)->vm)
			continue;
		sl = chunk_take(container_of(pos, struct pchunk, link), size);
		if (sl)
			break;
	}
	if (!sl) {
		ch = chunk_new(op, p, size > CHUNK_SIZE ? size : CHUNK_SIZE, errp);
		sl = ch ? chunk_take(ch, size) : NULL;
		if (!sl) {
			if (ch && !ch->used)
				chunk_free(op, ch);
			return NULL;
		}
	}
	sl->lease[0].ev.fd = sl->lease[1].ev.fd = -1;
	sl->vm_vec = -1;
	sl->vm_ends = 0;
	guest_lease[0] = guest_lease[1] = -1;
	for (role = 0; role < 2; role++) {
		err = lease_open(op, sl, role, &guest_lease[role]);
		if (err) {
			log_err("pair %s-%s: a slot's lease failed: %s", p->name[0], p->name[1],
				strerror(-err));
			if (role) {
				lease_close(op, sl, 0);
				close(guest_lease[0]);
			}
			sl->next_free = sl->ch->free;
			sl->ch->free = sl;
			*errp = err;
			return NULL;
		}
		sl->live++;
	}
	sl->c = NULL;
	sl->linger_gid[0] = sl->linger_gid[1] = 0;
	sl->ch->used++;
	op->slots_used++;
	return sl;
}

int pool_slot_format(struct slot *sl, const struct cn_circuit_params *prm)
{
	/* aligned as in a chunk: the control blocks are 128-byte aligned atomics */
	_Alignas(CN_CTRL_STRIDE) unsigned char head[CN_DATA_OFF];
	int err = cn_circuit_format_head(head, sizeof(head), prm);
	ssize_t w;

	if (err)
		return err;
	if (cn_circuit_size(prm) > sl->size)
		return -EINVAL;
	w = pwrite(sl->ch->fd, head, sizeof(head), (off_t)sl->off);
	if (w < 0)
		return -errno;
	return w == (ssize_t)sizeof(head) ? 0 : -EIO;
}

int pool_slot_fd(const struct slot *sl)
{
	return sl->ch->fd;
}

uint64_t pool_slot_chunk(const struct slot *sl)
{
	return sl->ch->id;
}

uint64_t pool_slot_off(const struct slot *sl)
{
	return sl->off;
}

bool pool_slot_vm(const struct slot *sl, const struct guest *g, int *vm_vec, uint32_t *position)
{
	if (!sl->ch->vmdev)
		return false;
	*vm_vec = sl->vm_vec;
	*position = vm_dev_position(sl->ch->vmdev, g);
	return true;
}

int pool_slot_vm_wake(const struct slot *sl, int fds[4])
{
	return sl->ch->vmdev ? vm_vectors_fds(sl->ch->vmdev, sl->vm_vec, fds) : -ENODEV;
}

/*
 * The VM's end of c is gone without a word (its session or device ended):
 * leave the reset the VM would have left, so that the host end reads
 * ECONNRESET, and wake it. A socket pair's hang-up does this for process
 * peers; an eventfd has none. The one time the operator maps a slot: the
 * slot alone, for this moment, through the same validating attach as any
 * endpoint (a header the VM scribbled over is not touched, the host end
 * then learns of the end from its session's RESET).
 */
static void pool_slot_vm_reset_if(struct op *op, struct circuit *c, int role, bool silent_only);

/*
 * The VM end of c says CLOSED: if it left no word in the circuit (no FIN,
 * no reset: it never attached it, its device was not there), leave the
 * reset it would have left, or the other end waits for a peer that never
 * comes. An end that closed itself has written FIN or RST first.
 */
void pool_slot_vm_closed(struct op *op, struct circuit *c, int role)
{
	pool_slot_vm_reset_if(op, c, role, true);
}

void pool_slot_vm_reset(struct op *op, struct circuit *c, int role)
{
	pool_slot_vm_reset_if(op, c, role, false);
}

static void pool_slot_vm_reset_if(struct op *op, struct circuit *c, int role, bool silent_only)
{
	struct slot *sl = c->slot;
	struct cn_circuit_params prm = {
		.mode = c->l4 == CN_L4_TCP ? CN_MODE_STREAM : CN_MODE_DGRAM,
		.ring_size = { c->ring_size[0], c->ring_size[1] },
	};
	struct cn_endpoint ep;
	size_t size = cn_circuit_size(&prm);
	void *base;

	if (!sl || !(sl->vm_ends & (1u << role)) || !sl->ch->vmdev || !size || size > sl->size ||
	    !c->end[role].g)
		return;
	base = mmap(NULL, sl->size, PROT_READ | PROT_WRITE, MAP_SHARED, sl->ch->fd, (off_t)sl->off);
	if (base == MAP_FAILED)
		return;
	memset(&ep, 0, sizeof(ep));
	if (!cn_ep_attach_stamped(&ep, base, size, (enum cn_role)role, c->id)) {
		uint32_t pf = atomic_load_explicit(&ep.tx.ctrl->prod_flags, memory_order_seq_cst);
		uint32_t cf = atomic_load_explicit(&ep.rx.ctrl->cons_flags, memory_order_seq_cst);

		/* what a closing end writes before it says CLOSED: FIN, CLOSED or RST */
		if (silent_only && ((pf & (CN_PF_FIN | CN_PF_RST)) || (cf & (CN_CF_CLOSED | CN_CF_RST)))) {
			munmap(base, sl->size);
			return;
		}
		cn_reset(&ep);
	}
	munmap(base, sl->size);
	vm_vectors_wake_other(sl->ch->vmdev, sl->vm_vec, c->end[role].g);
}

void pool_vm_gone(struct op *op, struct vm_dev *d, const struct vm *gone_vm)
{
	struct list *pp, *cp, *sp, *tmp;

	list_for_each(pp, &op->pools) {
		struct pool *p = container_of(pp, struct pool, link);

		list_for_each_safe(cp, tmp, &p->chunks) {
			struct pchunk *ch = container_of(cp, struct pchunk, link);

			if (!ch->vmdev || !vm_dev_is(ch->vmdev, d))
				continue;
			/* circuits still in it: their other ends learn of it now */
			list_for_each(sp, &ch->slots) {
				struct slot *sl = container_of(sp, struct slot, link);
				int role;

				for (role = 0; role < 2 && sl->c; role++)
					if (sl->c->end[role].g && sl->c->end[role].g->vm == gone_vm)
						pool_slot_vm_reset(op, sl->c, role);
			}
			ch->vmdev = NULL;
			/* the device's memory lives on only while host ends still use it */
			if (!ch->used)
				chunk_free(op, ch);
		}
	}
}

void pool_vm_ends_drop(struct op *op, struct slot *sl)
{
	unsigned int role;

	if (!sl->vm_ends)
		return; /* both ends were closed in the books: released then, if at all */
	for (role = 0; role < 2; role++)
		if (sl->vm_ends & (1u << role)) {
			sl->vm_ends &= ~(1u << role);
			sl->live--;
		}
	if (!sl->live)
		slot_release(op, sl);
}

void pool_end_closed(struct op *op, struct slot *sl, int role, struct guest *g)
{
	if (sl->vm_ends & (1u << role)) {
		/* a VM's end holds no lease: closed in the books, it is gone */
		sl->vm_ends &= ~(1u << role);
		if (!--sl->live)
			slot_release(op, sl);
		return;
	}
	if (sl->lease[role].ev.fd >= 0 && !sl->linger_gid[role]) {
		sl->linger_gid[role] = g->id;
		g->nlinger++;
	}
}

void pool_lease_event(struct op *op, struct lease *l)
{
	struct slot *sl = l->sl;
	int role = (int)(l - sl->lease);

	/*
	 * Nobody holds this end any more. Its CLOSED may never come (a process
	 * that accepted through a listener it shares with a sibling before its
	 * own session to us was up has nobody to tell), so close it now; first,
	 * while the lease still counts, so that lease_close undoes the charge.
	 */
	if (sl->c)
		core_end_gone(op, sl->c, role);
	lease_close(op, sl, role);
	if (!sl->live)
		slot_release(op, sl);
}

void pool_fini(struct op *op)
{
	while (!list_empty(&op->pools)) {
		struct pool *p = container_of(op->pools.next, struct pool, link);

		while (!list_empty(&p->chunks)) {
			struct pchunk *ch = container_of(p->chunks.next, struct pchunk, link);
			struct list *pos;

			/* slots still in use: their memory lives on with the guests that map it */
			list_for_each(pos, &ch->slots) {
				struct slot *sl = container_of(pos, struct slot, link);

				lease_close(op, sl, 0);
				lease_close(op, sl, 1);
			}
			chunk_free(op, ch);
		}
		list_del(&p->link);
		free(p);
	}
	op->npools = 0;
}
