/*
 * accesslog.h - one JSON line per request: time, request id, trace id, client address,
 * protocol, HTTP method, path (without its query string) or gRPC method, model, version,
 * pool, replica, HTTP status, gRPC status, bytes in and out, latency split into gateway and
 * upstream time, subject. Never bodies, tokens or Authorization headers.
 *
 * The file (or stdout, "-") is opened by main before the workers start and reopened in place
 * (dup2) on SIGHUP, for log rotation or a new path from the reloaded configuration; each line is
 * one write(2) in append mode, so lines from several workers do not interleave. Threading:
 * tg_access_log from any worker.
 */
#ifndef TG_ACCESSLOG_H
#define TG_ACCESSLOG_H

struct tg_stream;

/* Opens |path| ("-" = stdout). Returns 0, or -1 with errno. Main thread, before workers. */
int tg_access_log_open(const char *path);
/* Reopens the same path in place (SIGHUP). Returns 0 or -1. */
int tg_access_log_reopen(void);
/* SIGHUP with the reloaded configuration's |path| (NULL: no access log from now on): the same
 * path is reopened (rotation; a failure is logged and the old file kept), another one replaces
 * the current file in place. Returns 0, or -1 with errno when a new path cannot be opened
 * (nothing changed). Main thread. */
int tg_access_log_switch(const char *path);
void tg_access_log_close(void);

/* Writes the stream's line; no-op without an access log. */
void tg_access_log(struct tg_stream *st);

#endif /* TG_ACCESSLOG_H */
