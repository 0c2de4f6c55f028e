/* MIME helpers: header field iteration and unfolding, charset conversion
 * (iconv), quoted-printable decoding, RFC 2047 encoded words, RFC 5322 dates,
 * and header field filtering for BODY[HEADER.FIELDS]. */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/base/base64.h"
#include "storage/mime.h"
#include "storage/mime_private.h"
#include "storage/storage.h"

int mime_strncaseeq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);

    return alen == blen && strncasecmp(a, b, blen) == 0;
}

/* ---- header fields */

/* End of the line starting at pos: index just past its LF (or len). */
static size_t line_end(const char *p, size_t len, size_t pos)
{
    const char *nl = memchr(p + pos, '\n', len - pos);

    return nl ? (size_t)(nl - p) + 1 : len;
}

static int is_blank_line(const char *p, size_t len, size_t pos)
{
    if (pos < len && p[pos] == '\n')
        return 1;
    return pos + 1 < len && p[pos] == '\r' && p[pos + 1] == '\n';
}

size_t mime_header_len(const char *msg, size_t len)
{
    size_t pos = 0;

    while (pos < len) {
        if (is_blank_line(msg, len, pos))
            return line_end(msg, len, pos);
        pos = line_end(msg, len, pos);
    }
    return len;
}

int mime_next_field(const char *hdr, size_t len, size_t *pos, struct mime_field *f)
{
    size_t p = *pos, end, i;
    const char *colon;

    if (p >= len || is_blank_line(hdr, len, p))
        return 0;
    end = line_end(hdr, len, p);
    while (end < len && (hdr[end] == ' ' || hdr[end] == '\t'))
        end = line_end(hdr, len, end);
    f->raw = hdr + p;
    f->rawlen = end - p;
    colon = memchr(hdr + p, ':', end - p);
    /* a colon on a continuation line does not make a field name */
    if (colon != NULL && memchr(hdr + p, '\n', (size_t)(colon - (hdr + p))) != NULL)
        colon = NULL;
    if (colon == NULL) {
        f->name = hdr + p;
        f->namelen = end - p;
        f->value = NULL;
        f->valuelen = 0;
    } else {
        f->name = hdr + p;
        i = (size_t)(colon - (hdr + p));
        while (i > 0 && (f->name[i - 1] == ' ' || f->name[i - 1] == '\t'))
            i--;
        f->namelen = i;
        f->value = colon + 1;
        f->valuelen = (size_t)(hdr + end - f->value);
    }
    *pos = end;
    return 1;
}

static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void mime_trim(const char **v, size_t *len)
{
    while (*len > 0 && is_fws(**v)) {
        (*v)++;
        (*len)--;
    }
    while (*len > 0 && is_fws((*v)[*len - 1]))
        (*len)--;
}

void mime_unfold(struct buf *b, const char *v, size_t len)
{
    size_t i, start;

    mime_trim(&v, &len);
    start = 0;
    for (i = 0; i < len; i++) {
        if (v[i] == '\r' || v[i] == '\n') {
            buf_add(b, v + start, i - start);
            start = i + 1;
        }
    }
    buf_add(b, v + start, len - start);
}

/* Whether a header block ends with the blank line that separates it from
 * a body ("\r\n\r\n", "\n\n", or a block that is only that line). */
static int ends_with_blank_line(const char *hdr, size_t len)
{
    if (len == 0 || hdr[len - 1] != '\n')
        return 0;
    len--;
    if (len > 0 && hdr[len - 1] == '\r')
        len--;
    return len == 0 || hdr[len - 1] == '\n';
}

/* The names a header block is matched against, their lengths taken once
 * per block rather than once per field and name. */
#define FIELDS_LEN_KEPT 32

static int name_listed(const char *name, size_t namelen, const char *const *names, size_t n,
                       const size_t *lens)
{
    for (size_t i = 0; i < n; i++) {
        size_t l = i < FIELDS_LEN_KEPT ? lens[i] : strlen(names[i]);
        if (l == namelen && strncasecmp(name, names[i], l) == 0)
            return 1;
    }
    return 0;
}

/* The fields of a header block that keep(f, arg) chooses, appended to b
 * as HEADER.FIELDS answers them: each whole, ending in a line end, then
 * the blank line if the block ends with one. */
static void fields_kept(const char *hdr, size_t len,
                        bool (*keep)(const struct mime_field *f, void *arg), void *arg,
                        struct buf *b)
{
    struct mime_field f;
    size_t pos = 0;

    while (mime_next_field(hdr, len, &pos, &f)) {
        if (f.value == NULL || !keep(&f, arg))
            continue;
        buf_add(b, f.raw, f.rawlen);
        if (f.rawlen == 0 || f.raw[f.rawlen - 1] != '\n')
            buf_add(b, "\r\n", 2);
    }
    /* RFC 3501 6.4.5: the blank line is always included, "except in the
     * case of a message which has no body and no blank line" */
    if (ends_with_blank_line(hdr, len))
        buf_add(b, "\r\n", 2);
}

struct names_match {
    const char *const *names;
    size_t n, lens[FIELDS_LEN_KEPT];
    int negate;
};

static bool keep_named(const struct mime_field *f, void *arg)
{
    const struct names_match *nm = arg;
    return name_listed(f->name, f->namelen, nm->names, nm->n, nm->lens) != !!nm->negate;
}

void mime_header_fields_buf(const char *hdr, size_t len, const char *const *names, size_t n,
                            int negate, struct buf *b)
{
    struct names_match nm = {.names = names, .n = n, .negate = negate};

    for (size_t i = 0; i < n && i < FIELDS_LEN_KEPT; i++)
        nm.lens[i] = strlen(names[i]);
    fields_kept(hdr, len, keep_named, &nm, b);
}

int mime_header_fields(const char *hdr, size_t len, const char *const *names, size_t n, int negate,
                       char **out, size_t *outlen)
{
    struct buf b = {0};

    mime_header_fields_buf(hdr, len, names, n, negate, &b);
    *outlen = b.len;
    *out = buf_take(&b);
    if (*out == NULL) {
        *outlen = 0;
        return -1;
    }
    return 0;
}

/* ---- the header fields storage.h offers */

void storage_header_fields(const char *hdr, size_t len, const char *const *names, size_t n,
                           bool negate, struct buf *out)
{
    mime_header_fields_buf(hdr, len, names, n, negate ? 1 : 0, out);
}

/* The fields clients list a folder with (storage_listing_fields), sorted
 * as strcasecmp sorts them: a listing block's bit i is listing_names[i]. */
static const char *const listing_names[] = {
    "Bcc",        "Cc",         "Content-Type", "Date",      "Disposition-Notification-To",
    "From",       "Importance", "In-Reply-To",  "List-Post", "Message-ID",
    "Newsgroups", "Priority",   "References",   "Reply-To",  "Sender",
    "Subject",    "To",         "X-Priority",
};
#define LISTING_NAMES (sizeof(listing_names) / sizeof(listing_names[0]))

/* The index of name[0..len) in listing_names, any case, or -1. */
static int listing_index(const char *name, size_t len)
{
    size_t lo = 0, hi = LISTING_NAMES;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *l = listing_names[mid];
        size_t ll = strlen(l);
        int c = strncasecmp(name, l, len < ll ? len : ll);
        if (c == 0)
            c = len < ll ? -1 : len > ll;
        if (c == 0)
            return (int)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

bool storage_listing_fields(const char *const *names, size_t n, unsigned *mask)
{
    *mask = 0;
    for (size_t i = 0; i < n; i++) {
        int k = listing_index(names[i], strlen(names[i]));
        if (k < 0)
            return false;
        *mask |= 1u << k;
    }
    return true;
}

/* keep() of the listing fields, their bits gathered in *(unsigned *)arg */
static bool keep_listed(const struct mime_field *f, void *arg)
{
    int k = listing_index(f->name, f->namelen);
    if (k < 0)
        return false;
    *(unsigned *)arg |= 1u << k;
    return true;
}

unsigned storage_listing_block(const char *hdr, size_t len, struct buf *out)
{
    unsigned mask = 0;

    fields_kept(hdr, len, keep_listed, &mask, out);
    return mask;
}

/* ---- charsets */

static void add_fffd(struct buf *b)
{
    buf_add(b, "\xef\xbf\xbd", 3);
}

size_t mime_utf8_char(const unsigned char *p, size_t len, uint32_t *cp)
{
    size_t n, i;
    uint32_t c;

    if (len == 0)
        return 0;
    c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, c &= 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, c &= 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, c &= 0x07;
    else
        return 0;
    if (len < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3fu);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

void mime_utf8_sanitize(struct buf *b, const char *p, size_t len)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0, start = 0, n;

    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        n = mime_utf8_char(u + i, len - i, &cp);
        if (n == 0) {
            buf_add(b, p + start, i - start);
            add_fffd(b);
            i++;
            start = i;
        } else
            i += n;
    }
    buf_add(b, p + start, len - start);
}

static int is_utf8_name(const char *cs, size_t len)
{
    return mime_strncaseeq(cs, len, "utf-8") || mime_strncaseeq(cs, len, "utf8") ||
           mime_strncaseeq(cs, len, "us-ascii") || mime_strncaseeq(cs, len, "ascii");
}

void mime_to_utf8(struct buf *b, const char *charset, size_t cslen, const char *p, size_t len)
{
    char name[64];
    iconv_t cd;
    char *in, *outp;
    size_t inleft, outleft, r, chunk;
    char tmp[1024];

    if (charset == NULL || cslen == 0 || cslen >= sizeof(name) || is_utf8_name(charset, cslen)) {
        mime_utf8_sanitize(b, p, len);
        return;
    }
    memcpy(name, charset, cslen);
    name[cslen] = '\0';
    /* RFC 2231 language suffix: charset*lang */
    if ((in = strchr(name, '*')) != NULL)
        *in = '\0';
    cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1) {
        mime_utf8_sanitize(b, p, len);
        return;
    }
    in = (char *)(uintptr_t)p;
    inleft = len;
    while (inleft > 0 && !b->oom) {
        outp = tmp;
        outleft = sizeof(tmp);
        r = iconv(cd, &in, &inleft, &outp, &outleft);
        chunk = sizeof(tmp) - outleft;
        /* iconv output is UTF-8 already; sanitize anyway for odd converters */
        mime_utf8_sanitize(b, tmp, chunk);
        if (r == (size_t)-1) {
            if (errno == E2BIG)
                continue;
            /* EILSEQ or EINVAL: replace one byte and go on */
            add_fffd(b);
            in++;
            inleft--;
            iconv(cd, NULL, NULL, NULL, NULL);
        }
    }
    iconv_close(cd);
}

/* ---- transfer encodings */

void mime_qp_decode(struct buf *b, const char *p, size_t len, int header_q)
{
    size_t i = 0, start = 0, j;
    int h1, h2;

    while (i < len) {
        if (header_q && p[i] == '_') {
            buf_add(b, p + start, i - start);
            buf_addc(b, ' ');
            start = ++i;
            continue;
        }
        if (p[i] != '=') {
            i++;
            continue;
        }
        buf_add(b, p + start, i - start);
        if (i + 2 < len && (h1 = hex_value((unsigned char)p[i + 1])) >= 0 &&
            (h2 = hex_value((unsigned char)p[i + 2])) >= 0) {
            buf_addc(b, (char)(h1 * 16 + h2));
            i += 3;
        } else {
            /* soft line break: "=" then optional whitespace then line end */
            j = i + 1;
            while (j < len && (p[j] == ' ' || p[j] == '\t'))
                j++;
            if (j < len && p[j] == '\r')
                j++;
            if (j < len && p[j] == '\n')
                i = j + 1;
            else if (j >= len)
                i = len;
            else {
                buf_addc(b, '='); /* stray "=": keep it */
                i++;
            }
        }
        start = i;
    }
    buf_add(b, p + start, len - start);
}

/* ---- RFC 2047 */

/* Recognize an encoded word at v[0..len): =?charset?X?text?= .
 * Returns its length or 0. */
/* An encoded word "=?charset?E?text?=" at v, or 0. When there is none
 * because the text runs into white space or the end without "?=", no '='
 * before that point can start one either (its text would be scanned over
 * the same bytes): *none_before is set to that point, so that the caller
 * does not try each of them -- trying them all was quadratic in a long
 * run without white space. */
static size_t encoded_word(const char *v, size_t len, const char **cs, size_t *cslen, char *enc,
                           const char **text, size_t *textlen, size_t *none_before)
{
    size_t i, q1, q2;

    if (len < 8 || v[0] != '=' || v[1] != '?')
        return 0;
    for (i = 2; i < len && v[i] != '?'; i++)
        if (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')
            return 0;
    if (i >= len || i == 2)
        return 0;
    q1 = i;
    if (q1 + 3 >= len || v[q1 + 2] != '?')
        return 0;
    *enc = v[q1 + 1];
    if (*enc != 'B' && *enc != 'b' && *enc != 'Q' && *enc != 'q')
        return 0;
    for (i = q1 + 3; i + 1 < len; i++) {
        if (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n') {
            *none_before = i;
            return 0;
        }
        if (v[i] == '?' && v[i + 1] == '=')
            break;
    }
    if (i + 1 >= len) {
        *none_before = len;
        return 0;
    }
    q2 = i;
    *cs = v + 2;
    *cslen = q1 - 2;
    *text = v + q1 + 3;
    *textlen = q2 - (q1 + 3);
    return q2 + 2;
}

static void flush_words(struct buf *b, struct buf *raw, const char *cs, size_t cslen)
{
    if (raw->len > 0)
        mime_to_utf8(b, cs, cslen, raw->p, raw->len);
    if (raw->oom)
        b->oom = true;
    buf_reset(raw);
}

void mime_decode_2047(struct buf *b, const char *v, size_t len)
{
    struct buf raw = {0};
    const char *cs = NULL, *ncs, *text;
    size_t cslen = 0, ncslen, textlen, i = 0, start = 0, wl, j;
    size_t none_before = 0; /* no encoded word starts before this */
    char enc;
    int after_word = 0;

    while (i < len) {
        if (v[i] == '\r' || v[i] == '\n') {
            /* unfold */
            if (!after_word)
                mime_utf8_sanitize(b, v + start, i - start);
            start = ++i;
            continue;
        }
        wl = 0;
        if (v[i] == '=' && i >= none_before) {
            size_t none = 0;
            wl = encoded_word(v + i, len - i, &ncs, &ncslen, &enc, &text, &textlen, &none);
            if (wl == 0 && none > 0)
                none_before = i + none;
        }
        if (wl == 0) {
            if (after_word && v[i] != ' ' && v[i] != '\t') {
                flush_words(b, &raw, cs, cslen);
                after_word = 0;
                /* whitespace between the word and this text is kept */
                start = i;
                while (start > 0 && (v[start - 1] == ' ' || v[start - 1] == '\t'))
                    start--;
                j = start;
                while (j < i) {
                    if (v[j] != '\r' && v[j] != '\n')
                        buf_addc(b, v[j]);
                    j++;
                }
                start = i;
            }
            i++;
            continue;
        }
        /* an encoded word at i */
        if (!after_word)
            mime_utf8_sanitize(b, v + start, i - start);
        else if (cs == NULL || ncslen != cslen || strncasecmp(cs, ncs, cslen) != 0)
            flush_words(b, &raw, cs, cslen);
        cs = ncs;
        cslen = ncslen;
        if (enc == 'B' || enc == 'b')
            base64_decode_lenient(&raw, text, textlen);
        else
            mime_qp_decode(&raw, text, textlen, 1);
        after_word = 1;
        i += wl;
        start = i;
    }
    if (after_word)
        flush_words(b, &raw, cs, cslen);
    else
        mime_utf8_sanitize(b, v + start, len - start);
    buf_free(&raw);
}

char *mime_decode_header_value(const char *v, size_t len)
{
    struct buf b = {0}, u = {0};

    mime_unfold(&u, v, len);
    if (u.oom) {
        buf_free(&u);
        return NULL;
    }
    mime_decode_2047(&b, u.p ? u.p : "", u.len);
    buf_free(&u);
    return buf_take(&b);
}

size_t mime_read_quoted(struct buf *b, const char *p, size_t len, size_t i)
{
    i++;
    while (i < len && p[i] != '"') {
        if (p[i] == '\\' && i + 1 < len)
            i++;
        if (p[i] != '\r' && p[i] != '\n')
            buf_addc(b, p[i]);
        i++;
    }
    return i < len ? i + 1 : i;
}

/* Skips white space (CR and LF included) and RFC 5322 comments, nested
 * and with quoted-pairs, from p[i]; returns the index after them. */
size_t mime_skip_cfws(const char *p, size_t len, size_t i)
{
    for (;;) {
        int depth = 0;
        while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
            i++;
        if (i >= len || p[i] != '(')
            return i;
        while (i < len) {
            char c = p[i++];
            if (c == '\\' && i < len)
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')' && --depth == 0)
                break;
        }
    }
}

/* ---- dates (RFC 5322 3.3 and 4.3) */

struct dscan {
    const char *p;
    size_t len, i;
};

static void dskip(struct dscan *s)
{
    s->i = mime_skip_cfws(s->p, s->len, s->i);
}

static int dnum(struct dscan *s, int maxdigits, int *ndigits)
{
    int v = 0, n = 0;

    while (s->i < s->len && s->p[s->i] >= '0' && s->p[s->i] <= '9' && n < maxdigits) {
        v = v * 10 + (s->p[s->i] - '0');
        s->i++;
        n++;
    }
    *ndigits = n;
    return v;
}

/* A number of one or two digits not above max, and the CFWS after it;
 * -1 when there is none or it is above max. */
static int dfield(struct dscan *s, int max)
{
    int nd, v = dnum(s, 2, &nd);

    if (nd == 0 || v > max)
        return -1;
    dskip(s);
    return v;
}

/* c and the CFWS after it: 1, or 0 when c is not next (nothing taken). */
static int dchar(struct dscan *s, char c)
{
    if (s->i >= s->len || s->p[s->i] != c)
        return 0;
    s->i++;
    dskip(s);
    return 1;
}

static size_t dword(struct dscan *s, const char **w)
{
    size_t st = s->i;

    while (s->i < s->len &&
           ((s->p[s->i] >= 'a' && s->p[s->i] <= 'z') || (s->p[s->i] >= 'A' && s->p[s->i] <= 'Z')))
        s->i++;
    *w = s->p + st;
    return s->i - st;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The date-time of v as unix time, its zone's offset (minutes east) in
 * *zone; 0 when unparseable. */
static int64_t parse_date(const char *v, size_t len, int *zone)
{
    static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
    static const struct {
        const char *name;
        int off;
    } zones[] = {{"ut", 0},        {"gmt", 0},       {"z", 0},         {"est", -5 * 60},
                 {"edt", -4 * 60}, {"cst", -6 * 60}, {"cdt", -5 * 60}, {"mst", -7 * 60},
                 {"mdt", -6 * 60}, {"pst", -8 * 60}, {"pdt", -7 * 60}};
    struct dscan s = {v, len, 0};
    const char *w;
    size_t wl, k;
    int day, mon = -1, year, hh, mm, ss = 0, nd, off = 0, sign;

    dskip(&s);
    wl = dword(&s, &w);
    if (wl > 0) { /* day-of-week */
        dskip(&s);
        dchar(&s, ',');
    }
    day = dfield(&s, 31);
    if (day < 1)
        return 0;
    if (s.i < s.len && s.p[s.i] == '-') /* obsolete dd-Mon-yy */
        s.i++;
    wl = dword(&s, &w);
    for (k = 0; k < 12; k++)
        if (wl >= 3 && strncasecmp(w, months[k], 3) == 0)
            mon = (int)k + 1;
    if (mon < 0)
        return 0;
    dskip(&s);
    if (s.i < s.len && s.p[s.i] == '-')
        s.i++;
    year = dnum(&s, 4, &nd);
    if (nd == 0)
        return 0;
    if (nd == 2)
        year += year < 50 ? 2000 : 1900;
    else if (nd == 3)
        year += 1900;
    dskip(&s);
    hh = dfield(&s, 23);
    if (hh < 0 || !dchar(&s, ':') || (mm = dfield(&s, 59)) < 0)
        return 0;
    if (dchar(&s, ':') && (ss = dfield(&s, 60)) < 0)
        return 0;
    if (s.i < s.len && (s.p[s.i] == '+' || s.p[s.i] == '-')) {
        sign = s.p[s.i] == '-' ? -1 : 1;
        s.i++;
        off = dnum(&s, 4, &nd);
        if (nd != 4 || off % 100 > 59)
            off = 0;
        else
            off = sign * ((off / 100) * 60 + off % 100);
    } else {
        wl = dword(&s, &w);
        for (k = 0; k < sizeof(zones) / sizeof(zones[0]); k++)
            if (mime_strncaseeq(w, wl, zones[k].name))
                off = zones[k].off;
        /* military and unknown zones: RFC 5322 4.3 says treat as -0000 */
    }
    *zone = off;
    return days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)off * 60;
}

int64_t mime_parse_date(const char *v, size_t len)
{
    int zone;
    return parse_date(v, len, &zone);
}

int64_t mime_parse_date_written(const char *v, size_t len)
{
    int zone = 0;
    int64_t t = parse_date(v, len, &zone);
    return t ? t + (int64_t)zone * 60 : 0;
}

/* ---- SEARCH CHARSET */

bool storage_charset_known(const char *name)
{
    size_t len = strlen(name);
    iconv_t cd;

    if (len == 0 || len >= 64)
        return false;
    if (is_utf8_name(name, len))
        return true;
    cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1)
        return false;
    iconv_close(cd);
    return true;
}

int storage_charset_to_utf8(const char *charset, const char *s, size_t len, char **out,
                            size_t *outlen)
{
    struct buf b = {0};

    mime_to_utf8(&b, charset, strlen(charset), s, len);
    *outlen = b.len;
    *out = buf_take(&b);
    if (!*out) {
        *outlen = 0;
        return -1;
    }
    return 0;
}
