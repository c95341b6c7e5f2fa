/*
 * test_ratelimit.c - the token bucket's arithmetic (ratelimit.h, tg_bucket_take): refill, the
 * burst cap, the wait it reports. The buckets in use, local and in Redis, are covered by
 * tests/integration/test_ratelimit.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tfgate/ratelimit.h"

static void refill_burst_and_wait(void **state)
{
    (void)state;
    double tokens = 3; /* a new bucket starts full: burst 3 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tg_bucket_take(&tokens, 2.0, 3.0, 0), 0);
    /* empty: one token every 500 ms */
    assert_int_equal(tg_bucket_take(&tokens, 2.0, 3.0, 0), 500);
    assert_int_equal(tg_bucket_take(&tokens, 2.0, 3.0, 100), 400);
    assert_int_equal(tg_bucket_take(&tokens, 2.0, 3.0, 400), 0);
    /* a long idle time refills to the burst, not beyond */
    assert_int_equal(tg_bucket_take(&tokens, 2.0, 3.0, 3600 * 1000), 0);
    assert_true(tokens > 1.99 && tokens < 2.01);
    /* slow rates: a wait of minutes, never 0 while empty */
    tokens = 0;
    assert_int_equal(tg_bucket_take(&tokens, 0.01, 1.0, 0), 100000);
    tokens = 0.9999999;
    assert_int_equal(tg_bucket_take(&tokens, 1000.0, 1.0, 0), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(refill_burst_and_wait)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
