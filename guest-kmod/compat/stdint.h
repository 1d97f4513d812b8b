/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* compat/stdint.h: see compat/README */
#ifndef CIRCNET_COMPAT_STDINT_H
#define CIRCNET_COMPAT_STDINT_H
#include <linux/limits.h>
#include <linux/types.h>

#define UINT16_MAX U16_MAX
#define UINT32_MAX U32_MAX
#define UINT64_MAX U64_MAX
#define INT32_MAX  S32_MAX
#define INT64_MAX  S64_MAX
#define INT64_MIN  S64_MIN
#endif
