/*
 * See jwks.h.
 */
#include "identity/jwks.h"

#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/time.h"
#include "identity/b64url.h"
#include "identity/jws.h"

void kr_jwks_kid(char out[KR_JWKS_KID_MAX], const char *key_id,
                 enum kr_sign_kind kind, bool has_rsa)
{
    snprintf(out, KR_JWKS_KID_MAX, "%s%s", key_id,
             kind == KR_SIGN_ED25519 && has_rsa ? KR_JWKS_ED25519_SUFFIX : "");
}

int kr_jwks_kid_key_id(const char *kid, char key_id[KR_UUID_LEN + 1],
                       bool *ed25519_suffix)
{
    size_t n = strlen(kid);

    if (n == KR_UUID_LEN)
        *ed25519_suffix = false;
    else if (n == KR_JWKS_KID_MAX - 1 &&
             strcmp(kid + KR_UUID_LEN, KR_JWKS_ED25519_SUFFIX) == 0)
        *ed25519_suffix = true;
    else
        return KR_EINVAL;
    memcpy(key_id, kid, KR_UUID_LEN);
    key_id[KR_UUID_LEN] = '\0';
    return kr_uuid_valid(key_id) ? 0 : KR_EINVAL;
}

/* A new JSON string holding base64url(p[0..n)). */
static json_t *b64_string(const uint8_t *p, size_t n)
{
    struct kr_buf b;
    json_t *s = NULL;

    kr_buf_init(&b);
    kr_b64url_encode(&b, p, n);
    if (!b.oom)
        s = json_stringn((const char *)b.data, b.len);
    kr_buf_free(&b);
    return s;
}

int kr_jwks_append(json_t *keys, const char *kid, const struct kr_signer *s)
{
    const uint8_t *n, *e;
    size_t nlen, elen;
    json_t *k;

    kr_signer_public(s, &n, &nlen, &e, &elen);
    if (kr_signer_kind(s) == KR_SIGN_RSA)
        k = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "kty", "RSA", "kid",
                      kid, "use", "sig", "alg", kr_jws_alg(s), "n",
                      b64_string(n, nlen), "e", b64_string(e, elen));
    else
        k = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "kty", "OKP", "crv",
                      "Ed25519", "kid", kid, "use", "sig", "alg", kr_jws_alg(s),
                      "x", b64_string(n, nlen));
    if (k == NULL || json_array_append_new(keys, k) != 0)
        return KR_ENOMEM;
    return 0;
}

int64_t kr_jwks_max_age(int64_t newest_create, int64_t threshold,
                        int64_t now_ns, double stagger)
{
    int64_t left = newest_create + threshold - now_ns;
    int64_t base = left / 2 / KR_NS_PER_SEC;

    if (base < KR_JWKS_MIN_MAX_AGE)
        base = KR_JWKS_MIN_MAX_AGE;
    if (stagger < 0 || stagger >= 1)
        stagger = 0;
    return base + (int64_t)((double)(base / 10) * stagger);
}

json_t *kr_oidc_discovery(const char *issuer)
{
    size_t n = strlen(issuer);
    json_t *uri;

    while (n > 0 && issuer[n - 1] == '/')
        n--;
    uri = json_sprintf("%.*s/.well-known/jwks.json", (int)n, issuer);
    return json_pack("{s:s, s:o, s:[ss], s:[s], s:[s]}", "issuer", issuer,
                     "jwks_uri", uri, "id_token_signing_alg_values_supported",
                     "RS256", "EdDSA", "response_types_supported", "code",
                     "subject_types_supported", "public");
}
