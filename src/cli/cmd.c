/*
 * See cmd.h.  The flag grammar is Go's flag package's, so a command line
 * that works with nomad works here; -h text is generated from the same
 * tables the parser reads, so help and behaviour cannot drift apart.
 */
#include "cli/cmd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/err.h"
#include "common/time.h"

#define READ_MAX (16u * 1024u * 1024u)

static const struct kr_cli_flag *find_flag(const struct kr_cli_flag *flags,
                                           const char *name, size_t len)
{
    if (flags == NULL)
        return NULL;
    for (; flags->name != NULL; flags++) {
        if (strlen(flags->name) == len && strncmp(flags->name, name, len) == 0)
            return flags;
    }
    return NULL;
}

/* strconv.ParseBool's accepted spellings. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return KR_EINVAL;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return KR_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return KR_EINVAL;
    *out = (uint64_t)v;
    return 0;
}

static int set_flag(const struct kr_cli_flag *f, const char *value,
                    char *errmsg)
{
    uint64_t u = 0;
    bool b = false;

    switch (f->type) {
    case KR_CLI_FLAG_BOOL:
        if (value != NULL && parse_bool(value, &b) != 0)
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid boolean value \"%s\" for -%s", value,
                           f->name);
        *(bool *)f->dest = value == NULL ? true : b;
        break;
    case KR_CLI_FLAG_STRING:
        *(const char **)f->dest = value;
        break;
    case KR_CLI_FLAG_UINT64:
        if (parse_u64(value, &u) != 0)
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid value \"%s\" for flag -%s: not an "
                           "unsigned integer",
                           value, f->name);
        *(uint64_t *)f->dest = u;
        break;
    case KR_CLI_FLAG_INT:
        if (parse_u64(value, &u) != 0 || u > INT32_MAX)
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid value \"%s\" for flag -%s: not a "
                           "non-negative integer",
                           value, f->name);
        *(int *)f->dest = (int)u;
        break;
    }
    if (f->set != NULL)
        *f->set = true;
    return 0;
}

int kr_cli_flags_parse(const struct kr_cli_cmd *cmd, int argc, char **argv,
                       int *argi, bool *help, char *errmsg)
{
    int i = 1;
    int rv = 0;

    *help = false;
    while (i < argc) {
        const char *a = argv[i];
        const char *name, *eq, *value = NULL;
        const struct kr_cli_flag *f;
        size_t len;

        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        name = a[1] == '-' ? a + 2 : a + 1;
        eq = strchr(name, '=');
        len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        if (len == 0 || name[0] == '-' || name[0] == '=') {
            rv = kr_errf(errmsg, KR_EINVAL, "bad flag syntax: %s", a);
            goto out;
        }
        if ((len == 1 && name[0] == 'h') ||
            (len == 4 && strncmp(name, "help", 4) == 0)) {
            *help = true;
            goto out;
        }
        f = find_flag(cmd->flags, name, len);
        if (f == NULL)
            f = find_flag(cmd->general, name, len);
        if (f == NULL) {
            rv =
                kr_errf(errmsg, KR_EINVAL,
                        "flag provided but not defined: -%.*s", (int)len, name);
            goto out;
        }
        i++;
        if (eq != NULL) {
            value = eq + 1;
        } else if (f->type != KR_CLI_FLAG_BOOL) {
            if (i >= argc) {
                rv = kr_errf(errmsg, KR_EINVAL, "flag needs an argument: -%s",
                             f->name);
                goto out;
            }
            value = argv[i++];
        }
        rv = set_flag(f, value, errmsg);
        if (rv != 0)
            goto out;
    }
out:
    *argi = i;
    return rv;
}

bool kr_cli_parse(const struct kr_cli_cmd *cmd, int argc, char **argv,
                  int *argi, int *exit_code)
{
    char errmsg[KR_ERRMSG_SIZE];
    bool help = false;

    if (kr_cli_flags_parse(cmd, argc, argv, argi, &help, errmsg) != 0) {
        *exit_code = kr_cli_usage_error(cmd, "%s", errmsg);
        return false;
    }
    if (help) {
        kr_cli_help(cmd, stdout);
        *exit_code = KR_CLI_EXIT_OK;
        return false;
    }
    return true;
}

bool kr_cli_parse_args(const struct kr_cli_cmd *cmd, int argc, char **argv,
                       int min, int max, const char *msg, int *argi,
                       int *exit_code)
{
    if (!kr_cli_parse(cmd, argc, argv, argi, exit_code))
        return false;
    if (argc - *argi < min || argc - *argi > max) {
        *exit_code = kr_cli_usage_error(cmd, "%s", msg);
        return false;
    }
    return true;
}

void kr_cli_flags_env(const struct kr_cli_flag *flags,
                      kr_cli_getenv_fn getenv_fn)
{
    for (; flags != NULL && flags->name != NULL; flags++) {
        const char *v;

        if (flags->env == NULL || flags->type != KR_CLI_FLAG_STRING ||
            *(const char **)flags->dest != NULL)
            continue;
        v = getenv_fn(flags->env);
        if (v != NULL && *v != '\0')
            *(const char **)flags->dest = v;
    }
}

/* Prints text with every non-empty line prefixed by indent. */
static void print_indented(FILE *fp, const char *indent, const char *text)
{
    while (*text != '\0') {
        size_t n = strcspn(text, "\n");

        if (n > 0)
            fprintf(fp, "%s%.*s", indent, (int)n, text);
        fputc('\n', fp);
        text += n;
        if (*text == '\n')
            text++;
    }
}

static void print_flags(FILE *fp, const char *title,
                        const struct kr_cli_flag *flags)
{
    if (flags == NULL || flags->name == NULL)
        return;
    fprintf(fp, "\n%s:\n", title);
    for (; flags->name != NULL; flags++) {
        fprintf(fp, "\n  -%s", flags->name);
        if (flags->arg != NULL)
            fprintf(fp, " %s", flags->arg);
        fputc('\n', fp);
        print_indented(fp, "    ", flags->help);
        if (flags->env != NULL)
            fprintf(fp, "    Overrides the %s environment variable if set.\n",
                    flags->env);
    }
}

static void print_env(FILE *fp, const struct kr_cli_flag *a,
                      const struct kr_cli_flag *b)
{
    const struct kr_cli_flag *tables[2] = {a, b};
    bool any = false;
    int width = 0;

    for (int t = 0; t < 2; t++) {
        for (const struct kr_cli_flag *f = tables[t]; f && f->name; f++) {
            if (f->env != NULL && (int)strlen(f->env) > width)
                width = (int)strlen(f->env);
        }
    }
    for (int t = 0; t < 2; t++) {
        for (const struct kr_cli_flag *f = tables[t]; f && f->name; f++) {
            if (f->env == NULL)
                continue;
            if (!any)
                fprintf(fp, "\nEnvironment Variables:\n\n");
            any = true;
            fprintf(fp, "  %-*s  Default for -%s\n", width, f->env, f->name);
        }
    }
}

void kr_cli_help(const struct kr_cli_cmd *cmd, FILE *fp)
{
    fprintf(fp, "Usage: keyraft %s %s\n", cmd->name, cmd->usage);
    if (cmd->about != NULL) {
        fputc('\n', fp);
        print_indented(fp, "  ", cmd->about);
    }
    print_flags(fp, "General Options", cmd->general);
    print_flags(fp, cmd->options_title != NULL ? cmd->options_title : "Options",
                cmd->flags);
    print_env(fp, cmd->general, cmd->flags);
}

int kr_cli_usage_error(const struct kr_cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("Error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "\nUsage: keyraft %s %s\nRun 'keyraft %s -h' for more "
            "information.\n",
            cmd->name, cmd->usage, cmd->name);
    return KR_CLI_EXIT_USAGE;
}

int kr_cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("Error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return KR_CLI_EXIT_ERROR;
}

struct kr_cli_table {
    size_t ncols;
    size_t nrows;
    size_t cap;   /* rows */
    char **cells; /* nrows * ncols, row-major */
};

int kr_cli_table_new(struct kr_cli_table **out, size_t ncols)
{
    struct kr_cli_table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return KR_ENOMEM;
    t->ncols = ncols;
    *out = t;
    return 0;
}

void kr_cli_table_free(struct kr_cli_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        if (t->cells[i] != NULL) {
            explicit_bzero(t->cells[i], strlen(t->cells[i]));
            free(t->cells[i]);
        }
    }
    free(t->cells);
    free(t);
}

int kr_cli_table_add(struct kr_cli_table *t, const char *const *cells)
{
    char **row;

    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **p;

        if (cap > SIZE_MAX / sizeof(char *) / (t->ncols ? t->ncols : 1))
            return KR_ENOMEM;
        p = realloc(t->cells, cap * t->ncols * sizeof(char *));
        if (p == NULL)
            return KR_ENOMEM;
        t->cells = p;
        t->cap = cap;
    }
    row = t->cells + t->nrows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = strdup(cells[c] != NULL ? cells[c] : "");
        if (row[c] == NULL) {
            while (c-- > 0)
                free(row[c]);
            return KR_ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

/* Display width: UTF-8 code points, not bytes. */
static size_t text_width(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    }
    return n;
}

void kr_cli_table_print(const struct kr_cli_table *t, FILE *fp,
                        const char *glue, const char *empty)
{
    size_t *widths = calloc(t->ncols ? t->ncols : 1, sizeof(size_t));

    if (widths == NULL)
        return;
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t w = text_width(*s != '\0' ? s : empty);

            if (w > widths[c])
                widths[c] = w;
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        char *const *row = t->cells + r * t->ncols;
        size_t last = t->ncols;

        /* Trailing blank cells would only print trailing blanks. */
        while (last > 1 && *empty == '\0' && *row[last - 1] == '\0')
            last--;
        for (size_t c = 0; c < last; c++) {
            const char *s = *row[c] != '\0' ? row[c] : empty;

            fputs(s, fp);
            if (c + 1 == last)
                break;
            for (size_t w = text_width(s); w < widths[c]; w++)
                fputc(' ', fp);
            fputs(glue, fp);
        }
        fputc('\n', fp);
    }
    free(widths);
}

char *kr_cli_json_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

void kr_cli_json_free_str(char *s)
{
    json_malloc_t m;
    json_free_t f;

    /* The string came from jansson's allocator, which may be ours. */
    json_get_alloc_funcs(&m, &f);
    f(s);
}

void kr_cli_json_print(const json_t *v, FILE *fp)
{
    char *s =
        json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

    if (s == NULL)
        return;
    fputs(s, fp);
    fputc('\n', fp);
    kr_cli_json_free_str(s);
}

const char *kr_cli_json_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL ? s : "";
}

int64_t kr_cli_json_int(const json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

void kr_cli_format_time(int64_t ns, char *out, size_t cap)
{
    if (cap == 0)
        return;
    out[0] = '\0';
    if (ns >= KR_NS_PER_SEC)
        kr_time_format_rfc3339(ns, out, cap);
}

bool kr_cli_stdout_is_tty(void)
{
    return isatty(STDOUT_FILENO) == 1;
}

const char *kr_cli_buf_str(struct kr_buf *b)
{
    if (kr_buf_reserve(b, 1) != 0)
        return "";
    b->data[b->len] = '\0';
    return (const char *)b->data;
}

int kr_cli_read_stream(FILE *fp, struct kr_buf *out, char *errmsg)
{
    for (;;) {
        size_t n;

        if (out->len >= READ_MAX)
            return kr_errf(errmsg, KR_ETOOBIG, "input larger than %u bytes",
                           READ_MAX);
        if (kr_buf_reserve(out, 4096) != 0)
            return kr_errf(errmsg, KR_ENOMEM, "out of memory");
        n = fread(out->data + out->len, 1, 4096, fp);
        out->len += n;
        if (n < 4096) {
            if (ferror(fp))
                return kr_errf(errmsg, KR_EIO, "read error: %s",
                               strerror(errno));
            return 0;
        }
    }
}

int kr_cli_read_file(const char *path, struct kr_buf *out, char *errmsg)
{
    FILE *fp = fopen(path, "rb");
    int rv;

    if (fp == NULL)
        return kr_errf(errmsg, KR_EIO, "open %s: %s", path, strerror(errno));
    rv = kr_cli_read_stream(fp, out, errmsg);
    fclose(fp);
    if (rv != 0)
        kr_errwrap(errmsg, "%s", path);
    return rv;
}

/* jansson allocator that remembers each block's size so it can wipe it. */
union wipe_hdr {
    size_t n;
    max_align_t align;
};

static void *wipe_malloc(size_t n)
{
    union wipe_hdr *h;

    if (n > SIZE_MAX - sizeof(*h))
        return NULL;
    h = malloc(sizeof(*h) + n);
    if (h == NULL)
        return NULL;
    h->n = n;
    return h + 1;
}

static void wipe_free(void *p)
{
    union wipe_hdr *h;

    if (p == NULL)
        return;
    h = (union wipe_hdr *)p - 1;
    explicit_bzero(p, h->n);
    free(h);
}

void kr_cli_protect_secrets(void)
{
    struct rlimit rl = {0, 0};

    json_set_alloc_funcs(wipe_malloc, wipe_free);
    (void)setrlimit(RLIMIT_CORE, &rl);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
