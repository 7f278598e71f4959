/*
 * Secret memory: every byte of key material and every plaintext Variable
 * buffer is allocated here.  The pool is OpenSSL's secure heap: one mmap'd
 * arena that is mlock'ed, guarded by inaccessible pages and excluded from
 * core dumps (MADV_DONTDUMP).  Frees wipe with OPENSSL_cleanse.
 *
 * Before kr_secmem_init() (unit tests, the CLI) allocations fall back to
 * the ordinary heap but are still wiped on free.
 */
#ifndef KR_CRYPTO_SECMEM_H
#define KR_CRYPTO_SECMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A secret byte string.  Both the struct and data live in secret memory. */
struct kr_secret {
    size_t len;
    uint8_t *data;
};

/*
 * Sets up the locked pool of `size` bytes (a power of two).  Returns 0, or
 * KR_ENOMEM when the arena cannot be mapped or locked (RLIMIT_MEMLOCK);
 * errmsg says which.  Call once, from the main thread, before any secret is
 * allocated.
 */
int kr_secmem_init(size_t size, char *errmsg);

/* True when allocations come from the locked pool. */
bool kr_secmem_locked(void);

/* Zeroed allocation of n bytes from the pool; NULL when exhausted. */
void *kr_secmem_alloc(size_t n);
/* Wipes n bytes and returns them to the pool.  NULL is a no-op. */
void kr_secmem_free(void *p, size_t n);

/* Returns a new secret of len bytes (zeroed), or NULL. Free with
 * kr_secret_free. Any thread. */
struct kr_secret *kr_secret_new(size_t len);
/* Returns a new secret holding a copy of p[0..n), or NULL. */
struct kr_secret *kr_secret_dup(const void *p, size_t n);
/* Wipes and frees; NULL is a no-op. */
void kr_secret_free(struct kr_secret *s);

/* Constant-time equality of two byte strings of the same length. */
bool kr_secret_equal(const void *a, const void *b, size_t n);

#endif
