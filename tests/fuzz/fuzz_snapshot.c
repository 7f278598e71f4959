/*
 * libFuzzer target: the state snapshot reader.  Arbitrary bytes must be
 * rejected without crashing and without touching the target state; bytes
 * that restore must snapshot back to exactly the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "state/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kr_state *s = NULL;
    struct kr_buf b;
    char err[KR_ERRMSG_SIZE];

    if (kr_state_new(&s) != 0)
        return 0;
    if (kr_state_restore(s, data, size, err) == 0) {
        kr_buf_init(&b);
        if (kr_state_snapshot(s, &b) != 0 || b.len != size ||
            memcmp(b.data, data, size) != 0)
            abort();
        kr_buf_free(&b);
    } else if (kr_state_key_count(s) != 0 || kr_state_var_count(s) != 0) {
        abort();
    }
    kr_state_free(s);
    return 0;
}
