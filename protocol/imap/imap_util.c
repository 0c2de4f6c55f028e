/* IMAP writers into a struct buf (flags, dates, mailbox names), the
 * per-command arena, modified UTF-7 (RFC 3501 5.1.3) both ways with the
 * shared base64 alphabet, and the special-use names. Safe on pool
 * threads: no shared state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/imap/imap_private.h"
#include "server/base/base64.h"

/* ---- IMAP writers ---- */

/* modified UTF-7 */
static void buf_mailbox_mutf7(struct buf *b, const char *name)
{
    char enc[IMAP_MBOX_ARG_MAX * 2];
    if (imap_mutf7_encode(name, strlen(name), enc, sizeof(enc)) < 0) {
        buf_imap_string(b, name, strlen(name)); /* cannot happen for storage names */
        return;
    }
    buf_imap_string(b, enc, strlen(enc));
}

void imap_buf_mbox(struct buf *b, const char *name, bool utf8)
{
    size_t n = strlen(name);
    if (!utf8 || imap_utf8_name_check(name, n) < 0) {
        buf_mailbox_mutf7(b, name);
        return;
    }
    /* RFC 9051 and RFC 6855 3: UTF-8 in a quoted string */
    buf_addc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '"' || name[i] == '\\')
            buf_addc(b, '\\');
        buf_addc(b, name[i]);
    }
    buf_addc(b, '"');
}

void imap_buf_flags(struct buf *b, unsigned flags, const char *keywords, bool recent)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {STORAGE_FLAG_ANSWERED, "\\Answered"}, {STORAGE_FLAG_FLAGGED, "\\Flagged"},
        {STORAGE_FLAG_DELETED, "\\Deleted"},   {STORAGE_FLAG_SEEN, "\\Seen"},
        {STORAGE_FLAG_DRAFT, "\\Draft"},
    };
    bool first = true;

    buf_add(b, "(", 1);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(flags & names[i].bit))
            continue;
        if (!first)
            buf_add(b, " ", 1);
        buf_str(b, names[i].name);
        first = false;
    }
    if (recent) {
        if (!first)
            buf_add(b, " ", 1);
        buf_str(b, "\\Recent");
        first = false;
    }
    if (keywords && *keywords) {
        if (!first)
            buf_add(b, " ", 1);
        buf_str(b, keywords);
    }
    buf_add(b, ")", 1);
}

bool imap_buf_fetch_open(struct buf *b, bool uidonly, uint32_t seq, uint32_t u, bool uid)
{
    buf_add(b, "* ", 2);
    buf_addu(b, uidonly ? u : seq);
    if (uidonly) {
        buf_add(b, " UIDFETCH (", 11);
        return false;
    }
    buf_add(b, " FETCH (", 8);
    if (!uid)
        return false;
    buf_add(b, "UID ", 4);
    buf_addu(b, u);
    return true;
}

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void imap_buf_uids(struct buf *b, const uint32_t *u, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k + 1 < n && u[k + 1] == u[k] + 1)
            k++;
        if (i)
            buf_addc(b, ',');
        buf_addu(b, u[i]);
        if (k > i) {
            buf_addc(b, ':');
            buf_addu(b, u[k]);
        }
        i = k + 1;
    }
}

void imap_buf_date(struct buf *b, int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm))
        memset(&tm, 0, sizeof(tm));
    buf_printf(b, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, months[tm.tm_mon % 12],
               tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void imap_buf_objectid(struct buf *b, char kind, uint64_t id)
{
    static const char hex[] = "0123456789abcdef";
    char s[17];
    s[0] = kind;
    for (int i = 0; i < 16; i++)
        s[1 + i] = hex[(id >> (60 - 4 * i)) & 15];
    buf_add(b, s, sizeof(s));
}

bool imap_objectid_parse(const char *s, size_t n, char kind, uint64_t *id)
{
    uint64_t v = 0;
    if (n != 17 || s[0] != kind)
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *id = v;
    return true;
}

/* ---- sorted UID arrays ---- */

size_t imap_lower_bound(const uint32_t *v, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- arena ---- */

struct imap_arena_blk {
    struct imap_arena_blk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

void *imap_arena_alloc(struct imap_arena *a, size_t n)
{
    struct imap_arena_blk *b = a->head;
    n = (n + 15) & ~(size_t)15;
    if (!n)
        n = 16;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 2048 ? n : 2048;
        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *imap_arena_strndup(struct imap_arena *a, const char *s, size_t n)
{
    char *p = imap_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void imap_arena_free(struct imap_arena *a)
{
    struct imap_arena_blk *b = a->head, *next;
    for (; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

/* ---- modified UTF-7 ---- */

/* Next code point of UTF-8 s[*i..len), or -1 when invalid. */
static int32_t next_cp(const char *s, size_t len, size_t *i)
{
    const unsigned char *p = (const unsigned char *)s + *i;
    size_t left = len - *i;
    uint32_t cp;
    size_t n;

    if (p[0] < 0x80) {
        *i += 1;
        return p[0];
    }
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return -1;
    }
    if (left < n)
        return -1;
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (p[k] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *i += n;
    return (int32_t)cp;
}

int imap_utf8_name_check(const char *in, size_t len)
{
    size_t i = 0;
    while (i < len) {
        int32_t cp = next_cp(in, len, &i);
        /* invalid, a control character, or a line or paragraph
         * separator (RFC 6855 3) */
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029)
            return -1;
    }
    return 0;
}

int imap_mutf7_encode(const char *in, size_t len, char *out, size_t cap)
{
    size_t i = 0, o = 0;

#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (o + 1 >= cap)                                                                          \
            return -1;                                                                             \
        out[o++] = (ch);                                                                           \
    } while (0)

    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        if (ch >= 0x20 && ch <= 0x7e) {
            PUT((char)ch);
            if (ch == '&')
                PUT('-');
            i++;
            continue;
        }
        /* a run of non-printable-ASCII characters */
        uint32_t bits = 0;
        unsigned nbits = 0;
        PUT('&');
        while (i < len && !((unsigned char)in[i] >= 0x20 && (unsigned char)in[i] <= 0x7e)) {
            int32_t cp = next_cp(in, len, &i);
            uint16_t units[2];
            int nu = 1;
            if (cp < 0)
                return -1;
            if (cp >= 0x10000) {
                uint32_t v = (uint32_t)cp - 0x10000;
                units[0] = (uint16_t)(0xd800 + (v >> 10));
                units[1] = (uint16_t)(0xdc00 + (v & 0x3ff));
                nu = 2;
            } else {
                units[0] = (uint16_t)cp;
            }
            for (int k = 0; k < nu; k++) {
                bits = (bits << 16) | units[k];
                nbits += 16;
                while (nbits >= 6) {
                    nbits -= 6;
                    PUT(base64_char((bits >> nbits) & 0x3f, BASE64_IMAP_63));
                }
                bits &= (1u << nbits) - 1;
            }
        }
        if (nbits)
            PUT(base64_char((bits << (6 - nbits)) & 0x3f, BASE64_IMAP_63));
        PUT('-');
    }
    out[o] = '\0';
    return 0;
#undef PUT
}

/* ---- special-use attributes (RFC 6154) ---- */

const struct imap_special imap_special_use[IMAP_NSPECIAL] = {
    {"\\Drafts", STORAGE_SPECIAL_DRAFTS, "\\Drafts"},
    {"\\Sent", STORAGE_SPECIAL_SENT, "\\Sent"},
    {"\\Trash", STORAGE_SPECIAL_TRASH, "\\Trash"},
    {"\\Junk", STORAGE_SPECIAL_JUNK, "\\Spam"},
    {"\\Archive", STORAGE_SPECIAL_ARCHIVE, "\\Archive"},
    {"\\All", STORAGE_SPECIAL_ALL, "\\AllMail"},
    {"\\Flagged", STORAGE_SPECIAL_FLAGGED, "\\Starred"},
};

/* ---- uid-sets written run by run ---- */

static void runs_put(struct imap_runs *r, struct buf *b)
{
    if (r->any)
        buf_addc(b, ',');
    buf_addu(b, r->lo);
    if (r->hi != r->lo) {
        buf_addc(b, ':');
        buf_addu(b, r->hi);
    }
    r->any = true;
}

void imap_runs_add(struct imap_runs *r, struct buf *b, const char *prefix, uint32_t lo, uint32_t hi)
{
    if (r->open && r->hi != UINT32_MAX && lo == r->hi + 1) {
        r->hi = hi;
        return;
    }
    if (r->open)
        runs_put(r, b);
    else
        buf_str(b, prefix);
    r->open = true;
    r->lo = lo;
    r->hi = hi;
}

bool imap_runs_end(struct imap_runs *r, struct buf *b)
{
    if (!r->open)
        return false;
    runs_put(r, b);
    buf_str(b, "\r\n");
    r->open = false;
    return true;
}
