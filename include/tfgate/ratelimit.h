/*
 * ratelimit.h - token-bucket request limits per caller and per model (config.h,
 * tg_ratelimit_cfg), for REST and gRPC alike, answered 429 with Retry-After /
 * RESOURCE_EXHAUSTED.
 *
 * Local buckets live in the process (shared by its workers under striped locks). With Redis
 * configured, one Lua script applies all of a request's buckets atomically on the Redis server
 * with the server's clock, so several tfgate replicas share one budget (what Kong's and
 * Envoy's cluster-wide limits do). Each worker has its own Redis connection on its loop
 * (hiredis' libuv adapter): a check is asynchronous, and the request continues when the answer
 * comes. When Redis cannot answer (down, slow past timeout_ms) the local buckets decide, or,
 * with on_failure "deny", the request is refused with 503 / UNAVAILABLE; either way it is
 * logged once per outage, not per request.
 *
 * Threading: tg_ratelimit_* on a worker's loop thread; the local table is shared and locked.
 */
#ifndef TG_RATELIMIT_H
#define TG_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct tg_ratelimit;
struct tg_ratelimit_cfg;
struct tg_stream;
struct tg_worker;

/* A generation's state (the local buckets). NULL when no limit is configured. */
struct tg_ratelimit *tg_ratelimit_new(const struct tg_ratelimit_cfg *cfg);
void tg_ratelimit_free(struct tg_ratelimit *rl);

/* A worker's Redis connection, for its current generation's configuration (worker.h): opened
 * when the loop starts, kept across reloads that name the same server, replaced when one
 * names another, closed when none does. Loop thread. */
void tg_ratelimit_worker_update(struct tg_worker *w);
/* Closes it (pending decisions fall back as if Redis had failed); frees itself once its
 * handles are closed. */
void tg_ratelimit_worker_stop(struct tg_worker *w);

/* Applies the limits for the stream's caller (st->identity) and |model|.
 * Returns 0 when the request may go on now; -1 when it was refused (answered); 1 when the
 * answer is pending: |resume| will run on the loop thread once it is allowed (it is not called
 * when the request is refused, or when the client has gone meanwhile). */
int tg_ratelimit_check(struct tg_stream *st, const char *model,
                       void (*resume)(struct tg_stream *st));

/* Local bucket arithmetic, exposed for unit tests: |*tokens| refilled at |rate| per second
 * over |elapsed_ms| up to |burst|; takes one if it can. Returns 0 when taken, else the
 * milliseconds until one will be there. */
uint64_t tg_bucket_take(double *tokens, double rate, double burst, uint64_t elapsed_ms);

#endif /* TG_RATELIMIT_H */
