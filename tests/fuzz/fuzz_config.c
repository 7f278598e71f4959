/*
 * libFuzzer target for the configuration loader: the same bytes are
 * loaded as HCL and as JSON through kr_config_merge_string(), then
 * finished, so the parsers, the schema and the keyring merge all see
 * hostile input.  Beyond what ASan and UBSan catch, it checks the error
 * contract: every failed merge reports "name:line: ..." with a line inside
 * the input.
 *
 * Build with clang -fsanitize=fuzzer,address,undefined -std=c11
 * -D_GNU_SOURCE -Isrc, this file and the .c files of src/config and
 * src/common; run as ./fuzz_config -max_total_time=60 corpus/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless errmsg is "name:<line>: ..." with 1 <= line <= lines. */
static void check_origin(const char *errmsg, const char *name, int lines)
{
    size_t n = strlen(name);
    int line = 0, end = 0;

    if (strncmp(errmsg, name, n) != 0 ||
        sscanf(errmsg + n, ":%d:%n", &line, &end) != 1 || end == 0 ||
        line < 1 || line > lines) {
        fprintf(stderr, "bad error origin: %s\n", errmsg);
        abort();
    }
}

static void load(const char *name, const char *text, size_t size, int lines)
{
    struct kr_config *cfg = NULL;
    char errmsg[KR_ERRMSG_SIZE];
    int rv;

    if (kr_config_new(&cfg, true) != 0)
        return;
    errmsg[0] = '\0';
    rv = kr_config_merge_string(cfg, name, text, size, errmsg);
    if (rv == KR_EINVAL)
        check_origin(errmsg, name, lines);
    else if (rv == 0)
        (void)kr_config_finish(cfg, errmsg);
    kr_config_free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A separate allocation of exactly size bytes: the loader must not
     * need a terminator, and ASan sees any read past the end. */
    char *text = malloc(size == 0 ? 1 : size);
    int lines = 1;

    if (text == NULL)
        return 0;
    if (size > 0)
        memcpy(text, data, size);
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    load("fuzz.hcl", text, size, lines);
    load("fuzz.json", text, size, lines);
    free(text);
    return 0;
}
