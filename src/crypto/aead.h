/*
 * AES-256-GCM with the layout used for every ciphertext in keyraft:
 * nonce(12) || ciphertext || tag(16).  Nonces are 12 random bytes per seal.
 *
 * A struct kr_aead caches the key schedule so sealing a small value costs
 * one IV set-up, not a key expansion.  It is not thread safe: use one per
 * thread (the loop owns the keyring's; decrypt tasks build their own).
 *
 * Security property: open() authenticates before it returns any plaintext;
 * on failure the output buffer is wiped and KR_ECRYPTO is returned, with no
 * hint of which check failed.
 */
#ifndef KR_CRYPTO_AEAD_H
#define KR_CRYPTO_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define KR_AEAD_KEY_LEN 32
#define KR_AEAD_NONCE_LEN 12
#define KR_AEAD_TAG_LEN 16
#define KR_AEAD_OVERHEAD (KR_AEAD_NONCE_LEN + KR_AEAD_TAG_LEN)

struct kr_aead;

/* Builds a cipher from a 32-byte key (borrowed; not retained).  Returns 0,
 * KR_ENOMEM or KR_ECRYPTO.  Free with kr_aead_free. */
int kr_aead_new(struct kr_aead **out, const uint8_t key[KR_AEAD_KEY_LEN]);
void kr_aead_free(struct kr_aead *a);

/* A copy of a, with its own contexts (the expanded keys are copied; the
 * key itself is not needed), for another thread to use while a's owner
 * goes on.  KR_ENOMEM or KR_ECRYPTO. */
int kr_aead_copy(const struct kr_aead *a, struct kr_aead **out);

/* Encrypts pt into out, which must hold ptlen + KR_AEAD_OVERHEAD bytes, with
 * a fresh random nonce.  aad may be NULL when aadlen is 0. */
int kr_aead_seal(struct kr_aead *a, const uint8_t *aad, size_t aadlen,
                 const uint8_t *pt, size_t ptlen, uint8_t *out);

/* As kr_aead_seal with a caller-chosen nonce (known-answer tests only: a
 * repeated nonce under one key destroys GCM's security). */
int kr_aead_seal_with_nonce(struct kr_aead *a,
                            const uint8_t nonce[KR_AEAD_NONCE_LEN],
                            const uint8_t *aad, size_t aadlen,
                            const uint8_t *pt, size_t ptlen, uint8_t *out);

/* Authenticates and decrypts in (nonce||ct||tag, inlen bytes) into out,
 * which must hold inlen - KR_AEAD_OVERHEAD bytes; *outlen gets that length.
 * Returns 0, KR_EINVAL (too short) or KR_ECRYPTO (not authentic). */
int kr_aead_open(struct kr_aead *a, const uint8_t *aad, size_t aadlen,
                 const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen);

#endif
