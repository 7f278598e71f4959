/*
 * Workload identities over HTTP (keyraft's own routes; Nomad signs them
 * inside its scheduler):
 *   POST /v1/identity/sign              a workload identity JWT (spec 6.1)
 *   POST /v1/identity/client-assertion  an RFC 7523 assertion (spec 6.5)
 *   POST /v1/identity/verify            checks a token (spec 6.3)
 *   GET  /.well-known/jwks.json         the public keys (spec 4.1)
 *   GET  /.well-known/openid-configuration
 *
 * Signing runs on the leader with the active key.  Before it hands out a
 * token, the key's identity record in the replicated state must cover
 * the token: its expiry at most the recorded latest expiry, or, for a
 * token without expiry, the key marked as having signed one.  When it
 * does not, the leader proposes a KR_ENTRY_IDENTITY entry and signs once
 * raft has applied it, so the key GC (agent/keyjobs.c) never deletes a key
 * whose tokens can still verify, on any server, after any failover.  The
 * recorded expiry is rounded up to between one and two hours past what
 * the token needs, and concurrent signings wait on a proposal in flight
 * that covers them, so a steady stream of signings costs about one raft
 * entry per hour per key.
 *
 * Tokens are bearer credentials: replies that carry one are sent from
 * wiped memory, and request bodies holding one are wiped once parsed.
 *
 * Keys restored from a redacted snapshot (state.h, redacted) have no
 * material, so no signer: the JWKS leaves them out, signing while one is
 * the active key fails at once until a rotation, and a token naming one
 * is refused, each with a message naming the key instead of a wait for a
 * decrypt that never comes.
 *
 * ACLs are not built yet: every caller may sign (Nomad would require the
 * identity:sign capability, or a management token).  The /.well-known
 * routes stay public once ACLs exist, as in Nomad.
 *
 * Loop thread only.
 */
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/time.h"
#include "crypto/rand.h"
#include "identity/claims.h"
#include "identity/jsonw.h"
#include "identity/jwks.h"
#include "identity/jws.h"
#include "state/codec.h"

/* Recorded expiries are rounded up to a multiple of this, one more. */
#define RECORD_GRANULE 3600
/* How often one signing may find its record outrun (a rotation, a key
 * deleted meanwhile) before it gives up. */
#define SIGN_ATTEMPTS 3
/* Go's zero time.Time, the Expiration of a token without exp. */
#define ZERO_TIME "0001-01-01T00:00:00Z"

enum op_kind { OP_IDENTITY, OP_ASSERTION };

/* One signing request, from its parse to its reply. */
struct sign_op {
    struct kr_http_pending p; /* first: freed through it */
    enum op_kind kind;
    json_t *body; /* owns every string req and assertion borrow */
    struct kr_identity_req req;
    struct kr_identity_assertion_req assertion;
    int64_t ttl; /* seconds; 0: no exp */
    unsigned attempts;
    bool waited;          /* has waited for the active key once */
    struct sign_op *next; /* among a record's waiters */
    /* Once the claims are built: the signing input, then the token; the
     * reply's KeyID and Expiration. */
    struct kr_buf tok;
    char key_id[KR_UUID_LEN + 1];
    char exp[40];
    /* An RSA signature is made on the thread pool with a signer of its
     * own; the worker writes only tok, work_rv and work_err. */
    uv_work_t work;
    struct kr_signer *worker_signer;
    int work_rv;
    char work_err[KR_ERRMSG_SIZE];
};

/* An identity record proposed to raft, and who waits for it. */
struct id_record {
    struct kr_http *srv;
    char key_id[KR_UUID_LEN + 1];
    int64_t exp; /* recorded expiry, 0 for none */
    bool no_exp;
    struct sign_op *waiters;
    struct id_record *next;
};

static void op_free(struct sign_op *o)
{
    json_decref(o->body);
    kr_buf_free(&o->tok); /* wipes the token */
    kr_signer_free(o->worker_signer);
    kr_http_pending_done(&o->p);
}

/* Replies with j (borrowed) from wiped memory: it holds a token.  The
 * compact form goes through identity/jsonw.h (jansson's bytes, faster on
 * a long token); ?pretty through jansson. */
static void reply_secret_json(h2o_req_t *req, int status, json_t *j)
{
    bool pretty = kr_http_query(req, "pretty") != NULL;
    struct kr_buf b;
    char *text;

    kr_buf_init(&b);
    if (!pretty && kr_jsonw_compact(j, &b) == 0) {
        kr_http_send_secret(req, status, "application/json", b.data, b.len);
        kr_buf_free(&b); /* wipes */
        return;
    }
    kr_buf_free(&b);
    text = json_dumps(j, pretty ? JSON_INDENT(4) : JSON_COMPACT);
    if (text == NULL) {
        kr_http_reply_error(req, 500, "out of memory");
        return;
    }
    kr_http_send_secret(req, status, "application/json", (const uint8_t *)text,
                        strlen(text));
    explicit_bzero(text, strlen(text));
    free(text);
}

/* A fresh jti: a random UUID (a public value, from the public pool). */
static int make_jti(char out[KR_UUID_LEN + 1])
{
    uint8_t b[16];
    int rv = kr_rand_public(b, sizeof(b));

    if (rv == 0)
        kr_uuid_format(b, out);
    return rv;
}

/* ---- signing ---- */

/* The signer for o under key k, or NULL after replying: RSA unless the
 * request asks for EdDSA or the key has no RSA key; assertions are RSA
 * only (spec 6.5). */
static struct kr_signer *pick_signer(struct sign_op *o,
                                     const struct kr_root_key *k)
{
    struct kr_keyring *keyring = o->p.srv->deps.keyring;
    struct kr_signer *rsa = kr_keyring_signer(keyring, k->key_id, KR_SIGN_RSA);

    if (o->kind == OP_ASSERTION) {
        if (rsa == NULL)
            kr_http_reply_error(o->p.req, 500,
                                "the active key %s has no RSA key, which "
                                "client assertions need (RS256)",
                                k->key_id);
        return rsa;
    }
    if (o->req.alg == KR_IDENTITY_ALG_EDDSA ||
        (rsa == NULL && o->req.alg == KR_IDENTITY_ALG_DEFAULT))
        return kr_keyring_signer(keyring, k->key_id, KR_SIGN_ED25519);
    if (rsa == NULL)
        kr_http_reply_error(o->p.req, 400,
                            "Algorithm RS256: the active key %s has no RSA "
                            "key; ask for EdDSA",
                            k->key_id);
    return rsa;
}

/* Replies with o's token (rv 0) or the error, and frees o. */
static void reply_token(struct sign_op *o, int rv, const char *err)
{
    json_t *reply;

    if (o->p.req == NULL)
        goto out;
    if (rv != 0) {
        kr_http_reply_error(o->p.req, kr_err_http_status(rv), "%s", err);
        goto out;
    }
    reply = json_pack("{s:s%, s:s, s:s}", "JWT", (const char *)o->tok.data,
                      o->tok.len, "KeyID", o->key_id, "Expiration", o->exp);
    if (reply == NULL)
        kr_http_reply_error(o->p.req, 500, "out of memory");
    else
        reply_secret_json(o->p.req, 200, reply);
    json_decref(reply);
out:
    op_free(o);
}

/* Thread pool: the RSA signature (kr_jws_finish touches only its
 * arguments). */
static void rsa_work(uv_work_t *w)
{
    struct sign_op *o = w->data;

    o->work_rv = kr_jws_finish(o->worker_signer, &o->tok, 0, o->work_err);
}

static void rsa_done(uv_work_t *w, int status)
{
    struct sign_op *o = w->data;

    (void)status;
    o->p.srv->live_ops--;
    reply_token(o, o->work_rv, o->work_err);
}

/*
 * Signs o with k's signer s at now (Unix seconds) and replies.  The claims
 * and the signing input are built here; an Ed25519 signature (~40 us) is
 * made here too, an RSA one (~300 us, which would stall every other
 * request on this loop) on the thread pool, with a handle on the key of
 * its own so that a key deleted meanwhile stays valid for it.
 */
static void sign_and_reply(struct sign_op *o, const struct kr_root_key *k,
                           struct kr_signer *s, int64_t now)
{
    struct kr_http *srv = o->p.srv;
    const struct kr_config *cfg = srv->deps.cfg;
    char jti[KR_UUID_LEN + 1], kid[KR_JWKS_KID_MAX];
    char err[KR_ERRMSG_SIZE];
    json_t *claims = NULL;
    bool has_rsa =
        kr_keyring_signer(srv->deps.keyring, k->key_id, KR_SIGN_RSA) != NULL;
    int rv;

    memcpy(o->key_id, k->key_id, sizeof(o->key_id));
    if (o->ttl > 0)
        kr_time_format_rfc3339((now + o->ttl) * KR_NS_PER_SEC, o->exp,
                               sizeof(o->exp));
    else
        snprintf(o->exp, sizeof(o->exp), "%s", ZERO_TIME);
    rv = make_jti(jti);
    if (rv != 0) {
        snprintf(err, sizeof(err), "drawing a jti: %s", kr_strerror(rv));
        goto out;
    }
    if (o->kind == OP_IDENTITY)
        claims = kr_identity_claims(&o->req, cfg->region,
                                    cfg->server.oidc_issuer, now, jti);
    else
        claims = kr_identity_assertion_claims(o->assertion.client_id,
                                              o->assertion.audience, now, jti);
    if (claims == NULL) {
        rv = kr_errf(err, KR_ENOMEM, "out of memory");
        goto out;
    }
    kr_jwks_kid(kid, k->key_id, kr_signer_kind(s), has_rsa);
    rv = kr_jws_signing_input(
        s, kid, o->kind == OP_ASSERTION ? o->assertion.headers : NULL, claims,
        &o->tok, err);
    if (rv != 0)
        goto out;
    if (kr_signer_kind(s) == KR_SIGN_RSA) {
        o->worker_signer = kr_signer_ref(s);
        o->work.data = o;
        if (o->worker_signer != NULL &&
            uv_queue_work(srv->deps.loop, &o->work, rsa_work, rsa_done) == 0) {
            srv->live_ops++;
            json_decref(claims);
            return;
        }
    }
    /* Ed25519, or the thread pool refused: sign here. */
    rv = kr_jws_finish(s, &o->tok, 0, err);
out:
    json_decref(claims);
    reply_token(o, rv, err);
}

static void sign_step(struct sign_op *o);

static void record_applied(void *arg, int status, uint64_t index, int outcome)
{
    struct id_record *r = arg, **pp;
    struct kr_http *srv = r->srv;
    struct sign_op *o, *next;

    (void)index;
    for (pp = &srv->id_records; *pp != NULL && *pp != r; pp = &(*pp)->next)
        ;
    if (*pp == r)
        *pp = r->next;
    srv->live_ops--;
    o = r->waiters;
    if (status == 0 && outcome != 0)
        KR_WARN("identity", "identity record for key %s not applied: %s",
                r->key_id, kr_strerror(outcome));
    free(r);
    for (; o != NULL; o = next) {
        next = o->next;
        if (o->p.req == NULL)
            op_free(o);
        else if (status != 0) {
            kr_http_reply_error(o->p.req, kr_err_http_status(status),
                                "recording the identity: %s",
                                status == KR_ENOLEADER ? "No cluster leader"
                                                       : kr_strerror(status));
            op_free(o);
        } else {
            /* Applied (or refused: the key went); look again. */
            sign_step(o);
        }
    }
}

/* Makes o wait until key_id's record covers exp (0: a token without
 * exp): behind a proposal in flight that covers it, or a new one. */
static void record_wait(struct sign_op *o, const char *key_id, int64_t exp)
{
    struct kr_http *srv = o->p.srv;
    struct id_record *r;
    struct kr_entry e;
    struct kr_buf b;
    int rv;

    for (r = srv->id_records; r != NULL; r = r->next)
        if (strcmp(r->key_id, key_id) == 0 &&
            (exp > 0 ? r->exp >= exp : r->no_exp)) {
            o->next = r->waiters;
            r->waiters = o;
            return;
        }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        kr_http_reply_error(o->p.req, 500, "out of memory");
        op_free(o);
        return;
    }
    r->srv = srv;
    memcpy(r->key_id, key_id, sizeof(r->key_id));
    r->exp = exp > 0 ? (exp / RECORD_GRANULE + 2) * RECORD_GRANULE : 0;
    r->no_exp = exp == 0;
    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_IDENTITY;
    memcpy(e.identity.key_id, key_id, sizeof(e.identity.key_id));
    e.identity.exp = r->exp;
    e.identity.no_exp = r->no_exp;
    kr_buf_init(&b);
    rv = kr_entry_encode(&e, &b);
    if (rv == 0)
        rv = kr_raft_apply(srv->deps.raft, &b, record_applied, r);
    kr_buf_free(&b);
    if (rv != 0) {
        free(r);
        kr_http_reply_error(
            o->p.req, kr_err_http_status(rv), "recording the identity: %s",
            rv == KR_ENOLEADER ? "No cluster leader" : kr_strerror(rv));
        op_free(o);
        return;
    }
    o->next = NULL;
    r->waiters = o;
    r->next = srv->id_records;
    srv->id_records = r;
    srv->live_ops++;
}

static void active_waited(void *arg, int status)
{
    struct sign_op *o = arg;

    (void)status; /* sign_step reports a key that is still missing */
    o->waited = true;
    sign_step(o);
}

/*
 * One pass of a signing: find the active key (waiting once for it), the
 * signer, the expiry; sign at once when the record covers it, else
 * record first and come back here.  Takes o.
 */
static void sign_step(struct sign_op *o)
{
    struct kr_http *srv = o->p.srv;
    struct kr_keyring *keyring = srv->deps.keyring;
    const struct kr_root_key *active;
    struct kr_signer *s;
    int64_t now, exp;

    if (o->p.req == NULL) {
        op_free(o);
        return;
    }
    if (!kr_raft_is_leader(srv->deps.raft)) {
        kr_http_reply_error(o->p.req, 503, "No cluster leader");
        op_free(o);
        return;
    }
    active = kr_state_key_active(srv->deps.state);
    if (active != NULL && active->redacted) {
        /* Waiting cannot help: only a rotation gives signing a key. */
        kr_http_reply_error(o->p.req, 500,
                            "active key %s was redacted from the snapshot "
                            "this cluster was restored from and cannot sign: "
                            "rotate the keyring first (keyraft operator root "
                            "keyring rotate -now)",
                            active->key_id);
        op_free(o);
        return;
    }
    if (active == NULL || !kr_keyring_has(keyring, active->key_id)) {
        if (o->waited ||
            kr_keyring_wait(keyring, active ? active->key_id : NULL,
                            active ? KR_HTTP_KEY_WAIT_MS
                                   : KR_HTTP_ACTIVE_WAIT_MS,
                            active_waited, o, NULL) != 0) {
            if (active == NULL)
                kr_http_reply_error(o->p.req, 503,
                                    "keyring has not been initialized yet");
            else
                kr_http_reply_error(o->p.req, 503,
                                    "active key %s is not ready: the keyring "
                                    "has not decrypted it yet",
                                    active->key_id);
            op_free(o);
        }
        return;
    }
    s = pick_signer(o, active);
    if (s == NULL) {
        op_free(o);
        return;
    }
    now = kr_time_now_ns() / KR_NS_PER_SEC;
    exp = o->ttl > 0 ? now + o->ttl : 0;
    if (exp > 0 ? active->id_max_exp >= exp : active->id_no_exp) {
        sign_and_reply(o, active, s, now);
        return;
    }
    if (++o->attempts > SIGN_ATTEMPTS) {
        kr_http_reply_error(o->p.req, 503,
                            "the keyring changed while the identity was "
                            "being recorded; try again");
        op_free(o);
        return;
    }
    record_wait(o, active->key_id, exp);
}

/* Starts a signing of the given kind from the request body. */
static int sign_start(struct kr_http_call *c, enum op_kind kind)
{
    h2o_req_t *req = c->req;
    char err[KR_ERRMSG_SIZE];
    struct sign_op *o;
    json_t *body = kr_http_body_json(req);
    int rv;

    kr_http_wipe_body(req);
    if (body == NULL)
        return 0; /* replied */
    o = kr_http_pending_new(c, sizeof(*o));
    if (o == NULL) {
        json_decref(body);
        kr_http_reply_error(req, 500, "out of memory");
        return 0;
    }
    o->kind = kind;
    o->body = body;
    if (kind == OP_IDENTITY) {
        rv = kr_identity_req_parse(body, &o->req, err);
        o->ttl = o->req.ttl;
    } else {
        rv = kr_identity_assertion_req_parse(body, &o->assertion, err);
        o->ttl = KR_IDENTITY_ASSERTION_TTL;
    }
    if (rv != 0) {
        kr_http_reply_error(req, 400, "%s", err);
        op_free(o);
        return 0;
    }
    sign_step(o);
    return 0;
}

int kr_http_identity_sign(struct kr_http_call *c)
{
    return sign_start(c, OP_IDENTITY);
}

int kr_http_identity_assertion(struct kr_http_call *c)
{
    return sign_start(c, OP_ASSERTION);
}

/* ---- verification ---- */

struct verify_op {
    struct kr_http_pending p; /* first */
    json_t *body;
    struct kr_identity_verify_req vr;
    struct kr_jws jws;
    char key_id[KR_UUID_LEN + 1];
    bool ed25519_suffix;
};

static void verify_free(struct verify_op *o)
{
    kr_jws_clear(&o->jws);
    json_decref(o->body);
    kr_http_pending_done(&o->p);
}

/* The key o's kid names: spec 6.3 step 3, through the kid scheme of
 * identity/jwks.h.  NULL after replying. */
static const struct kr_signer *verify_signer(struct verify_op *o)
{
    struct kr_http *srv = o->p.srv;
    const struct kr_root_key *k = kr_state_key_get(srv->deps.state, o->key_id);
    const struct kr_signer *rsa, *ed;

    if (k == NULL) {
        kr_http_reply_error(o->p.req, 400,
                            "invalid token: unknown key ID \"%s\"", o->jws.kid);
        return NULL;
    }
    if (k->redacted) {
        kr_http_reply_error(o->p.req, 400,
                            "invalid token: key %s was redacted from the "
                            "snapshot this cluster was restored from, so "
                            "tokens it signed cannot be verified",
                            o->key_id);
        return NULL;
    }
    rsa = kr_keyring_signer(srv->deps.keyring, o->key_id, KR_SIGN_RSA);
    ed = kr_keyring_signer(srv->deps.keyring, o->key_id, KR_SIGN_ED25519);
    if (ed == NULL) {
        kr_http_reply_error(o->p.req, 503,
                            "key %s is not decrypted on this server yet",
                            o->key_id);
        return NULL;
    }
    if (!o->ed25519_suffix)
        return rsa != NULL ? rsa : ed;
    if (rsa == NULL) {
        kr_http_reply_error(o->p.req, 400,
                            "invalid token: unknown key ID \"%s\"", o->jws.kid);
        return NULL;
    }
    return ed;
}

static void verify_finish(void *arg, int status)
{
    struct verify_op *o = arg;
    const struct kr_signer *s;
    char err[KR_ERRMSG_SIZE];
    json_t *reply;
    int64_t now = kr_time_now_ns() / KR_NS_PER_SEC;

    (void)status; /* verify_signer reports a key still missing */
    if (o->p.req == NULL)
        goto out;
    s = verify_signer(o);
    if (s == NULL)
        goto out;
    if (kr_jws_verify(&o->jws, o->vr.jwt, s, err) != 0 ||
        kr_identity_check_times(o->jws.claims, now, o->vr.leeway, err) != 0) {
        kr_http_reply_error(o->p.req, 400, "invalid token: %s", err);
        goto out;
    }
    if (o->vr.audience != NULL &&
        !kr_identity_has_audience(o->jws.claims, o->vr.audience)) {
        kr_http_reply_error(o->p.req, 400,
                            "invalid token: audience \"%s\" is not in aud",
                            o->vr.audience);
        goto out;
    }
    reply = json_pack("{s:s, s:s, s:O}", "KeyID", o->key_id, "Algorithm",
                      kr_jws_alg(s), "Claims", o->jws.claims);
    if (reply == NULL) {
        kr_http_reply_error(o->p.req, 500, "out of memory");
        goto out;
    }
    kr_http_reply_json(o->p.req, 200, reply, 0);
    json_decref(reply);
out:
    verify_free(o);
}

int kr_http_identity_verify(struct kr_http_call *c)
{
    h2o_req_t *req = c->req;
    struct kr_http *srv = c->srv;
    char err[KR_ERRMSG_SIZE];
    const struct kr_root_key *key;
    struct verify_op *o;
    json_t *body = kr_http_body_json(req);

    kr_http_wipe_body(req);
    if (body == NULL)
        return 0;
    o = kr_http_pending_new(c, sizeof(*o));
    if (o == NULL) {
        json_decref(body);
        kr_http_reply_error(req, 500, "out of memory");
        return 0;
    }
    o->body = body;
    if (kr_identity_verify_req_parse(body, &o->vr, err) != 0) {
        kr_http_reply_error(req, 400, "%s", err);
        goto fail;
    }
    if (kr_jws_parse(&o->jws, o->vr.jwt, strlen(o->vr.jwt), err) != 0) {
        kr_http_reply_error(req, 400, "invalid token: %s", err);
        goto fail;
    }
    if (o->jws.kid == NULL ||
        kr_jwks_kid_key_id(o->jws.kid, o->key_id, &o->ed25519_suffix) != 0) {
        kr_http_reply_error(req, 400, "invalid token: unknown key ID \"%.64s\"",
                            o->jws.kid != NULL ? o->jws.kid : "");
        goto fail;
    }
    /* Spec 6.3 step 2: a key still being decrypted (or not replicated
     * here yet) gets up to a second; a redacted one never will be. */
    key = kr_state_key_get(srv->deps.state, o->key_id);
    if (kr_keyring_has(srv->deps.keyring, o->key_id) ||
        (key != NULL && key->redacted) ||
        kr_keyring_wait(srv->deps.keyring, o->key_id, KR_HTTP_KEY_WAIT_MS,
                        verify_finish, o, NULL) != 0)
        verify_finish(o, 0);
    return 0;
fail:
    verify_free(o);
    return 0;
}

/* ---- publication ---- */

struct jwks_op {
    struct kr_http_pending p; /* first */
    uint64_t deadline_ms;     /* waiting for keys ends then (monotonic) */
};

/* Deprecated keys are not published, nor are redacted ones: they have
 * no public key left to publish. */
static bool listed(const struct kr_root_key *k)
{
    return k->state != KR_KEY_DEPRECATED && !k->redacted;
}

/* The first listed key this server has not decrypted, or NULL. */
static const struct kr_root_key *jwks_missing(struct kr_http *srv)
{
    const struct kr_state *st = srv->deps.state;

    for (size_t i = 0; i < kr_state_key_count(st); i++) {
        const struct kr_root_key *k = kr_state_key_at(st, i);
        if (listed(k) && !kr_keyring_has(srv->deps.keyring, k->key_id))
            return k;
    }
    return NULL;
}

/* The JWKS of every listed key; NULL when out of memory.  *newest gets the
 * newest listed CreateTime (0 when none is listed). */
static json_t *jwks_build(struct kr_http *srv, int64_t *newest)
{
    const struct kr_state *st = srv->deps.state;
    json_t *keys = json_array();
    char kid[KR_JWKS_KID_MAX];
    int rv = keys != NULL ? 0 : KR_ENOMEM;

    *newest = 0;
    for (size_t i = 0; rv == 0 && i < kr_state_key_count(st); i++) {
        const struct kr_root_key *k = kr_state_key_at(st, i);
        const struct kr_signer *rsa, *ed;
        if (!listed(k))
            continue;
        rsa = kr_keyring_signer(srv->deps.keyring, k->key_id, KR_SIGN_RSA);
        ed = kr_keyring_signer(srv->deps.keyring, k->key_id, KR_SIGN_ED25519);
        if (rsa != NULL) {
            kr_jwks_kid(kid, k->key_id, KR_SIGN_RSA, true);
            rv = kr_jwks_append(keys, kid, rsa);
        }
        if (rv == 0 && ed != NULL) {
            kr_jwks_kid(kid, k->key_id, KR_SIGN_ED25519, rsa != NULL);
            rv = kr_jwks_append(keys, kid, ed);
        }
        if (k->create_time > *newest)
            *newest = k->create_time;
    }
    if (rv != 0) {
        json_decref(keys);
        return NULL;
    }
    return json_pack("{s:o}", "keys", keys);
}

static void jwks_serve(void *arg, int status)
{
    struct jwks_op *o = arg;
    struct kr_http *srv = o->p.srv;
    const struct kr_root_key *missing;
    int64_t threshold = srv->deps.cfg->server.root_key_rotation_threshold;
    int64_t newest;
    uint64_t now;
    uint64_t idx;
    uint32_t r;
    char cc[64];
    json_t *jwks;

    (void)status;
    if (o->p.req == NULL)
        goto out;
    /* The listed keys get KR_HTTP_KEY_WAIT_MS in all, one wait after
     * another: after a restore or a start each is decrypted anew, and
     * the first ready is not the last. */
    missing = jwks_missing(srv);
    now = kr_time_mono_ms();
    if (o->deadline_ms == 0)
        o->deadline_ms = now + KR_HTTP_KEY_WAIT_MS;
    if (missing != NULL && now < o->deadline_ms &&
        kr_keyring_wait(srv->deps.keyring, missing->key_id,
                        o->deadline_ms - now, jwks_serve, o, NULL) == 0)
        return;
    if (missing != NULL) {
        kr_http_reply_error(o->p.req, 503,
                            "key %s is not decrypted on this server yet",
                            missing->key_id);
        goto out;
    }
    jwks = jwks_build(srv, &newest);
    if (jwks == NULL) {
        kr_http_reply_error(o->p.req, 500, "out of memory");
        goto out;
    }
    /* Spec 4.1: only with keys and a rotation threshold. */
    if (newest != 0 && threshold > 0) {
        if (kr_rand_public(&r, sizeof(r)) != 0)
            r = 0;
        snprintf(cc, sizeof(cc), "max-age=%lld",
                 (long long)kr_jwks_max_age(newest, threshold, kr_time_now_ns(),
                                            (double)r / 4294967296.0));
        kr_http_add_header(o->p.req, "Cache-Control", cc);
    }
    idx = kr_state_keys_index(srv->deps.state);
    kr_http_add_query_meta(srv, o->p.req);
    kr_http_reply_json(o->p.req, 200, jwks, idx ? idx : 1);
    json_decref(jwks);
out:
    kr_http_pending_done(&o->p);
}

int kr_http_jwks(struct kr_http_call *c)
{
    struct jwks_op *o = kr_http_pending_new(c, sizeof(*o));

    if (o == NULL) {
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    jwks_serve(o, 0);
    return 0;
}

int kr_http_oidc_discovery(struct kr_http_call *c)
{
    const char *issuer = c->srv->deps.cfg->server.oidc_issuer;
    json_t *d;

    if (issuer == NULL || *issuer == '\0') {
        kr_http_reply_error(c->req, 404, "OIDC Discovery endpoint disabled");
        return 0;
    }
    d = kr_oidc_discovery(issuer);
    if (d == NULL) {
        kr_http_reply_error(c->req, 500, "out of memory");
        return 0;
    }
    kr_http_reply_json(c->req, 200, d, 0);
    json_decref(d);
    return 0;
}
