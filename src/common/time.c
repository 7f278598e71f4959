/*
 * See time.h.  The duration grammar follows Go's time.ParseDuration.
 */
#include "common/time.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/err.h"

int64_t kr_time_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * KR_NS_PER_SEC + ts.tv_nsec;
}

uint64_t kr_time_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t kr_time_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t kr_time_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void kr_time_sleep_until_ns(uint64_t due_ns)
{
    uint64_t now = kr_time_mono_ns();
    struct timespec ts;

    if (now >= due_ns)
        return;
    ts.tv_sec = (time_t)((due_ns - now) / 1000000000u);
    ts.tv_nsec = (long)((due_ns - now) % 1000000000u);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const struct {
    const char *name;
    int64_t ns;
} units[] = {
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000}, /* U+03BC Greek mu */
    {"ms", KR_NS_PER_MS},
    {"s", KR_NS_PER_SEC},
    {"m", 60 * KR_NS_PER_SEC},
    {"h", 3600 * KR_NS_PER_SEC},
};

int kr_duration_parse(const char *s, int64_t *out_ns)
{
    const char *p = s;
    bool neg = false;
    /* Accumulate in unsigned 64 bits; Go caps at 1<<63 - 1 as well. */
    uint64_t total = 0;
    const uint64_t max = (uint64_t)INT64_MAX;

    if (s == NULL || *p == '\0')
        return KR_EINVAL;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (strcmp(p, "0") == 0) {
        *out_ns = 0;
        return 0;
    }
    if (*p == '\0')
        return KR_EINVAL;
    while (*p != '\0') {
        uint64_t whole = 0;
        uint64_t frac = 0, scale = 1;
        bool digits = false;
        size_t ulen = 0;
        int64_t unit = 0;
        long double part;

        while (*p >= '0' && *p <= '9') {
            if (whole > (max - 9) / 10)
                return KR_EINVAL;
            whole = whole * 10 + (uint64_t)(*p - '0');
            p++;
            digits = true;
        }
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                if (scale < UINT64_C(1000000000000000000)) {
                    frac = frac * 10 + (uint64_t)(*p - '0');
                    scale *= 10;
                }
                p++;
                digits = true;
            }
        }
        if (!digits)
            return KR_EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].name);
            /* Longest match: "ms" must win over "m". */
            if (n > ulen && strncmp(p, units[i].name, n) == 0) {
                ulen = n;
                unit = units[i].ns;
            }
        }
        if (ulen == 0)
            return KR_EINVAL;
        p += ulen;
        if (whole > max / (uint64_t)unit)
            return KR_EINVAL;
        part = (long double)whole * (long double)unit +
               (long double)frac * (long double)unit / (long double)scale;
        if (part > (long double)(max - total))
            return KR_EINVAL;
        total += (uint64_t)part;
    }
    *out_ns = neg ? -(int64_t)total : (int64_t)total;
    return 0;
}

/* Appends v/10^prec with trailing fraction zeros dropped, like Go. */
static size_t fmt_frac(char *out, size_t cap, uint64_t v, int prec)
{
    char digits[32];
    uint64_t pow = 1;
    uint64_t whole, frac;
    int n, fd;

    for (int i = 0; i < prec; i++)
        pow *= 10;
    whole = v / pow;
    frac = v % pow;
    if (frac == 0)
        return (size_t)snprintf(out, cap, "%llu", (unsigned long long)whole);
    fd = prec;
    while (frac % 10 == 0) {
        frac /= 10;
        fd--;
    }
    n = snprintf(digits, sizeof(digits), "%0*llu", fd,
                 (unsigned long long)frac);
    (void)n;
    return (size_t)snprintf(out, cap, "%llu.%s", (unsigned long long)whole,
                            digits);
}

void kr_duration_format(int64_t ns, char *out, size_t cap)
{
    uint64_t u;
    size_t o = 0;
    const char *sign = "";

    if (cap == 0)
        return;
    if (ns == 0) {
        snprintf(out, cap, "0s");
        return;
    }
    if (ns < 0) {
        sign = "-";
        u = (uint64_t)(-(ns + 1)) + 1;
    } else {
        u = (uint64_t)ns;
    }
    o = (size_t)snprintf(out, cap, "%s", sign);
    if (u < (uint64_t)KR_NS_PER_SEC) {
        const char *unit;
        int prec;
        if (u < 1000) {
            unit = "ns";
            prec = 0;
        } else if (u < 1000000) {
            unit = "\xc2\xb5s";
            prec = 3;
        } else {
            unit = "ms";
            prec = 6;
        }
        o += fmt_frac(out + o, o < cap ? cap - o : 0, u, prec);
        snprintf(out + o, o < cap ? cap - o : 0, "%s", unit);
        return;
    }
    {
        uint64_t h = u / (3600 * (uint64_t)KR_NS_PER_SEC);
        uint64_t rem = u % (3600 * (uint64_t)KR_NS_PER_SEC);
        uint64_t m = rem / (60 * (uint64_t)KR_NS_PER_SEC);
        uint64_t sns = rem % (60 * (uint64_t)KR_NS_PER_SEC);

        if (h > 0)
            o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%lluh",
                                  (unsigned long long)h);
        if (h > 0 || m > 0)
            o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%llum",
                                  (unsigned long long)m);
        o += fmt_frac(out + o, o < cap ? cap - o : 0, sns, 9);
        snprintf(out + o, o < cap ? cap - o : 0, "s");
    }
}

void kr_time_format_rfc3339(int64_t ns, char *out, size_t cap)
{
    time_t secs = (time_t)(ns / KR_NS_PER_SEC);
    struct tm tm;

    gmtime_r(&secs, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
