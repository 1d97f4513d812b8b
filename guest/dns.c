// SPDX-License-Identifier: MIT
/*
 * guest/dns.c - the guest's DNS stub (`circnet run --dns ADDR`). glibc's
 * resolver sends its queries with libc-internal calls that no preload can
 * see, so a guest's getaddrinfo()/getent would find no network. Instead the
 * guest's /etc/resolv.conf names 127.0.0.53, and this stub, a process in
 * the guest's network namespace, listens there on a kernel UDP socket (lo is
 * the guest's own) and forwards each query over one datagram circuit to the
 * upstream server, with the guest's identity: the operator's policy decides
 * as for any other packet of the guest (a proxy rule for an off-host server,
 * an allow rule for a DNS server in another guest). Answers go back to the
 * asker by the query id.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <circnet/opclient.h>

#include "dns.h"

#define DNS_MAX 65535

struct asker {
	bool used;
	uint16_t id;
	struct sockaddr_storage from;
	socklen_t len;
};

struct stub {
	const char *sock_path;
	struct cn_addr upstream;
	struct cn_op op;
	struct cn_local_ep ep;
	bool open;
	struct asker askers[1024]; /* by query id modulo the table: recent queries */
};

static void stub_close(struct stub *s)
{
	if (!s->open)
		return;
	cn_local_close(&s->ep);
	cn_op_close(&s->op);
	s->open = false;
}

/* A datagram circuit from a bound port of ours to the upstream server. */
static int stub_open(struct stub *s)
{
	struct cn_addr any = { 0 }, bound;
	struct cn_op_conn conn;
	uint64_t id;
	int err = cn_op_open(&s->op, s->sock_path);

	if (err)
		return err;
	err = cn_op_listen(&s->op, CN_L4_UDP, &any, 16, &bound, &id);
	if (!err)
		err = cn_op_connect(&s->op, CN_L4_UDP, &bound, &s->upstream, &s->ep, &conn);
	if (err) {
		cn_op_close(&s->op);
		return err;
	}
	s->open = true;
	return 0;
}

static void forward_query(struct stub *s, int fd)
{
	static unsigned char buf[DNS_MAX];
	struct sockaddr_storage from;
	socklen_t len = sizeof(from);
	ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &len);
	struct asker *a;
	uint16_t id;
	int tries;

	if (n < 12)
		return; /* not a DNS message */
	id = (uint16_t)(buf[0] << 8 | buf[1]);
	a = &s->askers[id % (sizeof(s->askers) / sizeof(s->askers[0]))];
	*a = (struct asker){ .used = true, .id = id, .len = len };
	memcpy(&a->from, &from, len);
	for (tries = 0; tries < 2; tries++) {
		if (!s->open && stub_open(s))
			return; /* the asker times out and retries, as with a lost packet */
		if (cn_send(&s->ep.ep, buf, (size_t)n, CN_MSG_DONTWAIT) >= 0)
			return;
		stub_close(s); /* the circuit ended (upstream refused, operator gone) */
	}
}

static void forward_answers(struct stub *s, int fd)
{
	static unsigned char buf[DNS_MAX];
	ssize_t n;

	cn_notifier_drain(&s->ep.notif[0]);
	while ((n = cn_recv(&s->ep.ep, buf, sizeof(buf), CN_MSG_DONTWAIT)) >= 0) {
		struct asker *a;
		uint16_t id;

		if (n < 12)
			continue;
		id = (uint16_t)(buf[0] << 8 | buf[1]);
		a = &s->askers[id % (sizeof(s->askers) / sizeof(s->askers[0]))];
		if (!a->used || a->id != id)
			continue; /* nobody asked, or asked too long ago */
		sendto(fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&a->from, a->len);
		a->used = false;
	}
	if (n != -EAGAIN)
		stub_close(s);
}

int dns_stub_listen(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(53) };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, DNS_STUB_ADDR, &sa.sin_addr);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}

void dns_stub_run(int fd, const char *sock_path, const struct cn_addr *upstream)
{
	static struct stub s;
	struct pollfd p[2];

	prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with the guest's command */
	prctl(PR_SET_NAME, "circnet-dns");
	signal(SIGPIPE, SIG_IGN);
	s.sock_path = sock_path;
	s.upstream = *upstream;
	for (;;) {
		int n = 1;

		p[0] = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (s.open) {
			/* armed, then looked at again: an answer after this rings */
			if (cn_poll_arm(&s.ep.ep, CN_POLLIN) &
			    (CN_POLLIN | CN_POLLERR | CN_POLLHUP))
				forward_answers(&s, fd);
			if (s.open)
				p[n++] =
					(struct pollfd){ .fd = s.ep.notif[0].fd, .events = POLLIN };
		}
		if (poll(p, (nfds_t)n, -1) < 0 && errno != EINTR)
			_exit(1);
		if (p[0].revents & POLLIN)
			forward_query(&s, fd);
		if (n > 1 && s.open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
			forward_answers(&s, fd);
	}
}
