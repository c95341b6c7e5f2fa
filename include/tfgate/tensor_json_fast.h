/*
 * tensor_json_fast.h - the fast path of the REST Predict body: one pass over the text, no DOM,
 * numbers straight into a packed array, for the bodies that carry big tensors.
 *
 * The slow path (json.h's DOM, then tensor_json.h) costs 16 bytes and a tree walk per number
 * and parses each literal once more than needed; on a 224x224x3 image that is half the time.
 * This path handles the common shape of a large request exactly:
 *
 *   {"instances": <nested numeric array>, "signature_name": "...", <any other members>}
 *   {"inputs": <number or nested numeric array>, ...}
 *
 * for a signature with one input of a numeric dtype. Anything else - a syntax error, strings
 * or objects in the tensor, ragged or empty lists, duplicate keys, escapes, a NUL byte, deep
 * nesting, a dtype the values do not fit - is declined, and the caller runs the slow path,
 * which gives TF Serving's exact answer or error. So the fast path never has to reproduce an
 * error message, and when it accepts, its result is byte for byte the slow path's result
 * (tests/unit/test_tensor_json_fast.c and the fuzz target check this on every input).
 *
 * Two steps, because the dtype is only known once the signature is, and the signature comes
 * from the body's signature_name and the backend's metadata:
 *   tg_tjf_scan   validates the whole body and reads the tensor's values as doubles (what the
 *                 slow path computes for float/double; integers up to 2^53 stay exact);
 *   tg_tjf_decode converts them to the signature's dtype (double: no copy at all).
 * Pure: no sockets, no loop; everything in the arena. Thread affinity: any thread.
 */
#ifndef TG_TENSOR_JSON_FAST_H
#define TG_TENSOR_JSON_FAST_H

#include <stddef.h>
#include <stdint.h>

#include "tensorflow_serving/apis/predict.pb-c.h"

struct tg_arena;
struct tg_tj_signature;

#define TG_TJF_MAX_RANK   32
#define TG_TJF_MAX_CHUNKS 64

struct tg_tjf_body {
    int row;                    /* "instances" (1) or "inputs" (0) */
    const char *signature_name; /* NUL-terminated in the arena, or NULL when absent */
    size_t rank;
    int64_t dims[TG_TJF_MAX_RANK]; /* row: dims[0] is the number of instances */
    size_t n;                      /* values: the product of dims */
    /* the values in order, in chunks of tg_tjf_chunk_cap(i) values (the last one holds
     * fewer), in the arena; up to 55M values, more are declined */
    size_t n_chunks;
    double *chunk[TG_TJF_MAX_CHUNKS];
    int ints; /* every literal is an integer literal of magnitude <= 2^53 */
};

static inline size_t tg_tjf_chunk_cap(size_t i)
{
    return (size_t)1024 << (i < 10 ? i : 10);
}

/* Scans a Predict body of |len| bytes. Returns 1 with |out| filled when the body is in the
 * fast subset, 0 when the caller must parse it with json.h (nothing is reported: the slow path
 * says what is wrong, if anything). */
int tg_tjf_scan(struct tg_arena *arena, const char *text, size_t len, struct tg_tjf_body *out);

/* Builds |req|'s inputs from |body| for |sig|, exactly as tg_tj_decode_predict would from the
 * same text. Returns 1 when done, 0 when the slow path must decide (several inputs, a dtype the
 * fast path does not convert, values that do not fit the dtype); |req| is untouched then. */
int tg_tjf_decode(struct tg_arena *arena, const struct tg_tjf_body *body,
                  const struct tg_tj_signature *sig, Tensorflow__Serving__PredictRequest *req);

#endif /* TG_TENSOR_JSON_FAST_H */
