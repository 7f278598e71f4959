/*
 * See snapshot.h.  Files are replaced atomically: a temporary file in the
 * target's own directory (so the rename stays on one filesystem) is
 * written, fsync'ed and renamed over the target, then the directory is
 * fsync'ed; on any failure the temporary file is removed and the target
 * is untouched.
 *
 * `save -redact` never writes the unredacted archive to disk: it is
 * redacted as it arrives, a few MiB behind the download, and only the
 * redacted copy is written (Nomad's CLI holds the whole download in
 * memory for that; this one does not).
 */
#include "cli/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/cmd.h"
#include "common/err.h"
#include "crypto/hash.h"
#include "snapshot/archive.h"
#include "state/state.h"

#define SNAPSHOT_PATH "/v1/operator/snapshot"
#define MSG_ONE_FILE "this command takes one argument: <file>"

/* ---- files ---- */

/* A temporary file next to path; *tmp gets its name (PATH_MAX). */
static int tmp_open(const char *path, char *tmp, size_t cap, int *fd,
                    char *errmsg)
{
    char *a = strdup(path), *b = strdup(path);
    int rv = 0;

    if (a == NULL || b == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(tmp, cap, "%s/.%s.tmp-XXXXXX", dirname(a), basename(b));
    *fd = mkostemp(tmp, O_CLOEXEC);
    if (*fd < 0)
        rv = kr_errf(errmsg, KR_EIO, "cannot create a file next to %s: %s",
                     path, strerror(errno));
out:
    free(a);
    free(b);
    return rv;
}

/* fsync, rename over path, fsync the directory; closes fd.  On failure
 * tmp is removed. */
static int tmp_commit(int fd, const char *tmp, const char *path, char *errmsg)
{
    char *d = strdup(path);
    int dfd, rv = 0;

    if (fsync(fd) != 0 || close(fd) != 0) {
        rv = kr_errf(errmsg, KR_EIO, "writing %s: %s", tmp, strerror(errno));
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        rv = kr_errf(errmsg, KR_EIO, "renaming %s to %s: %s", tmp, path,
                     strerror(errno));
        unlink(tmp);
    } else if (d != NULL) {
        dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    free(d);
    return rv;
}

static void tmp_abort(int fd, const char *tmp)
{
    close(fd);
    unlink(tmp);
}

static int write_all(int fd, const void *p, size_t n, char *errmsg)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return kr_errf(errmsg, KR_EIO, "writing the snapshot: %s",
                           strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The writer's callback: the archive goes to a file descriptor. */
static int to_fd(void *arg, const void *p, size_t n, char *errmsg)
{
    return write_all(*(int *)arg, p, n, errmsg);
}

/* ---- save ---- */

/* Written data is pushed to the disk every this many bytes, so the
 * final fsync does not have all of it to write. */
#define WRITEBACK_STEP (16u << 20)

/* A file being written, with its writeback started as it grows. */
struct outfile {
    int fd;
    uint64_t written; /* to fd */
    uint64_t pushed;  /* writeback started up to here */
};

static int out_write(struct outfile *o, const void *p, size_t n, char *errmsg)
{
    int rv = write_all(o->fd, p, n, errmsg);

    o->written += n;
    if (rv == 0 && o->written - o->pushed >= WRITEBACK_STEP) {
        /* Start the disk writes now, overlapping the download; the
         * fsync before the rename still waits for all of them. */
        (void)sync_file_range(o->fd, (off64_t)o->pushed,
                              (off64_t)(o->written - o->pushed),
                              SYNC_FILE_RANGE_WRITE);
        o->pushed = o->written;
    }
    return rv;
}

/*
 * The archive is read as it arrives: on_piece feeds a pipe, and a thread
 * of the save's own reads it through the reader a restore opens it
 * with: every member in order, SHA256SUMS matching both, nothing after.
 * Without -redact that is the check (the file is written beside it):
 * it vouches for everything a restore reads, as a Digest would (the
 * gzip header's time and trailer's CRC-32 are all it leaves out; no
 * reader here looks at them); state.bin's records are the server's to
 * get right, and a restore checks them all before it changes anything.  With
 * -redact the thread redacts what it reads into the file (kr_snap_redact, which
 * checks its input fully), so the unredacted archive is never whole anywhere:
 * the pipe and curl's and libarchive's buffers hold a few MiB of it at a time.
 * Either way the work overlaps the download, and nothing is renamed into place
 * unless all of it succeeded.
 */
#define CHECK_BLOCK (1u << 20)

struct checker {
    int rfd, wfd;        /* the pipe; wfd < 0: not feeding */
    struct outfile *out; /* -redact: the redacted archive goes here */
    uint64_t fed;        /* bytes written to the pipe (main thread) */
    pthread_t t;
    bool running;
    atomic_bool failed; /* the thread's verdict is in: stop the download */
    /* the thread's, read after the join */
    int rv;
    bool blame;        /* rv comes from the archive, not from this side */
    bool out_failed;   /* writing the redacted archive failed */
    uint64_t consumed; /* bytes the archive took up */
    char errmsg[KR_ERRMSG_SIZE];
};

/* The redaction's writer callback. */
static int to_out(void *arg, const void *p, size_t n, char *errmsg)
{
    struct checker *k = arg;
    int rv = out_write(k->out, p, n, errmsg);

    k->out_failed = k->out_failed || rv != 0;
    return rv;
}

/* Reads r to its end (with -redact, redacting it into k->out). */
static int check_read(struct checker *k, struct kr_snap_reader *r, char *buf)
{
    struct kr_snap_writer *w = NULL;
    size_t n = 1;
    int rv = 0;

    if (k->out != NULL)
        rv = kr_snap_writer_new(&w, to_out, k, k->errmsg);
    if (rv == 0 && w != NULL) {
        rv = kr_snap_redact(r, w, k->errmsg);
        k->blame = rv != 0 && !k->out_failed;
    }
    while (rv == 0 && w == NULL && n > 0) {
        rv = kr_snap_reader_read(r, buf, CHECK_BLOCK, &n, k->errmsg);
        k->blame = rv != 0;
    }
    kr_snap_writer_free(w);
    return rv;
}

static void *check_main(void *arg)
{
    struct checker *k = arg;
    struct kr_snap_reader *r = NULL;
    char *buf = malloc(CHECK_BLOCK), small[4096];
    ssize_t got;
    int rv = 0;

    if (buf == NULL)
        rv = kr_errf(k->errmsg, KR_ENOMEM, "out of memory");
    if (rv == 0) {
        rv = kr_snap_reader_open_fd(&r, k->rfd, k->errmsg);
        k->blame = rv != 0 && rv != KR_ENOMEM;
    }
    if (rv == 0)
        rv = check_read(k, r, buf);
    if (rv == 0)
        k->consumed = kr_snap_reader_consumed(r);
    kr_snap_reader_free(r);
    k->rv = rv;
    atomic_store(&k->failed, rv != 0);
    /* What the reader left (a bad archive's rest) is read off, so a
     * write to the pipe never waits for a reader gone. */
    do
        got = buf != NULL ? read(k->rfd, buf, CHECK_BLOCK)
                          : read(k->rfd, small, sizeof(small));
    while (got > 0 || (got < 0 && errno == EINTR));
    if (buf != NULL) /* it held state.bin, aead KEKs and all */
        explicit_bzero(buf, CHECK_BLOCK);
    free(buf);
    return NULL;
}

/* out: NULL to check only, or where the redacted archive goes. */
static int checker_start(struct checker *k, struct outfile *out, char *errmsg)
{
    int p[2] = {-1, -1}, rv = 0;

    k->out = out;
    atomic_init(&k->failed, false);
    if (pipe2(p, O_CLOEXEC) != 0)
        rv = kr_errf(errmsg, KR_EIO, "cannot check the snapshot: %s",
                     strerror(errno));
    /* A larger pipe lets the check lag a block behind the download
     * without holding it up; the default size does too, only slower. */
    if (rv == 0)
        (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    k->rfd = p[0];
    k->wfd = p[1];
    if (rv == 0 && pthread_create(&k->t, NULL, check_main, k) != 0)
        rv = kr_errf(errmsg, KR_ENOMEM, "cannot start checking the snapshot");
    k->running = rv == 0;
    if (rv != 0 && p[0] >= 0) {
        close(p[0]);
        close(p[1]);
        k->rfd = k->wfd = -1;
    }
    return rv;
}

/* Ends the feed and waits for the verdict: 0 or the check's error,
 * which says "damaged" when the archive is to blame. */
static int checker_end(struct checker *k, char *errmsg)
{
    bool blame = false;
    int rv = 0;

    if (k->running) {
        close(k->wfd);
        k->wfd = -1;
        pthread_join(k->t, NULL);
        close(k->rfd);
        k->running = false;
        rv = k->rv;
        blame = k->blame;
    }
    if (rv != 0) {
        snprintf(errmsg, KR_ERRMSG_SIZE, "%s", k->errmsg);
    } else if (k->consumed != k->fed) {
        /* libarchive reads past the gzip stream's end without a word */
        rv = kr_errf(errmsg, KR_EINVAL,
                     "%" PRIu64 " bytes follow the end of the archive",
                     k->fed - k->consumed);
        blame = true;
    }
    if (blame)
        kr_errwrap(errmsg, "the snapshot that arrived is damaged");
    return rv;
}

struct download {
    struct kr_cli_resp *resp;
    struct kr_sha256_bg *sha; /* a Digest sent, hashed beside the writes */
    struct outfile *out;      /* the archive goes here, or NULL (-redact) */
    struct checker *check;    /* fed every byte */
    bool check_stopped;       /* the download was cut short: check failed */
    char errmsg[KR_ERRMSG_SIZE];
};

static int on_piece(void *arg, const void *p, size_t n)
{
    struct download *d = arg;
    int rv = 0;

    /* The headers have all come: a server that sends a Digest anyway
     * (Nomad's way) gets it checked. */
    if (d->resp->digest[0] != '\0' && d->sha == NULL &&
        kr_sha256_bg_new(&d->sha) != 0)
        rv = kr_errf(d->errmsg, KR_ENOMEM, "cannot start hashing the snapshot");
    if (rv == 0 && d->sha != NULL)
        kr_sha256_bg_update(d->sha, p, n);
    if (rv == 0 && atomic_load(&d->check->failed)) {
        d->check_stopped = true;
        rv = KR_EIO;
    }
    if (rv == 0)
        rv = write_all(d->check->wfd, p, n, d->errmsg);
    if (rv == 0)
        d->check->fed += n;
    if (rv == 0 && d->out != NULL)
        rv = out_write(d->out, p, n, d->errmsg);
    return rv;
}

/* A Digest header, when the server sent one, must name what arrived. */
static int check_digest(struct download *d, char *errmsg)
{
    uint8_t sum[KR_SHA256_LEN];
    char want[KR_SHA256_B64_LEN + 16] = "sha-256=";
    int rv = 0;

    /* No Digest: declined, and the checker vouches for the bytes. */
    if (d->resp->digest[0] == '\0')
        goto out;
    if (d->sha == NULL) { /* a Digest and an empty body */
        rv = kr_errf(errmsg, KR_EIO, "the server sent an empty snapshot");
        goto out;
    }
    if (kr_sha256_bg_final(d->sha, sum) != 0) {
        rv = kr_errf(errmsg, KR_ECRYPTO, "hashing the snapshot");
        goto out;
    }
    kr_base64_encode(sum, sizeof(sum), want + 8);
    if (strcmp(d->resp->digest, want) != 0)
        rv = kr_errf(errmsg, KR_EIO,
                     "the snapshot does not match its Digest header (%s, "
                     "received %s): the download was damaged",
                     d->resp->digest, want);
out:
    return rv;
}

static const char SAVE_ABOUT[] =
    "Retrieves an atomic, point-in-time snapshot of the state of the\n"
    "keyraft servers, which includes the root keys and Variables, and\n"
    "writes it to <file>.  The file is written under a temporary name\n"
    "while the archive is checked against the checksums it holds, and\n"
    "only then renamed into place.\n"
    "\n"
    "With the default aead keyring the snapshot holds every key\n"
    "encryption key: whoever has the file can decrypt every Variable.\n"
    "Use -redact to leave the key material out.\n"
    "\n"
    "If ACLs are enabled, this command requires a management token.";

int kr_cli_snapshot_save_main(int argc, char **argv)
{
    struct kr_cli_session s;
    struct download d;
    struct outfile out = {.fd = -1};
    bool stale = false, redact = false;
    struct checker check = {.rfd = -1, .wfd = -1};
    char errmsg[KR_ERRMSG_SIZE], errmsg2[KR_ERRMSG_SIZE], tmp[4200];
    int argi = 0, rc = KR_CLI_EXIT_ERROR, rv, rv2;
    const struct kr_cli_flag flags[] = {
        {"stale", KR_CLI_FLAG_BOOL, &stale, NULL, NULL,
         "The -stale argument defaults to \"false\" which means the leader\n"
         "provides the result.  If the cluster is in an outage state\n"
         "without a leader, you may need to set -stale to \"true\" to get\n"
         "the snapshot from a non-leader server.",
         NULL},
        {"redact", KR_CLI_FLAG_BOOL, &redact, NULL, NULL,
         "Removes key material (the wrapped data encryption keys, RSA keys\n"
         "and key encryption keys) from the snapshot before it is written.\n"
         "Keys stay listed, marked redacted; Variables under them cannot be\n"
         "decrypted after a restore of this snapshot.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "operator snapshot save",
        "[options] <file>",
        SAVE_ABOUT,
        "Snapshot Save Options",
        flags,
        s.api.flags,
    };

    memset(&d, 0, sizeof(d));
    kr_cli_session_init(&s);
    kr_cli_protect_secrets();
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, 1, MSG_ONE_FILE, &argi, &rc))
        goto out;
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    if (tmp_open(argv[argi], tmp, sizeof(tmp), &out.fd, errmsg) != 0) {
        kr_cli_error("%s", errmsg);
        goto out;
    }
    if (stale)
        kr_cli_query_add(&s.query, "stale", "");
    d.resp = &s.resp;
    d.out = redact ? NULL : &out;
    d.check = &check;
    /* Declining the Digest, the server sends the archive as it encodes
     * it instead of encoding it once more first; the checker holds it
     * to the archive's own checksums as it arrives (and with -redact
     * redacts it into the file). */
    if (checker_start(&check, redact ? &out : NULL, errmsg) != 0) {
        tmp_abort(out.fd, tmp);
        kr_cli_error("%s", errmsg);
        goto out;
    }
    rv = kr_cli_client_download(
        s.client, SNAPSHOT_PATH, kr_cli_buf_str(&s.query),
        "Want-Digest: sha-256;q=0", on_piece, &d, &s.resp, errmsg);
    if (rv == 0)
        rv = kr_cli_resp_check(&s.resp, 0, errmsg);
    else if (d.errmsg[0] != '\0')
        snprintf(errmsg, sizeof(errmsg), "%s", d.errmsg);
    /* The check's failure explains a download it stopped, or a good one;
     * any other failure of the download explains the check's. */
    rv2 = checker_end(&check, errmsg2);
    if (rv2 != 0 && (rv == 0 || d.check_stopped)) {
        rv = rv2;
        memcpy(errmsg, errmsg2, sizeof(errmsg));
    }
    if (rv == 0)
        rv = check_digest(&d, errmsg);
    if (rv != 0) {
        tmp_abort(out.fd, tmp);
        kr_cli_error("%s", errmsg);
        goto out;
    }
    rv = tmp_commit(out.fd, tmp, argv[argi], errmsg);
    if (rv != 0) {
        kr_cli_error("%s", errmsg);
        goto out;
    }
    printf("State file written to %s\n", argv[argi]);
    rc = KR_CLI_EXIT_OK;
out:
    kr_sha256_bg_free(d.sha);
    kr_cli_session_free(&s);
    return rc;
}

/* ---- inspect ---- */

static void human(uint64_t n, char *out, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;

    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%" PRIu64 " B", n);
    else
        snprintf(out, cap, "%.1f %s", v, units[u]);
}

/* Record types in the order they appear in state.bin. */
static const uint8_t SHOWN[] = {KR_SNAP_REC_INDEXES,  KR_SNAP_REC_ROOT_KEY,
                                KR_SNAP_REC_IDENTITY, KR_SNAP_REC_REKEY,
                                KR_SNAP_REC_VAR,      KR_SNAP_REC_END};

static void format_created(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL)
        snprintf(out, cap, "%" PRId64, ms);
    else
        snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static json_t *info_json(const struct kr_snap_info *in)
{
    json_t *stats = json_array();
    uint64_t count = 0, size = 0;
    char created[64];

    for (size_t i = 0; i < sizeof(SHOWN); i++) {
        uint8_t t = SHOWN[i];
        if (in->count[t] == 0)
            continue;
        json_array_append_new(stats, json_pack("{s:s, s:I, s:I}", "Name",
                                               kr_snap_record_name(t), "Count",
                                               (json_int_t)in->count[t], "Sum",
                                               (json_int_t)in->bytes[t]));
        count += in->count[t];
        size += in->bytes[t];
    }
    format_created(in->meta.created_ms, created, sizeof(created));
    return json_pack(
        "{s:{s:s, s:s, s:I, s:I, s:I, s:i}, s:o, s:I, s:I, "
        "s:I, s:I}",
        "Meta", "Created", created, "ID", in->meta.id, "Size",
        (json_int_t)in->meta.size, "Index", (json_int_t)in->meta.index, "Term",
        (json_int_t)in->meta.term, "Version", in->meta.version, "Stats", stats,
        "TotalCount", (json_int_t)count, "TotalSize", (json_int_t)size,
        "RootKeys", (json_int_t)in->n_keys, "RedactedKeys",
        (json_int_t)in->n_redacted);
}

static int print_info(const struct kr_snap_info *in)
{
    struct kr_cli_table *kv = NULL, *t = NULL;
    char created[64], size[32], idx[32], term[32], ver[16], red[64], n[32],
        h[32];
    uint64_t count = 0, total = 0;
    int rv;

    format_created(in->meta.created_ms, created, sizeof(created));
    snprintf(size, sizeof(size), "%" PRIu64, in->meta.size);
    snprintf(idx, sizeof(idx), "%" PRIu64, in->meta.index);
    snprintf(term, sizeof(term), "%" PRIu64, in->meta.term);
    snprintf(ver, sizeof(ver), "%d", in->meta.version);
    snprintf(red, sizeof(red), "%zu of %zu root keys", in->n_redacted,
             in->n_keys);
    rv = kr_cli_table_new(&kv, 2);
    if (rv == 0)
        rv = kr_cli_table_add(kv, (const char *const[]){"Created", created});
    if (rv == 0)
        rv = kr_cli_table_add(kv, (const char *const[]){"ID", in->meta.id});
    if (rv == 0)
        rv = kr_cli_table_add(kv, (const char *const[]){"Size", size});
    if (rv == 0)
        rv = kr_cli_table_add(kv, (const char *const[]){"Index", idx});
    if (rv == 0)
        rv = kr_cli_table_add(kv, (const char *const[]){"Term", term});
    if (rv == 0)
        rv = kr_cli_table_add(kv, (const char *const[]){"Version", ver});
    if (rv == 0)
        rv = kr_cli_table_add(kv, (const char *const[]){"Redacted", red});
    if (rv == 0)
        rv = kr_cli_table_new(&t, 3);
    if (rv == 0)
        rv =
            kr_cli_table_add(t, (const char *const[]){"Type", "Count", "Size"});
    for (size_t i = 0; rv == 0 && i < sizeof(SHOWN); i++) {
        uint8_t ty = SHOWN[i];
        if (in->count[ty] == 0)
            continue;
        snprintf(n, sizeof(n), "%" PRIu64, in->count[ty]);
        human(in->bytes[ty], h, sizeof(h));
        rv = kr_cli_table_add(
            t, (const char *const[]){kr_snap_record_name(ty), n, h});
        count += in->count[ty];
        total += in->bytes[ty];
    }
    snprintf(n, sizeof(n), "%" PRIu64, count);
    human(total, h, sizeof(h));
    if (rv == 0)
        rv = kr_cli_table_add(t, (const char *const[]){"Total", n, h});
    if (rv == 0) {
        kr_cli_table_print(kv, stdout, " = ", "");
        printf("\n");
        kr_cli_table_print(t, stdout, "  ", "");
    }
    kr_cli_table_free(kv);
    kr_cli_table_free(t);
    return rv;
}

/* Opens path and checks the whole archive. */
static int read_file(const char *path, struct kr_snap_info *info, char *errmsg)
{
    struct kr_snap_reader *r = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rv;

    if (fd < 0)
        return kr_errf(errmsg, KR_EIO, "%s: %s", path, strerror(errno));
    rv = kr_snap_reader_open_fd(&r, fd, errmsg);
    if (rv == 0)
        rv = kr_snap_check(r, info, errmsg);
    kr_snap_reader_free(r);
    close(fd);
    return rv;
}

static const char INSPECT_ABOUT[] =
    "Displays information about a snapshot file on disk: its metadata and\n"
    "how many records of each type its state holds, and their sizes.  The\n"
    "whole file is checked as a restore would check it.";

int kr_cli_snapshot_inspect_main(int argc, char **argv)
{
    struct kr_snap_info *info = calloc(1, sizeof(*info));
    char errmsg[KR_ERRMSG_SIZE];
    bool as_json = false;
    json_t *j = NULL;
    int argi = 0, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"json", KR_CLI_FLAG_BOOL, &as_json, NULL, NULL,
         "Output the snapshot's information as JSON.", NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "operator snapshot inspect",
        "[options] <file>",
        INSPECT_ABOUT,
        "Snapshot Inspect Options",
        flags,
        NULL,
    };

    if (info == NULL) {
        kr_cli_error("out of memory");
        return rc;
    }
    kr_cli_protect_secrets();
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, 1, MSG_ONE_FILE, &argi, &rc))
        goto out;
    if (read_file(argv[argi], info, errmsg) != 0) {
        kr_cli_error("%s", errmsg);
        goto out;
    }
    if (as_json) {
        j = info_json(info);
        if (j == NULL) {
            kr_cli_error("out of memory");
            goto out;
        }
        kr_cli_json_print(j, stdout);
    } else if (print_info(info) != 0) {
        kr_cli_error("out of memory");
        goto out;
    }
    rc = KR_CLI_EXIT_OK;
out:
    json_decref(j);
    free(info);
    return rc;
}

/* ---- restore ---- */

static const char RESTORE_ABOUT[] =
    "Restores a point-in-time snapshot of the state of the keyraft\n"
    "servers, root keys and Variables, to the whole cluster.  The servers\n"
    "check the whole archive before anything changes, then switch to its\n"
    "state at once; writes made meanwhile are replaced.  The cluster's\n"
    "membership is not changed.\n"
    "\n"
    "This is a management-level operation: anything in the cluster's state\n"
    "is replaced by the snapshot's.\n"
    "\n"
    "If ACLs are enabled, this command requires a management token.";

int kr_cli_snapshot_restore_main(int argc, char **argv)
{
    struct kr_cli_session s;
    char errmsg[KR_ERRMSG_SIZE];
    struct stat st;
    int argi = 0, rc = KR_CLI_EXIT_ERROR, fd = -1, rv;
    const struct kr_cli_cmd cmd = {
        "operator snapshot restore",
        "[options] <file>",
        RESTORE_ABOUT,
        NULL,
        NULL,
        s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, 1, MSG_ONE_FILE, &argi, &rc))
        goto out;
    fd = open(argv[argi], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        kr_cli_error("%s: %s", argv[argi], strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        kr_cli_error("%s: not a regular file", argv[argi]);
        goto out;
    }
    if (st.st_size == 0) {
        kr_cli_error("%s: snapshot archive is empty", argv[argi]);
        goto out;
    }
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    rv = kr_cli_client_upload(s.client, "PUT", SNAPSHOT_PATH,
                              kr_cli_buf_str(&s.query), fd,
                              (uint64_t)st.st_size, &s.resp, errmsg);
    if (rv == 0)
        rv = kr_cli_resp_check(&s.resp, 0, errmsg);
    if (rv != 0) {
        kr_cli_error("%s", errmsg);
        goto out;
    }
    printf("Snapshot Restored\n");
    rc = KR_CLI_EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    kr_cli_session_free(&s);
    return rc;
}

/* ---- redact ---- */

static const char REDACT_ABOUT[] =
    "Removes key material from an existing snapshot file, in place: every\n"
    "root key loses its wrapped data encryption key and RSA key and, with\n"
    "the aead keyring, its key encryption key; key metadata stays, marked\n"
    "redacted.  The redacted archive is written under a temporary name,\n"
    "synced, and renamed over the original, so the file is never half\n"
    "written.  Only meaningful for the aead keyring: with a KMS the file\n"
    "holds no key in clear.";

int kr_cli_snapshot_redact_main(int argc, char **argv)
{
    struct kr_snap_reader *r = NULL;
    struct kr_snap_writer *w = NULL;
    char errmsg[KR_ERRMSG_SIZE], tmp[4200];
    int argi = 0, rc = KR_CLI_EXIT_ERROR, in = -1, out = -1, rv;
    const struct kr_cli_cmd cmd = {
        "operator snapshot redact", "<file>", REDACT_ABOUT, NULL, NULL, NULL,
    };

    kr_cli_protect_secrets();
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, 1, MSG_ONE_FILE, &argi, &rc))
        return rc;
    in = open(argv[argi], O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        kr_cli_error("%s: %s", argv[argi], strerror(errno));
        return rc;
    }
    rv = tmp_open(argv[argi], tmp, sizeof(tmp), &out, errmsg);
    if (rv == 0)
        rv = kr_snap_reader_open_fd(&r, in, errmsg);
    if (rv == 0)
        rv = kr_snap_writer_new(&w, to_fd, &out, errmsg);
    if (rv == 0)
        rv = kr_snap_redact(r, w, errmsg);
    if (rv != 0 && out >= 0)
        tmp_abort(out, tmp);
    else if (rv == 0)
        rv = tmp_commit(out, tmp, argv[argi], errmsg);
    if (rv != 0)
        kr_cli_error("%s", errmsg);
    else {
        printf("Snapshot redacted: %s\n", argv[argi]);
        rc = KR_CLI_EXIT_OK;
    }
    kr_snap_writer_free(w);
    kr_snap_reader_free(r);
    close(in);
    return rc;
}
