/*
 * base64.c - see base64.h.
 */
#include "tfgate/base64.h"

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t tg_base64_encode(const uint8_t *in, size_t len, char *out, int pad)
{
    size_t o = 0, i;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = std_alpha[v >> 18];
        out[o++] = std_alpha[(v >> 12) & 63];
        out[o++] = std_alpha[(v >> 6) & 63];
        out[o++] = std_alpha[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = std_alpha[v >> 18];
        out[o++] = std_alpha[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = std_alpha[(v >> 6) & 63];
        else if (pad)
            out[o++] = '=';
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int value_of(char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int tg_base64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len, int url)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0, pads = 0;

    while (len > 0 && in[len - 1] == '=' && pads < 2) {
        len--;
        pads++;
    }
    if (len % 4 == 1 || (pads > 0 && (len + pads) % 4 != 0))
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = value_of(in[i], url);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return 0;
}
