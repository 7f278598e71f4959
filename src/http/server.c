/*
 * See http.h.  Routing is one static table of {methods, path, match kind,
 * handler}; a path that matches but not its method gets 405, a path that
 * matches nothing gets 404.  Request bodies are capped by h2o
 * (max_request_entity_size) before a handler runs, which answers 413.
 *
 * Before h2o sees an HTTP/1.1 connection (after the TLS handshake, when
 * the port has TLS), the server reads its first request line: a
 * connection that opens with a snapshot restore goes to upload.c, which
 * streams the body to disk; every other connection goes to h2o.  That
 * keeps the 1 MiB cap on every route but the one that needs hundreds of
 * MiB.  HTTP/2 (ALPN "h2") goes to h2o at once.
 */
#include "http/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/http1.h>
#include <h2o/http2.h>
#include <raft.h>

#include "common/hex.h"

#include "common/err.h"
#include "common/log.h"

#define MAX_BODY (1024 * 1024)
/* A snapshot upload that sends nothing for this long is closed. */
#define UPLOAD_IDLE_MS 30000
#define UPLOAD_POLL_MS 50

enum { M_GET = 1, M_PUT = 2, M_POST = 4, M_DELETE = 8 };

/* mode: where the route is served (internal.h); for a GET on a WRITE
 * route, READ. */
static const struct route {
    unsigned methods;
    const char *path;
    bool prefix;
    kr_http_handler handler;
    enum kr_http_mode mode;
} routes[] = {
    {M_GET | M_PUT | M_POST | M_DELETE, "/v1/var/", true, kr_http_var,
     KR_HTTP_WRITE},
    {M_GET, "/v1/vars", false, kr_http_vars_list, KR_HTTP_READ},
    {M_GET, "/v1/operator/keyring/keys", false, kr_http_keyring_keys,
     KR_HTTP_READ},
    {M_PUT | M_POST, "/v1/operator/keyring/rotate", false,
     kr_http_keyring_rotate, KR_HTTP_WRITE},
    {M_DELETE, "/v1/operator/keyring/key/", true, kr_http_keyring_delete,
     KR_HTTP_WRITE},
    /* Ours: the full rekey's progress. */
    {M_GET, "/v1/operator/keyring/rekey", false, kr_http_keyring_rekey,
     KR_HTTP_READ},
    /* Nomad answers 405 for any other keyring subpath. */
    {0, "/v1/operator/keyring/", true, NULL, KR_HTTP_LOCAL},
    /* GET saves (the leader after a barrier, or here with ?stale); PUT
     * restores.  Bodies over 1 MiB come through upload.c. */
    {M_GET | M_PUT | M_POST, "/v1/operator/snapshot", false, kr_http_snapshot,
     KR_HTTP_WRITE},
    {M_GET, "/v1/operator/raft/configuration", false,
     kr_http_raft_configuration, KR_HTTP_READ},
    {M_DELETE, "/v1/operator/raft/peer", false, kr_http_raft_remove_peer,
     KR_HTTP_WRITE},
    {M_GET, "/v1/status/leader", false, kr_http_status_leader, KR_HTTP_LOCAL},
    {M_GET, "/v1/agent/health", false, kr_http_agent_health, KR_HTTP_LOCAL},
    /* Ours: workload identities.  Signing is the leader's (it records
     * the key's use in raft first); verification needs only this
     * server's keyring. */
    {M_PUT | M_POST, "/v1/identity/sign", false, kr_http_identity_sign,
     KR_HTTP_WRITE},
    {M_PUT | M_POST, "/v1/identity/client-assertion", false,
     kr_http_identity_assertion, KR_HTTP_WRITE},
    {M_PUT | M_POST, "/v1/identity/verify", false, kr_http_identity_verify,
     KR_HTTP_LOCAL},
    /* Public, like Nomad's: every server answers from its own keyring. */
    {M_GET, "/.well-known/jwks.json", false, kr_http_jwks, KR_HTTP_LOCAL},
    {M_GET, "/.well-known/openid-configuration", false, kr_http_oidc_discovery,
     KR_HTTP_LOCAL},
};

struct pending_link {
    struct kr_http_pending *p;
};

static void link_dispose(void *obj)
{
    struct pending_link *l = obj;

    if (l->p != NULL) {
        l->p->req = NULL;
        l->p->link = NULL;
    }
}

void *kr_http_pending_new(struct kr_http_call *c, size_t size)
{
    struct kr_http_pending *p = calloc(1, size);

    if (p == NULL)
        return NULL;
    p->req = c->req;
    p->srv = c->srv;
    p->link =
        h2o_mem_alloc_shared(&c->req->pool, sizeof(*p->link), link_dispose);
    p->link->p = p;
    return p;
}

void kr_http_pending_done(struct kr_http_pending *p)
{
    if (p->link != NULL)
        p->link->p = NULL;
    free(p);
}

void kr_http_add_header(h2o_req_t *req, const char *name, const char *value)
{
    /* h2o keeps both pointers until the response is sent: copy both. */
    h2o_iovec_t n = h2o_strdup(&req->pool, name, strlen(name));
    h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));

    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, NULL,
                          v.base, v.len);
}

static void add_index(h2o_req_t *req, uint64_t index)
{
    char buf[32];

    if (index == 0)
        return;
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)index);
    kr_http_add_header(req, "X-Nomad-Index", buf);
}

void kr_http_add_query_meta(struct kr_http *srv, h2o_req_t *req)
{
    char ms[32];

    kr_http_add_header(
        req, "X-Nomad-KnownLeader",
        *kr_raft_leader_address(srv->deps.raft) != '\0' ? "true" : "false");
    snprintf(ms, sizeof(ms), "%llu",
             (unsigned long long)kr_raft_last_contact_ms(srv->deps.raft));
    kr_http_add_header(req, "X-Nomad-LastContact", ms);
}

static const char *reason(int status)
{
    static const struct {
        int status;
        const char *text;
    } reasons[] = {
        {200, "OK"},
        {204, "No Content"},
        {400, "Bad Request"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {409, "Conflict"},
        {413, "Request Entity Too Large"},
        {422, "Unprocessable Entity"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
    };

    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return "";
}

void kr_http_send(h2o_req_t *req, int status, const char *ctype,
                  const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
}

struct secret_body {
    size_t len;
    uint8_t data[];
};

static void secret_body_dispose(void *p)
{
    struct secret_body *b = p;

    explicit_bzero(b->data, b->len);
}

void kr_http_send_secret(h2o_req_t *req, int status, const char *ctype,
                         const uint8_t *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};
    struct secret_body *b;
    h2o_iovec_t iov;

    b = h2o_mem_alloc_shared(&req->pool, sizeof(*b) + len, secret_body_dispose);
    b->len = len;
    memcpy(b->data, body, len);
    req->res.status = status;
    req->res.reason = reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   ctype, strlen(ctype));
    iov = h2o_iovec_init(b->data, len);
    h2o_start_response(req, &generator);
    h2o_send(req, &iov, 1, H2O_SEND_STATE_FINAL);
}

void kr_http_wipe_body(h2o_req_t *req)
{
    if (req->entity.base != NULL && req->entity.len > 0)
        explicit_bzero(req->entity.base, req->entity.len);
}

void kr_http_reply_json(h2o_req_t *req, int status, json_t *body,
                        uint64_t index)
{
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    char *text;

    if (kr_http_query(req, "pretty") != NULL)
        flags = JSON_INDENT(4) | JSON_ENCODE_ANY;
    text = json_dumps(body, flags);
    if (text == NULL) {
        kr_http_reply_error(req, 500, "out of memory");
        return;
    }
    add_index(req, index);
    kr_http_send(req, status, "application/json", text, strlen(text));
    free(text);
}

void kr_http_reply_error(h2o_req_t *req, int status, const char *fmt, ...)
{
    char msg[KR_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kr_http_send(req, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

void kr_http_reply_empty(h2o_req_t *req, int status, uint64_t index)
{
    add_index(req, index);
    req->res.status = status;
    req->res.reason = reason(status);
    req->res.content_length = 0;
    h2o_send_inline(req, "", 0);
}

/* Percent-decodes src[0..n) into a pool string; '+' becomes ' ' when form
 * is set (query strings).  NULL on a malformed escape or a NUL byte. */
static char *decode(h2o_mem_pool_t *pool, const char *src, size_t n, bool form)
{
    char *out = h2o_mem_alloc_pool(pool, n + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return NULL;
            hi = kr_hex_digit(src[i + 1]);
            lo = kr_hex_digit(src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return NULL;
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && form) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    return out;
}

const char *kr_http_query(h2o_req_t *req, const char *key)
{
    const char *q, *end;
    size_t klen = strlen(key);

    if (req->query_at == SIZE_MAX)
        return NULL;
    q = req->path.base + req->query_at + 1;
    end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *kend = eq != NULL ? eq : stop;

        if ((size_t)(kend - q) == klen && memcmp(q, key, klen) == 0) {
            if (eq == NULL)
                return "";
            return decode(&req->pool, eq + 1, (size_t)(stop - eq - 1), true);
        }
        q = stop + 1;
    }
    return NULL;
}

bool kr_http_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

bool kr_http_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};

    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

json_t *kr_http_body_json(h2o_req_t *req)
{
    json_error_t err;
    json_t *j;

    if (req->entity.base == NULL || req->entity.len == 0) {
        kr_http_reply_error(req, 400, "request body is empty");
        return NULL;
    }
    j = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES,
                   &err);
    if (j == NULL) {
        /* jansson quotes the input near the error, which may be part of a
         * secret value: keep only its description and the position. */
        char *near = strstr(err.text, " near '");
        if (near != NULL)
            *near = '\0';
        kr_http_reply_error(req, 400,
                            "failed to parse JSON: %s at line %d column %d "
                            "(byte %d)",
                            err.text, err.line, err.column, err.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        kr_http_reply_error(req, 400, "request body must be a JSON object");
        return NULL;
    }
    return j;
}

static unsigned method_bit(h2o_iovec_t m)
{
    if (h2o_memis(m.base, m.len, H2O_STRLIT("GET")))
        return M_GET;
    if (h2o_memis(m.base, m.len, H2O_STRLIT("PUT")))
        return M_PUT;
    if (h2o_memis(m.base, m.len, H2O_STRLIT("POST")))
        return M_POST;
    if (h2o_memis(m.base, m.len, H2O_STRLIT("DELETE")))
        return M_DELETE;
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct kr_http *srv = *(struct kr_http **)(self + 1);
    struct kr_http_call c;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    unsigned m = method_bit(req->method);
    const struct route *match = NULL;
    bool path_known = false;
    char *path;

    if (srv->closing) {
        kr_http_reply_error(req, 503, "server is shutting down");
        return 0;
    }
    path = decode(&req->pool, req->path.base, plen, false);
    if (path == NULL) {
        kr_http_reply_error(req, 400, "malformed URL escape in path");
        return 0;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        size_t n = strlen(r->path);
        bool hit = r->prefix ? strncmp(path, r->path, n) == 0
                             : strcmp(path, r->path) == 0;
        if (!hit)
            continue;
        path_known = true;
        if (r->methods & m) {
            match = r;
            break;
        }
    }
    if (match == NULL) {
        if (path_known)
            kr_http_reply_error(req, 405, "Invalid method");
        else
            kr_http_reply_error(req, 404, "Invalid URL path");
        return 0;
    }
    c.srv = srv;
    c.req = req;
    c.path = path;
    c.tail = path + strlen(match->path);
    c.handler = match->handler;
    c.mode =
        match->mode == KR_HTTP_WRITE && m == M_GET ? KR_HTTP_READ : match->mode;
    if (c.mode == KR_HTTP_LOCAL ||
        (c.mode == KR_HTTP_READ && kr_http_query(req, "stale") != NULL))
        return kr_http_dispatch(&c);
    if (kr_raft_is_leader(srv->deps.raft))
        return kr_http_serve_on_leader(&c);
    /* Forwarded already: the leadership moved meanwhile; a second hop
     * could loop. */
    if (h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-keyraft-forwarded"),
                               -1) >= 0) {
        kr_http_reply_error(req, 503, "No cluster leader");
        return 0;
    }
    return kr_http_forward(&c);
}

int kr_http_dispatch(struct kr_http_call *c)
{
    return c->handler(c);
}

int kr_http_serve_on_leader(struct kr_http_call *c)
{
    /* A lone voter cannot have been deposed without knowing it; with
     * peers, a barrier proves leadership and that every committed write
     * is applied here before the read. */
    if (c->mode == KR_HTTP_READ && kr_raft_voters(c->srv->deps.raft) > 1)
        return kr_http_after_barrier(c);
    return kr_http_dispatch(c);
}

static void free_raft_handle(uv_handle_t *h)
{
    raft_free(h);
}

/* ---- the first request line of a connection ---- */

/* The longest request line looked at; a longer one goes to h2o. */
#define SNIFF_MAX 8192

struct sniff {
    struct kr_http *srv;
    h2o_socket_t *sock;
    struct timeval connected_at;
    h2o_timeout_entry_t timeout; /* handshake, then the request line */
    bool tunnel;                 /* forwarded over the RPC port */
    struct sniff *prev, *next;
};

static void sniff_free(struct sniff *s)
{
    h2o_timeout_unlink(&s->timeout);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        s->srv->sniffs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    free(s);
}

static void sniff_close(struct sniff *s)
{
    h2o_socket_t *sock = s->sock;

    sniff_free(s);
    h2o_socket_read_stop(sock);
    h2o_socket_close(sock);
}

static void sniff_timeout(h2o_timeout_entry_t *e)
{
    sniff_close((struct sniff *)((char *)e - offsetof(struct sniff, timeout)));
}

/* Hands the connection over: to upload.c, or to h2o as HTTP/1.1. */
static void sniff_done(struct sniff *s, bool upload)
{
    struct kr_http *srv = s->srv;
    h2o_socket_t *sock = s->sock;
    h2o_accept_ctx_t *ctx = s->tunnel ? &srv->tunnel_ctx : &srv->accept_ctx;
    struct timeval at = s->connected_at;

    sniff_free(s);
    h2o_socket_read_stop(sock);
    sock->data = NULL;
    if (upload)
        kr_http_upload_start(srv, sock);
    else
        /* h2o parses what is already in sock->input first. */
        h2o_http1_accept(ctx, sock, at);
}

static void sniff_read(h2o_socket_t *sock, const char *err)
{
    struct sniff *s = sock->data;
    const char *in = sock->input->bytes;
    size_t n = sock->input->size;
    const char *nl;

    if (err != NULL) {
        sniff_close(s);
        return;
    }
    nl = memchr(in, '\n', n < SNIFF_MAX ? n : SNIFF_MAX);
    if (nl == NULL && n < SNIFF_MAX)
        return;
    sniff_done(s, nl != NULL && kr_http_is_upload(in, (size_t)(nl - in)));
}

static void sniff_start(struct sniff *s)
{
    h2o_context_t *ctx = &s->srv->ctx;

    h2o_timeout_unlink(&s->timeout);
    h2o_timeout_link(ctx->loop, &ctx->http1.req_timeout, &s->timeout);
    s->sock->data = s;
    h2o_socket_read_start(s->sock, sniff_read);
    if (s->sock->input->size > 0)
        sniff_read(s->sock, NULL);
}

static void handshake_done(h2o_socket_t *sock, const char *err)
{
    struct sniff *s = sock->data;
    h2o_iovec_t proto;

    if (err != NULL) {
        sniff_close(s);
        return;
    }
    /* As h2o_accept does: HTTP/2 when ALPN chose it. */
    proto = h2o_socket_ssl_get_selected_protocol(sock);
    for (const h2o_iovec_t *id = h2o_http2_alpn_protocols; id->len != 0; id++) {
        if (proto.len == id->len &&
            memcmp(proto.base, id->base, id->len) == 0) {
            struct kr_http *srv = s->srv;
            struct timeval at = s->connected_at;
            sniff_free(s);
            sock->data = NULL;
            h2o_http2_accept(&srv->accept_ctx, sock, at);
            return;
        }
    }
    sniff_start(s);
}

/* A new connection: TLS first when the port has it, then the first
 * request line. */
static void sniff_accept(struct kr_http *srv, h2o_socket_t *sock, bool tunnel)
{
    struct sniff *s = calloc(1, sizeof(*s));
    h2o_context_t *ctx = &srv->ctx;

    if (s == NULL) {
        h2o_socket_close(sock);
        return;
    }
    s->srv = srv;
    s->sock = sock;
    s->tunnel = tunnel;
    s->connected_at = *h2o_get_timestamp(ctx, NULL, NULL);
    s->timeout.cb = sniff_timeout;
    s->next = srv->sniffs;
    if (srv->sniffs != NULL)
        srv->sniffs->prev = s;
    srv->sniffs = s;
    sock->data = s;
    if (!tunnel && srv->accept_ctx.ssl_ctx != NULL) {
        h2o_timeout_link(ctx->loop, &ctx->handshake_timeout, &s->timeout);
        h2o_socket_ssl_handshake(sock, srv->accept_ctx.ssl_ctx, NULL,
                                 handshake_done);
        return;
    }
    sniff_start(s);
}

void kr_http_accept(struct kr_http *h, uv_stream_t *stream)
{
    if (h->closing) {
        uv_close((uv_handle_t *)stream, free_raft_handle);
        return;
    }
    sniff_accept(h, h2o_uv_socket_create(stream, free_raft_handle), true);
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct kr_http *srv = listener->data;
    uv_tcp_t *conn;
    h2o_socket_t *sock;

    if (status != 0)
        return;
    conn = h2o_mem_alloc(sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    sniff_accept(srv, sock, false);
}

int kr_http_start(struct kr_http **out, const struct kr_http_deps *deps,
                  const char *host, int port, char *errmsg)
{
    struct kr_http *srv = calloc(1, sizeof(*srv));
    h2o_hostconf_t *hostconf;
    h2o_pathconf_t *pathconf;
    h2o_handler_t *handler;
    struct sockaddr_storage addr;
    int rv;

    if (srv == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    srv->deps = *deps;
    h2o_config_init(&srv->config);
    srv->config.max_request_entity_size = MAX_BODY;
    /* h2o 2.2.5 has no fix for HTTP/2 Rapid Reset (CVE-2023-44487): no
     * cleartext upgrade to HTTP/2. */
    srv->config.http1.upgrade_to_http2 = 0;
    srv->config.server_name = h2o_iovec_init(H2O_STRLIT("keyraft"));
    hostconf = h2o_config_register_host(
        &srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    pathconf = h2o_config_register_path(hostconf, "/", 0);
    handler = h2o_create_handler(pathconf, sizeof(*handler) + sizeof(srv));
    *(struct kr_http **)(handler + 1) = srv;
    handler->on_req = on_req;
    h2o_context_init(&srv->ctx, deps->loop, &srv->config);
    h2o_timeout_init(deps->loop, &srv->upload_idle, UPLOAD_IDLE_MS);
    h2o_timeout_init(deps->loop, &srv->upload_poll, UPLOAD_POLL_MS);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->config.hosts;
    srv->tunnel_ctx = srv->accept_ctx;
    if (deps->ssl_ctx != NULL) {
        srv->accept_ctx.ssl_ctx = deps->ssl_ctx;
        /* h2o 2.2.5 lacks the HTTP/2 Rapid Reset fix: HTTP/2 only when
         * the operator asks for it. */
        if (deps->http2)
            h2o_ssl_register_alpn_protocols(deps->ssl_ctx,
                                            h2o_http2_alpn_protocols);
    }

    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        rv = kr_errf(errmsg, KR_EINVAL, "invalid HTTP bind address %s", host);
        goto fail;
    }
    uv_tcp_init(deps->loop, &srv->listener);
    srv->listener.data = srv;
    uv_timer_init(deps->loop, &srv->drain);
    srv->drain.data = srv;
    rv = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&srv->listener, 512, on_accept);
    if (rv != 0) {
        kr_errf(errmsg, KR_EIO, "cannot listen on %s:%d: %s", host, port,
                uv_strerror(rv));
        kr_http_close(srv);
        return KR_EIO;
    }
    KR_INFO("http", "listening on %s://%s:%d",
            deps->ssl_ctx != NULL ? "https" : "http", host, port);
    *out = srv;
    return 0;
fail:
    h2o_timeout_dispose(deps->loop, &srv->upload_idle);
    h2o_timeout_dispose(deps->loop, &srv->upload_poll);
    h2o_context_dispose(&srv->ctx);
    h2o_config_dispose(&srv->config);
    free(srv);
    return rv;
}

/*
 * Closing: the listener goes first, then idle keep-alive connections
 * close and busy ones close after their response.  The context can only
 * be disposed once no connection uses it, so a timer polls for that.
 */
static void drain_closed(uv_handle_t *h)
{
    struct kr_http *srv = h->data;

    /* The context's dispose runs the loop once, which closes these. */
    h2o_timeout_dispose(srv->deps.loop, &srv->upload_idle);
    h2o_timeout_dispose(srv->deps.loop, &srv->upload_poll);
    h2o_context_dispose(&srv->ctx);
    h2o_config_dispose(&srv->config);
    free(srv);
}

/* h2o_context_dispose asserts that no timeout still holds an entry. */
static bool ctx_idle(h2o_context_t *c)
{
    h2o_timeout_t *const timeouts[] = {
        &c->zero_timeout,
        &c->one_sec_timeout,
        &c->hundred_ms_timeout,
        &c->handshake_timeout,
        &c->http1.req_timeout,
        &c->http2.idle_timeout,
        &c->http2.graceful_shutdown_timeout,
    };

    if (!h2o_linklist_is_empty(&c->http1._conns) ||
        !h2o_linklist_is_empty(&c->http2._conns))
        return false;
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
        if (!h2o_linklist_is_empty(&timeouts[i]->_entries))
            return false;
    return true;
}

static void drain_poll(uv_timer_t *t)
{
    struct kr_http *srv = t->data;

    if (!ctx_idle(&srv->ctx) || srv->live_ops > 0 || srv->sniffs != NULL)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, drain_closed);
}

static void listener_closed(uv_handle_t *h)
{
    struct kr_http *srv = h->data;
    h2o_timeout_t *idle = &srv->ctx.http1.req_timeout;

    h2o_context_request_shutdown(&srv->ctx);
    /* h2o 2.2.5 leaves idle HTTP/1 keep-alive connections open until
     * their request timeout (10 s), and a follower's pooled forwarding
     * connection is one.  An HTTP/1 connection waits on this timeout only
     * while it waits for a request, never while one is being served; with
     * the timeout at zero, idle connections close now and busy ones right
     * after their response. */
    idle->timeout = 0;
    h2o_timeout_run(srv->ctx.loop, idle, h2o_now(srv->ctx.loop));
    /* HTTP/2's shutdown arms a one-second timer for its second GOAWAY even
     * with no HTTP/2 connection; without one there is nothing to wait
     * for (h2o_context_dispose needs the timer unlinked). */
    if (h2o_linklist_is_empty(&srv->ctx.http2._conns))
        h2o_timeout_unlink(&srv->ctx.http2._graceful_shutdown_timeout);
    uv_timer_start(&srv->drain, drain_poll, 0, 10);
}

void kr_http_close(struct kr_http *h)
{
    if (h == NULL || h->closing)
        return;
    h->closing = true;
    kr_http_pool_close(h);
    while (h->sniffs != NULL)
        sniff_close(h->sniffs);
    kr_http_upload_close_all(h);
    kr_http_save_close_all(h);
    uv_close((uv_handle_t *)&h->listener, listener_closed);
}
