/*
 * proto_wire.c - the protobuf-c half of the wire-compatibility test (tests/integration/
 * test_proto_wire.py); the other half is Debian's python3-protobuf compiling the same .proto
 * files.
 *
 *   proto_wire roundtrip TYPE   read a message of TYPE (full proto name) on stdin, unpack it
 *                               with protobuf-c, pack it again, write it to stdout; exit 3 if
 *                               protobuf-c cannot parse it
 *   proto_wire sample NAME      write a message built field by field in C to stdout
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/core/framework/tensor.pb-c.h"
#include "tensorflow/core/protobuf/meta_graph.pb-c.h"
#include "tensorflow_serving/apis/classification.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/inference.pb-c.h"
#include "tensorflow_serving/apis/model_management.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"
#include "tensorflow_serving/apis/regression.pb-c.h"

static const ProtobufCMessageDescriptor *const descriptors[] = {
    &tensorflow__tensor_proto__descriptor,
    &tensorflow__tensor_shape_proto__descriptor,
    &tensorflow__signature_def__descriptor,
    &tensorflow__tensor_info__descriptor,
    &tensorflow__example__descriptor,
    &tensorflow__serving__model_spec__descriptor,
    &tensorflow__serving__predict_request__descriptor,
    &tensorflow__serving__predict_response__descriptor,
    &tensorflow__serving__get_model_metadata_request__descriptor,
    &tensorflow__serving__get_model_metadata_response__descriptor,
    &tensorflow__serving__signature_def_map__descriptor,
    &tensorflow__serving__get_model_status_request__descriptor,
    &tensorflow__serving__get_model_status_response__descriptor,
    &tensorflow__serving__classification_request__descriptor,
    &tensorflow__serving__classification_response__descriptor,
    &tensorflow__serving__regression_request__descriptor,
    &tensorflow__serving__regression_response__descriptor,
    &tensorflow__serving__multi_inference_request__descriptor,
    &tensorflow__serving__multi_inference_response__descriptor,
    &tensorflow__serving__reload_config_request__descriptor,
};

static uint8_t *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t r;
    while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    *len = n;
    return buf;
}

static int write_msg(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *out = malloc(len + 1);
    if (out == NULL)
        return 1;
    protobuf_c_message_pack(m, out);
    int rv = fwrite(out, 1, len, stdout) == len ? 0 : 1;
    free(out);
    return rv;
}

static int roundtrip(const char *type)
{
    const ProtobufCMessageDescriptor *d = NULL;
    ProtobufCMessage *m;
    uint8_t *in;
    size_t len;
    int rv;

    for (size_t i = 0; i < sizeof(descriptors) / sizeof(descriptors[0]); i++) {
        if (strcmp(descriptors[i]->name, type) == 0)
            d = descriptors[i];
    }
    if (d == NULL) {
        fprintf(stderr, "proto_wire: unknown type %s\n", type);
        return 2;
    }
    in = read_all(stdin, &len);
    if (in == NULL)
        return 1;
    m = protobuf_c_message_unpack(d, NULL, len, in);
    free(in);
    if (m == NULL)
        return 3;
    rv = write_msg(m);
    protobuf_c_message_free_unpacked(m, NULL);
    return rv;
}

/* PredictRequest: version 0 present, string bytes that are not UTF-8, tensor_content, a
 * negative-zero float and an int64 beyond 2^53. */
static int sample_predict_request(void)
{
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    Google__Protobuf__Int64Value ver = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry ea =
        TENSORFLOW__SERVING__PREDICT_REQUEST__INPUTS_ENTRY__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry eb =
        TENSORFLOW__SERVING__PREDICT_REQUEST__INPUTS_ENTRY__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry *entries[] = {&ea, &eb};
    Tensorflow__TensorProto ta = TENSORFLOW__TENSOR_PROTO__INIT,
                            tb = TENSORFLOW__TENSOR_PROTO__INIT;
    Tensorflow__TensorShapeProto sa = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT,
                                 sb = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    Tensorflow__TensorShapeProto__Dim d3 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
    Tensorflow__TensorShapeProto__Dim d2 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
    Tensorflow__TensorShapeProto__Dim *da[] = {&d3}, *db[] = {&d2};
    float fv[] = {0.1f, -0.0f, 3.0f};
    int64_t iv[] = {9007199254740993LL, -1};
    uint8_t content[16];
    char *filter[] = {"y"};

    spec.name = "m";
    spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    spec.version = &ver; /* value 0: encoded as the empty sub-message 12 00 */
    spec.signature_name = "sig";
    d3.size = 3;
    d2.size = 2;
    sa.n_dim = 1;
    sa.dim = da;
    sb.n_dim = 1;
    sb.dim = db;
    ta.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    ta.tensor_shape = &sa;
    ta.n_float_val = 3;
    ta.float_val = fv;
    tb.dtype = TENSORFLOW__DATA_TYPE__DT_INT64;
    tb.tensor_shape = &sb;
    memcpy(content, iv, sizeof(content)); /* little-endian host */
    tb.tensor_content.data = content;
    tb.tensor_content.len = sizeof(content);
    ea.key = "a";
    ea.value = &ta;
    eb.key = "b";
    eb.value = &tb;
    req.model_spec = &spec;
    req.n_inputs = 2;
    req.inputs = entries;
    req.n_output_filter = 1;
    req.output_filter = filter;
    return write_msg(&req.base);
}

/* GetModelMetadataResponse: an Any holding a packed SignatureDefMap. */
static int sample_metadata_response(void)
{
    Tensorflow__TensorInfo ti = TENSORFLOW__TENSOR_INFO__INIT;
    Tensorflow__TensorShapeProto sh = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    Tensorflow__SignatureDef sd = TENSORFLOW__SIGNATURE_DEF__INIT;
    Tensorflow__SignatureDef__InputsEntry ie = TENSORFLOW__SIGNATURE_DEF__INPUTS_ENTRY__INIT,
                                          *ies[] = {&ie};
    Tensorflow__Serving__SignatureDefMap map = TENSORFLOW__SERVING__SIGNATURE_DEF_MAP__INIT;
    Tensorflow__Serving__SignatureDefMap__SignatureDefEntry
        se = TENSORFLOW__SERVING__SIGNATURE_DEF_MAP__SIGNATURE_DEF_ENTRY__INIT,
        *ses[] = {&se};
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Tensorflow__Serving__GetModelMetadataResponse resp =
        TENSORFLOW__SERVING__GET_MODEL_METADATA_RESPONSE__INIT;
    Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry
        me = TENSORFLOW__SERVING__GET_MODEL_METADATA_RESPONSE__METADATA_ENTRY__INIT,
        *mes[] = {&me};
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    Google__Protobuf__Int64Value ver = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    uint8_t packed[512];

    sh.unknown_rank = 1;
    ti.encoding_case = TENSORFLOW__TENSOR_INFO__ENCODING_NAME;
    ti.name = "tf_example:0";
    ti.dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
    ti.tensor_shape = &sh;
    ie.key = "inputs";
    ie.value = &ti;
    sd.n_inputs = 1;
    sd.inputs = ies;
    sd.method_name = "tensorflow/serving/classify";
    se.key = "classify_x_to_y";
    se.value = &sd;
    map.n_signature_def = 1;
    map.signature_def = ses;
    any.type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap";
    any.value.len = tensorflow__serving__signature_def_map__pack(&map, packed);
    any.value.data = packed;
    me.key = "signature_def";
    me.value = &any;
    ver.value = 123;
    spec.name = "half_plus_two";
    spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    spec.version = &ver;
    resp.model_spec = &spec;
    resp.n_metadata = 1;
    resp.metadata = mes;
    return write_msg(&resp.base);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "roundtrip") == 0)
        return roundtrip(argv[2]);
    if (argc == 3 && strcmp(argv[1], "sample") == 0) {
        if (strcmp(argv[2], "predict_request") == 0)
            return sample_predict_request();
        if (strcmp(argv[2], "metadata_response") == 0)
            return sample_metadata_response();
    }
    fprintf(stderr,
            "usage: proto_wire roundtrip TYPE | sample predict_request|metadata_response\n");
    return 2;
}
