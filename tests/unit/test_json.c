/*
 * test_json.c - the REST parser's RapidJSON-compatible errors and offsets, number classes,
 * debug rendering, and TF Serving's float formatting (spec/tfserving.md §3.4, §3.6, §3.8).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tfgate/arena.h"
#include "tfgate/json.h"
#include "tfgate/tensor_json.h"

static void expect_error(const char *text, const char *msg, size_t offset)
{
    struct tg_arena a;
    struct tg_jval *v;
    struct tg_json_error err;
    tg_arena_init(&a);
    assert_int_equal(tg_json_parse(text, strlen(text), &a, 100, &v, &err), -1);
    assert_string_equal(err.message, msg);
    assert_int_equal(err.offset, offset);
    tg_arena_dispose(&a);
}

static void errors_and_offsets(void **state)
{
    (void)state;
    expect_error("   ", "The document is empty.", 3);
    expect_error("{\"instances\": [1.]}", "Miss fraction part in number.", 17);
    expect_error("[1e]", "Miss exponent in number.", 3);
    expect_error("[1e309]", "Number too big to be stored in double.", 1);
    expect_error("[nan]", "Invalid value.", 2);
    expect_error("[+Infinity]", "Invalid value.", 1);
    expect_error("[Infinit]", "Invalid value.", 8);
    expect_error("[1,]", "Invalid value.", 3);
    expect_error("{\"a\" 1}", "Missing a colon after a name of object member.", 5);
    expect_error("{1: 2}", "Missing a name for object member.", 1);
    expect_error("{\"a\": 1 \"b\"}", "Missing a comma or '}' after an object member.", 8);
    expect_error("[1 2]", "Missing a comma or ']' after an array element.", 3);
    expect_error("[\"\\x\"]", "Invalid escape character in string.", 2);
    expect_error("[\"\\u12g4\"]", "Incorrect hex digit after \\u escape in string.", 2);
    expect_error("[\"\\ud800x\"]", "The surrogate pair in string is invalid.", 2);
    expect_error("[\"a\tb\"]", "Invalid escape character in string.", 3);
    expect_error("[\"abc", "Missing a closing quotation mark in string.", 5);
    expect_error("[tru]", "Invalid value.", 4);
}

static void numbers_and_literals(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_jval *v;
    struct tg_json_error err;
    const char *t = "[1, -0, 1.0, 9223372036854775807, 9223372036854775808, 18446744073709551616, "
                    "-9223372036854775808, NaN, -Infinity, Inf, -0.0, 1e-400] trailing garbage";
    tg_arena_init(&a);
    assert_int_equal(tg_json_parse(t, strlen(t), &a, 100, &v, &err), 0);
    assert_int_equal(v->len, 12);
    struct tg_jval *x = v->u.items;
    assert_int_equal(x[0].num, TG_JNUM_INT);
    assert_int_equal(x[1].num, TG_JNUM_INT); /* -0 is the integer 0 */
    assert_int_equal(x[1].u.i64, 0);
    assert_int_equal(x[2].num, TG_JNUM_DOUBLE);
    assert_true(x[3].num == TG_JNUM_INT && x[3].u.i64 == INT64_MAX);
    assert_true(x[4].num == TG_JNUM_UINT && x[4].u.u64 == 9223372036854775808ull);
    assert_int_equal(x[5].num, TG_JNUM_DOUBLE); /* beyond uint64 */
    assert_true(x[6].num == TG_JNUM_INT && x[6].u.i64 == INT64_MIN);
    assert_true(x[7].nonfinite && isnan(x[7].u.d));
    assert_true(x[8].nonfinite && x[8].u.d == -INFINITY);
    assert_true(x[9].nonfinite && x[9].u.d == INFINITY);
    assert_true(x[10].u.d == 0 && signbit(x[10].u.d)); /* -0.0 keeps its sign */
    assert_true(x[11].u.d == 0);                       /* underflow is zero, not an error */
    tg_arena_dispose(&a);

    const char *nul = "{\"a\": \"x\\u0000y\"}\0junk";
    tg_arena_init(&a);
    assert_int_equal(tg_json_parse(nul, 22, &a, 100, &v, &err), 0);
    assert_int_equal(tg_json_get(v, "a", 1)->len, 3); /* \u0000 kept inside the string */
    tg_arena_dispose(&a);
    tg_arena_init(&a);
    const char *deep = "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]";
    assert_int_equal(tg_json_parse(deep, strlen(deep), &a, 10, &v, &err), -1);
    tg_arena_dispose(&a);
}

static void debug_rendering(void **state)
{
    (void)state;
    struct tg_arena a;
    struct tg_jval *v;
    struct tg_json_error err;
    const char *t = "[1.0, 1000, 0.1, 1e300, NaN, \"q\\\"\", {\"b64\": \"AA==\"}]";
    tg_arena_init(&a);
    assert_int_equal(tg_json_parse(t, strlen(t), &a, 100, &v, &err), 0);
    /* PrettyWriter indents by nesting depth: the object's members sit at
     * depth 2 (8 spaces) and its closing brace at depth 1 (4 spaces). */
    assert_string_equal(
        tg_json_debug(v, &a),
        "[1.0, 1000, 0.1, 1e300, , \"q\\\"\", {\n        \"b64\": \"AA==\"\n    }]");
    tg_arena_dispose(&a);
}

/* A deterministic generator (xorshift64*), so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* §3.8 written the obvious way, with printf and strtof: the reference the fast path must match. */
static void reference_float(float f, char *out)
{
    int n = snprintf(out, 40, "%.6g", (double)f);
    if (strtof(out, NULL) != f)
        n = snprintf(out, 40, "%.9g", (double)f);
    if (strpbrk(out, ".e") == NULL && strpbrk(out, "ni") == NULL)
        memcpy(out + n, ".0", 3);
}

/* Differential: the printf-free float writer against the reference, on random bit patterns,
 * on float32 pixels / 255 (what images carry) and on short decimals (what users type). */
static void float_formatting_differential(void **state)
{
    (void)state;
    char want[64], got[64];
    for (int i = 0; i < 400000; i++) {
        float f;
        if (i < 256) {
            f = (float)i / 255.0f;
        } else if (i % 3 == 0) {
            uint32_t bits = (uint32_t)rnd();
            memcpy(&f, &bits, sizeof(f));
            if (isnan(f))
                continue;
        } else if (i % 3 == 1) {
            f = (float)((double)(rnd() % 2000001) / 1000.0 - 1000.0);
        } else {
            f = (float)((double)(rnd() % 100000) * pow(10, (double)(rnd() % 60) - 30));
        }
        reference_float(f, want);
        tg_tj_format_float(f, 0, got);
        if (strcmp(want, got) != 0)
            fail_msg("float %a: want %s got %s", (double)f, want, got);
    }
}

/* Every binade's edges: powers of two (whose lower neighbour is closer), their neighbours, and
 * the largest mantissa, for all exponents and both signs. */
static void float_formatting_binade_edges(void **state)
{
    (void)state;
    static const uint32_t mant[] = {0, 1, 2, 3, 0x400000, 0x7ffffe, 0x7fffff};
    char want[64], got[64];
    for (uint32_t e = 0; e < 255; e++)
        for (size_t k = 0; k < sizeof(mant) / sizeof(mant[0]); k++)
            for (uint32_t sign = 0; sign < 2; sign++) {
                uint32_t bits = sign << 31 | e << 23 | mant[k];
                float f;
                memcpy(&f, &bits, sizeof(f));
                reference_float(f, want);
                tg_tj_format_float(f, 0, got);
                if (strcmp(want, got) != 0)
                    fail_msg("float %a: want %s got %s", (double)f, want, got);
            }
}

/* Differential: the parser's fast decimal conversion against strtod, on random literals with
 * up to 20 significant digits, leading/trailing zeros and exponents, all through the parser. */
static void number_parsing_differential(void **state)
{
    (void)state;
    char lit[96];
    for (int i = 0; i < 300000; i++) {
        size_t n = 0;
        if (rnd() & 1)
            lit[n++] = '-';
        int int_digits = (int)(rnd() % 12), frac_digits = (int)(rnd() % 20);
        if (int_digits == 0)
            lit[n++] = '0';
        for (int k = 0; k < int_digits; k++)
            lit[n++] = (char)('0' + (k == 0 ? 1 + rnd() % 9 : rnd() % 10));
        lit[n++] = '.';
        for (int k = 0; k < frac_digits + 1; k++)
            lit[n++] = (char)('0' + (rnd() % 4 == 0 ? 0 : rnd() % 10));
        if (rnd() % 3 == 0)
            n += (size_t)sprintf(lit + n, "e%d", (int)(rnd() % 70) - 35);
        lit[n] = '\0';
        struct tg_arena a;
        struct tg_jval *v;
        struct tg_json_error err;
        tg_arena_init(&a);
        if (tg_json_parse(lit, n, &a, 10, &v, &err) != 0)
            fail_msg("literal %s rejected: %s", lit, err.message);
        double want = strtod(lit, NULL);
        if (memcmp(&v->u.d, &want, sizeof(want)) != 0)
            fail_msg("literal %s: want %a got %a", lit, want, v->u.d);
        tg_arena_dispose(&a);
    }
}

/* The nesting limit (the REST layer passes 1000): at the limit parses, one deeper is an error at
 * the offset of the bracket that went too deep; 500,000 brackets do not exhaust the stack. */
static void nesting_limit(void **state)
{
    (void)state;
    size_t deep = 500000;
    char *t = malloc(2 * deep + 1);
    struct tg_arena a;
    struct tg_jval *v;
    struct tg_json_error err;
    for (size_t n = 1000; n <= 1001; n++) {
        memset(t, '[', n);
        memset(t + n, ']', n);
        tg_arena_init(&a);
        int rv = tg_json_parse(t, 2 * n, &a, 1000, &v, &err);
        if (n == 1000) {
            assert_int_equal(rv, 0);
        } else {
            assert_int_equal(rv, -1);
            assert_string_equal(err.message, "Terminate parsing due to Handler error.");
            assert_int_equal(err.offset, 1000);
        }
        tg_arena_dispose(&a);
    }
    memset(t, '[', deep);
    memset(t + deep, ']', deep);
    tg_arena_init(&a);
    assert_int_equal(tg_json_parse(t, 2 * deep, &a, 1000, &v, &err), -1);
    tg_arena_dispose(&a);
    free(t);
}

static void float_formatting(void **state)
{
    (void)state;
    struct {
        float v;
        const char *text;
    } f32[] = {{2.5f, "2.5"},
               {3.0f, "3.0"},
               {9000000.0f, "9e+06"},
               {999999.0f, "999999.0"},
               {0.00003f, "3e-05"},
               {555557.5f, "555557.5"},
               {0.1f, "0.1"},
               {1.0f / 3, "0.333333343"},
               {16777216.0f, "16777216.0"},
               {123456792.0f, "123456792.0"},
               {1435774336.0f, "1.43577434e+09"},
               {-0.0f, "-0.0"},
               {1e10f, "1e+10"}};
    char out[64];
    for (size_t i = 0; i < sizeof(f32) / sizeof(f32[0]); i++) {
        tg_tj_format_float(f32[i].v, 0, out);
        assert_string_equal(out, f32[i].text);
    }
    tg_tj_format_float(0.1, 1, out);
    assert_string_equal(out, "0.1");
    tg_tj_format_float(0.1 + 0.2, 1, out);
    assert_string_equal(out, "0.30000000000000004");
    tg_tj_format_float(1.0 / 3, 1, out);
    assert_string_equal(out, "0.33333333333333331");
    tg_tj_format_float(1e300, 1, out);
    assert_string_equal(out, "1e+300");
    tg_tj_format_float(NAN, 0, out);
    assert_string_equal(out, "NaN");
    tg_tj_format_float(-INFINITY, 0, out);
    assert_string_equal(out, "-Infinity");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(errors_and_offsets),
        cmocka_unit_test(numbers_and_literals),
        cmocka_unit_test(debug_rendering),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(float_formatting),
        cmocka_unit_test(float_formatting_differential),
        cmocka_unit_test(float_formatting_binade_edges),
        cmocka_unit_test(number_parsing_differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
