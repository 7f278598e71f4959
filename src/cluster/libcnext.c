/* See libcnext.h. */
#include "cluster/libcnext.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kr_libc_next(const char *name, void *fn, size_t size)
{
    void *sym = dlsym(RTLD_NEXT, name);

    if (sym == NULL || size != sizeof(sym)) {
        fprintf(stderr, "keyraft: cannot find libc's %s()\n", name);
        abort();
    }
    /* POSIX guarantees that dlsym's object pointer can hold a function
     * pointer; copy it bytewise, as ISO C has no cast between the two. */
    memcpy(fn, &sym, size);
}
