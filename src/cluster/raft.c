/*
 * See raft.h.  The node ID is drawn once and kept in <data_dir>/node-id,
 * so a restarted server is the same raft member and never bootstraps a
 * second time (raft_bootstrap on an existing log returns
 * RAFT_CANTBOOTSTRAP, which is expected).
 */
#include "cluster/raft.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/rand.h"

struct kr_raft {
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    struct kr_raft_config cfg;
    char *raft_dir;
    char *address;
    raft_id id;
    void (*close_cb)(void *arg);
    void *close_arg;
};

struct apply_req {
    struct raft_apply req;
    kr_raft_apply_cb cb;
    void *arg;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct kr_raft *r = fsm->data;
    /* raft sets last_applied only after apply returns. */
    uint64_t index = raft_last_applied(&r->raft) + 1;
    int outcome = kr_state_apply(r->cfg.state, index, buf->base, buf->len);

    *result = (void *)(intptr_t)outcome;
    if (r->cfg.after_apply != NULL)
        r->cfg.after_apply(r->cfg.arg);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct kr_raft *r = fsm->data;
    struct kr_buf b;
    struct raft_buffer *out = NULL;
    int rv;

    kr_buf_init(&b);
    rv = kr_state_snapshot(r->cfg.state, &b);
    if (rv != 0)
        goto fail;
    out = raft_malloc(sizeof(*out));
    if (out == NULL)
        goto fail;
    out->base = raft_malloc(b.len);
    if (out->base == NULL)
        goto fail;
    memcpy(out->base, b.data, b.len);
    out->len = b.len;
    kr_buf_free(&b);
    *bufs = out;
    *n_bufs = 1;
    return 0;
fail:
    raft_free(out);
    kr_buf_free(&b);
    return RAFT_NOMEM;
}

/* Version 2 contract: the buffers stay ours and are freed here. */
static int fsm_snapshot_finalize(struct raft_fsm *fsm,
                                 struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    for (unsigned i = 0; i < *n_bufs; i++)
        raft_free((*bufs)[i].base);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct kr_raft *r = fsm->data;
    char errmsg[KR_ERRMSG_SIZE];
    int rv = kr_state_restore(r->cfg.state, buf->base, buf->len, errmsg);

    if (rv != 0) {
        KR_ERROR("raft", "snapshot restore failed: %s", errmsg);
        return RAFT_CORRUPT;
    }
    /* On success the FSM owns the buffer. */
    raft_free(buf->base);
    if (r->cfg.after_apply != NULL)
        r->cfg.after_apply(r->cfg.arg);
    return 0;
}

/* Reads the persistent node ID, creating it on first start. */
static int load_node_id(const char *data_dir, raft_id *out, bool *fresh,
                        char *errmsg)
{
    char path[4096], tmp[4200], text[32];
    FILE *f;
    uint64_t id = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/node-id", data_dir);
    f = fopen(path, "r");
    if (f != NULL) {
        int ok = fscanf(f, "%" SCNu64, &id) == 1 && id != 0;
        fclose(f);
        if (!ok)
            return kr_errf(errmsg, KR_ECORRUPT, "%s: malformed node ID", path);
        *out = id;
        *fresh = false;
        return 0;
    }
    if (errno != ENOENT)
        return kr_errf(errmsg, KR_EIO, "%s: %s", path, strerror(errno));
    while (id == 0)
        if (kr_rand_bytes(&id, sizeof(id)) != 0)
            return kr_errf(errmsg, KR_ECRYPTO, "no randomness for node ID");
    id >>= 1; /* keep it readable as a signed 64-bit number too */
    if (id == 0)
        id = 1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    snprintf(text, sizeof(text), "%" PRIu64 "\n", id);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
        fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        if (fd >= 0)
            close(fd);
        return kr_errf(errmsg, KR_EIO, "%s: %s", path, strerror(errno));
    }
    *out = id;
    *fresh = true;
    return 0;
}

int kr_raft_start(struct kr_raft **out, const struct kr_raft_config *cfg,
                  char *errmsg)
{
    struct kr_raft *r = NULL;
    struct raft_configuration conf;
    bool fresh = false, io_ok = false, tr_ok = false;
    size_t n;
    int rv;

    raft_configuration_init(&conf);
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    r->cfg = *cfg;
    n = strlen(cfg->data_dir) + sizeof("/raft");
    r->raft_dir = malloc(n);
    r->address = strdup(cfg->address);
    if (r->raft_dir == NULL || r->address == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto fail;
    }
    snprintf(r->raft_dir, n, "%s/raft", cfg->data_dir);
    if (mkdir(r->raft_dir, 0700) != 0 && errno != EEXIST) {
        rv = kr_errf(errmsg, KR_EIO, "%s: %s", r->raft_dir, strerror(errno));
        goto fail;
    }
    rv = load_node_id(cfg->data_dir, &r->id, &fresh, errmsg);
    if (rv != 0)
        goto fail;

    r->fsm.version = 2;
    r->fsm.data = r;
    r->fsm.apply = fsm_apply;
    r->fsm.snapshot = fsm_snapshot;
    r->fsm.snapshot_finalize = fsm_snapshot_finalize;
    r->fsm.restore = fsm_restore;

    rv = raft_uv_tcp_init(&r->transport, cfg->loop);
    if (rv != 0)
        goto raft_fail;
    tr_ok = true;
    rv = raft_uv_init(&r->io, cfg->loop, r->raft_dir, &r->transport);
    if (rv != 0)
        goto raft_fail;
    io_ok = true;
    rv = raft_init(&r->raft, &r->io, &r->fsm, r->id, r->address);
    if (rv != 0)
        goto raft_fail;
    raft_set_snapshot_threshold(&r->raft, 8192);
    raft_set_snapshot_trailing(&r->raft, 4096);
    if (fresh) {
        rv = raft_configuration_add(&conf, r->id, r->address, RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&r->raft, &conf);
        if (rv == RAFT_CANTBOOTSTRAP)
            rv = 0;
        if (rv != 0)
            goto raft_fail;
    }
    rv = raft_start(&r->raft);
    if (rv != 0)
        goto raft_fail;
    raft_configuration_close(&conf);
    KR_INFO("raft", "started node %llu at %s (%s)", (unsigned long long)r->id,
            r->address, fresh ? "bootstrapped" : "existing state");
    *out = r;
    return 0;
raft_fail:
    kr_errf(errmsg, KR_EIO, "raft: %s", raft_strerror(rv));
    rv = KR_EIO;
    /* raft_init failures leave io and transport for us to close; the loop
     * closes their handles when it next runs. */
    if (io_ok)
        raft_uv_close(&r->io);
    if (tr_ok)
        raft_uv_tcp_close(&r->transport);
fail:
    raft_configuration_close(&conf);
    free(r->raft_dir);
    free(r->address);
    free(r);
    return rv;
}

static void apply_done(struct raft_apply *req, int status, void *result)
{
    struct apply_req *a = (struct apply_req *)req;
    int st = 0;

    if (status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST)
        st = KR_ENOLEADER;
    else if (status == RAFT_SHUTDOWN)
        st = KR_ESHUTDOWN;
    else if (status != 0)
        st = KR_EIO;
    a->cb(a->arg, st, req->index, st == 0 ? (int)(intptr_t)result : 0);
    free(a);
}

int kr_raft_apply(struct kr_raft *r, const struct kr_buf *entry,
                  kr_raft_apply_cb cb, void *arg)
{
    struct apply_req *a;
    struct raft_buffer buf;
    int rv;

    if (raft_state(&r->raft) != RAFT_LEADER)
        return KR_ENOLEADER;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return KR_ENOMEM;
    buf.len = entry->len;
    buf.base = raft_malloc(entry->len);
    if (buf.base == NULL) {
        free(a);
        return KR_ENOMEM;
    }
    memcpy(buf.base, entry->data, entry->len);
    a->cb = cb;
    a->arg = arg;
    rv = raft_apply(&r->raft, &a->req, &buf, 1, apply_done);
    if (rv != 0) {
        raft_free(buf.base);
        free(a);
        return rv == RAFT_NOTLEADER ? KR_ENOLEADER : KR_EIO;
    }
    return 0;
}

bool kr_raft_is_leader(struct kr_raft *r)
{
    return raft_state(&r->raft) == RAFT_LEADER;
}

uint64_t kr_raft_last_applied(struct kr_raft *r)
{
    return raft_last_applied(&r->raft);
}

uint64_t kr_raft_last_index(struct kr_raft *r)
{
    return raft_last_index(&r->raft);
}

uint64_t kr_raft_id(struct kr_raft *r)
{
    return r->id;
}

const char *kr_raft_leader_address(struct kr_raft *r)
{
    raft_id id;
    const char *addr = NULL;

    raft_leader(&r->raft, &id, &addr);
    return addr != NULL ? addr : "";
}

static void raft_closed(struct raft *raft)
{
    struct kr_raft *r = (struct kr_raft *)raft;
    void (*cb)(void *) = r->close_cb;
    void *arg = r->close_arg;

    raft_uv_close(&r->io);
    raft_uv_tcp_close(&r->transport);
    free(r->raft_dir);
    free(r->address);
    free(r);
    if (cb != NULL)
        cb(arg);
}

void kr_raft_close(struct kr_raft *r, void (*cb)(void *arg), void *arg)
{
    r->close_cb = cb;
    r->close_arg = arg;
    raft_close(&r->raft, raft_closed);
}
