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
#include <stddef.h>

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

/*
 * A client context for server-to-server connections: presents our
 * certificate, verifies the peer against ca_file.  Free with
 * kr_tls_ctx_free.
 */
int kr_tls_client_ctx(struct ssl_ctx_st **out, const struct kr_tls_config *cfg,
                      char *errmsg);

/*
 * One TLS connection driven through memory buffers, so the caller owns
 * the socket I/O (cluster/tls_stream.c).  Not thread safe.
 */
struct kr_tls_conn;

/* expect_name: for a client, the DNS name the server's certificate must
 * carry (NULL: any certificate from the CA).  For a server, the peer must
 * present a certificate from the CA (and, when expect_name is set, carry
 * that name). */
int kr_tls_conn_new(struct kr_tls_conn **out, struct ssl_ctx_st *ctx,
                    bool server, const char *expect_name);
void kr_tls_conn_free(struct kr_tls_conn *c);
/* Feeds bytes received from the network. */
int kr_tls_conn_feed(struct kr_tls_conn *c, const void *p, size_t n);
/* Advances the handshake: 1 done, 0 needs more input, KR_ECRYPTO
 * failed (errmsg says why). */
int kr_tls_conn_handshake(struct kr_tls_conn *c, char *errmsg);
/* Plaintext received: up to cap bytes into p; returns the count, 0 when
 * nothing is buffered, or KR_EIO when the peer closed or failed. */
long kr_tls_conn_read(struct kr_tls_conn *c, void *p, size_t cap);
/* Encrypts plaintext for the network; 0 or KR_ECRYPTO. */
int kr_tls_conn_write(struct kr_tls_conn *c, const void *p, size_t n);
/* Bytes to send to the network: up to cap into p; returns the count. */
size_t kr_tls_conn_drain(struct kr_tls_conn *c, void *p, size_t cap);
