/*
 * server.c - see server.h.
 *
 * Call lifecycle: a request slot is posted per method (grpc_server_request_registered_call,
 * payload pre-read); when a call arrives its slot is re-posted, the handler runs on the
 * completion-queue thread, and the answer goes out in one batch (initial metadata, message,
 * status, close) either at once or when the simulated device finishes the job. The batch's
 * completion frees the call. Every call is owned by exactly one of: the completion queue
 * (waiting for an event), the device (queued job), or the thread handling it.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <jansson.h>

#include "server.h"
#include "util.h"

#define SLOTS_PER_METHOD 32 /* pending request_registered_call per method */
#define GENERIC_SLOTS    4  /* pending request_call for unknown methods */

enum extra_method {
    M_STATS = SIM_M_COUNT,
    M_CONTROL,
    M_ALL,
};
static const char *const extra_paths[] = {"/tfsim.Sim/Stats", "/tfsim.Sim/Control"};

enum tag_kind {
    TAG_NEW = 0,  /* a request slot completed: a call arrived (or shutdown) */
    TAG_SENT,     /* the answer batch completed */
    TAG_SHUTDOWN, /* grpc_server_shutdown_and_notify */
};

struct sim_call {
    /* Written before the call is handed to gRPC, read by whichever queue thread gets the
     * event: release/acquire makes that hand-off visible to the memory model (and to TSan,
     * which cannot see gRPC's own synchronisation in Debian's uninstrumented build). */
    _Atomic int kind; /* enum tag_kind */
    int method;       /* enum sim_method or extra_method; -1 = unknown method */
    struct sim_server *srv;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* generic calls only */
    struct sim_result res;
    grpc_slice details_slice;
    int cancelled;
    struct sim_job job; /* while the device holds the call */
#define SIM_ECHO_MAX 8
    grpc_metadata echo[SIM_ECHO_MAX]; /* echoed metadata (see echo_metadata) */
    grpc_metadata trailer[SIM_ECHO_MAX];
    size_t n_echo, n_trailer;
};

struct sim_server {
    struct sim_registry *reg;
    struct sim_server_config cfg;
    grpc_server *server;
    grpc_completion_queue *cq;
    void *rm[M_ALL]; /* registered method handles */
    pthread_t *threads;
    struct sim_device *device;
    atomic_int shutting_down;
    struct sim_call shutdown_tag;
    pthread_mutex_t mu; /* guards shutdown_done and the record file */
    pthread_cond_t cv;
    int shutdown_done;
    FILE *record;

    atomic_ullong calls[M_ALL];
    atomic_ullong cancelled; /* calls whose client cancelled (or whose deadline passed) */
    atomic_ullong errors;
    atomic_ullong unimplemented;
    atomic_llong inflight;
    atomic_llong max_inflight;
};

static void post_slot(struct sim_server *srv, int method);

static void free_call(struct sim_call *c)
{
    for (size_t i = 0; i < c->n_echo; i++) {
        grpc_slice_unref(c->echo[i].key);
        grpc_slice_unref(c->echo[i].value);
    }
    for (size_t i = 0; i < c->n_trailer; i++) {
        grpc_slice_unref(c->trailer[i].key);
        grpc_slice_unref(c->trailer[i].value);
    }
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    grpc_metadata_array_destroy(&c->md);
    if (c->method < 0)
        grpc_call_details_destroy(&c->details);
    grpc_slice_unref(c->details_slice);
    sim_result_dispose(&c->res);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

/* Request metadata "x-tfsim-echo-<k>" comes back as initial metadata "<k>", and
 * "x-tfsim-trailer-<k>" as trailing metadata "<k>": tests use it to check that a proxy passes
 * metadata through unchanged in both directions. */
static size_t echo_metadata(struct sim_call *c, const char *prefix, grpc_metadata *out, size_t cap)
{
    size_t n = 0, plen = strlen(prefix);
    for (size_t i = 0; i < c->md.count && n < cap; i++) {
        const grpc_slice *k = &c->md.metadata[i].key;
        if (GRPC_SLICE_LENGTH(*k) > plen && memcmp(GRPC_SLICE_START_PTR(*k), prefix, plen) == 0) {
            out[n].key = grpc_slice_sub(*k, plen, GRPC_SLICE_LENGTH(*k));
            out[n].value = grpc_slice_ref(c->md.metadata[i].value);
            n++;
        }
    }
    return n;
}

/* Sends the answer in |c->res|; the batch's completion frees the call. */
static void send_answer(struct sim_call *c)
{
    grpc_op ops[4];
    size_t n = 0;
    grpc_byte_buffer *bb = NULL;

    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->n_echo = echo_metadata(c, "x-tfsim-echo-", c->echo, SIM_ECHO_MAX);
    ops[n].data.send_initial_metadata.count = c->n_echo;
    ops[n].data.send_initial_metadata.metadata = c->echo;
    n++;
    if (c->res.status.code == GRPC_STATUS_OK && c->res.body != NULL) {
        grpc_slice s = grpc_slice_new(c->res.body, c->res.body_len, free);
        c->res.body = NULL; /* the slice owns it now */
        bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    c->details_slice =
        grpc_slice_from_copied_string(c->res.status.message ? c->res.status.message : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    c->n_trailer = echo_metadata(c, "x-tfsim-trailer-", c->trailer, SIM_ECHO_MAX);
    ops[n].data.send_status_from_server.trailing_metadata_count = c->n_trailer;
    ops[n].data.send_status_from_server.trailing_metadata = c->trailer;
    ops[n].data.send_status_from_server.status = c->res.status.code;
    ops[n].data.send_status_from_server.status_details = &c->details_slice;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &c->cancelled;
    n++;
    if (c->res.status.code != GRPC_STATUS_OK)
        atomic_fetch_add(&c->srv->errors, 1);
    /* Once the batch is started another thread may complete and free |c|: read everything
     * needed first, then publish. */
    grpc_call *call = c->call;
    struct sim_server *srv = c->srv;
    atomic_store_explicit(&c->kind, TAG_SENT, memory_order_release);
    grpc_call_error e = grpc_call_start_batch(call, ops, n, c, NULL);
    if (bb)
        grpc_byte_buffer_destroy(bb); /* the batch holds its own reference */
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "tfs-sim: start_batch failed (%d)\n", (int)e);
        atomic_fetch_sub(&srv->inflight, 1);
        free_call(c);
    }
}

static void on_job_done(struct sim_job *job)
{
    struct sim_call *c = (struct sim_call *)((char *)job - offsetof(struct sim_call, job));
    send_answer(c);
}

static void record_call(struct sim_server *srv, struct sim_call *c, const uint8_t *req, size_t len)
{
    json_t *line = json_object(), *md = json_object();
    char *b64 = sim_base64_encode(req, len), *text;

    json_object_set_new(line, "method",
                        json_string(c->method >= 0 && c->method < SIM_M_COUNT
                                        ? sim_methods[c->method].path
                                        : extra_paths[c->method - SIM_M_COUNT]));
    json_object_set_new(line, "request_b64", json_string(b64));
    for (size_t i = 0; i < c->md.count; i++) {
        const grpc_metadata *m = &c->md.metadata[i];
        char *k = grpc_slice_to_c_string(m->key);
        size_t vlen = GRPC_SLICE_LENGTH(m->value);
        const uint8_t *v = GRPC_SLICE_START_PTR(m->value);
        /* binary or non-UTF-8 values are recorded as base64 under "<key>" with a "b64:" tag */
        if (strlen(k) > 4 && strcmp(k + strlen(k) - 4, "-bin") == 0) {
            char *vb = sim_base64_encode(v, vlen);
            json_object_set_new(md, k, json_string(vb));
            free(vb);
        } else {
            json_object_set_new(md, k, json_stringn((const char *)v, vlen));
        }
        gpr_free(k);
    }
    json_object_set_new(line, "metadata", md);
    text = json_dumps(line, JSON_COMPACT);
    pthread_mutex_lock(&srv->mu);
    if (text != NULL) {
        fputs(text, srv->record);
        fputc('\n', srv->record);
        fflush(srv->record);
    }
    pthread_mutex_unlock(&srv->mu);
    free(text);
    free(b64);
    json_decref(line);
}

static void stats_json(struct sim_server *srv, struct sim_result *res)
{
    json_t *root = json_object(), *calls = json_object(), *models = json_object();
    struct sim_device_stats ds = {0};
    char *text;

    for (int m = 0; m < SIM_M_COUNT; m++)
        json_object_set_new(calls, sim_methods[m].name,
                            json_integer((json_int_t)atomic_load(&srv->calls[m])));
    for (size_t i = 0; i < srv->reg->n_models; i++)
        json_object_set_new(models, srv->reg->models[i]->name,
                            json_integer((json_int_t)atomic_load(&srv->reg->models[i]->calls)));
    json_object_set_new(root, "device", json_string(srv->cfg.device_name));
    json_object_set_new(root, "calls", calls);
    json_object_set_new(root, "models", models);
    json_object_set_new(root, "errors", json_integer((json_int_t)atomic_load(&srv->errors)));
    json_object_set_new(root, "cancelled", json_integer((json_int_t)atomic_load(&srv->cancelled)));
    json_object_set_new(root, "unimplemented",
                        json_integer((json_int_t)atomic_load(&srv->unimplemented)));
    /* the Stats call itself is in flight; leave it out */
    json_object_set_new(root, "inflight", json_integer(atomic_load(&srv->inflight) - 1));
    json_object_set_new(root, "max_inflight", json_integer(atomic_load(&srv->max_inflight)));
    if (srv->device != NULL)
        sim_device_stats(srv->device, &ds);
    json_t *dj = json_object();
    json_object_set_new(dj, "completed", json_integer((json_int_t)ds.completed));
    json_object_set_new(dj, "rejected", json_integer((json_int_t)ds.rejected));
    json_object_set_new(dj, "batches", json_integer((json_int_t)ds.batches));
    json_object_set_new(dj, "max_queue", json_integer((json_int_t)ds.max_queue));
    json_object_set_new(dj, "queued", json_integer((json_int_t)ds.queued));
    json_object_set_new(dj, "running", json_integer((json_int_t)ds.running));
    json_object_set_new(root, "device_stats", dj);
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    res->body = (uint8_t *)text;
    res->body_len = strlen(text);
    json_decref(root);
}

static void control(struct sim_server *srv, const uint8_t *req, size_t len, struct sim_result *res)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)req, len, 0, &jerr);
    const char *op = json_string_value(json_object_get(root, "op"));

    if (op == NULL) {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "control: need {\"op\": ...}");
    } else if (strcmp(op, "reset_stats") == 0) {
        for (int m = 0; m < M_ALL; m++)
            atomic_store(&srv->calls[m], 0);
        atomic_store(&srv->errors, 0);
        atomic_store(&srv->cancelled, 0);
        atomic_store(&srv->max_inflight, 0);
        for (size_t i = 0; i < srv->reg->n_models; i++)
            atomic_store(&srv->reg->models[i]->calls, 0);
        if (srv->device != NULL)
            sim_device_reset_stats(srv->device);
    } else if (strcmp(op, "set_state") == 0) {
        const char *model = json_string_value(json_object_get(root, "model"));
        json_t *ver = json_object_get(root, "version");
        const char *state = json_string_value(json_object_get(root, "state"));
        struct sim_model *m = model ? sim_registry_find(srv->reg, model) : NULL;
        struct sim_version *v =
            m && json_is_integer(ver) ? sim_model_version(m, json_integer_value(ver)) : NULL;
        int s = state ? sim_state_from_name(state) : -1;
        if (v == NULL || s < 0)
            sim_status_set(
                &res->status, GRPC_STATUS_INVALID_ARGUMENT,
                "control: set_state needs an existing model and version and a state name");
        else
            atomic_store(&v->state, s);
    } else {
        sim_status_set(&res->status, GRPC_STATUS_INVALID_ARGUMENT, "control: unknown op");
    }
    if (res->status.code == GRPC_STATUS_OK) {
        res->body = (uint8_t *)sim_xstrdup("{\"ok\":true}");
        res->body_len = strlen((char *)res->body);
    }
    json_decref(root);
}

static void on_new_call(struct sim_server *srv, struct sim_call *c)
{
    grpc_byte_buffer_reader reader;
    grpc_slice flat = grpc_empty_slice();
    long long now_inflight = atomic_fetch_add(&srv->inflight, 1) + 1;
    long long prev = atomic_load(&srv->max_inflight);

    while (now_inflight > prev &&
           !atomic_compare_exchange_weak(&srv->max_inflight, &prev, now_inflight))
        ;
    post_slot(srv, c->method); /* keep a slot waiting for the next call */

    if (c->method < 0) {
        /* grpc++ answers unknown methods with UNIMPLEMENTED and no message */
        atomic_fetch_add(&srv->unimplemented, 1);
        sim_status_set(&c->res.status, GRPC_STATUS_UNIMPLEMENTED, "%s", "");
        send_answer(c);
        return;
    }
    atomic_fetch_add(&srv->calls[c->method], 1);
    if (c->payload == NULL) {
        /* grpc++'s deserializer with no message at all */
        sim_status_set(&c->res.status, GRPC_STATUS_INTERNAL, "No payload");
        send_answer(c);
        return;
    }
    if (grpc_byte_buffer_reader_init(&reader, c->payload) == 0) {
        sim_status_set(&c->res.status, GRPC_STATUS_INTERNAL, "Failed to read the request");
        send_answer(c);
        return;
    }
    flat = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    const uint8_t *req = GRPC_SLICE_START_PTR(flat);
    size_t len = GRPC_SLICE_LENGTH(flat);

    if (srv->record != NULL)
        record_call(srv, c, req, len);
    if (c->method == M_STATS) {
        memset(&c->res, 0, sizeof(c->res));
        stats_json(srv, &c->res);
    } else if (c->method == M_CONTROL) {
        memset(&c->res, 0, sizeof(c->res));
        control(srv, req, len, &c->res);
    } else {
        sim_handle(srv->reg, &srv->cfg.handler, (enum sim_method)c->method, req, len, &c->res);
    }
    grpc_slice_unref(flat);

    if (c->res.status.code == GRPC_STATUS_OK && c->method < SIM_M_COUNT &&
        sim_methods[c->method].computes && srv->device != NULL) {
        c->job.done = on_job_done;
        if (sim_device_submit(srv->device, &c->job) == 0)
            return; /* the device owns the call until on_job_done */
        free(c->res.body);
        c->res.body = NULL;
        sim_status_set(&c->res.status, GRPC_STATUS_UNAVAILABLE, SIM_QUEUE_FULL_MESSAGE);
    }
    send_answer(c);
}

static void post_slot(struct sim_server *srv, int method)
{
    struct sim_call *c;
    grpc_call_error e;

    if (atomic_load(&srv->shutting_down))
        return;
    c = sim_xcalloc(1, sizeof(*c));
    c->method = method;
    c->srv = srv;
    c->details_slice = grpc_empty_slice();
    grpc_metadata_array_init(&c->md);
    atomic_store_explicit(&c->kind, TAG_NEW, memory_order_release);
    if (method < 0) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->cq, srv->cq,
                                     c);
    } else {
        e = grpc_server_request_registered_call(srv->server, srv->rm[method], &c->call,
                                                &c->deadline, &c->md, &c->payload, srv->cq, srv->cq,
                                                c);
    }
    if (e != GRPC_CALL_OK) {
        free_call(c);
        if (!atomic_load(&srv->shutting_down))
            fprintf(stderr, "tfs-sim: request_call failed (%d)\n", (int)e);
    }
}

static void *cq_thread(void *arg)
{
    struct sim_server *srv = arg;

    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct sim_call *c = ev.tag;
        switch (atomic_load_explicit(&c->kind, memory_order_acquire)) {
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&srv->mu);
            srv->shutdown_done = 1;
            pthread_cond_broadcast(&srv->cv);
            pthread_mutex_unlock(&srv->mu);
            break;
        case TAG_NEW:
            if (!ev.success) { /* the slot was cancelled by shutdown */
                free_call(c);
                break;
            }
            on_new_call(srv, c);
            break;
        case TAG_SENT:
            if (c->cancelled || !ev.success)
                atomic_fetch_add(&srv->cancelled, 1);
            atomic_fetch_sub(&srv->inflight, 1);
            free_call(c);
            break;
        }
    }
    return NULL;
}

static char *read_pem(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (1 << 20) ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = sim_xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

struct sim_server *sim_server_start(struct sim_registry *reg, const struct sim_server_config *cfg,
                                    int *bound_port, char *err, size_t errlen)
{
    struct sim_server *srv = sim_xcalloc(1, sizeof(*srv));
    grpc_arg args[3];
    grpc_channel_args chargs = {.num_args = 3, .args = args};
    grpc_server_credentials *creds;
    char addr[300];
    int port;

    srv->reg = reg;
    srv->cfg = *cfg;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    atomic_init(&srv->shutdown_tag.kind, TAG_SHUTDOWN);

    if (cfg->record_path != NULL) {
        srv->record = fopen(cfg->record_path, "a");
        if (srv->record == NULL) {
            snprintf(err, errlen, "cannot open record file %s", cfg->record_path);
            goto fail;
        }
    }

    /* TF Serving raises both message limits to INT32_MAX (spec §1). gRPC core enables
     * SO_REUSEPORT by default, which lets two servers share a port silently: turn it off. */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = INT_MAX;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = INT_MAX;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;

    srv->server = grpc_server_create(&chargs, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    for (int m = 0; m < M_ALL; m++) {
        const char *path = m < SIM_M_COUNT ? sim_methods[m].path : extra_paths[m - SIM_M_COUNT];
        srv->rm[m] = grpc_server_register_method(srv->server, path, NULL,
                                                 GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    }
    if (strchr(cfg->host, ':') != NULL && cfg->host[0] != '[')
        snprintf(addr, sizeof(addr), "[%s]:%d", cfg->host, cfg->port);
    else
        snprintf(addr, sizeof(addr), "%s:%d", cfg->host, cfg->port);
    if (cfg->tls_cert != NULL) {
        char *cert = read_pem(cfg->tls_cert), *key = read_pem(cfg->tls_key);
        if (cert == NULL || key == NULL) {
            snprintf(err, errlen, "cannot read %s or %s", cfg->tls_cert, cfg->tls_key);
            free(cert);
            free(key);
            grpc_server_destroy(srv->server);
            grpc_completion_queue_shutdown(srv->cq);
            while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
            grpc_completion_queue_destroy(srv->cq);
            goto fail;
        }
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
        free(cert);
        free(key);
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    port = grpc_server_add_http2_port(srv->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        snprintf(err, errlen, "cannot bind %s (in use, or not a local address)", addr);
        grpc_server_destroy(srv->server);
        grpc_completion_queue_shutdown(srv->cq);
        while (
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
            GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(srv->cq);
        goto fail;
    }
    grpc_server_start(srv->server);

    struct sim_device *dev = sim_device_start(&cfg->device);
    if (dev != NULL && sim_device_is_passthrough(dev)) {
        sim_device_stop(dev); /* no delay to simulate: answer on the queue thread */
        sim_device_free(dev);
        dev = NULL;
    }
    srv->device = dev;

    for (int m = 0; m < M_ALL; m++) {
        for (int i = 0; i < SLOTS_PER_METHOD; i++)
            post_slot(srv, m);
    }
    for (int i = 0; i < GENERIC_SLOTS; i++)
        post_slot(srv, -1);

    srv->threads = sim_xcalloc((size_t)cfg->threads, sizeof(pthread_t));
    for (int i = 0; i < cfg->threads; i++)
        pthread_create(&srv->threads[i], NULL, cq_thread, srv);
    *bound_port = port;
    return srv;

fail:
    if (srv->record)
        fclose(srv->record);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
    return NULL;
}

void sim_server_stop(struct sim_server *srv)
{
    /* Stop accepting, cancel what is in flight, then have the device answer what it holds
     * (those batches fail fast on cancelled calls), so no call is left without a batch. */
    atomic_store(&srv->shutting_down, 1);
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
    grpc_server_cancel_all_calls(srv->server);
    if (srv->device != NULL)
        sim_device_stop(srv->device);
    pthread_mutex_lock(&srv->mu);
    while (!srv->shutdown_done)
        pthread_cond_wait(&srv->cv, &srv->mu);
    pthread_mutex_unlock(&srv->mu);
    grpc_completion_queue_shutdown(srv->cq);
    for (int i = 0; i < srv->cfg.threads; i++)
        pthread_join(srv->threads[i], NULL);
    grpc_server_destroy(srv->server);
    grpc_completion_queue_destroy(srv->cq);
    sim_device_free(srv->device);
    if (srv->record)
        fclose(srv->record);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv->threads);
    free(srv);
}
