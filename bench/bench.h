/* SPDX-License-Identifier: MIT */
/* bench/bench.h - the subcommands of circnet-bench. */
#ifndef CIRCNET_BENCH_H
#define CIRCNET_BENCH_H

int bench_ring(int argc, char **argv);
int bench_setup(int argc, char **argv);
int bench_proxy(int argc, char **argv);
int bench_idle(int argc, char **argv);

/*
 * The options every benchmark shares, as getopt_long values: 'r' --reps N
 * (1..REPORT_MAX_REPS), 's' --secs S (0..60], 'j' --json FILE, 'c' --csv
 * FILE, 'o' --operator PATH. Fields left NULL are options the benchmark
 * does not take.
 */
struct bench_common {
	int *reps;
	double *secs;
	const char **json, **csv, **operator_bin;
};

/* opt taken into bc: 1; not a common option (of this benchmark): 0; a bad value: -1. */
int bench_common_opt(const struct bench_common *bc, int opt, const char *arg);

#endif
