/*
 * See raft.h.  The node ID is drawn once and kept in <data_dir>/node-id,
 * so a restarted server is the same raft member.  raft state in
 * <data_dir>/raft (its metadata files) is what "already part of a
 * cluster" means: such a server never bootstraps again.
 *
 * Membership calls travel as KR_RPC_CALL requests (rpc.h):
 *   STATUS -> id, address, started, leader?, leader address,
 *             configuration [id, address, voter], seen [id, address]
 *   JOIN(id, address) -> code (0 accepted, 1 not leader, 2 busy), leader
 * "seen" carries the fresh servers a node has heard of, so discovery is
 * transitive: each server only needs one other's address.
 */
#include "cluster/raft.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "cluster/frame.h"
#include "cluster/iodefer.h"
#include "cluster/snapwrite.h"
#include "cluster/rpc.h"
#include "cluster/transport.h"
#include "cluster/freeze.h"
#include "cluster/rheap.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/time.h"
#include "crypto/rand.h"

#define MAX_PEERS 64
#define CALL_TIMEOUT_MS 2000
/* A batch is closed at this many bytes of records (one larger entry
 * still travels alone). */
#define BATCH_BYTES (1024 * 1024)

enum { OP_STATUS = 1, OP_JOIN = 2 };
enum { JOIN_ACCEPTED = 0, JOIN_NOT_LEADER = 1, JOIN_BUSY = 2 };

struct peer {
    uint64_t id;
    char address[256];
};

/* One proposer waiting for its entry. */
struct apply_item {
    kr_raft_apply_cb cb;
    void *arg;
    int outcome;
    uint64_t key; /* kr_raft_apply_keyed's, 0 for none */
};

/* One raft entry in flight: a single entry or a batch. */
struct apply_req {
    struct raft_apply req;
    struct apply_req *prev, *next; /* in flight, in index order */
    bool applied;                  /* fsm_apply has set the outcomes */
    unsigned n;
    struct apply_item items[];
};

struct kr_raft {
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    struct kr_raft_config cfg;
    char **retry_join; /* owned copies of cfg.retry_join */
    char *raft_dir;
    char *address;
    raft_id id;
    bool io_ok, transport_ok, raft_ok;
    bool started;
    bool had_state; /* raft state existed when we started */
    struct kr_rpc *rpc;
    /* discovery */
    uv_timer_t tick;
    unsigned calls_out;          /* STATUS calls of this round in flight */
    struct peer seen[MAX_PEERS]; /* fresh servers heard of, us included */
    size_t n_seen;
    char leader_hint[256]; /* a running cluster's leader */
    bool found_cluster;
    bool was_voter;          /* has been a voter in its own configuration */
    uint64_t leader_seen_ms; /* when a leader was last known here */
    /* A running cluster's configuration that lists us: a server of the
     * same bootstrap round, which we must bootstrap with too. */
    struct peer adopt[MAX_PEERS];
    size_t n_adopt;
    bool removed;
    struct raft_change change; /* one membership change at a time */
    bool changing;
    uint64_t changing_id;
    kr_raft_barrier_cb remove_cb;
    void *remove_arg;
    /* The raft snapshot being written off the loop (fsm version 3):
     * frozen from fsm_snapshot until fsm_snapshot_finalize. */
    struct {
        struct kr_state_frozen *frozen;
        uint64_t t0;        /* ms: the freeze began */
        uint64_t t_loop_us; /* the loop's part of it */
        uint64_t t_filled;  /* ms from t0 until the view was whole */
        /* Fills the view a step per loop turn; the worker waits for
         * filled before it reads the view. */
        uv_timer_t fill;
        uv_mutex_t mu;
        uv_cond_t cv;
        bool filled;
        bool close_waits;   /* raft_close waits for finalize */
        bool too_big;       /* the state exceeds a raft snapshot frame */
        uv_timer_t gate;    /* reopens the threshold after the interval */
        uint64_t index;     /* the last applied index at the freeze */
        uint64_t rng;       /* jitter()'s state */
        uint64_t idle_mark; /* kr_freeze_fill's */
        bool unpaced;       /* a restore is staged: write at disk speed */
        struct kr_raft_snapshot_stats stats;
        /* The log in bytes (see log_note): applied in all, the same at
         * the last freeze, and (index, in all after it) for the last
         * entries applied. */
        uint64_t log_total, log_at_freeze;
        bool forced;     /* the threshold is down to 1 for the log's size */
        double log_slot; /* a non-voter's rank_factor, drawn per snapshot */
        struct log_mark {
            uint64_t index, total;
        } * marks;
        size_t n_marks, cap_marks, first_mark;
    } snap;
    void (*close_cb)(void *arg);
    void *close_arg;
    int closing;     /* handles and components still to close */
    bool calls_hold; /* closing waits for membership calls in flight */
    /* Entries proposed during this loop iteration, flushed as one raft
     * entry by the check handle (right after the poll phase that read
     * their requests) or, for entries proposed outside the poll phase
     * (timers), by the idle handle, which also keeps the next poll from
     * blocking while a batch is open. */
    uv_check_t flush;
    uv_idle_t flush_idle;
    struct kr_buf batch; /* records: u32 length | entry */
    struct apply_item batch_items[KR_FRAME_BATCH_MAX];
    unsigned batch_n;
    struct apply_req *inflight, *inflight_tail;
};

struct barrier_req {
    struct raft_barrier req;
    kr_raft_barrier_cb cb;
    void *arg;
};

static int to_kr(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return KR_ENOLEADER;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
        return KR_ESHUTDOWN;
    case RAFT_NOMEM:
        return KR_ENOMEM;
    case RAFT_BADID:
        return KR_ENOTFOUND;
    case RAFT_CANTCHANGE:
        return KR_ECONFLICT;
    default:
        return KR_EIO;
    }
}

/* The single frame of buf, for snapshots. */
static const uint8_t *unframe(const struct raft_buffer *buf, size_t *len)
{
    struct kr_frame_reader fr;
    const uint8_t *p = NULL;

    *len = 0;
    if (kr_frame_open(&fr, buf->base, buf->len) != 1 || fr.batch ||
        !kr_frame_next(&fr, &p, len))
        return NULL;
    return p;
}

/* Our own request for the entry at index, if this server proposed it. */
static struct apply_req *inflight_at(struct kr_raft *r, uint64_t index)
{
    struct apply_req *a = r->inflight;

    while (a != NULL && a->req.index < index)
        a = a->next;
    return a != NULL && a->req.index == index ? a : NULL;
}

/*
 * The log libraft keeps in memory, in bytes.  libraft counts its snapshot
 * threshold and trailing logs in entries, but an entry may be a few
 * hundred bytes or a restore's 1 MiB chunk: the 400 chunks of a
 * million-Variable restore stayed in memory, next to the state they
 * built, until another raft_trailing_logs entries came.  So a snapshot
 * is also due once the entries applied since the last one add up to the
 * state's encoded size (at least LOG_BYTES_MIN), which keeps the log in
 * memory under about the state's size (half of it while a restore is
 * staged, whose snapshots are written at disk speed), and a snapshot
 * keeps at most TRAILING_BYTES of trailing entries (and never more than
 * raft_trailing_logs of them).
 */
#define LOG_BYTES_MIN (64u << 20)
#define TRAILING_BYTES (32u << 20)

/*
 * How much later than the others this server snapshots: from 1 for the
 * voter with the lowest ID to 1.5 for the one with the highest, evenly
 * spaced, as a factor of the log since the last snapshot that is due
 * (in bytes, log_note, and in entries, close_gate).  Every server
 * applies the same entries, so with three voters their snapshots start
 * a quarter of that log apart (about 100 MB at a million Variables, 8 s
 * of a full rekey) instead of together or wherever random draws put
 * them.  A server that is not a voter (yet) draws its factor (log_slot,
 * drawn after each snapshot).
 */
static double rank_factor(struct kr_raft *r)
{
    unsigned n = 0, rank = 0;

    for (unsigned i = 0; r->raft_ok && i < r->raft.configuration.n; i++) {
        const struct raft_server *sv = &r->raft.configuration.servers[i];

        if (sv->role != RAFT_VOTER)
            continue;
        n++;
        rank += sv->id < r->id;
    }
    if (n == 0 || rank >= n)
        return 1.0 + r->snap.log_slot / 2;
    return n == 1 ? 1.0 : 1.0 + (double)rank / (2.0 * (n - 1));
}

static void log_note(struct kr_raft *r, uint64_t index, size_t len)
{
    uint64_t since, due;

    r->snap.log_total += len;
    if (r->snap.cap_marks > 0) {
        size_t at = (r->snap.first_mark + r->snap.n_marks) % r->snap.cap_marks;

        r->snap.marks[at] =
            (struct log_mark){.index = index, .total = r->snap.log_total};
        if (r->snap.n_marks < r->snap.cap_marks)
            r->snap.n_marks++;
        else
            r->snap.first_mark = (r->snap.first_mark + 1) % r->snap.cap_marks;
    }
    since = r->snap.log_total - r->snap.log_at_freeze;
    if (since < LOG_BYTES_MIN || r->snap.forced || r->snap.frozen != NULL)
        return;
    /* While a restore is staged its chunks are in memory twice, raw in
     * the log and decoded in the stage: snapshot twice as often.
     * Otherwise each server waits its rank_factor of the state's size. */
    due = kr_state_var_bytes(r->cfg.state);
    if (kr_state_stage_info(r->cfg.state, NULL, NULL, NULL))
        due /= 2;
    else
        due = (uint64_t)((double)due * rank_factor(r));
    if (since >= due) {
        /* libraft checks the threshold right after this apply batch. */
        r->snap.forced = true;
        raft_set_snapshot_threshold(&r->raft, 1);
    }
}

/* The trailing entries a snapshot at index (the last applied) keeps:
 * as many of the last raft_trailing_logs as fit in TRAILING_BYTES. */
static unsigned trailing_for(struct kr_raft *r, uint64_t index)
{
    uint64_t max = r->cfg.snapshot_trailing, t = 0;

    for (size_t k = r->snap.n_marks; k-- > 0;) {
        const struct log_mark *m =
            &r->snap.marks[(r->snap.first_mark + k) % r->snap.cap_marks];
        if (r->snap.log_total - m->total > TRAILING_BYTES)
            return (unsigned)(t < max ? t : max);
        t = index - m->index;
    }
    /* Every mark fits; a full ring reaches about raft_trailing_logs back. */
    return r->snap.n_marks == r->snap.cap_marks ? (unsigned)max
                                                : (unsigned)(t < max ? t : max);
}

/*
 * Applies every entry of the frame at the same index.  Outcomes go to the
 * proposer's request when this server proposed the entry; raft's result
 * pointer is not used, so batches need no per-entry allocation.
 */
static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct kr_raft *r = fsm->data;
    /* raft sets last_applied only after apply returns. */
    uint64_t index = raft_last_applied(&r->raft) + 1;
    struct apply_req *a = inflight_at(r, index);
    struct kr_frame_reader fr;
    const uint8_t *payload;
    size_t len;
    unsigned count = kr_frame_open(&fr, buf->base, buf->len);

    if (count == 0) {
        /* Deterministic on every replica: the entry is refused. */
        KR_ERROR("raft", "entry %llu has a malformed frame",
                 (unsigned long long)index);
        for (unsigned i = 0; a != NULL && i < a->n; i++)
            a->items[i].outcome = KR_ECORRUPT;
    }
    for (unsigned i = 0; kr_frame_next(&fr, &payload, &len); i++) {
        int outcome = kr_state_apply(r->cfg.state, index, payload, len);
        if (a != NULL && i < a->n)
            a->items[i].outcome = outcome;
    }
    if (a != NULL)
        a->applied = true;
    *result = NULL;
    log_note(r, index, buf->len);
    if (r->cfg.after_apply != NULL)
        r->cfg.after_apply(r->cfg.arg);
    return 0;
}

static void raft_closed(struct raft *raft);

/*
 * How often raft snapshots may happen.  libraft snapshots every
 * snapshot_threshold applied entries, which under load is every few
 * seconds, and each one writes the whole state to disk (hundreds of MB at
 * a million Variables, on every server at about the same moment).  Like
 * HashiCorp raft's SnapshotInterval, raft_snapshot_interval spaces them:
 * after a snapshot the threshold rises until the interval, or a little
 * more, has passed, then drops back.  It rises to GATE_FACTOR times the
 * configured one, or to the number of Variables if that is more: a
 * snapshot writes every Variable, so it waits for at least as many new
 * entries as it will write.  With 8 x 8192 alone, a server holding a
 * million Variables under 6000 writes a second wrote its whole state
 * (411 MB) every 11 to 16 s, about ten times the bytes of the log it
 * replaced.  The log this keeps in memory is bounded in bytes by the
 * byte trigger (log_note), at about the state's size.
 */
#define GATE_FACTOR 8u

static void gate_open(uv_timer_t *t)
{
    struct kr_raft *r = t->data;

    raft_set_snapshot_threshold(&r->raft, r->cfg.snapshot_threshold);
}

/* A number in [0, 1) from this server's own sequence (xorshift64*,
 * seeded with the node ID, which is random): each server draws its own,
 * unlike anything derived from the log. */
static double jitter(struct kr_raft *r)
{
    uint64_t x = r->snap.rng != 0 ? r->snap.rng : r->id | 1u;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->snap.rng = x;
    return (double)((x * UINT64_C(2685821657736338717)) >> 11) /
           (double)(UINT64_C(1) << 53);
}

/*
 * After every snapshot the gate's threshold (above) is multiplied by
 * this server's rank_factor, and its interval is drawn afresh
 * between 1 and 1.5 times the configured one, as HashiCorp raft
 * randomises its snapshot checks: servers that reached the same index
 * together then take their next snapshots apart, so a snapshot's disk
 * writes and libraft's compaction after it (which holds the loop for
 * tens of milliseconds at a million Variables) do not hit every server
 * at once.
 */
static void close_gate(struct kr_raft *r)
{
    double t, ms = (double)r->cfg.snapshot_interval_ms * (1.0 + jitter(r) / 2);
    size_t n_vars = kr_state_var_count(r->cfg.state);

    r->snap.log_slot = jitter(r);
    t = (double)r->cfg.snapshot_threshold * GATE_FACTOR;
    if ((double)n_vars > t)
        t = (double)n_vars;
    t *= rank_factor(r);
    if (r->cfg.snapshot_interval_ms == 0 || r->closing)
        return;
    raft_set_snapshot_threshold(&r->raft,
                                t >= (double)UINT_MAX ? UINT_MAX : (unsigned)t);
    uv_timer_start(&r->snap.gate, gate_open, (uint64_t)ms, 0);
}

/*
 * Making the next freeze's array, on libuv's thread pool.  The jobs hold
 * the state, not r: the state outlives the loop, and the loop runs until
 * its jobs are done.
 */
struct spare_job {
    uv_work_t work;
    struct kr_state *state;
    void *spare;
    size_t n; /* entries */
};

static void spare_work(uv_work_t *w)
{
    struct spare_job *j = w->data;
    int prio = kr_thread_background();

    j->spare = kr_state_spare_make(j->n);
    kr_thread_foreground(prio);
}

static void spare_done(uv_work_t *w, int status)
{
    struct spare_job *j = w->data;

    (void)status;
    kr_state_spare_give(j->state, j->spare, j->n);
    free(j);
}

/* Called from the agent's tick: a bigger spare array when the state has
 * grown past the one kept. */
static void grow_spare(struct kr_raft *r)
{
    size_t n;
    struct spare_job *j;

    if (r->closing)
        return;
    n = kr_state_spare_wanted(r->cfg.state);
    if (n == 0)
        return;
    j = calloc(1, sizeof(*j));
    if (j != NULL) {
        j->work.data = j;
        j->state = r->cfg.state;
        j->n = n;
        if (uv_queue_work(r->cfg.loop, &j->work, spare_work, spare_done) == 0)
            return;
        free(j);
    }
    kr_state_spare_give(r->cfg.state, NULL, n);
}

/*
 * Raft snapshots (fsm version 3).  fsm_snapshot runs on the loop and only
 * freezes the state (kr_state_freeze: the key records and a copy of each
 * Variable's metadata); fsm_snapshot_async writes the encoding on a
 * worker thread while the loop goes on applying; fsm_snapshot_finalize,
 * back on the loop once raft has stored the snapshot (or failed to),
 * frees the buffer and thaws the state.  At a million Variables the loop
 * stalls for tens of milliseconds instead of seconds, which is what kept
 * a big leader from answering heartbeats.  raft takes one snapshot at a
 * time, so one set of fields holds it.
 */
/* The view is filled in slices from a 1 ms timer: see cluster/freeze.h. */
static void fill_done(struct kr_raft *r)
{
    uv_timer_stop(&r->snap.fill);
    r->snap.t_filled = kr_time_mono_ms() - r->snap.t0;
    uv_mutex_lock(&r->snap.mu);
    r->snap.filled = true;
    uv_cond_signal(&r->snap.cv);
    uv_mutex_unlock(&r->snap.mu);
}

static void fill_step(uv_timer_t *h)
{
    struct kr_raft *r = h->data;

    if (kr_freeze_fill(r->cfg.loop, &r->snap.idle_mark, r->cfg.state,
                       r->snap.frozen, &r->snap.t_loop_us))
        fill_done(r);
}

/* The view whole now, in one piece (closing, or no async worker). */
static void fill_now(struct kr_raft *r)
{
    if (r->snap.frozen == NULL || !uv_is_active((uv_handle_t *)&r->snap.fill))
        return;
    uint64_t t = kr_time_mono_us();

    (void)kr_state_freeze_step(r->cfg.state, r->snap.frozen, SIZE_MAX);
    r->snap.t_loop_us += kr_time_mono_us() - t;
    fill_done(r);
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct kr_raft *r = fsm->data;
    uint64_t t0 = kr_time_mono_ms();

    KR_BUG_ON(r->snap.frozen != NULL);
    if (kr_state_freeze_begin(r->cfg.state, true, &r->snap.frozen) != 0)
        return RAFT_NOMEM;
    r->snap.t0 = t0;
    r->snap.t_loop_us = (kr_time_mono_ms() - t0) * 1000u;
    r->snap.index = raft_last_applied(&r->raft);
    r->snap.unpaced = kr_state_stage_info(r->cfg.state, NULL, NULL, NULL);
    raft_set_snapshot_trailing(&r->raft, trailing_for(r, r->snap.index));
    r->snap.log_at_freeze = r->snap.log_total;
    if (r->snap.forced) {
        /* No other snapshot starts before finalize, which sets the
         * threshold for the next one (close_gate). */
        r->snap.forced = false;
        raft_set_snapshot_threshold(&r->raft, r->cfg.snapshot_threshold);
    }
    r->snap.filled = false;
    r->snap.idle_mark = 0;
    uv_timer_start(&r->snap.fill, fill_step, 0, 1);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs);

/* On the loop: the worker found the state too large for a frame. */
static void report_too_big(struct kr_raft *r)
{
    if (!r->snap.too_big)
        return;
    KR_ERROR("raft", "the state (%zu bytes) is too large for a raft snapshot",
             kr_state_frozen_size(r->snap.frozen));
    r->snap.too_big = false;
}

/* The same, for a disk backend without async work: all on the loop.
 * raft calls finalize only after a snapshot that succeeded. */
static int fsm_snapshot_sync(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                             unsigned *n_bufs)
{
    struct kr_raft *r = fsm->data;
    int rv = fsm_snapshot(fsm, bufs, n_bufs);

    if (rv == 0) {
        fill_now(r);
        rv = fsm_snapshot_async(fsm, bufs, n_bufs);
    }
    if (rv != 0 && r->snap.frozen != NULL) {
        report_too_big(r);
        kr_state_thaw(r->cfg.state, r->snap.frozen);
        r->snap.frozen = NULL;
    }
    return rv;
}

/* snapwrite's source, on libraft's write thread: the frame around the
 * view's encoding, streamed.  The loop leaves the view alone until
 * finalize. */
static int emit_piece(void *arg, const void *p, size_t n, char *errmsg)
{
    (void)errmsg;
    return kr_snapwrite_put(arg, p, n) == 0 ? 0 : KR_EIO;
}

static int produce(void *arg, struct kr_snapwrite_sink *sink)
{
    struct kr_raft *r = arg;
    size_t len = kr_state_frozen_size(r->snap.frozen);
    uint8_t head[KR_FRAME_HEADER] = {(uint8_t)len, (uint8_t)(len >> 8),
                                     (uint8_t)(len >> 16),
                                     (uint8_t)(len >> 24)};
    static const uint8_t zeros[8];
    size_t pad = kr_frame_size(len) - KR_FRAME_HEADER - len;
    /* snapwrite runs this on a thread at background priority.  The
     * encoding proper allocates nothing (only a record larger than buf,
     * a Variable near the 1 MiB cap, gets a buffer of its own), so it
     * may run in the idle class (snapwrite.h). */
    uint8_t *buf = malloc(KR_STATE_EMIT_CHUNK);
    int rv = buf != NULL ? kr_snapwrite_put(sink, head, sizeof(head)) : -1;

    if (rv == 0) {
        kr_snapwrite_idle(sink, true);
        rv = kr_state_frozen_emit_into(r->snap.frozen, buf, emit_piece, sink,
                                       NULL) == 0
                 ? 0
                 : -1;
        kr_snapwrite_idle(sink, false);
    }
    if (rv == 0)
        rv = kr_snapwrite_put(sink, zeros, pad);
    free(buf);
    return rv;
}

/* Worker thread: waits for the view to be whole, and hands raft a
 * placeholder that snapwrite fills as raft writes it (snapwrite.h). */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
    struct kr_raft *r = fsm->data;
    struct raft_buffer *out;
    size_t len;

    uv_mutex_lock(&r->snap.mu);
    while (!r->snap.filled)
        uv_cond_wait(&r->snap.cv, &r->snap.mu);
    uv_mutex_unlock(&r->snap.mu);
    len = kr_state_frozen_size(r->snap.frozen);
    if (len > KR_FRAME_PAYLOAD_MAX) {
        /* Logged on the loop, in finalize. */
        r->snap.too_big = true;
        return RAFT_NOMEM;
    }
    out = raft_malloc(sizeof(*out));
    if (out == NULL)
        return RAFT_NOMEM;
    out->len = kr_frame_size(len);
    out->base = kr_snapwrite_arm(
        out->len, r->snap.unpaced ? 0 : r->cfg.snapshot_write_rate, produce, r);
    if (out->base == NULL) {
        raft_free(out);
        return RAFT_NOMEM;
    }
    *bufs = out;
    *n_bufs = 1;
    return 0;
}

/* Version 2+ contract: the buffers stay ours and are released here. */
static int fsm_snapshot_finalize(struct raft_fsm *fsm,
                                 struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct kr_raft *r = fsm->data;
    size_t len = *n_bufs > 0 ? (*bufs)[0].len : 0;
    uint64_t write_ms = 0;
    struct kr_state_garbage *garbage = NULL;

    for (unsigned i = 0; i < *n_bufs; i++)
        write_ms += kr_snapwrite_release((*bufs)[i].base, (*bufs)[i].len);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    report_too_big(r);
    uv_timer_stop(&r->snap.fill);
    if (r->snap.frozen != NULL) {
        struct kr_raft_snapshot_stats *st = &r->snap.stats;

        st->taken++;
        st->last_index = r->snap.index;
        st->last_bytes = len;
        st->last_loop_ms = r->snap.t_loop_us / 1000u;
        st->last_write_ms = write_ms;
        st->last_ms = kr_time_mono_ms() - r->snap.t0;
        KR_DEBUG("raft",
                 "snapshot of %zu bytes: %llu ms on the loop (over %llu ms), "
                 "%llu ms encoding and writing, %llu ms in all",
                 len, (unsigned long long)st->last_loop_ms,
                 (unsigned long long)r->snap.t_filled,
                 (unsigned long long)st->last_write_ms,
                 (unsigned long long)st->last_ms);
        garbage = kr_state_thaw_deferred(r->cfg.state, r->snap.frozen);
        r->snap.frozen = NULL;
        close_gate(r);
    }
    kr_freeze_garbage_later(r->cfg.loop, garbage);
    if (r->snap.close_waits) {
        r->snap.close_waits = false;
        raft_close(&r->raft, raft_closed);
    }
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct kr_raft *r = fsm->data;
    char errmsg[KR_ERRMSG_SIZE] = "malformed snapshot frame";
    size_t len;
    const uint8_t *payload = unframe(buf, &len);
    int rv = payload == NULL
                 ? KR_ECORRUPT
                 : kr_state_restore(r->cfg.state, payload, len, errmsg);

    /* The log starts over after the snapshot's index. */
    r->snap.n_marks = 0;
    r->snap.log_at_freeze = r->snap.log_total;

    if (rv != 0) {
        KR_ERROR("raft", "snapshot restore failed: %s", errmsg);
        return RAFT_CORRUPT;
    }
    {
        uint64_t got = 0, total = 0;

        if (kr_state_stage_info(r->cfg.state, NULL, &got, &total))
            KR_INFO("raft",
                    "state restored from a raft snapshot of %zu bytes, with "
                    "a restore staged in it (%llu of %llu bytes)",
                    len, (unsigned long long)got, (unsigned long long)total);
        else
            KR_INFO("raft", "state restored from a raft snapshot of %zu bytes",
                    len);
    }
    /* On success the FSM owns the buffer. */
    raft_free(buf->base);
    if (r->cfg.after_apply != NULL)
        r->cfg.after_apply(r->cfg.arg);
    return 0;
}

/* Reads the persistent node ID, creating it on first start. */
static int load_node_id(const char *data_dir, raft_id *out, bool *fresh,
                        char *errmsg)
{
    char path[4096], tmp[4200], text[32];
    FILE *f;
    uint64_t id = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/node-id", data_dir);
    f = fopen(path, "r");
    if (f != NULL) {
        int ok = fscanf(f, "%" SCNu64, &id) == 1 && id != 0;
        fclose(f);
        if (!ok)
            return kr_errf(errmsg, KR_ECORRUPT, "%s: malformed node ID", path);
        *out = id;
        *fresh = false;
        return 0;
    }
    if (errno != ENOENT)
        return kr_errf(errmsg, KR_EIO, "%s: %s", path, strerror(errno));
    while (id == 0)
        if (kr_rand_bytes(&id, sizeof(id)) != 0)
            return kr_errf(errmsg, KR_ECRYPTO, "no randomness for node ID");
    id >>= 1; /* keep it readable as a signed 64-bit number too */
    if (id == 0)
        id = 1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    snprintf(text, sizeof(text), "%" PRIu64 "\n", id);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
        fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        if (fd >= 0)
            close(fd);
        return kr_errf(errmsg, KR_EIO, "%s: %s", path, strerror(errno));
    }
    *out = id;
    *fresh = true;
    return 0;
}

static bool raft_dir_has_state(const char *raft_dir)
{
    char p[4200];

    snprintf(p, sizeof(p), "%s/metadata1", raft_dir);
    if (access(p, F_OK) == 0)
        return true;
    snprintf(p, sizeof(p), "%s/metadata2", raft_dir);
    return access(p, F_OK) == 0;
}

/* Starts raft; with peers (n > 0) on a fresh directory, bootstraps it
 * with that configuration first. */
static int start_raft(struct kr_raft *r, const struct peer *peers, size_t n)
{
    struct raft_configuration conf;
    int rv = 0;

    raft_configuration_init(&conf);
    for (size_t i = 0; i < n && rv == 0; i++)
        rv = raft_configuration_add(&conf, peers[i].id, peers[i].address,
                                    RAFT_VOTER);
    if (rv == 0 && n > 0) {
        rv = raft_bootstrap(&r->raft, &conf);
        if (rv == RAFT_CANTBOOTSTRAP)
            rv = 0;
    }
    raft_configuration_close(&conf);
    if (rv == 0)
        rv = raft_start(&r->raft);
    if (rv != 0) {
        const char *detail = raft_errmsg(&r->raft);
        KR_ERROR("raft", "cannot start raft on %s: %s%s%s", r->address,
                 raft_strerror(rv), *detail ? ": " : "", detail);
        return rv;
    }
    r->started = true;
    KR_INFO("raft", "started node %llu at %s (%s)", (unsigned long long)r->id,
            r->address,
            n > 1          ? "bootstrapped a new cluster"
            : n == 1       ? "bootstrapped a one-server cluster"
            : r->had_state ? "existing state"
                           : "waiting to be added by the leader");
    return 0;
}

/* ---- membership: serving calls ---- */

static bool in_config(struct kr_raft *r, uint64_t id, bool *voter)
{
    for (unsigned i = 0; i < r->raft.configuration.n; i++) {
        const struct raft_server *s = &r->raft.configuration.servers[i];
        if (s->id == id) {
            if (voter != NULL)
                *voter = s->role == RAFT_VOTER;
            return true;
        }
    }
    return false;
}

static void add_seen(struct kr_raft *r, uint64_t id, const char *address)
{
    for (size_t i = 0; i < r->n_seen; i++)
        if (r->seen[i].id == id)
            return;
    if (r->n_seen == MAX_PEERS || id == 0)
        return;
    r->seen[r->n_seen].id = id;
    snprintf(r->seen[r->n_seen].address, sizeof(r->seen[0].address), "%s",
             address);
    r->n_seen++;
}

static void change_done(struct raft_change *req, int status)
{
    struct kr_raft *r = req->data;
    kr_raft_barrier_cb cb = r->remove_cb;
    bool voter = false;
    int rv;

    r->remove_cb = NULL;
    if (cb != NULL) {
        r->changing = false;
        cb(r->remove_arg, to_kr(status));
        return;
    }
    /* A join: after raft_add succeeds, promote the new server. */
    if (status == 0 && in_config(r, r->changing_id, &voter) && !voter) {
        rv = raft_assign(&r->raft, &r->change, r->changing_id, RAFT_VOTER,
                         change_done);
        if (rv == 0)
            return;
        status = rv;
    }
    if (status != 0)
        KR_WARN("raft", "adding server %llu: %s",
                (unsigned long long)r->changing_id, raft_strerror(status));
    else
        KR_INFO("raft", "server %llu is now a voter",
                (unsigned long long)r->changing_id);
    r->changing = false;
}

static int serve_join(struct kr_raft *r, struct kr_rd *rd, struct kr_buf *out)
{
    uint64_t id = kr_rd_u64(rd);
    char *address = kr_rd_strdup(rd, 255);
    bool voter = false;
    int code = JOIN_ACCEPTED, rv;

    if (address == NULL || !kr_rd_done(rd) || id == 0) {
        free(address);
        return KR_EINVAL;
    }
    if (!kr_raft_is_leader(r)) {
        code = JOIN_NOT_LEADER;
    } else if (in_config(r, id, &voter) && voter) {
        code = JOIN_ACCEPTED; /* already a member */
    } else if (r->changing) {
        code = JOIN_BUSY;
    } else {
        r->change.data = r;
        r->changing = true;
        r->changing_id = id;
        if (in_config(r, id, NULL))
            rv = raft_assign(&r->raft, &r->change, id, RAFT_VOTER, change_done);
        else
            rv = raft_add(&r->raft, &r->change, id, address, change_done);
        if (rv != 0) {
            r->changing = false;
            code = JOIN_BUSY;
        } else {
            KR_INFO("raft", "adding server %llu at %s", (unsigned long long)id,
                    address);
        }
    }
    kr_buf_u8(out, (uint8_t)code);
    kr_buf_str(out, kr_raft_leader_address(r));
    free(address);
    return 0;
}

static int on_call(void *arg, const uint8_t *req, size_t len,
                   struct kr_buf *out)
{
    struct kr_raft *r = arg;
    struct kr_rd rd;
    uint8_t op;

    kr_rd_init(&rd, req, len);
    op = kr_rd_u8(&rd);
    if (op == OP_JOIN)
        return serve_join(r, &rd, out);
    if (op != OP_STATUS || !kr_rd_done(&rd))
        return KR_EINVAL;
    kr_buf_u64(out, r->id);
    kr_buf_str(out, r->address);
    kr_buf_u8(out, r->started);
    kr_buf_u8(out, kr_raft_is_leader(r));
    kr_buf_str(out, kr_raft_leader_address(r));
    kr_buf_u32(out, r->raft.configuration.n);
    for (unsigned i = 0; i < r->raft.configuration.n; i++) {
        const struct raft_server *s = &r->raft.configuration.servers[i];
        kr_buf_u64(out, s->id);
        kr_buf_str(out, s->address);
        kr_buf_u8(out, s->role == RAFT_VOTER);
    }
    kr_buf_u32(out, r->started ? 0 : (uint32_t)r->n_seen);
    for (size_t i = 0; !r->started && i < r->n_seen; i++) {
        kr_buf_u64(out, r->seen[i].id);
        kr_buf_str(out, r->seen[i].address);
    }
    return 0;
}

static bool check_removed(struct kr_raft *r);
static void component_closed(struct kr_raft *r);

/* A membership call came back; while closing, the last one releases the
 * hold it put on freeing r.  Returns true when r is closing (the caller
 * must not touch it further). */
static bool call_returned(struct kr_raft *r)
{
    r->calls_out--;
    if (!r->closing)
        return false;
    if (r->calls_out == 0 && r->calls_hold) {
        r->calls_hold = false;
        component_closed(r);
    }
    return true;
}

/* A raft stream whose address the RPC listener has matched with the
 * connection's source IP.  The ID must agree with the configuration: a
 * configured ID from another address, or a configured address under
 * another ID, is refused.  Servers not yet configured (a server joining)
 * pass; raft only counts votes and acks from configured IDs. */
static void on_raft_stream(void *arg, uint64_t id, const char *address,
                           uv_stream_t *stream)
{
    struct kr_raft *r = arg;

    for (unsigned i = 0; i < r->raft.configuration.n; i++) {
        const struct raft_server *s = &r->raft.configuration.servers[i];
        bool same_id = s->id == id;
        bool same_addr = strcmp(s->address, address) == 0;

        if (same_id != same_addr) {
            KR_WARN("raft",
                    "refused a raft connection that claims node %llu at %s: "
                    "the configuration has node %llu at %s",
                    (unsigned long long)id, address, (unsigned long long)s->id,
                    s->address);
            uv_close((uv_handle_t *)stream, (uv_close_cb)raft_free);
            return;
        }
    }
    kr_transport_accept(&r->transport, id, address, stream);
}

static void on_http_stream(void *arg, uv_stream_t *stream)
{
    struct kr_raft *r = arg;

    if (r->cfg.on_http != NULL)
        r->cfg.on_http(r->cfg.arg, stream);
    else
        uv_close((uv_handle_t *)stream, (uv_close_cb)raft_free);
}

/* ---- membership: discovery and joining ---- */

static void join_answered(void *arg, int status, const uint8_t *resp,
                          size_t len)
{
    struct kr_raft *r = arg;
    struct kr_rd rd;
    uint8_t code;
    char *leader;

    if (call_returned(r) || status != 0)
        return;
    kr_rd_init(&rd, resp, len);
    code = kr_rd_u8(&rd);
    leader = kr_rd_strdup(&rd, 255);
    if (leader != NULL && code == JOIN_NOT_LEADER && *leader != '\0')
        snprintf(r->leader_hint, sizeof(r->leader_hint), "%s", leader);
    free(leader);
}

static void send_join(struct kr_raft *r, const char *to)
{
    struct kr_buf req;

    kr_buf_init(&req);
    kr_buf_u8(&req, OP_JOIN);
    kr_buf_u64(&req, r->id);
    kr_buf_str(&req, r->address);
    if (!req.oom && kr_rpc_call(r->cfg.loop, to, req.data, req.len,
                                CALL_TIMEOUT_MS, join_answered, r) == 0)
        r->calls_out++;
    kr_buf_free(&req);
}

static int cmp_peer(const void *a, const void *b)
{
    const struct peer *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/* After a round of STATUS answers: join a running cluster, or bootstrap
 * once exactly bootstrap_expect fresh servers know each other. */
static void round_done(struct kr_raft *r)
{
    bool voter = false;

    if (r->closing || check_removed(r))
        return;
    if (r->found_cluster) {
        /* Listed in the running cluster's configuration: we belong to
         * the same bootstrap, so we bootstrap with that configuration. */
        if (!r->started && !r->had_state && r->n_adopt > 0) {
            KR_INFO("raft", "joining the cluster bootstrapped by %s",
                    r->leader_hint[0] ? r->leader_hint : "a peer");
            start_raft(r, r->adopt, r->n_adopt);
            return;
        }
        if (!r->started && start_raft(r, NULL, 0) != 0)
            return;
        if (!(in_config(r, r->id, &voter) && voter) &&
            r->leader_hint[0] != '\0')
            send_join(r, r->leader_hint);
        return;
    }
    if (r->started || (int)r->n_seen < r->cfg.bootstrap_expect)
        return;
    if ((int)r->n_seen > r->cfg.bootstrap_expect) {
        KR_WARN("raft",
                "%zu fresh servers found but bootstrap_expect is %d: not "
                "bootstrapping; make bootstrap_expect match the number of "
                "initial servers",
                r->n_seen, r->cfg.bootstrap_expect);
        return;
    }
    qsort(r->seen, r->n_seen, sizeof(r->seen[0]), cmp_peer);
    KR_INFO("raft", "found %zu servers, bootstrapping the cluster", r->n_seen);
    start_raft(r, r->seen, r->n_seen);
}

static void status_answered(void *arg, int status, const uint8_t *resp,
                            size_t len)
{
    struct kr_raft *r = arg;
    struct kr_rd rd;
    uint64_t id;
    char *address = NULL, *leader_addr = NULL;
    uint8_t started, is_leader;
    uint32_t n;
    bool member = false, member_voter = false;
    struct peer conf[MAX_PEERS];
    size_t n_conf;

    if (call_returned(r))
        return;
    if (status != 0)
        goto out;
    kr_rd_init(&rd, resp, len);
    id = kr_rd_u64(&rd);
    address = kr_rd_strdup(&rd, 255);
    started = kr_rd_u8(&rd);
    is_leader = kr_rd_u8(&rd);
    leader_addr = kr_rd_strdup(&rd, 255);
    if (address == NULL || leader_addr == NULL)
        goto out;
    n = kr_rd_u32(&rd);
    n_conf = 0;
    for (uint32_t i = 0; i < n && !rd.err; i++) {
        uint64_t sid = kr_rd_u64(&rd);
        char *sa = kr_rd_strdup(&rd, 255);
        uint8_t v = kr_rd_u8(&rd);
        if (sid == r->id) {
            member = true;
            member_voter = v;
        }
        if (sa != NULL && n_conf < MAX_PEERS) {
            conf[n_conf].id = sid;
            snprintf(conf[n_conf].address, sizeof(conf[0].address), "%s", sa);
            n_conf++;
        }
        free(sa);
    }
    if (started && member && !rd.err) {
        memcpy(r->adopt, conf, n_conf * sizeof(conf[0]));
        r->n_adopt = n_conf;
    }
    if (!started) {
        add_seen(r, id, address);
        n = kr_rd_u32(&rd);
        for (uint32_t i = 0; i < n && !rd.err; i++) {
            uint64_t sid = kr_rd_u64(&rd);
            char *sa = kr_rd_strdup(&rd, 255);
            if (sa != NULL)
                add_seen(r, sid, sa);
            free(sa);
        }
    } else {
        /* A running cluster, even one between leaders: never bootstrap a
         * second one beside it. */
        r->found_cluster = true;
        if (is_leader || *leader_addr != '\0')
            snprintf(r->leader_hint, sizeof(r->leader_hint), "%s",
                     is_leader ? address : leader_addr);
        /* Our log says we are a member, the leader's says we are not: we
         * were removed, and must not rejoin with stale state. */
        if (is_leader && (r->had_state || r->was_voter) && !member &&
            in_config(r, r->id, NULL)) {
            r->removed = true;
            KR_ERROR("raft",
                     "this server (%llu) was removed from the cluster led "
                     "by %s; stop it and empty its data_dir to join again",
                     (unsigned long long)r->id, address);
            if (r->cfg.on_fatal != NULL)
                r->cfg.on_fatal(r->cfg.arg,
                                "server was removed from the cluster");
        }
        (void)member_voter;
    }
out:
    free(address);
    free(leader_addr);
    if (r->calls_out == 0)
        round_done(r);
}

/* A server that was a voter and is no longer in its own configuration
 * was removed: it stops instead of joining again by itself. */
static bool check_removed(struct kr_raft *r)
{
    bool voter = false;

    if (r->removed || !r->started)
        return r->removed;
    if (in_config(r, r->id, &voter) && voter) {
        r->was_voter = true;
        return false;
    }
    if (r->was_voter && r->raft.configuration.n > 0) {
        r->removed = true;
        KR_ERROR("raft",
                 "this server (%llu) was removed from the cluster; stop it "
                 "and empty its data_dir to join again",
                 (unsigned long long)r->id);
        if (r->cfg.on_fatal != NULL)
            r->cfg.on_fatal(r->cfg.arg, "server was removed from the cluster");
    }
    return r->removed;
}

static void on_tick(uv_timer_t *t)
{
    struct kr_raft *r = t->data;
    struct kr_buf req;
    bool voter = false;

    if (r->calls_out > 0 || r->closing || check_removed(r))
        return;
    /* A member keeps asking too: a removed server is not told by the
     * leader (which stops replicating to it), so it must look. */
    (void)voter;
    r->found_cluster = false;
    r->n_adopt = 0;
    kr_buf_init(&req);
    kr_buf_u8(&req, OP_STATUS);
    for (size_t i = 0; i < r->cfg.n_retry_join; i++) {
        if (strcmp(r->retry_join[i], r->address) == 0)
            continue;
        if (kr_rpc_call(r->cfg.loop, r->retry_join[i], req.data, req.len,
                        CALL_TIMEOUT_MS, status_answered, r) == 0)
            r->calls_out++;
        else
            KR_WARN("raft", "retry_join: invalid address \"%s\"",
                    r->retry_join[i]);
    }
    kr_buf_free(&req);
    if (r->calls_out == 0)
        round_done(r);
}

/* ---- lifecycle ---- */

static void component_closed(struct kr_raft *r)
{
    void (*cb)(void *) = r->close_cb;
    void *arg = r->close_arg;

    if (--r->closing > 0)
        return;
    if (r->raft_ok || r->io_ok)
        raft_uv_close(&r->io);
    if (r->transport_ok)
        kr_transport_release(&r->transport);
    for (size_t i = 0; i < r->cfg.n_retry_join; i++)
        free(r->retry_join[i]);
    free(r->retry_join);
    free(r->raft_dir);
    free(r->address);
    free(r->snap.marks);
    kr_buf_free(&r->batch);
    uv_cond_destroy(&r->snap.cv);
    uv_mutex_destroy(&r->snap.mu);
    free(r);
    if (cb != NULL)
        cb(arg);
}

static void handle_closed(uv_handle_t *h)
{
    component_closed(h->data);
}

static void raft_closed(struct raft *raft)
{
    component_closed((struct kr_raft *)raft);
}

static void free_partial(struct kr_raft *r)
{
    if (r->retry_join != NULL) {
        for (size_t i = 0; i < r->cfg.n_retry_join; i++)
            free(r->retry_join[i]);
        free(r->retry_join);
    }
    free(r->raft_dir);
    free(r->address);
    free(r->snap.marks);
    uv_cond_destroy(&r->snap.cv);
    uv_mutex_destroy(&r->snap.mu);
    free(r);
}

int kr_raft_start(struct kr_raft **out, const struct kr_raft_config *cfg,
                  char *errmsg)
{
    struct kr_raft *r = NULL;
    struct kr_rpc_handlers h;
    struct peer self;
    bool fresh = false;
    size_t n;
    int rv;

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    if (uv_mutex_init(&r->snap.mu) != 0) {
        free(r);
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    }
    if (uv_cond_init(&r->snap.cv) != 0) {
        uv_mutex_destroy(&r->snap.mu);
        free(r);
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    }
    r->cfg = *cfg;
    n = strlen(cfg->data_dir) + sizeof("/raft");
    r->raft_dir = malloc(n);
    r->address = strdup(cfg->address);
    r->retry_join = calloc(cfg->n_retry_join + 1, sizeof(char *));
    r->snap.cap_marks = cfg->snapshot_trailing;
    if (r->snap.cap_marks > 0)
        r->snap.marks = calloc(r->snap.cap_marks, sizeof(*r->snap.marks));
    if (r->raft_dir == NULL || r->address == NULL || r->retry_join == NULL ||
        (r->snap.cap_marks > 0 && r->snap.marks == NULL))
        goto oom;
    for (size_t i = 0; i < cfg->n_retry_join; i++) {
        r->retry_join[i] = strdup(cfg->retry_join[i]);
        if (r->retry_join[i] == NULL)
            goto oom;
    }
    snprintf(r->raft_dir, n, "%s/raft", cfg->data_dir);
    if (mkdir(r->raft_dir, 0700) != 0 && errno != EEXIST) {
        rv = kr_errf(errmsg, KR_EIO, "%s: %s", r->raft_dir, strerror(errno));
        free_partial(r);
        return rv;
    }
    rv = load_node_id(cfg->data_dir, &r->id, &fresh, errmsg);
    if (rv != 0) {
        free_partial(r);
        return rv;
    }
    r->snap.log_slot = jitter(r);
    r->had_state = raft_dir_has_state(r->raft_dir);

    r->fsm.version = 3;
    r->fsm.data = r;
    r->fsm.apply = fsm_apply;
    r->fsm.snapshot = fsm_snapshot;
    r->fsm.snapshot_finalize = fsm_snapshot_finalize;
    r->fsm.snapshot_async = fsm_snapshot_async;
    r->fsm.restore = fsm_restore;

    rv = kr_transport_init(&r->transport, cfg->loop);
    if (rv != 0)
        goto oom;
    r->transport_ok = true;
    rv = raft_uv_init(&r->io, cfg->loop, r->raft_dir, &r->transport);
    if (rv != 0)
        goto raft_fail;
    r->io_ok = true;
    /* Never move a segment raft cannot read out of the way and start
     * without it: that silently drops acknowledged writes.  A server with
     * a damaged log refuses to start instead, and says which file. */
    raft_uv_set_auto_recovery(&r->io, false);
    /* The state is almost all AES-GCM ciphertext, which LZ4 cannot
     * shrink: compressing a raft snapshot only cost a pass over it and a
     * second buffer of its size. */
    raft_uv_set_snapshot_compression(&r->io, false);
    /* libraft 0.15's disk backend implements async_work (a libuv thread
     * pool job) but still says it is a version 1 raft_io, and raft refuses
     * async snapshots without version 2.  Without async_work, snapshots
     * would stay synchronous. */
    if (r->io.async_work != NULL) {
        r->io.version = 2;
    } else {
        r->fsm.snapshot = fsm_snapshot_sync;
        r->fsm.snapshot_async = NULL;
    }
    rv = raft_init(&r->raft, &r->io, &r->fsm, r->id, r->address);
    if (rv != 0)
        goto raft_fail;
    r->raft_ok = true;
    raft_set_snapshot_threshold(&r->raft, cfg->snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, cfg->snapshot_trailing);
    raft_set_pre_vote(&r->raft, true);
    /* A snapshot sent to a server that was down is retried after this
     * long (libraft's default is 30 s). */
    raft_set_install_snapshot_timeout(&r->raft, 10000);

    h = (struct kr_rpc_handlers){
        .on_raft = on_raft_stream,
        .on_http = on_http_stream,
        .on_call = on_call,
        .arg = r,
    };
    kr_rpc_set_source(cfg->bind_host);
    rv = kr_rpc_listen(&r->rpc, cfg->loop, cfg->bind_host, cfg->rpc_port, &h,
                       errmsg);
    if (rv != 0)
        goto fail_after_init;
    uv_timer_init(cfg->loop, &r->tick);
    r->tick.data = r;
    uv_timer_init(cfg->loop, &r->snap.gate);
    r->snap.gate.data = r;
    uv_timer_init(cfg->loop, &r->snap.fill);
    r->snap.fill.data = r;
    uv_check_init(cfg->loop, &r->flush);
    r->flush.data = r;
    uv_idle_init(cfg->loop, &r->flush_idle);
    r->flush_idle.data = r;

    self.id = r->id;
    snprintf(self.address, sizeof(self.address), "%s", r->address);
    add_seen(r, r->id, r->address);
    if (r->had_state) {
        rv = start_raft(r, NULL, 0);
    } else if (cfg->bootstrap_expect <= 1 && cfg->n_retry_join == 0) {
        rv = start_raft(r, &self, 1);
    } else {
        KR_INFO("raft",
                "node %llu at %s: looking for %d servers through "
                "retry_join",
                (unsigned long long)r->id, r->address, cfg->bootstrap_expect);
        rv = 0;
    }
    if (rv != 0) {
        rv = kr_errf(errmsg, KR_EIO, "raft on %s: %s", r->address,
                     raft_strerror(rv));
        goto fail_after_init;
    }
    if (cfg->n_retry_join > 0)
        uv_timer_start(&r->tick, on_tick, 0, cfg->retry_interval_ms);
    *out = r;
    return 0;
oom:
    rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    if (r->transport_ok)
        kr_transport_release(&r->transport);
    free_partial(r);
    return rv;
raft_fail:
    kr_errf(errmsg, KR_EIO, "raft: %s", raft_strerror(rv));
    rv = KR_EIO;
    if (r->io_ok)
        raft_uv_close(&r->io);
    kr_transport_release(&r->transport);
    free_partial(r);
    return rv;
fail_after_init:
    /* raft owns io and transport now: close it properly. */
    *out = NULL;
    {
        int err = rv;
        r->close_cb = NULL;
        r->closing = 1;
        if (r->rpc != NULL) {
            kr_rpc_close(r->rpc);
            r->rpc = NULL;
            r->closing += 5;
            uv_close((uv_handle_t *)&r->tick, handle_closed);
            uv_close((uv_handle_t *)&r->snap.gate, handle_closed);
            uv_close((uv_handle_t *)&r->snap.fill, handle_closed);
            uv_close((uv_handle_t *)&r->flush, handle_closed);
            uv_close((uv_handle_t *)&r->flush_idle, handle_closed);
        }
        raft_close(&r->raft, raft_closed);
        return err;
    }
}

/* ---- proposing ---- */

static void unlink_inflight(struct kr_raft *r, struct apply_req *a)
{
    if (a->prev != NULL)
        a->prev->next = a->next;
    else
        r->inflight = a->next;
    if (a->next != NULL)
        a->next->prev = a->prev;
    else
        r->inflight_tail = a->prev;
}

static void deliver(struct apply_item *items, unsigned n, int status,
                    uint64_t index)
{
    for (unsigned i = 0; i < n; i++)
        items[i].cb(items[i].arg, status, index,
                    status == 0 ? items[i].outcome : 0);
}

static void apply_done(struct raft_apply *req, int status, void *result)
{
    struct apply_req *a = (struct apply_req *)req;
    struct kr_raft *r = req->data;
    int st = to_kr(status);

    (void)result;
    unlink_inflight(r, a);
    if (st == 0 && !a->applied) {
        /* Cannot happen with libraft 0.15; never report a guess. */
        KR_ERROR("raft", "entry %llu applied without its outcome",
                 (unsigned long long)req->index);
        st = KR_EIO;
    }
    deliver(a->items, a->n, st, req->index);
    free(a);
}

/* Proposes the open batch as one raft entry (a single frame when it
 * holds one entry).  Its proposers hear back exactly once: later, or
 * here when raft refuses the entry.  The batch is emptied before any
 * callback runs, since a callback may propose again. */
static void flush_batch(struct kr_raft *r)
{
    struct apply_item failed[KR_FRAME_BATCH_MAX];
    unsigned n = r->batch_n;
    struct apply_req *a;
    struct raft_buffer buf = {0};
    int rv = KR_ENOMEM;

    if (n == 0)
        return;
    uv_check_stop(&r->flush);
    uv_idle_stop(&r->flush_idle);
    a = calloc(1, sizeof(*a) + n * sizeof(a->items[0]));
    buf.len = n == 1 ? kr_frame_size(r->batch.len - 4)
                     : kr_frame_batch_size(r->batch.len);
    buf.base = a != NULL ? raft_malloc(buf.len) : NULL;
    if (buf.base != NULL) {
        if (n == 1)
            kr_frame_write(buf.base, r->batch.data + 4, r->batch.len - 4);
        else
            kr_frame_write_batch(buf.base, n, r->batch.data, r->batch.len);
        a->n = n;
        memcpy(a->items, r->batch_items, n * sizeof(a->items[0]));
        a->req.data = r;
    } else {
        memcpy(failed, r->batch_items, n * sizeof(failed[0]));
    }
    r->batch_n = 0;
    r->batch.len = 0; /* keeps its memory for the next batch */
    if (buf.base != NULL) {
        rv = raft_apply(&r->raft, &a->req, &buf, 1, apply_done);
        rv = rv != 0 ? to_kr(rv) : 0;
        if (rv != 0) {
            memcpy(failed, a->items, n * sizeof(failed[0]));
            raft_free(buf.base);
        }
    }
    if (rv != 0) {
        free(a);
        deliver(failed, n, rv, 0);
        return;
    }
    a->prev = r->inflight_tail;
    if (r->inflight_tail != NULL)
        r->inflight_tail->next = a;
    else
        r->inflight = a;
    r->inflight_tail = a;
}

static void on_flush(uv_check_t *h)
{
    flush_batch(h->data);
}

static void on_flush_idle(uv_idle_t *h)
{
    flush_batch(h->data);
}

int kr_raft_apply(struct kr_raft *r, const struct kr_buf *entry,
                  kr_raft_apply_cb cb, void *arg)
{
    return kr_raft_apply_keyed(r, entry, 0, cb, arg);
}

/* Whether an entry with key waits in the batch. */
static bool batch_has_key(const struct kr_raft *r, uint64_t key)
{
    for (unsigned i = 0; key != 0 && i < r->batch_n; i++)
        if (r->batch_items[i].key == key)
            return true;
    return false;
}

int kr_raft_apply_keyed(struct kr_raft *r, const struct kr_buf *entry,
                        uint64_t key, kr_raft_apply_cb cb, void *arg)
{
    if (!kr_raft_is_leader(r) || r->closing)
        return r->closing ? KR_ESHUTDOWN : KR_ENOLEADER;
    if (entry->len > KR_FRAME_PAYLOAD_MAX - 8)
        return KR_ETOOBIG;
    if (r->batch_n == KR_FRAME_BATCH_MAX ||
        (r->batch_n > 0 && r->batch.len + 4 + entry->len > BATCH_BYTES) ||
        batch_has_key(r, key))
        flush_batch(r);
    if (kr_buf_reserve(&r->batch, 4 + entry->len) != 0) {
        /* What the batch holds so far is intact: propose it, and start
         * over with an empty buffer. */
        flush_batch(r);
        kr_buf_free(&r->batch);
        kr_buf_init(&r->batch);
        return KR_ENOMEM;
    }
    kr_buf_u32(&r->batch, (uint32_t)entry->len);
    kr_buf_append(&r->batch, entry->data, entry->len);
    r->batch_items[r->batch_n++] = (struct apply_item){cb, arg, KR_EIO, key};
    if (r->batch_n == 1) {
        uv_check_start(&r->flush, on_flush);
        uv_idle_start(&r->flush_idle, on_flush_idle);
    }
    return 0;
}

int kr_raft_apply_alone(struct kr_raft *r, const struct kr_buf *entry,
                        kr_raft_apply_cb cb, void *arg)
{
    int rv;

    if (!kr_raft_is_leader(r) || r->closing)
        return r->closing ? KR_ESHUTDOWN : KR_ENOLEADER;
    flush_batch(r); /* what was proposed before goes first */
    rv = kr_raft_apply(r, entry, cb, arg);
    if (rv == 0)
        flush_batch(r); /* and nothing proposed later joins it */
    return rv;
}

static void barrier_done(struct raft_barrier *req, int status)
{
    struct barrier_req *b = (struct barrier_req *)req;

    b->cb(b->arg, to_kr(status));
    free(b);
}

int kr_raft_barrier(struct kr_raft *r, kr_raft_barrier_cb cb, void *arg)
{
    struct barrier_req *b;
    int rv;

    if (!kr_raft_is_leader(r))
        return KR_ENOLEADER;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return KR_ENOMEM;
    b->cb = cb;
    b->arg = arg;
    flush_batch(r); /* the barrier comes after what was proposed before */
    rv = raft_barrier(&r->raft, &b->req, barrier_done);
    if (rv != 0) {
        free(b);
        return to_kr(rv);
    }
    return 0;
}

bool kr_raft_started(struct kr_raft *r)
{
    return r->started;
}

bool kr_raft_is_leader(struct kr_raft *r)
{
    return r->started && raft_state(&r->raft) == RAFT_LEADER;
}

uint64_t kr_raft_last_applied(struct kr_raft *r)
{
    return r->started ? raft_last_applied(&r->raft) : 0;
}

void kr_raft_snapshot_stats(struct kr_raft *r,
                            struct kr_raft_snapshot_stats *out)
{
    *out = r->snap.stats;
    out->running = r->snap.frozen != NULL;
    out->freeing_bytes = kr_snapwrite_freeing();
}

uint64_t kr_raft_last_index(struct kr_raft *r)
{
    return r->started ? raft_last_index(&r->raft) : 0;
}

uint64_t kr_raft_term(struct kr_raft *r)
{
    return r->started ? r->raft.current_term : 0;
}

uint64_t kr_raft_id(struct kr_raft *r)
{
    return r->id;
}

unsigned kr_raft_voters(struct kr_raft *r)
{
    unsigned n = 0;

    for (unsigned i = 0; i < r->raft.configuration.n; i++)
        n += r->raft.configuration.servers[i].role == RAFT_VOTER;
    return n;
}

const char *kr_raft_leader_address(struct kr_raft *r)
{
    raft_id id;
    const char *addr = NULL;

    if (!r->started)
        return "";
    raft_leader(&r->raft, &id, &addr);
    return addr != NULL ? addr : "";
}

/*
 * libraft 0.15 (log.c) doubles its log's ring of entries and its table of
 * reference counts on the loop once the log fills them: the ring to
 * (size + 1) * 2 entries when the log holds size - 1, the table to twice
 * its buckets when the log spans more indexes than it has.  Once the
 * log holds three quarters of either, the next block is made ahead
 * (cluster/rheap.h); struct raft_log is public in raft.h, and only read.
 */
static void expect_growth(struct kr_raft *r)
{
    const struct raft_log *l = &r->raft.log;
    size_t want[2], n_want = 0, n;

    if (!r->started || l->size == 0) {
        kr_rheap_expect(NULL, 0);
        return;
    }
    n = l->front <= l->back ? l->back - l->front : l->size - l->front + l->back;
    if (n >= l->size / 4 * 3)
        want[n_want++] = (l->size + 1) * 2 * sizeof(struct raft_entry);
    if (l->refs_size > 0 && n >= l->refs_size / 4 * 3)
        want[n_want++] = l->refs_size * 2 * sizeof(struct raft_entry_ref);
    kr_rheap_expect(want, n_want);
}

void kr_raft_observe(struct kr_raft *r)
{
    if (r->started && *kr_raft_leader_address(r) != '\0')
        r->leader_seen_ms = r->io.time(&r->io);
    grow_spare(r);
    expect_growth(r);
}

uint64_t kr_raft_last_contact_ms(struct kr_raft *r)
{
    raft_time now;

    if (!r->started || raft_state(&r->raft) == RAFT_LEADER)
        return 0;
    now = r->io.time(&r->io);
    /* Without a leader, the time since one was last known (the election
     * timer restarts with every candidacy). */
    if (*kr_raft_leader_address(r) == '\0')
        return r->leader_seen_ms != 0 && now > r->leader_seen_ms
                   ? now - r->leader_seen_ms
                   : 0;
    return now > r->raft.election_timer_start
               ? now - r->raft.election_timer_start
               : 0;
}

size_t kr_raft_servers(struct kr_raft *r, struct kr_raft_server *out,
                       size_t cap)
{
    const char *leader = kr_raft_leader_address(r);
    unsigned n = r->raft.configuration.n;

    for (unsigned i = 0; i < n && i < cap; i++) {
        const struct raft_server *s = &r->raft.configuration.servers[i];
        out[i].id = s->id;
        snprintf(out[i].address, sizeof(out[i].address), "%s", s->address);
        out[i].voter = s->role == RAFT_VOTER;
        out[i].leader = strcmp(s->address, leader) == 0;
    }
    return n;
}

int kr_raft_remove(struct kr_raft *r, uint64_t id, kr_raft_barrier_cb cb,
                   void *arg)
{
    int rv;

    if (!kr_raft_is_leader(r))
        return KR_ENOLEADER;
    if (!in_config(r, id, NULL))
        return KR_ENOTFOUND;
    if (r->changing)
        return KR_ECONFLICT;
    r->change.data = r;
    r->changing = true;
    r->remove_cb = cb;
    r->remove_arg = arg;
    rv = raft_remove(&r->raft, &r->change, id, change_done);
    if (rv != 0) {
        r->changing = false;
        r->remove_cb = NULL;
        return to_kr(rv);
    }
    return 0;
}

void kr_raft_close(struct kr_raft *r, void (*cb)(void *arg), void *arg)
{
    KR_DEBUG("raft", "%llu log AIO context(s) were destroyed off the loop",
             (unsigned long long)kr_iodefer_count());
    r->close_cb = cb;
    r->close_arg = arg;
    /* two timers, the fill and two flush handles, and raft */
    r->closing = 6;
    if (r->calls_out > 0) {
        /* Membership calls in flight still point at r. */
        r->closing++;
        r->calls_hold = true;
    }
    uv_timer_stop(&r->tick);
    uv_close((uv_handle_t *)&r->tick, handle_closed);
    uv_timer_stop(&r->snap.gate);
    uv_close((uv_handle_t *)&r->snap.gate, handle_closed);
    /* A worker may be waiting for the view. */
    fill_now(r);
    uv_close((uv_handle_t *)&r->snap.fill, handle_closed);
    /* Entries not yet proposed never will be. */
    if (r->batch_n > 0) {
        unsigned n = r->batch_n;
        r->batch_n = 0;
        deliver(r->batch_items, n, KR_ESHUTDOWN, 0);
    }
    uv_close((uv_handle_t *)&r->flush, handle_closed);
    uv_close((uv_handle_t *)&r->flush_idle, handle_closed);
    kr_rpc_close(r->rpc);
    r->rpc = NULL;
    /* libraft 0.15 stores a snapshot whose async part has finished even
     * when raft is closing, and asserts on the closed disk backend: while
     * one is in flight, raft_close waits for its finalize. */
    if (r->snap.frozen != NULL)
        r->snap.close_waits = true;
    else
        raft_close(&r->raft, raft_closed);
}
