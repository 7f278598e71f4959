/*
 * The fast path for the body of PUT /v1/var/:path: the common body, one
 * JSON object whose Items is a non-empty object of strings, is checked and
 * re-encoded in one pass without a jansson tree.  It accepts a strict
 * subset of what json_loadb(JSON_REJECT_DUPLICATES) accepts and, for that
 * subset, yields exactly what var.c's jansson path would; everything else
 * is left to jansson, whose error messages the API keeps.
 *
 * Pure: no I/O, no globals; any thread.
 */
#ifndef KR_HTTP_VARBODY_H
#define KR_HTTP_VARBODY_H

#include <stddef.h>

#include "crypto/secmem.h"

struct kr_varbody {
    /* The body's "Namespace" string, borrowed from the body (not
     * NUL-terminated); NULL when absent or not a string. */
    const char *ns;
    size_t ns_len;
    /* Owned: Items as json_dumpb(items, JSON_COMPACT | JSON_SORT_KEYS)
     * writes them, in secret memory. */
    struct kr_secret *items;
    /* Key bytes plus value bytes over Items, unescaped. */
    size_t total;
};

/*
 * Parses body[0..len) (borrowed; no terminator needed).  Returns 0 with
 * *out filled, or KR_EINVAL when the body is outside the fast path (the
 * caller parses it with jansson) and KR_ENOMEM when out of memory; *out is
 * then zeroed.  Any input is safe.  Free *out with kr_varbody_clear.
 */
int kr_varbody_parse(const char *body, size_t len, struct kr_varbody *out);

/* Wipes and frees b->items and zeroes b; safe on a zeroed struct. */
void kr_varbody_clear(struct kr_varbody *b);

#endif
