/*
 * Shared by the HTTP resource files: the request context, reply helpers,
 * query parsing and the deferred-reply link that survives a client that
 * disconnects while its request waits on raft or the keyring.
 */
#ifndef KR_HTTP_INTERNAL_H
#define KR_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>
#include <jansson.h>

#include "http/http.h"

/* How long a request waits for a key that is still being decrypted. */
#define KR_HTTP_KEY_WAIT_MS 1000
/* How long a write waits for the first active key of a new keyring. */
#define KR_HTTP_ACTIVE_WAIT_MS 5000

struct pooled;
struct barrier_wait;
struct sniff;
struct upload;
struct id_record;

struct kr_http {
    struct kr_http_deps deps;
    /* forward.c: connections to the leader, and consistent-read
     * barriers; live_ops counts forwards and barriers in flight, which
     * must end before the server is freed. */
    struct pooled *pool;
    unsigned n_pooled;
    unsigned live_ops;
    struct barrier_wait *barrier_waiting; /* need a barrier not started */
    struct barrier_wait *barrier_serving; /* wait on the one in flight */
    bool barrier_in_flight;
    /* identity.c: identity records proposed and not applied yet (each
     * counts in live_ops), with the signings waiting on them. */
    struct id_record *id_records;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx; /* the HTTP port: TLS when configured */
    h2o_accept_ctx_t tunnel_ctx; /* streams forwarded over the RPC port */
    uv_tcp_t listener;
    uv_timer_t drain; /* polls for the last connection during close */
    bool closing;
    /* server.c: connections whose first request line is not read yet */
    struct sniff *sniffs;
    /* upload.c: snapshot restores streaming their bodies */
    struct upload *uploads;
    h2o_timeout_t upload_idle; /* a stalled upload is closed */
    h2o_timeout_t upload_poll; /* waiting for a leader */
    unsigned receiving;        /* uploads whose body is arriving */
    /* snapshot.c: saves running, and the list of them */
    unsigned saves;
    struct save *save_list;
};

struct kr_http_call;
typedef int (*kr_http_handler)(struct kr_http_call *c);

/* Where a route is served: here, or by the leader. */
enum kr_http_mode {
    KR_HTTP_LOCAL, /* always here (status, health) */
    KR_HTTP_READ,  /* the leader, after a barrier; here with ?stale */
    KR_HTTP_WRITE, /* the leader */
};

/* A handler's view of one request. */
struct kr_http_call {
    kr_http_handler handler;
    enum kr_http_mode mode;
    struct kr_http *srv;
    h2o_req_t *req;
    const char *path; /* decoded path (no query), NUL-terminated, in pool */
    const char *tail; /* part of path after the route's prefix */
};

/* Deferred replies.  A handler that answers later allocates a struct
 * kr_http_pending (any larger struct beginning with it) with
 * kr_http_pending_new; when the client goes away p->req becomes NULL.
 * kr_http_pending_done detaches and frees it. */
struct kr_http_pending {
    h2o_req_t *req;
    struct kr_http *srv;
    struct pending_link *link;
};

void *kr_http_pending_new(struct kr_http_call *c, size_t size);
void kr_http_pending_done(struct kr_http_pending *p);

/* Query string access.  Returns a pool-allocated decoded value, "" for a
 * bare key (?full), or NULL when absent. */
const char *kr_http_query(h2o_req_t *req, const char *key);

/* Replies.  The body is copied.  index > 0 adds X-Nomad-Index. */
void kr_http_reply_json(h2o_req_t *req, int status, json_t *body,
                        uint64_t index);
void kr_http_reply_error(h2o_req_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kr_http_reply_empty(h2o_req_t *req, int status, uint64_t index);
/* Sends a prepared body (copied) with the given content type. */
void kr_http_send(h2o_req_t *req, int status, const char *ctype,
                  const char *body, size_t len);
/* As kr_http_send for a body holding plaintext secrets: it is copied into
 * a request-pool block that is wiped when h2o releases the request, and
 * sent from there without further copies. */
void kr_http_send_secret(h2o_req_t *req, int status, const char *ctype,
                         const uint8_t *body, size_t len);
/* Wipes the request body in h2o's buffer once it has been parsed. */
void kr_http_wipe_body(h2o_req_t *req);
/* Adds the read headers X-Nomad-KnownLeader and X-Nomad-LastContact. */
void kr_http_add_query_meta(struct kr_http *srv, h2o_req_t *req);
void kr_http_add_header(h2o_req_t *req, const char *name, const char *value);

/* Parses the request body as a JSON object; on failure replies 400 with
 * the position and returns NULL. */
json_t *kr_http_body_json(h2o_req_t *req);

/* Parses an unsigned decimal; false on junk or overflow. */
bool kr_http_parse_u64(const char *s, uint64_t *out);
/* Go strconv.ParseBool. */
bool kr_http_parse_bool(const char *s, bool *out);

/* forward.c */
/* Sends the request to the leader and relays its answer. */
int kr_http_forward(struct kr_http_call *c);
/* Serves on this server, which is the leader: reads after a barrier. */
int kr_http_serve_on_leader(struct kr_http_call *c);
/* Queues c behind the next raft barrier, then dispatches it. */
int kr_http_after_barrier(struct kr_http_call *c);
void kr_http_pool_close(struct kr_http *srv);
/* Runs the route's handler. */
int kr_http_dispatch(struct kr_http_call *c);

/* Resource handlers. */
int kr_http_var(struct kr_http_call *c);
int kr_http_vars_list(struct kr_http_call *c);
int kr_http_keyring_keys(struct kr_http_call *c);
int kr_http_keyring_rotate(struct kr_http_call *c);
int kr_http_keyring_delete(struct kr_http_call *c);
int kr_http_keyring_rekey(struct kr_http_call *c);
int kr_http_status_leader(struct kr_http_call *c);
int kr_http_raft_configuration(struct kr_http_call *c);
int kr_http_raft_remove_peer(struct kr_http_call *c);
int kr_http_agent_health(struct kr_http_call *c);
int kr_http_identity_sign(struct kr_http_call *c);
int kr_http_identity_assertion(struct kr_http_call *c);
int kr_http_identity_verify(struct kr_http_call *c);
int kr_http_jwks(struct kr_http_call *c);
int kr_http_oidc_discovery(struct kr_http_call *c);

/* snapshot.c */
int kr_http_snapshot(struct kr_http_call *c);
/* An unnamed temporary file in data_dir (mode 0600); 0 or KR_EIO. */
int kr_http_snap_tmpfile(struct kr_http *srv, int *fd, char *errmsg);

/* upload.c: a connection whose first request line is line[0..len) (no
 * CRLF needed) belongs to the streaming snapshot upload. */
bool kr_http_is_upload(const char *line, size_t len);
/* Serves the restore on sock (its input starts with the request). */
void kr_http_upload_start(struct kr_http *srv, h2o_socket_t *sock);
/* Closing: uploads still receiving go; forwards in flight get 503. */
void kr_http_upload_close_all(struct kr_http *srv);
/* snapshot.c: the server is closing: saves not yet answered get 503,
 * downloads in progress are cut off (the client sees a short body). */
void kr_http_save_close_all(struct kr_http *srv);

/* Root key metadata as Nomad's RootKeyMeta JSON. */
json_t *kr_http_key_meta_json(const struct kr_root_key *k);

#endif
