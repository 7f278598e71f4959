/* See rheap.h. */
#include "cluster/rheap.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <raft.h>
#include <uv.h>

#include "common/err.h"

/* Pointers to free, with the sum of their blocks' usable sizes. */
struct batch {
    void **p;
    size_t n, cap;
    size_t bytes;
};

static struct {
    bool installed;
    bool stop;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    struct batch inbox; /* under mu: handed over, not taken yet */
    atomic_uint_fast64_t freed;
} H;

/* Loop thread only. */
static _Thread_local bool on_loop;
static struct batch pending;

static bool batch_grow(struct batch *b, size_t need)
{
    size_t cap = b->cap != 0 ? b->cap : 256;
    void **p;

    while (cap < need)
        cap *= 2;
    if (cap == b->cap)
        return true;
    p = realloc(b->p, cap * sizeof(*p));
    if (p == NULL)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static void batch_free_all(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->p[i]);
    atomic_fetch_add(&H.freed, b->n);
    b->n = 0;
    b->bytes = 0;
}

static void thread_main(void *arg)
{
    struct batch work = {0}, t;

    (void)arg;
    uv_mutex_lock(&H.mu);
    for (;;) {
        while (H.inbox.n == 0 && !H.stop)
            uv_cond_wait(&H.cv, &H.mu);
        if (H.inbox.n == 0)
            break; /* stopping, and nothing left */
        t = H.inbox;
        H.inbox = work;
        work = t;
        uv_mutex_unlock(&H.mu);
        batch_free_all(&work);
        uv_mutex_lock(&H.mu);
    }
    uv_mutex_unlock(&H.mu);
    free(work.p);
}

/* Loop thread: pending goes to the freeing thread (the arrays swap when
 * the inbox is empty, so neither is reallocated in the steady state). */
static void hand_over(void)
{
    struct batch t;

    if (pending.n == 0)
        return;
    uv_mutex_lock(&H.mu);
    if (H.inbox.n == 0) {
        t = H.inbox;
        H.inbox = pending;
        pending = t;
    } else if (batch_grow(&H.inbox, H.inbox.n + pending.n)) {
        for (size_t i = 0; i < pending.n; i++)
            H.inbox.p[H.inbox.n++] = pending.p[i];
        H.inbox.bytes += pending.bytes;
        pending.n = 0;
        pending.bytes = 0;
    }
    uv_cond_signal(&H.cv);
    uv_mutex_unlock(&H.mu);
    /* Not handed over (no memory to grow the inbox): freed here. */
    batch_free_all(&pending);
}

static void *h_malloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void *h_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    return calloc(nmemb, size);
}

static void *h_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return realloc(ptr, size);
}

static void *h_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    /* C11 wants size to be a multiple of alignment. */
    return aligned_alloc(alignment, (size + alignment - 1) / alignment *
                                        alignment);
}

static void h_free(void *data, void *ptr)
{
    (void)data;
    if (ptr == NULL)
        return;
    if (!on_loop || !H.installed ||
        (pending.n == pending.cap && !batch_grow(&pending, pending.n + 1))) {
        free(ptr);
        return;
    }
    pending.p[pending.n++] = ptr;
    pending.bytes += malloc_usable_size(ptr);
    if (pending.n >= RHEAP_BATCH || pending.bytes >= RHEAP_BATCH_BYTES)
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
    if (uv_thread_create(&H.thread, thread_main, NULL) != 0) {
        uv_cond_destroy(&H.cv);
        uv_mutex_destroy(&H.mu);
        return KR_ENOMEM;
    }
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

void kr_rheap_uninstall(void)
{
    if (!H.installed)
        return;
    H.installed = false; /* frees from now on happen at once */
    raft_heap_set_default();
    hand_over();
    uv_mutex_lock(&H.mu);
    H.stop = true;
    uv_cond_signal(&H.cv);
    uv_mutex_unlock(&H.mu);
    uv_thread_join(&H.thread);
    uv_cond_destroy(&H.cv);
    uv_mutex_destroy(&H.mu);
    free(H.inbox.p);
    free(pending.p);
    H.inbox = (struct batch){0};
    pending = (struct batch){0};
    on_loop = false;
}

uint64_t kr_rheap_freed(void)
{
    return atomic_load(&H.freed);
}
