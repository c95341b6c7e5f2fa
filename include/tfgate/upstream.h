/*
 * upstream.h - the narrow interface to the upstream transport: start a unary gRPC call
 * (method, metadata, message bytes, deadline) and get one completion (status, message,
 * metadata, bytes). It is gRPC core today; everything above it only sees this, so the
 * transport can be measured alone (bench/micro) and replaced if a benchmark demands it.
 *
 * Ownership: the caller owns the struct tg_upstream_call (typically in its stream's arena)
 * and must keep it alive until |done| has run, even after tg_upstream_cancel().
 * Thread affinity: all functions on the worker's loop thread; |done| runs there too.
 */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "tfgate/grpc_wire.h"
#include "tfgate/worker.h"

struct tg_channel;
struct tg_replica;
struct tg_upstream_call;

typedef void tg_upstream_done_cb(struct tg_upstream_call *call, void *user);

struct tg_upstream_req {
    struct tg_channel *channel;
    struct tg_replica *replica; /* for in-flight accounting; may be NULL */
    enum tg_grpc_method method;
    const grpc_metadata *md; /* borrowed for the duration of tg_upstream_start */
    size_t n_md;
    grpc_slice message; /* the serialized request; referenced by the call */
    gpr_timespec deadline;
};

struct tg_upstream_call {
    struct tg_cq_tag tag; /* first member: the completion is posted as is */
    struct tg_worker *w;
    grpc_call *call;
    grpc_channel *channel; /* the channel the call went out on (not owned) */
    struct tg_replica *replica;
    grpc_metadata_array initial_md; /* results, valid in |done| until dispose */
    grpc_metadata_array trailing_md;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv; /* NULL when no message came back */
    grpc_status_code status;
    grpc_slice details;
    const char *error_string; /* gRPC core's debug string (gpr_malloc'ed), or NULL */
    tg_upstream_done_cb *done;
    void *user;
    struct tg_upstream_call *prev, *next; /* the worker's in-flight list */
    int started;
};

/* Starts the call. Returns 0 (|done| will run exactly once), or -1 when gRPC refused the
 * batch (invalid metadata): nothing was sent and |done| will not run. */
int tg_upstream_start(struct tg_worker *w, struct tg_upstream_call *call,
                      const struct tg_upstream_req *req, tg_upstream_done_cb *done, void *user);
/* Asks gRPC to cancel; |done| still runs (with CANCELLED or the real status). Idempotent. */
void tg_upstream_cancel(struct tg_upstream_call *call);
/* Releases what the completion left (metadata, buffers, the call). After |done|. */
void tg_upstream_dispose(struct tg_upstream_call *call);

/* 1 when the call failed in the transport (connection refused or reset, no replica
 * reachable) rather than with a status the backend itself sent. Call it in |done|. */
int tg_upstream_transport_failure(const struct tg_upstream_call *call);

#endif /* TG_UPSTREAM_H */
