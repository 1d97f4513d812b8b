// SPDX-License-Identifier: MIT
/*
 * circuit/pool.c - the endpoint side of pair regions (circnet/pool.h): a
 * process-wide table of the chunks this process has mapped, by the id the
 * operator gave them.
 *
 * Why a table: a connect must not map anything once the pair's chunk is
 * mapped; mmap and munmap per circuit were most of a connect's cost (munmap
 * means a TLB shootdown on every CPU the process ran on). Why an idle LRU:
 * a client that opens one connection at a time would otherwise unmap the
 * chunk when its only circuit closes and map it again for the next one.
 *
 * The lock is taken only on setup and teardown, never on the data path.
 * After fork the child has the same mappings, so the table stays true; the
 * lock is held across the fork (so no other thread is halfway through a
 * change) and re-initialised in the child.
 *
 * A chunk in use keeps its memfd open, one per chunk and process: it proves
 * the memory to a restarted operator (claims) and carries it across exec,
 * for every circuit in the chunk, so sockets keep no memfd of their own. An
 * idle chunk keeps only its mapping; the setup message that brings it back
 * into use brings the memfd too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <circnet/notify.h>
#include <circnet/pool.h>
#include <circnet/region.h>

#define CHUNK_BUCKETS  256
#define CHUNK_IDLE_MAX 8 /* idle chunks kept mapped per process */

struct cn_chunk {
	uint64_t id;
	dev_t dev;
	ino_t ino;
	struct cn_region region;
	unsigned int refs;
	struct cn_chunk *hnext;
	struct cn_chunk *idle_prev, *idle_next; /* LRU of refs == 0, most recent first */
};

static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t chunk_once = PTHREAD_ONCE_INIT;
static struct cn_chunk *buckets[CHUNK_BUCKETS];
static struct cn_chunk *idle_head, *idle_tail;
static unsigned int nidle;

/* Held across fork, so the child's copy of the table is never caught half-changed. */
static void chunk_atfork_prepare(void)
{
	pthread_mutex_lock(&chunk_lock);
}

static void chunk_atfork_parent(void)
{
	pthread_mutex_unlock(&chunk_lock);
}

static void chunk_atfork_child(void)
{
	pthread_mutex_init(&chunk_lock, NULL);
}

static void chunk_init_once(void)
{
	pthread_atfork(chunk_atfork_prepare, chunk_atfork_parent, chunk_atfork_child);
}

static struct cn_chunk **bucket(uint64_t id)
{
	return &buckets[(id * 0x9e3779b97f4a7c15ull) >> 56 & (CHUNK_BUCKETS - 1)];
}

static void idle_unlink(struct cn_chunk *c)
{
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		idle_head = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	else
		idle_tail = c->idle_prev;
	c->idle_prev = c->idle_next = NULL;
	nidle--;
}

/* The memfd a chunk in use keeps: out of the application's low numbers, hidden. */
static int keep_fd(int fd)
{
	fd = cn_fd_lift(fd);
	if (cn_private_fd_hook)
		cn_private_fd_hook(fd, true);
	return fd;
}

static void drop_fd(struct cn_chunk *c)
{
	if (c->region.fd < 0)
		return;
	if (cn_private_fd_hook)
		cn_private_fd_hook(c->region.fd, false);
	close(c->region.fd);
	c->region.fd = -1;
}

static void chunk_destroy(struct cn_chunk *c)
{
	struct cn_chunk **pp;

	for (pp = bucket(c->id); *pp; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	drop_fd(c);
	cn_region_release(&c->region);
	free(c);
}

static struct cn_chunk *lookup(uint64_t id)
{
	struct cn_chunk *c;

	for (c = *bucket(id); c; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

/* A known id must come with the same object; an unknown one is mapped. */
int cn_chunk_get(uint64_t id, int fd, struct cn_chunk **out)
{
	struct cn_chunk *c;
	struct stat st;
	int err;

	pthread_once(&chunk_once, chunk_init_once);
	if (fd < 0)
		return -EBADF;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	pthread_mutex_lock(&chunk_lock);
	c = lookup(id);
	if (c) {
		err = c->dev == st.st_dev && c->ino == st.st_ino ? 0 : -EPROTO;
		if (!err) {
			if (!c->refs++)
				idle_unlink(c);
			if (c->region.fd < 0) {
				/* back from idle: its circuits need a memfd again */
				c->region.fd = keep_fd(fd);
				fd = -1;
			}
			*out = c;
		}
		pthread_mutex_unlock(&chunk_lock);
		if (fd >= 0)
			close(fd);
		return err;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&chunk_lock);
		close(fd);
		return -ENOMEM;
	}
	err = cn_memfd_region_map(&c->region, fd);
	if (err) {
		pthread_mutex_unlock(&chunk_lock);
		free(c);
		close(fd);
		return err;
	}
	c->region.fd = keep_fd(fd);
	c->id = id;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->refs = 1;
	c->hnext = *bucket(id);
	*bucket(id) = c;
	pthread_mutex_unlock(&chunk_lock);
	*out = c;
	return 0;
}

void cn_chunk_put(struct cn_chunk *c)
{
	struct cn_chunk *victim = NULL;

	if (!c)
		return;
	pthread_mutex_lock(&chunk_lock);
	if (--c->refs == 0) {
		drop_fd(c); /* an idle chunk keeps only its mapping: no fd */
		c->idle_next = idle_head;
		if (idle_head)
			idle_head->idle_prev = c;
		else
			idle_tail = c;
		idle_head = c;
		nidle++;
		if (nidle > CHUNK_IDLE_MAX) {
			victim = idle_tail;
			idle_unlink(victim);
			chunk_destroy(victim);
		}
	}
	pthread_mutex_unlock(&chunk_lock);
}

void *cn_chunk_base(const struct cn_chunk *c)
{
	return c->region.base;
}

size_t cn_chunk_size(const struct cn_chunk *c)
{
	return c->region.size;
}

int cn_chunk_fd(const struct cn_chunk *c)
{
	return c->region.fd;
}
