/*
 * status.h - a gRPC status (code + message) as TF Serving reports it, and the code names of
 * tensorflow.error.Code (spec/tfserving.md §2.7, equal to gRPC's).
 *
 * Thread affinity: reentrant.
 */
#ifndef SIM_STATUS_H
#define SIM_STATUS_H

#include <grpc/status.h>

struct sim_status {
    grpc_status_code code; /* GRPC_STATUS_OK when no error */
    char *message;         /* owned; NULL when OK */
};

/* Sets |st| to |code| and the formatted message (capped at 64 KiB). Frees a previous message. */
void sim_status_set(struct sim_status *st, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sim_status_dispose(struct sim_status *st);

/* "NOT_FOUND" -> 5; returns -1 for an unknown name. Numbers given as text ("5") also work. */
int sim_code_from_name(const char *name);
/* 5 -> "NOT_FOUND"; "UNKNOWN" for anything out of range. */
const char *sim_code_name(int code);

#endif /* SIM_STATUS_H */
