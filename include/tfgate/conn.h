/*
 * conn.h - one client connection: socket, optional TLS, protocol detection (ALPN on TLS; the
 * HTTP/2 preface on cleartext) and the dispatch to HTTP/1.1 or HTTP/2 through a small vtable.
 *
 * Ownership: the worker owns its connections; a connection owns its protocol state and holds
 * one reference on each of its open streams. Closing is deferred: tg_conn_close marks the
 * connection, and the worker frees it before the loop sleeps, never inside a callback.
 * Thread affinity: the owning worker's loop thread.
 */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "tfgate/buf.h"

struct tg_conn;
struct tg_listener;
struct tg_stream;
struct tg_worker;

struct tg_proto_ops {
    const char *name;
    /* Bytes from the client. Returns 0, or -1 to close the connection. */
    int (*on_data)(struct tg_conn *c, const uint8_t *data, size_t len);
    /* Puts pending output into c->out (up to its cap). Returns -1 to close, else 0. */
    int (*produce)(struct tg_conn *c);
    /* 1 when the protocol is finished and the connection can close once output is flushed. */
    int (*finished)(struct tg_conn *c);
    /* A stream's response is ready (tg_stream_respond). */
    void (*submit)(struct tg_conn *c, struct tg_stream *st);
    /* A streamed response has more to send (tg_stream_push, tg_stream_stream_end). */
    void (*resume)(struct tg_conn *c, struct tg_stream *st);
    /* Graceful shutdown: GOAWAY, or Connection: close on the next response. */
    void (*drain)(struct tg_conn *c);
    /* Once a second: timeouts. */
    void (*tick)(struct tg_conn *c, uint64_t now_ms);
    /* Releases protocol state; closes (tg_stream_close) every stream still open. */
    void (*dispose)(struct tg_conn *c);
    /* Number of streams in progress (for idle and drain decisions). */
    size_t (*active_streams)(struct tg_conn *c);
};

enum tg_conn_state {
    TG_CONN_SNIFF = 0, /* cleartext: waiting to see whether this is the HTTP/2 preface */
    TG_CONN_HANDSHAKE, /* TLS handshake in progress */
    TG_CONN_ACTIVE,    /* a protocol is attached */
};

struct tg_conn {
    struct tg_worker *w;
    uint64_t id;
    int fd;
    uv_poll_t poll;
    int poll_events;     /* UV_READABLE | UV_WRITABLE currently requested */
    int admin;           /* accepted on the admin listener */
    int metric_kind;     /* counted in the connection metrics as this kind + 1; 0 = not yet */
    uint64_t max_output; /* limits.max_output_bytes when accepted (|out|'s soft cap) */
    SSL *ssl;            /* NULL on cleartext */
    enum tg_conn_state state;
    const struct tg_proto_ops *ops;
    void *proto;       /* struct tg_h1 or struct tg_h2, owned */
    struct tg_buf in;  /* bytes read before a protocol was chosen */
    struct tg_buf out; /* bytes produced and not yet written */
    char peer[64];     /* "ip:port" */
    uint64_t accepted_ms;
    uint64_t last_active_ms; /* last byte read or written */
    int closing;             /* close once flushed (or at once if |abort|) */
    int abort;
    int read_paused;             /* output over its cap: stop reading */
    int peer_closed;             /* read returned EOF */
    int dirty;                   /* on the worker's dirty list */
    struct tg_conn *next, *prev; /* worker's list */
    struct tg_conn *dirty_next;
};

/* Takes ownership of the accepted socket |fd|. */
void tg_conn_accept(struct tg_worker *w, struct tg_listener *l, int fd, const char *peer);
/* Marks the connection for closing: after its output is flushed, or at once with |abort|. */
void tg_conn_close(struct tg_conn *c, int abort);
/* Writes pending output and produces more; called by the worker before the loop sleeps. */
void tg_conn_flush(struct tg_conn *c);
/* Frees a connection that is closing (worker only). */
void tg_conn_free(struct tg_conn *c);
/* Sends a large |data| now if nothing is queued (no copy), queuing what the socket does not
 * take; small output is queued and leaves with the next flush's single write. Returns 0, or -1 on a
 * write error or when the queue is over its hard cap. */
int tg_conn_output(struct tg_conn *c, const uint8_t *data, size_t len);
/* Switches a connection to a protocol, feeding it |data| already read. Returns 0 or -1. */
int tg_conn_set_proto(struct tg_conn *c, const struct tg_proto_ops *ops, void *proto);

extern const struct tg_proto_ops tg_h1_ops;
extern const struct tg_proto_ops tg_h2_ops;

/* Protocol constructors (http1.c, http2.c). */
void *tg_h1_new(struct tg_conn *c);
/* |upgrade|: an HTTP/1.1 request upgraded to h2c, answered as stream 1 (or NULL); its
 * HTTP2-Settings payload is |settings| (decoded). Returns NULL if nghttp2 refuses. */
void *tg_h2_new(struct tg_conn *c, struct tg_stream *upgrade, const uint8_t *settings,
                size_t settings_len);

#endif /* TG_CONN_H */
