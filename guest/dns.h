/* SPDX-License-Identifier: MIT */
/* guest/dns.h - the guest's DNS stub (see dns.c). */
#ifndef CIRCNET_GUEST_DNS_H
#define CIRCNET_GUEST_DNS_H

#include <circnet/proto.h>

#define DNS_STUB_ADDR "127.0.0.53"

/* The stub's socket, DNS_STUB_ADDR:53 in the current network namespace; fd or -errno. */
int dns_stub_listen(void);
/* Serve queries on fd forever, forwarding them to upstream as guest sock_path. */
void dns_stub_run(int fd, const char *sock_path, const struct cn_addr *upstream)
	__attribute__((noreturn));

#endif
