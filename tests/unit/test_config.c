/*
 * Unit tests for the configuration schema (src/config/config.c): defaults
 * and dev-mode defaults, every key in HCL and JSON, exact "file:line:"
 * messages for unknown keys, wrong types and bad values, keyring blocks
 * (forms, merging across files of a directory in lexical order, the
 * implicit aead block, the single-active rule, unknown providers), and
 * that no message ever contains a keyring parameter's value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/time.h"
#include "config/config.h"
#include "config/hcl.h"

#define SEC KR_NS_PER_SEC

static struct kr_config *new_cfg(bool dev)
{
    struct kr_config *cfg = NULL;

    assert_int_equal(kr_config_new(&cfg, dev), 0);
    assert_non_null(cfg);
    return cfg;
}

static void merge_ok(struct kr_config *cfg, const char *name, const char *text)
{
    char errmsg[KR_ERRMSG_SIZE] = "";

    if (kr_config_merge_string(cfg, name, text, strlen(text), errmsg) != 0)
        fail_msg("unexpected error: %s", errmsg);
}

static void finish_ok(struct kr_config *cfg)
{
    char errmsg[KR_ERRMSG_SIZE] = "";

    if (kr_config_finish(cfg, errmsg) != 0)
        fail_msg("unexpected error: %s", errmsg);
}

/* A fresh non-dev config, text merged as name: expects exactly want. */
static void merge_err(const char *name, const char *text, const char *want)
{
    struct kr_config *cfg = new_cfg(false);
    char errmsg[KR_ERRMSG_SIZE] = "";

    assert_int_equal(
        kr_config_merge_string(cfg, name, text, strlen(text), errmsg),
        KR_EINVAL);
    assert_string_equal(errmsg, want);
    kr_config_free(cfg);
}

/* Merges text, which must load, then expects finish to fail with want. */
static void finish_err(bool dev, const char *text, const char *want)
{
    struct kr_config *cfg = new_cfg(dev);
    char errmsg[KR_ERRMSG_SIZE] = "";

    merge_ok(cfg, "agent.hcl", text);
    assert_int_equal(kr_config_finish(cfg, errmsg), KR_EINVAL);
    assert_string_equal(errmsg, want);
    kr_config_free(cfg);
}

static void test_defaults(void **state)
{
    struct kr_config *cfg = new_cfg(false);
    char host[256] = "";

    (void)state;
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    assert_string_equal(cfg->name, host);
    assert_string_equal(cfg->region, "global");
    assert_string_equal(cfg->datacenter, "dc1");
    assert_null(cfg->data_dir);
    assert_string_equal(cfg->bind_addr, "0.0.0.0");
    assert_int_equal(cfg->http_port, 4656);
    assert_int_equal(cfg->rpc_port, 4657);
    assert_int_equal(cfg->serf_port, 4658);
    assert_int_equal(cfg->log_level, KR_LOG_INFO);
    assert_false(cfg->log_json);
    assert_false(cfg->dev);
    assert_false(cfg->server.enabled);
    assert_int_equal(cfg->server.bootstrap_expect, 1);
    assert_true(cfg->server.root_key_rotation_threshold == 720 * 3600 * SEC);
    assert_true(cfg->server.root_key_gc_interval == 600 * SEC);
    assert_true(cfg->server.root_key_gc_threshold == 3600 * SEC);
    assert_int_equal(cfg->server.root_key_rekey_rate, 20000);
    assert_true(cfg->server.start_timeout == 30 * SEC);
    assert_string_equal(cfg->server.oidc_issuer, "");
    assert_int_equal(cfg->n_keyrings, 0);
    kr_config_free(cfg);
}

static void test_data_dir_required(void **state)
{
    struct kr_config *cfg = new_cfg(false);
    char errmsg[KR_ERRMSG_SIZE] = "";

    (void)state;
    assert_int_equal(kr_config_finish(cfg, errmsg), KR_EINVAL);
    assert_string_equal(errmsg, "data_dir is required");
    merge_ok(cfg, "agent.hcl", "data_dir = \"/var/lib/keyraft\"\n");
    finish_ok(cfg);
    assert_string_equal(cfg->data_dir, "/var/lib/keyraft");
    kr_config_free(cfg);

    merge_err("agent.hcl", "data_dir = \"\"",
              "agent.hcl:1: data_dir: must not be empty");
}

static void test_dev_defaults(void **state)
{
    struct kr_config *cfg = new_cfg(true);

    (void)state;
    assert_true(cfg->dev);
    assert_string_equal(cfg->bind_addr, "127.0.0.1");
    assert_true(cfg->server.enabled);
    assert_int_equal(cfg->server.bootstrap_expect, 1);
    finish_ok(cfg);
    assert_null(cfg->data_dir);
    assert_int_equal(cfg->n_keyrings, 1);
    assert_string_equal(cfg->keyrings[0].type, "aead");
    assert_string_equal(cfg->keyrings[0].name, "");
    assert_string_equal(cfg->keyrings[0].id, "aead");
    assert_true(cfg->keyrings[0].active);
    assert_int_equal(cfg->keyrings[0].n_params, 0);
    assert_non_null(cfg->keyrings[0].origin);
    /* finish is idempotent: no second implicit block. */
    finish_ok(cfg);
    assert_int_equal(cfg->n_keyrings, 1);
    kr_config_free(cfg);

    /* Files override dev-mode defaults, as on top of Nomad's DevConfig. */
    cfg = new_cfg(true);
    merge_ok(cfg, "agent.hcl",
             "bind_addr = \"0.0.0.0\"\nserver { enabled = false }\n");
    finish_ok(cfg);
    assert_string_equal(cfg->bind_addr, "0.0.0.0");
    assert_false(cfg->server.enabled);
    kr_config_free(cfg);
}

static const char every_key_hcl[] =
    "name = \"node-1\"\n"
    "region = \"eu\"\n"
    "datacenter = \"dc2\"\n"
    "data_dir = \"/data\"\n"
    "bind_addr = \"10.0.0.1\"\n"
    "log_level = \"DEBUG\"\n"
    "log_json = true\n"
    "ports {\n"
    "  http = 8000\n"
    "  rpc = 8001\n"
    "  serf = 8002\n"
    "}\n"
    "server {\n"
    "  enabled = true\n"
    "  bootstrap_expect = 3\n"
    "  root_key_rotation_threshold = \"1h30m\"\n"
    "  root_key_gc_interval = \"1.5s\"\n"
    "  root_key_gc_threshold = \"250ms\"\n"
    "  root_key_rekey_rate = 0\n"
    "  start_timeout = \"2m\"\n"
    "  oidc_issuer = \"https://issuer.example\"\n"
    "}\n"
    "keyring \"awskms\" {\n"
    "  name = \"primary\"\n"
    "  active = true\n"
    "  region = \"us-east-1\"\n"
    "  kms_key_id = \"alias/kr\"\n"
    "}\n"
    "keyring \"aead\" {}\n";

static const char every_key_json[] =
    "{\n"
    "  \"name\": \"node-1\",\n"
    "  \"region\": \"eu\",\n"
    "  \"datacenter\": \"dc2\",\n"
    "  \"data_dir\": \"/data\",\n"
    "  \"bind_addr\": \"10.0.0.1\",\n"
    "  \"log_level\": \"DEBUG\",\n"
    "  \"log_json\": true,\n"
    "  \"ports\": {\"http\": 8000, \"rpc\": 8001, \"serf\": 8002},\n"
    "  \"server\": {\n"
    "    \"enabled\": true,\n"
    "    \"bootstrap_expect\": 3,\n"
    "    \"root_key_rotation_threshold\": \"1h30m\",\n"
    "    \"root_key_gc_interval\": \"1.5s\",\n"
    "    \"root_key_gc_threshold\": \"250ms\",\n"
    "    \"root_key_rekey_rate\": 0,\n"
    "    \"start_timeout\": \"2m\",\n"
    "    \"oidc_issuer\": \"https://issuer.example\"\n"
    "  },\n"
    "  \"keyring\": {\n"
    "    \"awskms\": {\"name\": \"primary\", \"active\": true,\n"
    "               \"region\": \"us-east-1\", \"kms_key_id\": \"alias/kr\"},\n"
    "    \"aead\": {}\n"
    "  }\n"
    "}\n";

static void check_every_key(const char *name, const char *text,
                            const char *origin)
{
    struct kr_config *cfg = new_cfg(false);
    const struct kr_config_keyring *k;

    merge_ok(cfg, name, text);
    finish_ok(cfg);
    assert_string_equal(cfg->name, "node-1");
    assert_string_equal(cfg->region, "eu");
    assert_string_equal(cfg->datacenter, "dc2");
    assert_string_equal(cfg->data_dir, "/data");
    assert_string_equal(cfg->bind_addr, "10.0.0.1");
    assert_int_equal(cfg->log_level, KR_LOG_DEBUG);
    assert_true(cfg->log_json);
    assert_int_equal(cfg->http_port, 8000);
    assert_int_equal(cfg->rpc_port, 8001);
    assert_int_equal(cfg->serf_port, 8002);
    assert_true(cfg->server.enabled);
    assert_int_equal(cfg->server.bootstrap_expect, 3);
    assert_true(cfg->server.root_key_rotation_threshold == 5400 * SEC);
    assert_true(cfg->server.root_key_gc_interval == 1500 * KR_NS_PER_MS);
    assert_true(cfg->server.root_key_gc_threshold == 250 * KR_NS_PER_MS);
    assert_int_equal(cfg->server.root_key_rekey_rate, 0);
    assert_true(cfg->server.start_timeout == 120 * SEC);
    assert_string_equal(cfg->server.oidc_issuer, "https://issuer.example");
    assert_int_equal(cfg->n_keyrings, 2);
    k = &cfg->keyrings[0];
    assert_string_equal(k->id, "aead");
    assert_false(k->active);
    k = &cfg->keyrings[1];
    assert_string_equal(k->type, "awskms");
    assert_string_equal(k->name, "primary");
    assert_string_equal(k->id, "awskms.primary");
    assert_true(k->active);
    assert_int_equal(k->n_params, 2);
    assert_string_equal(kr_config_keyring_param(k, "region"), "us-east-1");
    assert_string_equal(kr_config_keyring_param(k, "kms_key_id"), "alias/kr");
    assert_null(kr_config_keyring_param(k, "name"));
    assert_null(kr_config_keyring_param(k, "active"));
    assert_null(kr_config_keyring_param(k, "missing"));
    assert_null(kr_config_keyring_param(NULL, "region"));
    assert_string_equal(k->origin, origin);
    kr_config_free(cfg);
}

static void test_every_key(void **state)
{
    (void)state;
    check_every_key("agent.hcl", every_key_hcl, "agent.hcl:23");
    check_every_key("agent.json", every_key_json, "agent.json:21");
}

static void test_unknown_key(void **state)
{
    (void)state;
    merge_err("agent.hcl", "name = \"a\"\nregion = \"r\"\nfoo = 1\n",
              "agent.hcl:3: unknown key \"foo\"");
    merge_err("agent.hcl", "server {\n  enabled = true\n  foo = 1\n}\n",
              "agent.hcl:3: unknown key \"foo\" in server block");
    merge_err("agent.hcl", "ports {\n  grpc = 1\n}\n",
              "agent.hcl:2: unknown key \"grpc\" in ports block");
    merge_err("agent.json", "{\n  \"server\": {\n    \"bogus\": true\n  }\n}",
              "agent.json:3: unknown key \"bogus\" in server block");
    merge_err("agent.hcl", "telemetry { }\n",
              "agent.hcl:1: unknown key \"telemetry\"");
    merge_err("agent.hcl", "\"we\\u0001ird\" = 1\n",
              "agent.hcl:1: unknown key \"we\\x01ird\"");
}

static void test_wrong_type(void **state)
{
    (void)state;
    merge_err("agent.hcl",
              "server {\n  enabled = true\n\n  bootstrap_expect = \"3\"\n}\n",
              "agent.hcl:4: server.bootstrap_expect: expected a number, got "
              "string");
    merge_err("agent.hcl", "region = 5",
              "agent.hcl:1: region: expected a string, got number");
    merge_err("agent.hcl", "log_json = \"true\"",
              "agent.hcl:1: log_json: expected a bool, got string");
    merge_err("agent.hcl", "server = \"yes\"",
              "agent.hcl:1: server: expected a block, got string");
    merge_err("agent.hcl", "server = [1]",
              "agent.hcl:1: server: expected a block, got number");
    merge_err("agent.hcl", "server \"x\" { }",
              "agent.hcl:1: server: this block takes no labels");
    merge_err("agent.hcl", "ports { http = 1.5 }",
              "agent.hcl:1: ports.http: expected a whole number, got 1.5");
    merge_err("agent.hcl", "data_dir = [\"/a\"]",
              "agent.hcl:1: data_dir: expected a string, got list");
    merge_err("agent.hcl", "name { }",
              "agent.hcl:1: name: expected a string, got block");
    merge_err("agent.hcl", "server { oidc_issuer = true }",
              "agent.hcl:1: server.oidc_issuer: expected a string, got bool");
    merge_err("agent.json", "{\"ports\": {\"http\": \"80\"}}",
              "agent.json:1: ports.http: expected a number, got string");
    merge_err("agent.json", "{\"log_level\": 1}",
              "agent.json:1: log_level: expected a string, got number");
}

static void test_durations(void **state)
{
    (void)state;
    merge_err("agent.hcl",
              "name = \"n\"\n"
              "server {\n"
              "  enabled = true\n"
              "  root_key_rotation_threshold = \"720h\"\n"
              "\n"
              "  # every ten minutes\n"
              "  root_key_gc_interval = \"10x\"\n"
              "}\n",
              "agent.hcl:7: server.root_key_gc_interval: invalid duration "
              "\"10x\"");
    merge_err("agent.hcl", "server { start_timeout = \"-5m\" }",
              "agent.hcl:1: server.start_timeout: invalid duration \"-5m\": "
              "must be positive");
    merge_err("agent.hcl", "server { start_timeout = \"0\" }",
              "agent.hcl:1: server.start_timeout: invalid duration \"0\": "
              "must be positive");
    merge_err("agent.hcl", "server { start_timeout = \"\" }",
              "agent.hcl:1: server.start_timeout: invalid duration \"\"");
    merge_err("agent.hcl", "server { start_timeout = \"30\" }",
              "agent.hcl:1: server.start_timeout: invalid duration \"30\"");
    merge_err("agent.hcl", "server { start_timeout = 30 }",
              "agent.hcl:1: server.start_timeout: expected a duration "
              "string, got number");
    merge_err("agent.hcl",
              "server { start_timeout = \"99999999999999999999h\" }",
              "agent.hcl:1: server.start_timeout: invalid duration "
              "\"99999999999999999999h\"");
}

static void test_log_level(void **state)
{
    struct kr_config *cfg = new_cfg(false);

    (void)state;
    merge_ok(cfg, "a.hcl", "log_level = \"warn\"");
    assert_int_equal(cfg->log_level, KR_LOG_WARN);
    merge_ok(cfg, "a.hcl", "log_level = \"TRACE\"");
    assert_int_equal(cfg->log_level, KR_LOG_TRACE);
    kr_config_free(cfg);
    merge_err("agent.hcl", "\nlog_level = \"verbose\"",
              "agent.hcl:2: log_level: invalid log level \"verbose\" (valid: "
              "trace, debug, info, warn, error)");
}

static void test_ranges(void **state)
{
    struct kr_config *cfg = new_cfg(false);

    (void)state;
    merge_err("agent.hcl", "ports {\n  http = 0\n}",
              "agent.hcl:2: ports.http: must be between 1 and 65535, got 0");
    merge_err("agent.hcl", "ports { serf = 65536 }",
              "agent.hcl:1: ports.serf: must be between 1 and 65535, got "
              "65536");
    merge_err("agent.hcl", "ports = { rpc = -1 }",
              "agent.hcl:1: ports.rpc: must be between 1 and 65535, got -1");
    merge_err("agent.hcl", "server { bootstrap_expect = -1 }",
              "agent.hcl:1: server.bootstrap_expect: must be at least 0, got "
              "-1");
    merge_err("agent.hcl", "server { bootstrap_expect = 4294967296 }",
              "agent.hcl:1: server.bootstrap_expect: must be at least 0, got "
              "4294967296");
    merge_ok(cfg, "a.hcl", "ports { http = 65535\nrpc = 1 }");
    assert_int_equal(cfg->http_port, 65535);
    assert_int_equal(cfg->rpc_port, 1);
    kr_config_free(cfg);

    finish_err(false,
               "data_dir = \"/d\"\nserver {\n  enabled = true\n"
               "  bootstrap_expect = 0\n}\n",
               "server.bootstrap_expect must be at least 1 when the server "
               "is enabled");
    /* oidc_issuer is an http(s) URL with a host, or empty. */
    for (size_t i = 0; i < 6; i++) {
        static const char *const bad[] = {
            "issuer.example", "ftp://issuer.example", "https://",
            "https:///path",  "https://x.example/?a", "https://x.example/a b",
        };
        char text[256];
        snprintf(text, sizeof(text),
                 "data_dir = \"/d\"\nserver {\n  oidc_issuer = \"%s\"\n}\n",
                 bad[i]);
        finish_err(false, text,
                   "server.oidc_issuer must be an http:// or https:// URL "
                   "with a host and without query, fragment or spaces");
    }
    cfg = new_cfg(false);
    merge_ok(cfg, "a.hcl",
             "data_dir = \"/d\"\nserver { oidc_issuer = "
             "\"http://127.0.0.1:4656/\" }");
    finish_ok(cfg);
    kr_config_free(cfg);
    /* A client (server disabled) does not need bootstrap_expect. */
    cfg = new_cfg(false);
    merge_ok(cfg, "a.hcl",
             "data_dir = \"/d\"\nserver { bootstrap_expect = 0 }");
    finish_ok(cfg);
    kr_config_free(cfg);

    merge_err("agent.hcl", "region = \"\"",
              "agent.hcl:1: region: must not be "
              "empty");
    merge_err("agent.hcl", "name = \"\"",
              "agent.hcl:1: name: must not be "
              "empty");
}

/* Values set directly in the struct are still checked at finish. */
static void test_finish_checks(void **state)
{
    struct kr_config *cfg;
    char errmsg[KR_ERRMSG_SIZE];

    (void)state;
    cfg = new_cfg(true);
    cfg->rpc_port = 70000;
    assert_int_equal(kr_config_finish(cfg, errmsg), KR_EINVAL);
    assert_string_equal(errmsg,
                        "ports.rpc: must be between 1 and 65535, got 70000");
    kr_config_free(cfg);

    cfg = new_cfg(true);
    cfg->server.root_key_gc_threshold = 0;
    assert_int_equal(kr_config_finish(cfg, errmsg), KR_EINVAL);
    assert_string_equal(errmsg,
                        "server.root_key_gc_threshold: must be a positive "
                        "duration");
    kr_config_free(cfg);

    cfg = new_cfg(true);
    free(cfg->name);
    cfg->name = NULL;
    assert_int_equal(kr_config_finish(cfg, errmsg), KR_EINVAL);
    assert_string_equal(errmsg, "name is required");
    kr_config_free(cfg);
}

static void test_repeated_and_list_blocks(void **state)
{
    struct kr_config *cfg = new_cfg(false);

    (void)state;
    merge_ok(cfg, "a.hcl",
             "server { enabled = true }\nserver { bootstrap_expect = 5 }\n");
    assert_true(cfg->server.enabled);
    assert_int_equal(cfg->server.bootstrap_expect, 5);
    merge_ok(cfg, "b.json",
             "{\"server\": [{\"bootstrap_expect\": 3}, {\"enabled\": false}],"
             " \"ports\": []}");
    assert_false(cfg->server.enabled);
    assert_int_equal(cfg->server.bootstrap_expect, 3);
    kr_config_free(cfg);

    cfg = new_cfg(false);
    merge_ok(cfg, "b.json",
             "{\"server\": [{\"bootstrap_expect\": 3}, {\"enabled\": true}]}");
    assert_true(cfg->server.enabled);
    assert_int_equal(cfg->server.bootstrap_expect, 3);
    kr_config_free(cfg);
}

static void test_later_overrides(void **state)
{
    struct kr_config *cfg = new_cfg(false);

    (void)state;
    merge_ok(cfg, "a.hcl",
             "region = \"a\"\ndatacenter = \"x\"\nserver { enabled = true }");
    merge_ok(cfg, "b.json", "{\"region\": \"b\", \"ports\": {\"http\": 1}}");
    assert_string_equal(cfg->region, "b");
    assert_string_equal(cfg->datacenter, "x");
    assert_true(cfg->server.enabled);
    assert_int_equal(cfg->http_port, 1);
    assert_int_equal(cfg->rpc_port, 4657);
    kr_config_free(cfg);
}

static void test_keyring_forms(void **state)
{
    struct kr_config *cfg = new_cfg(true);
    const struct kr_config_keyring *k;

    (void)state;
    /* Nomad's JSON: a list of objects keyed by type; a type's value may
     * itself be a list of bodies.  HCL's object syntax maps the same way. */
    merge_ok(cfg, "k.json",
             "{\"keyring\": [\n"
             "  {\"aead\": {\"active\": true}},\n"
             "  {\"transit\": [{\"name\": \"a\", \"key_name\": \"k1\"},\n"
             "               {\"name\": \"b\", \"key_name\": \"k2\"}]}\n"
             "]}");
    merge_ok(cfg, "k.hcl",
             "keyring = { gcpckms = { project = \"p\" } }\n"
             "keyring azurekeyvault { }\n"
             "keyring \"pkcs11\" { }\n");
    finish_ok(cfg);
    assert_int_equal(cfg->n_keyrings, 6);
    k = &cfg->keyrings[0];
    assert_string_equal(k->id, "aead");
    assert_true(k->active);
    assert_string_equal(k->origin, "k.json:2");
    assert_string_equal(cfg->keyrings[1].id, "azurekeyvault");
    assert_string_equal(cfg->keyrings[1].origin, "k.hcl:2");
    assert_string_equal(cfg->keyrings[2].id, "gcpckms");
    assert_string_equal(kr_config_keyring_param(&cfg->keyrings[2], "project"),
                        "p");
    assert_string_equal(cfg->keyrings[3].id, "pkcs11");
    k = &cfg->keyrings[4];
    assert_string_equal(k->id, "transit.a");
    assert_string_equal(k->origin, "k.json:3");
    assert_string_equal(kr_config_keyring_param(k, "key_name"), "k1");
    k = &cfg->keyrings[5];
    assert_string_equal(k->id, "transit.b");
    assert_string_equal(k->origin, "k.json:4");
    assert_string_equal(kr_config_keyring_param(k, "key_name"), "k2");
    kr_config_free(cfg);
}

static void test_keyring_errors(void **state)
{
    (void)state;
    merge_err("agent.hcl", "region = \"r\"\nkeyring \"vault\" {\n}\n",
              "agent.hcl:2: keyring \"vault\": unknown provider type (valid: "
              "aead, awskms, azurekeyvault, gcpckms, transit, pkcs11)");
    merge_err("agent.json", "{\"keyring\": {\n  \"AEAD\": {}}}",
              "agent.json:2: keyring \"AEAD\": unknown provider type (valid: "
              "aead, awskms, azurekeyvault, gcpckms, transit, pkcs11)");
    merge_err("agent.hcl", "keyring { active = true }",
              "agent.hcl:1: keyring: a keyring block takes one label, the "
              "provider type (keyring \"aead\" { ... })");
    merge_err("agent.hcl", "keyring \"aead\" \"x\" { }",
              "agent.hcl:1: keyring: a keyring block takes one label, the "
              "provider type (keyring \"aead\" { ... })");
    merge_err("agent.hcl", "keyring = \"aead\"",
              "agent.hcl:1: keyring: expected a block, got string");
    merge_err("agent.json", "{\"keyring\": [\"aead\"]}",
              "agent.json:1: keyring: expected a block, got string");
    merge_err("agent.json", "{\"keyring\": {\"aead\": true}}",
              "agent.json:1: keyring \"aead\": expected a block, got bool");
    merge_err("agent.json", "{\"keyring\": {\"aead\": [[]]}}",
              "agent.json:1: keyring: expected a block, got list");
    merge_err("agent.hcl", "keyring \"awskms\" {\n  active = \"true\"\n}",
              "agent.hcl:2: keyring \"awskms\": active: expected a bool, got "
              "string");
    merge_err("agent.hcl", "keyring \"awskms\" {\n  name = 1\n}",
              "agent.hcl:2: keyring \"awskms\": name: expected a string, got "
              "number");
    merge_err("agent.hcl",
              "keyring \"transit\" {\n  key_name = \"k\"\n"
              "  disable_renewal = false\n}",
              "agent.hcl:3: keyring \"transit\": disable_renewal: expected a "
              "string, got bool (write booleans as strings, \"true\")");
    merge_err("agent.hcl", "keyring \"awskms\" {\n  nested { }\n}",
              "agent.hcl:2: keyring \"awskms\": nested: expected a string, "
              "got block");
}

static void test_keyring_active_rules(void **state)
{
    struct kr_config *cfg;

    (void)state;
    finish_err(true,
               "keyring \"aead\" { active = true }\n"
               "keyring \"awskms\" {\n  active = true\n}\n",
               "agent.hcl:2: keyring \"awskms\": only one keyring can be "
               "active (keyring \"aead\" at agent.hcl:1 is active too)");

    /* Once any block exists there is no implicit aead, active or not; and
     * with no active block at all no new key could ever be wrapped. */
    finish_err(true, "keyring \"awskms\" { kms_key_id = \"k\" }",
               "no keyring block is active: new root keys could not be "
               "wrapped; set active = true on one keyring block");

    /* Same (type, name) in one file merges too: later active wins. */
    cfg = new_cfg(true);
    merge_ok(cfg, "a.hcl",
             "keyring \"aead\" { active = true }\n"
             "keyring \"aead\" { name = \"\" }\n"
             "keyring \"aead\" {\n  name = \"x\"\n  active = true\n}\n");
    finish_ok(cfg);
    assert_int_equal(cfg->n_keyrings, 2);
    assert_false(cfg->keyrings[0].active);
    assert_string_equal(cfg->keyrings[0].origin, "a.hcl:2");
    assert_string_equal(cfg->keyrings[1].id, "aead.x");
    assert_true(cfg->keyrings[1].active);
    kr_config_free(cfg);
}

/* Writes text to dir/name. */
static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(remove(path), 0);
}

static void test_merge_dir(void **state)
{
    char dir[] = "/tmp/kr_test_config_XXXXXX";
    char path[512], origin[600], errmsg[KR_ERRMSG_SIZE] = "";
    struct kr_config *cfg = new_cfg(false);
    const struct kr_config_keyring *k;

    (void)state;
    assert_non_null(mkdtemp(dir));
    /* Written in reverse so creation order cannot pass for lexical order. */
    write_file(dir, "30-c.json",
               "{\"datacenter\": \"dc9\",\n"
               " \"keyring\": {\"aead\": {\"name\": \"old\"}}}\n");
    write_file(dir, "20-b.hcl",
               "region = \"b\"\n"
               "keyring \"awskms\" {\n"
               "  active = false\n"
               "  kms_key_id = \"k2\"\n"
               "  endpoint = \"https://kms.example\"\n"
               "}\n"
               "keyring \"transit\" {\n"
               "  active = true\n"
               "  key_name = \"t\"\n"
               "}\n");
    write_file(dir, "10-a.hcl",
               "region = \"a\"\n"
               "data_dir = \"/data\"\n"
               "keyring \"awskms\" {\n"
               "  active = true\n"
               "  region = \"us-east-1\"\n"
               "  kms_key_id = \"k1\"\n"
               "}\n"
               "keyring \"aead\" {}\n");
    /* Not loaded: other suffixes, dot files, directories. */
    write_file(dir, "notes.txt", "this is not { config");
    write_file(dir, ".10-a.hcl.swp", "junk {");
    write_file(dir, ".hidden.hcl", "junk {");
    snprintf(path, sizeof(path), "%s/sub.hcl", dir);
    assert_int_equal(mkdir(path, 0700), 0);

    if (kr_config_merge_path(cfg, dir, errmsg) != 0)
        fail_msg("merge: %s", errmsg);
    finish_ok(cfg);
    assert_string_equal(cfg->region, "b");
    assert_string_equal(cfg->datacenter, "dc9");
    assert_string_equal(cfg->data_dir, "/data");
    assert_int_equal(cfg->n_keyrings, 4);
    assert_string_equal(cfg->keyrings[0].id, "aead");
    assert_false(cfg->keyrings[0].active);
    assert_string_equal(cfg->keyrings[1].id, "aead.old");
    k = &cfg->keyrings[2];
    assert_string_equal(k->id, "awskms");
    assert_false(k->active); /* 20-b.hcl overrides 10-a.hcl */
    assert_int_equal(k->n_params, 3);
    assert_string_equal(kr_config_keyring_param(k, "region"), "us-east-1");
    assert_string_equal(kr_config_keyring_param(k, "kms_key_id"), "k2");
    assert_string_equal(kr_config_keyring_param(k, "endpoint"),
                        "https://kms.example");
    snprintf(origin, sizeof(origin), "%s/20-b.hcl:2", dir);
    assert_string_equal(k->origin, origin);
    assert_string_equal(cfg->keyrings[3].id, "transit");
    assert_true(cfg->keyrings[3].active);
    kr_config_free(cfg);

    /* A single file, and the file's path in messages. */
    cfg = new_cfg(false);
    snprintf(path, sizeof(path), "%s/10-a.hcl", dir);
    assert_int_equal(kr_config_merge_path(cfg, path, errmsg), 0);
    assert_string_equal(cfg->region, "a");
    write_file(dir, "40-bad.hcl", "region = \"c\"\n\nserver { nope = 1 }\n");
    assert_int_equal(kr_config_merge_path(cfg, dir, errmsg), KR_EINVAL);
    snprintf(origin, sizeof(origin),
             "%s/40-bad.hcl:3: unknown key \"nope\" in server block", dir);
    assert_string_equal(errmsg, origin);
    kr_config_free(cfg);

    /* Active in two files is rejected at finish, naming both. */
    remove_file(dir, "40-bad.hcl");
    write_file(dir, "50-active.hcl", "keyring \"aead\" { active = true }\n");
    cfg = new_cfg(false);
    assert_int_equal(kr_config_merge_path(cfg, dir, errmsg), 0);
    assert_int_equal(kr_config_finish(cfg, errmsg), KR_EINVAL);
    assert_non_null(strstr(errmsg, "only one keyring can be active"));
    assert_non_null(strstr(errmsg, "50-active.hcl:1"));
    assert_non_null(strstr(errmsg, "20-b.hcl:7"));
    kr_config_free(cfg);

    remove_file(dir, "50-active.hcl");
    remove_file(dir, "10-a.hcl");
    remove_file(dir, "20-b.hcl");
    remove_file(dir, "30-c.json");
    remove_file(dir, "notes.txt");
    remove_file(dir, ".10-a.hcl.swp");
    remove_file(dir, ".hidden.hcl");
    snprintf(path, sizeof(path), "%s/sub.hcl", dir);
    assert_int_equal(rmdir(path), 0);

    /* An empty directory is fine; a missing path is not. */
    cfg = new_cfg(false);
    assert_int_equal(kr_config_merge_path(cfg, dir, errmsg), 0);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(kr_config_merge_path(cfg, dir, errmsg), KR_EINVAL);
    snprintf(origin, sizeof(origin), "%s: No such file or directory", dir);
    assert_string_equal(errmsg, origin);
    kr_config_free(cfg);
}

static void test_file_too_large(void **state)
{
    char dir[] = "/tmp/kr_test_config_XXXXXX";
    char path[512], want[600], errmsg[KR_ERRMSG_SIZE];
    struct kr_config *cfg = new_cfg(false);
    char *big = malloc(KR_HCL_MAX_INPUT + 2);
    FILE *f;

    (void)state;
    assert_non_null(big);
    memset(big, '#', KR_HCL_MAX_INPUT + 1);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/big.hcl", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(big, 1, KR_HCL_MAX_INPUT + 1, f),
                     KR_HCL_MAX_INPUT + 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(kr_config_merge_path(cfg, path, errmsg), KR_EINVAL);
    snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", path);
    assert_string_equal(errmsg, want);
    /* Exactly the limit (a comment) loads. */
    assert_int_equal(truncate(path, KR_HCL_MAX_INPUT), 0);
    assert_int_equal(kr_config_merge_path(cfg, path, errmsg), 0);
    assert_int_equal(remove(path), 0);
    assert_int_equal(rmdir(dir), 0);
    free(big);
    kr_config_free(cfg);
}

/*
 * Every way a keyring with a credential can fail to load: the message
 * must name the problem but never contain the credential.
 */
static void test_param_values_never_echoed(void **state)
{
    static const char *const cases[][2] = {
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = \"AKIASECRET\"\n"
                  "  kms_key_id = 5\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = \"AKIASECRET\"\n"
                  "  disallow_env_vars = true\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = AKIASECRET\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = \"AKIASECRET\"\n"
                  "  secret_key = \"AKIASECRET\"\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = \"AKIASECRET\" x\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = \"AKIASECRET\\q\"\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = [\"AKIASECRET\"]\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = { v = \"AKIASECRET\" "
                  "}\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = 123456789012345\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = <<EOF\nAKIASECRET\n"},
        {"a.hcl", "keyring \"kms\" {\n  secret_key = \"AKIASECRET\"\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = \"AKIASECRET\"\n"
                  "  name = [\"x\"]\n}"},
        {"a.hcl", "keyring \"awskms\" {\n  secret_key = \"AKIASECRET\"\n}\n"
                  "server { enabled = \"AKIASECRET\" }"},
        {"a.json", "{\"keyring\": {\"awskms\": {\"secret_key\": \"AKIASECRET\","
                   " \"kms_key_id\": 1}}}"},
        {"a.json", "{\"keyring\": {\"awskms\": {\"secret_key\": \"AKIASECRET\","
                   " \"secret_key\": \"AKIASECRET\"}}}"},
        {"a.json", "{\"keyring\": {\"awskms\": {\"secret_key\": "
                   "123456789012345}}}"},
        {"a.json", "{\"keyring\": {\"awskms\": {\"secret_key\": \"AKIASECRET\""
                   " \"x\": 1}}}"},
    };
    char errmsg[KR_ERRMSG_SIZE];
    struct kr_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfg = new_cfg(false);
        errmsg[0] = '\0';
        assert_int_equal(kr_config_merge_string(cfg, cases[i][0], cases[i][1],
                                                strlen(cases[i][1]), errmsg),
                         KR_EINVAL);
        assert_true(strncmp(errmsg, cases[i][0], 5) == 0);
        if (strstr(errmsg, "AKIASECRET") || strstr(errmsg, "12345678"))
            fail_msg("case %zu echoes the value: %s", i, errmsg);
        kr_config_free(cfg);
    }

    /* Finish-time keyring errors do not print parameters either. */
    cfg = new_cfg(true);
    merge_ok(cfg, "a.hcl",
             "keyring \"awskms\" {\n  active = true\n"
             "  secret_key = \"AKIASECRET\"\n}\n"
             "keyring \"transit\" {\n  active = true\n"
             "  token = \"AKIASECRET\"\n}\n");
    assert_int_equal(kr_config_finish(cfg, errmsg), KR_EINVAL);
    assert_null(strstr(errmsg, "AKIASECRET"));
    assert_non_null(strstr(errmsg, "only one keyring can be active"));
    kr_config_free(cfg);
}

static void test_misc(void **state)
{
    struct kr_config *cfg = new_cfg(false);
    char errmsg[KR_ERRMSG_SIZE];

    (void)state;
    kr_config_free(NULL);
    /* JSON is chosen by the name; anything else is HCL. */
    assert_int_equal(
        kr_config_merge_string(cfg, "x.hcl", "{\"region\": \"r\"}", 15, errmsg),
        KR_EINVAL);
    assert_string_equal(errmsg, "x.hcl:1: expected a key, got \"{\"");
    assert_int_equal(
        kr_config_merge_string(cfg, "x.conf", "region = \"r\"", 12, errmsg), 0);
    assert_int_equal(
        kr_config_merge_string(cfg, "x.json", "region = \"r\"", 12, errmsg),
        KR_EINVAL);
    assert_string_equal(errmsg, "x.json:1: expected a JSON object");
    /* Empty HCL text is an empty configuration. */
    assert_int_equal(kr_config_merge_string(cfg, "e.hcl", NULL, 0, errmsg), 0);
    /* A NULL errmsg is allowed. */
    assert_int_equal(kr_config_merge_string(cfg, "e.hcl", "x = 1", 5, NULL),
                     KR_EINVAL);
    kr_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_data_dir_required),
        cmocka_unit_test(test_dev_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_finish_checks),
        cmocka_unit_test(test_repeated_and_list_blocks),
        cmocka_unit_test(test_later_overrides),
        cmocka_unit_test(test_keyring_forms),
        cmocka_unit_test(test_keyring_errors),
        cmocka_unit_test(test_keyring_active_rules),
        cmocka_unit_test(test_merge_dir),
        cmocka_unit_test(test_file_too_large),
        cmocka_unit_test(test_param_values_never_echoed),
        cmocka_unit_test(test_misc),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
