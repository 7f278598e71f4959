/*
 * base64url without padding (RFC 4648 section 5, as JWS uses it, RFC 7515
 * section 2).
 *
 * Security property: the decoder is strict, so one byte string has exactly
 * one accepted encoding: only the 64 URL-safe characters, no padding, no
 * whitespace, no length that leaves a lone character, and no non-zero
 * unused bits in the last character.  It never reads outside s[0..n) or
 * writes more than kr_b64url_decoded_max(n) bytes.
 *
 * Pure functions; any thread.
 */
#ifndef KR_IDENTITY_B64URL_H
#define KR_IDENTITY_B64URL_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Characters in the encoding of n bytes. */
size_t kr_b64url_encoded_len(size_t n);

/* The most bytes n characters can decode to. */
size_t kr_b64url_decoded_max(size_t n);

/* Appends the encoding of p[0..n) (borrowed; NULL when n is 0) to b.  An
 * allocation failure sets b->oom. */
void kr_b64url_encode(struct kr_buf *b, const uint8_t *p, size_t n);

/* Decodes s[0..n) into out, which has room for kr_b64url_decoded_max(n)
 * bytes; *outlen gets the count.  Returns 0, or KR_EINVAL for anything but
 * a canonical unpadded encoding (see above). */
int kr_b64url_decode(const char *s, size_t n, uint8_t *out, size_t *outlen);

#endif
