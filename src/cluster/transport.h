/*
 * raft's transport over the RPC port (rpc.h): outgoing raft connections
 * are KR_RPC_RAFT dials carrying our raft id and address; incoming ones
 * arrive through kr_transport_accept, called by the RPC listener.  This is
 * the one place that will gain TLS, without raft noticing.
 *
 * Loop thread only.
 */
#ifndef KR_CLUSTER_TRANSPORT_H
#define KR_CLUSTER_TRANSPORT_H

#include <stdint.h>

#include <raft/uv.h>
#include <uv.h>

/* Sets up t (a struct raft_uv_transport owned by the caller) to dial over
 * the RPC port.  Returns 0 or KR_ENOMEM. */
int kr_transport_init(struct raft_uv_transport *t, uv_loop_t *loop);

/* Releases what kr_transport_init allocated, after raft closed t. */
void kr_transport_release(struct raft_uv_transport *t);

/* Hands an accepted raft stream to raft, if raft is listening; otherwise
 * closes it. */
void kr_transport_accept(struct raft_uv_transport *t, uint64_t id,
                         const char *address, uv_stream_t *stream);

#endif
