/*
 * worker.c - see worker.h. Shutdown: drain (stop accepting, GOAWAY / Connection: close) ->
 * wait for streams, up to the drain timeout -> cancel the calls left -> close connections ->
 * when no call is in flight, shut the completion queue down -> the pump sees
 * GRPC_QUEUE_SHUTDOWN and posts pump_exit -> the loop closes its handles and returns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tfgate/auth.h"
#include "tfgate/gateway.h"
#include "tfgate/health.h"
#include "tfgate/metrics.h"
#include "tfgate/ratelimit.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/log.h"
#include "tfgate/rest.h"
#include "tfgate/upstream.h"
#include "tfgate/upstream_h2.h"
#include "tfgate/worker.h"

uint64_t tg_worker_now(struct tg_worker *w)
{
    return uv_now(&w->loop);
}

void tg_worker_post(struct tg_worker *w, struct tg_msg *msg)
{
    int was_empty;
    msg->next = NULL;
    pthread_mutex_lock(&w->mb_mu);
    was_empty = w->mb_head == NULL;
    if (w->mb_tail)
        w->mb_tail->next = msg;
    else
        w->mb_head = msg;
    w->mb_tail = msg;
    pthread_mutex_unlock(&w->mb_mu);
    if (was_empty)
        uv_async_send(&w->async);
}

static void on_async(uv_async_t *a)
{
    struct tg_worker *w = a->data;
    struct tg_msg *m;

    pthread_mutex_lock(&w->mb_mu);
    m = w->mb_head;
    w->mb_head = w->mb_tail = NULL;
    pthread_mutex_unlock(&w->mb_mu);
    while (m != NULL) {
        struct tg_msg *next = m->next;
        m->deliver(m);
        m = next;
    }
}

void tg_worker_mark_dirty(struct tg_worker *w, struct tg_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    c->dirty_next = w->dirty;
    w->dirty = c;
}

static void maybe_finish(struct tg_worker *w);

/* ---- listeners ---- */

struct tg_lpoll {
    uv_poll_t h; /* first */
    struct tg_worker *w;
    struct tg_listener *l; /* referenced */
};

static void on_accept(uv_poll_t *h, int status, int events);

static struct tg_lpoll *poll_listener(struct tg_worker *w, struct tg_listener *l)
{
    struct tg_lpoll *p = tg_xcalloc(1, sizeof(*p));
    p->w = w;
    p->l = l;
    tg_listener_ref(l);
    atomic_fetch_add(&l->pollers, 1);
    uv_poll_init(&w->loop, &p->h, l->fd);
    p->h.data = p;
    uv_poll_start(&p->h, UV_READABLE, on_accept);
    return p;
}

static void on_lpoll_closed(uv_handle_t *h)
{
    struct tg_lpoll *p = h->data;
    tg_listener_unref(p->l);
    free(p);
}

/* Stops polling; the last worker to stop closes the socket, so clients are refused at once
 * instead of waiting in a backlog nobody accepts from. */
static void unpoll_listener(struct tg_lpoll *p)
{
    uv_poll_stop(&p->h);
    if (atomic_fetch_sub(&p->l->pollers, 1) == 1) {
        close(p->l->fd);
        p->l->fd = -1;
    }
    uv_close((uv_handle_t *)&p->h, on_lpoll_closed);
}

/* Polls exactly the listeners of |gen|: kept ones stay as they are. */
static void update_polls(struct tg_worker *w, const struct tg_gen *gen)
{
    struct tg_lpoll **np = tg_xcalloc(gen->n_listeners + 1, sizeof(*np));
    for (size_t i = 0; i < gen->n_listeners; i++) {
        for (size_t k = 0; k < w->n_listen_polls && np[i] == NULL; k++) {
            if (w->listen_polls[k] != NULL && w->listen_polls[k]->l == gen->listeners[i]) {
                np[i] = w->listen_polls[k];
                w->listen_polls[k] = NULL;
            }
        }
        if (np[i] == NULL)
            np[i] = poll_listener(w, gen->listeners[i]);
    }
    for (size_t k = 0; k < w->n_listen_polls; k++) {
        if (w->listen_polls[k] != NULL)
            unpoll_listener(w->listen_polls[k]);
    }
    free(w->listen_polls);
    w->listen_polls = np;
    w->n_listen_polls = gen->n_listeners;
}

/* ---- generations ---- */

/* Takes over the caller's reference to |gen|. The caller gives it its transport and prober. */
static struct tg_wgen *wgen_new(struct tg_gen *gen)
{
    struct tg_wgen *wg = tg_xcalloc(1, sizeof(*wg));
    wg->gen = gen;
    return wg;
}

static void wgen_free(struct tg_worker *w, struct tg_wgen *wg)
{
    for (struct tg_wgen **pp = &w->retired; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == wg) {
            *pp = wg->next;
            break;
        }
    }
    tg_upstream_h2_release(wg->h2up); /* the last user stops it; it frees itself */
    tg_gen_unref(wg->gen);
    free(wg);
}

struct tg_wgen *tg_worker_use(struct tg_worker *w)
{
    w->cur->users++;
    return w->cur;
}

void tg_worker_release(struct tg_worker *w, struct tg_wgen *wg)
{
    (void)w;
    wg->users--; /* a retired one is freed in the before-sleep hook: this may run inside a
                    callback of the very connections it would close */
}

/* Before the loop sleeps: retired generations no stream or prober uses any more. */
static void reap_retired(struct tg_worker *w)
{
    struct tg_wgen *wg = w->retired;
    while (wg != NULL) {
        struct tg_wgen *next = wg->next;
        if (wg->users == 0)
            wgen_free(w, wg);
        wg = next;
    }
}

struct gen_msg {
    struct tg_msg msg;
    struct tg_worker *w;
    struct tg_gen *gen; /* referenced */
};

static void on_set_gen(struct tg_msg *msg)
{
    struct gen_msg *gm = tg_container_of(msg, struct gen_msg, msg);
    struct tg_worker *w = gm->w;
    struct tg_gen *gen = gm->gen;
    free(gm);
    if (w->draining) { /* keeps serving its streams on what it has */
        tg_gen_unref(gen);
        return;
    }
    struct tg_wgen *old = w->cur;
    w->cur = wgen_new(gen);
    if (old->h2up != NULL && old->gen->pools == gen->pools) {
        /* the same pools (gateway.h): their connections carry on for both generations */
        w->cur->h2up = old->h2up;
        tg_upstream_h2_share(w->cur->h2up, gen);
    } else {
        w->cur->h2up = tg_upstream_h2_new(w, gen);
    }
    if (w->id == 0)
        w->cur->prober = tg_health_start(w, w->cur);
    w->limits = &gen->config->limits;
    update_polls(w, gen);
    /* per-worker caches built from the old rules */
    tg_auth_cache_free(w);
    tg_rest_cache_expire(w);
    tg_ratelimit_worker_update(w);
    /* the old generation lives on while streams use it */
    old->next = w->retired;
    w->retired = old;
    if (old->prober != NULL) {
        tg_health_stop(old->prober); /* releases its use when its probes are done */
        old->prober = NULL;
    }
}

void tg_worker_set_gen(struct tg_worker *w, struct tg_gen *gen)
{
    struct gen_msg *gm = tg_xcalloc(1, sizeof(*gm));
    gm->msg.deliver = on_set_gen;
    gm->w = w;
    gm->gen = gen;
    tg_gen_ref(gen);
    tg_worker_post(w, &gm->msg);
}

/* Before the loop sleeps: every connection with something to write or to close. */
static void on_prepare(uv_prepare_t *p)
{
    struct tg_worker *w = p->data;
    while (w->dirty != NULL) {
        struct tg_conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = 0;
        tg_conn_flush(c);
    }
    /* after the clients: their handlers may have started calls */
    tg_upstream_h2_flush(w->cur->h2up);
    for (struct tg_wgen *wg = w->retired; wg != NULL; wg = wg->next)
        tg_upstream_h2_flush(wg->h2up);
    reap_retired(w);
    if (w->draining)
        maybe_finish(w);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct tg_lpoll *p = h->data;
    struct tg_worker *w = p->w;
    struct tg_listener *l = p->l;
    (void)events;
    if (status < 0 || w->draining)
        return;
    /* bounded per wakeup: the listening socket is shared, other workers take the rest */
    for (int i = 0; i < 32; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                tg_log(TG_LOG_WARN, "accept", "worker=%d: out of file descriptors", w->id);
            return; /* EAGAIN: another worker won, or nothing left */
        }
        if (w->n_conns >= w->limits->max_connections) {
            close(fd); /* over the limit: refuse rather than degrade everyone */
            tg_log(TG_LOG_WARN, "accept", "worker=%d: connection limit %u reached", w->id,
                   w->limits->max_connections);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char peer[64] = "?";
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            snprintf(peer, sizeof(peer), "%s:%u", ip, ntohs(a->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            char ip[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            snprintf(peer, sizeof(peer), "[%s]:%u", ip, ntohs(a->sin6_port));
        }
        tg_conn_accept(w, l, fd, peer);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct tg_worker *w = t->data;
    uint64_t now = tg_worker_now(w);
    for (struct tg_conn *c = w->conns; c != NULL; c = c->next) {
        if (c->closing)
            continue;
        if (c->state != TG_CONN_ACTIVE) {
            /* handshake or sniffing that never completes */
            if (now - c->accepted_ms > w->limits->header_timeout_ms)
                tg_conn_close(c, 1);
            continue;
        }
        c->ops->tick(c, now);
        tg_worker_mark_dirty(w, c);
    }
    tg_health_tick(w);
    if (w->draining)
        maybe_finish(w);
}

static void on_pump_exit(struct tg_msg *msg)
{
    struct tg_worker *w = tg_container_of(msg, struct tg_worker, pump_exit.msg);
    uv_stop(&w->loop);
}

static void *pump_main(void *arg)
{
    struct tg_worker *w = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct tg_cq_tag *tag = ev.tag;
        tag->ok = ev.success;
        tg_worker_post(w, &tag->msg); /* the mailbox mutex orders |ok| before delivery */
    }
    tg_worker_post(w, &w->pump_exit.msg);
    return NULL;
}

/* Draining: once every connection is closed and every call has completed, shut the queue
 * down. Past the drain deadline, cancel what is left. */
static void maybe_finish(struct tg_worker *w)
{
    if (w->cq_shutdown)
        return;
    uint64_t now = tg_worker_now(w);
    int late = now >= w->drain_deadline_ms;
    for (struct tg_conn *c = w->conns; c != NULL; c = c->next) {
        if (c->closing)
            continue;
        if (late || c->state != TG_CONN_ACTIVE || c->ops->active_streams(c) == 0)
            tg_conn_close(c, late);
    }
    if (late) {
        for (struct tg_upstream_call *call = w->calls; call != NULL; call = call->next)
            tg_upstream_cancel(call); /* completions still arrive and free */
    }
    if (w->n_conns == 0 && w->n_calls == 0) {
        for (struct tg_wgen *wg = w->cur; wg != NULL; wg = wg == w->cur ? w->retired : wg->next) {
            tg_upstream_h2_release(wg->h2up); /* the last user stops it; it frees itself */
            wg->h2up = NULL;
        }
        tg_ratelimit_worker_stop(w);
        w->cq_shutdown = 1;
        grpc_completion_queue_shutdown(w->cq);
    }
}

struct drain_msg {
    struct tg_msg msg;
    struct tg_worker *w;
};

static void on_drain(struct tg_msg *msg)
{
    struct drain_msg *dm = tg_container_of(msg, struct drain_msg, msg);
    struct tg_worker *w = dm->w;
    free(dm);
    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline_ms = tg_worker_now(w) + w->limits->drain_timeout_ms;
    for (size_t i = 0; i < w->n_listen_polls; i++)
        unpoll_listener(w->listen_polls[i]);
    w->n_listen_polls = 0;
    if (w->cur->prober != NULL)
        tg_health_stop(w->cur->prober);
    w->cur->prober = NULL;
    tg_health_drain(w);
    for (struct tg_conn *c = w->conns; c != NULL; c = c->next) {
        if (c->state == TG_CONN_ACTIVE && !c->closing)
            c->ops->drain(c);
        tg_worker_mark_dirty(w, c);
    }
    /* a shorter tick while draining, so the end is noticed promptly */
    uv_timer_start(&w->tick, on_tick, 50, 50);
    maybe_finish(w);
}

void tg_worker_drain(struct tg_worker *w)
{
    struct drain_msg *dm = tg_xcalloc(1, sizeof(*dm));
    dm->msg.deliver = on_drain;
    dm->w = w;
    tg_worker_post(w, &dm->msg);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void *loop_main(void *arg)
{
    struct tg_worker *w = arg;
    w->cur->h2up = tg_upstream_h2_new(w, w->cur->gen);
    tg_ratelimit_worker_update(w);
    if (w->id == 0)
        w->cur->prober = tg_health_start(w, w->cur);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* stopped by pump_exit: every connection and call is gone; close the loop's handles (the
     * transport's and the rate limiter's free themselves in their close callbacks) */
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    tg_rest_cache_free(w);
    tg_auth_cache_free(w);
    while (w->retired != NULL) /* every stream is gone */
        wgen_free(w, w->retired);
    wgen_free(w, w->cur);
    w->cur = NULL;
    return NULL; /* the metrics shard stays until join: other workers' scrapes may read it */
}

struct tg_worker *tg_worker_new(struct tg_gateway *gw, int id, struct tg_gen *gen)
{
    struct tg_worker *w = tg_xcalloc(1, sizeof(*w));
    w->id = id;
    w->gw = gw;
    tg_gen_ref(gen);
    w->cur = wgen_new(gen);
    w->limits = &gen->config->limits;
    uv_loop_init(&w->loop);
    pthread_mutex_init(&w->mb_mu, NULL);
    uv_async_init(&w->loop, &w->async, on_async);
    w->async.data = w;
    uv_prepare_init(&w->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_prepare);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, w->limits->sweep_interval_ms, w->limits->sweep_interval_ms);
    update_polls(w, gen);
    w->cq = grpc_completion_queue_create_for_next(NULL);
    tg_metrics_shard_new(w, gen->config);
    w->pump_exit.msg.deliver = on_pump_exit;
    return w;
}

int tg_worker_start(struct tg_worker *w)
{
    if (pthread_create(&w->pump, NULL, pump_main, w) != 0)
        return -1;
    if (pthread_create(&w->thread, NULL, loop_main, w) != 0)
        return -1;
    return 0;
}

void tg_worker_join_free(struct tg_worker *w)
{
    pthread_join(w->thread, NULL);
    pthread_join(w->pump, NULL);
    tg_metrics_shard_free(w);
    grpc_completion_queue_destroy(w->cq);
    uv_loop_close(&w->loop);
    pthread_mutex_destroy(&w->mb_mu);
    free(w->listen_polls);
    free(w);
}
