/*
 * Signing keys of a root key: an RSA-2048 key kept as PKCS#1 DER, and an
 * Ed25519 key derived by using the 32-byte DEK as its seed (Nomad's rule).
 * Private keys are parsed into OpenSSL objects whose private bignums live
 * in the secure heap; the DER itself is always a kr_secret.
 *
 * All functions are thread safe (no shared state); a struct kr_signer may
 * be used by one thread at a time.
 */
#ifndef KR_CRYPTO_SIGN_H
#define KR_CRYPTO_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/secmem.h"

struct kr_signer;

/* Generates a fresh RSA-2048 key; *der_out gets its PKCS#1 DER (owned,
 * kr_secret_free).  Slow (tens of ms): call off the loop thread. */
int kr_sign_rsa_generate(struct kr_secret **der_out);

/* Parses PKCS#1 DER (borrowed).  Returns 0, KR_ECRYPTO for malformed or
 * non-2048-bit input, or KR_ENOMEM.  Free with kr_signer_free. */
int kr_signer_from_rsa_der(struct kr_signer **out, const uint8_t *der,
                           size_t len);

/* Builds the Ed25519 key whose seed is the given 32 bytes (borrowed). */
int kr_signer_from_ed25519_seed(struct kr_signer **out, const uint8_t seed[32]);

void kr_signer_free(struct kr_signer *s);

#endif
