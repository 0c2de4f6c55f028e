/* LIST (with LIST-EXTENDED, RFC 5258, and SPECIAL-USE, RFC 6154), LSUB
 * and XLIST: the mailbox list is read from the index on the thread pool,
 * in steps that each go on after the last name listed, so that a long
 * answer is written as the client reads it, never held whole. */
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

static const char *const kinds[] = {"LIST", "LSUB", "XLIST"};

struct list_job {
    struct imap_steps st; /* first */
    enum list_mode mode;
    unsigned opts;
    size_t npat;
    char *pat[LIST_MAX_PATTERNS];
    struct imap_arena ar;
    /* the names are listed in steps: the next one starts after `after` */
    char after[STORAGE_MBOX_NAME_MAX + 1];
    bool started, names_done, step_full, oom;
    /* RECURSIVEMATCH: every subscribed name, in storage (bytewise) order,
     * then their parents are listed in steps from next_sub */
    char **subs;
    size_t nsubs, capsubs, next_sub;
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
    struct buf *b = &l->st.out;
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

    snprintf(l->after, sizeof(l->after), "%s", m->name);
    l->started = true;
    if (l->opts & SEL_RECURSIVE) {
        if (l->nsubs == l->capsubs) {
            size_t ncap = l->capsubs ? l->capsubs * 2 : 32;
            char **n = realloc(l->subs, ncap * sizeof(*n));
            if (!n) {
                l->oom = true;
                return 1;
            }
            l->subs = n;
            l->capsubs = ncap;
        }
        l->subs[l->nsubs] = imap_arena_strndup(&l->ar, m->name, strlen(m->name));
        if (!l->subs[l->nsubs]) {
            l->oom = true;
            return 1;
        }
        l->nsubs++;
    }
    if (match_any(l, m->name) && (!(l->opts & SEL_SPECIAL) || m->special_use))
        list_line(l, m, false);
    if (l->st.out.oom)
        return 1;
    /* this step has written enough: the next one goes on after this name */
    l->step_full = l->st.out.len >= IMAP_STEP_BYTES;
    return l->step_full;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool subscribed(struct list_job *l, const char *name)
{
    return bsearch(&name, l->subs, l->nsubs, sizeof(*l->subs), cmp_name) != NULL;
}

/* RECURSIVEMATCH (RFC 5258 CHILDINFO): the parents matching a pattern
 * that are not subscribed themselves but have subscribed descendants,
 * each once: from its first subscribed descendant in name order. The
 * names under a parent P ("P/...") are consecutive in that order, so P
 * was already listed exactly when the previous subscription is under it
 * too: one look back and a binary search per parent, not a scan. */
static void list_parents(struct imap_job *j, struct list_job *l)
{
    for (; l->next_sub < l->nsubs && l->st.out.len < IMAP_STEP_BYTES; l->next_sub++) {
        size_t i = l->next_sub;
        char parent[STORAGE_MBOX_NAME_MAX + 1];
        char *slash;

        snprintf(parent, sizeof(parent), "%s", l->subs[i]);
        while ((slash = strrchr(parent, '/'))) {
            size_t pl = (size_t)(slash - parent);
            *slash = '\0';
            if (!match_any(l, parent) || subscribed(l, parent))
                continue;
            if (i > 0 && !strncmp(l->subs[i - 1], parent, pl) && l->subs[i - 1][pl] == '/')
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
    if (l->next_sub >= l->nsubs)
        l->st.finished = true;
}

/* One step: names from where the last one stopped, then parents. */
static void list_work(struct imap_job *j)
{
    struct list_job *l = (struct list_job *)j;
    bool subs_only = l->mode == MODE_LSUB || (l->opts & SEL_SUBSCRIBED);

    buf_reset(&l->st.out);
    if (!l->names_done) {
        l->step_full = false;
        l->st.err =
            storage_mbox_list(j->u, "*", subs_only, l->started ? l->after : NULL, list_cb, l);
        if (!l->st.err && (l->st.out.oom || l->oom))
            l->st.err = STORAGE_E_NOMEM;
        if (l->st.err || l->step_full)
            return;
        l->names_done = true;
        if (!(l->opts & SEL_RECURSIVE)) {
            l->st.finished = true;
            return;
        }
    }
    list_parents(j, l);
    if (l->st.out.oom)
        l->st.err = STORAGE_E_NOMEM;
}

static void list_free(struct list_job *l)
{
    imap_arena_free(&l->ar);
    buf_free(&l->st.out);
    buf_free(&l->st.spare);
    free(l->subs);
    free(l);
}

static void list_destroy(struct imap_steps *st)
{
    list_free((struct list_job *)st);
}

static void list_end(struct imap_session *s, struct imap_steps *st)
{
    struct list_job *l = (struct list_job *)st;

    if (st->err) {
        imap_finish_storage_err(s, st->err, kinds[l->mode]);
        return;
    }
    imap_finish(s, "OK", "%s completed.", kinds[l->mode]);
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
    /* a reference or pattern that is not modified UTF-7 matches no name */
    bool bad_ref = false, bad_pat = false, nothing = false;

    l = calloc(1, sizeof(*l));
    if (!l) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    l->mode = mode;
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
        r = imap_name_lax(imap_args_mailbox(a, ref, sizeof(ref)), &bad_ref);
    if (bad_ref)
        ref[0] = '\0';
    if (r == IMAP_ARG_OK)
        r = imap_args_sp(a);
    if (r == IMAP_ARG_OK && mode == MODE_LIST && imap_args_peek(a, '(')) {
        r = imap_args_open(a);
        while (r == IMAP_ARG_OK && !imap_args_peek(a, ')')) {
            if ((l->npat || nothing) && (r = imap_args_sp(a)) != IMAP_ARG_OK)
                break;
            if ((r = imap_name_lax(imap_args_pattern(a, pat, sizeof(pat)), &bad_pat)) ==
                    IMAP_ARG_OK &&
                !bad_pat)
                r = add_pattern(l, ref, pat);
            else if (r == IMAP_ARG_OK)
                nothing = true; /* stands in the count of patterns */
        }
        if (r == IMAP_ARG_OK)
            r = imap_args_close(a);
        if (r == IMAP_ARG_OK && !l->npat && !nothing)
            r = IMAP_ARG_BAD;
    } else if (r == IMAP_ARG_OK) {
        if (imap_args_peek(a, '"') && a->end - a->p >= 2 && a->p[1] == '"') {
            a->p += 2;
            empty_pattern = true;
        } else {
            r = imap_name_lax(imap_args_pattern(a, pat, sizeof(pat)), &bad_pat);
            if (r == IMAP_ARG_OK && !bad_pat)
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
        list_free(l);
        imap_bad_arg(s, r,
                     mode == MODE_LSUB ? "LSUB reference pattern"
                                       : "LIST [(options)] reference pattern [RETURN (options)]");
        return;
    }
    if (empty_pattern) {
        /* the hierarchy delimiter and root (RFC 3501 6.3.8) */
        list_free(l);
        imap_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n", kinds[mode]);
        imap_finish(s, "OK", "%s completed.", kinds[mode]);
        return;
    }
    if (bad_ref || !l->npat) {
        list_free(l);
        imap_finish(s, "OK", "%s completed.", kinds[mode]);
        return;
    }
    if (!imap_storage(s)) {
        list_free(l);
        return;
    }
    l->st.work = list_work;
    l->st.end = list_end;
    l->st.destroy = list_destroy;
    imap_steps_start(s, &l->st);
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
