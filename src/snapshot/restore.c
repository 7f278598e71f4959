/*
 * See restore.h.  One restore at a time.  A job goes through: check (a
 * worker reads the whole archive), BEGIN, then a pipeline of chunk reads
 * (one worker job at a time, each up to KR_RESTORE_CHUNK_MAX bytes of
 * state.bin) and CHUNK proposals (at most WINDOW in raft at once, plus at
 * most one read ahead), then COMMIT once every chunk has applied.
 *
 * Lifetimes: a job holds a reference for itself until it has reported,
 * one per proposal in raft and one while a worker runs; it is freed when
 * the last goes.  Chunk buffers held state.bin, with its aead KEKs, and
 * are wiped when freed.
 */
#include "snapshot/restore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/frame.h"
#include "common/err.h"
#include "common/log.h"
#include "common/time.h"
#include "crypto/rand.h"
#include "snapshot/archive.h"
#include "state/codec.h"

#define WINDOW 4
#define ORPHAN_RETRY_MS 5000

struct job;

struct kr_restore {
    struct kr_restore_config cfg;
    struct job *job; /* the running restore, or NULL */
    bool closing;
    unsigned refs; /* 1 + jobs + orphan aborts in flight */
    /* dropping stages of a leader that is gone */
    bool leader;
    bool caught_up;
    uint64_t lead_index;
    bool aborting;
    uint64_t next_abort_ms;
};

struct job {
    struct kr_restore *r;
    int fd;
    kr_restore_cb cb;
    void *arg;
    unsigned refs;
    bool reported;
    uint64_t id;
    uint64_t total;
    uint64_t read_off; /* bytes of state.bin read so far */
    struct kr_snap_reader *reader;
    uv_work_t work;
    bool working;
    bool checked; /* the check job has run */
    int work_rv;
    char work_err[KR_ERRMSG_SIZE];
    /* the worker's chunk: only the worker touches it while working */
    uint8_t *wbuf;
    size_t wbuf_len;
    /* a chunk read and not proposed yet (the loop's) */
    uint8_t *buf;
    size_t buf_len;
    bool read_end; /* state.bin read and the archive's tail checked */
    unsigned chunks_in_raft;
    bool begun, committing;
};

struct prop {
    struct job *j;
    uint8_t type;
};

static void restore_release(struct kr_restore *r)
{
    if (--r->refs == 0)
        free(r);
}

int kr_restore_new(struct kr_restore **out, const struct kr_restore_config *cfg)
{
    struct kr_restore *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return KR_ENOMEM;
    r->cfg = *cfg;
    r->refs = 1;
    *out = r;
    return 0;
}

static void buf_free(uint8_t *b)
{
    if (b != NULL) {
        explicit_bzero(b, KR_RESTORE_CHUNK_MAX);
        free(b);
    }
}

static void job_release(struct job *j)
{
    struct kr_restore *r = j->r;

    if (--j->refs > 0)
        return;
    kr_snap_reader_free(j->reader);
    if (j->fd >= 0)
        close(j->fd);
    buf_free(j->buf);
    buf_free(j->wbuf);
    free(j);
    restore_release(r);
}

static void propose(struct job *j, uint8_t type, const uint8_t *data,
                    size_t len);

/* Reports once; a job that got as far as BEGIN is aborted if it can be. */
static void finish(struct job *j, int status, uint64_t index, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static void finish(struct job *j, int status, uint64_t index, const char *fmt,
                   ...)
{
    char msg[KR_ERRMSG_SIZE] = "";
    va_list ap;

    if (j->reported)
        return;
    j->reported = true;
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    if (status == 0)
        KR_INFO("snapshot",
                "restore %016" PRIx64 " committed at index %" PRIu64
                " (%" PRIu64 " bytes of state)",
                j->id, index, j->total);
    else
        KR_WARN("snapshot", "restore failed: %s", msg);
    if (j->r->job == j)
        j->r->job = NULL;
    if (status != 0 && j->begun && !j->r->closing &&
        kr_raft_is_leader(j->r->cfg.raft))
        propose(j, KR_ENTRY_RESTORE_ABORT, NULL, 0);
    j->cb(j->arg, status, index, msg);
    job_release(j);
}

static void start_read(struct job *j);
static void maybe_commit(struct job *j);

/* The stashed chunk goes to raft when the window has room. */
static void push_chunk(struct job *j)
{
    if (j->reported || j->buf == NULL || j->chunks_in_raft >= WINDOW)
        return;
    propose(j, KR_ENTRY_RESTORE_CHUNK, j->buf, j->buf_len);
    buf_free(j->buf);
    j->buf = NULL;
    j->buf_len = 0;
    start_read(j);
}

static void applied(void *arg, int status, uint64_t index, int outcome)
{
    struct prop *p = arg;
    struct job *j = p->j;
    uint8_t type = p->type;
    int rv = status != 0 ? status : outcome;

    free(p);
    if (type == KR_ENTRY_RESTORE_CHUNK)
        j->chunks_in_raft--;
    if (type != KR_ENTRY_RESTORE_ABORT && rv != 0)
        finish(j, rv == KR_EINVAL ? KR_EIO : rv, 0,
               "the cluster did not apply the restore's %s entry: %s%s",
               type == KR_ENTRY_RESTORE_BEGIN   ? "begin"
               : type == KR_ENTRY_RESTORE_CHUNK ? "chunk"
                                                : "commit",
               status == KR_ENOLEADER ? "leadership lost" : kr_strerror(rv),
               status == KR_ENOLEADER
                   ? " (a commit may still apply: check the state)"
                   : "");
    else if (type == KR_ENTRY_RESTORE_COMMIT)
        finish(j, 0, index, NULL);
    else if (type != KR_ENTRY_RESTORE_ABORT) {
        push_chunk(j);
        maybe_commit(j);
    }
    job_release(j);
}

static void propose(struct job *j, uint8_t type, const uint8_t *data,
                    size_t len)
{
    struct prop *p = calloc(1, sizeof(*p));
    struct kr_entry e;
    struct kr_buf b;
    int rv = KR_ENOMEM;

    memset(&e, 0, sizeof(e));
    e.type = type;
    e.restore.id = j->id;
    e.restore.total = j->total;
    e.restore.offset = j->read_off - len;
    e.restore.data = (uint8_t *)data;
    e.restore.data_len = len;
    kr_buf_init(&b);
    if (p != NULL && kr_entry_encode(&e, &b) == 0) {
        p->j = j;
        p->type = type;
        /* The commit alone at its index: a write's index then says
         * whether it landed before the restore (replaced) or after. */
        rv = type == KR_ENTRY_RESTORE_COMMIT
                 ? kr_raft_apply_alone(j->r->cfg.raft, &b, applied, p)
                 : kr_raft_apply(j->r->cfg.raft, &b, applied, p);
    }
    kr_buf_free(&b); /* wiped: a chunk holds KEKs */
    if (rv != 0) {
        free(p);
        if (type != KR_ENTRY_RESTORE_ABORT)
            finish(j, rv, 0, "proposing the restore: %s",
                   rv == KR_ENOLEADER ? "this server is no longer the leader"
                                      : kr_strerror(rv));
        return;
    }
    j->refs++;
    if (type == KR_ENTRY_RESTORE_CHUNK)
        j->chunks_in_raft++;
}

static void maybe_commit(struct job *j)
{
    /* read_end is the worker's until it returns: working first. */
    if (j->working || j->reported || !j->read_end || j->buf != NULL ||
        j->chunks_in_raft > 0 || j->committing)
        return;
    if (j->read_off != j->total) {
        finish(j, KR_EIO, 0,
               "state.bin ended after %" PRIu64 " of %" PRIu64 " bytes",
               j->read_off, j->total);
        return;
    }
    j->committing = true;
    propose(j, KR_ENTRY_RESTORE_COMMIT, NULL, 0);
}

/* Worker: the first job checks the whole archive and reopens it for
 * reading; later ones read the next chunk of state.bin. */
static void work(uv_work_t *req)
{
    struct job *j = req->data;
    struct kr_snap_reader *check = NULL;
    const struct kr_snap_meta *m;
    size_t n;

    j->work_rv = 0;
    if (!j->checked) {
        j->work_rv = kr_snap_reader_open_fd(&check, j->fd, j->work_err);
        if (j->work_rv != 0)
            return;
        m = kr_snap_reader_meta(check);
        j->total = m->size;
        if (m->size > KR_STATE_RESTORE_MAX)
            j->work_rv = kr_errf(j->work_err, KR_EINVAL,
                                 "snapshot state is %" PRIu64
                                 " bytes, more than the %llu a restore "
                                 "takes",
                                 m->size, KR_STATE_RESTORE_MAX);
        if (j->work_rv == 0 && m->size == 0)
            j->work_rv = kr_errf(j->work_err, KR_EINVAL,
                                 "invalid snapshot archive: state.bin is "
                                 "empty");
        if (j->work_rv == 0)
            j->work_rv = kr_snap_check(check, NULL, j->work_err);
        kr_snap_reader_free(check);
        if (j->work_rv == 0 && lseek(j->fd, 0, SEEK_SET) != 0)
            j->work_rv =
                kr_errf(j->work_err, KR_EIO, "rewinding the uploaded archive");
        if (j->work_rv == 0)
            j->work_rv = kr_snap_reader_open_fd(&j->reader, j->fd, j->work_err);
        return;
    }
    j->wbuf = malloc(KR_RESTORE_CHUNK_MAX);
    if (j->wbuf == NULL) {
        j->work_rv = kr_errf(j->work_err, KR_ENOMEM, "out of memory");
        return;
    }
    j->wbuf_len = 0;
    while (j->wbuf_len < KR_RESTORE_CHUNK_MAX) {
        j->work_rv = kr_snap_reader_read(j->reader, j->wbuf + j->wbuf_len,
                                         KR_RESTORE_CHUNK_MAX - j->wbuf_len, &n,
                                         j->work_err);
        if (j->work_rv != 0)
            return;
        if (n == 0) {
            j->read_end = true;
            break;
        }
        j->wbuf_len += n;
    }
}

static void work_done(uv_work_t *req, int status)
{
    struct job *j = req->data;
    bool was_check = !j->checked;

    (void)status;
    j->working = false;
    if (j->reported || j->r->closing) {
        finish(j, KR_ESHUTDOWN, 0, "shutting down");
        job_release(j);
        return;
    }
    if (j->work_rv != 0) {
        finish(j, j->work_rv, 0, "%s", j->work_err);
        job_release(j);
        return;
    }
    if (was_check) {
        uint64_t live = kr_state_save_size(j->r->cfg.state);
        j->checked = true;
        /* While staged, raft snapshots hold both states in one frame. */
        if (live + j->total + (1u << 20) > KR_FRAME_PAYLOAD_MAX) {
            finish(j, KR_ETOOBIG, 0,
                   "the live state (%" PRIu64 " bytes) and the snapshot's "
                   "(%" PRIu64 " bytes) would not fit in one raft snapshot "
                   "while the restore is staged",
                   live, j->total);
        } else if (!kr_raft_is_leader(j->r->cfg.raft)) {
            finish(j, KR_ENOLEADER, 0, "this server is no longer the leader");
        } else if (kr_rand_bytes(&j->id, sizeof(j->id)) != 0 || j->id == 0) {
            finish(j, KR_ECRYPTO, 0, "no randomness for the restore's ID");
        } else {
            KR_INFO("snapshot",
                    "restore %016" PRIx64 ": archive checked, staging %" PRIu64
                    " bytes of state",
                    j->id, j->total);
            propose(j, KR_ENTRY_RESTORE_BEGIN, NULL, 0);
            j->begun = !j->reported;
            start_read(j);
        }
        job_release(j);
        return;
    }
    /* The worker's chunk becomes the loop's (start_read only reads when
     * no chunk waits, so there is none). */
    j->read_off += j->wbuf_len;
    if (j->wbuf_len > 0) {
        j->buf = j->wbuf;
        j->buf_len = j->wbuf_len;
    } else {
        buf_free(j->wbuf);
    }
    j->wbuf = NULL;
    j->wbuf_len = 0;
    push_chunk(j);
    maybe_commit(j);
    job_release(j);
}

static void queue(struct job *j)
{
    j->work.data = j;
    j->working = true;
    j->refs++;
    if (uv_queue_work(j->r->cfg.loop, &j->work, work, work_done) != 0) {
        j->working = false;
        j->refs--;
        finish(j, KR_EIO, 0, "cannot queue work");
    }
}

/* Reads the next chunk unless one is waiting, one is being read, or
 * state.bin is done. */
static void start_read(struct job *j)
{
    if (j->working || j->reported || j->buf != NULL || j->read_end)
        return;
    queue(j);
}

int kr_restore_start(struct kr_restore *r, int fd, kr_restore_cb cb, void *arg,
                     char *errmsg)
{
    struct job *j;

    if (r->closing)
        return kr_errf(errmsg, KR_ESHUTDOWN, "shutting down");
    if (r->job != NULL)
        return kr_errf(errmsg, KR_ECONFLICT,
                       "a snapshot restore is already in progress");
    if (!kr_raft_is_leader(r->cfg.raft))
        return kr_errf(errmsg, KR_ENOLEADER, "No cluster leader");
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    j->r = r;
    j->fd = fd;
    j->cb = cb;
    j->arg = arg;
    j->refs = 1; /* until it reports */
    r->refs++;
    r->job = j;
    queue(j);
    return 0;
}

static void orphan_aborted(void *arg, int status, uint64_t index, int outcome)
{
    struct kr_restore *r = arg;

    (void)index;
    r->aborting = false;
    if (status == 0 && outcome == 0)
        KR_INFO("snapshot", "dropped a staged restore its leader left "
                            "behind");
    restore_release(r);
}

void kr_restore_tick(struct kr_restore *r)
{
    struct kr_entry e;
    struct kr_buf b;
    uint64_t id, now = kr_time_mono_ms();

    if (r->closing)
        return;
    if (!kr_raft_is_leader(r->cfg.raft)) {
        r->leader = r->caught_up = false;
        return;
    }
    if (!r->leader) {
        r->leader = true;
        r->lead_index = kr_raft_last_index(r->cfg.raft);
    }
    /* What the log held when we became leader is applied first: a stage
     * it opens may be committed by it too. */
    if (!r->caught_up) {
        if (kr_raft_last_applied(r->cfg.raft) < r->lead_index)
            return;
        r->caught_up = true;
    }
    if (r->aborting || now < r->next_abort_ms ||
        !kr_state_stage_info(r->cfg.state, &id, NULL, NULL) ||
        (r->job != NULL && r->job->id == id))
        return;
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_RESTORE_ABORT;
    e.restore.id = id;
    kr_buf_init(&b);
    if (kr_entry_encode(&e, &b) == 0 &&
        kr_raft_apply(r->cfg.raft, &b, orphan_aborted, r) == 0) {
        r->aborting = true;
        r->refs++;
        KR_WARN("snapshot",
                "restore %016" PRIx64 " was left staged by an earlier "
                "leader: dropping it",
                id);
    }
    kr_buf_free(&b);
    r->next_abort_ms = now + ORPHAN_RETRY_MS;
}

void kr_restore_close(struct kr_restore *r)
{
    if (r == NULL)
        return;
    r->closing = true;
    if (r->job != NULL && !r->job->working)
        finish(r->job, KR_ESHUTDOWN, 0, "shutting down");
    restore_release(r);
}
