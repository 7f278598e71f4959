/*
 * A compact JSON writer for jansson trees, byte for byte what
 * json_dumpb(j, ..., JSON_COMPACT) writes, without jansson's per-character
 * UTF-8 walk: a JWS's claims are encoded for every token, and jansson's
 * encoder was a fifth of an Ed25519 signing.  The tree is still built and
 * owned by jansson; only the encoding is ours.
 *
 * It writes objects (members in jansson's order), arrays, strings,
 * integers, true, false and null.  A tree with a real number, or nested
 * deeper than KR_JSONW_MAX_DEPTH, is left to jansson (KR_EINVAL): those
 * never occur in claims.  tests/fuzz/fuzz_jwt.c checks the equality with
 * jansson on every JSON document it meets.
 *
 * Pure; any thread.
 */
#ifndef KR_IDENTITY_JSONW_H
#define KR_IDENTITY_JSONW_H

#include <jansson.h>

#include "common/buf.h"

#define KR_JSONW_MAX_DEPTH 32

/* Appends the compact encoding of j (borrowed) to out.  Returns 0,
 * KR_EINVAL (see above; out is then as it was) or KR_ENOMEM. */
int kr_jsonw_compact(json_t *j, struct kr_buf *out);

#endif
