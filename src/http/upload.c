/*
 * The streaming path of a snapshot restore's request body.  h2o 2.2.5
 * buffers every request body whole before a handler runs, under one
 * limit for every route; a restore's archive is hundreds of MiB for a
 * million Variables.  So server.c looks at the first request line of
 * every HTTP/1.1 connection (after TLS, when the port has it) before h2o
 * does, and a connection that opens with PUT or POST /v1/operator/snapshot
 * comes here instead: its body is streamed to an unnamed temporary file
 * in data_dir, at most one block (1 MiB) in memory, and every other route
 * keeps h2o's 1 MiB cap.
 *
 * Once the body is in, the leader hands the file to the restorer; a
 * follower streams it to the leader over the RPC port, as forward.c does
 * for other requests (X-Keyraft-Forwarded stops a second hop), and relays
 * the answer.  The answer always closes the connection, so it serves one
 * request.  A connection that sends nothing for UPLOAD_IDLE_MS while its
 * body is arriving is closed; once the body is in, the client waits for
 * the restore however long it takes, and the restore goes on if the
 * client leaves.  Only HTTP/1.1 gets here: over HTTP/2 a restore is
 * capped at 1 MiB (h2o's path in snapshot.c).
 *
 * Loop thread only.
 */
#include "http/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <raft.h>

#include "cluster/rpc.h"
#include "common/err.h"
#include "common/log.h"
#include "snapshot/archive.h"
#include "snapshot/restore.h"

#define BLOCK (1u << 20)
#define HEAD_MAX (64u * 1024)
#define RESP_MAX (64u * 1024)
#define LEADER_WAIT_MS 5000
/* Uploads receiving at once on one server: each may fill 2 GiB of
 * data_dir, and only one restore runs at a time anyway. */
#define RECEIVING_MAX 2

/* picohttpparser, exported by libh2o (see forward.c). */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method,
                      size_t *method_len, const char **path, size_t *path_len,
                      int *minor_version, struct phr_header *headers,
                      size_t *num_headers, size_t last_len);
int phr_parse_response(const char *buf, size_t len, int *minor_version,
                       int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers,
                       size_t last_len);

enum phase {
    U_HEAD,  /* reading the request head */
    U_BODY,  /* streaming the body to the file */
    U_WORK,  /* restoring, or forwarding to the leader */
    U_REPLY, /* writing the answer */
};

struct upload {
    struct kr_http *srv;
    h2o_socket_t *sock; /* NULL once closed */
    struct upload *prev, *next;
    h2o_timeout_entry_t idle;
    h2o_timeout_entry_t poll; /* waiting for a leader */
    enum phase phase;
    int fd;
    uint64_t length, received;
    bool forwarded;
    bool expect_continue;
    bool writing; /* a socket write is in flight */
    char target[2048];
    struct kr_buf headers; /* relayed to the leader: "Name: value\r\n" */
    uint8_t *block;
    uv_fs_t fs;
    bool fs_busy;
    size_t fs_len; /* the receiving write in flight: its bytes */
    /* forwarding */
    char leader[256];
    uint64_t waited_ms;
    struct kr_rpc_dial *dial;
    uv_stream_t *up;
    uv_write_t up_write;
    bool up_writing;
    uint64_t sent;
    struct kr_buf up_head;
    struct kr_buf resp;
    bool relayed;
    /* the answer */
    struct kr_buf out;
    bool done;    /* no more work will start */
    bool counted; /* in srv->receiving until the body is in */
};

bool kr_http_is_upload(const char *line, size_t len)
{
    static const char *const starts[] = {"PUT /v1/operator/snapshot",
                                         "POST /v1/operator/snapshot"};

    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(starts[i]);
        if (len > n && memcmp(line, starts[i], n) == 0 &&
            (line[n] == ' ' || line[n] == '?'))
            return true;
    }
    return false;
}

static void free_raft_handle(uv_handle_t *h)
{
    raft_free(h);
}

/* The body is in, or never will be: another upload may start. */
static void uncount(struct upload *u)
{
    if (u->counted)
        u->srv->receiving--;
    u->counted = false;
}

static void unlink_upload(struct upload *u)
{
    struct kr_http *srv = u->srv;

    uncount(u);
    if (u->prev != NULL)
        u->prev->next = u->next;
    else if (srv->uploads == u)
        srv->uploads = u->next;
    if (u->next != NULL)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
}

/* Frees u once nothing it started can call back. */
static void maybe_free(struct upload *u)
{
    struct kr_http *srv = u->srv;

    if (!u->done || u->sock != NULL || u->fs_busy || u->up_writing ||
        u->dial != NULL || u->up != NULL)
        return;
    h2o_timeout_unlink(&u->idle);
    h2o_timeout_unlink(&u->poll);
    unlink_upload(u);
    if (u->fd >= 0)
        close(u->fd);
    if (u->block != NULL) {
        explicit_bzero(u->block, BLOCK);
        free(u->block);
    }
    kr_buf_free(&u->headers);
    kr_buf_free(&u->up_head);
    kr_buf_free(&u->resp);
    kr_buf_free(&u->out);
    free(u);
    srv->live_ops--;
}

static void close_sock(struct upload *u)
{
    if (u->sock != NULL) {
        h2o_socket_read_stop(u->sock);
        h2o_socket_close(u->sock);
        u->sock = NULL;
    }
}

static void close_up(struct upload *u)
{
    kr_rpc_dial_cancel(u->dial);
    if (u->up != NULL && !u->up_writing) {
        uv_read_stop(u->up);
        uv_close((uv_handle_t *)u->up, free_raft_handle);
        u->up = NULL;
    }
}

/* Stops everything; u goes once its callbacks are in. */
static void drop(struct upload *u)
{
    u->done = true;
    close_up(u);
    close_sock(u);
    maybe_free(u);
}

static void reply_written(h2o_socket_t *sock, const char *err)
{
    struct upload *u = sock->data;

    (void)err;
    u->writing = false;
    drop(u);
}

static const char *reason(int status)
{
    static const struct {
        int status;
        const char *text;
    } reasons[] = {
        {200, "OK"},
        {400, "Bad Request"},
        {404, "Not Found"},
        {409, "Conflict"},
        {411, "Length Required"},
        {413, "Request Entity Too Large"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
    };

    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return "Error";
}

/* Writes the whole answer and closes the connection. */
static void reply(struct upload *u, int status, uint64_t index,
                  const char *body)
{
    h2o_iovec_t iov;
    size_t blen = strlen(body);

    close_up(u);
    if (u->sock == NULL || u->phase == U_REPLY || u->writing) {
        drop(u);
        return;
    }
    u->phase = U_REPLY;
    u->done = true;
    h2o_timeout_unlink(&u->idle);
    h2o_socket_read_stop(u->sock);
    kr_buf_printf(&u->out,
                  "HTTP/1.1 %d %s\r\nServer: keyraft\r\nConnection: close\r\n"
                  "Content-Length: %zu\r\n",
                  status, reason(status), status == 200 ? 0 : blen);
    if (status != 200)
        kr_buf_puts(&u->out, "Content-Type: text/plain; charset=utf-8\r\n");
    if (index > 0)
        kr_buf_printf(&u->out, "X-Nomad-Index: %" PRIu64 "\r\n", index);
    kr_buf_puts(&u->out, "\r\n");
    if (status != 200)
        kr_buf_append(&u->out, body, blen);
    if (u->out.oom) {
        drop(u);
        return;
    }
    iov = h2o_iovec_init(u->out.data, u->out.len);
    u->writing = true;
    h2o_socket_write(u->sock, &iov, 1, reply_written);
}

static void reply_error(struct upload *u, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(struct upload *u, int status, const char *fmt, ...)
{
    char msg[KR_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply(u, status, 0, msg);
}

/* ---- the restore itself, on the leader ---- */

static void restored(void *arg, int status, uint64_t index, const char *errmsg)
{
    struct upload *u = arg;

    if (status == 0)
        reply(u, 200, index, "");
    else
        reply(u, kr_err_http_status(status), 0, errmsg);
}

static void forward(struct upload *u);

/* The body is in: restore here, or have the leader do it. */
static void route(struct upload *u)
{
    struct kr_http *srv = u->srv;
    char err[KR_ERRMSG_SIZE];
    int rv;

    u->phase = U_WORK;
    uncount(u);
    h2o_timeout_unlink(&u->idle);
    if (u->sock != NULL)
        h2o_socket_read_stop(u->sock);
    if (srv->closing) {
        reply_error(u, 503, "server is shutting down");
        return;
    }
    if (kr_raft_is_leader(srv->deps.raft)) {
        if (lseek(u->fd, 0, SEEK_SET) != 0) {
            reply_error(u, 500, "rewinding the uploaded archive: %s",
                        strerror(errno));
            return;
        }
        rv = kr_restore_start(srv->deps.restore, u->fd, restored, u, err);
        if (rv != 0) {
            reply(u, kr_err_http_status(rv), 0, err);
            return;
        }
        u->fd = -1; /* the restorer's now */
        return;
    }
    if (u->forwarded) {
        /* The leadership moved while it was forwarded: no second hop. */
        reply_error(u, 503, "No cluster leader");
        return;
    }
    forward(u);
}

/* ---- receiving the body ---- */

static void pump(struct upload *u);

static void on_written_block(uv_fs_t *fs)
{
    struct upload *u = fs->data;
    ssize_t n = fs->result;

    uv_fs_req_cleanup(fs);
    u->fs_busy = false;
    if (u->done) {
        maybe_free(u);
        return;
    }
    if (n < 0) {
        reply_error(u, 500, "writing the upload to %s: %s",
                    u->srv->deps.data_dir, uv_strerror((int)n));
        return;
    }
    if ((size_t)n != u->fs_len) { /* the rest has left the socket's buffer */
        reply_error(u, 500,
                    "writing the upload to %s: %zd of %zu bytes written "
                    "(is the disk full?)",
                    u->srv->deps.data_dir, n, u->fs_len);
        return;
    }
    u->received += (uint64_t)n;
    pump(u);
}

static void on_body(h2o_socket_t *sock, const char *err);

/* Reads on while less than two blocks wait in the socket's buffer and
 * the rest of the body (left bytes, past any write in flight) is not all
 * in it: never past the body, so a client that shuts its side once it
 * has sent it is not taken for one that went away. */
static void read_on(struct upload *u, uint64_t left)
{
    size_t have = u->sock->input->size; /* consume may have swapped it */

    if (have < 2 * BLOCK && have < left)
        h2o_socket_read_start(u->sock, on_body);
    else
        h2o_socket_read_stop(u->sock);
}

/*
 * Moves what has arrived into the file a whole block at a time (a write
 * is a trip through libuv's thread pool: one per socket read made the
 * upload of a million Variables take seconds), reading on while a write
 * is pending until a second block waits in the socket's buffer.
 */
static void pump(struct upload *u)
{
    h2o_buffer_t *in = u->sock != NULL ? u->sock->input : NULL;
    uint64_t left = u->length - u->received;
    size_t n;
    uv_buf_t b;

    if (left == 0 && !u->fs_busy) {
        route(u);
        return;
    }
    if (u->sock == NULL)
        return;
    n = in->size < left ? in->size : (size_t)left;
    if (u->fs_busy || (n < BLOCK && n < left)) {
        read_on(u, left - (u->fs_busy ? u->fs_len : 0));
        return;
    }
    if (n > BLOCK)
        n = BLOCK;
    memcpy(u->block, in->bytes, n);
    /* The socket's copy holds the archive too. */
    explicit_bzero(in->bytes, n);
    h2o_buffer_consume(&u->sock->input, n);
    b = uv_buf_init((char *)u->block, (unsigned)n);
    u->fs.data = u;
    u->fs_busy = true;
    u->fs_len = n;
    if (uv_fs_write(u->srv->deps.loop, &u->fs, u->fd, &b, 1, -1,
                    on_written_block) != 0) {
        u->fs_busy = false;
        reply_error(u, 500, "writing the upload: cannot queue the write");
    } else {
        read_on(u, left - n);
    }
}

static void on_idle(h2o_timeout_entry_t *e)
{
    struct upload *u =
        (struct upload *)((char *)e - offsetof(struct upload, idle));

    KR_WARN("http",
            "snapshot upload stalled at %" PRIu64 " of %" PRIu64
            " bytes: connection closed",
            u->received, u->length);
    drop(u);
}

static void touch(struct upload *u)
{
    h2o_timeout_unlink(&u->idle);
    h2o_timeout_link(u->srv->deps.loop, &u->srv->upload_idle, &u->idle);
}

static void on_body(h2o_socket_t *sock, const char *err)
{
    struct upload *u = sock->data;

    if (err != NULL) {
        KR_WARN("http",
                "snapshot upload ended at %" PRIu64 " of %" PRIu64 " bytes: %s",
                u->received, u->length, err);
        drop(u);
        return;
    }
    touch(u);
    pump(u);
}

static void continue_sent(h2o_socket_t *sock, const char *err)
{
    struct upload *u = sock->data;

    u->writing = false;
    if (err != NULL) {
        drop(u);
        return;
    }
    if (u->done) {
        drop(u);
        return;
    }
    pump(u);
}

/* Keeps the headers the leader needs to see. */
static void keep_header(struct upload *u, const struct phr_header *h)
{
    static const char *const kept[] = {"x-nomad-token", "authorization",
                                       "content-type"};

    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        if (h->name_len == strlen(kept[i]) &&
            strncasecmp(h->name, kept[i], h->name_len) == 0)
            kr_buf_printf(&u->headers, "%s: %.*s\r\n", kept[i],
                          (int)h->value_len, h->value);
}

static bool header_is(const struct phr_header *h, const char *name)
{
    return h->name_len == strlen(name) &&
           strncasecmp(h->name, name, h->name_len) == 0;
}

/* The request head: returns false when the connection was answered. */
static bool parse_head(struct upload *u, size_t *head_len)
{
    struct phr_header hs[64];
    size_t nh = 64, mlen, plen;
    const char *method, *path;
    int minor, n;
    bool have_len = false;
    char num[32];
    h2o_buffer_t *in = u->sock->input;

    n = phr_parse_request(in->bytes, in->size < HEAD_MAX ? in->size : HEAD_MAX,
                          &method, &mlen, &path, &plen, &minor, hs, &nh, 0);
    if (n == -2 && in->size < HEAD_MAX) {
        *head_len = 0;
        return true;
    }
    if (n < 0) {
        reply_error(u, 400, "malformed request head");
        return false;
    }
    if (plen >= sizeof(u->target)) {
        reply_error(u, 400, "request target too long");
        return false;
    }
    memcpy(u->target, path, plen);
    u->target[plen] = '\0';
    for (size_t i = 0; i < nh; i++) {
        const struct phr_header *h = &hs[i];
        if (header_is(h, "content-length")) {
            uint64_t v;
            snprintf(num, sizeof(num), "%.*s",
                     (int)(h->value_len < 31 ? h->value_len : 31), h->value);
            if (have_len || !kr_http_parse_u64(num, &v)) {
                reply_error(u, 400, "invalid Content-Length");
                return false;
            }
            u->length = v;
            have_len = true;
        } else if (header_is(h, "transfer-encoding")) {
            reply_error(u, 411,
                        "a snapshot upload needs a Content-Length, not "
                        "Transfer-Encoding");
            return false;
        } else if (header_is(h, "expect")) {
            if (h->value_len != 12 ||
                strncasecmp(h->value, "100-continue", 12) != 0) {
                reply_error(u, 400, "unknown expectation");
                return false;
            }
            u->expect_continue = true;
        } else if (header_is(h, "x-keyraft-forwarded")) {
            u->forwarded = true;
        } else {
            keep_header(u, h);
        }
    }
    if (!have_len) {
        reply_error(u, 411, "a snapshot upload needs a Content-Length");
        return false;
    }
    if (u->length == 0) {
        reply_error(u, 400, "snapshot archive is empty");
        return false;
    }
    if (u->length > KR_SNAP_STATE_MAX) {
        reply_error(u, 413,
                    "snapshot archive of %" PRIu64 " bytes is larger than "
                    "the %llu a restore takes",
                    u->length, KR_SNAP_STATE_MAX);
        return false;
    }
    *head_len = (size_t)n;
    return true;
}

static void on_head(h2o_socket_t *sock, const char *err)
{
    static const h2o_iovec_t cont = {
        H2O_STRLIT("HTTP/1.1 100 Continue\r\n\r\n")};
    struct upload *u = sock->data;
    char errmsg[KR_ERRMSG_SIZE];
    size_t head_len = 0;

    if (err != NULL) {
        drop(u);
        return;
    }
    if (!parse_head(u, &head_len) || head_len == 0)
        return;
    h2o_buffer_consume(&u->sock->input, head_len);
    u->block = malloc(BLOCK);
    if (u->block == NULL || u->headers.oom) {
        reply_error(u, 500, "out of memory");
        return;
    }
    if (kr_http_snap_tmpfile(u->srv, &u->fd, errmsg) != 0) {
        reply_error(u, 500, "%s", errmsg);
        return;
    }
    if (u->srv->receiving >= RECEIVING_MAX) {
        reply_error(u, 503,
                    "%d snapshot uploads are in progress on this server; "
                    "try again when one has finished",
                    RECEIVING_MAX);
        return;
    }
    u->srv->receiving++;
    u->counted = true;
    u->phase = U_BODY;
    KR_INFO("http", "receiving a snapshot archive of %" PRIu64 " bytes%s",
            u->length, u->forwarded ? " (forwarded)" : "");
    touch(u);
    if (u->expect_continue && u->sock->input->size == 0) {
        h2o_socket_read_stop(u->sock);
        u->writing = true;
        h2o_socket_write(u->sock, (h2o_iovec_t *)&cont, 1, continue_sent);
        return;
    }
    pump(u);
}

void kr_http_upload_start(struct kr_http *srv, h2o_socket_t *sock)
{
    struct upload *u = calloc(1, sizeof(*u));

    if (u == NULL) {
        h2o_socket_close(sock);
        return;
    }
    u->srv = srv;
    u->sock = sock;
    u->fd = -1;
    u->idle.cb = on_idle;
    kr_buf_init(&u->headers);
    kr_buf_init(&u->up_head);
    kr_buf_init(&u->resp);
    kr_buf_init(&u->out);
    u->next = srv->uploads;
    if (srv->uploads != NULL)
        srv->uploads->prev = u;
    srv->uploads = u;
    srv->live_ops++;
    sock->data = u;
    touch(u);
    h2o_socket_read_start(sock, on_head);
    if (sock->input->size > 0)
        on_head(sock, NULL);
}

void kr_http_upload_close_all(struct kr_http *srv)
{
    struct upload *u, *next;

    /* A restore in flight answers when the restorer closes; the others
     * go now. */
    for (u = srv->uploads; u != NULL; u = next) {
        next = u->next;
        if (u->phase == U_HEAD || u->phase == U_BODY)
            drop(u);
        else if (u->phase == U_WORK && (u->dial != NULL || u->up != NULL ||
                                        h2o_timeout_is_linked(&u->poll)))
            reply_error(u, 503, "server is shutting down");
    }
}

/* ---- forwarding to the leader ---- */

static void up_send(struct upload *u);

/* The leader's answer, once complete, goes to our client. */
static void up_relay(struct upload *u, bool eof)
{
    struct phr_header hs[32];
    size_t nh = 32, mlen;
    const char *msg;
    int minor, status, hlen;
    uint64_t blen = 0, index = 0;
    bool have_len = false;
    char num[32], body[KR_ERRMSG_SIZE];

    hlen = phr_parse_response((const char *)u->resp.data, u->resp.len, &minor,
                              &status, &msg, &mlen, hs, &nh, 0);
    if (hlen == -2 && !eof)
        return;
    if (hlen < 0) {
        reply_error(u, 502, "malformed answer from the cluster leader");
        return;
    }
    for (size_t i = 0; i < nh; i++) {
        snprintf(num, sizeof(num), "%.*s",
                 (int)(hs[i].value_len < 31 ? hs[i].value_len : 31),
                 hs[i].value);
        if (header_is(&hs[i], "content-length"))
            have_len = kr_http_parse_u64(num, &blen);
        else if (header_is(&hs[i], "x-nomad-index"))
            kr_http_parse_u64(num, &index);
    }
    if (!have_len || blen > RESP_MAX) {
        reply_error(u, 502, "malformed answer from the cluster leader");
        return;
    }
    if (u->resp.len < (size_t)hlen + blen) {
        if (eof)
            reply_error(u, 502, "truncated answer from the cluster leader");
        return;
    }
    snprintf(body, sizeof(body), "%.*s", (int)blen,
             (const char *)u->resp.data + hlen);
    u->relayed = true;
    reply(u, status, index, body);
}

static void up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct upload *u = h->data;

    (void)suggested;
    if (u->resp.len >= RESP_MAX || kr_buf_reserve(&u->resp, 4096) != 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)u->resp.data + u->resp.len;
    buf->len = u->resp.cap - u->resp.len;
}

static void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct upload *u = s->data;

    (void)buf;
    if (u->done || n == 0)
        return;
    if (n < 0) {
        up_relay(u, true);
        if (!u->relayed && !u->done)
            reply_error(u, 503, "lost the connection to the cluster leader");
        return;
    }
    u->resp.len += (size_t)n;
    up_relay(u, false);
}

static void up_written(uv_write_t *w, int status)
{
    struct upload *u = w->data;

    u->up_writing = false;
    if (u->done) {
        close_up(u);
        maybe_free(u);
        return;
    }
    if (status != 0) {
        reply_error(u, 503, "cannot send to the cluster leader: %s",
                    uv_strerror(status));
        return;
    }
    up_send(u);
}

static void up_block_read(uv_fs_t *fs)
{
    struct upload *u = fs->data;
    ssize_t n = fs->result;
    uv_buf_t b;

    uv_fs_req_cleanup(fs);
    u->fs_busy = false;
    if (u->done) {
        close_up(u);
        maybe_free(u);
        return;
    }
    if (n <= 0) {
        reply_error(u, 500, "reading the upload back: %s",
                    n < 0 ? uv_strerror((int)n) : "unexpected end");
        return;
    }
    u->sent += (uint64_t)n;
    b = uv_buf_init((char *)u->block, (unsigned)n);
    u->up_write.data = u;
    u->up_writing = true;
    if (uv_write(&u->up_write, u->up, &b, 1, up_written) != 0) {
        u->up_writing = false;
        reply_error(u, 503, "cannot send to the cluster leader");
    }
}

/* The next block of the file to the leader. */
static void up_send(struct upload *u)
{
    uv_buf_t b = uv_buf_init((char *)u->block, BLOCK);

    if (u->sent == u->length || u->relayed)
        return; /* all sent: the answer comes through up_read */
    u->fs.data = u;
    u->fs_busy = true;
    if (uv_fs_read(u->srv->deps.loop, &u->fs, u->fd, &b, 1, (int64_t)u->sent,
                   up_block_read) != 0) {
        u->fs_busy = false;
        reply_error(u, 500, "reading the upload back: cannot queue the read");
    }
}

static void up_dialed(void *arg, int status, uv_stream_t *stream)
{
    struct upload *u = arg;
    uv_buf_t b;

    u->dial = NULL;
    if (u->done) {
        if (stream != NULL)
            uv_close((uv_handle_t *)stream, free_raft_handle);
        maybe_free(u);
        return;
    }
    if (status != 0) {
        reply_error(u, 503, "cannot reach the cluster leader");
        return;
    }
    u->up = stream;
    stream->data = u;
    kr_buf_printf(&u->up_head,
                  "PUT %s HTTP/1.1\r\nHost: keyraft\r\n%.*s"
                  "X-Keyraft-Forwarded: 1\r\nContent-Length: %" PRIu64
                  "\r\n\r\n",
                  u->target, (int)u->headers.len, (const char *)u->headers.data,
                  u->length);
    if (u->up_head.oom) {
        reply_error(u, 500, "out of memory");
        return;
    }
    uv_read_start(stream, up_alloc, up_read);
    b = uv_buf_init((char *)u->up_head.data, (unsigned)u->up_head.len);
    u->up_write.data = u;
    u->up_writing = true;
    if (uv_write(&u->up_write, stream, &b, 1, up_written) != 0) {
        u->up_writing = false;
        reply_error(u, 503, "cannot send to the cluster leader");
    }
}

static void on_poll(h2o_timeout_entry_t *e)
{
    forward((struct upload *)((char *)e - offsetof(struct upload, poll)));
}

static void forward(struct upload *u)
{
    struct kr_http *srv = u->srv;
    const char *leader = kr_raft_leader_address(srv->deps.raft);

    if (kr_raft_is_leader(srv->deps.raft)) {
        route(u);
        return;
    }
    if (*leader == '\0') {
        if (u->waited_ms >= LEADER_WAIT_MS) {
            reply_error(u, 503, "No cluster leader");
            return;
        }
        u->waited_ms += srv->upload_poll.timeout;
        u->poll.cb = on_poll;
        h2o_timeout_link(srv->deps.loop, &srv->upload_poll, &u->poll);
        return;
    }
    snprintf(u->leader, sizeof(u->leader), "%s", leader);
    KR_INFO("http",
            "forwarding a snapshot restore of %" PRIu64
            " bytes to the leader at %s",
            u->length, u->leader);
    if (kr_rpc_dial(srv->deps.loop, u->leader, KR_RPC_HTTP, NULL, 0, up_dialed,
                    u, &u->dial) != 0)
        reply_error(u, 503, "cannot reach the cluster leader");
}
