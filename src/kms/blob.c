/*
 * See blob.h.
 */
#include "kms/blob.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void kr_blob_clear(struct kr_blob *b)
{
    free(b->ciphertext);
    free(b->iv);
    free(b->key_id);
    free(b->wrapped_key);
    memset(b, 0, sizeof(*b));
}

void kr_wrapped_key_clear(struct kr_wrapped_key *w)
{
    free(w->provider);
    free(w->provider_id);
    kr_blob_clear(&w->dek);
    kr_blob_clear(&w->rsa);
    kr_secret_free(w->kek);
    memset(w, 0, sizeof(*w));
}

static int dup_bytes(uint8_t **dst, size_t *dlen, const uint8_t *src,
                     size_t len)
{
    *dst = NULL;
    *dlen = 0;
    if (src == NULL || len == 0)
        return 0;
    *dst = malloc(len);
    if (*dst == NULL)
        return KR_ENOMEM;
    memcpy(*dst, src, len);
    *dlen = len;
    return 0;
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst == NULL ? KR_ENOMEM : 0;
}

int kr_blob_copy(struct kr_blob *dst, const struct kr_blob *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->mechanism = src->mechanism;
    if (dup_bytes(&dst->ciphertext, &dst->ciphertext_len, src->ciphertext,
                  src->ciphertext_len) != 0 ||
        dup_bytes(&dst->iv, &dst->iv_len, src->iv, src->iv_len) != 0 ||
        dup_str(&dst->key_id, src->key_id) != 0 ||
        dup_bytes(&dst->wrapped_key, &dst->wrapped_key_len, src->wrapped_key,
                  src->wrapped_key_len) != 0) {
        kr_blob_clear(dst);
        return KR_ENOMEM;
    }
    return 0;
}

int kr_wrapped_key_copy(struct kr_wrapped_key *dst,
                        const struct kr_wrapped_key *src)
{
    memset(dst, 0, sizeof(*dst));
    if (dup_str(&dst->provider, src->provider) != 0 ||
        dup_str(&dst->provider_id, src->provider_id) != 0 ||
        kr_blob_copy(&dst->dek, &src->dek) != 0 ||
        kr_blob_copy(&dst->rsa, &src->rsa) != 0)
        goto fail;
    if (src->kek != NULL) {
        dst->kek = kr_secret_dup(src->kek->data, src->kek->len);
        if (dst->kek == NULL)
            goto fail;
    }
    return 0;
fail:
    kr_wrapped_key_clear(dst);
    return KR_ENOMEM;
}
