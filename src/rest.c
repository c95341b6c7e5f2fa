/*
 * rest.c - TF Serving's REST API (spec/tfserving.md §3) on top of the upstream transport:
 *
 *   POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict|:classify|:regress
 *   GET  /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]
 *
 * Predict follows TF Serving's order (§3.3), which decides the error a client sees: URL, then
 * the body (a JSON error beats "model not found"), then the model and signature (from
 * GetModelMetadata, cached per worker), then the conversion, then Predict. Dtypes come only
 * from the signature. The JSON <-> tensor work is tensor_json.c; this file is the HTTP and
 * backend plumbing.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <grpc/status.h>
#include <jansson.h>

#include "tensorflow_serving/apis/classification.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"
#include "tensorflow_serving/apis/regression.pb-c.h"

#include "tfgate/admission.h"
#include "tfgate/arena.h"
#include "tfgate/auth.h"
#include "tfgate/compress.h"
#include "tfgate/dispatch.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/error.h"
#include "tfgate/grpc_wire.h"
#include "tfgate/json.h"
#include "tfgate/log.h"
#include "tfgate/pool.h"
#include "tfgate/ratelimit.h"
#include "tfgate/rest.h"
#include "tfgate/stream.h"
#include "tfgate/tensor_json.h"
#include "tfgate/tensor_json_fast.h"
#include "tfgate/upstream.h"
#include "tfgate/worker.h"

#define JSON_MAX_DEPTH 1000 /* TF Serving parses any depth; we stop here (documented) */
#define META_TTL_MS    5000 /* signature cache lifetime: a new version is seen within this */
#define META_MAX       1024 /* cached signatures per worker */

enum rest_kind {
    R_PREDICT = 0,
    R_CLASSIFY,
    R_REGRESS,
    R_STATUS,
    R_METADATA,
};

struct rest;
typedef void next_step(struct tg_stream *st, struct rest *r, const struct tg_upstream_result *res);

struct rest {
    enum rest_kind kind;
    next_step *next; /* what runs when the backend call completes */
    const char *name;
    int has_version;
    int64_t version;
    const char *label;
    const char *signature; /* from the body; "" when absent */
    int has_signature;
    const char *text; /* the request body (decompressed), alive as long as the stream */
    size_t text_len;
    struct tg_jval *body;     /* the parsed body, or NULL while the fast path has it */
    struct tg_tjf_body *fast; /* a Predict body the fast path scanned, or NULL */
    struct tg_pool *pool;
    const struct tg_route_cfg *route;
    struct tg_dispatch d; /* the backend call, with its pool choice and retries */
    int64_t batch;        /* dim 0 of a predict request, -1 when unknown */
    int in_flight;
    int row;
    char cache_key[512];
    int64_t sig_version; /* version the signature used came from; -1 unknown */
};

static uint64_t body_limit(struct tg_stream *st)
{
    return st->limits->max_body_bytes;
}

/* ---- answering ---- */

/* JSON answers are gzip-compressed when the client accepts it and they are large enough to
 * gain (level 1: most of the saving for a fraction of the CPU of the default 6). */
static void respond_json(struct tg_stream *st, int status, const char *text, size_t len)
{
    const struct tg_header *ae = tg_stream_header(st, "accept-encoding");
    uint8_t *z;
    size_t zlen;
    if (len >= TG_GZIP_MIN_BYTES && ae != NULL && tg_accepts_gzip(ae->value) &&
        tg_gzip(&st->arena, (const uint8_t *)text, len, 1, &z, &zlen) == 0) {
        tg_stream_add_resp_header(st, "content-encoding", "gzip", 4);
        tg_stream_add_resp_header(st, "vary", "accept-encoding", 15);
        tg_stream_respond_http(st, status, "application/json", (const char *)z, zlen);
        return;
    }
    tg_stream_respond_http(st, status, "application/json", text, len);
}

static void respond_error(struct tg_stream *st, int http, const char *msg)
{
    tg_stream_respond_json_error(st, http, msg); /* {"error": ...}, TF Serving's layout */
}

static void respond_grpc_error(struct tg_stream *st, int code, const char *msg)
{
    respond_error(st, tg_grpc_to_http(code), msg);
}

static void respond_malformed(struct tg_stream *st)
{
    size_t cap = st->path_len + 64;
    char *m = tg_arena_alloc(&st->arena, cap, 1);
    snprintf(m, cap, "Malformed request: %s %s", st->method, st->path);
    respond_error(st, 400, m);
}

/* ---- the URL grammar (§3.2), case-insensitive full matches on the raw path + query ---- */

static int ci_prefix(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len >= n && strncasecmp(s, lit, n) == 0;
}

/* [^/:]+ */
static size_t seg_len(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && s[i] != '/' && s[i] != ':')
        i++;
    return i;
}

static char *pct_decode(struct tg_arena *a, const char *s, size_t len)
{
    char *out = tg_arena_alloc(a, len + 1, 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = s[i]; /* '+' stays '+' (curl_easy_unescape) */
        }
    }
    out[o] = '\0';
    return out;
}

/* Consumes an optional "/versions/N" or "/labels/L" at |*p|; anything else is left for the
 * caller, whose full-match check then fails (Malformed). */
static void version_or_label(struct tg_stream *st, struct rest *r, const char **p, size_t *left,
                             const char **digits, size_t *ndigits)

{
    if (ci_prefix(*p, *left, "/versions/")) {
        const char *d = *p + 10;
        size_t n = 0;
        while (n < *left - 10 && isdigit((unsigned char)d[n]))
            n++;
        if (n > 0) {
            *digits = d;
            *ndigits = n;
            r->has_version = 1;
            *p += 10 + n;
            *left -= 10 + n;
        }
    } else if (ci_prefix(*p, *left, "/labels/")) {
        size_t n = seg_len(*p + 8, *left - 8);
        if (n > 0) {
            r->label = pct_decode(&st->arena, *p + 8, n);
            *p += 8 + n;
            *left -= 8 + n;
        }
    }
}

/* Returns 0 with |r| filled, or answers the error itself and returns -1. */
static int route(struct tg_stream *st, struct rest *r)
{
    const char *p = st->path;
    size_t left = st->path_len;
    const char *digits = NULL;
    size_t ndigits = 0;
    int post = strcmp(st->method, "POST") == 0;
    char msg[300];

    if (post && ci_prefix(p, left, "/v1/models/")) {
        p += 11;
        left -= 11;
        size_t n = seg_len(p, left);
        if (n > 0) {
            r->name = pct_decode(&st->arena, p, n);
            p += n;
            left -= n;
            version_or_label(st, r, &p, &left, &digits, &ndigits);
            if (left > 1 && p[0] == ':') {
                const char *verb = p + 1;
                size_t vl = left - 1;
                /* the regex matches case-insensitively; the handler compares exactly */
                if (vl == 7 && memcmp(verb, "predict", 7) == 0)
                    r->kind = R_PREDICT;
                else if (vl == 8 && memcmp(verb, "classify", 8) == 0)
                    r->kind = R_CLASSIFY;
                else if (vl == 7 && memcmp(verb, "regress", 7) == 0)
                    r->kind = R_REGRESS;
                else
                    goto malformed;
                goto version;
            }
        }
        goto malformed;
    }
    if (!post && strcmp(st->method, "GET") == 0 && ci_prefix(p, left, "/v1/models")) {
        p += 10;
        left -= 10;
        r->kind = R_STATUS;
        r->name = "";
        if (left > 0 && p[0] == '/') {
            size_t n = seg_len(p + 1, left - 1);
            if (n == 0)
                goto malformed;
            r->name = pct_decode(&st->arena, p + 1, n);
            p += 1 + n;
            left -= 1 + n;
            version_or_label(st, r, &p, &left, &digits, &ndigits);
            if (left == 9 && strncasecmp(p, "/metadata", 9) == 0) {
                /* ".../METADATA" matches the pattern but is a status request (§3.2) */
                if (memcmp(p, "/metadata", 9) == 0)
                    r->kind = R_METADATA;
                left = 0;
            }
        }
        if (left != 0)
            goto malformed;
        if (r->name[0] == '\0') {
            respond_error(st, 400, "Missing model name in request.");
            return -1;
        }
        goto version;
    }
    goto malformed;

version:
    if (r->has_version) {
        char buf[32];
        char *end;
        if (ndigits >= sizeof(buf))
            goto overflow;
        memcpy(buf, digits, ndigits);
        buf[ndigits] = '\0';
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (errno == ERANGE)
            goto overflow;
        r->version = v;
    }
    return 0;
overflow:
    snprintf(msg, sizeof(msg), "Failed to convert version: %.*s to numeric.", (int)ndigits, digits);
    respond_error(st, 400, msg);
    return -1;
malformed:
    respond_malformed(st);
    return -1;
}

/* ---- backend calls ---- */

static void *arena_alloc_cb(void *data, size_t size)
{
    return tg_arena_alloc(data, size, 16);
}

static void arena_free_cb(void *data, void *p)
{
    (void)data;
    (void)p; /* freed with the arena */
}

#define UNPACK(st, type, fn, res)                                                                  \
    ({                                                                                             \
        ProtobufCAllocator al_ = {arena_alloc_cb, arena_free_cb, &(st)->arena};                    \
        (type *)fn(&al_, (res)->response_len, (res)->response);                                    \
    })

static Tensorflow__Serving__ModelSpec *model_spec(struct tg_stream *st, struct rest *r,
                                                  const char *sig)
{
    Tensorflow__Serving__ModelSpec *s = TG_ARENA_NEW(&st->arena, Tensorflow__Serving__ModelSpec);
    tensorflow__serving__model_spec__init(s);
    s->name = (char *)r->name;
    if (r->has_version) {
        Google__Protobuf__Int64Value *v = TG_ARENA_NEW(&st->arena, Google__Protobuf__Int64Value);
        google__protobuf__int64_value__init(v);
        v->value = r->version; /* 0 too: the wrapper stays present (bytes 12 00) */
        s->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        s->version = v;
    } else if (r->label != NULL) {
        s->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL;
        s->version_label = (char *)r->label;
    }
    s->signature_name = (char *)(sig ? sig : "");
    return s;
}

static void on_call_done(struct tg_upstream_call *call, void *user)
{
    struct tg_stream *st = user;
    struct rest *r = st->hdata;
    r->in_flight = 0;
    st->upstream_pool = r->d.req.pool->cfg->name;
    st->upstream_device = r->d.req.pool->cfg->device;
    tg_stream_note_upstream(st, call, r->d.started_ms);
    if (st->conn != NULL) /* else the client left: nothing to answer */
        r->next(st, r, &call->result);
    tg_stream_unref(st); /* the call's reference */
}

/* Packs |msg| and calls |method| on the model's pool; |next| runs with the result. */
static void call_backend(struct tg_stream *st, struct rest *r, enum tg_grpc_method method,
                         const ProtobufCMessage *msg, next_step *next)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (r->route->max_request_bytes && len > r->route->max_request_bytes) {
        struct tg_request_size size = {-1, 0, len};
        char text[400];
        tg_admission_check(r->route, r->name, &size, text, sizeof(text));
        respond_error(st, 413, text);
        return;
    }
    uint8_t *buf = tg_arena_alloc(&st->arena, len + 1, 8);
    protobuf_c_message_pack(msg, buf);
    /* metadata: the request id, the trace context, and the caller's forwarded claims */
    size_t n_fw = st->gen->config->auth.n_forward, n_md = 2;
    struct tg_md *md = tg_arena_alloc(&st->arena, (n_fw + 2) * sizeof(*md), _Alignof(struct tg_md));
    md[0].name = "x-request-id";
    md[0].name_len = 12;
    md[0].value = tg_stream_request_id(st, &md[0].value_len);
    md[1].name = "traceparent";
    md[1].name_len = 11;
    md[1].value = tg_stream_traceparent(st);
    md[1].value_len = strlen(md[1].value);
    n_md += tg_auth_forward_md(st, md + 2, n_fw);
    struct tg_upstream_req req = {
        .pool = r->pool,
        .method = method,
        .md = md,
        .n_md = n_md,
        .message = buf,
        .message_len = len,
        .timeout_ms = r->route->timeout_ms ? r->route->timeout_ms : st->limits->default_deadline_ms,
        .model = r->name,
        .has_version = r->has_version,
        .version = r->version,
    };
    char why[300];
    int rv = tg_dispatch_start(&r->d, st->w, r->route, r->batch, &req, &st->arena, on_call_done, st,
                               why, sizeof(why));
    if (rv != TG_DISPATCH_STARTED) {
        if (rv == TG_DISPATCH_SATURATED)
            tg_stream_add_resp_header(st, "retry-after", "1", 1);
        respond_error(st, rv == TG_DISPATCH_SATURATED ? 429 : 504, why);
        return;
    }
    r->next = next;
    r->in_flight = 1;
    tg_stream_ref(st);
}

/* A failed backend call: TF Serving's code -> HTTP table (§3.11), or 503 naming the pool. */
static int call_failed(struct tg_stream *st, struct rest *r, const struct tg_upstream_result *res)
{
    if (res->status == GRPC_STATUS_OK)
        return 0;
    if (res->transport_failure) {
        size_t cap = res->message_len + 512;
        char *m = tg_arena_alloc(&st->arena, cap, 1);
        snprintf(m, cap, "tfgate: upstream pool '%s' (%s) replica %s unavailable: %s",
                 r->pool->cfg->name, r->pool->cfg->device,
                 res->replica ? res->replica->target : "(none)", res->message);
        respond_error(st, 503, m);
    } else {
        respond_grpc_error(st, res->status, res->message);
    }
    return -1;
}

/* ---- the signature cache: per worker (no locks), bounded, with a short lifetime ---- */

struct sig_entry {
    char *name;
    struct tg_tj_signature sig; /* inputs sorted by alias; strings owned */
};

struct meta_entry {
    char key[512]; /* "model\0version-or-label" */
    uint64_t expires_ms;
    int64_t version; /* the version the signatures came from; -1 unknown */
    size_t n_sigs;
    struct sig_entry *sigs;
};

struct tg_rest_cache {
    size_t n;
    struct meta_entry e[META_MAX];
};

static void entry_free(struct meta_entry *m)
{
    for (size_t i = 0; i < m->n_sigs; i++) {
        for (size_t k = 0; k < m->sigs[i].sig.n_inputs; k++)
            free((char *)m->sigs[i].sig.inputs[k].alias);
        free(m->sigs[i].sig.inputs);
        free(m->sigs[i].name);
    }
    free(m->sigs);
    memset(m, 0, sizeof(*m));
}

void tg_rest_cache_free(struct tg_worker *w)
{
    struct tg_rest_cache *c = w->rest_cache;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        entry_free(&c->e[i]);
    free(c);
    w->rest_cache = NULL;
}

void tg_rest_cache_expire(struct tg_worker *w)
{
    struct tg_rest_cache *c = w->rest_cache;
    for (size_t i = 0; c != NULL && i < c->n; i++)
        c->e[i].expires_ms = 0;
}

static struct meta_entry *cache_find(struct tg_worker *w, const char *key)
{
    struct tg_rest_cache *c = w->rest_cache;
    uint64_t now = tg_worker_now(w);
    for (size_t i = 0; c != NULL && i < c->n; i++) {
        if (strcmp(c->e[i].key, key) == 0)
            return c->e[i].expires_ms > now ? &c->e[i] : NULL;
    }
    return NULL;
}

/* Forgets |key|'s signatures, so the next request fetches them again. */
static void cache_drop(struct tg_worker *w, const char *key)
{
    struct tg_rest_cache *c = w->rest_cache;
    for (size_t i = 0; c != NULL && i < c->n; i++) {
        if (strcmp(c->e[i].key, key) == 0)
            c->e[i].expires_ms = 0;
    }
}

static struct meta_entry *cache_put(struct tg_worker *w, const char *key,
                                    const Tensorflow__Serving__SignatureDefMap *map,
                                    int64_t version)
{
    struct tg_rest_cache *c = w->rest_cache;
    if (c == NULL)
        c = w->rest_cache = tg_xcalloc(1, sizeof(*c));
    struct meta_entry *m = NULL;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->e[i].key, key) == 0)
            m = &c->e[i];
    }
    if (m == NULL && c->n < META_MAX)
        m = &c->e[c->n++];
    if (m == NULL) { /* full: replace the entry closest to expiry */
        m = &c->e[0];
        for (size_t i = 1; i < c->n; i++) {
            if (c->e[i].expires_ms < m->expires_ms)
                m = &c->e[i];
        }
    }
    entry_free(m);
    snprintf(m->key, sizeof(m->key), "%s", key);
    m->expires_ms = tg_worker_now(w) + META_TTL_MS;
    m->version = version;
    m->sigs = tg_xcalloc(map->n_signature_def + 1, sizeof(*m->sigs));
    for (size_t i = 0; i < map->n_signature_def; i++) {
        const Tensorflow__SignatureDef *sd = map->signature_def[i]->value;
        struct sig_entry *se = &m->sigs[m->n_sigs++];
        se->name = tg_xstrdup(map->signature_def[i]->key ? map->signature_def[i]->key : "");
        size_t n = sd ? sd->n_inputs : 0;
        se->sig.inputs = tg_xcalloc(n + 1, sizeof(*se->sig.inputs));
        for (size_t k = 0; k < n; k++) {
            se->sig.inputs[k].alias = tg_xstrdup(sd->inputs[k]->key ? sd->inputs[k]->key : "");
            se->sig.inputs[k].dtype = sd->inputs[k]->value ? sd->inputs[k]->value->dtype : 0;
        }
        se->sig.n_inputs = n;
        tg_tj_sort_inputs(&se->sig);
    }
    return m;
}

/* The SignatureDefMap inside a GetModelMetadataResponse, or NULL. */
static Tensorflow__Serving__SignatureDefMap *
sigmap_of(struct tg_stream *st, const Tensorflow__Serving__GetModelMetadataResponse *resp)
{
    for (size_t i = 0; resp != NULL && i < resp->n_metadata; i++) {
        const Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry *e = resp->metadata[i];
        if (e->key && strcmp(e->key, "signature_def") == 0 && e->value != NULL) {
            ProtobufCAllocator al = {arena_alloc_cb, arena_free_cb, &st->arena};
            return tensorflow__serving__signature_def_map__unpack(&al, e->value->value.len,
                                                                  e->value->value.data);
        }
    }
    return NULL;
}

/* ---- access (auth.h): the same rules as the equivalent gRPC call ---- */

/* The RBAC method (auth.h) of each REST request kind, for access rules, metrics and logs. */
static const uint32_t kind_am[] = {
    [R_PREDICT] = TG_AM_PREDICT, [R_CLASSIFY] = TG_AM_CLASSIFY, [R_REGRESS] = TG_AM_REGRESS,
    [R_STATUS] = TG_AM_STATUS,   [R_METADATA] = TG_AM_METADATA,
};

static int authorize(struct tg_stream *st, struct rest *r)
{
    int has_sig = r->kind == R_PREDICT || r->kind == R_CLASSIFY || r->kind == R_REGRESS;
    struct tg_auth_target t = {
        r->name,         r->has_version, r->version, r->label, has_sig ? r->signature : NULL,
        kind_am[r->kind]};
    return tg_auth_authorize(st, &t);
}

/* ---- the body (§3.3 steps 2-4) ---- */

/* The slow path: the whole body as a DOM, then the checks that come before any lookup. Called
 * when the request arrives, or later when the fast path declines a body it scanned (the fast
 * scan accepts only bodies that pass these checks, so the order of errors is the same).
 * Returns 0, or -1 after answering. */
static int parse_body(struct tg_stream *st, struct rest *r)
{
    struct tg_json_error jerr;
    if (tg_json_parse(r->text, r->text_len, &st->arena, JSON_MAX_DEPTH, &r->body, &jerr) != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "JSON Parse error: %s at offset: %zu", jerr.message,
                 jerr.offset);
        respond_error(st, 400, msg);
        return -1;
    }
    if (r->body->type != TG_JOBJECT) {
        const char *doc = tg_json_debug(r->body, &st->arena);
        size_t cap = strlen(doc) + 64;
        char *msg = tg_arena_alloc(&st->arena, cap, 1);
        snprintf(msg, cap, "JSON Value: %s Is not object", doc);
        respond_error(st, 400, msg);
        return -1;
    }
    const struct tg_jval *sig = tg_json_get(r->body, "signature_name", 14);
    if (sig != NULL) {
        if (sig->type != TG_JSTRING) {
            const char *doc = tg_json_debug(r->body, &st->arena);
            size_t cap = strlen(doc) + 128;
            char *msg = tg_arena_alloc(&st->arena, cap, 1);
            snprintf(msg, cap,
                     "JSON Value: %s not formatted correctly. 'signature_name' key must be a "
                     "string value.",
                     doc);
            respond_error(st, 400, msg);
            return -1;
        }
        r->signature = sig->u.str;
        r->has_signature = 1;
    }
    return 0;
}

/* ---- predict (§3.3) ---- */

static void predict_done(struct tg_stream *st, struct rest *r, const struct tg_upstream_result *res)
{
    struct tg_tj_error err;
    char *text;
    size_t len;
    if (!res->transport_failure && res->status == GRPC_STATUS_INVALID_ARGUMENT)
        cache_drop(st->w, r->cache_key); /* maybe our dtypes are stale: look again next time */
    if (call_failed(st, r, res) != 0)
        return;
    Tensorflow__Serving__PredictResponse *resp =
        UNPACK(st, Tensorflow__Serving__PredictResponse,
               tensorflow__serving__predict_response__unpack, res);
    if (resp == NULL) {
        respond_error(st, 500, "tfgate: the backend's PredictResponse does not parse");
        return;
    }
    /* a version other than the one our signatures came from: a new version was loaded, so
     * refresh before the next request rather than when the lifetime ends */
    if (resp->model_spec && resp->model_spec->version && r->sig_version >= 0 &&
        resp->model_spec->version->value != r->sig_version)
        cache_drop(st->w, r->cache_key);
    if (tg_tj_encode_predict(&st->arena, resp, r->row, &text, &len, &err) != 0) {
        respond_grpc_error(st, err.code, err.message);
        return;
    }
    if (resp->model_spec && resp->model_spec->version) {
        char v[24];
        snprintf(v, sizeof(v), "%lld", (long long)resp->model_spec->version->value);
        tg_stream_add_resp_header(st, "x-tfgate-model-version", v, strlen(v));
    }
    respond_json(st, 200, text, len);
}

static void predict_with_signature(struct tg_stream *st, struct rest *r, const struct meta_entry *m)
{
    const char *want = r->signature[0] ? r->signature : "serving_default";
    const struct sig_entry *se = NULL;
    r->sig_version = m->version;
    struct tg_tj_error err;
    char msg[600];

    for (size_t i = 0; i < m->n_sigs; i++) {
        if (strcmp(m->sigs[i].name, want) == 0)
            se = &m->sigs[i];
    }
    if (se == NULL) {
        snprintf(msg, sizeof(msg), "Serving signature name: \"%.400s\" not found in signature def",
                 want);
        respond_error(st, 400, msg);
        return;
    }
    if (se->sig.n_inputs == 0) {
        snprintf(msg, sizeof(msg), "Failed to get input map for signature: %.400s",
                 r->signature[0] ? r->signature : "DEFAULT");
        respond_error(st, 400, msg);
        return;
    }
    Tensorflow__Serving__PredictRequest *req =
        TG_ARENA_NEW(&st->arena, Tensorflow__Serving__PredictRequest);
    tensorflow__serving__predict_request__init(req);
    if (r->fast != NULL && tg_tjf_decode(&st->arena, r->fast, &se->sig, req)) {
        r->row = r->fast->row;
    } else {
        if (r->body == NULL && parse_body(st, r) != 0)
            return;
        if (tg_tj_decode_predict(&st->arena, r->body, &se->sig, req, &r->row, &err) != 0) {
            respond_grpc_error(st, err.code, err.message);
            return;
        }
    }
    if (r->route->max_batch || r->route->max_elements || r->route->batch_pool) {
        struct tg_request_size size;
        char text[400];
        tg_admission_of_predict(req, &size);
        r->batch = size.batch;
        if (tg_admission_check(r->route, r->name, &size, text, sizeof(text)) != TG_ADMIT) {
            respond_error(st, 400, text);
            return;
        }
    }
    /* as TF Serving builds it: name, version or label from the URL, the body's signature_name
     * (empty when the body had none), no output_filter (§7) */
    req->model_spec = model_spec(st, r, r->signature);
    call_backend(st, r, TG_GM_PREDICT, &req->base, predict_done);
}

static void metadata_for_predict(struct tg_stream *st, struct rest *r,
                                 const struct tg_upstream_result *res)
{
    if (call_failed(st, r, res) != 0)
        return; /* not found, bad label: the same texts TF Serving's lookup gives (§7) */
    Tensorflow__Serving__GetModelMetadataResponse *resp =
        UNPACK(st, Tensorflow__Serving__GetModelMetadataResponse,
               tensorflow__serving__get_model_metadata_response__unpack, res);
    Tensorflow__Serving__SignatureDefMap *map = sigmap_of(st, resp);
    if (map == NULL) {
        respond_error(st, 500, "tfgate: the backend's model metadata has no signature_def");
        return;
    }
    int64_t version =
        resp->model_spec && resp->model_spec->version ? resp->model_spec->version->value : -1;
    predict_with_signature(st, r, cache_put(st->w, r->cache_key, map, version));
}

static Tensorflow__Serving__GetModelMetadataRequest *metadata_request(struct tg_stream *st,
                                                                      struct rest *r)
{
    static char *fields[] = {"signature_def"};
    Tensorflow__Serving__GetModelMetadataRequest *req =
        TG_ARENA_NEW(&st->arena, Tensorflow__Serving__GetModelMetadataRequest);
    tensorflow__serving__get_model_metadata_request__init(req);
    req->model_spec = model_spec(st, r, NULL); /* no signature: the whole map */
    req->n_metadata_field = 1;
    req->metadata_field = fields;
    return req;
}

static void start_predict(struct tg_stream *st, struct rest *r)
{
    /* the name's length first, so no name can run into the version part */
    if (r->has_version)
        snprintf(r->cache_key, sizeof(r->cache_key), "%zu:%s/v%lld", strlen(r->name), r->name,
                 (long long)r->version);
    else if (r->label)
        snprintf(r->cache_key, sizeof(r->cache_key), "%zu:%s/l%s", strlen(r->name), r->name,
                 r->label);
    else
        snprintf(r->cache_key, sizeof(r->cache_key), "%zu:%s/latest", strlen(r->name), r->name);
    struct meta_entry *m = cache_find(st->w, r->cache_key);
    if (m != NULL) {
        predict_with_signature(st, r, m);
        return;
    }
    call_backend(st, r, TG_GM_GET_MODEL_METADATA, &metadata_request(st, r)->base,
                 metadata_for_predict);
}

/* ---- classify / regress (§3.9) ---- */

static void classify_done(struct tg_stream *st, struct rest *r,
                          const struct tg_upstream_result *res)
{
    struct tg_tj_error err;
    char *text;
    size_t len;
    int rv;
    if (call_failed(st, r, res) != 0)
        return;
    if (r->kind == R_CLASSIFY) {
        Tensorflow__Serving__ClassificationResponse *resp =
            UNPACK(st, Tensorflow__Serving__ClassificationResponse,
                   tensorflow__serving__classification_response__unpack, res);
        rv = resp ? tg_tj_encode_classify(&st->arena, resp->result, &text, &len, &err) : -2;
    } else {
        Tensorflow__Serving__RegressionResponse *resp =
            UNPACK(st, Tensorflow__Serving__RegressionResponse,
                   tensorflow__serving__regression_response__unpack, res);
        rv = resp ? tg_tj_encode_regress(&st->arena, resp->result, &text, &len, &err) : -2;
    }
    if (rv == -2)
        respond_error(st, 500, "tfgate: the backend's answer does not parse");
    else if (rv != 0)
        respond_grpc_error(st, err.code, err.message);
    else
        respond_json(st, 200, text, len);
}

static void start_classify(struct tg_stream *st, struct rest *r)
{
    struct tg_tj_error err;
    Tensorflow__Serving__Input *input = TG_ARENA_NEW(&st->arena, Tensorflow__Serving__Input);
    /* classify and regress convert the body before any model lookup (§3.9) */
    if (tg_tj_decode_examples(&st->arena, r->body, input, &err) != 0) {
        respond_grpc_error(st, err.code, err.message);
        return;
    }
    if (r->kind == R_CLASSIFY) {
        Tensorflow__Serving__ClassificationRequest *req =
            TG_ARENA_NEW(&st->arena, Tensorflow__Serving__ClassificationRequest);
        tensorflow__serving__classification_request__init(req);
        req->model_spec = model_spec(st, r, r->signature);
        req->input = input;
        call_backend(st, r, TG_GM_CLASSIFY, &req->base, classify_done);
    } else {
        Tensorflow__Serving__RegressionRequest *req =
            TG_ARENA_NEW(&st->arena, Tensorflow__Serving__RegressionRequest);
        tensorflow__serving__regression_request__init(req);
        req->model_spec = model_spec(st, r, r->signature);
        req->input = input;
        call_backend(st, r, TG_GM_REGRESS, &req->base, classify_done);
    }
}

/* ---- status and metadata: protobuf's JSON (§3.10), built with jansson ---- */

static const char *enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? v->name : "UNKNOWN";
}

static json_t *int64_str(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return json_string(buf);
}

static void respond_jansson(struct tg_stream *st, json_t *root)
{
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text == NULL) {
        respond_error(st, 500, "tfgate: cannot write the answer");
        return;
    }
    respond_json(st, 200, text, strlen(text));
    free(text);
}

static void status_done(struct tg_stream *st, struct rest *r, const struct tg_upstream_result *res)
{
    if (call_failed(st, r, res) != 0)
        return;
    Tensorflow__Serving__GetModelStatusResponse *resp =
        UNPACK(st, Tensorflow__Serving__GetModelStatusResponse,
               tensorflow__serving__get_model_status_response__unpack, res);
    if (resp == NULL) {
        respond_error(st, 500, "tfgate: the backend's GetModelStatusResponse does not parse");
        return;
    }
    json_t *root = json_object(), *list = json_array();
    for (size_t i = 0; i < resp->n_model_version_status; i++) {
        const Tensorflow__Serving__ModelVersionStatus *v = resp->model_version_status[i];
        json_t *o = json_object(), *s = json_object();
        json_object_set_new(o, "version", int64_str(v->version));
        json_object_set_new(
            o, "state",
            json_string(enum_name(&tensorflow__serving__model_version_status__state__descriptor,
                                  v->state)));
        json_object_set_new(s, "error_code",
                            json_string(enum_name(&tensorflow__error__code__descriptor,
                                                  v->status ? v->status->error_code : 0)));
        json_object_set_new(
            s, "error_message",
            json_string(v->status && v->status->error_message ? v->status->error_message : ""));
        json_object_set_new(o, "status", s);
        json_array_append_new(list, o);
    }
    json_object_set_new(root, "model_version_status", list);
    respond_jansson(st, root);
}

static json_t *shape_json(const Tensorflow__TensorShapeProto *sh)
{
    json_t *o = json_object(), *dims = json_array();
    for (size_t i = 0; i < sh->n_dim; i++) {
        json_t *d = json_object();
        json_object_set_new(d, "size", int64_str(sh->dim[i]->size));
        json_object_set_new(d, "name", json_string(sh->dim[i]->name ? sh->dim[i]->name : ""));
        json_array_append_new(dims, d);
    }
    json_object_set_new(o, "dim", dims);
    json_object_set_new(o, "unknown_rank", json_boolean(sh->unknown_rank));
    return o;
}

static json_t *tensor_info_json(const Tensorflow__TensorInfo *ti)
{
    json_t *o = json_object();
    json_object_set_new(o, "dtype",
                        json_string(enum_name(&tensorflow__data_type__descriptor, ti->dtype)));
    if (ti->tensor_shape != NULL) /* absent shapes print nothing (half_plus_three) */
        json_object_set_new(o, "tensor_shape", shape_json(ti->tensor_shape));
    if (ti->encoding_case == TENSORFLOW__TENSOR_INFO__ENCODING_NAME)
        json_object_set_new(o, "name", json_string(ti->name ? ti->name : ""));
    else if (ti->encoding_case == TENSORFLOW__TENSOR_INFO__ENCODING_COO_SPARSE && ti->coo_sparse) {
        json_t *c = json_object();
        json_object_set_new(c, "values_tensor_name",
                            json_string(ti->coo_sparse->values_tensor_name));
        json_object_set_new(c, "indices_tensor_name",
                            json_string(ti->coo_sparse->indices_tensor_name));
        json_object_set_new(c, "dense_shape_tensor_name",
                            json_string(ti->coo_sparse->dense_shape_tensor_name));
        json_object_set_new(o, "coo_sparse", c);
    }
    return o;
}

static json_t *tensor_json(const Tensorflow__TensorProto *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "dtype",
                        json_string(enum_name(&tensorflow__data_type__descriptor, t->dtype)));
    if (t->tensor_shape)
        json_object_set_new(o, "tensor_shape", shape_json(t->tensor_shape));
    json_object_set_new(o, "version_number", json_integer(t->version_number));
    json_t *fv = json_array();
    for (size_t i = 0; i < t->n_float_val; i++)
        json_array_append_new(fv, json_real(t->float_val[i]));
    json_object_set_new(o, "float_val", fv);
    json_t *iv = json_array();
    for (size_t i = 0; i < t->n_int64_val; i++)
        json_array_append_new(iv, int64_str(t->int64_val[i]));
    json_object_set_new(o, "int64_val", iv);
    return o;
}

static void metadata_done(struct tg_stream *st, struct rest *r,
                          const struct tg_upstream_result *res)
{
    if (call_failed(st, r, res) != 0)
        return;
    Tensorflow__Serving__GetModelMetadataResponse *resp =
        UNPACK(st, Tensorflow__Serving__GetModelMetadataResponse,
               tensorflow__serving__get_model_metadata_response__unpack, res);
    Tensorflow__Serving__SignatureDefMap *map = sigmap_of(st, resp);
    if (map == NULL) {
        respond_error(st, 500, "tfgate: the backend's model metadata has no signature_def");
        return;
    }
    json_t *root = json_object(), *spec = json_object(), *sigs = json_object();
    const Tensorflow__Serving__ModelSpec *ms = resp->model_spec;
    json_object_set_new(spec, "name", json_string(ms && ms->name ? ms->name : r->name));
    json_object_set_new(spec, "signature_name",
                        json_string(ms && ms->signature_name ? ms->signature_name : ""));
    if (ms && ms->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION &&
        ms->version)
        json_object_set_new(spec, "version", int64_str(ms->version->value));
    for (size_t i = 0; i < map->n_signature_def; i++) {
        const Tensorflow__SignatureDef *sd = map->signature_def[i]->value;
        json_t *o = json_object(), *in = json_object(), *out = json_object(), *defs = json_object();
        for (size_t k = 0; sd && k < sd->n_inputs; k++)
            json_object_set_new(in, sd->inputs[k]->key, tensor_info_json(sd->inputs[k]->value));
        for (size_t k = 0; sd && k < sd->n_outputs; k++)
            json_object_set_new(out, sd->outputs[k]->key, tensor_info_json(sd->outputs[k]->value));
        for (size_t k = 0; sd && k < sd->n_defaults; k++)
            json_object_set_new(defs, sd->defaults[k]->key, tensor_json(sd->defaults[k]->value));
        json_object_set_new(o, "inputs", in);
        json_object_set_new(o, "outputs", out);
        json_object_set_new(o, "method_name",
                            json_string(sd && sd->method_name ? sd->method_name : ""));
        json_object_set_new(o, "defaults", defs);
        json_object_set_new(sigs, map->signature_def[i]->key ? map->signature_def[i]->key : "", o);
    }
    json_t *inner = json_object(), *meta = json_object();
    json_object_set_new(inner, "signature_def", sigs);
    json_object_set_new(meta, "signature_def", inner);
    json_object_set_new(root, "model_spec", spec);
    json_object_set_new(root, "metadata", meta);
    respond_jansson(st, root);
}

/* ---- the handler ---- */

/* A gzip-encoded body is inflated (within the body limit); a body that does not inflate
 * becomes empty, as in TF Serving (§3.1). */
static void maybe_gunzip(struct tg_stream *st, const uint8_t **body, size_t *len)
{
    const struct tg_header *ce = tg_stream_header(st, "content-encoding");
    if (ce == NULL || strstr(ce->value, "gzip") == NULL)
        return;
    const uint8_t *out;
    size_t out_len;
    if (tg_inflate(&st->arena, *body, *len, 1, st->limits->max_body_bytes, &out, &out_len) != 0) {
        *body = (const uint8_t *)"";
        *len = 0;
        return;
    }
    *body = out;
    *len = out_len;
}

/* The request is allowed: on to the backend. Also the continuation of a rate-limit check
 * that waited for Redis. */
static void proceed(struct tg_stream *st)
{
    struct rest *r = st->hdata;
    /* a canary label for a request that names no version or label; after authorization, which
     * judged what the client asked for */
    if (r->kind != R_STATUS && r->kind != R_METADATA && !r->has_version && r->label == NULL)
        r->label = tg_dispatch_canary(r->route, st);
    switch (r->kind) {
    case R_STATUS: {
        Tensorflow__Serving__GetModelStatusRequest *req =
            TG_ARENA_NEW(&st->arena, Tensorflow__Serving__GetModelStatusRequest);
        tensorflow__serving__get_model_status_request__init(req);
        req->model_spec = model_spec(st, r, NULL); /* the label is sent; TF Serving ignores it */
        call_backend(st, r, TG_GM_GET_MODEL_STATUS, &req->base, status_done);
        return;
    }
    case R_METADATA:
        call_backend(st, r, TG_GM_GET_MODEL_METADATA, &metadata_request(st, r)->base,
                     metadata_done);
        return;
    case R_PREDICT:
        start_predict(st, r);
        return;
    default:
        start_classify(st, r);
        return;
    }
}

/* Access (auth.h) and rate limits (ratelimit.h), then proceed: the same steps as a gRPC call's.
 * An anonymous caller was already decided by the model alone. */
static void admit(struct tg_stream *st, struct rest *r)
{
    if (r->kind == R_PREDICT || r->kind == R_CLASSIFY || r->kind == R_REGRESS) {
        const struct tg_route_cfg *route;
        struct tg_route_query q = {r->name,      r->has_version,         r->version, r->label,
                                   r->signature, tg_stream_header_value, st};
        struct tg_pool *pool = tg_pools_match(st->gen->pools, st->gen->config, &q, &route);
        if (pool != NULL) {
            r->pool = pool;
            r->route = route;
        }
    }
    if (st->identity != NULL && !st->identity->anonymous && authorize(st, r) != 0)
        return;
    if (tg_ratelimit_check(st, r->name, proceed) == 0)
        proceed(st);
}

static void on_request(struct tg_stream *st)
{
    struct rest *r = TG_ARENA_NEW(&st->arena, struct rest);
    st->hdata = r;
    r->batch = -1;

    if (strcmp(st->method, "OPTIONS") == 0) { /* CORS preflight, before routing (§3.1) */
        const struct tg_header *o = tg_stream_header(st, "origin");
        int ok = o && (strstr(o->value, "http://") || strstr(o->value, "https://"));
        tg_stream_respond_http(st, ok ? 200 : 400, NULL, NULL, 0);
        return;
    }
    if (route(st, r) != 0)
        return;
    st->metric_model = r->name;
    st->metric_method = kind_am[r->kind];
    st->version =
        r->has_version ? tg_arena_sprintf(&st->arena, "%lld", (long long)r->version) : r->label;
    r->signature = "";
    /* an anonymous caller is decided by the model alone, before its body is looked at; the
     * others once the body names the signature */
    if (st->identity != NULL && st->identity->anonymous && authorize(st, r) != 0)
        return;
    /* the signature is not known before the body is read: routes by signature are settled in
     * admit() */
    struct tg_route_query q = {r->name, r->has_version,         r->version, r->label,
                               NULL,    tg_stream_header_value, st};
    r->pool = tg_pools_match(st->gen->pools, st->gen->config, &q, &r->route);
    if (r->pool == NULL) {
        char msg[300];
        snprintf(msg, sizeof(msg), "tfgate: no route for model '%.200s'", r->name);
        respond_error(st, 404, msg);
        return;
    }
    if (r->kind == R_STATUS || r->kind == R_METADATA) {
        admit(st, r);
        return;
    }

    /* POST: the body (§3.3 step 2-3) */
    const uint8_t *body = tg_buf_data(&st->body);
    size_t len = tg_buf_size(&st->body);
    maybe_gunzip(st, &body, &len);
    if (len == 0) {
        respond_error(st, 400, "JSON Parse error: The document is empty");
        return;
    }
    r->text = (const char *)body;
    r->text_len = len;
    if (r->kind == R_PREDICT) {
        r->fast = TG_ARENA_NEW(&st->arena, struct tg_tjf_body);
        if (tg_tjf_scan(&st->arena, r->text, r->text_len, r->fast)) {
            r->signature = r->fast->signature_name ? r->fast->signature_name : "";
            r->has_signature = r->fast->signature_name != NULL;
            admit(st, r);
            return;
        }
        r->fast = NULL;
    }
    if (parse_body(st, r) != 0)
        return;
    admit(st, r);
}

static void on_close(struct tg_stream *st)
{
    struct rest *r = st->hdata;
    if (r != NULL && r->in_flight)
        tg_dispatch_cancel(&r->d);
}

const struct tg_handler tg_rest_handler = {"rest", body_limit, on_request, on_close, 1};
