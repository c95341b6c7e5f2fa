/*
 * health.c - see health.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/status.h>

#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tfgate/arena.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/grpc_wire.h"
#include "tfgate/health.h"
#include "tfgate/log.h"
#include "tfgate/pool.h"
#include "tfgate/stream.h"
#include "tfgate/upstream.h"
#include "tfgate/worker.h"

/* ---- the prober ---- */

struct probe {
    struct tg_upstream_call call; /* owns nothing: the probe is freed in on_probe_done */
    struct tg_arena arena;
    struct prober *pr;
    struct tg_pool *pool;
    struct tg_replica *rep;
    int mi;
    uint8_t *busy; /* this replica and model's in-flight flag */
};

struct prober {
    struct tg_worker *w;
    struct tg_wgen *wg; /* used (tg_worker_use) until the prober is freed */
    struct tg_pools *pools;
    uv_timer_t timer;
    int stopping;
    int timer_closed;
    size_t inflight;
    uint64_t *next_ms; /* per pool */
    uint8_t **busy;    /* per pool: replicas x models */
};

static void set_health(struct tg_pool *pool, struct tg_replica *rep, int mi, int state,
                       const int64_t *versions, int n, const char *why)
{
    struct tg_model_health *h = &rep->health[mi];
    int was = atomic_load(&h->state);
    for (int i = 0; i < n && i < TG_HEALTH_MAX_VERSIONS; i++)
        atomic_store(&h->versions[i], versions[i]);
    atomic_store(&h->n_versions, n);
    atomic_store(&h->state, state);
    if (was != state)
        tg_log(state == TG_HEALTH_SERVING ? TG_LOG_INFO : TG_LOG_WARN, "health",
               "pool %s replica %s: model %s %s%s%s", pool->cfg->name, rep->target,
               pool->cfg->health_models[mi], state == TG_HEALTH_SERVING ? "serving" : "not serving",
               why ? ": " : "", why ? why : "");
}

static void prober_free(struct prober *pr)
{
    for (size_t i = 0; i < pr->pools->n_pools; i++)
        free(pr->busy[i]);
    free(pr->busy);
    free(pr->next_ms);
    struct tg_worker *w = pr->w;
    struct tg_wgen *wg = pr->wg;
    free(pr);
    tg_worker_release(w, wg);
}

static void maybe_free(struct prober *pr)
{
    if (pr->stopping && pr->timer_closed && pr->inflight == 0)
        prober_free(pr);
}

static void on_probe_done(struct tg_upstream_call *call, void *user)
{
    struct probe *p = user;
    const struct tg_upstream_result *r = &call->result;
    int64_t versions[TG_HEALTH_MAX_VERSIONS];
    int n = 0;
    char why[160] = "";

    if (r->status == GRPC_STATUS_OK && r->response != NULL) {
        Tensorflow__Serving__GetModelStatusResponse *resp =
            tensorflow__serving__get_model_status_response__unpack(NULL, r->response_len,
                                                                   r->response);
        const char *state = "no version";
        for (size_t i = 0; resp != NULL && i < resp->n_model_version_status; i++) {
            Tensorflow__Serving__ModelVersionStatus *v = resp->model_version_status[i];
            if (v->state == TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE) {
                if (n < TG_HEALTH_MAX_VERSIONS)
                    versions[n++] = v->version;
            } else {
                const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
                    &tensorflow__serving__model_version_status__state__descriptor, v->state);
                state = ev ? ev->name : "not AVAILABLE";
            }
        }
        if (resp != NULL)
            tensorflow__serving__get_model_status_response__free_unpacked(resp, NULL);
        else
            state = "an answer that does not parse";
        snprintf(why, sizeof(why), "%s", state);
    } else {
        snprintf(why, sizeof(why), "%s%.*s", r->transport_failure ? "no answer: " : "",
                 (int)(r->message_len > 120 ? 120 : r->message_len), r->message);
    }
    struct prober *pr = p->pr;
    if (!pr->stopping || r->status != GRPC_STATUS_CANCELLED)
        set_health(p->pool, p->rep, p->mi, n > 0 ? TG_HEALTH_SERVING : TG_HEALTH_NOT_SERVING,
                   versions, n, n > 0 ? NULL : why);
    *p->busy = 0;
    tg_arena_dispose(&p->arena);
    free(p);
    pr->inflight--;
    maybe_free(pr);
}

static void probe(struct prober *pr, struct tg_pool *pool, size_t ri, int mi, uint8_t *busy)
{
    struct probe *p = tg_xcalloc(1, sizeof(*p));
    tg_arena_init(&p->arena);
    p->pr = pr;
    p->pool = pool;
    p->rep = &pool->replicas[ri];
    p->mi = mi;
    p->busy = busy;
    *busy = 1;
    pr->inflight++;

    Tensorflow__Serving__GetModelStatusRequest req =
        TENSORFLOW__SERVING__GET_MODEL_STATUS_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    spec.name = pool->cfg->health_models[mi];
    req.model_spec = &spec;
    size_t len = tensorflow__serving__get_model_status_request__get_packed_size(&req);
    uint8_t *buf = tg_arena_alloc(&p->arena, len + 1, 8);
    tensorflow__serving__get_model_status_request__pack(&req, buf);
    struct tg_upstream_req ureq = {
        .pool = pool,
        .method = TG_GM_GET_MODEL_STATUS,
        .message = buf,
        .message_len = len,
        .timeout_ms = pool->cfg->health_timeout_ms,
        .replica = p->rep,
    };
    tg_upstream_start(pr->w, &p->call, &ureq, &p->arena, on_probe_done, p);
}

static void on_tick(uv_timer_t *t)
{
    struct prober *pr = t->data;
    struct tg_pools *pools = pr->pools;
    uint64_t now = tg_worker_now(pr->w);
    if (pr->stopping)
        return;
    for (size_t i = 0; i < pools->n_pools; i++) {
        struct tg_pool *pool = &pools->pools[i];
        const struct tg_pool_cfg *pc = pool->cfg;
        if (pc->health_interval_ms == 0 || pc->n_health_models == 0 || now < pr->next_ms[i])
            continue;
        pr->next_ms[i] = now + pc->health_interval_ms;
        for (size_t r = 0; r < pool->n_replicas; r++) {
            for (size_t m = 0; m < pc->n_health_models; m++) {
                uint8_t *busy = &pr->busy[i][r * pc->n_health_models + m];
                if (!*busy) /* one probe in flight per replica and model, at most */
                    probe(pr, pool, r, (int)m, busy);
            }
        }
    }
}

struct prober *tg_health_start(struct tg_worker *w, struct tg_wgen *wg)
{
    struct tg_pools *pools = wg->gen->pools;
    uint64_t tick = 0;
    for (size_t i = 0; i < pools->n_pools; i++) {
        const struct tg_pool_cfg *pc = pools->pools[i].cfg;
        if (pc->health_interval_ms != 0 && pc->n_health_models != 0 &&
            (tick == 0 || pc->health_interval_ms < tick))
            tick = pc->health_interval_ms;
    }
    if (tick == 0)
        return NULL;
    struct prober *pr = tg_xcalloc(1, sizeof(*pr));
    pr->w = w;
    pr->pools = pools;
    pr->wg = wg;
    wg->users++; /* the prober's calls use the generation's pools */
    pr->next_ms = tg_xcalloc(pools->n_pools, sizeof(uint64_t));
    pr->busy = tg_xcalloc(pools->n_pools, sizeof(uint8_t *));
    for (size_t i = 0; i < pools->n_pools; i++)
        pr->busy[i] =
            tg_xcalloc(pools->pools[i].n_replicas * pools->pools[i].cfg->n_health_models + 1, 1);
    uv_timer_init(&w->loop, &pr->timer);
    pr->timer.data = pr;
    /* a quarter of the shortest interval: each pool keeps its own */
    uv_timer_start(&pr->timer, on_tick, 0, tick / 4 ? tick / 4 : 1);
    return pr;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct prober *pr = h->data;
    pr->timer_closed = 1;
    maybe_free(pr);
}

void tg_health_stop(struct prober *pr)
{
    if (pr == NULL || pr->stopping)
        return;
    pr->stopping = 1;
    uv_timer_stop(&pr->timer);
    uv_close((uv_handle_t *)&pr->timer, on_timer_closed);
}

/* ---- grpc.health.v1.Health ---- */

enum { UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3 };

static const char check_path[] = "/grpc.health.v1.Health/Check";
static const char watch_path[] = "/grpc.health.v1.Health/Watch";

int tg_health_path(const char *path, size_t len)
{
    return (len == sizeof(check_path) - 1 && memcmp(path, check_path, len) == 0) ||
           (len == sizeof(watch_path) - 1 && memcmp(path, watch_path, len) == 0);
}

/* SERVING, NOT_SERVING, or -1 when no probe covers the model. A replica counts when a probe
 * found it serving (not merely "not probed yet") and it is not ejected. */
static int model_status(struct tg_stream *st, const char *service)
{
    struct tg_worker *w = st->w;
    char model[256];
    const char *colon = strrchr(service, ':');
    size_t mlen = colon ? (size_t)(colon - service) : strlen(service);
    int has_version = 0;
    int64_t version = 0;
    if (mlen >= sizeof(model))
        return -1;
    memcpy(model, service, mlen);
    model[mlen] = '\0';
    if (colon != NULL && colon[1] != '\0' && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
        has_version = 1;
        version = strtoll(colon + 1, NULL, 10);
    }
    const struct tg_route_cfg *route;
    struct tg_pools *pools = st->gen->pools;
    struct tg_pool *cands[2 + 8];
    size_t n = 0;
    struct tg_pool *primary = tg_pools_route(pools, st->gen->config, model, &route);
    if (primary == NULL)
        return -1;
    cands[n++] = primary;
    if (route->batch_pool)
        cands[n++] = tg_pools_find(pools, route->batch_pool);
    for (size_t i = 0; i < route->n_fallbacks && n < TG_ARRAY_SIZE(cands); i++)
        cands[n++] = tg_pools_find(pools, route->fallbacks[i]);
    int probed = 0;
    uint64_t now = tg_worker_now(w);
    for (size_t i = 0; i < n; i++) {
        struct tg_pool *pool = cands[i];
        int mi = pool ? tg_pool_model_index(pool, model) : -1;
        if (mi < 0 || pool->cfg->health_interval_ms == 0)
            continue;
        probed = 1;
        for (size_t r = 0; r < pool->n_replicas; r++) {
            const struct tg_replica *rep = &pool->replicas[r];
            if (atomic_load(&rep->health[mi].state) == TG_HEALTH_SERVING &&
                !tg_replica_ejected(rep, now) && tg_replica_serves(rep, mi, has_version, version))
                return SERVING;
        }
    }
    return probed ? NOT_SERVING : -1;
}

static uint64_t small_body(struct tg_stream *st)
{
    (void)st;
    return 5 + 1024; /* a service name */
}

/* ---- Watch: a stream per watcher, a message whenever the status changes ---- */

struct watch {
    struct tg_stream *st;
    const char *service; /* in the stream's arena */
    int last;            /* the status last sent */
    struct watch *prev, *next;
};

static int watch_status(struct tg_stream *st, const char *service)
{
    if (service[0] == '\0')
        return SERVING;
    int s = model_status(st, service);
    return s < 0 ? SERVICE_UNKNOWN : s; /* unknown: said, and watched on (the protocol) */
}

static void send_status(struct watch *wt, int status)
{
    const uint8_t msg[] = {0, 0, 0, 0, 2, 0x08, (uint8_t)status};
    if (tg_stream_push(wt->st, msg, sizeof(msg)) == 0)
        wt->last = status;
}

static void unwatch(struct watch *wt)
{
    struct tg_worker *w = wt->st->w;
    if (wt->prev)
        wt->prev->next = wt->next;
    else if (w->watches == wt)
        w->watches = wt->next;
    else
        return; /* not linked */
    if (wt->next)
        wt->next->prev = wt->prev;
    wt->prev = wt->next = NULL;
}

static void start_watch(struct tg_stream *st, const char *service)
{
    struct tg_worker *w = st->w;
    struct watch *wt = TG_ARENA_NEW(&st->arena, struct watch);
    wt->st = st;
    wt->service = tg_arena_strndup(&st->arena, service, strlen(service));
    st->hdata = wt;
    st->status = 200;
    tg_stream_add_resp_header(st, "content-type", "application/grpc", 16);
    if (tg_stream_stream_begin(st) != 0)
        return;
    send_status(wt, watch_status(st, wt->service));
    wt->next = w->watches;
    if (w->watches)
        w->watches->prev = wt;
    w->watches = wt;
}

static void on_close(struct tg_stream *st)
{
    if (st->hdata != NULL)
        unwatch(st->hdata);
}

void tg_health_tick(struct tg_worker *w)
{
    for (struct watch *wt = w->watches; wt != NULL; wt = wt->next) {
        /* a watch outlives reloads: it follows the current configuration and lets the one it
         * started with go */
        tg_stream_take_current_gen(wt->st);
        int s = watch_status(wt->st, wt->service);
        if (s != wt->last)
            send_status(wt, s);
    }
}

void tg_health_drain(struct tg_worker *w)
{
    while (w->watches != NULL) {
        struct watch *wt = w->watches;
        unwatch(wt);
        tg_stream_stream_end(wt->st, GRPC_STATUS_UNAVAILABLE, "tfgate: shutting down");
    }
}

static void on_request(struct tg_stream *st)
{
    const uint8_t *msg;
    size_t len;
    const char *why = NULL;
    const struct tg_header *enc = tg_stream_header(st, "grpc-encoding");
    int rv = tg_grpc_unframe(tg_buf_data(&st->body), tg_buf_size(&st->body), 1024,
                             enc ? enc->value : NULL, &st->arena, &msg, &len, &why);
    if (rv != 0) {
        char text[200];
        snprintf(text, sizeof(text), "tfgate: %s", why);
        tg_stream_respond_grpc_status(st, GRPC_STATUS_INVALID_ARGUMENT, text);
        return;
    }
    /* HealthCheckRequest { string service = 1; }: one field, read by hand */
    char service[300] = "";
    size_t pos = 0;
    while (pos < len) {
        uint8_t key = msg[pos++];
        uint64_t n = 0;
        int shift = 0, done = 0;
        while (pos < len && shift < 28 && !done) {
            uint8_t b = msg[pos++];
            n |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
            done = !(b & 0x80);
        }
        if (!done || (key & 7) != 2 || n > len - pos || (key == 0x0a && n >= sizeof(service))) {
            tg_stream_respond_grpc_status(st, GRPC_STATUS_INVALID_ARGUMENT,
                                          "tfgate: HealthCheckRequest does not parse");
            return;
        }
        if (key == 0x0a) {
            memcpy(service, msg + pos, n);
            service[n] = '\0';
        }
        pos += n;
    }
    int watch = st->path_len == sizeof(watch_path) - 1 &&
                memcmp(st->path, watch_path, st->path_len) == 0 && st->http2;
    if (watch) {
        start_watch(st, service);
        return;
    }
    int status = service[0] == '\0' ? SERVING : model_status(st, service);
    if (status < 0) {
        tg_stream_respond_grpc_status(st, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    /* HealthCheckResponse { ServingStatus status = 1; } */
    static const uint8_t serving[] = {0, 0, 0, 0, 2, 0x08, SERVING};
    static const uint8_t not_serving[] = {0, 0, 0, 0, 2, 0x08, NOT_SERVING};
    st->status = 200;
    tg_stream_add_resp_header(st, "content-type", "application/grpc", 16);
    st->resp_body = status == SERVING ? serving : not_serving;
    st->resp_body_len = sizeof(serving);
    tg_stream_add_trailer(st, "grpc-status", "0", 1);
    tg_stream_respond(st);
}

const struct tg_handler tg_health_handler = {"health", small_body, on_request, on_close, 0};
