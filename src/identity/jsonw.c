/*
 * See jsonw.h.  Strings are copied in runs between the bytes that need an
 * escape, which are the ones jansson escapes: '"', '\\' and the control
 * characters below 0x20 (short forms for \b \f \n \r \t, else \u00XX in
 * upper-case hex).  Bytes from 0x80 up are copied: jansson strings are
 * valid UTF-8, and jansson writes them unescaped without
 * JSON_ENSURE_ASCII.
 */
#include "identity/jsonw.h"

#include <stdbool.h>
#include <stdio.h>

#include "common/err.h"

static void put_string(struct kr_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;

    kr_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t len = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        kr_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
            break;
        }
        kr_buf_append(b, esc, len);
    }
    kr_buf_append(b, s + run, n - run);
    kr_buf_append(b, "\"", 1);
}

static int put(json_t *j, struct kr_buf *b, int depth)
{
    char num[32];
    const char *key;
    json_t *v;
    size_t i, key_len;
    bool first = true;
    int n, rv;

    if (depth > KR_JSONW_MAX_DEPTH)
        return KR_EINVAL;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        kr_buf_append(b, "{", 1);
        json_object_keylen_foreach(j, key, key_len, v)
        {
            if (!first)
                kr_buf_append(b, ",", 1);
            first = false;
            put_string(b, key, key_len);
            kr_buf_append(b, ":", 1);
            rv = put(v, b, depth + 1);
            if (rv != 0)
                return rv;
        }
        kr_buf_append(b, "}", 1);
        return 0;
    case JSON_ARRAY:
        kr_buf_append(b, "[", 1);
        json_array_foreach(j, i, v)
        {
            if (i > 0)
                kr_buf_append(b, ",", 1);
            rv = put(v, b, depth + 1);
            if (rv != 0)
                return rv;
        }
        kr_buf_append(b, "]", 1);
        return 0;
    case JSON_STRING:
        put_string(b, json_string_value(j), json_string_length(j));
        return 0;
    case JSON_INTEGER:
        n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(j));
        kr_buf_append(b, num, (size_t)n);
        return 0;
    case JSON_TRUE:
        kr_buf_puts(b, "true");
        return 0;
    case JSON_FALSE:
        kr_buf_puts(b, "false");
        return 0;
    case JSON_NULL:
        kr_buf_puts(b, "null");
        return 0;
    default: /* JSON_REAL: jansson's own formatting */
        return KR_EINVAL;
    }
}

int kr_jsonw_compact(json_t *j, struct kr_buf *out)
{
    size_t start = out->len;
    int rv = j != NULL ? put(j, out, 0) : KR_EINVAL;

    if (rv == 0 && out->oom)
        rv = KR_ENOMEM;
    if (rv != 0)
        out->len = start;
    return rv;
}
