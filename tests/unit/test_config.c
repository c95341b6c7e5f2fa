/*
 * test_config.c - configuration parsing: defaults, addresses, routes, errors with positions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tfgate/config.h"

static void addresses(void **state)
{
    (void)state;
    char *host;
    int port;
    assert_int_equal(tg_config_parse_address("127.0.0.1:8501", &host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8501);
    free(host);
    assert_int_equal(tg_config_parse_address("[::1]:0", &host, &port), 0);
    assert_string_equal(host, "::1");
    free(host);
    assert_int_equal(tg_config_parse_address(":80", &host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    free(host);
    assert_int_equal(tg_config_parse_address("::1:80", &host, &port), -1);
    assert_int_equal(tg_config_parse_address("a:70000", &host, &port), -1);
    assert_int_equal(tg_config_parse_address("a:", &host, &port), -1);
    assert_int_equal(tg_config_parse_address("a", &host, &port), -1);
    assert_int_equal(tg_config_parse_address("a:1x", &host, &port), -1);
    /* the admin listener: a port alone is on loopback */
    const char *loop[] = {":9901", "9901"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(tg_config_parse_admin_address(loop[i], &host, &port), 0);
        assert_string_equal(host, "127.0.0.1");
        assert_int_equal(port, 9901);
        free(host);
    }
    assert_int_equal(tg_config_parse_admin_address("0.0.0.0:9901", &host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    free(host);
    assert_int_equal(tg_config_parse_admin_address("[::1]:9901", &host, &port), 0);
    assert_string_equal(host, "::1");
    free(host);
    assert_int_equal(tg_config_parse_admin_address("99999", &host, &port), -1);
    assert_int_equal(tg_config_parse_admin_address("", &host, &port), -1);
    assert_int_equal(tg_config_parse_admin_address("x", &host, &port), -1);
}

static void json_defaults_and_routes(void **state)
{
    (void)state;
    const char *doc =
        "{\"listen\": [{\"address\": \"127.0.0.1:0\"}],"
        " \"pools\": {\"gpu\": {\"device\": \"gpu\", \"targets\": [\"a:1\", \"b:2\"]},"
        "            \"cpu\": {\"targets\": [\"c:3\"]}},"
        " \"routes\": [{\"model\": \"resnet\", \"pool\": \"gpu\"}, {\"model\": \"*\", \"pool\": "
        "\"cpu\"}]}";
    struct tg_config *c;
    char err[256];
    assert_int_equal(tg_config_parse_json(doc, strlen(doc), "t.json", &c, err, sizeof(err)), 0);
    assert_int_equal(c->n_pools, 2);
    assert_string_equal(tg_config_pool(c, "gpu")->device, "gpu");
    assert_int_equal(tg_config_pool(c, "gpu")->n_targets, 2);
    assert_int_equal(tg_config_pool(c, "cpu")->channels, 2);
    assert_string_equal(tg_config_route(c, "resnet")->pool, "gpu");
    assert_string_equal(tg_config_route(c, "other")->pool, "cpu");
    assert_int_equal(c->limits.max_message_bytes, 64u << 20);
    assert_int_equal(c->limits.max_concurrent_streams, 128);
    tg_config_ref(c);
    tg_config_unref(c);
    tg_config_unref(c);
}

static void json_errors(void **state)
{
    (void)state;
    struct tg_config *c = NULL;
    char err[256];
    const char *dup = "{\"listen\": [], \"listen\": []}";
    assert_int_equal(tg_config_parse_json(dup, strlen(dup), "d.json", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "duplicate"));
    const char *bad =
        "{\"listen\": [{\"address\": \":1\"}],\n \"pools\": {\"p\": {\"targets\": [\"a:1\", 5]}}}";
    assert_int_equal(tg_config_parse_json(bad, strlen(bad), "b.json", &c, err, sizeof(err)), -1);
    assert_string_equal(err, "b.json:2:37: pools.p.targets[1]: must be a non-empty string");
    const char *deep = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]"
                       "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]";
    assert_int_equal(tg_config_parse_json(deep, strlen(deep), "x.json", &c, err, sizeof(err)), -1);
    /* a syntax error inside a secret does not quote it (the message is logged on reload) */
    const char *secret = "{\"auth\": {\"providers\": [{\"keys\": [{\"k\": \"s3cr3t\n\"}]}]}}";
    assert_int_equal(tg_config_parse_json(secret, strlen(secret), "s.json", &c, err, sizeof(err)),
                     -1);
    assert_null(strstr(err, "s3cr3t"));
    assert_non_null(strstr(err, "s.json:1:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses),
        cmocka_unit_test(json_defaults_and_routes),
        cmocka_unit_test(json_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
