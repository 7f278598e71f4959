/*
 * Unit tests for the pure parts of the CLI: flag parsing, flag-versus-
 * environment precedence of the global API options, `var put` item
 * parsing, key ID prefix resolution, -prepublish to publish_time, table
 * formatting, the raft peer table, URL encoding, the status check of
 * a reply, and `rotate -full -wait`: its flag check, the sum over the
 * rekey status and the progress it draws.  Nothing here opens a socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/cmd.h"
#include "cli/keyring.h"
#include "cli/raftcmd.h"
#include "cli/rekey.h"
#include "cli/var.h"
#include "common/err.h"
#include "common/time.h"

/* ---- a fake environment ---- */

static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
    size_t n = strlen(name);

    for (const char *const *e = fake_env; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    }
    return NULL;
}

/* Parses argv (argv[0] is the command word) against the API flags and
 * resolves against fake_env. */
static int api_setup(struct kr_cli_api *api, int argc, char **argv,
                     char *errmsg)
{
    const struct kr_cli_cmd cmd = {"test", "", NULL, NULL, NULL, api->flags};
    bool help = false;
    int argi = 0;
    int rv;

    kr_cli_api_init(api);
    rv = kr_cli_flags_parse(&cmd, argc, argv, &argi, &help, errmsg);
    if (rv != 0)
        return rv;
    return kr_cli_api_resolve(api, fake_getenv, errmsg);
}

static void test_api_defaults(void **state)
{
    char *argv[] = {"list", NULL};
    struct kr_cli_api api;
    char errmsg[KR_ERRMSG_SIZE];

    (void)state;
    fake_env = NULL;
    assert_int_equal(api_setup(&api, 1, argv, errmsg), 0);
    assert_string_equal(api.addr, "http://127.0.0.1:4656");
    assert_string_equal(api.namespace, "default");
    assert_false(api.namespace_explicit);
    assert_null(api.token);
    assert_null(api.region);
}

static void test_api_env_only(void **state)
{
    static const char *const env[] = {
        "KEYRAFT_ADDR=https://kr.example:4656/",
        "KEYRAFT_TOKEN=env-token",
        "KEYRAFT_NAMESPACE=prod",
        "KEYRAFT_REGION=eu",
        "KEYRAFT_CACERT=/env/ca.pem",
        "KEYRAFT_CLIENT_CERT=/env/c.pem",
        "KEYRAFT_CLIENT_KEY=/env/k.pem",
        "KEYRAFT_TLS_SERVER_NAME=server.global.keyraft",
        NULL,
    };
    char *argv[] = {"list", NULL};
    struct kr_cli_api api;
    char errmsg[KR_ERRMSG_SIZE];

    (void)state;
    fake_env = env;
    assert_int_equal(api_setup(&api, 1, argv, errmsg), 0);
    assert_string_equal(api.addr, "https://kr.example:4656");
    assert_string_equal(api.token, "env-token");
    assert_string_equal(api.namespace, "prod");
    assert_true(api.namespace_explicit);
    assert_string_equal(api.region, "eu");
    assert_string_equal(api.ca_cert, "/env/ca.pem");
    assert_string_equal(api.client_cert, "/env/c.pem");
    assert_string_equal(api.client_key, "/env/k.pem");
    assert_string_equal(api.tls_server_name, "server.global.keyraft");
}

static void test_api_flag_beats_env(void **state)
{
    static const char *const env[] = {
        "KEYRAFT_ADDR=http://env:1", "KEYRAFT_TOKEN=env-token",
        "KEYRAFT_NAMESPACE=envns",   "KEYRAFT_CACERT=/env/ca.pem",
        "KEYRAFT_REGION=",           NULL,
    };
    char *argv[] = {"list",       "-address", "flaghost:9", "--token=ft",
                    "-namespace", "flagns",   "-ca-cert",   "/flag/ca.pem",
                    "rest",       NULL};
    struct kr_cli_api api;
    char errmsg[KR_ERRMSG_SIZE];

    (void)state;
    fake_env = env;
    assert_int_equal(api_setup(&api, 9, argv, errmsg), 0);
    assert_string_equal(api.addr, "http://flaghost:9");
    assert_string_equal(api.token, "ft");
    assert_string_equal(api.namespace, "flagns");
    assert_true(api.namespace_explicit);
    assert_string_equal(api.ca_cert, "/flag/ca.pem");
    /* An empty variable counts as unset. */
    assert_null(api.region);
}

static void test_api_bad_address(void **state)
{
    char *argv[] = {"list", "-address", "unix:///tmp/sock", NULL};
    char *argv2[] = {"list", "-address", "http://", NULL};
    struct kr_cli_api api;
    char errmsg[KR_ERRMSG_SIZE];

    (void)state;
    fake_env = NULL;
    assert_int_equal(api_setup(&api, 3, argv, errmsg), KR_EINVAL);
    assert_non_null(strstr(errmsg, "scheme"));
    assert_int_equal(api_setup(&api, 3, argv2, errmsg), KR_EINVAL);
}

/* ---- the flag parser ---- */

struct flag_vals {
    bool b;
    const char *s;
    uint64_t u;
    bool u_set;
    int i;
};

static int parse(struct flag_vals *v, int argc, char **argv, int *argi,
                 bool *help, char *errmsg)
{
    const struct kr_cli_flag flags[] = {
        {"bool", KR_CLI_FLAG_BOOL, &v->b, NULL, NULL, "", NULL},
        {"str", KR_CLI_FLAG_STRING, &v->s, NULL, "<s>", "", NULL},
        {"u64", KR_CLI_FLAG_UINT64, &v->u, &v->u_set, "<n>", "", NULL},
        {"int", KR_CLI_FLAG_INT, &v->i, NULL, "<n>", "", NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {"t", "", NULL, NULL, flags, NULL};

    memset(v, 0, sizeof(*v));
    return kr_cli_flags_parse(&cmd, argc, argv, argi, help, errmsg);
}

static void test_flags_forms(void **state)
{
    char *argv[] = {
        "t",    "-bool", "--str", "x",           "-u64=18446744073709551615",
        "-int", "7",     "pos",   "-bool=false", NULL};
    char *argv2[] = {"t", "-bool=false", "--", "-str", NULL};
    char *argv3[] = {"t", "-", "-bool", NULL};
    struct flag_vals v;
    char errmsg[KR_ERRMSG_SIZE];
    bool help;
    int argi;

    (void)state;
    assert_int_equal(parse(&v, 9, argv, &argi, &help, errmsg), 0);
    assert_true(v.b);
    assert_string_equal(v.s, "x");
    assert_true(v.u_set);
    assert_true(v.u == UINT64_MAX);
    assert_int_equal(v.i, 7);
    assert_false(help);
    /* Parsing stops at the first positional argument, like Go's. */
    assert_int_equal(argi, 7);

    assert_int_equal(parse(&v, 4, argv2, &argi, &help, errmsg), 0);
    assert_false(v.b);
    assert_int_equal(argi, 3);
    assert_null(v.s);

    /* A lone "-" is a positional argument (stdin). */
    assert_int_equal(parse(&v, 3, argv3, &argi, &help, errmsg), 0);
    assert_int_equal(argi, 1);
}

static void test_flags_errors(void **state)
{
    char *unknown[] = {"t", "-nope", NULL};
    char *missing[] = {"t", "-str", NULL};
    char *badu[] = {"t", "-u64", "-1", NULL};
    char *badint[] = {"t", "-int=x", NULL};
    char *badbool[] = {"t", "-bool=maybe", NULL};
    char *help[] = {"t", "-str", "a", "-h", "-nope", NULL};
    struct flag_vals v;
    char errmsg[KR_ERRMSG_SIZE];
    bool h;
    int argi;

    (void)state;
    assert_int_equal(parse(&v, 2, unknown, &argi, &h, errmsg), KR_EINVAL);
    assert_string_equal(errmsg, "flag provided but not defined: -nope");
    assert_int_equal(parse(&v, 2, missing, &argi, &h, errmsg), KR_EINVAL);
    assert_string_equal(errmsg, "flag needs an argument: -str");
    assert_int_equal(parse(&v, 3, badu, &argi, &h, errmsg), KR_EINVAL);
    assert_int_equal(parse(&v, 2, badint, &argi, &h, errmsg), KR_EINVAL);
    assert_int_equal(parse(&v, 2, badbool, &argi, &h, errmsg), KR_EINVAL);
    assert_int_equal(parse(&v, 5, help, &argi, &h, errmsg), 0);
    assert_true(h);
}

/* ---- var put items ---- */

static int item(const char *arg, FILE *in, bool *used, char **key,
                struct kr_buf *val, char *errmsg)
{
    kr_buf_init(val);
    return kr_cli_var_item_parse(arg, in, used, key, val, errmsg);
}

static void test_item_plain(void **state)
{
    struct kr_buf val;
    char errmsg[KR_ERRMSG_SIZE];
    char *key = NULL;
    bool used = false;

    (void)state;
    assert_int_equal(item("user=admin", NULL, &used, &key, &val, errmsg), 0);
    assert_string_equal(key, "user");
    assert_string_equal(kr_cli_buf_str(&val), "admin");
    free(key);
    kr_buf_free(&val);

    /* Only the first '=' splits. */
    assert_int_equal(item("dsn=a=b", NULL, &used, &key, &val, errmsg), 0);
    assert_string_equal(key, "dsn");
    assert_string_equal(kr_cli_buf_str(&val), "a=b");
    free(key);
    kr_buf_free(&val);

    /* Empty value: remove the item. */
    assert_int_equal(item("gone=", NULL, &used, &key, &val, errmsg), 0);
    assert_string_equal(key, "gone");
    assert_int_equal(val.len, 0);
    free(key);
    kr_buf_free(&val);

    /* \@ escapes a literal '@'. */
    assert_int_equal(item("at=\\@home", NULL, &used, &key, &val, errmsg), 0);
    assert_string_equal(kr_cli_buf_str(&val), "@home");
    free(key);
    kr_buf_free(&val);
    assert_false(used);
}

static void test_item_file(void **state)
{
    char path[] = "/tmp/test_cli_item_XXXXXX";
    char arg[64];
    struct kr_buf val;
    char errmsg[KR_ERRMSG_SIZE];
    char *key = NULL;
    bool used = false;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "line1\nline2\n", 12), 12);
    close(fd);
    snprintf(arg, sizeof(arg), "cert=@%s", path);
    assert_int_equal(item(arg, NULL, &used, &key, &val, errmsg), 0);
    assert_string_equal(key, "cert");
    assert_int_equal(val.len, 12);
    assert_memory_equal(val.data, "line1\nline2\n", 12);
    free(key);
    kr_buf_free(&val);
    unlink(path);

    key = NULL;
    assert_int_equal(item(arg, NULL, &used, &key, &val, errmsg), KR_EIO);
    assert_null(key);
    assert_non_null(strstr(errmsg, "item \"cert\""));
    kr_buf_free(&val);
}

static void test_item_stdin(void **state)
{
    char data[] = "piped secret";
    FILE *in = fmemopen(data, strlen(data), "r");
    struct kr_buf val;
    char errmsg[KR_ERRMSG_SIZE];
    char *key = NULL;
    bool used = false;

    (void)state;
    assert_non_null(in);
    assert_int_equal(item("tok=-", in, &used, &key, &val, errmsg), 0);
    assert_true(used);
    assert_string_equal(kr_cli_buf_str(&val), "piped secret");
    free(key);
    kr_buf_free(&val);
    key = NULL;
    assert_int_equal(item("tok2=-", in, &used, &key, &val, errmsg), KR_EINVAL);
    assert_non_null(strstr(errmsg, "already consumed"));
    kr_buf_free(&val);
    assert_int_equal(item("x=-", NULL, &used, &key, &val, errmsg), KR_EINVAL);
    kr_buf_free(&val);
    fclose(in);
}

static void test_item_errors(void **state)
{
    struct kr_buf val;
    char errmsg[KR_ERRMSG_SIZE];
    char *key = NULL;
    bool used = false;

    (void)state;
    assert_int_equal(item("hunter2", NULL, &used, &key, &val, errmsg),
                     KR_EINVAL);
    /* The argument may be a mistyped secret: never echo it. */
    assert_null(strstr(errmsg, "hunter2"));
    kr_buf_free(&val);
    assert_int_equal(item("=value", NULL, &used, &key, &val, errmsg),
                     KR_EINVAL);
    assert_null(strstr(errmsg, "value\""));
    kr_buf_free(&val);
    assert_null(key);
}

/* ---- key prefix resolution ---- */

static json_t *test_keys(void)
{
    json_error_t jerr;
    json_t *k =
        json_loads("[{\"KeyID\":\"aaaa1111-0000-4000-8000-000000000001\"},"
                   " {\"KeyID\":\"aaaa2222-0000-4000-8000-000000000002\"},"
                   " {\"KeyID\":\"bbbb3333-0000-4000-8000-000000000003\"},"
                   " 42, {\"State\":\"active\"}, {\"KeyID\":7}]",
                   0, &jerr);

    assert_non_null(k);
    return k;
}

static void test_prefix_unique(void **state)
{
    json_t *keys = test_keys();
    const char *id = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(kr_cli_keyring_match(keys, "bb", &id, &n), 0);
    assert_string_equal(id, "bbbb3333-0000-4000-8000-000000000003");
    assert_int_equal(n, 1);
    assert_int_equal(kr_cli_keyring_match(keys, "aaaa2", &id, &n), 0);
    assert_string_equal(id, "aaaa2222-0000-4000-8000-000000000002");
    assert_int_equal(kr_cli_keyring_match(
                         keys, "aaaa1111-0000-4000-8000-000000000001", &id, &n),
                     0);
    assert_string_equal(id, "aaaa1111-0000-4000-8000-000000000001");
    json_decref(keys);
}

static void test_prefix_ambiguous(void **state)
{
    json_t *keys = test_keys();
    const char *id = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(kr_cli_keyring_match(keys, "aaaa", &id, &n), KR_ECONFLICT);
    assert_int_equal(n, 2);
    assert_null(id);
    json_decref(keys);
}

static void test_prefix_none(void **state)
{
    json_t *keys = test_keys();
    json_t *empty = json_array();
    const char *id = NULL;
    size_t n = 9;

    (void)state;
    assert_int_equal(kr_cli_keyring_match(keys, "cc", &id, &n), KR_ENOTFOUND);
    assert_int_equal(n, 0);
    assert_int_equal(kr_cli_keyring_match(keys, "", &id, &n), KR_EINVAL);
    assert_int_equal(kr_cli_keyring_match(empty, "a", &id, &n), KR_ENOTFOUND);
    /* Not an array at all (malformed reply): nothing matches. */
    assert_int_equal(kr_cli_keyring_match(NULL, "a", &id, &n), KR_ENOTFOUND);
    json_decref(empty);
    json_decref(keys);
}

/* ---- -prepublish ---- */

static void test_publish_time(void **state)
{
    const int64_t now = INT64_C(1700000000000000000);
    char errmsg[KR_ERRMSG_SIZE];
    int64_t out = 0;

    (void)state;
    assert_int_equal(kr_cli_keyring_publish_time("1h", now, &out, errmsg), 0);
    assert_true(out == now + 3600 * KR_NS_PER_SEC);
    assert_int_equal(kr_cli_keyring_publish_time("1h30m", now, &out, errmsg),
                     0);
    assert_true(out == now + 5400 * KR_NS_PER_SEC);
    assert_int_equal(kr_cli_keyring_publish_time("720h", now, &out, errmsg), 0);
    assert_true(out == now + INT64_C(720) * 3600 * KR_NS_PER_SEC);
    assert_int_equal(kr_cli_keyring_publish_time("0", now, &out, errmsg),
                     KR_EINVAL);
    assert_int_equal(kr_cli_keyring_publish_time("-1h", now, &out, errmsg),
                     KR_EINVAL);
    assert_int_equal(kr_cli_keyring_publish_time("1 day", now, &out, errmsg),
                     KR_EINVAL);
    assert_int_equal(kr_cli_keyring_publish_time("", now, &out, errmsg),
                     KR_EINVAL);
    assert_int_equal(
        kr_cli_keyring_publish_time("2562047h", INT64_MAX - 1000, &out, errmsg),
        KR_EINVAL);
}

/* ---- output and encoding ---- */

static void test_table(void **state)
{
    struct kr_cli_table *t = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    (void)state;
    assert_int_equal(kr_cli_table_new(&t, 3), 0);
    assert_int_equal(
        kr_cli_table_add(t, (const char *const[]){"Key", "State", "Time"}), 0);
    assert_int_equal(
        kr_cli_table_add(t, (const char *const[]){"abc", "active", ""}), 0);
    assert_int_equal(
        kr_cli_table_add(t, (const char *const[]){"d", "x", "later"}), 0);
    kr_cli_table_print(t, fp, "  ", "");
    fclose(fp);
    assert_string_equal(text, "Key  State   Time\n"
                              "abc  active\n"
                              "d    x       later\n");
    free(text);
    kr_cli_table_free(t);
    kr_cli_table_free(NULL);
}

/* Prints conf_text's peers with kr_cli_raft_print_peers into *text. */
static int peers_text(const char *conf_text, char **text)
{
    json_error_t jerr;
    json_t *conf = json_loads(conf_text, 0, &jerr);
    size_t len = 0;
    FILE *fp = open_memstream(text, &len);
    int rv;

    assert_non_null(conf);
    assert_non_null(fp);
    rv = kr_cli_raft_print_peers(conf, fp);
    fclose(fp);
    json_decref(conf);
    return rv;
}

static void test_raft_peers(void **state)
{
    char *text = NULL;

    (void)state;
    /* Sorted by Node; Leader picks the State; Voter prints as Go's %v. */
    assert_int_equal(
        peers_text("{\"Index\":7,\"Servers\":["
                   "{\"ID\":\"22\",\"Node\":\"10.0.0.2:4657\","
                   "\"Address\":\"10.0.0.2:4657\",\"Leader\":false,"
                   "\"Voter\":false,\"RaftProtocol\":\"3\"},"
                   "{\"ID\":\"1\",\"Node\":\"10.0.0.1:4657\","
                   "\"Address\":\"10.0.0.1:4657\",\"Leader\":true,"
                   "\"Voter\":true,\"RaftProtocol\":\"3\"}]}",
                   &text),
        0);
    assert_string_equal(
        text,
        "Node           ID  Address        State     Voter  RaftProtocol\n"
        "10.0.0.1:4657  1   10.0.0.1:4657  leader    true   3\n"
        "10.0.0.2:4657  22  10.0.0.2:4657  follower  false  3\n");
    free(text);
    text = NULL;
    assert_int_equal(peers_text("{\"Servers\":[]}", &text), 0);
    assert_string_equal(text,
                        "Node  ID  Address  State  Voter  RaftProtocol\n");
    free(text);
    text = NULL;
    assert_int_equal(peers_text("{\"Index\":1}", &text), KR_EINVAL);
    assert_string_equal(text, "");
    free(text);
    text = NULL;
    assert_int_equal(peers_text("{\"Servers\":[{},3]}", &text), KR_EINVAL);
    assert_string_equal(text, "");
    free(text);
}

static void test_encoding(void **state)
{
    struct kr_buf b;

    (void)state;
    kr_buf_init(&b);
    kr_cli_query_add(&b, "prefix", "a b/c&d");
    kr_cli_query_add(&b, "filter", "Path == \"x\"");
    assert_string_equal(kr_cli_buf_str(&b),
                        "prefix=a%20b%2Fc%26d&filter=Path%20%3D%3D%20%22x%22");
    kr_buf_free(&b);
    kr_cli_path_escape(&b, "nomad/jobs/web~1_-.x?");
    assert_string_equal(kr_cli_buf_str(&b), "nomad/jobs/web~1_-.x%3F");
    kr_buf_free(&b);
}

static void test_format_time(void **state)
{
    char out[40];

    (void)state;
    kr_cli_format_time(0, out, sizeof(out));
    assert_string_equal(out, "");
    kr_cli_format_time(INT64_C(1700000000000000000), out, sizeof(out));
    assert_string_equal(out, "2023-11-14T22:13:20Z");
}

static void test_resp_check(void **state)
{
    struct kr_cli_resp r;
    char errmsg[KR_ERRMSG_SIZE];

    (void)state;
    kr_cli_resp_init(&r);
    r.status = 200;
    assert_int_equal(kr_cli_resp_check(&r, 0, errmsg), 0);
    r.status = 404;
    assert_int_equal(kr_cli_resp_check(&r, 404, errmsg), 0);
    assert_int_equal(kr_cli_resp_check(&r, 0, errmsg), KR_EIO);
    assert_string_equal(errmsg, "unexpected response code 404");
    r.status = 503;
    kr_buf_puts(&r.body, "No cluster leader\n");
    assert_int_equal(kr_cli_resp_check(&r, 0, errmsg), KR_EIO);
    assert_string_equal(errmsg, "No cluster leader");
    kr_cli_resp_free(&r);
}

/* ---- rotate -full -wait ---- */

static json_t *status_of(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    assert_non_null(v);
    return v;
}

static void count_of(const char *text, uint64_t total, uint64_t done)
{
    json_t *st = status_of(text);
    struct kr_cli_rekey_count c = {99, 99};

    kr_cli_rekey_sum(st, &c);
    assert_int_equal(c.total, total);
    assert_int_equal(c.done, done);
    json_decref(st);
}

static void test_rekey_sum(void **state)
{
    struct kr_cli_rekey_count c = {99, 99};

    (void)state;
    count_of("{\"Running\": true, \"Keys\": ["
             "{\"KeyID\": \"a\", \"Total\": 100000, \"Remaining\": 40000},"
             "{\"KeyID\": \"b\", \"Total\": 10, \"Remaining\": 10}]}",
             100010, 60000);
    /* Each key's Remaining is clamped to 0..Total before summing. */
    count_of("{\"Keys\": [{\"Total\": 10, \"Remaining\": 25},"
             "{\"Total\": 10, \"Remaining\": -3}]}",
             20, 10);
    count_of("{\"Keys\": [{\"Total\": -5, \"Remaining\": 1},"
             "{\"Remaining\": 4}, 7]}",
             0, 0);
    count_of("{\"Running\": false, \"Keys\": []}", 0, 0);
    count_of("{\"Running\": false, \"Keys\": null}", 0, 0);
    count_of("{\"Keys\": {\"Total\": 3}}", 0, 0);
    /* Sums saturate instead of wrapping. */
    count_of("{\"Keys\": [{\"Total\": 9223372036854775807, \"Remaining\": 0},"
             "{\"Total\": 9223372036854775807, \"Remaining\": 0},"
             "{\"Total\": 9223372036854775807, \"Remaining\": 0}]}",
             UINT64_MAX, UINT64_MAX);
    kr_cli_rekey_sum(NULL, &c);
    assert_int_equal(c.total, 0);
    assert_int_equal(c.done, 0);
}

static void test_rekey_format(void **state)
{
    static const struct {
        struct kr_cli_rekey_count c;
        const char *bar, *line;
    } cases[] = {
        {{100000, 50000},
         "Rekeying [##########----------]  50%  50000/100000 variables",
         "rekey: 50000/100000 variables re-encrypted (50%)"},
        {{100000, 0},
         "Rekeying [--------------------]   0%  0/100000 variables",
         "rekey: 0/100000 variables re-encrypted (0%)"},
        /* Rounded down: 100% only when every variable is done. */
        {{100000, 99999},
         "Rekeying [###################-]  99%  99999/100000 variables",
         "rekey: 99999/100000 variables re-encrypted (99%)"},
        {{7, 7},
         "Rekeying [####################] 100%  7/7 variables",
         "rekey: 7/7 variables re-encrypted (100%)"},
        {{0, 0},
         "Rekeying [####################] 100%  0/0 variables",
         "rekey: 0/0 variables re-encrypted (100%)"},
        {{3, 1},
         "Rekeying [######--------------]  33%  1/3 variables",
         "rekey: 1/3 variables re-encrypted (33%)"},
    };
    struct kr_cli_rekey_count big = {UINT64_MAX, UINT64_MAX - 1};
    char out[KR_CLI_REKEY_LINE_SIZE];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kr_cli_rekey_format_bar(&cases[i].c, out, sizeof(out));
        assert_string_equal(out, cases[i].bar);
        kr_cli_rekey_format_line(&cases[i].c, out, sizeof(out));
        assert_string_equal(out, cases[i].line);
    }
    /* No overflow near the top of the range, and a long line fits. */
    assert_int_equal(kr_cli_rekey_percent(&big), 99);
    big.done = UINT64_MAX;
    assert_int_equal(kr_cli_rekey_percent(&big), 100);
    kr_cli_rekey_format_bar(&big, out, sizeof(out));
    assert_string_equal(out, "Rekeying [####################] 100%  "
                             "18446744073709551615/18446744073709551615 "
                             "variables");
}

#define ST_RUN(total, left, err)                                               \
    "{\"Running\": true, \"Keys\": [{\"KeyID\": \"k\", \"State\": "            \
    "\"rekeying\", \"Total\": " #total ", \"Remaining\": " #left "}], "        \
    "\"Checkpoint\": null, \"Error\": \"" err "\"}"
#define ST_DONE "{\"Running\": false, \"Keys\": [], \"Error\": \"\"}"

/* Feeds the view the statuses in order, at the times given, the last one
 * as the final status; returns what it drew (free it). */
static char *view_text(bool tty, const char *const *statuses,
                       const uint64_t *times_ms, size_t n)
{
    struct kr_cli_rekey_view v;
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    assert_non_null(fp);
    kr_cli_rekey_view_init(&v, fp, tty);
    for (size_t i = 0; i < n; i++) {
        json_t *st = status_of(statuses[i]);

        if (i + 1 < n)
            kr_cli_rekey_view_show(&v, st, times_ms[i]);
        else
            kr_cli_rekey_view_done(&v, st);
        json_decref(st);
    }
    fclose(fp);
    return text;
}

static void test_rekey_view_plain(void **state)
{
    static const char *const st[] = {
        ST_RUN(100000, 100000, ""),
        ST_RUN(100000, 90000, ""), /* 500 ms later: too soon */
        ST_RUN(100000, 50000, ""), /* 2 s after the first line */
        ST_RUN(100000, 50000, "key k: no such KMS provider"),
        ST_RUN(100000, 50000, "key k: no such KMS provider"),
        ST_RUN(100000, 50000, ""), /* unchanged text: not repeated */
        ST_RUN(100000, 40000, "key k: no such KMS provider"),
        ST_RUN(100000, 10000, "key k: still broken"),
        ST_DONE,
    };
    static const uint64_t t[] = {1000, 1500, 3000, 3500, 4000,
                                 6000, 6500, 9000, 9500};
    char *text = view_text(false, st, t, 9);

    (void)state;
    assert_string_equal(text,
                        "rekey: 0/100000 variables re-encrypted (0%)\n"
                        "rekey: 50000/100000 variables re-encrypted (50%)\n"
                        "rekey: waiting: key k: no such KMS provider\n"
                        "rekey: 60000/100000 variables re-encrypted (60%)\n"
                        "rekey: waiting: key k: still broken\n"
                        "rekey: 90000/100000 variables re-encrypted (90%)\n"
                        "rekey: done: 100000 variables re-encrypted\n");
    free(text);
}

static void test_rekey_view_tty(void **state)
{
    static const char *const st[] = {
        ST_RUN(100000, 100000, ""),
        ST_RUN(100000, 50000, "no leader"),
        ST_RUN(100000, 40000, "no leader"),
        ST_DONE,
    };
    static const uint64_t t[] = {0, 500, 1000, 1500};
    char *text = view_text(true, st, t, 4);

    (void)state;
    assert_string_equal(
        text, "\rRekeying [--------------------]   0%  0/100000 variables\n"
              "rekey: waiting: no leader\n"
              "\rRekeying [##########----------]  50%  50000/100000 variables"
              "\rRekeying [############--------]  60%  60000/100000 variables"
              "\rRekeying [####################] 100%  100000/100000 "
              "variables\n"
              "rekey: done: 100000 variables re-encrypted\n");
    free(text);
}

static void test_rekey_view_shrinking_bar(void **state)
{
    /* A second rekey's key leaves the list: the shorter bar blanks the
     * tail of the longer one. */
    static const char *const st[] = {
        ST_RUN(100000, 100000, ""),
        ST_RUN(10, 5, ""),
        ST_DONE,
    };
    static const uint64_t t[] = {0, 500, 1000};
    char *text = view_text(true, st, t, 3);

    (void)state;
    assert_string_equal(
        text, "\rRekeying [--------------------]   0%  0/100000 variables"
              "\rRekeying [##########----------]  50%  5/10 variables"
              "    "
              "\rRekeying [####################] 100%  100000/100000 "
              "variables\n"
              "rekey: done: 100000 variables re-encrypted\n");
    free(text);
}

static void test_rekey_view_unseen(void **state)
{
    /* Finished before the first poll: no count to report. */
    static const char *const st[] = {ST_DONE};
    static const uint64_t t[] = {0};
    char *text = view_text(true, st, t, 1);

    (void)state;
    assert_string_equal(text, "rekey: done\n");
    free(text);
    text = view_text(false, st, t, 1);
    assert_string_equal(text, "rekey: done\n");
    free(text);
}

/* Runs a command entry point with file descriptor fd captured; returns
 * its exit code and what it wrote there in *text (free it). */
static int run_captured(kr_cli_main_fn fn, int argc, char **argv, int fd,
                        char **text)
{
    FILE *tmp = tmpfile();
    int saved, rc;
    long n;

    assert_non_null(tmp);
    fflush(stdout);
    fflush(stderr);
    saved = dup(fd);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), fd) >= 0);
    rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(saved, fd) >= 0);
    close(saved);
    n = ftell(tmp);
    assert_true(n >= 0);
    *text = calloc(1, (size_t)n + 1);
    assert_non_null(*text);
    rewind(tmp);
    assert_int_equal(fread(*text, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return rc;
}

static void test_rotate_wait_flag(void **state)
{
    /* A dead address: a usage error must come before any connection. */
    char *no_full[] = {"rotate", "-address", "http://127.0.0.1:1",
                       "-now",   "-wait",    NULL};
    char *prepub[] = {"rotate",      "-address", "http://127.0.0.1:1",
                      "-prepublish", "1h",       "-wait",
                      NULL};
    char *help[] = {"rotate", "-h", NULL};
    char *text = NULL;

    (void)state;
    assert_int_equal(
        run_captured(kr_cli_keyring_rotate_main, 5, no_full, 2, &text),
        KR_CLI_EXIT_USAGE);
    assert_non_null(strstr(text, "Error: -wait requires -full\n"));
    assert_non_null(strstr(text, "Usage: keyraft operator root keyring"));
    free(text);
    assert_int_equal(
        run_captured(kr_cli_keyring_rotate_main, 6, prepub, 2, &text),
        KR_CLI_EXIT_USAGE);
    assert_non_null(strstr(text, "-wait requires -full"));
    free(text);
    assert_int_equal(
        run_captured(kr_cli_keyring_rotate_main, 2, help, 1, &text),
        KR_CLI_EXIT_OK);
    assert_non_null(strstr(text, "\n  -wait\n"));
    assert_non_null(strstr(text, "Requires -full."));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_defaults),
        cmocka_unit_test(test_api_env_only),
        cmocka_unit_test(test_api_flag_beats_env),
        cmocka_unit_test(test_api_bad_address),
        cmocka_unit_test(test_flags_forms),
        cmocka_unit_test(test_flags_errors),
        cmocka_unit_test(test_item_plain),
        cmocka_unit_test(test_item_file),
        cmocka_unit_test(test_item_stdin),
        cmocka_unit_test(test_item_errors),
        cmocka_unit_test(test_prefix_unique),
        cmocka_unit_test(test_prefix_ambiguous),
        cmocka_unit_test(test_prefix_none),
        cmocka_unit_test(test_publish_time),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_raft_peers),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_resp_check),
        cmocka_unit_test(test_rekey_sum),
        cmocka_unit_test(test_rekey_format),
        cmocka_unit_test(test_rekey_view_plain),
        cmocka_unit_test(test_rekey_view_tty),
        cmocka_unit_test(test_rekey_view_shrinking_bar),
        cmocka_unit_test(test_rekey_view_unseen),
        cmocka_unit_test(test_rotate_wait_flag),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
