/*
 * See rand.h.
 */
#include "crypto/rand.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/err.h"

int kr_rand_bytes(void *buf, size_t n)
{
    if (n > INT_MAX || RAND_bytes(buf, (int)n) != 1)
        return KR_ECRYPTO;
    return 0;
}

#define POOL_SIZE 4096

/* Consumed bytes are zeroed so the pool never hands out a value twice. */
static _Thread_local struct {
    unsigned char bytes[POOL_SIZE];
    size_t used;
    int filled;
} pool;

int kr_rand_public(void *buf, size_t n)
{
    if (n > 64)
        return KR_EINVAL;
    if (!pool.filled || POOL_SIZE - pool.used < n) {
        if (RAND_bytes(pool.bytes, POOL_SIZE) != 1)
            return KR_ECRYPTO;
        pool.used = 0;
        pool.filled = 1;
    }
    memcpy(buf, pool.bytes + pool.used, n);
    memset(pool.bytes + pool.used, 0, n);
    pool.used += n;
    return 0;
}

int kr_rand_uuid(char out[KR_UUID_LEN + 1])
{
    uint8_t b[16];
    int rv = kr_rand_bytes(b, sizeof(b));

    if (rv == 0)
        kr_uuid_format(b, out);
    return rv;
}
