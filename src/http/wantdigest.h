/*
 * The request header Want-Digest (RFC 3230 section 4.3.1), as far as a
 * snapshot save needs it: whether the client declines a sha-256 Digest.
 *
 *   Want-Digest: sha-256;q=0
 *
 * says "do not send me a sha-256 digest" (a qvalue of 0 means not
 * acceptable).  A save that need not send the Digest header before its
 * body can stream the archive as it encodes it, in one pass
 * (http/snapshot.c).  Anything else, a malformed value included, keeps
 * the default: the Digest is sent.
 *
 * Pure: no I/O, no globals; any thread.
 */
#ifndef KR_HTTP_WANTDIGEST_H
#define KR_HTTP_WANTDIGEST_H

#include <stdbool.h>
#include <stddef.h>

/* v[0..n) is the header's value (borrowed, not NUL-terminated).  True
 * only when the whole value parses and one of its algorithms is sha-256
 * (any case) with a qvalue of 0. */
bool kr_http_want_digest_declines_sha256(const char *v, size_t n);

#endif
