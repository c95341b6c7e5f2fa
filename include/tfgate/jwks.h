/*
 * jwks.h - where an identity provider's verification keys come from (config.h,
 * tg_auth_provider_cfg): inline JWKs, a JWK set file, and an https:// JWK set URI, merged into
 * one key set (jwt.h).
 *
 *   - the file is read when the configuration is loaded: at start and on every SIGHUP
 *     reload (a file that no longer loads fails the reload, and the running keys stay);
 *   - the URI is fetched by one background thread for all providers (libcurl: HTTPS only, 5 s
 *     timeout, 1 MiB at most), every jwks_refresh_s, and sooner when a token names an unknown
 *     kid (tg_jwks_want_refresh: at most once per jwks_min_refresh_s). A failed fetch keeps the
 *     last good keys and is retried after jwks_min_refresh_s. Nothing on the request path waits
 *     for the network.
 *   - before the URI's first successful fetch a provider with no other keys has none:
 *     tg_jwks_get returns NULL and the caller answers 503 / UNAVAILABLE (it cannot decide).
 *
 * Threading: tg_jwks_get and tg_jwks_want_refresh from any thread (workers); the rest from the
 * main thread. Key sets are swapped under a mutex and reference-counted.
 */
#ifndef TG_JWKS_H
#define TG_JWKS_H

#include <stddef.h>

struct tg_auth_provider_cfg;
struct tg_jwks;
struct tg_jwks_fetcher;
struct tg_jwt_keyset;

/* Loads the inline keys and the file, plus, on a reload, the URI's last good set from |prev|
 * (the same provider in the running configuration, or NULL) when the URI is the same. Returns
 * NULL with |err| set when they do not load (or when the provider has neither those nor a
 * URI). */
struct tg_jwks *tg_jwks_new(const struct tg_auth_provider_cfg *pc, struct tg_jwks *prev, char *err,
                            size_t errlen);
void tg_jwks_free(struct tg_jwks *j);

/* The current key set, referenced (tg_jwt_keyset_unref it), or NULL when none was loaded. */
struct tg_jwt_keyset *tg_jwks_get(struct tg_jwks *j);

/* A token named a kid no key has: fetch the URI again soon (no-op without a URI). */
void tg_jwks_want_refresh(struct tg_jwks *j);

/* Starts the thread fetching every set of |sets| that has a URI (none: returns NULL).
 * |changed| runs on that thread whenever a set's keys change. */
struct tg_jwks_fetcher *tg_jwks_fetcher_start(struct tg_jwks **sets, size_t n,
                                              void (*changed)(void *arg), void *arg);
void tg_jwks_fetcher_stop(struct tg_jwks_fetcher *f);

#endif /* TG_JWKS_H */
