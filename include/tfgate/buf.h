/*
 * buf.h - a contiguous byte buffer with a hard cap, for socket I/O and request bodies.
 * Reads consume from the front (|off|); the space is reclaimed by compaction when the buffer
 * would otherwise grow. A buffer never grows past |cap|: tg_buf_reserve fails instead, and the
 * caller turns that into the protocol's error (413, RST_STREAM, or back-pressure).
 *
 * Thread affinity: owned by one thread.
 */
#ifndef TG_BUF_H
#define TG_BUF_H

#include <stddef.h>
#include <stdint.h>

struct tg_buf {
    uint8_t *base; /* owned (malloc) */
    size_t off;    /* start of unread data */
    size_t len;    /* end of data */
    size_t alloc;  /* bytes allocated */
    size_t cap;    /* most bytes of data the buffer may hold */
};

void tg_buf_init(struct tg_buf *b, size_t cap);
void tg_buf_dispose(struct tg_buf *b);
static inline size_t tg_buf_size(const struct tg_buf *b)
{
    return b->len - b->off;
}
static inline uint8_t *tg_buf_data(const struct tg_buf *b)
{
    return b->base + b->off;
}
/* Makes room for |n| more bytes at the end. Returns a pointer to it, or NULL when the data
 * would exceed |cap|. */
uint8_t *tg_buf_reserve(struct tg_buf *b, size_t n);
/* Appends |n| bytes; returns 0, or -1 (nothing appended) when over the cap. */
int tg_buf_append(struct tg_buf *b, const void *data, size_t n);
static inline void tg_buf_commit(struct tg_buf *b, size_t n)
{
    b->len += n;
}
/* Drops |n| bytes from the front. */
void tg_buf_consume(struct tg_buf *b, size_t n);
/* Frees the memory of an empty buffer (idle connections keep nothing). */
void tg_buf_shrink(struct tg_buf *b);

#endif /* TG_BUF_H */
