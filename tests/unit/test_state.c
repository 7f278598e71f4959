/*
 * Unit tests for the replicated state machine: every key state transition
 * of spec 7.1, delete rules, Variable check-and-set, ordered listing, the
 * entry codec (round trips, every truncation, trailing bytes), snapshot
 * round trips, the identity record (entry, delete rule, snapshot record)
 * and the path validator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "state/codec.h"
#include "state/state.h"

static uint64_t next_index;

static void make_id(char out[KR_UUID_LEN + 1], int n)
{
    snprintf(out, KR_UUID_LEN + 1, "00000000-0000-4000-8000-%012d", n);
}

static void fake_wrapping(struct kr_root_key *k)
{
    k->wrapped = calloc(1, sizeof(*k->wrapped));
    k->n_wrapped = 1;
    k->wrapped[0].provider = strdup("aead");
    k->wrapped[0].provider_id = strdup("aead");
    k->wrapped[0].dek.ciphertext = malloc(60);
    memset(k->wrapped[0].dek.ciphertext, 7, 60);
    k->wrapped[0].dek.ciphertext_len = 60;
    k->wrapped[0].dek.key_id = strdup(k->key_id);
    k->wrapped[0].kek = kr_secret_new(32);
}

static int upsert(struct kr_state *s, int n, enum kr_key_state st, bool rekey)
{
    struct kr_entry e;
    struct kr_buf b;
    int rv;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_UPSERT;
    make_id(e.key_upsert.key.key_id, n);
    strcpy(e.key_upsert.key.algorithm, KR_ALGORITHM_AES256GCM);
    e.key_upsert.key.create_time = 1000 + n;
    e.key_upsert.key.state = st;
    e.key_upsert.key.publish_time = st == KR_KEY_PREPUBLISHED ? 99 : 0;
    e.key_upsert.rekey = rekey;
    fake_wrapping(&e.key_upsert.key);
    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    rv = kr_state_apply(s, ++next_index, b.data, b.len);
    kr_buf_free(&b);
    kr_entry_clear(&e);
    return rv;
}

static int del_key(struct kr_state *s, int n, bool force)
{
    struct kr_entry e;
    struct kr_buf b;
    int rv;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_DELETE;
    make_id(e.key_delete.key_id, n);
    e.key_delete.force = force;
    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    rv = kr_state_apply(s, ++next_index, b.data, b.len);
    kr_buf_free(&b);
    return rv;
}

static int var_op(struct kr_state *s, uint8_t op, const char *path, int key,
                  uint64_t cas)
{
    struct kr_entry e;
    struct kr_buf b;
    uint8_t data[40];
    int rv;

    memset(&e, 0, sizeof(e));
    memset(data, 0xab, sizeof(data));
    e.type = KR_ENTRY_VAR_APPLY;
    e.var.op = op;
    e.var.namespace = "default";
    e.var.path = (char *)path;
    e.var.cas = cas;
    make_id(e.var.key_id, key);
    if (op == KR_VAR_SET || op == KR_VAR_CAS) {
        e.var.data = data;
        e.var.data_len = sizeof(data);
    }
    e.var.now = 5000;
    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    rv = kr_state_apply(s, ++next_index, b.data, b.len);
    kr_buf_free(&b);
    return rv;
}

static enum kr_key_state st_of(struct kr_state *s, int n)
{
    char id[KR_UUID_LEN + 1];
    const struct kr_root_key *k;

    make_id(id, n);
    k = kr_state_key_get(s, id);
    assert_non_null(k);
    return k->state;
}

static int setup(void **state)
{
    struct kr_state *s;

    assert_int_equal(kr_state_new(&s), 0);
    next_index = 0;
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    kr_state_free(*state);
    return 0;
}

/* Spec 7.1, plain rotation: active -> inactive; inactive, rekeying,
 * deprecated and prepublished unchanged. */
static void test_plain_rotation_transitions(void **state)
{
    struct kr_state *s = *state;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_PREPUBLISHED, false), 0);
    assert_int_equal(upsert(s, 3, KR_KEY_INACTIVE, false), 0);
    assert_int_equal(upsert(s, 4, KR_KEY_REKEYING, false), 0);
    assert_int_equal(upsert(s, 5, KR_KEY_DEPRECATED, false), 0);
    assert_int_equal(st_of(s, 1), KR_KEY_ACTIVE);
    assert_int_equal(upsert(s, 6, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(st_of(s, 1), KR_KEY_INACTIVE);
    assert_int_equal(st_of(s, 2), KR_KEY_PREPUBLISHED);
    assert_int_equal(st_of(s, 3), KR_KEY_INACTIVE);
    assert_int_equal(st_of(s, 4), KR_KEY_REKEYING);
    assert_int_equal(st_of(s, 5), KR_KEY_DEPRECATED);
    assert_int_equal(st_of(s, 6), KR_KEY_ACTIVE);
    /* The flipped key's ModifyIndex moved; its CreateIndex did not. */
    assert_int_equal(kr_state_key_at(s, 0)->modify_index, 6);
    assert_int_equal(kr_state_key_at(s, 0)->create_index, 1);
}

/* Spec 7.1, rekey: active and inactive -> rekeying; others unchanged. */
static void test_rekey_transitions(void **state)
{
    struct kr_state *s = *state;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_PREPUBLISHED, false), 0);
    assert_int_equal(upsert(s, 3, KR_KEY_INACTIVE, false), 0);
    assert_int_equal(upsert(s, 5, KR_KEY_DEPRECATED, false), 0);
    assert_int_equal(upsert(s, 6, KR_KEY_ACTIVE, true), 0);
    assert_int_equal(st_of(s, 1), KR_KEY_REKEYING);
    assert_int_equal(st_of(s, 2), KR_KEY_PREPUBLISHED);
    assert_int_equal(st_of(s, 3), KR_KEY_REKEYING);
    assert_int_equal(st_of(s, 5), KR_KEY_DEPRECATED);
    assert_int_equal(st_of(s, 6), KR_KEY_ACTIVE);
}

/* Promotion: an existing prepublished key becoming active flips the old
 * active key, keeps its own CreateIndex and clears PublishTime. */
static void test_promotion_keeps_create_fields(void **state)
{
    struct kr_state *s = *state;
    const struct kr_root_key *k;
    char id[KR_UUID_LEN + 1];

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_PREPUBLISHED, false), 0);
    make_id(id, 2);
    assert_int_equal(kr_state_key_get(s, id)->publish_time, 99);
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, false), 0);
    k = kr_state_key_get(s, id);
    assert_int_equal(k->state, KR_KEY_ACTIVE);
    assert_int_equal(k->create_index, 2);
    assert_int_equal(k->create_time, 1002);
    assert_int_equal(k->publish_time, 0);
    assert_int_equal(k->modify_index, 3);
    assert_int_equal(st_of(s, 1), KR_KEY_INACTIVE);
    /* Re-upserting the already-active key flips nothing. */
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(st_of(s, 1), KR_KEY_INACTIVE);
}

/* A rekey flag on an upsert that does not activate a key is refused. */
static void test_rekey_without_activation_refused(void **state)
{
    struct kr_state *s = *state;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_PREPUBLISHED, true), KR_EINVAL);
    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, true), KR_EINVAL);
    assert_int_equal(kr_state_key_count(s), 1);
    assert_int_equal(st_of(s, 1), KR_KEY_ACTIVE);
}

static void test_at_most_one_active(void **state)
{
    struct kr_state *s = *state;
    size_t active = 0;

    for (int i = 1; i <= 20; i++)
        assert_int_equal(upsert(s, i, KR_KEY_ACTIVE, i % 3 == 0), 0);
    for (size_t i = 0; i < kr_state_key_count(s); i++)
        active += kr_state_key_at(s, i)->state == KR_KEY_ACTIVE;
    assert_int_equal(active, 1);
}

static void test_delete_rules(void **state)
{
    struct kr_state *s = *state;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(var_op(s, KR_VAR_SET, "a/b", 1, 0), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(del_key(s, 9, false), KR_ENOTFOUND);
    assert_int_equal(del_key(s, 2, false), KR_EINVAL);    /* active */
    assert_int_equal(del_key(s, 1, false), KR_ECONFLICT); /* in use */
    assert_int_equal(kr_state_key_count(s), 2);
    assert_int_equal(del_key(s, 1, true), 0);
    assert_int_equal(kr_state_key_count(s), 1);
    /* The Variable survives, naming a key that is gone. */
    assert_non_null(kr_state_var_get(s, "default", "a/b"));
}

static void test_key_in_use_tracks_rewrites(void **state)
{
    struct kr_state *s = *state;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(var_op(s, KR_VAR_SET, "x", 1, 0), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, false), 0);
    /* Rewriting under the new key releases the old one. */
    assert_int_equal(var_op(s, KR_VAR_SET, "x", 2, 0), 0);
    assert_int_equal(del_key(s, 1, false), 0);
    assert_int_equal(var_op(s, KR_VAR_DELETE, "x", 0, 0), 0);
    assert_int_equal(upsert(s, 3, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(del_key(s, 2, false), 0);
}

/* One rekey batch: items (path, modify_index) re-encrypted under key,
 * checkpoint after (ns "default", after) or "" for the start. */
static int rekey(struct kr_state *s, int key, const char *after,
                 const char *const *paths, const uint64_t *indexes, int n)
{
    struct kr_entry e;
    struct kr_rekey_item items[8];
    uint8_t data[40];
    struct kr_buf b;
    size_t want;
    int rv;

    memset(&e, 0, sizeof(e));
    memset(items, 0, sizeof(items));
    memset(data, 0xcd, sizeof(data));
    e.type = KR_ENTRY_VAR_REKEY;
    make_id(e.rekey.key_id, key);
    e.rekey.after_ns = *after ? "default" : "";
    e.rekey.after_path = (char *)after;
    e.rekey.n_items = (uint32_t)n;
    e.rekey.items = items;
    for (int i = 0; i < n; i++) {
        items[i].namespace = "default";
        items[i].path = (char *)paths[i];
        items[i].modify_index = indexes[i];
        items[i].data = data;
        items[i].data_len = sizeof(data);
    }
    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    /* The sizes the rekey job reserves by are the encoding's. */
    want = kr_rekey_head_size(e.rekey.after_ns, e.rekey.after_path);
    for (int i = 0; i < n; i++)
        want += kr_rekey_item_size(items[i].namespace, items[i].path,
                                   items[i].data_len);
    assert_int_equal(b.len, want);
    rv = kr_state_apply(s, ++next_index, b.data, b.len);
    kr_buf_free(&b);
    return rv;
}

static const struct kr_root_key *key_of(struct kr_state *s, int n)
{
    char id[KR_UUID_LEN + 1];

    make_id(id, n);
    return kr_state_key_get(s, id);
}

/* Spec 7.4 with a checkpoint: items apply only at the version read and
 * under a rekeying key, indexes stay, the key turns inactive when its
 * last Variable moves, and the checkpoint survives a snapshot. */
static void test_rekey_batches(void **state)
{
    struct kr_state *s = *state, *copy;
    const char *paths[] = {"a", "b", "c"};
    uint64_t idx[3];
    const struct kr_var *v;
    const char *cns, *cpath;
    struct kr_buf snap;
    char errmsg[KR_ERRMSG_SIZE];

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(var_op(s, KR_VAR_SET, paths[i], 1, 0), 0);
        idx[i] = next_index;
    }
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, true), 0);
    assert_int_equal(st_of(s, 1), KR_KEY_REKEYING);
    assert_int_equal(key_of(s, 1)->rekey_total, 3);
    /* Under a key that is not the active one: refused whole. */
    assert_int_equal(rekey(s, 1, "a", paths, idx, 1), KR_ECONFLICT);
    kr_state_rekey_cursor(s, &cns, &cpath);
    assert_null(cns);
    /* "a" moves; "b" was rewritten by a client meanwhile (stale index). */
    assert_int_equal(var_op(s, KR_VAR_SET, "b", 2, 0), 0);
    assert_int_equal(rekey(s, 2, "b", paths, idx, 2), 0);
    v = kr_state_var_get(s, "default", "a");
    assert_memory_equal(v->key_id, key_of(s, 2)->key_id, KR_UUID_LEN);
    assert_int_equal(v->modify_index, idx[0]); /* content unchanged */
    assert_int_equal(v->data[0], 0xcd);
    v = kr_state_var_get(s, "default", "b");
    assert_int_equal(v->data[0], 0xab); /* the client's write stays */
    kr_state_rekey_cursor(s, &cns, &cpath);
    assert_string_equal(cns, "default");
    assert_string_equal(cpath, "b");
    assert_int_equal(st_of(s, 1), KR_KEY_REKEYING);
    assert_int_equal(key_of(s, 1)->n_vars, 1);

    /* The checkpoint and the total travel through a snapshot. */
    kr_buf_init(&snap);
    assert_int_equal(kr_state_snapshot(s, &snap), 0);
    assert_int_equal(kr_state_new(&copy), 0);
    assert_int_equal(kr_state_restore(copy, snap.data, snap.len, errmsg), 0);
    kr_state_rekey_cursor(copy, &cns, &cpath);
    assert_string_equal(cpath, "b");
    assert_int_equal(key_of(copy, 1)->rekey_total, 3);
    kr_state_free(copy);
    kr_buf_free(&snap);

    /* The last one moves: the key is done, the checkpoint goes. */
    assert_int_equal(rekey(s, 2, "", paths + 2, idx + 2, 1), 0);
    assert_int_equal(st_of(s, 1), KR_KEY_INACTIVE);
    assert_int_equal(key_of(s, 1)->n_vars, 0);
    kr_state_rekey_cursor(s, &cns, &cpath);
    assert_null(cns);
    assert_null(cpath);
    /* A batch for a key that is no longer rekeying changes nothing. */
    assert_int_equal(rekey(s, 2, "", paths, idx, 1), 0);
    assert_int_equal(st_of(s, 2), KR_KEY_ACTIVE);
}

/* A batch's items are found whatever their order and gaps: next to the
 * last one found, a few Variables on, far on, absent between two
 * Variables (with the index of the one after, which must stay), past
 * the last one, and behind the last one found. */
static void test_rekey_batch_lookups(void **state)
{
    struct kr_state *s = *state;
    const char *all[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    const char *batch[] = {"a", "b", "bb", "e", "j", "zz", "d"};
    const char *moved = "abdej";
    uint64_t idx[10], bidx[7];

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(var_op(s, KR_VAR_SET, all[i], 1, 0), 0);
        idx[i] = next_index;
    }
    /* Each item carries its Variable's index; "bb" carries c's, "zz"
     * j's. */
    for (int i = 0; i < 7; i++)
        bidx[i] = batch[i][1] == '\0' ? idx[batch[i][0] - 'a'] : 0;
    bidx[2] = idx[2];
    bidx[5] = idx[9];
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, true), 0);
    assert_int_equal(rekey(s, 2, "zz", batch, bidx, 7), 0);
    for (int i = 0; i < 10; i++) {
        const struct kr_var *v = kr_state_var_get(s, "default", all[i]);
        int want = strchr(moved, all[i][0]) != NULL ? 2 : 1;
        assert_non_null(v);
        assert_memory_equal(v->key_id, key_of(s, want)->key_id, KR_UUID_LEN);
    }
    assert_null(kr_state_var_get(s, "default", "bb"));
    assert_int_equal(key_of(s, 1)->n_vars, 5);
}

static void test_var_cas(void **state)
{
    struct kr_state *s = *state;
    const struct kr_var *v;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    /* cas=0: create only if absent. */
    assert_int_equal(var_op(s, KR_VAR_CAS, "p", 1, 0), 0);
    v = kr_state_var_get(s, "default", "p");
    assert_int_equal(v->create_index, 2);
    assert_int_equal(v->create_time, 5000);
    assert_int_equal(var_op(s, KR_VAR_CAS, "p", 1, 0), KR_ECONFLICT);
    assert_int_equal(var_op(s, KR_VAR_CAS, "p", 1, 99), KR_ECONFLICT);
    assert_int_equal(var_op(s, KR_VAR_CAS, "p", 1, 2), 0);
    v = kr_state_var_get(s, "default", "p");
    assert_int_equal(v->modify_index, 5);
    assert_int_equal(v->create_index, 2);
    assert_int_equal(var_op(s, KR_VAR_DELETE_CAS, "p", 0, 2), KR_ECONFLICT);
    assert_int_equal(var_op(s, KR_VAR_DELETE_CAS, "p", 0, 5), 0);
    assert_null(kr_state_var_get(s, "default", "p"));
    /* delete-cas with 0 on an absent Variable is a no-op success. */
    assert_int_equal(var_op(s, KR_VAR_DELETE_CAS, "p", 0, 0), 0);
    /* cas=N on an absent Variable conflicts. */
    assert_int_equal(var_op(s, KR_VAR_CAS, "p", 1, 3), KR_ECONFLICT);
    /* A write under an unknown key is refused. */
    assert_int_equal(var_op(s, KR_VAR_SET, "q", 7, 0), KR_EINVAL);
    /* A reserved path is refused by apply too, not just the API. */
    assert_int_equal(var_op(s, KR_VAR_SET, "nomad/other", 1, 0), KR_EINVAL);
}

static void test_var_listing_order(void **state)
{
    struct kr_state *s = *state;
    const char *paths[] = {"b/2", "a/1", "b/1", "c", "a/2", "b/10"};
    const char *want[] = {"b/1", "b/10", "b/2"};
    const struct kr_var *v;
    size_t n = 0;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(var_op(s, KR_VAR_SET, paths[i], 1, 0), 0);
    for (v = kr_state_var_first(s, "default", "b/", NULL, NULL); v != NULL;
         v = kr_state_var_next(s, v, "default", "b/"))
        assert_string_equal(v->path, want[n++]);
    assert_int_equal(n, 3);
    v = kr_state_var_first(s, "default", NULL, "default", "b/10");
    assert_string_equal(v->path, "b/2");
    assert_null(kr_state_var_first(s, "other", NULL, NULL, NULL));
    assert_int_equal(kr_state_var_count(s), 6);
}

/* The rekey batch entry: round trip, every truncation, and a count the
 * bytes cannot hold. */
static void test_codec_rekey(void **state)
{
    struct kr_entry e, d;
    struct kr_rekey_item items[2];
    uint8_t data[30];
    struct kr_buf b, b2;
    char err[KR_ERRMSG_SIZE];

    (void)state;
    memset(&e, 0, sizeof(e));
    memset(items, 0, sizeof(items));
    memset(data, 9, sizeof(data));
    e.type = KR_ENTRY_VAR_REKEY;
    make_id(e.rekey.key_id, 3);
    e.rekey.after_ns = "ns";
    e.rekey.after_path = "p/2";
    e.rekey.n_items = 2;
    e.rekey.items = items;
    for (int i = 0; i < 2; i++) {
        items[i].namespace = "ns";
        items[i].path = i ? "p/2" : "p/1";
        items[i].modify_index = 10 + (uint64_t)i;
        items[i].data = data;
        items[i].data_len = sizeof(data);
    }
    kr_buf_init(&b);
    kr_buf_init(&b2);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), 0);
    assert_int_equal(d.rekey.n_items, 2);
    assert_string_equal(d.rekey.items[1].path, "p/2");
    assert_int_equal(d.rekey.items[1].modify_index, 11);
    assert_string_equal(d.rekey.after_path, "p/2");
    assert_int_equal(kr_entry_encode(&d, &b2), 0);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);
    kr_entry_clear(&d);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(kr_entry_decode(&d, b.data, n, err), KR_ECORRUPT);
    kr_buf_free(&b);
    /* A huge item count with no items behind it. */
    e.rekey.n_items = 0;
    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    b.data[b.len - 1] = 0x01; /* count = 2^24 (little-endian u32) */
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), KR_ECORRUPT);
    kr_buf_free(&b);
    kr_buf_free(&b2);
}

static void test_codec_round_trip_and_truncation(void **state)
{
    struct kr_entry e, d;
    struct kr_buf b, b2;
    uint8_t data[33];
    char err[KR_ERRMSG_SIZE];

    (void)state;
    memset(&e, 0, sizeof(e));
    memset(data, 3, sizeof(data));
    e.type = KR_ENTRY_VAR_APPLY;
    e.var.op = KR_VAR_CAS;
    e.var.namespace = "ns";
    e.var.path = "some/path";
    e.var.cas = 77;
    make_id(e.var.key_id, 4);
    e.var.data = data;
    e.var.data_len = sizeof(data);
    e.var.now = -5;
    kr_buf_init(&b);
    kr_buf_init(&b2);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), 0);
    assert_string_equal(d.var.path, "some/path");
    assert_int_equal(d.var.cas, 77);
    assert_int_equal(d.var.now, -5);
    assert_int_equal(d.var.data_len, 33);
    /* Deterministic: re-encoding the decoded entry gives the same bytes. */
    assert_int_equal(kr_entry_encode(&d, &b2), 0);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);
    kr_entry_clear(&d);
    /* Every truncation is rejected. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(kr_entry_decode(&d, b.data, n, err), KR_ECORRUPT);
    /* Trailing bytes are rejected. */
    kr_buf_u8(&b, 0);
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), KR_ECORRUPT);
    /* A future version is rejected with a message. */
    b.data[0] = 9;
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), KR_ECORRUPT);
    assert_non_null(strstr(err, "version"));
    kr_buf_free(&b);
    kr_buf_free(&b2);
}

static void test_codec_key_upsert_truncation(void **state)
{
    struct kr_entry e, d;
    struct kr_buf b;
    char err[KR_ERRMSG_SIZE];

    (void)state;
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_UPSERT;
    make_id(e.key_upsert.key.key_id, 1);
    strcpy(e.key_upsert.key.algorithm, KR_ALGORITHM_AES256GCM);
    fake_wrapping(&e.key_upsert.key);
    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), 0);
    assert_int_equal(d.key_upsert.key.n_wrapped, 1);
    assert_int_equal(d.key_upsert.key.wrapped[0].kek->len, 32);
    kr_entry_clear(&d);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(kr_entry_decode(&d, b.data, n, err), KR_ECORRUPT);
    kr_buf_free(&b);
    kr_entry_clear(&e);
}

static void test_snapshot_round_trip(void **state)
{
    struct kr_state *s = *state, *r;
    struct kr_buf a, b;
    char err[KR_ERRMSG_SIZE];
    char id[KR_UUID_LEN + 1];

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(var_op(s, KR_VAR_SET, "one", 1, 0), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(var_op(s, KR_VAR_SET, "two", 2, 0), 0);
    kr_buf_init(&a);
    kr_buf_init(&b);
    assert_int_equal(kr_state_snapshot(s, &a), 0);
    assert_int_equal(kr_state_new(&r), 0);
    assert_int_equal(kr_state_restore(r, a.data, a.len, err), 0);
    assert_int_equal(kr_state_snapshot(r, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_int_equal(kr_state_vars_index(r), kr_state_vars_index(s));
    /* In-use counts are rebuilt: key 1 is still in use after restore. */
    assert_int_equal(del_key(r, 1, false), KR_ECONFLICT);
    make_id(id, 1);
    assert_non_null(kr_state_key_get(r, id));
    /* A truncated snapshot fails and leaves the target untouched. */
    for (size_t n = 5; n < a.len; n++) {
        assert_int_not_equal(kr_state_restore(r, a.data, n, err), 0);
        assert_int_equal(kr_state_var_count(r), 2);
    }
    assert_int_not_equal(kr_state_restore(r, "nope", 4, err), 0);
    /* Trailing garbage after the end record fails too. */
    kr_buf_u8(&a, 3);
    assert_int_not_equal(kr_state_restore(r, a.data, a.len, err), 0);
    kr_state_free(r);
    kr_buf_free(&a);
    kr_buf_free(&b);
}

static int record(struct kr_state *s, int key, int64_t exp, bool no_exp)
{
    struct kr_entry e;
    struct kr_buf b;
    int rv;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_IDENTITY;
    make_id(e.identity.key_id, key);
    e.identity.exp = exp;
    e.identity.no_exp = no_exp;
    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    rv = kr_state_apply(s, ++next_index, b.data, b.len);
    kr_buf_free(&b);
    return rv;
}

/* The identity record only grows, changes no index, refuses nonsense and
 * unknown keys, and an identity without expiry keeps its key in use. */
static void test_identity_record(void **state)
{
    struct kr_state *s = *state;
    uint64_t keys_index, modify;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    keys_index = kr_state_keys_index(s);
    modify = key_of(s, 1)->modify_index;
    assert_int_equal(key_of(s, 1)->id_max_exp, 0);
    assert_false(key_of(s, 1)->id_no_exp);
    assert_int_equal(record(s, 1, 7200, false), 0);
    assert_int_equal(key_of(s, 1)->id_max_exp, 7200);
    /* A lower expiry does not lower the record. */
    assert_int_equal(record(s, 1, 3600, false), 0);
    assert_int_equal(key_of(s, 1)->id_max_exp, 7200);
    assert_int_equal(record(s, 1, 10800, false), 0);
    assert_int_equal(key_of(s, 1)->id_max_exp, 10800);
    assert_int_equal(kr_state_keys_index(s), keys_index);
    assert_int_equal(key_of(s, 1)->modify_index, modify);
    /* Nothing to record, a negative time, a key that does not exist. */
    assert_int_equal(record(s, 1, 0, false), KR_EINVAL);
    assert_int_equal(record(s, 1, -1, true), KR_EINVAL);
    assert_int_equal(record(s, 9, 100, false), KR_ENOTFOUND);
    assert_int_equal(key_of(s, 1)->id_max_exp, 10800);

    /* Expiring identities alone do not stop a delete: that check needs
     * the clock and is the leader's.  One without expiry does. */
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(del_key(s, 1, false), 0);
    assert_int_equal(upsert(s, 3, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(record(s, 2, 0, true), 0);
    assert_true(key_of(s, 2)->id_no_exp);
    assert_int_equal(key_of(s, 2)->id_max_exp, 0);
    assert_int_equal(del_key(s, 2, false), KR_ECONFLICT);
    assert_int_equal(del_key(s, 2, true), 0);
}

/* The record travels in a snapshot record after its key; every misplaced
 * or malformed one fails the restore. */
static void test_identity_snapshot(void **state)
{
    struct kr_state *s = *state, *r;
    struct kr_buf a, b, bad;
    char err[KR_ERRMSG_SIZE];
    uint8_t *rec;
    size_t reclen;

    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(upsert(s, 3, KR_KEY_ACTIVE, false), 0);
    assert_int_equal(record(s, 1, 5000, true), 0);
    assert_int_equal(record(s, 3, 9000, false), 0);
    assert_int_equal(var_op(s, KR_VAR_SET, "v", 3, 0), 0);
    kr_buf_init(&a);
    kr_buf_init(&b);
    assert_int_equal(kr_state_snapshot(s, &a), 0);
    assert_int_equal(kr_state_new(&r), 0);
    assert_int_equal(kr_state_restore(r, a.data, a.len, err), 0);
    assert_int_equal(key_of(r, 1)->id_max_exp, 5000);
    assert_true(key_of(r, 1)->id_no_exp);
    assert_int_equal(key_of(r, 2)->id_max_exp, 0);
    assert_false(key_of(r, 2)->id_no_exp);
    assert_int_equal(key_of(r, 3)->id_max_exp, 9000);
    assert_false(key_of(r, 3)->id_no_exp);
    assert_int_equal(kr_state_snapshot(r, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);

    /* Find key 1's identity record: type 5, u32 length, then the body
     * (u32 36, the KeyID, i64, u8). */
    rec = NULL;
    for (size_t i = 5; i + 5 + 4 + 36 + 9 <= a.len; i++)
        if (a.data[i] == 5 && a.data[i + 1] == 49 && a.data[i + 2] == 0 &&
            memcmp(a.data + i + 9, key_of(s, 1)->key_id, KR_UUID_LEN) == 0) {
            rec = a.data + i;
            break;
        }
    assert_non_null(rec);
    reclen = 5 + 49;
    /* Naming another key than the one before it. */
    rec[9 + 35] ^= 1;
    assert_int_not_equal(kr_state_restore(r, a.data, a.len, err), 0);
    rec[9 + 35] ^= 1;
    /* A no_exp byte that is not a boolean. */
    rec[reclen - 1] = 2;
    assert_int_not_equal(kr_state_restore(r, a.data, a.len, err), 0);
    /* An empty record (the writer leaves those out). */
    rec[reclen - 1] = 0;
    memset(rec + reclen - 9, 0, 8);
    assert_int_not_equal(kr_state_restore(r, a.data, a.len, err), 0);
    /* A negative expiry. */
    memset(rec + reclen - 9, 0xff, 8);
    assert_int_not_equal(kr_state_restore(r, a.data, a.len, err), 0);
    /* Twice in a row (the END count fixed up to match). */
    kr_buf_free(&a);
    kr_buf_init(&a);
    assert_int_equal(kr_state_snapshot(s, &a), 0);
    rec = NULL;
    for (size_t i = 5; i + reclen <= a.len; i++)
        if (a.data[i] == 5 && a.data[i + 1] == 49 && a.data[i + 2] == 0 &&
            memcmp(a.data + i + 9, key_of(s, 1)->key_id, KR_UUID_LEN) == 0) {
            rec = a.data + i;
            break;
        }
    assert_non_null(rec);
    kr_buf_init(&bad);
    kr_buf_append(&bad, a.data, (size_t)(rec - a.data) + reclen);
    kr_buf_append(&bad, rec, reclen);
    kr_buf_append(&bad, rec + reclen, a.len - (size_t)(rec - a.data) - reclen);
    bad.data[bad.len - 8]++; /* END counts one more record */
    assert_int_not_equal(kr_state_restore(r, bad.data, bad.len, err), 0);
    /* The same bytes with the END count left alone fail as well. */
    bad.data[bad.len - 8]--;
    assert_int_not_equal(kr_state_restore(r, bad.data, bad.len, err), 0);
    kr_buf_free(&bad);
    /* The target is untouched by every failed restore. */
    assert_int_equal(key_of(r, 1)->id_max_exp, 5000);
    kr_state_free(r);
    kr_buf_free(&a);
    kr_buf_free(&b);
}

static void test_codec_identity(void **state)
{
    struct kr_entry e, d;
    struct kr_buf b, b2;
    char err[KR_ERRMSG_SIZE];

    (void)state;
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_IDENTITY;
    make_id(e.identity.key_id, 3);
    e.identity.exp = 1700003600;
    e.identity.no_exp = true;
    kr_buf_init(&b);
    kr_buf_init(&b2);
    assert_int_equal(kr_entry_encode(&e, &b), 0);
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), 0);
    assert_string_equal(d.identity.key_id, e.identity.key_id);
    assert_int_equal(d.identity.exp, 1700003600);
    assert_true(d.identity.no_exp);
    assert_int_equal(kr_entry_encode(&d, &b2), 0);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);
    kr_entry_clear(&d);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(kr_entry_decode(&d, b.data, n, err), KR_ECORRUPT);
    /* A flag byte that is not 0 or 1. */
    b.data[b.len - 1] = 7;
    assert_int_equal(kr_entry_decode(&d, b.data, b.len, err), KR_ECORRUPT);
    kr_buf_free(&b);
    kr_buf_free(&b2);
}

static void test_path_validator(void **state)
{
    char err[KR_ERRMSG_SIZE];
    char long_path[200];

    (void)state;
    assert_int_equal(kr_var_path_validate("a", err), 0);
    assert_int_equal(kr_var_path_validate("a/b-c_d~e/F9", err), 0);
    assert_int_equal(kr_var_path_validate("nomad/jobs", err), 0);
    assert_int_equal(kr_var_path_validate("nomad/jobs/web/task", err), 0);
    assert_int_equal(kr_var_path_validate("nomad/sentinel/x", err), 0);
    assert_int_equal(kr_var_path_validate("nomad/job-templates/t", err), 0);
    assert_int_equal(kr_var_path_validate("", err), KR_EINVAL);
    assert_int_equal(kr_var_path_validate("a b", err), KR_EINVAL);
    assert_int_equal(kr_var_path_validate("a.b", err), KR_EINVAL);
    assert_int_equal(kr_var_path_validate("a%b", err), KR_EINVAL);
    assert_int_equal(kr_var_path_validate("nomad", err), KR_EINVAL);
    assert_int_equal(kr_var_path_validate("nomad/other", err), KR_EINVAL);
    assert_int_equal(kr_var_path_validate("nomad/jobsX", err), KR_EINVAL);
    assert_int_equal(kr_var_path_validate("nomad/job-templates/a/b", err),
                     KR_EINVAL);
    assert_int_equal(kr_var_path_validate("nomad/job-templates/", err),
                     KR_EINVAL);
    assert_int_equal(kr_var_path_validate("nomadic/x", err), 0);
    memset(long_path, 'a', 128);
    long_path[128] = '\0';
    assert_int_equal(kr_var_path_validate(long_path, err), 0);
    long_path[128] = 'a';
    long_path[129] = '\0';
    assert_int_equal(kr_var_path_validate(long_path, err), KR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_rotation_transitions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rekey_transitions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_promotion_keeps_create_fields,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rekey_without_activation_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_most_one_active, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delete_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_in_use_tracks_rewrites, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rekey_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rekey_batch_lookups, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_var_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_var_listing_order, setup,
                                        teardown),
        cmocka_unit_test(test_codec_round_trip_and_truncation),
        cmocka_unit_test(test_codec_rekey),
        cmocka_unit_test(test_codec_key_upsert_truncation),
        cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_identity_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_snapshot, setup,
                                        teardown),
        cmocka_unit_test(test_codec_identity),
        cmocka_unit_test(test_path_validator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
