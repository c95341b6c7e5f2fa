/*
 * config.c - command line and JSON configuration (see config.h; every key is documented in
 * README.md, with an example under examples/).
 *
 * jansson keeps no positions for parsed values, so for a semantic error (unknown key, wrong
 * type) the position is found again in the text by locate(), a small scanner that follows the
 * same path through the document.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/jwt.h"
#include "tfgate/log.h"

const char tg_usage[] =
    "usage: tfgate [options]\n"
    "       tfgate --config FILE [--check-config]\n"
    "A gRPC-native gateway for TensorFlow Serving: REST and gRPC clients in front, persistent\n"
    "gRPC channels to pools of TF Serving servers behind.\n"
    "\n"
    "  --listen ADDR          listen for HTTP/1.1 and h2c on ADDR (host:port, [v6]:port, :port;\n"
    "                         port 0 picks one). Repeatable. Default 127.0.0.1:8501\n"
    "  --tls-listen ADDR      listen for TLS (ALPN h2, http/1.1) on ADDR; needs "
    "--tls-cert/--tls-key\n"
    "  --tls-cert FILE        PEM certificate chain for --tls-listen\n"
    "  --tls-key FILE         PEM private key for --tls-listen\n"
    "  --backend [POOL=]T[,T...]  a pool of TF Serving replicas (host:port, dns:///name:port);\n"
    "                         POOL defaults to \"default\". A pool named gpu* is tagged device "
    "gpu,\n"
    "                         others cpu. Repeatable (one pool each)\n"
    "  --route MODEL=POOL     send MODEL (or * for every other model) to POOL. Repeatable.\n"
    "                         Without routes, * goes to the only pool, or to \"default\"\n"
    "  --channels N           connections per replica (default 2)\n"
    "  --transport T          upstream transport for every pool: native (nghttp2 on the\n"
    "                         workers' loops, the default) or grpc-core (gRPC core's C API)\n"
    "  --workers N            event-loop threads (default: one per core)\n"
    "  --max-message-bytes N  largest gRPC message either way (default 67108864)\n"
    "  --max-body-bytes N     largest HTTP request body (default 67108864)\n"
    "  --default-timeout-ms N upstream deadline when the client gives none (default 30000)\n"
    "  --max-timeout-ms N     longest deadline a client may ask for (default 300000)\n"
    "  --drain-timeout-ms N   on SIGTERM, wait this long for requests in flight (default 10000)\n"
    "  --log-level LEVEL      error, warn, info (default) or debug\n"
    "  --config FILE          JSON configuration (README.md); excludes the flags above\n"
    "  --admin-listen ADDR    admin listener: /metrics (Prometheus), /healthz, /readyz;\n"
    "                         a port alone (9901 or :9901) is on loopback (127.0.0.1);\n"
    "                         keep it on loopback (default: none)\n"
    "  --check-config         validate the configuration and exit (0 if valid)\n"
    "  --version, --help\n"
    "\n"
    "Prints \"tfgate listening on HOST:PORT (PROTOCOLS)\" for every listener once it serves.\n"
    "SIGTERM or SIGINT: stop accepting, finish requests in flight (up to the drain timeout),\n"
    "exit 0. SIGHUP: read the configuration (and its key and certificate files) again and\n"
    "apply it to new requests; requests in flight finish on the old one. A configuration that\n"
    "does not load is logged and changes nothing.\n";

static void set_defaults(struct tg_config *c)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    atomic_init(&c->refs, 1);
    c->workers = cpus > 0 && cpus < 256 ? (uint32_t)cpus : 1;
    c->log_level = TG_LOG_INFO;
    c->limits = (struct tg_limits){
        .max_header_bytes = 64 * 1024,
        .max_headers = 100,
        .max_body_bytes = 64u << 20,
        .max_message_bytes = 64u << 20,
        .max_concurrent_streams = 128,
        .header_timeout_ms = 10000,
        .request_timeout_ms = 60000,
        .idle_timeout_ms = 120000,
        .default_deadline_ms = 30000,
        .max_deadline_ms = 300000,
        .drain_timeout_ms = 10000,
        .max_connections = 4096,
        .max_output_bytes = 1u << 20,
        .reset_burst = 1000,
        .reset_rate = 33,
        .sweep_interval_ms = 1000,
        .retry_budget_percent = 20,
        .retry_min = 10,
    };
    c->ratelimit.redis_timeout_ms = 100;
    c->ratelimit.redis_prefix = tg_xstrdup("tfgate:rl:");
    c->ratelimit.max_keys = 100000;
    c->auth.max_token_bytes = 8192;
    c->auth.token_cache_entries = 10000;
}

static void pool_defaults(struct tg_pool_cfg *p)
{
    p->device = tg_xstrdup("cpu");
    p->channels = 2;
    p->backoff_initial_ms = 200;
    p->backoff_max_ms = 5000;
    p->keepalive_ms = 30000;
    p->keepalive_timeout_ms = 10000;
    p->outlier_failures = 5;
    p->outlier_eject_ms = 10000;
    p->health_interval_ms = 2000;
    p->health_timeout_ms = 1000;
}

int tg_config_transport_from_name(const char *name)
{
    if (strcmp(name, "native") == 0)
        return TG_TRANSPORT_NATIVE;
    if (strcmp(name, "grpc-core") == 0)
        return TG_TRANSPORT_GRPC_CORE;
    return -1;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_auth(struct tg_auth_cfg *a)
{
    for (size_t i = 0; i < a->n_providers; i++) {
        struct tg_auth_provider_cfg *p = &a->providers[i];
        free(p->name);
        free(p->issuer);
        free_strv(p->audiences, p->n_audiences);
        free(p->jwks_file);
        free(p->jwks_inline);
        free(p->jwks_uri);
        free(p->jwks_ca);
    }
    free(a->providers);
    for (size_t i = 0; i < a->n_rules; i++) {
        struct tg_rbac_rule_cfg *r = &a->rules[i];
        free_strv(r->roles, r->n_roles);
        free_strv(r->models, r->n_models);
        free_strv(r->versions, r->n_versions);
        free_strv(r->signatures, r->n_signatures);
    }
    free(a->rules);
    free(a->subject_claim);
    free(a->roles_claim);
    free(a->audit_log);
    free_strv(a->forward_claims, a->n_forward);
    free_strv(a->forward_headers, a->n_forward);
    free_strv(a->anonymous_models, a->n_anonymous_models);
}

static const char *const method_names[] = {"predict",  "classify", "regress", "multi_inference",
                                           "metadata", "status",   "reload"};

uint32_t tg_auth_method_from_name(const char *name)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(method_names); i++) {
        if (strcmp(name, method_names[i]) == 0)
            return 1u << i;
    }
    return 0;
}

const char *tg_auth_method_name(uint32_t method)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(method_names); i++) {
        if (method == 1u << i)
            return method_names[i];
    }
    return "unknown";
}

static void free_config(struct tg_config *c)
{
    for (size_t i = 0; i < c->n_listens; i++) {
        free(c->listens[i].address);
        free(c->listens[i].host);
        free(c->listens[i].tls_cert);
        free(c->listens[i].tls_key);
    }
    free(c->listens);
    free(c->admin_host);
    free(c->access_log);
    for (size_t i = 0; i < c->n_pools; i++) {
        struct tg_pool_cfg *p = &c->pools[i];
        free(p->name);
        free(p->device);
        for (size_t k = 0; k < p->n_targets; k++)
            free(p->targets[k]);
        free(p->targets);
        free(p->tls_ca);
        free(p->tls_cert);
        free(p->tls_key);
        free(p->tls_server_name);
        free_strv(p->health_models, p->n_health_models);
    }
    free(c->pools);
    for (size_t i = 0; i < c->n_routes; i++) {
        struct tg_route_cfg *r = &c->routes[i];
        free(r->model);
        free(r->pool);
        free_strv(r->fallbacks, r->n_fallbacks);
        free(r->batch_pool);
        free_strv(r->canary_labels, r->n_canary);
        free(r->canary_weights);
        free(r->canary_sticky);
        free(r->label);
        free(r->signature);
        free(r->header_name);
        free(r->header_value);
    }
    free(c->routes);
    free_auth(&c->auth);
    for (size_t i = 0; i < c->ratelimit.n_models; i++)
        free(c->ratelimit.models[i].model);
    free(c->ratelimit.models);
    free(c->ratelimit.redis_host);
    free(c->ratelimit.redis_prefix);
    free(c->source);
    free(c);
}

void tg_config_ref(struct tg_config *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void tg_config_unref(struct tg_config *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        free_config(c);
}

int tg_config_parse_address(const char *addr, char **host, int *port)
{
    const char *colon;
    char *end;
    long p;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        *host = tg_xstrndup(addr + 1, (size_t)(close - addr - 1));
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || memchr(addr, ':', (size_t)(colon - addr)) != NULL)
            return -1;
        *host = colon == addr ? tg_xstrdup("0.0.0.0") : tg_xstrndup(addr, (size_t)(colon - addr));
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 0 || p > 65535) {
        free(*host);
        *host = NULL;
        return -1;
    }
    *port = (int)p;
    return 0;
}

int tg_config_parse_admin_address(const char *addr, char **host, int *port)
{
    char buf[16];
    /* "9901" or ":9901": the port on loopback. The admin listener tells about the backends and
     * the traffic; it is served to the outside only when an address says so. */
    if (addr[0] != '\0' && strspn(addr, "0123456789") == strlen(addr) && strlen(addr) < 6) {
        snprintf(buf, sizeof(buf), ":%s", addr);
        addr = buf;
    }
    if (addr[0] == ':') {
        if (tg_config_parse_address(addr, host, port) != 0)
            return -1;
        free(*host);
        *host = tg_xstrdup("127.0.0.1");
        return 0;
    }
    return tg_config_parse_address(addr, host, port);
}

/* ---- locating a path in the JSON text, for error positions ---- */

struct scan {
    const char *s, *end;
};

static void skip_ws(struct scan *sc)
{
    while (sc->s < sc->end && (*sc->s == ' ' || *sc->s == '\t' || *sc->s == '\n' || *sc->s == '\r'))
        sc->s++;
}

/* Reads a JSON string at sc->s into |out| (escapes other than \" and \\ kept as written,
 * which is enough to compare keys). Returns 0 or -1. */
static int scan_string(struct scan *sc, char *out, size_t outlen)
{
    size_t n = 0;
    if (sc->s >= sc->end || *sc->s != '"')
        return -1;
    sc->s++;
    while (sc->s < sc->end && *sc->s != '"') {
        char ch = *sc->s++;
        if (ch == '\\' && sc->s < sc->end)
            ch = *sc->s++;
        if (n + 1 < outlen)
            out[n++] = ch;
    }
    if (sc->s >= sc->end)
        return -1;
    sc->s++;
    out[n] = '\0';
    return 0;
}

static int skip_value(struct scan *sc, int depth)
{
    char buf[8];
    skip_ws(sc);
    if (sc->s >= sc->end || depth > 64)
        return -1;
    if (*sc->s == '"')
        return scan_string(sc, buf, sizeof(buf));
    if (*sc->s == '{' || *sc->s == '[') {
        char close = *sc->s == '{' ? '}' : ']';
        sc->s++;
        skip_ws(sc);
        if (sc->s < sc->end && *sc->s == close) {
            sc->s++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                skip_ws(sc);
                if (scan_string(sc, buf, sizeof(buf)) != 0)
                    return -1;
                skip_ws(sc);
                if (sc->s >= sc->end || *sc->s++ != ':')
                    return -1;
            }
            if (skip_value(sc, depth + 1) != 0)
                return -1;
            skip_ws(sc);
            if (sc->s < sc->end && *sc->s == ',') {
                sc->s++;
                continue;
            }
            if (sc->s < sc->end && *sc->s == close) {
                sc->s++;
                return 0;
            }
            return -1;
        }
    }
    while (sc->s < sc->end && !strchr(",}] \t\r\n", *sc->s))
        sc->s++;
    return 0;
}

/* Finds the key (or array element) at |path| ("pools.gpu.targets[1]") and returns a pointer to
 * it, or NULL. */
static const char *locate(const char *text, size_t len, const char *path)
{
    struct scan sc = {text, text + len};
    const char *p = path;

    while (*p != '\0') {
        char tok[256], key[256];
        size_t n = 0;
        int is_index = *p == '[';
        if (is_index)
            p++;
        while (*p && *p != '.' && *p != '[' && *p != ']' && n + 1 < sizeof(tok))
            tok[n++] = *p++;
        tok[n] = '\0';
        if (*p == ']')
            p++;
        if (*p == '.')
            p++;
        skip_ws(&sc);
        if (sc.s >= sc.end)
            return NULL;
        if (is_index) {
            long want = strtol(tok, NULL, 10);
            if (*sc.s != '[')
                return NULL;
            sc.s++;
            for (long i = 0; i < want; i++) {
                if (skip_value(&sc, 0) != 0)
                    return NULL;
                skip_ws(&sc);
                if (sc.s >= sc.end || *sc.s++ != ',')
                    return NULL;
            }
            skip_ws(&sc);
            if (*p == '\0')
                return sc.s;
            continue;
        }
        if (*sc.s != '{')
            return NULL;
        sc.s++;
        for (;;) {
            skip_ws(&sc);
            const char *at = sc.s;
            if (scan_string(&sc, key, sizeof(key)) != 0)
                return NULL;
            skip_ws(&sc);
            if (sc.s >= sc.end || *sc.s++ != ':')
                return NULL;
            if (strcmp(key, tok) == 0) {
                if (*p == '\0')
                    return at;
                break;
            }
            if (skip_value(&sc, 0) != 0)
                return NULL;
            skip_ws(&sc);
            if (sc.s >= sc.end || *sc.s++ != ',')
                return NULL;
        }
    }
    return NULL;
}

/* ---- JSON parsing ---- */

struct jctx {
    const char *text;
    size_t len;
    const char *origin;
    char path[512];
    char *err;
    size_t errlen;
};

TG_PRINTF(2, 3) static int jfail(struct jctx *c, const char *fmt, ...)
{
    char msg[512];
    int line = 1, col = 1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *at = c->path[0] ? locate(c->text, c->len, c->path) : c->text;
    if (at != NULL) {
        for (const char *p = c->text; p < at; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(c->err, c->errlen, "%s:%d:%d: %s%s%s", c->origin, line, col, c->path,
                 c->path[0] ? ": " : "", msg);
    } else {
        snprintf(c->err, c->errlen, "%s: %s%s%s", c->origin, c->path, c->path[0] ? ": " : "", msg);
    }
    return -1;
}

static size_t jpush(struct jctx *c, const char *key, long index)
{
    size_t old = strlen(c->path);
    if (key != NULL)
        snprintf(c->path + old, sizeof(c->path) - old, "%s%s", old ? "." : "", key);
    else
        snprintf(c->path + old, sizeof(c->path) - old, "[%ld]", index);
    return old;
}

static void jpop(struct jctx *c, size_t old)
{
    c->path[old] = '\0';
}

static int jkeys(struct jctx *c, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    if (!json_is_object(obj))
        return jfail(c, "must be an object");
    json_object_foreach(obj, key, v)
    {
        const char *const *a;
        for (a = allowed; *a; a++) {
            if (strcmp(*a, key) == 0)
                break;
        }
        if (*a == NULL) {
            size_t old = jpush(c, key, 0);
            jfail(c, "unknown key '%s'", key);
            jpop(c, old);
            return -1;
        }
    }
    return 0;
}

/* Reads an optional unsigned integer member into |out| (unchanged when absent). */
static int juint(struct jctx *c, json_t *obj, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    size_t old = jpush(c, key, 0);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
        jfail(c, "must be an integer from 0 to %llu", (unsigned long long)max);
        jpop(c, old);
        return -1;
    }
    jpop(c, old);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int ju32(struct jctx *c, json_t *obj, const char *key, uint32_t *out)
{
    uint64_t v = *out;
    if (juint(c, obj, key, UINT32_MAX, &v) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int jstr(struct jctx *c, json_t *obj, const char *key, char **out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0) {
        size_t old = jpush(c, key, 0);
        jfail(c, "must be a non-empty string");
        jpop(c, old);
        return -1;
    }
    free(*out);
    *out = tg_xstrdup(json_string_value(v));
    return 0;
}

/* An optional list of non-empty strings; |*out| stays NULL when absent. */
static int jstrlist(struct jctx *c, json_t *obj, const char *key, char ***out, size_t *n)
{
    json_t *v = json_object_get(obj, key), *e;
    size_t i;
    if (v == NULL)
        return 0;
    size_t old = jpush(c, key, 0);
    if (!json_is_array(v)) {
        jfail(c, "must be a list of strings");
        return -1;
    }
    *out = tg_xcalloc(json_array_size(v) + 1, sizeof(char *));
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) == 0) {
            jpush(c, NULL, (long)i);
            jfail(c, "must be a non-empty string");
            return -1;
        }
        (*out)[(*n)++] = tg_xstrdup(json_string_value(e));
    }
    jpop(c, old);
    return 0;
}

static int parse_provider(struct jctx *c, json_t *j, struct tg_auth_provider_cfg *p)
{
    static const char *const keys[] = {
        "name",    "issuer",         "audiences",          "jwks_file",  "keys",         "jwks_uri",
        "jwks_ca", "jwks_refresh_s", "jwks_min_refresh_s", "algorithms", "clock_skew_s", NULL};
    char **algs = NULL;
    size_t n_algs = 0;
    json_t *inline_keys;

    p->algorithms = TG_JWT_ALGS_ALL;
    p->clock_skew_s = 60;
    p->jwks_refresh_s = 300;
    p->jwks_min_refresh_s = 10;
    if (jkeys(c, j, keys) != 0 || jstr(c, j, "name", &p->name) != 0 ||
        jstr(c, j, "issuer", &p->issuer) != 0 ||
        jstrlist(c, j, "audiences", &p->audiences, &p->n_audiences) != 0 ||
        jstr(c, j, "jwks_file", &p->jwks_file) != 0 || jstr(c, j, "jwks_uri", &p->jwks_uri) != 0 ||
        jstr(c, j, "jwks_ca", &p->jwks_ca) != 0 ||
        ju32(c, j, "jwks_refresh_s", &p->jwks_refresh_s) != 0 ||
        ju32(c, j, "jwks_min_refresh_s", &p->jwks_min_refresh_s) != 0 ||
        ju32(c, j, "clock_skew_s", &p->clock_skew_s) != 0 ||
        jstrlist(c, j, "algorithms", &algs, &n_algs) != 0)
        goto fail;
    if (p->issuer == NULL) {
        jfail(c, "'issuer' is required (tokens are matched to providers by iss)");
        goto fail;
    }
    if (p->name == NULL)
        p->name = tg_xstrdup(p->issuer);
    if (algs != NULL) {
        p->algorithms = 0;
        for (size_t i = 0; i < n_algs; i++) {
            uint32_t a = tg_jwt_alg_from_name(algs[i]);
            if (a == 0) {
                size_t old = jpush(c, "algorithms", 0);
                jfail(c, "'%s' is not one of HS256, RS256, ES256", algs[i]);
                jpop(c, old);
                goto fail;
            }
            p->algorithms |= a;
        }
    }
    if ((inline_keys = json_object_get(j, "keys")) != NULL) {
        json_t *wrap = json_pack("{sO}", "keys", inline_keys);
        p->jwks_inline = json_dumps(wrap, JSON_COMPACT);
        json_decref(wrap);
    }
    if (p->jwks_file == NULL && p->jwks_inline == NULL && p->jwks_uri == NULL) {
        jfail(c, "needs 'jwks_uri', 'jwks_file' or 'keys'");
        goto fail;
    }
    if (p->jwks_uri != NULL && strncmp(p->jwks_uri, "https://", 8) != 0) {
        jfail(c, "'jwks_uri' must be an https:// URL");
        goto fail;
    }
    if (p->jwks_refresh_s == 0 || p->jwks_min_refresh_s == 0) {
        jfail(c, "jwks_refresh_s and jwks_min_refresh_s must be at least 1");
        goto fail;
    }
    free_strv(algs, n_algs);
    return 0;
fail:
    free_strv(algs, n_algs);
    return -1;
}

static int parse_rule(struct jctx *c, json_t *j, struct tg_rbac_rule_cfg *r)
{
    static const char *const keys[] = {"roles",      "models",  "versions",
                                       "signatures", "methods", NULL};
    char **methods = NULL;
    size_t n_methods = 0;

    if (jkeys(c, j, keys) != 0 || jstrlist(c, j, "roles", &r->roles, &r->n_roles) != 0 ||
        jstrlist(c, j, "models", &r->models, &r->n_models) != 0 ||
        jstrlist(c, j, "versions", &r->versions, &r->n_versions) != 0 ||
        jstrlist(c, j, "signatures", &r->signatures, &r->n_signatures) != 0 ||
        jstrlist(c, j, "methods", &methods, &n_methods) != 0)
        goto fail;
    if (r->n_roles == 0 || r->n_models == 0) {
        jfail(c, "a rule needs 'roles' and 'models'");
        goto fail;
    }
    r->methods = methods ? 0 : TG_AM_ALL;
    for (size_t i = 0; i < n_methods; i++) {
        uint32_t m =
            strcmp(methods[i], "*") == 0 ? TG_AM_ALL : tg_auth_method_from_name(methods[i]);
        if (m == 0) {
            size_t old = jpush(c, "methods", 0);
            jfail(c,
                  "'%s' is not predict, classify, regress, multi_inference, metadata, status, "
                  "reload or *",
                  methods[i]);
            jpop(c, old);
            goto fail;
        }
        r->methods |= m;
    }
    free_strv(methods, n_methods);
    return 0;
fail:
    free_strv(methods, n_methods);
    return -1;
}

static int parse_auth(struct jctx *c, json_t *j, struct tg_auth_cfg *a)
{
    static const char *const keys[] = {"providers",
                                       "subject_claim",
                                       "roles_claim",
                                       "max_token_bytes",
                                       "token_cache_entries",
                                       "anonymous_models",
                                       "rules",
                                       "audit_log",
                                       "forward_claims",
                                       NULL};
    json_t *v, *e;
    size_t i;

    if (jkeys(c, j, keys) != 0 || jstr(c, j, "subject_claim", &a->subject_claim) != 0 ||
        jstr(c, j, "roles_claim", &a->roles_claim) != 0 ||
        jstr(c, j, "audit_log", &a->audit_log) != 0 ||
        ju32(c, j, "max_token_bytes", &a->max_token_bytes) != 0 ||
        ju32(c, j, "token_cache_entries", &a->token_cache_entries) != 0 ||
        jstrlist(c, j, "anonymous_models", &a->anonymous_models, &a->n_anonymous_models) != 0)
        return -1;
    if (a->max_token_bytes < 256 || a->max_token_bytes > 65536)
        return jfail(c, "max_token_bytes must be from 256 to 65536");
    v = json_object_get(j, "providers");
    size_t old = jpush(c, "providers", 0);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return jfail(c, "must be a non-empty list of identity providers");
    a->providers = tg_xcalloc(json_array_size(v), sizeof(*a->providers));
    json_array_foreach(v, i, e)
    {
        size_t o2 = jpush(c, NULL, (long)i);
        if (parse_provider(c, e, &a->providers[a->n_providers++]) != 0)
            return -1;
        for (size_t k = 0; k < i; k++) {
            if (strcmp(a->providers[k].issuer, a->providers[i].issuer) == 0)
                return jfail(c, "two providers for issuer '%s'", a->providers[i].issuer);
        }
        jpop(c, o2);
    }
    jpop(c, old);
    if ((v = json_object_get(j, "rules")) != NULL) {
        old = jpush(c, "rules", 0);
        if (!json_is_array(v))
            return jfail(c, "must be a list of {\"roles\": [...], \"models\": [...], ...}");
        a->rbac = 1;
        a->rules = tg_xcalloc(json_array_size(v) + 1, sizeof(*a->rules));
        json_array_foreach(v, i, e)
        {
            size_t o2 = jpush(c, NULL, (long)i);
            if (parse_rule(c, e, &a->rules[a->n_rules++]) != 0)
                return -1;
            jpop(c, o2);
        }
        jpop(c, old);
    }
    if ((v = json_object_get(j, "forward_claims")) != NULL) {
        const char *claim;
        old = jpush(c, "forward_claims", 0);
        if (!json_is_object(v))
            return jfail(c, "must be an object of claim -> metadata name");
        a->forward_claims = tg_xcalloc(json_object_size(v) + 1, sizeof(char *));
        a->forward_headers = tg_xcalloc(json_object_size(v) + 1, sizeof(char *));
        json_object_foreach(v, claim, e)
        {
            const char *h = json_is_string(e) ? json_string_value(e) : "";
            size_t hl = strlen(h), ok = hl > 0 && strncmp(h, "grpc-", 5) != 0 &&
                                        (hl < 4 || strcmp(h + hl - 4, "-bin") != 0);
            for (size_t k = 0; k < hl && ok; k++)
                ok = (h[k] >= 'a' && h[k] <= 'z') || (h[k] >= '0' && h[k] <= '9') || h[k] == '-' ||
                     h[k] == '_' || h[k] == '.';
            if (!ok) {
                jpush(c, claim, 0);
                return jfail(c, "must be a lower-case metadata name (not grpc-*, not -bin)");
            }
            a->forward_claims[a->n_forward] = tg_xstrdup(claim);
            a->forward_headers[a->n_forward++] = tg_xstrdup(h);
        }
        jpop(c, old);
    }
    if (a->subject_claim == NULL)
        a->subject_claim = tg_xstrdup("sub");
    if (a->roles_claim == NULL)
        a->roles_claim = tg_xstrdup("roles");
    return 0;
}

static int parse_bucket(struct jctx *c, json_t *j, struct tg_bucket_cfg *b)
{
    static const char *const keys[] = {"rate", "burst", NULL};
    json_t *rate = json_object_get(j, "rate"), *burst = json_object_get(j, "burst");
    if (jkeys(c, j, keys) != 0)
        return -1;
    if (!json_is_number(rate) || json_number_value(rate) <= 0 || json_number_value(rate) > 1e9)
        return jfail(c, "'rate' (requests per second) must be a number above 0");
    b->rate = json_number_value(rate);
    b->burst = b->rate < 1 ? 1 : b->rate;
    if (burst != NULL) {
        if (!json_is_number(burst) || json_number_value(burst) < 1 ||
            json_number_value(burst) > 1e9)
            return jfail(c, "'burst' must be a number from 1");
        b->burst = json_number_value(burst);
    }
    return 0;
}

static int parse_ratelimit(struct jctx *c, json_t *j, struct tg_ratelimit_cfg *r)
{
    static const char *const keys[] = {"identity", "models", "redis", "max_keys", NULL};
    static const char *const rkeys[] = {"address", "timeout_ms", "on_failure", "prefix", NULL};
    json_t *v, *e;
    const char *key;
    size_t old;

    if (jkeys(c, j, keys) != 0 || ju32(c, j, "max_keys", &r->max_keys) != 0)
        return -1;
    if ((v = json_object_get(j, "identity")) != NULL) {
        old = jpush(c, "identity", 0);
        if (parse_bucket(c, v, &r->identity) != 0)
            return -1;
        jpop(c, old);
    }
    if ((v = json_object_get(j, "models")) != NULL) {
        old = jpush(c, "models", 0);
        if (!json_is_object(v))
            return jfail(c, "must be an object of model -> {\"rate\": ..., \"burst\": ...}");
        r->models = tg_xcalloc(json_object_size(v) + 1, sizeof(*r->models));
        json_object_foreach(v, key, e)
        {
            size_t o2 = jpush(c, key, 0);
            struct tg_model_limit_cfg *m = &r->models[r->n_models++];
            m->model = tg_xstrdup(key);
            if (parse_bucket(c, e, &m->bucket) != 0)
                return -1;
            jpop(c, o2);
        }
        jpop(c, old);
    }
    if ((v = json_object_get(j, "redis")) != NULL) {
        char *addr = NULL, *fail = NULL;
        old = jpush(c, "redis", 0);
        if (jkeys(c, v, rkeys) != 0 || jstr(c, v, "address", &addr) != 0 ||
            jstr(c, v, "on_failure", &fail) != 0 ||
            ju32(c, v, "timeout_ms", &r->redis_timeout_ms) != 0 ||
            jstr(c, v, "prefix", &r->redis_prefix) != 0) {
            free(addr);
            free(fail);
            return -1;
        }
        int bad_addr = addr == NULL ||
                       tg_config_parse_address(addr, &r->redis_host, &r->redis_port) != 0 ||
                       r->redis_port == 0;
        int bad_fail = fail != NULL && strcmp(fail, "local") != 0 && strcmp(fail, "deny") != 0;
        r->redis_fail_closed = fail != NULL && strcmp(fail, "deny") == 0;
        free(addr);
        free(fail);
        if (bad_addr)
            return jfail(c, "needs 'address': \"ip:port\" of the Redis server");
        if (bad_fail)
            return jfail(c, "'on_failure' must be \"local\" (local buckets) or \"deny\"");
        if (r->redis_timeout_ms == 0)
            return jfail(c, "'timeout_ms' must be above 0");
        jpop(c, old);
    }
    return 0;
}

/* A route's traffic policies (dispatch.h): batch_pool and canary. */
static int parse_route_policies(struct jctx *c, json_t *j, struct tg_route_cfg *r)
{
    static const char *const hkeys[] = {"name", "value", NULL};
    json_t *ver = json_object_get(j, "version"), *hdr = json_object_get(j, "header");
    if (ver != NULL) {
        if (!json_is_integer(ver) || json_integer_value(ver) < 0) {
            size_t o = jpush(c, "version", 0);
            jfail(c, "must be a version number");
            jpop(c, o);
            return -1;
        }
        r->has_version = 1;
        r->version = json_integer_value(ver);
    }
    if (jstr(c, j, "label", &r->label) != 0 || jstr(c, j, "signature", &r->signature) != 0)
        return -1;
    if (hdr != NULL) {
        size_t o = jpush(c, "header", 0);
        if (jkeys(c, hdr, hkeys) != 0 || jstr(c, hdr, "name", &r->header_name) != 0 ||
            jstr(c, hdr, "value", &r->header_value) != 0)
            return -1;
        if (r->header_name == NULL || r->header_value == NULL)
            return jfail(c, "needs 'name' and 'value'");
        for (char *p = r->header_name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        jpop(c, o);
    }
    static const char *const bkeys[] = {"min_batch", "pool", NULL};
    static const char *const ckeys[] = {"labels", "sticky", NULL};
    json_t *v, *e;
    const char *key;
    size_t old;

    if ((v = json_object_get(j, "batch_pool")) != NULL) {
        old = jpush(c, "batch_pool", 0);
        if (jkeys(c, v, bkeys) != 0 || jstr(c, v, "pool", &r->batch_pool) != 0 ||
            juint(c, v, "min_batch", UINT32_MAX, &r->batch_min) != 0)
            return -1;
        if (r->batch_pool == NULL || r->batch_min == 0)
            return jfail(c, "needs 'pool' and 'min_batch' >= 1");
        jpop(c, old);
    }
    if ((v = json_object_get(j, "canary")) != NULL) {
        json_t *labels = json_object_get(v, "labels");
        uint32_t total = 0;
        old = jpush(c, "canary", 0);
        if (jkeys(c, v, ckeys) != 0 || jstr(c, v, "sticky", &r->canary_sticky) != 0)
            return -1;
        if (!json_is_object(labels) || json_object_size(labels) == 0)
            return jfail(c, "needs 'labels': {\"stable\": 95, \"canary\": 5}");
        r->canary_labels = tg_xcalloc(json_object_size(labels) + 1, sizeof(char *));
        r->canary_weights = tg_xcalloc(json_object_size(labels) + 1, sizeof(uint32_t));
        json_object_foreach(labels, key, e)
        {
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 1000000)
                return jfail(c, "label '%s': the weight must be an integer from 0", key);
            r->canary_labels[r->n_canary] = tg_xstrdup(key);
            r->canary_weights[r->n_canary++] = (uint32_t)json_integer_value(e);
            total += (uint32_t)json_integer_value(e);
        }
        if (total == 0)
            return jfail(c, "the weights add up to 0");
        if (r->canary_sticky != NULL && strcmp(r->canary_sticky, "subject") != 0 &&
            (strncmp(r->canary_sticky, "header:", 7) != 0 || r->canary_sticky[7] == '\0'))
            return jfail(c, "'sticky' must be \"subject\" or \"header:NAME\"");
        jpop(c, old);
    }
    return 0;
}

static int parse_listen(struct jctx *c, json_t *j, struct tg_listen_cfg *l)
{
    static const char *const keys[] = {"address", "tls", NULL};
    static const char *const tkeys[] = {"cert", "key", NULL};
    json_t *tls;

    if (jkeys(c, j, keys) != 0 || jstr(c, j, "address", &l->address) != 0)
        return -1;
    if (l->address == NULL)
        return jfail(c, "'address' is required");
    if (tg_config_parse_address(l->address, &l->host, &l->port) != 0) {
        size_t old = jpush(c, "address", 0);
        jfail(c, "'%s' is not host:port", l->address);
        jpop(c, old);
        return -1;
    }
    if ((tls = json_object_get(j, "tls")) != NULL) {
        size_t old = jpush(c, "tls", 0);
        if (jkeys(c, tls, tkeys) != 0 || jstr(c, tls, "cert", &l->tls_cert) != 0 ||
            jstr(c, tls, "key", &l->tls_key) != 0)
            return -1;
        if (l->tls_cert == NULL || l->tls_key == NULL)
            return jfail(c, "needs both 'cert' and 'key'");
        jpop(c, old);
    }
    return 0;
}

static int parse_pool(struct jctx *c, const char *name, json_t *j, struct tg_pool_cfg *p)
{
    static const char *const keys[] = {"device",
                                       "targets",
                                       "transport",
                                       "channels",
                                       "reconnect_backoff_ms",
                                       "keepalive_ms",
                                       "keepalive_timeout_ms",
                                       "tls",
                                       "max_inflight",
                                       "max_latency_ms",
                                       "outlier",
                                       "health",
                                       NULL};
    static const char *const bkeys[] = {"initial", "max", NULL};
    static const char *const okeys[] = {"consecutive_failures", "eject_ms", NULL};
    static const char *const hkeys[] = {"models", "interval_ms", "timeout_ms", NULL};
    static const char *const tkeys[] = {"ca", "cert", "key", "server_name", NULL};
    json_t *targets, *v;
    size_t i, old;

    pool_defaults(p);
    p->name = tg_xstrdup(name);
    if (jkeys(c, j, keys) != 0 || jstr(c, j, "device", &p->device) != 0)
        return -1;
    if (strcmp(p->device, "cpu") != 0 && strcmp(p->device, "gpu") != 0) {
        old = jpush(c, "device", 0);
        jfail(c, "must be \"cpu\" or \"gpu\"");
        jpop(c, old);
        return -1;
    }
    if ((v = json_object_get(j, "transport")) != NULL) {
        int t = json_is_string(v) ? tg_config_transport_from_name(json_string_value(v)) : -1;
        if (t < 0) {
            old = jpush(c, "transport", 0);
            jfail(c, "must be \"native\" or \"grpc-core\"");
            jpop(c, old);
            return -1;
        }
        p->transport = (enum tg_transport)t;
        p->transport_explicit = 1;
    }
    targets = json_object_get(j, "targets");
    old = jpush(c, "targets", 0);
    if (!json_is_array(targets) || json_array_size(targets) == 0)
        return jfail(c, "must be a non-empty list of \"host:port\" or \"dns:///name:port\"");
    p->targets = tg_xcalloc(json_array_size(targets), sizeof(char *));
    json_array_foreach(targets, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            jpush(c, NULL, (long)i);
            return jfail(c, "must be a non-empty string");
        }
        p->targets[p->n_targets++] = tg_xstrdup(json_string_value(v));
    }
    jpop(c, old);
    if (ju32(c, j, "channels", &p->channels) != 0 || ju32(c, j, "keepalive_ms", &p->keepalive_ms) ||
        ju32(c, j, "keepalive_timeout_ms", &p->keepalive_timeout_ms) != 0 ||
        ju32(c, j, "max_inflight", &p->max_inflight) != 0 ||
        ju32(c, j, "max_latency_ms", &p->max_latency_ms) != 0)
        return -1;
    if ((v = json_object_get(j, "outlier")) != NULL) {
        old = jpush(c, "outlier", 0);
        if (jkeys(c, v, okeys) != 0 ||
            ju32(c, v, "consecutive_failures", &p->outlier_failures) != 0 ||
            ju32(c, v, "eject_ms", &p->outlier_eject_ms) != 0)
            return -1;
        jpop(c, old);
    }
    if ((v = json_object_get(j, "health")) != NULL) {
        old = jpush(c, "health", 0);
        if (jkeys(c, v, hkeys) != 0 ||
            jstrlist(c, v, "models", &p->health_models, &p->n_health_models) != 0 ||
            ju32(c, v, "interval_ms", &p->health_interval_ms) != 0 ||
            ju32(c, v, "timeout_ms", &p->health_timeout_ms) != 0)
            return -1;
        if (p->health_interval_ms != 0 && (p->health_interval_ms < 50 || p->health_timeout_ms == 0))
            return jfail(c, "interval_ms must be 0 (off) or at least 50, timeout_ms above 0");
        jpop(c, old);
    }
    if (p->channels == 0 || p->channels > 64) {
        old = jpush(c, "channels", 0);
        jfail(c, "must be from 1 to 64");
        jpop(c, old);
        return -1;
    }
    if ((v = json_object_get(j, "reconnect_backoff_ms")) != NULL) {
        old = jpush(c, "reconnect_backoff_ms", 0);
        if (jkeys(c, v, bkeys) != 0 || ju32(c, v, "initial", &p->backoff_initial_ms) != 0 ||
            ju32(c, v, "max", &p->backoff_max_ms) != 0)
            return -1;
        if (p->backoff_initial_ms == 0 || p->backoff_max_ms < p->backoff_initial_ms)
            return jfail(c, "needs 0 < initial <= max");
        jpop(c, old);
    }
    if ((v = json_object_get(j, "tls")) != NULL) {
        old = jpush(c, "tls", 0);
        if (jkeys(c, v, tkeys) != 0 || jstr(c, v, "ca", &p->tls_ca) != 0 ||
            jstr(c, v, "cert", &p->tls_cert) != 0 || jstr(c, v, "key", &p->tls_key) != 0 ||
            jstr(c, v, "server_name", &p->tls_server_name) != 0)
            return -1;
        if ((p->tls_cert == NULL) != (p->tls_key == NULL))
            return jfail(c, "a client certificate needs both 'cert' and 'key'");
        p->tls = 1;
        jpop(c, old);
    }
    return 0;
}

static int parse_limits(struct jctx *c, json_t *j, struct tg_limits *l)
{
    static const char *const keys[] = {"max_header_bytes",
                                       "max_headers",
                                       "max_body_bytes",
                                       "max_message_bytes",
                                       "max_concurrent_streams",
                                       "header_timeout_ms",
                                       "request_timeout_ms",
                                       "idle_timeout_ms",
                                       "default_deadline_ms",
                                       "max_deadline_ms",
                                       "drain_timeout_ms",
                                       "max_connections",
                                       "max_output_bytes",
                                       "reset_burst",
                                       "reset_rate",
                                       "sweep_interval_ms",
                                       "retry_budget_percent",
                                       "retry_min",
                                       NULL};
    if (jkeys(c, j, keys) != 0 || ju32(c, j, "max_header_bytes", &l->max_header_bytes) != 0 ||
        ju32(c, j, "max_headers", &l->max_headers) != 0 ||
        juint(c, j, "max_body_bytes", (uint64_t)1 << 40, &l->max_body_bytes) != 0 ||
        juint(c, j, "max_message_bytes", INT32_MAX, &l->max_message_bytes) != 0 ||
        ju32(c, j, "max_concurrent_streams", &l->max_concurrent_streams) != 0 ||
        ju32(c, j, "header_timeout_ms", &l->header_timeout_ms) != 0 ||
        ju32(c, j, "request_timeout_ms", &l->request_timeout_ms) != 0 ||
        ju32(c, j, "idle_timeout_ms", &l->idle_timeout_ms) != 0 ||
        ju32(c, j, "default_deadline_ms", &l->default_deadline_ms) != 0 ||
        ju32(c, j, "max_deadline_ms", &l->max_deadline_ms) != 0 ||
        ju32(c, j, "drain_timeout_ms", &l->drain_timeout_ms) != 0 ||
        ju32(c, j, "max_connections", &l->max_connections) != 0 ||
        ju32(c, j, "max_output_bytes", &l->max_output_bytes) != 0 ||
        ju32(c, j, "reset_burst", &l->reset_burst) != 0 ||
        ju32(c, j, "reset_rate", &l->reset_rate) != 0 ||
        ju32(c, j, "sweep_interval_ms", &l->sweep_interval_ms) != 0 ||
        ju32(c, j, "retry_budget_percent", &l->retry_budget_percent) != 0 ||
        ju32(c, j, "retry_min", &l->retry_min) != 0)
        return -1;
    return 0;
}

/* Checks that apply however the configuration was given. */
static int validate(struct tg_config *c, char *err, size_t errlen)
{
    const struct tg_limits *l = &c->limits;

    if (c->n_listens == 0) {
        snprintf(err, errlen, "%s: no listener", c->source);
        return -1;
    }
    if (c->n_pools == 0) {
        snprintf(err, errlen, "%s: no backend pool (--backend or \"pools\")", c->source);
        return -1;
    }
    for (size_t i = 0; i < c->n_pools; i++) {
        struct tg_pool_cfg *p = &c->pools[i];
        if (p->tls && p->transport == TG_TRANSPORT_NATIVE) {
            if (p->transport_explicit) {
                snprintf(err, errlen,
                         "%s: pool '%s': TLS to backends needs transport \"grpc-core\" "
                         "(the native transport has no TLS yet)",
                         c->source, p->name);
                return -1;
            }
            p->transport = TG_TRANSPORT_GRPC_CORE;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(c->pools[i].name, c->pools[k].name) == 0) {
                snprintf(err, errlen, "%s: pool '%s' is defined twice", c->source,
                         c->pools[i].name);
                return -1;
            }
        }
    }
    if (c->n_routes == 0) {
        const struct tg_pool_cfg *def =
            c->n_pools == 1 ? &c->pools[0] : tg_config_pool(c, "default");
        if (def == NULL) {
            snprintf(err, errlen, "%s: several pools and no routes: add a route for \"*\"",
                     c->source);
            return -1;
        }
        c->routes = tg_xcalloc(1, sizeof(*c->routes));
        c->routes[0].model = tg_xstrdup("*");
        c->routes[0].pool = tg_xstrdup(def->name);
        c->n_routes = 1;
    }
    for (size_t i = 0; i < c->n_routes; i++) {
        for (size_t k = 0; k < c->routes[i].n_fallbacks; k++) {
            if (tg_config_pool(c, c->routes[i].fallbacks[k]) == NULL) {
                snprintf(err, errlen,
                         "%s: route '%s' falls back to pool '%s', which does not exist", c->source,
                         c->routes[i].model, c->routes[i].fallbacks[k]);
                return -1;
            }
        }
        if (c->routes[i].batch_pool && tg_config_pool(c, c->routes[i].batch_pool) == NULL) {
            snprintf(err, errlen, "%s: route '%s' sends batches to pool '%s', which does not exist",
                     c->source, c->routes[i].model, c->routes[i].batch_pool);
            return -1;
        }
        if (tg_config_pool(c, c->routes[i].pool) == NULL) {
            snprintf(err, errlen, "%s: route '%s' names pool '%s', which does not exist", c->source,
                     c->routes[i].model, c->routes[i].pool);
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            const struct tg_route_cfg *a = &c->routes[i], *b = &c->routes[k];
            /* the same model and the same conditions: the second could never match */
            if (strcmp(a->model, b->model) == 0 && a->has_version == b->has_version &&
                (!a->has_version || a->version == b->version) &&
                (a->label == NULL) == (b->label == NULL) &&
                (a->label == NULL || strcmp(a->label, b->label) == 0) &&
                (a->signature == NULL) == (b->signature == NULL) &&
                (a->signature == NULL || strcmp(a->signature, b->signature) == 0) &&
                (a->header_name == NULL) == (b->header_name == NULL) &&
                (a->header_name == NULL || (strcmp(a->header_name, b->header_name) == 0 &&
                                            strcmp(a->header_value, b->header_value) == 0))) {
                snprintf(err, errlen, "%s: two routes for model '%s'", c->source,
                         c->routes[i].model);
                return -1;
            }
        }
    }
    /* the models each pool's replicas are probed for: given, or the exact names routed there */
    for (size_t i = 0; i < c->n_pools; i++) {
        struct tg_pool_cfg *p = &c->pools[i];
        if (p->health_models != NULL)
            continue;
        p->health_models = tg_xcalloc(c->n_routes + 1, sizeof(char *));
        for (size_t k = 0; k < c->n_routes; k++) {
            const struct tg_route_cfg *r = &c->routes[k];
            int here = strcmp(r->pool, p->name) == 0 ||
                       (r->batch_pool && strcmp(r->batch_pool, p->name) == 0);
            for (size_t f = 0; f < r->n_fallbacks; f++)
                here |= strcmp(r->fallbacks[f], p->name) == 0;
            if (here && strpbrk(r->model, "*?[") == NULL)
                p->health_models[p->n_health_models++] = tg_xstrdup(r->model);
        }
    }
    if (c->workers == 0 || c->workers > 256) {
        snprintf(err, errlen, "%s: workers must be from 1 to 256", c->source);
        return -1;
    }
    if (l->max_concurrent_streams == 0 || l->max_headers == 0 || l->max_header_bytes < 1024 ||
        l->max_message_bytes < 1024 || l->max_body_bytes < 1024 || l->max_connections == 0 ||
        l->max_output_bytes < 16384 || l->sweep_interval_ms < 10) {
        snprintf(err, errlen,
                 "%s: a limit is too small (streams, headers >= 1; header bytes, "
                 "body and message >= 1024; output >= 16384; connections >= 1; sweep >= 10 ms)",
                 c->source);
        return -1;
    }
    if (l->default_deadline_ms == 0 || l->max_deadline_ms < l->default_deadline_ms) {
        snprintf(err, errlen, "%s: needs 0 < default_deadline_ms <= max_deadline_ms", c->source);
        return -1;
    }
    return 0;
}

int tg_config_parse_json(const char *text, size_t len, const char *origin, struct tg_config **out,
                         char *err, size_t errlen)
{
    static const char *const keys[] = {"workers", "log_level",  "listen", "pools",
                                       "routes",  "limits",     "auth",   "rate_limits",
                                       "admin",   "access_log", NULL};
    static const char *const rkeys[] = {
        "model",      "pool",   "timeout_ms", "max_timeout_ms", "fallbacks",
        "batch_pool", "canary", "max_batch",  "max_elements",   "max_request_bytes",
        "version",    "label",  "signature",  "header",         NULL};
    struct jctx c = {.text = text, .len = len, .origin = origin, .err = err, .errlen = errlen};
    struct tg_config *cfg = tg_xcalloc(1, sizeof(*cfg));
    json_error_t jerr;
    json_t *root, *v, *e;
    const char *key;
    size_t i, old;

    set_defaults(cfg);
    cfg->source = tg_xstrdup(origin);
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* line and column say where; the text leaves out the input it is near */
        snprintf(err, errlen, "%s:%d:%d: %s", origin, jerr.line, jerr.column,
                 tg_json_error_text(jerr.text));
        free_config(cfg);
        return -1;
    }
    if (jkeys(&c, root, keys) != 0 || ju32(&c, root, "workers", &cfg->workers) != 0)
        goto fail;
    if ((v = json_object_get(root, "log_level")) != NULL) {
        if (!json_is_string(v) ||
            (cfg->log_level = tg_log_level_from_name(json_string_value(v))) < 0) {
            old = jpush(&c, "log_level", 0);
            jfail(&c, "must be error, warn, info or debug");
            goto fail;
        }
    }
    v = json_object_get(root, "listen");
    old = jpush(&c, "listen", 0);
    if (!json_is_array(v) || json_array_size(v) == 0) {
        jfail(&c, "must be a non-empty list of {\"address\": ...}");
        goto fail;
    }
    cfg->listens = tg_xcalloc(json_array_size(v), sizeof(*cfg->listens));
    json_array_foreach(v, i, e)
    {
        size_t o2 = jpush(&c, NULL, (long)i);
        cfg->n_listens++;
        if (parse_listen(&c, e, &cfg->listens[i]) != 0)
            goto fail;
        jpop(&c, o2);
    }
    jpop(&c, old);

    v = json_object_get(root, "pools");
    old = jpush(&c, "pools", 0);
    if (!json_is_object(v) || json_object_size(v) == 0) {
        jfail(&c, "must be an object of pool name -> {\"targets\": [...]}");
        goto fail;
    }
    cfg->pools = tg_xcalloc(json_object_size(v), sizeof(*cfg->pools));
    json_object_foreach(v, key, e)
    {
        size_t o2 = jpush(&c, key, 0);
        if (parse_pool(&c, key, e, &cfg->pools[cfg->n_pools++]) != 0)
            goto fail;
        jpop(&c, o2);
    }
    jpop(&c, old);

    if ((v = json_object_get(root, "routes")) != NULL) {
        old = jpush(&c, "routes", 0);
        if (!json_is_array(v)) {
            jfail(&c, "must be a list of {\"model\": ..., \"pool\": ...}");
            goto fail;
        }
        cfg->routes = tg_xcalloc(json_array_size(v) + 1, sizeof(*cfg->routes));
        json_array_foreach(v, i, e)
        {
            size_t o2 = jpush(&c, NULL, (long)i);
            struct tg_route_cfg *r = &cfg->routes[cfg->n_routes++];
            if (jkeys(&c, e, rkeys) != 0 || jstr(&c, e, "model", &r->model) != 0 ||
                jstr(&c, e, "pool", &r->pool) != 0 ||
                ju32(&c, e, "timeout_ms", &r->timeout_ms) != 0 ||
                ju32(&c, e, "max_timeout_ms", &r->max_timeout_ms) != 0 ||
                juint(&c, e, "max_batch", UINT32_MAX, &r->max_batch) != 0 ||
                juint(&c, e, "max_elements", UINT64_MAX >> 1, &r->max_elements) != 0 ||
                juint(&c, e, "max_request_bytes", UINT64_MAX >> 1, &r->max_request_bytes) != 0 ||
                jstrlist(&c, e, "fallbacks", &r->fallbacks, &r->n_fallbacks) != 0 ||
                parse_route_policies(&c, e, r) != 0)
                goto fail;
            if (r->model == NULL || r->pool == NULL) {
                jfail(&c, "needs 'model' and 'pool'");
                goto fail;
            }
            jpop(&c, o2);
        }
        jpop(&c, old);
    }
    if ((v = json_object_get(root, "limits")) != NULL) {
        old = jpush(&c, "limits", 0);
        if (parse_limits(&c, v, &cfg->limits) != 0)
            goto fail;
        jpop(&c, old);
    }
    if (jstr(&c, root, "access_log", &cfg->access_log) != 0)
        goto fail;
    if ((v = json_object_get(root, "admin")) != NULL) {
        static const char *const akeys[] = {"address", NULL};
        char *addr = NULL;
        old = jpush(&c, "admin", 0);
        if (jkeys(&c, v, akeys) != 0 || jstr(&c, v, "address", &addr) != 0) {
            free(addr);
            goto fail;
        }
        int bad = addr == NULL ||
                  tg_config_parse_admin_address(addr, &cfg->admin_host, &cfg->admin_port) != 0;
        free(addr);
        if (bad) {
            jfail(&c, "needs 'address': \"host:port\" (loopback is best)");
            goto fail;
        }
        jpop(&c, old);
    }
    if ((v = json_object_get(root, "rate_limits")) != NULL) {
        old = jpush(&c, "rate_limits", 0);
        if (parse_ratelimit(&c, v, &cfg->ratelimit) != 0)
            goto fail;
        jpop(&c, old);
    }
    if ((v = json_object_get(root, "auth")) != NULL) {
        old = jpush(&c, "auth", 0);
        if (parse_auth(&c, v, &cfg->auth) != 0)
            goto fail;
        jpop(&c, old);
    }
    json_decref(root);
    if (validate(cfg, err, errlen) != 0) {
        free_config(cfg);
        return -1;
    }
    *out = cfg;
    return 0;

fail:
    json_decref(root);
    free_config(cfg);
    return -1;
}

/* ---- command line ---- */

static int parse_u64(const char *flag, const char *s, uint64_t max, uint64_t *out, char *err,
                     size_t errlen)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno != 0 || v > max) {
        snprintf(err, errlen, "%s needs an integer from 0 to %llu, not '%s'", flag,
                 (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static void add_listen(struct tg_config *c, const char *addr, char *host, int port, int tls)
{
    c->listens = tg_xrealloc(c->listens, (c->n_listens + 1) * sizeof(*c->listens));
    struct tg_listen_cfg *l = &c->listens[c->n_listens++];
    memset(l, 0, sizeof(*l));
    l->address = tg_xstrdup(addr);
    l->host = host;
    l->port = port;
    l->tls_cert = tls ? tg_xstrdup("") : NULL; /* filled from --tls-cert after parsing */
}

enum {
    OPT_LISTEN = 256,
    OPT_ADMIN_LISTEN,
    OPT_TLS_LISTEN,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_BACKEND,
    OPT_ROUTE,
    OPT_CHANNELS,
    OPT_TRANSPORT,
    OPT_WORKERS,
    OPT_MAX_MESSAGE,
    OPT_MAX_BODY,
    OPT_DEFAULT_TIMEOUT,
    OPT_MAX_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_CONFIG,
    OPT_CHECK,
    OPT_VERSION,
    OPT_HELP,
};

int tg_config_from_args(int argc, char **argv, struct tg_config **out,
                        enum tg_config_action *action, char *err, size_t errlen)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"admin-listen", required_argument, NULL, OPT_ADMIN_LISTEN},
        {"tls-listen", required_argument, NULL, OPT_TLS_LISTEN},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"route", required_argument, NULL, OPT_ROUTE},
        {"channels", required_argument, NULL, OPT_CHANNELS},
        {"transport", required_argument, NULL, OPT_TRANSPORT},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE},
        {"max-body-bytes", required_argument, NULL, OPT_MAX_BODY},
        {"default-timeout-ms", required_argument, NULL, OPT_DEFAULT_TIMEOUT},
        {"max-timeout-ms", required_argument, NULL, OPT_MAX_TIMEOUT},
        {"drain-timeout-ms", required_argument, NULL, OPT_DRAIN_TIMEOUT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct tg_config *c = tg_xcalloc(1, sizeof(*c));
    const char *config_path = NULL, *tls_cert = NULL, *tls_key = NULL;
    int flags_given = 0, opt, rv = -1, channels = 0, workers_set = 0, log_set = 0, transport = -1;
    char *admin_host = NULL;
    int admin_port = 0;
    uint64_t v;

    set_defaults(c);
    c->source = tg_xstrdup("command line");
    *action = TG_CONFIG_RUN;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_LISTEN:
        case OPT_TLS_LISTEN: {
            char *host;
            int port;
            if (tg_config_parse_address(optarg, &host, &port) != 0) {
                snprintf(err, errlen, "--%s: '%s' is not host:port",
                         opt == OPT_LISTEN ? "listen" : "tls-listen", optarg);
                goto out;
            }
            add_listen(c, optarg, host, port, opt == OPT_TLS_LISTEN);
            flags_given = 1;
            break;
        }
        case OPT_ADMIN_LISTEN:
            free(admin_host);
            admin_host = NULL;
            if (tg_config_parse_admin_address(optarg, &admin_host, &admin_port) != 0) {
                snprintf(err, errlen, "--admin-listen: '%s' is not host:port or a port", optarg);
                goto out;
            }
            break;
        case OPT_TLS_CERT:
            tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            tls_key = optarg;
            break;
        case OPT_BACKEND: {
            const char *eq = strchr(optarg, '=');
            /* "name=targets" unless the '=' belongs to a target ("dns:///a=b" cannot occur) */
            const char *list = eq ? eq + 1 : optarg;
            char *name = eq ? tg_xstrndup(optarg, (size_t)(eq - optarg)) : tg_xstrdup("default");
            c->pools = tg_xrealloc(c->pools, (c->n_pools + 1) * sizeof(*c->pools));
            struct tg_pool_cfg *p = &c->pools[c->n_pools++];
            memset(p, 0, sizeof(*p));
            pool_defaults(p);
            p->name = name;
            if (strncmp(name, "gpu", 3) == 0) {
                free(p->device);
                p->device = tg_xstrdup("gpu");
            }
            char *copy = tg_xstrdup(list), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                p->targets = tg_xrealloc(p->targets, (p->n_targets + 1) * sizeof(char *));
                p->targets[p->n_targets++] = tg_xstrdup(t);
            }
            free(copy);
            if (p->n_targets == 0 || name[0] == '\0') {
                snprintf(err, errlen, "--backend '%s': expected [POOL=]host:port[,host:port...]",
                         optarg);
                goto out;
            }
            flags_given = 1;
            break;
        }
        case OPT_ROUTE: {
            const char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg || eq[1] == '\0') {
                snprintf(err, errlen, "--route '%s': expected MODEL=POOL", optarg);
                goto out;
            }
            c->routes = tg_xrealloc(c->routes, (c->n_routes + 1) * sizeof(*c->routes));
            struct tg_route_cfg *r = &c->routes[c->n_routes++];
            memset(r, 0, sizeof(*r));
            r->model = tg_xstrndup(optarg, (size_t)(eq - optarg));
            r->pool = tg_xstrdup(eq + 1);
            flags_given = 1;
            break;
        }
        case OPT_CHANNELS:
            if (parse_u64("--channels", optarg, 64, &v, err, errlen) != 0 || v == 0) {
                snprintf(err, errlen, "--channels needs 1 to 64");
                goto out;
            }
            channels = (int)v;
            break;
        case OPT_TRANSPORT:
            if ((transport = tg_config_transport_from_name(optarg)) < 0) {
                snprintf(err, errlen, "--transport: native or grpc-core, not '%s'", optarg);
                goto out;
            }
            break;
        case OPT_WORKERS:
            if (parse_u64("--workers", optarg, 256, &v, err, errlen) != 0)
                goto out;
            c->workers = (uint32_t)v;
            workers_set = 1;
            break;
#define LIMIT(OPT, flag, field, max)                                                               \
    case OPT:                                                                                      \
        if (parse_u64(flag, optarg, max, &v, err, errlen) != 0)                                    \
            goto out;                                                                              \
        c->limits.field = v;                                                                       \
        flags_given = 1;                                                                           \
        break;
            LIMIT(OPT_MAX_MESSAGE, "--max-message-bytes", max_message_bytes, INT32_MAX)
            LIMIT(OPT_MAX_BODY, "--max-body-bytes", max_body_bytes, (uint64_t)1 << 40)
            LIMIT(OPT_DEFAULT_TIMEOUT, "--default-timeout-ms", default_deadline_ms, UINT32_MAX)
            LIMIT(OPT_MAX_TIMEOUT, "--max-timeout-ms", max_deadline_ms, UINT32_MAX)
            LIMIT(OPT_DRAIN_TIMEOUT, "--drain-timeout-ms", drain_timeout_ms, UINT32_MAX)
#undef LIMIT
        case OPT_LOG_LEVEL:
            if ((c->log_level = tg_log_level_from_name(optarg)) < 0) {
                snprintf(err, errlen, "--log-level: error, warn, info or debug, not '%s'", optarg);
                goto out;
            }
            log_set = 1;
            break;
        case OPT_CONFIG:
            config_path = optarg;
            break;
        case OPT_CHECK:
            *action = TG_CONFIG_CHECK;
            break;
        case OPT_VERSION:
            *action = TG_CONFIG_VERSION;
            rv = 0;
            goto out;
        case OPT_HELP:
            *action = TG_CONFIG_HELP;
            rv = 0;
            goto out;
        default:
            snprintf(err, errlen, "unknown or incomplete option '%s' (see --help)",
                     argv[optind - 1]);
            goto out;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
        goto out;
    }

    if (config_path != NULL) {
        size_t len;
        char *text;
        if (flags_given || tls_cert || tls_key || channels || transport >= 0) {
            snprintf(err, errlen,
                     "--config excludes --listen, --backend, --route, --tls-* and "
                     "the limit flags: put them in the file");
            goto out;
        }
        text = tg_read_file(config_path, 16u << 20, &len); /* never this large */
        if (text == NULL) {
            snprintf(err, errlen, "%s: %s", config_path, strerror(errno));
            goto out;
        }
        struct tg_config *fc;
        int prv = tg_config_parse_json(text, len, config_path, &fc, err, errlen);
        free(text);
        if (prv != 0)
            goto out;
        if (workers_set)
            fc->workers = c->workers;
        if (log_set)
            fc->log_level = c->log_level;
        if (admin_host != NULL) { /* the flag wins over the file */
            free(fc->admin_host);
            fc->admin_host = admin_host;
            fc->admin_port = admin_port;
            admin_host = NULL;
        }
        free_config(c);
        *out = fc;
        return 0;
    }
    if (admin_host != NULL) {
        c->admin_host = admin_host;
        c->admin_port = admin_port;
        admin_host = NULL;
    }

    if (c->n_listens == 0) {
        char *host = tg_xstrdup("127.0.0.1");
        add_listen(c, "127.0.0.1:8501", host, 8501, 0);
    }
    for (size_t i = 0; i < c->n_listens; i++) {
        if (c->listens[i].tls_cert == NULL)
            continue;
        free(c->listens[i].tls_cert);
        c->listens[i].tls_cert = NULL;
        if (tls_cert == NULL || tls_key == NULL) {
            snprintf(err, errlen, "--tls-listen needs --tls-cert and --tls-key");
            goto out;
        }
        c->listens[i].tls_cert = tg_xstrdup(tls_cert);
        c->listens[i].tls_key = tg_xstrdup(tls_key);
    }
    for (size_t i = 0; i < c->n_pools; i++) {
        if (channels > 0)
            c->pools[i].channels = (uint32_t)channels;
        if (transport >= 0) {
            c->pools[i].transport = (enum tg_transport)transport;
            c->pools[i].transport_explicit = 1;
        }
    }
    if (validate(c, err, errlen) != 0)
        goto out;
    *out = c;
    return 0;

out:
    free(admin_host);
    free_config(c);
    *out = NULL;
    return rv;
}

static int is_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static int route_holds(const struct tg_route_cfg *r, const struct tg_route_query *q)
{
    if (r->has_version && (!q->has_version || q->version != r->version))
        return 0;
    if (r->label != NULL && (q->label == NULL || strcmp(q->label, r->label) != 0))
        return 0;
    if (r->signature != NULL && q->signature != NULL &&
        strcmp(q->signature[0] ? q->signature : "serving_default", r->signature) != 0)
        return 0;
    if (r->header_name != NULL) {
        const char *v = q->header ? q->header(q->arg, r->header_name) : NULL;
        if (v == NULL || strcmp(v, r->header_value) != 0)
            return 0;
    }
    return 1;
}

const struct tg_route_cfg *tg_config_match(const struct tg_config *c,
                                           const struct tg_route_query *q)
{
    for (size_t i = 0; i < c->n_routes; i++) {
        const struct tg_route_cfg *r = &c->routes[i];
        if (!is_glob(r->model) && strcmp(r->model, q->model) == 0 && route_holds(r, q))
            return r;
    }
    for (size_t i = 0; i < c->n_routes; i++) {
        const struct tg_route_cfg *r = &c->routes[i];
        if (is_glob(r->model) && fnmatch(r->model, q->model, 0) == 0 && route_holds(r, q))
            return r;
    }
    return NULL;
}

const struct tg_route_cfg *tg_config_route(const struct tg_config *c, const char *model)
{
    struct tg_route_query q = {.model = model};
    return tg_config_match(c, &q);
}

const struct tg_pool_cfg *tg_config_pool(const struct tg_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_pools; i++) {
        if (strcmp(c->pools[i].name, name) == 0)
            return &c->pools[i];
    }
    return NULL;
}
