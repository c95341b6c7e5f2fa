/*
 * grpc_wire.c - see grpc_wire.h.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "tensorflow_serving/apis/model.pb-c.h"

#include "tfgate/arena.h"
#include "tfgate/common.h"
#include "tfgate/error.h"
#include "tfgate/admission.h"
#include "tfgate/grpc_wire.h"

const char *const tg_grpc_method_paths[TG_GM_COUNT] = {
    [TG_GM_PREDICT] = "/tensorflow.serving.PredictionService/Predict",
    [TG_GM_CLASSIFY] = "/tensorflow.serving.PredictionService/Classify",
    [TG_GM_REGRESS] = "/tensorflow.serving.PredictionService/Regress",
    [TG_GM_MULTI_INFERENCE] = "/tensorflow.serving.PredictionService/MultiInference",
    [TG_GM_GET_MODEL_METADATA] = "/tensorflow.serving.PredictionService/GetModelMetadata",
    [TG_GM_GET_MODEL_STATUS] = "/tensorflow.serving.ModelService/GetModelStatus",
    [TG_GM_RELOAD_CONFIG] = "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
};

int tg_grpc_method_from_path(const char *path, size_t len)
{
    for (int i = 0; i < TG_GM_COUNT; i++) {
        if (strlen(tg_grpc_method_paths[i]) == len &&
            memcmp(tg_grpc_method_paths[i], path, len) == 0)
            return i;
    }
    return -1;
}

int tg_inflate(struct tg_arena *arena, const uint8_t *in, size_t len, int gzip, uint64_t max,
               const uint8_t **out, size_t *out_len)
{
    z_stream z;
    size_t cap = len * 4 + 1024, used = 0;
    uint8_t *buf;
    int rv;

    if (cap > max)
        cap = (size_t)max + 1;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK)
        return TG_EINTERNAL;
    buf = tg_xmalloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    for (;;) {
        z.next_out = buf + used;
        z.avail_out = (uInt)(cap - used);
        rv = inflate(&z, Z_NO_FLUSH);
        used = cap - z.avail_out;
        if (rv == Z_STREAM_END)
            break;
        if (rv != Z_OK && rv != Z_BUF_ERROR) {
            rv = TG_EINVAL;
            goto out;
        }
        if (used > max) {
            rv = TG_ETOOLARGE;
            goto out;
        }
        if (z.avail_out == 0) { /* grow, but never beyond max + 1 */
            size_t ncap = cap * 2 > max + 1 ? (size_t)max + 1 : cap * 2;
            if (ncap <= cap) {
                rv = TG_ETOOLARGE;
                goto out;
            }
            buf = tg_xrealloc(buf, ncap);
            cap = ncap;
        } else if (z.avail_in == 0) {
            rv = TG_EINVAL; /* truncated stream */
            goto out;
        }
    }
    if (used > max) {
        rv = TG_ETOOLARGE;
        goto out;
    }
    uint8_t *copy = tg_arena_alloc(arena, used + 1, 1);
    memcpy(copy, buf, used);
    *out = copy;
    *out_len = used;
    rv = 0;
out:
    inflateEnd(&z);
    free(buf);
    return rv;
}

int tg_grpc_unframe(const uint8_t *body, size_t len, uint64_t max, const char *encoding,
                    struct tg_arena *arena, const uint8_t **msg, size_t *msg_len, const char **why)
{
    uint32_t n;

    if (len < 5) {
        *why = len == 0 ? "no request message" : "truncated gRPC message prefix";
        return TG_EINVAL;
    }
    n = (uint32_t)body[1] << 24 | (uint32_t)body[2] << 16 | (uint32_t)body[3] << 8 | body[4];
    if (n > max) {
        *why = "request message larger than the gateway's limit";
        return TG_ETOOLARGE;
    }
    if ((size_t)n > len - 5) {
        *why = "truncated gRPC message";
        return TG_EINVAL;
    }
    if ((size_t)n != len - 5) {
        *why = "more than one request message on a unary method";
        return TG_EINVAL;
    }
    if (body[0] == 0) {
        *msg = body + 5;
        *msg_len = n;
        return 0;
    }
    if (body[0] != 1) {
        *why = "invalid gRPC message flag";
        return TG_EINVAL;
    }
    if (encoding == NULL ||
        (strcasecmp(encoding, "gzip") != 0 && strcasecmp(encoding, "deflate") != 0)) {
        *why = "compressed message with an unsupported grpc-encoding";
        return TG_EUNIMPLEMENTED;
    }
    int rv = tg_inflate(arena, body + 5, n, strcasecmp(encoding, "gzip") == 0, max, msg, msg_len);
    if (rv == TG_ETOOLARGE)
        *why = "request message larger than the gateway's limit once decompressed";
    else if (rv != 0)
        *why = "request message does not decompress";
    return rv;
}

int tg_grpc_parse_timeout(const char *s, size_t len, uint64_t *ms)
{
    uint64_t v = 0;
    size_t i;

    /* at most 8 digits then one unit (gRPC over HTTP/2 spec) */
    if (len < 2 || len > 9)
        return -1;
    for (i = 0; i + 1 < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    switch (s[len - 1]) {
    case 'H':
        *ms = v * 3600000u;
        return 0;
    case 'M':
        *ms = v * 60000u;
        return 0;
    case 'S':
        *ms = v * 1000u;
        return 0;
    case 'm':
        *ms = v;
        return 0;
    case 'u':
        *ms = (v + 999) / 1000;
        return 0;
    case 'n':
        *ms = (v + 999999) / 1000000;
        return 0;
    }
    return -1;
}

size_t tg_grpc_percent_encode(const char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

/* ---- protobuf: finding field 1 without decoding the rest ---- */

static int read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Walks the top-level fields of |msg|. For field |want| (length-delimited) it collects the
 * payloads: protobuf merges repeated occurrences of a singular message field, which parsing
 * their concatenation reproduces. With |nth| >= 0, returns only that occurrence of a repeated
 * field (NULL when there are fewer). Returns 0 or TG_EINVAL. */
static int collect_field(const uint8_t *msg, size_t len, uint32_t want, long nth,
                         struct tg_arena *arena, const uint8_t **out, size_t *out_len)
{
    size_t pos = 0, total = 0, nparts = 0;
    long seen = 0;
    const uint8_t *parts[8];
    size_t plen[8];

    while (pos < len) {
        uint64_t key, v;
        if (read_varint(msg, len, &pos, &key) != 0)
            return TG_EINVAL;
        uint32_t field = (uint32_t)(key >> 3), type = (uint32_t)(key & 7);
        if (field == 0)
            return TG_EINVAL;
        switch (type) {
        case 0:
            if (read_varint(msg, len, &pos, &v) != 0)
                return TG_EINVAL;
            break;
        case 1:
            if (len - pos < 8)
                return TG_EINVAL;
            pos += 8;
            break;
        case 5:
            if (len - pos < 4)
                return TG_EINVAL;
            pos += 4;
            break;
        case 2:
            if (read_varint(msg, len, &pos, &v) != 0 || v > len - pos)
                return TG_EINVAL;
            if (field == want && nth >= 0) {
                if (seen++ == nth) {
                    *out = msg + pos;
                    *out_len = (size_t)v;
                    return 0;
                }
            } else if (field == want) {
                if (nparts == TG_ARRAY_SIZE(parts))
                    return TG_EINVAL; /* absurdly many repeats: refuse rather than grow */
                parts[nparts] = msg + pos;
                plen[nparts++] = (size_t)v;
                total += (size_t)v;
            }
            pos += (size_t)v;
            break;
        default: /* groups (3, 4) do not occur in proto3 serving messages */
            return TG_EINVAL;
        }
    }
    if (nth >= 0) {
        *out = NULL;
        *out_len = 0;
        return 0;
    }
    if (nparts <= 1) {
        *out = nparts ? parts[0] : NULL;
        *out_len = nparts ? plen[0] : 0;
        return 0;
    }
    uint8_t *joined = tg_arena_alloc(arena, total, 1);
    for (size_t i = 0, off = 0; i < nparts; off += plen[i], i++)
        memcpy(joined + off, parts[i], plen[i]);
    *out = joined;
    *out_len = total;
    return 0;
}

static void *arena_alloc_cb(void *data, size_t size)
{
    return tg_arena_alloc(data, size, 16);
}

static void arena_free_cb(void *data, void *p)
{
    (void)data;
    (void)p; /* freed with the arena */
}

int tg_grpc_model_spec(enum tg_grpc_method method, const uint8_t *msg, size_t len,
                       struct tg_arena *arena, struct tg_model_spec *out)
{
    return tg_grpc_task_model_spec(method, msg, len, 0, arena, out) < 0 ? TG_EINVAL : 0;
}

int tg_grpc_task_model_spec(enum tg_grpc_method method, const uint8_t *msg, size_t len, size_t task,
                            struct tg_arena *arena, struct tg_model_spec *out)
{
    ProtobufCAllocator alloc = {arena_alloc_cb, arena_free_cb, arena};
    const uint8_t *spec_bytes;
    size_t spec_len;

    memset(out, 0, sizeof(*out));
    out->name = "";
    out->signature = "";
    if (method == TG_GM_RELOAD_CONFIG)
        return task == 0; /* names no model */
    if (method == TG_GM_MULTI_INFERENCE) {
        const uint8_t *t;
        size_t t_len;
        if (collect_field(msg, len, 1, (long)task, arena, &t, &t_len) != 0)
            return -1;
        if (t == NULL)
            return task == 0; /* no tasks: one empty spec; past the last task: none */
        msg = t;
        len = t_len;
    } else if (task > 0) {
        return 0;
    }
    if (collect_field(msg, len, 1, -1, arena, &spec_bytes, &spec_len) != 0)
        return -1;
    if (spec_bytes == NULL)
        return 1;
    Tensorflow__Serving__ModelSpec *spec =
        tensorflow__serving__model_spec__unpack(&alloc, spec_len, spec_bytes);
    if (spec == NULL)
        return -1;
    out->name = spec->name ? spec->name : "";
    out->signature = spec->signature_name ? spec->signature_name : "";
    if (spec->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION) {
        out->has_version = 1;
        out->version = spec->version ? spec->version->value : 0;
    } else if (spec->version_choice_case ==
               TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL) {
        out->label = spec->version_label ? spec->version_label : "";
    }
    return 1;
}

int tg_grpc_predict_size(const uint8_t *msg, size_t len, struct tg_arena *arena,
                         struct tg_request_size *out)
{
    ProtobufCAllocator alloc = {arena_alloc_cb, arena_free_cb, arena};
    out->batch = -1;
    out->elements = 0;
    out->bytes = len;
    for (long k = 0;; k++) {
        const uint8_t *entry, *value, *shape;
        size_t entry_len, value_len, shape_len;
        if (collect_field(msg, len, 2, k, arena, &entry, &entry_len) != 0)
            return TG_EINVAL;
        if (entry == NULL)
            return 0; /* no more inputs */
        if (collect_field(entry, entry_len, 2, -1, arena, &value, &value_len) != 0 ||
            (value != NULL &&
             collect_field(value, value_len, 2, -1, arena, &shape, &shape_len) != 0))
            return TG_EINVAL;
        if (value == NULL || shape == NULL) {
            out->elements += out->elements < UINT64_MAX; /* no shape: a scalar */
            continue;
        }
        Tensorflow__TensorShapeProto *sh =
            tensorflow__tensor_shape_proto__unpack(&alloc, shape_len, shape);
        if (sh == NULL)
            return TG_EINVAL;
        uint64_t n = 1;
        for (size_t d = 0; d < sh->n_dim; d++) {
            uint64_t size = sh->dim[d]->size > 0 ? (uint64_t)sh->dim[d]->size : 0;
            n = size != 0 && n > UINT64_MAX / size ? UINT64_MAX : n * size;
        }
        if (sh->n_dim > 0 && sh->dim[0]->size > out->batch)
            out->batch = sh->dim[0]->size;
        out->elements = out->elements + n < out->elements ? UINT64_MAX : out->elements + n;
    }
}

int tg_grpc_response_version(enum tg_grpc_method method, const uint8_t *msg, size_t len,
                             struct tg_arena *arena, int64_t *version)
{
    ProtobufCAllocator alloc = {arena_alloc_cb, arena_free_cb, arena};
    uint32_t field;
    switch (method) {
    case TG_GM_PREDICT:
    case TG_GM_CLASSIFY:
    case TG_GM_REGRESS:
        field = 2;
        break;
    case TG_GM_GET_MODEL_METADATA:
        field = 1;
        break;
    default:
        return 0;
    }
    const uint8_t *spec_bytes;
    size_t spec_len;
    if (msg == NULL || collect_field(msg, len, field, -1, arena, &spec_bytes, &spec_len) != 0 ||
        spec_bytes == NULL)
        return 0;
    Tensorflow__Serving__ModelSpec *spec =
        tensorflow__serving__model_spec__unpack(&alloc, spec_len, spec_bytes);
    if (spec == NULL ||
        spec->version_choice_case != TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION ||
        spec->version == NULL)
        return 0;
    *version = spec->version->value;
    return 1;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

const uint8_t *tg_grpc_with_label(const uint8_t *msg, size_t len, const char *label,
                                  struct tg_arena *arena, size_t *out_len)
{
    size_t ll = strlen(label);
    uint8_t inner[16], outer[16];
    size_t ni = 0, no = 0;
    inner[ni++] = 0x22; /* ModelSpec.version_label = 4, length-delimited */
    ni += put_varint(inner + ni, ll);
    outer[no++] = 0x0a; /* the request's model_spec = 1, length-delimited */
    no += put_varint(outer + no, ni + ll);
    uint8_t *out = tg_arena_alloc(arena, len + no + ni + ll, 1);
    memcpy(out, msg, len);
    memcpy(out + len, outer, no);
    memcpy(out + len + no, inner, ni);
    memcpy(out + len + no + ni, label, ll);
    *out_len = len + no + ni + ll;
    return out;
}

static int is_token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

int tg_grpc_header_forwardable(const char *name, size_t nlen, const char *value, size_t vlen)
{
    static const char *const dropped[] = {
        "host",
        "authorization",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "content-type",
        "content-length",
        "user-agent",
        "http2-settings",
        "proxy-authorization",
        "x-tfgate-subject",
    };
    if (nlen == 0 || name[0] == ':')
        return 0;
    for (size_t i = 0; i < nlen; i++) {
        if (!is_token_char((unsigned char)name[i]))
            return 0; /* gRPC core accepts only lower-case [0-9a-z-_.] keys */
    }
    if (nlen >= 5 && memcmp(name, "grpc-", 5) == 0)
        return 0; /* grpc-timeout, grpc-encoding ...: the gateway's own business */
    for (size_t i = 0; i < TG_ARRAY_SIZE(dropped); i++) {
        if (strlen(dropped[i]) == nlen && memcmp(dropped[i], name, nlen) == 0)
            return 0;
    }
    if (nlen > 4 && memcmp(name + nlen - 4, "-bin", 4) == 0)
        return 1; /* base64 on the wire; decoded by the caller */
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c > 0x7e)
            return 0;
    }
    return 1;
}
