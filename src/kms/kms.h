/*
 * KEK providers behind one vtable.  A provider wraps a root key's DEK and
 * RSA key into a struct kr_wrapped_key, and unwraps them again on every
 * server.  Providers are looked up by type in one table (kms.c); adding a
 * KMS means adding a row there.
 *
 * wrap and unwrap block (a KMS is a network call) and are called only from
 * worker threads, possibly concurrently on the same provider: they must be
 * thread safe.  open and free run on the loop thread.
 *
 * Security property: unwrapped material is returned only as kr_secret, and
 * neither material nor provider credentials appear in errmsg.
 */
#ifndef KR_KMS_KMS_H
#define KR_KMS_KMS_H

#include <stdbool.h>

#include "config/config.h"
#include "crypto/secmem.h"
#include "kms/blob.h"

struct kr_kms;

struct kr_kms_ops {
    const char *type;
    /* Validates cfg and builds the provider's private state (*impl). */
    int (*open)(void **impl, const struct kr_config_keyring *cfg, char *errmsg);
    void (*close)(void *impl);
    /* Fills out's blobs (and kek); out->provider* are set by the caller.
     * rsa may be NULL (legacy keys without RSA). */
    int (*wrap)(void *impl, const char *key_id, const struct kr_secret *dek,
                const struct kr_secret *rsa, struct kr_wrapped_key *out,
                char *errmsg);
    /* *rsa_out is NULL when the entry holds no RSA blob. */
    int (*unwrap)(void *impl, const char *key_id,
                  const struct kr_wrapped_key *in, struct kr_secret **dek_out,
                  struct kr_secret **rsa_out, char *errmsg);
};

/* True when type names a known provider. */
bool kr_kms_type_known(const char *type);

/* Opens the provider for a keyring block (borrowed; must outlive the
 * provider).  Returns 0, KR_EINVAL (bad parameters, message in errmsg) or
 * KR_ENOMEM.  Loop thread. */
int kr_kms_open(struct kr_kms **out, const struct kr_config_keyring *cfg,
                char *errmsg);
void kr_kms_free(struct kr_kms *k);

/* "aead", "awskms.prod", ... borrowed from the config. */
const char *kr_kms_id(const struct kr_kms *k);
bool kr_kms_active(const struct kr_kms *k);

/* Wraps dek (32 bytes) and rsa (may be NULL) for key_id; *out is filled and
 * owned by the caller (kr_wrapped_key_clear).  Worker threads. */
int kr_kms_wrap(struct kr_kms *k, const char *key_id,
                const struct kr_secret *dek, const struct kr_secret *rsa,
                struct kr_wrapped_key *out, char *errmsg);

/* Unwraps in; outputs owned by the caller.  The DEK must be 32 bytes or
 * KR_ECORRUPT is returned.  Worker threads. */
int kr_kms_unwrap(struct kr_kms *k, const char *key_id,
                  const struct kr_wrapped_key *in, struct kr_secret **dek_out,
                  struct kr_secret **rsa_out, char *errmsg);

/* The aead provider's ops (kms_aead.c). */
extern const struct kr_kms_ops kr_kms_aead_ops;

#endif
