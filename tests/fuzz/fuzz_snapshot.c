/*
 * libFuzzer target: the state snapshot reader (raft snapshots, staged
 * restores included).  Arbitrary bytes must be rejected without crashing
 * and without touching the target state.  Bytes that restore must
 * snapshot back to an encoding that restores to itself byte for byte.
 * That encoding is the input itself, except for the one older form the
 * reader takes: a ROOT_KEY record without rekey_total, which comes back
 * 8 bytes longer (docs/architecture.md "Snapshots").  So the output is
 * the input, or longer by a multiple of 8; any other non-canonical input
 * that restores (a misplaced identity or checkpoint record, say) aborts.
 * A loader fed the same bytes in two pieces must reach the same verdict
 * as kr_state_restore whenever no staged restore is involved.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "state/state.h"

static int load_in_two(const uint8_t *data, size_t size)
{
    struct kr_state_loader *l = NULL;
    char err[KR_ERRMSG_SIZE];
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    int rv;

    if (kr_state_loader_new(&l, true) != 0)
        return KR_ENOMEM;
    rv = kr_state_loader_feed(l, data, cut, err);
    if (rv == 0)
        rv = kr_state_loader_feed(l, data + cut, size - cut, err);
    if (rv == 0)
        rv = kr_state_loader_finish(l, err);
    kr_state_loader_free(l);
    return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kr_state *s = NULL, *t = NULL;
    struct kr_buf a, b;
    char err[KR_ERRMSG_SIZE];
    int rv;

    if (kr_state_new(&s) != 0 || kr_state_new(&t) != 0)
        abort();
    kr_buf_init(&a);
    kr_buf_init(&b);
    rv = kr_state_restore(s, data, size, err);
    if (rv == 0) {
        if (kr_state_snapshot(s, &a) != 0)
            abort();
        if (!(a.len == size && memcmp(a.data, data, size) == 0) &&
            !(a.len > size && (a.len - size) % 8 == 0))
            abort();
        if (kr_state_restore(t, a.data, a.len, err) != 0 ||
            kr_state_snapshot(t, &b) != 0 || a.len != b.len ||
            memcmp(a.data, b.data, a.len) != 0)
            abort();
        if (!kr_state_stage_info(s, NULL, NULL, NULL) &&
            load_in_two(data, size) != 0)
            abort();
    } else {
        if (kr_state_key_count(s) != 0 || kr_state_var_count(s) != 0)
            abort();
        if (load_in_two(data, size) == 0)
            abort();
    }
    kr_buf_free(&a);
    kr_buf_free(&b);
    kr_state_free(s);
    kr_state_free(t);
    return 0;
}
