/*
 * TLS contexts for keyraft's listeners, built from the `tls {}` block.
 * The contexts are OpenSSL SSL_CTX objects, handed out as the opaque
 * struct ssl_ctx_st so only src/crypto includes OpenSSL's headers.
 *
 * Loop thread only (OpenSSL contexts are used by h2o on that thread).
 */
#ifndef KR_CRYPTO_TLS_H
#define KR_CRYPTO_TLS_H

#include <stdbool.h>

struct ssl_ctx_st;

struct kr_tls_config {
    const char *ca_file;     /* verifies peers' certificates */
    const char *cert_file;   /* our certificate chain (PEM) */
    const char *key_file;    /* its private key (PEM) */
    bool verify_peer;        /* server: require a client certificate */
    const char *min_version; /* "tls12" (default) or "tls13" */
};

/*
 * Builds a server context.  Returns 0, or KR_EINVAL with the file and
 * OpenSSL's reason in errmsg (never key material).  Free with
 * kr_tls_ctx_free.
 */
int kr_tls_server_ctx(struct ssl_ctx_st **out, const struct kr_tls_config *cfg,
                      char *errmsg);
void kr_tls_ctx_free(struct ssl_ctx_st *ctx);

#endif
