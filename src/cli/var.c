/*
 * See var.h.  Behaviour follows nomad's command/var_*.go: `put` without
 * -force is always a check-and-set write (cas=0, "create only", unless a
 * spec's ModifyIndex or -check-index says otherwise); -out defaults to a
 * human format on a terminal and to JSON when stdout is redirected; `list`
 * wraps its JSON as {"Data","QueryMeta"} only when paginating, and
 * otherwise reports the next-page token on stderr so stdout stays
 * parseable.  Variable JSON is printed in the field order of Go's
 * api.Variable, with Items sorted by key as Go marshals maps.
 */
#include "cli/var.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/client.h"
#include "cli/cmd.h"
#include "common/err.h"

#define MSG_NO_MATCH "No matching variables found"
#define MSG_FILTER                                                             \
    "Filter queries require a full scan of the data; use prefix searching "    \
    "where possible"
#define MSG_ONE_PATH "this command takes one argument: <path>"
#define MSG_WILDCARD                                                           \
    "The wildcard namespace (\"*\") is not valid for this command."

/* Path as nomad's API client sends it: no surrounding blanks or '/'. */
static char *clean_path(const char *s)
{
    size_t n;

    while (*s == '/' || *s == ' ' || *s == '\t' || *s == '\n')
        s++;
    n = strlen(s);
    while (n > 0 && (s[n - 1] == '/' || s[n - 1] == ' ' || s[n - 1] == '\t' ||
                     s[n - 1] == '\n'))
        n--;
    return strndup(s, n);
}

static const char *var_url(struct kr_buf *b, const char *path)
{
    kr_buf_puts(b, "/v1/var/");
    kr_cli_path_escape(b, path);
    return kr_cli_buf_str(b);
}

static bool is_stdin_ref(const char *a)
{
    return strcmp(a, "-") == 0;
}

static bool is_file_ref(const char *a)
{
    return a[0] == '@';
}

int kr_cli_var_item_parse(const char *arg, FILE *in, bool *in_used, char **key,
                          struct kr_buf *value, char *errmsg)
{
    const char *eq = strchr(arg, '=');
    const char *v;
    char *k = NULL;
    int rv = 0;

    if (eq == NULL)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid item: expected <key>=<value>");
    if (eq == arg)
        return kr_errf(errmsg, KR_EINVAL, "invalid item: empty key");
    k = strndup(arg, (size_t)(eq - arg));
    if (k == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    v = eq + 1;
    if (v[0] == '@') {
        rv = kr_cli_read_file(v + 1, value, errmsg);
    } else if (v[0] == '\\' && v[1] == '@') {
        kr_buf_puts(value, v + 1);
    } else if (is_stdin_ref(v)) {
        if (in == NULL)
            rv = kr_errf(errmsg, KR_EINVAL, "stdin is not supported");
        else if (*in_used)
            rv = kr_errf(errmsg, KR_EINVAL, "stdin already consumed");
        else {
            *in_used = true;
            rv = kr_cli_read_stream(in, value, errmsg);
        }
    } else {
        kr_buf_puts(value, v);
    }
    if (rv == 0 && value->oom)
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    if (rv != 0) {
        kr_errwrap(errmsg, "item \"%s\"", k);
        free(k);
        return rv;
    }
    *key = k;
    return 0;
}

/* obj[key], matching the key case-insensitively as Go's json does. */
static json_t *get_ci(json_t *obj, const char *key)
{
    const char *k;
    json_t *v = json_object_get(obj, key);

    if (v != NULL)
        return v;
    json_object_foreach(obj, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return v;
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns obj's keys sorted (malloc'd array borrowing the keys), or NULL
 * when empty or out of memory. */
static const char **sorted_keys(json_t *obj, size_t *n)
{
    const char **keys;
    const char *k;
    json_t *v;
    size_t i = 0;

    *n = json_object_size(obj);
    if (*n == 0)
        return NULL;
    keys = calloc(*n, sizeof(*keys));
    if (keys == NULL) {
        *n = 0;
        return NULL;
    }
    json_object_foreach(obj, k, v)
    {
        keys[i++] = k;
    }
    qsort(keys, *n, sizeof(*keys), cmp_str);
    return keys;
}

/* A copy of v with Go's api.Variable field order and sorted Items. */
static json_t *ordered_var(json_t *v)
{
    static const char *const order[] = {
        "Namespace",  "Path",       "CreateIndex", "ModifyIndex",
        "CreateTime", "ModifyTime", "Items",       "Lock",
    };
    json_t *o = json_object();
    json_t *items = json_object_get(v, "Items");
    const char **keys = NULL;
    const char *k;
    json_t *x;
    size_t n = 0;

    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        x = json_object_get(v, order[i]);
        if (x != NULL && json_object_set(o, order[i], x) != 0)
            goto fail;
    }
    json_object_foreach(v, k, x)
    {
        if (json_object_get(o, k) == NULL && json_object_set(o, k, x) != 0)
            goto fail;
    }
    if (json_is_object(items)) {
        json_t *sorted = json_object();

        keys = sorted_keys(items, &n);
        if (sorted == NULL || json_object_set_new(o, "Items", sorted) != 0)
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if (json_object_set(sorted, keys[i],
                                json_object_get(items, keys[i])) != 0)
                goto fail;
        }
    }
    free(keys);
    return o;
fail:
    free(keys);
    json_decref(o);
    return NULL;
}

static int print_var_table(json_t *v)
{
    struct kr_cli_table *meta = NULL, *items = NULL;
    json_t *obj = json_object_get(v, "Items");
    const char **keys = NULL;
    char ct[40], mt[40], idx[24];
    int64_t ctime = kr_cli_json_int(v, "CreateTime");
    int64_t mtime = kr_cli_json_int(v, "ModifyTime");
    size_t n = 0;
    int rv;

    kr_cli_format_time(ctime, ct, sizeof(ct));
    kr_cli_format_time(mtime, mt, sizeof(mt));
    snprintf(idx, sizeof(idx), "%lld",
             (long long)kr_cli_json_int(v, "ModifyIndex"));
    rv = kr_cli_table_new(&meta, 2);
    if (rv == 0)
        rv = kr_cli_table_new(&items, 2);
    if (rv == 0)
        rv = kr_cli_table_add(
            meta, (const char *const[]){"Namespace",
                                        kr_cli_json_str(v, "Namespace")});
    if (rv == 0)
        rv = kr_cli_table_add(
            meta, (const char *const[]){"Path", kr_cli_json_str(v, "Path")});
    if (rv == 0)
        rv = kr_cli_table_add(meta, (const char *const[]){"Create Time", ct});
    if (rv == 0 && mtime != ctime)
        rv = kr_cli_table_add(meta, (const char *const[]){"Modify Time", mt});
    if (rv == 0)
        rv = kr_cli_table_add(meta, (const char *const[]){"Check Index", idx});
    if (json_is_object(obj)) {
        keys = sorted_keys(obj, &n);
        for (size_t i = 0; rv == 0 && i < n; i++)
            rv = kr_cli_table_add(
                items,
                (const char *const[]){keys[i], kr_cli_json_str(obj, keys[i])});
    }
    if (rv != 0) {
        kr_cli_error("out of memory");
        goto out;
    }
    kr_cli_table_print(meta, stdout, " = ", "<none>");
    fputs("\nItems\n", stdout);
    kr_cli_table_print(items, stdout, " = ", "<none>");
out:
    free(keys);
    kr_cli_table_free(meta);
    kr_cli_table_free(items);
    return rv;
}

/* Prints a variable as -out asks; returns an exit code. */
static int print_var(json_t *v, const char *fmt)
{
    json_t *o;

    if (strcmp(fmt, "table") == 0)
        return print_var_table(v) == 0 ? KR_CLI_EXIT_OK : KR_CLI_EXIT_ERROR;
    if (strcmp(fmt, "json") != 0)
        return KR_CLI_EXIT_OK;
    o = ordered_var(v);
    if (o == NULL)
        return kr_cli_error("out of memory");
    kr_cli_json_print(o, stdout);
    json_decref(o);
    return KR_CLI_EXIT_OK;
}

/* A 409 from a check-and-set write: the body is the current variable. */
static int report_conflict(struct kr_cli_resp *r, uint64_t check, bool force)
{
    json_t *v = json_loadb((const char *)r->body.data, r->body.len, 0, NULL);
    long long idx;

    if (!json_is_object(v)) {
        json_decref(v);
        return kr_cli_error("check-and-set conflict: %s",
                            (const char *)r->body.data);
    }
    idx = (long long)kr_cli_json_int(v, "ModifyIndex");
    json_decref(v);
    kr_cli_error("check-and-set conflict; current modify index %lld", idx);
    fprintf(stderr,
            "\n    Your provided check-index (%llu) does not match the "
            "server-side index (%lld).\n"
            "    If you are sure you want to perform this operation, add "
            "the%s\n"
            "    -check-index=%lld flag before the positional arguments.\n",
            (unsigned long long)check, idx, force ? " -force or" : "", idx);
    return KR_CLI_EXIT_ERROR;
}

/*
 * Defaults -out (*fmt NULL) to tty_fmt on a terminal and to "json" when
 * stdout is redirected, then checks it is one of `allowed` (NULL-ended).
 * Returns true when it is; else prints a usage error and sets *rc.
 */
static bool check_out(const struct kr_cli_cmd *cmd, const char **fmt,
                      const char *tty_fmt, const char *const *allowed, int *rc)
{
    struct kr_buf list;

    if (*fmt == NULL)
        *fmt = kr_cli_stdout_is_tty() ? tty_fmt : "json";
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(*fmt, allowed[i]) == 0)
            return true;
    }
    kr_buf_init(&list);
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (i > 0)
            kr_buf_puts(&list, ", ");
        kr_buf_puts(&list, allowed[i]);
    }
    *rc =
        kr_cli_usage_error(cmd, "invalid value for -out; valid values are [%s]",
                           kr_cli_buf_str(&list));
    kr_buf_free(&list);
    return false;
}

/*
 * Connects s for a command on one variable, which needs one namespace:
 * -namespace=* is a usage error.  Returns true when the command should go
 * on; else the error is printed and *rc set.
 */
static bool connect_one_ns(const struct kr_cli_cmd *cmd,
                           struct kr_cli_session *s, int *rc)
{
    if (kr_cli_connect(&s->api, &s->client) != 0) {
        *rc = KR_CLI_EXIT_ERROR;
        return false;
    }
    if (strcmp(s->api.namespace, "*") == 0) {
        *rc = kr_cli_usage_error(cmd, MSG_WILDCARD);
        return false;
    }
    return true;
}

/*
 * The start of `get` and `purge`, which address the variable `arg` in the
 * -namespace one: connects (see connect_one_ns), sets *path to the cleaned
 * path (the caller frees it) and puts the namespace in s->query.  Returns
 * true when the command should go on; else the error is printed and *rc
 * set.
 */
static bool open_var(const struct kr_cli_cmd *cmd, struct kr_cli_session *s,
                     const char *arg, char **path, int *rc)
{
    if (!connect_one_ns(cmd, s, rc))
        return false;
    *path = clean_path(arg);
    if (*path == NULL) {
        *rc = kr_cli_error("out of memory");
        return false;
    }
    kr_cli_query_add(&s->query, "namespace", s->api.namespace);
    return true;
}

/* What a spec file or stdin contributed to `var put`. */
struct spec {
    const char *ns;   /* borrowed from the spec JSON, NULL when absent */
    const char *path; /* likewise */
    json_t *items;    /* borrowed object, or NULL */
    uint64_t index;   /* ModifyIndex, the default check-and-set index */
};

static int load_spec(const char *ref, bool *stdin_used, json_t **out,
                     char *errmsg)
{
    struct kr_buf text;
    json_error_t jerr;
    size_t n;
    int rv;

    kr_buf_init(&text);
    if (is_stdin_ref(ref)) {
        *stdin_used = true;
        rv = kr_cli_read_stream(stdin, &text, errmsg);
        if (rv != 0)
            kr_errwrap(errmsg, "reading specification from stdin");
    } else {
        n = strlen(ref);
        if (n >= 4 && strcmp(ref + n - 4, ".hcl") == 0) {
            rv = kr_errf(errmsg, KR_EINVAL,
                         "%s: HCL specifications are not supported; use a "
                         "JSON file",
                         ref + 1);
            goto out;
        }
        rv = kr_cli_read_file(ref + 1, &text, errmsg);
    }
    if (rv != 0)
        goto out;
    *out = NULL;
    if (text.len == 0)
        goto out; /* like nomad, an empty spec is no spec */
    *out = json_loadb((const char *)text.data, text.len, 0, &jerr);
    if (*out == NULL) {
        rv = kr_errf(errmsg, KR_EINVAL,
                     "failed to parse variable specification: line %d: %s",
                     jerr.line, jerr.text);
        goto out;
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        rv = kr_errf(errmsg, KR_EINVAL,
                     "variable specification must be a JSON object");
    }
out:
    kr_buf_free(&text);
    return rv;
}

static int read_spec(json_t *j, struct spec *s, char *errmsg)
{
    json_t *ns = get_ci(j, "Namespace");
    json_t *path = get_ci(j, "Path");
    json_t *items = get_ci(j, "Items");
    json_t *idx = get_ci(j, "ModifyIndex");
    const char *k;
    json_t *v;

    memset(s, 0, sizeof(*s));
    if (ns != NULL && !json_is_null(ns) && !json_is_string(ns))
        return kr_errf(errmsg, KR_EINVAL, "spec: Namespace must be a string");
    if (path != NULL && !json_is_null(path) && !json_is_string(path))
        return kr_errf(errmsg, KR_EINVAL, "spec: Path must be a string");
    if (items != NULL && !json_is_null(items) && !json_is_object(items))
        return kr_errf(errmsg, KR_EINVAL, "spec: Items must be an object");
    if (idx != NULL && !json_is_null(idx) &&
        (!json_is_integer(idx) || json_integer_value(idx) < 0))
        return kr_errf(errmsg, KR_EINVAL,
                       "spec: ModifyIndex must be a non-negative integer");
    if (json_is_object(items)) {
        json_object_foreach(items, k, v)
        {
            if (!json_is_string(v))
                return kr_errf(errmsg, KR_EINVAL,
                               "spec: item \"%s\" must be a string", k);
        }
        s->items = items;
    }
    s->ns = json_string_value(ns);
    s->path = json_string_value(path);
    s->index = (uint64_t)json_integer_value(idx);
    return 0;
}

static void print_quoted(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

static const char PUT_ABOUT[] =
    "Creates or updates a variable.  Items come from a JSON variable\n"
    "specification (\"@file.json\", or \"-\" for stdin), from <key>=<value>\n"
    "arguments, or both; arguments override the specification.  A value\n"
    "may be @file (the file's contents), - (stdin) or empty (removes the\n"
    "item).\n"
    "\n"
    "Without -force the write is check-and-set: it only succeeds if the\n"
    "variable's modify index equals -check-index, else the specification's\n"
    "ModifyIndex, else 0 (the variable must not exist yet).\n"
    "\n"
    "If ACLs are enabled, this command requires the 'variables:write'\n"
    "capability for the destination namespace and path.";

int kr_cli_var_put_main(int argc, char **argv)
{
    static const char *const outs[] = {"json", "table", "none", NULL};
    struct kr_cli_session s;
    struct kr_buf value;
    struct spec spec = {0};
    json_t *spec_json = NULL, *items = NULL, *req = NULL, *reply = NULL;
    char *path = NULL, *key = NULL, *body = NULL;
    const char *spec_ref = NULL, *ns;
    const char *in_fmt = "json", *out_fmt = NULL;
    uint64_t check_index = 0, cas;
    bool check_set = false, force = false, stdin_used = false;
    char errmsg[KR_ERRMSG_SIZE], num[24];
    int argi = 0, nargs, next, rc = KR_CLI_EXIT_ERROR;
    char **args;
    const struct kr_cli_flag flags[] = {
        {"check-index", KR_CLI_FLAG_UINT64, &check_index, &check_set, "<index>",
         "Only write if the server-side modify index equals this value\n"
         "(0: only if the variable does not exist).  Overrides the\n"
         "specification's ModifyIndex.",
         NULL},
        {"force", KR_CLI_FLAG_BOOL, &force, NULL, NULL,
         "Write regardless of the server-side modify index.", NULL},
        {"in", KR_CLI_FLAG_STRING, &in_fmt, NULL, "(json)",
         "Format of the variable specification.  Defaults to \"json\".", NULL},
        {"out", KR_CLI_FLAG_STRING, &out_fmt, NULL, "(json | table | none)",
         "Format to render the written variable in.  Defaults to \"none\"\n"
         "when stdout is a terminal and \"json\" when it is redirected.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "var put", "[options] <path|@spec.json|-> [<spec>] [<key>=<value>]...",
        PUT_ABOUT, "Put Options",
        flags,     s.api.flags,
    };

    kr_cli_protect_secrets();
    kr_cli_session_init(&s);
    kr_buf_init(&value);
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, INT_MAX, "not enough arguments",
                           &argi, &rc))
        goto out;
    args = argv + argi;
    nargs = argc - argi;
    rc = KR_CLI_EXIT_USAGE;
    if (strcmp(in_fmt, "json") != 0) {
        kr_cli_usage_error(&cmd, "invalid value for -in: %s%s", in_fmt,
                           strcmp(in_fmt, "hcl") == 0
                               ? " (HCL is not supported; use json)"
                               : "; valid values are [json]");
        goto out;
    }
    if (!check_out(&cmd, &out_fmt, "none", outs, &rc))
        goto out;
    next = 1;
    if (is_stdin_ref(args[0]) || is_file_ref(args[0])) {
        spec_ref = args[0];
    } else if (nargs > 1 && (is_stdin_ref(args[1]) || is_file_ref(args[1]))) {
        spec_ref = args[1];
        next = 2;
    } else if (nargs == 1) {
        kr_cli_usage_error(&cmd, "must supply data: <key>=<value> items or "
                                 "a specification");
        goto out;
    }
    if (!connect_one_ns(&cmd, &s, &rc))
        goto out;
    rc = KR_CLI_EXIT_ERROR;

    if (spec_ref != NULL) {
        if (load_spec(spec_ref, &stdin_used, &spec_json, errmsg) != 0 ||
            (spec_json != NULL && read_spec(spec_json, &spec, errmsg) != 0)) {
            kr_cli_error("%s", errmsg);
            goto out;
        }
    }
    /* As nomad: a namespace or path that differs from the spec's makes
     * this a copy, so the spec's index no longer applies. */
    if (s.api.namespace_explicit) {
        ns = s.api.namespace;
        if (spec.ns == NULL || strcmp(spec.ns, ns) != 0)
            spec.index = 0;
    } else {
        ns = spec.ns != NULL && *spec.ns != '\0' ? spec.ns : s.api.namespace;
    }
    path = clean_path(spec_ref == args[0] ? (spec.path ? spec.path : "")
                                          : args[0]);
    if (path == NULL) {
        kr_cli_error("out of memory");
        goto out;
    }
    if (spec.path != NULL && strcmp(path, spec.path) != 0)
        spec.index = 0;
    if (*path == '\0') {
        kr_cli_error("a variable path is required (as the first argument "
                     "or the specification's Path)");
        goto out;
    }

    items = spec.items != NULL ? json_copy(spec.items) : json_object();
    if (items == NULL) {
        kr_cli_error("out of memory");
        goto out;
    }
    for (int i = next; i < nargs; i++) {
        json_t *s;

        kr_buf_free(&value);
        free(key);
        key = NULL;
        if (kr_cli_var_item_parse(args[i], stdin, &stdin_used, &key, &value,
                                  errmsg) != 0) {
            kr_cli_error("failed to parse K=V data: argument %d: %s", i + 1,
                         errmsg);
            goto out;
        }
        if (value.len == 0) {
            json_object_del(items, key);
            continue;
        }
        s = json_stringn((const char *)value.data, value.len);
        if (s == NULL || json_object_set_new(items, key, s) != 0) {
            kr_cli_error("item \"%s\": value is not valid UTF-8", key);
            goto out;
        }
    }

    req = json_pack("{s:s, s:s, s:O}", "Namespace", ns, "Path", path, "Items",
                    items);
    body = req != NULL ? kr_cli_json_dump(req) : NULL;
    if (body == NULL) {
        kr_cli_error("out of memory");
        goto out;
    }
    kr_cli_query_add(&s.query, "namespace", ns);
    cas = check_set ? check_index : spec.index;
    if (!force) {
        snprintf(num, sizeof(num), "%llu", (unsigned long long)cas);
        kr_cli_query_add(&s.query, "cas", num);
    }
    if (kr_cli_session_call(&s, "PUT", var_url(&s.url, path), body, 409) != 0)
        goto out;
    if (s.resp.status == 409) {
        rc = report_conflict(&s.resp, cas, true);
        goto out;
    }
    reply = kr_cli_resp_json(&s.resp, false);
    if (reply == NULL)
        goto out;
    if (strcmp(out_fmt, "none") == 0) {
        const char *p = kr_cli_json_str(reply, "Path");

        fputs("Created variable ", stdout);
        print_quoted(stdout, *p != '\0' ? p : path);
        printf(" with modify index %lld\n",
               (long long)kr_cli_json_int(reply, "ModifyIndex"));
        rc = KR_CLI_EXIT_OK;
        goto out;
    }
    rc = print_var(reply, out_fmt);
out:
    if (body != NULL) {
        explicit_bzero(body, strlen(body));
        kr_cli_json_free_str(body);
    }
    json_decref(req);
    json_decref(reply);
    json_decref(items);
    json_decref(spec_json);
    free(key);
    free(path);
    kr_buf_free(&value);
    kr_cli_session_free(&s);
    return rc;
}

static const char GET_ABOUT[] =
    "Reads a variable.\n"
    "\n"
    "If ACLs are enabled, this command requires a token with the\n"
    "'variables:read' capability for the target variable's namespace and\n"
    "path.";

int kr_cli_var_get_main(int argc, char **argv)
{
    static const char *const outs[] = {"json", "table", "none", NULL};
    struct kr_cli_session s;
    json_t *reply = NULL, *v;
    char *path = NULL;
    const char *item = NULL, *out_fmt = NULL;
    int argi = 0, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"item", KR_CLI_FLAG_STRING, &item, NULL, "<key>",
         "Print only the value of the given item, with no trailing\n"
         "newline, for piping to other programs.",
         NULL},
        {"out", KR_CLI_FLAG_STRING, &out_fmt, NULL, "(json | table | none)",
         "Format to render the variable in.  Defaults to \"table\" when\n"
         "stdout is a terminal and \"json\" when it is redirected.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "var get", "[options] <path>", GET_ABOUT, "Get Options",
        flags,     s.api.flags,
    };

    kr_cli_protect_secrets();
    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, 1, MSG_ONE_PATH, &argi, &rc) ||
        !check_out(&cmd, &out_fmt, "table", outs, &rc) ||
        !open_var(&cmd, &s, argv[argi], &path, &rc))
        goto out;
    if (kr_cli_session_call(&s, "GET", var_url(&s.url, path), NULL, 0) != 0)
        goto out;
    reply = kr_cli_resp_json(&s.resp, false);
    if (reply == NULL)
        goto out;
    if (item != NULL) {
        v = json_object_get(json_object_get(reply, "Items"), item);
        if (!json_is_string(v)) {
            kr_cli_error("variable does not contain \"%s\" item", item);
            goto out;
        }
        fwrite(json_string_value(v), 1, json_string_length(v), stdout);
        rc = KR_CLI_EXIT_OK;
        goto out;
    }
    rc = print_var(reply, out_fmt);
out:
    json_decref(reply);
    free(path);
    kr_cli_session_free(&s);
    return rc;
}

static int cmp_meta(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c = strcmp(kr_cli_json_str(x, "Namespace"),
                   kr_cli_json_str(y, "Namespace"));

    return c != 0
               ? c
               : strcmp(kr_cli_json_str(x, "Path"), kr_cli_json_str(y, "Path"));
}

/* Table or terse output of a list reply; returns 0 or KR_ENOMEM. */
static int print_list(json_t *arr, bool terse, bool wildcard)
{
    struct kr_cli_table *t = NULL;
    json_t **vars = NULL;
    size_t n = json_array_size(arr);
    size_t ncols = terse ? (wildcard ? 2 : 1) : 3;
    char when[40];
    int rv;

    if (n == 0) {
        if (!terse)
            puts(MSG_NO_MATCH);
        return 0;
    }
    vars = calloc(n, sizeof(*vars));
    rv = vars != NULL ? kr_cli_table_new(&t, ncols) : KR_ENOMEM;
    if (rv != 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        vars[i] = json_array_get(arr, i);
    if (!terse) {
        qsort(vars, n, sizeof(*vars), cmp_meta);
        rv = kr_cli_table_add(
            t, (const char *const[]){"Namespace", "Path", "Last Updated"});
    }
    for (size_t i = 0; rv == 0 && i < n; i++) {
        const char *ns = kr_cli_json_str(vars[i], "Namespace");
        const char *p = kr_cli_json_str(vars[i], "Path");

        kr_cli_format_time(kr_cli_json_int(vars[i], "ModifyTime"), when,
                           sizeof(when));
        if (!terse)
            rv = kr_cli_table_add(t, (const char *const[]){ns, p, when});
        else if (wildcard)
            rv = kr_cli_table_add(t, (const char *const[]){ns, p});
        else
            rv = kr_cli_table_add(t, (const char *const[]){p});
    }
    if (rv == 0)
        kr_cli_table_print(t, stdout, "  ", "<none>");
out:
    kr_cli_table_free(t);
    free(vars);
    return rv;
}

static const char LIST_ABOUT[] =
    "Lists variables (metadata only, never items).  An optional prefix\n"
    "limits the list to variables whose path starts with it.  When\n"
    "paginating, the next page token is part of the JSON output, or is\n"
    "printed to stderr so that stdout keeps only the listed variables.\n"
    "\n"
    "If ACLs are enabled, this command only returns variables stored in\n"
    "namespaces and paths where the token has the 'variables:list'\n"
    "capability.";

int kr_cli_var_list_main(int argc, char **argv)
{
    static const char *const outs[] = {"json", "table", "terse", NULL};
    struct kr_cli_session s;
    json_t *reply = NULL, *wrapped = NULL;
    const char *token = NULL, *filter = NULL, *out_fmt = NULL;
    const char *prefix = NULL;
    int per_page = 0, argi = 0, rc = KR_CLI_EXIT_ERROR;
    char num[24];
    const struct kr_cli_flag flags[] = {
        {"per-page", KR_CLI_FLAG_INT, &per_page, NULL, "<n>",
         "How many results to show per page.", NULL},
        {"page-token", KR_CLI_FLAG_STRING, &token, NULL, "<token>",
         "Where to start pagination.", NULL},
        {"filter", KR_CLI_FLAG_STRING, &filter, NULL, "<expression>",
         "An expression used to filter query results.  Queries using this\n"
         "option are less efficient than using the prefix parameter;\n"
         "therefore, the prefix parameter should be used whenever possible.",
         NULL},
        {"out", KR_CLI_FLAG_STRING, &out_fmt, NULL, "(json | table | terse)",
         "Format to render the list in.  Defaults to \"table\" when stdout\n"
         "is a terminal and \"json\" when it is redirected.  \"terse\"\n"
         "prints only the paths (with namespaces for -namespace=*).",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "var list",  "[options] [<prefix>]", LIST_ABOUT, "List Options", flags,
        s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 0, 1,
                           "this command takes flags and either no arguments "
                           "or one: <prefix>",
                           &argi, &rc))
        goto out;
    if (argc - argi == 1)
        prefix = argv[argi];
    if (!check_out(&cmd, &out_fmt, "table", outs, &rc))
        goto out;
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    if (filter != NULL && *filter != '\0')
        fprintf(stderr, "%s\n", MSG_FILTER);
    if (prefix != NULL && *prefix != '\0')
        kr_cli_query_add(&s.query, "prefix", prefix);
    kr_cli_query_add(&s.query, "namespace", s.api.namespace);
    if (per_page > 0) {
        snprintf(num, sizeof(num), "%d", per_page);
        kr_cli_query_add(&s.query, "per_page", num);
    }
    if (token != NULL && *token != '\0')
        kr_cli_query_add(&s.query, "next_token", token);
    if (filter != NULL && *filter != '\0')
        kr_cli_query_add(&s.query, "filter", filter);
    if (kr_cli_session_call(&s, "GET", "/v1/vars", NULL, 0) != 0)
        goto out;
    reply = kr_cli_resp_json(&s.resp, true);
    if (reply == NULL)
        goto out;

    if (strcmp(out_fmt, "json") == 0) {
        /* Nomad's shape: a bare array, or Data + QueryMeta when paging. */
        if (per_page > 0) {
            wrapped = json_pack(
                "{s:O, s:{s:I, s:I, s:b, s:I, s:s}}", "Data", reply,
                "QueryMeta", "LastIndex", (json_int_t)s.resp.index,
                "LastContact", (json_int_t)s.resp.last_contact_ms * 1000000,
                "KnownLeader", s.resp.known_leader, "RequestTime",
                (json_int_t)s.resp.request_ns, "NextToken",
                s.resp.next_token != NULL ? s.resp.next_token : "");
            if (wrapped == NULL) {
                kr_cli_error("out of memory");
                goto out;
            }
        }
        kr_cli_json_print(wrapped != NULL ? wrapped : reply, stdout);
        rc = KR_CLI_EXIT_OK;
        goto out;
    }
    if (print_list(reply, strcmp(out_fmt, "terse") == 0,
                   strcmp(s.api.namespace, "*") == 0) != 0) {
        kr_cli_error("out of memory");
        goto out;
    }
    if (s.resp.next_token != NULL)
        fprintf(stderr, "Next page token: %s\n", s.resp.next_token);
    rc = KR_CLI_EXIT_OK;
out:
    json_decref(wrapped);
    json_decref(reply);
    kr_cli_session_free(&s);
    return rc;
}

static const char PURGE_ABOUT[] =
    "Permanently deletes a variable.\n"
    "\n"
    "If ACLs are enabled, this command requires a token with the\n"
    "'variables:destroy' capability for the target variable's namespace\n"
    "and path.";

int kr_cli_var_purge_main(int argc, char **argv)
{
    struct kr_cli_session s;
    char *path = NULL;
    uint64_t check_index = 0;
    bool check_set = false;
    int argi = 0, rc = KR_CLI_EXIT_ERROR;
    char num[24];
    const struct kr_cli_flag flags[] = {
        {"check-index", KR_CLI_FLAG_UINT64, &check_index, &check_set, "<index>",
         "If set, the variable is only purged if the server-side modify\n"
         "index matches the provided value.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "var purge", "[options] <path>", PURGE_ABOUT, "Purge Options",
        flags,       s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, 1, MSG_ONE_PATH, &argi, &rc) ||
        !open_var(&cmd, &s, argv[argi], &path, &rc))
        goto out;
    if (check_set) {
        snprintf(num, sizeof(num), "%llu", (unsigned long long)check_index);
        kr_cli_query_add(&s.query, "cas", num);
    }
    if (kr_cli_session_call(&s, "DELETE", var_url(&s.url, path), NULL, 409) !=
        0)
        goto out;
    if (s.resp.status == 409) {
        rc = report_conflict(&s.resp, check_index, false);
        goto out;
    }
    fputs("Successfully purged variable ", stdout);
    print_quoted(stdout, argv[argi]);
    fputs("!\n", stdout);
    rc = KR_CLI_EXIT_OK;
out:
    free(path);
    kr_cli_session_free(&s);
    return rc;
}
