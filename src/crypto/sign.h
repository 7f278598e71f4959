/*
 * Signing keys of a root key: an RSA-2048 key kept as PKCS#1 DER, and an
 * Ed25519 key derived by using the 32-byte DEK as its seed (Nomad's rule).
 * Private keys are parsed into OpenSSL objects whose private bignums live
 * in the secure heap; the DER itself is always a kr_secret.
 *
 * A signer signs the way JWS needs it: RSA keys with RSASSA-PKCS1-v1_5
 * over SHA-256 (JWS "RS256"), Ed25519 keys with pure Ed25519 (JWS
 * "EdDSA").  There is no other algorithm and no way to ask for one, so a
 * caller cannot be talked into a weaker scheme.  Verification uses the
 * public half of the same key.  The public numbers (RSA n and e, the
 * Ed25519 point) are copied out when the signer is built, for JWKS.
 *
 * All functions are thread safe (no shared state); a struct kr_signer may
 * be used by one thread at a time.  To sign with the same key on another
 * thread, give it its own handle (kr_signer_ref).
 */
#ifndef KR_CRYPTO_SIGN_H
#define KR_CRYPTO_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/secmem.h"

struct kr_signer;

enum kr_sign_kind {
    KR_SIGN_RSA,     /* RSA-2048, RS256 */
    KR_SIGN_ED25519, /* Ed25519, EdDSA */
};

/* The largest signature or public modulus any signer produces (bytes). */
#define KR_SIGN_MAX 256
#define KR_SIGN_ED25519_LEN 32

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

/* A second handle on the same key, for another thread (OpenSSL counts
 * references to the key, so it lives until both are freed).  NULL when
 * out of memory.  Free with kr_signer_free. */
struct kr_signer *kr_signer_ref(const struct kr_signer *s);

enum kr_sign_kind kr_signer_kind(const struct kr_signer *s);

/* Signs msg[0..len) (borrowed) into sig, which has room for KR_SIGN_MAX
 * bytes; *siglen gets the length (256 for RSA-2048, 64 for Ed25519).
 * Returns 0, KR_ECRYPTO or KR_ENOMEM.  Not const: an Ed25519 signer
 * reuses one OpenSSL context, so one thread at a time. */
int kr_signer_sign(struct kr_signer *s, const uint8_t *msg, size_t len,
                   uint8_t *sig, size_t *siglen);

/* Checks sig over msg with the public half of s.  Returns 0 for a valid
 * signature, KR_ECRYPTO for anything else (wrong length included). */
int kr_signer_verify(const struct kr_signer *s, const uint8_t *msg, size_t len,
                     const uint8_t *sig, size_t siglen);

/*
 * The public key, as JWK wants it.  RSA: the modulus n and the public
 * exponent e, big-endian without leading zero bytes.  Ed25519: the 32-byte
 * encoded point, in *n (e is then empty).  The pointers are borrowed from
 * s and live as long as it does.
 */
void kr_signer_public(const struct kr_signer *s, const uint8_t **n,
                      size_t *nlen, const uint8_t **e, size_t *elen);

#endif
