/*
 * Publication of the signing keys: JWKS (RFC 7517) entries, the key IDs
 * they carry, the Cache-Control lifetime of the set (spec 4.1), and the
 * OIDC discovery document.
 *
 * Key IDs.  Every root key can sign two ways: with its RSA key (RS256)
 * and with the Ed25519 key whose seed is its DEK (EdDSA).  Each way is
 * its own JWK, so that a verifier that picks a JWK by kid alone (PyJWT
 * does) always finds the right one:
 *   - the key's default algorithm (RSA when the key has an RSA key, else
 *     Ed25519, as in Nomad) has kid = the root KeyID;
 *   - the Ed25519 key of a key that also has RSA has kid = KeyID
 *     ".ed25519".
 * A kid therefore names exactly one public key and one algorithm; the
 * verifier takes the algorithm from it, never from the token's header.
 *
 * Pure functions; any thread.
 */
#ifndef KR_IDENTITY_JWKS_H
#define KR_IDENTITY_JWKS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/uuid.h"
#include "crypto/sign.h"

#define KR_JWKS_ED25519_SUFFIX ".ed25519"
#define KR_JWKS_KID_MAX (KR_UUID_LEN + sizeof(KR_JWKS_ED25519_SUFFIX))
/* The shortest Cache-Control max-age, before the stagger (spec 4.1). */
#define KR_JWKS_MIN_MAX_AGE (15 * 60)

/* Writes the kid of key_id's key of the given kind into out; has_rsa says
 * whether that root key has an RSA key. */
void kr_jwks_kid(char out[KR_JWKS_KID_MAX], const char *key_id,
                 enum kr_sign_kind kind, bool has_rsa);

/* Reads a kid under the scheme above: key_id gets the root KeyID, and
 * *ed25519_suffix says whether the kid carries the ".ed25519" suffix.
 * Which key it names then depends on the root key: plain means its RSA
 * key if it has one, else its Ed25519 key; the suffix means its Ed25519
 * key, and only for a root key that has RSA.  Returns 0, or KR_EINVAL
 * for a kid of any other form. */
int kr_jwks_kid_key_id(const char *kid, char key_id[KR_UUID_LEN + 1],
                       bool *ed25519_suffix);

/* Appends the JWK of s under kid to keys (a JSON array): RSA as
 * {kty,kid,use,alg,n,e}, Ed25519 as {kty:OKP,crv,kid,use,alg,x}.
 * Returns 0 or KR_ENOMEM. */
int kr_jwks_append(json_t *keys, const char *kid, const struct kr_signer *s);

/*
 * Cache-Control max-age in seconds (spec 4.1): half the time until the
 * newest key is due for rotation (newest_create + threshold, both ns,
 * against now_ns), but never less than KR_JWKS_MIN_MAX_AGE, plus a
 * stagger of up to 10% of that; stagger is a random number in [0, 1).
 */
int64_t kr_jwks_max_age(int64_t newest_create, int64_t threshold,
                        int64_t now_ns, double stagger);

/* The OIDC discovery document for issuer (borrowed; a trailing '/' is
 * not doubled in jwks_uri).  New object, or NULL when out of memory. */
json_t *kr_oidc_discovery(const char *issuer);

#endif
