/*
 * Parsers for agent configuration text: the subset of HCL (version 1, as
 * Nomad reads its agent files) that keyraft's configuration uses, and JSON.
 * Both produce the same small AST, in which every node and every item
 * carries the line it came from, so the schema in config.c can report
 * "file:line: message" for any value.
 *
 * HCL subset: `key = value` attributes, `name { }` blocks and labelled
 * `name "label" ... { }` blocks, `key = { }` objects (blocks and objects
 * may repeat, other attributes may not), strings with \n \t \r \" \\ \uXXXX
 * \UXXXXXXXX escapes, heredocs (<<EOF and the indented <<-EOF), integers
 * (decimal or 0x hex), floats, true/false, lists with an optional trailing
 * comma, and
 * #, // and block comments.  `${...}` is not interpolated.
 *
 * JSON: RFC 8259 with a single top-level object, duplicate keys rejected,
 * null rejected (it has no meaning in a configuration).  A JSON object
 * becomes an OBJECT node whose items have no labels; config.c maps nested
 * objects onto labelled blocks the way Nomad's JSON configuration does.
 *
 * Security property: input is untrusted.  Both parsers check every read
 * against the input length, bound nesting (KR_HCL_MAX_DEPTH) and input size
 * (KR_HCL_MAX_INPUT), reject NUL bytes and invalid UTF-8, and never echo a
 * string value in an error message: values may be credentials.  String
 * memory is wiped when the AST is freed.
 */
#ifndef KR_CONFIG_HCL_H
#define KR_CONFIG_HCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KR_HCL_MAX_DEPTH 64
#define KR_HCL_MAX_INPUT (1024 * 1024)

enum kr_hcl_type {
    KR_HCL_STRING,
    KR_HCL_INT,
    KR_HCL_FLOAT,
    KR_HCL_BOOL,
    KR_HCL_LIST,
    KR_HCL_OBJECT,
};

struct kr_hcl_item;

struct kr_hcl_node {
    enum kr_hcl_type type;
    int line;
    char *str;                  /* STRING: UTF-8, never contains NUL */
    int64_t i;                  /* INT */
    double f;                   /* FLOAT: always finite */
    bool b;                     /* BOOL */
    struct kr_hcl_node **elems; /* LIST, in source order */
    size_t n_elems;
    struct kr_hcl_item *items; /* OBJECT (a body), in source order */
    size_t n_items;
};

/* One `key = value` or `key "label"... { body }` inside a body. */
struct kr_hcl_item {
    char *key;
    char **labels; /* HCL block labels; JSON items never have labels */
    size_t n_labels;
    struct kr_hcl_node *value; /* an OBJECT when block is true */
    int line;                  /* line of the key */
    bool block;                /* written as a block, not with "=" */
};

/*
 * Parses HCL (kr_hcl_parse) or JSON (kr_hcl_parse_json) text of len bytes
 * (it need not be NUL-terminated) into an OBJECT node for the top-level
 * body.  Borrows name (used only in messages), text and errmsg.  On success
 * returns 0 and *out owned by the caller (kr_hcl_free); otherwise KR_EINVAL
 * or KR_ENOMEM with "name:line: message" in errmsg (KR_ERRMSG_SIZE bytes,
 * may be NULL) and *out untouched.  Reentrant.
 */
int kr_hcl_parse(const char *name, const char *text, size_t len,
                 struct kr_hcl_node **out, char *errmsg);
int kr_hcl_parse_json(const char *name, const char *text, size_t len,
                      struct kr_hcl_node **out, char *errmsg);

/* Wipes the strings of and frees a tree from the parsers (taking it);
 * NULL is a no-op.  Any thread. */
void kr_hcl_free(struct kr_hcl_node *node);

/* Returns a static name for messages: "string", "number", "bool", "list"
 * or "block".  Any thread. */
const char *kr_hcl_type_name(enum kr_hcl_type type);

/*
 * Copies s into out[cap] for quoting in a message: printable ASCII as is,
 * '"' and '\\' escaped, anything else as \xNN, cut with "..." when long.
 * Use it only for keys, labels and non-secret values.  Borrows s; any
 * thread.
 */
void kr_hcl_quote(char *out, size_t cap, const char *s);

#endif
