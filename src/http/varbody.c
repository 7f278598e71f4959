/*
 * The fast path for a Variable's PUT body (see varbody.h).
 *
 * The scanner checks the body in one pass.  It accepts only one object,
 * whose values are strings, integers of at most 18 digits (they cannot
 * overflow), true, false, null and, for "Items" alone, an object of
 * strings; keys without escapes; strings of valid UTF-8 (jansson's rules:
 * no overlongs, surrogates or code points past U+10FFFF, no raw control
 * characters) whose escapes are the short ones.  A "Namespace" string must
 * be escape-free too, so it can be lent out as it stands.  Anything else,
 * including what jansson would reject, returns KR_EINVAL and goes to
 * jansson.  Since keys have no escapes, their bytes are their values, so
 * duplicates and the sort order are decided on the raw spans.
 *
 * Items are then written in jansson's canonical form: keys sorted by
 * unsigned bytes (JSON_SORT_KEYS), no spaces, values re-escaped as
 * dump.c does with default flags.  The exact length is counted first with
 * the same code that writes, so the secret buffer is sized exactly.
 *
 * Security: reads stay inside [body, body + len); plaintext is written
 * only into kr_secret memory.  The span arrays hold pointers into the
 * caller's body, not bytes of it.
 */
#include "http/varbody.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* Digits that always fit a json_int_t, so jansson cannot overflow. */
#define INT_DIGITS_MAX 18

/* The bytes between a string's quotes, as sent. */
struct span {
    const char *p;
    size_t len;
};

/* A member: the key, and for Items the value. */
struct member {
    struct span key;
    struct span val;
};

struct list {
    struct member *v;
    size_t n, cap;
};

struct scan {
    const unsigned char *p, *end;
    struct list top;   /* top-level keys, for duplicates */
    struct list items; /* Items' members */
    struct span ns;
    bool has_ns;
    bool has_items;
    size_t total;
};

typedef int (*member_fn)(struct scan *s, const struct span *key);

/* The byte each short escape stands for; 0: not one we handle. */
static const unsigned char unesc[256] = {
    ['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
    ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t',
};

/* The letter jansson's dumper escapes each byte with; 0: no short form. */
static const char esc[256] = {
    ['"'] = '"',  ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
    ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't',
};

/* The smallest code point of each sequence length (overlong below). */
static const uint32_t utf8_min[5] = {0, 0, 0x80, 0x800, 0x10000};

static int peek(const struct scan *s)
{
    return s->p < s->end ? *s->p : -1;
}

static void skip_ws(struct scan *s)
{
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int push(struct list *l, const struct member *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        struct member *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return KR_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *m;
    return 0;
}

/* Length of the multi-byte UTF-8 sequence at p (p < end) when jansson's
 * utf8_check_first/utf8_check_full accept it, else 0 (and for ASCII). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n = 0;
    uint32_t cp;

    if (*p >= 0xC2 && *p <= 0xDF)
        n = 2;
    else if (*p >= 0xE0 && *p <= 0xEF)
        n = 3;
    else if (*p >= 0xF0 && *p <= 0xF4)
        n = 4;
    if (n == 0 || (size_t)(end - p) < n)
        return 0;
    cp = *p & (0x7Fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if (cp < utf8_min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* Printable ASCII that stands for itself in and out of JSON strings. */
static bool plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* Scans the string whose opening quote is at s->p.  On success *sp is its
 * raw content, *dec its length unescaped, and s->p is past it. */
static int scan_string(struct scan *s, struct span *sp, size_t *dec)
{
    const unsigned char *p = s->p + 1;
    size_t escapes = 0, n;

    for (;;) {
        while (p < s->end && plain(*p))
            p++;
        if (p == s->end)
            return KR_EINVAL;
        if (*p == '"')
            break;
        if (*p == '\\')
            n = s->end - p >= 2 && unesc[p[1]] != 0 ? 2 : 0;
        else
            n = utf8_len(p, s->end); /* 0 for control characters */
        if (n == 0)
            return KR_EINVAL;
        escapes += *p == '\\';
        p += n;
    }
    sp->p = (const char *)s->p + 1;
    sp->len = (size_t)(p - s->p) - 1;
    *dec = sp->len - escapes;
    s->p = p + 1;
    return 0;
}

static int scan_int(struct scan *s)
{
    const unsigned char *p = s->p + (peek(s) == '-'), *digits = p;

    while (p < s->end && *p >= '0' && *p <= '9')
        p++;
    if (p == digits || p - digits > INT_DIGITS_MAX ||
        (*digits == '0' && p - digits > 1))
        return KR_EINVAL;
    s->p = p;
    return 0;
}

static int scan_literal(struct scan *s)
{
    static const char *const words[] = {"true", "false", "null"};

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(s->end - s->p) >= n && memcmp(s->p, words[i], n) == 0) {
            s->p += n;
            return 0;
        }
    }
    return KR_EINVAL;
}

static bool span_is(const struct span *sp, const char *word)
{
    return sp->len == strlen(word) && memcmp(sp->p, word, sp->len) == 0;
}

/*
 * Scans the object whose '{' is at s->p, calling member() on each value
 * (s->p at its first byte) with its key.  Keys must be escape-free.  The
 * caller decides whether an empty object will do.
 */
static int scan_object(struct scan *s, member_fn member)
{
    struct span key;
    size_t dec;
    int rv;

    s->p++;
    skip_ws(s);
    if (peek(s) == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        if (peek(s) != '"' || scan_string(s, &key, &dec) != 0 || dec != key.len)
            return KR_EINVAL;
        skip_ws(s);
        if (peek(s) != ':')
            return KR_EINVAL;
        s->p++;
        skip_ws(s);
        rv = member(s, &key);
        if (rv != 0)
            return rv;
        skip_ws(s);
        if (peek(s) != ',')
            break;
        s->p++;
        skip_ws(s);
    }
    if (peek(s) != '}')
        return KR_EINVAL;
    s->p++;
    return 0;
}

/* A member of Items: a string. */
static int item_member(struct scan *s, const struct span *key)
{
    struct member m = {.key = *key};
    size_t dec;

    if (peek(s) != '"' || scan_string(s, &m.val, &dec) != 0)
        return KR_EINVAL;
    s->total += key->len + dec;
    return push(&s->items, &m);
}

static int top_string(struct scan *s, const struct span *key)
{
    struct span val;
    size_t dec;

    if (scan_string(s, &val, &dec) != 0)
        return KR_EINVAL;
    if (span_is(key, "Namespace")) {
        if (dec != val.len)
            return KR_EINVAL;
        s->ns = val;
        s->has_ns = true;
    }
    return 0;
}

/* A top-level member. */
static int top_member(struct scan *s, const struct span *key)
{
    struct member m = {.key = *key};
    int c = peek(s);

    if (push(&s->top, &m) != 0)
        return KR_ENOMEM;
    if (c == '"')
        return top_string(s, key);
    if (c == '{') {
        if (!span_is(key, "Items"))
            return KR_EINVAL;
        s->has_items = true;
        return scan_object(s, item_member);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return scan_int(s);
    return scan_literal(s);
}

static int key_cmp(const void *a, const void *b)
{
    const struct span *x = &((const struct member *)a)->key;
    const struct span *y = &((const struct member *)b)->key;
    int r = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);

    if (r != 0)
        return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sorts l by key (JSON_SORT_KEYS' order); true when two keys are equal. */
static bool sort_has_dups(struct list *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(l->v[0]), key_cmp);
    for (size_t i = 1; i < l->n; i++)
        if (key_cmp(&l->v[i - 1], &l->v[i]) == 0)
            return true;
    return false;
}

/* Writes byte c as jansson's dumper does with default flags into out, or
 * only counts when out is NULL; returns the bytes written.  Control bytes
 * without a short escape cannot reach here (the scanner sends them to
 * jansson) but are written as jansson would, "\u001F". */
static size_t put_byte(uint8_t *out, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = esc[c] != 0 ? 2 : c < 0x20 ? 6 : 1;

    if (out == NULL)
        return n;
    if (n == 2) {
        out[0] = '\\';
        out[1] = (uint8_t)esc[c];
    } else if (n == 6) {
        memcpy(out, "\\u00", 4);
        out[4] = (uint8_t)hex[c >> 4];
        out[5] = (uint8_t)hex[c & 0xF];
    } else {
        out[0] = c;
    }
    return n;
}

/* Writes a scanned string re-escaped, quoted, into out (NULL: counts).
 * Its raw bytes other than escapes are printable ASCII or UTF-8, which
 * jansson writes as they are, so they are copied in runs. */
static size_t put_string(uint8_t *out, const struct span *sp)
{
    const char *p = sp->p, *end = sp->p + sp->len, *bs;
    size_t n = 1, run;

    if (out != NULL)
        out[0] = '"';
    while (p < end) {
        bs = memchr(p, '\\', (size_t)(end - p));
        run = (size_t)((bs != NULL ? bs : end) - p);
        if (out != NULL)
            memcpy(out + n, p, run);
        n += run;
        p += run;
        if (bs != NULL) {
            n += put_byte(out != NULL ? out + n : NULL,
                          unesc[(unsigned char)bs[1]]);
            p += 2;
        }
    }
    if (out != NULL)
        out[n] = '"';
    return n + 1;
}

/* Writes Items, sorted, into out (NULL: counts); returns the length. */
static size_t put_items(uint8_t *out, const struct list *items)
{
    size_t n = 1;

    if (out != NULL)
        out[0] = '{';
    for (size_t i = 0; i < items->n; i++) {
        if (out != NULL && i > 0)
            out[n] = ',';
        n += i > 0;
        n += put_string(out != NULL ? out + n : NULL, &items->v[i].key);
        if (out != NULL)
            out[n] = ':';
        n++;
        n += put_string(out != NULL ? out + n : NULL, &items->v[i].val);
    }
    if (out != NULL)
        out[n] = '}';
    return n + 1;
}

static int scan_body(struct scan *s)
{
    int rv;

    skip_ws(s);
    if (peek(s) != '{')
        return KR_EINVAL;
    rv = scan_object(s, top_member);
    if (rv != 0)
        return rv;
    skip_ws(s);
    if (s->p != s->end || !s->has_items || s->items.n == 0)
        return KR_EINVAL;
    if (sort_has_dups(&s->top) || sort_has_dups(&s->items))
        return KR_EINVAL;
    return 0;
}

int kr_varbody_parse(const char *body, size_t len, struct kr_varbody *out)
{
    struct scan s;
    struct kr_secret *items = NULL;
    int rv = KR_EINVAL;

    memset(out, 0, sizeof(*out));
    memset(&s, 0, sizeof(s));
    if (body == NULL)
        goto out;
    s.p = (const unsigned char *)body;
    s.end = s.p + len;
    rv = scan_body(&s);
    if (rv != 0)
        goto out;
    items = kr_secret_new(put_items(NULL, &s.items));
    if (items == NULL) {
        rv = KR_ENOMEM;
        goto out;
    }
    KR_BUG_ON(put_items(items->data, &s.items) != items->len);
    out->ns = s.has_ns ? s.ns.p : NULL;
    out->ns_len = s.has_ns ? s.ns.len : 0;
    out->items = items;
    out->total = s.total;
out:
    free(s.top.v);
    free(s.items.v);
    return rv;
}

void kr_varbody_clear(struct kr_varbody *b)
{
    kr_secret_free(b->items);
    memset(b, 0, sizeof(*b));
}
