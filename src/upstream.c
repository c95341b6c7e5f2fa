/*
 * upstream.c - gRPC core behind the narrow upstream interface (see upstream.h). A unary call is
 * one batch of six ops, one tag, one completion (toolchain-notes §3).
 */
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/alloc.h>

#include "tfgate/common.h"
#include "tfgate/pool.h"
#include "tfgate/upstream.h"

static void on_complete(struct tg_msg *msg)
{
    struct tg_upstream_call *c = tg_container_of(msg, struct tg_upstream_call, tag.msg);
    struct tg_worker *w = c->w;

    if (c->prev)
        c->prev->next = c->next;
    else
        w->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_calls--;
    if (c->replica)
        atomic_fetch_sub_explicit(&c->replica->inflight, 1, memory_order_relaxed);
    if (!c->tag.ok && c->status == GRPC_STATUS_OK)
        c->status = GRPC_STATUS_UNKNOWN; /* the batch itself failed */
    c->done(c, c->user);
}

int tg_upstream_start(struct tg_worker *w, struct tg_upstream_call *c,
                      const struct tg_upstream_req *req, tg_upstream_done_cb *done, void *user)
{
    grpc_op ops[6];

    memset(c, 0, sizeof(*c));
    c->w = w;
    c->done = done;
    c->user = user;
    c->replica = req->replica;
    c->channel = req->channel->ch;
    c->tag.msg.deliver = on_complete;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->call = grpc_channel_create_registered_call(req->channel->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                  w->cq, req->channel->methods[req->method],
                                                  req->deadline, NULL);
    grpc_slice msg = req->message;
    c->send = grpc_raw_byte_buffer_create(&msg, 1);

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = req->n_md;
    ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)req->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;
    if (grpc_call_start_batch(c->call, ops, 6, &c->tag, NULL) != GRPC_CALL_OK) {
        tg_upstream_dispose(c);
        return -1;
    }
    c->started = 1;
    c->next = w->calls;
    if (w->calls)
        w->calls->prev = c;
    w->calls = c;
    w->n_calls++;
    if (c->replica) {
        atomic_fetch_add_explicit(&c->replica->calls, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->replica->inflight, 1, memory_order_relaxed);
    }
    return 0;
}

void tg_upstream_cancel(struct tg_upstream_call *c)
{
    if (c->call != NULL)
        grpc_call_cancel(c->call, NULL);
}

void tg_upstream_dispose(struct tg_upstream_call *c)
{
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    grpc_slice_unref(c->details);
    if (c->error_string)
        gpr_free((void *)c->error_string);
    if (c->call)
        grpc_call_unref(c->call);
    c->send = c->recv = NULL;
    c->error_string = NULL;
    c->call = NULL;
}

int tg_upstream_transport_failure(const struct tg_upstream_call *c)
{
    /* gRPC core reports a reset connection as "Error received from peer" just like a status
     * the server sent, so its debug string cannot tell them apart. Two signals can: after a
     * transport failure the channel is reconnecting or failing rather than READY (but the
     * call may complete before the state changes), and the message is one of gRPC core's own
     * transport texts, which a TF Serving handler never sends. */
    static const char *const transport_texts[] = {
        "Socket closed",        "Connection reset by peer",
        "failed to connect",    "Connection refused",
        "Broken pipe",          "GOAWAY received",
        "keepalive watchdog",   "Endpoint read failed",
        "Transport closed",     "connections to all backends failing",
        "Connection timed out", "Network is unreachable",
    };
    if (c->status != GRPC_STATUS_UNAVAILABLE)
        return 0;
    if (grpc_channel_check_connectivity_state(c->channel, 0) != GRPC_CHANNEL_READY)
        return 1;
    size_t len = GRPC_SLICE_LENGTH(c->details);
    const char *d = (const char *)GRPC_SLICE_START_PTR(c->details);
    for (size_t i = 0; i < TG_ARRAY_SIZE(transport_texts); i++) {
        if (memmem(d, len, transport_texts[i], strlen(transport_texts[i])) != NULL)
            return 1;
    }
    return 0;
}
