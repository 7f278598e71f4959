/*
 * See log.h.  JSON lines escape the message with a minimal escaper so the
 * logger has no dependency on the JSON library.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "common/err.h"

static enum kr_log_level min_level = KR_LOG_INFO;
static int json_output;

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN",
                                          "ERROR"};

void kr_log_init(enum kr_log_level level, int json)
{
    min_level = level;
    json_output = json;
}

int kr_log_level_parse(const char *s, enum kr_log_level *out)
{
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
         i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum kr_log_level)i;
            return 0;
        }
    }
    return KR_EINVAL;
}

static void json_escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;

    for (; *in != '\0' && o + 7 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

void kr_log(enum kr_log_level level, const char *module, const char *fmt, ...)
{
    char msg[2048];
    char esc[4096];
    char ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (level < min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    if (json_output) {
        json_escape(esc, sizeof(esc), msg);
        fprintf(stderr,
                "{\"@timestamp\":\"%s.%03ldZ\",\"@level\":\"%s\","
                "\"@module\":\"%s\",\"@message\":\"%s\"}\n",
                ts, now.tv_nsec / 1000000, level_names[level], module, esc);
    } else {
        fprintf(stderr, "%s.%03ldZ [%s] %s: %s\n", ts, now.tv_nsec / 1000000,
                level_names[level], module, msg);
    }
}
