/*
 * handlers.h - tfs-sim's request handlers: serialized request in, serialized response or a
 * TF Serving status out (spec/tfserving.md §2 and §4). No sockets, no threads: the server
 * (server.c) calls these, and the unit tests call them directly.
 *
 * Thread affinity: reentrant; the registry is only read (plus atomic counters).
 */
#ifndef SIM_HANDLERS_H
#define SIM_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "models.h"
#include "status.h"

enum sim_method {
    SIM_M_PREDICT = 0,
    SIM_M_CLASSIFY,
    SIM_M_REGRESS,
    SIM_M_MULTI_INFERENCE,
    SIM_M_METADATA,
    SIM_M_STATUS,
    SIM_M_RELOAD_CONFIG,
    SIM_M_COUNT,
};

struct sim_method_desc {
    const char *path; /* full gRPC method path */
    const char *name; /* short name used in stats */
    int computes;     /* 1 if the call occupies the simulated device */
};
extern const struct sim_method_desc sim_methods[SIM_M_COUNT];

struct sim_handler_opts {
    int tensor_content; /* write Predict outputs as tensor_content, like TF Serving's
                           --enable_serialization_as_tensor_content */
};

struct sim_result {
    struct sim_status status; /* OK, or the error to send */
    uint8_t *body;            /* owned (malloc); the packed response when OK */
    size_t body_len;
    struct sim_model *model; /* the model the request named, if it exists; not owned */
    size_t batch;            /* examples or dim 0 of the first input; 1 if unknown */
};

/* Handles one call of |method| with the serialized request |req| (|len| bytes). Always fills
 * |res|; dispose it with sim_result_dispose. */
void sim_handle(struct sim_registry *reg, const struct sim_handler_opts *opts,
                enum sim_method method, const uint8_t *req, size_t len, struct sim_result *res);
void sim_result_dispose(struct sim_result *res);

#endif /* SIM_HANDLERS_H */
