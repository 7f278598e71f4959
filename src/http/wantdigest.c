/* See wantdigest.h.  The grammar (RFC 3230, with RFC 7230's lists and
 * RFC 7231's qvalue):
 *
 *   Want-Digest      = 1#want-digest-value
 *   want-digest-value = digest-algorithm [ OWS ";" OWS "q" "=" qvalue ]
 *   qvalue           = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
 *
 * Empty list elements (", ,") are allowed, as RFC 7230 section 7 asks. */
#include "http/wantdigest.h"

#include <string.h>
#include <strings.h>

struct cursor {
    const char *p, *end;
};

static void skip_ows(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* RFC 7230 tchar. */
static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* A qvalue; *zero tells whether it is 0. */
static bool qvalue(struct cursor *c, bool *zero)
{
    char first;
    int digits = 0;
    bool all_zero = true;

    if (c->p == c->end || (*c->p != '0' && *c->p != '1'))
        return false;
    first = *c->p++;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && digits < 3) {
            all_zero = all_zero && *c->p == '0';
            c->p++;
            digits++;
        }
    }
    if (first == '1' && !all_zero)
        return false;
    *zero = first == '0' && all_zero;
    return true;
}

/* One want-digest-value, the cursor on its first character. */
static bool element(struct cursor *c, bool *declines)
{
    const char *name = c->p;
    size_t len;
    bool zero = false;

    while (c->p < c->end && is_tchar(*c->p))
        c->p++;
    len = (size_t)(c->p - name);
    if (len == 0)
        return false;
    skip_ows(c);
    if (c->p < c->end && *c->p == ';') {
        c->p++;
        skip_ows(c);
        if (c->end - c->p < 2 || (c->p[0] != 'q' && c->p[0] != 'Q') ||
            c->p[1] != '=')
            return false;
        c->p += 2;
        if (!qvalue(c, &zero))
            return false;
        skip_ows(c);
    }
    if (zero && len == 7 && strncasecmp(name, "sha-256", 7) == 0)
        *declines = true;
    return true;
}

bool kr_http_want_digest_declines_sha256(const char *v, size_t n)
{
    struct cursor c = {v, v + n};
    bool declines = false, any = false;

    for (;;) {
        skip_ows(&c);
        if (c.p < c.end && *c.p != ',') {
            if (!element(&c, &declines))
                return false;
            any = true;
        }
        if (c.p == c.end)
            break;
        if (*c.p != ',')
            return false;
        c.p++;
    }
    return any && declines;
}
