/*
 * See raftcmd.h.  Output follows nomad's operator_raft_list.go and
 * operator_raft_remove.go: list-peers prints one columnized table sorted
 * by Node; remove-peer takes exactly one of -peer-id or -peer-address and
 * confirms with `Removed peer with id "..."` (or address).  Unlike nomad,
 * a missing or doubled peer flag is a usage error (exit 2), as every
 * other keyraft command treats bad flags.  Server errors are printed as
 * the server wrote them, like every other API command here.
 */
#include "cli/raftcmd.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/cmd.h"
#include "common/err.h"

#define MSG_NO_ARGS "this command takes no arguments"
#define PEERS_PATH "/v1/operator/raft/peer"
#define CONFIG_PATH "/v1/operator/raft/configuration"

/* Orders servers by Node, then ID, so equal nodes print stably. */
static int cmp_servers(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a;
    const json_t *y = *(json_t *const *)b;
    int c = strcmp(kr_cli_json_str(x, "Node"), kr_cli_json_str(y, "Node"));

    if (c != 0)
        return c;
    return strcmp(kr_cli_json_str(x, "ID"), kr_cli_json_str(y, "ID"));
}

static const char *bool_word(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key)) ? "true" : "false";
}

int kr_cli_raft_print_peers(const json_t *conf, FILE *fp)
{
    const json_t *servers = json_object_get(conf, "Servers");
    struct kr_cli_table *t = NULL;
    json_t **sorted = NULL;
    size_t n = json_array_size(servers);
    int rv = 0;

    if (!json_is_array(servers))
        return KR_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!json_is_object(json_array_get(servers, i)))
            return KR_EINVAL;
    }
    if (n > 0) {
        sorted = calloc(n, sizeof(*sorted));
        if (sorted == NULL)
            return KR_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = json_array_get(servers, i);
    if (n > 1)
        qsort(sorted, n, sizeof(*sorted), cmp_servers);
    rv = kr_cli_table_new(&t, 6);
    if (rv == 0)
        rv = kr_cli_table_add(t, (const char *const[]){"Node", "ID", "Address",
                                                       "State", "Voter",
                                                       "RaftProtocol"});
    for (size_t i = 0; rv == 0 && i < n; i++) {
        const json_t *s = sorted[i];
        bool leader = json_is_true(json_object_get(s, "Leader"));

        rv = kr_cli_table_add(
            t,
            (const char *const[]){
                kr_cli_json_str(s, "Node"), kr_cli_json_str(s, "ID"),
                kr_cli_json_str(s, "Address"), leader ? "leader" : "follower",
                bool_word(s, "Voter"), kr_cli_json_str(s, "RaftProtocol")});
    }
    if (rv == 0)
        kr_cli_table_print(t, fp, "  ", "");
    kr_cli_table_free(t);
    free(sorted);
    return rv;
}

static const char LIST_ABOUT[] =
    "Displays the current Raft peer configuration.\n"
    "\n"
    "If ACLs are enabled, this command requires a management token.";

int kr_cli_raft_list_peers_main(int argc, char **argv)
{
    struct kr_cli_session s;
    json_t *conf = NULL;
    bool stale = false;
    int argi = 0, rv, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"stale", KR_CLI_FLAG_BOOL, &stale, NULL, NULL,
         "The -stale argument defaults to \"false\" which means the leader\n"
         "provides the result.  If the cluster is in an outage state\n"
         "without a leader, you may need to set -stale to \"true\" to get\n"
         "the configuration from a non-leader server.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "operator raft list-peers", "[options]", LIST_ABOUT,
        "List Peers Options",       flags,       s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 0, 0, MSG_NO_ARGS, &argi, &rc))
        goto out;
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    /* The server serves any request naming `stale` from its own state. */
    if (stale)
        kr_cli_query_add(&s.query, "stale", "");
    if (kr_cli_session_call(&s, "GET", CONFIG_PATH, NULL, 0) != 0)
        goto out;
    conf = kr_cli_resp_json(&s.resp, false);
    if (conf == NULL)
        goto out;
    rv = kr_cli_raft_print_peers(conf, stdout);
    if (rv == KR_EINVAL) {
        kr_cli_error("unexpected reply from server: no Servers array");
        goto out;
    }
    if (rv != 0) {
        kr_cli_error("%s", kr_strerror(rv));
        goto out;
    }
    rc = KR_CLI_EXIT_OK;
out:
    json_decref(conf);
    kr_cli_session_free(&s);
    return rc;
}

static const char REMOVE_ABOUT[] =
    "Removes the keyraft server with the given -peer-address or -peer-id\n"
    "from the Raft configuration.\n"
    "\n"
    "There are rare cases where a peer may be left behind in the Raft\n"
    "quorum even though the server is no longer present.  This command\n"
    "removes the failed server so that it no longer affects the Raft\n"
    "quorum.  Take the server out of service first: a removed server that\n"
    "is still running keeps its old view of the cluster.\n"
    "\n"
    "If ACLs are enabled, this command requires a management token.";

int kr_cli_raft_remove_peer_main(int argc, char **argv)
{
    struct kr_cli_session s;
    const char *peer_address = NULL, *peer_id = NULL;
    bool by_address, by_id;
    int argi = 0, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"peer-address", KR_CLI_FLAG_STRING, &peer_address, NULL, "<host:port>",
         "Remove the keyraft server with the given raft (RPC) address from\n"
         "the Raft configuration.",
         NULL},
        {"peer-id", KR_CLI_FLAG_STRING, &peer_id, NULL, "<id>",
         "Remove the keyraft server with the given ID from the Raft\n"
         "configuration.  IDs are shown by \"operator raft list-peers\".",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "operator raft remove-peer",
        "[options] (-peer-address <host:port> | -peer-id <id>)",
        REMOVE_ABOUT,
        "Remove Peer Options",
        flags,
        s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 0, 0, MSG_NO_ARGS, &argi, &rc))
        goto out;
    /* Empty values count as missing, as in nomad. */
    by_address = peer_address != NULL && peer_address[0] != '\0';
    by_id = peer_id != NULL && peer_id[0] != '\0';
    if (!by_address && !by_id) {
        rc = kr_cli_usage_error(
            &cmd, "an address or id is required for the peer to remove");
        goto out;
    }
    if (by_address && by_id) {
        rc = kr_cli_usage_error(&cmd, "cannot give both an address and id");
        goto out;
    }
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    if (by_address)
        kr_cli_query_add(&s.query, "address", peer_address);
    else
        kr_cli_query_add(&s.query, "id", peer_id);
    if (kr_cli_session_call(&s, "DELETE", PEERS_PATH, NULL, 0) != 0)
        goto out;
    if (by_address)
        printf("Removed peer with address \"%s\"\n", peer_address);
    else
        printf("Removed peer with id \"%s\"\n", peer_id);
    rc = KR_CLI_EXIT_OK;
out:
    kr_cli_session_free(&s);
    return rc;
}
