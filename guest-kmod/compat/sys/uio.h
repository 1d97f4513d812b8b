/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/sys/uio.h: see compat/README */
#include <linux/uio.h>
