/*
 * libFuzzer target: the raft entry frame, the log entry codec and the
 * state machine's apply.  Each input is decoded and applied to a state
 * that already holds a key and a Variable; whatever the bytes, decode and
 * apply must not crash, leak or read out of bounds, and a successfully
 * decoded entry must re-encode to the same bytes (the codec is
 * deterministic).  The input is also read as a raft frame (single or
 * batch, cluster/frame.h), whose payloads are applied in turn as the raft
 * glue does; every payload must lie inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/frame.h"
#include "common/err.h"
#include "state/codec.h"
#include "state/state.h"

static void seed(struct kr_state *s)
{
    struct kr_entry e;
    struct kr_buf b;

    memset(&e, 0, sizeof(e));
    e.type = KR_ENTRY_KEY_UPSERT;
    memcpy(e.key_upsert.key.key_id, "00000000-0000-4000-8000-000000000001",
           KR_UUID_LEN + 1);
    memcpy(e.key_upsert.key.algorithm, KR_ALGORITHM_AES256GCM,
           sizeof(KR_ALGORITHM_AES256GCM));
    e.key_upsert.key.state = KR_KEY_ACTIVE;
    e.key_upsert.key.wrapped = calloc(1, sizeof(struct kr_wrapped_key));
    e.key_upsert.key.n_wrapped = 1;
    e.key_upsert.key.wrapped[0].provider = strdup("aead");
    e.key_upsert.key.wrapped[0].provider_id = strdup("aead");
    kr_buf_init(&b);
    kr_entry_encode(&e, &b);
    kr_state_apply(s, 1, b.data, b.len);
    kr_buf_free(&b);
    kr_entry_clear(&e);
}

static void apply_frame(struct kr_state *s, uint64_t index, const uint8_t *data,
                        size_t size)
{
    struct kr_frame_reader fr;
    const uint8_t *p;
    size_t len;
    unsigned count = kr_frame_open(&fr, data, size), seen = 0;

    while (kr_frame_next(&fr, &p, &len)) {
        if (p < data || len > size || p + len > data + size)
            abort();
        kr_state_apply(s, index, p, len);
        seen++;
    }
    if (seen != count)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kr_state *s = NULL;
    struct kr_entry e;
    struct kr_buf b;

    if (kr_entry_decode(&e, data, size, NULL) == 0) {
        kr_buf_init(&b);
        if (kr_entry_encode(&e, &b) != 0 || b.len != size ||
            memcmp(b.data, data, size) != 0)
            abort();
        kr_buf_free(&b);
        kr_entry_clear(&e);
    }
    if (kr_state_new(&s) != 0)
        return 0;
    seed(s);
    kr_state_apply(s, 2, data, size);
    kr_state_apply(s, 3, data, size);
    apply_frame(s, 4, data, size);
    kr_state_free(s);
    return 0;
}
