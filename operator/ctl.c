// SPDX-License-Identifier: MIT
/*
 * operator/ctl.c - the control socket behind circnetctl: status views and
 * reload. A stream socket in the run directory, mode 0600 (the host's admin
 * only; guests never see it). One request line per connection, e.g.
 * "guests json" or "reload reset"; the answer is "ok" or "error: why" on the
 * first line, then the view, then the operator closes. Views are built in
 * memory and written with a send timeout, so a stuck client costs the event
 * loop at most a second.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "operator.h"
#include "policy.h"

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0 || b->oom)
			return;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t cap = (b->cap + (size_t)n + 1) * 2;
			char *np = realloc(b->p, cap);

			if (!np) {
				b->oom = true;
				return;
			}
			b->p = np;
			b->cap = cap;
		}
	}
}

/* A JSON string; our names are plain, but paths and messages may not be. */
static void sb_json_str(struct sbuf *b, const char *s)
{
	sb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			sb_printf(b, "\\%c", ch);
		else if (ch < 0x20)
			sb_printf(b, "\\u%04x", ch);
		else
			sb_printf(b, "%c", ch);
	}
	sb_printf(b, "\"");
}

static const char *l4_name(unsigned int l4)
{
	return l4 == CN_L4_TCP ? "tcp" : "udp";
}

static void counters_json(struct sbuf *b, const struct counters *c)
{
	sb_printf(b,
		  "{\"connects\":%llu,\"refused\":%llu,\"denied\":%llu,\"unreachable\":%llu,"
		  "\"errors\":%llu,\"protocol_violations\":%llu}",
		  (unsigned long long)c->connects, (unsigned long long)c->refused,
		  (unsigned long long)c->denied, (unsigned long long)c->unreachable,
		  (unsigned long long)c->errors, (unsigned long long)c->protocol);
}

static void view_status(struct op *op, struct sbuf *b, bool json)
{
	unsigned long long uptime = (unsigned long long)(time(NULL) - op->started);
	uint64_t listeners = 0, mem = 0;
	struct list *pos, *tmp;
	unsigned int nguests = 0;
	const char *cfg = op->cfg_path[0] ? op->cfg_path : "<built-in>";

	list_for_each_safe(pos, tmp, &op->guests) {
		struct guest *g = container_of(pos, struct guest, link);

		nguests++;
		listeners += g->nlisteners;
		mem += g->mem;
	}
	if (json) {
		sb_printf(b, "{\"pid\":%d,\"uptime_s\":%llu,\"config\":", (int)getpid(), uptime);
		sb_json_str(b, cfg);
		sb_printf(b, ",\"run_dir\":");
		sb_json_str(b, op->run_dir);
		sb_printf(b,
			  ",\"guests\":%u,\"sessions\":%llu,\"listeners\":%llu,\"circuits\":%llu,"
			  "\"circuit_bytes\":%llu,\"rules\":%d,\"reloads\":%llu,"
			  "\"reload_failures\":%llu,\"circuits_reset\":%llu,\"last_reload_error\":",
			  nguests, (unsigned long long)op->nsessions, (unsigned long long)listeners,
			  (unsigned long long)op->ncircuits, (unsigned long long)mem,
			  op->cfg->nrules, (unsigned long long)op->reloads,
			  (unsigned long long)op->reload_failures, (unsigned long long)op->resets);
		sb_json_str(b, op->last_reload_error);
		sb_printf(b, ",\"restart_grace_ms\":%d,\"parked\":%u,\"parked_total\":%llu",
			  op->grace_ms, op->nparked, (unsigned long long)op->parked_total);
		sb_printf(b, ",\"claims\":%llu,\"claims_refused\":%llu,\"ends_gone\":%llu",
			  (unsigned long long)op->claims, (unsigned long long)op->claims_refused,
			  (unsigned long long)op->ends_gone);
		sb_printf(b, ",\"pair_regions\":%llu,\"chunks\":%llu,\"chunk_bytes\":%llu,"
			  "\"slots_in_use\":%llu,\"vm_devices\":%llu", (unsigned long long)op->npools,
			  (unsigned long long)op->nchunks, (unsigned long long)op->chunk_bytes,
			  (unsigned long long)op->slots_used, (unsigned long long)op->vm_devices);
		sb_printf(b, ",\"counters\":");
		counters_json(b, &op->cnt);
		sb_printf(b, "}\n");
		return;
	}
	sb_printf(b,
		  "operator   pid %d, up %llus\nconfig     %s (%d rules, reloads %llu, failed %llu)\n"
		  "run dir    %s\nguests     %u\nsessions   %llu\nlisteners  %llu\n"
		  "circuits   %llu (%llu KiB of circuit memory)\n"
		  "setups     %llu connected, %llu refused, %llu denied, %llu unreachable, "
		  "%llu errors\nviolations %llu sessions dropped\nresets     %llu by reload\n",
		  (int)getpid(), uptime, cfg, op->cfg->nrules, (unsigned long long)op->reloads,
		  (unsigned long long)op->reload_failures, op->run_dir, nguests,
		  (unsigned long long)op->nsessions, (unsigned long long)listeners,
		  (unsigned long long)op->ncircuits, (unsigned long long)(mem >> 10),
		  (unsigned long long)op->cnt.connects, (unsigned long long)op->cnt.refused,
		  (unsigned long long)op->cnt.denied, (unsigned long long)op->cnt.unreachable,
		  (unsigned long long)op->cnt.errors, (unsigned long long)op->cnt.protocol,
		  (unsigned long long)op->resets);
	sb_printf(b, "grace      %d ms after start: %u connects waiting for a listener, %llu "
		     "in all\n", op->grace_ms, op->nparked, (unsigned long long)op->parked_total);
	sb_printf(b, "claims     %llu circuit ends of earlier operators re-registered, %llu refused\n",
		  (unsigned long long)op->claims, (unsigned long long)op->claims_refused);
	sb_printf(b, "ends gone  %llu closed when their last holder let go, no CLOSED seen\n",
		  (unsigned long long)op->ends_gone);
	sb_printf(b, "memory     %llu pair regions, %llu chunks (%llu MiB of address space; "
		     "resident only as used), %llu slots in use\n",
		  (unsigned long long)op->npools, (unsigned long long)op->nchunks,
		  (unsigned long long)(op->chunk_bytes >> 20), (unsigned long long)op->slots_used);
	sb_printf(b, "vms        %llu devices attached\n", (unsigned long long)op->vm_devices);
	if (op->last_reload_error[0])
		sb_printf(b, "last reload error: %s\n", op->last_reload_error);
}

static void view_guests(struct op *op, struct sbuf *b, bool json)
{
	struct list *pos, *tmp;
	bool first = true;

	if (json)
		sb_printf(b, "[");
	else
		sb_printf(b, "%-16s %-28s %5s %5s %8s %7s %10s %9s %7s\n", "GUEST", "ADDRESSES",
			  "SESS", "LSTN", "CIRCUITS", "PENDING", "MEM-KIB", "CONNECTS", "DENIED");
	list_for_each_safe(pos, tmp, &op->guests) {
		struct guest *g = container_of(pos, struct guest, link);
		struct guest_conf *gc = guest_conf(op, g);
		char addrs[CN_GUEST_ADDRS * 48] = "", a[48];
		int i;

		for (i = 0; i < gc->naddr; i++) {
			addr_format(&gc->addrs[i], false, a, sizeof(a));
			if (json)
				snprintf(addrs + strlen(addrs), sizeof(addrs) - strlen(addrs),
					 "%s\"%s\"", i ? "," : "", a);
			else
				snprintf(addrs + strlen(addrs), sizeof(addrs) - strlen(addrs),
					 "%s%s", i ? "," : "", a);
		}
		if (!json) {
			sb_printf(b, "%-16s %-28s %5u %5u %8u %7u %10llu %9llu %7llu\n", g->name,
				  addrs, g->nsessions, g->nlisteners, g->ncircuits, g->npending,
				  (unsigned long long)(g->mem >> 10),
				  (unsigned long long)g->cnt.connects,
				  (unsigned long long)g->cnt.denied);
			continue;
		}
		sb_printf(b, "%s{\"name\":\"%s\",\"id\":%llu,\"addresses\":[%s],\"groups\":[",
			  first ? "" : ",", g->name, (unsigned long long)g->id, addrs);
		for (i = 0; i < op->cfg->ngroups; i++)
			if ((gc->groups >> i) & 1)
				sb_printf(b, "%s\"%s\"", (gc->groups & ((1ull << i) - 1)) ? "," : "",
					  op->cfg->groups[i]);
		sb_printf(b, "],\"socket\":");
		sb_json_str(b, g->path);
		sb_printf(b,
			  ",\"uid\":%ld,\"sessions\":%u,\"listeners\":%u,\"circuits\":%u,"
			  "\"lingering\":%u,"
			  "\"pending\":%u,\"circuit_bytes\":%llu,\"limits\":{\"ring_size\":%u,"
			  "\"max_circuits\":%u,\"max_listeners\":%u,\"max_pending\":%u,"
			  "\"max_sessions\":%u,\"max_memory\":%llu},\"counters\":",
			  gc->uid, g->nsessions, g->nlisteners, g->ncircuits, g->nlinger, g->npending,
			  (unsigned long long)g->mem, gc->lim.ring_size, gc->lim.max_circuits,
			  gc->lim.max_listeners, gc->lim.max_pending, gc->lim.max_sessions,
			  (unsigned long long)gc->lim.max_memory);
		counters_json(b, &g->cnt);
		if (g->vm) {
			struct vm_status st;

			vm_status(g, &st);
			sb_printf(b,
				  ",\"vm\":{\"attached\":%s,\"qemu_pid\":%d,\"memory\":%llu,"
				  "\"control_ok\":%s,\"control_messages\":%llu,\"control_resets\":%llu,"
				  "\"attaches\":%llu,"
				  "\"attaches_refused\":%llu,\"violations\":%llu,"
				  "\"pair_devices\":%u,\"pairs_assigned\":%u}",
				  st.attached ? "true" : "false", st.pid,
				  (unsigned long long)st.memory, st.control_ok ? "true" : "false",
				  (unsigned long long)st.messages, (unsigned long long)st.resets,
				  (unsigned long long)st.attaches,
				  (unsigned long long)st.refused, (unsigned long long)st.violations,
				  st.pair_devices, st.pairs_assigned);
		}
		sb_printf(b, "}");
		first = false;
	}
	if (json)
		sb_printf(b, "]\n");
}

static void view_listeners(struct op *op, struct sbuf *b, bool json)
{
	struct list *gp, *gt, *lp, *lt;
	bool first = true;

	if (json)
		sb_printf(b, "[");
	else
		sb_printf(b, "%-8s %-16s %-5s %-28s %7s %6s %9s %7s\n", "ID", "GUEST", "PROTO",
			  "ADDRESS", "BACKLOG", "QUEUED", "ACCEPTED", "PID");
	list_for_each_safe(gp, gt, &op->guests) {
		struct guest *g = container_of(gp, struct guest, link);

		list_for_each_safe(lp, lt, &g->listeners) {
			struct listener *l = container_of(lp, struct listener, link);
			char a[64];

			addr_format(&l->addr, true, a, sizeof(a));
			if (json)
				sb_printf(b,
					  "%s{\"id\":%llu,\"guest\":\"%s\",\"proto\":\"%s\","
					  "\"address\":\"%s\",\"backlog\":%u,\"queued\":%u,"
					  "\"accepted\":%llu,\"pid\":%d}",
					  first ? "" : ",", (unsigned long long)l->id, g->name,
					  l4_name(l->l4), a, l->backlog, l->queued,
					  (unsigned long long)l->accepted, (int)l->s->pid);
			else
				sb_printf(b, "%-8llu %-16s %-5s %-28s %7u %6u %9llu %7d\n",
					  (unsigned long long)l->id, g->name, l4_name(l->l4), a,
					  l->backlog, l->queued, (unsigned long long)l->accepted,
					  (int)l->s->pid);
			first = false;
		}
	}
	if (json)
		sb_printf(b, "]\n");
}

static void view_circuits(struct op *op, struct sbuf *b, bool json)
{
	struct list *pos, *tmp;
	time_t now = time(NULL);
	bool first = true;

	if (json)
		sb_printf(b, "[");
	else
		sb_printf(b, "%-8s %-5s %-36s %-36s %-11s %8s %6s %s\n", "ID", "PROTO", "INITIATOR",
			  "ACCEPTOR", "STATE", "KIB", "AGE-S", "ALLOWED-BY");
	list_for_each_safe(pos, tmp, &op->circuits) {
		struct circuit *c = container_of(pos, struct circuit, link);
		char ends[2][CN_NAME_MAX + 72], a[64], rule[CFG_PATH_MAX + 16];
		const char *state = c->queued_in			  ? "queued" :
				    c->end[0].g && c->end[1].g ? "established" :
								 "half-closed";
		int i;

		for (i = 0; i < 2; i++) {
			addr_format(&c->end[i].addr, true, a, sizeof(a));
			snprintf(ends[i], sizeof(ends[i]), "%s %s",
				 c->end[i].g ? c->end[i].g->name : "-", a);
		}
		if (c->rule >= 0 && c->rule < op->cfg->nrules)
			snprintf(rule, sizeof(rule), "rule line %d", op->cfg->rules[c->rule].line);
		else if (c->rule == RULE_PUBLISHED)
			snprintf(rule, sizeof(rule), "publish");
		else if (c->rule == RULE_CLAIMED)
			snprintf(rule, sizeof(rule), "earlier operator");
		else
			snprintf(rule, sizeof(rule), "own loopback");
		if (!json) {
			sb_printf(b, "%-8llu %-5s %-36s %-36s %-11s %8zu %6lld %s\n",
				  (unsigned long long)c->id, l4_name(c->l4), ends[0], ends[1], state,
				  c->mem >> 10, (long long)(now - c->created), rule);
			continue;
		}
		sb_printf(b, "%s{\"id\":%llu,\"proto\":\"%s\",\"state\":\"%s\"",
			  first ? "" : ",", (unsigned long long)c->id, l4_name(c->l4), state);
		for (i = 0; i < 2; i++) {
			addr_format(&c->end[i].addr, true, a, sizeof(a));
			sb_printf(b, ",\"%s\":{\"guest\":\"%s\",\"address\":\"%s\"}",
				  i ? "acceptor" : "initiator", c->end[i].g ? c->end[i].g->name : "",
				  a);
		}
		sb_printf(b, ",\"ring_size\":[%u,%u],\"bytes\":%zu,\"age_s\":%lld,\"allowed_by\":\"%s\"}",
			  c->ring_size[0], c->ring_size[1], c->mem, (long long)(now - c->created),
			  rule);
		first = false;
	}
	if (json)
		sb_printf(b, "]\n");
}

static void selector_format(const struct config *c, const struct selector *s, char *buf,
			    size_t len)
{
	switch (s->kind) {
	case SEL_ANY:
		snprintf(buf, len, "any");
		break;
	case SEL_GUEST:
		snprintf(buf, len, "%s", c->guests[s->index].name);
		break;
	case SEL_GROUP:
		snprintf(buf, len, "group:%s", c->groups[s->index]);
		break;
	case SEL_PREFIX:
		prefix_format(&s->prefix, buf, len);
		break;
	}
}

static void ports_format(const struct port_list *l, char *buf, size_t len)
{
	size_t n = 0;
	int i;

	if (!l->n) {
		snprintf(buf, len, "any");
		return;
	}
	buf[0] = 0;
	for (i = 0; i < l->n && n < len; i++) {
		if (l->r[i].lo == l->r[i].hi)
			n += (size_t)snprintf(buf + n, len - n, "%s%u", i ? "," : "", l->r[i].lo);
		else
			n += (size_t)snprintf(buf + n, len - n, "%s%u-%u", i ? "," : "", l->r[i].lo,
					      l->r[i].hi);
	}
}

static void view_policy(struct op *op, struct sbuf *b, bool json)
{
	static const char *const actions[] = { "allow", "deny", "proxy" };
	struct config *c = op->cfg;
	int i;

	if (json) {
		sb_printf(b, "{\"config\":");
		sb_json_str(b, c->path);
		sb_printf(b, ",\"default\":\"deny\",\"on_reload\":\"%s\",\"rules\":[",
			  c->on_reload == RELOAD_RESET ? "reset" : "keep");
	} else {
		sb_printf(b, "policy of %s: first match wins, default deny; on reload: %s\n", c->path,
			  c->on_reload == RELOAD_RESET ? "reset circuits no longer allowed" :
							 "keep existing circuits");
		sb_printf(b, "%-6s %-6s %-5s %-24s %-24s %s\n", "LINE", "ACTION", "PROTO", "FROM",
			  "TO", "PORTS");
	}
	for (i = 0; i < c->nrules; i++) {
		const struct rule *r = &c->rules[i];
		char from[64], to[64], ports[160];
		const char *proto = r->l4_mask == L4_ANY ? "any" : r->l4_mask == L4_TCP_BIT ? "tcp" :
											     "udp";

		selector_format(c, &r->src, from, sizeof(from));
		selector_format(c, &r->dst, to, sizeof(to));
		ports_format(&r->ports, ports, sizeof(ports));
		if (json)
			sb_printf(b,
				  "%s{\"line\":%d,\"action\":\"%s\",\"proto\":\"%s\",\"from\":\"%s\","
				  "\"to\":\"%s\",\"ports\":\"%s\"}",
				  i ? "," : "", r->line, actions[r->action], proto, from, to, ports);
		else
			sb_printf(b, "%-6d %-6s %-5s %-24s %-24s %s\n", r->line, actions[r->action],
				  proto, from, to, ports);
	}
	if (json)
		sb_printf(b, "]}\n");
}

/* "ADDRESS NAME" per guest address: the hosts file guests get from circnet run. */
static void view_hosts(struct op *op, struct sbuf *b, bool json)
{
	struct config *c = op->cfg;
	int i, j;

	(void)json;
	for (i = 0; i < c->nguests; i++)
		for (j = 0; j < c->guests[i].naddr; j++) {
			char a[64];

			addr_format(&c->guests[i].addrs[j], false, a, sizeof(a));
			sb_printf(b, "%s\t%s\n", a, c->guests[i].name);
		}
}

static void handle_request(struct op *op, char *line, struct sbuf *b)
{
	static const struct {
		const char *name;
		void (*view)(struct op *, struct sbuf *, bool);
	} views[] = {
		{ "status", view_status },	 { "guests", view_guests },
		{ "listeners", view_listeners }, { "circuits", view_circuits },
		{ "policy", view_policy },	 { "hosts", view_hosts },
	};
	char *cmd = strtok(line, " \t\r\n"), *arg = strtok(NULL, " \t\r\n");
	size_t i;

	if (!cmd) {
		sb_printf(b, "error: empty request\n");
		return;
	}
	for (i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
		if (strcmp(cmd, views[i].name))
			continue;
		if (arg && strcmp(arg, "json")) {
			sb_printf(b, "error: %s takes only 'json'\n", cmd);
			return;
		}
		sb_printf(b, "ok\n");
		views[i].view(op, b, arg != NULL);
		return;
	}
	if (!strcmp(cmd, "reload")) {
		char err[600];

		if (arg && strcmp(arg, "reset")) {
			sb_printf(b, "error: reload takes only 'reset'\n");
			return;
		}
		if (op_reload(op, arg != NULL, err, sizeof(err)))
			sb_printf(b, "error: %s\n", err);
		else
			sb_printf(b, "ok\n%s\n", err);
		return;
	}
	sb_printf(b, "error: unknown request '%.40s'\n", cmd);
}

void ctl_event(struct op *op)
{
	struct timeval tv = { .tv_sec = 1 };
	struct sbuf b = { 0 };
	char line[256];
	size_t got = 0, off = 0;
	int fd;

	fd = accept4(op->ctl.fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(line) - 1) {
		ssize_t n = read(fd, line + got, sizeof(line) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(line, '\n', got))
			break;
	}
	line[got] = 0;
	if (!memchr(line, '\n', got))
		sb_printf(&b, "error: request must be one line shorter than %zu bytes\n",
			  sizeof(line));
	else
		handle_request(op, line, &b);
	if (b.oom) {
		free(b.p);
		b = (struct sbuf){ 0 };
		sb_printf(&b, "error: out of memory\n");
	}
	while (b.p && off < b.len) {
		ssize_t n = send(fd, b.p + off, b.len - off, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(b.p);
	close(fd);
}

int ctl_init(struct op *op)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = &op->ctl };
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", op->run_dir) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* a live operator answers on it: refuse to steal its sockets */
	if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)) || errno == EINPROGRESS ||
	    errno == EAGAIN) {
		close(fd);
		log_err("another operator is running on %s", sa.sun_path);
		return -EADDRINUSE;
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(sa.sun_path, 0600) ||
	    listen(fd, 16)) {
		int err = -errno;

		log_err("control socket %s: %s", sa.sun_path, strerror(errno));
		close(fd);
		return err;
	}
	op->ctl.kind = EV_CTL_SOCK;
	op->ctl.fd = fd;
	return epoll_ctl(op->epfd, EPOLL_CTL_ADD, fd, &e) ? -errno : 0;
}

void ctl_fini(struct op *op)
{
	char path[CFG_PATH_MAX + 32];

	if (op->ctl.fd < 0)
		return;
	close(op->ctl.fd);
	snprintf(path, sizeof(path), "%s/control.sock", op->run_dir);
	unlink(path);
	op->ctl.fd = -1;
}
