/*
 * See thread.h.  On Linux, setpriority(PRIO_PROCESS, tid) sets one
 * thread's nice value (the threads of a process do not share it).
 */
#include "common/thread.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BACKGROUND_NICE 10

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool can_restore;
static bool can_idle;

static id_t self(void)
{
    return (id_t)syscall(SYS_gettid);
}

/* On a thread of its own (which inherits the creator's nice value and
 * class): down one step, then back; into the idle class, then back. */
static void *probe_main(void *arg)
{
    struct sched_param none = {0};
    int old;

    (void)arg;
    errno = 0;
    old = getpriority(PRIO_PROCESS, self());
    if ((old == -1 && errno != 0) || old >= 19)
        return NULL;
    if (setpriority(PRIO_PROCESS, self(), old + 1) == 0 &&
        setpriority(PRIO_PROCESS, self(), old) == 0)
        can_restore = true;
    if (can_restore && sched_getscheduler(0) == SCHED_OTHER &&
        sched_setscheduler(0, SCHED_IDLE, &none) == 0 &&
        sched_setscheduler(0, SCHED_OTHER, &none) == 0)
        can_idle = true;
    return NULL;
}

static void probe(void)
{
    pthread_t t;

    if (pthread_create(&t, NULL, probe_main, NULL) == 0)
        pthread_join(t, NULL);
}

bool kr_thread_can_background(void)
{
    pthread_once(&probe_once, probe);
    return can_restore;
}

/* Lowers this thread to BACKGROUND_NICE (if it is higher, and only when
 * it could be raised back if undoable is set); returns its value before,
 * 0 when it cannot be read (nothing is changed then). */
static int lower(bool undoable)
{
    int old;

    errno = 0;
    old = getpriority(PRIO_PROCESS, self());
    if (old == -1 && errno != 0)
        return 0;
    if (old < BACKGROUND_NICE && (!undoable || kr_thread_can_background()))
        (void)setpriority(PRIO_PROCESS, self(), BACKGROUND_NICE);
    return old;
}

int kr_thread_background(void)
{
    return lower(true);
}

void kr_thread_foreground(int saved)
{
    (void)setpriority(PRIO_PROCESS, self(), saved);
}

void kr_thread_background_own(void)
{
    /* Probed first, at the thread's own priority: the probe's thread
     * inherits it. */
    pthread_once(&probe_once, probe);
    (void)lower(false);
}

bool kr_thread_can_idle(void)
{
    pthread_once(&probe_once, probe);
    return can_idle;
}

bool kr_thread_idle(void)
{
    struct sched_param none = {0};

    pthread_once(&probe_once, probe);
    return can_idle && sched_getscheduler(0) == SCHED_OTHER &&
           sched_setscheduler(0, SCHED_IDLE, &none) == 0;
}

bool kr_thread_unidle(void)
{
    struct sched_param none = {0};

    /* The nice value is kept across the change. */
    return sched_getscheduler(0) != SCHED_IDLE ||
           sched_setscheduler(0, SCHED_OTHER, &none) == 0;
}
