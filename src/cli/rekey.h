/*
 * `operator root keyring rotate -full -wait`: follows the full rekey the
 * rotation started by polling GET /v1/operator/keyring/rekey every 500 ms
 * until the server reports it is no longer running.
 *
 * Progress goes to one stream, stderr, so stdout keeps only the rotated
 * key's table for scripts.  On a terminal it is one bar redrawn in place
 * with '\r'; otherwise plain lines, at most one every 2 s, so logs stay
 * short.  A non-empty Error from the server is shown as
 * "rekey: waiting: <Error>" each time it changes (the server keeps
 * retrying, so the CLI keeps polling); on a terminal the bar's line is
 * ended first.  The status holds counts, key IDs and one Variable path:
 * nothing secret.
 *
 * Everything here runs on the CLI's only thread.
 */
#ifndef KR_CLI_REKEY_H
#define KR_CLI_REKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/client.h"
#include "common/err.h"

#define KR_CLI_REKEY_BAR_WIDTH 20
/* Room for any bar or line the functions below format. */
#define KR_CLI_REKEY_LINE_SIZE 128

/* A rekey's progress over every rekeying key. */
struct kr_cli_rekey_count {
    uint64_t total; /* Variables to re-encrypt */
    uint64_t done;  /* of those, re-encrypted; never above total */
};

/*
 * Sums the status's Keys (borrowed; a missing or malformed array counts as
 * none): total is the sum of Total, done the sum of Total - Remaining,
 * each key's Remaining clamped to 0..Total first.  Sums saturate.
 */
void kr_cli_rekey_sum(const json_t *status, struct kr_cli_rekey_count *out);

/* done as a whole percentage of total, rounded down; 100 when total is 0. */
unsigned kr_cli_rekey_percent(const struct kr_cli_rekey_count *c);

/* Formats "Rekeying [##########----------]  50%  50000/100000 variables"
 * into out (cap bytes, KR_CLI_REKEY_LINE_SIZE is enough). */
void kr_cli_rekey_format_bar(const struct kr_cli_rekey_count *c, char *out,
                             size_t cap);

/* Formats "rekey: 50000/100000 variables re-encrypted (50%)". */
void kr_cli_rekey_format_line(const struct kr_cli_rekey_count *c, char *out,
                              size_t cap);

/*
 * What has been drawn so far.  Set it up with kr_cli_rekey_view_init, feed
 * it every status with kr_cli_rekey_view_show and the last one with
 * kr_cli_rekey_view_done.  It holds no allocations.
 */
struct kr_cli_rekey_view {
    FILE *fp;
    bool tty;
    bool bar_open;       /* a bar is on the current line, not ended yet */
    size_t bar_len;      /* its length, to blank the tail of a longer one */
    bool printed;        /* a plain progress line has been printed... */
    uint64_t printed_ms; /* ...at this time */
    char line[KR_CLI_REKEY_LINE_SIZE]; /* ...with this text */
    bool seen;                         /* a status with keys came */
    struct kr_cli_rekey_count most;    /* the largest total seen */
    char error[KR_ERRMSG_SIZE];        /* the last Error shown */
};

/* Draws on fp (borrowed for the view's life) as a terminal when tty. */
void kr_cli_rekey_view_init(struct kr_cli_rekey_view *v, FILE *fp, bool tty);

/*
 * Shows one status (borrowed) read at now_ms (a monotonic clock): its
 * Error when it differs from the last one shown, then its progress, which
 * a non-terminal view prints only when 2 s have passed since its last
 * line and the text changed.
 */
void kr_cli_rekey_view_show(struct kr_cli_rekey_view *v, const json_t *status,
                            uint64_t now_ms);

/* Ends the bar's line, if one is open, so other text can follow. */
void kr_cli_rekey_view_break(struct kr_cli_rekey_view *v);

/*
 * Shows the final status (borrowed): its Error as kr_cli_rekey_view_show
 * does, a full bar on a terminal, then "rekey: done: N variables
 * re-encrypted" with the largest total seen (just "rekey: done" when no
 * status ever listed a rekeying key: it finished before the first poll).
 */
void kr_cli_rekey_view_done(struct kr_cli_rekey_view *v, const json_t *status);

/*
 * Polls the rekey status through c (borrowed) until Running is false,
 * drawing on fp (a terminal when tty).  Connection failures and 5xx
 * answers (a leader change) are retried for 10 s in a row; a 4xx answer
 * or a malformed reply ends the wait at once.  Returns 0, or KR_EIO after
 * printing "Error: ..." to stderr.
 */
int kr_cli_rekey_wait(struct kr_cli_client *c, FILE *fp, bool tty);

#endif
