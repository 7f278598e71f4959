/*
 * libraft's heap: frees made on the loop thread are carried out by a
 * thread of their own.
 *
 * When a raft snapshot is stored, libraft compacts its log and frees
 * every entry the snapshot replaced, on the loop, in one go: during a
 * rekey of a million Variables, about 400 MB in 10^5 blocks.  The frees
 * held each server's loop 14-28 ms at the end of each of its snapshots,
 * most of it in munmap(2): jemalloc unmaps a freed block of 1 MiB or
 * more at once (src/main.c), and unmapping locked pages (mlockall) is
 * slow.  Every request in flight waited, and that was the worst window
 * of foreground p99 during a rekey.  libraft frees the table it grows
 * for its log's reference counts the same way.
 *
 * kr_rheap_install gives libraft (raft_heap_set) the C library's
 * allocation functions and a free that, on the loop thread, only notes
 * the pointer.  The noted pointers go to the freeing thread in batches:
 * when a batch holds RHEAP_BATCH pointers or RHEAP_BATCH_BYTES of blocks,
 * and from the agent's tick (kr_rheap_flush), so nothing waits longer
 * than a tick.  Frees on any other thread (libuv's workers run some of
 * libraft's disk work) happen at once.  If noting a pointer needs memory
 * that cannot be had, the block is freed at once.
 *
 * The blocks are not wiped: libraft's log entries are ordinary heap
 * memory (docs/architecture.md, "Secret memory").
 */
#ifndef KR_CLUSTER_RHEAP_H
#define KR_CLUSTER_RHEAP_H

#include <stddef.h>
#include <stdint.h>

#define RHEAP_BATCH 4096u
#define RHEAP_BATCH_BYTES (8u << 20)

/* On the loop thread, before raft starts: starts the freeing thread and
 * installs the heap.  0, or a kr_err (the default heap stays). */
int kr_rheap_install(void);

/* Loop thread: hands the pointers noted so far to the freeing thread. */
void kr_rheap_flush(void);

/* Loop thread, once raft is closed: frees what is noted, waits for the
 * freeing thread to finish and stop, and puts libraft's default heap
 * back.  Nothing when not installed. */
void kr_rheap_uninstall(void);

/* Blocks freed from batches so far: by the freeing thread, or on the
 * loop when a batch could not be handed over.  Any thread. */
uint64_t kr_rheap_freed(void);

#endif
