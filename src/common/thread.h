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
 * The idle class.  nice +10 lowers a thread's share of the CPU, but the
 * scheduler may still let it run out its slice before a loop thread that
 * wakes on the same core gets it back (Linux 6.18 here): a raft
 * snapshot's encoder
 * at +10 was running on the waiting loop's core for 40% of the loops'
 * run-queue delays over 1 ms during a full rekey (perf sched, 3 servers
 * on 2 cores).  A thread in SCHED_IDLE gives way at once, and runs only
 * on a core nothing else wants, so it may starve on a busy machine: its
 * caller must watch its progress and leave the class when it falls
 * behind (snapwrite does).  Offered only where leaving it is allowed
 * (the right above), and only for work that takes no lock the loop may
 * wait for (no malloc or free, no file system writes, which the
 * journal's commit may wait for): an idle-class holder keeps such a lock
 * for as long as the cores stay busy.  So not for pool threads, which
 * take the allocator's and libuv's queue's.  The one trial with
 * the pool's background work in the idle class had a 5 s window of the
 * rekey benchmark with a 154 ms p99.
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
/* Whether kr_thread_idle moves anything in this process. */
bool kr_thread_can_idle(void);
/* For a thread of the caller's own: moves it to the idle class, if it
 * could leave it again; true if it did. */
bool kr_thread_idle(void);
/* Back from kr_thread_idle to the normal class, at the nice value the
 * thread had; true once the thread is not in the idle class. */
bool kr_thread_unidle(void);

#endif
