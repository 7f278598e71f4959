/*
 * See rand.h.
 */
#include "crypto/rand.h"

#include <limits.h>
#include <stdint.h>

#include <openssl/rand.h>

#include "common/err.h"

int kr_rand_bytes(void *buf, size_t n)
{
    if (n > INT_MAX || RAND_bytes(buf, (int)n) != 1)
        return KR_ECRYPTO;
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
