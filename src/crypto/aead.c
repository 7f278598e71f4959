/*
 * See aead.h.  Two EVP contexts per key (one per direction) keep the
 * expanded key; each call only re-initialises the IV.  Nonces are drawn
 * from the per-thread public random pool (crypto/rand.h).
 */
#include "crypto/aead.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/err.h"
#include "crypto/rand.h"

struct kr_aead {
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
};

/* An aead with two fresh contexts, or NULL (out of memory). */
static struct kr_aead *aead_alloc(void)
{
    struct kr_aead *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    a->enc = EVP_CIPHER_CTX_new();
    a->dec = EVP_CIPHER_CTX_new();
    if (a->enc == NULL || a->dec == NULL) {
        kr_aead_free(a);
        return NULL;
    }
    return a;
}

/* Hands a over in *out when ok, else frees it: KR_ECRYPTO. */
static int aead_finish(struct kr_aead *a, bool ok, struct kr_aead **out)
{
    if (!ok) {
        kr_aead_free(a);
        return KR_ECRYPTO;
    }
    *out = a;
    return 0;
}

int kr_aead_new(struct kr_aead **out, const uint8_t key[KR_AEAD_KEY_LEN])
{
    struct kr_aead *a = aead_alloc();

    if (a == NULL)
        return KR_ENOMEM;
    return aead_finish(
        a,
        EVP_EncryptInit_ex(a->enc, EVP_aes_256_gcm(), NULL, key, NULL) == 1 &&
            EVP_DecryptInit_ex(a->dec, EVP_aes_256_gcm(), NULL, key, NULL) == 1,
        out);
}

void kr_aead_free(struct kr_aead *a)
{
    if (a == NULL)
        return;
    /* EVP_CIPHER_CTX_free cleanses the expanded key. */
    EVP_CIPHER_CTX_free(a->enc);
    EVP_CIPHER_CTX_free(a->dec);
    free(a);
}

int kr_aead_copy(const struct kr_aead *a, struct kr_aead **out)
{
    struct kr_aead *c = aead_alloc();

    if (c == NULL)
        return KR_ENOMEM;
    return aead_finish(c,
                       EVP_CIPHER_CTX_copy(c->enc, a->enc) == 1 &&
                           EVP_CIPHER_CTX_copy(c->dec, a->dec) == 1,
                       out);
}

int kr_aead_seal_with_nonce(struct kr_aead *a,
                            const uint8_t nonce[KR_AEAD_NONCE_LEN],
                            const uint8_t *aad, size_t aadlen,
                            const uint8_t *pt, size_t ptlen, uint8_t *out)
{
    int n = 0, fin = 0;

    if (ptlen > INT_MAX - KR_AEAD_OVERHEAD || aadlen > INT_MAX)
        return KR_EINVAL;
    memcpy(out, nonce, KR_AEAD_NONCE_LEN);
    if (EVP_EncryptInit_ex(a->enc, NULL, NULL, NULL, nonce) != 1)
        return KR_ECRYPTO;
    if (aadlen > 0 &&
        EVP_EncryptUpdate(a->enc, NULL, &n, aad, (int)aadlen) != 1)
        return KR_ECRYPTO;
    if (ptlen > 0 && EVP_EncryptUpdate(a->enc, out + KR_AEAD_NONCE_LEN, &n, pt,
                                       (int)ptlen) != 1)
        return KR_ECRYPTO;
    if (EVP_EncryptFinal_ex(a->enc, out + KR_AEAD_NONCE_LEN + ptlen, &fin) != 1)
        return KR_ECRYPTO;
    if (EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_GCM_GET_TAG, KR_AEAD_TAG_LEN,
                            out + KR_AEAD_NONCE_LEN + ptlen) != 1)
        return KR_ECRYPTO;
    return 0;
}

int kr_aead_seal(struct kr_aead *a, const uint8_t *aad, size_t aadlen,
                 const uint8_t *pt, size_t ptlen, uint8_t *out)
{
    uint8_t nonce[KR_AEAD_NONCE_LEN];

    if (kr_rand_public(nonce, sizeof(nonce)) != 0)
        return KR_ECRYPTO;
    return kr_aead_seal_with_nonce(a, nonce, aad, aadlen, pt, ptlen, out);
}

int kr_aead_open(struct kr_aead *a, const uint8_t *aad, size_t aadlen,
                 const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
    size_t ctlen;
    int n = 0, fin = 0;
    uint8_t tag[KR_AEAD_TAG_LEN];

    if (in == NULL || inlen < KR_AEAD_OVERHEAD || inlen > INT_MAX ||
        aadlen > INT_MAX)
        return KR_EINVAL;
    ctlen = inlen - KR_AEAD_OVERHEAD;
    memcpy(tag, in + inlen - KR_AEAD_TAG_LEN, KR_AEAD_TAG_LEN);
    if (EVP_DecryptInit_ex(a->dec, NULL, NULL, NULL, in) != 1)
        goto fail;
    if (aadlen > 0 &&
        EVP_DecryptUpdate(a->dec, NULL, &n, aad, (int)aadlen) != 1)
        goto fail;
    if (ctlen > 0 && EVP_DecryptUpdate(a->dec, out, &n, in + KR_AEAD_NONCE_LEN,
                                       (int)ctlen) != 1)
        goto fail;
    if (EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_GCM_SET_TAG, KR_AEAD_TAG_LEN,
                            tag) != 1)
        goto fail;
    if (EVP_DecryptFinal_ex(a->dec, out + ctlen, &fin) != 1)
        goto fail;
    *outlen = ctlen;
    return 0;
fail:
    if (ctlen > 0)
        OPENSSL_cleanse(out, ctlen);
    return KR_ECRYPTO;
}
