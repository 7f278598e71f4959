/*
 * TLS for RPC-port connections.  The network socket speaks TLS; the
 * caller gets the other end of a socketpair, a plain uv_pipe_t, and
 * everything written to or read from it is encrypted on the way.  raft
 * and h2o therefore run over TLS without knowing it.
 *
 * Loop thread only.
 */
#ifndef KR_CLUSTER_TLS_STREAM_H
#define KR_CLUSTER_TLS_STREAM_H

#include <stdbool.h>

#include <uv.h>

struct ssl_ctx_st;

/* status 0: plain is the cleartext side (raft_malloc'd uv_pipe_t, owned
 * by the callee).  Otherwise plain is NULL and the connection is closed. */
typedef void (*kr_tls_stream_cb)(void *arg, int status, uv_stream_t *plain);

/*
 * Takes ownership of tcp (connected, raft_malloc'd) and runs the TLS
 * handshake as server or client with ctx (borrowed; must outlive the
 * connection).  expect_name: see kr_tls_conn_new.  cb runs exactly once,
 * later, unless this returns an error (then tcp has been closed).
 */
int kr_tls_stream_start(uv_loop_t *loop, uv_tcp_t *tcp, struct ssl_ctx_st *ctx,
                        bool server, const char *expect_name,
                        kr_tls_stream_cb cb, void *arg);

#endif
