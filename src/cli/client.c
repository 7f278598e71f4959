/*
 * See client.h.  One curl easy handle per client, reset before every
 * request so options never leak from one call to the next.  Response
 * bodies are capped (a misdirected -address must not make the CLI eat
 * memory) and wiped when freed.  The tls-server-name option is done the way
 * curl allows: the URL names the expected server (SNI and certificate
 * check) and CURLOPT_CONNECT_TO sends the connection to the real address.
 */
#include "cli/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/err.h"

#define BODY_MAX (64u * 1024u * 1024u)
#define ERROR_BODY_MAX 4096

struct kr_cli_client {
    const struct kr_cli_api *api;
    CURL *curl;
    struct curl_slist *connect_to;
    char *base; /* scheme://host[:port][/prefix], no trailing '/' */
};

void kr_cli_api_init(struct kr_cli_api *api)
{
    const struct kr_cli_flag flags[KR_CLI_API_NFLAGS + 1] = {
        {"address", KR_CLI_FLAG_STRING, &api->address, NULL, "<addr>",
         "The address of the keyraft server.\n"
         "Default = " KR_CLI_DEFAULT_ADDR,
         "KEYRAFT_ADDR"},
        {"region", KR_CLI_FLAG_STRING, &api->region, NULL, "<region>",
         "The region of the keyraft servers to forward commands to.",
         "KEYRAFT_REGION"},
        {"namespace", KR_CLI_FLAG_STRING, &api->namespace, NULL, "<namespace>",
         "The target namespace for queries and actions bound to a "
         "namespace.\n"
         "Default = " KR_CLI_DEFAULT_NAMESPACE,
         "KEYRAFT_NAMESPACE"},
        {"token", KR_CLI_FLAG_STRING, &api->token, NULL, "<token>",
         "The SecretID of an ACL token to use to authenticate API requests "
         "with.",
         "KEYRAFT_TOKEN"},
        {"ca-cert", KR_CLI_FLAG_STRING, &api->ca_cert, NULL, "<path>",
         "Path to a PEM encoded CA cert file to use to verify the keyraft\n"
         "server SSL certificate.",
         "KEYRAFT_CACERT"},
        {"ca-path", KR_CLI_FLAG_STRING, &api->ca_path, NULL, "<path>",
         "Path to a directory of PEM encoded CA cert files to verify the\n"
         "keyraft server SSL certificate.",
         "KEYRAFT_CAPATH"},
        {"client-cert", KR_CLI_FLAG_STRING, &api->client_cert, NULL, "<path>",
         "Path to a PEM encoded client certificate for TLS authentication\n"
         "to the keyraft server.  Must also specify -client-key.",
         "KEYRAFT_CLIENT_CERT"},
        {"client-key", KR_CLI_FLAG_STRING, &api->client_key, NULL, "<path>",
         "Path to an unencrypted PEM encoded private key matching the\n"
         "client certificate from -client-cert.",
         "KEYRAFT_CLIENT_KEY"},
        {"tls-server-name", KR_CLI_FLAG_STRING, &api->tls_server_name, NULL,
         "<value>",
         "The server name to use as the SNI host when connecting via TLS.",
         "KEYRAFT_TLS_SERVER_NAME"},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };

    memset(api, 0, sizeof(*api));
    memcpy(api->flags, flags, sizeof(flags));
}

int kr_cli_api_resolve(struct kr_cli_api *api, kr_cli_getenv_fn getenv_fn,
                       char *errmsg)
{
    const char *a, *sep;
    char *host;
    size_t n;
    int w;

    kr_cli_flags_env(api->flags, getenv_fn);
    if (api->namespace != NULL)
        api->namespace_explicit = true;
    else
        api->namespace = KR_CLI_DEFAULT_NAMESPACE;
    if (api->address == NULL || *api->address == '\0')
        api->address = KR_CLI_DEFAULT_ADDR;
    a = api->address;
    sep = strstr(a, "://");
    if (sep == NULL) {
        w = snprintf(api->addr, sizeof(api->addr), "http://%s", a);
    } else {
        n = (size_t)(sep - a);
        if (!(n == 4 && strncasecmp(a, "http", 4) == 0) &&
            !(n == 5 && strncasecmp(a, "https", 5) == 0))
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid address \"%s\": the scheme must be http "
                           "or https",
                           a);
        w = snprintf(api->addr, sizeof(api->addr), "%s", a);
    }
    if (w < 0 || (size_t)w >= sizeof(api->addr))
        return kr_errf(errmsg, KR_EINVAL, "address too long");
    host = strstr(api->addr, "://") + 3;
    if (*host == '\0' || *host == '/')
        return kr_errf(errmsg, KR_EINVAL, "invalid address \"%s\": no host", a);
    n = strlen(host);
    while (n > 0 && host[n - 1] == '/')
        host[--n] = '\0';
    return 0;
}

void kr_cli_resp_init(struct kr_cli_resp *r)
{
    memset(r, 0, sizeof(*r));
    kr_buf_init(&r->body);
}

void kr_cli_resp_free(struct kr_cli_resp *r)
{
    if (r == NULL)
        return;
    kr_buf_free(&r->body);
    free(r->next_token);
    kr_cli_resp_init(r);
}

/* Points the URL at tls_server_name and connects to the real host. */
static int set_server_name(struct kr_cli_client *c, char *errmsg)
{
    const struct kr_cli_api *api = c->api;
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *url = NULL;
    char *ct = NULL;
    size_t n;
    int rv = KR_EINVAL;

    if (u == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, api->addr, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
            CURLUE_OK ||
        curl_url_set(u, CURLUPART_HOST, api->tls_server_name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        rv = kr_errf(errmsg, KR_EINVAL,
                     "cannot use tls-server-name \"%s\" with address %s",
                     api->tls_server_name, api->addr);
        goto out;
    }
    n = strlen(api->tls_server_name) + strlen(host) + 2 * strlen(port) + 4;
    ct = malloc(n);
    c->base = strdup(url);
    if (ct == NULL || c->base == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(ct, n, "%s:%s:%s:%s", api->tls_server_name, port, host, port);
    c->connect_to = curl_slist_append(NULL, ct);
    if (c->connect_to == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    rv = 0;
out:
    free(ct);
    curl_free(host);
    curl_free(port);
    curl_free(url);
    curl_url_cleanup(u);
    return rv;
}

int kr_cli_client_new(struct kr_cli_client **out, const struct kr_cli_api *api,
                      char *errmsg)
{
    struct kr_cli_client *c = NULL;
    int rv;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return kr_errf(errmsg, KR_ENOMEM, "cannot initialise libcurl");
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        curl_global_cleanup();
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    }
    c->api = api;
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "cannot initialise libcurl");
        goto out;
    }
    if (api->tls_server_name != NULL && *api->tls_server_name != '\0' &&
        strncasecmp(api->addr, "https://", 8) == 0) {
        rv = set_server_name(c, errmsg);
        if (rv != 0)
            goto out;
    } else {
        c->base = strdup(api->addr);
        if (c->base == NULL) {
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
            goto out;
        }
    }
    *out = c;
    c = NULL;
    rv = 0;
out:
    kr_cli_client_free(c);
    return rv;
}

void kr_cli_client_free(struct kr_cli_client *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->connect_to);
    free(c->base);
    free(c);
    curl_global_cleanup();
}

struct sink {
    struct kr_cli_resp *resp;
    bool too_big;
    long status;       /* from the status line, before the body */
    kr_cli_sink_fn fn; /* streams a 2xx body; NULL: buffered */
    void *arg;
    int fn_err;
    int upload_fd; /* >= 0: the request body */
    bool read_failed;
    const char *header; /* one more request header, or NULL */
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;

    if (s->fn != NULL && s->status >= 200 && s->status < 300) {
        s->fn_err = s->fn(s->arg, p, len);
        return s->fn_err == 0 ? len : 0;
    }
    if (len > BODY_MAX - s->resp->body.len) {
        s->too_big = true;
        return 0;
    }
    kr_buf_append(&s->resp->body, p, len);
    return s->resp->body.oom ? 0 : len;
}

static size_t on_upload(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    ssize_t got;

    do
        got = read(s->upload_fd, p, size * n);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        s->read_failed = true;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)got;
}

static bool header_is(const char *line, size_t len, const char *name,
                      const char **value, size_t *vlen)
{
    size_t n = strlen(name);

    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return false;
    line += n + 1;
    len -= n + 1;
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n' ||
                       line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    *value = line;
    *vlen = len;
    return true;
}

static int64_t parse_digits(const char *v, size_t n)
{
    uint64_t x = 0;

    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - 9) / 10)
            return 0;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    return x > INT64_MAX ? 0 : (int64_t)x;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    struct kr_cli_resp *r = s->resp;
    size_t len = size * n;
    const char *v;
    size_t vn;

    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue): forget earlier headers. */
        const char *sp = memchr(p, ' ', len);
        r->index = 0;
        r->known_leader = false;
        r->last_contact_ms = 0;
        r->digest[0] = '\0';
        r->content_length = 0;
        free(r->next_token);
        r->next_token = NULL;
        s->status = sp != NULL && (size_t)(sp - p) + 4 <= len
                        ? (long)parse_digits(sp + 1, 3)
                        : 0;
    } else if (header_is(p, len, "X-Nomad-Index", &v, &vn)) {
        r->index = (uint64_t)parse_digits(v, vn);
    } else if (header_is(p, len, "X-Nomad-KnownLeader", &v, &vn)) {
        r->known_leader = vn == 4 && strncmp(v, "true", 4) == 0;
    } else if (header_is(p, len, "X-Nomad-LastContact", &v, &vn)) {
        r->last_contact_ms = parse_digits(v, vn);
    } else if (header_is(p, len, "X-Nomad-NextToken", &v, &vn)) {
        free(r->next_token);
        r->next_token = vn > 0 ? strndup(v, vn) : NULL;
    } else if (header_is(p, len, "Digest", &v, &vn)) {
        snprintf(r->digest, sizeof(r->digest), "%.*s", (int)vn, v);
    } else if (header_is(p, len, "Content-Length", &v, &vn)) {
        r->content_length = (uint64_t)parse_digits(v, vn);
    }
    return len;
}

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *s = l; s != NULL; s = s->next)
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(l);
}

static int add_header(struct curl_slist **l, const char *h)
{
    struct curl_slist *n = curl_slist_append(*l, h);

    if (n == NULL)
        return KR_ENOMEM;
    *l = n;
    return 0;
}

static void set_tls(struct kr_cli_client *c)
{
    const struct kr_cli_api *api = c->api;

    if (api->ca_cert != NULL)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, api->ca_cert);
    if (api->ca_path != NULL)
        curl_easy_setopt(c->curl, CURLOPT_CAPATH, api->ca_path);
    if (api->client_cert != NULL)
        curl_easy_setopt(c->curl, CURLOPT_SSLCERT, api->client_cert);
    if (api->client_key != NULL)
        curl_easy_setopt(c->curl, CURLOPT_SSLKEY, api->client_key);
    if (c->connect_to != NULL)
        curl_easy_setopt(c->curl, CURLOPT_CONNECT_TO, c->connect_to);
}

/* One request: body is a JSON text, or the request body streams from
 * sink->upload_fd (>= 0, upload_size bytes); a 2xx reply body goes to
 * sink->fn when set. */
static int transfer(struct kr_cli_client *c, const char *method,
                    const char *path, const char *query, const char *body,
                    struct sink *sink, uint64_t upload_size,
                    struct kr_cli_resp *resp, char *errmsg)
{
    const struct kr_cli_api *api = c->api;
    struct kr_buf url, tok;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_off_t total_us = 0;
    CURLcode cc;
    int rv = KR_ENOMEM;

    kr_buf_init(&url);
    kr_buf_init(&tok);
    kr_buf_puts(&url, c->base);
    kr_buf_puts(&url, path);
    if ((query != NULL && *query != '\0') ||
        (api->region != NULL && *api->region != '\0')) {
        struct kr_buf q;

        kr_buf_init(&q);
        if (query != NULL)
            kr_buf_puts(&q, query);
        if (api->region != NULL && *api->region != '\0')
            kr_cli_query_add(&q, "region", api->region);
        kr_buf_puts(&url, "?");
        kr_buf_append(&url, q.data, q.len);
        kr_buf_free(&q);
    }
    if (api->token != NULL && *api->token != '\0') {
        kr_buf_printf(&tok, "X-Nomad-Token: %s", api->token);
        if (add_header(&hdrs, kr_cli_buf_str(&tok)) != 0)
            goto fail;
    }
    if (add_header(&hdrs, "Expect:") != 0 ||
        (body != NULL &&
         add_header(&hdrs, "Content-Type: application/json") != 0) ||
        (sink->upload_fd >= 0 &&
         add_header(&hdrs, "Content-Type: application/octet-stream") != 0) ||
        (sink->header != NULL && add_header(&hdrs, sink->header) != 0))
        goto fail;
    if (url.oom || tok.oom)
        goto fail;

    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, kr_cli_buf_str(&url));
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "keyraft/" KR_VERSION);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, sink);
    /* Fewer, larger pieces for streamed bodies (snapshots). */
    if (sink->fn != NULL)
        curl_easy_setopt(c->curl, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, sink);
    set_tls(c);
    if (sink->upload_fd >= 0) {
        curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, on_upload);
        curl_easy_setopt(c->curl, CURLOPT_READDATA, sink);
        curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)upload_size);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL || strcmp(method, "DELETE") != 0) {
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS,
                             body != NULL ? body : "");
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(body != NULL ? strlen(body) : 0));
        }
    }

    cc = curl_easy_perform(c->curl);
    if (cc != CURLE_OK) {
        if (sink->fn_err != 0)
            rv = kr_errf(errmsg, sink->fn_err, "transfer from %s stopped",
                         api->addr);
        else if (sink->read_failed)
            rv = kr_errf(errmsg, KR_EIO, "reading the file to upload: %s",
                         strerror(errno));
        else if (sink->too_big)
            rv = kr_errf(errmsg, KR_ETOOBIG,
                         "reply from %s larger than %u bytes", api->addr,
                         BODY_MAX);
        else
            rv = kr_errf(errmsg, KR_EIO, "cannot reach keyraft at %s: %s",
                         api->addr,
                         errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    if (curl_easy_getinfo(c->curl, CURLINFO_TOTAL_TIME_T, &total_us) ==
        CURLE_OK)
        resp->request_ns = (int64_t)total_us * 1000;
    kr_cli_buf_str(&resp->body);
    if (resp->body.oom) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    rv = 0;
    goto out;
fail:
    rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
out:
    /* The handle keeps pointers to these; drop them before freeing. */
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    wipe_slist(hdrs);
    kr_buf_free(&tok);
    kr_buf_free(&url);
    return rv;
}

int kr_cli_client_do(struct kr_cli_client *c, const char *method,
                     const char *path, const char *query, const char *body,
                     struct kr_cli_resp *resp, char *errmsg)
{
    struct sink sink = {.resp = resp, .upload_fd = -1};

    return transfer(c, method, path, query, body, &sink, 0, resp, errmsg);
}

int kr_cli_client_download(struct kr_cli_client *c, const char *path,
                           const char *query, const char *header,
                           kr_cli_sink_fn fn, void *arg,
                           struct kr_cli_resp *resp, char *errmsg)
{
    struct sink sink = {
        .resp = resp, .fn = fn, .arg = arg, .upload_fd = -1, .header = header};

    return transfer(c, "GET", path, query, NULL, &sink, 0, resp, errmsg);
}

int kr_cli_client_upload(struct kr_cli_client *c, const char *method,
                         const char *path, const char *query, int fd,
                         uint64_t size, struct kr_cli_resp *resp, char *errmsg)
{
    struct sink sink = {.resp = resp, .upload_fd = fd};

    return transfer(c, method, path, query, NULL, &sink, size, resp, errmsg);
}

/* The server's reason for a failed status: its plain-text body, trimmed
 * and capped; returns the length (0 when the body is blank). */
static size_t reason(const struct kr_cli_resp *resp, const char **text)
{
    size_t n = resp->body.len;

    *text = (const char *)resp->body.data;
    while (n > 0 && ((*text)[n - 1] == '\n' || (*text)[n - 1] == '\r' ||
                     (*text)[n - 1] == ' ' || (*text)[n - 1] == '\t'))
        n--;
    return n > ERROR_BODY_MAX ? ERROR_BODY_MAX : n;
}

static bool status_ok(const struct kr_cli_resp *resp, long allow)
{
    return (resp->status >= 200 && resp->status < 300) ||
           (allow != 0 && resp->status == allow);
}

int kr_cli_client_call(struct kr_cli_client *c, const char *method,
                       const char *path, const char *query, const char *body,
                       long allow, struct kr_cli_resp *resp)
{
    char errmsg[KR_ERRMSG_SIZE];
    const char *text;
    size_t n;

    if (kr_cli_client_do(c, method, path, query, body, resp, errmsg) != 0) {
        kr_cli_error("%s", errmsg);
        return KR_EIO;
    }
    if (status_ok(resp, allow))
        return 0;
    n = reason(resp, &text);
    if (n == 0)
        kr_cli_error("unexpected response code %ld", resp->status);
    else
        kr_cli_error("%.*s", (int)n, text);
    return KR_EIO;
}

int kr_cli_resp_check(const struct kr_cli_resp *resp, long allow, char *errmsg)
{
    const char *text = NULL;
    size_t n;
    int rv = 0;

    if (!status_ok(resp, allow)) {
        n = reason(resp, &text);
        if (n == 0)
            rv = kr_errf(errmsg, KR_EIO, "unexpected response code %ld",
                         resp->status);
        else
            rv = kr_errf(errmsg, KR_EIO, "%.*s", (int)n, text);
    }
    return rv;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

int kr_cli_connect(struct kr_cli_api *api, struct kr_cli_client **out)
{
    char errmsg[KR_ERRMSG_SIZE];
    int rv;

    rv = kr_cli_api_resolve(api, env_get, errmsg);
    if (rv == 0)
        rv = kr_cli_client_new(out, api, errmsg);
    if (rv != 0)
        kr_cli_error("%s", errmsg);
    return rv;
}

json_t *kr_cli_resp_json(const struct kr_cli_resp *resp, bool want_array)
{
    json_error_t jerr;
    json_t *v = json_loadb((const char *)resp->body.data, resp->body.len,
                           JSON_DECODE_ANY, &jerr);

    if (v == NULL) {
        kr_cli_error("unexpected reply from server: %s", jerr.text);
        return NULL;
    }
    if (want_array && json_is_null(v)) {
        json_decref(v);
        return json_array();
    }
    if (want_array ? !json_is_array(v) : !json_is_object(v)) {
        kr_cli_error("unexpected reply from server: not a JSON %s",
                     want_array ? "array" : "object");
        json_decref(v);
        return NULL;
    }
    return v;
}

void kr_cli_session_init(struct kr_cli_session *s)
{
    kr_cli_api_init(&s->api);
    s->client = NULL;
    kr_cli_resp_init(&s->resp);
    kr_buf_init(&s->url);
    kr_buf_init(&s->query);
}

void kr_cli_session_free(struct kr_cli_session *s)
{
    kr_buf_free(&s->query);
    kr_buf_free(&s->url);
    kr_cli_resp_free(&s->resp);
    kr_cli_client_free(s->client);
    s->client = NULL;
}

int kr_cli_session_call(struct kr_cli_session *s, const char *method,
                        const char *path, const char *body, long allow)
{
    return kr_cli_client_call(s->client, method, path,
                              kr_cli_buf_str(&s->query), body, allow, &s->resp);
}

static void escape(struct kr_buf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
            ch == '~' || (keep_slash && ch == '/')) {
            kr_buf_u8(b, ch);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            kr_buf_append(b, e, 3);
        }
    }
}

void kr_cli_query_add(struct kr_buf *q, const char *key, const char *value)
{
    if (q->len > 0)
        kr_buf_puts(q, "&");
    escape(q, key, false);
    kr_buf_puts(q, "=");
    escape(q, value, false);
}

void kr_cli_path_escape(struct kr_buf *b, const char *path)
{
    escape(b, path, true);
}
