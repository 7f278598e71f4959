/*
 * How state-machine entries sit inside raft entries (and the state
 * snapshot inside a raft snapshot).  libraft 0.15 pads what it writes to
 * 8 bytes but does not strip the padding on read, so every payload
 * carries its own length:
 *
 *   single: u32 n (< 2^31) | payload (n) | zero padding to a multiple of 8
 *   batch:  u32 0x80000000 | count (>= 2)
 *           | count * { u32 n | payload (n) } | zero padding to 8
 *
 * A batch lets the leader put the writes of one loop iteration into one
 * raft entry, so followers get one message and one disk write for them
 * all.  Every entry of a batch is applied at the batch's raft index.
 * Integers are little-endian.  Pure functions; any thread.
 */
#ifndef KR_CLUSTER_FRAME_H
#define KR_CLUSTER_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KR_FRAME_PAYLOAD_MAX 0x7fffffffu
#define KR_FRAME_BATCH_MAX 256

/* Bytes of a single frame around a payload of len bytes. */
size_t kr_frame_size(size_t len);

/* Writes a single frame around p[0..len) into dst, which holds
 * kr_frame_size(len) bytes (zeroed by the caller or not: the padding is
 * written here). */
void kr_frame_write(uint8_t *dst, const void *p, size_t len);

/* The bytes before a single frame's payload. */
#define KR_FRAME_HEADER 4

/* Starts a single frame of a len-byte payload in dst (kr_frame_size(len)
 * bytes): writes the length and the padding, and returns where the
 * caller writes the payload. */
uint8_t *kr_frame_begin(uint8_t *dst, size_t len);

/* Bytes of a batch frame whose records (each u32 n | payload, as built
 * by kr_frame_record) take records_len bytes. */
size_t kr_frame_batch_size(size_t records_len);

/* Writes a batch frame of count records (records_len bytes) into dst,
 * which holds kr_frame_batch_size(records_len) bytes. */
void kr_frame_write_batch(uint8_t *dst, unsigned count, const void *records,
                          size_t records_len);

/* Reads the payloads of a frame, single or batch.  The whole frame is
 * checked by kr_frame_open before the first payload is handed out. */
struct kr_frame_reader {
    const uint8_t *p;
    size_t len, off;
    unsigned left;
    bool batch;
};

/* Returns the number of payloads (>= 1), or 0 when buf is not a
 * well-formed frame. */
unsigned kr_frame_open(struct kr_frame_reader *r, const void *buf, size_t len);

/* The next payload (borrowed from the frame), or false when none is left. */
bool kr_frame_next(struct kr_frame_reader *r, const uint8_t **payload,
                   size_t *len);

#endif
