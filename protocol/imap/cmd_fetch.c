/* FETCH and UID FETCH: the fetch-att parser, then the answer produced on
 * the thread pool in steps of about IMAP_FETCH_STEP_BYTES. Metadata (FLAGS,
 * INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE, UID) comes
 * from the index in batches (FLAGS and UID alone, a client's resync, from
 * the mailbox's state in memory); BODY[...] sections are read from the message
 * file a slice at a time, so a large message is never held in memory, and
 * the next step starts only when the client has taken most of the last.
 * The PARTIAL modifier (RFC 9394 3.3) keeps the messages of the set at the
 * positions it names. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

/* ---- parsing ---- */

#define FETCH_MAX_NAMES 200

static struct imap_fetch_item *new_item(struct imap_arena *ar, struct imap_fetch_spec *sp,
                                        struct imap_fetch_item ***tail, enum imap_fi_type t)
{
    struct imap_fetch_item *it = imap_arena_alloc(ar, sizeof(*it));
    if (!it)
        return NULL;
    it->type = t;
    sp->nitems++;
    **tail = it;
    *tail = &it->next;
    switch (t) {
    case FI_FLAGS:
        sp->flags = true;
        break;
    case FI_UID:
        sp->uid = true;
        break;
    case FI_MODSEQ:
        sp->modseq = true;
        break;
    case FI_ENVELOPE:
        sp->storage_what |= STORAGE_FETCH_ENVELOPE;
        break;
    case FI_BODY:
        sp->storage_what |= STORAGE_FETCH_BODY;
        break;
    case FI_BODYSTRUCTURE:
        sp->storage_what |= STORAGE_FETCH_BODYSTRUCTURE;
        break;
    case FI_EMAILID:
    case FI_THREADID:
        sp->storage_what |= STORAGE_FETCH_OBJECTID;
        break;
    case FI_PREVIEW:
        sp->storage_what |= STORAGE_FETCH_PREVIEW;
        sp->preview = true;
        break;
    case FI_SECTION:
    case FI_BINARY:
    case FI_BINARY_SIZE:
        sp->need_body = true;
        break;
    default:
        break;
    }
    return it;
}

/* Parses "[section]<o.n>" (s points at '['). */
static int parse_section(const char *s, size_t len, struct imap_arena *ar, unsigned max_depth,
                         struct imap_fetch_item *it, const char **err)
{
    const char *close = NULL;
    unsigned depth = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') {
            /* skip a quoted header name */
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            continue;
        }
        if (s[i] == ']' && depth == 0) {
            close = s + i;
            break;
        }
        if (s[i] == '(')
            depth++;
        else if (s[i] == ')' && depth)
            depth--;
    }
    if (len < 2 || s[0] != '[' || !close) {
        *err = "Invalid section.";
        return IMAP_ARG_BAD;
    }
    const char *p = s + 1, *end = close;
    size_t pl = 0;

    /* part number: nz-number *("." nz-number) */
    while (p < end && isdigit((unsigned char)*p)) {
        const char *start = p;
        unsigned long v = 0;
        if (*p == '0') {
            *err = "Invalid part number.";
            return IMAP_ARG_BAD;
        }
        while (p < end && isdigit((unsigned char)*p)) {
            v = v * 10 + (unsigned long)(*p - '0');
            if (v > 100000) {
                *err = "Invalid part number.";
                return IMAP_ARG_BAD;
            }
            p++;
        }
        if (pl + (size_t)(p - start) + 2 >= sizeof(it->part)) {
            *err = "Part number too long.";
            return IMAP_ARG_BAD;
        }
        if (pl)
            it->part[pl++] = '.';
        memcpy(it->part + pl, start, (size_t)(p - start));
        pl += (size_t)(p - start);
        it->part[pl] = '\0';
        if (p < end && *p == '.' && p + 1 < end && isdigit((unsigned char)p[1])) {
            p++;
            continue;
        }
        if (p < end && *p == '.') {
            p++;
            if (p == end) {
                *err = "Invalid section.";
                return IMAP_ARG_BAD;
            }
        }
        break;
    }
    size_t rest = (size_t)(end - p);
    it->kind = SEC_WHOLE;
    if (rest == 0) {
        it->kind = SEC_WHOLE;
    } else if (rest == 6 && !strncasecmp(p, "HEADER", 6)) {
        it->kind = SEC_HEADER;
    } else if (rest == 4 && !strncasecmp(p, "TEXT", 4)) {
        it->kind = SEC_TEXT;
    } else if (rest == 4 && !strncasecmp(p, "MIME", 4) && pl) {
        it->kind = SEC_MIME;
    } else if (rest > 13 && !strncasecmp(p, "HEADER.FIELDS", 13)) {
        struct imap_args a;
        size_t cap = 0;
        const char *q = p + 13;
        it->kind = SEC_FIELDS;
        if ((size_t)(end - q) > 4 && !strncasecmp(q, ".NOT", 4)) {
            it->kind = SEC_FIELDS_NOT;
            q += 4;
        }
        imap_args_init(&a, q, (size_t)(end - q), max_depth);
        if (imap_args_sp(&a) != IMAP_ARG_OK || imap_args_open(&a) != IMAP_ARG_OK) {
            *err = "Invalid header field list.";
            return IMAP_ARG_BAD;
        }
        while (!imap_args_peek(&a, ')')) {
            char *name;
            size_t nl;
            if (it->nnames && imap_args_sp(&a) != IMAP_ARG_OK) {
                *err = "Invalid header field list.";
                return IMAP_ARG_BAD;
            }
            int r = imap_args_astring_dup(&a, ar, &name, &nl);
            if (r != IMAP_ARG_OK || nl == 0 || nl > 200 || it->nnames >= FETCH_MAX_NAMES) {
                *err = "Invalid header field name.";
                return r == IMAP_ARG_NOMEM ? r : IMAP_ARG_BAD;
            }
            for (size_t k = 0; k < nl; k++) {
                unsigned char ch = (unsigned char)name[k];
                if (ch <= 0x20 || ch >= 0x7f || ch == ':') {
                    *err = "Invalid header field name.";
                    return IMAP_ARG_BAD;
                }
            }
            if (it->nnames == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                const char **nn = imap_arena_alloc(ar, ncap * sizeof(*nn));
                if (!nn)
                    return IMAP_ARG_NOMEM;
                if (it->nnames)
                    memcpy(nn, it->names, it->nnames * sizeof(*nn));
                it->names = nn;
                cap = ncap;
            }
            it->names[it->nnames++] = name;
        }
        if (imap_args_close(&a) != IMAP_ARG_OK || !imap_args_at_end(&a) || !it->nnames) {
            *err = "Invalid header field list.";
            return IMAP_ARG_BAD;
        }
    } else {
        *err = "Unknown section.";
        return IMAP_ARG_BAD;
    }
    /* partial <origin.count> */
    const char *after = close + 1, *send = s + len;
    if (after < send) {
        uint64_t o = 0, c = 0;
        const char *q = after;
        if (*q != '<') {
            *err = "Invalid partial.";
            return IMAP_ARG_BAD;
        }
        q++;
        const char *ds = q;
        while (q < send && isdigit((unsigned char)*q) && o < (1ull << 40))
            o = o * 10 + (uint64_t)(*q++ - '0');
        if (q == ds || q >= send || *q != '.') {
            *err = "Invalid partial.";
            return IMAP_ARG_BAD;
        }
        q++;
        ds = q;
        while (q < send && isdigit((unsigned char)*q) && c < (1ull << 40))
            c = c * 10 + (uint64_t)(*q++ - '0');
        if (q == ds || q + 1 != send || *q != '>' || c == 0 || *ds == '0') {
            *err = "Invalid partial.";
            return IMAP_ARG_BAD;
        }
        if (o > UINT32_MAX || c > UINT32_MAX) {
            *err = "Invalid partial.";
            return IMAP_ARG_BAD;
        }
        it->partial = true;
        it->origin = o;
        it->count = c;
    }
    return IMAP_ARG_OK;
}

static int parse_att(struct imap_args *a, struct imap_arena *ar, struct imap_fetch_spec *sp,
                     struct imap_fetch_item ***tail, const char **err)
{
    const char *w;
    size_t n;
    struct imap_fetch_item *it;

    if (imap_args_word(a, &w, &n) != IMAP_ARG_OK) {
        *err = "Invalid fetch attribute.";
        return IMAP_ARG_BAD;
    }
#define SIMPLE(name, type)                                                                         \
    if (imap_word_is(w, n, name))                                                                  \
        return new_item(ar, sp, tail, type) ? IMAP_ARG_OK : IMAP_ARG_NOMEM;
    SIMPLE("FLAGS", FI_FLAGS)
    SIMPLE("INTERNALDATE", FI_INTERNALDATE)
    SIMPLE("RFC822.SIZE", FI_RFC822_SIZE)
    SIMPLE("ENVELOPE", FI_ENVELOPE)
    SIMPLE("BODYSTRUCTURE", FI_BODYSTRUCTURE)
    SIMPLE("BODY", FI_BODY)
    SIMPLE("UID", FI_UID)
    SIMPLE("MODSEQ", FI_MODSEQ)
    SIMPLE("SAVEDATE", FI_SAVEDATE)
    SIMPLE("EMAILID", FI_EMAILID)
    SIMPLE("THREADID", FI_THREADID)
#undef SIMPLE
    if (imap_word_is(w, n, "PREVIEW")) {
        /* RFC 8970 3.1: PREVIEW [SP "(" preview-mod *(SP preview-mod) ")"];
         * LAZY lets a server answer NIL for a preview it has not computed:
         * here every preview is in the index or computed on the spot */
        if (a->end - a->p >= 2 && a->p[0] == ' ' && a->p[1] == '(') {
            imap_args_sp(a);
            if (imap_args_open(a) != IMAP_ARG_OK) {
                *err = "Invalid PREVIEW modifiers.";
                return IMAP_ARG_BAD;
            }
            for (;;) {
                const char *m;
                size_t ml;
                if (imap_args_atom(a, &m, &ml) != IMAP_ARG_OK || !imap_word_is(m, ml, "LAZY")) {
                    *err = "Unknown PREVIEW modifier.";
                    return IMAP_ARG_BAD;
                }
                if (imap_args_peek(a, ')'))
                    break;
                if (imap_args_sp(a) != IMAP_ARG_OK) {
                    *err = "Invalid PREVIEW modifiers.";
                    return IMAP_ARG_BAD;
                }
            }
            if (imap_args_close(a) != IMAP_ARG_OK) {
                *err = "Invalid PREVIEW modifiers.";
                return IMAP_ARG_BAD;
            }
        }
        return new_item(ar, sp, tail, FI_PREVIEW) ? IMAP_ARG_OK : IMAP_ARG_NOMEM;
    }
    if (imap_word_is(w, n, "RFC822") || imap_word_is(w, n, "RFC822.HEADER") ||
        imap_word_is(w, n, "RFC822.TEXT")) {
        if (!(it = new_item(ar, sp, tail, FI_SECTION)))
            return IMAP_ARG_NOMEM;
        it->label = n == 6 ? "RFC822" : n == 13 ? "RFC822.HEADER" : "RFC822.TEXT";
        it->kind = n == 6 ? SEC_WHOLE : n == 13 ? SEC_HEADER : SEC_TEXT;
        it->peek = n == 13;
        if (!it->peek)
            sp->sets_seen = true;
        return IMAP_ARG_OK;
    }
    bool peek = false;
    size_t pre = 0;
    enum imap_fi_type type = FI_SECTION;
    const char *name = "BODY";
    if (n > 9 && !strncasecmp(w, "BODY.PEEK[", 10)) {
        peek = true;
        pre = 9;
    } else if (n > 4 && !strncasecmp(w, "BODY[", 5)) {
        pre = 4;
    } else if (n > 11 && !strncasecmp(w, "BINARY.PEEK[", 12)) {
        peek = true;
        pre = 11;
        type = FI_BINARY;
        name = "BINARY";
    } else if (n > 11 && !strncasecmp(w, "BINARY.SIZE[", 12)) {
        peek = true;
        pre = 11;
        type = FI_BINARY_SIZE;
        name = "BINARY.SIZE";
    } else if (n > 6 && !strncasecmp(w, "BINARY[", 7)) {
        pre = 6;
        type = FI_BINARY;
        name = "BINARY";
    } else {
        *err = "Unknown fetch attribute.";
        return IMAP_ARG_BAD;
    }
    if (!(it = new_item(ar, sp, tail, type)))
        return IMAP_ARG_NOMEM;
    it->peek = peek;
    int r = parse_section(w + pre, n - pre, ar, a->max_depth, it, err);
    if (r != IMAP_ARG_OK)
        return r;
    /* RFC 3516: section-binary is part numbers only, and BINARY.SIZE
     * takes no partial */
    if (type != FI_SECTION && (it->kind != SEC_WHOLE || (type == FI_BINARY_SIZE && it->partial))) {
        *err = "Invalid binary section.";
        return IMAP_ARG_BAD;
    }
    if (!peek)
        sp->sets_seen = true;
    /* the label answered: BODY[<section as sent>] without the partial
     * count, with the origin when partial */
    const char *close = memchr(w + pre, ']', n - pre);
    while (close && close + 1 < w + n && close[1] != '<')
        close = memchr(close + 1, ']', (size_t)(w + n - close - 1));
    size_t seclen = close ? (size_t)(close - (w + pre)) + 1 : n - pre;
    size_t nl = strlen(name);
    char *label = imap_arena_alloc(ar, nl + seclen + 24);
    if (!label)
        return IMAP_ARG_NOMEM;
    memcpy(label, name, nl);
    memcpy(label + nl, w + pre, seclen);
    /* section names upper case as RFC 3501 writes them; header names as sent */
    for (size_t i = nl; i < nl + seclen && label[i] != '('; i++)
        label[i] = (char)toupper((unsigned char)label[i]);
    size_t ll = nl + seclen;
    if (it->partial)
        ll += (size_t)snprintf(label + ll, 24, "<%llu>", (unsigned long long)it->origin);
    label[ll] = '\0';
    it->label = label;
    return IMAP_ARG_OK;
}

int imap_fetch_parse(struct imap_args *a, struct imap_arena *ar, struct imap_fetch_spec *out,
                     const char **err)
{
    struct imap_fetch_item **tail = &out->items;
    int r;

    memset(out, 0, sizeof(*out));
    *err = "Invalid fetch attributes.";
    if (imap_args_peek(a, '(')) {
        if ((r = imap_args_open(a)) != IMAP_ARG_OK)
            return r;
        for (;;) {
            if ((r = parse_att(a, ar, out, &tail, err)) != IMAP_ARG_OK)
                return r;
            if (imap_args_peek(a, ')'))
                break;
            if (imap_args_sp(a) != IMAP_ARG_OK)
                return IMAP_ARG_BAD;
        }
        return imap_args_close(a);
    }
    const char *w;
    size_t n;
    const char *save = a->p;
    if (imap_args_atom(a, &w, &n) == IMAP_ARG_OK &&
        (imap_word_is(w, n, "ALL") || imap_word_is(w, n, "FAST") || imap_word_is(w, n, "FULL"))) {
        enum imap_fi_type all[] = {FI_FLAGS, FI_INTERNALDATE, FI_RFC822_SIZE, FI_ENVELOPE, FI_BODY};
        size_t cnt = imap_word_is(w, n, "FAST") ? 3 : imap_word_is(w, n, "ALL") ? 4 : 5;
        for (size_t i = 0; i < cnt; i++)
            if (!new_item(ar, out, &tail, all[i]))
                return IMAP_ARG_NOMEM;
        return IMAP_ARG_OK;
    }
    a->p = save;
    return parse_att(a, ar, out, &tail, err);
}

/* ---- execution ---- */

struct fetch_msg {
    uint32_t seq, uid;
};

struct imap_fetch {
    struct imap_steps st; /* first */
    int64_t mbox;
    bool uid_cmd, readonly;
    bool uidonly; /* UIDFETCH, not FETCH (RFC 9586) */
    uint32_t recent_lo, recent_hi;
    struct imap_arena ar;
    struct imap_fetch_spec spec;
    struct fetch_msg *msgs;
    size_t n, pos;
    bool seen_done;
    struct storage_uidlist seen_changed;
    /* per-user \Seen: the viewer (imap_sel.seen_viewer) and its set, read
     * once the \Seen this FETCH sets is in */
    int64_t viewer;
    bool seen_read;
    struct storage_seen seen;
    uint64_t own_modseq;
    uint64_t changedsince; /* CHANGEDSINCE: only messages whose modseq is above it */
    bool condstore;        /* MODSEQ with the FLAGS sent unasked for a \Seen set here */
    /* VANISHED (RFC 7162 3.2.6): the UIDs asked for, as written ('*' the
     * highest UID there is), for the VANISHED (EARLIER) the first step
     * writes */
    bool vanished, vanished_done;
    struct imap_vanished van;
    /* the message being answered */
    bool in_msg, first_item;
    struct imap_fetch_item *item;
    struct {
        uint32_t uid;
        unsigned flags;
        uint64_t modseq;
        struct storage_msg m; /* its strings are the copies below */
        char *keywords, *env, *bs, *body, *preview;
        bool found;
    } cur;
    int fd;
    uint64_t foff, fleft;
    char *mem;
    size_t memoff, memleft;
    struct buf scratch; /* header fields of the message being answered */
    /* BINARY: the literal being streamed is the part decoded as read,
     * from bskip decoded bytes on, bout bytes of it */
    bool bin, bend;
    struct storage_decoder dec;
    uint64_t bskip, bout;
    char *braw; /* BINARY_CHUNK raw bytes read at a time */
    /* PREVIEW of a message whose body has none in the index yet: the
     * batch stops before it, and it is computed from the file
     * (storage_msg_preview) before the batch goes on */
    uint32_t pv_uid, pv_wanted;
    char *pv_text;
    bool unknown_cte; /* a part's encoding cannot be decoded: NO [UNKNOWN-CTE] */
    /* an unsolicited FETCH (imap_fetch_unsolicited): what runs after it,
     * and whether the job ending keeps f for the next one */
    void (*then)(struct imap_session *s);
    bool keep;
    struct imap_fetch **park; /* where it waits for the client to read */
};

/* Raw bytes of a BINARY part read and decoded at a time. */
#define BINARY_CHUNK (128u * 1024)

static bool is_recent(const struct imap_fetch *f, uint32_t uid)
{
    return uid >= f->recent_lo && uid <= f->recent_hi;
}

static bool seen_changed(const struct imap_fetch *f, uint32_t uid)
{
    size_t i = imap_lower_bound(f->seen_changed.uids, f->seen_changed.n, uid);
    return i < f->seen_changed.n && f->seen_changed.uids[i] == uid;
}

/* The UID ranges of msgs[from, to): consecutive sequence numbers are one
 * range in our view. r has room for to - from; returns how many. */
static size_t msg_ranges(const struct fetch_msg *m, size_t from, size_t to, struct storage_range *r)
{
    size_t nr = 0;
    for (size_t i = from; i < to; i++) {
        if (nr && m[i].seq == m[i - 1].seq + 1) {
            r[nr - 1].hi = m[i].uid;
            continue;
        }
        r[nr].lo = r[nr].hi = m[i].uid;
        nr++;
    }
    return nr;
}

static void item_sep(struct imap_fetch *f)
{
    if (!f->first_item)
        buf_add(&f->st.out, " ", 1);
    f->first_item = false;
}

/* An item answered from a string the index caches (NIL when absent). */
static void cached_item(struct imap_fetch *f, const char *label, const char *cached)
{
    item_sep(f);
    buf_str(&f->st.out, label);
    buf_str(&f->st.out, cached ? cached : "NIL");
}

/* The metadata items of one message (FLAGS ... UID), all but sections. */
static void modseq_item(struct imap_fetch *f, uint64_t modseq)
{
    item_sep(f);
    buf_add(&f->st.out, "MODSEQ (", 8);
    buf_addu(&f->st.out, modseq);
    buf_addc(&f->st.out, ')');
}

/* flags: the message's, with a \Seen this FETCH set */
static void meta_item(struct imap_fetch *f, const struct imap_fetch_item *it,
                      const struct storage_msg *m, unsigned flags)
{
    struct buf *b = &f->st.out;
    switch (it->type) {
    case FI_MODSEQ:
        modseq_item(f, m->modseq);
        break;
    case FI_FLAGS:
        item_sep(f);
        buf_str(b, "FLAGS ");
        imap_buf_flags(b, flags, m->keywords, is_recent(f, m->uid));
        break;
    case FI_INTERNALDATE:
        item_sep(f);
        buf_str(b, "INTERNALDATE ");
        imap_buf_date(b, m->internal_date);
        break;
    case FI_SAVEDATE:
        /* RFC 8514: every message here has one */
        item_sep(f);
        buf_str(b, "SAVEDATE ");
        imap_buf_date(b, m->save_date);
        break;
    case FI_RFC822_SIZE:
        item_sep(f);
        buf_add(b, "RFC822.SIZE ", 12);
        buf_addu(b, m->size);
        break;
    case FI_ENVELOPE:
        cached_item(f, "ENVELOPE ", m->envelope);
        break;
    case FI_BODY:
        cached_item(f, "BODY ", m->body);
        break;
    case FI_BODYSTRUCTURE:
        cached_item(f, "BODYSTRUCTURE ", m->bodystructure);
        break;
    case FI_EMAILID:
    case FI_THREADID:
        item_sep(f);
        buf_str(b, it->type == FI_EMAILID ? "EMAILID (" : "THREADID (");
        imap_buf_objectid(b, it->type == FI_EMAILID ? 'M' : 'T',
                          it->type == FI_EMAILID ? m->emailid : m->threadid);
        buf_addc(b, ')');
        break;
    case FI_PREVIEW: {
        const char *p = m->preview;
        if (!p && f->pv_text && m->uid == f->pv_uid)
            p = f->pv_text;
        item_sep(f);
        buf_str(b, "PREVIEW ");
        buf_imap_nstring(b, p, p ? strlen(p) : 0);
        break;
    }
    case FI_UID:
    case FI_SECTION:
    case FI_BINARY:
    case FI_BINARY_SIZE:
        break; /* UID comes first; sections elsewhere */
    }
}

static void msg_open(struct imap_fetch *f, uint32_t seq, uint32_t uid)
{
    /* once per message in answers of 100,000: no printf */
    f->first_item =
        !imap_buf_fetch_open(&f->st.out, f->uidonly, seq, uid, f->spec.uid || f->uid_cmd);
    if (f->uidonly && f->spec.uid) {
        /* asked for, and maybe the only item */
        item_sep(f);
        buf_add(&f->st.out, "UID ", 4);
        buf_addu(&f->st.out, uid);
    }
}

/* ---- metadata-only batches ---- */

struct batch {
    struct imap_fetch *f;
    size_t from, to; /* msgs[from..to) */
    size_t next;     /* after the last message answered */
};

/* BODY[HEADER.FIELDS (...)] of the top-level header, from the header
 * block the index gives with the row. */
static void fields_item(struct imap_fetch *f, const struct imap_fetch_item *it,
                        const struct storage_msg *m)
{
    struct buf *b = &f->st.out;

    item_sep(f);
    buf_str(b, it->label);
    if (!m->header) {
        buf_str(b, " \"\""); /* the file is gone */
        return;
    }
    if (m->listing_fields && !(m->listing_fields & ~it->listing_fields) && !it->partial) {
        /* a listing block of asked-for fields alone answers as it is */
        buf_add(b, " {", 2);
        buf_addu(b, m->header_len);
        buf_add(b, "}\r\n", 3);
        buf_add(b, m->header, m->header_len);
        return;
    }
    buf_reset(&f->scratch);
    storage_header_fields(m->header, m->header_len, it->names, it->nnames,
                          it->kind == SEC_FIELDS_NOT, &f->scratch);
    uint64_t len = f->scratch.len, start = 0, n = len;
    if (it->partial) {
        start = it->origin < len ? it->origin : len;
        n = len - start < it->count ? len - start : it->count;
    }
    buf_add(b, " {", 2);
    buf_addu(b, n);
    buf_add(b, "}\r\n", 3);
    buf_add(b, f->scratch.p + start, (size_t)n);
}

static int batch_cb(void *arg, const struct storage_msg *m)
{
    struct batch *bt = arg;
    struct imap_fetch *f = bt->f;
    size_t lo = bt->from, hi = bt->to;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->msgs[mid].uid < m->uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= bt->to || f->msgs[lo].uid != m->uid)
        return 0;
    if (f->changedsince && m->modseq <= f->changedsince)
        return 0;
    if (f->spec.preview && !m->preview && !(f->pv_text && f->pv_uid == m->uid)) {
        f->pv_wanted = m->uid;
        bt->next = lo;
        return 1;
    }
    unsigned flags = f->viewer ? storage_seen_flags(&f->seen, m->uid, m->flags) : m->flags;
    bool seen_now = f->seen_changed.n && seen_changed(f, m->uid);
    if (seen_now)
        flags |= STORAGE_FLAG_SEEN;
    msg_open(f, f->msgs[lo].seq, m->uid);
    for (const struct imap_fetch_item *it = f->spec.items; it; it = it->next) {
        if (it->type == FI_SECTION)
            fields_item(f, it, m);
        else
            meta_item(f, it, m, flags);
    }
    if (!f->spec.flags && seen_now) {
        item_sep(f);
        buf_str(&f->st.out, "FLAGS ");
        imap_buf_flags(&f->st.out, flags, m->keywords, is_recent(f, m->uid));
        if (f->condstore && !f->spec.modseq)
            modseq_item(f, m->modseq);
    }
    buf_str(&f->st.out, ")\r\n");
    bt->next = lo + 1;
    /* the step is full: the next one goes on from here */
    return f->st.out.oom || f->st.out.len >= IMAP_FETCH_STEP_BYTES;
}

/* The preview of message uid, which its body does not have yet, into
 * f->pv_text (a message gone meanwhile has the empty one). */
static int preview_compute(struct imap_fetch *f, uint32_t uid)
{
    char *text = NULL;
    int rc = storage_msg_preview(f->st.j.u, f->mbox, uid, &text);

    if (rc == STORAGE_E_NOMSG && !(text = strdup("")))
        rc = STORAGE_E_NOMEM;
    else if (rc == STORAGE_E_NOMSG)
        rc = 0;
    if (rc)
        return rc;
    free(f->pv_text);
    f->pv_text = text;
    f->pv_uid = uid;
    return 0;
}

/* What a batch reads of each row: the dates only when an item answers
 * with one, the size too only when one does (a listing of a big folder
 * reads a narrow index alone), the modseq only when the answer or
 * CHANGEDSINCE needs it (a FLAGS resync is answered from the mailbox's
 * state in memory). */
static unsigned batch_what(const struct imap_fetch *f)
{
    const struct imap_fetch_spec *sp = &f->spec;
    bool size = false;

    for (const struct imap_fetch_item *it = sp->items; it; it = it->next) {
        if (it->type == FI_INTERNALDATE || it->type == FI_SAVEDATE)
            return sp->storage_what;
        size |= it->type == FI_RFC822_SIZE;
    }
    if (sp->storage_what || size)
        return sp->storage_what | STORAGE_FETCH_NO_DATES;
    if (sp->modseq || f->changedsince || (f->condstore && sp->sets_seen))
        return STORAGE_FETCH_NO_SIZES;
    return STORAGE_FETCH_NO_SIZES | STORAGE_FETCH_NO_MODSEQ;
}

static void do_batch(struct imap_fetch *f)
{
    size_t chunk = f->spec.storage_what ? 500 : 5000;
    size_t from = f->pos, to = from + chunk < f->n ? from + chunk : f->n, nr = 0;
    struct storage_range *r = malloc((to - from) * sizeof(*r));
    struct batch bt = {f, from, to, to};

    if (!r) {
        f->st.err = STORAGE_E_NOMEM;
        return;
    }
    nr = msg_ranges(f->msgs, from, to, r);
    struct storage_uidset set = {nr, r};
    f->st.err = storage_fetch(f->st.j.u, f->mbox, &set, batch_what(f), batch_cb, &bt);
    if (!f->st.err && f->st.out.oom)
        f->st.err = STORAGE_E_NOMEM;
    free(r);
    if (!f->st.err && f->pv_wanted) {
        f->pos = bt.next; /* the message is answered next, with its preview */
        f->st.err = preview_compute(f, f->pv_wanted);
        f->pv_wanted = 0;
        return;
    }
    f->pos = f->st.out.len >= IMAP_FETCH_STEP_BYTES ? bt.next : to;
}

/* ---- one message with sections ---- */

static void cur_clear(struct imap_fetch *f)
{
    free(f->cur.keywords);
    free(f->cur.env);
    free(f->cur.bs);
    free(f->cur.body);
    free(f->cur.preview);
    memset(&f->cur, 0, sizeof(f->cur));
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int cur_cb(void *arg, const struct storage_msg *m)
{
    struct imap_fetch *f = arg;
    f->cur.uid = m->uid;
    f->cur.flags = f->viewer ? storage_seen_flags(&f->seen, m->uid, m->flags) : m->flags;
    f->cur.modseq = m->modseq;
    f->cur.m = *m;
    f->cur.m.keywords = f->cur.keywords = dup_or_null(m->keywords);
    f->cur.m.envelope = f->cur.env = dup_or_null(m->envelope);
    f->cur.m.bodystructure = f->cur.bs = dup_or_null(m->bodystructure);
    f->cur.m.body = f->cur.body = dup_or_null(m->body);
    f->cur.m.preview = f->cur.preview = dup_or_null(m->preview);
    f->cur.m.header = NULL;
    f->cur.m.header_len = 0;
    f->cur.found = true;
    return 0;
}

static void stream_close(struct imap_fetch *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->fleft = 0;
    f->bin = false;
    f->bout = 0;
    free(f->mem);
    f->mem = NULL;
    f->memleft = 0;
}

/* One pass over a part to be answered decoded: its decoded length, and
 * whether a NUL falls in the decoded bytes [from, from + count) (then it
 * goes as a literal8, RFC 3516 4.2). Reads BINARY_CHUNK at a time. */
static int binary_scan(struct imap_fetch *f, int fd, const struct imap_fetch_item *it,
                       uint64_t from, uint64_t count, uint64_t *declen, bool *nul)
{
    struct storage_decoder d;
    char *out = malloc(BINARY_CHUNK + STORAGE_DECODE_SLACK);
    uint64_t off = it->boff, left = it->blen, pos = 0;

    if (!out)
        return STORAGE_E_NOMEM;
    *nul = false;
    storage_decoder_init(&d, it->bcte);
    for (bool end = false; !end;) {
        size_t k;
        if (left) {
            size_t want = left < BINARY_CHUNK ? (size_t)left : BINARY_CHUNK;
            ssize_t r = pread(fd, f->braw, want, (off_t)off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                free(out);
                return STORAGE_E_TEMP;
            }
            off += (uint64_t)r;
            left -= (uint64_t)r;
            k = storage_decode(&d, f->braw, (size_t)r, out);
        } else {
            k = storage_decode_end(&d, out);
            end = true;
        }
        /* the NULs that fall in the range answered */
        uint64_t lo = from > pos ? from - pos : 0, upto = from + count;
        uint64_t hi = upto > pos ? upto - pos : 0;
        if (hi > k)
            hi = k;
        if (!*nul && lo < hi && memchr(out + lo, 0, (size_t)(hi - lo)))
            *nul = true;
        pos += k;
    }
    free(out);
    *declen = pos;
    return 0;
}

/* Starts a BINARY or BINARY.SIZE item (RFC 3516) of the part found when
 * the message was opened: the size, or the literal (a literal8 when NUL
 * is in it) whose bytes stream_some decodes as it reads them. */
static void binary_start(struct imap_fetch *f, struct imap_fetch_item *it)
{
    uint64_t size, declen = 0;
    bool nul = false;
    int fd = -1, rc = 0;

    item_sep(f);
    buf_str(&f->st.out, it->label);
    buf_add(&f->st.out, " ", 1);
    if (!it->bfound) {
        /* no such part: an empty string, as for BODY */
        buf_str(&f->st.out, it->type == FI_BINARY_SIZE ? "0" : "\"\"");
        return;
    }
    if (!f->braw && !(f->braw = malloc(BINARY_CHUNK))) {
        f->st.err = STORAGE_E_NOMEM;
        return;
    }
    rc = storage_msg_open(f->st.j.u, f->mbox, f->cur.uid, &fd, &size);
    if (rc == STORAGE_E_NOMSG) {
        buf_str(&f->st.out, it->type == FI_BINARY_SIZE ? "0" : "\"\"");
        return;
    }
    if (!rc && it->boff + it->blen > size)
        rc = STORAGE_E_TEMP; /* not the file the part was found in */
    uint64_t from = it->partial ? it->origin : 0, count = it->partial ? it->count : UINT64_MAX;
    if (!rc)
        rc = binary_scan(f, fd, it, from, count > UINT64_MAX - from ? UINT64_MAX - from : count,
                         &declen, &nul);
    if (rc) {
        if (fd >= 0)
            close(fd);
        f->st.err = rc;
        return;
    }
    if (it->type == FI_BINARY_SIZE) {
        close(fd);
        buf_addu(&f->st.out, declen);
        return;
    }
    uint64_t start = from < declen ? from : declen;
    uint64_t n = declen - start < count ? declen - start : count;
    if (nul)
        buf_add(&f->st.out, "~", 1);
    buf_printf(&f->st.out, "{%llu}\r\n", (unsigned long long)n);
    f->fd = fd;
    f->foff = it->boff;
    f->fleft = it->blen;
    f->bin = true;
    f->bend = false;
    storage_decoder_init(&f->dec, it->bcte);
    f->bskip = start;
    f->bout = n;
    if (!n)
        stream_close(f);
}

/* A BINARY literal goes on: raw bytes read, decoded, the ones before the
 * partial's origin dropped, at most what the literal announced kept. */
static void binary_some(struct imap_fetch *f)
{
    size_t want = f->fleft < BINARY_CHUNK ? (size_t)f->fleft : BINARY_CHUNK, k = 0;

    if (!buf_reserve(&f->st.out, BINARY_CHUNK + STORAGE_DECODE_SLACK)) {
        f->st.err = STORAGE_E_NOMEM;
        return;
    }
    char *out = f->st.out.p + f->st.out.len;
    if (want) {
        ssize_t r = pread(f->fd, f->braw, want, (off_t)f->foff);
        if (r < 0 && errno == EINTR)
            return;
        if (r <= 0) {
            f->fleft = 0; /* the file shrank under us: ends here */
            return;
        }
        f->foff += (uint64_t)r;
        f->fleft -= (uint64_t)r;
        k = storage_decode(&f->dec, f->braw, (size_t)r, out);
    } else if (!f->bend) {
        k = storage_decode_end(&f->dec, out);
        f->bend = true;
    } else {
        /* shorter than scanned (the file changed): pad so the literal
         * stays whole */
        k = f->bout < BINARY_CHUNK ? (size_t)f->bout : BINARY_CHUNK;
        memset(out, ' ', k);
    }
    size_t skip = f->bskip < k ? (size_t)f->bskip : k;
    f->bskip -= skip;
    k -= skip;
    if (k > f->bout)
        k = (size_t)f->bout;
    if (skip && k)
        memmove(out, out + skip, k);
    f->st.out.len += k;
    f->st.out.p[f->st.out.len] = '\0';
    f->bout -= k;
    if (!f->bout)
        stream_close(f);
}

/* Starts the literal of a section item (or an empty string). */
static void section_start(struct imap_fetch *f, const struct imap_fetch_item *it)
{
    char sec[96];
    uint64_t off = 0, len = 0;
    int fd = -1, rc;
    char *mem = NULL;
    size_t memlen = 0;

    item_sep(f);
    buf_str(&f->st.out, it->label);
    buf_add(&f->st.out, " ", 1);
    if (it->kind == SEC_FIELDS || it->kind == SEC_FIELDS_NOT) {
        rc = storage_msg_header_fields(f->st.j.u, f->mbox, f->cur.uid, it->part, it->names,
                                       it->nnames, it->kind == SEC_FIELDS_NOT, &mem, &memlen);
        len = memlen;
    } else {
        static const char *const kinds[] = {"", "HEADER", "TEXT", "MIME"};
        if (it->kind == SEC_WHOLE)
            snprintf(sec, sizeof(sec), "%s", it->part);
        else if (it->part[0])
            snprintf(sec, sizeof(sec), "%s.%s", it->part, kinds[it->kind]);
        else
            snprintf(sec, sizeof(sec), "%s", kinds[it->kind]);
        rc = storage_msg_section(f->st.j.u, f->mbox, f->cur.uid, sec, &fd, &off, &len);
    }
    if (rc == STORAGE_E_INVAL || rc == STORAGE_E_NOMSG) {
        /* no such part (or gone meanwhile): an empty string */
        buf_str(&f->st.out, "\"\"");
        return;
    }
    if (rc) {
        f->st.err = rc;
        return;
    }
    uint64_t start = 0, n = len;
    if (it->partial) {
        start = it->origin < len ? it->origin : len;
        n = len - start < it->count ? len - start : it->count;
    }
    buf_printf(&f->st.out, "{%llu}\r\n", (unsigned long long)n);
    if (mem) {
        f->mem = mem;
        f->memoff = (size_t)start;
        f->memleft = (size_t)n;
        if (!n) {
            free(mem);
            f->mem = NULL;
        }
    } else {
        f->fd = fd;
        f->foff = off + start;
        f->fleft = n;
        if (!n)
            stream_close(f);
    }
}

static void stream_some(struct imap_fetch *f)
{
    if (f->bin) {
        binary_some(f);
        return;
    }
    if (f->mem) {
        buf_add(&f->st.out, f->mem + f->memoff, f->memleft);
        free(f->mem);
        f->mem = NULL;
        f->memleft = 0;
        return;
    }
    size_t want = f->fleft < 128 * 1024 ? (size_t)f->fleft : 128 * 1024;
    if (!buf_reserve(&f->st.out, want)) {
        f->st.err = STORAGE_E_NOMEM;
        return;
    }
    ssize_t r = pread(f->fd, f->st.out.p + f->st.out.len, want, (off_t)f->foff);
    if (r <= 0) {
        /* the file shrank under us: pad so the literal stays well-formed */
        if (r < 0 && errno == EINTR)
            return;
        memset(f->st.out.p + f->st.out.len, ' ', want);
        r = (ssize_t)want;
    }
    f->st.out.len += (size_t)r;
    f->st.out.p[f->st.out.len] = '\0'; /* as struct buf keeps it */
    f->foff += (uint64_t)r;
    f->fleft -= (uint64_t)r;
    if (!f->fleft)
        stream_close(f);
}

/* Finds the part of each BINARY item in the message being opened. An
 * encoding that cannot be decoded ends the command there, before this
 * message's response is begun (RFC 3516 4.2: NO [UNKNOWN-CTE]). */
static bool binary_parts(struct imap_fetch *f)
{
    for (struct imap_fetch_item *it = f->spec.items; it; it = it->next) {
        if (it->type != FI_BINARY && it->type != FI_BINARY_SIZE)
            continue;
        int rc = storage_msg_binary(f->st.j.u, f->mbox, f->cur.uid, it->part, &it->boff, &it->blen,
                                    &it->bcte);
        it->bfound = rc == 0;
        if (rc == STORAGE_E_INVAL || rc == STORAGE_E_NOMSG)
            continue;
        if (rc) {
            f->st.err = rc;
            return false;
        }
        if (it->bcte == STORAGE_CTE_UNKNOWN) {
            f->unknown_cte = true;
            f->pos = f->n;
            cur_clear(f);
            return false;
        }
    }
    return true;
}

static void do_message(struct imap_fetch *f)
{
    if (!f->in_msg) {
        struct storage_range r = {f->msgs[f->pos].uid, f->msgs[f->pos].uid};
        struct storage_uidset set = {1, &r};
        cur_clear(f);
        f->st.err = storage_fetch(f->st.j.u, f->mbox, &set, f->spec.storage_what, cur_cb, f);
        if (f->st.err)
            return;
        if (!f->cur.found || f->cur.modseq <= f->changedsince) {
            f->pos++; /* expunged meanwhile, or unchanged since CHANGEDSINCE */
            cur_clear(f);
            return;
        }
        if (seen_changed(f, f->cur.uid))
            f->cur.flags |= STORAGE_FLAG_SEEN;
        if (f->spec.preview && !f->cur.m.preview &&
            (f->st.err = preview_compute(f, f->cur.uid)) != 0)
            return;
        if (!binary_parts(f))
            return;
        msg_open(f, f->msgs[f->pos].seq, f->cur.uid);
        f->item = f->spec.items;
        f->in_msg = true;
    }
    if (f->fd >= 0 || f->mem) {
        stream_some(f);
        return;
    }
    if (!f->item) {
        if (!f->spec.flags && seen_changed(f, f->cur.uid)) {
            item_sep(f);
            buf_str(&f->st.out, "FLAGS ");
            imap_buf_flags(&f->st.out, f->cur.flags, f->cur.keywords, is_recent(f, f->cur.uid));
            if (f->condstore && !f->spec.modseq)
                modseq_item(f, f->cur.modseq);
        }
        buf_str(&f->st.out, ")\r\n");
        f->in_msg = false;
        f->pos++;
        cur_clear(f);
        return;
    }
    struct imap_fetch_item *it = f->item;
    f->item = it->next;
    if (it->type == FI_SECTION)
        section_start(f, it);
    else if (it->type == FI_BINARY || it->type == FI_BINARY_SIZE)
        binary_start(f, it);
    else
        meta_item(f, it, &f->cur.m, f->cur.flags);
}

static int seen_cb(void *arg, const struct storage_msg *m)
{
    struct imap_fetch *f = arg;
    if (f->seen_changed.n == f->seen_changed.cap) {
        size_t ncap = f->seen_changed.cap ? f->seen_changed.cap * 2 : 16;
        uint32_t *v = realloc(f->seen_changed.uids, ncap * sizeof(*v));
        if (!v)
            return 1;
        f->seen_changed.uids = v;
        f->seen_changed.cap = ncap;
    }
    f->seen_changed.uids[f->seen_changed.n++] = m->uid;
    f->own_modseq = m->modseq;
    return 0;
}

static void fetch_work(struct imap_job *j)
{
    struct imap_fetch *f = (struct imap_fetch *)j;

    buf_reset(&f->st.out);
    if (f->vanished && !f->vanished_done) {
        /* before the FETCH answers (3.2.6) */
        struct storage_mbox_info info;
        f->vanished_done = true;
        f->st.err = storage_mbox_info(j->u, NULL, f->mbox, true, &info);
        if (f->st.err == 0) {
            uint32_t top = info.mb.uidnext ? info.mb.uidnext - 1 : 0;
            if (info.nranges && info.ranges[info.nranges - 1].hi > top)
                top = info.ranges[info.nranges - 1].hi;
            f->st.err = imap_vanished_run(j->u, f->mbox, &f->van, info.ranges, info.nranges, top,
                                          NULL, NULL);
        }
        storage_mbox_info_free(&info);
        if (f->st.err)
            return;
        buf_add(&f->st.out, f->van.line.p, f->van.line.len);
    }
    if (f->n && !f->seen_done && f->spec.sets_seen && !f->readonly) {
        /* \Seen set implicitly (RFC 3501 6.4.5), in one transaction */
        struct storage_range *r = malloc((f->n ? f->n : 1) * sizeof(*r));
        if (!r) {
            f->st.err = STORAGE_E_NOMEM;
            return;
        }
        struct storage_uidset set = {msg_ranges(f->msgs, 0, f->n, r), r};
        if (f->viewer)
            f->st.err = storage_pseen_store(j->u, f->mbox, f->viewer, &set, true, 0, NULL,
                                            &f->seen_changed, &f->own_modseq);
        else
            f->st.err = storage_store(j->u, f->mbox, &set, STORAGE_STORE_ADD, STORAGE_FLAG_SEEN,
                                      NULL, 0, 0, NULL, seen_cb, f);
        free(r);
        f->seen_done = true;
        if (f->st.err)
            return;
    }
    if (f->viewer && !f->seen_read) {
        f->st.err = storage_pseen_get(j->u, f->mbox, f->viewer, &f->seen);
        f->seen_read = true;
        if (f->st.err)
            return;
    }
    while (f->pos < f->n && f->st.out.len < IMAP_FETCH_STEP_BYTES && !f->st.err) {
        if (!f->spec.need_body)
            do_batch(f);
        else
            do_message(f);
        if (f->st.out.oom)
            f->st.err = STORAGE_E_NOMEM;
    }
    if (f->pos >= f->n)
        f->st.finished = true;
}

static void fetch_destroy(struct imap_fetch *f)
{
    stream_close(f);
    cur_clear(f);
    free(f->msgs);
    buf_free(&f->scratch);
    free(f->braw);
    free(f->pv_text);
    storage_uidlist_free(&f->seen_changed);
    storage_seen_free(&f->seen);
    imap_vanished_free(&f->van);
    imap_arena_free(&f->ar);
    buf_free(&f->st.out);
    buf_free(&f->st.spare);
    free(f);
}

static void fetch_destroy_steps(struct imap_steps *st)
{
    fetch_destroy((struct imap_fetch *)st);
}

static void fetch_end(struct imap_session *s, struct imap_steps *st)
{
    struct imap_fetch *f = (struct imap_fetch *)st;

    if (f->own_modseq)
        imap_sel_note_own_store(s, f->own_modseq);
    if (st->err) {
        imap_finish_storage_err(s, st->err, "FETCH");
        return;
    }
    if (f->unknown_cte) {
        imap_finish(s, "NO", "[UNKNOWN-CTE] A part's transfer encoding cannot be decoded.");
        return;
    }
    imap_finish(s, "OK", "%sFETCH completed.", f->uid_cmd ? "UID " : "");
}

/* When every section asked for is HEADER.FIELDS (or .NOT) of the
 * top-level header: answered from the index in one pass over the
 * messages, no file opened; from the listing blocks when every name is
 * one of theirs (Thunderbird's, Roundcube's listings). */
static void fields_from_index(struct imap_fetch_spec *sp)
{
    bool listing = true;

    if (!sp->need_body)
        return;
    for (struct imap_fetch_item *it = sp->items; it; it = it->next) {
        if (it->type == FI_BINARY || it->type == FI_BINARY_SIZE ||
            (it->type == FI_SECTION &&
             ((it->kind != SEC_FIELDS && it->kind != SEC_FIELDS_NOT) || it->part[0])))
            return;
        if (it->type == FI_SECTION &&
            (it->kind == SEC_FIELDS_NOT ||
             !storage_listing_fields(it->names, it->nnames, &it->listing_fields)))
            listing = false;
    }
    sp->need_body = false;
    sp->storage_what |= STORAGE_FETCH_HEADER;
    if (listing && sp->storage_what == STORAGE_FETCH_HEADER)
        sp->storage_what |= STORAGE_FETCH_LISTING;
}

/* [SP "(" fetch-modifier *(SP fetch-modifier) ")"] at the end: PARTIAL
 * range (RFC 9394 3.3) and CHANGEDSINCE mod-sequence (RFC 7162 3.1.4.1);
 * *partial NULL when no PARTIAL was given, *changedsince 0 when no
 * CHANGEDSINCE. */
static int fetch_modifiers(struct imap_args *a, struct imap_partial **partial,
                           uint64_t *changedsince, bool *vanished, const char **err)
{
    struct imap_partial *pbuf = *partial;
    const char *w;
    size_t n;

    *partial = NULL;
    *changedsince = 0;
    if (imap_args_at_end(a))
        return IMAP_ARG_OK;
    *err = "Invalid fetch modifier.";
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_open(a) != IMAP_ARG_OK)
        return IMAP_ARG_BAD;
    for (;;) {
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
        if (imap_word_is(w, n, "VANISHED") && !*vanished) {
            *vanished = true; /* no value (RFC 7162 3.2.6) */
        } else if (imap_args_sp(a) != IMAP_ARG_OK) {
            return IMAP_ARG_BAD;
        } else if (imap_word_is(w, n, "PARTIAL") && !*partial) {
            if (imap_args_partial(a, pbuf) != IMAP_ARG_OK)
                return IMAP_ARG_BAD;
            *partial = pbuf;
        } else if (imap_word_is(w, n, "CHANGEDSINCE") && !*changedsince) {
            if (imap_args_modseq(a, changedsince) != IMAP_ARG_OK || !*changedsince)
                return IMAP_ARG_BAD;
        } else {
            return IMAP_ARG_BAD;
        }
        if (imap_args_peek(a, ')'))
            break;
        if (imap_args_sp(a) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
    }
    return imap_args_close(a) == IMAP_ARG_OK && imap_args_at_end(a) ? IMAP_ARG_OK : IMAP_ARG_BAD;
}

/* ---- unsolicited FETCH (NOTIFY's MessageNew with fetch attributes) ---- */

static void unsol_free(struct imap_job *j)
{
    struct imap_fetch *f = (struct imap_fetch *)j;
    if (f->keep)
        f->keep = false; /* the next job of the same fetch owns it */
    else
        fetch_destroy(f);
}

static int unsol_start(struct imap_session *s, struct imap_fetch *f);

static void unsol_done(struct imap_session *s, struct imap_job *j)
{
    struct imap_fetch *f = (struct imap_fetch *)j;
    void (*then)(struct imap_session * s) = f->then;

    if (f->st.out.len)
        imap_out(s, f->st.out.p, f->st.out.len);
    if (!f->st.err && !f->st.finished && s->state == IMAP_SELECTED && s->sel &&
        s->sel->id == f->mbox) {
        f->keep = true;
        if (imap_out_pending(s) >= CONN_WRITE_HIGH) {
            /* the next step once the client has read (output timeout) */
            *f->park = f;
            imap_stall(s);
            return;
        }
        if (unsol_start(s, f) == 0)
            return;
        f->keep = false;
    }
    if (then)
        then(s);
}

static int unsol_start(struct imap_session *s, struct imap_fetch *f)
{
    memset(&f->st.j, 0, sizeof(f->st.j));
    f->st.j.free_fn = unsol_free;
    f->st.j.store = f->st.store;
    return imap_job_start(s, &f->st.j, fetch_work, unsol_done);
}

int imap_fetch_unsolicited_resume(struct imap_session *s, struct imap_fetch *f)
{
    return unsol_start(s, f);
}

void imap_fetch_unsolicited_free(struct imap_fetch *f)
{
    if (f)
        fetch_destroy(f);
}

int imap_fetch_unsolicited(struct imap_session *s, const char *atts, size_t len, size_t from,
                           void (*then)(struct imap_session *s), struct imap_fetch **park)
{
    struct imap_sel *sel = s->sel;
    struct imap_args a;
    const char *err;
    struct imap_fetch *f;

    if (!sel || from >= sel->uids.n || !s->mu || !(f = calloc(1, sizeof(*f))))
        return -1;
    f->fd = -1;
    imap_args_init(&a, atts, len, conn_conf(s->c)->imap_max_nesting);
    if (imap_fetch_parse(&a, &f->ar, &f->spec, &err) != IMAP_ARG_OK ||
        !(f->msgs = malloc((sel->uids.n - from) * sizeof(*f->msgs)))) {
        fetch_destroy(f);
        return -1;
    }
    fields_from_index(&f->spec);
    for (size_t i = from; i < sel->uids.n; i++) {
        f->msgs[f->n].seq = (uint32_t)i + 1;
        f->msgs[f->n].uid = uidmap_at(&sel->uids, i);
        f->n++;
    }
    f->mbox = sel->id;
    f->viewer = sel->seen_viewer;
    f->uid_cmd = true; /* the UID is in every FETCH it sends */
    f->uidonly = s->uidonly;
    f->readonly = true; /* and \Seen is never set by it */
    f->st.store = sel->mu;
    f->recent_lo = sel->recent_lo;
    f->recent_hi = sel->recent_hi;
    f->condstore = s->condstore;
    f->then = then;
    f->park = park;
    f->st.j.free_fn = unsol_free;
    if (unsol_start(s, f) < 0)
        return -1; /* freed by the job's free function */
    return 0;
}

void imap_cmd_fetch(struct imap_session *s, struct imap_args *a)
{
    struct imap_partial partial_buf, *partial = &partial_buf;
    struct imap_seqset set;
    struct storage_uidset us;
    struct imap_fetch *f;
    const char *err = "Invalid fetch attributes.";
    uint64_t changedsince = 0;
    bool vanished = false;
    int r = IMAP_ARG_BAD;

    f = calloc(1, sizeof(*f));
    if (!f) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    f->fd = -1;
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_seqset(a, &f->ar, &set) != IMAP_ARG_OK) {
        fetch_destroy(f);
        imap_bad(s, "Invalid sequence set.");
        return;
    }
    if (imap_args_sp(a) != IMAP_ARG_OK ||
        (r = imap_fetch_parse(a, &f->ar, &f->spec, &err)) != IMAP_ARG_OK ||
        (r = fetch_modifiers(a, &partial, &changedsince, &vanished, &err)) != IMAP_ARG_OK) {
        if (r == IMAP_ARG_DEEP)
            err = "Too deeply nested.";
        fetch_destroy(f);
        imap_bad(s, "%s", err);
        return;
    }
    /* 3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE, QRESYNC on */
    if (vanished && (!s->uid_cmd || !changedsince || !s->qresync)) {
        fetch_destroy(f);
        imap_bad(s, "VANISHED needs UID FETCH with CHANGEDSINCE, after ENABLE QRESYNC.");
        return;
    }
    if (f->spec.nitems > conn_conf(s->c)->imap_max_fetch_items) {
        /* each item costs per message (a section reads the file again) */
        fetch_destroy(f);
        imap_finish(s, "NO", "[LIMIT] Too many fetch attributes (at most %u).",
                    conn_conf(s->c)->imap_max_fetch_items);
        return;
    }
    /* RFC 7162 3.1: MODSEQ and CHANGEDSINCE enable CONDSTORE; CHANGEDSINCE
     * implies MODSEQ (3.1.4.1) */
    if (f->spec.modseq || changedsince)
        imap_condstore_enable(s);
    if (!f->spec.modseq && changedsince) {
        struct imap_fetch_item **tail = &f->spec.items;
        while (*tail)
            tail = &(*tail)->next;
        if (!new_item(&f->ar, &f->spec, &tail, FI_MODSEQ)) {
            fetch_destroy(f);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
        f->spec.nitems--; /* not asked for */
    }
    f->changedsince = changedsince;
    f->condstore = s->condstore;
    fields_from_index(&f->spec);
    if (imap_sel_resolve(s, &set, s->uid_cmd, &f->ar, &us) < 0) {
        fetch_destroy(f);
        imap_bad(s, "Invalid message sequence number.");
        return;
    }
    /* the messages asked for, in sequence order, each once: the ranges
     * asked for, merged, met with the view's ranges */
    const struct uidmap *v = &s->sel->uids;
    struct storage_range *want = NULL;
    size_t nwant = 0, count = 0, from = 0, to = SIZE_MAX, idx = 0;
    if (us.n && storage_uidset_normalize(&us, &want, &nwant) != 0) {
        fetch_destroy(f);
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    if (vanished) {
        /* the UIDs asked for, '*' not cut down to the view: the client
         * may have been told of higher UIDs that went since */
        f->vanished = true;
        f->van.since = changedsince;
        if (set.saved ? imap_vanished_set_known(&f->van, want, nwant) < 0
                      : imap_vanished_set_known(&f->van, set.r, set.n) < 0) {
            free(want);
            fetch_destroy(f);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < nwant; i++) {
            for (size_t rk = uidmap_range(v, want[i].lo); rk < v->nr && v->r[rk].lo <= want[i].hi;
                 rk++) {
                uint32_t lo = v->r[rk].lo > want[i].lo ? v->r[rk].lo : want[i].lo;
                uint32_t hi = v->r[rk].hi < want[i].hi ? v->r[rk].hi : want[i].hi;
                size_t k = v->before[rk] + (lo - v->r[rk].lo);
                if (!pass) {
                    count += (size_t)hi - lo + 1;
                    continue;
                }
                for (uint64_t u = lo; u <= hi; u++, k++, idx++) {
                    if (idx < from || idx >= to)
                        continue; /* outside the PARTIAL range */
                    f->msgs[f->n].seq = (uint32_t)k + 1;
                    f->msgs[f->n].uid = (uint32_t)u;
                    f->n++;
                }
            }
        }
        if (pass == 0 && partial) {
            /* RFC 9394 3.3: only the messages of the set at these
             * positions, counted in UID order */
            imap_partial_window(partial, count, &from, &to);
            count = to - from;
        }
        if (pass == 0 && count && !(f->msgs = malloc(count * sizeof(*f->msgs)))) {
            free(want);
            fetch_destroy(f);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
        if (!count)
            break;
    }
    free(want);
    f->mbox = s->sel->id;
    f->viewer = s->sel->seen_viewer;
    f->uid_cmd = s->uid_cmd;
    f->uidonly = s->uidonly;
    /* RFC 4314 4: a fetch that would set \Seen sets it only with s */
    f->readonly = s->sel->readonly || !(imap_sel_rights(s) & ACL_SEEN);
    f->st.store = s->sel->mu;
    f->recent_lo = s->sel->recent_lo;
    f->recent_hi = s->sel->recent_hi;
    if (s->rev2) { /* RFC 9051: no \Recent */
        f->recent_lo = 1;
        f->recent_hi = 0;
    }
    if (f->n == 0 && !f->vanished) {
        fetch_destroy(f);
        imap_finish(s, "OK", "%sFETCH completed.", s->uid_cmd ? "UID " : "");
        return;
    }
    if (!imap_storage(s)) {
        fetch_destroy(f);
        return;
    }
    f->st.work = fetch_work;
    f->st.end = fetch_end;
    f->st.destroy = fetch_destroy_steps;
    imap_steps_start(s, &f->st);
}
