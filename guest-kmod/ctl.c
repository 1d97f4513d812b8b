// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * ctl.c - the VM's session with the operator, in the kernel: the control
 * circuit at offset 0 of the control device (the device whose IVPosition
 * is CN_VM_PEER_GUEST, circnet/vm.h), shared by every socket of the VM.
 *
 * One thread, circnet-ctl, owns the reading side: it asks the operator for
 * a fresh circuit (the RESET vector), says HELLO, then reads messages
 * (proto.h, each validated exactly as the operator's sessions are) and
 * hands them out: a reply to the request with its seq, NEW_CONN and RESET
 * to the sockets. Requests are written by whoever makes them, one message
 * at a time under send_lock. The thread never writes: a full ring to the
 * operator must not stop it from draining the ring from the operator,
 * which is what the operator waits for. What the thread has to say (a
 * CLOSED for a connection nobody wants any more) goes to a work item.
 *
 * The operator is trusted to mediate, not to be well-formed: a message
 * that fails validation ends the session (the VM's sockets then fall back
 * to refusing connects), it never reaches the sockets.
 */
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/rwsem.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include <circnet/ivshmem.h>
#include <circnet/vm.h>

#include "circnet.h"

#define CTL_START_TIMEOUT (10 * HZ) /* the operator answers RESET and HELLO within */
#define CTL_SEND_TIMEOUT  (10 * HZ) /* ring space for a request */
#define CTL_CALL_TIMEOUT  (30 * HZ) /* a reply (a connect off-host is pending, not slow) */

enum ctl_state {
	CTL_IDLE,     /* no control device */
	CTL_STARTING, /* RESET and HELLO under way */
	CTL_UP,
	CTL_DOWN, /* failed: until the device goes */
};

struct later {
	struct list_head node;
	u16 type;
	u64 id;
};

static struct cn_ctl {
	struct cnv_dev *dev;
	struct cn_kcirc *kc;
	struct cn_endpoint *ep;
	wait_queue_head_t wq; /* the thread, writers, start waiters */
	atomic_t resets;      /* RESET vector interrupts */
	enum ctl_state state;
	bool broken; /* a write failed mid-message: the stream is lost */
	struct task_struct *thread;
	struct rw_semaphore life; /* read: using ep; write: tearing down */
	struct mutex send_lock;
	spinlock_t lock; /* reqs, next_seq, later */
	struct list_head reqs;
	u32 next_seq;
	struct list_head later;
	struct work_struct later_work;
	struct cn_msg_hello_ok hello;
} ctl;

static DEFINE_MUTEX(ctl_dev_lock); /* device added / removing */

static void ctl_wake(void *arg)
{
	wake_up_all(&ctl.wq);
}

static void ctl_reset_irq(void *arg)
{
	atomic_inc(&ctl.resets);
	wake_up_all(&ctl.wq);
}

static bool ctl_ready_for(unsigned int ev)
{
	return READ_ONCE(ctl.broken) || (cn_poll_arm(ctl.ep, ev) & (ev | CN_POLLERR | CN_POLLHUP));
}

/* len bytes from the operator, by deadline (jiffies; 0: none); the thread only. */
static int ctl_read(void *buf, size_t len, unsigned long deadline)
{
	size_t done = 0;

	while (done < len) {
		struct cn_span sp[2];
		ssize_t r = cn_peek(ctl.ep, sp, CN_MSG_DONTWAIT);

		if (r > 0) {
			size_t n = min_t(size_t, r, len - done);
			size_t first = min_t(size_t, n, sp[0].len);

			memcpy((char *)buf + done, sp[0].ptr, first);
			if (n > first)
				memcpy((char *)buf + done + first, sp[1].ptr, n - first);
			cn_consume(ctl.ep, n);
			done += n;
			continue;
		}
		if (r == 0)
			return -ECONNRESET;
		if (r != -EAGAIN)
			return (int)r;
		wait_event_interruptible_timeout(ctl.wq,
						 kthread_should_stop() || ctl_ready_for(CN_POLLIN), HZ);
		if (kthread_should_stop())
			return -EINTR;
		if (READ_ONCE(ctl.broken))
			return -EPIPE;
		if (deadline && time_after(jiffies, deadline))
			return -ETIMEDOUT;
	}
	return 0;
}

/* One whole message to the operator; the caller holds life (read). */
static int ctl_write(const struct cn_msg_hdr *h)
{
	size_t done = 0, len = h->len;
	int err = 0;

	mutex_lock(&ctl.send_lock);
	while (done < len && !err) {
		struct cn_span sp[2];
		ssize_t r;

		if (READ_ONCE(ctl.broken)) {
			err = -EPIPE;
			break;
		}
		r = cn_reserve(ctl.ep, len - done, sp, CN_MSG_DONTWAIT);
		if (r > 0) {
			size_t first = min_t(size_t, r, sp[0].len);

			memcpy(sp[0].ptr, (const char *)h + done, first);
			if ((size_t)r > first)
				memcpy(sp[1].ptr, (const char *)h + done + first, r - first);
			err = cn_commit(ctl.ep, r);
			done += r;
			continue;
		}
		if (r != -EAGAIN) {
			err = (int)r;
			break;
		}
		/* uninterruptible: half a message would corrupt the stream for all */
		if (!wait_event_timeout(ctl.wq, ctl_ready_for(CN_POLLOUT), CTL_SEND_TIMEOUT))
			err = -ETIMEDOUT;
	}
	if (err && done) {
		pr_warn("circnet: the control circuit failed mid-message (%d): session lost\n", err);
		WRITE_ONCE(ctl.broken, true);
		wake_up_all(&ctl.wq);
	}
	mutex_unlock(&ctl.send_lock);
	return err;
}

static int ctl_send(struct cn_msg_hdr *h)
{
	int err;

	down_read(&ctl.life);
	err = READ_ONCE(ctl.state) == CTL_UP ? ctl_write(h) : -ENETUNREACH;
	up_read(&ctl.life);
	return err;
}

int cn_ctl_notify(struct cn_msg_hdr *h)
{
	return ctl_send(h);
}

static void ctl_later_work(struct work_struct *w)
{
	for (;;) {
		struct cn_msg_id m;
		struct later *l;

		spin_lock(&ctl.lock);
		l = list_first_entry_or_null(&ctl.later, struct later, node);
		if (l)
			list_del(&l->node);
		spin_unlock(&ctl.lock);
		if (!l)
			return;
		cn_msg_init(&m.h, (enum cn_msg_type)l->type, sizeof(m), 0);
		m.id = l->id;
		ctl_send(&m.h);
		kfree(l);
	}
}

void cn_ctl_notify_later(u16 type, u64 id)
{
	struct later *l = kmalloc(sizeof(*l), GFP_KERNEL);

	if (!l)
		return; /* the operator learns it when the device goes */
	l->type = type;
	l->id = id;
	spin_lock(&ctl.lock);
	list_add_tail(&l->node, &ctl.later);
	spin_unlock(&ctl.lock);
	schedule_work(&ctl.later_work);
}

int cn_ctl_submit(struct cn_req *req, struct cn_msg_hdr *h)
{
	int err;

	down_read(&ctl.life);
	if (READ_ONCE(ctl.state) != CTL_UP) {
		up_read(&ctl.life);
		return -ENETUNREACH;
	}
	spin_lock(&ctl.lock);
	if (!++ctl.next_seq)
		ctl.next_seq = 1; /* 0 is a push's */
	req->seq = ctl.next_seq;
	req->err = 0;
	h->seq = req->seq;
	list_add_tail(&req->node, &ctl.reqs);
	spin_unlock(&ctl.lock);
	err = ctl_write(h);
	up_read(&ctl.life);
	/* not sent: done runs only if the session's end got to it first */
	if (err && !cn_ctl_cancel(req))
		err = 0;
	return err;
}

bool cn_ctl_cancel(struct cn_req *req)
{
	bool waiting = false;
	struct cn_req *r;

	spin_lock(&ctl.lock);
	list_for_each_entry(r, &ctl.reqs, node) {
		if (r == req) {
			list_del(&r->node);
			waiting = true;
			break;
		}
	}
	spin_unlock(&ctl.lock);
	return waiting;
}

struct call {
	struct cn_req req;
	struct completion done;
};

static void call_done(struct cn_req *req)
{
	complete(&container_of(req, struct call, req)->done);
}

int cn_ctl_call(struct cn_msg_hdr *h, union cn_msg *reply, u16 want)
{
	struct call *c = kzalloc(sizeof(*c), GFP_KERNEL);
	long left;
	int err;

	if (!c)
		return -ENOMEM;
	init_completion(&c->done);
	c->req.want = want;
	c->req.done = call_done;
	err = cn_ctl_submit(&c->req, h);
	if (err)
		goto out;
	left = wait_for_completion_killable_timeout(&c->done, CTL_CALL_TIMEOUT);
	if (left <= 0 && cn_ctl_cancel(&c->req)) {
		err = left ? -EINTR : -ETIMEDOUT;
		goto out;
	}
	if (left <= 0)
		wait_for_completion(&c->done); /* its reply is being handed over */
	err = c->req.err;
	if (!err)
		*reply = c->req.reply;
out:
	kfree(c);
	return err;
}

/*
 * A reply nobody waits for any more (its caller was interrupted or gave
 * up): what it made at the operator is given back, so nothing stays
 * allocated for a socket that does not exist.
 */
static void ctl_orphan_reply(const union cn_msg *m)
{
	if (m->h.type == CN_MSG_CONNECT_OK)
		cn_ctl_notify_later(CN_MSG_CLOSED, m->circuit.circuit_id);
	else if (m->h.type == CN_MSG_LISTEN_OK)
		cn_ctl_notify_later(CN_MSG_UNLISTEN, m->listen_ok.listener_id);
}

/* Hand a reply to its request (the thread). */
static void ctl_reply(const union cn_msg *m)
{
	struct cn_req *req = NULL, *r;

	spin_lock(&ctl.lock);
	list_for_each_entry(r, &ctl.reqs, node) {
		if (r->seq == m->h.seq) {
			list_del(&r->node);
			req = r;
			break;
		}
	}
	spin_unlock(&ctl.lock);
	if (!req) {
		ctl_orphan_reply(m); /* cancelled, or an UNLISTEN's OK */
		return;
	}
	if (m->h.type == CN_MSG_ERROR) {
		/* a user-space errno, never one of the kernel's internal ones (512+) */
		req->err = m->error.err > 0 && m->error.err < 512 ? -m->error.err : -EPROTO;
	} else if (m->h.type != req->want) {
		req->err = -EPROTO;
	} else {
		req->reply = *m;
		req->err = 0;
	}
	req->done(req);
}

/* The session ended: every request still waiting gets an error. */
static void ctl_fail_requests(void)
{
	for (;;) {
		struct cn_req *req;

		spin_lock(&ctl.lock);
		req = list_first_entry_or_null(&ctl.reqs, struct cn_req, node);
		if (req)
			list_del(&req->node);
		spin_unlock(&ctl.lock);
		if (!req)
			return;
		req->err = -ECONNABORTED;
		req->done(req);
	}
}

/* One message from the operator, validated, into m. */
static int ctl_read_msg(union cn_msg *m, unsigned long deadline)
{
	const char *why;
	int err = ctl_read(&m->h, sizeof(m->h), deadline);

	if (err)
		return err;
	if (m->h.len < sizeof(m->h) || m->h.len > sizeof(*m)) {
		pr_warn("circnet: the operator sent a message of %u bytes\n", m->h.len);
		return -EBADMSG;
	}
	err = ctl_read((char *)m + sizeof(m->h), m->h.len - sizeof(m->h), deadline);
	if (err)
		return err;
	if (cn_msg_validate(m, m->h.len, 0, &why)) {
		pr_warn("circnet: bad message from the operator: %s\n", why);
		return -EBADMSG;
	}
	return 0;
}

/* A fresh control circuit (the operator formats it anew), then HELLO. */
static int ctl_start(struct cnv_dev *d)
{
	int before = atomic_read(&ctl.resets), err;
	struct cn_msg_hello hello;
	union cn_msg *m;

	err = cnv_hook(d, CN_VM_VEC_RESET, ctl_reset_irq, NULL);
	if (err)
		return err;
	cnv_ring(d, cn_ivshmem_doorbell(CN_VM_PEER_OPERATOR, CN_VM_VEC_RESET));
	if (!wait_event_interruptible_timeout(ctl.wq, kthread_should_stop() ||
							      atomic_read(&ctl.resets) != before,
					      CTL_START_TIMEOUT))
		return -ETIMEDOUT;
	if (kthread_should_stop())
		return -EINTR;
	ctl.kc = cn_kcirc_open_ctl(d, ctl_wake, NULL, &err);
	if (!ctl.kc)
		return err;
	ctl.ep = cn_kcirc_ep(ctl.kc);
	cn_msg_init(&hello.h, CN_MSG_HELLO, sizeof(hello), 1);
	hello.pid = task_pid_nr(current);
	hello.flags = 0;
	err = ctl_write(&hello.h);
	if (err)
		return err;
	m = kmalloc(sizeof(*m), GFP_KERNEL);
	if (!m)
		return -ENOMEM;
	err = ctl_read_msg(m, jiffies + CTL_START_TIMEOUT);
	if (!err && m->h.type == CN_MSG_ERROR)
		err = -m->error.err;
	else if (!err && m->h.type != CN_MSG_HELLO_OK)
		err = -EPROTO;
	if (!err)
		ctl.hello = m->hello_ok;
	kfree(m);
	return err;
}

static int ctl_thread(void *arg)
{
	struct cnv_dev *d = arg;
	union cn_msg *m = kmalloc(sizeof(*m), GFP_KERNEL);
	int err = m ? ctl_start(d) : -ENOMEM;

	if (!err) {
		WRITE_ONCE(ctl.state, CTL_UP);
		wake_up_all(&ctl.wq);
		pr_info("circnet: guest %.*s, %u addresses: AF_INET stream sockets are circuits\n",
			CN_NAME_MAX, ctl.hello.name, ctl.hello.naddr);
	}
	while (!err) {
		err = ctl_read_msg(m, 0);
		if (err)
			break;
		switch (m->h.type) {
		case CN_MSG_NEW_CONN:
			cn_sock_new_conn(&m->circuit);
			break;
		case CN_MSG_RESET:
			cn_sock_reset(m->reset.circuit_id, m->reset.err);
			break;
		case CN_MSG_PUBLISH:
			break;
		default:
			ctl_reply(m);
		}
	}
	kfree(m);
	if (err != -EINTR)
		pr_warn("circnet: the session with the operator ended (%d)\n", err);
	/*
	 * Down under the write lock: a request submitted from now on is
	 * refused, and one submitted before is on the list that is failed.
	 */
	WRITE_ONCE(ctl.broken, true); /* writers waiting for space let go of life */
	wake_up_all(&ctl.wq);
	down_write(&ctl.life);
	WRITE_ONCE(ctl.state, CTL_DOWN);
	up_write(&ctl.life);
	wake_up_all(&ctl.wq);
	ctl_fail_requests();
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
	}
	return 0;
}

bool cn_ctl_ready(void)
{
	enum ctl_state st = READ_ONCE(ctl.state);

	if (st == CTL_STARTING)
		wait_event_interruptible_timeout(ctl.wq, READ_ONCE(ctl.state) != CTL_STARTING,
						 CTL_START_TIMEOUT);
	return READ_ONCE(ctl.state) == CTL_UP;
}

bool cn_ctl_owns(const struct cn_addr *a)
{
	u32 i, n = min_t(u32, ctl.hello.naddr, CN_GUEST_ADDRS);

	if (READ_ONCE(ctl.state) != CTL_UP)
		return false;
	for (i = 0; i < n; i++)
		if (ctl.hello.addrs[i].family == a->family &&
		    !memcmp(ctl.hello.addrs[i].addr, a->addr, sizeof(a->addr)))
			return true;
	return false;
}

void cn_ctl_device_added(struct cnv_dev *d)
{
	struct task_struct *t;

	if (cnv_position(d) != CN_VM_PEER_GUEST)
		return; /* a pair device: its circuits find it by IVPosition */
	mutex_lock(&ctl_dev_lock);
	if (ctl.dev) {
		mutex_unlock(&ctl_dev_lock);
		return;
	}
	ctl.dev = d;
	ctl.broken = false;
	WRITE_ONCE(ctl.state, CTL_STARTING);
	t = kthread_run(ctl_thread, d, "circnet-ctl");
	if (IS_ERR(t)) {
		WRITE_ONCE(ctl.state, CTL_IDLE);
		ctl.dev = NULL;
	} else {
		ctl.thread = t;
	}
	mutex_unlock(&ctl_dev_lock);
}

void cn_ctl_device_removing(struct cnv_dev *d)
{
	mutex_lock(&ctl_dev_lock);
	if (ctl.dev != d) {
		mutex_unlock(&ctl_dev_lock);
		return;
	}
	WRITE_ONCE(ctl.broken, true); /* writers stop waiting for space */
	wake_up_all(&ctl.wq);
	kthread_stop(ctl.thread);
	ctl.thread = NULL;
	down_write(&ctl.life);
	WRITE_ONCE(ctl.state, CTL_IDLE);
	if (ctl.kc)
		cn_kcirc_close(ctl.kc);
	ctl.kc = NULL;
	ctl.ep = NULL;
	cnv_unhook(d, CN_VM_VEC_RESET);
	ctl.dev = NULL;
	up_write(&ctl.life);
	ctl_fail_requests();
	mutex_unlock(&ctl_dev_lock);
	wake_up_all(&ctl.wq);
}

int cn_ctl_init(void)
{
	init_waitqueue_head(&ctl.wq);
	init_rwsem(&ctl.life);
	mutex_init(&ctl.send_lock);
	spin_lock_init(&ctl.lock);
	INIT_LIST_HEAD(&ctl.reqs);
	INIT_LIST_HEAD(&ctl.later);
	INIT_WORK(&ctl.later_work, ctl_later_work);
	ctl.state = CTL_IDLE;
	return 0;
}

void cn_ctl_exit(void)
{
	/* the devices are gone (cnv_exit ran): nothing queues work any more */
	cancel_work_sync(&ctl.later_work);
	while (!list_empty(&ctl.later)) {
		struct later *l = list_first_entry(&ctl.later, struct later, node);

		list_del(&l->node);
		kfree(l);
	}
}
