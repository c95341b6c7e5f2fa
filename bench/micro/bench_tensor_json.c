/*
 * bench_tensor_json.c - JSON <-> tensor throughput of the REST path (json.c + tensor_json.c)
 * beside jansson on the same bodies, in one process and one run.
 *
 * Bodies: a 224x224x3 float image in row format ({"instances": [image]}) and a batch of 256
 * rows of 10 floats. Values are float32 pixels / 255 written in the shortest double form,
 * which is what Python's json.dumps(array.tolist()) sends.
 *
 * decode: the gateway parses the body and fills the PredictRequest's tensor_content; jansson
 *         parses the same body (json_loadb) and its values are walked into a float array.
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

static void run(struct body *b)
{
    struct tg_tj_input in = {"x", TENSORFLOW__DATA_TYPE__DT_FLOAT};
    struct tg_tj_signature sig = {1, &in};
    double t_gw[ROUNDS], t_js[ROUNDS], t_gwe[ROUNDS], t_jse[ROUNDS];
    size_t out_gw = 0, out_js = 0;
    float *tmp = malloc(b->n * sizeof(float));

    for (int r = 0; r < ROUNDS; r++) {
        /* gateway decode */
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
        t_gw[r] = now() - t0;
        Tensorflow__TensorProto *t = req.inputs[0]->value;
        if (t->tensor_content.len != b->n * sizeof(float) ||
            memcmp(t->tensor_content.data, b->values, t->tensor_content.len) != 0) {
            fprintf(stderr, "decode disagrees with the source values\n");
            exit(1);
        }

        /* gateway encode: the same tensor as a Predict response */
        Tensorflow__Serving__PredictResponse resp = TENSORFLOW__SERVING__PREDICT_RESPONSE__INIT;
        Tensorflow__Serving__PredictResponse__OutputsEntry e =
            TENSORFLOW__SERVING__PREDICT_RESPONSE__OUTPUTS_ENTRY__INIT;
        Tensorflow__Serving__PredictResponse__OutputsEntry *ep = &e;
        e.key = "y";
        e.value = t;
        resp.n_outputs = 1;
        resp.outputs = &ep;
        char *text;
        size_t len;
        t0 = now();
        if (tg_tj_encode_predict(&a, &resp, 1, &text, &len, &terr) != 0) {
            fprintf(stderr, "encode failed\n");
            exit(1);
        }
        t_gwe[r] = now() - t0;
        out_gw = len;
        tg_arena_dispose(&a);

        /* jansson decode: parse, then walk the values into floats */
        json_error_t jerr2;
        t0 = now();
        json_t *doc = json_loadb(b->text, b->len, 0, &jerr2);
        size_t got = doc ? walk_jansson(json_object_get(doc, "instances"), tmp, 0) : 0;
        t_js[r] = now() - t0;
        if (got != b->n) {
            fprintf(stderr, "jansson decode failed\n");
            exit(1);
        }
        json_decref(doc);

        /* jansson encode */
        t0 = now();
        size_t idx = 0;
        json_t *o = json_object();
        json_object_set_new(o, "predictions", build_jansson(b, 0, &idx));
        char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
        t_jse[r] = now() - t0;
        out_js = strlen(s);
        free(s);
        json_decref(o);
    }
    double gw = median(t_gw), js = median(t_js), gwe = median(t_gwe), jse = median(t_jse);
    printf("| %s decode | %zu KB | %.1f | %.1f | %.1fx |\n", b->name, b->len / 1024,
           (double)b->len / gw / 1e6, (double)b->len / js / 1e6, js / gw);
    printf("| %s encode | %zu KB | %.1f | %.1f | %.1fx |\n", b->name, out_gw / 1024,
           (double)out_gw / gwe / 1e6, (double)out_js / jse / 1e6, jse / gwe);
    free(tmp);
}

int main(void)
{
    struct body image = {.name = "image 224x224x3 float", .dims = {1, 224, 224, 3}, .rank = 4};
    struct body rows = {.name = "256 rows x 10 float", .dims = {256, 10}, .rank = 2};
    make_body(&image);
    make_body(&rows);
    printf("| body | JSON size | tfgate MB/s | jansson MB/s | tfgate / jansson |\n");
    printf("|---|---|---|---|---|\n");
    run(&image);
    run(&rows);
    free(image.text);
    free(image.values);
    free(rows.text);
    free(rows.values);
    return 0;
}
