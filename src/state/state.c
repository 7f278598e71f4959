/*
 * See state.h.  Variables live in a red-black tree ordered by (namespace,
 * path), which gives prefix listing and stable pagination.  Root keys are a
 * short array ordered by create_index.
 *
 * Key state transitions (spec 7.1) happen inside one apply: when a key
 * becomes active, every other key flips in the same step, so no reader can
 * ever observe two active keys or none in between.
 */
#include "state/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libbsd's tree.h marks its static generators __unused, which its cdefs.h
 * leaves empty on glibc; without it every unused generator warns. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "common/err.h"
#include "common/log.h"
#include "state/codec.h"

#define SNAP_MAGIC "KRST"
#define SNAP_VERSION 1

enum snap_record {
    SNAP_REC_INDEXES = 1,
    SNAP_REC_ROOT_KEY = 2,
    SNAP_REC_VAR = 3,
    SNAP_REC_REKEY = 4, /* the rekey checkpoint, when there is one */
    /* A key's identity record (id_max_exp, id_no_exp), right after that
     * key's ROOT_KEY record and only when it is not empty. */
    SNAP_REC_IDENTITY = 5,
    SNAP_REC_END = 255, /* u64 count of the records before it */
};

struct var_node {
    RB_ENTRY(var_node) link;
    struct kr_var v;
};

static int var_cmp(const struct var_node *a, const struct var_node *b)
{
    int c = strcmp(a->v.namespace, b->v.namespace);
    return c != 0 ? c : strcmp(a->v.path, b->v.path);
}

RB_HEAD(var_tree, var_node);
RB_GENERATE_STATIC(var_tree, var_node, link, var_cmp)

struct kr_state {
    struct kr_root_key *keys; /* ordered by create_index */
    size_t n_keys;
    size_t cap_keys;
    struct var_tree vars;
    size_t n_vars;
    uint64_t keys_index;
    uint64_t vars_index;
    uint64_t keys_gen;
    char *rekey_ns, *rekey_path; /* checkpoint; NULL: from the start */
};

static const char *const state_names[] = {"active", "inactive", "rekeying",
                                          "prepublished", "deprecated"};

const char *kr_key_state_name(enum kr_key_state s)
{
    if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
        return "unknown";
    return state_names[s];
}

int kr_key_state_parse(const char *s, enum kr_key_state *out)
{
    for (unsigned i = 0; i < sizeof(state_names) / sizeof(state_names[0]);
         i++) {
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum kr_key_state)i;
            return 0;
        }
    }
    return KR_EINVAL;
}

/* Aborts on allocation failure: see "Entry outcome vs. failure". */
static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);

    KR_BUG_ON(p == NULL);
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);

    KR_BUG_ON(p == NULL);
    return p;
}

int kr_state_new(struct kr_state **out)
{
    struct kr_state *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return KR_ENOMEM;
    RB_INIT(&s->vars);
    *out = s;
    return 0;
}

static void var_node_free(struct var_node *n)
{
    free(n->v.namespace);
    free(n->v.path);
    free(n->v.data);
    free(n);
}

/* Releases the contents of s, leaving it empty. */
static void state_clear(struct kr_state *s)
{
    struct var_node *n, *next;

    for (n = RB_MIN(var_tree, &s->vars); n != NULL; n = next) {
        next = RB_NEXT(var_tree, &s->vars, n);
        RB_REMOVE(var_tree, &s->vars, n);
        var_node_free(n);
    }
    for (size_t i = 0; i < s->n_keys; i++)
        kr_root_key_clear(&s->keys[i]);
    free(s->keys);
    s->keys = NULL;
    s->n_keys = s->cap_keys = 0;
    s->n_vars = 0;
    free(s->rekey_ns);
    free(s->rekey_path);
    s->rekey_ns = s->rekey_path = NULL;
}

/* Moves the rekey checkpoint; "" or NULL for the start. */
static void set_cursor(struct kr_state *s, const char *ns, const char *path)
{
    free(s->rekey_ns);
    free(s->rekey_path);
    s->rekey_ns = s->rekey_path = NULL;
    if (ns != NULL && *ns != '\0' && path != NULL && *path != '\0') {
        s->rekey_ns = xstrdup(ns);
        s->rekey_path = xstrdup(path);
    }
}

void kr_state_free(struct kr_state *s)
{
    if (s == NULL)
        return;
    state_clear(s);
    free(s);
}

static struct kr_root_key *key_find(const struct kr_state *s,
                                    const char *key_id)
{
    for (size_t i = 0; i < s->n_keys; i++)
        if (strcmp(s->keys[i].key_id, key_id) == 0)
            return &s->keys[i];
    return NULL;
}

/* Appends k (contents moved in) and keeps the array ordered by
 * create_index; new keys always carry the highest index. */
static struct kr_root_key *key_append(struct kr_state *s, struct kr_root_key *k)
{
    if (s->n_keys == s->cap_keys) {
        size_t cap = s->cap_keys ? s->cap_keys * 2 : 8;
        struct kr_root_key *keys = realloc(s->keys, cap * sizeof(*keys));
        KR_BUG_ON(keys == NULL);
        s->keys = keys;
        s->cap_keys = cap;
    }
    s->keys[s->n_keys] = *k;
    memset(k, 0, sizeof(*k));
    return &s->keys[s->n_keys++];
}

/* Spec 7.1: what happens to every other key when one becomes active. */
static void flip_others(struct kr_state *s, const struct kr_root_key *winner,
                        bool rekey, uint64_t index)
{
    for (size_t i = 0; i < s->n_keys; i++) {
        struct kr_root_key *k = &s->keys[i];
        enum kr_key_state next = k->state;

        if (k == winner)
            continue;
        if (k->state == KR_KEY_ACTIVE)
            next = rekey ? KR_KEY_REKEYING : KR_KEY_INACTIVE;
        else if (k->state == KR_KEY_INACTIVE && rekey)
            next = KR_KEY_REKEYING;
        if (next != k->state) {
            k->state = next;
            k->modify_index = index;
            if (next == KR_KEY_REKEYING)
                k->rekey_total = k->n_vars;
        }
    }
    /* A new rekey covers Variables anywhere: its job starts over. */
    if (rekey)
        set_cursor(s, NULL, NULL);
}

static int apply_key_upsert(struct kr_state *s, uint64_t index,
                            struct kr_entry_key_upsert *e)
{
    struct kr_root_key *in = &e->key;
    struct kr_root_key *k;
    bool becoming_active;
    int64_t publish_time;

    if (!kr_uuid_valid(in->key_id) ||
        strcmp(in->algorithm, KR_ALGORITHM_AES256GCM) != 0)
        return KR_EINVAL;
    k = key_find(s, in->key_id);
    if (k != NULL && strcmp(k->algorithm, in->algorithm) != 0)
        return KR_EINVAL;
    becoming_active =
        in->state == KR_KEY_ACTIVE && (k == NULL || k->state != KR_KEY_ACTIVE);
    publish_time = in->state == KR_KEY_PREPUBLISHED ? in->publish_time : 0;
    if (e->rekey && !becoming_active)
        return KR_EINVAL;
    if (k == NULL) {
        /* A key is born with its material; metadata alone is refused so
         * no server ever holds a key it can never decrypt. */
        if (in->n_wrapped == 0)
            return KR_EINVAL;
        in->create_index = index;
        in->n_vars = 0;
        k = key_append(s, in);
    } else {
        /* Material never changes for a KeyID; CreateIndex and CreateTime
         * are kept.  Only the lifecycle fields move. */
        k->state = in->state;
    }
    k->publish_time = publish_time;
    k->modify_index = index;
    if (becoming_active)
        flip_others(s, k, e->rekey, index);
    s->keys_index = index;
    s->keys_gen++;
    return 0;
}

static int apply_key_delete(struct kr_state *s, uint64_t index,
                            const struct kr_entry_key_delete *e)
{
    struct kr_root_key *k = key_find(s, e->key_id);
    size_t i;

    if (k == NULL)
        return KR_ENOTFOUND;
    if (k->state == KR_KEY_ACTIVE)
        return KR_EINVAL;
    /* An identity without expiry verifies for as long as the key exists:
     * like a Variable, it keeps the key in use.  (Identities that expire
     * are the leader's check, which needs the clock: http/identity.c.) */
    if ((k->n_vars > 0 || k->id_no_exp) && !e->force)
        return KR_ECONFLICT;
    i = (size_t)(k - s->keys);
    kr_root_key_clear(k);
    memmove(&s->keys[i], &s->keys[i + 1],
            (s->n_keys - i - 1) * sizeof(*s->keys));
    s->n_keys--;
    s->keys_index = index;
    s->keys_gen++;
    return 0;
}

static struct var_node *var_find(const struct kr_state *s, const char *ns,
                                 const char *path)
{
    struct var_node key;

    key.v.namespace = (char *)ns;
    key.v.path = (char *)path;
    return RB_FIND(var_tree, (struct var_tree *)&s->vars, &key);
}

static void key_uses(struct kr_state *s, const char *key_id, int delta)
{
    struct kr_root_key *k = key_find(s, key_id);

    /* A forced delete may remove a key that Variables still name. */
    if (k == NULL)
        return;
    if (delta < 0 && k->n_vars > 0)
        k->n_vars--;
    else if (delta > 0)
        k->n_vars++;
}

static int apply_var(struct kr_state *s, uint64_t index,
                     struct kr_entry_var_apply *e)
{
    struct var_node *n = var_find(s, e->namespace, e->path);
    bool write = e->op == KR_VAR_SET || e->op == KR_VAR_CAS;

    if (e->op == KR_VAR_CAS || e->op == KR_VAR_DELETE_CAS) {
        uint64_t current = n != NULL ? n->v.modify_index : 0;
        if (current != e->cas)
            return KR_ECONFLICT;
    }
    if (!write) {
        if (n == NULL)
            return 0;
        key_uses(s, n->v.key_id, -1);
        RB_REMOVE(var_tree, &s->vars, n);
        var_node_free(n);
        s->n_vars--;
        s->vars_index = index;
        return 0;
    }
    if (kr_var_path_validate(e->path, NULL) != 0 || e->data_len < 28 ||
        e->data_len > KR_VAR_DATA_MAX || key_find(s, e->key_id) == NULL)
        return KR_EINVAL;
    if (n == NULL) {
        n = xcalloc(1, sizeof(*n));
        n->v.namespace = xstrdup(e->namespace);
        n->v.path = xstrdup(e->path);
        n->v.create_index = index;
        n->v.create_time = e->now;
        RB_INSERT(var_tree, &s->vars, n);
        s->n_vars++;
    } else {
        key_uses(s, n->v.key_id, -1);
        free(n->v.data);
    }
    memcpy(n->v.key_id, e->key_id, sizeof(n->v.key_id));
    n->v.data = e->data;
    n->v.data_len = e->data_len;
    e->data = NULL; /* moved */
    e->data_len = 0;
    n->v.modify_index = index;
    n->v.modify_time = e->now;
    key_uses(s, n->v.key_id, +1);
    s->vars_index = index;
    return 0;
}

/* Rekeying keys that no Variable uses any more become inactive; when
 * none is left rekeying, the job's checkpoint goes. */
static void finish_rekeyed(struct kr_state *s, uint64_t index)
{
    bool rekeying = false;

    for (size_t i = 0; i < s->n_keys; i++) {
        struct kr_root_key *k = &s->keys[i];
        if (k->state != KR_KEY_REKEYING)
            continue;
        if (k->n_vars > 0) {
            rekeying = true;
            continue;
        }
        k->state = KR_KEY_INACTIVE;
        k->modify_index = index;
        s->keys_index = index;
        s->keys_gen++;
    }
    if (!rekeying)
        set_cursor(s, NULL, NULL);
}

/* Whether a rekey item may replace n: same version, still under a
 * rekeying key. */
static bool rekey_applies(struct kr_state *s, const struct var_node *n,
                          const struct kr_rekey_item *it)
{
    const struct kr_root_key *k;

    if (n == NULL || n->v.modify_index != it->modify_index)
        return false;
    k = key_find(s, n->v.key_id);
    return k != NULL && k->state == KR_KEY_REKEYING;
}

/*
 * A batch of the rekey job.  Refused whole (KR_ECONFLICT) when key_id is
 * no longer the active key, or (KR_EINVAL) when an item is malformed;
 * otherwise each item that still applies replaces its Variable's
 * ciphertext and KeyID.  The Variable's indexes and times stay: its
 * content did not change, so a client's check-and-set still holds.
 */
static int apply_rekey(struct kr_state *s, uint64_t index,
                       struct kr_entry_var_rekey *e)
{
    const struct kr_root_key *active = kr_state_key_active(s);

    if (active == NULL || strcmp(active->key_id, e->key_id) != 0)
        return KR_ECONFLICT;
    for (uint32_t i = 0; i < e->n_items; i++)
        if (e->items[i].data_len < 28 || e->items[i].data_len > KR_VAR_DATA_MAX)
            return KR_EINVAL;
    for (uint32_t i = 0; i < e->n_items; i++) {
        struct kr_rekey_item *it = &e->items[i];
        struct var_node *n = var_find(s, it->namespace, it->path);
        if (!rekey_applies(s, n, it))
            continue;
        key_uses(s, n->v.key_id, -1);
        free(n->v.data);
        memcpy(n->v.key_id, e->key_id, sizeof(n->v.key_id));
        n->v.data = it->data;
        n->v.data_len = it->data_len;
        it->data = NULL; /* moved */
        key_uses(s, n->v.key_id, +1);
    }
    set_cursor(s, e->after_ns, e->after_path);
    finish_rekeyed(s, index);
    return 0;
}

/* Raises key_id's identity record; nothing else changes, so neither the
 * key's ModifyIndex nor the table's index moves. */
static int apply_identity(struct kr_state *s, const struct kr_entry_identity *e)
{
    struct kr_root_key *k = key_find(s, e->key_id);

    if (e->exp < 0 || (e->exp == 0 && !e->no_exp))
        return KR_EINVAL;
    if (k == NULL)
        return KR_ENOTFOUND;
    if (e->exp > k->id_max_exp)
        k->id_max_exp = e->exp;
    if (e->no_exp)
        k->id_no_exp = true;
    return 0;
}

void kr_state_rekey_cursor(const struct kr_state *s, const char **ns,
                           const char **path)
{
    *ns = s->rekey_ns;
    *path = s->rekey_path;
}

int kr_state_apply(struct kr_state *s, uint64_t index, const void *buf,
                   size_t len)
{
    struct kr_entry e;
    char errmsg[KR_ERRMSG_SIZE];
    int rv;

    rv = kr_entry_decode(&e, buf, len, errmsg);
    if (rv != 0) {
        KR_ERROR("state", "entry %llu rejected: %s", (unsigned long long)index,
                 errmsg);
        return rv;
    }
    switch (e.type) {
    case KR_ENTRY_KEY_UPSERT:
        rv = apply_key_upsert(s, index, &e.key_upsert);
        break;
    case KR_ENTRY_KEY_DELETE:
        rv = apply_key_delete(s, index, &e.key_delete);
        break;
    case KR_ENTRY_VAR_APPLY:
        rv = apply_var(s, index, &e.var);
        break;
    case KR_ENTRY_VAR_REKEY:
        rv = apply_rekey(s, index, &e.rekey);
        break;
    case KR_ENTRY_IDENTITY:
        rv = apply_identity(s, &e.identity);
        break;
    default:
        rv = KR_ECORRUPT;
        break;
    }
    kr_entry_clear(&e);
    return rv;
}

uint64_t kr_state_keys_index(const struct kr_state *s)
{
    return s->keys_index;
}

uint64_t kr_state_vars_index(const struct kr_state *s)
{
    return s->vars_index;
}

uint64_t kr_state_keys_generation(const struct kr_state *s)
{
    return s->keys_gen;
}

size_t kr_state_key_count(const struct kr_state *s)
{
    return s->n_keys;
}

const struct kr_root_key *kr_state_key_at(const struct kr_state *s, size_t i)
{
    return i < s->n_keys ? &s->keys[i] : NULL;
}

const struct kr_root_key *kr_state_key_get(const struct kr_state *s,
                                           const char *key_id)
{
    return key_find(s, key_id);
}

const struct kr_root_key *kr_state_key_active(const struct kr_state *s)
{
    for (size_t i = 0; i < s->n_keys; i++)
        if (s->keys[i].state == KR_KEY_ACTIVE)
            return &s->keys[i];
    return NULL;
}

const struct kr_var *kr_state_var_get(const struct kr_state *s, const char *ns,
                                      const char *path)
{
    struct var_node *n = var_find(s, ns, path);

    return n != NULL ? &n->v : NULL;
}

size_t kr_state_var_count(const struct kr_state *s)
{
    return s->n_vars;
}

static bool var_matches(const struct kr_var *v, const char *ns,
                        const char *prefix)
{
    if (ns != NULL && strcmp(ns, "*") != 0 && strcmp(v->namespace, ns) != 0)
        return false;
    return prefix == NULL || strncmp(v->path, prefix, strlen(prefix)) == 0;
}

static const struct kr_var *scan(const struct kr_state *s, struct var_node *n,
                                 const char *ns, const char *prefix)
{
    /* libbsd's RB_NEXT ignores its head argument. */
    (void)s;

    bool one_ns = ns != NULL && strcmp(ns, "*") != 0;

    for (; n != NULL; n = RB_NEXT(var_tree, NULL, n)) {
        /* Inside one namespace the tree order lets us stop early. */
        if (one_ns && strcmp(n->v.namespace, ns) > 0)
            return NULL;
        if (one_ns && prefix != NULL && strcmp(n->v.namespace, ns) == 0 &&
            strncmp(n->v.path, prefix, strlen(prefix)) > 0)
            return NULL;
        if (var_matches(&n->v, ns, prefix))
            return &n->v;
    }
    return NULL;
}

const struct kr_var *kr_state_var_first(const struct kr_state *s,
                                        const char *ns, const char *prefix,
                                        const char *after_ns,
                                        const char *after_path)
{
    struct var_node key, *n;
    bool one_ns = ns != NULL && strcmp(ns, "*") != 0;

    if (after_ns != NULL && after_path != NULL) {
        key.v.namespace = (char *)after_ns;
        key.v.path = (char *)after_path;
        n = RB_NFIND(var_tree, (struct var_tree *)&s->vars, &key);
        if (n != NULL && var_cmp(n, &key) == 0)
            n = RB_NEXT(var_tree, (struct var_tree *)&s->vars, n);
    } else if (one_ns) {
        key.v.namespace = (char *)ns;
        key.v.path = (char *)(prefix != NULL ? prefix : "");
        n = RB_NFIND(var_tree, (struct var_tree *)&s->vars, &key);
    } else {
        n = RB_MIN(var_tree, (struct var_tree *)&s->vars);
    }
    return scan(s, n, ns, prefix);
}

const struct kr_var *kr_state_var_next(const struct kr_state *s,
                                       const struct kr_var *v, const char *ns,
                                       const char *prefix)
{
    struct var_node *n =
        (struct var_node *)((const char *)v - offsetof(struct var_node, v));

    return scan(s, RB_NEXT(var_tree, (struct var_tree *)&s->vars, n), ns,
                prefix);
}

int kr_var_path_validate(const char *path, char *errmsg)
{
    size_t n = strlen(path);
    const char *rest;

    if (n == 0 || n > KR_VAR_PATH_MAX)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid path \"%.*s\": must be 1 to %d characters",
                       KR_VAR_PATH_MAX, path, KR_VAR_PATH_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = path[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '~' ||
              c == '/'))
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid path \"%s\": only letters, digits and "
                           "-_~/ are allowed",
                           path);
    }
    /* The top-level "nomad" tree is reserved (spec 1.7). */
    if (strcmp(path, "nomad") == 0 || strncmp(path, "nomad/", 6) == 0) {
        rest = path + 5;
        if (*rest == '/')
            rest++;
        if (strncmp(rest, "jobs", 4) == 0 &&
            (rest[4] == '\0' || rest[4] == '/'))
            return 0;
        if (strncmp(rest, "sentinel", 8) == 0 &&
            (rest[8] == '\0' || rest[8] == '/'))
            return 0;
        if (strncmp(rest, "job-templates/", 14) == 0 && rest[14] != '\0' &&
            strchr(rest + 14, '/') == NULL)
            return 0;
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid path \"%s\": \"nomad\" is a reserved top-level "
                       "directory path, but you may write variables to "
                       "\"nomad/jobs\", \"nomad/job-templates\", or below",
                       path);
    }
    return 0;
}

static void put_record(struct kr_buf *out, uint8_t type,
                       const struct kr_buf *body)
{
    kr_buf_u8(out, type);
    kr_buf_bytes(out, body->data, body->len);
}

int kr_state_snapshot(const struct kr_state *s, struct kr_buf *out)
{
    struct kr_buf body;
    struct var_node *n;
    uint64_t n_identity = 0;

    kr_buf_init(&body);
    kr_buf_append(out, SNAP_MAGIC, 4);
    kr_buf_u8(out, SNAP_VERSION);

    kr_buf_u64(&body, s->keys_index);
    kr_buf_u64(&body, s->vars_index);
    put_record(out, SNAP_REC_INDEXES, &body);
    for (size_t i = 0; i < s->n_keys; i++) {
        body.len = 0;
        kr_codec_put_root_key(&body, &s->keys[i]);
        kr_buf_u64(&body, s->keys[i].rekey_total);
        put_record(out, SNAP_REC_ROOT_KEY, &body);
        if (s->keys[i].id_max_exp != 0 || s->keys[i].id_no_exp) {
            body.len = 0;
            kr_buf_str(&body, s->keys[i].key_id);
            kr_buf_i64(&body, s->keys[i].id_max_exp);
            kr_buf_u8(&body, s->keys[i].id_no_exp ? 1 : 0);
            put_record(out, SNAP_REC_IDENTITY, &body);
            n_identity++;
        }
    }
    if (s->rekey_ns != NULL) {
        body.len = 0;
        kr_buf_str(&body, s->rekey_ns);
        kr_buf_str(&body, s->rekey_path);
        put_record(out, SNAP_REC_REKEY, &body);
    }
    RB_FOREACH(n, var_tree, (struct var_tree *)&s->vars)
    {
        body.len = 0;
        kr_buf_str(&body, n->v.namespace);
        kr_buf_str(&body, n->v.path);
        kr_buf_str(&body, n->v.key_id);
        kr_buf_bytes(&body, n->v.data, n->v.data_len);
        kr_buf_u64(&body, n->v.create_index);
        kr_buf_u64(&body, n->v.modify_index);
        kr_buf_i64(&body, n->v.create_time);
        kr_buf_i64(&body, n->v.modify_time);
        put_record(out, SNAP_REC_VAR, &body);
    }
    /* The end record makes a snapshot cut at a record boundary invalid. */
    body.len = 0;
    kr_buf_u64(&body,
               1 + s->n_keys + n_identity + s->n_vars + (s->rekey_ns != NULL));
    put_record(out, SNAP_REC_END, &body);
    kr_buf_free(&body);
    return out->oom || body.oom ? KR_ENOMEM : 0;
}

static bool get_key_id(struct kr_rd *r, char out[KR_UUID_LEN + 1])
{
    size_t n;
    const uint8_t *p = kr_rd_bytes(r, &n);

    if (r->err || n != KR_UUID_LEN)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return kr_uuid_valid(out);
}

static bool ns_valid(const char *ns)
{
    if (*ns == '\0')
        return false;
    for (; *ns != '\0'; ns++)
        if (!((*ns >= 'a' && *ns <= 'z') || (*ns >= 'A' && *ns <= 'Z') ||
              (*ns >= '0' && *ns <= '9') || *ns == '-'))
            return false;
    return true;
}

static bool restore_var(struct kr_state *s, struct kr_rd *r)
{
    struct var_node *n = calloc(1, sizeof(*n));
    struct var_node *last;
    size_t len;
    const uint8_t *data;

    if (n == NULL)
        return false;
    n->v.namespace = kr_rd_strdup(r, KR_NAMESPACE_MAX);
    n->v.path = kr_rd_strdup(r, KR_VAR_PATH_MAX);
    if (n->v.namespace == NULL || n->v.path == NULL)
        goto fail;
    if (!get_key_id(r, n->v.key_id))
        goto fail;
    data = kr_rd_bytes(r, &len);
    if (r->err || len < 28 || len > KR_VAR_DATA_MAX)
        goto fail;
    n->v.data = malloc(len);
    if (n->v.data == NULL)
        goto fail;
    memcpy(n->v.data, data, len);
    n->v.data_len = len;
    n->v.create_index = kr_rd_u64(r);
    n->v.modify_index = kr_rd_u64(r);
    n->v.create_time = kr_rd_i64(r);
    n->v.modify_time = kr_rd_i64(r);
    /* Records must come in tree order, as kr_state_snapshot writes them:
     * one state has exactly one encoding. */
    last = RB_MAX(var_tree, &s->vars);
    if (!kr_rd_done(r) || kr_var_path_validate(n->v.path, NULL) != 0 ||
        !ns_valid(n->v.namespace) || (last != NULL && var_cmp(last, n) >= 0))
        goto fail;
    RB_INSERT(var_tree, &s->vars, n);
    s->n_vars++;
    key_uses(s, n->v.key_id, +1);
    return true;
fail:
    var_node_free(n);
    return false;
}

/* The identity record of the key restored just before it: once, before
 * any Variable, naming that key, and not empty (the writer leaves empty ones
 * out, so one state keeps one encoding). */
static bool restore_identity(struct kr_state *s, struct kr_rd *r)
{
    struct kr_root_key *k = s->n_keys > 0 ? &s->keys[s->n_keys - 1] : NULL;
    char key_id[KR_UUID_LEN + 1];
    int64_t exp;
    uint8_t no_exp;

    if (!get_key_id(r, key_id))
        return false;
    exp = kr_rd_i64(r);
    no_exp = kr_rd_u8(r);
    if (!kr_rd_done(r) || k == NULL || s->n_vars > 0 ||
        strcmp(k->key_id, key_id) != 0 || k->id_max_exp != 0 || k->id_no_exp ||
        exp < 0 || no_exp > 1 || (exp == 0 && no_exp == 0))
        return false;
    k->id_max_exp = exp;
    k->id_no_exp = no_exp == 1;
    return true;
}

/* At most one checkpoint, naming a valid namespace and path. */
static bool restore_cursor(struct kr_state *s, struct kr_rd *r)
{
    char *ns = kr_rd_strdup(r, KR_NAMESPACE_MAX);
    char *path = kr_rd_strdup(r, KR_VAR_PATH_MAX);
    bool ok = ns != NULL && path != NULL && kr_rd_done(r) &&
              s->rekey_ns == NULL && ns_valid(ns) &&
              kr_var_path_validate(path, NULL) == 0;

    if (ok) {
        s->rekey_ns = ns;
        s->rekey_path = path;
    } else {
        free(ns);
        free(path);
    }
    return ok;
}

int kr_state_restore(struct kr_state *s, const void *buf, size_t len,
                     char *errmsg)
{
    struct kr_state *fresh = NULL;
    struct kr_rd r, body;
    struct kr_root_key key;
    size_t n_active = 0;
    uint64_t n_records = 0;
    uint8_t prev = 0;
    bool ended = false;
    int rv = KR_ECORRUPT;

    if (kr_state_new(&fresh) != 0)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    kr_rd_init(&r, buf, len);
    if (len < 5 || memcmp(buf, SNAP_MAGIC, 4) != 0) {
        kr_errf(errmsg, rv, "not a keyraft state snapshot");
        goto out;
    }
    r.off = 4;
    if (kr_rd_u8(&r) != SNAP_VERSION) {
        kr_errf(errmsg, rv, "unsupported state snapshot version");
        goto out;
    }
    while (r.off < r.len) {
        uint8_t type = kr_rd_u8(&r);
        size_t blen;
        const uint8_t *b = kr_rd_bytes(&r, &blen);

        if (r.err) {
            kr_errf(errmsg, rv, "state snapshot truncated");
            goto out;
        }
        kr_rd_init(&body, b, blen);
        /* Exactly one indexes record, first; nothing after the end. */
        if (ended || (n_records == 0) != (type == SNAP_REC_INDEXES))
            goto bad;
        switch (type) {
        case SNAP_REC_INDEXES:
            fresh->keys_index = kr_rd_u64(&body);
            fresh->vars_index = kr_rd_u64(&body);
            if (!kr_rd_done(&body))
                goto bad;
            break;
        case SNAP_REC_ROOT_KEY:
            /* Keys precede Variables, so n_vars can be rebuilt. */
            if (fresh->n_vars > 0 || !kr_codec_get_root_key(&body, &key))
                goto bad;
            /* rekey_total came later: a record without it is older. */
            if (!kr_rd_done(&body))
                key.rekey_total = kr_rd_u64(&body);
            if (!kr_rd_done(&body) || !kr_uuid_valid(key.key_id) ||
                key_find(fresh, key.key_id) != NULL) {
                kr_root_key_clear(&key);
                goto bad;
            }
            n_active += key.state == KR_KEY_ACTIVE;
            key.n_vars = 0;
            key_append(fresh, &key);
            break;
        case SNAP_REC_VAR:
            if (!restore_var(fresh, &body))
                goto bad;
            break;
        case SNAP_REC_REKEY:
            if (!restore_cursor(fresh, &body))
                goto bad;
            break;
        case SNAP_REC_IDENTITY:
            if (prev != SNAP_REC_ROOT_KEY || !restore_identity(fresh, &body))
                goto bad;
            break;
        case SNAP_REC_END:
            if (kr_rd_u64(&body) != n_records || !kr_rd_done(&body))
                goto bad;
            ended = true;
            break;
        default:
            kr_errf(errmsg, rv, "unknown state record type %u", type);
            goto out;
        }
        n_records++;
        prev = type;
    }
    if (!ended) {
        kr_errf(errmsg, rv, "state snapshot truncated");
        goto out;
    }
    if (n_active > 1) {
        kr_errf(errmsg, rv, "state snapshot has %zu active keys", n_active);
        goto out;
    }
    /* Swap: the old contents go, the fresh ones stay in s. */
    fresh->keys_gen = s->keys_gen + 1;
    state_clear(s);
    *s = *fresh;
    free(fresh);
    fresh = NULL;
    rv = 0;
    goto out;
bad:
    kr_errf(errmsg, rv, "malformed state record at byte %zu", r.off);
out:
    kr_state_free(fresh);
    return rv;
}
