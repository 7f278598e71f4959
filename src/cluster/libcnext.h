/*
 * For the modules that stand in for a libc function in the whole process
 * (iodefer.c: syscall; snapwrite.c: pwrite64, unlink): the next
 * definition of the symbol after the executable's, i.e. libc's (or a
 * sanitizer's wrapper of it).
 */
#ifndef KR_CLUSTER_LIBCNEXT_H
#define KR_CLUSTER_LIBCNEXT_H

#include <stddef.h>

/* Stores the function into *fn (a function pointer of size bytes).  Stops
 * the process, loudly, if there is none: nothing could make the call. */
void kr_libc_next(const char *name, void *fn, size_t size);

#endif
