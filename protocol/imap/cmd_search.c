/* SEARCH and UID SEARCH: the RFC 3501 search-key parser (it reads only
 * its input and, for OLDER/YOUNGER, the clock; the fuzz target calls it
 * directly) producing a storage_search tree, the RETURN options of
 * ESEARCH (RFC 4731), SEARCHRES (RFC 5182) and PARTIAL (RFC 9394), the
 * mapping of sequence sets, "$" and \Recent to UIDs for this session, the
 * search itself on the thread pool (TEXT/BODY through the full-text index)
 * and its answers, SEARCH or ESEARCH, and the saving of "$". Dates are
 * calendar days in UTC; OLDER and YOUNGER (RFC 5032) count seconds back
 * from the time the command is read. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "protocol/imap/imap_private.h"

/* the storage refuses deeper trees */
#define SEARCH_DEPTH_CAP 60

static struct storage_search *node(struct imap_arena *ar, enum storage_search_op op)
{
    struct storage_search *n = imap_arena_alloc(ar, sizeof(*n));
    if (n)
        n->op = op;
    return n;
}

static struct storage_search *pair(struct imap_arena *ar, enum storage_search_op op,
                                   struct storage_search *a, struct storage_search *b)
{
    struct storage_search *n = node(ar, op);
    if (!n || !a || !b)
        return NULL;
    a->next = b;
    n->child = a;
    return n;
}

struct sp {
    struct imap_args *a;
    struct imap_arena *ar;
    const char *err;
    unsigned depth;
    int rc;
};

/* Keys on a system flag: "UN" + name for the flag not set. */
static const struct {
    const char *name; /* "UNSEEN"; name + 2 is "SEEN" */
    bool set;
    unsigned flag;
} flag_keys[] = {
    {"UNANSWERED", true, STORAGE_FLAG_ANSWERED}, {"UNANSWERED", false, STORAGE_FLAG_ANSWERED},
    {"UNDELETED", true, STORAGE_FLAG_DELETED},   {"UNDELETED", false, STORAGE_FLAG_DELETED},
    {"UNFLAGGED", true, STORAGE_FLAG_FLAGGED},   {"UNFLAGGED", false, STORAGE_FLAG_FLAGGED},
    {"UNSEEN", true, STORAGE_FLAG_SEEN},         {"UNSEEN", false, STORAGE_FLAG_SEEN},
    {"UNDRAFT", true, STORAGE_FLAG_DRAFT},       {"UNDRAFT", false, STORAGE_FLAG_DRAFT},
};

/* Keys on a header field's contents. */
static const struct {
    const char *key, *field;
} header_keys[] = {
    {"FROM", "From"}, {"TO", "To"}, {"CC", "Cc"}, {"BCC", "Bcc"}, {"SUBJECT", "Subject"},
};

/* Keys on a date: internal date, Date: header (sent) or save date (RFC
 * 8514), before/since/on; "on" is [since, before) of one day. */
static const struct {
    const char *key;
    enum storage_search_op op, since; /* before (when not "on"); since for "on" */
    bool on;
} date_keys[] = {
    {"BEFORE", STORAGE_SEARCH_BEFORE, STORAGE_SEARCH_SINCE, false},
    {"SINCE", STORAGE_SEARCH_SINCE, STORAGE_SEARCH_SINCE, false},
    {"ON", STORAGE_SEARCH_BEFORE, STORAGE_SEARCH_SINCE, true},
    {"SENTBEFORE", STORAGE_SEARCH_SENTBEFORE, STORAGE_SEARCH_SENTSINCE, false},
    {"SENTSINCE", STORAGE_SEARCH_SENTSINCE, STORAGE_SEARCH_SENTSINCE, false},
    {"SENTON", STORAGE_SEARCH_SENTBEFORE, STORAGE_SEARCH_SENTSINCE, true},
    {"SAVEDBEFORE", STORAGE_SEARCH_SAVEDBEFORE, STORAGE_SEARCH_SAVEDSINCE, false},
    {"SAVEDSINCE", STORAGE_SEARCH_SAVEDSINCE, STORAGE_SEARCH_SAVEDSINCE, false},
    {"SAVEDON", STORAGE_SEARCH_SAVEDBEFORE, STORAGE_SEARCH_SAVEDSINCE, true},
};

static struct storage_search *key(struct sp *p);

static char *str_arg(struct sp *p)
{
    char *s;
    size_t n;
    int r;
    if (imap_args_sp(p->a) != IMAP_ARG_OK ||
        (r = imap_args_astring_dup(p->a, p->ar, &s, &n)) != IMAP_ARG_OK) {
        p->err = "Missing or invalid string argument.";
        return NULL;
    }
    if (memchr(s, '\0', n)) {
        p->err = "Invalid string argument.";
        return NULL;
    }
    return s;
}

static bool date_arg(struct sp *p, int64_t *t)
{
    if (imap_args_sp(p->a) != IMAP_ARG_OK || imap_args_date(p->a, t) != IMAP_ARG_OK) {
        p->err = "Invalid date (expected d-Mon-yyyy).";
        return false;
    }
    return true;
}

/* SP number: 0 to 4294967295. */
static bool number_arg(struct sp *p, uint32_t *out)
{
    const char *d;
    size_t dl;
    uint64_t v = 0;
    if (imap_args_sp(p->a) != IMAP_ARG_OK || imap_args_atom(p->a, &d, &dl) != IMAP_ARG_OK ||
        dl > 10) {
        p->err = "Invalid number.";
        return false;
    }
    for (size_t i = 0; i < dl; i++) {
        if (d[i] < '0' || d[i] > '9') {
            p->err = "Invalid number.";
            return false;
        }
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    if (v > UINT32_MAX) {
        p->err = "Invalid number.";
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static struct storage_search *date_node(struct sp *p, enum storage_search_op op, int64_t t)
{
    struct storage_search *n = node(p->ar, op);
    if (n)
        n->num = t;
    return n;
}

/* ON-style: [d, d + 1 day) */
static struct storage_search *day_node(struct sp *p, enum storage_search_op since,
                                       enum storage_search_op before, int64_t t)
{
    return pair(p->ar, STORAGE_SEARCH_AND, date_node(p, since, t), date_node(p, before, t + 86400));
}

static struct storage_search *flag_node(struct sp *p, bool set, unsigned flag)
{
    struct storage_search *n = node(p->ar, set ? STORAGE_SEARCH_FLAGS : STORAGE_SEARCH_UNFLAGS);
    if (n)
        n->flags = flag;
    return n;
}

static struct storage_search *header_node(struct sp *p, const char *field)
{
    char *s = str_arg(p);
    struct storage_search *n;
    if (!s)
        return NULL;
    n = node(p->ar, STORAGE_SEARCH_HEADER);
    if (n) {
        n->field = field;
        n->str = s;
    }
    return n;
}

static struct storage_search *set_node(struct sp *p, const char *s, size_t len, unsigned kind)
{
    struct imap_seqset set;
    struct storage_search *n;
    if (imap_parse_seqset(s, len, p->ar, &set) != IMAP_ARG_OK) {
        p->err = "Invalid sequence set.";
        return NULL;
    }
    n = node(p->ar, STORAGE_SEARCH_UID);
    if (!n)
        return NULL;
    n->flags = kind | (set.saved ? IMAP_SK_SAVED : 0);
    n->set.n = set.n;
    n->set.r = set.r;
    return n;
}

static bool is_seqset_start(char ch)
{
    return (ch >= '0' && ch <= '9') || ch == '*' || ch == '$';
}

static struct storage_search *key(struct sp *p)
{
    struct imap_args *a = p->a;
    const char *w;
    size_t n;

    if (imap_args_peek(a, '(')) {
        struct storage_search *and, **tail;
        if (imap_args_open(a) != IMAP_ARG_OK || ++p->depth > SEARCH_DEPTH_CAP) {
            p->err = "Search keys nested too deeply.";
            p->rc = IMAP_ARG_DEEP;
            return NULL;
        }
        and = node(p->ar, STORAGE_SEARCH_AND);
        if (!and)
            return NULL;
        tail = &and->child;
        for (;;) {
            struct storage_search *k = key(p);
            if (!k)
                return NULL;
            *tail = k;
            tail = &k->next;
            if (imap_args_peek(a, ')'))
                break;
            if (imap_args_sp(a) != IMAP_ARG_OK) {
                p->err = "Expected a space or ')'.";
                return NULL;
            }
        }
        imap_args_close(a);
        p->depth--;
        return and;
    }
    if (a->p < a->end && is_seqset_start(*a->p)) {
        const char *start = a->p;
        while (a->p < a->end && (is_seqset_start(*a->p) || *a->p == ':' || *a->p == ','))
            a->p++;
        return set_node(p, start, (size_t)(a->p - start), IMAP_SK_SEQ);
    }
    if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
        p->err = "Invalid search key.";
        return NULL;
    }
    /* SAVEDATESUPPORTED (RFC 8514): every mailbox keeps save dates */
    if (imap_word_is(w, n, "ALL") || imap_word_is(w, n, "SAVEDATESUPPORTED"))
        return node(p->ar, STORAGE_SEARCH_ALL);
    for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++)
        if (imap_word_is(w, n, flag_keys[i].name + (flag_keys[i].set ? 2 : 0)))
            return flag_node(p, flag_keys[i].set, flag_keys[i].flag);
    if (imap_word_is(w, n, "RECENT"))
        return set_node(p, "1", 1, IMAP_SK_RECENT);
    if (imap_word_is(w, n, "NEW"))
        return pair(p->ar, STORAGE_SEARCH_AND, set_node(p, "1", 1, IMAP_SK_RECENT),
                    flag_node(p, false, STORAGE_FLAG_SEEN));
    if (imap_word_is(w, n, "OLD")) {
        struct storage_search *no = node(p->ar, STORAGE_SEARCH_NOT);
        if (no)
            no->child = set_node(p, "1", 1, IMAP_SK_RECENT);
        return no && no->child ? no : NULL;
    }
    for (size_t i = 0; i < sizeof(header_keys) / sizeof(header_keys[0]); i++)
        if (imap_word_is(w, n, header_keys[i].key))
            return header_node(p, header_keys[i].field);
    if (imap_word_is(w, n, "HEADER")) {
        char *field = str_arg(p);
        if (!field)
            return NULL;
        if (!*field) {
            p->err = "Empty header field name.";
            return NULL;
        }
        for (const char *q = field; *q; q++)
            if ((unsigned char)*q <= ' ' || *q == ':' || (unsigned char)*q >= 0x7f) {
                p->err = "Invalid header field name.";
                return NULL;
            }
        return header_node(p, field);
    }
    if (imap_word_is(w, n, "BODY") || imap_word_is(w, n, "TEXT")) {
        char *s = str_arg(p);
        struct storage_search *k;
        if (!s)
            return NULL;
        k = node(p->ar, imap_word_is(w, n, "BODY") ? STORAGE_SEARCH_BODY : STORAGE_SEARCH_TEXT);
        if (k)
            k->str = s;
        return k;
    }
    if (imap_word_is(w, n, "KEYWORD") || imap_word_is(w, n, "UNKEYWORD")) {
        const char *kw;
        size_t kl;
        struct storage_search *k;
        if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &kw, &kl) != IMAP_ARG_OK ||
            kl > STORAGE_KEYWORD_MAX) {
            p->err = "Invalid keyword.";
            return NULL;
        }
        k = node(p->ar, n == 7 ? STORAGE_SEARCH_KEYWORD : STORAGE_SEARCH_UNKEYWORD);
        if (k && !(k->str = imap_arena_strndup(p->ar, kw, kl)))
            return NULL;
        return k;
    }
    for (size_t i = 0; i < sizeof(date_keys) / sizeof(date_keys[0]); i++) {
        int64_t t;
        if (!imap_word_is(w, n, date_keys[i].key))
            continue;
        if (!date_arg(p, &t))
            return NULL;
        if (date_keys[i].on)
            return day_node(p, date_keys[i].since, date_keys[i].op, t);
        return date_node(p, date_keys[i].op, t);
    }
    if (imap_word_is(w, n, "MODSEQ")) {
        /* MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC
         * 7162 3.1.5): the entry names one flag's metadata; the message's
         * modseq is every flag's, so the entry is checked and ignored */
        uint64_t v;
        if (imap_args_sp(a) != IMAP_ARG_OK) {
            p->err = "Usage: MODSEQ [\"/flags/flag\" priv|shared|all] modseq";
            return NULL;
        }
        if (imap_args_peek(a, '"')) {
            char *e;
            size_t el;
            const char *ty;
            size_t tl;
            if (imap_args_astring_dup(a, p->ar, &e, &el) != IMAP_ARG_OK || el < 8 ||
                strncasecmp(e, "/flags/", 7) || imap_args_sp(a) != IMAP_ARG_OK ||
                imap_args_atom(a, &ty, &tl) != IMAP_ARG_OK ||
                !(imap_word_is(ty, tl, "priv") || imap_word_is(ty, tl, "shared") ||
                  imap_word_is(ty, tl, "all")) ||
                imap_args_sp(a) != IMAP_ARG_OK) {
                p->err = "Usage: MODSEQ [\"/flags/flag\" priv|shared|all] modseq";
                return NULL;
            }
        }
        if (imap_args_modseq(a, &v) != IMAP_ARG_OK) {
            p->err = "Invalid mod-sequence.";
            return NULL;
        }
        struct storage_search *k = node(p->ar, STORAGE_SEARCH_MODSEQ);
        if (k)
            k->num = (int64_t)v;
        return k;
    }
    if (imap_word_is(w, n, "EMAILID") || imap_word_is(w, n, "THREADID")) {
        /* RFC 8474 6: an id not ours matches nothing */
        const char *id;
        size_t il;
        uint64_t v = 0;
        bool email = n == 7;
        if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &id, &il) != IMAP_ARG_OK ||
            il > 255) {
            p->err = "Invalid object id.";
            return NULL;
        }
        for (size_t i = 0; i < il; i++)
            if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '_') {
                p->err = "Invalid object id.";
                return NULL;
            }
        if (!imap_objectid_parse(id, il, email ? 'M' : 'T', &v)) {
            struct storage_search *no = node(p->ar, STORAGE_SEARCH_NOT);
            if (no && !(no->child = node(p->ar, STORAGE_SEARCH_ALL)))
                return NULL;
            return no;
        }
        struct storage_search *k =
            node(p->ar, email ? STORAGE_SEARCH_EMAILID : STORAGE_SEARCH_THREADID);
        if (k)
            k->num = (int64_t)v;
        return k;
    }
    if (imap_word_is(w, n, "LARGER") || imap_word_is(w, n, "SMALLER")) {
        uint32_t v;
        if (!number_arg(p, &v))
            return NULL;
        struct storage_search *k =
            node(p->ar, n == 6 ? STORAGE_SEARCH_LARGER : STORAGE_SEARCH_SMALLER);
        if (k)
            k->num = (int64_t)v;
        return k;
    }
    if (imap_word_is(w, n, "OLDER") || imap_word_is(w, n, "YOUNGER")) {
        /* WITHIN (RFC 5032): the internal date at least n seconds ago, or
         * at most; both take the instant n seconds ago (as Dovecot does) */
        uint32_t v;
        if (!number_arg(p, &v))
            return NULL;
        if (v == 0) {
            p->err = "Invalid interval (seconds, 1 or more).";
            return NULL;
        }
        int64_t then = (int64_t)time(NULL) - (int64_t)v;
        if (n == 5)
            return date_node(p, STORAGE_SEARCH_BEFORE, then + 1);
        return date_node(p, STORAGE_SEARCH_SINCE, then);
    }
    if (imap_word_is(w, n, "UID")) {
        const char *start;
        if (imap_args_sp(a) != IMAP_ARG_OK) {
            p->err = "Missing UID set.";
            return NULL;
        }
        start = a->p;
        while (a->p < a->end && (is_seqset_start(*a->p) || *a->p == ':' || *a->p == ','))
            a->p++;
        return set_node(p, start, (size_t)(a->p - start), 0);
    }
    if (imap_word_is(w, n, "NOT")) {
        struct storage_search *no;
        if (imap_args_sp(a) != IMAP_ARG_OK) {
            p->err = "NOT needs a search key.";
            return NULL;
        }
        if (++p->depth > SEARCH_DEPTH_CAP || p->depth > a->max_depth) {
            p->err = "Search keys nested too deeply.";
            p->rc = IMAP_ARG_DEEP;
            return NULL;
        }
        no = node(p->ar, STORAGE_SEARCH_NOT);
        if (!no || !(no->child = key(p)))
            return NULL;
        p->depth--;
        return no;
    }
    if (imap_word_is(w, n, "OR")) {
        struct storage_search *x, *y;
        if (++p->depth > SEARCH_DEPTH_CAP || p->depth > a->max_depth) {
            p->err = "Search keys nested too deeply.";
            p->rc = IMAP_ARG_DEEP;
            return NULL;
        }
        if (imap_args_sp(a) != IMAP_ARG_OK || !(x = key(p)) || imap_args_sp(a) != IMAP_ARG_OK ||
            !(y = key(p))) {
            if (!p->err)
                p->err = "OR needs two search keys.";
            return NULL;
        }
        p->depth--;
        return pair(p->ar, STORAGE_SEARCH_OR, x, y);
    }
    p->err = "Unknown search key.";
    return NULL;
}

int imap_search_parse(struct imap_args *a, struct imap_arena *ar, struct storage_search **out,
                      const char **err)
{
    struct sp p = {a, ar, NULL, 0, IMAP_ARG_BAD};
    struct storage_search *and = node(ar, STORAGE_SEARCH_AND), **tail;

    *out = NULL;
    *err = "Out of memory.";
    if (!and)
        return IMAP_ARG_NOMEM;
    tail = &and->child;
    for (;;) {
        struct storage_search *k = key(&p);
        if (!k) {
            *err = p.err ? p.err : "Out of memory.";
            return p.err ? p.rc : IMAP_ARG_NOMEM;
        }
        *tail = k;
        tail = &k->next;
        if (imap_args_at_end(a))
            break;
        if (imap_args_sp(a) != IMAP_ARG_OK) {
            *err = "Expected a space between search keys.";
            return IMAP_ARG_BAD;
        }
    }
    *out = and;
    return IMAP_ARG_OK;
}

/* ---- mapping to this session's view ---- */

int imap_search_resolve(struct imap_session *s, struct storage_search *n, struct imap_arena *ar)
{
    for (; n; n = n->next) {
        if (n->op == STORAGE_SEARCH_UID) {
            if ((n->flags & IMAP_SK_RECENT) && s->rev2) {
                return -3; /* RFC 9051 removed RECENT, NEW and OLD */
            } else if (n->flags & IMAP_SK_RECENT) {
                struct storage_range *r = imap_arena_alloc(ar, sizeof(*r));
                const struct imap_sel *sel = s->sel;
                uint32_t maxu = uidmap_max(&sel->uids);
                if (!r)
                    return -2;
                r->lo = sel->recent_lo;
                r->hi = sel->recent_hi < maxu ? sel->recent_hi : maxu;
                n->set.r = r;
                n->set.n = r->lo <= r->hi ? 1 : 0;
            } else if ((n->flags & IMAP_SK_SEQ) && !(n->flags & IMAP_SK_SAVED) && s->uidonly) {
                return -4; /* RFC 9586: a sequence set, after ENABLE UIDONLY */
            } else {
                struct imap_seqset in = {n->set.n, (struct storage_range *)n->set.r,
                                         (n->flags & IMAP_SK_SAVED) != 0};
                struct storage_uidset out;
                if (imap_sel_resolve(s, &in, !(n->flags & IMAP_SK_SEQ), ar, &out) < 0)
                    return -1;
                n->set = out;
            }
            n->flags = 0;
        }
        int r;
        if (n->child && (r = imap_search_resolve(s, n->child, ar)) < 0)
            return r;
    }
    return 0;
}

/* nz-number: 1 to 4294967295 */
static bool nz_number(const char **p, const char *end, uint32_t *out)
{
    uint64_t v = 0;
    const char *q = *p;
    if (q == end || *q < '1' || *q > '9')
        return false;
    for (; q < end && *q >= '0' && *q <= '9'; q++)
        if ((v = v * 10 + (uint64_t)(*q - '0')) > UINT32_MAX)
            return false;
    *out = (uint32_t)v;
    *p = q;
    return true;
}

int imap_args_partial(struct imap_args *a, struct imap_partial *out)
{
    const char *w, *end;
    size_t n;
    bool neg;

    if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
        return IMAP_ARG_BAD;
    end = w + n;
    neg = *w == '-';
    w += neg;
    if (!nz_number(&w, end, &out->a) || w == end || *w++ != ':')
        return IMAP_ARG_BAD;
    if (neg && (w == end || *w++ != '-'))
        return IMAP_ARG_BAD;
    if (!nz_number(&w, end, &out->b) || w != end)
        return IMAP_ARG_BAD;
    out->last = neg;
    out->lo = out->a < out->b ? out->a : out->b; /* 500:400 is 400:500 */
    out->hi = out->a < out->b ? out->b : out->a;
    return IMAP_ARG_OK;
}

void imap_partial_window(const struct imap_partial *p, size_t n, size_t *from, size_t *to)
{
    *from = *to = 0;
    if (p->lo > n)
        return; /* the whole range beyond the result */
    if (!p->last) {
        *from = p->lo - 1;
        *to = p->hi < n ? p->hi : n;
    } else {
        /* -1 is the last result: -lo..-hi are [n - hi, n - lo] */
        *to = n - p->lo + 1;
        *from = p->hi < n ? n - p->hi : 0;
    }
}

int imap_search_return(struct imap_args *a, unsigned *opts, struct imap_partial *part)
{
    static const struct {
        const char *name;
        unsigned bit;
    } ret_opts[] = {{"MIN", IMAP_SR_MIN},       {"MAX", IMAP_SR_MAX},
                    {"ALL", IMAP_SR_ALL},       {"COUNT", IMAP_SR_COUNT},
                    {"SAVE", IMAP_SR_SAVE},     {"PARTIAL", IMAP_SR_PARTIAL},
                    {"UPDATE", IMAP_SR_UPDATE}, {"CONTEXT", IMAP_SR_CONTEXT}};
    const char *start = a->p, *w;
    size_t n;

    *opts = 0;
    if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK || !imap_word_is(w, n, "RETURN")) {
        a->p = start;
        return IMAP_ARG_OK;
    }
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_open(a) != IMAP_ARG_OK)
        return IMAP_ARG_BAD;
    while (!imap_args_peek(a, ')')) {
        size_t i;
        if (*opts && imap_args_sp(a) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
        for (i = 0; i < sizeof(ret_opts) / sizeof(ret_opts[0]); i++)
            if (imap_word_is(w, n, ret_opts[i].name))
                break;
        if (i == sizeof(ret_opts) / sizeof(ret_opts[0]))
            return IMAP_ARG_BAD; /* an option we do not offer */
        if (ret_opts[i].bit == IMAP_SR_UPDATE && (*opts & IMAP_SR_UPDATE))
            return IMAP_ARG_BAD; /* one UPDATE */
        if (ret_opts[i].bit == IMAP_SR_PARTIAL) {
            /* one PARTIAL, with its range */
            if (!part || (*opts & IMAP_SR_PARTIAL) || imap_args_sp(a) != IMAP_ARG_OK ||
                imap_args_partial(a, part) != IMAP_ARG_OK)
                return IMAP_ARG_BAD;
        }
        *opts |= ret_opts[i].bit | IMAP_SR_RETURN;
    }
    if (imap_args_close(a) != IMAP_ARG_OK)
        return IMAP_ARG_BAD;
    /* RFC 9394 3.1: one PARTIAL or one ALL, not both */
    if ((*opts & IMAP_SR_PARTIAL) && (*opts & IMAP_SR_ALL))
        return IMAP_ARG_BAD;
    /* RETURN () is RETURN (ALL), and so is RETURN (CONTEXT): CONTEXT is
     * only a hint (RFC 5267 4.2) */
    if (!(*opts & ~(unsigned)(IMAP_SR_RETURN | IMAP_SR_CONTEXT)))
        *opts |= IMAP_SR_ALL | IMAP_SR_RETURN;
    return imap_args_sp(a) == IMAP_ARG_OK ? IMAP_ARG_OK : IMAP_ARG_BAD;
}

void imap_esearch_answer(struct imap_session *s, unsigned opts, const uint32_t *v, size_t n,
                         const struct imap_partial *part, uint64_t modseq)
{
    struct buf *b = imap_outbuf(s);

    buf_str(b, "* ESEARCH (TAG ");
    buf_imap_string(b, s->tag, strlen(s->tag));
    buf_addc(b, ')');
    if (s->uid_cmd)
        buf_str(b, " UID");
    if (n && (opts & IMAP_SR_MIN)) {
        buf_str(b, " MIN ");
        buf_addu(b, v[0]);
    }
    if (n && (opts & IMAP_SR_MAX)) {
        buf_str(b, " MAX ");
        buf_addu(b, v[n - 1]);
    }
    if (n && (opts & IMAP_SR_ALL)) {
        buf_str(b, " ALL ");
        b = imap_write_set(s, b, v, n);
    }
    if ((opts & IMAP_SR_PARTIAL) && part) {
        size_t from, to;
        imap_partial_window(part, n, &from, &to);
        buf_printf(b, " PARTIAL (%s%u:%s%u ", part->last ? "-" : "", part->a, part->last ? "-" : "",
                   part->b);
        if (from == to)
            buf_str(b, "NIL");
        else
            b = imap_write_set(s, b, v + from, to - from);
        buf_addc(b, ')');
    }
    if (opts & IMAP_SR_COUNT) {
        buf_str(b, " COUNT ");
        buf_addu(b, n);
    }
    if (modseq) {
        buf_str(b, " MODSEQ ");
        buf_addu(b, modseq);
    }
    buf_str(b, "\r\n");
}

struct search_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    unsigned opts; /* IMAP_SR_* */
    struct imap_partial partial;
    uint64_t since; /* UPDATE: the modseq known when the command came */
    struct storage_search *q;
    char charset[64]; /* SEARCH CHARSET other than UTF-8 and US-ASCII, or "" */
    bool badcharset;
    bool modseq; /* a MODSEQ key: the answer tells the highest modseq found */
    int err;
    struct storage_uidlist res;
    struct imap_modseqs ms; /* MODSEQ: those of the messages found */
};

bool imap_search_has_modseq(const struct storage_search *q)
{
    for (; q; q = q->next)
        if (q->op == STORAGE_SEARCH_MODSEQ || imap_search_has_modseq(q->child))
            return true;
    return false;
}

struct modseq_load {
    struct imap_modseqs *m;
    size_t i;
};

static int modseq_cb(void *arg, const struct storage_msg *msg)
{
    struct modseq_load *l = arg;
    while (l->i < l->m->n && l->m->uids[l->i] < msg->uid)
        l->i++;
    if (l->i < l->m->n && l->m->uids[l->i] == msg->uid)
        l->m->ms[l->i++] = msg->modseq;
    return 0;
}

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int imap_modseqs_load(struct storage_user *u, int64_t mbox, const uint32_t *uids, size_t n,
                      struct imap_modseqs *out)
{
    struct storage_range *r;
    size_t nr = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!n)
        return 0;
    out->uids = malloc(n * sizeof(*out->uids));
    out->ms = calloc(n, sizeof(*out->ms));
    r = malloc(n * sizeof(*r));
    if (!out->uids || !out->ms || !r) {
        free(r);
        imap_modseqs_free(out);
        return STORAGE_E_NOMEM;
    }
    memcpy(out->uids, uids, n * sizeof(*uids));
    qsort(out->uids, n, sizeof(*out->uids), cmp_uid); /* a SORT's are in sort order */
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        if (nr && r[nr - 1].hi + 1 >= out->uids[i]) {
            r[nr - 1].hi = out->uids[i];
            continue;
        }
        r[nr].lo = r[nr].hi = out->uids[i];
        nr++;
    }
    struct storage_uidset set = {nr, r};
    struct modseq_load l = {out, 0};
    rc = storage_fetch(u, mbox, &set, 0, modseq_cb, &l);
    free(r);
    return rc;
}

void imap_modseqs_free(struct imap_modseqs *m)
{
    free(m->uids);
    free(m->ms);
    memset(m, 0, sizeof(*m));
}

static uint64_t modseq_of(const struct imap_modseqs *m, uint32_t uid)
{
    size_t i = imap_lower_bound(m->uids, m->n, uid);
    return i < m->n && m->uids[i] == uid ? m->ms[i] : 0;
}

uint64_t imap_modseqs_highest(struct imap_session *s, const struct imap_modseqs *m,
                              const uint32_t *v, size_t n, unsigned opts)
{
    bool ends = (opts & IMAP_SR_RETURN) &&
                !(opts & (IMAP_SR_ALL | IMAP_SR_COUNT | IMAP_SR_PARTIAL | IMAP_SR_SAVE));
    size_t first = SIZE_MAX, last = SIZE_MAX;
    uint64_t hi = 0;

    if (!m->n || !s->sel)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!imap_sel_seq(s->sel, v[i]))
            continue; /* not announced to this session yet */
        if (first == SIZE_MAX)
            first = i;
        last = i;
        uint64_t x = modseq_of(m, v[i]);
        if (!ends && x > hi)
            hi = x;
    }
    if (ends && first != SIZE_MAX) {
        if (opts & IMAP_SR_MIN)
            hi = modseq_of(m, v[first]);
        if ((opts & IMAP_SR_MAX) && modseq_of(m, v[last]) > hi)
            hi = modseq_of(m, v[last]);
    }
    return hi;
}

static void search_work(struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;
    /* here, not on the loop: iconv may load a module from disk */
    int r = imap_search_in_charset(sj->q, &sj->ar, sj->charset);
    if (r != 0) {
        sj->badcharset = r > 0;
        sj->err = r < 0 ? STORAGE_E_NOMEM : 0;
        return;
    }
    sj->err = storage_search(j->u, sj->mbox, sj->q, &sj->res);
    if (sj->err == 0 && sj->modseq)
        sj->err = imap_modseqs_load(j->u, sj->mbox, sj->res.uids, sj->res.n, &sj->ms);
}

static void search_free(struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;
    imap_arena_free(&sj->ar);
    storage_uidlist_free(&sj->res);
    imap_modseqs_free(&sj->ms);
    free(sj);
}

/* The classic answer: "* SEARCH n ...[ (MODSEQ m)]". */
static void search_answer(struct imap_session *s, const struct storage_uidlist *res,
                          uint64_t modseq)
{
    struct buf *b = imap_outbuf(s);
    buf_str(b, "* SEARCH");
    for (size_t i = 0; i < res->n && s->sel; i++) {
        uint32_t seq = imap_sel_seq(s->sel, res->uids[i]);
        if (!seq)
            continue; /* not announced to this session yet */
        buf_printf(b, " %u", s->uid_cmd ? res->uids[i] : seq);
        if (b->len >= 64 * 1024) {
            imap_flush(s);
            b = imap_outbuf(s);
        }
    }
    if (modseq) {
        buf_str(b, " (MODSEQ ");
        buf_addu(b, modseq);
        buf_addc(b, ')');
    }
    buf_str(b, "\r\n");
}

/* A SEARCH or SORT with SAVE answered NO leaves "$" empty (RFC 5182
 * 2.1); a BAD one leaves it as it was. */
void imap_search_save_failed(struct imap_session *s, unsigned opts)
{
    if ((opts & IMAP_SR_SAVE) && s->sel)
        imap_sel_save(s->sel, NULL, 0);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* What SAVE keeps of the UIDs found v[0..n) (ascending, or in sort order
 * for SORT): all of them, or with MIN/MAX and no ALL or COUNT only the
 * first and last (RFC 5182 2.4; for SORT the first and last in sort order,
 * as MIN and MAX are, RFC 5267 3), and with PARTIAL and no COUNT the
 * messages of the PARTIAL answer with the MIN/MAX ones (RFC 9394 3.2). */
static int save_result(struct imap_sel *sel, unsigned opts, const struct imap_partial *part,
                       const uint32_t *v, size_t n, bool sorted)
{
    size_t from = 0, to = n, k = 0;
    uint32_t *keep;
    int r;

    if (!n || (opts & (IMAP_SR_ALL | IMAP_SR_COUNT)) ||
        !(opts & (IMAP_SR_MIN | IMAP_SR_MAX | IMAP_SR_PARTIAL))) {
        if (!sorted || n < 2)
            return imap_sel_save(sel, v, n);
    } else if (opts & IMAP_SR_PARTIAL) {
        imap_partial_window(part, n, &from, &to);
    } else {
        from = to = 0;
    }
    /* "$" is a set: the sort order is not kept */
    if (!(keep = malloc((to - from + 2) * sizeof(*keep))))
        return -1;
    memcpy(keep, v + from, (to - from) * sizeof(*keep));
    k = to - from;
    if (k < n && (opts & IMAP_SR_MIN) && !(opts & IMAP_SR_COUNT))
        keep[k++] = v[0];
    if (k < n && (opts & IMAP_SR_MAX) && !(opts & IMAP_SR_COUNT))
        keep[k++] = v[n - 1];
    qsort(keep, k, sizeof(*keep), cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (!u || keep[u - 1] != keep[i])
            keep[u++] = keep[i];
    r = imap_sel_save(sel, keep, u);
    free(keep);
    return r;
}

int imap_esearch_result(struct imap_session *s, unsigned opts, const struct imap_partial *part,
                        uint32_t *v, size_t nv, bool sorted, uint64_t modseq)
{
    size_t n = 0;

    /* the messages this session knows; a count, never a list of strings,
     * unless ALL asked for one */
    for (size_t i = 0; i < nv && s->sel; i++) {
        uint32_t seq = imap_sel_seq(s->sel, v[i]);
        if (seq) /* else not announced to this session yet */
            v[n++] = s->uid_cmd || (opts & IMAP_SR_SAVE) ? v[i] : seq;
    }
    if (opts & IMAP_SR_SAVE) {
        if (!s->sel || save_result(s->sel, opts, part, v, n, sorted) < 0) {
            imap_search_save_failed(s, opts);
            return -1;
        }
        for (size_t i = 0; i < n && !s->uid_cmd; i++)
            v[i] = imap_sel_seq(s->sel, v[i]);
    }
    if (opts & (IMAP_SR_MIN | IMAP_SR_MAX | IMAP_SR_ALL | IMAP_SR_COUNT | IMAP_SR_PARTIAL |
                IMAP_SR_UPDATE))
        imap_esearch_answer(s, opts, v, n, part, modseq);
    return 0;
}

static void search_done(struct imap_session *s, struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;

    if (sj->err || sj->badcharset)
        imap_search_save_failed(s, sj->opts);
    if (sj->badcharset) {
        /* RFC 3501 6.4.4: NO, not BAD, with the charsets known */
        imap_finish(s, "NO", "[BADCHARSET %s] Unsupported charset.", imap_charsets);
        return;
    }
    if (sj->err == STORAGE_E_INVAL) {
        imap_finish(s, "NO", "[CANNOT] SEARCH: invalid search.");
        return;
    }
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "SEARCH");
        return;
    }
    if (!(sj->opts & IMAP_SR_RETURN)) {
        search_answer(s, &sj->res, imap_modseqs_highest(s, &sj->ms, sj->res.uids, sj->res.n, 0));
        imap_finish(s, "OK", "%sSEARCH completed.", s->uid_cmd ? "UID " : "");
        return;
    }
    int ctx = 0;
    if ((sj->opts & IMAP_SR_UPDATE) &&
        (ctx = imap_ctx_add(s, &sj->ar, sj->q, sj->res.uids, sj->res.n, sj->since)) < 0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    uint64_t highest = imap_modseqs_highest(s, &sj->ms, sj->res.uids, sj->res.n, sj->opts);
    if (imap_esearch_result(s, sj->opts, &sj->partial, sj->res.uids, sj->res.n, false, highest) <
        0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    if (ctx > 0)
        imap_noupdate(s);
    imap_finish(s, "OK", "%sSEARCH completed.", s->uid_cmd ? "UID " : "");
}

void imap_cmd_search(struct imap_session *s, struct imap_args *a)
{
    struct search_job *sj = calloc(1, sizeof(*sj));
    const char *err, *w;
    size_t n;
    int r;

    if (!sj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    sj->j.free_fn = search_free;
    if (imap_args_sp(a) != IMAP_ARG_OK ||
        imap_search_return(a, &sj->opts, &sj->partial) != IMAP_ARG_OK) {
        search_free(&sj->j);
        imap_bad(s, "Usage: SEARCH [RETURN (MIN MAX ALL COUNT SAVE PARTIAL n:m UPDATE)] [CHARSET "
                    "name] key ...");
        return;
    }
    /* RFC 9051 6.4.4, RFC 9586: ESEARCH, as RETURN (ALL) */
    if ((s->rev2 || s->uidonly) && !(sj->opts & IMAP_SR_RETURN))
        sj->opts = IMAP_SR_RETURN | IMAP_SR_ALL;
    if ((sj->opts & IMAP_SR_UPDATE) && imap_ctx_find(s->sel, s->tag)) {
        /* RFC 5267 4.3: the tag names a live context */
        search_free(&sj->j);
        imap_bad(s, "Tag in use by a search context.");
        return;
    }
    sj->since = s->sel->known_modseq;
    const char *save = a->p;
    if (imap_args_atom(a, &w, &n) == IMAP_ARG_OK && imap_word_is(w, n, "CHARSET")) {
        char cs[64];
        size_t cl;
        if (imap_args_sp(a) != IMAP_ARG_OK ||
            imap_args_astring(a, cs, sizeof(cs), &cl) != IMAP_ARG_OK ||
            imap_args_sp(a) != IMAP_ARG_OK) {
            search_free(&sj->j);
            imap_bad(s, "Usage: SEARCH [CHARSET name] key ...");
            return;
        }
        if (s->utf8_accept) {
            /* RFC 6855 3: no charset once UTF8=ACCEPT is enabled */
            search_free(&sj->j);
            imap_bad(s, "No CHARSET after ENABLE UTF8=ACCEPT: strings are UTF-8.");
            return;
        }
        if (!imap_charset_is_utf8(cs))
            memcpy(sj->charset, cs, cl + 1); /* checked and used on the pool */
    } else {
        a->p = save;
    }
    if ((r = imap_search_parse(a, &sj->ar, &sj->q, &err)) != IMAP_ARG_OK) {
        search_free(&sj->j);
        imap_bad(s, "%s", err);
        return;
    }
    if ((r = imap_search_resolve(s, sj->q, &sj->ar)) < 0) {
        search_free(&sj->j);
        if (r == -3) {
            imap_bad(s, "RECENT, NEW and OLD are not search keys in IMAP4rev2.");
        } else if (r == -4) {
            imap_bad(s, IMAP_UIDREQUIRED);
        } else if (r == -1) {
            imap_bad(s, "Invalid message sequence number.");
        } else {
            imap_search_save_failed(s, sj->opts);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        }
        return;
    }
    if ((sj->modseq = imap_search_has_modseq(sj->q)))
        imap_condstore_enable(s); /* RFC 7162 3.1 */
    sj->mbox = s->sel->id;
    sj->q->viewer = s->sel->seen_viewer; /* per-user \Seen */
    imap_sel_job(s, &sj->j, search_work, search_done);
}

/* CANCELUPDATE 1*(SP quoted) (RFC 5267 4.3.5): every tag must name a
 * live context, else nothing is cancelled. */
void imap_cmd_cancelupdate(struct imap_session *s, struct imap_args *a)
{
    struct imap_ctx *found[16];
    size_t nf = 0;
    bool unknown = false;

    if (imap_args_at_end(a)) {
        imap_bad(s, "Usage: CANCELUPDATE \"tag\" ...");
        return;
    }
    while (!imap_args_at_end(a)) {
        char tag[IMAP_TAG_MAX];
        size_t tl;
        if (imap_args_sp(a) != IMAP_ARG_OK || !imap_args_peek(a, '"') ||
            imap_args_astring(a, tag, sizeof(tag), &tl) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: CANCELUPDATE \"tag\" ...");
            return;
        }
        struct imap_ctx *c = imap_ctx_find(s->sel, tag);
        size_t i = 0;
        while (c && i < nf && found[i] != c)
            i++;
        if (!c) {
            unknown = true;
        } else if (i < nf) {
            continue; /* named twice */
        } else if (nf < sizeof(found) / sizeof(found[0])) {
            found[nf++] = c;
        } else {
            imap_bad(s, "Too many tags.");
            return;
        }
    }
    if (unknown) {
        imap_finish(s, "NO", "No such search context.");
        return;
    }
    for (size_t i = 0; i < nf; i++)
        imap_ctx_cancel(s->sel, found[i]);
    imap_finish(s, "OK", "CANCELUPDATE completed.");
}
