/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/stdbool.h: see compat/README */
#include <linux/types.h>
