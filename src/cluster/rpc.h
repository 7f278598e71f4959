/*
 * The RPC port: one TCP listener that carries raft traffic, HTTP requests
 * forwarded to the leader, and small cluster-membership RPCs.
 *
 * Every connection opens with a preamble from the dialer:
 *     "KRPC" | version (1) | kind (1) | u32 header length | header
 * and the listener answers one status byte (0 = accepted).  Only then does
 * the dialer send anything else, so the listener never reads past the
 * preamble and can hand the socket, untouched, to raft or to h2o.
 *
 * KR_RPC_RAFT: header = u64 raft id | u32 len | address.  The address must
 *   name the IP the connection comes from, else it is refused.  The
 *   stream then belongs to raft.
 * KR_RPC_HTTP: no header.  The stream then speaks HTTP/1.1 to this
 *   server's h2o, exactly like the HTTP port.
 * KR_RPC_CALL: header = request; the listener answers the status byte, a
 *   u32 length and the response, then closes.
 *
 * Socket handles are allocated with raft_malloc, since raft frees the
 * streams it is given with raft_free.  Loop thread only.
 */
#ifndef KR_CLUSTER_RPC_H
#define KR_CLUSTER_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/buf.h"

enum kr_rpc_kind {
    KR_RPC_RAFT = 1,
    KR_RPC_HTTP = 2,
    KR_RPC_CALL = 3,
};

#define KR_RPC_MAX_HEADER (64 * 1024)

struct kr_rpc;

struct kr_rpc_handlers {
    /* A raft stream from peer id at address (borrowed); ownership of the
     * stream passes to the callee.  NULL: raft connections are refused. */
    void (*on_raft)(void *arg, uint64_t id, const char *address,
                    uv_stream_t *stream);
    /* A tunnelled HTTP connection; ownership passes to the callee. */
    void (*on_http)(void *arg, uv_stream_t *stream);
    /* A call: fill resp (appended).  Returns 0 or a kr_err. */
    int (*on_call)(void *arg, const uint8_t *req, size_t len,
                   struct kr_buf *resp);
    void *arg;
};

/* Listens on host:port.  handlers is copied; its arg is borrowed. */
int kr_rpc_listen(struct kr_rpc **out, uv_loop_t *loop, const char *host,
                  int port, const struct kr_rpc_handlers *handlers,
                  char *errmsg);

/* Changes the handlers (raft starts after the listener). */
void kr_rpc_set_handlers(struct kr_rpc *r,
                         const struct kr_rpc_handlers *handlers);

/* Stops listening and drops connections still in their preamble; frees
 * itself when its handles have closed. */
void kr_rpc_close(struct kr_rpc *r);

/* ---- dialing ---- */

struct kr_rpc_dial;

/* status 0: stream is connected and past the preamble, owned by the
 * callee (allocated with raft_malloc).  Otherwise stream is NULL and
 * status is a kr_err (KR_EIO unreachable/refused, KR_ESHUTDOWN
 * cancelled). */
typedef void (*kr_rpc_dial_cb)(void *arg, int status, uv_stream_t *stream);

/* Dials address ("host:port") and sends the preamble for kind with the
 * given header (copied).  *out (may be NULL) can cancel it; cb runs
 * exactly once in every case, later. */
int kr_rpc_dial(uv_loop_t *loop, const char *address, uint8_t kind,
                const void *header, size_t header_len, kr_rpc_dial_cb cb,
                void *arg, struct kr_rpc_dial **out);
void kr_rpc_dial_cancel(struct kr_rpc_dial *d);

/* status 0: resp/len is the callee's answer (borrowed for the callback). */
typedef void (*kr_rpc_call_cb)(void *arg, int status, const uint8_t *resp,
                               size_t len);

/* A KR_RPC_CALL round trip with a deadline; cb runs exactly once, later. */
int kr_rpc_call(uv_loop_t *loop, const char *address, const void *req,
                size_t len, uint64_t timeout_ms, kr_rpc_call_cb cb, void *arg);

struct ssl_ctx_st;

/* Puts every RPC connection of this process under TLS: accepted ones with
 * server_ctx, dialled ones with client_ctx (both borrowed, must outlive
 * all connections).  name, when not NULL or "", is the DNS name both
 * ends' certificates must carry (verify_server_hostname).  Call once,
 * before listening or dialling. */
void kr_rpc_set_tls(struct ssl_ctx_st *server_ctx,
                    struct ssl_ctx_st *client_ctx, const char *name);

/* Makes every dial of this process leave from host (an IPv4 address;
 * "0.0.0.0" or NULL: wherever the kernel routes it).  A RAFT preamble's
 * address must name the IP its connection comes from, so a server whose
 * raft address is bind_addr:port dials from bind_addr.  Call once,
 * before dialling. */
void kr_rpc_set_source(const char *host);

/* Splits "host:port" into a sockaddr; returns 0 or KR_EINVAL. */
int kr_rpc_parse_address(const char *address, struct sockaddr_in *out);

#endif
