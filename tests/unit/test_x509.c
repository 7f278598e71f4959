/*
 * Unit tests for src/crypto/x509.c and the `keyraft tls` commands: CA
 * shape (basic constraints, key usage, key identifiers, subject, days),
 * leaves that verify against their CA with the right SANs and extended
 * key usages, random and unique serial numbers, name constraints, bad
 * options and bad CA files, and files that are created 0600 and never
 * overwritten.
 *
 * The certificates are inspected with OpenSSL directly rather than
 * through x509.h, so the checks do not trust the code under test.  (Only
 * src/crypto may include OpenSSL in the product; a test oracle may.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/cli.h"
#include "cli/tls.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "crypto/x509.h"

static X509 *parse_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

    BIO_free(b);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *parse_key(const struct kr_secret *pem)
{
    BIO *b = BIO_new_mem_buf(pem->data, (int)pem->len);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);

    BIO_free(b);
    assert_non_null(k);
    return k;
}

static void assert_days(X509 *x, int days)
{
    int pday = -1, psec = -1;

    assert_int_equal(ASN1_TIME_diff(&pday, &psec, X509_get0_notBefore(x),
                                    X509_get0_notAfter(x)),
                     1);
    assert_int_equal(pday, days);
    assert_int_equal(psec, 0);
    /* Valid from now (give or take a slow test machine). */
    assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) <= 0);
    assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
}

static void assert_p256(EVP_PKEY *k)
{
    char group[32] = "";

    assert_true(EVP_PKEY_is_a(k, "EC"));
    assert_int_equal(
        EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof(group), NULL),
        1);
    assert_string_equal(group, "prime256v1");
}

/* SHA-256 of the DER SubjectPublicKeyInfo: Nomad's key identifier. */
static void assert_ski(X509 *x)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
    unsigned char *der = NULL, md[32];
    unsigned int mdlen = 0;
    int len = i2d_PUBKEY(X509_get0_pubkey(x), &der);

    assert_true(len > 0);
    assert_int_equal(
        EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    assert_non_null(ski);
    assert_int_equal(ASN1_STRING_length(ski), 32);
    assert_memory_equal(ASN1_STRING_get0_data(ski), md, 32);
}

static bool ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);

    assert_true(i >= 0);
    return X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

/* The DER of x's basicConstraints value. */
static void assert_bc_der(X509 *x, const unsigned char *der, size_t len)
{
    X509_EXTENSION *e =
        X509_get_ext(x, X509_get_ext_by_NID(x, NID_basic_constraints, -1));
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(e);

    assert_int_equal(ASN1_STRING_length(v), len);
    assert_memory_equal(ASN1_STRING_get0_data(v), der, len);
}

static struct kr_x509_ca_opts ca_opts(int days)
{
    struct kr_x509_ca_opts o = {0};

    o.common_name = "Keyraft Agent CA";
    o.country = "US";
    o.organization = "Keyraft";
    o.organizational_unit = "Keyraft";
    o.locality = "San Francisco";
    o.province = "CA";
    o.street_address = "101 Second Street";
    o.postal_code = "94105";
    o.days = days;
    return o;
}

static void make_ca(struct kr_x509_pair *ca)
{
    struct kr_x509_ca_opts o = ca_opts(1825);
    char err[KR_ERRMSG_SIZE];

    assert_int_equal(kr_x509_ca_create(&o, ca, err), 0);
}

static int make_leaf(const struct kr_x509_pair *ca,
                     const struct kr_x509_cert_opts *o,
                     struct kr_x509_pair *out, char *err)
{
    return kr_x509_cert_create(ca->cert_pem, ca->cert_len, ca->key_pem, o, out,
                               err);
}

static void test_ca_create(void **state)
{
    struct kr_x509_pair ca = {0};
    X509 *x;
    EVP_PKEY *k;
    BIGNUM *serial;
    char *dec, cn[128], expect[128];
    const ASN1_OCTET_STRING *ski, *akid;

    (void)state;
    make_ca(&ca);
    assert_non_null(strstr(ca.cert_pem, "-----BEGIN CERTIFICATE-----"));
    assert_int_equal(strlen(ca.cert_pem), ca.cert_len);
    assert_memory_equal(ca.key_pem->data, "-----BEGIN EC PRIVATE KEY-----", 30);
    x = parse_cert(ca.cert_pem);
    k = parse_key(ca.key_pem);
    assert_p256(k);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    /* basicConstraints CA:TRUE (critical), keyUsage (critical). */
    assert_int_equal(X509_check_ca(x), 1);
    assert_true(ext_critical(x, NID_basic_constraints));
    /* SEQUENCE { BOOLEAN TRUE }: DER's TRUE is 0xFF, nothing else. */
    assert_bc_der(x, (const unsigned char *)"\x30\x03\x01\x01\xff", 5);
    assert_true(ext_critical(x, NID_key_usage));
    assert_int_equal(X509_get_key_usage(x),
                     KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_get_ext_by_NID(x, NID_name_constraints, -1), -1);
    assert_int_equal(X509_get_ext_by_NID(x, NID_ext_key_usage, -1), -1);
    /* SKI = AKI = SHA-256 of the public key. */
    assert_ski(x);
    ski = X509_get0_subject_key_id(x);
    akid = X509_get0_authority_key_id(x);
    assert_non_null(akid);
    assert_int_equal(ASN1_STRING_cmp(ski, akid), 0);
    /* Subject: Nomad's attributes, CN with the serial appended. */
    serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    dec = BN_bn2dec(serial);
    snprintf(expect, sizeof(expect), "Keyraft Agent CA %s", dec);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                              sizeof(cn));
    assert_string_equal(cn, expect);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_countryName, cn,
                              sizeof(cn));
    assert_string_equal(cn, "US");
    X509_NAME_get_text_by_NID(X509_get_subject_name(x),
                              NID_organizationalUnitName, cn, sizeof(cn));
    assert_string_equal(cn, "Keyraft");
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_postalCode, cn,
                              sizeof(cn));
    assert_string_equal(cn, "94105");
    assert_int_equal(
        X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    assert_days(x, 1825);
    OPENSSL_free(dec);
    BN_free(serial);
    EVP_PKEY_free(k);
    X509_free(x);
    kr_x509_pair_free(&ca);
    kr_x509_pair_free(&ca); /* idempotent */
}

static void test_ca_optional_attributes(void **state)
{
    struct kr_x509_ca_opts o = ca_opts(10);
    struct kr_x509_pair ca = {0};
    char err[KR_ERRMSG_SIZE];
    X509 *x;

    (void)state;
    o.street_address = "";
    o.postal_code = NULL;
    o.country = "de";
    assert_int_equal(kr_x509_ca_create(&o, &ca, err), 0);
    x = parse_cert(ca.cert_pem);
    assert_int_equal(X509_NAME_get_index_by_NID(X509_get_subject_name(x),
                                                NID_streetAddress, -1),
                     -1);
    assert_int_equal(X509_NAME_get_index_by_NID(X509_get_subject_name(x),
                                                NID_postalCode, -1),
                     -1);
    assert_days(x, 10);
    X509_free(x);
    kr_x509_pair_free(&ca);
}

static void test_cert_verifies_against_ca(void **state)
{
    static const char *const dns[] = {"foo.example.com",
                                      "server.global.keyraft", "localhost"};
    static const char *const ips[] = {"10.1.2.3", "127.0.0.1", "::1"};
    struct kr_x509_cert_opts o = {0};
    struct kr_x509_pair ca = {0}, leaf = {0};
    char err[KR_ERRMSG_SIZE], cn[128];
    X509 *cax, *x;
    EVP_PKEY *k;
    X509_STORE *store;
    X509_STORE_CTX *ctx;

    (void)state;
    make_ca(&ca);
    o.common_name = "server.global.keyraft";
    o.dns_names = dns;
    o.n_dns_names = 3;
    o.ip_addresses = ips;
    o.n_ip_addresses = 3;
    o.ext_key_usage = KR_X509_EKU_SERVER_AUTH | KR_X509_EKU_CLIENT_AUTH;
    o.days = 365;
    assert_int_equal(make_leaf(&ca, &o, &leaf, err), 0);
    cax = parse_cert(ca.cert_pem);
    x = parse_cert(leaf.cert_pem);
    k = parse_key(leaf.key_pem);
    assert_p256(k);
    assert_int_equal(X509_check_private_key(x, k), 1);
    /* The chain verifies with OpenSSL's verifier. */
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_add_cert(store, cax), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    assert_int_equal(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    /* Subject, SANs, extensions. */
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                              sizeof(cn));
    assert_string_equal(cn, "server.global.keyraft");
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(X509_check_host(x, dns[i], 0, 0, NULL), 1);
        assert_int_equal(X509_check_ip_asc(x, ips[i], 0), 1);
    }
    assert_int_equal(X509_check_host(x, "other.example.com", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.2", 0), 0);
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(ext_critical(x, NID_basic_constraints));
    /* cA FALSE is the DEFAULT, so DER leaves it out. */
    assert_bc_der(x, (const unsigned char *)"\x30\x00", 2);
    assert_true(ext_critical(x, NID_key_usage));
    assert_false(ext_critical(x, NID_ext_key_usage));
    assert_int_equal(X509_get_key_usage(x),
                     KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    assert_int_equal(X509_get_extended_key_usage(x),
                     XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_ski(x);
    assert_int_equal(ASN1_STRING_cmp(X509_get0_authority_key_id(x),
                                     X509_get0_subject_key_id(cax)),
                     0);
    assert_days(x, 365);
    EVP_PKEY_free(k);
    X509_free(x);
    X509_free(cax);
    kr_x509_pair_free(&leaf);
    kr_x509_pair_free(&ca);
}

static void test_cert_eku_choices(void **state)
{
    struct kr_x509_cert_opts o = {0};
    struct kr_x509_pair ca = {0}, leaf = {0};
    char err[KR_ERRMSG_SIZE];
    X509 *x;

    (void)state;
    make_ca(&ca);
    o.common_name = "cli.global.keyraft";
    o.ext_key_usage = KR_X509_EKU_CLIENT_AUTH;
    o.days = 1;
    assert_int_equal(make_leaf(&ca, &o, &leaf, err), 0);
    x = parse_cert(leaf.cert_pem);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    /* No SANs asked for: none written (the CN still names the host). */
    assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
    assert_days(x, 1);
    X509_free(x);
    kr_x509_pair_free(&leaf);

    o.ext_key_usage = 0;
    assert_int_equal(make_leaf(&ca, &o, &leaf, err), 0);
    x = parse_cert(leaf.cert_pem);
    assert_int_equal(X509_get_ext_by_NID(x, NID_ext_key_usage, -1), -1);
    X509_free(x);
    kr_x509_pair_free(&leaf);
    kr_x509_pair_free(&ca);
}

static void test_serials_random_and_unique(void **state)
{
    enum { N = 32 };
    struct kr_x509_cert_opts o = {0};
    struct kr_x509_pair ca = {0}, leaf = {0};
    BIGNUM *seen[N + 1] = {0};
    char err[KR_ERRMSG_SIZE];
    int maxbits = 0;

    (void)state;
    make_ca(&ca);
    o.common_name = "client.global.keyraft";
    o.days = 30;
    for (int i = 0; i <= N; i++) {
        X509 *x = parse_cert(ca.cert_pem);

        if (i > 0) {
            X509_free(x);
            assert_int_equal(make_leaf(&ca, &o, &leaf, err), 0);
            x = parse_cert(leaf.cert_pem);
            kr_x509_pair_free(&leaf);
        }
        seen[i] = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        assert_non_null(seen[i]);
        assert_false(BN_is_negative(seen[i]));
        assert_false(BN_is_zero(seen[i]));
        assert_true(BN_num_bits(seen[i]) <= 128);
        if (BN_num_bits(seen[i]) > maxbits)
            maxbits = BN_num_bits(seen[i]);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(BN_cmp(seen[i], seen[j]), 0);
        X509_free(x);
    }
    /* 33 draws of 128 random bits: the largest is near 2^128 (all would
     * have to be below 2^120 with probability 2^-264 for this to fail). */
    assert_true(maxbits > 120);
    for (int i = 0; i <= N; i++)
        BN_free(seen[i]);
    kr_x509_pair_free(&ca);
}

static void test_name_constraints(void **state)
{
    static const char *const permitted[] = {"foo", "localhost", "keyraft"};
    static const char *const good[] = {"server.global.foo",
                                       "server.global.keyraft", "localhost"};
    static const char *const bad[] = {"server.global.foo", "evil.com"};
    struct kr_x509_ca_opts co = ca_opts(100);
    struct kr_x509_cert_opts o = {0};
    struct kr_x509_pair ca = {0}, leaf = {0};
    char err[KR_ERRMSG_SIZE];
    X509 *x;

    (void)state;
    co.permitted_dns = permitted;
    co.n_permitted_dns = 3;
    assert_int_equal(kr_x509_ca_create(&co, &ca, err), 0);
    x = parse_cert(ca.cert_pem);
    assert_true(ext_critical(x, NID_name_constraints));
    X509_free(x);

    o.common_name = "server.global.foo";
    o.dns_names = good;
    o.n_dns_names = 3;
    o.days = 10;
    assert_int_equal(make_leaf(&ca, &o, &leaf, err), 0);
    kr_x509_pair_free(&leaf);

    o.dns_names = bad;
    o.n_dns_names = 2;
    assert_int_equal(make_leaf(&ca, &o, &leaf, err), KR_EINVAL);
    assert_non_null(strstr(err, "permitted subtree"));
    assert_null(leaf.cert_pem);
    assert_null(leaf.key_pem);

    o.common_name = "server.global.bar";
    o.n_dns_names = 0;
    assert_int_equal(make_leaf(&ca, &o, &leaf, err), KR_EINVAL);
    kr_x509_pair_free(&ca);
}

static void test_rejects_bad_options(void **state)
{
    static const char *const bad_ip[] = {"1.2.3"};
    static const char *const bad_dns[] = {"a b"};
    static const char *const bad_nc[] = {""};
    struct kr_x509_ca_opts co = ca_opts(0);
    struct kr_x509_cert_opts o = {0};
    struct kr_x509_pair ca = {0}, p = {0};
    char err[KR_ERRMSG_SIZE];

    (void)state;
    assert_int_equal(kr_x509_ca_create(&co, &p, err), KR_EINVAL);
    co.days = KR_X509_MAX_DAYS + 1;
    assert_int_equal(kr_x509_ca_create(&co, &p, err), KR_EINVAL);
    co.days = 1;
    co.country = "USA";
    assert_int_equal(kr_x509_ca_create(&co, &p, err), KR_EINVAL);
    assert_non_null(strstr(err, "two-letter"));
    co.country = "U1";
    assert_int_equal(kr_x509_ca_create(&co, &p, err), KR_EINVAL);
    co.country = NULL;
    co.common_name = "";
    assert_int_equal(kr_x509_ca_create(&co, &p, err), KR_EINVAL);
    co.common_name = "A common name far too long to fit with a serial";
    assert_int_equal(kr_x509_ca_create(&co, &p, err), KR_EINVAL);
    assert_non_null(strstr(err, "too long"));
    co.common_name = "ok";
    co.permitted_dns = bad_nc;
    co.n_permitted_dns = 1;
    assert_int_equal(kr_x509_ca_create(&co, &p, err), KR_EINVAL);
    assert_null(p.cert_pem);

    make_ca(&ca);
    o.common_name = "server.global.keyraft";
    o.days = 0;
    assert_int_equal(make_leaf(&ca, &o, &p, err), KR_EINVAL);
    o.days = 1;
    o.ip_addresses = bad_ip;
    o.n_ip_addresses = 1;
    assert_int_equal(make_leaf(&ca, &o, &p, err), KR_EINVAL);
    assert_non_null(strstr(err, "1.2.3"));
    o.n_ip_addresses = 0;
    o.dns_names = bad_dns;
    o.n_dns_names = 1;
    assert_int_equal(make_leaf(&ca, &o, &p, err), KR_EINVAL);
    o.n_dns_names = 0;
    o.common_name = NULL;
    assert_int_equal(make_leaf(&ca, &o, &p, err), KR_EINVAL);
    assert_null(p.cert_pem);
    assert_null(p.key_pem);
    kr_x509_pair_free(&ca);
}

static void test_rejects_bad_ca_files(void **state)
{
    struct kr_x509_cert_opts o = {0};
    struct kr_x509_pair a = {0}, b = {0}, p = {0}, q = {0};
    struct kr_secret *junk = kr_secret_dup("not a key", 9), *enc;
    char err[KR_ERRMSG_SIZE], *data = NULL;
    EVP_PKEY *k;
    BIO *bio;
    long n;

    (void)state;
    make_ca(&a);
    make_ca(&b);
    o.common_name = "server.global.keyraft";
    o.days = 1;
    /* A's certificate with B's key. */
    assert_int_equal(
        kr_x509_cert_create(a.cert_pem, a.cert_len, b.key_pem, &o, &p, err),
        KR_EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(kr_x509_cert_create("junk", 4, a.key_pem, &o, &p, err),
                     KR_EINVAL);
    assert_int_equal(
        kr_x509_cert_create(a.cert_pem, a.cert_len, junk, &o, &p, err),
        KR_EINVAL);
    /* An encrypted key is refused, not prompted for. */
    k = parse_key(a.key_pem);
    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, k, EVP_aes_256_cbc(),
                                              (unsigned char *)"pw", 2, NULL,
                                              NULL),
                     1);
    n = BIO_get_mem_data(bio, &data);
    enc = kr_secret_dup(data, (size_t)n);
    assert_int_equal(
        kr_x509_cert_create(a.cert_pem, a.cert_len, enc, &o, &p, err),
        KR_EINVAL);
    assert_non_null(strstr(err, "encrypted"));
    /* A leaf is not a CA: OpenSSL's verifier refuses what it signs. */
    assert_int_equal(make_leaf(&a, &o, &p, err), 0);
    assert_int_equal(make_leaf(&p, &o, &q, err), KR_EINVAL);
    assert_non_null(strstr(err, "does not verify"));
    assert_null(q.cert_pem);
    kr_x509_pair_free(&p);
    kr_x509_pair_free(&b);
    kr_secret_free(enc);
    BIO_free(bio);
    EVP_PKEY_free(k);
    kr_secret_free(junk);
    kr_x509_pair_free(&a);
}

/* Makes a fresh empty directory (tmpdir) the working directory; the old
 * one goes to old[0..cap). */
static char tmpdir[64];

static void enter_tmpdir(char *old, size_t cap)
{
    assert_non_null(getcwd(old, cap));
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_x509.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    assert_int_equal(chdir(tmpdir), 0);
}

static void leave_tmpdir(const char *old)
{
    DIR *d = opendir(".");
    struct dirent *e;

    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlink(e->d_name);
    }
    closedir(d);
    assert_int_equal(chdir(old), 0);
    assert_int_equal(rmdir(tmpdir), 0);
}

static size_t count_entries(void)
{
    DIR *d = opendir(".");
    size_t n = 0;

    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 2;
}

static void read_all(const char *path, char *buf, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    size_t n;

    assert_non_null(fp);
    n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

static void test_write_new_never_overwrites(void **state)
{
    char old[4096], buf[64], err[KR_ERRMSG_SIZE];
    struct stat st;
    mode_t mask = umask(022);

    (void)state;
    enter_tmpdir(old, sizeof(old));
    assert_int_equal(kr_cli_tls_write_new("k.pem", "secret", 6, 0600, err), 0);
    assert_int_equal(stat("k.pem", &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(kr_cli_tls_write_new("c.pem", "cert", 4, 0644, err), 0);
    assert_int_equal(stat("c.pem", &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(kr_cli_tls_write_new("k.pem", "other", 5, 0600, err),
                     KR_ECONFLICT);
    assert_non_null(strstr(err, "already exists"));
    read_all("k.pem", buf, sizeof(buf));
    assert_string_equal(buf, "secret");
    /* A dangling symlink is an existing entry too: nothing is written
     * through it. */
    assert_int_equal(symlink("target-that-does-not-exist", "l.pem"), 0);
    assert_int_equal(kr_cli_tls_write_new("l.pem", "x", 1, 0600, err),
                     KR_ECONFLICT);
    assert_int_equal(access("target-that-does-not-exist", F_OK), -1);
    assert_int_equal(kr_cli_tls_write_new("nodir/x.pem", "x", 1, 0600, err),
                     KR_EIO);
    /* No temporary files left behind. */
    assert_int_equal(count_entries(), 3);
    leave_tmpdir(old);
    umask(mask);
}

static int run(const char *const *args)
{
    char *argv[32];
    int argc = 0;

    for (; args[argc] != NULL; argc++)
        argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    return kr_cli_main(argc, argv);
}

static void test_commands_refuse_overwrite(void **state)
{
    static const char *const ca[] = {"keyraft", "tls", "ca", "create", NULL};
    static const char *const server[] = {"keyraft", "tls",     "cert",
                                         "create",  "-server", NULL};
    char old[4096], before[4096], after[4096], key[4096];
    struct stat st;

    (void)state;
    enter_tmpdir(old, sizeof(old));
    assert_int_equal(run(ca), 0);
    assert_int_equal(stat("keyraft-agent-ca-key.pem", &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);
    read_all("keyraft-agent-ca.pem", before, sizeof(before));
    read_all("keyraft-agent-ca-key.pem", key, sizeof(key));
    assert_int_equal(run(ca), 1);
    read_all("keyraft-agent-ca.pem", after, sizeof(after));
    assert_string_equal(before, after);
    read_all("keyraft-agent-ca-key.pem", after, sizeof(after));
    assert_string_equal(key, after);

    assert_int_equal(run(server), 0);
    assert_int_equal(stat("global-server-keyraft.pem", &st), 0);
    assert_int_equal(stat("global-server-keyraft-key.pem", &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);
    read_all("global-server-keyraft.pem", before, sizeof(before));
    assert_int_equal(run(server), 1);
    read_all("global-server-keyraft.pem", after, sizeof(after));
    assert_string_equal(before, after);
    /* Only the key exists: still refused, and the certificate is not
     * created either. */
    unlink("global-server-keyraft.pem");
    assert_int_equal(run(server), 1);
    assert_int_equal(access("global-server-keyraft.pem", F_OK), -1);
    assert_int_equal(count_entries(), 3);
    leave_tmpdir(old);
}

static void test_command_usage_errors(void **state)
{
    static const char *const none[] = {"keyraft", "tls", "cert", "create",
                                       NULL};
    static const char *const two[] = {"keyraft", "tls",     "cert", "create",
                                      "-cli",    "-server", NULL};
    static const char *const dom[] = {"keyraft", "tls", "ca", "create",
                                      "-domain", "x",   NULL};
    static const char *const path[] = {
        "keyraft",          "tls",     "ca",   "create",
        "-name-constraint", "-domain", "../x", NULL};
    static const char *const extra[] = {
        "keyraft",     "tls", "ca", "create", "-additional-domain",
        "example.com", NULL};
    char old[4096];

    (void)state;
    enter_tmpdir(old, sizeof(old));
    assert_int_equal(run(none), 2);
    assert_int_equal(run(two), 2);
    assert_int_equal(run(dom), 2);
    assert_int_equal(run(path), 2);
    assert_int_equal(run(extra), 2);
    assert_int_equal(count_entries(), 0);
    leave_tmpdir(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_create),
        cmocka_unit_test(test_ca_optional_attributes),
        cmocka_unit_test(test_cert_verifies_against_ca),
        cmocka_unit_test(test_cert_eku_choices),
        cmocka_unit_test(test_serials_random_and_unique),
        cmocka_unit_test(test_name_constraints),
        cmocka_unit_test(test_rejects_bad_options),
        cmocka_unit_test(test_rejects_bad_ca_files),
        cmocka_unit_test(test_write_new_never_overwrites),
        cmocka_unit_test(test_commands_refuse_overwrite),
        cmocka_unit_test(test_command_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
