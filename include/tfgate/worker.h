/*
 * worker.h - one worker: an event-loop thread (libuv) that owns its connections, streams and
 * the gRPC calls they start, plus a pump thread that blocks on the worker's gRPC completion
 * queue and hands every completion to the loop through the mailbox.
 *
 *   loop thread: accept, TLS, HTTP/1.1 and HTTP/2, handlers, grpc_call_start_batch
 *   pump thread: grpc_completion_queue_next -> tg_worker_post (nothing else)
 *
 * Nothing mutable is shared between workers: a generation (config, pools, listeners) is
 * read-only once published, and counters that several workers touch are atomics.
 * Thread affinity: tg_worker_post and tg_worker_drain may be called from any thread; all
 * else on the worker's loop thread, or by the main thread before start and after join.
 */
#ifndef TG_WORKER_H
#define TG_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <openssl/ssl.h>
#include <uv.h>

struct tg_config;
struct tg_conn;
struct tg_limits;
struct tg_pools;
struct tg_upstream_call;
struct h2up;
struct tg_rest_cache;
struct tg_auth;
struct tg_auth_cache;
struct tg_ratelimit;
struct rl_redis;
struct prober;
struct watch;
struct tg_lpoll;
struct tg_metrics_shard;

/* A message for a worker's loop thread. The poster owns it until deliver() runs. */
struct tg_msg {
    struct tg_msg *next;
    void (*deliver)(struct tg_msg *msg); /* runs on the loop thread */
};

/* A gRPC completion-queue tag: postable as is. */
struct tg_cq_tag {
    struct tg_msg msg; /* first member */
    int ok;            /* grpc_event.success, written by the pump before posting */
};

/* A listening socket. Generations list the listeners their configuration names; one that a
 * reload keeps (same address, same admin role) is the same object, so its socket and backlog
 * are never closed under the clients. Every worker polls every listener of its generation;
 * the last worker to stop polling one (a reload removed it, or the gateway drains) closes the
 * socket. */
struct tg_listener {
    int fd;             /* listening socket; -1 once closed */
    int admin;          /* the admin listener: /metrics, /healthz, /readyz only */
    char *key;          /* what identifies it across reloads: the configured address and role */
    char *name;         /* "127.0.0.1:8501" with the bound port */
    int tls;            /* TLS (h2 and http/1.1 by ALPN); else cleartext HTTP/1.1 and h2c */
    atomic_int refs;    /* generations listing it, plus one per worker polling it */
    atomic_int pollers; /* workers polling it */
    pthread_mutex_t mu; /* guards ssl_ctx: a reload swaps in the new certificate */
    SSL_CTX *ssl_ctx;   /* NULL for cleartext; owned (connections hold their own SSL refs) */
};

/* Loop thread of a worker: a new SSL for an accepted connection on |l| (NULL on failure). */
SSL *tg_listener_ssl_new(struct tg_listener *l);
void tg_listener_ref(struct tg_listener *l);
/* Frees |l| with the last reference (its socket must be closed by then). */
void tg_listener_unref(struct tg_listener *l);

/*
 * A generation: one loaded configuration and everything built from it (pools and their
 * channels, auth and RBAC, rate limits, listeners). Immutable once published. A reload
 * builds a whole new generation next to the old one and publishes it; new streams take the
 * new one, streams in flight keep the one they started with, and the old one is freed when the
 * last user lets go. References: the gateway holds the current one, each worker the one it
 * serves and each generation it still has streams on (struct tg_wgen counts those without
 * atomics). The last unref (any thread) hands it to the main thread, which frees it
 * (tg_gateway_reap): freeing joins the key fetcher's thread and destroys gRPC channels, which
 * a worker's loop must not wait for.
 */
struct tg_gen {
    atomic_int refs;
    uint64_t id; /* 1 at start, +1 per successful reload */
    struct tg_gateway *gw;
    struct tg_config *config; /* a reference */
    struct tg_pools *pools;
    struct tg_auth *auth;           /* NULL: no authentication configured */
    struct tg_ratelimit *ratelimit; /* NULL: no rate limits configured */
    size_t n_listeners;
    struct tg_listener **listeners; /* referenced; data-plane listeners first, admin last */
    struct tg_gen *reap_next;
};

void tg_gen_ref(struct tg_gen *g);
void tg_gen_unref(struct tg_gen *g);

/* What all workers share. The main thread owns it; workers read |gen| only through the
 * messages that publish it (tg_worker_set_gen). */
struct tg_gateway {
    struct tg_gen *gen; /* the current generation (main thread) */
    size_t n_workers;
    struct tg_worker **workers;
    pthread_mutex_t reap_mu;
    struct tg_gen *reap; /* generations nobody uses any more, for the main thread to free */
};

/* A worker's view of one generation: the per-worker state built for it (the native
 * transport's connections, worker 0's health prober) and how many of the worker's streams and
 * probers still use it. Loop thread only. */
struct tg_wgen {
    struct tg_gen *gen; /* a reference */
    struct h2up *h2up;  /* native transport connections for gen->pools (upstream_h2.c) */
    struct prober *prober;
    size_t users;
    struct tg_wgen *next; /* the worker's retired list */
};

struct tg_worker {
    int id;
    struct tg_gateway *gw;
    struct tg_wgen *cur;            /* the generation new connections and streams take */
    struct tg_wgen *retired;        /* older ones still in use (streams in flight) */
    const struct tg_limits *limits; /* cur->gen->config->limits */
    pthread_t thread;
    uv_loop_t loop;

    /* mailbox: an intrusive list under a mutex plus a uv_async wakeup; a burst of posts
     * costs one wakeup (the async coalesces, and only the empty -> non-empty post sends) */
    uv_async_t async;
    pthread_mutex_t mb_mu;
    struct tg_msg *mb_head, *mb_tail;

    uv_prepare_t prepare; /* before the loop sleeps: flush output, close what is closing */
    uv_timer_t tick;      /* sweep: header, request and idle timeouts; drain deadline */
    struct tg_lpoll **listen_polls; /* one per listener of cur->gen, same order */
    size_t n_listen_polls;

    grpc_completion_queue *cq;
    pthread_t pump;
    struct tg_cq_tag pump_exit; /* posted by the pump when the queue is shut down */
    int cq_shutdown;            /* grpc_completion_queue_shutdown called */

    struct tg_conn *conns; /* every open connection (owned) */
    size_t n_conns;
    struct tg_conn *dirty;          /* connections with output to produce or to close */
    struct tg_upstream_call *calls; /* calls in flight (owned by their streams) */
    size_t n_calls;
    struct tg_rest_cache *rest_cache; /* REST: signatures by model (rest.c) */
    struct tg_auth_cache *auth_cache; /* verified tokens (auth.c) */
    struct rl_redis *rl_redis;        /* the Redis connection of the rate limits (ratelimit.c) */
    struct tg_metrics_shard *metrics; /* this worker's request series (metrics.c) */
    struct watch *watches;            /* grpc.health.v1 Watch streams (health.c) */

    int draining;
    uint64_t drain_deadline_ms;
    uint64_t next_conn_id;
    uint64_t now_ms; /* loop time, refreshed every iteration */
};

/* Creates a worker (not started) serving |gen| (referenced). Never NULL. */
struct tg_worker *tg_worker_new(struct tg_gateway *gw, int id, struct tg_gen *gen);
/* Starts the loop and pump threads. Returns 0 or -1. */
int tg_worker_start(struct tg_worker *w);
/* Any thread: queue |msg| for the loop thread. */
void tg_worker_post(struct tg_worker *w, struct tg_msg *msg);
/* Any thread: stop accepting, ask clients to go away (GOAWAY, Connection: close), finish the
 * requests in flight up to the drain timeout, then stop. */
void tg_worker_drain(struct tg_worker *w);
/* Any thread: new connections and streams on this worker take |gen| from now on (the worker
 * takes its own reference): listeners it no longer names stop being polled, new ones start. */
void tg_worker_set_gen(struct tg_worker *w, struct tg_gen *gen);
/* Loop thread: a stream or prober starts / stops using |wg|. A retired generation with no
 * user left is freed (its connections closed, the worker's reference dropped) in the
 * before-sleep hook, never inside the callback that released it. */
struct tg_wgen *tg_worker_use(struct tg_worker *w);
void tg_worker_release(struct tg_worker *w, struct tg_wgen *wg);
/* Main thread: waits for the worker to stop and frees it. */
void tg_worker_join_free(struct tg_worker *w);

/* Loop thread: schedule |conn| for output / close before the loop sleeps. */
void tg_worker_mark_dirty(struct tg_worker *w, struct tg_conn *conn);
/* Loop thread: milliseconds on the loop's clock. */
uint64_t tg_worker_now(struct tg_worker *w);

#endif /* TG_WORKER_H */
