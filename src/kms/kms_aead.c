/*
 * The `aead` KEK provider (the default).  Each wrap draws a fresh 32-byte
 * KEK and seals the DEK and the RSA key with it (AES-256-GCM, random 12-byte
 * IV, no AAD, IV||ct||tag), then records the KEK in cleartext next to the
 * blobs, as Nomad 1.9+ does.  Whoever holds the raft log or a snapshot can
 * therefore unwrap: that is why snapshot redaction exists, and why a real
 * deployment should use a KMS provider.
 *
 * The provider is stateless, so wrap and unwrap are trivially thread safe.
 */
#include "kms/kms.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/rand.h"

static int aead_open(void **impl, const struct kr_config_keyring *cfg,
                     char *errmsg)
{
    if (cfg->n_params > 0)
        return kr_errf(errmsg, KR_EINVAL,
                       "the aead keyring takes no parameters (got \"%s\")",
                       cfg->params[0].key);
    *impl = NULL;
    return 0;
}

static int seal_blob(struct kr_aead *a, const char *key_id,
                     const struct kr_secret *pt, struct kr_blob *out)
{
    out->ciphertext_len = pt->len + KR_AEAD_OVERHEAD;
    out->ciphertext = malloc(out->ciphertext_len);
    out->key_id = strdup(key_id);
    if (out->ciphertext == NULL || out->key_id == NULL)
        return KR_ENOMEM;
    return kr_aead_seal(a, NULL, 0, pt->data, pt->len, out->ciphertext);
}

static int aead_wrap(void *impl, const char *key_id,
                     const struct kr_secret *dek, const struct kr_secret *rsa,
                     struct kr_wrapped_key *out, char *errmsg)
{
    struct kr_aead *a = NULL;
    int rv;

    (void)impl;
    out->kek = kr_secret_new(KR_AEAD_KEY_LEN);
    if (out->kek == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of secure memory");
        goto out;
    }
    rv = kr_rand_bytes(out->kek->data, out->kek->len);
    if (rv == 0)
        rv = kr_aead_new(&a, out->kek->data);
    if (rv == 0)
        rv = seal_blob(a, key_id, dek, &out->dek);
    if (rv == 0 && rsa != NULL)
        rv = seal_blob(a, key_id, rsa, &out->rsa);
    if (rv != 0)
        kr_errf(errmsg, rv, "%s", kr_strerror(rv));
out:
    kr_aead_free(a);
    return rv;
}

/* Opens one blob; *out stays NULL for an empty blob (a legacy key without
 * RSA).  A blob too short to hold an IV and a tag is corrupt, not a crash
 * (Nomad #24379). */
static int open_blob(struct kr_aead *a, const struct kr_blob *b,
                     struct kr_secret **out)
{
    struct kr_secret *s = NULL;
    size_t n = 0;
    int rv;

    *out = NULL;
    if (b->ciphertext == NULL || b->ciphertext_len == 0)
        return 0;
    if (b->ciphertext_len < KR_AEAD_OVERHEAD)
        return KR_ECORRUPT;
    s = kr_secret_new(b->ciphertext_len - KR_AEAD_OVERHEAD);
    if (s == NULL)
        return KR_ENOMEM;
    rv =
        kr_aead_open(a, NULL, 0, b->ciphertext, b->ciphertext_len, s->data, &n);
    if (rv != 0) {
        kr_secret_free(s);
        return rv;
    }
    *out = s;
    return 0;
}

static int aead_unwrap(void *impl, const char *key_id,
                       const struct kr_wrapped_key *in,
                       struct kr_secret **dek_out, struct kr_secret **rsa_out,
                       char *errmsg)
{
    struct kr_aead *a = NULL;
    struct kr_secret *dek = NULL, *rsa = NULL;
    int rv;

    (void)impl;
    (void)key_id;
    if (in->kek == NULL || in->kek->len != KR_AEAD_KEY_LEN) {
        rv = kr_errf(errmsg, KR_ECORRUPT,
                     "no key encryption key stored (redacted snapshot?)");
        goto out;
    }
    rv = kr_aead_new(&a, in->kek->data);
    if (rv == 0)
        rv = open_blob(a, &in->dek, &dek);
    if (rv == 0 && dek == NULL)
        rv = KR_ECORRUPT;
    if (rv == 0)
        rv = open_blob(a, &in->rsa, &rsa);
    if (rv != 0) {
        kr_errf(errmsg, rv, "%s",
                rv == KR_ECRYPTO ? "wrapped key failed authentication"
                                 : kr_strerror(rv));
        goto out;
    }
    *dek_out = dek;
    *rsa_out = rsa;
    dek = rsa = NULL;
out:
    kr_secret_free(dek);
    kr_secret_free(rsa);
    kr_aead_free(a);
    return rv;
}

const struct kr_kms_ops kr_kms_aead_ops = {
    .type = "aead",
    .open = aead_open,
    .close = NULL,
    .wrap = aead_wrap,
    .unwrap = aead_unwrap,
};
