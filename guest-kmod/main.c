// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * main.c - circnet.ko: loading and unloading, in dependency order. The
 * session state exists before any device can be probed; the PF_INET
 * family is taken last and given back first, so no socket of ours is
 * created without its devices, and unloading waits (the module count)
 * until the last circuit socket is closed.
 */
#include <linux/module.h>

#include "circnet.h"

/* shared/zerocopy.c's blocking calls: kernel code never blocks in shared/ */
int cn_wait_rx(struct cn_endpoint *ep, uint64_t want, int64_t *deadline)
{
	return -EAGAIN;
}

int cn_wait_tx(struct cn_endpoint *ep, uint64_t want, int64_t *deadline)
{
	return -EAGAIN;
}

static int __init circnet_init(void)
{
	int err = cn_ctl_init();

	if (err)
		return err;
	err = cnv_init();
	if (err)
		goto fail_ctl;
	err = cn_sock_init();
	if (err)
		goto fail_devices;
	return 0;
fail_devices:
	cnv_exit();
fail_ctl:
	cn_ctl_exit();
	return err;
}

static void __exit circnet_exit(void)
{
	cn_sock_exit();
	cnv_exit();
	cn_ctl_exit();
}

module_init(circnet_init);
module_exit(circnet_exit);

MODULE_DESCRIPTION("circnet: circuits over ivshmem in a VM, as AF_INET stream sockets");
MODULE_LICENSE("Dual MIT/GPL");
