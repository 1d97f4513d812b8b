// SPDX-License-Identifier: MIT
/*
 * operator/circnetctl.c - the operator's status and control tool. Views come
 * from the running operator's control socket (ctl.c); check-config runs the
 * operator's own parser on a file without any operator.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: circnetctl [--run-dir DIR] COMMAND\n"
		"  status | guests | listeners | circuits | policy [--json]\n"
		"  hosts                 guest addresses and names, in /etc/hosts format\n"
		"  reload [--reset]      reload the config; --reset also resets circuits the new\n"
		"                        policy no longer allows\n"
		"  check-config FILE     validate a config file: exit 0 if good, 1 if not\n"
		"The run directory defaults to $CIRCNET_RUN_DIR, then /run/circnet.\n");
}

static int check_config(const char *path)
{
	char err[600];
	struct config *c = config_load(path, err, sizeof(err));

	if (!c) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("%s: ok (%d guests, %d groups, %d rules)\n", path, c->nguests, c->ngroups,
	       c->nrules);
	config_free(c);
	return 0;
}

/* Send one request line to the daemon at run_dir/sock, print the answer's body; 0 if "ok". */
static int request_to(const char *run_dir, const char *sock, const char *who, const char *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[65536];
	size_t got = 0;
	int fd, ok = -1;
	ssize_t n;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", run_dir, sock) >=
	    sizeof(sa.sun_path)) {
		fprintf(stderr, "circnetctl: run directory path too long\n");
		return 1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "circnetctl: cannot reach the %s at %s: %s\n", who, sa.sun_path,
			strerror(errno));
		return 1;
	}
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		fprintf(stderr, "circnetctl: sending the request: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	/* the first line is the verdict; the rest is streamed to stdout */
	while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
		char *nl;

		got += (size_t)n;
		buf[got] = 0;
		if (ok < 0 && (nl = strchr(buf, '\n'))) {
			ok = !strncmp(buf, "ok\n", 3);
			if (!ok)
				fprintf(stderr, "circnetctl: %.*s\n", (int)(nl - buf), buf);
			got -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, got);
		}
		if (ok >= 0) {
			fwrite(buf, 1, got, stdout);
			got = 0;
		}
	}
	close(fd);
	if (ok < 0) {
		fprintf(stderr, "circnetctl: the %s closed without an answer\n", who);
		return 1;
	}
	return ok ? 0 : 1;
}

static int request(const char *run_dir, const char *req)
{
	return request_to(run_dir, "control.sock", "operator", req);
}

int main(int argc, char **argv)
{
	static const char *const views[] = { "status", "guests", "listeners", "circuits",
					     "policy", "hosts" };
	const char *run_dir = getenv("CIRCNET_RUN_DIR");
	char req[64];
	size_t i;
	int a = 1;

	if (!run_dir || !*run_dir)
		run_dir = "/run/circnet";
	if (a + 1 < argc && !strcmp(argv[a], "--run-dir")) {
		run_dir = argv[a + 1];
		a += 2;
	}
	if (a >= argc) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[a], "check-config")) {
		if (argc != a + 2) {
			fprintf(stderr, "circnetctl: check-config takes one FILE\n");
			return 2;
		}
		return check_config(argv[a + 1]);
	}
	for (i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
		if (strcmp(argv[a], views[i]))
			continue;
		if (argc > a + 2 || (argc == a + 2 && strcmp(argv[a + 1], "--json"))) {
			fprintf(stderr, "circnetctl: %s takes only --json\n", views[i]);
			return 2;
		}
		snprintf(req, sizeof(req), "%s%s\n", views[i], argc == a + 2 ? " json" : "");
		return request(run_dir, req);
	}
	if (!strcmp(argv[a], "proxy")) {
		if (argc > a + 2 || (argc == a + 2 && strcmp(argv[a + 1], "--json") &&
				     strcmp(argv[a + 1], "--conns"))) {
			fprintf(stderr, "circnetctl: proxy takes only --json or --conns\n");
			return 2;
		}
		snprintf(req, sizeof(req), "status%s\n",
			 argc == a + 2 ? (argv[a + 1][2] == 'j' ? " json" : " conns") : "");
		return request_to(run_dir, "proxy/dataplane.sock", "proxy stack", req);
	}
	if (!strcmp(argv[a], "reload")) {
		if (argc > a + 2 || (argc == a + 2 && strcmp(argv[a + 1], "--reset"))) {
			fprintf(stderr, "circnetctl: reload takes only --reset\n");
			return 2;
		}
		return request(run_dir, argc == a + 2 ? "reload reset\n" : "reload\n");
	}
	fprintf(stderr, "circnetctl: unknown command '%s'\n", argv[a]);
	usage(stderr);
	return 2;
}
