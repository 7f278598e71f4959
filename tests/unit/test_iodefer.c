/*
 * Unit tests for src/cluster/iodefer.c: syscall() still makes every other
 * system call with its arguments, return value and errno; io_destroy
 * returns at once and the context really is destroyed, later, by the
 * worker (the kernel then no longer knows it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cluster/iodefer.h"

static void test_other_calls_pass_through(void **state)
{
    int fds[2];
    char buf[4] = {0};

    (void)state;
    assert_int_equal(syscall(SYS_getpid), getpid());
    /* Return value and errno of a failing call. */
    errno = 0;
    assert_int_equal(syscall(SYS_close, -1), -1);
    assert_int_equal(errno, EBADF);
    /* Several arguments, in order. */
    assert_int_equal(syscall(SYS_pipe2, fds, O_CLOEXEC), 0);
    assert_int_equal(syscall(SYS_write, fds[1], "abc", 3), 3);
    assert_int_equal(syscall(SYS_read, fds[0], buf, 3), 3);
    assert_string_equal(buf, "abc");
    close(fds[0]);
    close(fds[1]);
}

/* True once the kernel no longer knows ctx: io_getevents says EINVAL. */
static int ctx_gone(aio_context_t ctx)
{
    struct io_event ev;
    struct timespec zero = {0, 0};

    errno = 0;
    return syscall(SYS_io_getevents, ctx, 0, 1, &ev, &zero) == -1 &&
           errno == EINVAL;
}

static void test_io_destroy_is_deferred_and_done(void **state)
{
    aio_context_t ctx = 0;
    uint64_t before = kr_iodefer_count();
    struct timespec ms = {0, 1000000};
    int waited = 0;

    (void)state;
    assert_int_equal(syscall(SYS_io_setup, 8, &ctx), 0);
    assert_false(ctx_gone(ctx));
    assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
    assert_int_equal(kr_iodefer_count(), before + 1);
    /* The worker destroys it; an RCU grace period is tens of ms. */
    while (!ctx_gone(ctx) && waited < 5000) {
        nanosleep(&ms, NULL);
        waited++;
    }
    assert_true(ctx_gone(ctx));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_other_calls_pass_through),
        cmocka_unit_test(test_io_destroy_is_deferred_and_done),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
