/* The growable byte buffer and the writers of numbers and IMAP strings. */
#include "server/base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool buf_reserve(struct buf *b, size_t more)
{
    if (b->oom)
        return false;
    if (more >= SIZE_MAX - b->len) {
        b->oom = true;
        return false;
    }
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + more + 1) {
        if (ncap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        ncap *= 2;
    }
    char *n = realloc(b->p, ncap);
    if (!n) {
        b->oom = true;
        return false;
    }
    b->p = n;
    b->cap = ncap;
    return true;
}

void buf_add(struct buf *b, const void *p, size_t len)
{
    if (!buf_reserve(b, len))
        return;
    if (len)
        memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void buf_addc(struct buf *b, char c)
{
    buf_add(b, &c, 1);
}

void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

void buf_addu(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_add(b, tmp + i, sizeof(tmp) - i);
}

void buf_addself(struct buf *b, size_t off, size_t len)
{
    if (off > b->len || len > b->len - off || !buf_reserve(b, len))
        return;
    memmove(b->p + b->len, b->p + off, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    char small[256];
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n < sizeof(small)) {
        buf_add(b, small, (size_t)n);
    } else if (buf_reserve(b, (size_t)n)) {
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *buf_take(struct buf *b)
{
    if (!b->oom && !b->p)
        buf_add(b, "", 0);
    if (b->oom) {
        buf_free(b);
        return NULL;
    }
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->p)
        b->p[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

/* Appends p[0..len) with each NUL as a space; when quoted, '"' and '\'
 * get their backslash. One pass, runs copied whole. */
static void add_chars(struct buf *b, const char *p, size_t len, bool quoted)
{
    size_t start = 0;

    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c != '\0' && !(quoted && (c == '"' || c == '\\')))
            continue;
        buf_add(b, p + start, i - start);
        if (c == '\0') {
            buf_addc(b, ' ');
            start = i + 1;
        } else {
            buf_addc(b, '\\');
            start = i;
        }
    }
    buf_add(b, p + start, len - start);
}

void buf_imap_string(struct buf *b, const char *p, size_t len)
{
    bool literal = false;

    for (size_t i = 0; i < len && !literal; i++) {
        unsigned char c = (unsigned char)p[i];
        literal = c == '\r' || c == '\n' || c >= 0x80;
    }
    if (literal) {
        buf_addc(b, '{');
        buf_addu(b, len);
        buf_add(b, "}\r\n", 3);
    } else {
        buf_addc(b, '"');
    }
    add_chars(b, p, len, !literal);
    if (!literal)
        buf_addc(b, '"');
}

void buf_imap_nstring(struct buf *b, const char *p, size_t len)
{
    if (!p)
        buf_add(b, "NIL", 3);
    else
        buf_imap_string(b, p, len);
}
