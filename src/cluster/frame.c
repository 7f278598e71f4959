/* See frame.h. */
#include "cluster/frame.h"

#include <string.h>

#define HEADER KR_FRAME_HEADER
#define BATCH_BIT 0x80000000u

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

size_t kr_frame_size(size_t len)
{
    return pad8(HEADER + len);
}

uint8_t *kr_frame_begin(uint8_t *dst, size_t len)
{
    size_t total = kr_frame_size(len);

    put_u32(dst, (uint32_t)len);
    memset(dst + HEADER + len, 0, total - HEADER - len);
    return dst + HEADER;
}

void kr_frame_write(uint8_t *dst, const void *p, size_t len)
{
    uint8_t *payload = kr_frame_begin(dst, len);

    if (len > 0)
        memcpy(payload, p, len);
}

size_t kr_frame_batch_size(size_t records_len)
{
    return pad8(HEADER + records_len);
}

void kr_frame_write_batch(uint8_t *dst, unsigned count, const void *records,
                          size_t records_len)
{
    size_t total = kr_frame_batch_size(records_len);

    put_u32(dst, BATCH_BIT | count);
    memcpy(dst + HEADER, records, records_len);
    memset(dst + HEADER + records_len, 0, total - HEADER - records_len);
}

/* Walks the records of a batch: true when exactly count of them fill
 * the frame up to its padding. */
static bool batch_ok(const uint8_t *p, size_t len, unsigned count)
{
    size_t off = HEADER;

    for (unsigned i = 0; i < count; i++) {
        uint32_t n;
        if (len - off < HEADER)
            return false;
        n = get_u32(p + off);
        off += HEADER;
        if (n > KR_FRAME_PAYLOAD_MAX || n > len - off)
            return false;
        off += n;
    }
    return pad8(off) == len;
}

unsigned kr_frame_open(struct kr_frame_reader *r, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint32_t head;

    memset(r, 0, sizeof(*r));
    if (len < HEADER)
        return 0;
    head = get_u32(p);
    if (head & BATCH_BIT) {
        unsigned count = head & ~BATCH_BIT;
        if (count < 2 || count > KR_FRAME_BATCH_MAX || !batch_ok(p, len, count))
            return 0;
        r->batch = true;
        r->left = count;
    } else {
        if (head > len - HEADER || kr_frame_size(head) != len)
            return 0;
        r->left = 1;
    }
    r->p = p;
    r->len = len;
    r->off = r->batch ? HEADER : 0;
    return r->left;
}

bool kr_frame_next(struct kr_frame_reader *r, const uint8_t **payload,
                   size_t *len)
{
    uint32_t n;

    if (r->left == 0)
        return false;
    /* Bounds were checked by kr_frame_open. */
    n = get_u32(r->p + r->off);
    *payload = r->p + r->off + HEADER;
    *len = n;
    r->off += HEADER + n;
    r->left--;
    return true;
}
