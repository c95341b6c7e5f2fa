/*
 * health.h - active health of the model servers, and the gateway's own gRPC health service.
 *
 * Prober: TF Serving has no gRPC health service, so each replica of each pool is asked
 * ModelService/GetModelStatus for every model the pool serves (config.h: pools.P.health.models,
 * by default the exact model names routed to the pool), every health.interval_ms. A model
 * with no AVAILABLE version there (LOADING, UNLOADING, missing, an error, no answer within
 * health.timeout_ms) marks the replica NOT_SERVING for it, and picks skip it (pool.h) until a
 * probe finds it AVAILABLE again. The probes run on worker 0's loop, off the request path, at
 * most one in flight per replica and model, and stop when the gateway drains. A reload starts
 * a prober for the new pools (which begin with the old pools' findings, pool.h) and stops the
 * old one.
 *
 * Service: grpc.health.v1.Health/Check and /Watch (gRPC's standard health protocol), answered
 * from the probes for the service names "model", "model:version" and "model:label" (a label
 * is answered like the model: GetModelStatus does not resolve labels), and "" for the gateway
 * itself. A model no probe covers is NOT_FOUND for Check, as the protocol says. SERVING means
 * some replica of a pool the model is routed to (its pool, batch pool, fallbacks) serves it
 * and is not ejected. Watch streams: the current status at once (SERVICE_UNKNOWN for a model
 * no probe covers), then a message whenever it changes (looked at on every worker tick,
 * limits.sweep_interval_ms); the stream follows reloads and ends with UNAVAILABLE when the
 * gateway drains.
 *
 * Threading: prober on worker 0's loop thread; the handler on any worker's.
 */
#ifndef TG_HEALTH_H
#define TG_HEALTH_H

#include <stddef.h>

struct prober;
struct tg_handler;
struct tg_wgen;
struct tg_worker;

/* Starts probing the pools of |wg|'s generation on |w|'s loop (worker 0 calls it for each
 * generation it serves). Returns NULL when no pool is probed. The prober uses |wg| until it is
 * stopped and its last probe is done. */
struct prober *tg_health_start(struct tg_worker *w, struct tg_wgen *wg);
/* A new generation, or drain: no new probes; those in flight finish within their timeout,
 * then the prober frees itself. NULL: no-op. */
void tg_health_stop(struct prober *pr);

extern const struct tg_handler tg_health_handler;

/* Worker tick: sends Watch streams their status when it changed. Loop thread. */
void tg_health_tick(struct tg_worker *w);
/* Drain: ends every Watch stream of the worker (UNAVAILABLE), so the drain can finish. */
void tg_health_drain(struct tg_worker *w);

/* 1 if |path| is the health service's. */
int tg_health_path(const char *path, size_t len);

#endif /* TG_HEALTH_H */
