/*
 * Byte buffers: kr_buf, a growable writer, and kr_rd, a bounds-checked
 * reader.  Integers are little endian.  Strings and byte strings are written
 * as a u32 length followed by the bytes.
 *
 * The reader never reads past its end: the first short read sets rd->err
 * and every later read returns zeros, so decoders can read all fields and
 * check rd->err once.  Returned slices point into the reader's input.
 */
#ifndef KR_COMMON_BUF_H
#define KR_COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool oom; /* set when a grow failed; later appends are ignored */
};

struct kr_rd {
    const uint8_t *p;
    size_t len;
    size_t off;
    bool err;
};

/* Initialises an empty buffer; no allocation. */
void kr_buf_init(struct kr_buf *b);
/* Wipes (the buffer may have held secrets) and frees the contents. */
void kr_buf_free(struct kr_buf *b);
/* Ensures room for n more bytes; returns 0 or KR_ENOMEM (sets b->oom).
 * An empty buffer gets exactly n (at least 64); a full one doubles. */
int kr_buf_reserve(struct kr_buf *b, size_t n);
void kr_buf_append(struct kr_buf *b, const void *p, size_t n);
void kr_buf_puts(struct kr_buf *b, const char *s);
void kr_buf_printf(struct kr_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kr_buf_u8(struct kr_buf *b, uint8_t v);
void kr_buf_u32(struct kr_buf *b, uint32_t v);
void kr_buf_u64(struct kr_buf *b, uint64_t v);
void kr_buf_i64(struct kr_buf *b, int64_t v);
/* u32 length + bytes.  p may be NULL when n is 0. */
void kr_buf_bytes(struct kr_buf *b, const void *p, size_t n);
/* u32 length + bytes of a NUL-terminated string (NULL writes ""). */
void kr_buf_str(struct kr_buf *b, const char *s);

void kr_rd_init(struct kr_rd *r, const void *p, size_t len);
uint8_t kr_rd_u8(struct kr_rd *r);
uint32_t kr_rd_u32(struct kr_rd *r);
uint64_t kr_rd_u64(struct kr_rd *r);
int64_t kr_rd_i64(struct kr_rd *r);
/* Reads a u32-length byte string; *n gets its length, the return points
 * into the input (NULL on error or when empty). */
const uint8_t *kr_rd_bytes(struct kr_rd *r, size_t *n);
/* Reads a length-prefixed string into a fresh malloc'd NUL-terminated copy
 * (caller frees).  Rejects strings containing NUL or longer than max. */
char *kr_rd_strdup(struct kr_rd *r, size_t max);
/* True when every byte was consumed and no read failed. */
bool kr_rd_done(const struct kr_rd *r);

#endif
