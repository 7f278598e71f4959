/*
 * See tls_stream.h.  Bytes from the network go into the TLS connection's
 * input buffer; decrypted bytes go to our end of the socketpair; bytes the
 * consumer writes on its end are encrypted and sent.  Either side closing
 * or failing closes both.  The struct is freed when both of our handles
 * have closed.
 */
#include "cluster/tls_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <raft.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/tls.h"

#define HANDSHAKE_TIMEOUT_MS 10000
/* Plaintext moved per read or write: a raft batch of tens of KiB crosses
 * the socketpair in one write instead of one per 16 KiB TLS record. */
#define CHUNK (64 * 1024)
/* Room for CHUNK of plaintext once encrypted (a TLS 1.3 record adds 22
 * bytes per 16 KiB), so one socket write carries it. */
#define NET_CHUNK (CHUNK + 1024)

struct tls_stream {
    uv_loop_t *loop;
    uv_tcp_t *tcp;    /* network side */
    uv_pipe_t *inner; /* our end of the socketpair */
    uv_timer_t timer; /* handshake deadline */
    struct kr_tls_conn *conn;
    kr_tls_stream_cb cb;
    void *arg;
    bool handshaken;
    bool failed;
    int open; /* our handles still open */
    char netbuf[NET_CHUNK];
    char plainbuf[CHUNK];
};

struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

static void handle_closed(uv_handle_t *h)
{
    struct tls_stream *s = h->data;

    if (h != (uv_handle_t *)&s->timer)
        raft_free(h);
    if (--s->open > 0)
        return;
    kr_tls_conn_free(s->conn);
    /* plainbuf held decrypted traffic (forwarded Variable plaintext). */
    explicit_bzero(s, sizeof(*s));
    free(s);
}

static void shutdown_all(struct tls_stream *s, int status)
{
    if (s->failed)
        return;
    s->failed = true;
    if (!s->handshaken && s->cb != NULL) {
        kr_tls_stream_cb cb = s->cb;
        s->cb = NULL;
        cb(s->arg, status ? status : KR_EIO, NULL);
    }
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, handle_closed);
    uv_close((uv_handle_t *)s->tcp, handle_closed);
    if (s->inner != NULL)
        uv_close((uv_handle_t *)s->inner, handle_closed);
}

static void written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;

    (void)status; /* a failed write shows up as a read error too */
    explicit_bzero(w->data, w->len);
    free(w);
}

static int send_copy(uv_stream_t *to, const char *p, size_t n)
{
    struct wreq *w = malloc(sizeof(*w) + n);
    uv_buf_t b;

    if (w == NULL)
        return KR_ENOMEM;
    w->len = n;
    memcpy(w->data, p, n);
    b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, to, &b, 1, written) != 0) {
        free(w);
        return KR_EIO;
    }
    return 0;
}

/* Sends whatever TLS wants to send. */
static int flush_net(struct tls_stream *s)
{
    size_t n;

    while ((n = kr_tls_conn_drain(s->conn, s->netbuf, sizeof(s->netbuf))) > 0)
        if (send_copy((uv_stream_t *)s->tcp, s->netbuf, n) != 0)
            return KR_EIO;
    return 0;
}

/* Passes decrypted bytes to the consumer, gathering records (one per
 * SSL_read) into writes of up to CHUNK. */
static int flush_plain(struct tls_stream *s)
{
    size_t len;
    long n;

    do {
        len = 0;
        while (len < sizeof(s->plainbuf) &&
               (n = kr_tls_conn_read(s->conn, s->plainbuf + len,
                                     sizeof(s->plainbuf) - len)) > 0)
            len += (size_t)n;
        if (len < sizeof(s->plainbuf) && n < 0)
            return KR_EIO;
        if (len > 0 &&
            send_copy((uv_stream_t *)s->inner, s->plainbuf, len) != 0)
            return KR_EIO;
    } while (len == sizeof(s->plainbuf));
    return 0;
}

static void alloc_net(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tls_stream *s = h->data;

    (void)suggested;
    buf->base = s->netbuf;
    buf->len = sizeof(s->netbuf);
}

static void alloc_plain(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tls_stream *s = h->data;

    (void)suggested;
    buf->base = s->plainbuf;
    buf->len = sizeof(s->plainbuf);
}

static void on_plain(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct tls_stream *s = st->data;

    if (n == 0)
        return;
    if (n < 0 || kr_tls_conn_write(s->conn, buf->base, (size_t)n) != 0 ||
        flush_net(s) != 0)
        shutdown_all(s, KR_EIO);
}

static int handshake_done(struct tls_stream *s)
{
    int fds[2];
    uv_pipe_t *outer = NULL;
    kr_tls_stream_cb cb = s->cb;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return KR_EIO;
    s->inner = raft_malloc(sizeof(*s->inner));
    outer = raft_malloc(sizeof(*outer));
    if (s->inner == NULL || outer == NULL) {
        raft_free(s->inner);
        raft_free(outer);
        s->inner = NULL;
        close(fds[0]);
        close(fds[1]);
        return KR_ENOMEM;
    }
    uv_pipe_init(s->loop, s->inner, 0);
    uv_pipe_init(s->loop, outer, 0);
    uv_pipe_open(s->inner, fds[0]);
    uv_pipe_open(outer, fds[1]);
    s->inner->data = s;
    s->open++;
    s->handshaken = true;
    uv_timer_stop(&s->timer);
    uv_read_start((uv_stream_t *)s->inner, alloc_plain, on_plain);
    s->cb = NULL;
    cb(s->arg, 0, (uv_stream_t *)outer);
    /* Application data may have arrived with the last handshake bytes. */
    return flush_plain(s);
}

static void on_net(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct tls_stream *s = st->data;
    char errmsg[KR_ERRMSG_SIZE];
    int rv;

    if (n == 0 || s->failed)
        return;
    if (n < 0 || kr_tls_conn_feed(s->conn, buf->base, (size_t)n) != 0) {
        shutdown_all(s, KR_EIO);
        return;
    }
    if (!s->handshaken) {
        rv = kr_tls_conn_handshake(s->conn, errmsg);
        if (flush_net(s) != 0)
            rv = KR_EIO;
        if (rv < 0) {
            KR_WARN("rpc", "%s", errmsg);
            shutdown_all(s, rv);
            return;
        }
        if (rv == 0)
            return;
        if (handshake_done(s) != 0)
            shutdown_all(s, KR_EIO);
        return;
    }
    if (flush_plain(s) != 0 || flush_net(s) != 0)
        shutdown_all(s, KR_EIO);
}

static void on_timeout(uv_timer_t *t)
{
    shutdown_all(t->data, KR_EIO);
}

int kr_tls_stream_start(uv_loop_t *loop, uv_tcp_t *tcp, struct ssl_ctx_st *ctx,
                        bool server, const char *expect_name,
                        kr_tls_stream_cb cb, void *arg)
{
    struct tls_stream *s = calloc(1, sizeof(*s));
    char errmsg[KR_ERRMSG_SIZE];
    int rv;

    if (s == NULL) {
        uv_close((uv_handle_t *)tcp, (uv_close_cb)raft_free);
        return KR_ENOMEM;
    }
    rv = kr_tls_conn_new(&s->conn, ctx, server, expect_name);
    if (rv != 0) {
        free(s);
        uv_close((uv_handle_t *)tcp, (uv_close_cb)raft_free);
        return rv;
    }
    s->loop = loop;
    s->tcp = tcp;
    s->cb = cb;
    s->arg = arg;
    tcp->data = s;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->open = 2; /* tcp and timer */
    uv_timer_start(&s->timer, on_timeout, HANDSHAKE_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)tcp, alloc_net, on_net);
    /* A client speaks first. */
    if (!server) {
        rv = kr_tls_conn_handshake(s->conn, errmsg);
        if (rv < 0 || flush_net(s) != 0)
            uv_timer_start(&s->timer, on_timeout, 0, 0);
    }
    return 0;
}
