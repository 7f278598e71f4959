/*
 * The server-local keyring: the decrypted "cipher set" of every root key in
 * the replicated state, and the decrypt tasks that produce them.
 *
 * The replicated state holds only wrapped material.  Whenever its key table
 * changes, kr_keyring_sync() compares it with the cipher sets held here: a
 * missing key gets a decrypt task (KEK unwrap on a worker thread, retried
 * with backoff from 1 s to 5 s while it fails), and a key deleted from the
 * state loses its cipher set.  Material never changes for a KeyID within
 * one state, so a cipher set, once installed, is not replaced; when the
 * whole state is replaced (a snapshot restored or installed) every cipher
 * set goes and every key is decrypted again.  A redacted key (restored
 * from a redacted snapshot) has no material and gets no task.
 *
 * Requests that need a key which is not ready yet wait for it with
 * kr_keyring_wait() (bounded; 1 s in the HTTP layer).
 *
 * New root keys are generated off the loop by kr_keyring_generate(), which
 * hands back an encoded KEY_UPSERT log entry for the caller to propose.
 *
 * Security property: DEKs, RSA keys and plaintexts live in secret memory;
 * no message produced here contains key material.
 *
 * Loop thread only, except where a function says otherwise.
 */
#ifndef KR_KEYRING_KEYRING_H
#define KR_KEYRING_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "crypto/sign.h"
#include "kms/kms.h"
#include "state/state.h"

struct kr_keyring;
struct kr_keyring_waiter;

/* status: 0 when the key is ready, KR_ENOTREADY on timeout, KR_ESHUTDOWN
 * when the keyring is closing. */
typedef void (*kr_keyring_wait_cb)(void *arg, int status);

/* status 0: entry holds the encoded KEY_UPSERT (moved to the callee) and
 * meta the new key's metadata.  Otherwise errmsg says what failed. */
typedef void (*kr_keyring_generate_cb)(void *arg, int status,
                                       struct kr_buf *entry,
                                       const struct kr_root_key *meta,
                                       const char *errmsg);

/*
 * Creates the keyring.  providers (n of them) are borrowed and must outlive
 * the keyring; state is borrowed likewise.
 */
int kr_keyring_new(struct kr_keyring **out, uv_loop_t *loop,
                   struct kr_kms *const *providers, size_t n,
                   const struct kr_state *state);

/* Cancels waiters (KR_ESHUTDOWN) and frees everything once in-flight
 * worker jobs have returned: call, then keep running the loop until it
 * has no more work. */
void kr_keyring_close(struct kr_keyring *kr);

/* Reconciles the cipher sets with the state's key table.  Cheap when the
 * table has not changed. */
void kr_keyring_sync(struct kr_keyring *kr);

/* True when key_id's cipher set is installed. */
bool kr_keyring_has(const struct kr_keyring *kr, const char *key_id);

/* Number of keys in the state with no cipher set yet (redacted keys,
 * which never get one, are not counted); their IDs, space separated, go
 * into ids (may be NULL). */
size_t kr_keyring_pending(const struct kr_keyring *kr, char *ids, size_t cap);

/* Last decrypt error for a pending key, or NULL.  Borrowed. */
const char *kr_keyring_last_error(const struct kr_keyring *kr,
                                  const char *key_id);

/* Calls cb once key_id is ready (key_id NULL: once there is an active key
 * and it is ready), or after timeout_ms.  If it is ready now,
 * cb runs before this returns.  *out (may be NULL) gets a handle to cancel
 * with kr_keyring_wait_cancel (cb is then never called). */
int kr_keyring_wait(struct kr_keyring *kr, const char *key_id,
                    uint64_t timeout_ms, kr_keyring_wait_cb cb, void *arg,
                    struct kr_keyring_waiter **out);
void kr_keyring_wait_cancel(struct kr_keyring_waiter *w);

/* Seals pt under key_id's DEK with AAD = key_id into out (nonce||ct||tag,
 * appended).  KR_ENOTREADY when the key is not installed. */
int kr_keyring_seal(struct kr_keyring *kr, const char *key_id,
                    const uint8_t *pt, size_t ptlen, struct kr_buf *out);

/* Opens a Variable's ciphertext; *out is a new secret (kr_secret_free).
 * KR_ENOTREADY when the key is not installed, KR_ECRYPTO when the data is
 * not authentic. */
int kr_keyring_open(struct kr_keyring *kr, const char *key_id,
                    const uint8_t *data, size_t len, struct kr_secret **out);

/*
 * A private copy of key_id's DEK cipher (its expanded key, in ordinary
 * heap memory like the keyring's own, wiped when freed), for another
 * thread: the keyring's ciphers are the loop's.  The copy does not follow
 * the keyring; a key's material never changes.  KR_ENOTREADY when the
 * key is not installed.
 */
struct kr_keyring_cipher;
int kr_keyring_cipher_copy(const struct kr_keyring *kr, const char *key_id,
                           struct kr_keyring_cipher **out);
void kr_keyring_cipher_free(struct kr_keyring_cipher *c);
const char *kr_keyring_cipher_key_id(const struct kr_keyring_cipher *c);

/*
 * Re-encrypts data, sealed under from as kr_keyring_seal does, under to,
 * in place (the length is the same).  scratch (len bytes, secure memory)
 * holds the plaintext meanwhile and is wiped before this returns.
 * KR_ECRYPTO when data is not authentic under from (data is unchanged);
 * KR_EIO when sealing failed (data is then undefined).  Any thread, with
 * ciphers that thread alone uses.
 */
int kr_keyring_reseal(struct kr_keyring_cipher *from,
                      struct kr_keyring_cipher *to, uint8_t *data, size_t len,
                      uint8_t *scratch);

/*
 * The signing key of key_id's cipher set: its RSA key (KR_SIGN_RSA; NULL
 * for a key that has none) or its Ed25519 key, whose seed is the DEK
 * (KR_SIGN_ED25519).  NULL when the key is not installed.  Borrowed: valid
 * until the next kr_keyring_sync or kr_keyring_close.
 */
struct kr_signer *kr_keyring_signer(const struct kr_keyring *kr,
                                    const char *key_id, enum kr_sign_kind kind);

/*
 * Generates a root key off the loop: a UUID, a 32-byte DEK, an RSA-2048
 * key, wrapped by every active provider, and encodes the KEY_UPSERT entry
 * with the given state, publish_time and rekey flag.  now_ns is the
 * leader's clock, used as CreateTime.  cb runs on the loop.
 */
int kr_keyring_generate(struct kr_keyring *kr, enum kr_key_state state,
                        int64_t publish_time, bool rekey, int64_t now_ns,
                        kr_keyring_generate_cb cb, void *arg);

#endif
