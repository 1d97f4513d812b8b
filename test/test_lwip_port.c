// SPDX-License-Identifier: MIT
/*
 * test/test_lwip_port.c - the platform of circnet's lwIP build
 * (dataplane/lwip/lwip_port.c): SipHash-2-4 against its authors' vectors,
 * and initial sequence numbers that are keyed per connection (RFC 6528):
 * different for different 4-tuples, steadily rising for one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <lwip/ip_addr.h>

#include "circnet_lwip_hooks.h"
#include "lwip_port.h"

/* SipHash-2-4, key 00..0f, message 00..len-1 (the paper's Appendix A, and its vectors.h) */
static void test_siphash_vectors(void **state)
{
	static const uint64_t want[] = {
		0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull,
		0x85676696d7fb7e2dull, 0xcf2794e0277187b7ull, 0x18765564cd99a68dull,
		0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull, 0x93f5f5799a932462ull,
		0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
		0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull,
		0xa129ca6149be45e5ull, 0x3f2acc7f57c29bdbull,
	};
	uint8_t key_bytes[16], msg[sizeof(want) / sizeof(want[0])];
	uint64_t key[2];
	size_t i;

	(void)state;
	for (i = 0; i < 16; i++)
		key_bytes[i] = (uint8_t)i;
	memcpy(key, key_bytes, 16);
	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_true(lwip_port_siphash(key, msg, i) == want[i]);
}

static void addr4(ip_addr_t *a, uint32_t v)
{
	ip_addr_set_ip4_u32_val(*a, v);
}

static void test_isn_keyed_per_connection(void **state)
{
	ip_addr_t l, r, r2;
	uint32_t a, b, c, d;

	(void)state;
	assert_int_equal(lwip_port_init(), 0);
	addr4(&l, 0x0a00020a);
	addr4(&r, 0x0a000201);
	addr4(&r2, 0x0a000202);
	a = circnet_lwip_isn(&l, 40000, &r, 80);
	b = circnet_lwip_isn(&l, 40001, &r, 80);
	c = circnet_lwip_isn(&l, 40000, &r2, 80);
	d = circnet_lwip_isn(&l, 40000, &r, 80);
	/* other tuples land far apart (a 2^-32 chance each of a false alarm)... */
	assert_true(b - a > 1000000u && a - b > 1000000u);
	assert_true(c - a > 1000000u && a - c > 1000000u);
	/* ...the same one moves forward with the 4 us clock only */
	assert_true(d - a < 250000u); /* under a second apart */
	/* a new key, as after a restart: the tuple's ISN is no longer predictable */
	assert_int_equal(lwip_port_init(), 0);
	b = circnet_lwip_isn(&l, 40000, &r, 80);
	assert_true(b - a > 1000000u && a - b > 1000000u);
}

static void test_isn_ipv6(void **state)
{
	ip_addr_t l, r;
	uint32_t a, b;

	(void)state;
	assert_int_equal(lwip_port_init(), 0);
	IP_ADDR6(&l, 0xfd000000, 0, 0, 0x10);
	IP_ADDR6(&r, 0xfd000000, 0, 0, 0x1);
	a = circnet_lwip_isn(&l, 40000, &r, 80);
	IP_ADDR6(&r, 0xfd000000, 0, 0, 0x2);
	b = circnet_lwip_isn(&l, 40000, &r, 80);
	assert_true(b - a > 1000000u && a - b > 1000000u);
}

static void test_rand_varies(void **state)
{
	uint32_t seen[64];
	size_t i, j, same = 0;

	(void)state;
	assert_int_equal(lwip_port_init(), 0);
	for (i = 0; i < 64; i++)
		seen[i] = circnet_lwip_rand();
	for (i = 0; i < 64; i++)
		for (j = i + 1; j < 64; j++)
			same += seen[i] == seen[j];
	assert_true(same == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_siphash_vectors),
		cmocka_unit_test(test_isn_keyed_per_connection),
		cmocka_unit_test(test_isn_ipv6),
		cmocka_unit_test(test_rand_varies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
