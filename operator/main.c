// SPDX-License-Identifier: MIT
/*
 * operator/main.c - circnet-operator: command line, the event loop, signals
 * (SIGHUP reloads, SIGTERM and SIGINT stop) and reload.
 *
 * The operator is a foreground daemon that logs to stderr. It never spins:
 * it sleeps in epoll_wait until a guest, circnetctl or a signal wants it.
 * Stopping it leaves every established circuit working: the circuits'
 * memory and wake-up objects live in the guests, not here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "operator.h"
#include "policy.h"

#define DEFAULT_CONFIG "/etc/circnet/circnet.conf"

static int forced_level = -1; /* --log-level beats the config's, also on reload */

static struct config *load_config(struct op *op, char *err, size_t errlen)
{
	struct config *c;

	c = op->cfg_path[0] ? config_load(op->cfg_path, err, errlen) : config_builtin(err, errlen);
	if (c && op->run_dir_forced)
		snprintf(c->run_dir, sizeof(c->run_dir), "%s", op->run_dir);
	return c;
}

int op_reload(struct op *op, bool reset_denied, char *err, size_t errlen)
{
	struct config *c, *old;
	unsigned int reset = 0;
	int rc;

	c = load_config(op, err, errlen);
	if (!c) {
		op->reload_failures++;
		snprintf(op->last_reload_error, sizeof(op->last_reload_error), "%s", err);
		log_err("reload rejected, the old policy stays in force: %s", err);
		return -1;
	}
	if (strcmp(c->run_dir, op->run_dir))
		log_warn("reload: run-dir changes take effect at restart only (still %s)",
			 op->run_dir);
	snprintf(c->run_dir, sizeof(c->run_dir), "%s", op->run_dir);
	old = op->cfg;
	op->cfg = c;
	rc = core_sync_guests(op);
	if (rc) {
		/* sockets of new guests failed: back to the old config */
		op->cfg = old;
		core_sync_guests(op);
		config_free(c);
		op->reload_failures++;
		snprintf(err, errlen, "reload rejected: cannot create guest sockets: %s",
			 strerror(-rc));
		snprintf(op->last_reload_error, sizeof(op->last_reload_error), "%s", err);
		log_err("%s", err);
		return -1;
	}
	config_free(old);
	log_level = forced_level >= 0 ? forced_level : c->log_level;
	if (reset_denied || c->on_reload == RELOAD_RESET)
		reset = core_reset_denied(op);
	core_push_publish(op); /* the proxy stack follows the published ports */
	op->reloads++;
	op->last_reload_error[0] = 0;
	snprintf(err, errlen, "reloaded %s: %d guests, %d rules, %u circuits reset", c->path,
		 c->nguests, c->nrules, reset);
	log_notice("%s", err);
	return 0;
}

static int signals_init(struct op *op, struct evsrc *ev)
{
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = ev };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	ev->kind = EV_SIGNAL;
	ev->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ev->fd < 0)
		return -errno;
	return epoll_ctl(op->epfd, EPOLL_CTL_ADD, ev->fd, &e) ? -errno : 0;
}

static void signal_event(struct op *op, struct evsrc *ev)
{
	struct signalfd_siginfo si;
	char err[600];

	while (read(ev->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_notice("SIGHUP: reloading %s",
				   op->cfg_path[0] ? op->cfg_path : "the built-in config");
			op_reload(op, false, err, sizeof(err));
		} else {
			log_notice("%s: shutting down", strsignal((int)si.ssi_signo));
			op->stop = true;
		}
	}
}

static void run(struct op *op)
{
	struct epoll_event evs[64];

	while (!op->stop) {
		int n = epoll_wait(op->epfd, evs, 64, core_timeout_ms(op)), i;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(errno));
			return;
		}
		core_new_round(op);
		for (i = 0; i < n && !op->stop; i++) {
			struct evsrc *ev = evs[i].data.ptr;

			switch (ev->kind) {
			case EV_GUEST_SOCK:
				core_guest_event(op, (struct guest *)ev);
				break;
			case EV_SESSION:
				core_session_event(op, (struct session *)ev, evs[i].events);
				/* the session may be gone: later events of this batch are for others */
				break;
			case EV_CTL_SOCK:
				ctl_event(op);
				/*
				 * A reload may have freed what later events of this
				 * batch point to (guests, sessions, VM devices and
				 * their bells): they are level-triggered, the next
				 * epoll_wait reports them again.
				 */
				i = n;
				break;
			case EV_SIGNAL:
				signal_event(op, ev);
				i = n; /* the same: SIGHUP reloads */
				break;
			case EV_LEASE:
				pool_lease_event(op, (struct lease *)ev);
				break;
			case EV_VM_SOCK:
				vm_sock_event(op, ev);
				break;
			case EV_VM_DEV:
				vm_dev_event(op, ev);
				break;
			case EV_VM_BELL:
				vm_bell_event(op, ev);
				break;
			}
		}
		core_end_round(op);
	}
}

/* Each session, listener and pooled circuit is an fd: take what we may. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: circnet-operator [--config FILE] [--run-dir DIR] [--log-level LEVEL]\n"
		"       circnet-operator --check [--config FILE]\n"
		"  --config FILE     config and policy (default %s if present, else built in)\n"
		"  --run-dir DIR     sockets go here (overrides the config's run-dir)\n"
		"  --log-level L     error, warning, notice, info or debug (overrides the config)\n"
		"  --restart-grace MS  for its first MS (default %d, 0: none), a connect to a\n"
		"                    guest port nobody listens on waits for the listener to\n"
		"                    register again instead of being refused\n"
		"  --check           validate the config and exit 0 (good) or 1\n"
		"Signals: SIGHUP reloads the config, SIGTERM/SIGINT stop. Status: circnetctl.\n",
		DEFAULT_CONFIG, OP_GRACE_MS_DEFAULT);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "check", no_argument, NULL, 'k' },
		{ "restart-grace", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct op op = { .epfd = -1, .ctl = { .fd = -1 }, .grace_ms = OP_GRACE_MS_DEFAULT };
	struct evsrc sig = { .fd = -1 };
	int opt, rc = 1;
	bool check = false;
	char err[600];

	log_init("circnet-operator");
	while ((opt = getopt_long(argc, argv, "c:r:l:g:kh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			snprintf(op.cfg_path, sizeof(op.cfg_path), "%s", optarg);
			break;
		case 'r':
			if (optarg[0] != '/' || strlen(optarg) > CFG_PATH_MAX - 64) {
				fprintf(stderr, "circnet-operator: --run-dir must be an absolute path "
						"of at most %d characters\n", CFG_PATH_MAX - 64);
				return 2;
			}
			snprintf(op.run_dir, sizeof(op.run_dir), "%s", optarg);
			op.run_dir_forced = true;
			break;
		case 'l':
			forced_level = log_level_from_name(optarg);
			if (forced_level < 0) {
				fprintf(stderr, "circnet-operator: --log-level: unknown level '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'k':
			check = true;
			break;
		case 'g': {
			char *end;
			long ms = strtol(optarg, &end, 10);

			if (*end || end == optarg || ms < 0 || ms > 600000) {
				fprintf(stderr, "circnet-operator: --restart-grace: '%s' is not a "
						"number of ms from 0 to 600000\n", optarg);
				return 2;
			}
			op.grace_ms = (int)ms;
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
	if (optind != argc) {
		fprintf(stderr, "circnet-operator: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!op.cfg_path[0] && !access(DEFAULT_CONFIG, F_OK))
		snprintf(op.cfg_path, sizeof(op.cfg_path), "%s", DEFAULT_CONFIG);
	op.cfg = load_config(&op, err, sizeof(err));
	if (!op.cfg) {
		fprintf(stderr, "circnet-operator: %s\n", err);
		return 1;
	}
	if (check) {
		printf("%s: ok (%d guests, %d rules)\n", op.cfg->path, op.cfg->nguests,
		       op.cfg->nrules);
		config_free(op.cfg);
		return 0;
	}
	log_level = forced_level >= 0 ? forced_level : op.cfg->log_level;
	raise_fd_limit();
	snprintf(op.run_dir, sizeof(op.run_dir), "%s", op.cfg->run_dir);
	op.started = time(NULL);
	umask(022);
	op.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (op.epfd < 0 || core_init(&op) || signals_init(&op, &sig)) {
		log_err("startup failed: %s", strerror(errno));
		goto out;
	}
	if (mkdir(op.run_dir, 0755) && errno != EEXIST) {
		log_err("cannot create run directory %s: %s", op.run_dir, strerror(errno));
		goto out;
	}
	if (ctl_init(&op) || core_sync_guests(&op))
		goto out;
	log_notice("started: config %s, %d guests, %d rules, run dir %s",
		   op.cfg_path[0] ? op.cfg_path : "<built-in>", op.cfg->nguests, op.cfg->nrules,
		   op.run_dir);
	run(&op);
	rc = 0;
out:
	core_fini(&op);
	ctl_fini(&op);
	if (sig.fd >= 0)
		close(sig.fd);
	if (op.epfd >= 0)
		close(op.epfd);
	config_free(op.cfg);
	if (!rc)
		log_notice("stopped: %llu circuits set up, %llu refused, %llu denied",
			   (unsigned long long)op.cnt.connects, (unsigned long long)op.cnt.refused,
			   (unsigned long long)op.cnt.denied);
	return rc;
}
