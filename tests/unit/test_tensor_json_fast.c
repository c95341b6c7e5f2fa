/*
 * test_tensor_json_fast.c - the REST fast path (tensor_json_fast.h) against the slow path
 * (json.h + tensor_json.h): whenever the fast path accepts a body, the slow path must accept it
 * too and build the same inputs, bit for bit; the fast path must accept the common large
 * bodies (or it would be dead code), and decline everything whose answer is an error or needs
 * the DOM. The fuzz target (fuzz/fuzz_tensor_json.c) runs the same comparison on its corpus
 * and on mutations.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../lib/tj_compare.h"
#include "tfgate/arena.h"
#include "tfgate/common.h"
#include "tfgate/json.h"
#include "tfgate/tensor_json.h"
#include "tfgate/tensor_json_fast.h"

enum {
    F32 = TENSORFLOW__DATA_TYPE__DT_FLOAT,
    F64 = TENSORFLOW__DATA_TYPE__DT_DOUBLE,
    I32 = TENSORFLOW__DATA_TYPE__DT_INT32,
    U8 = TENSORFLOW__DATA_TYPE__DT_UINT8,
    I16 = TENSORFLOW__DATA_TYPE__DT_INT16,
    I64 = TENSORFLOW__DATA_TYPE__DT_INT64,
    U32 = TENSORFLOW__DATA_TYPE__DT_UINT32,
    U64 = TENSORFLOW__DATA_TYPE__DT_UINT64,
    BOOL = TENSORFLOW__DATA_TYPE__DT_BOOL,
    STR = TENSORFLOW__DATA_TYPE__DT_STRING,
    HALF = TENSORFLOW__DATA_TYPE__DT_HALF,
    F32_REF = TENSORFLOW__DATA_TYPE__DT_FLOAT_REF,
};

static const int all_dtypes[] = {F32, F64, I32, U8, I16, I64, U32, U64, BOOL, STR, HALF, F32_REF};

enum outcome { DECLINED, ACCEPTED };

/* Runs both paths on |text| for a one-input signature of |dtype|; fails the test if the fast
 * path accepts and the slow path disagrees. Returns what the fast path did. */
static enum outcome differ(const char *text, size_t len, int dtype)
{
    struct tg_arena a;
    struct tg_tj_input in = {"x", dtype};
    struct tg_tj_signature sig = {1, &in};
    struct tg_tjf_body fb;
    Tensorflow__Serving__PredictRequest fast = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    Tensorflow__Serving__PredictRequest slow = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    enum outcome o = DECLINED;

    tg_arena_init(&a);
    if (tg_tjf_scan(&a, text, len, &fb) && tg_tjf_decode(&a, &fb, &sig, &fast)) {
        struct tg_jval *root;
        struct tg_json_error jerr;
        struct tg_tj_error terr;
        int row;
        o = ACCEPTED;
        if (tg_json_parse(text, len, &a, 1000, &root, &jerr) != 0)
            fail_msg("fast path accepted a body the parser rejects: %.200s", text);
        if (tg_tj_decode_predict(&a, root, &sig, &slow, &row, &terr) != 0)
            fail_msg("fast path accepted a body the slow path refuses (%s): %.200s", terr.message,
                     text);
        if (row != fb.row || !tj_same_inputs(&fast, &slow))
            fail_msg("fast and slow paths disagree for dtype %d: %.200s", dtype, text);
        const struct tg_jval *sn = tg_json_get(root, "signature_name", 14);
        if ((sn == NULL) != (fb.signature_name == NULL) ||
            (sn != NULL && strcmp(sn->u.str, fb.signature_name) != 0))
            fail_msg("signature_name differs: %.200s", text);
    }
    tg_arena_dispose(&a);
    return o;
}

static enum outcome differ_s(const char *text, int dtype)
{
    return differ(text, strlen(text), dtype);
}

/* ---- a generator of bodies: shapes, number spellings, layouts ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(next() % n);
}

struct out {
    char *p;
    size_t n, cap;
};

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (o->n + (size_t)k + 1 > o->cap) {
        o->cap = (o->n + (size_t)k + 1) * 2;
        o->p = realloc(o->p, o->cap);
    }
    memcpy(o->p + o->n, tmp, (size_t)k + 1);
    o->n += (size_t)k;
}

static void ws(struct out *o)
{
    static const char *const w[] = {"", "", "", " ", "\n  ", "\t", "\r\n"};
    put(o, "%s", w[pick(TG_ARRAY_SIZE(w))]);
}

/* One number in one of many spellings, integer-heavy when |ints|. */
static void number(struct out *o, int ints)
{
    switch (pick(ints ? 4 : 16)) {
    case 0:
        put(o, "%d", (int)pick(256));
        break;
    case 1:
        put(o, "-%d", (int)pick(100000));
        break;
    case 2:
        put(o, "%lld", (long long)(next() >> pick(64)) * (pick(2) ? 1 : -1));
        break;
    case 3:
        put(o, "%llu", (unsigned long long)next()); /* may pass 2^63: a uint64 literal */
        break;
    case 4:
        put(o, "%.17g", (double)(float)((double)next() / 1.8e19));
        break;
    case 5:
        put(o, "%.9g", ((double)next() / 1e19 - 0.9) * pow(10, (int)pick(20) - 10));
        break;
    case 6:
        put(o, "%.3e", (double)next() / 1e15);
        break;
    case 7:
        put(o, "%sE%s%d", pick(2) ? "1.5" : "7", pick(2) ? "+" : "-", (int)pick(330));
        break;
    case 8: {
        static const char *const nf[] = {"NaN", "-NaN", "Infinity", "-Infinity", "Inf", "-Inf"};
        put(o, "%s", nf[pick(TG_ARRAY_SIZE(nf))]);
        break;
    }
    case 9:
        put(o, pick(2) ? "-0.0" : "-0");
        break;
    case 10:
        put(o, "0.%018llu", (unsigned long long)(next() % 1000000000000000000ull));
        break;
    case 11:
        put(o, "%llu%llu.%llu", (unsigned long long)next(), (unsigned long long)next(),
            (unsigned long long)pick(1000)); /* beyond uint64: a double */
        break;
    case 12:
        put(o, "9007199254740993"); /* 2^53 + 1 */
        break;
    case 13:
        put(o, "%d.%d", (int)pick(1000), (int)pick(1000000));
        break;
    case 14:
        put(o, "1e-%d", 300 + (int)pick(60)); /* subnormal and underflow */
        break;
    default:
        put(o, "%.16g", (double)next() / 3.3e18);
        break;
    }
}

/* A nested array of shape |dims|[0..rank). */
static void tensor(struct out *o, const int *dims, int rank, int ints)
{
    if (rank == 0) {
        number(o, ints);
        return;
    }
    put(o, "[");
    for (int i = 0; i < dims[0]; i++) {
        if (i) {
            put(o, ",");
            ws(o);
        }
        tensor(o, dims + 1, rank - 1, ints);
    }
    ws(o);
    put(o, "]");
}

/* {"instances"|"inputs": tensor} with maybe a signature_name and other members around it. */
static void body(struct out *o, int row, int ints)
{
    int rank = (int)pick(4) + (row ? 1 : 0), dims[5];
    for (int i = 0; i < rank; i++)
        dims[i] = 1 + (int)pick(4);
    put(o, "{");
    ws(o);
    int sig = pick(3) == 0, extra = pick(3) == 0;
    if (sig && pick(2))
        put(o, "\"signature_name\":%s\"serving_default\",", pick(2) ? " " : "");
    if (extra)
        put(o, "\"meta\": {\"a\": [1, \"b\", true, null, {}], \"c\": -1.5e3},");
    put(o, "\"%s\":", row ? "instances" : "inputs");
    ws(o);
    tensor(o, dims, rank, ints);
    if (sig && !pick(2))
        put(o, ", \"signature_name\": \"sig\"");
    ws(o);
    put(o, "}");
}

static void generated_bodies(void **state)
{
    (void)state;
    size_t accepted = 0, total = 0;
    for (int i = 0; i < 4000; i++) {
        struct out o = {0};
        body(&o, i & 1, (i >> 1) & 1);
        for (size_t d = 0; d < TG_ARRAY_SIZE(all_dtypes); d++) {
            total++;
            accepted += differ(o.p, o.n, all_dtypes[d]) == ACCEPTED;
        }
        free(o.p);
    }
    /* most of these are in the fast subset: float and double always are */
    assert_true(accepted > total / 4);
}

/* Truncations and one-byte edits of generated bodies: mostly declined, never a disagreement. */
static void damaged_bodies(void **state)
{
    (void)state;
    static const char edits[] = "[]{},:\" 0-.eE\\x";
    for (int i = 0; i < 3000; i++) {
        struct out o = {0};
        body(&o, i & 1, pick(2));
        size_t len = o.n;
        if (i % 3 == 0)
            len = pick((unsigned)o.n);
        else
            o.p[pick((unsigned)o.n)] = edits[pick(sizeof(edits) - 1)];
        for (size_t d = 0; d < TG_ARRAY_SIZE(all_dtypes); d++)
            differ(o.p, len, all_dtypes[d]);
        free(o.p);
    }
}

/* ---- what the fast path takes, and the values it gives ---- */

static void takes_common_bodies(void **state)
{
    (void)state;
    assert_int_equal(differ_s("{\"instances\": [[1.0, 2.5], [3, -4e-3]]}", F32), ACCEPTED);
    assert_int_equal(differ_s("{\"inputs\": [[1.0, 2.5], [3, -4e-3]]}", F64), ACCEPTED);
    assert_int_equal(differ_s("{\"inputs\": 5}", F32), ACCEPTED); /* a scalar: shape [] */
    assert_int_equal(differ_s("{\"instances\": [1, 2, 3]}", I64), ACCEPTED);
    assert_int_equal(differ_s("{\"instances\": [[255, 0, 7]]}", U8), ACCEPTED);
    assert_int_equal(differ_s("{\"instances\": [1, 2]}", F32_REF), ACCEPTED);
    assert_int_equal(
        differ_s("{\"signature_name\": \"s\", \"x\": [\"y\", {}], \"instances\": [NaN, -Infinity]}",
                 F32),
        ACCEPTED);
    /* trailing bytes after the body are ignored, as the parser does */
    assert_int_equal(differ_s("{\"instances\": [1]} trailing", F32), ACCEPTED);
}

static void exact_values(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_tjf_body fb;
    struct tg_tj_input in = {"x", F32};
    struct tg_tj_signature sig = {1, &in};
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    const char *text = "{\"instances\": [[-0.0, -0, 0.1], [1e-46, 3.4028234663852886e38, 1]]}";

    tg_arena_init(&a);
    assert_int_equal(tg_tjf_scan(&a, text, strlen(text), &fb), 1);
    assert_int_equal(fb.rank, 2);
    assert_int_equal(fb.dims[0], 2);
    assert_int_equal(fb.dims[1], 3);
    assert_int_equal(tg_tjf_decode(&a, &fb, &sig, &req), 1);
    const float *f = (const float *)req.inputs[0]->value->tensor_content.data;
    assert_true(f[0] == 0.0f && signbit(f[0]));  /* -0.0 is kept */
    assert_true(f[1] == 0.0f && !signbit(f[1])); /* -0 is the integer 0 */
    assert_true(f[2] == 0.1f);
    assert_true(f[3] == 0.0f);
    assert_true(f[4] == 3.40282346638528859811704183484516925440e+38f);
    tg_arena_dispose(&a);

    /* int64 up to 2^53 is exact on this path; beyond, the slow path keeps it exact */
    in.dtype = I64;
    text = "{\"inputs\": [9007199254740992, -9007199254740992]}";
    tg_arena_init(&a);
    req = (Tensorflow__Serving__PredictRequest)TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    assert_int_equal(tg_tjf_scan(&a, text, strlen(text), &fb), 1);
    assert_int_equal(tg_tjf_decode(&a, &fb, &sig, &req), 1);
    const int64_t *v = (const int64_t *)req.inputs[0]->value->tensor_content.data;
    assert_true(v[0] == INT64_C(9007199254740992) && v[1] == -INT64_C(9007199254740992));
    tg_arena_dispose(&a);
    assert_int_equal(differ_s("{\"inputs\": [9007199254740993]}", I64), DECLINED);
    assert_int_equal(differ_s("{\"inputs\": [9223372036854775807]}", I64), DECLINED);
    assert_int_equal(differ_s("{\"inputs\": [9007199254740993]}", F32), ACCEPTED);
    assert_int_equal(differ_s("{\"inputs\": [18446744073709551615]}", F64), ACCEPTED);
}

/* Everything that is an error, or needs the DOM, is left to the slow path. */
static void declines(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "",
        "   ",
        "[1, 2]",
        "{}",
        "{\"instances\": []}",
        "{\"instances\": [[]]}",
        "{\"instances\": 5}",
        "{\"instances\": [[1, 2], [3]]}",     /* ragged */
        "{\"instances\": [[1, 2], 3]}",       /* a number above the leaves */
        "{\"instances\": [1, [2]]}",          /* a list below them */
        "{\"instances\": [\"a\"]}",           /* strings */
        "{\"instances\": [{\"b64\": \"\"}]}", /* objects */
        "{\"instances\": [true]}",
        "{\"instances\": [1,]}",
        "{\"instances\": [1] \"inputs\": [1]}",
        "{\"instances\": [1], \"inputs\": [1]}",
        "{\"instances\": [1], \"instances\": [2]}",
        "{\"inputs\": {\"x\": [1]}}",
        "{\"instances\": [1], \"signature_name\": 5}",
        "{\"instances\": [1], \"signature_name\": \"a\\u0062\"}",
        "{\"instances\": [1], \"signature_name\": \"a\", \"signature_name\": \"b\"}",
        "{\"instan\\u0063es\": [1]}",
        "{\"instances\": [1.]}",
        "{\"instances\": [1e999]}",
        "{\"instances\": [nan]}",
        "{\"instances\": [01]}",
        "{\"instances\": [1]",
        "{\"instances\": [1], \"x\": [1, 2,]}",
    };
    for (size_t i = 0; i < TG_ARRAY_SIZE(bodies); i++) {
        for (size_t d = 0; d < TG_ARRAY_SIZE(all_dtypes); d++) {
            if (differ_s(bodies[i], all_dtypes[d]) != DECLINED)
                fail_msg("accepted: %s", bodies[i]);
        }
    }
    /* a NUL byte anywhere */
    assert_int_equal(differ("{\"instances\": [1]\0}", 19, F32), DECLINED);
    /* deeper than the fast path's rank limit */
    struct out o = {0};
    put(&o, "{\"inputs\": ");
    for (int i = 0; i < TG_TJF_MAX_RANK + 1; i++)
        put(&o, "[");
    put(&o, "1");
    for (int i = 0; i < TG_TJF_MAX_RANK + 1; i++)
        put(&o, "]");
    put(&o, "}");
    assert_int_equal(differ(o.p, o.n, F32), DECLINED);
    free(o.p);
    /* dtypes whose values do not fit, or that it does not convert */
    assert_int_equal(differ_s("{\"instances\": [1.5]}", I32), DECLINED);
    assert_int_equal(differ_s("{\"instances\": [2147483648]}", I32), DECLINED);
    assert_int_equal(differ_s("{\"instances\": [-1]}", U32), DECLINED);
    assert_int_equal(differ_s("{\"instances\": [-1]}", U64), DECLINED);
    assert_int_equal(differ_s("{\"instances\": [1]}", BOOL), DECLINED);
    assert_int_equal(differ_s("{\"instances\": [1]}", STR), DECLINED);
    assert_int_equal(differ_s("{\"instances\": [1]}", HALF), DECLINED);
}

static void several_inputs_declined(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_tjf_body fb;
    struct tg_tj_input in[2] = {{"a", F32}, {"b", F32}};
    struct tg_tj_signature sig = {2, in};
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    const char *text = "{\"instances\": [1, 2]}";
    tg_arena_init(&a);
    assert_int_equal(tg_tjf_scan(&a, text, strlen(text), &fb), 1);
    assert_int_equal(tg_tjf_decode(&a, &fb, &sig, &req), 0);
    assert_int_equal(req.n_inputs, 0); /* untouched */
    tg_arena_dispose(&a);
}

/* A body larger than one chunk of values, in row format: the chunks join in order. */
static void many_values(void **state)
{
    (void)state;
    struct out o = {0};
    size_t n = 3 * tg_tjf_chunk_cap(0) + 17;
    put(&o, "{\"instances\": [");
    for (size_t i = 0; i < n; i++)
        put(&o, "%s%zu.25", i ? "," : "", i);
    put(&o, "]}");
    assert_int_equal(differ(o.p, o.n, F64), ACCEPTED);
    assert_int_equal(differ(o.p, o.n, F32), ACCEPTED);
    free(o.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(takes_common_bodies),
        cmocka_unit_test(exact_values),
        cmocka_unit_test(declines),
        cmocka_unit_test(several_inputs_declined),
        cmocka_unit_test(many_values),
        cmocka_unit_test(generated_bodies),
        cmocka_unit_test(damaged_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
