/*
 * upstream_h2.c - the native transport (see upstream.h): gRPC over HTTP/2 with an nghttp2
 * client session per connection, on the worker's own loop. Each worker keeps its own
 * connections to every replica of every native pool, so a call never crosses a thread and
 * takes no lock.
 *
 * Lifetimes: a call is completed only once nghttp2 has forgotten its stream
 * (on_stream_close), or after the session is deleted when the connection fails; until then
 * nghttp2 may read the request bytes and the per-call state, both of which live in the
 * caller's stream. Deadlines and cancels reset the stream and complete when it closes.
 *
 * Connection states: CONNECTING (TCP connect in progress; calls may already be queued in the
 * session) -> READY -> (error or EOF) BACKOFF -> CONNECTING ... A GOAWAY from the backend
 * stops new calls on the connection; it is replaced once its last stream ends.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/status.h>
#include <nghttp2/nghttp2.h>

#include "tfgate/arena.h"
#include "tfgate/buf.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/log.h"
#include "tfgate/pool.h"
#include "tfgate/upstream.h"
#include "tfgate/upstream_h2.h"
#include "tfgate/worker.h"

#define CONNECT_TIMEOUT_MS     5000
#define DIRECT_WRITE_MIN       16384 /* bytes: smaller frames are batched (see conn.c) */
#define MAX_PINGS_WITHOUT_DATA 2     /* like gRPC core: TF Serving's server counts ping strikes */

enum hstate {
    H_CONNECTING = 0,
    H_READY,
    H_BACKOFF,
    H_CLOSED,
};

struct ucall;

struct hconn {
    struct h2up *up;
    struct tg_pool *pool;
    struct tg_replica *replica;
    char host[256]; /* to connect to */
    char port[16];
    char authority[280]; /* host:port, for :authority */
    int fd;
    uv_poll_t *poll; /* one per connection attempt: a closed handle cannot be reused
                        before its close callback, so it is freed there */
    int poll_events;
    uv_timer_t timer; /* connect timeout, backoff, keepalive */
    nghttp2_session *session;
    enum hstate state;
    int goaway; /* the backend sent GOAWAY: no new calls */
    uint32_t backoff_ms;
    uint64_t last_recv_ms;
    int pings_without_data;
    struct tg_buf out;
    struct ucall *calls; /* calls with a stream on this connection */
    size_t n_calls;
    int dirty;
    struct hconn *dirty_next;
    int closing_handles; /* 2 handles to close before freeing */
};

struct ucall {
    struct tg_upstream_call *call;
    struct hconn *conn;
    int32_t stream_id;
    uint8_t prefix[5];
    const uint8_t *msg;
    size_t msg_len;
    size_t sent;          /* of prefix + message */
    uint64_t deadline_ms; /* loop clock */
    int pending_status;   /* set when we reset the stream (deadline, cancel, size) */
    const char *pending_message;
    int http_status;
    int have_grpc_status;
    int grpc_status;
    const char *grpc_message;
    size_t grpc_message_len;
    int headers_seen;
    struct tg_md *md; /* metadata collected so far (initial, then trailing) */
    size_t n_md, cap_md;
    size_t n_initial; /* how many of |md| were initial metadata */
    struct tg_buf body;
    int remote_reset;            /* nghttp2 error code on close, 0 if clean */
    struct ucall *next, *prev;   /* the connection's list */
    struct ucall *dnext, *dprev; /* the worker's deadline list */
};

struct replconns {
    size_t n;
    struct hconn **conns;
    unsigned next;
};

struct poolconns {
    size_t n_replicas;
    struct replconns *reps;
    unsigned next;
};

struct h2up {
    struct tg_worker *w;
    struct tg_pools *set;    /* the generation's pools these connections serve */
    struct tg_limits limits; /* a copy of the newest generation's: older ones may go first */
    int refs;                /* worker generations using these connections (a reload may keep
                                the pools, and with them the connections) */
    size_t n_pools;
    struct poolconns *pools; /* indexed like set->pools; empty for grpc-core pools */
    struct hconn *dirty;
    uv_timer_t deadline_timer;
    uint64_t armed_at;   /* 0 = not armed */
    struct ucall *timed; /* calls with a deadline, for the timer's scan */
    int stopping;
    size_t open_conns;
    size_t closing; /* handles closing after stop: the last close callback frees it all */
};

static void conn_connect(struct hconn *c);
static void conn_fail(struct hconn *c, const char *why);
static void on_poll(uv_poll_t *h, int status, int events);

static void mark_dirty(struct hconn *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    c->dirty_next = c->up->dirty;
    c->up->dirty = c;
}

/* ---- deadlines: one timer per worker, armed at the earliest deadline ---- */

static void on_deadline_timer(uv_timer_t *t);

static void arm_deadline(struct h2up *up, uint64_t at)
{
    if (up->armed_at != 0 && up->armed_at <= at)
        return;
    uint64_t now = uv_now(&up->w->loop);
    up->armed_at = at;
    uv_timer_start(&up->deadline_timer, on_deadline_timer, at > now ? at - now : 0, 0);
}

static void untime(struct h2up *up, struct ucall *u)
{
    if (u->dprev)
        u->dprev->dnext = u->dnext;
    else if (up->timed == u)
        up->timed = u->dnext;
    if (u->dnext)
        u->dnext->dprev = u->dprev;
    u->dnext = u->dprev = NULL;
}

static void reset_stream(struct ucall *u, int status, const char *message)
{
    if (u->pending_status == 0) {
        u->pending_status = status;
        u->pending_message = message;
    }
    if (u->conn != NULL && u->conn->session != NULL && u->stream_id > 0) {
        nghttp2_submit_rst_stream(u->conn->session, NGHTTP2_FLAG_NONE, u->stream_id,
                                  NGHTTP2_CANCEL);
        mark_dirty(u->conn);
    }
}

static void on_deadline_timer(uv_timer_t *t)
{
    struct h2up *up = t->data;
    uint64_t now = uv_now(&up->w->loop), next = 0;
    up->armed_at = 0;
    for (struct ucall *u = up->timed, *nu; u != NULL; u = nu) {
        nu = u->dnext;
        if (u->deadline_ms <= now) {
            untime(up, u);
            reset_stream(u, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
        } else if (next == 0 || u->deadline_ms < next) {
            next = u->deadline_ms;
        }
    }
    if (next != 0)
        arm_deadline(up, next);
}

/* ---- completing calls ---- */

static void unlink_call(struct hconn *c, struct ucall *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else if (c->calls == u)
        c->calls = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->next = u->prev = NULL;
    c->n_calls--;
}

static const char *percent_decode(struct tg_arena *a, const char *in, size_t len, size_t *out_len)
{
    char *out = tg_arena_alloc(a, len + 1, 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%' && i + 2 < len && isxdigit((unsigned char)in[i + 1]) &&
            isxdigit((unsigned char)in[i + 2])) {
            char hex[3] = {in[i + 1], in[i + 2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* HTTP status of a response without grpc-status -> gRPC code (gRPC's HTTP mapping). */
static int status_from_http(int http)
{
    switch (http) {
    case 400:
        return GRPC_STATUS_INTERNAL;
    case 401:
        return GRPC_STATUS_UNAUTHENTICATED;
    case 403:
        return GRPC_STATUS_PERMISSION_DENIED;
    case 404:
        return GRPC_STATUS_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_STATUS_UNAVAILABLE;
    default:
        return GRPC_STATUS_UNKNOWN;
    }
}

/* Completes |u| from what its stream delivered. The stream is gone from nghttp2. */
static void finish(struct ucall *u, int connection_failed, const char *why)
{
    struct tg_upstream_call *call = u->call;
    struct tg_upstream_result *r = &call->result;
    struct tg_arena *a = call->arena;
    struct hconn *c = u->conn;

    untime(c->up, u);
    unlink_call(c, u);
    u->conn = NULL;
    r->initial_md = u->md;
    r->n_initial_md = u->n_initial;
    r->trailing_md = u->md + u->n_initial;
    r->n_trailing_md = u->n_md - u->n_initial;

    if (u->pending_status != 0) {
        r->status = u->pending_status;
        r->message = u->pending_message;
        r->message_len = strlen(u->pending_message);
    } else if (u->have_grpc_status) {
        r->status = u->grpc_status;
        r->message = u->grpc_message ? u->grpc_message : "";
        r->message_len = u->grpc_message_len;
    } else if (connection_failed || u->remote_reset == NGHTTP2_REFUSED_STREAM) {
        /* the backend never answered this call */
        r->status = GRPC_STATUS_UNAVAILABLE;
        r->message = why ? why : "stream refused by the backend";
        r->message_len = strlen(r->message);
        r->transport_failure = 1;
    } else if (u->http_status != 0 && u->http_status != 200) {
        char *m = tg_arena_alloc(a, 64, 1);
        r->message_len =
            (size_t)snprintf(m, 64, "Received http2 header with status: %d", u->http_status);
        r->message = m;
        r->status = status_from_http(u->http_status);
    } else {
        r->status =
            u->remote_reset == NGHTTP2_CANCEL ? GRPC_STATUS_CANCELLED : GRPC_STATUS_INTERNAL;
        r->message = u->remote_reset ? "Stream reset by the backend"
                                     : "Backend closed the stream without a status";
        r->message_len = strlen(r->message);
    }
    size_t n = tg_buf_size(&u->body);
    if (n > 0) {
        const char *why_not = NULL;
        const uint8_t *msg;
        size_t msg_len;
        int rv = tg_grpc_unframe(tg_buf_data(&u->body), n, c->up->limits.max_message_bytes, NULL, a,
                                 &msg, &msg_len, &why_not);
        if (rv == 0) {
            /* hand the buffer itself to the caller: the arena frees it */
            r->framed = tg_buf_data(&u->body);
            r->framed_len = n;
            r->response = msg;
            r->response_len = msg_len;
            tg_arena_defer(a, free, u->body.base);
            tg_buf_init(&u->body, 0);
        } else if (r->status == GRPC_STATUS_OK) {
            r->status = GRPC_STATUS_INTERNAL;
            r->message = "tfgate: malformed response message from the backend";
            r->message_len = strlen(r->message);
        }
    }
    tg_buf_dispose(&u->body);
    tg_upstream__complete(call);
}

/* ---- nghttp2 callbacks ---- */

static ssize_t read_request(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)s;
    (void)id;
    (void)user;
    struct ucall *u = src->ptr;
    size_t total = 5 + u->msg_len, n = 0;
    while (n < len && u->sent < total) {
        if (u->sent < 5) {
            buf[n++] = u->prefix[u->sent++];
            continue;
        }
        size_t k = total - u->sent < len - n ? total - u->sent : len - n;
        memcpy(buf + n, u->msg + (u->sent - 5), k);
        u->sent += k;
        n += k;
    }
    if (u->sent == total)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void add_md(struct ucall *u, struct tg_arena *a, const uint8_t *name, size_t nlen,
                   const uint8_t *value, size_t vlen)
{
    if (u->n_md == u->cap_md) {
        size_t ncap = u->cap_md ? u->cap_md * 2 : 8;
        struct tg_md *na = tg_arena_alloc(a, ncap * sizeof(*na), _Alignof(struct tg_md));
        if (u->n_md)
            memcpy(na, u->md, u->n_md * sizeof(*na));
        u->md = na;
        u->cap_md = ncap;
    }
    struct tg_md *m = &u->md[u->n_md++];
    m->name = tg_arena_strndup(a, (const char *)name, nlen);
    m->name_len = nlen;
    m->value = tg_arena_strndup(a, (const char *)value, vlen);
    m->value_len = vlen;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    struct ucall *u = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (u == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct tg_arena *a = u->call->arena;
#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)
    if (IS(":status")) {
        u->http_status = atoi((const char *)value); /* nghttp2 validated 3 digits */
    } else if (IS("grpc-status")) {
        u->have_grpc_status = 1;
        u->grpc_status = 0;
        for (size_t i = 0; i < vlen && value[i] >= '0' && value[i] <= '9'; i++)
            u->grpc_status = u->grpc_status * 10 + (value[i] - '0');
    } else if (IS("grpc-message")) {
        u->grpc_message = percent_decode(a, (const char *)value, vlen, &u->grpc_message_len);
    } else if (IS("content-type") || IS("grpc-encoding") || IS("grpc-accept-encoding")) {
        /* transport headers, not metadata */
    } else if (nlen > 0 && name[0] != ':') {
        add_md(u, a, name, nlen, value, vlen);
    }
#undef IS
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    struct hconn *c = user;
    c->last_recv_ms = uv_now(&c->up->w->loop);
    if (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)
        c->pings_without_data = 0;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
        c->backoff_ms = 0; /* a real HTTP/2 server: reset the backoff */
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1; /* no new calls; streams past last_stream_id close as refused */
        tg_log(TG_LOG_DEBUG, "upstream", "pool=%s replica=%s: GOAWAY", c->pool->cfg->name,
               c->replica->target);
    }
    if (frame->hd.type == NGHTTP2_HEADERS) {
        struct ucall *u = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
        if (u != NULL && !u->headers_seen) {
            u->headers_seen = 1;
            /* the first HEADERS is initial metadata, unless it ends the stream
             * (Trailers-Only), in which case gRPC treats it as trailing metadata */
            if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                u->n_initial = u->n_md;
        }
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    struct ucall *u = nghttp2_session_get_stream_user_data(s, id);
    if (u == NULL || u->pending_status != 0)
        return 0;
    if (tg_buf_size(&u->body) == 0 && len >= 5) {
        /* the prefix gives the size: one allocation instead of doubling (and its copies) */
        size_t want =
            5 + ((size_t)data[1] << 24 | (size_t)data[2] << 16 | (size_t)data[3] << 8 | data[4]);
        if (want <= u->body.cap)
            tg_buf_reserve(&u->body, want);
    }
    if (tg_buf_append(&u->body, data, len) != 0) {
        char *m = tg_arena_alloc(u->call->arena, 96, 1);
        snprintf(m, 96, "Received message larger than max (%zu vs. %zu)",
                 tg_buf_size(&u->body) + len, u->body.cap - 5);
        tg_buf_dispose(&u->body);
        reset_stream(u, GRPC_STATUS_RESOURCE_EXHAUSTED, m);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
    (void)user;
    struct ucall *u = nghttp2_session_get_stream_user_data(s, id);
    if (u == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    u->remote_reset = (int)error_code;
    finish(u, 0, NULL);
    return 0;
}

/* ---- connection I/O ---- */

static void update_poll(struct hconn *c)
{
    if (c->fd < 0)
        return;
    int want = UV_READABLE;
    if (c->state == H_CONNECTING || tg_buf_size(&c->out) > 0)
        want |= UV_WRITABLE;
    if (want != c->poll_events) {
        c->poll_events = want;
        uv_poll_start(c->poll, want, on_poll);
    }
}

static int conn_write(struct hconn *c)
{
    while (tg_buf_size(&c->out) > 0) {
        ssize_t n = write(c->fd, tg_buf_data(&c->out), tg_buf_size(&c->out));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        tg_buf_consume(&c->out, (size_t)n);
    }
    tg_buf_shrink(&c->out);
    return 0;
}

static void conn_flush(struct hconn *c)
{
    if (c->session == NULL || c->state == H_CONNECTING)
        return; /* frames wait in the session until the socket is connected */
    for (int round = 0; round < 64; round++) {
        int produced = 0;
        while (tg_buf_size(&c->out) < c->up->limits.max_output_bytes) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->session, &data);
            if (n < 0) {
                conn_fail(c, "HTTP/2 error");
                return;
            }
            if (n == 0)
                break;
            produced = 1;
            /* large frames straight to the socket (no copy); small ones batched into one write */
            if (n >= DIRECT_WRITE_MIN && tg_buf_size(&c->out) == 0) {
                ssize_t w = write(c->fd, data, (size_t)n);
                if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    conn_fail(c, strerror(errno));
                    return;
                }
                if (w > 0) {
                    data += w;
                    n -= w;
                }
            }
            if (n > 0 && tg_buf_append(&c->out, data, (size_t)n) != 0) {
                conn_fail(c, "output buffer overflow");
                return;
            }
        }
        if (conn_write(c) != 0) {
            conn_fail(c, "connection lost");
            return;
        }
        if (tg_buf_size(&c->out) > 0 || !produced)
            break;
    }
    if (c->goaway && c->n_calls == 0) {
        conn_fail(c, "replaced after GOAWAY");
        c->backoff_ms = 0;
        return;
    }
    update_poll(c);
}

static void on_readable(struct hconn *c)
{
    uint8_t buf[65536];
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_fail(c, strerror(errno));
            return;
        }
        if (n == 0) {
            conn_fail(c, "connection closed by the backend");
            return;
        }
        if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) {
            conn_fail(c, "HTTP/2 protocol error from the backend");
            return;
        }
    }
    mark_dirty(c);
}

static void on_keepalive(uv_timer_t *t);

static void connected(struct hconn *c)
{
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->state = H_READY;
    c->last_recv_ms = uv_now(&c->up->w->loop);
    c->pings_without_data = 0;
    if (c->pool->cfg->keepalive_ms > 0)
        uv_timer_start(&c->timer, on_keepalive, c->pool->cfg->keepalive_ms,
                       c->pool->cfg->keepalive_ms);
    else
        uv_timer_stop(&c->timer);
    mark_dirty(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct hconn *c = h->data;
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    if (c->state == H_CONNECTING && (events & (UV_WRITABLE | UV_READABLE))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            conn_fail(c, strerror(err));
            return;
        }
        connected(c);
    }
    if (events & UV_READABLE)
        on_readable(c);
    if (c->state == H_READY && (events & UV_WRITABLE))
        mark_dirty(c);
}

static void on_keepalive(uv_timer_t *t)
{
    struct hconn *c = t->data;
    uint64_t now = uv_now(&c->up->w->loop);
    const struct tg_pool_cfg *pc = c->pool->cfg;
    if (c->state != H_READY || c->n_calls == 0)
        return; /* no pings on idle connections: TF Serving's policy allows them rarely */
    if (now - c->last_recv_ms > (uint64_t)pc->keepalive_ms + pc->keepalive_timeout_ms &&
        c->pings_without_data > 0) {
        conn_fail(c, "keepalive timeout");
        return;
    }
    if (now - c->last_recv_ms >= pc->keepalive_ms &&
        c->pings_without_data < MAX_PINGS_WITHOUT_DATA) {
        nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL);
        c->pings_without_data++;
        mark_dirty(c);
    }
}

static void on_retry(uv_timer_t *t)
{
    struct hconn *c = t->data;
    if (c->state == H_BACKOFF && !c->up->stopping)
        conn_connect(c);
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct hconn *c = t->data;
    if (c->state == H_CONNECTING)
        conn_fail(c, "connect timeout");
}

static int new_session(struct hconn *c)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int rv = nghttp2_session_client_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, TG_ARRAY_SIZE(iv));
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    return 0;
}

static void conn_connect(struct hconn *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int fd = -1;

    c->goaway = 0;
    /* Numeric addresses resolve without I/O; names are resolved here too (getaddrinfo may
     * block briefly on a reconnect; a resolver on libuv's pool is a later refinement). */
    int rv = getaddrinfo(c->host, c->port, &hints, &ai);
    if (rv != 0) {
        conn_fail(c, gai_strerror(rv));
        return;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        c->fd = -1;
        conn_fail(c, strerror(e));
        return;
    }
    freeaddrinfo(ai);
    if (new_session(c) != 0) {
        close(fd);
        conn_fail(c, "cannot create an HTTP/2 session");
        return;
    }
    c->fd = fd;
    c->state = H_CONNECTING;
    c->poll = tg_xcalloc(1, sizeof(*c->poll));
    uv_poll_init(&c->up->w->loop, c->poll, fd);
    c->poll->data = c;
    c->poll_events = 0;
    update_poll(c);
    uv_timer_start(&c->timer, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Fails every call on the connection as a transport failure and schedules a reconnect. */
static void conn_fail(struct hconn *c, const char *why)
{
    struct tg_arena *a;
    if (c->session != NULL) {
        nghttp2_session_del(c->session); /* no callbacks: it forgets every stream */
        c->session = NULL;
    }
    if (c->fd >= 0) {
        uv_poll_stop(c->poll);
        uv_close((uv_handle_t *)c->poll, free_handle);
        c->poll = NULL;
        close(c->fd);
        c->fd = -1;
    }
    tg_buf_dispose(&c->out);
    tg_buf_init(&c->out, (size_t)c->up->limits.max_output_bytes + 256 * 1024);
    if (c->state == H_READY || c->n_calls > 0)
        tg_log(TG_LOG_WARN, "upstream", "pool=%s replica=%s: %s (%zu call(s) failed)",
               c->pool->cfg->name, c->replica->target, why, c->n_calls);
    while (c->calls != NULL) {
        struct ucall *u = c->calls;
        a = u->call->arena;
        char *m = tg_arena_alloc(a, strlen(why) + 1, 1);
        strcpy(m, why);
        finish(u, 1, m);
    }
    c->state = H_BACKOFF;
    if (c->up->stopping) {
        c->state = H_CLOSED;
        return;
    }
    const struct tg_pool_cfg *pc = c->pool->cfg;
    c->backoff_ms =
        c->backoff_ms == 0
            ? pc->backoff_initial_ms
            : (c->backoff_ms * 2 > pc->backoff_max_ms ? pc->backoff_max_ms : c->backoff_ms * 2);
    /* +-20% jitter so replicas of a restarted backend do not reconnect in lockstep */
    uint32_t jitter = c->backoff_ms / 5;
    uint32_t delay =
        c->backoff_ms - jitter + (jitter ? (uint32_t)(rand() % (int)(2 * jitter + 1)) : 0);
    uv_timer_start(&c->timer, on_retry, delay, 0);
}

/* ---- the transport interface ---- */

static struct hconn *pick(struct h2up *up, const struct tg_upstream_req *req)
{
    struct tg_pool *pool = req->pool;
    int mi = tg_pool_model_index(pool, req->model);
    size_t pi = (size_t)(pool - up->set->pools);
    struct poolconns *pc = &up->pools[pi];
    struct hconn *fallback = NULL;
    uint64_t now = uv_now(&up->w->loop);
    unsigned r0 = pc->next++;
    /* ejected or not-serving replicas only when there is no other (better than refusing) */
    for (int pass = 0; pass < 2 && fallback == NULL; pass++) {
        for (size_t i = 0; i < pc->n_replicas; i++) {
            size_t ri = (r0 + i) % pc->n_replicas;
            struct replconns *rc = &pc->reps[ri];
            struct tg_replica *rep = &pool->replicas[ri];
            if (req->replica != NULL && rep != req->replica)
                continue;
            if (pass == 0 && (tg_replica_ejected(rep, now) ||
                              !tg_replica_serves(rep, mi, req->has_version, req->version)))
                continue;
            unsigned k0 = rc->next++;
            for (size_t k = 0; k < rc->n; k++) {
                struct hconn *c = rc->conns[(k0 + k) % rc->n];
                if (c->goaway || c->session == NULL)
                    continue;
                if (c->state == H_READY)
                    return c;
                if (c->state == H_CONNECTING && fallback == NULL)
                    fallback = c;
            }
        }
    }
    return fallback;
}

/* The connections for |pool|'s generation: the current one's, or a retired one's while its
 * streams finish (a retry after a reload stays on the pools it started with). */
static struct h2up *up_for(struct tg_worker *w, const struct tg_pool *pool)
{
    for (struct tg_wgen *wg = w->cur; wg != NULL; wg = wg == w->cur ? w->retired : wg->next) {
        if (wg->h2up != NULL && wg->h2up->set == pool->set)
            return wg->h2up;
    }
    return NULL;
}

static void start(struct tg_upstream_call *call, const struct tg_upstream_req *req)
{
    struct h2up *up = up_for(call->w, req->pool);
    struct hconn *c = up != NULL ? pick(up, req) : NULL;
    struct tg_arena *a = call->arena;

    if (c == NULL) {
        tg_upstream__fail_later(call, GRPC_STATUS_UNAVAILABLE, "no replica is reachable");
        return;
    }
    struct ucall *u = TG_ARENA_NEW(a, struct ucall);
    call->impl = u;
    u->call = call;
    u->conn = c;
    u->msg = req->message;
    u->msg_len = req->message_len;
    u->prefix[1] = (uint8_t)(req->message_len >> 24);
    u->prefix[2] = (uint8_t)(req->message_len >> 16);
    u->prefix[3] = (uint8_t)(req->message_len >> 8);
    u->prefix[4] = (uint8_t)req->message_len;
    tg_buf_init(&u->body, (size_t)up->limits.max_message_bytes + 5);

    char timeout[24];
    int tlen = snprintf(timeout, sizeof(timeout), "%llum", (unsigned long long)req->timeout_ms);
    const char *path = tg_grpc_method_paths[req->method];
    nghttp2_nv *nva = tg_arena_alloc(a, (req->n_md + 8) * sizeof(*nva), _Alignof(nghttp2_nv));
    size_t n = 0;
#define NV(nm, val, vl)                                                                            \
    nva[n++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(val), strlen(nm), (vl),                   \
                            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}
    NV(":method", "POST", 4);
    NV(":scheme", "http", 4);
    NV(":path", path, strlen(path));
    NV(":authority", c->authority, strlen(c->authority));
    NV("content-type", "application/grpc", 16);
    NV("te", "trailers", 8);
    NV("grpc-timeout", tg_arena_strndup(a, timeout, (size_t)tlen), (size_t)tlen);
    NV("user-agent", "tfgate/0.1", 10);
#undef NV
    for (size_t i = 0; i < req->n_md; i++)
        nva[n++] = (nghttp2_nv){(uint8_t *)req->md[i].name, (uint8_t *)req->md[i].value,
                                req->md[i].name_len, req->md[i].value_len,
                                NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    nghttp2_data_provider prd = {.source.ptr = u, .read_callback = read_request};
    int32_t id = nghttp2_submit_request(c->session, NULL, nva, n, &prd, u);
    if (id < 0) {
        tg_upstream__fail_later(call, GRPC_STATUS_UNAVAILABLE, "%s", nghttp2_strerror(id));
        return;
    }
    u->stream_id = id;
    u->next = c->calls;
    if (c->calls)
        c->calls->prev = u;
    c->calls = u;
    c->n_calls++;
    call->result.replica = c->replica;
    atomic_fetch_add_explicit(&c->replica->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->replica->inflight, 1, memory_order_relaxed);
    u->deadline_ms = uv_now(&up->w->loop) + req->timeout_ms;
    u->dnext = up->timed;
    if (up->timed)
        up->timed->dprev = u;
    up->timed = u;
    arm_deadline(up, u->deadline_ms);
    mark_dirty(c);
}

static void cancel(struct tg_upstream_call *call)
{
    struct ucall *u = call->impl;
    if (u != NULL && u->conn != NULL)
        reset_stream(u, GRPC_STATUS_CANCELLED, "Cancelled");
}

const struct tg_upstream_ops tg_upstream_h2_ops = {start, cancel};

/* ---- per-worker setup and teardown ---- */

static int split_target(const char *target, char *host, size_t hlen, char *port, size_t plen)
{
    const char *t = target;
    if (strncmp(t, "dns:///", 7) == 0)
        t += 7;
    else if (strncmp(t, "ipv4:", 5) == 0 || strncmp(t, "ipv6:", 5) == 0)
        t += 5;
    char *h = NULL;
    int p;
    if (tg_config_parse_address(t, &h, &p) != 0 || strlen(h) >= hlen)
        return -1;
    snprintf(host, hlen, "%s", h);
    snprintf(port, plen, "%d", p);
    free(h);
    return 0;
}

struct h2up *tg_upstream_h2_new(struct tg_worker *w, struct tg_gen *gen)
{
    struct tg_pools *pools = gen->pools;
    struct h2up *up = tg_xcalloc(1, sizeof(*up));
    up->w = w;
    up->set = pools;
    up->limits = gen->config->limits;
    up->refs = 1;
    up->n_pools = pools->n_pools;
    up->pools = tg_xcalloc(pools->n_pools + 1, sizeof(*up->pools));
    uv_timer_init(&w->loop, &up->deadline_timer);
    up->deadline_timer.data = up;
    for (size_t p = 0; p < pools->n_pools; p++) {
        struct tg_pool *pool = &pools->pools[p];
        if (pool->cfg->transport != TG_TRANSPORT_NATIVE)
            continue;
        struct poolconns *pc = &up->pools[p];
        pc->n_replicas = pool->n_replicas;
        pc->reps = tg_xcalloc(pool->n_replicas, sizeof(*pc->reps));
        /* the configured connections per replica are spread over the workers, one at least */
        size_t per = (pool->cfg->channels + w->gw->n_workers - 1) / w->gw->n_workers;
        if (per == 0)
            per = 1;
        for (size_t r = 0; r < pool->n_replicas; r++) {
            struct replconns *rc = &pc->reps[r];
            rc->conns = tg_xcalloc(per, sizeof(*rc->conns));
            for (size_t k = 0; k < per; k++) {
                struct hconn *c = tg_xcalloc(1, sizeof(*c));
                c->up = up;
                c->pool = pool;
                c->replica = &pool->replicas[r];
                c->fd = -1;
                tg_buf_init(&c->out, (size_t)up->limits.max_output_bytes + 256 * 1024);
                uv_timer_init(&w->loop, &c->timer);
                c->timer.data = c;
                if (split_target(c->replica->target, c->host, sizeof(c->host), c->port,
                                 sizeof(c->port)) != 0) {
                    snprintf(c->host, sizeof(c->host), "%s", "invalid-target");
                    snprintf(c->port, sizeof(c->port), "0");
                }
                snprintf(c->authority, sizeof(c->authority),
                         strchr(c->host, ':') ? "[%s]:%s" : "%s:%s", c->host, c->port);
                rc->conns[rc->n++] = c;
                up->open_conns++;
                conn_connect(c);
            }
        }
    }
    return up;
}

static void stop_up(struct h2up *up);

void tg_upstream_h2_share(struct h2up *up, struct tg_gen *gen)
{
    up->refs++;
    up->limits = gen->config->limits;
}

void tg_upstream_h2_release(struct h2up *up)
{
    if (up != NULL && --up->refs == 0)
        stop_up(up);
}

void tg_upstream_h2_flush(struct h2up *up)
{
    if (up == NULL)
        return;
    while (up->dirty != NULL) {
        struct hconn *c = up->dirty;
        up->dirty = c->dirty_next;
        c->dirty = 0;
        conn_flush(c);
    }
}

static void up_free(struct h2up *up)
{
    for (size_t p = 0; p < up->n_pools; p++) {
        struct poolconns *pc = &up->pools[p];
        for (size_t r = 0; r < pc->n_replicas; r++) {
            for (size_t k = 0; k < pc->reps[r].n; k++) {
                tg_buf_dispose(&pc->reps[r].conns[k]->out);
                free(pc->reps[r].conns[k]);
            }
            free(pc->reps[r].conns);
        }
        free(pc->reps);
    }
    free(up->pools);
    free(up);
}

static void on_closed(uv_handle_t *h)
{
    struct h2up *up = h->data;
    if (--up->closing == 0)
        up_free(up);
}

static void stop_up(struct h2up *up)
{
    if (up == NULL || up->stopping)
        return;
    up->stopping = 1;
    for (size_t p = 0; p < up->n_pools; p++) {
        struct poolconns *pc = &up->pools[p];
        for (size_t r = 0; r < pc->n_replicas; r++) {
            for (size_t k = 0; k < pc->reps[r].n; k++) {
                struct hconn *c = pc->reps[r].conns[k];
                if (c->n_calls == 0)
                    c->state = H_CLOSED; /* nothing is lost: no warning */
                conn_fail(c, "gateway shutting down");
                uv_timer_stop(&c->timer);
                c->timer.data = up;
                up->closing++;
                uv_close((uv_handle_t *)&c->timer, on_closed);
            }
        }
    }
    uv_timer_stop(&up->deadline_timer);
    up->closing++;
    uv_close((uv_handle_t *)&up->deadline_timer, on_closed);
}
