// SPDX-License-Identifier: MIT
/* test/test_dgram.c - datagram mode semantics (UDP-like). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "pair.h"

#define DW CN_MSG_DONTWAIT

static int setup(void **state)
{
	return pair_setup(state, CN_MODE_DGRAM, 4096, false);
}

#define teardown pair_teardown

static void test_boundaries_kept(void **state)
{
	struct pair *p = *state;
	char buf[256];
	unsigned fl;

	assert_int_equal(cn_send(&p->a, "x", 1, DW), 1);
	assert_int_equal(cn_send(&p->a, buf, 100, DW), 100);
	assert_int_equal(cn_send(&p->a, "", 0, DW), 0);
	assert_int_equal(cn_send(&p->a, "tail", 4, DW), 4);
	assert_int_equal(cn_readable(&p->b), 1);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), DW), 1);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), DW), 100);
	/* A zero-length datagram is a datagram, not EOF. */
	{
		struct iovec iov = { buf, sizeof(buf) };

		assert_int_equal(cn_recvv(&p->b, &iov, 1, DW, &fl), 0);
		assert_int_equal(fl, 0);
	}
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), DW), 4);
	assert_memory_equal(buf, "tail", 4);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), DW), -EAGAIN);
}

static void test_truncation(void **state)
{
	struct pair *p = *state;
	char big[100], buf[10];
	struct iovec iov = { buf, sizeof(buf) };
	unsigned fl;

	memset(big, 'q', sizeof(big));
	assert_int_equal(cn_send(&p->a, big, 100, DW), 100);
	assert_int_equal(cn_send(&p->a, big, 100, DW), 100);
	assert_int_equal(cn_send(&p->a, "next", 4, DW), 4);
	assert_int_equal(cn_recvv(&p->b, &iov, 1, DW, &fl), 10);
	assert_true(fl & CN_MSGF_TRUNC);
	/* With CN_MSG_TRUNC the real length comes back, like recv(MSG_TRUNC). */
	assert_int_equal(cn_recvv(&p->b, &iov, 1, DW | CN_MSG_TRUNC, &fl), 100);
	assert_true(fl & CN_MSGF_TRUNC);
	/* The rest of a truncated datagram is gone. */
	assert_int_equal(cn_recvv(&p->b, &iov, 1, DW, &fl), 4);
	assert_int_equal(fl, 0);
	assert_memory_equal(buf, "next", 4);
}

static void test_emsgsize_and_eagain(void **state)
{
	struct pair *p = *state;
	static char buf[70000];
	int n = 0;

	/* 4 KiB ring: at most half a ring per record. */
	assert_int_equal(p->a.dgram_max, 2048 - 8);
	assert_int_equal(cn_send(&p->a, buf, 2041, DW), -EMSGSIZE);
	assert_int_equal(cn_send(&p->a, buf, 2040, DW), 2040);
	while (cn_send(&p->a, buf, 500, DW) == 500)
		n++;
	assert_int_equal(n, 4); /* records of 8 + 504: 2048 + 4 * 512 fill the ring */
	assert_int_equal(cn_send(&p->a, buf, 500, DW), -EAGAIN);
	assert_false(cn_poll(&p->a) & CN_POLLOUT);
	assert_int_equal(cn_recv(&p->b, buf, sizeof(buf), DW), 2040);
	assert_int_equal(cn_send(&p->a, buf, 500, DW), 500);

	struct pair q;

	assert_int_equal(pair_init(&q, CN_MODE_DGRAM, 0), 0);
	assert_int_equal(q.a.dgram_max, 65535);
	assert_int_equal(cn_send(&q.a, buf, 65535, DW), 65535);
	assert_int_equal(cn_send(&q.a, buf, 65536, DW), -EMSGSIZE);
	assert_int_equal(cn_recv(&q.b, buf, sizeof(buf), DW), 65535);
	pair_free(&q);
}

static void test_wrap_records(void **state)
{
	struct pair *p = *state;
	unsigned char in[1500], out[1500];
	uint64_t seq = 0;
	size_t len, i;
	int round;

	/*
	 * Varying sizes put record ends everywhere, forcing wrap records; two
	 * records of < 1008 bytes plus a wrap always fit in 4 KiB.
	 */
	for (round = 0; round < 20000; round++) {
		len = (size_t)(round * 37) % 1000;
		for (i = 0; i < len; i++)
			in[i] = pat(seq + i);
		assert_int_equal(cn_send(&p->a, in, len, DW), (ssize_t)len);
		if (round % 2) {
			/* keep two records in flight now and then */
			assert_int_equal(cn_recv(&p->b, out, sizeof(out), DW),
					 (ssize_t)((size_t)((round - 1) * 37) % 1000));
			assert_int_equal(cn_recv(&p->b, out, sizeof(out), DW), (ssize_t)len);
			for (i = 0; i < len; i++)
				assert_int_equal(out[i], pat(seq + i));
		}
		seq += len;
	}
}

static void test_peek_keeps_datagram(void **state)
{
	struct pair *p = *state;
	char buf[16];

	assert_int_equal(cn_send(&p->a, "one", 3, DW), 3);
	assert_int_equal(cn_send(&p->a, "two", 3, DW), 3);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW | CN_MSG_PEEK), 3);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW | CN_MSG_PEEK), 3);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 3);
	assert_memory_equal(buf, "one", 3);
	assert_int_equal(cn_recv(&p->b, buf, 16, DW), 3);
	assert_memory_equal(buf, "two", 3);
}

static void test_eof_after_shutdown(void **state)
{
	struct pair *p = *state;
	char buf[16];
	struct iovec iov = { buf, sizeof(buf) };
	unsigned fl;

	assert_int_equal(cn_send(&p->a, "fin", 3, DW), 3);
	assert_int_equal(cn_shutdown(&p->a, SHUT_WR), 0);
	assert_int_equal(cn_recvv(&p->b, &iov, 1, DW, &fl), 3);
	assert_int_equal(cn_recvv(&p->b, &iov, 1, DW, &fl), 0);
	assert_true(fl & CN_MSGF_EOF);
	assert_int_equal(cn_send(&p->a, "x", 1, DW), -EPIPE);
	/* Closing a datagram endpoint never resets, even with unread data. */
	assert_int_equal(cn_send(&p->b, "u", 1, DW), 1);
	cn_close(&p->a);
	assert_int_equal(cn_take_error(&p->b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_boundaries_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_emsgsize_and_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrap_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peek_keeps_datagram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_after_shutdown, setup, teardown),
	};

	return cmocka_run_group_tests_name("dgram", tests, NULL, NULL);
}
