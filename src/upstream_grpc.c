/*
 * upstream_grpc.c - the grpc-core transport (see upstream.h): shared gRPC core channels per
 * replica (pool.c), one batch of six ops and one completion per unary call
 * (toolchain-notes §3). The completion arrives on the worker's pump thread and reaches the
 * loop through the mailbox. Metadata is converted between HTTP/2 wire form and gRPC core's
 * raw form ("-bin" values base64 on the wire, raw bytes in the API).
 */
#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "tfgate/arena.h"
#include "tfgate/base64.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/pool.h"
#include "tfgate/upstream.h"

struct gcall {
    grpc_call *call;
    grpc_channel *channel;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
};

static int is_bin(const char *name, size_t len)
{
    return len > 4 && memcmp(name + len - 4, "-bin", 4) == 0;
}

static struct tg_md *to_wire(struct tg_arena *a, const grpc_metadata_array *md, size_t *n)
{
    struct tg_md *out = tg_arena_alloc(a, (md->count + 1) * sizeof(*out), _Alignof(struct tg_md));
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        size_t klen = GRPC_SLICE_LENGTH(m->key), vlen = GRPC_SLICE_LENGTH(m->value);
        out[i].name = tg_arena_strndup(a, (const char *)GRPC_SLICE_START_PTR(m->key), klen);
        out[i].name_len = klen;
        if (is_bin(out[i].name, klen)) {
            /* unpadded, as gRPC sends -bin values */
            char *enc = tg_arena_alloc(a, tg_base64_encoded_len(vlen, 0) + 1, 1);
            out[i].value_len = tg_base64_encode(GRPC_SLICE_START_PTR(m->value), vlen, enc, 0);
            out[i].value = enc;
        } else {
            out[i].value = tg_arena_strndup(a, (const char *)GRPC_SLICE_START_PTR(m->value), vlen);
            out[i].value_len = vlen;
        }
    }
    *n = md->count;
    return out;
}

static void release(void *p)
{
    struct gcall *g = p;
    grpc_metadata_array_destroy(&g->initial_md);
    grpc_metadata_array_destroy(&g->trailing_md);
    if (g->send)
        grpc_byte_buffer_destroy(g->send);
    if (g->recv)
        grpc_byte_buffer_destroy(g->recv);
    grpc_slice_unref(g->details);
    if (g->error_string)
        gpr_free((void *)g->error_string);
    if (g->call)
        grpc_call_unref(g->call);
}

/* gRPC core reports a reset connection as "Error received from peer" just like a status the
 * server sent, so its debug string cannot tell them apart. Two signals can: after a transport
 * failure the channel is reconnecting or failing rather than READY (though the call may
 * complete before the state changes), and the message is one of gRPC core's own transport
 * texts, which a TF Serving handler never sends. */
static int transport_failure(struct gcall *g)
{
    static const char *const texts[] = {
        "Socket closed",        "Connection reset by peer",
        "failed to connect",    "Connection refused",
        "Broken pipe",          "GOAWAY received",
        "keepalive watchdog",   "Endpoint read failed",
        "Transport closed",     "connections to all backends failing",
        "Connection timed out", "Network is unreachable",
    };
    if (g->status != GRPC_STATUS_UNAVAILABLE)
        return 0;
    if (grpc_channel_check_connectivity_state(g->channel, 0) != GRPC_CHANNEL_READY)
        return 1;
    size_t len = GRPC_SLICE_LENGTH(g->details);
    const char *d = (const char *)GRPC_SLICE_START_PTR(g->details);
    for (size_t i = 0; i < TG_ARRAY_SIZE(texts); i++) {
        if (memmem(d, len, texts[i], strlen(texts[i])) != NULL)
            return 1;
    }
    return 0;
}

static void on_complete(struct tg_msg *msg)
{
    struct tg_upstream_call *c = tg_container_of(msg, struct tg_upstream_call, tag.msg);
    struct gcall *g = c->impl;
    struct tg_upstream_result *r = &c->result;

    r->status = c->tag.ok ? (int)g->status : GRPC_STATUS_UNKNOWN;
    r->message_len = GRPC_SLICE_LENGTH(g->details);
    r->message =
        tg_arena_strndup(c->arena, (const char *)GRPC_SLICE_START_PTR(g->details), r->message_len);
    r->initial_md = to_wire(c->arena, &g->initial_md, &r->n_initial_md);
    r->trailing_md = to_wire(c->arena, &g->trailing_md, &r->n_trailing_md);
    if (g->recv != NULL) {
        grpc_byte_buffer_reader reader;
        if (grpc_byte_buffer_reader_init(&reader, g->recv)) {
            grpc_slice flat = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            size_t n = GRPC_SLICE_LENGTH(flat);
            uint8_t *copy = tg_arena_alloc(c->arena, n + 1, 1);
            memcpy(copy, GRPC_SLICE_START_PTR(flat), n);
            grpc_slice_unref(flat);
            r->response = copy;
            r->response_len = n;
        }
    }
    r->transport_failure = transport_failure(g);
    tg_upstream__complete(c);
}

static void start(struct tg_upstream_call *c, const struct tg_upstream_req *req)
{
    struct tg_replica *replica;
    struct tg_channel *channel;
    struct gcall *g;
    grpc_op ops[6];

    struct tg_pick want = {req->model, req->has_version, req->version, req->replica};
    if (tg_pool_pick(req->pool, tg_worker_now(c->w), &want, &replica, &channel) != 0) {
        tg_upstream__fail_later(c, GRPC_STATUS_UNAVAILABLE, "no replica is reachable");
        return;
    }
    g = TG_ARENA_NEW(c->arena, struct gcall);
    c->impl = g;
    g->channel = channel->ch;
    g->details = grpc_empty_slice();
    grpc_metadata_array_init(&g->initial_md);
    grpc_metadata_array_init(&g->trailing_md);
    tg_arena_defer(c->arena, release, g);
    c->result.replica = replica;
    atomic_fetch_add_explicit(&replica->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&replica->inflight, 1, memory_order_relaxed);

    grpc_metadata *md =
        tg_arena_zalloc(c->arena, (req->n_md + 1) * sizeof(*md), _Alignof(grpc_metadata));
    size_t n_md = 0;
    for (size_t i = 0; i < req->n_md; i++) {
        const struct tg_md *m = &req->md[i];
        const uint8_t *val = (const uint8_t *)m->value;
        size_t vlen = m->value_len;
        if (is_bin(m->name, m->name_len)) {
            uint8_t *raw = tg_arena_alloc(c->arena, m->value_len / 4 * 3 + 3, 1);
            if (tg_base64_decode(m->value, m->value_len, raw, &vlen, 0) != 0)
                continue; /* not base64: cannot be given to gRPC core faithfully */
            val = raw;
        }
        md[n_md].key = grpc_slice_from_static_buffer(m->name, m->name_len);
        md[n_md].value = grpc_slice_from_static_buffer(val, vlen);
        n_md++;
    }
    gpr_timespec deadline = gpr_time_add(
        gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis((int64_t)req->timeout_ms, GPR_TIMESPAN));
    g->call =
        grpc_channel_create_registered_call(channel->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->w->cq,
                                            channel->methods[req->method], deadline, NULL);
    /* the message lives in the caller's stream until |done|: no copy */
    grpc_slice msg = grpc_slice_from_static_buffer(req->message, req->message_len);
    g->send = grpc_raw_byte_buffer_create(&msg, 1);

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = g->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &g->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &g->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.status = &g->status;
    ops[5].data.recv_status_on_client.status_details = &g->details;
    ops[5].data.recv_status_on_client.trailing_metadata = &g->trailing_md;
    ops[5].data.recv_status_on_client.error_string = &g->error_string;
    c->tag.msg.deliver = on_complete;
    if (grpc_call_start_batch(g->call, ops, 6, &c->tag, NULL) != GRPC_CALL_OK) {
        /* metadata gRPC core refuses: the filter upstream should have caught it */
        c->result.replica = NULL;
        atomic_fetch_sub_explicit(&replica->inflight, 1, memory_order_relaxed);
        tg_upstream__fail_later(c, GRPC_STATUS_INTERNAL, "the backend call could not be started");
        c->result.transport_failure = 0;
    }
}

static void cancel(struct tg_upstream_call *c)
{
    struct gcall *g = c->impl;
    if (g != NULL && g->call != NULL)
        grpc_call_cancel(g->call, NULL); /* the completion still comes */
}

const struct tg_upstream_ops tg_upstream_grpc_ops = {start, cancel};
