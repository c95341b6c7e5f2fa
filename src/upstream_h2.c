/*
 * upstream_h2.c - the native transport: placeholder until it lands (every pool uses
 * grpc-core meanwhile).
 */
#include <grpc/status.h>

#include "tfgate/upstream.h"

static void start(struct tg_upstream_call *c, const struct tg_upstream_req *req)
{
    (void)req;
    tg_upstream__fail_later(c, GRPC_STATUS_UNIMPLEMENTED, "native transport not built");
}

static void cancel(struct tg_upstream_call *c)
{
    (void)c;
}

const struct tg_upstream_ops tg_upstream_h2_ops = {start, cancel};
