/*
 * metrics.h - Prometheus metrics (text exposition format 0.0.4), served on the admin
 * listener's /metrics.
 *
 * Per-request series (requests by protocol, model, method, pool, device and status; latency
 * histograms of the whole request and of its time upstream by protocol, model and pool; bytes
 * in and out; connections by protocol and TLS) live in one shard per worker: only that worker adds
 * series and bumps them (relaxed atomics, no lock on the request path); a scrape from any worker
 * reads every shard (series are append-only and published with a release store) and merges equal
 * label sets. Label cardinality is bounded: a model becomes a label value only if it is routed by
 * name in the configuration or among the first TG_METRICS_MAX_MODELS other names the process
 * sees; the rest count as "_other". Pool labels are the configured pools the requests went to
 * (at most TG_METRICS_MAX_POOLS per worker; a reload may add some). Event counters (auth results,
 * rate-limit hits, spillovers, retries, ejections, key refreshes, reloads) are process-wide
 * atomics. Gauges (in flight per replica, replica health) are read from the pools at scrape time.
 *
 * Threading: tg_metrics_request on the stream's worker; tg_metrics_event anywhere; render on
 * any worker.
 */
#ifndef TG_METRICS_H
#define TG_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct tg_config;
struct tg_gen;
struct tg_stream;
struct tg_worker;
struct tg_arena;

#define TG_METRICS_MAX_MODELS 64
#define TG_METRICS_MAX_POOLS  64

enum tg_metric_event {
    TG_EV_AUTH_OK = 0,
    TG_EV_AUTH_MISSING, /* no token */
    TG_EV_AUTH_INVALID, /* a token that did not verify (any reason) */
    TG_EV_AUTH_NOKEYS,  /* keys not loaded yet */
    TG_EV_AUTH_DENIED,  /* RBAC */
    TG_EV_RATELIMITED_CALLER,
    TG_EV_RATELIMITED_MODEL,
    TG_EV_RATELIMIT_REDIS_DOWN, /* a decision Redis could not make */
    TG_EV_SPILLOVER,            /* a call went to a later candidate pool */
    TG_EV_SATURATED,            /* refused: every pool saturated */
    TG_EV_RETRY,
    TG_EV_EJECTION,
    TG_EV_JWKS_REFRESH, /* a key set changed */
    TG_EV_RELOAD_OK,
    TG_EV_RELOAD_FAILED,
    TG_EV_COUNT,
};

/* Counts one event. Any thread. */
void tg_metrics_event(enum tg_metric_event ev);

/* Why a caller was refused, finer than the auth events: tfgate_auth_refusals_total{reason}.
 * TG_AR_JWT + an enum tg_jwt_status (jwt.h) for a token that did not verify. */
enum tg_auth_refusal {
    TG_AR_MISSING_TOKEN = 0,
    TG_AR_BAD_AUTHORIZATION, /* two Authorization headers, or not the Bearer scheme */
    TG_AR_KEYS_UNAVAILABLE,
    TG_AR_DENIED, /* RBAC */
    TG_AR_JWT,
    TG_AR_COUNT = TG_AR_JWT + 11,
};
/* A SIGHUP reload succeeded (|ok|) or was rejected. Main thread. */
void tg_metrics_reload(int ok);

/* Counts one refusal (and the matching coarse auth event). Any thread. */
void tg_metrics_auth_refusal(int reason);

/* Counts a finished request (protocol, the model and method the handler recorded on the
 * stream, its HTTP status or gRPC status, its latency). The stream's worker's thread. */
void tg_metrics_request(struct tg_stream *st);

/* A client connection got its protocol (HTTP/1.1, or HTTP/2 when |http2|) / is gone.
 * Connections by protocol and TLS. The connection's worker's thread. */
struct tg_conn;
void tg_metrics_conn_open(struct tg_conn *c, int http2);
void tg_metrics_conn_close(struct tg_conn *c);

/* The whole exposition text, in |arena|; pool series from |gen|'s pools. Any worker's
 * thread. */
char *tg_metrics_render(struct tg_worker *w, struct tg_gen *gen, struct tg_arena *arena,
                        size_t *len);

/* A worker's shard: made with the worker (main thread, before it runs), freed at its end. The
 * models routed by name in |c| are labels from the start. */
void tg_metrics_shard_new(struct tg_worker *w, const struct tg_config *c);
void tg_metrics_shard_free(struct tg_worker *w);

/* 1 when every pool |gen| routes to has at least one replica that can take calls
 * (readiness). */
int tg_metrics_ready(struct tg_worker *w, struct tg_gen *gen, char *why, size_t whylen);

#endif /* TG_METRICS_H */
