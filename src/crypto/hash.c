/*
 * See hash.h.  A thin wrapper over OpenSSL's EVP digest interface, which
 * uses the CPU's SHA extensions when it has them.
 */
#include "crypto/hash.h"

#include <stdbool.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "common/err.h"

struct kr_sha256 {
    EVP_MD_CTX *ctx;
    bool failed;
};

int kr_sha256_new(struct kr_sha256 **out)
{
    struct kr_sha256 *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return KR_ENOMEM;
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        kr_sha256_free(h);
        return KR_ENOMEM;
    }
    *out = h;
    return 0;
}

void kr_sha256_free(struct kr_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void kr_sha256_update(struct kr_sha256 *h, const void *p, size_t n)
{
    if (n > 0 && EVP_DigestUpdate(h->ctx, p, n) != 1)
        h->failed = true;
}

int kr_sha256_final(struct kr_sha256 *h, uint8_t out[KR_SHA256_LEN])
{
    unsigned int n = 0;
    bool ok = !h->failed && EVP_DigestFinal_ex(h->ctx, out, &n) == 1 &&
              n == KR_SHA256_LEN;

    h->failed = EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1;
    return ok ? 0 : KR_ECRYPTO;
}

int kr_sha256(const void *p, size_t n, uint8_t out[KR_SHA256_LEN])
{
    unsigned int len = 0;

    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 ||
        len != KR_SHA256_LEN)
        return KR_ECRYPTO;
    return 0;
}

void kr_sha256_hex(const uint8_t d[KR_SHA256_LEN], char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < KR_SHA256_LEN; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * KR_SHA256_LEN] = '\0';
}

size_t kr_base64_encode(const void *p, size_t n, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *s = p;
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}
