/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/sys/socket.h: see compat/README (SHUT_RD, SHUT_WR, SHUT_RDWR) */
#include <linux/net.h>
