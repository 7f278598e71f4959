/*
 * Background priority for bulk work on a worker thread.
 *
 * A raft snapshot or an operator's snapshot save of a large state keeps a
 * thread busy for a second or more, encoding and writing hundreds of MB,
 * and the memory work around them keeps libuv's workers busy.  On a
 * machine with few cores (or several servers on one), that work must not
 * take the CPU from the loop thread, which answers raft heartbeats and
 * requests.  kr_thread_background lowers the calling thread's
 * scheduling priority (nice +10, Linux per-thread) and returns what to
 * pass to kr_thread_foreground afterwards, which restores it.
 *
 * Only where it can be restored: raising a priority back needs
 * CAP_SYS_NICE or a high enough RLIMIT_NICE (systemd's LimitNICE=), and
 * libuv's pool threads also run libraft's disk work (log writes the
 * kernel would not take asynchronously, snapshot loads); one left at
 * +10 would slow those for good.  So the first call tries, on a thread
 * of its own, to lower a priority one step and raise it back; without
 * that right, background work runs at the caller's priority.
 *
 * Any thread; affects only the calling thread.
 */
#ifndef KR_COMMON_THREAD_H
#define KR_COMMON_THREAD_H

#include <stdbool.h>

int kr_thread_background(void);
/* Whether kr_thread_background lowers anything in this process. */
bool kr_thread_can_background(void);
void kr_thread_foreground(int saved);
/* For a thread of the caller's own that exits when its work is done
 * (no pool thread): lowers its priority whether or not it could be
 * raised back. */
void kr_thread_background_own(void);

#endif
