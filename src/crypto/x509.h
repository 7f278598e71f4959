/*
 * X.509 for the agent TLS tooling (`keyraft tls ca create`, `keyraft tls
 * cert create`): a self-signed CA, and leaf certificates signed by it,
 * shaped like the ones Nomad's helper/tlsutil makes.
 *
 * - New keys are ECDSA P-256; serial numbers are 128 random bits.
 * - Key identifiers (SKI, and the AKI that points at the issuer's SKI) are
 *   the SHA-256 of the DER SubjectPublicKeyInfo, as Nomad computes them.
 * - A CA has basicConstraints CA:TRUE and keyUsage keyCertSign, cRLSign
 *   and digitalSignature (both critical) and, when asked, critical DNS
 *   name constraints.  A leaf has CA:FALSE, keyUsage digitalSignature and
 *   keyEncipherment, the requested extended key usages and its SANs.
 *
 * Security property: a private key leaves this module only as PEM text in
 * a struct kr_secret (secret memory, wiped on free); OpenSSL's working
 * copies live in buffers OpenSSL wipes when they are freed.  A CA key is
 * read from a kr_secret and never copied elsewhere by this module.  A leaf
 * is verified against its CA (signature, validity, name constraints, host
 * name) before it is returned, so a CA key that does not match the CA
 * certificate, or a name the CA may not certify, fails here rather than
 * in a TLS handshake later.
 *
 * No shared state: every function may be called from any thread.
 */
#ifndef KR_CRYPTO_X509_H
#define KR_CRYPTO_X509_H

#include <stddef.h>

#include "crypto/secmem.h"

/* Extended key usages for struct kr_x509_cert_opts.ext_key_usage. */
#define KR_X509_EKU_SERVER_AUTH 0x1u
#define KR_X509_EKU_CLIENT_AUTH 0x2u

/* Upper bound on a validity period, in days (100 years). */
#define KR_X509_MAX_DAYS 36500

/* What a new CA says about itself.  Strings are borrowed for the call. */
struct kr_x509_ca_opts {
    /* Required.  " <serial in decimal>" is appended, as Nomad does, so
     * that two CAs made with the same options have distinct names. */
    const char *common_name;
    /* Subject attributes; NULL or "" leaves the attribute out.  country
     * must be two ASCII letters. */
    const char *country;
    const char *organization;
    const char *organizational_unit;
    const char *locality;
    const char *province;
    const char *street_address;
    const char *postal_code;
    int days; /* validity from now, 1..KR_X509_MAX_DAYS */
    /* DNS name constraints (permitted subtrees, marked critical); the CA
     * is unconstrained when n_permitted_dns is 0. */
    const char *const *permitted_dns;
    size_t n_permitted_dns;
};

/* What a new leaf certificate says.  Strings are borrowed for the call. */
struct kr_x509_cert_opts {
    const char *common_name;      /* required; also the name verified against */
    const char *const *dns_names; /* DNS SANs, in order */
    size_t n_dns_names;
    const char *const *ip_addresses; /* IP SANs as IPv4 or IPv6 text */
    size_t n_ip_addresses;
    unsigned ext_key_usage; /* KR_X509_EKU_* bits; 0 leaves EKU out */
    int days;               /* validity from now, 1..KR_X509_MAX_DAYS */
};

/* A certificate and its new private key, both as PEM text. */
struct kr_x509_pair {
    char *cert_pem; /* "CERTIFICATE", NUL-terminated, ordinary heap */
    size_t cert_len;
    struct kr_secret *key_pem; /* "EC PRIVATE KEY" (SEC 1), no NUL */
};

/*
 * Generates a P-256 key and a self-signed CA certificate for it.  Borrows
 * opts.  On success returns 0 and fills *out, which the caller owns and
 * releases with kr_x509_pair_free; on failure returns KR_EINVAL (bad
 * options), KR_ENOMEM or KR_ECRYPTO with errmsg set, and *out is left
 * zeroed.
 */
int kr_x509_ca_create(const struct kr_x509_ca_opts *opts,
                      struct kr_x509_pair *out, char *errmsg);

/*
 * Generates a P-256 key and a certificate for it signed by the CA whose
 * PEM certificate is ca_pem[0..ca_len) and whose PEM private key (EC, RSA
 * or Ed25519; SEC 1, PKCS#1 or unencrypted PKCS#8) is ca_key; both are
 * borrowed.  The certificate is verified against the CA, with
 * opts->common_name as the expected host name, before it is returned.
 * Returns 0 and fills *out (free with kr_x509_pair_free), or KR_EINVAL
 * (bad options or unreadable CA files), KR_ENOMEM or KR_ECRYPTO with
 * errmsg set and *out zeroed.
 */
int kr_x509_cert_create(const char *ca_pem, size_t ca_len,
                        const struct kr_secret *ca_key,
                        const struct kr_x509_cert_opts *opts,
                        struct kr_x509_pair *out, char *errmsg);

/* Frees what *p holds (the key wiped) and zeroes it; the struct itself is
 * the caller's.  A zeroed pair, or NULL, is a no-op. */
void kr_x509_pair_free(struct kr_x509_pair *p);

#endif
