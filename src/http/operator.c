/*
 * Raft operator endpoints, in Nomad's shapes:
 *   GET    /v1/operator/raft/configuration
 *          {"Index":n,"Servers":[{"ID","Node","Address","Leader","Voter",
 *                                 "RaftProtocol"}]}
 *   DELETE /v1/operator/raft/peer?id=<id> or ?address=<host:port>
 * Both are served by the leader (forwarded there like other writes and
 * consistent reads).  IDs are raft's numeric server IDs, as strings.
 */
#include "http/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define MAX_SERVERS 64

int kr_http_raft_configuration(struct kr_http_call *c)
{
    struct kr_raft_server servers[MAX_SERVERS];
    size_t n = kr_raft_servers(c->srv->deps.raft, servers, MAX_SERVERS);
    json_t *j = json_object(), *arr = json_array();
    char id[32];

    for (size_t i = 0; i < n && i < MAX_SERVERS; i++) {
        json_t *s = json_object();
        snprintf(id, sizeof(id), "%" PRIu64, servers[i].id);
        json_object_set_new(s, "ID", json_string(id));
        json_object_set_new(s, "Node", json_string(servers[i].address));
        json_object_set_new(s, "Address", json_string(servers[i].address));
        json_object_set_new(s, "Leader", json_boolean(servers[i].leader));
        json_object_set_new(s, "Voter", json_boolean(servers[i].voter));
        json_object_set_new(s, "RaftProtocol", json_string("3"));
        json_array_append_new(arr, s);
    }
    json_object_set_new(
        j, "Index",
        json_integer((json_int_t)kr_raft_last_applied(c->srv->deps.raft)));
    json_object_set_new(j, "Servers", arr);
    kr_http_reply_json(c->req, 200, j, 0);
    json_decref(j);
    return 0;
}

static void removed(void *arg, int status)
{
    struct kr_http_pending *p = arg;

    if (p->req != NULL) {
        if (status == 0)
            kr_http_reply_empty(p->req, 200, 0);
        else
            kr_http_reply_error(p->req, kr_err_http_status(status),
                                "removing peer: %s", kr_strerror(status));
    }
    kr_http_pending_done(p);
}

int kr_http_raft_remove_peer(struct kr_http_call *c)
{
    struct kr_raft_server servers[MAX_SERVERS];
    size_t n = kr_raft_servers(c->srv->deps.raft, servers, MAX_SERVERS);
    const char *id_s = kr_http_query(c->req, "id");
    const char *addr = kr_http_query(c->req, "address");
    struct kr_http_pending *p;
    uint64_t id = 0;
    bool found = false;
    int rv;

    if ((id_s == NULL) == (addr == NULL)) {
        kr_http_reply_error(c->req, 400,
                            "exactly one of id or address is required");
        return 0;
    }
    if (id_s != NULL && !kr_http_parse_u64(id_s, &id)) {
        kr_http_reply_error(c->req, 400, "invalid peer id \"%.32s\"", id_s);
        return 0;
    }
    for (size_t i = 0; i < n && i < MAX_SERVERS && !found; i++) {
        if ((id_s != NULL && servers[i].id == id) ||
            (addr != NULL && strcmp(servers[i].address, addr) == 0)) {
            id = servers[i].id;
            found = true;
        }
    }
    if (!found) {
        kr_http_reply_error(c->req, 404,
                            "peer %s not found in the raft "
                            "configuration",
                            id_s != NULL ? id_s : addr);
        return 0;
    }
    p = kr_http_pending_new(c, sizeof(*p));
    if (p == NULL) {
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    rv = kr_raft_remove(c->srv->deps.raft, id, removed, p);
    if (rv != 0) {
        kr_http_reply_error(c->req, kr_err_http_status(rv), "removing peer: %s",
                            rv == KR_ECONFLICT
                                ? "another membership change is in progress"
                                : kr_strerror(rv));
        kr_http_pending_done(p);
    }
    return 0;
}
