/*
 * accesslog.c - see accesslog.h.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tfgate/accesslog.h"
#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/conn.h"
#include "tfgate/log.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

/* log_fd is opened once and then only replaced in place (dup2), so a worker never writes to a
 * closed or reused descriptor; |enabled| turns the log off without closing it */
static int log_fd = -1;
static atomic_int enabled;
static char *log_path; /* main thread */

int tg_access_log_open(const char *path)
{
    int fd = tg_log_file_open(path, STDOUT_FILENO);
    if (fd < 0)
        return -1;
    log_fd = fd;
    log_path = tg_xstrdup(path);
    atomic_store(&enabled, 1);
    return 0;
}

int tg_access_log_switch(const char *path)
{
    if (path == NULL) {
        atomic_store(&enabled, 0);
        return 0;
    }
    if (log_path != NULL && strcmp(path, log_path) == 0) {
        if (tg_access_log_reopen() != 0)
            tg_log(TG_LOG_WARN, "main", "access_log %s: %s; still writing the old file", path,
                   strerror(errno));
        atomic_store(&enabled, 1);
        return 0;
    }
    if (log_fd < 0) {
        if (tg_access_log_open(path) != 0) /* before the first line: nobody writes yet */
            return -1;
        return 0;
    }
    if (tg_log_file_reopen(log_fd, path, STDOUT_FILENO) != 0)
        return -1;
    free(log_path);
    log_path = tg_xstrdup(path);
    atomic_store(&enabled, 1);
    return 0;
}

int tg_access_log_reopen(void)
{
    if (log_fd < 0 || strcmp(log_path, "-") == 0)
        return 0;
    return tg_log_file_reopen(log_fd, log_path, STDOUT_FILENO);
}

void tg_access_log_close(void)
{
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    free(log_path);
    log_path = NULL;
}

void tg_access_log(struct tg_stream *st)
{
    if (!atomic_load_explicit(&enabled, memory_order_acquire))
        return;
    int grpc = tg_stream_is_grpc(st) && st->http2;
    char when[TG_LOG_TIME_LEN + 1];
    size_t rid_len;
    tg_log_time(when);
    const char *rid = tg_stream_request_id(st, &rid_len);
    uint64_t total = tg_worker_now(st->w) - st->start_ms;

    json_t *rec = json_object();
    json_object_set_new(rec, "time", json_string(when));
    json_object_set_new(rec, "request_id", json_stringn(rid, rid_len));
    /* the trace the request belongs to, even when it never went upstream */
    json_object_set_new(rec, "trace_id", json_stringn(tg_stream_traceparent(st) + 3, 32));
    if (st->conn != NULL)
        json_object_set_new(rec, "client", json_string(st->conn->peer));
    json_object_set_new(rec, "protocol",
                        json_string(grpc        ? "grpc"
                                    : st->http2 ? "rest/http2"
                                                : "rest/http1.1"));
    if (st->method)
        json_object_set_new(rec, "method", json_string(st->method));
    /* the path without its query string: a client may put a token there */
    if (st->path)
        json_object_set_new(rec, grpc ? "grpc_method" : "path",
                            json_stringn(st->path, strcspn(st->path, "?")));
    if (st->metric_model)
        json_object_set_new(rec, "model", json_string(st->metric_model));
    const char *version = st->version;
    for (size_t i = 0; i < st->n_resp_headers; i++) {
        if (strcmp(st->resp_headers[i].name, "x-tfgate-model-version") == 0)
            version = st->resp_headers[i].value;
    }
    if (version != NULL)
        json_object_set_new(rec, "version", json_string(version));
    if (st->upstream_pool)
        json_object_set_new(rec, "pool", json_string(st->upstream_pool));
    if (st->upstream_replica)
        json_object_set_new(rec, "replica", json_string(st->upstream_replica));
    json_object_set_new(rec, "status", json_integer(st->conn ? st->status : 499));
    for (size_t i = 0; i < st->n_trailers; i++) {
        if (strcmp(st->trailers[i].name, "grpc-status") == 0)
            json_object_set_new(rec, "grpc_status", json_integer(atoi(st->trailers[i].value)));
    }
    json_object_set_new(rec, "bytes_in", json_integer((json_int_t)tg_buf_size(&st->body)));
    json_object_set_new(rec, "bytes_out", json_integer((json_int_t)st->resp_body_len));
    json_object_set_new(rec, "latency_ms", json_integer((json_int_t)total));
    json_object_set_new(rec, "upstream_ms", json_integer((json_int_t)st->upstream_ms));
    json_object_set_new(
        rec, "gateway_ms",
        json_integer((json_int_t)(total > st->upstream_ms ? total - st->upstream_ms : 0)));
    if (st->identity != NULL && !st->identity->anonymous)
        json_object_set_new(rec, "subject", json_string(st->identity->subject));
    char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (line == NULL) /* a value that is not UTF-8: the line is dropped, not mangled */
        return;
    size_t n = strlen(line);
    line[n] = '\n';
    ssize_t w = write(log_fd, line, n + 1);
    (void)w; /* a full disk must not stop serving */
    free(line);
}
