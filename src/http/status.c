/*
 * GET /v1/status/leader and GET /v1/agent/health.  Health adds a keyring
 * section (a keyraft extension): whether every key in the replicated state
 * is decrypted on this server, and which are not; and the active key's
 * age, with a warning (not a failure) once it is older than
 * root_key_rotation_threshold, which means automatic rotation is not
 * happening.  Keys restored from a redacted snapshot are listed apart
 * (redacted_keys): they are never decrypted, so they are not pending,
 * but an active one means writes fail until a rotation.  While a snapshot
 * restore is being staged, "restore" says how far this server has got.
 */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>

#include "common/time.h"

int kr_http_status_leader(struct kr_http_call *c)
{
    json_t *j = json_string(kr_raft_leader_address(c->srv->deps.raft));

    kr_http_reply_json(c->req, 200, j, 0);
    json_decref(j);
    return 0;
}

/* The active key's age and, when it is overdue, a warning. */
static void key_age(json_t *kr, const struct kr_root_key *active,
                    int64_t threshold)
{
    int64_t age = active ? (kr_time_now_ns() - active->create_time) : 0;
    json_t *warnings = json_array();
    char msg[256];

    if (age < 0)
        age = 0;
    if (active != NULL && age > threshold) {
        snprintf(msg, sizeof(msg),
                 "active key %s is %lld s old, older than "
                 "root_key_rotation_threshold (%lld s): automatic rotation "
                 "is not happening",
                 active->key_id, (long long)(age / KR_NS_PER_SEC),
                 (long long)(threshold / KR_NS_PER_SEC));
        json_array_append_new(warnings, json_string(msg));
    }
    json_object_set_new(kr, "active_key_id",
                        json_string(active ? active->key_id : ""));
    json_object_set_new(kr, "active_key_age_seconds",
                        json_integer(age / KR_NS_PER_SEC));
    json_object_set_new(kr, "rotation_threshold_seconds",
                        json_integer(threshold / KR_NS_PER_SEC));
    json_object_set_new(kr, "warnings", warnings);
}

/* A restore being staged on this server, as this server has applied it:
 * "restore": {"id", "received_bytes", "total_bytes"}; absent otherwise. */
static void restore_progress(json_t *j, const struct kr_state *state)
{
    uint64_t id, received, total;
    char hex[17];
    json_t *r;

    if (!kr_state_stage_info(state, &id, &received, &total))
        return;
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)id);
    r = json_object();
    json_object_set_new(r, "id", json_string(hex));
    json_object_set_new(r, "received_bytes",
                        json_integer((json_int_t)received));
    json_object_set_new(r, "total_bytes", json_integer((json_int_t)total));
    json_object_set_new(j, "restore", r);
}

/* keyraft's raft section: where this server's state machine and its
 * raft snapshots stand (not part of the check). */
static void raft_progress(json_t *j, struct kr_raft *raft)
{
    struct kr_raft_snapshot_stats st;
    json_t *r = json_object();

    kr_raft_snapshot_stats(raft, &st);
    json_object_set_new(r, "applied_index",
                        json_integer((json_int_t)kr_raft_last_applied(raft)));
    json_object_set_new(r, "snapshot_running", json_boolean(st.running));
    json_object_set_new(r, "snapshots_taken",
                        json_integer((json_int_t)st.taken));
    json_object_set_new(r, "last_snapshot_index",
                        json_integer((json_int_t)st.last_index));
    json_object_set_new(r, "last_snapshot_bytes",
                        json_integer((json_int_t)st.last_bytes));
    json_object_set_new(r, "last_snapshot_loop_ms",
                        json_integer((json_int_t)st.last_loop_ms));
    json_object_set_new(r, "last_snapshot_write_ms",
                        json_integer((json_int_t)st.last_write_ms));
    json_object_set_new(r, "last_snapshot_ms",
                        json_integer((json_int_t)st.last_ms));
    json_object_set_new(r, "freeing_bytes",
                        json_integer((json_int_t)st.freeing_bytes));
    json_object_set_new(j, "raft", r);
}

int kr_http_agent_health(struct kr_http_call *c)
{
    struct kr_http *srv = c->srv;
    char ids[4096];
    size_t pending = kr_keyring_pending(srv->deps.keyring, ids, sizeof(ids));
    bool leader_known = *kr_raft_leader_address(srv->deps.raft) != '\0';
    const struct kr_root_key *active = kr_state_key_active(srv->deps.state);
    bool keyring_ok = pending == 0 && active != NULL &&
                      kr_keyring_has(srv->deps.keyring, active->key_id);
    bool ok = leader_known && keyring_ok;
    json_t *j = json_object(), *server = json_object(), *kr = json_object();
    json_t *list = json_array(), *redacted = json_array();
    char *save = NULL, *tok, msg[256];
    const char *why;

    json_object_set_new(server, "ok", json_boolean(leader_known));
    json_object_set_new(server, "message",
                        json_string(leader_known ? "ok" : "No cluster leader"));
    for (tok = strtok_r(ids, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save))
        json_array_append_new(list, json_string(tok));
    for (size_t i = 0; i < kr_state_key_count(srv->deps.state); i++) {
        const struct kr_root_key *k = kr_state_key_at(srv->deps.state, i);
        if (k->redacted)
            json_array_append_new(redacted, json_string(k->key_id));
    }
    snprintf(msg, sizeof(msg),
             "active key %s is redacted: rotate the keyring (keyraft "
             "operator root keyring rotate -now)",
             active != NULL ? active->key_id : "");
    why = keyring_ok                           ? "ok"
          : pending > 0                        ? "waiting for keys to decrypt"
          : active != NULL && active->redacted ? msg
                                               : "no active key yet";
    json_object_set_new(kr, "ok", json_boolean(keyring_ok));
    json_object_set_new(kr, "message", json_string(why));
    json_object_set_new(kr, "pending_keys", list);
    json_object_set_new(kr, "redacted_keys", redacted);
    key_age(kr, active, srv->deps.cfg->server.root_key_rotation_threshold);
    json_object_set_new(j, "server", server);
    json_object_set_new(j, "keyring", kr);
    restore_progress(j, srv->deps.state);
    raft_progress(j, srv->deps.raft);
    kr_http_reply_json(c->req, ok ? 200 : 500, j, 0);
    json_decref(j);
    return 0;
}
