/*
 * test_jwt.c - jwt.h on its own: key-set loading rules, token decoding limits, the claim checks
 * at their exact boundaries (clock skew), and key selection by kid and algorithm. Tokens are
 * HS256, MACed here with OpenSSL; RS256/ES256 and tokens minted by PyJWT are covered by
 * tests/integration/test_auth.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tfgate/base64.h"
#include "tfgate/jwt.h"

/* base64url("0123456789abcdef0123456789abcdef") and a second 32-byte secret */
#define K1 "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"
#define K2 "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"
static const char secret1[] = "0123456789abcdef0123456789abcdef";

static const int64_t NOW = 1800000000;

static size_t b64u(const void *in, size_t len, char *out)
{
    size_t n = tg_base64_encode(in, len, out, 0);
    for (size_t i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return n;
}

/* An HS256 token for |header| and |claims| (JSON texts), MACed with |secret|. */
static char *mint(const char *header, const char *claims, const char *secret)
{
    char *t = malloc(4096);
    size_t n = b64u(header, strlen(header), t);
    t[n++] = '.';
    n += b64u(claims, strlen(claims), t + n);
    uint8_t mac[32];
    unsigned ml;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)t, n, mac, &ml);
    t[n++] = '.';
    n += b64u(mac, 32, t + n);
    t[n] = '\0';
    return t;
}

static struct tg_jwt_keyset *keys(const char *json)
{
    struct tg_jwt_keyset *ks = NULL;
    char err[256];
    if (tg_jwt_keyset_parse(json, strlen(json), TG_JWT_ALGS_ALL, &ks, err, sizeof(err)) != 0)
        fail_msg("keys: %s", err);
    return ks;
}

static enum tg_jwt_status check(const struct tg_jwt_keyset *ks, const char *header,
                                const char *claims, const char *secret)
{
    static const char *const auds[] = {"api", "tfgate"};
    struct tg_jwt_policy p = {"iss1", auds, 2, 60, 0};
    struct tg_jwt_token t;
    int64_t exp;
    char *tok = mint(header, claims, secret);
    enum tg_jwt_status s = tg_jwt_decode(tok, strlen(tok), 0, &t);
    if (s == TG_JWT_OK) {
        s = tg_jwt_verify(ks, &p, &t, NOW, &exp);
        tg_jwt_token_clear(&t);
    }
    free(tok);
    return s;
}

#define HDR "{\"alg\":\"HS256\",\"kid\":\"a\"}"

static void claims_at_their_boundaries(void **state)
{
    (void)state;
    struct tg_jwt_keyset *ks =
        keys("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" K1 "\"}]}");
    /* exp: valid up to exp + 60 s of skew, inclusive */
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":\"api\",\"exp\":1799999940}", secret1),
        TG_JWT_OK);
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":\"api\",\"exp\":1799999939}", secret1),
        TG_JWT_EEXPIRED);
    /* nbf: valid from nbf - 60 s */
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":\"api\",\"exp\":1800000100,\"nbf\":1800000060}",
              secret1),
        TG_JWT_OK);
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":\"api\",\"exp\":1800000100,\"nbf\":1800000061}",
              secret1),
        TG_JWT_ENBF);
    assert_int_equal(check(ks, HDR,
                           "{\"iss\":\"iss1\",\"aud\":\"api\",\"exp\":1800000100,\"nbf\":\"now\"}",
                           secret1),
                     TG_JWT_ENBF);
    /* exp must be a number; iss exact; aud a string or a list holding one of ours */
    assert_int_equal(check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":\"api\"}", secret1), TG_JWT_ENOEXP);
    assert_int_equal(check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":\"api\",\"exp\":\"2100\"}", secret1),
                     TG_JWT_ENOEXP);
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss2\",\"aud\":\"api\",\"exp\":1800000100}", secret1),
        TG_JWT_EISS);
    assert_int_equal(check(ks, HDR, "{\"aud\":\"api\",\"exp\":1800000100}", secret1), TG_JWT_EISS);
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":\"apix\",\"exp\":1800000100}", secret1),
        TG_JWT_EAUD);
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":[\"x\",\"tfgate\"],\"exp\":1800000100}", secret1),
        TG_JWT_OK);
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss1\",\"aud\":[1,\"x\"],\"exp\":1800000100}", secret1),
        TG_JWT_EAUD);
    assert_int_equal(check(ks, HDR, "{\"iss\":\"iss1\",\"exp\":1800000100}", secret1), TG_JWT_EAUD);
    /* the signature is checked before any claim is believed */
    assert_int_equal(
        check(ks, HDR, "{\"iss\":\"iss2\",\"exp\":1}", "another secret of 32 bytes...."),
        TG_JWT_ESIG);
    tg_jwt_keyset_unref(ks);
}

static void keys_decide_the_algorithm(void **state)
{
    (void)state;
    struct tg_jwt_keyset *ks = keys("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"" K1
                                    "\"},{\"kty\":\"oct\",\"kid\":\"b\",\"k\":\"" K2 "\"}]}");
    const char *ok = "{\"iss\":\"iss1\",\"aud\":\"api\",\"exp\":1800000100}";
    assert_int_equal(tg_jwt_keyset_size(ks), 2);
    assert_int_equal(check(ks, HDR, ok, secret1), TG_JWT_OK);
    /* without a kid every key of the algorithm is tried */
    assert_int_equal(check(ks, "{\"alg\":\"HS256\"}", ok, secret1), TG_JWT_OK);
    /* the kid names the key: the right MAC under another kid does not verify */
    assert_int_equal(check(ks, "{\"alg\":\"HS256\",\"kid\":\"b\"}", ok, secret1), TG_JWT_ESIG);
    assert_int_equal(check(ks, "{\"alg\":\"HS256\",\"kid\":\"zz\"}", ok, secret1), TG_JWT_EKID);
    assert_int_equal(check(ks, "{\"alg\":\"HS256\",\"kid\":7}", ok, secret1), TG_JWT_EMALFORMED);
    /* the header names an algorithm the key does not have, or none, or one we never take */
    assert_int_equal(check(ks, "{\"alg\":\"RS256\",\"kid\":\"a\"}", ok, secret1), TG_JWT_EALG);
    assert_int_equal(check(ks, "{\"alg\":\"none\",\"kid\":\"a\"}", ok, secret1), TG_JWT_EALG);
    assert_int_equal(check(ks, "{\"alg\":\"HS512\"}", ok, secret1), TG_JWT_EALG);
    assert_int_equal(check(ks, "{\"kid\":\"a\"}", ok, secret1), TG_JWT_EALG);
    assert_int_equal(check(ks, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", ok, secret1),
                     TG_JWT_EMALFORMED);
    /* duplicate members are refused, not resolved one way or the other */
    assert_int_equal(check(ks, "{\"alg\":\"HS256\",\"alg\":\"none\"}", ok, secret1),
                     TG_JWT_EMALFORMED);
    tg_jwt_keyset_unref(ks);
}

static void decoding_limits(void **state)
{
    (void)state;
    struct tg_jwt_token t;
    static const char *const bad[] = {
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "..",
        "a..c",
        ".b.c",
        "e30=.e30.AA",
        "e30.e30.A*",
        "W10.e30.AA",    /* header [] */
        "e30.bnVsbA.AA", /* payload null */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tg_jwt_decode(bad[i], strlen(bad[i]), 0, &t) != TG_JWT_EMALFORMED)
            fail_msg("decoded: %s", bad[i]);
    }
    assert_int_equal(tg_jwt_decode("e30.e30.AA", 10, 0, &t), TG_JWT_OK);
    tg_jwt_token_clear(&t);
    /* an empty signature decodes ("alg":"none" tokens have one); no key verifies it */
    assert_int_equal(tg_jwt_decode("e30.e30.", 8, 0, &t), TG_JWT_OK);
    assert_int_equal(t.sig_len, 0);
    tg_jwt_token_clear(&t);
    char *big = malloc(9000);
    memset(big, 'a', 8999);
    big[8999] = '\0';
    assert_int_equal(tg_jwt_decode(big, 8193, 0, &t), TG_JWT_ETOOLARGE);
    assert_int_equal(tg_jwt_decode(big, 300, 256, &t), TG_JWT_ETOOLARGE);
    free(big);
}

static void keyset_rules(void **state)
{
    (void)state;
    struct tg_jwt_keyset *ks = NULL;
    char err[256];
    static const struct {
        const char *json;
        const char *err;
    } bad[] = {
        {"not json", "not JSON"},
        {"{\"keys\": 5}", "'keys' must be a list"},
        {"{\"keys\": []}", "no usable key"},
        {"{\"kty\":\"oct\",\"k\":\"\"}", "at least 32 bytes"},
        {"{\"kty\":\"oct\",\"k\":\"c2hvcnQ\"}", "at least 32 bytes"},
        {"{\"kty\":\"oct\",\"k\":\"" K1 "=\"}", "at least 32 bytes"}, /* padding: not base64url */
        {"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}", "at least 2048"},
        {"{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}", "only crv P-256"},
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}", "32 bytes"},
        {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" K1 "\",\"y\":\"" K2 "\"}", "not on P-256"},
        {"{\"kty\":\"oct\",\"kid\":5,\"k\":\"" K1 "\"}", "'kid' must be a string"},
        {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"}", "no usable key"},
        {"{\"kty\":\"oct\",\"use\":\"enc\",\"k\":\"" K1 "\"}", "no usable key"},
        {"{\"kty\":\"oct\",\"alg\":\"HS512\",\"k\":\"" K1 "\"}", "no usable key"},
        {"{\"kty\":\"RSA\",\"alg\":\"HS256\",\"n\":\"AQAB\",\"e\":\"AQAB\"}", "no usable key"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tg_jwt_keyset_parse(bad[i].json, strlen(bad[i].json), TG_JWT_ALGS_ALL, &ks, err,
                                sizeof(err)) == 0)
            fail_msg("loaded: %s", bad[i].json);
        if (strstr(err, bad[i].err) == NULL)
            fail_msg("%s: got '%s', want '%s'", bad[i].json, err, bad[i].err);
    }
    /* a provider limited to RS256 does not take an oct key */
    const char *oct = "{\"kty\":\"oct\",\"k\":\"" K1 "\"}";
    assert_int_equal(tg_jwt_keyset_parse(oct, strlen(oct), TG_JWT_RS256, &ks, err, sizeof(err)),
                     -1);
    /* a single JWK is a set of one; references keep it alive */
    assert_int_equal(tg_jwt_keyset_parse(oct, strlen(oct), TG_JWT_HS256, &ks, err, sizeof(err)), 0);
    tg_jwt_keyset_ref(ks);
    tg_jwt_keyset_unref(ks);
    assert_int_equal(tg_jwt_keyset_size(ks), 1);
    tg_jwt_keyset_unref(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claims_at_their_boundaries),
        cmocka_unit_test(keys_decide_the_algorithm),
        cmocka_unit_test(decoding_limits),
        cmocka_unit_test(keyset_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
