/*
 * compress.c - see compress.h.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "tfgate/arena.h"
#include "tfgate/compress.h"

/* The q-value of one list element's parameters ("; q=0.5"), 1 when absent, 0 when malformed. */
static double qvalue(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            char buf[16];
            size_t n = (size_t)(end - p - 2);
            if (n == 0 || n >= sizeof(buf))
                return 0;
            memcpy(buf, p + 2, n);
            buf[n] = '\0';
            char *e;
            double q = strtod(buf, &e);
            while (*e == ' ' || *e == '\t')
                e++;
            return *e == '\0' && q >= 0 && q <= 1 ? q : 0;
        }
        while (p < end && *p != ';')
            p++;
    }
    return 1;
}

int tg_accepts_gzip(const char *v)
{
    int gzip = -1, star = -1; /* -1: not listed; else whether q > 0 */
    if (v == NULL)
        return 0;
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *item = p;
        while (*p && *p != ',')
            p++;
        const char *end = p, *tok_end = item;
        while (tok_end < end && *tok_end != ';' && *tok_end != ' ' && *tok_end != '\t')
            tok_end++;
        size_t tl = (size_t)(tok_end - item);
        int ok = qvalue(tok_end, end) > 0;
        if ((tl == 4 && strncasecmp(item, "gzip", 4) == 0) ||
            (tl == 6 && strncasecmp(item, "x-gzip", 6) == 0))
            gzip = gzip == 1 ? 1 : ok;
        else if (tl == 1 && *item == '*')
            star = ok;
    }
    return gzip >= 0 ? gzip : star == 1;
}

int tg_gzip(struct tg_arena *arena, const uint8_t *in, size_t len, int level, uint8_t **out,
            size_t *out_len)
{
    z_stream z;
    if (len > (1u << 30))
        return -1; /* zlib counts in 32 bits; answers are far smaller (message limits) */
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&z, (uLong)len);
    uint8_t *buf = tg_arena_alloc(arena, cap, 1);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int rv = deflate(&z, Z_FINISH); /* deflateBound's room makes one call enough */
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    if (rv != Z_STREAM_END)
        return -1;
    *out = buf;
    *out_len = n;
    return 0;
}
