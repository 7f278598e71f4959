/*
 * The keyraft executable: everything, the agent included, is a command of
 * the CLI dispatcher in src/cli.
 */
#include "cli/cli.h"

#ifdef KR_JEMALLOC
/*
 * jemalloc reads this at its first allocation (MALLOC_CONF in the
 * environment still overrides it). The agent locks all its memory
 * (mlockall), so jemalloc cannot give pages back by MADV_DONTNEED alone:
 * no retained mappings (freed extents are unmapped), dirty pages purged
 * 100 ms after they are freed by a background thread rather than in the
 * middle of an allocation on the loop, and no lazy (muzzy) stage; blocks
 * of 1 MiB and more (a restore's chunks) go back as soon as they are
 * freed. See docs/architecture.md, "Memory allocator".
 */
const char *malloc_conf = "retain:false,dirty_decay_ms:100,"
                          "muzzy_decay_ms:0,background_thread:true,"
                          "oversize_threshold:1048576";
#endif

int main(int argc, char **argv)
{
    return kr_cli_main(argc, argv);
}
