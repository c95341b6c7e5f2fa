/*
 * rest.h - TF Serving's REST API (/v1/models/...), see rest.c. Loop thread only.
 */
#ifndef TG_REST_H
#define TG_REST_H

#include <stddef.h>
#include <stdint.h>

struct tg_arena;
struct tg_handler;
struct tg_worker;

extern const struct tg_handler tg_rest_handler;

/* Frees the worker's signature cache (at worker exit). */
void tg_rest_cache_free(struct tg_worker *w);
/* A reload may route models elsewhere: every signature is fetched again before its next use
 * (entries stay allocated until replaced). */
void tg_rest_cache_expire(struct tg_worker *w);

#endif /* TG_REST_H */
