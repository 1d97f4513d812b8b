// SPDX-License-Identifier: MIT
/*
 * fuzz/fuzz_proto.c - the operator protocol's validator on arbitrary
 * packets. The first byte says how many fds "came with" the packet. A
 * message that passes must really be well-formed: a known type, its exact
 * length, the right fd count, known families and transports, and it must
 * keep passing if copied (the validator may not depend on anything else).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <circnet/proto.h>

/*
 * The fds a valid message came with: its type's count, except circuits:
 * a VM's (none to the VM, a device bundle to the host), a pooled one (a
 * chunk bundle) or one of its own (3 or 5).
 */
static bool fds_fit(const union cn_msg *m, int nfds)
{
	if (cn_msg_nfds(m->h.type) != CN_MSG_MAX_FDS)
		return cn_msg_nfds(m->h.type) == nfds;
	if (m->circuit.flags & CN_CIRCUIT_VM)
		return m->circuit.chunk_id && (nfds == 0 || nfds == CN_POOL_NFDS_VM);
	if (m->circuit.vm_vec)
		return false;
	if (m->circuit.chunk_id)
		return nfds == CN_POOL_NFDS;
	return nfds == 3 || nfds == 5;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addr(const struct cn_addr *a)
{
	if (a->family != CN_AF_NONE && a->family != CN_AF_INET && a->family != CN_AF_INET6)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	union cn_msg m;
	const char *why;
	uint8_t *copy;
	int nfds, err;

	if (size < 1)
		return 0;
	nfds = data[0] % 8;
	data++;
	size--;
	copy = malloc(size ? size : 1); /* exact size: ASan sees any overread */
	memcpy(copy, data, size);
	err = cn_msg_validate(copy, size, nfds, &why);
	if (err && !why)
		abort();
	if (!err) {
		if (size > sizeof(m) || !strcmp(cn_msg_name(((struct cn_msg_hdr *)copy)->type), "?"))
			abort();
		memcpy(&m, copy, size);
		/* a LISTEN carries its channel exactly when its flag says so */
		if (m.h.type == CN_MSG_LISTEN) {
			if (nfds != !!(m.listen.flags & CN_LISTEN_CHANNEL))
				abort();
		} else if (m.h.len != size || !fds_fit(&m, nfds)) {
			abort();
		}
		if (m.h.len != size)
			abort();
		switch (m.h.type) {
		case CN_MSG_CONNECT:
			check_addr(&m.connect.src);
			check_addr(&m.connect.dst);
			if (m.connect.l4 != CN_L4_TCP && m.connect.l4 != CN_L4_UDP)
				abort();
			break;
		case CN_MSG_LISTEN:
			check_addr(&m.listen.addr);
			break;
		case CN_MSG_CLAIM:
			check_addr(&m.circuit.local);
			check_addr(&m.circuit.remote);
			if (m.circuit.role > 1 || m.circuit.flags || m.circuit.listener_id || nfds != 1)
				abort();
			break;
		case CN_MSG_HELLO_OK:
			if (m.hello_ok.naddr > CN_GUEST_ADDRS ||
			    strnlen(m.hello_ok.name, CN_NAME_MAX) == CN_NAME_MAX)
				abort();
			break;
		default:
			break;
		}
		if (cn_msg_validate(&m, size, nfds, &why))
			abort();
	}
	free(copy);
	return 0;
}
