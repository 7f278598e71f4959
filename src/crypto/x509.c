/*
 * See x509.h.  Extensions are built as OpenSSL structures rather than
 * through the X509V3_EXT_conf text syntax, so that user-supplied names
 * (SANs, name constraints) cannot inject extra syntax such as ",DNS:x".
 * The layout follows what Go's crypto/x509 emits for Nomad's templates,
 * so certificates from `nomad tls` and `keyraft tls` look alike to a
 * verifier.
 */
#include "crypto/x509.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/err.h"
#include "crypto/rand.h"

#define SERIAL_BYTES 16 /* Nomad: uniform in [0, 2^128) */
#define CN_MAX 64       /* ub-common-name, RFC 5280 */
#define DNS_NAME_MAX 253

/* Reports a failed OpenSSL call with the library's reason, and empties
 * the thread's error queue so it cannot leak into a later report. */
static int ossl_fail(char *errmsg, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "unknown error";

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    return kr_errf(errmsg, KR_ECRYPTO, "%s: %s", what, reason);
}

/* Names go into IA5String SANs and constraints: printable ASCII only. */
static bool valid_dns_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return true;
}

static bool valid_days(int days)
{
    return days >= 1 && days <= KR_X509_MAX_DAYS;
}

/* A fresh P-256 key, or NULL. */
static EVP_PKEY *new_p256(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* Sets a random, non-zero 128-bit serial on x; with decimal != NULL also
 * returns it in decimal (free with OPENSSL_free). */
static int set_random_serial(X509 *x, char **decimal, char *errmsg)
{
    uint8_t raw[SERIAL_BYTES];
    BIGNUM *bn = NULL;
    int rv = KR_ECRYPTO;

    do {
        if (kr_rand_bytes(raw, sizeof(raw)) != 0) {
            rv = kr_errf(errmsg, KR_ECRYPTO, "no random bytes for a serial");
            goto out;
        }
        BN_free(bn);
        bn = BN_bin2bn(raw, (int)sizeof(raw), NULL);
        if (bn == NULL) {
            rv = ossl_fail(errmsg, "serial number");
            goto out;
        }
    } while (BN_is_zero(bn));
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        rv = ossl_fail(errmsg, "serial number");
        goto out;
    }
    if (decimal != NULL) {
        *decimal = BN_bn2dec(bn);
        if (*decimal == NULL) {
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
            goto out;
        }
    }
    rv = 0;
out:
    BN_free(bn);
    return rv;
}

/* Nomad's key identifier: SHA-256 over the DER SubjectPublicKeyInfo. */
static ASN1_OCTET_STRING *key_id(EVP_PKEY *pk)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *os = NULL;
    int len = i2d_PUBKEY(pk, &der);

    if (len <= 0)
        return NULL;
    if (EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) == 1) {
        os = ASN1_OCTET_STRING_new();
        if (os != NULL && ASN1_OCTET_STRING_set(os, md, (int)mdlen) != 1) {
            ASN1_OCTET_STRING_free(os);
            os = NULL;
        }
    }
    OPENSSL_free(der);
    return os;
}

/* Adds one extension from its OpenSSL structure (borrowed). */
static int add_ext(X509 *x, int nid, void *value, bool critical, char *errmsg)
{
    if (X509_add1_ext_i2d(x, nid, value, critical ? 1 : 0,
                          X509V3_ADD_DEFAULT) != 1)
        return ossl_fail(errmsg, OBJ_nid2sn(nid));
    return 0;
}

static int add_basic_constraints(X509 *x, bool ca, char *errmsg)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int rv;

    if (bc == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    /* DER encodes TRUE as 0xFF, and OpenSSL writes the int's low byte. */
    bc->ca = ca ? 0xFF : 0;
    rv = add_ext(x, NID_basic_constraints, bc, true, errmsg);
    BASIC_CONSTRAINTS_free(bc);
    return rv;
}

/* keyUsage from bit numbers (RFC 5280 4.2.1.3), marked critical. */
static int add_key_usage(X509 *x, const int *bits, size_t n, char *errmsg)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int rv = 0;

    if (ku == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (ASN1_BIT_STRING_set_bit(ku, bits[i], 1) != 1)
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    }
    if (rv == 0)
        rv = add_ext(x, NID_key_usage, ku, true, errmsg);
    ASN1_BIT_STRING_free(ku);
    return rv;
}

static int add_ext_key_usage(X509 *x, unsigned eku, char *errmsg)
{
    EXTENDED_KEY_USAGE *ext = sk_ASN1_OBJECT_new_null();
    int rv = 0;

    if (ext == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    /* OBJ_nid2obj returns static objects: the stack borrows them. */
    if ((eku & KR_X509_EKU_SERVER_AUTH) != 0 &&
        sk_ASN1_OBJECT_push(ext, OBJ_nid2obj(NID_server_auth)) <= 0)
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    if (rv == 0 && (eku & KR_X509_EKU_CLIENT_AUTH) != 0 &&
        sk_ASN1_OBJECT_push(ext, OBJ_nid2obj(NID_client_auth)) <= 0)
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    if (rv == 0)
        rv = add_ext(x, NID_ext_key_usage, ext, false, errmsg);
    sk_ASN1_OBJECT_free(ext);
    return rv;
}

/* subjectKeyIdentifier of pk, and an authorityKeyIdentifier naming the
 * issuer: the certificate's own key when self_signed, else issuer_ski
 * (left out when the issuer has no SKI, as Go does). */
static int add_key_ids(X509 *x, EVP_PKEY *pk, bool self_signed,
                       const ASN1_OCTET_STRING *issuer_ski, char *errmsg)
{
    ASN1_OCTET_STRING *ski = key_id(pk);
    AUTHORITY_KEYID *akid = NULL;
    int rv;

    if (ski == NULL)
        return ossl_fail(errmsg, "subject key identifier");
    if (self_signed)
        issuer_ski = ski;
    rv = add_ext(x, NID_subject_key_identifier, ski, false, errmsg);
    if (rv == 0 && issuer_ski != NULL) {
        akid = AUTHORITY_KEYID_new();
        if (akid != NULL)
            akid->keyid = ASN1_OCTET_STRING_dup(issuer_ski);
        if (akid == NULL || akid->keyid == NULL)
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        else
            rv = add_ext(x, NID_authority_key_identifier, akid, false, errmsg);
    }
    AUTHORITY_KEYID_free(akid);
    ASN1_OCTET_STRING_free(ski);
    return rv;
}

/* A GEN_DNS general name holding a copy of name, or NULL. */
static GENERAL_NAME *dns_gen(const char *name)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    if (g == NULL || s == NULL ||
        ASN1_STRING_set(s, name, (int)strlen(name)) != 1) {
        GENERAL_NAME_free(g);
        ASN1_IA5STRING_free(s);
        return NULL;
    }
    GENERAL_NAME_set0_value(g, GEN_DNS, s);
    return g;
}

/* A GEN_IPADD general name for the 4 or 16 bytes of addr, or NULL. */
static GENERAL_NAME *ip_gen(const uint8_t *addr, int len)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

    if (g == NULL || os == NULL || ASN1_OCTET_STRING_set(os, addr, len) != 1) {
        GENERAL_NAME_free(g);
        ASN1_OCTET_STRING_free(os);
        return NULL;
    }
    GENERAL_NAME_set0_value(g, GEN_IPADD, os);
    return g;
}

/* Parses IPv4 or IPv6 text into out[16]; returns the length or 0. */
static int parse_ip(const char *text, uint8_t out[16])
{
    if (inet_pton(AF_INET, text, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, text, out) == 1)
        return 16;
    return 0;
}

static int add_sans(X509 *x, const struct kr_x509_cert_opts *o, char *errmsg)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int rv = 0;

    if (gens == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    for (size_t i = 0; i < o->n_dns_names && rv == 0; i++) {
        GENERAL_NAME *g = dns_gen(o->dns_names[i]);

        if (g == NULL || sk_GENERAL_NAME_push(gens, g) <= 0) {
            GENERAL_NAME_free(g);
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < o->n_ip_addresses && rv == 0; i++) {
        uint8_t addr[16];
        int len = parse_ip(o->ip_addresses[i], addr);
        GENERAL_NAME *g = ip_gen(addr, len);

        if (g == NULL || sk_GENERAL_NAME_push(gens, g) <= 0) {
            GENERAL_NAME_free(g);
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        }
    }
    if (rv == 0 && sk_GENERAL_NAME_num(gens) > 0)
        rv = add_ext(x, NID_subject_alt_name, gens, false, errmsg);
    GENERAL_NAMES_free(gens);
    return rv;
}

/* Critical nameConstraints permitting only the given DNS subtrees. */
static int add_name_constraints(X509 *x, const struct kr_x509_ca_opts *o,
                                char *errmsg)
{
    NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();
    int rv = 0;

    if (nc == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null();
    if (nc->permittedSubtrees == NULL)
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
    for (size_t i = 0; i < o->n_permitted_dns && rv == 0; i++) {
        GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
        GENERAL_NAME *g = dns_gen(o->permitted_dns[i]);

        if (st == NULL || g == NULL) {
            GENERAL_SUBTREE_free(st);
            GENERAL_NAME_free(g);
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
            break;
        }
        GENERAL_NAME_free(st->base);
        st->base = g;
        if (sk_GENERAL_SUBTREE_push(nc->permittedSubtrees, st) <= 0) {
            GENERAL_SUBTREE_free(st);
            rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        }
    }
    if (rv == 0)
        rv = add_ext(x, NID_name_constraints, nc, true, errmsg);
    NAME_CONSTRAINTS_free(nc);
    return rv;
}

/* Appends one subject attribute unless value is NULL or empty. */
static int add_rdn(X509_NAME *name, int nid, const char *value, char *errmsg)
{
    if (value == NULL || *value == '\0')
        return 0;
    if (X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
                                   (const unsigned char *)value, -1, -1,
                                   0) != 1) {
        ERR_clear_error();
        return kr_errf(errmsg, KR_EINVAL, "invalid %s \"%s\"", OBJ_nid2ln(nid),
                       value);
    }
    return 0;
}

/* Version, serial, validity, subject, issuer name and public key. */
static int set_basics(X509 *x, X509_NAME *subject, X509_NAME *issuer,
                      EVP_PKEY *pk, int days, char *errmsg)
{
    time_t now = time(NULL);

    if (X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now) == NULL ||
        X509_set_subject_name(x, subject) != 1 ||
        X509_set_issuer_name(x, issuer) != 1 || X509_set_pubkey(x, pk) != 1)
        return ossl_fail(errmsg, "certificate fields");
    return 0;
}

/* The digest X509_sign needs for a signer key: none for EdDSA (which
 * hashes internally), SHA-2 sized to the curve for ECDSA (as Go picks),
 * SHA-256 for RSA.  *ok is false for key types a CA may not have. */
static const EVP_MD *sign_digest(EVP_PKEY *k, bool *ok)
{
    *ok = true;
    if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448"))
        return NULL;
    if (EVP_PKEY_is_a(k, "EC")) {
        if (EVP_PKEY_get_bits(k) > 384)
            return EVP_sha512();
        if (EVP_PKEY_get_bits(k) > 256)
            return EVP_sha384();
        return EVP_sha256();
    }
    if (EVP_PKEY_is_a(k, "RSA"))
        return EVP_sha256();
    *ok = false;
    return NULL;
}

static int sign_cert(X509 *x, EVP_PKEY *signer, char *errmsg)
{
    bool ok = false;
    const EVP_MD *md = sign_digest(signer, &ok);

    if (!ok)
        return kr_errf(errmsg, KR_EINVAL,
                       "unsupported CA key type %s (use EC, RSA or Ed25519)",
                       EVP_PKEY_get0_type_name(signer));
    if (X509_sign(x, signer, md) <= 0)
        return ossl_fail(errmsg, "signing the certificate");
    return 0;
}

/* Copies the PEM encoding of x and pk into out. */
static int export_pair(X509 *x, EVP_PKEY *pk, struct kr_x509_pair *out,
                       char *errmsg)
{
    BIO *cb = BIO_new(BIO_s_mem());
    /* The secure-memory BIO: secure heap when set up, wiped on free. */
    BIO *kb = BIO_new(BIO_s_secmem());
    char *p = NULL;
    long n;
    int rv = 0;

    if (cb == NULL || kb == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    if (PEM_write_bio_X509(cb, x) != 1 ||
        PEM_write_bio_PrivateKey_traditional(kb, pk, NULL, NULL, 0, NULL,
                                             NULL) != 1) {
        rv = ossl_fail(errmsg, "PEM encoding");
        goto out;
    }
    n = BIO_get_mem_data(cb, &p);
    if (n > 0)
        out->cert_pem = malloc((size_t)n + 1);
    if (out->cert_pem == NULL) {
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(out->cert_pem, p, (size_t)n);
    out->cert_pem[n] = '\0';
    out->cert_len = (size_t)n;
    n = BIO_get_mem_data(kb, &p);
    out->key_pem = n > 0 ? kr_secret_dup(p, (size_t)n) : NULL;
    if (out->key_pem == NULL)
        rv = kr_errf(errmsg, KR_ENOMEM, "out of memory");
out:
    if (rv != 0)
        kr_x509_pair_free(out);
    BIO_free(cb);
    BIO_free(kb);
    return rv;
}

/* Not isalpha(): that depends on the locale. */
static bool ascii_letter(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int check_ca_opts(const struct kr_x509_ca_opts *o, char *errmsg)
{
    const char *c = o->country;

    if (o->common_name == NULL || o->common_name[0] == '\0')
        return kr_errf(errmsg, KR_EINVAL, "a CA needs a common name");
    if (!valid_days(o->days))
        return kr_errf(errmsg, KR_EINVAL,
                       "validity of %d days is out of range (1 to %d)", o->days,
                       KR_X509_MAX_DAYS);
    if (c != NULL && c[0] != '\0' &&
        (strlen(c) != 2 || !ascii_letter(c[0]) || !ascii_letter(c[1])))
        return kr_errf(errmsg, KR_EINVAL,
                       "country \"%s\" is not a two-letter code", c);
    for (size_t i = 0; i < o->n_permitted_dns; i++) {
        if (!valid_dns_name(o->permitted_dns[i]))
            return kr_errf(errmsg, KR_EINVAL,
                           "invalid DNS name constraint \"%s\"",
                           o->permitted_dns[i]);
    }
    return 0;
}

int kr_x509_ca_create(const struct kr_x509_ca_opts *opts,
                      struct kr_x509_pair *out, char *errmsg)
{
    static const int ca_usage[] = {0 /* digitalSignature */,
                                   5 /* keyCertSign */, 6 /* cRLSign */};
    EVP_PKEY *pk = NULL;
    X509 *x = NULL;
    X509_NAME *name = NULL;
    char *serial = NULL, cn[CN_MAX + 1];
    int rv;

    memset(out, 0, sizeof(*out));
    rv = check_ca_opts(opts, errmsg);
    if (rv != 0)
        goto out;
    pk = new_p256();
    x = X509_new();
    name = X509_NAME_new();
    if (pk == NULL || x == NULL || name == NULL) {
        rv = ossl_fail(errmsg, "generating the CA key");
        goto out;
    }
    rv = set_random_serial(x, &serial, errmsg);
    if (rv != 0)
        goto out;
    if ((size_t)snprintf(cn, sizeof(cn), "%s %s", opts->common_name, serial) >=
        sizeof(cn)) {
        rv = kr_errf(errmsg, KR_EINVAL,
                     "common name \"%s\" is too long: with the serial "
                     "number appended it must fit in %d characters",
                     opts->common_name, CN_MAX);
        goto out;
    }
    /* Go's pkix.Name order: C, O, OU, L, ST, street, postalCode, CN. */
    rv = add_rdn(name, NID_countryName, opts->country, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_organizationName, opts->organization, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_organizationalUnitName,
                     opts->organizational_unit, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_localityName, opts->locality, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_stateOrProvinceName, opts->province, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_streetAddress, opts->street_address, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_postalCode, opts->postal_code, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_commonName, cn, errmsg);
    if (rv == 0)
        rv = set_basics(x, name, name, pk, opts->days, errmsg);
    if (rv == 0)
        rv = add_basic_constraints(x, true, errmsg);
    if (rv == 0)
        rv = add_key_usage(x, ca_usage, 3, errmsg);
    if (rv == 0)
        rv = add_key_ids(x, pk, true, NULL, errmsg);
    if (rv == 0 && opts->n_permitted_dns > 0)
        rv = add_name_constraints(x, opts, errmsg);
    if (rv == 0)
        rv = sign_cert(x, pk, errmsg);
    if (rv == 0)
        rv = export_pair(x, pk, out, errmsg);
out:
    OPENSSL_free(serial);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rv;
}

static int check_cert_opts(const struct kr_x509_cert_opts *o, char *errmsg)
{
    uint8_t addr[16];

    if (o->common_name == NULL || !valid_dns_name(o->common_name) ||
        strlen(o->common_name) > CN_MAX)
        return kr_errf(errmsg, KR_EINVAL, "invalid common name \"%s\"",
                       o->common_name == NULL ? "" : o->common_name);
    if (!valid_days(o->days))
        return kr_errf(errmsg, KR_EINVAL,
                       "validity of %d days is out of range (1 to %d)", o->days,
                       KR_X509_MAX_DAYS);
    for (size_t i = 0; i < o->n_dns_names; i++) {
        if (!valid_dns_name(o->dns_names[i]))
            return kr_errf(errmsg, KR_EINVAL, "invalid DNS name \"%s\"",
                           o->dns_names[i]);
    }
    for (size_t i = 0; i < o->n_ip_addresses; i++) {
        if (parse_ip(o->ip_addresses[i], addr) == 0)
            return kr_errf(errmsg, KR_EINVAL, "invalid IP address \"%s\"",
                           o->ip_addresses[i]);
    }
    return 0;
}

/* PEM callback: encrypted keys are refused instead of prompting. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Parses the CA certificate and its key and checks that they belong
 * together.  On failure *ca_out and *key_out may already be set: the
 * caller frees them either way. */
static int load_ca(const char *pem, size_t len, const struct kr_secret *key,
                   X509 **ca_out, EVP_PKEY **key_out, char *errmsg)
{
    BIO *b = NULL;

    if (len > INT_MAX || key == NULL || key->len > INT_MAX)
        return kr_errf(errmsg, KR_EINVAL, "CA files too large");
    b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    *ca_out = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (*ca_out == NULL) {
        ERR_clear_error();
        return kr_errf(errmsg, KR_EINVAL,
                       "CA: no PEM-encoded certificate found");
    }
    b = BIO_new_mem_buf(key->data, (int)key->len);
    if (b == NULL)
        return kr_errf(errmsg, KR_ENOMEM, "out of memory");
    *key_out = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    ERR_clear_error();
    if (*key_out == NULL) {
        if (memmem(key->data, key->len, "ENCRYPTED", 9) != NULL)
            return kr_errf(errmsg, KR_EINVAL,
                           "CA key: encrypted keys are not supported");
        return kr_errf(errmsg, KR_EINVAL,
                       "CA key: no PEM-encoded private key found");
    }
    if (X509_check_private_key(*ca_out, *key_out) != 1) {
        ERR_clear_error();
        return kr_errf(errmsg, KR_EINVAL,
                       "CA key does not match the CA certificate");
    }
    return 0;
}

/*
 * Checks leaf the way a peer will: chained to ca (trusted even if it is
 * not self-signed, as Go's root pool treats any certificate), valid now,
 * within ca's name constraints and valid for host.
 */
static int verify_leaf(X509 *ca, X509 *leaf, const char *host, char *errmsg)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_VERIFY_PARAM *param;
    int rv = 0;

    if (store == NULL || ctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
        X509_STORE_CTX_init(ctx, store, leaf, NULL) != 1) {
        rv = ossl_fail(errmsg, "verifying the certificate");
        goto out;
    }
    param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    if (X509_VERIFY_PARAM_set1_host(param, host, 0) != 1) {
        rv = ossl_fail(errmsg, "verifying the certificate");
        goto out;
    }
    if (X509_verify_cert(ctx) != 1) {
        ERR_clear_error();
        rv = kr_errf(
            errmsg, KR_EINVAL,
            "the new certificate for \"%s\" does not verify "
            "against the CA: %s",
            host, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rv;
}

int kr_x509_cert_create(const char *ca_pem, size_t ca_len,
                        const struct kr_secret *ca_key,
                        const struct kr_x509_cert_opts *opts,
                        struct kr_x509_pair *out, char *errmsg)
{
    static const int leaf_usage[] = {0 /* digitalSignature */,
                                     2 /* keyEncipherment */};
    X509 *ca = NULL, *x = NULL;
    EVP_PKEY *signer = NULL, *pk = NULL;
    X509_NAME *name = NULL;
    int rv;

    memset(out, 0, sizeof(*out));
    rv = check_cert_opts(opts, errmsg);
    if (rv == 0)
        rv = load_ca(ca_pem, ca_len, ca_key, &ca, &signer, errmsg);
    if (rv != 0)
        goto out;
    pk = new_p256();
    x = X509_new();
    name = X509_NAME_new();
    if (pk == NULL || x == NULL || name == NULL) {
        rv = ossl_fail(errmsg, "generating the key");
        goto out;
    }
    rv = set_random_serial(x, NULL, errmsg);
    if (rv == 0)
        rv = add_rdn(name, NID_commonName, opts->common_name, errmsg);
    if (rv == 0)
        rv = set_basics(x, name, X509_get_subject_name(ca), pk, opts->days,
                        errmsg);
    if (rv == 0)
        rv = add_basic_constraints(x, false, errmsg);
    if (rv == 0)
        rv = add_key_usage(x, leaf_usage, 2, errmsg);
    if (rv == 0 && opts->ext_key_usage != 0)
        rv = add_ext_key_usage(x, opts->ext_key_usage, errmsg);
    if (rv == 0)
        rv = add_key_ids(x, pk, false, X509_get0_subject_key_id(ca), errmsg);
    if (rv == 0)
        rv = add_sans(x, opts, errmsg);
    if (rv == 0)
        rv = sign_cert(x, signer, errmsg);
    if (rv == 0)
        rv = verify_leaf(ca, x, opts->common_name, errmsg);
    if (rv == 0)
        rv = export_pair(x, pk, out, errmsg);
out:
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(signer);
    X509_free(ca);
    return rv;
}

void kr_x509_pair_free(struct kr_x509_pair *p)
{
    if (p == NULL)
        return;
    free(p->cert_pem);
    kr_secret_free(p->key_pem);
    memset(p, 0, sizeof(*p));
}
