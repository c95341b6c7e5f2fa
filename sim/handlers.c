/*
 * handlers.c - TF Serving's gRPC semantics for tfs-sim (see handlers.h). Error codes and texts
 * are those of spec/tfserving.md §4; the order of the checks follows TF Serving's, because it
 * decides which error a client sees when a request has several problems.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow_serving/apis/classification.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"
#include "tensorflow_serving/apis/regression.pb-c.h"

#include "handlers.h"
#include "tensor.h"

const struct sim_method_desc sim_methods[SIM_M_COUNT] = {
    [SIM_M_PREDICT] = {"/tensorflow.serving.PredictionService/Predict", "Predict", 1},
    [SIM_M_CLASSIFY] = {"/tensorflow.serving.PredictionService/Classify", "Classify", 1},
    [SIM_M_REGRESS] = {"/tensorflow.serving.PredictionService/Regress", "Regress", 1},
    [SIM_M_MULTI_INFERENCE] = {"/tensorflow.serving.PredictionService/MultiInference",
                               "MultiInference", 0},
    [SIM_M_METADATA] = {"/tensorflow.serving.PredictionService/GetModelMetadata",
                        "GetModelMetadata", 0},
    [SIM_M_STATUS] = {"/tensorflow.serving.ModelService/GetModelStatus", "GetModelStatus", 0},
    [SIM_M_RELOAD_CONFIG] = {"/tensorflow.serving.ModelService/HandleReloadConfigRequest",
                             "HandleReloadConfigRequest", 0},
};

#define AVAILABLE TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE

/* grpc++ answers a request it cannot parse with INTERNAL and protobuf's (empty, for proto3)
 * InitializationErrorString. Invalid UTF-8 in a string field is such a parse failure. */
static void parse_failure(struct sim_result *res)
{
    sim_status_set(&res->status, GRPC_STATUS_INTERNAL, "%s", "");
}

static int str_ok(const char *s)
{
    return s == NULL || sim_utf8_valid(s, strlen(s));
}

static int spec_utf8_ok(const Tensorflow__Serving__ModelSpec *spec)
{
    if (spec == NULL)
        return 1;
    return str_ok(spec->name) && str_ok(spec->signature_name) &&
           (spec->version_choice_case !=
                TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL ||
            str_ok(spec->version_label));
}

/* Finds the servable a ModelSpec names (TF Serving's ServerCore lookup). Returns 0 with the
 * model and version, or -1 with |res->status| set. */
static int resolve(struct sim_registry *reg, const Tensorflow__Serving__ModelSpec *spec,
                   struct sim_result *res, struct sim_model **mout, int64_t *vout)
{
    struct sim_model *m;
    struct sim_version *v;

    if (spec == NULL) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "Missing ModelSpec");
        return -1;
    }
    if (spec->name == NULL || spec->name[0] == '\0') {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                       "ModelSpec has no name specified.");
        return -1;
    }
    m = sim_registry_find(reg, spec->name);
    res->model = m;
    if (m != NULL) {
        atomic_fetch_add(&m->calls, 1);
        if (m->error_code != GRPC_STATUS_OK) {
            sim_status_set(&res->status, m->error_code, "%s", m->error_message);
            return -1;
        }
    }
    switch (spec->version_choice_case) {
    case TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION: {
        int64_t want = spec->version ? spec->version->value : 0;
        v = m ? sim_model_version(m, want) : NULL;
        if (v == NULL || atomic_load(&v->state) != AVAILABLE) {
            sim_status_set(&res->status, GRPC_STATUS_NOT_FOUND,
                           "Servable not found for request: Specific(%s, %lld)", spec->name,
                           (long long)want);
            return -1;
        }
        break;
    }
    case TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL: {
        int64_t want;
        if (m == NULL || sim_model_label(m, spec->version_label, &want) != 0) {
            sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                           "Unrecognized servable version label: %s", spec->version_label);
            return -1;
        }
        v = sim_model_version(m, want);
        if (v == NULL || atomic_load(&v->state) != AVAILABLE) {
            sim_status_set(&res->status, GRPC_STATUS_NOT_FOUND,
                           "Servable not found for request: Specific(%s, %lld)", spec->name,
                           (long long)want);
            return -1;
        }
        break;
    }
    default:
        v = m ? sim_model_latest(m) : NULL;
        if (v == NULL) {
            sim_status_set(&res->status, GRPC_STATUS_NOT_FOUND,
                           "Servable not found for request: Latest(%s)", spec->name);
            return -1;
        }
        break;
    }
    *mout = m;
    *vout = v->version;
    return 0;
}

static const char *sig_name(const Tensorflow__Serving__ModelSpec *spec)
{
    return spec->signature_name && spec->signature_name[0] ? spec->signature_name
                                                           : "serving_default";
}

static Tensorflow__Serving__ModelSpec *out_spec(struct sim_pool *pool, const char *name,
                                                int64_t version, const char *signature)
{
    Tensorflow__Serving__ModelSpec *s = SIM_POOL_NEW(pool, Tensorflow__Serving__ModelSpec);
    Google__Protobuf__Int64Value *v = SIM_POOL_NEW(pool, Google__Protobuf__Int64Value);
    tensorflow__serving__model_spec__init(s);
    google__protobuf__int64_value__init(v);
    v->value = version;
    s->name = (char *)name;
    s->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    s->version = v;
    s->signature_name = signature ? (char *)signature : (char *)"";
    return s;
}

static void pack(struct sim_result *res, const ProtobufCMessage *msg)
{
    res->body_len = protobuf_c_message_get_packed_size(msg);
    res->body = sim_xmalloc(res->body_len + 1);
    protobuf_c_message_pack(msg, res->body);
}

/* "{a,b,c}" from a list of strings, as TF Serving joins alias sets. */
static void join_set(struct sim_str *s, const char *const *names, size_t n)
{
    sim_str_puts(s, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sim_str_puts(s, ",");
        sim_str_puts(s, names[i]);
    }
    sim_str_puts(s, "}");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The request's tensor for |alias|, or NULL when the request has no such key. A map entry
 * without a value (protobuf-c leaves it NULL) reads as an empty TensorProto, DT_INVALID, as
 * C++ protobuf would present it. */
static const Tensorflow__TensorProto *find_input(const Tensorflow__Serving__PredictRequest *req,
                                                 const char *alias)
{
    static const Tensorflow__TensorProto empty = TENSORFLOW__TENSOR_PROTO__INIT;

    for (size_t i = 0; i < req->n_inputs; i++) {
        if (req->inputs[i]->key && strcmp(req->inputs[i]->key, alias) == 0)
            return req->inputs[i]->value ? req->inputs[i]->value : &empty;
    }
    return NULL;
}

static const struct sim_default *find_default(const struct sim_signature *sig, const char *alias)
{
    for (size_t i = 0; i < sig->n_defaults; i++) {
        if (strcmp(sig->defaults[i].alias, alias) == 0)
            return &sig->defaults[i];
    }
    return NULL;
}

static int sig_has_input(const struct sim_signature *sig, const char *alias)
{
    for (size_t i = 0; i < sig->n_inputs; i++) {
        if (strcmp(sig->inputs[i].alias, alias) == 0)
            return 1;
    }
    return 0;
}

/* TF Serving >= 2.14 (GetInputValues): input count, then each alias (spec §4). */
static int check_inputs(const struct sim_signature *sig,
                        const Tensorflow__Serving__PredictRequest *req, struct sim_result *res)
{
    size_t k = req->n_inputs, n = sig->n_inputs;
    struct sim_str msg = {.cap = 65536};
    const char **req_names = sim_xcalloc(k + 1, sizeof(char *));
    const char **sig_names = sim_xcalloc(n + 1, sizeof(char *));
    int rv = 0;

    for (size_t i = 0; i < k; i++)
        req_names[i] = req->inputs[i]->key ? req->inputs[i]->key : "";
    for (size_t i = 0; i < n; i++)
        sig_names[i] = sig->inputs[i].alias;
    qsort(req_names, k, sizeof(char *), cmp_str);

    if (k > n || (k < n && sig->n_defaults == 0)) {
        const char **extra = sim_xcalloc(k + 1, sizeof(char *));
        const char **missing = sim_xcalloc(n + 1, sizeof(char *));
        size_t ne = 0, nm = 0;
        for (size_t i = 0; i < k; i++) {
            if (!sig_has_input(sig, req_names[i]))
                extra[ne++] = req_names[i];
        }
        for (size_t i = 0; i < n; i++) {
            if (find_input(req, sig_names[i]) == NULL && find_default(sig, sig_names[i]) == NULL)
                missing[nm++] = sig_names[i];
        }
        sim_str_printf(&msg, "input size does not match signature: %zu!=%zu len(", k, n);
        join_set(&msg, req_names, k);
        sim_str_puts(&msg, ") != len(");
        join_set(&msg, sig_names, n);
        sim_str_puts(&msg, "). Sent extra: ");
        join_set(&msg, extra, ne);
        sim_str_puts(&msg, ". Missing but required: ");
        join_set(&msg, missing, nm);
        sim_str_puts(&msg, ".");
        free(extra);
        free(missing);
        rv = -1;
    } else {
        for (size_t i = 0; i < n; i++) {
            const struct sim_tensor_info *ti = &sig->inputs[i];
            if (find_input(req, ti->alias) != NULL || find_default(sig, ti->alias) != NULL)
                continue;
            const char **defs = sim_xcalloc(sig->n_defaults + 1, sizeof(char *));
            for (size_t d = 0; d < sig->n_defaults; d++)
                defs[d] = sig->defaults[d].alias;
            qsort(defs, sig->n_defaults, sizeof(char *), cmp_str);
            sim_str_printf(&msg,
                           "Signature input alias: %s(feed name: %s) not found in request and no "
                           "default value provided. Inputs expected to be in the request ",
                           ti->alias, ti->tensor_name);
            join_set(&msg, req_names, k);
            sim_str_puts(&msg, ", or default input alias set: ");
            join_set(&msg, defs, sig->n_defaults);
            free(defs);
            rv = -1;
            break;
        }
    }
    if (rv != 0)
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg.p);
    sim_str_dispose(&msg);
    free(req_names);
    free(sig_names);
    return rv;
}

static int check_output_filter(const struct sim_signature *sig,
                               const Tensorflow__Serving__PredictRequest *req,
                               struct sim_result *res)
{
    for (size_t i = 0; i < req->n_output_filter; i++) {
        const char *a = req->output_filter[i];
        int found = 0;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(req->output_filter[j], a) == 0) {
                sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                               "duplicate output tensor alias: %s", a);
                return -1;
            }
        }
        for (size_t j = 0; j < sig->n_outputs; j++)
            found |= strcmp(sig->outputs[j].alias, a) == 0;
        if (!found) {
            struct sim_str msg = {.cap = 65536};
            const char **names = sim_xcalloc(sig->n_outputs + 1, sizeof(char *));
            for (size_t j = 0; j < sig->n_outputs; j++)
                names[j] = sig->outputs[j].alias;
            sim_str_printf(&msg,
                           "output tensor alias not found in signature: %s Outputs "
                           "expected to be in the set ",
                           a);
            join_set(&msg, names, sig->n_outputs);
            sim_str_puts(&msg, ".");
            sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg.p);
            sim_str_dispose(&msg);
            free(names);
            return -1;
        }
    }
    return 0;
}

/* A _REF dtype in a signature (old graphs) accepts its base type. */
static int base_dtype(int dt)
{
    return dt > 100 ? dt - 100 : dt;
}

static void handle_predict(struct sim_registry *reg, const struct sim_handler_opts *opts,
                           const uint8_t *buf, size_t len, struct sim_result *res)
{
    Tensorflow__Serving__PredictRequest *req;
    Tensorflow__Serving__PredictResponse resp;
    const struct sim_signature *sig = NULL;
    struct sim_tensor *in = NULL;
    struct sim_pool pool = {0};
    struct sim_model *m;
    int64_t version;
    size_t i;

    req = tensorflow__serving__predict_request__unpack(NULL, len, buf);
    if (req == NULL) {
        parse_failure(res);
        return;
    }
    for (i = 0; i < req->n_inputs; i++) {
        if (!str_ok(req->inputs[i]->key))
            break;
    }
    for (size_t j = 0; j < req->n_output_filter && i == req->n_inputs; j++) {
        if (!str_ok(req->output_filter[j]))
            i = SIZE_MAX;
    }
    if (i != req->n_inputs || !spec_utf8_ok(req->model_spec)) {
        parse_failure(res);
        goto out;
    }
    if (resolve(reg, req->model_spec, res, &m, &version) != 0)
        goto out;
    sig = sim_model_signature(m, sig_name(req->model_spec));
    if (sig == NULL) {
        sim_status_set(&res->status, GRPC_STATUS_FAILED_PRECONDITION,
                       "Serving signature key \"%s\" not found.", sig_name(req->model_spec));
        goto out;
    }
    if (check_inputs(sig, req, res) != 0)
        goto out;

    /* Decode every signature input (request value, else the signature default), in alias
     * order; this is the "feed" order used for arg[i] below. */
    in = sim_xcalloc(sig->n_inputs + 1, sizeof(*in));
    for (i = 0; i < sig->n_inputs; i++) {
        const char *alias = sig->inputs[i].alias;
        const Tensorflow__TensorProto *tp = find_input(req, alias);
        const struct sim_default *def = tp == NULL ? find_default(sig, alias) : NULL;
        if (def != NULL)
            tp = def->tensor;
        /* check_inputs() guarantees a request tensor or a default */
        if (tp == NULL || sim_tensor_decode(tp, &in[i]) != 0) {
            sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "tensor parsing error: %s",
                           alias);
            goto out;
        }
    }
    if (check_output_filter(sig, req, res) != 0)
        goto out;
    for (i = 0; i < sig->n_inputs; i++) {
        if (in[i].dtype != base_dtype(sig->inputs[i].dtype)) {
            sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                           "Expects arg[%zu] to be %s but %s is provided", i,
                           sim_dtype_name(base_dtype(sig->inputs[i].dtype)),
                           sim_dtype_name(in[i].dtype));
            goto out;
        }
    }
    res->batch = sig->n_inputs > 0 && in[0].rank > 0 ? (size_t)in[0].dims[0] : 1;

    tensorflow__serving__predict_response__init(&resp);
    resp.model_spec = out_spec(&pool, m->name, version, sig_name(req->model_spec));

    if (m->fixed_outputs != NULL) {
        resp.n_outputs = m->n_fixed_outputs;
        resp.outputs = sim_pool_alloc(&pool, (resp.n_outputs + 1) * sizeof(void *));
        for (i = 0; i < resp.n_outputs; i++) {
            resp.outputs[i] =
                SIM_POOL_NEW(&pool, Tensorflow__Serving__PredictResponse__OutputsEntry);
            tensorflow__serving__predict_response__outputs_entry__init(resp.outputs[i]);
            resp.outputs[i]->key = m->fixed_output_aliases[i];
            resp.outputs[i]->value = m->fixed_outputs[i];
        }
        pack(res, &resp.base);
        goto out;
    }

    /* The outputs asked for: the filter, else every signature output. */
    size_t n_out = req->n_output_filter ? req->n_output_filter : sig->n_outputs;
    resp.n_outputs = sig->n_inputs > 0 ? n_out : 0;
    resp.outputs = sim_pool_alloc(&pool, (n_out + 1) * sizeof(void *));
    struct sim_tensor *outs = sim_pool_alloc(&pool, (n_out + 1) * sizeof(*outs));
    for (i = 0; i < resp.n_outputs; i++) {
        const char *alias = req->n_output_filter ? req->output_filter[i] : sig->outputs[i].alias;
        const struct sim_tensor *src = &in[0];
        struct sim_tensor *o = &outs[i];

        if (m->behavior == SIM_BEHAVIOR_IDENTITY) {
            for (size_t k = 0; k < sig->n_inputs; k++) {
                if (strcmp(sig->inputs[k].alias, alias) == 0)
                    src = &in[k];
            }
            *o = *src; /* shares the input's data; freed with the inputs */
        } else {
            /* fl(fl(a*x) + b) in float32, as the test models compute (spec §6) */
            float a = (float)sig->a, b = (float)sig->b;
            float *v = sim_pool_alloc(&pool, (src->n + 1) * sizeof(float));
            if (src->dtype == TENSORFLOW__DATA_TYPE__DT_FLOAT) { /* the common, large case */
                const float *x = src->data;
                for (size_t e = 0; e < src->n; e++) {
                    float ax = a * x[e];
                    v[e] = ax + b;
                }
            } else {
                for (size_t e = 0; e < src->n; e++) {
                    float ax = a * (float)sim_tensor_number(src, e);
                    v[e] = ax + b;
                }
            }
            o->dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
            o->rank = src->rank;
            memcpy(o->dims, src->dims, sizeof(o->dims));
            o->n = src->n;
            o->data = v;
        }
        resp.outputs[i] = SIM_POOL_NEW(&pool, Tensorflow__Serving__PredictResponse__OutputsEntry);
        tensorflow__serving__predict_response__outputs_entry__init(resp.outputs[i]);
        resp.outputs[i]->key = (char *)alias;
        resp.outputs[i]->value = SIM_POOL_NEW(&pool, Tensorflow__TensorProto);
        sim_tensor_encode(&pool, o, opts->tensor_content, resp.outputs[i]->value);
    }
    pack(res, &resp.base);

out:
    if (in != NULL) {
        for (i = 0; i < (sig ? sig->n_inputs : 0); i++)
            sim_tensor_dispose(&in[i]);
        free(in);
    }
    sim_pool_dispose(&pool);
    tensorflow__serving__predict_request__free_unpacked(req, NULL);
}

/* ---- Classify / Regress ---- */

static const Tensorflow__Feature *find_feature(const Tensorflow__Example *ex, const char *name)
{
    if (ex == NULL || ex->features == NULL)
        return NULL;
    for (size_t i = 0; i < ex->features->n_feature; i++) {
        if (ex->features->feature[i]->key && strcmp(ex->features->feature[i]->key, name) == 0)
            return ex->features->feature[i]->value;
    }
    return NULL;
}

/* Reads the float feature |sig->feature| as TF's ParseExample would for a FixedLenFeature
 * of shape [1]. Returns 0, or -1 with the error set. */
static int read_feature(const struct sim_signature *sig, const Tensorflow__Example *ex,
                        const Tensorflow__Example *context, float *out, struct sim_result *res)
{
    const Tensorflow__Feature *f = find_feature(ex, sig->feature);
    if (f == NULL)
        f = find_feature(context, sig->feature);
    if (f == NULL || f->kind_case == TENSORFLOW__FEATURE__KIND__NOT_SET) {
        if (sig->has_feature_default) {
            *out = sig->feature_default;
            return 0;
        }
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                       "Name: <unknown>, Feature: %s (data type: float) is required but could "
                       "not be found.",
                       sig->feature);
        return -1;
    }
    if (f->kind_case != TENSORFLOW__FEATURE__KIND_FLOAT_LIST) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                       "Name: <unknown>, Feature: %s.  Data types don't match. Data type: %s but "
                       "expected type: float",
                       sig->feature,
                       f->kind_case == TENSORFLOW__FEATURE__KIND_INT64_LIST ? "int64" : "string");
        return -1;
    }
    if (f->float_list == NULL || f->float_list->n_value != 1) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                       "Name: <unknown>, Key: %s, Index: 0.  Number of float values != "
                       "expected.  Values size: %zu but output shape: [1]",
                       sig->feature, f->float_list ? f->float_list->n_value : (size_t)0);
        return -1;
    }
    *out = f->float_list->value[0];
    return 0;
}

static void handle_classify_regress(struct sim_registry *reg, int classify, const uint8_t *buf,
                                    size_t len, struct sim_result *res)
{
    /* ClassificationRequest and RegressionRequest share their layout: model_spec = 1,
     * input = 2; so do the responses (result = 1, model_spec = 2). */
    Tensorflow__Serving__ClassificationRequest *creq = NULL;
    Tensorflow__Serving__RegressionRequest *rreq = NULL;
    const Tensorflow__Serving__ModelSpec *spec;
    const Tensorflow__Serving__Input *input;
    const struct sim_signature *sig;
    struct sim_pool pool = {0};
    struct sim_model *m;
    int64_t version;

    if (classify) {
        creq = tensorflow__serving__classification_request__unpack(NULL, len, buf);
        spec = creq ? creq->model_spec : NULL;
        input = creq ? creq->input : NULL;
    } else {
        rreq = tensorflow__serving__regression_request__unpack(NULL, len, buf);
        spec = rreq ? rreq->model_spec : NULL;
        input = rreq ? rreq->input : NULL;
    }
    if ((classify ? (void *)creq : (void *)rreq) == NULL) {
        parse_failure(res);
        return;
    }
    if (!spec_utf8_ok(spec)) {
        parse_failure(res);
        goto out;
    }
    if (resolve(reg, spec, res, &m, &version) != 0)
        goto out;
    sig = sim_model_signature(m, sig_name(spec));
    if (sig == NULL) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                       "No signature was found with the name: %s", sig_name(spec));
        goto out;
    }

    Tensorflow__Example **examples = NULL;
    const Tensorflow__Example *context = NULL;
    size_t n = 0;
    if (input != NULL && input->kind_case == TENSORFLOW__SERVING__INPUT__KIND_EXAMPLE_LIST &&
        input->example_list != NULL) {
        examples = input->example_list->examples;
        n = input->example_list->n_examples;
    } else if (input != NULL &&
               input->kind_case == TENSORFLOW__SERVING__INPUT__KIND_EXAMPLE_LIST_WITH_CONTEXT &&
               input->example_list_with_context != NULL) {
        examples = input->example_list_with_context->examples;
        n = input->example_list_with_context->n_examples;
        context = input->example_list_with_context->context;
    }
    if (n == 0) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "Input is empty.");
        goto out;
    }
    res->batch = n;

    float *y = sim_pool_alloc(&pool, n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float x, a = (float)sig->a, b = (float)sig->b;
        if (read_feature(sig, examples[i], context, &x, res) != 0)
            goto out;
        float ax = a * x;
        y[i] = ax + b;
    }

    Tensorflow__Serving__ModelSpec *ospec = out_spec(&pool, m->name, version, sig_name(spec));
    if (classify) {
        Tensorflow__Serving__ClassificationResponse resp;
        Tensorflow__Serving__ClassificationResult result;
        tensorflow__serving__classification_response__init(&resp);
        tensorflow__serving__classification_result__init(&result);
        resp.model_spec = ospec;
        if (m->fixed_classify != NULL) {
            resp.result = m->fixed_classify;
        } else {
            result.n_classifications = n;
            result.classifications = sim_pool_alloc(&pool, n * sizeof(void *));
            for (size_t i = 0; i < n; i++) {
                Tensorflow__Serving__Classifications *cs =
                    SIM_POOL_NEW(&pool, Tensorflow__Serving__Classifications);
                Tensorflow__Serving__Class *c = SIM_POOL_NEW(&pool, Tensorflow__Serving__Class);
                tensorflow__serving__classifications__init(cs);
                tensorflow__serving__class__init(c);
                c->score = y[i];
                cs->n_classes = 1;
                cs->classes = sim_pool_alloc(&pool, sizeof(void *));
                cs->classes[0] = c;
                result.classifications[i] = cs;
            }
            resp.result = &result;
        }
        pack(res, &resp.base);
    } else {
        Tensorflow__Serving__RegressionResponse resp;
        Tensorflow__Serving__RegressionResult result;
        tensorflow__serving__regression_response__init(&resp);
        tensorflow__serving__regression_result__init(&result);
        resp.model_spec = ospec;
        if (m->fixed_regress != NULL) {
            resp.result = m->fixed_regress;
        } else {
            result.n_regressions = n;
            result.regressions = sim_pool_alloc(&pool, n * sizeof(void *));
            for (size_t i = 0; i < n; i++) {
                Tensorflow__Serving__Regression *r =
                    SIM_POOL_NEW(&pool, Tensorflow__Serving__Regression);
                tensorflow__serving__regression__init(r);
                r->value = y[i];
                result.regressions[i] = r;
            }
            resp.result = &result;
        }
        pack(res, &resp.base);
    }

out:
    sim_pool_dispose(&pool);
    if (creq != NULL)
        tensorflow__serving__classification_request__free_unpacked(creq, NULL);
    if (rreq != NULL)
        tensorflow__serving__regression_request__free_unpacked(rreq, NULL);
}

static void handle_metadata(struct sim_registry *reg, const uint8_t *buf, size_t len,
                            struct sim_result *res)
{
    Tensorflow__Serving__GetModelMetadataRequest *req;
    Tensorflow__Serving__GetModelMetadataResponse resp;
    Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry entry, *entries[1];
    Google__Protobuf__Any any;
    struct sim_pool pool = {0};
    struct sim_model *m;
    int64_t version;

    req = tensorflow__serving__get_model_metadata_request__unpack(NULL, len, buf);
    if (req == NULL) {
        parse_failure(res);
        return;
    }
    for (size_t i = 0; i < req->n_metadata_field; i++) {
        if (!str_ok(req->metadata_field[i]))
            goto bad_utf8;
    }
    if (!spec_utf8_ok(req->model_spec))
        goto bad_utf8;
    if (req->model_spec == NULL) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "Missing ModelSpec");
        goto out;
    }
    if (req->n_metadata_field == 0) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                       "GetModelMetadataRequest must specify at least one metadata_field");
        goto out;
    }
    for (size_t i = 0; i < req->n_metadata_field; i++) {
        if (strcmp(req->metadata_field[i], "signature_def") != 0) {
            sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT,
                           "Metadata field %s is not supported", req->metadata_field[i]);
            goto out;
        }
    }
    if (resolve(reg, req->model_spec, res, &m, &version) != 0)
        goto out;
    if (m->fixed_metadata != NULL) {
        pack(res, &m->fixed_metadata->base);
        goto out;
    }
    tensorflow__serving__get_model_metadata_response__init(&resp);
    tensorflow__serving__get_model_metadata_response__metadata_entry__init(&entry);
    google__protobuf__any__init(&any);
    resp.model_spec = out_spec(&pool, m->name, version, NULL);
    any.type_url = (char *)"type.googleapis.com/tensorflow.serving.SignatureDefMap";
    any.value.data = m->sigmap;
    any.value.len = m->sigmap_len;
    entry.key = (char *)"signature_def";
    entry.value = &any;
    entries[0] = &entry;
    resp.n_metadata = 1;
    resp.metadata = entries;
    pack(res, &resp.base);
    goto out;

bad_utf8:
    parse_failure(res);
out:
    sim_pool_dispose(&pool);
    tensorflow__serving__get_model_metadata_request__free_unpacked(req, NULL);
}

static void handle_status(struct sim_registry *reg, const uint8_t *buf, size_t len,
                          struct sim_result *res)
{
    Tensorflow__Serving__GetModelStatusRequest *req;
    Tensorflow__Serving__GetModelStatusResponse resp;
    const Tensorflow__Serving__ModelSpec *spec;
    struct sim_pool pool = {0};
    struct sim_model *m;
    int has_version;
    int64_t want = 0;

    req = tensorflow__serving__get_model_status_request__unpack(NULL, len, buf);
    if (req == NULL) {
        parse_failure(res);
        return;
    }
    spec = req->model_spec;
    if (!spec_utf8_ok(spec)) {
        parse_failure(res);
        goto out;
    }
    if (spec == NULL) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "Missing ModelSpec");
        goto out;
    }
    /* GetModelStatus checks only has_version(): a label is ignored (spec §2.7). */
    has_version =
        spec->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    if (has_version)
        want = spec->version ? spec->version->value : 0;
    m = sim_registry_find(reg, spec->name ? spec->name : "");
    res->model = m;
    if (m != NULL) {
        /* not counted per model: a status query is a health probe, not traffic */
        if (m->error_code != GRPC_STATUS_OK) {
            sim_status_set(&res->status, m->error_code, "%s", m->error_message);
            goto out;
        }
        if (m->fixed_status != NULL) {
            pack(res, &m->fixed_status->base);
            goto out;
        }
    }
    tensorflow__serving__get_model_status_response__init(&resp);
    size_t nv = m ? m->n_versions : 0;
    resp.model_version_status = sim_pool_alloc(&pool, (nv + 1) * sizeof(void *));
    for (size_t i = 0; i < nv; i++) { /* versions are kept in descending order */
        const struct sim_version *v = &m->versions[i];
        if (has_version && v->version != want)
            continue;
        Tensorflow__Serving__ModelVersionStatus *s =
            SIM_POOL_NEW(&pool, Tensorflow__Serving__ModelVersionStatus);
        Tensorflow__Serving__StatusProto *sp =
            SIM_POOL_NEW(&pool, Tensorflow__Serving__StatusProto);
        tensorflow__serving__model_version_status__init(s);
        tensorflow__serving__status_proto__init(sp);
        s->version = v->version;
        s->state = atomic_load(&v->state);
        s->status = sp;
        resp.model_version_status[resp.n_model_version_status++] = s;
    }
    if (resp.n_model_version_status == 0) {
        if (has_version)
            sim_status_set(&res->status, GRPC_STATUS_NOT_FOUND,
                           "Could not find version %lld of model %s", (long long)want,
                           spec->name ? spec->name : "");
        else
            sim_status_set(&res->status, GRPC_STATUS_NOT_FOUND,
                           "Could not find any versions of model %s", spec->name ? spec->name : "");
        goto out;
    }
    pack(res, &resp.base);
out:
    sim_pool_dispose(&pool);
    tensorflow__serving__get_model_status_request__free_unpacked(req, NULL);
}

void sim_handle(struct sim_registry *reg, const struct sim_handler_opts *opts,
                enum sim_method method, const uint8_t *req, size_t len, struct sim_result *res)
{
    memset(res, 0, sizeof(*res));
    res->batch = 1;
    switch (method) {
    case SIM_M_PREDICT:
        handle_predict(reg, opts, req, len, res);
        break;
    case SIM_M_CLASSIFY:
        handle_classify_regress(reg, 1, req, len, res);
        break;
    case SIM_M_REGRESS:
        handle_classify_regress(reg, 0, req, len, res);
        break;
    case SIM_M_METADATA:
        handle_metadata(reg, req, len, res);
        break;
    case SIM_M_STATUS:
        handle_status(reg, req, len, res);
        break;
    case SIM_M_MULTI_INFERENCE:
    case SIM_M_RELOAD_CONFIG:
    case SIM_M_COUNT:
        sim_status_set(&res->status, GRPC_STATUS_UNIMPLEMENTED, "%s is not implemented by tfs-sim",
                       method < SIM_M_COUNT ? sim_methods[method].name : "method");
        break;
    }
}

void sim_result_dispose(struct sim_result *res)
{
    sim_status_dispose(&res->status);
    free(res->body);
    res->body = NULL;
}
