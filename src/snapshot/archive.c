/*
 * See archive.h.  libarchive does the tar and the gzip; this file decides
 * what a valid archive is.  The writer uses ustar (state.bin is below its
 * 8 GiB member limit) with no padding of the last block, so the archive
 * ends where the gzip stream does.
 */
#include "snapshot/archive.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/err.h"
#include "crypto/hash.h"

#define NAME_META "meta.json"
#define NAME_STATE "state.bin"
#define NAME_SUMS "SHA256SUMS"
#define READ_BLOCK (1u << 20)

void kr_snap_meta_init(struct kr_snap_meta *m, uint64_t index, uint64_t term,
                       int64_t now_ms)
{
    memset(m, 0, sizeof(*m));
    m->version = KR_SNAP_VERSION;
    m->index = index;
    m->term = term;
    m->created_ms = now_ms;
    snprintf(m->id, sizeof(m->id), "%" PRIu64 "-%" PRIu64 "-%" PRId64, term,
             index, now_ms);
}

json_t *kr_snap_meta_json(const struct kr_snap_meta *m)
{
    json_t *servers = json_array();

    for (size_t i = 0; i < m->n_servers; i++)
        json_array_append_new(
            servers,
            json_pack("{s:s, s:s, s:s}", "Suffrage",
                      m->servers[i].voter ? "Voter" : "Nonvoter", "ID",
                      m->servers[i].id, "Address", m->servers[i].address));
    return json_pack("{s:i, s:s, s:I, s:I, s:{s:o}, s:I}", "Version",
                     m->version, "ID", m->id, "Index", (json_int_t)m->index,
                     "Term", (json_int_t)m->term, "Configuration", "Servers",
                     servers, "Size", (json_int_t)m->size);
}

/* ---- writer ---- */

struct kr_snap_writer {
    struct archive *a;
    kr_snap_out_fn fn;
    void *arg;
    int out_err; /* what the callback returned */
    char out_msg[KR_ERRMSG_SIZE];
    struct kr_sha256 *sha;
    struct kr_sha256_bg *sha_bg; /* instead of sha: kr_snap_writer_hash_aside */
    char meta_hex[KR_SHA256_HEX_LEN];
    uint8_t state_sum[KR_SHA256_LEN]; /* after finish, or given */
    bool sum_given;
    int64_t mtime;
    uint64_t size, written;
    bool begun;
};

static la_ssize_t w_write(struct archive *a, void *arg, const void *buf,
                          size_t n)
{
    struct kr_snap_writer *w = arg;
    int rv;

    (void)a;
    rv = w->fn(w->arg, buf, n, w->out_msg);
    if (rv != 0) {
        w->out_err = rv;
        return -1;
    }
    return (la_ssize_t)n;
}

/* The error of a failed libarchive write call. */
static int w_fail(struct kr_snap_writer *w, char *errmsg, const char *what)
{
    if (w->out_err != 0)
        return kr_errf(errmsg, w->out_err, "%s",
                       w->out_msg[0] ? w->out_msg : kr_strerror(w->out_err));
    return kr_errf(errmsg, KR_EIO, "writing snapshot archive (%s): %s", what,
                   archive_error_string(w->a) ? archive_error_string(w->a)
                                              : "unknown error");
}

int kr_snap_writer_new(struct kr_snap_writer **out, kr_snap_out_fn fn,
                       void *arg, char *errmsg)
{
    struct kr_snap_writer *w = calloc(1, sizeof(*w));
    char level[8];
    int rv = KR_ENOMEM;

    if (w == NULL || kr_sha256_new(&w->sha) != 0)
        goto oom;
    w->fn = fn;
    w->arg = arg;
    w->a = archive_write_new();
    if (w->a == NULL)
        goto oom;
    snprintf(level, sizeof(level), "%d", KR_SNAP_GZIP_LEVEL);
    if (archive_write_add_filter_gzip(w->a) != ARCHIVE_OK ||
        archive_write_set_filter_option(w->a, "gzip", "compression-level",
                                        level) != ARCHIVE_OK ||
        /* No time in the gzip header: one state, one archive. */
        archive_write_set_filter_option(w->a, "gzip", "timestamp", NULL) !=
            ARCHIVE_OK ||
        archive_write_set_format_ustar(w->a) != ARCHIVE_OK ||
        /* Unblocked: the gzip filter's output reaches the callback as it
         * is made, without a copy into a block of libarchive's (the copy
         * was 7% of a save's CPU time); no padding either way. */
        archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
        archive_write_open2(w->a, w, NULL, w_write, NULL, NULL) != ARCHIVE_OK) {
        rv = w_fail(w, errmsg, "setup");
        kr_snap_writer_free(w);
        return rv;
    }
    *out = w;
    return 0;
oom:
    kr_snap_writer_free(w);
    return kr_errf(errmsg, rv, "out of memory");
}

void kr_snap_writer_free(struct kr_snap_writer *w)
{
    if (w == NULL)
        return;
    if (w->a != NULL)
        archive_write_free(w->a);
    kr_sha256_free(w->sha);
    kr_sha256_bg_free(w->sha_bg);
    free(w);
}

static int add_member(struct kr_snap_writer *w, const char *name, uint64_t size,
                      char *errmsg)
{
    struct archive_entry *e = archive_entry_new();
    int rv = 0;

    if (e == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    archive_entry_set_mtime(e, w->mtime, 0);
    if (archive_write_header(w->a, e) != ARCHIVE_OK)
        rv = w_fail(w, errmsg, name);
    archive_entry_free(e);
    return rv;
}

static int write_all(struct kr_snap_writer *w, const void *p, size_t n,
                     const char *what, char *errmsg)
{
    const uint8_t *b = p;

    while (n > 0) {
        la_ssize_t k = archive_write_data(w->a, b, n);
        if (k <= 0)
            return w_fail(w, errmsg, what);
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

int kr_snap_writer_begin(struct kr_snap_writer *w,
                         const struct kr_snap_meta *meta, char *errmsg)
{
    json_t *j = kr_snap_meta_json(meta);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    uint8_t d[KR_SHA256_LEN];
    json_malloc_t jmalloc;
    json_free_t jfree;
    int rv;

    /* The text comes from jansson's allocator, which may not be malloc. */
    json_get_alloc_funcs(&jmalloc, &jfree);
    json_decref(j);
    if (text == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    w->mtime = meta->created_ms / 1000;
    w->size = meta->size;
    rv = kr_sha256(text, strlen(text), d);
    if (rv == 0)
        kr_sha256_hex(d, w->meta_hex);
    else
        kr_errf(errmsg, rv, "hashing meta.json");
    if (rv == 0)
        rv = add_member(w, NAME_META, strlen(text), errmsg);
    if (rv == 0)
        rv = write_all(w, text, strlen(text), NAME_META, errmsg);
    jfree(text);
    if (rv == 0)
        rv = add_member(w, NAME_STATE, meta->size, errmsg);
    w->begun = rv == 0;
    return rv;
}

int kr_snap_writer_data(struct kr_snap_writer *w, const void *p, size_t n,
                        char *errmsg)
{
    if (!w->begun || n > w->size - w->written)
        return kr_errf(errmsg, KR_EINVAL,
                       "state.bin is longer than the %" PRIu64
                       " bytes announced",
                       w->size);
    if (w->sha_bg != NULL && !w->sum_given)
        kr_sha256_bg_update(w->sha_bg, p, n);
    else if (!w->sum_given)
        kr_sha256_update(w->sha, p, n);
    w->written += n;
    return write_all(w, p, n, NAME_STATE, errmsg);
}

void kr_snap_writer_state_sum(struct kr_snap_writer *w,
                              const uint8_t sum[KR_SHA256_LEN])
{
    memcpy(w->state_sum, sum, KR_SHA256_LEN);
    w->sum_given = true;
}

int kr_snap_writer_hash_aside(struct kr_snap_writer *w, char *errmsg)
{
    int rv = 0;

    KR_BUG_ON(w->written != 0 || w->sum_given);
    if (w->sha_bg == NULL)
        rv = kr_sha256_bg_new(&w->sha_bg);
    if (rv != 0)
        kr_errf(errmsg, rv, "cannot start hashing state.bin");
    return rv;
}

void kr_snap_writer_state_sum_get(const struct kr_snap_writer *w,
                                  uint8_t out[KR_SHA256_LEN])
{
    memcpy(out, w->state_sum, KR_SHA256_LEN);
}

int kr_snap_writer_finish(struct kr_snap_writer *w, char *errmsg)
{
    char hex[KR_SHA256_HEX_LEN], sums[256];
    int rv, n;

    if (!w->begun || w->written != w->size)
        return kr_errf(errmsg, KR_EINVAL,
                       "state.bin has %" PRIu64 " of the %" PRIu64
                       " bytes announced",
                       w->written, w->size);
    if (!w->sum_given) {
        rv = w->sha_bg != NULL ? kr_sha256_bg_final(w->sha_bg, w->state_sum)
                               : kr_sha256_final(w->sha, w->state_sum);
        if (rv != 0)
            return kr_errf(errmsg, rv, "hashing state.bin");
    }
    kr_sha256_hex(w->state_sum, hex);
    n = snprintf(sums, sizeof(sums), "%s  %s\n%s  %s\n", w->meta_hex, NAME_META,
                 hex, NAME_STATE);
    rv = add_member(w, NAME_SUMS, (uint64_t)n, errmsg);
    if (rv == 0)
        rv = write_all(w, sums, (size_t)n, NAME_SUMS, errmsg);
    if (rv == 0 && archive_write_close(w->a) != ARCHIVE_OK)
        rv = w_fail(w, errmsg, "closing");
    w->begun = false;
    return rv;
}

/* ---- reader ---- */

struct kr_snap_reader {
    struct archive *a;
    struct kr_snap_meta meta;
    struct kr_sha256 *sha;
    uint8_t meta_sum[KR_SHA256_LEN];
    uint64_t left;  /* state.bin bytes still to read */
    uint64_t input; /* bytes the archive came in, or UINT64_MAX: unknown */
    bool done;
};

static int r_fail(struct kr_snap_reader *r, char *errmsg, const char *what)
{
    const char *why = archive_error_string(r->a);

    return kr_errf(errmsg, KR_EINVAL,
                   "invalid snapshot archive: %s%s%s (is the file truncated "
                   "or not a keyraft snapshot?)",
                   what, why ? ": " : "", why ? why : "");
}

/* The next member, which must be `want`, a regular file of at most max
 * bytes.  *size gets its size. */
static int next_member(struct kr_snap_reader *r, const char *want, uint64_t max,
                       uint64_t *size, char *errmsg)
{
    static const char *const order[] = {NAME_META, NAME_STATE, NAME_SUMS};
    struct archive_entry *e;
    const char *name;
    la_int64_t n;
    int rv = archive_read_next_header(r->a, &e);

    if (rv == ARCHIVE_EOF)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: %s is missing", want);
    if (rv != ARCHIVE_OK)
        return r_fail(r, errmsg, "cannot read the next member");
    /* Only gzip: with no other filter compiled in, anything else reads
     * as uncompressed or not at all. */
    if (archive_filter_code(r->a, 0) != ARCHIVE_FILTER_GZIP)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: not gzip-compressed");
    name = archive_entry_pathname(e);
    if (name == NULL || strcmp(name, want) != 0) {
        for (size_t i = 0; name != NULL && i < 3; i++)
            if (strcmp(name, order[i]) == 0)
                return kr_errf(errmsg, KR_EINVAL,
                               "invalid snapshot archive: %s where %s was "
                               "expected (the members must be meta.json, "
                               "state.bin, SHA256SUMS, in that order)",
                               name, want);
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: unexpected file \"%.100s\"",
                       name ? name : "");
    }
    if (archive_entry_filetype(e) != AE_IFREG)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: %s is not a regular file",
                       want);
    n = archive_entry_size(e);
    if (!archive_entry_size_is_set(e) || n < 0 || (uint64_t)n > max)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: %s is %lld bytes, more than "
                       "the %" PRIu64 " allowed",
                       want, (long long)n, max);
    *size = (uint64_t)n;
    return 0;
}

/* Reads a whole small member of `size` bytes into buf (size + 1). */
static int read_small(struct kr_snap_reader *r, const char *name, char *buf,
                      uint64_t size, char *errmsg)
{
    uint64_t got = 0;

    while (got < size) {
        la_ssize_t k = archive_read_data(r->a, buf + got, size - got);
        if (k < 0)
            return r_fail(r, errmsg, name);
        if (k == 0)
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid snapshot archive: %s is truncated", name);
        got += (uint64_t)k;
    }
    buf[size] = '\0';
    return 0;
}

static int meta_u64(json_t *j, const char *key, uint64_t *out, char *errmsg)
{
    json_t *v = json_object_get(j, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: meta.json has no valid "
                       "\"%s\"",
                       key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int meta_servers(json_t *j, struct kr_snap_meta *m, char *errmsg)
{
    json_t *servers =
        json_object_get(json_object_get(j, "Configuration"), "Servers");

    if (!json_is_array(servers) ||
        json_array_size(servers) > KR_SNAP_SERVERS_MAX)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: meta.json has no valid "
                       "Configuration.Servers");
    for (size_t i = 0; i < json_array_size(servers); i++) {
        json_t *s = json_array_get(servers, i);
        const char *id = json_string_value(json_object_get(s, "ID"));
        const char *addr = json_string_value(json_object_get(s, "Address"));
        const char *suf = json_string_value(json_object_get(s, "Suffrage"));
        struct kr_snap_server *o = &m->servers[i];

        if (id == NULL || addr == NULL || suf == NULL ||
            strlen(id) >= sizeof(o->id) || strlen(addr) >= sizeof(o->address))
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid snapshot archive: meta.json server %zu "
                           "is malformed",
                           i);
        snprintf(o->id, sizeof(o->id), "%s", id);
        snprintf(o->address, sizeof(o->address), "%s", addr);
        o->voter = strcmp(suf, "Voter") == 0;
    }
    m->n_servers = json_array_size(servers);
    return 0;
}

/* The ID must read "<term>-<index>-<unix ms>" and agree with Term and
 * Index; Created comes from it, as in Nomad's inspect. */
static int meta_id(const char *id, struct kr_snap_meta *m, char *errmsg)
{
    char again[KR_SNAP_ID_MAX];
    unsigned long long term, index;
    long long ms;

    if (strlen(id) >= sizeof(m->id) ||
        sscanf(id, "%llu-%llu-%lld", &term, &index, &ms) != 3 ||
        snprintf(again, sizeof(again), "%llu-%llu-%lld", term, index, ms) <=
            0 ||
        strcmp(again, id) != 0 || term != m->term || index != m->index)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: meta.json ID \"%.64s\" is "
                       "not <term>-<index>-<unix ms> of its Term and Index",
                       id);
    snprintf(m->id, sizeof(m->id), "%s", id);
    m->created_ms = ms;
    return 0;
}

static int parse_meta(const char *text, size_t len, struct kr_snap_meta *m,
                      char *errmsg)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *v;
    int rv = KR_EINVAL;

    memset(m, 0, sizeof(*m));
    if (!json_is_object(j)) {
        kr_errf(errmsg, rv,
                "invalid snapshot archive: meta.json is not a JSON object: "
                "%s",
                j == NULL ? jerr.text : "wrong type");
        goto out;
    }
    /* The version first: a newer format may differ in every other way. */
    v = json_object_get(j, "Version");
    if (!json_is_integer(v)) {
        kr_errf(errmsg, rv,
                "invalid snapshot archive: meta.json has no Version");
        goto out;
    }
    if (json_integer_value(v) != KR_SNAP_VERSION) {
        kr_errf(errmsg, rv,
                "snapshot archive version %lld is not supported (this build "
                "reads version %d)",
                (long long)json_integer_value(v), KR_SNAP_VERSION);
        goto out;
    }
    m->version = KR_SNAP_VERSION;
    rv = meta_u64(j, "Index", &m->index, errmsg);
    if (rv == 0)
        rv = meta_u64(j, "Term", &m->term, errmsg);
    if (rv == 0)
        rv = meta_u64(j, "Size", &m->size, errmsg);
    if (rv == 0 && !json_is_string(json_object_get(j, "ID")))
        rv = kr_errf(errmsg, KR_EINVAL,
                     "invalid snapshot archive: meta.json has no ID");
    if (rv == 0)
        rv = meta_id(json_string_value(json_object_get(j, "ID")), m, errmsg);
    if (rv == 0)
        rv = meta_servers(j, m, errmsg);
out:
    json_decref(j);
    return rv;
}

static int open_common(struct kr_snap_reader *r, char *errmsg)
{
    char *text = NULL;
    uint64_t size;
    int rv;

    rv = next_member(r, NAME_META, KR_SNAP_META_MAX, &size, errmsg);
    if (rv != 0)
        return rv;
    text = malloc(size + 1);
    if (text == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    rv = read_small(r, NAME_META, text, size, errmsg);
    if (rv == 0)
        rv = kr_sha256(text, size, r->meta_sum);
    if (rv == 0)
        rv = parse_meta(text, size, &r->meta, errmsg);
    free(text);
    if (rv == 0)
        rv = next_member(r, NAME_STATE, KR_SNAP_STATE_MAX, &size, errmsg);
    if (rv == 0 && size != r->meta.size)
        rv = kr_errf(errmsg, KR_EINVAL,
                     "invalid snapshot archive: state.bin is %" PRIu64
                     " bytes but meta.json says %" PRIu64,
                     size, r->meta.size);
    r->left = size;
    return rv;
}

static struct kr_snap_reader *reader_new(char *errmsg)
{
    struct kr_snap_reader *r = calloc(1, sizeof(*r));

    if (r == NULL || kr_sha256_new(&r->sha) != 0 ||
        (r->a = archive_read_new()) == NULL ||
        archive_read_support_filter_gzip(r->a) != ARCHIVE_OK ||
        archive_read_support_format_tar(r->a) != ARCHIVE_OK) {
        kr_snap_reader_free(r);
        kr_errf(errmsg, KR_ENOMEM, "out of memory");
        return NULL;
    }
    r->input = UINT64_MAX;
    return r;
}

int kr_snap_reader_open_mem(struct kr_snap_reader **out, const void *p,
                            size_t n, char *errmsg)
{
    struct kr_snap_reader *r;
    int rv;

    if (n == 0)
        return kr_errf(errmsg, KR_EINVAL, "snapshot archive is empty");
    r = reader_new(errmsg);
    if (r == NULL)
        return KR_ENOMEM;
    r->input = n;
    if (archive_read_open_memory(r->a, p, n) != ARCHIVE_OK)
        rv = r_fail(r, errmsg, "cannot open");
    else
        rv = open_common(r, errmsg);
    if (rv != 0) {
        kr_snap_reader_free(r);
        return rv;
    }
    *out = r;
    return 0;
}

int kr_snap_reader_open_fd(struct kr_snap_reader **out, int fd, char *errmsg)
{
    struct kr_snap_reader *r;
    struct stat st;
    off_t at;
    int rv;

    if (fstat(fd, &st) != 0)
        memset(&st, 0, sizeof(st));
    if (S_ISREG(st.st_mode) && st.st_size == 0)
        return kr_errf(errmsg, KR_EINVAL, "snapshot archive is empty");
    r = reader_new(errmsg);
    if (r == NULL)
        return KR_ENOMEM;
    at = lseek(fd, 0, SEEK_CUR);
    if (S_ISREG(st.st_mode) && at >= 0 && at <= st.st_size)
        r->input = (uint64_t)(st.st_size - at);
    if (archive_read_open_fd(r->a, fd, READ_BLOCK) != ARCHIVE_OK)
        rv = r_fail(r, errmsg, "cannot open");
    else
        rv = open_common(r, errmsg);
    if (rv != 0) {
        kr_snap_reader_free(r);
        return rv;
    }
    *out = r;
    return 0;
}

void kr_snap_reader_free(struct kr_snap_reader *r)
{
    if (r == NULL)
        return;
    if (r->a != NULL)
        archive_read_free(r->a);
    kr_sha256_free(r->sha);
    free(r);
}

const struct kr_snap_meta *kr_snap_reader_meta(const struct kr_snap_reader *r)
{
    return &r->meta;
}

uint64_t kr_snap_reader_consumed(const struct kr_snap_reader *r)
{
    la_int64_t n = archive_filter_bytes(r->a, -1);

    return n > 0 ? (uint64_t)n : 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* One "<64 lowercase hex>  <name>" line of SHA256SUMS. */
static bool parse_sum(const char *line, size_t len, uint8_t d[KR_SHA256_LEN],
                      const char **name, size_t *nlen)
{
    if (len < 2 * KR_SHA256_LEN + 3 || line[2 * KR_SHA256_LEN] != ' ' ||
        line[2 * KR_SHA256_LEN + 1] != ' ')
        return false;
    for (size_t i = 0; i < KR_SHA256_LEN; i++) {
        int hi = hex_digit(line[2 * i]), lo = hex_digit(line[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        d[i] = (uint8_t)(hi << 4 | lo);
    }
    *name = line + 2 * KR_SHA256_LEN + 2;
    *nlen = len - 2 * KR_SHA256_LEN - 2;
    return true;
}

/* Both members must be listed once, with matching digests. */
static int check_sums(const char *text, size_t len,
                      const uint8_t meta[KR_SHA256_LEN],
                      const uint8_t state[KR_SHA256_LEN], char *errmsg)
{
    const char *names[2] = {NAME_META, NAME_STATE};
    const uint8_t *want[2] = {meta, state};
    bool seen[2] = {false, false};
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        uint8_t d[KR_SHA256_LEN];
        const char *name;
        size_t nlen;
        int which = -1;

        if (!parse_sum(p, n, d, &name, &nlen))
            return kr_errf(
                errmsg, KR_EINVAL,
                "invalid snapshot archive: SHA256SUMS line \"%.80s\" "
                "is not \"<sha256 hex>  <name>\"",
                p);
        for (int i = 0; i < 2; i++)
            if (nlen == strlen(names[i]) && memcmp(name, names[i], nlen) == 0)
                which = i;
        if (which < 0 || seen[which])
            return kr_errf(
                errmsg, KR_EINVAL,
                "invalid snapshot archive: SHA256SUMS lists \"%.*s\" "
                "%s",
                (int)(nlen > 100 ? 100 : nlen), name,
                which < 0 ? "which is not in the archive" : "twice");
        seen[which] = true;
        if (memcmp(d, want[which], KR_SHA256_LEN) != 0)
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid snapshot archive: %s does not match its "
                           "checksum in SHA256SUMS (the file was changed or "
                           "damaged)",
                           names[which]);
        p = nl != NULL ? nl + 1 : end;
    }
    for (int i = 0; i < 2; i++)
        if (!seen[i])
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid snapshot archive: SHA256SUMS has no "
                           "checksum for %s",
                           names[i]);
    return 0;
}

/* After state.bin: SHA256SUMS, then the end of the archive. */
static int read_tail(struct kr_snap_reader *r, char *errmsg)
{
    char sums[KR_SNAP_SUMS_MAX + 1];
    uint8_t state[KR_SHA256_LEN];
    struct archive_entry *e;
    uint64_t size;
    int rv;

    rv = kr_sha256_final(r->sha, state);
    if (rv != 0)
        return kr_errf(errmsg, rv, "hashing state.bin");
    rv = next_member(r, NAME_SUMS, KR_SNAP_SUMS_MAX, &size, errmsg);
    if (rv == 0)
        rv = read_small(r, NAME_SUMS, sums, size, errmsg);
    if (rv == 0)
        rv = check_sums(sums, size, r->meta_sum, state, errmsg);
    if (rv != 0)
        return rv;
    rv = archive_read_next_header(r->a, &e);
    if (rv == ARCHIVE_OK)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: unexpected file \"%.100s\"",
                       archive_entry_pathname(e) ? archive_entry_pathname(e)
                                                 : "");
    if (rv != ARCHIVE_EOF)
        return r_fail(r, errmsg, "after SHA256SUMS");
    /* libarchive reads past the gzip stream's end without a word;
     * what it consumed is the stream. */
    if (r->input != UINT64_MAX && kr_snap_reader_consumed(r) != r->input)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: %" PRIu64
                       " bytes follow the gzip stream",
                       r->input - kr_snap_reader_consumed(r));
    return 0;
}

int kr_snap_reader_read(struct kr_snap_reader *r, void *buf, size_t cap,
                        size_t *n, char *errmsg)
{
    la_ssize_t k;
    int rv;

    *n = 0;
    if (r->done)
        return 0;
    if (r->left == 0) {
        rv = read_tail(r, errmsg);
        r->done = rv == 0;
        return rv;
    }
    k = archive_read_data(r->a, buf, cap < r->left ? cap : r->left);
    if (k < 0)
        return r_fail(r, errmsg, NAME_STATE);
    if (k == 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid snapshot archive: state.bin is truncated");
    kr_sha256_update(r->sha, buf, (size_t)k);
    r->left -= (uint64_t)k;
    *n = (size_t)k;
    return 0;
}

/* ---- whole-archive operations ---- */

/* A buffer that held state.bin: wiped before it goes. */
static void block_free(uint8_t *b)
{
    if (b != NULL) {
        explicit_bzero(b, READ_BLOCK);
        free(b);
    }
}

/* Reads all of state.bin through l, then the tail.  When state.bin does
 * not decode, the rest is still read: a checksum that does not match
 * says more ("changed or damaged") than where the decoding stopped. */
static int pump(struct kr_snap_reader *r, struct kr_state_loader *l,
                int (*after)(void *arg, char *errmsg), void *arg, char *errmsg)
{
    uint8_t *buf = malloc(READ_BLOCK);
    char tail[KR_ERRMSG_SIZE];
    size_t n;
    int rv = 0;

    if (buf == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    do {
        rv = kr_snap_reader_read(r, buf, READ_BLOCK, &n, errmsg);
        if (rv == 0 && n > 0)
            rv = kr_state_loader_feed(l, buf, n, errmsg);
        if (rv == 0 && n > 0 && after != NULL)
            rv = after(arg, errmsg);
    } while (rv == 0 && n > 0);
    if (rv == 0)
        rv = kr_state_loader_finish(l, errmsg);
    if (rv == KR_ECORRUPT) {
        kr_errwrap(errmsg, "invalid snapshot archive: state.bin");
        rv = KR_EINVAL;
        do {
            if (kr_snap_reader_read(r, buf, READ_BLOCK, &n, tail) != 0) {
                if (strstr(tail, "checksum") != NULL)
                    memcpy(errmsg, tail, sizeof(tail));
                break;
            }
        } while (n > 0);
    }
    block_free(buf);
    return rv;
}

int kr_snap_check(struct kr_snap_reader *r, struct kr_snap_info *info,
                  char *errmsg)
{
    struct kr_state_loader *l = NULL;
    int rv;

    if (kr_state_loader_new(&l, false) != 0)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    rv = pump(r, l, NULL, NULL, errmsg);
    if (rv == 0 && info != NULL) {
        memset(info, 0, sizeof(*info));
        info->meta = r->meta;
        for (unsigned t = 0; t < 256; t++)
            info->count[t] =
                kr_state_loader_count(l, (uint8_t)t, &info->bytes[t]);
        info->n_keys = kr_state_loader_key_count(l);
        for (size_t i = 0; i < info->n_keys; i++)
            info->n_redacted += kr_state_loader_key_at(l, i)->redacted;
    }
    kr_state_loader_free(l);
    return rv;
}

/*
 * Redaction streams: the records before the first Variable (the indexes,
 * the keys, the checkpoint) are held until the first Variable or the end
 * arrives; by then the new length of state.bin is known (only key records
 * change), so meta.json and the state.bin header can be written, and
 * every later record goes straight through.
 */
struct redaction {
    struct kr_snap_writer *w;
    struct kr_snap_meta meta;
    struct kr_buf head; /* output so far, until the header is out */
    uint64_t in_head;   /* input bytes the head came from */
    bool streaming;
    int err;
    char errmsg[KR_ERRMSG_SIZE];
    struct kr_buf out; /* records for the writer, per feed */
};

static void redact_record(void *arg, uint8_t type, const uint8_t *rec,
                          size_t len)
{
    struct redaction *x = arg;
    struct kr_buf *dst = x->streaming ? &x->out : &x->head;

    if (x->err != 0)
        return;
    if (!x->streaming && (type == KR_SNAP_REC_VAR || type == KR_SNAP_REC_END)) {
        x->meta.size = x->meta.size - x->in_head + x->head.len;
        x->err = kr_snap_writer_begin(x->w, &x->meta, x->errmsg);
        if (x->err == 0)
            x->err =
                kr_snap_writer_data(x->w, x->head.data, x->head.len, x->errmsg);
        x->streaming = true;
        dst = &x->out;
    }
    if (type == KR_SNAP_REC_ROOT_KEY) {
        if (kr_state_record_redact(rec, len, dst) != 0 && x->err == 0)
            x->err = kr_errf(x->errmsg, KR_ENOMEM, "out of memory");
    } else {
        kr_buf_append(dst, rec, len);
    }
    if (!x->streaming)
        x->in_head += len;
    if (dst->oom && x->err == 0)
        x->err = kr_errf(x->errmsg, KR_ENOMEM, "out of memory");
}

/* After each feed: hand what streamed to the writer. */
static int redact_flush(void *arg, char *errmsg)
{
    struct redaction *x = arg;
    int rv = x->err;

    if (rv != 0)
        return kr_errf(errmsg, rv, "%s", x->errmsg);
    if (x->out.len > 0)
        rv = kr_snap_writer_data(x->w, x->out.data, x->out.len, errmsg);
    /* Reused: wiped on free, and overwritten on the next feed. */
    x->out.len = 0;
    return rv;
}

int kr_snap_redact(struct kr_snap_reader *r, struct kr_snap_writer *w,
                   char *errmsg)
{
    struct kr_state_loader *l = NULL;
    struct redaction x;
    int rv;

    memset(&x, 0, sizeof(x));
    x.w = w;
    x.meta = r->meta;
    kr_buf_init(&x.head);
    kr_buf_init(&x.out);
    /* The magic and version precede the first record. */
    kr_buf_append(&x.head, KR_SNAP_HEADER, KR_SNAP_HEADER_LEN);
    x.in_head = KR_SNAP_HEADER_LEN;
    if (kr_state_loader_new(&l, false) != 0)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    kr_state_loader_on_record(l, redact_record, &x);
    rv = pump(r, l, redact_flush, &x, errmsg);
    if (rv == 0)
        rv = redact_flush(&x, errmsg);
    if (rv == 0)
        rv = kr_snap_writer_finish(w, errmsg);
    kr_state_loader_free(l);
    kr_buf_free(&x.head);
    kr_buf_free(&x.out);
    return rv;
}
