/*
 * jwt.h - JSON Web Token verification (RFC 7519; JWS compact form, RFC 7515) for HS256, RS256
 * and ES256, with keys from a JWK set (RFC 7517), on OpenSSL directly.
 *
 * Not libjwt, although it is in our stack: 1.10.2 lets the token's header pick the algorithm
 * (an HS256 token MACed with the RSA public key verifies), accepts every token when the key is
 * empty, checks no claim, and parses the PEM key on every call, ~0.5 ms
 * (docs/toolchain-notes.md §6). Here:
 *   - each key has one algorithm, fixed when the set is loaded (from the JWK's "alg", else its
 *     type: RSA -> RS256, EC P-256 -> ES256, oct -> HS256); a token whose "alg" differs from
 *     its key's is refused, so the header never chooses how a signature is checked;
 *   - "none" and every other algorithm are refused; empty or short keys cannot be loaded;
 *   - exp is required; nbf, iss and aud are checked with a clock skew;
 *   - keys are parsed once into EVP_PKEYs;
 *   - sizes are checked before anything is decoded, signatures before any claim is believed.
 *
 * Pure: no sockets, no clock (the caller passes |now|). A key set is immutable once built and
 * reference-counted (atomically), so one set can be shared by every worker and replaced by a
 * reload while verifications still use the old one. Verification is thread-safe.
 */
#ifndef TG_JWT_H
#define TG_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum tg_jwt_alg {
    TG_JWT_HS256 = 1,
    TG_JWT_RS256 = 2,
    TG_JWT_ES256 = 4,
};
#define TG_JWT_ALGS_ALL (TG_JWT_HS256 | TG_JWT_RS256 | TG_JWT_ES256)

/* Verification outcomes. The texts (tg_jwt_strerror) are fixed: safe to log and to send to the
 * client, they never contain the token. */
enum tg_jwt_status {
    TG_JWT_OK = 0,
    TG_JWT_ETOOLARGE,  /* longer than the policy's max_token_bytes */
    TG_JWT_EMALFORMED, /* not three base64url parts of JSON objects */
    TG_JWT_EALG,       /* "none", an unsupported algorithm, or not the key's algorithm */
    TG_JWT_EKID,       /* no key for the token's kid (or, without a kid, for its alg) */
    TG_JWT_ESIG,       /* the signature does not verify */
    TG_JWT_ENOEXP,     /* no numeric exp claim */
    TG_JWT_EEXPIRED,   /* exp + skew is past */
    TG_JWT_ENBF,       /* nbf - skew is in the future */
    TG_JWT_EISS,       /* iss is not the provider's issuer */
    TG_JWT_EAUD,       /* aud holds none of the provider's audiences */
};

const char *tg_jwt_strerror(enum tg_jwt_status s);

/* The algorithm's bit for "HS256", "RS256", "ES256"; 0 for anything else. */
uint32_t tg_jwt_alg_from_name(const char *name);

struct tg_jwt_keyset;

/* Builds a key set from JWK JSON: {"keys": [...]} or one JWK object. Keys of an unknown type,
 * with "use" other than "sig", or whose algorithm is not in |algs| are skipped (RFC 7517 §5);
 * a key that claims a supported type but is broken (bad base64url, RSA under 2048 bits, an EC
 * point not on P-256, an oct key under 32 bytes) is an error, as is a set with no usable key.
 * At most 256 keys. Returns 0 with the set (refcount 1), or -1 with |err| filled. */
int tg_jwt_keyset_parse(const char *json, size_t len, uint32_t algs, struct tg_jwt_keyset **out,
                        char *err, size_t errlen);
size_t tg_jwt_keyset_size(const struct tg_jwt_keyset *ks);
void tg_jwt_keyset_ref(struct tg_jwt_keyset *ks);
void tg_jwt_keyset_unref(struct tg_jwt_keyset *ks);

struct tg_jwt_policy {
    const char *issuer;           /* iss must equal this; NULL: not checked */
    const char *const *audiences; /* aud must hold one of these; none: not checked */
    size_t n_audiences;
    int64_t skew_s;         /* allowance on exp and nbf */
    size_t max_token_bytes; /* checked first; 0 = 8192 */
};

/* The parts of a token, for choosing its provider and key before verification. Nothing here
 * is trusted until tg_jwt_verify succeeds. */
struct tg_jwt_token {
    json_t *header;            /* owned */
    json_t *claims;            /* owned */
    const char *signing_input; /* "header.payload" (points into the caller's token) */
    size_t signing_input_len;
    uint8_t *sig; /* decoded signature, owned */
    size_t sig_len;
};

/* Splits and decodes |token| (|len| bytes, no "Bearer "). Returns TG_JWT_OK, TG_JWT_ETOOLARGE
 * or TG_JWT_EMALFORMED. On success |t| must be released with tg_jwt_token_clear. */
enum tg_jwt_status tg_jwt_decode(const char *token, size_t len, size_t max_token_bytes,
                                 struct tg_jwt_token *t);
void tg_jwt_token_clear(struct tg_jwt_token *t);

/* The unverified issuer (iss) of a decoded token, or NULL. */
const char *tg_jwt_issuer(const struct tg_jwt_token *t);

/* Checks a decoded token's signature against |ks|, then its claims against |p| at time |now|
 * (seconds since the epoch). Returns TG_JWT_OK with |*exp| set to the token's exp. */
enum tg_jwt_status tg_jwt_verify(const struct tg_jwt_keyset *ks, const struct tg_jwt_policy *p,
                                 const struct tg_jwt_token *t, int64_t now, int64_t *exp);

#endif /* TG_JWT_H */
