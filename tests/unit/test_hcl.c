/*
 * Unit tests for the HCL-subset and JSON parsers (src/config/hcl.c): every
 * syntax feature, line numbers on every node, exact error messages with
 * their lines, the nesting and size limits, every truncation of a full
 * document, and that no error message quotes a value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "config/hcl.h"

static struct kr_hcl_node *parse_ok(const char *text)
{
    struct kr_hcl_node *root = NULL;
    char errmsg[KR_ERRMSG_SIZE] = "";
    int rv = kr_hcl_parse("t.hcl", text, strlen(text), &root, errmsg);

    if (rv != 0)
        fail_msg("unexpected error: %s", errmsg);
    assert_non_null(root);
    assert_int_equal(root->type, KR_HCL_OBJECT);
    return root;
}

static struct kr_hcl_node *json_ok(const char *text)
{
    struct kr_hcl_node *root = NULL;
    char errmsg[KR_ERRMSG_SIZE] = "";
    int rv = kr_hcl_parse_json("t.json", text, strlen(text), &root, errmsg);

    if (rv != 0)
        fail_msg("unexpected error: %s", errmsg);
    assert_non_null(root);
    assert_int_equal(root->type, KR_HCL_OBJECT);
    return root;
}

/* Parses text of len bytes and expects exactly the message want. */
static void err_len(bool json, const char *text, size_t len, const char *want)
{
    struct kr_hcl_node *root = NULL;
    char errmsg[KR_ERRMSG_SIZE] = "";
    int rv;

    if (json)
        rv = kr_hcl_parse_json("t.json", text, len, &root, errmsg);
    else
        rv = kr_hcl_parse("t.hcl", text, len, &root, errmsg);
    assert_int_equal(rv, KR_EINVAL);
    assert_null(root);
    assert_string_equal(errmsg, want);
}

static void hcl_err(const char *text, const char *want)
{
    err_len(false, text, strlen(text), want);
}

static void json_err(const char *text, const char *want)
{
    err_len(true, text, strlen(text), want);
}

/* The nth item called key in obj. */
static const struct kr_hcl_item *get_nth(const struct kr_hcl_node *obj,
                                         const char *key, size_t nth)
{
    assert_int_equal(obj->type, KR_HCL_OBJECT);
    for (size_t i = 0; i < obj->n_items; i++) {
        if (strcmp(obj->items[i].key, key) == 0 && nth-- == 0)
            return &obj->items[i];
    }
    fail_msg("no item %s", key);
    return NULL;
}

static const struct kr_hcl_item *get(const struct kr_hcl_node *obj,
                                     const char *key)
{
    return get_nth(obj, key, 0);
}

static const char *get_str(const struct kr_hcl_node *obj, const char *key)
{
    const struct kr_hcl_item *it = get(obj, key);

    assert_int_equal(it->value->type, KR_HCL_STRING);
    return it->value->str;
}

static void test_attributes(void **state)
{
    struct kr_hcl_node *root = parse_ok("name = \"n1\"\n"
                                        "count = 42\n"
                                        "neg = -7\n"
                                        "hex = 0x1F\n"
                                        "ratio = 1.5\n"
                                        "exp = -2e3\n"
                                        "on = true\n"
                                        "off = false\n"
                                        "\"quoted key\" = \"v\"\n"
                                        "dotted.key-1 = 1\n"
                                        "max = 9223372036854775807\n"
                                        "min = -9223372036854775808\n"
                                        "a = 1 b = 2, c = 3\n");
    const struct kr_hcl_item *it;

    (void)state;
    assert_int_equal(root->n_items, 15);
    assert_string_equal(get_str(root, "name"), "n1");
    it = get(root, "count");
    assert_int_equal(it->value->type, KR_HCL_INT);
    assert_int_equal(it->value->i, 42);
    assert_int_equal(it->line, 2);
    assert_int_equal(it->value->line, 2);
    assert_false(it->block);
    assert_int_equal(get(root, "neg")->value->i, -7);
    assert_int_equal(get(root, "hex")->value->i, 31);
    it = get(root, "ratio");
    assert_int_equal(it->value->type, KR_HCL_FLOAT);
    assert_true(it->value->f == 1.5);
    assert_true(get(root, "exp")->value->f == -2000.0);
    it = get(root, "on");
    assert_int_equal(it->value->type, KR_HCL_BOOL);
    assert_true(it->value->b);
    assert_int_equal(it->line, 7);
    assert_false(get(root, "off")->value->b);
    assert_string_equal(get_str(root, "quoted key"), "v");
    assert_int_equal(get(root, "quoted key")->line, 9);
    assert_int_equal(get(root, "dotted.key-1")->value->i, 1);
    assert_true(get(root, "max")->value->i == INT64_MAX);
    assert_true(get(root, "min")->value->i == INT64_MIN);
    assert_int_equal(get(root, "c")->value->i, 3);
    assert_int_equal(get(root, "c")->line, 13);
    kr_hcl_free(root);
}

static void test_blocks(void **state)
{
    struct kr_hcl_node *root = parse_ok("server {\n"
                                        "  enabled = true\n"
                                        "}\n"
                                        "keyring \"aead\" {\n"
                                        "  active = true\n"
                                        "}\n"
                                        "keyring awskms { }\n"
                                        "keyring \"aead\" { name = \"b\" }\n"
                                        "a \"b\" \"c\" {}\n"
                                        "ports = { http = 1, rpc = 2 }\n"
                                        "outer {\n"
                                        "  inner {\n"
                                        "    deep = 1\n"
                                        "  }\n"
                                        "}\n");
    const struct kr_hcl_item *it;
    const struct kr_hcl_node *inner;

    (void)state;
    it = get(root, "server");
    assert_true(it->block);
    assert_int_equal(it->n_labels, 0);
    assert_int_equal(it->value->type, KR_HCL_OBJECT);
    assert_int_equal(it->value->line, 1);
    assert_int_equal(get(it->value, "enabled")->line, 2);

    it = get_nth(root, "keyring", 0);
    assert_int_equal(it->line, 4);
    assert_int_equal(it->n_labels, 1);
    assert_string_equal(it->labels[0], "aead");
    assert_true(get(it->value, "active")->value->b);
    it = get_nth(root, "keyring", 1);
    assert_int_equal(it->n_labels, 1);
    assert_string_equal(it->labels[0], "awskms");
    assert_int_equal(it->value->n_items, 0);
    it = get_nth(root, "keyring", 2);
    assert_int_equal(it->line, 8);
    assert_string_equal(get_str(it->value, "name"), "b");

    it = get(root, "a");
    assert_int_equal(it->n_labels, 2);
    assert_string_equal(it->labels[0], "b");
    assert_string_equal(it->labels[1], "c");

    it = get(root, "ports");
    assert_false(it->block);
    assert_int_equal(it->value->type, KR_HCL_OBJECT);
    assert_int_equal(get(it->value, "rpc")->value->i, 2);

    inner = get(get(root, "outer")->value, "inner")->value;
    assert_int_equal(inner->line, 12);
    assert_int_equal(get(inner, "deep")->line, 13);
    kr_hcl_free(root);
}

static void test_comments(void **state)
{
    struct kr_hcl_node *root = parse_ok("# hash comment\n"
                                        "// slash comment\n"
                                        "/* block\n"
                                        "   comment */ a = 1 # trailing\n"
                                        "b = /* inline */ 2 // trailing\n"
                                        "c = \"# not a comment // */\"\n"
                                        "/**/d = 3\n"
                                        "e = 4 # no newline at the end");

    (void)state;
    assert_int_equal(root->n_items, 5);
    assert_int_equal(get(root, "a")->line, 4);
    assert_int_equal(get(root, "b")->value->i, 2);
    assert_int_equal(get(root, "b")->line, 5);
    assert_string_equal(get_str(root, "c"), "# not a comment // */");
    assert_int_equal(get(root, "d")->line, 7);
    assert_int_equal(get(root, "e")->line, 8);
    kr_hcl_free(root);

    hcl_err("a = 1\n/* never\nclosed\n", "t.hcl:2: unterminated comment");
    hcl_err("a = 1\n/", "t.hcl:2: unexpected character '/'");
}

static void test_heredoc(void **state)
{
    struct kr_hcl_node *root = parse_ok("a = <<EOF\n"
                                        "hello\n"
                                        "  world \"quoted\" \\n\n"
                                        "EOF\n"
                                        "b = 1\n"
                                        "c = <<-EOT\n"
                                        "    indented\n"
                                        "\n"
                                        "      more\n"
                                        "    EOT\n"
                                        "d = <<-EOT\n"
                                        "    kept\n"
                                        "  less\n"
                                        "    EOT\n"
                                        "e = <<X\n"
                                        "X\n"
                                        "f = <<EOF\r\n"
                                        "crlf\r\n"
                                        "EOF\r\n"
                                        "g = [<<A\n"
                                        "in a list\n"
                                        "A\n"
                                        ", 2]\n"
                                        "h = <<EOF\n"
                                        "EOFX\n"
                                        " EOF\n"
                                        "EOF");
    const struct kr_hcl_node *g;

    (void)state;
    assert_string_equal(get_str(root, "a"), "hello\n  world \"quoted\" \\n\n");
    assert_int_equal(get(root, "a")->value->line, 1);
    assert_int_equal(get(root, "b")->line, 5);
    assert_string_equal(get_str(root, "c"), "indented\n\n  more\n");
    assert_int_equal(get(root, "c")->line, 6);
    assert_string_equal(get_str(root, "d"), "    kept\n  less\n");
    assert_int_equal(get(root, "d")->line, 11);
    assert_string_equal(get_str(root, "e"), "");
    assert_string_equal(get_str(root, "f"), "crlf\r\n");
    assert_int_equal(get(root, "f")->line, 17);
    g = get(root, "g")->value;
    assert_int_equal(g->n_elems, 2);
    assert_string_equal(g->elems[0]->str, "in a list\n");
    assert_int_equal(g->elems[1]->i, 2);
    assert_int_equal(g->elems[1]->line, 23);
    /* Only a line that is exactly the anchor ends the heredoc; <<
     * (unlike <<-) does not allow it to be indented. */
    assert_string_equal(get_str(root, "h"), "EOFX\n EOF\n");
    kr_hcl_free(root);
}

static void test_heredoc_errors(void **state)
{
    (void)state;
    hcl_err("x = 1\na = <<EOF\nnever closed\n",
            "t.hcl:2: unterminated heredoc");
    hcl_err("a = <<EOF\ntext\n  EOF\n", "t.hcl:1: unterminated heredoc");
    hcl_err("a = << EOF\nEOF\n",
            "t.hcl:1: expected a heredoc anchor after \"<<\"");
    hcl_err("a = <<EOF trailing\nEOF\n",
            "t.hcl:1: a heredoc anchor must end its line");
    hcl_err("a = <<EOF", "t.hcl:1: a heredoc anchor must end its line");
    hcl_err("a = <<", "t.hcl:1: expected a heredoc anchor after \"<<\"");
    hcl_err("a = <<EOF\nbell \a\nEOF\n",
            "t.hcl:1: control character in heredoc");
    hcl_err("a = <\n", "t.hcl:1: unexpected character '<'");
}

static void test_strings(void **state)
{
    struct kr_hcl_node *root = parse_ok("a = \"tab\\tnl\\ncr\\rq\\\"bs\\\\\"\n"
                                        "b = \"\\u00e9\\u20AC\"\n"
                                        "c = \"\\U0001F600\"\n"
                                        "d = \"raw \xc3\xa9 and\ttab\"\n"
                                        "e = \"\"\n"
                                        "f = \"${not.interpolated}\"\n");

    (void)state;
    assert_string_equal(get_str(root, "a"), "tab\tnl\ncr\rq\"bs\\");
    assert_string_equal(get_str(root, "b"), "\xc3\xa9\xe2\x82\xac");
    assert_string_equal(get_str(root, "c"), "\xf0\x9f\x98\x80");
    assert_string_equal(get_str(root, "d"), "raw \xc3\xa9 and\ttab");
    assert_string_equal(get_str(root, "e"), "");
    assert_string_equal(get_str(root, "f"), "${not.interpolated}");
    kr_hcl_free(root);
}

static void test_string_errors(void **state)
{
    (void)state;
    hcl_err("a = 1\nb = \"x\\qy\"\n",
            "t.hcl:2: invalid escape sequence in string");
    hcl_err("b = \"\\u0000\"", "t.hcl:1: \\u0000 is not allowed in a string");
    hcl_err("b = \"\\uD800\"", "t.hcl:1: invalid code point in a \\u escape");
    hcl_err("b = \"\\U00110000\"",
            "t.hcl:1: invalid code point in a \\U escape");
    hcl_err("b = \"\\u12\"", "t.hcl:1: invalid \\u escape in string");
    hcl_err("b = \"\\u12G4\"", "t.hcl:1: invalid \\u escape in string");
    hcl_err("a = 1\n\nb = \"open", "t.hcl:3: unterminated string");
    hcl_err("b = \"spans\nlines\"", "t.hcl:1: unterminated string");
    hcl_err("b = \"trailing backslash\\", "t.hcl:1: unterminated string");
    hcl_err("b = \"escaped newline\\\n\"", "t.hcl:1: unterminated string");
    hcl_err("b = \"bell\a\"", "t.hcl:1: control character in string");
}

static void test_lists(void **state)
{
    struct kr_hcl_node *root = parse_ok("a = [1, \"two\", true, [3], {k = "
                                        "\"v\"},]\n"
                                        "b = []\n"
                                        "c = [\n"
                                        "  \"x\", # comment\n"
                                        "  // another\n"
                                        "  \"y\"\n"
                                        "]\n"
                                        "d = [[]]\n");
    const struct kr_hcl_node *a, *c;

    (void)state;
    a = get(root, "a")->value;
    assert_int_equal(a->type, KR_HCL_LIST);
    assert_int_equal(a->n_elems, 5);
    assert_int_equal(a->elems[0]->i, 1);
    assert_string_equal(a->elems[1]->str, "two");
    assert_true(a->elems[2]->b);
    assert_int_equal(a->elems[3]->type, KR_HCL_LIST);
    assert_int_equal(a->elems[3]->elems[0]->i, 3);
    assert_string_equal(get_str(a->elems[4], "k"), "v");
    assert_int_equal(get(root, "b")->value->n_elems, 0);
    c = get(root, "c")->value;
    assert_int_equal(c->line, 3);
    assert_int_equal(c->n_elems, 2);
    assert_int_equal(c->elems[0]->line, 4);
    assert_int_equal(c->elems[1]->line, 6);
    assert_int_equal(get(root, "d")->value->elems[0]->n_elems, 0);
    kr_hcl_free(root);

    hcl_err("a = [1 2]", "t.hcl:1: expected \",\" or \"]\", got a number");
    hcl_err("a = [1,\n2,\n", "t.hcl:1: unterminated list");
    hcl_err("a = [,]", "t.hcl:1: expected a value, got \",\"");
    hcl_err("a = [1,,]", "t.hcl:1: expected a value, got \",\"");
}

static void test_duplicates(void **state)
{
    struct kr_hcl_node *root;

    (void)state;
    hcl_err("a = 1\nb = 2\na = 3\n",
            "t.hcl:3: duplicate key \"a\" (first on line 1)");
    hcl_err("x { }\nx = 1\n", "t.hcl:2: duplicate key \"x\" (first on line 1)");
    hcl_err("x = [1]\nx { }\n",
            "t.hcl:2: duplicate key \"x\" (first on line 1)");
    hcl_err("x {}\nx = {}\nx = \"s\"\n",
            "t.hcl:3: duplicate key \"x\" (first on line 1)");
    hcl_err("s {\n  a = 1\n  a = 2\n}\n",
            "t.hcl:3: duplicate key \"a\" (first on line 2)");
    /* The earliest duplicate is reported, whatever the key order. */
    hcl_err("z = 1\na = 1\nz = 2\na = 2\n",
            "t.hcl:3: duplicate key \"z\" (first on line 1)");
    /* Blocks repeat; the same key in different blocks is fine. */
    root = parse_ok("k \"x\" { a = 1 }\nk \"y\" { a = 2 }\nk { }\n"
                    "k = { a = 3 }\n");
    assert_int_equal(root->n_items, 4);
    kr_hcl_free(root);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    hcl_err("a = 1\nb =\n", "t.hcl:3: expected a value, got end of input");
    hcl_err("a = 1\n}\n", "t.hcl:2: unexpected \"}\"");
    hcl_err("a {\n  b = 1\n", "t.hcl:1: block is not closed");
    hcl_err("a = bare", "t.hcl:1: expected a value, got a bare word (quote "
                        "strings)");
    hcl_err("a = 1\nb = 10m\n", "t.hcl:2: invalid number (quote strings)");
    hcl_err("a = 012", "t.hcl:1: invalid number: leading zero");
    hcl_err("a = 1.", "t.hcl:1: invalid number (quote strings)");
    hcl_err("a = 1e", "t.hcl:1: invalid number (quote strings)");
    hcl_err("a = 0x", "t.hcl:1: invalid number (quote strings)");
    hcl_err("a = -", "t.hcl:1: invalid number (quote strings)");
    hcl_err("a = 1.2.3", "t.hcl:1: invalid number (quote strings)");
    hcl_err("a = 9223372036854775808", "t.hcl:1: number out of range");
    hcl_err("a = -9223372036854775809", "t.hcl:1: number out of range");
    hcl_err("a = 0x10000000000000000", "t.hcl:1: number out of range");
    hcl_err("a = 1e999", "t.hcl:1: number out of range");
    hcl_err("a = @", "t.hcl:1: unexpected character '@'");
    hcl_err("a = \x01", "t.hcl:1: unexpected byte 0x01");
    hcl_err("keyring \"x\" = 1",
            "t.hcl:1: expected \"{\" after a block label, got \"=\"");
    hcl_err("a\n", "t.hcl:2: expected \"=\" or \"{\" after a key, got end "
                   "of input");
    hcl_err("= 1", "t.hcl:1: expected a key, got \"=\"");
    hcl_err(", a = 1", "t.hcl:1: expected a key, got \",\"");
    hcl_err("1 = 1", "t.hcl:1: expected a key, got a number");
    hcl_err("a = 1,,", "t.hcl:1: expected a key, got \",\"");
    hcl_err("a = [}", "t.hcl:1: expected a value, got \"}\"");
    hcl_err("a { b = 1 ]", "t.hcl:1: expected a key, got \"]\"");
}

static void test_input_checks(void **state)
{
    static const char nul[] = "a = 1\nb = \"x\0y\"\n";
    static const char big_prefix[] = "a = \"";
    struct kr_hcl_node *root;
    char *big;

    (void)state;
    err_len(false, nul, sizeof(nul) - 1, "t.hcl:2: NUL byte in input");
    err_len(true, "{\n\"a\": \"\0\"}", 10, "t.json:2: NUL byte in input");
    hcl_err("a = 1\n\nb = \"\xc3\x28\"", "t.hcl:3: invalid UTF-8");
    hcl_err("a = \"\xed\xa0\x80\"", "t.hcl:1: invalid UTF-8"); /* surrogate */
    hcl_err("a = \"\xc0\xaf\"", "t.hcl:1: invalid UTF-8");     /* overlong */
    hcl_err("a = \"\xf4\x90\x80\x80\"", "t.hcl:1: invalid UTF-8"); /* > max */
    hcl_err("a = \"\xe2\x82\"", "t.hcl:1: invalid UTF-8");         /* short */
    json_err("{\"a\": \"\xff\"}", "t.json:1: invalid UTF-8");

    /* A UTF-8 byte order mark is skipped. */
    root = parse_ok("\xef\xbb\xbf"
                    "a = 1");
    assert_int_equal(get(root, "a")->value->i, 1);
    kr_hcl_free(root);
    root = json_ok("\xef\xbb\xbf{\"a\": 1}");
    kr_hcl_free(root);

    /* Empty HCL is an empty body. */
    root = parse_ok("");
    assert_int_equal(root->n_items, 0);
    kr_hcl_free(root);
    root = parse_ok("  # only a comment\n\n");
    assert_int_equal(root->n_items, 0);
    kr_hcl_free(root);

    big = malloc(KR_HCL_MAX_INPUT + 2);
    assert_non_null(big);
    memset(big, 'x', KR_HCL_MAX_INPUT + 1);
    memcpy(big, big_prefix, strlen(big_prefix));
    big[KR_HCL_MAX_INPUT] = '"';
    err_len(false, big, KR_HCL_MAX_INPUT + 1,
            "t.hcl:1: input is larger than 1048576 bytes");
    err_len(true, big, KR_HCL_MAX_INPUT + 1,
            "t.json:1: input is larger than 1048576 bytes");
    /* Exactly at the limit is accepted. */
    big[KR_HCL_MAX_INPUT - 1] = '"';
    assert_int_equal(kr_hcl_parse("t.hcl", big, KR_HCL_MAX_INPUT, &root, NULL),
                     0);
    assert_int_equal(strlen(get_str(root, "a")), KR_HCL_MAX_INPUT - 6);
    kr_hcl_free(root);
    free(big);
}

/* head, depth times open, inner, depth times close, tail. */
static char *nested(const char *open, const char *close, const char *head,
                    const char *inner, const char *tail, int depth)
{
    size_t n = strlen(head) + strlen(inner) + strlen(tail) +
               (size_t)depth * (strlen(open) + strlen(close)) + 1;
    char *s = malloc(n);

    assert_non_null(s);
    strcpy(s, head);
    for (int i = 0; i < depth; i++)
        strcat(s, open);
    strcat(s, inner);
    for (int i = 0; i < depth; i++)
        strcat(s, close);
    strcat(s, tail);
    return s;
}

static void check_depth(bool json, const char *open, const char *close,
                        const char *head, const char *inner, const char *tail)
{
    struct kr_hcl_node *root = NULL;
    char errmsg[KR_ERRMSG_SIZE];
    char *ok = nested(open, close, head, inner, tail, KR_HCL_MAX_DEPTH);
    char *deep = nested(open, close, head, inner, tail, KR_HCL_MAX_DEPTH + 1);
    int rv;

    rv = json ? kr_hcl_parse_json("d", ok, strlen(ok), &root, errmsg)
              : kr_hcl_parse("d", ok, strlen(ok), &root, errmsg);
    if (rv != 0)
        fail_msg("depth %d rejected: %s", KR_HCL_MAX_DEPTH, errmsg);
    kr_hcl_free(root);
    root = NULL;
    rv = json ? kr_hcl_parse_json("d", deep, strlen(deep), &root, errmsg)
              : kr_hcl_parse("d", deep, strlen(deep), &root, errmsg);
    assert_int_equal(rv, KR_EINVAL);
    assert_null(root);
    assert_string_equal(errmsg, "d:1: nesting deeper than 64 levels");
    free(ok);
    free(deep);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    check_depth(false, "a {", "}", "", "", "");
    check_depth(false, "[", "]", "a = ", "", "");
    check_depth(false, "a = {", "}", "", "", "");
    check_depth(true, "{\"a\":", "}", "{\"x\":1,\"y\":", "1", "}");
    check_depth(true, "[", "]", "{\"x\":", "", "}");
}

/*
 * Every prefix of a document using every feature either parses or fails
 * with "name:line: ..." where line is within the document.
 */
static void check_prefixes(bool json, const char *doc)
{
    const char *name = json ? "t.json" : "t.hcl";
    size_t len = strlen(doc);
    int lines = 1, failures = 0;

    for (size_t i = 0; i < len; i++)
        lines += doc[i] == '\n';
    for (size_t n = 0; n <= len; n++) {
        struct kr_hcl_node *root = NULL;
        char errmsg[KR_ERRMSG_SIZE] = "";
        /* A separate allocation of exactly n bytes lets ASan catch any
         * read past the end. */
        char *copy = malloc(n + 1);
        int rv, line = 0;

        assert_non_null(copy);
        memcpy(copy, doc, n);
        rv = json ? kr_hcl_parse_json(name, n ? copy : NULL, n, &root, errmsg)
                  : kr_hcl_parse(name, n ? copy : NULL, n, &root, errmsg);
        if (n == len && rv != 0)
            fail_msg("full document rejected: %s", errmsg);
        if (rv == 0) {
            assert_non_null(root);
        } else {
            failures++;
            assert_int_equal(rv, KR_EINVAL);
            assert_null(root);
            assert_int_equal(strncmp(errmsg, name, strlen(name)), 0);
            assert_int_equal(sscanf(errmsg + strlen(name), ":%d:", &line), 1);
            assert_true(line >= 1 && line <= lines);
        }
        kr_hcl_free(root);
        free(copy);
    }
    assert_true(failures > (int)len / 2);
}

static const char full_hcl[] = "# agent\n"
                               "name = \"node-1\"\n"
                               "ports { http = 4656, rpc = 0x1251 }\n"
                               "server {\n"
                               "  enabled = true // on\n"
                               "  ratio = -1.5e2\n"
                               "  /* block */\n"
                               "}\n"
                               "keyring \"awskms\" {\n"
                               "  active = false\n"
                               "  kms_key_id = \"alias/\\u00e9\\t\"\n"
                               "  policy = <<-EOT\n"
                               "    {\"a\": 1}\n"
                               "    EOT\n"
                               "}\n"
                               "list = [1, \"two\", [true], { k = \"v\" },]\n"
                               "obj = { x = 1 }\n";

static const char full_json[] =
    "{\n"
    "  \"name\": \"node-1\",\n"
    "  \"ports\": {\"http\": 4656, \"rpc\": -0.5e+1},\n"
    "  \"server\": [{\"enabled\": true}],\n"
    "  \"keyring\": {\"aead\": {\"active\": false, \"k\": "
    "\"\\ud83d\\ude00\"}},\n"
    "  \"list\": [1, \"two\", [false], {}, []]\n"
    "}\n";

static void test_truncated(void **state)
{
    struct kr_hcl_node *root;

    (void)state;
    check_prefixes(false, full_hcl);
    check_prefixes(true, full_json);

    /* Spot checks that truncations fail where they must. */
    root = parse_ok(full_hcl);
    assert_string_equal(get_str(get(root, "keyring")->value, "policy"),
                        "{\"a\": 1}\n");
    assert_int_equal(get(get(root, "ports")->value, "rpc")->value->i, 4689);
    kr_hcl_free(root);
    err_len(false, full_hcl, strstr(full_hcl, "  ratio") - full_hcl,
            "t.hcl:4: block is not closed");
    err_len(false, full_hcl, strstr(full_hcl, "EOT\n}") - full_hcl,
            "t.hcl:12: unterminated heredoc");
    err_len(true, full_json, strlen(full_json) - 3,
            "t.json:6: expected \",\" or \"}\", got end of input");
}

static void test_no_value_in_errors(void **state)
{
    static const char *const bad[] = {
        "a = \"s3cr3t\" \"x\"",
        "a = s3cr3t",
        "a = \"s3cr3t\\q\"",
        "a = 12345s3cr3t",
        "a = [\"s3cr3t\" \"s3cr3t\"]",
        "a = \"s3cr3t\n",
        "a \"s3cr3t\" = 1",
        "a = <<s3cr3t\n",
        "a = \"s3cr3t\" }",
        "a = \"s3cr3t\"\nb = 1 @",
        "a = 99999999999999999999",
    };
    static const char *const bad_json[] = {
        "{\"a\": \"s3cr3t\" \"b\"}",      "{\"a\": s3cr3t}",
        "{\"a\": \"s3cr3t\\q\"}",         "{\"a\": [\"s3cr3t\" 1]}",
        "{\"a\": \"s3cr3t\"} \"s3cr3t\"", "{\"a\": \"s3cr3t\"",
        "{\"a\": 99999999999999999999}",
    };
    char errmsg[KR_ERRMSG_SIZE];
    struct kr_hcl_node *root = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errmsg[0] = '\0';
        assert_int_equal(
            kr_hcl_parse("t.hcl", bad[i], strlen(bad[i]), &root, errmsg),
            KR_EINVAL);
        assert_int_equal(strncmp(errmsg, "t.hcl:", 6), 0);
        if (strstr(errmsg, "s3cr3t") || strstr(errmsg, "99999"))
            fail_msg("value echoed: %s", errmsg);
    }
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        errmsg[0] = '\0';
        assert_int_equal(kr_hcl_parse_json("t.json", bad_json[i],
                                           strlen(bad_json[i]), &root, errmsg),
                         KR_EINVAL);
        assert_int_equal(strncmp(errmsg, "t.json:1: ", 10), 0);
        if (strstr(errmsg, "s3cr3t") || strstr(errmsg, "99999"))
            fail_msg("value echoed: %s", errmsg);
    }
}

static void test_json_values(void **state)
{
    struct kr_hcl_node *root = json_ok("{\n"
                                       "  \"s\": \"str\",\n"
                                       "  \"i\": -42,\n"
                                       "  \"f\": 0.25,\n"
                                       "  \"e\": 1E+2,\n"
                                       "  \"t\": true,\n"
                                       "  \"n\": false,\n"
                                       "  \"o\": {\n"
                                       "    \"inner\": [1,\n"
                                       "      {\"x\": \"y\"}]\n"
                                       "  },\n"
                                       "  \"empty\": {},\n"
                                       "  \"z\": 0\n"
                                       "}\n");
    const struct kr_hcl_item *it;
    const struct kr_hcl_node *inner;

    (void)state;
    assert_int_equal(root->n_items, 9);
    assert_int_equal(root->line, 1);
    it = get(root, "s");
    assert_int_equal(it->line, 2);
    assert_int_equal(it->n_labels, 0);
    assert_false(it->block);
    assert_string_equal(it->value->str, "str");
    it = get(root, "i");
    assert_int_equal(it->value->type, KR_HCL_INT);
    assert_int_equal(it->value->i, -42);
    it = get(root, "f");
    assert_int_equal(it->value->type, KR_HCL_FLOAT);
    assert_true(it->value->f == 0.25);
    assert_true(get(root, "e")->value->f == 100.0);
    assert_true(get(root, "t")->value->b);
    assert_int_equal(get(root, "n")->value->type, KR_HCL_BOOL);
    assert_false(get(root, "n")->value->b);
    it = get(root, "o");
    assert_int_equal(it->value->type, KR_HCL_OBJECT);
    assert_int_equal(it->line, 8);
    inner = get(it->value, "inner")->value;
    assert_int_equal(inner->type, KR_HCL_LIST);
    assert_int_equal(inner->line, 9);
    assert_int_equal(inner->elems[1]->line, 10);
    assert_string_equal(get_str(inner->elems[1], "x"), "y");
    assert_int_equal(get(root, "empty")->value->n_items, 0);
    assert_int_equal(get(root, "z")->line, 13);
    kr_hcl_free(root);

    root = json_ok("{}");
    assert_int_equal(root->n_items, 0);
    kr_hcl_free(root);
}

static void test_json_strings(void **state)
{
    struct kr_hcl_node *root =
        json_ok("{\"a\": \"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t\","
                " \"u\": \"\\u00e9\\u20ac\","
                " \"p\": \"\\ud83d\\ude00\","
                " \"k\\u0065y\": \"raw \xc3\xa9\"}");

    (void)state;
    assert_string_equal(get_str(root, "a"), "q\"b\\s/b\bf\fn\nr\rt\t");
    assert_string_equal(get_str(root, "u"), "\xc3\xa9\xe2\x82\xac");
    assert_string_equal(get_str(root, "p"), "\xf0\x9f\x98\x80");
    assert_string_equal(get_str(root, "key"), "raw \xc3\xa9");
    kr_hcl_free(root);

    json_err("{\"a\": \"\\ud83d\"}",
             "t.json:1: invalid code point in a \\u escape");
    json_err("{\"a\": \"\\ude00\"}",
             "t.json:1: invalid code point in a \\u escape");
    json_err("{\"a\": \"\\ud83d\\u0041\"}",
             "t.json:1: invalid code point in a \\u escape");
    json_err("{\"a\": \"\\u0000\"}",
             "t.json:1: \\u0000 is not allowed in a string");
    json_err("{\"a\": \"\\x41\"}",
             "t.json:1: invalid escape sequence in string");
    json_err("{\"a\": \"\\U0001F600\"}",
             "t.json:1: invalid escape sequence in string");
    json_err("{\"a\": \"tab\there\"}", "t.json:1: control character in string");
    json_err("{\n\"a\": \"open\n\"}", "t.json:2: unterminated string");
    json_err("{\"a\": \"\\u00\"}", "t.json:1: invalid \\u escape in string");
}

static void test_json_errors(void **state)
{
    (void)state;
    json_err("{\n  \"a\": 1,\n  \"b\": 2,\n  \"a\": 3\n}",
             "t.json:4: duplicate key \"a\" (first on line 2)");
    json_err("{\"o\": {\"k\": 1, \"k\": 1}}",
             "t.json:1: duplicate key \"k\" (first on line 1)");
    json_err("{\n\"a\": null}", "t.json:2: null is not supported");
    json_err("{\"a\": 1,}", "t.json:1: expected a string key, got '}'");
    json_err("{\"a\": [1,]}", "t.json:1: expected a value, got ']'");
    json_err("[1]", "t.json:1: expected a JSON object, got '['");
    json_err("\"s\"", "t.json:1: expected a JSON object, got '\"'");
    json_err("", "t.json:1: expected a JSON object, got end of input");
    json_err("  \n ", "t.json:2: expected a JSON object, got end of input");
    json_err("{}\n{}", "t.json:2: unexpected data after the JSON object");
    json_err("{\"a\" 1}", "t.json:1: expected \":\" after a key");
    json_err("{\"a\": 1 \"b\": 2}",
             "t.json:1: expected \",\" or \"}\", got '\"'");
    json_err("{a: 1}", "t.json:1: expected a string key");
    json_err("{\"a\": tru}", "t.json:1: expected a value");
    json_err("{\"a\": True}", "t.json:1: expected a value");
    json_err("{\"a\": 01}", "t.json:1: invalid number: leading zero");
    json_err("{\"a\": 1.}", "t.json:1: invalid number");
    json_err("{\"a\": -}", "t.json:1: invalid number");
    json_err("{\"a\": +1}", "t.json:1: expected a value, got '+'");
    json_err("{\"a\": .5}", "t.json:1: expected a value");
    json_err("{\"a\": 1e}", "t.json:1: invalid number");
    json_err("{\"a\": 0x10}", "t.json:1: invalid number");
    json_err("{\"a\": 1e400}", "t.json:1: number out of range");
    json_err("{\"a\": NaN}", "t.json:1: expected a value");
    json_err("{\"a\": 1} // comment",
             "t.json:1: unexpected data after the JSON object");
    json_err("{\"a\": {\n\"b\": 1\n", "t.json:3: expected \",\" or \"}\", got "
                                      "end of input");
    json_err("{\"a\":", "t.json:1: expected a value, got end of input");
    json_err("{\"a\"",
             "t.json:1: expected \":\" after a key, got end of input");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_heredoc),
        cmocka_unit_test(test_heredoc_errors),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_string_errors),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_input_checks),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_no_value_in_errors),
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_json_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
