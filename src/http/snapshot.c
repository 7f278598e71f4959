/*
 * Snapshot endpoints (spec 4.3):
 *
 *   GET /v1/operator/snapshot       the archive (application/x-gzip), with
 *                                   Digest: sha-256=<base64> over its bytes
 *                                   and Content-Length; ?stale serves it
 *                                   from this server's state
 *   PUT|POST /v1/operator/snapshot  restores the archive in the body to the
 *                                   whole cluster; empty 200, X-Nomad-Index
 *                                   = the raft index of the commit
 *
 * A save freezes the state on the loop (the state is consistent only
 * there, and the freeze copies just the key records and each Variable's
 * metadata, in slices from a 1 ms timer, as raft snapshots do:
 * cluster/freeze.h), then a worker encodes state.bin from the
 * frozen view, about 1 MiB at a time, and writes the archive to an
 * unnamed temporary file in data_dir while hashing it, since the Digest
 * header must precede the body, and the loop streams the file out with
 * h2o's generator, one uv_fs_read at a time, so the response costs no
 * more memory than one block however large the state.
 *
 * A restore's body larger than the 1 MiB every route accepts comes
 * through upload.c, which streams it to a temporary file; a smaller one
 * may come here through h2o.  Either way the file goes to the restorer
 * (snapshot/restore.h) and the answer waits for the commit.
 */
#include "http/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/freeze.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/time.h"
#include "crypto/hash.h"
#include "snapshot/archive.h"
#include "snapshot/restore.h"

#define BLOCK (1u << 20)
/* Saves running at once on one server; each holds a state.bin. */
#define SAVES_MAX 2

int kr_http_snap_tmpfile(struct kr_http *srv, int *out, char *errmsg)
{
    const char *dir = srv->deps.data_dir;
    char path[4200];
    int fd;

    /* Never linked into the directory: nothing to clean after a crash. */
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        snprintf(path, sizeof(path), "%s/snapshot-XXXXXX", dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
    }
    if (fd < 0)
        return kr_errf(errmsg, KR_EIO,
                       "cannot create a temporary file in %s: "
                       "%s",
                       dir, strerror(errno));
    *out = fd;
    return 0;
}

/* ---- GET: save ---- */

struct save {
    struct kr_http_pending p;
    h2o_generator_t gen;
    struct kr_state_frozen *frozen; /* state.bin, until it is written */
    struct kr_snap_meta meta;
    int fd;
    uint64_t size; /* of the archive */
    uint8_t digest[KR_SHA256_LEN];
    struct kr_sha256 *sha;
    uv_work_t work;
    uv_timer_t fill; /* steps the freeze; closed before s is freed */
    bool fill_open;
    uint64_t idle_mark; /* kr_freeze_fill's */
    int rv;
    char err[KR_ERRMSG_SIZE];
    /* streaming */
    uv_fs_t fs;
    uint8_t *buf;
    uint64_t sent;
    bool reading;
    bool stopped;
    /* timing, for the log */
    uint64_t t_start, t_encoded, t_written;
};

static void thaw(struct kr_http *srv, struct kr_state_frozen *f)
{
    kr_freeze_garbage_later(srv->deps.loop,
                            kr_state_thaw_deferred(srv->deps.state, f));
}

static void save_release(struct save *s)
{
    struct kr_http *srv = s->p.srv;

    kr_http_pending_done(&s->p);
    srv->saves--;
    srv->live_ops--;
}

static void fill_closed(uv_handle_t *h)
{
    save_release(h->data);
}

static void save_free(struct save *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    thaw(s->p.srv, s->frozen);
    s->frozen = NULL;
    kr_sha256_free(s->sha);
    s->sha = NULL;
    if (s->buf != NULL) {
        explicit_bzero(s->buf, BLOCK);
        free(s->buf);
        s->buf = NULL;
    }
    if (s->fill_open)
        uv_close((uv_handle_t *)&s->fill, fill_closed);
    else
        save_release(s);
}

/* Worker: the archive bytes go to the file and the digest. */
static int save_out(void *arg, const void *p, size_t n, char *errmsg)
{
    struct save *s = arg;
    const uint8_t *b = p;

    kr_sha256_update(s->sha, p, n);
    s->size += n;
    while (n > 0) {
        ssize_t w = write(s->fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return kr_errf(errmsg, KR_EIO, "writing the snapshot to %s: %s",
                           s->p.srv->deps.data_dir, strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Worker: state.bin pieces from the frozen view go to the archive. */
static int save_data(void *arg, const void *p, size_t n, char *errmsg)
{
    return kr_snap_writer_data(arg, p, n, errmsg);
}

static void save_work(uv_work_t *req)
{
    struct save *s = req->data;
    struct kr_snap_writer *w = NULL;
    int prio = kr_thread_background(); /* not the loop's CPU */

    s->meta.size = kr_state_frozen_size(s->frozen);
    s->rv = kr_snap_writer_new(&w, save_out, s, s->err);
    if (s->rv == 0)
        s->rv = kr_snap_writer_begin(w, &s->meta, s->err);
    if (s->rv == 0)
        s->rv = kr_state_frozen_emit(s->frozen, save_data, w, s->err);
    if (s->rv == 0)
        s->rv = kr_snap_writer_finish(w, s->err);
    kr_snap_writer_free(w);
    if (s->rv == 0)
        s->rv = kr_sha256_final(s->sha, s->digest);
    if (s->rv == 0 && lseek(s->fd, 0, SEEK_SET) != 0)
        s->rv = kr_errf(s->err, KR_EIO, "rewinding the snapshot file: %s",
                        strerror(errno));
    kr_thread_foreground(prio);
}

static void save_read(struct save *s);

static void save_read_done(uv_fs_t *fs)
{
    struct save *s = fs->data;
    ssize_t n = fs->result;
    h2o_iovec_t iov;

    uv_fs_req_cleanup(fs);
    s->reading = false;
    if (s->stopped || s->p.req == NULL) {
        save_free(s);
        return;
    }
    if (n <= 0) {
        KR_ERROR("snapshot", "reading the snapshot file: %s",
                 n < 0 ? uv_strerror((int)n) : "unexpected end");
        h2o_send(s->p.req, NULL, 0, H2O_SEND_STATE_ERROR);
        save_free(s);
        return;
    }
    s->sent += (uint64_t)n;
    iov = h2o_iovec_init(s->buf, (size_t)n);
    h2o_send(s->p.req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void save_read(struct save *s)
{
    uv_buf_t b = uv_buf_init((char *)s->buf, BLOCK);

    s->fs.data = s;
    s->reading = true;
    if (uv_fs_read(s->p.srv->deps.loop, &s->fs, s->fd, &b, 1, (int64_t)s->sent,
                   save_read_done) != 0) {
        s->reading = false;
        h2o_send(s->p.req, NULL, 0, H2O_SEND_STATE_ERROR);
        save_free(s);
    }
}

/* The last block was written to the client: the next, or the end. */
static void save_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct save *s = (struct save *)((char *)g - offsetof(struct save, gen));

    if (s->sent < s->size) {
        save_read(s);
        return;
    }
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    KR_INFO("snapshot",
            "sent snapshot %s: %" PRIu64 " bytes; state frozen in %" PRIu64
            " ms, archive written in %" PRIu64 " ms, sent in %" PRIu64 " ms",
            s->meta.id, s->size, s->t_encoded - s->t_start,
            s->t_written - s->t_encoded, kr_time_mono_ms() - s->t_written);
    save_free(s);
}

/* The client went away. */
static void save_stop(h2o_generator_t *g, h2o_req_t *req)
{
    struct save *s = (struct save *)((char *)g - offsetof(struct save, gen));

    (void)req;
    s->stopped = true;
    if (!s->reading)
        save_free(s);
}

static void save_written(uv_work_t *req, int status)
{
    struct save *s = req->data;
    h2o_req_t *r = s->p.req;
    char digest[KR_SHA256_B64_LEN + 16], idx[32];

    (void)status;
    s->t_written = kr_time_mono_ms();
    /* The state may free what the view read. */
    thaw(s->p.srv, s->frozen);
    s->frozen = NULL;
    if (r == NULL) {
        save_free(s);
        return;
    }
    if (s->rv != 0) {
        KR_ERROR("snapshot", "save failed: %s", s->err);
        kr_http_reply_error(r, 500, "saving snapshot: %s", s->err);
        save_free(s);
        return;
    }
    s->buf = malloc(BLOCK);
    if (s->buf == NULL) {
        kr_http_reply_error(r, 500, "out of memory");
        save_free(s);
        return;
    }
    memcpy(digest, "sha-256=", 8);
    kr_base64_encode(s->digest, sizeof(s->digest), digest + 8);
    kr_http_add_header(r, "Digest", digest);
    snprintf(idx, sizeof(idx), "%" PRIu64, s->meta.index);
    kr_http_add_header(r, "X-Nomad-Index", idx);
    kr_http_add_query_meta(s->p.srv, r);
    r->res.status = 200;
    r->res.reason = "OK";
    r->res.content_length = s->size;
    h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/x-gzip"));
    s->gen.proceed = save_proceed;
    s->gen.stop = save_stop;
    h2o_start_response(r, &s->gen);
    save_read(s);
}

/* The raft configuration, as meta.json's Configuration. */
static void save_servers(struct kr_http *srv, struct kr_snap_meta *m)
{
    struct kr_raft_server servers[KR_SNAP_SERVERS_MAX];
    size_t n = kr_raft_servers(srv->deps.raft, servers, KR_SNAP_SERVERS_MAX);

    for (size_t i = 0; i < n && i < KR_SNAP_SERVERS_MAX; i++) {
        snprintf(m->servers[i].id, sizeof(m->servers[i].id), "%" PRIu64,
                 servers[i].id);
        snprintf(m->servers[i].address, sizeof(m->servers[i].address), "%s",
                 servers[i].address);
        m->servers[i].voter = servers[i].voter;
    }
    m->n_servers = n < KR_SNAP_SERVERS_MAX ? n : KR_SNAP_SERVERS_MAX;
}

/* Loop: a slice of the freeze each millisecond; once the view is whole,
 * the worker writes the archive. */
static void save_fill(uv_timer_t *t)
{
    struct save *s = t->data;
    uint64_t spent_us = 0;

    if (!kr_freeze_fill(s->p.srv->deps.loop, &s->idle_mark,
                        s->p.srv->deps.state, s->frozen, &spent_us))
        return;
    uv_timer_stop(t);
    if (s->p.req == NULL) { /* the client went away */
        save_free(s);
        return;
    }
    s->t_encoded = kr_time_mono_ms();
    s->work.data = s;
    if (uv_queue_work(s->p.srv->deps.loop, &s->work, save_work, save_written) !=
        0) {
        kr_http_reply_error(s->p.req, 500, "cannot queue the snapshot save");
        save_free(s);
    }
}

static int snapshot_save(struct kr_http_call *c)
{
    struct kr_http *srv = c->srv;
    struct save *s;
    char err[KR_ERRMSG_SIZE];
    int fd;

    if (srv->saves >= SAVES_MAX) {
        kr_http_reply_error(c->req, 503,
                            "%d snapshot saves are in progress on this "
                            "server; try again when one has finished",
                            SAVES_MAX);
        return 0;
    }
    if (kr_http_snap_tmpfile(srv, &fd, err) != 0) {
        kr_http_reply_error(c->req, 500, "saving snapshot: %s", err);
        return 0;
    }
    s = kr_http_pending_new(c, sizeof(*s));
    if (s == NULL || kr_sha256_new(&s->sha) != 0) {
        if (s != NULL)
            kr_http_pending_done(&s->p);
        close(fd);
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    s->fd = fd;
    s->t_start = kr_time_mono_ms();
    srv->saves++;
    srv->live_ops++;
    /* What this server has applied, as of now: on the leader after a
     * barrier, with ?stale whatever it has. */
    kr_snap_meta_init(&s->meta, kr_raft_last_applied(srv->deps.raft),
                      kr_raft_term(srv->deps.raft),
                      kr_time_now_ns() / KR_NS_PER_MS);
    save_servers(srv, &s->meta);
    if (kr_state_freeze_begin(srv->deps.state, false, &s->frozen) != 0) {
        kr_http_reply_error(c->req, 500, "out of memory");
        save_free(s);
        return 0;
    }
    uv_timer_init(srv->deps.loop, &s->fill);
    s->fill.data = s;
    s->fill_open = true;
    uv_timer_start(&s->fill, save_fill, 0, 1);
    return 0;
}

/* ---- PUT: restore a small archive that came through h2o ---- */

static void restored(void *arg, int status, uint64_t index, const char *errmsg)
{
    struct kr_http_pending *p = arg;

    if (p->req != NULL) {
        if (status == 0)
            kr_http_reply_empty(p->req, 200, index);
        else
            kr_http_reply_error(p->req, kr_err_http_status(status), "%s",
                                errmsg);
    }
    kr_http_pending_done(p);
}

static int snapshot_restore(struct kr_http_call *c)
{
    h2o_req_t *req = c->req;
    struct kr_http_pending *p;
    char err[KR_ERRMSG_SIZE];
    size_t off = 0;
    int fd, rv;

    if (req->entity.base == NULL || req->entity.len == 0) {
        kr_http_reply_error(req, 400, "snapshot archive is empty");
        return 0;
    }
    if (kr_http_snap_tmpfile(c->srv, &fd, err) != 0) {
        kr_http_reply_error(req, 500, "restoring snapshot: %s", err);
        return 0;
    }
    /* At most the 1 MiB h2o takes: written at once. */
    while (off < req->entity.len) {
        ssize_t w = write(fd, req->entity.base + off, req->entity.len - off);
        if (w <= 0 && errno != EINTR) {
            close(fd);
            kr_http_reply_error(req, 500, "restoring snapshot: %s",
                                strerror(errno));
            return 0;
        }
        off += w > 0 ? (size_t)w : 0;
    }
    kr_http_wipe_body(req);
    lseek(fd, 0, SEEK_SET);
    p = kr_http_pending_new(c, sizeof(*p));
    if (p == NULL) {
        close(fd);
        kr_http_reply_error(req, 500, "out of memory");
        return 0;
    }
    rv = kr_restore_start(c->srv->deps.restore, fd, restored, p, err);
    if (rv != 0) {
        close(fd);
        kr_http_reply_error(req, kr_err_http_status(rv), "%s", err);
        kr_http_pending_done(p);
    }
    return 0;
}

int kr_http_snapshot(struct kr_http_call *c)
{
    if (h2o_memis(c->req->method.base, c->req->method.len, H2O_STRLIT("GET")))
        return snapshot_save(c);
    return snapshot_restore(c);
}
