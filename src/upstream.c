/*
 * upstream.c - what both transports share: dispatch by the pool's transport, the worker's
 * in-flight list, and completion (see upstream.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tfgate/arena.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/pool.h"
#include "tfgate/upstream.h"

void tg_upstream__complete(struct tg_upstream_call *c)
{
    struct tg_worker *w = c->w;
    if (c->finished)
        return;
    c->finished = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_calls--;
    if (c->result.replica)
        atomic_fetch_sub_explicit(&c->result.replica->inflight, 1, memory_order_relaxed);
    if (c->result.message == NULL)
        c->result.message = "";
    c->done(c, c->user);
}

void tg_upstream_start(struct tg_worker *w, struct tg_upstream_call *c,
                       const struct tg_upstream_req *req, struct tg_arena *arena,
                       tg_upstream_done_cb *done, void *user)
{
    memset(c, 0, sizeof(*c));
    c->w = w;
    c->arena = arena;
    c->done = done;
    c->user = user;
    c->started = 1;
    c->next = w->calls;
    if (w->calls)
        w->calls->prev = c;
    w->calls = c;
    w->n_calls++;
    c->_ops = req->pool->cfg->transport == TG_TRANSPORT_GRPC_CORE ? &tg_upstream_grpc_ops
                                                                  : &tg_upstream_h2_ops;
    c->_ops->start(c, req);
}

void tg_upstream_cancel(struct tg_upstream_call *c)
{
    if (c->started && !c->finished)
        c->_ops->cancel(c);
}

static void deliver_deferred(struct tg_msg *msg)
{
    struct tg_upstream_call *c = tg_container_of(msg, struct tg_upstream_call, tag.msg);
    tg_upstream__complete(c);
}

void tg_upstream__fail_later(struct tg_upstream_call *c, int status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    c->result.status = status;
    c->result.message = tg_arena_strndup(c->arena, buf, (size_t)n);
    c->result.message_len = (size_t)n;
    c->result.transport_failure = 1;
    c->tag.msg.deliver = deliver_deferred;
    tg_worker_post(c->w, &c->tag.msg);
}
