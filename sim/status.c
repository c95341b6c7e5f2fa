/*
 * status.c - see status.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "util.h"

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

void sim_status_set(struct sim_status *st, grpc_status_code code, const char *fmt, ...)
{
    struct sim_str s = {.cap = 65536};
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(buf)) {
        sim_str_append(&s, buf, (size_t)n);
    } else if (n >= 0) {
        char *heap = sim_xmalloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(heap, (size_t)n + 1, fmt, ap);
        va_end(ap);
        sim_str_append(&s, heap, (size_t)n);
        free(heap);
    }
    free(st->message);
    st->code = code;
    st->message = sim_str_steal(&s);
}

void sim_status_dispose(struct sim_status *st)
{
    free(st->message);
    st->message = NULL;
    st->code = GRPC_STATUS_OK;
}

int sim_code_from_name(const char *name)
{
    char *end;
    long v;

    for (size_t i = 0; i < SIM_ARRAY_SIZE(code_names); i++) {
        if (strcmp(code_names[i], name) == 0)
            return (int)i;
    }
    v = strtol(name, &end, 10);
    if (*name != '\0' && *end == '\0' && v >= 0 && v < (long)SIM_ARRAY_SIZE(code_names))
        return (int)v;
    return -1;
}

const char *sim_code_name(int code)
{
    if (code < 0 || code >= (int)SIM_ARRAY_SIZE(code_names))
        return "UNKNOWN";
    return code_names[code];
}
