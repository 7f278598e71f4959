/*
 * See uuid.h.
 */
#include "common/uuid.h"

#include <stdio.h>
#include <string.h>

void kr_uuid_format(const uint8_t bytes[16], char out[KR_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    size_t o = 0;

    memcpy(b, bytes, 16);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

bool kr_uuid_valid(const char *s)
{
    if (s == NULL || strlen(s) != KR_UUID_LEN)
        return false;
    for (int i = 0; i < KR_UUID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}
