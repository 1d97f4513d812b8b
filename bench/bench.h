/* SPDX-License-Identifier: MIT */
/* bench/bench.h - the subcommands of circnet-bench. */
#ifndef CIRCNET_BENCH_H
#define CIRCNET_BENCH_H

int bench_ring(int argc, char **argv);
int bench_setup(int argc, char **argv);
int bench_proxy(int argc, char **argv);
int bench_idle(int argc, char **argv);

#endif
