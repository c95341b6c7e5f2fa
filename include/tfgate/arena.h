/*
 * arena.h - a per-request bump allocator (after h2o's mem pool). Everything request-scoped is
 * allocated here and freed at once when the arena is disposed; deferred destructors run then,
 * in reverse order of registration (for third-party objects: gRPC metadata, byte buffers).
 *
 * Small allocations come from 4 KiB chunks; those over a quarter chunk get their own block.
 * Thread affinity: an arena belongs to one thread (its stream's worker).
 */
#ifndef TG_ARENA_H
#define TG_ARENA_H

#include <stddef.h>

#include "tfgate/common.h"

struct tg_arena_chunk;
struct tg_arena_large;
struct tg_arena_defer;

struct tg_arena {
    struct tg_arena_chunk *chunks; /* owned; newest first */
    struct tg_arena_large *large;  /* owned; big allocations */
    struct tg_arena_defer *defers; /* LIFO destructors */
    size_t used;                   /* bytes used in chunks->data */
    size_t total;                  /* bytes handed out, for limits and metrics */
};

void tg_arena_init(struct tg_arena *a);
/* Runs the deferred destructors (newest first), then frees all memory. The arena can be
 * used again after this. */
void tg_arena_dispose(struct tg_arena *a);

/* |size| bytes aligned to |align| (a power of two up to 16), not zeroed. Never NULL. */
void *tg_arena_alloc(struct tg_arena *a, size_t size, size_t align);
void *tg_arena_zalloc(struct tg_arena *a, size_t size, size_t align);
#define TG_ARENA_NEW(a, type) ((type *)tg_arena_zalloc((a), sizeof(type), _Alignof(type)))
char *tg_arena_strndup(struct tg_arena *a, const char *s, size_t len);
/* printf into the arena. Never NULL. */
char *tg_arena_sprintf(struct tg_arena *a, const char *fmt, ...) TG_PRINTF(2, 3);
/* Registers |fn(arg)| to run at dispose. */
void tg_arena_defer(struct tg_arena *a, void (*fn)(void *), void *arg);

#endif /* TG_ARENA_H */
