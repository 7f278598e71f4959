/*
 * Workload identity claims (spec 6.1) and RFC 7523 client assertions (spec
 * 6.5): reading a sign request, building the claims, and checking the time
 * claims and audience of a token being verified.
 *
 * Security property: every string that ends up in `sub` is checked not to
 * contain ':' (the separator) or control characters, so no request can
 * produce the `sub` of another workload; request bodies are read with an
 * explicit table of fields, so a misspelt field (say "Ttl") is an error
 * rather than a token without expiry.
 *
 * Pure functions (the caller passes the clock and the jti); any thread.
 */
#ifndef KR_IDENTITY_CLAIMS_H
#define KR_IDENTITY_CLAIMS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/* The implicit default identity's audience (spec 6.1). */
#define KR_IDENTITY_DEFAULT_AUD "nomadproject.io"
/* The longest TTL a sign request may ask for: ten years, in seconds. */
#define KR_IDENTITY_TTL_MAX (INT64_C(87600) * 3600)
/* Leeway for exp, nbf and iat when verifying: default and largest. */
#define KR_IDENTITY_LEEWAY_DEFAULT 60
#define KR_IDENTITY_LEEWAY_MAX 300
/* A client assertion lives five minutes (spec 6.5). */
#define KR_IDENTITY_ASSERTION_TTL 300

enum kr_identity_alg {
    KR_IDENTITY_ALG_DEFAULT, /* RS256 when the key has RSA, else EdDSA */
    KR_IDENTITY_ALG_RS256,
    KR_IDENTITY_ALG_EDDSA,
};

/*
 * A sign request.  Strings are borrowed from the parsed body (json_t) and
 * live as long as it does; NULL means absent.  Exactly one of task and
 * service is set.  ttl is in whole seconds, 0 for a token without exp.
 */
struct kr_identity_req {
    const char *namespace; /* "default" when the body has none */
    const char *job_id;
    const char *group;
    const char *task;
    const char *service;
    const char *alloc_id;
    const char *identity_name; /* "default" when the body has none */
    const char *consul_namespace;
    const char *vault_namespace;
    const char *vault_role;
    json_t *audience;     /* array of strings, never empty (borrowed) */
    json_t *extra_claims; /* object of strings, or NULL (borrowed) */
    int64_t ttl;
    enum kr_identity_alg alg;
};

/*
 * Reads a POST /v1/identity/sign body (a JSON object, borrowed) into *out.
 * Returns 0 or KR_EINVAL with a message for the client in errmsg: unknown
 * fields, wrong types, missing JobID/Group/AllocID, both or neither of
 * Task and Service, invalid names, TTL below 0 or above
 * KR_IDENTITY_TTL_MAX, an empty or malformed Audience (allowed to be
 * absent only for the "default" identity), ExtraClaims that are not
 * strings, or an unknown Algorithm.
 */
int kr_identity_req_parse(json_t *body, struct kr_identity_req *out,
                          char *errmsg);

/* A client-assertion request (spec 6.5); borrowed from the body. */
struct kr_identity_assertion_req {
    const char *client_id;
    json_t *audience; /* array of strings, never empty */
    json_t *headers;  /* object of strings to add to the header, or NULL */
};

/*
 * Reads a POST /v1/identity/client-assertion body (borrowed) into *out:
 * ClientID (required), Audience (required, as in a sign request) and
 * ExtraHeaders (optional; strings, none of alg, kid, typ or crit).
 * Returns 0 or KR_EINVAL with a message for the client in errmsg.
 */
int kr_identity_assertion_req_parse(json_t *body,
                                    struct kr_identity_assertion_req *out,
                                    char *errmsg);

/* A verify request: the token, the leeway (seconds) and an audience to
 * require (NULL for none); borrowed from the body. */
struct kr_identity_verify_req {
    const char *jwt;
    int64_t leeway;
    const char *audience;
};

/*
 * Reads a POST /v1/identity/verify body (borrowed) into *out: JWT
 * (required), Leeway (a duration from 0 to KR_IDENTITY_LEEWAY_MAX
 * seconds, default KR_IDENTITY_LEEWAY_DEFAULT) and Audience (a string).
 * Returns 0 or KR_EINVAL with a message in errmsg.
 */
int kr_identity_verify_req_parse(json_t *body,
                                 struct kr_identity_verify_req *out,
                                 char *errmsg);

/*
 * The claims of spec 6.1 for req, in the region, signed at now (Unix
 * seconds), with the given jti (a UUID); iss only when issuer is neither
 * NULL nor "".  Returns a new object (json_decref) or NULL when out of
 * memory.
 */
json_t *kr_identity_claims(const struct kr_identity_req *req,
                           const char *region, const char *issuer, int64_t now,
                           const char *jti);

/*
 * The claims of an RFC 7523 client assertion (spec 6.5): iss = sub =
 * client_id, aud (an array of strings, borrowed), iat = now, nbf = now -
 * 1, exp = now + KR_IDENTITY_ASSERTION_TTL, jti.  New object or NULL.
 */
json_t *kr_identity_assertion_claims(const char *client_id, json_t *audience,
                                     int64_t now, const char *jti);

/*
 * Checks the time claims of a verified token against now (Unix seconds):
 * exp, nbf and iat are optional, must be numbers when present, and pass
 * when now <= exp + leeway, nbf <= now + leeway and iat <= now + leeway.
 * Returns 0 or KR_EINVAL with the reason in errmsg.
 */
int kr_identity_check_times(json_t *claims, int64_t now, int64_t leeway,
                            char *errmsg);

/* True when the token's aud (a string or an array of strings) contains
 * aud. */
bool kr_identity_has_audience(json_t *claims, const char *aud);

/*
 * Until when the identities a key signed can still verify here, in Unix
 * seconds, from its identity record (state.h): INT64_MAX when one had no
 * expiry, else the latest expiry plus KR_IDENTITY_LEEWAY_MAX (so 300 for
 * a key that never signed one).  The key GC and key removal keep a key
 * until then.
 */
int64_t kr_identity_verifiable_until(int64_t max_exp, bool no_exp);

/*
 * Reads a duration field (TTL, Leeway): a Go duration string ("1h30m") or
 * an integer of nanoseconds, as Go encodes time.Duration in JSON.  *out
 * gets whole seconds, rounded up.  Returns 0, or KR_EINVAL for another
 * type, a malformed string or a negative value.
 */
int kr_identity_duration(json_t *v, int64_t *out);

#endif
