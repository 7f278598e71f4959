/*
 * Moves libraft's io_destroy(2) calls off the loop thread.
 *
 * libraft 0.15's disk backend writes the log with Linux AIO, one AIO
 * context per open segment, and destroys the context on the loop thread
 * whenever a segment is closed: when it fills (8 MiB) and at every raft
 * snapshot.  io_destroy waits for an RCU grace period, 30-40 ms on the
 * machines we measured, and the whole server (raft, HTTP, forwarding)
 * stands still meanwhile.  That stall was the p99 of every write at low
 * concurrency.
 *
 * libraft issues the call through libc's syscall(); this module defines
 * syscall() in the executable, which the dynamic linker binds ahead of
 * libc's for every library.  Every call is passed to libc's syscall()
 * unchanged, except io_destroy, which returns 0 at once and is carried
 * out by one background thread.  That is safe because libraft destroys a
 * context only after its segment's writes have completed or been
 * cancelled, and never touches the context again; the kernel keeps the
 * context's ring and any late completion to itself until the real
 * io_destroy, and releases everything at exit if it has not run by then.
 */
#ifndef KR_CLUSTER_IODEFER_H
#define KR_CLUSTER_IODEFER_H

#include <stdint.h>

/* AIO contexts handed to the background thread so far.  Any thread.
 * (Also what links this module into the executable.) */
uint64_t kr_iodefer_count(void);

#endif
