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

#include <stdarg.h>
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
_Static_assert(sizeof(KR_SNAP_HEADER) == 6 && SNAP_VERSION == 1,
               "KR_SNAP_HEADER is SNAP_MAGIC and SNAP_VERSION");

/* ROOT_KEY record flags (the byte after rekey_total). */
#define KEY_FLAG_REDACTED 1u

struct var_node {
    RB_ENTRY(var_node) link;
    /* The freeze that has this Variable in its view already (or that
     * began after it was made); fills RB_ENTRY's padding. */
    uint32_t epoch;
    struct kr_var v;
};

static int var_cmp(const struct var_node *a, const struct var_node *b)
{
    int c = strcmp(a->v.namespace, b->v.namespace);
    return c != 0 ? c : strcmp(a->v.path, b->v.path);
}

RB_HEAD(var_tree, var_node);
RB_GENERATE_STATIC(var_tree, var_node, link, var_cmp)

/* A restore being staged: the state.bin received so far, decoded into
 * the state its loader builds. */
struct stage {
    uint64_t id;
    uint64_t total;
    uint64_t received;
    struct kr_state_loader *loader;
};

struct kr_state {
    struct kr_root_key *keys; /* ordered by create_index */
    size_t n_keys;
    size_t cap_keys;
    struct var_tree vars;
    size_t n_vars;
    size_t var_bytes; /* the Variables' records in an encoding, in all */
    uint64_t keys_index;
    uint64_t vars_index;
    uint64_t keys_gen;
    char *rekey_ns, *rekey_path; /* checkpoint; NULL: from the start */
    struct stage *stage;         /* a staged restore, or NULL */
    uint64_t restore_gen;
    /* Memory for frozen views, which outlives the state's contents (a
     * restore's install keeps it whole). */
    struct {
        /* Views alive (kr_state_freeze): while there is one, the
         * namespace, path and data buffers that applies let go of wait in
         * the graveyard, since a view may still be reading them. */
        unsigned frozen;
        void **graveyard;
        size_t n_grave, cap_grave;
        /* The array of the last view, kept for the next freeze. */
        struct frozen_var *spare;
        size_t spare_cap;
        bool spare_asked; /* kr_state_spare_wanted said so; not given */
        /* The view being filled in steps (kr_state_freeze_begin): the
         * next node to copy, and the epoch its nodes are marked with. */
        struct kr_state_frozen *filling;
        struct var_node *fill_next;
        uint32_t epoch;
    } mem;
};

static void stage_free(struct stage *st);
static void stage_drop(struct kr_state *s, struct stage *st);
static void fill_touch(struct kr_state *s, struct var_node *n);
static size_t var_record_size(const struct kr_var *v);
static void fill_finish(struct kr_state *s);

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

/* Frees a buffer a Variable let go of, or keeps it for a frozen view
 * that may be reading it. */
static void release(struct kr_state *s, void *p)
{
    if (p == NULL)
        return;
    if (s == NULL || s->mem.frozen == 0) {
        free(p);
        return;
    }
    if (s->mem.n_grave == s->mem.cap_grave) {
        size_t cap = s->mem.cap_grave ? 2 * s->mem.cap_grave : 64;
        void **g = realloc(s->mem.graveyard, cap * sizeof(*g));
        KR_BUG_ON(g == NULL); /* apply cannot fail halfway */
        s->mem.graveyard = g;
        s->mem.cap_grave = cap;
    }
    s->mem.graveyard[s->mem.n_grave++] = p;
}

/* Frees a node of s's tree (s NULL: of a tree no view can see). */
static void var_node_free(struct kr_state *s, struct var_node *n)
{
    release(s, n->v.namespace);
    release(s, n->v.path);
    release(s, n->v.data);
    free(n);
}

/* Releases the contents of s, leaving it empty. */
static void state_clear(struct kr_state *s)
{
    struct var_node *n, *next;

    fill_finish(s);
    for (n = RB_MIN(var_tree, &s->vars); n != NULL; n = next) {
        next = RB_NEXT(var_tree, &s->vars, n);
        RB_REMOVE(var_tree, &s->vars, n);
        var_node_free(s, n);
    }
    for (size_t i = 0; i < s->n_keys; i++)
        kr_root_key_clear(&s->keys[i]);
    free(s->keys);
    s->keys = NULL;
    s->n_keys = s->cap_keys = 0;
    s->n_vars = 0;
    s->var_bytes = 0;
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
    KR_BUG_ON(s->mem.frozen != 0);
    state_clear(s);
    stage_free(s->stage);
    free(s->mem.graveyard);
    free(s->mem.spare);
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
    /* A redacted key has no material: it can never encrypt again. */
    if (becoming_active && k != NULL && k->redacted)
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

/*
 * var_find for the items of a rekey batch, which come in (namespace,
 * path) order: the next item is usually near's successor, so a few steps
 * from near are tried before a search from the root.  near is a node
 * before the item, or NULL.
 */
#define NEAR_STEPS 4
static struct var_node *var_find_near(const struct kr_state *s,
                                      struct var_node *near, const char *ns,
                                      const char *path)
{
    struct var_node key, *n = near;

    key.v.namespace = (char *)ns;
    key.v.path = (char *)path;
    if (n == NULL || var_cmp(n, &key) >= 0)
        return var_find(s, ns, path);
    for (int i = 0; i < NEAR_STEPS; i++) {
        int c;
        n = RB_NEXT(var_tree, (struct var_tree *)&s->vars, n);
        if (n == NULL)
            return NULL; /* past the last Variable */
        c = var_cmp(n, &key);
        if (c >= 0)
            return c == 0 ? n : NULL; /* or between two neighbours */
    }
    return var_find(s, ns, path);
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

/* Before an apply changes n or removes it: the view being filled gets
 * its old contents, and n leaves its key's count and the encoded length.
 * var_attach puts the changed n back in both. */
static void var_detach(struct kr_state *s, struct var_node *n)
{
    fill_touch(s, n);
    key_uses(s, n->v.key_id, -1);
    s->var_bytes -= var_record_size(&n->v);
}

static void var_attach(struct kr_state *s, struct var_node *n)
{
    key_uses(s, n->v.key_id, +1);
    s->var_bytes += var_record_size(&n->v);
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
        var_detach(s, n);
        if (s->mem.fill_next == n)
            s->mem.fill_next = RB_NEXT(var_tree, &s->vars, n);
        RB_REMOVE(var_tree, &s->vars, n);
        var_node_free(s, n);
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
        /* Not in a view being filled, which is of an earlier index. */
        n->epoch = s->mem.epoch;
        RB_INSERT(var_tree, &s->vars, n);
        s->n_vars++;
    } else {
        var_detach(s, n);
        release(s, n->v.data);
    }
    memcpy(n->v.key_id, e->key_id, sizeof(n->v.key_id));
    n->v.data = e->data;
    n->v.data_len = e->data_len;
    e->data = NULL; /* moved */
    e->data_len = 0;
    n->v.modify_index = index;
    n->v.modify_time = e->now;
    var_attach(s, n);
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
    struct var_node *near = NULL;

    if (active == NULL || strcmp(active->key_id, e->key_id) != 0)
        return KR_ECONFLICT;
    for (uint32_t i = 0; i < e->n_items; i++)
        if (e->items[i].data_len < 28 || e->items[i].data_len > KR_VAR_DATA_MAX)
            return KR_EINVAL;
    for (uint32_t i = 0; i < e->n_items; i++) {
        struct kr_rekey_item *it = &e->items[i];
        struct var_node *n = var_find_near(s, near, it->namespace, it->path);
        if (n != NULL)
            near = n; /* the tree's shape does not change below */
        if (!rekey_applies(s, n, it))
            continue;
        var_detach(s, n);
        release(s, n->v.data);
        memcpy(n->v.key_id, e->key_id, sizeof(n->v.key_id));
        n->v.data = it->data;
        n->v.data_len = it->data_len;
        it->data = NULL; /* moved */
        var_attach(s, n);
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

static int apply_restore_begin(struct kr_state *s,
                               const struct kr_entry_restore *e);
static int apply_restore_chunk(struct kr_state *s, uint64_t index,
                               const struct kr_entry_restore *e);
static int apply_restore_commit(struct kr_state *s, uint64_t index,
                                const struct kr_entry_restore *e);
static int apply_restore_abort(struct kr_state *s,
                               const struct kr_entry_restore *e);

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
    case KR_ENTRY_RESTORE_BEGIN:
        rv = apply_restore_begin(s, &e.restore);
        break;
    case KR_ENTRY_RESTORE_CHUNK:
        rv = apply_restore_chunk(s, index, &e.restore);
        break;
    case KR_ENTRY_RESTORE_COMMIT:
        rv = apply_restore_commit(s, index, &e.restore);
        break;
    case KR_ENTRY_RESTORE_ABORT:
        rv = apply_restore_abort(s, &e.restore);
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

const char *kr_snap_record_name(uint8_t type)
{
    static const struct {
        uint8_t type;
        const char *name;
    } names[] = {
        {KR_SNAP_REC_INDEXES, "Indexes"},
        {KR_SNAP_REC_ROOT_KEY, "RootKey"},
        {KR_SNAP_REC_VAR, "Variable"},
        {KR_SNAP_REC_IDENTITY, "KeyIdentity"},
        {KR_SNAP_REC_REKEY, "RekeyCheckpoint"},
        {KR_SNAP_REC_STAGE, "StagedRestore"},
        {KR_SNAP_REC_END, "End"},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].type == type)
            return names[i].name;
    return NULL;
}

/* ---- writing the snapshot encoding ---- */

static void put_record(struct kr_buf *out, uint8_t type,
                       const struct kr_buf *body)
{
    kr_buf_u8(out, type);
    kr_buf_bytes(out, body->data, body->len);
}

/* A ROOT_KEY record's body.  Fields after the codec's record were added
 * later and are read only when present; the flags byte is written only
 * when a flag is set, so one key has exactly one encoding. */
static void put_key_body(struct kr_buf *body, const struct kr_root_key *k)
{
    kr_codec_put_root_key(body, k);
    kr_buf_u64(body, k->rekey_total);
    if (k->redacted)
        kr_buf_u8(body, KEY_FLAG_REDACTED);
}

/* A key's identity record goes right after its ROOT_KEY record, and only
 * when the key has one (one state, one encoding). */
#define IDENTITY_RECORD_SIZE (5 + 4 + KR_UUID_LEN + 8 + 1)

static bool key_has_identity(const struct kr_root_key *k)
{
    return k->id_max_exp != 0 || k->id_no_exp;
}

static void put_identity_body(struct kr_buf *body, const struct kr_root_key *k)
{
    kr_buf_str(body, k->key_id);
    kr_buf_i64(body, k->id_max_exp);
    kr_buf_u8(body, k->id_no_exp ? 1 : 0);
}

static size_t var_record_size(const struct kr_var *v)
{
    return 5 + 4 + strlen(v->namespace) + 4 + strlen(v->path) + 4 +
           strlen(v->key_id) + 4 + v->data_len + 32;
}

static uint8_t *put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + n;
}

static uint8_t *put_lv(uint8_t *p, const void *s, size_t n)
{
    p = put_le(p, n, 4);
    if (n > 0)
        memcpy(p, s, n);
    return p + n;
}

/* Writes v's VAR record at p, which has var_record_size(v) bytes: the
 * same bytes as kr_buf_str and kr_buf_u64 field by field would make,
 * without a body buffer and its second copy (a million Variables are a
 * million records).  Returns the end of the record. */
static uint8_t *put_var_at(uint8_t *p, const struct kr_var *v)
{
    size_t len = var_record_size(v);

    *p++ = KR_SNAP_REC_VAR;
    p = put_le(p, len - 5, 4);
    p = put_lv(p, v->namespace, strlen(v->namespace));
    p = put_lv(p, v->path, strlen(v->path));
    p = put_lv(p, v->key_id, strlen(v->key_id));
    p = put_lv(p, v->data, v->data_len);
    p = put_le(p, v->create_index, 8);
    p = put_le(p, v->modify_index, 8);
    p = put_le(p, (uint64_t)v->create_time, 8);
    return put_le(p, (uint64_t)v->modify_time, 8);
}

static void put_var_record(struct kr_buf *out, const struct kr_var *v)
{
    size_t len = var_record_size(v);

    if (kr_buf_reserve(out, len) != 0)
        return;
    put_var_at(out->data + out->len, v);
    out->len += len;
}

static void put_stage(struct kr_buf *out, const struct stage *st);

/*
 * The records of s from INDEXES up to (not including) its Variables.  A
 * staged restore is written when with_stage is set.  Returns how many
 * records were written.
 */
static uint64_t put_head_records(const struct kr_state *s, bool with_stage,
                                 struct kr_buf *out, struct kr_buf *body)
{
    uint64_t count = 0;

    body->len = 0;
    kr_buf_u64(body, s->keys_index);
    kr_buf_u64(body, s->vars_index);
    put_record(out, KR_SNAP_REC_INDEXES, body);
    count++;
    for (size_t i = 0; i < s->n_keys; i++) {
        body->len = 0;
        put_key_body(body, &s->keys[i]);
        put_record(out, KR_SNAP_REC_ROOT_KEY, body);
        count++;
        if (key_has_identity(&s->keys[i])) {
            body->len = 0;
            put_identity_body(body, &s->keys[i]);
            put_record(out, KR_SNAP_REC_IDENTITY, body);
            count++;
        }
    }
    if (s->rekey_ns != NULL) {
        body->len = 0;
        kr_buf_str(body, s->rekey_ns);
        kr_buf_str(body, s->rekey_path);
        put_record(out, KR_SNAP_REC_REKEY, body);
        count++;
    }
    if (with_stage && s->stage != NULL) {
        put_stage(out, s->stage);
        count++;
    }
    return count;
}

/* Every record of s before END; returns how many. */
static uint64_t put_records(const struct kr_state *s, bool with_stage,
                            struct kr_buf *out, struct kr_buf *body)
{
    uint64_t count = put_head_records(s, with_stage, out, body);
    struct var_node *n;

    RB_FOREACH(n, var_tree, (struct var_tree *)&s->vars)
    {
        put_var_record(out, &n->v);
        count++;
    }
    return count;
}

/* The END record: how many records came before it.  It makes a snapshot
 * cut at a record boundary invalid. */
#define END_RECORD_SIZE (5 + 8)

static uint8_t *put_end_at(uint8_t *p, uint64_t count)
{
    *p++ = KR_SNAP_REC_END;
    p = put_le(p, 8, 4);
    return put_le(p, count, 8);
}

static int write_state(const struct kr_state *s, bool with_stage,
                       struct kr_buf *out)
{
    struct kr_buf body;
    uint64_t count;
    bool oom;

    kr_buf_init(&body);
    kr_buf_append(out, SNAP_MAGIC, 4);
    kr_buf_u8(out, SNAP_VERSION);
    count = put_records(s, with_stage, out, &body);
    if (kr_buf_reserve(out, END_RECORD_SIZE) == 0) {
        put_end_at(out->data + out->len, count);
        out->len += END_RECORD_SIZE;
    }
    oom = body.oom;
    kr_buf_free(&body);
    return out->oom || oom ? KR_ENOMEM : 0;
}

int kr_state_snapshot(const struct kr_state *s, struct kr_buf *out)
{
    return write_state(s, true, out);
}

size_t kr_state_save_size(const struct kr_state *s)
{
    struct kr_buf body;
    size_t size = 5 + 5 + 16 + END_RECORD_SIZE;

    /* Keys and the checkpoint are few: encode them; Variables are many:
     * add up their lengths. */
    kr_buf_init(&body);
    for (size_t i = 0; i < s->n_keys; i++) {
        body.len = 0;
        put_key_body(&body, &s->keys[i]);
        size += 5 + body.len;
        if (key_has_identity(&s->keys[i]))
            size += IDENTITY_RECORD_SIZE;
    }
    kr_buf_free(&body);
    if (s->rekey_ns != NULL)
        size += 5 + 4 + strlen(s->rekey_ns) + 4 + strlen(s->rekey_path);
    return size + s->var_bytes;
}

int kr_state_save(const struct kr_state *s, struct kr_buf *out)
{
    /* One allocation of the exact size instead of doubling copies. */
    if (kr_buf_reserve(out, kr_state_save_size(s)) != 0)
        return KR_ENOMEM;
    return write_state(s, false, out);
}

/* ---- frozen views: the encoding, written off the loop ---- */

/* What a view keeps of one Variable: its buffers (the state's, kept alive
 * by the graveyard) and a copy of what applies change in place.  64
 * bytes instead of a struct kr_var's 104: the KeyID is an index into the
 * view's table of KeyIDs. */
struct frozen_var {
    const char *ns, *path;
    const uint8_t *data;
    uint32_t data_len;
    uint32_t key;
    uint64_t create_index, modify_index;
    int64_t create_time, modify_time;
};
_Static_assert(KR_VAR_DATA_MAX <= UINT32_MAX, "data_len fits 32 bits");

struct kr_state_frozen {
    struct kr_buf head; /* magic, INDEXES .. the records before VARs */
    uint64_t n_head;    /* records in head */
    /* In path order, copied from the tree by kr_state_freeze_step. */
    struct frozen_var *vars;
    size_t n_vars, cap_vars;
    /* Variables an apply changed or deleted before the step reached
     * them, as they were; in path order once the view is filled. */
    struct frozen_var *early;
    size_t n_early, cap_early;
    uint32_t key_hint; /* the last key index the steps found */
    char (*key_ids)[KR_UUID_LEN + 1];
    size_t n_key_ids, cap_key_ids;
    /* A staged restore's Variables (with_stage), copied at the freeze.
     * They sit inside the STAGE record, whose start ends head, and
     * stage_tail (the nested END, a cut record) follows them. */
    struct frozen_var *stage_vars;
    size_t n_stage_vars;
    struct kr_buf stage_tail;
    size_t size; /* the whole encoding */
};

/* The index of key_id in f's table, added when new (a Variable may name a
 * key removed with force).  hint: the last index found. */
static uint32_t frozen_key(struct kr_state_frozen *f, const char *key_id,
                           uint32_t hint)
{
    if (hint < f->n_key_ids && strcmp(f->key_ids[hint], key_id) == 0)
        return hint;
    for (size_t i = 0; i < f->n_key_ids; i++)
        if (strcmp(f->key_ids[i], key_id) == 0)
            return (uint32_t)i;
    if (f->n_key_ids == f->cap_key_ids) {
        size_t cap = f->cap_key_ids ? 2 * f->cap_key_ids : 16;
        void *k = realloc(f->key_ids, cap * sizeof(*f->key_ids));
        KR_BUG_ON(k == NULL);
        f->key_ids = k;
        f->cap_key_ids = cap;
    }
    memcpy(f->key_ids[f->n_key_ids], key_id, KR_UUID_LEN + 1);
    return (uint32_t)f->n_key_ids++;
}

/* The Variable as put_var_at reads it. */
static void frozen_var_get(const struct kr_state_frozen *f,
                           const struct frozen_var *fv, struct kr_var *v)
{
    v->namespace = (char *)fv->ns;
    v->path = (char *)fv->path;
    memcpy(v->key_id, f->key_ids[fv->key], KR_UUID_LEN + 1);
    v->data = (uint8_t *)fv->data;
    v->data_len = fv->data_len;
    v->create_index = fv->create_index;
    v->modify_index = fv->modify_index;
    v->create_time = fv->create_time;
    v->modify_time = fv->modify_time;
}

/* fv := n's Variable as it is now. */
static void frozen_copy(struct kr_state_frozen *f, struct frozen_var *fv,
                        const struct var_node *n)
{
    f->key_hint = frozen_key(f, n->v.key_id, f->key_hint);
    fv->ns = n->v.namespace;
    fv->path = n->v.path;
    fv->data = n->v.data;
    fv->data_len = (uint32_t)n->v.data_len;
    fv->key = f->key_hint;
    fv->create_index = n->v.create_index;
    fv->modify_index = n->v.modify_index;
    fv->create_time = n->v.create_time;
    fv->modify_time = n->v.modify_time;
}

static int frozen_cmp(const void *a, const void *b)
{
    const struct frozen_var *x = a, *y = b;
    int c = strcmp(x->ns, y->ns);

    return c != 0 ? c : strcmp(x->path, y->path);
}

/* Before an apply changes or deletes n: a view being filled that has not
 * copied n yet takes it as it is now. */
static void fill_touch(struct kr_state *s, struct var_node *n)
{
    struct kr_state_frozen *f = s->mem.filling;

    if (f == NULL || n->epoch == s->mem.epoch)
        return;
    if (f->n_early == f->cap_early) {
        size_t cap = f->cap_early ? 2 * f->cap_early : 256;
        void *e = realloc(f->early, cap * sizeof(*f->early));
        KR_BUG_ON(e == NULL); /* apply cannot fail halfway */
        f->early = e;
        f->cap_early = cap;
    }
    frozen_copy(f, &f->early[f->n_early++], n);
    n->epoch = s->mem.epoch;
}

bool kr_state_freeze_step(struct kr_state *s, struct kr_state_frozen *view,
                          size_t budget)
{
    struct kr_state_frozen *f = s->mem.filling;
    struct var_node *n;

    if (f == NULL || (view != NULL && f != view))
        return true; /* view is whole (another may be filling) */
    for (; budget > 0 && (n = s->mem.fill_next) != NULL; budget--) {
        s->mem.fill_next = RB_NEXT(var_tree, &s->vars, n);
        if (n->epoch == s->mem.epoch)
            continue; /* made after the freeze, or taken early */
        n->epoch = s->mem.epoch;
        /* Each Variable of the freeze lands in vars or early once. */
        KR_BUG_ON(f->n_vars == f->cap_vars);
        frozen_copy(f, &f->vars[f->n_vars++], n);
    }
    if (s->mem.fill_next != NULL)
        return false;
    if (f->n_early > 1)
        qsort(f->early, f->n_early, sizeof(*f->early), frozen_cmp);
    s->mem.filling = NULL;
    return true;
}

static void fill_finish(struct kr_state *s)
{
    (void)kr_state_freeze_step(s, NULL, SIZE_MAX);
}

/* A new epoch marks the nodes of the next view; on the (once in 2^32
 * freezes) wrap every node is unmarked first. */
static void next_epoch(struct kr_state *s)
{
    struct var_node *n;

    if (++s->mem.epoch != 0)
        return;
    RB_FOREACH(n, var_tree, &s->vars)
    {
        n->epoch = 0;
    }
    s->mem.epoch = 1;
}

int kr_state_freeze(struct kr_state *s, bool with_stage,
                    struct kr_state_frozen **out)
{
    int rv = kr_state_freeze_begin(s, with_stage, out);

    if (rv == 0)
        fill_finish(s);
    return rv;
}

static bool put_stage_split(struct kr_buf *head, struct kr_buf *tail,
                            const struct stage *st);
static bool freeze_stage_vars(struct kr_state_frozen *f,
                              const struct stage *st);
static size_t stage_var_bytes(const struct stage *st);

int kr_state_freeze_begin(struct kr_state *s, bool with_stage,
                          struct kr_state_frozen **out)
{
    struct kr_state_frozen *f;
    struct kr_buf body;
    bool oom;

    /* One view fills at a time. */
    fill_finish(s);
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return KR_ENOMEM;
    kr_buf_init(&f->head);
    kr_buf_init(&f->stage_tail);
    kr_buf_init(&body);
    kr_buf_append(&f->head, SNAP_MAGIC, 4);
    kr_buf_u8(&f->head, SNAP_VERSION);
    f->n_head = put_head_records(s, false, &f->head, &body);
    oom = body.oom || f->head.oom;
    kr_buf_free(&body);
    if (!oom && with_stage && s->stage != NULL) {
        oom = !put_stage_split(&f->head, &f->stage_tail, s->stage) ||
              !freeze_stage_vars(f, s->stage);
        f->n_head++;
    }
    /* The last view's array, when big enough: its pages are already
     * there, and faulting in tens of MB is most of a freeze's cost. */
    if (!oom && s->mem.spare != NULL && s->mem.spare_cap >= s->n_vars) {
        f->vars = s->mem.spare;
        f->cap_vars = s->mem.spare_cap;
        s->mem.spare = NULL;
        s->mem.spare_cap = 0;
    } else if (!oom && s->n_vars > 0) {
        f->cap_vars = s->n_vars + s->n_vars / 4;
        f->vars = malloc(f->cap_vars * sizeof(*f->vars));
        oom = f->vars == NULL;
    }
    if (oom) {
        kr_buf_free(&f->head);
        kr_buf_free(&f->stage_tail);
        free(f->stage_vars);
        free(f->key_ids);
        free(f);
        return KR_ENOMEM;
    }
    for (size_t k = 0; k < s->n_keys; k++)
        frozen_key(f, s->keys[k].key_id, 0);
    /* The Variables' part is kept up to date by every apply. */
    f->size = f->head.len + END_RECORD_SIZE + s->var_bytes;
    if (with_stage && s->stage != NULL)
        f->size += f->stage_tail.len + stage_var_bytes(s->stage);
    next_epoch(s);
    s->mem.filling = f;
    s->mem.fill_next = RB_MIN(var_tree, &s->vars);
    s->mem.frozen++;
    *out = f;
    return 0;
}

/* The view's Variables in path order: vars and early merged. */
struct frozen_iter {
    size_t i, j;
};

static const struct frozen_var *frozen_next(const struct kr_state_frozen *f,
                                            struct frozen_iter *it)
{
    if (it->j < f->n_early &&
        (it->i == f->n_vars ||
         frozen_cmp(&f->early[it->j], &f->vars[it->i]) < 0))
        return &f->early[it->j++];
    if (it->i < f->n_vars)
        return &f->vars[it->i++];
    return NULL;
}

size_t kr_state_frozen_size(const struct kr_state_frozen *f)
{
    return f->size;
}

size_t kr_state_frozen_head_size(const struct kr_state_frozen *f)
{
    return f->head.len;
}

/* A record larger than the emit chunk, in a buffer of its own. */
static int emit_big(const struct kr_var *v, size_t len, kr_state_emit_fn out,
                    void *arg, char *errmsg)
{
    uint8_t *b = malloc(len);
    int rv;

    if (b == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    put_var_at(b, v);
    rv = out(arg, b, len, errmsg);
    free(b);
    return rv;
}

/* Appends fv's record to buf (at *p), handing buf to out first when it
 * would not fit. */
static int emit_var(const struct kr_state_frozen *f,
                    const struct frozen_var *fv, uint8_t *buf, uint8_t **p,
                    kr_state_emit_fn out, void *arg, char *errmsg)
{
    struct kr_var v;
    size_t len;
    int rv = 0;

    frozen_var_get(f, fv, &v);
    len = var_record_size(&v);
    if ((size_t)(*p - buf) + len > KR_STATE_EMIT_CHUNK) {
        rv = out(arg, buf, (size_t)(*p - buf), errmsg);
        *p = buf;
    }
    if (rv != 0)
        return rv;
    if (len > KR_STATE_EMIT_CHUNK) /* one Variable near the 1 MiB cap */
        return emit_big(&v, len, out, arg, errmsg);
    *p = put_var_at(*p, &v);
    return 0;
}

int kr_state_frozen_emit(const struct kr_state_frozen *f, kr_state_emit_fn out,
                         void *arg, char *errmsg)
{
    uint8_t *buf = malloc(KR_STATE_EMIT_CHUNK);
    int rv;

    if (buf == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    rv = kr_state_frozen_emit_into(f, buf, out, arg, errmsg);
    free(buf);
    return rv;
}

int kr_state_frozen_emit_into(const struct kr_state_frozen *f, uint8_t *buf,
                              kr_state_emit_fn out, void *arg, char *errmsg)
{
    uint8_t *p = buf;
    struct frozen_iter it = {0};
    const struct frozen_var *fv;
    int rv;

    rv = out(arg, f->head.data, f->head.len, errmsg);
    if (rv != 0)
        return rv;
    for (size_t i = 0; rv == 0 && i < f->n_stage_vars; i++)
        rv = emit_var(f, &f->stage_vars[i], buf, &p, out, arg, errmsg);
    if (rv == 0 && f->stage_tail.len > 0) {
        rv = out(arg, buf, (size_t)(p - buf), errmsg);
        p = buf;
        if (rv == 0)
            rv = out(arg, f->stage_tail.data, f->stage_tail.len, errmsg);
    }
    while (rv == 0 && (fv = frozen_next(f, &it)) != NULL)
        rv = emit_var(f, fv, buf, &p, out, arg, errmsg);
    if (rv == 0) {
        if ((size_t)(p - buf) + END_RECORD_SIZE > KR_STATE_EMIT_CHUNK) {
            rv = out(arg, buf, (size_t)(p - buf), errmsg);
            p = buf;
        }
        p = put_end_at(p, f->n_head + f->n_vars + f->n_early);
        if (rv == 0)
            rv = out(arg, buf, (size_t)(p - buf), errmsg);
    }
    return rv;
}

struct kr_state_garbage {
    void **ptrs;
    size_t n;
};

struct kr_state_garbage *kr_state_thaw_deferred(struct kr_state *s,
                                                struct kr_state_frozen *f)
{
    struct kr_state_garbage *g = NULL;

    if (f == NULL)
        return NULL;
    KR_BUG_ON(s->mem.frozen == 0);
    if (s->mem.filling == f) { /* given up half filled */
        s->mem.filling = NULL;
        s->mem.fill_next = NULL;
    }
    if (--s->mem.frozen == 0 && s->mem.n_grave > 0) {
        g = malloc(sizeof(*g));
        if (g != NULL) {
            g->ptrs = s->mem.graveyard;
            g->n = s->mem.n_grave;
            s->mem.graveyard = NULL;
            s->mem.n_grave = s->mem.cap_grave = 0;
        } else {
            for (size_t i = 0; i < s->mem.n_grave; i++)
                free(s->mem.graveyard[i]);
            s->mem.n_grave = 0;
        }
    }
    /* head holds the aead KEKs (and stage_tail may hold some of a cut
     * record); kr_buf_free wipes them. */
    kr_buf_free(&f->head);
    kr_buf_free(&f->stage_tail);
    free(f->stage_vars);
    /* The larger array stays for the next freeze. */
    if (f->cap_vars > s->mem.spare_cap) {
        free(s->mem.spare);
        s->mem.spare = f->vars;
        s->mem.spare_cap = f->cap_vars;
    } else {
        free(f->vars);
    }
    free(f->early);
    free(f->key_ids);
    free(f);
    return g;
}

void kr_state_garbage_free(struct kr_state_garbage *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->n; i++)
        free(g->ptrs[i]);
    free(g->ptrs);
    free(g);
}

void kr_state_thaw(struct kr_state *s, struct kr_state_frozen *f)
{
    kr_state_garbage_free(kr_state_thaw_deferred(s, f));
}

/* Below this many Variables a freeze allocates its array at once. */
#define SPARE_MIN_VARS 4096

size_t kr_state_spare_wanted(struct kr_state *s)
{
    if (s->mem.spare_asked || s->mem.frozen > 0 || s->n_vars < SPARE_MIN_VARS ||
        s->mem.spare_cap >= s->n_vars + s->n_vars / 16)
        return 0;
    s->mem.spare_asked = true;
    return s->n_vars + s->n_vars / 4;
}

void *kr_state_spare_make(size_t n)
{
    void *p = malloc(n * sizeof(struct frozen_var));

    /* Touched here, so the freeze that uses it faults no page in. */
    if (p != NULL)
        memset(p, 0, n * sizeof(struct frozen_var));
    return p;
}

void kr_state_spare_give(struct kr_state *s, void *spare, size_t n)
{
    s->mem.spare_asked = false;
    if (spare == NULL)
        return;
    if (s->mem.frozen > 0 || n <= s->mem.spare_cap) {
        free(spare);
        return;
    }
    free(s->mem.spare);
    s->mem.spare = spare;
    s->mem.spare_cap = n;
}

/* ---- reading it: the loader ---- */

/* Any record but a staged restore is smaller than this (a Variable is at
 * most about 1 MiB, a root key a few KiB). */
#define RECORD_MAX (16u << 20)

enum phase {
    PH_MAGIC,   /* before the magic and version */
    PH_INDEXES, /* the INDEXES record must come next */
    PH_KEYS,    /* root keys */
    PH_REKEY,   /* after the checkpoint: a stage or Variables */
    PH_STAGE,   /* after the stage: Variables */
    PH_VARS,    /* Variables */
    PH_ENDED,   /* nothing may follow */
};

struct kr_state_loader {
    bool build;
    bool allow_stage; /* a raft snapshot: a staged restore may follow */
    enum phase phase;
    struct kr_state *st;       /* keys always; the rest when building */
    char *last_ns, *last_path; /* the last Variable, when not building */
    struct var_node *last;     /* the last Variable, when building */
    uint64_t n_records;
    uint8_t prev; /* the last record's type, 0 before the first */
    size_t n_active;
    struct stage *stage;   /* a staged restore read from a raft snapshot */
    struct kr_buf pending; /* a record cut by the end of a feed */
    uint64_t fed;          /* bytes consumed, pending excluded */
    int err;
    char errmsg[KR_ERRMSG_SIZE];
    kr_state_record_cb on_record;
    void *arg;
    uint64_t counts[256];
    uint64_t bytes[256];
};

static void stage_free(struct stage *st)
{
    if (st == NULL)
        return;
    kr_state_loader_free(st->loader);
    free(st);
}

int kr_state_loader_new(struct kr_state_loader **out, bool build)
{
    struct kr_state_loader *l = calloc(1, sizeof(*l));

    if (l == NULL || kr_state_new(&l->st) != 0) {
        free(l);
        return KR_ENOMEM;
    }
    l->build = build;
    kr_buf_init(&l->pending);
    *out = l;
    return 0;
}

void kr_state_loader_free(struct kr_state_loader *l)
{
    if (l == NULL)
        return;
    kr_state_free(l->st);
    free(l->last_ns);
    free(l->last_path);
    stage_free(l->stage);
    kr_buf_free(&l->pending);
    free(l);
}

void kr_state_loader_on_record(struct kr_state_loader *l, kr_state_record_cb cb,
                               void *arg)
{
    l->on_record = cb;
    l->arg = arg;
}

uint64_t kr_state_loader_fed(const struct kr_state_loader *l)
{
    return l->fed + l->pending.len;
}

uint64_t kr_state_loader_count(const struct kr_state_loader *l, uint8_t type,
                               uint64_t *bytes)
{
    if (bytes != NULL)
        *bytes = l->bytes[type];
    return l->counts[type];
}

size_t kr_state_loader_key_count(const struct kr_state_loader *l)
{
    return l->st->n_keys;
}

const struct kr_root_key *
kr_state_loader_key_at(const struct kr_state_loader *l, size_t i)
{
    return kr_state_key_at(l->st, i);
}

static int fail(struct kr_state_loader *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct kr_state_loader *l, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(l->errmsg, sizeof(l->errmsg), fmt, ap);
    va_end(ap);
    l->err = KR_ECORRUPT;
    return l->err;
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

/* Decodes a ROOT_KEY record body into *k (owned contents). */
static bool get_key_body(struct kr_rd *r, struct kr_root_key *k)
{
    uint8_t flags = 0;

    if (!kr_codec_get_root_key(r, k))
        return false;
    /* rekey_total came later: a record without it is older. */
    if (!kr_rd_done(r))
        k->rekey_total = kr_rd_u64(r);
    if (!kr_rd_done(r)) {
        /* Written only when a flag is set; unknown flags are refused. */
        flags = kr_rd_u8(r);
        if (flags == 0 || (flags & ~KEY_FLAG_REDACTED) != 0)
            r->err = true;
    }
    k->redacted = (flags & KEY_FLAG_REDACTED) != 0;
    /* Material exactly when not redacted: a key that is neither could
     * never be decrypted, nor told apart from one that was redacted. */
    if (!kr_rd_done(r) || !kr_uuid_valid(k->key_id) ||
        k->redacted != (k->n_wrapped == 0)) {
        kr_root_key_clear(k);
        return false;
    }
    return true;
}

static bool load_key(struct kr_state_loader *l, struct kr_rd *r)
{
    struct kr_root_key key;

    if (!get_key_body(r, &key))
        return false;
    if (key_find(l->st, key.key_id) != NULL) {
        kr_root_key_clear(&key);
        return false;
    }
    l->n_active += key.state == KR_KEY_ACTIVE;
    key.n_vars = 0;
    key_append(l->st, &key);
    return true;
}

/* Decodes a VAR record body into a new node (owned), NULL if malformed. */
static struct var_node *get_var(struct kr_rd *r)
{
    struct var_node *n = calloc(1, sizeof(*n));
    size_t len;
    const uint8_t *data;

    if (n == NULL)
        return NULL;
    n->v.namespace = kr_rd_strdup(r, KR_NAMESPACE_MAX);
    n->v.path = kr_rd_strdup(r, KR_VAR_PATH_MAX);
    if (n->v.namespace == NULL || n->v.path == NULL ||
        !get_key_id(r, n->v.key_id))
        goto fail;
    data = kr_rd_bytes(r, &len);
    if (r->err || len < 28 || len > KR_VAR_DATA_MAX)
        goto fail;
    n->v.create_index = kr_rd_u64(r);
    n->v.modify_index = kr_rd_u64(r);
    n->v.create_time = kr_rd_i64(r);
    n->v.modify_time = kr_rd_i64(r);
    if (!kr_rd_done(r) || kr_var_path_validate(n->v.path, NULL) != 0 ||
        !ns_valid(n->v.namespace))
        goto fail;
    n->v.data = malloc(len);
    if (n->v.data == NULL)
        goto fail;
    memcpy(n->v.data, data, len);
    n->v.data_len = len;
    return n;
fail:
    var_node_free(NULL, n);
    return NULL;
}

/* Records come in tree order, as kr_state_snapshot writes them: one
 * state has exactly one encoding. */
static bool load_var(struct kr_state_loader *l, struct kr_rd *r)
{
    struct var_node *n = get_var(r);
    bool after;

    if (n == NULL)
        return false;
    if (l->build) {
        after = l->last == NULL || var_cmp(l->last, n) < 0;
    } else {
        int c = l->last_ns == NULL ? -1 : strcmp(l->last_ns, n->v.namespace);
        if (c == 0)
            c = strcmp(l->last_path, n->v.path);
        after = c < 0;
    }
    if (!after) {
        var_node_free(NULL, n);
        return false;
    }
    if (!l->build) {
        free(l->last_ns);
        free(l->last_path);
        /* Moved: the node itself goes. */
        l->last_ns = n->v.namespace;
        l->last_path = n->v.path;
        free(n->v.data);
        free(n);
        return true;
    }
    RB_INSERT(var_tree, &l->st->vars, n);
    l->st->n_vars++;
    l->last = n;
    var_attach(l->st, n);
    return true;
}

/* A key's identity record: right after that key's ROOT_KEY record
 * (load_record checks the position), naming it, and not empty (the
 * writer leaves empty ones out, so one state keeps one encoding). */
static bool load_identity(struct kr_state *s, struct kr_rd *r)
{
    struct kr_root_key *k = &s->keys[s->n_keys - 1];
    char key_id[KR_UUID_LEN + 1];
    int64_t exp;
    uint8_t no_exp;

    if (!get_key_id(r, key_id))
        return false;
    exp = kr_rd_i64(r);
    no_exp = kr_rd_u8(r);
    if (!kr_rd_done(r) || strcmp(k->key_id, key_id) != 0 || exp < 0 ||
        no_exp > 1 || (exp == 0 && no_exp == 0))
        return false;
    k->id_max_exp = exp;
    k->id_no_exp = no_exp == 1;
    return true;
}

/* At most one checkpoint, naming a valid namespace and path. */
static bool load_cursor(struct kr_state *s, struct kr_rd *r)
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

static bool load_stage(struct kr_state_loader *l, struct kr_rd *r)
{
    struct stage *st = calloc(1, sizeof(*st));
    const uint8_t *nested;
    size_t n;
    char err[KR_ERRMSG_SIZE];

    if (st == NULL)
        return false;
    st->id = kr_rd_u64(r);
    st->total = kr_rd_u64(r);
    st->received = kr_rd_u64(r);
    nested = kr_rd_bytes(r, &n);
    if (!kr_rd_done(r) || st->id == 0 || st->total == 0 ||
        st->total > KR_STATE_RESTORE_MAX || st->received > st->total ||
        kr_state_loader_new(&st->loader, true) != 0 ||
        kr_state_loader_feed(st->loader, nested, n, err) != 0) {
        stage_free(st);
        return false;
    }
    l->stage = st;
    return true;
}

/* Where each record type may come, and the phase it leaves. */
static bool phase_allows(const struct kr_state_loader *l, uint8_t type,
                         enum phase *next)
{
    static const struct {
        uint8_t type;
        enum phase from, to, next;
    } rules[] = {
        {KR_SNAP_REC_INDEXES, PH_INDEXES, PH_INDEXES, PH_KEYS},
        {KR_SNAP_REC_ROOT_KEY, PH_KEYS, PH_KEYS, PH_KEYS},
        {KR_SNAP_REC_IDENTITY, PH_KEYS, PH_KEYS, PH_KEYS},
        {KR_SNAP_REC_REKEY, PH_KEYS, PH_KEYS, PH_REKEY},
        {KR_SNAP_REC_STAGE, PH_KEYS, PH_REKEY, PH_STAGE},
        {KR_SNAP_REC_VAR, PH_KEYS, PH_VARS, PH_VARS},
        {KR_SNAP_REC_END, PH_KEYS, PH_VARS, PH_ENDED},
    };

    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (rules[i].type != type)
            continue;
        if (type == KR_SNAP_REC_STAGE && !l->allow_stage)
            return false;
        *next = rules[i].next;
        return l->phase >= rules[i].from && l->phase <= rules[i].to;
    }
    return false;
}

/* Checks and applies one whole record at l->fed. */
static int load_record(struct kr_state_loader *l, const uint8_t *rec,
                       size_t len)
{
    uint8_t type = rec[0];
    struct kr_rd body;
    enum phase next = l->phase;
    bool ok;

    if (l->phase == PH_ENDED)
        return fail(l,
                    "state snapshot has data after its end record "
                    "(byte %llu)",
                    (unsigned long long)l->fed);
    if (kr_snap_record_name(type) == NULL ||
        (type == KR_SNAP_REC_STAGE && !l->allow_stage))
        return fail(l, "unknown state record type %u at byte %llu", type,
                    (unsigned long long)l->fed);
    if (!phase_allows(l, type, &next) ||
        (type == KR_SNAP_REC_IDENTITY && l->prev != KR_SNAP_REC_ROOT_KEY))
        return fail(l,
                    "state record %s out of order at byte %llu (expected: "
                    "indexes, root keys each with its identity record, "
                    "rekey checkpoint, variables, end)",
                    kr_snap_record_name(type), (unsigned long long)l->fed);
    kr_rd_init(&body, rec + 5, len - 5);
    switch (type) {
    case KR_SNAP_REC_INDEXES:
        l->st->keys_index = kr_rd_u64(&body);
        l->st->vars_index = kr_rd_u64(&body);
        ok = kr_rd_done(&body);
        break;
    case KR_SNAP_REC_ROOT_KEY:
        ok = load_key(l, &body);
        if (ok && l->n_active > 1)
            return fail(l, "state snapshot has %zu active keys", l->n_active);
        break;
    case KR_SNAP_REC_IDENTITY:
        ok = load_identity(l->st, &body);
        break;
    case KR_SNAP_REC_VAR:
        ok = load_var(l, &body);
        break;
    case KR_SNAP_REC_REKEY:
        ok = load_cursor(l->st, &body);
        break;
    case KR_SNAP_REC_STAGE:
        ok = load_stage(l, &body);
        break;
    default: /* KR_SNAP_REC_END */
        ok = kr_rd_u64(&body) == l->n_records && kr_rd_done(&body);
        break;
    }
    if (!ok)
        return fail(l, "malformed state record %s at byte %llu",
                    kr_snap_record_name(type), (unsigned long long)l->fed);
    l->phase = next;
    l->prev = type;
    l->n_records++;
    l->counts[type]++;
    l->bytes[type] += len;
    if (l->on_record != NULL)
        l->on_record(l->arg, type, rec, len);
    l->fed += len;
    return 0;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The length of the record whose header starts at p (5 bytes), or 0 when
 * its body is larger than a record may be. */
static size_t record_len(const struct kr_state_loader *l, const uint8_t *p)
{
    uint32_t blen = get_u32(p + 1);

    if (blen > RECORD_MAX && !(p[0] == KR_SNAP_REC_STAGE && l->allow_stage))
        return 0;
    return 5 + (size_t)blen;
}

static int check_magic(struct kr_state_loader *l, const uint8_t *p)
{
    if (memcmp(p, SNAP_MAGIC, 4) != 0)
        return fail(l, "not a keyraft state snapshot");
    if (p[4] != SNAP_VERSION)
        return fail(l,
                    "unsupported state snapshot version %u (this build "
                    "reads version %u)",
                    p[4], SNAP_VERSION);
    l->phase = PH_INDEXES;
    l->fed = 5;
    return 0;
}

/* Moves up to `want` bytes from *p into the pending record. */
static size_t take(struct kr_state_loader *l, const uint8_t **p, size_t *n,
                   size_t want)
{
    size_t k = want < *n ? want : *n;

    kr_buf_append(&l->pending, *p, k);
    *p += k;
    *n -= k;
    return k;
}

static void note_oom(struct kr_state_loader *l)
{
    if (l->err == 0 && l->pending.oom) {
        l->err = KR_ENOMEM;
        snprintf(l->errmsg, sizeof(l->errmsg), "out of memory");
    }
}

/* Completes the magic or a record that an earlier feed cut; false when
 * the input ran out first (or on error). */
static bool finish_pending(struct kr_state_loader *l, const uint8_t **p,
                           size_t *n)
{
    size_t need;

    if (l->phase == PH_MAGIC) {
        take(l, p, n, 5 - l->pending.len);
        note_oom(l);
        if (l->err != 0 || l->pending.len < 5)
            return false;
        check_magic(l, l->pending.data);
        l->pending.len = 0;
        return l->err == 0;
    }
    if (l->pending.len < 5) {
        take(l, p, n, 5 - l->pending.len);
        if (l->pending.len < 5)
            return false;
    }
    need = record_len(l, l->pending.data);
    if (need == 0) {
        fail(l, "state record at byte %llu is too large",
             (unsigned long long)l->fed);
        return false;
    }
    take(l, p, n, need - l->pending.len);
    note_oom(l);
    if (l->err != 0 || l->pending.len < need)
        return false;
    load_record(l, l->pending.data, l->pending.len);
    l->pending.len = 0;
    return l->err == 0;
}

int kr_state_loader_feed(struct kr_state_loader *l, const void *buf, size_t n,
                         char *errmsg)
{
    const uint8_t *p = buf;
    size_t rlen;

    while (l->err == 0 && n > 0 && (l->phase == PH_MAGIC || l->pending.len > 0))
        if (!finish_pending(l, &p, &n))
            break;
    /* Whole records straight from the input, without copying. */
    while (l->err == 0 && n >= 5 && l->phase != PH_ENDED) {
        rlen = record_len(l, p);
        if (rlen == 0) {
            fail(l, "state record at byte %llu is too large",
                 (unsigned long long)l->fed);
            break;
        }
        if (rlen > n)
            break;
        if (load_record(l, p, rlen) != 0)
            break;
        p += rlen;
        n -= rlen;
    }
    if (l->err == 0 && n > 0 && l->phase == PH_ENDED)
        fail(l, "state snapshot has data after its end record (byte %llu)",
             (unsigned long long)l->fed);
    if (l->err == 0 && n > 0) {
        take(l, &p, &n, n);
        note_oom(l);
    }
    if (l->err != 0)
        return kr_errf(errmsg, l->err, "%s", l->errmsg);
    return 0;
}

int kr_state_loader_finish(struct kr_state_loader *l, char *errmsg)
{
    if (l->err == 0 && (l->phase != PH_ENDED || l->pending.len > 0)) {
        if (l->phase == PH_MAGIC)
            fail(l, "not a keyraft state snapshot");
        else
            fail(l, "state snapshot truncated after byte %llu",
                 (unsigned long long)kr_state_loader_fed(l));
    }
    if (l->err != 0)
        return kr_errf(errmsg, l->err, "%s", l->errmsg);
    return 0;
}

/* Replaces s's contents with the loader's (which must have been built
 * and finished); the loader is left empty. */
static void install(struct kr_state *s, struct kr_state_loader *l)
{
    struct kr_state *fresh = l->st;
    uint64_t keys_gen = s->keys_gen, restore_gen = s->restore_gen;

    state_clear(s);
    stage_drop(s, s->stage);
    /* Views of the old state may still read its buffers: the graveyard
     * (grown by state_clear) stays, and so does the rest of mem. */
    fresh->mem = s->mem;
    *s = *fresh;
    s->stage = l->stage;
    s->keys_gen = keys_gen + 1;
    s->restore_gen = restore_gen + 1;
    l->stage = NULL;
    memset(fresh, 0, sizeof(*fresh));
    RB_INIT(&fresh->vars);
    l->last = NULL;
}

int kr_state_restore(struct kr_state *s, const void *buf, size_t len,
                     char *errmsg)
{
    struct kr_state_loader *l = NULL;
    int rv;

    if (kr_state_loader_new(&l, true) != 0)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    l->allow_stage = true;
    rv = kr_state_loader_feed(l, buf, len, errmsg);
    if (rv == 0)
        rv = kr_state_loader_finish(l, errmsg);
    if (rv == 0)
        install(s, l);
    kr_state_loader_free(l);
    return rv;
}

int kr_state_record_redact(const uint8_t *rec, size_t len, struct kr_buf *out)
{
    struct kr_root_key key;
    struct kr_buf body;
    struct kr_rd r;

    if (len < 5 || rec[0] != KR_SNAP_REC_ROOT_KEY ||
        get_u32(rec + 1) != len - 5)
        return KR_EINVAL;
    kr_rd_init(&r, rec + 5, len - 5);
    if (!get_key_body(&r, &key))
        return KR_EINVAL;
    /* Every wrapped copy goes: both blobs and, for aead, the KEK (wiped
     * as it is freed). */
    kr_root_key_clear(&key);
    key.redacted = true;
    kr_buf_init(&body);
    put_key_body(&body, &key);
    put_record(out, KR_SNAP_REC_ROOT_KEY, &body);
    kr_buf_free(&body);
    return out->oom ? KR_ENOMEM : 0;
}

/* ---- the staged restore ---- */

/* A stage in a raft snapshot: what it has received so far, re-encoded
 * from the state it is building (the same records, in the same order),
 * then the bytes of a record cut by the last chunk. */
static void put_stage(struct kr_buf *out, const struct stage *st)
{
    struct kr_buf tail;
    struct var_node *n;

    kr_buf_init(&tail);
    if (!put_stage_split(out, &tail, st))
        out->oom = true;
    if (stage_var_bytes(st) > 0)
        RB_FOREACH(n, var_tree, &st->loader->st->vars)
        {
            put_var_record(out, &n->v);
        }
    kr_buf_append(out, tail.data, tail.len);
    kr_buf_free(&tail);
}

/* The staged Variables' records, in all. */
static size_t stage_var_bytes(const struct stage *st)
{
    return st->loader->phase > PH_INDEXES ? st->loader->st->var_bytes : 0;
}

/*
 * A staged restore's Variables, copied at once: they only grow (each
 * chunk appends in path order) and the loop may free them only through
 * stage_drop or, once committed, the graveyard, so the copies stay good
 * for the view's life.
 */
static bool freeze_stage_vars(struct kr_state_frozen *f, const struct stage *st)
{
    const struct kr_state *ls = st->loader->st;
    struct var_node *n;
    size_t i = 0;

    if (stage_var_bytes(st) == 0)
        return true;
    f->stage_vars = malloc(ls->n_vars * sizeof(*f->stage_vars));
    if (f->stage_vars == NULL)
        return false;
    RB_FOREACH(n, var_tree, (struct var_tree *)&ls->vars)
    {
        frozen_copy(f, &f->stage_vars[i++], n);
    }
    f->n_stage_vars = i;
    return true;
}

/*
 * put_stage's bytes in two parts around the staged Variables' records,
 * which a view emits from its copies: head gets the record up to the
 * first of them, tail what follows the last.  Returns false when the
 * record would not fit its 32-bit lengths.
 */
static bool put_stage_split(struct kr_buf *head, struct kr_buf *tail,
                            const struct stage *st)
{
    const struct kr_state_loader *l = st->loader;
    size_t vars = stage_var_bytes(st);
    struct kr_buf pre, body;
    size_t nested;

    kr_buf_init(&pre);
    kr_buf_init(&body);
    if (l->phase != PH_MAGIC) {
        kr_buf_append(&pre, SNAP_MAGIC, 4);
        kr_buf_u8(&pre, SNAP_VERSION);
    }
    if (l->phase > PH_INDEXES)
        (void)put_head_records(l->st, false, &pre, &body);
    if (l->phase == PH_ENDED) {
        body.len = 0;
        kr_buf_u64(&body, l->n_records - 1);
        put_record(tail, KR_SNAP_REC_END, &body);
    }
    kr_buf_append(tail, l->pending.data, l->pending.len);
    nested = pre.len + vars + tail->len;
    if (nested > UINT32_MAX - 28 || pre.oom || body.oom)
        head->oom = true;
    kr_buf_u8(head, KR_SNAP_REC_STAGE);
    kr_buf_u32(head, (uint32_t)(24 + 4 + nested));
    kr_buf_u64(head, st->id);
    kr_buf_u64(head, st->total);
    kr_buf_u64(head, st->received);
    kr_buf_u32(head, (uint32_t)nested);
    kr_buf_append(head, pre.data, pre.len);
    kr_buf_free(&pre);
    kr_buf_free(&body);
    return !head->oom && !tail->oom;
}

/* Frees st.  Views still alive may hold its Variables' buffers (a raft
 * snapshot taken while it was staged): those go to s's graveyard. */
static void stage_drop(struct kr_state *s, struct stage *st)
{
    struct kr_state *ls;
    struct var_node *n;

    if (st == NULL)
        return;
    ls = st->loader->st;
    if (s->mem.frozen > 0 && ls != NULL) {
        while ((n = RB_MIN(var_tree, &ls->vars)) != NULL) {
            RB_REMOVE(var_tree, &ls->vars, n);
            var_node_free(s, n);
        }
        ls->n_vars = 0;
        ls->var_bytes = 0;
        st->loader->last = NULL;
    }
    stage_free(st);
}

static void drop_stage(struct kr_state *s)
{
    stage_drop(s, s->stage);
    s->stage = NULL;
}

static int apply_restore_begin(struct kr_state *s,
                               const struct kr_entry_restore *e)
{
    struct stage *st;

    if (e->id == 0 || e->total == 0 || e->total > KR_STATE_RESTORE_MAX)
        return KR_EINVAL;
    st = xcalloc(1, sizeof(*st));
    KR_BUG_ON(kr_state_loader_new(&st->loader, true) != 0);
    st->id = e->id;
    st->total = e->total;
    /* A newer restore replaces one that never committed. */
    drop_stage(s);
    s->stage = st;
    return 0;
}

static int apply_restore_chunk(struct kr_state *s, uint64_t index,
                               const struct kr_entry_restore *e)
{
    struct stage *st = s->stage;
    char err[KR_ERRMSG_SIZE];

    if (st == NULL || st->id != e->id)
        return KR_ENOTFOUND;
    if (e->offset != st->received || e->data_len > st->total - st->received) {
        KR_WARN("state",
                "restore %016llx: chunk at %llu does not follow "
                "byte %llu of %llu; restore dropped",
                (unsigned long long)e->id, (unsigned long long)e->offset,
                (unsigned long long)st->received,
                (unsigned long long)st->total);
        drop_stage(s);
        return KR_EINVAL;
    }
    if (kr_state_loader_feed(st->loader, e->data, e->data_len, err) != 0) {
        /* The same on every replica; the leader checked it all before
         * proposing, so this is a bug or a hostile log. */
        KR_BUG_ON(st->loader->err == KR_ENOMEM);
        KR_WARN("state", "restore %016llx: entry %llu: %s; restore dropped",
                (unsigned long long)e->id, (unsigned long long)index, err);
        drop_stage(s);
        return KR_EINVAL;
    }
    st->received += e->data_len;
    return 0;
}

static int apply_restore_commit(struct kr_state *s, uint64_t index,
                                const struct kr_entry_restore *e)
{
    struct stage *st = s->stage;
    char err[KR_ERRMSG_SIZE];

    if (st == NULL || st->id != e->id)
        return KR_ENOTFOUND;
    if (st->received != st->total ||
        kr_state_loader_finish(st->loader, err) != 0) {
        KR_WARN("state",
                "restore %016llx: commit at %llu with %llu of %llu "
                "bytes: %s; restore dropped",
                (unsigned long long)e->id, (unsigned long long)index,
                (unsigned long long)st->received, (unsigned long long)st->total,
                st->received != st->total ? "incomplete" : err);
        drop_stage(s);
        return KR_EINVAL;
    }
    s->stage = NULL;
    install(s, st->loader);
    /* Every table changed here, whatever indexes the snapshot had. */
    s->keys_index = s->vars_index = index;
    stage_free(st);
    return 0;
}

static int apply_restore_abort(struct kr_state *s,
                               const struct kr_entry_restore *e)
{
    if (s->stage == NULL || (e->id != 0 && s->stage->id != e->id))
        return KR_ENOTFOUND;
    drop_stage(s);
    return 0;
}

bool kr_state_stage_info(const struct kr_state *s, uint64_t *id,
                         uint64_t *received, uint64_t *total)
{
    if (s->stage == NULL)
        return false;
    if (id != NULL)
        *id = s->stage->id;
    if (received != NULL)
        *received = s->stage->received;
    if (total != NULL)
        *total = s->stage->total;
    return true;
}

size_t kr_state_var_bytes(const struct kr_state *s)
{
    return s->var_bytes + (s->stage != NULL ? stage_var_bytes(s->stage) : 0);
}

uint64_t kr_state_restore_generation(const struct kr_state *s)
{
    return s->restore_gen;
}
