/*
 * log.h - the gateway's own log: one logfmt line per event on stderr (ts, lvl, mod, msg and
 * key=value pairs), written with a single write(2) so lines from several threads never
 * interleave. The level is checked before the arguments are evaluated.
 *
 * Never log a token, an Authorization header or a request body.
 * Thread affinity: any thread.
 */
#ifndef TG_LOG_H
#define TG_LOG_H

#include <stdatomic.h>

#include "tfgate/common.h"

enum tg_log_level {
    TG_LOG_ERROR = 0,
    TG_LOG_WARN,
    TG_LOG_INFO,
    TG_LOG_DEBUG,
};

/* enum tg_log_level; default TG_LOG_INFO; a reload may change it while workers log */
extern atomic_int tg_log_level;

#define tg_log(level, mod, ...)                                                                    \
    do {                                                                                           \
        if ((int)(level) <= atomic_load_explicit(&tg_log_level, memory_order_relaxed))             \
            tg_log__emit((level), (mod), __VA_ARGS__);                                             \
    } while (0)

/* "error", "warn", "info", "debug" -> level; -1 when unknown. */
int tg_log_level_from_name(const char *name);
void tg_log__emit(int level, const char *mod, const char *fmt, ...) TG_PRINTF(3, 4);
/* The wall-clock time as "2026-11-21T23:01:02.345Z" (UTC, milliseconds), the form of every
 * timestamp tfgate writes (log, access log, audit log). |out| holds TG_LOG_TIME_LEN + 1. */
#define TG_LOG_TIME_LEN 24
void tg_log_time(char *out);

/* Routes gRPC core's own log lines through tg_log (call once, before grpc_init). */
void tg_log_capture_grpc(void);
/* Sets the level, gRPC core's verbosity with it (start-up and reload; any thread). */
void tg_log_set_level(int level);

#endif /* TG_LOG_H */
