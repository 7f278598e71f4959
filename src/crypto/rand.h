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

/* Writes a fresh random v4 UUID into out; returns 0 or KR_ECRYPTO. */
int kr_rand_uuid(char out[KR_UUID_LEN + 1]);

#endif
