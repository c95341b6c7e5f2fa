/*
 * pool.c - see pool.h.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>

#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/pool.h"

static char *read_pem(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (1 << 20) ||
        fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot read %s", path);
        if (f)
            fclose(f);
        return NULL;
    }
    buf = tg_xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        snprintf(err, errlen, "cannot read %s", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static grpc_channel_credentials *make_creds(const struct tg_pool_cfg *p, char *err, size_t errlen)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    grpc_channel_credentials *creds = NULL;

    if (!p->tls)
        return grpc_insecure_credentials_create();
    if (p->tls_ca && (ca = read_pem(p->tls_ca, err, errlen)) == NULL)
        goto out;
    if (p->tls_cert) {
        if ((cert = read_pem(p->tls_cert, err, errlen)) == NULL ||
            (key = read_pem(p->tls_key, err, errlen)) == NULL)
            goto out;
    }
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
out:
    free(ca);
    free(cert);
    free(key);
    return creds;
}

static grpc_channel *make_channel(const struct tg_pool_cfg *p, const struct tg_config *c,
                                  const char *target, grpc_channel_credentials *creds,
                                  unsigned index)
{
    grpc_arg args[16];
    size_t n = 0;
    /* Room for the gRPC prefix over the largest message. */
    int max_msg = c->limits.max_message_bytes > INT_MAX - 64
                      ? INT_MAX
                      : (int)c->limits.max_message_bytes + 64;
#define INT_ARG(k, v)                                                                              \
    do {                                                                                           \
        args[n].type = GRPC_ARG_INTEGER;                                                           \
        args[n].key = (char *)(k);                                                                 \
        args[n].value.integer = (v);                                                               \
        n++;                                                                                       \
    } while (0)
#define STR_ARG(k, v)                                                                              \
    do {                                                                                           \
        args[n].type = GRPC_ARG_STRING;                                                            \
        args[n].key = (char *)(k);                                                                 \
        args[n].value.string = (char *)(v);                                                        \
        n++;                                                                                       \
    } while (0)
    INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max_msg);
    INT_ARG(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, max_msg);
    /* round_robin keeps reconnecting a lost backend by itself (pick_first goes IDLE and
     * waits for the next call), so a restarted replica comes back without traffic. */
    STR_ARG(GRPC_ARG_LB_POLICY_NAME, "round_robin");
    /* one connection per channel: the global subchannel pool would share one between all
     * channels with equal arguments (toolchain-notes §3) */
    INT_ARG(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    INT_ARG("tfgate.channel_index", (int)index);
    INT_ARG(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, (int)p->backoff_initial_ms);
    INT_ARG(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, (int)p->backoff_initial_ms);
    INT_ARG(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, (int)p->backoff_max_ms);
    if (p->keepalive_ms > 0) {
        /* TF Serving's default server policy tolerates a ping every 5 minutes only while
         * calls are active, so keepalive pings go out only with calls in flight. */
        INT_ARG(GRPC_ARG_KEEPALIVE_TIME_MS, (int)p->keepalive_ms);
        INT_ARG(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, (int)p->keepalive_timeout_ms);
        INT_ARG(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    }
    INT_ARG(GRPC_ARG_CLIENT_IDLE_TIMEOUT_MS, INT_MAX); /* persistent: never go idle */
    INT_ARG(GRPC_ARG_ENABLE_RETRIES, 0);               /* retries are the gateway's policy */
    STR_ARG(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "tfgate/0.1");
    if (p->tls && p->tls_server_name)
        STR_ARG(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, p->tls_server_name);
#undef INT_ARG
#undef STR_ARG
    grpc_channel_args ca = {.num_args = n, .args = args};
    return grpc_channel_create(target, creds, &ca);
}

/* A reload: |pool| starts from what |prev| knew about the same pool and targets. */
static void carry_over(struct tg_pool *pool, const struct tg_pools *prev)
{
    const struct tg_pool *old = NULL;
    for (size_t i = 0; prev != NULL && i < prev->n_pools && old == NULL; i++) {
        if (strcmp(prev->pools[i].cfg->name, pool->cfg->name) == 0)
            old = &prev->pools[i];
    }
    if (old == NULL)
        return;
    atomic_store(&pool->ewma_bits, atomic_load(&old->ewma_bits));
    atomic_store(&pool->ewma_at_ms, atomic_load(&old->ewma_at_ms));
    atomic_store(&pool->saturated, atomic_load(&old->saturated));
    for (size_t r = 0; r < pool->n_replicas; r++) {
        struct tg_replica *rep = &pool->replicas[r];
        for (size_t o = 0; o < old->n_replicas; o++) {
            const struct tg_replica *orep = &old->replicas[o];
            if (strcmp(orep->target, rep->target) != 0)
                continue;
            atomic_store(&rep->calls, atomic_load(&orep->calls));
            atomic_store(&rep->failures_in_row, atomic_load(&orep->failures_in_row));
            atomic_store(&rep->ejected_until_ms, atomic_load(&orep->ejected_until_ms));
            for (size_t m = 0; m < pool->cfg->n_health_models; m++) {
                int om = tg_pool_model_index(old, pool->cfg->health_models[m]);
                if (om < 0)
                    continue;
                const struct tg_model_health *oh = &orep->health[om];
                struct tg_model_health *h = &rep->health[m];
                int n = atomic_load(&oh->n_versions);
                for (int v = 0; v < n && v < TG_HEALTH_MAX_VERSIONS; v++)
                    atomic_store(&h->versions[v], atomic_load(&oh->versions[v]));
                atomic_store(&h->n_versions, n);
                atomic_store(&h->state, atomic_load(&oh->state));
            }
            break;
        }
    }
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_strv(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++) {
        if (!same_str(a[i], b[i]))
            return 0;
    }
    return 1;
}

static int same_pool(const struct tg_pool_cfg *x, const struct tg_pool_cfg *y)
{
    return same_str(x->name, y->name) && x->transport == y->transport &&
           same_str(x->device, y->device) &&
           same_strv(x->targets, x->n_targets, y->targets, y->n_targets) &&
           x->channels == y->channels && x->backoff_initial_ms == y->backoff_initial_ms &&
           x->backoff_max_ms == y->backoff_max_ms && x->keepalive_ms == y->keepalive_ms &&
           x->keepalive_timeout_ms == y->keepalive_timeout_ms && !x->tls && !y->tls &&
           x->max_inflight == y->max_inflight && x->max_latency_ms == y->max_latency_ms &&
           x->outlier_failures == y->outlier_failures &&
           x->outlier_eject_ms == y->outlier_eject_ms &&
           same_strv(x->health_models, x->n_health_models, y->health_models, y->n_health_models) &&
           x->health_interval_ms == y->health_interval_ms &&
           x->health_timeout_ms == y->health_timeout_ms;
}

int tg_pools_same(const struct tg_config *a, const struct tg_config *b)
{
    if (a->n_pools != b->n_pools || a->limits.max_message_bytes != b->limits.max_message_bytes ||
        a->limits.retry_budget_percent != b->limits.retry_budget_percent ||
        a->limits.retry_min != b->limits.retry_min)
        return 0;
    for (size_t i = 0; i < a->n_pools; i++) {
        if (!same_pool(&a->pools[i], &b->pools[i]))
            return 0;
    }
    return 1;
}

struct tg_pools *tg_pools_new(struct tg_config *config, struct tg_pools *prev, char *err,
                              size_t errlen)
{
    if (prev != NULL && tg_pools_same(prev->config, config)) {
        atomic_fetch_add(&prev->refs, 1);
        tg_log(TG_LOG_INFO, "pool", "pools unchanged: their connections are kept");
        return prev;
    }
    struct tg_pools *pools = tg_xcalloc(1, sizeof(*pools));
    atomic_init(&pools->refs, 1);

    tg_config_ref(config);
    pools->config = config;
    pools->pools = tg_xcalloc(config->n_pools, sizeof(*pools->pools));
    atomic_init(&pools->retry_milli, prev != NULL ? atomic_load(&prev->retry_milli)
                                                  : (long long)config->limits.retry_min * 1000);
    for (size_t i = 0; i < config->n_pools; i++) {
        const struct tg_pool_cfg *pc = &config->pools[i];
        struct tg_pool *pool = &pools->pools[pools->n_pools++];
        pool->cfg = pc;
        pool->set = pools;
        pool->replicas = tg_xcalloc(pc->n_targets, sizeof(*pool->replicas));
        for (size_t r = 0; r < pc->n_targets; r++)
            pool->replicas[r].health =
                tg_xcalloc(pc->n_health_models + 1, sizeof(struct tg_model_health));
        if (pc->transport != TG_TRANSPORT_GRPC_CORE) {
            /* native: each worker opens its own connections (upstream_h2.c) */
            for (size_t r = 0; r < pc->n_targets; r++)
                pool->replicas[pool->n_replicas++].target = tg_xstrdup(pc->targets[r]);
            carry_over(pool, prev);
            tg_log(TG_LOG_INFO, "pool",
                   "pool %s (device %s, native): %zu replica(s), %u connection(s) each", pc->name,
                   pc->device, pc->n_targets, pc->channels);
            continue;
        }
        grpc_channel_credentials *creds = make_creds(pc, err, errlen);
        if (creds == NULL) {
            tg_pools_unref(pools);
            return NULL;
        }
        for (size_t r = 0; r < pc->n_targets; r++) {
            struct tg_replica *rep = &pool->replicas[pool->n_replicas++];
            rep->target = tg_xstrdup(pc->targets[r]);
            rep->channels = tg_xcalloc(pc->channels, sizeof(*rep->channels));
            for (unsigned k = 0; k < pc->channels; k++) {
                struct tg_channel *ch = &rep->channels[rep->n_channels++];
                ch->ch = make_channel(pc, config, rep->target, creds, k);
                for (int m = 0; m < TG_GM_COUNT; m++)
                    ch->methods[m] =
                        grpc_channel_register_call(ch->ch, tg_grpc_method_paths[m], NULL, NULL);
                grpc_channel_check_connectivity_state(ch->ch, 1); /* connect now */
            }
        }
        grpc_channel_credentials_release(creds);
        carry_over(pool, prev);
        tg_log(TG_LOG_INFO, "pool",
               "pool %s (device %s, grpc-core): %zu replica(s), %u channel(s) each", pc->name,
               pc->device, pc->n_targets, pc->channels);
    }
    return pools;
}

void tg_pools_unref(struct tg_pools *pools)
{
    if (pools == NULL || atomic_fetch_sub(&pools->refs, 1) != 1)
        return;
    for (size_t i = 0; i < pools->n_pools; i++) {
        struct tg_pool *pool = &pools->pools[i];
        for (size_t r = 0; r < pool->n_replicas; r++) {
            struct tg_replica *rep = &pool->replicas[r];
            for (size_t k = 0; k < rep->n_channels; k++)
                grpc_channel_destroy(rep->channels[k].ch);
            free(rep->channels);
            free(rep->target);
            free(rep->health);
        }
        free(pool->replicas);
    }
    free(pools->pools);
    tg_config_unref(pools->config);
    free(pools);
}

struct tg_pool *tg_pools_match(struct tg_pools *pools, const struct tg_config *config,
                               const struct tg_route_query *q, const struct tg_route_cfg **route)
{
    const struct tg_route_cfg *r = tg_config_match(config, q);
    struct tg_pool *p = r ? tg_pools_find(pools, r->pool) : NULL;
    if (p != NULL)
        *route = r;
    return p;
}

struct tg_pool *tg_pools_route(struct tg_pools *pools, const struct tg_config *config,
                               const char *model, const struct tg_route_cfg **route)
{
    struct tg_route_query q = {.model = model};
    return tg_pools_match(pools, config, &q, route);
}

struct tg_pool *tg_pools_find(struct tg_pools *pools, const char *name)
{
    for (size_t i = 0; i < pools->n_pools; i++) {
        if (strcmp(pools->pools[i].cfg->name, name) == 0)
            return &pools->pools[i];
    }
    return NULL;
}

int tg_pool_model_index(const struct tg_pool *pool, const char *model)
{
    for (size_t i = 0; model != NULL && i < pool->cfg->n_health_models; i++) {
        if (strcmp(pool->cfg->health_models[i], model) == 0)
            return (int)i;
    }
    return -1;
}

int tg_replica_serves(const struct tg_replica *r, int mi, int has_version, int64_t version)
{
    if (mi < 0 || r->health == NULL)
        return 1;
    const struct tg_model_health *h = &r->health[mi];
    int st = atomic_load_explicit(&h->state, memory_order_relaxed);
    if (st == TG_HEALTH_UNKNOWN)
        return 1;
    if (st == TG_HEALTH_NOT_SERVING)
        return 0;
    if (!has_version)
        return 1;
    int n = atomic_load_explicit(&h->n_versions, memory_order_relaxed);
    for (int i = 0; i < n && i < TG_HEALTH_MAX_VERSIONS; i++) {
        if (atomic_load_explicit(&h->versions[i], memory_order_relaxed) == version)
            return 1;
    }
    return n >= TG_HEALTH_MAX_VERSIONS; /* more versions than kept: do not guess */
}

int tg_pool_serves(const struct tg_pool *pool, const char *model, int has_version, int64_t version,
                   uint64_t now_ms)
{
    int mi = tg_pool_model_index(pool, model);
    if (mi < 0)
        return 1;
    for (size_t i = 0; i < pool->n_replicas; i++) {
        if (!tg_replica_ejected(&pool->replicas[i], now_ms) &&
            tg_replica_serves(&pool->replicas[i], mi, has_version, version))
            return 1;
    }
    return 0;
}

int tg_replica_ejected(const struct tg_replica *r, uint64_t now_ms)
{
    return atomic_load_explicit(&r->ejected_until_ms, memory_order_relaxed) > now_ms;
}

int tg_replica_observe(struct tg_pool *pool, struct tg_replica *r, int failed, uint64_t now_ms)
{
    uint32_t limit = pool->cfg->outlier_failures;
    if (!failed) {
        if (atomic_load_explicit(&r->failures_in_row, memory_order_relaxed) != 0)
            atomic_store_explicit(&r->failures_in_row, 0, memory_order_relaxed);
        return 0;
    }
    if (limit == 0)
        return 0;
    unsigned n = atomic_fetch_add_explicit(&r->failures_in_row, 1, memory_order_relaxed) + 1;
    if (n < limit)
        return 0;
    atomic_store_explicit(&r->failures_in_row, 0, memory_order_relaxed);
    atomic_store_explicit(&r->ejected_until_ms, now_ms + pool->cfg->outlier_eject_ms,
                          memory_order_relaxed);
    tg_metrics_event(TG_EV_EJECTION);
    tg_log(TG_LOG_WARN, "pool", "pool %s: replica %s ejected for %u ms after %u failures in a row",
           pool->cfg->name, r->target, pool->cfg->outlier_eject_ms, n);
    return 1;
}

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

double tg_pool_latency(struct tg_pool *pool, uint64_t now_ms)
{
    double ewma = bits_to_double(atomic_load_explicit(&pool->ewma_bits, memory_order_relaxed));
    uint64_t at = atomic_load_explicit(&pool->ewma_at_ms, memory_order_relaxed);
    if (now_ms > at)
        ewma *= exp2(-(double)(now_ms - at) / 1000.0);
    return ewma;
}

void tg_pool_observe_latency(struct tg_pool *pool, double ms, uint64_t now_ms)
{
    /* racing workers may lose a sample; the average does not need them all */
    double ewma = tg_pool_latency(pool, now_ms);
    ewma = ewma == 0 ? ms : 0.8 * ewma + 0.2 * ms;
    atomic_store_explicit(&pool->ewma_bits, double_to_bits(ewma), memory_order_relaxed);
    atomic_store_explicit(&pool->ewma_at_ms, now_ms, memory_order_relaxed);
}

int tg_pool_saturated(struct tg_pool *pool, uint64_t now_ms)
{
    const struct tg_pool_cfg *pc = pool->cfg;
    if (pc->max_inflight == 0 && pc->max_latency_ms == 0)
        return 0;
    long long inflight = 0, healthy = 0;
    for (size_t i = 0; i < pool->n_replicas; i++) {
        inflight += atomic_load_explicit(&pool->replicas[i].inflight, memory_order_relaxed);
        healthy += !tg_replica_ejected(&pool->replicas[i], now_ms);
    }
    double cap = (double)pc->max_inflight * (double)(healthy ? healthy : 1);
    double lat = tg_pool_latency(pool, now_ms);
    int was = atomic_load_explicit(&pool->saturated, memory_order_relaxed);
    int now;
    if (!was)
        now = (pc->max_inflight && (double)inflight >= cap) ||
              (pc->max_latency_ms && lat > pc->max_latency_ms);
    else
        now = !((!pc->max_inflight || (double)inflight <= 0.8 * cap) &&
                (!pc->max_latency_ms || lat <= 0.8 * pc->max_latency_ms));
    if (now != was) {
        atomic_store_explicit(&pool->saturated, now, memory_order_relaxed);
        tg_log(TG_LOG_INFO, "pool", "pool %s %s (in flight %lld, latency %.1f ms)", pc->name,
               now ? "saturated: spilling over" : "recovered", inflight, lat);
    }
    return now;
}

void tg_pools_budget_deposit(struct tg_pools *pools)
{
    const struct tg_limits *l = &pools->config->limits;
    long long cap = (long long)l->retry_min * 1000;
    long long v = atomic_fetch_add_explicit(&pools->retry_milli, l->retry_budget_percent * 10,
                                            memory_order_relaxed);
    if (v + l->retry_budget_percent * 10 > cap)
        atomic_store_explicit(&pools->retry_milli, cap, memory_order_relaxed);
}

int tg_pools_budget_take(struct tg_pools *pools)
{
    long long v = atomic_load_explicit(&pools->retry_milli, memory_order_relaxed);
    while (v >= 1000) {
        if (atomic_compare_exchange_weak_explicit(&pools->retry_milli, &v, v - 1000,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 1;
    }
    return 0;
}

int tg_pool_pick(struct tg_pool *pool, uint64_t now_ms, const struct tg_pick *want,
                 struct tg_replica **replica, struct tg_channel **channel)
{
    int mi = tg_pool_model_index(pool, want->model);
    size_t n = pool->n_replicas;
    unsigned start = atomic_fetch_add_explicit(&pool->next, 1, memory_order_relaxed);
    struct tg_replica *fallback = NULL;
    struct tg_channel *fallback_ch = NULL;

    /* ejected or not-serving replicas only when there is no other (better than refusing) */
    for (int pass = 0; pass < 2 && fallback == NULL; pass++) {
        for (size_t i = 0; i < n; i++) {
            struct tg_replica *rep = &pool->replicas[(start + i) % n];
            if (want->only != NULL && rep != want->only)
                continue;
            if (pass == 0 && (tg_replica_ejected(rep, now_ms) ||
                              !tg_replica_serves(rep, mi, want->has_version, want->version)))
                continue;
            unsigned k0 = atomic_fetch_add_explicit(&rep->next, 1, memory_order_relaxed);
            for (size_t j = 0; j < rep->n_channels; j++) {
                struct tg_channel *ch = &rep->channels[(k0 + j) % rep->n_channels];
                grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch->ch, 0);
                if (st == GRPC_CHANNEL_READY) {
                    *replica = rep;
                    *channel = ch;
                    return 0;
                }
                if (st == GRPC_CHANNEL_IDLE) /* round_robin should not idle; wake it anyway */
                    grpc_channel_check_connectivity_state(ch->ch, 1);
                if (st != GRPC_CHANNEL_TRANSIENT_FAILURE && st != GRPC_CHANNEL_SHUTDOWN &&
                    fallback == NULL) {
                    fallback = rep;
                    fallback_ch = ch;
                }
            }
        }
    }
    if (fallback == NULL)
        return -1;
    *replica = fallback;
    *channel = fallback_ch;
    return 0;
}
