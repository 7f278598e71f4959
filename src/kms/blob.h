/*
 * The wrapped form of a root key, one entry per KEK provider that wrapped
 * it.  These are plain data types shared by the KEK providers (which fill
 * them) and the replicated state (which stores and encodes them).  The
 * logical fields follow go-kms-wrapping's BlobInfo, so an entry records
 * everything its provider needs to unwrap it later.
 */
#ifndef KR_KMS_BLOB_H
#define KR_KMS_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/secmem.h"

/* BlobInfo: ciphertext and how to unwrap it. All fields malloc'd or NULL. */
struct kr_blob {
    uint8_t *ciphertext; /* aead: IV || ct || tag */
    size_t ciphertext_len;
    uint8_t *iv; /* envelope providers' IV; unused by aead */
    size_t iv_len;
    uint64_t mechanism;
    char *key_id;         /* aead: the root KeyID; KMS: key id/version */
    uint8_t *wrapped_key; /* envelope key as encrypted by the KMS */
    size_t wrapped_key_len;
};

struct kr_wrapped_key {
    char *provider;    /* aead, awskms, ... */
    char *provider_id; /* type, or type.name */
    struct kr_blob dek;
    struct kr_blob rsa;
    /* aead only: the cleartext 32-byte KEK, in secret memory (NULL for KMS
     * providers, whose KEK never leaves the KMS). Snapshot redaction
     * removes it. */
    struct kr_secret *kek;
};

/* Frees the contents (not the struct itself); wipes the KEK. */
void kr_blob_clear(struct kr_blob *b);
void kr_wrapped_key_clear(struct kr_wrapped_key *w);
/* Deep copy; returns 0 or KR_ENOMEM (dst is cleared on failure). */
int kr_blob_copy(struct kr_blob *dst, const struct kr_blob *src);
int kr_wrapped_key_copy(struct kr_wrapped_key *dst,
                        const struct kr_wrapped_key *src);

#endif
