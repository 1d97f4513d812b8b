/* SPDX-License-Identifier: MIT */
/*
 * bench/opctl.h - a circnet-operator of a benchmark's own: config written
 * into the benchmark's temporary directory, started, waited for, stopped.
 * Benchmarks that go through the operator (setup, idle) share it.
 */
#ifndef CIRCNET_BENCH_OPCTL_H
#define CIRCNET_BENCH_OPCTL_H

#include <sys/types.h>

struct bench_op {
	char run[128]; /* its run directory: guests/NAME/operator.sock, control.sock */
	char log[160];
	pid_t pid;
};

/* circnet-operator next to our own binary in a build tree, else from PATH. */
const char *bench_find_operator(void);

/*
 * Write dir/NAME.conf (a run-dir line, then body), start bin with it (stderr
 * into dir/NAME.log) and wait until its control socket answers. Exits with a
 * message naming the log on failure.
 */
void bench_op_start(struct bench_op *o, const char *bin, const char *dir, const char *name,
		    const char *body);

/* SIGTERM and wait; a no-op on one not running. */
void bench_op_stop(struct bench_op *o);

/* Open files of a process (its /proc/PID/fd entries), or -1. */
int bench_count_fds(pid_t pid);

/* CPU time (user + system) a live process has used, in ns; -1 if unknown. */
long long bench_proc_cpu_ns(pid_t pid);

#endif
