/*
 * Unit tests for src/cluster/rheap.c: libraft's frees on the installing
 * (loop) thread wait in a batch until a flush, a full batch, a turn with
 * enough of them, or uninstall, and are then carried out by the freeing thread;
 * frees on other threads happen at once.  Blocks expected ahead are made
 * zeroed, taken by a calloc of exactly their size, and dropped when no longer
 * expected.  Under AddressSanitizer (make asan) a
 * block freed twice or never would fail the run too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <time.h>

#include <raft.h>
#include <uv.h>

#include "cluster/rheap.h"

/* Waits up to 5 s for kr_rheap_freed() to reach want; returns it. */
static uint64_t wait_freed(uint64_t want)
{
    struct timespec ms = {0, 1000000};

    for (int i = 0; i < 5000 && kr_rheap_freed() < want; i++)
        nanosleep(&ms, NULL);
    return kr_rheap_freed();
}

/* Gives the freeing thread time to do what it (wrongly) might. */
static void settle(void)
{
    struct timespec t = {0, 50000000};

    nanosleep(&t, NULL);
}

static int setup(void **state)
{
    (void)state;
    return kr_rheap_install();
}

static int teardown(void **state)
{
    (void)state;
    kr_rheap_uninstall();
    return 0;
}

static void test_loop_frees_wait_for_a_flush(void **state)
{
    uint64_t before = kr_rheap_freed();
    void *p = raft_malloc(100);

    (void)state;
    assert_non_null(p);
    raft_free(p);
    raft_free(NULL);
    settle();
    assert_int_equal(kr_rheap_freed(), before);
    kr_rheap_flush();
    assert_int_equal(wait_freed(before + 1), before + 1);
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Blocks of a MiB, as the pacing tests free them. */
#define MIB (1u << 20)

/* Seconds n blocks of a MiB take to wipe at RHEAP_FREE_RATE, after the
 * first RHEAP_FREE_BURST. */
static double paced_s(unsigned n)
{
    return (double)((size_t)n * MIB - RHEAP_FREE_BURST) /
           (double)RHEAP_FREE_RATE;
}

/* Frees n blocks of a MiB on the loop thread and hands them over.  Each
 * is written first, so that wiping it takes no page faults. */
static void free_blocks(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        void *p = raft_malloc(MIB);
        assert_non_null(p);
        memset(p, 0x5a, MIB);
        raft_free(p);
    }
    kr_rheap_flush();
}

/* A compaction's worth of frees is wiped at RHEAP_FREE_RATE after the
 * first RHEAP_FREE_BURST, not as fast as the thread can go. */
static void test_frees_are_paced(void **state)
{
    const unsigned n = 64;
    uint64_t before = kr_rheap_freed();
    double t0 = now_s();

    (void)state;
    free_blocks(n);
    assert_int_equal(wait_freed(before + n), before + n);
    assert_true(now_s() - t0 >= paced_s(n) * 0.95);
}

/* Uninstalling frees what waits without the pace: 160 MiB would take
 * 0.56 s at it. */
static void test_uninstall_does_not_keep_the_pace(void **state)
{
    const unsigned n = 160;
    uint64_t before = kr_rheap_freed();
    double t0;

    (void)state;
    free_blocks(n);
    t0 = now_s();
    kr_rheap_uninstall();
    assert_int_equal(kr_rheap_freed(), before + n);
    assert_true(now_s() - t0 < paced_s(n) * 0.7);
}

static void other_thread(void *arg)
{
    raft_free(arg);
}

static void test_other_threads_free_at_once(void **state)
{
    uint64_t before = kr_rheap_freed();
    uv_thread_t t;
    void *p = raft_calloc(4, 32);

    (void)state;
    assert_non_null(p);
    assert_int_equal(uv_thread_create(&t, other_thread, p), 0);
    assert_int_equal(uv_thread_join(&t), 0);
    kr_rheap_flush();
    settle();
    /* Not batched: nothing for the freeing thread. */
    assert_int_equal(kr_rheap_freed(), before);
}

static void test_a_full_batch_goes_without_a_flush(void **state)
{
    uint64_t before = kr_rheap_freed();

    (void)state;
    for (unsigned i = 0; i < RHEAP_BATCH; i++) {
        void *p = raft_malloc(16);
        assert_non_null(p);
        raft_free(p);
    }
    assert_int_equal(wait_freed(before + RHEAP_BATCH), before + RHEAP_BATCH);
}

static void test_a_turn_hands_over_many_not_few(void **state)
{
    uint64_t before = kr_rheap_freed();

    (void)state;
    for (unsigned i = 0; i + 1 < RHEAP_TURN_MIN; i++) {
        void *p = raft_malloc(1u << 20);
        assert_non_null(p);
        raft_free(p);
    }
    kr_rheap_turn();
    settle();
    assert_int_equal(kr_rheap_freed(), before);
    raft_free(raft_malloc(32));
    kr_rheap_turn();
    assert_int_equal(wait_freed(before + RHEAP_TURN_MIN),
                     before + RHEAP_TURN_MIN);
    /* Batches are reused: a second round works the same. */
    for (unsigned i = 0; i < 2 * RHEAP_BATCH; i++)
        raft_free(raft_malloc(16));
    assert_int_equal(wait_freed(before + RHEAP_TURN_MIN + 2 * RHEAP_BATCH),
                     before + RHEAP_TURN_MIN + 2 * RHEAP_BATCH);
}

static void test_aligned_blocks(void **state)
{
    uint64_t before = kr_rheap_freed();
    void *p = raft_aligned_alloc(4096, 100);

    (void)state;
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 4096, 0);
    raft_aligned_free(4096, p);
    kr_rheap_flush();
    assert_int_equal(wait_freed(before + 1), before + 1);
}

/* A block that grows moves to a new one with its bytes, and the old
 * goes through the heap's free (wiped, batched): never realloc's own
 * free.  One with room stays put. */
static void test_realloc_frees_through_the_heap(void **state)
{
    uint64_t before = kr_rheap_freed();
    unsigned char *p = raft_malloc(64), *q;

    (void)state;
    assert_non_null(p);
    memset(p, 0xa5, 64);
    q = raft_realloc(p, 32);
    assert_ptr_equal(q, p);
    q = raft_realloc(p, 256 << 10);
    assert_non_null(q);
    for (int i = 0; i < 32; i++)
        assert_int_equal(q[i], 0xa5);
    settle();
    assert_int_equal(kr_rheap_freed(), before);
    kr_rheap_flush();
    assert_int_equal(wait_freed(before + 1), before + 1);
    raft_free(q);
    kr_rheap_flush();
    assert_int_equal(wait_freed(before + 2), before + 2);
}

static void test_uninstall_frees_what_waits(void **state)
{
    uint64_t before = kr_rheap_freed();
    void *p;

    (void)state;
    for (int i = 0; i < 10; i++) {
        p = raft_realloc(NULL, 64);
        assert_non_null(p);
        raft_free(p);
    }
    kr_rheap_uninstall();
    /* uninstall waited for the thread: every block is freed now. */
    assert_int_equal(kr_rheap_freed(), before + 10);
    /* The default heap is back: a free is not batched. */
    p = raft_malloc(8);
    assert_non_null(p);
    raft_free(p);
    assert_int_equal(kr_rheap_freed(), before + 10);
    /* Installing again works (teardown uninstalls). */
    assert_int_equal(kr_rheap_install(), 0);
}

/* Waits up to 5 s for kr_rheap_spares_ready() to be want. */
static size_t wait_ready(size_t want)
{
    struct timespec ms = {0, 1000000};

    for (int i = 0; i < 5000 && kr_rheap_spares_ready() != want; i++)
        nanosleep(&ms, NULL);
    return kr_rheap_spares_ready();
}

#define SPARE (2u << 20)

static void test_an_expected_block_is_made_and_taken(void **state)
{
    uint64_t used = kr_rheap_spares_used();
    size_t sizes[] = {SPARE, 4096}; /* the small one is ignored */
    unsigned char *p;

    (void)state;
    kr_rheap_expect(sizes, 2);
    assert_int_equal(wait_ready(1), 1);
    settle();
    assert_int_equal(kr_rheap_spares_ready(), 1);
    /* Another size does not take it. */
    p = raft_calloc(SPARE / 64, 32);
    assert_non_null(p);
    raft_free(p);
    assert_int_equal(kr_rheap_spares_used(), used);
    p = raft_calloc(SPARE / 32, 32);
    assert_non_null(p);
    assert_int_equal(kr_rheap_spares_used(), used + 1);
    assert_int_equal(kr_rheap_spares_ready(), 0);
    for (size_t i = 0; i < SPARE; i++)
        if (p[i] != 0)
            fail_msg("byte %zu of the block made ahead is %u", i, p[i]);
    raft_free(p);
    /* Taken means gone: the same size again is not made again unless
     * expected again. */
    settle();
    assert_int_equal(kr_rheap_spares_ready(), 0);
}

static void test_a_block_no_longer_expected_is_dropped(void **state)
{
    uint64_t used = kr_rheap_spares_used();
    size_t sizes[] = {SPARE, 2 * SPARE, 3 * SPARE};
    void *p;

    (void)state;
    /* Two at most. */
    kr_rheap_expect(sizes, 3);
    assert_int_equal(wait_ready(RHEAP_SPARES), RHEAP_SPARES);
    settle();
    assert_int_equal(kr_rheap_spares_ready(), RHEAP_SPARES);
    /* Only the second is still expected. */
    kr_rheap_expect(sizes + 1, 1);
    assert_int_equal(wait_ready(1), 1);
    p = raft_calloc(1, SPARE);
    assert_non_null(p);
    raft_free(p);
    assert_int_equal(kr_rheap_spares_used(), used);
    p = raft_calloc(1, 2 * SPARE);
    assert_non_null(p);
    raft_free(p);
    assert_int_equal(kr_rheap_spares_used(), used + 1);
    kr_rheap_expect(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loop_frees_wait_for_a_flush, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_threads_free_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_full_batch_goes_without_a_flush,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_turn_hands_over_many_not_few,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_aligned_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frees_are_paced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uninstall_does_not_keep_the_pace,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_realloc_frees_through_the_heap,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_uninstall_frees_what_waits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_an_expected_block_is_made_and_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_block_no_longer_expected_is_dropped, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
