/*
 * The keyraft command line: `keyraft <command> [<subcommand>...] [options]
 * [args]`.  Commands live in one static table (see cli.c); nested commands
 * such as `operator root keyring list` are rows whose names have several
 * words.  Exit codes: 0 success, 1 error, 2 usage.
 */
#ifndef KR_CLI_CLI_H
#define KR_CLI_CLI_H

/*
 * Runs the command named by argv[1..] and returns the process exit code.
 * Borrows argv for the life of the call.  Call from the main thread only.
 */
int kr_cli_main(int argc, char **argv);

#endif
