/*
 * How long a slice of background work on an event loop (filling a
 * frozen view) may run now.  Under load a slice is short, so requests
 * keep flowing between slices; on an idle loop it grows by the time the
 * loop spent waiting for events since the last slice, so the work is not
 * held back for nothing.  The loop must have been configured with
 * UV_METRICS_IDLE_TIME (kr_slice_enable); otherwise slices stay short.
 * Loop thread.
 */
#ifndef KR_CLUSTER_SLICE_H
#define KR_CLUSTER_SLICE_H

#include <stdint.h>

#include <uv.h>

/* Turns on the idle-time accounting; before uv_run. */
void kr_slice_enable(uv_loop_t *loop);

/* base_us, plus the loop's idle time since *mark (which moves to now),
 * at most max_us.  *mark starts at 0. */
uint64_t kr_slice_us(uv_loop_t *loop, uint64_t *mark, uint64_t base_us,
                     uint64_t max_us);

#endif
