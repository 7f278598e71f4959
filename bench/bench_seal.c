/*
 * Microbenchmark: keyraft's Variable seal and open (AES-256-GCM, random
 * 12-byte nonce, AAD = the 36-byte KeyID) on 1 KiB values, in bytes per
 * second, for comparison with `openssl speed -evp aes-256-gcm` at 1 KiB.
 *
 * Usage: bench_seal [seconds]   Prints one line per operation:
 *   seal_1k_bytes_per_sec <n>
 *   open_1k_bytes_per_sec <n>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/aead.h"

#define VALUE_LEN 1024

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *key_id = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b";
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    uint8_t key[32], pt[VALUE_LEN], ct[VALUE_LEN + KR_AEAD_OVERHEAD];
    uint8_t back[VALUE_LEN];
    struct kr_aead *a = NULL;
    unsigned long n;
    double t0, t;
    size_t outlen;

    memset(key, 7, sizeof(key));
    memset(pt, 'v', sizeof(pt));
    if (kr_aead_new(&a, key) != 0)
        return 1;
    for (n = 0, t0 = now(); (t = now()) - t0 < secs; n++)
        for (int i = 0; i < 256; i++)
            kr_aead_seal(a, (const uint8_t *)key_id, strlen(key_id), pt,
                         VALUE_LEN, ct);
    printf("seal_1k_bytes_per_sec %.0f\n",
           (double)n * 256 * VALUE_LEN / (t - t0));
    for (n = 0, t0 = now(); (t = now()) - t0 < secs; n++)
        for (int i = 0; i < 256; i++)
            if (kr_aead_open(a, (const uint8_t *)key_id, strlen(key_id), ct,
                             sizeof(ct), back, &outlen) != 0)
                return 1;
    printf("open_1k_bytes_per_sec %.0f\n",
           (double)n * 256 * VALUE_LEN / (t - t0));
    kr_aead_free(a);
    return 0;
}
