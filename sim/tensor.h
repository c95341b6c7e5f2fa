/*
 * tensor.h - tfs-sim's TensorProto decoding and encoding, written from spec/tfserving.md §2.3
 * independently of the gateway's tensor code.
 *
 * Decoding follows TensorFlow's Tensor::FromProto: a non-empty tensor_content wins and must be
 * exactly N elements; otherwise the typed *_val field is read with the fill rule (none given:
 * zeros; fewer than N: the last value repeats; more: the rest is ignored).
 *
 * Thread affinity: reentrant. Ownership is stated per function.
 */
#ifndef SIM_TENSOR_H
#define SIM_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tensorflow/core/framework/tensor.pb-c.h"

#include "util.h"

#define SIM_MAX_RANK 64

struct sim_bytes {
    uint8_t *p; /* owned by the tensor's data block */
    size_t len;
};

/* A decoded tensor. Element storage by dtype: float, double, int32 (every integer type of 32
 * bits or less, already narrowed as TF narrows it), int64, uint32, uint64, uint8 (bool),
 * uint16 (half/bfloat16 bit patterns), float[2] / double[2] (complex), struct sim_bytes
 * (string). */
struct sim_tensor {
    int dtype; /* tensorflow DataType */
    size_t rank;
    int64_t dims[SIM_MAX_RANK]; /* each >= 0 */
    size_t n;                   /* element count: product of dims (1 for a scalar) */
    void *data;                 /* owned; freed by sim_tensor_dispose */
};

/* The largest tensor tfs-sim will materialise, in bytes of element storage. A request whose
 * shape claims more fails with INVALID_ARGUMENT instead of exhausting memory. */
extern size_t sim_tensor_max_bytes;

/* Decodes |tp| into |out| (which the caller disposes on success). Returns 0, or -1 when the
 * proto is invalid in TF's terms (DT_INVALID or unsupported dtype, negative dim, rank above
 * SIM_MAX_RANK, tensor_content of the wrong size, over sim_tensor_max_bytes); |out| is then
 * left disposed. */
int sim_tensor_decode(const Tensorflow__TensorProto *tp, struct sim_tensor *out);
void sim_tensor_dispose(struct sim_tensor *t);

/* Element |i| as a number: bool is 1/0, a string its byte length, complex its real part,
 * half/bfloat16 their float value. */
double sim_tensor_number(const struct sim_tensor *t, size_t i);

/* Writes |t| into |tp| (initialised here) the way TF's AsProtoField does (exactly N values in
 * the typed field), or as tensor_content when |as_content|. Arrays come from |pool|; |t| must
 * outlive the pack of |tp| (string bytes are referenced, not copied). */
void sim_tensor_encode(struct sim_pool *pool, const struct sim_tensor *t, int as_content,
                       Tensorflow__TensorProto *tp);

/* Builds |tp| from the case-file JSON form (spec/tfserving.md §8):
 *   {"dtype": "DT_FLOAT", "shape": [2], "values": [1.0, "NaN", "-0.0"]}
 * or a raw form giving one typed field as is: "float_val", "double_val", "int_val",
 * "int64_val", "half_val", "bool_val", "string_val", or "tensor_content_hex".
 * Memory comes from |pool|. Returns 0, or -1 with a message in |err|. */
int sim_tensor_from_json(struct sim_pool *pool, json_t *j, Tensorflow__TensorProto *tp, char *err,
                         size_t errlen);

/* TF's lowercase dtype name used in error texts ("float", "int64", "float_ref"). */
const char *sim_dtype_name(int dtype);
/* "DT_FLOAT" -> 1; -1 when unknown. */
int sim_dtype_from_name(const char *name);

#endif /* SIM_TENSOR_H */
