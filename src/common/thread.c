/*
 * See thread.h.  On Linux, setpriority(PRIO_PROCESS, tid) sets one
 * thread's nice value (the threads of a process do not share it).
 */
#include "common/thread.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BACKGROUND_NICE 10

static id_t self(void)
{
    return (id_t)syscall(SYS_gettid);
}

int kr_thread_background(void)
{
    int old;

    errno = 0;
    old = getpriority(PRIO_PROCESS, self());
    if (old == -1 && errno != 0)
        old = 0;
    if (old < BACKGROUND_NICE)
        (void)setpriority(PRIO_PROCESS, self(), BACKGROUND_NICE);
    return old;
}

void kr_thread_foreground(int saved)
{
    (void)setpriority(PRIO_PROCESS, self(), saved);
}
