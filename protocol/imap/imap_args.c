/* Reading IMAP arguments (RFC 3501 section 9 grammar) from an assembled
 * command, where literals stand inline as "{N}\r\n" followed by N bytes. */
#include <ctype.h>
#include <string.h>

#include "protocol/imap/imap_private.h"

static bool atom_char(unsigned char ch)
{
    /* ATOM-CHAR: any CHAR except atom-specials */
    if (ch <= 0x20 || ch >= 0x7f)
        return false;
    return !strchr("(){%*\"\\]", ch);
}

static bool astring_char(unsigned char ch)
{
    return atom_char(ch) || ch == ']';
}

bool imap_args_at_end(const struct imap_args *a)
{
    return a->p >= a->end;
}

int imap_args_sp(struct imap_args *a)
{
    if (a->p >= a->end)
        return IMAP_ARG_END;
    if (*a->p != ' ')
        return IMAP_ARG_BAD;
    a->p++;
    return IMAP_ARG_OK;
}

int imap_args_atom(struct imap_args *a, const char **s, size_t *len)
{
    const char *start = a->p;
    if (a->p >= a->end)
        return IMAP_ARG_END;
    while (a->p < a->end && atom_char((unsigned char)*a->p))
        a->p++;
    if (a->p == start)
        return IMAP_ARG_BAD;
    *s = start;
    *len = (size_t)(a->p - start);
    return IMAP_ARG_OK;
}

int imap_args_astring(struct imap_args *a, char *out, size_t outcap, size_t *len)
{
    size_t n = 0;

    if (a->p >= a->end)
        return IMAP_ARG_END;
    if (*a->p == '"') {
        a->p++;
        while (a->p < a->end && *a->p != '"') {
            char ch = *a->p++;
            if (ch == '\\') {
                if (a->p >= a->end || (*a->p != '\\' && *a->p != '"'))
                    return IMAP_ARG_BAD;
                ch = *a->p++;
            } else if (ch == '\r' || ch == '\n' || ch == '\0') {
                return IMAP_ARG_BAD;
            }
            if (n + 1 >= outcap)
                return IMAP_ARG_BAD;
            out[n++] = ch;
        }
        if (a->p >= a->end)
            return IMAP_ARG_BAD;
        a->p++; /* closing quote */
        out[n] = '\0';
        *len = n;
        return IMAP_ARG_OK;
    }
    if (*a->p == '{') {
        uint64_t v = 0;
        const char *q = a->p + 1;
        while (q < a->end && isdigit((unsigned char)*q) && v < (1ull << 40))
            v = v * 10 + (uint64_t)(*q++ - '0');
        if (q == a->p + 1)
            return IMAP_ARG_BAD;
        if (q < a->end && (*q == '+' || *q == '-'))
            q++;
        if (a->end - q < 3 || q[0] != '}' || q[1] != '\r' || q[2] != '\n')
            return IMAP_ARG_BAD;
        q += 3;
        if ((uint64_t)(a->end - q) < v || v + 1 > outcap)
            return IMAP_ARG_BAD;
        memcpy(out, q, (size_t)v);
        out[v] = '\0';
        if (memchr(out, '\0', (size_t)v))
            return IMAP_ARG_BAD; /* NUL is not allowed in a string literal */
        a->p = q + v;
        *len = (size_t)v;
        return IMAP_ARG_OK;
    }
    while (a->p < a->end && astring_char((unsigned char)*a->p)) {
        if (n + 1 >= outcap)
            return IMAP_ARG_BAD;
        out[n++] = *a->p++;
    }
    if (n == 0)
        return IMAP_ARG_BAD;
    out[n] = '\0';
    *len = n;
    return IMAP_ARG_OK;
}
