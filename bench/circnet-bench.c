// SPDX-License-Identifier: MIT
/*
 * bench/circnet-bench.c - entry point of the benchmark suite. Each
 * subcommand measures circnet against same-run baselines and reports in the
 * shared format of report.h.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *what;
} cmds[] = {
	{ "ring", bench_ring, "circuit goodput and latency vs TCP loopback, AF_UNIX, memcpy" },
	{ "setup", bench_setup, "connection setup through the operator vs TCP/AF_UNIX connect" },
	{ "proxy", bench_proxy, "a guest through the proxy stack vs TCP loopback, veth bridge" },
	{ "idle", bench_idle, "N concurrent idle connections: setup rate and memory per connection" },
};

int main(int argc, char **argv)
{
	size_t i;

	/* the client that proxy runs in a guest or a namespace: internal */
	if (argc >= 2 && !strcmp(argv[1], "proxy-client"))
		return bench_proxy(argc - 1, argv + 1);
	if (argc >= 2) {
		for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (!strcmp(argv[1], cmds[i].name))
				return cmds[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr,
		"usage: circnet-bench COMMAND [options]   (COMMAND --help for its options)\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(stderr, "  %-8s %s\n", cmds[i].name, cmds[i].what);
	return 2;
}
