/*
 * bench_tensor_json.c - JSON <-> tensor throughput of the REST path (json.c + tensor_json.c)
 * beside jansson on the same bodies, in one process and one run.
 *
 * Bodies: a 224x224x3 float image in row format ({"instances": [image]}) and a batch of 256
 * rows of 10 floats. Values are float32 pixels / 255 written in the shortest double form,
 * which is what Python's json.dumps(array.tolist()) sends.
 *
 * decode: the gateway scans the body and fills the PredictRequest's tensor_content with its
 *         fast path (what rest.c runs for these bodies); the slow path (DOM, then tensors)
 *         that handles every other body is timed too; jansson parses the same body
 *         (json_loadb) and its values are walked into a float array.
 * encode: the gateway writes TF Serving's response text for the tensor; jansson builds the
 *         same nested arrays of reals and dumps them (compact).
 * Throughput is JSON bytes per second; each figure is the median of 15 timed rounds.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tfgate/arena.h"
#include "tfgate/json.h"
#include "tfgate/tensor_json.h"
#include "tfgate/tensor_json_fast.h"

#define ROUNDS 15

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct body {
    const char *name;
    size_t dims[4], rank; /* rank <= 4 */
    float *values;
    size_t n;
    char *text;
    size_t len;
    float *scratch;                  /* jansson's values land here */
    size_t encoded, encoded_jansson; /* response text sizes */
};

/* {"instances": [ <nested array of dims> ]} with a batch dimension of dims[0]. */
static void emit(char **p, const struct body *b, size_t level, size_t *idx)
{
    char num[32];
    *(*p)++ = '[';
    for (size_t i = 0; i < b->dims[level]; i++) {
        if (i)
            *(*p)++ = ',';
        if (level + 1 < b->rank && level + 1 < 4) {
            emit(p, b, level + 1, idx);
        } else {
            size_t k = tg_json_format_double((double)b->values[(*idx)++], num);
            memcpy(*p, num, k);
            *p += k;
        }
    }
    *(*p)++ = ']';
}

static void make_body(struct body *b)
{
    b->n = 1;
    for (size_t i = 0; i < b->rank; i++)
        b->n *= b->dims[i];
    b->values = malloc(b->n * sizeof(float));
    srand(7);
    for (size_t i = 0; i < b->n; i++)
        b->values[i] = (float)(rand() % 256) / 255.0f;
    b->text = malloc(b->n * 32 + 64);
    char *p = b->text;
    size_t idx = 0;
    p += sprintf(p, "{\"instances\": ");
    emit(&p, b, 0, &idx);
    p += sprintf(p, "}");
    b->len = (size_t)(p - b->text);
}

static size_t walk_jansson(const json_t *v, float *out, size_t at)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            at = walk_jansson(json_array_get(v, i), out, at);
        return at;
    }
    out[at] = (float)json_number_value(v);
    return at + 1;
}

static json_t *build_jansson(const struct body *b, size_t level, size_t *idx)
{
    json_t *a = json_array();
    for (size_t i = 0; i < b->dims[level]; i++) {
        if (level + 1 < b->rank && level + 1 < 4)
            json_array_append_new(a, build_jansson(b, level + 1, idx));
        else
            json_array_append_new(a, json_real((double)b->values[(*idx)++]));
    }
    return a;
}

static double median(double *t)
{
    qsort(t, ROUNDS, sizeof(double), cmp_double);
    return t[ROUNDS / 2];
}

static void check_decoded(const struct body *b, const Tensorflow__TensorProto *t)
{
    if (t->tensor_content.len != b->n * sizeof(float) ||
        memcmp(t->tensor_content.data, b->values, t->tensor_content.len) != 0) {
        fprintf(stderr, "decode disagrees with the source values\n");
        exit(1);
    }
}

static const struct tg_tj_input input = {"x", TENSORFLOW__DATA_TYPE__DT_FLOAT};
static const struct tg_tj_signature sig = {1, (struct tg_tj_input *)&input};

/* Each method returns the seconds of one run, its checks left out of the timing. */

/* what rest.c runs for these bodies: the fast path (tensor_json_fast.h) */
static double fast_decode(struct body *b)
{
    struct tg_arena a;
    struct tg_tjf_body fb;
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    tg_arena_init(&a);
    double t0 = now();
    if (!tg_tjf_scan(&a, b->text, b->len, &fb) || !tg_tjf_decode(&a, &fb, &sig, &req)) {
        fprintf(stderr, "the fast path declined the body\n");
        exit(1);
    }
    double t = now() - t0;
    check_decoded(b, req.inputs[0]->value);
    tg_arena_dispose(&a);
    return t;
}

/* the slow path on the same body: DOM (json.h), then tensor_json.h */
static double slow_decode(struct body *b)
{
    struct tg_arena a;
    struct tg_jval *root;
    struct tg_json_error jerr;
    struct tg_tj_error terr;
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    int row;
    tg_arena_init(&a);
    double t0 = now();
    if (tg_json_parse(b->text, b->len, &a, 1000, &root, &jerr) != 0 ||
        tg_tj_decode_predict(&a, root, &sig, &req, &row, &terr) != 0) {
        fprintf(stderr, "decode failed\n");
        exit(1);
    }
    double t = now() - t0;
    check_decoded(b, req.inputs[0]->value);
    tg_arena_dispose(&a);
    return t;
}

/* parse with jansson, then walk the values into floats */
static double jansson_decode(struct body *b)
{
    json_error_t jerr;
    double t0 = now();
    json_t *doc = json_loadb(b->text, b->len, 0, &jerr);
    size_t got = doc ? walk_jansson(json_object_get(doc, "instances"), b->scratch, 0) : 0;
    double t = now() - t0;
    if (got != b->n) {
        fprintf(stderr, "jansson decode failed\n");
        exit(1);
    }
    json_decref(doc);
    return t;
}

/* the tensor as a Predict response, TF Serving's text */
static double encode(struct body *b)
{
    struct tg_arena a;
    struct tg_tj_error terr;
    Tensorflow__TensorShapeProto__Dim dims[4], *dp[4];
    Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
    for (size_t i = 0; i < b->rank; i++) {
        tensorflow__tensor_shape_proto__dim__init(&dims[i]);
        dims[i].size = (int64_t)b->dims[i];
        dp[i] = &dims[i];
    }
    shape.n_dim = b->rank;
    shape.dim = dp;
    t.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    t.tensor_shape = &shape;
    t.tensor_content.data = (uint8_t *)b->values;
    t.tensor_content.len = b->n * sizeof(float);
    Tensorflow__Serving__PredictResponse resp = TENSORFLOW__SERVING__PREDICT_RESPONSE__INIT;
    Tensorflow__Serving__PredictResponse__OutputsEntry e =
        TENSORFLOW__SERVING__PREDICT_RESPONSE__OUTPUTS_ENTRY__INIT;
    Tensorflow__Serving__PredictResponse__OutputsEntry *ep = &e;
    e.key = "y";
    e.value = &t;
    resp.n_outputs = 1;
    resp.outputs = &ep;
    char *text;
    tg_arena_init(&a);
    double t0 = now();
    if (tg_tj_encode_predict(&a, &resp, 1, &text, &b->encoded, &terr) != 0) {
        fprintf(stderr, "encode failed\n");
        exit(1);
    }
    double el = now() - t0;
    tg_arena_dispose(&a);
    return el;
}

/* the same nested arrays of reals built with jansson and dumped (compact) */
static double jansson_encode(struct body *b)
{
    double t0 = now();
    size_t idx = 0;
    json_t *o = json_object();
    json_object_set_new(o, "predictions", build_jansson(b, 0, &idx));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    double t = now() - t0;
    b->encoded_jansson = strlen(s);
    free(s);
    json_decref(o);
    return t;
}

enum { FAST, SLOW, JANSSON, ENCODE, JANSSON_ENCODE, N_METHODS };
static double (*const methods[N_METHODS])(struct body *) = {
    fast_decode, slow_decode, jansson_decode, encode, jansson_encode,
};

static void run(struct body *b)
{
    double t[N_METHODS][ROUNDS], med[N_METHODS];
    b->scratch = malloc(b->n * sizeof(float));

    /* Rounds interleave the methods so that machine noise hits all of them alike; within a
     * round each method runs once untimed first, so each is timed warm (caches, branch
     * predictors, allocator) as it is when a server handles such requests back to back. */
    for (int r = 0; r < ROUNDS; r++) {
        for (int m = 0; m < N_METHODS; m++) {
            methods[m](b);
            t[m][r] = methods[m](b);
        }
    }
    for (int m = 0; m < N_METHODS; m++)
        med[m] = median(t[m]);
    double len = (double)b->len, out = (double)b->encoded, out_js = (double)b->encoded_jansson;
    printf("| %s decode | %zu KB | %.1f | %.1f | %.1f | %.1fx |\n", b->name, b->len / 1024,
           len / med[FAST] / 1e6, len / med[SLOW] / 1e6, len / med[JANSSON] / 1e6,
           med[JANSSON] / med[FAST]);
    printf("| %s encode | %zu KB | %.1f | - | %.1f | %.1fx |\n", b->name, b->encoded / 1024,
           out / med[ENCODE] / 1e6, out_js / med[JANSSON_ENCODE] / 1e6,
           med[JANSSON_ENCODE] / med[ENCODE]);
    free(b->scratch);
}

int main(void)
{
    struct body image = {.name = "image 224x224x3 float", .dims = {1, 224, 224, 3}, .rank = 4};
    struct body rows = {.name = "256 rows x 10 float", .dims = {256, 10}, .rank = 2};
    make_body(&image);
    make_body(&rows);
    printf("| body | JSON size | tfgate MB/s | tfgate slow path MB/s | jansson MB/s | tfgate / "
           "jansson |\n");
    printf("|---|---|---|---|---|---|\n");
    run(&image);
    run(&rows);
    free(image.text);
    free(image.values);
    free(rows.text);
    free(rows.values);
    return 0;
}
