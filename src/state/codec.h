/*
 * The log entry codec.  Every entry starts with a version byte and a type
 * byte, followed by length-prefixed fields (see common/buf.h).  Decoders
 * check every length before slicing and reject trailing bytes, so a
 * corrupted or hostile entry is an error, never an out-of-bounds read.
 *
 * Encoding is deterministic: the same struct always yields the same bytes.
 */
#ifndef KR_STATE_CODEC_H
#define KR_STATE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "state/state.h"

#define KR_ENTRY_VERSION 1

enum kr_entry_type {
    KR_ENTRY_KEY_UPSERT = 1,
    KR_ENTRY_KEY_DELETE = 2,
    KR_ENTRY_VAR_APPLY = 3,
    KR_ENTRY_VAR_REKEY = 4,
    KR_ENTRY_IDENTITY = 5,
    /* A snapshot restore through raft (see state.h "Staged restore"). */
    KR_ENTRY_RESTORE_BEGIN = 6,
    KR_ENTRY_RESTORE_CHUNK = 7,
    KR_ENTRY_RESTORE_COMMIT = 8,
    KR_ENTRY_RESTORE_ABORT = 9,
};

/* The most Variables one VAR_REKEY entry may carry. */
#define KR_REKEY_ITEMS_MAX 65536

struct kr_entry_key_upsert {
    struct kr_root_key key; /* create/modify index ignored; n_vars unused */
    bool rekey;
};

struct kr_entry_key_delete {
    char key_id[KR_UUID_LEN + 1];
    bool force;
};

struct kr_entry_var_apply {
    uint8_t op; /* enum kr_var_op */
    char *namespace;
    char *path;
    uint64_t cas;                 /* for CAS and DELETE_CAS */
    char key_id[KR_UUID_LEN + 1]; /* SET/CAS only */
    uint8_t *data;                /* SET/CAS only */
    size_t data_len;
    int64_t now; /* leader's wall clock, Unix ns */
};

/* One Variable re-encrypted by the rekey job, as it read it. */
struct kr_rekey_item {
    char *namespace;
    char *path;
    uint64_t modify_index; /* the version that was re-encrypted */
    uint8_t *data;         /* sealed under the entry's key_id */
    size_t data_len;
};

/*
 * A batch of the full-rekey job (spec 7.4): Variables re-encrypted under
 * the active key key_id, each applied only if it is still at the version
 * read and still under a rekeying key; then the job's checkpoint moves to
 * (after_ns, after_path), both "" for "start over from the beginning".
 */
struct kr_entry_var_rekey {
    char key_id[KR_UUID_LEN + 1];
    char *after_ns;
    char *after_path;
    uint32_t n_items;
    struct kr_rekey_item *items;
};

/*
 * The leader records, before it hands out a workload identity signed with
 * key_id, what that identity needs the key kept for: an expiry (Unix
 * seconds, 0 for none; usually rounded up so that later identities fall
 * under the same record) and/or the fact that one has no expiry.  Apply
 * only raises the key's recorded values (state.h, id_max_exp and
 * id_no_exp); a key that is gone is KR_ENOTFOUND.
 */
struct kr_entry_identity {
    char key_id[KR_UUID_LEN + 1];
    int64_t exp;
    bool no_exp;
};

/*
 * The four restore entries share one body: BEGIN carries id and total
 * (the length of the state.bin being restored), CHUNK carries id, offset
 * and data (at most KR_RESTORE_CHUNK_MAX bytes of it), COMMIT and ABORT
 * carry id (ABORT with id 0 drops whatever is staged).
 */
struct kr_entry_restore {
    uint64_t id;
    uint64_t total;  /* BEGIN */
    uint64_t offset; /* CHUNK */
    uint8_t *data;   /* CHUNK */
    size_t data_len;
};

struct kr_entry {
    uint8_t type; /* enum kr_entry_type */
    struct kr_entry_restore restore;
    struct kr_entry_key_upsert key_upsert;
    struct kr_entry_key_delete key_delete;
    struct kr_entry_var_apply var;
    struct kr_entry_var_rekey rekey;
    struct kr_entry_identity identity;
};

/* Appends the encoding of e to out.  Returns 0 or KR_ENOMEM. */
int kr_entry_encode(const struct kr_entry *e, struct kr_buf *out);

/* The bytes a KR_ENTRY_VAR_REKEY entry's encoding takes: its head (with
 * the checkpoint after_ns, after_path) plus one item_size per item, so a
 * batch can be sized as it is built. */
size_t kr_rekey_head_size(const char *after_ns, const char *after_path);
size_t kr_rekey_item_size(const char *ns, const char *path, size_t data_len);

/* Decodes buf into *e (owned copies; release with kr_entry_clear).
 * Returns 0 or KR_ECORRUPT with the reason in errmsg (may be NULL). */
int kr_entry_decode(struct kr_entry *e, const void *buf, size_t len,
                    char *errmsg);

void kr_entry_clear(struct kr_entry *e);

/* Root key record body, shared by entries and snapshots. */
void kr_codec_put_root_key(struct kr_buf *b, const struct kr_root_key *k);
/* Decodes into *k (owned contents); false on malformed input. */
bool kr_codec_get_root_key(struct kr_rd *r, struct kr_root_key *k);
/* Frees a root key's owned contents (wrapped entries, wiping KEKs). */
void kr_root_key_clear(struct kr_root_key *k);

#endif
