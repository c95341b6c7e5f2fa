/*
 * compress.h - HTTP response compression: which coding a client accepts, and gzip into an arena.
 * Pure functions (no sockets, no loop); any thread. Inflating request bodies and gRPC messages
 * is tg_inflate (grpc_wire.h).
 */
#ifndef TG_COMPRESS_H
#define TG_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

struct tg_arena;

/* Responses shorter than this are sent as they are: gzip's 18-byte frame and the CPU are not
 * worth it (nginx's gzip_min_length and Envoy's min_content_length make the same call). */
#define TG_GZIP_MIN_BYTES 256

/* Whether an Accept-Encoding value (RFC 9110 §12.5.3) allows gzip: "gzip" or "x-gzip" with a
 * q-value above 0, or "*" with q above 0 when gzip is not listed. NULL is "no". */
int tg_accepts_gzip(const char *accept_encoding);

/* gzip-compresses |in| at |level| (1-9) into |arena|. Returns 0, or -1 (zlib failed). */
int tg_gzip(struct tg_arena *arena, const uint8_t *in, size_t len, int level, uint8_t **out,
            size_t *out_len);

#endif /* TG_COMPRESS_H */
