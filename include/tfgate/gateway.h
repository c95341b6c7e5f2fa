/*
 * gateway.h - building, publishing and freeing generations (worker.h, struct tg_gen): what
 * SIGHUP does, and what start-up does once.
 *
 * A reload parses the command line and the configuration file again, then builds a complete
 * generation next to the running one: listeners (kept ones are the same sockets; their TLS
 * certificates are loaded again), pools (the running ones, channels and connections
 * included, when nothing about them changed: tg_pools_same; else new ones, with replica
 * state such as health, ejection and counters carried over for the same pool and target),
 * auth (key sets fetched from a URI carried over, so no request waits for the identity
 * provider) and rate limits.
 * Anything that fails (a file, a certificate, a port already taken, a JSON error) rejects the
 * whole reload with the reason and the running generation keeps serving. Only then is the new
 * one published to every worker.
 *
 * What a reload does not change: the number of workers (logged; a restart changes it).
 * Local rate-limit buckets start full in a new generation; Redis-backed ones live in Redis.
 *
 * Threading: the main thread, except tg_gen_unref (any thread).
 */
#ifndef TG_GATEWAY_H
#define TG_GATEWAY_H

#include <stddef.h>

#include "tfgate/worker.h"

struct tg_config;

/* Builds a generation for |cfg| (referenced), reusing |prev|'s listeners and carrying its
 * state where the configuration names the same things (|prev| NULL at start). Returns NULL
 * with a message in |err|. Call after grpc_init(). */
struct tg_gen *tg_gen_new(struct tg_gateway *gw, struct tg_config *cfg, const struct tg_gen *prev,
                          char *err, size_t errlen);

/* SIGHUP: parse |argc|/|argv| again, build, publish. Returns 0, or -1 with |err| (the running
 * generation is untouched). */
int tg_gateway_reload(struct tg_gateway *gw, int argc, char **argv, char *err, size_t errlen);

/* Prints "tfgate listening on ..." for every listener of |g| (start-up). */
void tg_gateway_print_listeners(const struct tg_gen *g);

/* Frees the generations no one uses any more. Main thread; cheap when there are none. */
void tg_gateway_reap(struct tg_gateway *gw);

#endif /* TG_GATEWAY_H */
