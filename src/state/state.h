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

/* Serialises the whole state into out (appended).  Returns 0 or KR_ENOMEM. */
int kr_state_snapshot(const struct kr_state *s, struct kr_buf *out);

/* Replaces the whole state with the decoded snapshot.  On any error the
 * current state is left untouched and errmsg says what was wrong. */
int kr_state_restore(struct kr_state *s, const void *buf, size_t len,
                     char *errmsg);

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
