/*
 * test_sim_tensor.c - tfs-sim's TensorProto decoding (spec/tfserving.md §2.3): tensor_content,
 * the fill rule, narrowing, strings, and the limits that keep hostile shapes from allocating.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tensor.h"

static Tensorflow__TensorShapeProto__Dim dims_store[8];
static Tensorflow__TensorShapeProto__Dim *dim_ptrs[8];
static Tensorflow__TensorShapeProto shape_store;

static void set_shape(Tensorflow__TensorProto *tp, size_t rank, const int64_t *dims)
{
    tensorflow__tensor_shape_proto__init(&shape_store);
    for (size_t i = 0; i < rank; i++) {
        tensorflow__tensor_shape_proto__dim__init(&dims_store[i]);
        dims_store[i].size = dims[i];
        dim_ptrs[i] = &dims_store[i];
    }
    shape_store.n_dim = rank;
    shape_store.dim = dim_ptrs;
    tp->tensor_shape = &shape_store;
}

static void fill_rule_float(void **state)
{
    (void)state;
    Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT;
    float vals[] = {1.0f, 2.0f};
    int64_t dims[] = {2, 2};
    struct sim_tensor t;

    tp.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    set_shape(&tp, 2, dims);
    tp.n_float_val = 2;
    tp.float_val = vals;
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    assert_int_equal(t.n, 4);
    float *f = t.data;
    assert_true(f[0] == 1.0f && f[1] == 2.0f && f[2] == 2.0f && f[3] == 2.0f);
    sim_tensor_dispose(&t);

    tp.n_float_val = 0; /* none given: zeros */
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    f = t.data;
    assert_true(f[0] == 0.0f && f[3] == 0.0f);
    sim_tensor_dispose(&t);

    float many[] = {1, 2, 3, 4, 5, 6}; /* extra values are ignored */
    tp.n_float_val = 6;
    tp.float_val = many;
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    assert_int_equal(t.n, 4);
    sim_tensor_dispose(&t);
}

static void scalar_has_one_element(void **state)
{
    (void)state;
    Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT;
    double v = 0.25;
    struct sim_tensor t;

    tp.dtype = TENSORFLOW__DATA_TYPE__DT_DOUBLE;
    tp.n_double_val = 1;
    tp.double_val = &v;
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    assert_int_equal(t.rank, 0);
    assert_int_equal(t.n, 1);
    assert_true(sim_tensor_number(&t, 0) == 0.25);
    sim_tensor_dispose(&t);
}

static void content_wins_and_must_match(void **state)
{
    (void)state;
    Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT;
    int16_t raw[] = {-2, 300};
    int32_t ignored[] = {9};
    int64_t dims[] = {2};
    struct sim_tensor t;

    tp.dtype = TENSORFLOW__DATA_TYPE__DT_INT16;
    set_shape(&tp, 1, dims);
    tp.tensor_content.data = (uint8_t *)raw;
    tp.tensor_content.len = sizeof(raw);
    tp.n_int_val = 1;
    tp.int_val = ignored;
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    assert_int_equal(((int32_t *)t.data)[0], -2);
    assert_int_equal(((int32_t *)t.data)[1], 300);
    sim_tensor_dispose(&t);

    tp.tensor_content.len = 3; /* not 2 x 2 bytes */
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
    assert_null(t.data);
}

static void narrowing_follows_tf(void **state)
{
    (void)state;
    Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT;
    int32_t vals[] = {300, -1, 128};
    int64_t dims[] = {3};
    struct sim_tensor t;

    set_shape(&tp, 1, dims);
    tp.n_int_val = 3;
    tp.int_val = vals;
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_UINT8;
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    assert_int_equal(((int32_t *)t.data)[0], 44);
    assert_int_equal(((int32_t *)t.data)[1], 255);
    sim_tensor_dispose(&t);
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_INT8;
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    assert_int_equal(((int32_t *)t.data)[2], -128);
    sim_tensor_dispose(&t);
}

static void strings_in_content(void **state)
{
    (void)state;
    /* varint lengths first (3, 0, 200 in two bytes), then the bytes */
    uint8_t buf[4 + 203];
    int64_t dims[] = {3};
    Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT;
    struct sim_tensor t;

    buf[0] = 3;
    buf[1] = 0;
    buf[2] = 0xc8;
    buf[3] = 0x01;
    memcpy(buf + 4, "abc", 3);
    memset(buf + 7, 'z', 200);
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
    set_shape(&tp, 1, dims);
    tp.tensor_content.data = buf;
    tp.tensor_content.len = sizeof(buf) - 1; /* one byte short */
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
    tp.tensor_content.len = 3; /* lengths cut in the middle of a varint */
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
    tp.tensor_content.len = sizeof(buf);
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    struct sim_bytes *s = t.data;
    assert_int_equal(s[0].len, 3);
    assert_memory_equal(s[0].p, "abc", 3);
    assert_int_equal(s[1].len, 0);
    assert_int_equal(s[2].len, 200);
    assert_true(sim_tensor_number(&t, 2) == 200.0);
    sim_tensor_dispose(&t);
}

static void invalid_tensors(void **state)
{
    (void)state;
    Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT;
    int64_t neg[] = {2, -1}, huge[] = {1LL << 31, 1LL << 31}, overflow[] = {1LL << 62, 1LL << 62};
    struct sim_tensor t;

    assert_int_equal(sim_tensor_decode(&tp, &t), -1); /* DT_INVALID */
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    set_shape(&tp, 2, neg);
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
    set_shape(&tp, 2, huge); /* 2^62 elements: refused before allocating */
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
    set_shape(&tp, 2, overflow); /* product overflows size_t */
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
    tp.tensor_shape = NULL;
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_VARIANT;
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
    tp.dtype = 1000;
    assert_int_equal(sim_tensor_decode(&tp, &t), -1);
}

static void encode_roundtrip(void **state)
{
    (void)state;
    Tensorflow__TensorProto tp = TENSORFLOW__TENSOR_PROTO__INIT, out;
    int64_t vals[] = {INT64_MIN, 9007199254740993LL};
    int64_t dims[] = {2};
    struct sim_tensor t, back;
    struct sim_pool pool = {0};

    tp.dtype = TENSORFLOW__DATA_TYPE__DT_INT64;
    set_shape(&tp, 1, dims);
    tp.n_int64_val = 2;
    tp.int64_val = vals;
    assert_int_equal(sim_tensor_decode(&tp, &t), 0);
    for (int content = 0; content <= 1; content++) {
        sim_tensor_encode(&pool, &t, content, &out);
        assert_int_equal(content ? out.tensor_content.len : out.n_int64_val, content ? 16 : 2);
        assert_int_equal(sim_tensor_decode(&out, &back), 0);
        assert_memory_equal(back.data, vals, sizeof(vals));
        sim_tensor_dispose(&back);
    }
    sim_tensor_dispose(&t);
    sim_pool_dispose(&pool);
}

static void from_json_forms(void **state)
{
    (void)state;
    struct sim_pool pool = {0};
    Tensorflow__TensorProto tp;
    char err[256];
    json_error_t jerr;
    json_t *j;

    j = json_loads("{\"dtype\":\"DT_FLOAT\",\"shape\":[3],\"values\":[1.5,\"NaN\",\"-0.0\"]}", 0,
                   &jerr);
    assert_int_equal(sim_tensor_from_json(&pool, j, &tp, err, sizeof(err)), 0);
    assert_int_equal(tp.n_float_val, 3);
    assert_true(isnan(tp.float_val[1]));
    assert_true(signbit(tp.float_val[2]));
    json_decref(j);

    j = json_loads("{\"dtype\":\"DT_INT64\",\"shape\":[1],\"values\":[\"9223372036854775807\"]}", 0,
                   &jerr);
    assert_int_equal(sim_tensor_from_json(&pool, j, &tp, err, sizeof(err)), 0);
    assert_true(tp.int64_val[0] == INT64_MAX);
    json_decref(j);

    j = json_loads("{\"dtype\":\"DT_STRING\",\"shape\":[2],\"values\":[\"a\",{\"b64\":\"/wD+\"}]}",
                   0, &jerr);
    assert_int_equal(sim_tensor_from_json(&pool, j, &tp, err, sizeof(err)), 0);
    assert_int_equal(tp.string_val[1].len, 3);
    assert_int_equal(tp.string_val[1].data[0], 0xff);
    json_decref(j);

    j = json_loads(
        "{\"dtype\":\"DT_FLOAT\",\"shape\":[2],\"tensor_content_hex\":\"0000204000004040\"}", 0,
        &jerr);
    assert_int_equal(sim_tensor_from_json(&pool, j, &tp, err, sizeof(err)), 0);
    assert_int_equal(tp.tensor_content.len, 8);
    json_decref(j);

    j = json_loads("{\"dtype\":\"DT_FLOAT\",\"valuez\":[1]}", 0, &jerr);
    assert_int_equal(sim_tensor_from_json(&pool, j, &tp, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "valuez"));
    json_decref(j);
    sim_pool_dispose(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fill_rule_float),
        cmocka_unit_test(scalar_has_one_element),
        cmocka_unit_test(content_wins_and_must_match),
        cmocka_unit_test(narrowing_follows_tf),
        cmocka_unit_test(strings_in_content),
        cmocka_unit_test(invalid_tensors),
        cmocka_unit_test(encode_roundtrip),
        cmocka_unit_test(from_json_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
