/*
 * models.c - the model registry: built-in test models and JSON model files (see models.h and
 * docs/tfs-sim.md for the file format).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "models.h"
#include "status.h"
#include "tensor.h"

/* The canonical test models (spec/tfserving.md §6), in the model-file format. */
static const char builtin_models[] =
    "{\"models\": ["
    "{\"name\": \"half_plus_two\", \"versions\": [123, 124],"
    " \"labels\": {\"stable\": 123, \"canary\": 124},"
    " \"behavior\": {\"type\": \"affine\", \"a\": 0.5, \"b\": 2.0},"
    " \"signatures\": {"
    "  \"serving_default\": {\"method_name\": \"tensorflow/serving/predict\","
    "   \"inputs\": {\"x\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": \"x:0\"}},"
    "   \"outputs\": {\"y\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": \"y:0\"}}},"
    "  \"classify_x_to_y\": {\"method_name\": \"tensorflow/serving/classify\","
    "   \"inputs\": {\"inputs\": {\"dtype\": \"DT_STRING\", \"shape\": \"unknown\", \"name\": "
    "\"tf_example:0\"}},"
    "   \"outputs\": {\"scores\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": "
    "\"y:0\"}},"
    "   \"compute\": {\"feature\": \"x\"}},"
    "  \"classify_x2_to_y3\": {\"method_name\": \"tensorflow/serving/classify\","
    "   \"inputs\": {\"inputs\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": "
    "\"x2:0\"}},"
    "   \"outputs\": {\"scores\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": "
    "\"y3:0\"}},"
    "   \"compute\": {\"feature\": \"x2\", \"feature_default\": 0.0, \"b\": 3.0}},"
    "  \"regress_x_to_y\": {\"method_name\": \"tensorflow/serving/regress\","
    "   \"inputs\": {\"inputs\": {\"dtype\": \"DT_STRING\", \"shape\": \"unknown\", \"name\": "
    "\"tf_example:0\"}},"
    "   \"outputs\": {\"outputs\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": "
    "\"y:0\"}},"
    "   \"compute\": {\"feature\": \"x\"}},"
    "  \"regress_x_to_y2\": {\"method_name\": \"tensorflow/serving/regress\","
    "   \"inputs\": {\"inputs\": {\"dtype\": \"DT_STRING\", \"shape\": \"unknown\", \"name\": "
    "\"tf_example:0\"}},"
    "   \"outputs\": {\"outputs\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": "
    "\"y2:0\"}},"
    "   \"compute\": {\"feature\": \"x\", \"b\": 3.0}},"
    "  \"regress_x2_to_y3\": {\"method_name\": \"tensorflow/serving/regress\","
    "   \"inputs\": {\"inputs\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": "
    "\"x2:0\"}},"
    "   \"outputs\": {\"outputs\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, 1], \"name\": "
    "\"y3:0\"}},"
    "   \"compute\": {\"feature\": \"x2\", \"feature_default\": 0.0, \"b\": 3.0}}"
    " }},"
    "{\"name\": \"half_plus_three\", \"versions\": [123],"
    " \"behavior\": {\"type\": \"affine\", \"a\": 0.5, \"b\": 3.0},"
    " \"signatures\": {"
    "  \"serving_default\": {\"method_name\": \"tensorflow/serving/predict\","
    "   \"inputs\": {\"x\": {\"dtype\": \"DT_FLOAT\", \"shape\": null, \"name\": \"x:0\"}},"
    "   \"outputs\": {\"y\": {\"dtype\": \"DT_FLOAT\", \"shape\": null, \"name\": \"y:0\"}}},"
    "  \"tensorflow/serving/regress\": {\"method_name\": \"tensorflow/serving/regress\","
    "   \"inputs\": {\"inputs\": {\"dtype\": \"DT_FLOAT\", \"shape\": null, \"name\": "
    "\"tf_example:0\"}},"
    "   \"outputs\": {\"outputs\": {\"dtype\": \"DT_FLOAT\", \"shape\": null, \"name\": "
    "\"Identity:0\"}},"
    "   \"compute\": {\"feature\": \"x\"}}"
    " }}"
    "]}";

/* Error context: a path such as models[0].signatures.serving_default.inputs.x */
struct ctx {
    char path[512];
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int fail(struct ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
    return -1;
}

/* Pushes ".key" (or "[i]" when key is NULL) onto the path; returns the old length to pop. */
static size_t push(struct ctx *c, const char *key, size_t index)
{
    size_t old = strlen(c->path);
    if (key != NULL)
        snprintf(c->path + old, sizeof(c->path) - old, "%s%s",
                 old && c->path[old - 1] != ':' ? "." : "", key);
    else
        snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", index);
    return old;
}

static void pop(struct ctx *c, size_t old)
{
    c->path[old] = '\0';
}

static int check_keys(struct ctx *c, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return fail(c, "must be an object");
    json_object_foreach(obj, key, v)
    {
        const char *const *a;
        for (a = allowed; *a != NULL; a++) {
            if (strcmp(*a, key) == 0)
                break;
        }
        if (*a == NULL)
            return fail(c, "unknown key '%s'", key);
    }
    return 0;
}

static int get_number(struct ctx *c, json_t *obj, const char *key, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_number(v))
        return fail(c, "'%s' must be a number", key);
    *out = json_number_value(v);
    return 0;
}

int sim_state_from_name(const char *name)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(
        &tensorflow__serving__model_version_status__state__descriptor, name);
    return v ? v->value : -1;
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp(((const struct sim_tensor_info *)a)->alias,
                  ((const struct sim_tensor_info *)b)->alias);
}

static int parse_infos(struct ctx *c, struct sim_pool *pool, json_t *obj, size_t *n_out,
                       struct sim_tensor_info **out)
{
    static const char *const keys[] = {"dtype", "shape", "name", NULL};
    const char *alias;
    json_t *ti;
    size_t i = 0;

    if (!json_is_object(obj))
        return fail(c, "must be an object of alias -> tensor info");
    *n_out = json_object_size(obj);
    *out = sim_pool_alloc(pool, (*n_out + 1) * sizeof(**out));
    json_object_foreach(obj, alias, ti)
    {
        struct sim_tensor_info *info = &(*out)[i++];
        size_t old = push(c, alias, 0);
        json_t *dt, *shape, *name;
        int dtype;

        if (check_keys(c, ti, keys) != 0)
            return -1;
        dt = json_object_get(ti, "dtype");
        if (!json_is_string(dt) || (dtype = sim_dtype_from_name(json_string_value(dt))) < 0)
            return fail(c, "'dtype' must be a DataType name such as \"DT_FLOAT\"");
        info->alias = sim_pool_strdup(pool, alias);
        info->dtype = dtype;
        name = json_object_get(ti, "name");
        if (name != NULL && !json_is_string(name))
            return fail(c, "'name' must be a string");
        if (name != NULL) {
            info->tensor_name = sim_pool_strdup(pool, json_string_value(name));
        } else {
            info->tensor_name = sim_pool_alloc(pool, strlen(alias) + 3);
            sprintf(info->tensor_name, "%s:0", alias);
        }
        shape = json_object_get(ti, "shape");
        if (shape == NULL || json_is_null(shape)) {
            info->shape_kind = SIM_SHAPE_NONE;
        } else if (json_is_string(shape) && strcmp(json_string_value(shape), "unknown") == 0) {
            info->shape_kind = SIM_SHAPE_UNKNOWN;
        } else if (json_is_array(shape) && json_array_size(shape) <= SIM_MAX_RANK) {
            size_t k;
            json_t *d;
            info->shape_kind = SIM_SHAPE_DIMS;
            info->rank = json_array_size(shape);
            info->dims = sim_pool_alloc(pool, (info->rank + 1) * sizeof(int64_t));
            json_array_foreach(shape, k, d)
            {
                if (!json_is_integer(d) || json_integer_value(d) < -1)
                    return fail(c, "'shape' entries must be integers >= -1");
                info->dims[k] = json_integer_value(d);
            }
        } else {
            return fail(c, "'shape' must be a list of integers, null, or \"unknown\"");
        }
        pop(c, old);
    }
    qsort(*out, *n_out, sizeof(**out), cmp_info);
    return 0;
}

static int parse_signature(struct ctx *c, struct sim_model *m, const char *name, json_t *js,
                           double a, double b, struct sim_signature *sig)
{
    static const char *const keys[] = {"method_name", "inputs",  "outputs",
                                       "defaults",    "compute", NULL};
    static const char *const compute_keys[] = {"a", "b", "feature", "feature_default", NULL};
    json_t *mn, *v;
    size_t old;

    if (check_keys(c, js, keys) != 0)
        return -1;
    sig->name = sim_pool_strdup(&m->pool, name);
    mn = json_object_get(js, "method_name");
    if (mn != NULL && !json_is_string(mn))
        return fail(c, "'method_name' must be a string");
    sig->method_name =
        sim_pool_strdup(&m->pool, mn ? json_string_value(mn) : "tensorflow/serving/predict");
    old = push(c, "inputs", 0);
    if (parse_infos(c, &m->pool, json_object_get(js, "inputs"), &sig->n_inputs, &sig->inputs))
        return -1;
    pop(c, old);
    old = push(c, "outputs", 0);
    if (parse_infos(c, &m->pool, json_object_get(js, "outputs"), &sig->n_outputs, &sig->outputs))
        return -1;
    pop(c, old);

    v = json_object_get(js, "defaults");
    if (v != NULL) {
        const char *alias;
        json_t *t;
        size_t i = 0;
        old = push(c, "defaults", 0);
        if (!json_is_object(v))
            return fail(c, "must be an object of alias -> tensor");
        sig->n_defaults = json_object_size(v);
        sig->defaults = sim_pool_alloc(&m->pool, (sig->n_defaults + 1) * sizeof(*sig->defaults));
        json_object_foreach(v, alias, t)
        {
            char terr[256];
            sig->defaults[i].alias = sim_pool_strdup(&m->pool, alias);
            sig->defaults[i].tensor = SIM_POOL_NEW(&m->pool, Tensorflow__TensorProto);
            if (sim_tensor_from_json(&m->pool, t, sig->defaults[i].tensor, terr, sizeof(terr)))
                return fail(c, "%s: %s", alias, terr);
            i++;
        }
        pop(c, old);
    }

    sig->a = a;
    sig->b = b;
    sig->feature = sim_pool_strdup(&m->pool, "x");
    v = json_object_get(js, "compute");
    if (v != NULL) {
        json_t *f, *fd;
        old = push(c, "compute", 0);
        if (check_keys(c, v, compute_keys) != 0 || get_number(c, v, "a", &sig->a) != 0 ||
            get_number(c, v, "b", &sig->b) != 0)
            return -1;
        f = json_object_get(v, "feature");
        if (f != NULL && !json_is_string(f))
            return fail(c, "'feature' must be a string");
        if (f != NULL)
            sig->feature = sim_pool_strdup(&m->pool, json_string_value(f));
        fd = json_object_get(v, "feature_default");
        if (fd != NULL) {
            if (!json_is_number(fd))
                return fail(c, "'feature_default' must be a number");
            sig->has_feature_default = 1;
            sig->feature_default = (float)json_number_value(fd);
        }
        pop(c, old);
    }
    return 0;
}

static int cmp_version_desc(const void *a, const void *b)
{
    int64_t x = ((const struct sim_version *)a)->version;
    int64_t y = ((const struct sim_version *)b)->version;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int parse_versions(struct ctx *c, struct sim_model *m, json_t *jv)
{
    static const char *const keys[] = {"version", "state", NULL};
    json_t *v;
    size_t i;

    if (jv == NULL) {
        m->n_versions = 1;
        m->versions = sim_pool_alloc(&m->pool, sizeof(*m->versions));
        m->versions[0].version = 1;
        atomic_init(&m->versions[0].state,
                    TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE);
        return 0;
    }
    if (!json_is_array(jv))
        return fail(c, "'versions' must be a list");
    m->n_versions = json_array_size(jv);
    m->versions = sim_pool_alloc(&m->pool, (m->n_versions + 1) * sizeof(*m->versions));
    json_array_foreach(jv, i, v)
    {
        int state = TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE;
        json_t *num = v;
        if (json_is_object(v)) {
            size_t old = push(c, "versions", 0);
            push(c, NULL, i);
            if (check_keys(c, v, keys) != 0)
                return -1;
            json_t *st = json_object_get(v, "state");
            if (st != NULL &&
                (!json_is_string(st) || (state = sim_state_from_name(json_string_value(st))) < 0))
                return fail(c, "'state' must be one of UNKNOWN, START, LOADING, AVAILABLE, "
                               "UNLOADING, END");
            pop(c, old);
            num = json_object_get(v, "version");
        }
        if (!json_is_integer(num) || json_integer_value(num) < 0)
            return fail(c, "versions[%zu] must be a non-negative integer", i);
        m->versions[i].version = json_integer_value(num);
        atomic_init(&m->versions[i].state, state);
        for (size_t k = 0; k < i; k++) {
            if (m->versions[k].version == m->versions[i].version)
                return fail(c, "version %lld is listed twice", (long long)m->versions[i].version);
        }
    }
    qsort(m->versions, m->n_versions, sizeof(*m->versions), cmp_version_desc);
    return 0;
}

static int parse_fixed(struct ctx *c, struct sim_model *m, json_t *jr)
{
    static const char *const keys[] = {"error",  "predict",  "classify", "regress",
                                       "status", "metadata", NULL};
    json_t *v;
    char terr[256];

    if (check_keys(c, jr, keys) != 0)
        return -1;

    if ((v = json_object_get(jr, "error")) != NULL) {
        json_t *code = json_object_get(v, "code"), *msg = json_object_get(v, "message");
        int cv;
        if (!json_is_string(code) || (cv = sim_code_from_name(json_string_value(code))) <= 0)
            return fail(c, "error.code must be a gRPC status name other than OK");
        if (msg != NULL && !json_is_string(msg))
            return fail(c, "error.message must be a string");
        m->error_code = (grpc_status_code)cv;
        m->error_message = sim_pool_strdup(&m->pool, msg ? json_string_value(msg) : "");
    }

    if ((v = json_object_get(jr, "predict")) != NULL) {
        json_t *outs = json_object_get(v, "outputs"), *t;
        const char *alias;
        size_t i = 0;
        if (!json_is_object(outs))
            return fail(c, "predict.outputs must be an object of alias -> tensor");
        m->n_fixed_outputs = json_object_size(outs);
        m->fixed_output_aliases =
            sim_pool_alloc(&m->pool, (m->n_fixed_outputs + 1) * sizeof(char *));
        m->fixed_outputs = sim_pool_alloc(&m->pool, (m->n_fixed_outputs + 1) * sizeof(void *));
        json_object_foreach(outs, alias, t)
        {
            m->fixed_output_aliases[i] = sim_pool_strdup(&m->pool, alias);
            m->fixed_outputs[i] = SIM_POOL_NEW(&m->pool, Tensorflow__TensorProto);
            if (sim_tensor_from_json(&m->pool, t, m->fixed_outputs[i], terr, sizeof(terr)) != 0)
                return fail(c, "predict.outputs.%s: %s", alias, terr);
            i++;
        }
    }

    if ((v = json_object_get(jr, "classify")) != NULL) {
        json_t *cls = json_object_get(v, "classifications"), *ex, *cl;
        size_t i, k;
        if (!json_is_array(cls))
            return fail(c, "classify.classifications must be a list of lists of {label, score}");
        Tensorflow__Serving__ClassificationResult *r =
            SIM_POOL_NEW(&m->pool, Tensorflow__Serving__ClassificationResult);
        tensorflow__serving__classification_result__init(r);
        r->n_classifications = json_array_size(cls);
        r->classifications = sim_pool_alloc(&m->pool, (r->n_classifications + 1) * sizeof(void *));
        json_array_foreach(cls, i, ex)
        {
            Tensorflow__Serving__Classifications *cs =
                SIM_POOL_NEW(&m->pool, Tensorflow__Serving__Classifications);
            tensorflow__serving__classifications__init(cs);
            if (!json_is_array(ex))
                return fail(c, "classify.classifications[%zu] must be a list", i);
            cs->n_classes = json_array_size(ex);
            cs->classes = sim_pool_alloc(&m->pool, (cs->n_classes + 1) * sizeof(void *));
            json_array_foreach(ex, k, cl)
            {
                Tensorflow__Serving__Class *one =
                    SIM_POOL_NEW(&m->pool, Tensorflow__Serving__Class);
                json_t *label = json_object_get(cl, "label"), *score = json_object_get(cl, "score");
                tensorflow__serving__class__init(one);
                if ((label != NULL && !json_is_string(label)) || !json_is_number(score))
                    return fail(c, "classify.classifications[%zu][%zu] needs label and score", i,
                                k);
                one->label = sim_pool_strdup(&m->pool, label ? json_string_value(label) : "");
                one->score = (float)json_number_value(score);
                cs->classes[k] = one;
            }
            r->classifications[i] = cs;
        }
        m->fixed_classify = r;
    }

    if ((v = json_object_get(jr, "regress")) != NULL) {
        json_t *regs = json_object_get(v, "regressions"), *x;
        size_t i;
        if (!json_is_array(regs))
            return fail(c, "regress.regressions must be a list of numbers");
        Tensorflow__Serving__RegressionResult *r =
            SIM_POOL_NEW(&m->pool, Tensorflow__Serving__RegressionResult);
        tensorflow__serving__regression_result__init(r);
        r->n_regressions = json_array_size(regs);
        r->regressions = sim_pool_alloc(&m->pool, (r->n_regressions + 1) * sizeof(void *));
        json_array_foreach(regs, i, x)
        {
            Tensorflow__Serving__Regression *one =
                SIM_POOL_NEW(&m->pool, Tensorflow__Serving__Regression);
            tensorflow__serving__regression__init(one);
            if (!json_is_number(x))
                return fail(c, "regress.regressions[%zu] must be a number", i);
            one->value = (float)json_number_value(x);
            r->regressions[i] = one;
        }
        m->fixed_regress = r;
    }

    if ((v = json_object_get(jr, "status")) != NULL) {
        json_t *mvs = json_object_get(v, "model_version_status"), *e;
        size_t i;
        if (!json_is_array(mvs))
            return fail(c, "status.model_version_status must be a list");
        Tensorflow__Serving__GetModelStatusResponse *r =
            SIM_POOL_NEW(&m->pool, Tensorflow__Serving__GetModelStatusResponse);
        tensorflow__serving__get_model_status_response__init(r);
        r->n_model_version_status = json_array_size(mvs);
        r->model_version_status =
            sim_pool_alloc(&m->pool, (r->n_model_version_status + 1) * sizeof(void *));
        json_array_foreach(mvs, i, e)
        {
            Tensorflow__Serving__ModelVersionStatus *s =
                SIM_POOL_NEW(&m->pool, Tensorflow__Serving__ModelVersionStatus);
            Tensorflow__Serving__StatusProto *sp =
                SIM_POOL_NEW(&m->pool, Tensorflow__Serving__StatusProto);
            json_t *ver = json_object_get(e, "version"), *st = json_object_get(e, "state");
            json_t *status = json_object_get(e, "status");
            int state;
            tensorflow__serving__model_version_status__init(s);
            tensorflow__serving__status_proto__init(sp);
            if (json_is_string(ver))
                s->version = strtoll(json_string_value(ver), NULL, 10);
            else if (json_is_integer(ver))
                s->version = json_integer_value(ver);
            else
                return fail(c, "status.model_version_status[%zu].version is required", i);
            if (!json_is_string(st) || (state = sim_state_from_name(json_string_value(st))) < 0)
                return fail(c, "status.model_version_status[%zu].state is not a state name", i);
            s->state = state;
            if (json_is_object(status)) {
                json_t *ec = json_object_get(status, "error_code");
                json_t *em = json_object_get(status, "error_message");
                sp->error_code =
                    ec && json_is_string(ec) ? sim_code_from_name(json_string_value(ec)) : 0;
                sp->error_message =
                    sim_pool_strdup(&m->pool, json_is_string(em) ? json_string_value(em) : "");
            } else {
                sp->error_message = sim_pool_strdup(&m->pool, "");
            }
            s->status = sp;
            r->model_version_status[i] = s;
        }
        m->fixed_status = r;
    }

    if ((v = json_object_get(jr, "metadata")) != NULL) {
        /* A complete answer: {"model_spec": {"name", "version"}, "type_url", "signature_def"} */
        static const char *const mkeys[] = {"model_spec", "type_url", "signature_def", NULL};
        size_t old = push(c, "metadata", 0);
        if (check_keys(c, v, mkeys) != 0)
            return -1;
        pop(c, old);
        /* Built in handlers from these parts; kept as JSON-derived protos here. */
        Tensorflow__Serving__GetModelMetadataResponse *r =
            SIM_POOL_NEW(&m->pool, Tensorflow__Serving__GetModelMetadataResponse);
        Tensorflow__Serving__ModelSpec *spec =
            SIM_POOL_NEW(&m->pool, Tensorflow__Serving__ModelSpec);
        json_t *js = json_object_get(v, "model_spec"), *tu = json_object_get(v, "type_url");
        json_t *sd = json_object_get(v, "signature_def");
        tensorflow__serving__get_model_metadata_response__init(r);
        tensorflow__serving__model_spec__init(spec);
        spec->name = sim_pool_strdup(&m->pool, m->name);
        if (json_is_object(js)) {
            json_t *nm = json_object_get(js, "name"), *ver = json_object_get(js, "version");
            if (json_is_string(nm))
                spec->name = sim_pool_strdup(&m->pool, json_string_value(nm));
            if (json_is_string(ver) || json_is_integer(ver)) {
                Google__Protobuf__Int64Value *iv =
                    SIM_POOL_NEW(&m->pool, Google__Protobuf__Int64Value);
                google__protobuf__int64_value__init(iv);
                iv->value = json_is_string(ver) ? strtoll(json_string_value(ver), NULL, 10)
                                                : json_integer_value(ver);
                spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
                spec->version = iv;
            }
        }
        r->model_spec = spec;
        /* The SignatureDefMap inside is packed by the caller from a temporary model built
         * from |sd|; record the pieces on the model for sim_registry_add_json to finish. */
        r->n_metadata = 1;
        r->metadata = sim_pool_alloc(&m->pool, sizeof(void *));
        Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry *e =
            SIM_POOL_NEW(&m->pool, Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry);
        Google__Protobuf__Any *any = SIM_POOL_NEW(&m->pool, Google__Protobuf__Any);
        tensorflow__serving__get_model_metadata_response__metadata_entry__init(e);
        google__protobuf__any__init(any);
        e->key = sim_pool_strdup(&m->pool, "signature_def");
        any->type_url = sim_pool_strdup(
            &m->pool, json_is_string(tu)
                          ? json_string_value(tu)
                          : "type.googleapis.com/tensorflow.serving.SignatureDefMap");
        e->value = any;
        r->metadata[0] = e;
        m->fixed_metadata = r;
        if (sd != NULL && !json_is_object(sd))
            return fail(c, "metadata.signature_def must be an object");
    }
    return 0;
}

static Tensorflow__TensorInfo *make_tensor_info(struct sim_pool *pool,
                                                const struct sim_tensor_info *ti)
{
    Tensorflow__TensorInfo *t = SIM_POOL_NEW(pool, Tensorflow__TensorInfo);
    tensorflow__tensor_info__init(t);
    t->encoding_case = TENSORFLOW__TENSOR_INFO__ENCODING_NAME;
    t->name = ti->tensor_name;
    t->dtype = ti->dtype;
    if (ti->shape_kind != SIM_SHAPE_NONE) {
        Tensorflow__TensorShapeProto *s = SIM_POOL_NEW(pool, Tensorflow__TensorShapeProto);
        tensorflow__tensor_shape_proto__init(s);
        if (ti->shape_kind == SIM_SHAPE_UNKNOWN) {
            s->unknown_rank = 1;
        } else {
            s->n_dim = ti->rank;
            s->dim = sim_pool_alloc(pool, (ti->rank + 1) * sizeof(void *));
            for (size_t i = 0; i < ti->rank; i++) {
                s->dim[i] = SIM_POOL_NEW(pool, Tensorflow__TensorShapeProto__Dim);
                tensorflow__tensor_shape_proto__dim__init(s->dim[i]);
                s->dim[i]->size = ti->dims[i];
            }
        }
        t->tensor_shape = s;
    }
    return t;
}

/* Packs the model's signatures as a SignatureDefMap (what GetModelMetadata's Any holds). */
static void pack_sigmap(struct sim_model *m, size_t n_sigs, const struct sim_signature *sigs,
                        uint8_t **out, size_t *out_len)
{
    struct sim_pool tmp = {0};
    Tensorflow__Serving__SignatureDefMap map;
    tensorflow__serving__signature_def_map__init(&map);
    map.n_signature_def = n_sigs;
    map.signature_def = sim_pool_alloc(&tmp, (n_sigs + 1) * sizeof(void *));
    for (size_t i = 0; i < n_sigs; i++) {
        const struct sim_signature *s = &sigs[i];
        Tensorflow__Serving__SignatureDefMap__SignatureDefEntry *e =
            SIM_POOL_NEW(&tmp, Tensorflow__Serving__SignatureDefMap__SignatureDefEntry);
        Tensorflow__SignatureDef *sd = SIM_POOL_NEW(&tmp, Tensorflow__SignatureDef);
        tensorflow__serving__signature_def_map__signature_def_entry__init(e);
        tensorflow__signature_def__init(sd);
        sd->method_name = s->method_name;
        sd->n_inputs = s->n_inputs;
        sd->inputs = sim_pool_alloc(&tmp, (s->n_inputs + 1) * sizeof(void *));
        for (size_t k = 0; k < s->n_inputs; k++) {
            sd->inputs[k] = SIM_POOL_NEW(&tmp, Tensorflow__SignatureDef__InputsEntry);
            tensorflow__signature_def__inputs_entry__init(sd->inputs[k]);
            sd->inputs[k]->key = s->inputs[k].alias;
            sd->inputs[k]->value = make_tensor_info(&tmp, &s->inputs[k]);
        }
        sd->n_outputs = s->n_outputs;
        sd->outputs = sim_pool_alloc(&tmp, (s->n_outputs + 1) * sizeof(void *));
        for (size_t k = 0; k < s->n_outputs; k++) {
            sd->outputs[k] = SIM_POOL_NEW(&tmp, Tensorflow__SignatureDef__OutputsEntry);
            tensorflow__signature_def__outputs_entry__init(sd->outputs[k]);
            sd->outputs[k]->key = s->outputs[k].alias;
            sd->outputs[k]->value = make_tensor_info(&tmp, &s->outputs[k]);
        }
        sd->n_defaults = s->n_defaults;
        sd->defaults = sim_pool_alloc(&tmp, (s->n_defaults + 1) * sizeof(void *));
        for (size_t k = 0; k < s->n_defaults; k++) {
            sd->defaults[k] = SIM_POOL_NEW(&tmp, Tensorflow__SignatureDef__DefaultsEntry);
            tensorflow__signature_def__defaults_entry__init(sd->defaults[k]);
            sd->defaults[k]->key = s->defaults[k].alias;
            sd->defaults[k]->value = s->defaults[k].tensor;
        }
        e->key = s->name;
        e->value = sd;
        map.signature_def[i] = e;
    }
    *out_len = tensorflow__serving__signature_def_map__get_packed_size(&map);
    *out = sim_pool_alloc(&m->pool, *out_len + 1);
    tensorflow__serving__signature_def_map__pack(&map, *out);
    sim_pool_dispose(&tmp);
}

static int parse_signatures(struct ctx *c, struct sim_model *m, json_t *js, double a, double b,
                            size_t *n_out, struct sim_signature **out)
{
    const char *name;
    json_t *sig;
    size_t i = 0;

    if (!json_is_object(js))
        return fail(c, "'signatures' must be an object of name -> signature");
    *n_out = json_object_size(js);
    *out = sim_pool_alloc(&m->pool, (*n_out + 1) * sizeof(**out));
    json_object_foreach(js, name, sig)
    {
        size_t old = push(c, name, 0);
        if (parse_signature(c, m, name, sig, a, b, &(*out)[i++]) != 0)
            return -1;
        pop(c, old);
    }
    return 0;
}

static void model_free(struct sim_model *m)
{
    if (m == NULL)
        return;
    sim_pool_dispose(&m->pool);
    free(m);
}

static int parse_model(struct ctx *c, json_t *jm, struct sim_model **out)
{
    static const char *const keys[] = {"name",       "versions",  "labels", "behavior",
                                       "signatures", "responses", NULL};
    static const char *const bkeys[] = {"type", "a", "b", NULL};
    struct sim_model *m = sim_xcalloc(1, sizeof(*m));
    json_t *v, *name;
    double a = 0.5, b = 2.0;
    size_t old;

    if (check_keys(c, jm, keys) != 0)
        goto fail;
    name = json_object_get(jm, "name");
    if (!json_is_string(name) || json_string_length(name) == 0)
        goto fail_msg_name;
    m->name = sim_pool_strdup(&m->pool, json_string_value(name));
    if (parse_versions(c, m, json_object_get(jm, "versions")) != 0)
        goto fail;

    if ((v = json_object_get(jm, "labels")) != NULL) {
        const char *label;
        json_t *ver;
        size_t i = 0;
        if (!json_is_object(v)) {
            fail(c, "'labels' must be an object of label -> version");
            goto fail;
        }
        m->n_labels = json_object_size(v);
        m->labels = sim_pool_alloc(&m->pool, (m->n_labels + 1) * sizeof(*m->labels));
        json_object_foreach(v, label, ver)
        {
            if (!json_is_integer(ver)) {
                fail(c, "labels.%s must be an integer version", label);
                goto fail;
            }
            m->labels[i].name = sim_pool_strdup(&m->pool, label);
            m->labels[i].version = json_integer_value(ver);
            i++;
        }
    }

    if ((v = json_object_get(jm, "behavior")) != NULL) {
        json_t *type = json_object_get(v, "type");
        old = push(c, "behavior", 0);
        if (check_keys(c, v, bkeys) != 0)
            goto fail;
        if (json_is_string(type) && strcmp(json_string_value(type), "affine") == 0) {
            m->behavior = SIM_BEHAVIOR_AFFINE;
        } else if (json_is_string(type) && strcmp(json_string_value(type), "identity") == 0) {
            m->behavior = SIM_BEHAVIOR_IDENTITY;
        } else {
            fail(c, "'type' must be \"affine\" or \"identity\"");
            goto fail;
        }
        if (get_number(c, v, "a", &a) != 0 || get_number(c, v, "b", &b) != 0)
            goto fail;
        pop(c, old);
    }

    old = push(c, "signatures", 0);
    v = json_object_get(jm, "signatures");
    if (v == NULL) {
        fail(c, "is required");
        goto fail;
    }
    if (parse_signatures(c, m, v, a, b, &m->n_signatures, &m->signatures) != 0)
        goto fail;
    pop(c, old);
    pack_sigmap(m, m->n_signatures, m->signatures, &m->sigmap, &m->sigmap_len);

    if ((v = json_object_get(jm, "responses")) != NULL) {
        old = push(c, "responses", 0);
        if (parse_fixed(c, m, v) != 0)
            goto fail;
        pop(c, old);
        /* A fixed metadata answer may declare its own signatures (case files do). */
        json_t *sd = json_object_get(json_object_get(v, "metadata"), "signature_def");
        if (m->fixed_metadata != NULL) {
            size_t n_sigs = 0;
            struct sim_signature *sigs = NULL;
            Google__Protobuf__Any *any = m->fixed_metadata->metadata[0]->value;
            old = push(c, "responses.metadata.signature_def", 0);
            if (sd != NULL && parse_signatures(c, m, sd, a, b, &n_sigs, &sigs) != 0)
                goto fail;
            pop(c, old);
            if (sd != NULL)
                pack_sigmap(m, n_sigs, sigs, &any->value.data, &any->value.len);
            else
                any->value.data = m->sigmap, any->value.len = m->sigmap_len;
        }
    }
    *out = m;
    return 0;

fail_msg_name:
    fail(c, "'name' must be a non-empty string");
fail:
    model_free(m);
    return -1;
}

int sim_registry_add_json(struct sim_registry *reg, const char *text, size_t len,
                          const char *origin, char *err, size_t errlen)
{
    struct ctx c = {.err = err, .errlen = errlen};
    json_error_t jerr;
    json_t *root, *models, *jm;
    size_t i;
    int rv = -1;

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s:%d:%d: %s", origin, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    snprintf(c.path, sizeof(c.path), "%s:", origin);
    static const char *const keys[] = {"models", NULL};
    if (check_keys(&c, root, keys) != 0)
        goto out;
    models = json_object_get(root, "models");
    if (!json_is_array(models)) {
        fail(&c, "'models' must be a list");
        goto out;
    }
    json_array_foreach(models, i, jm)
    {
        struct sim_model *m;
        size_t old = push(&c, "models", 0);
        push(&c, NULL, i);
        if (parse_model(&c, jm, &m) != 0)
            goto out;
        pop(&c, old);
        struct sim_model *prev = sim_registry_find(reg, m->name);
        if (prev != NULL) {
            for (size_t k = 0; k < reg->n_models; k++) {
                if (reg->models[k] == prev)
                    reg->models[k] = m;
            }
            model_free(prev);
        } else {
            reg->models = sim_xrealloc(reg->models, (reg->n_models + 1) * sizeof(*reg->models));
            reg->models[reg->n_models++] = m;
        }
    }
    rv = 0;
out:
    json_decref(root);
    return rv;
}

int sim_registry_add_builtins(struct sim_registry *reg, char *err, size_t errlen)
{
    return sim_registry_add_json(reg, builtin_models, sizeof(builtin_models) - 1, "builtin", err,
                                 errlen);
}

struct sim_model *sim_registry_find(const struct sim_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->n_models; i++) {
        if (strcmp(reg->models[i]->name, name) == 0)
            return reg->models[i];
    }
    return NULL;
}

void sim_registry_dispose(struct sim_registry *reg)
{
    for (size_t i = 0; i < reg->n_models; i++)
        model_free(reg->models[i]);
    free(reg->models);
    reg->models = NULL;
    reg->n_models = 0;
}

const struct sim_signature *sim_model_signature(const struct sim_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_signatures; i++) {
        if (strcmp(m->signatures[i].name, name) == 0)
            return &m->signatures[i];
    }
    return NULL;
}

struct sim_version *sim_model_version(struct sim_model *m, int64_t version)
{
    for (size_t i = 0; i < m->n_versions; i++) {
        if (m->versions[i].version == version)
            return &m->versions[i];
    }
    return NULL;
}

struct sim_version *sim_model_latest(struct sim_model *m)
{
    for (size_t i = 0; i < m->n_versions; i++) { /* sorted descending */
        if (atomic_load(&m->versions[i].state) ==
            TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE)
            return &m->versions[i];
    }
    return NULL;
}

int sim_model_label(const struct sim_model *m, const char *label, int64_t *version)
{
    for (size_t i = 0; i < m->n_labels; i++) {
        if (strcmp(m->labels[i].name, label) == 0) {
            *version = m->labels[i].version;
            return 0;
        }
    }
    return -1;
}
