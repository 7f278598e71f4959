/* See freeze.h. */
#include "cluster/freeze.h"

#include <stdlib.h>

#include "common/thread.h"
#include "common/time.h"

/* Variables copied between looks at the clock. */
#define FILL_CHUNK 256u

void kr_freeze_enable(uv_loop_t *loop)
{
    (void)uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
}

uint64_t kr_freeze_slice_us(uv_loop_t *loop, uint64_t *mark, uint64_t base_us,
                            uint64_t max_us)
{
    uint64_t idle = uv_metrics_idle_time(loop); /* ns, 0 when not enabled */
    uint64_t spare = *mark != 0 && idle > *mark ? (idle - *mark) / 1000u : 0;

    *mark = idle != 0 ? idle : 1;
    return base_us + spare < max_us ? base_us + spare : max_us;
}

bool kr_freeze_fill(uv_loop_t *loop, uint64_t *mark, struct kr_state *state,
                    struct kr_state_frozen *view, uint64_t *spent_us)
{
    uint64_t t0 = kr_time_mono_us();
    uint64_t slice =
        kr_freeze_slice_us(loop, mark, FREEZE_SLICE_US, FREEZE_SLICE_MAX_US);
    bool done;

    do
        done = kr_state_freeze_step(state, view, FILL_CHUNK);
    while (!done && kr_time_mono_us() - t0 < slice);
    *spent_us += kr_time_mono_us() - t0;
    return done;
}

struct garbage_job {
    uv_work_t work;
    struct kr_state_garbage *g;
};

static void garbage_work(uv_work_t *w)
{
    struct garbage_job *j = w->data;
    int prio = kr_thread_background();

    kr_state_garbage_free(j->g);
    kr_thread_foreground(prio);
}

static void garbage_done(uv_work_t *w, int status)
{
    (void)status;
    free(w->data);
}

void kr_freeze_garbage_later(uv_loop_t *loop, struct kr_state_garbage *g)
{
    struct garbage_job *j;

    if (g == NULL)
        return;
    j = malloc(sizeof(*j));
    if (j != NULL) {
        j->g = g;
        j->work.data = j;
        if (uv_queue_work(loop, &j->work, garbage_work, garbage_done) == 0)
            return;
        free(j);
    }
    kr_state_garbage_free(g);
}
