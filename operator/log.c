// SPDX-License-Identifier: MIT
/*
 * operator/log.c - see log.h. One write per line, so lines from several
 * processes sharing a stderr never interleave mid-line.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int log_level = LOG_INFO;
static const char *log_ident = "circnet";
static bool log_journal;

void log_init(const char *ident)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long dev, ino;
	struct stat st;

	log_ident = ident;
	if (js && sscanf(js, "%lu:%lu", &dev, &ino) == 2 && !fstat(STDERR_FILENO, &st))
		log_journal = st.st_dev == dev && st.st_ino == ino;
}

void logmsg(int level, const char *fmt, ...)
{
	static const char *const names[] = { "emerg", "alert", "crit", "error",
					     "warning", "notice", "info", "debug" };
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level > log_level)
		return;
	if (log_journal) {
		n = snprintf(line, sizeof(line), "<%d>", level);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, log_ident, (int)getpid(),
			     names[level & 7]);
	}
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

int log_level_from_name(const char *name)
{
	static const char *const names[] = { "error", "warning", "notice", "info", "debug" };
	int i;

	for (i = 0; i < 5; i++)
		if (!strcmp(name, names[i]))
			return LOG_ERR + i;
	return -1;
}
