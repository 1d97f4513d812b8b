// SPDX-License-Identifier: MIT
/*
 * dataplane/lwip/lwip_port.c - what circnet's lwIP build asks of its
 * platform (lwipopts.h): the millisecond clock its timers run on, random
 * numbers (ephemeral ports, ND timers), and initial sequence numbers.
 *
 * ISNs follow RFC 6528: ISN = M + F(4-tuple, secret), M a 4 us clock and F
 * SipHash-2-4 under a key drawn at start. lwIP's own ISN is a counter
 * anyone can predict, which lets an off-path host inject into or reset our
 * connections. The secret comes from getrandom(); so does the seed of the
 * generator for everything less sensitive.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <lwip/arch.h>
#include <lwip/ip_addr.h>
#include <lwip/sys.h>

#include "circnet_lwip_hooks.h"
#include "lwip_port.h"

static uint64_t isn_key[2];
static ip6_addr_t gw6;
static bool has_gw6;
static uint64_t rng_state[2];

static int fill_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int lwip_port_init(void)
{
	int err = fill_random(isn_key, sizeof(isn_key));

	if (!err)
		err = fill_random(rng_state, sizeof(rng_state));
	if (!rng_state[0] && !rng_state[1])
		rng_state[0] = 1; /* xorshift128+ must not start at zero */
	return err;
}

void lwip_port_set_gw6(const uint8_t addr[16])
{
	has_gw6 = addr != NULL;
	if (addr) {
		memcpy(gw6.addr, addr, 16);
		ip6_addr_clear_zone(&gw6);
	}
}

/* LWIP_HOOK_ND6_GET_GW: off-link destinations go to --gw6 (on our link: checked by ND) */
const ip6_addr_t *circnet_lwip_gw6(struct netif *netif, const ip6_addr_t *dest)
{
	(void)netif;
	(void)dest;
	return has_gw6 ? &gw6 : NULL;
}

u32_t sys_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (u32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* xorshift128+: fast, and good enough for what is not a secret */
uint32_t circnet_lwip_rand(void)
{
	uint64_t s1 = rng_state[0];
	const uint64_t s0 = rng_state[1];

	rng_state[0] = s0;
	s1 ^= s1 << 23;
	rng_state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return (uint32_t)((rng_state[1] + s0) >> 32);
}

/* ---- SipHash-2-4 (Aumasson and Bernstein), for the ISN secret ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = ROTL(v[1], 13);
	v[1] ^= v[0];
	v[0] = ROTL(v[0], 32);
	v[2] += v[3];
	v[3] = ROTL(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = ROTL(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = ROTL(v[1], 17);
	v[1] ^= v[2];
	v[2] = ROTL(v[2], 32);
}

uint64_t lwip_port_siphash(const uint64_t key[2], const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t v[4] = { key[0] ^ 0x736f6d6570736575ull, key[1] ^ 0x646f72616e646f6dull,
			  key[0] ^ 0x6c7967656e657261ull, key[1] ^ 0x7465646279746573ull };
	uint64_t m, last = (uint64_t)len << 56;
	size_t i, tail = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&m, in + i, 8); /* little-endian hosts: DPDK's x86 and arm64 */
		v[3] ^= m;
		sip_round(v);
		sip_round(v);
		v[0] ^= m;
	}
	for (size_t j = 0; j < tail; j++)
		last |= (uint64_t)in[i + j] << (8 * j);
	v[3] ^= last;
	sip_round(v);
	sip_round(v);
	v[0] ^= last;
	v[2] ^= 0xff;
	for (i = 0; i < 4; i++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

u32_t circnet_lwip_isn(const ip_addr_t *local_ip, u16_t local_port, const ip_addr_t *remote_ip,
		       u16_t remote_port)
{
	struct {
		uint32_t local[4], remote[4];
		uint16_t lport, rport;
		uint32_t family;
	} t;
	struct timespec ts;

	memset(&t, 0, sizeof(t));
	if (IP_IS_V6(local_ip)) {
		memcpy(t.local, ip_2_ip6(local_ip)->addr, 16);
		memcpy(t.remote, ip_2_ip6(remote_ip)->addr, 16);
		t.family = 6;
	} else {
		t.local[0] = ip4_addr_get_u32(ip_2_ip4(local_ip));
		t.remote[0] = ip4_addr_get_u32(ip_2_ip4(remote_ip));
		t.family = 4;
	}
	t.lport = local_port;
	t.rport = remote_port;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* M: 4 us ticks, as RFC 793's ISN clock */
	return (u32_t)(((uint64_t)ts.tv_sec * 250000u + (uint64_t)ts.tv_nsec / 4000u) +
		       lwip_port_siphash(isn_key, &t, sizeof(t)));
}
