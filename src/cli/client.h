/*
 * The HTTP API client used by every CLI command, over libcurl, and the
 * "global API flags" every such command accepts (-address, -token, -region,
 * -namespace and the TLS options), each with its KEYRAFT_* environment
 * variable.  A flag always beats its variable.
 *
 * The wire protocol is Nomad's: the token travels in X-Nomad-Token, region
 * and namespace are query parameters, errors come back as plain-text bodies
 * and X-Nomad-Index / X-Nomad-NextToken carry the response metadata.
 *
 * The token is a secret: it is only ever copied into the request header and
 * never appears in an error message.  Response bodies may hold plaintext
 * variable items and are wiped when freed.
 */
#ifndef KR_CLI_CLIENT_H
#define KR_CLI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cli/cmd.h"
#include "common/buf.h"

#define KR_CLI_DEFAULT_ADDR "http://127.0.0.1:4656"
#define KR_CLI_DEFAULT_NAMESPACE "default"
#define KR_CLI_ADDR_MAX 1024
#define KR_CLI_API_NFLAGS 9

/*
 * The global API options.  Strings borrow from argv or the environment.
 * kr_cli_api_init binds `flags` to the fields; put it in a command's
 * struct kr_cli_cmd as `general`, parse, then call kr_cli_api_resolve.
 */
struct kr_cli_api {
    const char *address;
    const char *region;
    const char *namespace;
    const char *token;
    const char *ca_cert;
    const char *ca_path;
    const char *client_cert;
    const char *client_key;
    const char *tls_server_name;
    /* Set by kr_cli_api_resolve. */
    bool namespace_explicit;    /* from -namespace or KEYRAFT_NAMESPACE */
    char addr[KR_CLI_ADDR_MAX]; /* normalised address, no trailing '/' */
    struct kr_cli_flag flags[KR_CLI_API_NFLAGS + 1];
};

/* Clears api and binds its flag table to its fields. */
void kr_cli_api_init(struct kr_cli_api *api);

/*
 * After flag parsing: fills unset options from the environment (through
 * getenv_fn), applies the defaults (address KR_CLI_DEFAULT_ADDR, namespace
 * "default") and normalises the address ("host:port" gets "http://").
 * Returns 0, or KR_EINVAL with errmsg set for an unusable address.
 */
int kr_cli_api_resolve(struct kr_cli_api *api, kr_cli_getenv_fn getenv_fn,
                       char *errmsg);

/* A reply.  body is NUL-terminated (not counted in body.len). */
struct kr_cli_resp {
    long status;
    struct kr_buf body;
    uint64_t index;          /* X-Nomad-Index, 0 when absent */
    bool known_leader;       /* X-Nomad-KnownLeader: true */
    int64_t last_contact_ms; /* X-Nomad-LastContact */
    int64_t request_ns;      /* round-trip time */
    char *next_token;        /* X-Nomad-NextToken (malloc'd) or NULL */
    char digest[128];        /* Digest header ("" when absent) */
    uint64_t content_length; /* Content-Length, 0 when absent */
};

void kr_cli_resp_init(struct kr_cli_resp *r);
/* Wipes and frees the body and token; r can be reused after init. */
void kr_cli_resp_free(struct kr_cli_resp *r);

struct kr_cli_client;

/* Creates a client for a resolved api (which must outlive the client).
 * Returns 0, KR_ENOMEM or KR_EINVAL with errmsg set. */
int kr_cli_client_new(struct kr_cli_client **out, const struct kr_cli_api *api,
                      char *errmsg);
void kr_cli_client_free(struct kr_cli_client *c);

/*
 * Sends one request: method, an already-escaped path ("/v1/var/a/b"), an
 * already-encoded query ("cas=3", may be NULL or ""; the region is added
 * here) and an optional JSON body.  Fills resp (init'd by the caller) for
 * any HTTP status.  Returns 0, or KR_EIO when the server could not be
 * reached (errmsg names the address).
 */
int kr_cli_client_do(struct kr_cli_client *c, const char *method,
                     const char *path, const char *query, const char *body,
                     struct kr_cli_resp *resp, char *errmsg);

/* Receives a streamed body piece by piece; returns 0 or a kr_err, which
 * stops the transfer. */
typedef int (*kr_cli_sink_fn)(void *arg, const void *p, size_t n);

/*
 * As kr_cli_client_do for a GET whose 2xx body may be large: the body
 * goes to sink as it arrives (resp->body stays empty); an error status's
 * body is kept in resp->body as usual.  When sink fails the transfer
 * stops and its kr_err is returned (errmsg says "stopped").  header, when
 * not NULL, is one more request header line ("Name: value", borrowed).
 */
int kr_cli_client_download(struct kr_cli_client *c, const char *path,
                           const char *query, const char *header,
                           kr_cli_sink_fn sink, void *arg,
                           struct kr_cli_resp *resp, char *errmsg);

/*
 * As kr_cli_client_do with the request body streamed from fd (borrowed,
 * read from its current offset, `size` bytes, sent with Content-Length
 * and no Expect: 100-continue).
 */
int kr_cli_client_upload(struct kr_cli_client *c, const char *method,
                         const char *path, const char *query, int fd,
                         uint64_t size, struct kr_cli_resp *resp, char *errmsg);

/*
 * kr_cli_client_do plus the error reporting every command shares: prints
 * "Error: <reason>" to stderr when the server is unreachable or answers
 * with a status outside 2xx other than `allow` (0 for none), using the
 * server's plain-text body as the reason.  Returns 0 when the caller
 * should use resp, KR_EIO otherwise.
 */
int kr_cli_client_call(struct kr_cli_client *c, const char *method,
                       const char *path, const char *query, const char *body,
                       long allow, struct kr_cli_resp *resp);

/*
 * The status check behind kr_cli_client_call, for callers that report
 * errors their own way: returns 0 when resp's status is 2xx or `allow`,
 * else KR_EIO with errmsg set to the server's plain-text body (trimmed,
 * cut to fit errmsg) or "unexpected response code N".
 */
int kr_cli_resp_check(const struct kr_cli_resp *resp, long allow, char *errmsg);

/*
 * Resolves api against the real environment and opens a client, printing
 * "Error: ..." on failure.  Returns 0 or a kr_err code.
 */
int kr_cli_connect(struct kr_cli_api *api, struct kr_cli_client **out);

/*
 * Parses resp's body, which must be a JSON object (or, when want_array, an
 * array; "null" reads as an empty one), printing "Error: unexpected reply
 * from server: ..." when it is not.  Returns a new reference (release
 * with json_decref) or NULL.
 */
json_t *kr_cli_resp_json(const struct kr_cli_resp *resp, bool want_array);

/*
 * What one API command holds from start to end: its global options, the
 * client (NULL until kr_cli_connect(&s->api, &s->client)), the reply, and
 * the URL path and query it builds.  Put `api.flags` in the command's
 * struct kr_cli_cmd as `general`.
 */
struct kr_cli_session {
    struct kr_cli_api api;
    struct kr_cli_client *client;
    struct kr_cli_resp resp;
    struct kr_buf url;
    struct kr_buf query;
};

/* Initialises every member of s (api as kr_cli_api_init does). */
void kr_cli_session_init(struct kr_cli_session *s);
/* Frees the client, wipes and frees the reply and buffers. */
void kr_cli_session_free(struct kr_cli_session *s);

/*
 * kr_cli_client_call on the session's client with its query, filling
 * s->resp: path is already escaped, body may be NULL, allow is a non-2xx
 * status the caller handles (0 for none).  Returns 0 or KR_EIO (reported).
 */
int kr_cli_session_call(struct kr_cli_session *s, const char *method,
                        const char *path, const char *body, long allow);

/* Appends "key=value" (percent-encoded) to a query, with '&' as needed. */
void kr_cli_query_add(struct kr_buf *q, const char *key, const char *value);

/* Appends path percent-encoded, keeping '/' separators. */
void kr_cli_path_escape(struct kr_buf *b, const char *path);

#endif
