/* SPDX-License-Identifier: MIT */
/*
 * dataplane/lwip/lwip_port.h - the platform side of circnet's lwIP build
 * (lwip_port.c): its secrets are drawn once, before lwip_init().
 */
#ifndef CIRCNET_LWIP_PORT_H
#define CIRCNET_LWIP_PORT_H

#include <stddef.h>
#include <stdint.h>

/* Draw the ISN key and the random seed (getrandom). 0 or -errno. */
int lwip_port_init(void);

/* The IPv6 next hop off the /64 (16 bytes), or NULL: routers from their adverts. */
void lwip_port_set_gw6(const uint8_t addr[16]);

/* SipHash-2-4 of data under key (exposed for its test vectors). */
uint64_t lwip_port_siphash(const uint64_t key[2], const void *data, size_t len);

#endif
