/* SPDX-License-Identifier: MIT */
/*
 * dataplane/lwip/circnet_lwip_hooks.h - the hooks lwipopts.h names, seen by
 * lwIP's sources after their own headers (lwip_port.c defines them).
 */
#ifndef CIRCNET_LWIP_HOOKS_H
#define CIRCNET_LWIP_HOOKS_H

#include <lwip/ip_addr.h>

struct netif;

/* RFC 6528: a keyed hash of the connection, plus a 4 us clock */
u32_t circnet_lwip_isn(const ip_addr_t *local_ip, u16_t local_port, const ip_addr_t *remote_ip,
		       u16_t remote_port);

/* --gw6: the next hop for off-link IPv6 destinations, or NULL (advertised routers) */
const ip6_addr_t *circnet_lwip_gw6(struct netif *netif, const ip6_addr_t *dest);

#endif
