/*
 * ratelimit.c - see ratelimit.h.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/status.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/error.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/ratelimit.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

#define STRIPES            64
#define SLOTS              1024 /* per stripe */
#define MAX_KEYS_PER_CHECK 2
#define POLL_MS            5 /* how often pending Redis answers are checked against their deadline */
#define RECONNECT_MIN_MS   100
#define RECONNECT_MAX_MS   5000
#define CONNECT_TIMEOUT_MS 1000

/* ---- local buckets ---- */

struct bucket {
    struct bucket *next;
    uint64_t last_ms;
    double tokens;
    double rate, burst;
    size_t key_len;
    char key[];
};

struct stripe {
    pthread_mutex_t mu;
    struct bucket *slots[SLOTS];
    size_t n;
};

struct tg_ratelimit {
    const struct tg_ratelimit_cfg *cfg;
    size_t per_stripe_max;
    struct stripe stripes[STRIPES];
};

uint64_t tg_bucket_take(double *tokens, double rate, double burst, uint64_t elapsed_ms)
{
    double t = *tokens + rate * (double)elapsed_ms / 1000.0;
    if (t > burst)
        t = burst;
    if (t >= 1.0) {
        *tokens = t - 1.0;
        return 0;
    }
    *tokens = t;
    uint64_t wait = (uint64_t)ceil((1.0 - t) * 1000.0 / rate);
    return wait ? wait : 1;
}

struct tg_ratelimit *tg_ratelimit_new(const struct tg_ratelimit_cfg *cfg)
{
    if (cfg->identity.rate <= 0 && cfg->n_models == 0)
        return NULL;
    struct tg_ratelimit *rl = tg_xcalloc(1, sizeof(*rl));
    rl->cfg = cfg;
    rl->per_stripe_max = cfg->max_keys / STRIPES + 1;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&rl->stripes[i].mu, NULL);
    return rl;
}

void tg_ratelimit_free(struct tg_ratelimit *rl)
{
    if (rl == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        for (size_t k = 0; k < SLOTS; k++) {
            struct bucket *b = rl->stripes[i].slots[k], *next;
            for (; b != NULL; b = next) {
                next = b->next;
                free(b);
            }
        }
        pthread_mutex_destroy(&rl->stripes[i].mu);
    }
    free(rl);
}

/* Drops the stripe's buckets that have refilled completely: a new bucket would be the same. */
static void sweep(struct stripe *s, uint64_t now)
{
    for (size_t k = 0; k < SLOTS; k++) {
        struct bucket **pp = &s->slots[k];
        while (*pp != NULL) {
            struct bucket *b = *pp;
            if ((double)(now - b->last_ms) >= b->burst * 1000.0 / b->rate) {
                *pp = b->next;
                free(b);
                s->n--;
            } else {
                pp = &b->next;
            }
        }
    }
}

/* Takes one token from the local bucket |key| (created full). Returns 0, or the wait in ms.
 * |refund| gives one back instead (a later bucket of the same request refused). */
static uint64_t local_take(struct tg_ratelimit *rl, const char *key, size_t len,
                           const struct tg_bucket_cfg *bc, int refund)
{
    uint64_t h = tg_hash64(key, len), now = tg_mono_ms(), wait = 0;
    struct stripe *s = &rl->stripes[h % STRIPES];
    pthread_mutex_lock(&s->mu);
    struct bucket **slot = &s->slots[(h / STRIPES) % SLOTS], *b;
    for (b = *slot; b != NULL; b = b->next) {
        if (b->key_len == len && memcmp(b->key, key, len) == 0)
            break;
    }
    if (b == NULL && !refund) {
        if (s->n >= rl->per_stripe_max)
            sweep(s, now);
        if (s->n < rl->per_stripe_max) {
            b = tg_xmalloc(sizeof(*b) + len);
            b->tokens = bc->burst;
            b->last_ms = now;
            b->rate = bc->rate;
            b->burst = bc->burst;
            b->key_len = len;
            memcpy(b->key, key, len);
            b->next = *slot;
            *slot = b;
            s->n++;
        } /* else: the table is full of active callers; this one goes unlimited locally */
    }
    if (b != NULL) {
        if (refund) {
            b->tokens = b->tokens + 1 > b->burst ? b->burst : b->tokens + 1;
        } else {
            wait = tg_bucket_take(&b->tokens, b->rate, b->burst, now - b->last_ms);
            b->last_ms = now;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return wait;
}

/* ---- what a request is limited by ---- */

struct limits {
    size_t n;
    char key[MAX_KEYS_PER_CHECK][512];
    size_t len[MAX_KEYS_PER_CHECK];
    const struct tg_bucket_cfg *bucket[MAX_KEYS_PER_CHECK];
    const char *what[MAX_KEYS_PER_CHECK]; /* for the message */
};

TG_PRINTF(4, 5)
static void add_limit(struct limits *l, const struct tg_bucket_cfg *b, const char *what,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->key[l->n], sizeof(l->key[0]), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    l->len[l->n] = (size_t)n < sizeof(l->key[0]) ? (size_t)n : sizeof(l->key[0]) - 1;
    l->bucket[l->n] = b;
    l->what[l->n] = what;
    l->n++;
}

static void limits_for(const struct tg_ratelimit_cfg *cfg, const struct tg_identity *id,
                       const char *model, struct limits *l)
{
    l->n = 0;
    if (cfg->identity.rate > 0) {
        if (id == NULL || id->anonymous)
            add_limit(l, &cfg->identity, "caller", "%sanon", cfg->redis_prefix);
        else /* the provider's length first, so no provider/subject pair can pose as another */
            add_limit(l, &cfg->identity, "caller", "%sid:%zu:%s:%.400s", cfg->redis_prefix,
                      strlen(id->provider), id->provider, id->subject);
    }
    const struct tg_model_limit_cfg *m = NULL;
    for (size_t i = 0; i < cfg->n_models; i++) {
        if (strcmp(cfg->models[i].model, model) == 0)
            m = &cfg->models[i];
        else if (m == NULL && strcmp(cfg->models[i].model, "*") == 0)
            m = &cfg->models[i];
    }
    if (m != NULL)
        add_limit(l, &m->bucket, "model", "%smodel:%.400s", cfg->redis_prefix, model);
}

/* ---- answers ---- */

static void refuse(struct tg_stream *st, const char *what, const char *model, uint64_t wait_ms)
{
    char msg[400], secs[24];
    if (strcmp(what, "model") == 0)
        snprintf(msg, sizeof(msg), "tfgate: rate limit exceeded for model '%.200s'", model);
    else
        snprintf(msg, sizeof(msg), "tfgate: rate limit exceeded for this caller");
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)((wait_ms + 999) / 1000));
    if (st->audit != NULL) {
        st->audit->denied = 1;
        st->audit->reason = "rate limited";
    }
    tg_metrics_event(strcmp(what, "model") == 0 ? TG_EV_RATELIMITED_MODEL
                                                : TG_EV_RATELIMITED_CALLER);
    if (tg_stream_is_grpc(st) && st->http2) {
        tg_stream_add_trailer(st, "retry-after", secs, strlen(secs));
        tg_stream_respond_grpc_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    } else {
        tg_stream_add_resp_header(st, "retry-after", secs, strlen(secs));
        tg_stream_respond_json_error(st, 429, msg);
    }
}

static int decide_locally(struct tg_ratelimit *rl, struct tg_stream *st, const char *model,
                          const struct limits *l)
{
    for (size_t i = 0; i < l->n; i++) {
        uint64_t wait = local_take(rl, l->key[i], l->len[i], l->bucket[i], 0);
        if (wait != 0) {
            for (size_t k = 0; k < i; k++)
                local_take(rl, l->key[k], l->len[k], l->bucket[k], 1);
            refuse(st, l->what[i], model, wait);
            return -1;
        }
    }
    return 0;
}

/* ---- Redis ---- */

/* Every bucket of the request at once, on the server's clock: either all give a token or none
 * does. Returns {0, 0} when allowed, else {wait_ms, index of the bucket that refused}. */
static const char script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local tok, wait, who = {}, 0, 0\n"
    "for i = 1, #KEYS do\n"
    "  local rate, burst = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])\n"
    "  local b = redis.call('HMGET', KEYS[i], 't', 'ts')\n"
    "  local tokens, ts = tonumber(b[1]), tonumber(b[2])\n"
    "  if tokens == nil or ts == nil then tokens, ts = burst, now end\n"
    "  if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end\n"
    "  tok[i] = tokens\n"
    "  if tokens < 1 then\n"
    "    local w = math.ceil((1 - tokens) * 1000 / rate)\n"
    "    if w > wait then wait, who = w, i - 1 end\n"
    "  end\n"
    "end\n"
    "for i = 1, #KEYS do\n"
    "  local rate, burst = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])\n"
    "  if wait == 0 then tok[i] = tok[i] - 1 end\n"
    "  redis.call('HSET', KEYS[i], 't', tostring(tok[i]), 'ts', now)\n"
    "  redis.call('PEXPIRE', KEYS[i], math.ceil(burst * 1000 / rate) + 1000)\n"
    "end\n"
    "return {wait, who}\n";

struct op;

struct rl_redis {
    struct tg_worker *w;
    char *host; /* where it connects (a reload naming another server replaces it) */
    int port;
    int fail_closed;
    int closing; /* timers closing (and a lookup finishing) after stop; the last frees it */
    uv_getaddrinfo_t dns; /* a name is looked up on libuv's threadpool, never on the loop */
    int resolving;
    redisAsyncContext *ac; /* NULL while disconnected */
    int connected;
    int stopping;
    int down; /* an outage was logged */
    uint64_t backoff_ms;
    uv_timer_t reconnect;
    uv_timer_t connect_timeout;
    uv_timer_t poll; /* runs while answers are pending */
    struct op *pending;
};

struct op {
    struct op *prev, *next; /* the worker's pending list, while |st| is set */
    struct rl_redis *r;
    struct tg_stream *st; /* NULL once decided without Redis (timeout, stop) */
    void (*resume)(struct tg_stream *st);
    uint64_t deadline_ms;
    const char *model; /* in the stream's arena */
    struct limits l;
};

static void connect_redis(struct rl_redis *r);

static void pending_unlink(struct rl_redis *r, struct op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        r->pending = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
    if (r->pending == NULL)
        uv_timer_stop(&r->poll);
}

static void outage(struct rl_redis *r, const char *why)
{
    if (r->down)
        return;
    r->down = 1;
    tg_log(TG_LOG_WARN, "ratelimit", "worker %d: Redis %s:%d %s; %s", r->w->id, r->host, r->port,
           why, r->fail_closed ? "refusing limited requests (503)" : "local limits apply");
}

/* Redis did not decide: local buckets, or a refusal when configured to fail closed. Then the
 * request goes on (resume) or has been answered. */
static void fall_back(struct op *op)
{
    tg_metrics_event(TG_EV_RATELIMIT_REDIS_DOWN);
    struct tg_stream *st = op->st;
    const struct tg_ratelimit_cfg *cfg = &st->gen->config->ratelimit;
    if (st->conn != NULL) {
        if (cfg->redis_fail_closed) {
            if (st->audit != NULL) {
                st->audit->denied = 1;
                st->audit->reason = "rate limiter unavailable";
            }
            tg_stream_respond_error(st, TG_EUNAVAILABLE, "tfgate: rate limiter unavailable");
        } else if (decide_locally(st->gen->ratelimit, st, op->model, &op->l) == 0) {
            op->resume(st);
        }
    }
    tg_stream_unref(st);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct op *op = privdata;
    redisReply *rep = reply;
    (void)ac;
    if (op->st == NULL) { /* decided already (timeout): only the memory is left */
        free(op);
        return;
    }
    struct tg_stream *st = op->st;
    pending_unlink(op->r, op);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER) {
        outage(op->r, rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "gave no answer");
        fall_back(op);
        free(op);
        return;
    }
    if (op->r->down) {
        op->r->down = 0;
        tg_log(TG_LOG_INFO, "ratelimit", "worker %d: Redis answers again", op->r->w->id);
    }
    long long wait = rep->element[0]->integer, who = rep->element[1]->integer;
    if (st->conn != NULL) {
        if (wait <= 0)
            op->resume(st);
        else
            refuse(st, op->l.what[who >= 0 && (size_t)who < op->l.n ? who : 0], op->model,
                   (uint64_t)wait);
    }
    tg_stream_unref(st);
    free(op);
}

static void on_poll(uv_timer_t *t)
{
    struct rl_redis *r = t->data;
    uint64_t now = tg_worker_now(r->w);
    struct op *op = r->pending, *next;
    for (; op != NULL; op = next) {
        next = op->next;
        if (op->deadline_ms > now)
            continue;
        pending_unlink(r, op);
        outage(r, "is too slow");
        fall_back(op);
        op->st = NULL; /* on_reply frees it when (if) the answer comes */
    }
}

static void on_ping(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)reply;
    (void)privdata; /* failures arrive through on_connect / on_disconnect */
}

static void on_reconnect(uv_timer_t *t)
{
    connect_redis(t->data);
}

static void schedule_reconnect(struct rl_redis *r)
{
    if (r->stopping)
        return;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : RECONNECT_MIN_MS;
    if (r->backoff_ms > RECONNECT_MAX_MS)
        r->backoff_ms = RECONNECT_MAX_MS;
    uv_timer_start(&r->reconnect, on_reconnect, r->backoff_ms, 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rl_redis *r = ac->data;
    uv_timer_stop(&r->connect_timeout);
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees the context */
        outage(r, "is unreachable");
        schedule_reconnect(r);
        return;
    }
    uv_timer_stop(&r->connect_timeout);
    r->connected = 1;
    r->backoff_ms = 0;
    if (r->down) {
        r->down = 0;
        tg_log(TG_LOG_INFO, "ratelimit", "worker %d: Redis connected", r->w->id);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rl_redis *r = ac->data;
    (void)status;
    r->ac = NULL;
    r->connected = 0;
    if (!r->stopping) {
        outage(r, "closed the connection");
        schedule_reconnect(r);
    }
}

/* hiredis' libuv adapter drops poll errors, so a refused connection is never reported: give
 * each attempt a deadline instead. */
static void on_connect_timeout(uv_timer_t *t)
{
    struct rl_redis *r = t->data;
    if (r->connected || r->ac == NULL)
        return;
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    redisAsyncFree(ac);
    outage(r, "is unreachable");
    schedule_reconnect(r);
}

static void connect_to(struct rl_redis *r, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, r->port);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        outage(r, "is unreachable");
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    redisLibuvAttach(ac, &r->w->loop);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    /* hiredis 0.14 watches the socket only once a command is queued */
    redisAsyncCommand(ac, on_ping, NULL, "PING");
    uv_timer_start(&r->connect_timeout, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
}

static void rl_redis_free(struct rl_redis *r)
{
    free(r->host);
    free(r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rl_redis *r = req->data;
    char ip[INET6_ADDRSTRLEN] = "";
    r->resolving = 0;
    /* an IPv4 address first: "localhost" lists ::1 first, and servers often bind IPv4 only */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *a = res; status == 0 && a != NULL; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    if (status == 0 && pick != NULL)
        uv_ip_name(pick->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    if (r->stopping) {
        if (--r->closing == 0)
            rl_redis_free(r);
        return;
    }
    if (ip[0] == '\0') {
        outage(r, status == 0 ? "has no address" : uv_strerror(status));
        schedule_reconnect(r);
        return;
    }
    connect_to(r, ip);
}

/* A numeric address connects at once; a name (a Kubernetes Service, say) is looked up first,
 * off the loop: hiredis would resolve it with a blocking call. Looked up again on every
 * attempt, so a moved server is found. */
static void connect_redis(struct rl_redis *r)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, r->host, &a4) == 1 || inet_pton(AF_INET6, r->host, &a6) == 1) {
        connect_to(r, r->host);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->dns.data = r;
    if (uv_getaddrinfo(&r->w->loop, &r->dns, on_resolved, r->host, NULL, &hints) != 0) {
        outage(r, "cannot be looked up");
        schedule_reconnect(r);
        return;
    }
    r->resolving = 1;
}

void tg_ratelimit_worker_update(struct tg_worker *w)
{
    const struct tg_gen *g = w->cur->gen;
    const struct tg_ratelimit_cfg *cfg = &g->config->ratelimit;
    int want = g->ratelimit != NULL && cfg->redis_host != NULL;
    struct rl_redis *r = w->rl_redis;
    if (r != NULL) {
        if (want && strcmp(r->host, cfg->redis_host) == 0 && r->port == cfg->redis_port) {
            r->fail_closed = cfg->redis_fail_closed; /* the same server: keep the connection */
            return;
        }
        tg_ratelimit_worker_stop(w);
    }
    if (!want)
        return;
    r = tg_xcalloc(1, sizeof(*r));
    r->w = w;
    r->host = tg_xstrdup(cfg->redis_host);
    r->port = cfg->redis_port;
    r->fail_closed = cfg->redis_fail_closed;
    uv_timer_init(&w->loop, &r->reconnect);
    r->reconnect.data = r;
    uv_timer_init(&w->loop, &r->poll);
    r->poll.data = r;
    uv_timer_init(&w->loop, &r->connect_timeout);
    r->connect_timeout.data = r;
    w->rl_redis = r;
    connect_redis(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct rl_redis *r = h->data;
    if (--r->closing == 0)
        rl_redis_free(r);
}

void tg_ratelimit_worker_stop(struct tg_worker *w)
{
    struct rl_redis *r = w->rl_redis;
    if (r == NULL)
        return;
    w->rl_redis = NULL;
    r->stopping = 1;
    if (r->ac != NULL)
        redisAsyncFree(r->ac); /* pending callbacks run now with no reply; the adapter closes */
    r->ac = NULL;
    if (r->resolving) { /* its callback still comes (cancelled or not) and frees last */
        r->closing++;
        uv_cancel((uv_req_t *)&r->dns);
    }
    uv_timer_t *timers[] = {&r->reconnect, &r->poll, &r->connect_timeout};
    for (size_t i = 0; i < TG_ARRAY_SIZE(timers); i++) {
        uv_timer_stop(timers[i]);
        r->closing++;
        uv_close((uv_handle_t *)timers[i], on_timer_closed);
    }
}

int tg_ratelimit_check(struct tg_stream *st, const char *model,
                       void (*resume)(struct tg_stream *st))
{
    struct tg_ratelimit *rl = st->gen->ratelimit;
    struct limits l;
    if (rl == NULL)
        return 0;
    limits_for(rl->cfg, st->identity, model, &l);
    if (l.n == 0)
        return 0;
    struct rl_redis *r = st->w->rl_redis;
    if (r == NULL)
        return decide_locally(rl, st, model, &l);
    if (!r->connected || r->ac == NULL) {
        tg_metrics_event(TG_EV_RATELIMIT_REDIS_DOWN);
        if (rl->cfg->redis_fail_closed) {
            if (st->audit != NULL) {
                st->audit->denied = 1;
                st->audit->reason = "rate limiter unavailable";
            }
            tg_stream_respond_error(st, TG_EUNAVAILABLE, "tfgate: rate limiter unavailable");
            return -1;
        }
        return decide_locally(rl, st, model, &l);
    }

    struct op *op = tg_xcalloc(1, sizeof(*op));
    const char *argv[3 + 3 * MAX_KEYS_PER_CHECK];
    size_t argl[3 + 3 * MAX_KEYS_PER_CHECK];
    char nums[2 * MAX_KEYS_PER_CHECK][32], nkeys[8];
    int argc = 0;
    op->r = r;
    op->l = l;
    op->model = model;
    op->resume = resume;
    snprintf(nkeys, sizeof(nkeys), "%zu", l.n);
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = nkeys;
    for (size_t i = 0; i < l.n; i++)
        argv[argc++] = op->l.key[i];
    for (size_t i = 0; i < l.n; i++) {
        snprintf(nums[2 * i], sizeof(nums[0]), "%.17g", l.bucket[i]->rate);
        snprintf(nums[2 * i + 1], sizeof(nums[0]), "%.17g", l.bucket[i]->burst);
        argv[argc++] = nums[2 * i];
        argv[argc++] = nums[2 * i + 1];
    }
    for (int i = 0; i < argc; i++)
        argl[i] = strlen(argv[i]);
    for (size_t i = 0; i < l.n; i++)
        argl[3 + i] = op->l.len[i];
    if (redisAsyncCommandArgv(r->ac, on_reply, op, argc, argv, argl) != REDIS_OK) {
        free(op);
        outage(r, "refused a command");
        if (rl->cfg->redis_fail_closed) {
            tg_stream_respond_error(st, TG_EUNAVAILABLE, "tfgate: rate limiter unavailable");
            return -1;
        }
        return decide_locally(rl, st, model, &l);
    }
    tg_stream_ref(st); /* dropped when decided */
    op->st = st;
    op->deadline_ms = tg_worker_now(st->w) + rl->cfg->redis_timeout_ms;
    op->next = r->pending;
    if (r->pending)
        r->pending->prev = op;
    else
        uv_timer_start(&r->poll, on_poll, POLL_MS, POLL_MS);
    r->pending = op;
    return 1;
}
