// SPDX-License-Identifier: MIT
/*
 * dataplane/session.c - a loop's session with the operator, the same for
 * every backend: open the proxy attach point and listen there as the proxy
 * for one L4 (the operator then hands this session the off-host circuits
 * of that protocol and pushes the published ports).
 */
#include <circnet/opclient.h>

#include "dataplane.h"

int dp_session_attach(struct cn_op *op, const struct dp_config *cfg, unsigned int l4,
		      void (*on_publish)(void *arg, const struct cn_msg_publish *m), void *arg)
{
	struct cn_addr any = { 0 }, bound;
	uint64_t id;
	int err = cn_op_open(op, cfg->operator_path);

	if (err)
		return err;
	op->on_publish = on_publish; /* the set follows the LISTEN_OK */
	op->cb_arg = arg;
	err = cn_op_listen_flags(op, l4, &any, cfg->backlog, CN_LISTEN_PROXY, &bound, &id);
	if (err)
		cn_op_close(op);
	return err;
}
