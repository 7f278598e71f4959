/*
 * UUIDs in canonical lowercase 8-4-4-4-12 form (36 characters).  Generation
 * takes the 16 random bytes from the caller, so this module has no
 * dependency on a random source and the state machine can validate IDs.
 */
#ifndef KR_COMMON_UUID_H
#define KR_COMMON_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define KR_UUID_LEN 36

/* Formats 16 random bytes as a version-4 UUID into out[KR_UUID_LEN + 1]. */
void kr_uuid_format(const uint8_t bytes[16], char out[KR_UUID_LEN + 1]);

/* True when s is a canonical lowercase UUID. */
bool kr_uuid_valid(const char *s);

#endif
