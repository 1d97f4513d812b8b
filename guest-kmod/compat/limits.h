/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/limits.h: see compat/README */
#include <linux/limits.h>
