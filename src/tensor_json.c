/*
 * tensor_json.c - see tensor_json.h. Section numbers refer to spec/tfserving.md.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/status.h>

#include "tfgate/arena.h"
#include "tfgate/base64.h"
#include "tfgate/common.h"
#include "tfgate/json.h"
#include "tfgate/tensor_json.h"

#define MAX_RANK 64

const char *tg_tj_dtype_name(int dt)
{
    static const char *const names[] = {
        "invalid",   "float",  "double",     "int32", "uint8",    "int16",   "int8",     "string",
        "complex64", "int64",  "bool",       "qint8", "quint8",   "qint32",  "bfloat16", "qint16",
        "quint16",   "uint16", "complex128", "half",  "resource", "variant", "uint32",   "uint64",
    };
    if (dt >= 0 && dt < (int)TG_ARRAY_SIZE(names))
        return names[dt];
    if (dt > 100 && dt - 100 < (int)TG_ARRAY_SIZE(names))
        return names[dt - 100]; /* _REF types convert like their base */
    return "invalid";
}

static int base_dtype(int dt)
{
    return dt > 100 ? dt - 100 : dt;
}

TG_PRINTF(4, 5)
static int err_set(struct tg_tj_error *err, struct tg_arena *a, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *m = tg_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1, 1);
    va_start(ap, fmt);
    vsnprintf(m, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap);
    va_end(ap);
    err->code = code;
    err->message = m;
    return -1;
}

static const char *code_prefix(int code)
{
    return code == GRPC_STATUS_UNIMPLEMENTED ? "UNIMPLEMENTED" : "INVALID_ARGUMENT";
}

/* ---- a tensor being built: shape and values of one dtype ---- */

struct tb {
    int dtype;
    size_t rank;
    int64_t dims[MAX_RANK];
    size_t n; /* values */
    size_t cap;
    size_t esize;  /* bytes per stored value */
    uint8_t *vals; /* malloc'ed; handed to the arena at the end */
};

static size_t esize_of(int dt)
{
    switch (dt) {
    case TG_DT_FLOAT:
    case TG_DT_INT32:
    case TG_DT_UINT32:
    case TG_DT_INT16:
    case TG_DT_INT8:
    case TG_DT_UINT8:
        return 4;
    case TG_DT_DOUBLE:
    case TG_DT_INT64:
    case TG_DT_UINT64:
        return 8;
    case TG_DT_BOOL:
        return 1;
    case TG_DT_STRING:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

static void *tb_push(struct tb *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->vals = tg_xrealloc(t->vals, t->cap * t->esize);
    }
    return t->vals + t->esize * t->n++;
}

static int is_b64(const struct tg_jval *v)
{
    return v->type == TG_JOBJECT && v->len == 1 && v->u.members[0].key_len == 3 &&
           memcmp(v->u.members[0].key, "b64", 3) == 0 && v->u.members[0].val.type == TG_JSTRING;
}

/* absl::Base64Unescape: standard alphabet, padding optional but correct if present, '=' or
 * '.' as the padding character. */
static int b64_unescape(struct tg_arena *a, const char *s, size_t len, ProtobufCBinaryData *out)
{
    char *norm = tg_arena_alloc(a, len + 1, 1);
    for (size_t i = 0; i < len; i++)
        norm[i] = s[i] == '.' ? '=' : s[i];
    uint8_t *raw = tg_arena_alloc(a, len / 4 * 3 + 3, 1);
    size_t n;
    if (tg_base64_decode(norm, len, raw, &n, 0) != 0)
        return -1;
    out->data = raw;
    out->len = n;
    return 0;
}

static int type_error(struct tg_arena *a, const struct tg_jval *v, int dt, struct tg_tj_error *err)
{
    return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                   "JSON Value: %s Type: %s is not of expected type: %s", tg_json_debug(v, a),
                   tg_json_type_name(v), tg_tj_dtype_name(dt));
}

/* One leaf value by the signature's dtype (§3.6). */
static int add_scalar(struct tg_arena *a, struct tb *t, const struct tg_jval *v,
                      struct tg_tj_error *err)
{
    int dt = t->dtype;
    int is_num = v->type == TG_JNUMBER, is_int = is_num && v->num == TG_JNUM_INT;

    switch (dt) {
    case TG_DT_FLOAT:
        if (!is_num)
            return type_error(a, v, dt, err);
        *(float *)tb_push(t) = (float)tg_json_number(v); /* integers go through double */
        return 0;
    case TG_DT_DOUBLE:
        if (!is_num)
            return type_error(a, v, dt, err);
        *(double *)tb_push(t) = tg_json_number(v);
        return 0;
    case TG_DT_INT32:
    case TG_DT_INT16:
    case TG_DT_INT8:
    case TG_DT_UINT8: /* no narrower range check: TF truncates later (§3.6) */
        if (!is_int || v->u.i64 < INT32_MIN || v->u.i64 > INT32_MAX)
            return type_error(a, v, dt, err);
        *(int32_t *)tb_push(t) = (int32_t)v->u.i64;
        return 0;
    case TG_DT_INT64:
        if (!is_int)
            return type_error(a, v, dt, err);
        *(int64_t *)tb_push(t) = v->u.i64;
        return 0;
    case TG_DT_UINT32:
        if (!is_int || v->u.i64 < 0 || v->u.i64 > UINT32_MAX)
            return type_error(a, v, dt, err);
        *(uint32_t *)tb_push(t) = (uint32_t)v->u.i64;
        return 0;
    case TG_DT_UINT64:
        if (is_int && v->u.i64 >= 0)
            *(uint64_t *)tb_push(t) = (uint64_t)v->u.i64;
        else if (is_num && v->num == TG_JNUM_UINT)
            *(uint64_t *)tb_push(t) = v->u.u64;
        else
            return type_error(a, v, dt, err);
        return 0;
    case TG_DT_BOOL:
        if (v->type != TG_JTRUE && v->type != TG_JFALSE)
            return type_error(a, v, dt, err);
        *(uint8_t *)tb_push(t) = v->type == TG_JTRUE;
        return 0;
    case TG_DT_STRING: {
        ProtobufCBinaryData *b = tb_push(t);
        if (v->type == TG_JSTRING) {
            b->data = (uint8_t *)v->u.str;
            b->len = v->len;
            return 0;
        }
        if (v->type == TG_JOBJECT) {
            if (!is_b64(v)) {
                t->n--;
                return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                               "JSON Value: %s not formatted correctly for base64 data",
                               tg_json_debug(v, a));
            }
            const struct tg_jval *s = &v->u.members[0].val;
            if (b64_unescape(a, s->u.str, s->len, b) != 0) {
                t->n--;
                return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT, "Unable to base64 decode");
            }
            return 0;
        }
        t->n--;
        return type_error(a, v, dt, err);
    }
    }
    return err_set(err, a, GRPC_STATUS_UNIMPLEMENTED, "Conversion of JSON Value: %s to type: %s",
                   tg_json_debug(v, a), tg_tj_dtype_name(dt));
}

/* The shape of a value, following the first element at each level (§3.5). */
static int infer_shape(struct tg_arena *a, const struct tg_jval *v, size_t *rank, int64_t *dims,
                       struct tg_tj_error *err)
{
    *rank = 0;
    while (v->type == TG_JARRAY) {
        if (*rank == MAX_RANK)
            return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                           "tfgate: tensors of more than %d dimensions are not supported",
                           MAX_RANK);
        dims[(*rank)++] = v->len;
        if (v->len == 0)
            break;
        v = &v->u.items[0];
    }
    return 0;
}

static int fill(struct tg_arena *a, struct tb *t, const struct tg_jval *v, size_t level,
                size_t rank, const int64_t *dims, struct tg_tj_error *err)
{
    if (level < rank) {
        if (v->type != TG_JARRAY)
            return err_set(
                err, a, GRPC_STATUS_INVALID_ARGUMENT,
                "JSON Value: %s found at incorrect level: %zu in the JSON DOM. Expected at "
                "level: %zu",
                tg_json_debug(v, a), level + 1, rank);
        if ((int64_t)v->len != dims[level])
            return err_set(
                err, a, GRPC_STATUS_INVALID_ARGUMENT,
                "Encountered list at unexpected size: %u at level: %zu expected size: %lld", v->len,
                level, (long long)dims[level]);
        for (uint32_t i = 0; i < v->len; i++) {
            if (fill(a, t, &v->u.items[i], level + 1, rank, dims, err) != 0)
                return -1;
        }
        return 0;
    }
    if (v->type == TG_JARRAY)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Encountered list at unexpected level: %zu expected < %zu", level, rank);
    return add_scalar(a, t, v, err);
}

/* A whole tensor from one JSON value (columnar inputs). */
static int convert(struct tg_arena *a, struct tb *t, const struct tg_jval *v,
                   struct tg_tj_error *err)
{
    if (infer_shape(a, v, &t->rank, t->dims, err) != 0)
        return -1;
    return fill(a, t, v, 0, t->rank, t->dims, err);
}

static void tb_init(struct tb *t, int dtype)
{
    memset(t, 0, sizeof(*t));
    t->dtype = base_dtype(dtype);
    t->esize = esize_of(t->dtype);
    if (t->esize == 0)
        t->esize = 1; /* unsupported: add_scalar reports UNIMPLEMENTED before storing */
}

static void format_shape(char *out, size_t cap, size_t rank, const int64_t *dims)
{
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (size_t i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (o < cap)
        snprintf(out + o, cap - o, "]");
}

Tensorflow__TensorProto *tg_tj_tensor(struct tg_arena *a, int dtype, size_t rank,
                                      const int64_t *dims, void *vals, size_t n)
{
    Tensorflow__TensorProto *tp = TG_ARENA_NEW(a, Tensorflow__TensorProto);
    Tensorflow__TensorShapeProto *sh = TG_ARENA_NEW(a, Tensorflow__TensorShapeProto);
    tensorflow__tensor_proto__init(tp);
    tensorflow__tensor_shape_proto__init(sh);
    tp->dtype = dtype;
    sh->n_dim = rank;
    sh->dim = tg_arena_alloc(a, (rank + 1) * sizeof(*sh->dim), _Alignof(void *));
    for (size_t i = 0; i < rank; i++) {
        sh->dim[i] = TG_ARENA_NEW(a, Tensorflow__TensorShapeProto__Dim);
        tensorflow__tensor_shape_proto__dim__init(sh->dim[i]);
        sh->dim[i]->size = dims[i];
    }
    tp->tensor_shape = sh;
    switch (dtype) {
    case TG_DT_INT16:
    case TG_DT_INT8:
    case TG_DT_UINT8:
        tp->n_int_val = n;
        tp->int_val = vals;
        break;
    case TG_DT_STRING:
        tp->n_string_val = n;
        tp->string_val = vals;
        break;
    default: /* little-endian host: the stored values are the wire layout */
        tp->tensor_content.data = vals;
        tp->tensor_content.len = n * esize_of(dtype);
        break;
    }
    return tp;
}

/* The TensorProto for a finished builder; the values move into the arena. */
static Tensorflow__TensorProto *tb_finish(struct tg_arena *a, struct tb *t)
{
    size_t bytes = t->n * t->esize;
    void *copy = tg_arena_alloc(a, bytes + 1, 16);
    if (bytes)
        memcpy(copy, t->vals, bytes);
    free(t->vals);
    t->vals = NULL;
    return tg_tj_tensor(a, t->dtype, t->rank, t->dims, copy, t->n);
}

static void add_input(struct tg_arena *a, Tensorflow__Serving__PredictRequest *req,
                      const char *alias, Tensorflow__TensorProto *tp)
{
    Tensorflow__Serving__PredictRequest__InputsEntry *e =
        TG_ARENA_NEW(a, Tensorflow__Serving__PredictRequest__InputsEntry);
    tensorflow__serving__predict_request__inputs_entry__init(e);
    e->key = (char *)alias;
    e->value = tp;
    req->inputs[req->n_inputs++] = e;
}

static int cmp_inputs(const void *x, const void *y)
{
    return strcmp(((const struct tg_tj_input *)x)->alias, ((const struct tg_tj_input *)y)->alias);
}

void tg_tj_sort_inputs(struct tg_tj_signature *sig)
{
    qsort(sig->inputs, sig->n_inputs, sizeof(*sig->inputs), cmp_inputs);
}

static int find_input(const struct tg_tj_signature *sig, const char *key, size_t klen)
{
    for (size_t i = 0; i < sig->n_inputs; i++) {
        if (strlen(sig->inputs[i].alias) == klen && memcmp(sig->inputs[i].alias, key, klen) == 0)
            return (int)i;
    }
    return -1;
}

/* Per-input state while reading instances. */
struct rowin {
    struct tb t;
    size_t first_n; /* values of the first instance */
    size_t rank;
    int64_t dims[MAX_RANK];
    int seen;
};

/* Adds one instance's value for input |ri|; the caller wraps errors with the element index. */
static int add_instance(struct tg_arena *a, struct rowin *ri, const struct tg_jval *v,
                        struct tg_tj_error *err)
{
    size_t rank;
    int64_t dims[MAX_RANK];
    size_t before = ri->t.n;
    char s1[256], s2[256];

    if (infer_shape(a, v, &rank, dims, err) != 0 || fill(a, &ri->t, v, 0, rank, dims, err) != 0)
        return -1;
    size_t got = ri->t.n - before;
    if (!ri->seen) {
        ri->seen = 1;
        ri->first_n = got;
        ri->rank = rank;
        memcpy(ri->dims, dims, rank * sizeof(int64_t));
        return 0;
    }
    if (got != ri->first_n)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Expecting tensor size: %zu but got: %zu", ri->first_n, got);
    if (rank != ri->rank || memcmp(dims, ri->dims, rank * sizeof(int64_t)) != 0) {
        format_shape(s1, sizeof(s1), ri->rank, ri->dims);
        format_shape(s2, sizeof(s2), rank, dims);
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT, "Expecting shape %s but got: %s", s1,
                       s2);
    }
    return 0;
}

static int wrap(struct tg_arena *a, struct tg_tj_error *err, size_t i, const char *key)
{
    if (key != NULL)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Failed to process element: %zu key: %s of 'instances' list. Error: %s: %s",
                       i, key, code_prefix(err->code), err->message);
    return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                   "Failed to process element: %zu of 'instances' list. Error: %s: %s", i,
                   code_prefix(err->code), err->message);
}

static int decode_row(struct tg_arena *a, const struct tg_jval *inst,
                      const struct tg_tj_signature *sig, Tensorflow__Serving__PredictRequest *req,
                      struct tg_tj_error *err)
{
    if (inst->type != TG_JARRAY)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "JSON Value: %s Expecting 'instances' to be an list/array",
                       tg_json_debug(inst, a));
    if (inst->len == 0)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "JSON Value: %s No values in 'instances' array", tg_json_debug(inst, a));
    const struct tg_jval *e0 = &inst->u.items[0];
    if (sig->n_inputs > 1 && e0->type != TG_JOBJECT)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "instances is a plain list, but expecting list of objects as multiple input "
                       "tensors required as per tensorinfo_map");
    int named = e0->type == TG_JOBJECT && !is_b64(e0);
    size_t n_in = named ? sig->n_inputs : 1;
    struct rowin *ri = tg_arena_zalloc(a, (n_in + 1) * sizeof(*ri), _Alignof(struct rowin));
    int rv = -1;

    for (size_t k = 0; k < n_in; k++)
        tb_init(&ri[k].t, sig->inputs[k].dtype);
    for (uint32_t i = 0; i < inst->len; i++) {
        const struct tg_jval *el = &inst->u.items[i];
        if (!named) {
            if (el->type == TG_JOBJECT && !is_b64(el)) {
                err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                        "Expecting value/list but got object at item %u of input list", i);
                goto out;
            }
            if (add_instance(a, &ri[0], el, err) != 0) {
                wrap(a, err, i, NULL);
                goto out;
            }
            continue;
        }
        if (el->type != TG_JOBJECT || is_b64(el)) {
            err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                    "Expecting object but got list at item %u of input list", i);
            goto out;
        }
        size_t distinct = 0;
        for (uint32_t m = 0; m < el->len; m++) {
            const struct tg_jmember *mem = &el->u.members[m];
            int k = find_input(sig, mem->key, mem->key_len);
            if (k < 0) {
                err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                        "JSON object: does not have named input: %s", mem->key);
                wrap(a, err, i, mem->key);
                goto out;
            }
            /* TF Serving appends a duplicated key's values twice and sends the model a tensor
             * whose values no longer match its shape (spec §3.4); we refuse it. */
            if (tg_json_get(el, mem->key, mem->key_len) != &mem->val) {
                err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                        "tfgate: duplicate key in JSON object: %s", mem->key);
                wrap(a, err, i, mem->key);
                goto out;
            }
            distinct++;
            if (add_instance(a, &ri[k], &mem->val, err) != 0) {
                wrap(a, err, i, mem->key);
                goto out;
            }
        }
        if (distinct != sig->n_inputs) {
            char names[1024];
            size_t o = 0;
            for (size_t k = 0; k < sig->n_inputs && o < sizeof(names); k++)
                o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", k ? "," : "",
                                      sig->inputs[k].alias);
            err_set(
                err, a, GRPC_STATUS_INVALID_ARGUMENT,
                "Failed to process element: %u of 'instances' list. JSON object: %s keys must be "
                "equal to: %s",
                i, tg_json_debug(el, a), names);
            goto out;
        }
    }
    req->inputs = tg_arena_alloc(a, (n_in + 1) * sizeof(void *), _Alignof(void *));
    for (size_t k = 0; k < n_in; k++) {
        struct tb *t = &ri[k].t;
        /* [number of instances] + the per-instance shape */
        t->rank = ri[k].rank + 1;
        if (t->rank > MAX_RANK) {
            err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT, "tfgate: too many dimensions");
            goto out;
        }
        t->dims[0] = inst->len;
        memcpy(t->dims + 1, ri[k].dims, ri[k].rank * sizeof(int64_t));
        add_input(a, req, sig->inputs[k].alias, tb_finish(a, t));
    }
    rv = 0;
out:
    for (size_t k = 0; k < n_in; k++)
        free(ri[k].t.vals);
    return rv;
}

static int decode_columnar(struct tg_arena *a, const struct tg_jval *inputs,
                           const struct tg_tj_signature *sig,
                           Tensorflow__Serving__PredictRequest *req, struct tg_tj_error *err)
{
    struct tb t;
    req->inputs = tg_arena_alloc(a, (sig->n_inputs + 1) * sizeof(void *), _Alignof(void *));
    if (inputs->type != TG_JOBJECT || is_b64(inputs)) {
        if (sig->n_inputs > 1)
            return err_set(
                err, a, GRPC_STATUS_INVALID_ARGUMENT,
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map");
        tb_init(&t, sig->inputs[0].dtype);
        if (convert(a, &t, inputs, err) != 0) {
            free(t.vals);
            return -1;
        }
        add_input(a, req, sig->inputs[0].alias, tb_finish(a, &t));
        return 0;
    }
    for (size_t k = 0; k < sig->n_inputs; k++) {
        const char *alias = sig->inputs[k].alias;
        const struct tg_jval *v = tg_json_get(inputs, alias, strlen(alias));
        if (v == NULL)
            return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                           "Missing named input: %s in 'inputs' object.", alias);
        tb_init(&t, sig->inputs[k].dtype);
        if (convert(a, &t, v, err) != 0) {
            free(t.vals);
            return -1;
        }
        add_input(a, req, alias, tb_finish(a, &t));
    }
    return 0; /* other keys are ignored, as TF Serving does */
}

int tg_tj_decode_predict(struct tg_arena *a, const struct tg_jval *body,
                         const struct tg_tj_signature *sig,
                         Tensorflow__Serving__PredictRequest *req, int *row,
                         struct tg_tj_error *err)
{
    const struct tg_jval *inst = tg_json_get(body, "instances", 9);
    const struct tg_jval *inputs = tg_json_get(body, "inputs", 6);
    if (inst != NULL && inputs != NULL)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "JSON Value: %s Not formatted correctly expecting only one of 'inputs' or "
                       "'instances' keys to exist ",
                       tg_json_debug(body, a));
    if (inst == NULL && inputs == NULL)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key");
    *row = inst != NULL;
    return inst ? decode_row(a, inst, sig, req, err) : decode_columnar(a, inputs, sig, req, err);
}

/* ---- classify / regress: tf.Example features (§3.9) ---- */

enum fkind {
    FK_NONE = 0,
    FK_BYTES,
    FK_FLOAT,
    FK_INT64,
};

static int feature_value(struct tg_arena *a, const char *fname, const struct tg_jval *v,
                         enum fkind *kind, Tensorflow__Feature *f, struct tg_tj_error *err)
{
    static const char *const kind_names[] = {"", "bytes", "float", "int64"};
    enum fkind k;
    if (v->type == TG_JSTRING || is_b64(v))
        k = FK_BYTES;
    else if (v->type == TG_JNUMBER && v->num == TG_JNUM_UINT)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Feature: %s has uint64_t element. Only int64_t is supported.", fname);
    else if (v->type == TG_JNUMBER)
        k = v->num == TG_JNUM_DOUBLE ? FK_FLOAT : FK_INT64;
    else if (v->type == TG_JTRUE || v->type == TG_JFALSE)
        k = FK_INT64;
    else
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Feature: %s has element with unexpected JSON type: %s", fname,
                       tg_json_type_name(v));
    if (*kind != FK_NONE && *kind != k)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Unexpected element type in feature: %s expecting type: %s", fname,
                       kind_names[*kind]);
    if (*kind == FK_NONE) {
        *kind = k;
        if (k == FK_BYTES) {
            f->kind_case = TENSORFLOW__FEATURE__KIND_BYTES_LIST;
            f->bytes_list = TG_ARENA_NEW(a, Tensorflow__BytesList);
            tensorflow__bytes_list__init(f->bytes_list);
        } else if (k == FK_FLOAT) {
            f->kind_case = TENSORFLOW__FEATURE__KIND_FLOAT_LIST;
            f->float_list = TG_ARENA_NEW(a, Tensorflow__FloatList);
            tensorflow__float_list__init(f->float_list);
        } else {
            f->kind_case = TENSORFLOW__FEATURE__KIND_INT64_LIST;
            f->int64_list = TG_ARENA_NEW(a, Tensorflow__Int64List);
            tensorflow__int64_list__init(f->int64_list);
        }
    }
    return 0;
}

static int decode_feature(struct tg_arena *a, const char *fname, const struct tg_jval *v,
                          Tensorflow__Feature *f, struct tg_tj_error *err)
{
    const struct tg_jval *items = v;
    uint32_t n = 1;
    enum fkind kind = FK_NONE;
    if (v->type == TG_JARRAY) {
        items = v->u.items;
        n = v->len;
    }
    tensorflow__feature__init(f);
    for (uint32_t i = 0; i < n; i++) {
        const struct tg_jval *x = &items[i];
        if (x->type == TG_JARRAY || (x->type == TG_JOBJECT && !is_b64(x)) || x->type == TG_JNULL)
            return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                           "Feature: %s has element with unexpected JSON type: %s", fname,
                           tg_json_type_name(x));
        if (feature_value(a, fname, x, &kind, f, err) != 0)
            return -1;
    }
    if (kind == FK_BYTES) {
        f->bytes_list->value = tg_arena_alloc(a, (n + 1) * sizeof(ProtobufCBinaryData), 8);
        for (uint32_t i = 0; i < n; i++) {
            ProtobufCBinaryData *b = &f->bytes_list->value[f->bytes_list->n_value++];
            if (items[i].type == TG_JSTRING) {
                b->data = (uint8_t *)items[i].u.str;
                b->len = items[i].len;
            } else {
                const struct tg_jval *s = &items[i].u.members[0].val;
                if (b64_unescape(a, s->u.str, s->len, b) != 0)
                    return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT, "Unable to base64 decode");
            }
        }
    } else if (kind == FK_FLOAT) {
        f->float_list->value = tg_arena_alloc(a, (n + 1) * sizeof(float), 4);
        for (uint32_t i = 0; i < n; i++)
            f->float_list->value[f->float_list->n_value++] = (float)tg_json_number(&items[i]);
    } else if (kind == FK_INT64) {
        f->int64_list->value = tg_arena_alloc(a, (n + 1) * sizeof(int64_t), 8);
        for (uint32_t i = 0; i < n; i++) {
            const struct tg_jval *x = &items[i];
            f->int64_list->value[f->int64_list->n_value++] = x->type == TG_JTRUE    ? 1
                                                             : x->type == TG_JFALSE ? 0
                                                                                    : x->u.i64;
        }
    }
    return 0;
}

static int decode_example(struct tg_arena *a, const struct tg_jval *obj, Tensorflow__Example **out,
                          struct tg_tj_error *err)
{
    if (obj->type != TG_JOBJECT)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Example must be JSON object but got JSON %s", tg_json_type_name(obj));
    Tensorflow__Example *ex = TG_ARENA_NEW(a, Tensorflow__Example);
    Tensorflow__Features *fs = TG_ARENA_NEW(a, Tensorflow__Features);
    tensorflow__example__init(ex);
    tensorflow__features__init(fs);
    fs->feature = tg_arena_alloc(a, (obj->len + 1) * sizeof(void *), _Alignof(void *));
    for (uint32_t i = 0; i < obj->len; i++) {
        const struct tg_jmember *m = &obj->u.members[i];
        Tensorflow__Features__FeatureEntry *e = TG_ARENA_NEW(a, Tensorflow__Features__FeatureEntry);
        tensorflow__features__feature_entry__init(e);
        e->key = (char *)m->key;
        e->value = TG_ARENA_NEW(a, Tensorflow__Feature);
        if (decode_feature(a, m->key, &m->val, e->value, err) != 0)
            return -1;
        fs->feature[fs->n_feature++] = e;
    }
    ex->features = fs;
    *out = ex;
    return 0;
}

int tg_tj_decode_examples(struct tg_arena *a, const struct tg_jval *body,
                          Tensorflow__Serving__Input *input, struct tg_tj_error *err)
{
    const struct tg_jval *examples = tg_json_get(body, "examples", 8);
    const struct tg_jval *context = tg_json_get(body, "context", 7);
    Tensorflow__Example **exs;

    /* the message says "classify" for regress too (§3.9) */
    if (examples == NULL)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "JSON Value: %s When method is classify, key 'examples' is expected and was "
                       "not found",
                       tg_json_debug(body, a));
    if (examples->type != TG_JARRAY)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "JSON Value: %s Expecting 'examples' value to be an list/array",
                       tg_json_debug(examples, a));
    if (examples->len == 0)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "JSON Value: %s 'examples' value is an empty array",
                       tg_json_debug(examples, a));
    exs = tg_arena_alloc(a, (examples->len + 1) * sizeof(void *), _Alignof(void *));
    for (uint32_t i = 0; i < examples->len; i++) {
        if (decode_example(a, &examples->u.items[i], &exs[i], err) != 0)
            return -1;
    }
    tensorflow__serving__input__init(input);
    if (context != NULL) {
        Tensorflow__Serving__ExampleListWithContext *l =
            TG_ARENA_NEW(a, Tensorflow__Serving__ExampleListWithContext);
        tensorflow__serving__example_list_with_context__init(l);
        if (decode_example(a, context, &l->context, err) != 0)
            return -1;
        l->n_examples = examples->len;
        l->examples = exs;
        input->kind_case = TENSORFLOW__SERVING__INPUT__KIND_EXAMPLE_LIST_WITH_CONTEXT;
        input->example_list_with_context = l;
    } else {
        Tensorflow__Serving__ExampleList *l = TG_ARENA_NEW(a, Tensorflow__Serving__ExampleList);
        tensorflow__serving__example_list__init(l);
        l->n_examples = examples->len;
        l->examples = exs;
        input->kind_case = TENSORFLOW__SERVING__INPUT__KIND_EXAMPLE_LIST;
        input->example_list = l;
    }
    return 0;
}

/* ---- TensorProto -> JSON (§3.8) ---- */

/*
 * The float case of §3.8 without printf and strtof, which were 90% of the cost of writing a
 * float tensor (bench/micro/bench_tensor_json.c). A normal float below 2^24 is m * 2^-s
 * exactly (m < 2^24), so with 128-bit integers its decimal digits, printf's round-half-even
 * and strtof's read-back can all be decided exactly. Other floats go to snprintf.
 */
typedef unsigned __int128 u128;

static const uint64_t pow10_u64[20] = {1ull,
                                       10ull,
                                       100ull,
                                       1000ull,
                                       10000ull,
                                       100000ull,
                                       1000000ull,
                                       10000000ull,
                                       100000000ull,
                                       1000000000ull,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull,
                                       100000000000000000ull,
                                       1000000000000000000ull,
                                       10000000000000000000ull};

static u128 pow10_u128(int k) /* 0 <= k <= 38 */
{
    return k < 20 ? (u128)pow10_u64[k] : (u128)pow10_u64[19] * pow10_u64[k - 19];
}

/* m * 2^-s rounded half-even to |prec| digits: q in [10^(prec-1), 10^prec) and the decimal
 * exponent of its first digit, given an estimate of it that is exact or one too small. */
static int round_digits(uint64_t m, int s, int prec, int e, uint64_t *q, int *e10)
{
    for (int pass = 0; pass < 2; pass++, e++) {
        int k = prec - 1 - e;
        if (k > 27 || k < -27)
            return -1;
        if (k >= 0 && k <= 11 && s < 64) {
            /* values from about 1e-3 to 1e5 at these precisions: m * 10^k < 2^24 * 10^11 fits
             * 64 bits, so the same arithmetic without 128-bit multiplies */
            uint64_t num = m * pow10_u64[k], r = num >> s, rem = num & ((UINT64_C(1) << s) - 1);
            if (r >= pow10_u64[prec])
                continue;
            if (s > 0) { /* s == 0: an integer, nothing to round */
                uint64_t half = UINT64_C(1) << (s - 1);
                if (rem > half || (rem == half && (r & 1)))
                    r++;
            }
            if (r == pow10_u64[prec]) {
                r /= 10;
                e++;
            }
            *q = r;
            *e10 = e;
            return 0;
        }
        u128 num = (u128)m * (k > 0 ? pow10_u128(k) : 1), den, r, rem;
        if (k >= 0) { /* the common case: a power-of-two divisor */
            den = (u128)1 << s;
            r = num >> s;
            rem = num & (den - 1);
        } else {
            den = pow10_u128(-k) << s;
            r = num / den;
            rem = num % den;
        }
        if (r >= (u128)pow10_u128(prec))
            continue; /* the estimate was one too small */
        if (2 * rem > den || (2 * rem == den && (r & 1)))
            r++;
        if (r == pow10_u128(prec)) {
            r /= 10;
            e++;
        }
        *q = (uint64_t)r;
        *e10 = e;
        return 0;
    }
    return -1;
}

/* 1 if q * 10^(e10-prec+1) reads back (round to nearest even) as m * 2^-s, 0 if not. */
static int reads_back(uint64_t m, int s, uint64_t q, int prec, int e10)
{
    int k = prec - 1 - e10; /* the decimal is q * 10^-k */
    if (k > 0 && k <= 11 && s + 1 < 64 && q <= (UINT64_MAX >> (s + 1))) {
        /* the same in 64 bits (2m * 10^k < 2^25 * 10^11 < 2^62) */
        uint64_t dec = q << (s + 1), flt = 2 * m * pow10_u64[k], half = pow10_u64[k];
        uint64_t diff = dec > flt ? dec - flt : flt - dec;
        if (m == (UINT64_C(1) << 23) && dec < flt)
            half /= 2;
        return diff < half || (diff == half && (m & 1) == 0);
    }
    /* scaled by 2^(s+1) * 10^max(k,0): the decimal, the float, and half its ulp */
    u128 dec = ((u128)q * (k < 0 ? pow10_u128(-k) : 1)) << (s + 1);
    u128 flt = (u128)(2 * m) * (k > 0 ? pow10_u128(k) : 1);
    u128 half = k > 0 ? pow10_u128(k) : 1;
    u128 diff = dec > flt ? dec - flt : flt - dec;
    if (m == (UINT64_C(1) << 23) && dec < flt)
        half /= 2; /* a power of two: the float below is half as far */
    return diff < half || (diff == half && (m & 1) == 0);
}

/* printf's %.<prec>g from the digits (no '#': trailing zeros go), then TF's ".0" when the text
 * has neither '.' nor 'e' (§3.8). */
static size_t g_text(int neg, uint64_t q, int prec, int e10, char *out)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                "31323334353637383940414243444546474849505152535455565758596061"
                                "62636465666768697071727374757677787980818283848586878889909192"
                                "93949596979899";
    char dig[20];
    size_t n = 0;
    int d = prec - 1;
    for (; d >= 1; d -= 2, q /= 100)
        memcpy(dig + d - 1, pairs + 2 * (q % 100), 2);
    if (d == 0)
        dig[0] = (char)('0' + q % 10);
    int nd = prec;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    if (neg)
        out[n++] = '-';
    if (e10 < -4 || e10 >= prec) {
        out[n++] = dig[0];
        if (nd > 1) {
            out[n++] = '.';
            memcpy(out + n, dig + 1, (size_t)nd - 1);
            n += (size_t)nd - 1;
        }
        n += (size_t)sprintf(out + n, "e%c%02d", e10 < 0 ? '-' : '+', abs(e10));
    } else if (e10 < 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = 0; i < -e10 - 1; i++)
            out[n++] = '0';
        memcpy(out + n, dig, (size_t)nd);
        n += (size_t)nd;
    } else {
        memcpy(out + n, dig, (size_t)e10 + 1);
        n += (size_t)e10 + 1;
        out[n++] = '.';
        if (nd > e10 + 1) {
            memcpy(out + n, dig + e10 + 1, (size_t)(nd - e10 - 1));
            n += (size_t)(nd - e10 - 1);
        } else {
            out[n++] = '0';
        }
    }
    out[n] = '\0';
    return n;
}

/* Returns 0 with the text in |out|, or -1 when snprintf must decide. */
static int fast_format_float(float f, char *out, size_t *len)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof(bits));
    int bexp = (int)((bits >> 23) & 0xff);
    if (bexp == 0 || bexp == 0xff || bexp > 150 || bexp < 150 - 90)
        return -1; /* zero, subnormal, NaN/Inf, >= 2^24, or < 2^-67 */
    uint64_t m = (bits & 0x7fffff) | 0x800000;
    int s = 150 - bexp, e10, rb;
    /* floor(log10(2^(bexp-127))), exact or one low for the value: 78913 / 2^18 ~ log10 2 gives
     * the exact floor for every float exponent (checked for -150..150); >> of a negative
     * number is an arithmetic shift, i.e. floor, on GCC and Clang */
    int est = ((bexp - 127) * 78913) >> 18;
    uint64_t q;
    if (round_digits(m, s, 6, est, &q, &e10) != 0 || (rb = reads_back(m, s, q, 6, e10)) < 0)
        return -1;
    if (!rb && round_digits(m, s, 9, est, &q, &e10) != 0)
        return -1;
    *len = g_text((int)(bits >> 31), q, rb ? 6 : 9, e10, out);
    return 0;
}

size_t tg_tj_format_float(double v, int is_double, char *out)
{
    if (isnan(v))
        return (size_t)sprintf(out, "NaN");
    if (isinf(v))
        return (size_t)sprintf(out, v > 0 ? "Infinity" : "-Infinity");
    size_t fl;
    if (!is_double && fast_format_float((float)v, out, &fl) == 0)
        return fl;
    int n = snprintf(out, 40, "%.6g", v);
    int same = is_double ? strtod(out, NULL) == v : strtof(out, NULL) == (float)v;
    if (!same)
        n = snprintf(out, 40, is_double ? "%.17g" : "%.9g", v);
    if (strpbrk(out, ".e") == NULL && strpbrk(out, "ni") == NULL) {
        memcpy(out + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

/* An output buffer that grows (JSON answers are bounded by the backend's message limit). */
struct sb {
    char *b;
    size_t n, cap;
};

static void sb_put(struct sb *s, const char *d, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + n + 1)
            cap *= 2;
        s->b = tg_xrealloc(s->b, cap);
        s->cap = cap;
    }
    memcpy(s->b + s->n, d, n);
    s->n += n;
}

/* Room for |n| bytes more, allocated once (a 2 MB answer grown by doubling was copied ~2x). */
static void sb_reserve(struct sb *s, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        s->b = tg_xrealloc(s->b, s->n + n + 1);
        s->cap = s->n + n + 1;
    }
}

static void sb_puts(struct sb *s, const char *d)
{
    sb_put(s, d, strlen(d));
}

/* RapidJSON's PrettyWriter (4-space indent), with the format flag switched where TF Serving
 * switches it: that is what makes its odd layouts ("[2.5, 3.0, 4.5\n    ]"). */
struct pw {
    struct sb out;
    int single_line;
    int depth;
    struct {
        int in_array;
        int count;
    } lv[MAX_RANK + 8];
};

static void pw_indent(struct pw *w)
{
    for (int i = 0; i < w->depth; i++)
        sb_put(&w->out, "    ", 4);
}

static void pw_prefix(struct pw *w)
{
    if (w->depth == 0)
        return;
    typeof(w->lv[0]) *l = &w->lv[w->depth - 1];
    if (l->in_array) {
        if (l->count > 0) {
            sb_put(&w->out, ",", 1);
            if (w->single_line)
                sb_put(&w->out, " ", 1);
        }
        if (!w->single_line) {
            sb_put(&w->out, "\n", 1);
            pw_indent(w);
        }
    } else {
        if (l->count > 0) {
            if (l->count % 2 == 0)
                sb_put(&w->out, ",\n", 2);
            else
                sb_put(&w->out, ": ", 2);
        } else {
            sb_put(&w->out, "\n", 1);
        }
        if (l->count % 2 == 0)
            pw_indent(w);
    }
    l->count++;
}

static void pw_raw(struct pw *w, const char *s, size_t n)
{
    pw_prefix(w);
    sb_put(&w->out, s, n);
}

static void pw_string(struct pw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    pw_prefix(w);
    sb_put(&w->out, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        char u[7];
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            if (c < 0x20) {
                u[0] = '\\';
                u[1] = 'u';
                u[2] = '0';
                u[3] = '0';
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                u[6] = '\0';
                e = u;
            }
        }
        if (e != NULL) {
            sb_put(&w->out, s + i - run, run);
            run = 0;
            sb_puts(&w->out, e);
        } else {
            run++;
        }
    }
    sb_put(&w->out, s + n - run, run);
    sb_put(&w->out, "\"", 1);
}

static void pw_start(struct pw *w, int array)
{
    pw_prefix(w);
    sb_put(&w->out, array ? "[" : "{", 1);
    w->lv[w->depth].in_array = array;
    w->lv[w->depth].count = 0;
    w->depth++;
}

static void pw_end(struct pw *w)
{
    int array = w->lv[w->depth - 1].in_array;
    int empty = w->lv[w->depth - 1].count == 0;
    w->depth--;
    if (!empty && !(array && w->single_line)) {
        sb_put(&w->out, "\n", 1);
        pw_indent(w);
    }
    sb_put(&w->out, array ? "]" : "}", 1);
}

static void pw_key(struct pw *w, const char *k)
{
    pw_string(w, k, strlen(k));
}

/* An output tensor's values, decoded from tensor_content or the typed field (fill rule). */
struct otensor {
    const char *alias;
    int dtype;
    int b64; /* TG_DT_STRING written as {"b64": ...} (alias ends with _bytes) */
    size_t rank;
    const int64_t *dims;
    size_t n;
    void *vals; /* double (float/double), int64, uint64, uint8 (bool), BinaryData */
};

static int read_output(struct tg_arena *a, const char *alias, const Tensorflow__TensorProto *tp,
                       struct otensor *o, struct tg_tj_error *err)
{
    size_t n = 1;
    int dt = base_dtype(tp->dtype);
    o->alias = alias;
    o->dtype = dt;
    o->rank = tp->tensor_shape ? tp->tensor_shape->n_dim : 0;
    int64_t *dims = tg_arena_alloc(a, (o->rank + 1) * sizeof(int64_t), 8);
    for (size_t i = 0; i < o->rank; i++) {
        dims[i] = tp->tensor_shape->dim[i]->size;
        if (dims[i] < 0 || (dims[i] > 0 && n > ((size_t)1 << 40) / (size_t)dims[i]))
            return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                           "tfgate: invalid output shape for %s", alias);
        n *= (size_t)dims[i];
    }
    o->dims = dims;
    o->n = n;
    size_t al = strlen(alias);
    o->b64 = dt == TG_DT_STRING && al >= 6 && strcmp(alias + al - 6, "_bytes") == 0;

    const uint8_t *c = tp->tensor_content.data;
    size_t clen = tp->tensor_content.len;
    size_t wire = 0, k = 0;
#define FILL(dst_t, field, conv)                                                                   \
    do {                                                                                           \
        dst_t *d_ = tg_arena_alloc(a, (n + 1) * sizeof(dst_t), 8);                                 \
        if (clen > 0) {                                                                            \
            if (clen != n * wire)                                                                  \
                goto bad_content;                                                                  \
            for (size_t i_ = 0; i_ < n; i_++)                                                      \
                d_[i_] = conv;                                                                     \
        } else {                                                                                   \
            k = tp->n_##field;                                                                     \
            for (size_t i_ = 0; i_ < n; i_++)                                                      \
                d_[i_] = k == 0 ? 0 : tp->field[i_ < k ? i_ : k - 1];                              \
        }                                                                                          \
        o->vals = d_;                                                                              \
    } while (0)
    switch (dt) {
    case TG_DT_FLOAT:
        wire = 4;
        FILL(double, float_val, ({
                 float f_;
                 memcpy(&f_, c + 4 * i_, 4);
                 (double)f_;
             }));
        break;
    case TG_DT_DOUBLE:
        wire = 8;
        FILL(double, double_val, ({
                 double f_;
                 memcpy(&f_, c + 8 * i_, 8);
                 f_;
             }));
        break;
    case TG_DT_INT32:
        wire = 4;
        FILL(int64_t, int_val, ({
                 int32_t v_;
                 memcpy(&v_, c + 4 * i_, 4);
                 (int64_t) v_;
             }));
        break;
    case TG_DT_INT16:
        wire = 2;
        FILL(int64_t, int_val, ({
                 int16_t v_;
                 memcpy(&v_, c + 2 * i_, 2);
                 (int64_t) v_;
             }));
        break;
    case TG_DT_INT8:
        wire = 1;
        FILL(int64_t, int_val, (int64_t)(int8_t)c[i_]);
        break;
    case TG_DT_UINT8:
        wire = 1;
        FILL(int64_t, int_val, (int64_t)c[i_]);
        break;
    case TG_DT_INT64:
        wire = 8;
        FILL(int64_t, int64_val, ({
                 int64_t v_;
                 memcpy(&v_, c + 8 * i_, 8);
                 v_;
             }));
        break;
    case TG_DT_UINT32:
        wire = 4;
        FILL(uint64_t, uint32_val, ({
                 uint32_t v_;
                 memcpy(&v_, c + 4 * i_, 4);
                 (uint64_t) v_;
             }));
        break;
    case TG_DT_UINT64:
        wire = 8;
        FILL(uint64_t, uint64_val, ({
                 uint64_t v_;
                 memcpy(&v_, c + 8 * i_, 8);
                 v_;
             }));
        break;
    case TG_DT_BOOL:
        wire = 1;
        FILL(uint8_t, bool_val, (uint8_t)(c[i_] != 0));
        break;
    case TG_DT_STRING: {
        ProtobufCBinaryData *d = tg_arena_alloc(a, (n + 1) * sizeof(*d), 8);
        if (clen > 0) { /* varint lengths, then the bytes */
            size_t pos = 0, total = 0;
            for (size_t i = 0; i < n; i++) {
                uint64_t l = 0;
                for (int sh = 0;; sh += 7) {
                    if (pos >= clen || sh > 28)
                        goto bad_content;
                    l |= (uint64_t)(c[pos] & 0x7f) << sh;
                    if (!(c[pos++] & 0x80))
                        break;
                }
                d[i].len = l;
                total += l;
                if (total > clen)
                    goto bad_content;
            }
            if (clen - pos != total)
                goto bad_content;
            for (size_t i = 0; i < n; i++) {
                d[i].data = (uint8_t *)c + pos;
                pos += d[i].len;
            }
        } else {
            k = tp->n_string_val;
            for (size_t i = 0; i < n; i++) {
                if (k == 0) {
                    d[i].data = (uint8_t *)"";
                    d[i].len = 0;
                } else {
                    d[i] = tp->string_val[i < k ? i : k - 1];
                }
            }
        }
        o->vals = d;
        break;
    }
    default:
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Failed to write JSON value for tensor type: %s", tg_tj_dtype_name(dt));
    }
#undef FILL
    return 0;
bad_content:
    return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                   "tfgate: output %s has a malformed tensor_content", alias);
}

static void write_scalar(struct pw *w, const struct otensor *o, size_t i)
{
    char num[48];
    size_t n;
    switch (o->dtype) {
    case TG_DT_FLOAT:
    case TG_DT_DOUBLE:
        n = tg_tj_format_float(((const double *)o->vals)[i], o->dtype == TG_DT_DOUBLE, num);
        pw_raw(w, num, n);
        return;
    case TG_DT_UINT32:
    case TG_DT_UINT64:
        n = (size_t)snprintf(num, sizeof(num), "%llu",
                             (unsigned long long)((const uint64_t *)o->vals)[i]);
        pw_raw(w, num, n);
        return;
    case TG_DT_BOOL:
        if (((const uint8_t *)o->vals)[i])
            pw_raw(w, "true", 4);
        else
            pw_raw(w, "false", 5);
        return;
    case TG_DT_STRING: {
        const ProtobufCBinaryData *b = &((const ProtobufCBinaryData *)o->vals)[i];
        if (o->b64) {
            char *enc = tg_xmalloc(tg_base64_encoded_len(b->len, 1) + 1);
            size_t el = tg_base64_encode(b->data, b->len, enc, 1);
            pw_start(w, 0);
            pw_key(w, "b64");
            pw_string(w, enc, el);
            pw_end(w);
            free(enc);
        } else {
            pw_string(w, (const char *)b->data, b->len);
        }
        return;
    }
    default:
        n = (size_t)snprintf(num, sizeof(num), "%lld", (long long)((const int64_t *)o->vals)[i]);
        pw_raw(w, num, n);
    }
}

/* Writes the sub-tensor of |o| at dimension |d| starting at element |off|. */
static void write_sub(struct pw *w, const struct otensor *o, size_t d, size_t off)
{
    if (d == o->rank) {
        write_scalar(w, o, off);
        return;
    }
    size_t stride = 1;
    for (size_t k = d + 1; k < o->rank; k++)
        stride *= (size_t)o->dims[k];
    pw_start(w, 1);
    for (int64_t i = 0; i < o->dims[d]; i++)
        write_sub(w, o, d + 1, off + (size_t)i * stride);
    pw_end(w);
}

static int cmp_entries(const void *x, const void *y)
{
    const Tensorflow__Serving__PredictResponse__OutputsEntry *const *a = x, *const *b = y;
    return strcmp((*a)->key ? (*a)->key : "", (*b)->key ? (*b)->key : "");
}

/* The text is handed to the arena as it is (no copy): the arena frees it. */
static int finish_text(struct pw *w, struct tg_arena *a, char **out, size_t *out_len)
{
    sb_reserve(&w->out, 0); /* sb_put keeps a byte for the NUL; an empty sb has no buffer */
    w->out.b[w->out.n] = '\0';
    tg_arena_defer(a, free, w->out.b);
    *out = w->out.b;
    *out_len = w->out.n;
    return 0;
}

int tg_tj_encode_predict(struct tg_arena *a, const Tensorflow__Serving__PredictResponse *resp,
                         int row, char **out, size_t *out_len, struct tg_tj_error *err)
{
    size_t n = resp->n_outputs;
    struct pw *w;

    if (n == 0)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Cannot convert empty tensor map to JSON");
    /* a deterministic key order: sorted (TF Serving's own is unspecified, §3.8) */
    Tensorflow__Serving__PredictResponse__OutputsEntry **es = tg_arena_alloc(a, n * sizeof(*es), 8);
    memcpy(es, resp->outputs, n * sizeof(*es));
    qsort(es, n, sizeof(*es), cmp_entries);
    struct otensor *o = tg_arena_zalloc(a, n * sizeof(*o), 8);
    for (size_t i = 0; i < n; i++) {
        static const Tensorflow__TensorProto empty = TENSORFLOW__TENSOR_PROTO__INIT;
        if (read_output(a, es[i]->key ? es[i]->key : "", es[i]->value ? es[i]->value : &empty,
                        &o[i], err) != 0)
            return -1;
    }
    if (row) {
        for (size_t i = 0; i < n; i++) {
            if (o[i].rank == 0)
                return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                               "Tensor name: %s has no shape information ", o[i].alias);
        }
        for (size_t i = 1; i < n; i++) {
            if (o[i].dims[0] != o[0].dims[0])
                return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                               "Tensor name: %s has inconsistent batch size: %lld expecting: %lld",
                               o[i].alias, (long long)o[i].dims[0], (long long)o[0].dims[0]);
        }
    }
    w = tg_xcalloc(1, sizeof(*w));
    size_t values = 0;
    for (size_t i = 0; i < n; i++)
        values += o[i].n;
    /* about what a float takes ("0.123456789, "); a guess, the buffer still grows if needed */
    sb_reserve(&w->out, values < ((size_t)1 << 40) ? values * 13 + 256 : 256);
    pw_start(w, 0);
    if (row) {
        int64_t batch = o[0].dims[0];
        pw_key(w, "predictions");
        pw_start(w, 1);
        if (n == 1) {
            size_t stride = o[0].n / (size_t)(batch ? batch : 1);
            w->single_line = 1;
            for (int64_t b = 0; b < batch; b++)
                write_sub(w, &o[0], 1, (size_t)b * stride);
            w->single_line = 0;
        } else {
            for (int64_t b = 0; b < batch; b++) {
                pw_start(w, 0);
                for (size_t i = 0; i < n; i++) {
                    size_t stride = o[i].n / (size_t)(batch ? batch : 1);
                    pw_key(w, o[i].alias);
                    w->single_line = 1;
                    write_sub(w, &o[i], 1, (size_t)b * stride);
                    w->single_line = 0;
                }
                pw_end(w);
            }
        }
        pw_end(w);
    } else {
        pw_key(w, "outputs");
        if (n == 1) {
            write_sub(w, &o[0], 0, 0);
        } else {
            pw_start(w, 0);
            for (size_t i = 0; i < n; i++) {
                pw_key(w, o[i].alias);
                write_sub(w, &o[i], 0, 0);
            }
            pw_end(w);
        }
    }
    pw_end(w);
    int rv = finish_text(w, a, out, out_len);
    free(w);
    return rv;
}

int tg_tj_encode_classify(struct tg_arena *a, const Tensorflow__Serving__ClassificationResult *r,
                          char **out, size_t *out_len, struct tg_tj_error *err)
{
    char num[48];
    if (r == NULL || r->n_classifications == 0)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Cannot convert empty ClassificationResults to JSON");
    struct pw *w = tg_xcalloc(1, sizeof(*w));
    pw_start(w, 0);
    pw_key(w, "results");
    pw_start(w, 1);
    w->single_line = 1;
    for (size_t i = 0; i < r->n_classifications; i++) {
        const Tensorflow__Serving__Classifications *cs = r->classifications[i];
        pw_start(w, 1);
        for (size_t k = 0; cs != NULL && k < cs->n_classes; k++) {
            pw_start(w, 1);
            const char *label = cs->classes[k]->label ? cs->classes[k]->label : "";
            pw_string(w, label, strlen(label));
            size_t nn = tg_tj_format_float(cs->classes[k]->score, 0, num);
            pw_raw(w, num, nn);
            pw_end(w);
        }
        pw_end(w);
    }
    w->single_line = 0; /* TF closes this array in the default format: "]]\n    ]" */
    pw_end(w);
    pw_end(w);
    int rv = finish_text(w, a, out, out_len);
    free(w);
    return rv;
}

int tg_tj_encode_regress(struct tg_arena *a, const Tensorflow__Serving__RegressionResult *r,
                         char **out, size_t *out_len, struct tg_tj_error *err)
{
    char num[48];
    if (r == NULL || r->n_regressions == 0)
        return err_set(err, a, GRPC_STATUS_INVALID_ARGUMENT,
                       "Cannot convert empty RegressionResults to JSON");
    struct pw *w = tg_xcalloc(1, sizeof(*w));
    pw_start(w, 0);
    pw_key(w, "results");
    w->single_line = 1; /* the whole list on one line, "]" included (§3.9) */
    pw_start(w, 1);
    for (size_t i = 0; i < r->n_regressions; i++) {
        size_t nn = tg_tj_format_float(r->regressions[i]->value, 0, num);
        pw_raw(w, num, nn);
    }
    pw_end(w);
    w->single_line = 0;
    pw_end(w);
    int rv = finish_text(w, a, out, out_len);
    free(w);
    return rv;
}
