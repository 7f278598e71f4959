/*
 * Unit tests for the state snapshot loader and the staged restore: a
 * state.bin fed in pieces of every size reads as it does whole, every
 * truncation and misordering is refused, a restore through BEGIN / CHUNK /
 * COMMIT entries replaces the state exactly (and only at the commit), a
 * raft snapshot taken mid-restore carries the staging area, bad chunks
 * drop it without touching the live state, and redacted keys: the record
 * rewrite, their encoding, and the rules that keep them from encrypting.
 * The source state carries key identity records (state.h, id_max_exp),
 * so every path above also carries those; their own rules are checked
 * with the loader and with stages cut inside them.
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

static int apply(struct kr_state *s, const struct kr_entry *e)
{
    struct kr_buf b;
    int rv;

    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(e, &b), 0);
    rv = kr_state_apply(s, ++next_index, b.data, b.len);
    kr_buf_free(&b);
    return rv;
}

static int upsert(struct kr_state *s, int n, enum kr_key_state st)
{
    struct kr_entry e;
    struct kr_root_key *k = &e.key_upsert.key;
    int rv;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_UPSERT;
    make_id(k->key_id, n);
    strcpy(k->algorithm, KR_ALGORITHM_AES256GCM);
    k->create_time = 1000 + n;
    k->state = st;
    k->wrapped = calloc(1, sizeof(*k->wrapped));
    k->n_wrapped = 1;
    k->wrapped[0].provider = strdup("aead");
    k->wrapped[0].provider_id = strdup("aead");
    k->wrapped[0].dek.ciphertext = malloc(60);
    memset(k->wrapped[0].dek.ciphertext, 0xe5, 60);
    k->wrapped[0].dek.ciphertext_len = 60;
    k->wrapped[0].dek.key_id = strdup(k->key_id);
    k->wrapped[0].kek = kr_secret_new(32);
    memset(k->wrapped[0].kek->data, 0xf6, 32);
    rv = apply(s, &e);
    kr_entry_clear(&e);
    return rv;
}

static int put(struct kr_state *s, const char *path, int key, uint8_t fill)
{
    struct kr_entry e;
    uint8_t data[40];

    memset(&e, 0, sizeof(e));
    memset(data, fill, sizeof(data));
    e.type = KR_ENTRY_VAR_APPLY;
    e.var.op = KR_VAR_SET;
    e.var.namespace = "default";
    e.var.path = (char *)path;
    make_id(e.var.key_id, key);
    e.var.data = data;
    e.var.data_len = sizeof(data);
    e.var.now = 5000;
    return apply(s, &e);
}

static int restore_entry(struct kr_state *s, uint8_t type, uint64_t id,
                         uint64_t n, const uint8_t *data, size_t len)
{
    struct kr_entry e;

    memset(&e, 0, sizeof(e));
    e.type = type;
    e.restore.id = id;
    if (type == KR_ENTRY_RESTORE_BEGIN)
        e.restore.total = n;
    e.restore.offset = n;
    e.restore.data = (uint8_t *)data;
    e.restore.data_len = len;
    return apply(s, &e);
}

static int identity(struct kr_state *s, int key, int64_t exp, bool no_exp)
{
    struct kr_entry e;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_IDENTITY;
    make_id(e.identity.key_id, key);
    e.identity.exp = exp;
    e.identity.no_exp = no_exp;
    return apply(s, &e);
}

/* A source state with three keys (one active), identity records on keys
 * 1 and 3, and 300 Variables, saved into *out. */
static struct kr_state *source(struct kr_buf *out)
{
    struct kr_state *s;
    char path[32];

    assert_int_equal(kr_state_new(&s), 0);
    assert_int_equal(upsert(s, 1, KR_KEY_ACTIVE), 0);
    for (int i = 0; i < 150; i++) {
        snprintf(path, sizeof(path), "app/%03d", i);
        assert_int_equal(put(s, path, 1, (uint8_t)i), 0);
    }
    assert_int_equal(upsert(s, 2, KR_KEY_ACTIVE), 0);
    assert_int_equal(upsert(s, 3, KR_KEY_PREPUBLISHED), 0);
    assert_int_equal(identity(s, 1, 5000, true), 0);
    assert_int_equal(identity(s, 3, 9000, false), 0);
    for (int i = 0; i < 150; i++) {
        snprintf(path, sizeof(path), "web/%03d", i);
        assert_int_equal(put(s, path, 2, (uint8_t)i), 0);
    }
    kr_buf_init(out);
    assert_int_equal(kr_state_save(s, out), 0);
    assert_int_equal(out->len, kr_state_save_size(s));
    return s;
}

/* Same keys and Variables (indexes aside), record by record. */
static void assert_same_content(const struct kr_state *a,
                                const struct kr_state *b)
{
    const struct kr_var *x, *y;

    assert_int_equal(kr_state_key_count(a), kr_state_key_count(b));
    for (size_t i = 0; i < kr_state_key_count(a); i++) {
        const struct kr_root_key *p = kr_state_key_at(a, i);
        const struct kr_root_key *q = kr_state_key_at(b, i);
        assert_string_equal(p->key_id, q->key_id);
        assert_int_equal(p->state, q->state);
        assert_int_equal(p->n_vars, q->n_vars);
        assert_int_equal(p->n_wrapped, q->n_wrapped);
        assert_int_equal(p->redacted, q->redacted);
        assert_int_equal(p->id_max_exp, q->id_max_exp);
        assert_int_equal(p->id_no_exp, q->id_no_exp);
    }
    assert_int_equal(kr_state_var_count(a), kr_state_var_count(b));
    x = kr_state_var_first(a, NULL, NULL, NULL, NULL);
    y = kr_state_var_first(b, NULL, NULL, NULL, NULL);
    for (; x != NULL; x = kr_state_var_next(a, x, NULL, NULL),
                      y = kr_state_var_next(b, y, NULL, NULL)) {
        assert_non_null(y);
        assert_string_equal(x->namespace, y->namespace);
        assert_string_equal(x->path, y->path);
        assert_string_equal(x->key_id, y->key_id);
        assert_int_equal(x->data_len, y->data_len);
        assert_memory_equal(x->data, y->data, x->data_len);
        assert_int_equal(x->create_index, y->create_index);
        assert_int_equal(x->modify_index, y->modify_index);
        assert_int_equal(x->create_time, y->create_time);
        assert_int_equal(x->modify_time, y->modify_time);
    }
    assert_null(y);
}

/* Feeding in pieces of any size reads the same as one feed; stats count
 * every record type. */
static void test_loader_pieces(void **state)
{
    struct kr_state *src;
    struct kr_buf bin;
    char err[KR_ERRMSG_SIZE];
    uint64_t bytes;
    const size_t steps[] = {1, 2, 3, 4, 5, 6, 7, 13, 64, 1000, 1 << 20};

    (void)state;
    src = source(&bin);
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        struct kr_state_loader *l;
        assert_int_equal(kr_state_loader_new(&l, false), 0);
        for (size_t off = 0; off < bin.len; off += steps[s]) {
            size_t n = bin.len - off < steps[s] ? bin.len - off : steps[s];
            assert_int_equal(kr_state_loader_feed(l, bin.data + off, n, err),
                             0);
        }
        assert_int_equal(kr_state_loader_finish(l, err), 0);
        assert_int_equal(kr_state_loader_fed(l), bin.len);
        assert_int_equal(kr_state_loader_count(l, KR_SNAP_REC_VAR, &bytes),
                         300);
        assert_true(bytes > 300 * 40);
        assert_int_equal(kr_state_loader_count(l, KR_SNAP_REC_ROOT_KEY, NULL),
                         3);
        assert_int_equal(kr_state_loader_count(l, KR_SNAP_REC_IDENTITY, &bytes),
                         2);
        assert_int_equal(bytes, 2 * (5 + 4 + KR_UUID_LEN + 8 + 1));
        assert_int_equal(kr_state_loader_count(l, KR_SNAP_REC_END, NULL), 1);
        assert_int_equal(kr_state_loader_key_count(l), 3);
        kr_state_loader_free(l);
    }
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* Every cut fails at finish, trailing bytes fail, the magic and version
 * are checked. */
static void test_loader_rejects(void **state)
{
    struct kr_state *src;
    struct kr_buf bin;
    struct kr_state_loader *l;
    char err[KR_ERRMSG_SIZE];

    (void)state;
    src = source(&bin);
    for (size_t n = 0; n < bin.len; n += 7) {
        assert_int_equal(kr_state_loader_new(&l, true), 0);
        if (kr_state_loader_feed(l, bin.data, n, err) == 0)
            assert_int_equal(kr_state_loader_finish(l, err), KR_ECORRUPT);
        kr_state_loader_free(l);
    }
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    assert_int_equal(kr_state_loader_feed(l, bin.data, bin.len, err), 0);
    assert_int_equal(kr_state_loader_feed(l, "x", 1, err), KR_ECORRUPT);
    assert_non_null(strstr(err, "after its end record"));
    kr_state_loader_free(l);

    bin.data[4] = 9; /* version */
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    assert_int_equal(kr_state_loader_feed(l, bin.data, bin.len, err),
                     KR_ECORRUPT);
    assert_non_null(strstr(err, "version 9"));
    kr_state_loader_free(l);
    bin.data[0] = 'X';
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    assert_int_equal(kr_state_loader_feed(l, bin.data, 3, err), 0);
    assert_int_equal(kr_state_loader_feed(l, bin.data + 3, 10, err),
                     KR_ECORRUPT);
    assert_non_null(strstr(err, "not a keyraft state snapshot"));
    kr_state_loader_free(l);
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    assert_int_equal(kr_state_loader_finish(l, err), KR_ECORRUPT);
    kr_state_loader_free(l);
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* A state.bin never holds a staged restore, and records keep their
 * order: a Variable before the keys is refused. */
static void test_loader_order(void **state)
{
    struct kr_state *src, *s;
    struct kr_buf bin, snap, bad;
    struct kr_state_loader *l;
    char err[KR_ERRMSG_SIZE];

    (void)state;
    src = source(&bin);
    assert_int_equal(kr_state_new(&s), 0);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 7, bin.len, NULL, 0), 0);
    kr_buf_init(&snap);
    assert_int_equal(kr_state_snapshot(s, &snap), 0);
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    assert_int_equal(kr_state_loader_feed(l, snap.data, snap.len, err),
                     KR_ECORRUPT);
    assert_non_null(strstr(err, "unknown state record type 6"));
    kr_state_loader_free(l);

    /* Swap the INDEXES record (5 + 16 bytes) with the first key. */
    kr_buf_init(&bad);
    {
        const uint8_t *key = bin.data + 5 + 21;
        uint32_t klen = (uint32_t)key[1] | (uint32_t)key[2] << 8 |
                        (uint32_t)key[3] << 16 | (uint32_t)key[4] << 24;
        kr_buf_append(&bad, bin.data, 5);
        kr_buf_append(&bad, key, 5 + klen);
        kr_buf_append(&bad, bin.data + 5, 21);
        kr_buf_append(&bad, key + 5 + klen,
                      bin.len - (size_t)(key + 5 + klen - bin.data));
    }
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    assert_int_equal(kr_state_loader_feed(l, bad.data, bad.len, err),
                     KR_ECORRUPT);
    assert_non_null(strstr(err, "out of order"));
    kr_state_loader_free(l);
    kr_buf_free(&bad);
    kr_buf_free(&snap);
    kr_state_free(s);
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* Feeds bin to s as chunks of `step` bytes under restore id. */
static void stage_chunks(struct kr_state *s, uint64_t id,
                         const struct kr_buf *bin, size_t from, size_t to,
                         size_t step)
{
    for (size_t off = from; off < to; off += step) {
        size_t n = to - off < step ? to - off : step;
        assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_CHUNK, id, off,
                                       bin->data + off, n),
                         0);
    }
}

/* BEGIN, CHUNKs, COMMIT: nothing changes before the commit, everything
 * at it; writes in between are replaced; the indexes are the commit's. */
static void test_staged_restore(void **state)
{
    struct kr_state *src, *s;
    struct kr_buf bin;
    uint64_t gen, rgen, id, got, total;
    const struct kr_var *v;

    (void)state;
    next_index = 0;
    src = source(&bin);
    assert_int_equal(kr_state_new(&s), 0);
    assert_int_equal(upsert(s, 9, KR_KEY_ACTIVE), 0);
    assert_int_equal(put(s, "old", 9, 1), 0);
    gen = kr_state_keys_generation(s);
    rgen = kr_state_restore_generation(s);

    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 42, bin.len, NULL, 0), 0);
    stage_chunks(s, 42, &bin, 0, bin.len / 2, 997);
    assert_true(kr_state_stage_info(s, &id, &got, &total));
    assert_int_equal(id, 42);
    assert_int_equal(got, bin.len / 2);
    assert_int_equal(total, bin.len);
    /* The live state still serves and takes writes. */
    assert_int_equal(put(s, "during", 9, 2), 0);
    assert_int_equal(kr_state_var_count(s), 2);
    assert_int_equal(kr_state_keys_generation(s), gen);
    /* Committing early drops the stage and changes nothing. */
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_COMMIT, 42, 0, NULL, 0),
                     KR_EINVAL);
    assert_false(kr_state_stage_info(s, NULL, NULL, NULL));
    assert_int_equal(kr_state_var_count(s), 2);

    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 43, bin.len, NULL, 0), 0);
    stage_chunks(s, 43, &bin, 0, bin.len, KR_RESTORE_CHUNK_MAX);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_COMMIT, 43, 0, NULL, 0),
                     0);
    assert_false(kr_state_stage_info(s, NULL, NULL, NULL));
    assert_same_content(src, s);
    assert_null(kr_state_var_get(s, "default", "old"));
    assert_int_equal(kr_state_keys_index(s), next_index);
    assert_int_equal(kr_state_vars_index(s), next_index);
    assert_true(kr_state_keys_generation(s) > gen);
    assert_int_equal(kr_state_restore_generation(s), rgen + 1);
    /* Writes go on on the new state; in-use counts were rebuilt. */
    assert_int_equal(put(s, "after", 2, 3), 0);
    v = kr_state_var_get(s, "default", "after");
    assert_non_null(v);
    assert_int_equal(v->modify_index, next_index);
    assert_int_equal(kr_state_key_get(s, v->key_id)->n_vars, 151);
    kr_state_free(s);
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* A raft snapshot taken mid-restore carries the stage: a server that
 * installs it finishes the restore like the others, byte for byte. */
static void test_stage_in_raft_snapshot(void **state)
{
    struct kr_state *src, *s, *c;
    struct kr_buf bin, snap, a, b;
    char err[KR_ERRMSG_SIZE];
    uint64_t got;

    (void)state;
    src = source(&bin);
    assert_int_equal(kr_state_new(&s), 0);
    assert_int_equal(kr_state_new(&c), 0);
    assert_int_equal(upsert(s, 9, KR_KEY_ACTIVE), 0);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 5, bin.len, NULL, 0), 0);
    /* Cut mid-record, so the snapshot carries a partial record too. */
    stage_chunks(s, 5, &bin, 0, bin.len / 3 + 11, 333);
    kr_buf_init(&snap);
    assert_int_equal(kr_state_snapshot(s, &snap), 0);
    assert_int_equal(kr_state_restore(c, snap.data, snap.len, err), 0);
    assert_true(kr_state_stage_info(c, NULL, &got, NULL));
    assert_int_equal(got, bin.len / 3 + 11);
    /* The save leaves the stage out; raft's snapshot round-trips it. */
    kr_buf_init(&a);
    kr_buf_init(&b);
    assert_int_equal(kr_state_snapshot(c, &a), 0);
    assert_int_equal(a.len, snap.len);
    assert_memory_equal(a.data, snap.data, a.len);
    a.len = 0;
    assert_int_equal(kr_state_save(c, &a), 0);
    assert_true(a.len < snap.len);
    for (int i = 0; i < 2; i++) {
        struct kr_state *t = i == 0 ? s : c;
        stage_chunks(t, 5, &bin, bin.len / 3 + 11, bin.len, 4096);
        assert_int_equal(
            restore_entry(t, KR_ENTRY_RESTORE_COMMIT, 5, 0, NULL, 0), 0);
        assert_same_content(src, t);
    }
    a.len = 0;
    assert_int_equal(kr_state_snapshot(s, &a), 0);
    assert_int_equal(kr_state_snapshot(c, &b), 0);
    /* Same content; the INDEXES record differs by the commit index. */
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data + 21, b.data + 21, a.len - 21);
    kr_buf_free(&a);
    kr_buf_free(&b);
    kr_buf_free(&snap);
    kr_state_free(c);
    kr_state_free(s);
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* Stale and broken chunks: the wrong id is ignored, a gap or a corrupt
 * state.bin drops the stage, and the live state never changes. */
static void test_stage_errors(void **state)
{
    struct kr_state *src, *s;
    struct kr_buf bin;

    (void)state;
    src = source(&bin);
    assert_int_equal(kr_state_new(&s), 0);
    assert_int_equal(upsert(s, 9, KR_KEY_ACTIVE), 0);
    assert_int_equal(put(s, "keep", 9, 1), 0);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_CHUNK, 1, 0, bin.data, 10),
        KR_ENOTFOUND);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 1, 0, NULL, 0),
                     KR_EINVAL);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 1,
                                   KR_STATE_RESTORE_MAX + 1, NULL, 0),
                     KR_EINVAL);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 1, bin.len, NULL, 0), 0);
    /* Another restore's chunk. */
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_CHUNK, 2, 0, bin.data, 10),
        KR_ENOTFOUND);
    /* A gap. */
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_CHUNK, 1, 5, bin.data, 10),
        KR_EINVAL);
    assert_false(kr_state_stage_info(s, NULL, NULL, NULL));
    /* More than announced. */
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 3, 8, NULL, 0),
                     0);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_CHUNK, 3, 0, bin.data, 10),
        KR_EINVAL);
    assert_false(kr_state_stage_info(s, NULL, NULL, NULL));
    /* A corrupt state.bin (a flipped type byte of the first key). */
    bin.data[5 + 21] = 77;
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 4, bin.len, NULL, 0), 0);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_CHUNK, 4, 0, bin.data, bin.len),
        KR_EINVAL);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_COMMIT, 4, 0, NULL, 0),
                     KR_ENOTFOUND);
    /* A new BEGIN replaces an open stage; ABORT drops it. */
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 5, bin.len, NULL, 0), 0);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 6, bin.len, NULL, 0), 0);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_ABORT, 5, 0, NULL, 0),
                     KR_ENOTFOUND);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_ABORT, 0, 0, NULL, 0),
                     0);
    assert_false(kr_state_stage_info(s, NULL, NULL, NULL));
    assert_int_equal(kr_state_var_count(s), 1);
    assert_non_null(kr_state_var_get(s, "default", "keep"));
    kr_state_free(s);
    kr_state_free(src);
    kr_buf_free(&bin);
}

struct redactor {
    struct kr_buf out;
};

static void redact_record(void *arg, uint8_t type, const uint8_t *rec,
                          size_t len)
{
    struct redactor *r = arg;

    if (type == KR_SNAP_REC_ROOT_KEY)
        assert_int_equal(kr_state_record_redact(rec, len, &r->out), 0);
    else
        kr_buf_append(&r->out, rec, len);
}

/* Redaction drops every wrapped copy and marks the key; a redacted
 * state.bin restores, its keys never become active again, and the flag
 * survives raft snapshots. */
static void test_redacted_keys(void **state)
{
    struct kr_state *src, *s, *c;
    struct kr_buf bin, snap;
    struct kr_state_loader *l;
    struct redactor r;
    char err[KR_ERRMSG_SIZE];
    char id[KR_UUID_LEN + 1];
    const struct kr_root_key *k;

    (void)state;
    src = source(&bin);
    /* Records only: the magic and version are not one. */
    kr_buf_init(&r.out);
    kr_buf_append(&r.out, bin.data, 5);
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    kr_state_loader_on_record(l, redact_record, &r);
    assert_int_equal(kr_state_loader_feed(l, bin.data, bin.len, err), 0);
    assert_int_equal(kr_state_loader_finish(l, err), 0);
    kr_state_loader_free(l);
    assert_true(r.out.len < bin.len);
    /* Neither the KEK (0xf6) nor the DEK blob (0xe5) is left; Variable
     * data is filled with 0x00..0x95. */
    for (size_t i = 0; i + 32 <= r.out.len; i++) {
        static const uint8_t kek[32] = {
            0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6,
            0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6,
            0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6, 0xf6};
        uint8_t dek[32];
        memset(dek, 0xe5, sizeof(dek));
        assert_false(memcmp(r.out.data + i, kek, 32) == 0);
        assert_false(memcmp(r.out.data + i, dek, 32) == 0);
    }
    /* Redacting a redacted state.bin changes nothing. */
    {
        struct redactor again;
        kr_buf_init(&again.out);
        kr_buf_append(&again.out, r.out.data, 5);
        assert_int_equal(kr_state_loader_new(&l, false), 0);
        kr_state_loader_on_record(l, redact_record, &again);
        assert_int_equal(kr_state_loader_feed(l, r.out.data, r.out.len, err),
                         0);
        assert_int_equal(kr_state_loader_finish(l, err), 0);
        kr_state_loader_free(l);
        assert_int_equal(again.out.len, r.out.len);
        assert_memory_equal(again.out.data, r.out.data, r.out.len);
        kr_buf_free(&again.out);
    }

    assert_int_equal(kr_state_new(&s), 0);
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 8, r.out.len, NULL, 0), 0);
    stage_chunks(s, 8, &r.out, 0, r.out.len, 100000);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_COMMIT, 8, 0, NULL, 0),
                     0);
    assert_int_equal(kr_state_key_count(s), 3);
    for (size_t i = 0; i < 3; i++) {
        k = kr_state_key_at(s, i);
        assert_true(k->redacted);
        assert_int_equal(k->n_wrapped, 0);
    }
    assert_int_equal(kr_state_var_count(s), 300);
    /* The redacted prepublished key cannot be promoted... */
    assert_int_equal(upsert(s, 3, KR_KEY_ACTIVE), KR_EINVAL);
    /* ...but a new key can, and the redacted active one steps down. */
    assert_int_equal(upsert(s, 4, KR_KEY_ACTIVE), 0);
    make_id(id, 2);
    assert_int_equal(kr_state_key_get(s, id)->state, KR_KEY_INACTIVE);
    assert_true(kr_state_key_get(s, id)->redacted);
    /* The flag survives a raft snapshot. */
    kr_buf_init(&snap);
    assert_int_equal(kr_state_snapshot(s, &snap), 0);
    assert_int_equal(kr_state_new(&c), 0);
    assert_int_equal(kr_state_restore(c, snap.data, snap.len, err), 0);
    assert_same_content(s, c);
    make_id(id, 4);
    assert_false(kr_state_key_get(c, id)->redacted);
    kr_state_free(c);
    kr_buf_free(&snap);
    kr_state_free(s);
    kr_buf_free(&r.out);
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* The ROOT_KEY flags byte: present only when a flag is set, no unknown
 * flag, and material exactly when not redacted. */
static void test_redacted_encoding(void **state)
{
    struct kr_state *src;
    struct kr_buf bin, rec, doc;
    struct kr_state_loader *l;
    char err[KR_ERRMSG_SIZE];
    const uint8_t *key;
    uint32_t klen;

    (void)state;
    src = source(&bin);
    key = bin.data + 5 + 21;
    klen = (uint32_t)key[1] | (uint32_t)key[2] << 8 | (uint32_t)key[3] << 16 |
           (uint32_t)key[4] << 24;
    kr_buf_init(&rec);
    assert_int_equal(kr_state_record_redact(key, 5 + klen, &rec), 0);
    assert_int_equal(rec.data[rec.len - 1], 1);
    assert_int_equal(kr_state_record_redact(key, 4 + klen, &rec), KR_EINVAL);
    assert_int_equal(kr_state_record_redact(bin.data + 5, 21, &rec), KR_EINVAL);
    /* A state.bin whose first key has a given last byte: flags 0 or 2,
     * or a redaction mark on a key that still has material. */
    for (int variant = 0; variant < 3; variant++) {
        uint8_t flags[] = {0, 2, 1};
        uint32_t nlen = klen + 1;
        kr_buf_init(&doc);
        kr_buf_append(&doc, bin.data, 5 + 21);
        kr_buf_u8(&doc, KR_SNAP_REC_ROOT_KEY);
        kr_buf_u32(&doc, nlen);
        kr_buf_append(&doc, key + 5, klen);
        kr_buf_u8(&doc, flags[variant]);
        kr_buf_append(&doc, key + 5 + klen,
                      bin.len - (size_t)(key + 5 + klen - bin.data));
        assert_int_equal(kr_state_loader_new(&l, false), 0);
        assert_int_equal(kr_state_loader_feed(l, doc.data, doc.len, err),
                         KR_ECORRUPT);
        assert_non_null(strstr(err, "malformed state record RootKey"));
        kr_state_loader_free(l);
        kr_buf_free(&doc);
    }
    kr_buf_free(&rec);
    kr_state_free(src);
    kr_buf_free(&bin);
}

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The offset of the nth (from 0) record of a type in bin. */
static size_t find_record(const struct kr_buf *bin, uint8_t type, int nth)
{
    for (size_t off = 5; off + 5 <= bin->len;
         off += 5 + rd_u32(bin->data + off + 1))
        if (bin->data[off] == type && nth-- == 0)
            return off;
    fail_msg("no record %u #%d", type, nth);
    return 0;
}

/* bin with its record at `from` (len bytes) moved to just before `to`
 * (an offset in bin), into *out. */
static void move_record(const struct kr_buf *bin, size_t from, size_t len,
                        size_t to, struct kr_buf *out)
{
    kr_buf_init(out);
    for (size_t off = 0; off < bin->len;) {
        size_t n;
        if (off == to)
            kr_buf_append(out, bin->data + from, len);
        if (off == from) {
            off += len;
            continue;
        }
        n = off < 5 ? 5 : 5 + rd_u32(bin->data + off + 1);
        kr_buf_append(out, bin->data + off, n);
        off += n;
    }
    assert_int_equal(out->len, bin->len);
}

static void expect_refused(const struct kr_buf *doc, const char *why)
{
    struct kr_state_loader *l;
    struct kr_state *t;
    char err[KR_ERRMSG_SIZE];

    assert_int_equal(kr_state_loader_new(&l, false), 0);
    assert_int_equal(kr_state_loader_feed(l, doc->data, doc->len, err),
                     KR_ECORRUPT);
    if (strstr(err, why) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", err, why);
    kr_state_loader_free(l);
    assert_int_equal(kr_state_new(&t), 0);
    assert_int_equal(kr_state_restore(t, doc->data, doc->len, err),
                     KR_ECORRUPT);
    assert_int_equal(kr_state_key_count(t), 0);
    kr_state_free(t);
}

/* A key's identity record is read only right after that key's ROOT_KEY
 * record: before the first key, after another key's identity record,
 * after the Variables, or naming the key before it while standing after
 * a later one, it is refused. */
static void test_identity_order(void **state)
{
    struct kr_state *src;
    struct kr_buf bin, doc;
    size_t id1, id3, len = 5 + 4 + KR_UUID_LEN + 8 + 1;

    (void)state;
    src = source(&bin);
    id1 = find_record(&bin, KR_SNAP_REC_IDENTITY, 0);
    id3 = find_record(&bin, KR_SNAP_REC_IDENTITY, 1);
    /* The writer puts each right after its key. */
    {
        size_t k1 = find_record(&bin, KR_SNAP_REC_ROOT_KEY, 0);
        assert_int_equal(k1 + 5 + rd_u32(bin.data + k1 + 1), id1);
        assert_int_equal(id1 + len, find_record(&bin, KR_SNAP_REC_ROOT_KEY, 1));
    }
    assert_int_equal(id3 + len, find_record(&bin, KR_SNAP_REC_VAR, 0));
    /* Before the first key. */
    move_record(&bin, id1, len, find_record(&bin, KR_SNAP_REC_ROOT_KEY, 0),
                &doc);
    expect_refused(&doc, "state record KeyIdentity out of order");
    kr_buf_free(&doc);
    /* Key 1's record after key 2's: not right after its key, and naming
     * another key than the one before it. */
    move_record(&bin, id1, len, find_record(&bin, KR_SNAP_REC_ROOT_KEY, 2),
                &doc);
    expect_refused(&doc, "malformed state record KeyIdentity");
    kr_buf_free(&doc);
    /* Right after another identity record. */
    move_record(&bin, id1, len, id3 + len, &doc);
    expect_refused(&doc, "out of order");
    kr_buf_free(&doc);
    /* Among the Variables and before END. */
    move_record(&bin, id3, len, find_record(&bin, KR_SNAP_REC_VAR, 7), &doc);
    expect_refused(&doc, "out of order");
    kr_buf_free(&doc);
    move_record(&bin, id3, len, find_record(&bin, KR_SNAP_REC_END, 0), &doc);
    expect_refused(&doc, "out of order");
    kr_buf_free(&doc);
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* A raft snapshot taken while the stage has received any prefix of the
 * key records (a cut inside a ROOT_KEY record, between it and its
 * identity record, inside that) installs, and the restore finishes the
 * same as without it. */
static void test_stage_cut_in_keys(void **state)
{
    struct kr_state *src, *s, *c;
    struct kr_buf bin, snap;
    char err[KR_ERRMSG_SIZE];
    size_t end;

    (void)state;
    src = source(&bin);
    end = find_record(&bin, KR_SNAP_REC_VAR, 1);
    kr_buf_init(&snap);
    for (size_t cut = 1; cut <= end; cut++) {
        assert_int_equal(kr_state_new(&s), 0);
        assert_int_equal(kr_state_new(&c), 0);
        assert_int_equal(
            restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 3, bin.len, NULL, 0), 0);
        stage_chunks(s, 3, &bin, 0, cut, cut);
        snap.len = 0;
        assert_int_equal(kr_state_snapshot(s, &snap), 0);
        if (kr_state_restore(c, snap.data, snap.len, err) != 0)
            fail_msg("cut at %zu: %s", cut, err);
        stage_chunks(c, 3, &bin, cut, bin.len, 65536);
        assert_int_equal(
            restore_entry(c, KR_ENTRY_RESTORE_COMMIT, 3, 0, NULL, 0), 0);
        assert_same_content(src, c);
        kr_state_free(c);
        kr_state_free(s);
    }
    kr_buf_free(&snap);
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* Redaction leaves identity records as they are: they hold no secret, and
 * the key GC still needs them after a restore. */
static void test_redact_keeps_identity(void **state)
{
    struct kr_state *src, *s;
    struct kr_buf bin;
    struct kr_state_loader *l;
    struct redactor r;
    char err[KR_ERRMSG_SIZE];
    char id[KR_UUID_LEN + 1];

    (void)state;
    src = source(&bin);
    kr_buf_init(&r.out);
    kr_buf_append(&r.out, bin.data, 5);
    assert_int_equal(kr_state_loader_new(&l, false), 0);
    kr_state_loader_on_record(l, redact_record, &r);
    assert_int_equal(kr_state_loader_feed(l, bin.data, bin.len, err), 0);
    assert_int_equal(kr_state_loader_finish(l, err), 0);
    kr_state_loader_free(l);
    assert_int_equal(kr_state_new(&s), 0);
    assert_int_equal(kr_state_restore(s, r.out.data, r.out.len, err), 0);
    make_id(id, 1);
    assert_true(kr_state_key_get(s, id)->redacted);
    assert_int_equal(kr_state_key_get(s, id)->id_max_exp, 5000);
    assert_true(kr_state_key_get(s, id)->id_no_exp);
    make_id(id, 3);
    assert_int_equal(kr_state_key_get(s, id)->id_max_exp, 9000);
    assert_false(kr_state_key_get(s, id)->id_no_exp);
    /* Its exact save size counts them. */
    r.out.len = 0;
    assert_int_equal(kr_state_save(s, &r.out), 0);
    assert_int_equal(r.out.len, kr_state_save_size(s));
    kr_state_free(s);
    kr_buf_free(&r.out);
    kr_state_free(src);
    kr_buf_free(&bin);
}

static int del(struct kr_state *s, const char *path)
{
    struct kr_entry e;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_VAR_APPLY;
    e.var.op = KR_VAR_DELETE;
    e.var.namespace = "default";
    e.var.path = (char *)path;
    e.var.now = 6000;
    return apply(s, &e);
}

static int emit_to_buf(void *arg, const void *p, size_t n, char *errmsg)
{
    (void)errmsg;
    assert_true(n <= (1u << 20));
    kr_buf_append(arg, p, n);
    return 0;
}

/* A frozen view's encoding, emitted into a buffer; exactly its size. */
static void write_frozen(struct kr_state_frozen *f, struct kr_buf *out)
{
    kr_buf_init(out);
    assert_int_equal(kr_state_frozen_emit(f, emit_to_buf, out, NULL), 0);
    assert_int_equal(out->len, kr_state_frozen_size(f));
}

/* f's encoding is exactly want's bytes. */
static void assert_frozen_writes(struct kr_state_frozen *f,
                                 const struct kr_buf *want)
{
    struct kr_buf got;

    write_frozen(f, &got);
    assert_int_equal(got.len, want->len);
    assert_memory_equal(got.data, want->data, want->len);
    kr_buf_free(&got);
}

/* A frozen view writes what kr_state_snapshot / kr_state_save would have
 * written at the freeze, whatever is applied meanwhile: overwrites,
 * deletes, inserts, a staged restore and its commit, which replaces the
 * whole state.  Under ASan this also proves that no buffer a view still
 * reads was freed. */
static void test_frozen_view(void **state)
{
    struct kr_state *s;
    struct kr_state_frozen *with_stage, *plain;
    struct kr_buf bin, want_snap, want_save, got;
    char path[32];

    (void)state;
    next_index = 0;
    s = source(&bin);
    kr_buf_init(&want_snap);
    kr_buf_init(&want_save);
    assert_int_equal(kr_state_snapshot(s, &want_snap), 0);
    assert_int_equal(kr_state_save(s, &want_save), 0);
    assert_int_equal(kr_state_freeze(s, true, &with_stage), 0);
    assert_int_equal(kr_state_freeze(s, false, &plain), 0);
    assert_int_equal(kr_state_frozen_size(with_stage), want_snap.len);
    assert_int_equal(kr_state_frozen_size(plain), want_save.len);
    assert_true(kr_state_frozen_head_size(plain) < want_save.len);

    for (int i = 0; i < 50; i++) {
        snprintf(path, sizeof(path), "app/%03d", i);
        assert_int_equal(put(s, path, 2, 0xaa), 0);
        snprintf(path, sizeof(path), "web/%03d", i);
        assert_int_equal(del(s, path), 0);
        snprintf(path, sizeof(path), "new/%03d", i);
        assert_int_equal(put(s, path, 2, 0xbb), 0);
    }
    /* A restore of the original state, committed: every node goes. */
    assert_int_equal(
        restore_entry(s, KR_ENTRY_RESTORE_BEGIN, 7, bin.len, NULL, 0), 0);
    stage_chunks(s, 7, &bin, 0, bin.len, 1000);
    assert_int_equal(restore_entry(s, KR_ENTRY_RESTORE_COMMIT, 7, 0, NULL, 0),
                     0);
    assert_int_equal(put(s, "app/000", 2, 0xcc), 0);

    write_frozen(with_stage, &got);
    assert_int_equal(got.len, want_snap.len);
    assert_memory_equal(got.data, want_snap.data, got.len);
    kr_buf_free(&got);
    kr_state_thaw(s, with_stage);
    /* One view gone, the other still reads the old buffers; emitted in
     * pieces it is the same bytes. */
    write_frozen(plain, &got);
    assert_memory_equal(got.data, want_save.data, want_save.len);
    kr_buf_free(&got);
    kr_buf_init(&got);
    assert_int_equal(kr_state_frozen_emit(plain, emit_to_buf, &got, NULL), 0);
    assert_int_equal(got.len, want_save.len);
    assert_memory_equal(got.data, want_save.data, want_save.len);
    kr_buf_free(&got);
    kr_state_thaw(s, plain);

    /* The state itself is what was applied. */
    assert_int_equal(kr_state_var_count(s), 300);
    assert_int_equal(kr_state_var_get(s, "default", "app/000")->data[0], 0xcc);
    assert_null(kr_state_var_get(s, "default", "new/000"));
    kr_state_free(s);
    kr_buf_free(&bin);
    kr_buf_free(&want_snap);
    kr_buf_free(&want_save);
}

/*
 * A view frozen while a restore is staged writes the stage as
 * kr_state_snapshot did at the freeze (its Variables emitted from the
 * view's copies, a record cut by the last chunk after them), whatever
 * comes next: more chunks, and then the restore's abort (view a) or its
 * commit followed by writes to the restored Variables (view b).  Under
 * ASan this proves the staged buffers outlive the stage while a view
 * reads them.
 */
static void test_frozen_view_of_a_stage(void **state)
{
    struct kr_state *src, *s;
    struct kr_state_frozen *f;
    struct kr_buf bin, want;

    (void)state;
    src = source(&bin);
    for (int round = 0; round < 2; round++) {
        uint64_t id = 20 + (uint64_t)round;
        size_t cut = bin.len / 2 + 7; /* inside a Variable's record */

        assert_int_equal(kr_state_new(&s), 0);
        assert_int_equal(upsert(s, 9, KR_KEY_ACTIVE), 0);
        assert_int_equal(put(s, "live", 9, 1), 0);
        assert_int_equal(
            restore_entry(s, KR_ENTRY_RESTORE_BEGIN, id, bin.len, NULL, 0), 0);
        stage_chunks(s, id, &bin, 0, cut, 500);
        kr_buf_init(&want);
        assert_int_equal(kr_state_snapshot(s, &want), 0);
        assert_true(kr_state_var_bytes(s) > bin.len / 3);
        assert_int_equal(kr_state_freeze(s, true, &f), 0);
        assert_int_equal(kr_state_frozen_size(f), want.len);

        stage_chunks(s, id, &bin, cut, bin.len - 100, 500);
        if (round == 0) {
            assert_int_equal(
                restore_entry(s, KR_ENTRY_RESTORE_ABORT, id, 0, NULL, 0), 0);
            assert_false(kr_state_stage_info(s, NULL, NULL, NULL));
        } else {
            stage_chunks(s, id, &bin, bin.len - 100, bin.len, 500);
            assert_int_equal(
                restore_entry(s, KR_ENTRY_RESTORE_COMMIT, id, 0, NULL, 0), 0);
            assert_same_content(src, s);
            /* Overwrite and delete what the view copied from the stage. */
            assert_int_equal(put(s, "app/000", 2, 0xcc), 0);
            assert_int_equal(del(s, "web/000"), 0);
        }
        assert_frozen_writes(f, &want);
        kr_state_thaw(s, f);
        kr_buf_free(&want);
        kr_state_free(s);
    }
    kr_state_free(src);
    kr_buf_free(&bin);
}

/* A Variable whose key was removed with force still writes its KeyID,
 * and a second freeze (which reuses the first view's array) writes the
 * state as it is then. */
static void test_frozen_view_again(void **state)
{
    struct kr_state *s;
    struct kr_state_frozen *f;
    struct kr_buf bin, want, got;
    struct kr_entry e;

    (void)state;
    next_index = 0;
    s = source(&bin);
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_DELETE;
    make_id(e.key_delete.key_id, 1); /* inactive, 150 Variables under it */
    e.key_delete.force = true;
    assert_int_equal(apply(s, &e), 0);
    for (int round = 0; round < 2; round++) {
        kr_buf_init(&want);
        assert_int_equal(kr_state_save(s, &want), 0);
        assert_int_equal(kr_state_freeze(s, false, &f), 0);
        write_frozen(f, &got);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data, want.data, want.len);
        kr_state_thaw(s, f);
        kr_buf_free(&got);
        kr_buf_free(&want);
        assert_int_equal(put(s, "app/000", 2, 0x11), 0);
        assert_int_equal(del(s, "web/001"), 0);
    }
    kr_state_free(s);
    kr_buf_free(&bin);
}

/* One change of the mix below: an overwrite, a delete, or a new path
 * before, between or after the existing ones, chosen by r. */
static void churn(struct kr_state *s, unsigned r)
{
    static const char *const prefix[] = {"app/", "web/", "aaa/",
                                         "mmm/", "zzz/", "app/1"};
    char path[32];
    unsigned which = r % 6, n = (r / 6) % 150;

    snprintf(path, sizeof(path), "%s%03u", prefix[which], n);
    if ((r / 900) % 3 == 0)
        (void)del(s, path);
    else
        assert_int_equal(put(s, path, 2, (uint8_t)r), 0);
}

/* A freeze filled a few Variables per step, with applies between the
 * steps that overwrite, delete and create Variables on both sides of the
 * step's position (the node it would copy next among them), writes what
 * kr_state_snapshot wrote at kr_state_freeze_begin. */
static void test_freeze_in_steps(void **state)
{
    struct kr_state *s;
    struct kr_state_frozen *f, *g;
    struct kr_buf bin, want, want2, got;
    unsigned r = 12345;

    (void)state;
    for (size_t budget = 1; budget <= 64; budget *= 4) {
        next_index = 0;
        s = source(&bin);
        kr_buf_init(&want);
        assert_int_equal(kr_state_snapshot(s, &want), 0);
        assert_int_equal(kr_state_freeze_begin(s, true, &f), 0);
        while (!kr_state_freeze_step(s, f, budget))
            for (int i = 0; i < 5; i++) {
                r = r * 1103515245u + 12345u;
                churn(s, r >> 8);
            }
        /* Whole: later applies change nothing in it. */
        for (int i = 0; i < 500; i++)
            churn(s, (unsigned)i * 7919u);
        assert_frozen_writes(f, &want);
        kr_state_thaw(s, f);
        kr_buf_free(&want);

        /* A view given up half filled, and one still filling when another
         * freeze comes: that freeze finishes it first. */
        assert_int_equal(kr_state_freeze_begin(s, false, &f), 0);
        assert_false(kr_state_freeze_step(s, f, 3));
        kr_state_thaw(s, f);
        kr_buf_init(&want);
        assert_int_equal(kr_state_save(s, &want), 0);
        assert_int_equal(kr_state_freeze_begin(s, false, &f), 0);
        assert_false(kr_state_freeze_step(s, f, 3));
        churn(s, 0);           /* deletes app/000, copied already */
        churn(s, 901);         /* overwrites web/000: */
        churn(s, 6 * 149 + 1); /* web/149, not reached yet */
        kr_buf_init(&want2);
        assert_int_equal(kr_state_save(s, &want2), 0);
        assert_int_equal(kr_state_freeze(s, false, &g), 0);
        assert_true(kr_state_freeze_step(s, f, 1)); /* whole now */
        churn(s, 6 * 148 + 1);
        write_frozen(f, &got);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data, want.data, want.len);
        kr_buf_free(&got);
        write_frozen(g, &got);
        assert_int_equal(got.len, want2.len);
        assert_memory_equal(got.data, want2.data, want2.len);
        kr_buf_free(&got);
        kr_state_thaw(s, g);
        kr_state_thaw(s, f);
        kr_buf_free(&want);
        kr_buf_free(&want2);
        kr_state_free(s);
        kr_buf_free(&bin);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader_pieces),
        cmocka_unit_test(test_loader_rejects),
        cmocka_unit_test(test_loader_order),
        cmocka_unit_test(test_staged_restore),
        cmocka_unit_test(test_stage_in_raft_snapshot),
        cmocka_unit_test(test_stage_errors),
        cmocka_unit_test(test_redacted_keys),
        cmocka_unit_test(test_redacted_encoding),
        cmocka_unit_test(test_identity_order),
        cmocka_unit_test(test_stage_cut_in_keys),
        cmocka_unit_test(test_redact_keeps_identity),
        cmocka_unit_test(test_frozen_view),
        cmocka_unit_test(test_frozen_view_of_a_stage),
        cmocka_unit_test(test_frozen_view_again),
        cmocka_unit_test(test_freeze_in_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
