/*
 * Unit tests for src/identity: base64url against RFC 4648 and its
 * strictness, the JSON writer against jansson, JWS signing and verification
 * (RS256 and EdDSA, RFC 8037's Ed25519 example, and every rejection: tampering,
 * alg none, HS256, algorithm confusion, crit, duplicates, malformed parts), the
 * claims of spec 6.1 and 6.5, the sign request's rules, time checks with
 * leeway, JWKS entries and kids, the Cache-Control lifetime and OIDC discovery.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/time.h"
#include "crypto/secmem.h"
#include "crypto/sign.h"
#include "identity/b64url.h"
#include "identity/claims.h"
#include "identity/jsonw.h"
#include "identity/jwks.h"
#include "identity/jws.h"

static struct kr_signer *rsa_signer, *ed_signer, *rfc_signer;

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;

    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static int setup(void **state)
{
    struct kr_secret *der = NULL;
    uint8_t seed[32];

    (void)state;
    if (kr_sign_rsa_generate(&der) != 0 ||
        kr_signer_from_rsa_der(&rsa_signer, der->data, der->len) != 0)
        return -1;
    kr_secret_free(der);
    memset(seed, 0x5a, sizeof(seed));
    if (kr_signer_from_ed25519_seed(&ed_signer, seed) != 0)
        return -1;
    /* RFC 8032 section 7.1, test 1: the key of RFC 8037's examples. */
    unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
          seed);
    return kr_signer_from_ed25519_seed(&rfc_signer, seed);
}

static int teardown(void **state)
{
    (void)state;
    kr_signer_free(rsa_signer);
    kr_signer_free(ed_signer);
    kr_signer_free(rfc_signer);
    return 0;
}

/* ---- base64url ---- */

static char *enc(const char *s)
{
    static char out[256];
    struct kr_buf b;

    kr_buf_init(&b);
    kr_b64url_encode(&b, (const uint8_t *)s, strlen(s));
    assert_false(b.oom);
    assert_int_equal(b.len, kr_b64url_encoded_len(strlen(s)));
    if (b.len > 0)
        memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    kr_buf_free(&b);
    return out;
}

static int dec(const char *s, char *out)
{
    size_t n = 0;
    int rv = kr_b64url_decode(s, strlen(s), (uint8_t *)out, &n);

    if (rv == 0) {
        assert_true(n <= kr_b64url_decoded_max(strlen(s)));
        out[n] = '\0';
    }
    return rv;
}

static void test_b64url(void **state)
{
    /* RFC 4648 section 10, without the padding. */
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
    };
    const uint8_t high[3] = {0xfb, 0xff, 0xbf};
    char out[64];
    struct kr_buf b;

    (void)state;
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        assert_string_equal(enc(vec[i][0]), vec[i][1]);
        assert_int_equal(dec(vec[i][1], out), 0);
        assert_string_equal(out, vec[i][0]);
    }
    /* The URL-safe alphabet: - and _ instead of + and /. */
    kr_buf_init(&b);
    kr_b64url_encode(&b, high, 3);
    assert_memory_equal(b.data, "-_-_", 4);
    kr_buf_free(&b);
    assert_int_equal(dec("-_-_", out), 0);
    assert_memory_equal(out, high, 3);
    /* Strict: padding, the standard alphabet, whitespace, a lone
     * character, non-zero unused bits, NUL. */
    assert_int_equal(dec("Zg==", out), KR_EINVAL);
    assert_int_equal(dec("Zm+v", out), KR_EINVAL);
    assert_int_equal(dec("Zm/v", out), KR_EINVAL);
    assert_int_equal(dec("Zm9 v", out), KR_EINVAL);
    assert_int_equal(dec("Zm9vY", out), KR_EINVAL);
    assert_int_equal(dec("Zh", out), KR_EINVAL);  /* "Zg" with a stray bit */
    assert_int_equal(dec("Zm9", out), KR_EINVAL); /* "Zm8" with a stray bit */
    assert_int_equal(kr_b64url_decode("Zm\0v", 4, (uint8_t *)out, &b.len),
                     KR_EINVAL);
}

/* ---- the JSON writer ---- */

static void jsonw_same(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    size_t n;
    char want[1024];
    struct kr_buf b;

    assert_non_null(j);
    n = json_dumpb(j, want, sizeof(want), JSON_COMPACT | JSON_ENCODE_ANY);
    kr_buf_init(&b);
    assert_int_equal(kr_jsonw_compact(j, &b), 0);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    kr_buf_free(&b);
    json_decref(j);
}

static void test_jsonw(void **state)
{
    struct kr_buf b;
    json_t *j;

    (void)state;
    jsonw_same("{}");
    jsonw_same("[]");
    jsonw_same("{\"b\":1,\"a\":[true,false,null,-9223372036854775808],"
               "\"c\":{\"d\":\"\"}}");
    /* Every escape jansson makes, and what it leaves alone: '/', DEL and
     * UTF-8. */
    jsonw_same("[\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f"
               "\\u00e9\\u20ac\\ud83d\\ude00\"]");
    jsonw_same("{\"k\\n\\\"\":\"v\"}");
    /* Reals and deep trees are left to jansson, leaving out untouched. */
    kr_buf_init(&b);
    kr_buf_append(&b, "x", 1);
    j = json_loads("{\"a\":[1.5]}", 0, NULL);
    assert_int_equal(kr_jsonw_compact(j, &b), KR_EINVAL);
    assert_int_equal(b.len, 1);
    json_decref(j);
    {
        char deep[2 * (KR_JSONW_MAX_DEPTH + 2) + 2];
        size_t d = KR_JSONW_MAX_DEPTH + 2;
        memset(deep, '[', d);
        deep[d] = '1';
        memset(deep + d + 1, ']', d);
        deep[2 * d + 1] = '\0';
        j = json_loads(deep, 0, NULL);
    }
    assert_non_null(j);
    assert_int_equal(kr_jsonw_compact(j, &b), KR_EINVAL);
    assert_int_equal(b.len, 1);
    json_decref(j);
    kr_buf_free(&b);
}

/* ---- JWS ---- */

static json_t *some_claims(void)
{
    return json_pack("{s:s, s:I}", "sub", "global:default:web:g:t:default",
                     "iat", (json_int_t)1700000000);
}

static char *sign(struct kr_signer *s, const char *kid, json_t *extra)
{
    struct kr_buf b;
    json_t *claims = some_claims();
    char err[KR_ERRMSG_SIZE], *tok;

    kr_buf_init(&b);
    assert_int_equal(kr_jws_sign(s, kid, extra, claims, &b, err), 0);
    tok = strndup((const char *)b.data, b.len);
    kr_buf_free(&b);
    json_decref(claims);
    return tok;
}

/* Parses and verifies with s; returns the result, errmsg in err. */
static int check(const char *tok, const struct kr_signer *s, char *err)
{
    struct kr_jws j;
    int rv = kr_jws_parse(&j, tok, strlen(tok), err);

    if (rv == 0)
        rv = kr_jws_verify(&j, tok, s, err);
    kr_jws_clear(&j);
    return rv;
}

/* base64url(text) "." rest, in a static buffer. */
static char *with_header(const char *header, const char *tok)
{
    static char out[4096];
    const char *rest = strchr(tok, '.');

    snprintf(out, sizeof(out), "%s%s", enc(header), rest);
    return out;
}

static void test_jws_round_trip(void **state)
{
    char err[KR_ERRMSG_SIZE], hdr[256];
    struct kr_jws j;
    char *tok;
    size_t n;

    (void)state;
    tok = sign(rsa_signer, "kid-rsa", NULL);
    assert_int_equal(kr_jws_parse(&j, tok, strlen(tok), err), 0);
    assert_string_equal(j.alg, "RS256");
    assert_string_equal(j.kid, "kid-rsa");
    assert_int_equal(j.sig_len, 256);
    assert_string_equal(json_string_value(json_object_get(j.header, "typ")),
                        "JWT");
    assert_int_equal(json_object_size(j.header), 3);
    assert_int_equal(json_integer_value(json_object_get(j.claims, "iat")),
                     1700000000);
    assert_int_equal(kr_jws_verify(&j, tok, rsa_signer, err), 0);
    kr_jws_clear(&j);
    /* The header is exactly {alg, kid, typ}, in that order. */
    assert_int_equal(kr_b64url_decode(tok, (size_t)(strchr(tok, '.') - tok),
                                      (uint8_t *)hdr, &n),
                     0);
    hdr[n] = '\0';
    assert_string_equal(hdr, "{\"alg\":\"RS256\",\"kid\":\"kid-rsa\","
                             "\"typ\":\"JWT\"}");
    free(tok);

    tok = sign(ed_signer, "kid-ed", NULL);
    assert_int_equal(check(tok, ed_signer, err), 0);
    assert_int_equal(kr_jws_parse(&j, tok, strlen(tok), err), 0);
    assert_string_equal(j.alg, "EdDSA");
    assert_int_equal(j.sig_len, 64);
    kr_jws_clear(&j);
    /* Each key verifies only its own tokens. */
    assert_int_equal(check(tok, rsa_signer, err), KR_EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(check(tok, rfc_signer, err), KR_EINVAL);
    assert_non_null(strstr(err, "signature"));
    free(tok);
}

/* RFC 8037 appendix A.4: an Ed25519 JWS made elsewhere verifies here. */
static void test_jws_rfc8037(void **state)
{
    const char *tok =
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsP"
        "t9g7sVvpAr_MuM0KAg";
    const char *s = strrchr(tok, '.') + 1;
    char err[KR_ERRMSG_SIZE];
    struct kr_jws j;
    uint8_t sig[64];
    size_t n;

    (void)state;
    /* Its payload is not a JSON object, so the parser refuses it as a
     * JWT; the signature itself checks out, over exactly the first two
     * parts. */
    assert_int_equal(kr_jws_parse(&j, tok, strlen(tok), err), KR_EINVAL);
    assert_non_null(strstr(err, "claims"));
    assert_int_equal(kr_b64url_decode(s, strlen(s), sig, &n), 0);
    assert_int_equal(n, 64);
    assert_int_equal(kr_signer_verify(rfc_signer, (const uint8_t *)tok,
                                      (size_t)(s - 1 - tok), sig, n),
                     0);
    assert_int_equal(kr_signer_verify(rfc_signer, (const uint8_t *)tok,
                                      (size_t)(s - 2 - tok), sig, n),
                     KR_ECRYPTO);
}

static void test_jws_rejections(void **state)
{
    char err[KR_ERRMSG_SIZE], buf[4096];
    char *tok = sign(rsa_signer, "k", NULL), *p;
    json_t *extra, *claims;
    struct kr_buf b;

    (void)state;
    /* A payload changed after signing. */
    snprintf(buf, sizeof(buf), "%s", tok);
    p = strchr(buf, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_equal(check(buf, rsa_signer, err), KR_EINVAL);
    /* A signature changed. */
    snprintf(buf, sizeof(buf), "%s", tok);
    p = strrchr(buf, '.') + 10;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_equal(check(buf, rsa_signer, err), KR_EINVAL);
    assert_non_null(strstr(err, "signature"));
    /* alg none, with and without a signature. */
    assert_int_equal(check(with_header("{\"alg\":\"none\",\"kid\":\"k\"}", tok),
                           rsa_signer, err),
                     KR_EINVAL);
    assert_non_null(strstr(err, "none"));
    snprintf(buf, sizeof(buf), "%s", with_header("{\"alg\":\"none\"}", tok));
    *(strrchr(buf, '.') + 1) = '\0';
    assert_int_equal(check(buf, rsa_signer, err), KR_EINVAL);
    assert_non_null(strstr(err, "no signature"));
    assert_int_equal(
        check(with_header("{\"alg\":\"NONE\"}", tok), rsa_signer, err),
        KR_EINVAL);
    /* HS256 (whatever it was keyed with) and EdDSA on an RSA key. */
    assert_int_equal(
        check(with_header("{\"alg\":\"HS256\",\"kid\":\"k\"}", tok), rsa_signer,
              err),
        KR_EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(
        check(with_header("{\"alg\":\"EdDSA\",\"kid\":\"k\"}", tok), rsa_signer,
              err),
        KR_EINVAL);
    /* Header rules: no alg, a number for alg or kid, crit, duplicates,
     * not an object, not JSON. */
    assert_int_equal(
        check(with_header("{\"kid\":\"k\"}", tok), rsa_signer, err), KR_EINVAL);
    assert_int_equal(check(with_header("{\"alg\":1}", tok), rsa_signer, err),
                     KR_EINVAL);
    assert_int_equal(check(with_header("{\"alg\":\"RS256\",\"kid\":7}", tok),
                           rsa_signer, err),
                     KR_EINVAL);
    assert_int_equal(
        check(with_header(
                  "{\"alg\":\"RS256\",\"crit\":[\"b64\"],\"b64\":false}", tok),
              rsa_signer, err),
        KR_EINVAL);
    assert_non_null(strstr(err, "crit"));
    assert_int_equal(
        check(with_header("{\"alg\":\"HS256\",\"alg\":\"RS256\"}", tok),
              rsa_signer, err),
        KR_EINVAL);
    assert_int_equal(check(with_header("[1]", tok), rsa_signer, err),
                     KR_EINVAL);
    assert_int_equal(check(with_header("{alg", tok), rsa_signer, err),
                     KR_EINVAL);
    /* Shapes: two parts, four parts, empty parts, non-base64url, long. */
    assert_int_equal(check("a.b", rsa_signer, err), KR_EINVAL);
    assert_int_equal(check("a.b.c.d", rsa_signer, err), KR_EINVAL);
    assert_int_equal(check(".b.c", rsa_signer, err), KR_EINVAL);
    assert_int_equal(check("a..c", rsa_signer, err), KR_EINVAL);
    assert_int_equal(check("e30.e30.c+", rsa_signer, err), KR_EINVAL);
    assert_int_equal(check("e3=.e30.AAAA", rsa_signer, err), KR_EINVAL);
    p = calloc(1, KR_JWS_MAX_LEN + 2);
    memset(p, 'A', KR_JWS_MAX_LEN + 1);
    assert_int_equal(check(p, rsa_signer, err), KR_EINVAL);
    assert_non_null(strstr(err, "longer"));
    free(p);
    /* A signature longer than any key's. */
    snprintf(buf, sizeof(buf), "e30.e30.");
    memset(buf + 8, 'A', 400);
    buf[408] = '\0';
    assert_int_equal(check(buf, rsa_signer, err), KR_EINVAL);
    free(tok);

    /* Extra headers may not override what the signer sets. */
    extra = json_pack("{s:s}", "alg", "none");
    claims = some_claims();
    kr_buf_init(&b);
    assert_int_equal(kr_jws_sign(rsa_signer, "k", extra, claims, &b, err),
                     KR_EINVAL);
    assert_int_equal(b.len, 0);
    kr_buf_free(&b);
    json_decref(extra);
    json_decref(claims);
}

static void test_jws_extra_headers(void **state)
{
    json_t *extra = json_pack("{s:s}", "x5t", "abc");
    char err[KR_ERRMSG_SIZE];
    struct kr_jws j;
    char *tok;

    (void)state;
    char *plain, *via_jansson;
    json_t *empty = json_object();

    /* The header written directly and the one jansson writes (an empty
     * extra object takes that path) are the same bytes. */
    plain =
        sign(ed_signer, "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b.ed25519", NULL);
    via_jansson =
        sign(ed_signer, "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b.ed25519", empty);
    json_decref(empty);
    assert_int_equal(strchr(plain, '.') - plain,
                     strchr(via_jansson, '.') - via_jansson);
    assert_memory_equal(plain, via_jansson,
                        (size_t)(strchr(plain, '.') - plain));
    free(plain);
    free(via_jansson);
    /* A kid that needs escaping goes through jansson, and survives. */
    tok = sign(ed_signer, "a\"b", NULL);
    assert_int_equal(kr_jws_parse(&j, tok, strlen(tok), err), 0);
    assert_string_equal(j.kid, "a\"b");
    kr_jws_clear(&j);
    free(tok);

    tok = sign(rsa_signer, "k", extra);
    assert_int_equal(kr_jws_parse(&j, tok, strlen(tok), err), 0);
    assert_string_equal(json_string_value(json_object_get(j.header, "x5t")),
                        "abc");
    assert_string_equal(j.alg, "RS256");
    assert_int_equal(kr_jws_verify(&j, tok, rsa_signer, err), 0);
    kr_jws_clear(&j);
    free(tok);
    json_decref(extra);
}

/* ---- claims ---- */

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);

    assert_non_null(j);
    return j;
}

static const char *ALLOC = "8d3c0b7e-4a4f-4c8e-9d4b-1e2f3a4b5c6d";

static void test_claims_task(void **state)
{
    char body[1024];
    struct kr_identity_req r;
    char err[KR_ERRMSG_SIZE];
    json_t *j, *c, *want;

    (void)state;
    snprintf(body, sizeof(body),
             "{\"Namespace\":\"prod\",\"JobID\":\"web\",\"Group\":\"g\","
             "\"Task\":\"server\",\"AllocID\":\"%s\",\"IdentityName\":"
             "\"vault_default\",\"Audience\":[\"vault.io\",\"x\"],"
             "\"TTL\":\"1h\",\"ExtraClaims\":{\"team\":\"a\"},"
             "\"VaultRole\":\"r\"}",
             ALLOC);
    j = parse(body);
    assert_int_equal(kr_identity_req_parse(j, &r, err), 0);
    assert_int_equal(r.ttl, 3600);
    assert_int_equal(r.alg, KR_IDENTITY_ALG_DEFAULT);
    c = kr_identity_claims(&r, "eu", "https://kr.example", 1700000000,
                           "11111111-2222-4333-8444-555555555555");
    snprintf(body, sizeof(body),
             "{\"iss\":\"https://kr.example\","
             "\"sub\":\"eu:prod:web:g:server:vault_default\","
             "\"aud\":[\"vault.io\",\"x\"],\"iat\":1700000000,"
             "\"nbf\":1700000000,\"exp\":1700003600,"
             "\"jti\":\"11111111-2222-4333-8444-555555555555\","
             "\"nomad_namespace\":\"prod\",\"nomad_job_id\":\"web\","
             "\"nomad_allocation_id\":\"%s\",\"nomad_task\":\"server\","
             "\"vault_role\":\"r\",\"extra_claims\":{\"team\":\"a\"}}",
             ALLOC);
    want = parse(body);
    assert_true(json_equal(c, want));
    json_decref(c);
    json_decref(want);
    json_decref(j);
}

static void test_claims_service_defaults(void **state)
{
    char body[512];
    struct kr_identity_req r;
    char err[KR_ERRMSG_SIZE];
    json_t *j, *c;

    (void)state;
    /* No namespace, identity name, audience, TTL or issuer: the defaults
     * of Nomad's implicit identity, and no exp, iss or extra_claims. */
    snprintf(body, sizeof(body),
             "{\"JobID\":\"web\",\"Group\":\"g\",\"Service\":\"api\","
             "\"AllocID\":\"%s\",\"TTL\":0,\"ExtraClaims\":{}}",
             ALLOC);
    j = parse(body);
    assert_int_equal(kr_identity_req_parse(j, &r, err), 0);
    c = kr_identity_claims(&r, "global", "", 5, "jti");
    assert_string_equal(json_string_value(json_object_get(c, "sub")),
                        "global:default:web:g:api:default");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(c, "aud"), 0)),
        KR_IDENTITY_DEFAULT_AUD);
    assert_string_equal(json_string_value(json_object_get(c, "nomad_service")),
                        "api");
    assert_null(json_object_get(c, "nomad_task"));
    assert_null(json_object_get(c, "exp"));
    assert_null(json_object_get(c, "iss"));
    assert_null(json_object_get(c, "extra_claims"));
    assert_int_equal(json_object_size(c), 9);
    json_decref(c);
    json_decref(j);
}

static int req_error(const char *fields, char *err)
{
    char body[1024];
    struct kr_identity_req r;
    json_t *j;
    int rv;

    snprintf(body, sizeof(body), "{\"AllocID\":\"%s\"%s%s}", ALLOC,
             *fields ? "," : "", fields);
    j = parse(body);
    rv = kr_identity_req_parse(j, &r, err);
    json_decref(j);
    return rv;
}

static void test_req_rules(void **state)
{
    static const struct {
        const char *fields;
        const char *message;
    } bad[] = {
        {"\"JobID\":\"w\",\"Group\":\"g\"", "exactly one of Task"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"Service\":\"s\"",
         "exactly one of Task"},
        {"\"Group\":\"g\",\"Task\":\"t\"", "JobID is required"},
        {"\"JobID\":\"w\",\"Task\":\"t\"", "Group is required"},
        {"\"JobID\":\"a:b\",\"Group\":\"g\",\"Task\":\"t\"", "invalid JobID"},
        {"\"JobID\":\"w\",\"Group\":\"g\\n\",\"Task\":\"t\"", "invalid Group"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"IdentityName\":"
         "\"x:y\"",
         "invalid IdentityName"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"Namespace\":\"a b\"",
         "invalid Namespace"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"Ttl\":\"1h\"",
         "unknown field \"Ttl\""},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"TTL\":\"-1s\"",
         "TTL"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"TTL\":\"87601h\"",
         "TTL"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"TTL\":true", "TTL"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"TTL\":\"soon\"",
         "TTL"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"Audience\":[]",
         "Audience"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"Audience\":\"a\"",
         "Audience"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"Audience\":[1]",
         "Audience[0]"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"IdentityName\":"
         "\"vault\"",
         "Audience is required"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"ExtraClaims\":"
         "{\"a\":1}",
         "ExtraClaims"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"ExtraClaims\":[]",
         "ExtraClaims"},
        {"\"JobID\":\"w\",\"Group\":\"g\",\"Task\":\"t\",\"Algorithm\":"
         "\"HS256\"",
         "Algorithm"},
        {"\"JobID\":7,\"Group\":\"g\",\"Task\":\"t\"", "JobID must be"},
    };
    char err[KR_ERRMSG_SIZE], body[256];
    struct kr_identity_req r;
    json_t *j;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(req_error(bad[i].fields, err), KR_EINVAL);
        if (strstr(err, bad[i].message) == NULL)
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].fields, err,
                     bad[i].message);
    }
    /* AllocID must be a UUID. */
    j = parse("{\"AllocID\":\"x\",\"JobID\":\"w\",\"Group\":\"g\","
              "\"Task\":\"t\"}");
    assert_int_equal(kr_identity_req_parse(j, &r, err), KR_EINVAL);
    json_decref(j);
    /* TTL as Go's time.Duration integer, rounded up to whole seconds;
     * null is absent; Algorithm. */
    snprintf(body, sizeof(body),
             "{\"AllocID\":\"%s\",\"JobID\":\"w\",\"Group\":\"g\","
             "\"Task\":\"t\",\"TTL\":1500000000,\"Service\":null,"
             "\"Algorithm\":\"EdDSA\"}",
             ALLOC);
    j = parse(body);
    assert_int_equal(kr_identity_req_parse(j, &r, err), 0);
    assert_int_equal(r.ttl, 2);
    assert_int_equal(r.alg, KR_IDENTITY_ALG_EDDSA);
    json_decref(j);
}

static void test_assertion_claims(void **state)
{
    json_t *aud = json_pack("[s]", "https://idp.example/token");
    json_t *c = kr_identity_assertion_claims("client-1", aud, 1000, "j");
    json_t *want =
        parse("{\"iss\":\"client-1\",\"sub\":\"client-1\","
              "\"aud\":[\"https://idp.example/token\"],"
              "\"iat\":1000,\"nbf\":999,\"exp\":1300,\"jti\":\"j\"}");

    (void)state;
    assert_true(json_equal(c, want));
    json_decref(c);
    json_decref(want);
    json_decref(aud);
}

static void test_assertion_and_verify_requests(void **state)
{
    struct kr_identity_assertion_req a;
    struct kr_identity_verify_req v;
    char err[KR_ERRMSG_SIZE];
    json_t *j;

    (void)state;
    j = parse("{\"ClientID\":\"c\",\"Audience\":[\"x\"],"
              "\"ExtraHeaders\":{\"x5t\":\"t\"}}");
    assert_int_equal(kr_identity_assertion_req_parse(j, &a, err), 0);
    assert_string_equal(a.client_id, "c");
    assert_non_null(a.headers);
    json_decref(j);
    j = parse("{\"ClientID\":\"c\",\"Audience\":[\"x\"],"
              "\"ExtraHeaders\":{\"kid\":\"mine\"}}");
    assert_int_equal(kr_identity_assertion_req_parse(j, &a, err), KR_EINVAL);
    assert_non_null(strstr(err, "set by the signer"));
    json_decref(j);
    j = parse("{\"Audience\":[\"x\"]}");
    assert_int_equal(kr_identity_assertion_req_parse(j, &a, err), KR_EINVAL);
    assert_non_null(strstr(err, "ClientID is required"));
    json_decref(j);

    j = parse("{\"JWT\":\"a.b.c\"}");
    assert_int_equal(kr_identity_verify_req_parse(j, &v, err), 0);
    assert_string_equal(v.jwt, "a.b.c");
    assert_int_equal(v.leeway, KR_IDENTITY_LEEWAY_DEFAULT);
    assert_null(v.audience);
    json_decref(j);
    j = parse("{\"JWT\":\"a.b.c\",\"Leeway\":\"0s\",\"Audience\":\"x\"}");
    assert_int_equal(kr_identity_verify_req_parse(j, &v, err), 0);
    assert_int_equal(v.leeway, 0);
    assert_string_equal(v.audience, "x");
    json_decref(j);
    j = parse("{\"JWT\":\"a.b.c\",\"Leeway\":\"301s\"}");
    assert_int_equal(kr_identity_verify_req_parse(j, &v, err), KR_EINVAL);
    json_decref(j);
    j = parse("{\"JWT\":\"\"}");
    assert_int_equal(kr_identity_verify_req_parse(j, &v, err), KR_EINVAL);
    assert_non_null(strstr(err, "JWT is required"));
    json_decref(j);
}

static void test_time_checks(void **state)
{
    char err[KR_ERRMSG_SIZE];
    json_t *c = parse("{\"iat\":1000,\"nbf\":1000,\"exp\":2000}");
    json_t *none = parse("{}");
    json_t *str = parse("{\"exp\":\"2000\"}");
    json_t *real = parse("{\"exp\":2000.5}");

    (void)state;
    assert_int_equal(kr_identity_check_times(c, 1500, 0, err), 0);
    assert_int_equal(kr_identity_check_times(c, 2000, 0, err), 0);
    assert_int_equal(kr_identity_check_times(c, 2001, 0, err), KR_EINVAL);
    assert_non_null(strstr(err, "expired"));
    /* Leeway both ways, and no further. */
    assert_int_equal(kr_identity_check_times(c, 2060, 60, err), 0);
    assert_int_equal(kr_identity_check_times(c, 2061, 60, err), KR_EINVAL);
    assert_int_equal(kr_identity_check_times(c, 940, 60, err), 0);
    assert_int_equal(kr_identity_check_times(c, 939, 60, err), KR_EINVAL);
    assert_non_null(strstr(err, "not valid yet"));
    /* Absent claims pass; claims that are not numbers fail. */
    assert_int_equal(kr_identity_check_times(none, 5, 0, err), 0);
    assert_int_equal(kr_identity_check_times(str, 5, 0, err), KR_EINVAL);
    assert_non_null(strstr(err, "not a number"));
    assert_int_equal(kr_identity_check_times(real, 2000, 0, err), 0);
    assert_int_equal(kr_identity_check_times(real, 2001, 0, err), KR_EINVAL);
    json_decref(c);
    json_decref(none);
    json_decref(str);
    json_decref(real);
}

/* The key GC's and removal's rule (spec 6.4 as keyraft has it). */
static void test_verifiable_until(void **state)
{
    (void)state;
    assert_int_equal(kr_identity_verifiable_until(0, false),
                     KR_IDENTITY_LEEWAY_MAX);
    assert_int_equal(kr_identity_verifiable_until(1700003600, false),
                     1700003600 + KR_IDENTITY_LEEWAY_MAX);
    assert_true(kr_identity_verifiable_until(1700003600, true) == INT64_MAX);
    assert_true(kr_identity_verifiable_until(0, true) == INT64_MAX);
    assert_true(kr_identity_verifiable_until(INT64_MAX - 1, false) ==
                INT64_MAX);
    assert_int_equal(kr_identity_verifiable_until(-5, false),
                     KR_IDENTITY_LEEWAY_MAX);
}

static void test_audience(void **state)
{
    json_t *a = parse("{\"aud\":[\"x\",\"y\"]}"), *s = parse("{\"aud\":\"x\"}");
    json_t *n = parse("{}");

    (void)state;
    assert_true(kr_identity_has_audience(a, "y"));
    assert_false(kr_identity_has_audience(a, "z"));
    assert_true(kr_identity_has_audience(s, "x"));
    assert_false(kr_identity_has_audience(s, "xx"));
    assert_false(kr_identity_has_audience(n, "x"));
    json_decref(a);
    json_decref(s);
    json_decref(n);
}

/* ---- JWKS ---- */

static void test_jwks(void **state)
{
    json_t *keys = json_array(), *k, *back;
    char kid[KR_JWKS_KID_MAX], key_id[KR_UUID_LEN + 1];
    const char *id = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b";
    const uint8_t *n, *e;
    uint8_t raw[300];
    size_t nlen, elen, got;
    bool suffix;
    const char *s;

    (void)state;
    kr_jwks_kid(kid, id, KR_SIGN_RSA, true);
    assert_string_equal(kid, id);
    kr_jwks_kid(kid, id, KR_SIGN_ED25519, false);
    assert_string_equal(kid, id);
    kr_jwks_kid(kid, id, KR_SIGN_ED25519, true);
    assert_string_equal(kid, "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b.ed25519");
    assert_int_equal(kr_jwks_kid_key_id(kid, key_id, &suffix), 0);
    assert_string_equal(key_id, id);
    assert_true(suffix);
    assert_int_equal(kr_jwks_kid_key_id(id, key_id, &suffix), 0);
    assert_false(suffix);
    assert_int_equal(kr_jwks_kid_key_id("x", key_id, &suffix), KR_EINVAL);
    assert_int_equal(kr_jwks_kid_key_id("1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B",
                                        key_id, &suffix),
                     KR_EINVAL);
    assert_int_equal(kr_jwks_kid_key_id("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b."
                                        "ed25518",
                                        key_id, &suffix),
                     KR_EINVAL);

    assert_int_equal(kr_jwks_append(keys, id, rsa_signer), 0);
    assert_int_equal(kr_jwks_append(keys, "rfc", rfc_signer), 0);
    k = json_array_get(keys, 0);
    assert_int_equal(json_object_size(k), 6);
    assert_string_equal(json_string_value(json_object_get(k, "kty")), "RSA");
    assert_string_equal(json_string_value(json_object_get(k, "kid")), id);
    assert_string_equal(json_string_value(json_object_get(k, "use")), "sig");
    assert_string_equal(json_string_value(json_object_get(k, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(k, "e")), "AQAB");
    s = json_string_value(json_object_get(k, "n"));
    assert_int_equal(strlen(s), 342); /* 256 bytes, unpadded */
    assert_int_equal(kr_b64url_decode(s, strlen(s), raw, &got), 0);
    kr_signer_public(rsa_signer, &n, &nlen, &e, &elen);
    assert_int_equal(got, nlen);
    assert_memory_equal(raw, n, nlen);
    /* RFC 8037 appendix A.2: the public key of RFC 8032's test 1. */
    back = parse("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"rfc\","
                 "\"use\":\"sig\",\"alg\":\"EdDSA\","
                 "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}");
    assert_true(json_equal(json_array_get(keys, 1), back));
    json_decref(back);
    json_decref(keys);
}

static void test_max_age(void **state)
{
    const int64_t h = 3600 * KR_NS_PER_SEC, now = 1000 * h;

    (void)state;
    /* 720h threshold, key made now: half of 720h. */
    assert_int_equal(kr_jwks_max_age(now, 720 * h, now, 0), 360 * 3600);
    /* The stagger adds up to 10%. */
    assert_int_equal(kr_jwks_max_age(now, 720 * h, now, 0.5),
                     360 * 3600 + 18 * 3600);
    assert_true(kr_jwks_max_age(now, 720 * h, now, 0.999999) < 396 * 3600);
    /* Close to rotation (or past it): 15 minutes, plus stagger. */
    assert_int_equal(
        kr_jwks_max_age(now - 720 * h + 60 * KR_NS_PER_SEC, 720 * h, now, 0),
        KR_JWKS_MIN_MAX_AGE);
    assert_int_equal(kr_jwks_max_age(now - 800 * h, 720 * h, now, 0.5),
                     KR_JWKS_MIN_MAX_AGE + 45);
    /* A stagger outside [0, 1) counts as none. */
    assert_int_equal(kr_jwks_max_age(now, 720 * h, now, 2), 360 * 3600);
}

static void test_oidc_discovery(void **state)
{
    json_t *d = kr_oidc_discovery("https://kr.example/");
    json_t *want =
        parse("{\"issuer\":\"https://kr.example/\","
              "\"jwks_uri\":\"https://kr.example/.well-known/jwks.json\","
              "\"id_token_signing_alg_values_supported\":[\"RS256\",\"EdDSA\"],"
              "\"response_types_supported\":[\"code\"],"
              "\"subject_types_supported\":[\"public\"]}");

    (void)state;
    assert_true(json_equal(d, want));
    json_decref(d);
    json_decref(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_jsonw),
        cmocka_unit_test(test_jws_round_trip),
        cmocka_unit_test(test_jws_rfc8037),
        cmocka_unit_test(test_jws_rejections),
        cmocka_unit_test(test_jws_extra_headers),
        cmocka_unit_test(test_claims_task),
        cmocka_unit_test(test_claims_service_defaults),
        cmocka_unit_test(test_req_rules),
        cmocka_unit_test(test_assertion_claims),
        cmocka_unit_test(test_assertion_and_verify_requests),
        cmocka_unit_test(test_time_checks),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_verifiable_until),
        cmocka_unit_test(test_jwks),
        cmocka_unit_test(test_max_age),
        cmocka_unit_test(test_oidc_discovery),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
