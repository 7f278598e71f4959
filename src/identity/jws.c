/*
 * See jws.h.  The signing input is built once in out and signed in place;
 * the header and claims are compact JSON written by jansson.
 */
#include "identity/jws.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "identity/b64url.h"
#include "identity/jsonw.h"

/* Header members the signer sets and extra headers may not. */
static const char *const reserved[] = {"alg", "kid", "typ", "crit"};

const char *kr_jws_alg(const struct kr_signer *s)
{
    return kr_signer_kind(s) == KR_SIGN_RSA ? "RS256" : "EdDSA";
}

/* Appends base64url(compact JSON of j): identity/jsonw.h's encoding,
 * or jansson's for a tree it leaves to jansson (the same bytes). */
static int put_json(struct kr_buf *out, json_t *j)
{
    struct kr_buf text;
    size_t n;
    int rv;

    kr_buf_init(&text);
    rv = kr_jsonw_compact(j, &text);
    if (rv == KR_EINVAL) {
        n = json_dumpb(j, NULL, 0, JSON_COMPACT);
        rv = n > 0 ? kr_buf_reserve(&text, n) : KR_ENOMEM;
        if (rv == 0 && json_dumpb(j, (char *)text.data, n, JSON_COMPACT) == n)
            text.len = n;
        else
            rv = KR_ENOMEM;
    }
    if (rv == 0)
        kr_b64url_encode(out, text.data, text.len);
    kr_buf_free(&text);
    return rv != 0 ? rv : out->oom ? KR_ENOMEM : 0;
}

/* True when kid needs no JSON escaping and is short: every kid keyraft
 * makes (identity/jwks.h). */
static bool kid_plain(const char *kid)
{
    size_t n = 0;

    for (; kid[n] != '\0'; n++) {
        char c = kid[n];
        if (n == 128 ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* Appends base64url of the header.  Without extra members and with a
 * plain kid, the header is written directly, byte for byte what jansson's
 * compact encoding of the same object gives (the unit tests compare):
 * it is the same for every token of a key, and skipping jansson here is
 * a measurable share of an Ed25519 signing. */
static int put_header(struct kr_buf *out, const struct kr_signer *s,
                      const char *kid, json_t *extra, char *errmsg)
{
    json_t *header = NULL, *v;
    const char *key;
    char text[256];
    int n, rv = KR_ENOMEM;

    if (extra == NULL && kid_plain(kid)) {
        n = snprintf(text, sizeof(text),
                     "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
                     kr_jws_alg(s), kid);
        kr_b64url_encode(out, (const uint8_t *)text, (size_t)n);
        return out->oom ? kr_errf(errmsg, KR_ENOMEM, "out of memory") : 0;
    }
    header = json_pack("{s:s, s:s, s:s}", "alg", kr_jws_alg(s), "kid", kid,
                       "typ", "JWT");
    if (header == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    json_object_foreach(extra, key, v)
    {
        for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
            if (strcmp(key, reserved[i]) == 0) {
                rv = kr_errf(errmsg, KR_EINVAL,
                             "header \"%s\" is set by the signer", key);
                goto out;
            }
        if (json_object_set(header, key, v) != 0)
            goto fail;
    }
    if (put_json(out, header) == 0) {
        rv = 0;
        goto out;
    }
fail:
    rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
out:
    json_decref(header);
    return rv;
}

int kr_jws_signing_input(const struct kr_signer *s, const char *kid,
                         json_t *extra, json_t *claims, struct kr_buf *out,
                         char *errmsg)
{
    size_t start = out->len;
    int rv = put_header(out, s, kid, extra, errmsg);

    if (rv == 0) {
        kr_buf_append(out, ".", 1);
        if (put_json(out, claims) != 0 || out->oom)
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    }
    if (rv != 0)
        out->len = start;
    return rv;
}

int kr_jws_sign(struct kr_signer *s, const char *kid, json_t *extra,
                json_t *claims, struct kr_buf *out, char *errmsg)
{
    size_t start = out->len;
    int rv = kr_jws_signing_input(s, kid, extra, claims, out, errmsg);

    if (rv == 0)
        rv = kr_jws_finish(s, out, start, errmsg);
    if (rv != 0)
        out->len = start;
    return rv;
}

int kr_jws_finish(struct kr_signer *s, struct kr_buf *out, size_t start,
                  char *errmsg)
{
    uint8_t sig[KR_SIGN_MAX];
    size_t end = out->len, siglen = 0;
    int rv;

    rv = kr_signer_sign(s, out->data + start, out->len - start, sig, &siglen);
    if (rv != 0) {
        kr_errf(errmsg, rv, "signing: %s", kr_strerror(rv));
        goto out;
    }
    kr_buf_append(out, ".", 1);
    kr_b64url_encode(out, sig, siglen);
    if (out->oom)
        goto fail;
    /* Never hand out a token that kr_jws_parse would refuse. */
    if (out->len - start > KR_JWS_MAX_LEN) {
        rv = kr_errf(errmsg, KR_EINVAL,
                     "the token would be %zu bytes, more than %d",
                     out->len - start, KR_JWS_MAX_LEN);
        goto out;
    }
    rv = 0;
    goto out;
fail:
    rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
out:
    if (rv != 0)
        out->len = end; /* the signing input stays */
    return rv;
}

/* Decodes one part into a JSON object (duplicate members refused). */
static json_t *part_json(const char *p, size_t n, const char *what,
                         char *errmsg)
{
    uint8_t *raw;
    size_t len = 0;
    json_t *j = NULL;
    json_error_t err;

    raw = malloc(kr_b64url_decoded_max(n) + 1);
    if (raw == NULL) {
        kr_errf(errmsg, KR_ENOMEM, "out of memory");
        return NULL;
    }
    if (kr_b64url_decode(p, n, raw, &len) != 0) {
        kr_errf(errmsg, KR_EINVAL, "%s is not base64url", what);
        goto out;
    }
    j = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL) {
        kr_errf(errmsg, KR_EINVAL, "%s is not JSON: %s", what, err.text);
        goto out;
    }
    if (!json_is_object(j)) {
        kr_errf(errmsg, KR_EINVAL, "%s is not a JSON object", what);
        json_decref(j);
        j = NULL;
    }
out:
    free(raw);
    return j;
}

void kr_jws_clear(struct kr_jws *j)
{
    json_decref(j->header);
    json_decref(j->claims);
    memset(j, 0, sizeof(*j));
}

/* The header rules of jws.h; errmsg says which failed. */
static int header_check(struct kr_jws *j, char *errmsg)
{
    json_t *alg = json_object_get(j->header, "alg");
    json_t *kid = json_object_get(j->header, "kid");
    json_t *typ = json_object_get(j->header, "typ");

    if (!json_is_string(alg))
        return kr_errf(errmsg, KR_EINVAL, "header has no alg");
    j->alg = json_string_value(alg);
    if (strcasecmp(j->alg, "none") == 0)
        return kr_errf(errmsg, KR_EINVAL, "alg \"none\" is not accepted");
    if (kid != NULL && !json_is_string(kid))
        return kr_errf(errmsg, KR_EINVAL, "header kid is not a string");
    j->kid = json_string_value(kid);
    if (typ != NULL && !json_is_string(typ))
        return kr_errf(errmsg, KR_EINVAL, "header typ is not a string");
    if (json_object_get(j->header, "crit") != NULL)
        return kr_errf(errmsg, KR_EINVAL,
                       "header crit names extensions this server does not "
                       "understand");
    return 0;
}

int kr_jws_parse(struct kr_jws *out, const char *token, size_t len,
                 char *errmsg)
{
    struct kr_jws j;
    const char *dot1, *dot2, *end = token + len;
    int rv = KR_EINVAL;

    memset(&j, 0, sizeof(j));
    memset(out, 0, sizeof(*out));
    if (len > KR_JWS_MAX_LEN)
        return kr_errf(errmsg, KR_EINVAL, "token is longer than %d bytes",
                       KR_JWS_MAX_LEN);
    dot1 = memchr(token, '.', len);
    dot2 =
        dot1 != NULL ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        return kr_errf(errmsg, KR_EINVAL,
                       "token is not a compact JWS (three parts)");
    if (dot1 == token || dot2 == dot1 + 1)
        return kr_errf(errmsg, KR_EINVAL, "token has an empty part");
    if (dot2 + 1 == end)
        return kr_errf(errmsg, KR_EINVAL, "token has no signature");
    if (kr_b64url_decoded_max((size_t)(end - dot2 - 1)) > sizeof(j.sig) ||
        kr_b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), j.sig,
                         &j.sig_len) != 0)
        return kr_errf(errmsg, KR_EINVAL, "token signature is malformed");
    j.header = part_json(token, (size_t)(dot1 - token), "header", errmsg);
    if (j.header == NULL)
        goto out;
    rv = header_check(&j, errmsg);
    if (rv != 0)
        goto out;
    rv = KR_EINVAL;
    j.claims = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1), "claims", errmsg);
    if (j.claims == NULL)
        goto out;
    j.signed_len = (size_t)(dot2 - token);
    *out = j;
    return 0;
out:
    kr_jws_clear(&j);
    return rv;
}

int kr_jws_verify(const struct kr_jws *j, const char *token,
                  const struct kr_signer *s, char *errmsg)
{
    const char *want = kr_jws_alg(s);

    if (strcmp(j->alg, want) != 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "alg \"%.32s\" does not match the key, which signs "
                       "with %s",
                       j->alg, want);
    if (kr_signer_verify(s, (const uint8_t *)token, j->signed_len, j->sig,
                         j->sig_len) != 0)
        return kr_errf(errmsg, KR_EINVAL, "signature is not valid");
    return 0;
}
