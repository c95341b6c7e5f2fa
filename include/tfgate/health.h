/*
 * health.h - active health of the model servers, and the gateway's own gRPC health service.
 *
 * Prober: TF Serving has no gRPC health service, so each replica of each pool is asked
 * ModelService/GetModelStatus for every model the pool serves (config.h: pools.P.health.models,
 * by default the exact model names routed to the pool), every health.interval_ms. A model
 * with no AVAILABLE version there (LOADING, UNLOADING, missing, an error, no answer within
 * health.timeout_ms) marks the replica NOT_SERVING for it, and picks skip it (pool.h) until a
 * probe finds it AVAILABLE again. The probes run on worker 0's loop, off the request path, at
 * most one in flight per replica and model, and stop when the gateway drains.
 *
 * Service: grpc.health.v1.Health/Check and /Watch (gRPC's standard health protocol), answered
 * from the probes for the service names "model", "model:version" and "model:label" (a label
 * is answered like the model: GetModelStatus does not resolve labels), and "" for the gateway
 * itself. A model no probe covers is NOT_FOUND, as the protocol says. SERVING means some
 * replica of a pool the model is routed to (its pool, batch pool, fallbacks) serves it and is
 * not ejected. Watch sends the current status and ends the stream (this gateway does not
 * stream responses yet); gRPC's health clients then watch again.
 *
 * Threading: prober on worker 0's loop thread; the handler on any worker's.
 */
#ifndef TG_HEALTH_H
#define TG_HEALTH_H

#include <stddef.h>

struct tg_handler;
struct tg_worker;

/* Worker 0: start probing (no-op elsewhere, or without probed models). */
void tg_health_start(struct tg_worker *w);
/* Drain: no new probes; those in flight finish within their timeout. */
void tg_health_stop(struct tg_worker *w);
/* After the loop closed its handles. */
void tg_health_free(struct tg_worker *w);

extern const struct tg_handler tg_health_handler;

/* 1 if |path| is the health service's. */
int tg_health_path(const char *path, size_t len);

#endif /* TG_HEALTH_H */
