/* SPDX-License-Identifier: MIT */
/*
 * operator/config.h - the operator's configuration: guests, groups, limits
 * and the connection policy, as parsed from one text file (the syntax is in
 * docs/operator.md and config/circnet.conf). A parsed config is immutable;
 * reload builds a new one and swaps it in whole.
 */
#ifndef CIRCNET_OPERATOR_CONFIG_H
#define CIRCNET_OPERATOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <circnet/proto.h>

#define CFG_MAX_GROUPS	64
#define CFG_MAX_PORTS	16 /* ranges in one port list */
#define CFG_MAX_NETWORKS 16
#define CFG_PATH_MAX	256

#define L4_TCP_BIT (1u << CN_L4_TCP)
#define L4_UDP_BIT (1u << CN_L4_UDP)
#define L4_ANY	   (L4_TCP_BIT | L4_UDP_BIT)

struct prefix {
	uint8_t family; /* CN_AF_INET or CN_AF_INET6 */
	uint8_t len;	/* prefix length in bits */
	uint8_t addr[16];
};

struct port_list {
	int n; /* 0: any port */
	struct {
		uint16_t lo, hi;
	} r[CFG_MAX_PORTS];
};

struct limits {
	uint32_t ring_size;	/* receive ring of this guest's circuits */
	uint32_t max_circuits;	/* open circuits */
	uint32_t max_listeners; /* listening / bound sockets */
	uint32_t max_pending;	/* connections waiting in its backlogs */
	uint32_t max_sessions;	/* control connections at once */
	uint64_t max_memory;	/* bytes of circuit memory */
};

struct listen_perm {
	unsigned int l4_mask;
	struct port_list ports;
};

struct guest_conf {
	char name[CN_NAME_MAX];
	int naddr;
	struct cn_addr addrs[CN_GUEST_ADDRS];
	uint64_t groups; /* bit i: member of group i */
	long uid;	 /* -1: any peer uid may use the socket */
	struct limits lim;
	unsigned int lim_set; /* bit i: limit i set in the guest's block */
	int nlisten;
	struct listen_perm listen[CFG_MAX_PORTS];
	/*
	 * A VM guest (vm ivshmem): QEMU attaches its ivshmem-doorbell device
	 * to the guest's ivshmem.sock, whose memory is vm_memory bytes.
	 */
	bool vm;
	uint64_t vm_memory;
	int line;
};

#define CFG_VM_MEMORY_DEFAULT (16ull << 20)

enum rule_action { ACT_ALLOW, ACT_DENY, ACT_PROXY };
enum sel_kind { SEL_ANY, SEL_GUEST, SEL_GROUP, SEL_PREFIX };

struct selector {
	enum sel_kind kind;
	int index; /* guest or group */
	struct prefix prefix;
};

struct rule {
	enum rule_action action;
	unsigned int l4_mask;
	struct selector src, dst;
	struct port_list ports;
	int line;
};

/* publish PROTO [ADDR:]PORT to GUEST port PORT: a host port forwarded to a guest */
#define CFG_MAX_PUBLISH 64
struct publish {
	unsigned int l4;      /* CN_L4_TCP or CN_L4_UDP */
	struct cn_addr host;  /* family NONE: every host address */
	int guest;	      /* config index */
	uint16_t guest_port;
	char guest_name[CN_NAME_MAX];
	int line, col;
};

enum reload_mode { RELOAD_KEEP, RELOAD_RESET };

struct config {
	char path[CFG_PATH_MAX];
	char run_dir[CFG_PATH_MAX];
	int log_level; /* syslog level: 3 err .. 7 debug */
	enum reload_mode on_reload;
	uint16_t eph_lo, eph_hi;
	int nnetworks;
	struct prefix networks[CFG_MAX_NETWORKS];
	struct limits defaults;
	int ngroups;
	char groups[CFG_MAX_GROUPS][CN_NAME_MAX];
	int nguests;
	struct guest_conf *guests;
	int nrules;
	struct rule *rules;
	int npublish;
	struct publish publish[CFG_MAX_PUBLISH];
	/* every guest address, sorted: who owns an address is a binary search */
	int naddr_index;
	struct addr_owner {
		struct cn_addr addr;
		int guest;
	} *addr_index;
};

/*
 * Parse a config from text. name is what errors call the file. On error
 * returns NULL with a one-line "name:line:col: problem" in err.
 */
struct config *config_parse(const char *name, const char *text, size_t len, char *err,
			    size_t errlen);

/* Read and parse a file (at most 1 MiB). */
struct config *config_load(const char *path, char *err, size_t errlen);

/* The built-in config (config/circnet.conf, compiled in). */
struct config *config_builtin(char *err, size_t errlen);
extern const char config_builtin_text[];

void config_free(struct config *c);

int config_guest_index(const struct config *c, const char *name);
/* The publish that a connection to host address a (l4) belongs to, or NULL. */
const struct publish *config_publish_find(const struct config *c, unsigned int l4,
					  const struct cn_addr *a);
/* The guest that owns addr (any port), or -1. */
int config_guest_by_addr(const struct config *c, const struct cn_addr *addr);
bool prefix_match(const struct prefix *p, const struct cn_addr *a);
bool port_list_match(const struct port_list *l, uint16_t port);
/* Formatting for logs and circnetctl. */
void addr_format(const struct cn_addr *a, bool with_port, char *buf, size_t len);
void prefix_format(const struct prefix *p, char *buf, size_t len);

#endif
