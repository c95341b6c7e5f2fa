/*
 * test_sim_handlers.c - tfs-sim's handlers called directly with serialized requests: TF
 * Serving's answers and the precedence of its errors (spec/tfserving.md §4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

#include "handlers.h"

static struct sim_registry reg;
static const struct sim_handler_opts opts = {0};

static int setup(void **state)
{
    char err[256];
    (void)state;
    return sim_registry_add_builtins(&reg, err, sizeof(err));
}

static int teardown(void **state)
{
    (void)state;
    sim_registry_dispose(&reg);
    return 0;
}

/* Packs a PredictRequest for half_plus_two with x = |vals|. */
static uint8_t *predict_bytes(const char *model, const char *sig, float *vals, size_t n, int dtype,
                              size_t *len)
{
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry e =
        TENSORFLOW__SERVING__PREDICT_REQUEST__INPUTS_ENTRY__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry *entries[] = {&e};
    Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
    Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    Tensorflow__TensorShapeProto__Dim d = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT, *dims[] = {&d};

    spec.name = (char *)model;
    spec.signature_name = (char *)(sig ? sig : "");
    d.size = (int64_t)n;
    shape.n_dim = 1;
    shape.dim = dims;
    t.dtype = dtype;
    t.tensor_shape = &shape;
    t.n_float_val = n;
    t.float_val = vals;
    e.key = "x";
    e.value = &t;
    req.model_spec = &spec;
    req.n_inputs = 1;
    req.inputs = entries;
    *len = tensorflow__serving__predict_request__get_packed_size(&req);
    uint8_t *buf = malloc(*len + 1);
    tensorflow__serving__predict_request__pack(&req, buf);
    return buf;
}

static void predict_ok(void **state)
{
    (void)state;
    float x[] = {1.0f, 2.0f, 5.0f};
    size_t len;
    uint8_t *buf = predict_bytes("half_plus_two", NULL, x, 3, 1, &len);
    struct sim_result res;

    sim_handle(&reg, &opts, SIM_M_PREDICT, buf, len, &res);
    assert_int_equal(res.status.code, GRPC_STATUS_OK);
    assert_int_equal(res.batch, 3);
    Tensorflow__Serving__PredictResponse *resp =
        tensorflow__serving__predict_response__unpack(NULL, res.body_len, res.body);
    assert_non_null(resp);
    assert_int_equal(resp->n_outputs, 1);
    assert_string_equal(resp->outputs[0]->key, "y");
    assert_int_equal(resp->outputs[0]->value->n_float_val, 3);
    assert_true(resp->outputs[0]->value->float_val[2] == 4.5f);
    assert_string_equal(resp->model_spec->signature_name, "serving_default");
    tensorflow__serving__predict_response__free_unpacked(resp, NULL);
    sim_result_dispose(&res);
    free(buf);
}

static void error_precedence(void **state)
{
    (void)state;
    float x[] = {1.0f};
    size_t len;
    struct sim_result res;
    uint8_t *buf;

    /* unknown model beats everything about the body */
    buf = predict_bytes("nosuch", "nope", x, 1, 7, &len);
    sim_handle(&reg, &opts, SIM_M_PREDICT, buf, len, &res);
    assert_int_equal(res.status.code, GRPC_STATUS_NOT_FOUND);
    assert_string_equal(res.status.message, "Servable not found for request: Latest(nosuch)");
    assert_null(res.model);
    sim_result_dispose(&res);
    free(buf);

    /* then the signature */
    buf = predict_bytes("half_plus_two", "nope", x, 1, 7, &len);
    sim_handle(&reg, &opts, SIM_M_PREDICT, buf, len, &res);
    assert_int_equal(res.status.code, GRPC_STATUS_FAILED_PRECONDITION);
    assert_string_equal(res.status.message, "Serving signature key \"nope\" not found.");
    sim_result_dispose(&res);
    free(buf);

    /* then the dtype (a float_val read as DT_STRING has no strings: decodes as "") */
    buf = predict_bytes("half_plus_two", NULL, x, 1, 7, &len);
    sim_handle(&reg, &opts, SIM_M_PREDICT, buf, len, &res);
    assert_int_equal(res.status.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(res.status.message, "Expects arg[0] to be float but string is provided");
    sim_result_dispose(&res);
    free(buf);
}

static void garbage_never_crashes(void **state)
{
    (void)state;
    uint8_t junk[64];
    struct sim_result res;

    srand(1);
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof(junk));
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)rand();
        for (int m = 0; m < SIM_M_COUNT; m++) {
            sim_handle(&reg, &opts, (enum sim_method)m, junk, n, &res);
            assert_true(res.status.code != GRPC_STATUS_OK || res.body != NULL);
            sim_result_dispose(&res);
        }
    }
}

static void status_descending_and_label_ignored(void **state)
{
    (void)state;
    Tensorflow__Serving__GetModelStatusRequest req =
        TENSORFLOW__SERVING__GET_MODEL_STATUS_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    uint8_t buf[128];
    struct sim_result res;

    spec.name = "half_plus_two";
    spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL;
    spec.version_label = "stable";
    req.model_spec = &spec;
    size_t len = tensorflow__serving__get_model_status_request__pack(&req, buf);
    sim_handle(&reg, &opts, SIM_M_STATUS, buf, len, &res);
    assert_int_equal(res.status.code, GRPC_STATUS_OK);
    Tensorflow__Serving__GetModelStatusResponse *resp =
        tensorflow__serving__get_model_status_response__unpack(NULL, res.body_len, res.body);
    assert_int_equal(resp->n_model_version_status, 2);
    assert_int_equal(resp->model_version_status[0]->version, 124);
    assert_int_equal(resp->model_version_status[1]->version, 123);
    tensorflow__serving__get_model_status_response__free_unpacked(resp, NULL);
    sim_result_dispose(&res);
}

static void model_file_errors_name_the_key(void **state)
{
    (void)state;
    struct sim_registry r = {0};
    char err[512];
    const char *doc = "{\"models\":[{\"name\":\"m\",\"signatures\":{\"s\":{\"inputs\":{},"
                      "\"outputs\":{},\"compute\":{\"c\":1}}}}]}";

    assert_int_equal(sim_registry_add_json(&r, doc, strlen(doc), "f.json", err, sizeof(err)), -1);
    assert_string_equal(err, "f.json:models[0].signatures.s.compute: unknown key 'c'");
    assert_int_equal(r.n_models, 0);
    sim_registry_dispose(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(predict_ok),
        cmocka_unit_test(error_precedence),
        cmocka_unit_test(garbage_never_crashes),
        cmocka_unit_test(status_descending_and_label_ignored),
        cmocka_unit_test(model_file_errors_name_the_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
