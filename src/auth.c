/*
 * auth.c - see auth.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <grpc/status.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/error.h"
#include "tfgate/jwks.h"
#include "tfgate/jwt.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/stream.h"
#include "tfgate/upstream.h"
#include "tfgate/worker.h"

#define CACHE_TTL_MS   (300 * 1000) /* a verified token is re-verified at least this often */
#define MAX_ROLES      64
#define MAX_ROLE_BYTES 256

struct provider {
    const struct tg_auth_provider_cfg *cfg;
    struct tg_jwt_policy policy;
    struct tg_jwks *keys; /* jwks.h: swapped under its own lock */
};

struct tg_auth {
    const struct tg_auth_cfg *cfg;
    size_t n;
    struct provider *p;
    struct tg_jwks **sets; /* the providers' keys, for the fetcher */
    struct tg_jwks_fetcher *fetcher;
    atomic_uint generation; /* bumped when keys change: cached verifications die with it */
    int audit_fd;           /* -1: no audit log; replaced in place (dup2) on reopen */
};

void tg_auth_reopen_audit(struct tg_auth *a)
{
    if (a == NULL || a->audit_fd < 0 || strcmp(a->cfg->audit_log, "-") == 0)
        return;
    if (tg_log_file_reopen(a->audit_fd, a->cfg->audit_log, STDERR_FILENO) != 0)
        tg_log(TG_LOG_WARN, "auth", "audit_log %s: %s; still writing the old file",
               a->cfg->audit_log, strerror(errno));
}

/* ---- providers ---- */

static void keys_changed(void *arg)
{
    struct tg_auth *a = arg;
    tg_metrics_event(TG_EV_JWKS_REFRESH);
    atomic_fetch_add(&a->generation, 1);
}

struct tg_auth *tg_auth_new(const struct tg_auth_cfg *cfg, const struct tg_auth *prev, char *err,
                            size_t errlen)
{
    err[0] = '\0';
    if (cfg->n_providers == 0)
        return NULL;
    struct tg_auth *a = tg_xcalloc(1, sizeof(*a));
    a->cfg = cfg;
    a->audit_fd = -1;
    if (cfg->audit_log != NULL &&
        (a->audit_fd = tg_log_file_open(cfg->audit_log, STDERR_FILENO)) < 0) {
        snprintf(err, errlen, "audit_log %s: %s", cfg->audit_log, strerror(errno));
        tg_auth_free(a);
        return NULL;
    }
    a->p = tg_xcalloc(cfg->n_providers, sizeof(*a->p));
    a->sets = tg_xcalloc(cfg->n_providers, sizeof(*a->sets));
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct provider *p = &a->p[i];
        p->cfg = &cfg->providers[i];
        p->policy = (struct tg_jwt_policy){
            .issuer = p->cfg->issuer,
            .audiences = (const char *const *)p->cfg->audiences,
            .n_audiences = p->cfg->n_audiences,
            .skew_s = p->cfg->clock_skew_s,
            .max_token_bytes = cfg->max_token_bytes,
        };
        struct tg_jwks *prev_keys = NULL;
        for (size_t k = 0; prev != NULL && k < prev->n && prev_keys == NULL; k++) {
            if (strcmp(prev->p[k].cfg->name, p->cfg->name) == 0)
                prev_keys = prev->p[k].keys;
        }
        if ((p->keys = tg_jwks_new(p->cfg, prev_keys, err, errlen)) == NULL) {
            tg_auth_free(a);
            return NULL;
        }
        a->sets[a->n++] = p->keys;
        struct tg_jwt_keyset *ks = tg_jwks_get(p->keys);
        tg_log(TG_LOG_INFO, "auth", "provider '%s' (iss %s): %zu key(s)%s%s", p->cfg->name,
               p->cfg->issuer, ks ? tg_jwt_keyset_size(ks) : 0,
               p->cfg->jwks_uri ? ", and fetching " : "", p->cfg->jwks_uri ? p->cfg->jwks_uri : "");
        tg_jwt_keyset_unref(ks);
    }
    a->fetcher = tg_jwks_fetcher_start(a->sets, a->n, keys_changed, a);
    return a;
}

void tg_auth_free(struct tg_auth *a)
{
    if (a == NULL)
        return;
    tg_jwks_fetcher_stop(a->fetcher);
    for (size_t i = 0; i < a->n; i++)
        tg_jwks_free(a->p[i].keys);
    if (a->audit_fd >= 0)
        close(a->audit_fd);
    free(a->sets);
    free(a->p);
    free(a);
}

/* ---- the worker's cache of verified tokens: SHA-256 of the token -> identity ---- */

struct cached {
    uint8_t hash[32];
    int64_t exp;       /* the token's exp: never served past it */
    uint64_t until_ms; /* loop clock: verify again after this */
    unsigned generation;
    const struct provider *prov;
    char **forward; /* a->cfg->n_forward values, NULL where the claim is absent */
    char *subject;
    size_t n_roles;
    char **roles;
    struct cached *hnext;       /* bucket chain */
    struct cached *prev, *next; /* LRU list, most recent first */
};

struct tg_auth_cache {
    size_t nb; /* buckets, a power of two */
    struct cached **buckets;
    struct cached *head, *tail;
    size_t n, max;
};

static void cached_free(struct cached *c)
{
    if (c->forward != NULL) {
        for (size_t i = 0; c->forward[i] != (char *)-1; i++)
            free(c->forward[i]);
        free(c->forward);
    }
    free(c->subject);
    for (size_t i = 0; i < c->n_roles; i++)
        free(c->roles[i]);
    free(c->roles);
    free(c);
}

static struct cached **bucket_of(struct tg_auth_cache *c, const uint8_t *hash)
{
    uint64_t h;
    memcpy(&h, hash, sizeof(h));
    return &c->buckets[h & (c->nb - 1)];
}

static void lru_unlink(struct tg_auth_cache *c, struct cached *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct tg_auth_cache *c, struct cached *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

static void cache_remove(struct tg_auth_cache *c, struct cached *e)
{
    struct cached **pp = bucket_of(c, e->hash);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->n--;
    cached_free(e);
}

static struct tg_auth_cache *cache_of(struct tg_worker *w, size_t max)
{
    if (w->auth_cache == NULL) {
        struct tg_auth_cache *c = tg_xcalloc(1, sizeof(*c));
        c->max = max ? max : 1;
        for (c->nb = 16; c->nb < c->max; c->nb *= 2)
            ;
        c->buckets = tg_xcalloc(c->nb, sizeof(*c->buckets));
        w->auth_cache = c;
    }
    return w->auth_cache;
}

void tg_auth_cache_free(struct tg_worker *w)
{
    struct tg_auth_cache *c = w->auth_cache;
    if (c == NULL)
        return;
    while (c->head != NULL) {
        struct cached *e = c->head;
        c->head = e->next;
        cached_free(e);
    }
    free(c->buckets);
    free(c);
    w->auth_cache = NULL;
}

/* ---- identity from claims ---- */

/* A claim by dotted path ("realm_access.roles"). */
static json_t *claim_at(json_t *claims, const char *path)
{
    char seg[128];
    json_t *v = claims;
    while (v != NULL && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(seg) || !json_is_object(v))
            return NULL;
        memcpy(seg, path, n);
        seg[n] = '\0';
        v = json_object_get(v, seg);
        path += n + (path[n] == '.');
    }
    return v;
}

static void add_role(struct cached *e, const char *r, size_t n)
{
    if (n == 0 || n > MAX_ROLE_BYTES || e->n_roles == MAX_ROLES)
        return;
    e->roles[e->n_roles++] = tg_xstrndup(r, n);
}

/* A claim as metadata text: strings as they are, other values as compact JSON; NULL when
 * absent or not printable ASCII (gRPC refuses such metadata). */
static char *claim_text(json_t *v)
{
    if (v == NULL)
        return NULL;
    char *s = json_is_string(v) ? tg_xstrdup(json_string_value(v))
                                : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    for (size_t i = 0; s != NULL && s[i]; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e || i >= 1024) {
            free(s);
            return NULL;
        }
    }
    return s;
}

/* Roles: a list of strings ("roles", "groups"), or one space-separated string ("scope"). */
static void read_identity(const struct tg_auth_cfg *cfg, json_t *claims, struct cached *e)
{
    e->forward = tg_xcalloc(cfg->n_forward + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->n_forward; i++)
        e->forward[i] = claim_text(claim_at(claims, cfg->forward_claims[i]));
    e->forward[cfg->n_forward] = (char *)-1; /* the end, for cached_free */
    json_t *sub = claim_at(claims, cfg->subject_claim), *roles = claim_at(claims, cfg->roles_claim);
    e->subject = tg_xstrdup(json_is_string(sub) ? json_string_value(sub) : "");
    e->roles = tg_xcalloc(MAX_ROLES, sizeof(char *));
    if (json_is_array(roles)) {
        size_t i;
        json_t *r;
        json_array_foreach(roles, i, r)
        {
            if (json_is_string(r))
                add_role(e, json_string_value(r), json_string_length(r));
        }
    } else if (json_is_string(roles)) {
        const char *s = json_string_value(roles);
        while (*s) {
            size_t sp = strspn(s, " ");
            s += sp;
            size_t n = strcspn(s, " ");
            add_role(e, s, n);
            s += n;
        }
    }
}

/* ---- answers ---- */

/* |code|: enum tg_auth_refusal (metrics.h) */
static void unauthenticated(struct tg_stream *st, const char *reason, int code)
{
    char msg[200];
    int had_token = code != TG_AR_MISSING_TOKEN;
    tg_metrics_auth_refusal(code);
    if (st->audit != NULL) {
        st->audit->denied = 1;
        st->audit->reason = reason;
    }
    snprintf(msg, sizeof(msg), "tfgate: unauthenticated: %s", reason);
    if (tg_stream_is_grpc(st) && st->http2) {
        tg_stream_respond_grpc_status(st, GRPC_STATUS_UNAUTHENTICATED, msg);
        return;
    }
    char www[256];
    /* RFC 6750 §3.1: no error code when the request carried no credentials */
    if (had_token)
        snprintf(www, sizeof(www),
                 "Bearer realm=\"tfgate\", error=\"invalid_token\", "
                 "error_description=\"%s\"",
                 reason);
    else
        snprintf(www, sizeof(www), "Bearer realm=\"tfgate\"");
    tg_stream_add_resp_header(st, "www-authenticate", www, strlen(www));
    tg_stream_respond_json_error(st, 401, msg);
}

/* ---- authentication ---- */

/* The token of "Authorization: Bearer <token>". Returns 1 with the token, 0 when there is no
 * Authorization header, -1 with |why| when there is one we cannot use. */
static int bearer(const struct tg_stream *st, const char **tok, size_t *len, const char **why)
{
    const struct tg_header *h = NULL;
    for (size_t i = 0; i < st->n_headers; i++) {
        if (strcmp(st->headers[i].name, "authorization") != 0)
            continue;
        if (h != NULL) {
            *why = "more than one Authorization header";
            return -1;
        }
        h = &st->headers[i];
    }
    if (h == NULL)
        return 0;
    const char *v = h->value, *end = h->value + h->value_len;
    while (v < end && *v == ' ')
        v++;
    if (end - v < 7 || strncasecmp(v, "bearer ", 7) != 0) {
        *why = "the Authorization scheme is not Bearer";
        return -1;
    }
    v += 7;
    while (v < end && *v == ' ')
        v++;
    while (end > v && end[-1] == ' ')
        end--;
    if (v == end || memchr(v, ' ', (size_t)(end - v)) != NULL) {
        *why = "malformed token";
        return -1;
    }
    *tok = v;
    *len = (size_t)(end - v);
    return 1;
}

static const struct tg_identity *identity_from(struct tg_stream *st, const struct cached *e)
{
    struct tg_identity *id = TG_ARENA_NEW(&st->arena, struct tg_identity);
    const char **roles =
        tg_arena_alloc(&st->arena, (e->n_roles + 1) * sizeof(char *), _Alignof(char *));
    id->subject = tg_arena_strndup(&st->arena, e->subject, strlen(e->subject));
    id->provider = e->prov->cfg->name;
    for (size_t i = 0; i < e->n_roles; i++)
        roles[i] = tg_arena_strndup(&st->arena, e->roles[i], strlen(e->roles[i]));
    id->roles = roles;
    id->n_roles = e->n_roles;
    size_t nf = e->prov != NULL ? st->gen->auth->cfg->n_forward : 0;
    const char **fw = tg_arena_alloc(&st->arena, (nf + 1) * sizeof(char *), _Alignof(char *));
    for (size_t i = 0; i < nf; i++)
        fw[i] = e->forward[i] ? tg_arena_strndup(&st->arena, e->forward[i], strlen(e->forward[i]))
                              : NULL;
    id->forward = fw;
    return id;
}

/* Verifies |tok| and caches the result. Returns the entry, or NULL with |*st_out| set. */
static struct cached *verify(struct tg_auth *a, struct tg_auth_cache *c, const uint8_t *hash,
                             const char *tok, size_t len, uint64_t now_ms,
                             enum tg_jwt_status *st_out, int *no_keys)
{
    struct tg_jwt_token t;
    struct provider *p = NULL;
    int64_t exp;

    *st_out = tg_jwt_decode(tok, len, a->cfg->max_token_bytes, &t);
    if (*st_out != TG_JWT_OK)
        return NULL;
    const char *iss = tg_jwt_issuer(&t);
    for (size_t i = 0; iss != NULL && i < a->n; i++) {
        if (strcmp(a->p[i].cfg->issuer, iss) == 0)
            p = &a->p[i];
    }
    if (p == NULL) {
        tg_jwt_token_clear(&t);
        *st_out = TG_JWT_EISS;
        return NULL;
    }
    struct tg_jwt_keyset *ks = tg_jwks_get(p->keys);
    if (ks == NULL) { /* a key URI not fetched yet: we cannot decide */
        tg_jwt_token_clear(&t);
        *no_keys = 1;
        return NULL;
    }
    *st_out = tg_jwt_verify(ks, &p->policy, &t, (int64_t)time(NULL), &exp);
    tg_jwt_keyset_unref(ks);
    if (*st_out == TG_JWT_EKID)
        tg_jwks_want_refresh(p->keys); /* maybe the provider rotated: look again soon */
    if (*st_out != TG_JWT_OK) {
        tg_jwt_token_clear(&t);
        return NULL;
    }
    struct cached *e = tg_xcalloc(1, sizeof(*e));
    memcpy(e->hash, hash, 32);
    e->exp = exp;
    e->until_ms = now_ms + CACHE_TTL_MS;
    e->generation = atomic_load(&a->generation);
    e->prov = p;
    read_identity(a->cfg, t.claims, e);
    tg_jwt_token_clear(&t);

    if (c == NULL)
        return e; /* no cache: the caller frees it */
    if (c->n == c->max)
        cache_remove(c, c->tail); /* least recently used */
    struct cached **b = bucket_of(c, hash);
    e->hnext = *b;
    *b = e;
    lru_push(c, e);
    c->n++;
    return e;
}

int tg_auth_authenticate(struct tg_stream *st)
{
    struct tg_auth *a = st->gen->auth;
    const char *tok = NULL, *why = NULL;
    size_t len = 0;
    uint8_t hash[32] = {0};
    enum tg_jwt_status status;
    int no_keys = 0;

    if (a == NULL)
        return 0;
    st->audit = TG_ARENA_NEW(&st->arena, struct tg_audit);
    st->audit->reason = "";
    int r = bearer(st, &tok, &len, &why);
    if (r < 0) {
        unauthenticated(st, why, TG_AR_BAD_AUTHORIZATION);
        return -1;
    }
    if (r == 0) {
        if (a->cfg->n_anonymous_models == 0) {
            unauthenticated(st, "missing bearer token", TG_AR_MISSING_TOKEN);
            return -1;
        }
        /* maybe an anonymous model: tg_auth_authorize decides once the model is known */
        struct tg_identity *id = TG_ARENA_NEW(&st->arena, struct tg_identity);
        id->anonymous = 1;
        id->subject = "";
        id->provider = "";
        st->identity = id;
        return 0;
    }
    if (len > a->cfg->max_token_bytes) { /* before hashing or decoding anything */
        unauthenticated(st, tg_jwt_strerror(TG_JWT_ETOOLARGE), TG_AR_JWT + TG_JWT_ETOOLARGE);
        return -1;
    }
    /* token_cache_entries 0: no cache, every request verifies (for measuring that cost) */
    struct tg_auth_cache *c =
        a->cfg->token_cache_entries ? cache_of(st->w, a->cfg->token_cache_entries) : NULL;
    uint64_t now_ms = tg_worker_now(st->w);
    struct cached *e = NULL;
    if (c != NULL) {
        EVP_Digest(tok, len, hash, NULL, EVP_sha256(), NULL);
        e = *bucket_of(c, hash);
        while (e != NULL && memcmp(e->hash, hash, 32) != 0)
            e = e->hnext;
    }
    if (e != NULL && (e->until_ms <= now_ms || e->exp <= (int64_t)time(NULL) ||
                      e->generation != atomic_load(&a->generation))) {
        cache_remove(c, e); /* stale: verify again (it may still pass, within the skew) */
        e = NULL;
    }
    if (e != NULL) {
        lru_unlink(c, e);
        lru_push(c, e);
    } else if ((e = verify(a, c, hash, tok, len, now_ms, &status, &no_keys)) == NULL) {
        if (no_keys) {
            if (st->audit != NULL) {
                st->audit->denied = 1;
                st->audit->reason = "signing keys not available";
            }
            tg_metrics_auth_refusal(TG_AR_KEYS_UNAVAILABLE);
            tg_stream_respond_error(st, TG_EUNAVAILABLE,
                                    "tfgate: the identity provider's keys are not available yet");
            return -1;
        }
        /* the path without its query string: a client may have put a token there */
        size_t plen = st->path ? strcspn(st->path, "?") : 0;
        tg_log(TG_LOG_INFO, "auth", "refused %s %.*s: %s", st->method ? st->method : "-",
               (int)(plen > 200 ? 200 : plen), st->path ? st->path : "", tg_jwt_strerror(status));
        unauthenticated(st, tg_jwt_strerror(status), TG_AR_JWT + (int)status);
        return -1;
    }
    st->identity = identity_from(st, e);
    if (c == NULL)
        cached_free(e);
    tg_metrics_event(TG_EV_AUTH_OK);
    return 0;
}

/* ---- authorization ---- */

static int in_list(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return 1;
    }
    return 0;
}

static int rule_allows(const struct tg_rbac_rule_cfg *r, const struct tg_identity *id,
                       const struct tg_auth_target *t)
{
    if (!(r->methods & t->method))
        return 0;
    if (!in_list(r->models, r->n_models, "*") && !in_list(r->models, r->n_models, t->model))
        return 0;
    if (!in_list(r->roles, r->n_roles, "*")) {
        size_t i;
        for (i = 0; i < id->n_roles; i++) {
            if (in_list(r->roles, r->n_roles, id->roles[i]))
                break;
        }
        if (i == id->n_roles)
            return 0;
    }
    if (r->n_versions > 0 && !in_list(r->versions, r->n_versions, "*")) {
        char num[24];
        const char *want = "latest";
        if (t->has_version) {
            snprintf(num, sizeof(num), "%lld", (long long)t->version);
            want = num;
        } else if (t->label != NULL) {
            want = t->label;
        }
        if (!in_list(r->versions, r->n_versions, want))
            return 0;
    }
    if (t->signature != NULL && r->n_signatures > 0 &&
        !in_list(r->signatures, r->n_signatures, "*") &&
        !in_list(r->signatures, r->n_signatures,
                 t->signature[0] ? t->signature : "serving_default"))
        return 0;
    return 1;
}

int tg_auth_authorize(struct tg_stream *st, const struct tg_auth_target *t)
{
    struct tg_auth *a = st->gen->auth;
    const struct tg_identity *id = st->identity;

    if (a == NULL || id == NULL)
        return 0;
    if (st->audit != NULL) {
        st->audit->has_target = 1;
        st->audit->target = *t;
    }
    if (id->anonymous) {
        if (t->method != TG_AM_RELOAD &&
            in_list(a->cfg->anonymous_models, a->cfg->n_anonymous_models, t->model))
            return 0;
        unauthenticated(st, "missing bearer token", TG_AR_MISSING_TOKEN);
        return -1;
    }
    if (!a->cfg->rbac)
        return 0; /* no rules: every authenticated caller may call everything */
    for (size_t i = 0; i < a->cfg->n_rules; i++) {
        if (rule_allows(&a->cfg->rules[i], id, t))
            return 0;
    }
    char msg[400];
    snprintf(msg, sizeof(msg), "tfgate: permission denied: %s on model '%.200s'",
             tg_auth_method_name(t->method), t->model);
    if (st->audit != NULL) {
        st->audit->denied = 1;
        st->audit->reason = "no rule grants it";
    }
    tg_metrics_auth_refusal(TG_AR_DENIED);
    tg_log(TG_LOG_INFO, "auth", "denied subject=%.100s %s model=%.200s", id->subject,
           tg_auth_method_name(t->method), t->model);
    if (tg_stream_is_grpc(st) && st->http2)
        tg_stream_respond_grpc_status(st, GRPC_STATUS_PERMISSION_DENIED, msg);
    else
        tg_stream_respond_json_error(st, 403, msg);
    return -1;
}

/* ---- claims upstream ---- */

size_t tg_auth_forward_md(struct tg_stream *st, struct tg_md *out, size_t cap)
{
    const struct tg_auth *a = st->gen->auth;
    const struct tg_identity *id = st->identity;
    size_t n = 0;
    if (a == NULL || id == NULL || id->anonymous || id->forward == NULL)
        return 0;
    for (size_t i = 0; i < a->cfg->n_forward && n < cap; i++) {
        if (id->forward[i] == NULL)
            continue;
        out[n++] = (struct tg_md){a->cfg->forward_headers[i], strlen(a->cfg->forward_headers[i]),
                                  id->forward[i], strlen(id->forward[i])};
    }
    return n;
}

int tg_auth_is_forwarded(const struct tg_auth *a, const char *name)
{
    return a != NULL && in_list(a->cfg->forward_headers, a->cfg->n_forward, name);
}

/* ---- audit ---- */

static int grpc_status_of(const struct tg_stream *st)
{
    for (size_t i = 0; i < st->n_trailers; i++) {
        if (strcmp(st->trailers[i].name, "grpc-status") == 0)
            return atoi(st->trailers[i].value);
    }
    return -1;
}

void tg_auth_audit(struct tg_stream *st, int client_gone)
{
    struct tg_auth *a = st->gen->auth;
    const struct tg_audit *au = st->audit;
    const struct tg_identity *id = st->identity;
    int grpc = tg_stream_is_grpc(st) && st->http2;

    if (a == NULL || a->audit_fd < 0 || au == NULL)
        return;
    char when[TG_LOG_TIME_LEN + 1], rid[160];
    size_t rid_len;
    tg_log_time(when);
    const char *r = tg_stream_request_id(st, &rid_len);
    snprintf(rid, sizeof(rid), "%.*s", (int)rid_len, r);

    json_t *rec = json_pack("{ss ss ss ss ss}", "time", when, "request_id", rid, "protocol",
                            grpc ? "grpc" : "rest", "decision", au->denied ? "deny" : "allow",
                            "reason", au->reason);
    if (id != NULL) {
        json_t *roles = json_array();
        for (size_t i = 0; i < id->n_roles; i++)
            json_array_append_new(roles, json_string(id->roles[i]));
        json_object_set_new(rec, "subject", json_string(id->subject));
        json_object_set_new(rec, "anonymous", json_boolean(id->anonymous));
        if (!id->anonymous)
            json_object_set_new(rec, "provider", json_string(id->provider));
        json_object_set_new(rec, "roles", roles);
    }
    if (au->has_target) {
        const struct tg_auth_target *t = &au->target;
        json_object_set_new(rec, "model", json_string(t->model));
        json_object_set_new(rec, "method", json_string(tg_auth_method_name(t->method)));
        if (t->has_version)
            json_object_set_new(rec, "version", json_integer(t->version));
        else if (t->label != NULL)
            json_object_set_new(rec, "label", json_string(t->label));
        if (t->signature != NULL)
            json_object_set_new(rec, "signature",
                                json_string(t->signature[0] ? t->signature : "serving_default"));
    }
    if (client_gone) {
        json_object_set_new(rec, "status", json_integer(grpc ? GRPC_STATUS_CANCELLED : 499));
    } else if (grpc) {
        json_object_set_new(rec, "status", json_integer(grpc_status_of(st)));
    } else {
        json_object_set_new(rec, "status", json_integer(st->status));
    }
    json_object_set_new(rec, "latency_ms",
                        json_integer((json_int_t)(tg_worker_now(st->w) - st->start_ms)));
    /* jansson escapes what a client put in names; invalid UTF-8 makes json_dumps fail, so such
     * a record is written with the strings replaced */
    char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line == NULL) {
        json_object_set_new(rec, "model", json_string("(not UTF-8)"));
        json_object_set_new(rec, "subject", json_string("(not UTF-8)"));
        json_object_del(rec, "roles");
        json_object_del(rec, "label");
        json_object_del(rec, "signature");
        line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    json_decref(rec);
    if (line == NULL)
        return;
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps NUL-terminates: room for the newline */
    ssize_t w = write(a->audit_fd, line, n + 1);
    (void)w; /* a full disk must not stop serving; the file shows the gap */
    free(line);
}
