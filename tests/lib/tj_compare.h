/*
 * tj_compare.h - "the two REST decoders built the same PredictRequest inputs": used by the
 * differential unit test (tests/unit/test_tensor_json_fast.c) and the fuzz target, which both
 * hold the fast path (tensor_json_fast.h) to the slow path's result.
 */
#ifndef TG_TEST_TJ_COMPARE_H
#define TG_TEST_TJ_COMPARE_H

#include <string.h>

#include "tensorflow_serving/apis/predict.pb-c.h"

static inline int tj_same_bytes(const void *a, const void *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

/* Same dtype, shape and values, bit for bit (so -0.0 and NaN payloads count). */
static inline int tj_same_tensor(const Tensorflow__TensorProto *a, const Tensorflow__TensorProto *b)
{
    if (a->dtype != b->dtype || a->tensor_shape->n_dim != b->tensor_shape->n_dim)
        return 0;
    for (size_t i = 0; i < a->tensor_shape->n_dim; i++) {
        if (a->tensor_shape->dim[i]->size != b->tensor_shape->dim[i]->size)
            return 0;
    }
    if (a->n_int_val != b->n_int_val || a->n_string_val != b->n_string_val ||
        a->tensor_content.len != b->tensor_content.len)
        return 0;
    for (size_t i = 0; i < a->n_string_val; i++) {
        if (a->string_val[i].len != b->string_val[i].len ||
            !tj_same_bytes(a->string_val[i].data, b->string_val[i].data, a->string_val[i].len))
            return 0;
    }
    return tj_same_bytes(a->int_val, b->int_val, a->n_int_val * sizeof(int32_t)) &&
           tj_same_bytes(a->tensor_content.data, b->tensor_content.data, a->tensor_content.len);
}

static inline int tj_same_inputs(const Tensorflow__Serving__PredictRequest *a,
                                 const Tensorflow__Serving__PredictRequest *b)
{
    if (a->n_inputs != b->n_inputs)
        return 0;
    for (size_t i = 0; i < a->n_inputs; i++) {
        if (strcmp(a->inputs[i]->key, b->inputs[i]->key) != 0 ||
            !tj_same_tensor(a->inputs[i]->value, b->inputs[i]->value))
            return 0;
    }
    return 1;
}

#endif /* TG_TEST_TJ_COMPARE_H */
