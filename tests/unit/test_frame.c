/*
 * Unit tests for the raft entry frames (cluster/frame.h): single and
 * batch round trips, padding, and every malformed shape refused before
 * any payload is handed out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/frame.h"
#include "common/buf.h"

static void test_single_round_trip(void **state)
{
    const char *payloads[] = {"", "a", "abcd", "abcdefg", "0123456789abcdef"};

    (void)state;
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        size_t n = strlen(payloads[i]), got_len = 99;
        size_t size = kr_frame_size(n);
        uint8_t *f = malloc(size);
        const uint8_t *got = NULL;
        struct kr_frame_reader fr;

        assert_int_equal(size % 8, 0);
        assert_true(size >= n + 4 && size < n + 12);
        memset(f, 0xee, size);
        kr_frame_write(f, payloads[i], n);
        for (size_t j = 4 + n; j < size; j++)
            assert_int_equal(f[j], 0); /* padding is written */
        assert_int_equal(kr_frame_open(&fr, f, size), 1);
        assert_false(fr.batch);
        assert_true(kr_frame_next(&fr, &got, &got_len));
        assert_int_equal(got_len, n);
        assert_memory_equal(got, payloads[i], n);
        assert_false(kr_frame_next(&fr, &got, &got_len));
        /* The frame must be exactly its size. */
        assert_int_equal(kr_frame_open(&fr, f, size - 1), 0);
        assert_int_equal(kr_frame_open(&fr, f, size + 0), 1);
        free(f);
    }
}

static uint8_t *make_batch(const char *const *p, unsigned n, size_t *size)
{
    struct kr_buf rec;
    uint8_t *f;

    kr_buf_init(&rec);
    for (unsigned i = 0; i < n; i++) {
        kr_buf_u32(&rec, (uint32_t)strlen(p[i]));
        kr_buf_append(&rec, p[i], strlen(p[i]));
    }
    *size = kr_frame_batch_size(rec.len);
    f = malloc(*size + 16);
    kr_frame_write_batch(f, n, rec.data, rec.len);
    kr_buf_free(&rec);
    return f;
}

static void test_batch_round_trip(void **state)
{
    const char *p[] = {"first", "", "third entry", "4"};
    struct kr_frame_reader fr;
    const uint8_t *got;
    size_t size, len, i = 0;
    uint8_t *f = make_batch(p, 4, &size);

    (void)state;
    assert_int_equal(size % 8, 0);
    assert_int_equal(kr_frame_open(&fr, f, size), 4);
    assert_true(fr.batch);
    while (kr_frame_next(&fr, &got, &len)) {
        assert_int_equal(len, strlen(p[i]));
        assert_memory_equal(got, p[i], len);
        i++;
    }
    assert_int_equal(i, 4);
    free(f);
}

static void test_malformed_refused(void **state)
{
    const char *p[] = {"abc", "defgh"};
    struct kr_frame_reader fr;
    size_t size;
    uint8_t *f = make_batch(p, 2, &size);
    uint8_t short_frame[3] = {0};
    uint8_t one[8] = {0x01, 0, 0, 0x80, 0, 0, 0, 0}; /* batch of 1 */

    (void)state;
    assert_int_equal(kr_frame_open(&fr, short_frame, 3), 0);
    assert_int_equal(kr_frame_open(&fr, one, 8), 0);
    /* Every truncation, and trailing bytes beyond the padding. */
    for (size_t n = 0; n < size; n++)
        assert_int_equal(kr_frame_open(&fr, f, n), 0);
    memset(f + size, 0, 16);
    assert_int_equal(kr_frame_open(&fr, f, size + 8), 0);
    /* A count larger than the records present (one more would read the
     * four bytes of padding as an empty record: the count decides). */
    f[0] = 5;
    assert_int_equal(kr_frame_open(&fr, f, size), 0);
    f[0] = 2;
    /* A record length running past the end. */
    f[4] = 200;
    assert_int_equal(kr_frame_open(&fr, f, size), 0);
    f[4] = 3;
    assert_int_equal(kr_frame_open(&fr, f, size), 2);
    /* A refused frame hands out nothing. */
    {
        const uint8_t *got;
        size_t len;
        assert_int_equal(kr_frame_open(&fr, f, 5), 0);
        assert_false(kr_frame_next(&fr, &got, &len));
    }
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_round_trip),
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_malformed_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
