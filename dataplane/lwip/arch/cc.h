/* SPDX-License-Identifier: MIT */
/*
 * dataplane/lwip/arch/cc.h - lwIP's platform header for circnet's build:
 * Linux, glibc, any 64-bit CPU DPDK runs on.
 */
#ifndef CIRCNET_LWIP_ARCH_CC_H
#define CIRCNET_LWIP_ARCH_CC_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* an internal invariant broken: a bug in lwIP or in our use of it */
#define LWIP_PLATFORM_ASSERT(x)                                                         \
	do {                                                                            \
		fprintf(stderr, "lwIP assertion \"%s\" failed at %s:%d\n", x, __FILE__, \
			__LINE__);                                                      \
		abort();                                                                \
	} while (0)
#define LWIP_PLATFORM_DIAG(x) \
	do {                  \
		printf x;     \
	} while (0)

uint32_t circnet_lwip_rand(void);
#define LWIP_RAND() circnet_lwip_rand()

#endif
