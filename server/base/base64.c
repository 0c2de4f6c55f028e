/* Base64 decoding and encoding, and hex digits (see base64.h). */
#include "server/base/base64.h"

#include <limits.h>
#include <stdbool.h>

#include "server/base/buf.h"

int base64_value(unsigned char c, char c63)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == (unsigned char)c63)
        return 63;
    return -1;
}

char base64_char(unsigned v, char c63)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+";
    v &= 0x3f;
    return v == 63 ? c63 : alphabet[v];
}

long base64_decode_strict(const char *in, size_t len, unsigned char *out, size_t outcap)
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
            v[j] = base64_value(c, BASE64_STD_63);
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

void base64_decode_lenient(struct buf *b, const char *in, size_t len)
{
    unsigned acc = 0;
    int bits = 0;
    char out[768];
    size_t n = 0;

    for (size_t i = 0; i < len && in[i] != '='; i++) {
        int v = base64_value((unsigned char)in[i], BASE64_STD_63);
        if (v < 0)
            continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((acc >> bits) & 0xff);
            if (n == sizeof(out)) {
                buf_add(b, out, n);
                n = 0;
            }
        }
    }
    buf_add(b, out, n);
}

long base64_encode(const unsigned char *in, size_t len, char *out, size_t outcap)
{
    size_t o = 0;

    if (len > (size_t)LONG_MAX / 4 * 3 - 3 || outcap < (len + 2) / 3 * 4)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        size_t rest = len - i;
        unsigned v = (unsigned)in[i] << 16;

        if (rest > 1)
            v |= (unsigned)in[i + 1] << 8;
        if (rest > 2)
            v |= in[i + 2];
        out[o++] = base64_char(v >> 18, BASE64_STD_63);
        out[o++] = base64_char(v >> 12, BASE64_STD_63);
        out[o++] = rest > 1 ? base64_char(v >> 6, BASE64_STD_63) : '=';
        out[o++] = rest > 2 ? base64_char(v, BASE64_STD_63) : '=';
    }
    if (o < outcap)
        out[o] = '\0';
    return (long)o;
}

int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
