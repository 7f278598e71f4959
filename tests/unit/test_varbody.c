/*
 * Unit tests for src/http/varbody.c, the fast path for a Variable's PUT
 * body.  Every accepted body is checked against jansson as var.c's slow
 * path uses it: json_loadb(JSON_REJECT_DUPLICATES), then
 * json_dumpb(Items, JSON_COMPACT | JSON_SORT_KEYS), the Items size as
 * items_valid sums it, and the Namespace string.  Every rule that sends a
 * body back to jansson has a case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/err.h"
#include "crypto/secmem.h"
#include "http/varbody.h"

/* String literals may hold NULs: their length is the array's. */
#define ACCEPT(lit) accept_n(lit, sizeof(lit) - 1)
#define FALLBACK(lit) fallback_n(lit, sizeof(lit) - 1)

/* Parses body[0..len) in an allocation of exactly len bytes, so ASan
 * catches a read past the end. */
static int parse(const char *body, size_t len, struct kr_varbody *out)
{
    char *copy = malloc(len ? len : 1);
    int rv;

    assert_non_null(copy);
    memcpy(copy, body, len);
    rv = kr_varbody_parse(copy, len, out);
    /* ns is borrowed from the body: keep it readable for the caller. */
    if (rv == 0 && out->ns != NULL)
        out->ns = body + (out->ns - copy);
    free(copy);
    return rv;
}

/* Asserts the fast path takes the body and agrees with jansson; returns
 * the canonical Items (caller frees) for exact-output checks. */
static char *accept_n(const char *body, size_t len)
{
    struct kr_varbody vb;
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    json_t *items, *ns, *v;
    const char *k;
    size_t n, total = 0;
    char *want, *got;

    assert_non_null(j);
    assert_int_equal(parse(body, len, &vb), 0);
    items = json_object_get(j, "Items");
    n = json_dumpb(items, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    want = malloc(n);
    assert_non_null(want);
    assert_int_equal(json_dumpb(items, want, n, JSON_COMPACT | JSON_SORT_KEYS),
                     n);
    assert_int_equal(vb.items->len, n);
    assert_memory_equal(vb.items->data, want, n);
    json_object_foreach(items, k, v)
    {
        total += strlen(k) + json_string_length(v);
    }
    assert_int_equal(vb.total, total);
    ns = json_object_get(j, "Namespace");
    if (json_is_string(ns)) {
        assert_non_null(vb.ns);
        assert_int_equal(vb.ns_len, json_string_length(ns));
        assert_memory_equal(vb.ns, json_string_value(ns), vb.ns_len);
    } else {
        assert_null(vb.ns);
        assert_int_equal(vb.ns_len, 0);
    }
    got = calloc(1, n + 1);
    assert_non_null(got);
    memcpy(got, vb.items->data, n);
    kr_varbody_clear(&vb);
    assert_null(vb.items);
    free(want);
    json_decref(j);
    return got;
}

static void accept_as(const char *body, const char *canonical)
{
    char *got = accept_n(body, strlen(body));

    assert_string_equal(got, canonical);
    free(got);
}

static void fallback_n(const char *body, size_t len)
{
    struct kr_varbody vb;

    memset(&vb, 0xA5, sizeof(vb));
    assert_int_equal(parse(body, len, &vb), KR_EINVAL);
    assert_null(vb.items);
    assert_null(vb.ns);
    assert_int_equal(vb.ns_len, 0);
    assert_int_equal(vb.total, 0);
}

static void test_accepts_common_body(void **state)
{
    (void)state;
    accept_as("{\"Items\":{\"value\":\"hunter2\"}}", "{\"value\":\"hunter2\"}");
    accept_as(" \t\r\n{ \"Items\" : { \"b\" : \"2\" ,\n\"a\":\"1\" } } \n",
              "{\"a\":\"1\",\"b\":\"2\"}");
    accept_as("{\"Namespace\":\"prod\",\"Path\":\"a/b\",\"CreateIndex\":0,"
              "\"ModifyIndex\":-12,\"Lock\":null,\"X\":true,\"Y\":false,"
              "\"Items\":{\"user\":\"u\",\"pass\":\"p\"},\"Z\":\"\"}",
              "{\"pass\":\"p\",\"user\":\"u\"}");
    /* An empty Namespace, and one that is not a string. */
    free(ACCEPT("{\"Namespace\":\"\",\"Items\":{\"a\":\"\"}}"));
    free(ACCEPT("{\"Namespace\":7,\"Items\":{\"a\":\"b\"}}"));
    free(ACCEPT("{\"Items\":{\"a\":\"b\"},\"Namespace\":null}"));
}

static void test_accepts_a_large_body(void **state)
{
    char *body = malloc(200000), *p = body, *got;

    (void)state;
    assert_non_null(body);
    p += sprintf(p, "{\"Items\":{");
    for (int i = 0; i < 1000; i++)
        p += sprintf(p, "%s\"k%d\":\"%0*d\\n/\"", i ? "," : "",
                     (i * 7919) % 1000, 100, i);
    p += sprintf(p, "},\"Namespace\":\"default\"}");
    got = accept_n(body, (size_t)(p - body));
    free(got);
    free(body);
}

/* Keys sort by unsigned bytes, as strcmp and jansson's JSON_SORT_KEYS. */
static void test_sorts_by_unsigned_bytes(void **state)
{
    (void)state;
    accept_as("{\"Items\":{\"\xc3\xa9\":\"1\",\"ab\":\"2\",\"a\":\"3\","
              "\"B\":\"4\",\"~\":\"5\",\"\":\"6\",\"a\x7f\":\"7\"}}",
              "{\"\":\"6\",\"B\":\"4\",\"a\":\"3\",\"ab\":\"2\","
              "\"a\x7f\":\"7\",\"~\":\"5\",\"\xc3\xa9\":\"1\"}");
}

static void test_escapes(void **state)
{
    (void)state;
    /* \/ comes out as a bare slash; the rest keep their short form. */
    accept_as("{\"Items\":{\"k\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t/x\"}}",
              "{\"k\":\"\\\"\\\\/\\b\\f\\n\\r\\t/x\"}");
    free(ACCEPT("{\"Items\":{\"k\":\"\\\\\\\\\\\\\"}}"));
    free(ACCEPT("{\"Other\":\"\\n\\\"\",\"Items\":{\"k\":\"\"}}"));
    FALLBACK("{\"Items\":{\"k\":\"\\u0041\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\\u001f\"}}");
    FALLBACK("{\"Other\":\"\\u0041\",\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\\x\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\\'\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\\U0041\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\\");
    FALLBACK("{\"Items\":{\"k\":\"\\\"}}");
}

/* What the writer's \u00XX form (unreachable through the scanner, which
 * sends control characters to jansson) is modelled on. */
static void test_jansson_control_escape_is_uppercase(void **state)
{
    json_t *s = json_string("\x1f\x01");
    char buf[32];
    size_t n;

    (void)state;
    n = json_dumpb(s, buf, sizeof(buf), JSON_COMPACT | JSON_ENCODE_ANY);
    assert_int_equal(n, 14);
    assert_memory_equal(buf, "\"\\u001F\\u0001\"", n);
    json_decref(s);
}

static void test_utf8(void **state)
{
    (void)state;
    /* Valid: the ends of each length, around the surrogates, U+10FFFF. */
    free(ACCEPT("{\"Items\":{\"k\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f"
                "\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf"
                "\xbf\x7f\"}}"));
    free(ACCEPT("{\"Items\":{\"\xe2\x82\xac\":\"\xf0\x9f\x94\x91\"}}"));
    /* Overlong. */
    FALLBACK("{\"Items\":{\"k\":\"\xc0\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xc1\xbf\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xe0\x80\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xe0\x9f\xbf\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xf0\x80\x80\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xf0\x8f\xbf\xbf\"}}");
    /* Surrogates. */
    FALLBACK("{\"Items\":{\"k\":\"\xed\xa0\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xed\xbf\xbf\"}}");
    /* Past U+10FFFF, and bytes that never start a sequence. */
    FALLBACK("{\"Items\":{\"k\":\"\xf4\x90\x80\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xf5\x80\x80\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xf8\x88\x80\x80\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xff\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\x80\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xbf\"}}");
    /* Truncated: by the closing quote, by the end of the body. */
    FALLBACK("{\"Items\":{\"k\":\"\xc3\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xe2\x82\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xf0\x9f\x94\"}}");
    FALLBACK("{\"Items\":{\"k\":\"\xf0\x9f\x94");
    FALLBACK("{\"Items\":{\"k\":\"\xc3");
    /* In a key, and in another member's value. */
    FALLBACK("{\"Items\":{\"\xed\xa0\x80\":\"v\"}}");
    FALLBACK("{\"X\":\"\xc0\xaf\",\"Items\":{\"k\":\"v\"}}");
    /* Outside strings. */
    FALLBACK("\xef\xbb\xbf{\"Items\":{\"k\":\"v\"}}");
}

static void test_control_characters(void **state)
{
    (void)state;
    FALLBACK("{\"Items\":{\"k\":\"a\x01\"}}");
    FALLBACK("{\"Items\":{\"k\":\"a\x1f\"}}");
    FALLBACK("{\"Items\":{\"k\":\"a\tb\"}}");
    FALLBACK("{\"Items\":{\"k\":\"a\nb\"}}");
    FALLBACK("{\"Items\":{\"k\":\"a\0b\"}}");
    FALLBACK("{\"Items\":{\"k\x01\":\"v\"}}");
    FALLBACK("{\"Namespace\":\"a\0b\",\"Items\":{\"k\":\"v\"}}");
}

static void test_keys(void **state)
{
    (void)state;
    /* Escaped keys, even ones jansson reads as plain words. */
    FALLBACK("{\"Items\":{\"a\\/b\":\"v\"}}");
    FALLBACK("{\"Items\":{\"a\\nb\":\"v\"}}");
    FALLBACK("{\"It\\u0065ms\":{\"k\":\"v\"}}");
    FALLBACK("{\"Item\\/s\":{\"k\":\"v\"},\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"X\\\\\":1,\"Items\":{\"k\":\"v\"}}");
    /* An escaped Namespace value cannot be lent out as it stands. */
    FALLBACK("{\"Namespace\":\"a\\/b\",\"Items\":{\"k\":\"v\"}}");
    /* Not strings. */
    FALLBACK("{Items:{\"k\":\"v\"}}");
    FALLBACK("{\"Items\":{k:\"v\"}}");
    FALLBACK("{'Items':{\"k\":\"v\"}}");
}

static void test_duplicates(void **state)
{
    (void)state;
    FALLBACK("{\"Items\":{\"k\":\"v\"},\"Items\":{\"j\":\"v\"}}");
    FALLBACK("{\"Items\":{\"k\":\"v\",\"k\":\"w\"}}");
    FALLBACK("{\"Items\":{\"a\":\"1\",\"b\":\"2\",\"a\":\"3\"}}");
    FALLBACK("{\"Namespace\":\"a\",\"Namespace\":\"b\","
             "\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"x\":1,\"Items\":{\"k\":\"v\"},\"x\":null}");
    FALLBACK("{\"\":1,\"\":2,\"Items\":{\"k\":\"v\"}}");
    /* The same key in both objects is no duplicate. */
    free(ACCEPT("{\"k\":\"1\",\"Items\":{\"k\":\"v\",\"Items\":\"w\"}}"));
    /* Prefixes are distinct keys. */
    free(ACCEPT("{\"Items\":{\"a\":\"1\",\"ab\":\"2\",\"abc\":\"3\"}}"));
}

static void test_structure(void **state)
{
    struct kr_varbody vb;

    (void)state;
    FALLBACK("");
    FALLBACK(" \n\t");
    memset(&vb, 0, sizeof(vb));
    assert_int_equal(kr_varbody_parse(NULL, 0, &vb), KR_EINVAL);
    assert_null(vb.items);
    FALLBACK("[]");
    FALLBACK("\"x\"");
    FALLBACK("1");
    FALLBACK("null");
    FALLBACK("{}");
    FALLBACK("{");
    FALLBACK("{\"Items\"");
    FALLBACK("{\"Items\":");
    FALLBACK("{\"Items\":{");
    FALLBACK("{\"Items\":{\"k\"");
    FALLBACK("{\"Items\":{\"k\":");
    FALLBACK("{\"Items\":{\"k\":\"v");
    FALLBACK("{\"Items\":{\"k\":\"v\"");
    FALLBACK("{\"Items\":{\"k\":\"v\"}");
    FALLBACK("{\"Items\":{\"k\" \"v\"}}");
    FALLBACK("{\"Items\":{\"k\":\"v\" \"j\":\"w\"}}");
    FALLBACK("{\"Items\" {\"k\":\"v\"}}");
    /* Trailing commas and garbage. */
    FALLBACK("{\"Items\":{\"k\":\"v\",}}");
    FALLBACK("{\"Items\":{\"k\":\"v\"},}");
    FALLBACK("{,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"Items\":{\"k\":\"v\"}}x");
    FALLBACK("{\"Items\":{\"k\":\"v\"}}{}");
    FALLBACK("{\"Items\":{\"k\":\"v\"}} ,");
    FALLBACK("{\"Items\":{\"k\":\"v\"}}\0");
    FALLBACK("{\"Items\":{\"k\":\"v\"}}\f");
    FALLBACK("\f{\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"Items\":{\"k\":\"v\"}\v}");
}

static void test_items_shape(void **state)
{
    (void)state;
    FALLBACK("{\"Namespace\":\"default\"}");
    FALLBACK("{\"Items\":{}}");
    FALLBACK("{\"Items\":{ }}");
    FALLBACK("{\"Items\":\"k=v\"}");
    FALLBACK("{\"Items\":[]}");
    FALLBACK("{\"Items\":null}");
    FALLBACK("{\"Items\":1}");
    FALLBACK("{\"Items\":{\"k\":1}}");
    FALLBACK("{\"Items\":{\"k\":null}}");
    FALLBACK("{\"Items\":{\"k\":true}}");
    FALLBACK("{\"Items\":{\"k\":{}}}");
    FALLBACK("{\"Items\":{\"k\":[\"v\"]}}");
    FALLBACK("{\"Items\":{\"a\":\"v\",\"k\":{\"x\":\"y\"}}}");
    /* Other nesting. */
    FALLBACK("{\"Meta\":{},\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"Items\":{\"k\":\"v\"},\"Meta\":{\"a\":\"b\"}}");
    FALLBACK("{\"Tags\":[],\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"Tags\":[\"a\"],\"Items\":{\"k\":\"v\"}}");
}

static void test_numbers_and_literals(void **state)
{
    (void)state;
    free(ACCEPT("{\"a\":0,\"b\":-0,\"c\":123456789012345678,"
                "\"d\":-123456789012345678,\"e\":999999999999999999,"
                "\"Items\":{\"k\":\"v\"}}"));
    free(ACCEPT("{\"a\":1 ,\"b\":true\n,\"c\":null\t,\"d\":false\r,"
                "\"Items\":{\"k\":\"v\"} }"));
    FALLBACK("{\"a\":1234567890123456789,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":-1234567890123456789,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":9223372036854775808,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":01,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":-01,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":00,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":-,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":+1,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":1.5,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":1.,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":1e5,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":1E5,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":.5,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":0x1,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":1a,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":tru,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":truex,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":True,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":nul,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":NaN,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"a\":undefined,\"Items\":{\"k\":\"v\"}}");
    FALLBACK("{\"Items\":{\"k\":\"v\"},\"a\":fals");
    FALLBACK("{\"Items\":{\"k\":\"v\"},\"a\":-");
    FALLBACK("{\"Items\":{\"k\":\"v\"},\"a\":12");
}

static void test_deep_nesting(void **state)
{
    size_t depth = 100000, n = 0;
    char *body = malloc(5 * depth + 64);

    (void)state;
    assert_non_null(body);
    n += (size_t)sprintf(body, "{\"a\":");
    for (size_t i = 0; i < depth; i++)
        body[n++] = '[';
    fallback_n(body, n);
    n = (size_t)sprintf(body, "{\"Items\":");
    for (size_t i = 0; i < depth; i++)
        n += (size_t)sprintf(body + n, "{\"k\":");
    fallback_n(body, n);
    free(body);
}

static void test_total(void **state)
{
    struct kr_varbody vb;
    const char body[] = "{\"Items\":{\"ab\":\"c\\nd\",\"\xc3\xa9\":\"\\\\\"}}";

    (void)state;
    assert_int_equal(parse(body, sizeof(body) - 1, &vb), 0);
    /* "ab" + "c\nd" + "é" + "\". */
    assert_int_equal(vb.total, 2 + 3 + 2 + 1);
    kr_varbody_clear(&vb);
    kr_varbody_clear(&vb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_common_body),
        cmocka_unit_test(test_accepts_a_large_body),
        cmocka_unit_test(test_sorts_by_unsigned_bytes),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_jansson_control_escape_is_uppercase),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_items_shape),
        cmocka_unit_test(test_numbers_and_literals),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
