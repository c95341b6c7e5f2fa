/*
 * pool.h - upstream pools: named groups of TF Serving replicas with a device tag (cpu/gpu).
 * Each replica (one configured target) has N persistent gRPC channels, each on its own
 * connection (a local subchannel pool: gRPC core would otherwise share one connection between
 * channels with equal arguments). Channels are created at start-up and live until shutdown.
 *
 * Routing is here too, in one place the later policies (health, spillover, canaries) extend:
 * tg_pools_route maps a model name to its pool; tg_pool_pick chooses a replica and channel.
 *
 * Thread affinity: built and freed by the main thread; route and pick are called by every
 * worker concurrently (they only read, plus atomic counters).
 */
#ifndef TG_POOL_H
#define TG_POOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "tfgate/grpc_wire.h"

struct tg_config;
struct tg_pool_cfg;
struct tg_route_cfg;

struct tg_channel {
    grpc_channel *ch;           /* owned */
    void *methods[TG_GM_COUNT]; /* grpc_channel_register_call handles */
};

#define TG_HEALTH_MAX_VERSIONS 16

enum tg_health {
    TG_HEALTH_UNKNOWN = 0, /* not probed yet: taken as serving */
    TG_HEALTH_SERVING,     /* some version AVAILABLE */
    TG_HEALTH_NOT_SERVING, /* no version AVAILABLE (LOADING, UNLOADING, missing), or no answer */
};

/* One probed model on one replica (health.c writes, every worker reads). */
struct tg_model_health {
    atomic_int state; /* enum tg_health */
    atomic_int n_versions;
    atomic_llong versions[TG_HEALTH_MAX_VERSIONS]; /* the AVAILABLE ones */
};

struct tg_replica {
    char *target; /* as configured */
    size_t n_channels;
    struct tg_channel *channels; /* owned */
    atomic_uint next;            /* round-robin over channels */
    atomic_ullong calls;         /* calls started on this replica */
    atomic_llong inflight;       /* calls started and not yet completed */
    /* passive outlier detection (tg_replica_observe) */
    atomic_uint failures_in_row;
    atomic_ullong ejected_until_ms; /* loop clock; 0 = not ejected */
    struct tg_model_health *health; /* one per pool->cfg->health_models */
};

struct tg_pool {
    const struct tg_pool_cfg *cfg; /* points into the config snapshot the pools hold */
    struct tg_pools *set;          /* the generation's pools this one belongs to */
    size_t n_replicas;
    struct tg_replica *replicas; /* owned */
    atomic_uint next;            /* round-robin over replicas */
    /* saturation (tg_pool_saturated): latency EWMA in ms (double bits), when it was last fed,
     * and the state with its hysteresis */
    atomic_ullong ewma_bits;
    atomic_ullong ewma_at_ms;
    atomic_int saturated;
};

struct tg_pools {
    atomic_int refs;          /* generations using these pools (a reload may keep them) */
    struct tg_config *config; /* a reference: the configuration the pools were built from */
    size_t n_pools;
    struct tg_pool *pools;    /* owned, in config order */
    atomic_llong retry_milli; /* the retry budget, in thousandths of a retry */
};

/* Creates every pool's channels and starts connecting them. A reload passes the running
 * generation's pools as |prev|. When |config| describes exactly the same pools (tg_pools_same)
 * they are |prev| itself, referenced: their connections, channels and state stay as they are.
 * Otherwise new pools start from |prev|'s state where the pool and target are the same
 * (probed health, ejection, call counter, latency average, retry budget), so a reload neither
 * forgets a sick replica nor resets counters. Returns NULL with a message in |err| (a TLS
 * file that cannot be read). Call after grpc_init(). */
struct tg_pools *tg_pools_new(struct tg_config *config, struct tg_pools *prev, char *err,
                              size_t errlen);
/* Drops a reference; the last frees the pools and destroys their channels. */
void tg_pools_unref(struct tg_pools *pools);
/* 1 when pools built from |b| would be the same as those built from |a|: the same pools with
 * the same settings (and the limits the channels and retry budget take), none with TLS (its
 * files may have new contents). */
int tg_pools_same(const struct tg_config *a, const struct tg_config *b);

/* The pool and route for |model| under |config|'s routes (exact route, else "*"), or NULL
 * when no route matches. The routes come from the request's configuration, which may be newer
 * than the one the pools were built from. */
struct tg_pool *tg_pools_route(struct tg_pools *pools, const struct tg_config *config,
                               const char *model, const struct tg_route_cfg **route);
struct tg_route_query;
/* The same for a whole request (config.h, tg_config_match). */
struct tg_pool *tg_pools_match(struct tg_pools *pools, const struct tg_config *config,
                               const struct tg_route_query *q, const struct tg_route_cfg **route);

/* The pool named |name|, or NULL. */
struct tg_pool *tg_pools_find(struct tg_pools *pools, const char *name);

/* ---- health and load (all workers, lock-free; |now_ms| is the loop clock) ---- */

/* The index of |model| among the pool's probed models, or -1. */
int tg_pool_model_index(const struct tg_pool *pool, const char *model);
/* 1 unless probes say |r| does not serve |model| (index |mi|; -1 = not probed: serves) in
 * |version| (when |has_version|). */
int tg_replica_serves(const struct tg_replica *r, int mi, int has_version, int64_t version);
/* 1 if some replica of |pool| that is not ejected serves |model| (see above). */
int tg_pool_serves(const struct tg_pool *pool, const char *model, int has_version, int64_t version,
                   uint64_t now_ms);

/* 1 while |r| is ejected by outlier detection. */
int tg_replica_ejected(const struct tg_replica *r, uint64_t now_ms);
/* |r| answered a call: |failed| (UNAVAILABLE or INTERNAL) counts toward ejection, anything
 * else resets the count. Returns 1 when this call ejected the replica. */
int tg_replica_observe(struct tg_pool *pool, struct tg_replica *r, int failed, uint64_t now_ms);
/* A call on |pool| was answered after |ms|: feeds the latency EWMA. */
void tg_pool_observe_latency(struct tg_pool *pool, double ms, uint64_t now_ms);
/* The latency EWMA now (it decays by half each second without samples, so a pool that got
 * no traffic because it was slow is tried again). */
double tg_pool_latency(struct tg_pool *pool, uint64_t now_ms);
/* 1 when |pool| should take no new request: in flight at max_inflight per replica, or latency
 * above max_latency_ms; back to 0 below 80% of both. */
int tg_pool_saturated(struct tg_pool *pool, uint64_t now_ms);

/* Retry budget: every request deposits retry_budget_percent of a retry (up to retry_min
 * saved); a retry withdraws one. Returns 1 when a retry may go. */
void tg_pools_budget_deposit(struct tg_pools *pools);
int tg_pools_budget_take(struct tg_pools *pools);

/* Picks a replica and channel: round-robin over replicas that are not ejected, serve the model
 * (probes) and whose channel is READY, else over those still connecting; never one in
 * TRANSIENT_FAILURE. When no replica qualifies, ejected or not-serving ones are taken rather
 * than none (the backend then answers for itself). Returns 0, or
 * -1 when no replica can take a call now. */
struct tg_pick {
    const char *model; /* skip replicas not serving it (probes), or NULL */
    int has_version;
    int64_t version;
    struct tg_replica *only; /* this replica, or NULL */
};
int tg_pool_pick(struct tg_pool *pool, uint64_t now_ms, const struct tg_pick *want,
                 struct tg_replica **replica, struct tg_channel **channel);

#endif /* TG_POOL_H */
