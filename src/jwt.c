/*
 * jwt.c - see jwt.h. Section numbers: RFC 7515 (JWS), 7517 (JWK), 7518 (JWA), 7519 (JWT).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include "tfgate/base64.h"
#include "tfgate/common.h"
#include "tfgate/jwt.h"

#define MAX_KEYS          256
#define DEFAULT_MAX_TOKEN 8192
#define MIN_RSA_BITS      2048 /* JWA §3.3 */
#define MIN_HMAC_BYTES    32   /* JWA §3.2: at least the hash's size */

struct tg_jwt_key {
    char *kid; /* NULL when the JWK has none */
    uint32_t alg;
    EVP_PKEY *pkey;  /* RS256, ES256 */
    uint8_t *secret; /* HS256 */
    size_t secret_len;
};

struct tg_jwt_keyset {
    atomic_int refs;
    size_t n;
    struct tg_jwt_key keys[];
};

const char *tg_jwt_strerror(enum tg_jwt_status s)
{
    switch (s) {
    case TG_JWT_OK:
        return "valid";
    case TG_JWT_ETOOLARGE:
        return "token too large";
    case TG_JWT_EMALFORMED:
        return "malformed token";
    case TG_JWT_EALG:
        return "algorithm not accepted";
    case TG_JWT_EKID:
        return "unknown signing key";
    case TG_JWT_ESIG:
        return "invalid signature";
    case TG_JWT_ENOEXP:
        return "token has no expiry";
    case TG_JWT_EEXPIRED:
        return "token expired";
    case TG_JWT_ENBF:
        return "token not yet valid";
    case TG_JWT_EISS:
        return "wrong issuer";
    case TG_JWT_EAUD:
        return "wrong audience";
    }
    return "invalid token";
}

uint32_t tg_jwt_alg_from_name(const char *name)
{
    if (name == NULL)
        return 0;
    if (strcmp(name, "HS256") == 0)
        return TG_JWT_HS256;
    if (strcmp(name, "RS256") == 0)
        return TG_JWT_RS256;
    if (strcmp(name, "ES256") == 0)
        return TG_JWT_ES256;
    return 0; /* "none", "None", HS384, PS256, ...: never */
}

/* base64url without padding (JWS §2); malloc'ed bytes, or NULL. */
static uint8_t *b64url(const char *s, size_t len, size_t *out_len)
{
    if (memchr(s, '=', len) != NULL)
        return NULL;
    uint8_t *out = tg_xmalloc(len / 4 * 3 + 3);
    if (tg_base64_decode(s, len, out, out_len, 1) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- key sets ---- */

TG_PRINTF(3, 4)
static int kfail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A base64url member of a JWK as bytes. */
static uint8_t *jwk_bytes(json_t *jwk, const char *name, size_t *len)
{
    json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v))
        return NULL;
    return b64url(json_string_value(v), json_string_length(v), len);
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pk = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

static int rsa_key(json_t *jwk, EVP_PKEY **out, char *err, size_t errlen)
{
    size_t nl = 0, el = 0;
    uint8_t *n = jwk_bytes(jwk, "n", &nl), *e = jwk_bytes(jwk, "e", &el);
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    int rv = -1;

    if (n == NULL || e == NULL || nl == 0 || el == 0) {
        kfail(err, errlen, "RSA key needs base64url 'n' and 'e'");
        goto out;
    }
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (bn == NULL || be == NULL || bld == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
        (*out = pkey_from_params("RSA", bld)) == NULL) {
        kfail(err, errlen, "RSA key does not load");
        goto out;
    }
    if (EVP_PKEY_get_bits(*out) < MIN_RSA_BITS) {
        kfail(err, errlen, "RSA key has %d bits; at least %d are required", EVP_PKEY_get_bits(*out),
              MIN_RSA_BITS);
        EVP_PKEY_free(*out);
        *out = NULL;
        goto out;
    }
    rv = 0;
out:
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_BLD_free(bld);
    free(n);
    free(e);
    return rv;
}

static int ec_key(json_t *jwk, EVP_PKEY **out, char *err, size_t errlen)
{
    size_t xl = 0, yl = 0;
    uint8_t *x = jwk_bytes(jwk, "x", &xl), *y = jwk_bytes(jwk, "y", &yl), point[65];
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY_CTX *check = NULL;
    int rv = -1;

    if (!json_is_string(json_object_get(jwk, "crv")) ||
        strcmp(json_string_value(json_object_get(jwk, "crv")), "P-256") != 0) {
        kfail(err, errlen, "EC key: only crv P-256 (ES256) is supported");
        goto out;
    }
    if (x == NULL || y == NULL || xl != 32 || yl != 32) { /* JWA §6.2.1.2: full length */
        kfail(err, errlen, "EC key needs base64url 'x' and 'y' of 32 bytes");
        goto out;
    }
    point[0] = 0x04; /* uncompressed */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) ||
        (*out = pkey_from_params("EC", bld)) == NULL) {
        kfail(err, errlen, "EC key: the point is not on P-256");
        goto out;
    }
    check = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        kfail(err, errlen, "EC key: the point is not on P-256");
        EVP_PKEY_free(*out);
        *out = NULL;
        goto out;
    }
    rv = 0;
out:
    EVP_PKEY_CTX_free(check);
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return rv;
}

static void key_clear(struct tg_jwt_key *k)
{
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    if (k->secret != NULL)
        OPENSSL_clear_free(k->secret, k->secret_len);
    memset(k, 0, sizeof(*k));
}

/* One JWK. Returns 1 with |k| filled, 0 when it is skipped, -1 on error. */
static int parse_jwk(json_t *jwk, uint32_t algs, struct tg_jwt_key *k, char *err, size_t errlen)
{
    json_t *kty = json_object_get(jwk, "kty"), *use = json_object_get(jwk, "use");
    json_t *alg = json_object_get(jwk, "alg"), *kid = json_object_get(jwk, "kid");
    uint32_t type_alg;

    if (!json_is_object(jwk))
        return kfail(err, errlen, "a key must be a JSON object");
    if (!json_is_string(kty))
        return kfail(err, errlen, "a key needs 'kty'");
    if (use != NULL && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
        return 0; /* an encryption key */
    if (strcmp(json_string_value(kty), "RSA") == 0)
        type_alg = TG_JWT_RS256;
    else if (strcmp(json_string_value(kty), "EC") == 0)
        type_alg = TG_JWT_ES256;
    else if (strcmp(json_string_value(kty), "oct") == 0)
        type_alg = TG_JWT_HS256;
    else
        return 0; /* OKP and others: not ours */
    if (alg != NULL &&
        (!json_is_string(alg) || tg_jwt_alg_from_name(json_string_value(alg)) != type_alg))
        return 0; /* RS512, PS256, ES384, ...: algorithms we do not verify */
    if (!(algs & type_alg))
        return 0;
    if (kid != NULL && !json_is_string(kid))
        return kfail(err, errlen, "'kid' must be a string");

    memset(k, 0, sizeof(*k));
    k->alg = type_alg;
    if (type_alg == TG_JWT_RS256) {
        if (rsa_key(jwk, &k->pkey, err, errlen) != 0)
            return -1;
    } else if (type_alg == TG_JWT_ES256) {
        if (ec_key(jwk, &k->pkey, err, errlen) != 0)
            return -1;
    } else {
        k->secret = jwk_bytes(jwk, "k", &k->secret_len);
        if (k->secret == NULL || k->secret_len < MIN_HMAC_BYTES) {
            key_clear(k);
            return kfail(err, errlen, "oct key needs base64url 'k' of at least %d bytes",
                         MIN_HMAC_BYTES);
        }
    }
    k->kid = kid ? tg_xstrdup(json_string_value(kid)) : NULL;
    return 1;
}

int tg_jwt_keyset_parse(const char *json, size_t len, uint32_t algs, struct tg_jwt_keyset **out,
                        char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr), *keys;
    struct tg_jwt_keyset *ks = NULL;
    size_t i;
    char kerr[200];

    if (root == NULL)
        return kfail(err, errlen, "not JSON (line %d: %s)", jerr.line,
                     tg_json_error_text(jerr.text));
    if (json_is_object(root) && (keys = json_object_get(root, "keys")) != NULL) {
        if (!json_is_array(keys)) {
            kfail(err, errlen, "'keys' must be a list");
            goto fail;
        }
        json_incref(keys);
    } else {
        keys = json_array(); /* a single JWK */
        json_array_append(keys, root);
    }
    if (json_array_size(keys) > MAX_KEYS) {
        json_decref(keys);
        kfail(err, errlen, "more than %d keys", MAX_KEYS);
        goto fail;
    }
    ks = tg_xcalloc(1, sizeof(*ks) + json_array_size(keys) * sizeof(struct tg_jwt_key));
    atomic_init(&ks->refs, 1);
    for (i = 0; i < json_array_size(keys); i++) {
        int r = parse_jwk(json_array_get(keys, i), algs, &ks->keys[ks->n], kerr, sizeof(kerr));
        if (r < 0) {
            json_decref(keys);
            kfail(err, errlen, "key %zu: %s", i, kerr);
            goto fail;
        }
        ks->n += (size_t)r;
    }
    json_decref(keys);
    if (ks->n == 0) {
        kfail(err, errlen, "no usable key (RS256, ES256 or HS256, allowed by the provider)");
        goto fail;
    }
    json_decref(root);
    *out = ks;
    return 0;
fail:
    json_decref(root);
    if (ks != NULL)
        tg_jwt_keyset_unref(ks);
    return -1;
}

size_t tg_jwt_keyset_size(const struct tg_jwt_keyset *ks)
{
    return ks->n;
}

void tg_jwt_keyset_ref(struct tg_jwt_keyset *ks)
{
    atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
}

void tg_jwt_keyset_unref(struct tg_jwt_keyset *ks)
{
    if (ks == NULL || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ks->n; i++)
        key_clear(&ks->keys[i]);
    free(ks);
}

/* ---- tokens ---- */

static json_t *json_part(const char *s, size_t len)
{
    size_t n;
    uint8_t *raw = b64url(s, len, &n);
    if (raw == NULL)
        return NULL;
    json_t *v = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (v != NULL && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

enum tg_jwt_status tg_jwt_decode(const char *token, size_t len, size_t max_token_bytes,
                                 struct tg_jwt_token *t)
{
    memset(t, 0, sizeof(*t));
    if (len > (max_token_bytes ? max_token_bytes : DEFAULT_MAX_TOKEN))
        return TG_JWT_ETOOLARGE;
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL || d1 == token ||
        d2 == d1 + 1)
        return TG_JWT_EMALFORMED; /* three parts (a JWE has five) */
    t->header = json_part(token, (size_t)(d1 - token));
    t->claims = json_part(d1 + 1, (size_t)(d2 - d1 - 1));
    t->sig = b64url(d2 + 1, len - (size_t)(d2 + 1 - token), &t->sig_len);
    t->signing_input = token;
    t->signing_input_len = (size_t)(d2 - token);
    if (t->header == NULL || t->claims == NULL || t->sig == NULL) {
        tg_jwt_token_clear(t);
        return TG_JWT_EMALFORMED;
    }
    return TG_JWT_OK;
}

void tg_jwt_token_clear(struct tg_jwt_token *t)
{
    json_decref(t->header);
    json_decref(t->claims);
    free(t->sig);
    memset(t, 0, sizeof(*t));
}

const char *tg_jwt_issuer(const struct tg_jwt_token *t)
{
    json_t *iss = json_object_get(t->claims, "iss");
    return json_is_string(iss) ? json_string_value(iss) : NULL;
}

static int verify_hs256(const struct tg_jwt_key *k, const struct tg_jwt_token *t)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (t->sig_len != 32 ||
        HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const uint8_t *)t->signing_input,
             t->signing_input_len, mac, &mac_len) == NULL ||
        mac_len != 32)
        return 0;
    return CRYPTO_memcmp(mac, t->sig, 32) == 0;
}

static int verify_pkey(EVP_PKEY *pk, const uint8_t *sig, size_t sig_len,
                       const struct tg_jwt_token *t)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)t->signing_input,
                              t->signing_input_len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* JWS carries ECDSA as r || s (JWA §3.4); OpenSSL wants DER. */
static int verify_es256(const struct tg_jwt_key *k, const struct tg_jwt_token *t)
{
    if (t->sig_len != 64)
        return 0;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(t->sig, 32, NULL), *s = BN_bin2bn(t->sig + 32, 32, NULL);
    uint8_t *der = NULL;
    int der_len = -1, ok = 0;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        der_len = i2d_ECDSA_SIG(es, &der);
    }
    if (der_len > 0)
        ok = verify_pkey(k->pkey, der, (size_t)der_len, t);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return ok;
}

static int verify_with(const struct tg_jwt_key *k, const struct tg_jwt_token *t)
{
    switch (k->alg) {
    case TG_JWT_HS256:
        return verify_hs256(k, t);
    case TG_JWT_RS256:
        return verify_pkey(k->pkey, t->sig, t->sig_len, t);
    case TG_JWT_ES256:
        return verify_es256(k, t);
    }
    return 0;
}

static int has_audience(const struct tg_jwt_policy *p, json_t *aud)
{
    for (size_t i = 0; i < p->n_audiences; i++) {
        if (json_is_string(aud) && strcmp(json_string_value(aud), p->audiences[i]) == 0)
            return 1;
        if (json_is_array(aud)) {
            size_t j;
            json_t *a;
            json_array_foreach(aud, j, a)
            {
                if (json_is_string(a) && strcmp(json_string_value(a), p->audiences[i]) == 0)
                    return 1;
            }
        }
    }
    return 0;
}

enum tg_jwt_status tg_jwt_verify(const struct tg_jwt_keyset *ks, const struct tg_jwt_policy *p,
                                 const struct tg_jwt_token *t, int64_t now, int64_t *exp)
{
    json_t *alg_v = json_object_get(t->header, "alg"), *kid_v = json_object_get(t->header, "kid");
    uint32_t alg = json_is_string(alg_v) ? tg_jwt_alg_from_name(json_string_value(alg_v)) : 0;
    const char *kid = json_is_string(kid_v) ? json_string_value(kid_v) : NULL;
    int kid_known = 0, verified = 0;

    if (alg == 0)
        return TG_JWT_EALG;
    if (kid_v != NULL && kid == NULL)
        return TG_JWT_EMALFORMED;
    if (json_object_get(t->header, "crit") != NULL)
        return TG_JWT_EMALFORMED; /* JWS §4.1.11: we understand no extension */

    /* the key decides the algorithm: a token whose alg is not its key's never verifies */
    for (size_t i = 0; i < ks->n && !verified; i++) {
        const struct tg_jwt_key *k = &ks->keys[i];
        if (kid != NULL && (k->kid == NULL || strcmp(k->kid, kid) != 0))
            continue;
        kid_known = 1;
        if (k->alg != alg)
            continue;
        verified = verify_with(k, t);
    }
    if (!verified) {
        if (kid != NULL && !kid_known)
            return TG_JWT_EKID;
        if (kid != NULL) {
            /* the kid exists: was the algorithm its key's? */
            for (size_t i = 0; i < ks->n; i++) {
                if (ks->keys[i].kid && strcmp(ks->keys[i].kid, kid) == 0 && ks->keys[i].alg == alg)
                    return TG_JWT_ESIG;
            }
            return TG_JWT_EALG;
        }
        for (size_t i = 0; i < ks->n; i++) {
            if (ks->keys[i].alg == alg)
                return TG_JWT_ESIG;
        }
        return TG_JWT_EALG; /* no key of that algorithm: HS256 against RSA keys lands here */
    }

    /* claims, now that they are signed (RFC 7519 §4.1) */
    json_t *e = json_object_get(t->claims, "exp"), *nbf = json_object_get(t->claims, "nbf");
    if (!json_is_number(e))
        return TG_JWT_ENOEXP;
    double ev = json_number_value(e);
    if ((double)now > ev + (double)p->skew_s)
        return TG_JWT_EEXPIRED;
    if (nbf != NULL &&
        (!json_is_number(nbf) || (double)now + (double)p->skew_s < json_number_value(nbf)))
        return TG_JWT_ENBF;
    if (p->issuer != NULL) {
        const char *iss = tg_jwt_issuer(t);
        if (iss == NULL || strcmp(iss, p->issuer) != 0)
            return TG_JWT_EISS;
    }
    if (p->n_audiences > 0 && !has_audience(p, json_object_get(t->claims, "aud")))
        return TG_JWT_EAUD;
    *exp = ev > 9.2e18 ? INT64_MAX : (int64_t)ev;
    return TG_JWT_OK;
}
