/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/sys/types.h: see compat/README */
#include <linux/types.h>
