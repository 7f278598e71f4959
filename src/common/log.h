/*
 * Leveled logging to stderr, as text ("2026-01-02T03:04:05.678Z [INFO]
 * module: message") or one JSON object per line.  Not thread safe beyond
 * what stdio gives: each line is written with a single fprintf.
 *
 * Never pass key material or plaintext secrets to these functions.
 */
#ifndef KR_COMMON_LOG_H
#define KR_COMMON_LOG_H

enum kr_log_level {
    KR_LOG_TRACE,
    KR_LOG_DEBUG,
    KR_LOG_INFO,
    KR_LOG_WARN,
    KR_LOG_ERROR,
};

/* Sets the minimum level and the output format.  Call once, early. */
void kr_log_init(enum kr_log_level level, int json);

/* Parses "trace|debug|info|warn|error" (any case); returns 0 or KR_EINVAL. */
int kr_log_level_parse(const char *s, enum kr_log_level *out);

void kr_log(enum kr_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define KR_TRACE(mod, ...) kr_log(KR_LOG_TRACE, mod, __VA_ARGS__)
#define KR_DEBUG(mod, ...) kr_log(KR_LOG_DEBUG, mod, __VA_ARGS__)
#define KR_INFO(mod, ...) kr_log(KR_LOG_INFO, mod, __VA_ARGS__)
#define KR_WARN(mod, ...) kr_log(KR_LOG_WARN, mod, __VA_ARGS__)
#define KR_ERROR(mod, ...) kr_log(KR_LOG_ERROR, mod, __VA_ARGS__)

#endif
