/*
 * HCL-subset and JSON parsers.  See hcl.h for the accepted language and
 * the security property.
 *
 * Both are recursive descent over a byte range that is not NUL-terminated:
 * p->pos only moves forward and every read is checked against p->len.
 * Recursion is bounded by KR_HCL_MAX_DEPTH, so trees are at most that deep
 * and kr_hcl_free() may recurse as well.  Before parsing, the whole input
 * is checked for NUL bytes and invalid UTF-8, so the lexers treat bytes
 * >= 0x80 as opaque parts of valid characters.  Messages never quote a
 * string, a number or a bare word from the input: any of them could be a
 * misplaced credential.  Only keys (in "duplicate key") are quoted.
 */
#include "config/hcl.h"

#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hex.h"
#include "common/err.h"

enum tok {
    T_EOF,
    T_IDENT,
    T_STRING,
    T_NUMBER,
    T_LBRACE,
    T_RBRACE,
    T_LBRACK,
    T_RBRACK,
    T_EQUAL,
    T_COMMA,
};

/* Indexed by enum tok, for "expected ..., got %s". */
static const char *const tok_names[] = {
    "end of input", "a bare word", "a string", "a number", "\"{\"",
    "\"}\"",        "\"[\"",       "\"]\"",    "\"=\"",    "\",\"",
};

/* Single-character HCL tokens and what they lex to. */
static const char punct_chars[] = "{}[]=,";
static const enum tok punct_toks[] = {T_LBRACE, T_RBRACE, T_LBRACK,
                                      T_RBRACK, T_EQUAL,  T_COMMA};

struct token {
    enum tok type;
    int line;
    size_t start; /* offset of the raw text */
    size_t len;
    char *str; /* T_STRING: decoded, owned until taken */
    bool is_float;
    int64_t i;
    double f;
};

struct parser {
    const char *name;
    const unsigned char *s;
    size_t len;
    size_t pos;
    int line;
    int depth;
    char *errmsg;
    struct token tok; /* HCL lookahead */
};

__attribute__((format(printf, 3, 4))) static int
perr(struct parser *p, int line, const char *fmt, ...)
{
    char msg[KR_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return kr_errf(p->errmsg, KR_EINVAL, "%s:%d: %s", p->name, line, msg);
}

static int oom(struct parser *p)
{
    return kr_errf(p->errmsg, KR_ENOMEM, "%s: out of memory", p->name);
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/*
 * Makes room for element n of an array of capacity *cap.  Returns the
 * (possibly moved) array, or NULL on failure with arr still valid.
 */
static void *grow(void *arr, size_t *cap, size_t n, size_t size)
{
    size_t ncap;
    void *tmp;

    if (n < *cap)
        return arr;
    ncap = *cap == 0 ? 4 : *cap * 2;
    if (ncap > SIZE_MAX / size)
        return NULL;
    tmp = realloc(arr, ncap * size);
    if (tmp != NULL)
        *cap = ncap;
    return tmp;
}

static void item_free(struct kr_hcl_item *it)
{
    wipe_free(it->key);
    for (size_t i = 0; i < it->n_labels; i++)
        wipe_free(it->labels[i]);
    free(it->labels);
    kr_hcl_free(it->value);
}

void kr_hcl_free(struct kr_hcl_node *node)
{
    if (node == NULL)
        return;
    wipe_free(node->str);
    for (size_t i = 0; i < node->n_elems; i++)
        kr_hcl_free(node->elems[i]);
    free(node->elems);
    for (size_t i = 0; i < node->n_items; i++)
        item_free(&node->items[i]);
    free(node->items);
    free(node);
}

const char *kr_hcl_type_name(enum kr_hcl_type type)
{
    static const char *const names[] = {
        [KR_HCL_STRING] = "string", [KR_HCL_INT] = "number",
        [KR_HCL_FLOAT] = "number",  [KR_HCL_BOOL] = "bool",
        [KR_HCL_LIST] = "list",     [KR_HCL_OBJECT] = "block",
    };

    if ((size_t)type >= sizeof(names) / sizeof(names[0]))
        return "value";
    return names[type];
}

void kr_hcl_quote(char *out, size_t cap, const char *s)
{
    size_t o = 0;

    if (cap == 0)
        return;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        size_t n;

        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            n = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[0] = (char)c;
            n = 1;
        } else {
            snprintf(tmp, sizeof(tmp), "\\x%02x", c);
            n = 4;
        }
        /* Keep room for "..." and the terminator. */
        if (o + n + 4 > cap) {
            if (o + 4 <= cap) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, tmp, n);
        o += n;
    }
    out[o] = '\0';
}

static int node_new(struct parser *p, enum kr_hcl_type type, int line,
                    struct kr_hcl_node **out)
{
    struct kr_hcl_node *n = calloc(1, sizeof(*n));
    int rv = 0;

    if (n == NULL) {
        rv = oom(p);
    } else {
        n->type = type;
        n->line = line;
        *out = n;
    }
    return rv;
}

/* Enters a nested object or list opened on line. */
static int enter(struct parser *p, int line)
{
    int rv = 0;

    if (p->depth >= KR_HCL_MAX_DEPTH)
        rv = perr(p, line, "nesting deeper than %d levels", KR_HCL_MAX_DEPTH);
    else
        p->depth++;
    return rv;
}

/*
 * Appends *it to obj's items and takes ownership of its contents (*it is
 * cleared); on failure *it is left for the caller to free.
 */
static int append_item(struct parser *p, struct kr_hcl_node *obj, size_t *cap,
                       struct kr_hcl_item *it)
{
    struct kr_hcl_item *tmp;
    int rv = 0;

    tmp = grow(obj->items, cap, obj->n_items, sizeof(*obj->items));
    if (tmp == NULL) {
        rv = oom(p);
    } else {
        obj->items = tmp;
        obj->items[obj->n_items++] = *it;
        memset(it, 0, sizeof(*it));
    }
    return rv;
}

static int append_elem(struct parser *p, struct kr_hcl_node *list, size_t *cap,
                       struct kr_hcl_node *elem)
{
    struct kr_hcl_node **tmp;
    int rv = 0;

    tmp = grow(list->elems, cap, list->n_elems, sizeof(*list->elems));
    if (tmp == NULL) {
        rv = oom(p);
    } else {
        list->elems = tmp;
        list->elems[list->n_elems++] = elem;
    }
    return rv;
}

static int cmp_item_ptr(const void *a, const void *b)
{
    const struct kr_hcl_item *x = *(const struct kr_hcl_item *const *)a;
    const struct kr_hcl_item *y = *(const struct kr_hcl_item *const *)b;
    int c = strcmp(x->key, y->key);

    if (c != 0)
        return c;
    /* Same array, so address order is source order. */
    return (x > y) - (x < y);
}

/* Blocks, and in HCL `key = { }` objects, may repeat. */
static bool may_repeat(const struct kr_hcl_item *it, bool json)
{
    return !json && it->value->type == KR_HCL_OBJECT;
}

/*
 * Other keys must be unique in their body: every JSON key, and in HCL
 * every attribute whose value is not an object.  Sorting keeps this
 * O(n log n) on hostile input.  Reports the earliest offending line.
 */
static int check_dups(struct parser *p, const struct kr_hcl_node *obj,
                      bool json)
{
    const struct kr_hcl_item **v = NULL;
    const struct kr_hcl_item *bad = NULL, *first = NULL;
    char q[80];
    size_t n = obj->n_items, i, j;
    int rv = 0;

    if (n < 2)
        goto out;
    v = malloc(n * sizeof(*v));
    if (v == NULL) {
        rv = oom(p);
        goto out;
    }
    for (i = 0; i < n; i++)
        v[i] = &obj->items[i];
    qsort(v, n, sizeof(*v), cmp_item_ptr);
    for (i = 0; i < n; i = j) {
        bool attr = !may_repeat(v[i], json);
        bool found = false;

        for (j = i + 1; j < n && strcmp(v[j]->key, v[i]->key) == 0; j++) {
            attr = attr || !may_repeat(v[j], json);
            if (attr && !found && (bad == NULL || v[j]->line < bad->line)) {
                bad = v[j];
                first = v[i];
            }
            found = found || attr;
        }
    }
    if (bad != NULL) {
        kr_hcl_quote(q, sizeof(q), bad->key);
        rv = perr(p, bad->line, "duplicate key \"%s\" (first on line %d)", q,
                  first->line);
    }
out:
    free(v);
    return rv;
}

/* Returns the length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    uint32_t cp;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
        return 0;
    return len;
}

/* Encodes a valid scalar value cp; returns the number of bytes (1-4). */
static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Size limit, optional BOM, no NUL bytes, valid UTF-8. */
static int check_text(struct parser *p)
{
    int line = 1;
    size_t i, n;
    int rv = 0;

    if (p->len > KR_HCL_MAX_INPUT) {
        rv = perr(p, 1, "input is larger than %d bytes", KR_HCL_MAX_INPUT);
        goto out;
    }
    if (p->len >= 3 && memcmp(p->s, "\xef\xbb\xbf", 3) == 0)
        p->pos = 3;
    for (i = p->pos; i < p->len; i += n) {
        n = 1;
        if (p->s[i] == '\n') {
            line++;
        } else if (p->s[i] == '\0') {
            rv = perr(p, line, "NUL byte in input");
            goto out;
        } else if (p->s[i] >= 0x80) {
            n = utf8_seq(p->s + i, p->len - i);
            if (n == 0) {
                rv = perr(p, line, "invalid UTF-8");
                goto out;
            }
        }
    }
out:
    return rv;
}

/* Reads n hex digits at s[at..end); returns false when they are not. */
static bool read_hex(const unsigned char *s, size_t at, size_t end, size_t n,
                     uint32_t *out)
{
    uint32_t v = 0;

    if (at > end || end - at < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int h = kr_hex_digit(s[at + i]);

        if (h < 0)
            return false;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return true;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(unsigned char c)
{
    return is_ident_start(c) || is_digit(c) || c == '-' || c == '.';
}

/*
 * Decodes the quoted string at p->pos (HCL or JSON escapes) into a fresh
 * string.  A string never spans lines.  The decoded form is never longer
 * than the raw one, so one allocation of the raw length suffices.
 */
static int lex_string(struct parser *p, bool json, char **out)
{
    static const char hcl_from[] = "\"\\nrt", hcl_to[] = "\"\\\n\r\t";
    static const char json_from[] = "\"\\/bfnrt", json_to[] = "\"\\/\b\f\n\r\t";
    const char *from = json ? json_from : hcl_from;
    const char *to = json ? json_to : hcl_to;
    const unsigned char *s = p->s;
    size_t start = p->pos + 1, end, i, o = 0, cap = 0;
    char *buf = NULL;
    int rv = 0;

    for (end = start; end < p->len; end++) {
        if (s[end] == '"' || s[end] == '\n')
            break;
        if (s[end] == '\\' && end + 1 < p->len && s[end + 1] != '\n')
            end++;
    }
    if (end >= p->len || s[end] != '"') {
        rv = perr(p, p->line, "unterminated string");
        goto out;
    }
    cap = end - start + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        rv = oom(p);
        goto out;
    }
    i = start;
    while (i < end) {
        unsigned char c = s[i];
        const char *esc;
        uint32_t cp, lo;
        size_t digits;

        if (c != '\\') {
            if (c < 0x20 && (json || c != '\t')) {
                rv = perr(p, p->line, "control character in string");
                goto out;
            }
            buf[o++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= end) {
            rv = perr(p, p->line, "invalid escape sequence in string");
            goto out;
        }
        c = s[i + 1];
        i += 2;
        esc = strchr(from, c);
        if (esc != NULL) {
            buf[o++] = to[esc - from];
            continue;
        }
        if (c != 'u' && (c != 'U' || json)) {
            rv = perr(p, p->line, "invalid escape sequence in string");
            goto out;
        }
        digits = c == 'u' ? 4 : 8;
        if (!read_hex(s, i, end, digits, &cp)) {
            rv = perr(p, p->line, "invalid \\%c escape in string", c);
            goto out;
        }
        i += digits;
        if (json && cp >= 0xd800 && cp <= 0xdbff) {
            /* A UTF-16 surrogate pair: \uD83D\uDE00. */
            if (i + 6 <= end && s[i] == '\\' && s[i + 1] == 'u' &&
                read_hex(s, i + 2, end, 4, &lo) && lo >= 0xdc00 &&
                lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
        }
        if (cp == 0) {
            rv = perr(p, p->line, "\\u0000 is not allowed in a string");
            goto out;
        }
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
            rv = perr(p, p->line, "invalid code point in a \\%c escape", c);
            goto out;
        }
        o += utf8_put(buf + o, cp);
    }
    buf[o] = '\0';
    p->pos = end + 1;
    *out = buf;
    buf = NULL;
out:
    if (buf != NULL) {
        explicit_bzero(buf, cap);
        free(buf);
    }
    return rv;
}

/* Only spaces, tabs and a CR before the newline. */
static bool is_blank_line(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    }
    return true;
}

/*
 * Lexes a heredoc at p->pos ("<<EOF" or "<<-EOF", then a newline, lines,
 * and a line holding only the anchor).  The value keeps the final newline,
 * as in HCL 1.  For <<-, the closing line may be indented, and that
 * indentation is removed from every line when all non-blank lines start
 * with it (otherwise the text is kept as is, again as HCL 1 does).
 */
static int lex_heredoc(struct parser *p, char **out)
{
    const unsigned char *s = p->s;
    int start_line = p->line;
    bool indent = false, found = false, strip = true;
    size_t pos = p->pos + 2, anchor, alen, content, ls = 0, le = 0, t = 0;
    size_t ws = 0, o = 0, cap = 0, i;
    char *buf = NULL;
    int rv = 0;

    if (pos < p->len && s[pos] == '-') {
        indent = true;
        pos++;
    }
    anchor = pos;
    if (pos >= p->len || !is_ident_start(s[pos])) {
        rv = perr(p, start_line, "expected a heredoc anchor after \"<<\"");
        goto out;
    }
    while (pos < p->len && (is_ident_start(s[pos]) || is_digit(s[pos])))
        pos++;
    alen = pos - anchor;
    if (pos < p->len && s[pos] == '\r')
        pos++;
    if (pos >= p->len || s[pos] != '\n') {
        rv = perr(p, start_line, "a heredoc anchor must end its line");
        goto out;
    }
    pos++;
    p->line++;
    content = pos;
    for (;;) {
        size_t te;

        ls = pos;
        for (le = ls; le < p->len && s[le] != '\n';)
            le++;
        te = le;
        while (te > ls &&
               (s[te - 1] == '\r' || s[te - 1] == ' ' || s[te - 1] == '\t'))
            te--;
        t = ls;
        while (indent && t < te && (s[t] == ' ' || s[t] == '\t'))
            t++;
        if (te - t == alen && memcmp(s + t, s + anchor, alen) == 0) {
            found = true;
            break;
        }
        if (le >= p->len)
            break;
        pos = le + 1;
        p->line++;
    }
    if (!found) {
        rv = perr(p, start_line, "unterminated heredoc");
        goto out;
    }
    ws = t - ls; /* indentation of the closing anchor (<<- only) */
    for (i = content; i < ls; i++) {
        if (s[i] < 0x20 && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') {
            rv = perr(p, start_line, "control character in heredoc");
            goto out;
        }
    }
    /* Does every non-blank line start with the closing indentation? */
    for (i = content; ws > 0 && i < ls;) {
        size_t e = i;

        while (e < ls && s[e] != '\n')
            e++;
        if (!is_blank_line(s + i, e - i) &&
            (e - i < ws || memcmp(s + i, s + ls, ws) != 0))
            strip = false;
        i = e + 1;
    }
    cap = ls - content + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        rv = oom(p);
        goto out;
    }
    for (i = content; i < ls;) {
        size_t e = i;

        while (e < ls && s[e] != '\n')
            e++;
        if (e < ls)
            e++; /* keep the newline */
        /* Verified above for non-blank lines; blank ones lose what
         * indentation they have, up to ws. */
        for (size_t k = 0; strip && k < ws && (s[i] == ' ' || s[i] == '\t');
             k++)
            i++;
        memcpy(buf + o, s + i, e - i);
        o += e - i;
        i = e;
    }
    buf[o] = '\0';
    p->pos = le;
    *out = buf;
    buf = NULL;
out:
    if (buf != NULL) {
        explicit_bzero(buf, cap);
        free(buf);
    }
    return rv;
}

/*
 * Lexes a number at p->pos into t (is_float, i, f).  Decimal integers,
 * fractions and exponents as JSON writes them; HCL also takes 0x hex.
 * Leading zeros are rejected (HCL 1 would read them as octal).
 */
static int lex_number(struct parser *p, bool hex_ok, struct token *t)
{
    const unsigned char *s = p->s;
    size_t pos = p->pos, start = p->pos, ds;
    bool neg = false;
    uint64_t v = 0, lim;
    char *copy = NULL;
    int rv = 0;

    t->is_float = false;
    if (s[pos] == '-') {
        neg = true;
        pos++;
    }
    if (pos >= p->len || !is_digit(s[pos]))
        goto bad;
    if (hex_ok && s[pos] == '0' && pos + 1 < p->len &&
        (s[pos + 1] == 'x' || s[pos + 1] == 'X')) {
        pos += 2;
        ds = pos;
        for (; pos < p->len && kr_hex_digit(s[pos]) >= 0; pos++) {
            if (v > (UINT64_MAX >> 4))
                goto range;
            v = (v << 4) | (uint64_t)kr_hex_digit(s[pos]);
        }
        if (pos == ds)
            goto bad;
    } else {
        ds = pos;
        while (pos < p->len && is_digit(s[pos]))
            pos++;
        if (s[ds] == '0' && pos - ds > 1) {
            rv = perr(p, p->line, "invalid number: leading zero");
            goto out;
        }
        for (size_t i = ds; i < pos; i++) {
            uint64_t d = (uint64_t)(s[i] - '0');

            if (v > (UINT64_MAX - d) / 10)
                v = UINT64_MAX; /* out of range unless it is a float */
            else
                v = v * 10 + d;
        }
        if (pos < p->len && s[pos] == '.') {
            pos++;
            if (pos >= p->len || !is_digit(s[pos]))
                goto bad;
            while (pos < p->len && is_digit(s[pos]))
                pos++;
            t->is_float = true;
        }
        if (pos < p->len && (s[pos] == 'e' || s[pos] == 'E')) {
            pos++;
            if (pos < p->len && (s[pos] == '+' || s[pos] == '-'))
                pos++;
            if (pos >= p->len || !is_digit(s[pos]))
                goto bad;
            while (pos < p->len && is_digit(s[pos]))
                pos++;
            t->is_float = true;
        }
    }
    if (pos < p->len && is_ident_char(s[pos]))
        goto bad;
    if (t->is_float) {
        /* strtod needs a terminator; the program runs in the C locale. */
        copy = strndup((const char *)s + start, pos - start);
        if (copy == NULL) {
            rv = oom(p);
            goto out;
        }
        t->f = strtod(copy, NULL);
        if (t->f > DBL_MAX || t->f < -DBL_MAX)
            goto range;
    } else {
        lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (v > lim)
            goto range;
        if (neg)
            t->i = v == lim ? INT64_MIN : -(int64_t)v;
        else
            t->i = (int64_t)v;
    }
    p->pos = pos;
    goto out;
bad:
    rv = perr(p, p->line,
              hex_ok ? "invalid number (quote strings)" : "invalid number");
    goto out;
range:
    rv = perr(p, p->line, "number out of range");
out:
    free(copy);
    return rv;
}

/* Skips HCL whitespace and comments. */
static int skip_space(struct parser *p)
{
    const unsigned char *s = p->s;
    int rv = 0;

    while (p->pos < p->len) {
        unsigned char c = s[p->pos];
        bool next_slash = p->pos + 1 < p->len && s[p->pos + 1] == '/';
        bool next_star = p->pos + 1 < p->len && s[p->pos + 1] == '*';

        if (c == '\n') {
            p->line++;
            p->pos++;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            p->pos++;
        } else if (c == '#' || (c == '/' && next_slash)) {
            while (p->pos < p->len && s[p->pos] != '\n')
                p->pos++;
        } else if (c == '/' && next_star) {
            int start = p->line;

            p->pos += 2;
            for (;;) {
                if (p->pos + 1 >= p->len) {
                    rv = perr(p, start, "unterminated comment");
                    goto out;
                }
                if (s[p->pos] == '*' && s[p->pos + 1] == '/')
                    break;
                if (s[p->pos] == '\n')
                    p->line++;
                p->pos++;
            }
            p->pos += 2;
        } else {
            break;
        }
    }
out:
    return rv;
}

/* Reads the next HCL token into p->tok, wiping the previous one. */
static int lex(struct parser *p)
{
    struct token *t = &p->tok;
    const unsigned char *s = p->s;
    const char *punct;
    unsigned char c;
    int rv;

    wipe_free(t->str);
    memset(t, 0, sizeof(*t));
    rv = skip_space(p);
    if (rv != 0)
        goto out;
    t->line = p->line;
    t->start = p->pos;
    if (p->pos >= p->len) {
        t->type = T_EOF;
        goto out;
    }
    c = s[p->pos];
    punct = strchr(punct_chars, c); /* c is never NUL: see check_text() */
    if (punct != NULL) {
        t->type = punct_toks[punct - punct_chars];
        p->pos++;
    } else if (c == '"') {
        t->type = T_STRING;
        rv = lex_string(p, false, &t->str);
    } else if (c == '<' && p->pos + 1 < p->len && s[p->pos + 1] == '<') {
        t->type = T_STRING;
        rv = lex_heredoc(p, &t->str);
    } else if (c == '-' || is_digit(c)) {
        t->type = T_NUMBER;
        rv = lex_number(p, true, t);
    } else if (is_ident_start(c)) {
        t->type = T_IDENT;
        while (p->pos < p->len && is_ident_char(s[p->pos]))
            p->pos++;
    } else if (c >= 0x21 && c < 0x7f) {
        rv = perr(p, p->line, "unexpected character '%c'", c);
    } else {
        rv = perr(p, p->line, "unexpected byte 0x%02x", c);
    }
    t->len = p->pos - t->start;
out:
    return rv;
}

static char *take_str(struct parser *p)
{
    char *s = p->tok.str;

    p->tok.str = NULL;
    return s;
}

static bool tok_is(const struct parser *p, const char *word)
{
    size_t n = strlen(word);

    return p->tok.type == T_IDENT && p->tok.len == n &&
           memcmp(p->s + p->tok.start, word, n) == 0;
}

static int parse_value(struct parser *p, struct kr_hcl_node **out);
static int parse_body(struct parser *p, struct kr_hcl_node *obj, bool top,
                      int open_line);

static int parse_object(struct parser *p, struct kr_hcl_node **out)
{
    struct kr_hcl_node *n = NULL;
    int open = p->tok.line;
    int rv;

    rv = enter(p, open);
    if (rv != 0)
        goto out;
    rv = node_new(p, KR_HCL_OBJECT, open, &n);
    if (rv != 0)
        goto out;
    rv = lex(p);
    if (rv != 0)
        goto out;
    rv = parse_body(p, n, false, open);
    if (rv != 0)
        goto out;
    rv = lex(p); /* the closing brace */
    if (rv != 0)
        goto out;
    p->depth--;
    *out = n;
    n = NULL;
out:
    kr_hcl_free(n);
    return rv;
}

static int parse_list(struct parser *p, struct kr_hcl_node **out)
{
    struct kr_hcl_node *n = NULL, *elem = NULL;
    int open = p->tok.line;
    size_t cap = 0;
    int rv;

    rv = enter(p, open);
    if (rv != 0)
        goto out;
    rv = node_new(p, KR_HCL_LIST, open, &n);
    if (rv != 0)
        goto out;
    rv = lex(p);
    while (rv == 0 && p->tok.type != T_RBRACK) {
        if (p->tok.type == T_EOF) {
            rv = perr(p, open, "unterminated list");
            goto out;
        }
        rv = parse_value(p, &elem);
        if (rv != 0)
            goto out;
        rv = append_elem(p, n, &cap, elem);
        if (rv != 0)
            goto out;
        elem = NULL;
        if (p->tok.type == T_COMMA) {
            rv = lex(p);
        } else if (p->tok.type != T_RBRACK) {
            rv = perr(p, p->tok.line, "expected \",\" or \"]\", got %s",
                      tok_names[p->tok.type]);
        }
    }
    if (rv != 0)
        goto out;
    rv = lex(p); /* the closing bracket */
    if (rv != 0)
        goto out;
    p->depth--;
    *out = n;
    n = NULL;
out:
    kr_hcl_free(elem);
    kr_hcl_free(n);
    return rv;
}

static int parse_value(struct parser *p, struct kr_hcl_node **out)
{
    struct kr_hcl_node *n = NULL;
    int line = p->tok.line;
    int rv = 0;

    switch (p->tok.type) {
    case T_LBRACE:
        rv = parse_object(p, out);
        goto out;
    case T_LBRACK:
        rv = parse_list(p, out);
        goto out;
    case T_STRING:
        rv = node_new(p, KR_HCL_STRING, line, &n);
        if (rv == 0)
            n->str = take_str(p);
        break;
    case T_NUMBER:
        rv = node_new(p, p->tok.is_float ? KR_HCL_FLOAT : KR_HCL_INT, line, &n);
        if (rv == 0) {
            n->i = p->tok.i;
            n->f = p->tok.f;
        }
        break;
    case T_IDENT:
        if (!tok_is(p, "true") && !tok_is(p, "false")) {
            rv = perr(p, line,
                      "expected a value, got a bare word (quote "
                      "strings)");
            goto out;
        }
        rv = node_new(p, KR_HCL_BOOL, line, &n);
        if (rv == 0)
            n->b = tok_is(p, "true");
        break;
    default:
        rv = perr(p, line, "expected a value, got %s", tok_names[p->tok.type]);
        goto out;
    }
    if (rv != 0)
        goto out;
    rv = lex(p);
    if (rv != 0)
        goto out;
    *out = n;
    n = NULL;
out:
    kr_hcl_free(n);
    return rv;
}

/* key ["label"...] ( "=" value | "{" body "}" ) */
static int parse_item(struct parser *p, struct kr_hcl_node *obj, size_t *cap)
{
    struct kr_hcl_item it;
    size_t lcap = 0;
    char *label = NULL;
    char **tmp;
    int rv = 0;

    memset(&it, 0, sizeof(it));
    it.line = p->tok.line;
    if (p->tok.type == T_IDENT) {
        it.key = strndup((const char *)p->s + p->tok.start, p->tok.len);
    } else if (p->tok.type == T_STRING) {
        it.key = take_str(p);
    } else {
        rv = perr(p, p->tok.line, "expected a key, got %s",
                  tok_names[p->tok.type]);
        goto out;
    }
    if (it.key == NULL) {
        rv = oom(p);
        goto out;
    }
    rv = lex(p);
    while (rv == 0 && (p->tok.type == T_STRING || p->tok.type == T_IDENT)) {
        if (p->tok.type == T_STRING)
            label = take_str(p);
        else
            label = strndup((const char *)p->s + p->tok.start, p->tok.len);
        if (label == NULL) {
            rv = oom(p);
            goto out;
        }
        tmp = grow(it.labels, &lcap, it.n_labels, sizeof(*it.labels));
        if (tmp == NULL) {
            rv = oom(p);
            goto out;
        }
        it.labels = tmp;
        it.labels[it.n_labels++] = label;
        label = NULL;
        rv = lex(p);
    }
    if (rv != 0)
        goto out;
    if (p->tok.type == T_EQUAL && it.n_labels == 0) {
        rv = lex(p);
        if (rv == 0)
            rv = parse_value(p, &it.value);
    } else if (p->tok.type == T_LBRACE) {
        it.block = true;
        rv = parse_object(p, &it.value);
    } else if (it.n_labels > 0) {
        rv = perr(p, p->tok.line, "expected \"{\" after a block label, got %s",
                  tok_names[p->tok.type]);
    } else {
        rv = perr(p, p->tok.line, "expected \"=\" or \"{\" after a key, got %s",
                  tok_names[p->tok.type]);
    }
    if (rv != 0)
        goto out;
    rv = append_item(p, obj, cap, &it);
out:
    wipe_free(label);
    item_free(&it);
    return rv;
}

/* Items up to "}" (left as the current token) or, at the top, the end. */
static int parse_body(struct parser *p, struct kr_hcl_node *obj, bool top,
                      int open_line)
{
    size_t cap = 0;
    bool after_item = false;
    int rv = 0;

    for (;;) {
        if (p->tok.type == T_EOF && top)
            break;
        if (p->tok.type == T_EOF) {
            rv = perr(p, open_line, "block is not closed");
            goto out;
        }
        if (p->tok.type == T_RBRACE && !top)
            break;
        if (p->tok.type == T_RBRACE) {
            rv = perr(p, p->tok.line, "unexpected \"}\"");
            goto out;
        }
        if (p->tok.type == T_COMMA && after_item) {
            /* HCL 1 allows commas between the items of an object. */
            after_item = false;
            rv = lex(p);
        } else {
            after_item = true;
            rv = parse_item(p, obj, &cap);
        }
        if (rv != 0)
            goto out;
    }
    rv = check_dups(p, obj, false);
out:
    return rv;
}

static void parser_init(struct parser *p, const char *name, const char *text,
                        size_t len, char *errmsg)
{
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->s = (const unsigned char *)text;
    p->len = text == NULL ? 0 : len;
    p->line = 1;
    p->errmsg = errmsg;
}

int kr_hcl_parse(const char *name, const char *text, size_t len,
                 struct kr_hcl_node **out, char *errmsg)
{
    struct parser p;
    struct kr_hcl_node *root = NULL;
    int rv;

    parser_init(&p, name, text, len, errmsg);
    rv = check_text(&p);
    if (rv != 0)
        goto out;
    rv = node_new(&p, KR_HCL_OBJECT, 1, &root);
    if (rv != 0)
        goto out;
    rv = lex(&p);
    if (rv != 0)
        goto out;
    rv = parse_body(&p, root, true, 1);
    if (rv != 0)
        goto out;
    *out = root;
    root = NULL;
out:
    wipe_free(p.tok.str);
    kr_hcl_free(root);
    return rv;
}

/* JSON */

static void json_space(struct parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];

        if (c == '\n')
            p->line++;
        else if (c != ' ' && c != '\t' && c != '\r')
            break;
        p->pos++;
    }
}

/* Consumes word when the input continues with it. */
static bool json_word(struct parser *p, const char *word)
{
    size_t n = strlen(word);

    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return false;
    p->pos += n;
    return true;
}

static int json_unexpected(struct parser *p, const char *what)
{
    unsigned char c = p->pos < p->len ? p->s[p->pos] : 0;
    int rv;

    /* A bare word or a non-ASCII byte could be part of a value. */
    if (p->pos >= p->len)
        rv = perr(p, p->line, "expected %s, got end of input", what);
    else if (c >= 0x21 && c < 0x7f && !is_ident_char(c))
        rv = perr(p, p->line, "expected %s, got '%c'", what, c);
    else
        rv = perr(p, p->line, "expected %s", what);
    return rv;
}

static int json_value(struct parser *p, struct kr_hcl_node **out);

static int json_object(struct parser *p, struct kr_hcl_node **out)
{
    struct kr_hcl_node *n = NULL;
    struct kr_hcl_item it;
    int open = p->line;
    size_t cap = 0;
    int rv;

    memset(&it, 0, sizeof(it));
    rv = enter(p, open);
    if (rv != 0)
        goto out;
    rv = node_new(p, KR_HCL_OBJECT, open, &n);
    if (rv != 0)
        goto out;
    p->pos++; /* { */
    json_space(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        goto done;
    }
    for (;;) {
        json_space(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            rv = json_unexpected(p, "a string key");
            goto out;
        }
        it.line = p->line;
        rv = lex_string(p, true, &it.key);
        if (rv != 0)
            goto out;
        json_space(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            rv = json_unexpected(p, "\":\" after a key");
            goto out;
        }
        p->pos++;
        rv = json_value(p, &it.value);
        if (rv != 0)
            goto out;
        rv = append_item(p, n, &cap, &it);
        if (rv != 0)
            goto out;
        json_space(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            break;
        } else {
            rv = json_unexpected(p, "\",\" or \"}\"");
            goto out;
        }
    }
done:
    rv = check_dups(p, n, true);
    if (rv != 0)
        goto out;
    p->depth--;
    *out = n;
    n = NULL;
out:
    item_free(&it);
    kr_hcl_free(n);
    return rv;
}

static int json_array(struct parser *p, struct kr_hcl_node **out)
{
    struct kr_hcl_node *n = NULL, *elem = NULL;
    int open = p->line;
    size_t cap = 0;
    int rv;

    rv = enter(p, open);
    if (rv != 0)
        goto out;
    rv = node_new(p, KR_HCL_LIST, open, &n);
    if (rv != 0)
        goto out;
    p->pos++; /* [ */
    json_space(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        goto done;
    }
    for (;;) {
        rv = json_value(p, &elem);
        if (rv != 0)
            goto out;
        rv = append_elem(p, n, &cap, elem);
        if (rv != 0)
            goto out;
        elem = NULL;
        json_space(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            break;
        } else {
            rv = json_unexpected(p, "\",\" or \"]\"");
            goto out;
        }
    }
done:
    p->depth--;
    *out = n;
    n = NULL;
out:
    kr_hcl_free(elem);
    kr_hcl_free(n);
    return rv;
}

static int json_value(struct parser *p, struct kr_hcl_node **out)
{
    struct kr_hcl_node *n = NULL;
    struct token t;
    unsigned char c;
    int rv = 0;

    memset(&t, 0, sizeof(t));
    json_space(p);
    if (p->pos >= p->len) {
        rv = json_unexpected(p, "a value");
        goto out;
    }
    c = p->s[p->pos];
    if (c == '{') {
        rv = json_object(p, out);
        goto out;
    }
    if (c == '[') {
        rv = json_array(p, out);
        goto out;
    }
    if (c == '"') {
        rv = node_new(p, KR_HCL_STRING, p->line, &n);
        if (rv == 0)
            rv = lex_string(p, true, &n->str);
    } else if (c == '-' || is_digit(c)) {
        rv = lex_number(p, false, &t);
        if (rv == 0)
            rv = node_new(p, t.is_float ? KR_HCL_FLOAT : KR_HCL_INT, p->line,
                          &n);
        if (rv == 0) {
            n->i = t.i;
            n->f = t.f;
        }
    } else if (json_word(p, "true") || json_word(p, "false")) {
        rv = node_new(p, KR_HCL_BOOL, p->line, &n);
        if (rv == 0)
            n->b = c == 't';
    } else if (json_word(p, "null")) {
        rv = perr(p, p->line, "null is not supported");
    } else {
        rv = json_unexpected(p, "a value");
    }
    if (rv != 0)
        goto out;
    *out = n;
    n = NULL;
out:
    kr_hcl_free(n);
    return rv;
}

int kr_hcl_parse_json(const char *name, const char *text, size_t len,
                      struct kr_hcl_node **out, char *errmsg)
{
    struct parser p;
    struct kr_hcl_node *root = NULL;
    int rv;

    parser_init(&p, name, text, len, errmsg);
    rv = check_text(&p);
    if (rv != 0)
        goto out;
    json_space(&p);
    if (p.pos >= p.len || p.s[p.pos] != '{') {
        rv = json_unexpected(&p, "a JSON object");
        goto out;
    }
    /* The top-level object is the body, as in HCL: it is not nesting. */
    p.depth = -1;
    rv = json_object(&p, &root);
    if (rv != 0)
        goto out;
    json_space(&p);
    if (p.pos < p.len) {
        rv = perr(&p, p.line, "unexpected data after the JSON object");
        goto out;
    }
    *out = root;
    root = NULL;
out:
    kr_hcl_free(root);
    return rv;
}
