/*
 * libFuzzer target: the snapshot archive reader (kr_snap_reader_*,
 * kr_snap_check, kr_snap_redact).  Arbitrary bytes must be refused
 * without crashing, leaking or reading out of bounds.
 *
 * Random bytes rarely get past gzip and tar, so the first byte picks a
 * mode: odd, the rest is the archive as is; even, the rest is split into
 * meta.json (its length in the next two bytes) and state.bin, which the
 * harness packs into a gzip'd tar with a correct SHA256SUMS (or, when
 * bit 1 is set, the remaining bytes' own SHA256SUMS) so the fuzzer
 * reaches the meta.json, checksum and state.bin checks.  An archive that
 * checks must redact into an archive that checks, with every key
 * redacted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/err.h"
#include "crypto/hash.h"
#include "snapshot/archive.h"

static int to_buf(void *arg, const void *p, size_t n, char *errmsg)
{
    (void)errmsg;
    kr_buf_append(arg, p, n);
    return ((struct kr_buf *)arg)->oom ? KR_ENOMEM : 0;
}

static void add(struct archive *a, const char *name, const void *p, size_t n)
{
    struct archive_entry *e = archive_entry_new();

    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)n);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    archive_write_header(a, e);
    archive_write_data(a, p, n);
    archive_entry_free(e);
}

/* meta.json, state.bin and SHA256SUMS as a gzip'd tar in out. */
static void pack(struct kr_buf *out, const uint8_t *meta, size_t mlen,
                 const uint8_t *state, size_t slen, bool own_sums)
{
    struct archive *a = archive_write_new();
    uint8_t d[KR_SHA256_LEN];
    char hm[KR_SHA256_HEX_LEN], hs[KR_SHA256_HEX_LEN], sums[200];
    size_t used = 0;

    kr_sha256(meta, mlen, d);
    kr_sha256_hex(d, hm);
    kr_sha256(state, slen, d);
    kr_sha256_hex(d, hs);
    snprintf(sums, sizeof(sums), "%s  meta.json\n%s  state.bin\n", hm, hs);
    kr_buf_reserve(out, mlen + slen + 64 * 1024);
    archive_write_add_filter_gzip(a);
    archive_write_set_format_ustar(a);
    archive_write_set_bytes_in_last_block(a, 1);
    archive_write_open_memory(a, out->data, out->cap, &used);
    add(a, "meta.json", meta, mlen);
    if (own_sums && slen > 10) {
        add(a, "state.bin", state, slen - 10);
        add(a, "SHA256SUMS", state + slen - 10, 10);
    } else {
        add(a, "state.bin", state, slen);
        add(a, "SHA256SUMS", sums, strlen(sums));
    }
    archive_write_close(a);
    archive_write_free(a);
    out->len = used;
}

static int check(const void *p, size_t n, struct kr_snap_info *info)
{
    struct kr_snap_reader *r = NULL;
    char err[KR_ERRMSG_SIZE];
    int rv = kr_snap_reader_open_mem(&r, p, n, err);

    if (rv == 0)
        rv = kr_snap_check(r, info, err);
    kr_snap_reader_free(r);
    return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kr_buf ar, red;
    struct kr_snap_reader *r = NULL;
    struct kr_snap_writer *w = NULL;
    struct kr_snap_info *info = malloc(sizeof(*info));
    char err[KR_ERRMSG_SIZE];

    if (size < 1 || info == NULL) {
        free(info);
        return 0;
    }
    kr_buf_init(&ar);
    kr_buf_init(&red);
    if (data[0] & 1) {
        kr_buf_append(&ar, data + 1, size - 1);
    } else if (size >= 3) {
        size_t mlen = (size_t)data[1] | (size_t)data[2] << 8;
        if (mlen > size - 3)
            mlen = size - 3;
        pack(&ar, data + 3, mlen, data + 3 + mlen, size - 3 - mlen,
             (data[0] & 2) != 0);
    }
    if (ar.len > 0 && check(ar.data, ar.len, info) == 0) {
        if (kr_snap_reader_open_mem(&r, ar.data, ar.len, err) != 0 ||
            kr_snap_writer_new(&w, to_buf, &red, err) != 0 ||
            kr_snap_redact(r, w, err) != 0)
            abort();
        if (check(red.data, red.len, info) != 0 ||
            info->n_redacted != info->n_keys)
            abort();
    }
    kr_snap_writer_free(w);
    kr_snap_reader_free(r);
    kr_buf_free(&ar);
    kr_buf_free(&red);
    free(info);
    return 0;
}
