/*
 * See b64url.h.  Table driven in both directions; the decode table maps
 * every byte value, so an input byte can never index out of it.
 */
#include "identity/b64url.h"

#include "common/err.h"

static const char alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* 0..63 for the alphabet, 64 for every other byte. */
static const uint8_t values[256] = {
    /* clang-format off */
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 62, 64, 64,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 64, 64, 64, 64, 64, 64,
    64,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 64, 64, 64, 64, 63,
    64, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    /* clang-format on */
};

size_t kr_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

size_t kr_b64url_decoded_max(size_t n)
{
    return n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
}

void kr_b64url_encode(struct kr_buf *b, const uint8_t *p, size_t n)
{
    size_t need = kr_b64url_encoded_len(n), i;
    char *o;

    if (n == 0 || kr_buf_reserve(b, need) != 0)
        return;
    o = (char *)b->data + b->len;
    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
    }
    b->len += need;
}

int kr_b64url_decode(const char *s, size_t n, uint8_t *out, size_t *outlen)
{
    const uint8_t *in = (const uint8_t *)s;
    size_t i, o = 0, rest = n % 4;
    uint32_t v;

    /* One character alone carries only 6 bits: never a whole byte. */
    if (rest == 1)
        return KR_EINVAL;
    for (i = 0; i + 4 <= n; i += 4) {
        uint8_t a = values[in[i]], b = values[in[i + 1]];
        uint8_t c = values[in[i + 2]], d = values[in[i + 3]];
        if ((a | b | c | d) & 64)
            return KR_EINVAL;
        v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (rest > 0) {
        uint8_t a = values[in[i]], b = values[in[i + 1]];
        uint8_t c = rest == 3 ? values[in[i + 2]] : 0;
        if ((a | b | c) & 64)
            return KR_EINVAL;
        v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        /* The bits past the last whole byte must be zero. */
        if ((rest == 2 && (v & 0xffff)) || (rest == 3 && (v & 0xff)))
            return KR_EINVAL;
        out[o++] = (uint8_t)(v >> 16);
        if (rest == 3)
            out[o++] = (uint8_t)(v >> 8);
    }
    *outlen = o;
    return 0;
}
