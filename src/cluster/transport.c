/*
 * See transport.h.  A connect request stays registered until its dial
 * reports back, so close() can cancel what is in flight and call raft's
 * close callback only when no connect callback can fire any more.
 */
#include "cluster/transport.h"

#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "cluster/rpc.h"
#include "common/buf.h"
#include "common/err.h"

struct pending {
    struct transport *tr;
    struct raft_uv_connect *req;
    struct kr_rpc_dial *dial;
    struct pending *next;
};

struct transport {
    uv_loop_t *loop;
    raft_id id;
    char *address;
    raft_uv_accept_cb accept_cb;
    struct pending *pending;
    bool closing;
    raft_uv_transport_close_cb close_cb;
    struct raft_uv_transport *t;
};

static void free_stream(uv_handle_t *h)
{
    raft_free(h);
}

static int tr_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct transport *tr = t->impl;

    tr->id = id;
    tr->address = strdup(address);
    return tr->address != NULL ? 0 : RAFT_NOMEM;
}

static int tr_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct transport *tr = t->impl;

    /* The RPC listener already runs; from now on it hands raft streams
     * on instead of refusing them. */
    tr->accept_cb = cb;
    return 0;
}

void kr_transport_accept(struct raft_uv_transport *t, uint64_t id,
                         const char *address, uv_stream_t *stream)
{
    struct transport *tr = t->impl;

    if (tr->accept_cb == NULL || tr->closing) {
        uv_close((uv_handle_t *)stream, free_stream);
        return;
    }
    tr->accept_cb(t, id, address, stream);
}

static void maybe_closed(struct transport *tr)
{
    if (tr->closing && tr->pending == NULL && tr->close_cb != NULL) {
        raft_uv_transport_close_cb cb = tr->close_cb;
        tr->close_cb = NULL;
        cb(tr->t);
    }
}

static void dialed(void *arg, int status, uv_stream_t *stream)
{
    struct pending *p = arg;
    struct transport *tr = p->tr;
    struct pending **pp = &tr->pending;

    while (*pp != NULL && *pp != p)
        pp = &(*pp)->next;
    if (*pp == p)
        *pp = p->next;
    if (status == 0 && tr->closing) {
        uv_close((uv_handle_t *)stream, free_stream);
        stream = NULL;
        status = KR_ESHUTDOWN;
    }
    p->req->cb(p->req, stream,
               status == 0              ? 0
               : status == KR_ESHUTDOWN ? RAFT_CANCELED
                                        : RAFT_NOCONNECTION);
    free(p);
    maybe_closed(tr);
}

static int tr_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
                      raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct transport *tr = t->impl;
    struct pending *p;
    struct kr_buf hdr;
    int rv;

    (void)id;
    /* raft reads req->cb itself later; it expects us to set it. */
    req->cb = cb;
    if (tr->closing)
        return RAFT_CANCELED;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return RAFT_NOMEM;
    kr_buf_init(&hdr);
    kr_buf_u64(&hdr, tr->id);
    kr_buf_str(&hdr, tr->address);
    p->tr = tr;
    p->req = req;
    rv = hdr.oom ? KR_ENOMEM
                 : kr_rpc_dial(tr->loop, address, KR_RPC_RAFT, hdr.data,
                               hdr.len, dialed, p, &p->dial);
    kr_buf_free(&hdr);
    if (rv != 0) {
        free(p);
        return rv == KR_ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
    }
    p->next = tr->pending;
    tr->pending = p;
    return 0;
}

static void tr_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct transport *tr = t->impl;
    struct pending *p, *next;

    tr->closing = true;
    tr->accept_cb = NULL;
    tr->close_cb = cb;
    /* Each cancel reports back at once, unlinking itself. */
    for (p = tr->pending; p != NULL; p = next) {
        next = p->next;
        kr_rpc_dial_cancel(p->dial);
    }
    maybe_closed(tr);
}

int kr_transport_init(struct raft_uv_transport *t, uv_loop_t *loop)
{
    struct transport *tr = calloc(1, sizeof(*tr));

    if (tr == NULL)
        return KR_ENOMEM;
    tr->loop = loop;
    tr->t = t;
    memset(t, 0, sizeof(*t));
    t->impl = tr;
    t->init = tr_init;
    t->listen = tr_listen;
    t->connect = tr_connect;
    t->close = tr_close;
    return 0;
}

void kr_transport_release(struct raft_uv_transport *t)
{
    struct transport *tr = t->impl;

    if (tr == NULL)
        return;
    free(tr->address);
    free(tr);
    t->impl = NULL;
}
