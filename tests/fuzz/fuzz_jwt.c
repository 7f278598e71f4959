/*
 * libFuzzer target for the identity parsers (src/identity): the compact
 * JWS parser and verifier, base64url, and the request readers of the
 * sign, client-assertion and verify routes.  Each input is tried as all
 * of them.  Whatever the bytes, nothing may crash, leak or read out of
 * bounds, and these properties must hold (any breach traps):
 *   - a token that parses never verifies under keys that did not sign it
 *     (this target's RSA and Ed25519 keys sign nothing the fuzzer sees);
 *   - base64url that decodes encodes back to the same bytes (one
 *     encoding per byte string);
 *   - a sign request that is accepted yields claims that, signed with
 *     Ed25519, parse back to equal claims and verify, with the header
 *     alg/kid as signed; likewise for a client assertion;
 *   - identity/jsonw.h writes every JSON document the input parses to
 *     (and every claims object) byte for byte as json_dumpb(JSON_COMPACT)
 *     does, or declines only for a real number or a deep tree.
 *
 * Build with clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 * -Isrc, this file and the .c files of src/common, src/crypto and
 * src/identity, -ljansson -lssl -lcrypto (`make fuzz` does, and seeds the
 * corpus from tests/fuzz/jwt.seeds).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "crypto/sign.h"
#include "identity/b64url.h"
#include "identity/claims.h"
#include "identity/jsonw.h"
#include "identity/jws.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct kr_signer *rsa, *ed;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct kr_secret *der = NULL;
    uint8_t seed[32];

    (void)argc;
    (void)argv;
    memset(seed, 0x11, sizeof(seed));
    if (kr_sign_rsa_generate(&der) != 0 ||
        kr_signer_from_rsa_der(&rsa, der->data, der->len) != 0 ||
        kr_signer_from_ed25519_seed(&ed, seed) != 0)
        abort();
    kr_secret_free(der);
    return 0;
}

static void try_token(const char *tok, size_t len)
{
    struct kr_jws j;
    char err[KR_ERRMSG_SIZE];

    if (kr_jws_parse(&j, tok, len, err) != 0)
        return;
    if (j.signed_len >= len || tok[j.signed_len] != '.')
        abort();
    if (kr_jws_verify(&j, tok, rsa, err) == 0 ||
        kr_jws_verify(&j, tok, ed, err) == 0)
        abort();
    (void)kr_identity_check_times(j.claims, 1700000000, 60, err);
    (void)kr_identity_has_audience(j.claims, "vault.io");
    kr_jws_clear(&j);
}

static void try_b64(const char *s, size_t len)
{
    uint8_t *out = malloc(kr_b64url_decoded_max(len) + 1);
    struct kr_buf b;
    size_t n;

    if (out == NULL)
        return;
    if (kr_b64url_decode(s, len, out, &n) == 0) {
        kr_buf_init(&b);
        kr_b64url_encode(&b, out, n);
        if (b.oom || b.len != len || (len > 0 && memcmp(b.data, s, len) != 0))
            abort();
        kr_buf_free(&b);
    }
    free(out);
}

/* Whether jsonw.h may leave j to jansson. */
static bool has_real_or_depth(json_t *j, int depth)
{
    const char *k;
    json_t *v;
    size_t i;

    if (depth > KR_JSONW_MAX_DEPTH || json_is_real(j))
        return true;
    json_object_foreach(j, k, v)
    {
        if (has_real_or_depth(v, depth + 1))
            return true;
    }
    json_array_foreach(j, i, v)
    {
        if (has_real_or_depth(v, depth + 1))
            return true;
    }
    return false;
}

static void same_as_jansson(json_t *j)
{
    struct kr_buf b;
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
    char *want = malloc(n + 1);
    int rv;

    if (want == NULL || json_dumpb(j, want, n, JSON_COMPACT) != n)
        abort();
    kr_buf_init(&b);
    rv = kr_jsonw_compact(j, &b);
    if (rv == 0 && (b.len != n || memcmp(b.data, want, n) != 0))
        abort();
    if (rv == KR_EINVAL && (b.len != 0 || !has_real_or_depth(j, 0)))
        abort();
    if (rv != 0 && rv != KR_EINVAL)
        abort();
    kr_buf_free(&b);
    free(want);
}

/* Signs claims with Ed25519 under kid; the token must parse back to the
 * same header fields and claims, and verify. */
static void round_trip(json_t *claims, json_t *extra)
{
    struct kr_buf b;
    struct kr_jws j;
    char err[KR_ERRMSG_SIZE];

    kr_buf_init(&b);
    /* Refused only when too long for kr_jws_parse (or out of memory):
     * the readers refuse everything else. */
    if (kr_jws_sign(ed, "kid-1", extra, claims, &b, err) != 0) {
        if (strstr(err, "more than") == NULL && strstr(err, "memory") == NULL)
            abort();
        kr_buf_free(&b);
        return;
    }
    if (kr_jws_parse(&j, (const char *)b.data, b.len, err) != 0 ||
        kr_jws_verify(&j, (const char *)b.data, ed, err) != 0 ||
        strcmp(j.alg, "EdDSA") != 0 || j.kid == NULL ||
        strcmp(j.kid, "kid-1") != 0 || !json_equal(j.claims, claims))
        abort();
    kr_jws_clear(&j);
    kr_buf_free(&b);
}

static void try_requests(const char *text, size_t len)
{
    struct kr_identity_req r;
    struct kr_identity_assertion_req a;
    struct kr_identity_verify_req v;
    char err[KR_ERRMSG_SIZE];
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *claims;

    if (body == NULL)
        return;
    same_as_jansson(body);
    if (kr_identity_req_parse(body, &r, err) == 0) {
        claims = kr_identity_claims(&r, "global", "https://kr.example",
                                    1700000000, "jti");
        if (claims == NULL)
            abort();
        same_as_jansson(claims);
        round_trip(claims, NULL);
        json_decref(claims);
    }
    if (kr_identity_assertion_req_parse(body, &a, err) == 0) {
        claims = kr_identity_assertion_claims(a.client_id, a.audience,
                                              1700000000, "jti");
        if (claims == NULL)
            abort();
        round_trip(claims, a.headers);
        json_decref(claims);
    }
    if (kr_identity_verify_req_parse(body, &v, err) == 0)
        try_token(v.jwt, strlen(v.jwt));
    json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;

    try_token(s, size);
    try_b64(s, size);
    try_requests(s, size);
    return 0;
}
