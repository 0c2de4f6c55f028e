/* Line reader shared by IMAP, POP3 and LMTP. Memory stays bounded by the
 * line limit plus one read; an idle session holds no buffer at all. */
#include "protocol/linebuf.h"

#include <stdlib.h>
#include <string.h>

void linebuf_init(struct linebuf *lb, size_t max_line)
{
    memset(lb, 0, sizeof(*lb));
    lb->max = max_line;
}

void linebuf_limits(struct linebuf *lb, size_t max_line, uint64_t skip_max)
{
    lb->max = max_line;
    lb->skip_max = skip_max;
}

void linebuf_free(struct linebuf *lb)
{
    if (lb->p)
        explicit_bzero(lb->p, lb->cap); /* lines may have carried passwords */
    free(lb->p);
    lb->p = NULL;
    lb->off = lb->len = lb->cap = lb->scanned = 0;
}

void linebuf_clear(struct linebuf *lb)
{
    linebuf_free(lb);
    lb->skipping = 0;
    lb->skipped = 0;
}

const char *linebuf_data(const struct linebuf *lb)
{
    return lb->p ? lb->p + lb->off : "";
}

size_t linebuf_pending(const struct linebuf *lb)
{
    return lb->len;
}

int linebuf_append(struct linebuf *lb, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    if (lb->off && lb->off + lb->len + len > lb->cap) {
        memmove(lb->p, lb->p + lb->off, lb->len);
        lb->off = 0;
    }
    if (lb->len + len > lb->cap) {
        size_t ncap = lb->cap ? lb->cap : 1024;
        while (ncap < lb->len + len)
            ncap *= 2;
        char *np = realloc(lb->p, ncap);
        if (!np)
            return -1;
        lb->p = np;
        lb->cap = ncap;
    }
    memcpy(lb->p + lb->off + lb->len, data, len);
    lb->len += len;
    return 0;
}

static void consume(struct linebuf *lb, size_t n)
{
    lb->off += n;
    lb->len -= n;
    lb->scanned = 0;
}

/* Drops n more bytes of an over-long line: LINEBUF_ENDLESS the first time
 * the line passes skip_max, else what the caller would have returned. */
static int drop(struct linebuf *lb, size_t n, int r)
{
    consume(lb, n);
    lb->skipped += n;
    if (lb->skip_max && lb->skipped > lb->skip_max && !lb->endless) {
        lb->endless = 1;
        return LINEBUF_ENDLESS;
    }
    return r;
}

int linebuf_line(struct linebuf *lb, const char **line, size_t *len)
{
    for (;;) {
        if (lb->len == 0) {
            linebuf_free(lb); /* idle sessions keep nothing */
            return LINEBUF_MORE;
        }
        char *start = lb->p + lb->off;
        char *lf =
            lb->len > lb->scanned ? memchr(start + lb->scanned, '\n', lb->len - lb->scanned) : NULL;

        if (lb->skipping) {
            if (!lf)
                return drop(lb, lb->len, LINEBUF_MORE);
            lb->skipping = 0;
            int r = drop(lb, (size_t)(lf - start) + 1, LINEBUF_MORE);
            if (r != LINEBUF_MORE)
                return r;
            continue;
        }
        if (!lf) {
            lb->scanned = lb->len;
            if (lb->len >= lb->max) {
                /* over the limit with no end in sight: say so now, drop
                 * it and what follows up to its end (one already past
                 * skip_max is ENDLESS with the next bytes of it) */
                lb->skipped = lb->len;
                consume(lb, lb->len);
                lb->endless = 0;
                lb->skipping = 1;
                return LINEBUF_TOOLONG;
            }
            return LINEBUF_MORE;
        }
        size_t total = (size_t)(lf - start) + 1;
        if (total > lb->max) {
            /* the whole line is here: one answer, ENDLESS when it is even
             * past skip_max (its end seen or not makes no difference) */
            lb->skipped = 0;
            lb->endless = 0;
            return drop(lb, total, LINEBUF_TOOLONG);
        }
        size_t l = total - 1;
        if (l && start[l - 1] == '\r')
            l--;
        /* only move offsets: the line must stay valid until the next call */
        lb->off += total;
        lb->len -= total;
        lb->scanned = 0;
        *line = start;
        *len = l;
        return LINEBUF_LINE;
    }
}

size_t linebuf_take(struct linebuf *lb, size_t want, const char **p)
{
    size_t n = want < lb->len ? want : lb->len;
    *p = lb->p + lb->off;
    lb->off += n;
    lb->len -= n;
    lb->scanned = 0;
    return n;
}
