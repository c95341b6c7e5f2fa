/*
 * stream.c - see stream.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <grpc/status.h>

#include "tfgate/accesslog.h"
#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/error.h"
#include "tfgate/grpc_wire.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/pool.h"
#include "tfgate/upstream.h"
#include "tfgate/router.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

struct tg_stream *tg_stream_new(struct tg_conn *conn, int32_t id, int http2)
{
    struct tg_stream *st = tg_xcalloc(1, sizeof(*st));
    st->conn = conn;
    st->w = conn->w;
    st->id = id;
    st->http2 = http2;
    st->refs = 1;
    st->wg = tg_worker_use(conn->w);
    st->gen = st->wg->gen;
    st->limits = &st->gen->config->limits;
    st->content_length = -1;
    st->start_ms = tg_worker_now(conn->w);
    tg_arena_init(&st->arena);
    tg_buf_init(&st->body, 0); /* cap set when the handler is known */
    return st;
}

void tg_stream_ref(struct tg_stream *st)
{
    st->refs++;
}

void tg_stream_unref(struct tg_stream *st)
{
    if (--st->refs > 0)
        return;
    struct tg_worker *w = st->w;
    struct tg_wgen *wg = st->wg;
    tg_arena_dispose(&st->arena);
    tg_buf_dispose(&st->body);
    tg_buf_dispose(&st->stream_out);
    free(st);
    tg_worker_release(w, wg); /* the last one lets a retired generation go */
}

static int push_header(struct tg_arena *a, struct tg_header **arr, size_t *n, size_t *cap,
                       const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct tg_header *na = tg_arena_alloc(a, ncap * sizeof(*na), _Alignof(struct tg_header));
        if (*n)
            memcpy(na, *arr, *n * sizeof(*na));
        *arr = na;
        *cap = ncap;
    }
    struct tg_header *h = &(*arr)[(*n)++];
    char *lname = tg_arena_alloc(a, nlen + 1, 1);
    for (size_t i = 0; i < nlen; i++)
        lname[i] = (char)tolower((unsigned char)name[i]);
    lname[nlen] = '\0';
    h->name = lname;
    h->name_len = nlen;
    h->value = tg_arena_strndup(a, value, vlen);
    h->value_len = vlen;
    return 0;
}

int tg_stream_add_header(struct tg_stream *st, const char *name, size_t nlen, const char *value,
                         size_t vlen)
{
    const struct tg_limits *lim = st->limits;

    st->header_bytes += nlen + vlen + 32;
    if (st->error == TG_EHEADERS)
        return TG_EHEADERS;
    if (st->header_bytes > lim->max_header_bytes || st->n_headers >= lim->max_headers) {
        st->error = TG_EHEADERS;
        return TG_EHEADERS;
    }
    if (nlen > 0 && name[0] == ':') {
        const char *v = tg_arena_strndup(&st->arena, value, vlen);
        if (nlen == 7 && memcmp(name, ":method", 7) == 0)
            st->method = v;
        else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
            st->path = v;
            st->path_len = vlen;
        } else if (nlen == 10 && memcmp(name, ":authority", 10) == 0)
            st->authority = v;
        return 0; /* :scheme and others are not needed */
    }
    push_header(&st->arena, &st->headers, &st->n_headers, &st->headers_cap, name, nlen, value,
                vlen);
    const struct tg_header *h = &st->headers[st->n_headers - 1];
    if (strcmp(h->name, "content-type") == 0) {
        st->content_type = h->value;
    } else if (strcmp(h->name, "content-length") == 0) {
        char *end;
        unsigned long long v = strtoull(h->value, &end, 10);
        if (h->value_len == 0 || *end != '\0' || !isdigit((unsigned char)h->value[0]))
            st->error = TG_EINVAL;
        else
            st->content_length = (int64_t)v;
    } else if (strcmp(h->name, "host") == 0 && st->authority == NULL) {
        st->authority = h->value;
    }
    return 0;
}

const struct tg_header *tg_stream_header(const struct tg_stream *st, const char *name)
{
    for (size_t i = 0; i < st->n_headers; i++) {
        if (strcmp(st->headers[i].name, name) == 0)
            return &st->headers[i];
    }
    return NULL;
}

const char *tg_stream_request_id(struct tg_stream *st, size_t *len)
{
    if (st->request_id != NULL) {
        *len = st->request_id_len;
        return st->request_id;
    }
    const struct tg_header *h = tg_stream_header(st, "x-request-id");
    if (h != NULL && h->value_len > 0 && h->value_len <= 128 &&
        tg_grpc_header_forwardable(h->name, h->name_len, h->value, h->value_len)) {
        st->request_id = h->value;
        st->request_id_len = h->value_len;
        *len = h->value_len;
        return h->value;
    }
    /* 128 random bits as a UUID (version 4) */
    uint8_t r[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t z = tg_random64();
        memcpy(r + i, &z, 8);
    }
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    char *id = tg_arena_alloc(&st->arena, 37, 1);
    snprintf(id, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
    st->request_id = id;
    st->request_id_len = 36;
    *len = 36;
    return id;
}

static int is_lower_hex(const char *s, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
        nonzero |= s[i] != '0';
    }
    return nonzero; /* all-zero ids are invalid */
}

const char *tg_stream_traceparent(struct tg_stream *st)
{
    if (st->traceparent != NULL)
        return st->traceparent;
    const struct tg_header *h = tg_stream_header(st, "traceparent");
    /* "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>" (W3C Trace Context) */
    if (h != NULL && h->value_len == 55 && h->value[2] == '-' && h->value[35] == '-' &&
        h->value[52] == '-' && h->value[0] == '0' && h->value[1] == '0' &&
        is_lower_hex(h->value + 3, 32) && is_lower_hex(h->value + 36, 16)) {
        st->traceparent = h->value;
        return st->traceparent;
    }
    char *t = tg_arena_alloc(&st->arena, 56, 1);
    snprintf(t, 56, "00-%016llx%016llx-%016llx-01", (unsigned long long)tg_random64(),
             (unsigned long long)tg_random64(), (unsigned long long)(tg_random64() | 1));
    st->traceparent = t;
    return t;
}

void tg_stream_note_upstream(struct tg_stream *st, const struct tg_upstream_call *call,
                             uint64_t started_ms)
{
    const struct tg_upstream_result *r = &call->result;
    st->upstream_ms += tg_worker_now(st->w) - started_ms;
    if (r->replica != NULL)
        st->upstream_replica = r->replica->target;
}

const char *tg_stream_header_value(void *arg, const char *name)
{
    const struct tg_header *h = tg_stream_header(arg, name);
    return h ? h->value : NULL;
}

int tg_stream_is_grpc(const struct tg_stream *st)
{
    const char *ct = st->content_type;
    return ct != NULL && strncasecmp(ct, "application/grpc", 16) == 0 &&
           (ct[16] == '\0' || ct[16] == '+' || ct[16] == ';');
}

void tg_stream_headers_done(struct tg_stream *st)
{
    st->headers_done = 1;
    if (st->error != 0) {
        tg_stream_respond_error(st, st->error, NULL);
        return;
    }
    if (st->method == NULL || st->path == NULL || st->path[0] != '/') {
        tg_stream_respond_error(st, TG_EINVAL, "missing or invalid :method or :path");
        return;
    }
    st->handler = tg_router_pick(st);
    /* who is calling, before a byte of the body is buffered */
    if (st->handler->authenticate && tg_auth_authenticate(st) != 0)
        return; /* answered: the body is dropped as it comes */
    uint64_t limit = st->handler->body_limit(st);
    st->body.cap = (size_t)limit;
    if (st->content_length >= 0 && (uint64_t)st->content_length > limit) {
        /* answer as soon as the size is known, before buffering anything */
        st->error = TG_ETOOLARGE;
        tg_stream_respond_error(st, TG_ETOOLARGE, NULL);
    }
}

void tg_stream_body(struct tg_stream *st, const uint8_t *data, size_t len)
{
    if (st->error != 0 || st->responded)
        return; /* an answer is already decided; drop the rest */
    if (tg_buf_size(&st->body) == 0) {
        /* size the buffer once when the size is known (Content-Length, or a gRPC message's
         * prefix), instead of doubling and copying */
        uint64_t want = st->content_length > 0 ? (uint64_t)st->content_length : 0;
        if (want == 0 && tg_stream_is_grpc(st) && len >= 5)
            want = 5 + ((uint64_t)data[1] << 24 | (uint64_t)data[2] << 16 | (uint64_t)data[3] << 8 |
                        data[4]);
        if (want > 0 && want <= st->body.cap)
            tg_buf_reserve(&st->body, (size_t)want);
    }
    if (tg_buf_append(&st->body, data, len) != 0) {
        st->error = TG_ETOOLARGE;
        tg_buf_dispose(&st->body);
        tg_stream_respond_error(st, TG_ETOOLARGE, NULL);
    }
}

void tg_stream_request_done(struct tg_stream *st)
{
    st->request_done = 1;
    if (st->responded)
        return;
    if (st->error != 0) {
        tg_stream_respond_error(st, st->error, NULL);
        return;
    }
    if (st->handler == NULL) { /* headers never completed properly */
        tg_stream_respond_error(st, TG_EINVAL, NULL);
        return;
    }
    st->handler->on_request(st);
}

/* The request's records, once: its audit record (auth.h), its metrics and its access-log line;
 * when it is answered, or when the client leaves first (|gone|). */
static void account(struct tg_stream *st, int gone)
{
    if (st->accounted || (st->responded && !st->streaming))
        return;
    st->accounted = 1;
    if (st->audit != NULL)
        tg_auth_audit(st, gone);
    if (!gone || st->headers_done) { /* a stream that never had a request is not one */
        tg_metrics_request(st);      /* conn NULL: counted as the client leaving */
        tg_access_log(st);
    }
}

void tg_stream_close(struct tg_stream *st)
{
    if (st->conn == NULL)
        return;
    st->conn = NULL;
    account(st, 1);
    if (st->handler != NULL && st->handler->on_close != NULL)
        st->handler->on_close(st);
    tg_stream_unref(st);
}

void tg_stream_add_resp_header(struct tg_stream *st, const char *name, const char *value,
                               size_t vlen)
{
    push_header(&st->arena, &st->resp_headers, &st->n_resp_headers, &st->resp_headers_cap, name,
                strlen(name), value, vlen);
}

void tg_stream_add_trailer(struct tg_stream *st, const char *name, const char *value, size_t vlen)
{
    push_header(&st->arena, &st->trailers, &st->n_trailers, &st->trailers_cap, name, strlen(name),
                value, vlen);
    st->has_trailers = 1;
}

void tg_stream_respond(struct tg_stream *st)
{
    account(st, 0);
    if (st->responded || st->conn == NULL)
        return;
    st->responded = 1;
    st->conn->ops->submit(st->conn, st);
    tg_worker_mark_dirty(st->w, st->conn);
}

void tg_stream_take_current_gen(struct tg_stream *st)
{
    if (st->wg == st->w->cur)
        return;
    struct tg_wgen *old = st->wg;
    st->wg = tg_worker_use(st->w);
    st->gen = st->wg->gen;
    st->limits = &st->gen->config->limits;
    tg_worker_release(st->w, old);
}

#define STREAM_QUEUE_MAX (64 * 1024)

int tg_stream_stream_begin(struct tg_stream *st)
{
    if (!st->http2 || st->conn == NULL || st->responded)
        return -1;
    st->streaming = 1;
    st->has_trailers = 1;
    tg_buf_init(&st->stream_out, STREAM_QUEUE_MAX);
    st->responded = 1;
    st->conn->ops->submit(st->conn, st);
    tg_worker_mark_dirty(st->w, st->conn);
    return 0;
}

int tg_stream_push(struct tg_stream *st, const uint8_t *data, size_t len)
{
    if (!st->streaming || st->stream_ended || st->conn == NULL ||
        tg_buf_append(&st->stream_out, data, len) != 0)
        return -1;
    st->conn->ops->resume(st->conn, st);
    return 0;
}

/* grpc-status, and grpc-message (percent-encoded) when there is one. */
static void add_grpc_status(struct tg_stream *st, int grpc_status, const char *message)
{
    char code[16];
    snprintf(code, sizeof(code), "%d", grpc_status);
    tg_stream_add_trailer(st, "grpc-status", code, strlen(code));
    if (message != NULL && message[0] != '\0') {
        size_t mlen = strlen(message);
        char *enc = tg_arena_alloc(&st->arena, 3 * mlen + 1, 1);
        tg_stream_add_trailer(st, "grpc-message", enc, tg_grpc_percent_encode(message, mlen, enc));
    }
}

void tg_stream_stream_end(struct tg_stream *st, int grpc_status, const char *message)
{
    if (!st->streaming || st->stream_ended)
        return;
    add_grpc_status(st, grpc_status, message);
    st->stream_ended = 1;
    account(st, 0);
    if (st->conn != NULL)
        st->conn->ops->resume(st->conn, st);
}

void tg_stream_respond_grpc_status(struct tg_stream *st, int grpc_status, const char *message)
{
    st->status = 200;
    tg_stream_add_resp_header(st, "content-type", "application/grpc", 16);
    add_grpc_status(st, grpc_status, message);
    st->trailers_only = 1;
    tg_stream_respond(st);
}

void tg_stream_respond_http(struct tg_stream *st, int status, const char *content_type,
                            const char *body, size_t len)
{
    st->status = status;
    if (content_type != NULL)
        tg_stream_add_resp_header(st, "content-type", content_type, strlen(content_type));
    if (len > 0) {
        uint8_t *copy = tg_arena_alloc(&st->arena, len, 1);
        memcpy(copy, body, len);
        st->resp_body = copy;
    }
    st->resp_body_len = len;
    tg_stream_respond(st);
}

/* {"error": "<message>"} with the message escaped as RapidJSON escapes it (spec §3.8). */
static size_t json_error_body(const char *msg, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    const char *pre = "{\n    \"error\": \"";
    for (const char *p = pre; *p && o < cap; p++)
        out[o++] = *p;
    for (const unsigned char *p = (const unsigned char *)msg; *p && o + 8 < cap; p++) {
        switch (*p) {
        case '"':
            out[o++] = '\\';
            out[o++] = '"';
            break;
        case '\\':
            out[o++] = '\\';
            out[o++] = '\\';
            break;
        case '\n':
            out[o++] = '\\';
            out[o++] = 'n';
            break;
        case '\r':
            out[o++] = '\\';
            out[o++] = 'r';
            break;
        case '\t':
            out[o++] = '\\';
            out[o++] = 't';
            break;
        default:
            if (*p < 0x20) {
                out[o++] = '\\';
                out[o++] = 'u';
                out[o++] = '0';
                out[o++] = '0';
                out[o++] = hex[*p >> 4];
                out[o++] = hex[*p & 15];
            } else {
                out[o++] = (char)*p;
            }
        }
    }
    const char *post = "\"\n}";
    for (const char *p = post; *p && o < cap; p++)
        out[o++] = *p;
    return o;
}

void tg_stream_respond_json_error(struct tg_stream *st, int status, const char *message)
{
    size_t cap = strlen(message) * 6 + 32;
    char *body = tg_arena_alloc(&st->arena, cap, 1);
    size_t n = json_error_body(message, body, cap);
    tg_stream_respond_http(st, status, "application/json", body, n);
}

void tg_stream_respond_error(struct tg_stream *st, int err, const char *message)
{
    const struct tg_error_info *info = tg_error_info(err);

    if (message == NULL)
        message = info->message;
    if (tg_stream_is_grpc(st) && st->http2) {
        tg_stream_respond_grpc_status(st, info->grpc_status, message);
        return;
    }
    tg_stream_respond_json_error(st, info->http_status, message);
}
