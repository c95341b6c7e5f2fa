/*
 * upstream.h - the narrow interface to the upstream transport: start a unary gRPC call
 * (method, metadata, message bytes, deadline) on a pool and get one completion (status,
 * message, metadata, response bytes). Two transports implement it, chosen per pool:
 *
 *   native     (upstream_h2.c)   an nghttp2 client on each worker's own loop: no thread hop,
 *                                no locks; each worker keeps its own connections per replica
 *   grpc-core  (upstream_grpc.c) gRPC core's C API: shared channels, a completion queue per
 *                                worker drained by its pump thread
 *
 * Metadata travels in HTTP/2 wire form in both directions ("-bin" values base64-encoded, as
 * on the wire), so a proxy forwards what it received without decoding it.
 *
 * Ownership: the caller owns the struct tg_upstream_call and the request data (message and
 * metadata) and keeps them alive until |done| has run, even after tg_upstream_cancel(). Result
 * strings and buffers live in the |arena| given at start.
 * Thread affinity: the worker's loop thread; |done| runs there too, never from inside
 * tg_upstream_start or tg_upstream_cancel.
 */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tfgate/common.h"
#include "tfgate/grpc_wire.h"
#include "tfgate/worker.h"

struct tg_arena;
struct tg_pool;
struct tg_replica;
struct tg_upstream_call;
struct tg_upstream_ops;

typedef void tg_upstream_done_cb(struct tg_upstream_call *call, void *user);

/* A metadata entry in HTTP/2 wire form: lower-case name; "-bin" values base64-encoded. */
struct tg_md {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct tg_upstream_req {
    struct tg_pool *pool;
    enum tg_grpc_method method;
    const struct tg_md *md; /* forwarded as is; borrowed until |done| */
    size_t n_md;
    const uint8_t *message; /* the serialized request, without the gRPC prefix */
    size_t message_len;
    uint64_t timeout_ms; /* the deadline the backend sees */
    /* the model asked for, so replicas whose probes say they do not serve it are skipped
     * (pool.h); NULL for none */
    const char *model;
    int has_version;
    int64_t version;
    struct tg_replica *replica; /* this replica only (health probes), or NULL to pick */
};

struct tg_upstream_result {
    int status;          /* gRPC status code */
    const char *message; /* status message (percent-decoded), "" when none */
    size_t message_len;
    struct tg_md *initial_md; /* response headers other than :status, content-type, grpc-* */
    size_t n_initial_md;
    struct tg_md *trailing_md; /* trailers other than grpc-status, grpc-message */
    size_t n_trailing_md;
    const uint8_t *response; /* the response message (no prefix), or NULL */
    size_t response_len;
    const uint8_t *framed; /* the same message with its 5-byte gRPC prefix, uncompressed,
                              when the transport has it that way (saves a copy), or NULL */
    size_t framed_len;
    int transport_failure;      /* the backend never answered: refused, reset, unreachable */
    struct tg_replica *replica; /* where the call went, or NULL if none was reachable */
};

/* Transport-private state, embedded so a call allocates nothing of its own. */
struct tg_upstream_call {
    struct tg_cq_tag tag; /* first: gRPC core's completion tag, and deferred completions */
    struct tg_upstream_result result; /* valid in |done| */
    tg_upstream_done_cb *done;
    void *user;
    struct tg_worker *w;
    struct tg_arena *arena;
    int started;                          /* |done| will run */
    int finished;                         /* |done| ran */
    const struct tg_upstream_ops *_ops;   /* private: the transport that took the call */
    void *impl;                           /* the transport's per-call state (in |arena|) */
    struct tg_upstream_call *prev, *next; /* the worker's in-flight list */
};

/* Starts the call on a replica of |req->pool|. Always succeeds from the caller's point of
 * view: |done| runs exactly once, later (with UNAVAILABLE and transport_failure when no
 * replica can take it). */
void tg_upstream_start(struct tg_worker *w, struct tg_upstream_call *call,
                       const struct tg_upstream_req *req, struct tg_arena *arena,
                       tg_upstream_done_cb *done, void *user);
/* Asks the transport to cancel; |done| still runs (CANCELLED, or the status that won the
 * race). Idempotent. */
void tg_upstream_cancel(struct tg_upstream_call *call);

/* ---- for the transports (upstream_grpc.c, upstream_h2.c), not for callers ---- */

struct tg_upstream_ops {
    void (*start)(struct tg_upstream_call *call, const struct tg_upstream_req *req);
    void (*cancel)(struct tg_upstream_call *call);
};
extern const struct tg_upstream_ops tg_upstream_grpc_ops;
extern const struct tg_upstream_ops tg_upstream_h2_ops;

/* Completes |call| now: runs |done|. */
void tg_upstream__complete(struct tg_upstream_call *call);
/* Completes |call| on a later loop iteration with |status| and a formatted message, as a
 * transport failure (for failures found inside start). */
void tg_upstream__fail_later(struct tg_upstream_call *call, int status, const char *fmt, ...)
    TG_PRINTF(3, 4);

#endif /* TG_UPSTREAM_H */
