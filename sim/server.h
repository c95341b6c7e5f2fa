/*
 * server.h - tfs-sim's gRPC server on gRPC core's C API: registered methods with the payload
 * read up front, one completion queue drained by a few threads, and the simulated device
 * between a request and its answer.
 *
 * Besides TF Serving's services it serves two methods of its own, with JSON bodies (not
 * protobuf), for tests and benchmarks:
 *   /tfsim.Sim/Stats    -> {"calls": {...}, "models": {...}, "inflight": n, "device": {...}}
 *   /tfsim.Sim/Control  <- {"op": "set_state", "model": m, "version": v, "state": "LOADING"}
 *                          {"op": "reset_stats"}
 */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include <stddef.h>

#include "device.h"
#include "handlers.h"
#include "models.h"

struct sim_server_config {
    const char *host;        /* address to bind, e.g. "127.0.0.1" or "::1" */
    int port;                /* 0 = any free port */
    int threads;             /* completion-queue threads, >= 1 */
    const char *device_name; /* "cpu" or "gpu", reported in stats */
    struct sim_device_config device;
    struct sim_handler_opts handler;
    const char *record_path; /* append one JSON line per call, or NULL */
    const char *tls_cert;    /* PEM certificate chain: serve TLS instead of cleartext */
    const char *tls_key;     /* its PEM private key */
};

struct sim_server;

/* Binds and starts serving |reg| (which must outlive the server). Returns NULL with a message
 * in |err| when the port cannot be bound (including "already in use": SO_REUSEPORT is off) or
 * the record file cannot be opened. On success |*bound_port| is the port bound. */
struct sim_server *sim_server_start(struct sim_registry *reg, const struct sim_server_config *cfg,
                                    int *bound_port, char *err, size_t errlen);

/* Answers queued device jobs, cancels what is left, waits for the threads and frees
 * everything. Call from the thread that started the server. */
void sim_server_stop(struct sim_server *srv);

#endif /* SIM_SERVER_H */
