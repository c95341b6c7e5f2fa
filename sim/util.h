/*
 * util.h - tfs-sim's small helpers: aborting allocators, a growable string with a hard cap,
 * base64 and hex codecs, the monotonic clock.
 *
 * Thread affinity: every function is reentrant; a struct sim_str is owned by one thread.
 */
#ifndef SIM_UTIL_H
#define SIM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define SIM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocate or abort: tfs-sim bounds every size before allocating (see --max-tensor-bytes),
 * so an allocation failure is an environment problem, not an input problem. */
void *sim_xmalloc(size_t n);
void *sim_xcalloc(size_t n, size_t size);
void *sim_xrealloc(void *p, size_t n);
char *sim_xstrdup(const char *s);
char *sim_xstrndup(const char *s, size_t n);

/* A NUL-terminated growable string. Appends past |cap| bytes are dropped and set |truncated|,
 * so a message built from hostile input can never grow without bound. */
struct sim_str {
    char *p;       /* owned; NUL-terminated; NULL until the first append */
    size_t len;    /* bytes used, excluding the NUL */
    size_t alloc;  /* bytes allocated */
    size_t cap;    /* maximum len; 0 means 1 MiB */
    int truncated; /* 1 once an append was cut */
};
void sim_str_append(struct sim_str *s, const char *data, size_t len);
void sim_str_puts(struct sim_str *s, const char *cstr);
void sim_str_printf(struct sim_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the buffer (never NULL, "" when empty) and hands ownership to the caller. */
char *sim_str_steal(struct sim_str *s);
void sim_str_dispose(struct sim_str *s);

/* Standard base64 with padding. Returns a malloc'ed NUL-terminated string. */
char *sim_base64_encode(const uint8_t *data, size_t len);
/* Decodes standard base64 (padding optional). Returns 0 and a malloc'ed buffer in |*out|,
 * or -1 on invalid input. */
int sim_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len);
/* Decodes lower- or upper-case hex. Returns 0, or -1 on odd length or a non-hex digit. */
int sim_hex_decode(const char *s, uint8_t **out, size_t *out_len);

/* Returns 1 if |s| (|len| bytes) is valid UTF-8 as protobuf's C++ parser defines it. */
int sim_utf8_valid(const char *s, size_t len);

uint64_t sim_now_ns(void); /* CLOCK_MONOTONIC */

/* A pool frees many allocations at once: a response is built in one, packed, then the pool is
 * disposed. Zero-initialise it; it grows in malloc'ed blocks and is owned by one thread. */
struct sim_pool {
    struct sim_pool_block *head; /* owned */
};
void *sim_pool_alloc(struct sim_pool *pool, size_t n); /* zeroed, 16-byte aligned; aborts on OOM */
char *sim_pool_strndup(struct sim_pool *pool, const char *s, size_t n);
char *sim_pool_strdup(struct sim_pool *pool, const char *s);
#define SIM_POOL_NEW(pool, type) ((type *)sim_pool_alloc((pool), sizeof(type)))
void sim_pool_dispose(struct sim_pool *pool);

#endif /* SIM_UTIL_H */
