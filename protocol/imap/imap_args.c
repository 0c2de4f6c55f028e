/* Reading IMAP arguments (RFC 3501 section 9 grammar) from an assembled
 * command, where literals stand inline as "{N}\r\n" (or "{N+}\r\n")
 * followed by N bytes: strings, lists with a depth limit, sequence sets,
 * flags, dates and mailbox names (modified UTF-7). Pure functions: the
 * unit tests and fuzz targets call them directly. */
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

void imap_args_init(struct imap_args *a, const char *p, size_t len, unsigned max_depth)
{
    a->p = p;
    a->end = p + len;
    a->depth = 0;
    a->max_depth = max_depth;
    a->utf8 = false;
}

bool imap_args_at_end(const struct imap_args *a)
{
    return a->p >= a->end;
}

bool imap_args_peek(const struct imap_args *a, char ch)
{
    return a->p < a->end && *a->p == ch;
}

bool imap_args_eat(struct imap_args *a, char ch)
{
    if (!imap_args_peek(a, ch))
        return false;
    a->p++;
    return true;
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

int imap_args_open(struct imap_args *a)
{
    if (!imap_args_peek(a, '('))
        return IMAP_ARG_BAD;
    if (a->depth + 1 > a->max_depth)
        return IMAP_ARG_DEEP;
    a->p++;
    a->depth++;
    return IMAP_ARG_OK;
}

int imap_args_close(struct imap_args *a)
{
    if (!imap_args_peek(a, ')') || a->depth == 0)
        return IMAP_ARG_BAD;
    a->p++;
    a->depth--;
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

int imap_args_modseq(struct imap_args *a, uint64_t *out)
{
    const char *d;
    size_t n;
    uint64_t v = 0;
    if (imap_args_atom(a, &d, &n) != IMAP_ARG_OK || n > 19)
        return IMAP_ARG_BAD;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return IMAP_ARG_BAD;
        v = v * 10 + (uint64_t)(d[i] - '0'); /* 19 digits fit in 64 bits */
    }
    if (v > INT64_MAX)
        return IMAP_ARG_BAD;
    *out = v;
    return IMAP_ARG_OK;
}

int imap_args_word(struct imap_args *a, const char **s, size_t *len)
{
    const char *start = a->p;
    unsigned brackets = 0;
    if (a->p >= a->end)
        return IMAP_ARG_END;
    /* BODY[HEADER.FIELDS (A B)]<0.10>: spaces and parentheses inside
     * brackets belong to the word */
    while (a->p < a->end) {
        char ch = *a->p;
        if (ch == '[')
            brackets++;
        else if (ch == ']' && brackets)
            brackets--;
        else if (!brackets && (ch == ' ' || ch == ')' || ch == '('))
            break;
        else if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f)
            return IMAP_ARG_BAD;
        a->p++;
    }
    if (a->p == start || brackets)
        return IMAP_ARG_BAD;
    *s = start;
    *len = (size_t)(a->p - start);
    return IMAP_ARG_OK;
}

/* Quoted string or literal at a->p: sets s and len to the raw bytes (quoted:
 * still escaped, *escaped set). */
static int string_raw(struct imap_args *a, const char **s, size_t *len, bool *escaped)
{
    *escaped = false;
    if (a->p >= a->end)
        return IMAP_ARG_END;
    if (*a->p == '"') {
        const char *q = a->p + 1;
        while (q < a->end && *q != '"') {
            if (*q == '\\') {
                if (q + 1 >= a->end || (q[1] != '\\' && q[1] != '"'))
                    return IMAP_ARG_BAD;
                *escaped = true;
                q += 2;
                continue;
            }
            if (*q == '\r' || *q == '\n' || *q == '\0')
                return IMAP_ARG_BAD;
            q++;
        }
        if (q >= a->end)
            return IMAP_ARG_BAD;
        *s = a->p + 1;
        *len = (size_t)(q - (a->p + 1));
        a->p = q + 1;
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
        if ((uint64_t)(a->end - q) < v)
            return IMAP_ARG_BAD;
        if (memchr(q, '\0', (size_t)v))
            return IMAP_ARG_BAD; /* NUL is not allowed in a string literal */
        *s = q;
        *len = (size_t)v;
        a->p = q + v;
        return IMAP_ARG_OK;
    }
    return IMAP_ARG_BAD;
}

static size_t unescape(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\')
            i++;
        out[o++] = s[i];
    }
    return o;
}

/* astring as raw pointer: atom run, quoted (escaped flag) or literal */
static int astring_raw(struct imap_args *a, const char **s, size_t *len, bool *escaped)
{
    if (a->p >= a->end)
        return IMAP_ARG_END;
    if (*a->p == '"' || *a->p == '{')
        return string_raw(a, s, len, escaped);
    *escaped = false;
    const char *start = a->p;
    while (a->p < a->end && astring_char((unsigned char)*a->p))
        a->p++;
    if (a->p == start)
        return IMAP_ARG_BAD;
    *s = start;
    *len = (size_t)(a->p - start);
    return IMAP_ARG_OK;
}

/* Copies the raw bytes (unescaping a quoted string), NUL-terminated;
 * returns the length. out has room for n + 1. */
static size_t copy_raw(char *out, const char *s, size_t n, bool esc)
{
    n = esc ? unescape(s, n, out) : (memcpy(out, s, n), n);
    out[n] = '\0';
    return n;
}

int imap_args_astring(struct imap_args *a, char *out, size_t outcap, size_t *len)
{
    const char *s;
    size_t n;
    bool esc;
    int r = astring_raw(a, &s, &n, &esc);
    if (r != IMAP_ARG_OK)
        return r;
    if (n + 1 > outcap)
        return IMAP_ARG_BAD;
    *len = copy_raw(out, s, n, esc);
    return IMAP_ARG_OK;
}

/* A string read by raw (string_raw or astring_raw), copied into the arena. */
static int dup_string(struct imap_args *a, struct imap_arena *ar,
                      int (*raw)(struct imap_args *, const char **, size_t *, bool *), char **out,
                      size_t *len)
{
    const char *s;
    size_t n;
    bool esc;
    int r = raw(a, &s, &n, &esc);
    if (r != IMAP_ARG_OK)
        return r;
    char *p = imap_arena_alloc(ar, n + 1);
    if (!p)
        return IMAP_ARG_NOMEM;
    n = copy_raw(p, s, n, esc);
    *out = p;
    if (len)
        *len = n;
    return IMAP_ARG_OK;
}

int imap_args_astring_dup(struct imap_args *a, struct imap_arena *ar, char **out, size_t *len)
{
    return dup_string(a, ar, astring_raw, out, len);
}

int imap_args_string_dup(struct imap_args *a, struct imap_arena *ar, char **out, size_t *len)
{
    return dup_string(a, ar, string_raw, out, len);
}

int imap_args_nstring_dup(struct imap_args *a, struct imap_arena *ar, char **out, size_t *len)
{
    if (a->end - a->p >= 3 && !strncasecmp(a->p, "NIL", 3) &&
        (a->end - a->p == 3 || !atom_char((unsigned char)a->p[3]))) {
        a->p += 3;
        *out = NULL;
        if (len)
            *len = 0;
        return IMAP_ARG_OK;
    }
    return imap_args_string_dup(a, ar, out, len);
}

static int mailbox_decode(const char *raw, size_t n, char *out, size_t outcap, bool utf8)
{
    if (utf8) {
        /* IMAP4rev2 (RFC 9051 5.1) and UTF8=ACCEPT (RFC 6855 3): the name
         * as sent, when it is UTF-8 */
        if (imap_utf8_name_check(raw, n) < 0 || n + 1 > outcap)
            return IMAP_ARG_BADNAME;
        memcpy(out, raw, n);
        out[n] = '\0';
    } else if (mutf7_decode(raw, n, out, outcap) < 0) {
        return IMAP_ARG_BADNAME;
    }
    /* INBOX is case-insensitive, also as the first hierarchy level */
    size_t l = strlen(out);
    if (l >= 5 && !strncasecmp(out, "INBOX", 5) && (l == 5 || out[5] == '/'))
        memcpy(out, "INBOX", 5);
    return IMAP_ARG_OK;
}

int imap_args_mailbox(struct imap_args *a, char *out, size_t outcap)
{
    char raw[IMAP_MBOX_ARG_MAX];
    size_t n;
    int r = imap_args_astring(a, raw, sizeof(raw), &n);
    if (r != IMAP_ARG_OK)
        return r;
    return mailbox_decode(raw, n, out, outcap, a->utf8);
}

int imap_args_pattern(struct imap_args *a, char *out, size_t outcap)
{
    char raw[IMAP_MBOX_ARG_MAX];
    size_t n = 0;

    if (a->p >= a->end)
        return IMAP_ARG_END;
    if (*a->p == '"' || *a->p == '{') {
        int r = imap_args_astring(a, raw, sizeof(raw), &n);
        if (r != IMAP_ARG_OK)
            return r;
    } else {
        /* list-char = ATOM-CHAR / list-wildcards / resp-specials */
        while (a->p < a->end &&
               (astring_char((unsigned char)*a->p) || *a->p == '%' || *a->p == '*')) {
            if (n + 1 >= sizeof(raw))
                return IMAP_ARG_BAD;
            raw[n++] = *a->p++;
        }
        if (n == 0)
            return IMAP_ARG_BAD;
        raw[n] = '\0';
    }
    return mailbox_decode(raw, n, out, outcap, a->utf8);
}

int imap_name_lax(int r, bool *invalid)
{
    *invalid = r == IMAP_ARG_BADNAME;
    return *invalid ? IMAP_ARG_OK : r;
}

/* ---- sequence sets ---- */

static int seq_number(const char **p, const char *end, uint32_t *v)
{
    uint64_t n = 0;
    const char *s = *p;
    if (s < end && *s == '*') {
        *v = IMAP_STAR;
        *p = s + 1;
        return 0;
    }
    if (s >= end || *s < '1' || *s > '9')
        return -1; /* nz-number: no 0, no leading zero */
    while (s < end && isdigit((unsigned char)*s)) {
        n = n * 10 + (uint64_t)(*s - '0');
        if (n > 0xffffffffull)
            return -1; /* 4294967296 and beyond */
        s++;
    }
    *v = (uint32_t)n;
    *p = s;
    return 0;
}

int imap_parse_seqset(const char *s, size_t len, struct imap_arena *ar, struct imap_seqset *out)
{
    const char *p = s, *end = s + len;
    size_t n = 1;

    out->n = 0;
    out->r = NULL;
    out->saved = false;
    if (len == 1 && *s == '$') {
        out->saved = true; /* alone: "$,1" or "$:4" are no sets */
        return IMAP_ARG_OK;
    }
    if (len == 0)
        return IMAP_ARG_BAD;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ',')
            n++;
    out->r = imap_arena_alloc(ar, n * sizeof(*out->r));
    if (!out->r)
        return IMAP_ARG_NOMEM;
    for (;;) {
        uint32_t lo, hi;
        if (seq_number(&p, end, &lo) < 0)
            return IMAP_ARG_BAD;
        hi = lo;
        if (p < end && *p == ':') {
            p++;
            if (seq_number(&p, end, &hi) < 0)
                return IMAP_ARG_BAD;
        }
        /* ranges may be written in either order; '*' stays IMAP_STAR
         * (the largest value, kept in hi) and is resolved later */
        if (lo == IMAP_STAR || (hi != IMAP_STAR && lo > hi)) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        out->r[out->n].lo = lo;
        out->r[out->n].hi = hi;
        out->n++;
        if (p == end)
            return IMAP_ARG_OK;
        if (*p != ',')
            return IMAP_ARG_BAD;
        p++;
    }
}

int imap_args_seqset(struct imap_args *a, struct imap_arena *ar, struct imap_seqset *out)
{
    const char *start = a->p;
    while (a->p < a->end && (isdigit((unsigned char)*a->p) || *a->p == ':' || *a->p == ',' ||
                             *a->p == '*' || *a->p == '$'))
        a->p++;
    if (a->p == start)
        return a->p >= a->end ? IMAP_ARG_END : IMAP_ARG_BAD;
    if (a->p < a->end && *a->p != ' ' && *a->p != ')')
        return IMAP_ARG_BAD;
    return imap_parse_seqset(start, (size_t)(a->p - start), ar, out);
}

/* ---- flags ---- */

static int one_flag(struct imap_args *a, struct imap_flags *f, const char ***kw, size_t *cap,
                    struct imap_arena *ar)
{
    static const struct {
        const char *name;
        unsigned bit;
    } sys[] = {
        {"\\Seen", STORAGE_FLAG_SEEN},       {"\\Answered", STORAGE_FLAG_ANSWERED},
        {"\\Flagged", STORAGE_FLAG_FLAGGED}, {"\\Deleted", STORAGE_FLAG_DELETED},
        {"\\Draft", STORAGE_FLAG_DRAFT},
    };
    const char *s;
    size_t n;

    if (imap_args_eat(a, '\\')) {
        if (imap_args_atom(a, &s, &n) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
        for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
            if (strlen(sys[i].name) - 1 == n && !strncasecmp(sys[i].name + 1, s, n)) {
                f->flags |= sys[i].bit;
                return IMAP_ARG_OK;
            }
        }
        if (n == 6 && !strncasecmp(s, "Recent", 6)) {
            f->recent = true;
            return IMAP_ARG_OK;
        }
        return IMAP_ARG_BAD; /* flag-extension: none defined */
    }
    if (imap_args_atom(a, &s, &n) != IMAP_ARG_OK)
        return IMAP_ARG_BAD;
    if (n > STORAGE_KEYWORD_MAX)
        return IMAP_ARG_BAD;
    for (size_t i = 0; i < f->nkw; i++)
        if (strlen(f->kw[i]) == n && !strncasecmp(f->kw[i], s, n))
            return IMAP_ARG_OK; /* named twice */
    if (f->nkw >= STORAGE_KEYWORDS_MAX)
        return IMAP_ARG_BAD;
    if (f->nkw == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        const char **nk = imap_arena_alloc(ar, ncap * sizeof(*nk));
        if (!nk)
            return IMAP_ARG_NOMEM;
        if (f->nkw)
            memcpy(nk, *kw, f->nkw * sizeof(*nk));
        *kw = nk;
        *cap = ncap;
        f->kw = nk;
    }
    char *d = imap_arena_strndup(ar, s, n);
    if (!d)
        return IMAP_ARG_NOMEM;
    (*kw)[f->nkw++] = d;
    return IMAP_ARG_OK;
}

int imap_args_flags(struct imap_args *a, struct imap_arena *ar, bool bare, struct imap_flags *out)
{
    const char **kw = NULL;
    size_t cap = 0;
    int r;

    memset(out, 0, sizeof(*out));
    if (imap_args_peek(a, '(')) {
        if ((r = imap_args_open(a)) != IMAP_ARG_OK)
            return r;
        if (imap_args_peek(a, ')'))
            return imap_args_close(a);
        for (;;) {
            if ((r = one_flag(a, out, &kw, &cap, ar)) != IMAP_ARG_OK)
                return r;
            if (imap_args_peek(a, ')'))
                return imap_args_close(a);
            if (imap_args_sp(a) != IMAP_ARG_OK)
                return IMAP_ARG_BAD;
        }
    }
    if (!bare)
        return IMAP_ARG_BAD;
    for (;;) {
        if ((r = one_flag(a, out, &kw, &cap, ar)) != IMAP_ARG_OK)
            return r;
        if (imap_args_at_end(a))
            return IMAP_ARG_OK;
        if (imap_args_sp(a) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
    }
}

/* ---- dates ---- */

static int month_of(const char *s)
{
    static const char m[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; i++)
        if (!strncasecmp(s, m[i], 3))
            return i;
    return -1;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    /* m 1..12; days since 1970-01-01 (proleptic Gregorian) */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool valid_day(int y, int mon, int d)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (d < 1 || d > mdays[mon])
        return false;
    if (mon == 1 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    return true;
}

/* "d-Mon-yyyy" or "dd-Mon-yyyy" (also " d-" with a leading space in
 * date-time); *used gets the bytes consumed. */
static int parse_dmy(const char *s, size_t len, size_t *used, int *d, int *mon, int *y)
{
    size_t i = 0;
    int day = 0, nd = 0, year = 0;

    if (i < len && s[i] == ' ')
        i++;
    while (i < len && isdigit((unsigned char)s[i]) && nd < 2) {
        day = day * 10 + (s[i++] - '0');
        nd++;
    }
    if (nd == 0 || i >= len || s[i] != '-')
        return -1;
    i++;
    if (len - i < 8)
        return -1;
    if ((*mon = month_of(s + i)) < 0)
        return -1;
    i += 3;
    if (s[i] != '-')
        return -1;
    i++;
    for (int k = 0; k < 4; k++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        year = year * 10 + (s[i++] - '0');
    }
    if (year < 1900 || !valid_day(year, *mon, day))
        return -1;
    *d = day;
    *y = year;
    *used = i;
    return 0;
}

int imap_parse_date(const char *s, size_t len, int64_t *t)
{
    size_t used;
    int d, mon, y;
    if (len && s[0] == ' ')
        return -1;
    if (parse_dmy(s, len, &used, &d, &mon, &y) < 0 || used != len)
        return -1;
    *t = days_from_civil(y, (unsigned)mon + 1, (unsigned)d) * 86400;
    return 0;
}

int imap_args_date(struct imap_args *a, int64_t *t)
{
    const char *s = a->p;
    size_t n;
    if (imap_args_eat(a, '"')) {
        const char *q = memchr(a->p, '"', (size_t)(a->end - a->p));
        if (!q)
            return IMAP_ARG_BAD;
        s = a->p;
        n = (size_t)(q - s);
        a->p = q + 1;
    } else {
        while (a->p < a->end && *a->p != ' ' && *a->p != ')')
            a->p++;
        n = (size_t)(a->p - s);
    }
    return imap_parse_date(s, n, t) < 0 ? IMAP_ARG_BAD : IMAP_ARG_OK;
}

int imap_args_datetime(struct imap_args *a, int64_t *t)
{
    /* DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE */
    const char *q;
    size_t used, len;
    int d, mon, y;

    if (!imap_args_eat(a, '"'))
        return IMAP_ARG_BAD;
    q = memchr(a->p, '"', (size_t)(a->end - a->p));
    if (!q)
        return IMAP_ARG_BAD;
    len = (size_t)(q - a->p);
    if (parse_dmy(a->p, len, &used, &d, &mon, &y) < 0)
        return IMAP_ARG_BAD;
    const char *s = a->p + used;
    if (len - used != 15 || s[0] != ' ' || s[3] != ':' || s[6] != ':' || s[9] != ' ' ||
        (s[10] != '+' && s[10] != '-'))
        return IMAP_ARG_BAD;
    for (int k = 1; k < 15; k++) {
        if (k == 3 || k == 6 || k == 9 || k == 10)
            continue;
        if (!isdigit((unsigned char)s[k]))
            return IMAP_ARG_BAD;
    }
    int hh = (s[1] - '0') * 10 + (s[2] - '0'), mm = (s[4] - '0') * 10 + (s[5] - '0'),
        ss = (s[7] - '0') * 10 + (s[8] - '0');
    int zh = (s[11] - '0') * 10 + (s[12] - '0'), zm = (s[13] - '0') * 10 + (s[14] - '0');
    if (hh > 23 || mm > 59 || ss > 60 || zm > 59)
        return IMAP_ARG_BAD;
    int64_t off = (int64_t)(zh * 3600 + zm * 60) * (s[10] == '-' ? -1 : 1);
    *t =
        days_from_civil(y, (unsigned)mon + 1, (unsigned)d) * 86400 + hh * 3600 + mm * 60 + ss - off;
    a->p = q + 1;
    return IMAP_ARG_OK;
}

bool imap_word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && !strncasecmp(w, kw, n);
}
