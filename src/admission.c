/*
 * admission.c - see admission.h.
 */
#include <stdio.h>

#include "tfgate/admission.h"
#include "tfgate/config.h"

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

void tg_admission_of_predict(const Tensorflow__Serving__PredictRequest *req,
                             struct tg_request_size *out)
{
    out->batch = -1;
    out->elements = 0;
    out->bytes = 0;
    for (size_t i = 0; i < req->n_inputs; i++) {
        const Tensorflow__TensorProto *t = req->inputs[i]->value;
        if (t == NULL || t->tensor_shape == NULL)
            continue;
        uint64_t n = 1;
        for (size_t d = 0; d < t->tensor_shape->n_dim; d++) {
            int64_t size = t->tensor_shape->dim[d]->size;
            n = sat_mul(n, size > 0 ? (uint64_t)size : 0);
        }
        if (t->tensor_shape->n_dim > 0 && t->tensor_shape->dim[0]->size > out->batch)
            out->batch = t->tensor_shape->dim[0]->size;
        out->elements = out->elements + n < out->elements ? UINT64_MAX : out->elements + n;
    }
}

enum tg_admission tg_admission_check(const struct tg_route_cfg *route, const char *model,
                                     const struct tg_request_size *size, char *msg, size_t cap)
{
    if (route->max_batch && size->batch > 0 && (uint64_t)size->batch > route->max_batch) {
        snprintf(msg, cap, "tfgate: batch size %lld exceeds the limit of %llu for model '%.200s'",
                 (long long)size->batch, (unsigned long long)route->max_batch, model);
        return TG_ADMISSION_BATCH;
    }
    if (route->max_elements && size->elements > route->max_elements) {
        snprintf(msg, cap, "tfgate: %llu input values exceed the limit of %llu for model '%.200s'",
                 (unsigned long long)size->elements, (unsigned long long)route->max_elements,
                 model);
        return TG_ADMISSION_ELEMENTS;
    }
    if (route->max_request_bytes && size->bytes > route->max_request_bytes) {
        snprintf(msg, cap,
                 "tfgate: a request of %llu bytes exceeds the limit of %llu for model '%.200s'",
                 (unsigned long long)size->bytes, (unsigned long long)route->max_request_bytes,
                 model);
        return TG_ADMISSION_BYTES;
    }
    return TG_ADMIT;
}
