/*
 * admin.c - the admin listener's handler: /metrics (Prometheus text), /healthz (the process
 * answers), /readyz (configuration loaded and every routed pool has a replica ready). Nothing
 * else is served there, and nothing of the data plane is served on it.
 */
#include <stdio.h>
#include <string.h>

#include "tfgate/admin.h"
#include "tfgate/metrics.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

static uint64_t no_body(struct tg_stream *st)
{
    (void)st;
    return 1024;
}

static void on_request(struct tg_stream *st)
{
    size_t plen = strcspn(st->path, "?");
    if (strcmp(st->method, "GET") != 0 && strcmp(st->method, "HEAD") != 0) {
        tg_stream_respond_http(st, 405, "text/plain", "method not allowed\n", 19);
        return;
    }
    if (plen == 8 && memcmp(st->path, "/metrics", 8) == 0) {
        size_t len;
        char *text = tg_metrics_render(st->w, st->gen, &st->arena, &len);
        tg_stream_respond_http(st, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        return;
    }
    if (plen == 8 && memcmp(st->path, "/healthz", 8) == 0) {
        tg_stream_respond_http(st, 200, "text/plain", "ok\n", 3);
        return;
    }
    if (plen == 7 && memcmp(st->path, "/readyz", 7) == 0) {
        char why[300], body[320];
        if (st->w->draining) {
            tg_stream_respond_http(st, 503, "text/plain", "draining\n", 9);
            return;
        }
        if (!tg_metrics_ready(st->w, st->gen, why, sizeof(why))) {
            int n = snprintf(body, sizeof(body), "not ready: %s\n", why);
            tg_stream_respond_http(st, 503, "text/plain", body, (size_t)n);
            return;
        }
        tg_stream_respond_http(st, 200, "text/plain", "ready\n", 6);
        return;
    }
    tg_stream_respond_http(st, 404, "text/plain", "not found: /metrics, /healthz, /readyz\n", 39);
}

const struct tg_handler tg_admin_handler = {"admin", no_body, on_request, NULL, 0};
