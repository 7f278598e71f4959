/*
 * Keyring endpoints: GET /v1/operator/keyring/keys, PUT
 * /v1/operator/keyring/rotate and DELETE /v1/operator/keyring/key/:id.
 *
 * Rotation generates the key off the loop (RSA generation takes tens of
 * milliseconds), wraps it with every active provider and proposes it in
 * one entry: a wrap failure writes nothing.  The state machine applies the
 * 7.1 transitions atomically with the insert.
 */
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/time.h"
#include "identity/claims.h"
#include "state/codec.h"

json_t *kr_http_key_meta_json(const struct kr_root_key *k)
{
    json_t *j = json_object();

    json_object_set_new(j, "KeyID", json_string(k->key_id));
    json_object_set_new(j, "Algorithm", json_string(k->algorithm));
    json_object_set_new(j, "CreateTime", json_integer(k->create_time));
    json_object_set_new(j, "CreateIndex",
                        json_integer((json_int_t)k->create_index));
    json_object_set_new(j, "ModifyIndex",
                        json_integer((json_int_t)k->modify_index));
    json_object_set_new(j, "State", json_string(kr_key_state_name(k->state)));
    json_object_set_new(j, "PublishTime", json_integer(k->publish_time));
    /* Ours, only when true: Nomad's fields stay exactly Nomad's. */
    if (k->redacted)
        json_object_set_new(j, "Redacted", json_true());
    return j;
}

int kr_http_keyring_keys(struct kr_http_call *c)
{
    const struct kr_state *st = c->srv->deps.state;
    json_t *arr = json_array();
    uint64_t idx = kr_state_keys_index(st);

    for (size_t i = 0; i < kr_state_key_count(st); i++)
        json_array_append_new(arr,
                              kr_http_key_meta_json(kr_state_key_at(st, i)));
    kr_http_add_query_meta(c->srv, c->req);
    kr_http_reply_json(c->req, 200, arr, idx ? idx : 1);
    json_decref(arr);
    return 0;
}

/*
 * GET /v1/operator/keyring/rekey (ours): each rekeying key's progress from
 * the replicated state (Total when it began, Remaining now), the job's
 * checkpoint, and what keeps the job from finishing, as the leader sees
 * it (the route forwards to the leader unless ?stale).
 */
int kr_http_keyring_rekey(struct kr_http_call *c)
{
    const struct kr_state *st = c->srv->deps.state;
    json_t *out = json_object(), *keys = json_array(), *cp = json_null();
    const char *ns, *path, *err = "";
    uint64_t idx = kr_state_keys_index(st);

    for (size_t i = 0; i < kr_state_key_count(st); i++) {
        const struct kr_root_key *k = kr_state_key_at(st, i);
        uint64_t total =
            k->rekey_total > k->n_vars ? k->rekey_total : k->n_vars;
        if (k->state != KR_KEY_REKEYING)
            continue;
        json_array_append_new(
            keys,
            json_pack("{s:s, s:s, s:I, s:I}", "KeyID", k->key_id, "State",
                      kr_key_state_name(k->state), "Total", (json_int_t)total,
                      "Remaining", (json_int_t)k->n_vars));
    }
    kr_state_rekey_cursor(st, &ns, &path);
    if (ns != NULL) {
        json_decref(cp);
        cp = json_pack("{s:s, s:s}", "Namespace", ns, "Path", path);
    }
    if (c->srv->deps.rekey_error != NULL && json_array_size(keys) > 0)
        err = c->srv->deps.rekey_error(c->srv->deps.rekey_error_arg);
    json_object_set_new(out, "Running", json_boolean(json_array_size(keys)));
    json_object_set_new(out, "Keys", keys);
    json_object_set_new(out, "Checkpoint", cp);
    json_object_set_new(out, "Error", json_string(err));
    kr_http_add_query_meta(c->srv, c->req);
    kr_http_reply_json(c->req, 200, out, idx ? idx : 1);
    json_decref(out);
    return 0;
}

struct rotate_op {
    struct kr_http_pending p;
    struct kr_root_key meta; /* key_id..publish_time; no wrapped material */
};

static void rotate_applied(void *arg, int status, uint64_t index, int outcome)
{
    struct rotate_op *o = arg;
    h2o_req_t *req = o->p.req;
    json_t *j, *key;

    if (req == NULL)
        goto out;
    if (status == 0)
        status = outcome;
    if (status != 0) {
        kr_http_reply_error(req, kr_err_http_status(status),
                            "rotating keyring: %s", kr_strerror(status));
        goto out;
    }
    /* Nomad's reply carries zero indexes in Key. */
    o->meta.create_index = o->meta.modify_index = 0;
    key = kr_http_key_meta_json(&o->meta);
    j = json_object();
    json_object_set_new(j, "Key", key);
    json_object_set_new(j, "Index", json_integer((json_int_t)index));
    kr_http_reply_json(req, 200, j, index);
    json_decref(j);
out:
    kr_http_pending_done(&o->p);
}

static void rotate_generated(void *arg, int status, struct kr_buf *entry,
                             const struct kr_root_key *meta, const char *errmsg)
{
    struct rotate_op *o = arg;
    int rv;

    if (o->p.req == NULL) {
        kr_http_pending_done(&o->p);
        return;
    }
    if (status != 0) {
        kr_http_reply_error(o->p.req, 500, "%s", errmsg);
        kr_http_pending_done(&o->p);
        return;
    }
    memcpy(o->meta.key_id, meta->key_id, sizeof(o->meta.key_id));
    memcpy(o->meta.algorithm, meta->algorithm, sizeof(o->meta.algorithm));
    o->meta.create_time = meta->create_time;
    o->meta.state = meta->state;
    o->meta.publish_time = meta->publish_time;
    rv = kr_raft_apply(o->p.srv->deps.raft, entry, rotate_applied, o);
    if (rv != 0) {
        kr_http_reply_error(o->p.req, kr_err_http_status(rv), "%s",
                            kr_strerror(rv));
        kr_http_pending_done(&o->p);
    }
}

int kr_http_keyring_rotate(struct kr_http_call *c)
{
    h2o_req_t *req = c->req;
    bool full = kr_http_query(req, "full") != NULL;
    const char *pt = kr_http_query(req, "publish_time");
    uint64_t publish = 0;
    struct rotate_op *o;
    int rv;

    /* Like Nomad, the presence of `full` alone asks for a full rekey. */
    if (pt != NULL && *pt != '\0' && !kr_http_parse_u64(pt, &publish)) {
        kr_http_reply_error(req, 400, "invalid publish_time \"%.32s\"", pt);
        return 0;
    }
    if (publish > INT64_MAX) {
        kr_http_reply_error(req, 400, "publish_time out of range");
        return 0;
    }
    if (full && publish > 0) {
        kr_http_reply_error(req, 400,
                            "keyring cannot be prepublished and full rotated "
                            "at the same time");
        return 0;
    }
    if (!kr_raft_is_leader(c->srv->deps.raft)) {
        kr_http_reply_error(req, 503, "No cluster leader");
        return 0;
    }
    o = kr_http_pending_new(c, sizeof(*o));
    if (o == NULL) {
        kr_http_reply_error(req, 500, "out of memory");
        return 0;
    }
    rv = kr_keyring_generate(
        c->srv->deps.keyring, publish > 0 ? KR_KEY_PREPUBLISHED : KR_KEY_ACTIVE,
        (int64_t)publish, full, kr_time_now_ns(), rotate_generated, o);
    if (rv != 0) {
        kr_http_reply_error(req, 500, "rotating keyring: %s",
                            rv == KR_EINVAL ? "no active keyring provider"
                                            : kr_strerror(rv));
        kr_http_pending_done(&o->p);
    }
    return 0;
}

static void delete_applied(void *arg, int status, uint64_t index, int outcome)
{
    struct kr_http_pending *p = arg;
    h2o_req_t *req = p->req;
    json_t *j;

    if (req == NULL)
        goto out;
    if (status != 0) {
        kr_http_reply_error(req, kr_err_http_status(status), "%s",
                            kr_strerror(status));
        goto out;
    }
    switch (outcome) {
    case 0:
        j = json_object();
        json_object_set_new(j, "Index", json_integer((json_int_t)index));
        kr_http_reply_json(req, 200, j, index);
        json_decref(j);
        break;
    case KR_ENOTFOUND:
        kr_http_reply_error(req, 404, "root key not found");
        break;
    case KR_EINVAL:
        kr_http_reply_error(req, 400,
                            "active root key cannot be deleted - "
                            "call rotate first");
        break;
    case KR_ECONFLICT:
        kr_http_reply_error(req, 409, "root key in use, cannot delete");
        break;
    default:
        kr_http_reply_error(req, 500, "%s", kr_strerror(outcome));
        break;
    }
out:
    kr_http_pending_done(p);
}

/*
 * Like a live allocation in Nomad, an identity that can still verify
 * keeps its key in use: one without expiry always (the state machine
 * refuses that delete too), others until their recorded expiry plus the
 * largest verification leeway.  The second check needs the clock, so it
 * is the leader's, here.  Replies 409 and returns true when k (NULL: not
 * in the state, which the state machine answers) is in use that way.
 */
static bool identities_in_use(h2o_req_t *req, const struct kr_root_key *k)
{
    int64_t now = kr_time_now_ns() / KR_NS_PER_SEC, end;
    char until[40];

    if (k == NULL)
        return false;
    if (k->id_no_exp) {
        kr_http_reply_error(req, 409,
                            "root key in use, cannot delete: it signed "
                            "workload identities without expiry");
        return true;
    }
    end = kr_identity_verifiable_until(k->id_max_exp, false);
    if (end > now) {
        kr_time_format_rfc3339(end * KR_NS_PER_SEC, until, sizeof(until));
        kr_http_reply_error(req, 409,
                            "root key in use, cannot delete: workload "
                            "identities it signed verify until %s",
                            until);
        return true;
    }
    return false;
}

int kr_http_keyring_delete(struct kr_http_call *c)
{
    h2o_req_t *req = c->req;
    const char *fs = kr_http_query(req, "force");
    bool force = false;
    struct kr_entry e;
    struct kr_buf b;
    struct kr_http_pending *p;
    int rv;

    if (fs != NULL && !kr_http_parse_bool(fs, &force)) {
        kr_http_reply_error(req, 422, "invalid force parameter");
        return 0;
    }
    if (!kr_uuid_valid(c->tail)) {
        kr_http_reply_error(req, 400, "invalid key ID \"%.64s\"", c->tail);
        return 0;
    }
    if (!kr_raft_is_leader(c->srv->deps.raft)) {
        kr_http_reply_error(req, 503, "No cluster leader");
        return 0;
    }
    if (!force &&
        identities_in_use(req, kr_state_key_get(c->srv->deps.state, c->tail)))
        return 0;
    p = kr_http_pending_new(c, sizeof(*p));
    if (p == NULL) {
        kr_http_reply_error(req, 500, "out of memory");
        return 0;
    }
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_DELETE;
    memcpy(e.key_delete.key_id, c->tail, KR_UUID_LEN + 1);
    e.key_delete.force = force;
    kr_buf_init(&b);
    rv = kr_entry_encode(&e, &b);
    if (rv == 0)
        rv = kr_raft_apply(c->srv->deps.raft, &b, delete_applied, p);
    kr_buf_free(&b);
    if (rv != 0) {
        kr_http_reply_error(req, kr_err_http_status(rv), "%s", kr_strerror(rv));
        kr_http_pending_done(p);
    }
    return 0;
}
