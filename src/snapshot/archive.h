/*
 * The snapshot archive (spec 8.1): a gzip'd tar with exactly three
 * members, in this order, each mode 0600 with the creation time as mtime:
 *
 *   meta.json   {"Version":1,"ID":"<term>-<index>-<unix ms>","Index":n,
 *                "Term":n,"Configuration":{"Servers":[{"Suffrage",
 *                "ID","Address"}]},"Size":<length of state.bin>}
 *   state.bin   the state machine's snapshot encoding (kr_state_save)
 *   SHA256SUMS  "<hex>  meta.json\n<hex>  state.bin\n"
 *
 * The writer streams: state.bin may be handed over in pieces, and the
 * compressed bytes go to a callback as they are made.  The reader is a
 * parser of untrusted input and bounds everything before it allocates or
 * reads: meta.json at most 64 KiB, SHA256SUMS at most 4 KiB, state.bin
 * at most KR_SNAP_STATE_MAX (a gzip bomb is stopped by the size its tar
 * header declares, which must also equal meta.json's Size), exactly the
 * three members in order, regular files only, gzip only, version 1, both
 * checksums present and matching, and nothing after the third member.
 * Every failure is a KR_EINVAL (KR_EIO for an I/O error) with a message
 * an operator can act on.
 *
 * Security property: an unredacted state.bin holds every root key's
 * wrapped material and, for aead, the KEK that unwraps it.  Buffers that
 * held it are wiped before they are freed.  Redaction (kr_snap_redact)
 * removes both blobs and the KEK of every key, and keeps key metadata,
 * marked redacted.
 *
 * Readers and writers are not thread safe; each belongs to one thread at
 * a time (the HTTP server hands them to worker threads).
 */
#ifndef KR_SNAPSHOT_ARCHIVE_H
#define KR_SNAPSHOT_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crypto/hash.h"
#include "state/state.h"

#define KR_SNAP_VERSION 1
#define KR_SNAP_META_MAX (64u * 1024)
#define KR_SNAP_SUMS_MAX 4096u
/* No state is larger: a raft snapshot frame holds at most 2 GiB. */
#define KR_SNAP_STATE_MAX 0x7fffffffull
#define KR_SNAP_SERVERS_MAX 64
#define KR_SNAP_ID_MAX 96
/* The gzip level the writer uses: 0, stored blocks.  state.bin is
 * mostly AES-GCM ciphertext, which deflate cannot shrink: on 256-byte
 * Variables level 1 saved 24% of the bytes and took 3x as long as
 * storing (docs/operations.md "Benchmark").  An archive recompressed
 * with any gzip reads the same. */
#define KR_SNAP_GZIP_LEVEL 0

struct kr_snap_server {
    char id[32];
    char address[256];
    bool voter;
};

struct kr_snap_meta {
    int version;
    char id[KR_SNAP_ID_MAX]; /* "<term>-<index>-<unix ms>" */
    uint64_t index;
    uint64_t term;
    int64_t created_ms; /* from the ID */
    uint64_t size;      /* length of state.bin */
    size_t n_servers;
    struct kr_snap_server servers[KR_SNAP_SERVERS_MAX];
};

/* Sets version, the ID and created_ms from index, term and now_ms;
 * size and servers are left to the caller. */
void kr_snap_meta_init(struct kr_snap_meta *m, uint64_t index, uint64_t term,
                       int64_t now_ms);

/* meta.json's object (a new reference). */
json_t *kr_snap_meta_json(const struct kr_snap_meta *m);

/* ---- writing ---- */

/* Receives the archive's bytes in order.  Returns 0, or a kr_err that
 * stops the writer (errmsg, KR_ERRMSG_SIZE, may say why). */
typedef int (*kr_snap_out_fn)(void *arg, const void *p, size_t n, char *errmsg);

struct kr_snap_writer;

/* Returns 0 or a kr_err with errmsg set.  out and arg are borrowed. */
int kr_snap_writer_new(struct kr_snap_writer **out, kr_snap_out_fn fn,
                       void *arg, char *errmsg);
/* Writes meta.json, then the header of a state.bin of meta->size bytes. */
int kr_snap_writer_begin(struct kr_snap_writer *w,
                         const struct kr_snap_meta *meta, char *errmsg);
/* The next n bytes of state.bin. */
int kr_snap_writer_data(struct kr_snap_writer *w, const void *p, size_t n,
                        char *errmsg);
/* After exactly meta->size bytes: SHA256SUMS and the end of the archive;
 * every byte has gone to the callback when this returns 0. */
int kr_snap_writer_finish(struct kr_snap_writer *w, char *errmsg);
/* NULL is a no-op. */
void kr_snap_writer_free(struct kr_snap_writer *w);
/*
 * A second writing of the same state.bin need not hash it again: before
 * the first kr_snap_writer_data, _state_sum gives the writer its SHA-256
 * (from _state_sum_get of an earlier writer, after its finish), which
 * goes to SHA256SUMS unchecked: whoever passes it answers for the bytes
 * (the HTTP save's Digest covers them).
 */
void kr_snap_writer_state_sum(struct kr_snap_writer *w,
                              const uint8_t sum[KR_SHA256_LEN]);
void kr_snap_writer_state_sum_get(const struct kr_snap_writer *w,
                                  uint8_t out[KR_SHA256_LEN]);
/* Before the first kr_snap_writer_data: state.bin is hashed on a thread
 * of the writer's own (kr_sha256_bg), beside the caller's encoding,
 * instead of on the caller's.  Returns 0 or a kr_err with errmsg. */
int kr_snap_writer_hash_aside(struct kr_snap_writer *w, char *errmsg);

/* ---- reading ---- */

struct kr_snap_reader;

/* Opens an archive held in memory (p[0..n), borrowed until the reader is
 * freed) or read from fd (borrowed, not closed), and reads it up to the
 * start of state.bin: meta.json is parsed and checked. */
int kr_snap_reader_open_mem(struct kr_snap_reader **out, const void *p,
                            size_t n, char *errmsg);
int kr_snap_reader_open_fd(struct kr_snap_reader **out, int fd, char *errmsg);
/* NULL is a no-op. */
void kr_snap_reader_free(struct kr_snap_reader *r);
/* Borrowed for the reader's life. */
const struct kr_snap_meta *kr_snap_reader_meta(const struct kr_snap_reader *r);
/* The bytes of input the archive took up so far: after the last read,
 * its length.  A reader of memory or of a regular file refuses bytes
 * after the gzip stream itself; one of a pipe cannot know its input's
 * length, so its caller compares this with what it fed.  The reader's
 * thread. */
uint64_t kr_snap_reader_consumed(const struct kr_snap_reader *r);
/*
 * Reads up to cap bytes of state.bin into buf.  *n == 0 means state.bin
 * is complete and the rest of the archive checked: SHA256SUMS matches
 * both members and nothing follows.  Returns 0 or a kr_err with errmsg.
 */
int kr_snap_reader_read(struct kr_snap_reader *r, void *buf, size_t cap,
                        size_t *n, char *errmsg);

/* ---- whole-archive operations ---- */

/* What inspect prints: the metadata and, per record type of state.bin,
 * the count and bytes; the root keys with how many are redacted. */
struct kr_snap_info {
    struct kr_snap_meta meta;
    uint64_t count[256];
    uint64_t bytes[256];
    size_t n_keys;
    size_t n_redacted;
};

/*
 * Reads all of r, checking state.bin record by record as a restore
 * would (kr_state_loader), and fills *info (may be NULL: validation
 * only).  Returns 0 or KR_EINVAL/KR_EIO/KR_ENOMEM with errmsg set.
 */
int kr_snap_check(struct kr_snap_reader *r, struct kr_snap_info *info,
                  char *errmsg);

/*
 * Reads all of r and writes its redacted copy to w's callback (w is new,
 * begin not called): every root key loses its wrapped DEK and RSA blobs
 * and its KEK and is marked redacted; meta.json keeps every field but
 * Size; the checksums are new.  The input is checked fully (a failure
 * means the output must be thrown away).  Returns 0 or a kr_err.
 */
int kr_snap_redact(struct kr_snap_reader *r, struct kr_snap_writer *w,
                   char *errmsg);

#endif
