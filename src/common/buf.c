/*
 * See buf.h.
 */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void kr_buf_init(struct kr_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void kr_buf_free(struct kr_buf *b)
{
    if (b->data != NULL) {
        explicit_bzero(b->data, b->cap);
        free(b->data);
    }
    kr_buf_init(b);
}

int kr_buf_reserve(struct kr_buf *b, size_t n)
{
    size_t cap;
    uint8_t *p;

    if (b->oom)
        return KR_ENOMEM;
    if (b->cap - b->len >= n)
        return 0;
    /* The first block is what was asked for: a buffer sized up front
     * (kr_buf_reserve before the appends) is allocated once, exactly. */
    cap = b->cap ? b->cap : (n > 64 ? n : 64);
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            goto fail;
        cap *= 2;
    }
    /* Grow by copy, not realloc, so the old block can be wiped first. */
    p = malloc(cap);
    if (p == NULL)
        goto fail;
    if (b->len > 0)
        memcpy(p, b->data, b->len);
    if (b->data != NULL) {
        explicit_bzero(b->data, b->cap);
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    return 0;
fail:
    b->oom = true;
    return KR_ENOMEM;
}

void kr_buf_append(struct kr_buf *b, const void *p, size_t n)
{
    if (n == 0 || kr_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void kr_buf_puts(struct kr_buf *b, const char *s)
{
    kr_buf_append(b, s, strlen(s));
}

void kr_buf_printf(struct kr_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || kr_buf_reserve(b, (size_t)n + 1) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void kr_buf_u8(struct kr_buf *b, uint8_t v)
{
    kr_buf_append(b, &v, 1);
}

void kr_buf_u32(struct kr_buf *b, uint32_t v)
{
    uint8_t x[4];

    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    kr_buf_append(b, x, 4);
}

void kr_buf_u64(struct kr_buf *b, uint64_t v)
{
    uint8_t x[8];

    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    kr_buf_append(b, x, 8);
}

void kr_buf_i64(struct kr_buf *b, int64_t v)
{
    kr_buf_u64(b, (uint64_t)v);
}

void kr_buf_bytes(struct kr_buf *b, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        b->oom = true;
        return;
    }
    kr_buf_u32(b, (uint32_t)n);
    kr_buf_append(b, p, n);
}

void kr_buf_str(struct kr_buf *b, const char *s)
{
    if (s == NULL)
        s = "";
    kr_buf_bytes(b, s, strlen(s));
}

void kr_rd_init(struct kr_rd *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = false;
}

static const uint8_t *take(struct kr_rd *r, size_t n)
{
    const uint8_t *p;

    if (r->err || r->len - r->off < n) {
        r->err = true;
        return NULL;
    }
    p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t kr_rd_u8(struct kr_rd *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

uint32_t kr_rd_u32(struct kr_rd *r)
{
    const uint8_t *p = take(r, 4);
    uint32_t v = 0;

    if (p == NULL)
        return 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t kr_rd_u64(struct kr_rd *r)
{
    const uint8_t *p = take(r, 8);
    uint64_t v = 0;

    if (p == NULL)
        return 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int64_t kr_rd_i64(struct kr_rd *r)
{
    return (int64_t)kr_rd_u64(r);
}

const uint8_t *kr_rd_bytes(struct kr_rd *r, size_t *n)
{
    uint32_t len = kr_rd_u32(r);
    const uint8_t *p;

    *n = 0;
    if (r->err)
        return NULL;
    p = take(r, len);
    if (p == NULL)
        return NULL;
    *n = len;
    return len ? p : NULL;
}

char *kr_rd_strdup(struct kr_rd *r, size_t max)
{
    size_t n;
    const uint8_t *p = kr_rd_bytes(r, &n);
    char *s;

    if (r->err)
        return NULL;
    if (n > max || (n > 0 && memchr(p, '\0', n) != NULL)) {
        r->err = true;
        return NULL;
    }
    s = malloc(n + 1);
    if (s == NULL) {
        r->err = true;
        return NULL;
    }
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

bool kr_rd_done(const struct kr_rd *r)
{
    return !r->err && r->off == r->len;
}
