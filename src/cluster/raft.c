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

/*
 * Entry framing.  libraft 0.15's disk format pads every entry to a multiple
 * of 8 bytes when it writes a segment but does not when it reads one back,
 * so a log holding an entry of any other length fails to load after a
 * restart.  Every payload therefore travels as u32 length || payload ||
 * zero padding, always a multiple of 8, and the state machine never sees
 * the padding.
 */
#define FRAME_HEADER 4

static size_t frame_size(size_t payload)
{
    return (FRAME_HEADER + payload + 7) & ~(size_t)7;
}

/* Returns the payload inside a frame, or NULL when the frame is malformed
 * (then *len is 0). */
static const uint8_t *unframe(const struct raft_buffer *buf, size_t *len)
{
    const uint8_t *p = buf->base;
    uint32_t n;

    *len = 0;
    if (buf->len < FRAME_HEADER)
        return NULL;
    n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
        (uint32_t)p[3] << 24;
    if (n > buf->len - FRAME_HEADER || frame_size(n) != buf->len)
        return NULL;
    *len = n;
    return p + FRAME_HEADER;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct kr_raft *r = fsm->data;
    /* raft sets last_applied only after apply returns. */
    uint64_t index = raft_last_applied(&r->raft) + 1;
    size_t len;
    const uint8_t *payload = unframe(buf, &len);
    int outcome;

    if (payload == NULL) {
        /* Deterministic on every replica: the entry is refused. */
        KR_ERROR("raft", "entry %llu has a malformed frame",
                 (unsigned long long)index);
        outcome = KR_ECORRUPT;
    } else {
        outcome = kr_state_apply(r->cfg.state, index, payload, len);
    }

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
    if (rv != 0 || b.len > UINT32_MAX - 8)
        goto fail;
    out = raft_malloc(sizeof(*out));
    if (out == NULL)
        goto fail;
    out->len = frame_size(b.len);
    out->base = raft_calloc(1, out->len);
    if (out->base == NULL)
        goto fail;
    for (int i = 0; i < FRAME_HEADER; i++)
        ((uint8_t *)out->base)[i] = (uint8_t)(b.len >> (8 * i));
    memcpy((uint8_t *)out->base + FRAME_HEADER, b.data, b.len);
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
    char errmsg[KR_ERRMSG_SIZE] = "malformed snapshot frame";
    size_t len;
    const uint8_t *payload = unframe(buf, &len);
    int rv = payload == NULL
                 ? KR_ECORRUPT
                 : kr_state_restore(r->cfg.state, payload, len, errmsg);

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
    /* Never move a segment raft cannot read out of the way and start
     * without it: that silently drops acknowledged writes.  A server with
     * a damaged log refuses to start instead, and says which file. */
    raft_uv_set_auto_recovery(&r->io, false);
    rv = raft_init(&r->raft, &r->io, &r->fsm, r->id, r->address);
    if (rv != 0)
        goto raft_fail;
    raft_set_snapshot_threshold(&r->raft, cfg->snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, cfg->snapshot_trailing);
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
raft_fail : {
    const char *detail = raft_errmsg(&r->raft);
    kr_errf(errmsg, KR_EIO, "raft on %s: %s%s%s%s", r->address,
            raft_strerror(rv), *detail ? ": " : "", detail,
            rv == RAFT_IOERR && !*detail ? " (is the rpc port already in use?)"
                                         : "");
}
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
    if (entry->len > UINT32_MAX - 8) {
        free(a);
        return KR_ETOOBIG;
    }
    buf.len = frame_size(entry->len);
    buf.base = raft_calloc(1, buf.len);
    if (buf.base == NULL) {
        free(a);
        return KR_ENOMEM;
    }
    for (int i = 0; i < FRAME_HEADER; i++)
        ((uint8_t *)buf.base)[i] = (uint8_t)(entry->len >> (8 * i));
    memcpy((uint8_t *)buf.base + FRAME_HEADER, entry->data, entry->len);
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
