/*
 * stream.h - one request/response exchange: an HTTP/2 stream or one HTTP/1.1 request. The
 * protocol (http1.c, http2.c) fills in the request and reads the response; handlers (grpc
 * passthrough, REST) see only this, never nghttp2 or the HTTP/1.1 parser, so each is written
 * once for every protocol.
 *
 * Ownership: a stream owns its arena; everything request-scoped lives there. It has two
 * possible owners, counted in |refs|: the connection (until the client side is finished or
 * gone) and a handler's upstream call (until its completion is delivered). When the client
 * goes away first the stream is "detached" (|conn| NULL): the handler cancels its call and the
 * last unref frees the arena (docs/internals/ARENA.md).
 * Thread affinity: the owning worker's loop thread.
 */
#ifndef TG_STREAM_H
#define TG_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tfgate/arena.h"
#include "tfgate/buf.h"

struct tg_audit;
struct tg_conn;
struct tg_gen;
struct tg_limits;
struct tg_wgen;
struct tg_identity;
struct tg_stream;

struct tg_header {
    const char *name; /* lower-case, NUL-terminated, in the stream's arena */
    const char *value;
    size_t name_len;
    size_t value_len;
};

/* A request handler: chosen when the request headers are complete. */
struct tg_handler {
    const char *name;
    uint64_t (*body_limit)(struct tg_stream *st); /* largest body accepted */
    void (*on_request)(struct tg_stream *st);     /* the whole request has arrived */
    void (*on_close)(struct tg_stream *st);       /* the client side is gone: cancel work */
    int authenticate; /* the caller must be authenticated (auth.h) before the body is read */
};

struct tg_stream {
    struct tg_conn *conn; /* NULL once detached */
    struct tg_worker *w;
    /* the configuration generation the stream started with (worker.h), kept to its end: a
     * reload never changes the rules, pools or limits under a request in flight */
    struct tg_wgen *wg;
    struct tg_gen *gen; /* wg->gen */
    const struct tg_limits *limits;
    int32_t id; /* HTTP/2 stream id, or the request's number on an HTTP/1.1 conn */
    int http2;
    int refs;
    struct tg_arena arena;
    uint64_t start_ms; /* loop clock at the first header */

    /* request */
    const char *method; /* ":method" */
    const char *path;   /* ":path", raw (percent-encoded, with the query) */
    size_t path_len;
    const char *authority;
    const char *content_type;
    struct tg_header *headers; /* regular headers, in arrival order */
    size_t n_headers;
    size_t headers_cap;
    size_t header_bytes;    /* name + value + 32 per field (RFC 7541 size) */
    int64_t content_length; /* -1 when absent */
    struct tg_buf body;
    int headers_done;
    int request_done;
    int error; /* TG_E* found while receiving, answered once possible */

    const struct tg_handler *handler;
    void *hdata;                        /* the handler's per-request state (in the arena) */
    const struct tg_identity *identity; /* the caller (auth.h), or NULL without auth */
    struct tg_audit *audit;             /* what auth decided, for the audit record, or NULL */
    const char *request_id;             /* tg_stream_request_id, once asked for */
    size_t request_id_len;
    /* where the request went, for the access log: the last attempt's pool and replica, and
     * the time spent upstream (all calls) */
    const char *upstream_pool;
    const char *upstream_device;
    const char *upstream_replica;
    uint64_t upstream_ms;
    const char *traceparent;  /* W3C trace context sent upstream (the client's, or made) */
    const char *metric_model; /* what the handler found, for metrics.h */
    const char *version;      /* the version (number) or label asked for, or NULL; the access
                                 log prefers the one that answered (x-tfgate-model-version) */
    uint32_t metric_method;   /* TG_AM_* */
    int accounted;            /* audit record, metrics and access log written */

    /* response, read by the protocol */
    int responded; /* a response was submitted */
    int status;    /* HTTP status */
    struct tg_header *resp_headers;
    size_t n_resp_headers;
    size_t resp_headers_cap;
    const uint8_t *resp_body; /* in the arena, or kept alive by a deferred destructor */
    size_t resp_body_len;
    size_t resp_body_off; /* bytes handed to the protocol so far */
    struct tg_header *trailers;
    size_t n_trailers;
    size_t trailers_cap;
    int has_trailers;  /* send trailers after the body (gRPC) */
    int trailers_only; /* gRPC: one HEADERS frame with END_STREAM, no body */
    /* server streaming (tg_stream_stream_begin): messages queued here until the protocol
     * takes them; the trailers go once |stream_ended| and the queue is empty */
    int streaming;
    int stream_ended;
    struct tg_buf stream_out;

    struct tg_stream *next; /* the connection's list */
};

/* Creates a stream for |conn| (refcount 1: the connection). */
struct tg_stream *tg_stream_new(struct tg_conn *conn, int32_t id, int http2);

/* Adds a request header field (pseudo-headers included), copying it into the arena. Names
 * are lower-cased. Returns 0, or TG_EHEADERS when the header list goes over a limit (the
 * field is then dropped and the error kept for the response). */
int tg_stream_add_header(struct tg_stream *st, const char *name, size_t nlen, const char *value,
                         size_t vlen);
/* The request headers are complete: picks the handler and checks Content-Length against its
 * body limit. The stream may have responded (an error) when this returns. */
void tg_stream_headers_done(struct tg_stream *st);
/* Request body bytes. Over the handler's limit the stream answers 413 / RESOURCE_EXHAUSTED
 * and drops the rest. */
void tg_stream_body(struct tg_stream *st, const uint8_t *data, size_t len);
/* The request is complete: runs the handler (or answers a pending error). */
void tg_stream_request_done(struct tg_stream *st);
/* The client side is finished (response sent and stream closed) or gone (reset, connection
 * lost): detaches, tells the handler, drops the connection's reference. */
void tg_stream_close(struct tg_stream *st);

void tg_stream_ref(struct tg_stream *st);
void tg_stream_unref(struct tg_stream *st);

/* The first request header named |name| (lower-case), or NULL. */
const struct tg_header *tg_stream_header(const struct tg_stream *st, const char *name);
/* The same as a route query's header callback (config.h): |arg| is the stream. */
const char *tg_stream_header_value(void *arg, const char *name);

/* Response building; strings are copied into the arena. */
void tg_stream_add_resp_header(struct tg_stream *st, const char *name, const char *value,
                               size_t vlen);
void tg_stream_add_trailer(struct tg_stream *st, const char *name, const char *value, size_t vlen);
/* Hands the response to the protocol. No-op on a detached stream. */
void tg_stream_respond(struct tg_stream *st);

/* gRPC server streaming, HTTP/2 only (-1 on HTTP/1.1, nothing sent): sends the response
 * headers (st->status and resp_headers, set by the caller) now; then each tg_stream_push
 * queues framed message bytes (at most 64 KiB waiting: -1 beyond, nothing queued), and
 * tg_stream_stream_end sends the status in trailers. Metrics and the access log count the
 * stream when it ends. */
int tg_stream_stream_begin(struct tg_stream *st);
int tg_stream_push(struct tg_stream *st, const uint8_t *data, size_t len);
void tg_stream_stream_end(struct tg_stream *st, int grpc_status, const char *message);

/* A long-lived stream that keeps nothing of its configuration (a health Watch) moves to the
 * worker's current generation, so the one it started with can be freed after a reload. */
void tg_stream_take_current_gen(struct tg_stream *st);

/* Answers |err| (a TG_E*) in the client's protocol: for gRPC a trailers-only response with
 * grpc-status and grpc-message; otherwise the HTTP status with {"error": message}.
 * |message| may be NULL (the error table's text). */
void tg_stream_respond_error(struct tg_stream *st, int err, const char *message);
/* HTTP: |status| with TF Serving's JSON error body {"error": message} (escaped as RapidJSON
 * escapes, 4-space layout) and Content-Type: application/json. */
void tg_stream_respond_json_error(struct tg_stream *st, int status, const char *message);
/* gRPC: a trailers-only answer with |grpc_status| and |message|. */
void tg_stream_respond_grpc_status(struct tg_stream *st, int grpc_status, const char *message);
/* HTTP: |status| with a body (copied) of |content_type|. */
void tg_stream_respond_http(struct tg_stream *st, int status, const char *content_type,
                            const char *body, size_t len);

/* The request's id: the client's x-request-id when it is a usable one (printable, at most 128
 * bytes), else a random UUID (version 4). Made once, kept in the arena. */
const char *tg_stream_request_id(struct tg_stream *st, size_t *len);

/* The W3C traceparent to send upstream: the client's when it is well formed, else a new one
 * (version 00, random trace and span ids, sampled). Made once, in the arena. */
const char *tg_stream_traceparent(struct tg_stream *st);

/* Records a finished upstream call for the access log (pool, replica, time). */
struct tg_upstream_call;
void tg_stream_note_upstream(struct tg_stream *st, const struct tg_upstream_call *call,
                             uint64_t started_ms);

/* 1 if the request is gRPC (content-type application/grpc or application/grpc+...). */
int tg_stream_is_grpc(const struct tg_stream *st);

#endif /* TG_STREAM_H */
