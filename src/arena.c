/*
 * arena.c - see arena.h.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfgate/arena.h"
#include "tfgate/common.h"

#define CHUNK_SIZE      4096
#define LARGE_THRESHOLD (CHUNK_SIZE / 4)

struct tg_arena_chunk {
    struct tg_arena_chunk *next;
    _Alignas(16) unsigned char data[CHUNK_SIZE];
};

struct tg_arena_large {
    struct tg_arena_large *next;
    _Alignas(16) unsigned char data[];
};

struct tg_arena_defer {
    struct tg_arena_defer *next;
    void (*fn)(void *);
    void *arg;
};

void tg_arena_init(struct tg_arena *a)
{
    memset(a, 0, sizeof(*a));
}

void tg_arena_dispose(struct tg_arena *a)
{
    /* destructors may still read arena memory, so they run first */
    while (a->defers != NULL) {
        struct tg_arena_defer *d = a->defers;
        a->defers = d->next;
        d->fn(d->arg);
    }
    while (a->large != NULL) {
        struct tg_arena_large *l = a->large;
        a->large = l->next;
        free(l);
    }
    while (a->chunks != NULL) {
        struct tg_arena_chunk *c = a->chunks;
        a->chunks = c->next;
        free(c);
    }
    a->used = a->total = 0;
}

void *tg_arena_alloc(struct tg_arena *a, size_t size, size_t align)
{
    a->total += size;
    if (size > LARGE_THRESHOLD) {
        struct tg_arena_large *l = tg_xmalloc(sizeof(*l) + size);
        l->next = a->large;
        a->large = l;
        return l->data;
    }
    size_t off = (a->used + align - 1) & ~(align - 1);
    if (a->chunks == NULL || off + size > CHUNK_SIZE) {
        struct tg_arena_chunk *c = tg_xmalloc(sizeof(*c));
        c->next = a->chunks;
        a->chunks = c;
        off = 0;
    }
    a->used = off + size;
    return a->chunks->data + off;
}

void *tg_arena_zalloc(struct tg_arena *a, size_t size, size_t align)
{
    void *p = tg_arena_alloc(a, size, align);
    memset(p, 0, size);
    return p;
}

char *tg_arena_strndup(struct tg_arena *a, const char *s, size_t len)
{
    char *p = tg_arena_alloc(a, len + 1, 1);
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *tg_arena_sprintf(struct tg_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = tg_arena_alloc(a, n > 0 ? (size_t)n + 1 : 1, 1);
    va_start(ap, fmt);
    vsnprintf(p, n > 0 ? (size_t)n + 1 : 1, fmt, ap);
    va_end(ap);
    return p;
}

void tg_arena_defer(struct tg_arena *a, void (*fn)(void *), void *arg)
{
    struct tg_arena_defer *d = tg_arena_alloc(a, sizeof(*d), _Alignof(struct tg_arena_defer));
    d->fn = fn;
    d->arg = arg;
    d->next = a->defers;
    a->defers = d;
}
