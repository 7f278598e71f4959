/*
 * Requests that must be served by the leader: forwarding from followers,
 * and raft barriers for consistent reads on the leader.
 *
 * A follower sends the request over the RPC port (rpc.h, KR_RPC_HTTP) to
 * the leader's own h2o and relays the answer unchanged: status, the
 * X-Nomad-* and Content-Type headers, and the body.  Connections to the
 * leader are kept in a small pool.  A forwarded request carries
 * X-Keyraft-Forwarded, and a server never forwards such a request again,
 * so a leadership change in flight cannot make requests loop.
 *
 * Replies may hold Variable plaintext: the relay buffer is wiped when
 * freed and the body is sent from wiped memory (kr_http_send_secret).
 *
 * An answer larger than STREAM_MIN (a snapshot, a long list) is relayed
 * as it arrives instead: the status and headers go out first, then each
 * piece read from the leader is handed to h2o, and the next is read only
 * once h2o has written it, so a relay holds one piece at a time.  The
 * piece is wiped before the buffer is reused.  The time limit then
 * counts from the last progress, not from the start.  A chunked answer
 * (a snapshot whose client sent Want-Digest: sha-256;q=0, which is
 * forwarded) is decoded as it arrives and sent on chunked.
 */
#include "http/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <raft.h>

#include "cluster/rpc.h"
#include "common/err.h"
#include "common/log.h"

#define FORWARD_TIMEOUT_MS 10000
#define LEADER_WAIT_MS 5000
#define LEADER_POLL_MS 50
#define POOL_MAX 32
/* A relayed answer is held whole; an unpaginated list of a million
 * Variables is about 150 MiB. */
#define MAX_RESPONSE (512u * 1024 * 1024)
/* Answers larger than this are streamed (above). */
#define STREAM_MIN (1024u * 1024)
/* A snapshot save or restore may take minutes before its answer starts. */
#define SNAPSHOT_TIMEOUT_MS (10u * 60 * 1000)

/* picohttpparser, which libh2o exports but Debian ships no header for;
 * its interface has been stable for a decade. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_response(const char *buf, size_t len, int *minor_version,
                       int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers,
                       size_t last_len);
/* Its chunked decoder: the fields every version has, then room for
 * those later versions added (two counters), zeroed as it asks. */
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char hex_count;
    char state;
    uint64_t later[8];
};
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf,
                           size_t *bufsz);

struct pooled {
    uv_stream_t *stream;
    char leader[256];
    struct pooled *next;
};

struct fwd {
    struct kr_http_pending p;
    struct kr_http_call call; /* for the leader wait */
    char leader[256];
    struct kr_buf out; /* the serialised request */
    struct kr_buf in;  /* the answer so far (wiped when freed) */
    uv_stream_t *stream;
    struct kr_rpc_dial *dial;
    uv_write_t write;
    uv_timer_t timer;
    uint64_t waited_ms;
    uint64_t timeout_ms;
    /* streaming an answer */
    h2o_generator_t gen;
    bool streaming;
    bool sending; /* h2o holds f->in until it calls proceed */
    bool failing; /* cut the body short once h2o gives f->in back */
    bool keep;
    size_t stream_off;
    uint64_t body_left; /* UINT64_MAX: chunked, end not seen yet */
    bool chunked;       /* the leader's answer is; decoded as it comes */
    struct phr_chunked_decoder dechunk;
    /* The op is freed once its timer has closed and no write is in
     * flight: a write can complete after the answer was relayed. */
    bool write_pending;
    bool timer_closed;
    bool from_pool;
    bool retried;
    bool done;
};

static void free_raft_handle(uv_handle_t *h)
{
    raft_free(h);
}

static void fwd_free(struct fwd *f)
{
    struct kr_http *srv = f->p.srv;

    kr_buf_free(&f->out);
    kr_buf_free(&f->in);
    kr_http_pending_done(&f->p);
    srv->live_ops--;
}

static void fwd_timer_closed(uv_handle_t *h)
{
    struct fwd *f = h->data;

    f->timer_closed = true;
    if (!f->write_pending)
        fwd_free(f);
}

/* Ends the forward; keep puts the connection back in the pool. */
static void fwd_end(struct fwd *f, bool keep)
{
    struct kr_http *srv = f->p.srv;

    f->done = true;
    kr_rpc_dial_cancel(f->dial);
    if (f->stream != NULL) {
        uv_read_stop(f->stream);
        if (keep && !srv->closing && srv->n_pooled < POOL_MAX) {
            struct pooled *pl = calloc(1, sizeof(*pl));
            if (pl != NULL) {
                pl->stream = f->stream;
                snprintf(pl->leader, sizeof(pl->leader), "%s", f->leader);
                pl->next = srv->pool;
                srv->pool = pl;
                srv->n_pooled++;
                f->stream = NULL;
            }
        }
        if (f->stream != NULL)
            uv_close((uv_handle_t *)f->stream, free_raft_handle);
        f->stream = NULL;
    }
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, fwd_timer_closed);
}

static void fwd_fail(struct fwd *f, int status, const char *msg)
{
    if (f->p.req != NULL && f->streaming && f->sending) {
        /* h2o still writes from f->in: end once it is done with it. */
        f->failing = true;
        uv_read_stop(f->stream);
        return;
    }
    if (f->p.req != NULL && f->streaming)
        /* The status is out: cut the body short; the client sees a
         * truncated answer. */
        h2o_send(f->p.req, NULL, 0, H2O_SEND_STATE_ERROR);
    else if (f->p.req != NULL)
        kr_http_reply_error(f->p.req, status, "%s", msg);
    f->streaming = false;
    fwd_end(f, false);
}

static void fwd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void fwd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void fwd_timeout(uv_timer_t *t);

/* Hands h2o what has arrived of the body; reading pauses until it has
 * been written, since reads append to the same buffer. */
static void stream_more(struct fwd *f)
{
    size_t avail = f->in.len - f->stream_off;
    h2o_iovec_t iov;

    if (f->sending || f->done)
        return;
    if (f->chunked && avail > 0 && f->body_left > 0) {
        /* Decoded in place: what is left is the body in the bytes that
         * came; the framing is gone. */
        size_t got = avail;
        ssize_t rest = phr_decode_chunked(
            &f->dechunk, (char *)f->in.data + f->stream_off, &got);

        if (rest == -1) {
            fwd_fail(f, 502, "malformed answer from the cluster leader");
            return;
        }
        /* The bytes the body moved up from: wiped now, since the reset
         * after the send wipes only up to the new length. */
        explicit_bzero(f->in.data + f->stream_off + got, avail - got);
        f->in.len = f->stream_off + got;
        avail = got;
        if (rest >= 0) { /* the last chunk came */
            f->body_left = got;
            f->keep = f->keep && rest == 0;
        }
    }
    if (avail > f->body_left)
        avail = (size_t)f->body_left;
    if (avail == 0) {
        if (f->body_left == 0) {
            bool keep = f->keep;
            h2o_send(f->p.req, NULL, 0, H2O_SEND_STATE_FINAL);
            f->streaming = false;
            fwd_end(f, keep);
        }
        return;
    }
    uv_read_stop(f->stream);
    iov = h2o_iovec_init(f->in.data + f->stream_off, avail);
    f->stream_off += avail;
    f->body_left -= avail;
    f->sending = true;
    h2o_send(f->p.req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void stream_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct fwd *f = (struct fwd *)((char *)g - offsetof(struct fwd, gen));

    (void)req;
    f->sending = false;
    if (f->failing) {
        fwd_fail(f, 502, "");
        return;
    }
    /* The piece may hold plaintext: wiped before the buffer is reused. */
    explicit_bzero(f->in.data, f->in.len);
    f->in.len = 0;
    f->stream_off = 0;
    uv_timer_start(&f->timer, fwd_timeout, f->timeout_ms, 0);
    if (f->body_left == 0) {
        stream_more(f);
        return;
    }
    uv_read_start(f->stream, fwd_alloc, fwd_read);
}

static void stream_stop(h2o_generator_t *g, h2o_req_t *req)
{
    struct fwd *f = (struct fwd *)((char *)g - offsetof(struct fwd, gen));

    (void)req;
    f->streaming = false;
    fwd_end(f, false);
}

static bool relayed_header(const char *name, size_t len)
{
    static const char *const names[] = {
        "x-nomad-index",     "x-nomad-knownleader", "x-nomad-lastcontact",
        "x-nomad-nexttoken", "cache-control",       "digest",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && strncasecmp(name, names[i], len) == 0)
            return true;
    return false;
}

/* Returns 1 when the answer is complete (and relayed), 0 for more, -1 on
 * a malformed answer. */
static int try_relay(struct fwd *f, bool *keep)
{
    struct phr_header headers[32];
    size_t n_headers = 32, msg_len, body_len = 0;
    const char *msg;
    char ctype[128] = "text/plain; charset=utf-8";
    int minor, status, hlen;
    bool have_len = false, chunked = false;
    h2o_req_t *req = f->p.req;

    hlen = phr_parse_response((const char *)f->in.data, f->in.len, &minor,
                              &status, &msg, &msg_len, headers, &n_headers, 0);
    if (hlen == -2)
        return f->in.len > MAX_RESPONSE ? -1 : 0;
    if (hlen < 0)
        return -1;
    *keep = true;
    for (size_t i = 0; i < n_headers; i++) {
        const struct phr_header *h = &headers[i];
        if (h->name_len == 14 &&
            strncasecmp(h->name, "content-length", 14) == 0) {
            char num[24];
            snprintf(num, sizeof(num), "%.*s", (int)h->value_len, h->value);
            body_len = strtoull(num, NULL, 10);
            have_len = true;
        } else if (h->name_len == 17 &&
                   strncasecmp(h->name, "transfer-encoding", 17) == 0 &&
                   h->value_len == 7 &&
                   strncasecmp(h->value, "chunked", 7) == 0) {
            chunked = true;
        } else if (h->name_len == 10 &&
                   strncasecmp(h->name, "connection", 10) == 0 &&
                   h->value_len == 5 &&
                   strncasecmp(h->value, "close", 5) == 0) {
            *keep = false;
        }
    }
    /* Our own servers send Content-Length, or chunk a snapshot whose
     * client declined its Digest: relayed as a stream, chunked too. */
    if (chunked && !have_len && req != NULL) {
        f->streaming = f->chunked = true;
        /* Through the last CRLF: a pooled connection starts clean. */
        f->dechunk.consume_trailer = 1;
        body_len = UINT64_MAX;
    } else if (!have_len || (body_len > MAX_RESPONSE && req == NULL)) {
        return -1;
    }
    if (req != NULL && body_len > STREAM_MIN)
        f->streaming = true;
    else if (f->in.len < (size_t)hlen + body_len)
        return 0;
    if (req == NULL)
        return 1;
    for (size_t i = 0; i < n_headers; i++) {
        const struct phr_header *h = &headers[i];
        if (h->name_len == 12 && strncasecmp(h->name, "content-type", 12) == 0)
            snprintf(ctype, sizeof(ctype), "%.*s", (int)h->value_len, h->value);
        else if (relayed_header(h->name, h->name_len)) {
            char name[64], value[512];
            snprintf(name, sizeof(name), "%.*s", (int)h->name_len, h->name);
            snprintf(value, sizeof(value), "%.*s", (int)h->value_len, h->value);
            kr_http_add_header(req, name, value);
        }
    }
    if (f->streaming) {
        req->res.status = status;
        req->res.reason = status == 200 ? "OK" : "";
        req->res.content_length = f->chunked ? SIZE_MAX : body_len;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       NULL, ctype, strlen(ctype));
        f->keep = *keep;
        f->stream_off = (size_t)hlen;
        f->body_left = body_len;
        f->gen.proceed = stream_proceed;
        f->gen.stop = stream_stop;
        h2o_start_response(req, &f->gen);
        uv_timer_start(&f->timer, fwd_timeout, f->timeout_ms, 0);
        stream_more(f);
        return 2;
    }
    kr_http_send_secret(req, status, ctype, f->in.data + hlen, body_len);
    return 1;
}

static void fwd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct fwd *f = h->data;

    (void)suggested;
    if (kr_buf_reserve(&f->in, 16384) != 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)f->in.data + f->in.len;
    buf->len = f->in.cap - f->in.len;
}

static void fwd_send(struct fwd *f);
static void fwd_dial(struct fwd *f);

static void fwd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fwd *f = s->data;
    bool keep = false;
    int rv;

    (void)buf;
    if (f->done || n == 0)
        return;
    if (f->streaming) {
        if (n < 0) {
            fwd_fail(f, 502, "lost the connection to the cluster leader");
            return;
        }
        f->in.len += (size_t)n;
        uv_timer_start(&f->timer, fwd_timeout, f->timeout_ms, 0);
        stream_more(f);
        return;
    }
    if (n < 0) {
        /* A pooled connection the leader closed meanwhile: one retry on
         * a fresh one, if nothing came back yet. */
        if (f->from_pool && !f->retried && f->in.len == 0 &&
            !f->write_pending) {
            f->retried = true;
            uv_read_stop(s);
            uv_close((uv_handle_t *)s, free_raft_handle);
            f->stream = NULL;
            f->from_pool = false;
            /* Not from the pool again: the leader may have closed all of
             * them at once (its idle timeout, a restart). */
            fwd_dial(f);
            return;
        }
        fwd_fail(f, 503, "lost the connection to the cluster leader");
        return;
    }
    f->in.len += (size_t)n;
    rv = try_relay(f, &keep);
    if (rv < 0)
        fwd_fail(f, 502, "malformed answer from the cluster leader");
    else if (rv == 1)
        fwd_end(f, keep);
}

static void fwd_written(uv_write_t *w, int status)
{
    struct fwd *f = w->data;

    f->write_pending = false;
    if (f->timer_closed) {
        fwd_free(f);
        return;
    }
    if (f->done || status == 0)
        return;
    /* The read side reports a broken pooled connection and retries. */
    if (!f->from_pool)
        fwd_fail(f, 503, "cannot send to the cluster leader");
}

static void fwd_start_io(struct fwd *f)
{
    uv_buf_t b = uv_buf_init((char *)f->out.data, (unsigned)f->out.len);

    f->stream->data = f;
    f->write.data = f;
    uv_read_start(f->stream, fwd_alloc, fwd_read);
    if (uv_write(&f->write, f->stream, &b, 1, fwd_written) != 0) {
        fwd_fail(f, 503, "cannot send to the cluster leader");
        return;
    }
    f->write_pending = true;
}

static void fwd_dialed(void *arg, int status, uv_stream_t *stream)
{
    struct fwd *f = arg;

    f->dial = NULL;
    if (f->done) {
        if (stream != NULL)
            uv_close((uv_handle_t *)stream, free_raft_handle);
        return;
    }
    if (status != 0) {
        fwd_fail(f, 503, "cannot reach the cluster leader");
        return;
    }
    f->stream = stream;
    fwd_start_io(f);
}

static void fwd_send(struct fwd *f)
{
    struct kr_http *srv = f->p.srv;
    struct pooled **pp;

    for (pp = &srv->pool; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->leader, f->leader) == 0) {
            struct pooled *pl = *pp;
            *pp = pl->next;
            srv->n_pooled--;
            f->stream = pl->stream;
            f->from_pool = true;
            free(pl);
            fwd_start_io(f);
            return;
        }
    }
    fwd_dial(f);
}

static void fwd_dial(struct fwd *f)
{
    if (kr_rpc_dial(f->p.srv->deps.loop, f->leader, KR_RPC_HTTP, NULL, 0,
                    fwd_dialed, f, &f->dial) != 0)
        fwd_fail(f, 503, "cannot reach the cluster leader");
}

static void fwd_timeout(uv_timer_t *t)
{
    fwd_fail(t->data, 503, "timed out waiting for the cluster leader");
}

/* Serialises the client's request for the leader. */
static int serialise(struct fwd *f, h2o_req_t *req)
{
    static const char *const copied[] = {"x-nomad-token", "authorization",
                                         "content-type", "want-digest"};
    struct kr_buf *b = &f->out;

    kr_buf_printf(b, "%.*s %.*s HTTP/1.1\r\nHost: keyraft\r\n",
                  (int)req->method.len, req->method.base, (int)req->path.len,
                  req->path.base);
    for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
        ssize_t at = -1;
        /* Every occurrence, in order: the leader reads them as sent. */
        while ((at = h2o_find_header_by_str(&req->headers, copied[i],
                                            strlen(copied[i]), at)) >= 0) {
            const h2o_iovec_t *v = &req->headers.entries[at].value;
            kr_buf_printf(b, "%s: %.*s\r\n", copied[i], (int)v->len, v->base);
        }
    }
    kr_buf_printf(b, "X-Keyraft-Forwarded: 1\r\nContent-Length: %zu\r\n\r\n",
                  req->entity.base != NULL ? req->entity.len : 0);
    if (req->entity.base != NULL && req->entity.len > 0)
        kr_buf_append(b, req->entity.base, req->entity.len);
    return b->oom ? KR_ENOMEM : 0;
}

static void wait_poll(uv_timer_t *t);

/* Forward to the leader, serve locally if we became it, or wait. */
static void route(struct fwd *f)
{
    struct kr_http *srv = f->p.srv;
    const char *leader = kr_raft_leader_address(srv->deps.raft);

    if (f->p.req == NULL) {
        fwd_end(f, false);
        return;
    }
    if (kr_raft_is_leader(srv->deps.raft)) {
        struct kr_http_call c = f->call;
        c.req = f->p.req;
        fwd_end(f, false);
        kr_http_serve_on_leader(&c);
        return;
    }
    if (*leader == '\0') {
        if (f->waited_ms >= LEADER_WAIT_MS) {
            fwd_fail(f, 503, "No cluster leader");
            return;
        }
        f->waited_ms += LEADER_POLL_MS;
        uv_timer_start(&f->timer, wait_poll, LEADER_POLL_MS, 0);
        return;
    }
    snprintf(f->leader, sizeof(f->leader), "%s", leader);
    if (serialise(f, f->p.req) != 0) {
        fwd_fail(f, 500, "out of memory");
        return;
    }
    uv_timer_start(&f->timer, fwd_timeout, f->timeout_ms, 0);
    fwd_send(f);
}

static void wait_poll(uv_timer_t *t)
{
    route(t->data);
}

int kr_http_forward(struct kr_http_call *c)
{
    struct fwd *f = kr_http_pending_new(c, sizeof(*f));

    if (f == NULL) {
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    f->call = *c;
    f->timeout_ms = strcmp(c->path, "/v1/operator/snapshot") == 0
                        ? SNAPSHOT_TIMEOUT_MS
                        : FORWARD_TIMEOUT_MS;
    c->srv->live_ops++;
    kr_buf_init(&f->out);
    kr_buf_init(&f->in);
    uv_timer_init(c->srv->deps.loop, &f->timer);
    f->timer.data = f;
    route(f);
    return 0;
}

void kr_http_pool_close(struct kr_http *srv)
{
    while (srv->pool != NULL) {
        struct pooled *pl = srv->pool;
        srv->pool = pl->next;
        uv_close((uv_handle_t *)pl->stream, free_raft_handle);
        free(pl);
    }
    srv->n_pooled = 0;
}

/* ---- barriers for consistent reads on the leader ---- */

struct barrier_wait {
    struct kr_http_pending p;
    struct kr_http_call call;
    struct barrier_wait *next;
};

static void barrier_start(struct kr_http *srv);

static void barrier_done(void *arg, int status)
{
    struct kr_http *srv = arg;
    struct barrier_wait *w = srv->barrier_serving, *next;

    srv->barrier_serving = NULL;
    srv->barrier_in_flight = false;
    for (; w != NULL; w = next) {
        next = w->next;
        if (w->p.req != NULL) {
            w->call.req = w->p.req;
            if (status == 0)
                kr_http_dispatch(&w->call);
            else
                kr_http_reply_error(w->p.req, kr_err_http_status(status), "%s",
                                    status == KR_ENOLEADER
                                        ? "No cluster leader"
                                        : kr_strerror(status));
        }
        kr_http_pending_done(&w->p);
        srv->live_ops--;
    }
    /* Reads that arrived while this barrier was in flight need one that
     * starts after them. */
    if (srv->barrier_waiting != NULL)
        barrier_start(srv);
}

static void barrier_start(struct kr_http *srv)
{
    int rv;

    srv->barrier_serving = srv->barrier_waiting;
    srv->barrier_waiting = NULL;
    srv->barrier_in_flight = true;
    rv = kr_raft_barrier(srv->deps.raft, barrier_done, srv);
    if (rv != 0)
        barrier_done(srv, rv);
}

int kr_http_after_barrier(struct kr_http_call *c)
{
    struct kr_http *srv = c->srv;
    struct barrier_wait *w = kr_http_pending_new(c, sizeof(*w));

    if (w == NULL) {
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    w->call = *c;
    srv->live_ops++;
    w->next = srv->barrier_waiting;
    srv->barrier_waiting = w;
    if (!srv->barrier_in_flight)
        barrier_start(srv);
    return 0;
}
