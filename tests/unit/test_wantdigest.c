/*
 * Unit tests for src/http/wantdigest.c: which Want-Digest values decline
 * a sha-256 Digest.  Each value is parsed from an allocation of exactly
 * its length, so ASan catches a read past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/wantdigest.h"

static bool declines(const char *v)
{
    size_t n = strlen(v);
    char *copy = malloc(n ? n : 1);
    bool r;

    assert_non_null(copy);
    memcpy(copy, v, n);
    r = kr_http_want_digest_declines_sha256(copy, n);
    free(copy);
    return r;
}

static void test_declined(void **state)
{
    (void)state;
    assert_true(declines("sha-256;q=0"));
    assert_true(declines("SHA-256;Q=0"));
    assert_true(declines("sha-256 ; q=0.000"));
    assert_true(declines("sha-256;q=0."));
    assert_true(declines("md5;q=0.3, sha-256;q=0"));
    assert_true(declines(" , sha-256;q=0 ,, "));
    assert_true(declines("\tsha-256;q=0.0\t"));
}

static void test_not_declined(void **state)
{
    (void)state;
    assert_false(declines(""));
    assert_false(declines(" , "));
    assert_false(declines("sha-256"));
    assert_false(declines("sha-256;q=1"));
    assert_false(declines("sha-256;q=0.001"));
    assert_false(declines("sha-256;q=1.000"));
    assert_false(declines("sha-512;q=0"));
    assert_false(declines("sha-2560;q=0"));
    assert_false(declines("sha;q=0"));
}

/* A malformed value keeps the default (send the Digest), even where it
 * also names sha-256;q=0. */
static void test_malformed(void **state)
{
    (void)state;
    assert_false(declines("sha-256;q=0;"));
    assert_false(declines("sha-256;q=0.0000"));
    assert_false(declines("sha-256;q=1.5"));
    assert_false(declines("sha-256;q=2"));
    assert_false(declines("sha-256;q="));
    assert_false(declines("sha-256;r=0"));
    assert_false(declines("sha-256;q =0"));
    assert_false(declines("sha-256 q=0"));
    assert_false(declines("sha-256;q=0, \"x\""));
    assert_false(declines(";q=0"));
    assert_false(declines("sha-256;q=0\r\n"));
    assert_false(declines("sha-256;q"));
    assert_false(declines("sha-256;"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_declined),
        cmocka_unit_test(test_not_declined),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
