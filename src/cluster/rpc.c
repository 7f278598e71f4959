/*
 * See rpc.h.  The listener reads a connection's preamble with buffers
 * sized to exactly the bytes still missing, so it never consumes a byte
 * that belongs to whoever gets the stream next, even from a client that
 * ignores the protocol and sends early.  A preamble must arrive within
 * PREAMBLE_TIMEOUT_MS, which bounds what an idle or slow client can hold.
 */
#include "cluster/rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "common/err.h"
#include "common/log.h"
#include "cluster/tls_stream.h"

#define MAGIC "KRPC"
#define VERSION 1
#define PREFIX_LEN 10 /* magic(4) version(1) kind(1) u32 length(4) */
#define PREAMBLE_TIMEOUT_MS 10000
#define DIAL_TIMEOUT_MS 5000

static void free_handle(uv_handle_t *h)
{
    raft_free(h);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int kr_rpc_parse_address(const char *address, struct sockaddr_in *out)
{
    char host[256];
    const char *colon = strrchr(address, ':');
    char *end = NULL;
    long port;

    if (colon == NULL || (size_t)(colon - address) >= sizeof(host))
        return KR_EINVAL;
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || port < 1 || port > 65535)
        return KR_EINVAL;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    return uv_ip4_addr(host, (int)port, out) == 0 ? 0 : KR_EINVAL;
}

/* ---- listener ---- */

struct conn {
    struct kr_rpc *rpc;
    uv_stream_t *tcp; /* raft_malloc'd socket or TLS plaintext pipe */
    uv_timer_t timer;
    uv_write_t write;
    uint8_t prefix[PREFIX_LEN];
    size_t got;
    uint8_t *header;
    uint32_t header_len;
    uint8_t ack[5]; /* status byte, then the call response length */
    struct kr_buf resp;
    uint8_t kind;
    bool handed_on;
    bool writing; /* the ack is in flight: acked will run, even if closed */
    bool ended;
    struct sockaddr_in peer; /* the TCP peer, from the kernel */
    struct conn *next;
};

/* TLS for every RPC connection, set once by the agent (one per process):
 * server_ctx for accepted connections, client_ctx for dials, and the name
 * both ends' certificates must carry when verify_server_hostname is on. */
static struct {
    struct ssl_ctx_st *server_ctx;
    struct ssl_ctx_st *client_ctx;
    char name[256];
} tls;

/* The address dials leave from (port 0), so that the listener at the
 * other end sees the IP this server's raft address names; unset (family
 * 0) when bind_addr is 0.0.0.0. */
static struct sockaddr_in source;

void kr_rpc_set_source(const char *host)
{
    memset(&source, 0, sizeof(source));
    if (host != NULL && strcmp(host, "0.0.0.0") != 0 &&
        uv_ip4_addr(host, 0, &source) != 0)
        memset(&source, 0, sizeof(source));
}

void kr_rpc_set_tls(struct ssl_ctx_st *server_ctx,
                    struct ssl_ctx_st *client_ctx, const char *name)
{
    tls.server_ctx = server_ctx;
    tls.client_ctx = client_ctx;
    snprintf(tls.name, sizeof(tls.name), "%s", name ? name : "");
}

struct kr_rpc {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct kr_rpc_handlers h;
    struct conn *conns;
    unsigned busy;
    bool closing;
};

static void rpc_maybe_free(struct kr_rpc *r)
{
    if (r->closing && r->busy == 0)
        free(r);
}

static void conn_timer_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct kr_rpc *r = c->rpc;

    free(c->header);
    kr_buf_free(&c->resp);
    free(c);
    r->busy--;
    rpc_maybe_free(r);
}

/* Unlinks c and frees it; closes its socket unless it was handed on.
 * With the ack in flight (a timeout, or the server closing), closing the
 * socket cancels the write, and c is freed only after acked has run. */
static void conn_end(struct conn *c)
{
    struct conn **pp = &c->rpc->conns;

    if (c->ended)
        return;
    c->ended = true;
    while (*pp != NULL && *pp != c)
        pp = &(*pp)->next;
    if (*pp == c)
        *pp = c->next;
    if (!c->handed_on)
        uv_close((uv_handle_t *)c->tcp, free_handle);
    uv_timer_stop(&c->timer);
    if (!c->writing)
        uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

static void conn_timeout(uv_timer_t *t)
{
    conn_end(t->data);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;

    (void)suggested;
    /* Exactly what is still missing: never a byte more. */
    if (c->got < PREFIX_LEN) {
        buf->base = (char *)c->prefix + c->got;
        buf->len = PREFIX_LEN - c->got;
    } else {
        buf->base = (char *)c->header + (c->got - PREFIX_LEN);
        buf->len = c->header_len - (c->got - PREFIX_LEN);
    }
}

static void acked(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    struct kr_rpc *r = c->rpc;

    c->writing = false;
    if (c->ended) { /* the socket is closed: only c is left */
        uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
        return;
    }
    if (status != 0 || r->closing || c->kind == KR_RPC_CALL) {
        conn_end(c);
        return;
    }
    c->handed_on = true;
    c->tcp->data = NULL;
    if (c->kind == KR_RPC_RAFT) {
        struct kr_rd rd;
        uint64_t id;
        char *addr;

        kr_rd_init(&rd, c->header, c->header_len);
        id = kr_rd_u64(&rd);
        addr = kr_rd_strdup(&rd, 255);
        if (addr != NULL && r->h.on_raft != NULL)
            r->h.on_raft(r->h.arg, id, addr, c->tcp);
        else
            uv_close((uv_handle_t *)c->tcp, free_handle);
        free(addr);
    } else {
        r->h.on_http(r->h.arg, c->tcp);
    }
    conn_end(c);
}

/*
 * A RAFT preamble names the dialler's raft ID and address.  The address
 * must name the IP the connection really comes from (the kernel's view
 * of the TCP peer, after the TLS handshake when tls.rpc is on), so a
 * server cannot speak for a server at another address.  The raft glue
 * then checks the ID against the configuration (kr_raft's
 * on_raft_stream).
 */
static bool raft_header_ok(const struct conn *c)
{
    struct kr_rd rd;
    struct sockaddr_in claimed;
    char *addr;
    char peer[INET_ADDRSTRLEN] = "?";
    bool ok;

    kr_rd_init(&rd, c->header, c->header_len);
    kr_rd_u64(&rd);
    addr = kr_rd_strdup(&rd, 255);
    if (addr == NULL || !kr_rd_done(&rd)) {
        free(addr);
        return false;
    }
    ok = kr_rpc_parse_address(addr, &claimed) == 0 &&
         c->peer.sin_family == AF_INET &&
         claimed.sin_addr.s_addr == c->peer.sin_addr.s_addr;
    if (!ok) {
        uv_ip4_name(&c->peer, peer, sizeof(peer));
        KR_WARN("rpc",
                "refused a raft connection from %s that names the address "
                "%s: a server's raft address must be the one it connects "
                "from",
                peer, addr);
    }
    free(addr);
    return ok;
}

/* The preamble is complete: decide, answer, and hand on. */
static void conn_dispatch(struct conn *c)
{
    struct kr_rpc *r = c->rpc;
    uv_buf_t bufs[2];
    unsigned n = 1;
    int st = 0;

    uv_read_stop(c->tcp);
    switch (c->kind) {
    case KR_RPC_RAFT:
        st = !raft_header_ok(c) || r->h.on_raft == NULL;
        break;
    case KR_RPC_HTTP:
        st = r->h.on_http == NULL || c->header_len != 0;
        break;
    case KR_RPC_CALL:
        kr_buf_init(&c->resp);
        st = r->h.on_call == NULL ||
             r->h.on_call(r->h.arg, c->header, c->header_len, &c->resp) != 0 ||
             c->resp.oom;
        put_u32(c->ack + 1, st ? 0 : (uint32_t)c->resp.len);
        n = st ? 1 : 2;
        bufs[1] = uv_buf_init((char *)c->resp.data, (unsigned)c->resp.len);
        break;
    default:
        st = 1;
    }
    c->ack[0] = (uint8_t)st;
    bufs[0] = uv_buf_init((char *)c->ack, c->kind == KR_RPC_CALL ? 5 : 1);
    if (st != 0)
        c->kind = KR_RPC_CALL; /* close after the answer */
    c->write.data = c;
    if (uv_write(&c->write, c->tcp, bufs, n, acked) != 0)
        conn_end(c);
    else
        c->writing = true;
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    uint32_t len;

    (void)buf;
    if (n < 0) {
        conn_end(c);
        return;
    }
    c->got += (size_t)n;
    if (c->got < PREFIX_LEN)
        return;
    if (c->got == PREFIX_LEN && c->header == NULL) {
        len = get_u32(c->prefix + 6);
        if (memcmp(c->prefix, MAGIC, 4) != 0 || c->prefix[4] != VERSION ||
            len > KR_RPC_MAX_HEADER) {
            conn_end(c);
            return;
        }
        c->kind = c->prefix[5];
        c->header_len = len;
        c->header = malloc(len ? len : 1);
        if (c->header == NULL) {
            conn_end(c);
            return;
        }
    }
    if (c->got == PREFIX_LEN + c->header_len)
        conn_dispatch(c);
}

/* Starts reading the preamble on an accepted stream (plain or TLS) whose
 * TCP peer is peer (copied). */
static void conn_start(struct kr_rpc *r, uv_stream_t *stream,
                       const struct sockaddr_in *peer)
{
    struct conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        uv_close((uv_handle_t *)stream, free_handle);
        return;
    }
    c->rpc = r;
    c->tcp = stream;
    c->peer = *peer;
    stream->data = c;
    uv_timer_init(r->loop, &c->timer);
    c->timer.data = c;
    r->busy++;
    c->next = r->conns;
    r->conns = c;
    uv_timer_start(&c->timer, conn_timeout, PREAMBLE_TIMEOUT_MS, 0);
    uv_read_start(c->tcp, conn_alloc, conn_read);
}

/* An accepted connection while its TLS handshake runs. */
struct accepting {
    struct kr_rpc *rpc;
    struct sockaddr_in peer;
};

static void tls_accepted(void *arg, int status, uv_stream_t *plain)
{
    struct accepting *a = arg;
    struct kr_rpc *r = a->rpc;

    r->busy--;
    if (status == 0 && !r->closing)
        conn_start(r, plain, &a->peer);
    else if (plain != NULL)
        uv_close((uv_handle_t *)plain, free_handle);
    free(a);
    rpc_maybe_free(r);
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct kr_rpc *r = listener->data;
    struct sockaddr_in peer;
    struct accepting *a;
    uv_tcp_t *tcp;
    int len = (int)sizeof(peer);

    if (status != 0 || r->closing)
        return;
    tcp = raft_malloc(sizeof(*tcp));
    if (tcp == NULL)
        return;
    uv_tcp_init(r->loop, tcp);
    if (uv_accept(listener, (uv_stream_t *)tcp) != 0) {
        uv_close((uv_handle_t *)tcp, free_handle);
        return;
    }
    uv_tcp_nodelay(tcp, 1);
    memset(&peer, 0, sizeof(peer));
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&peer, &len) != 0 ||
        peer.sin_family != AF_INET)
        memset(&peer, 0, sizeof(peer)); /* matches no raft address */
    if (tls.server_ctx == NULL) {
        conn_start(r, (uv_stream_t *)tcp, &peer);
        return;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        uv_close((uv_handle_t *)tcp, free_handle);
        return;
    }
    a->rpc = r;
    a->peer = peer;
    r->busy++;
    if (kr_tls_stream_start(r->loop, tcp, tls.server_ctx, true,
                            *tls.name ? tls.name : NULL, tls_accepted,
                            a) != 0) {
        free(a);
        r->busy--;
        rpc_maybe_free(r);
    }
}

int kr_rpc_listen(struct kr_rpc **out, uv_loop_t *loop, const char *host,
                  int port, const struct kr_rpc_handlers *handlers,
                  char *errmsg)
{
    struct kr_rpc *r = calloc(1, sizeof(*r));
    struct sockaddr_in addr;
    int rv;

    if (r == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    if (uv_ip4_addr(host, port, &addr) != 0) {
        free(r);
        return kr_errf(errmsg, KR_EINVAL, "invalid rpc address %s:%d", host,
                       port);
    }
    r->loop = loop;
    r->h = *handlers;
    uv_tcp_init(loop, &r->listener);
    r->listener.data = r;
    r->busy = 1; /* the listener handle */
    rv = uv_tcp_bind(&r->listener, (struct sockaddr *)&addr, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&r->listener, 128, on_accept);
    if (rv != 0) {
        kr_errf(errmsg, KR_EIO, "cannot listen on %s:%d (rpc): %s", host, port,
                uv_strerror(rv));
        kr_rpc_close(r);
        return KR_EIO;
    }
    *out = r;
    return 0;
}

void kr_rpc_set_handlers(struct kr_rpc *r,
                         const struct kr_rpc_handlers *handlers)
{
    r->h = *handlers;
}

static void listener_closed(uv_handle_t *h)
{
    struct kr_rpc *r = h->data;

    r->busy--;
    rpc_maybe_free(r);
}

void kr_rpc_close(struct kr_rpc *r)
{
    if (r == NULL || r->closing)
        return;
    r->closing = true;
    while (r->conns != NULL)
        conn_end(r->conns);
    uv_close((uv_handle_t *)&r->listener, listener_closed);
}

/* ---- dialing ---- */

struct kr_rpc_dial {
    uv_loop_t *loop;
    uv_tcp_t *tcp;       /* until connected (then given to TLS, if on) */
    uv_stream_t *stream; /* what the preamble goes over */
    bool tls_busy;       /* a TLS handshake holds a reference */
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    uint8_t *preamble;
    size_t preamble_len;
    uint8_t ack;
    int status; /* the outcome, once decided */
    bool finished;
    bool handed_on;
    int pending; /* handles still to close */
    kr_rpc_dial_cb cb;
    void *arg;
    struct kr_rpc_dial **out;
};

static void dial_handle_closed(uv_handle_t *h)
{
    struct kr_rpc_dial *d = h->data;

    if (h != (uv_handle_t *)&d->timer)
        raft_free(h);
    if (--d->pending > 0)
        return;
    free(d->preamble);
    free(d);
}

/* Decides the outcome once: hands the stream on or closes it. */
static void dial_finish(struct kr_rpc_dial *d, int status)
{
    kr_rpc_dial_cb cb = d->cb;
    void *arg = d->arg;
    uv_stream_t *stream = NULL;

    if (d->finished)
        return;
    d->finished = true;
    if (d->out != NULL)
        *d->out = NULL;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, dial_handle_closed);
    if (status == 0) {
        uv_read_stop(d->stream);
        stream = d->stream;
        stream->data = NULL;
        d->handed_on = true;
        d->pending--; /* the stream is no longer ours to close */
    } else if (d->stream != NULL) {
        uv_close((uv_handle_t *)d->stream, dial_handle_closed);
    }
    /* With a TLS handshake in flight, its callback closes what it made. */
    cb(arg, status, stream);
}

static void dial_timeout(uv_timer_t *t)
{
    dial_finish(t->data, KR_EIO);
}

static void dial_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct kr_rpc_dial *d = h->data;

    (void)suggested;
    buf->base = (char *)&d->ack;
    buf->len = 1;
}

static void dial_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct kr_rpc_dial *d = s->data;

    (void)buf;
    if (n == 0)
        return;
    dial_finish(d, n == 1 && d->ack == 0 ? 0 : KR_EIO);
}

static void dial_written(uv_write_t *w, int status)
{
    struct kr_rpc_dial *d = w->data;

    if (d->finished)
        return;
    if (status != 0) {
        dial_finish(d, KR_EIO);
        return;
    }
    uv_read_start(d->stream, dial_alloc, dial_read);
}

static void send_preamble(struct kr_rpc_dial *d)
{
    uv_buf_t buf = uv_buf_init((char *)d->preamble, (unsigned)d->preamble_len);

    d->stream->data = d;
    d->write.data = d;
    if (uv_write(&d->write, d->stream, &buf, 1, dial_written) != 0)
        dial_finish(d, KR_EIO);
}

static void dial_tls_done(void *arg, int status, uv_stream_t *plain)
{
    struct kr_rpc_dial *d = arg;

    d->tls_busy = false;
    if (status != 0) {
        d->pending--; /* the TLS reference; the socket is closed */
        if (d->finished && d->pending == 0) {
            free(d->preamble);
            free(d);
            return;
        }
        dial_finish(d, KR_EIO);
        return;
    }
    d->stream = plain; /* takes over the TLS reference */
    plain->data = d;
    if (d->finished) {
        uv_close((uv_handle_t *)plain, dial_handle_closed);
        return;
    }
    send_preamble(d);
}

static void dial_connected(uv_connect_t *req, int status)
{
    struct kr_rpc_dial *d = req->data;

    if (d->finished)
        return;
    if (status != 0) {
        dial_finish(d, KR_EIO);
        return;
    }
    uv_tcp_nodelay(d->tcp, 1);
    if (tls.client_ctx == NULL) {
        d->stream = (uv_stream_t *)d->tcp;
        send_preamble(d);
        return;
    }
    /* The socket now belongs to the TLS stream, which holds our reference
     * until its callback. */
    d->tls_busy = true;
    d->stream = NULL;
    if (kr_tls_stream_start(d->loop, d->tcp, tls.client_ctx, false,
                            *tls.name ? tls.name : NULL, dial_tls_done,
                            d) != 0) {
        d->tls_busy = false;
        d->pending--;
        dial_finish(d, KR_EIO);
    }
}

int kr_rpc_dial(uv_loop_t *loop, const char *address, uint8_t kind,
                const void *header, size_t header_len, kr_rpc_dial_cb cb,
                void *arg, struct kr_rpc_dial **out)
{
    struct kr_rpc_dial *d;
    struct sockaddr_in sa;
    int rv;

    if (out != NULL)
        *out = NULL;
    if (kr_rpc_parse_address(address, &sa) != 0)
        return KR_EINVAL;
    if (header_len > KR_RPC_MAX_HEADER)
        return KR_ETOOBIG;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return KR_ENOMEM;
    d->preamble_len = PREFIX_LEN + header_len;
    d->preamble = malloc(d->preamble_len);
    d->tcp = raft_malloc(sizeof(*d->tcp));
    if (d->preamble == NULL || d->tcp == NULL) {
        free(d->preamble);
        raft_free(d->tcp);
        free(d);
        return KR_ENOMEM;
    }
    memcpy(d->preamble, MAGIC, 4);
    d->preamble[4] = VERSION;
    d->preamble[5] = kind;
    put_u32(d->preamble + 6, (uint32_t)header_len);
    if (header_len > 0)
        memcpy(d->preamble + PREFIX_LEN, header, header_len);
    d->loop = loop;
    d->cb = cb;
    d->arg = arg;
    d->out = out;
    d->pending = 2; /* socket and timer */
    uv_tcp_init(loop, d->tcp);
    d->tcp->data = d;
    d->stream = (uv_stream_t *)d->tcp; /* closed by dial_finish on failure */
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, dial_timeout, DIAL_TIMEOUT_MS, 0);
    d->connect.data = d;
    rv = source.sin_family == AF_INET
             ? uv_tcp_bind(d->tcp, (const struct sockaddr *)&source, 0)
             : 0;
    if (rv == 0)
        rv = uv_tcp_connect(&d->connect, d->tcp, (struct sockaddr *)&sa,
                            dial_connected);
    if (out != NULL)
        *out = d;
    /* A synchronous failure is reported from the loop, like every other
     * outcome: the timer fires at once. */
    if (rv != 0)
        uv_timer_start(&d->timer, dial_timeout, 0, 0);
    return 0;
}

void kr_rpc_dial_cancel(struct kr_rpc_dial *d)
{
    if (d != NULL)
        dial_finish(d, KR_ESHUTDOWN);
}

/* ---- calls ---- */

struct call {
    uv_loop_t *loop;
    struct kr_rpc_dial *dial; /* while dialing */
    uv_stream_t *stream;
    uv_timer_t timer;
    uint8_t lenbuf[4];
    size_t got;
    uint8_t *resp;
    uint32_t resp_len;
    bool have_len;
    bool done;
    int closing; /* handles still to close */
    kr_rpc_call_cb cb;
    void *arg;
};

static void call_handle_closed(uv_handle_t *h)
{
    struct call *c = h->data;

    if (h != (uv_handle_t *)&c->timer)
        raft_free(h);
    if (--c->closing > 0)
        return;
    free(c->resp);
    free(c);
}

static void call_end(struct call *c, int status)
{
    if (c->done)
        return;
    c->done = true;
    /* Still dialing (a timeout): the dial reports back at once and sees
     * done, so it never touches c after this. */
    kr_rpc_dial_cancel(c->dial);
    uv_timer_stop(&c->timer);
    c->cb(c->arg, status, status == 0 ? c->resp : NULL,
          status == 0 ? c->resp_len : 0);
    c->closing = 1;
    if (c->stream != NULL) {
        c->closing++;
        c->stream->data = c;
        uv_close((uv_handle_t *)c->stream, call_handle_closed);
    }
    uv_close((uv_handle_t *)&c->timer, call_handle_closed);
}

static void call_timeout(uv_timer_t *t)
{
    call_end(t->data, KR_EIO);
}

static void call_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct call *c = h->data;

    (void)suggested;
    if (!c->have_len) {
        buf->base = (char *)c->lenbuf + c->got;
        buf->len = 4 - c->got;
    } else {
        buf->base = (char *)c->resp + c->got;
        buf->len = c->resp_len - c->got;
    }
}

static void call_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct call *c = s->data;

    (void)buf;
    if (n < 0) {
        call_end(c, KR_EIO);
        return;
    }
    c->got += (size_t)n;
    if (!c->have_len && c->got == 4) {
        c->resp_len = get_u32(c->lenbuf);
        if (c->resp_len > KR_RPC_MAX_HEADER) {
            call_end(c, KR_ECORRUPT);
            return;
        }
        c->resp = malloc(c->resp_len ? c->resp_len : 1);
        if (c->resp == NULL) {
            call_end(c, KR_ENOMEM);
            return;
        }
        c->have_len = true;
        c->got = 0;
    }
    if (c->have_len && c->got == c->resp_len) {
        uv_read_stop(s);
        call_end(c, 0);
    }
}

static void call_dialed(void *arg, int status, uv_stream_t *stream)
{
    struct call *c = arg;

    if (c->done) { /* timed out while dialing */
        if (stream != NULL)
            uv_close((uv_handle_t *)stream, free_handle);
        return;
    }
    if (status != 0) {
        call_end(c, status);
        return;
    }
    c->stream = stream;
    stream->data = c;
    uv_read_start(stream, call_alloc, call_read);
}

int kr_rpc_call(uv_loop_t *loop, const char *address, const void *req,
                size_t len, uint64_t timeout_ms, kr_rpc_call_cb cb, void *arg)
{
    struct call *c = calloc(1, sizeof(*c));
    int rv;

    if (c == NULL)
        return KR_ENOMEM;
    c->loop = loop;
    c->cb = cb;
    c->arg = arg;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    rv = kr_rpc_dial(loop, address, KR_RPC_CALL, req, len, call_dialed, c,
                     &c->dial);
    if (rv != 0) {
        c->done = true;
        c->closing = 1;
        uv_close((uv_handle_t *)&c->timer, call_handle_closed);
        return rv;
    }
    uv_timer_start(&c->timer, call_timeout, timeout_ms, 0);
    return 0;
}
