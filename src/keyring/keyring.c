/*
 * See keyring.h.  Cipher sets, decrypt tasks and waiters are short linked
 * lists: a keyring holds tens of keys, not thousands.
 *
 * Lifetimes: a decrypt task owns copies of the wrapped entries it unwraps,
 * so the state may change under it; when it finishes it installs its
 * cipher set only if the key is still in the state.  Every uv handle and
 * work request counts in kr->busy, and a closing keyring frees itself when
 * the count reaches zero.
 */
#include "keyring/keyring.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/thread.h"
#include "common/time.h"
#include "crypto/aead.h"
#include "crypto/rand.h"
#include "crypto/sign.h"
#include "state/codec.h"

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 5000

struct cipher_set {
    char key_id[KR_UUID_LEN + 1];
    struct kr_secret *dek;
    struct kr_secret *rsa; /* NULL for legacy keys without RSA */
    struct kr_aead *aead;
    struct kr_signer *rsa_signer;
    struct kr_signer *ed_signer;
    struct cipher_set *next;
};

struct task {
    struct kr_keyring *kr;
    char key_id[KR_UUID_LEN + 1];
    uint64_t restore_gen; /* the state's, when the task began */
    struct kr_wrapped_key *wrapped;
    size_t n_wrapped;
    uv_work_t work;
    uv_timer_t retry;
    bool running;
    bool cancelled;
    uint64_t backoff_ms;
    unsigned attempts;
    struct cipher_set *result;
    char work_err[KR_ERRMSG_SIZE]; /* written by the worker only */
    char errmsg[KR_ERRMSG_SIZE];   /* loop thread: last attempt's error */
    struct task *next;
};

struct kr_keyring_waiter {
    struct kr_keyring *kr;
    char key_id[KR_UUID_LEN + 1];
    uv_timer_t timer;
    kr_keyring_wait_cb cb;
    void *arg;
    struct kr_keyring_waiter *next;
};

struct gen_job {
    struct kr_keyring *kr;
    uv_work_t work;
    enum kr_key_state state;
    int64_t publish_time;
    int64_t now_ns;
    bool rekey;
    struct kr_kms **active;
    size_t n_active;
    int status;
    char errmsg[KR_ERRMSG_SIZE];
    struct kr_buf entry;
    struct kr_root_key meta;
    kr_keyring_generate_cb cb;
    void *arg;
};

struct kr_keyring {
    uv_loop_t *loop;
    struct kr_kms *const *providers;
    size_t n_providers;
    const struct kr_state *state;
    uint64_t synced_gen;
    uint64_t synced_restore_gen;
    bool synced_once;
    struct cipher_set *sets;
    struct task *tasks;
    struct kr_keyring_waiter *waiters;
    unsigned busy; /* open handles + queued work */
    bool closing;
};

static void maybe_free(struct kr_keyring *kr)
{
    if (kr->closing && kr->busy == 0)
        free(kr);
}

static void cipher_set_free(struct cipher_set *c)
{
    if (c == NULL)
        return;
    kr_secret_free(c->dek);
    kr_secret_free(c->rsa);
    kr_aead_free(c->aead);
    kr_signer_free(c->rsa_signer);
    kr_signer_free(c->ed_signer);
    explicit_bzero(c, sizeof(*c));
    free(c);
}

int kr_keyring_new(struct kr_keyring **out, uv_loop_t *loop,
                   struct kr_kms *const *providers, size_t n,
                   const struct kr_state *state)
{
    struct kr_keyring *kr = calloc(1, sizeof(*kr));

    if (kr == NULL)
        return KR_ENOMEM;
    kr->loop = loop;
    kr->providers = providers;
    kr->n_providers = n;
    kr->state = state;
    *out = kr;
    return 0;
}

static struct cipher_set *set_find(const struct kr_keyring *kr,
                                   const char *key_id)
{
    for (struct cipher_set *c = kr->sets; c != NULL; c = c->next)
        if (strcmp(c->key_id, key_id) == 0)
            return c;
    return NULL;
}

bool kr_keyring_has(const struct kr_keyring *kr, const char *key_id)
{
    return set_find(kr, key_id) != NULL;
}

static struct task *task_find(const struct kr_keyring *kr, const char *key_id)
{
    for (struct task *t = kr->tasks; t != NULL; t = t->next)
        if (!t->cancelled && strcmp(t->key_id, key_id) == 0)
            return t;
    return NULL;
}

/* ---- waiters ---- */

static void waiter_closed(uv_handle_t *h)
{
    struct kr_keyring_waiter *w = h->data;
    struct kr_keyring *kr = w->kr;

    free(w);
    kr->busy--;
    maybe_free(kr);
}

static void waiter_unlink(struct kr_keyring_waiter *w)
{
    struct kr_keyring_waiter **pp = &w->kr->waiters;

    while (*pp != NULL && *pp != w)
        pp = &(*pp)->next;
    if (*pp == w)
        *pp = w->next;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

/* Unlinks w, then calls its callback: the callback may wait again. */
static void waiter_fire(struct kr_keyring_waiter *w, int status)
{
    kr_keyring_wait_cb cb = w->cb;
    void *arg = w->arg;

    waiter_unlink(w);
    cb(arg, status);
}

static void waiter_timeout(uv_timer_t *t)
{
    waiter_fire(t->data, KR_ENOTREADY);
}

/* A waiter with an empty key_id waits for the active key. */
static bool waiter_matches(const struct kr_keyring *kr,
                           const struct kr_keyring_waiter *w,
                           const char *key_id)
{
    const struct kr_root_key *active;

    if (w->key_id[0] != '\0')
        return strcmp(w->key_id, key_id) == 0;
    active = kr_state_key_active(kr->state);
    return active != NULL && strcmp(active->key_id, key_id) == 0;
}

static void wake_waiters(struct kr_keyring *kr, const char *key_id)
{
    struct kr_keyring_waiter *w, *next;

    /* Restart after each callback: it may have added or removed waiters. */
again:
    for (w = kr->waiters; w != NULL; w = next) {
        next = w->next;
        if (waiter_matches(kr, w, key_id)) {
            waiter_fire(w, 0);
            goto again;
        }
    }
}

int kr_keyring_wait(struct kr_keyring *kr, const char *key_id,
                    uint64_t timeout_ms, kr_keyring_wait_cb cb, void *arg,
                    struct kr_keyring_waiter **out)
{
    struct kr_keyring_waiter *w;

    if (out != NULL)
        *out = NULL;
    const struct kr_root_key *active = kr_state_key_active(kr->state);

    if (kr->closing)
        return KR_ESHUTDOWN;
    if (key_id == NULL ? active != NULL && set_find(kr, active->key_id)
                       : set_find(kr, key_id) != NULL) {
        cb(arg, 0);
        return 0;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return KR_ENOMEM;
    w->kr = kr;
    snprintf(w->key_id, sizeof(w->key_id), "%s", key_id ? key_id : "");
    w->cb = cb;
    w->arg = arg;
    uv_timer_init(kr->loop, &w->timer);
    w->timer.data = w;
    kr->busy++;
    uv_timer_start(&w->timer, waiter_timeout, timeout_ms, 0);
    w->next = kr->waiters;
    kr->waiters = w;
    if (out != NULL)
        *out = w;
    return 0;
}

void kr_keyring_wait_cancel(struct kr_keyring_waiter *w)
{
    if (w != NULL)
        waiter_unlink(w);
}

/* ---- decrypt tasks ---- */

static void task_closed(uv_handle_t *h)
{
    struct task *t = h->data;
    struct kr_keyring *kr = t->kr;

    for (size_t i = 0; i < t->n_wrapped; i++)
        kr_wrapped_key_clear(&t->wrapped[i]);
    free(t->wrapped);
    cipher_set_free(t->result);
    free(t);
    kr->busy--;
    maybe_free(kr);
}

static void task_unlink_and_free(struct task *t)
{
    struct task **pp = &t->kr->tasks;

    while (*pp != NULL && *pp != t)
        pp = &(*pp)->next;
    if (*pp == t)
        *pp = t->next;
    uv_timer_stop(&t->retry);
    uv_close((uv_handle_t *)&t->retry, task_closed);
}

static struct kr_kms *provider_find(const struct kr_keyring *kr, const char *id)
{
    for (size_t i = 0; i < kr->n_providers; i++)
        if (strcmp(kr_kms_id(kr->providers[i]), id) == 0)
            return kr->providers[i];
    return NULL;
}

/* Builds a cipher set from unwrapped material (moved in). */
static int build_set(const char *key_id, struct kr_secret *dek,
                     struct kr_secret *rsa, struct cipher_set **out)
{
    struct cipher_set *c = calloc(1, sizeof(*c));
    int rv = KR_ENOMEM;

    if (c == NULL) {
        kr_secret_free(dek);
        kr_secret_free(rsa);
        return rv;
    }
    snprintf(c->key_id, sizeof(c->key_id), "%s", key_id);
    c->dek = dek;
    c->rsa = rsa;
    rv = kr_aead_new(&c->aead, dek->data);
    if (rv == 0)
        rv = kr_signer_from_ed25519_seed(&c->ed_signer, dek->data);
    if (rv == 0 && rsa != NULL)
        rv = kr_signer_from_rsa_der(&c->rsa_signer, rsa->data, rsa->len);
    if (rv != 0) {
        cipher_set_free(c);
        return rv;
    }
    *out = c;
    return 0;
}

/* Worker thread: tries each wrapping whose provider is configured here. */
static void task_work(uv_work_t *req)
{
    struct task *t = req->data;
    char err[KR_ERRMSG_SIZE] = "";
    bool tried = false;

    t->work_err[0] = '\0';
    for (size_t i = 0; i < t->n_wrapped && t->result == NULL; i++) {
        const struct kr_wrapped_key *w = &t->wrapped[i];
        const char *pid =
            w->provider_id && *w->provider_id ? w->provider_id : "aead";
        struct kr_kms *k = provider_find(t->kr, pid);
        struct kr_secret *dek = NULL, *rsa = NULL;
        int rv;

        if (k == NULL) {
            snprintf(err, sizeof(err), "no such KMS provider \"%s\" configured",
                     pid);
            continue;
        }
        tried = true;
        rv = kr_kms_unwrap(k, t->key_id, w, &dek, &rsa, err);
        if (rv == 0)
            rv = build_set(t->key_id, dek, rsa, &t->result);
        if (rv != 0 && err[0] == '\0')
            snprintf(err, sizeof(err), "%s", kr_strerror(rv));
    }
    if (t->result != NULL)
        return;
    snprintf(t->work_err, sizeof(t->work_err), "%s",
             err[0] ? err : "key has no wrapped material");
    if (!tried)
        kr_errwrap(t->work_err, "no wrapping can be tried");
}

static void task_start(struct task *t);

static void task_retry(uv_timer_t *timer)
{
    task_start(timer->data);
}

static void task_done(uv_work_t *req, int status)
{
    struct task *t = req->data;
    struct kr_keyring *kr = t->kr;

    (void)status;
    t->running = false;
    kr->busy--;
    if (t->cancelled || kr->closing) {
        task_unlink_and_free(t);
        return;
    }
    if (t->result != NULL) {
        const struct kr_root_key *k = kr_state_key_get(kr->state, t->key_id);
        /* Material unwrapped before a restore may not be the key's any
         * more: only a task of the current state installs. */
        if (k != NULL && !k->redacted &&
            t->restore_gen == kr_state_restore_generation(kr->state) &&
            set_find(kr, t->key_id) == NULL) {
            t->result->next = kr->sets;
            kr->sets = t->result;
            t->result = NULL;
            KR_INFO("keyring", "key %s decrypted", t->key_id);
        }
        /* Copy: freeing the task invalidates its key_id. */
        char id[KR_UUID_LEN + 1];
        memcpy(id, t->key_id, sizeof(id));
        task_unlink_and_free(t);
        wake_waiters(kr, id);
        return;
    }
    /* uv_queue_work's completion orders the worker's writes before this. */
    memcpy(t->errmsg, t->work_err, sizeof(t->errmsg));
    t->attempts++;
    KR_WARN("keyring", "decrypting key %s failed (attempt %u): %s", t->key_id,
            t->attempts, t->errmsg);
    uv_timer_start(&t->retry, task_retry, t->backoff_ms, 0);
    t->backoff_ms =
        t->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : t->backoff_ms * 2;
}

static void task_start(struct task *t)
{
    t->running = true;
    t->work.data = t;
    t->kr->busy++;
    if (uv_queue_work(t->kr->loop, &t->work, task_work, task_done) != 0) {
        t->running = false;
        t->kr->busy--;
        uv_timer_start(&t->retry, task_retry, t->backoff_ms, 0);
    }
}

static void task_create(struct kr_keyring *kr, const struct kr_root_key *k)
{
    struct task *t = calloc(1, sizeof(*t));

    if (t == NULL)
        goto oom;
    t->kr = kr;
    memcpy(t->key_id, k->key_id, sizeof(t->key_id));
    t->restore_gen = kr_state_restore_generation(kr->state);
    t->backoff_ms = RETRY_MIN_MS;
    if (k->n_wrapped > 0) {
        t->wrapped = calloc(k->n_wrapped, sizeof(*t->wrapped));
        if (t->wrapped == NULL)
            goto oom;
    }
    for (size_t i = 0; i < k->n_wrapped; i++) {
        if (kr_wrapped_key_copy(&t->wrapped[i], &k->wrapped[i]) != 0)
            goto oom;
        t->n_wrapped = i + 1;
    }
    uv_timer_init(kr->loop, &t->retry);
    t->retry.data = t;
    kr->busy++;
    t->next = kr->tasks;
    kr->tasks = t;
    task_start(t);
    return;
oom:
    /* The next sync tries again. */
    KR_ERROR("keyring", "out of memory starting decrypt task for %s",
             k->key_id);
    if (t != NULL) {
        for (size_t i = 0; i < t->n_wrapped; i++)
            kr_wrapped_key_clear(&t->wrapped[i]);
        free(t->wrapped);
        free(t);
    }
    kr->synced_once = false;
}

/* Whether a cipher set or task for key_id may stay: the key is in the
 * state, has material, and the state was not replaced since (restored,
 * a KeyID may name other material, or none). */
static bool keep(const struct kr_keyring *kr, const char *key_id, bool restored)
{
    const struct kr_root_key *k = kr_state_key_get(kr->state, key_id);

    return !restored && k != NULL && !k->redacted;
}

void kr_keyring_sync(struct kr_keyring *kr)
{
    uint64_t gen = kr_state_keys_generation(kr->state);
    uint64_t rgen = kr_state_restore_generation(kr->state);
    bool restored = kr->synced_once && rgen != kr->synced_restore_gen;
    struct cipher_set **pp;
    struct task *t, *next;

    if (kr->closing || (kr->synced_once && gen == kr->synced_gen && !restored))
        return;
    if (restored)
        KR_INFO("keyring", "state replaced by a snapshot: decrypting every "
                           "key again");
    kr->synced_gen = gen;
    kr->synced_restore_gen = rgen;
    kr->synced_once = true;
    /* Drop what the state no longer has. */
    for (pp = &kr->sets; *pp != NULL;) {
        struct cipher_set *c = *pp;
        if (!keep(kr, c->key_id, restored)) {
            *pp = c->next;
            KR_INFO("keyring", "key %s removed from keyring", c->key_id);
            cipher_set_free(c);
        } else {
            pp = &c->next;
        }
    }
    for (t = kr->tasks; t != NULL; t = next) {
        next = t->next;
        if (!t->cancelled && !keep(kr, t->key_id, restored)) {
            t->cancelled = true;
            if (!t->running)
                task_unlink_and_free(t);
        }
    }
    /* Start what is missing. */
    for (size_t i = 0; i < kr_state_key_count(kr->state); i++) {
        const struct kr_root_key *k = kr_state_key_at(kr->state, i);
        /* A redacted key has nothing to decrypt (Nomad #25791 ignores
         * keys without wrappings the same way). */
        if (!k->redacted && set_find(kr, k->key_id) == NULL &&
            task_find(kr, k->key_id) == NULL)
            task_create(kr, k);
    }
}

size_t kr_keyring_pending(const struct kr_keyring *kr, char *ids, size_t cap)
{
    size_t n = 0, off = 0;

    if (ids != NULL && cap > 0)
        ids[0] = '\0';
    for (size_t i = 0; i < kr_state_key_count(kr->state); i++) {
        const struct kr_root_key *k = kr_state_key_at(kr->state, i);
        if (k->redacted || set_find(kr, k->key_id) != NULL)
            continue;
        if (ids != NULL && off < cap) {
            int w =
                snprintf(ids + off, cap - off, "%s%s", n ? " " : "", k->key_id);
            off += w > 0 ? (size_t)w : 0;
        }
        n++;
    }
    return n;
}

const char *kr_keyring_last_error(const struct kr_keyring *kr,
                                  const char *key_id)
{
    struct task *t = task_find(kr, key_id);

    return t != NULL && t->errmsg[0] != '\0' ? t->errmsg : NULL;
}

void kr_keyring_close(struct kr_keyring *kr)
{
    struct task *t, *next;

    if (kr == NULL)
        return;
    kr->closing = true;
    while (kr->waiters != NULL)
        waiter_fire(kr->waiters, KR_ESHUTDOWN);
    for (t = kr->tasks; t != NULL; t = next) {
        next = t->next;
        t->cancelled = true;
        if (!t->running)
            task_unlink_and_free(t);
    }
    while (kr->sets != NULL) {
        struct cipher_set *c = kr->sets;
        kr->sets = c->next;
        cipher_set_free(c);
    }
    maybe_free(kr);
}

/* ---- encryption with installed keys ---- */

int kr_keyring_seal(struct kr_keyring *kr, const char *key_id,
                    const uint8_t *pt, size_t ptlen, struct kr_buf *out)
{
    struct cipher_set *c = set_find(kr, key_id);
    int rv;

    if (c == NULL)
        return KR_ENOTREADY;
    rv = kr_buf_reserve(out, ptlen + KR_AEAD_OVERHEAD);
    if (rv != 0)
        return rv;
    rv = kr_aead_seal(c->aead, (const uint8_t *)key_id, strlen(key_id), pt,
                      ptlen, out->data + out->len);
    if (rv == 0)
        out->len += ptlen + KR_AEAD_OVERHEAD;
    return rv;
}

int kr_keyring_open(struct kr_keyring *kr, const char *key_id,
                    const uint8_t *data, size_t len, struct kr_secret **out)
{
    struct cipher_set *c = set_find(kr, key_id);
    struct kr_secret *s;
    size_t n = 0;
    int rv;

    if (c == NULL)
        return KR_ENOTREADY;
    if (len < KR_AEAD_OVERHEAD)
        return KR_ECRYPTO;
    s = kr_secret_new(len - KR_AEAD_OVERHEAD);
    if (s == NULL)
        return KR_ENOMEM;
    rv = kr_aead_open(c->aead, (const uint8_t *)key_id, strlen(key_id), data,
                      len, s->data, &n);
    if (rv != 0) {
        kr_secret_free(s);
        return rv;
    }
    *out = s;
    return 0;
}

struct kr_keyring_cipher {
    char key_id[KR_UUID_LEN + 1];
    struct kr_aead *aead;
};

int kr_keyring_cipher_copy(const struct kr_keyring *kr, const char *key_id,
                           struct kr_keyring_cipher **out)
{
    const struct cipher_set *c = set_find(kr, key_id);
    struct kr_keyring_cipher *k;
    int rv;

    if (c == NULL)
        return KR_ENOTREADY;
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return KR_ENOMEM;
    memcpy(k->key_id, c->key_id, sizeof(k->key_id));
    rv = kr_aead_copy(c->aead, &k->aead);
    if (rv != 0) {
        free(k);
        return rv;
    }
    *out = k;
    return 0;
}

void kr_keyring_cipher_free(struct kr_keyring_cipher *c)
{
    if (c == NULL)
        return;
    kr_aead_free(c->aead);
    free(c);
}

const char *kr_keyring_cipher_key_id(const struct kr_keyring_cipher *c)
{
    return c->key_id;
}

int kr_keyring_reseal(struct kr_keyring_cipher *from,
                      struct kr_keyring_cipher *to, uint8_t *data, size_t len,
                      uint8_t *scratch)
{
    size_t n = 0;
    int rv;

    if (len < KR_AEAD_OVERHEAD)
        return KR_ECRYPTO;
    rv = kr_aead_open(from->aead, (const uint8_t *)from->key_id,
                      strlen(from->key_id), data, len, scratch, &n);
    if (rv != 0)
        return KR_ECRYPTO;
    rv = kr_aead_seal(to->aead, (const uint8_t *)to->key_id, strlen(to->key_id),
                      scratch, n, data);
    explicit_bzero(scratch, n);
    /* Not the data's fault (the random source or OpenSSL failed). */
    return rv == 0 ? 0 : KR_EIO;
}

struct kr_signer *kr_keyring_signer(const struct kr_keyring *kr,
                                    const char *key_id, enum kr_sign_kind kind)
{
    const struct cipher_set *c = set_find(kr, key_id);

    if (c == NULL)
        return NULL;
    return kind == KR_SIGN_RSA ? c->rsa_signer : c->ed_signer;
}

/* ---- key generation ---- */

static void gen_work(uv_work_t *req)
{
    struct gen_job *g = req->data;
    struct kr_root_key *k = &g->meta;
    struct kr_secret *dek = NULL, *rsa = NULL;
    struct kr_entry e;
    /* An RSA key takes tens to hundreds of ms of CPU: not the loop's. */
    int prio = kr_thread_background();
    int rv;

    rv = kr_rand_uuid(k->key_id);
    if (rv != 0)
        goto out;
    snprintf(k->algorithm, sizeof(k->algorithm), "%s", KR_ALGORITHM_AES256GCM);
    k->create_time = g->now_ns;
    k->state = g->state;
    k->publish_time = g->state == KR_KEY_PREPUBLISHED ? g->publish_time : 0;
    dek = kr_secret_new(KR_AEAD_KEY_LEN);
    if (dek == NULL) {
        rv = KR_ENOMEM;
        goto out;
    }
    rv = kr_rand_bytes(dek->data, dek->len);
    if (rv == 0)
        rv = kr_sign_rsa_generate(&rsa);
    if (rv != 0)
        goto out;
    k->wrapped = calloc(g->n_active, sizeof(*k->wrapped));
    if (k->wrapped == NULL) {
        rv = KR_ENOMEM;
        goto out;
    }
    /* All-or-nothing: if any active provider fails, nothing is proposed. */
    for (size_t i = 0; i < g->n_active; i++) {
        rv = kr_kms_wrap(g->active[i], k->key_id, dek, rsa, &k->wrapped[i],
                         g->errmsg);
        if (rv != 0)
            goto out;
        k->n_wrapped = i + 1;
    }
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_UPSERT;
    e.key_upsert.key = *k;
    e.key_upsert.rekey = g->rekey;
    rv = kr_entry_encode(&e, &g->entry);
out:
    if (rv != 0 && g->errmsg[0] == '\0')
        snprintf(g->errmsg, sizeof(g->errmsg), "generating root key: %s",
                 kr_strerror(rv));
    g->status = rv;
    kr_secret_free(dek);
    kr_secret_free(rsa);
    kr_thread_foreground(prio);
}

static void gen_done(uv_work_t *req, int status)
{
    struct gen_job *g = req->data;
    struct kr_keyring *kr = g->kr;

    (void)status;
    kr->busy--;
    if (kr->closing)
        g->cb(g->arg, KR_ESHUTDOWN, NULL, NULL, "shutting down");
    else
        g->cb(g->arg, g->status, g->status == 0 ? &g->entry : NULL, &g->meta,
              g->errmsg);
    kr_buf_free(&g->entry);
    kr_root_key_clear(&g->meta);
    free(g->active);
    free(g);
    maybe_free(kr);
}

int kr_keyring_generate(struct kr_keyring *kr, enum kr_key_state state,
                        int64_t publish_time, bool rekey, int64_t now_ns,
                        kr_keyring_generate_cb cb, void *arg)
{
    struct gen_job *g;

    if (kr->closing)
        return KR_ESHUTDOWN;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return KR_ENOMEM;
    g->active =
        calloc(kr->n_providers ? kr->n_providers : 1, sizeof(*g->active));
    if (g->active == NULL) {
        free(g);
        return KR_ENOMEM;
    }
    for (size_t i = 0; i < kr->n_providers; i++)
        if (kr_kms_active(kr->providers[i]))
            g->active[g->n_active++] = kr->providers[i];
    if (g->n_active == 0) {
        free(g->active);
        free(g);
        return KR_EINVAL;
    }
    g->kr = kr;
    g->state = state;
    g->publish_time = publish_time;
    g->rekey = rekey;
    g->now_ns = now_ns;
    g->cb = cb;
    g->arg = arg;
    kr_buf_init(&g->entry);
    g->work.data = g;
    kr->busy++;
    if (uv_queue_work(kr->loop, &g->work, gen_work, gen_done) != 0) {
        kr->busy--;
        free(g->active);
        free(g);
        return KR_EIO;
    }
    return 0;
}
