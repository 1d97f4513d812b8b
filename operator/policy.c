// SPDX-License-Identifier: MIT
/*
 * operator/policy.c - the policy matcher (policy.h). A linear first-match
 * scan: it runs once per circuit setup, and a rule test is a handful of
 * compares, so even thousands of rules cost microseconds.
 */
#include "policy.h"

static bool selector_match(const struct config *c, const struct selector *s, int guest,
			   const struct cn_addr *addr)
{
	switch (s->kind) {
	case SEL_ANY:
		return true;
	case SEL_GUEST:
		return guest == s->index;
	case SEL_GROUP:
		return guest >= 0 && (c->guests[guest].groups >> s->index) & 1;
	case SEL_PREFIX:
		return prefix_match(&s->prefix, addr);
	}
	return false;
}

static bool rule_applies(const struct rule *r, const struct flow *f)
{
	if (r->action == ACT_ALLOW && f->dst_guest < 0)
		return false;
	if (r->action == ACT_PROXY && f->dst_guest >= 0)
		return false;
	return (r->l4_mask >> f->l4) & 1;
}

enum verdict policy_decide(const struct config *c, const struct flow *f, int *rule)
{
	int i;

	for (i = 0; i < c->nrules; i++) {
		const struct rule *r = &c->rules[i];

		if (!rule_applies(r, f) || !port_list_match(&r->ports, f->dst.port))
			continue;
		if (!selector_match(c, &r->src, f->src_guest, &f->src) ||
		    !selector_match(c, &r->dst, f->dst_guest, &f->dst))
			continue;
		*rule = i;
		switch (r->action) {
		case ACT_ALLOW:
			return VERDICT_ALLOW;
		case ACT_PROXY:
			return VERDICT_PROXY;
		case ACT_DENY:
			return VERDICT_DENY;
		}
	}
	*rule = -1;
	return VERDICT_DENY;
}

/* Does s match guest g by any of its addresses? */
static bool selector_matches_guest(const struct config *c, const struct selector *s, int g)
{
	int i;

	if (s->kind != SEL_PREFIX)
		return selector_match(c, s, g, NULL);
	for (i = 0; i < c->guests[g].naddr; i++)
		if (prefix_match(&s->prefix, &c->guests[g].addrs[i]))
			return true;
	return false;
}

bool policy_may_ever_allow(const struct config *c, int src, int dst)
{
	int i;

	for (i = 0; i < c->nrules; i++) {
		const struct rule *r = &c->rules[i];

		if (r->action == ACT_ALLOW && selector_matches_guest(c, &r->src, src) &&
		    selector_matches_guest(c, &r->dst, dst))
			return true;
	}
	return false;
}

bool policy_may_listen(const struct guest_conf *g, unsigned int l4, uint16_t port)
{
	int i;

	for (i = 0; i < g->nlisten; i++)
		if ((g->listen[i].l4_mask >> l4) & 1 && port_list_match(&g->listen[i].ports, port))
			return true;
	return false;
}

const char *verdict_name(enum verdict v)
{
	return v == VERDICT_ALLOW ? "allow" : v == VERDICT_PROXY ? "proxy" : "deny";
}
