// SPDX-License-Identifier: MIT
/*
 * operator/vm.c - VM guests (circnet/vm.h): the operator as the ivshmem
 * server of each VM, and the VM's control circuit.
 *
 * Owns, per VM guest (`vm ivshmem` in its config block), the socket QEMU's
 * ivshmem-doorbell device connects to (run-dir/guests/NAME/ivshmem.sock),
 * and per connected device: its memory (a sealed memfd of vm-memory bytes),
 * the eventfds of its vectors and of ours, and the operator's end of the
 * control circuit at offset 0 of the device.
 *
 * The ivshmem-server protocol (QEMU docs/specs/ivshmem-spec.rst): on
 * connect, little-endian int64 messages, some with one fd: the protocol
 * version (0), the client's peer id, -1 with the shared memory, then for
 * every peer its id once per vector with that vector's eventfd (the
 * client's own id: the eventfds QEMU turns into its MSI-X interrupts). A
 * peer id with no fd says that peer is gone. We are peer 0 on every device
 * and the VM is peer 1; no other peer is ever announced, so the VM can
 * ring nobody but us.
 *
 * The operator maps only the control circuit's pages of a device, never
 * the rest, and reads them as the rings do everywhere: a VM that scribbles
 * over them breaks its own control circuit (we stop serving it and count
 * it), never the operator. Every call on it is non-blocking: the operator's
 * loop must not wait for a guest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <circnet/circuit.h>
#include <circnet/local.h>
#include <circnet/vm.h>

#include "log.h"
#include "operator.h"

#define VM_MSGS_PER_ROUND 64 /* control messages served per wake-up: fairness */
#define VM_BELLS	  3  /* our vectors the VM may ring: RX, TX and RESET */

struct vm_dev;

struct vm_bell {
	struct evsrc ev; /* one of our vectors' eventfds (EV_VM_BELL) */
	struct vm_dev *d;
	unsigned int vector;
};

struct vm_dev {
	struct evsrc ev; /* QEMU's connection (EV_VM_DEV): its hang-up ends the device */
	struct vm *vm;
	pid_t pid;
	uint64_t size;
	void *ctl_base; /* the control circuit's pages, nothing else */
	size_t ctl_size;
	/* notif[0..1]: our RX/TX vectors (we sleep), [2..3]: the VM's (we ring) */
	struct cn_notifier notif[4];
	struct vm_bell bell[VM_BELLS];
	int reset_done_fd; /* the VM's CN_VM_VEC_RESET eventfd: "your circuit is new" */
	struct cn_endpoint ep;
	bool broken; /* the VM broke the control circuit: served again after a reset */
	uint64_t resets;
	size_t inlen, outlen, outoff;
	union cn_msg in;
	union cn_msg out;
	uint64_t msgs;
};

struct vm {
	struct evsrc ev; /* ivshmem.sock (EV_VM_SOCK) */
	struct guest *g;
	char path[CFG_PATH_MAX + 80];
	struct vm_dev *dev; /* one device per VM in this version */
	uint64_t attaches, refused, violations;
};

static int vm_ep_add(struct op *op, struct evsrc *ev)
{
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = ev };

	return epoll_ctl(op->epfd, EPOLL_CTL_ADD, ev->fd, &e) ? -errno : 0;
}

/* ---- the ivshmem-server protocol ---- */

static int send_posn(int sock, int64_t posn, int fd)
{
	return cn_send_fds(sock, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0, &posn, sizeof(posn));
}

/* A sealed memfd of size bytes: nobody can shrink it under a mapping. */
static int vm_memfd(const char *name, uint64_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static void dev_free(struct op *op, struct vm_dev *d)
{
	int i;

	for (i = 0; i < VM_BELLS; i++)
		if (d->bell[i].ev.fd >= 0)
			epoll_ctl(op->epfd, EPOLL_CTL_DEL, d->bell[i].ev.fd, NULL);
	for (i = 0; i < 4; i++)
		cn_notifier_release(&d->notif[i]);
	/* the RX and TX bells' fds were the notifiers': closed just now */
	if (d->bell[CN_VM_VEC_RESET].ev.fd >= 0)
		close(d->bell[CN_VM_VEC_RESET].ev.fd);
	if (d->reset_done_fd >= 0)
		close(d->reset_done_fd);
	if (d->ctl_base)
		munmap(d->ctl_base, d->ctl_size);
	if (d->ev.fd >= 0) {
		epoll_ctl(op->epfd, EPOLL_CTL_DEL, d->ev.fd, NULL);
		close(d->ev.fd);
	}
	if (d->vm->dev == d)
		d->vm->dev = NULL;
	op->vm_devices--;
	free(d);
}

/*
 * The device's memory with the control circuit formatted at its start,
 * and our mapping of that circuit only. Returns the memfd or -errno.
 */
static int dev_memory(struct vm_dev *d, const struct guest_conf *gc)
{
	struct cn_circuit_params p = {
		.mode = CN_MODE_STREAM,
		.ring_size = { CN_VM_CTL_RING, CN_VM_CTL_RING },
	};
	long page = sysconf(_SC_PAGESIZE);
	int fd, err;

	d->size = gc->vm_memory;
	d->ctl_size = (cn_circuit_size(&p) + (size_t)page - 1) & ~((size_t)page - 1);
	if (!d->ctl_size || d->ctl_size > d->size)
		return -EINVAL;
	fd = vm_memfd("circnet-vm", d->size);
	if (fd < 0)
		return fd;
	d->ctl_base = mmap(NULL, d->ctl_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (d->ctl_base == MAP_FAILED) {
		err = -errno;
		d->ctl_base = NULL;
		close(fd);
		return err;
	}
	err = cn_circuit_format(d->ctl_base, d->ctl_size, &p);
	if (!err)
		err = cn_ep_attach(&d->ep, d->ctl_base, d->ctl_size, CN_ROLE_ACCEPTOR);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/*
 * Our vectors' eventfds become the notifiers we sleep on (and the bells in
 * epoll), the VM's the ones we ring. QEMU gets its copies in the setup
 * messages. Returns 0 or -errno; fds sent are ours to close after sending.
 */
static int dev_vectors(struct op *op, struct vm_dev *d, int ours[VM_BELLS],
		       int theirs[CN_VM_VECTORS])
{
	int i, err;

	for (i = 0; i < VM_BELLS; i++) {
		ours[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (ours[i] < 0)
			return -errno;
	}
	for (i = 0; i < CN_VM_VECTORS; i++) {
		theirs[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (theirs[i] < 0)
			return -errno;
	}
	for (i = 0; i < VM_BELLS; i++) {
		int dupfd = fcntl(ours[i], F_DUPFD_CLOEXEC, 0);

		if (dupfd < 0)
			return -errno;
		d->bell[i].ev.kind = EV_VM_BELL;
		d->bell[i].ev.fd = dupfd;
		d->bell[i].d = d;
		d->bell[i].vector = (unsigned int)i;
		/* RX and TX: the notifiers we sleep on own their fds */
		if (i != CN_VM_VEC_RESET && (err = cn_eventfd_notifier_init(&d->notif[i], dupfd)))
			return err;
		err = vm_ep_add(op, &d->bell[i].ev);
		if (err)
			return err;
	}
	d->reset_done_fd = fcntl(theirs[CN_VM_VEC_RESET], F_DUPFD_CLOEXEC, 0);
	if (d->reset_done_fd < 0)
		return -errno;
	for (i = 0; i < 2; i++) {
		int dupfd = fcntl(theirs[i], F_DUPFD_CLOEXEC, 0);

		if (dupfd < 0)
			return -errno;
		err = cn_eventfd_notifier_init(&d->notif[2 + i], dupfd);
		if (err) {
			close(dupfd);
			return err;
		}
	}
	/* we sleep on RX (data came) and TX (space came); we ring the VM's */
	cn_ep_set_notifiers(&d->ep, &d->notif[CN_VM_VEC_RX], &d->notif[CN_VM_VEC_TX],
			    &d->notif[2 + CN_VM_VEC_RX], &d->notif[2 + CN_VM_VEC_TX]);
	return 0;
}

static int dev_setup_messages(struct vm_dev *d, int memfd, const int ours[VM_BELLS],
			      const int theirs[CN_VM_VECTORS])
{
	int i, err;

	err = send_posn(d->ev.fd, 0, -1); /* protocol version */
	if (!err)
		err = send_posn(d->ev.fd, CN_VM_PEER_GUEST, -1);
	if (!err)
		err = send_posn(d->ev.fd, -1, memfd);
	for (i = 0; i < VM_BELLS && !err; i++)
		err = send_posn(d->ev.fd, CN_VM_PEER_OPERATOR, ours[i]);
	for (i = 0; i < CN_VM_VECTORS && !err; i++)
		err = send_posn(d->ev.fd, CN_VM_PEER_GUEST, theirs[i]);
	return err;
}

static void serve(struct op *op, struct vm_dev *d);

static void close_all(int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static struct vm_dev *dev_new(struct op *op, struct vm *vm, int sock, pid_t pid)
{
	const struct guest_conf *gc = guest_conf(op, vm->g);
	int ours[VM_BELLS] = { -1, -1, -1 }, theirs[CN_VM_VECTORS] = { -1, -1, -1, -1 };
	struct vm_dev *d = calloc(1, sizeof(*d));
	int memfd = -1, err, i;

	if (!d)
		return NULL;
	d->vm = vm;
	d->pid = pid;
	d->ev.kind = EV_VM_DEV;
	d->ev.fd = sock;
	for (i = 0; i < VM_BELLS; i++)
		d->bell[i].ev.fd = -1;
	d->reset_done_fd = -1;
	op->vm_devices++;
	memfd = dev_memory(d, gc);
	err = memfd < 0 ? memfd : dev_vectors(op, d, ours, theirs);
	if (!err)
		err = dev_setup_messages(d, memfd, ours, theirs);
	if (!err)
		err = vm_ep_add(op, &d->ev);
	if (memfd >= 0)
		close(memfd); /* QEMU and our mapping keep the memory */
	close_all(ours, VM_BELLS);
	close_all(theirs, CN_VM_VECTORS);
	if (err) {
		log_err("vm %s: cannot set up the device of QEMU pid %d: %s", vm->g->name, (int)pid,
			strerror(-err));
		d->ev.fd = -1; /* the caller closes the socket */
		dev_free(op, d);
		return NULL;
	}
	serve(op, d); /* arms our reader's want flag: the VM's first write rings us */
	return d;
}

/* ---- the control circuit ---- */

static void dev_break(struct vm_dev *d, const char *why)
{
	if (d->broken)
		return;
	d->broken = true;
	d->vm->violations++;
	log_warn("vm %s: control circuit dropped: %s (until the VM asks for a new one)",
		 d->vm->g->name, why);
	cn_reset(&d->ep);
}

static void reply(struct vm_dev *d, const struct cn_msg_hdr *h)
{
	memcpy(&d->out, h, h->len);
	d->outlen = h->len;
	d->outoff = 0;
}

static void reply_error(struct vm_dev *d, uint32_t seq, int err)
{
	struct cn_msg_error e;

	cn_msg_init(&e.h, CN_MSG_ERROR, sizeof(e), seq);
	e.err = err;
	reply(d, &e.h);
}

static void dispatch(struct op *op, struct vm_dev *d, const union cn_msg *m)
{
	d->msgs++;
	switch (m->h.type) {
	case CN_MSG_HELLO: {
		struct cn_msg_hello_ok r;

		core_hello_ok(op, d->vm->g, m->h.seq, &r);
		reply(d, &r.h);
		log_info("vm %s: registered over its control circuit (QEMU pid %d)", d->vm->g->name,
			 (int)d->pid);
		break;
	}
	case CN_MSG_ECHO: {
		struct cn_msg_echo r = m->echo;

		r.h.type = CN_MSG_ECHO_OK;
		reply(d, &r.h);
		break;
	}
	default:
		/* connections of VM guests come in a later version */
		reply_error(d, m->h.seq, EOPNOTSUPP);
		break;
	}
}

/* Send what is left of the pending reply. true when nothing is left. */
static bool flush(struct vm_dev *d)
{
	while (d->outoff < d->outlen) {
		ssize_t n = cn_send(&d->ep, (char *)&d->out + d->outoff, d->outlen - d->outoff,
				    CN_MSG_DONTWAIT);

		if (n == -EAGAIN)
			return false;
		if (n < 0) {
			dev_break(d, "the circuit failed under a reply");
			return false;
		}
		d->outoff += (size_t)n;
	}
	d->outlen = d->outoff = 0;
	return true;
}

/*
 * Read toward one whole message: its header first, then the rest its
 * length names. 1: a message is in d->in; 0: not yet (EAGAIN); -1: done
 * with this circuit (EOF, broken, a bad length).
 */
static int take_message(struct vm_dev *d)
{
	for (;;) {
		size_t want = sizeof(struct cn_msg_hdr);
		ssize_t n;

		if (d->inlen >= sizeof(struct cn_msg_hdr)) {
			uint32_t len = d->in.h.len; /* our copy: the ring cannot change it */

			if (len < sizeof(struct cn_msg_hdr) || len > sizeof(d->in)) {
				dev_break(d, "a message length out of range");
				return -1;
			}
			want = len;
			if (d->inlen == want)
				return 1;
		}
		n = cn_recv(&d->ep, (char *)&d->in + d->inlen, want - d->inlen, CN_MSG_DONTWAIT);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			if (n < 0)
				dev_break(d, "the circuit is broken");
			else
				log_info("vm %s: the VM closed its control circuit",
					 d->vm->g->name);
			d->broken = true;
			return -1;
		}
		d->inlen += (size_t)n;
	}
}

static void serve(struct op *op, struct vm_dev *d)
{
	const char *why;
	int i, r;

	for (i = 0; i < VM_MSGS_PER_ROUND && !d->broken; i++) {
		if (!flush(d))
			break;
		r = take_message(d);
		if (r <= 0) {
			if (r == 0 && !d->broken && !(cn_poll_arm(&d->ep, CN_POLLIN) & CN_POLLIN))
				break;
			if (r < 0)
				break;
			continue; /* data came while we armed: read on */
		}
		d->inlen = 0;
		if (cn_msg_validate(&d->in, d->in.h.len, 0, &why)) {
			dev_break(d, why);
			break;
		}
		dispatch(op, d, &d->in);
	}
	if (i == VM_MSGS_PER_ROUND && !d->broken)
		/* out of budget, not of work: our own bell brings us back next round */
		cn_notifier_kick(&d->notif[CN_VM_VEC_RX]);
	else if (!d->broken && d->outlen)
		cn_poll_arm(&d->ep, CN_POLLOUT); /* the VM's reading will ring our TX */
	if (cn_ep_broken(&d->ep))
		dev_break(d, "the VM wrote indices out of range");
}

/*
 * The VM asks for a new control circuit (its driver or tool attaches, the
 * VM rebooted, or it broke the old one): format it again, forget any half
 * message, and tell the VM on its RESET vector. Any bytes of the old
 * circuit are gone; the next message starts a new stream.
 */
static void dev_reset(struct op *op, struct vm_dev *d)
{
	struct cn_circuit_params p = {
		.mode = CN_MODE_STREAM,
		.ring_size = { CN_VM_CTL_RING, CN_VM_CTL_RING },
	};
	uint64_t one = 1;

	memset(d->ctl_base, 0, d->ctl_size);
	if (cn_circuit_format(d->ctl_base, d->ctl_size, &p) ||
	    cn_ep_attach(&d->ep, d->ctl_base, d->ctl_size, CN_ROLE_ACCEPTOR)) {
		d->broken = true;
		return;
	}
	cn_ep_set_notifiers(&d->ep, &d->notif[CN_VM_VEC_RX], &d->notif[CN_VM_VEC_TX],
			    &d->notif[2 + CN_VM_VEC_RX], &d->notif[2 + CN_VM_VEC_TX]);
	d->broken = false;
	d->inlen = d->outlen = d->outoff = 0;
	d->resets++;
	log_debug("vm %s: control circuit formatted anew (reset %llu)", d->vm->g->name,
		  (unsigned long long)d->resets);
	serve(op, d); /* arm before the VM hears of it */
	if (write(d->reset_done_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("vm %s: cannot ring the VM's reset vector: %s", d->vm->g->name,
			 strerror(errno));
}

void vm_bell_event(struct op *op, struct evsrc *ev)
{
	struct vm_bell *b = (struct vm_bell *)ev;
	struct vm_dev *d = b->d;
	uint64_t v;

	/* reset the counter first: a ring after this point makes it readable again */
	if (read(ev->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (b->vector == CN_VM_VEC_RESET)
		dev_reset(op, d);
	else if (!d->broken)
		serve(op, d);
}

void vm_dev_event(struct op *op, struct evsrc *ev)
{
	struct vm_dev *d = (struct vm_dev *)ev;
	char buf[64];
	ssize_t n = recv(ev->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0 && errno == EAGAIN)
		return;
	/* QEMU says nothing after the setup: anything but EAGAIN is its end */
	log_info("vm %s: device of QEMU pid %d gone (%llu control messages served)", d->vm->g->name,
		 (int)d->pid, (unsigned long long)d->msgs);
	dev_free(op, d);
}

/* ---- the attach socket ---- */

void vm_sock_event(struct op *op, struct evsrc *ev)
{
	struct vm *vm = (struct vm *)ev;
	const struct guest_conf *gc = guest_conf(op, vm->g);
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	int fd = accept4(ev->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
	if (gc->uid >= 0 && cred.uid != (uid_t)gc->uid && cred.uid != 0) {
		log_warn("vm %s: attach from uid %u refused (the guest is uid %ld's)", vm->g->name,
			 (unsigned int)cred.uid, gc->uid);
		vm->refused++;
		close(fd);
		return;
	}
	if (vm->dev) {
		log_warn("vm %s: attach from pid %d refused: QEMU pid %d holds the VM's device",
			 vm->g->name, (int)cred.pid, (int)vm->dev->pid);
		vm->refused++;
		close(fd);
		return;
	}
	vm->dev = dev_new(op, vm, fd, cred.pid);
	if (!vm->dev) {
		close(fd);
		return;
	}
	vm->attaches++;
	log_info("vm %s: device attached by QEMU pid %d (%llu MiB)", vm->g->name, (int)cred.pid,
		 (unsigned long long)(vm->dev->size >> 20));
}

int vm_open(struct op *op, struct guest *g, const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vm *vm = calloc(1, sizeof(*vm));
	int err;

	if (!vm)
		return -ENOMEM;
	vm->g = g;
	snprintf(vm->path, sizeof(vm->path), "%s/ivshmem.sock", dir);
	if (strlen(vm->path) >= sizeof(sa.sun_path)) {
		log_err("vm %s: socket path %s is too long", g->name, vm->path);
		free(vm);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, vm->path, strlen(vm->path) + 1);
	/* QEMU's socket chardev is a stream */
	vm->ev.kind = EV_VM_SOCK;
	vm->ev.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (vm->ev.fd < 0) {
		free(vm);
		return -errno;
	}
	unlink(vm->path);
	if (bind(vm->ev.fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(vm->ev.fd, 8) ||
	    chmod(vm->path, 0600) || (err = vm_ep_add(op, &vm->ev))) {
		err = -errno;
		log_err("vm %s: cannot listen on %s: %s", g->name, vm->path, strerror(errno));
		close(vm->ev.fd);
		unlink(vm->path);
		free(vm);
		return err;
	}
	g->vm = vm;
	log_info("vm %s: QEMU attaches at %s (-chardev socket,path=%s,id=cn0 "
		 "-device ivshmem-doorbell,chardev=cn0,vectors=%d)",
		 g->name, vm->path, vm->path, CN_VM_VECTORS);
	return 0;
}

void vm_close(struct op *op, struct guest *g)
{
	struct vm *vm = g->vm;

	if (!vm)
		return;
	if (vm->dev)
		dev_free(op, vm->dev);
	epoll_ctl(op->epfd, EPOLL_CTL_DEL, vm->ev.fd, NULL);
	close(vm->ev.fd);
	unlink(vm->path);
	free(vm);
	g->vm = NULL;
}

void vm_status(const struct guest *g, struct vm_status *st)
{
	const struct vm *vm = g->vm;

	memset(st, 0, sizeof(*st));
	if (!vm)
		return;
	st->attached = vm->dev != NULL;
	st->pid = vm->dev ? vm->dev->pid : 0;
	st->memory = vm->dev ? vm->dev->size : 0;
	st->control_ok = vm->dev && !vm->dev->broken;
	st->messages = vm->dev ? vm->dev->msgs : 0;
	st->resets = vm->dev ? vm->dev->resets : 0;
	st->attaches = vm->attaches;
	st->refused = vm->refused;
	st->violations = vm->violations;
}
