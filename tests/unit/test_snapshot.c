/*
 * Unit tests for the snapshot archive: a written archive reads back
 * (from memory and from a file) with its metadata and exactly the
 * state.bin it was given, is a plain gzip'd tar of the three members in
 * order, and every bad archive is refused with its reason: empty,
 * truncated anywhere, not gzip, a changed member (checksum), an extra,
 * missing or misplaced member, another version, a size that disagrees
 * with meta.json, a member larger than allowed (the gzip bomb), a bad
 * SHA256SUMS.  Redaction leaves no wrapped material and no KEK, keeps the
 * metadata, and its output checks and inspects as a valid archive.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/err.h"
#include "crypto/hash.h"
#include "snapshot/archive.h"
#include "state/codec.h"
#include "state/state.h"

static uint64_t next_index;

static void make_id(char out[KR_UUID_LEN + 1], int n)
{
    snprintf(out, KR_UUID_LEN + 1, "00000000-0000-4000-8000-%012d", n);
}

static void apply(struct kr_state *s, const struct kr_entry *e)
{
    struct kr_buf b;

    kr_buf_init(&b);
    assert_int_equal(kr_entry_encode(e, &b), 0);
    assert_int_equal(kr_state_apply(s, ++next_index, b.data, b.len), 0);
    kr_buf_free(&b);
}

/* The KEK of key n is 32 bytes of 0xc0 + n; its DEK blob 0xd0 + n. */
static void upsert(struct kr_state *s, int n, enum kr_key_state st)
{
    struct kr_entry e;
    struct kr_root_key *k = &e.key_upsert.key;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_UPSERT;
    make_id(k->key_id, n);
    strcpy(k->algorithm, KR_ALGORITHM_AES256GCM);
    k->state = st;
    k->wrapped = calloc(1, sizeof(*k->wrapped));
    k->n_wrapped = 1;
    k->wrapped[0].provider = strdup("aead");
    k->wrapped[0].provider_id = strdup("aead");
    k->wrapped[0].dek.ciphertext = malloc(60);
    memset(k->wrapped[0].dek.ciphertext, 0xd0 + n, 60);
    k->wrapped[0].dek.ciphertext_len = 60;
    k->wrapped[0].dek.key_id = strdup(k->key_id);
    k->wrapped[0].rsa.ciphertext = malloc(200);
    memset(k->wrapped[0].rsa.ciphertext, 0xd0 + n, 200);
    k->wrapped[0].rsa.ciphertext_len = 200;
    k->wrapped[0].rsa.key_id = strdup(k->key_id);
    k->wrapped[0].kek = kr_secret_new(32);
    memset(k->wrapped[0].kek->data, 0xc0 + n, 32);
    apply(s, &e);
    kr_entry_clear(&e);
}

static void put(struct kr_state *s, const char *path, int key)
{
    struct kr_entry e;
    uint8_t data[64];

    memset(&e, 0, sizeof(e));
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + (uint8_t)strlen(path));
    e.type = KR_ENTRY_VAR_APPLY;
    e.var.op = KR_VAR_SET;
    e.var.namespace = "default";
    e.var.path = (char *)path;
    make_id(e.var.key_id, key);
    e.var.data = data;
    e.var.data_len = sizeof(data);
    e.var.now = 77;
    apply(s, &e);
}

static struct kr_state *make_state(void)
{
    struct kr_state *s;
    char path[32];

    assert_int_equal(kr_state_new(&s), 0);
    upsert(s, 1, KR_KEY_ACTIVE);
    for (int i = 0; i < 500; i++) {
        snprintf(path, sizeof(path), "svc/%04d", i);
        put(s, path, 1);
    }
    upsert(s, 2, KR_KEY_ACTIVE);
    put(s, "zzz", 2);
    return s;
}

static int to_buf(void *arg, const void *p, size_t n, char *errmsg)
{
    (void)errmsg;
    kr_buf_append(arg, p, n);
    return ((struct kr_buf *)arg)->oom ? KR_ENOMEM : 0;
}

/* An archive of s, its state.bin in *bin; with given, the writer is
 * told state.bin's SHA-256 instead of hashing it; got (may be NULL)
 * receives the one it used. */
static void make_archive_sum(struct kr_state *s, struct kr_buf *out,
                             struct kr_buf *bin, const uint8_t *given,
                             uint8_t *got)
{
    struct kr_snap_writer *w;
    struct kr_snap_meta m;
    char err[KR_ERRMSG_SIZE];

    kr_buf_init(bin);
    kr_buf_init(out);
    assert_int_equal(kr_state_save(s, bin), 0);
    kr_snap_meta_init(&m, 1234, 7, 1700000000123);
    m.size = bin->len;
    m.n_servers = 2;
    strcpy(m.servers[0].id, "11");
    strcpy(m.servers[0].address, "127.0.0.1:4657");
    m.servers[0].voter = true;
    strcpy(m.servers[1].id, "22");
    strcpy(m.servers[1].address, "127.0.0.1:4667");
    assert_int_equal(kr_snap_writer_new(&w, to_buf, out, err), 0);
    if (given != NULL)
        kr_snap_writer_state_sum(w, given);
    assert_int_equal(kr_snap_writer_begin(w, &m, err), 0);
    /* In odd pieces, as the server streams it. */
    for (size_t off = 0; off < bin->len; off += 4099) {
        size_t n = bin->len - off < 4099 ? bin->len - off : 4099;
        assert_int_equal(kr_snap_writer_data(w, bin->data + off, n, err), 0);
    }
    assert_int_equal(kr_snap_writer_finish(w, err), 0);
    if (got != NULL)
        kr_snap_writer_state_sum_get(w, got);
    kr_snap_writer_free(w);
}

static void make_archive(struct kr_state *s, struct kr_buf *out,
                         struct kr_buf *bin)
{
    make_archive_sum(s, out, bin, NULL, NULL);
}

/* Reads all of state.bin; returns the reader's verdict. */
static int read_all(struct kr_snap_reader *r, struct kr_buf *bin, char *err)
{
    uint8_t buf[3000];
    size_t n;
    int rv;

    do {
        rv = kr_snap_reader_read(r, buf, sizeof(buf), &n, err);
        if (rv == 0)
            kr_buf_append(bin, buf, n);
    } while (rv == 0 && n > 0);
    return rv;
}

/* Opens and checks an archive in memory: 0 or the failure, err says. */
static int check(const void *p, size_t n, char *err)
{
    struct kr_snap_reader *r = NULL;
    int rv = kr_snap_reader_open_mem(&r, p, n, err);

    if (rv == 0)
        rv = kr_snap_check(r, NULL, err);
    kr_snap_reader_free(r);
    return rv;
}

struct member {
    const char *name;
    const void *data;
    size_t len;
    int64_t declared; /* -1: len */
};

/* A gzip'd (or plain) ustar archive of the given members. */
static void craft(struct kr_buf *out, const struct member *m, size_t n,
                  bool gzip)
{
    struct archive *a = archive_write_new();
    size_t used = 0;

    kr_buf_init(out);
    assert_int_equal(kr_buf_reserve(out, 1 << 22), 0);
    if (gzip)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_format_ustar(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, out->data, out->cap, &used),
                     ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_size(e, (la_int64_t)m[i].len);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0600);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, m[i].data, m[i].len),
                         (la_ssize_t)m[i].len);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    out->len = used;
}

/* gzip of raw bytes (a hand-made tar). */
static void gzip_raw(struct kr_buf *out, const void *p, size_t n)
{
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    size_t used = 0;

    kr_buf_init(out);
    assert_int_equal(kr_buf_reserve(out, n + 4096), 0);
    assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
    assert_int_equal(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, out->data, out->cap, &used),
                     ARCHIVE_OK);
    archive_entry_set_pathname(e, "raw");
    archive_entry_set_filetype(e, AE_IFREG);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, p, n), (la_ssize_t)n);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    out->len = used;
}

/* The three members of a valid archive for bin, with meta version v. */
static void members_for(const struct kr_buf *bin, int v, char *meta, size_t cap,
                        char *sums, struct member m[3])
{
    uint8_t d[KR_SHA256_LEN];
    char hm[KR_SHA256_HEX_LEN], hs[KR_SHA256_HEX_LEN];

    snprintf(meta, cap,
             "{\"Version\":%d,\"ID\":\"7-1234-1700000000123\",\"Index\":1234,"
             "\"Term\":7,\"Configuration\":{\"Servers\":[]},\"Size\":%zu}",
             v, bin->len);
    assert_int_equal(kr_sha256(meta, strlen(meta), d), 0);
    kr_sha256_hex(d, hm);
    assert_int_equal(kr_sha256(bin->data, bin->len, d), 0);
    kr_sha256_hex(d, hs);
    sprintf(sums, "%s  state.bin\n%s  meta.json\n", hs, hm);
    m[0] = (struct member){"meta.json", meta, strlen(meta), -1};
    m[1] = (struct member){"state.bin", bin->data, bin->len, -1};
    m[2] = (struct member){"SHA256SUMS", sums, strlen(sums), -1};
}

static void test_round_trip(void **state)
{
    struct kr_state *s = make_state();
    struct kr_buf ar, bin, back;
    struct kr_snap_reader *r;
    const struct kr_snap_meta *m;
    char err[KR_ERRMSG_SIZE], path[] = "/tmp/kr-snap-test-XXXXXX";
    struct kr_snap_info info;
    int fd;

    (void)state;
    make_archive(s, &ar, &bin);
    /* gzip, no mtime in its header: the same state gives the same bytes. */
    assert_int_equal(ar.data[0], 0x1f);
    assert_int_equal(ar.data[1], 0x8b);
    assert_int_equal(ar.data[4] | ar.data[5] | ar.data[6] | ar.data[7], 0);
    /* Stored blocks: state.bin plus the tar and gzip framing. */
    assert_true(ar.len > bin.len && ar.len < bin.len + 8192);

    assert_int_equal(kr_snap_reader_open_mem(&r, ar.data, ar.len, err), 0);
    m = kr_snap_reader_meta(r);
    assert_int_equal(m->version, 1);
    assert_string_equal(m->id, "7-1234-1700000000123");
    assert_int_equal(m->index, 1234);
    assert_int_equal(m->term, 7);
    assert_int_equal(m->created_ms, 1700000000123);
    assert_int_equal(m->size, bin.len);
    assert_int_equal(m->n_servers, 2);
    assert_string_equal(m->servers[1].address, "127.0.0.1:4667");
    assert_true(m->servers[0].voter);
    assert_false(m->servers[1].voter);
    kr_buf_init(&back);
    assert_int_equal(read_all(r, &back, err), 0);
    assert_int_equal(back.len, bin.len);
    assert_memory_equal(back.data, bin.data, bin.len);
    kr_snap_reader_free(r);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, ar.data, ar.len), (ssize_t)ar.len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(kr_snap_reader_open_fd(&r, fd, err), 0);
    assert_int_equal(kr_snap_check(r, &info, err), 0);
    assert_int_equal(info.count[KR_SNAP_REC_VAR], 501);
    assert_int_equal(info.count[KR_SNAP_REC_ROOT_KEY], 2);
    assert_int_equal(info.n_keys, 2);
    assert_int_equal(info.n_redacted, 0);
    assert_true(info.bytes[KR_SNAP_REC_VAR] > 501 * 64);
    kr_snap_reader_free(r);
    close(fd);

    kr_buf_free(&back);
    kr_buf_free(&ar);
    kr_buf_free(&bin);
    kr_state_free(s);
}

/* A second writing told state.bin's SHA-256 by the first (as a save's
 * streaming pass is) gives the same bytes; told a wrong one, it writes
 * it unchecked, and the reader refuses the archive. */
static void test_known_state_sum(void **state)
{
    struct kr_state *s = make_state();
    struct kr_buf a, b, c, bin;
    uint8_t sum[KR_SHA256_LEN], want[KR_SHA256_LEN], zero[KR_SHA256_LEN];
    char err[KR_ERRMSG_SIZE];

    (void)state;
    make_archive_sum(s, &a, &bin, NULL, sum);
    assert_int_equal(kr_sha256(bin.data, bin.len, want), 0);
    assert_memory_equal(sum, want, KR_SHA256_LEN);
    kr_buf_free(&bin);
    make_archive_sum(s, &b, &bin, sum, NULL);
    assert_int_equal(b.len, a.len);
    assert_memory_equal(b.data, a.data, a.len);
    kr_buf_free(&bin);
    memset(zero, 0, sizeof(zero));
    make_archive_sum(s, &c, &bin, zero, NULL);
    assert_int_equal(c.len, a.len);
    assert_memory_not_equal(c.data, a.data, a.len);
    assert_int_not_equal(check(c.data, c.len, err), 0);
    assert_non_null(strstr(err, "state.bin"));
    assert_int_equal(check(a.data, a.len, err), 0);
    kr_buf_free(&a);
    kr_buf_free(&b);
    kr_buf_free(&c);
    kr_buf_free(&bin);
    kr_state_free(s);
}

/* The members as written: names, order, mode 0600, the mtime. */
static void test_layout(void **state)
{
    static const char *const names[] = {"meta.json", "state.bin", "SHA256SUMS"};
    struct kr_state *s = make_state();
    struct kr_buf ar, bin;
    struct archive *a = archive_read_new();
    struct archive_entry *e;

    (void)state;
    make_archive(s, &ar, &bin);
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_memory(a, ar.data, ar.len), ARCHIVE_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(archive_read_next_header(a, &e), ARCHIVE_OK);
        assert_string_equal(archive_entry_pathname(e), names[i]);
        assert_int_equal(archive_entry_perm(e), 0600);
        assert_int_equal(archive_entry_mtime(e), 1700000000);
    }
    assert_int_equal(archive_read_next_header(a, &e), ARCHIVE_EOF);
    archive_read_free(a);
    kr_buf_free(&ar);
    kr_buf_free(&bin);
    kr_state_free(s);
}

static void expect(int rv, const char *err, const char *what)
{
    if (rv == 0 || strstr(err, what) == NULL)
        fail_msg("want an error with \"%s\", got %d \"%s\"", what, rv, err);
}

static void test_bad_archives(void **state)
{
    struct kr_state *s = make_state();
    struct kr_buf ar, bin, bad, tar;
    struct member m[4];
    char err[KR_ERRMSG_SIZE], meta[512], sums[256];

    (void)state;
    make_archive(s, &ar, &bin);
    assert_int_equal(check(ar.data, ar.len, err), 0);

    expect(check(ar.data, 0, err), err, "empty");
    /* Cut anywhere. */
    for (size_t n = 1; n < ar.len; n += ar.len / 97 + 1)
        assert_int_equal(check(ar.data, n, err), KR_EINVAL);
    expect(check(ar.data, ar.len / 2, err), err, "invalid snapshot archive");
    /* Junk. */
    expect(check("hello, world", 12, err), err, "invalid snapshot archive");

    /* A member changed after SHA256SUMS was made. */
    members_for(&bin, 1, meta, sizeof(meta), sums, m);
    craft(&bad, m, 3, true);
    assert_int_equal(check(bad.data, bad.len, err), 0);
    kr_buf_free(&bad);
    bin.data[bin.len - 20] ^= 1;
    craft(&bad, m, 3, true);
    expect(check(bad.data, bad.len, err), err,
           "state.bin does not match its checksum");
    kr_buf_free(&bad);
    bin.data[bin.len - 20] ^= 1;

    /* An extra member, at the end or in the middle; a missing one;
     * misplaced ones. */
    m[3] = (struct member){"extra.txt", "hi", 2, -1};
    craft(&bad, m, 4, true);
    expect(check(bad.data, bad.len, err), err, "unexpected file \"extra.txt\"");
    kr_buf_free(&bad);
    {
        struct member mid[4] = {m[0], m[3], m[1], m[2]};
        craft(&bad, mid, 4, true);
        expect(check(bad.data, bad.len, err), err, "unexpected file");
        kr_buf_free(&bad);
    }
    craft(&bad, m, 2, true);
    expect(check(bad.data, bad.len, err), err, "SHA256SUMS is missing");
    kr_buf_free(&bad);
    {
        struct member swapped[3] = {m[1], m[0], m[2]};
        craft(&bad, swapped, 3, true);
        expect(check(bad.data, bad.len, err), err, "in that order");
        kr_buf_free(&bad);
    }
    /* Not compressed. */
    craft(&bad, m, 3, false);
    expect(check(bad.data, bad.len, err), err, "not gzip-compressed");
    kr_buf_free(&bad);

    /* Another version: refused before anything else is looked at. */
    members_for(&bin, 2, meta, sizeof(meta), sums, m);
    craft(&bad, m, 3, true);
    expect(check(bad.data, bad.len, err), err,
           "snapshot archive version 2 is not supported");
    kr_buf_free(&bad);

    /* Size disagrees with meta.json. */
    members_for(&bin, 1, meta, sizeof(meta), sums, m);
    m[1].len--;
    craft(&bad, m, 3, true);
    expect(check(bad.data, bad.len, err), err, "but meta.json says");
    kr_buf_free(&bad);
    m[1].len++;

    /* SHA256SUMS that lacks a line, or lists a stranger. */
    {
        char one[200];
        snprintf(one, sizeof(one), "%.*s", 64 + 2 + 9 + 1, sums);
        m[2] = (struct member){"SHA256SUMS", one, strlen(one), -1};
        craft(&bad, m, 3, true);
        expect(check(bad.data, bad.len, err), err,
               "SHA256SUMS has no checksum for meta.json");
        kr_buf_free(&bad);
        snprintf(one, sizeof(one), "%.64s  other.bin\n", sums);
        m[2].len = strlen(one);
        craft(&bad, m, 3, true);
        expect(check(bad.data, bad.len, err), err, "which is not in");
        kr_buf_free(&bad);
    }

    /* A valid archive whose state.bin is not a state. */
    {
        struct kr_buf junk;
        kr_buf_init(&junk);
        kr_buf_append(&junk, "KRST\x01garbage!", 13);
        members_for(&junk, 1, meta, sizeof(meta), sums, m);
        craft(&bad, m, 3, true);
        expect(check(bad.data, bad.len, err), err,
               "invalid snapshot archive: state.bin");
        kr_buf_free(&bad);
        kr_buf_free(&junk);
    }

    /* The gzip bomb: a tar header that declares a state.bin of 4 GiB
     * (octal 40000000000) after a 20 KiB gzip stream of zeros.  Refused
     * at the header, before a byte of it is read. */
    members_for(&bin, 1, meta, sizeof(meta), sums, m);
    craft(&tar, m, 1, false);
    {
        uint8_t hdr[512];
        unsigned sum = 0;
        size_t zeros = 16u << 20;
        memset(hdr, 0, sizeof(hdr));
        strcpy((char *)hdr, "state.bin");
        strcpy((char *)hdr + 100, "0000600");
        strcpy((char *)hdr + 124, "40000000000");
        strcpy((char *)hdr + 136, "00000000000");
        hdr[156] = '0';
        memcpy(hdr + 257,
               "ustar\0"
               "00",
               8);
        memset(hdr + 148, ' ', 8);
        for (int i = 0; i < 512; i++)
            sum += hdr[i];
        snprintf((char *)hdr + 148, 8, "%06o", sum);
        /* meta.json (its header, data, padding) as crafted, minus the
         * end blocks, then the bomb. */
        tar.len = 512 + ((m[0].len + 511) / 512) * 512;
        kr_buf_append(&tar, hdr, sizeof(hdr));
        assert_int_equal(kr_buf_reserve(&tar, zeros), 0);
        memset(tar.data + tar.len, 0, zeros);
        tar.len += zeros;
        gzip_raw(&bad, tar.data, tar.len);
        assert_true(bad.len < zeros / 100);
        expect(check(bad.data, bad.len, err), err,
               "state.bin is 4294967296 bytes, more than");
        kr_buf_free(&bad);
    }
    kr_buf_free(&tar);
    kr_buf_free(&ar);
    kr_buf_free(&bin);
    kr_state_free(s);
}

/* Redaction: no KEK, no DEK or RSA blob, keys kept and marked, the
 * Variables untouched; the result is a valid archive. */
static void test_redact(void **state)
{
    struct kr_state *s = make_state();
    struct kr_buf ar, bin, red, back;
    struct kr_snap_reader *r;
    struct kr_snap_writer *w;
    struct kr_snap_info info;
    char err[KR_ERRMSG_SIZE];
    uint8_t pat[32];

    (void)state;
    make_archive(s, &ar, &bin);
    kr_buf_init(&red);
    assert_int_equal(kr_snap_reader_open_mem(&r, ar.data, ar.len, err), 0);
    assert_int_equal(kr_snap_writer_new(&w, to_buf, &red, err), 0);
    assert_int_equal(kr_snap_redact(r, w, err), 0);
    kr_snap_writer_free(w);
    kr_snap_reader_free(r);

    assert_int_equal(kr_snap_reader_open_mem(&r, red.data, red.len, err), 0);
    assert_string_equal(kr_snap_reader_meta(r)->id, "7-1234-1700000000123");
    assert_int_equal(kr_snap_reader_meta(r)->n_servers, 2);
    kr_buf_init(&back);
    assert_int_equal(read_all(r, &back, err), 0);
    assert_int_equal(kr_snap_reader_meta(r)->size, back.len);
    kr_snap_reader_free(r);
    for (int k = 1; k <= 2; k++) {
        for (int which = 0; which < 2; which++) {
            memset(pat, which ? 0xd0 + k : 0xc0 + k, sizeof(pat));
            assert_non_null(memmem(bin.data, bin.len, pat, sizeof(pat)));
            assert_null(memmem(back.data, back.len, pat, sizeof(pat)));
        }
    }
    assert_int_equal(kr_snap_reader_open_mem(&r, red.data, red.len, err), 0);
    assert_int_equal(kr_snap_check(r, &info, err), 0);
    assert_int_equal(info.n_keys, 2);
    assert_int_equal(info.n_redacted, 2);
    assert_int_equal(info.count[KR_SNAP_REC_VAR], 501);
    kr_snap_reader_free(r);

    /* A damaged input fails the redaction. */
    red.len = 0;
    assert_int_equal(kr_snap_reader_open_mem(&r, ar.data, ar.len - 30, err), 0);
    assert_int_equal(kr_snap_writer_new(&w, to_buf, &red, err), 0);
    assert_int_equal(kr_snap_redact(r, w, err), KR_EINVAL);
    kr_snap_writer_free(w);
    kr_snap_reader_free(r);

    kr_buf_free(&back);
    kr_buf_free(&red);
    kr_buf_free(&ar);
    kr_buf_free(&bin);
    kr_state_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_known_state_sum),
        cmocka_unit_test(test_bad_archives),
        cmocka_unit_test(test_redact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
