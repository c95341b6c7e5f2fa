/*
 * dispatch.h - which pool a call goes to, and what happens when it fails: the traffic policy
 * between the handlers (REST, gRPC passthrough) and the upstream transports (upstream.h).
 *
 *   candidates  the route's pool, or its batch_pool for a batch (dim 0) of at least batch_min,
 *               then the route's fallbacks, in order;
 *   spillover   the first candidate that is not saturated (pool.h: in flight or latency over
 *               the pool's limits, with hysteresis) takes the call; when every candidate is
 *               saturated the call is refused at once (429 / RESOURCE_EXHAUSTED with
 *               Retry-After) rather than queued;
 *   deadline    a call whose deadline is shorter than the chosen pool's typical latency fails
 *               fast (504 / DEADLINE_EXCEEDED) instead of occupying a GPU for nothing;
 *   retries     only where safe: a call no backend accepted (refused, reset, no replica) or one
 *               a batching backend refused because its queue is full (UNAVAILABLE "... queue
 *               ... full") goes to the next candidate (the same pool again when there is no
 *               other, for another replica), with what is left of its deadline, and only while
 *               the retry budget allows (limits.retry_budget_percent of requests, plus
 *               retry_min), so retries cannot multiply an outage;
 *   accounting  every answer feeds the pool's latency EWMA and the replica's outlier count
 *               (consecutive UNAVAILABLE / INTERNAL answers eject it for a while; a replica
 *               that does not answer at all is left to the transport's reconnect backoff).
 *
 * Canary labels are chosen here too (tg_dispatch_canary) so REST and gRPC split alike.
 * Thread affinity: the worker's loop thread, like the call it wraps.
 */
#ifndef TG_DISPATCH_H
#define TG_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "tfgate/upstream.h"

struct tg_route_cfg;
struct tg_stream;

#define TG_DISPATCH_MAX_POOLS 8

struct tg_dispatch {
    struct tg_upstream_call call; /* the current attempt: what the handler's |done| receives */
    struct tg_upstream_req req;   /* a copy; its pool and timeout change on a retry */
    struct tg_worker *w;
    struct tg_arena *arena;
    struct tg_pool *cands[TG_DISPATCH_MAX_POOLS];
    size_t n_cands, at;
    uint64_t started_ms, attempt_ms;
    uint64_t timeout_ms; /* the whole call's */
    int attempts;
    int cancelled;
    tg_upstream_done_cb *done;
    void *user;
};

enum tg_dispatch_refusal {
    TG_DISPATCH_STARTED = 0,
    TG_DISPATCH_SATURATED = -1, /* every candidate pool is saturated */
    TG_DISPATCH_TOO_LATE = -2,  /* the deadline is shorter than the pool's typical latency */
};

/* Starts |req| (its pool is the route's) on the right candidate. Returns TG_DISPATCH_STARTED
 * and |done| runs once later, or a refusal with nothing started; |why| then holds a message
 * for the client. |batch| is the request's dim 0, -1 when unknown. */
int tg_dispatch_start(struct tg_dispatch *d, struct tg_worker *w, const struct tg_route_cfg *route,
                      int64_t batch, const struct tg_upstream_req *req, struct tg_arena *arena,
                      tg_upstream_done_cb *done, void *user, char *why, size_t whylen);
void tg_dispatch_cancel(struct tg_dispatch *d);

/* The canary label for a request of |route| that names no version or label, or NULL (no
 * canary). Sticky by the caller's subject or a header when the route says so. */
const char *tg_dispatch_canary(const struct tg_route_cfg *route, struct tg_stream *st);

#endif /* TG_DISPATCH_H */
