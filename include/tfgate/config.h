/*
 * config.h - the gateway's configuration: parsed and validated once (from the command line or
 * a JSON file) into an immutable snapshot. Streams and pools keep a reference to the snapshot
 * they started with, so a reload never changes the rules under a request in flight.
 *
 * Thread affinity: parse on any thread; a snapshot is read-only and may be shared; ref/unref
 * are atomic.
 */
#ifndef TG_CONFIG_H
#define TG_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct tg_listen_cfg {
    char *address;  /* as written: "127.0.0.1:8501", "[::1]:8501" */
    char *host;     /* "127.0.0.1", "::1" */
    int port;       /* 0 = any free port */
    char *tls_cert; /* PEM files; both NULL for cleartext (HTTP/1.1 and h2c) */
    char *tls_key;
};

enum tg_transport {
    TG_TRANSPORT_NATIVE = 0, /* nghttp2 client on each worker's loop (upstream_h2.c) */
    TG_TRANSPORT_GRPC_CORE,  /* gRPC core's C API (upstream_grpc.c) */
};

struct tg_pool_cfg {
    char *name;
    enum tg_transport transport; /* default native; grpc-core when tls is set (the native
                                    transport has no TLS yet) */
    int transport_explicit;      /* the transport was given in the configuration */
    char *device;                /* "cpu" or "gpu" */
    size_t n_targets;
    char **targets;              /* one replica each: "host:port", "dns:///name:port", "ipv4:..." */
    uint32_t channels;           /* connections per replica (native: spread over the workers,
                                    at least one each); default 2 */
    uint32_t backoff_initial_ms; /* reconnect backoff; default 200 */
    uint32_t backoff_max_ms;     /* default 5000 (gRPC's own default is 120 s) */
    uint32_t keepalive_ms;       /* default 30000; 0 = off */
    uint32_t keepalive_timeout_ms; /* default 10000 */
    int tls;                       /* 1 = TLS to the backend */
    char *tls_ca;                  /* PEM roots; NULL = system roots */
    char *tls_cert;                /* client certificate (mTLS), or NULL */
    char *tls_key;
    char *tls_server_name; /* expected name in the backend's certificate, or NULL */
    /* saturation (dispatch.h): the pool takes no new request while every replica has
     * max_inflight calls in flight, or while its latency (EWMA) is above max_latency_ms;
     * it takes them again below 80% of both (hysteresis). 0 = no limit. */
    uint32_t max_inflight; /* per replica */
    uint32_t max_latency_ms;
    /* passive outlier detection: a replica answering UNAVAILABLE or INTERNAL this many times
     * in a row is ejected for eject_ms (0 = off) */
    uint32_t outlier_failures; /* default 5 */
    uint32_t outlier_eject_ms; /* default 10000 */
    /* active health (health.h): each replica is asked for the status of these models */
    size_t n_health_models;
    char **health_models;        /* default: the exact model names routed to the pool */
    uint32_t health_interval_ms; /* default 2000; 0 = no probing */
    uint32_t health_timeout_ms;  /* default 1000 */
};

struct tg_route_cfg {
    char *model; /* exact name, or a glob ("resnet*", "*") */
    /* optional conditions: the route matches only requests that name this version or label,
     * this signature ("serving_default" for an empty one), or carry this header value */
    int has_version;
    int64_t version;
    char *label;
    char *signature;
    char *header_name; /* lower-case */
    char *header_value;
    char *pool;          /* a pool's name */
    uint32_t timeout_ms; /* deadline when the client sends none; 0 = limits.default_deadline_ms */
    uint32_t max_timeout_ms; /* clamp for client deadlines; 0 = limits.max_deadline_ms */
    size_t n_fallbacks;
    char **fallbacks; /* pools tried in order when the primary is saturated or fails */
    char *batch_pool; /* requests with a batch (dim 0) of at least batch_min go here */
    uint64_t batch_min;
    size_t n_canary; /* weighted labels for requests that name no version or label */
    char **canary_labels;
    uint32_t *canary_weights;
    char *canary_sticky; /* "subject" (the caller), "header:NAME", or NULL (random) */
    /* admission (admission.h), checked before a request reaches a backend; 0 = no limit */
    uint64_t max_batch;         /* dim 0 of any Predict input */
    uint64_t max_elements;      /* values over all Predict inputs */
    uint64_t max_request_bytes; /* the serialized request the backend would receive */
};

struct tg_limits {
    uint32_t max_header_bytes;       /* header list, HPACK-decoded (name+value+32 each); 64 KiB */
    uint32_t max_headers;            /* header fields per request; 100 */
    uint64_t max_body_bytes;         /* HTTP request body (REST); 64 MiB */
    uint64_t max_message_bytes;      /* one gRPC message, either direction; 64 MiB */
    uint32_t max_concurrent_streams; /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; 128 */
    uint32_t header_timeout_ms;      /* request headers must arrive within; 10 s */
    uint32_t request_timeout_ms;     /* whole request (headers and body) within; 60 s */
    uint32_t idle_timeout_ms;        /* connection with no request in flight; 120 s */
    uint32_t default_deadline_ms;    /* upstream deadline when none given; 30 s */
    uint32_t max_deadline_ms;        /* clamp for client deadlines; 300 s */
    uint32_t drain_timeout_ms;       /* SIGTERM: wait this long for requests in flight; 10 s */
    uint32_t max_connections;        /* per worker; 4096 */
    uint32_t max_output_bytes;       /* queued output per connection before reading stops; 1 MiB */
    uint32_t reset_burst;            /* nghttp2 stream reset rate limit (CVE-2023-44487) */
    uint32_t reset_rate;             /* resets per second after the burst */
    uint32_t sweep_interval_ms;      /* how often timeouts are checked (their granularity); 1 s */
    uint32_t retry_budget_percent;   /* retries at most this share of requests; 20 */
    uint32_t retry_min;              /* ... plus a burst of this many; 10 */
};

/* An identity provider whose JWTs the gateway accepts (jwt.h). */
struct tg_auth_provider_cfg {
    char *name;
    char *issuer; /* required: the token's iss */
    size_t n_audiences;
    char **audiences;            /* the token's aud must hold one; none = not checked */
    char *jwks_file;             /* a JWK set file, reloaded on SIGHUP, and/or */
    char *jwks_inline;           /* the "keys" of the configuration, as {"keys": [...]} text */
    char *jwks_uri;              /* an https:// JWK set, fetched off the request path, and/or */
    char *jwks_ca;               /* PEM roots for jwks_uri; NULL = the system's */
    uint32_t jwks_refresh_s;     /* fetch jwks_uri this often; default 300 */
    uint32_t jwks_min_refresh_s; /* an unknown kid fetches again, at most this often; 10 */
    uint32_t algorithms;         /* TG_JWT_* bits; default HS256 | RS256 | ES256 */
    uint32_t clock_skew_s;       /* exp / nbf allowance; default 60 */
};

enum tg_auth_method {
    TG_AM_PREDICT = 1,
    TG_AM_CLASSIFY = 2,
    TG_AM_REGRESS = 4,
    TG_AM_MULTI_INFERENCE = 8,
    TG_AM_METADATA = 16,
    TG_AM_STATUS = 32,
    TG_AM_RELOAD = 64, /* ModelService/HandleReloadConfigRequest: never by a "*" rule */
};
#define TG_AM_ALL 63

/* An RBAC grant: any of |roles| may call |methods| on |models|, restricted to |versions|
 * (numbers or labels) and |signatures| when those are given. */
struct tg_rbac_rule_cfg {
    size_t n_roles;
    char **roles; /* "*": any authenticated caller */
    size_t n_models;
    char **models; /* exact names, or "*" */
    size_t n_versions;
    char **versions; /* "123", "stable", "*"; none = any */
    size_t n_signatures;
    char **signatures; /* none = any; an empty signature_name means "serving_default" */
    uint32_t methods;  /* TG_AM_* bits; default TG_AM_ALL */
};

struct tg_auth_cfg {
    size_t n_providers; /* 0: no authentication */
    struct tg_auth_provider_cfg *providers;
    char *subject_claim;          /* default "sub" */
    char *roles_claim;            /* dotted path: "roles", "realm_access.roles", "scope" */
    uint32_t max_token_bytes;     /* default 8192 */
    uint32_t token_cache_entries; /* verified tokens cached per worker; default 10000; 0 = none */
    size_t n_anonymous_models;
    char **anonymous_models; /* served without a token (e.g. a public demo model) */
    int rbac;                /* "rules" given: deny what they do not grant */
    char *audit_log;         /* JSON lines, one per request: a file (reopened on SIGHUP), "-" =
                                stderr, NULL = none */
    size_t n_forward;
    char **forward_claims;  /* claim paths whose values go upstream as metadata ... */
    char **forward_headers; /* ... under these names; client headers of these names are dropped */
    size_t n_rules;
    struct tg_rbac_rule_cfg *rules;
};

/* A token bucket: |rate| tokens per second, at most |burst| saved up. */
struct tg_bucket_cfg {
    double rate; /* 0: no limit */
    double burst;
};

struct tg_model_limit_cfg {
    char *model; /* exact name, or "*" (each model gets its own bucket) */
    struct tg_bucket_cfg bucket;
};

/* Request rate limits (ratelimit.h): local to the process, or shared by every replica through
 * Redis. */
struct tg_ratelimit_cfg {
    struct tg_bucket_cfg identity; /* per caller (provider + subject; anonymous callers share
                                      one bucket) */
    size_t n_models;
    struct tg_model_limit_cfg *models;
    char *redis_host; /* NULL: local buckets only */
    int redis_port;
    uint32_t redis_timeout_ms; /* a slower answer counts as a Redis failure; default 100 */
    int redis_fail_closed;     /* Redis unreachable: refuse (503) instead of local buckets */
    char *redis_prefix;        /* key prefix; default "tfgate:rl:" */
    uint32_t max_keys;         /* local buckets kept; default 100000 */
};

struct tg_config {
    atomic_int refs;
    size_t n_listens;
    struct tg_listen_cfg *listens;
    char *access_log; /* one JSON line per request: a file, "-" = stdout, NULL = none */
    char *admin_host; /* the admin listener (/metrics, /healthz, /readyz), or NULL for none */
    int admin_port;
    size_t n_pools;
    struct tg_pool_cfg *pools;
    size_t n_routes;
    struct tg_route_cfg *routes;
    struct tg_limits limits;
    struct tg_auth_cfg auth;
    struct tg_ratelimit_cfg ratelimit;
    uint32_t workers; /* event-loop threads; default: one per core */
    int log_level;    /* enum tg_log_level */
    char *source;     /* the file it came from, or "command line" */
};

enum tg_config_action {
    TG_CONFIG_RUN = 0,
    TG_CONFIG_CHECK,   /* --check-config: validate and exit */
    TG_CONFIG_HELP,    /* --help printed */
    TG_CONFIG_VERSION, /* --version printed */
};

/* Parses the command line (and the --config file it names). Returns 0 with a snapshot
 * (refcount 1) in |*out| and what to do in |*action|, or -1 with a message in |err| naming the
 * flag, or the file, line, column and key. */
int tg_config_from_args(int argc, char **argv, struct tg_config **out,
                        enum tg_config_action *action, char *err, size_t errlen);

/* Parses a JSON configuration text; |origin| names it in messages. Same contract as above. */
int tg_config_parse_json(const char *text, size_t len, const char *origin, struct tg_config **out,
                         char *err, size_t errlen);

void tg_config_ref(struct tg_config *c);
void tg_config_unref(struct tg_config *c);

/* What a request looks like to the routes. */
struct tg_route_query {
    const char *model;
    int has_version;
    int64_t version;
    const char *label;     /* NULL when none */
    const char *signature; /* NULL when not known yet: signature conditions then match */
    const char *(*header)(void *arg, const char *name); /* a request header's value, or NULL */
    void *arg;
};

/* The route for a request: the first route with an exact model name whose conditions all
 * hold, else the first glob route (in configuration order) whose conditions hold, else NULL. */
const struct tg_route_cfg *tg_config_match(const struct tg_config *c,
                                           const struct tg_route_query *q);
/* The route for |model| alone (no conditions asked: routes with conditions do not match). */
const struct tg_route_cfg *tg_config_route(const struct tg_config *c, const char *model);
const struct tg_pool_cfg *tg_config_pool(const struct tg_config *c, const char *name);

/* Parses "host:port", "[v6]:port" or ":port" (host "0.0.0.0"). Returns 0, or -1. |host| is
 * malloc'ed. */
int tg_config_parse_address(const char *addr, char **host, int *port);
/* The same for the admin listener, where a port alone ("9901" or ":9901") means loopback
 * (127.0.0.1): it is exposed only when an address says so. */
int tg_config_parse_admin_address(const char *addr, char **host, int *port);

/* "predict" -> TG_AM_PREDICT, ...; 0 for an unknown name. */
uint32_t tg_auth_method_from_name(const char *name);
const char *tg_auth_method_name(uint32_t method);

/* "native" -> TG_TRANSPORT_NATIVE, "grpc-core" -> TG_TRANSPORT_GRPC_CORE; -1 otherwise. */
int tg_config_transport_from_name(const char *name);

extern const char tg_usage[];

#endif /* TG_CONFIG_H */
