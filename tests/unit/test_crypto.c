/*
 * Unit tests for src/crypto and the aead KEK provider: AES-256-GCM against
 * a published known-answer vector, nonce freshness, authentication
 * failures, wrap/unwrap round trips with tamper detection, and the JWS
 * signers: Ed25519 against RFC 8032, RS256 sign/verify and public numbers.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/secmem.h"
#include "crypto/sign.h"
#include "kms/kms.h"

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;

    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

/* The GCM specification's test case 16 (AES-256, 60-byte plaintext, 20
 * bytes of AAD), also in NIST's gcmEncryptExtIV256 vectors. */
static void test_gcm_known_answer(void **state)
{
    uint8_t key[32], iv[12], aad[20], pt[60], ct[60], tag[16];
    uint8_t out[12 + 60 + 16], back[60];
    struct kr_aead *a = NULL;
    size_t n;

    (void)state;
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
          key);
    unhex("cafebabefacedbaddecaf888", iv);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
          pt);
    unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
          ct);
    unhex("76fc6ece0f4e1768cddf8853bb2d551b", tag);

    assert_int_equal(kr_aead_new(&a, key), 0);
    assert_int_equal(
        kr_aead_seal_with_nonce(a, iv, aad, sizeof(aad), pt, sizeof(pt), out),
        0);
    assert_memory_equal(out, iv, 12);
    assert_memory_equal(out + 12, ct, 60);
    assert_memory_equal(out + 72, tag, 16);
    assert_int_equal(
        kr_aead_open(a, aad, sizeof(aad), out, sizeof(out), back, &n), 0);
    assert_int_equal(n, 60);
    assert_memory_equal(back, pt, 60);
    kr_aead_free(a);
}

static void test_gcm_rejects_tampering(void **state)
{
    uint8_t key[32] = {1}, pt[100], out[100 + KR_AEAD_OVERHEAD], back[100];
    const uint8_t aad[] = "key-id";
    struct kr_aead *a = NULL;
    size_t n;

    (void)state;
    memset(pt, 'x', sizeof(pt));
    assert_int_equal(kr_aead_new(&a, key), 0);
    assert_int_equal(kr_aead_seal(a, aad, 6, pt, sizeof(pt), out), 0);
    assert_int_equal(kr_aead_open(a, aad, 6, out, sizeof(out), back, &n), 0);
    /* Every byte position: nonce, ciphertext and tag are all covered. */
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] ^= 0x01;
        assert_int_equal(kr_aead_open(a, aad, 6, out, sizeof(out), back, &n),
                         KR_ECRYPTO);
        out[i] ^= 0x01;
    }
    /* Wrong AAD (another KeyID) fails. */
    assert_int_equal(kr_aead_open(a, (const uint8_t *)"key-ie", 6, out,
                                  sizeof(out), back, &n),
                     KR_ECRYPTO);
    /* Too short to hold a nonce and a tag. */
    assert_int_equal(
        kr_aead_open(a, aad, 6, out, KR_AEAD_OVERHEAD - 1, back, &n),
        KR_EINVAL);
    kr_aead_free(a);
}

static void test_gcm_nonces_differ(void **state)
{
    uint8_t key[32] = {2}, pt[16] = {0};
    uint8_t a1[16 + KR_AEAD_OVERHEAD], a2[16 + KR_AEAD_OVERHEAD];
    struct kr_aead *a = NULL;

    (void)state;
    assert_int_equal(kr_aead_new(&a, key), 0);
    assert_int_equal(kr_aead_seal(a, NULL, 0, pt, 16, a1), 0);
    assert_int_equal(kr_aead_seal(a, NULL, 0, pt, 16, a2), 0);
    assert_memory_not_equal(a1, a2, 12);
    kr_aead_free(a);
}

/* A copy opens what the original sealed and the reverse, and each works
 * on its own thread at the same time (the rekey job's copies run on
 * libuv's pool while the loop uses the keyring's). */
struct copy_run {
    struct kr_aead *a;
    uint8_t tag; /* this thread's plaintext byte */
    int failures;
};

static void *copy_round_trips(void *arg)
{
    struct copy_run *r = arg;
    uint8_t pt[200], out[200 + KR_AEAD_OVERHEAD], back[200];
    size_t n;

    memset(pt, r->tag, sizeof(pt));
    for (int i = 0; i < 20000; i++) {
        if (kr_aead_seal(r->a, pt, 8, pt, sizeof(pt), out) != 0 ||
            kr_aead_open(r->a, pt, 8, out, sizeof(out), back, &n) != 0 ||
            n != sizeof(pt) || memcmp(back, pt, n) != 0)
            r->failures++;
    }
    return NULL;
}

static void test_gcm_copy_is_independent(void **state)
{
    uint8_t key[32] = {3}, other[32] = {4}, pt[40], out[40 + KR_AEAD_OVERHEAD];
    uint8_t back[40];
    struct kr_aead *a = NULL, *b = NULL, *c = NULL;
    struct copy_run ra, rb;
    pthread_t t;
    size_t n;

    (void)state;
    memset(pt, 'p', sizeof(pt));
    assert_int_equal(kr_aead_new(&a, key), 0);
    assert_int_equal(kr_aead_new(&c, other), 0);
    assert_int_equal(kr_aead_copy(a, &b), 0);
    assert_int_equal(kr_aead_seal(a, NULL, 0, pt, sizeof(pt), out), 0);
    assert_int_equal(kr_aead_open(b, NULL, 0, out, sizeof(out), back, &n), 0);
    assert_memory_equal(back, pt, sizeof(pt));
    assert_int_equal(kr_aead_seal(b, NULL, 0, pt, sizeof(pt), out), 0);
    assert_int_equal(kr_aead_open(a, NULL, 0, out, sizeof(out), back, &n), 0);
    /* The copy holds a's key, not another. */
    assert_int_equal(kr_aead_open(c, NULL, 0, out, sizeof(out), back, &n),
                     KR_ECRYPTO);
    ra = (struct copy_run){.a = a, .tag = 'a'};
    rb = (struct copy_run){.a = b, .tag = 'b'};
    assert_int_equal(pthread_create(&t, NULL, copy_round_trips, &rb), 0);
    copy_round_trips(&ra);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(ra.failures, 0);
    assert_int_equal(rb.failures, 0);
    /* Freeing the original leaves the copy whole. */
    kr_aead_free(a);
    assert_int_equal(kr_aead_open(b, NULL, 0, out, sizeof(out), back, &n), 0);
    kr_aead_free(b);
    kr_aead_free(c);
}

static struct kr_config_keyring aead_cfg = {
    .type = "aead",
    .name = "",
    .id = "aead",
    .active = true,
    .origin = "test:1",
};

static void test_aead_wrap_round_trip(void **state)
{
    struct kr_kms *k = NULL;
    struct kr_secret *dek = kr_secret_new(32), *rsa = NULL;
    struct kr_secret *dek2 = NULL, *rsa2 = NULL;
    struct kr_wrapped_key w;
    struct kr_signer *signer = NULL;
    char err[KR_ERRMSG_SIZE];
    const char *id = "2b5c7f5e-1111-4222-8333-944455556666";

    (void)state;
    memset(dek->data, 0x42, 32);
    assert_int_equal(kr_sign_rsa_generate(&rsa), 0);
    assert_int_equal(kr_signer_from_rsa_der(&signer, rsa->data, rsa->len), 0);
    kr_signer_free(signer);
    assert_int_equal(kr_kms_open(&k, &aead_cfg, err), 0);
    assert_int_equal(kr_kms_wrap(k, id, dek, rsa, &w, err), 0);
    assert_string_equal(w.provider, "aead");
    assert_string_equal(w.provider_id, "aead");
    assert_non_null(w.kek);
    assert_int_equal(w.kek->len, 32);
    assert_int_equal(w.dek.ciphertext_len, 32 + KR_AEAD_OVERHEAD);
    /* The wrapped blob must not contain the DEK. */
    assert_null(memmem(w.dek.ciphertext, w.dek.ciphertext_len, dek->data, 32));
    assert_int_equal(kr_kms_unwrap(k, id, &w, &dek2, &rsa2, err), 0);
    assert_memory_equal(dek2->data, dek->data, 32);
    assert_int_equal(rsa2->len, rsa->len);
    assert_memory_equal(rsa2->data, rsa->data, rsa->len);
    kr_secret_free(dek2);
    kr_secret_free(rsa2);

    /* Tampering with the wrapped DEK is detected, not decrypted. */
    w.dek.ciphertext[20] ^= 0x80;
    assert_int_equal(kr_kms_unwrap(k, id, &w, &dek2, &rsa2, err), KR_ECRYPTO);
    assert_non_null(strstr(err, "authentication"));
    w.dek.ciphertext[20] ^= 0x80;
    /* A wrong KEK is detected. */
    w.kek->data[0] ^= 1;
    assert_int_equal(kr_kms_unwrap(k, id, &w, &dek2, &rsa2, err), KR_ECRYPTO);
    w.kek->data[0] ^= 1;
    /* A truncated blob (Nomad #24379) is corrupt, not a crash. */
    w.rsa.ciphertext_len = 5;
    assert_int_equal(kr_kms_unwrap(k, id, &w, &dek2, &rsa2, err), KR_ECORRUPT);
    /* An empty RSA blob (a key made before RSA existed) unwraps. */
    w.rsa.ciphertext_len = 0;
    assert_int_equal(kr_kms_unwrap(k, id, &w, &dek2, &rsa2, err), 0);
    assert_null(rsa2);
    kr_secret_free(dek2);
    /* No KEK (a redacted snapshot) is a clear error. */
    kr_secret_free(w.kek);
    w.kek = NULL;
    assert_int_equal(kr_kms_unwrap(k, id, &w, &dek2, &rsa2, err), KR_ECORRUPT);
    assert_non_null(strstr(err, "redacted"));

    kr_wrapped_key_clear(&w);
    kr_kms_free(k);
    kr_secret_free(dek);
    kr_secret_free(rsa);
}

static void test_aead_rejects_params(void **state)
{
    struct kr_config_param p = {.key = "secret_thing", .value = "hunter2"};
    struct kr_config_keyring cfg = aead_cfg;
    struct kr_kms *k = NULL;
    char err[KR_ERRMSG_SIZE];

    (void)state;
    cfg.params = &p;
    cfg.n_params = 1;
    assert_int_equal(kr_kms_open(&k, &cfg, err), KR_EINVAL);
    assert_null(strstr(err, "hunter2"));
}

static void test_signer_rejects_garbage(void **state)
{
    struct kr_signer *s = NULL;
    uint8_t junk[64] = {0x30, 0x82};

    (void)state;
    assert_int_equal(kr_signer_from_rsa_der(&s, junk, sizeof(junk)),
                     KR_ECRYPTO);
    assert_int_equal(kr_signer_from_rsa_der(&s, NULL, 0), KR_ECRYPTO);
}

/* RFC 8032 section 7.1, test 2: the seed, its public key, and the
 * signature of the one-byte message 0x72. */
static void test_ed25519_known_answer(void **state)
{
    uint8_t seed[32], pub[32], want[64], sig[KR_SIGN_MAX];
    const uint8_t msg[1] = {0x72};
    const uint8_t *n, *e;
    size_t nlen, elen, siglen;
    struct kr_signer *s = NULL;

    (void)state;
    unhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
          seed);
    unhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
          pub);
    unhex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
          "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
          want);
    assert_int_equal(kr_signer_from_ed25519_seed(&s, seed), 0);
    assert_int_equal(kr_signer_kind(s), KR_SIGN_ED25519);
    kr_signer_public(s, &n, &nlen, &e, &elen);
    assert_int_equal(nlen, 32);
    assert_int_equal(elen, 0);
    assert_memory_equal(n, pub, 32);
    assert_int_equal(kr_signer_sign(s, msg, sizeof(msg), sig, &siglen), 0);
    assert_int_equal(siglen, 64);
    assert_memory_equal(sig, want, 64);
    assert_int_equal(kr_signer_verify(s, msg, sizeof(msg), sig, siglen), 0);
    /* Another message, a flipped bit, a cut signature: all refused. */
    assert_int_equal(kr_signer_verify(s, (const uint8_t *)"s", 1, sig, siglen),
                     KR_ECRYPTO);
    sig[10] ^= 1;
    assert_int_equal(kr_signer_verify(s, msg, sizeof(msg), sig, siglen),
                     KR_ECRYPTO);
    sig[10] ^= 1;
    assert_int_equal(kr_signer_verify(s, msg, sizeof(msg), sig, 63),
                     KR_ECRYPTO);
    kr_signer_free(s);
}

/* RS256: a 256-byte PKCS#1 v1.5 signature that only the same key and
 * message verify, e = 65537 and a 2048-bit modulus for JWK. */
static void test_rsa_sign_verify(void **state)
{
    struct kr_secret *der = NULL, *der2 = NULL;
    struct kr_signer *s = NULL, *other = NULL, *ed = NULL;
    uint8_t sig[KR_SIGN_MAX], sig2[KR_SIGN_MAX], seed[32] = {1};
    const uint8_t *msg = (const uint8_t *)"eyJhbGciOiJSUzI1NiJ9.e30";
    size_t len = strlen((const char *)msg), siglen, siglen2;
    const uint8_t *n, *e;
    size_t nlen, elen;

    (void)state;
    assert_int_equal(kr_sign_rsa_generate(&der), 0);
    assert_int_equal(kr_sign_rsa_generate(&der2), 0);
    assert_int_equal(kr_signer_from_rsa_der(&s, der->data, der->len), 0);
    assert_int_equal(kr_signer_from_rsa_der(&other, der2->data, der2->len), 0);
    assert_int_equal(kr_signer_from_ed25519_seed(&ed, seed), 0);
    assert_int_equal(kr_signer_kind(s), KR_SIGN_RSA);
    kr_signer_public(s, &n, &nlen, &e, &elen);
    assert_int_equal(nlen, 256);
    assert_true(n[0] & 0x80);
    assert_int_equal(elen, 3);
    assert_memory_equal(e, "\x01\x00\x01", 3);

    assert_int_equal(kr_signer_sign(s, msg, len, sig, &siglen), 0);
    assert_int_equal(siglen, 256);
    /* PKCS#1 v1.5 is deterministic. */
    assert_int_equal(kr_signer_sign(s, msg, len, sig2, &siglen2), 0);
    assert_memory_equal(sig, sig2, 256);
    assert_int_equal(kr_signer_verify(s, msg, len, sig, siglen), 0);
    assert_int_equal(kr_signer_verify(s, msg, len - 1, sig, siglen),
                     KR_ECRYPTO);
    assert_int_equal(kr_signer_verify(other, msg, len, sig, siglen),
                     KR_ECRYPTO);
    assert_int_equal(kr_signer_verify(ed, msg, len, sig, siglen), KR_ECRYPTO);
    assert_int_equal(kr_signer_verify(s, msg, len, sig, 255), KR_ECRYPTO);
    sig[255] ^= 1;
    assert_int_equal(kr_signer_verify(s, msg, len, sig, siglen), KR_ECRYPTO);
    /* An Ed25519 signature is no RSA signature, whatever its length. */
    assert_int_equal(kr_signer_sign(ed, msg, len, sig, &siglen), 0);
    assert_int_equal(kr_signer_verify(s, msg, len, sig, siglen), KR_ECRYPTO);

    kr_signer_free(s);
    kr_signer_free(other);
    kr_signer_free(ed);
    kr_secret_free(der);
    kr_secret_free(der2);
}

/* The threaded digest equals the one-shot one however the stream is cut
 * (pieces smaller than, across and larger than its 1 MiB buffers), for
 * an empty stream, and for a second stream after a final. */
static void test_sha256_bg_matches_one_shot(void **state)
{
    static const size_t cuts[] = {1, 7, 4096, (1u << 20) + 3, 2u << 20, 0};
    const size_t total = (7u << 20) / 2;
    uint8_t *data = malloc(total), want[KR_SHA256_LEN], got[KR_SHA256_LEN];
    struct kr_sha256_bg *h = NULL;
    uint32_t x = 2463534242u;
    size_t off = 0;

    (void)state;
    assert_non_null(data);
    for (size_t i = 0; i < total; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (uint8_t)x;
    }
    assert_int_equal(kr_sha256_bg_new(&h), 0);
    /* "abc", FIPS 180-2's first example. */
    kr_sha256_bg_update(h, "abc", 3);
    assert_int_equal(kr_sha256_bg_final(h, got), 0);
    assert_int_equal(got[0], 0xba);
    assert_int_equal(got[31], 0xad);
    assert_int_equal(kr_sha256("abc", 3, want), 0);
    assert_memory_equal(got, want, KR_SHA256_LEN);

    for (unsigned i = 0; off < total; i = (i + 1) % 6) {
        size_t n =
            cuts[i] == 0 || cuts[i] > total - off ? total - off : cuts[i];
        kr_sha256_bg_update(h, data + off, n);
        off += n;
    }
    assert_int_equal(kr_sha256_bg_final(h, got), 0);
    assert_int_equal(kr_sha256(data, total, want), 0);
    assert_memory_equal(got, want, KR_SHA256_LEN);

    assert_int_equal(kr_sha256_bg_final(h, got), 0);
    assert_int_equal(kr_sha256("", 0, want), 0);
    assert_memory_equal(got, want, KR_SHA256_LEN);
    kr_sha256_bg_free(h);
    kr_sha256_bg_free(NULL);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcm_known_answer),
        cmocka_unit_test(test_gcm_rejects_tampering),
        cmocka_unit_test(test_gcm_nonces_differ),
        cmocka_unit_test(test_gcm_copy_is_independent),
        cmocka_unit_test(test_aead_wrap_round_trip),
        cmocka_unit_test(test_aead_rejects_params),
        cmocka_unit_test(test_signer_rejects_garbage),
        cmocka_unit_test(test_ed25519_known_answer),
        cmocka_unit_test(test_rsa_sign_verify),
        cmocka_unit_test(test_sha256_bg_matches_one_shot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
