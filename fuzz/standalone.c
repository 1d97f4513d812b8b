// SPDX-License-Identifier: MIT
/*
 * fuzz/standalone.c - run a libFuzzer target without libFuzzer: replay
 * corpus files and directories, then a bounded number of random inputs.
 * This keeps every fuzz target exercised in ordinary (gcc, ASan) builds.
 *
 *   fuzz_circuit_standalone [-n RANDOM_INPUTS] [-s SEED] [FILE|DIR ...]
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long run_file(const char *path)
{
	static uint8_t buf[1 << 20];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		exit(2);
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 1;
}

static unsigned long run_path(const char *path)
{
	struct stat st;
	struct dirent *e;
	unsigned long n = 0;
	char sub[4096];
	DIR *d;

	if (stat(path, &st)) {
		perror(path);
		exit(2);
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	d = opendir(path);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		n += run_path(sub);
	}
	if (d)
		closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	unsigned long iters = 10000, files = 0, i;
	uint64_t seed = 0x243f6a8885a308d3ull;
	static uint8_t in[8192];
	int c;

	while ((c = getopt(argc, argv, "n:s:")) != -1) {
		if (c == 'n')
			iters = strtoul(optarg, NULL, 0);
		else if (c == 's')
			seed = strtoull(optarg, NULL, 0) | 1;
		else
			return 2;
	}
	for (; optind < argc; optind++)
		files += run_path(argv[optind]);
	for (i = 0; i < iters; i++) {
		size_t len = 1 + (size_t)(seed % sizeof(in)), j;

		for (j = 0; j < len; j++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			in[j] = (uint8_t)seed;
		}
		LLVMFuzzerTestOneInput(in, len);
	}
	printf("fuzz standalone: %lu corpus inputs, %lu random inputs, no invariant broken\n",
	       files, iters);
	return 0;
}
