/*
 * The command dispatcher.  Every command is a row of `commands`: a name of
 * one or more words, its entry point and a one-line help.  Rows without an
 * entry point are groups (`var`, `operator root`); naming a group lists its
 * direct children.  The longest row whose words equal the leading
 * arguments wins, and its entry point gets argv from its last word on, so
 * adding `operator snapshot save` is adding a row (and its group rows).
 * Keep the table sorted by name: listings print in table order.
 */
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "cli/cmd.h"
#include "cli/keyring.h"
#include "cli/raftcmd.h"
#include "cli/snapshot.h"
#include "cli/tls.h"
#include "cli/var.h"

static int version_main(int argc, char **argv);

struct command {
    const char *name;    /* words separated by single spaces */
    kr_cli_main_fn main; /* NULL for a group of subcommands */
    const char *help;
};

static const struct command commands[] = {
    {"agent", kr_agent_main, "Runs a keyraft agent"},
    {"operator", NULL, "Provides cluster-level tools for keyraft operators"},
    {"operator raft", NULL, "Provides access to the Raft subsystem"},
    {"operator raft list-peers", kr_cli_raft_list_peers_main,
     "Displays the current Raft peer configuration"},
    {"operator raft remove-peer", kr_cli_raft_remove_peer_main,
     "Removes a keyraft server from the Raft configuration"},
    {"operator root", NULL, "Provides access to root encryption keys"},
    {"operator root keyring", NULL, "Manages root encryption keys"},
    {"operator root keyring list", kr_cli_keyring_list_main,
     "Lists the root encryption keys"},
    {"operator root keyring remove", kr_cli_keyring_remove_main,
     "Removes a root encryption key"},
    {"operator root keyring rotate", kr_cli_keyring_rotate_main,
     "Rotates the root encryption key"},
    {"operator snapshot", NULL,
     "Saves and restores snapshots of keyraft server state"},
    {"operator snapshot inspect", kr_cli_snapshot_inspect_main,
     "Displays information about a snapshot file"},
    {"operator snapshot redact", kr_cli_snapshot_redact_main,
     "Removes key material from a snapshot file"},
    {"operator snapshot restore", kr_cli_snapshot_restore_main,
     "Restores a snapshot of keyraft server state"},
    {"operator snapshot save", kr_cli_snapshot_save_main,
     "Saves a snapshot of keyraft server state"},
    {"tls", NULL, "Generate self-signed TLS certificates for keyraft"},
    {"tls ca", NULL, "Helpers for managing certificate authorities"},
    {"tls ca create", kr_cli_tls_ca_create_main,
     "Create a certificate authority for keyraft"},
    {"tls cert", NULL, "Helpers for managing certificates"},
    {"tls cert create", kr_cli_tls_cert_create_main,
     "Create a new TLS certificate"},
    {"var", NULL, "Interact with variables"},
    {"var get", kr_cli_var_get_main, "Read a variable"},
    {"var list", kr_cli_var_list_main, "List variable metadata"},
    {"var purge", kr_cli_var_purge_main, "Purge a variable"},
    {"var put", kr_cli_var_put_main, "Create or update a variable"},
    {"version", version_main, "Prints the keyraft version"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static bool is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0 ||
           strcmp(a, "--help") == 0;
}

static bool is_version(const char *a)
{
    return strcmp(a, "-v") == 0 || strcmp(a, "-version") == 0 ||
           strcmp(a, "--version") == 0;
}

/* How many of argv[1..] the row's words match: all of them or 0. */
static int match(const char *name, int argc, char **argv)
{
    const char *p = name;
    int i = 1;

    while (*p != '\0') {
        size_t n = strcspn(p, " ");

        if (i >= argc || strlen(argv[i]) != n || strncmp(argv[i], p, n) != 0)
            return 0;
        i++;
        p += n;
        if (*p == ' ')
            p++;
    }
    return i - 1;
}

/* The word after `group` when row is a direct child of it, else NULL. */
static const char *child_word(const char *row, const char *group)
{
    size_t n = strlen(group);

    if (n > 0) {
        if (strncmp(row, group, n) != 0 || row[n] != ' ')
            return NULL;
        row += n + 1;
    }
    return strchr(row, ' ') == NULL ? row : NULL;
}

static void list_children(FILE *fp, const char *group)
{
    int width = 0;

    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *w = child_word(commands[i].name, group);

        if (w != NULL && (int)strlen(w) > width)
            width = (int)strlen(w);
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *w = child_word(commands[i].name, group);

        if (w != NULL)
            fprintf(fp, "    %-*s    %s\n", width, w, commands[i].help);
    }
}

static void print_top(FILE *fp)
{
    fprintf(fp, "Usage: keyraft [-version] [-help] <command> [args]\n\n"
                "Available commands are:\n");
    list_children(fp, "");
    fprintf(fp, "\nRun 'keyraft <command> -h' for a command's options.\n");
}

static void print_group(FILE *fp, const struct command *g)
{
    fprintf(fp,
            "Usage: keyraft %s <subcommand> [options] [args]\n\n  %s.\n\n"
            "Subcommands:\n",
            g->name, g->help);
    list_children(fp, g->name);
    fprintf(fp,
            "\nRun 'keyraft %s <subcommand> -h' for a subcommand's "
            "options.\n",
            g->name);
}

static int version_main(int argc, char **argv)
{
    const struct kr_cli_cmd cmd = {
        "version", "", "Prints the keyraft version.", NULL, NULL, NULL,
    };
    int argi = 0, rc = KR_CLI_EXIT_OK;

    if (!kr_cli_parse(&cmd, argc, argv, &argi, &rc))
        return rc;
    if (argi != argc)
        return kr_cli_usage_error(&cmd, "this command takes no arguments");
    printf("keyraft v%s\n", KR_VERSION);
    return KR_CLI_EXIT_OK;
}

int kr_cli_main(int argc, char **argv)
{
    const struct command *best = NULL;
    int depth = 0;

    if (argc < 2) {
        print_top(stderr);
        return KR_CLI_EXIT_USAGE;
    }
    if (is_help(argv[1])) {
        print_top(stdout);
        return KR_CLI_EXIT_OK;
    }
    if (is_version(argv[1]))
        return version_main(1, argv);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        int d = match(commands[i].name, argc, argv);

        if (d > depth) {
            depth = d;
            best = &commands[i];
        }
    }
    if (best == NULL) {
        fprintf(stderr, "Error: unknown command \"%s\"\n\n", argv[1]);
        print_top(stderr);
        return KR_CLI_EXIT_USAGE;
    }
    if (best->main != NULL)
        return best->main(argc - depth, argv + depth);
    if (depth + 1 < argc && is_help(argv[depth + 1])) {
        print_group(stdout, best);
        return KR_CLI_EXIT_OK;
    }
    if (depth + 1 < argc)
        fprintf(stderr, "Error: unknown command \"%s %s\"\n\n", best->name,
                argv[depth + 1]);
    print_group(stderr, best);
    return KR_CLI_EXIT_USAGE;
}
