/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/errno.h: see compat/README */
#include <linux/errno.h>
