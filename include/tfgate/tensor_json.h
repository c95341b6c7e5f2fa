/*
 * tensor_json.h - TF Serving's REST tensor conversion, both ways (spec/tfserving.md §3.5-3.9):
 * a parsed request body (json.h) and a signature in, TensorProtos out; TensorProtos in,
 * TF Serving's exact JSON text out. Pure: no sockets, no loop; everything in an arena.
 *
 * Errors carry TF Serving's gRPC code and message (the REST layer maps the code to HTTP).
 * Thread affinity: any thread.
 */
#ifndef TG_TENSOR_JSON_H
#define TG_TENSOR_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/core/framework/tensor.pb-c.h"
#include "tensorflow_serving/apis/classification.pb-c.h"
#include "tensorflow_serving/apis/input.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"
#include "tensorflow_serving/apis/regression.pb-c.h"

/* Short names for the dtypes the converters handle (tensor_json.c, tensor_json_fast.c). */
enum {
    TG_DT_FLOAT = TENSORFLOW__DATA_TYPE__DT_FLOAT,
    TG_DT_DOUBLE = TENSORFLOW__DATA_TYPE__DT_DOUBLE,
    TG_DT_INT32 = TENSORFLOW__DATA_TYPE__DT_INT32,
    TG_DT_UINT8 = TENSORFLOW__DATA_TYPE__DT_UINT8,
    TG_DT_INT16 = TENSORFLOW__DATA_TYPE__DT_INT16,
    TG_DT_INT8 = TENSORFLOW__DATA_TYPE__DT_INT8,
    TG_DT_STRING = TENSORFLOW__DATA_TYPE__DT_STRING,
    TG_DT_INT64 = TENSORFLOW__DATA_TYPE__DT_INT64,
    TG_DT_BOOL = TENSORFLOW__DATA_TYPE__DT_BOOL,
    TG_DT_UINT32 = TENSORFLOW__DATA_TYPE__DT_UINT32,
    TG_DT_UINT64 = TENSORFLOW__DATA_TYPE__DT_UINT64,
};

struct tg_arena;
struct tg_jval;

struct tg_tj_error {
    int code;            /* gRPC status code */
    const char *message; /* in the arena */
};

struct tg_tj_input {
    const char *alias;
    int dtype; /* tensorflow DataType from the signature */
};

/* A signature's inputs, sorted by alias (tg_tj_sort_inputs). */
struct tg_tj_signature {
    size_t n_inputs;
    struct tg_tj_input *inputs;
};

void tg_tj_sort_inputs(struct tg_tj_signature *sig);

/* Converts the "instances" (row) or "inputs" (columnar) member of |body| (an object) into
 * the PredictRequest's inputs (|req|'s map, allocated in |arena|). |*row| tells which format
 * the body used. Steps 6-7 of spec §3.3. Returns 0, or -1 with |err| set. */
int tg_tj_decode_predict(struct tg_arena *arena, const struct tg_jval *body,
                         const struct tg_tj_signature *sig,
                         Tensorflow__Serving__PredictRequest *req, int *row,
                         struct tg_tj_error *err);

/* Converts a classify/regress body ("context", "examples") into |input| (§3.9). */
int tg_tj_decode_examples(struct tg_arena *arena, const struct tg_jval *body,
                          Tensorflow__Serving__Input *input, struct tg_tj_error *err);

/* Writes the JSON answer for a Predict response: {"predictions": ...} for a row request,
 * {"outputs": ...} for a columnar one, in TF Serving's layout with keys sorted. Output
 * tensors may use tensor_content or typed fields (TF's fill rule applies). Returns 0 with the
 * text in |*out|, or -1 with |err| set (400 errors of §3.8). */
int tg_tj_encode_predict(struct tg_arena *arena, const Tensorflow__Serving__PredictResponse *resp,
                         int row, char **out, size_t *out_len, struct tg_tj_error *err);

int tg_tj_encode_classify(struct tg_arena *arena,
                          const Tensorflow__Serving__ClassificationResult *r, char **out,
                          size_t *out_len, struct tg_tj_error *err);
int tg_tj_encode_regress(struct tg_arena *arena, const Tensorflow__Serving__RegressionResult *r,
                         char **out, size_t *out_len, struct tg_tj_error *err);

/* The TensorProto tg_tj_decode_predict builds for |n| values of |dtype| (a base type) in shape
 * |dims|: |vals| (arena-owned, not copied) holds them as float, double, int32 (int32 and the
 * narrow integer types, which go to int_val as TF keeps them), uint32, int64, uint64, one byte
 * per bool, or ProtobufCBinaryData per string. */
Tensorflow__TensorProto *tg_tj_tensor(struct tg_arena *arena, int dtype, size_t rank,
                                      const int64_t *dims, void *vals, size_t n);

/* TF Serving's float text (§3.8): %.6g, else %.9g (float) / %.17g (double) when that does not
 * read back exactly; ".0" when neither '.' nor 'e'; NaN, Infinity, -Infinity raw. */
size_t tg_tj_format_float(double v, int is_double, char *out);

/* TF's lower-case dtype name ("float", "int64", ...). */
const char *tg_tj_dtype_name(int dtype);

#endif /* TG_TENSOR_JSON_H */
