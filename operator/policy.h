/* SPDX-License-Identifier: MIT */
/*
 * operator/policy.h - the connection policy: first matching rule wins,
 * nothing matches means deny. Decided once per circuit at setup; the data
 * path never asks again.
 */
#ifndef CIRCNET_OPERATOR_POLICY_H
#define CIRCNET_OPERATOR_POLICY_H

#include "config.h"

enum verdict { VERDICT_DENY, VERDICT_ALLOW, VERDICT_PROXY };

/* One connection attempt as the policy sees it. */
struct flow {
	unsigned int l4;    /* CN_L4_TCP or CN_L4_UDP */
	int src_guest;	    /* index in the config */
	struct cn_addr src; /* the source address the circuit will show */
	int dst_guest;	    /* -1: no guest owns dst (off-host) */
	struct cn_addr dst; /* destination address and port */
};

/*
 * Allow rules apply to guest destinations, proxy rules to off-host ones
 * (a rule of the wrong kind is skipped); deny rules to both. *rule gets the
 * index of the deciding rule, -1 for the default deny.
 */
enum verdict policy_decide(const struct config *c, const struct flow *f, int *rule);

/*
 * Could any connection from guest src to guest dst (config indices) be
 * allowed: is there an allow rule that names both, whatever the protocol
 * and port? An over-approximation (an earlier deny may shadow it), for
 * what has to be prepared before any connection: a device two VMs share.
 */
bool policy_may_ever_allow(const struct config *c, int src, int dst);

/* May guest g listen on (or bind for datagrams) this port? */
bool policy_may_listen(const struct guest_conf *g, unsigned int l4, uint16_t port);

const char *verdict_name(enum verdict v);

#endif
