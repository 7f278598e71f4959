/*
 * Cryptographically secure random bytes (OpenSSL's DRBG, seeded from the
 * kernel).  Thread safe.
 */
#ifndef KR_CRYPTO_RAND_H
#define KR_CRYPTO_RAND_H

#include <stddef.h>

#include "common/uuid.h"

/* Fills buf with n random bytes; returns 0 or KR_ECRYPTO. */
int kr_rand_bytes(void *buf, size_t n);

/*
 * Fills buf with n (<= 64) random bytes for a public value such as a GCM
 * nonce.  The bytes come from a per-thread pool refilled from the same
 * DRBG 4 KiB at a time, so a nonce costs a copy instead of a DRBG call.
 * Never use it for key material.  Returns 0 or KR_ECRYPTO.
 */
int kr_rand_public(void *buf, size_t n);

/* Writes a fresh random v4 UUID into out; returns 0 or KR_ECRYPTO. */
int kr_rand_uuid(char out[KR_UUID_LEN + 1]);

#endif
