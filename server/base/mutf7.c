/* Modified UTF-7 names (RFC 3501 5.1.3) decoded to UTF-8. */
#include "server/base/mutf7.h"

#include <stdint.h>
#include <string.h>

#include "server/base/base64.h"

static int put_utf8(uint32_t cp, char *out, size_t cap, size_t *o)
{
    char tmp[4];
    size_t n;
    if (cp < 0x80) {
        tmp[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xc0 | (cp >> 6));
        tmp[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xe0 | (cp >> 12));
        tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        tmp[0] = (char)(0xf0 | (cp >> 18));
        tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (*o + n >= cap)
        return -1;
    memcpy(out + *o, tmp, n);
    *o += n;
    return 0;
}

int mutf7_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t i = 0, o = 0;

    if (cap == 0)
        return -1;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        if (ch < 0x20 || ch > 0x7e)
            return -1; /* only printable US-ASCII in modified UTF-7 */
        if (ch != '&') {
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)ch;
            i++;
            continue;
        }
        i++;
        if (i < len && in[i] == '-') {
            if (o + 1 >= cap)
                return -1;
            out[o++] = '&';
            i++;
            continue;
        }
        /* base64 of UTF-16BE up to '-' */
        uint32_t bits = 0, hi_sur = 0;
        unsigned nbits = 0;
        size_t start = i;
        while (i < len && in[i] != '-') {
            int v = base64_value((unsigned char)in[i], BASE64_IMAP_63);
            if (v < 0)
                return -1;
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            i++;
            if (nbits >= 16) {
                nbits -= 16;
                uint32_t unit = (bits >> nbits) & 0xffff;
                bits &= (1u << nbits) - 1;
                if (hi_sur) {
                    if (unit < 0xdc00 || unit > 0xdfff)
                        return -1;
                    uint32_t cp = 0x10000 + ((hi_sur - 0xd800) << 10) + (unit - 0xdc00);
                    hi_sur = 0;
                    if (put_utf8(cp, out, cap, &o) < 0)
                        return -1;
                } else if (unit >= 0xd800 && unit <= 0xdbff) {
                    hi_sur = unit;
                } else if (unit >= 0xdc00 && unit <= 0xdfff) {
                    return -1;
                } else {
                    /* printable ASCII must not be encoded */
                    if (unit >= 0x20 && unit <= 0x7e)
                        return -1;
                    if (unit == 0)
                        return -1;
                    if (put_utf8(unit, out, cap, &o) < 0)
                        return -1;
                }
            }
        }
        if (i >= len || i == start || hi_sur || nbits >= 6 || bits != 0)
            return -1; /* unterminated, empty, half a pair, or stray bits */
        i++;           /* '-' */
    }
    out[o] = '\0';
    return 0;
}
