/*
 * Background priority for bulk work on a worker thread.
 *
 * A raft snapshot or an operator's snapshot save of a large state keeps a
 * libuv worker busy for a second or more, allocating and writing hundreds
 * of MB.  On a machine with few cores (or several servers on one), that
 * work must not take the CPU from the loop thread, which answers raft
 * heartbeats and requests.  kr_thread_background lowers the calling
 * thread's scheduling priority (nice +10, Linux per-thread) and returns
 * what to pass to kr_thread_foreground afterwards, which restores it when
 * the process may (raising priority back needs CAP_SYS_NICE or a high
 * enough RLIMIT_NICE; without, the worker simply stays at the lower
 * priority, which only ever runs background work).
 *
 * Any thread; affects only the calling thread.
 */
#ifndef KR_COMMON_THREAD_H
#define KR_COMMON_THREAD_H

int kr_thread_background(void);
void kr_thread_foreground(int saved);

#endif
