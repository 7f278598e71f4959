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
 * when a batch holds RHEAP_BATCH pointers, after any loop turn that
 * noted RHEAP_TURN_MIN or more (kr_rheap_turn: a compaction's frees go
 * at the next turn, not a handful at a time), and from the agent's tick
 * (kr_rheap_flush), so nothing waits longer than a tick.  Batches are
 * kept for reuse: growing one array instead put page faults back on the
 * loop at each snapshot's end.  Frees on any other thread (libuv's
 * workers run some of libraft's disk work) happen at once, as does
 * every free when no batch could be had.
 *
 * Pages kept.  As the log grew back after a snapshot, the loop touched
 * fresh pages (jemalloc unmaps freed pages 100 ms later, src/main.c)
 * and spent up to 10 ms more in page faults, each page zeroed and
 * locked.  So where the executable is linked with jemalloc, libraft's
 * blocks under RHEAP_ARENA_MAX come from an arena of their own that
 * keeps the pages of freed blocks for the next ones (dirty_decay_ms
 * -1): it holds as much as libraft's small blocks ever held at once,
 * about the log up to a snapshot.  Larger blocks (a restore's 1 MiB
 * chunks, libraft's tables) still go back at once: kept, a restore's
 * chunks could not be reused by the state it builds, and its peak RSS
 * rose from 1.7x to 2.1x of its state.bin.
 *
 * Growth made ahead.  libraft keeps its log in a ring of entries and its
 * reference counts in a hash table, and doubles each, with calloc and a
 * copy on the loop, once the log holds as many entries as it has room
 * for.  At 10^5 entries and more, nearly all of that time went to page
 * faults in the new, zeroed block: 17-27 ms, twice, on every server at
 * about the same entry (their logs start at the same snapshot index).
 * kr_rheap_expect, called by cluster/raft.c when a table is three
 * quarters full, has the freeing thread make a zeroed block of the size
 * the next growth will ask for, its pages faulted in; a calloc of
 * exactly that size takes it.  When the table is no longer that full
 * (a snapshot compacted the log first) the block is freed again.  At
 * most RHEAP_SPARES are kept.
 *
 * Paced.  A compaction hands the freeing thread a snapshot's worth of
 * log at once, about 400 MB during a full rekey of a million Variables,
 * and wiping and freeing it took 100-170 ms of CPU within 0.2-0.4 s:
 * the two cores had no idle time left, even at nice +10, and the 1 s
 * window of client writes around it had a p99 of 5-15 ms against about
 * 3 ms in the others.  So after the first RHEAP_FREE_BURST of a run the
 * thread wipes at most RHEAP_FREE_RATE a second (400 MB: 1.5 s), far
 * faster than a log grows back, and without a pause while the heap is
 * uninstalled.
 *
 * Every block is wiped before it is freed (on the freeing thread, for
 * the loop's): log entries carry aead KEKs, and the arena keeps its
 * pages instead of giving them back to the kernel, which would zero
 * them.  So a realloc that must move a block copies it and frees the
 * old one the same way (the allocator's own realloc would not wipe
 * it).  The live entries are ordinary heap memory all the same
 * (docs/architecture.md, "Secret memory").
 */
#ifndef KR_CLUSTER_RHEAP_H
#define KR_CLUSTER_RHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RHEAP_BATCH 4096u
#define RHEAP_TURN_MIN 64u
#define RHEAP_ARENA_MAX (1u << 20)
#define RHEAP_FREE_RATE (256u << 20) /* bytes a second */
#define RHEAP_FREE_BURST (16u << 20)
#define RHEAP_SPARES 2
#define RHEAP_SPARE_MIN (1u << 20) /* smaller growth is cheap */

/* On the loop thread, before raft starts: starts the freeing thread and
 * installs the heap.  0, or a kr_err (the default heap stays). */
int kr_rheap_install(void);

/* Loop thread: hands the pointers noted so far to the freeing thread. */
void kr_rheap_flush(void);

/* Loop thread, once per loop turn: the same, if RHEAP_TURN_MIN or more
 * are noted. */
void kr_rheap_turn(void);

/* Loop thread, once raft is closed: frees what is noted, waits for the
 * freeing thread to finish and stop, and puts libraft's default heap
 * back.  Nothing when not installed. */
void kr_rheap_uninstall(void);

/* Loop thread: callocs of exactly these sizes are coming (n of them,
 * 0 for none).  Has a zeroed block of each made ahead, unless one is
 * made or being made, as long as fewer than RHEAP_SPARES are; drops
 * those of any other size.  Sizes under RHEAP_SPARE_MIN are ignored. */
void kr_rheap_expect(const size_t *bytes, size_t n);

/* Blocks made ahead and not taken yet; made ahead and taken so far.
 * Any thread. */
size_t kr_rheap_spares_ready(void);
uint64_t kr_rheap_spares_used(void);

/* Whether libraft's blocks come from an arena of their own (jemalloc),
 * and which. */
bool kr_rheap_arena(unsigned *arena);

/* Blocks freed from batches so far: by the freeing thread, or on the
 * loop when a batch could not be handed over.  Any thread. */
uint64_t kr_rheap_freed(void);

#endif
