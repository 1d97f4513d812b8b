// SPDX-License-Identifier: MIT
/*
 * bench/opctl.c - start and stop a benchmark's own circnet-operator
 * (opctl.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "opctl.h"

const char *bench_find_operator(void)
{
	static char path[PATH_MAX];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = 0;
		snprintf(path, sizeof(path), "%s/../operator/circnet-operator", dirname(self));
		if (!access(path, X_OK))
			return path;
	}
	return "circnet-operator";
}

static bool reachable(const char *run)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", run);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

void bench_op_start(struct bench_op *o, const char *bin, const char *dir, const char *name,
		    const char *body)
{
	char cfg[160];
	FILE *f;
	int i;

	snprintf(o->run, sizeof(o->run), "%s/run-%s", dir, name);
	snprintf(cfg, sizeof(cfg), "%s/%s.conf", dir, name);
	snprintf(o->log, sizeof(o->log), "%s/%s.log", dir, name);
	f = fopen(cfg, "w");
	if (!f || fprintf(f, "run-dir %s\n%s", o->run, body) < 0 || fclose(f)) {
		fprintf(stderr, "circnet-bench: %s: %s\n", cfg, strerror(errno));
		exit(1);
	}
	o->pid = fork();
	if (o->pid < 0) {
		fprintf(stderr, "circnet-bench: fork: %s\n", strerror(errno));
		exit(1);
	}
	if (o->pid == 0) {
		int fd = open(o->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd >= 0)
			dup2(fd, 2);
		execlp(bin, bin, "--config", cfg, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	for (i = 0; i < 500 && !reachable(o->run); i++)
		usleep(10000);
	if (!reachable(o->run)) {
		fprintf(stderr, "circnet-bench: the operator (%s) did not start; log: %s\n", bin,
			o->log);
		exit(1);
	}
}

void bench_op_stop(struct bench_op *o)
{
	if (o->pid <= 0)
		return;
	kill(o->pid, SIGTERM);
	waitpid(o->pid, NULL, 0);
	o->pid = 0;
}

int bench_count_fds(pid_t pid)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

long long bench_proc_cpu_ns(pid_t pid)
{
	unsigned long long ut, st;
	char path[64], buf[1024], *p;
	long hz = sysconf(_SC_CLK_TCK);
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || hz <= 0)
		return -1;
	buf[n] = 0;
	/* after the command's closing parenthesis: state, then fields 4.. ; utime is 14th */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			 &st) != 2)
		return -1;
	return (long long)((ut + st) * (1000000000ull / (unsigned long long)hz));
}
