/*
 * The leader's side of a snapshot restore (PUT /v1/operator/snapshot):
 * it checks the whole archive first, then drives the staged restore of
 * the state machine (state.h): RESTORE_BEGIN, the archive's state.bin in
 * RESTORE_CHUNKs of at most 1 MiB (a few in flight at once), then
 * RESTORE_COMMIT, which switches every server to the new state in one
 * apply.  Nothing is proposed before the archive has passed every check
 * (kr_snap_check: the checksums, every record of state.bin), so a bad
 * archive changes nothing anywhere.
 *
 * A restore that fails after BEGIN proposes RESTORE_ABORT.  One that
 * cannot (this server lost the leadership, or crashed) leaves a staging
 * area behind; the next leader drops it from kr_restore_tick.  Either
 * way the state is the old one or, once COMMIT is applied, the new one.
 * Membership is not part of the state machine, so a restore never
 * changes it.
 *
 * Reading and checking the archive happen on worker threads; everything
 * else on the loop thread.
 */
#ifndef KR_SNAPSHOT_RESTORE_H
#define KR_SNAPSHOT_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cluster/raft.h"
#include "state/state.h"

struct kr_restore;

struct kr_restore_config {
    uv_loop_t *loop;
    struct kr_raft *raft;   /* borrowed, outlives the restorer */
    struct kr_state *state; /* borrowed */
};

/* status 0: the restore committed at raft index `index`.  Otherwise a
 * kr_err (KR_EINVAL: the archive was refused; KR_ENOLEADER: leadership
 * was lost; ...) and errmsg says what happened. */
typedef void (*kr_restore_cb)(void *arg, int status, uint64_t index,
                              const char *errmsg);

/* cfg is copied.  Returns 0 or KR_ENOMEM. */
int kr_restore_new(struct kr_restore **out,
                   const struct kr_restore_config *cfg);

/*
 * Restores the archive in fd (read from its start; the restorer takes fd
 * and closes it).  cb runs exactly once, later, unless this returns an
 * error: KR_ECONFLICT when a restore is already running here,
 * KR_ENOLEADER, KR_ESHUTDOWN.
 */
int kr_restore_start(struct kr_restore *r, int fd, kr_restore_cb cb, void *arg,
                     char *errmsg);

/* Drops a staging area no restore of this leader owns (its leader is
 * gone); the agent calls it from its tick.  Cheap when nothing is staged. */
void kr_restore_tick(struct kr_restore *r);

/* Fails a running restore (KR_ESHUTDOWN) and frees r once its work has
 * returned.  NULL is a no-op. */
void kr_restore_close(struct kr_restore *r);

#endif
