/*
 * tensor_json_fast.c - see tensor_json_fast.h.
 *
 * Written here rather than taken from a library: jansson (the JSON library of our stack) builds
 * a DOM at ~50 MB/s, simdjson is C++, and neither knows TF Serving's number rules (json.h).
 * bench/micro/bench_tensor_json.c measures this path beside jansson and the slow path.
 *
 * Every rule here is "accept only what is certainly valid and unambiguous, decline the rest":
 * the numbers are read by json.c's own scanner, so acceptance and values cannot drift apart.
 */
#include <stdlib.h>
#include <string.h>

#include "tfgate/arena.h"
#include "tfgate/common.h"
#include "tfgate/json.h"
#include "tfgate/tensor_json.h"
#include "tfgate/tensor_json_fast.h"

#define MAX_SKIP_DEPTH 64
#define EXACT_INT_MAX  (INT64_C(1) << 53)

struct scan {
    struct tg_arena *a;
    const char *s;
    size_t len;
    size_t pos;
    struct tg_tjf_body *b;
    double *at, *end; /* free space in the newest chunk */
    int ints;
};

static inline int peek(const struct scan *sc)
{
    return sc->pos < sc->len ? (unsigned char)sc->s[sc->pos] : 0; /* NUL: declined anywhere */
}

static inline void skip_ws(struct scan *sc)
{
    while (sc->pos < sc->len) {
        char c = sc->s[sc->pos];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            return;
        sc->pos++;
    }
}

/* Values go to chunks that double in size, in the arena: no realloc copying a growing array
 * and no fresh pages touched twice (a 600k-value image would otherwise copy 8 MB). */
static int push(struct scan *sc, double d)
{
    if (sc->at == sc->end) {
        struct tg_tjf_body *b = sc->b;
        if (b->n_chunks == TG_TJF_MAX_CHUNKS)
            return -1;
        size_t cap = tg_tjf_chunk_cap(b->n_chunks);
        sc->at = tg_arena_alloc(sc->a, cap * sizeof(double), 16);
        sc->end = sc->at + cap;
        b->chunk[b->n_chunks++] = sc->at;
    }
    *sc->at++ = d;
    sc->b->n++;
    return 0;
}

/* A number literal, as a double the way tg_json_number gives it. */
static int number(struct scan *sc)
{
    struct tg_jval v;
    if (tg_json_scan_number(sc->s, sc->len, &sc->pos, &v) != 0)
        return -1;
    switch (v.num) {
    case TG_JNUM_INT:
        if (v.u.i64 > EXACT_INT_MAX || v.u.i64 < -EXACT_INT_MAX)
            sc->ints = 0;
        return push(sc, (double)v.u.i64);
    case TG_JNUM_UINT:
        sc->ints = 0;
        return push(sc, (double)v.u.u64);
    default:
        sc->ints = 0;
        return push(sc, v.u.d);
    }
}

/* A string without escapes, control bytes or NUL (others are declined); the quote is at pos.
 * Sets |*start| and |*n| to the raw bytes. */
static int plain_string(struct scan *sc, const char **start, size_t *n)
{
    size_t i = sc->pos + 1;
    while (i < sc->len) {
        unsigned char c = (unsigned char)sc->s[i];
        if (c == '"') {
            *start = sc->s + sc->pos + 1;
            *n = i - sc->pos - 1;
            sc->pos = i + 1;
            return 0;
        }
        if (c == '\\' || c < 0x20)
            return -1;
        i++;
    }
    return -1;
}

/* Any value we do not convert (other members of the body): validated, not kept. */
static int skip_value(struct scan *sc, int depth)
{
    const char *str;
    size_t n;
    int c = peek(sc);

    if (depth > MAX_SKIP_DEPTH)
        return -1;
    switch (c) {
    case '"':
        return plain_string(sc, &str, &n);
    case 't':
    case 'f':
    case 'n': {
        const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t l = strlen(lit);
        if (sc->len - sc->pos < l || memcmp(sc->s + sc->pos, lit, l) != 0)
            return -1;
        sc->pos += l;
        return 0;
    }
    case '[':
    case '{': {
        int obj = c == '{', close = obj ? '}' : ']';
        sc->pos++;
        skip_ws(sc);
        if (peek(sc) == close) {
            sc->pos++;
            return 0;
        }
        for (;;) {
            if (obj) {
                if (peek(sc) != '"' || plain_string(sc, &str, &n) != 0)
                    return -1;
                skip_ws(sc);
                if (peek(sc) != ':')
                    return -1;
                sc->pos++;
                skip_ws(sc);
            }
            if (skip_value(sc, depth + 1) != 0)
                return -1;
            skip_ws(sc);
            if (peek(sc) == ',') {
                sc->pos++;
                skip_ws(sc);
                continue;
            }
            if (peek(sc) != close)
                return -1;
            sc->pos++;
            return 0;
        }
    }
    default: {
        struct tg_jval v;
        return tg_json_scan_number(sc->s, sc->len, &sc->pos, &v);
    }
    }
}

/*
 * The tensor: a number, or nested arrays of numbers of one shape. The shape is the slow path's
 * (tensor_json.c infer_shape: the first element at each level) and every array at a level must
 * have that level's length, every number sit at the full depth; otherwise the value is declined
 * (the slow path then reports the ragged list TF Serving's way).
 */
static int scan_tensor(struct scan *sc, struct tg_tjf_body *b)
{
    int64_t count[TG_TJF_MAX_RANK];
    int known[TG_TJF_MAX_RANK] = {0};
    size_t depth = 0;
    int rank_known = 0;

    for (;;) {
        /* a value starts */
        skip_ws(sc);
        int c = peek(sc);
        if (c == '[') {
            if ((rank_known && depth >= b->rank) || depth == TG_TJF_MAX_RANK)
                return -1;
            sc->pos++;
            count[depth++] = 0;
            continue;
        }
        if (c != '-' && (c < '0' || c > '9') && c != 'N' && c != 'I')
            return -1; /* strings, objects, literals, an empty list: the slow path's business */
        if (!rank_known) {
            rank_known = 1;
            b->rank = depth;
        } else if (depth != b->rank) {
            return -1;
        }
        if (number(sc) != 0)
            return -1;
        /* the value ended: close what ends with it */
        for (;;) {
            if (depth == 0)
                return 0;
            count[depth - 1]++;
            skip_ws(sc);
            c = peek(sc);
            if (c == ',') {
                sc->pos++;
                break;
            }
            if (c != ']')
                return -1;
            sc->pos++;
            size_t level = --depth;
            if (!known[level]) {
                known[level] = 1;
                b->dims[level] = count[level];
            } else if (b->dims[level] != count[level]) {
                return -1;
            }
        }
    }
}

int tg_tjf_scan(struct tg_arena *a, const char *text, size_t len, struct tg_tjf_body *out)
{
    struct scan sc = {.a = a, .s = text, .len = len, .b = out, .ints = 1};
    int have_tensor = 0, have_sig = 0;
    const char *key, *str;
    size_t klen, n;

    memset(out, 0, sizeof(*out));
    skip_ws(&sc);
    if (peek(&sc) != '{')
        goto decline;
    sc.pos++;
    skip_ws(&sc);
    for (;;) {
        if (peek(&sc) != '"' || plain_string(&sc, &key, &klen) != 0)
            goto decline;
        skip_ws(&sc);
        if (peek(&sc) != ':')
            goto decline;
        sc.pos++;
        skip_ws(&sc);
        int row = klen == 9 && memcmp(key, "instances", 9) == 0;
        if (row || (klen == 6 && memcmp(key, "inputs", 6) == 0)) {
            if (have_tensor++ || (row && peek(&sc) != '[') || scan_tensor(&sc, out) != 0)
                goto decline;
            out->row = row;
        } else if (klen == 14 && memcmp(key, "signature_name", 14) == 0) {
            if (have_sig++ || peek(&sc) != '"' || plain_string(&sc, &str, &n) != 0)
                goto decline;
            out->signature_name = tg_arena_strndup(a, str, n);
        } else if (skip_value(&sc, 1) != 0) {
            goto decline;
        }
        skip_ws(&sc);
        if (peek(&sc) == ',') {
            sc.pos++;
            skip_ws(&sc);
            continue;
        }
        if (peek(&sc) != '}' || !have_tensor)
            goto decline;
        break; /* anything after the body's object is ignored, as json.h does */
    }
    out->ints = sc.ints;
    return 1;
decline:
    memset(out, 0, sizeof(*out)); /* the chunks stay in the arena until the request ends */
    return 0;
}

/* ---- the signature's dtype ---- */

static size_t chunk_len(const struct tg_tjf_body *b, size_t c, size_t done)
{
    size_t cap = tg_tjf_chunk_cap(c);
    return b->n - done < cap ? b->n - done : cap;
}

/* Integers of [lo, hi], when every literal was an exact integer (tensor_json.c add_scalar's
 * checks; a value out of range is the slow path's error). */
static int ints_in(const struct tg_tjf_body *b, double lo, double hi)
{
    if (!b->ints)
        return 0;
    for (size_t c = 0, done = 0; c < b->n_chunks; c++) {
        size_t k = chunk_len(b, c, done);
        for (size_t i = 0; i < k; i++) {
            if (b->chunk[c][i] < lo || b->chunk[c][i] > hi)
                return 0;
        }
        done += k;
    }
    return 1;
}

/* The values converted to |dt| into |out| (element size |esize|). */
static void convert(const struct tg_tjf_body *b, int dt, void *out)
{
    for (size_t c = 0, done = 0; c < b->n_chunks; c++) {
        const double *v = b->chunk[c];
        size_t k = chunk_len(b, c, done);
        switch (dt) {
        case TG_DT_DOUBLE:
            memcpy((double *)out + done, v, k * sizeof(double));
            break;
        case TG_DT_FLOAT:
            for (size_t i = 0; i < k; i++)
                ((float *)out)[done + i] = (float)v[i];
            break;
        case TG_DT_UINT32:
            for (size_t i = 0; i < k; i++)
                ((uint32_t *)out)[done + i] = (uint32_t)v[i];
            break;
        case TG_DT_INT64:
        case TG_DT_UINT64:
            for (size_t i = 0; i < k; i++)
                ((int64_t *)out)[done + i] = (int64_t)v[i];
            break;
        default: /* int32 and the narrow types, as int32 */
            for (size_t i = 0; i < k; i++)
                ((int32_t *)out)[done + i] = (int32_t)v[i];
            break;
        }
        done += k;
    }
}

int tg_tjf_decode(struct tg_arena *a, const struct tg_tjf_body *b,
                  const struct tg_tj_signature *sig, Tensorflow__Serving__PredictRequest *req)
{
    if (sig->n_inputs != 1)
        return 0; /* a plain list for several inputs is an error the slow path words */
    int dt = sig->inputs[0].dtype;
    dt = dt > 100 ? dt - 100 : dt; /* _REF types convert like their base */
    size_t esize;

    switch (dt) {
    case TG_DT_DOUBLE:
        esize = 8;
        break;
    case TG_DT_FLOAT:
        esize = 4;
        break;
    case TG_DT_INT32:
    case TG_DT_INT16:
    case TG_DT_INT8:
    case TG_DT_UINT8: /* int_val, as given: TF truncates later (spec §3.6) */
        if (!ints_in(b, INT32_MIN, INT32_MAX))
            return 0;
        esize = 4;
        break;
    case TG_DT_UINT32:
        if (!ints_in(b, 0, UINT32_MAX))
            return 0;
        esize = 4;
        break;
    case TG_DT_INT64:
    case TG_DT_UINT64:
        if (!ints_in(b, dt == TG_DT_UINT64 ? 0 : -(double)EXACT_INT_MAX, (double)EXACT_INT_MAX))
            return 0;
        esize = 8;
        break;
    default:
        return 0; /* bool, string, half, ...: the slow path */
    }
    void *vals = tg_arena_alloc(a, b->n * esize + 1, 16);
    convert(b, dt, vals);
    req->inputs = tg_arena_alloc(a, 2 * sizeof(void *), _Alignof(void *));
    Tensorflow__Serving__PredictRequest__InputsEntry *e =
        TG_ARENA_NEW(a, Tensorflow__Serving__PredictRequest__InputsEntry);
    tensorflow__serving__predict_request__inputs_entry__init(e);
    e->key = (char *)sig->inputs[0].alias;
    e->value = tg_tj_tensor(a, dt, b->rank, b->dims, vals, b->n);
    req->inputs[0] = e;
    req->n_inputs = 1;
    return 1;
}
