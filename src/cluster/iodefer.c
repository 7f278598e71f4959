/*
 * See iodefer.h.  One worker thread, started on the first io_destroy,
 * takes contexts from a small queue; if the queue is full (the worker is
 * far behind) the caller destroys its context itself, as it would have
 * without this module.
 */
#include "cluster/iodefer.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "cluster/libcnext.h"

#define QUEUE_LEN 64

typedef long (*syscall_fn)(long, ...);

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static syscall_fn libc_syscall;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started;
    unsigned head, n;
    long ctx[QUEUE_LEN];
    uint64_t handed;
} q = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void resolve(void)
{
    kr_libc_next("syscall", &libc_syscall, sizeof(libc_syscall));
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&q.mu);
    for (;;) {
        long ctx;

        while (q.n == 0)
            pthread_cond_wait(&q.cv, &q.mu);
        ctx = q.ctx[q.head];
        q.head = (q.head + 1) % QUEUE_LEN;
        q.n--;
        pthread_mutex_unlock(&q.mu);
        libc_syscall(SYS_io_destroy, ctx);
        pthread_mutex_lock(&q.mu);
    }
    return NULL;
}

/* True when ctx was queued for the worker. */
static bool defer(long ctx)
{
    bool queued = false;

    pthread_mutex_lock(&q.mu);
    if (!q.started) {
        pthread_t t;
        pthread_attr_t attr;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        q.started = pthread_create(&t, &attr, worker, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    if (q.started && q.n < QUEUE_LEN) {
        q.ctx[(q.head + q.n) % QUEUE_LEN] = ctx;
        q.n++;
        q.handed++;
        queued = true;
        pthread_cond_signal(&q.cv);
    }
    pthread_mutex_unlock(&q.mu);
    return queued;
}

/*
 * Replaces libc's syscall(3) for the whole process.  Like libc's, it
 * takes up to six arguments; the caller passes as many as the system call
 * needs, and the unused ones are never read by the kernel.
 */
long syscall(long number, ...)
{
    va_list ap;
    long a[6];

    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    pthread_once(&resolve_once, resolve);
    if (number == SYS_io_destroy && defer(a[0]))
        return 0;
    return libc_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

uint64_t kr_iodefer_count(void)
{
    uint64_t n;

    pthread_mutex_lock(&q.mu);
    n = q.handed;
    pthread_mutex_unlock(&q.mu);
    return n;
}
