/*
 * `keyraft operator snapshot save|inspect|restore|redact` (spec 5.3):
 * save downloads GET /v1/operator/snapshot to a file, checking its
 * Digest; inspect prints a file's metadata and record counts; restore
 * uploads a file with PUT /v1/operator/snapshot; redact removes the key
 * material from a file in place.  The archive format is
 * src/snapshot/archive.h.
 */
#ifndef KR_CLI_SNAPSHOT_H
#define KR_CLI_SNAPSHOT_H

/* Command entry points (see kr_cli_main_fn); return the exit code. */
int kr_cli_snapshot_save_main(int argc, char **argv);
int kr_cli_snapshot_inspect_main(int argc, char **argv);
int kr_cli_snapshot_restore_main(int argc, char **argv);
int kr_cli_snapshot_redact_main(int argc, char **argv);

#endif
