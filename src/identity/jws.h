/*
 * JWS compact serialization (RFC 7515) for JWTs (RFC 7519):
 * base64url(header) "." base64url(claims) "." base64url(signature).
 *
 * Signing: the header is {"alg", "kid", "typ": "JWT"} plus optional extra
 * members; alg is the one the signer's key implies (RS256 for RSA, EdDSA
 * for Ed25519) and cannot be chosen otherwise.
 *
 * Parsing and verification.  Security property: a token is accepted only
 * if its signature verifies under the key the caller chose, with the
 * algorithm that key implies; the header's alg is only compared with it,
 * never used to pick anything.  So "none", HS256 keyed with a public key,
 * or an RS256 header on an Ed25519 key all fail.  The parser is strict:
 * at most KR_JWS_MAX_LEN bytes, exactly three non-empty parts, canonical
 * base64url, header and claims JSON objects without duplicate members,
 * string alg (never "none") and kid, no "crit" (no extension is
 * understood, so none may be required).
 *
 * Pure functions over a signer; any thread, one signer per thread.
 */
#ifndef KR_IDENTITY_JWS_H
#define KR_IDENTITY_JWS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "crypto/sign.h"

/* The longest token accepted, in bytes. */
#define KR_JWS_MAX_LEN 16384

/* "RS256" or "EdDSA": the JWS alg a signer's key implies. */
const char *kr_jws_alg(const struct kr_signer *s);

/*
 * Appends the compact JWS of claims (a JSON object, borrowed) to out,
 * signed by s with header {"alg","kid","typ":"JWT"} followed by the
 * members of extra (borrowed; NULL for none; must not set alg, kid, typ
 * or crit).  Returns 0, KR_EINVAL (extra overrides a reserved member,
 * or the token would be longer than KR_JWS_MAX_LEN), KR_ENOMEM or
 * KR_ECRYPTO, with the reason in errmsg; out is then as it was.
 */
int kr_jws_sign(struct kr_signer *s, const char *kid, json_t *extra,
                json_t *claims, struct kr_buf *out, char *errmsg);

/*
 * kr_jws_sign in two halves, so the signature can be made on another
 * thread.  kr_jws_signing_input appends base64url(header) "."
 * base64url(claims) to out (the same arguments and errors, except for the
 * length).  kr_jws_finish signs out[start..out->len) with s and appends
 * "." base64url(signature); KR_EINVAL when the token would be longer
 * than KR_JWS_MAX_LEN, and on any failure out is as it was before it.
 * kr_jws_finish touches nothing but s and out: any thread, given a
 * signer of its own (kr_signer_ref).
 */
int kr_jws_signing_input(const struct kr_signer *s, const char *kid,
                         json_t *extra, json_t *claims, struct kr_buf *out,
                         char *errmsg);
int kr_jws_finish(struct kr_signer *s, struct kr_buf *out, size_t start,
                  char *errmsg);

/* A parsed token.  header and claims are owned; alg and kid are borrowed
 * from header (kid NULL when absent). */
struct kr_jws {
    json_t *header;
    json_t *claims;
    const char *alg;
    const char *kid;
    size_t signed_len; /* the token's first signed_len bytes are signed */
    uint8_t sig[KR_SIGN_MAX];
    size_t sig_len;
};

/* Parses token[0..len) (borrowed) into *out under the rules above.
 * Returns 0 or KR_EINVAL with the reason in errmsg; on failure *out holds
 * nothing.  Release with kr_jws_clear. */
int kr_jws_parse(struct kr_jws *out, const char *token, size_t len,
                 char *errmsg);

void kr_jws_clear(struct kr_jws *j);

/* Verifies a parsed token (and the token bytes it was parsed from) with
 * s: the header's alg must equal kr_jws_alg(s) and the signature must
 * verify.  Returns 0 or KR_EINVAL with the reason in errmsg. */
int kr_jws_verify(const struct kr_jws *j, const char *token,
                  const struct kr_signer *s, char *errmsg);

#endif
