/* SPDX-License-Identifier: MIT */
/*
 * bench/report.h - the one result format of every circnet benchmark: a list
 * of figures (median of repetitions, with min/max), each compared with the
 * baselines measured in the same run. Prints a table, writes CSV and JSON
 * (schema "circnet-bench/v1", documented in docs/benchmarks.md).
 */
#ifndef CIRCNET_BENCH_REPORT_H
#define CIRCNET_BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define REPORT_MAX_REPS 32

struct result {
	char group[32];	    /* what is measured: goodput, latency-p50, ... */
	char transport[32]; /* circuit-copy, tcp-loopback, ... */
	size_t size;	    /* message size in bytes (or ring size for sweeps) */
	char unit[16];
	bool higher_is_better;
	int reps;
	double samples[REPORT_MAX_REPS];
	double value, min, max; /* filled by report_add */
};

struct report {
	const char *benchmark;
	const char **baselines; /* transports to compare against, NULL-terminated */
	struct result *res;
	size_t n, cap;
	char config[512]; /* free-form "key=value ..." of the run */
};

void report_init(struct report *r, const char *benchmark, const char **baselines);
/* Adds a copy of res; computes median/min/max of its samples. */
void report_add(struct report *r, const struct result *res);
/* Ratio of res to the baseline transport of the same group and size; 0 if none. */
double report_ratio(const struct report *r, const struct result *res, const char *baseline);
void report_print_table(const struct report *r, FILE *out);
int report_write_csv(const struct report *r, const char *path);
int report_write_json(const struct report *r, const char *path);
void report_free(struct report *r);

#endif
