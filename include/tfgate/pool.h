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

struct tg_replica {
    char *target; /* as configured */
    size_t n_channels;
    struct tg_channel *channels; /* owned */
    atomic_uint next;            /* round-robin over channels */
    atomic_ullong calls;         /* calls started on this replica */
    atomic_llong inflight;       /* calls started and not yet completed */
};

struct tg_pool {
    const struct tg_pool_cfg *cfg; /* points into the config snapshot the pools hold */
    size_t n_replicas;
    struct tg_replica *replicas; /* owned */
    atomic_uint next;            /* round-robin over replicas */
};

struct tg_pools {
    struct tg_config *config; /* a reference */
    size_t n_pools;
    struct tg_pool *pools; /* owned, in config order */
};

/* Creates every pool's channels and starts connecting them. Returns NULL with a message in
 * |err| (a TLS file that cannot be read). Call after grpc_init(). */
struct tg_pools *tg_pools_new(struct tg_config *config, char *err, size_t errlen);
void tg_pools_free(struct tg_pools *pools);

/* The pool and route for |model| (exact route, else "*"), or NULL when no route matches. */
struct tg_pool *tg_pools_route(struct tg_pools *pools, const char *model,
                               const struct tg_route_cfg **route);

/* Picks a replica and channel: round-robin over replicas whose channel is READY, else over
 * those still connecting; never one in TRANSIENT_FAILURE. Returns 0, or -1 when no replica
 * can take a call now. */
int tg_pool_pick(struct tg_pool *pool, struct tg_replica **replica, struct tg_channel **channel);

#endif /* TG_POOL_H */
