/*
 * worker.h - one worker: an event-loop thread (libuv) that owns its connections, streams and
 * the gRPC calls they start, plus a pump thread that blocks on the worker's gRPC completion
 * queue and hands every completion to the loop through the mailbox.
 *
 *   loop thread: accept, TLS, HTTP/1.1 and HTTP/2, handlers, grpc_call_start_batch
 *   pump thread: grpc_completion_queue_next -> tg_worker_post (nothing else)
 *
 * Nothing mutable is shared between workers: the gateway (config, pools, listeners) is
 * read-only after start, and counters that several workers touch are atomics.
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

struct tg_listener {
    int fd;           /* listening socket, shared by every worker's poll */
    int admin;        /* the admin listener: /metrics, /healthz, /readyz only */
    SSL_CTX *ssl_ctx; /* NULL for cleartext (HTTP/1.1 and h2c); owned */
    char *name;       /* "127.0.0.1:8501" with the bound port */
};

/* What all workers share; built by main before the workers start, read-only after. */
struct tg_gateway {
    struct tg_config *config; /* a reference */
    struct tg_pools *pools;
    struct tg_auth *auth;           /* NULL: no authentication configured */
    struct tg_ratelimit *ratelimit; /* NULL: no rate limits configured */
    size_t n_listeners;
    struct tg_listener *listeners;
    size_t n_workers;
    struct tg_worker **workers;
    atomic_int listeners_released; /* workers that stopped polling the listeners (drain) */
};

struct tg_worker {
    int id;
    struct tg_gateway *gw;
    const struct tg_limits *limits; /* gw->config->limits */
    pthread_t thread;
    uv_loop_t loop;

    /* mailbox: an intrusive list under a mutex plus a uv_async wakeup; a burst of posts
     * costs one wakeup (the async coalesces, and only the empty -> non-empty post sends) */
    uv_async_t async;
    pthread_mutex_t mb_mu;
    struct tg_msg *mb_head, *mb_tail;

    uv_prepare_t prepare; /* before the loop sleeps: flush output, close what is closing */
    uv_timer_t tick;      /* sweep: header, request and idle timeouts; drain deadline */
    uv_poll_t *listen_polls;
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
    struct h2up *h2up;                /* the native transport's connections (upstream_h2.c) */
    struct tg_rest_cache *rest_cache; /* REST: signatures by model (rest.c) */
    struct tg_auth_cache *auth_cache; /* verified tokens (auth.c) */
    struct rl_redis *rl_redis;        /* the Redis connection of the rate limits (ratelimit.c) */
    struct prober *prober;            /* worker 0: the health probes (health.c) */
    struct tg_metrics_shard *metrics; /* this worker's request series (metrics.c) */

    int draining;
    uint64_t drain_deadline_ms;
    uint64_t next_conn_id;
    uint64_t now_ms; /* loop time, refreshed every iteration */
};

/* Creates a worker (not started). Never NULL. */
struct tg_worker *tg_worker_new(struct tg_gateway *gw, int id);
/* Starts the loop and pump threads. Returns 0 or -1. */
int tg_worker_start(struct tg_worker *w);
/* Any thread: queue |msg| for the loop thread. */
void tg_worker_post(struct tg_worker *w, struct tg_msg *msg);
/* Any thread: stop accepting, ask clients to go away (GOAWAY, Connection: close), finish the
 * requests in flight up to the drain timeout, then stop. */
void tg_worker_drain(struct tg_worker *w);
/* Main thread: waits for the worker to stop and frees it. */
void tg_worker_join_free(struct tg_worker *w);

/* Loop thread: schedule |conn| for output / close before the loop sleeps. */
void tg_worker_mark_dirty(struct tg_worker *w, struct tg_conn *conn);
/* Loop thread: milliseconds on the loop's clock. */
uint64_t tg_worker_now(struct tg_worker *w);

#endif /* TG_WORKER_H */
