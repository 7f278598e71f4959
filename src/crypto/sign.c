/*
 * See sign.h.
 */
#include "crypto/sign.h"

#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/err.h"

struct kr_signer {
    EVP_PKEY *pkey;
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
    s->pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)len);
    if (s->pkey == NULL || p != der + len || EVP_PKEY_get_bits(s->pkey) != 2048)
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

    if (s == NULL)
        return KR_ENOMEM;
    s->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (s->pkey == NULL) {
        free(s);
        return KR_ECRYPTO;
    }
    *out = s;
    return 0;
}

void kr_signer_free(struct kr_signer *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->pkey);
    free(s);
}
