/*
 * buf.c - see buf.h.
 */
#include <stdlib.h>
#include <string.h>

#include "tfgate/buf.h"
#include "tfgate/common.h"

void tg_buf_init(struct tg_buf *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
}

void tg_buf_dispose(struct tg_buf *b)
{
    free(b->base);
    memset(b, 0, sizeof(*b));
}

uint8_t *tg_buf_reserve(struct tg_buf *b, size_t n)
{
    size_t size = b->len - b->off;

    if (n > b->cap || size > b->cap - n)
        return NULL;
    if (b->len + n <= b->alloc)
        return b->base + b->len;
    if (b->off > 0) { /* reclaim consumed space first */
        memmove(b->base, b->base + b->off, size);
        b->off = 0;
        b->len = size;
        if (size + n <= b->alloc)
            return b->base + b->len;
    }
    size_t want = b->alloc ? b->alloc : 4096;
    while (want < size + n)
        want *= 2;
    if (want > b->cap && size + n <= b->cap)
        want = b->cap;
    b->base = tg_xrealloc(b->base, want);
    b->alloc = want;
    return b->base + b->len;
}

int tg_buf_append(struct tg_buf *b, const void *data, size_t n)
{
    uint8_t *p = tg_buf_reserve(b, n);
    if (p == NULL)
        return -1;
    if (n > 0)
        memcpy(p, data, n);
    b->len += n;
    return 0;
}

void tg_buf_consume(struct tg_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void tg_buf_shrink(struct tg_buf *b)
{
    if (b->off == b->len) {
        free(b->base);
        b->base = NULL;
        b->off = b->len = b->alloc = 0;
    }
}
