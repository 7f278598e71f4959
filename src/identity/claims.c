/*
 * See claims.h.  A sign request is read through one table of fields, each
 * with a reader for its kind; the readers check types and bounds, and the
 * cross-field rules come after the table.
 */
#include "identity/claims.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "common/err.h"
#include "common/time.h"
#include "common/uuid.h"

#define NAME_MAX_LEN 128
#define TEXT_MAX_LEN 256
#define HEADERS_MAX 16
#define AUD_MAX 16
#define AUD_MAX_LEN 256
#define EXTRA_MAX 64
#define EXTRA_VALUE_MAX_LEN 1024

/* A printable string of 1..max bytes; with no_colon, also without ':'. */
static bool text_valid(const char *s, size_t max, bool no_colon)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (no_colon && c == ':'))
            return false;
    }
    return true;
}

/* Variables' namespace rule: letters, digits and '-'. */
static bool ns_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

int kr_identity_duration(json_t *v, int64_t *out)
{
    int64_t ns;

    if (json_is_string(v)) {
        if (kr_duration_parse(json_string_value(v), &ns) != 0)
            return KR_EINVAL;
    } else if (json_is_integer(v)) {
        ns = (int64_t)json_integer_value(v);
    } else {
        return KR_EINVAL;
    }
    if (ns < 0)
        return KR_EINVAL;
    *out = ns / KR_NS_PER_SEC + (ns % KR_NS_PER_SEC != 0);
    return 0;
}

/* ---- the request table ---- */

enum field_kind {
    F_NAME,      /* a sub component: printable, no ':' */
    F_NAMESPACE, /* the namespace rule */
    F_TEXT,      /* printable */
    F_UUID,
    F_AUDIENCE,
    F_TTL,
    F_EXTRA,
    F_ALG,
    F_HEADERS, /* extra JWS header members */
    F_TOKEN,   /* a compact JWS, any string */
    F_LEEWAY,
};

struct field {
    const char *name;
    enum field_kind kind;
    size_t offset;
};

static const struct field fields[] = {
    {"Namespace", F_NAMESPACE, offsetof(struct kr_identity_req, namespace)},
    {"JobID", F_NAME, offsetof(struct kr_identity_req, job_id)},
    {"Group", F_NAME, offsetof(struct kr_identity_req, group)},
    {"Task", F_NAME, offsetof(struct kr_identity_req, task)},
    {"Service", F_NAME, offsetof(struct kr_identity_req, service)},
    {"AllocID", F_UUID, offsetof(struct kr_identity_req, alloc_id)},
    {"IdentityName", F_NAME, offsetof(struct kr_identity_req, identity_name)},
    {"ConsulNamespace", F_TEXT,
     offsetof(struct kr_identity_req, consul_namespace)},
    {"VaultNamespace", F_TEXT,
     offsetof(struct kr_identity_req, vault_namespace)},
    {"VaultRole", F_TEXT, offsetof(struct kr_identity_req, vault_role)},
    {"Audience", F_AUDIENCE, offsetof(struct kr_identity_req, audience)},
    {"TTL", F_TTL, offsetof(struct kr_identity_req, ttl)},
    {"ExtraClaims", F_EXTRA, offsetof(struct kr_identity_req, extra_claims)},
    {"Algorithm", F_ALG, offsetof(struct kr_identity_req, alg)},
};

static const struct field assertion_fields[] = {
    {"ClientID", F_TEXT, offsetof(struct kr_identity_assertion_req, client_id)},
    {"Audience", F_AUDIENCE,
     offsetof(struct kr_identity_assertion_req, audience)},
    {"ExtraHeaders", F_HEADERS,
     offsetof(struct kr_identity_assertion_req, headers)},
};

static const struct field verify_fields[] = {
    {"JWT", F_TOKEN, offsetof(struct kr_identity_verify_req, jwt)},
    {"Leeway", F_LEEWAY, offsetof(struct kr_identity_verify_req, leeway)},
    {"Audience", F_TEXT, offsetof(struct kr_identity_verify_req, audience)},
};

/* Reads one string field; "" stays absent, like Go's zero value. */
static int read_string(const struct field *f, json_t *v, void *field,
                       char *errmsg)
{
    const char *s = json_string_value(v);
    bool ok;

    if (!json_is_string(v))
        return kr_errf(errmsg, KR_EINVAL, "%s must be a string", f->name);
    if (*s == '\0')
        return 0;
    switch (f->kind) {
    case F_NAMESPACE:
        ok = ns_valid(s);
        break;
    case F_UUID:
        ok = kr_uuid_valid(s);
        break;
    case F_NAME:
        ok = text_valid(s, NAME_MAX_LEN, true);
        break;
    case F_TOKEN:
        ok = true; /* the JWS parser has the rules */
        break;
    default:
        ok = text_valid(s, TEXT_MAX_LEN, false);
        break;
    }
    if (!ok)
        return kr_errf(
            errmsg, KR_EINVAL, "invalid %s \"%.128s\": %s", f->name, s,
            f->kind == F_NAMESPACE ? "only letters, digits and -"
            : f->kind == F_UUID    ? "must be a UUID"
            : f->kind == F_NAME    ? "1 to 128 printable characters, no ':'"
                                   : "1 to 256 printable characters");
    *(const char **)field = s;
    return 0;
}

static int read_audience(const struct field *f, json_t *v, void *field,
                         char *errmsg)
{
    size_t i;
    json_t *a;

    if (!json_is_array(v) || json_array_size(v) == 0 ||
        json_array_size(v) > AUD_MAX)
        return kr_errf(errmsg, KR_EINVAL,
                       "%s must be an array of 1 to %d strings", f->name,
                       AUD_MAX);
    json_array_foreach(v, i, a)
    {
        if (!json_is_string(a) ||
            !text_valid(json_string_value(a), AUD_MAX_LEN, false))
            return kr_errf(errmsg, KR_EINVAL,
                           "%s[%zu] must be a string of 1 to %d printable "
                           "characters",
                           f->name, i, AUD_MAX_LEN);
    }
    *(json_t **)field = v;
    return 0;
}

static int read_ttl(const struct field *f, json_t *v, void *field, char *errmsg)
{
    int64_t ttl;

    if (kr_identity_duration(v, &ttl) != 0 || ttl > KR_IDENTITY_TTL_MAX)
        return kr_errf(errmsg, KR_EINVAL,
                       "%s must be a duration (\"1h\", or nanoseconds) from "
                       "0 to 87600h",
                       f->name);
    *(int64_t *)field = ttl;
    return 0;
}

static int read_leeway(const struct field *f, json_t *v, void *field,
                       char *errmsg)
{
    int64_t leeway;

    if (kr_identity_duration(v, &leeway) != 0 ||
        leeway > KR_IDENTITY_LEEWAY_MAX)
        return kr_errf(errmsg, KR_EINVAL, "%s must be a duration from 0 to %ds",
                       f->name, KR_IDENTITY_LEEWAY_MAX);
    *(int64_t *)field = leeway;
    return 0;
}

static int read_extra(const struct field *f, json_t *v, void *field,
                      char *errmsg)
{
    const char *k;
    json_t *s;

    if (!json_is_object(v) || json_object_size(v) > EXTRA_MAX)
        return kr_errf(errmsg, KR_EINVAL,
                       "%s must be an object of at most %d strings", f->name,
                       EXTRA_MAX);
    json_object_foreach(v, k, s)
    {
        if (!text_valid(k, NAME_MAX_LEN, false))
            return kr_errf(errmsg, KR_EINVAL,
                           "%s: invalid claim name \"%.128s\"", f->name, k);
        if (!json_is_string(s) ||
            strlen(json_string_value(s)) > EXTRA_VALUE_MAX_LEN)
            return kr_errf(errmsg, KR_EINVAL,
                           "%s[\"%.128s\"] must be a string of at most %d "
                           "bytes",
                           f->name, k, EXTRA_VALUE_MAX_LEN);
    }
    *(json_t **)field = json_object_size(v) > 0 ? v : NULL;
    return 0;
}

static int read_headers(const struct field *f, json_t *v, void *field,
                        char *errmsg)
{
    static const char *const reserved[] = {"alg", "kid", "typ", "crit"};
    const char *k;
    json_t *s;

    if (!json_is_object(v) || json_object_size(v) > HEADERS_MAX)
        return kr_errf(errmsg, KR_EINVAL,
                       "%s must be an object of at most %d strings", f->name,
                       HEADERS_MAX);
    json_object_foreach(v, k, s)
    {
        for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
            if (strcmp(k, reserved[i]) == 0)
                return kr_errf(errmsg, KR_EINVAL,
                               "%s: \"%s\" is set by the signer", f->name, k);
        if (!text_valid(k, NAME_MAX_LEN, false) || !json_is_string(s) ||
            strlen(json_string_value(s)) > EXTRA_VALUE_MAX_LEN)
            return kr_errf(errmsg, KR_EINVAL,
                           "%s[\"%.128s\"] must be a string of at most %d "
                           "bytes",
                           f->name, k, EXTRA_VALUE_MAX_LEN);
    }
    *(json_t **)field = json_object_size(v) > 0 ? v : NULL;
    return 0;
}

static const struct {
    const char *name;
    enum kr_identity_alg alg;
} algs[] = {
    {"", KR_IDENTITY_ALG_DEFAULT},
    {"RS256", KR_IDENTITY_ALG_RS256},
    {"EdDSA", KR_IDENTITY_ALG_EDDSA},
};

static int read_alg(const struct field *f, json_t *v, void *field, char *errmsg)
{
    const char *s = json_string_value(v);

    for (size_t i = 0; s != NULL && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(s, algs[i].name) == 0) {
            *(enum kr_identity_alg *)field = algs[i].alg;
            return 0;
        }
    return kr_errf(errmsg, KR_EINVAL, "%s must be \"RS256\" or \"EdDSA\"",
                   f->name);
}

static int (*const readers[])(const struct field *, json_t *, void *,
                              char *) = {
    [F_NAME] = read_string,       [F_NAMESPACE] = read_string,
    [F_TEXT] = read_string,       [F_UUID] = read_string,
    [F_AUDIENCE] = read_audience, [F_TTL] = read_ttl,
    [F_EXTRA] = read_extra,       [F_ALG] = read_alg,
    [F_HEADERS] = read_headers,   [F_TOKEN] = read_string,
    [F_LEEWAY] = read_leeway,
};

/* Reads every member of body through table (n rows) into base. */
static int read_fields(json_t *body, const struct field *table, size_t n,
                       void *base, char *errmsg)
{
    const char *k;
    json_t *v;
    int rv;

    if (!json_is_object(body))
        return kr_errf(errmsg, KR_EINVAL, "request body must be an object");
    json_object_foreach(body, k, v)
    {
        const struct field *f = NULL;
        for (size_t i = 0; i < n && f == NULL; i++)
            if (strcmp(table[i].name, k) == 0)
                f = &table[i];
        if (f == NULL)
            return kr_errf(errmsg, KR_EINVAL, "unknown field \"%.64s\"", k);
        if (json_is_null(v))
            continue;
        rv = readers[f->kind](f, v, (char *)base + f->offset, errmsg);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* The rules across fields, once each field has passed. */
static int req_check(struct kr_identity_req *r, char *errmsg)
{
    static const char *const required[] = {"JobID", "Group", "AllocID"};
    const char *const values[] = {r->job_id, r->group, r->alloc_id};

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (values[i] == NULL)
            return kr_errf(errmsg, KR_EINVAL, "%s is required", required[i]);
    if ((r->task == NULL) == (r->service == NULL))
        return kr_errf(errmsg, KR_EINVAL,
                       "exactly one of Task and Service is required");
    if (r->namespace == NULL)
        r->namespace = "default";
    if (r->identity_name == NULL)
        r->identity_name = "default";
    if (r->audience == NULL && strcmp(r->identity_name, "default") != 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "Audience is required for identity \"%s\" (only the "
                       "default identity has a default audience)",
                       r->identity_name);
    return 0;
}

int kr_identity_req_parse(json_t *body, struct kr_identity_req *out,
                          char *errmsg)
{
    struct kr_identity_req r;
    int rv;

    memset(&r, 0, sizeof(r));
    rv = read_fields(body, fields, sizeof(fields) / sizeof(fields[0]), &r,
                     errmsg);
    if (rv == 0)
        rv = req_check(&r, errmsg);
    if (rv == 0)
        *out = r;
    return rv;
}

int kr_identity_assertion_req_parse(json_t *body,
                                    struct kr_identity_assertion_req *out,
                                    char *errmsg)
{
    struct kr_identity_assertion_req r;
    int rv;

    memset(&r, 0, sizeof(r));
    rv = read_fields(body, assertion_fields,
                     sizeof(assertion_fields) / sizeof(assertion_fields[0]), &r,
                     errmsg);
    if (rv != 0)
        return rv;
    if (r.client_id == NULL)
        return kr_errf(errmsg, KR_EINVAL, "ClientID is required");
    if (r.audience == NULL)
        return kr_errf(errmsg, KR_EINVAL, "Audience is required");
    *out = r;
    return 0;
}

int kr_identity_verify_req_parse(json_t *body,
                                 struct kr_identity_verify_req *out,
                                 char *errmsg)
{
    struct kr_identity_verify_req r;
    int rv;

    memset(&r, 0, sizeof(r));
    r.leeway = KR_IDENTITY_LEEWAY_DEFAULT;
    rv = read_fields(body, verify_fields,
                     sizeof(verify_fields) / sizeof(verify_fields[0]), &r,
                     errmsg);
    if (rv != 0)
        return rv;
    if (r.jwt == NULL)
        return kr_errf(errmsg, KR_EINVAL, "JWT is required");
    *out = r;
    return 0;
}

/* ---- claims ---- */

/* Sets key to a new value; false when out of memory. */
static bool set(json_t *o, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(o, key, v) == 0;
}

static bool set_str(json_t *o, const char *key, const char *s)
{
    return s == NULL || set(o, key, json_string(s));
}

json_t *kr_identity_claims(const struct kr_identity_req *req,
                           const char *region, const char *issuer, int64_t now,
                           const char *jti)
{
    json_t *c = json_object();
    const char *workload = req->task != NULL ? req->task : req->service;
    bool ok;

    if (c == NULL)
        return NULL;
    ok = (issuer == NULL || *issuer == '\0' || set_str(c, "iss", issuer)) &&
         set(c, "sub",
             json_sprintf("%s:%s:%s:%s:%s:%s", region, req->namespace,
                          req->job_id, req->group, workload,
                          req->identity_name));
    if (ok && req->audience != NULL)
        ok = json_object_set(c, "aud", req->audience) == 0;
    else if (ok)
        ok = set(c, "aud", json_pack("[s]", KR_IDENTITY_DEFAULT_AUD));
    ok = ok && set(c, "iat", json_integer(now)) &&
         set(c, "nbf", json_integer(now)) &&
         (req->ttl == 0 || set(c, "exp", json_integer(now + req->ttl))) &&
         set_str(c, "jti", jti) &&
         set_str(c, "nomad_namespace", req->namespace) &&
         set_str(c, "nomad_job_id", req->job_id) &&
         set_str(c, "nomad_allocation_id", req->alloc_id) &&
         set_str(c, "nomad_task", req->task) &&
         set_str(c, "nomad_service", req->service) &&
         set_str(c, "consul_namespace", req->consul_namespace) &&
         set_str(c, "vault_namespace", req->vault_namespace) &&
         set_str(c, "vault_role", req->vault_role) &&
         (req->extra_claims == NULL ||
          json_object_set(c, "extra_claims", req->extra_claims) == 0);
    if (!ok) {
        json_decref(c);
        return NULL;
    }
    return c;
}

json_t *kr_identity_assertion_claims(const char *client_id, json_t *audience,
                                     int64_t now, const char *jti)
{
    return json_pack("{s:s, s:s, s:O, s:I, s:I, s:I, s:s}", "iss", client_id,
                     "sub", client_id, "aud", audience, "iat", (json_int_t)now,
                     "nbf", (json_int_t)(now - 1), "exp",
                     (json_int_t)(now + KR_IDENTITY_ASSERTION_TTL), "jti", jti);
}

/* ---- verification ---- */

/* A NumericDate claim: absent (false, *present false), a number (true),
 * or anything else (false, *present true). */
static bool numeric_date(json_t *claims, const char *name, double *out,
                         bool *present)
{
    json_t *v = json_object_get(claims, name);

    *present = v != NULL;
    if (v == NULL || !json_is_number(v))
        return false;
    *out = json_number_value(v);
    return isfinite(*out);
}

int kr_identity_check_times(json_t *claims, int64_t now, int64_t leeway,
                            char *errmsg)
{
    static const struct {
        const char *name;
        int sign; /* +1: must not be past (exp); -1: not in the future */
        const char *fails;
    } checks[] = {
        {"exp", +1, "token has expired"},
        {"nbf", -1, "token is not valid yet (nbf)"},
        {"iat", -1, "token was issued in the future (iat)"},
    };
    double t, n = (double)now, l = (double)leeway;
    bool present;

    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        if (!numeric_date(claims, checks[i].name, &t, &present)) {
            if (present)
                return kr_errf(errmsg, KR_EINVAL, "claim %s is not a number",
                               checks[i].name);
            continue;
        }
        if ((checks[i].sign > 0 && n > t + l) ||
            (checks[i].sign < 0 && t > n + l))
            return kr_errf(errmsg, KR_EINVAL, "%s", checks[i].fails);
    }
    return 0;
}

int64_t kr_identity_verifiable_until(int64_t max_exp, bool no_exp)
{
    if (no_exp || max_exp > INT64_MAX - KR_IDENTITY_LEEWAY_MAX)
        return INT64_MAX;
    return (max_exp > 0 ? max_exp : 0) + KR_IDENTITY_LEEWAY_MAX;
}

bool kr_identity_has_audience(json_t *claims, const char *aud)
{
    json_t *a = json_object_get(claims, "aud"), *v;
    size_t i;

    if (json_is_string(a))
        return strcmp(json_string_value(a), aud) == 0;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), aud) == 0)
            return true;
    }
    return false;
}
