/*
 * The loop's side of a frozen view (state/state.h), shared by raft
 * snapshots and operator snapshot saves.
 *
 * Filling.  A freeze of a million Variables is 100-250 ms of copying,
 * which in one piece stopped the server that long.  kr_freeze_fill, from
 * a 1 ms timer, copies for FREEZE_SLICE_US per call instead, so the loop
 * goes on applying entries and answering requests at four fifths of its
 * speed until the view is whole (about a second at a million; at half
 * speed for half a second, foreground p99 still tripled).  A slice grows
 * by the time the loop spent waiting for events since the last one, up
 * to FREEZE_SLICE_MAX_US, so a quiet server fills at nearly full speed;
 * that takes UV_METRICS_IDLE_TIME on the loop (kr_freeze_enable),
 * without which slices stay short.
 *
 * Thawing.  The buffers a view kept alive (hundreds of thousands after a
 * long write under load) are freed on a worker: kr_freeze_garbage_later.
 *
 * Loop thread.
 */
#ifndef KR_CLUSTER_FREEZE_H
#define KR_CLUSTER_FREEZE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "state/state.h"

#define FREEZE_SLICE_US 200u
#define FREEZE_SLICE_MAX_US 900u

/* Turns on the idle-time accounting; before uv_run. */
void kr_freeze_enable(uv_loop_t *loop);

/* base_us, plus the loop's idle time since *mark (which moves to now),
 * at most max_us.  *mark starts at 0. */
uint64_t kr_freeze_slice_us(uv_loop_t *loop, uint64_t *mark, uint64_t base_us,
                            uint64_t max_us);

/* One slice of filling view (kr_state_freeze_step); true once it is
 * whole.  *mark as above; the slice's time is added to *spent_us. */
bool kr_freeze_fill(uv_loop_t *loop, uint64_t *mark, struct kr_state *state,
                    struct kr_state_frozen *view, uint64_t *spent_us);

/* Frees g (NULL: nothing) on libuv's thread pool at background priority,
 * or here if that cannot be arranged. */
void kr_freeze_garbage_later(uv_loop_t *loop, struct kr_state_garbage *g);

#endif
