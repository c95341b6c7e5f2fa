/*
 * conn.c - client connections (see conn.h): accept, TLS handshake and ALPN, HTTP/2 preface
 * sniffing on cleartext, reads, writes with back-pressure, deferred close.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/worker.h"

#define READ_CHUNK          65536
#define TG_DIRECT_WRITE_MIN 16384 /* bytes: smaller output is batched */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

static void on_poll(uv_poll_t *handle, int status, int events);

static void update_poll(struct tg_conn *c)
{
    int want = 0;
    if (c->closing && c->abort)
        return;
    if (!c->read_paused && !c->peer_closed && !c->closing)
        want |= UV_READABLE;
    if (tg_buf_size(&c->out) > 0)
        want |= UV_WRITABLE;
    /* TLS may need to read to make progress on a write (renegotiation is off, but a close
     * alert or session ticket can be pending): keep it simple and read while writing */
    if (want != c->poll_events) {
        c->poll_events = want;
        if (want)
            uv_poll_start(&c->poll, want, on_poll);
        else
            uv_poll_stop(&c->poll);
    }
}

int tg_conn_set_proto(struct tg_conn *c, const struct tg_proto_ops *ops, void *proto)
{
    c->ops = ops;
    c->proto = proto;
    c->state = TG_CONN_ACTIVE;
    if (proto == NULL)
        return -1;
    tg_metrics_conn_open(c, ops == &tg_h2_ops);
    if (tg_buf_size(&c->in) > 0) {
        struct tg_buf in = c->in;
        tg_buf_init(&c->in, 0);
        int rv = ops->on_data(c, tg_buf_data(&in), tg_buf_size(&in));
        tg_buf_dispose(&in);
        return rv;
    }
    tg_buf_dispose(&c->in);
    return 0;
}

/* Cleartext: the HTTP/2 client preface means h2c with prior knowledge; anything else is
 * HTTP/1.1 (which may still upgrade to h2c). Returns 0 or -1. */
static int sniff(struct tg_conn *c)
{
    size_t n = tg_buf_size(&c->in);
    size_t cmp = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
    if (memcmp(tg_buf_data(&c->in), h2_preface, cmp) == 0) {
        if (n < H2_PREFACE_LEN)
            return 0; /* could still be the preface: wait */
        return tg_conn_set_proto(c, &tg_h2_ops, tg_h2_new(c, NULL, NULL, 0));
    }
    return tg_conn_set_proto(c, &tg_h1_ops, tg_h1_new(c));
}

static int after_handshake(struct tg_conn *c)
{
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0)
        return tg_conn_set_proto(c, &tg_h2_ops, tg_h2_new(c, NULL, NULL, 0));
    /* http/1.1 or no ALPN */
    return tg_conn_set_proto(c, &tg_h1_ops, tg_h1_new(c));
}

/* Returns bytes read (> 0), 0 when nothing more now, -1 on EOF or error (peer_closed set). */
static ssize_t conn_read(struct tg_conn *c, uint8_t *buf, size_t len)
{
    if (c->ssl == NULL) {
        for (;;) {
            ssize_t n = read(c->fd, buf, len);
            if (n > 0)
                return n;
            if (n == 0) {
                c->peer_closed = 1;
                return -1;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            c->peer_closed = 1;
            return -1;
        }
    }
    int n = SSL_read(c->ssl, buf, (int)len);
    if (n > 0)
        return n;
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    c->peer_closed = 1;
    return -1;
}

/* Writes |len| bytes to the socket (or TLS); returns the bytes written (0 when it would
 * block), or -1 on an error. */
static ssize_t raw_write(struct tg_conn *c, const uint8_t *data, size_t len)
{
    for (;;) {
        if (c->ssl == NULL) {
            ssize_t n = write(c->fd, data, len);
            if (n >= 0)
                return n;
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        int r = SSL_write(c->ssl, data, (int)(len > INT32_MAX ? INT32_MAX : len));
        if (r > 0)
            return r;
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
            return 0;
        ERR_clear_error();
        return -1;
    }
}

int tg_conn_output(struct tg_conn *c, const uint8_t *data, size_t len)
{
    /* Large frames go straight to the socket (saving a copy); small ones are batched so a
     * response's HEADERS, DATA and trailers leave in one write (a syscall each cost more
     * than the copy: 9 -> 28 us per small call when every frame was written alone). */
    if (len >= TG_DIRECT_WRITE_MIN && tg_buf_size(&c->out) == 0 && !c->abort) {
        ssize_t n = raw_write(c, data, len);
        if (n < 0) {
            c->abort = 1;
            return -1;
        }
        if (n > 0)
            c->last_active_ms = tg_worker_now(c->w);
        data += n;
        len -= (size_t)n;
    }
    return len == 0 ? 0 : tg_buf_append(&c->out, data, len);
}

/* Writes as much of c->out as the socket takes. Returns 0, or -1 on a write error. */
static int conn_write(struct tg_conn *c)
{
    while (tg_buf_size(&c->out) > 0) {
        ssize_t n = raw_write(c, tg_buf_data(&c->out), tg_buf_size(&c->out));
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        tg_buf_consume(&c->out, (size_t)n);
        c->last_active_ms = tg_worker_now(c->w);
    }
    tg_buf_shrink(&c->out); /* an idle connection keeps no output memory */
    return 0;
}

static void do_handshake(struct tg_conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (after_handshake(c) != 0)
            tg_conn_close(c, 1);
        tg_worker_mark_dirty(c->w, c);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return;
    tg_log(TG_LOG_DEBUG, "tls", "conn=%llu peer=%s handshake failed", (unsigned long long)c->id,
           c->peer);
    ERR_clear_error();
    tg_conn_close(c, 1);
}

static void on_readable(struct tg_conn *c)
{
    uint8_t buf[READ_CHUNK];

    if (c->state == TG_CONN_HANDSHAKE) {
        do_handshake(c);
        if (c->state == TG_CONN_HANDSHAKE || c->closing)
            return;
    }
    /* a bounded number of reads per wakeup keeps one busy client from starving the others */
    for (int i = 0; i < 16 && !c->closing && !c->read_paused; i++) {
        ssize_t n = conn_read(c, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0) {
            /* the client closed (or reset): finish what can be finished, then close */
            if (c->ops == NULL || c->ops->finished(c) || c->ops->active_streams(c) == 0)
                tg_conn_close(c, 0);
            break;
        }
        c->last_active_ms = tg_worker_now(c->w);
        int rv;
        if (c->state == TG_CONN_SNIFF) {
            if (tg_buf_append(&c->in, buf, (size_t)n) != 0) {
                tg_conn_close(c, 1);
                break;
            }
            rv = sniff(c);
        } else {
            rv = c->ops->on_data(c, buf, (size_t)n);
        }
        if (rv != 0) {
            tg_conn_close(c, 0); /* protocol error: flush what we have (GOAWAY), then close */
            break;
        }
    }
    tg_worker_mark_dirty(c->w, c);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct tg_conn *c = handle->data;
    if (status < 0) {
        tg_conn_close(c, 1);
        return;
    }
    if (events & UV_READABLE)
        on_readable(c);
    if ((events & UV_WRITABLE) && !c->abort) {
        if (c->state == TG_CONN_HANDSHAKE)
            do_handshake(c);
        tg_worker_mark_dirty(c->w, c);
    }
}

void tg_conn_flush(struct tg_conn *c)
{
    if (!c->abort && c->state == TG_CONN_ACTIVE) {
        /* produce until the output is at its limit or nothing is left, writing as we go */
        for (int round = 0;; round++) {
            size_t before = tg_buf_size(&c->out);
            if (c->ops->produce(c) != 0) {
                c->closing = 1;
                break;
            }
            int produced = tg_buf_size(&c->out) > before;
            if (conn_write(c) != 0) {
                c->abort = 1;
                break;
            }
            if (tg_buf_size(&c->out) > 0 || !produced)
                break; /* the socket is full (we poll for writable), or nothing is left */
            if (round == 64) {
                /* fair share used: continue on the next loop iteration */
                tg_worker_mark_dirty(c->w, c);
                break;
            }
        }
        if (!c->closing && c->ops->finished(c))
            c->closing = 1;
    } else if (!c->abort && tg_buf_size(&c->out) > 0) {
        if (conn_write(c) != 0)
            c->abort = 1;
    }
    if (c->closing && (c->abort || tg_buf_size(&c->out) == 0)) {
        tg_conn_free(c);
        return;
    }
    update_poll(c);
}

void tg_conn_close(struct tg_conn *c, int abort)
{
    c->closing = 1;
    if (abort)
        c->abort = 1;
    tg_worker_mark_dirty(c->w, c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct tg_conn *c = h->data;
    free(c);
}

void tg_conn_free(struct tg_conn *c)
{
    struct tg_worker *w = c->w;

    if (c->ops != NULL && c->proto != NULL)
        c->ops->dispose(c); /* closes the streams still open */
    tg_metrics_conn_close(c);
    if (c->ssl != NULL) {
        if (!c->abort)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    uv_poll_stop(&c->poll);
    close(c->fd);
    tg_buf_dispose(&c->in);
    tg_buf_dispose(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    if (c->dirty) { /* marked again while it was being flushed */
        for (struct tg_conn **pp = &w->dirty; *pp != NULL; pp = &(*pp)->dirty_next) {
            if (*pp == c) {
                *pp = c->dirty_next;
                break;
            }
        }
        c->dirty = 0;
    }
    uv_close((uv_handle_t *)&c->poll, on_handle_closed);
}

void tg_conn_accept(struct tg_worker *w, struct tg_listener *l, int fd, const char *peer)
{
    struct tg_conn *c = tg_xcalloc(1, sizeof(*c));

    c->w = w;
    c->id = ++w->next_conn_id;
    c->fd = fd;
    c->admin = l->admin;
    c->max_output = w->limits->max_output_bytes;
    c->accepted_ms = c->last_active_ms = tg_worker_now(w);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    tg_buf_init(&c->in, 64 * 1024);
    /* the soft limit is max_output_bytes (produce stops there); the hard cap leaves room for
     * the frame or chunk that crosses it */
    tg_buf_init(&c->out, (size_t)c->max_output + 256 * 1024);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    uv_poll_init(&w->loop, &c->poll, fd);
    c->poll.data = c;
    if ((c->ssl = tg_listener_ssl_new(l)) != NULL) {
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        c->state = TG_CONN_HANDSHAKE;
    } else {
        c->state = TG_CONN_SNIFF;
    }
    c->poll_events = UV_READABLE;
    uv_poll_start(&c->poll, UV_READABLE, on_poll);
}
