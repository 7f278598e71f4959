/*
 * See snapwrite.h.  The armed placeholder is matched by address and
 * length, so no other write in the process is ever touched: libraft's
 * log segments go through AIO, and nothing else writes a buffer it did
 * not allocate.
 */
#include "cluster/snapwrite.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "cluster/libcnext.h"
#include "common/thread.h"
#include "common/time.h"

/*
 * Written bytes pushed to the disk at a time.  A raft log write that
 * comes while a slice is on its way waits for it, so a paced snapshot
 * (background work) goes in small slices: in the rekey benchmark (1M
 * Variables, 3 servers on 2 cores, every server writing a 411 MB
 * snapshot in turn) the median p99 of client writes over the 5 s
 * windows that held a snapshot, on a quiet machine, was 8.0 ms with
 * 4 MiB slices, 5.7 ms with 512 KiB and 5.5 ms with 1 MiB, against
 * 3.5-5 ms in the windows without one; 128 KiB was no better.  An
 * unpaced one (a staged restore's, or raft_snapshot_write_rate 0) is to
 * be on disk as soon as it can: 4 MiB slices, which this disk takes
 * faster (a leader staging a 200 MB restore took fewer snapshots of it
 * with 512 KiB).
 */
#define SLICE_PACED (512u << 10)
#define SLICE_UNPACED (4u << 20)
#define PAGE 4096u /* O_DIRECT's alignment, for every file system we run on */

/* A paced write's source runs in the idle class (common/thread.h), where
 * it asks to, while the write keeps within IDLE_LAG_NS of its pace;
 * further behind, it is starved, and goes back to the normal class (at
 * background nice) for good.  Its disk work is always in the normal
 * class. */
#define IDLE_LAG_NS 1000000000u

/* After removing an old log segment, libraft's thread rests UNLINK_REST
 * times as long as the removal took (at most UNLINK_REST_MAX_NS). */
#define UNLINK_REST 3u
#define UNLINK_REST_MAX_NS 100000000u

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off64_t);

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static pwrite_fn libc_pwrite;

static struct {
    pthread_mutex_t mu;
    void *base; /* the armed placeholder, or NULL */
    size_t len;
    uint64_t rate;
    kr_snapwrite_source_fn source;
    void *arg;
    const void *last_base; /* the last placeholder written, and how long */
    uint64_t last_ms;
} arm = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct kr_snapwrite_sink {
    int fd;
    off64_t start;  /* where the placeholder's write began */
    size_t len;     /* bytes it must come to */
    size_t done;    /* bytes written */
    uint64_t rate;  /* bytes per second, 0: unlimited */
    uint64_t t0_ns; /* the write began */
    size_t slice;   /* SLICE_PACED or SLICE_UNPACED */
    uint8_t *stage; /* slice bytes, page-aligned: what goes out next */
    size_t staged;
    int flags;   /* the file's status flags before we came */
    bool direct; /* O_DIRECT is on: slices skip the page cache */
    bool window; /* in the source's idle part (kr_snapwrite_idle) */
    bool idle;   /* the writing thread is in the idle class now */
    bool lagged; /* it fell behind in the class: not again */
};

static atomic_uint_least64_t unidled; /* paced writes that fell behind */

uint64_t kr_snapwrite_unidled(void)
{
    return atomic_load(&unidled);
}

static void resolve(void)
{
    kr_libc_next("pwrite64", &libc_pwrite, sizeof(libc_pwrite));
}

void *kr_snapwrite_arm(size_t len, uint64_t bytes_per_sec,
                       kr_snapwrite_source_fn source, void *arg)
{
    void *base;

    if (len == 0)
        return NULL;
    base = mmap(NULL, len, PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    pthread_mutex_lock(&arm.mu);
    arm.base = base;
    arm.len = len;
    arm.rate = bytes_per_sec;
    arm.source = source;
    arm.arg = arg;
    pthread_mutex_unlock(&arm.mu);
    return base;
}

uint64_t kr_snapwrite_release(void *base, size_t len)
{
    uint64_t ms = 0;

    if (base == NULL)
        return 0;
    pthread_mutex_lock(&arm.mu);
    if (arm.base == base) {
        arm.base = NULL;
        arm.source = NULL;
    }
    if (arm.last_base == base) {
        ms = arm.last_ms;
        arm.last_base = NULL;
    }
    pthread_mutex_unlock(&arm.mu);
    (void)munmap(base, len);
    return ms;
}

/* Puts the writing thread into the idle class, or back, as want says;
 * s->idle follows what it is. */
static void set_idle(struct kr_snapwrite_sink *s, bool want)
{
    if (want && !s->idle)
        s->idle = kr_thread_idle();
    else if (!want && s->idle && kr_thread_unidle())
        s->idle = false;
}

/*
 * Writes the staged bytes at the next offset and waits for them to reach
 * the disk: with O_DIRECT (a slice is page-aligned in memory and on
 * disk) they never enter the page cache, which on a VM saved a second
 * of system time per 400 MB in fresh page-cache pages; without it (the
 * file system refuses O_DIRECT, or the tail is not a whole page) they
 * are pushed with sync_file_range and dropped from the cache: nobody
 * reads a snapshot back except at startup.  Then the rest the rate asks
 * for.
 */
static int write_out(struct kr_snapwrite_sink *s)
{
    off64_t off = s->start + (off64_t)s->done;
    size_t n = s->staged, w = 0;

    /* The disk work in the normal class: the file system's journal may
     * wait for a thread that is in the middle of it. */
    set_idle(s, false);
    if (s->direct && n % PAGE != 0) {
        (void)fcntl(s->fd, F_SETFL, s->flags);
        s->direct = false;
    }
    while (w < n) {
        ssize_t k = libc_pwrite(s->fd, s->stage + w, n - w, off + (off64_t)w);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        w += (size_t)k;
    }
    if (!s->direct && n > 0) {
        (void)sync_file_range(s->fd, off, (off64_t)n,
                              SYNC_FILE_RANGE_WAIT_BEFORE |
                                  SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
        (void)posix_fadvise(s->fd, off, (off64_t)n, POSIX_FADV_DONTNEED);
    }
    s->done += n;
    s->staged = 0;
    if (s->rate > 0) {
        uint64_t due =
            s->t0_ns + (uint64_t)((double)s->done * 1e9 / (double)s->rate);

        if (s->window && !s->lagged && kr_time_mono_ns() > due + IDLE_LAG_NS) {
            s->lagged = true;
            atomic_fetch_add(&unidled, 1);
        }
        kr_time_sleep_until_ns(due);
        set_idle(s, s->window && !s->lagged);
    }
    return 0;
}

void kr_snapwrite_idle(struct kr_snapwrite_sink *s, bool on)
{
    s->window = on && s->rate > 0;
    set_idle(s, s->window && !s->lagged);
}

int kr_snapwrite_put(struct kr_snapwrite_sink *s, const void *p, size_t n)
{
    const uint8_t *c = p;

    if (n > s->len - s->done - s->staged) {
        errno = EOVERFLOW;
        return -1;
    }
    while (n > 0) {
        size_t k = s->slice - s->staged < n ? s->slice - s->staged : n;

        memcpy(s->stage + s->staged, c, k);
        s->staged += k;
        c += k;
        n -= k;
        if (s->staged == s->slice && write_out(s) != 0)
            return -1;
    }
    return 0;
}

/* True (and disarmed) when buf/n is the armed placeholder. */
static bool take(const void *buf, size_t n, struct kr_snapwrite_sink *s,
                 kr_snapwrite_source_fn *source, void **arg)
{
    bool hit;

    pthread_mutex_lock(&arm.mu);
    hit = arm.base != NULL && arm.base == buf && arm.len == n;
    if (hit) {
        s->rate = arm.rate;
        *source = arm.source;
        *arg = arm.arg;
        arm.source = NULL;
        arm.base = NULL;
    }
    pthread_mutex_unlock(&arm.mu);
    return hit;
}

struct run {
    kr_snapwrite_source_fn source;
    void *arg;
    struct kr_snapwrite_sink *s;
    int rv;
    int err; /* errno, when rv is -1 */
};

static void *run_main(void *p)
{
    struct run *r = p;

    r->rv = r->source(r->arg, r->s);
    kr_snapwrite_idle(r->s, false); /* inline, this may be a pool thread */
    if (r->rv == 0)
        r->rv = write_out(r->s);
    r->err = errno;
    return NULL;
}

/* The source and the last slice, on a thread of its own at background
 * priority while libraft's (a pool thread) waits for it: a pool thread
 * may only lower its priority where it can raise it back (thread.h).
 * Inline if there is no thread to be had. */
static void *run_bg(void *p)
{
    kr_thread_background_own();
    return run_main(p);
}

static int run(kr_snapwrite_source_fn source, void *arg,
               struct kr_snapwrite_sink *s)
{
    struct run r = {.source = source, .arg = arg, .s = s, .rv = -1};
    pthread_t t;

    if (pthread_create(&t, NULL, run_bg, &r) != 0)
        run_main(&r);
    else
        pthread_join(t, NULL);
    errno = r.err;
    return r.rv;
}

/* Replaces libc's pwrite64 for the whole process (see snapwrite.h). */
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    struct kr_snapwrite_sink s = {.fd = fd, .start = off, .len = n};
    kr_snapwrite_source_fn source;
    void *arg;
    int rv = -1;

    pthread_once(&resolve_once, resolve);
    if (n == 0 || !take(buf, n, &s, &source, &arg))
        return libc_pwrite(fd, buf, n, off);
    s.t0_ns = kr_time_mono_ns();
    s.slice = s.rate > 0 ? SLICE_PACED : SLICE_UNPACED;
    if (posix_memalign((void **)&s.stage, PAGE, s.slice) != 0) {
        s.stage = NULL;
        errno = ENOMEM;
    } else {
        s.flags = fcntl(fd, F_GETFL);
        s.direct = s.flags >= 0 && off % PAGE == 0 &&
                   fcntl(fd, F_SETFL, s.flags | O_DIRECT) == 0;
        rv = run(source, arg, &s);
        if (s.direct)
            (void)fcntl(fd, F_SETFL, s.flags);
        /* It held the head records, which carry the aead KEKs. */
        explicit_bzero(s.stage, s.slice);
        free(s.stage);
    }
    pthread_mutex_lock(&arm.mu);
    arm.last_base = buf;
    arm.last_ms = (kr_time_mono_ns() - s.t0_ns) / 1000000u;
    pthread_mutex_unlock(&arm.mu);
    if (rv != 0 && s.done == 0)
        return -1;
    /* Short when the source failed or came up short: libraft then
     * reports the snapshot as failed and keeps the previous one. */
    return (ssize_t)s.done;
}

/* A closed raft log segment's name: two 16-digit indexes. */
static bool is_segment(const char *path)
{
    const char *b = strrchr(path, '/');

    b = b != NULL ? b + 1 : path;
    if (strlen(b) != 33 || b[16] != '-')
        return false;
    for (int i = 0; i < 33; i++)
        if (i != 16 && (b[i] < '0' || b[i] > '9'))
            return false;
    return true;
}

/* A raft snapshot's data file, as libraft names it:
 * "snapshot-<term>-<index>-<ms>" (not its ".meta"). */
static bool is_snapshot_data(const char *path)
{
    const char *b = strrchr(path, '/');
    unsigned numbers = 0;

    b = b != NULL ? b + 1 : path;
    if (strncmp(b, "snapshot-", 9) != 0)
        return false;
    for (b += 9; *b != '\0'; numbers++) {
        if (*b < '0' || *b > '9')
            return false;
        while (*b >= '0' && *b <= '9')
            b++;
        if (*b == '-')
            b++;
        else if (*b != '\0')
            return false;
    }
    return numbers == 3;
}

typedef int (*unlink_fn)(const char *);

static pthread_once_t unlink_once = PTHREAD_ONCE_INIT;
static unlink_fn libc_unlink;

static void resolve_unlink(void)
{
    kr_libc_next("unlink", &libc_unlink, sizeof(libc_unlink));
}

/* When the rest after disk work that began at t0 ends: UNLINK_REST
 * times as long as it took, from now, at most UNLINK_REST_MAX_NS. */
static uint64_t rest_due(uint64_t t0)
{
    uint64_t now = kr_time_mono_ns(), busy = now - t0;

    if (busy > UNLINK_REST_MAX_NS / UNLINK_REST)
        busy = UNLINK_REST_MAX_NS / UNLINK_REST;
    return now + busy * UNLINK_REST;
}

/*
 * A removed raft snapshot's or log segment's blocks are freed SHRINK_STEP
 * at a time, from the end, each step on the disk (fdatasync), at
 * SHRINK_RATE over all files, on one thread of background priority.
 * Unlinking a 411 MB file in one go held ext4's journal for 110-120 ms
 * on this VM, and 4 KiB O_DSYNC writes next to it (the raft log's)
 * waited up to 71-82 ms (bench/disk.py).  In 8 MiB steps, each followed
 * by a rest three times its length, the journal was no longer held, but
 * the disk is mounted with discard: every freed extent is discarded at
 * the journal commit, an 8 MiB discard took the disk 3 ms, and over the
 * 0.7-0.8 s an old snapshot took to free the raft log's sync writes had
 * a p99 of 3.1 ms (max 9.5 ms), against 0.5 ms the rest of a full rekey
 * (perf record of block:block_rq_issue/complete).  1 MiB steps at
 * 64 MiB/s keep each discard short and rare: in the same trace the
 * 430-530 MB freed after each snapshot went out over 6-7 s, and the
 * log's writes kept a p99 of 0.3-0.5 ms.
 *
 * The name goes first, as a plain unlink would remove it, and the file's
 * last descriptor goes to the thread, so libraft's snapshot work (which
 * makes these removals, and which a follower's log appends wait for
 * while it installs a snapshot) is not held up.  Only a file that
 * nothing else can see is shrunk: one name, a regular file, and no other
 * open descriptor anywhere (a write lease is refused otherwise; once the
 * name is gone, nobody opens it anew).  Anything else, and a file
 * beyond SHRINK_QUEUE_MAX waiting ones, is a plain unlink.
 */
#define SHRINK_STEP (1 << 20)
#define SHRINK_RATE (64u << 20) /* bytes per second */
#define SHRINK_QUEUE_MAX 256

static atomic_uint_least64_t shrunk;  /* files freed in steps */
static atomic_uint_least64_t freeing; /* bytes still to free */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct {
        int fd;
        off_t size;
    } files[SHRINK_QUEUE_MAX]; /* a ring of files to free */
    size_t first, n;
    bool started;
} shq = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

uint64_t kr_snapwrite_shrunk(void)
{
    return atomic_load(&shrunk);
}

uint64_t kr_snapwrite_freeing(void)
{
    return atomic_load(&freeing);
}

/* When the next step may begin after one that began at t0: when
 * SHRINK_RATE allows, or after the rest a removal gets, if that is later
 * (a slow disk). */
static uint64_t step_due(uint64_t t0)
{
    uint64_t rated = t0 + (uint64_t)SHRINK_STEP * 1000000000u / SHRINK_RATE;
    uint64_t rest = rest_due(t0);

    return rest > rated ? rest : rated;
}

static int truncate_synced(int fd, off_t size)
{
    int rv;

    do
        rv = ftruncate(fd, size);
    while (rv != 0 && errno == EINTR);
    while (rv == 0 && fdatasync(fd) != 0) {
        if (errno != EINTR)
            rv = -1;
    }
    return rv;
}

/* Frees the blocks of fd, of size bytes, from the end, a step at a time
 * (its close is the last step), and closes it.  *due: when the next step
 * may begin, across files. */
static void shrink_file(int fd, off_t size, uint64_t *due)
{
    off_t left = size;
    uint64_t t_close;

    while (left > SHRINK_STEP) {
        uint64_t t0;

        kr_time_sleep_until_ns(*due);
        t0 = kr_time_mono_ns();
        if (truncate_synced(fd, left - SHRINK_STEP) != 0)
            break; /* the close frees the rest */
        left -= SHRINK_STEP;
        atomic_fetch_sub(&freeing, SHRINK_STEP);
        *due = step_due(t0);
    }
    kr_time_sleep_until_ns(*due);
    t_close = kr_time_mono_ns();
    close(fd);
    *due = step_due(t_close);
    atomic_fetch_sub(&freeing, (uint64_t)left);
    atomic_fetch_add(&shrunk, 1);
}

static void *shrink_main(void *arg)
{
    uint64_t due = 0;

    (void)arg;
    kr_thread_background_own();
    pthread_mutex_lock(&shq.mu);
    for (;;) {
        int fd;
        off_t size;

        while (shq.n == 0)
            pthread_cond_wait(&shq.cv, &shq.mu);
        fd = shq.files[shq.first].fd;
        size = shq.files[shq.first].size;
        shq.first = (shq.first + 1) % SHRINK_QUEUE_MAX;
        shq.n--;
        pthread_mutex_unlock(&shq.mu);
        shrink_file(fd, size, &due);
        pthread_mutex_lock(&shq.mu);
    }
    return NULL;
}

/* Hands fd, of size bytes, to the shrinking thread (started on first
 * use); false if it cannot take it. */
static bool shrink_later(int fd, off_t size)
{
    bool ok = false;

    pthread_mutex_lock(&shq.mu);
    if (!shq.started) {
        pthread_attr_t attr;
        pthread_t t;

        if (pthread_attr_init(&attr) == 0) {
            shq.started = pthread_attr_setdetachstate(
                              &attr, PTHREAD_CREATE_DETACHED) == 0 &&
                          pthread_create(&t, &attr, shrink_main, NULL) == 0;
            pthread_attr_destroy(&attr);
        }
    }
    if (shq.started && shq.n < SHRINK_QUEUE_MAX) {
        size_t at = (shq.first + shq.n) % SHRINK_QUEUE_MAX;

        shq.files[at].fd = fd;
        shq.files[at].size = size;
        shq.n++;
        atomic_fetch_add(&freeing, (uint64_t)size);
        pthread_cond_signal(&shq.cv);
        ok = true;
    }
    pthread_mutex_unlock(&shq.mu);
    return ok;
}

/* Removes path's name, and hands its blocks to the shrinking thread if
 * nothing else can see the file (see above); *handed says whether it
 * did.  As unlink(2). */
static int unlink_shrinking(const char *path, bool *handed)
{
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    bool alone;
    int rv, err;

    *handed = false;
    alone = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_nlink == 1 && st.st_size > SHRINK_STEP;
    rv = libc_unlink(path);
    err = errno;
    /* A write lease is refused while anyone else has the file open: it
     * is theirs until they close it. */
    if (alone && rv == 0 && fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
        (void)fcntl(fd, F_SETLEASE, F_UNLCK);
        *handed = shrink_later(fd, st.st_size);
    }
    if (fd >= 0 && !*handed)
        close(fd);
    errno = err;
    return rv;
}

/* Replaces libc's unlink for the whole process (see snapwrite.h). */
int unlink(const char *path)
{
    bool segment, handed = false;
    uint64_t t0;
    int rv, err;

    pthread_once(&unlink_once, resolve_unlink);
    segment = is_segment(path);
    t0 = kr_time_mono_ns();
    if (segment || is_snapshot_data(path))
        rv = unlink_shrinking(path, &handed);
    else
        rv = libc_unlink(path);
    err = errno;
    /* A segment whose blocks went at once: the journal's work with it is
     * spread out. */
    if (segment && !handed)
        kr_time_sleep_until_ns(rest_due(t0));
    errno = err;
    return rv;
}
