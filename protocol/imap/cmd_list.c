/* LIST (with LIST-EXTENDED, RFC 5258, and SPECIAL-USE, RFC 6154), LSUB
 * and XLIST: the mailbox list is read from the index on the thread pool
 * and the answer built there. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

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
    struct buf out;
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
    struct buf *b = &l->out;
    bool first = true;

#define ATTR(x)                                                                                    \
    do {                                                                                           \
        if (!first)                                                                                \
            buf_add(b, " ", 1);                                                                    \
        buf_str(b, x);                                                                             \
        first = false;                                                                             \
    } while (0)

    buf_printf(b, "* %s (", kinds[l->mode]);
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
        for (size_t k = 0; k < IMAP_NSPECIAL; k++)
            if (m->special_use & imap_special_use[k].bit)
                ATTR(l->mode == MODE_XLIST ? imap_special_use[k].xlist : imap_special_use[k].name);
    }
    buf_str(b, ") \"/\" ");
    imap_buf_mailbox(b, m->name);
    if (childinfo)
        buf_str(b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
    buf_str(b, "\r\n");
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
    buf_free(&l->out);
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
        if (!ret && imap_word_is(w, n, "SUBSCRIBED"))
            *opts |= SEL_SUBSCRIBED;
        else if (!ret && imap_word_is(w, n, "REMOTE"))
            ;
        else if (!ret && imap_word_is(w, n, "RECURSIVEMATCH"))
            *opts |= SEL_RECURSIVE;
        else if (!ret && imap_word_is(w, n, "SPECIAL-USE"))
            *opts |= SEL_SPECIAL;
        else if (ret && imap_word_is(w, n, "SUBSCRIBED"))
            *opts |= RET_SUBSCRIBED;
        else if (ret && imap_word_is(w, n, "CHILDREN"))
            *opts |= RET_CHILDREN;
        else if (ret && imap_word_is(w, n, "SPECIAL-USE"))
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
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK || !imap_word_is(w, n, "RETURN") ||
            imap_args_sp(a) != IMAP_ARG_OK)
            r = IMAP_ARG_BAD;
        else
            r = list_opts(a, &l->opts, true);
    }
    if (r == IMAP_ARG_OK && !imap_args_at_end(a))
        r = IMAP_ARG_BAD;
    if (r != IMAP_ARG_OK) {
        list_free(&l->j);
        imap_bad_arg(s, r,
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
    imap_cmd_job(s, &l->j, list_work, list_done);
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
