/*
 * Raft glue: runs canonical raft (libraft) with its libuv disk and TCP
 * backends on the agent's loop, feeds committed entries to the pure state
 * machine, and carries each entry's outcome back to whoever proposed it.
 *
 * The FSM apply hands raft the command's outcome (a kr_err code) through
 * raft's result pointer, cast to an integer, so nothing is allocated per
 * entry and followers have nothing to free.  After every apply and restore
 * the after_apply hook runs, so the keyring can start decrypt tasks for
 * keys that arrived.
 *
 * raft's own positive error codes are translated here and nowhere else.
 * Loop thread only.
 */
#ifndef KR_CLUSTER_RAFT_H
#define KR_CLUSTER_RAFT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "common/buf.h"
#include "state/state.h"

struct kr_raft;

struct kr_raft_config {
    uv_loop_t *loop;
    const char *data_dir; /* raft files go in <data_dir>/raft */
    const char *address;  /* host:port raft listens on */
    struct kr_state *state;
    unsigned snapshot_threshold; /* entries between snapshots */
    unsigned snapshot_trailing;  /* entries kept after a snapshot */
    void (*after_apply)(void *arg);
    void *arg;
};

/* status: 0 when committed and applied (outcome is then the command's
 * kr_err outcome and index its raft index); otherwise a kr_err such as
 * KR_ENOLEADER and outcome is meaningless. */
typedef void (*kr_raft_apply_cb)(void *arg, int status, uint64_t index,
                                 int outcome);

/* Opens (or creates and bootstraps as a one-server cluster) the raft
 * directory and starts raft.  cfg is copied; its pointers are borrowed. */
int kr_raft_start(struct kr_raft **out, const struct kr_raft_config *cfg,
                  char *errmsg);

/* Proposes entry (its bytes are copied; the caller keeps entry).  cb runs
 * exactly once, unless this returns an error. */
int kr_raft_apply(struct kr_raft *r, const struct kr_buf *entry,
                  kr_raft_apply_cb cb, void *arg);

bool kr_raft_is_leader(struct kr_raft *r);
uint64_t kr_raft_last_applied(struct kr_raft *r);
uint64_t kr_raft_last_index(struct kr_raft *r);
uint64_t kr_raft_id(struct kr_raft *r);
/* "host:port" of the leader, or "" when unknown.  Borrowed. */
const char *kr_raft_leader_address(struct kr_raft *r);

/* Closes raft; cb(arg) runs once raft and its I/O have shut down. */
void kr_raft_close(struct kr_raft *r, void (*cb)(void *arg), void *arg);

#endif
