/*
 * http2.c - HTTP/2 for client connections, on nghttp2 1.52 (mem_recv / mem_send; no *2 APIs).
 * Requests become streams (stream.c); responses are submitted when a handler answers, and
 * their bytes are pulled into the connection's output buffer by produce(), which stops at the
 * buffer's cap so a slow reader back-pressures instead of growing memory.
 */
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/error.h"
#include "tfgate/log.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

struct tg_h2 {
    nghttp2_session *session;
    struct tg_conn *conn;
    struct tg_stream *streams; /* open streams: nghttp2_session_del reports none of them */
    size_t n_streams;
    int goaway_sent;
};

static void link_stream(struct tg_h2 *h2, struct tg_stream *st)
{
    st->next = h2->streams;
    h2->streams = st;
    h2->n_streams++;
}

static void unlink_stream(struct tg_h2 *h2, struct tg_stream *st)
{
    for (struct tg_stream **pp = &h2->streams; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == st) {
            *pp = st->next;
            h2->n_streams--;
            return;
        }
    }
}

static struct tg_stream *stream_of(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    struct tg_h2 *h2 = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (h2->conn->w->draining) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct tg_stream *st = tg_stream_new(h2->conn, frame->hd.stream_id, 1);
    nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, st);
    link_stream(h2, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    struct tg_stream *st = stream_of(s, frame->hd.stream_id);
    if (st == NULL || st->headers_done)
        return 0; /* trailers from the client carry nothing we use */
    tg_stream_add_header(st, (const char *)name, nlen, (const char *)value, vlen);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    (void)user;
    struct tg_stream *st;

    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        st = stream_of(s, frame->hd.stream_id);
        if (st == NULL)
            return 0;
        if (!st->headers_done)
            tg_stream_headers_done(st);
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->request_done)
            tg_stream_request_done(st);
        break;
    case NGHTTP2_DATA:
        st = stream_of(s, frame->hd.stream_id);
        if (st != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->request_done)
            tg_stream_request_done(st);
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    struct tg_stream *st = stream_of(s, id);
    if (st != NULL)
        tg_stream_body(st, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
    (void)error_code;
    struct tg_h2 *h2 = user;
    struct tg_stream *st = stream_of(s, id);
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    unlink_stream(h2, st);
    tg_stream_close(st);
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user)
{
    (void)user;
    struct tg_stream *st = source->ptr;
    if (st->streaming) { /* what was pushed so far; deferred until more comes or it ends */
        size_t n = tg_buf_size(&st->stream_out) < len ? tg_buf_size(&st->stream_out) : len;
        if (n > 0) {
            memcpy(buf, tg_buf_data(&st->stream_out), n);
            tg_buf_consume(&st->stream_out, n);
            return (ssize_t)n;
        }
        if (!st->stream_ended)
            return NGHTTP2_ERR_DEFERRED;
        st->resp_body_off = st->resp_body_len = 0; /* all sent: the trailers below */
    }
    size_t left = st->resp_body_len - st->resp_body_off;
    size_t n = left < len ? left : len;

    if (n > 0)
        memcpy(buf, st->resp_body + st->resp_body_off, n);
    st->resp_body_off += n;
    if (st->resp_body_off == st->resp_body_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->has_trailers) {
            nghttp2_nv *nva =
                tg_arena_alloc(&st->arena, st->n_trailers * sizeof(*nva), _Alignof(nghttp2_nv));
            for (size_t i = 0; i < st->n_trailers; i++) {
                nva[i] =
                    (nghttp2_nv){(uint8_t *)st->trailers[i].name, (uint8_t *)st->trailers[i].value,
                                 st->trailers[i].name_len, st->trailers[i].value_len,
                                 NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
            }
            *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(s, id, nva, st->n_trailers) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

static void h2_submit(struct tg_conn *c, struct tg_stream *st)
{
    struct tg_h2 *h2 = c->proto;
    size_t n = 1 + st->n_resp_headers + (st->trailers_only ? st->n_trailers : 0), k = 0;
    nghttp2_nv *nva = tg_arena_alloc(&st->arena, n * sizeof(*nva), _Alignof(nghttp2_nv));
    char *status = tg_arena_alloc(&st->arena, 4, 1);

    status[0] = (char)('0' + st->status / 100 % 10);
    status[1] = (char)('0' + st->status / 10 % 10);
    status[2] = (char)('0' + st->status % 10);
    nva[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3,
                            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
#define ADD(h)                                                                                     \
    nva[k++] = (nghttp2_nv)                                                                        \
    {                                                                                              \
        (uint8_t *)(h).name, (uint8_t *)(h).value, (h).name_len, (h).value_len,                    \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }
    for (size_t i = 0; i < st->n_resp_headers; i++)
        ADD(st->resp_headers[i]);
    if (st->trailers_only) { /* gRPC "Trailers-Only": one HEADERS frame ends the stream */
        for (size_t i = 0; i < st->n_trailers; i++)
            ADD(st->trailers[i]);
    }
#undef ADD
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    int has_data = !st->trailers_only && (st->resp_body_len > 0 || st->has_trailers);
    int rv = nghttp2_submit_response(h2->session, st->id, nva, k, has_data ? &prd : NULL);
    if (rv != 0)
        tg_log(TG_LOG_WARN, "h2", "conn=%llu stream=%d submit_response: %s",
               (unsigned long long)c->id, st->id, nghttp2_strerror(rv));
}

static void h2_resume(struct tg_conn *c, struct tg_stream *st)
{
    struct tg_h2 *h2 = c->proto;
    nghttp2_session_resume_data(h2->session, st->id); /* not deferred yet: harmless */
    tg_worker_mark_dirty(c->w, c);
}

static int h2_on_data(struct tg_conn *c, const uint8_t *data, size_t len)
{
    struct tg_h2 *h2 = c->proto;
    ssize_t rv = nghttp2_session_mem_recv(h2->session, data, len);
    if (rv < 0) {
        tg_log(TG_LOG_DEBUG, "h2", "conn=%llu peer=%s: %s", (unsigned long long)c->id, c->peer,
               nghttp2_strerror((int)rv));
        return -1;
    }
    return 0;
}

static int h2_produce(struct tg_conn *c)
{
    struct tg_h2 *h2 = c->proto;
    /* stop at the soft limit; the buffer's hard cap leaves room for the frame that crosses it */
    while (tg_buf_size(&c->out) < c->max_output) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h2->session, &data);
        if (n < 0) {
            tg_log(TG_LOG_DEBUG, "h2", "conn=%llu mem_send: %s", (unsigned long long)c->id,
                   nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0)
            break;
        /* straight to the socket when nothing is queued: no copy of large DATA frames */
        if (tg_conn_output(c, data, (size_t)n) != 0)
            return -1;
    }
    return 0;
}

static int h2_finished(struct tg_conn *c)
{
    struct tg_h2 *h2 = c->proto;
    return !nghttp2_session_want_read(h2->session) && !nghttp2_session_want_write(h2->session);
}

static void h2_drain(struct tg_conn *c)
{
    struct tg_h2 *h2 = c->proto;
    if (h2->goaway_sent)
        return;
    h2->goaway_sent = 1;
    /* graceful: the last stream id we will process is the last one opened */
    nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
    tg_worker_mark_dirty(c->w, c);
}

static void h2_tick(struct tg_conn *c, uint64_t now)
{
    struct tg_h2 *h2 = c->proto;
    const struct tg_limits *lim = c->w->limits;
    if (h2->n_streams == 0 && now - c->last_active_ms > lim->idle_timeout_ms) {
        h2_drain(c); /* idle: GOAWAY, and the connection closes once it is flushed */
        c->closing = 1;
    }
}

static size_t h2_active(struct tg_conn *c)
{
    struct tg_h2 *h2 = c->proto;
    return h2->n_streams;
}

static void h2_dispose(struct tg_conn *c)
{
    struct tg_h2 *h2 = c->proto;
    if (h2 == NULL)
        return;
    nghttp2_session_del(h2->session); /* no callbacks: close our streams ourselves */
    while (h2->streams != NULL) {
        struct tg_stream *st = h2->streams;
        h2->streams = st->next;
        tg_stream_close(st);
    }
    free(h2);
    c->proto = NULL;
}

const struct tg_proto_ops tg_h2_ops = {
    .name = "h2",
    .on_data = h2_on_data,
    .produce = h2_produce,
    .finished = h2_finished,
    .submit = h2_submit,
    .resume = h2_resume,
    .drain = h2_drain,
    .tick = h2_tick,
    .dispose = h2_dispose,
    .active_streams = h2_active,
};

void *tg_h2_new(struct tg_conn *c, struct tg_stream *upgrade, const uint8_t *settings,
                size_t settings_len)
{
    const struct tg_limits *lim = c->w->limits;
    struct tg_h2 *h2 = tg_xcalloc(1, sizeof(*h2));
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;

    h2->conn = c;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_new(&opt);
    /* rapid-reset protection (CVE-2023-44487; backported to Debian's 1.52) */
    nghttp2_option_set_stream_reset_rate_limit(opt, lim->reset_burst, lim->reset_rate);
    nghttp2_option_set_max_settings(opt, 32);
    int rv = nghttp2_session_server_new2(&h2->session, cbs, h2, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0) {
        free(h2);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, lim->max_header_bytes},
    };
    nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, iv, TG_ARRAY_SIZE(iv));
    /* the connection window starts at 65535 whatever the settings say */
    nghttp2_session_set_local_window_size(h2->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    if (upgrade != NULL) {
        /* the HTTP/1.1 request becomes stream 1, half-closed from the client's side */
        rv = nghttp2_session_upgrade2(h2->session, settings, settings_len,
                                      strcmp(upgrade->method, "HEAD") == 0, upgrade);
        if (rv != 0) {
            nghttp2_session_del(h2->session);
            free(h2);
            return NULL;
        }
        upgrade->id = 1;
        upgrade->http2 = 1;
        link_stream(h2, upgrade);
    }
    return h2;
}
