/*
 * Agent configuration: maps the AST from hcl.c onto struct kr_config.
 *
 * The schema is data: each block is a table of keys {name, kind, offset,
 * default, dev-mode default, flags, range}, and a nested block is a key of
 * kind K_BLOCK pointing at another table.  One table of kind operations
 * (set from the AST, set the default, check at finish, free) serves every
 * key, so adding `tls { }` later means a struct, a table and one line in
 * top_keys.  Defaults are written as a file would write them ("720h") and
 * go through the same parsers.
 *
 * Invariants: every string field is NULL or owned by the struct, before
 * and after any merge, successful or not, so kr_config_free() is always
 * safe.  A failed merge may leave part of a file applied; callers treat
 * any error as fatal.  Keyring parameter values may be credentials: no
 * message ever includes one (messages name the key only), and they are
 * wiped before being freed.
 */
#include "config/config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/time.h"
#include "config/hcl.h"

#define PATH_SIZE 128 /* "block.key" in messages */
#define QUOTE_SIZE 80 /* a quoted key or value in messages */
#define STR_(x) #x
#define STR(x) STR_(x) /* a macro's value as a string */

/* Provider types a keyring block may name (its label). */
static const char *const providers[] = {
    "aead", "awskms", "azurekeyvault", "gcpckms", "transit", "pkcs11",
};
#define PROVIDER_LIST "aead, awskms, azurekeyvault, gcpckms, transit, pkcs11"

struct ctx {
    struct kr_config *cfg;
    const char *name; /* file for messages; NULL outside a merge */
    char *errmsg;
};

enum kind {
    K_STRING,    /* char *, owned */
    K_BOOL,      /* bool */
    K_INT,       /* int within [min, max] */
    K_DURATION,  /* int64_t ns > 0, from a Go duration string */
    K_LOG_LEVEL, /* enum kr_log_level */
    K_BLOCK,     /* a nested block: another table */
    K_KEYRINGS,  /* the labelled `keyring "<type>"` blocks (top level) */
    K_STRINGS,   /* struct kr_config_strings, from a list of strings */
};

#define F_REQUIRED 0x1u            /* must be set by kr_config_finish */
#define F_REQUIRED_UNLESS_DEV 0x2u /* the same, outside dev mode */
#define F_NONEMPTY 0x4u            /* "" is rejected */
#define F_ZERO_OK 0x8u             /* a duration of 0 is allowed */

struct block;

/*
 * One key.  offset locates the field in the struct that holds the block's
 * values: struct kr_config for the top level and for `ports` (whose fields
 * are flat in struct kr_config), struct kr_config_server for `server`.
 */
struct key {
    const char *name;
    enum kind kind;
    size_t offset;
    const char *def;     /* default, written as in a file; NULL: none */
    const char *dev_def; /* default in dev mode; NULL: def */
    unsigned flags;
    int64_t min, max;          /* K_INT */
    const struct block *block; /* K_BLOCK */
};

struct block {
    const struct key *keys;
    size_t n_keys;
};

struct kind_ops {
    const char *what; /* for "expected %s, got ..." */
    int (*set)(struct ctx *c, const struct key *k, void *field,
               const struct kr_hcl_item *it, const char *path);
    int (*init)(struct ctx *c, const struct key *k, void *field);
    int (*finish)(struct ctx *c, const struct key *k, void *field,
                  const char *path);
    void (*fini)(struct ctx *c, const struct key *k, void *field);
};

static int apply_body(struct ctx *c, const struct block *b, void *base,
                      const struct kr_hcl_node *obj, const char *prefix);
static int init_body(struct ctx *c, const struct block *b, void *base);
static int finish_body(struct ctx *c, const struct block *b, void *base,
                       const char *prefix);
static void fini_body(struct ctx *c, const struct block *b, void *base);

__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, int line,
                                                      const char *fmt, ...)
{
    char msg[KR_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->name == NULL)
        return kr_errf(c->errmsg, KR_EINVAL, "%s", msg);
    return kr_errf(c->errmsg, KR_EINVAL, "%s:%d: %s", c->name, line, msg);
}

static int nomem(struct ctx *c)
{
    return kr_errf(c->errmsg, KR_ENOMEM, "out of memory");
}

__attribute__((format(printf, 1, 2))) static char *strfmt(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static const char *default_text(const struct ctx *c, const struct key *k)
{
    if (c->cfg->dev && k->dev_def != NULL)
        return k->dev_def;
    return k->def;
}

static int expect(struct ctx *c, const struct key *k,
                  const struct kr_hcl_node *v, const char *path);

/* Scalars */

static int set_string(struct ctx *c, const struct key *k, void *field,
                      const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    char **dst = field;
    char *copy;
    int rv = 0;

    if (v->type != KR_HCL_STRING) {
        rv = expect(c, k, v, path);
    } else if ((k->flags & F_NONEMPTY) && v->str[0] == '\0') {
        rv = fail(c, v->line, "%s: must not be empty", path);
    } else {
        copy = strdup(v->str);
        if (copy == NULL) {
            rv = nomem(c);
        } else {
            free(*dst);
            *dst = copy;
        }
    }
    return rv;
}

static int init_string(struct ctx *c, const struct key *k, void *field)
{
    const char *def = default_text(c, k);
    char **dst = field;
    int rv = 0;

    if (def != NULL) {
        *dst = strdup(def);
        if (*dst == NULL)
            rv = nomem(c);
    }
    return rv;
}

static int finish_string(struct ctx *c, const struct key *k, void *field,
                         const char *path)
{
    const char *s = *(char **)field;
    bool required = (k->flags & F_REQUIRED) ||
                    ((k->flags & F_REQUIRED_UNLESS_DEV) && !c->cfg->dev);
    int rv = 0;

    if (s == NULL && required)
        rv = fail(c, 0, "%s is required", path);
    else if (s != NULL && s[0] == '\0' && (k->flags & F_NONEMPTY))
        rv = fail(c, 0, "%s: must not be empty", path);
    return rv;
}

static void fini_string(struct ctx *c, const struct key *k, void *field)
{
    char **s = field;

    (void)c;
    (void)k;
    free(*s);
    *s = NULL;
}

/* A later file's list replaces an earlier one, like any other value. */
static int set_strings(struct ctx *c, const struct key *k, void *field,
                       const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    struct kr_config_strings *dst = field, fresh = {NULL, 0};
    int rv = 0;

    if (v->type != KR_HCL_LIST)
        return expect(c, k, v, path);
    fresh.v = calloc(v->n_elems + 1, sizeof(char *));
    if (fresh.v == NULL)
        return nomem(c);
    for (size_t i = 0; rv == 0 && i < v->n_elems; i++) {
        const struct kr_hcl_node *e = v->elems[i];
        if (e->type != KR_HCL_STRING || e->str[0] == '\0') {
            rv = fail(c, e->line, "%s: expected a list of non-empty strings",
                      path);
        } else {
            fresh.v[i] = strdup(e->str);
            if (fresh.v[i] == NULL)
                rv = nomem(c);
            else
                fresh.n = i + 1;
        }
    }
    if (rv != 0) {
        for (size_t i = 0; i < fresh.n; i++)
            free(fresh.v[i]);
        free(fresh.v);
        return rv;
    }
    for (size_t i = 0; i < dst->n; i++)
        free(dst->v[i]);
    free(dst->v);
    *dst = fresh;
    return 0;
}

static void fini_strings(struct ctx *c, const struct key *k, void *field)
{
    struct kr_config_strings *s = field;

    (void)c;
    (void)k;
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int set_bool(struct ctx *c, const struct key *k, void *field,
                    const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    int rv = 0;

    if (v->type != KR_HCL_BOOL)
        rv = expect(c, k, v, path);
    else
        *(bool *)field = v->b;
    return rv;
}

static int init_bool(struct ctx *c, const struct key *k, void *field)
{
    const char *def = default_text(c, k);

    if (def != NULL)
        *(bool *)field = strcmp(def, "true") == 0;
    return 0;
}

static int check_int(struct ctx *c, int line, const struct key *k, int64_t v,
                     const char *path)
{
    int rv = 0;

    if (v >= k->min && v <= k->max)
        rv = 0;
    else if (k->max == INT_MAX)
        rv = fail(c, line, "%s: must be at least %" PRId64 ", got %" PRId64,
                  path, k->min, v);
    else
        rv = fail(c, line,
                  "%s: must be between %" PRId64 " and %" PRId64
                  ", got %" PRId64,
                  path, k->min, k->max, v);
    return rv;
}

static int set_int(struct ctx *c, const struct key *k, void *field,
                   const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    int rv;

    if (v->type == KR_HCL_FLOAT)
        rv =
            fail(c, v->line, "%s: expected a whole number, got %g", path, v->f);
    else if (v->type != KR_HCL_INT)
        rv = expect(c, k, v, path);
    else
        rv = check_int(c, v->line, k, v->i, path);
    if (rv == 0)
        *(int *)field = (int)v->i;
    return rv;
}

static int init_int(struct ctx *c, const struct key *k, void *field)
{
    const char *def = default_text(c, k);

    if (def != NULL)
        *(int *)field = (int)strtol(def, NULL, 10);
    return 0;
}

static int finish_int(struct ctx *c, const struct key *k, void *field,
                      const char *path)
{
    return check_int(c, 0, k, *(int *)field, path);
}

static int set_duration(struct ctx *c, const struct key *k, void *field,
                        const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    char q[QUOTE_SIZE];
    int64_t ns = 0;
    int rv = 0;

    if (v->type != KR_HCL_STRING) {
        rv = expect(c, k, v, path);
        goto out;
    }
    kr_hcl_quote(q, sizeof(q), v->str);
    if (kr_duration_parse(v->str, &ns) != 0)
        rv = fail(c, v->line, "%s: invalid duration \"%s\"", path, q);
    else if (ns < 0 || (ns == 0 && !(k->flags & F_ZERO_OK)))
        rv = fail(c, v->line, "%s: invalid duration \"%s\": must be %s", path,
                  q, k->flags & F_ZERO_OK ? "0 or more" : "positive");
    else
        *(int64_t *)field = ns;
out:
    return rv;
}

static int init_duration(struct ctx *c, const struct key *k, void *field)
{
    const char *def = default_text(c, k);

    if (def != NULL)
        KR_BUG_ON(kr_duration_parse(def, (int64_t *)field) != 0);
    return 0;
}

static int finish_duration(struct ctx *c, const struct key *k, void *field,
                           const char *path)
{
    int rv = 0;

    if (*(int64_t *)field < 0 ||
        (*(int64_t *)field == 0 && !(k->flags & F_ZERO_OK)))
        rv = fail(c, 0, "%s: must be a positive duration", path);
    return rv;
}

static int set_log_level(struct ctx *c, const struct key *k, void *field,
                         const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    char q[QUOTE_SIZE];
    int rv = 0;

    if (v->type != KR_HCL_STRING) {
        rv = expect(c, k, v, path);
    } else if (kr_log_level_parse(v->str, field) != 0) {
        kr_hcl_quote(q, sizeof(q), v->str);
        rv = fail(c, v->line,
                  "%s: invalid log level \"%s\" (valid: trace, debug, info, "
                  "warn, error)",
                  path, q);
    }
    return rv;
}

static int init_log_level(struct ctx *c, const struct key *k, void *field)
{
    const char *def = default_text(c, k);

    if (def != NULL)
        KR_BUG_ON(kr_log_level_parse(def, field) != 0);
    return 0;
}

static int finish_log_level(struct ctx *c, const struct key *k, void *field,
                            const char *path)
{
    enum kr_log_level l = *(enum kr_log_level *)field;
    int rv = 0;

    (void)k;
    if (l < KR_LOG_TRACE || l > KR_LOG_ERROR)
        rv = fail(c, 0, "%s: invalid log level", path);
    return rv;
}

/* Nested blocks */

/*
 * `name { }`, `name = { }`, and, from JSON, a list of such objects (Nomad
 * accepts both JSON shapes).  Repeated blocks merge: later keys win.
 */
static int set_block(struct ctx *c, const struct key *k, void *field,
                     const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    int rv = 0;

    if (it->n_labels > 0) {
        rv = fail(c, it->line, "%s: this block takes no labels", path);
    } else if (v->type == KR_HCL_OBJECT) {
        rv = apply_body(c, k->block, field, v, path);
    } else if (v->type == KR_HCL_LIST) {
        for (size_t i = 0; rv == 0 && i < v->n_elems; i++) {
            if (v->elems[i]->type != KR_HCL_OBJECT)
                rv = expect(c, k, v->elems[i], path);
            else
                rv = apply_body(c, k->block, field, v->elems[i], path);
        }
    } else {
        rv = expect(c, k, v, path);
    }
    return rv;
}

static int init_block(struct ctx *c, const struct key *k, void *field)
{
    return init_body(c, k->block, field);
}

static int finish_block(struct ctx *c, const struct key *k, void *field,
                        const char *path)
{
    return finish_body(c, k->block, field, path);
}

static void fini_block(struct ctx *c, const struct key *k, void *field)
{
    fini_body(c, k->block, field);
}

/* Keyring blocks */

static bool provider_known(const char *type)
{
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++) {
        if (strcmp(type, providers[i]) == 0)
            return true;
    }
    return false;
}

static void keyring_clear(struct kr_config_keyring *k)
{
    free(k->type);
    free(k->name);
    free(k->id);
    free(k->origin);
    for (size_t i = 0; i < k->n_params; i++) {
        free(k->params[i].key);
        wipe_free(k->params[i].value);
    }
    free(k->params);
    memset(k, 0, sizeof(*k));
}

static struct kr_config_param *find_param(struct kr_config_keyring *k,
                                          const char *key)
{
    for (size_t i = 0; i < k->n_params; i++) {
        if (strcmp(k->params[i].key, key) == 0)
            return &k->params[i];
    }
    return NULL;
}

/* Sets the id from type and name; returns 0 or KR_ENOMEM. */
static int keyring_set_id(struct kr_config_keyring *k)
{
    free(k->id);
    if (k->name != NULL && k->name[0] != '\0')
        k->id = strfmt("%s.%s", k->type, k->name);
    else
        k->id = strdup(k->type);
    return k->id == NULL ? KR_ENOMEM : 0;
}

/*
 * Reads the body of one `keyring "<type>"` block into a fresh *out.
 * Messages name keys, never parameter values.
 */
static int read_keyring(struct ctx *c, const char *type,
                        const struct kr_hcl_node *body, int line,
                        struct kr_config_keyring *out)
{
    struct kr_config_keyring k;
    char q[QUOTE_SIZE], kq[QUOTE_SIZE];
    int rv = 0;

    memset(&k, 0, sizeof(k));
    kr_hcl_quote(q, sizeof(q), type);
    if (!provider_known(type)) {
        rv = fail(c, line, "keyring \"%s\": unknown provider type (valid: %s)",
                  q, PROVIDER_LIST);
        goto out;
    }
    if (body->type != KR_HCL_OBJECT) {
        rv = fail(c, body->line, "keyring \"%s\": expected a block, got %s", q,
                  kr_hcl_type_name(body->type));
        goto out;
    }
    k.type = strdup(type);
    k.params = calloc(body->n_items + 1, sizeof(*k.params));
    if (k.type == NULL || k.params == NULL) {
        rv = nomem(c);
        goto out;
    }
    /* The parsers reject duplicate attributes, so keys are unique here. */
    for (size_t i = 0; i < body->n_items; i++) {
        const struct kr_hcl_item *it = &body->items[i];
        const struct kr_hcl_node *v = it->value;
        struct kr_config_param *p = &k.params[k.n_params];

        kr_hcl_quote(kq, sizeof(kq), it->key);
        if (strcmp(it->key, "active") == 0) {
            if (v->type != KR_HCL_BOOL) {
                rv = fail(c, v->line,
                          "keyring \"%s\": active: expected a bool, got %s", q,
                          kr_hcl_type_name(v->type));
                goto out;
            }
            k.active = v->b;
        } else if (v->type != KR_HCL_STRING) {
            rv = fail(c, v->line,
                      "keyring \"%s\": %s: expected a string, got %s%s", q, kq,
                      kr_hcl_type_name(v->type),
                      v->type == KR_HCL_BOOL
                          ? " (write booleans as strings, \"true\")"
                          : "");
            goto out;
        } else if (strcmp(it->key, "name") == 0) {
            free(k.name);
            k.name = strdup(v->str);
            if (k.name == NULL) {
                rv = nomem(c);
                goto out;
            }
        } else {
            p->key = strdup(it->key);
            p->value = strdup(v->str);
            k.n_params++;
            if (p->key == NULL || p->value == NULL) {
                rv = nomem(c);
                goto out;
            }
        }
    }
    if (k.name == NULL)
        k.name = strdup("");
    k.origin = strfmt("%s:%d", c->name, line);
    if (k.name == NULL || k.origin == NULL || keyring_set_id(&k) != 0) {
        rv = nomem(c);
        goto out;
    }
    *out = k;
    memset(&k, 0, sizeof(k));
out:
    keyring_clear(&k);
    return rv;
}

/*
 * Adds *k to the configuration, taking its contents (*k is cleared).  A
 * block with the same (type, name) as an earlier one merges into it as
 * Nomad's KEKProviderConfig.Merge does: the later `active` wins, and
 * parameters are added or overridden.
 */
static int merge_keyring(struct ctx *c, struct kr_config_keyring *k)
{
    struct kr_config *cfg = c->cfg;
    struct kr_config_keyring *dst = NULL, *tmp;
    struct kr_config_param *ptmp;
    size_t total;
    int rv = 0;

    for (size_t i = 0; i < cfg->n_keyrings && dst == NULL; i++) {
        if (strcmp(cfg->keyrings[i].type, k->type) == 0 &&
            strcmp(cfg->keyrings[i].name, k->name) == 0)
            dst = &cfg->keyrings[i];
    }
    if (dst == NULL) {
        tmp = realloc(cfg->keyrings,
                      (cfg->n_keyrings + 1) * sizeof(*cfg->keyrings));
        if (tmp == NULL) {
            rv = nomem(c);
            goto out;
        }
        cfg->keyrings = tmp;
        cfg->keyrings[cfg->n_keyrings++] = *k;
        memset(k, 0, sizeof(*k));
        goto out;
    }
    /* Allocate first, so nothing below can fail half way. */
    total = dst->n_params + k->n_params;
    ptmp = realloc(dst->params, (total + 1) * sizeof(*dst->params));
    if (ptmp == NULL) {
        rv = nomem(c);
        goto out;
    }
    dst->params = ptmp;
    for (size_t i = 0; i < k->n_params; i++) {
        struct kr_config_param *p = find_param(dst, k->params[i].key);

        if (p != NULL) {
            wipe_free(p->value);
            p->value = k->params[i].value;
            free(k->params[i].key);
        } else {
            dst->params[dst->n_params++] = k->params[i];
        }
    }
    k->n_params = 0;
    dst->active = k->active;
    free(dst->origin);
    dst->origin = k->origin;
    k->origin = NULL;
out:
    keyring_clear(k);
    return rv;
}

/* One body, or (JSON) a list of bodies, for the provider type. */
static int add_keyring(struct ctx *c, const char *type,
                       const struct kr_hcl_node *v, int line)
{
    struct kr_config_keyring k;
    int rv = 0;

    memset(&k, 0, sizeof(k));
    if (v->type == KR_HCL_LIST) {
        for (size_t i = 0; rv == 0 && i < v->n_elems; i++) {
            if (v->elems[i]->type == KR_HCL_LIST)
                rv = fail(c, v->elems[i]->line,
                          "keyring: expected a block, got list");
            else
                rv = add_keyring(c, type, v->elems[i], v->elems[i]->line);
        }
        goto out;
    }
    rv = read_keyring(c, type, v, line, &k);
    if (rv == 0)
        rv = merge_keyring(c, &k);
out:
    keyring_clear(&k);
    return rv;
}

/* {"<type>": body-or-list, ...}: JSON's spelling of labelled blocks. */
static int add_keyring_map(struct ctx *c, const struct kr_hcl_node *obj)
{
    int rv = 0;

    for (size_t i = 0; rv == 0 && i < obj->n_items; i++) {
        const struct kr_hcl_item *e = &obj->items[i];

        if (e->n_labels > 0)
            rv = fail(c, e->line,
                      "keyring: expected one label, the provider "
                      "type");
        else
            rv = add_keyring(c, e->key, e->value, e->line);
    }
    return rv;
}

/*
 * Accepts `keyring "<type>" { }` (HCL), and `keyring = {"<type>": { }}` or
 * `"keyring": [{"<type>": { }}, ...]` (JSON, and HCL's object syntax).
 * Keyring blocks exist only at the top level, so this works on c->cfg.
 */
static int set_keyrings(struct ctx *c, const struct key *k, void *field,
                        const struct kr_hcl_item *it, const char *path)
{
    const struct kr_hcl_node *v = it->value;
    int rv = 0;

    (void)field;
    if (it->n_labels == 1) {
        rv = add_keyring(c, it->labels[0], v, it->line);
    } else if (it->block) {
        rv = fail(c, it->line,
                  "%s: a keyring block takes one label, the provider type "
                  "(keyring \"aead\" { ... })",
                  path);
    } else if (v->type == KR_HCL_OBJECT) {
        rv = add_keyring_map(c, v);
    } else if (v->type == KR_HCL_LIST) {
        for (size_t i = 0; rv == 0 && i < v->n_elems; i++) {
            if (v->elems[i]->type != KR_HCL_OBJECT)
                rv = expect(c, k, v->elems[i], path);
            else
                rv = add_keyring_map(c, v->elems[i]);
        }
    } else {
        rv = expect(c, k, v, path);
    }
    return rv;
}

static int cmp_keyring(const void *a, const void *b)
{
    const struct kr_config_keyring *x = a, *y = b;

    return strcmp(x->id, y->id);
}

/*
 * Adds the implicit `keyring "aead" { active = true }` when there is no
 * keyring block at all (Nomad's getProviderConfigs), checks types and that
 * at most one block is active, and sorts by id.
 */
static int finish_keyrings(struct ctx *c, const struct key *key, void *field,
                           const char *path)
{
    struct kr_config *cfg = c->cfg;
    struct kr_config_keyring k, *active = NULL;
    int rv = 0;

    (void)key;
    (void)field;
    (void)path;
    memset(&k, 0, sizeof(k));
    if (cfg->n_keyrings == 0) {
        k.type = strdup("aead");
        k.name = strdup("");
        k.origin = strdup("(implicit)");
        k.active = true;
        if (k.type == NULL || k.name == NULL || k.origin == NULL ||
            keyring_set_id(&k) != 0) {
            rv = nomem(c);
            goto out;
        }
        rv = merge_keyring(c, &k);
        if (rv != 0)
            goto out;
    }
    for (size_t i = 0; i < cfg->n_keyrings; i++) {
        struct kr_config_keyring *r = &cfg->keyrings[i];

        if (!provider_known(r->type)) {
            rv = fail(c, 0, "%s: keyring \"%s\": unknown provider type",
                      r->origin, r->id);
            goto out;
        }
        if (r->active && active != NULL) {
            rv = fail(c, 0,
                      "%s: keyring \"%s\": only one keyring can be active "
                      "(keyring \"%s\" at %s is active too)",
                      r->origin, r->id, active->id, active->origin);
            goto out;
        }
        if (r->active)
            active = r;
    }
    if (active == NULL) {
        rv = fail(c, 0,
                  "no keyring block is active: new root keys could not be "
                  "wrapped; set active = true on one keyring block");
        goto out;
    }
    if (cfg->n_keyrings > 0)
        qsort(cfg->keyrings, cfg->n_keyrings, sizeof(*cfg->keyrings),
              cmp_keyring);
out:
    keyring_clear(&k);
    return rv;
}

static void fini_keyrings(struct ctx *c, const struct key *k, void *field)
{
    struct kr_config *cfg = c->cfg;

    (void)k;
    (void)field;
    for (size_t i = 0; i < cfg->n_keyrings; i++)
        keyring_clear(&cfg->keyrings[i]);
    free(cfg->keyrings);
    cfg->keyrings = NULL;
    cfg->n_keyrings = 0;
}

/* The schema */

static const struct kind_ops kinds[] = {
    [K_STRING] = {"a string", set_string, init_string, finish_string,
                  fini_string},
    [K_BOOL] = {"a bool", set_bool, init_bool, NULL, NULL},
    [K_INT] = {"a number", set_int, init_int, finish_int, NULL},
    [K_DURATION] = {"a duration string", set_duration, init_duration,
                    finish_duration, NULL},
    [K_LOG_LEVEL] = {"a string", set_log_level, init_log_level,
                     finish_log_level, NULL},
    [K_BLOCK] = {"a block", set_block, init_block, finish_block, fini_block},
    [K_STRINGS] = {"a list of strings", set_strings, NULL, NULL, fini_strings},
    [K_KEYRINGS] = {"a block", set_keyrings, NULL, finish_keyrings,
                    fini_keyrings},
};

static int expect(struct ctx *c, const struct key *k,
                  const struct kr_hcl_node *v, const char *path)
{
    return fail(c, v->line, "%s: expected %s, got %s", path,
                kinds[k->kind].what, kr_hcl_type_name(v->type));
}

#define KEYS(a) (a), sizeof(a) / sizeof((a)[0])

static const struct key ports_keys[] = {
    {.name = "http",
     .kind = K_INT,
     .offset = offsetof(struct kr_config, http_port),
     .def = STR(KR_DEFAULT_HTTP_PORT),
     .min = 1,
     .max = 65535},
    {.name = "rpc",
     .kind = K_INT,
     .offset = offsetof(struct kr_config, rpc_port),
     .def = STR(KR_DEFAULT_RPC_PORT),
     .min = 1,
     .max = 65535},
    {.name = "serf",
     .kind = K_INT,
     .offset = offsetof(struct kr_config, serf_port),
     .def = STR(KR_DEFAULT_SERF_PORT),
     .min = 1,
     .max = 65535},
};
static const struct block ports_block = {KEYS(ports_keys)};

static const struct key server_join_keys[] = {
    {.name = "retry_join",
     .kind = K_STRINGS,
     .offset = offsetof(struct kr_config_server_join, retry_join)},
    {.name = "retry_interval",
     .kind = K_DURATION,
     .offset = offsetof(struct kr_config_server_join, retry_interval),
     .def = "30s"},
};
static const struct block server_join_block = {KEYS(server_join_keys)};

static const struct key server_keys[] = {
    {.name = "enabled",
     .kind = K_BOOL,
     .offset = offsetof(struct kr_config_server, enabled),
     .def = "false",
     .dev_def = "true"},
    {.name = "bootstrap_expect",
     .kind = K_INT,
     .offset = offsetof(struct kr_config_server, bootstrap_expect),
     .def = "1",
     .min = 0,
     .max = INT_MAX},
    {.name = "root_key_rotation_threshold",
     .kind = K_DURATION,
     .offset = offsetof(struct kr_config_server, root_key_rotation_threshold),
     .def = "720h"},
    {.name = "root_key_gc_interval",
     .kind = K_DURATION,
     .offset = offsetof(struct kr_config_server, root_key_gc_interval),
     .def = "10m"},
    {.name = "root_key_gc_threshold",
     .kind = K_DURATION,
     .offset = offsetof(struct kr_config_server, root_key_gc_threshold),
     .def = "1h"},
    {.name = "root_key_rekey_rate",
     .kind = K_INT,
     .offset = offsetof(struct kr_config_server, root_key_rekey_rate),
     .def = "20000",
     .min = 0,
     .max = INT_MAX},
    {.name = "start_timeout",
     .kind = K_DURATION,
     .offset = offsetof(struct kr_config_server, start_timeout),
     .def = "30s"},
    {.name = "oidc_issuer",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config_server, oidc_issuer),
     .def = ""},
    {.name = "raft_snapshot_interval",
     .kind = K_DURATION,
     .offset = offsetof(struct kr_config_server, raft_snapshot_interval),
     .def = "120s",
     .flags = F_ZERO_OK},
    {.name = "raft_snapshot_threshold",
     .kind = K_INT,
     .offset = offsetof(struct kr_config_server, raft_snapshot_threshold),
     .def = "8192",
     .min = 1,
     .max = INT_MAX},
    {.name = "raft_snapshot_write_rate",
     .kind = K_INT,
     .offset = offsetof(struct kr_config_server, raft_snapshot_write_rate),
     .def = "50",
     .min = 0,
     .max = 1000000},
    {.name = "server_join",
     .kind = K_BLOCK,
     .offset = offsetof(struct kr_config_server, server_join),
     .block = &server_join_block},
    {.name = "raft_trailing_logs",
     .kind = K_INT,
     .offset = offsetof(struct kr_config_server, raft_trailing_logs),
     .def = "10240",
     .min = 0,
     .max = INT_MAX},
};
static const struct block server_block = {KEYS(server_keys)};

static const struct key tls_keys[] = {
    {.name = "http",
     .kind = K_BOOL,
     .offset = offsetof(struct kr_config_tls, http),
     .def = "false"},
    {.name = "rpc",
     .kind = K_BOOL,
     .offset = offsetof(struct kr_config_tls, rpc),
     .def = "false"},
    {.name = "ca_file",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config_tls, ca_file),
     .def = ""},
    {.name = "cert_file",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config_tls, cert_file),
     .def = ""},
    {.name = "key_file",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config_tls, key_file),
     .def = ""},
    {.name = "verify_server_hostname",
     .kind = K_BOOL,
     .offset = offsetof(struct kr_config_tls, verify_server_hostname),
     .def = "false"},
    {.name = "verify_https_client",
     .kind = K_BOOL,
     .offset = offsetof(struct kr_config_tls, verify_https_client),
     .def = "false"},
    {.name = "tls_min_version",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config_tls, tls_min_version),
     .def = "tls12"},
    {.name = "http2",
     .kind = K_BOOL,
     .offset = offsetof(struct kr_config_tls, http2),
     .def = "false"},
};
static const struct block tls_block = {KEYS(tls_keys)};

static const struct key top_keys[] = {
    /* The default is the hostname, which kr_config_new() reads. */
    {.name = "name",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config, name),
     .flags = F_REQUIRED | F_NONEMPTY},
    {.name = "region",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config, region),
     .def = "global",
     .flags = F_REQUIRED | F_NONEMPTY},
    {.name = "datacenter",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config, datacenter),
     .def = "dc1",
     .flags = F_REQUIRED | F_NONEMPTY},
    {.name = "data_dir",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config, data_dir),
     .flags = F_REQUIRED_UNLESS_DEV | F_NONEMPTY},
    {.name = "bind_addr",
     .kind = K_STRING,
     .offset = offsetof(struct kr_config, bind_addr),
     .def = "0.0.0.0",
     .dev_def = "127.0.0.1",
     .flags = F_REQUIRED | F_NONEMPTY},
    {.name = "log_level",
     .kind = K_LOG_LEVEL,
     .offset = offsetof(struct kr_config, log_level),
     .def = "info"},
    {.name = "log_json",
     .kind = K_BOOL,
     .offset = offsetof(struct kr_config, log_json),
     .def = "false"},
    {.name = "ports", .kind = K_BLOCK, .offset = 0, .block = &ports_block},
    {.name = "server",
     .kind = K_BLOCK,
     .offset = offsetof(struct kr_config, server),
     .block = &server_block},
    {.name = "tls",
     .kind = K_BLOCK,
     .offset = offsetof(struct kr_config, tls),
     .block = &tls_block},
    {.name = "keyring",
     .kind = K_KEYRINGS,
     .offset = offsetof(struct kr_config, keyrings)},
};
static const struct block top_block = {KEYS(top_keys)};

/* Table walkers */

static void join_path(char *out, const char *prefix, const char *name)
{
    if (prefix[0] == '\0')
        snprintf(out, PATH_SIZE, "%s", name);
    else
        snprintf(out, PATH_SIZE, "%s.%s", prefix, name);
}

static const struct key *find_key(const struct block *b, const char *name)
{
    for (size_t i = 0; i < b->n_keys; i++) {
        if (strcmp(b->keys[i].name, name) == 0)
            return &b->keys[i];
    }
    return NULL;
}

static int apply_body(struct ctx *c, const struct block *b, void *base,
                      const struct kr_hcl_node *obj, const char *prefix)
{
    char path[PATH_SIZE], q[QUOTE_SIZE];
    int rv = 0;

    for (size_t i = 0; rv == 0 && i < obj->n_items; i++) {
        const struct kr_hcl_item *it = &obj->items[i];
        const struct key *k = find_key(b, it->key);

        if (k == NULL) {
            kr_hcl_quote(q, sizeof(q), it->key);
            if (prefix[0] == '\0')
                rv = fail(c, it->line, "unknown key \"%s\"", q);
            else
                rv = fail(c, it->line, "unknown key \"%s\" in %s block", q,
                          prefix);
            break;
        }
        join_path(path, prefix, k->name);
        rv = kinds[k->kind].set(c, k, (char *)base + k->offset, it, path);
    }
    return rv;
}

static int init_body(struct ctx *c, const struct block *b, void *base)
{
    int rv = 0;

    for (size_t i = 0; rv == 0 && i < b->n_keys; i++) {
        const struct key *k = &b->keys[i];

        if (kinds[k->kind].init != NULL)
            rv = kinds[k->kind].init(c, k, (char *)base + k->offset);
    }
    return rv;
}

static int finish_body(struct ctx *c, const struct block *b, void *base,
                       const char *prefix)
{
    char path[PATH_SIZE];
    int rv = 0;

    for (size_t i = 0; rv == 0 && i < b->n_keys; i++) {
        const struct key *k = &b->keys[i];

        join_path(path, prefix, k->name);
        if (kinds[k->kind].finish != NULL)
            rv = kinds[k->kind].finish(c, k, (char *)base + k->offset, path);
    }
    return rv;
}

static void fini_body(struct ctx *c, const struct block *b, void *base)
{
    for (size_t i = 0; i < b->n_keys; i++) {
        const struct key *k = &b->keys[i];

        if (kinds[k->kind].fini != NULL)
            kinds[k->kind].fini(c, k, (char *)base + k->offset);
    }
}

/* Public API */

int kr_config_new(struct kr_config **out, bool dev)
{
    struct kr_config *cfg = calloc(1, sizeof(*cfg));
    struct ctx c = {.cfg = cfg};
    char host[256];
    int rv = 0;

    if (cfg == NULL) {
        rv = KR_ENOMEM;
        goto out;
    }
    cfg->dev = dev;
    rv = init_body(&c, &top_block, cfg);
    if (rv != 0)
        goto out;
    /* Left NULL if unreadable: kr_config_finish() then asks for a name. */
    if (gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        if (host[0] != '\0') {
            cfg->name = strdup(host);
            if (cfg->name == NULL) {
                rv = KR_ENOMEM;
                goto out;
            }
        }
    }
    *out = cfg;
    cfg = NULL;
out:
    kr_config_free(cfg);
    return rv;
}

void kr_config_free(struct kr_config *cfg)
{
    struct ctx c = {.cfg = cfg};

    if (cfg == NULL)
        return;
    fini_body(&c, &top_block, cfg);
    free(cfg);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int kr_config_merge_string(struct kr_config *cfg, const char *name,
                           const char *text, size_t len, char *errmsg)
{
    struct kr_hcl_node *root = NULL;
    struct ctx c = {.cfg = cfg, .name = name, .errmsg = errmsg};
    int rv;

    if (name == NULL)
        c.name = name = "(config)";
    if (has_suffix(name, ".json"))
        rv = kr_hcl_parse_json(name, text, len, &root, errmsg);
    else
        rv = kr_hcl_parse(name, text, len, &root, errmsg);
    if (rv != 0)
        goto out;
    rv = apply_body(&c, &top_block, cfg, root, "");
out:
    kr_hcl_free(root);
    return rv;
}

/* Reads a whole file of at most KR_HCL_MAX_INPUT bytes. */
static int read_file(const char *path, char **out, size_t *out_len,
                     char *errmsg)
{
    char *buf = NULL, *nbuf;
    size_t len = 0, cap = 0, ncap;
    ssize_t n;
    int fd, rv = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rv = kr_errf(errmsg, KR_EINVAL, "%s: %s", path, strerror(errno));
        goto out;
    }
    for (;;) {
        if (len == cap) {
            /* Grow by copy so the old block, maybe holding
             * credentials, can be wiped. */
            ncap = cap == 0 ? 4096 : cap * 2;
            if (ncap > KR_HCL_MAX_INPUT + 1)
                ncap = KR_HCL_MAX_INPUT + 1;
            nbuf = malloc(ncap);
            if (nbuf == NULL) {
                rv = kr_errf(errmsg, KR_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            if (len > 0)
                memcpy(nbuf, buf, len);
            if (buf != NULL)
                explicit_bzero(buf, cap);
            free(buf);
            buf = nbuf;
            cap = ncap;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = kr_errf(errmsg, KR_EINVAL, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > KR_HCL_MAX_INPUT) {
            rv = kr_errf(errmsg, KR_EINVAL, "%s: larger than %d bytes", path,
                         KR_HCL_MAX_INPUT);
            goto out;
        }
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    if (buf != NULL)
        explicit_bzero(buf, cap);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rv;
}

static int merge_file(struct kr_config *cfg, const char *path, char *errmsg)
{
    char *text = NULL;
    size_t len = 0;
    int rv;

    rv = read_file(path, &text, &len, errmsg);
    if (rv == 0)
        rv = kr_config_merge_string(cfg, path, text, len, errmsg);
    if (text != NULL)
        explicit_bzero(text, len);
    free(text);
    return rv;
}

/* *.hcl and *.json; dot files (editor swap and lock files) are skipped. */
static bool config_file_name(const char *name)
{
    return name[0] != '.' &&
           (has_suffix(name, ".hcl") || has_suffix(name, ".json"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Merges dir's config files in lexical (byte) order, as Nomad does. */
static int merge_dir(struct kr_config *cfg, const char *dir, char *errmsg)
{
    DIR *d = NULL;
    struct dirent *de;
    struct stat st;
    char **names = NULL, **tmp, *path = NULL;
    size_t n = 0, cap = 0;
    int rv = 0;

    d = opendir(dir);
    if (d == NULL) {
        rv = kr_errf(errmsg, KR_EINVAL, "%s: %s", dir, strerror(errno));
        goto out;
    }
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        if (!config_file_name(de->d_name))
            continue;
        if (n == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            tmp = realloc(names, cap * sizeof(*names));
            if (tmp == NULL) {
                rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
                goto out;
            }
            names = tmp;
        }
        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
            goto out;
        }
        n++;
    }
    if (errno != 0) {
        rv = kr_errf(errmsg, KR_EINVAL, "%s: %s", dir, strerror(errno));
        goto out;
    }
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        free(path);
        path = has_suffix(dir, "/") ? strfmt("%s%s", dir, names[i])
                                    : strfmt("%s/%s", dir, names[i]);
        if (path == NULL) {
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        } else if (stat(path, &st) != 0) {
            rv = kr_errf(errmsg, KR_EINVAL, "%s: %s", path, strerror(errno));
        } else if (S_ISREG(st.st_mode)) {
            /* Directories, FIFOs and the like are not config files. */
            rv = merge_file(cfg, path, errmsg);
        }
    }
out:
    free(path);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (d != NULL)
        closedir(d);
    return rv;
}

int kr_config_merge_path(struct kr_config *cfg, const char *path, char *errmsg)
{
    struct stat st;
    int rv;

    if (stat(path, &st) != 0)
        rv = kr_errf(errmsg, KR_EINVAL, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        rv = merge_dir(cfg, path, errmsg);
    else
        rv = merge_file(cfg, path, errmsg);
    return rv;
}

/* The issuer of workload identities goes into `iss` and OIDC discovery
 * as is: an http(s) URL with a host, no query, fragment or white space
 * (OpenID Connect Discovery 1.0, section 3, asks for https; http is
 * allowed for tests and for a TLS-terminating proxy's backend). */
static bool issuer_valid(const char *s)
{
    const char *host;

    if (*s == '\0')
        return true;
    if (strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return false;
    if (*host == '\0' || *host == '/')
        return false;
    for (; *s != '\0'; s++)
        if (*s == '?' || *s == '#' || (unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

int kr_config_finish(struct kr_config *cfg, char *errmsg)
{
    struct ctx c = {.cfg = cfg, .errmsg = errmsg};
    int rv;

    rv = finish_body(&c, &top_block, cfg, "");
    if (rv != 0)
        goto out;
    if (cfg->server.enabled && cfg->server.bootstrap_expect < 1)
        rv = fail(&c, 0,
                  "server.bootstrap_expect must be at least 1 when the "
                  "server is enabled");
    else if (!issuer_valid(cfg->server.oidc_issuer))
        rv = fail(&c, 0,
                  "server.oidc_issuer must be an http:// or https:// URL "
                  "with a host and without query, fragment or spaces");
out:
    return rv;
}

const char *kr_config_keyring_param(const struct kr_config_keyring *k,
                                    const char *key)
{
    if (k == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < k->n_params; i++) {
        if (strcmp(k->params[i].key, key) == 0)
            return k->params[i].value;
    }
    return NULL;
}
