/*
 * The provider table and the generic wrap/unwrap entry points.  Types that
 * are valid configuration but not yet implemented fail at open with a clear
 * message, so a server never starts believing it can unwrap keys it cannot.
 */
#include "kms/kms.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/aead.h"

struct kr_kms {
    const struct kr_kms_ops *ops;
    const struct kr_config_keyring *cfg;
    void *impl;
};

static const struct {
    const char *type;
    const struct kr_kms_ops *ops; /* NULL: known but not built yet */
} providers[] = {
    {"aead", &kr_kms_aead_ops}, {"awskms", NULL}, {"azurekeyvault", NULL},
    {"gcpckms", NULL},          {"pkcs11", NULL}, {"transit", NULL},
};

bool kr_kms_type_known(const char *type)
{
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
        if (strcmp(providers[i].type, type) == 0)
            return true;
    return false;
}

int kr_kms_open(struct kr_kms **out, const struct kr_config_keyring *cfg,
                char *errmsg)
{
    const struct kr_kms_ops *ops = NULL;
    struct kr_kms *k = NULL;
    size_t i;
    int rv;

    for (i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
        if (strcmp(providers[i].type, cfg->type) == 0)
            break;
    if (i == sizeof(providers) / sizeof(providers[0]))
        return kr_errf(errmsg, KR_EINVAL, "%s: unknown keyring type \"%s\"",
                       cfg->origin ? cfg->origin : "config", cfg->type);
    ops = providers[i].ops;
    if (ops == NULL)
        return kr_errf(errmsg, KR_EINVAL,
                       "%s: keyring \"%s\" is not supported by this build yet",
                       cfg->origin ? cfg->origin : "config", cfg->type);
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return KR_ENOMEM;
    k->ops = ops;
    k->cfg = cfg;
    rv = ops->open(&k->impl, cfg, errmsg);
    if (rv != 0) {
        kr_errwrap(errmsg, "%s: keyring \"%s\"",
                   cfg->origin ? cfg->origin : "config", cfg->id);
        free(k);
        return rv;
    }
    *out = k;
    return 0;
}

void kr_kms_free(struct kr_kms *k)
{
    if (k == NULL)
        return;
    if (k->ops->close != NULL)
        k->ops->close(k->impl);
    free(k);
}

const char *kr_kms_id(const struct kr_kms *k)
{
    return k->cfg->id;
}

bool kr_kms_active(const struct kr_kms *k)
{
    return k->cfg->active;
}

int kr_kms_wrap(struct kr_kms *k, const char *key_id,
                const struct kr_secret *dek, const struct kr_secret *rsa,
                struct kr_wrapped_key *out, char *errmsg)
{
    int rv;

    memset(out, 0, sizeof(*out));
    rv = k->ops->wrap(k->impl, key_id, dek, rsa, out, errmsg);
    if (rv == 0) {
        out->provider = strdup(k->cfg->type);
        out->provider_id = strdup(k->cfg->id);
        if (out->provider == NULL || out->provider_id == NULL)
            rv = KR_ENOMEM;
    }
    if (rv != 0) {
        kr_wrapped_key_clear(out);
        kr_errwrap(errmsg, "keyring \"%s\": wrap", k->cfg->id);
    }
    return rv;
}

int kr_kms_unwrap(struct kr_kms *k, const char *key_id,
                  const struct kr_wrapped_key *in, struct kr_secret **dek_out,
                  struct kr_secret **rsa_out, char *errmsg)
{
    struct kr_secret *dek = NULL, *rsa = NULL;
    int rv;

    rv = k->ops->unwrap(k->impl, key_id, in, &dek, &rsa, errmsg);
    if (rv == 0 && (dek == NULL || dek->len != KR_AEAD_KEY_LEN))
        rv = kr_errf(errmsg, KR_ECORRUPT,
                     "unwrapped data encryption key has the wrong size");
    if (rv != 0) {
        kr_secret_free(dek);
        kr_secret_free(rsa);
        kr_errwrap(errmsg, "keyring \"%s\": unwrap key %s", k->cfg->id, key_id);
        return rv;
    }
    *dek_out = dek;
    *rsa_out = rsa;
    return 0;
}
