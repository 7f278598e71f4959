/* See slice.h. */
#include "cluster/slice.h"

void kr_slice_enable(uv_loop_t *loop)
{
    (void)uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
}

uint64_t kr_slice_us(uv_loop_t *loop, uint64_t *mark, uint64_t base_us,
                     uint64_t max_us)
{
    uint64_t idle = uv_metrics_idle_time(loop); /* ns, 0 when not enabled */
    uint64_t spare = *mark != 0 && idle > *mark ? (idle - *mark) / 1000u : 0;

    *mark = idle != 0 ? idle : 1;
    return base_us + spare < max_us ? base_us + spare : max_us;
}
