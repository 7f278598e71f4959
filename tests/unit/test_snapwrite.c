/*
 * Unit tests for src/cluster/snapwrite.c: a write of the armed
 * placeholder writes exactly what its source produces, at no more than
 * the armed rate; a paced write runs in the idle class until it falls a
 * second behind; every other pwrite64 and unlink passes through with its
 * result and errno; a source that fails or overflows makes the write
 * short, as libraft expects of a failed write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cluster/snapwrite.h"
#include "common/thread.h"

/* Byte i of the test stream. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 131u + (i >> 12));
}

struct src {
    size_t len;   /* bytes to produce */
    size_t piece; /* in pieces of this size */
    int fail_at;  /* fail after this many pieces (-1: never) */
    int stall_at; /* sleep stall_ms before this piece (0: never) */
    unsigned stall_ms;
    bool idle; /* ask for the idle class (kr_snapwrite_idle) */
    /* The producing thread: whether it was in the idle class at some
     * piece, its class and nice value after the last piece, and its
     * class once it has said the idle part is over. */
    bool saw_idle;
    int class_last, nice_last, class_off;
};

static int produce(void *arg, struct kr_snapwrite_sink *s)
{
    struct src *c = arg;
    uint8_t *buf = malloc(c->piece);
    int rv = 0, n = 0;

    assert_non_null(buf);
    if (c->idle)
        kr_snapwrite_idle(s, true);
    for (size_t off = 0; off < c->len && rv == 0; off += c->piece, n++) {
        size_t k = c->len - off < c->piece ? c->len - off : c->piece;

        if (n == c->fail_at) {
            rv = -1;
            break;
        }
        if (n == c->stall_at && c->stall_at > 0)
            usleep(c->stall_ms * 1000u);
        c->saw_idle |= sched_getscheduler(0) == SCHED_IDLE;
        for (size_t i = 0; i < k; i++)
            buf[i] = pattern(off + i);
        rv = kr_snapwrite_put(s, buf, k);
    }
    c->class_last = sched_getscheduler(0);
    c->nice_last = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (c->idle)
        kr_snapwrite_idle(s, false);
    c->class_off = sched_getscheduler(0);
    free(buf);
    return rv;
}

static int temp_file(char *path)
{
    int fd;

    strcpy(path, "/var/tmp/kr-snapwrite-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    return fd;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check_file(int fd, size_t len)
{
    uint8_t *got = malloc(len);
    struct stat st;

    assert_non_null(got);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((size_t)st.st_size, len);
    assert_int_equal(pread(fd, got, len, 0), (ssize_t)len);
    for (size_t i = 0; i < len; i++)
        if (got[i] != pattern(i))
            fail_msg("byte %zu is %u, not %u", i, got[i], pattern(i));
    free(got);
}

/* Sizes around the slices (4 MiB unpaced, 512 KiB paced) and the
 * 4 KiB page of O_DIRECT. */
static void test_placeholder_is_produced(void **state)
{
    static const size_t lens[] = {1,
                                  4095,
                                  4096,
                                  (512u << 10) - 1,
                                  512u << 10,
                                  (512u << 10) + 4096 + 1,
                                  (4u << 20) - 1,
                                  4u << 20,
                                  (10u << 20) + 123};
    char path[64];

    (void)state;
    for (size_t t = 0; t < 2 * sizeof(lens) / sizeof(lens[0]); t++) {
        size_t i = t % (sizeof(lens) / sizeof(lens[0]));
        /* The second round paced, at a rate that holds nothing back. */
        uint64_t rate = t == i ? 0 : 100000000000u;
        struct src c = {.len = lens[i], .piece = 7777, .fail_at = -1};
        int fd = temp_file(path);
        void *base = kr_snapwrite_arm(c.len, rate, produce, &c);

        assert_non_null(base);
        assert_int_equal(pwrite64(fd, base, c.len, 0), (ssize_t)c.len);
        /* Disarmed by the write: the placeholder itself is unreadable. */
        errno = 0;
        assert_int_equal(pwrite64(fd, base, c.len, 0), -1);
        assert_int_equal(errno, EFAULT);
        (void)kr_snapwrite_release(base, c.len);
        check_file(fd, c.len);
        close(fd);
        unlink(path);
    }
}

static void test_rate_is_kept(void **state)
{
    struct src c = {.len = 2u << 20, .piece = 65536, .fail_at = -1};
    char path[64];
    int fd = temp_file(path);
    void *base;
    double t0;
    uint64_t ms;

    (void)state;
    base = kr_snapwrite_arm(c.len, 4000000, produce, &c); /* 4 MB/s */
    assert_non_null(base);
    t0 = now_s();
    assert_int_equal(pwrite64(fd, base, c.len, 0), (ssize_t)c.len);
    assert_true(now_s() - t0 >= 0.95 * (double)c.len / 4e6);
    ms = kr_snapwrite_release(base, c.len);
    assert_true(ms >= 500);
    check_file(fd, c.len);
    close(fd);
    unlink(path);
}

static void test_other_writes_pass_through(void **state)
{
    struct src c = {.len = 8192, .piece = 1000, .fail_at = -1};
    char path[64];
    int fd = temp_file(path);
    uint8_t buf[8192];
    void *base;

    (void)state;
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = pattern(i);
    base = kr_snapwrite_arm(c.len, 0, produce, &c);
    /* Another buffer, and the placeholder with another length. */
    assert_int_equal(pwrite64(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    errno = 0;
    assert_int_equal(pwrite64(fd, base, c.len - 1, 0), -1);
    assert_int_equal(errno, EFAULT);
    errno = 0;
    assert_int_equal(pwrite64(-1, buf, 1, 0), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(kr_snapwrite_release(base, c.len), 0); /* never written */
    check_file(fd, sizeof(buf));
    close(fd);
    unlink(path);
}

static void test_failing_source_makes_a_short_write(void **state)
{
    struct src fails = {.len = 6u << 20, .piece = 1u << 20, .fail_at = 5};
    struct src over = {.len = 4096, .piece = 4096, .fail_at = -1};
    char path[64];
    int fd = temp_file(path);
    void *base;
    ssize_t n;

    (void)state;
    base = kr_snapwrite_arm(fails.len, 0, produce, &fails);
    n = pwrite64(fd, base, fails.len, 0);
    assert_true(n >= 0 && (size_t)n < fails.len);
    (void)kr_snapwrite_release(base, fails.len);
    /* A source producing more than the placeholder's length. */
    base = kr_snapwrite_arm(over.len - 1, 0, produce, &over);
    n = pwrite64(fd, base, over.len - 1, 0);
    assert_true(n < (ssize_t)over.len - 1);
    (void)kr_snapwrite_release(base, over.len - 1);
    close(fd);
    unlink(path);
}

static void test_unlink(void **state)
{
    char dir[] = "/var/tmp/kr-unlink-XXXXXX";
    char seg[128], other[128];
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(seg, sizeof(seg), "%s/0000000000000001-0000000000000042", dir);
    snprintf(other, sizeof(other), "%s/open-1", dir);
    fd = open(seg, O_CREAT | O_WRONLY, 0600);
    close(fd);
    fd = open(other, O_CREAT | O_WRONLY, 0600);
    close(fd);
    assert_int_equal(unlink(seg), 0);
    assert_int_equal(unlink(other), 0);
    assert_int_equal(access(seg, F_OK), -1);
    assert_int_equal(access(other, F_OK), -1);
    errno = 0;
    assert_int_equal(unlink(seg), -1);
    assert_int_equal(errno, ENOENT);
    errno = 0;
    assert_int_equal(unlink(other), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(rmdir(dir), 0);
}

/* A sparse file of len bytes at path whose last byte is 'x'. */
static void make_big(const char *path, off_t len)
{
    int fd = open(path, O_CREAT | O_WRONLY, 0600);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, len - 1), 0);
    assert_int_equal(pwrite(fd, "x", 1, len - 1), 1);
    close(fd);
}

static void assert_whole(int fd, off_t len)
{
    struct stat st;
    char c = 0;

    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, len);
    assert_int_equal(pread(fd, &c, 1, len - 1), 1);
    assert_int_equal(c, 'x');
}

static void wait_shrunk(uint64_t n)
{
    for (int i = 0; i < 1000 && kr_snapwrite_shrunk() < n; i++)
        usleep(10000);
    assert_int_equal(kr_snapwrite_shrunk(), n);
}

static void test_unlink_snapshot(void **state)
{
    const off_t len = (20 << 20) + 12345;
    char dir[] = "/var/tmp/kr-unlink-XXXXXX";
    char snap[128], meta[128], keep[128];
    uint64_t n0 = kr_snapwrite_shrunk();
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(snap, sizeof(snap), "%s/snapshot-2-8193-11480856", dir);
    snprintf(meta, sizeof(meta), "%s/snapshot-2-8193-11480856.meta", dir);
    snprintf(keep, sizeof(keep), "%s/copy", dir);
    /* Its name goes at once, its blocks in steps on another thread; its
     * .meta is a plain unlink. */
    make_big(snap, len);
    fd = open(meta, O_CREAT | O_WRONLY, 0600);
    close(fd);
    assert_int_equal(unlink(snap), 0);
    assert_int_equal(access(snap, F_OK), -1);
    assert_int_equal(unlink(meta), 0);
    assert_int_equal(access(meta, F_OK), -1);
    wait_shrunk(n0 + 1);
    errno = 0;
    assert_int_equal(unlink(snap), -1);
    assert_int_equal(errno, ENOENT);
    /* Open elsewhere (libraft reading it to send): the reader keeps it
     * whole, and nothing is shrunk. */
    make_big(snap, len);
    fd = open(snap, O_RDONLY);
    assert_int_equal(unlink(snap), 0);
    assert_int_equal(access(snap, F_OK), -1);
    usleep(200000);
    assert_whole(fd, len);
    close(fd);
    assert_int_equal(kr_snapwrite_shrunk(), n0 + 1);
    /* Another name (a hard-linked copy) keeps it whole too. */
    make_big(snap, len);
    assert_int_equal(link(snap, keep), 0);
    assert_int_equal(unlink(snap), 0);
    usleep(200000);
    fd = open(keep, O_RDONLY);
    assert_true(fd >= 0);
    assert_whole(fd, len);
    close(fd);
    assert_int_equal(unlink(keep), 0);
    assert_int_equal(kr_snapwrite_shrunk(), n0 + 1);
    assert_int_equal(rmdir(dir), 0);
}

/* A removed log segment is freed the same way, and the freeing is paced
 * over all files: two 20 MiB files take 40 steps of 1 MiB at 64 MiB/s. */
static void test_unlink_segment_paced(void **state)
{
    const off_t len = 20 << 20;
    char dir[] = "/var/tmp/kr-unlink-XXXXXX";
    char seg[128], snap[128];
    uint64_t n0 = kr_snapwrite_shrunk();
    double t0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(seg, sizeof(seg), "%s/0000000000000001-0000000000002048", dir);
    snprintf(snap, sizeof(snap), "%s/snapshot-2-8193-11480856", dir);
    make_big(seg, len);
    make_big(snap, len);
    t0 = now_s();
    assert_int_equal(unlink(seg), 0);
    assert_int_equal(unlink(snap), 0);
    assert_int_equal(access(seg, F_OK), -1);
    assert_int_equal(access(snap, F_OK), -1);
    /* Counted until freed. */
    assert_true(kr_snapwrite_freeing() > 0);
    assert_true(kr_snapwrite_freeing() <= 2 * (uint64_t)len);
    wait_shrunk(n0 + 2);
    /* 40 steps of 1 MiB (the last MiB of each goes with its close),
     * and the rest after each but the last. */
    assert_true(now_s() - t0 >= 39.0 / 64.0 * 0.95);
    assert_int_equal(kr_snapwrite_freeing(), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* Writes c through a placeholder armed at rate, and checks the file. */
static void write_through(struct src *c, uint64_t rate)
{
    char path[64];
    int fd = temp_file(path);
    void *base = kr_snapwrite_arm(c->len, rate, produce, c);

    assert_non_null(base);
    assert_int_equal(pwrite64(fd, base, c->len, 0), (ssize_t)c->len);
    (void)kr_snapwrite_release(base, c->len);
    check_file(fd, c->len);
    close(fd);
    unlink(path);
}

/* A paced write's source gives way to every other thread (the idle
 * class) between its kr_snapwrite_idle calls while the write keeps its
 * pace; one that falls a second behind is starved, and leaves the class
 * for the normal one at background nice.  An unpaced write (a
 * restore's) never enters it. */
static void test_paced_write_idles_until_behind(void **state)
{
    struct src kept = {
        .len = 2u << 20, .piece = 65536, .fail_at = -1, .idle = true};
    struct src starved = {.len = 2u << 20,
                          .piece = 65536,
                          .fail_at = -1,
                          .stall_at = 1,
                          .stall_ms = 1500,
                          .idle = true};
    struct src unpaced = {
        .len = 2u << 20, .piece = 65536, .fail_at = -1, .idle = true};
    uint64_t before = kr_snapwrite_unidled();

    (void)state;
    write_through(&unpaced, 0);
    assert_false(unpaced.saw_idle);
    assert_int_equal(unpaced.class_off, SCHED_OTHER);
    if (!kr_thread_can_idle()) {
        /* Without the right to leave it, the class is never entered. */
        write_through(&kept, 100000000);
        assert_false(kept.saw_idle);
        assert_int_equal(kr_snapwrite_unidled(), before);
        skip();
    }
    write_through(&kept, 100000000); /* 100 MB/s: 21 ms */
    assert_true(kept.saw_idle);
    /* Still in it at the end, unless this machine was too busy for it
     * to keep its pace. */
    assert_int_equal(kept.class_last == SCHED_IDLE,
                     kr_snapwrite_unidled() == before);
    assert_int_equal(kept.class_off, SCHED_OTHER);
    before = kr_snapwrite_unidled();

    /* 4 MB/s: the first 512 KiB slice is due at 131 ms, and goes out
     * after the 1.5 s stall. */
    write_through(&starved, 4000000);
    assert_true(starved.saw_idle);
    assert_int_equal(starved.class_last, SCHED_OTHER);
    assert_int_equal(starved.nice_last, 10);
    assert_int_equal(starved.class_off, SCHED_OTHER);
    assert_int_equal(kr_snapwrite_unidled(), before + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placeholder_is_produced),
        cmocka_unit_test(test_rate_is_kept),
        cmocka_unit_test(test_paced_write_idles_until_behind),
        cmocka_unit_test(test_other_writes_pass_through),
        cmocka_unit_test(test_failing_source_makes_a_short_write),
        cmocka_unit_test(test_unlink),
        cmocka_unit_test(test_unlink_snapshot),
        cmocka_unit_test(test_unlink_segment_paced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
