/*
 * tensor.c - TensorProto decoding and encoding for tfs-sim (see tensor.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"

size_t sim_tensor_max_bytes = (size_t)1 << 30;

enum storage {
    ST_NONE = 0,
    ST_F32,
    ST_F64,
    ST_I32,
    ST_I64,
    ST_U32,
    ST_U64,
    ST_BOOL,
    ST_U16,
    ST_C64,
    ST_C128,
    ST_STR,
};

struct dtype_info {
    const char *name; /* TF's lowercase name */
    enum storage st;  /* how elements are stored in struct sim_tensor */
    size_t wire;      /* bytes per element in tensor_content; 0 = variable (string) */
    int narrow;       /* for ST_I32: 8, 16 signed; -8, -16 unsigned; 32 none */
};

static const struct dtype_info dtypes[] = {
    [TENSORFLOW__DATA_TYPE__DT_FLOAT] = {"float", ST_F32, 4, 0},
    [TENSORFLOW__DATA_TYPE__DT_DOUBLE] = {"double", ST_F64, 8, 0},
    [TENSORFLOW__DATA_TYPE__DT_INT32] = {"int32", ST_I32, 4, 32},
    [TENSORFLOW__DATA_TYPE__DT_UINT8] = {"uint8", ST_I32, 1, -8},
    [TENSORFLOW__DATA_TYPE__DT_INT16] = {"int16", ST_I32, 2, 16},
    [TENSORFLOW__DATA_TYPE__DT_INT8] = {"int8", ST_I32, 1, 8},
    [TENSORFLOW__DATA_TYPE__DT_STRING] = {"string", ST_STR, 0, 0},
    [TENSORFLOW__DATA_TYPE__DT_COMPLEX64] = {"complex64", ST_C64, 8, 0},
    [TENSORFLOW__DATA_TYPE__DT_INT64] = {"int64", ST_I64, 8, 0},
    [TENSORFLOW__DATA_TYPE__DT_BOOL] = {"bool", ST_BOOL, 1, 0},
    [TENSORFLOW__DATA_TYPE__DT_QINT8] = {"qint8", ST_I32, 1, 8},
    [TENSORFLOW__DATA_TYPE__DT_QUINT8] = {"quint8", ST_I32, 1, -8},
    [TENSORFLOW__DATA_TYPE__DT_QINT32] = {"qint32", ST_I32, 4, 32},
    [TENSORFLOW__DATA_TYPE__DT_BFLOAT16] = {"bfloat16", ST_U16, 2, 0},
    [TENSORFLOW__DATA_TYPE__DT_QINT16] = {"qint16", ST_I32, 2, 16},
    [TENSORFLOW__DATA_TYPE__DT_QUINT16] = {"quint16", ST_I32, 2, -16},
    [TENSORFLOW__DATA_TYPE__DT_UINT16] = {"uint16", ST_I32, 2, -16},
    [TENSORFLOW__DATA_TYPE__DT_COMPLEX128] = {"complex128", ST_C128, 16, 0},
    [TENSORFLOW__DATA_TYPE__DT_HALF] = {"half", ST_U16, 2, 0},
    [TENSORFLOW__DATA_TYPE__DT_RESOURCE] = {"resource", ST_NONE, 0, 0},
    [TENSORFLOW__DATA_TYPE__DT_VARIANT] = {"variant", ST_NONE, 0, 0},
    [TENSORFLOW__DATA_TYPE__DT_UINT32] = {"uint32", ST_U32, 4, 0},
    [TENSORFLOW__DATA_TYPE__DT_UINT64] = {"uint64", ST_U64, 8, 0},
    [TENSORFLOW__DATA_TYPE__DT_FLOAT8_E5M2] = {"float8_e5m2", ST_NONE, 0, 0},
    [TENSORFLOW__DATA_TYPE__DT_FLOAT8_E4M3FN] = {"float8_e4m3fn", ST_NONE, 0, 0},
};

static const struct dtype_info *info(int dtype)
{
    if (dtype <= 0 || dtype >= (int)SIM_ARRAY_SIZE(dtypes) || dtypes[dtype].name == NULL)
        return NULL;
    return &dtypes[dtype];
}

static size_t storage_size(enum storage st)
{
    switch (st) {
    case ST_F32:
    case ST_I32:
    case ST_U32:
        return 4;
    case ST_F64:
    case ST_I64:
    case ST_U64:
    case ST_C64:
        return 8;
    case ST_BOOL:
        return 1;
    case ST_U16:
        return 2;
    case ST_C128:
        return 16;
    case ST_STR:
        return sizeof(struct sim_bytes);
    case ST_NONE:
        break;
    }
    return 0;
}

const char *sim_dtype_name(int dtype)
{
    static const char *const refs[] = {
        "invalid_ref",    "float_ref",  "double_ref",    "int32_ref",   "uint8_ref",   "int16_ref",
        "int8_ref",       "string_ref", "complex64_ref", "int64_ref",   "bool_ref",    "qint8_ref",
        "quint8_ref",     "qint32_ref", "bfloat16_ref",  "qint16_ref",  "quint16_ref", "uint16_ref",
        "complex128_ref", "half_ref",   "resource_ref",  "variant_ref", "uint32_ref",  "uint64_ref",
    };
    const struct dtype_info *di = info(dtype);

    if (di != NULL)
        return di->name;
    if (dtype > 100 && dtype - 100 < (int)SIM_ARRAY_SIZE(refs))
        return refs[dtype - 100];
    return "invalid";
}

int sim_dtype_from_name(const char *name)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&tensorflow__data_type__descriptor, name);
    return v ? v->value : -1;
}

static int32_t narrow_i32(int64_t v, int narrow)
{
    switch (narrow) {
    case 8:
        return (int8_t)v;
    case -8:
        return (uint8_t)v;
    case 16:
        return (int16_t)v;
    case -16:
        return (uint16_t)v;
    default:
        return (int32_t)v;
    }
}

/* Little-endian reads; TF writes tensor_content in host order, which is little-endian here. */
static int64_t read_int(const uint8_t *p, size_t size, int is_signed)
{
    uint64_t v = 0;
    for (size_t i = 0; i < size; i++)
        v |= (uint64_t)p[i] << (8 * i);
    if (is_signed && size < 8 && (v >> (8 * size - 1)) & 1)
        v |= ~(uint64_t)0 << (8 * size);
    return (int64_t)v;
}

static int read_varint32(const uint8_t *p, size_t len, size_t *pos, uint32_t *out)
{
    uint32_t v = 0;
    for (int shift = 0; shift <= 28; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t b = p[(*pos)++];
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int decode_strings_content(const ProtobufCBinaryData *c, struct sim_tensor *t)
{
    struct sim_bytes *el = t->data;
    size_t pos = 0, total = 0;

    for (size_t i = 0; i < t->n; i++) {
        uint32_t l;
        if (read_varint32(c->data, c->len, &pos, &l) != 0)
            return -1;
        el[i].len = l;
        total += l;
        if (total > c->len)
            return -1;
    }
    if (c->len - pos != total)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        el[i].p = c->data + pos; /* rebased below onto a copy */
        pos += el[i].len;
    }
    return 0;
}

/* Copies string payloads so the tensor does not point into the request. */
static void own_strings(struct sim_tensor *t)
{
    struct sim_bytes *el = t->data;
    size_t total = 0;
    for (size_t i = 0; i < t->n; i++)
        total += el[i].len;
    uint8_t *blob = sim_xmalloc(t->n * sizeof(*el) + total);
    struct sim_bytes *nel = (struct sim_bytes *)blob;
    uint8_t *dst = blob + t->n * sizeof(*el);
    for (size_t i = 0; i < t->n; i++) {
        if (el[i].len > 0) /* p may be NULL for an empty element */
            memcpy(dst, el[i].p, el[i].len);
        nel[i].p = dst;
        nel[i].len = el[i].len;
        dst += el[i].len;
    }
    free(t->data);
    t->data = blob;
}

static void decode_content(const struct dtype_info *di, const uint8_t *p, struct sim_tensor *t)
{
    /* Where the storage is the wire layout (little-endian host), one copy does it: this is
     * the path large tensors take, and the per-element switch below cost 10x more. */
    if (di->st == ST_F32 || di->st == ST_F64 || di->st == ST_C64 || di->st == ST_C128 ||
        di->st == ST_I64 || di->st == ST_U32 || di->st == ST_U64 || di->st == ST_U16 ||
        (di->st == ST_I32 && di->wire == 4)) {
        memcpy(t->data, p, t->n * di->wire);
        return;
    }
    for (size_t i = 0; i < t->n; i++, p += di->wire) {
        switch (di->st) {
        case ST_F32:
            memcpy((float *)t->data + i, p, 4);
            break;
        case ST_F64:
            memcpy((double *)t->data + i, p, 8);
            break;
        case ST_I32:
            ((int32_t *)t->data)[i] = narrow_i32(read_int(p, di->wire, di->narrow > 0), di->narrow);
            break;
        case ST_I64:
            ((int64_t *)t->data)[i] = read_int(p, 8, 1);
            break;
        case ST_U32:
            ((uint32_t *)t->data)[i] = (uint32_t)read_int(p, 4, 0);
            break;
        case ST_U64:
            ((uint64_t *)t->data)[i] = (uint64_t)read_int(p, 8, 0);
            break;
        case ST_BOOL:
            ((uint8_t *)t->data)[i] = p[0] != 0;
            break;
        case ST_U16:
            ((uint16_t *)t->data)[i] = (uint16_t)read_int(p, 2, 0);
            break;
        case ST_C64:
            memcpy((float *)t->data + 2 * i, p, 8);
            break;
        case ST_C128:
            memcpy((double *)t->data + 2 * i, p, 16);
            break;
        case ST_STR:
        case ST_NONE:
            break;
        }
    }
}

/* The TF fill rule for typed fields: element i takes value min(i, k-1); none given: zero. */
#define FILL(dst_type, field, n_field, conv)                                                       \
    do {                                                                                           \
        dst_type *d_ = t->data;                                                                    \
        size_t k_ = tp->n_field;                                                                   \
        for (size_t i_ = 0; i_ < t->n && k_ > 0; i_++) {                                           \
            size_t j_ = i_ < k_ ? i_ : k_ - 1;                                                     \
            d_[i_] = conv(tp->field[j_]);                                                          \
        }                                                                                          \
    } while (0)
#define AS_IS(x)   (x)
#define AS_BOOL(x) ((uint8_t)((x) != 0))
#define AS_U16(x)  ((uint16_t)(x))

int sim_tensor_decode(const Tensorflow__TensorProto *tp, struct sim_tensor *t)
{
    const struct dtype_info *di = info(tp->dtype);
    size_t esize, n = 1;

    memset(t, 0, sizeof(*t));
    if (di == NULL || di->st == ST_NONE)
        return -1;
    t->dtype = tp->dtype;
    if (tp->tensor_shape != NULL) {
        if (tp->tensor_shape->unknown_rank || tp->tensor_shape->n_dim > SIM_MAX_RANK)
            return -1;
        t->rank = tp->tensor_shape->n_dim;
        for (size_t i = 0; i < t->rank; i++) {
            int64_t d = tp->tensor_shape->dim[i]->size;
            if (d < 0)
                return -1;
            t->dims[i] = d;
            if (d != 0 && n > SIZE_MAX / (size_t)d)
                return -1;
            n *= (size_t)d;
        }
    }
    esize = storage_size(di->st);
    if (n > sim_tensor_max_bytes / esize)
        return -1;
    t->n = n;
    t->data = sim_xcalloc(n ? n : 1, esize);

    if (tp->tensor_content.len > 0) {
        if (di->st == ST_STR) {
            if (decode_strings_content(&tp->tensor_content, t) != 0)
                goto fail;
            own_strings(t);
            return 0;
        }
        if (n > SIZE_MAX / di->wire || tp->tensor_content.len != n * di->wire)
            goto fail;
        decode_content(di, tp->tensor_content.data, t);
        return 0;
    }

    switch (di->st) {
    case ST_F32:
        FILL(float, float_val, n_float_val, AS_IS);
        break;
    case ST_F64:
        FILL(double, double_val, n_double_val, AS_IS);
        break;
    case ST_I32: {
        int32_t *d = t->data;
        FILL(int32_t, int_val, n_int_val, AS_IS);
        for (size_t i = 0; i < n; i++)
            d[i] = narrow_i32(d[i], di->narrow);
        break;
    }
    case ST_I64:
        FILL(int64_t, int64_val, n_int64_val, AS_IS);
        break;
    case ST_U32:
        FILL(uint32_t, uint32_val, n_uint32_val, AS_IS);
        break;
    case ST_U64:
        FILL(uint64_t, uint64_val, n_uint64_val, AS_IS);
        break;
    case ST_BOOL:
        FILL(uint8_t, bool_val, n_bool_val, AS_BOOL);
        break;
    case ST_U16:
        FILL(uint16_t, half_val, n_half_val, AS_U16);
        break;
    case ST_C64:
    case ST_C128: {
        /* values come in (real, imaginary) pairs; the fill rule applies to pairs */
        size_t k = di->st == ST_C64 ? tp->n_scomplex_val / 2 : tp->n_dcomplex_val / 2;
        for (size_t i = 0; i < n && k > 0; i++) {
            size_t j = i < k ? i : k - 1;
            if (di->st == ST_C64) {
                ((float *)t->data)[2 * i] = tp->scomplex_val[2 * j];
                ((float *)t->data)[2 * i + 1] = tp->scomplex_val[2 * j + 1];
            } else {
                ((double *)t->data)[2 * i] = tp->dcomplex_val[2 * j];
                ((double *)t->data)[2 * i + 1] = tp->dcomplex_val[2 * j + 1];
            }
        }
        break;
    }
    case ST_STR: {
        struct sim_bytes *d = t->data;
        size_t k = tp->n_string_val;
        for (size_t i = 0; i < n && k > 0; i++) {
            size_t j = i < k ? i : k - 1;
            d[i].p = tp->string_val[j].data;
            d[i].len = tp->string_val[j].len;
        }
        own_strings(t);
        break;
    }
    case ST_NONE:
        goto fail;
    }
    return 0;

fail:
    sim_tensor_dispose(t);
    return -1;
}

void sim_tensor_dispose(struct sim_tensor *t)
{
    free(t->data);
    t->data = NULL;
    t->n = 0;
}

static float half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 0x400), exp - 25);
    return sign ? -v : v;
}

double sim_tensor_number(const struct sim_tensor *t, size_t i)
{
    const struct dtype_info *di = info(t->dtype);

    switch (di ? di->st : ST_NONE) {
    case ST_F32:
        return ((const float *)t->data)[i];
    case ST_F64:
        return ((const double *)t->data)[i];
    case ST_I32:
        return ((const int32_t *)t->data)[i];
    case ST_I64:
        return (double)((const int64_t *)t->data)[i];
    case ST_U32:
        return ((const uint32_t *)t->data)[i];
    case ST_U64:
        return (double)((const uint64_t *)t->data)[i];
    case ST_BOOL:
        return ((const uint8_t *)t->data)[i];
    case ST_U16: {
        uint16_t h = ((const uint16_t *)t->data)[i];
        if (t->dtype == TENSORFLOW__DATA_TYPE__DT_BFLOAT16) {
            uint32_t bits = (uint32_t)h << 16;
            float f;
            memcpy(&f, &bits, 4);
            return f;
        }
        return half_to_float(h);
    }
    case ST_C64:
        return ((const float *)t->data)[2 * i];
    case ST_C128:
        return ((const double *)t->data)[2 * i];
    case ST_STR:
        return (double)((const struct sim_bytes *)t->data)[i].len;
    case ST_NONE:
        break;
    }
    return 0;
}

static Tensorflow__TensorShapeProto *make_shape(struct sim_pool *pool, size_t rank,
                                                const int64_t *dims)
{
    Tensorflow__TensorShapeProto *s = SIM_POOL_NEW(pool, Tensorflow__TensorShapeProto);
    tensorflow__tensor_shape_proto__init(s);
    s->n_dim = rank;
    s->dim = sim_pool_alloc(pool, (rank ? rank : 1) * sizeof(*s->dim));
    for (size_t i = 0; i < rank; i++) {
        Tensorflow__TensorShapeProto__Dim *d =
            SIM_POOL_NEW(pool, Tensorflow__TensorShapeProto__Dim);
        tensorflow__tensor_shape_proto__dim__init(d);
        d->size = dims[i];
        s->dim[i] = d;
    }
    return s;
}

static void encode_content(struct sim_pool *pool, const struct dtype_info *di,
                           const struct sim_tensor *t, Tensorflow__TensorProto *tp)
{
    if (di->st == ST_STR) {
        const struct sim_bytes *el = t->data;
        size_t total = 0;
        for (size_t i = 0; i < t->n; i++)
            total += 5 + el[i].len;
        uint8_t *buf = sim_pool_alloc(pool, total + 1), *p = buf;
        for (size_t i = 0; i < t->n; i++) {
            uint32_t l = (uint32_t)el[i].len;
            do {
                *p++ = (uint8_t)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
                l >>= 7;
            } while (l);
        }
        for (size_t i = 0; i < t->n; i++) {
            memcpy(p, el[i].p, el[i].len);
            p += el[i].len;
        }
        tp->tensor_content.data = buf;
        tp->tensor_content.len = (size_t)(p - buf);
        return;
    }
    uint8_t *buf = sim_pool_alloc(pool, t->n * di->wire + 1);
    for (size_t i = 0; i < t->n; i++) {
        uint8_t *p = buf + i * di->wire;
        uint64_t v;
        switch (di->st) {
        case ST_F32:
        case ST_F64:
        case ST_C64:
        case ST_C128:
            memcpy(p, (const uint8_t *)t->data + i * di->wire, di->wire);
            continue;
        case ST_I32:
            v = (uint64_t)(int64_t)((const int32_t *)t->data)[i];
            break;
        case ST_I64:
            v = (uint64_t)((const int64_t *)t->data)[i];
            break;
        case ST_U32:
            v = ((const uint32_t *)t->data)[i];
            break;
        case ST_U64:
            v = ((const uint64_t *)t->data)[i];
            break;
        case ST_BOOL:
            v = ((const uint8_t *)t->data)[i];
            break;
        case ST_U16:
            v = ((const uint16_t *)t->data)[i];
            break;
        default:
            continue;
        }
        for (size_t b = 0; b < di->wire; b++)
            p[b] = (uint8_t)(v >> (8 * b));
    }
    tp->tensor_content.data = buf;
    tp->tensor_content.len = t->n * di->wire;
}

#define COPY_FIELD(field, n_field, src_type, dst_type, mult)                                       \
    do {                                                                                           \
        tp->n_field = t->n * (mult);                                                               \
        tp->field = sim_pool_alloc(pool, (tp->n_field + 1) * sizeof(dst_type));                    \
        for (size_t i_ = 0; i_ < tp->n_field; i_++)                                                \
            tp->field[i_] = (dst_type)((const src_type *)t->data)[i_];                             \
    } while (0)

void sim_tensor_encode(struct sim_pool *pool, const struct sim_tensor *t, int as_content,
                       Tensorflow__TensorProto *tp)
{
    const struct dtype_info *di = info(t->dtype);

    tensorflow__tensor_proto__init(tp);
    tp->dtype = t->dtype;
    tp->tensor_shape = make_shape(pool, t->rank, t->dims);
    if (di == NULL || di->st == ST_NONE)
        return;
    if (as_content) {
        encode_content(pool, di, t, tp);
        return;
    }
    switch (di->st) {
    case ST_F32:
        COPY_FIELD(float_val, n_float_val, float, float, 1);
        break;
    case ST_F64:
        COPY_FIELD(double_val, n_double_val, double, double, 1);
        break;
    case ST_I32:
        COPY_FIELD(int_val, n_int_val, int32_t, int32_t, 1);
        break;
    case ST_I64:
        COPY_FIELD(int64_val, n_int64_val, int64_t, int64_t, 1);
        break;
    case ST_U32:
        COPY_FIELD(uint32_val, n_uint32_val, uint32_t, uint32_t, 1);
        break;
    case ST_U64:
        COPY_FIELD(uint64_val, n_uint64_val, uint64_t, uint64_t, 1);
        break;
    case ST_BOOL:
        COPY_FIELD(bool_val, n_bool_val, uint8_t, protobuf_c_boolean, 1);
        break;
    case ST_U16:
        COPY_FIELD(half_val, n_half_val, uint16_t, int32_t, 1);
        break;
    case ST_C64:
        COPY_FIELD(scomplex_val, n_scomplex_val, float, float, 2);
        break;
    case ST_C128:
        COPY_FIELD(dcomplex_val, n_dcomplex_val, double, double, 2);
        break;
    case ST_STR: {
        const struct sim_bytes *el = t->data;
        tp->n_string_val = t->n;
        tp->string_val = sim_pool_alloc(pool, (t->n + 1) * sizeof(*tp->string_val));
        for (size_t i = 0; i < t->n; i++) {
            tp->string_val[i].data = el[i].p;
            tp->string_val[i].len = el[i].len;
        }
        break;
    }
    case ST_NONE:
        break;
    }
}

/* ---- JSON (case-file form) -> TensorProto ---- */

static int json_to_double(json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "NaN") == 0)
            *out = NAN;
        else if (strcmp(s, "Infinity") == 0)
            *out = INFINITY;
        else if (strcmp(s, "-Infinity") == 0)
            *out = -INFINITY;
        else if (strcmp(s, "-0.0") == 0)
            *out = -0.0;
        else
            return -1;
        return 0;
    }
    return -1;
}

/* int64/uint64 come as decimal strings (exact) or as JSON integers. */
static int json_to_i64(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (*s == '\0' || *end != '\0' || errno == ERANGE)
            return -1;
        *out = x;
        return 0;
    }
    return -1;
}

static int json_to_u64(json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (*s == '\0' || *s == '-' || *end != '\0' || errno == ERANGE)
            return -1;
        *out = x;
        return 0;
    }
    return -1;
}

static int json_to_bytes(struct sim_pool *pool, json_t *v, ProtobufCBinaryData *out)
{
    if (json_is_string(v)) {
        out->len = json_string_length(v);
        out->data = (uint8_t *)sim_pool_strndup(pool, json_string_value(v), out->len);
        return 0;
    }
    json_t *b64 = json_object_get(v, "b64");
    if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(b64)) {
        uint8_t *raw;
        size_t len;
        if (sim_base64_decode(json_string_value(b64), json_string_length(b64), &raw, &len) != 0)
            return -1;
        out->data = (uint8_t *)sim_pool_strndup(pool, (const char *)raw, len);
        out->len = len;
        free(raw);
        return 0;
    }
    return -1;
}

#define ERR(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -1;                                                                                 \
    } while (0)

/* Fills one typed field from a JSON array, by the field's element type. */
static int fill_field(struct sim_pool *pool, const char *field, json_t *arr,
                      Tensorflow__TensorProto *tp, char *err, size_t errlen)
{
    size_t n = json_array_size(arr), i;
    json_t *v;

    if (!json_is_array(arr))
        ERR("'%s' must be an array", field);
#define ALLOC(f) (tp->n_##f = n, tp->f = sim_pool_alloc(pool, (n + 1) * sizeof(*tp->f)))
    if (strcmp(field, "float_val") == 0 || strcmp(field, "scomplex_val") == 0) {
        float **dst = field[0] == 'f' ? &tp->float_val : &tp->scomplex_val;
        size_t *nd = field[0] == 'f' ? &tp->n_float_val : &tp->n_scomplex_val;
        *nd = n;
        *dst = sim_pool_alloc(pool, (n + 1) * sizeof(float));
        json_array_foreach(arr, i, v)
        {
            double d;
            if (json_to_double(v, &d) != 0)
                ERR("%s[%zu] is not a number", field, i);
            (*dst)[i] = (float)d;
        }
    } else if (strcmp(field, "double_val") == 0 || strcmp(field, "dcomplex_val") == 0) {
        double **dst = field[0] == 'd' && field[1] == 'o' ? &tp->double_val : &tp->dcomplex_val;
        size_t *nd = dst == &tp->double_val ? &tp->n_double_val : &tp->n_dcomplex_val;
        *nd = n;
        *dst = sim_pool_alloc(pool, (n + 1) * sizeof(double));
        json_array_foreach(arr, i, v)
        {
            if (json_to_double(v, &(*dst)[i]) != 0)
                ERR("%s[%zu] is not a number", field, i);
        }
    } else if (strcmp(field, "int_val") == 0 || strcmp(field, "half_val") == 0) {
        int32_t **dst = field[0] == 'i' ? &tp->int_val : &tp->half_val;
        size_t *nd = field[0] == 'i' ? &tp->n_int_val : &tp->n_half_val;
        *nd = n;
        *dst = sim_pool_alloc(pool, (n + 1) * sizeof(int32_t));
        json_array_foreach(arr, i, v)
        {
            int64_t x;
            if (json_to_i64(v, &x) != 0 || x < INT32_MIN || x > INT32_MAX)
                ERR("%s[%zu] is not an int32", field, i);
            (*dst)[i] = (int32_t)x;
        }
    } else if (strcmp(field, "int64_val") == 0) {
        ALLOC(int64_val);
        json_array_foreach(arr, i, v)
        {
            if (json_to_i64(v, &tp->int64_val[i]) != 0)
                ERR("int64_val[%zu] is not an int64", i);
        }
    } else if (strcmp(field, "uint32_val") == 0) {
        ALLOC(uint32_val);
        json_array_foreach(arr, i, v)
        {
            uint64_t x;
            if (json_to_u64(v, &x) != 0 || x > UINT32_MAX)
                ERR("uint32_val[%zu] is not a uint32", i);
            tp->uint32_val[i] = (uint32_t)x;
        }
    } else if (strcmp(field, "uint64_val") == 0) {
        ALLOC(uint64_val);
        json_array_foreach(arr, i, v)
        {
            if (json_to_u64(v, &tp->uint64_val[i]) != 0)
                ERR("uint64_val[%zu] is not a uint64", i);
        }
    } else if (strcmp(field, "bool_val") == 0) {
        ALLOC(bool_val);
        json_array_foreach(arr, i, v)
        {
            if (!json_is_boolean(v))
                ERR("bool_val[%zu] is not a boolean", i);
            tp->bool_val[i] = json_is_true(v);
        }
    } else if (strcmp(field, "string_val") == 0) {
        ALLOC(string_val);
        json_array_foreach(arr, i, v)
        {
            if (json_to_bytes(pool, v, &tp->string_val[i]) != 0)
                ERR("string_val[%zu] is not a string or {\"b64\": ...}", i);
        }
    } else {
        ERR("unknown tensor field '%s'", field);
    }
#undef ALLOC
    return 0;
}

/* The typed field that carries "values" for each dtype (spec §2.3). */
static const char *values_field(int dtype)
{
    switch (dtype) {
    case TENSORFLOW__DATA_TYPE__DT_FLOAT:
        return "float_val";
    case TENSORFLOW__DATA_TYPE__DT_DOUBLE:
        return "double_val";
    case TENSORFLOW__DATA_TYPE__DT_INT32:
    case TENSORFLOW__DATA_TYPE__DT_INT16:
    case TENSORFLOW__DATA_TYPE__DT_INT8:
    case TENSORFLOW__DATA_TYPE__DT_UINT8:
    case TENSORFLOW__DATA_TYPE__DT_UINT16:
    case TENSORFLOW__DATA_TYPE__DT_QINT8:
    case TENSORFLOW__DATA_TYPE__DT_QUINT8:
    case TENSORFLOW__DATA_TYPE__DT_QINT16:
    case TENSORFLOW__DATA_TYPE__DT_QUINT16:
    case TENSORFLOW__DATA_TYPE__DT_QINT32:
        return "int_val";
    case TENSORFLOW__DATA_TYPE__DT_INT64:
        return "int64_val";
    case TENSORFLOW__DATA_TYPE__DT_UINT32:
        return "uint32_val";
    case TENSORFLOW__DATA_TYPE__DT_UINT64:
        return "uint64_val";
    case TENSORFLOW__DATA_TYPE__DT_BOOL:
        return "bool_val";
    case TENSORFLOW__DATA_TYPE__DT_STRING:
        return "string_val";
    case TENSORFLOW__DATA_TYPE__DT_HALF:
    case TENSORFLOW__DATA_TYPE__DT_BFLOAT16:
        return "half_val";
    case TENSORFLOW__DATA_TYPE__DT_COMPLEX64:
        return "scomplex_val";
    case TENSORFLOW__DATA_TYPE__DT_COMPLEX128:
        return "dcomplex_val";
    }
    return NULL;
}

int sim_tensor_from_json(struct sim_pool *pool, json_t *j, Tensorflow__TensorProto *tp, char *err,
                         size_t errlen)
{
    static const char *const raw_fields[] = {
        "float_val", "double_val", "int_val",  "int64_val",    "uint32_val",   "uint64_val",
        "bool_val",  "string_val", "half_val", "scomplex_val", "dcomplex_val",
    };
    json_t *dt = json_object_get(j, "dtype"), *shape = json_object_get(j, "shape"), *v;
    const char *key;
    int dtype;

    tensorflow__tensor_proto__init(tp);
    if (!json_is_object(j))
        ERR("a tensor must be an object");
    if (!json_is_string(dt) || (dtype = sim_dtype_from_name(json_string_value(dt))) < 0)
        ERR("tensor 'dtype' must be a DataType name such as \"DT_FLOAT\"");
    tp->dtype = dtype;
    if (json_is_array(shape)) {
        int64_t dims[SIM_MAX_RANK];
        size_t i;
        if (json_array_size(shape) > SIM_MAX_RANK)
            ERR("tensor shape has too many dimensions");
        json_array_foreach(shape, i, v)
        {
            if (!json_is_integer(v))
                ERR("tensor shape must be a list of integers");
            dims[i] = json_integer_value(v);
        }
        tp->tensor_shape = make_shape(pool, json_array_size(shape), dims);
    } else if (shape != NULL && !json_is_null(shape)) {
        ERR("tensor 'shape' must be a list or null");
    }

    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "dtype") == 0 || strcmp(key, "shape") == 0)
            continue;
        if (strcmp(key, "values") == 0) {
            const char *f = values_field(dtype);
            if (f == NULL)
                ERR("'values' is not supported for %s; give a raw field", json_string_value(dt));
            if (fill_field(pool, f, v, tp, err, errlen) != 0)
                return -1;
            continue;
        }
        if (strcmp(key, "tensor_content_hex") == 0) {
            uint8_t *raw;
            size_t len;
            if (!json_is_string(v) || sim_hex_decode(json_string_value(v), &raw, &len) != 0)
                ERR("'tensor_content_hex' must be a hex string");
            tp->tensor_content.data = (uint8_t *)sim_pool_strndup(pool, (char *)raw, len);
            tp->tensor_content.len = len;
            free(raw);
            continue;
        }
        size_t r;
        for (r = 0; r < SIM_ARRAY_SIZE(raw_fields); r++) {
            if (strcmp(key, raw_fields[r]) == 0)
                break;
        }
        if (r == SIM_ARRAY_SIZE(raw_fields))
            ERR("unknown tensor key '%s'", key);
        if (fill_field(pool, key, v, tp, err, errlen) != 0)
            return -1;
    }
    return 0;
}
