/* Output checks shared by the MIME fuzz targets: a finding calls abort(). */
#ifndef COFFRE_FUZZ_CHECK_H
#define COFFRE_FUZZ_CHECK_H

#include <stdlib.h>
#include <string.h>

/* IMAP output s[0..len): parentheses balanced outside quoted strings and
 * literals, ending at depth 0. */
static inline int fuzz_balanced(const char *s, size_t len)
{
    size_t i = 0;
    unsigned long n;
    int depth = 0;
    char *end;

    while (i < len) {
        if (s[i] == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
        } else if (s[i] == '{') {
            n = strtoul(s + i + 1, &end, 10);
            i = (size_t)(end - s) + 3 + n - 1;
        } else if (s[i] == '(')
            depth++;
        else if (s[i] == ')' && --depth < 0)
            return 0;
        i++;
    }
    return depth == 0;
}

/* p[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static inline int fuzz_valid_utf8(const char *p, size_t len)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0, n, k;
    unsigned long cp;

    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        if (u[i] >= 0xc2 && u[i] <= 0xdf)
            n = 2, cp = u[i] & 0x1f;
        else if (u[i] >= 0xe0 && u[i] <= 0xef)
            n = 3, cp = u[i] & 0x0f;
        else if (u[i] >= 0xf0 && u[i] <= 0xf4)
            n = 4, cp = u[i] & 0x07;
        else
            return 0;
        if (len - i < n)
            return 0;
        for (k = 1; k < n; k++) {
            if ((u[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n;
    }
    return 1;
}

#endif
