// SPDX-License-Identifier: MIT
/*
 * test/test_config.c - the operator's config parser (good files and every
 * error path, each with its exact file:line:col message), the policy
 * matcher, and the protocol validator.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <circnet/local.h>
#include <circnet/proto.h>
#include <circnet/vm.h>

#include "../operator/config.h"
#include "../operator/policy.h"

static struct config *parse(const char *text, char *err, size_t len)
{
	return config_parse("t.conf", text, strlen(text), err, len);
}

static const char good[] =
	"# a comment\n"
	"run-dir /var/run/cn   # trailing comment\n"
	"log-level debug\n"
	"on-reload reset\n"
	"ephemeral-ports 40000-40100\n"
	"network 10.1.0.0/16\n"
	"network fd01::/64\n"
	"\n"
	"allow tcp from group:fe to db port 5432   # names resolve later in the file\n"
	"defaults {\n"
	"\tring-size 64K\n"
	"\tmax-circuits 100\n"
	"}\n"
	"guest web {\n"
	"    address 10.1.0.2 fd01::2\n"
	"    group fe all\n"
	"    uid 1000\n"
	"    ring-size 1M\n"
	"    max-memory 2G\n"
	"    listen tcp 80,443,8000-8010\n"
	"    listen udp any\n"
	"}\n"
	"guest db{\n"
	"    address 10.1.0.3\n"
	"    group all\n"
	"    max-pending 7\n"
	"    max-sessions 3\n"
	"    max-listeners 2\n"
	"}\n"
	"deny udp from any to 10.1.0.0/16 port 53\n"
	"proxy tcp from group:all to 0.0.0.0/0 port 443\n"
	"allow any from web to any\n";

static void test_good_file(void **state)
{
	char err[256];
	struct config *c = parse(good, err, sizeof(err));
	struct guest_conf *w, *d;

	assert_non_null(c);
	assert_string_equal(err, "");
	assert_string_equal(c->run_dir, "/var/run/cn");
	assert_int_equal(c->log_level, 7);
	assert_int_equal(c->on_reload, RELOAD_RESET);
	assert_int_equal(c->eph_lo, 40000);
	assert_int_equal(c->eph_hi, 40100);
	assert_int_equal(c->nnetworks, 2);
	assert_int_equal(c->nguests, 2);
	assert_int_equal(c->ngroups, 2);
	w = &c->guests[0];
	d = &c->guests[1];
	assert_string_equal(w->name, "web");
	assert_int_equal(w->naddr, 2);
	assert_int_equal(w->addrs[1].family, CN_AF_INET6);
	assert_int_equal(w->uid, 1000);
	assert_int_equal(w->lim.ring_size, 1 << 20);
	assert_int_equal(w->lim.max_memory, 2ull << 30);
	assert_int_equal(w->lim.max_circuits, 100); /* from defaults, set after the block */
	assert_int_equal(w->groups, 3);
	assert_int_equal(w->nlisten, 2);
	assert_int_equal(w->listen[0].ports.n, 3);
	assert_int_equal(w->listen[0].ports.r[2].lo, 8000);
	assert_int_equal(w->listen[0].ports.r[2].hi, 8010);
	assert_int_equal(w->listen[1].ports.n, 0);
	assert_int_equal(d->uid, -1);
	assert_int_equal(d->lim.ring_size, 64 << 10);
	assert_int_equal(d->lim.max_pending, 7);
	assert_int_equal(d->lim.max_sessions, 3);
	assert_int_equal(d->lim.max_listeners, 2);
	assert_int_equal(c->nrules, 4);
	assert_int_equal(c->rules[0].src.kind, SEL_GROUP);
	assert_int_equal(c->rules[0].dst.kind, SEL_GUEST);
	assert_int_equal(c->rules[0].dst.index, 1);
	assert_int_equal(c->rules[0].line, 9);
	assert_int_equal(c->rules[1].dst.kind, SEL_PREFIX);
	assert_int_equal(c->rules[1].dst.prefix.len, 16);
	assert_int_equal(c->rules[2].action, ACT_PROXY);
	assert_int_equal(c->rules[3].l4_mask, L4_ANY);
	config_free(c);
}

static void test_empty_and_builtin(void **state)
{
	char err[256];
	struct config *c = parse("", err, sizeof(err));

	assert_non_null(c);
	assert_int_equal(c->nguests, 0);
	assert_string_equal(c->run_dir, "/run/circnet");
	assert_int_equal(c->defaults.ring_size, CN_RING_DEFAULT);
	config_free(c);
	c = config_builtin(err, sizeof(err));
	assert_non_null(c); /* config/circnet.conf, compiled in */
	assert_true(c->nguests >= 3);
	assert_true(config_guest_index(c, "web") >= 0);
	config_free(c);
}

/* Every error path: the input and the exact message. */
static const struct {
	const char *text;
	const char *msg;
} bad[] = {
	{ "bogus 1\n", "t.conf:1:1: unknown directive 'bogus'" },
	{ "\n  run-dir relative\n", "t.conf:2:11: run-dir must be an absolute path shorter than 192" },
	{ "run-dir\n", "t.conf:1:1: 'run-dir' takes 1 value" },
	{ "log-level loud\n", "t.conf:1:11: log-level must be error, warning, notice, info or debug" },
	{ "on-reload maybe\n", "t.conf:1:11: on-reload must be keep or reset" },
	{ "ephemeral-ports 100-105\n", "t.conf:1:17: ephemeral-ports must be one range of 16 or more" },
	{ "ephemeral-ports 0-100\n", "t.conf:1:17: port 0 out of range 1-65535" },
	{ "ephemeral-ports 70000\n", "t.conf:1:17: port 70000 out of range 1-65535" },
	{ "network 10.0.0.0/33\n", "t.conf:1:9: bad prefix length '/33' (0-32)" },
	{ "network 10.0.0.300/8\n", "t.conf:1:9: bad IP address '10.0.0.300'" },
	{ "network fd00::/129\n", "t.conf:1:9: bad prefix length '/129' (0-128)" },
	{ "network 10.0.0.0/\n", "t.conf:1:9: bad prefix length '/' (0-32)" },
	{ "guest web\n", "t.conf:1:1: expected 'guest NAME {'" },
	{ "guest 9web {\n", "t.conf:1:7: bad guest name '9web' (letter first, then letters, digits, "
			    "'-', '_', '.'; at most 31; not 'any')" },
	{ "guest any {\n", "t.conf:1:7: bad guest name 'any' (letter first, then letters, digits, "
			   "'-', '_', '.'; at most 31; not 'any')" },
	{ "guest a {\naddress 10.0.0.1\n}\nguest a {\n", "t.conf:4:7: guest 'a' is defined twice" },
	{ "guest a {\n", "t.conf:1:1: block opened here is never closed with '}'" },
	{ "guest a {\n}\n", "t.conf:1:1: guest 'a' has no address" },
	{ "guest a {\naddress 127.0.0.1\n}\n",
	  "t.conf:2:9: '127.0.0.1' is a loopback, unspecified or multicast address" },
	{ "guest a {\naddress ::1\n}\n",
	  "t.conf:2:9: '::1' is a loopback, unspecified or multicast address" },
	{ "guest a {\naddress 10.0.0.1/24\n}\n", "t.conf:2:9: expected an address, not a prefix" },
	{ "guest a {\naddress 10.0.0.1\n}\nguest b {\naddress 10.0.0.1\n}\n",
	  "t.conf:5:9: address 10.0.0.1 already belongs to guest 'a'" },
	{ "guest a {\naddress 1.1.1.1 1.1.1.2 1.1.1.3 1.1.1.4 1.1.1.5 1.1.1.6 1.1.1.7 1.1.1.8 "
	  "1.1.1.9\n}\n",
	  "t.conf:2:73: too many addresses for guest 'a' (at most 8)" },
	{ "guest a {\naddress\n}\n", "t.conf:2:1: 'address' takes one or more addresses" },
	{ "guest a {\ngroup\n}\n", "t.conf:2:1: 'group' takes one or more group names" },
	{ "guest a {\nuid -1\n}\n", "t.conf:2:5: expected a number, got '-1'" },
	{ "guest a {\nuid 12x\n}\n", "t.conf:2:5: bad number '12x'" },
	{ "guest a {\nring-size 3000\n}\n",
	  "t.conf:2:11: ring-size must be a power of two from 4096 to 1073741824" },
	{ "guest a {\nring-size 2G\n}\n", "t.conf:2:11: '2G' is too large (at most 1073741824)" },
	{ "guest a {\nmax-circuits 99999999\n}\n",
	  "t.conf:2:14: '99999999' is too large (at most 16777216)" },
	{ "guest a {\nmax-circuits 1K\n}\n", "t.conf:2:14: bad number '1K'" },
	{ "guest a {\nlisten tcp\n}\n", "t.conf:2:1: 'listen' takes 2 values" },
	{ "guest a {\nlisten sctp 80\n}\n", "t.conf:2:8: expected tcp, udp or any, got 'sctp'" },
	{ "guest a {\nlisten tcp 90-80\n}\n", "t.conf:2:12: port range 90-80 is backwards" },
	{ "guest a {\nlisten tcp 80,\n}\n", "t.conf:2:12: port list ends with ','" },
	{ "guest a {\nlisten tcp 8a\n}\n", "t.conf:2:12: bad port in '8a'" },
	{ "guest a {\nlisten tcp 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n}\n",
	  "t.conf:2:12: too many port ranges (at most 16)" },
	{ "guest a {\nfoo\n}\n", "t.conf:2:1: unknown guest directive 'foo'" },
	{ "guest a {\naddress 10.0.0.1\nvm xen\n}\n", "t.conf:3:4: unknown VM kind 'xen' (ivshmem)" },
	{ "guest a {\naddress 10.0.0.1\nvm\n}\n", "t.conf:3:1: 'vm' takes 1 value" },
	{ "guest a {\naddress 10.0.0.1\nvm ivshmem\nvm-memory 3M\n}\n",
	  "t.conf:4:11: vm-memory must be a power of two from 1M to 1G" },
	{ "guest a {\naddress 10.0.0.1\nvm ivshmem\nvm-memory 512K\n}\n",
	  "t.conf:4:11: vm-memory must be a power of two from 1M to 1G" },
	{ "guest a {\naddress 10.0.0.1\nvm ivshmem\nvm-memory 2G\n}\n",
	  "t.conf:4:11: '2G' is too large (at most 1073741824)" },
	{ "guest a {\naddress 10.0.0.1\nvm-memory 4M\n}\n",
	  "t.conf:1:1: guest 'a' has vm-memory but is no VM (add 'vm ivshmem')" },
	{ "guest a {\naddress 10.0.0.1\nallow tcp from a to a\n}\n",
	  "t.conf:3:1: 'allow' belongs outside blocks (block opened on line 1)" },
	{ "defaults {\nguest a {\n", "t.conf:2:1: 'guest' belongs outside blocks (block opened on line 1)" },
	{ "}\n", "t.conf:1:1: '}' without an open block" },
	{ "defaults {\n} x\n", "t.conf:2:3: nothing may follow '}' on its line" },
	{ "defaults\n", "t.conf:1:1: expected 'defaults {'" },
	{ "defaults {\naddress 10.0.0.1\n}\n", "t.conf:2:1: unknown defaults directive 'address'" },
	{ "allow tcp from a\n", "t.conf:1:1: expected 'allow PROTO from SRC to DST [port PORTS]'" },
	{ "allow tcp form a to b\n", "t.conf:1:11: expected 'from', got 'form'" },
	{ "allow tcp from a into b\n", "t.conf:1:18: expected 'to', got 'into'" },
	{ "allow tcp from any to any ports 80\n", "t.conf:1:27: expected 'port', got 'ports'" },
	{ "allow tcp from nobody to any\n", "t.conf:1:16: unknown guest 'nobody'" },
	{ "deny udp from any to group:none\n", "t.conf:1:28: unknown group 'none'" },
	{ "deny udp from any to group:-x\n", "t.conf:1:28: bad group name '-x'" },
	{ "deny udp from a%b to any\n",
	  "t.conf:1:15: expected any, a guest, group:NAME or an address, got 'a%b'" },
	{ "proxy tcp from any to any port 443\n",
	  "t.conf:1:23: proxy rules route to off-host addresses: the destination must be an "
	  "address or prefix" },
	{ "allow icmp from any to any\n", "t.conf:1:7: expected tcp, udp or any, got 'icmp'" },
	{ "publish tcp 8080 to web\n",
	  "t.conf:1:1: expected 'publish PROTO [ADDR:]PORT to GUEST port PORT'" },
	{ "publish any 53 to web port 53\n",
	  "t.conf:1:9: publish one protocol per line: tcp or udp" },
	{ "publish tcp 8080 at web port 80\n", "t.conf:1:18: expected 'to', got 'at'" },
	{ "publish tcp ::1:80 to web port 80\n",
	  "t.conf:1:13: write an IPv6 host address in brackets: [ADDR]:PORT" },
	{ "publish tcp 8080 to nobody port 80\n", "t.conf:1:21: unknown guest 'nobody'" },
	{ "guest w {\npublish tcp 8080 to w port 80\n}\n",
	  "t.conf:2:1: 'publish' belongs outside blocks (block opened on line 1)" },
	{ "guest w {\naddress 10.0.0.1\n}\npublish tcp 8080 to w port 80\n"
	  "publish tcp 127.0.0.1:8080 to w port 81\n",
	  "t.conf:5:13: host port 8080 is published already (line 4)" },
	{ "publish tcp 8080 to w port 0\n", "t.conf:1:28: port 0 out of range 1-65535" },
	{ "allow tcp from any to any port 0\n", "t.conf:1:32: port 0 out of range 1-65535" },
	{ "run-dir /x\x01y\n", "t.conf:1:11: control or non-ASCII character" },
};

static void test_bad_files(void **state)
{
	char err[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config *c = parse(bad[i].text, err, sizeof(err));

		if (c || strcmp(err, bad[i].msg))
			fail_msg("case %zu: %s\n  got:  %s\n  want: %s", i, bad[i].text,
				 c ? "(accepted)" : err, bad[i].msg);
	}
}

static void test_bad_bytes_and_limits(void **state)
{
	char err[512], *big;
	struct config *c;
	size_t i;

	c = config_parse("t.conf", "log-level info\0x\n", 17, err, sizeof(err));
	assert_null(c);
	assert_string_equal(err, "t.conf:1:1: file contains a NUL byte");
	/* a line that is too long */
	big = malloc(5000);
	memset(big, 'a', 4999);
	big[4999] = 0;
	assert_null(parse(big, err, sizeof(err)));
	assert_string_equal(err, "t.conf:1:1: line longer than 4096 characters");
	/* too many words */
	for (i = 0; i < 65; i++)
		memcpy(big + i * 2, "a ", 2);
	big[130] = 0;
	assert_null(parse(big, err, sizeof(err)));
	assert_string_equal(err, "t.conf:1:129: too many words on one line (at most 64)");
	free(big);
	/* a missing file */
	assert_null(config_load("/nonexistent/circnet.conf", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/circnet.conf: cannot open: No such file or directory");
	/* a tiny error buffer truncates but stays terminated */
	assert_null(parse("bogus\n", err, 8));
	assert_int_equal(strlen(err), 7);
}

/* ---- policy ---- */

static const char policy_conf[] =
	"guest web {\n address 10.0.0.2 fd00::2\n group fe\n listen tcp 80,8000-8099\n}\n"
	"guest api {\n address 10.0.0.3\n group fe be\n}\n"
	"guest db {\n address 10.0.0.4\n group be\n listen udp 53\n}\n"
	"guest cli {\n address 10.0.1.9\n}\n"
	"deny tcp from cli to web port 8080\n"
	"allow tcp from cli to group:fe port 80,8000-8099\n"
	"allow tcp from group:fe to group:be port 5432\n"
	"allow udp from 10.0.0.0/24 to db port 53\n"
	"proxy tcp from web to 203.0.113.0/24 port 443\n"
	"deny tcp from any to 203.0.113.9\n"
	"proxy any from any to 0.0.0.0/0\n";

static enum verdict decide(const struct config *c, const char *src, const char *dst,
			   unsigned int l4, const char *dst_addr, uint16_t port, int *rule)
{
	struct flow f = { .l4 = l4 };
	struct cn_addr a = { 0 };

	f.src_guest = config_guest_index(c, src);
	f.src = c->guests[f.src_guest].addrs[0];
	f.dst_guest = dst ? config_guest_index(c, dst) : -1;
	if (dst)
		f.dst = c->guests[f.dst_guest].addrs[0];
	if (dst_addr) {
		char buf[64];

		snprintf(buf, sizeof(buf), "%s", dst_addr);
		a.family = strchr(buf, ':') ? CN_AF_INET6 : CN_AF_INET;
		assert_int_equal(inet_pton(a.family == CN_AF_INET6 ? AF_INET6 : AF_INET, buf, a.addr), 1);
		f.dst = a;
		f.dst_guest = config_guest_by_addr(c, &a);
	}
	f.dst.port = port;
	return policy_decide(c, &f, rule);
}

static void test_policy(void **state)
{
	char err[256];
	struct config *c = parse(policy_conf, err, sizeof(err));
	int rule;

	assert_non_null(c);
	/* first match wins: the deny for 8080 shadows the range allow */
	assert_int_equal(decide(c, "cli", "web", CN_L4_TCP, NULL, 8080, &rule), VERDICT_DENY);
	assert_int_equal(rule, 0);
	assert_int_equal(decide(c, "cli", "web", CN_L4_TCP, NULL, 8081, &rule), VERDICT_ALLOW);
	assert_int_equal(rule, 1);
	assert_int_equal(decide(c, "cli", "api", CN_L4_TCP, NULL, 80, &rule), VERDICT_ALLOW);
	/* group membership; protocol must match */
	assert_int_equal(decide(c, "api", "db", CN_L4_TCP, NULL, 5432, &rule), VERDICT_ALLOW);
	assert_int_equal(decide(c, "api", "api", CN_L4_TCP, NULL, 5432, &rule), VERDICT_ALLOW);
	assert_int_equal(decide(c, "cli", "db", CN_L4_TCP, NULL, 5432, &rule), VERDICT_DENY);
	assert_int_equal(rule, -1); /* nothing matched: default deny */
	assert_int_equal(decide(c, "web", "db", CN_L4_UDP, NULL, 5432, &rule), VERDICT_DENY);
	/* source prefix: cli is outside 10.0.0.0/24 */
	assert_int_equal(decide(c, "web", "db", CN_L4_UDP, NULL, 53, &rule), VERDICT_ALLOW);
	assert_int_equal(decide(c, "cli", "db", CN_L4_UDP, NULL, 53, &rule), VERDICT_DENY);
	/* by address: a guest address matched by prefix is still a guest */
	assert_int_equal(decide(c, "web", NULL, CN_L4_TCP, "10.0.0.4", 5432, &rule), VERDICT_ALLOW);
	/* off-host: proxy rules apply, allow rules do not */
	assert_int_equal(decide(c, "web", NULL, CN_L4_TCP, "203.0.113.9", 443, &rule),
			 VERDICT_PROXY);
	assert_int_equal(rule, 4);
	assert_int_equal(decide(c, "api", NULL, CN_L4_TCP, "203.0.113.9", 443, &rule), VERDICT_DENY);
	assert_int_equal(rule, 5);
	assert_int_equal(decide(c, "api", NULL, CN_L4_UDP, "198.51.100.1", 53, &rule),
			 VERDICT_PROXY);
	/* the catch-all proxy rule is v4 only */
	assert_int_equal(decide(c, "api", NULL, CN_L4_UDP, "2001:db8::1", 53, &rule), VERDICT_DENY);
	/* a proxy rule never routes a guest's own address off-host */
	assert_int_equal(decide(c, "cli", "db", CN_L4_UDP, NULL, 99, &rule), VERDICT_DENY);
	/* listen permissions */
	assert_true(policy_may_listen(&c->guests[0], CN_L4_TCP, 80));
	assert_true(policy_may_listen(&c->guests[0], CN_L4_TCP, 8099));
	assert_false(policy_may_listen(&c->guests[0], CN_L4_TCP, 8100));
	assert_false(policy_may_listen(&c->guests[0], CN_L4_UDP, 80));
	assert_false(policy_may_listen(&c->guests[1], CN_L4_TCP, 80));
	assert_true(policy_may_listen(&c->guests[2], CN_L4_UDP, 53));
	config_free(c);
}

static void test_prefix_match(void **state)
{
	struct prefix p = { .family = CN_AF_INET, .len = 21, .addr = { 10, 1, 0xf8, 0 } };
	struct cn_addr a = { .family = CN_AF_INET, .addr = { 10, 1, 0xff, 7 } };

	assert_true(prefix_match(&p, &a));
	a.addr[2] = 0xf0;
	assert_false(prefix_match(&p, &a));
	p.len = 0;
	assert_true(prefix_match(&p, &a));
	a.family = CN_AF_INET6;
	assert_false(prefix_match(&p, &a)); /* families never mix */
}

/* ---- protocol validator ---- */

/* A listener's channel and a circuit's claim: the one fd they carry (issue 13). */
static void test_proto_channel_and_claim(void **state)
{
	union cn_msg m;
	const char *why;

	cn_msg_init(&m.h, CN_MSG_LISTEN, sizeof(m.listen), 1);
	m.listen.l4 = CN_L4_TCP;
	m.listen.backlog = 16;
	m.listen.addr.family = CN_AF_INET;
	m.listen.addr.port = 80;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.listen), 0, &why), 0);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.listen), 1, &why), -EBADMSG);
	m.listen.flags = CN_LISTEN_CHANNEL;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.listen), 1, &why), 0);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.listen), 0, &why), -EBADMSG);
	assert_string_equal(why, "listen: a channel fd without the flag, or the flag without it");
	assert_int_equal(cn_msg_validate(&m, sizeof(m.listen), 2, &why), -EBADMSG);
	m.listen.flags = 0x10;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.listen), 0, &why), -EBADMSG);

	cn_msg_init(&m.h, CN_MSG_CLAIM, sizeof(m.circuit), 0);
	m.circuit.circuit_id = 42;
	m.circuit.l4 = CN_L4_TCP;
	m.circuit.role = 1;
	m.circuit.local.family = m.circuit.remote.family = CN_AF_INET;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 1, &why), 0);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 0, &why), -EBADMSG);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 3, &why), -EBADMSG);
	m.circuit.flags = CN_CIRCUIT_PENDING;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 1, &why), -EBADMSG);
	m.circuit.flags = 0;
	m.circuit.listener_id = 7;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 1, &why), -EBADMSG);
	m.circuit.listener_id = 0;
	m.circuit.role = 2;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 1, &why), -EBADMSG);
	assert_string_equal(cn_msg_name(CN_MSG_CLAIM), "claim");
}

/* A VM's circuits (CN_CIRCUIT_VM) and ECHO: the rules of docs/vms.md. */
static void test_proto_vm_and_echo(void **state)
{
	union cn_msg m;
	const char *why;

	cn_msg_init(&m.h, CN_MSG_CONNECT_OK, sizeof(m.circuit), 3);
	m.circuit.circuit_id = 42;
	m.circuit.l4 = CN_L4_TCP;
	m.circuit.local.family = m.circuit.remote.family = CN_AF_INET;
	m.circuit.flags = CN_CIRCUIT_VM;
	m.circuit.chunk_id = 2; /* the VM's end: a device's IVPosition, no fds */
	m.circuit.vm_vec = CN_VM_PAIR_VECTORS / 2 - 1;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 0, &why), 0);
	/* the host's end: the device's bundle */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_POOL_NFDS_VM, &why), 0);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_POOL_NFDS, &why), -EBADMSG);
	m.circuit.chunk_id = 0;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 0, &why), -EBADMSG);
	assert_string_equal(why, "circuit: a VM's circuit outside a device");
	m.circuit.chunk_id = 2;
	m.circuit.flags = 0; /* a vector pair on a process's circuit */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_POOL_NFDS, &why), -EBADMSG);
	assert_string_equal(why, "circuit: a vector pair outside a VM's circuit");
	m.circuit.vm_vec = 0;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_POOL_NFDS, &why), 0);
	m.circuit.flags = CN_CIRCUIT_VM;
	m.circuit.vm_vec = CN_VM_PAIR_VECTORS / 2; /* one past the device's last pair */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 0, &why), -EBADMSG);
	m.circuit.vm_vec = 0;

	cn_msg_init(&m.h, CN_MSG_ECHO, sizeof(m.echo), 4);
	m.echo.len = CN_ECHO_MAX;
	memset(m.echo.data, 0xab, CN_ECHO_MAX);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.echo), 0, &why), 0);
	m.echo.len = 10; /* bytes past len must be zero */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.echo), 0, &why), -EBADMSG);
	memset(m.echo.data + 10, 0, CN_ECHO_MAX - 10);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.echo), 0, &why), 0);
	m.echo.len = CN_ECHO_MAX + 1;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.echo), 0, &why), -EBADMSG);
	assert_string_equal(cn_msg_name(CN_MSG_ECHO_OK), "echo-ok");
}

static void test_proto_validate(void **state)
{
	union cn_msg m;
	const char *why;

	cn_msg_init(&m.h, CN_MSG_CONNECT, sizeof(m.connect), 5);
	m.connect.l4 = CN_L4_TCP;
	m.connect.dst.family = CN_AF_INET;
	m.connect.dst.port = 80;
	m.connect.dst.addr[0] = 10;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), 0);
	/* lengths are exact per type, and must match the header */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect) - 1, 0, &why), -EBADMSG);
	assert_string_equal(why, "wrong length for the message type");
	assert_int_equal(cn_msg_validate(&m, 3, 0, &why), -EBADMSG);
	assert_string_equal(why, "message shorter than its header");
	/* fds where none belong */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 1, &why), -EBADMSG);
	/* every field */
	m.connect.dst.port = 0;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	assert_string_equal(why, "connect: destination port 0");
	m.connect.dst.port = 80;
	m.connect.dst.addr[5] = 1;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	assert_string_equal(why, "IPv4 address with bytes past 4");
	m.connect.dst.addr[5] = 0;
	m.connect.src.addr[0] = 1;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	assert_string_equal(why, "address bytes with no family");
	m.connect.src.addr[0] = 0;
	m.connect.l4 = 3;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	assert_string_equal(why, "unknown transport protocol");
	m.connect.l4 = CN_L4_UDP;
	m.connect.pad[1] = 1;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	m.connect.pad[1] = 0;
	m.connect.dst.family = 5;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	assert_string_equal(why, "unknown address family");
	m.connect.dst.family = CN_AF_INET;
	m.h.version = 2;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EPROTONOSUPPORT);
	m.h.version = CN_PROTO_VERSION;
	m.h.magic ^= 1;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	assert_string_equal(why, "bad magic");
	m.h.magic ^= 1;
	m.h.type = 200;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);
	assert_string_equal(why, "unknown message type");
	m.h.type = 8; /* a hole in the table */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.connect), 0, &why), -EBADMSG);

	/* circuits come with exactly their fds */
	cn_msg_init(&m.h, CN_MSG_NEW_CONN, sizeof(m.circuit), 0);
	m.circuit.l4 = CN_L4_TCP;
	m.circuit.role = 1;
	m.circuit.local.family = m.circuit.remote.family = CN_AF_INET6;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_LOCAL_NFDS, &why), 0);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_LOCAL_NFDS_SOCK, &why), 0);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_LOCAL_NFDS - 1, &why), -EBADMSG);
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), 0, &why), -EBADMSG);
	m.circuit.role = 2;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.circuit), CN_LOCAL_NFDS, &why), -EBADMSG);

	/* names terminated, nothing after them */
	cn_msg_init(&m.h, CN_MSG_HELLO_OK, sizeof(m.hello_ok), 1);
	strcpy(m.hello_ok.name, "web");
	m.hello_ok.naddr = 1;
	m.hello_ok.addrs[0].family = CN_AF_INET;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.hello_ok), 0, &why), 0);
	m.hello_ok.name[10] = 'x';
	assert_int_equal(cn_msg_validate(&m, sizeof(m.hello_ok), 0, &why), -EBADMSG);
	assert_string_equal(why, "bytes after the name's end");
	memset(m.hello_ok.name, 'a', sizeof(m.hello_ok.name));
	assert_int_equal(cn_msg_validate(&m, sizeof(m.hello_ok), 0, &why), -EBADMSG);
	strcpy(m.hello_ok.name, "web");
	memset(m.hello_ok.name + 4, 0, sizeof(m.hello_ok.name) - 4);
	m.hello_ok.naddr = 9;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.hello_ok), 0, &why), -EBADMSG);
	m.hello_ok.naddr = 0; /* then addrs[0] must be empty */
	assert_int_equal(cn_msg_validate(&m, sizeof(m.hello_ok), 0, &why), -EBADMSG);

	/* errno ranges */
	cn_msg_init(&m.h, CN_MSG_ERROR, sizeof(m.error), 1);
	m.error.err = 0;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.error), 0, &why), -EBADMSG);
	m.error.err = ECONNREFUSED;
	assert_int_equal(cn_msg_validate(&m, sizeof(m.error), 0, &why), 0);
	assert_string_equal(cn_msg_name(CN_MSG_CONNECT), "connect");
	assert_string_equal(cn_msg_name(999), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_file),      cmocka_unit_test(test_empty_and_builtin),
		cmocka_unit_test(test_bad_files),      cmocka_unit_test(test_bad_bytes_and_limits),
		cmocka_unit_test(test_policy),	       cmocka_unit_test(test_prefix_match),
		cmocka_unit_test(test_proto_validate),
		cmocka_unit_test(test_proto_channel_and_claim),
		cmocka_unit_test(test_proto_vm_and_echo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
