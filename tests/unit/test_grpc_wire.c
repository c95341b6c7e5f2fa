/*
 * test_grpc_wire.c - framing, grpc-timeout, grpc-message encoding, ModelSpec extraction and
 * the metadata filter (src/grpc_wire.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "tensorflow_serving/apis/predict.pb-c.h"

#include "tfgate/arena.h"
#include "tfgate/error.h"
#include "tfgate/admission.h"
#include "tfgate/grpc_wire.h"

static void frame(uint8_t *out, uint8_t flag, uint32_t len)
{
    out[0] = flag;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

static void unframe(void **state)
{
    (void)state;
    struct tg_arena a;
    uint8_t body[32];
    const uint8_t *msg;
    size_t len;
    const char *why;

    tg_arena_init(&a);
    frame(body, 0, 3);
    memcpy(body + 5, "abc", 3);
    assert_int_equal(tg_grpc_unframe(body, 8, 100, NULL, &a, &msg, &len, &why), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(msg, "abc", 3);
    assert_int_equal(tg_grpc_unframe(body, 0, 100, NULL, &a, &msg, &len, &why), TG_EINVAL);
    assert_int_equal(tg_grpc_unframe(body, 4, 100, NULL, &a, &msg, &len, &why), TG_EINVAL);
    assert_int_equal(tg_grpc_unframe(body, 7, 100, NULL, &a, &msg, &len, &why),
                     TG_EINVAL); /* short */
    frame(body + 8, 0, 0);
    assert_int_equal(tg_grpc_unframe(body, 13, 100, NULL, &a, &msg, &len, &why),
                     TG_EINVAL); /* two */
    assert_int_equal(tg_grpc_unframe(body, 8, 2, NULL, &a, &msg, &len, &why), TG_ETOOLARGE);
    frame(body, 7, 3);
    assert_int_equal(tg_grpc_unframe(body, 8, 100, NULL, &a, &msg, &len, &why), TG_EINVAL);
    frame(body, 1, 3);
    assert_int_equal(tg_grpc_unframe(body, 8, 100, NULL, &a, &msg, &len, &why), TG_EUNIMPLEMENTED);
    assert_int_equal(tg_grpc_unframe(body, 8, 100, "snappy", &a, &msg, &len, &why),
                     TG_EUNIMPLEMENTED);
    tg_arena_dispose(&a);
}

static void unframe_gzip_and_bomb(void **state)
{
    (void)state;
    struct tg_arena a;
    static uint8_t plain[200000], packed[4096];
    uint8_t body[5 + sizeof(packed)];
    const uint8_t *msg;
    size_t len;
    const char *why;
    z_stream z;

    tg_arena_init(&a);
    memset(plain, 'z', sizeof(plain));
    memset(&z, 0, sizeof(z));
    deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    z.next_in = plain;
    z.avail_in = sizeof(plain);
    z.next_out = packed;
    z.avail_out = sizeof(packed);
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t plen = sizeof(packed) - z.avail_out;
    deflateEnd(&z);
    frame(body, 1, (uint32_t)plen);
    memcpy(body + 5, packed, plen);
    assert_int_equal(tg_grpc_unframe(body, 5 + plen, 1 << 20, "gzip", &a, &msg, &len, &why), 0);
    assert_int_equal(len, sizeof(plain));
    assert_int_equal(msg[len - 1], 'z');
    /* a decompression bomb stops at the limit instead of inflating without bound */
    assert_int_equal(tg_grpc_unframe(body, 5 + plen, 50000, "gzip", &a, &msg, &len, &why),
                     TG_ETOOLARGE);
    /* truncated or corrupt streams are refused */
    assert_int_equal(tg_grpc_unframe(body, 5 + plen / 2, 1 << 20, "gzip", &a, &msg, &len, &why),
                     TG_EINVAL);
    frame(body, 1, (uint32_t)(plen / 2));
    assert_int_not_equal(tg_grpc_unframe(body, 5 + plen / 2, 1 << 20, "gzip", &a, &msg, &len, &why),
                         0);
    tg_arena_dispose(&a);
}

static void timeouts(void **state)
{
    (void)state;
    uint64_t ms;
    assert_int_equal(tg_grpc_parse_timeout("100m", 4, &ms), 0);
    assert_int_equal(ms, 100);
    assert_int_equal(tg_grpc_parse_timeout("2S", 2, &ms), 0);
    assert_int_equal(ms, 2000);
    assert_int_equal(tg_grpc_parse_timeout("1H", 2, &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(tg_grpc_parse_timeout("1500u", 5, &ms), 0);
    assert_int_equal(ms, 2); /* rounded up */
    assert_int_equal(tg_grpc_parse_timeout("1n", 2, &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(tg_grpc_parse_timeout("99999999M", 9, &ms), 0);
    assert_int_equal(tg_grpc_parse_timeout("123456789S", 10, &ms), -1); /* 9 digits */
    assert_int_equal(tg_grpc_parse_timeout("10", 2, &ms), -1);
    assert_int_equal(tg_grpc_parse_timeout("S", 1, &ms), -1);
    assert_int_equal(tg_grpc_parse_timeout("-1S", 3, &ms), -1);
    assert_int_equal(tg_grpc_parse_timeout("1s", 2, &ms), -1);
}

static void percent(void **state)
{
    (void)state;
    char out[64];
    const char in[] = "50% done\nok\xc3\xa9";
    size_t n = tg_grpc_percent_encode(in, sizeof(in) - 1, out);
    assert_string_equal(out, "50%25 done%0Aok%C3%A9");
    assert_int_equal(n, strlen(out));
}

static size_t pack_predict(const char *name, int version_kind, uint8_t *buf)
{
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    Google__Protobuf__Int64Value v = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    spec.name = (char *)name;
    spec.signature_name = "sig";
    if (version_kind == 1) {
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        spec.version = &v; /* 0, present */
    } else if (version_kind == 2) {
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL;
        spec.version_label = "canary";
    }
    req.model_spec = &spec;
    char *filter[] = {"y"};
    req.n_output_filter = 1;
    req.output_filter = filter;
    return tensorflow__serving__predict_request__pack(&req, buf);
}

static void model_spec(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_model_spec s;
    uint8_t buf[256];
    size_t n;

    tg_arena_init(&a);
    n = pack_predict("resnet", 1, buf);
    assert_int_equal(tg_grpc_model_spec(TG_GM_PREDICT, buf, n, &a, &s), 0);
    assert_string_equal(s.name, "resnet");
    assert_int_equal(s.has_version, 1);
    assert_int_equal(s.version, 0);
    assert_null(s.label);
    assert_string_equal(s.signature, "sig");
    n = pack_predict("m", 2, buf);
    assert_int_equal(tg_grpc_model_spec(TG_GM_PREDICT, buf, n, &a, &s), 0);
    assert_string_equal(s.label, "canary");
    assert_int_equal(s.has_version, 0);

    /* protobuf merges a repeated singular message: the later name wins */
    uint8_t two[512];
    size_t n1 = pack_predict("first", 0, two);
    size_t n2 = pack_predict("second", 0, two + n1);
    assert_int_equal(tg_grpc_model_spec(TG_GM_PREDICT, two, n1 + n2, &a, &s), 0);
    assert_string_equal(s.name, "second");

    /* no ModelSpec; garbage; truncated */
    assert_int_equal(tg_grpc_model_spec(TG_GM_PREDICT, (const uint8_t *)"", 0, &a, &s), 0);
    assert_string_equal(s.name, "");
    assert_int_equal(tg_grpc_model_spec(TG_GM_PREDICT, (const uint8_t *)"\xff\xff\xff", 3, &a, &s),
                     TG_EINVAL);
    assert_int_equal(tg_grpc_model_spec(TG_GM_PREDICT, buf, n - 1, &a, &s), TG_EINVAL);
    assert_int_equal(
        tg_grpc_model_spec(TG_GM_PREDICT, (const uint8_t *)"\x0a\x05\x0a\x09", 4, &a, &s),
        TG_EINVAL);

    /* MultiInference: tasks = 1, each {model_spec = 1, method_name = 2} */
    uint8_t mi[64];
    const uint8_t spec_bytes[] = {0x0a, 0x01, 'm'};
    size_t k = 0;
    mi[k++] = 0x0a;
    mi[k++] = 2 + sizeof(spec_bytes);
    mi[k++] = 0x0a;
    mi[k++] = sizeof(spec_bytes);
    memcpy(mi + k, spec_bytes, sizeof(spec_bytes));
    k += sizeof(spec_bytes);
    assert_int_equal(tg_grpc_model_spec(TG_GM_MULTI_INFERENCE, mi, k, &a, &s), 0);
    assert_string_equal(s.name, "m");
    assert_int_equal(tg_grpc_model_spec(TG_GM_RELOAD_CONFIG, mi, k, &a, &s), 0);
    assert_string_equal(s.name, "");
    tg_arena_dispose(&a);
}

/* Every task of a MultiInference request, for RBAC; other methods have exactly one. */
static void task_model_specs(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_model_spec s;
    uint8_t mi[64];
    size_t k = 0;
    /* two tasks: {model_spec {name "a" signature_name "s1"}}, {model_spec {name "a"
     * signature_name "s2"}} */
    for (int t = 0; t < 2; t++) {
        const uint8_t spec[] = {0x0a, 0x01, 'a', 0x1a, 0x02, 's', (uint8_t)('1' + t)};
        mi[k++] = 0x0a;
        mi[k++] = 2 + sizeof(spec);
        mi[k++] = 0x0a;
        mi[k++] = sizeof(spec);
        memcpy(mi + k, spec, sizeof(spec));
        k += sizeof(spec);
    }
    tg_arena_init(&a);
    assert_int_equal(tg_grpc_task_model_spec(TG_GM_MULTI_INFERENCE, mi, k, 0, &a, &s), 1);
    assert_string_equal(s.signature, "s1");
    assert_int_equal(tg_grpc_task_model_spec(TG_GM_MULTI_INFERENCE, mi, k, 1, &a, &s), 1);
    assert_string_equal(s.signature, "s2");
    assert_int_equal(tg_grpc_task_model_spec(TG_GM_MULTI_INFERENCE, mi, k, 2, &a, &s), 0);
    assert_int_equal(tg_grpc_task_model_spec(TG_GM_PREDICT, mi, k, 1, &a, &s), 0);
    assert_int_equal(tg_grpc_task_model_spec(TG_GM_MULTI_INFERENCE, mi, k - 1, 1, &a, &s), -1);
    tg_arena_dispose(&a);
}

/* Shapes read off the wire, with protobuf's merge rule (repeated tensor_shape fields append
 * their dims), without decoding the tensors. */
static void predict_size(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_request_size sz;
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry e[2], *ep[2] = {&e[0], &e[1]};
    Tensorflow__TensorProto t[2];
    Tensorflow__TensorShapeProto sh[2];
    Tensorflow__TensorShapeProto__Dim d[3], *dp0[2] = {&d[0], &d[1]}, *dp1[1] = {&d[2]};
    for (int i = 0; i < 3; i++)
        tensorflow__tensor_shape_proto__dim__init(&d[i]);
    d[0].size = 8;
    d[1].size = 3;
    d[2].size = 5;
    for (int i = 0; i < 2; i++) {
        tensorflow__serving__predict_request__inputs_entry__init(&e[i]);
        tensorflow__tensor_proto__init(&t[i]);
        tensorflow__tensor_shape_proto__init(&sh[i]);
        t[i].tensor_shape = &sh[i];
        e[i].value = &t[i];
    }
    e[0].key = "a";
    e[1].key = "b";
    sh[0].n_dim = 2;
    sh[0].dim = dp0;
    sh[1].n_dim = 1;
    sh[1].dim = dp1;
    req.n_inputs = 2;
    req.inputs = ep;
    uint8_t buf[256];
    size_t n = tensorflow__serving__predict_request__pack(&req, buf);

    tg_arena_init(&a);
    assert_int_equal(tg_grpc_predict_size(buf, n, &a, &sz), 0);
    assert_int_equal(sz.batch, 8);
    assert_int_equal(sz.elements, 8 * 3 + 5);
    assert_int_equal(sz.bytes, n);
    /* the same, as the decoded message sees it */
    struct tg_request_size dec;
    tg_admission_of_predict(&req, &dec);
    assert_int_equal(dec.batch, 8);
    assert_int_equal(dec.elements, 29);

    /* input b's TensorProto followed by a second tensor_shape {dim {size: 2}}: dims append */
    uint8_t merged[300];
    const uint8_t extra_entry[] = {0x12, 0x0b, 0x0a, 0x01, 'c',  0x12, 0x06,
                                   0x12, 0x04, 0x12, 0x02, 0x08, 0x07}; /* c: shape [7] */
    memcpy(merged, buf, n);
    memcpy(merged + n, extra_entry, sizeof(extra_entry));
    assert_int_equal(tg_grpc_predict_size(merged, n + sizeof(extra_entry), &a, &sz), 0);
    assert_int_equal(sz.elements, 29 + 7);
    const uint8_t split[] = {0x12, 0x0f, 0x0a, 0x01, 'c',  0x12, 0x0a, 0x12, 0x02,
                             0x12, 0x00, 0x12, 0x04, 0x12, 0x02, 0x08, 0x06}; /* [0]+[6] */
    assert_int_equal(tg_grpc_predict_size(split, sizeof(split), &a, &sz), 0);
    assert_int_equal(sz.batch, 0);
    assert_int_equal(sz.elements, 0);
    assert_int_equal(tg_grpc_predict_size(buf, n - 1, &a, &sz), TG_EINVAL);
    tg_arena_dispose(&a);
}

static void model_spec_never_crashes_on_noise(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_model_spec s;
    uint8_t buf[128];
    srand(7);
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t k = 0; k < n; k++)
            buf[k] = (uint8_t)rand();
        tg_arena_init(&a);
        int rv = tg_grpc_model_spec((enum tg_grpc_method)(i % TG_GM_COUNT), buf, n, &a, &s);
        assert_true(rv == 0 || rv == TG_EINVAL);
        if (rv == 0)
            assert_non_null(s.name);
        tg_arena_dispose(&a);
    }
}

static void forwardable(void **state)
{
    (void)state;
#define F(n, v) tg_grpc_header_forwardable(n, strlen(n), v, strlen(v))
    assert_true(F("x-tenant", "acme"));
    assert_true(F("x-trace-bin", "\x01\x02"));
    assert_false(F("authorization", "Bearer x"));
    assert_false(F("host", "a"));
    assert_false(F(":path", "/"));
    assert_false(F("te", "trailers"));
    assert_false(F("connection", "close"));
    assert_false(F("grpc-timeout", "1S"));
    assert_false(F("content-type", "application/grpc"));
    assert_false(F("x-tfgate-subject", "mallory")); /* never taken from clients */
    assert_false(F("X-Upper", "v"));
    assert_false(F("x-bad", "caf\xc3\xa9"));
    assert_false(F("x-bad", "a\nb"));
#undef F
    assert_int_equal(tg_grpc_method_from_path("/tensorflow.serving.PredictionService/Predict", 45),
                     TG_GM_PREDICT);
    assert_int_equal(tg_grpc_method_from_path("/tensorflow.serving.PredictionService/Predic", 44),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unframe),      cmocka_unit_test(unframe_gzip_and_bomb),
        cmocka_unit_test(timeouts),     cmocka_unit_test(percent),
        cmocka_unit_test(model_spec),   cmocka_unit_test(model_spec_never_crashes_on_noise),
        cmocka_unit_test(forwardable),  cmocka_unit_test(task_model_specs),
        cmocka_unit_test(predict_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
