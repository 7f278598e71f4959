/*
 * See hash.h.  A thin wrapper over OpenSSL's EVP digest interface, which
 * uses the CPU's SHA extensions when it has them.
 */
#include "crypto/hash.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

#define BG_BUF (1u << 20)

struct kr_sha256_bg {
    struct kr_sha256 *sha;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[2];
    size_t len[2];
    unsigned fill; /* the caller's buffer; the other is the thread's */
    bool handed;   /* the thread has the other buffer to hash */
    bool stop;
};

static void *bg_main(void *arg)
{
    struct kr_sha256_bg *h = arg;

    pthread_mutex_lock(&h->mu);
    for (;;) {
        unsigned mine;

        while (!h->handed && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (!h->handed)
            break;
        mine = 1 - h->fill;
        pthread_mutex_unlock(&h->mu);
        kr_sha256_update(h->sha, h->buf[mine], h->len[mine]);
        pthread_mutex_lock(&h->mu);
        h->handed = false;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int kr_sha256_bg_new(struct kr_sha256_bg **out)
{
    struct kr_sha256_bg *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return KR_ENOMEM;
    /* The bytes may be an unredacted archive's (aead KEKs): locked when
     * the memlock limit allows (the server's are, by mlockall), never
     * in a core dump, wiped when freed. */
    h->buf[0] = mmap(NULL, 2 * BG_BUF, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (h->buf[0] == MAP_FAILED) {
        free(h);
        return KR_ENOMEM;
    }
    h->buf[1] = h->buf[0] + BG_BUF;
    (void)mlock(h->buf[0], 2 * BG_BUF);
    (void)madvise(h->buf[0], 2 * BG_BUF, MADV_DONTDUMP);
    if (kr_sha256_new(&h->sha) != 0) {
        munmap(h->buf[0], 2 * BG_BUF);
        free(h);
        return KR_ENOMEM;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, bg_main, h) != 0) {
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        kr_sha256_free(h->sha);
        munmap(h->buf[0], 2 * BG_BUF);
        free(h);
        return KR_EIO;
    }
    *out = h;
    return 0;
}

/* The caller's buffer goes to the thread once it is done with the
 * other, which becomes the caller's, empty. */
static void bg_hand(struct kr_sha256_bg *h)
{
    pthread_mutex_lock(&h->mu);
    while (h->handed)
        pthread_cond_wait(&h->cv, &h->mu);
    h->fill = 1 - h->fill;
    h->len[h->fill] = 0;
    h->handed = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void kr_sha256_bg_update(struct kr_sha256_bg *h, const void *p, size_t n)
{
    const uint8_t *b = p;

    while (n > 0) {
        unsigned f = h->fill;
        size_t k = BG_BUF - h->len[f] < n ? BG_BUF - h->len[f] : n;

        memcpy(h->buf[f] + h->len[f], b, k);
        h->len[f] += k;
        b += k;
        n -= k;
        if (h->len[f] == BG_BUF)
            bg_hand(h);
    }
}

int kr_sha256_bg_final(struct kr_sha256_bg *h, uint8_t out[KR_SHA256_LEN])
{
    if (h->len[h->fill] > 0)
        bg_hand(h);
    pthread_mutex_lock(&h->mu);
    while (h->handed)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    return kr_sha256_final(h->sha, out);
}

void kr_sha256_bg_free(struct kr_sha256_bg *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    kr_sha256_free(h->sha);
    explicit_bzero(h->buf[0], 2 * BG_BUF);
    munmap(h->buf[0], 2 * BG_BUF); /* unlocks */
    free(h);
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
