/* SEARCH and UID SEARCH: the RFC 3501 search-key parser (a pure function
 * the fuzz target calls directly) producing a storage_search tree, the
 * mapping of sequence sets and \Recent to UIDs for this session, and the
 * search itself on the thread pool (TEXT/BODY through the full-text
 * index). Dates are calendar days in UTC. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* Keys on a date: internal date or Date: header (sent), before/since/on. */
static const struct {
    const char *key;
    enum storage_search_op op; /* when not "on" */
    bool on, sent;
} date_keys[] = {
    {"BEFORE", STORAGE_SEARCH_BEFORE, false, false},
    {"SINCE", STORAGE_SEARCH_SINCE, false, false},
    {"ON", STORAGE_SEARCH_BEFORE, true, false},
    {"SENTBEFORE", STORAGE_SEARCH_SENTBEFORE, false, true},
    {"SENTSINCE", STORAGE_SEARCH_SENTSINCE, false, true},
    {"SENTON", STORAGE_SEARCH_SENTBEFORE, true, true},
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

static struct storage_search *date_node(struct sp *p, enum storage_search_op op, int64_t t)
{
    struct storage_search *n = node(p->ar, op);
    if (n)
        n->num = t;
    return n;
}

/* ON-style: [d, d + 1 day) */
static struct storage_search *day_node(struct sp *p, bool sent, int64_t t)
{
    return pair(p->ar, STORAGE_SEARCH_AND,
                date_node(p, sent ? STORAGE_SEARCH_SENTSINCE : STORAGE_SEARCH_SINCE, t),
                date_node(p, sent ? STORAGE_SEARCH_SENTBEFORE : STORAGE_SEARCH_BEFORE, t + 86400));
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
    n->flags = kind;
    n->set.n = set.n;
    n->set.r = set.r;
    return n;
}

static bool is_seqset_start(char ch)
{
    return (ch >= '0' && ch <= '9') || ch == '*';
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
    if (imap_word_is(w, n, "ALL"))
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
            return day_node(p, date_keys[i].sent, t);
        return date_node(p, date_keys[i].op, t);
    }
    if (imap_word_is(w, n, "LARGER") || imap_word_is(w, n, "SMALLER")) {
        const char *d;
        size_t dl;
        uint64_t v = 0;
        if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &d, &dl) != IMAP_ARG_OK ||
            dl > 10) {
            p->err = "Invalid number.";
            return NULL;
        }
        for (size_t i = 0; i < dl; i++) {
            if (d[i] < '0' || d[i] > '9') {
                p->err = "Invalid number.";
                return NULL;
            }
            v = v * 10 + (uint64_t)(d[i] - '0');
        }
        if (v > UINT32_MAX) {
            p->err = "Invalid number.";
            return NULL;
        }
        struct storage_search *k =
            node(p->ar, n == 6 ? STORAGE_SEARCH_LARGER : STORAGE_SEARCH_SMALLER);
        if (k)
            k->num = (int64_t)v;
        return k;
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
            if (n->flags & IMAP_SK_RECENT) {
                struct storage_range *r = imap_arena_alloc(ar, sizeof(*r));
                const struct imap_sel *sel = s->sel;
                uint32_t maxu = uidmap_max(&sel->uids);
                if (!r)
                    return -2;
                r->lo = sel->recent_lo;
                r->hi = sel->recent_hi < maxu ? sel->recent_hi : maxu;
                n->set.r = r;
                n->set.n = r->lo <= r->hi ? 1 : 0;
            } else {
                struct imap_seqset in = {n->set.n, (struct storage_range *)n->set.r};
                struct storage_uidset out;
                if (imap_sel_resolve(s, &in, !(n->flags & IMAP_SK_SEQ), ar, &out) < 0)
                    return -1;
                n->set = out;
            }
            n->flags = 0;
        }
        if (n->child && imap_search_resolve(s, n->child, ar) < 0)
            return -1;
    }
    return 0;
}

struct search_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    struct storage_search *q;
    int err;
    struct storage_uidlist res;
};

static void search_work(struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;
    sj->err = storage_search(j->u, sj->mbox, sj->q, &sj->res);
}

static void search_free(struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;
    imap_arena_free(&sj->ar);
    storage_uidlist_free(&sj->res);
    free(sj);
}

static void search_done(struct imap_session *s, struct imap_job *j)
{
    struct search_job *sj = (struct search_job *)j;
    if (sj->err == STORAGE_E_INVAL) {
        imap_finish(s, "NO", "[CANNOT] SEARCH: invalid search.");
        return;
    }
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "SEARCH");
        return;
    }
    struct buf *b = imap_outbuf(s);
    buf_str(b, "* SEARCH");
    for (size_t i = 0; i < sj->res.n && s->sel; i++) {
        uint32_t seq = imap_sel_seq(s->sel, sj->res.uids[i]);
        if (!seq)
            continue; /* not announced to this session yet */
        buf_printf(b, " %u", s->uid_cmd ? sj->res.uids[i] : seq);
        if (b->len >= 64 * 1024) {
            imap_flush(s);
            b = imap_outbuf(s);
        }
    }
    buf_str(b, "\r\n");
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
    if (imap_args_sp(a) != IMAP_ARG_OK) {
        search_free(&sj->j);
        imap_bad(s, "Usage: SEARCH [CHARSET name] key ...");
        return;
    }
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
        if (strcasecmp(cs, "UTF-8") && strcasecmp(cs, "US-ASCII")) {
            search_free(&sj->j);
            imap_finish(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.");
            return;
        }
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
        if (r == -1)
            imap_bad(s, "Invalid message sequence number.");
        else
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    sj->mbox = s->sel->id;
    imap_cmd_job(s, &sj->j, search_work, search_done);
}
