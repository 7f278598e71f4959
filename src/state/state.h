/*
 * The replicated state machine: root keys (metadata plus wrapped material)
 * and Variables (ciphertext plus KeyID plus metadata), with the raft index
 * at which each table last changed.
 *
 * Purity: apply, snapshot and restore do no I/O, read no clock and draw no
 * randomness.  Timestamps, UUIDs, nonces and key material are produced by
 * the leader and carried inside the log entry, so every replica that
 * applies the same entries reaches the same state byte for byte.
 *
 * Entry outcome vs. failure: kr_state_apply returns the outcome of the
 * command for whoever proposed it (0, KR_ECONFLICT for a check-and-set
 * conflict, KR_ENOTFOUND, KR_EINVAL for a rule violation).  Every replica
 * computes the same outcome.  Running out of memory during apply aborts the
 * process: a replica that silently skipped an entry would diverge.
 *
 * Staged restore.  An operator's snapshot is restored through raft in
 * pieces, so no log entry is huge: RESTORE_BEGIN opens a staging area
 * for a state.bin of a given length, RESTORE_CHUNKs append to it in
 * order (each is decoded into a state being built beside the live one),
 * and RESTORE_COMMIT swaps the built state in, in one apply.  Until then
 * the live state serves reads and takes writes as usual; writes applied
 * before the commit are replaced by it.  A staging area is part of the
 * replicated state: raft snapshots carry it, so a server that catches up
 * from one can still apply the commit.  RESTORE_ABORT (or a new BEGIN)
 * drops it.  See docs/architecture.md "Restoring a snapshot".
 *
 * Not thread safe: only the loop thread touches a struct kr_state.
 */
#ifndef KR_STATE_STATE_H
#define KR_STATE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/uuid.h"
#include "kms/blob.h"

#define KR_ALGORITHM_AES256GCM "aes256-gcm"
#define KR_VAR_PATH_MAX 128
#define KR_VAR_ITEMS_MAX 65536
#define KR_NAMESPACE_MAX 128
/* The largest Variable ciphertext anywhere: the HTTP body cap (1 MiB)
 * bounds the Items JSON, plus nonce and tag.  Apply, restore and the HTTP
 * layer all use this one number, so whatever was accepted can be restored. */
#define KR_VAR_DATA_MAX ((1u << 20) + 28u)
/* The largest state.bin a restore takes: with the live state it must fit
 * in one raft snapshot frame (2 GiB) while the restore is staged. */
#define KR_STATE_RESTORE_MAX (1ull << 30)
/* The most bytes one RESTORE_CHUNK entry carries. */
#define KR_RESTORE_CHUNK_MAX (1u << 20)

/* The state snapshot encoding ("state.bin") starts with this magic and
 * version byte; records follow. */
#define KR_SNAP_HEADER "KRST\x01"
#define KR_SNAP_HEADER_LEN 5

/* Record types of the state snapshot encoding. */
enum kr_snap_record {
    KR_SNAP_REC_INDEXES = 1,
    KR_SNAP_REC_ROOT_KEY = 2,
    KR_SNAP_REC_VAR = 3,
    KR_SNAP_REC_REKEY = 4, /* the rekey checkpoint, when there is one */
    /* A key's identity record (id_max_exp, id_no_exp), right after that
     * key's ROOT_KEY record and only when it is not empty. */
    KR_SNAP_REC_IDENTITY = 5,
    KR_SNAP_REC_STAGE = 6, /* a staged restore (raft snapshots only) */
    KR_SNAP_REC_END = 255, /* u64 count of the records before it */
};

/* "RootKey", "Variable", ... for a record type; NULL when unknown. */
const char *kr_snap_record_name(uint8_t type);

enum kr_key_state {
    KR_KEY_ACTIVE,
    KR_KEY_INACTIVE,
    KR_KEY_REKEYING,
    KR_KEY_PREPUBLISHED,
    KR_KEY_DEPRECATED,
};

/* "active", "inactive", ... */
const char *kr_key_state_name(enum kr_key_state s);
int kr_key_state_parse(const char *s, enum kr_key_state *out);

/* One keyring entry as replicated.  Material is only ever wrapped here. */
struct kr_root_key {
    char key_id[KR_UUID_LEN + 1];
    char algorithm[16];
    int64_t create_time; /* Unix ns, chosen by the leader */
    uint64_t create_index;
    uint64_t modify_index;
    enum kr_key_state state;
    int64_t publish_time; /* Unix ns; non-zero only while prepublished */
    struct kr_wrapped_key *wrapped;
    size_t n_wrapped;
    uint64_t n_vars; /* derived: Variables whose KeyID is this key */
    /* Variables under this key when it last became rekeying (replicated
     * through snapshots, not log entries): the rekey's progress is
     * rekey_total - n_vars of rekey_total. */
    uint64_t rekey_total;
    /* Workload identities signed with this key, as the leader recorded
     * them (KR_ENTRY_IDENTITY) before handing any out: the latest expiry
     * of any of them, Unix seconds (0 when none had one), and whether any
     * was issued without an expiry.  Only ever grow.  Replicated through
     * IDENTITY entries and snapshots; a KEY_UPSERT never sets them. */
    int64_t id_max_exp;
    bool id_no_exp;
    /* Restored from a redacted snapshot: n_wrapped is 0 and the material
     * is gone.  Only snapshot records carry it (a key is born with its
     * material, so no log entry makes one). */
    bool redacted;
};

struct kr_var {
    char *namespace;
    char *path;
    char key_id[KR_UUID_LEN + 1];
    uint8_t *data; /* nonce || ct || tag, AAD = key_id */
    size_t data_len;
    uint64_t create_index;
    uint64_t modify_index;
    int64_t create_time;
    int64_t modify_time;
};

enum kr_var_op {
    KR_VAR_SET = 1,
    KR_VAR_CAS = 2,
    KR_VAR_DELETE = 3,
    KR_VAR_DELETE_CAS = 4,
};

struct kr_state;

int kr_state_new(struct kr_state **out);
void kr_state_free(struct kr_state *s);

/* Applies one encoded log entry committed at index.  See the outcome rule
 * above.  buf is borrowed. */
int kr_state_apply(struct kr_state *s, uint64_t index, const void *buf,
                   size_t len);

/* Serialises the whole state, a staged restore included, into out
 * (appended): raft's snapshot.  Returns 0 or KR_ENOMEM. */
int kr_state_snapshot(const struct kr_state *s, struct kr_buf *out);

/* Serialises what readers see, without a staged restore: the state.bin
 * of an operator's snapshot.  kr_state_save_size is its exact length. */
int kr_state_save(const struct kr_state *s, struct kr_buf *out);
size_t kr_state_save_size(const struct kr_state *s);

/*
 * A frozen view: the state's encoding as of the freeze, written by any
 * thread while the loop goes on applying entries.  kr_state_freeze (loop
 * thread) encodes the few head records (keys, the checkpoint and, with
 * with_stage, a staged restore) and copies each Variable's metadata and
 * buffer pointers, O(Variables) small copies; while a view is alive,
 * applies keep the buffers they let go of instead of freeing them, and
 * the state keeps the last view's array for the next freeze.
 * kr_state_frozen_size (any thread, O(1): the state keeps its
 * Variables' encoded length up to date) is the encoding's length, and
 * kr_state_frozen_emit (any thread, one at a time per view) hands out the
 * whole encoding, exactly that many bytes: the same bytes
 * kr_state_snapshot (with_stage) or kr_state_save (without) would have
 * written at the freeze.  Its first kr_state_frozen_head_size bytes hold
 * the aead KEKs (and a staged restore's, but for a key record a chunk
 * cut, which comes after the staged Variables): wipe any copy of the
 * view's bytes.  A staged restore's Variables are copied by the freeze
 * itself, in one piece.  kr_state_thaw (loop
 * thread) releases the view; every view must be thawed before
 * kr_state_free.
 */
struct kr_state_frozen;

int kr_state_freeze(struct kr_state *s, bool with_stage,
                    struct kr_state_frozen **out);
/*
 * The same freeze spread over many loop turns, for a state too big to
 * copy in one: kr_state_freeze_begin encodes the head records and
 * returns a view with no Variables yet; kr_state_freeze_step (loop
 * thread, between applies) copies up to budget more of view's and
 * returns true once view is whole (view NULL: whichever is filling).  Until
 * then the view must not be read, only thawed.  An apply that changes or
 * deletes a Variable the steps have not reached first puts it in the view as it
 * was, and Variables made after the freeze stay out of it, so the filled view
 * is exactly the state at kr_state_freeze_begin.  One view fills at a time: a
 * freeze, or a restore's install, finishes a view still filling first.
 */
int kr_state_freeze_begin(struct kr_state *s, bool with_stage,
                          struct kr_state_frozen **out);
bool kr_state_freeze_step(struct kr_state *s, struct kr_state_frozen *view,
                          size_t budget);
size_t kr_state_frozen_size(const struct kr_state_frozen *f);
size_t kr_state_frozen_head_size(const struct kr_state_frozen *f);
/* In pieces of at most about 1 MiB handed to out (the first holds the
 * head records, so out must not keep or log the aead KEKs in it).
 * Returns 0, out's error, or KR_ENOMEM. */
typedef int (*kr_state_emit_fn)(void *arg, const void *p, size_t n,
                                char *errmsg);
int kr_state_frozen_emit(const struct kr_state_frozen *f, kr_state_emit_fn out,
                         void *arg, char *errmsg);
/* As kr_state_frozen_emit, in the caller's buf of KR_STATE_EMIT_CHUNK
 * bytes (borrowed): no allocation, except a buffer of its own for a
 * record larger than that (a Variable near the 1 MiB cap). */
#define KR_STATE_EMIT_CHUNK (1u << 20)
int kr_state_frozen_emit_into(const struct kr_state_frozen *f, uint8_t *buf,
                              kr_state_emit_fn out, void *arg, char *errmsg);
void kr_state_thaw(struct kr_state *s, struct kr_state_frozen *f);

/* As kr_state_thaw, but the buffers the view kept alive (there may be
 * hundreds of thousands after a long write under load) are handed back,
 * to be freed with kr_state_garbage_free on any thread, e.g. a worker.
 * NULL when there are none. */
struct kr_state_garbage;
struct kr_state_garbage *kr_state_thaw_deferred(struct kr_state *s,
                                                struct kr_state_frozen *f);
void kr_state_garbage_free(struct kr_state_garbage *g);

/*
 * The array a freeze fills, one entry per Variable, is kept between
 * freezes; a freeze that finds it too small allocates and faults in a
 * new one on the loop, tens of MB at a million Variables.  To keep that
 * off the loop: kr_state_spare_wanted (loop thread) says how many
 * entries a new spare array should have, 0 when the current one will do
 * or one was asked for and not given yet (every non-zero answer must be
 * followed by kr_state_spare_give, with NULL if the allocation failed);
 * kr_state_spare_make (any thread) allocates and touches one; and
 * kr_state_spare_give (loop thread) installs it, or frees it when it is
 * no longer wanted.
 */
size_t kr_state_spare_wanted(struct kr_state *s);
void *kr_state_spare_make(size_t n);
void kr_state_spare_give(struct kr_state *s, void *spare, size_t n);

/* Replaces the whole state with a decoded raft snapshot (staged restore
 * included).  On any error the current state is left untouched and
 * errmsg says what was wrong. */
int kr_state_restore(struct kr_state *s, const void *buf, size_t len,
                     char *errmsg);

/*
 * An incremental reader of the snapshot encoding: kr_state_restore and
 * the staged restore use it, and so do the snapshot archive tools
 * (validation, inspect, redaction) on an operator's state.bin, which may
 * arrive in pieces of any size.  It checks everything kr_state_restore
 * checks: magic and version, every record and the canonical order
 * (INDEXES, ROOT_KEY each followed by its IDENTITY record when it has
 * one, REKEY?, VAR* in tree order, END with the count), unique valid
 * KeyIDs, a redacted key exactly when it has no material, valid paths
 * and namespaces, at most one active key, no byte after END.
 * A state.bin never holds a staged restore.
 *
 * With build set the loader also builds the state (kr_state_restore and
 * the staged restore install it); without, it keeps only the key table.
 * Not thread safe; any one thread.
 */
struct kr_state_loader;

/* rec is the whole record (type, length, body), borrowed for the call. */
typedef void (*kr_state_record_cb)(void *arg, uint8_t type, const uint8_t *rec,
                                   size_t len);

/* Returns 0 or KR_ENOMEM; free with kr_state_loader_free. */
int kr_state_loader_new(struct kr_state_loader **out, bool build);
void kr_state_loader_free(struct kr_state_loader *l);
/* Calls cb for every record once it has been checked. */
void kr_state_loader_on_record(struct kr_state_loader *l, kr_state_record_cb cb,
                               void *arg);
/* Feeds the next n bytes.  Returns 0 or KR_ECORRUPT with errmsg set
 * (and every later call fails the same way). */
int kr_state_loader_feed(struct kr_state_loader *l, const void *p, size_t n,
                         char *errmsg);
/* After the last byte: 0 when the encoding ended exactly with its END
 * record, else KR_ECORRUPT with errmsg set. */
int kr_state_loader_finish(struct kr_state_loader *l, char *errmsg);
/* Bytes fed so far. */
uint64_t kr_state_loader_fed(const struct kr_state_loader *l);
/* How many records of a type were read, and their bytes (with the
 * five-byte record header). */
uint64_t kr_state_loader_count(const struct kr_state_loader *l, uint8_t type,
                               uint64_t *bytes);
/* The keys read so far, in order; borrowed until the loader is freed. */
size_t kr_state_loader_key_count(const struct kr_state_loader *l);
const struct kr_root_key *
kr_state_loader_key_at(const struct kr_state_loader *l, size_t i);

/*
 * Writes the redacted form of a whole ROOT_KEY record rec (as a record
 * callback sees it) to out: the same key with no wrapped copies (no DEK
 * or RSA blob, no KEK) and marked redacted.  Returns 0, KR_EINVAL when
 * rec is not a well-formed ROOT_KEY record, or KR_ENOMEM.
 */
int kr_state_record_redact(const uint8_t *rec, size_t len, struct kr_buf *out);

/* The staged restore, if any: its id, bytes received and total.  False
 * when nothing is staged. */
bool kr_state_stage_info(const struct kr_state *s, uint64_t *id,
                         uint64_t *received, uint64_t *total);

/* The Variables' records in an encoding, a staged restore's included:
 * nearly all of a raft snapshot's length.  O(1). */
size_t kr_state_var_bytes(const struct kr_state *s);

/* Bumped whenever the whole state is replaced (a raft snapshot installed
 * or a restore committed): key material may have changed under a KeyID,
 * so the keyring starts over. */
uint64_t kr_state_restore_generation(const struct kr_state *s);

/* Raft index of the last change to each table (0 when never changed). */
uint64_t kr_state_keys_index(const struct kr_state *s);
uint64_t kr_state_vars_index(const struct kr_state *s);
/* Bumped on every change to the key table, including restores: a cheap
 * "did the keyring change" check for the decrypt-task scheduler. */
uint64_t kr_state_keys_generation(const struct kr_state *s);

/* Queries.  Returned records are borrowed and valid until the next apply
 * or restore. */
size_t kr_state_key_count(const struct kr_state *s);
/* Keys ordered by create_index. */
const struct kr_root_key *kr_state_key_at(const struct kr_state *s, size_t i);
const struct kr_root_key *kr_state_key_get(const struct kr_state *s,
                                           const char *key_id);
const struct kr_root_key *kr_state_key_active(const struct kr_state *s);

const struct kr_var *kr_state_var_get(const struct kr_state *s, const char *ns,
                                      const char *path);
size_t kr_state_var_count(const struct kr_state *s);

/*
 * Ordered iteration over Variables, by (namespace, path).  ns NULL or "*"
 * means every namespace.  prefix filters paths.  after, when not NULL,
 * starts strictly after that (namespace, path).  Returns the first match
 * or NULL; kr_state_var_next continues from a returned record.
 */
const struct kr_var *kr_state_var_first(const struct kr_state *s,
                                        const char *ns, const char *prefix,
                                        const char *after_ns,
                                        const char *after_path);
const struct kr_var *kr_state_var_next(const struct kr_state *s,
                                       const struct kr_var *v, const char *ns,
                                       const char *prefix);

/* The full-rekey job's checkpoint: it has re-encrypted every Variable up
 * to and including (*ns, *path); both NULL when it starts from the
 * beginning.  Borrowed until the next apply or restore. */
void kr_state_rekey_cursor(const struct kr_state *s, const char **ns,
                           const char **path);

/* Path rules of spec 1.7: ^[a-zA-Z0-9-_~/]{1,128}$ and the reserved
 * "nomad/" tree.  Returns 0 or KR_EINVAL with the reason in errmsg. */
int kr_var_path_validate(const char *path, char *errmsg);

#endif
