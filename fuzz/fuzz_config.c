// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz_config.c - the operator's config parser and policy matcher on
 * arbitrary text. Checks beyond "no crash": an accepted config is internally
 * consistent (every index in range, every guest with an address, limits
 * filled in), a rejected one has a one-line "file:line:col: problem", and
 * the matcher gives an answer for every guest pair.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../operator/config.h"
#include "../operator/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const char *err)
{
	int line, col;

	if (sscanf(err, "f.conf:%d:%d: ", &line, &col) != 2 || line < 1 || col < 1 ||
	    strchr(err, '\n'))
		abort();
}

static void check_selector(const struct config *c, const struct selector *s)
{
	if (s->kind == SEL_GUEST && (s->index < 0 || s->index >= c->nguests))
		abort();
	if (s->kind == SEL_GROUP && (s->index < 0 || s->index >= c->ngroups))
		abort();
	if (s->kind == SEL_PREFIX && s->prefix.len > (s->prefix.family == CN_AF_INET ? 32 : 128))
		abort();
}

static void check_config(const struct config *c)
{
	int i, j, rule;

	for (i = 0; i < c->nguests; i++) {
		const struct guest_conf *g = &c->guests[i];

		if (g->naddr < 1 || g->naddr > CN_GUEST_ADDRS || !g->lim.ring_size ||
		    strnlen(g->name, CN_NAME_MAX) == CN_NAME_MAX)
			abort();
		for (j = 0; j < g->naddr; j++)
			if (config_guest_by_addr(c, &g->addrs[j]) != i)
				abort(); /* addresses are unique and all indexed */
	}
	for (i = 0; i < c->nrules; i++) {
		check_selector(c, &c->rules[i].src);
		check_selector(c, &c->rules[i].dst);
		if (c->rules[i].action == ACT_PROXY && c->rules[i].dst.kind != SEL_PREFIX)
			abort();
	}
	for (i = 0; i < c->nguests && i < 8; i++)
		for (j = 0; j < c->nguests && j < 8; j++) {
			struct flow f = { .l4 = CN_L4_TCP, .src_guest = i, .dst_guest = j };
			enum verdict v;

			f.src = c->guests[i].addrs[0];
			f.dst = c->guests[j].addrs[0];
			f.dst.port = 80;
			v = policy_decide(c, &f, &rule);
			if (v == VERDICT_PROXY || rule >= c->nrules || (rule < 0 && v != VERDICT_DENY))
				abort();
			policy_may_listen(&c->guests[i], CN_L4_UDP, 53);
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct config *c;

	c = config_parse("f.conf", (const char *)data, size, err, sizeof(err));
	if (c)
		check_config(c);
	else
		check_error(err);
	config_free(c);
	return 0;
}
