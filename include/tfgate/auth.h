/*
 * auth.h - who is calling, and may they: JWT bearer tokens (jwt.h) checked on the request
 * headers, RBAC rules (config.h, tg_rbac_rule_cfg) checked once the handler knows the model,
 * version or label, signature and method. REST and native gRPC go through the same two calls,
 * so one rule decides both alike.
 *
 *   tg_auth_authenticate  headers complete, before any body byte is buffered: the bearer token
 *                         is verified, or found in the worker's cache of verified tokens, and
 *                         the caller's identity (subject, roles) copied into the stream's arena.
 *                         A bad token is answered 401 / UNAUTHENTICATED at once.
 *   tg_auth_authorize     the handler has decoded the request (REST: URL and body; gRPC: the
 *                         message's ModelSpec): rules are applied, deny by default; 403 /
 *                         PERMISSION_DENIED names the model and method, never the rule.
 *
 * Answers: REST 401 with WWW-Authenticate: Bearer (RFC 6750 §3) and TF Serving's
 * {"error": ...} body; gRPC a trailers-only status. Texts come from jwt.h's fixed reasons and
 * never contain the token.
 *
 * Threading: a tg_auth belongs to a generation (worker.h): built by the main thread, read by
 * every worker; its key sets are swapped under a mutex when the key URI is fetched again. The
 * token cache is per worker (w->auth_cache), used on that worker's loop thread only, and
 * emptied when the worker takes a new generation.
 */
#ifndef TG_AUTH_H
#define TG_AUTH_H

#include <stddef.h>
#include <stdint.h>

struct tg_auth;
struct tg_auth_cfg;
struct tg_stream;
struct tg_worker;

/* The caller, in the stream's arena. */
struct tg_identity {
    int anonymous;        /* no token was sent (allowed only for anonymous models) */
    const char *subject;  /* the subject claim, "" when absent */
    const char *provider; /* the provider's name */
    size_t n_roles;
    const char *const *roles;
    const char *const *forward; /* cfg->forward_claims' values, NULL where absent */
};

/* Builds the providers, loads their key sets (files and inline keys) and opens the audit log.
 * On a reload |prev| is the running generation's auth: a provider of the same name and key
 * URI starts with the keys last fetched there. Returns NULL when authentication is off (no
 * providers) with |err| empty, or NULL with |err| set on failure. Main thread. */
struct tg_auth *tg_auth_new(const struct tg_auth_cfg *cfg, const struct tg_auth *prev, char *err,
                            size_t errlen);
/* Main thread, once no stream uses |a| (worker.h: generations). */
void tg_auth_free(struct tg_auth *a);
/* Reopens the audit log's path in place (log rotation when a reload was rejected: an accepted
 * one opens it anew). Main thread; NULL: no-op. */
void tg_auth_reopen_audit(struct tg_auth *a);

/* Loop thread. Returns 0 with st->identity set, or -1 after answering the stream. */
int tg_auth_authenticate(struct tg_stream *st);

/* What a request asks for, as the RBAC rules see it. */
struct tg_auth_target {
    const char *model;
    int has_version;
    int64_t version;
    const char *label;     /* NULL unless a label was asked for */
    const char *signature; /* NULL for methods without one; "" = serving_default */
    uint32_t method;       /* TG_AM_* */
};

/* Loop thread, after tg_auth_authenticate. Returns 0 when allowed, or -1 after answering. */
int tg_auth_authorize(struct tg_stream *st, const struct tg_auth_target *t);

/* What authentication and authorization decided for a stream, for its audit record. */
struct tg_audit {
    int denied;
    const char *reason; /* fixed text: why it was refused, or "" */
    int has_target;     /* |target| was decided on */
    struct tg_auth_target target;
};

/* Writes the stream's audit record (one JSON line: time, request id, subject, roles, model,
 * version or label, signature, method, decision, reason, status, latency; never the token or
 * the body). Called once by the stream when it answers, or with |client_gone| when the client
 * left first. */
void tg_auth_audit(struct tg_stream *st, int client_gone);

struct tg_md;

/* The metadata to send upstream for the caller: the forwarded claims (auth.forward_claims).
 * Writes at most |cap| entries (strings in the stream's arena) and returns how many. */
size_t tg_auth_forward_md(struct tg_stream *st, struct tg_md *out, size_t cap);

/* 1 if |name| is a forwarded claim's metadata name: a client's header of that name must not
 * reach the backend. */
int tg_auth_is_forwarded(const struct tg_auth *a, const char *name);

/* Frees a worker's token cache (worker shutdown). */
void tg_auth_cache_free(struct tg_worker *w);

#endif /* TG_AUTH_H */
