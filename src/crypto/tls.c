/*
 * See tls.h.  Contexts offer TLS 1.2 or newer only, with OpenSSL's
 * default cipher suites, no compression, no renegotiation, and a check
 * that the key matches the certificate at load time rather than at the
 * first handshake.
 */
#include "crypto/tls.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/err.h"

static int ssl_fail(char *errmsg, const char *what, const char *file)
{
    char reason[256] = "unknown error";
    unsigned long e = ERR_get_error();

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    return kr_errf(errmsg, KR_EINVAL, "tls: %s %s: %s", what, file ? file : "",
                   reason);
}

int kr_tls_server_ctx(struct ssl_ctx_st **out, const struct kr_tls_config *cfg,
                      char *errmsg)
{
    SSL_CTX *ctx = NULL;
    int min = TLS1_2_VERSION;
    int rv;

    if (cfg->cert_file == NULL || cfg->key_file == NULL ||
        *cfg->cert_file == '\0' || *cfg->key_file == '\0')
        return kr_errf(errmsg, KR_EINVAL,
                       "tls: cert_file and key_file are required");
    if (cfg->min_version != NULL && *cfg->min_version != '\0') {
        if (strcmp(cfg->min_version, "tls13") == 0)
            min = TLS1_3_VERSION;
        else if (strcmp(cfg->min_version, "tls12") != 0)
            return kr_errf(errmsg, KR_EINVAL,
                           "tls: tls_min_version must be tls12 or tls13, "
                           "not \"%s\"",
                           cfg->min_version);
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return ssl_fail(errmsg, "creating a context", NULL);
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
        rv = ssl_fail(errmsg, "loading cert_file", cfg->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) !=
        1) {
        rv = ssl_fail(errmsg, "loading key_file", cfg->key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        rv = ssl_fail(errmsg, "key_file does not match cert_file",
                      cfg->key_file);
        goto fail;
    }
    if (cfg->ca_file != NULL && *cfg->ca_file != '\0') {
        STACK_OF(X509_NAME) * names;
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
            rv = ssl_fail(errmsg, "loading ca_file", cfg->ca_file);
            goto fail;
        }
        names = SSL_load_client_CA_file(cfg->ca_file);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(ctx, names);
    } else if (cfg->verify_peer) {
        rv = kr_errf(errmsg, KR_EINVAL,
                     "tls: verify_https_client needs ca_file");
        goto fail;
    }
    if (cfg->verify_peer)
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return rv;
}

void kr_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}
