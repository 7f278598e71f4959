/*
 * See tls.h.  Contexts offer TLS 1.2 or newer only, with OpenSSL's
 * default cipher suites, no compression, no renegotiation, and a check
 * that the key matches the certificate at load time rather than at the
 * first handshake.
 */
#include "crypto/tls.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

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

int kr_tls_client_ctx(struct ssl_ctx_st **out, const struct kr_tls_config *cfg,
                      char *errmsg)
{
    SSL_CTX *ctx = NULL;
    int rv;

    if (cfg->ca_file == NULL || *cfg->ca_file == '\0')
        return kr_errf(errmsg, KR_EINVAL, "tls: rpc needs ca_file");
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return ssl_fail(errmsg, "creating a context", NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
        rv = ssl_fail(errmsg, "loading cert_file", cfg->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) !=
            1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        rv = ssl_fail(errmsg, "loading key_file", cfg->key_file);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
        rv = ssl_fail(errmsg, "loading ca_file", cfg->ca_file);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return rv;
}

struct kr_tls_conn {
    SSL *ssl;
    BIO *net_in;  /* bytes from the network, for OpenSSL */
    BIO *net_out; /* bytes from OpenSSL, for the network */
    char expect_name[256];
    bool server;
};

int kr_tls_conn_new(struct kr_tls_conn **out, struct ssl_ctx_st *ctx,
                    bool server, const char *expect_name)
{
    struct kr_tls_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return KR_ENOMEM;
    c->server = server;
    if (expect_name != NULL)
        snprintf(c->expect_name, sizeof(c->expect_name), "%s", expect_name);
    c->ssl = SSL_new(ctx);
    c->net_in = BIO_new(BIO_s_mem());
    c->net_out = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->net_in == NULL || c->net_out == NULL) {
        BIO_free(c->net_in);
        BIO_free(c->net_out);
        SSL_free(c->ssl);
        free(c);
        return KR_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->net_in, c->net_out);
    if (server) {
        /* Servers talk to servers: the peer must show a certificate. */
        SSL_set_verify(c->ssl,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_set_accept_state(c->ssl);
    } else {
        if (*c->expect_name != '\0') {
            SSL_set1_host(c->ssl, c->expect_name);
            SSL_set_tlsext_host_name(c->ssl, c->expect_name);
        }
        SSL_set_connect_state(c->ssl);
    }
    *out = c;
    return 0;
}

void kr_tls_conn_free(struct kr_tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

int kr_tls_conn_feed(struct kr_tls_conn *c, const void *p, size_t n)
{
    return n > INT_MAX || BIO_write(c->net_in, p, (int)n) != (int)n ? KR_ENOMEM
                                                                    : 0;
}

/* The server side checks the client's name itself (SSL_set1_host only
 * applies to the certificate the peer presents to a client). */
static bool peer_has_name(SSL *ssl, const char *name)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);

    return cert != NULL &&
           X509_check_host(cert, name, strlen(name), 0, NULL) == 1;
}

int kr_tls_conn_handshake(struct kr_tls_conn *c, char *errmsg)
{
    int rv = SSL_do_handshake(c->ssl);
    long verify;

    if (rv != 1) {
        int e = SSL_get_error(c->ssl, rv);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        verify = SSL_get_verify_result(c->ssl);
        if (verify != X509_V_OK)
            return kr_errf(errmsg, KR_ECRYPTO,
                           "tls: peer certificate rejected: %s",
                           X509_verify_cert_error_string(verify));
        ssl_fail(errmsg, "handshake failed", NULL);
        return KR_ECRYPTO;
    }
    if (SSL_get_verify_result(c->ssl) != X509_V_OK ||
        SSL_get0_peer_certificate(c->ssl) == NULL)
        return kr_errf(errmsg, KR_ECRYPTO,
                       "tls: peer presented no valid certificate");
    if (c->server && *c->expect_name != '\0' &&
        !peer_has_name(c->ssl, c->expect_name))
        return kr_errf(errmsg, KR_ECRYPTO,
                       "tls: peer certificate is not for %s", c->expect_name);
    return 1;
}

long kr_tls_conn_read(struct kr_tls_conn *c, void *p, size_t cap)
{
    int n = SSL_read(c->ssl, p, cap > INT_MAX ? INT_MAX : (int)cap);

    if (n > 0)
        return n;
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        ERR_clear_error();
        return KR_EIO;
    }
}

int kr_tls_conn_write(struct kr_tls_conn *c, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (n > INT_MAX || SSL_write(c->ssl, p, (int)n) != (int)n) {
        ERR_clear_error();
        return KR_ECRYPTO;
    }
    return 0;
}

size_t kr_tls_conn_drain(struct kr_tls_conn *c, void *p, size_t cap)
{
    int n = BIO_read(c->net_out, p, cap > INT_MAX ? INT_MAX : (int)cap);

    return n > 0 ? (size_t)n : 0;
}
