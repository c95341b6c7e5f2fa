/*
 * metrics.c - see metrics.h.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfgate/arena.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/jwt.h"
#include "tfgate/metrics.h"
#include "tfgate/pool.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

#define MAX_SERIES 4096
#define MAX_HIST   512
#define INDEX_SIZE 8192 /* power of two, > 2 x MAX_SERIES */
#define N_BUCKETS  14

static const double bucket_le[N_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const char *const method_names[] = {"other",           "predict",  "classify", "regress",
                                           "multi_inference", "metadata", "status",   "reload"};

/* a pool as a label pair (name, device), interned in the shard */
struct plabel {
    char *name;
    char *device;
};

static const struct plabel no_pool = {"_none", "_none"};

struct series {
    uint8_t grpc;
    uint8_t method;
    int code;
    const char *model; /* interned in the shard */
    const struct plabel *pool;
    atomic_ullong count;
};

struct hseries {
    uint8_t grpc;
    uint8_t upstream; /* 0: the whole request, 1: its time upstream */
    const char *model;
    const struct plabel *pool;
    atomic_ullong buckets[N_BUCKETS]; /* not cumulative: summed at render */
    atomic_ullong sum_us;
    atomic_ullong count;
};

struct tg_metrics_shard {
    struct series req[MAX_SERIES];
    atomic_size_t n_req;
    struct hseries lat[MAX_HIST];
    atomic_size_t n_lat;
    int32_t req_index[INDEX_SIZE]; /* the worker's own: key hash -> series + 1 */
    int32_t lat_index[INDEX_SIZE];
    char *models[TG_METRICS_MAX_MODELS + 64];
    size_t n_models;
    struct plabel pools[TG_METRICS_MAX_POOLS];
    size_t n_pools;
    /* bytes by protocol (rest, grpc); connections by kind (enum conn_kind) */
    atomic_ullong bytes_in[2], bytes_out[2];
    atomic_llong conns_open[4];
    atomic_ullong conns_total[4];
};

/* a connection's kind: its protocol and whether it is TLS */
static const char *const conn_protocols[4] = {"http1.1", "http1.1", "http2", "http2"};
static const char *const conn_tls[4] = {"false", "true", "false", "true"};

static atomic_ullong events[TG_EV_COUNT];
/* model names made labels from traffic, over all workers: the cap is the process's */
static atomic_uint seen_models;

void tg_metrics_event(enum tg_metric_event ev)
{
    atomic_fetch_add_explicit(&events[ev], 1, memory_order_relaxed);
}

_Static_assert(TG_AR_COUNT == TG_AR_JWT + TG_JWT_EAUD + 1, "a JWT status without a label");
static atomic_ullong refusals[TG_AR_COUNT];
static atomic_int last_reload_ok = 1;

void tg_metrics_reload(int ok)
{
    tg_metrics_event(ok ? TG_EV_RELOAD_OK : TG_EV_RELOAD_FAILED);
    atomic_store(&last_reload_ok, ok != 0);
}
/* label values, in enum tg_auth_refusal order and then enum tg_jwt_status's */
static const char *const refusal_names[TG_AR_COUNT] = {
    "missing_token", "bad_authorization", "keys_unavailable", "denied",
    "token_ok",      "token_too_large",   "malformed_token",  "algorithm_not_accepted",
    "unknown_key",   "bad_signature",     "no_exp",           "expired",
    "not_yet_valid", "wrong_issuer",      "wrong_audience",
};

void tg_metrics_auth_refusal(int reason)
{
    if (reason < 0 || reason >= TG_AR_COUNT)
        return;
    atomic_fetch_add_explicit(&refusals[reason], 1, memory_order_relaxed);
    tg_metrics_event(reason == TG_AR_MISSING_TOKEN      ? TG_EV_AUTH_MISSING
                     : reason == TG_AR_KEYS_UNAVAILABLE ? TG_EV_AUTH_NOKEYS
                     : reason == TG_AR_DENIED           ? TG_EV_AUTH_DENIED
                                                        : TG_EV_AUTH_INVALID);
}

void tg_metrics_shard_new(struct tg_worker *w, const struct tg_config *c)
{
    struct tg_metrics_shard *s = tg_xcalloc(1, sizeof(*s));
    /* models routed by name are labels from the start */
    for (size_t i = 0; i < c->n_routes && s->n_models < TG_METRICS_MAX_MODELS + 64; i++) {
        if (strpbrk(c->routes[i].model, "*?[") == NULL)
            s->models[s->n_models++] = tg_xstrdup(c->routes[i].model);
    }
    w->metrics = s;
}

void tg_metrics_shard_free(struct tg_worker *w)
{
    struct tg_metrics_shard *s = w->metrics;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_models; i++)
        free(s->models[i]);
    for (size_t i = 0; i < s->n_pools; i++) {
        free(s->pools[i].name);
        free(s->pools[i].device);
    }
    free(s);
    w->metrics = NULL;
}

/* The label value for |model|: interned, "_other" past the cap, "_none" without a model. */
static const char *model_label(struct tg_metrics_shard *s, const char *model)
{
    if (model == NULL || model[0] == '\0')
        return "_none";
    for (size_t i = 0; i < s->n_models; i++) {
        if (strcmp(s->models[i], model) == 0)
            return s->models[i];
    }
    if (s->n_models >= TG_METRICS_MAX_MODELS + 64 || strlen(model) > 200 ||
        atomic_fetch_add_explicit(&seen_models, 1, memory_order_relaxed) >= TG_METRICS_MAX_MODELS)
        return "_other";
    s->models[s->n_models] = tg_xstrdup(model);
    return s->models[s->n_models++];
}

/* The label pair for the pool named |name|: interned; pool names come from configurations (a
 * reload may add some), so the cap only guards against a configuration with very many. */
static const struct plabel *pool_label(struct tg_metrics_shard *s, const char *name,
                                       const char *device)
{
    if (name == NULL)
        return &no_pool;
    for (size_t i = 0; i < s->n_pools; i++) {
        if (strcmp(s->pools[i].name, name) == 0 && strcmp(s->pools[i].device, device) == 0)
            return &s->pools[i];
    }
    if (s->n_pools == TG_METRICS_MAX_POOLS)
        return &no_pool;
    s->pools[s->n_pools].name = tg_xstrdup(name);
    s->pools[s->n_pools].device = tg_xstrdup(device);
    return &s->pools[s->n_pools++];
}

static struct series *req_series(struct tg_metrics_shard *s, int grpc, int method, int code,
                                 const char *model, const struct plabel *pool)
{
    uint64_t h = tg_hash64(&model, sizeof(model)) ^ tg_hash64(&pool, sizeof(pool)) ^
                 (uint64_t)(grpc * 31 + method * 1009 + code);
    for (size_t k = 0; k < INDEX_SIZE; k++) {
        size_t slot = (h + k) & (INDEX_SIZE - 1);
        int32_t i = s->req_index[slot] - 1;
        if (i < 0) {
            size_t n = atomic_load_explicit(&s->n_req, memory_order_relaxed);
            if (n == MAX_SERIES)
                return NULL;
            struct series *x = &s->req[n];
            x->grpc = (uint8_t)grpc;
            x->method = (uint8_t)method;
            x->code = code;
            x->model = model;
            x->pool = pool;
            s->req_index[slot] = (int32_t)n + 1;
            atomic_store_explicit(&s->n_req, n + 1, memory_order_release); /* publish */
            return x;
        }
        struct series *x = &s->req[i];
        if (x->grpc == grpc && x->method == method && x->code == code && x->model == model &&
            x->pool == pool)
            return x;
    }
    return NULL;
}

static struct hseries *lat_series(struct tg_metrics_shard *s, int grpc, int upstream,
                                  const char *model, const struct plabel *pool)
{
    uint64_t h = tg_hash64(&model, sizeof(model)) ^ tg_hash64(&pool, sizeof(pool)) ^
                 (uint64_t)(grpc + 2 * upstream);
    for (size_t k = 0; k < INDEX_SIZE; k++) {
        size_t slot = (h + k) & (INDEX_SIZE - 1);
        int32_t i = s->lat_index[slot] - 1;
        if (i < 0) {
            size_t n = atomic_load_explicit(&s->n_lat, memory_order_relaxed);
            if (n == MAX_HIST)
                return NULL;
            struct hseries *x = &s->lat[n];
            x->grpc = (uint8_t)grpc;
            x->upstream = (uint8_t)upstream;
            x->model = model;
            x->pool = pool;
            s->lat_index[slot] = (int32_t)n + 1;
            atomic_store_explicit(&s->n_lat, n + 1, memory_order_release);
            return x;
        }
        struct hseries *x = &s->lat[i];
        if (x->grpc == grpc && x->upstream == upstream && x->model == model && x->pool == pool)
            return x;
    }
    return NULL;
}

static int method_index(uint32_t am)
{
    for (int i = 1; i < (int)TG_ARRAY_SIZE(method_names); i++) {
        if (am == 1u << (i - 1))
            return i;
    }
    return 0;
}

static void observe(struct hseries *h, uint64_t ms)
{
    if (h == NULL)
        return;
    double sec = (double)ms / 1000.0;
    int b = 0;
    while (b < N_BUCKETS && sec > bucket_le[b])
        b++;
    if (b < N_BUCKETS)
        atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, ms * 1000, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void tg_metrics_request(struct tg_stream *st)
{
    struct tg_metrics_shard *s = st->w->metrics;
    int grpc = tg_stream_is_grpc(st) && st->http2;
    int code = st->status;
    if (grpc) {
        for (size_t i = 0; i < st->n_trailers; i++) {
            if (strcmp(st->trailers[i].name, "grpc-status") == 0)
                code = atoi(st->trailers[i].value);
        }
    }
    if (st->conn == NULL)
        code = grpc ? 1 : 499; /* the client left first */
    const char *model = model_label(s, st->metric_model);
    const struct plabel *pool = pool_label(s, st->upstream_pool, st->upstream_device);
    struct series *x = req_series(s, grpc, method_index(st->metric_method), code, model, pool);
    if (x != NULL)
        atomic_fetch_add_explicit(&x->count, 1, memory_order_relaxed);
    observe(lat_series(s, grpc, 0, model, pool), tg_worker_now(st->w) - st->start_ms);
    if (st->upstream_pool != NULL)
        observe(lat_series(s, grpc, 1, model, pool), st->upstream_ms);
    atomic_fetch_add_explicit(&s->bytes_in[grpc], tg_buf_size(&st->body), memory_order_relaxed);
    atomic_fetch_add_explicit(&s->bytes_out[grpc], st->resp_body_len, memory_order_relaxed);
}

void tg_metrics_conn_open(struct tg_conn *c, int http2)
{
    struct tg_metrics_shard *s = c->w->metrics;
    int kind = 2 * (http2 != 0) + (c->ssl != NULL);
    c->metric_kind = kind + 1;
    atomic_fetch_add_explicit(&s->conns_open[kind], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->conns_total[kind], 1, memory_order_relaxed);
}

void tg_metrics_conn_close(struct tg_conn *c)
{
    if (c->metric_kind == 0)
        return;
    atomic_fetch_sub_explicit(&c->w->metrics->conns_open[c->metric_kind - 1], 1,
                              memory_order_relaxed);
    c->metric_kind = 0;
}

/* ---- rendering ---- */

struct out {
    char *p;
    size_t n, cap;
};

TG_PRINTF(2, 3)
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < o->cap - o->n) {
            o->n += (size_t)k;
            return;
        }
        o->cap = o->cap * 2 + (k > 0 ? (size_t)k : 0);
        o->p = tg_xrealloc(o->p, o->cap);
    }
}

/* A label value with \, " and newline escaped (exposition format). */
static const char *esc(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            buf[n++] = '\\';
            buf[n++] = *s;
        } else if (*s == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

static int cmp_pool(const struct plabel *x, const struct plabel *y)
{
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->device, y->device);
}

static int cmp_series(const void *a, const void *b)
{
    const struct series *x = *(const struct series *const *)a,
                        *y = *(const struct series *const *)b;
    int c = x->grpc - y->grpc;
    if (c == 0)
        c = strcmp(x->model, y->model);
    if (c == 0)
        c = cmp_pool(x->pool, y->pool);
    if (c == 0)
        c = x->method - y->method;
    if (c == 0)
        c = x->code - y->code;
    return c;
}

static int cmp_hseries(const void *a, const void *b)
{
    const struct hseries *x = *(const struct hseries *const *)a;
    const struct hseries *y = *(const struct hseries *const *)b;
    int c = x->upstream - y->upstream;
    if (c == 0)
        c = x->grpc - y->grpc;
    if (c == 0)
        c = strcmp(x->model, y->model);
    return c ? c : cmp_pool(x->pool, y->pool);
}

static const char *proto(int grpc)
{
    return grpc ? "grpc" : "rest";
}

static void render_requests(struct tg_worker *w, struct out *o)
{
    struct tg_gateway *gw = w->gw;
    size_t total = 0, k = 0, hk = 0, htotal = 0;
    char e1[512], e2[512];
    for (size_t i = 0; i < gw->n_workers; i++) {
        struct tg_metrics_shard *s = gw->workers[i]->metrics;
        if (s != NULL) {
            total += atomic_load_explicit(&s->n_req, memory_order_acquire);
            htotal += atomic_load_explicit(&s->n_lat, memory_order_acquire);
        }
    }
    const struct series **all = tg_xcalloc(total + 1, sizeof(*all));
    const struct hseries **hall = tg_xcalloc(htotal + 1, sizeof(*hall));
    for (size_t i = 0; i < gw->n_workers; i++) {
        struct tg_metrics_shard *s = gw->workers[i]->metrics;
        if (s == NULL)
            continue;
        size_t n = atomic_load_explicit(&s->n_req, memory_order_acquire);
        for (size_t j = 0; j < n && k < total; j++)
            all[k++] = &s->req[j];
        n = atomic_load_explicit(&s->n_lat, memory_order_acquire);
        for (size_t j = 0; j < n && hk < htotal; j++)
            hall[hk++] = &s->lat[j];
    }
    qsort(all, k, sizeof(*all), cmp_series);
    qsort(hall, hk, sizeof(*hall), cmp_hseries);

    put(o, "# HELP tfgate_requests_total Requests answered, by protocol, model, method, pool "
           "and device (the last attempt's; _none when no pool was called), and status (HTTP "
           "status for REST, gRPC status code for gRPC; 499 / 1: the client left).\n"
           "# TYPE tfgate_requests_total counter\n");
    for (size_t i = 0; i < k;) {
        unsigned long long sum = 0;
        size_t j = i;
        for (; j < k && cmp_series(&all[i], &all[j]) == 0; j++)
            sum += atomic_load_explicit((atomic_ullong *)&all[j]->count, memory_order_relaxed);
        put(o,
            "tfgate_requests_total{protocol=\"%s\",model=\"%s\",method=\"%s\",pool=\"%s\","
            "device=\"%s\",code=\"%d\"} %llu\n",
            proto(all[i]->grpc), esc(all[i]->model, e1, sizeof(e1)), method_names[all[i]->method],
            esc(all[i]->pool->name, e2, sizeof(e2)), all[i]->pool->device, all[i]->code, sum);
        i = j;
    }
    static const char *const hist_names[2] = {"tfgate_request_duration_seconds",
                                              "tfgate_upstream_duration_seconds"};
    static const char *const hist_help[2] = {
        "Time from the request's first header to its answer, by protocol, model and pool.",
        "Time spent waiting for the model servers (every attempt), by protocol, model and "
        "pool."};
    int header_done[2] = {0, 0};
    for (size_t i = 0; i < hk;) {
        unsigned long long b[N_BUCKETS] = {0}, sum_us = 0, count = 0, cum = 0;
        size_t j = i;
        for (; j < hk && cmp_hseries(&hall[i], &hall[j]) == 0; j++) {
            for (int q = 0; q < N_BUCKETS; q++)
                b[q] += atomic_load_explicit((atomic_ullong *)&hall[j]->buckets[q],
                                             memory_order_relaxed);
            sum_us += atomic_load_explicit((atomic_ullong *)&hall[j]->sum_us, memory_order_relaxed);
            count += atomic_load_explicit((atomic_ullong *)&hall[j]->count, memory_order_relaxed);
        }
        int u = hall[i]->upstream;
        const char *name = hist_names[u];
        if (!header_done[u]) {
            put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, hist_help[u], name);
            header_done[u] = 1;
        }
        char labels[1200];
        snprintf(labels, sizeof(labels), "protocol=\"%s\",model=\"%s\",pool=\"%s\"",
                 proto(hall[i]->grpc), esc(hall[i]->model, e1, sizeof(e1)),
                 esc(hall[i]->pool->name, e2, sizeof(e2)));
        for (int q = 0; q < N_BUCKETS; q++) {
            cum += b[q];
            put(o, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bucket_le[q], cum);
        }
        put(o, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, count);
        put(o, "%s_sum{%s} %.6f\n", name, labels, (double)sum_us / 1e6);
        put(o, "%s_count{%s} %llu\n", name, labels, count);
        i = j;
    }
    /* bytes and connections: sums over the shards */
    unsigned long long bin[2] = {0}, bout[2] = {0}, ctotal[4] = {0};
    long long copen[4] = {0};
    for (size_t i = 0; i < gw->n_workers; i++) {
        struct tg_metrics_shard *s = gw->workers[i]->metrics;
        if (s == NULL)
            continue;
        for (int p = 0; p < 2; p++) {
            bin[p] += atomic_load_explicit(&s->bytes_in[p], memory_order_relaxed);
            bout[p] += atomic_load_explicit(&s->bytes_out[p], memory_order_relaxed);
        }
        for (int c = 0; c < 4; c++) {
            copen[c] += atomic_load_explicit(&s->conns_open[c], memory_order_relaxed);
            ctotal[c] += atomic_load_explicit(&s->conns_total[c], memory_order_relaxed);
        }
    }
    put(o,
        "# HELP tfgate_received_bytes_total Request body bytes received, by protocol.\n"
        "# TYPE tfgate_received_bytes_total counter\n"
        "tfgate_received_bytes_total{protocol=\"rest\"} %llu\n"
        "tfgate_received_bytes_total{protocol=\"grpc\"} %llu\n"
        "# HELP tfgate_sent_bytes_total Response body bytes sent, by protocol.\n"
        "# TYPE tfgate_sent_bytes_total counter\n"
        "tfgate_sent_bytes_total{protocol=\"rest\"} %llu\n"
        "tfgate_sent_bytes_total{protocol=\"grpc\"} %llu\n",
        bin[0], bin[1], bout[0], bout[1]);
    put(o, "# HELP tfgate_connections Client connections open, by protocol and TLS.\n"
           "# TYPE tfgate_connections gauge\n");
    for (int c = 0; c < 4; c++)
        put(o, "tfgate_connections{protocol=\"%s\",tls=\"%s\"} %lld\n", conn_protocols[c],
            conn_tls[c], copen[c]);
    put(o, "# HELP tfgate_connections_total Client connections accepted, by protocol and TLS "
           "(an HTTP/1.1 connection upgraded to h2c counts under both).\n"
           "# TYPE tfgate_connections_total counter\n");
    for (int c = 0; c < 4; c++)
        put(o, "tfgate_connections_total{protocol=\"%s\",tls=\"%s\"} %llu\n", conn_protocols[c],
            conn_tls[c], ctotal[c]);
    free(all);
    free(hall);
}

static void render_events(struct tg_gen *gen, struct out *o)
{
    static const struct {
        const char *name, *help, *label;
        int ev[6];
    } fams[] = {
        {"tfgate_auth_total",
         "Authentication and authorization results.",
         "result",
         {TG_EV_AUTH_OK, TG_EV_AUTH_MISSING, TG_EV_AUTH_INVALID, TG_EV_AUTH_NOKEYS,
          TG_EV_AUTH_DENIED, -1}},
        {"tfgate_ratelimited_total",
         "Requests refused by a rate limit.",
         "limit",
         {TG_EV_RATELIMITED_CALLER, TG_EV_RATELIMITED_MODEL, -1}},
    };
    static const char *const values[TG_EV_COUNT] = {
        [TG_EV_AUTH_OK] = "ok",
        [TG_EV_AUTH_MISSING] = "missing_token",
        [TG_EV_AUTH_INVALID] = "invalid_token",
        [TG_EV_AUTH_NOKEYS] = "keys_unavailable",
        [TG_EV_AUTH_DENIED] = "denied",
        [TG_EV_RATELIMITED_CALLER] = "caller",
        [TG_EV_RATELIMITED_MODEL] = "model",
    };
    for (size_t f = 0; f < TG_ARRAY_SIZE(fams); f++) {
        put(o, "# HELP %s %s\n# TYPE %s counter\n", fams[f].name, fams[f].help, fams[f].name);
        for (int i = 0; fams[f].ev[i] >= 0; i++)
            put(o, "%s{%s=\"%s\"} %llu\n", fams[f].name, fams[f].label, values[fams[f].ev[i]],
                (unsigned long long)atomic_load(&events[fams[f].ev[i]]));
    }
    put(o, "# HELP tfgate_auth_refusals_total Callers refused, by reason.\n"
           "# TYPE tfgate_auth_refusals_total counter\n");
    for (int i = 0; i < TG_AR_COUNT; i++) {
        if (i != TG_AR_JWT) /* TG_JWT_OK is not a refusal */
            put(o, "tfgate_auth_refusals_total{reason=\"%s\"} %llu\n", refusal_names[i],
                (unsigned long long)atomic_load(&refusals[i]));
    }
    static const struct {
        const char *name, *help;
        int ev;
    } plain[] = {
        {"tfgate_ratelimit_redis_fallbacks_total",
         "Rate-limit decisions Redis could not make (local buckets or refusal).",
         TG_EV_RATELIMIT_REDIS_DOWN},
        {"tfgate_spillovers_total", "Calls sent to a later candidate pool than the first.",
         TG_EV_SPILLOVER},
        {"tfgate_saturated_total", "Calls refused because every candidate pool was saturated.",
         TG_EV_SATURATED},
        {"tfgate_retries_total", "Calls retried on another pool or replica.", TG_EV_RETRY},
        {"tfgate_ejections_total", "Replicas ejected by outlier detection.", TG_EV_EJECTION},
        {"tfgate_jwks_refreshes_total", "Times an identity provider's key set changed.",
         TG_EV_JWKS_REFRESH},
    };
    for (size_t i = 0; i < TG_ARRAY_SIZE(plain); i++)
        put(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", plain[i].name, plain[i].help,
            plain[i].name, plain[i].name, (unsigned long long)atomic_load(&events[plain[i].ev]));
    put(o,
        "# HELP tfgate_config_reloads_total SIGHUP reloads, by result.\n"
        "# TYPE tfgate_config_reloads_total counter\n"
        "tfgate_config_reloads_total{result=\"ok\"} %llu\n"
        "tfgate_config_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)atomic_load(&events[TG_EV_RELOAD_OK]),
        (unsigned long long)atomic_load(&events[TG_EV_RELOAD_FAILED]));
    put(o,
        "# HELP tfgate_config_last_reload_successful 0 while the last SIGHUP reload was rejected "
        "(the previous configuration serves).\n"
        "# TYPE tfgate_config_last_reload_successful gauge\n"
        "tfgate_config_last_reload_successful %d\n"
        "# HELP tfgate_config_generation The configuration serving new requests: 1 at start, +1 "
        "per successful reload.\n"
        "# TYPE tfgate_config_generation gauge\n"
        "tfgate_config_generation %llu\n",
        atomic_load(&last_reload_ok), (unsigned long long)gen->id);
}

static void render_pools(struct tg_worker *w, struct tg_gen *gen, struct out *o)
{
    struct tg_pools *pools = gen->pools;
    uint64_t now = tg_worker_now(w);
    char e1[512], e2[512], e3[512];
    static const char *const fam[][2] = {
        {"tfgate_upstream_inflight", "gauge"},
        {"tfgate_upstream_calls_total", "counter"},
        {"tfgate_replica_ejected", "gauge"},
    };
    static const char *const help[] = {
        "Calls in flight per pool and replica.",
        "Calls started per pool and replica.",
        "1 while a replica is ejected by outlier detection.",
    };
    for (size_t f = 0; f < TG_ARRAY_SIZE(fam); f++) {
        put(o, "# HELP %s %s\n# TYPE %s %s\n", fam[f][0], help[f], fam[f][0], fam[f][1]);
        for (size_t i = 0; i < pools->n_pools; i++) {
            struct tg_pool *p = &pools->pools[i];
            for (size_t r = 0; r < p->n_replicas; r++) {
                struct tg_replica *rep = &p->replicas[r];
                long long v = f == 0   ? (long long)atomic_load(&rep->inflight)
                              : f == 1 ? (long long)atomic_load(&rep->calls)
                                       : tg_replica_ejected(rep, now);
                put(o, "%s{pool=\"%s\",device=\"%s\",replica=\"%s\"} %lld\n", fam[f][0],
                    esc(p->cfg->name, e1, sizeof(e1)), p->cfg->device,
                    esc(rep->target, e2, sizeof(e2)), v);
            }
        }
    }
    put(o, "# HELP tfgate_model_serving 1 when the last probe found the model AVAILABLE on the "
           "replica, 0 when not (absent before the first probe).\n"
           "# TYPE tfgate_model_serving gauge\n");
    for (size_t i = 0; i < pools->n_pools; i++) {
        struct tg_pool *p = &pools->pools[i];
        for (size_t r = 0; r < p->n_replicas; r++) {
            for (size_t m = 0; m < p->cfg->n_health_models; m++) {
                int st = atomic_load(&p->replicas[r].health[m].state);
                if (st == TG_HEALTH_UNKNOWN || p->cfg->health_interval_ms == 0)
                    continue;
                put(o, "tfgate_model_serving{pool=\"%s\",replica=\"%s\",model=\"%s\"} %d\n",
                    esc(p->cfg->name, e1, sizeof(e1)), esc(p->replicas[r].target, e2, sizeof(e2)),
                    esc(p->cfg->health_models[m], e3, sizeof(e3)), st == TG_HEALTH_SERVING);
            }
        }
    }
}

char *tg_metrics_render(struct tg_worker *w, struct tg_gen *gen, struct tg_arena *arena,
                        size_t *len)
{
    struct out o = {tg_xmalloc(16384), 0, 16384};
    render_requests(w, &o);
    render_events(gen, &o);
    render_pools(w, gen, &o);
    char *text = tg_arena_alloc(arena, o.n + 1, 1);
    memcpy(text, o.p, o.n);
    text[o.n] = '\0';
    *len = o.n;
    free(o.p);
    return text;
}

int tg_metrics_ready(struct tg_worker *w, struct tg_gen *gen, char *why, size_t whylen)
{
    struct tg_pools *pools = gen->pools;
    const struct tg_config *c = gen->config;
    uint64_t now = tg_worker_now(w);
    for (size_t i = 0; i < c->n_routes; i++) {
        struct tg_pool *p = tg_pools_find(pools, c->routes[i].pool);
        int ok = 0;
        for (size_t r = 0; p != NULL && r < p->n_replicas && !ok; r++) {
            const struct tg_replica *rep = &p->replicas[r];
            if (tg_replica_ejected(rep, now))
                continue;
            ok = 1; /* unless every probed model is known not to be served here */
            if (p->cfg->n_health_models > 0 && p->cfg->health_interval_ms != 0) {
                ok = 0;
                for (size_t m = 0; m < p->cfg->n_health_models && !ok; m++)
                    ok = atomic_load(&rep->health[m].state) == TG_HEALTH_SERVING;
            }
        }
        if (!ok) {
            snprintf(why, whylen, "pool %s (route %s) has no replica ready", c->routes[i].pool,
                     c->routes[i].model);
            return 0;
        }
    }
    return 1;
}
