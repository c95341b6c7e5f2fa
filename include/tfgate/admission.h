/*
 * admission.h - per-model request limits (a route's max_batch, max_elements,
 * max_request_bytes), applied to REST and native gRPC alike before a request reaches a
 * backend, so one oversized batch cannot occupy a GPU the others are waiting for.
 *
 * Pure: the caller measures the request (tg_admission_of_predict for a decoded REST request,
 * tg_grpc_predict_size in grpc_wire.h for a serialized gRPC one) and answers the refusal in its
 * protocol. Thread affinity: any thread.
 */
#ifndef TG_ADMISSION_H
#define TG_ADMISSION_H

#include <stddef.h>
#include <stdint.h>

#include "tensorflow_serving/apis/predict.pb-c.h"

struct tg_route_cfg;

/* What a request asks of the model server. */
struct tg_request_size {
    int64_t batch;     /* the largest dim 0 of the inputs; -1 when no input has a dimension */
    uint64_t elements; /* values over all inputs (saturating) */
    uint64_t bytes;    /* the serialized request */
};

enum tg_admission {
    TG_ADMIT = 0,
    TG_ADMISSION_BATCH,    /* REST 400 / INVALID_ARGUMENT */
    TG_ADMISSION_ELEMENTS, /* REST 400 / INVALID_ARGUMENT */
    TG_ADMISSION_BYTES,    /* REST 413 / RESOURCE_EXHAUSTED */
};

/* The size of a decoded PredictRequest's inputs (bytes left 0). */
void tg_admission_of_predict(const Tensorflow__Serving__PredictRequest *req,
                             struct tg_request_size *out);

/* Checks |size| against |route|'s limits. Returns TG_ADMIT, or the first limit exceeded with a
 * message naming the model and both numbers in |msg|. */
enum tg_admission tg_admission_check(const struct tg_route_cfg *route, const char *model,
                                     const struct tg_request_size *size, char *msg, size_t cap);

#endif /* TG_ADMISSION_H */
