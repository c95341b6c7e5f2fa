/*
 * error.h - the one error table. Handlers return a negative TG_E* code; the stream renders it
 * in the protocol the client spoke: an HTTP status with {"error": ...}, or grpc-status and
 * grpc-message. Statuses that come from a backend keep TF Serving's code -> HTTP table
 * (spec/tfserving.md §3.11): tg_grpc_to_http.
 *
 * Thread affinity: pure functions, any thread.
 */
#ifndef TG_ERROR_H
#define TG_ERROR_H

enum tg_error {
    TG_OK = 0,
    TG_EINVAL = -1,         /* malformed request */
    TG_ETOOLARGE = -2,      /* body or message over its limit */
    TG_EHEADERS = -3,       /* header list too large or too many headers */
    TG_ETIMEOUT = -4,       /* the client was too slow (header or request timeout) */
    TG_EDEADLINE = -5,      /* the call's deadline passed */
    TG_EUNAVAILABLE = -6,   /* no upstream could take the call */
    TG_ENOTFOUND = -7,      /* no such path */
    TG_EUNIMPLEMENTED = -8, /* method or service the gateway does not serve */
    TG_ECANCELLED = -9,
    TG_EINTERNAL = -10,
    TG_EMETHOD = -11,   /* HTTP method not allowed */
    TG_ESHUTDOWN = -12, /* the gateway is draining */
    TG_ENOROUTE = -13,  /* no route for this model */
};

struct tg_error_info {
    const char *name;    /* "TG_ETOOLARGE" */
    int http_status;     /* 413 */
    int grpc_status;     /* RESOURCE_EXHAUSTED */
    const char *message; /* client-safe default text */
};

/* Never NULL; unknown codes map to TG_EINTERNAL's entry. */
const struct tg_error_info *tg_error_info(int err);

/* TF Serving's gRPC code -> HTTP status (spec/tfserving.md §3.11). */
int tg_grpc_to_http(int grpc_code);

/* The reason phrase for an HTTP status ("Payload Too Large"); "Unknown" if none. */
const char *tg_http_reason(int status);

#endif /* TG_ERROR_H */
