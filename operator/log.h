/* SPDX-License-Identifier: MIT */
/*
 * operator/log.h - leveled logging to stderr. Under systemd (JOURNAL_STREAM
 * names our stderr) lines carry "<N>" priority prefixes for journald;
 * otherwise a timestamp and the level's name.
 */
#ifndef CIRCNET_OPERATOR_LOG_H
#define CIRCNET_OPERATOR_LOG_H

#include <syslog.h>

extern int log_level; /* LOG_ERR .. LOG_DEBUG; lines above it are dropped */

void log_init(const char *ident);
/* "error", "warning", "notice", "info", "debug" -> LOG_ERR .. LOG_DEBUG, or -1. */
int log_level_from_name(const char *name);
void logmsg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)	logmsg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)	logmsg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) logmsg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)	logmsg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                  \
	do {                                            \
		if (log_level >= LOG_DEBUG)             \
			logmsg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
