/*
 * Writes our raft snapshots to disk as they are encoded, at a paced rate.
 *
 * libraft stores a snapshot by writing the buffers the FSM hands it, in
 * one pwrite(2), then one fsync.  At a million Variables that buffer is
 * 400 MB: filling it cost a second of page faults on a VM, it doubled the
 * server's memory, and the flush of 400 MB at once (on every server at
 * about the same moment) held every raft log fsync on the disk for
 * hundreds of milliseconds.
 *
 * Instead the FSM hands libraft a placeholder: an address range of the
 * snapshot's length with no memory behind it (PROT_NONE), armed here
 * with a source that produces the bytes.  This module defines pwrite64()
 * in the executable, which the dynamic linker binds ahead of libc's for
 * every library (libuv makes libraft's file writes through it).  A call
 * whose buffer and length are the armed placeholder's runs the source
 * (on a thread of its own at background priority, common/thread.h; the
 * caller waits), which hands its bytes in pieces to
 * kr_snapwrite_put: each piece is written at the next offset, every
 * slice (512 KiB paced, 4 MiB unpaced) is pushed to the disk
 * (sync_file_range, waiting for it) and dropped from the page cache, and
 * the writer sleeps as needed to stay under the armed rate.  Every other
 * call goes to libc's pwrite64 unchanged.  libraft never reads a
 * snapshot's buffers itself (compression is off); if anything did, the
 * placeholder would fault, loudly, instead of writing a wrong snapshot,
 * and a write of it that does not come through here fails with EFAULT.
 *
 * After a snapshot libraft removes the log segments it no longer needs,
 * tens of 8 MiB files in a row, and the snapshot before the last two
 * (hundreds of MB).  Freed in one go, an old snapshot held the file
 * system's journal for about 100 ms, and every raft log fsync with it;
 * on a disk mounted with discard, each freed extent is also discarded,
 * and the log's writes queue behind the discards.  This module also
 * defines unlink(): a closed segment (a name of two 16-digit indexes)
 * or an old snapshot's data file loses its name at once, and its blocks
 * are then freed from the end, 1 MiB at a time on the disk, at 64 MiB/s
 * over all files, by one thread of background priority.  A file with
 * another name or another open descriptor is left to a plain unlink, as
 * is every other unlink; a segment removed that way is followed by a
 * rest three times as long as its removal took, on the libraft thread
 * that made it.
 *
 * The staging buffer is wiped before it is freed: a raft snapshot's head
 * records carry the aead KEKs.
 *
 * Any thread.
 */
#ifndef KR_CLUSTER_SNAPWRITE_H
#define KR_CLUSTER_SNAPWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_snapwrite_sink;

/* Produces the whole snapshot through kr_snapwrite_put, in order.
 * Returns 0, or -1 after a failed put. */
typedef int (*kr_snapwrite_source_fn)(void *arg, struct kr_snapwrite_sink *s);

/* Writes p[0..n) next.  0, or -1 with errno set (the write failed, or
 * would go past the armed length). */
int kr_snapwrite_put(struct kr_snapwrite_sink *s, const void *p, size_t n);

/* From the source, on its thread: on, its part that takes no lock
 * another thread may wait for (no malloc or free) begins; off, it ends.
 * In between, a paced write runs in the idle class (common/thread.h),
 * where that is allowed, except for its disk work (the file system's
 * journal may wait for a writer), and leaves it for good (at background
 * nice) if it falls more than a second behind its pace: on a busy
 * machine an idle-class thread may get no CPU at all. */
void kr_snapwrite_idle(struct kr_snapwrite_sink *s, bool on);

/* A placeholder of len bytes whose write runs source(arg) at up to
 * bytes_per_sec (0: no limit, still in synced slices); NULL when the
 * range cannot be reserved.  One placeholder is armed at a time: arming
 * another replaces it. */
void *kr_snapwrite_arm(size_t len, uint64_t bytes_per_sec,
                       kr_snapwrite_source_fn source, void *arg);

/* Disarms and unmaps a placeholder (NULL: nothing).  Returns the
 * milliseconds its write took, 0 if it was never written. */
uint64_t kr_snapwrite_release(void *base, size_t len);

/* How many removed raft snapshots and log segments have had their
 * blocks freed in steps (see above), since the process started.  Any
 * thread. */
uint64_t kr_snapwrite_shrunk(void);

/* Bytes of removed files whose blocks are still to be freed in steps.
 * Any thread. */
uint64_t kr_snapwrite_freeing(void);

/* How many paced writes fell more than a second behind their pace in the
 * idle class and left it (see above), since the process started.  Any
 * thread. */
uint64_t kr_snapwrite_unidled(void);

#endif
