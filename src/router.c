/*
 * router.c - see router.h.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "tfgate/admin.h"
#include "tfgate/config.h"
#include "tfgate/conn.h"
#include "tfgate/error.h"
#include "tfgate/health.h"
#include "tfgate/rest.h"
#include "tfgate/router.h"
#include "tfgate/stream.h"
#include "tfgate/worker.h"

/* libevent's page, which TF Serving answers for paths outside /v1/ (spec §3.1). */
static const char not_found_page[] = "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                                     "<H1>Not Found</H1>\n</BODY></HTML>";

static uint64_t small_body(struct tg_stream *st)
{
    return st->limits->max_body_bytes;
}

static void not_found(struct tg_stream *st)
{
    tg_stream_respond_http(st, 404, "text/html", not_found_page, sizeof(not_found_page) - 1);
}

static const struct tg_handler not_found_handler = {"not-found", small_body, not_found, NULL, 0};

static void grpc_over_http1(struct tg_stream *st)
{
    tg_stream_respond_error(st, TG_EINVAL,
                            "gRPC needs HTTP/2 (h2c prior knowledge, Upgrade: h2c, "
                            "or TLS with ALPN h2)");
}

static const struct tg_handler grpc_h1_handler = {"grpc-over-h1", small_body, grpc_over_http1, NULL,
                                                  0};

const struct tg_handler *tg_router_pick(struct tg_stream *st)
{
    if (st->conn->admin)
        return &tg_admin_handler; /* the admin port serves nothing else */
    if (tg_stream_is_grpc(st)) {
        if (st->http2 && tg_health_path(st->path, st->path_len))
            return &tg_health_handler;
        return st->http2 ? &tg_grpc_proxy_handler : &grpc_h1_handler;
    }
    if (st->path_len >= 4 && strncasecmp(st->path, "/v1/", 4) == 0)
        return &tg_rest_handler;
    return &not_found_handler;
}
