/*
 * `keyraft operator root keyring list|rotate|remove`: Nomad's root keyring
 * commands over /v1/operator/keyring.  Only key metadata (RootKeyMeta)
 * ever crosses this API; no key material reaches the CLI.
 */
#ifndef KR_CLI_KEYRING_H
#define KR_CLI_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Command entry points (see kr_cli_main_fn); return the exit code. */
int kr_cli_keyring_list_main(int argc, char **argv);
int kr_cli_keyring_rotate_main(int argc, char **argv);
int kr_cli_keyring_remove_main(int argc, char **argv);

/*
 * Resolves a key ID or ID prefix against `keys`, a JSON array of
 * RootKeyMeta (borrowed).  An exact ID match wins.  Returns 0 with *out_id
 * borrowed from `keys` when exactly one key matches, KR_ENOTFOUND when
 * none does, KR_ECONFLICT when several do (prefix ambiguous), KR_EINVAL
 * for an empty prefix.  *nmatch gets the number of matching keys.
 */
int kr_cli_keyring_match(const json_t *keys, const char *prefix,
                         const char **out_id, size_t *nmatch);

/*
 * publish_time for `rotate -prepublish <dur>`: now_ns plus the Go duration
 * `dur`, in Unix nanoseconds.  Returns 0, or KR_EINVAL (errmsg set) when
 * dur is not a duration, is not positive, or overflows.
 */
int kr_cli_keyring_publish_time(const char *dur, int64_t now_ns, int64_t *out,
                                char *errmsg);

#endif
