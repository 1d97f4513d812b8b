/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/stddef.h: see compat/README */
#include <linux/stddef.h>
#include <linux/types.h>
