// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz_pool.c - the operator's slot allocator (operator/pool.c) driven
 * by arbitrary sequences of: a circuit between two of four guests with a
 * ring size of the input's choosing, an endpoint letting go of its lease
 * (the hang-up reaches the allocator through epoll, as in the operator),
 * and a sweep. After every step:
 *   - no two slots in use overlap, each lies inside its chunk;
 *   - the allocator's count of slots in use is ours;
 *   - a slot's head, written with pwrite, reads back as the circuit it was
 *     formatted for (magic, stamp), and still does at the end for every
 *     circuit alive then;
 *   - a slot is never handed out while any holder of either end is left;
 *   - an end closed in the books while its lease is held is charged to its
 *     guest exactly until the lease hangs up.
 * The guests' lease ends are closed by this driver exactly as processes
 * closing their sockets would.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <circnet/circuit.h>
#include <circnet/layout.h>

#include "../operator/operator.h"

#define MAX_LIVE 64

struct live {
	struct slot *sl;
	int lease[2]; /* the guests' ends, -1 once closed */
	int gi[2];    /* the guests of the pair, by role */
	bool linger[2]; /* closed in the books while its lease is held: charged */
	uint64_t off, size, chunk, stamp;
	int chunk_fd;
};

static struct guest g[4];

/* pool.c charges lingering ends to guests by id: ours are the four above */
struct guest *guest_by_id(struct op *op, uint64_t id)
{
	unsigned int i;

	for (i = 0; i < 4; i++)
		if (g[i].id == id)
			return &g[i];
	return NULL;
}

/* the harness's guests are processes: pool.c never asks vm.c (operator/vm.c) */
int vm_pair_memory(struct op *op, const struct guest *vm, const struct guest *host,
		   size_t *size, struct vm_dev **dev)
{
	abort();
}

int vm_vectors_get(struct vm_dev *d)
{
	abort();
}

void vm_vectors_put(struct vm_dev *d, int pair)
{
	abort();
}

int vm_vectors_fds(struct vm_dev *d, int pair, int fds[4])
{
	abort();
}

uint32_t vm_dev_position(const struct vm_dev *d, const struct guest *guest)
{
	abort();
}

void vm_vectors_wake_other(struct vm_dev *d, int pair, const struct guest *gone)
{
	abort();
}

bool vm_dev_is(const struct vm_dev *d, const struct vm_dev *which)
{
	abort();
}

/* the harness gives slots no circuits: a lease hang-up never reaches one */
void core_end_gone(struct op *op, struct circuit *c, int role)
{
	(void)op;
	(void)c;
	(void)role;
	abort();
}

static void deliver_hangups(struct op *op)
{
	struct epoll_event evs[64];
	int n, i;

	while ((n = epoll_wait(op->epfd, evs, 64, 0)) > 0)
		for (i = 0; i < n; i++)
			pool_lease_event(op, (struct lease *)evs[i].data.ptr);
}

/* The head in the chunk is the circuit's we formatted into it. */
static void check_head(const struct live *l)
{
	struct cn_layout_hdr h;

	if (pread(l->chunk_fd, &h, sizeof(h), (off_t)l->off) != sizeof(h) ||
	    h.magic != CN_LAYOUT_MAGIC || h.stamp != l->stamp || h.total_size > l->size)
		abort();
}

static void check(struct op *op, struct live *lv, int nlive, bool heads)
{
	unsigned int used = 0;
	int i, j;

	for (i = 0; i < nlive; i++) {
		if (!lv[i].sl)
			continue;
		used++;
		for (j = i + 1; j < nlive; j++)
			if (lv[j].sl && lv[j].chunk == lv[i].chunk &&
			    lv[i].off < lv[j].off + lv[j].size && lv[j].off < lv[i].off + lv[i].size)
				abort();
		if (heads)
			check_head(&lv[i]);
	}
	if (op->slots_used != used)
		abort();
	/* every charge of a lingering end is one the guest still carries, and no more */
	for (j = 0; j < 4; j++) {
		unsigned int want = 0;

		for (i = 0; i < nlive; i++)
			want += (lv[i].linger[0] && lv[i].gi[0] == j) +
				(lv[i].linger[1] && lv[i].gi[1] == j);
		if (g[j].nlinger != want)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct live lv[MAX_LIVE];
	struct op op;
	size_t pos = 0;
	int nlive = 0, i, r;

	memset(&op, 0, sizeof(op));
	memset(lv, 0, sizeof(lv));
	op.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (op.epfd < 0)
		return 0;
	op.next_id = 1000;
	list_init(&op.pools);
	list_init(&op.unswept);
	for (i = 0; i < 4; i++) {
		g[i].nlinger = 0;
		g[i].id = 10 + (uint64_t)i;
		g[i].name[0] = (char)('a' + i);
	}
	while (pos + 2 <= size && pos < 1024) {
		uint8_t a = data[pos++], b = data[pos++];

		switch (a % 4) {
		case 0: { /* a circuit: guests from b, ring sizes 4 KiB << (0..7) */
			struct cn_circuit_params prm = { .mode = CN_MODE_STREAM };
			struct live *l = NULL;

			for (i = 0; i < nlive; i++)
				if (!lv[i].sl && lv[i].lease[0] < 0 && lv[i].lease[1] < 0)
					l = &lv[i];
			if (!l && nlive < MAX_LIVE)
				l = &lv[nlive++];
			if (!l)
				break;
			prm.ring_size[0] = CN_RING_MIN << ((a >> 2) & 7);
			prm.ring_size[1] = CN_RING_MIN << ((b >> 4) & 7);
			l->gi[0] = b & 3;
			l->gi[1] = (b >> 2) & 3;
			l->linger[0] = l->linger[1] = false;
			l->sl = pool_slot_new(&op, &g[l->gi[0]], &g[l->gi[1]], cn_circuit_size(&prm),
					      l->lease, &r);
			if (!l->sl) {
				l->lease[0] = l->lease[1] = -1;
				break;
			}
			prm.stamp = ++op.next_id;
			if (pool_slot_format(l->sl, &prm))
				abort();
			l->off = pool_slot_off(l->sl);
			l->size = l->sl->size;
			l->chunk = pool_slot_chunk(l->sl);
			l->chunk_fd = pool_slot_fd(l->sl);
			l->stamp = prm.stamp;
			check_head(l);
			break;
		}
		case 1: /* an end's last holder lets go */
			if (!nlive)
				break;
			i = b % nlive;
			r = (b >> 7) & 1;
			if (lv[i].lease[r] >= 0) {
				close(lv[i].lease[r]);
				lv[i].lease[r] = -1;
				lv[i].linger[r] = false;
			}
			deliver_hangups(&op);
			/* the allocator may reuse it only now that both ends are gone */
			if (lv[i].sl && lv[i].lease[0] < 0 && lv[i].lease[1] < 0)
				lv[i].sl = NULL;
			break;
		case 2: /* an end closed in the books, its lease still held */
			if (!nlive)
				break;
			i = b % nlive;
			r = (b >> 7) & 1;
			if (lv[i].sl && lv[i].lease[r] >= 0) {
				pool_end_closed(&op, lv[i].sl, r, &g[lv[i].gi[r]]);
				lv[i].linger[r] = true;
			}
			break;
		default:
			pool_sweep(&op);
			break;
		}
		check(&op, lv, nlive, false);
	}
	/* no later allocation wrote over a live circuit's head */
	check(&op, lv, nlive, true);
	for (i = 0; i < nlive; i++)
		for (r = 0; r < 2; r++)
			if (lv[i].lease[r] >= 0)
				close(lv[i].lease[r]);
	deliver_hangups(&op);
	if (op.slots_used)
		abort();
	for (i = 0; i < 4; i++)
		if (g[i].nlinger)
			abort();
	pool_fini(&op);
	close(op.epfd);
	return 0;
}
