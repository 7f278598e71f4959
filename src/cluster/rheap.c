/* See rheap.h. */
#include "cluster/rheap.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <raft.h>
#include <uv.h>

#include "common/err.h"
#include "common/thread.h"
#include "common/time.h"

/* Up to RHEAP_BATCH pointers to free.  Batches are kept for reuse, so
 * handing one over neither allocates nor touches fresh pages. */
struct batch {
    struct batch *next;
    size_t n;
    void *p[RHEAP_BATCH];
};

/* A zeroed block made ahead for a calloc of exactly bytes (rheap.h). */
enum spare_state {
    SPARE_NONE,      /* a free slot */
    SPARE_WANTED,    /* asked for; the thread has not started it */
    SPARE_MAKING,    /* the thread is making it */
    SPARE_CANCELLED, /* the same, no longer wanted: freed once made */
    SPARE_READY,     /* p holds it */
    SPARE_DROP,      /* p is no longer wanted: the thread frees it */
};
struct spare {
    size_t bytes;
    void *p;
    enum spare_state state;
};

static struct {
    bool installed;
    bool stop;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    struct batch *full, **full_tail; /* under mu: handed over */
    struct batch *empty;             /* under mu: for reuse */
    size_t n_empty;
    struct spare spares[RHEAP_SPARES]; /* under mu */
    atomic_uint_fast64_t freed;
    atomic_uint_fast64_t spares_used;
    atomic_bool hurry; /* uninstalling: free the rest unpaced */
    uint64_t paced_us; /* freeing thread: when its wiping catches up */
} H;

/*
 * jemalloc's non-standard API, looked up at install time: present when
 * the executable is linked with jemalloc (src/main.c), absent in the
 * unit tests and the sanitizer build, which use the C library's heap.
 * The flag encodings are jemalloc's ABI (MALLOCX_ARENA and
 * MALLOCX_TCACHE_NONE in jemalloc.h).
 */
#define JE_ARENA(a) ((int)(((unsigned)(a) + 1u) << 20))
#define JE_TCACHE_NONE ((int)(1 << 8))
#define JE_ZERO ((int)0x40)

static struct {
    void *(*mallocx)(size_t size, int flags);
    int (*mallctl)(const char *name, void *oldp, size_t *oldlenp, void *newp,
                   size_t newlen);
    int flags; /* 0: not in use */
    unsigned arena;
} J;

/* Empty batches kept for reuse beyond what is in flight. */
#define EMPTY_KEEP 64

/* Loop thread only: the batch being filled (NULL: none yet). */
static _Thread_local bool on_loop;
static struct batch *pending;

/* libraft's blocks hold log entries, aead KEKs among them, and the
 * arena keeps its pages: each is wiped before it is freed. */
static size_t wipe_free(void *p)
{
    size_t bytes = malloc_usable_size(p);

    explicit_bzero(p, bytes);
    free(p);
    return bytes;
}

/*
 * Freeing thread: after wiping bytes, sleeps as long as it is ahead of
 * RHEAP_FREE_RATE, beyond the first RHEAP_FREE_BURST of a run (rheap.h,
 * "Paced").  Sleeps of under a millisecond wait for the next call.
 */
static void pace(size_t bytes)
{
    const uint64_t burst_us =
        (uint64_t)RHEAP_FREE_BURST * 1000000u / RHEAP_FREE_RATE;
    uint64_t now = kr_time_mono_us();

    if (H.paced_us + burst_us < now)
        H.paced_us = now - burst_us;
    H.paced_us += (uint64_t)bytes * 1000000u / RHEAP_FREE_RATE;
    if (H.paced_us > now + 1000 && !atomic_load(&H.hurry))
        kr_time_sleep_until_ns(H.paced_us * 1000u);
}

static void batch_free_all(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        pace(wipe_free(b->p[i]));
    atomic_fetch_add(&H.freed, b->n);
    b->n = 0;
}

/* Under H.mu: an empty batch back to the pool (or freed, past
 * EMPTY_KEEP, after dropping the lock). */
static void batch_recycle(struct batch *b)
{
    if (H.n_empty < EMPTY_KEEP) {
        b->next = H.empty;
        H.empty = b;
        H.n_empty++;
        return;
    }
    uv_mutex_unlock(&H.mu);
    free(b);
    uv_mutex_lock(&H.mu);
}

/* Under H.mu: a spare the thread must make or drop, or NULL. */
static struct spare *spare_work(void)
{
    for (size_t i = 0; i < RHEAP_SPARES; i++)
        if (H.spares[i].state == SPARE_WANTED ||
            H.spares[i].state == SPARE_DROP)
            return &H.spares[i];
    return NULL;
}

/* A zeroed block of bytes with every page already faulted in (and so
 * zeroed and locked by the kernel) here rather than on the loop. */
static void *prefault(size_t bytes)
{
    volatile uint8_t *p = calloc(1, bytes);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    if (p == NULL)
        return NULL;
    for (size_t off = 0; off < bytes; off += page)
        p[off] = 0;
    p[bytes - 1] = 0;
    return (void *)p;
}

/* Under H.mu, which it drops while it allocates or frees. */
static void do_spare(struct spare *sp)
{
    size_t bytes = sp->bytes;
    void *p;

    if (sp->state == SPARE_DROP) {
        p = sp->p;
        *sp = (struct spare){0};
        uv_mutex_unlock(&H.mu);
        free(p);
        uv_mutex_lock(&H.mu);
        return;
    }
    if (H.stop) { /* uninstall: nothing will take it */
        *sp = (struct spare){0};
        return;
    }
    sp->state = SPARE_MAKING;
    uv_mutex_unlock(&H.mu);
    p = prefault(bytes);
    uv_mutex_lock(&H.mu);
    if (sp->state == SPARE_MAKING && p != NULL) {
        sp->p = p;
        sp->state = SPARE_READY;
        return;
    }
    *sp = (struct spare){0};
    uv_mutex_unlock(&H.mu);
    free(p);
    uv_mutex_lock(&H.mu);
}

static void thread_main(void *arg)
{
    struct batch *work, *next;
    struct spare *sp = NULL;

    (void)arg;
    /* Wiping and freeing a compacted log (hundreds of MB at a snapshot's
     * end) is bulk work: it must not take the CPU from the loops. */
    kr_thread_background_own();
    uv_mutex_lock(&H.mu);
    for (;;) {
        while (H.full == NULL && (sp = spare_work()) == NULL && !H.stop)
            uv_cond_wait(&H.cv, &H.mu);
        if (H.full == NULL && sp == NULL)
            break; /* stopping, and nothing left */
        if (H.full == NULL) {
            do_spare(sp);
            continue;
        }
        work = H.full;
        H.full = NULL;
        H.full_tail = &H.full;
        uv_mutex_unlock(&H.mu);
        for (struct batch *b = work; b != NULL; b = b->next)
            batch_free_all(b);
        uv_mutex_lock(&H.mu);
        for (; work != NULL; work = next) {
            next = work->next;
            batch_recycle(work);
        }
    }
    uv_mutex_unlock(&H.mu);
}

/* Loop thread: the batch being filled goes to the freeing thread, and an
 * empty one from the pool (or a new one) takes its place. */
static void hand_over(void)
{
    struct batch *b = pending;

    if (b == NULL || b->n == 0)
        return;
    uv_mutex_lock(&H.mu);
    b->next = NULL;
    *H.full_tail = b;
    H.full_tail = &b->next;
    pending = H.empty;
    if (pending != NULL) {
        H.empty = pending->next;
        H.n_empty--;
    }
    uv_cond_signal(&H.cv);
    uv_mutex_unlock(&H.mu);
    if (pending == NULL)
        pending = calloc(1, sizeof(*pending)); /* NULL: frees go at once */
}

/* Whether a block of size comes from our arena: blocks of
 * RHEAP_ARENA_MAX and more (a restore's chunks, libraft's tables) go to
 * jemalloc's arena for large blocks, which gives them back at once. */
static bool in_arena(size_t size)
{
    return J.flags != 0 && size < RHEAP_ARENA_MAX;
}

static void *h_malloc(void *data, size_t size)
{
    (void)data;
    if (in_arena(size))
        return J.mallocx(size != 0 ? size : 1, J.flags);
    return malloc(size);
}

/* A made spare of exactly bytes, taken; NULL if there is none. */
static void *take_spare(size_t bytes)
{
    void *p = NULL;

    if (bytes < RHEAP_SPARE_MIN || !H.installed)
        return NULL;
    uv_mutex_lock(&H.mu);
    for (size_t i = 0; i < RHEAP_SPARES && p == NULL; i++) {
        if (H.spares[i].state == SPARE_READY && H.spares[i].bytes == bytes) {
            p = H.spares[i].p;
            H.spares[i] = (struct spare){0};
        }
    }
    uv_mutex_unlock(&H.mu);
    if (p != NULL)
        atomic_fetch_add(&H.spares_used, 1);
    return p;
}

static void *h_calloc(void *data, size_t nmemb, size_t size)
{
    size_t total;
    void *p;

    (void)data;
    if (size != 0 && nmemb > SIZE_MAX / size)
        return NULL;
    total = nmemb * size;
    p = take_spare(total);
    if (p == NULL && in_arena(total))
        p = J.mallocx(total != 0 ? total : 1, J.flags | JE_ZERO);
    else if (p == NULL)
        p = calloc(nmemb, size);
    return p;
}

static void h_free(void *data, void *ptr);

/* Never the C library's or jemalloc's realloc: a block they move is
 * freed unwiped.  A block that already has room stays where it is;
 * otherwise the bytes move to a new one and the old goes through
 * h_free, wiped. */
static void *h_realloc(void *data, void *ptr, size_t size)
{
    size_t have;
    void *p;

    if (ptr == NULL)
        return h_malloc(data, size);
    have = malloc_usable_size(ptr);
    if (size != 0 && size <= have)
        return ptr;
    p = h_malloc(data, size);
    if (p == NULL)
        return NULL;
    memcpy(p, ptr, have < size ? have : size);
    h_free(data, ptr);
    return p;
}

static void *h_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    if (in_arena(size) && alignment != 0 && (alignment & (alignment - 1)) == 0)
        return J.mallocx(size != 0 ? size : 1,
                         J.flags | (int)__builtin_ctzl(alignment));
    /* C11 wants size to be a multiple of alignment. */
    return aligned_alloc(alignment,
                         (size + alignment - 1) / alignment * alignment);
}

static void h_free(void *data, void *ptr)
{
    (void)data;
    if (ptr == NULL)
        return;
    if (!on_loop || !H.installed || pending == NULL) {
        wipe_free(ptr);
        return;
    }
    pending->p[pending->n++] = ptr;
    if (pending->n == RHEAP_BATCH)
        hand_over();
}

static void h_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)alignment;
    h_free(data, ptr);
}

static struct raft_heap heap = {
    .malloc = h_malloc,
    .free = h_free,
    .calloc = h_calloc,
    .realloc = h_realloc,
    .aligned_alloc = h_aligned_alloc,
    .aligned_free = h_aligned_free,
};

static void *sym(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

/* An arena of jemalloc's for libraft's blocks that keeps the pages it is
 * given back, for the next ones (see rheap.h).  Leaves J.flags 0 when
 * there is no jemalloc or the arena cannot be made. */
static void make_arena(void)
{
    void *p[2] = {sym("mallocx"), sym("mallctl")};
    unsigned ind;
    size_t len = sizeof(ind);
    ssize_t never = -1;
    char name[64];

    if (J.flags != 0)
        return; /* made by an earlier install */
    for (size_t i = 0; i < 2; i++)
        if (p[i] == NULL)
            return;
    memcpy(&J.mallocx, &p[0], sizeof(p[0]));
    memcpy(&J.mallctl, &p[1], sizeof(p[1]));
    if (J.mallctl("arenas.create", &ind, &len, NULL, 0) != 0)
        return;
    snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", ind);
    if (J.mallctl(name, NULL, NULL, &never, sizeof(never)) != 0)
        return;
    J.arena = ind;
    J.flags = JE_ARENA(ind) | JE_TCACHE_NONE;
}

int kr_rheap_install(void)
{
    if (H.installed)
        return 0;
    if (uv_mutex_init(&H.mu) != 0)
        return KR_ENOMEM;
    if (uv_cond_init(&H.cv) != 0) {
        uv_mutex_destroy(&H.mu);
        return KR_ENOMEM;
    }
    H.stop = false;
    atomic_store(&H.hurry, false);
    H.paced_us = 0;
    H.full = NULL;
    H.full_tail = &H.full;
    pending = calloc(1, sizeof(*pending));
    if (pending == NULL ||
        uv_thread_create(&H.thread, thread_main, NULL) != 0) {
        free(pending);
        pending = NULL;
        uv_cond_destroy(&H.cv);
        uv_mutex_destroy(&H.mu);
        return KR_ENOMEM;
    }
    make_arena();
    on_loop = true;
    H.installed = true;
    raft_heap_set(&heap);
    return 0;
}

void kr_rheap_flush(void)
{
    if (H.installed && on_loop)
        hand_over();
}

void kr_rheap_turn(void)
{
    if (H.installed && on_loop && pending != NULL &&
        pending->n >= RHEAP_TURN_MIN)
        hand_over();
}

void kr_rheap_uninstall(void)
{
    if (!H.installed)
        return;
    H.installed = false; /* frees from now on happen at once */
    raft_heap_set_default();
    hand_over();
    atomic_store(&H.hurry, true);
    uv_mutex_lock(&H.mu);
    H.stop = true;
    uv_cond_signal(&H.cv);
    uv_mutex_unlock(&H.mu);
    uv_thread_join(&H.thread);
    for (size_t i = 0; i < RHEAP_SPARES; i++)
        free(H.spares[i].p); /* ready, or to drop */
    memset(H.spares, 0, sizeof(H.spares));
    uv_cond_destroy(&H.cv);
    uv_mutex_destroy(&H.mu);
    free(pending); /* empty: handed over above */
    pending = NULL;
    while (H.empty != NULL) {
        struct batch *b = H.empty;

        H.empty = b->next;
        free(b);
    }
    H.n_empty = 0;
    on_loop = false;
}

static bool in_set(const size_t *set, size_t n, size_t bytes)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == bytes)
            return true;
    return false;
}

/* Under H.mu: the slot for a spare of bytes that is wanted, being
 * made or made; NULL if none. */
static struct spare *spare_for(size_t bytes)
{
    for (size_t i = 0; i < RHEAP_SPARES; i++)
        if (H.spares[i].bytes == bytes && H.spares[i].state != SPARE_NONE &&
            H.spares[i].state != SPARE_DROP)
            return &H.spares[i];
    return NULL;
}

void kr_rheap_expect(const size_t *bytes, size_t n)
{
    bool changed = false;

    if (!H.installed)
        return;
    uv_mutex_lock(&H.mu);
    for (size_t i = 0; i < RHEAP_SPARES; i++) {
        struct spare *sp = &H.spares[i];
        enum spare_state was = sp->state;

        if (in_set(bytes, n, sp->bytes) && was == SPARE_CANCELLED)
            sp->state = SPARE_MAKING; /* wanted after all */
        else if (in_set(bytes, n, sp->bytes))
            continue;
        else if (was == SPARE_WANTED)
            *sp = (struct spare){0};
        else if (was == SPARE_MAKING)
            sp->state = SPARE_CANCELLED;
        else if (was == SPARE_READY)
            sp->state = SPARE_DROP;
        changed |= sp->state != was;
    }
    for (size_t k = 0; k < n; k++) {
        if (bytes[k] < RHEAP_SPARE_MIN || spare_for(bytes[k]) != NULL)
            continue;
        for (size_t i = 0; i < RHEAP_SPARES; i++) {
            if (H.spares[i].state == SPARE_NONE) {
                H.spares[i] =
                    (struct spare){.bytes = bytes[k], .state = SPARE_WANTED};
                changed = true;
                break;
            }
        }
    }
    if (changed)
        uv_cond_signal(&H.cv);
    uv_mutex_unlock(&H.mu);
}

size_t kr_rheap_spares_ready(void)
{
    size_t n = 0;

    if (!H.installed)
        return 0;
    uv_mutex_lock(&H.mu);
    for (size_t i = 0; i < RHEAP_SPARES; i++)
        n += H.spares[i].state == SPARE_READY;
    uv_mutex_unlock(&H.mu);
    return n;
}

uint64_t kr_rheap_spares_used(void)
{
    return atomic_load(&H.spares_used);
}

bool kr_rheap_arena(unsigned *arena)
{
    if (J.flags == 0)
        return false;
    *arena = J.arena;
    return true;
}

uint64_t kr_rheap_freed(void)
{
    return atomic_load(&H.freed);
}
