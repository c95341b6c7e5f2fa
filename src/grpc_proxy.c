/*
 * grpc_proxy.c - native gRPC passthrough. The request message travels to the backend as the
 * bytes the client sent (no decode, no re-encode); only its ModelSpec (field 1) is read, to
 * route it. Status, message and metadata come back unchanged, except that a transport failure
 * (the backend never answered) names the pool and replica that failed.
 */
#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/error.h"
#include "tfgate/grpc_wire.h"
#include "tfgate/log.h"
#include "tfgate/pool.h"
#include "tfgate/router.h"
#include "tfgate/stream.h"
#include "tfgate/upstream.h"
#include "tfgate/worker.h"

struct proxy {
    struct tg_upstream_call call;
    struct tg_pool *pool;
    struct tg_replica *replica;
    const char *request_id;
    size_t request_id_len;
    int in_flight;
};

static uint64_t message_limit(struct tg_stream *st)
{
    return st->w->limits->max_message_bytes + 5; /* one message and its prefix */
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* -bin metadata is base64 on HTTP/2 and raw bytes in gRPC core's API. */
static char *b64_encode(struct tg_arena *a, const uint8_t *in, size_t len, size_t *out_len)
{
    char *out = tg_arena_alloc(a, (len + 2) / 3 * 4 + 1, 1);
    size_t o = 0, i;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (i < len) { /* unpadded, as gRPC sends -bin values */
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static int b64_decode(struct tg_arena *a, const char *in, size_t len, uint8_t **out,
                      size_t *out_len)
{
    uint8_t *buf = tg_arena_alloc(a, len * 3 / 4 + 3, 1);
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    while (len > 0 && in[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(b64, in[i]);
        if (p == NULL || in[i] == '\0')
            return -1;
        acc = acc << 6 | (uint32_t)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *out_len = o;
    return 0;
}

static int is_bin(const char *name, size_t len)
{
    return len > 4 && memcmp(name + len - 4, "-bin", 4) == 0;
}

/* Copies gRPC metadata into HTTP/2 headers or trailers. */
static void add_metadata(struct tg_stream *st, const grpc_metadata_array *md, int trailers)
{
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        size_t klen = GRPC_SLICE_LENGTH(m->key), vlen = GRPC_SLICE_LENGTH(m->value);
        char *key = tg_arena_strndup(&st->arena, (const char *)GRPC_SLICE_START_PTR(m->key), klen);
        const char *val = (const char *)GRPC_SLICE_START_PTR(m->value);
        if (is_bin(key, klen))
            val = b64_encode(&st->arena, GRPC_SLICE_START_PTR(m->value), vlen, &vlen);
        if (trailers)
            tg_stream_add_trailer(st, key, val, vlen);
        else
            tg_stream_add_resp_header(st, key, val, vlen);
    }
}

static void release_slice(void *p)
{
    grpc_slice *s = p;
    grpc_slice_unref(*s);
}

static void on_upstream_done(struct tg_upstream_call *call, void *user)
{
    struct tg_stream *st = user;
    struct proxy *px = st->hdata;
    char code[16];

    px->in_flight = 0;
    if (st->conn == NULL) /* the client left; nothing to answer */
        goto out;

    st->status = 200;
    tg_stream_add_resp_header(st, "content-type", "application/grpc", 16);
    tg_stream_add_resp_header(st, "x-request-id", px->request_id, px->request_id_len);
    add_metadata(st, &call->initial_md, 0);

    if (call->recv != NULL) {
        grpc_byte_buffer_reader reader;
        if (grpc_byte_buffer_reader_init(&reader, call->recv)) {
            grpc_slice *flat = TG_ARENA_NEW(&st->arena, grpc_slice);
            *flat = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            tg_arena_defer(&st->arena, release_slice, flat);
            size_t n = GRPC_SLICE_LENGTH(*flat);
            /* the 5-byte prefix and the message, as one body: the answer is a single frame run */
            uint8_t *body = tg_arena_alloc(&st->arena, n + 5, 1);
            body[0] = 0;
            body[1] = (uint8_t)(n >> 24);
            body[2] = (uint8_t)(n >> 16);
            body[3] = (uint8_t)(n >> 8);
            body[4] = (uint8_t)n;
            memcpy(body + 5, GRPC_SLICE_START_PTR(*flat), n);
            st->resp_body = body;
            st->resp_body_len = n + 5;
        }
    }

    int status = call->status;
    size_t dlen = GRPC_SLICE_LENGTH(call->details);
    const char *details = (const char *)GRPC_SLICE_START_PTR(call->details);
    char *msg = NULL;
    if (tg_upstream_transport_failure(call)) {
        /* the backend never answered: say which pool and replica failed */
        size_t cap = dlen + 256;
        msg = tg_arena_alloc(&st->arena, cap, 1);
        dlen = (size_t)snprintf(msg, cap,
                                "tfgate: upstream pool '%s' (%s) replica %s unavailable: %.*s",
                                px->pool->cfg->name, px->pool->cfg->device, px->replica->target,
                                (int)GRPC_SLICE_LENGTH(call->details), details);
        if (dlen >= cap)
            dlen = cap - 1;
        details = msg;
        tg_log(TG_LOG_WARN, "upstream", "pool=%s replica=%s status=%d %.*s", px->pool->cfg->name,
               px->replica->target, status, (int)GRPC_SLICE_LENGTH(call->details),
               (const char *)GRPC_SLICE_START_PTR(call->details));
    }
    snprintf(code, sizeof(code), "%d", status);
    tg_stream_add_trailer(st, "grpc-status", code, strlen(code));
    if (dlen > 0) {
        char *enc = tg_arena_alloc(&st->arena, 3 * dlen + 1, 1);
        size_t n = tg_grpc_percent_encode(details, dlen, enc);
        tg_stream_add_trailer(st, "grpc-message", enc, n);
    }
    add_metadata(st, &call->trailing_md, 1);
    st->trailers_only = st->resp_body == NULL && call->initial_md.count == 0;
    tg_stream_respond(st);
out:
    tg_upstream_dispose(call);
    tg_stream_unref(st); /* the call's reference */
}

/* The deadline the backend sees: the client's grpc-timeout clamped to the route's maximum,
 * else the route's default. */
static gpr_timespec deadline_for(struct tg_stream *st, const struct tg_route_cfg *route, int *bad)
{
    const struct tg_limits *lim = st->w->limits;
    uint64_t max = route->max_timeout_ms ? route->max_timeout_ms : lim->max_deadline_ms;
    uint64_t ms = route->timeout_ms ? route->timeout_ms : lim->default_deadline_ms;
    const struct tg_header *h = tg_stream_header(st, "grpc-timeout");

    *bad = 0;
    if (h != NULL) {
        uint64_t client;
        if (tg_grpc_parse_timeout(h->value, h->value_len, &client) != 0)
            *bad = 1;
        else
            ms = client;
    }
    if (ms > max)
        ms = max;
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis((int64_t)ms, GPR_TIMESPAN));
}

static void make_request_id(struct tg_stream *st, struct proxy *px)
{
    const struct tg_header *h = tg_stream_header(st, "x-request-id");
    if (h != NULL && h->value_len > 0 && h->value_len <= 128 &&
        tg_grpc_header_forwardable(h->name, h->name_len, h->value, h->value_len)) {
        px->request_id = h->value;
        px->request_id_len = h->value_len;
        return;
    }
    /* 128 random bits as a UUID (version 4) */
    uint8_t r[16];
    uint64_t x = (uint64_t)(uintptr_t)st ^ ((uint64_t)st->w->id << 56) ^ st->w->next_conn_id;
    static _Thread_local uint64_t state;
    if (state == 0) {
        FILE *f = fopen("/dev/urandom", "rb");
        if (f == NULL || fread(&state, sizeof(state), 1, f) != 1)
            state = x | 1;
        if (f)
            fclose(f);
    }
    for (int i = 0; i < 16; i += 8) { /* splitmix64: ids need uniqueness, not secrecy */
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        memcpy(r + i, &z, 8);
    }
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    char *id = tg_arena_alloc(&st->arena, 37, 1);
    snprintf(id, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
    px->request_id = id;
    px->request_id_len = 36;
}

static void on_request(struct tg_stream *st)
{
    struct proxy *px = TG_ARENA_NEW(&st->arena, struct proxy);
    struct tg_model_spec spec;
    const struct tg_route_cfg *route;
    const uint8_t *msg;
    size_t msg_len;
    const char *why = NULL;
    int rv, bad_timeout;

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
                         st->w->limits->max_message_bytes, enc ? enc->value : NULL, &st->arena,
                         &msg, &msg_len, &why);
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
    px->pool = tg_pools_route(st->w->gw->pools, spec.name, &route);
    if (px->pool == NULL) {
        char text[300];
        snprintf(text, sizeof(text), "tfgate: no route for model '%.200s'", spec.name);
        tg_stream_respond_grpc_status(st, GRPC_STATUS_NOT_FOUND, text);
        return;
    }
    gpr_timespec deadline = deadline_for(st, route, &bad_timeout);
    if (bad_timeout) {
        tg_stream_respond_grpc_status(st, GRPC_STATUS_INTERNAL, "tfgate: malformed grpc-timeout");
        return;
    }
    struct tg_channel *channel;
    if (tg_pool_pick(px->pool, &px->replica, &channel) != 0) {
        char text[300];
        snprintf(text, sizeof(text),
                 "tfgate: upstream pool '%s' (%s) unavailable: no replica is reachable",
                 px->pool->cfg->name, px->pool->cfg->device);
        tg_stream_respond_grpc_status(st, GRPC_STATUS_UNAVAILABLE, text);
        return;
    }

    /* metadata: the client's headers minus hop-by-hop, host, authorization and gRPC's own;
     * plus x-request-id */
    make_request_id(st, px);
    grpc_metadata *md =
        tg_arena_zalloc(&st->arena, (st->n_headers + 1) * sizeof(*md), _Alignof(grpc_metadata));
    size_t n_md = 0;
    int has_id = 0;
    for (size_t i = 0; i < st->n_headers; i++) {
        const struct tg_header *h = &st->headers[i];
        if (!tg_grpc_header_forwardable(h->name, h->name_len, h->value, h->value_len))
            continue;
        const uint8_t *val = (const uint8_t *)h->value;
        size_t vlen = h->value_len;
        if (is_bin(h->name, h->name_len)) {
            uint8_t *raw;
            if (b64_decode(&st->arena, h->value, h->value_len, &raw, &vlen) != 0)
                continue; /* not base64: cannot be forwarded faithfully */
            val = raw;
        }
        if (strcmp(h->name, "x-request-id") == 0) {
            if (has_id)
                continue;
            val = (const uint8_t *)px->request_id;
            vlen = px->request_id_len;
            has_id = 1;
        }
        md[n_md].key = grpc_slice_from_static_buffer(h->name, h->name_len);
        md[n_md].value = grpc_slice_from_static_buffer(val, vlen);
        n_md++;
    }
    if (!has_id) {
        md[n_md].key = grpc_slice_from_static_string("x-request-id");
        md[n_md].value = grpc_slice_from_static_buffer(px->request_id, px->request_id_len);
        n_md++;
    }

    struct tg_upstream_req req = {
        .channel = channel,
        .replica = px->replica,
        .method = (enum tg_grpc_method)method,
        .md = md,
        .n_md = n_md,
        /* the slice points into the stream's body: the stream outlives the call */
        .message = grpc_slice_from_static_buffer(msg, msg_len),
        .deadline = deadline,
    };
    tg_stream_ref(st); /* the call's reference, dropped in on_upstream_done */
    if (tg_upstream_start(st->w, &px->call, &req, on_upstream_done, st) != 0) {
        tg_stream_unref(st);
        tg_stream_respond_grpc_status(st, GRPC_STATUS_INTERNAL,
                                      "tfgate: the backend call could not be started");
        return;
    }
    px->in_flight = 1;
}

static void on_close(struct tg_stream *st)
{
    struct proxy *px = st->hdata;
    if (px != NULL && px->in_flight)
        tg_upstream_cancel(&px->call); /* the completion still comes, and frees */
}

const struct tg_handler tg_grpc_proxy_handler = {"grpc", message_limit, on_request, on_close};
