/*
 * libFuzzer target for the Variable PUT body's fast path (src/http/
 * varbody.c), differential against jansson.  Whatever the bytes, the
 * parser must not crash or read out of bounds; and whenever it takes a
 * body, jansson must take it too (json_loadb with JSON_REJECT_DUPLICATES,
 * as kr_http_body_json), with Items a non-empty object of strings whose
 * json_dumpb(JSON_COMPACT | JSON_SORT_KEYS) equals the fast path's output
 * byte for byte, the same Items size as items_valid sums, and the same
 * Namespace string.  Any disagreement traps.
 *
 * Build with clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 * -Isrc, this file, src/http/varbody.c and the .c files of src/common and
 * src/crypto, -ljansson -lssl -lcrypto; run as ./fuzz_varbody
 * -max_total_time=60 corpus/ (`make fuzz` seeds the corpus from
 * tests/fuzz/varbody.seeds).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/err.h"
#include "http/varbody.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_items(json_t *items, const struct kr_secret *got)
{
    size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
    size_t n = json_dumpb(items, NULL, 0, flags);
    char *want = malloc(n ? n : 1);
    bool same;

    if (want == NULL)
        abort();
    same = json_dumpb(items, want, n, flags) == n && n == got->len &&
           memcmp(want, got->data, n) == 0;
    free(want);
    return same;
}

/* Items as items_valid requires them, with their size; false if not. */
static bool items_total(json_t *items, size_t *total)
{
    const char *k;
    json_t *v;

    *total = 0;
    if (!json_is_object(items) || json_object_size(items) == 0)
        return false;
    json_object_foreach(items, k, v)
    {
        if (!json_is_string(v))
            return false;
        *total += strlen(k) + json_string_length(v);
    }
    return true;
}

static bool same_ns(json_t *ns, const struct kr_varbody *vb)
{
    if (!json_is_string(ns))
        return vb->ns == NULL && vb->ns_len == 0;
    return vb->ns != NULL && vb->ns_len == json_string_length(ns) &&
           memcmp(vb->ns, json_string_value(ns), vb->ns_len) == 0;
}

static void check(const char *body, size_t size, const struct kr_varbody *vb)
{
    json_t *j = json_loadb(body, size, JSON_REJECT_DUPLICATES, NULL);
    json_t *items = json_object_get(j, "Items");
    size_t total;

    if (!json_is_object(j) || !items_total(items, &total) ||
        total != vb->total || !same_items(items, vb->items) ||
        !same_ns(json_object_get(j, "Namespace"), vb))
        __builtin_trap();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A separate allocation of exactly size bytes: the parser must not
     * need a terminator, and ASan sees any read past the end. */
    char *body = malloc(size == 0 ? 1 : size);
    struct kr_varbody vb;
    int rv;

    if (body == NULL)
        return 0;
    if (size > 0)
        memcpy(body, data, size);
    rv = kr_varbody_parse(body, size, &vb);
    if (rv == 0)
        check(body, size, &vb);
    else if (rv != KR_EINVAL && rv != KR_ENOMEM)
        __builtin_trap();
    else if (vb.items != NULL || vb.ns != NULL || vb.total != 0)
        __builtin_trap();
    kr_varbody_clear(&vb);
    free(body);
    return 0;
}
