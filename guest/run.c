// SPDX-License-Identifier: MIT
/*
 * guest/run.c - `circnet run --guest NAME -- COMMAND...`: run a program as a
 * guest of the circuit network.
 *
 * The child gets
 *  - its own network namespace with only a loopback device: circuits are its
 *    only way out, even for code that bypasses the preload with raw syscalls;
 *  - its own mount namespace, in which the operator's run directory is
 *    replaced by a tmpfs holding only this guest's operator socket,
 *    /etc/hosts maps every guest's name to its virtual addresses, and /sys
 *    shows its own network namespace;
 *  - LD_PRELOAD of libcircnet-preload.so and CIRCNET_OPERATOR_SOCKET;
 *  - no CAP_NET_RAW, CAP_NET_ADMIN or CAP_SYS_ADMIN (bounding set included), so
 *    it can neither open raw sockets nor undo the namespaces and mounts.
 * Signals SIGINT, SIGTERM, SIGHUP and SIGQUIT are passed on to the command,
 * and its exit status becomes ours (128 + N for a signal, as shells do).
 * Needs root (CAP_SYS_ADMIN) on the host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <circnet/opclient.h>

#include "dns.h"

#define GUEST_SOCKET_DIR "guest" /* under the run dir, inside the guest */

struct run_opts {
	const char *guest;
	const char *run_dir;
	const char *preload;
	bool dns;
	struct cn_addr dns_server; /* --dns: the upstream of the guest's DNS stub */
	char **argv;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "circnet run: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(125); /* like env(1) and chroot(1): the command never ran */
}

/* The hosts file: ask the operator (control socket) for the guests' addresses. */
static char *fetch_hosts(const char *run_dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	int fd;
	ssize_t n;

	if (!buf)
		die("out of memory");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", run_dir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("cannot reach the operator at %s: %s", sa.sun_path, strerror(errno));
	if (write(fd, "hosts\n", 6) != 6)
		die("asking the operator for the hosts: %s", strerror(errno));
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				die("out of memory");
		}
	}
	close(fd);
	buf[len] = 0;
	if (strncmp(buf, "ok\n", 3))
		die("the operator refused the hosts request: %s", buf);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t len = strlen(text);

	if (fd < 0 || write(fd, text, len) != (ssize_t)len)
		die("writing %s: %s", path, strerror(errno));
	close(fd);
}

static void loopback_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr))
		die("loopback: %s", strerror(errno));
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr))
		die("bringing loopback up: %s", strerror(errno));
	close(fd);
}

/*
 * Mounts, in the child's own mount namespace: the run dir becomes a tmpfs
 * with only this guest's socket directory in it; /etc/hosts is replaced.
 */
static void setup_mounts(const struct run_opts *o, const char *hosts, char *sock_path,
			 size_t sock_len)
{
	char guest_dir[PATH_MAX], target[PATH_MAX], src[64], tmp_hosts[] = "/tmp/.circnet-hostsXXXXXX";
	int dirfd, hfd;

	snprintf(guest_dir, sizeof(guest_dir), "%s/guests/%s", o->run_dir, o->guest);
	dirfd = open(guest_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		die("guest '%s': no operator socket directory %s (is the guest in the config?)",
		    o->guest, guest_dir);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		die("making mounts private: %s", strerror(errno));
	/* the hosts file: a private copy bound over /etc/hosts */
	hfd = mkstemp(tmp_hosts);
	if (hfd < 0)
		die("hosts file: %s", strerror(errno));
	close(hfd);
	write_file(tmp_hosts, hosts);
	if (mount(tmp_hosts, "/etc/hosts", NULL, MS_BIND, NULL))
		die("mounting /etc/hosts: %s", strerror(errno));
	unlink(tmp_hosts); /* the mount keeps the inode */
	/* sysfs shows the mounter's network namespace: show the guest its own */
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		die("mounting /sys for the guest's network namespace: %s", strerror(errno));
	if (mount("circnet", o->run_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755"))
		die("hiding %s: %s", o->run_dir, strerror(errno));
	snprintf(target, sizeof(target), "%s/%s", o->run_dir, GUEST_SOCKET_DIR);
	if (mkdir(target, 0755))
		die("creating %s: %s", target, strerror(errno));
	snprintf(src, sizeof(src), "/proc/self/fd/%d", dirfd);
	if (mount(src, target, NULL, MS_BIND, NULL))
		die("mounting the guest's socket directory: %s", strerror(errno));
	close(dirfd);
	if ((size_t)snprintf(sock_path, sock_len, "%.*s/operator.sock", PATH_MAX - 32, target) >=
	    sock_len)
		die("socket path too long");
}

/*
 * --dns: the guest's resolver asks a stub on 127.0.0.53 (dns.c), which
 * forwards over a circuit. resolv.conf is a private copy, like the hosts file.
 */
static void start_dns(const struct run_opts *o, const char *sock_path)
{
	char tmp[] = "/tmp/.circnet-resolvXXXXXX";
	int fd = dns_stub_listen(), tfd;
	pid_t pid;

	if (fd < 0)
		die("DNS stub on %s:53: %s", DNS_STUB_ADDR, strerror(-fd));
	tfd = mkstemp(tmp);
	if (tfd < 0)
		die("resolv.conf: %s", strerror(errno));
	close(tfd);
	write_file(tmp, "# circnet run --dns: the guest's DNS stub\nnameserver " DNS_STUB_ADDR
			"\noptions edns0\n");
	if (mount(tmp, "/etc/resolv.conf", NULL, MS_BIND, NULL))
		die("mounting /etc/resolv.conf: %s", strerror(errno));
	unlink(tmp);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0)
		dns_stub_run(fd, sock_path, &o->dns_server);
	close(fd);
}

static void drop_caps(void)
{
	static const int drop[] = { CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_ADMIN };
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	size_t i;

	for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (prctl(PR_CAPBSET_DROP, drop[i], 0, 0, 0) && errno != EINVAL)
			die("dropping capability %d: %s", drop[i], strerror(errno));
	if (syscall(SYS_capget, &h, d))
		die("capget: %s", strerror(errno));
	for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
		d[drop[i] / 32].effective &= ~(1u << (drop[i] % 32));
		d[drop[i] / 32].permitted &= ~(1u << (drop[i] % 32));
		d[drop[i] / 32].inheritable &= ~(1u << (drop[i] % 32));
	}
	if (syscall(SYS_capset, &h, d))
		die("capset: %s", strerror(errno));
}

/* Next to our binary in a build tree, else the installed library. */
static const char *find_preload(void)
{
	static char path[PATH_MAX];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = 0;
		snprintf(path, sizeof(path), "%s/libcircnet-preload.so", dirname(self));
		if (!access(path, R_OK))
			return path;
	}
	return "libcircnet-preload.so";
}

static void child(const struct run_opts *o, const char *hosts)
{
	char sock_path[PATH_MAX], preload[PATH_MAX + 64];
	const char *old = getenv("LD_PRELOAD");

	if (unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWUTS))
		die("unshare: %s (circnet run needs root)", strerror(errno));
	loopback_up();
	setup_mounts(o, hosts, sock_path, sizeof(sock_path));
	if (o->dns)
		start_dns(o, sock_path);
	if (sethostname(o->guest, strlen(o->guest)))
		die("sethostname: %s", strerror(errno));
	drop_caps();
	snprintf(preload, sizeof(preload), "%s%s%s", o->preload, old && *old ? ":" : "",
		 old ? old : "");
	setenv("LD_PRELOAD", preload, 1);
	setenv("CIRCNET_OPERATOR_SOCKET", sock_path, 1);
	setenv("CIRCNET_GUEST", o->guest, 1);
	execvp(o->argv[0], o->argv);
	fprintf(stderr, "circnet run: %s: %s\n", o->argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

static pid_t child_pid;

static void forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static int run(const struct run_opts *o)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa = { .sa_handler = forward };
	char *hosts = fetch_hosts(o->run_dir);
	char *text = malloc(strlen(hosts) + 128);
	int status;
	size_t i;

	if (!text)
		die("out of memory");
	snprintf(text, strlen(hosts) + 128, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost\n%s",
		 o->guest, hosts + 3);
	child_pid = fork();
	if (child_pid < 0)
		die("fork: %s", strerror(errno));
	if (child_pid == 0)
		child(o, text);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	while (waitpid(child_pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	/*
	 * The command is gone: nothing to pass signals to, and one arriving
	 * while this process exits must not run a handler. (Under ASan, a
	 * SIGTERM landing in LeakSanitizer's exit-time scan once left this
	 * process spinning on a core for good.)
	 */
	{
		sigset_t all;

		sigfillset(&all);
		sigprocmask(SIG_BLOCK, &all, NULL);
		child_pid = 0;
	}
	free(hosts);
	free(text);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: circnet run --guest NAME [--run-dir DIR] [--preload LIB] [--dns ADDR[:PORT]]\n"
		   "                  -- COMMAND [ARG...]\n"
		   "Runs COMMAND as guest NAME: own network namespace (loopback only), circuits via\n"
		   "the operator's socket for NAME, /etc/hosts with the guests' addresses.\n"
		   "--dns: the guest's resolver asks ADDR (port 53) through a stub on 127.0.0.53,\n"
		   "as the policy allows the guest to reach ADDR over udp.\n"
		   "The run directory defaults to $CIRCNET_RUN_DIR, then /run/circnet.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "guest", required_argument, NULL, 'g' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "preload", required_argument, NULL, 'p' },
		{ "dns", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct run_opts o = { 0 };
	int opt;

	if (argc < 2 || strcmp(argv[1], "run")) {
		usage(argc < 2 ? stderr : stderr);
		return 2;
	}
	argc--;
	argv++;
	o.run_dir = getenv("CIRCNET_RUN_DIR");
	if (!o.run_dir || !*o.run_dir)
		o.run_dir = "/run/circnet";
	o.preload = getenv("CIRCNET_PRELOAD");
	while ((opt = getopt_long(argc, argv, "+g:r:p:d:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'g':
			o.guest = optarg;
			break;
		case 'r':
			o.run_dir = optarg;
			break;
		case 'p':
			o.preload = optarg;
			break;
		case 'd': {
			char spec[80];

			/* a bare address means port 53 */
			if (strchr(optarg, '.') && !strchr(optarg, ':'))
				snprintf(spec, sizeof(spec), "%s:53", optarg);
			else if (optarg[0] != '[' && strchr(optarg, ':') &&
				 strchr(optarg, ':') != strrchr(optarg, ':'))
				snprintf(spec, sizeof(spec), "[%s]:53", optarg);
			else
				snprintf(spec, sizeof(spec), "%s", optarg);
			if (cn_addr_parse(&o.dns_server, spec)) {
				fprintf(stderr, "circnet run: --dns %s: not an address[:port]\n",
					optarg);
				return 2;
			}
			o.dns = true;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.guest || optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (strchr(o.guest, '/') || o.guest[0] == '.') {
		fprintf(stderr, "circnet run: bad guest name '%s'\n", o.guest);
		return 2;
	}
	if (!o.preload || !*o.preload)
		o.preload = find_preload();
	o.argv = argv + optind;
	return run(&o);
}
