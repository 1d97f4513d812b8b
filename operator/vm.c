// SPDX-License-Identifier: MIT
/*
 * operator/vm.c - VM guests (circnet/vm.h): the operator as the ivshmem
 * server of each VM, the VM's control circuit and session, and the memory
 * and vectors of its pairs.
 *
 * Owns, per VM guest (`vm ivshmem` in its config block), the socket QEMU's
 * ivshmem-doorbell devices connect to (run-dir/guests/NAME/ivshmem.sock),
 * and per connected device: its memory (a sealed memfd of vm-memory bytes)
 * and the eventfds of its vectors, ours and the VM's.
 *
 * The first device QEMU connects is the control device: the operator's end
 * of the control circuit at its offset 0 (vm.h) is the VM's session, the
 * same protocol and the same core code as a process's Unix socket, minus
 * fds. Every further device is a pair device: free until the VM's first
 * circuit with a host peer, then that pair's region for as long as the
 * device lives. It is never given to another peer: the peer's processes may
 * keep the memory mapped after their last circuit, and nothing can take a
 * mapping back. On a pair device the host peer is peer 0 and each circuit
 * takes a vector pair, one eventfd per direction and side. The proxy
 * stack is a host peer like any other (a VM's off-host traffic).
 *
 * Two VMs share a device instead (pair_share): QEMU takes a device's memory
 * when it creates the device, so a pair device that attaches while another
 * VM (one the policy may let talk to this one) has a free pair device
 * becomes that device's other half, with the vectors crossed over: each
 * VM's own vectors are the other's peer 0.
 *
 * The ivshmem-server protocol (QEMU docs/specs/ivshmem-spec.rst): on
 * connect, little-endian int64 messages, some with one fd: the protocol
 * version (0), the client's peer id, -1 with the shared memory, then for
 * every peer its id once per vector with that vector's eventfd (the
 * client's own id: the eventfds QEMU turns into its MSI-X interrupts). We
 * announce peer 0 (us, or the host peer) and the VM itself, nobody else,
 * so the VM can ring no one but the other end of each device.
 *
 * The operator maps only the control circuit's pages (and, for a moment,
 * the slot of a circuit whose VM end is gone: pool_slot_vm_reset), and
 * reads them as the rings do everywhere: a VM that scribbles over them
 * breaks its own control circuit (we stop serving it and count it), never
 * the operator. Every call on it is non-blocking: the operator's loop must
 * not wait for a guest.
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
#include "policy.h"

#define VM_MSGS_PER_ROUND 64	      /* control messages served per wake-up: fairness */
#define VM_BELLS	  3	      /* our vectors the VM may ring: RX, TX and RESET */
#define VM_OUT_BYTES	  (32u << 10) /* replies and pushes waiting for ring space */

struct vm_dev;

struct vm_bell {
	struct evsrc ev; /* one of our vectors' eventfds (EV_VM_BELL) */
	struct vm_dev *d;
	unsigned int vector;
};

/* The control device's state: its circuit, and the VM's session on it. */
struct vm_ctl {
	void *base; /* the control circuit's pages, nothing else */
	size_t size;
	/* notif[0..1]: our RX/TX vectors (we sleep), [2..3]: the VM's (we ring) */
	struct cn_notifier notif[4];
	struct vm_bell bell[VM_BELLS];
	int reset_done_fd; /* the VM's CN_VM_VEC_RESET eventfd: "your circuit is new" */
	struct cn_endpoint ep;
	struct session *s; /* the VM's session while the circuit is served */
	bool broken;	   /* the VM broke the circuit: served again after a reset */
	bool serving;	   /* inside serve(): it flushes at the end */
	uint64_t resets, msgs;
	size_t inlen, outlen, outoff;
	union cn_msg in;
	uint8_t out[VM_OUT_BYTES];
};

/* A pair device's state: its memory and vectors, and whose pair it is. */
struct vm_pair {
	int memfd;
	uint64_t peer_gid; /* the other guest of the pair, 0: free */
	char peer[CN_NAME_MAX];
	int host_vec[CN_VM_PAIR_VECTORS]; /* peer 0's: QEMU writes them when the VM rings */
	int vm_vec[CN_VM_PAIR_VECTORS];	  /* the VM's: QEMU turns them into interrupts */
	uint32_t pairs_used;		  /* bit i: vector pair i has a circuit */
	/*
	 * VM to VM: the other VM's device with the same memory. Its peer 0 is
	 * our VM and ours is it: our host_vec are its vm_vec and the other way
	 * round. The first of the two (shared == false) keeps the vector
	 * pairs' bitmap for both.
	 */
	struct vm_dev *partner;
	bool shared;  /* set up as the second of a VM pair */
	bool carried; /* a circuit was given memory in it */
};

struct vm_dev {
	struct evsrc ev; /* QEMU's connection (EV_VM_DEV): its hang-up ends the device */
	struct vm *vm;
	pid_t pid;
	uint32_t position; /* the VM's peer id on it (IVPosition) */
	uint64_t size;
	struct vm_ctl *ctl;   /* the control device */
	struct vm_pair *pair; /* or a pair device */
};

struct vm {
	struct evsrc ev; /* ivshmem.sock (EV_VM_SOCK) */
	struct guest *g;
	char path[CFG_PATH_MAX + 80];
	struct vm_dev *ctl; /* the control device, while QEMU holds it */
	struct vm_dev *pairs[CN_VM_PAIRS_MAX];
	uint64_t attaches, refused, violations;
};

static void serve(struct op *op, struct vm_dev *d);

static int vm_ep_add(struct op *op, struct evsrc *ev)
{
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = ev };

	return epoll_ctl(op->epfd, EPOLL_CTL_ADD, ev->fd, &e) ? -errno : 0;
}

static void close_all(int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int make_eventfds(int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (fds[i] < 0)
			return -errno;
	}
	return 0;
}

/* ---- the ivshmem-server protocol ---- */

static int send_posn(int sock, int64_t posn, int fd)
{
	return cn_send_fds(sock, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0, &posn, sizeof(posn));
}

/* Everything a device gets on connect: its id, its memory, peer 0's vectors and its own. */
static int send_setup(int sock, uint32_t position, int memfd, const int *peer0, int npeer0,
		      const int *own, int nown)
{
	int i, err;

	err = send_posn(sock, 0, -1); /* protocol version */
	if (!err)
		err = send_posn(sock, position, -1);
	if (!err)
		err = send_posn(sock, -1, memfd);
	for (i = 0; i < npeer0 && !err; i++)
		err = send_posn(sock, CN_VM_PEER_OPERATOR, peer0[i]);
	for (i = 0; i < nown && !err; i++)
		err = send_posn(sock, position, own[i]);
	return err;
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

/* ---- devices ---- */

static void ctl_free(struct op *op, struct vm_dev *d)
{
	struct vm_ctl *c = d->ctl;
	int i;

	if (c->s)
		core_vm_session_close(op, c->s, "its VM's device is gone");
	c->s = NULL;
	for (i = 0; i < VM_BELLS; i++)
		if (c->bell[i].ev.fd >= 0)
			epoll_ctl(op->epfd, EPOLL_CTL_DEL, c->bell[i].ev.fd, NULL);
	for (i = 0; i < 4; i++)
		cn_notifier_release(&c->notif[i]);
	/* the RX and TX bells' fds were the notifiers': closed just now */
	if (c->bell[CN_VM_VEC_RESET].ev.fd >= 0)
		close(c->bell[CN_VM_VEC_RESET].ev.fd);
	if (c->reset_done_fd >= 0)
		close(c->reset_done_fd);
	if (c->base)
		munmap(c->base, c->size);
	free(c);
}

static void pair_free(struct op *op, struct vm_dev *d)
{
	struct vm_pair *p = d->pair;

	pool_vm_gone(op, d, d->vm);
	if (p->partner) {
		struct vm_pair *o = p->partner->pair;

		o->partner = NULL;
		o->shared = false;
		/*
		 * A device that carried a circuit stays dead for the other VM's
		 * lifetime (its peer had the memory); one that never did is
		 * free again, so that a QEMU coming and going cannot use up
		 * another VM's devices.
		 */
		if (!o->carried && !p->carried) {
			o->peer_gid = 0;
			o->peer[0] = 0;
		}
	}
	close_all(p->host_vec, CN_VM_PAIR_VECTORS);
	close_all(p->vm_vec, CN_VM_PAIR_VECTORS);
	if (p->memfd >= 0)
		close(p->memfd);
	free(p);
}

static void dev_free(struct op *op, struct vm_dev *d)
{
	unsigned int i;

	if (d->ctl)
		ctl_free(op, d);
	if (d->pair)
		pair_free(op, d);
	if (d->ev.fd >= 0) {
		epoll_ctl(op->epfd, EPOLL_CTL_DEL, d->ev.fd, NULL);
		close(d->ev.fd);
	}
	if (d->vm->ctl == d)
		d->vm->ctl = NULL;
	for (i = 0; i < CN_VM_PAIRS_MAX; i++)
		if (d->vm->pairs[i] == d)
			d->vm->pairs[i] = NULL;
	op->vm_devices--;
	free(d);
}

/* Our vectors' eventfds: RX and TX become the notifiers we sleep on, all three bells. */
static int ctl_bells(struct op *op, struct vm_dev *d, const int ours[VM_BELLS],
		     const int theirs[CN_VM_VECTORS])
{
	struct vm_ctl *c = d->ctl;
	int i, err;

	for (i = 0; i < VM_BELLS; i++) {
		int dupfd = fcntl(ours[i], F_DUPFD_CLOEXEC, 0);

		if (dupfd < 0)
			return -errno;
		c->bell[i].ev.kind = EV_VM_BELL;
		c->bell[i].ev.fd = dupfd;
		c->bell[i].d = d;
		c->bell[i].vector = (unsigned int)i;
		/* RX and TX: the notifiers we sleep on own their fds */
		if (i != CN_VM_VEC_RESET && (err = cn_eventfd_notifier_init(&c->notif[i], dupfd))) {
			c->bell[i].ev.fd = -1; /* nobody owns it: ours to close */
			close(dupfd);
			return err;
		}
		err = vm_ep_add(op, &c->bell[i].ev);
		if (err)
			return err;
	}
	for (i = 0; i < 2; i++) {
		int dupfd = fcntl(theirs[i], F_DUPFD_CLOEXEC, 0);

		if (dupfd < 0)
			return -errno;
		err = cn_eventfd_notifier_init(&c->notif[2 + i], dupfd);
		if (err) {
			close(dupfd);
			return err;
		}
	}
	c->reset_done_fd = fcntl(theirs[CN_VM_VEC_RESET], F_DUPFD_CLOEXEC, 0);
	return c->reset_done_fd < 0 ? -errno : 0;
}

/* The control device: its memory, with our mapping of the control circuit only. */
static int ctl_setup(struct op *op, struct vm_dev *d)
{
	int ours[VM_BELLS] = { -1, -1, -1 }, theirs[CN_VM_VECTORS] = { -1, -1, -1, -1 };
	struct vm_ctl *c = calloc(1, sizeof(*c));
	int memfd, err, i;

	if (!c)
		return -ENOMEM;
	d->ctl = c;
	c->reset_done_fd = -1;
	for (i = 0; i < VM_BELLS; i++)
		c->bell[i].ev.fd = -1;
	c->broken = true; /* served once the VM asks for its circuit (CN_VM_VEC_RESET) */
	c->size = cn_vm_ctl_size();
	if (!c->size || c->size > d->size)
		return -EINVAL;
	memfd = vm_memfd("circnet-vm-control", d->size);
	if (memfd < 0)
		return memfd;
	c->base = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (c->base == MAP_FAILED) {
		c->base = NULL;
		close(memfd);
		return -errno;
	}
	err = make_eventfds(ours, VM_BELLS);
	if (!err)
		err = make_eventfds(theirs, CN_VM_VECTORS);
	if (!err)
		err = ctl_bells(op, d, ours, theirs);
	if (!err)
		err = send_setup(d->ev.fd, d->position, memfd, ours, VM_BELLS, theirs,
				 CN_VM_VECTORS);
	close(memfd); /* QEMU and our mapping keep the memory */
	close_all(ours, VM_BELLS);
	close_all(theirs, CN_VM_VECTORS);
	return err;
}

/* A pair device: its memory and all its vectors' eventfds stay with us, for the circuits. */
/*
 * A free pair device of another running VM that has none with ours yet:
 * the device we are setting up becomes its other half (VM to VM). NULL
 * when there is none.
 */
static struct vm_dev *pair_partner_for(struct op *op, struct vm *vm)
{
	struct list *pos;
	unsigned int i;

	list_for_each(pos, &op->guests) {
		struct guest *g = container_of(pos, struct guest, link);
		struct vm_dev *free_dev = NULL;
		bool paired = false;

		if (!g->vm || g->vm == vm || !g->vm->ctl || g->conf < 0 || vm->g->conf < 0)
			continue;
		/* only VMs the policy may let talk share memory and doorbells */
		if (!policy_may_ever_allow(op->cfg, vm->g->conf, g->conf) &&
		    !policy_may_ever_allow(op->cfg, g->conf, vm->g->conf))
			continue;
		for (i = 0; i < CN_VM_PAIRS_MAX; i++) {
			struct vm_dev *o = g->vm->pairs[i];

			if (!o)
				continue;
			if (o->pair->peer_gid == vm->g->id && o->pair->partner)
				paired = true; /* one live shared device per VM pair is enough */
			else if (!o->pair->peer_gid && !free_dev)
				free_dev = o;
		}
		if (!paired && free_dev)
			return free_dev;
	}
	return NULL;
}

/* The second half of a VM pair: the partner's memory, its vectors crossed over. */
static int pair_share(struct vm_dev *d, struct vm_dev *o)
{
	struct vm_pair *p = d->pair;
	int i;

	p->memfd = fcntl(o->pair->memfd, F_DUPFD_CLOEXEC, 0);
	if (p->memfd < 0)
		return -errno;
	for (i = 0; i < CN_VM_PAIR_VECTORS; i++) {
		p->host_vec[i] = fcntl(o->pair->vm_vec[i], F_DUPFD_CLOEXEC, 0);
		p->vm_vec[i] = fcntl(o->pair->host_vec[i], F_DUPFD_CLOEXEC, 0);
		if (p->host_vec[i] < 0 || p->vm_vec[i] < 0)
			return -errno;
	}
	d->size = o->size; /* the BAR is the memory's size */
	p->partner = o;
	p->shared = true;
	p->peer_gid = o->vm->g->id;
	snprintf(p->peer, sizeof(p->peer), "%s", o->vm->g->name);
	o->pair->partner = d;
	o->pair->peer_gid = d->vm->g->id;
	snprintf(o->pair->peer, sizeof(o->pair->peer), "%s", d->vm->g->name);
	log_info("vm %s: pair device %u shares vm %s's device %u: circuits between the two live "
		 "there",
		 d->vm->g->name, d->position, o->vm->g->name, o->position);
	return send_setup(d->ev.fd, d->position, p->memfd, p->host_vec, CN_VM_PAIR_VECTORS,
			  p->vm_vec, CN_VM_PAIR_VECTORS);
}

static int pair_setup(struct op *op, struct vm_dev *d)
{
	struct vm_pair *p = calloc(1, sizeof(*p));
	struct vm_dev *o;
	int err, i;

	if (!p)
		return -ENOMEM;
	d->pair = p;
	for (i = 0; i < CN_VM_PAIR_VECTORS; i++)
		p->host_vec[i] = p->vm_vec[i] = -1;
	o = pair_partner_for(op, d->vm);
	if (o)
		return pair_share(d, o);
	p->memfd = vm_memfd("circnet-vm-pair", d->size);
	if (p->memfd < 0)
		return p->memfd;
	err = make_eventfds(p->host_vec, CN_VM_PAIR_VECTORS);
	if (!err)
		err = make_eventfds(p->vm_vec, CN_VM_PAIR_VECTORS);
	if (!err)
		err = send_setup(d->ev.fd, d->position, p->memfd, p->host_vec, CN_VM_PAIR_VECTORS,
				 p->vm_vec, CN_VM_PAIR_VECTORS);
	return err;
}

static struct vm_dev *dev_new(struct op *op, struct vm *vm, int sock, pid_t pid, int pair)
{
	struct vm_dev *d = calloc(1, sizeof(*d));
	int err;

	if (!d)
		return NULL;
	d->vm = vm;
	d->pid = pid;
	d->ev.kind = EV_VM_DEV;
	d->ev.fd = sock;
	d->size = guest_conf(op, vm->g)->vm_memory;
	d->position = pair < 0 ? CN_VM_PEER_GUEST : CN_VM_PEER_GUEST + 1 + (uint32_t)pair;
	op->vm_devices++;
	err = pair < 0 ? ctl_setup(op, d) : pair_setup(op, d);
	if (!err)
		err = vm_ep_add(op, &d->ev);
	if (err) {
		log_err("vm %s: cannot set up a device of QEMU pid %d: %s", vm->g->name, (int)pid,
			strerror(-err));
		d->ev.fd = -1; /* the caller closes the socket */
		dev_free(op, d);
		return NULL;
	}
	return d;
}

/* ---- the control circuit ---- */

static void ctl_break(struct vm_dev *d, const char *why)
{
	struct vm_ctl *c = d->ctl;

	if (c->broken)
		return;
	c->broken = true;
	d->vm->violations++;
	log_warn("vm %s: control circuit dropped: %s (until the VM asks for a new one)",
		 d->vm->g->name, why);
	cn_reset(&c->ep);
}

static bool flush(struct vm_dev *d);

int vm_session_send(struct vm_dev *d, const struct cn_msg_hdr *h, int nfds)
{
	struct vm_ctl *c = d->ctl;

	if (nfds)
		return -EINVAL; /* core gives a VM's end no fds */
	if (!c || c->broken)
		return -EPIPE;
	if (c->outlen + h->len > sizeof(c->out))
		return -ENOBUFS; /* the VM does not read: what it misses is its loss */
	memcpy(c->out + c->outlen, h, h->len);
	c->outlen += h->len;
	/*
	 * Out at once: a push (NEW_CONN, RESET) comes while we serve someone
	 * else, and the VM may be asleep on its ring. What does not fit waits
	 * for the VM's reading to ring our TX vector.
	 */
	if (!c->serving && !flush(d) && !c->broken &&
	    (cn_poll_arm(&c->ep, CN_POLLOUT) & CN_POLLOUT))
		flush(d);
	return 0;
}

void vm_session_gone(struct vm_dev *d)
{
	if (d->ctl) {
		d->ctl->s = NULL;
		d->ctl->broken = true; /* until the VM asks for a new circuit */
	}
}

/* Send what is queued for the VM. true when nothing is left. */
static bool flush(struct vm_dev *d)
{
	struct vm_ctl *c = d->ctl;

	while (c->outoff < c->outlen) {
		ssize_t n =
			cn_send(&c->ep, c->out + c->outoff, c->outlen - c->outoff, CN_MSG_DONTWAIT);

		if (n == -EAGAIN)
			return false;
		if (n < 0) {
			ctl_break(d, "the circuit failed under a reply");
			return false;
		}
		c->outoff += (size_t)n;
	}
	c->outlen = c->outoff = 0;
	return true;
}

/*
 * Read toward one whole message: its header first, then the rest its
 * length names. 1: a message is in c->in; 0: not yet (EAGAIN); -1: done
 * with this circuit (EOF, broken, a bad length).
 */
static int take_message(struct vm_dev *d)
{
	struct vm_ctl *c = d->ctl;

	for (;;) {
		size_t want = sizeof(struct cn_msg_hdr);
		ssize_t n;

		if (c->inlen >= sizeof(struct cn_msg_hdr)) {
			uint32_t len = c->in.h.len; /* our copy: the ring cannot change it */

			if (len < sizeof(struct cn_msg_hdr) || len > sizeof(c->in)) {
				ctl_break(d, "a message length out of range");
				return -1;
			}
			want = len;
			if (c->inlen == want)
				return 1;
		}
		n = cn_recv(&c->ep, (char *)&c->in + c->inlen, want - c->inlen, CN_MSG_DONTWAIT);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			if (n < 0)
				ctl_break(d, "the circuit is broken");
			else
				log_info("vm %s: the VM closed its control circuit",
					 d->vm->g->name);
			c->broken = true;
			return -1;
		}
		c->inlen += (size_t)n;
	}
}

static void serve(struct op *op, struct vm_dev *d)
{
	struct vm_ctl *c = d->ctl;
	const char *why;
	int i, r;

	c->serving = true;
	for (i = 0; i < VM_MSGS_PER_ROUND && !c->broken; i++) {
		if (!flush(d))
			break;
		r = take_message(d);
		if (r < 0)
			break;
		if (r == 0) {
			if (c->broken || !(cn_poll_arm(&c->ep, CN_POLLIN) & CN_POLLIN))
				break;
			continue; /* data came while we armed: read on */
		}
		c->inlen = 0;
		if (cn_msg_validate(&c->in, c->in.h.len, 0, &why)) {
			ctl_break(d, why);
			break;
		}
		c->msgs++;
		if (core_vm_dispatch(op, c->s, &c->in)) {
			ctl_break(d, "a request the VM's session cannot go on after");
			break;
		}
	}
	c->serving = false;
	if (!c->broken)
		flush(d); /* what the last message's answer left */
	if (i == VM_MSGS_PER_ROUND && !c->broken)
		/* out of budget, not of work: our own bell brings us back next round */
		cn_notifier_kick(&c->notif[CN_VM_VEC_RX]);
	else if (!c->broken && c->outlen)
		cn_poll_arm(&c->ep, CN_POLLOUT); /* the VM's reading will ring our TX */
	if (cn_ep_broken(&c->ep))
		ctl_break(d, "the VM wrote indices out of range");
}

/*
 * The VM asks for a new control circuit (its driver or tool attaches, the
 * VM rebooted, or it broke the old one): the old session ends with all its
 * circuits, the circuit is formatted again and the VM told on its RESET
 * vector. The next message starts a new stream and a new session.
 */
static void ctl_reset(struct op *op, struct vm_dev *d)
{
	struct cn_circuit_params p;
	struct vm_ctl *c = d->ctl;
	uint64_t one = 1;

	cn_vm_ctl_params(&p);
	if (c->s)
		core_vm_session_close(op, c->s, "the VM asked for a new control circuit");
	c->s = NULL;
	c->broken = true;
	memset(c->base, 0, c->size);
	if (cn_circuit_format(c->base, c->size, &p) ||
	    cn_ep_attach(&c->ep, c->base, c->size, CN_ROLE_ACCEPTOR))
		return;
	cn_ep_set_notifiers(&c->ep, &c->notif[CN_VM_VEC_RX], &c->notif[CN_VM_VEC_TX],
			    &c->notif[2 + CN_VM_VEC_RX], &c->notif[2 + CN_VM_VEC_TX]);
	c->s = core_vm_session(op, d->vm->g, d, d->pid);
	if (!c->s)
		return;
	c->broken = false;
	c->inlen = c->outlen = c->outoff = 0;
	c->resets++;
	log_debug("vm %s: control circuit formatted anew (reset %llu)", d->vm->g->name,
		  (unsigned long long)c->resets);
	serve(op, d); /* arm before the VM hears of it */
	if (write(c->reset_done_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
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
		ctl_reset(op, d);
	else if (!d->ctl->broken)
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
	if (d->ctl)
		log_info("vm %s: control device of QEMU pid %d gone (%llu control messages "
			 "served)",
			 d->vm->g->name, (int)d->pid, (unsigned long long)d->ctl->msgs);
	else
		log_info("vm %s: pair device %u of QEMU pid %d gone%s%s", d->vm->g->name,
			 d->position, (int)d->pid, d->pair->peer_gid ? ", peer " : "",
			 d->pair->peer_gid ? d->pair->peer : "");
	dev_free(op, d);
}

/* ---- pairs (pool.c asks) ---- */

int vm_pair_memory(struct op *op, const struct guest *vm, const struct guest *host, size_t *size,
		   struct vm_dev **dev)
{
	struct vm *v = vm->vm;
	struct vm_dev *d = NULL;
	unsigned int i;
	int fd;

	if (!v || !v->ctl)
		return -ENOTCONN;
	for (i = 0; i < CN_VM_PAIRS_MAX && !d; i++)
		/* a VM peer's device counts only while its other half lives */
		if (v->pairs[i] && v->pairs[i]->pair->peer_gid == host->id &&
		    (!host->vm || v->pairs[i]->pair->partner))
			d = v->pairs[i];
	/* VM to VM: only a device shared at attach (pair_share) will do */
	for (i = 0; i < CN_VM_PAIRS_MAX && !d && !host->vm; i++)
		if (v->pairs[i] && !v->pairs[i]->pair->peer_gid)
			d = v->pairs[i];
	if (!d && host->vm) {
		log_warn("vm %s: no device shared with vm %s: both need a free pair device when the "
			 "later one starts (docs/vms.md)",
			 vm->name, host->name);
		return -ENOBUFS;
	}
	if (!d) {
		log_warn("vm %s: no pair device left for a new peer (%s): start QEMU with more "
			 "(scripts/vm-run.sh --peers)",
			 vm->name, host->name);
		return -ENOBUFS;
	}
	if (!d->pair->peer_gid) {
		d->pair->peer_gid = host->id;
		snprintf(d->pair->peer, sizeof(d->pair->peer), "%s", host->name);
		log_info("vm %s: pair device %u is %s's from now on", vm->name, d->position,
			 host->name);
	}
	fd = fcntl(d->pair->memfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	*size = d->size;
	*dev = d->pair->shared ? d->pair->partner : d; /* the first half keeps the books */
	d->pair->carried = true;
	if (d->pair->partner)
		d->pair->partner->pair->carried = true;
	return fd;
}

int vm_vectors_get(struct vm_dev *d)
{
	uint32_t free_pairs = ~d->pair->pairs_used;
	int i;

	if (!free_pairs)
		return -1;
	i = __builtin_ctz(free_pairs);
	if (i >= CN_VM_PAIR_VECTORS / 2)
		return -1;
	d->pair->pairs_used |= 1u << i;
	return i;
}

void vm_vectors_put(struct vm_dev *d, int pair)
{
	uint64_t v;
	int i;

	d->pair->pairs_used &= ~(1u << pair);
	/*
	 * A new circuit on these vectors starts with no wake-up of the old one
	 * pending. Not between two VMs: there these are the other QEMU's
	 * interrupt eventfds, its to read.
	 */
	for (i = 0; i < 2 && !d->pair->partner; i++)
		if (read(d->pair->host_vec[2 * pair + i], &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_debug("vm: draining a vector: %s", strerror(errno));
}

int vm_vectors_fds(struct vm_dev *d, int pair, int fds[4])
{
	/* the host end: wait_rx, wait_tx (its sleeps), sig_rx, sig_tx (the VM's vectors) */
	const int src[4] = { d->pair->host_vec[2 * pair], d->pair->host_vec[2 * pair + 1],
			     d->pair->vm_vec[2 * pair], d->pair->vm_vec[2 * pair + 1] };
	int i;

	for (i = 0; i < 4; i++) {
		fds[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 0);
		if (fds[i] < 0) {
			int err = -errno;

			while (i-- > 0) {
				close(fds[i]);
				fds[i] = -1;
			}
			return err;
		}
	}
	return 0;
}

void vm_vectors_wake_other(struct vm_dev *d, int pair, const struct guest *gone)
{
	/* d is the first half: its host_vec wake its peer 0, its vm_vec its own VM */
	const int *fds = d->vm->g == gone ? d->pair->host_vec : d->pair->vm_vec;
	uint64_t one = 1;
	int i;

	for (i = 0; i < 2; i++)
		if (write(fds[2 * pair + i], &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_debug("vm: waking a circuit's other end: %s", strerror(errno));
}

uint32_t vm_dev_position(const struct vm_dev *d, const struct guest *g)
{
	/* VM to VM: each VM names the device by its own half's IVPosition */
	if (d->vm->g != g && d->pair && d->pair->partner)
		return d->pair->partner->position;
	return d->position;
}

bool vm_dev_is(const struct vm_dev *d, const struct vm_dev *which)
{
	return d == which || (d->pair && d->pair->partner == which);
}

/* ---- the attach socket ---- */

void vm_sock_event(struct op *op, struct evsrc *ev)
{
	struct vm *vm = (struct vm *)ev;
	const struct guest_conf *gc = guest_conf(op, vm->g);
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	int fd = accept4(ev->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), pair = -1;
	struct vm_dev *d;

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
	/* the control device first; then the same QEMU's pair devices */
	if (vm->ctl) {
		for (pair = 0; pair < CN_VM_PAIRS_MAX && vm->pairs[pair]; pair++)
			;
		if (cred.pid != vm->ctl->pid || pair == CN_VM_PAIRS_MAX) {
			log_warn("vm %s: attach from pid %d refused: %s", vm->g->name,
				 (int)cred.pid,
				 cred.pid != vm->ctl->pid ? "another QEMU holds the VM"
							  : "it has all its pair devices");
			vm->refused++;
			close(fd);
			return;
		}
	}
	d = dev_new(op, vm, fd, cred.pid, pair);
	if (!d) {
		close(fd);
		return;
	}
	if (pair < 0) {
		vm->ctl = d;
		vm->attaches++;
		log_info("vm %s: control device attached by QEMU pid %d (%llu MiB)", vm->g->name,
			 (int)cred.pid, (unsigned long long)(d->size >> 20));
	} else {
		vm->pairs[pair] = d;
		log_debug("vm %s: pair device %u attached", vm->g->name, d->position);
	}
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
	log_info("vm %s: QEMU attaches at %s (scripts/vm-run.sh --print shows how)", g->name,
		 vm->path);
	return 0;
}

void vm_close(struct op *op, struct guest *g)
{
	struct vm *vm = g->vm;
	unsigned int i;

	if (!vm)
		return;
	for (i = 0; i < CN_VM_PAIRS_MAX; i++)
		if (vm->pairs[i])
			dev_free(op, vm->pairs[i]);
	if (vm->ctl)
		dev_free(op, vm->ctl);
	epoll_ctl(op->epfd, EPOLL_CTL_DEL, vm->ev.fd, NULL);
	close(vm->ev.fd);
	unlink(vm->path);
	free(vm);
	g->vm = NULL;
}

void vm_status(const struct guest *g, struct vm_status *st)
{
	const struct vm *vm = g->vm;
	const struct vm_ctl *c;
	unsigned int i;

	memset(st, 0, sizeof(*st));
	if (!vm)
		return;
	c = vm->ctl ? vm->ctl->ctl : NULL;
	st->attached = c != NULL;
	st->pid = vm->ctl ? vm->ctl->pid : 0;
	st->memory = vm->ctl ? vm->ctl->size : 0;
	st->control_ok = c && !c->broken;
	st->messages = c ? c->msgs : 0;
	st->resets = c ? c->resets : 0;
	st->attaches = vm->attaches;
	st->refused = vm->refused;
	st->violations = vm->violations;
	for (i = 0; i < CN_VM_PAIRS_MAX; i++)
		if (vm->pairs[i]) {
			st->pair_devices++;
			st->pairs_assigned += vm->pairs[i]->pair->peer_gid != 0;
		}
}
