/*
 * Unit tests for src/cluster/freeze.c's slice length: a slice is the base under
 * load (no idle time since the last one), grows by the loop's idle time, is
 * capped, and stays the base on a loop without idle-time accounting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <uv.h>

#include "cluster/freeze.h"

static void on_timer(uv_timer_t *t)
{
    (void)t;
}

/* Runs loop until a timer of ms has fired: the loop idles meanwhile. */
static void idle_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;

    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_timer, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void test_slices(void **state)
{
    uv_loop_t loop;
    uint64_t mark = 0;

    (void)state;
    uv_loop_init(&loop);
    kr_freeze_enable(&loop);
    idle_for(&loop, 5);
    assert_int_equal(kr_freeze_slice_us(&loop, &mark, 200, 100000), 200);
    /* Busy: no idle time since. */
    assert_int_equal(kr_freeze_slice_us(&loop, &mark, 200, 100000), 200);
    idle_for(&loop, 30);
    {
        uint64_t s = kr_freeze_slice_us(&loop, &mark, 200, 100000);
        assert_true(s >= 200 + 20000 && s < 100000);
    }
    idle_for(&loop, 30);
    assert_int_equal(kr_freeze_slice_us(&loop, &mark, 200, 900), 900);
    uv_loop_close(&loop);
}

static void test_without_accounting(void **state)
{
    uv_loop_t loop;
    uint64_t mark = 0;

    (void)state;
    uv_loop_init(&loop);
    idle_for(&loop, 20);
    assert_int_equal(kr_freeze_slice_us(&loop, &mark, 200, 900), 200);
    idle_for(&loop, 20);
    assert_int_equal(kr_freeze_slice_us(&loop, &mark, 200, 900), 200);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_without_accounting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
