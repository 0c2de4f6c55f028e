/* Strict base64 (RFC 4648 section 4) for SASL exchanges: padding required,
 * no whitespace, no characters outside the alphabet, no non-zero pad bits. */
#include "auth/auth.h"

#include <limits.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of one alphabet character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap)
{
    size_t o = 0;

    if (len % 4 != 0 || len > LONG_MAX)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        size_t pad = 0;
        bool last = i + 4 == len;

        for (size_t j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];

            if (c == '=') {
                /* only in the last quantum, only in its last two places */
                if (!last || j < 2)
                    return -1;
                pad++;
                v[j] = 0;
                continue;
            }
            if (pad > 0) /* data after padding */
                return -1;
            v[j] = b64_value(c);
            if (v[j] < 0)
                return -1;
        }
        /* canonical encoding: the bits dropped by padding must be zero */
        if (pad == 2 && (v[1] & 0x0f) != 0)
            return -1;
        if (pad == 1 && (v[2] & 0x03) != 0)
            return -1;
        if (outcap - o < 3 - pad)
            return -1;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2)
            out[o++] = (unsigned char)((v[1] & 0x0f) << 4 | v[2] >> 2);
        if (pad < 1)
            out[o++] = (unsigned char)((v[2] & 0x03) << 6 | v[3]);
    }
    return (long)o;
}

long auth_base64_encode(const unsigned char *in, size_t len, char *out, size_t outcap)
{
    size_t need, o = 0;

    if (len > (size_t)LONG_MAX / 4 * 3 - 3)
        return -1;
    need = (len + 2) / 3 * 4;
    if (outcap < need)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        size_t rest = len - i;
        unsigned v = (unsigned)in[i] << 16;

        if (rest > 1)
            v |= (unsigned)in[i + 1] << 8;
        if (rest > 2)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = rest > 1 ? b64_alphabet[(v >> 6) & 0x3f] : '=';
        out[o++] = rest > 2 ? b64_alphabet[v & 0x3f] : '=';
    }
    if (o < outcap)
        out[o] = '\0';
    return (long)o;
}
