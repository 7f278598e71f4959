/*
 * Variables: GET/PUT/DELETE /v1/var/:path and GET /v1/vars.
 *
 * A write serialises Items to JSON in secret memory, seals it under the
 * active key (AAD = KeyID) and proposes the ciphertext through raft; the
 * state machine applies the check-and-set rule.  A read opens the stored
 * ciphertext with the key named in the record.  When that key is still
 * being decrypted on this server the request waits up to
 * KR_HTTP_KEY_WAIT_MS, then fails with 503 naming the key.
 *
 * A PUT body is read by the fast path of varbody.c when it can be, which
 * writes the sealed form of Items straight into secret memory, and by
 * jansson otherwise (and for every error message about the body).
 * Plaintext Items exist only in jansson objects (whose allocator wipes on
 * free), in kr_secret buffers and in h2o's copy of the body until it is
 * wiped, right after parsing.
 */
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/time.h"
#include "crypto/aead.h"
#include "http/varbody.h"
#include "state/codec.h"

#define DEFAULT_NS "default"

struct var_op {
    struct kr_http_pending p; /* first: pending ops are freed through it */
    char ns[KR_NAMESPACE_MAX + 1];
    char path[KR_VAR_PATH_MAX + 1];
    uint8_t op;
    uint64_t cas;
    struct kr_secret *pt; /* PUT: Items as sealed (compact, sorted JSON) */
    char key_id[KR_UUID_LEN + 1];
};

static void op_free(struct var_op *o)
{
    kr_secret_free(o->pt);
    kr_http_pending_done(&o->p);
}

static bool ns_valid(const char *ns)
{
    size_t n = strlen(ns);

    if (n == 0 || n > KR_NAMESPACE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = ns[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* The namespace of a request: ?namespace=, else body_ns (the body's
 * Namespace; NULL for none), else default.  Replies 400 and returns NULL
 * when invalid. */
static const char *request_ns(h2o_req_t *req, const char *body_ns, bool write)
{
    const char *ns = kr_http_query(req, "namespace");

    if (ns == NULL || *ns == '\0')
        ns = body_ns;
    if (ns == NULL || *ns == '\0')
        ns = DEFAULT_NS;
    if (write && strcmp(ns, "*") == 0) {
        kr_http_reply_error(req, 400,
                            "wildcard namespace not allowed for write");
        return NULL;
    }
    if (strcmp(ns, "*") != 0 && !ns_valid(ns)) {
        kr_http_reply_error(req, 400, "invalid namespace \"%.128s\"", ns);
        return NULL;
    }
    return ns;
}

/* Variable metadata (+ Items when given; borrowed) as Nomad's JSON. */
static json_t *var_json(const char *ns, const char *path,
                        const struct kr_var *v, json_t *items)
{
    json_t *j = json_object();

    json_object_set_new(j, "Namespace", json_string(ns));
    json_object_set_new(j, "Path", json_string(path));
    json_object_set_new(j, "CreateIndex",
                        json_integer(v ? (json_int_t)v->create_index : 0));
    json_object_set_new(j, "ModifyIndex",
                        json_integer(v ? (json_int_t)v->modify_index : 0));
    json_object_set_new(j, "CreateTime",
                        json_integer(v ? (json_int_t)v->create_time : 0));
    json_object_set_new(j, "ModifyTime",
                        json_integer(v ? (json_int_t)v->modify_time : 0));
    if (items != NULL && json_object_size(items) > 0)
        json_object_set(j, "Items", items);
    return j;
}

/*
 * Replies with a Variable whose Items are given as their compact JSON
 * encoding (items, len; NULL for none).  The stored plaintext is exactly
 * that encoding, written by our own encoder and authenticated by GCM, so
 * it is spliced in without a parse: namespaces and paths are restricted
 * to characters that need no JSON escaping.  ?pretty takes the slow path
 * through jansson.  The body buffer is wiped when freed.
 */
static void reply_var(h2o_req_t *req, int status, const char *ns,
                      const char *path, const struct kr_var *v,
                      const uint8_t *items, size_t len, uint64_t index)
{
    struct kr_buf b;
    json_t *j, *parsed = NULL;

    kr_buf_init(&b);
    if (kr_http_query(req, "pretty") != NULL) {
        size_t n;
        if (items != NULL)
            parsed = json_loadb((const char *)items, len, 0, NULL);
        j = var_json(ns, path, v, parsed);
        /* Dump straight into the wiped buffer. */
        n = json_dumpb(j, NULL, 0, JSON_INDENT(4));
        if (n > 0 && kr_buf_reserve(&b, n) == 0 &&
            json_dumpb(j, (char *)b.data, n, JSON_INDENT(4)) == n)
            b.len = n;
        else
            b.oom = true;
        json_decref(j);
        json_decref(parsed);
        goto send;
    }
    kr_buf_printf(&b,
                  "{\"Namespace\":\"%s\",\"Path\":\"%s\",\"CreateIndex\":%llu,"
                  "\"ModifyIndex\":%llu,\"CreateTime\":%lld,"
                  "\"ModifyTime\":%lld",
                  ns, path, (unsigned long long)(v ? v->create_index : 0),
                  (unsigned long long)(v ? v->modify_index : 0),
                  (long long)(v ? v->create_time : 0),
                  (long long)(v ? v->modify_time : 0));
    if (items != NULL && !(len == 2 && memcmp(items, "{}", 2) == 0)) {
        kr_buf_puts(&b, ",\"Items\":");
        kr_buf_append(&b, items, len);
    }
    kr_buf_puts(&b, "}");
send:
    if (b.oom) {
        kr_http_reply_error(req, 500, "out of memory");
    } else {
        char idx[32];
        snprintf(idx, sizeof(idx), "%llu", (unsigned long long)index);
        if (index > 0)
            kr_http_add_header(req, "X-Nomad-Index", idx);
        kr_http_send_secret(req, status, "application/json", b.data, b.len);
    }
    kr_buf_free(&b);
}

/* A Variable whose key was redacted: its material is gone for good. */
static void reply_redacted(h2o_req_t *req, const struct kr_var *v)
{
    kr_http_reply_error(req, 500,
                        "variable \"%s\" is encrypted with key %s, which "
                        "was redacted from the snapshot this cluster was "
                        "restored from: its key material is gone and the "
                        "variable cannot be decrypted",
                        v->path, v->key_id);
}

static void reply_decrypt_error(struct kr_http *srv, h2o_req_t *req,
                                const struct kr_var *v, int rv)
{
    const struct kr_root_key *k = kr_state_key_get(srv->deps.state, v->key_id);

    if (rv == KR_ENOTREADY && k != NULL && k->redacted)
        reply_redacted(req, v);
    else if (rv == KR_ENOTREADY)
        kr_http_reply_error(req, 503,
                            "key %s for variable \"%s\" is not ready: the "
                            "keyring has not decrypted it yet",
                            v->key_id, v->path);
    else
        kr_http_reply_error(req, 500, "decrypting variable \"%s\": %s", v->path,
                            kr_strerror(rv));
}

/* ---- GET ---- */

static void get_reply(struct kr_http *srv, h2o_req_t *req, const char *ns,
                      const char *path)
{
    const struct kr_var *v = kr_state_var_get(srv->deps.state, ns, path);
    struct kr_secret *pt = NULL;
    int rv;

    kr_http_add_query_meta(srv, req);
    if (v == NULL) {
        kr_http_add_header(req, "X-Nomad-Index", "1");
        kr_http_reply_error(req, 404, "variable not found");
        return;
    }
    rv = kr_keyring_open(srv->deps.keyring, v->key_id, v->data, v->data_len,
                         &pt);
    if (rv != 0) {
        reply_decrypt_error(srv, req, v, rv);
        return;
    }
    reply_var(req, 200, ns, path, v, pt->data, pt->len, v->modify_index);
    kr_secret_free(pt);
}

static void get_waited(void *arg, int status)
{
    struct var_op *o = arg;

    (void)status; /* get_reply reports a key that is still missing */
    if (o->p.req != NULL)
        get_reply(o->p.srv, o->p.req, o->ns, o->path);
    op_free(o);
}

static int var_get(struct kr_http_call *c, const char *ns)
{
    struct kr_http *srv = c->srv;
    const struct kr_var *v = kr_state_var_get(srv->deps.state, ns, c->tail);
    const struct kr_root_key *key;
    struct var_op *o;

    if (v == NULL || kr_keyring_has(srv->deps.keyring, v->key_id)) {
        get_reply(srv, c->req, ns, c->tail);
        return 0;
    }
    key = kr_state_key_get(srv->deps.state, v->key_id);
    if (key != NULL && key->redacted) {
        reply_redacted(c->req, v);
        return 0;
    }
    if (key == NULL) {
        /* Force-removed: waiting cannot help. */
        kr_http_reply_error(c->req, 500,
                            "variable \"%s\" is encrypted with key %s, "
                            "which has been removed from the keyring",
                            v->path, v->key_id);
        return 0;
    }
    o = kr_http_pending_new(c, sizeof(*o));
    if (o == NULL) {
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    snprintf(o->ns, sizeof(o->ns), "%s", ns);
    snprintf(o->path, sizeof(o->path), "%s", c->tail);
    if (kr_keyring_wait(srv->deps.keyring, v->key_id, KR_HTTP_KEY_WAIT_MS,
                        get_waited, o, NULL) != 0) {
        get_reply(srv, c->req, ns, c->tail);
        op_free(o);
    }
    return 0;
}

/* ---- PUT and DELETE ---- */

/* 409: the body is the conflicting Variable (Items when decryptable). */
static void reply_conflict(struct kr_http *srv, h2o_req_t *req, const char *ns,
                           const char *path)
{
    const struct kr_var *v = kr_state_var_get(srv->deps.state, ns, path);
    struct kr_secret *pt = NULL;

    /* Items are left out when they cannot be decrypted here. */
    if (v != NULL && kr_keyring_open(srv->deps.keyring, v->key_id, v->data,
                                     v->data_len, &pt) != 0)
        pt = NULL;
    /* Like Nomad, the index is the conflicting Variable's. */
    reply_var(req, 409, ns, path, v, pt ? pt->data : NULL, pt ? pt->len : 0,
              v != NULL ? v->modify_index
                        : kr_state_vars_index(srv->deps.state));
    kr_secret_free(pt);
}

static void applied(void *arg, int status, uint64_t index, int outcome)
{
    struct var_op *o = arg;
    struct kr_http *srv = o->p.srv;
    h2o_req_t *req = o->p.req;
    const struct kr_var *v;

    if (req == NULL)
        goto out;
    if (status != 0) {
        kr_http_reply_error(req, kr_err_http_status(status), "%s",
                            kr_strerror(status));
        goto out;
    }
    switch (outcome) {
    case 0:
        if (o->op == KR_VAR_DELETE || o->op == KR_VAR_DELETE_CAS) {
            kr_http_reply_empty(req, 204, index);
            break;
        }
        v = kr_state_var_get(srv->deps.state, o->ns, o->path);
        reply_var(req, 200, o->ns, o->path, v, o->pt->data, o->pt->len, index);
        break;
    case KR_ECONFLICT:
        reply_conflict(srv, req, o->ns, o->path);
        break;
    default:
        kr_http_reply_error(req, kr_err_http_status(outcome),
                            "variable write rejected: %s",
                            kr_strerror(outcome));
        break;
    }
out:
    op_free(o);
}

/* FNV-1a of namespace NUL path, never 0: kr_raft_apply_keyed's key.  A
 * collision only costs a raft entry of its own. */
static uint64_t var_key(const char *ns, const char *path)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (const char *p = ns;; p++) {
        h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
        if (*p == '\0')
            break;
    }
    for (const char *p = path; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
    return h | 1u;
}

static void propose(struct var_op *o, const uint8_t *data, size_t len)
{
    struct kr_http *srv = o->p.srv;
    struct kr_entry e;
    struct kr_buf b;
    int rv;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_VAR_APPLY;
    e.var.op = o->op;
    e.var.namespace = o->ns;
    e.var.path = o->path;
    e.var.cas = o->cas;
    memcpy(e.var.key_id, o->key_id, sizeof(e.var.key_id));
    e.var.data = (uint8_t *)data;
    e.var.data_len = len;
    e.var.now = kr_time_now_ns();
    kr_buf_init(&b);
    rv = kr_entry_encode(&e, &b);
    if (rv == 0)
        rv = kr_raft_apply_keyed(srv->deps.raft, &b, var_key(o->ns, o->path),
                                 applied, o);
    kr_buf_free(&b);
    if (rv != 0) {
        kr_http_reply_error(o->p.req, kr_err_http_status(rv), "%s",
                            rv == KR_ENOLEADER ? "No cluster leader"
                                               : kr_strerror(rv));
        op_free(o);
    }
}

/* Seals o->pt under o->key_id and proposes the write. */
static void seal_and_propose(struct var_op *o)
{
    struct kr_http *srv = o->p.srv;
    struct kr_buf ct;
    int rv;

    kr_buf_init(&ct);
    if (o->pt->len + KR_AEAD_OVERHEAD > KR_VAR_DATA_MAX) {
        kr_http_reply_error(o->p.req, 400,
                            "variable is too large once encoded");
        op_free(o);
        goto out;
    }
    rv = kr_keyring_seal(srv->deps.keyring, o->key_id, o->pt->data, o->pt->len,
                         &ct);
    if (rv != 0) {
        if (rv == KR_ENOTREADY)
            kr_http_reply_error(o->p.req, 503,
                                "active key %s is not ready: the keyring "
                                "has not decrypted it yet",
                                o->key_id);
        else
            kr_http_reply_error(o->p.req, 500, "encrypting variable: %s",
                                kr_strerror(rv));
        op_free(o);
        goto out;
    }
    propose(o, ct.data, ct.len);
out:
    kr_buf_free(&ct);
}

/* The active key at the time the wait ends: a first start or a rotation
 * may have installed one meanwhile. */
static void put_waited(void *arg, int status)
{
    struct var_op *o = arg;
    const struct kr_root_key *active;

    (void)status; /* seal_and_propose reports a key that is still missing */
    if (o->p.req == NULL) {
        op_free(o);
        return;
    }
    active = kr_state_key_active(o->p.srv->deps.state);
    if (active == NULL) {
        kr_http_reply_error(o->p.req, 503,
                            "keyring has no active key yet: the leader "
                            "creates one when the cluster first forms; if "
                            "this persists, run `keyraft operator root "
                            "keyring rotate -now`");
        op_free(o);
        return;
    }
    memcpy(o->key_id, active->key_id, sizeof(o->key_id));
    seal_and_propose(o);
}

/* A PUT's body once h2o's copy is wiped; owned by var_write's frame. */
struct put_body {
    json_t *json;         /* jansson's parse; NULL when the fast path read it */
    struct kr_secret *pt; /* Items as sealed */
    size_t total;         /* fast path: Items' size as items_valid sums it */
    /* Fast path: the body's Namespace ("" for none).  A longer one is cut
     * one byte past the limit: it stays invalid, with the same message. */
    char ns[KR_NAMESPACE_MAX + 2];
};

/* Reads a PUT body into b: through varbody.c's fast path when it can,
 * else through jansson, which replies 400 and returns false for a body
 * that is not a JSON object.  Wipes h2o's copy either way. */
static bool read_body(h2o_req_t *req, struct put_body *b)
{
    struct kr_varbody vb;
    size_t n;

    if (kr_varbody_parse(req->entity.base, req->entity.len, &vb) == 0) {
        n = vb.ns_len < sizeof(b->ns) - 1 ? vb.ns_len : sizeof(b->ns) - 1;
        if (n > 0)
            memcpy(b->ns, vb.ns, n);
        b->ns[n] = '\0';
        b->pt = vb.items;
        b->total = vb.total;
    } else {
        b->json = kr_http_body_json(req);
    }
    /* What we keep lives in wiped memory; h2o's copy need not stay. */
    kr_http_wipe_body(req);
    return b->pt != NULL || b->json != NULL;
}

static const char *body_ns(const struct put_body *b)
{
    if (b->json != NULL)
        return json_string_value(json_object_get(b->json, "Namespace"));
    return b->ns;
}

static bool size_valid(h2o_req_t *req, size_t total)
{
    if (total > KR_VAR_ITEMS_MAX) {
        kr_http_reply_error(req, 400,
                            "variables are limited to 64KiB in total size");
        return false;
    }
    return true;
}

/* Validates Items: a non-empty object of strings within the size cap. */
static bool items_valid(h2o_req_t *req, json_t *items)
{
    const char *k;
    json_t *v;
    size_t total = 0;

    if (!json_is_object(items) || json_object_size(items) == 0) {
        kr_http_reply_error(req, 400, "variable missing required Items object");
        return false;
    }
    json_object_foreach(items, k, v)
    {
        if (!json_is_string(v)) {
            kr_http_reply_error(req, 400,
                                "variable item \"%.64s\" must be a string", k);
            return false;
        }
        total += strlen(k) + json_string_length(v);
    }
    return size_valid(req, total);
}

/* Items as sealed: compact JSON with sorted keys, in secret memory; NULL
 * when out of memory.  Free with kr_secret_free. */
static struct kr_secret *items_dump(json_t *items)
{
    size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
    size_t n = json_dumpb(items, NULL, 0, flags);
    struct kr_secret *pt = n > 0 ? kr_secret_new(n) : NULL;

    if (pt != NULL && json_dumpb(items, (char *)pt->data, n, flags) != n) {
        kr_secret_free(pt);
        pt = NULL;
    }
    return pt;
}

/* Checks Items once the namespace has passed, and leaves them in b->pt:
 * the fast path only needs the size cap, jansson's tree all of
 * items_valid and then an encoding. */
static bool items_check(h2o_req_t *req, struct put_body *b)
{
    json_t *items;

    if (b->json == NULL)
        return size_valid(req, b->total);
    items = json_object_get(b->json, "Items");
    if (!items_valid(req, items))
        return false;
    b->pt = items_dump(items);
    if (b->pt == NULL)
        kr_http_reply_error(req, 500, "out of memory");
    return b->pt != NULL;
}

/* Seals with the active key when this server holds it, else waits for
 * the key (or, on a new keyring, for the first one).  Takes o. */
static void put_start(struct var_op *o, const struct kr_root_key *active)
{
    struct kr_keyring *keyring = o->p.srv->deps.keyring;

    if (active != NULL && active->redacted) {
        /* Waiting cannot help: only a rotation gives writes a key. */
        kr_http_reply_error(o->p.req, 500,
                            "active key %s was redacted from the snapshot "
                            "this cluster was restored from and cannot "
                            "encrypt: rotate the keyring first (keyraft "
                            "operator root keyring rotate -now)",
                            active->key_id);
        op_free(o);
    } else if (active != NULL && kr_keyring_has(keyring, active->key_id)) {
        memcpy(o->key_id, active->key_id, sizeof(o->key_id));
        seal_and_propose(o);
    } else if (kr_keyring_wait(keyring, active ? active->key_id : NULL,
                               active ? KR_HTTP_KEY_WAIT_MS
                                      : KR_HTTP_ACTIVE_WAIT_MS,
                               put_waited, o, NULL) != 0) {
        put_waited(o, KR_ESHUTDOWN);
    }
}

static bool parse_cas(h2o_req_t *req, uint64_t *cas, bool *has)
{
    const char *s = kr_http_query(req, "cas");

    /* Like Nomad, an empty cas= means no check-and-set. */
    *has = s != NULL && *s != '\0';
    if (*has && !kr_http_parse_u64(s, cas)) {
        kr_http_reply_error(req, 400, "failed to parse cas value \"%.32s\"", s);
        return false;
    }
    return true;
}

/* The query of a write: cas=, and lock operations (not supported yet).
 * Replies 400 and returns false when it does not pass. */
static bool write_query_valid(h2o_req_t *req, uint64_t *cas, bool *has_cas)
{
    int lock_ops = (kr_http_query(req, "lock-acquire") != NULL) +
                   (kr_http_query(req, "lock-renew") != NULL) +
                   (kr_http_query(req, "lock-release") != NULL);

    if (lock_ops > 1) {
        kr_http_reply_error(req, 400, "multiple lock operations");
        return false;
    }
    if (!parse_cas(req, cas, has_cas))
        return false;
    if (lock_ops == 1) {
        kr_http_reply_error(req, 400,
                            *has_cas ? "cas can't be used with lock operations"
                                     : "variable locks are not supported "
                                       "by this server yet");
        return false;
    }
    return true;
}

static int var_write(struct kr_http_call *c, bool del)
{
    struct kr_http *srv = c->srv;
    h2o_req_t *req = c->req;
    struct put_body b;
    const struct kr_root_key *active;
    const char *ns;
    struct var_op *o;
    uint64_t cas = 0;
    bool has_cas;

    memset(&b, 0, sizeof(b));
    if (!write_query_valid(req, &cas, &has_cas))
        goto out;
    if (!del && !read_body(req, &b))
        goto out;
    ns = request_ns(req, body_ns(&b), true);
    if (ns == NULL)
        goto out;
    if (!del && !items_check(req, &b))
        goto out;
    if (!kr_raft_is_leader(srv->deps.raft)) {
        kr_http_reply_error(req, 503, "No cluster leader");
        goto out;
    }
    active = kr_state_key_active(srv->deps.state);
    o = kr_http_pending_new(c, sizeof(*o));
    if (o == NULL) {
        kr_http_reply_error(req, 500, "out of memory");
        goto out;
    }
    snprintf(o->ns, sizeof(o->ns), "%s", ns);
    snprintf(o->path, sizeof(o->path), "%s", c->tail);
    o->cas = cas;
    if (del) {
        o->op = has_cas ? KR_VAR_DELETE_CAS : KR_VAR_DELETE;
        propose(o, NULL, 0);
        goto out;
    }
    o->op = has_cas ? KR_VAR_CAS : KR_VAR_SET;
    o->pt = b.pt;
    b.pt = NULL;
    put_start(o, active);
out:
    json_decref(b.json);
    kr_secret_free(b.pt);
    return 0;
}

int kr_http_var(struct kr_http_call *c)
{
    char errmsg[KR_ERRMSG_SIZE];
    const char *ns;

    if (kr_var_path_validate(c->tail, errmsg) != 0) {
        kr_http_reply_error(c->req, 400, "%s", errmsg);
        return 0;
    }
    if (h2o_memis(c->req->method.base, c->req->method.len, H2O_STRLIT("GET"))) {
        ns = request_ns(c->req, NULL, false);
        if (ns == NULL)
            return 0;
        if (strcmp(ns, "*") == 0) {
            kr_http_reply_error(c->req, 400,
                                "wildcard namespace not allowed for read");
            return 0;
        }
        return var_get(c, ns);
    }
    return var_write(c, h2o_memis(c->req->method.base, c->req->method.len,
                                  H2O_STRLIT("DELETE")));
}

/* ---- LIST ---- */

int kr_http_vars_list(struct kr_http_call *c)
{
    struct kr_http *srv = c->srv;
    h2o_req_t *req = c->req;
    const char *ns = request_ns(req, NULL, false);
    const char *prefix = kr_http_query(req, "prefix");
    const char *per_page_s = kr_http_query(req, "per_page");
    const char *next = kr_http_query(req, "next_token");
    char after_ns[KR_NAMESPACE_MAX + 1] = "", *after_path = NULL;
    uint64_t per_page = 0;
    const struct kr_var *v;
    json_t *arr;
    size_t n = 0;

    if (ns == NULL)
        return 0;
    if (kr_http_query(req, "filter") != NULL) {
        kr_http_reply_error(req, 400,
                            "filter expressions are not supported by this "
                            "server yet; use prefix");
        return 0;
    }
    if (per_page_s != NULL &&
        (!kr_http_parse_u64(per_page_s, &per_page) || per_page > 1000000)) {
        kr_http_reply_error(req, 400, "invalid per_page value");
        return 0;
    }
    if (prefix != NULL && *prefix == '\0')
        prefix = NULL;
    if (next != NULL && *next != '\0') {
        /* The token is "<namespace>.<path>" of the first item of the next
         * page; neither part may contain a dot. */
        const char *dot = strchr(next, '.');
        if (dot == NULL || (size_t)(dot - next) > KR_NAMESPACE_MAX) {
            kr_http_reply_error(req, 400, "invalid next_token");
            return 0;
        }
        memcpy(after_ns, next, (size_t)(dot - next));
        after_ns[dot - next] = '\0';
        after_path = (char *)dot + 1;
    }
    arr = json_array();
    if (after_path != NULL) {
        /* Inclusive: start at the token itself. */
        v = kr_state_var_get(srv->deps.state, after_ns, after_path);
        if (v == NULL ||
            (ns != NULL && strcmp(ns, "*") != 0 &&
             strcmp(v->namespace, ns) != 0) ||
            (prefix && strncmp(v->path, prefix, strlen(prefix)) != 0))
            v = kr_state_var_first(srv->deps.state, ns, prefix, after_ns,
                                   after_path);
    } else {
        v = kr_state_var_first(srv->deps.state, ns, prefix, NULL, NULL);
    }
    for (; v != NULL; v = kr_state_var_next(srv->deps.state, v, ns, prefix)) {
        if (per_page > 0 && n == per_page) {
            char tok[KR_NAMESPACE_MAX + KR_VAR_PATH_MAX + 2];
            snprintf(tok, sizeof(tok), "%s.%s", v->namespace, v->path);
            kr_http_add_header(req, "X-Nomad-NextToken", tok);
            break;
        }
        json_array_append_new(arr, var_json(v->namespace, v->path, v, NULL));
        n++;
    }
    kr_http_add_query_meta(srv, req);
    /* Like Nomad, the index is never 0: clients block on it. */
    kr_http_reply_json(req, 200, arr,
                       kr_state_vars_index(srv->deps.state) > 0
                           ? kr_state_vars_index(srv->deps.state)
                           : 1);
    json_decref(arr);
    return 0;
}
