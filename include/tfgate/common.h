/*
 * common.h - the few things every module needs: attributes, container_of, array size, and the
 * allocators that abort (style: explicit limits protect the process; allocation failure is
 * an environment problem, so most error paths stay testable).
 */
#ifndef TG_COMMON_H
#define TG_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define TG_LIKELY(x)                       __builtin_expect(!!(x), 1)
#define TG_UNLIKELY(x)                     __builtin_expect(!!(x), 0)
#define TG_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define tg_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define TG_PRINTF(f, a)                    __attribute__((format(printf, f, a)))

/* Allocate or abort; never return NULL. Safe from any thread. */
void *tg_xmalloc(size_t n);
void *tg_xcalloc(size_t n, size_t size);
void *tg_xrealloc(void *p, size_t n);
char *tg_xstrdup(const char *s);
char *tg_xstrndup(const char *s, size_t n);

/* A whole file, NUL-terminated, its size in |*len|. NULL with errno set when it cannot be read,
 * or EFBIG when it is larger than |max| bytes (configuration and key files are small). */
char *tg_read_file(const char *path, size_t max, size_t *len);

/* A JSON parser's error text (jansson's json_error_t.text) without its "near '...'" part,
 * cut in place: that part quotes the input, which may be a secret (a key), and these messages
 * are logged. Returns |text|. */
char *tg_json_error_text(char *text);

/* A log file opened for appending (one write(2) per record lands whole with several writers),
 * or a duplicate of |std_fd| for "-". Returns the descriptor, or -1 with errno. */
int tg_log_file_open(const char *path, int std_fd);
/* Opens |path| again in place of |fd| (dup2: writers never see a closed or reused
 * descriptor): log rotation, or another path. Returns 0, or -1 with errno (|fd| unchanged). */
int tg_log_file_reopen(int fd, const char *path, int std_fd);

/* CLOCK_MONOTONIC in milliseconds, for threads without a loop clock. */
uint64_t tg_mono_ms(void);

/* 64 random bits for ids and choices that need uniqueness, not secrecy (request ids, trace
 * ids, canary draws): splitmix64 per thread, seeded from /dev/urandom. Any thread. */
uint64_t tg_random64(void);

/* FNV-1a over |n| bytes, then mixed (splitmix64's finalizer) so that every bit depends on the
 * input: for hash tables and consistent choices (rate-limit keys, sticky canaries). */
uint64_t tg_hash64(const void *data, size_t n);

#endif /* TG_COMMON_H */
