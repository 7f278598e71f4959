/*
 * `keyraft tls ca create` and `keyraft tls cert create`: Nomad's
 * self-signed TLS tooling (command/tls_ca_create.go, tls_cert_create.go)
 * with `keyraft` as the built-in domain.  Files land in the working
 * directory under Nomad's names (keyraft-agent-ca.pem,
 * global-server-keyraft.pem, ...); an existing file is never replaced and
 * private keys are written with mode 0600.  The X.509 work is in
 * src/crypto/x509.c; these commands choose names, read and write files.
 *
 * Everything here runs on the CLI's only thread.
 */
#ifndef KR_CLI_TLS_H
#define KR_CLI_TLS_H

#include <stddef.h>
#include <sys/types.h>

/* Command entry points (see kr_cli_main_fn); return the exit code. */
int kr_cli_tls_ca_create_main(int argc, char **argv);
int kr_cli_tls_cert_create_main(int argc, char **argv);

/*
 * Creates the file `path` holding data[0..len) with permission bits
 * `mode`, atomically and without ever replacing anything: the bytes go to
 * a temporary file (created 0600) in the same directory, are fsync'ed,
 * and the file is then renamed into place with RENAME_NOREPLACE (or
 * hard-linked, where the file system lacks that), so no reader sees a
 * partial file and a file that appears at `path` meanwhile is kept.
 * Borrows path and data.  Returns 0, KR_ECONFLICT when path exists, or
 * KR_EIO, with errmsg set.
 */
int kr_cli_tls_write_new(const char *path, const void *data, size_t len,
                         mode_t mode, char *errmsg);

#endif
