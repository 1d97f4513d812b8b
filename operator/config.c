// SPDX-License-Identifier: MIT
/*
 * operator/config.c - parser of the operator's config file (config.h).
 *
 * Line oriented: one directive per line, words separated by blanks, '#'
 * starts a comment, '{' and '}' open and close a guest or defaults block.
 * Rules name guests and groups that may be defined later in the file, so
 * names are resolved when the whole file has been read; errors still point
 * at the word that named them. Every error is "file:line:col: problem" and
 * the first one stops the parse: check-config and reload share this code,
 * and a config is taken whole or not at all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <circnet/layout.h>

#include <circnet/vm.h>

#include "config.h"

#define MAX_WORDS 64
#define MAX_LINE  4096
#define MAX_FILE  (1u << 20)
#define MAX_GUESTS 4096
#define MAX_RULES  65536

struct word {
	const char *s;
	size_t n;
	int col;
};

/* A guest or group name used before it is known: resolved at the end. */
struct pending_ref {
	size_t rule; /* an index: the rules array moves as it grows */
	int which; /* 0 src, 1 dst */
	char name[CN_NAME_MAX];
	int line, col;
};

struct parser {
	const char *file;
	int line;
	char *err;
	size_t errlen;
	struct config *c;
	enum { TOP, IN_GUEST, IN_DEFAULTS } block;
	int block_line;
	struct guest_conf *g; /* the guest being defined */
	struct pending_ref *refs;
	size_t nrefs, capref;
	size_t capguests, caprules;
};

static int fail(struct parser *p, int col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, int col, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(p->err, p->errlen, "%s:%d:%d: ", p->file, p->line, col);
	if (n < 0 || (size_t)n >= p->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

static bool word_is(const struct word *w, const char *s)
{
	return strlen(s) == w->n && !memcmp(w->s, s, w->n);
}

/* Copy a word into a NUL-terminated buffer; false if it does not fit. */
static bool word_copy(const struct word *w, char *buf, size_t len)
{
	if (w->n >= len)
		return false;
	memcpy(buf, w->s, w->n);
	buf[w->n] = 0;
	return true;
}

static int split_words(struct parser *p, const char *line, size_t len, struct word *w)
{
	size_t i = 0;
	int n = 0;

	while (i < len) {
		while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
			i++;
		if (i >= len || line[i] == '#')
			break;
		if (n == MAX_WORDS)
			return fail(p, (int)i + 1, "too many words on one line (at most %d)", MAX_WORDS);
		w[n].s = line + i;
		w[n].col = (int)i + 1;
		if (line[i] == '{' || line[i] == '}') {
			i++;
		} else {
			while (i < len && !strchr(" \t\r#{}", line[i])) {
				if (!isprint((unsigned char)line[i]))
					return fail(p, (int)i + 1, "control or non-ASCII character");
				i++;
			}
		}
		w[n].n = (size_t)(line + i - w[n].s);
		n++;
	}
	return n;
}

/* ---- values ---- */

static int parse_u64(struct parser *p, const struct word *w, uint64_t max, bool size_suffix,
		     uint64_t *out)
{
	char buf[32], *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!word_copy(w, buf, sizeof(buf)) || !isdigit((unsigned char)buf[0]))
		return fail(p, w->col, "expected a number, got '%.*s'", (int)w->n, w->s);
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (size_suffix && *end && !end[1]) {
		switch (*end) {
		case 'K': case 'k': mult = 1ull << 10; end++; break;
		case 'M': case 'm': mult = 1ull << 20; end++; break;
		case 'G': case 'g': mult = 1ull << 30; end++; break;
		default: break;
		}
	}
	if (errno || *end)
		return fail(p, w->col, "bad number '%.*s'", (int)w->n, w->s);
	if (v > max / mult)
		return fail(p, w->col, "'%.*s' is too large (at most %" PRIu64 ")", (int)w->n,
			    w->s, max);
	*out = v * mult;
	return 0;
}

static int parse_port(struct parser *p, const struct word *w, const char *s, size_t n,
		      uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5)
		return fail(p, w->col, "bad port in '%.*s'", (int)w->n, w->s);
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return fail(p, w->col, "bad port in '%.*s'", (int)w->n, w->s);
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return fail(p, w->col, "port %lu out of range 1-65535", v);
	*out = (uint16_t)v;
	return 0;
}

/* "80", "8000-8100", "80,443,9000-9010" or "any". */
static int parse_ports(struct parser *p, const struct word *w, struct port_list *l)
{
	const char *s = w->s, *end = w->s + w->n;

	memset(l, 0, sizeof(*l));
	if (word_is(w, "any"))
		return 0;
	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *stop = comma ? comma : end;
		const char *dash = memchr(s, '-', (size_t)(stop - s));
		uint16_t lo, hi;

		if (l->n == CFG_MAX_PORTS)
			return fail(p, w->col, "too many port ranges (at most %d)", CFG_MAX_PORTS);
		if (parse_port(p, w, s, (size_t)((dash ? dash : stop) - s), &lo))
			return -1;
		hi = lo;
		if (dash && parse_port(p, w, dash + 1, (size_t)(stop - dash - 1), &hi))
			return -1;
		if (hi < lo)
			return fail(p, w->col, "port range %u-%u is backwards", lo, hi);
		l->r[l->n].lo = lo;
		l->r[l->n].hi = hi;
		l->n++;
		s = comma ? comma + 1 : end;
		if (comma && s == end)
			return fail(p, w->col, "port list ends with ','");
	}
	return 0;
}

static int parse_l4(struct parser *p, const struct word *w, unsigned int *mask)
{
	if (word_is(w, "tcp"))
		*mask = L4_TCP_BIT;
	else if (word_is(w, "udp"))
		*mask = L4_UDP_BIT;
	else if (word_is(w, "any"))
		*mask = L4_ANY;
	else
		return fail(p, w->col, "expected tcp, udp or any, got '%.*s'", (int)w->n, w->s);
	return 0;
}

/* An address with an optional /len; a bare address is a full-length prefix. */
static int parse_prefix(struct parser *p, const struct word *w, struct prefix *out, bool allow_len)
{
	char buf[64];
	char *slash;
	int bits;

	memset(out, 0, sizeof(*out));
	if (!word_copy(w, buf, sizeof(buf)))
		return fail(p, w->col, "address too long");
	slash = strchr(buf, '/');
	if (slash) {
		if (!allow_len)
			return fail(p, w->col, "expected an address, not a prefix");
		*slash++ = 0;
	}
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = CN_AF_INET;
		bits = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = CN_AF_INET6;
		bits = 128;
	} else {
		return fail(p, w->col, "bad IP address '%s'", buf);
	}
	out->len = (uint8_t)bits;
	if (slash) {
		char *end;
		long v;

		errno = 0;
		v = strtol(slash, &end, 10);
		if (!*slash || *end || errno || v < 0 || v > bits)
			return fail(p, w->col, "bad prefix length '/%s' (0-%d)", slash, bits);
		out->len = (uint8_t)v;
	}
	return 0;
}

static bool valid_name(const struct word *w)
{
	size_t i;

	if (w->n == 0 || w->n >= CN_NAME_MAX || !isalpha((unsigned char)w->s[0]))
		return false;
	for (i = 0; i < w->n; i++)
		if (!isalnum((unsigned char)w->s[i]) && !strchr("-_.", w->s[i]))
			return false;
	return !word_is(w, "any");
}

static int name_word(struct parser *p, const struct word *w, const char *what, char *out)
{
	if (!valid_name(w))
		return fail(p, w->col,
			    "bad %s name '%.*s' (letter first, then letters, digits, '-', '_', '.'; "
			    "at most %d; not 'any')",
			    what, (int)w->n, w->s, CN_NAME_MAX - 1);
	memset(out, 0, CN_NAME_MAX); /* names go on the wire: no stale bytes */
	word_copy(w, out, CN_NAME_MAX);
	return 0;
}

static int group_index(struct parser *p, const struct word *w, bool create)
{
	char name[CN_NAME_MAX];
	int i;

	if (name_word(p, w, "group", name))
		return -1;
	for (i = 0; i < p->c->ngroups; i++)
		if (!strcmp(p->c->groups[i], name))
			return i;
	if (!create)
		return fail(p, w->col, "unknown group '%s'", name);
	if (p->c->ngroups == CFG_MAX_GROUPS)
		return fail(p, w->col, "too many groups (at most %d)", CFG_MAX_GROUPS);
	memcpy(p->c->groups[p->c->ngroups], name, CN_NAME_MAX);
	return p->c->ngroups++;
}

/* ---- guests and defaults ---- */

static int expect_args(struct parser *p, const struct word *w, int n, int want)
{
	if (n != want + 1)
		return fail(p, w[0].col, "'%.*s' takes %d value%s", (int)w[0].n, w[0].s, want,
			    want == 1 ? "" : "s");
	return 0;
}

static bool special_addr(const struct cn_addr *a)
{
	static const uint8_t zero[16];

	if (a->family == CN_AF_INET)
		return a->addr[0] == 127 || a->addr[0] == 0 || a->addr[0] >= 224;
	if (!memcmp(a->addr, zero, 15) && a->addr[15] <= 1)
		return true; /* :: and ::1 */
	return a->addr[0] == 0xff;
}

static int guest_address(struct parser *p, const struct word *w)
{
	struct guest_conf *g = p->g;
	struct prefix pf;
	struct cn_addr a = { 0 };
	int i;

	if (parse_prefix(p, w, &pf, false))
		return -1;
	if (g->naddr == CN_GUEST_ADDRS)
		return fail(p, w->col, "too many addresses for guest '%s' (at most %d)", g->name,
			    CN_GUEST_ADDRS);
	a.family = pf.family;
	memcpy(a.addr, pf.addr, sizeof(a.addr));
	if (special_addr(&a))
		return fail(p, w->col, "'%.*s' is a loopback, unspecified or multicast address",
			    (int)w->n, w->s);
	for (i = 0; i < p->c->nguests; i++) {
		struct guest_conf *o = &p->c->guests[i];
		int j;

		for (j = 0; j < o->naddr; j++)
			if (o->addrs[j].family == a.family &&
			    !memcmp(o->addrs[j].addr, a.addr, sizeof(a.addr)))
				return fail(p, w->col, "address %.*s already belongs to guest '%s'",
					    (int)w->n, w->s, o->name);
	}
	g->addrs[g->naddr++] = a;
	return 0;
}

/* Limit directives: shared by guest blocks and the defaults block. */
static int limit_directive(struct parser *p, const struct word *w, int n, struct limits *l,
			   bool *handled)
{
	static const char *const names[] = { "ring-size", "max-circuits", "max-listeners",
					     "max-pending", "max-sessions", "max-memory" };
	uint64_t v;
	size_t i;

	*handled = false;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (word_is(&w[0], names[i]))
			break;
	if (i == sizeof(names) / sizeof(names[0]))
		return 0;
	*handled = true;
	if (expect_args(p, w, n, 1))
		return -1;
	switch (i) {
	case 0:
		if (parse_u64(p, &w[1], CN_RING_MAX, true, &v))
			return -1;
		if (v < CN_RING_MIN || (v & (v - 1)))
			return fail(p, w[1].col, "ring-size must be a power of two from %u to %u",
				    CN_RING_MIN, CN_RING_MAX);
		l->ring_size = (uint32_t)v;
		break;
	case 5:
		if (parse_u64(p, &w[1], UINT64_MAX / 2, true, &v))
			return -1;
		l->max_memory = v;
		break;
	default:
		if (parse_u64(p, &w[1], 1u << 24, false, &v))
			return -1;
		if (i == 1)
			l->max_circuits = (uint32_t)v;
		else if (i == 2)
			l->max_listeners = (uint32_t)v;
		else if (i == 3)
			l->max_pending = (uint32_t)v;
		else
			l->max_sessions = (uint32_t)v;
		break;
	}
	if (p->block == IN_GUEST)
		p->g->lim_set |= 1u << i;
	return 0;
}

static int guest_directive(struct parser *p, const struct word *w, int n)
{
	struct guest_conf *g = p->g;
	bool handled;
	int i;

	if (limit_directive(p, w, n, &g->lim, &handled))
		return -1;
	if (handled)
		return 0;
	if (word_is(&w[0], "address")) {
		if (n < 2)
			return fail(p, w[0].col, "'address' takes one or more addresses");
		for (i = 1; i < n; i++)
			if (guest_address(p, &w[i]))
				return -1;
		return 0;
	}
	if (word_is(&w[0], "group")) {
		if (n < 2)
			return fail(p, w[0].col, "'group' takes one or more group names");
		for (i = 1; i < n; i++) {
			int gi = group_index(p, &w[i], true);

			if (gi < 0)
				return -1;
			g->groups |= 1ull << gi;
		}
		return 0;
	}
	if (word_is(&w[0], "uid")) {
		uint64_t v;

		if (expect_args(p, w, n, 1) || parse_u64(p, &w[1], UINT32_MAX - 1, false, &v))
			return -1;
		g->uid = (long)v;
		return 0;
	}
	if (word_is(&w[0], "listen")) {
		struct listen_perm *lp;

		if (expect_args(p, w, n, 2))
			return -1;
		if (g->nlisten == CFG_MAX_PORTS)
			return fail(p, w[0].col, "too many listen lines (at most %d)",
				    CFG_MAX_PORTS);
		lp = &g->listen[g->nlisten];
		if (parse_l4(p, &w[1], &lp->l4_mask) || parse_ports(p, &w[2], &lp->ports))
			return -1;
		g->nlisten++;
		return 0;
	}
	if (word_is(&w[0], "vm")) {
		if (expect_args(p, w, n, 1))
			return -1;
		if (!word_is(&w[1], "ivshmem"))
			return fail(p, w[1].col, "unknown VM kind '%.*s' (ivshmem)", (int)w[1].n,
				    w[1].s);
		g->vm = true;
		return 0;
	}
	if (word_is(&w[0], "vm-memory")) {
		uint64_t v;

		if (expect_args(p, w, n, 1) || parse_u64(p, &w[1], CN_VM_MEM_MAX, true, &v))
			return -1;
		if (v < CN_VM_MEM_MIN || (v & (v - 1)))
			return fail(p, w[1].col, "vm-memory must be a power of two from 1M to 1G");
		g->vm_memory = v;
		return 0;
	}
	return fail(p, w[0].col, "unknown guest directive '%.*s'", (int)w[0].n, w[0].s);
}

static int begin_guest(struct parser *p, const struct word *w, int n)
{
	struct config *c = p->c;
	struct guest_conf *g;
	char name[CN_NAME_MAX];

	if (n != 3 || !word_is(&w[2], "{"))
		return fail(p, w[0].col, "expected 'guest NAME {'");
	if (name_word(p, &w[1], "guest", name))
		return -1;
	if (config_guest_index(c, name) >= 0)
		return fail(p, w[1].col, "guest '%s' is defined twice", name);
	if (c->nguests == MAX_GUESTS)
		return fail(p, w[0].col, "too many guests (at most %d)", MAX_GUESTS);
	if ((size_t)c->nguests == p->capguests) {
		size_t cap = p->capguests ? p->capguests * 2 : 16;
		void *ng = realloc(c->guests, cap * sizeof(*c->guests));

		if (!ng)
			return fail(p, w[0].col, "out of memory");
		c->guests = ng;
		p->capguests = cap;
	}
	g = &c->guests[c->nguests++];
	memset(g, 0, sizeof(*g));
	memcpy(g->name, name, sizeof(name));
	g->uid = -1;
	g->vm_memory = CFG_VM_MEMORY_DEFAULT;
	g->line = p->line;
	p->g = g;
	p->block = IN_GUEST;
	p->block_line = p->line;
	return 0;
}

static void apply_defaults(struct config *c, struct guest_conf *g)
{
	const struct limits *d = &c->defaults;
	unsigned int set = g->lim_set;

	if (!(set & 1)) g->lim.ring_size = d->ring_size;
	if (!(set & 2)) g->lim.max_circuits = d->max_circuits;
	if (!(set & 4)) g->lim.max_listeners = d->max_listeners;
	if (!(set & 8)) g->lim.max_pending = d->max_pending;
	if (!(set & 16)) g->lim.max_sessions = d->max_sessions;
	if (!(set & 32)) g->lim.max_memory = d->max_memory;
}

static int end_block(struct parser *p, const struct word *w, int n)
{
	if (n != 1)
		return fail(p, w[1].col, "nothing may follow '}' on its line");
	if (p->block == TOP)
		return fail(p, w[0].col, "'}' without an open block");
	if (p->block == IN_GUEST && !p->g->naddr) {
		p->line = p->block_line;
		return fail(p, 1, "guest '%s' has no address", p->g->name);
	}
	if (p->block == IN_GUEST && !p->g->vm && p->g->vm_memory != CFG_VM_MEMORY_DEFAULT) {
		p->line = p->block_line;
		return fail(p, 1, "guest '%s' has vm-memory but is no VM (add 'vm ivshmem')",
			    p->g->name);
	}
	p->block = TOP;
	p->g = NULL;
	return 0;
}

/* ---- rules ---- */

static int add_ref(struct parser *p, size_t rule, int which, const struct word *w)
{
	struct pending_ref *r;

	if (p->nrefs == p->capref) {
		size_t cap = p->capref ? p->capref * 2 : 16;
		void *nr = realloc(p->refs, cap * sizeof(*p->refs));

		if (!nr)
			return fail(p, w->col, "out of memory");
		p->refs = nr;
		p->capref = cap;
	}
	r = &p->refs[p->nrefs++];
	memset(r, 0, sizeof(*r));
	r->rule = rule;
	r->which = which;
	r->line = p->line;
	r->col = w->col;
	word_copy(w, r->name, sizeof(r->name));
	return 0;
}

static int parse_selector(struct parser *p, const struct word *w, struct selector *s, size_t rule,
			  int which)
{
	memset(s, 0, sizeof(*s));
	if (word_is(w, "any")) {
		s->kind = SEL_ANY;
		return 0;
	}
	if (w->n > 6 && !memcmp(w->s, "group:", 6)) {
		struct word gw = { w->s + 6, w->n - 6, w->col + 6 };

		s->kind = SEL_GROUP;
		if (!valid_name(&gw))
			return fail(p, gw.col, "bad group name '%.*s'", (int)gw.n, gw.s);
		return add_ref(p, rule, which, &gw);
	}
	if (isdigit((unsigned char)w->s[0]) || memchr(w->s, ':', w->n)) {
		s->kind = SEL_PREFIX;
		return parse_prefix(p, w, &s->prefix, true);
	}
	s->kind = SEL_GUEST;
	if (!valid_name(w))
		return fail(p, w->col, "expected any, a guest, group:NAME or an address, got '%.*s'",
			    (int)w->n, w->s);
	return add_ref(p, rule, which, w);
}

/* ACTION PROTO from SEL to SEL [port PORTS] */
static int parse_rule(struct parser *p, const struct word *w, int n)
{
	struct config *c = p->c;
	struct rule *r;
	size_t idx;

	if (n != 6 && n != 8)
		return fail(p, w[0].col, "expected '%.*s PROTO from SRC to DST [port PORTS]'",
			    (int)w[0].n, w[0].s);
	if (!word_is(&w[2], "from"))
		return fail(p, w[2].col, "expected 'from', got '%.*s'", (int)w[2].n, w[2].s);
	if (!word_is(&w[4], "to"))
		return fail(p, w[4].col, "expected 'to', got '%.*s'", (int)w[4].n, w[4].s);
	if (n == 8 && !word_is(&w[6], "port"))
		return fail(p, w[6].col, "expected 'port', got '%.*s'", (int)w[6].n, w[6].s);
	if (c->nrules == MAX_RULES)
		return fail(p, w[0].col, "too many rules (at most %d)", MAX_RULES);
	if ((size_t)c->nrules == p->caprules) {
		size_t cap = p->caprules ? p->caprules * 2 : 16;
		void *nr = realloc(c->rules, cap * sizeof(*c->rules));

		if (!nr)
			return fail(p, w[0].col, "out of memory");
		c->rules = nr;
		p->caprules = cap;
	}
	idx = (size_t)c->nrules;
	r = &c->rules[idx];
	memset(r, 0, sizeof(*r));
	r->line = p->line;
	r->action = word_is(&w[0], "allow") ? ACT_ALLOW :
		    word_is(&w[0], "deny")  ? ACT_DENY :
					      ACT_PROXY;
	if (parse_l4(p, &w[1], &r->l4_mask) || parse_selector(p, &w[3], &r->src, idx, 0) ||
	    parse_selector(p, &w[5], &r->dst, idx, 1))
		return -1;
	if (n == 8 && parse_ports(p, &w[7], &r->ports))
		return -1;
	if (r->action == ACT_PROXY && r->dst.kind != SEL_PREFIX)
		return fail(p, w[5].col,
			    "proxy rules route to off-host addresses: the destination must be an "
			    "address or prefix");
	c->nrules++;
	return 0;
}

/* "8080", "10.0.0.1:8080" or "[fd00::1]:8080": a host address (NONE: all) and port */
static int parse_host_port(struct parser *p, const struct word *w, struct cn_addr *a)
{
	const char *colon = NULL, *port;
	struct prefix pf;
	struct word aw;
	size_t i;

	memset(a, 0, sizeof(*a));
	for (i = 0; i < w->n; i++)
		if (w->s[i] == ':')
			colon = w->s + i;
	if (!colon)
		return parse_port(p, w, w->s, w->n, &a->port);
	port = colon + 1;
	aw = (struct word){ w->s, (size_t)(colon - w->s), w->col };
	if (aw.n >= 2 && aw.s[0] == '[' && aw.s[aw.n - 1] == ']') {
		aw.s++;
		aw.n -= 2;
	} else if (memchr(aw.s, ':', aw.n)) {
		return fail(p, w->col, "write an IPv6 host address in brackets: [ADDR]:PORT");
	}
	if (parse_prefix(p, &aw, &pf, false) ||
	    parse_port(p, w, port, w->n - (size_t)(port - w->s), &a->port))
		return -1;
	a->family = pf.family;
	memcpy(a->addr, pf.addr, 16);
	return 0;
}

static bool host_overlaps(const struct cn_addr *x, const struct cn_addr *y)
{
	if (x->port != y->port)
		return false;
	if (!x->family || !y->family)
		return true;
	return x->family == y->family && !memcmp(x->addr, y->addr, 16);
}

/* publish PROTO [ADDR:]PORT to GUEST port PORT */
static int parse_publish(struct parser *p, const struct word *w, int n)
{
	struct config *c = p->c;
	struct publish *pub;
	unsigned int mask;
	int i;

	if (n != 7)
		return fail(p, w[0].col, "expected 'publish PROTO [ADDR:]PORT to GUEST port PORT'");
	if (!word_is(&w[3], "to"))
		return fail(p, w[3].col, "expected 'to', got '%.*s'", (int)w[3].n, w[3].s);
	if (!word_is(&w[5], "port"))
		return fail(p, w[5].col, "expected 'port', got '%.*s'", (int)w[5].n, w[5].s);
	if (c->npublish == CFG_MAX_PUBLISH)
		return fail(p, w[0].col, "too many publish lines (at most %d)", CFG_MAX_PUBLISH);
	if (parse_l4(p, &w[1], &mask))
		return -1;
	if (mask == L4_ANY)
		return fail(p, w[1].col, "publish one protocol per line: tcp or udp");
	pub = &c->publish[c->npublish];
	memset(pub, 0, sizeof(*pub));
	pub->l4 = mask == L4_UDP_BIT ? CN_L4_UDP : CN_L4_TCP;
	pub->line = p->line;
	pub->col = w[4].col;
	if (parse_host_port(p, &w[2], &pub->host) || name_word(p, &w[4], "guest", pub->guest_name) ||
	    parse_port(p, &w[6], w[6].s, w[6].n, &pub->guest_port))
		return -1;
	for (i = 0; i < c->npublish; i++)
		if (c->publish[i].l4 == pub->l4 && host_overlaps(&c->publish[i].host, &pub->host))
			return fail(p, w[2].col, "host port %u is published already (line %d)",
				    pub->host.port, c->publish[i].line);
	c->npublish++;
	return 0;
}

/* ---- top level ---- */

static int parse_log_level(struct parser *p, const struct word *w)
{
	static const char *const levels[] = { "error", "warning", "notice", "info", "debug" };
	size_t i;

	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (word_is(w, levels[i])) {
			p->c->log_level = 3 + (int)i;
			return 0;
		}
	return fail(p, w->col, "log-level must be error, warning, notice, info or debug");
}

static int top_directive(struct parser *p, const struct word *w, int n)
{
	struct config *c = p->c;

	if (word_is(&w[0], "guest"))
		return begin_guest(p, w, n);
	if (word_is(&w[0], "defaults")) {
		if (n != 2 || !word_is(&w[1], "{"))
			return fail(p, w[0].col, "expected 'defaults {'");
		p->block = IN_DEFAULTS;
		p->block_line = p->line;
		return 0;
	}
	if (word_is(&w[0], "allow") || word_is(&w[0], "deny") || word_is(&w[0], "proxy"))
		return parse_rule(p, w, n);
	if (word_is(&w[0], "publish"))
		return parse_publish(p, w, n);
	if (word_is(&w[0], "run-dir")) {
		if (expect_args(p, w, n, 1))
			return -1;
		if (w[1].s[0] != '/' || !word_copy(&w[1], c->run_dir, sizeof(c->run_dir) - 64))
			return fail(p, w[1].col, "run-dir must be an absolute path shorter than %d",
				    CFG_PATH_MAX - 64);
		return 0;
	}
	if (word_is(&w[0], "log-level"))
		return expect_args(p, w, n, 1) ?: parse_log_level(p, &w[1]);
	if (word_is(&w[0], "on-reload")) {
		if (expect_args(p, w, n, 1))
			return -1;
		if (word_is(&w[1], "keep"))
			c->on_reload = RELOAD_KEEP;
		else if (word_is(&w[1], "reset"))
			c->on_reload = RELOAD_RESET;
		else
			return fail(p, w[1].col, "on-reload must be keep or reset");
		return 0;
	}
	if (word_is(&w[0], "ephemeral-ports")) {
		struct port_list l;

		if (expect_args(p, w, n, 1) || parse_ports(p, &w[1], &l))
			return -1;
		if (l.n != 1 || l.r[0].hi - l.r[0].lo < 15)
			return fail(p, w[1].col, "ephemeral-ports must be one range of 16 or more");
		c->eph_lo = l.r[0].lo;
		c->eph_hi = l.r[0].hi;
		return 0;
	}
	if (word_is(&w[0], "network")) {
		if (expect_args(p, w, n, 1))
			return -1;
		if (c->nnetworks == CFG_MAX_NETWORKS)
			return fail(p, w[0].col, "too many networks (at most %d)",
				    CFG_MAX_NETWORKS);
		return parse_prefix(p, &w[1], &c->networks[c->nnetworks++], true);
	}
	return fail(p, w[0].col, "unknown directive '%.*s'", (int)w[0].n, w[0].s);
}

static int parse_line(struct parser *p, const char *line, size_t len)
{
	struct word w[MAX_WORDS];
	bool handled;
	int n;

	if (len > MAX_LINE)
		return fail(p, 1, "line longer than %d characters", MAX_LINE);
	n = split_words(p, line, len, w);
	if (n <= 0)
		return n;
	if (word_is(&w[0], "}"))
		return end_block(p, w, n);
	if (p->block != TOP && (word_is(&w[0], "allow") || word_is(&w[0], "deny") ||
				word_is(&w[0], "proxy") || word_is(&w[0], "publish") ||
				word_is(&w[0], "guest") ||
				word_is(&w[0], "defaults")))
		return fail(p, w[0].col, "'%.*s' belongs outside blocks (block opened on line %d)",
			    (int)w[0].n, w[0].s, p->block_line);
	if (p->block == IN_GUEST)
		return guest_directive(p, w, n);
	if (p->block == IN_DEFAULTS) {
		if (limit_directive(p, w, n, &p->c->defaults, &handled))
			return -1;
		if (!handled)
			return fail(p, w[0].col, "unknown defaults directive '%.*s'", (int)w[0].n,
				    w[0].s);
		return 0;
	}
	return top_directive(p, w, n);
}

static int resolve_refs(struct parser *p)
{
	struct config *c = p->c;
	size_t i;

	for (i = 0; i < p->nrefs; i++) {
		struct pending_ref *r = &p->refs[i];
		struct rule *rule = &c->rules[r->rule];
		struct selector *s = r->which ? &rule->dst : &rule->src;
		int j;

		p->line = r->line;
		if (s->kind == SEL_GUEST) {
			s->index = config_guest_index(c, r->name);
			if (s->index < 0)
				return fail(p, r->col, "unknown guest '%s'", r->name);
		} else {
			for (j = 0; j < c->ngroups; j++)
				if (!strcmp(c->groups[j], r->name))
					break;
			if (j == c->ngroups)
				return fail(p, r->col, "unknown group '%s'", r->name);
			s->index = j;
		}
	}
	return 0;
}

/* publish targets name guests that may be declared further down */
static int resolve_publish(struct parser *p)
{
	struct config *c = p->c;
	int i;

	for (i = 0; i < c->npublish; i++) {
		struct publish *pub = &c->publish[i];

		pub->guest = config_guest_index(c, pub->guest_name);
		p->line = pub->line;
		if (pub->guest < 0)
			return fail(p, pub->col, "unknown guest '%s'", pub->guest_name);
		if (!c->guests[pub->guest].naddr)
			return fail(p, pub->col, "guest '%s' has no address to publish to",
				    pub->guest_name);
	}
	return 0;
}

const struct publish *config_publish_find(const struct config *c, unsigned int l4,
					  const struct cn_addr *a)
{
	int i;

	for (i = 0; i < c->npublish; i++)
		if (c->publish[i].l4 == l4 && host_overlaps(&c->publish[i].host, a))
			return &c->publish[i];
	return NULL;
}

static int build_addr_index(struct config *c);

static void config_defaults(struct config *c)
{
	snprintf(c->run_dir, sizeof(c->run_dir), "/run/circnet");
	c->log_level = 6;
	c->on_reload = RELOAD_KEEP;
	c->eph_lo = 32768;
	c->eph_hi = 60999;
	c->defaults.ring_size = CN_RING_DEFAULT;
	c->defaults.max_circuits = 4096;
	c->defaults.max_listeners = 256;
	c->defaults.max_pending = 1024;
	c->defaults.max_sessions = 256;
	c->defaults.max_memory = 4ull << 30;
}

struct config *config_parse(const char *name, const char *text, size_t len, char *err,
			    size_t errlen)
{
	struct parser p = { .file = name, .err = err, .errlen = errlen };
	const char *s = text, *end = text + len;
	int rc = 0, i;

	err[0] = 0;
	p.c = calloc(1, sizeof(*p.c));
	if (!p.c) {
		snprintf(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	snprintf(p.c->path, sizeof(p.c->path), "%s", name);
	config_defaults(p.c);
	if (memchr(text, 0, len)) {
		p.line = 1;
		rc = fail(&p, 1, "file contains a NUL byte");
	}
	while (!rc && s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *stop = nl ? nl : end;

		p.line++;
		rc = parse_line(&p, s, (size_t)(stop - s));
		s = nl ? nl + 1 : end;
	}
	if (!rc && p.block != TOP) {
		p.line = p.block_line;
		rc = fail(&p, 1, "block opened here is never closed with '}'");
	}
	if (!rc)
		rc = resolve_refs(&p);
	if (!rc)
		rc = resolve_publish(&p);
	free(p.refs);
	if (rc) {
		config_free(p.c);
		return NULL;
	}
	/* limits a guest did not set come from the defaults block, wherever it is */
	for (i = 0; i < p.c->nguests; i++)
		apply_defaults(p.c, &p.c->guests[i]);
	if (build_addr_index(p.c)) {
		snprintf(err, errlen, "%s: out of memory", name);
		config_free(p.c);
		return NULL;
	}
	return p.c;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct config *c;
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
		snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path, MAX_FILE);
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	n = read(fd, buf, (size_t)st.st_size + 1);
	close(fd);
	if (n < 0 || n > st.st_size) {
		snprintf(err, errlen, "%s: read failed or file changed while reading", path);
		free(buf);
		return NULL;
	}
	c = config_parse(path, buf, (size_t)n, err, errlen);
	free(buf);
	return c;
}

struct config *config_builtin(char *err, size_t errlen)
{
	return config_parse("<built-in>", config_builtin_text, strlen(config_builtin_text), err,
			    errlen);
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->guests);
	free(c->rules);
	free(c->addr_index);
	free(c);
}

int config_guest_index(const struct config *c, const char *name)
{
	int i;

	for (i = 0; i < c->nguests; i++)
		if (!strcmp(c->guests[i].name, name))
			return i;
	return -1;
}

static int addr_cmp(const struct cn_addr *x, const struct cn_addr *y)
{
	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	return memcmp(x->addr, y->addr, 16);
}

static int owner_cmp(const void *a, const void *b)
{
	return addr_cmp(&((const struct addr_owner *)a)->addr,
			&((const struct addr_owner *)b)->addr);
}

/* Called once the guests are final. 0 or -ENOMEM. */
static int build_addr_index(struct config *c)
{
	int i, j, n = 0;

	for (i = 0; i < c->nguests; i++)
		n += c->guests[i].naddr;
	c->addr_index = calloc((size_t)n + 1, sizeof(*c->addr_index));
	if (!c->addr_index)
		return -ENOMEM;
	for (i = 0; i < c->nguests; i++)
		for (j = 0; j < c->guests[i].naddr; j++) {
			c->addr_index[c->naddr_index].addr = c->guests[i].addrs[j];
			c->addr_index[c->naddr_index].addr.port = 0;
			c->addr_index[c->naddr_index++].guest = i;
		}
	qsort(c->addr_index, (size_t)n, sizeof(*c->addr_index), owner_cmp);
	return 0;
}

int config_guest_by_addr(const struct config *c, const struct cn_addr *a)
{
	int lo = 0, hi = c->naddr_index - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int d = addr_cmp(a, &c->addr_index[mid].addr);

		if (!d)
			return c->addr_index[mid].guest;
		if (d < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -1;
}

bool prefix_match(const struct prefix *p, const struct cn_addr *a)
{
	unsigned int full = p->len / 8, rest = p->len % 8;

	if (p->family != a->family)
		return false;
	if (memcmp(p->addr, a->addr, full))
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		return (p->addr[full] & mask) == (a->addr[full] & mask);
	}
	return true;
}

bool port_list_match(const struct port_list *l, uint16_t port)
{
	int i;

	if (!l->n)
		return true;
	for (i = 0; i < l->n; i++)
		if (port >= l->r[i].lo && port <= l->r[i].hi)
			return true;
	return false;
}

void addr_format(const struct cn_addr *a, bool with_port, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->family == CN_AF_INET)
		inet_ntop(AF_INET, a->addr, ip, sizeof(ip));
	else if (a->family == CN_AF_INET6)
		inet_ntop(AF_INET6, a->addr, ip, sizeof(ip));
	else
		snprintf(ip, sizeof(ip), "*");
	if (!with_port)
		snprintf(buf, len, "%s", ip);
	else if (a->family == CN_AF_INET6)
		snprintf(buf, len, "[%s]:%u", ip, a->port);
	else
		snprintf(buf, len, "%s:%u", ip, a->port);
}

void prefix_format(const struct prefix *p, char *buf, size_t len)
{
	struct cn_addr a = { .family = p->family };
	char ip[INET6_ADDRSTRLEN + 8];

	memcpy(a.addr, p->addr, 16);
	addr_format(&a, false, ip, sizeof(ip));
	snprintf(buf, len, "%s/%u", ip, p->len);
}
