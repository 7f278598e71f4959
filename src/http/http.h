/*
 * The HTTP API server: h2o on the agent's libuv loop, a static route table
 * and one file per resource.  The wire format follows Nomad's API (paths,
 * PascalCase JSON, plain-text error bodies, X-Nomad-* headers) so Nomad
 * API clients work unchanged.
 *
 * Loop thread only.
 */
#ifndef KR_HTTP_HTTP_H
#define KR_HTTP_HTTP_H

#include <uv.h>

#include "cluster/raft.h"
#include "config/config.h"
#include "keyring/keyring.h"
#include "state/state.h"

/* What the handlers need; every pointer is borrowed and must outlive the
 * server. */
struct kr_http_deps {
    uv_loop_t *loop;
    const struct kr_config *cfg;
    struct kr_state *state;
    struct kr_keyring *keyring;
    struct kr_raft *raft;
    /* HTTPS when set (borrowed; must outlive the server); HTTP/2 is
     * offered over it only when http2 is true. */
    struct ssl_ctx_st *ssl_ctx;
    bool http2;
    /* What keeps the rekey job from finishing on this server ("" when
     * nothing does); NULL when there is no rekey job. */
    const char *(*rekey_error)(void *arg);
    void *rekey_error_arg;
    /* Snapshot saves and uploads keep temporary files here. */
    const char *data_dir;
    /* Restores a snapshot (the leader's side). */
    struct kr_restore *restore;
};

struct kr_http;

/* Binds host:port and starts serving.  Returns 0 or KR_EIO with the reason
 * in errmsg.  The listening socket closes with kr_http_close. */
int kr_http_start(struct kr_http **out, const struct kr_http_deps *deps,
                  const char *host, int port, char *errmsg);

/* Serves an already-connected stream (a request forwarded over the RPC
 * port).  Takes ownership of stream, which must come from raft_malloc. */
void kr_http_accept(struct kr_http *h, uv_stream_t *stream);

/* Stops accepting; in-flight requests finish or are dropped. */
void kr_http_close(struct kr_http *h);

#endif
