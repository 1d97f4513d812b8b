// SPDX-License-Identifier: MIT
/*
 * bench/opts.c - the options every benchmark shares (bench.h): repetitions,
 * seconds per run, JSON and CSV output, the operator binary.
 */
#include <stdlib.h>

#include "bench.h"
#include "report.h"

int bench_common_opt(const struct bench_common *bc, int opt, const char *arg)
{
	switch (opt) {
	case 'r':
		if (!bc->reps)
			return 0;
		*bc->reps = atoi(arg);
		return *bc->reps >= 1 && *bc->reps <= REPORT_MAX_REPS ? 1 : -1;
	case 's':
		if (!bc->secs)
			return 0;
		*bc->secs = atof(arg);
		return *bc->secs > 0 && *bc->secs <= 60 ? 1 : -1;
	case 'j':
		if (!bc->json)
			return 0;
		*bc->json = arg;
		return 1;
	case 'c':
		if (!bc->csv)
			return 0;
		*bc->csv = arg;
		return 1;
	case 'o':
		if (!bc->operator_bin)
			return 0;
		*bc->operator_bin = arg;
		return 1;
	default:
		return 0;
	}
}
