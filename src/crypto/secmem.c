/*
 * See secmem.h.  The guard pages, mlock and MADV_DONTDUMP come from
 * OpenSSL's secure heap (crypto/mem_sec.c); this file adds the kr_secret
 * type and the wipe-on-free discipline.
 */
#include "crypto/secmem.h"

#include <string.h>

#include <openssl/crypto.h>

#include "common/err.h"

int kr_secmem_init(size_t size, char *errmsg)
{
    int rv;

    if (CRYPTO_secure_malloc_initialized())
        return 0;
    /* minsize 16: allocations are rounded up to it; keys are 32+ bytes. */
    rv = CRYPTO_secure_malloc_init(size, 16);
    if (rv == 0)
        return kr_errf(errmsg, KR_ENOMEM,
                       "cannot map a %zu-byte secure memory arena", size);
    if (rv == 2) {
        CRYPTO_secure_malloc_done();
        return kr_errf(errmsg, KR_ENOMEM,
                       "cannot lock %zu bytes of secure memory; raise "
                       "RLIMIT_MEMLOCK (ulimit -l) or run with CAP_IPC_LOCK",
                       size);
    }
    return 0;
}

bool kr_secmem_locked(void)
{
    return CRYPTO_secure_malloc_initialized() == 1;
}

void *kr_secmem_alloc(size_t n)
{
    return OPENSSL_secure_zalloc(n);
}

void kr_secmem_free(void *p, size_t n)
{
    if (p != NULL)
        OPENSSL_secure_clear_free(p, n);
}

struct kr_secret *kr_secret_new(size_t len)
{
    struct kr_secret *s = kr_secmem_alloc(sizeof(*s));

    if (s == NULL)
        return NULL;
    s->data = kr_secmem_alloc(len ? len : 1);
    if (s->data == NULL) {
        kr_secmem_free(s, sizeof(*s));
        return NULL;
    }
    s->len = len;
    return s;
}

struct kr_secret *kr_secret_dup(const void *p, size_t n)
{
    struct kr_secret *s = kr_secret_new(n);

    if (s != NULL && n > 0)
        memcpy(s->data, p, n);
    return s;
}

void kr_secret_free(struct kr_secret *s)
{
    if (s == NULL)
        return;
    kr_secmem_free(s->data, s->len ? s->len : 1);
    kr_secmem_free(s, sizeof(*s));
}

bool kr_secret_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
