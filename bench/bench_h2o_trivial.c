/*
 * The HTTP baseline: h2o on libuv, built exactly like keyraft's server,
 * answering every request with a fixed 2-byte body.  `make bench` measures
 * it with the same load generator and settings as keyraft's GET, so the
 * ratio shows what keyraft's own work costs per request.
 *
 * Usage: bench_h2o_trivial PORT   (runs until killed)
 */
#include <stdio.h>
#include <stdlib.h>

#include <h2o.h>

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    req->res.status = 200;
    req->res.reason = "OK";
    /* As keyraft does: without it h2o 2.2.5 answers chunked, which costs
     * latency and would make the baseline unfairly slow. */
    req->res.content_length = 2;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_send_inline(req, H2O_STRLIT("{}"));
    return 0;
}

static void on_accept(uv_stream_t *listener, int status)
{
    uv_tcp_t *conn;

    if (status != 0)
        return;
    conn = h2o_mem_alloc(sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_accept(&accept_ctx,
               h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free));
}

int main(int argc, char **argv)
{
    uv_loop_t loop;
    uv_tcp_t listener;
    struct sockaddr_in addr;
    h2o_hostconf_t *host;
    h2o_handler_t *handler;

    if (argc != 2)
        return 2;
    uv_loop_init(&loop);
    h2o_config_init(&config);
    host = h2o_config_register_host(
        &config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    handler = h2o_create_handler(h2o_config_register_path(host, "/", 0),
                                 sizeof(*handler));
    handler->on_req = on_req;
    h2o_context_init(&ctx, &loop, &config);
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = config.hosts;
    uv_tcp_init(&loop, &listener);
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    if (uv_tcp_bind(&listener, (struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&listener, 512, on_accept) != 0) {
        fprintf(stderr, "cannot listen on %s\n", argv[1]);
        return 1;
    }
    return uv_run(&loop, UV_RUN_DEFAULT);
}
