/*
 * See keyjobs.h.  Every proposal and key generation in flight holds a
 * reference on the jobs, so kr_keyjobs_close only marks them closing and
 * the last callback frees them.
 */
#include "agent/keyjobs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/time.h"
#include "crypto/secmem.h"
#include "identity/claims.h"
#include "state/codec.h"

/*
 * Variables per rekey batch (one raft entry).  A client's write that
 * comes after a batch in the log waits for the batch's disk writes and
 * its apply on the servers, about 2 ms at 256 and 3.6 ms at 512 on a
 * busy 2-core machine.  So while clients write, the job uses the
 * smallest batches that keep root_key_rekey_rate (resize, below): from
 * BATCH_MIN up while it falls behind, back down while it is ahead.
 * With no client writes, and unpaced, batches are BATCH_MAX, which
 * costs the servers the least CPU per Variable (each raft entry's disk
 * write, messages and wakeups are shared by more Variables): 11-13 us
 * at 512 against 23 us at 32.
 */
#define BATCH_MIN 32
#define BATCH_MAX 512
#define BATCH_BYTES (1024 * 1024)
#define SLICE_TAKES 256
#define SLICE_VISITS 4096
/* Ciphers of rekeying keys the job keeps copies of (struct rekey). */
#define FROM_MAX 8
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 5000

/* The batch being built and where the walk stands. */
struct rekey {
    bool building;  /* the idle handle is walking */
    bool proposing; /* a batch is in raft */
    char key_id[KR_UUID_LEN + 1];
    /* Last Variable visited; ns "" = the walk starts at the beginning. */
    char ns[KR_NAMESPACE_MAX + 1];
    char path[KR_VAR_PATH_MAX + 1];
    struct kr_rekey_item *items;
    uint32_t n, cap;
    size_t bytes;
    /* The batch's encoding; its memory is kept from batch to batch, as a
     * fresh block each time cost the leader a page fault per 4 KiB. */
    struct kr_buf enc;
    bool pass_found; /* this pass of the walk found work */
    bool blocked;    /* a key's material was missing in this batch */
    uint64_t retry_at_ms;
    unsigned backoff_ms;
    char error[512];
    /* root_key_rekey_rate: pace_done Variables went into batches since
     * pace_t0_us; the next batch waits until that is within the rate. */
    uint64_t pace_t0_us;
    uint64_t pace_done;
    uint32_t batch;    /* Variables the batch being built may take */
    uint64_t batch_at; /* raft index of the last batch applied */
    /*
     * Re-encryption.  The walk (on the loop: it reads the state) only
     * copies each Variable's ciphertext into the batch; a full batch is
     * re-encrypted on libuv's pool at background priority (seal_work),
     * then proposed.  The loop is the path of every client request, and
     * the open and seal of each Variable were about an eighth of the
     * leader's loop time in the rekey benchmark.  The pool uses the
     * job's own copies of the ciphers (the keyring's are the loop's):
     * to, the active key's, and from, the rekeying keys' met so far;
     * from_of[i] is items[i]'s, and seal_rv[i] its outcome.
     */
    uv_work_t work;
    bool sealing; /* a batch is on the pool */
    struct kr_keyring_cipher *to;
    struct kr_keyring_cipher *from[FROM_MAX];
    unsigned n_from;
    uint8_t *from_of;
    int *seal_rv;
    size_t seal_max; /* the longest ciphertext in the batch */
};

struct kr_keyjobs {
    struct kr_keyjobs_config cfg;
    uv_idle_t idle;
    uv_timer_t pace; /* kicks a batch the rate held back */
    unsigned refs;   /* the two handles, proposals, generations */
    bool closing;
    bool leader;         /* raft says we lead */
    bool caught_up;      /* and we applied what the term started with */
    uint64_t lead_index; /* last log index when we saw leadership */
    uint64_t next_periodic_ms;
    bool periodic_busy;
    uint64_t age_warned_ms;
    struct rekey rk;
};

static void release(struct kr_keyjobs *j)
{
    if (--j->refs == 0)
        free(j);
}

/* The leader, once it has applied everything its log held when it
 * became leader: from then on what it reads is what the cluster agreed
 * on.  (Entries proposed later may still be in flight; the jobs' own
 * proposals are built for that.) */
static bool in_charge(const struct kr_keyjobs *j)
{
    return !j->closing && j->caught_up && kr_raft_is_leader(j->cfg.raft);
}

/*
 * Whether identities signed with k may still verify (spec 6.4).  The
 * leader records, before handing one out, the latest expiry of any
 * identity a key signed and whether one had no expiry at all
 * (http/identity.c).  Nomad keeps a key while a live allocation holds an
 * identity it signed, and ties identities without expiry to the
 * allocation's life.  keyraft has no allocations, so it cannot know when
 * such a workload ends: a key that signed an identity without expiry is
 * kept until an operator removes it with force.  Others are kept until
 * their latest expiry, plus the largest leeway a verifier here accepts.
 */
static bool unexpired_identities(const struct kr_root_key *k, int64_t now)
{
    return kr_identity_verifiable_until(k->id_max_exp, k->id_no_exp) >
           now / KR_NS_PER_SEC;
}

/* ---- periodic job: rotate, promote, GC ---- */

static void periodic_applied(void *arg, int status, uint64_t index, int outcome)
{
    struct kr_keyjobs *j = arg;

    j->periodic_busy = false;
    if (status != 0 || outcome != 0)
        KR_WARN("keyring", "key job: change not applied: %s",
                kr_strerror(status != 0 ? status : outcome));
    else
        KR_DEBUG("keyring", "key job: change applied at index %llu",
                 (unsigned long long)index);
    release(j);
}

/* Proposes e for the periodic job; false when raft refused it. */
static bool propose_periodic(struct kr_keyjobs *j, const struct kr_entry *e)
{
    struct kr_buf b;
    int rv;

    kr_buf_init(&b);
    rv = kr_entry_encode(e, &b);
    if (rv == 0)
        rv = kr_raft_apply(j->cfg.raft, &b, periodic_applied, j);
    kr_buf_free(&b);
    if (rv != 0) {
        KR_WARN("keyring", "key job: cannot propose: %s", kr_strerror(rv));
        return false;
    }
    j->refs++;
    j->periodic_busy = true;
    return true;
}

static bool promote(struct kr_keyjobs *j, const struct kr_root_key *k)
{
    struct kr_entry e;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_UPSERT;
    memcpy(e.key_upsert.key.key_id, k->key_id, sizeof(k->key_id));
    memcpy(e.key_upsert.key.algorithm, k->algorithm, sizeof(k->algorithm));
    e.key_upsert.key.create_time = k->create_time;
    e.key_upsert.key.state = KR_KEY_ACTIVE;
    KR_INFO("keyring", "key job: promoting prepublished key %s", k->key_id);
    return propose_periodic(j, &e);
}

static void prepublish_generated(void *arg, int status, struct kr_buf *entry,
                                 const struct kr_root_key *meta,
                                 const char *errmsg)
{
    struct kr_keyjobs *j = arg;

    j->periodic_busy = false;
    if (status != 0) {
        if (status != KR_ESHUTDOWN)
            KR_ERROR("keyring", "key job: cannot create a successor key: %s",
                     errmsg);
    } else if (!j->closing &&
               kr_raft_apply(j->cfg.raft, entry, periodic_applied, j) == 0) {
        KR_INFO("keyring",
                "key job: prepublished key %s, to be promoted at %lld",
                meta->key_id, (long long)meta->publish_time);
        j->periodic_busy = true;
        j->refs++;
    }
    release(j);
}

static bool prepublish(struct kr_keyjobs *j, const struct kr_root_key *active,
                       int64_t now)
{
    int64_t publish = active->create_time + j->cfg.rotation_threshold;
    int rv = kr_keyring_generate(j->cfg.keyring, KR_KEY_PREPUBLISHED, publish,
                                 false, now, prepublish_generated, j);

    if (rv != 0) {
        KR_ERROR("keyring", "key job: cannot create a successor key: %s",
                 kr_strerror(rv));
        return false;
    }
    j->refs++;
    j->periodic_busy = true;
    return true;
}

/* Step 1 of the periodic job; true when it started a change. */
static bool rotate_or_promote(struct kr_keyjobs *j, int64_t now)
{
    const struct kr_root_key *active = kr_state_key_active(j->cfg.state);
    const struct kr_root_key *next = NULL;

    for (size_t i = 0; i < kr_state_key_count(j->cfg.state); i++) {
        const struct kr_root_key *k = kr_state_key_at(j->cfg.state, i);
        /* A redacted key can never become active (the state machine
         * refuses it); its successor is made as if it were not there. */
        if (k->state == KR_KEY_PREPUBLISHED && !k->redacted &&
            (next == NULL || k->publish_time < next->publish_time))
            next = k;
    }
    if (next != NULL)
        return next->publish_time <= now && promote(j, next);
    if (active == NULL) {
        /* An empty keyring is a new cluster: the agent creates its first
         * key.  Keys without an active one need an operator. */
        if (kr_state_key_count(j->cfg.state) > 0)
            KR_WARN("keyring", "keyring has no active key: rotate keyring "
                               "to repair (keyraft operator root keyring "
                               "rotate -now)");
        return false;
    }
    if (active->create_time < now - j->cfg.rotation_threshold / 2)
        return prepublish(j, active, now);
    return false;
}

static bool collectable(const struct kr_keyjobs *j, const struct kr_root_key *k,
                        int64_t now)
{
    return (k->state == KR_KEY_INACTIVE || k->state == KR_KEY_DEPRECATED) &&
           k->create_time <
               now - (j->cfg.rotation_threshold + j->cfg.gc_threshold) &&
           k->n_vars == 0 && !unexpired_identities(k, now);
}

/* Step 2: one collectable key per run (the state machine still refuses
 * to delete a key in use, should a write land first). */
static void gc(struct kr_keyjobs *j, int64_t now)
{
    struct kr_entry e;

    for (size_t i = 0; i < kr_state_key_count(j->cfg.state); i++) {
        const struct kr_root_key *k = kr_state_key_at(j->cfg.state, i);
        if (!collectable(j, k, now))
            continue;
        memset(&e, 0, sizeof(e));
        e.type = KR_ENTRY_KEY_DELETE;
        memcpy(e.key_delete.key_id, k->key_id, sizeof(k->key_id));
        KR_INFO("keyring", "key job: deleting key %s (inactive, unused)",
                k->key_id);
        propose_periodic(j, &e);
        return;
    }
}

static void warn_age(struct kr_keyjobs *j, int64_t now)
{
    const struct kr_root_key *active = kr_state_key_active(j->cfg.state);
    uint64_t mono = kr_time_mono_ms();

    if (active == NULL ||
        now - active->create_time <= j->cfg.rotation_threshold ||
        (j->age_warned_ms != 0 && mono - j->age_warned_ms < 3600 * 1000))
        return;
    j->age_warned_ms = mono;
    KR_WARN("keyring",
            "active key %s is %lld s old, older than "
            "root_key_rotation_threshold (%lld s)",
            active->key_id,
            (long long)((now - active->create_time) / KR_NS_PER_SEC),
            (long long)(j->cfg.rotation_threshold / KR_NS_PER_SEC));
}

static void periodic(struct kr_keyjobs *j)
{
    int64_t now = kr_time_now_ns();

    warn_age(j, now);
    if (!rotate_or_promote(j, now))
        gc(j, now);
}

/* ---- rekey job ---- */

static void item_free(struct kr_rekey_item *it)
{
    free(it->namespace);
    free(it->path);
    free(it->data);
}

static void batch_clear(struct rekey *rk)
{
    for (uint32_t i = 0; i < rk->n; i++)
        item_free(&rk->items[i]);
    rk->n = 0;
    rk->bytes = 0;
    rk->seal_max = 0;
}

/* Drops the job's cipher copies (not while a batch is on the pool). */
static void ciphers_drop(struct rekey *rk)
{
    kr_keyring_cipher_free(rk->to);
    rk->to = NULL;
    for (unsigned i = 0; i < rk->n_from; i++)
        kr_keyring_cipher_free(rk->from[i]);
    rk->n_from = 0;
}

/* Everything the rekey holds, when the jobs close. */
static void rekey_free(struct rekey *rk)
{
    batch_clear(rk);
    free(rk->items);
    free(rk->from_of);
    free(rk->seal_rv);
    rk->items = NULL;
    rk->from_of = NULL;
    rk->seal_rv = NULL;
    rk->cap = 0;
    kr_buf_free(&rk->enc);
    ciphers_drop(rk);
}

static void set_error(struct rekey *rk, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct rekey *rk, const char *fmt, ...)
{
    char msg[sizeof(rk->error)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (strcmp(msg, rk->error) != 0)
        KR_WARN("keyring", "rekey: %s", msg);
    memcpy(rk->error, msg, sizeof(msg));
}

static void back_off(struct rekey *rk)
{
    rk->backoff_ms = rk->backoff_ms == 0 ? RETRY_MIN_MS : rk->backoff_ms * 2;
    if (rk->backoff_ms > RETRY_MAX_MS)
        rk->backoff_ms = RETRY_MAX_MS;
    rk->retry_at_ms = kr_time_mono_ms() + rk->backoff_ms;
}

static bool any_rekeying(const struct kr_state *s)
{
    for (size_t i = 0; i < kr_state_key_count(s); i++)
        if (kr_state_key_at(s, i)->state == KR_KEY_REKEYING)
            return true;
    return false;
}

static void stop_walk(struct kr_keyjobs *j)
{
    j->rk.building = false;
    uv_idle_stop(&j->idle);
}

static void rekey_kick(struct kr_keyjobs *j);
static void resize(struct kr_keyjobs *j, uint64_t index);

static void rekey_applied(void *arg, int status, uint64_t index, int outcome)
{
    struct kr_keyjobs *j = arg;
    struct rekey *rk = &j->rk;

    rk->proposing = false;
    if (status != 0 || outcome != 0) {
        /* KR_ECONFLICT: the active key changed; start over with it. */
        if (outcome != KR_ECONFLICT)
            set_error(rk, "batch not applied: %s",
                      kr_strerror(status != 0 ? status : outcome));
        if (outcome != KR_ECONFLICT)
            back_off(rk);
    } else if (*rk->ns == '\0' && !rk->pass_found) {
        /* A whole pass found nothing it could do, yet keys are still
         * rekeying (their Variables cannot be read): wait, then retry. */
        back_off(rk);
    } else if (!rk->blocked) {
        rk->error[0] = '\0';
        rk->backoff_ms = 0;
        resize(j, index);
    }
    rk->blocked = false;
    if (!j->closing)
        rekey_kick(j); /* the next batch, without waiting for a tick */
    release(j);
}

/* Proposes the batch built so far; the checkpoint moves to the walk's
 * position ("" once the walk reached the end). */
static void propose_batch(struct kr_keyjobs *j)
{
    struct rekey *rk = &j->rk;
    struct kr_entry e;
    struct kr_buf *b = &rk->enc;
    int rv;

    stop_walk(j);
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_VAR_REKEY;
    memcpy(e.rekey.key_id, rk->key_id, sizeof(rk->key_id));
    e.rekey.after_ns = rk->ns;
    e.rekey.after_path = rk->path;
    e.rekey.n_items = rk->n;
    e.rekey.items = rk->items;
    if (b->oom)
        kr_buf_free(b); /* and try afresh */
    b->len = 0;
    /* Room for the whole entry at once (add_item counted each item's
     * encoding), not a doubling chain that copies and wipes each step. */
    rv = kr_buf_reserve(b, rk->bytes + kr_rekey_head_size(rk->ns, rk->path));
    if (rv == 0)
        rv = kr_entry_encode(&e, b);
    if (rv == 0)
        rv = kr_raft_apply(j->cfg.raft, b, rekey_applied, j);
    rk->pace_done += rk->n;
    batch_clear(rk);
    if (rv != 0) {
        set_error(rk, "cannot propose a batch: %s", kr_strerror(rv));
        back_off(rk);
        return;
    }
    rk->proposing = true;
    j->refs++;
}

/* Room for one more item (items, from_of and seal_rv grow together). */
static int grow(struct rekey *rk)
{
    uint32_t cap = rk->cap ? rk->cap * 2 : 256;
    struct kr_rekey_item *items;
    uint8_t *from_of;
    int *seal_rv;

    if (rk->n < rk->cap)
        return 0;
    items = realloc(rk->items, cap * sizeof(*items));
    if (items == NULL)
        return KR_ENOMEM;
    rk->items = items;
    from_of = realloc(rk->from_of, cap * sizeof(*from_of));
    if (from_of == NULL)
        return KR_ENOMEM;
    rk->from_of = from_of;
    seal_rv = realloc(rk->seal_rv, cap * sizeof(*seal_rv));
    if (seal_rv == NULL)
        return KR_ENOMEM;
    rk->seal_rv = seal_rv;
    rk->cap = cap;
    return 0;
}

/* Adds v to the batch as it is (sealed under from[slot]); seal_work
 * re-encrypts it. */
static int add_item(struct rekey *rk, const struct kr_var *v, unsigned slot)
{
    struct kr_rekey_item *it;
    int rv = grow(rk);

    if (rv != 0)
        return rv;
    it = &rk->items[rk->n];
    memset(it, 0, sizeof(*it));
    rk->from_of[rk->n] = (uint8_t)slot;
    rk->seal_rv[rk->n] = 0;
    it->namespace = strdup(v->namespace);
    it->path = strdup(v->path);
    it->modify_index = v->modify_index;
    it->data = malloc(v->data_len ? v->data_len : 1);
    it->data_len = v->data_len;
    rk->n++; /* counted even when an allocation failed: batch_clear frees */
    if (it->namespace == NULL || it->path == NULL || it->data == NULL)
        return KR_ENOMEM;
    memcpy(it->data, v->data, v->data_len);
    if (v->data_len > rk->seal_max)
        rk->seal_max = v->data_len;
    rk->bytes += kr_rekey_item_size(v->namespace, v->path, it->data_len);
    return 0;
}

/* The slot of key_id's cipher in rk->from, copied from the keyring the
 * first time.  KR_ENOTREADY: the key is not usable here (the walk must
 * stop); KR_ETOOBIG: every slot is taken by keys of this batch (it must
 * go first). */
static int from_slot(struct kr_keyjobs *j, const char *key_id, unsigned *slot)
{
    struct rekey *rk = &j->rk;
    int rv;

    for (unsigned i = 0; i < rk->n_from; i++)
        if (strcmp(kr_keyring_cipher_key_id(rk->from[i]), key_id) == 0) {
            *slot = i;
            return 0;
        }
    if (rk->n_from == FROM_MAX) {
        if (rk->n > 0)
            return KR_ETOOBIG;
        /* A new batch: none of them is in use. */
        for (unsigned i = 0; i < rk->n_from; i++)
            kr_keyring_cipher_free(rk->from[i]);
        rk->n_from = 0;
    }
    rv = kr_keyring_cipher_copy(j->cfg.keyring, key_id, &rk->from[rk->n_from]);
    if (rv != 0)
        return rv;
    *slot = rk->n_from++;
    return 0;
}

/* Takes v into the batch for re-encryption under the batch's key.
 * KR_ENOTREADY, KR_ETOOBIG: as from_slot. */
static int take(struct kr_keyjobs *j, const struct kr_var *v)
{
    unsigned slot;
    int rv = from_slot(j, v->key_id, &slot);

    return rv != 0 ? rv : add_item(&j->rk, v, slot);
}

static void remember(struct rekey *rk, const struct kr_var *v)
{
    snprintf(rk->ns, sizeof(rk->ns), "%s", v->namespace);
    snprintf(rk->path, sizeof(rk->path), "%s", v->path);
}

/* The end of a slice: the walk stands after last (the Variable visited
 * last, NULL if none), copied once per slice rather than per Variable.
 * Nothing changes the state within a slice, so last is still valid. */
static bool slice_end(struct rekey *rk, const struct kr_var *last, bool go)
{
    if (last != NULL)
        remember(rk, last);
    return go;
}

/* One slice of the walk.  Returns true when the batch must go now. */
static bool walk_slice(struct kr_keyjobs *j)
{
    struct rekey *rk = &j->rk;
    const struct kr_var *v, *last = NULL;
    unsigned visits = 0, takes = 0;
    int rv;

    v = kr_state_var_first(j->cfg.state, NULL, NULL, *rk->ns ? rk->ns : NULL,
                           *rk->ns ? rk->path : NULL);
    for (; v != NULL; v = kr_state_var_next(j->cfg.state, v, NULL, NULL)) {
        const struct kr_root_key *k = kr_state_key_get(j->cfg.state, v->key_id);
        if (visits++ == SLICE_VISITS || takes == SLICE_TAKES)
            return slice_end(rk, last, false);
        if (k != NULL && k->state == KR_KEY_REKEYING) {
            rv = take(j, v);
            takes++;
            if (rv == KR_ETOOBIG) /* v goes into the next batch */
                return slice_end(rk, last, true);
            if (rv == KR_ENOTREADY && k->redacted) {
                /* Never done: the key's Variables cannot be read, so it
                 * stays rekeying; removing it (-force) ends the rekey. */
                set_error(rk,
                          "key %s was redacted from the snapshot this "
                          "cluster was restored from: its %llu variable(s) "
                          "cannot be decrypted, so the rekey cannot finish; "
                          "remove the key with -force to give them up",
                          v->key_id, (unsigned long long)k->n_vars);
            } else if (rv == KR_ENOTREADY) {
                const char *why =
                    kr_keyring_last_error(j->cfg.keyring, v->key_id);
                set_error(rk,
                          "key %s: its material is not available on this "
                          "server%s%s; %llu variable(s) wait for it",
                          v->key_id, why ? ": " : "", why ? why : "",
                          (unsigned long long)k->n_vars);
            }
            if (rv == KR_ENOTREADY) {
                back_off(rk);
                rk->blocked = true;
                /* What was done so far still counts. */
                return slice_end(rk, last, true);
            }
            if (rv != 0)
                return slice_end(rk, last, true);
        }
        last = v;
        if (rk->n >= rk->batch || rk->bytes >= BATCH_BYTES)
            return slice_end(rk, last, true);
    }
    /* The end: the checkpoint wraps to the start. */
    rk->ns[0] = rk->path[0] = '\0';
    return true;
}

/* On libuv's pool: re-encrypts the batch's items under rk->to. */
static void seal_work(uv_work_t *w)
{
    struct kr_keyjobs *j = w->data;
    struct rekey *rk = &j->rk;
    int prio = kr_thread_background(); /* not the loop's CPU */
    struct kr_secret *pt = kr_secret_new(rk->seal_max);

    for (uint32_t i = 0; i < rk->n; i++) {
        struct kr_rekey_item *it = &rk->items[i];

        rk->seal_rv[i] =
            pt == NULL ? KR_ENOMEM
                       : kr_keyring_reseal(rk->from[rk->from_of[i]], rk->to,
                                           it->data, it->data_len, pt->data);
    }
    kr_secret_free(pt);
    kr_thread_foreground(prio);
}

/* Drops the items that did not re-encrypt; false when one failed for
 * another reason than its data (the batch must not go). */
static bool drop_unsealed(struct rekey *rk)
{
    uint32_t kept = 0;
    bool ok = true;

    for (uint32_t i = 0; i < rk->n; i++) {
        struct kr_rekey_item *it = &rk->items[i];

        if (rk->seal_rv[i] == 0) {
            rk->items[kept++] = *it;
            rk->pass_found = true;
            continue;
        }
        if (rk->seal_rv[i] == KR_ECRYPTO)
            set_error(rk,
                      "variable %s/%s under key %s does not decrypt; "
                      "it stays under that key",
                      it->namespace, it->path,
                      kr_keyring_cipher_key_id(rk->from[rk->from_of[i]]));
        else if (ok) {
            set_error(rk, "cannot re-encrypt a batch: %s",
                      kr_strerror(rk->seal_rv[i]));
            ok = false;
        }
        rk->bytes -= kr_rekey_item_size(it->namespace, it->path, it->data_len);
        item_free(it);
    }
    rk->n = kept;
    return ok;
}

/*
 * Back on the loop: proposes the batch, less the Variables that do not
 * decrypt (reported; they stay under their key), unless the jobs are
 * closing or leadership or the active key changed meanwhile: then the
 * next kick starts again from the replicated checkpoint.  Any other
 * failure (out of memory) drops the batch and backs off.
 */
static void seal_done(uv_work_t *w, int status)
{
    struct kr_keyjobs *j = w->data;
    struct rekey *rk = &j->rk;
    const struct kr_root_key *active;

    rk->sealing = false;
    if (j->closing) {
        rekey_free(rk);
        release(j);
        return;
    }
    active = kr_state_key_active(j->cfg.state);
    if (status != 0 || !drop_unsealed(rk)) {
        if (status != 0)
            set_error(rk, "cannot re-encrypt a batch: %s", uv_strerror(status));
        back_off(rk);
        batch_clear(rk);
        rk->blocked = false;
    } else if (!in_charge(j) || active == NULL ||
               strcmp(active->key_id, rk->key_id) != 0) {
        batch_clear(rk);
        rk->blocked = false;
    } else {
        propose_batch(j);
    }
    if (!rk->proposing)
        rekey_kick(j);
    release(j);
}

/* The walk filled a batch (or reached the end): it goes to the pool to
 * be re-encrypted, or straight to raft when it holds nothing. */
static void seal_batch(struct kr_keyjobs *j)
{
    struct rekey *rk = &j->rk;
    int rv;

    stop_walk(j);
    if (rk->n == 0) {
        propose_batch(j);
        return;
    }
    rv = rk->to != NULL
             ? 0
             : kr_keyring_cipher_copy(j->cfg.keyring, rk->key_id, &rk->to);
    if (rv == 0) {
        rk->work.data = j;
        rv = uv_queue_work(j->cfg.loop, &rk->work, seal_work, seal_done);
        if (rv != 0)
            rv = KR_ENOMEM;
    }
    if (rv != 0) {
        set_error(rk, "cannot re-encrypt a batch: %s", kr_strerror(rv));
        back_off(rk);
        batch_clear(rk);
        return;
    }
    rk->sealing = true;
    j->refs++;
}

static void on_idle(uv_idle_t *h)
{
    struct kr_keyjobs *j = h->data;
    const struct kr_root_key *active = kr_state_key_active(j->cfg.state);

    if (!in_charge(j) || active == NULL ||
        strcmp(active->key_id, j->rk.key_id) != 0) {
        /* Leadership or the active key changed under the walk. */
        batch_clear(&j->rk);
        stop_walk(j);
        return;
    }
    if (walk_slice(j))
        seal_batch(j);
}

static void pace_due(uv_timer_t *t)
{
    struct kr_keyjobs *j = t->data;

    if (!j->closing)
        rekey_kick(j);
}

/* When root_key_rekey_rate lets the next batch start (not 0). */
static uint64_t pace_due_us(const struct kr_keyjobs *j)
{
    return j->rk.pace_t0_us + j->rk.pace_done * 1000000u / j->cfg.rekey_rate;
}

/*
 * Whether root_key_rekey_rate lets the next batch start now; if not, the
 * pace timer kicks it when it may.  The rate is an average from the
 * first batch of a run: a run that fell more than a second behind it (a
 * retry, a slow disk) starts counting afresh rather than catching up in
 * a burst.
 */
static bool paced(struct kr_keyjobs *j, uint64_t now_us)
{
    struct rekey *rk = &j->rk;
    uint64_t due;

    if (j->cfg.rekey_rate == 0)
        return true;
    due = pace_due_us(j);
    if (rk->pace_t0_us == 0 || now_us > due + 1000000u) {
        rk->pace_t0_us = now_us;
        rk->pace_done = 0;
        return true;
    }
    if (now_us >= due)
        return true;
    uv_timer_start(&j->pace, pace_due, (due - now_us + 999) / 1000, 0);
    return false;
}

/*
 * After the batch at index is applied, the size of the next (BATCH_MIN,
 * above).  Other entries between it and the batch before are client
 * writes (or, rarely, the key jobs' own): then the next batch is an
 * eighth smaller if this one was applied before the rate lets the next
 * start, a quarter larger if after (batches this small do not keep the
 * rate).  Without them, there is no client to make wait, so batches
 * grow a quarter at a time to BATCH_MAX.
 */
static void resize(struct kr_keyjobs *j, uint64_t index)
{
    struct rekey *rk = &j->rk;
    bool clients = rk->batch_at != 0 && index > rk->batch_at + 1;

    rk->batch_at = index;
    if (j->cfg.rekey_rate == 0)
        rk->batch = BATCH_MAX;
    else if (clients && kr_time_mono_us() < pace_due_us(j))
        rk->batch -= rk->batch / 8;
    else
        rk->batch += rk->batch / 4;
    if (rk->batch < BATCH_MIN)
        rk->batch = BATCH_MIN;
    if (rk->batch > BATCH_MAX)
        rk->batch = BATCH_MAX;
}

/* The size a rekey's first batch takes (resize grows it from there). */
static uint32_t first_batch(const struct kr_keyjobs *j)
{
    return j->cfg.rekey_rate == 0 ? BATCH_MAX : BATCH_MIN;
}

/* Starts a batch when a key is rekeying and nothing is in flight. */
static void rekey_kick(struct kr_keyjobs *j)
{
    struct rekey *rk = &j->rk;
    const struct kr_root_key *active;
    const char *ns, *path;
    uint64_t now = kr_time_mono_ms();

    if (rk->building || rk->sealing || rk->proposing || now < rk->retry_at_ms)
        return;
    if (!any_rekeying(j->cfg.state)) {
        rk->error[0] = '\0';
        rk->backoff_ms = 0;
        ciphers_drop(rk);
        /* The next rekey sizes its batches afresh (resize). */
        rk->batch_at = 0;
        rk->batch = first_batch(j);
        return;
    }
    active = kr_state_key_active(j->cfg.state);
    if (active != NULL && active->redacted) {
        set_error(rk,
                  "the active key %s is redacted and cannot encrypt: "
                  "rotate the keyring (rotate -now) to give the rekey a key",
                  active->key_id);
        back_off(rk);
        return;
    }
    if (active == NULL || !kr_keyring_has(j->cfg.keyring, active->key_id)) {
        set_error(rk, "the active key is not available on this server yet");
        back_off(rk);
        return;
    }
    if (strcmp(rk->key_id, active->key_id) != 0) {
        kr_keyring_cipher_free(rk->to);
        rk->to = NULL;
    }
    memcpy(rk->key_id, active->key_id, sizeof(rk->key_id));
    kr_state_rekey_cursor(j->cfg.state, &ns, &path);
    snprintf(rk->ns, sizeof(rk->ns), "%s", ns != NULL ? ns : "");
    snprintf(rk->path, sizeof(rk->path), "%s", path != NULL ? path : "");
    if (ns == NULL)
        rk->pass_found = false;
    if (!paced(j, kr_time_mono_us()))
        return;
    rk->building = true;
    uv_idle_start(&j->idle, on_idle);
}

/* ---- lifecycle ---- */

int kr_keyjobs_new(struct kr_keyjobs **out, const struct kr_keyjobs_config *cfg)
{
    struct kr_keyjobs *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return KR_ENOMEM;
    j->cfg = *cfg;
    j->rk.batch = first_batch(j);
    uv_idle_init(cfg->loop, &j->idle);
    j->idle.data = j;
    uv_timer_init(cfg->loop, &j->pace);
    j->pace.data = j;
    j->refs = 2;
    *out = j;
    return 0;
}

void kr_keyjobs_tick(struct kr_keyjobs *j)
{
    uint64_t now = kr_time_mono_ms();

    if (j->closing)
        return;
    if (!kr_raft_is_leader(j->cfg.raft)) {
        j->leader = j->caught_up = false;
        if (j->rk.building) {
            batch_clear(&j->rk);
            stop_walk(j);
        }
        if (!j->rk.sealing) /* only a leader rekeys */
            ciphers_drop(&j->rk);
        return;
    }
    if (!j->leader) {
        j->leader = true;
        j->lead_index = kr_raft_last_index(j->cfg.raft);
    }
    if (!j->caught_up) {
        if (kr_raft_last_applied(j->cfg.raft) < j->lead_index)
            return;
        /* Newly in charge: run the periodic job now. */
        j->caught_up = true;
        j->next_periodic_ms = now;
    }
    if (now >= j->next_periodic_ms && !j->periodic_busy) {
        j->next_periodic_ms =
            now + (uint64_t)(j->cfg.gc_interval / KR_NS_PER_MS);
        periodic(j);
    }
    rekey_kick(j);
}

static void handle_closed(uv_handle_t *h)
{
    release(h->data);
}

void kr_keyjobs_close(struct kr_keyjobs *j)
{
    if (j == NULL)
        return;
    j->closing = true;
    if (!j->rk.sealing) /* else seal_done frees it */
        rekey_free(&j->rk);
    uv_idle_stop(&j->idle);
    uv_close((uv_handle_t *)&j->idle, handle_closed);
    uv_timer_stop(&j->pace);
    uv_close((uv_handle_t *)&j->pace, handle_closed);
}

const char *kr_keyjobs_rekey_error(const struct kr_keyjobs *j)
{
    return j->rk.error;
}
