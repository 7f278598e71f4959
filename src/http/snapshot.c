/*
 * Snapshot endpoints (spec 4.3):
 *
 *   GET /v1/operator/snapshot       the archive (application/x-gzip), with
 *                                   Digest: sha-256=<base64> over its bytes
 *                                   and Content-Length, or chunked with no
 *                                   Digest when the request says
 *                                   Want-Digest: sha-256;q=0; ?stale
 *                                   serves it from this server's state
 *   PUT|POST /v1/operator/snapshot  restores the archive in the body to the
 *                                   whole cluster; empty 200, X-Nomad-Index
 *                                   = the raft index of the commit
 *
 * A save freezes the state on the loop (the state is consistent only
 * there, and the freeze copies just the key records and each Variable's
 * metadata, in slices from a 1 ms timer, as raft snapshots do:
 * cluster/freeze.h); then a thread of the save's own encodes the archive
 * from the frozen view twice, since the Digest header must precede the
 * body: once only to hash it, once into a ring of RING blocks that the
 * loop sends with h2o's generator.  A client that declines the Digest
 * (our CLI does: it checks the archive's own SHA256SUMS as it arrives)
 * saves the first pass, about half the time.  Nothing reaches the server's
 * disk, and the response costs no more memory than the ring however large the
 * state.
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
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/freeze.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/time.h"
#include "crypto/hash.h"
#include "http/wantdigest.h"
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

/* Blocks between the encoder thread and the socket. */
#define RING 4

/*
 * One save.  The loop owns the request, the fill timer and the blocks
 * being sent; the encoder thread owns the writer; what they share is
 * under mu: the ring (ready blocks [head, head + count), the one at head
 * handed to h2o while inflight; the thread fills the one after them),
 * the phase flags and rv.  The thread wakes the loop with `wake`, the
 * loop the thread with `cond`.
 */
struct save {
    struct kr_http_pending p;
    h2o_generator_t gen;
    struct save *next, **pprev;     /* srv->save_list */
    struct kr_state_frozen *frozen; /* until the thread has finished */
    struct kr_snap_meta meta;
    /* The response carries a Digest, so the archive is encoded twice;
     * false when the client declined it (Want-Digest: sha-256;q=0): one
     * pass, sent as it is made.  Set before the thread starts. */
    bool with_digest;
    uv_timer_t fill; /* steps the freeze */
    bool fill_open;
    uint64_t idle_mark; /* kr_freeze_fill's */
    uv_thread_t thread;
    bool thread_started;
    uv_async_t wake;
    bool wake_open;
    uv_mutex_t mu;
    uv_cond_t cond;
    /* thread only */
    struct kr_sha256_bg *sha;         /* the first pass's digest, on a thread */
    uint8_t state_sum[KR_SHA256_LEN]; /* state.bin's, from the first pass */
    uint64_t produced;                /* archive bytes of the pass */
    unsigned fill_idx;                /* the block being filled: head + count */
    size_t fill_len;                  /* in it */
    bool stream_failed;               /* no block to fill any more */
    /* shared, under mu */
    uint8_t *block[RING];
    size_t len[RING];
    unsigned head, count;
    bool inflight;
    bool ready;    /* headers may go: first pass done (size, digest, rv) or,
                    * one pass, first block ready or thread done (rv) */
    bool finished; /* the thread is about to return */
    bool cancel;   /* the loop wants the thread to stop */
    uint64_t size; /* of the archive; without a Digest, known at the end */
    uint8_t digest[KR_SHA256_LEN];
    int rv;
    char err[KR_ERRMSG_SIZE];
    /* loop only */
    bool started; /* the response has begun */
    bool stopped; /* the client went away */
    bool freeing;
    uint64_t sent;
    uint64_t t_start, t_filled, t_hashed;
};

static void thaw(struct kr_http *srv, struct kr_state_frozen *f)
{
    kr_freeze_garbage_later(srv->deps.loop,
                            kr_state_thaw_deferred(srv->deps.state, f));
}

/* The last handle is closed: nothing refers to s any more. */
static void save_closed(uv_handle_t *h)
{
    struct save *s = h->data;
    struct kr_http *srv = s->p.srv;

    if ((uv_handle_t *)&s->fill == h)
        s->fill_open = false;
    else
        s->wake_open = false;
    if (s->fill_open || s->wake_open)
        return;
    for (unsigned i = 0; i < RING; i++) {
        if (s->block[i] != NULL) { /* the first holds the aead KEKs */
            explicit_bzero(s->block[i], BLOCK);
            free(s->block[i]);
        }
    }
    uv_mutex_destroy(&s->mu);
    uv_cond_destroy(&s->cond);
    kr_http_pending_done(&s->p);
    srv->saves--;
    srv->live_ops--;
}

static void save_unlink(struct save *s)
{
    if (s->pprev == NULL)
        return;
    *s->pprev = s->next;
    if (s->next != NULL)
        s->next->pprev = s->pprev;
    s->pprev = NULL;
}

/* Loop: once the thread (if any) has finished; frees s. */
static void save_free(struct save *s)
{
    if (s->freeing)
        return;
    s->freeing = true;
    save_unlink(s);
    if (s->thread_started)
        uv_thread_join(&s->thread);
    s->thread_started = false;
    if (s->frozen != NULL) /* the state may free what the view read */
        thaw(s->p.srv, s->frozen);
    s->frozen = NULL;
    if (s->fill_open)
        uv_close((uv_handle_t *)&s->fill, save_closed);
    if (s->wake_open)
        uv_close((uv_handle_t *)&s->wake, save_closed);
}

/* Thread, first pass: the archive's bytes go to its digest only. */
static int hash_out(void *arg, const void *p, size_t n, char *errmsg)
{
    struct save *s = arg;
    bool cancel;

    uv_mutex_lock(&s->mu);
    cancel = s->cancel;
    uv_mutex_unlock(&s->mu);
    if (cancel)
        return kr_errf(errmsg, KR_ESHUTDOWN, "the save has stopped");
    kr_sha256_bg_update(s->sha, p, n);
    s->produced += n;
    return 0;
}

/* Thread: the block being filled joins the ready ones; unless it is the
 * last, after waiting for a free one to fill next. */
static int publish(struct save *s, bool last, char *errmsg)
{
    unsigned next;
    int rv = 0;

    uv_mutex_lock(&s->mu);
    s->len[s->fill_idx] = s->fill_len;
    s->count++;
    s->ready = true; /* one pass: the headers can go with the first block */
    uv_async_send(&s->wake);
    while (!last && s->count == RING && !s->cancel)
        uv_cond_wait(&s->cond, &s->mu);
    if (s->cancel)
        rv = kr_errf(errmsg, KR_ESHUTDOWN, "the client went away");
    next = (s->head + s->count) % RING;
    uv_mutex_unlock(&s->mu);
    s->fill_idx = next;
    s->fill_len = 0;
    if (rv == 0 && !last && s->block[next] == NULL) {
        s->block[next] = malloc(BLOCK);
        if (s->block[next] == NULL)
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    }
    return rv;
}

/* Thread, second pass: the archive's bytes go to the ring. */
static int stream_out(void *arg, const void *p, size_t n, char *errmsg)
{
    struct save *s = arg;
    const uint8_t *b = p;

    if (s->stream_failed) /* libarchive may flush as it is freed */
        return kr_errf(errmsg, KR_ESHUTDOWN, "the save has stopped");
    s->produced += n;
    if (s->with_digest && s->produced > s->size)
        return kr_errf(errmsg, KR_EIO,
                       "the snapshot came out longer the second time");
    while (n > 0) {
        /* The block being filled is never one the loop holds. */
        uint8_t *dst = s->block[s->fill_idx];
        size_t k = BLOCK - s->fill_len < n ? BLOCK - s->fill_len : n;
        int rv;

        memcpy(dst + s->fill_len, b, k);
        s->fill_len += k;
        b += k;
        n -= k;
        if (s->fill_len == BLOCK && (rv = publish(s, false, errmsg)) != 0) {
            s->stream_failed = true;
            return rv;
        }
    }
    return 0;
}

/* Thread: state.bin pieces from the frozen view go to the archive. */
static int save_data(void *arg, const void *p, size_t n, char *errmsg)
{
    return kr_snap_writer_data(arg, p, n, errmsg);
}

/* Thread: the archive of the frozen view, written to out. */
static int encode(struct save *s, kr_snap_out_fn out, char *errmsg)
{
    struct kr_snap_writer *w = NULL;
    int rv;

    s->produced = 0;
    rv = kr_snap_writer_new(&w, out, s, errmsg);
    /* The first pass, when there was one, hashed state.bin. */
    if (rv == 0 && s->with_digest && out == stream_out)
        kr_snap_writer_state_sum(w, s->state_sum);
    else if (rv == 0 && !s->with_digest) /* one pass: two threads' work */
        rv = kr_snap_writer_hash_aside(w, errmsg);
    if (rv == 0)
        rv = kr_snap_writer_begin(w, &s->meta, errmsg);
    if (rv == 0)
        rv = kr_state_frozen_emit(s->frozen, save_data, w, errmsg);
    if (rv == 0)
        rv = kr_snap_writer_finish(w, errmsg);
    if (rv == 0 && out == hash_out)
        kr_snap_writer_state_sum_get(w, s->state_sum);
    kr_snap_writer_free(w);
    return rv;
}

/* Thread, for the Digest header: the archive's length and digest. */
static int first_pass(struct save *s, char *err)
{
    int rv = kr_sha256_bg_new(&s->sha);

    if (rv != 0)
        kr_errf(err, rv, "cannot start hashing the snapshot");
    if (rv == 0)
        rv = encode(s, hash_out, err);
    if (rv == 0 && kr_sha256_bg_final(s->sha, s->digest) != 0)
        rv = kr_errf(err, KR_ECRYPTO, "hashing the snapshot");
    kr_sha256_bg_free(s->sha);
    s->sha = NULL;
    return rv;
}

/*
 * The encoder thread.  The Digest header precedes the body, so with a
 * Digest the archive is encoded twice from the frozen view, which yields
 * the same bytes every time: once for its length and digest, then again
 * into the ring as the loop sends it.  Without one (the client declined
 * it) only the second pass runs, and the response is chunked.  Nothing
 * goes to disk.
 */
static void save_thread(void *arg)
{
    struct save *s = arg;
    char err[KR_ERRMSG_SIZE] = "";
    int rv = 0;

    kr_thread_background_own(); /* not the loop's CPU */

    s->meta.size = kr_state_frozen_size(s->frozen);
    if (s->with_digest) {
        rv = first_pass(s, err);
        uv_mutex_lock(&s->mu);
        s->size = s->produced;
        s->ready = true;
        s->rv = rv;
        if (rv != 0)
            memcpy(s->err, err, sizeof(err));
        uv_async_send(&s->wake);
        uv_mutex_unlock(&s->mu);
    }

    if (rv == 0) {
        s->fill_idx = 0;
        s->fill_len = 0;
        s->block[0] = malloc(BLOCK);
        rv = s->block[0] == NULL ? kr_errf(err, KR_ENOMEM, "out of memory")
                                 : encode(s, stream_out, err);
        if (rv == 0 && s->with_digest && s->produced != s->size)
            rv = kr_errf(err, KR_EIO,
                         "the snapshot came out %" PRIu64 " bytes the second "
                         "time, %" PRIu64 " the first",
                         s->produced, s->size);
        if (rv == 0 && s->fill_len > 0)
            rv = publish(s, true, err);
        uv_mutex_lock(&s->mu);
        if (!s->with_digest) /* the headers did not say it: now known */
            s->size = s->produced;
        s->rv = rv;
        if (rv != 0)
            memcpy(s->err, err, sizeof(err));
        uv_mutex_unlock(&s->mu);
    }
    uv_mutex_lock(&s->mu);
    /* Without a Digest, a save that failed before its first block still
     * gets a 500 instead of a body cut short. */
    s->ready = true;
    s->finished = true;
    uv_async_send(&s->wake);
    uv_mutex_unlock(&s->mu);
}

static void save_proceed(h2o_generator_t *g, h2o_req_t *req);
static void save_stop(h2o_generator_t *g, h2o_req_t *req);

/* Loop: the response's headers, once the first pass is done or, without
 * a Digest, once the first block is ready. */
static void save_start(struct save *s)
{
    h2o_req_t *r = s->p.req;
    char digest[KR_SHA256_B64_LEN + 16], idx[32];

    s->started = true;
    s->t_hashed = kr_time_mono_ms();
    if (s->with_digest) {
        memcpy(digest, "sha-256=", 8);
        kr_base64_encode(s->digest, sizeof(s->digest), digest + 8);
        kr_http_add_header(r, "Digest", digest);
    }
    snprintf(idx, sizeof(idx), "%" PRIu64, s->meta.index);
    kr_http_add_header(r, "X-Nomad-Index", idx);
    kr_http_add_query_meta(s->p.srv, r);
    r->res.status = 200;
    r->res.reason = "OK";
    /* Without a Digest the length is known only at the end: chunked. */
    r->res.content_length = s->with_digest ? s->size : SIZE_MAX;
    h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/x-gzip"));
    s->gen.proceed = save_proceed;
    s->gen.stop = save_stop;
    h2o_start_response(r, &s->gen);
}

/* Loop: whatever can happen next; called on every wake and proceed. */
static void save_pump(struct save *s)
{
    bool ready, finished, send = false;
    size_t len = 0;
    uint8_t *blk = NULL;
    int rv;

    if (s->freeing)
        return;
    uv_mutex_lock(&s->mu);
    if (s->stopped || s->p.req == NULL) { /* the client went away */
        s->cancel = true;
        uv_cond_signal(&s->cond);
    }
    ready = s->ready;
    finished = s->finished;
    rv = s->rv;
    if (s->started && !s->inflight && s->count > 0 && !s->cancel) {
        blk = s->block[s->head];
        len = s->len[s->head];
        s->inflight = send = true;
    }
    uv_mutex_unlock(&s->mu);

    if (s->cancel) {
        if (!finished) /* its last wake comes back here */
            return;
        if (s->started && !s->stopped && s->p.req != NULL) {
            if (s->inflight) /* h2o holds a block: proceed or stop follows */
                return;
            h2o_send(s->p.req, NULL, 0, H2O_SEND_STATE_ERROR);
        }
        save_free(s);
        return;
    }
    if (!s->started && ready) {
        if (rv != 0) {
            KR_ERROR("snapshot", "save failed: %s", s->err);
            kr_http_reply_error(s->p.req, 500, "saving snapshot: %s", s->err);
            s->stopped = true;
            save_pump(s);
            return;
        }
        save_start(s);
        save_pump(s);
        return;
    }
    if (send) {
        h2o_iovec_t iov = h2o_iovec_init(blk, len);

        s->sent += len;
        h2o_send(s->p.req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
        return;
    }
    if (!finished || s->inflight)
        return;
    if (rv != 0 || s->sent != s->size) {
        KR_ERROR("snapshot", "save failed while sending: %s",
                 rv != 0 ? s->err : "the archive ended early");
        h2o_send(s->p.req, NULL, 0, H2O_SEND_STATE_ERROR);
    } else {
        h2o_send(s->p.req, NULL, 0, H2O_SEND_STATE_FINAL);
        KR_INFO("snapshot",
                "sent snapshot %s: %" PRIu64
                " bytes%s; state frozen in %" PRIu64 " ms, %s in %" PRIu64
                " ms, sent in %" PRIu64 " ms",
                s->meta.id, s->size,
                s->with_digest ? "" : " (no Digest asked: one pass)",
                s->t_filled - s->t_start,
                s->with_digest ? "archive hashed" : "first block encoded",
                s->t_hashed - s->t_filled, kr_time_mono_ms() - s->t_hashed);
    }
    save_free(s);
}

static void save_woken(uv_async_t *a)
{
    save_pump(a->data);
}

/* The last block went to the client: its slot is free again. */
static void save_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct save *s = (struct save *)((char *)g - offsetof(struct save, gen));

    (void)req;
    uv_mutex_lock(&s->mu);
    if (s->inflight) {
        s->inflight = false;
        s->head = (s->head + 1) % RING;
        s->count--;
        uv_cond_signal(&s->cond);
    }
    uv_mutex_unlock(&s->mu);
    save_pump(s);
}

/* The client went away. */
static void save_stop(h2o_generator_t *g, h2o_req_t *req)
{
    struct save *s = (struct save *)((char *)g - offsetof(struct save, gen));

    (void)req;
    s->stopped = true;
    save_pump(s);
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
 * the encoder thread starts. */
static void save_fill(uv_timer_t *t)
{
    struct save *s = t->data;
    uint64_t spent_us = 0;

    if (!kr_freeze_fill(s->p.srv->deps.loop, &s->idle_mark,
                        s->p.srv->deps.state, s->frozen, &spent_us))
        return;
    uv_timer_stop(t);
    if (s->p.req == NULL || s->stopped) { /* the client went away */
        save_free(s);
        return;
    }
    s->t_filled = kr_time_mono_ms();
    if (uv_thread_create(&s->thread, save_thread, s) != 0) {
        kr_http_reply_error(s->p.req, 500, "cannot start the snapshot save");
        save_free(s);
        return;
    }
    s->thread_started = true;
}

/* Loop: false when every Want-Digest header declines sha-256's. */
static bool wants_digest(h2o_req_t *req)
{
    ssize_t at = -1;
    bool declined = false;

    for (;;) {
        const h2o_iovec_t *v;

        at = h2o_find_header_by_str(&req->headers, H2O_STRLIT("want-digest"),
                                    at);
        if (at < 0)
            break;
        v = &req->headers.entries[at].value;
        if (!kr_http_want_digest_declines_sha256(v->base, v->len))
            return true;
        declined = true;
    }
    return !declined;
}

static int snapshot_save(struct kr_http_call *c)
{
    struct kr_http *srv = c->srv;
    struct save *s;

    if (srv->saves >= SAVES_MAX) {
        kr_http_reply_error(c->req, 503,
                            "%d snapshot saves are in progress on this "
                            "server; try again when one has finished",
                            SAVES_MAX);
        return 0;
    }
    s = kr_http_pending_new(c, sizeof(*s));
    if (s == NULL) {
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    if (uv_mutex_init(&s->mu) != 0 || uv_cond_init(&s->cond) != 0) {
        /* Neither fails on Linux but for a lack of memory. */
        kr_http_reply_error(c->req, 500, "out of memory");
        kr_http_pending_done(&s->p);
        return 0;
    }
    s->t_start = kr_time_mono_ms();
    s->with_digest = wants_digest(c->req);
    srv->saves++;
    srv->live_ops++;
    uv_timer_init(srv->deps.loop, &s->fill);
    s->fill.data = s;
    s->fill_open = true;
    uv_async_init(srv->deps.loop, &s->wake, save_woken);
    s->wake.data = s;
    s->wake_open = true;
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
    s->next = srv->save_list;
    if (s->next != NULL)
        s->next->pprev = &s->next;
    s->pprev = &srv->save_list;
    srv->save_list = s;
    uv_timer_start(&s->fill, save_fill, 0, 1);
    return 0;
}

void kr_http_save_close_all(struct kr_http *srv)
{
    while (srv->save_list != NULL) {
        struct save *s = srv->save_list;
        h2o_socket_t *sock;

        save_unlink(s);
        if (s->p.req == NULL || s->stopped)
            continue;
        if (!s->started) {
            kr_http_reply_error(s->p.req, 503, "the server is shutting down");
            s->stopped = true;
            if (!s->thread_started) /* still filling: the timer frees it */
                continue;
            save_pump(s);
            continue;
        }
        /* A response under way cannot be ended early with h2o_send while
         * a block is out, and a client that stopped reading would hold
         * the server open for ever: the connection's socket is shut, the
         * pending write fails, and h2o stops the generator. */
        sock = s->p.req->conn->callbacks->get_socket != NULL
                   ? s->p.req->conn->callbacks->get_socket(s->p.req->conn)
                   : NULL;
        if (sock != NULL && h2o_socket_get_fd(sock) >= 0)
            shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
        uv_mutex_lock(&s->mu);
        s->cancel = true;
        uv_cond_signal(&s->cond);
        uv_mutex_unlock(&s->mu);
    }
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
