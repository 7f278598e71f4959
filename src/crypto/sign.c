/*
 * See sign.h.  An RSA signature uses a fresh EVP_MD_CTX (its setup is
 * noise next to the private-key operation).  An Ed25519 signer keeps one
 * context, initialised once, and signs with it again and again, as
 * `openssl speed ed25519` does: setting a context up costs about a tenth
 * of an Ed25519 signature.  Should a later OpenSSL refuse to reuse it,
 * the context is initialised again and the call retried once.
 */
#include "crypto/sign.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/err.h"

#define RSA_E_MAX 8

struct kr_signer {
    EVP_PKEY *pkey;
    enum kr_sign_kind kind;
    EVP_MD_CTX *ed_ctx; /* Ed25519: initialised for signing with pkey */
    /* Public numbers, copied out once for JWKS. */
    uint8_t n[KR_SIGN_MAX];
    size_t nlen;
    uint8_t e[RSA_E_MAX];
    size_t elen;
};

int kr_sign_rsa_generate(struct kr_secret **der_out)
{
    EVP_PKEY *pkey = NULL;
    struct kr_secret *der = NULL;
    unsigned char *p;
    int len, rv = KR_ECRYPTO;

    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (pkey == NULL)
        goto out;
    /* For an RSA key, i2d_PrivateKey writes the PKCS#1 RSAPrivateKey. */
    len = i2d_PrivateKey(pkey, NULL);
    if (len <= 0)
        goto out;
    der = kr_secret_new((size_t)len);
    if (der == NULL) {
        rv = KR_ENOMEM;
        goto out;
    }
    p = der->data;
    if (i2d_PrivateKey(pkey, &p) != len)
        goto out;
    *der_out = der;
    der = NULL;
    rv = 0;
out:
    kr_secret_free(der);
    EVP_PKEY_free(pkey);
    return rv;
}

/* Copies a public RSA number; false when it is absent or too long. */
static bool bn_param(EVP_PKEY *pkey, const char *name, uint8_t *out, size_t cap,
                     size_t *len)
{
    BIGNUM *bn = NULL;
    int n;
    bool ok = false;

    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
        return false;
    n = BN_num_bytes(bn);
    if (n > 0 && (size_t)n <= cap && BN_bn2bin(bn, out) == n) {
        *len = (size_t)n;
        ok = true;
    }
    BN_free(bn);
    return ok;
}

int kr_signer_from_rsa_der(struct kr_signer **out, const uint8_t *der,
                           size_t len)
{
    struct kr_signer *s = NULL;
    const unsigned char *p = der;
    int rv = KR_ECRYPTO;

    if (der == NULL || len == 0 || len > 16384)
        return KR_ECRYPTO;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KR_ENOMEM;
    s->kind = KR_SIGN_RSA;
    s->pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)len);
    if (s->pkey == NULL || p != der + len || EVP_PKEY_get_bits(s->pkey) != 2048)
        goto out;
    if (!bn_param(s->pkey, OSSL_PKEY_PARAM_RSA_N, s->n, sizeof(s->n),
                  &s->nlen) ||
        !bn_param(s->pkey, OSSL_PKEY_PARAM_RSA_E, s->e, sizeof(s->e), &s->elen))
        goto out;
    *out = s;
    s = NULL;
    rv = 0;
out:
    kr_signer_free(s);
    return rv;
}

int kr_signer_from_ed25519_seed(struct kr_signer **out, const uint8_t seed[32])
{
    struct kr_signer *s = calloc(1, sizeof(*s));
    int rv = KR_ECRYPTO;

    if (s == NULL)
        return KR_ENOMEM;
    s->kind = KR_SIGN_ED25519;
    s->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    s->nlen = KR_SIGN_ED25519_LEN;
    s->ed_ctx = EVP_MD_CTX_new();
    if (s->pkey == NULL || s->ed_ctx == NULL ||
        EVP_PKEY_get_raw_public_key(s->pkey, s->n, &s->nlen) != 1 ||
        s->nlen != KR_SIGN_ED25519_LEN ||
        EVP_DigestSignInit(s->ed_ctx, NULL, NULL, NULL, s->pkey) != 1)
        goto out;
    *out = s;
    s = NULL;
    rv = 0;
out:
    kr_signer_free(s);
    return rv;
}

void kr_signer_free(struct kr_signer *s)
{
    if (s == NULL)
        return;
    EVP_MD_CTX_free(s->ed_ctx);
    EVP_PKEY_free(s->pkey);
    free(s);
}

struct kr_signer *kr_signer_ref(const struct kr_signer *s)
{
    struct kr_signer *r = malloc(sizeof(*r));

    if (r == NULL)
        return NULL;
    *r = *s;
    r->ed_ctx = NULL;
    if (EVP_PKEY_up_ref(r->pkey) != 1) {
        free(r);
        return NULL;
    }
    if (r->kind == KR_SIGN_ED25519) {
        r->ed_ctx = EVP_MD_CTX_new();
        if (r->ed_ctx == NULL ||
            EVP_DigestSignInit(r->ed_ctx, NULL, NULL, NULL, r->pkey) != 1) {
            ERR_clear_error();
            kr_signer_free(r);
            return NULL;
        }
    }
    return r;
}

enum kr_sign_kind kr_signer_kind(const struct kr_signer *s)
{
    return s->kind;
}

/* RS256 hashes with SHA-256; Ed25519 takes no digest (one-shot only). */
static const EVP_MD *digest_of(const struct kr_signer *s)
{
    return s->kind == KR_SIGN_RSA ? EVP_sha256() : NULL;
}

/* Ed25519 with the signer's own context (see the top of this file). */
static int ed25519_sign(struct kr_signer *s, const uint8_t *msg, size_t len,
                        uint8_t *sig, size_t *siglen)
{
    size_t n = KR_SIGN_MAX;

    if (EVP_DigestSign(s->ed_ctx, sig, &n, msg, len) != 1) {
        ERR_clear_error();
        n = KR_SIGN_MAX;
        if (EVP_DigestSignInit(s->ed_ctx, NULL, NULL, NULL, s->pkey) != 1 ||
            EVP_DigestSign(s->ed_ctx, sig, &n, msg, len) != 1) {
            ERR_clear_error();
            return KR_ECRYPTO;
        }
    }
    *siglen = n;
    return 0;
}

int kr_signer_sign(struct kr_signer *s, const uint8_t *msg, size_t len,
                   uint8_t *sig, size_t *siglen)
{
    EVP_MD_CTX *ctx = NULL;
    size_t n = KR_SIGN_MAX;
    int rv = KR_ECRYPTO;

    if (s->kind == KR_SIGN_ED25519)
        return ed25519_sign(s, msg, len, sig, siglen);
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return KR_ENOMEM;
    /* RSA padding defaults to PKCS#1 v1.5, which RS256 is. */
    if (EVP_DigestSignInit(ctx, NULL, digest_of(s), NULL, s->pkey) != 1 ||
        EVP_DigestSign(ctx, sig, &n, msg, len) != 1)
        goto out;
    *siglen = n;
    rv = 0;
out:
    if (rv != 0)
        ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    return rv;
}

int kr_signer_verify(const struct kr_signer *s, const uint8_t *msg, size_t len,
                     const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = NULL;
    size_t want = s->kind == KR_SIGN_RSA ? s->nlen : 64;
    int rv = KR_ECRYPTO;

    /* A signature of any other length is refused before OpenSSL sees it:
     * RSA would otherwise accept a shorter one with leading zeros cut. */
    if (siglen != want)
        return KR_ECRYPTO;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return KR_ENOMEM;
    if (EVP_DigestVerifyInit(ctx, NULL, digest_of(s), NULL, s->pkey) == 1 &&
        EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1)
        rv = 0;
    else
        ERR_clear_error(); /* a forged token must not leave errors behind */
    EVP_MD_CTX_free(ctx);
    return rv;
}

void kr_signer_public(const struct kr_signer *s, const uint8_t **n,
                      size_t *nlen, const uint8_t **e, size_t *elen)
{
    *n = s->n;
    *nlen = s->nlen;
    *e = s->e;
    *elen = s->elen;
}
