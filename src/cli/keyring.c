/*
 * See keyring.h.  Output follows nomad's operator_root_keyring*.go: one
 * table shape (Key, State, Create Time, Publish Time) for list and for the
 * key a rotation created, key IDs cut to 8 characters unless -verbose.
 * `remove` accepts a unique ID prefix (nomad PR #24148): it is resolved
 * against the key list first, and an ambiguous prefix deletes nothing.
 * `rotate -full -wait` prints the new key, then hands over to rekey.c.
 */
#include "cli/keyring.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/cmd.h"
#include "cli/rekey.h"
#include "common/err.h"
#include "common/time.h"
#include "common/uuid.h"

#define SHORT_ID_LEN 8
#define MSG_NO_ARGS "this command takes no arguments"
#define MSG_ONE_ID "this command requires one argument: <key ID>"
#define MSG_WAIT_FULL "-wait requires -full"

int kr_cli_keyring_match(const json_t *keys, const char *prefix,
                         const char **out_id, size_t *nmatch)
{
    size_t len = strlen(prefix);
    const char *found = NULL;

    *nmatch = 0;
    if (len == 0)
        return KR_EINVAL;
    for (size_t i = 0; i < json_array_size(keys); i++) {
        const char *id = kr_cli_json_str(json_array_get(keys, i), "KeyID");

        if (strcmp(id, prefix) == 0) {
            *out_id = id;
            *nmatch = 1;
            return 0;
        }
        if (strncmp(id, prefix, len) == 0) {
            found = id;
            (*nmatch)++;
        }
    }
    if (*nmatch == 0)
        return KR_ENOTFOUND;
    if (*nmatch > 1)
        return KR_ECONFLICT;
    *out_id = found;
    return 0;
}

int kr_cli_keyring_publish_time(const char *dur, int64_t now_ns, int64_t *out,
                                char *errmsg)
{
    int64_t ns = 0;

    if (kr_duration_parse(dur, &ns) != 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid value \"%s\" for -prepublish: not a "
                       "duration (e.g. \"1h\", \"90m\", \"720h\")",
                       dur);
    if (ns <= 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid value \"%s\" for -prepublish: must be "
                       "positive",
                       dur);
    if (now_ns > INT64_MAX - ns)
        return kr_errf(errmsg, KR_EINVAL,
                       "invalid value \"%s\" for -prepublish: too far in "
                       "the future",
                       dur);
    *out = now_ns + ns;
    return 0;
}

/* Prints RootKeyMeta objects as nomad's keyring table. */
static int print_keys(json_t *const *keys, size_t n, bool verbose, FILE *fp)
{
    struct kr_cli_table *t = NULL;
    int rv;

    rv = kr_cli_table_new(&t, 4);
    if (rv == 0)
        rv = kr_cli_table_add(t, (const char *const[]){"Key", "State",
                                                       "Create Time",
                                                       "Publish Time"});
    for (size_t i = 0; rv == 0 && i < n; i++) {
        const char *id = kr_cli_json_str(keys[i], "KeyID");
        int64_t pt = kr_cli_json_int(keys[i], "PublishTime");
        char shown[KR_UUID_LEN + 1], created[40], published[40] = "";
        char st[64];

        snprintf(shown, sizeof(shown), "%.*s",
                 verbose ? KR_UUID_LEN : SHORT_ID_LEN, id);
        kr_cli_format_time(kr_cli_json_int(keys[i], "CreateTime"), created,
                           sizeof(created));
        if (pt != 0)
            kr_cli_format_time(pt, published, sizeof(published));
        /* Ours: a key restored from a redacted snapshot has no material. */
        snprintf(st, sizeof(st), "%s%s", kr_cli_json_str(keys[i], "State"),
                 json_is_true(json_object_get(keys[i], "Redacted"))
                     ? " (redacted)"
                     : "");
        rv = kr_cli_table_add(
            t, (const char *const[]){shown, st, created, published});
    }
    if (rv == 0)
        kr_cli_table_print(t, fp, "  ", "");
    else
        kr_cli_error("out of memory");
    kr_cli_table_free(t);
    return rv;
}

/* GET /v1/operator/keyring/keys; returns the array or NULL (reported). */
static json_t *fetch_keys(struct kr_cli_client *client)
{
    struct kr_cli_resp resp;
    json_t *v = NULL;

    kr_cli_resp_init(&resp);
    if (kr_cli_client_call(client, "GET", "/v1/operator/keyring/keys", NULL,
                           NULL, 0, &resp) == 0)
        v = kr_cli_resp_json(&resp, true);
    kr_cli_resp_free(&resp);
    return v;
}

/* The array's elements as a C array (borrowed); NULL when empty. */
static json_t **array_items(json_t *arr, size_t *n)
{
    json_t **out;

    *n = json_array_size(arr);
    if (*n == 0)
        return NULL;
    out = calloc(*n, sizeof(*out));
    if (out == NULL) {
        *n = 0;
        return NULL;
    }
    for (size_t i = 0; i < *n; i++)
        out[i] = json_array_get(arr, i);
    return out;
}

static const char LIST_ABOUT[] =
    "Lists the root encryption keys.  This returns key metadata, never\n"
    "key material.\n"
    "\n"
    "If ACLs are enabled, this command requires a token with the\n"
    "operator:read policy or the operator:keyring-read capability.";

int kr_cli_keyring_list_main(int argc, char **argv)
{
    struct kr_cli_session s;
    json_t *keys = NULL;
    json_t **items = NULL;
    bool verbose = false;
    size_t n = 0;
    int argi = 0, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"verbose", KR_CLI_FLAG_BOOL, &verbose, NULL, NULL,
         "Show full key IDs.", NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "operator root keyring list",
        "[options]",
        LIST_ABOUT,
        "Keyring Options",
        flags,
        s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 0, 0, MSG_NO_ARGS, &argi, &rc))
        goto out;
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    keys = fetch_keys(s.client);
    if (keys == NULL)
        goto out;
    items = array_items(keys, &n);
    if (n != json_array_size(keys)) {
        kr_cli_error("out of memory");
        goto out;
    }
    if (print_keys(items, n, verbose, stdout) == 0)
        rc = KR_CLI_EXIT_OK;
out:
    free(items);
    json_decref(keys);
    kr_cli_session_free(&s);
    return rc;
}

static const char ROTATE_ABOUT[] =
    "Generates a new root encryption key for all future variables and\n"
    "workload identities.  With -full -wait, then follows the rekey of\n"
    "existing variables until it finishes.\n"
    "\n"
    "If ACLs are enabled, this command requires a token with the\n"
    "operator:write policy or the operator:keyring-rotate capability.";

static const char ROTATE_NEED_ONE[] =
    "one of \"-now\" or \"-prepublish\" must be used.\n"
    "\n"
    "If a key has been leaked use \"-now\" to force immediate rotation.\n"
    "\n"
    "Otherwise please use \"-prepublish <duration>\" to ensure the new key is "
    "not used\n"
    "to sign workload identities before JWKS endpoints are updated.";

int kr_cli_keyring_rotate_main(int argc, char **argv)
{
    struct kr_cli_session s;
    json_t *reply = NULL, *key;
    const char *prepublish = NULL;
    bool full = false, now = false, verbose = false, wait_rekey = false;
    int64_t publish_time = 0;
    char errmsg[KR_ERRMSG_SIZE], num[24];
    int argi = 0, rc = KR_CLI_EXIT_ERROR;
    json_error_t jerr;
    const struct kr_cli_flag flags[] = {
        {"full", KR_CLI_FLAG_BOOL, &full, NULL, NULL,
         "Mark every older key \"rekeying\": the leader re-encrypts their\n"
         "variables under the new key in the background, then marks them\n"
         "\"inactive\".  Use -wait to follow it.",
         NULL},
        {"now", KR_CLI_FLAG_BOOL, &now, NULL, NULL,
         "Publish the new key immediately without prepublishing.  One of\n"
         "-now or -prepublish must be set.",
         NULL},
        {"prepublish", KR_CLI_FLAG_STRING, &prepublish, NULL, "<duration>",
         "Prepublish the new key for this long (e.g. \"1h\") before it\n"
         "becomes active.  The active key is unchanged meanwhile; the\n"
         "leader's periodic key job promotes the new key at its first run\n"
         "after that.  One of -now or -prepublish must be set.",
         NULL},
        {"verbose", KR_CLI_FLAG_BOOL, &verbose, NULL, NULL,
         "Show the full key ID.", NULL},
        {"wait", KR_CLI_FLAG_BOOL, &wait_rekey, NULL, NULL,
         "With -full: after the rotation, wait until every variable is\n"
         "re-encrypted, showing progress on stderr.  Errors that hold the\n"
         "rekey up are shown while the server retries.  Requires -full.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "operator root keyring rotate",
        "[options] (-now | -prepublish <duration>)",
        ROTATE_ABOUT,
        "Keyring Options",
        flags,
        s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 0, 0, MSG_NO_ARGS, &argi, &rc))
        goto out;
    if (now == (prepublish != NULL)) {
        rc = kr_cli_usage_error(&cmd, "%s", ROTATE_NEED_ONE);
        goto out;
    }
    if (wait_rekey && !full) {
        rc = kr_cli_usage_error(&cmd, "%s", MSG_WAIT_FULL);
        goto out;
    }
    if (prepublish != NULL &&
        kr_cli_keyring_publish_time(prepublish, kr_time_now_ns(), &publish_time,
                                    errmsg) != 0) {
        rc = kr_cli_usage_error(&cmd, "%s", errmsg);
        goto out;
    }
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    /* The server switches on a full rekey when `full` is present at all. */
    if (full)
        kr_cli_query_add(&s.query, "full", "true");
    if (publish_time != 0) {
        snprintf(num, sizeof(num), "%lld", (long long)publish_time);
        kr_cli_query_add(&s.query, "publish_time", num);
    }
    if (kr_cli_session_call(&s, "PUT", "/v1/operator/keyring/rotate", NULL,
                            0) != 0)
        goto out;
    reply =
        json_loadb((const char *)s.resp.body.data, s.resp.body.len, 0, &jerr);
    key = json_object_get(reply, "Key");
    if (!json_is_object(key)) {
        kr_cli_error("unexpected reply from server: %s",
                     reply == NULL ? jerr.text : "no Key object");
        goto out;
    }
    if (print_keys(&key, 1, verbose, stdout) != 0)
        goto out;
    /* The table first, even when stdout and stderr share a pipe. */
    fflush(stdout);
    if (!wait_rekey ||
        kr_cli_rekey_wait(s.client, stderr, isatty(STDERR_FILENO) == 1) == 0)
        rc = KR_CLI_EXIT_OK;
out:
    json_decref(reply);
    kr_cli_session_free(&s);
    return rc;
}

static const char REMOVE_ABOUT[] =
    "Removes a root encryption key from the cluster, given its ID or a\n"
    "unique prefix of it.  The active key cannot be removed.\n"
    "\n"
    "If ACLs are enabled, this command requires a token with the\n"
    "operator:write policy or the operator:keyring-delete capability.";

/* Reports an ambiguous prefix: the error, then the candidates. */
static void report_ambiguous(json_t *keys, const char *prefix, size_t n)
{
    json_t **match = calloc(n, sizeof(*match));
    size_t m = 0;

    kr_cli_error("key ID prefix \"%s\" matches %zu keys; use more "
                 "characters:",
                 prefix, n);
    if (match == NULL)
        return;
    for (size_t i = 0; i < json_array_size(keys) && m < n; i++) {
        json_t *k = json_array_get(keys, i);

        if (strncmp(kr_cli_json_str(k, "KeyID"), prefix, strlen(prefix)) == 0)
            match[m++] = k;
    }
    print_keys(match, m, true, stderr);
    free(match);
}

int kr_cli_keyring_remove_main(int argc, char **argv)
{
    struct kr_cli_session s;
    json_t *keys = NULL;
    const char *arg, *id = NULL;
    bool force = false, verbose = false;
    size_t nmatch = 0;
    int argi = 0, rv, rc = KR_CLI_EXIT_ERROR;
    const struct kr_cli_flag flags[] = {
        {"force", KR_CLI_FLAG_BOOL, &force, NULL, NULL,
         "Remove the key even if it was used to encrypt an existing\n"
         "variable or sign a workload identity.",
         NULL},
        {"verbose", KR_CLI_FLAG_BOOL, &verbose, NULL, NULL,
         "Accepted for compatibility; IDs are always shown in full here.",
         NULL},
        {NULL, KR_CLI_FLAG_BOOL, NULL, NULL, NULL, NULL, NULL},
    };
    const struct kr_cli_cmd cmd = {
        "operator root keyring remove",
        "[options] <key ID or unique prefix>",
        REMOVE_ABOUT,
        "Remove Options",
        flags,
        s.api.flags,
    };

    kr_cli_session_init(&s);
    if (!kr_cli_parse_args(&cmd, argc, argv, 1, 1, MSG_ONE_ID, &argi, &rc))
        goto out;
    arg = argv[argi];
    if (arg[0] == '\0') {
        rc = kr_cli_usage_error(&cmd, MSG_ONE_ID);
        goto out;
    }
    if (kr_cli_connect(&s.api, &s.client) != 0)
        goto out;
    if (kr_uuid_valid(arg)) {
        /* A whole ID needs no lookup (nor the keyring-read capability). */
        id = arg;
    } else {
        keys = fetch_keys(s.client);
        if (keys == NULL)
            goto out;
        rv = kr_cli_keyring_match(keys, arg, &id, &nmatch);
        if (rv == KR_ENOTFOUND) {
            kr_cli_error("no root key ID matches \"%s\"", arg);
            goto out;
        }
        if (rv != 0) {
            report_ambiguous(keys, arg, nmatch);
            goto out;
        }
    }
    kr_buf_puts(&s.url, "/v1/operator/keyring/key/");
    kr_cli_path_escape(&s.url, id);
    if (force)
        kr_cli_query_add(&s.query, "force", "true");
    if (kr_cli_session_call(&s, "DELETE", kr_cli_buf_str(&s.url), NULL, 0) != 0)
        goto out;
    printf("Removed encryption key %s\n", id);
    rc = KR_CLI_EXIT_OK;
out:
    json_decref(keys);
    kr_cli_session_free(&s);
    return rc;
}
