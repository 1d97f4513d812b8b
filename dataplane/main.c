// SPDX-License-Identifier: MIT
/*
 * dataplane/main.c - circnet-dataplane, the host proxy stack: guests reach
 * off-host services through it when the operator's policy routes them
 * there (`proxy` rules). The operator decides; this process only carries
 * bytes. It owns the command line, signals (SIGTERM/SIGINT stop and reset
 * every connection towards its guest, SIGHUP has nothing to reload: policy
 * lives in the operator), the event-loop threads, and the status socket
 * (run-dir/proxy/dataplane.sock) behind `circnetctl proxy`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../operator/config.h"
#include "../operator/log.h"
#include "dataplane.h"

#define DP_MAX_THREADS 64

atomic_bool dp_stop;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: circnet-dataplane [--backend kernel] [--run-dir DIR | --config FILE] "
		"[--threads N]\n"
		"                         [--connect-timeout SECS] [--backlog N] [--udp-idle "
		"SECS]\n"
		"                         [--log-level LEVEL]\n"
		"       circnet-dataplane --backend dpdk EAL-ARGS -- --ip ADDR/LEN [--gw ADDR] "
		"[--port N]\n"
		"                         [--mtu N] [--idle-sleep USECS] [the options above]\n"
		"  --backend kernel       Linux sockets (the default)\n"
		"  --backends             list the backends built into this binary\n"
		"  --backend dpdk         DPDK drives a NIC, lwIP terminates TCP (first, then\n"
		"                         DPDK's EAL arguments: -l CORES, -a PCI, --vdev, ...)\n"
		"  --ip ADDR/LEN          dpdk: the stack's IPv4 address on the port\n"
		"  --gw ADDR              dpdk: the next hop off the subnet (default: none)\n"
		"  --ip6 ADDR/64          dpdk: an IPv6 address too (routers from their adverts)\n"
		"  --gw6 ADDR             dpdk: the IPv6 next hop off the /64 (default: "
		"advertised)\n"
		"  --port N               dpdk: the DPDK port id (default 0)\n"
		"  --mtu N                dpdk: the port's MTU (default: the port's)\n"
		"  --idle-sleep USECS     dpdk: nap this long when idle (default 0: busy-poll)\n"
		"  --tcp-tick MSECS       dpdk: the TCP timer's tick (default 20; fixed in our "
		"lwIP build)\n"
		"  --fault-drop PPM       dpdk, for tests: lose PPM frames per million each way\n"
		"  --no-tso               dpdk: send each segment as lwIP cut it, even where the\n"
		"                         port has TSO (default: consecutive ones in one frame)\n"
		"  --run-dir DIR          the operator's run directory (default $CIRCNET_RUN_DIR,\n"
		"                         then /run/circnet); attaches at DIR/proxy/operator.sock\n"
		"  --config FILE          take the run directory from the operator's config file\n"
		"  --threads N            event loops, one per core to use (default 1)\n"
		"  --connect-timeout SECS give up connects after SECS with ETIMEDOUT\n"
		"                         (default 0: the kernel's SYN retries decide)\n"
		"  --user-timeout SECS    end a connection whose sent data stays unacknowledged\n"
		"                         SECS (the guest reads ETIMEDOUT; TCP_USER_TIMEOUT;\n"
		"                         default 0: the stack's retransmissions decide)\n"
		"  --backlog N            connections the operator may queue per loop (4096)\n"
		"  --udp-idle SECS        forget a published UDP port's client after SECS idle "
		"(120)\n"
		"  --log-level LEVEL      error, warning, notice, info (default), debug\n");
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "circnet-dataplane: %s: '%s' is not a number from %ld to %ld\n",
			opt, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* "a.b.c.d[/len]" into address and mask (network order); 0 or -EINVAL. */
static int parse_prefix(const char *s, uint32_t *ip, uint32_t *mask)
{
	char addr[INET_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long len = 32;
	char *end;
	struct in_addr a;

	if (!alen || alen >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, alen);
	addr[alen] = 0;
	if (inet_pton(AF_INET, addr, &a) != 1)
		return -EINVAL;
	if (slash) {
		errno = 0;
		len = strtoul(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || len < 1 || len > 32)
			return -EINVAL;
	}
	*ip = a.s_addr;
	*mask = htonl(len == 32 ? 0xffffffffu : ~(0xffffffffu >> len));
	return 0;
}

/* ---- the status socket ---- */

/* "ADDR/64" into its 16 bytes (the only length lwIP takes as on-link); 0 or -EINVAL. */
static int parse_prefix6(const char *s, uint8_t out[16])
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : 0;

	if (!slash || strcmp(slash, "/64") || !alen || alen >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, alen);
	addr[alen] = 0;
	return inet_pton(AF_INET6, addr, out) == 1 ? 0 : -EINVAL;
}

static size_t loop_conns(const struct dp_config *cfg, struct dp_loop *l, char *buf, size_t len)
{
#ifdef CIRCNET_HAVE_DPDK
	if (cfg->dpdk)
		return dpdk_conns(l, buf, len);
#else
	(void)cfg;
#endif
	return kernel_loop_conns(l, buf, len);
}

static size_t status_text(const struct dp_config *cfg, struct dp_loop *loops, int n, bool json,
			  bool conns, char *buf, size_t len)
{
	const char *backend = cfg->dpdk ? "dpdk" : "kernel";
	uint64_t t[9] = { 0 };
	size_t used;
	int i;

	for (i = 0; i < n; i++) {
		struct dp_counters *c = &loops[i].cnt;

		t[0] += atomic_load(&c->accepted);
		t[1] += atomic_load(&c->connected);
		t[2] += atomic_load(&c->failed);
		t[3] += atomic_load(&c->closed);
		t[4] += atomic_load(&c->resets);
		t[5] += atomic_load(&c->active);
		t[6] += atomic_load(&c->to_guest);
		t[7] += atomic_load(&c->to_host);
		t[8] += atomic_load(&c->operator_sessions);
	}
	if (json)
		used = (size_t)snprintf(
			buf, len,
			"{\"backend\":\"%s\",\"loops\":%d,\"accepted\":%llu,\"connected\":%llu,"
			"\"failed\":%llu,\"closed\":%llu,\"resets\":%llu,\"active\":%llu,"
			"\"bytes_to_guests\":%llu,\"bytes_to_hosts\":%llu,\"operator_sessions\":%"
			"llu",
			backend, n, (unsigned long long)t[0], (unsigned long long)t[1],
			(unsigned long long)t[2], (unsigned long long)t[3],
			(unsigned long long)t[4], (unsigned long long)t[5],
			(unsigned long long)t[6], (unsigned long long)t[7],
			(unsigned long long)t[8]);
	else
		used = (size_t)snprintf(
			buf, len,
			"backend            %s\n"
			"loops              %d\n"
			"connections        %llu active, %llu accepted, %llu connected, %llu "
			"failed\n"
			"closed             %llu (%llu by a reset)\n"
			"bytes              %llu to guests, %llu to hosts (closed connections)\n"
			"operator sessions  %llu\n",
			backend, n, (unsigned long long)t[5], (unsigned long long)t[0],
			(unsigned long long)t[1], (unsigned long long)t[2],
			(unsigned long long)t[3], (unsigned long long)t[4],
			(unsigned long long)t[6], (unsigned long long)t[7],
			(unsigned long long)t[8]);
	if (used >= len)
		return len - 1;
#ifdef CIRCNET_HAVE_DPDK
	if (cfg->dpdk)
		used += dpdk_status(json, buf + used, len - used);
#endif
	if (json)
		used += (size_t)snprintf(buf + used, len - used, "}\n");
	if (used >= len)
		return len - 1;
	if (conns) {
		used += (size_t)snprintf(buf + used, len - used,
					 "LOOP CIRCUIT GUEST REMOTE STATE TO-GUEST TO-HOST\n");
		for (i = 0; i < n && used + 1 < len; i++)
			used += loop_conns(cfg, &loops[i], buf + used, len - used);
	}
	return used < len ? used : len - 1;
}

static int status_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16)) {
		int err = -errno;

		close(fd);
		return err;
	}
	chmod(path, 0600);
	return fd;
}

static void status_serve(int lfd, const struct dp_config *cfg, struct dp_loop *loops, int n)
{
	static char out[1 << 20];
	char cmd[64] = { 0 };
	struct pollfd p;
	size_t len, off = 0;
	ssize_t r;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 1000) == 1 && (r = read(fd, cmd, sizeof(cmd) - 1)) > 0) {
		cmd[r] = 0;
		memcpy(out, "ok\n", 3); /* circnetctl's framing: a verdict line first */
		len = 3 + status_text(cfg, loops, n, strstr(cmd, "json") != NULL,
				      strstr(cmd, "conns") != NULL, out + 3, sizeof(out) - 3);
		while (off < len && (r = write(fd, out + off, len - off)) > 0)
			off += (size_t)r;
	}
	close(fd);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "config", required_argument, NULL, 'C' },
		{ "threads", required_argument, NULL, 't' },
		{ "connect-timeout", required_argument, NULL, 'c' },
		{ "user-timeout", required_argument, NULL, 'U' },
		{ "backlog", required_argument, NULL, 'B' },
		{ "udp-idle", required_argument, NULL, 'u' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "ip", required_argument, NULL, 'I' },
		{ "gw", required_argument, NULL, 'G' },
		{ "ip6", required_argument, NULL, '6' },
		{ "gw6", required_argument, NULL, 'g' },
		{ "port", required_argument, NULL, 'P' },
		{ "mtu", required_argument, NULL, 'M' },
		{ "idle-sleep", required_argument, NULL, 'S' },
		{ "fault-drop", required_argument, NULL, 'F' },
		{ "tcp-tick", required_argument, NULL, 'T' },
		{ "no-tso", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct dp_loop loops[DP_MAX_THREADS];
	struct dp_config cfg = {
		.threads = 1, .backlog = 4096, .udp_idle_ms = 120000, .tcp_tick_ms = 20
	};
	const char *run_dir = getenv("CIRCNET_RUN_DIR");
	char status_path[300];
	struct signalfd_siginfo si;
	struct pollfd pf[2];
	sigset_t mask;
	long v;
	int c, i, sfd, lfd;

	if (!run_dir || !*run_dir)
		run_dir = "/run/circnet";
	/* before any thread (EAL starts some): they all inherit it, signalfd takes them */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	{
		/*
		 * SIGIO (the tap PMD signals each frame with it) goes to the
		 * polling thread only, which unblocks it: it is awake anyway. In
		 * a sleeping thread each one was a wake-up and an EINTR.
		 */
		sigset_t io;

		sigemptyset(&io);
		sigaddset(&io, SIGIO);
		pthread_sigmask(SIG_BLOCK, &io, NULL);
	}
	if (argc == 2 && !strcmp(argv[1], "--backends")) {
#ifdef CIRCNET_HAVE_DPDK
		puts("kernel dpdk");
#else
		puts("kernel");
#endif
		return 0;
	}
	if (argc > 1 && (!strcmp(argv[1], "--backend=dpdk") ||
			 (argc > 2 && !strcmp(argv[1], "--backend") && !strcmp(argv[2], "dpdk")))) {
#ifdef CIRCNET_HAVE_DPDK
		/* EAL's arguments come first, up to "--"; ours follow */
		int skip = argv[1][9] == '=' ? 1 : 2, took;

		argv[skip] = argv[0];
		took = dpdk_eal_init(argc - skip, argv + skip);
		if (took < 0)
			return 1;
		argc -= skip + took;
		argv += skip + took;
		cfg.dpdk = true;
		optind = 1;
#else
		fprintf(stderr, "circnet-dataplane: --backend dpdk: not built into this binary "
				"(meson found no libdpdk or lwip)\n");
		return 2;
#endif
	}
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (strcmp(optarg, "kernel")) {
				fprintf(stderr, "circnet-dataplane: --backend %s: %s\n", optarg,
					!strcmp(optarg, "dpdk") ? "must come first: --backend dpdk "
								  "EAL-ARGS -- OPTIONS"
								: "unknown backend (kernel, dpdk)");
				return 2;
			}
			break;
		case 'I':
		case 'G': {
			uint32_t ip, netmask;

			if (parse_prefix(optarg, &ip, &netmask) ||
			    (c == 'G' && strchr(optarg, '/'))) {
				fprintf(stderr, "circnet-dataplane: %s %s: not an IPv4 address%s\n",
					c == 'I' ? "--ip" : "--gw", optarg,
					c == 'I' ? " (ADDR/LEN)" : "");
				return 2;
			}
			if (c == 'I') {
				cfg.dpdk_ip = ip;
				cfg.dpdk_mask = netmask;
			} else {
				cfg.dpdk_gw = ip;
			}
			break;
		}
		case '6':
			if (parse_prefix6(optarg, cfg.dpdk_ip6)) {
				fprintf(stderr,
					"circnet-dataplane: --ip6 %s: not an IPv6 ADDR/64\n",
					optarg);
				return 2;
			}
			cfg.dpdk_has_ip6 = true;
			break;
		case 'g':
			if (inet_pton(AF_INET6, optarg, cfg.dpdk_gw6) != 1) {
				fprintf(stderr,
					"circnet-dataplane: --gw6 %s: not an IPv6 address\n",
					optarg);
				return 2;
			}
			cfg.dpdk_has_gw6 = true;
			break;
		case 'P':
			if (parse_int("--port", optarg, 0, 1023, &v))
				return 2;
			cfg.dpdk_port = (uint16_t)v;
			break;
		case 'M':
			if (parse_int("--mtu", optarg, 576, 9600, &v))
				return 2;
			cfg.dpdk_mtu = (uint16_t)v;
			break;
		case 'S':
			if (parse_int("--idle-sleep", optarg, 0, 100000, &v))
				return 2;
			cfg.idle_sleep_us = (int)v;
			break;
		case 'T':
			if (parse_int("--tcp-tick", optarg, 2, 500, &v))
				return 2;
			cfg.tcp_tick_ms = (int)v;
			break;
		case 'F':
			if (parse_int("--fault-drop", optarg, 0, 500000, &v))
				return 2;
			cfg.fault_drop_ppm = (uint32_t)v;
			break;
		case 'N':
			cfg.dpdk_no_tso = true;
			break;
		case 'r':
			run_dir = optarg;
			break;
		case 'C': {
			/* the operator's file: its run-dir is where we attach */
			static char dir[CFG_PATH_MAX];
			char err[600];
			struct config *oc = config_load(optarg, err, sizeof(err));

			if (!oc) {
				fprintf(stderr, "circnet-dataplane: %s\n", err);
				return 2;
			}
			snprintf(dir, sizeof(dir), "%s", oc->run_dir);
			config_free(oc);
			run_dir = dir;
			break;
		}
		case 't':
			if (parse_int("--threads", optarg, 1, DP_MAX_THREADS, &v))
				return 2;
			cfg.threads = (int)v;
			break;
		case 'c':
			if (parse_int("--connect-timeout", optarg, 0, 3600, &v))
				return 2;
			cfg.connect_timeout_ms = (int)v * 1000;
			break;
		case 'U':
			if (parse_int("--user-timeout", optarg, 0, 3600, &v))
				return 2;
			cfg.user_timeout_ms = (int)v * 1000;
			break;
		case 'B':
			if (parse_int("--backlog", optarg, 1, 65536, &v))
				return 2;
			cfg.backlog = (uint32_t)v;
			break;
		case 'u':
			if (parse_int("--udp-idle", optarg, 1, 86400, &v))
				return 2;
			cfg.udp_idle_ms = (int)v * 1000;
			break;
		case 'l':
			log_level = log_level_from_name(optarg);
			if (log_level < 0) {
				fprintf(stderr,
					"circnet-dataplane: --log-level %s: unknown level\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "circnet-dataplane: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (cfg.dpdk && !cfg.dpdk_ip) {
		fprintf(stderr,
			"circnet-dataplane: --backend dpdk needs --ip ADDR/LEN (after --)\n");
		return 2;
	}
	if (!cfg.dpdk &&
	    (cfg.dpdk_ip || cfg.dpdk_gw || cfg.idle_sleep_us || cfg.dpdk_mtu ||
	     cfg.fault_drop_ppm || cfg.dpdk_has_ip6 || cfg.dpdk_has_gw6 || cfg.dpdk_no_tso)) {
		fprintf(stderr, "circnet-dataplane: --ip, --ip6, --gw, --gw6, --mtu, --idle-sleep, "
				"--fault-drop and --no-tso are the dpdk backend's\n");
		return 2;
	}
	if (cfg.dpdk && cfg.threads != 1) {
		fprintf(stderr, "circnet-dataplane: --threads: the dpdk backend polls with a stack "
				"per worker lcore: give EAL's -l the cores\n");
		return 2;
	}
	if ((size_t)snprintf(cfg.operator_path, sizeof(cfg.operator_path), "%s/proxy/operator.sock",
			     run_dir) >= sizeof(cfg.operator_path)) {
		fprintf(stderr, "circnet-dataplane: --run-dir %s: path too long\n", run_dir);
		return 2;
	}
	log_init("circnet-dataplane");
	{
		/* a socket and a circuit's fds per connection: take what we may */
		struct rlimit rl;

		if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}

	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	snprintf(status_path, sizeof(status_path), "%s/proxy", run_dir);
	if (mkdir(run_dir, 0755) && errno != EEXIST)
		log_warn("cannot create %s: %s", run_dir, strerror(errno));
	if (mkdir(status_path, 0755) && errno != EEXIST)
		log_warn("cannot create %s: %s", status_path, strerror(errno));
	snprintf(status_path, sizeof(status_path), "%s/proxy/dataplane.sock", run_dir);
	lfd = status_socket(status_path);
	if (sfd < 0 || lfd < 0) {
		log_err("cannot set up %s: %s", sfd < 0 ? "signals" : status_path,
			strerror(sfd < 0 ? errno : -lfd));
		return 1;
	}
#ifdef CIRCNET_HAVE_DPDK
	if (cfg.dpdk) {
		/* a stack and its loop per worker lcore, each on a queue of its own */
		cfg.threads = (int)dpdk_stacks();
		for (i = 0; i < cfg.threads; i++) {
			loops[i].index = i;
			loops[i].cfg = &cfg;
		}
		if (dpdk_start(&cfg, loops, (unsigned int)cfg.threads)) {
			atomic_store(&dp_stop, true);
			dpdk_stop();
			close(lfd);
			unlink(status_path);
			return 1;
		}
	}
#endif
	for (i = 0; i < cfg.threads && !cfg.dpdk; i++) {
		loops[i].index = i;
		loops[i].cfg = &cfg;
		if (pthread_create(&loops[i].thread, NULL, kernel_loop_main, &loops[i])) {
			log_err("cannot start loop %d", i);
			atomic_store(&dp_stop, true);
			cfg.threads = i;
			break;
		}
	}
	log_info("proxy stack up: %s backend, %d loop(s), operator at %s, status at %s",
		 cfg.dpdk ? "dpdk" : "kernel", cfg.threads, cfg.operator_path, status_path);
	pf[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	while (!atomic_load(&dp_stop)) {
		if (poll(pf, 2, 500) <= 0)
			continue;
		if ((pf[0].revents & POLLIN) && read(sfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGHUP)
				log_info(
					"SIGHUP: nothing to reload (the policy is the operator's)");
			else if (si.ssi_signo != SIGPIPE)
				atomic_store(&dp_stop, true);
		}
		if (pf[1].revents & POLLIN)
			status_serve(lfd, &cfg, loops, cfg.threads);
	}
	log_info("stopping: resetting open connections");
#ifdef CIRCNET_HAVE_DPDK
	if (cfg.dpdk)
		dpdk_stop();
	else
#endif
		for (i = 0; i < cfg.threads; i++)
			pthread_join(loops[i].thread, NULL);
	close(lfd);
	unlink(status_path);
	log_info("stopped");
	return 0;
}
