/*
 * log.c - see log.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/support/log.h>

#include "tfgate/log.h"

atomic_int tg_log_level = TG_LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug"};

int tg_log_level_from_name(const char *name)
{
    for (size_t i = 0; i < TG_ARRAY_SIZE(names); i++) {
        if (strcmp(names[i], name) == 0)
            return (int)i;
    }
    return -1;
}

void tg_log_time(char *out)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, TG_LOG_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, TG_LOG_TIME_LEN + 1 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void tg_log__emit(int level, const char *mod, const char *fmt, ...)
{
    char line[2048], when[TG_LOG_TIME_LEN + 1];
    size_t n;
    va_list ap;

    tg_log_time(when);
    n = (size_t)snprintf(line, sizeof(line), "ts=%s lvl=%s mod=%s msg=\"", when,
                         names[level < 0 || level > 3 ? 0 : level], mod);
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 2, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n = n + (size_t)m < sizeof(line) - 2 ? n + (size_t)m : sizeof(line) - 3;
    /* the message is quoted: neutralise quotes and newlines so a line stays one line */
    for (char *p = strstr(line, "msg=\"") + 5; p < line + n; p++) {
        if (*p == '"')
            *p = '\'';
        else if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    line[n++] = '"';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

static void grpc_log(gpr_log_func_args *args)
{
    int level = args->severity == GPR_LOG_SEVERITY_ERROR  ? TG_LOG_ERROR
                : args->severity == GPR_LOG_SEVERITY_INFO ? TG_LOG_INFO
                                                          : TG_LOG_DEBUG;
    /* gRPC core is chatty at INFO; keep its INFO at our DEBUG */
    if (level == TG_LOG_INFO)
        level = TG_LOG_DEBUG;
    tg_log(level, "grpc", "%s (%s:%d)", args->message, args->file, args->line);
}

void tg_log_capture_grpc(void)
{
    gpr_set_log_function(grpc_log);
    tg_log_set_level(atomic_load(&tg_log_level));
}

void tg_log_set_level(int level)
{
    atomic_store(&tg_log_level, level);
    /* below our level gRPC's lines would be formatted only to be dropped */
    gpr_set_log_verbosity(level >= TG_LOG_DEBUG ? GPR_LOG_SEVERITY_DEBUG : GPR_LOG_SEVERITY_ERROR);
}
