/*
 * util.c - see util.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static void oom(size_t n)
{
    fprintf(stderr, "tfs-sim: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sim_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *sim_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *sim_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *sim_xstrdup(const char *s)
{
    return sim_xstrndup(s, strlen(s));
}

char *sim_xstrndup(const char *s, size_t n)
{
    char *p = sim_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void sim_str_append(struct sim_str *s, const char *data, size_t len)
{
    size_t cap = s->cap ? s->cap : (1u << 20);

    if (s->len + len > cap) {
        len = cap - s->len;
        s->truncated = 1;
    }
    if (s->len + len + 1 > s->alloc) {
        size_t want = s->alloc ? s->alloc * 2 : 64;
        while (want < s->len + len + 1)
            want *= 2;
        s->p = sim_xrealloc(s->p, want);
        s->alloc = want;
    }
    memcpy(s->p + s->len, data, len);
    s->len += len;
    s->p[s->len] = '\0';
}

void sim_str_puts(struct sim_str *s, const char *cstr)
{
    sim_str_append(s, cstr, strlen(cstr));
}

void sim_str_printf(struct sim_str *s, const char *fmt, ...)
{
    char stackbuf[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(stackbuf)) {
        sim_str_append(s, stackbuf, (size_t)n);
        return;
    }
    char *heap = sim_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(heap, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sim_str_append(s, heap, (size_t)n);
    free(heap);
}

char *sim_str_steal(struct sim_str *s)
{
    char *p = s->p ? s->p : sim_xstrdup("");
    s->p = NULL;
    s->len = s->alloc = 0;
    return p;
}

void sim_str_dispose(struct sim_str *s)
{
    free(s->p);
    s->p = NULL;
    s->len = s->alloc = 0;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *sim_base64_encode(const uint8_t *data, size_t len)
{
    char *out = sim_xmalloc((len + 2) / 3 * 4 + 1);
    size_t i, o = 0;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = b64chars[v >> 18];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = b64chars[(v >> 6) & 63];
        out[o++] = b64chars[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
        out[o++] = b64chars[v >> 18];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int b64val(char c)
{
    const char *p = c ? strchr(b64chars, c) : NULL;
    return p ? (int)(p - b64chars) : -1;
}

int sim_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t *buf;
    size_t i, o = 0, pad = 0;
    uint32_t acc = 0;
    int bits = 0;

    while (len > 0 && s[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad && (len + pad) % 4 != 0))
        return -1;
    buf = sim_xmalloc(len * 3 / 4 + 1);
    for (i = 0; i < len; i++) {
        int v = b64val(s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *out_len = o;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sim_hex_decode(const char *s, uint8_t **out, size_t *out_len)
{
    size_t len = strlen(s), i;
    uint8_t *buf;

    if (len % 2)
        return -1;
    buf = sim_xmalloc(len / 2 + 1);
    for (i = 0; i < len; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return -1;
        }
        buf[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *out = buf;
    *out_len = len / 2;
    return 0;
}

int sim_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + n >= len) /* sequence runs past the end */
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        /* overlong, surrogate and out-of-range forms */
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

uint64_t sim_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct sim_pool_block {
    struct sim_pool_block *next;
    size_t size;
    _Alignas(16) unsigned char data[];
};

void *sim_pool_alloc(struct sim_pool *pool, size_t n)
{
    struct sim_pool_block *b = sim_xcalloc(1, sizeof(*b) + n);
    b->size = n;
    b->next = pool->head;
    pool->head = b;
    return b->data;
}

char *sim_pool_strndup(struct sim_pool *pool, const char *s, size_t n)
{
    char *p = sim_pool_alloc(pool, n + 1);
    memcpy(p, s, n);
    return p;
}

char *sim_pool_strdup(struct sim_pool *pool, const char *s)
{
    return sim_pool_strndup(pool, s, strlen(s));
}

void sim_pool_dispose(struct sim_pool *pool)
{
    struct sim_pool_block *b = pool->head;
    while (b != NULL) {
        struct sim_pool_block *next = b->next;
        free(b);
        b = next;
    }
    pool->head = NULL;
}
