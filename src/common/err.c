/*
 * kr_err tables and errmsg helpers.  See err.h.
 */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kr_strerror(int err)
{
#define KR_ERR_MSG_(name, value, msg, status)                                  \
    case value:                                                                \
        return msg;
    switch (err) {
        KR_ERR_TABLE(KR_ERR_MSG_)
    default:
        return "unknown error";
    }
#undef KR_ERR_MSG_
}

int kr_err_http_status(int err)
{
#define KR_ERR_STATUS_(name, value, msg, status)                               \
    case value:                                                                \
        return status;
    switch (err) {
        KR_ERR_TABLE(KR_ERR_STATUS_)
    default:
        return 500;
    }
#undef KR_ERR_STATUS_
}

int kr_errf(char *errmsg, int err, const char *fmt, ...)
{
    va_list ap;

    if (errmsg != NULL) {
        va_start(ap, fmt);
        vsnprintf(errmsg, KR_ERRMSG_SIZE, fmt, ap);
        va_end(ap);
    }
    return err;
}

void kr_errwrap(char *errmsg, const char *fmt, ...)
{
    char prefix[KR_ERRMSG_SIZE];
    char old[KR_ERRMSG_SIZE];
    va_list ap;

    if (errmsg == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    snprintf(old, sizeof(old), "%s", errmsg);
    /* Truncation is acceptable: the newest context comes first. */
    if (snprintf(errmsg, KR_ERRMSG_SIZE, "%s: %s", prefix, old) < 0)
        errmsg[0] = '\0';
}

void kr_bug(const char *file, int line, const char *what)
{
    fprintf(stderr, "keyraft: BUG at %s:%d: %s\n", file, line, what);
    abort();
}
