// SPDX-License-Identifier: MIT
/*
 * circuit/local.c - the local transport: memfd region + socket-pair or
 * eventfd notifiers,
 * and fd passing over Unix sockets (SCM_RIGHTS), with the paranoia fd
 * passing needs: close-on-exec on arrival, truncated or unexpected control
 * messages are refused and every fd that did arrive is closed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <circnet/local.h>
#include <circnet/pool.h>

#define CN_MAX_PASSED_FDS 16

void cn_local_fds_close(struct cn_local_fds *f)
{
	int i, j;

	if (f->mem >= 0)
		close(f->mem);
	f->mem = -1;
	for (i = 0; i < 4; i++)
		for (j = 0; j < 2; j++) {
			if (f->wake[i][j] >= 0)
				close(f->wake[i][j]);
			f->wake[i][j] = -1;
		}
}

static int make_wake(enum cn_notify_kind kind, int fds[2])
{
	if (kind == CN_NOTIFY_SOCKET)
		return cn_socket_notifier_pair(fds);
	fds[0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fds[0] < 0)
		return -errno;
	fds[1] = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
	return fds[1] < 0 ? -errno : 0;
}

int cn_local_create_kind(const struct cn_circuit_params *p, enum cn_notify_kind kind,
			 struct cn_local_fds *out)
{
	struct cn_region r = { 0 };
	size_t size = cn_circuit_size(p);
	int err, i;

	out->kind = kind;
	out->mem = -1;
	for (i = 0; i < 4; i++)
		out->wake[i][0] = out->wake[i][1] = -1;
	if (!size || (kind != CN_NOTIFY_SOCKET && kind != CN_NOTIFY_EVENTFD))
		return -EINVAL;
	err = cn_memfd_region_create(&r, size, "circnet-circuit");
	if (err)
		return err;
	err = cn_circuit_format(r.base, r.size, p);
	out->mem = r.fd;
	r.fd = -1; /* keep the fd, drop only the creator's mapping */
	cn_region_release(&r);
	/* socket pairs serve both sides: two of them; eventfds: one per sleeper */
	for (i = 0; i < (kind == CN_NOTIFY_SOCKET ? 2 : 4) && !err; i++)
		err = make_wake(kind, out->wake[i]);
	if (err)
		cn_local_fds_close(out);
	return err;
}

int cn_local_create(const struct cn_circuit_params *p, struct cn_local_fds *out)
{
	return cn_local_create_kind(p, CN_NOTIFY_SOCKET, out);
}

int cn_local_select(const struct cn_local_fds *f, enum cn_role role, int out[CN_LOCAL_NFDS])
{
	unsigned int me = role == CN_ROLE_INITIATOR ? 0 : 2, peer = 2 - me;

	out[0] = f->mem;
	if (f->kind == CN_NOTIFY_SOCKET) {
		out[1] = f->wake[0][role == CN_ROLE_INITIATOR ? 0 : 1];
		out[2] = f->wake[1][role == CN_ROLE_INITIATOR ? 0 : 1];
		return CN_LOCAL_NFDS_SOCK;
	}
	out[1] = f->wake[me][0];
	out[2] = f->wake[me + 1][0];
	out[3] = f->wake[peer][1];
	out[4] = f->wake[peer + 1][1];
	return CN_LOCAL_NFDS;
}

/* A socket end becomes a socket notifier; anything else must be an eventfd. */
static int notifier_from_fd(struct cn_notifier *n, int fd, bool signal_only)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISSOCK(st.st_mode))
		return cn_socket_notifier_init_flags(n, fd, signal_only ? CN_NOTIFIER_SIGNAL_ONLY : 0);
	return cn_eventfd_notifier_init(n, fd);
}

static void notifiers_undo(struct cn_local_ep *l, int n)
{
	/* The caller keeps the fds: nothing else was made */
	while (n-- > 0)
		l->notif[n].ops = NULL;
}

/*
 * Socket bundle: our end of each pair is both our doorbell (we wait on it)
 * and the peer's (a byte we send lands at the peer's end), so one notifier
 * object serves as wait_rx and sig_rx, another as wait_tx and sig_tx.
 */
static int open_notifiers_shared(struct cn_local_ep *l, const int *fds)
{
	int err, i;

	for (i = 0; i < 2; i++) {
		err = cn_socket_notifier_init(&l->notif[i], fds[1 + i]);
		if (err) {
			notifiers_undo(l, i);
			return err;
		}
	}
	if (fds[1] == fds[2]) {
		notifiers_undo(l, 2);
		return -EINVAL;
	}
	cn_ep_set_notifiers(&l->ep, &l->notif[0], &l->notif[1], &l->notif[0], &l->notif[1]);
	return 0;
}

static int open_notifiers_each(struct cn_local_ep *l, const int *fds)
{
	int err = 0, i;

	for (i = 0; i < 4 && !err; i++)
		err = notifier_from_fd(&l->notif[i], fds[1 + i], i >= 2); /* 2, 3: the peer's */
	if (err) {
		notifiers_undo(l, i - 1);
		return err;
	}
	cn_ep_set_notifiers(&l->ep, &l->notif[0], &l->notif[1], &l->notif[2], &l->notif[3]);
	return 0;
}

int cn_local_open(struct cn_local_ep *l, const int *fds, int nfds, enum cn_role role)
{
	int err;

	memset(l, 0, sizeof(*l));
	l->lease_fd = -1;
	if (nfds != CN_LOCAL_NFDS_SOCK && nfds != CN_LOCAL_NFDS)
		return -EINVAL;
	err = cn_memfd_region_map(&l->region, fds[0]);
	if (err)
		return err;
	err = cn_ep_attach(&l->ep, l->region.base, l->region.size, role);
	if (!err)
		err = nfds == CN_LOCAL_NFDS_SOCK ? open_notifiers_shared(l, fds) :
						   open_notifiers_each(l, fds);
	if (err) {
		l->region.fd = -1; /* ownership stays with the caller on failure */
		cn_region_release(&l->region);
		return err;
	}
	close(l->region.fd); /* the mapping keeps the memory */
	l->region.fd = -1;
	return 0;
}

/* A slot's notifiers: two socket ends (nnotif 2) or four eventfds (nnotif 4, a VM's pair). */
static int open_slot(struct cn_local_ep *l, struct cn_chunk *chunk, uint64_t off, size_t size,
		     const int *notif_fds, int nnotif, int lease_fd, enum cn_role role,
		     uint64_t stamp)
{
	size_t csize = cn_chunk_size(chunk);
	int fds[5] = { -1 };
	unsigned char *base;
	int err;

	memset(l, 0, sizeof(*l));
	l->lease_fd = -1;
	if (off % CN_DATA_OFF || size < CN_DATA_OFF || off > csize || size > csize - off ||
	    lease_fd < 0)
		return -EINVAL;
	memcpy(fds + 1, notif_fds, (size_t)nnotif * sizeof(int));
	base = (unsigned char *)cn_chunk_base(chunk) + off;
	err = cn_ep_attach_stamped(&l->ep, base, size, role, stamp);
	if (!err)
		err = nnotif == 2 ? open_notifiers_shared(l, fds) : open_notifiers_each(l, fds);
	if (err)
		return err;
	l->region.base = base;
	l->region.size = size;
	l->region.fd = -1;
	l->chunk = chunk;
	l->lease_fd = lease_fd;
	l->leased = true;
	return 0;
}

int cn_local_open_slot(struct cn_local_ep *l, struct cn_chunk *chunk, uint64_t off, size_t size,
		       const int notif_fds[2], int lease_fd, enum cn_role role, uint64_t stamp)
{
	return open_slot(l, chunk, off, size, notif_fds, 2, lease_fd, role, stamp);
}

int cn_local_open_slot_vm(struct cn_local_ep *l, struct cn_chunk *chunk, uint64_t off, size_t size,
			  const int notif_fds[4], int lease_fd, enum cn_role role, uint64_t stamp)
{
	int i;

	/* all four must be eventfds: a socket end here would be a confused operator */
	for (i = 0; i < 4; i++) {
		struct stat st;

		if (fstat(notif_fds[i], &st) < 0 || S_ISSOCK(st.st_mode))
			return -EINVAL;
	}
	return open_slot(l, chunk, off, size, notif_fds, 4, lease_fd, role, stamp);
}

/* Let go of the memory: our own region, or our reference to the chunk and the lease. */
static void release_memory(struct cn_local_ep *l)
{
	if (l->chunk) {
		cn_chunk_put(l->chunk);
		l->chunk = NULL;
		l->region.base = NULL;
		l->region.size = 0;
	} else {
		cn_region_release(&l->region);
	}
	if (l->leased) {
		close(l->lease_fd);
		l->leased = false;
		l->lease_fd = -1;
	}
}

void cn_local_detach(struct cn_local_ep *l)
{
	int i;

	if (!l->region.base)
		return;
	release_memory(l);
	for (i = 0; i < 4; i++)
		cn_notifier_release(&l->notif[i]);
}

void cn_local_close(struct cn_local_ep *l)
{
	int i;

	if (!l->region.base)
		return;
	cn_close(&l->ep);
	release_memory(l);
	for (i = 0; i < 4; i++)
		cn_notifier_release(&l->notif[i]);
}

int cn_send_fds(int sock, const int *fds, int nfds, const void *data, size_t len)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * CN_MAX_PASSED_FDS)];
	} u;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	ssize_t r;

	if (nfds < 0 || nfds > CN_MAX_PASSED_FDS || len == 0)
		return -EINVAL;
	if (nfds) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do
		r = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return (size_t)r == len ? 0 : -EMSGSIZE;
}

ssize_t cn_recv_fds(int sock, int *fds, int maxfds, int *nfds, void *data, size_t len)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * CN_MAX_PASSED_FDS)];
	} u;
	struct iovec iov = { .iov_base = data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int got = 0, n, i, *in;
	bool bad = false;
	ssize_t r;

	*nfds = 0;
	if (maxfds < 0 || maxfds > CN_MAX_PASSED_FDS)
		return -EINVAL;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	do
		r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			bad = true;
			continue;
		}
		n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		in = (int *)CMSG_DATA(c);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, in + i, sizeof(fd));
			if (got < maxfds)
				fds[got++] = fd;
			else {
				close(fd);
				bad = true;
			}
		}
	}
	if (bad || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
		for (i = 0; i < got; i++)
			close(fds[i]);
		return -EMSGSIZE;
	}
	*nfds = got;
	return r;
}
