/*
 * test_compress.c - Accept-Encoding negotiation and gzip of responses (compress.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tfgate/arena.h"
#include "tfgate/compress.h"
#include "tfgate/grpc_wire.h"

static void accept_encoding(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int gzip;
    } cases[] = {
        {NULL, 0},
        {"", 0},
        {"gzip", 1},
        {"GZip", 1},
        {"x-gzip", 1},
        {"deflate, gzip;q=1.0, *;q=0.5", 1},
        {"gzip, deflate, br", 1},
        {"br", 0},
        {"gzipx", 0},
        {"identity", 0},
        {"gzip;q=0", 0},
        {"gzip; q=0.0", 0},
        {"gzip;q=0.001", 1},
        {"*", 1},
        {"*;q=0", 0},
        {"gzip;q=0, *", 0}, /* gzip named and refused: * does not bring it back */
        {"br, *;q=0.1", 1},
        {"gzip;q=bogus", 0},
        {"gzip;q=2", 0},
        {" , ,gzip ,", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (tg_accepts_gzip(cases[i].v) != cases[i].gzip)
            fail_msg("Accept-Encoding \"%s\": want %d", cases[i].v ? cases[i].v : "(null)",
                     cases[i].gzip);
    }
}

static void gzip_round_trip(void **state)
{
    (void)state;
    struct tg_arena a;
    char text[20000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = "{\"predictions\": [2.5, 3.0]}\n"[i % 28];
    tg_arena_init(&a);
    uint8_t *z;
    size_t zlen;
    assert_int_equal(tg_gzip(&a, (const uint8_t *)text, sizeof(text), 1, &z, &zlen), 0);
    assert_true(zlen < sizeof(text) / 10);
    assert_int_equal(z[0], 0x1f); /* the gzip magic */
    assert_int_equal(z[1], 0x8b);
    const uint8_t *back;
    size_t blen;
    assert_int_equal(tg_inflate(&a, z, zlen, 1, sizeof(text), &back, &blen), 0);
    assert_int_equal(blen, sizeof(text));
    assert_memory_equal(back, text, blen);
    assert_int_equal(tg_gzip(&a, (const uint8_t *)"", 0, 1, &z, &zlen), 0); /* empty is fine */
    tg_arena_dispose(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_encoding),
        cmocka_unit_test(gzip_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
