/*
 * Error codes shared by every module.  0 is success; failures are negative
 * enum kr_err values.  One X-macro table generates the enum, the message
 * returned by kr_strerror() and the HTTP status each code maps to, so the
 * three never drift apart.
 *
 * Messages meant for an operator or an API client travel in a caller-owned
 * char errmsg[KR_ERRMSG_SIZE] and are prefixed with context as they bubble
 * up ("config.hcl:12: keyring \"aead\": ...").  They never carry secrets.
 */
#ifndef KR_COMMON_ERR_H
#define KR_COMMON_ERR_H

#include <stddef.h>

#define KR_ERRMSG_SIZE 512

/* X(name, value, message, http status) */
#define KR_ERR_TABLE(X)                                                        \
    X(KR_OK, 0, "success", 200)                                                \
    X(KR_ENOMEM, -1, "out of memory", 500)                                     \
    X(KR_EINVAL, -2, "invalid argument", 400)                                  \
    X(KR_ENOTFOUND, -3, "not found", 404)                                      \
    X(KR_ECONFLICT, -4, "conflict", 409)                                       \
    X(KR_EIO, -5, "input/output error", 500)                                   \
    X(KR_ECRYPTO, -6, "cryptographic failure", 500)                            \
    X(KR_ENOTREADY, -7, "not ready", 503)                                      \
    X(KR_ENOLEADER, -8, "no cluster leader", 503)                              \
    X(KR_ETOOBIG, -9, "too large", 413)                                        \
    X(KR_EMETHOD, -10, "method not allowed", 405)                              \
    X(KR_EUNPROCESSABLE, -11, "unprocessable", 422)                            \
    X(KR_ESHUTDOWN, -12, "shutting down", 503)                                 \
    X(KR_ECORRUPT, -13, "corrupt data", 500)                                   \
    X(KR_EKMS, -14, "key provider failure", 500)                               \
    X(KR_EFORBIDDEN, -15, "permission denied", 403)

#define KR_ERR_ENUM_(name, value, msg, status) name = value,
enum kr_err { KR_ERR_TABLE(KR_ERR_ENUM_) };
#undef KR_ERR_ENUM_

/* Returns a static, human readable message for a kr_err code. */
const char *kr_strerror(int err);

/* Returns the HTTP status a kr_err code maps to (500 for unknown codes). */
int kr_err_http_status(int err);

/*
 * Formats a message into errmsg (KR_ERRMSG_SIZE bytes, may be NULL) and
 * returns err, so a failure can be reported in one statement:
 *     rv = kr_errf(errmsg, KR_EINVAL, "bad path %s", p);
 */
int kr_errf(char *errmsg, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prepends "prefix: " to the message already in errmsg; used as an error
 * bubbles up through callers that add context.
 */
void kr_errwrap(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Invariant guard, always compiled in: a breach would corrupt state or leak
 * secrets, so the process aborts with the location.  Never use it on input
 * from the network, a file or a user.
 */
#define KR_BUG_ON(cond)                                                        \
    do {                                                                       \
        if (cond)                                                              \
            kr_bug(__FILE__, __LINE__, #cond);                                 \
    } while (0)

_Noreturn void kr_bug(const char *file, int line, const char *what);

#endif
