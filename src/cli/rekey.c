/*
 * See rekey.h.  The formatting and the view are pure over their inputs
 * (the status, the time, the stream), so the unit tests drive them with
 * made-up statuses and a memory stream; only kr_cli_rekey_wait talks to
 * the server and reads the clock.
 *
 * The server lists only keys still rekeying, and a finished rekey lists
 * none, so the final count is the largest total any poll saw.
 */
#include "cli/rekey.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "cli/cmd.h"
#include "common/time.h"

#define REKEY_PATH "/v1/operator/keyring/rekey"
#define POLL_MS 500
#define RETRY_FOR_MS 10000
#define PLAIN_EVERY_MS 2000

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/*
 * floor(n * k / d) for n <= d, d > 0, exactly and without overflow: adds
 * n to itself k times modulo d, counting the wraps (k is at most 100).
 * Exact matters: 100% and a full bar mean every variable is done.
 */
static uint64_t scale(uint64_t n, uint64_t d, unsigned k)
{
    uint64_t q = 0, r = 0; /* i * n == q * d + r, r < d */

    for (unsigned i = 0; i < k; i++) {
        if (r >= d - n) {
            r -= d - n;
            q++;
        } else {
            r += n;
        }
    }
    return q;
}

void kr_cli_rekey_sum(const json_t *status, struct kr_cli_rekey_count *out)
{
    const json_t *keys = json_object_get(status, "Keys");

    out->total = 0;
    out->done = 0;
    for (size_t i = 0; i < json_array_size(keys); i++) {
        const json_t *k = json_array_get(keys, i);
        int64_t total = kr_cli_json_int(k, "Total");
        int64_t left = kr_cli_json_int(k, "Remaining");

        if (total < 0)
            total = 0;
        if (left < 0)
            left = 0;
        if (left > total)
            left = total;
        out->total = add_sat(out->total, (uint64_t)total);
        out->done = add_sat(out->done, (uint64_t)(total - left));
    }
}

unsigned kr_cli_rekey_percent(const struct kr_cli_rekey_count *c)
{
    uint64_t pct = 100;

    if (c->total > 0)
        pct = scale(c->done, c->total, 100);
    return (unsigned)pct;
}

void kr_cli_rekey_format_bar(const struct kr_cli_rekey_count *c, char *out,
                             size_t cap)
{
    char bar[KR_CLI_REKEY_BAR_WIDTH + 1];
    uint64_t fill = KR_CLI_REKEY_BAR_WIDTH;

    if (c->total > 0)
        fill = scale(c->done, c->total, KR_CLI_REKEY_BAR_WIDTH);
    for (uint64_t i = 0; i < KR_CLI_REKEY_BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[KR_CLI_REKEY_BAR_WIDTH] = '\0';
    snprintf(out, cap, "Rekeying [%s] %3u%%  %" PRIu64 "/%" PRIu64 " variables",
             bar, kr_cli_rekey_percent(c), c->done, c->total);
}

void kr_cli_rekey_format_line(const struct kr_cli_rekey_count *c, char *out,
                              size_t cap)
{
    snprintf(out, cap,
             "rekey: %" PRIu64 "/%" PRIu64 " variables re-encrypted (%u%%)",
             c->done, c->total, kr_cli_rekey_percent(c));
}

void kr_cli_rekey_view_init(struct kr_cli_rekey_view *v, FILE *fp, bool tty)
{
    memset(v, 0, sizeof(*v));
    v->fp = fp;
    v->tty = tty;
}

void kr_cli_rekey_view_break(struct kr_cli_rekey_view *v)
{
    if (v->bar_open) {
        fputc('\n', v->fp);
        fflush(v->fp);
    }
    v->bar_open = false;
}

/* Prints the status's Error when it is not the last one shown.  Only a
 * prefix that fits v->error is compared: enough to tell causes apart. */
static void show_error(struct kr_cli_rekey_view *v, const json_t *status)
{
    const char *e = kr_cli_json_str(status, "Error");
    char cut[sizeof(v->error)];

    snprintf(cut, sizeof(cut), "%s", e);
    if (cut[0] != '\0' && strcmp(cut, v->error) != 0) {
        kr_cli_rekey_view_break(v);
        fprintf(v->fp, "rekey: waiting: %s\n", e);
        fflush(v->fp);
        memcpy(v->error, cut, sizeof(cut));
    }
}

/* Sums the status into *c and remembers the largest total. */
static void note(struct kr_cli_rekey_view *v, const json_t *status,
                 struct kr_cli_rekey_count *c)
{
    kr_cli_rekey_sum(status, c);
    if (json_array_size(json_object_get(status, "Keys")) > 0)
        v->seen = true;
    if (c->total >= v->most.total)
        v->most = *c;
}

/* Redraws the bar over the current line, blanking a longer old one. */
static void draw_bar(struct kr_cli_rekey_view *v,
                     const struct kr_cli_rekey_count *c)
{
    char bar[KR_CLI_REKEY_LINE_SIZE];
    size_t n, pad = 0;

    kr_cli_rekey_format_bar(c, bar, sizeof(bar));
    n = strlen(bar);
    if (v->bar_open && v->bar_len > n)
        pad = v->bar_len - n;
    fprintf(v->fp, "\r%s%*s", bar, (int)pad, "");
    fflush(v->fp);
    v->bar_open = true;
    v->bar_len = n;
}

/* Prints a plain line when PLAIN_EVERY_MS have passed since the last one
 * and the text changed. */
static void print_line(struct kr_cli_rekey_view *v,
                       const struct kr_cli_rekey_count *c, uint64_t now_ms)
{
    char line[sizeof(v->line)];

    kr_cli_rekey_format_line(c, line, sizeof(line));
    if ((!v->printed || now_ms - v->printed_ms >= PLAIN_EVERY_MS) &&
        strcmp(line, v->line) != 0) {
        fprintf(v->fp, "%s\n", line);
        fflush(v->fp);
        v->printed = true;
        v->printed_ms = now_ms;
        memcpy(v->line, line, sizeof(line));
    }
}

void kr_cli_rekey_view_show(struct kr_cli_rekey_view *v, const json_t *status,
                            uint64_t now_ms)
{
    struct kr_cli_rekey_count c;

    show_error(v, status);
    note(v, status, &c);
    if (v->tty)
        draw_bar(v, &c);
    else
        print_line(v, &c, now_ms);
}

void kr_cli_rekey_view_done(struct kr_cli_rekey_view *v, const json_t *status)
{
    struct kr_cli_rekey_count c;

    show_error(v, status);
    note(v, status, &c);
    c.total = v->most.total;
    c.done = v->most.total;
    if (v->tty && v->seen)
        draw_bar(v, &c);
    kr_cli_rekey_view_break(v);
    if (v->seen)
        fprintf(v->fp, "rekey: done: %" PRIu64 " variables re-encrypted\n",
                c.total);
    else
        fputs("rekey: done\n", v->fp);
    fflush(v->fp);
}

/*
 * One GET of the status.  Returns 0 with *out a new reference to a JSON
 * object whose Running is a boolean, or an error with errmsg set and
 * *retry telling whether a later poll may succeed (the server was
 * unreachable or answered 5xx).
 */
static int poll_status(struct kr_cli_client *c, json_t **out, bool *retry,
                       char *errmsg)
{
    struct kr_cli_resp resp;
    json_error_t jerr;
    json_t *v = NULL;
    int rv;

    kr_cli_resp_init(&resp);
    rv = kr_cli_client_do(c, "GET", REKEY_PATH, NULL, NULL, &resp, errmsg);
    *retry = rv == KR_EIO;
    if (rv == 0) {
        rv = kr_cli_resp_check(&resp, 0, errmsg);
        *retry = rv != 0 && resp.status >= 500;
    }
    if (rv == 0) {
        v = json_loadb((const char *)resp.body.data, resp.body.len, 0, &jerr);
        if (!json_is_boolean(json_object_get(v, "Running")))
            rv = kr_errf(errmsg, KR_EIO, "unexpected reply from server: %s",
                         v == NULL ? jerr.text : "no Running field");
    }
    if (rv == 0) {
        *out = v;
        v = NULL;
    }
    json_decref(v);
    kr_cli_resp_free(&resp);
    return rv;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    (void)nanosleep(&ts, NULL);
}

int kr_cli_rekey_wait(struct kr_cli_client *c, FILE *fp, bool tty)
{
    struct kr_cli_rekey_view v;
    char errmsg[KR_ERRMSG_SIZE];
    json_t *status = NULL;
    uint64_t now, failing_since = 0;
    bool failing = false, retry = false, running = true;
    int rv = 0;

    kr_cli_rekey_view_init(&v, fp, tty);
    while (running) {
        rv = poll_status(c, &status, &retry, errmsg);
        now = kr_time_mono_ms();
        if (rv == 0) {
            failing = false;
            running = json_is_true(json_object_get(status, "Running"));
        } else if (!failing) {
            failing = true;
            failing_since = now;
        }
        if (rv != 0 && (!retry || now - failing_since >= RETRY_FOR_MS))
            break;
        if (rv == 0 && running)
            kr_cli_rekey_view_show(&v, status, now);
        else if (rv == 0)
            kr_cli_rekey_view_done(&v, status);
        json_decref(status);
        status = NULL;
        if (running)
            nap_ms(POLL_MS);
    }
    if (rv != 0) {
        kr_cli_rekey_view_break(&v);
        kr_cli_error("waiting for the rekey: %s", errmsg);
        rv = KR_EIO;
    }
    json_decref(status);
    return rv;
}
