/*
 * `keyraft var put|get|list|purge`: Nomad's `nomad var` commands over the
 * /v1/var and /v1/vars API.  Variable items are plaintext secrets: these
 * commands wipe what they free, keep the process from dumping core, and
 * never put an item value in an error message.
 */
#ifndef KR_CLI_VAR_H
#define KR_CLI_VAR_H

#include <stdbool.h>
#include <stdio.h>

#include "common/buf.h"

/* Command entry points (see kr_cli_main_fn); return the exit code. */
int kr_cli_var_put_main(int argc, char **argv);
int kr_cli_var_get_main(int argc, char **argv);
int kr_cli_var_list_main(int argc, char **argv);
int kr_cli_var_purge_main(int argc, char **argv);

/*
 * Parses one `var put` item argument: "key=value", "key=@file" (the file's
 * bytes), "key=-" (all of `in`, allowed once: *in_used tracks it; in may be
 * NULL to forbid it) or "key=\@x" (the literal "@x").  An empty value means
 * "remove this item".  On success *key is malloc'd (caller frees) and the
 * value is appended to `value` (caller-initialised; free with kr_buf_free,
 * which wipes).  Returns 0, KR_EINVAL, KR_EIO, KR_ETOOBIG or KR_ENOMEM with
 * errmsg set; errmsg never contains the value.
 */
int kr_cli_var_item_parse(const char *arg, FILE *in, bool *in_used, char **key,
                          struct kr_buf *value, char *errmsg);

#endif
