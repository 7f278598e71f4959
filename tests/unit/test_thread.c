/*
 * Unit tests for src/common/thread.c: background priority is given only
 * where it can be taken back, since the workers are libuv pool threads
 * that also run libraft's disk work; a thread of our own may keep it.
 * The idle class likewise, and leaving it keeps the thread's nice value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/thread.h"

static int nice_now(void)
{
    errno = 0;
    return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

/* The child's checks, as exit codes (cmocka's asserts do not cross a
 * fork): without the right to raise a priority back, the pool's kind of
 * background leaves it alone; a thread's own may still lower it. */
static int unprivileged_child(void)
{
    struct rlimit none = {0, 0};
    int saved;

    if (setrlimit(RLIMIT_NICE, &none) != 0)
        return 10;
    if (geteuid() == 0 && (setresgid(65534, 65534, 65534) != 0 ||
                           setresuid(65534, 65534, 65534) != 0))
        return 11;
    if (nice_now() != 0)
        return 12;
    /* The premise: this process cannot undo a lowered priority. */
    if (setpriority(PRIO_PROCESS, 0, 1) != 0)
        return 13;
    if (setpriority(PRIO_PROCESS, 0, 0) == 0 || nice_now() != 1)
        return 14;
    if (kr_thread_can_background())
        return 1;
    saved = kr_thread_background();
    if (saved != 1 || nice_now() != 1)
        return 2;
    kr_thread_foreground(saved);
    if (nice_now() != 1)
        return 3;
    kr_thread_background_own();
    if (nice_now() != 10)
        return 4;
    /* It could not leave the idle class again: it is never entered. */
    if (kr_thread_can_idle() || kr_thread_idle() ||
        sched_getscheduler(0) != SCHED_OTHER)
        return 5;
    return 0;
}

/* First, while this process has not probed yet: the fork must probe
 * afresh. */
static void test_unprivileged_keeps_priority(void **state)
{
    pid_t pid;
    int status = -1;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(unprivileged_child());
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_background_is_undone(void **state)
{
    int before = nice_now(), saved;

    (void)state;
    if (!kr_thread_can_background())
        skip(); /* not run as root, nor with LimitNICE */
    saved = kr_thread_background();
    assert_int_equal(saved, before);
    assert_int_equal(nice_now(), before < 10 ? 10 : before);
    kr_thread_foreground(saved);
    assert_int_equal(nice_now(), before);
}

struct idle_seen {
    bool idle;     /* what kr_thread_idle said */
    int class_in;  /* the class after it */
    int class_out; /* and after kr_thread_unidle */
    int nice_in, nice_out;
};

static void *idle_main(void *arg)
{
    struct idle_seen *s = arg;

    kr_thread_background_own();
    s->idle = kr_thread_idle();
    s->class_in = sched_getscheduler(0);
    s->nice_in = nice_now();
    (void)kr_thread_unidle();
    s->class_out = sched_getscheduler(0);
    s->nice_out = nice_now();
    return NULL;
}

/* On a thread of its own, as snapwrite's writer uses it. */
static void test_idle_is_left(void **state)
{
    struct idle_seen s = {0};
    pthread_t t;

    (void)state;
    if (!kr_thread_can_idle())
        skip(); /* not run as root, nor with LimitNICE; or no SCHED_IDLE */
    assert_int_equal(pthread_create(&t, NULL, idle_main, &s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(s.idle);
    assert_int_equal(s.class_in, SCHED_IDLE);
    assert_int_equal(s.nice_in, 10);
    assert_int_equal(s.class_out, SCHED_OTHER);
    assert_int_equal(s.nice_out, 10);
    /* This thread was not touched. */
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unprivileged_keeps_priority),
        cmocka_unit_test(test_background_is_undone),
        cmocka_unit_test(test_idle_is_left),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
