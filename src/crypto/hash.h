/*
 * SHA-256, one-shot and incremental, and standard base64 (RFC 4648 with
 * padding) for the HTTP Digest header.  Used for snapshot archive
 * checksums (SHA256SUMS, Digest) and the integrity of restores; never for
 * key derivation.  Thread safe: a struct kr_sha256 belongs to whoever
 * created it.
 */
#ifndef KR_CRYPTO_HASH_H
#define KR_CRYPTO_HASH_H

#include <stddef.h>
#include <stdint.h>

#define KR_SHA256_LEN 32
/* Lowercase hex of a digest, with its NUL. */
#define KR_SHA256_HEX_LEN (2 * KR_SHA256_LEN + 1)
/* Base64 of a digest (44 characters), with its NUL. */
#define KR_SHA256_B64_LEN 45

struct kr_sha256;

/* Returns 0 or KR_ENOMEM; free with kr_sha256_free. */
int kr_sha256_new(struct kr_sha256 **out);
/* NULL is a no-op. */
void kr_sha256_free(struct kr_sha256 *h);
void kr_sha256_update(struct kr_sha256 *h, const void *p, size_t n);
/* Writes the digest and resets h for reuse.  Returns 0 or KR_ECRYPTO
 * (also when an earlier update failed). */
int kr_sha256_final(struct kr_sha256 *h, uint8_t out[KR_SHA256_LEN]);

/*
 * The same digest computed on a thread of its own, so that hashing a
 * stream overlaps the caller's other work on it (a snapshot save's
 * encoding on the server, the write to its file in the CLI): each
 * update copies the bytes into one of two 1 MiB buffers and returns
 * while the thread hashes the other.  The buffers are locked when the
 * memlock limit allows, kept out of core dumps and wiped when freed (a
 * snapshot holds aead KEKs).  The thread starts with the caller's
 * scheduling priority.  One caller at a time.
 */
struct kr_sha256_bg;

/* Returns 0, KR_ENOMEM or KR_EIO (no thread); free with
 * kr_sha256_bg_free. */
int kr_sha256_bg_new(struct kr_sha256_bg **out);
/* NULL is a no-op; stops the thread. */
void kr_sha256_bg_free(struct kr_sha256_bg *h);
void kr_sha256_bg_update(struct kr_sha256_bg *h, const void *p, size_t n);
/* Waits for what was given so far, then as kr_sha256_final. */
int kr_sha256_bg_final(struct kr_sha256_bg *h, uint8_t out[KR_SHA256_LEN]);

/* One shot over p[0..n).  Returns 0 or KR_ECRYPTO. */
int kr_sha256(const void *p, size_t n, uint8_t out[KR_SHA256_LEN]);

/* Lowercase hex of a digest into out (KR_SHA256_HEX_LEN bytes). */
void kr_sha256_hex(const uint8_t d[KR_SHA256_LEN], char *out);

/* Standard base64 with padding of p[0..n) into out, which holds
 * 4 * ((n + 2) / 3) + 1 bytes; returns the length written (without the
 * NUL). */
size_t kr_base64_encode(const void *p, size_t n, char *out);

#endif
