/*
 * The leader's key jobs (spec 7.2 to 7.4), run by the agent on the loop:
 *
 * Periodic job, every root_key_gc_interval (and at once on gaining
 * leadership):
 *   1. promote the prepublished key with the smallest PublishTime once
 *      PublishTime <= now (the old active key becomes inactive); else, at
 *      half of root_key_rotation_threshold, create a prepublished
 *      successor with PublishTime = active.CreateTime + threshold.  A step
 *      that proposes something ends the run.
 *   2. GC: delete an inactive or deprecated key once it is older than
 *      threshold + root_key_gc_threshold, no Variable uses it and no
 *      identity signed with it can still verify (its recorded latest
 *      expiry plus the largest verification leeway has passed, and it
 *      never signed one without expiry: those keep the key until an
 *      operator removes it with -force).
 *   It warns when the active key is older than the threshold.
 *
 * Rekey job, whenever a key is rekeying: walks the Variables in (namespace,
 * path) order from the replicated checkpoint, re-encrypts those under a
 * rekeying key with the active key, and proposes them in batches of up to
 * 512 Variables or 1 MiB per raft entry (KR_ENTRY_VAR_REKEY).  Each item
 * carries the ModifyIndex it was read at, so the state machine skips a
 * Variable a client rewrote meanwhile; each batch moves the checkpoint,
 * so a new leader resumes where the last batch left off.  The walk is
 * cut into slices of at most 256 Variables per loop iteration so
 * foreground requests keep flowing; it copies their ciphertexts, and
 * each full batch is re-encrypted on libuv's pool at background priority
 * (the loop serves the clients), then proposed.  The job is paced at
 * root_key_rekey_rate Variables per second.  A key whose material this
 * server cannot use stops the walk at its first Variable; the job reports the
 * key and why (kr_keyjobs_rekey_error) and retries with backoff, and the
 * key stays rekeying.  A key restored from a redacted snapshot is such a
 * key for good: the job keeps reporting it and never marks it done; only
 * removing the key (with -force) ends the rekey.  A redacted prepublished
 * key is never promoted.
 *
 * Only the leader runs jobs; every server may call these functions.
 * Loop thread only (the pool's re-encryption touches only the batch and
 * the job's cipher copies, which the loop leaves alone meanwhile).
 */
#ifndef KR_AGENT_KEYJOBS_H
#define KR_AGENT_KEYJOBS_H

#include <stdint.h>

#include <uv.h>

#include "cluster/raft.h"
#include "keyring/keyring.h"
#include "state/state.h"

struct kr_keyjobs;

struct kr_keyjobs_config {
    uv_loop_t *loop;
    struct kr_state *state;     /* borrowed, outlives the jobs */
    struct kr_keyring *keyring; /* borrowed */
    struct kr_raft *raft;       /* borrowed */
    int64_t rotation_threshold; /* ns */
    int64_t gc_interval;        /* ns */
    int64_t gc_threshold;       /* ns */
    uint64_t rekey_rate;        /* Variables/s a rekey proposes; 0: any */
};

/* cfg is copied. */
int kr_keyjobs_new(struct kr_keyjobs **out,
                   const struct kr_keyjobs_config *cfg);

/* Runs whatever is due; the agent calls it from its tick and after each
 * apply.  Cheap when nothing is. */
void kr_keyjobs_tick(struct kr_keyjobs *j);

/* Stops the jobs; j frees itself once its proposals have come back.
 * NULL is a no-op. */
void kr_keyjobs_close(struct kr_keyjobs *j);

/* What keeps the rekey job from finishing on this server ("" when
 * nothing does).  Borrowed. */
const char *kr_keyjobs_rekey_error(const struct kr_keyjobs *j);

#endif
