/*
 * dispatch.c - see dispatch.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/status.h>

#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/dispatch.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/pool.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

static void add_cand(struct tg_dispatch *d, struct tg_pool *p)
{
    if (p == NULL || d->n_cands == TG_DISPATCH_MAX_POOLS)
        return;
    for (size_t i = 0; i < d->n_cands; i++) {
        if (d->cands[i] == p)
            return;
    }
    d->cands[d->n_cands++] = p;
}

/* TF Serving's batching queue refusing the call: the backend is busy, not broken. */
static int queue_full(const struct tg_upstream_result *r)
{
    return r->status == GRPC_STATUS_UNAVAILABLE && !r->transport_failure &&
           strstr(r->message, "queue") != NULL && strstr(r->message, "full") != NULL;
}

static void attempt(struct tg_dispatch *d);

static void on_done(struct tg_upstream_call *call, void *user)
{
    struct tg_dispatch *d = user;
    const struct tg_upstream_result *r = &call->result;
    struct tg_pool *pool = d->cands[d->at];
    uint64_t now = tg_worker_now(d->w);
    int busy = queue_full(r);

    /* outliers: replicas that answer UNAVAILABLE or INTERNAL (a full batching queue is load,
     * not a fault). A replica that does not answer at all is the transport's business: it
     * reconnects with backoff and takes no calls meanwhile. */
    if (r->replica != NULL && !r->transport_failure)
        tg_replica_observe(
            pool, r->replica,
            !busy && (r->status == GRPC_STATUS_UNAVAILABLE || r->status == GRPC_STATUS_INTERNAL),
            now);
    if (!r->transport_failure && r->status != GRPC_STATUS_CANCELLED)
        tg_pool_observe_latency(pool, (double)(now - d->attempt_ms), now);

    if (!d->cancelled && (r->transport_failure || busy) && now - d->started_ms < d->timeout_ms) {
        /* the next candidate that can take it; for a pool that never answered, the same pool
         * again (another replica) when there is no other */
        size_t next = d->n_cands;
        for (size_t i = d->at + 1; i < d->n_cands; i++) {
            if (!tg_pool_saturated(d->cands[i], now) &&
                tg_pool_serves(d->cands[i], d->req.model, d->req.has_version, d->req.version,
                               now)) {
                next = i;
                break;
            }
        }
        if (next == d->n_cands && r->transport_failure && d->attempts == 1 && pool->n_replicas > 1)
            next = d->at;
        if (next < d->n_cands && tg_pools_budget_take(pool->set)) {
            tg_log(TG_LOG_DEBUG, "dispatch", "retrying on pool %s after %s from pool %s",
                   d->cands[next]->cfg->name, busy ? "a full queue" : "no answer", pool->cfg->name);
            d->at = next;
            d->req.timeout_ms = d->timeout_ms - (now - d->started_ms);
            tg_metrics_event(TG_EV_RETRY);
            attempt(d);
            return;
        }
    }
    d->done(call, d->user);
}

static void attempt(struct tg_dispatch *d)
{
    d->req.pool = d->cands[d->at];
    d->attempt_ms = tg_worker_now(d->w);
    d->attempts++;
    tg_upstream_start(d->w, &d->call, &d->req, d->arena, on_done, d);
}

int tg_dispatch_start(struct tg_dispatch *d, struct tg_worker *w, const struct tg_route_cfg *route,
                      int64_t batch, const struct tg_upstream_req *req, struct tg_arena *arena,
                      tg_upstream_done_cb *done, void *user, char *why, size_t whylen)
{
    struct tg_pools *pools = req->pool->set; /* the generation the route came from */
    uint64_t now = tg_worker_now(w);

    memset(d, 0, sizeof(*d));
    d->w = w;
    d->arena = arena;
    d->req = *req;
    d->done = done;
    d->user = user;
    d->started_ms = now;
    d->timeout_ms = req->timeout_ms;
    if (route->batch_pool != NULL && batch >= 0 && (uint64_t)batch >= route->batch_min)
        add_cand(d, tg_pools_find(pools, route->batch_pool));
    add_cand(d, req->pool);
    for (size_t i = 0; i < route->n_fallbacks; i++)
        add_cand(d, tg_pools_find(pools, route->fallbacks[i]));

    /* the first candidate that serves the model (probes) and is not saturated; when probes
     * say no candidate serves it, the first not saturated (its backend answers for itself) */
    size_t pick = d->n_cands;
    for (int pass = 0; pass < 2 && pick == d->n_cands; pass++) {
        for (size_t i = 0; i < d->n_cands; i++) {
            if ((pass == 1 ||
                 tg_pool_serves(d->cands[i], req->model, req->has_version, req->version, now)) &&
                !tg_pool_saturated(d->cands[i], now)) {
                pick = i;
                break;
            }
        }
    }
    if (pick == d->n_cands) {
        tg_metrics_event(TG_EV_SATURATED);
        snprintf(why, whylen, "tfgate: every pool for this model is saturated (%s%s)",
                 d->cands[0]->cfg->name, d->n_cands > 1 ? " and its fallbacks" : "");
        return TG_DISPATCH_SATURATED;
    }
    double typical = tg_pool_latency(d->cands[pick], now);
    if (typical > 0 && (double)req->timeout_ms < typical) {
        snprintf(why, whylen,
                 "tfgate: the deadline (%llu ms) is shorter than pool %s's typical latency "
                 "(%.0f ms)",
                 (unsigned long long)req->timeout_ms, d->cands[pick]->cfg->name, typical);
        return TG_DISPATCH_TOO_LATE;
    }
    tg_pools_budget_deposit(pools);
    if (pick > 0 && d->cands[pick] != req->pool)
        tg_metrics_event(TG_EV_SPILLOVER);
    d->at = pick;
    attempt(d);
    return TG_DISPATCH_STARTED;
}

void tg_dispatch_cancel(struct tg_dispatch *d)
{
    d->cancelled = 1;
    tg_upstream_cancel(&d->call);
}

const char *tg_dispatch_canary(const struct tg_route_cfg *route, struct tg_stream *st)
{
    if (route == NULL || route->n_canary == 0)
        return NULL;
    uint64_t total = 0, h;
    for (size_t i = 0; i < route->n_canary; i++)
        total += route->canary_weights[i];
    const char *key = NULL;
    size_t key_len = 0;
    if (route->canary_sticky != NULL && strcmp(route->canary_sticky, "subject") == 0 &&
        st->identity != NULL && !st->identity->anonymous) {
        key = st->identity->subject;
        key_len = strlen(key);
    } else if (route->canary_sticky != NULL && strncmp(route->canary_sticky, "header:", 7) == 0) {
        const struct tg_header *hd = tg_stream_header(st, route->canary_sticky + 7);
        if (hd != NULL) {
            key = hd->value;
            key_len = hd->value_len;
        }
    }
    if (key != NULL) {
        h = tg_hash64(key, key_len);
    } else {
        h = tg_random64();
    }
    uint64_t x = h % total;
    for (size_t i = 0; i < route->n_canary; i++) {
        if (x < route->canary_weights[i])
            return route->canary_labels[i];
        x -= route->canary_weights[i];
    }
    return route->canary_labels[route->n_canary - 1];
}
