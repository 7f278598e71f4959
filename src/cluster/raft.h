/*
 * The cluster: canonical raft (libraft) with its libuv disk backend and
 * our own transport over the RPC port, membership (discovery, bootstrap,
 * join, peer removal), and the link from committed entries to the pure
 * state machine.
 *
 * Startup.  A server whose data_dir already holds raft state starts raft
 * at once and never bootstraps again.  A fresh server with
 * bootstrap_expect = 1 and no retry_join bootstraps a one-server cluster.
 * Any other fresh server asks the retry_join addresses for their status
 * every retry_interval: when it finds a running cluster it asks the
 * leader to add it; when exactly bootstrap_expect fresh servers know each
 * other, every one of them bootstraps raft with that same set.  Until raft
 * starts the server reports no leader.
 *
 * Outcomes.  The FSM apply hands raft each command's outcome (a kr_err)
 * through raft's result pointer, cast to an integer, so nothing is
 * allocated per entry and followers have nothing to free.  After every
 * apply and restore the after_apply hook runs.
 *
 * raft's own positive error codes are translated here and nowhere else.
 * Loop thread only.
 */
#ifndef KR_CLUSTER_RAFT_H
#define KR_CLUSTER_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/buf.h"
#include "state/state.h"

struct kr_raft;

struct kr_raft_config {
    uv_loop_t *loop;
    const char *data_dir; /* raft files go in <data_dir>/raft */
    const char *bind_host;
    int rpc_port;
    const char *address; /* host:port other servers reach us at */
    int bootstrap_expect;
    const char *const *retry_join; /* host:port of other servers */
    size_t n_retry_join;
    uint64_t retry_interval_ms;
    struct kr_state *state;
    unsigned snapshot_threshold; /* entries between snapshots */
    unsigned snapshot_trailing;  /* entries kept after a snapshot */
    /* Minimum time between snapshots unless GATE_FACTOR (8) times
     * snapshot_threshold entries pile up; 0: every snapshot_threshold. */
    uint64_t snapshot_interval_ms;
    /* Bytes per second our snapshots are written to disk at (0: as fast
     * as the disk takes them, still in slices); see snapwrite.h. */
    uint64_t snapshot_write_rate;
    void (*after_apply)(void *arg);
    /* A connection forwarded to us over the RPC port, speaking HTTP; the
     * callee takes the stream (NULL: such connections are refused). */
    void (*on_http)(void *arg, uv_stream_t *stream);
    /* Fatal membership problem (this server was removed from its
     * cluster): the agent should stop. */
    void (*on_fatal)(void *arg, const char *why);
    void *arg;
};

/* status: 0 when committed and applied (outcome is then the command's
 * kr_err outcome and index its raft index); otherwise a kr_err such as
 * KR_ENOLEADER and outcome is meaningless. */
typedef void (*kr_raft_apply_cb)(void *arg, int status, uint64_t index,
                                 int outcome);
/* status 0: every entry committed before the barrier is applied here. */
typedef void (*kr_raft_barrier_cb)(void *arg, int status);

/* Opens the raft directory, listens on the RPC port and starts raft or
 * membership discovery as described above.  cfg is copied; the strings it
 * points to are copied too. */
int kr_raft_start(struct kr_raft **out, const struct kr_raft_config *cfg,
                  char *errmsg);

/* Proposes entry (its bytes are copied; the caller keeps entry).  cb runs
 * exactly once, later, unless this returns an error.  The entries
 * proposed during one loop iteration travel as one raft entry (see
 * frame.h) and are applied at the same index, in the order proposed. */
int kr_raft_apply(struct kr_raft *r, const struct kr_buf *entry,
                  kr_raft_apply_cb cb, void *arg);

/* As kr_raft_apply, for an entry that changes one thing named by key (a
 * hash of a Variable's namespace and path; 0: none): an entry with the
 * same key already waiting in this iteration's batch is proposed first,
 * so two changes of one Variable never share an index and a ModifyIndex
 * names one version of it (what a check-and-set relies on). */
int kr_raft_apply_keyed(struct kr_raft *r, const struct kr_buf *entry,
                        uint64_t key, kr_raft_apply_cb cb, void *arg);

/* As kr_raft_apply, but the entry travels alone in its raft entry: no
 * other entry is applied at its index, so an index tells which side of
 * it a write landed on. */
int kr_raft_apply_alone(struct kr_raft *r, const struct kr_buf *entry,
                        kr_raft_apply_cb cb, void *arg);

/* Appends a barrier; cb runs exactly once unless this returns an error. */
int kr_raft_barrier(struct kr_raft *r, kr_raft_barrier_cb cb, void *arg);

/* True once raft runs (bootstrapped, joined or restarted). */
bool kr_raft_started(struct kr_raft *r);
bool kr_raft_is_leader(struct kr_raft *r);
uint64_t kr_raft_last_applied(struct kr_raft *r);
uint64_t kr_raft_last_index(struct kr_raft *r);

/* This server's raft snapshots since it started: whether one is being
 * written now, and the last one written (index 0: none yet). */
struct kr_raft_snapshot_stats {
    bool running;
    uint64_t taken;
    uint64_t last_index;
    uint64_t last_bytes;
    uint64_t last_loop_ms;  /* the freeze, on the loop (in steps) */
    uint64_t last_write_ms; /* encoding and paced write (snapwrite.h) */
    uint64_t last_ms;       /* from the freeze until raft stored it */
    /* Bytes of removed snapshots and log segments whose blocks are
     * still being freed, in this process (kr_snapwrite_freeing). */
    uint64_t freeing_bytes;
};
void kr_raft_snapshot_stats(struct kr_raft *r,
                            struct kr_raft_snapshot_stats *out);
/* The current raft term (0 before raft starts). */
uint64_t kr_raft_term(struct kr_raft *r);
uint64_t kr_raft_id(struct kr_raft *r);
/* Number of voters in the current configuration. */
unsigned kr_raft_voters(struct kr_raft *r);
/* "host:port" of the leader, or "" when unknown.  Borrowed. */
const char *kr_raft_leader_address(struct kr_raft *r);
/* Milliseconds since this follower last heard from a leader (0 on the
 * leader). */
uint64_t kr_raft_last_contact_ms(struct kr_raft *r);
/* Notes whether a leader is known now; the agent calls it periodically so
 * kr_raft_last_contact_ms can say how long a leader has been missing. */
void kr_raft_observe(struct kr_raft *r);

/* The current raft configuration, for the operator API. */
struct kr_raft_server {
    uint64_t id;
    char address[256];
    bool voter;
    bool leader;
};
/* Fills up to cap servers; returns how many there are. */
size_t kr_raft_servers(struct kr_raft *r, struct kr_raft_server *out,
                       size_t cap);

/* Removes a server by id (leader only).  cb: 0, KR_ENOTFOUND, or another
 * kr_err; runs exactly once unless this returns an error. */
int kr_raft_remove(struct kr_raft *r, uint64_t id, kr_raft_barrier_cb cb,
                   void *arg);

/* Closes raft and the RPC listener; cb(arg) runs once everything is shut
 * down. */
void kr_raft_close(struct kr_raft *r, void (*cb)(void *arg), void *arg);

#endif
