/* Mailbox commands: CREATE (with USE), DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE, LIST (with LIST-EXTENDED and SPECIAL-USE), LSUB, XLIST and
 * STATUS. All answered from the index on the thread pool. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

static void name_error(struct imap_session *s, int r, const char *usage)
{
    if (r == IMAP_ARG_BADNAME)
        imap_bad(s, "Invalid mailbox name (modified UTF-7).");
    else if (r == IMAP_ARG_DEEP)
        imap_bad(s, "Too deeply nested.");
    else
        imap_bad(s, "Usage: %s", usage);
}

static const struct {
    const char *name;
    unsigned bit;
    const char *xlist;
} special_names[] = {
    {"\\Drafts", STORAGE_SPECIAL_DRAFTS, "\\Drafts"},
    {"\\Sent", STORAGE_SPECIAL_SENT, "\\Sent"},
    {"\\Trash", STORAGE_SPECIAL_TRASH, "\\Trash"},
    {"\\Junk", STORAGE_SPECIAL_JUNK, "\\Spam"},
    {"\\Archive", STORAGE_SPECIAL_ARCHIVE, "\\Archive"},
    {"\\All", STORAGE_SPECIAL_ALL, "\\AllMail"},
    {"\\Flagged", STORAGE_SPECIAL_FLAGGED, "\\Starred"},
};

/* ---- simple mailbox operations ---- */

enum mbop { OP_CREATE, OP_DELETE, OP_RENAME, OP_SUBSCRIBE, OP_UNSUBSCRIBE };

struct mbop_job {
    struct imap_job j;
    enum mbop op;
    char a[STORAGE_MBOX_NAME_MAX + 1], b[STORAGE_MBOX_NAME_MAX + 1];
    unsigned special;
    int err;
};

static void mbop_work(struct imap_job *j)
{
    struct mbop_job *m = (struct mbop_job *)j;
    switch (m->op) {
    case OP_CREATE:
        m->err = storage_mbox_create(j->u, m->a, m->special);
        break;
    case OP_DELETE:
        m->err = storage_mbox_delete(j->u, m->a);
        break;
    case OP_RENAME:
        m->err = storage_mbox_rename(j->u, m->a, m->b);
        break;
    case OP_SUBSCRIBE:
    case OP_UNSUBSCRIBE:
        m->err = storage_subscribe(j->u, m->a, m->op == OP_SUBSCRIBE);
        break;
    }
}

static const char *const op_names[] = {"CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE"};

static void mbop_done(struct imap_session *s, struct imap_job *j)
{
    struct mbop_job *m = (struct mbop_job *)j;
    if (m->err == 0) {
        imap_finish(s, "OK", "%s completed.", op_names[m->op]);
        return;
    }
    if (m->op == OP_CREATE && m->err == STORAGE_E_INVAL) {
        imap_finish(s, "NO", "[USEATTR] CREATE: special-use attribute refused.");
        return;
    }
    imap_finish_storage_err(s, m->err, op_names[m->op]);
}

static void mbop_start(struct imap_session *s, enum mbop op, const char *a, const char *b,
                       unsigned special)
{
    char err[128];
    if (!imap_storage(s))
        return;
    if (op != OP_SUBSCRIBE && op != OP_UNSUBSCRIBE) {
        if (storage_name_check(a, err, sizeof(err)) < 0 ||
            (b && storage_name_check(b, err, sizeof(err)) < 0)) {
            imap_finish(s, "NO", "[CANNOT] %s: %s", op_names[op], err);
            return;
        }
    }
    struct mbop_job *m = calloc(1, sizeof(*m));
    if (!m) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    m->op = op;
    snprintf(m->a, sizeof(m->a), "%s", a);
    if (b)
        snprintf(m->b, sizeof(m->b), "%s", b);
    m->special = special;
    if (imap_job_start(s, &m->j, mbop_work, mbop_done) < 0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}

static void strip_trailing_slash(char *name)
{
    size_t l = strlen(name);
    while (l > 1 && name[l - 1] == '/')
        name[--l] = '\0';
}

void imap_cmd_create(struct imap_session *s, struct imap_args *a)
{
    char name[STORAGE_MBOX_NAME_MAX + 2];
    unsigned special = 0;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_args_mailbox(a, name, sizeof(name))) != IMAP_ARG_OK) {
        name_error(s, r, "CREATE mailbox [(USE (\\Attr ...))]");
        return;
    }
    if (imap_args_sp(a) == IMAP_ARG_OK) {
        /* create-param list: only USE (RFC 6154) */
        const char *w;
        size_t n;
        if (imap_args_open(a) != IMAP_ARG_OK || imap_args_atom(a, &w, &n) != IMAP_ARG_OK ||
            n != 3 || strncasecmp(w, "USE", 3) || imap_args_sp(a) != IMAP_ARG_OK ||
            imap_args_open(a) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: CREATE mailbox (USE (\\Attr ...))");
            return;
        }
        while (!imap_args_peek(a, ')')) {
            if (special && imap_args_sp(a) != IMAP_ARG_OK)
                break;
            if (!imap_args_eat(a, '\\') || imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
                break;
            size_t k;
            for (k = 0; k < sizeof(special_names) / sizeof(special_names[0]); k++)
                if (strlen(special_names[k].name) - 1 == n &&
                    !strncasecmp(special_names[k].name + 1, w, n))
                    break;
            if (k == sizeof(special_names) / sizeof(special_names[0])) {
                imap_finish(s, "NO", "[USEATTR] Unknown special-use attribute.");
                return;
            }
            special |= special_names[k].bit;
        }
        if (imap_args_close(a) != IMAP_ARG_OK || imap_args_close(a) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: CREATE mailbox (USE (\\Attr ...))");
            return;
        }
    }
    if (!imap_args_at_end(a)) {
        imap_bad(s, "Unexpected arguments.");
        return;
    }
    strip_trailing_slash(name);
    if (!strcmp(name, "INBOX")) {
        imap_finish(s, "NO", "[ALREADYEXISTS] INBOX always exists.");
        return;
    }
    mbop_start(s, OP_CREATE, name, NULL, special);
}

static void one_name_cmd(struct imap_session *s, struct imap_args *a, enum mbop op)
{
    char name[STORAGE_MBOX_NAME_MAX + 1];
    int r;
    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_args_mailbox(a, name, sizeof(name))) != IMAP_ARG_OK) {
        name_error(s, r, "COMMAND mailbox");
        return;
    }
    if (!imap_args_at_end(a)) {
        imap_bad(s, "Unexpected arguments.");
        return;
    }
    if (op == OP_DELETE && !strcmp(name, "INBOX")) {
        imap_finish(s, "NO", "[CANNOT] INBOX cannot be deleted.");
        return;
    }
    mbop_start(s, op, name, NULL, 0);
}

void imap_cmd_delete(struct imap_session *s, struct imap_args *a)
{
    one_name_cmd(s, a, OP_DELETE);
}

void imap_cmd_subscribe(struct imap_session *s, struct imap_args *a)
{
    one_name_cmd(s, a, OP_SUBSCRIBE);
}

void imap_cmd_unsubscribe(struct imap_session *s, struct imap_args *a)
{
    one_name_cmd(s, a, OP_UNSUBSCRIBE);
}

void imap_cmd_rename(struct imap_session *s, struct imap_args *a)
{
    char from[STORAGE_MBOX_NAME_MAX + 1], to[STORAGE_MBOX_NAME_MAX + 2];
    int r;
    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_args_mailbox(a, from, sizeof(from))) != IMAP_ARG_OK ||
        (r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_args_mailbox(a, to, sizeof(to))) != IMAP_ARG_OK) {
        name_error(s, r, "RENAME from to");
        return;
    }
    if (!imap_args_at_end(a)) {
        imap_bad(s, "Unexpected arguments.");
        return;
    }
    strip_trailing_slash(to);
    if (!strcmp(to, "INBOX")) {
        imap_finish(s, "NO", "[ALREADYEXISTS] INBOX always exists.");
        return;
    }
    mbop_start(s, OP_RENAME, from, to, 0);
}

/* ---- LIST / LSUB / XLIST ---- */

enum list_mode { MODE_LIST, MODE_LSUB, MODE_XLIST };
enum {
    SEL_SUBSCRIBED = 1 << 0,
    SEL_SPECIAL = 1 << 1,
    SEL_RECURSIVE = 1 << 2,
    RET_SUBSCRIBED = 1 << 3,
    RET_CHILDREN = 1 << 4,
    RET_SPECIAL = 1 << 5,
};

#define LIST_MAX_PATTERNS 32

struct list_job {
    struct imap_job j;
    enum list_mode mode;
    unsigned opts;
    size_t npat;
    char *pat[LIST_MAX_PATTERNS];
    struct imap_arena ar;
    int err;
    struct imap_buf out;
    /* RECURSIVEMATCH: subscribed names, in storage order */
    char **subs;
    size_t nsubs, capsubs;
};

static bool match_any(struct list_job *l, const char *name)
{
    for (size_t i = 0; i < l->npat; i++)
        if (storage_pattern_match(l->pat[i], name))
            return true;
    return false;
}

static void list_line(struct list_job *l, const struct storage_mbox *m, bool childinfo)
{
    static const char *const kinds[] = {"LIST", "LSUB", "XLIST"};
    struct imap_buf *b = &l->out;
    bool first = true;

#define ATTR(x)                                                                                    \
    do {                                                                                           \
        if (!first)                                                                                \
            imap_buf_add(b, " ", 1);                                                               \
        imap_buf_str(b, x);                                                                        \
        first = false;                                                                             \
    } while (0)

    imap_buf_printf(b, "* %s (", kinds[l->mode]);
    if (m->id == 0) {
        /* a subscription to a name that does not exist */
        ATTR(l->mode == MODE_LSUB ? "\\Noselect" : "\\NonExistent");
    } else if (l->mode != MODE_LSUB) {
        ATTR(m->has_children ? "\\HasChildren" : "\\HasNoChildren");
    }
    if (l->mode == MODE_LIST && m->subscribed && (l->opts & (RET_SUBSCRIBED | SEL_SUBSCRIBED)))
        ATTR("\\Subscribed");
    if (l->mode == MODE_XLIST && !strcmp(m->name, "INBOX"))
        ATTR("\\Inbox");
    if (l->mode != MODE_LSUB && m->id) {
        for (size_t k = 0; k < sizeof(special_names) / sizeof(special_names[0]); k++)
            if (m->special_use & special_names[k].bit)
                ATTR(l->mode == MODE_XLIST ? special_names[k].xlist : special_names[k].name);
    }
    imap_buf_str(b, ") \"/\" ");
    imap_buf_mailbox(b, m->name);
    if (childinfo)
        imap_buf_str(b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
    imap_buf_str(b, "\r\n");
#undef ATTR
}

static int list_cb(void *arg, const struct storage_mbox *m)
{
    struct list_job *l = arg;

    if (l->opts & SEL_RECURSIVE) {
        if (l->nsubs == l->capsubs) {
            size_t ncap = l->capsubs ? l->capsubs * 2 : 32;
            char **n = realloc(l->subs, ncap * sizeof(*n));
            if (!n)
                return 1;
            l->subs = n;
            l->capsubs = ncap;
        }
        l->subs[l->nsubs] = imap_arena_strndup(&l->ar, m->name, strlen(m->name));
        if (!l->subs[l->nsubs])
            return 1;
        l->nsubs++;
    }
    if (!match_any(l, m->name))
        return 0;
    if ((l->opts & SEL_SPECIAL) && !m->special_use)
        return 0;
    list_line(l, m, false);
    return l->out.oom;
}

static void list_work(struct imap_job *j)
{
    struct list_job *l = (struct list_job *)j;
    bool subscribed = l->mode == MODE_LSUB || (l->opts & SEL_SUBSCRIBED);

    l->err = storage_mbox_list(j->u, "*", subscribed, list_cb, l);
    if (l->err || !(l->opts & SEL_RECURSIVE))
        return;
    /* parents matching the pattern that are not subscribed themselves but
     * have subscribed descendants (RFC 5258 CHILDINFO) */
    for (size_t i = 0; i < l->nsubs; i++) {
        char parent[STORAGE_MBOX_NAME_MAX + 1];
        snprintf(parent, sizeof(parent), "%s", l->subs[i]);
        char *slash;
        while ((slash = strrchr(parent, '/'))) {
            *slash = '\0';
            if (!match_any(l, parent))
                continue;
            bool listed = false;
            for (size_t k = 0; k < l->nsubs && !listed; k++)
                if (!strcmp(l->subs[k], parent))
                    listed = true;
            /* each parent once: only from its first subscribed child */
            for (size_t k = 0; k < i && !listed; k++) {
                size_t pl = strlen(parent);
                if (!strncmp(l->subs[k], parent, pl) && l->subs[k][pl] == '/')
                    listed = true;
            }
            if (listed)
                continue;
            struct storage_mbox m;
            memset(&m, 0, sizeof(m));
            if (storage_mbox_get(j->u, parent, &m) != 0) {
                memset(&m, 0, sizeof(m));
                snprintf(m.name, sizeof(m.name), "%s", parent);
            }
            m.subscribed = false;
            list_line(l, &m, true);
        }
    }
}

static void list_free(struct imap_job *j)
{
    struct list_job *l = (struct list_job *)j;
    imap_arena_free(&l->ar);
    imap_buf_free(&l->out);
    free(l->subs);
    free(l);
}

static void list_done(struct imap_session *s, struct imap_job *j)
{
    struct list_job *l = (struct list_job *)j;
    if (l->err || l->out.oom) {
        imap_finish_storage_err(s, l->err ? l->err : STORAGE_E_NOMEM, "LIST");
        return;
    }
    imap_flush(s);
    conn_write(s->c, l->out.p, l->out.len);
    imap_finish(s, "OK", "%s completed.",
                l->mode == MODE_LSUB    ? "LSUB"
                : l->mode == MODE_XLIST ? "XLIST"
                                        : "LIST");
}

static bool word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && !strncasecmp(w, kw, n);
}

static int list_opts(struct imap_args *a, unsigned *opts, bool ret)
{
    const char *w;
    size_t n;
    int r;
    if ((r = imap_args_open(a)) != IMAP_ARG_OK)
        return r;
    while (!imap_args_peek(a, ')')) {
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
        if (!ret && word_is(w, n, "SUBSCRIBED"))
            *opts |= SEL_SUBSCRIBED;
        else if (!ret && word_is(w, n, "REMOTE"))
            ;
        else if (!ret && word_is(w, n, "RECURSIVEMATCH"))
            *opts |= SEL_RECURSIVE;
        else if (!ret && word_is(w, n, "SPECIAL-USE"))
            *opts |= SEL_SPECIAL;
        else if (ret && word_is(w, n, "SUBSCRIBED"))
            *opts |= RET_SUBSCRIBED;
        else if (ret && word_is(w, n, "CHILDREN"))
            *opts |= RET_CHILDREN;
        else if (ret && word_is(w, n, "SPECIAL-USE"))
            *opts |= RET_SPECIAL;
        else
            return IMAP_ARG_BAD;
        if (!imap_args_peek(a, ')') && imap_args_sp(a) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
    }
    return imap_args_close(a);
}

static int add_pattern(struct list_job *l, const char *ref, const char *pat)
{
    size_t rl = strlen(ref), pl = strlen(pat);
    if (l->npat >= LIST_MAX_PATTERNS)
        return IMAP_ARG_BAD;
    char *p = imap_arena_alloc(&l->ar, rl + pl + 1);
    if (!p)
        return IMAP_ARG_NOMEM;
    memcpy(p, ref, rl);
    memcpy(p + rl, pat, pl + 1);
    l->pat[l->npat++] = p;
    return IMAP_ARG_OK;
}

static void do_list(struct imap_session *s, struct imap_args *a, enum list_mode mode)
{
    char ref[IMAP_MBOX_ARG_MAX], pat[IMAP_MBOX_ARG_MAX];
    struct list_job *l;
    int r = IMAP_ARG_OK;
    bool empty_pattern = false;

    l = calloc(1, sizeof(*l));
    if (!l) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    l->mode = mode;
    l->j.free_fn = list_free;
    if (imap_args_sp(a) != IMAP_ARG_OK)
        r = IMAP_ARG_BAD;
    if (r == IMAP_ARG_OK && mode == MODE_LIST && imap_args_peek(a, '(')) {
        r = list_opts(a, &l->opts, false);
        if (r == IMAP_ARG_OK)
            r = imap_args_sp(a);
        /* RECURSIVEMATCH needs another selection option (RFC 5258) */
        if (r == IMAP_ARG_OK && (l->opts & SEL_RECURSIVE) &&
            !(l->opts & (SEL_SUBSCRIBED | SEL_SPECIAL)))
            r = IMAP_ARG_BAD;
        if (r == IMAP_ARG_OK && (l->opts & SEL_RECURSIVE) && !(l->opts & SEL_SUBSCRIBED))
            l->opts &= ~(unsigned)SEL_RECURSIVE;
    }
    if (r == IMAP_ARG_OK)
        r = imap_args_mailbox(a, ref, sizeof(ref));
    if (r == IMAP_ARG_OK)
        r = imap_args_sp(a);
    if (r == IMAP_ARG_OK && mode == MODE_LIST && imap_args_peek(a, '(')) {
        r = imap_args_open(a);
        while (r == IMAP_ARG_OK && !imap_args_peek(a, ')')) {
            if (l->npat && (r = imap_args_sp(a)) != IMAP_ARG_OK)
                break;
            if ((r = imap_args_pattern(a, pat, sizeof(pat))) == IMAP_ARG_OK)
                r = add_pattern(l, ref, pat);
        }
        if (r == IMAP_ARG_OK)
            r = imap_args_close(a);
        if (r == IMAP_ARG_OK && !l->npat)
            r = IMAP_ARG_BAD;
    } else if (r == IMAP_ARG_OK) {
        if (imap_args_peek(a, '"') && a->end - a->p >= 2 && a->p[1] == '"') {
            a->p += 2;
            empty_pattern = true;
        } else {
            r = imap_args_pattern(a, pat, sizeof(pat));
            if (r == IMAP_ARG_OK)
                r = add_pattern(l, ref, pat);
        }
    }
    if (r == IMAP_ARG_OK && mode == MODE_LIST && imap_args_sp(a) == IMAP_ARG_OK) {
        const char *w;
        size_t n;
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK || !word_is(w, n, "RETURN") ||
            imap_args_sp(a) != IMAP_ARG_OK)
            r = IMAP_ARG_BAD;
        else
            r = list_opts(a, &l->opts, true);
    }
    if (r == IMAP_ARG_OK && !imap_args_at_end(a))
        r = IMAP_ARG_BAD;
    if (r != IMAP_ARG_OK) {
        list_free(&l->j);
        name_error(s, r,
                   mode == MODE_LSUB ? "LSUB reference pattern"
                                     : "LIST [(options)] reference pattern [RETURN (options)]");
        return;
    }
    if (empty_pattern) {
        /* the hierarchy delimiter and root (RFC 3501 6.3.8) */
        list_free(&l->j);
        imap_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n",
                    mode == MODE_LSUB    ? "LSUB"
                    : mode == MODE_XLIST ? "XLIST"
                                         : "LIST");
        imap_finish(s, "OK", "%s completed.",
                    mode == MODE_LSUB    ? "LSUB"
                    : mode == MODE_XLIST ? "XLIST"
                                         : "LIST");
        return;
    }
    if (!imap_storage(s)) {
        list_free(&l->j);
        return;
    }
    if (imap_job_start(s, &l->j, list_work, list_done) < 0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}

void imap_cmd_list(struct imap_session *s, struct imap_args *a)
{
    do_list(s, a, MODE_LIST);
}

void imap_cmd_lsub(struct imap_session *s, struct imap_args *a)
{
    do_list(s, a, MODE_LSUB);
}

void imap_cmd_xlist(struct imap_session *s, struct imap_args *a)
{
    do_list(s, a, MODE_XLIST);
}

/* ---- STATUS ---- */

enum {
    ST_MESSAGES = 1 << 0,
    ST_RECENT = 1 << 1,
    ST_UIDNEXT = 1 << 2,
    ST_UIDVALIDITY = 1 << 3,
    ST_UNSEEN = 1 << 4,
};

struct status_job {
    struct imap_job j;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    unsigned items;
    int64_t user;
    uint32_t floor; /* \Recent floor, UINT32_MAX = look it up on the loop */
    int err;
    struct storage_mbox mb;
    struct storage_status st;
    uint32_t recent_above; /* messages with UID > floor */
    uint32_t floor_used;
};

static int count_cb(void *arg, const struct storage_msg *m)
{
    struct status_job *sj = arg;
    sj->recent_above++;
    return 0;
}

static void status_work(struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    sj->err = storage_mbox_get(j->u, sj->name, &sj->mb);
    if (sj->err == 0)
        sj->err = storage_mbox_status(j->u, sj->mb.id, &sj->st);
}

static void status_count_work(struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    struct storage_range r = {sj->floor_used + 1, UINT32_MAX};
    struct storage_uidset set = {1, &r};
    sj->recent_above = 0;
    sj->err = storage_fetch(j->u, sj->mb.id, &set, 0, count_cb, sj);
}

static void status_reply(struct imap_session *s, struct status_job *sj, uint32_t recent)
{
    struct imap_buf *b = imap_outbuf(s);
    bool first = true;
    imap_buf_str(b, "* STATUS ");
    imap_buf_mailbox(b, sj->mb.name);
    imap_buf_str(b, " (");
#define ITEM(bit, fmt, v)                                                                          \
    do {                                                                                           \
        if (sj->items & (bit)) {                                                                   \
            imap_buf_printf(b, "%s" fmt, first ? "" : " ", v);                                     \
            first = false;                                                                         \
        }                                                                                          \
    } while (0)
    ITEM(ST_MESSAGES, "MESSAGES %u", sj->st.messages);
    ITEM(ST_RECENT, "RECENT %u", recent);
    ITEM(ST_UIDNEXT, "UIDNEXT %u", sj->st.uidnext);
    ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", sj->st.uidvalidity);
    ITEM(ST_UNSEEN, "UNSEEN %u", sj->st.unseen);
#undef ITEM
    imap_buf_str(b, ")\r\n");
    imap_finish(s, "OK", "STATUS completed.");
}

static void status_count_done(struct imap_session *s, struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "STATUS");
        return;
    }
    status_reply(s, sj, sj->recent_above);
}

static void status_done(struct imap_session *s, struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "STATUS");
        return;
    }
    if (!(sj->items & ST_RECENT)) {
        status_reply(s, sj, 0);
        return;
    }
    uint32_t floor = imap_recent_floor(s->account_id, sj->mb.id);
    if (floor == 0 || floor >= sj->st.uidnext - 1) {
        status_reply(s, sj, floor == 0 ? sj->st.messages : 0);
        return;
    }
    /* count the messages above the floor: a second step */
    struct status_job *next = malloc(sizeof(*next));
    if (!next) {
        status_reply(s, sj, 0);
        return;
    }
    *next = *sj;
    memset(&next->j, 0, sizeof(next->j));
    next->floor_used = floor;
    if (imap_job_start(s, &next->j, status_count_work, status_count_done) < 0)
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
}

void imap_cmd_status(struct imap_session *s, struct imap_args *a)
{
    char name[STORAGE_MBOX_NAME_MAX + 1];
    unsigned items = 0;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_args_mailbox(a, name, sizeof(name))) != IMAP_ARG_OK ||
        (r = imap_args_sp(a)) != IMAP_ARG_OK || (r = imap_args_open(a)) != IMAP_ARG_OK) {
        name_error(s, r, "STATUS mailbox (items)");
        return;
    }
    while (!imap_args_peek(a, ')')) {
        const char *w;
        size_t n;
        if (items && imap_args_sp(a) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: STATUS mailbox (items)");
            return;
        }
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: STATUS mailbox (items)");
            return;
        }
        if (word_is(w, n, "MESSAGES"))
            items |= ST_MESSAGES;
        else if (word_is(w, n, "RECENT"))
            items |= ST_RECENT;
        else if (word_is(w, n, "UIDNEXT"))
            items |= ST_UIDNEXT;
        else if (word_is(w, n, "UIDVALIDITY"))
            items |= ST_UIDVALIDITY;
        else if (word_is(w, n, "UNSEEN"))
            items |= ST_UNSEEN;
        else {
            imap_bad(s, "Unknown STATUS item.");
            return;
        }
    }
    if (imap_args_close(a) != IMAP_ARG_OK || !imap_args_at_end(a) || !items) {
        imap_bad(s, "Usage: STATUS mailbox (items)");
        return;
    }
    if (!imap_storage(s))
        return;
    struct status_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    memcpy(sj->name, name, sizeof(sj->name));
    sj->items = items;
    if (imap_job_start(s, &sj->j, status_work, status_done) < 0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}
