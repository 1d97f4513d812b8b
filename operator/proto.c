// SPDX-License-Identifier: MIT
/*
 * operator/proto.c - the operator protocol's validator (circnet/proto.h),
 * shared by the operator, the guest client and circnetctl.
 *
 * Messages come from guests we do not trust, so the rules are strict: one
 * exact length per type, every enum checked, every pad and reserved field
 * zero (so they stay usable in later versions), address bytes past the
 * family's length zero, names NUL-terminated. A message that passes can be
 * used field by field without further checks on its shape.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <circnet/local.h>
#include <circnet/proto.h>
#include <circnet/vm.h>

static const struct {
	const char *name;
	size_t len;
	int nfds;
} msg_types[] = {
	[CN_MSG_HELLO] = { "hello", sizeof(struct cn_msg_hello), 0 },
	[CN_MSG_LISTEN] = { "listen", sizeof(struct cn_msg_listen), 0 },
	[CN_MSG_UNLISTEN] = { "unlisten", sizeof(struct cn_msg_id), 0 },
	[CN_MSG_CONNECT] = { "connect", sizeof(struct cn_msg_connect), 0 },
	[CN_MSG_ACCEPTED] = { "accepted", sizeof(struct cn_msg_id), 0 },
	[CN_MSG_CLOSED] = { "closed", sizeof(struct cn_msg_id), 0 },
	[CN_MSG_QUERY] = { "query", sizeof(struct cn_msg_hdr), 0 },
	[CN_MSG_CLAIM] = { "claim", sizeof(struct cn_msg_circuit), 1 },
	[CN_MSG_ECHO] = { "echo", sizeof(struct cn_msg_echo), 0 },
	[CN_MSG_ERROR] = { "error", sizeof(struct cn_msg_error), 0 },
	[CN_MSG_HELLO_OK] = { "hello-ok", sizeof(struct cn_msg_hello_ok), 0 },
	[CN_MSG_LISTEN_OK] = { "listen-ok", sizeof(struct cn_msg_listen_ok), 0 },
	[CN_MSG_CONNECT_OK] = { "connect-ok", sizeof(struct cn_msg_circuit), CN_MSG_MAX_FDS },
	[CN_MSG_NEW_CONN] = { "new-conn", sizeof(struct cn_msg_circuit), CN_MSG_MAX_FDS },
	[CN_MSG_RESET] = { "reset", sizeof(struct cn_msg_reset), 0 },
	[CN_MSG_QUERY_OK] = { "query-ok", sizeof(struct cn_msg_query_ok), 0 },
	[CN_MSG_OK] = { "ok", sizeof(struct cn_msg_hdr), 0 },
	[CN_MSG_PUBLISH] = { "publish", sizeof(struct cn_msg_publish), 0 },
	[CN_MSG_ECHO_OK] = { "echo-ok", sizeof(struct cn_msg_echo), 0 },
};
#define N_TYPES (sizeof(msg_types) / sizeof(msg_types[0]))

const char *cn_msg_name(unsigned int type)
{
	if (type < N_TYPES && msg_types[type].name)
		return msg_types[type].name;
	return "?";
}

int cn_msg_nfds(enum cn_msg_type type)
{
	return (unsigned int)type < N_TYPES ? msg_types[type].nfds : 0;
}

void cn_msg_init(struct cn_msg_hdr *h, enum cn_msg_type type, size_t len, uint32_t seq)
{
	memset(h, 0, len);
	h->magic = CN_PROTO_MAGIC;
	h->version = CN_PROTO_VERSION;
	h->type = (uint16_t)type;
	h->len = (uint32_t)len;
	h->seq = seq;
}

static int all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n--)
		if (*b++)
			return 0;
	return 1;
}

#define FAIL(reason)              \
	do {                      \
		*why = reason;    \
		return -EBADMSG;  \
	} while (0)

static int check_addr(const struct cn_addr *a, int may_be_none, const char **why)
{
	switch (a->family) {
	case CN_AF_NONE:
		if (!may_be_none)
			FAIL("address family missing");
		if (!all_zero(a->addr, sizeof(a->addr)))
			FAIL("address bytes with no family");
		break;
	case CN_AF_INET:
		if (!all_zero(a->addr + 4, sizeof(a->addr) - 4))
			FAIL("IPv4 address with bytes past 4");
		break;
	case CN_AF_INET6:
		break;
	default:
		FAIL("unknown address family");
	}
	if (a->pad)
		FAIL("address padding not zero");
	return 0;
}

static int check_l4(uint8_t l4, const char **why)
{
	if (l4 != CN_L4_TCP && l4 != CN_L4_UDP)
		FAIL("unknown transport protocol");
	return 0;
}

static int check_name(const char *name, const char **why)
{
	size_t n = strnlen(name, CN_NAME_MAX);

	if (n == 0 || n == CN_NAME_MAX)
		FAIL("name empty or not terminated");
	if (!all_zero(name + n, CN_NAME_MAX - n))
		FAIL("bytes after the name's end");
	return 0;
}

static int check_body(const union cn_msg *m, const char **why)
{
	int err = 0;
	uint32_t i;

	switch (m->h.type) {
	case CN_MSG_HELLO:
		if (m->hello.flags)
			FAIL("hello: unknown flags");
		break;
	case CN_MSG_LISTEN:
		if ((err = check_l4(m->listen.l4, why)))
			break;
		if (!all_zero(m->listen.pad, sizeof(m->listen.pad)))
			FAIL("listen: padding not zero");
		if (m->listen.flags &
		    ~(CN_LISTEN_V6ONLY | CN_LISTEN_REUSE | CN_LISTEN_PROXY | CN_LISTEN_CHANNEL))
			FAIL("listen: unknown flags");
		err = check_addr(&m->listen.addr, 1, why);
		break;
	case CN_MSG_CONNECT:
		if ((err = check_l4(m->connect.l4, why)))
			break;
		if ((m->connect.flags & ~CN_CONNECT_PUBLISHED) ||
		    !all_zero(m->connect.pad, sizeof(m->connect.pad)))
			FAIL("connect: unknown flags or padding not zero");
		if (!(err = check_addr(&m->connect.src, 1, why)))
			err = check_addr(&m->connect.dst, 0, why);
		if (!err && m->connect.dst.port == 0)
			FAIL("connect: destination port 0");
		break;
	case CN_MSG_CLAIM:
		if (m->circuit.flags || m->circuit.listener_id)
			FAIL("claim: flags or a listener");
		__attribute__((__fallthrough__));
	case CN_MSG_CONNECT_OK:
	case CN_MSG_NEW_CONN:
		if ((err = check_l4(m->circuit.l4, why)))
			break;
		if (m->circuit.role > 1)
			FAIL("circuit: bad role");
		if (m->circuit.flags & ~(CN_CIRCUIT_PENDING | CN_CIRCUIT_VM))
			FAIL("circuit: unknown flags");
		if (m->circuit.vm_vec && !(m->circuit.flags & CN_CIRCUIT_VM))
			FAIL("circuit: a vector pair outside a VM's circuit");
		if (m->circuit.vm_vec >= CN_VM_PAIR_VECTORS / 2)
			FAIL("circuit: a vector pair the device does not have");
		if ((m->circuit.flags & CN_CIRCUIT_VM) && (!m->circuit.chunk_id || m->h.type == CN_MSG_CLAIM))
			FAIL("circuit: a VM's circuit outside a device");
		if (m->circuit.slot_off % CN_DATA_OFF || (!m->circuit.chunk_id && m->circuit.slot_off))
			FAIL("circuit: a slot not page aligned, or outside a chunk");
		if (!(err = check_addr(&m->circuit.local, 0, why)))
			err = check_addr(&m->circuit.remote, 0, why);
		break;
	case CN_MSG_HELLO_OK:
		if ((err = check_name(m->hello_ok.name, why)))
			break;
		if (m->hello_ok.naddr > CN_GUEST_ADDRS)
			FAIL("hello-ok: too many addresses");
		for (i = 0; i < m->hello_ok.naddr && !err; i++)
			err = check_addr(&m->hello_ok.addrs[i], 0, why);
		for (; i < CN_GUEST_ADDRS && !err; i++)
			if (!all_zero(&m->hello_ok.addrs[i], sizeof(m->hello_ok.addrs[i])))
				FAIL("hello-ok: bytes in unused address slots");
		break;
	case CN_MSG_PUBLISH:
		if ((err = check_l4(m->publish.l4, why)))
			break;
		if (!all_zero(m->publish.pad, sizeof(m->publish.pad)))
			FAIL("publish: padding not zero");
		if (m->publish.count ? m->publish.index >= m->publish.count : m->publish.index)
			FAIL("publish: index out of its set");
		err = check_addr(&m->publish.host, 1, why);
		if (!err && !m->publish.host.port && m->publish.count)
			FAIL("publish: port 0");
		break;
	case CN_MSG_LISTEN_OK:
		err = check_addr(&m->listen_ok.bound, 0, why);
		break;
	case CN_MSG_ERROR:
		if (m->error.err <= 0 || m->error.err > 4095 || m->error.pad)
			FAIL("error: errno out of range");
		break;
	case CN_MSG_ECHO:
	case CN_MSG_ECHO_OK:
		if (m->echo.len > CN_ECHO_MAX || m->echo.pad ||
		    !all_zero(m->echo.data + m->echo.len, CN_ECHO_MAX - m->echo.len))
			FAIL("echo: length out of range, or bytes past it");
		break;
	case CN_MSG_RESET:
		if (m->reset.err <= 0 || m->reset.err > 4095 || m->reset.pad)
			FAIL("reset: errno out of range");
		break;
	default:
		break;
	}
	return err;
}

/*
 * Circuits come as a pooled bundle (CN_POOL_NFDS, with a chunk id) or a
 * bundle of their own (3 with socket notifiers, 5 with eventfds).
 */
static bool fds_ok(const void *buf, size_t len, int nfds)
{
	const struct cn_msg_hdr *h = buf;
	int want = msg_types[h->type].nfds;
	uint64_t chunk;

	uint8_t flags;

	if (want != CN_MSG_MAX_FDS || len != sizeof(struct cn_msg_circuit))
		return nfds == want;
	memcpy(&chunk, (const char *)buf + offsetof(struct cn_msg_circuit, chunk_id), sizeof(chunk));
	memcpy(&flags, (const char *)buf + offsetof(struct cn_msg_circuit, flags), sizeof(flags));
	if (flags & CN_CIRCUIT_VM) /* the VM's end has none; the host's, a device's bundle */
		return nfds == 0 || nfds == CN_POOL_NFDS_VM;
	if (chunk)
		return nfds == CN_POOL_NFDS;
	return nfds == CN_LOCAL_NFDS || nfds == CN_LOCAL_NFDS_SOCK;
}

int cn_msg_validate(const void *buf, size_t len, int nfds, const char **why)
{
	union cn_msg m;
	const struct cn_msg_hdr *h = buf;

	*why = NULL;
	if (len < sizeof(*h))
		FAIL("message shorter than its header");
	if (h->magic != CN_PROTO_MAGIC)
		FAIL("bad magic");
	if (h->version != CN_PROTO_VERSION) {
		*why = "unsupported protocol version";
		return -EPROTONOSUPPORT;
	}
	if (h->type >= N_TYPES || !msg_types[h->type].name)
		FAIL("unknown message type");
	if (h->len != len || len != msg_types[h->type].len)
		FAIL("wrong length for the message type");
	/* a listener's own channel: one fd, exactly when the flag says so */
	if (h->type == CN_MSG_LISTEN && len == sizeof(struct cn_msg_listen)) {
		const struct cn_msg_listen *l = buf;

		if (nfds != !!(l->flags & CN_LISTEN_CHANNEL))
			FAIL("listen: a channel fd without the flag, or the flag without it");
		nfds = 0; /* checked */
	}
	if (!fds_ok(buf, len, nfds))
		FAIL("wrong number of fds for the message type");
	if (len > sizeof(m))
		FAIL("message too long");
	memcpy(&m, buf, len);
	return check_body(&m, why);
}
