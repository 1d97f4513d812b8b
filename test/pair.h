/* SPDX-License-Identifier: MIT */
/*
 * test/pair.h - an in-process circuit with both endpoints, for unit tests:
 * region on the heap (so ASan sees any access outside it), optional eventfd
 * notifiers wired the way the local transport wires them.
 */
#ifndef CIRCNET_TEST_PAIR_H
#define CIRCNET_TEST_PAIR_H

#include <stdlib.h>
#include <string.h>

#include <circnet/circuit.h>

struct pair {
	unsigned char *mem;
	size_t size;
	struct cn_endpoint a;	 /* initiator */
	struct cn_endpoint b;	 /* acceptor */
	struct cn_notifier n[4]; /* a.rx, a.tx, b.rx, b.tx */
};

static inline int pair_init_sizes(struct pair *p, enum cn_mode mode, uint32_t ra, uint32_t rb,
				  bool notifiers)
{
	struct cn_circuit_params prm = { .mode = mode, .ring_size = { ra, rb } };
	int i, err;

	memset(p, 0, sizeof(*p));
	p->size = cn_circuit_size(&prm);
	if (!p->size)
		return -1;
	p->mem = aligned_alloc(4096, p->size);
	if (!p->mem)
		return -1;
	memset(p->mem, 0xa5, p->size); /* garbage in the rings must not matter */
	if (cn_circuit_format(p->mem, p->size, &prm))
		return -1;
	err = cn_ep_attach(&p->a, p->mem, p->size, CN_ROLE_INITIATOR);
	if (!err)
		err = cn_ep_attach(&p->b, p->mem, p->size, CN_ROLE_ACCEPTOR);
	if (err)
		return err;
	if (notifiers) {
		for (i = 0; i < 4; i++)
			if (cn_eventfd_notifier_init(&p->n[i], -1))
				return -1;
		cn_ep_set_notifiers(&p->a, &p->n[0], &p->n[1], &p->n[2], &p->n[3]);
		cn_ep_set_notifiers(&p->b, &p->n[2], &p->n[3], &p->n[0], &p->n[1]);
	}
	return 0;
}

static inline int pair_init(struct pair *p, enum cn_mode mode, uint32_t ring)
{
	return pair_init_sizes(p, mode, ring, ring, false);
}

static inline void pair_free(struct pair *p)
{
	int i;

	for (i = 0; i < 4; i++)
		if (p->n[i].ops)
			cn_notifier_release(&p->n[i]);
	free(p->mem);
	p->mem = NULL;
}

/* CMocka fixtures: a heap-allocated pair in *state. */
static inline int pair_setup(void **state, enum cn_mode mode, uint32_t ring, bool notifiers)
{
	struct pair *p = malloc(sizeof(*p));

	if (!p || pair_init_sizes(p, mode, ring, ring, notifiers))
		return -1;
	*state = p;
	return 0;
}

static inline int pair_teardown(void **state)
{
	pair_free(*state);
	free(*state);
	return 0;
}

/*
 * Datagram pair with 4 KiB rings: move ring A to offset 3584 with two
 * legitimate datagrams (2048 + 1536 bytes of records), read back. The tail
 * (512 bytes) then cannot hold a record of more than 504 payload bytes.
 * Returns 0 when every step gave the expected result.
 */
static inline int pair_dgram_to_3584(struct pair *p)
{
	static char buf[2048];

	if (cn_send(&p->a, buf, 2040, CN_MSG_DONTWAIT) != 2040 ||
	    cn_send(&p->a, buf, 1528, CN_MSG_DONTWAIT) != 1528 ||
	    cn_recv(&p->b, buf, sizeof(buf), CN_MSG_DONTWAIT) != 2040 ||
	    cn_recv(&p->b, buf, sizeof(buf), CN_MSG_DONTWAIT) != 1528)
		return -1;
	return 0;
}

static inline struct cn_layout_ctrl *pair_ctrl(struct pair *p, int ring)
{
	return (struct cn_layout_ctrl *)(p->mem + CN_CTRL_OFF(ring));
}

/* Deterministic byte pattern: byte i of a stream. */
static inline unsigned char pat(uint64_t i)
{
	return (unsigned char)(i * 2654435761u >> 13);
}

#endif
