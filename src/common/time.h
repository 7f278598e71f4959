/*
 * Clocks and Go-style durations.  The replicated state machine must never
 * call the clock functions here: the leader reads the clock and carries the
 * value in the log entry.
 */
#ifndef KR_COMMON_TIME_H
#define KR_COMMON_TIME_H

#include <stddef.h>
#include <stdint.h>

#define KR_NS_PER_MS INT64_C(1000000)
#define KR_NS_PER_SEC INT64_C(1000000000)

/* Wall clock, Unix nanoseconds (UTC). */
int64_t kr_time_now_ns(void);
/* Monotonic clock in milliseconds, for timeouts. */
uint64_t kr_time_mono_ms(void);
/* The same clock in microseconds. */
uint64_t kr_time_mono_us(void);
/* The same clock in nanoseconds. */
uint64_t kr_time_mono_ns(void);
/* Sleeps until the monotonic clock reads due_ns (kr_time_mono_ns), across
 * signals; returns at once when it already has. */
void kr_time_sleep_until_ns(uint64_t due_ns);

/*
 * Parses a Go duration ("720h", "1h30m", "1.5s", "250ms", "0") into
 * nanoseconds.  Accepts units ns, us, µs, ms, s, m, h and an optional
 * leading sign.  Returns 0 or KR_EINVAL (overflow, unknown unit, garbage).
 */
int kr_duration_parse(const char *s, int64_t *out_ns);

/* Formats like Go's time.Duration.String(): "15s", "1h0m0s", "1.5s". */
void kr_duration_format(int64_t ns, char *out, size_t cap);

/* Formats Unix nanoseconds as RFC 3339 in UTC ("2026-01-02T03:04:05Z"). */
void kr_time_format_rfc3339(int64_t ns, char *out, size_t cap);

#endif
