/*
 * See codec.h.  Field order is the wire format: append fields only at the
 * end of a record and bump KR_ENTRY_VERSION when an old reader could
 * misread a new record.
 */
#include "state/codec.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define MAX_WRAPPED 16
#define MAX_ID_LEN 256
/* Wrapped keys and Variable ciphertexts; see KR_VAR_DATA_MAX. */
#define MAX_BLOB_LEN KR_VAR_DATA_MAX

static void put_blob(struct kr_buf *b, const struct kr_blob *x)
{
    kr_buf_bytes(b, x->ciphertext, x->ciphertext_len);
    kr_buf_bytes(b, x->iv, x->iv_len);
    kr_buf_u64(b, x->mechanism);
    kr_buf_str(b, x->key_id);
    kr_buf_bytes(b, x->wrapped_key, x->wrapped_key_len);
}

static bool get_bytes(struct kr_rd *r, uint8_t **out, size_t *outlen)
{
    size_t n;
    const uint8_t *p = kr_rd_bytes(r, &n);

    *out = NULL;
    *outlen = 0;
    if (r->err || n > MAX_BLOB_LEN)
        return false;
    if (n == 0)
        return true;
    *out = malloc(n);
    if (*out == NULL)
        return false;
    memcpy(*out, p, n);
    *outlen = n;
    return true;
}

static bool get_blob(struct kr_rd *r, struct kr_blob *x)
{
    memset(x, 0, sizeof(*x));
    if (!get_bytes(r, &x->ciphertext, &x->ciphertext_len) ||
        !get_bytes(r, &x->iv, &x->iv_len))
        return false;
    x->mechanism = kr_rd_u64(r);
    x->key_id = kr_rd_strdup(r, MAX_ID_LEN);
    if (x->key_id == NULL)
        return false;
    return get_bytes(r, &x->wrapped_key, &x->wrapped_key_len);
}

void kr_codec_put_root_key(struct kr_buf *b, const struct kr_root_key *k)
{
    kr_buf_str(b, k->key_id);
    kr_buf_str(b, k->algorithm);
    kr_buf_i64(b, k->create_time);
    kr_buf_u64(b, k->create_index);
    kr_buf_u64(b, k->modify_index);
    kr_buf_u8(b, (uint8_t)k->state);
    kr_buf_i64(b, k->publish_time);
    kr_buf_u32(b, (uint32_t)k->n_wrapped);
    for (size_t i = 0; i < k->n_wrapped; i++) {
        const struct kr_wrapped_key *w = &k->wrapped[i];
        kr_buf_str(b, w->provider);
        kr_buf_str(b, w->provider_id);
        put_blob(b, &w->dek);
        put_blob(b, &w->rsa);
        if (w->kek != NULL)
            kr_buf_bytes(b, w->kek->data, w->kek->len);
        else
            kr_buf_bytes(b, NULL, 0);
    }
}

void kr_root_key_clear(struct kr_root_key *k)
{
    for (size_t i = 0; i < k->n_wrapped; i++)
        kr_wrapped_key_clear(&k->wrapped[i]);
    free(k->wrapped);
    k->wrapped = NULL;
    k->n_wrapped = 0;
}

/* Copies a fixed-size string field; false when too long or holding NUL. */
static bool get_fixed(struct kr_rd *r, char *out, size_t cap)
{
    size_t n;
    const uint8_t *p = kr_rd_bytes(r, &n);

    if (r->err || n >= cap || (n > 0 && memchr(p, '\0', n) != NULL))
        return false;
    if (n > 0)
        memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

bool kr_codec_get_root_key(struct kr_rd *r, struct kr_root_key *k)
{
    uint8_t st;
    uint32_t n;

    memset(k, 0, sizeof(*k));
    if (!get_fixed(r, k->key_id, sizeof(k->key_id)) ||
        !get_fixed(r, k->algorithm, sizeof(k->algorithm)))
        return false;
    k->create_time = kr_rd_i64(r);
    k->create_index = kr_rd_u64(r);
    k->modify_index = kr_rd_u64(r);
    st = kr_rd_u8(r);
    k->publish_time = kr_rd_i64(r);
    n = kr_rd_u32(r);
    if (r->err || st > KR_KEY_DEPRECATED || n > MAX_WRAPPED)
        return false;
    k->state = (enum kr_key_state)st;
    if (n > 0) {
        k->wrapped = calloc(n, sizeof(*k->wrapped));
        if (k->wrapped == NULL)
            return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct kr_wrapped_key *w = &k->wrapped[i];
        size_t keklen;
        const uint8_t *kek;

        k->n_wrapped = i + 1;
        w->provider = kr_rd_strdup(r, MAX_ID_LEN);
        w->provider_id = kr_rd_strdup(r, MAX_ID_LEN);
        if (w->provider == NULL || w->provider_id == NULL ||
            !get_blob(r, &w->dek) || !get_blob(r, &w->rsa))
            goto fail;
        kek = kr_rd_bytes(r, &keklen);
        if (r->err || keklen > 64)
            goto fail;
        if (keklen > 0) {
            w->kek = kr_secret_dup(kek, keklen);
            if (w->kek == NULL)
                goto fail;
        }
    }
    return true;
fail:
    kr_root_key_clear(k);
    return false;
}

/* A VAR_REKEY entry but its items: version and type (kr_entry_encode),
 * then what put_rekey writes before the items. */
size_t kr_rekey_head_size(const char *after_ns, const char *after_path)
{
    return 2 + (4 + KR_UUID_LEN) + (4 + (after_ns ? strlen(after_ns) : 0)) +
           (4 + (after_path ? strlen(after_path) : 0)) + 4;
}

size_t kr_rekey_item_size(const char *ns, const char *path, size_t data_len)
{
    return (4 + strlen(ns)) + (4 + strlen(path)) + 8 + (4 + data_len);
}

static void put_rekey(struct kr_buf *out, const struct kr_entry_var_rekey *e)
{
    kr_buf_str(out, e->key_id);
    kr_buf_str(out, e->after_ns != NULL ? e->after_ns : "");
    kr_buf_str(out, e->after_path != NULL ? e->after_path : "");
    kr_buf_u32(out, e->n_items);
    for (uint32_t i = 0; i < e->n_items; i++) {
        const struct kr_rekey_item *it = &e->items[i];
        kr_buf_str(out, it->namespace);
        kr_buf_str(out, it->path);
        kr_buf_u64(out, it->modify_index);
        kr_buf_bytes(out, it->data, it->data_len);
    }
}

static bool get_rekey(struct kr_rd *r, struct kr_entry_var_rekey *e)
{
    if (!get_fixed(r, e->key_id, sizeof(e->key_id)))
        return false;
    e->after_ns = kr_rd_strdup(r, KR_NAMESPACE_MAX);
    e->after_path = kr_rd_strdup(r, KR_VAR_PATH_MAX);
    e->n_items = kr_rd_u32(r);
    if (e->after_ns == NULL || e->after_path == NULL || r->err ||
        e->n_items > KR_REKEY_ITEMS_MAX)
        return false;
    /* Each item takes at least 4 + 4 + 8 + 4 bytes: a count the entry
     * cannot hold is refused before allocating for it. */
    if ((size_t)e->n_items > (r->len - r->off) / 20)
        return false;
    e->items = e->n_items ? calloc(e->n_items, sizeof(*e->items)) : NULL;
    if (e->n_items > 0 && e->items == NULL)
        return false;
    for (uint32_t i = 0; i < e->n_items; i++) {
        struct kr_rekey_item *it = &e->items[i];
        it->namespace = kr_rd_strdup(r, KR_NAMESPACE_MAX);
        it->path = kr_rd_strdup(r, KR_VAR_PATH_MAX);
        it->modify_index = kr_rd_u64(r);
        if (it->namespace == NULL || it->path == NULL ||
            !get_bytes(r, &it->data, &it->data_len))
            return false;
    }
    return true;
}

int kr_entry_encode(const struct kr_entry *e, struct kr_buf *out)
{
    kr_buf_u8(out, KR_ENTRY_VERSION);
    kr_buf_u8(out, e->type);
    switch (e->type) {
    case KR_ENTRY_KEY_UPSERT:
        kr_codec_put_root_key(out, &e->key_upsert.key);
        kr_buf_u8(out, e->key_upsert.rekey ? 1 : 0);
        break;
    case KR_ENTRY_KEY_DELETE:
        kr_buf_str(out, e->key_delete.key_id);
        kr_buf_u8(out, e->key_delete.force ? 1 : 0);
        break;
    case KR_ENTRY_VAR_APPLY:
        kr_buf_u8(out, e->var.op);
        kr_buf_str(out, e->var.namespace);
        kr_buf_str(out, e->var.path);
        kr_buf_u64(out, e->var.cas);
        kr_buf_str(out, e->var.key_id);
        kr_buf_bytes(out, e->var.data, e->var.data_len);
        kr_buf_i64(out, e->var.now);
        break;
    case KR_ENTRY_VAR_REKEY:
        put_rekey(out, &e->rekey);
        break;
    case KR_ENTRY_IDENTITY:
        kr_buf_str(out, e->identity.key_id);
        kr_buf_i64(out, e->identity.exp);
        kr_buf_u8(out, e->identity.no_exp ? 1 : 0);
        break;
    case KR_ENTRY_RESTORE_BEGIN:
        kr_buf_u64(out, e->restore.id);
        kr_buf_u64(out, e->restore.total);
        break;
    case KR_ENTRY_RESTORE_CHUNK:
        kr_buf_u64(out, e->restore.id);
        kr_buf_u64(out, e->restore.offset);
        kr_buf_bytes(out, e->restore.data, e->restore.data_len);
        break;
    case KR_ENTRY_RESTORE_COMMIT:
    case KR_ENTRY_RESTORE_ABORT:
        kr_buf_u64(out, e->restore.id);
        break;
    default:
        return KR_EINVAL;
    }
    return out->oom ? KR_ENOMEM : 0;
}

void kr_entry_clear(struct kr_entry *e)
{
    kr_root_key_clear(&e->key_upsert.key);
    free(e->var.namespace);
    free(e->var.path);
    free(e->var.data);
    for (uint32_t i = 0; e->rekey.items != NULL && i < e->rekey.n_items; i++) {
        free(e->rekey.items[i].namespace);
        free(e->rekey.items[i].path);
        free(e->rekey.items[i].data);
    }
    free(e->rekey.items);
    free(e->rekey.after_ns);
    free(e->rekey.after_path);
    if (e->restore.data != NULL) {
        /* A chunk of a state snapshot holds aead KEKs. */
        explicit_bzero(e->restore.data, e->restore.data_len);
        free(e->restore.data);
    }
    memset(e, 0, sizeof(*e));
}

/* A restore chunk: 1 to KR_RESTORE_CHUNK_MAX bytes. */
static bool get_chunk(struct kr_rd *r, struct kr_entry_restore *e)
{
    size_t n;
    const uint8_t *p = kr_rd_bytes(r, &n);

    if (r->err || n == 0 || n > KR_RESTORE_CHUNK_MAX)
        return false;
    e->data = malloc(n);
    if (e->data == NULL)
        return false;
    memcpy(e->data, p, n);
    e->data_len = n;
    return true;
}

static bool get_bool(struct kr_rd *r, bool *out)
{
    uint8_t v = kr_rd_u8(r);

    *out = v == 1;
    return !r->err && v <= 1;
}

int kr_entry_decode(struct kr_entry *e, const void *buf, size_t len,
                    char *errmsg)
{
    struct kr_rd r;
    uint8_t version;
    bool ok = false;

    memset(e, 0, sizeof(*e));
    kr_rd_init(&r, buf, len);
    version = kr_rd_u8(&r);
    e->type = kr_rd_u8(&r);
    if (r.err)
        return kr_errf(errmsg, KR_ECORRUPT, "log entry truncated");
    if (version != KR_ENTRY_VERSION)
        return kr_errf(errmsg, KR_ECORRUPT,
                       "log entry version %u is not supported", version);
    switch (e->type) {
    case KR_ENTRY_KEY_UPSERT:
        ok = kr_codec_get_root_key(&r, &e->key_upsert.key) &&
             get_bool(&r, &e->key_upsert.rekey);
        break;
    case KR_ENTRY_KEY_DELETE:
        ok =
            get_fixed(&r, e->key_delete.key_id, sizeof(e->key_delete.key_id)) &&
            get_bool(&r, &e->key_delete.force);
        break;
    case KR_ENTRY_VAR_APPLY:
        e->var.op = kr_rd_u8(&r);
        e->var.namespace = kr_rd_strdup(&r, KR_NAMESPACE_MAX);
        e->var.path = kr_rd_strdup(&r, KR_VAR_PATH_MAX);
        e->var.cas = kr_rd_u64(&r);
        ok = e->var.namespace != NULL && e->var.path != NULL &&
             get_fixed(&r, e->var.key_id, sizeof(e->var.key_id)) &&
             get_bytes(&r, &e->var.data, &e->var.data_len);
        e->var.now = kr_rd_i64(&r);
        ok = ok && e->var.op >= KR_VAR_SET && e->var.op <= KR_VAR_DELETE_CAS;
        break;
    case KR_ENTRY_VAR_REKEY:
        ok = get_rekey(&r, &e->rekey);
        break;
    case KR_ENTRY_IDENTITY:
        ok = get_fixed(&r, e->identity.key_id, sizeof(e->identity.key_id));
        e->identity.exp = kr_rd_i64(&r);
        ok = ok && get_bool(&r, &e->identity.no_exp);
        break;
    case KR_ENTRY_RESTORE_BEGIN:
        e->restore.id = kr_rd_u64(&r);
        e->restore.total = kr_rd_u64(&r);
        ok = !r.err;
        break;
    case KR_ENTRY_RESTORE_CHUNK:
        e->restore.id = kr_rd_u64(&r);
        e->restore.offset = kr_rd_u64(&r);
        ok = get_chunk(&r, &e->restore);
        break;
    case KR_ENTRY_RESTORE_COMMIT:
    case KR_ENTRY_RESTORE_ABORT:
        e->restore.id = kr_rd_u64(&r);
        ok = !r.err;
        break;
    default:
        return kr_errf(errmsg, KR_ECORRUPT, "unknown log entry type %u",
                       e->type);
    }
    if (!ok || !kr_rd_done(&r)) {
        kr_entry_clear(e);
        return kr_errf(errmsg, KR_ECORRUPT, "malformed log entry");
    }
    return 0;
}
