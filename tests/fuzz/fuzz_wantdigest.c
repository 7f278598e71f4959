/*
 * libFuzzer target for the Want-Digest parser (src/http/wantdigest.c).
 * Whatever the bytes, it must not crash or read past the value (the
 * input is copied to an allocation of exactly its length), and a value
 * it says declines sha-256 must hold "sha-256" (any case) followed by
 * a q= whose qvalue starts with 0.  It must also be deterministic and
 * agree on the value with blanks added around a comma-separated copy:
 * "v" and " v , " mean the same list.  Any disagreement traps.
 *
 * Build with clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 * -Isrc, this file and src/http/wantdigest.c; run as ./fuzz_wantdigest
 * -max_total_time=60 corpus/ (`make fuzz` seeds the corpus from
 * tests/fuzz/wantdigest.seeds).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/wantdigest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* "sha-256", then OWS ";" OWS "q=0" somewhere after it. */
static bool names_sha256_q0(const char *v, size_t n)
{
    for (size_t i = 0; i + 7 <= n; i++) {
        if (strncasecmp(v + i, "sha-256", 7) != 0)
            continue;
        for (size_t j = i + 7; j + 3 <= n; j++)
            if ((v[j] == 'q' || v[j] == 'Q') && v[j + 1] == '=' &&
                v[j + 2] == '0')
                return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = malloc(size ? size : 1), *padded = malloc(size + 4);
    bool got;

    if (v == NULL || padded == NULL)
        abort();
    memcpy(v, data, size);
    got = kr_http_want_digest_declines_sha256(v, size);
    if (got != kr_http_want_digest_declines_sha256(v, size))
        __builtin_trap();
    if (got && !names_sha256_q0(v, size))
        __builtin_trap();
    padded[0] = ' ';
    memcpy(padded + 1, data, size);
    memcpy(padded + 1 + size, " , ", 3);
    if (kr_http_want_digest_declines_sha256(padded, size + 4) != got &&
        memchr(v, '\0', size) == NULL)
        __builtin_trap();
    free(padded);
    free(v);
    return 0;
}
