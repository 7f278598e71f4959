/*
 * Agent configuration: Nomad-style HCL (a subset parsed here) or JSON, with
 * Nomad's block and key names.  Several files, or every *.hcl and *.json in
 * a directory in lexical order, merge into one struct kr_config.
 *
 * Every error names its origin as "file:line: message".  Unknown keys,
 * wrong types and bad durations are errors; nothing is silently ignored.
 *
 * Provider parameters in keyring blocks may be credentials: they are kept in
 * the struct but never printed in an error message.
 */
#ifndef KR_CONFIG_CONFIG_H
#define KR_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"

#define KR_DEFAULT_HTTP_PORT 4656
#define KR_DEFAULT_RPC_PORT 4657
#define KR_DEFAULT_SERF_PORT 4658

/* One key = "string" pair of a keyring block other than name and active. */
struct kr_config_param {
    char *key;
    char *value;
};

/* A `keyring "<type>" { name = "" active = false ... }` block. */
struct kr_config_keyring {
    char *type; /* aead, awskms, azurekeyvault, gcpckms, transit, pkcs11 */
    char *name; /* "" when not set */
    char *id;   /* type, or type.name when name is set */
    bool active;
    struct kr_config_param *params;
    size_t n_params;
    char *origin; /* "file:line" of the block, for later error messages */
};

/* A list of strings, each owned. */
struct kr_config_strings {
    char **v;
    size_t n;
};

/* server { server_join { retry_join = [...] retry_interval = "30s" } } */
struct kr_config_server_join {
    struct kr_config_strings retry_join; /* host:port of other servers */
    int64_t retry_interval;              /* ns, default 30s */
};

struct kr_config_server {
    bool enabled;
    int bootstrap_expect;
    int64_t root_key_rotation_threshold; /* ns, default 720h */
    int64_t root_key_gc_interval;        /* ns, default 10m */
    int64_t root_key_gc_threshold;       /* ns, default 1h */
    int root_key_rekey_rate;             /* Variables/s, 0 = any, 20000 */
    int64_t start_timeout;               /* ns, default 30s */
    char *oidc_issuer;                   /* "" when not set */
    int raft_snapshot_threshold;         /* entries between snapshots, 8192 */
    int raft_trailing_logs;         /* entries kept after a snapshot, 10240 */
    int64_t raft_snapshot_interval; /* ns between snapshots, 120 s */
    int raft_snapshot_write_rate;   /* MB/s a snapshot is written at, 50 */
    struct kr_config_server_join server_join;
};

/* tls { http rpc ca_file cert_file key_file verify_server_hostname
 *       verify_https_client tls_min_version http2 } */
struct kr_config_tls {
    bool http;
    bool rpc;
    char *ca_file;
    char *cert_file;
    char *key_file;
    bool verify_server_hostname;
    bool verify_https_client;
    char *tls_min_version; /* "tls12" (default) or "tls13" */
    bool http2;            /* offer HTTP/2 over TLS (off by default) */
};

struct kr_config {
    char *name;       /* node name, default: hostname */
    char *region;     /* default "global" */
    char *datacenter; /* default "dc1" */
    char *data_dir;   /* required unless dev */
    char *bind_addr;  /* default "0.0.0.0"; "127.0.0.1" in dev mode */
    int http_port;
    int rpc_port;
    int serf_port;
    enum kr_log_level log_level; /* default info */
    bool log_json;
    bool dev;
    struct kr_config_server server;
    struct kr_config_tls tls;
    struct kr_config_keyring *keyrings; /* sorted by id */
    size_t n_keyrings;
};

/*
 * Loads path (a file, or a directory whose *.hcl and *.json files are read
 * in lexical order) on top of the defaults, then validates.  Several paths
 * may be loaded by calling kr_config_merge_path() before kr_config_finish().
 *
 * kr_config_new: returns defaults, owned by the caller (kr_config_free).
 *   With dev, the dev-mode defaults (bind_addr 127.0.0.1, server enabled)
 *   are applied here, so files merged later override them, as they
 *   override Nomad's DevConfig.  0 or KR_ENOMEM.
 * kr_config_merge_path: merges one file or directory; 0 or KR_EINVAL with
 *   "file:line: message" in errmsg (or "path: reason" when a file cannot
 *   be read), or KR_ENOMEM.  On failure cfg may hold part of the input:
 *   free it.
 * kr_config_merge_string: the same for text in memory; name is used in
 *   messages ("name:line: ...").  For tests and fuzzing.  JSON is chosen
 *   when the name ends in ".json".
 * kr_config_finish: lets data_dir stay NULL in dev mode, adds the implicit
 *   `keyring "aead" { active = true }` when no keyring block exists, sorts
 *   keyrings by id, and validates cross-field rules (data_dir required
 *   unless dev, at most one active keyring, known provider types, ports in
 *   range, positive durations).
 * Main thread only; none of these are thread safe.
 */
int kr_config_new(struct kr_config **out, bool dev);
int kr_config_merge_path(struct kr_config *cfg, const char *path, char *errmsg);
int kr_config_merge_string(struct kr_config *cfg, const char *name,
                           const char *text, size_t len, char *errmsg);
int kr_config_finish(struct kr_config *cfg, char *errmsg);
void kr_config_free(struct kr_config *cfg);

/* Returns the value of a keyring block parameter, or NULL. Borrowed. */
const char *kr_config_keyring_param(const struct kr_config_keyring *k,
                                    const char *key);

#endif
