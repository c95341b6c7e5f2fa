/*
 * test_buf_arena.c - the capped byte buffer and the per-request arena.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tfgate/arena.h"
#include "tfgate/base64.h"
#include "tfgate/buf.h"

static void buf_cap_is_hard(void **state)
{
    (void)state;
    struct tg_buf b;
    uint8_t data[1000];
    memset(data, 7, sizeof(data));
    tg_buf_init(&b, 2500);
    assert_int_equal(tg_buf_append(&b, data, 1000), 0);
    assert_int_equal(tg_buf_append(&b, data, 1000), 0);
    assert_int_equal(tg_buf_append(&b, data, 1000), -1); /* 3000 > 2500: refused, unchanged */
    assert_int_equal(tg_buf_size(&b), 2000);
    assert_true(b.alloc <= 4096);
    tg_buf_consume(&b, 1500);
    assert_int_equal(tg_buf_size(&b), 500);
    assert_int_equal(tg_buf_append(&b, data, 1000), 0); /* room comes back by compaction */
    assert_int_equal(tg_buf_size(&b), 1500);
    assert_null(tg_buf_reserve(&b, (size_t)-1)); /* no overflow on absurd sizes */
    tg_buf_consume(&b, 1500);
    tg_buf_shrink(&b);
    assert_null(b.base);
    tg_buf_dispose(&b);
}

static int order[4], n_order;
static void record(void *arg)
{
    order[n_order++] = (int)(intptr_t)arg;
}

static void arena_alloc_align_defer(void **state)
{
    (void)state;
    struct tg_arena a;
    tg_arena_init(&a);
    for (int i = 0; i < 1000; i++) {
        char *p = tg_arena_alloc(&a, (size_t)(i % 37) + 1, 1);
        memset(p, 1, (size_t)(i % 37) + 1);
        double *d = tg_arena_alloc(&a, sizeof(double), _Alignof(double));
        assert_int_equal((uintptr_t)d % _Alignof(double), 0);
        *d = i;
    }
    char *big = tg_arena_alloc(&a, 1 << 20, 16); /* large: its own block */
    memset(big, 2, 1 << 20);
    assert_string_equal(tg_arena_strndup(&a, "hello world", 5), "hello");
    n_order = 0;
    tg_arena_defer(&a, record, (void *)1);
    tg_arena_defer(&a, record, (void *)2);
    tg_arena_dispose(&a);
    assert_int_equal(n_order, 2);
    assert_int_equal(order[0], 2); /* newest first */
    assert_int_equal(order[1], 1);
    tg_arena_dispose(&a); /* idempotent */
}

static void base64_both_alphabets(void **state)
{
    (void)state;
    uint8_t raw[256], back[256 + 3];
    char enc[400];
    size_t n;
    for (int i = 0; i < 256; i++)
        raw[i] = (uint8_t)(255 - i);
    for (size_t len = 0; len < 40; len++) {
        for (int pad = 0; pad <= 1; pad++) {
            size_t e = tg_base64_encode(raw, len, enc, pad);
            assert_int_equal(e, tg_base64_encoded_len(len, pad));
            assert_int_equal(tg_base64_decode(enc, e, back, &n, 0), 0);
            assert_int_equal(n, len);
            assert_memory_equal(back, raw, len);
        }
    }
    assert_int_equal(tg_base64_decode("/wD+", 4, back, &n, 0), 0);
    assert_int_equal(n, 3);
    assert_int_equal(back[0], 0xff);
    assert_int_equal(tg_base64_decode("_wD-", 4, back, &n, 1), 0); /* URL-safe */
    assert_int_equal(back[2], 0xfe);
    assert_int_equal(tg_base64_decode("_wD-", 4, back, &n, 0), -1);
    assert_int_equal(tg_base64_decode("/wD+", 4, back, &n, 1), -1);
    assert_int_equal(tg_base64_decode("abcde", 5, back, &n, 0), -1); /* impossible length */
    assert_int_equal(tg_base64_decode("ab=c", 4, back, &n, 0), -1);
    assert_int_equal(tg_base64_decode("abc==", 5, back, &n, 0), -1); /* wrong padding */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_cap_is_hard),
        cmocka_unit_test(arena_alloc_align_defer),
        cmocka_unit_test(base64_both_alphabets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
