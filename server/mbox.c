/* mbox files: split, unquoted, status headers read (see mbox.h). Every
 * function walks its input once from the start: a line is looked at when
 * the walk reaches it, and a Content-Length that does not frame its body
 * sends the walk back at most over that message's header. */
#include "server/mbox.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/storage.h"

static bool starts_from(const char *p, const char *end)
{
    return end - p >= 5 && memcmp(p, "From ", 5) == 0;
}

/* The end of the line at p (after its '\n', or end). */
static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl + 1 : end;
}

/* Whether the line [p, e) is empty ("\n" or "\r\n"). */
static bool line_empty(const char *p, const char *e)
{
    return (e - p == 1 && p[0] == '\n') || (e - p == 2 && p[0] == '\r' && p[1] == '\n');
}

/* The message bytes [b, e) less the empty line that separates it from
 * the next From_ line (when it has one). */
static size_t trim_separator(const char *b, const char *e)
{
    size_t n = (size_t)(e - b);
    if (n >= 2 && b[n - 1] == '\n' && b[n - 2] == '\n')
        return n - 1;
    if (n >= 4 && !memcmp(b + n - 4, "\r\n\r\n", 4))
        return n - 2;
    if (n == 1 && b[0] == '\n')
        return 0;
    if (n == 2 && b[0] == '\r' && b[1] == '\n')
        return 0;
    return n;
}

/* The value of a Content-Length field in the header [h, hend), -1 when
 * it has none (or a bad one). */
static long long content_length(const char *h, const char *hend)
{
    static const char name[] = "content-length:";
    for (const char *q = h; q < hend; q = line_end(q, hend)) {
        if (hend - q > (long)(sizeof(name) - 1) && !strncasecmp(q, name, sizeof(name) - 1)) {
            const char *v = q + sizeof(name) - 1;
            long long n = 0;
            bool any = false;
            while (v < hend && (*v == ' ' || *v == '\t'))
                v++;
            while (v < hend && *v >= '0' && *v <= '9' && n < (1LL << 50)) {
                n = n * 10 + (*v++ - '0');
                any = true;
            }
            return any ? n : -1;
        }
    }
    return -1;
}

/* Walks p[0..len) in fmt (RD, O: From_ lines; CL2: Content-Length where
 * it frames its body). *all_cl: every message was framed by its length. */
static int walk(const char *p, size_t len, enum mbox_format fmt,
                int (*cb)(void *arg, const struct mbox_msg *m), void *arg, bool *all_cl)
{
    const char *end = p + len, *q = p;
    bool any = false;

    if (all_cl)
        *all_cl = true;
    /* up to the first From_ line */
    while (q < end && !starts_from(q, end))
        q = line_end(q, end);
    while (q < end) {
        struct mbox_msg m;
        const char *fe = line_end(q, end), *b = fe, *e = NULL, *next = NULL;
        m.from = q + 5;
        m.from_len = (size_t)(fe - m.from);
        while (m.from_len && (m.from[m.from_len - 1] == '\n' || m.from[m.from_len - 1] == '\r'))
            m.from_len--;
        any = true;
        if (fmt == MBOX_CL2) {
            /* the header, then the body of Content-Length bytes */
            const char *h = b, *hend = NULL;
            for (const char *l = h; l < end; l = line_end(l, end)) {
                const char *le = line_end(l, end);
                if (line_empty(l, le)) {
                    hend = le;
                    break;
                }
            }
            if (hend) {
                long long n = content_length(h, hend);
                if (n >= 0 && n <= end - hend) {
                    const char *x = hend + n;
                    if (x == end) {
                        e = next = x;
                    } else if (starts_from(x, end)) {
                        e = next = x;
                    } else if (*x == '\n' && (x + 1 == end || starts_from(x + 1, end))) {
                        e = x;
                        next = x + 1;
                    } else if (end - x >= 2 && x[0] == '\r' && x[1] == '\n' &&
                               (x + 2 == end || starts_from(x + 2, end))) {
                        e = x;
                        next = x + 2;
                    }
                }
            }
        }
        if (!e) {
            /* the next line that starts with "From " ends the message */
            const char *l = b;
            if (all_cl)
                *all_cl = false;
            while (l < end && !starts_from(l, end))
                l = line_end(l, end);
            next = l;
            e = b + trim_separator(b, l);
        }
        m.p = b;
        m.len = (size_t)(e - b);
        if (cb) {
            int rc = cb(arg, &m);
            if (rc)
                return rc;
        }
        q = next;
    }
    if (all_cl && !any)
        *all_cl = false;
    return 0;
}

enum mbox_format mbox_detect(const char *p, size_t len)
{
    bool all_cl = false;

    walk(p, len, MBOX_CL2, NULL, NULL, &all_cl);
    return all_cl ? MBOX_CL2 : MBOX_RD;
}

int mbox_split(const char *p, size_t len, enum mbox_format fmt,
               int (*cb)(void *arg, const struct mbox_msg *m), void *arg)
{
    if (fmt == MBOX_AUTO)
        fmt = mbox_detect(p, len);
    return walk(p, len, fmt, cb, arg, NULL);
}

/* ---- one message ---- */

static bool field_is(const char *l, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && l[k] == ':' && !strncasecmp(l, name, k);
}

static void read_status(const char *v, size_t n, bool x_status, struct mbox_meta *meta)
{
    for (size_t i = 0; i < n; i++) {
        switch (v[i]) {
        case 'R':
            if (!x_status)
                meta->flags |= STORAGE_FLAG_SEEN;
            break;
        case 'A':
            if (x_status)
                meta->flags |= STORAGE_FLAG_ANSWERED;
            break;
        case 'F':
            if (x_status)
                meta->flags |= STORAGE_FLAG_FLAGGED;
            break;
        case 'T':
            if (x_status)
                meta->flags |= STORAGE_FLAG_DRAFT;
            break;
        case 'D':
            if (x_status)
                meta->flags |= STORAGE_FLAG_DELETED;
            break;
        default:
            break;
        }
    }
}

/* Keyword separators: commas, and spaces and control bytes (NUL too). */
static bool kw_sep(char c)
{
    return c == ',' || (unsigned char)c <= 0x20 || c == 0x7f;
}

static void read_keywords(const char *v, size_t n, struct mbox_meta *meta)
{
    size_t i = 0;
    while (i < n) {
        size_t s;
        while (i < n && kw_sep(v[i]))
            i++;
        s = i;
        while (i < n && !kw_sep(v[i]))
            i++;
        if (i > s && i - s <= MBOX_KEYWORD_LEN && meta->nkeywords < MBOX_KEYWORDS_MAX) {
            bool dup = false;
            for (size_t k = 0; k < meta->nkeywords && !dup; k++)
                dup = strlen(meta->keywords[k]) == i - s &&
                      !strncasecmp(meta->keywords[k], v + s, i - s);
            if (!dup) {
                memcpy(meta->keywords[meta->nkeywords], v + s, i - s);
                meta->keywords[meta->nkeywords][i - s] = '\0';
                meta->nkeywords++;
            }
        }
    }
}

/* The line [l, le) with the From_ quoting of fmt undone: how many bytes
 * to skip at its start (0 or 1). */
static size_t unquote_skip(const char *l, const char *le, enum mbox_format fmt)
{
    const char *q = l;
    if (fmt == MBOX_CL2 || l == le || *l != '>')
        return 0;
    if (fmt == MBOX_O)
        return starts_from(l + 1, le) ? 1 : 0;
    while (q < le && *q == '>')
        q++;
    return starts_from(q, le) ? 1 : 0;
}

int mbox_message(const struct mbox_msg *m, enum mbox_format fmt, char **out, size_t *outlen,
                 struct mbox_meta *meta)
{
    const char *p = m->p, *end = m->p + m->len, *l = p;
    bool in_header = true, dropping = false;
    char *o = malloc(m->len ? m->len : 1);
    size_t n = 0;
    /* the field being dropped: its value collected for the meta */
    enum { F_NONE, F_STATUS, F_XSTATUS, F_KEYWORDS } kind = F_NONE;

    memset(meta, 0, sizeof(*meta));
    if (!o)
        return -1;
    while (l < end) {
        const char *le = line_end(l, end);
        size_t skip = unquote_skip(l, le, fmt);
        const char *s = l + skip;
        size_t sl = (size_t)(le - s);
        if (in_header) {
            if (line_empty(s, le)) {
                in_header = false;
                dropping = false;
            } else if (*s == ' ' || *s == '\t') {
                /* a continuation belongs to the field before it */
            } else {
                dropping = false;
                kind = F_NONE;
                if (field_is(s, sl, "Status"))
                    kind = F_STATUS;
                else if (field_is(s, sl, "X-Status"))
                    kind = F_XSTATUS;
                else if (field_is(s, sl, "X-Keywords"))
                    kind = F_KEYWORDS;
                if (kind != F_NONE || field_is(s, sl, "X-UID") || field_is(s, sl, "X-IMAP") ||
                    field_is(s, sl, "X-IMAPbase") ||
                    (fmt == MBOX_CL2 && field_is(s, sl, "Content-Length")))
                    dropping = true;
            }
            if (dropping) {
                const char *v = memchr(s, ':', sl);
                const char *vs = v ? v + 1 : s;
                size_t vl = (size_t)(le - vs);
                if (kind == F_STATUS || kind == F_XSTATUS)
                    read_status(vs, vl, kind == F_XSTATUS, meta);
                else if (kind == F_KEYWORDS)
                    read_keywords(vs, vl, meta);
                l = le;
                continue;
            }
        }
        memcpy(o + n, s, sl);
        n += sl;
        l = le;
    }
    *out = o;
    *outlen = n;
    return 0;
}

/* ---- From_ line dates ---- */

static int month_of(const char *s, size_t n)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (n != 3)
        return -1;
    for (int i = 0; i < 12; i++)
        if (!strncasecmp(s, months + 3 * i, 3))
            return i;
    return -1;
}

static bool is_weekday(const char *s, size_t n)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    if (n != 3)
        return false;
    for (int i = 0; i < 7; i++)
        if (!strncasecmp(s, days + 3 * i, 3))
            return true;
    return false;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n && i < 9; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int64_t mbox_from_date(const char *s, size_t len)
{
    /* tokens: at most a few dozen are looked at */
    const char *tok[24];
    size_t tl[24], nt = 0, i = 0;

    while (i < len && nt < 24) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= len)
            break;
        tok[nt] = s + i;
        while (i < len && s[i] != ' ' && s[i] != '\t')
            i++;
        tl[nt] = (size_t)(s + i - tok[nt]);
        nt++;
    }
    for (size_t k = 0; k + 3 < nt; k++) {
        int mon, day, hh, mm, ss = 0;
        int64_t year = -1, zone = 0;
        const char *t;
        size_t tn;
        if (!is_weekday(tok[k], tl[k]) || (mon = month_of(tok[k + 1], tl[k + 1])) < 0)
            continue;
        if (!all_digits(tok[k + 2], tl[k + 2]) || tl[k + 2] > 2)
            continue;
        day = num(tok[k + 2], tl[k + 2]);
        t = tok[k + 3];
        tn = tl[k + 3];
        if (tn == 8 && t[2] == ':' && t[5] == ':' && all_digits(t, 2) && all_digits(t + 3, 2) &&
            all_digits(t + 6, 2)) {
            hh = num(t, 2);
            mm = num(t + 3, 2);
            ss = num(t + 6, 2);
        } else if (tn == 5 && t[2] == ':' && all_digits(t, 2) && all_digits(t + 3, 2)) {
            hh = num(t, 2);
            mm = num(t + 3, 2);
        } else {
            continue;
        }
        /* the year, with a zone before or after it */
        for (size_t j = k + 4; j < nt && j < k + 7; j++) {
            if (tl[j] == 4 && all_digits(tok[j], 4)) {
                year = num(tok[j], 4);
            } else if (tl[j] == 5 && (tok[j][0] == '+' || tok[j][0] == '-') &&
                       all_digits(tok[j] + 1, 4)) {
                int z = num(tok[j] + 1, 2) * 60 + num(tok[j] + 3, 2);
                zone = tok[j][0] == '-' ? -z : z;
            }
            if (year >= 0 && (j + 1 >= nt || tl[j + 1] != 5))
                break;
        }
        if (year < 1970 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
            return 0;
        return days_from_civil(year, (unsigned)mon + 1, (unsigned)day) * 86400 + hh * 3600 +
               mm * 60 + ss - zone * 60;
    }
    return 0;
}
