/*
 * Plumbing shared by every CLI command: Go-style flag parsing driven by a
 * table of struct kr_cli_flag, generated -h text, the exit code convention
 * (0 ok, 1 error, 2 usage), column tables formatted like Nomad's
 * (columnize), and small JSON and I/O helpers.
 *
 * Flags follow Go's flag package, which Nomad uses: "-name value",
 * "-name=value", one or two dashes, booleans as "-name" or "-name=false",
 * and parsing stops at the first positional argument, "-" or "--".
 *
 * Everything here runs on the CLI's only thread.  Nothing is printed to
 * stdout except what a command asks for, so scripts can consume it.
 */
#ifndef KR_CLI_CMD_H
#define KR_CLI_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/buf.h"

/* The build may set it (-DKR_VERSION="1.2.3"). */
#ifndef KR_VERSION
#define KR_VERSION "0.1.0-dev"
#endif

enum kr_cli_exit {
    KR_CLI_EXIT_OK = 0,
    KR_CLI_EXIT_ERROR = 1,
    KR_CLI_EXIT_USAGE = 2,
};

/* A command's entry point: argv[0] is the command's last word ("put"),
 * flags and arguments follow.  Returns the process exit code. */
typedef int (*kr_cli_main_fn)(int argc, char **argv);

/* getenv(3) or a test double. */
typedef const char *(*kr_cli_getenv_fn)(const char *name);

enum kr_cli_flag_type {
    KR_CLI_FLAG_BOOL,   /* dest is bool * */
    KR_CLI_FLAG_STRING, /* dest is const char **, pointing into argv */
    KR_CLI_FLAG_UINT64, /* dest is uint64_t * */
    KR_CLI_FLAG_INT,    /* dest is int *, must be >= 0 */
};

struct kr_cli_flag {
    const char *name; /* without the dash; NULL ends a table */
    enum kr_cli_flag_type type;
    void *dest;
    bool *set;       /* optional: set to true when the flag is given */
    const char *arg; /* value placeholder for -h, NULL for booleans */
    const char *help;
    const char *env; /* variable that supplies the value, or NULL */
};

struct kr_cli_cmd {
    const char *name;                  /* "var put" */
    const char *usage;                 /* "[options] <path>" */
    const char *about;                 /* paragraph(s) for -h */
    const char *options_title;         /* "Put Options" */
    const struct kr_cli_flag *flags;   /* command flags, or NULL */
    const struct kr_cli_flag *general; /* global API flags, or NULL */
};

/*
 * Parses the flags in argv[1..] against cmd's two tables.  On return *argi
 * indexes the first positional argument.  Returns true when the command
 * should go on; false when it must stop and return *exit_code: -h was
 * given (help printed to stdout, 0) or the flags were wrong (error and
 * usage printed to stderr, 2).  The tables' dest pointers are written;
 * string values borrow from argv.
 */
bool kr_cli_parse(const struct kr_cli_cmd *cmd, int argc, char **argv,
                  int *argi, int *exit_code);

/*
 * kr_cli_parse, then checks that between min and max positional arguments
 * follow the flags; if not, prints `msg` as a usage error and sets
 * *exit_code to 2.  Returns true when the command should go on.
 */
bool kr_cli_parse_args(const struct kr_cli_cmd *cmd, int argc, char **argv,
                       int min, int max, const char *msg, int *argi,
                       int *exit_code);

/* The flag parser behind kr_cli_parse: returns 0, or KR_EINVAL with the
 * reason in errmsg; *help is set when -h/-help was seen. */
int kr_cli_flags_parse(const struct kr_cli_cmd *cmd, int argc, char **argv,
                       int *argi, bool *help, char *errmsg);

/*
 * For every string flag in the table that was not given (dest still NULL)
 * and has an env variable, takes the variable's value from getenv_fn: a
 * flag always beats its variable.  Empty variables count as unset.
 */
void kr_cli_flags_env(const struct kr_cli_flag *flags,
                      kr_cli_getenv_fn getenv_fn);

/* Prints cmd's -h text: usage, description, flags, environment. */
void kr_cli_help(const struct kr_cli_cmd *cmd, FILE *fp);

/* Prints "Error: <msg>" and a usage hint to stderr; returns 2. */
int kr_cli_usage_error(const struct kr_cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "Error: <msg>" to stderr; returns 1. */
int kr_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A table of text cells printed in aligned columns separated by glue ("  "
 * for lists, " = " for key/value blocks); the last column is not padded.
 * Cells are copied and wiped on free, since they may hold secret values.
 */
struct kr_cli_table;

/* Returns 0 or KR_ENOMEM; free with kr_cli_table_free. */
int kr_cli_table_new(struct kr_cli_table **out, size_t ncols);
void kr_cli_table_free(struct kr_cli_table *t);
/* Copies ncols cells (NULL prints as empty); returns 0 or KR_ENOMEM. */
int kr_cli_table_add(struct kr_cli_table *t, const char *const *cells);
/* Prints every row; empty cells print as `empty` (may be ""). */
void kr_cli_table_print(const struct kr_cli_table *t, FILE *fp,
                        const char *glue, const char *empty);

/* Pretty-prints v (2-space indent, like Go's MarshalIndent) and a newline. */
void kr_cli_json_print(const json_t *v, FILE *fp);
/* Compact JSON text of v from jansson's allocator; free it with
 * kr_cli_json_free_str.  NULL when out of memory. */
char *kr_cli_json_dump(const json_t *v);
void kr_cli_json_free_str(char *s);
/* obj[key] when it is a string, else "" (obj may be NULL or not an object). */
const char *kr_cli_json_str(const json_t *obj, const char *key);
/* obj[key] when it is an integer, else 0. */
int64_t kr_cli_json_int(const json_t *obj, const char *key);

/* Unix ns as RFC 3339 (UTC), or "" for times before 1970-01-01T00:00:01Z,
 * as Nomad shows unset times. */
void kr_cli_format_time(int64_t ns, char *out, size_t cap);

/* True when stdout is a terminal (Nomad picks -out defaults by this). */
bool kr_cli_stdout_is_tty(void);

/* NUL-terminates b without counting the NUL and returns its text ("" when
 * b is empty or out of memory). */
const char *kr_cli_buf_str(struct kr_buf *b);

/* Reads all of fp (or the file at path) into out, up to 16 MiB.  Returns
 * 0, KR_EIO or KR_ETOOBIG with errmsg set. */
int kr_cli_read_stream(FILE *fp, struct kr_buf *out, char *errmsg);
int kr_cli_read_file(const char *path, struct kr_buf *out, char *errmsg);

/*
 * For commands that handle plaintext secrets: makes jansson wipe every
 * block it frees and keeps the process from dumping core.  Call before the
 * first JSON allocation.
 */
void kr_cli_protect_secrets(void);

#endif
