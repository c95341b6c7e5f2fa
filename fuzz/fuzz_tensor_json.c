/*
 * fuzz_tensor_json.c - fuzz target for the REST body path: json.c's parser and tensor_json.c's
 * converters, both ways, with no sockets and no loop.
 *
 * Input: byte 0 picks the signature (one or two inputs, their dtypes, a "_bytes" alias); the
 * rest is a request body. For each input the target checks, beyond "no crash, no leak, no
 * sanitizer report":
 *   - a body that decodes gives tensors whose tensor_content is exactly shape x dtype size;
 *   - the tensors written back as a Predict response produce text that our parser accepts;
 *   - for integer and bool tensors that text, read again as a request, gives the same bytes
 *     (a round trip through the writer and the reader);
 *   - classify/regress decoding of the same body never crashes;
 *   - the fast path (tensor_json_fast.h), when it accepts the body, builds exactly the slow
 *     path's inputs (the differential check; tests/unit/test_tensor_json_fast.c is its unit
 *     test).
 * Built for libFuzzer with clang (TG_FUZZ=ON) and, always, with fuzz/standalone.c so the test
 * suite replays the corpus and mutates it for a bounded time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/lib/tj_compare.h"
#include "tfgate/arena.h"
#include "tfgate/json.h"
#include "tfgate/tensor_json.h"
#include "tfgate/tensor_json_fast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int dtypes[8] = {
    TENSORFLOW__DATA_TYPE__DT_FLOAT, TENSORFLOW__DATA_TYPE__DT_DOUBLE,
    TENSORFLOW__DATA_TYPE__DT_INT32, TENSORFLOW__DATA_TYPE__DT_INT64,
    TENSORFLOW__DATA_TYPE__DT_BOOL,  TENSORFLOW__DATA_TYPE__DT_STRING,
    TENSORFLOW__DATA_TYPE__DT_UINT8, TENSORFLOW__DATA_TYPE__DT_HALF, /* unsupported: errors */
};

static size_t dtype_size(int dt)
{
    switch (dt) {
    case TENSORFLOW__DATA_TYPE__DT_FLOAT:
    case TENSORFLOW__DATA_TYPE__DT_INT32:
        return 4;
    case TENSORFLOW__DATA_TYPE__DT_DOUBLE:
    case TENSORFLOW__DATA_TYPE__DT_INT64:
        return 8;
    case TENSORFLOW__DATA_TYPE__DT_BOOL:
        return 1;
    default:
        return 0; /* carried in typed fields */
    }
}

static int exact_dtype(int dt)
{
    return dt == TENSORFLOW__DATA_TYPE__DT_INT32 || dt == TENSORFLOW__DATA_TYPE__DT_INT64 ||
           dt == TENSORFLOW__DATA_TYPE__DT_BOOL;
}

static void check_tensor(const Tensorflow__TensorProto *t)
{
    size_t n = 1, sz = dtype_size(t->dtype);
    if (!t->tensor_shape)
        abort();
    for (size_t i = 0; i < t->tensor_shape->n_dim; i++) {
        if (t->tensor_shape->dim[i]->size < 0)
            abort();
        n *= (size_t)t->tensor_shape->dim[i]->size;
    }
    if (sz && t->tensor_content.len != n * sz)
        abort();
}

/* Rewrites {"predictions": X} / {"outputs": X} as {"instances": X} / {"inputs": X}. */
static char *as_request(const char *text, size_t len, int row, size_t *out_len)
{
    const char *key = row ? "\"predictions\"" : "\"outputs\"";
    const char *p = strstr(text, key);
    if (!p)
        abort();
    const char *rest = p + strlen(key);
    const char *nk = row ? "{\"instances\"" : "{\"inputs\"";
    size_t rl = len - (size_t)(rest - text);
    char *b = malloc(strlen(nk) + rl + 1);
    memcpy(b, nk, strlen(nk));
    memcpy(b + strlen(nk), rest, rl);
    *out_len = strlen(nk) + rl;
    b[*out_len] = '\0';
    return b;
}

static int same_tensor(const Tensorflow__TensorProto *a, const Tensorflow__TensorProto *b)
{
    if (a->tensor_shape->n_dim != b->tensor_shape->n_dim)
        return 0;
    for (size_t i = 0; i < a->tensor_shape->n_dim; i++)
        if (a->tensor_shape->dim[i]->size != b->tensor_shape->dim[i]->size)
            return 0;
    return a->tensor_content.len == b->tensor_content.len &&
           (a->tensor_content.len == 0 ||
            memcmp(a->tensor_content.data, b->tensor_content.data, a->tensor_content.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    struct tg_tj_input in[2] = {
        {(sel & 0x40) ? "x_bytes" : "x", dtypes[sel & 7]},
        {"y", dtypes[(sel >> 3) & 7]},
    };
    struct tg_tj_signature sig = {(sel & 0x80) ? 2 : 1, in};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    struct tg_arena a;
    struct tg_jval *root;
    struct tg_json_error jerr;
    struct tg_tj_error terr;
    tg_arena_init(&a);
    struct tg_tjf_body fb;
    Tensorflow__Serving__PredictRequest fast = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    int fast_ok = tg_tjf_scan(&a, body, len, &fb) && tg_tjf_decode(&a, &fb, &sig, &fast);
    if (tg_json_parse(body, len, &a, 1000, &root, &jerr) != 0) {
        if (fast_ok)
            abort(); /* the fast path took a body the parser rejects */
        goto out;
    }
    if (root->type == TG_JOBJECT) {
        Tensorflow__Serving__Input input;
        (void)tg_tj_decode_examples(&a, root, &input, &terr);
    }
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    int row;
    if (root->type != TG_JOBJECT || tg_tj_decode_predict(&a, root, &sig, &req, &row, &terr) != 0) {
        if (fast_ok)
            abort(); /* ... or one the slow path refuses */
        goto out;
    }
    if (fast_ok && (fb.row != row || !tj_same_inputs(&fast, &req)))
        abort(); /* ... or built other tensors */

    /* the decoded inputs, answered back as outputs */
    Tensorflow__Serving__PredictResponse resp = TENSORFLOW__SERVING__PREDICT_RESPONSE__INIT;
    Tensorflow__Serving__PredictResponse__OutputsEntry ents[2], *ep[2];
    int exact = 1;
    if (req.n_inputs > 2)
        abort();
    for (size_t i = 0; i < req.n_inputs; i++) {
        check_tensor(req.inputs[i]->value);
        exact &= exact_dtype(req.inputs[i]->value->dtype);
        tensorflow__serving__predict_response__outputs_entry__init(&ents[i]);
        ents[i].key = req.inputs[i]->key;
        ents[i].value = req.inputs[i]->value;
        ep[i] = &ents[i];
    }
    resp.n_outputs = req.n_inputs;
    resp.outputs = ep;
    char *text;
    size_t tlen;
    if (tg_tj_encode_predict(&a, &resp, row, &text, &tlen, &terr) != 0)
        goto out;
    struct tg_jval *again;
    if (tg_json_parse(text, tlen, &a, 1000, &again, &jerr) != 0)
        abort(); /* the writer produced text the reader rejects */

    if (exact && req.n_inputs > 0) {
        size_t blen;
        char *b = as_request(text, tlen, row, &blen);
        Tensorflow__Serving__PredictRequest req2 = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
        int row2;
        if (tg_json_parse(b, blen, &a, 1000, &again, &jerr) != 0 ||
            tg_tj_decode_predict(&a, again, &sig, &req2, &row2, &terr) != 0 ||
            req2.n_inputs != req.n_inputs)
            abort();
        for (size_t i = 0; i < req.n_inputs; i++) {
            const Tensorflow__TensorProto *t2 = NULL;
            for (size_t k = 0; k < req2.n_inputs; k++)
                if (strcmp(req2.inputs[k]->key, req.inputs[i]->key) == 0)
                    t2 = req2.inputs[k]->value;
            if (!t2 || !same_tensor(req.inputs[i]->value, t2))
                abort();
        }
        free(b);
    }
out:
    tg_arena_dispose(&a);
    return 0;
}
