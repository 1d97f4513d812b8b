/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/string.h: see compat/README */
#include <linux/string.h>
