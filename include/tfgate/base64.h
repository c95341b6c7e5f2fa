/*
 * base64.h - base64 (RFC 4648) in the standard and URL-safe alphabets: gRPC "-bin" metadata,
 * HTTP2-Settings, and the REST API's {"b64": ...} values. Pure functions, any thread.
 */
#ifndef TG_BASE64_H
#define TG_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes tg_base64_encode writes for |len| input bytes (without the NUL). */
static inline size_t tg_base64_encoded_len(size_t len, int pad)
{
    return pad ? (len + 2) / 3 * 4 : len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

/* Encodes with the standard alphabet, with '=' padding when |pad|; |out| holds
 * tg_base64_encoded_len(len, pad) + 1 bytes. Returns the length written (NUL-terminated). */
size_t tg_base64_encode(const uint8_t *in, size_t len, char *out, int pad);

/* Decodes the standard alphabet, or the URL-safe one ('-', '_') when |url|. Padding is
 * optional; whitespace is not allowed. |out| holds len / 4 * 3 + 3 bytes. Returns 0 with the
 * length in |*out_len|, or -1 on a character outside the alphabet or an impossible length. */
int tg_base64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len, int url);

#endif /* TG_BASE64_H */
