/*
 * grpc_proxy.c - native gRPC passthrough. The request message travels to the backend as the
 * bytes the client sent (no decode, no re-encode); only its ModelSpec (field 1) is read, to
 * route it. Status, message and metadata come back unchanged, except that a transport failure
 * (the backend never answered) names the pool and replica that failed.
 */
#include <stdio.h>
#include <string.h>

#include <grpc/status.h>

#include "tfgate/admission.h"
#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/dispatch.h"
#include "tfgate/error.h"
#include "tfgate/grpc_wire.h"
#include "tfgate/log.h"
#include "tfgate/pool.h"
#include "tfgate/ratelimit.h"
#include "tfgate/router.h"
#include "tfgate/stream.h"
#include "tfgate/upstream.h"
#include "tfgate/worker.h"

struct proxy {
    struct tg_dispatch d; /* the call, with its pool choice and retries */
    struct tg_pool *pool;
    struct tg_model_spec spec;
    const struct tg_route_cfg *route;
    int method;         /* enum tg_grpc_method */
    const uint8_t *msg; /* the request message, unframed (in the body or the arena) */
    size_t msg_len;
    const char *request_id;
    size_t request_id_len;
    int in_flight;
};

static uint64_t message_limit(struct tg_stream *st)
{
    return st->limits->max_message_bytes + 5; /* one message and its prefix */
}

static void on_upstream_done(struct tg_upstream_call *call, void *user)
{
    struct tg_stream *st = user;
    struct proxy *px = st->hdata;
    const struct tg_upstream_result *r = &call->result;
    char code[16];

    px->in_flight = 0;
    st->upstream_pool = px->d.req.pool->cfg->name;
    st->upstream_device = px->d.req.pool->cfg->device;
    tg_stream_note_upstream(st, call, px->d.started_ms);
    if (st->conn == NULL) /* the client left; nothing to answer */
        goto out;

    st->status = 200;
    tg_stream_add_resp_header(st, "content-type", "application/grpc", 16);
    tg_stream_add_resp_header(st, "x-request-id", px->request_id, px->request_id_len);
    int64_t version;
    const uint8_t *resp = r->response ? r->response : r->framed ? r->framed + 5 : NULL;
    size_t resp_len = r->response ? r->response_len : r->framed ? r->framed_len - 5 : 0;
    if (tg_grpc_response_version((enum tg_grpc_method)px->method, resp, resp_len, &st->arena,
                                 &version)) {
        char v[24];
        snprintf(v, sizeof(v), "%lld", (long long)version);
        tg_stream_add_resp_header(st, "x-tfgate-model-version", v, strlen(v));
    }
    for (size_t i = 0; i < r->n_initial_md; i++)
        tg_stream_add_resp_header(st, r->initial_md[i].name, r->initial_md[i].value,
                                  r->initial_md[i].value_len);
    if (r->framed != NULL) {
        st->resp_body = r->framed; /* already framed: no copy */
        st->resp_body_len = r->framed_len;
    } else if (r->response != NULL) {
        /* the 5-byte prefix and the message, as one body */
        size_t n = r->response_len;
        uint8_t *body = tg_arena_alloc(&st->arena, n + 5, 1);
        body[0] = 0;
        body[1] = (uint8_t)(n >> 24);
        body[2] = (uint8_t)(n >> 16);
        body[3] = (uint8_t)(n >> 8);
        body[4] = (uint8_t)n;
        memcpy(body + 5, r->response, n);
        st->resp_body = body;
        st->resp_body_len = n + 5;
    }
    const char *details = r->message;
    size_t dlen = r->message_len;
    struct tg_pool *pool = px->d.req.pool; /* where the last attempt went */
    if (r->transport_failure) {
        /* the backend never answered: say which pool and replica failed */
        size_t cap = dlen + 512;
        char *msg = tg_arena_alloc(&st->arena, cap, 1);
        int n = snprintf(msg, cap, "tfgate: upstream pool '%s' (%s) replica %s unavailable: %.*s",
                         pool->cfg->name, pool->cfg->device,
                         r->replica ? r->replica->target : "(none)", (int)dlen, details);
        dlen = n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
        details = msg;
        tg_log(TG_LOG_WARN, "upstream", "pool=%s replica=%s status=%d %.*s", pool->cfg->name,
               r->replica ? r->replica->target : "-", r->status, (int)r->message_len, r->message);
    }
    snprintf(code, sizeof(code), "%d", r->status);
    tg_stream_add_trailer(st, "grpc-status", code, strlen(code));
    if (dlen > 0) {
        char *enc = tg_arena_alloc(&st->arena, 3 * dlen + 1, 1);
        size_t n = tg_grpc_percent_encode(details, dlen, enc);
        tg_stream_add_trailer(st, "grpc-message", enc, n);
    }
    for (size_t i = 0; i < r->n_trailing_md; i++)
        tg_stream_add_trailer(st, r->trailing_md[i].name, r->trailing_md[i].value,
                              r->trailing_md[i].value_len);
    st->trailers_only = st->resp_body == NULL && r->n_initial_md == 0;
    tg_stream_respond(st);
out:
    tg_stream_unref(st); /* the call's reference */
}

/* The deadline the backend sees, in ms: what is left of the client's grpc-timeout, clamped to
 * the route's maximum, else the route's default. */
static uint64_t deadline_for(struct tg_stream *st, const struct tg_route_cfg *route, int *bad)
{
    const struct tg_limits *lim = st->limits;
    uint64_t max = route->max_timeout_ms ? route->max_timeout_ms : lim->max_deadline_ms;
    uint64_t ms = route->timeout_ms ? route->timeout_ms : lim->default_deadline_ms;
    const struct tg_header *h = tg_stream_header(st, "grpc-timeout");

    *bad = 0;
    if (h != NULL) {
        uint64_t client, spent = tg_worker_now(st->w) - st->start_ms;
        if (tg_grpc_parse_timeout(h->value, h->value_len, &client) != 0)
            *bad = 1;
        else /* what is left of it: the time the request spent here is gone */
            ms = client > spent ? client - spent : 1;
    }
    return ms > max ? max : ms;
}

/* The RBAC method (auth.h) of each gRPC method, for access rules, metrics and logs. */
static const uint32_t method_am[TG_GM_COUNT] = {
    [TG_GM_PREDICT] = TG_AM_PREDICT,
    [TG_GM_CLASSIFY] = TG_AM_CLASSIFY,
    [TG_GM_REGRESS] = TG_AM_REGRESS,
    [TG_GM_MULTI_INFERENCE] = TG_AM_MULTI_INFERENCE,
    [TG_GM_GET_MODEL_METADATA] = TG_AM_METADATA,
    [TG_GM_GET_MODEL_STATUS] = TG_AM_STATUS,
    [TG_GM_RELOAD_CONFIG] = TG_AM_RELOAD,
};

/* RBAC on every ModelSpec of the request (MultiInference has one per task). Returns 0, or -1
 * after answering. */
static int authorize(struct tg_stream *st, int method, const uint8_t *msg, size_t len)
{
    int has_signature = method == TG_GM_PREDICT || method == TG_GM_CLASSIFY ||
                        method == TG_GM_REGRESS || method == TG_GM_MULTI_INFERENCE;
    struct tg_model_spec s;
    int r;
    for (size_t k = 0; (r = tg_grpc_task_model_spec((enum tg_grpc_method)method, msg, len, k,
                                                    &st->arena, &s)) > 0;
         k++) {
        struct tg_auth_target t = {
            s.name,           s.has_version, s.version, s.label, has_signature ? s.signature : NULL,
            method_am[method]};
        if (tg_auth_authorize(st, &t) != 0)
            return -1;
    }
    if (r < 0) {
        tg_stream_respond_grpc_status(st, GRPC_STATUS_INTERNAL,
                                      "tfgate: the request message is not valid protobuf");
        return -1;
    }
    return 0;
}

static void forward(struct tg_stream *st);

static void on_request(struct tg_stream *st)
{
    struct proxy *px = TG_ARENA_NEW(&st->arena, struct proxy);
    struct tg_model_spec spec;
    const struct tg_route_cfg *route;
    const uint8_t *msg;
    size_t msg_len;
    const char *why = NULL;
    int rv;

    st->hdata = px;
    int method = tg_grpc_method_from_path(st->path, st->path_len);
    if (method < 0) {
        char text[300];
        snprintf(text, sizeof(text), "tfgate: unknown method %.200s", st->path);
        tg_stream_respond_grpc_status(st, GRPC_STATUS_UNIMPLEMENTED, text);
        return;
    }
    if (st->method == NULL || strcmp(st->method, "POST") != 0) {
        tg_stream_respond_grpc_status(st, GRPC_STATUS_UNIMPLEMENTED, "tfgate: gRPC requires POST");
        return;
    }
    const struct tg_header *enc = tg_stream_header(st, "grpc-encoding");
    rv = tg_grpc_unframe(tg_buf_data(&st->body), tg_buf_size(&st->body),
                         st->limits->max_message_bytes, enc ? enc->value : NULL, &st->arena, &msg,
                         &msg_len, &why);
    if (rv != 0) {
        char text[200];
        snprintf(text, sizeof(text), "tfgate: %s", why);
        tg_stream_respond_grpc_status(st, tg_error_info(rv)->grpc_status, text);
        return;
    }
    if (tg_grpc_model_spec((enum tg_grpc_method)method, msg, msg_len, &st->arena, &spec) != 0) {
        /* grpc++ answers an unparseable request with INTERNAL; so would TF Serving */
        tg_stream_respond_grpc_status(st, GRPC_STATUS_INTERNAL,
                                      "tfgate: the request message is not valid protobuf");
        return;
    }
    st->metric_model = spec.name;
    st->metric_method = method_am[method];
    st->version = spec.has_version ? tg_arena_sprintf(&st->arena, "%lld", (long long)spec.version)
                                   : spec.label;
    if (st->identity != NULL && authorize(st, method, msg, msg_len) != 0)
        return;
    struct tg_route_query q = {spec.name,  spec.has_version, spec.version,
                               spec.label, spec.signature,   tg_stream_header_value,
                               st};
    px->pool = tg_pools_match(st->gen->pools, st->gen->config, &q, &route);
    if (px->pool == NULL) {
        char text[300];
        snprintf(text, sizeof(text), "tfgate: no route for model '%.200s'", spec.name);
        tg_stream_respond_grpc_status(st, GRPC_STATUS_NOT_FOUND, text);
        return;
    }
    if (route->max_batch || route->max_elements || route->max_request_bytes) {
        struct tg_request_size size = {-1, 0, msg_len};
        char text[400];
        if (method == TG_GM_PREDICT && tg_grpc_predict_size(msg, msg_len, &st->arena, &size) != 0) {
            tg_stream_respond_grpc_status(st, GRPC_STATUS_INTERNAL,
                                          "tfgate: the request message is not valid protobuf");
            return;
        }
        enum tg_admission adm = tg_admission_check(route, spec.name, &size, text, sizeof(text));
        if (adm != TG_ADMIT) {
            tg_stream_respond_grpc_status(st,
                                          adm == TG_ADMISSION_BYTES ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                                                    : GRPC_STATUS_INVALID_ARGUMENT,
                                          text);
            return;
        }
    }
    px->method = method;
    px->msg = msg;
    px->msg_len = msg_len;
    px->route = route;
    px->spec = spec;
    if (tg_ratelimit_check(st, spec.name, forward) == 0)
        forward(st);
}

/* Allowed: deadline, metadata, and the call. Also the continuation of a rate-limit check that
 * waited for Redis. */
static void forward(struct tg_stream *st)
{
    struct proxy *px = st->hdata;
    int bad_timeout;
    uint64_t timeout_ms = deadline_for(st, px->route, &bad_timeout);
    if (bad_timeout) {
        tg_stream_respond_grpc_status(st, GRPC_STATUS_INTERNAL, "tfgate: malformed grpc-timeout");
        return;
    }

    /* metadata, forwarded in wire form: the client's headers minus hop-by-hop, host,
     * authorization and gRPC's own; plus x-request-id */
    px->request_id = tg_stream_request_id(st, &px->request_id_len);
    size_t n_fw = st->gen->config->auth.n_forward;
    struct tg_md *md = tg_arena_alloc(&st->arena, (st->n_headers + n_fw + 2) * sizeof(*md),
                                      _Alignof(struct tg_md));
    size_t n_md = 0;
    int has_id = 0;
    for (size_t i = 0; i < st->n_headers; i++) {
        const struct tg_header *h = &st->headers[i];
        if (!tg_grpc_header_forwardable(h->name, h->name_len, h->value, h->value_len) ||
            tg_auth_is_forwarded(st->gen->auth, h->name) || strcmp(h->name, "traceparent") == 0)
            continue; /* the gateway's claim headers and trace context are its own */
        md[n_md] = (struct tg_md){h->name, h->name_len, h->value, h->value_len};
        if (strcmp(h->name, "x-request-id") == 0) {
            if (has_id)
                continue;
            md[n_md].value = px->request_id;
            md[n_md].value_len = px->request_id_len;
            has_id = 1;
        }
        n_md++;
    }
    if (!has_id)
        md[n_md++] = (struct tg_md){"x-request-id", 12, px->request_id, px->request_id_len};
    const char *tp = tg_stream_traceparent(st);
    md[n_md++] = (struct tg_md){"traceparent", 11, tp, strlen(tp)};
    n_md += tg_auth_forward_md(st, md + n_md, n_fw);

    /* a canary label when the request names no version or label: a ModelSpec field appended,
     * the rest of the message as the client sent it */
    int m = px->method;
    if ((m == TG_GM_PREDICT || m == TG_GM_CLASSIFY || m == TG_GM_REGRESS) &&
        !px->spec.has_version && px->spec.label == NULL) {
        const char *label = tg_dispatch_canary(px->route, st);
        if (label != NULL)
            px->msg = tg_grpc_with_label(px->msg, px->msg_len, label, &st->arena, &px->msg_len);
    }
    int64_t batch = -1;
    if (px->route->batch_pool != NULL && m == TG_GM_PREDICT) {
        struct tg_request_size size;
        if (tg_grpc_predict_size(px->msg, px->msg_len, &st->arena, &size) == 0)
            batch = size.batch;
    }
    struct tg_upstream_req req = {
        .pool = px->pool,
        .method = (enum tg_grpc_method)px->method,
        .md = md,
        .n_md = n_md,
        .message = px->msg, /* in the stream's body or arena: the stream outlives the call */
        .message_len = px->msg_len,
        .timeout_ms = timeout_ms,
        .model = px->spec.name,
        .has_version = px->spec.has_version,
        .version = px->spec.version,
    };
    char why[300];
    int rv = tg_dispatch_start(&px->d, st->w, px->route, batch, &req, &st->arena, on_upstream_done,
                               st, why, sizeof(why));
    if (rv != TG_DISPATCH_STARTED) {
        if (rv == TG_DISPATCH_SATURATED)
            tg_stream_add_trailer(st, "retry-after", "1", 1);
        tg_stream_respond_grpc_status(st,
                                      rv == TG_DISPATCH_SATURATED ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                                                  : GRPC_STATUS_DEADLINE_EXCEEDED,
                                      why);
        return;
    }
    tg_stream_ref(st); /* the call's reference, dropped in on_upstream_done */
    px->in_flight = 1;
}

static void on_close(struct tg_stream *st)
{
    struct proxy *px = st->hdata;
    if (px != NULL && px->in_flight)
        tg_dispatch_cancel(&px->d); /* the completion still comes, and frees */
}

const struct tg_handler tg_grpc_proxy_handler = {"grpc", message_limit, on_request, on_close, 1};
