/*
 * Microbenchmark: workload identity signing in process, for comparison
 * with `openssl speed rsa2048` and `openssl speed ed25519` (the bare
 * private-key operation on a 36-byte digest or a 20-byte message).
 *
 * A token here is what POST /v1/identity/sign does once HTTP has parsed
 * the request: build the spec 6.1 claims with a fresh jti, encode header
 * and claims, base64url, sign (about 600 bytes signed).  The request's
 * JSON parse and checks are timed too, as a second figure, since every
 * HTTP request pays them; so is verification of such a token.
 *
 * Usage: bench_identity [seconds]   Prints:
 *   rs256_tokens_per_sec <n>            claims + JWS
 *   eddsa_tokens_per_sec <n>
 *   rs256_parse_and_tokens_per_sec <n>  request parse + claims + JWS
 *   eddsa_parse_and_tokens_per_sec <n>
 *   rs256_verify_per_sec <n>            parse + verify of one token
 *   eddsa_verify_per_sec <n>
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/uuid.h"
#include "crypto/rand.h"
#include "crypto/secmem.h"
#include "crypto/sign.h"
#include "identity/claims.h"
#include "identity/jws.h"

static const char body[] =
    "{\"Namespace\":\"default\",\"JobID\":\"web\",\"Group\":\"api\","
    "\"Task\":\"server\",\"AllocID\":\"8d3c0b7e-4a4f-4c8e-9d4b-1e2f3a4b5c6d\","
    "\"IdentityName\":\"vault_default\",\"Audience\":[\"vault.io\"],"
    "\"TTL\":\"1h\"}";
static const char kid[] = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b";

enum mode { TOKEN, PARSE_AND_TOKEN, VERIFY };

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static json_t *parse_body(struct kr_identity_req *req)
{
    char err[KR_ERRMSG_SIZE];
    json_error_t jerr;
    json_t *j =
        json_loadb(body, sizeof(body) - 1, JSON_REJECT_DUPLICATES, &jerr);

    if (j == NULL || kr_identity_req_parse(j, req, err) != 0)
        exit(1);
    return j;
}

/* One token for req, appended to out. */
static void one_token(struct kr_signer *s, const struct kr_identity_req *req,
                      struct kr_buf *out)
{
    char err[KR_ERRMSG_SIZE], jti[KR_UUID_LEN + 1];
    uint8_t rnd[16];
    json_t *claims;

    if (kr_rand_public(rnd, sizeof(rnd)) != 0)
        exit(1);
    kr_uuid_format(rnd, jti);
    claims = kr_identity_claims(req, "global", "https://keyraft.example",
                                (int64_t)time(NULL), jti);
    if (claims == NULL || kr_jws_sign(s, kid, NULL, claims, out, err) != 0)
        exit(1);
    json_decref(claims);
}

static double rate(struct kr_signer *s, double secs, enum mode mode)
{
    struct kr_identity_req req;
    json_t *parsed = parse_body(&req), *j;
    struct kr_buf b, tok;
    struct kr_jws jw;
    char err[KR_ERRMSG_SIZE];
    unsigned long n = 0;
    double t0, t;

    kr_buf_init(&b);
    kr_buf_init(&tok);
    one_token(s, &req, &tok);
    for (t0 = now(); (t = now()) - t0 < secs;) {
        for (int i = 0; i < 16; i++, n++) {
            b.len = 0;
            switch (mode) {
            case TOKEN:
                one_token(s, &req, &b);
                break;
            case PARSE_AND_TOKEN:
                j = parse_body(&req);
                one_token(s, &req, &b);
                json_decref(j);
                break;
            case VERIFY:
                if (kr_jws_parse(&jw, (const char *)tok.data, tok.len, err) ||
                    kr_jws_verify(&jw, (const char *)tok.data, s, err))
                    exit(1);
                kr_jws_clear(&jw);
                break;
            }
        }
    }
    kr_buf_free(&b);
    kr_buf_free(&tok);
    json_decref(parsed);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    struct kr_secret *der = NULL;
    struct kr_signer *rsa = NULL, *ed = NULL;
    uint8_t seed[32];
    const struct {
        const char *name;
        struct kr_signer **s;
    } algs[] = {{"rs256", &rsa}, {"eddsa", &ed}};
    const struct {
        const char *name;
        enum mode mode;
        double share; /* of secs */
    } modes[] = {
        {"tokens", TOKEN, 1},
        {"parse_and_tokens", PARSE_AND_TOKEN, 0.5},
        {"verify", VERIFY, 0.5},
    };

    memset(seed, 7, sizeof(seed));
    if (kr_sign_rsa_generate(&der) != 0 ||
        kr_signer_from_rsa_der(&rsa, der->data, der->len) != 0 ||
        kr_signer_from_ed25519_seed(&ed, seed) != 0)
        return 1;
    kr_secret_free(der);
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
        for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
            printf("%s_%s_per_sec %.0f\n", algs[i].name, modes[m].name,
                   rate(*algs[i].s, secs * modes[m].share, modes[m].mode));
            fflush(stdout);
        }
    kr_signer_free(rsa);
    kr_signer_free(ed);
    return 0;
}
