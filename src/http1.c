/*
 * http1.c - HTTP/1.1 for client connections, on Debian's libhttp-parser 2.9 (a maintained
 * parser rather than a hand-written one). One request is handled at a time: the parser pauses
 * after each message and resumes once its response is written, which makes pipelining safe
 * (responses leave in request order). An "Upgrade: h2c" request is answered over HTTP/2 as
 * stream 1 (RFC 7540 §3.2).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "tfgate/base64.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/error.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

struct tg_h1 {
    http_parser parser;
    struct tg_conn *conn;
    struct tg_stream *st;       /* the request being received or answered */
    struct tg_buf field, value; /* a header field being assembled from parser pieces */
    struct tg_buf url;
    int in_value;
    int in_message;        /* between message begin and message complete */
    int keep_alive;        /* of the current request */
    int close_after;       /* close once the current response is out */
    int header_written;    /* the current response's head is in the output */
    struct tg_buf pending; /* input received while the parser was paused */
    uint32_t next_id;
    uint64_t message_start_ms;
    int upgrade_h2c;      /* the current request asked for h2c with valid settings */
    uint8_t *h2_settings; /* its HTTP2-Settings, decoded */
    size_t h2_settings_len;
    int draining;
};

static struct tg_h1 *h1_of(http_parser *p)
{
    return p->data;
}

static int flush_header(struct tg_h1 *h1)
{
    if (h1->st == NULL || tg_buf_size(&h1->field) == 0)
        return 0;
    int rv =
        tg_stream_add_header(h1->st, (const char *)tg_buf_data(&h1->field), tg_buf_size(&h1->field),
                             (const char *)tg_buf_data(&h1->value), tg_buf_size(&h1->value));
    h1->field.off = h1->field.len = 0;
    h1->value.off = h1->value.len = 0;
    h1->in_value = 0;
    (void)rv; /* an over-limit header list is answered with 431 at headers complete */
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct tg_h1 *h1 = h1_of(p);
    h1->in_message = 1;
    h1->message_start_ms = tg_worker_now(h1->conn->w);
    h1->st = tg_stream_new(h1->conn, (int32_t)++h1->next_id, 0);
    h1->header_written = 0;
    h1->upgrade_h2c = 0;
    h1->url.off = h1->url.len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct tg_h1 *h1 = h1_of(p);
    if (tg_buf_append(&h1->url, at, len) != 0)
        h1->st->error = TG_EHEADERS; /* URI over the header limit */
    return 0;
}

/* Header names and values may arrive in several pieces; the buffers have the header-list
 * limit as their cap, so an endless header cannot grow memory. */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct tg_h1 *h1 = h1_of(p);
    if (h1->in_value)
        flush_header(h1);
    if (tg_buf_append(&h1->field, at, len) != 0)
        h1->st->error = TG_EHEADERS;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct tg_h1 *h1 = h1_of(p);
    h1->in_value = 1;
    if (tg_buf_append(&h1->value, at, len) != 0)
        h1->st->error = TG_EHEADERS;
    return 0;
}

static int header_has_token(const struct tg_header *h, const char *token)
{
    size_t tl = strlen(token);
    const char *v = h->value, *end = h->value + h->value_len;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == ','))
            v++;
        const char *s = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > s && e[-1] == ' ')
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
            return 1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct tg_h1 *h1 = h1_of(p);
    struct tg_stream *st = h1->st;
    const struct tg_header *h;

    flush_header(h1);
    st->method = http_method_str((enum http_method)p->method);
    st->path =
        tg_arena_strndup(&st->arena, (const char *)tg_buf_data(&h1->url), tg_buf_size(&h1->url));
    st->path_len = tg_buf_size(&h1->url);
    h1->keep_alive = http_should_keep_alive(p) && !h1->draining;

    /* h2c upgrade (cleartext only): Upgrade: h2c, Connection: Upgrade, HTTP2-Settings */
    const struct tg_header *up = tg_stream_header(st, "upgrade");
    const struct tg_header *settings = tg_stream_header(st, "http2-settings");
    const struct tg_header *conn_h = tg_stream_header(st, "connection");
    if (h1->conn->ssl == NULL && up && header_has_token(up, "h2c") && settings && conn_h &&
        header_has_token(conn_h, "upgrade") && header_has_token(conn_h, "http2-settings") &&
        settings->value_len < 4096 && st->error == 0 && !h1->draining) {
        h1->h2_settings = tg_arena_alloc(&st->arena, settings->value_len / 4 * 3 + 3, 1);
        if (tg_base64_decode(settings->value, settings->value_len, h1->h2_settings,
                             &h1->h2_settings_len, 1) == 0)
            h1->upgrade_h2c = 1;
    }
    /* an upgraded request is answered over HTTP/2, so route it as such */
    st->http2 = h1->upgrade_h2c;
    tg_stream_headers_done(st);
    if (h1->upgrade_h2c && st->responded) {
        h1->upgrade_h2c = 0; /* refused before the switch: answer on HTTP/1.1 */
        st->http2 = 0;
    }
    if (!st->responded && (h = tg_stream_header(st, "expect")) != NULL) {
        if (h->value_len == 12 && strncasecmp(h->value, "100-continue", 12) == 0) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            tg_buf_append(&h1->conn->out, cont, sizeof(cont) - 1);
            tg_worker_mark_dirty(h1->conn->w, h1->conn);
        } else {
            tg_stream_respond_http(st, 417, NULL, NULL, 0);
        }
    }
    if (st->responded)
        h1->keep_alive = 0; /* answered early (413, 431, 417): the body will not be read */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct tg_h1 *h1 = h1_of(p);
    if (h1->st->responded)
        return -1; /* stop parsing: we answered early and will close */
    tg_stream_body(h1->st, (const uint8_t *)at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct tg_h1 *h1 = h1_of(p);
    h1->in_message = 0;
    http_parser_pause(p, 1); /* one request at a time; resumed when its answer is out */
    if (h1->upgrade_h2c)
        return 0; /* the request runs after the switch (h1_on_data) */
    if (!h1->st->request_done)
        tg_stream_request_done(h1->st);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void write_raw_error(struct tg_conn *c, int status)
{
    char head[160];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status,
                     tg_http_reason(status));
    tg_buf_append(&c->out, head, (size_t)n);
    c->closing = 1;
    tg_worker_mark_dirty(c->w, c);
}

/* Switches the connection to HTTP/2 for an upgraded request; |rest| is the input after it
 * (the client's connection preface and frames). */
static int do_upgrade(struct tg_conn *c, struct tg_h1 *h1, const uint8_t *rest, size_t len)
{
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: h2c\r\n\r\n";
    struct tg_stream *st = h1->st;
    void *h2 = tg_h2_new(c, st, h1->h2_settings, h1->h2_settings_len);

    if (h2 == NULL)
        return -1;
    tg_buf_append(&c->out, resp, sizeof(resp) - 1);
    h1->st = NULL; /* the stream now belongs to the HTTP/2 session */
    tg_buf_dispose(&h1->field);
    tg_buf_dispose(&h1->value);
    tg_buf_dispose(&h1->url);
    tg_buf_dispose(&h1->pending);
    free(h1);
    c->proto = h2;
    c->ops = &tg_h2_ops;
    tg_metrics_conn_close(c);
    tg_metrics_conn_open(c, 1);
    tg_log(TG_LOG_DEBUG, "h1", "conn=%llu upgraded to h2c", (unsigned long long)c->id);
    tg_stream_request_done(st);
    tg_worker_mark_dirty(c->w, c);
    return len > 0 ? c->ops->on_data(c, rest, len) : 0;
}

static int h1_on_data(struct tg_conn *c, const uint8_t *data, size_t len)
{
    struct tg_h1 *h1 = c->proto;

    if (HTTP_PARSER_ERRNO(&h1->parser) == HPE_PAUSED) {
        /* a response is pending: keep the bytes for later. Past the soft limit the connection
         * stops reading (back-pressure on a pipelining client); the hard cap leaves room for
         * the read already in hand. */
        if (tg_buf_append(&h1->pending, data, len) != 0)
            return -1;
        if (tg_buf_size(&h1->pending) > c->max_output)
            c->read_paused = 1;
        return 0;
    }
    size_t n = http_parser_execute(&h1->parser, &settings, (const char *)data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&h1->parser);
    if (h1->upgrade_h2c && !h1->in_message && err == HPE_PAUSED) {
        http_parser_pause(&h1->parser, 0);
        return do_upgrade(c, h1, data + n, len - n);
    }
    if (err == HPE_PAUSED) {
        if (n < len && tg_buf_append(&h1->pending, data + n, len - n) != 0)
            return -1;
        if (tg_buf_size(&h1->pending) > c->max_output)
            c->read_paused = 1;
        return 0;
    }
    if (err != HPE_OK) {
        if (h1->st != NULL && h1->st->responded) {
            h1->keep_alive = 0; /* we stopped the parser after answering early: close after */
            c->read_paused = 1;
            return 0;
        }
        tg_log(TG_LOG_DEBUG, "h1", "conn=%llu peer=%s parse error: %s", (unsigned long long)c->id,
               c->peer, http_errno_description(err));
        if (h1->st != NULL) {
            tg_stream_close(h1->st);
            h1->st = NULL;
        }
        write_raw_error(c, err == HPE_HEADER_OVERFLOW ? 431 : 400);
        return 0;
    }
    if (n != len && h1->parser.upgrade) {
        /* an Upgrade the gateway does not speak (websocket): nothing more is HTTP/1.1 */
        c->closing = 1;
    }
    return 0;
}

static void append_header(struct tg_buf *out, const char *name, size_t nlen, const char *value,
                          size_t vlen)
{
    tg_buf_append(out, name, nlen);
    tg_buf_append(out, ": ", 2);
    tg_buf_append(out, value, vlen);
    tg_buf_append(out, "\r\n", 2);
}

static int h1_produce(struct tg_conn *c)
{
    struct tg_h1 *h1 = c->proto;
    struct tg_stream *st = h1->st;

    if (st == NULL || !st->responded)
        return 0;
    if (!h1->header_written) {
        char line[128];
        int keep = h1->keep_alive && !h1->draining && !h1->close_after;
        int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", st->status,
                         tg_http_reason(st->status));
        tg_buf_append(&c->out, line, (size_t)n);
        for (size_t i = 0; i < st->n_resp_headers; i++)
            append_header(&c->out, st->resp_headers[i].name, st->resp_headers[i].name_len,
                          st->resp_headers[i].value, st->resp_headers[i].value_len);
        n = snprintf(line, sizeof(line), "Content-Length: %zu\r\n%s\r\n", st->resp_body_len,
                     keep ? "" : "Connection: close\r\n");
        tg_buf_append(&c->out, line, (size_t)n);
        h1->header_written = 1;
        h1->close_after = !keep;
        if (strcmp(st->method ? st->method : "", "HEAD") == 0)
            st->resp_body_off = st->resp_body_len;
    }
    /* the body goes out in pieces no larger than the output limit allows */
    while (st->resp_body_off < st->resp_body_len && tg_buf_size(&c->out) < c->max_output) {
        size_t room = c->max_output - tg_buf_size(&c->out);
        size_t n = st->resp_body_len - st->resp_body_off;
        if (n > room)
            n = room;
        tg_buf_append(&c->out, st->resp_body + st->resp_body_off, n);
        st->resp_body_off += n;
    }
    if (st->resp_body_off < st->resp_body_len)
        return 0;

    /* the response is fully produced: finish the exchange, then take the next request */
    h1->st = NULL;
    tg_stream_close(st);
    if (h1->close_after || h1->in_message) {
        c->closing = 1;
        return 0;
    }
    http_parser_pause(&h1->parser, 0);
    if (tg_buf_size(&h1->pending) > 0) {
        struct tg_buf pending = h1->pending;
        tg_buf_init(&h1->pending, pending.cap);
        c->read_paused = 0;
        int rv = h1_on_data(c, tg_buf_data(&pending), tg_buf_size(&pending));
        tg_buf_dispose(&pending);
        return rv;
    }
    if (h1->draining)
        c->closing = 1;
    return 0;
}

static int h1_finished(struct tg_conn *c)
{
    struct tg_h1 *h1 = c->proto;
    return c->peer_closed && h1->st == NULL;
}

static void h1_submit(struct tg_conn *c, struct tg_stream *st)
{
    (void)st;
    tg_worker_mark_dirty(c->w, c);
}

static void h1_drain(struct tg_conn *c)
{
    struct tg_h1 *h1 = c->proto;
    h1->draining = 1;
    if (h1->st == NULL && !h1->in_message)
        tg_conn_close(c, 0); /* idle: close now */
}

static void h1_tick(struct tg_conn *c, uint64_t now)
{
    struct tg_h1 *h1 = c->proto;
    const struct tg_limits *lim = c->w->limits;

    if (h1->in_message && h1->st != NULL && !h1->st->responded) {
        uint64_t age = now - h1->message_start_ms;
        if ((!h1->st->headers_done && age > lim->header_timeout_ms) ||
            age > lim->request_timeout_ms) {
            /* the client is too slow sending its request */
            h1->close_after = 1;
            h1->keep_alive = 0;
            tg_stream_respond_error(h1->st, TG_ETIMEOUT, NULL);
        }
        return;
    }
    if (h1->st == NULL && !h1->in_message && now - c->last_active_ms > lim->idle_timeout_ms)
        tg_conn_close(c, 0);
    /* a connection that never sends a byte is covered by the header timeout too */
    if (h1->st == NULL && !h1->in_message && h1->next_id == 0 &&
        now - c->accepted_ms > lim->header_timeout_ms)
        tg_conn_close(c, 0);
}

static size_t h1_active(struct tg_conn *c)
{
    struct tg_h1 *h1 = c->proto;
    return h1->st != NULL ? 1 : 0;
}

static void h1_dispose(struct tg_conn *c)
{
    struct tg_h1 *h1 = c->proto;
    if (h1 == NULL)
        return;
    if (h1->st != NULL)
        tg_stream_close(h1->st);
    tg_buf_dispose(&h1->field);
    tg_buf_dispose(&h1->value);
    tg_buf_dispose(&h1->url);
    tg_buf_dispose(&h1->pending);
    free(h1);
    c->proto = NULL;
}

/* Streamed responses are gRPC's, HTTP/2 only (tg_stream_stream_begin refuses HTTP/1.1). */
static void h1_resume(struct tg_conn *c, struct tg_stream *st)
{
    (void)c;
    (void)st;
}

const struct tg_proto_ops tg_h1_ops = {
    .name = "http/1.1",
    .on_data = h1_on_data,
    .produce = h1_produce,
    .finished = h1_finished,
    .submit = h1_submit,
    .resume = h1_resume,
    .drain = h1_drain,
    .tick = h1_tick,
    .dispose = h1_dispose,
    .active_streams = h1_active,
};

void *tg_h1_new(struct tg_conn *c)
{
    const struct tg_limits *lim = c->w->limits;
    struct tg_h1 *h1 = tg_xcalloc(1, sizeof(*h1));
    h1->conn = c;
    http_parser_init(&h1->parser, HTTP_REQUEST);
    h1->parser.data = h1;
    tg_buf_init(&h1->field, lim->max_header_bytes);
    tg_buf_init(&h1->value, lim->max_header_bytes);
    tg_buf_init(&h1->url, lim->max_header_bytes);
    /* a pipelining client may queue about this much while a response is pending */
    tg_buf_init(&h1->pending, 2 * (size_t)c->max_output + 65536);
    return h1;
}
