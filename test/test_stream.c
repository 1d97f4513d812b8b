// SPDX-License-Identifier: MIT
/* test/test_stream.c - stream mode semantics (TCP-like) on one thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "pair.h"

#define DW CN_MSG_DONTWAIT

static int setup(void **state)
{
	return pair_setup(state, CN_MODE_STREAM, 4096, false);
}

#define teardown pair_teardown

static void test_roundtrip_both_ways(void **state)
{
	struct pair *p = *state;
	char buf[64];

	assert_int_equal(cn_send(&p->a, "hello", 5, DW), 5);
	assert_int_equal(cn_send(&p->b, "world!", 6, DW), 6);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), DW), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(cn_recv(&p->a, buf, sizeof(buf), DW), 6);
	assert_memory_equal(buf, "world!", 6);
	assert_int_equal(cn_recv(&p->a, buf, sizeof(buf), DW), -EAGAIN);
	assert_int_equal(p->a.stats.tx_bytes, 5);
	assert_int_equal(p->b.stats.rx_bytes, 5);
}

static void test_full_partial_empty(void **state)
{
	struct pair *p = *state;
	static unsigned char big[5000], out[5000];
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = pat(i);
	/* Flow control is the ring: a 4096-byte ring takes 4096 of 5000. */
	assert_int_equal(cn_send(&p->a, big, sizeof(big), DW), 4096);
	assert_int_equal(cn_send(&p->a, big, 1, DW), -EAGAIN);
	assert_int_equal(cn_poll(&p->a) & CN_POLLOUT, 0);
	assert_int_equal(cn_readable(&p->b), 4096);
	assert_int_equal(cn_recv(&p->b, out, 1000, DW), 1000);
	assert_memory_equal(out, big, 1000);
	/* 1000 free now: below the quarter-ring low-water mark? 1024 > 1000. */
	assert_int_equal(cn_poll(&p->a) & CN_POLLOUT, 0);
	assert_int_equal(cn_send(&p->a, big + 4096, 904, DW), 904);
	assert_int_equal(cn_recv(&p->b, out + 1000, 5000, DW), 4000);
	assert_memory_equal(out, big, 5000);
	assert_int_equal(cn_recv(&p->b, out, 1, DW), -EAGAIN);
	assert_true(cn_poll(&p->a) & CN_POLLOUT);
	assert_false(cn_poll(&p->b) & CN_POLLIN);
}

static void test_wraparound_many(void **state)
{
	struct pair *p = *state;
	unsigned char in[777], out[777];
	uint64_t sent = 0, got = 0;
	int round;
	size_t i;

	/* 777 is coprime to 4096: every offset of the ring gets crossed. */
	for (round = 0; round < 6000; round++) {
		for (i = 0; i < sizeof(in); i++)
			in[i] = pat(sent + i);
		assert_int_equal(cn_send(&p->a, in, sizeof(in), DW), sizeof(in));
		sent += sizeof(in);
		assert_int_equal(cn_recv(&p->b, out, sizeof(out), DW), sizeof(out));
		for (i = 0; i < sizeof(out); i++)
			assert_int_equal(out[i], pat(got + i));
		got += sizeof(out);
	}
	assert_true(sent > 1000u * 4096u);
}

static void test_iovecs(void **state)
{
	struct pair *p = *state;
	char x[] = "abc", y[] = "", z[] = "defgh", o1[2], o2[10];
	struct iovec in[3] = { { x, 3 }, { y, 0 }, { z, 5 } };
	struct iovec out[2] = { { o1, 2 }, { o2, 10 } };

	assert_int_equal(cn_sendv(&p->a, in, 3, DW), 8);
	assert_int_equal(cn_recvv(&p->b, out, 2, DW, NULL), 8);
	assert_memory_equal(o1, "ab", 2);
	assert_memory_equal(o2, "cdefgh", 6);
	assert_int_equal(cn_sendv(&p->a, in, -1, DW), -EINVAL);
	assert_int_equal(cn_send(&p->a, x, 0, DW), 0);
	assert_int_equal(cn_recv(&p->b, o1, 0, DW), 0);
}

static void test_peek_does_not_consume(void **state)
{
	struct pair *p = *state;
	char buf[16];

	assert_int_equal(cn_send(&p->a, "peekaboo", 8, DW), 8);
	assert_int_equal(cn_recv(&p->b, buf, 4, DW | CN_MSG_PEEK), 4);
	assert_memory_equal(buf, "peek", 4);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW | CN_MSG_PEEK), 8);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 8);
	assert_memory_equal(buf, "peekaboo", 8);
}

static void test_half_close(void **state)
{
	struct pair *p = *state;
	char buf[16];

	assert_int_equal(cn_send(&p->a, "last", 4, DW), 4);
	assert_int_equal(cn_shutdown(&p->a, SHUT_WR), 0);
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -EPIPE);
	/* The peer drains, then sees EOF, and may still talk back. */
	assert_true(cn_poll(&p->b) & CN_POLLRDHUP);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 4);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 0);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 0);
	assert_int_equal(cn_send(&p->b, "reply", 5, DW), 5);
	assert_int_equal(cn_recv(&p->a, buf, 16, DW), 5);
	assert_false(cn_poll(&p->b) & CN_POLLHUP);
	assert_int_equal(cn_shutdown(&p->b, SHUT_WR), 0);
	assert_int_equal(cn_recv(&p->a, buf, 16, DW), 0);
	assert_true(cn_poll(&p->b) & CN_POLLHUP);
	assert_true(cn_poll(&p->a) & CN_POLLHUP);
	assert_int_equal(cn_shutdown(&p->a, 42), -EINVAL);
}

static void test_shut_rd_is_local(void **state)
{
	struct pair *p = *state;
	char buf[4];

	assert_int_equal(cn_shutdown(&p->b, SHUT_RD), 0);
	assert_int_equal(cn_recv(&p->b, buf, 4, DW), 0);
	/* TCP does not tell the peer about SHUT_RD. */
	assert_int_equal(cn_send(&p->a, "ok", 2, DW), 2);
}

static void test_reset(void **state)
{
	struct pair *p = *state;
	char buf[16];

	assert_int_equal(cn_send(&p->a, "doomed", 6, DW), 6);
	cn_reset(&p->b);
	assert_true(cn_poll(&p->a) & CN_POLLERR);
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -ECONNRESET);
	/* Reported once, like SO_ERROR; then EOF / EPIPE. */
	assert_int_equal(cn_recv(&p->a, buf, 16, DW), 0);
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -EPIPE);
	assert_false(cn_poll(&p->a) & CN_POLLERR);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 0);
	assert_int_equal(cn_send(&p->b, "x", 1, DW), -EPIPE);
}

static void test_reset_seen_by_reader_first(void **state)
{
	struct pair *p = *state;
	char buf[16];

	assert_int_equal(cn_send(&p->a, "pending", 7, DW), 7);
	cn_reset(&p->a);
	/* Unread data is discarded by a reset, as TCP does. */
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), -ECONNRESET);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 0);
	assert_int_equal(cn_take_error(&p->b), 0);
}

/* A revoked circuit (the operator's reload --reset): both ends read the reset once. */
static void test_revoke_resets_both_ends(void **state)
{
	struct pair *p = *state;
	char buf[16];

	assert_int_equal(cn_send(&p->a, "data", 4, DW), 4);
	cn_revoke(&p->a);
	assert_true(cn_poll(&p->a) & CN_POLLERR);
	assert_int_equal(cn_recv(&p->a, buf, 16, DW), -ECONNRESET);
	assert_int_equal(cn_recv(&p->a, buf, 16, DW), 0);
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -EPIPE);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), -ECONNRESET);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 0);
}

static void test_close_with_unread_data_resets(void **state)
{
	struct pair *p = *state;
	char buf[8];

	assert_int_equal(cn_send(&p->a, "unread", 6, DW), 6);
	cn_close(&p->b);
	assert_int_equal(cn_take_error(&p->a), -ECONNRESET);
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -EPIPE);
	assert_int_equal(cn_recv(&p->a, buf, 8, DW), 0);
}

static void test_orderly_close(void **state)
{
	struct pair *p = *state;
	char buf[8];

	assert_int_equal(cn_send(&p->b, "bye", 3, DW), 3);
	cn_close(&p->b);
	assert_int_equal(cn_recv(&p->a, buf, 8, DW), 3);
	assert_int_equal(cn_recv(&p->a, buf, 8, DW), 0);
	/* The peer closed its read side: writing is a broken pipe. */
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -EPIPE);
	assert_int_equal(cn_take_error(&p->a), 0);
}

static void test_asymmetric_rings(void **state)
{
	struct pair q;
	static unsigned char buf[70000];

	(void)state;
	assert_int_equal(pair_init_sizes(&q, CN_MODE_STREAM, 4096, 65536, false), 0);
	assert_int_equal(cn_send(&q.a, buf, sizeof(buf), DW), 4096);
	assert_int_equal(cn_send(&q.b, buf, sizeof(buf), DW), 65536);
	pair_free(&q);
}

/*
 * Two copies of one endpoint, as after fork: each uses the circuit in turn
 * and adopts what the other published, across ring wraps, both directions.
 */
static void test_sibling_copies_take_turns(void **state)
{
	struct pair *p = *state;
	struct cn_endpoint a2, b2;
	static unsigned char msg[3000], out[3000];
	size_t i;
	int turn;

	for (turn = 0; turn < 8; turn++) {
		struct cn_endpoint *tx = turn & 1 ? &a2 : &p->a, *rx = turn & 2 ? &b2 : &p->b;

		if (turn == 0) {
			a2 = p->a; /* the fork */
			b2 = p->b;
		}
		for (i = 0; i < sizeof(msg); i++)
			msg[i] = (unsigned char)(turn * 7 + i);
		assert_int_equal(cn_ep_adopt_published(tx, true), 0);
		assert_int_equal(cn_send(tx, msg, sizeof(msg), DW), sizeof(msg));
		assert_int_equal(cn_ep_adopt_published(rx, false), 0);
		assert_int_equal(cn_recv(rx, out, sizeof(out), DW), sizeof(out));
		assert_memory_equal(msg, out, sizeof(msg));
		assert_int_equal(cn_recv(rx, out, sizeof(out), DW), -EAGAIN);
	}
	/* a sibling's shutdown is the socket's: the other copy sees it */
	assert_int_equal(cn_shutdown(&a2, SHUT_WR), 0);
	assert_int_equal(cn_ep_adopt_published(&p->a, true), 0);
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -EPIPE);
	assert_int_equal(cn_ep_adopt_published(&p->b, false), 0);
	assert_int_equal(cn_recv(&p->b, out, sizeof(out), DW), 0);
}

/* A pending circuit: the acceptor reports how its connect went. */
static void test_connect_status(void **state)
{
	struct cn_circuit_params prm = { .mode = CN_MODE_STREAM, .ring_size = { 4096, 4096 },
					 .pending = true };
	struct cn_endpoint a, b;
	size_t size = cn_circuit_size(&prm);
	void *mem = aligned_alloc(4096, size);

	(void)state;
	assert_non_null(mem);
	assert_int_equal(cn_circuit_format(mem, size, &prm), 0);
	assert_int_equal(cn_ep_attach(&a, mem, size, CN_ROLE_INITIATOR), 0);
	assert_int_equal(cn_ep_attach(&b, mem, size, CN_ROLE_ACCEPTOR), 0);
	assert_int_equal(cn_ep_connect_status(&a), -EINPROGRESS);
	assert_int_equal(cn_ep_set_connect_status(&b, -1), -EINVAL);
	assert_int_equal(cn_ep_set_connect_status(&b, ECONNREFUSED), 0);
	assert_int_equal(cn_ep_connect_status(&a), -ECONNREFUSED);
	assert_int_equal(cn_ep_set_connect_status(&b, 0), 0);
	assert_int_equal(cn_ep_connect_status(&a), 0);
	/* what no acceptor may write */
	atomic_store(&((struct cn_layout_ctrl *)((char *)mem + CN_CTRL_OFF(CN_RING_B)))->prod_status,
		     5000u);
	assert_int_equal(cn_ep_connect_status(&a), -EPROTO);
	/* an ordinary circuit is established from the start */
	prm.pending = false;
	assert_int_equal(cn_circuit_format(mem, size, &prm), 0);
	assert_int_equal(cn_ep_attach(&a, mem, size, CN_ROLE_INITIATOR), 0);
	assert_int_equal(cn_ep_connect_status(&a), 0);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_partial_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wraparound_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iovecs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peek_does_not_consume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shut_rd_is_local, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_seen_by_reader_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke_resets_both_ends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_with_unread_data_resets, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_orderly_close, setup, teardown),
		cmocka_unit_test(test_asymmetric_rings),
		cmocka_unit_test_setup_teardown(test_sibling_copies_take_turns, setup, teardown),
		cmocka_unit_test(test_connect_status),
	};

	return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
