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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_cap_is_hard),
        cmocka_unit_test(arena_alloc_align_defer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
