// SPDX-License-Identifier: MIT
/*
 * guest/preload.c - libcircnet-preload.so: the socket API over circuits for
 * unmodified programs (LD_PRELOAD, set by `circnet run`).
 *
 * It owns the table from application fds to circuit sockets (sock.h) and
 * the libc entry points that consult it. AF_INET and AF_INET6 stream
 * sockets become circuits; every other fd (files, pipes, Unix sockets, and
 * for now datagram sockets) goes straight to libc. A table entry is one
 * atomic pointer per fd, so the data path takes no global lock: a lookup is
 * a load.
 *
 * Readiness: poll, ppoll, select and pselect compute a circuit's readiness
 * from its ring and sleep on its doorbells together with the other fds of
 * the call. epoll needs no help for readability: a connected socket's fd
 * is its data doorbell, kept armed while the ring is empty, and a listener's
 * fd is its operator session; EPOLLOUT on a full ring is the known gap.
 */
#define _GNU_SOURCE
/*
 * Programs built with and without _FILE_OFFSET_BITS=64 call fcntl/fcntl64
 * and sendfile/sendfile64: define the plain names here, alias the others.
 * (off_t is 64 bits either way on the LP64 targets we build for.)
 */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/close_range.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "epoll.h"
#include "procop.h"
#include "sock.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- the real functions ---- */

#define REAL(name) real_##name
#define DECLARE_REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)

DECLARE_REAL(int, socket, int, int, int);
DECLARE_REAL(int, close, int);
DECLARE_REAL(int, dup, int);
DECLARE_REAL(int, dup2, int, int);
DECLARE_REAL(int, dup3, int, int, int);
DECLARE_REAL(int, fcntl, int, int, ...);
DECLARE_REAL(int, ioctl, int, unsigned long, ...);
DECLARE_REAL(int, bind, int, const struct sockaddr *, socklen_t);
DECLARE_REAL(int, listen, int, int);
DECLARE_REAL(int, accept, int, struct sockaddr *, socklen_t *);
DECLARE_REAL(int, accept4, int, struct sockaddr *, socklen_t *, int);
DECLARE_REAL(int, connect, int, const struct sockaddr *, socklen_t);
DECLARE_REAL(ssize_t, read, int, void *, size_t);
DECLARE_REAL(ssize_t, write, int, const void *, size_t);
DECLARE_REAL(ssize_t, readv, int, const struct iovec *, int);
DECLARE_REAL(ssize_t, writev, int, const struct iovec *, int);
DECLARE_REAL(ssize_t, send, int, const void *, size_t, int);
DECLARE_REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t);
DECLARE_REAL(ssize_t, sendmsg, int, const struct msghdr *, int);
DECLARE_REAL(ssize_t, recv, int, void *, size_t, int);
DECLARE_REAL(ssize_t, recvfrom, int, void *, size_t, int, struct sockaddr *, socklen_t *);
DECLARE_REAL(ssize_t, recvmsg, int, struct msghdr *, int);
DECLARE_REAL(int, shutdown, int, int);
DECLARE_REAL(int, getsockname, int, struct sockaddr *, socklen_t *);
DECLARE_REAL(int, getpeername, int, struct sockaddr *, socklen_t *);
DECLARE_REAL(int, getsockopt, int, int, int, void *, socklen_t *);
DECLARE_REAL(int, setsockopt, int, int, int, const void *, socklen_t);
DECLARE_REAL(int, poll, struct pollfd *, nfds_t, int);
DECLARE_REAL(int, ppoll, struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
DECLARE_REAL(int, select, int, fd_set *, fd_set *, fd_set *, struct timeval *);
DECLARE_REAL(int, pselect, int, fd_set *, fd_set *, fd_set *, const struct timespec *,
	     const sigset_t *);
DECLARE_REAL(ssize_t, sendfile, int, int, off_t *, size_t);
DECLARE_REAL(ssize_t, splice, int, loff_t *, int, loff_t *, size_t, unsigned int);
DECLARE_REAL(int, sendmmsg, int, struct mmsghdr *, unsigned int, int);
DECLARE_REAL(int, recvmmsg, int, struct mmsghdr *, unsigned int, int, struct timespec *);

static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void resolve_real(void)
{
#define R(name) real_##name = dlsym(RTLD_NEXT, #name)
	R(socket); R(close); R(dup); R(dup2); R(dup3); R(fcntl); R(ioctl); R(bind); R(listen);
	R(accept); R(accept4); R(connect); R(read); R(write); R(readv); R(writev); R(send);
	R(sendto); R(sendmsg); R(recv); R(recvfrom); R(recvmsg); R(shutdown); R(getsockname);
	R(getpeername); R(getsockopt); R(setsockopt); R(poll); R(ppoll); R(select); R(pselect);
	R(sendfile); R(splice); R(sendmmsg); R(recvmmsg);
#undef R
}

#define NEED_REAL() pthread_once(&real_once, resolve_real)

/* ---- the fd table ---- */

static struct csock **fdtab;
static uint8_t *hidden; /* fds of ours the application must not close */
static int fdtab_size;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/*
 * A wake-up through the kernel costs tens of microseconds on small VMs, so a
 * peer that answers within the budget is caught without one. Off by default:
 * spinning burns a core that 2-core hosts may need for the peer.
 */
int64_t preload_spin_ns(void)
{
	static int64_t ns = -1;

	if (ns < 0) {
		const char *e = getenv("CIRCNET_SPIN_US");
		long us = e ? strtol(e, NULL, 10) : 0;

		ns = us > 0 && us <= 1000 ? us * 1000 : 0;
	}
	return ns;
}

/*
 * Our hidden fds live from half the soft fd limit up (at most 4096, so the
 * kernel's fd table stays small), out of the numbers an application sizes
 * its tables by: wrk sizes its event loop to 3 fds per connection and
 * fails a connect whose fd lands beyond it.
 */
static void set_fd_floor(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < 256)
		return;
	cn_fd_floor = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur / 2 > 4096 ?
				 4096 : (int)(rl.rlim_cur / 2);
	if (cn_fd_floor >= fdtab_size)
		cn_fd_floor = 0;
}

static void table_init(void)
{
	struct rlimit rl;
	size_t n = 65536;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_max != RLIM_INFINITY && rl.rlim_max > n)
		n = rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
	/* untouched pages cost nothing: size for the hard limit */
	fdtab = mmap(NULL, n * sizeof(*fdtab), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	hidden = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		      -1, 0);
	if (fdtab == MAP_FAILED || hidden == MAP_FAILED) {
		fdtab = NULL;
		hidden = NULL;
		n = 0;
	}
	fdtab_size = (int)n;
	set_fd_floor();
	cn_private_fd_hook = preload_hide; /* threads' kick eventfds, chunks' memfds */
}

void preload_hide(int fd, bool on)
{
	if (fd >= 0 && fd < fdtab_size)
		__atomic_store_n(&hidden[fd], on, __ATOMIC_RELEASE);
}

static bool is_hidden(int fd)
{
	return fd >= 0 && fd < fdtab_size && __atomic_load_n(&hidden[fd], __ATOMIC_ACQUIRE);
}

static inline struct csock *lookup(int fd)
{
	if (fd < 0 || fd >= fdtab_size)
		return NULL;
	return __atomic_load_n(&fdtab[fd], __ATOMIC_ACQUIRE);
}

struct csock *preload_lookup(int fd)
{
	return lookup(fd);
}

static void restore_from_exec(void);

static inline struct csock *table_swap(int fd, struct csock *cs)
{
	if (fd < 0 || fd >= fdtab_size)
		return NULL;
	return __atomic_exchange_n(&fdtab[fd], cs, __ATOMIC_ACQ_REL);
}

static int fail(int err)
{
	errno = err;
	return -1;
}

static ssize_t fail_sz(ssize_t err)
{
	errno = (int)-err;
	return -1;
}

/* Every socket open across a fork is shared with the child from now on. */
static void atfork_prepare(void)
{
}

static void mark_shared(void)
{
	int fd;

	for (fd = 0; fd < fdtab_size; fd++) {
		struct csock *cs = lookup(fd);

		if (cs)
			cs->shared = true;
	}
}

static void atfork_child(void)
{
	mark_shared();
	csock_after_fork_child();
}

__attribute__((constructor)) static void preload_init(void)
{
	NEED_REAL();
	pthread_once(&table_once, table_init);
	csock_global_init();
	restore_from_exec();
	pthread_atfork(atfork_prepare, mark_shared, atfork_child);
}

/* ---- sockets ---- */

/* A datagram socket's fd: an epoll instance of its peers' doorbells (udp.c). */
static int udp_socket(int domain, int type)
{
	int fd = epoll_create1((type & SOCK_CLOEXEC) ? EPOLL_CLOEXEC : 0), err;
	struct csock *cs;

	if (fd < 0)
		return -1;
	if (type & SOCK_NONBLOCK)
		REAL(fcntl)(fd, F_SETFL, O_NONBLOCK);
	cs = csock_new(domain, type & SOCK_NONBLOCK);
	if (!cs || (err = udp_init(cs, fd))) {
		if (cs)
			csock_put(cs);
		REAL(close)(fd);
		return fail(ENOMEM);
	}
	table_swap(fd, cs);
	return fd;
}

EXPORT int socket(int domain, int type, int protocol)
{
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), fd;
	struct csock *cs;

	NEED_REAL();
	if ((domain == AF_INET || domain == AF_INET6) && base == SOCK_DGRAM &&
	    (protocol == 0 || protocol == IPPROTO_UDP) && fdtab)
		return udp_socket(domain, type);
	if ((domain != AF_INET && domain != AF_INET6) || base != SOCK_STREAM ||
	    (protocol != 0 && protocol != IPPROTO_TCP) || !fdtab)
		return REAL(socket)(domain, type, protocol);
	/* the placeholder: a real socket fd that is not connected to anything */
	fd = REAL(socket)(AF_UNIX, SOCK_STREAM | (type & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0);
	if (fd < 0)
		return -1;
	cs = csock_new(domain, type & SOCK_NONBLOCK);
	if (!cs) {
		REAL(close)(fd);
		return fail(ENOMEM);
	}
	table_swap(fd, cs);
	return fd;
}

/* Put kernel object `obj` at the app's fd number, keeping its close-on-exec. */
static int install(int fd, int obj, bool nonblock)
{
	int fdflags = REAL(fcntl)(fd, F_GETFD), fl;

	if (fdflags < 0 || REAL(dup3)(obj, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
		return -errno;
	fl = REAL(fcntl)(fd, F_GETFL);
	if (fl >= 0 && nonblock != !!(fl & O_NONBLOCK))
		REAL(fcntl)(fd, F_SETFL, nonblock ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
	return 0;
}

int preload_install_late(int fd, struct csock *cs, int obj)
{
	return lookup(fd) == cs ? install(fd, obj, cs->nonblock) : -EBADF;
}

EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct csock *cs = lookup(fd);
	int err;

	NEED_REAL();
	if (!cs)
		return REAL(bind)(fd, sa, len);
	err = csock_bind(cs, sa, len);
	return err ? fail(-err) : 0;
}

EXPORT int listen(int fd, int backlog)
{
	struct csock *cs = lookup(fd);
	int err, session;

	NEED_REAL();
	if (!cs)
		return REAL(listen)(fd, backlog);
	err = csock_listen(cs, backlog, &session);
	if (!err && session >= 0)
		err = install(fd, session, cs->nonblock);
	return err ? fail(-err) : 0;
}

static int do_accept(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	struct csock *cs = lookup(fd), *n;
	int err, doorbell, nfd;

	NEED_REAL();
	if (!cs)
		return REAL(accept4)(fd, sa, len, flags);
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return fail(EINVAL);
	err = csock_accept(cs, flags & SOCK_NONBLOCK, &n, &doorbell);
	if (err)
		return fail(-err);
	nfd = REAL(fcntl)(doorbell, (flags & SOCK_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
	if (nfd < 0) {
		err = errno;
		csock_put(n);
		return fail(err);
	}
	if (flags & SOCK_NONBLOCK) {
		int fl = REAL(fcntl)(nfd, F_GETFL);

		REAL(fcntl)(nfd, F_SETFL, fl | O_NONBLOCK);
	}
	table_swap(nfd, n);
	if (sa && len)
		csock_getpeername(n, sa, len);
	return nfd;
}

EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	return do_accept(fd, sa, len, 0);
}

EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	return do_accept(fd, sa, len, flags);
}

/* connect(AF_UNSPEC) on a stream socket: unconnected again, on a new placeholder. */
static int disconnect(int fd, struct csock *cs)
{
	bool fresh;
	int ph, err;

	err = csock_disconnect(cs, &fresh);
	if (err || !fresh)
		return err ? fail(-err) : 0;
	ph = REAL(socket)(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ph < 0)
		return -1;
	err = install(fd, ph, cs->nonblock);
	REAL(close)(ph);
	return err ? fail(-err) : 0;
}

EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct csock *cs = lookup(fd);
	int err, doorbell, ierr;

	NEED_REAL();
	if (!cs)
		return REAL(connect)(fd, sa, len);
	if (!cs->dgram && sa && len >= sizeof(sa_family_t) && sa->sa_family == AF_UNSPEC)
		return disconnect(fd, cs);
	err = csock_connect(cs, fd, sa, len, &doorbell);
	if (doorbell >= 0) {
		ierr = install(fd, doorbell, cs->nonblock);
		if (ierr)
			err = ierr;
	}
	return err ? fail(-err) : 0;
}

/* ---- data ---- */

/* EPIPE comes with SIGPIPE, as from the kernel, unless the caller said not to. */
static ssize_t data_result(ssize_t n, int flags)
{
	if (n >= 0)
		return n;
	if (n == -EPIPE && !(flags & MSG_NOSIGNAL))
		pthread_kill(pthread_self(), SIGPIPE);
	return fail_sz(n);
}

static ssize_t dgram_sendto(struct csock *cs, const struct iovec *iov, int iovcnt, int flags,
			    const struct sockaddr *sa, socklen_t alen)
{
	struct cn_addr dst;
	int err = csock_addr_in(cs, sa, alen, &dst);

	return err ? err : udp_sendv(cs, iov, iovcnt, flags, &dst);
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct csock *cs = lookup(fd);
	struct iovec iov = { (void *)buf, len };

	NEED_REAL();
	if (!cs)
		return REAL(send)(fd, buf, len, flags);
	return data_result(csock_sendv(cs, &iov, 1, flags), flags);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *sa,
		      socklen_t alen)
{
	struct csock *cs = lookup(fd);
	struct iovec iov = { (void *)buf, len };

	NEED_REAL();
	if (!cs)
		return REAL(sendto)(fd, buf, len, flags, sa, alen);
	if (cs->dgram && sa)
		return data_result(dgram_sendto(cs, &iov, 1, flags, sa, alen), flags);
	/* a connected stream socket ignores the address, as TCP does */
	return data_result(csock_sendv(cs, &iov, 1, flags), flags);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct csock *cs = lookup(fd);

	NEED_REAL();
	if (!cs)
		return REAL(sendmsg)(fd, msg, flags);
	if (cs->dgram && msg->msg_name)
		return data_result(dgram_sendto(cs, msg->msg_iov, (int)msg->msg_iovlen, flags,
						msg->msg_name, msg->msg_namelen),
				   flags);
	return data_result(csock_sendv(cs, msg->msg_iov, (int)msg->msg_iovlen, flags), flags);
}

/* Each message as sendmsg sends it; a failure after the first ends the batch early. */
EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	struct csock *cs = lookup(fd);
	unsigned int i;

	NEED_REAL();
	if (!cs)
		return REAL(sendmmsg)(fd, vec, vlen, flags);
	for (i = 0; i < vlen; i++) {
		ssize_t n = sendmsg(fd, &vec[i].msg_hdr, flags);

		if (n < 0)
			return i ? (int)i : -1;
		vec[i].msg_len = (unsigned int)n;
	}
	return (int)vlen;
}

/*
 * Each message as recvmsg receives it. Only the first may wait (as with
 * MSG_WAITFORONE): a batch returns what is there rather than waiting to fill
 * up, which is what event-loop callers (libuv, BIND) rely on anyway.
 */
EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
		    struct timespec *timeout)
{
	struct csock *cs = lookup(fd);
	unsigned int i;

	NEED_REAL();
	if (!cs)
		return REAL(recvmmsg)(fd, vec, vlen, flags, timeout);
	flags &= ~MSG_WAITFORONE;
	for (i = 0; i < vlen; i++) {
		ssize_t n = recvmsg(fd, &vec[i].msg_hdr, i ? flags | MSG_DONTWAIT : flags);

		if (n < 0)
			return i ? (int)i : -1;
		vec[i].msg_len = (unsigned int)n;
	}
	return (int)vlen;
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	struct csock *cs = lookup(fd);
	struct iovec iov = { (void *)buf, len };

	NEED_REAL();
	if (!cs)
		return REAL(write)(fd, buf, len);
	return data_result(csock_sendv(cs, &iov, 1, 0), 0);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct csock *cs = lookup(fd);

	NEED_REAL();
	if (!cs)
		return REAL(writev)(fd, iov, iovcnt);
	return data_result(csock_sendv(cs, iov, iovcnt, 0), 0);
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct csock *cs = lookup(fd);
	struct iovec iov = { buf, len };
	ssize_t n;

	NEED_REAL();
	if (!cs)
		return REAL(recv)(fd, buf, len, flags);
	n = csock_recvv(cs, &iov, 1, flags);
	return n < 0 ? fail_sz(n) : n;
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
			socklen_t *alen)
{
	struct csock *cs = lookup(fd);
	struct iovec iov = { buf, len };
	ssize_t n;

	NEED_REAL();
	if (!cs)
		return REAL(recvfrom)(fd, buf, len, flags, sa, alen);
	if (cs->dgram) {
		n = udp_recvv(cs, &iov, 1, flags, sa, alen, NULL);
		return n < 0 ? fail_sz(n) : n;
	}
	n = csock_recvv(cs, &iov, 1, flags);
	return n < 0 ? fail_sz(n) : n; /* TCP leaves the address alone */
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct csock *cs = lookup(fd);
	ssize_t n;

	NEED_REAL();
	if (!cs)
		return REAL(recvmsg)(fd, msg, flags);
	if (cs->dgram) {
		int mf = 0;

		n = udp_recvv(cs, msg->msg_iov, (int)msg->msg_iovlen, flags, msg->msg_name,
			      msg->msg_name ? &msg->msg_namelen : NULL, &mf);
		if (n < 0)
			return fail_sz(n);
		msg->msg_controllen = 0;
		msg->msg_flags = mf;
		return n;
	}
	n = csock_recvv(cs, msg->msg_iov, (int)msg->msg_iovlen, flags);
	if (n < 0)
		return fail_sz(n);
	msg->msg_namelen = 0;
	msg->msg_controllen = 0;
	msg->msg_flags = 0;
	return n;
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	struct csock *cs = lookup(fd);
	struct iovec iov = { buf, len };
	ssize_t n;

	NEED_REAL();
	if (!cs)
		return REAL(read)(fd, buf, len);
	n = csock_recvv(cs, &iov, 1, 0);
	return n < 0 ? fail_sz(n) : n;
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	struct csock *cs = lookup(fd);
	ssize_t n;

	NEED_REAL();
	if (!cs)
		return REAL(readv)(fd, iov, iovcnt);
	n = csock_recvv(cs, iov, iovcnt, 0);
	return n < 0 ? fail_sz(n) : n;
}

/* _FORTIFY_SOURCE builds (Debian's) call these instead. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *sa, socklen_t *alen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	(void)buflen;
	return read(fd, buf, len);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	(void)buflen;
	return recv(fd, buf, len, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
			      struct sockaddr *sa, socklen_t *alen)
{
	(void)buflen;
	return recvfrom(fd, buf, len, flags, sa, alen);
}

/* sendfile to a circuit: the file is read straight into the ring (one copy). */
EXPORT ssize_t sendfile(int out, int in, off_t *offset, size_t count)
{
	struct csock *cs = lookup(out);

	NEED_REAL();
	if (!cs)
		return REAL(sendfile)(out, in, offset, count);
	if (lookup(in))
		return fail(EINVAL); /* a socket is no file to send from */
	return data_result(csock_send_from_fd(cs, in, offset, count, cs->nonblock, false), 0);
}

EXPORT ssize_t sendfile64(int out, int in, off_t *offset, size_t count)
	__attribute__((alias("sendfile")));

static bool is_pipe(int fd)
{
	struct stat st;

	return !fstat(fd, &st) && S_ISFIFO(st.st_mode);
}

/*
 * splice between a circuit and a pipe, one copy through the ring; the
 * checks come in the kernel's order (do_splice()): offsets first.
 */
EXPORT ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t len,
		      unsigned int flags)
{
	struct csock *cin = lookup(in), *cout = lookup(out);
	bool nb = flags & SPLICE_F_NONBLOCK;

	NEED_REAL();
	if (!cin && !cout)
		return REAL(splice)(in, off_in, out, off_out, len, flags);
	if (cin && cout)
		return fail(EINVAL); /* one end must be a pipe */
	if (cin) {
		if (!is_pipe(out))
			return fail(EINVAL);
		if (off_out)
			return fail(ESPIPE);
		if (off_in)
			return fail(EINVAL); /* a socket cannot be read at an offset */
		return data_result(csock_recv_to_fd(cin, out, len, nb || cin->nonblock, nb),
				   MSG_NOSIGNAL);
	}
	if (!is_pipe(in))
		return fail(EINVAL);
	if (off_in)
		return fail(ESPIPE);
	if (off_out)
		return fail(EINVAL);
	return data_result(csock_send_from_fd(cout, in, NULL, len, nb || cout->nonblock, nb), 0);
}

EXPORT int shutdown(int fd, int how)
{
	struct csock *cs = lookup(fd);
	int err;

	NEED_REAL();
	if (!cs)
		return REAL(shutdown)(fd, how);
	err = csock_shutdown(cs, how);
	return err ? fail(-err) : 0;
}

/* ---- fds ---- */

EXPORT int close(int fd)
{
	struct csock *cs;
	int rc;

	NEED_REAL();
	if (is_hidden(fd))
		return 0; /* ours, behind a socket: a close loop of the app passes it by */
	cs = lookup(fd);
	/* the last fd of it? (epoll registrations hold references too) */
	ep_note_close(fd, cs,
		      cs && __atomic_load_n(&cs->refs, __ATOMIC_RELAXED) -
					 __atomic_load_n(&cs->ep_regs, __ATOMIC_RELAXED) ==
				    1);
	cs = table_swap(fd, NULL);
	rc = REAL(close)(fd);
	if (cs)
		csock_put(cs);
	return rc;
}

/* newfd now names what oldfd names (dup2, dup3, F_DUPFD). */
static void alias(int oldfd, int newfd)
{
	struct csock *cs = lookup(oldfd), *prev;

	if (cs)
		csock_get(cs);
	prev = table_swap(newfd, cs);
	if (prev)
		csock_put(prev);
}

EXPORT int dup(int fd)
{
	int n;

	NEED_REAL();
	n = REAL(dup)(fd);
	if (n >= 0)
		alias(fd, n);
	return n;
}

EXPORT int dup2(int oldfd, int newfd)
{
	int n;

	NEED_REAL();
	n = REAL(dup2)(oldfd, newfd);
	if (n >= 0 && oldfd != newfd)
		alias(oldfd, newfd);
	return n;
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int n;

	NEED_REAL();
	n = REAL(dup3)(oldfd, newfd, flags);
	if (n >= 0)
		alias(oldfd, newfd);
	return n;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	struct csock *cs = lookup(fd);
	va_list ap;
	long arg;
	int rc;

	NEED_REAL();
	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	rc = REAL(fcntl)(fd, cmd, arg);
	if (rc < 0 || !cs)
		return rc;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		alias(fd, rc);
		break;
	case F_SETFL:
		cs->nonblock = arg & O_NONBLOCK;
		break;
	default:
		break;
	}
	return rc;
}

EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	struct csock *cs = lookup(fd);
	va_list ap;
	void *arg;

	NEED_REAL();
	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!cs)
		return REAL(ioctl)(fd, req, arg);
	if (req == FIONBIO) {
		int on;

		if (!arg)
			return fail(EFAULT);
		memcpy(&on, arg, sizeof(on));
		cs->nonblock = on != 0;
		return REAL(ioctl)(fd, req, arg);
	}
	if (req == FIONREAD) {
		int n = csock_readable(cs);

		if (!arg)
			return fail(EFAULT);
		memcpy(arg, &n, sizeof(n));
		return 0;
	}
	return REAL(ioctl)(fd, req, arg);
}

/* ---- addresses and options ---- */

EXPORT int getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	struct csock *cs = lookup(fd);
	int err;

	NEED_REAL();
	if (!cs)
		return REAL(getsockname)(fd, sa, len);
	err = csock_getsockname(cs, sa, len);
	return err ? fail(-err) : 0;
}

EXPORT int getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
	struct csock *cs = lookup(fd);
	int err;

	NEED_REAL();
	if (!cs)
		return REAL(getpeername)(fd, sa, len);
	err = csock_getpeername(cs, sa, len);
	return err ? fail(-err) : 0;
}

EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct csock *cs = lookup(fd);
	int err;

	NEED_REAL();
	if (!cs)
		return REAL(getsockopt)(fd, level, name, val, len);
	err = csock_getsockopt(cs, level, name, val, len);
	return err ? fail(-err) : 0;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct csock *cs = lookup(fd);
	int err;

	NEED_REAL();
	if (!cs)
		return REAL(setsockopt)(fd, level, name, val, len);
	err = csock_setsockopt(cs, level, name, val, len);
	return err ? fail(-err) : 0;
}

/* ---- readiness ---- */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool any_circuit(const struct pollfd *fds, nfds_t n)
{
	nfds_t i;

	for (i = 0; i < n; i++)
		if (lookup(fds[i].fd))
			return true;
	return false;
}

/* Circuits' readiness without sleeping; returns how many entries are ready. */
static int circuits_ready(struct pollfd *fds, nfds_t n)
{
	int ready = 0, sfd[2], nsfd;
	short sev[2];
	nfds_t i;

	for (i = 0; i < n; i++) {
		struct csock *cs = lookup(fds[i].fd);

		if (!cs)
			continue;
		fds[i].revents = (short)csock_poll(cs, (unsigned short)fds[i].events, false, sfd, sev,
						   &nsfd);
		if (cs->state == CS_LISTENING) {
			struct pollfd p = { .fd = fds[i].fd, .events = POLLIN };

			if (REAL(poll)(&p, 1, 0) == 1)
				fds[i].revents = (short)(p.revents & (fds[i].events | POLLERR | POLLHUP));
		}
		if (fds[i].revents)
			ready++;
	}
	return ready;
}

/*
 * poll over circuits and ordinary fds. Circuits not ready get their
 * doorbells armed and polled in their place; after any wake-up all circuits
 * are looked at again. timeout_ns < 0: forever.
 */
#define OWNER_OPERATOR INT_MIN /* poll_mixed's entry for the operator's session */

static int poll_mixed(struct pollfd *fds, nfds_t n, int64_t timeout_ns, const sigset_t *mask)
{
	int64_t deadline = timeout_ns < 0 ? -1 : mono_ns() + timeout_ns;
	struct pollfd stackbuf[64], *k = stackbuf;
	int *owner, stackown[64], ready, rc, retry;
	nfds_t i, nk;
	bool tend;

	if (n * 3 + 1 > 64) {
		k = calloc(n * 3 + 1, sizeof(*k));
		owner = calloc(n * 3 + 1, sizeof(*owner));
		if (!k || !owner) {
			free(k);
			free(owner);
			return fail(ENOMEM);
		}
	} else {
		owner = stackown;
	}
	for (;;) {
		struct timespec ts, *tsp = NULL;

		ready = circuits_ready(fds, n);
		/* kernel fds: polled every time, without waiting if circuits are ready */
		nk = 0;
		for (i = 0; i < n; i++) {
			struct csock *cs = lookup(fds[i].fd);
			int sfd[2], nsfd, j;
			short sev[2];

			if (!cs) {
				k[nk] = fds[i];
				k[nk].revents = 0;
				owner[nk++] = (int)i;
				continue;
			}
			if (ready || fds[i].revents)
				continue;
			fds[i].revents = (short)csock_poll(cs, (unsigned short)fds[i].events, true,
							   sfd, sev, &nsfd);
			if (fds[i].revents) {
				ready++;
				continue;
			}
			for (j = 0; j < nsfd; j++) {
				k[nk].fd = sfd[j];
				k[nk].events = sev[j];
				k[nk].revents = 0;
				owner[nk++] = -1 - (int)i;
			}
		}
		/* the operator's session: its hang-up, and attempts to reach it (procop.h) */
		retry = -1;
		if (!ready) {
			int wfd = procop_watch(&retry);

			if (wfd >= 0) {
				k[nk] = (struct pollfd){ .fd = wfd, .events = POLLRDHUP | POLLIN };
				owner[nk++] = OWNER_OPERATOR;
			}
		}
		if (!ready && deadline >= 0) {
			int64_t left = deadline - mono_ns();

			if (left < 0)
				left = 0;
			if (retry >= 0 && left > (int64_t)retry * 1000000)
				left = (int64_t)retry * 1000000;
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		} else if (ready) {
			ts.tv_sec = ts.tv_nsec = 0;
			tsp = &ts;
		} else if (retry >= 0) {
			ts.tv_sec = retry / 1000;
			ts.tv_nsec = (long)(retry % 1000) * 1000000;
			tsp = &ts;
		}
		if (!ready)
			csock_flush_closed();
		rc = REAL(ppoll)(k, nk, tsp, mask);
		if (rc < 0)
			break;
		tend = retry >= 0 && rc == 0;
		for (i = 0; i < nk; i++) {
			if (owner[i] == OWNER_OPERATOR) {
				tend |= k[i].revents != 0;
				if (k[i].revents)
					rc--;
			} else if (owner[i] >= 0) {
				fds[owner[i]].revents = k[i].revents;
				if (k[i].revents)
					ready++;
			} else if (k[i].revents & (POLLHUP | POLLERR)) {
				csock_peer_hangup(lookup(fds[-1 - owner[i]].fd));
			}
		}
		if (tend)
			procop_tick();
		if (ready) {
			/* circuits whose doorbell rang: look at their rings now */
			ready = 0;
			for (i = 0; i < n; i++) {
				if (!lookup(fds[i].fd) && fds[i].revents)
					ready++;
			}
			ready += circuits_ready(fds, n);
			rc = ready;
			break;
		}
		if (rc > 0) {
			rc = circuits_ready(fds, n);
			if (rc > 0)
				break;
		}
		if (deadline >= 0 && mono_ns() >= deadline) {
			rc = 0;
			break;
		}
	}
	if (k != stackbuf) {
		free(k);
		free(owner);
	}
	return rc;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	NEED_REAL();
	if (!any_circuit(fds, n))
		return REAL(poll)(fds, n, timeout);
	return poll_mixed(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	(void)fdslen;
	return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	NEED_REAL();
	if (!any_circuit(fds, n))
		return REAL(ppoll)(fds, n, ts, mask);
	return poll_mixed(fds, n, ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1, mask);
}

/* select and pselect: through poll when a circuit is in the sets. */
static int select_mixed(int nfds, fd_set *r, fd_set *w, fd_set *e, int64_t timeout_ns,
			const sigset_t *mask)
{
	struct pollfd *p = calloc((size_t)nfds, sizeof(*p));
	int fd, n = 0, rc, i;

	if (!p)
		return fail(ENOMEM);
	for (fd = 0; fd < nfds; fd++) {
		short ev = 0;

		if (r && FD_ISSET(fd, r))
			ev |= POLLIN;
		if (w && FD_ISSET(fd, w))
			ev |= POLLOUT;
		if (e && FD_ISSET(fd, e))
			ev |= POLLPRI;
		if (!ev)
			continue;
		p[n].fd = fd;
		p[n++].events = ev;
	}
	rc = poll_mixed(p, (nfds_t)n, timeout_ns, mask);
	if (rc < 0) {
		free(p);
		return rc;
	}
	if (r)
		FD_ZERO(r);
	if (w)
		FD_ZERO(w);
	if (e)
		FD_ZERO(e);
	rc = 0;
	for (i = 0; i < n; i++) {
		short re = p[i].revents;

		if (re & POLLNVAL) {
			free(p);
			return fail(EBADF);
		}
		if (r && (re & (POLLIN | POLLHUP | POLLERR)) && (p[i].events & POLLIN)) {
			FD_SET(p[i].fd, r);
			rc++;
		}
		if (w && (re & (POLLOUT | POLLERR)) && (p[i].events & POLLOUT)) {
			FD_SET(p[i].fd, w);
			rc++;
		}
		if (e && (re & POLLPRI)) {
			FD_SET(p[i].fd, e);
			rc++;
		}
	}
	free(p);
	return rc;
}

static bool sets_have_circuit(int nfds, fd_set *r, fd_set *w, fd_set *e)
{
	int fd;

	for (fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
		if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (e && FD_ISSET(fd, e))) &&
		    lookup(fd))
			return true;
	return false;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	NEED_REAL();
	if (!sets_have_circuit(nfds, r, w, e))
		return REAL(select)(nfds, r, w, e, tv);
	return select_mixed(nfds, r, w, e,
			    tv ? (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000 : -1,
			    NULL);
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		   const sigset_t *mask)
{
	NEED_REAL();
	if (!sets_have_circuit(nfds, r, w, e))
		return REAL(pselect)(nfds, r, w, e, ts, mask);
	return select_mixed(nfds, r, w, e, ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1,
			    mask);
}

/* ---- closing ranges: spare our own fds ---- */

DECLARE_REAL(int, close_range, unsigned int, unsigned int, int);

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	unsigned int fd, run = first, end;

	NEED_REAL();
	if (!real_close_range)
		real_close_range = dlsym(RTLD_NEXT, "close_range");
	if (!real_close_range)
		return fail(ENOSYS);
	if ((flags & CLOSE_RANGE_CLOEXEC) || first > last)
		return real_close_range(first, last, flags); /* ours are close-on-exec already */
	end = last < (unsigned int)fdtab_size ? last : (unsigned int)fdtab_size - 1;
	for (fd = first; fdtab_size && fd <= end; fd++) {
		if (!is_hidden((int)fd) && !lookup((int)fd))
			continue;
		/* close the run before it, then this one our way */
		if (fd > run && real_close_range(run, fd - 1, flags) < 0)
			return -1;
		if (!is_hidden((int)fd))
			close((int)fd);
		run = fd + 1;
	}
	if (run <= last)
		return real_close_range(run, last, flags);
	return 0;
}

EXPORT void closefrom(int lowfd)
{
	close_range((unsigned int)(lowfd < 0 ? 0 : lowfd), ~0u, 0);
}

/* ---- exec: sockets survive it ---- */

#define EXEC_ENV   "CIRCNET_EXEC_STATE"
#define EXEC_MAGIC 0x45584e43u /* "CNXE" */

struct exec_hdr {
	uint32_t magic, version, count, size;
};

static int exec_state_fd = -1;

/* Write the sockets that stay open into a memfd; returns its fd, or -1. */
static int export_sockets(void)
{
	struct exec_hdr h = { EXEC_MAGIC, 1, 0, sizeof(struct csock_image) };
	int fd, mfd = -1;

	for (fd = 0; fd < fdtab_size; fd++) {
		struct csock *cs = lookup(fd);
		struct csock_image img;
		int fl;

		if (!cs)
			continue;
		fl = REAL(fcntl)(fd, F_GETFD);
		if (fl < 0 || (fl & FD_CLOEXEC))
			continue; /* gone with the exec anyway */
		if (!csock_export(cs, fd, &img))
			continue;
		if (mfd < 0) {
			mfd = memfd_create("circnet-exec-state", 0);
			if (mfd < 0 || pwrite(mfd, &h, sizeof(h), 0) != sizeof(h))
				return -1;
		}
		if (pwrite(mfd, &img, sizeof(img), (off_t)(sizeof(h) + h.count * sizeof(img))) !=
		    sizeof(img))
			return -1;
		h.count++;
	}
	if (mfd >= 0 && pwrite(mfd, &h, sizeof(h), 0) != sizeof(h))
		return -1;
	return mfd;
}

static void export_undo(void)
{
	int fd;

	for (fd = 0; fd < fdtab_size; fd++) {
		struct csock *cs = lookup(fd);

		if (cs)
			csock_export_undo(cs);
	}
	if (exec_state_fd >= 0)
		REAL(close)(exec_state_fd);
	exec_state_fd = -1;
}

/* envp plus CIRCNET_EXEC_STATE=fd (replacing an old one); NULL on failure. */
static char **env_with_state(char *const envp[], int mfd, char *buf, size_t len)
{
	size_t n = 0, i, k = 0;
	char **out;

	while (envp && envp[n])
		n++;
	out = malloc((n + 2) * sizeof(*out));
	if (!out)
		return NULL;
	for (i = 0; i < n; i++)
		if (strncmp(envp[i], EXEC_ENV "=", sizeof(EXEC_ENV)))
			out[k++] = envp[i];
	if (mfd >= 0) {
		snprintf(buf, len, EXEC_ENV "=%d", mfd);
		out[k++] = buf;
	}
	out[k] = NULL;
	return out;
}

DECLARE_REAL(int, execve, const char *, char *const[], char *const[]);
DECLARE_REAL(int, execvpe, const char *, char *const[], char *const[]);
DECLARE_REAL(int, fexecve, int, char *const[], char *const[]);

enum exec_kind { EX_PATH, EX_SEARCH, EX_FD };

static int do_exec(enum exec_kind kind, const char *file, int fd, char *const argv[],
		   char *const envp[])
{
	char buf[64], **env;
	int err;

	NEED_REAL();
	if (!real_execve) {
		real_execve = dlsym(RTLD_NEXT, "execve");
		real_execvpe = dlsym(RTLD_NEXT, "execvpe");
		real_fexecve = dlsym(RTLD_NEXT, "fexecve");
	}
	exec_state_fd = export_sockets();
	env = env_with_state(envp, exec_state_fd, buf, sizeof(buf));
	if (!env) {
		export_undo();
		return fail(ENOMEM);
	}
	if (kind == EX_PATH)
		real_execve(file, argv, env);
	else if (kind == EX_SEARCH)
		real_execvpe(file, argv, env);
	else
		real_fexecve(fd, argv, env);
	err = errno; /* still here: the exec failed */
	free(env);
	export_undo();
	return fail(err);
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return do_exec(EX_PATH, path, -1, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return do_exec(EX_PATH, path, -1, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return do_exec(EX_SEARCH, file, -1, argv, envp);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return do_exec(EX_SEARCH, file, -1, argv, environ);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	return do_exec(EX_FD, NULL, fd, argv, envp);
}

/* execl, execlp, execle: the argument list as an array */
static char **va_argv(const char *arg0, va_list ap, char ***envp)
{
	size_t n = 1, cap = 16;
	char **argv = malloc(cap * sizeof(*argv));
	const char *a;

	if (!argv)
		return NULL;
	argv[0] = (char *)arg0;
	do {
		a = va_arg(ap, const char *);
		if (n == cap) {
			char **na = realloc(argv, (cap *= 2) * sizeof(*argv));

			if (!na) {
				free(argv);
				return NULL;
			}
			argv = na;
		}
		argv[n++] = (char *)a;
	} while (a);
	if (envp)
		*envp = va_arg(ap, char **);
	return argv;
}

/* The execl family's end: the argument list gathered (NULL: out of memory). */
static int exec_list(enum exec_kind how, const char *path, char **argv, char *const envp[])
{
	int rc;

	if (!argv)
		return fail(ENOMEM);
	rc = do_exec(how, path, -1, argv, envp);
	free(argv);
	return rc;
}

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	char **argv;

	va_start(ap, arg);
	argv = va_argv(arg, ap, NULL);
	va_end(ap);
	return exec_list(EX_PATH, path, argv, environ);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	char **argv;

	va_start(ap, arg);
	argv = va_argv(arg, ap, NULL);
	va_end(ap);
	return exec_list(EX_SEARCH, file, argv, environ);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	char **argv, **envp = NULL;

	va_start(ap, arg);
	argv = va_argv(arg, ap, &envp);
	va_end(ap);
	return exec_list(EX_PATH, path, argv, envp);
}

/* In the new image: take the sockets back. */
static void restore_from_exec(void)
{
	const char *v = getenv(EXEC_ENV);
	struct exec_hdr h;
	char *end;
	long mfd;
	uint32_t i, j;

	if (!v)
		return;
	mfd = strtol(v, &end, 10);
	unsetenv(EXEC_ENV);
	if (*end || mfd < 0 || mfd >= fdtab_size || !fdtab)
		return;
	if (pread((int)mfd, &h, sizeof(h), 0) == sizeof(h) && h.magic == EXEC_MAGIC &&
	    h.version == 1 && h.size == sizeof(struct csock_image) && h.count <= 65536) {
		struct csock_image *imgs = calloc(h.count ? h.count : 1, sizeof(*imgs));
		struct csock **made = calloc(h.count ? h.count : 1, sizeof(*made));

		if (imgs && made &&
		    pread((int)mfd, imgs, h.count * sizeof(*imgs), sizeof(h)) ==
			    (ssize_t)(h.count * sizeof(*imgs))) {
			for (i = 0; i < h.count; i++) {
				if (imgs[i].appfd < 0 || imgs[i].appfd >= fdtab_size)
					continue;
				/* a socket under several fds is rebuilt once */
				for (j = 0; j < i; j++)
					if (made[j] && imgs[j].key == imgs[i].key)
						break;
				if (j < i) {
					csock_get(made[j]);
					made[i] = made[j];
				} else {
					made[i] = csock_import(&imgs[i]);
				}
				if (made[i])
					table_swap(imgs[i].appfd, made[i]);
			}
			for (i = 0; i < h.count; i++)
				csock_import_done(&imgs[i]);
		}
		free(imgs);
		free(made);
	}
	REAL(close)((int)mfd);
}

/* ---- sandboxes ---- */

/*
 * A process about to put itself under a seccomp filter (OpenSSH's
 * pre-authentication child, browsers' renderers, ...) may allow read and
 * write but kill on sendto/recvfrom: from here on our doorbells use plain
 * read/write. Filters installed with the raw seccomp(2) call go unseen.
 */
EXPORT __attribute__((no_sanitize("address", "undefined"))) int prctl(int option, ...)
{
	unsigned long a2, a3, a4, a5;
	va_list ap;

	/*
	 * Straight to the system call: sanitizer runtimes call prctl while
	 * they start, before anything here (dlsym, instrumented code) may run.
	 */
	va_start(ap, option);
	a2 = va_arg(ap, unsigned long);
	a3 = va_arg(ap, unsigned long);
	a4 = va_arg(ap, unsigned long);
	a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_SECCOMP) {
		cn_socket_notifier_plain_io();
		procop_sandboxed();
		/* its first blocking wait would make an eventfd: the filter may forbid that */
		cn_kick_prepare();
	}
	return (int)syscall(SYS_prctl, option, a2, a3, a4, a5);
}
