/* SPDX-License-Identifier: MIT */
/*
 * circnet/pool.h - pair regions: circuit memory pooled per pair of guests.
 *
 * The operator gives each pair of guests that talk (and each guest and the
 * proxy stack) one pair region, made of chunks: sealed memfds it creates on
 * first contact and adds as the pair needs more. Circuits are slots carved
 * out of a chunk (offset and size named in the setup message, docs/circuits.md),
 * so a connect costs no new memory object and no mapping once an endpoint has
 * the chunk mapped: this process-wide table keeps each chunk mapped once,
 * however many circuits live in it, and keeps a few idle ones mapped so that
 * a pair that connects one circuit after another maps nothing at all.
 *
 * A chunk is shared by exactly the two guests of its pair. Everything in it
 * is as hostile as a single circuit's memory: each slot is attached with the
 * same one-time header check (cn_ep_attach), so a scribbling peer can break
 * only circuits of its own pair.
 */
#ifndef CIRCNET_POOL_H
#define CIRCNET_POOL_H

#include <stddef.h>
#include <stdint.h>

struct cn_chunk;

/*
 * The mapped chunk with this operator-given id, fd its memfd (sealed: see
 * region.h). Maps it if this process has not (and keeps fd: cn_chunk_fd);
 * otherwise checks that fd is the same memory object. Always takes fd
 * (closed, or kept). 0 with a counted reference in *out, or -errno: -EPERM
 * (unsealed), -EINVAL (not a memfd), -EPROTO (a known id with another object).
 */
int cn_chunk_get(uint64_t id, int fd, struct cn_chunk **out);

/* Drop a reference; idle chunks stay mapped a while (a small LRU). */
void cn_chunk_put(struct cn_chunk *c);

void *cn_chunk_base(const struct cn_chunk *c);
size_t cn_chunk_size(const struct cn_chunk *c);

/*
 * The chunk's memfd, open while the chunk has circuits (close-on-exec, told
 * to cn_private_fd_hook): what a claim or an exec image names for any circuit
 * in it. The table's: never close it.
 */
int cn_chunk_fd(const struct cn_chunk *c);

#endif /* CIRCNET_POOL_H */
