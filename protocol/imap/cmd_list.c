/* LIST (with LIST-EXTENDED, RFC 5258, SPECIAL-USE, RFC 6154, and
 * LIST-STATUS, RFC 5819), LSUB and XLIST: the mailbox list is read from
 * the index on the thread pool, in steps that each go on after the last
 * name listed, so that a long answer is written as the client reads it,
 * never held whole. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"

enum list_mode { MODE_LIST, MODE_LSUB, MODE_XLIST };
enum {
    SEL_SUBSCRIBED = 1 << 0,
    SEL_SPECIAL = 1 << 1,
    SEL_RECURSIVE = 1 << 2,
    RET_SUBSCRIBED = 1 << 3,
    RET_CHILDREN = 1 << 4,
    RET_SPECIAL = 1 << 5,
    RET_STATUS = 1 << 6,
};

#define LIST_MAX_PATTERNS 32
/* LIST-STATUS: mailboxes a step lists with their STATUS at most */
#define LIST_STATUS_STEP 64

static const char *const kinds[] = {"LIST", "LSUB", "XLIST"};

struct list_job {
    struct imap_steps st; /* first */
    enum list_mode mode;
    unsigned opts;
    bool utf8; /* names in UTF-8 (the session's s->utf8) */
    size_t npat;
    char *pat[LIST_MAX_PATTERNS];
    struct imap_arena ar;
    /* the names are listed in steps: the next one starts after `after` */
    char after[STORAGE_MBOX_NAME_MAX + 1];
    bool started, names_done, step_full, oom;
    /* RECURSIVEMATCH and LSUB (`parents`): every subscribed name is read
     * first (`subs`, in storage order: bytewise), then `marked` holds, in
     * the same order and once each, the names matching a pattern that have
     * a subscribed descendant matching none. Those not subscribed
     * themselves are listed from next_mark after the subscribed names,
     * with CHILDINFO (LIST) or \Noselect (LSUB); a subscribed name that
     * LIST answers carries CHILDINFO whenever a subscribed name lies under
     * it (RFC 5258 3.5 and section 5, example 9). */
    bool parents, collected;
    char **subs;
    size_t nsubs, capsubs;
    char **marked;
    size_t nmarked, capmarked, next_mark;
    /* LIST-STATUS: the items asked for; the selectable mailboxes the
     * step listed, each with where its line ends in out, get their
     * STATUS after their line once the list callback returned (it may not
     * read the index) */
    struct imap_status status;
    struct {
        size_t end;
        int64_t id;
    } * pend;
    size_t npend, cappend;
    struct buf lines;
    /* the shared namespace (imap_ns.c): the names the ACL snapshot lets
     * the user see, made on the loop before the first step (levels
     * "Shared", "Shared/<owner>" and the owners' levels above what is
     * shared), sorted bytewise and unique, listed after the own names */
    struct sh_entry {
        char *name;
        bool level, subscribed;
    } * sh;
    size_t nsh, capsh, next_sh;
    char sh_root[64]; /* the prefix without its last '/' */
    bool sh_marked;
    /* LIST-STATUS: the shared mailboxes' lines, held back to be sent
     * each with its STATUS once the steps ended (lstat_next) */
    struct lstat *ls;
};

/* ---- LIST-STATUS of shared mailboxes ----
 * Another account's mailbox is read through its owner's store, the
 * same path STATUS of a shared name takes (imap_shared_job), one after
 * the other on the loop after the list's steps: its LIST line, then its
 * STATUS when the user may read it (r; RFC 5819 section 2: a mailbox
 * that cannot be STATUSed gets no STATUS response, as one that is
 * \NoSelect), UNSEEN being the user's own \Seen where it is per user. */

struct lstat {
    struct {
        char *line; /* its LIST line */
        char *name; /* the client's name, resolved again on the loop */
    } * e;
    size_t n, cap, next;
    struct imap_status tmpl; /* the items asked for */
    const char *what;
};

struct lstat_job {
    struct imap_job j;
    struct lstat *c; /* owned while set */
    char name[STORAGE_MBOX_NAME_MAX + 1];
    char shown[IMAP_NAME_MAX + 1];
    struct imap_status st;
    int err;
};

static void lstat_free(struct lstat *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].line);
        free(c->e[i].name);
    }
    free(c->e);
    free(c);
}

/* Pool or loop: 0 or -1 out of memory. */
static int lstat_add(struct lstat *c, const char *line, size_t len, const char *name)
{
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 8;
        void *nv = realloc(c->e, ncap * sizeof(*c->e));
        if (!nv)
            return -1;
        c->e = nv;
        c->cap = ncap;
    }
    char *l = strndup(line, len), *n = strdup(name);
    if (!l || !n) {
        free(l);
        free(n);
        return -1;
    }
    c->e[c->n].line = l;
    c->e[c->n].name = n;
    c->n++;
    return 0;
}

static void lstat_job_free(struct imap_job *j)
{
    struct lstat_job *lj = (struct lstat_job *)j;
    lstat_free(lj->c);
    free(lj);
}

static void lstat_work(struct imap_job *j)
{
    struct lstat_job *lj = (struct lstat_job *)j;
    lj->err = imap_status_read(j->u, lj->name, 0, &lj->st);
}

static void lstat_next(struct imap_session *s, struct lstat *c);

static void lstat_done(struct imap_session *s, struct imap_job *j)
{
    struct lstat_job *lj = (struct lstat_job *)j;
    struct lstat *c = lj->c;

    lj->c = NULL;
    if (lj->err == 0) {
        lj->st.shown = lj->shown;
        imap_status_write(imap_outbuf(s), &lj->st);
    } else if (lj->err != STORAGE_E_NOMBOX) { /* none for one deleted meanwhile */
        const char *what = c->what;
        lstat_free(c);
        imap_finish_storage_err(s, lj->err, what);
        return;
    }
    lstat_next(s, c);
}

/* The held lines from c->next on, each with its STATUS; then the
 * tagged OK. Takes c. */
static void lstat_next(struct imap_session *s, struct lstat *c)
{
    while (c->next < c->n) {
        size_t i = c->next++;
        struct imap_mref ref;

        buf_str(imap_outbuf(s), c->e[i].line);
        /* the rights as they are now, from the snapshot */
        if (imap_ns_resolve(s, c->e[i].name, &ref) != 0 || !ref.shared || !imap_ns_visible(&ref) ||
            !(ref.rights & ACL_READ))
            continue;
        struct lstat_job *lj = calloc(1, sizeof(*lj));
        if (!lj) {
            lstat_free(c);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
        lj->c = c;
        lj->j.free_fn = lstat_job_free;
        memcpy(lj->name, ref.name, sizeof(lj->name));
        if (imap_ns_name(&ref, lj->shown, sizeof(lj->shown)) < 0) {
            lj->c = NULL;
            free(lj);
            continue;
        }
        lj->st = c->tmpl;
        lj->st.viewer = imap_seen_viewer(s, &ref);
        imap_shared_job(s, &ref, &lj->j, lstat_work, lstat_done);
        return;
    }
    const char *what = c->what;
    lstat_free(c);
    imap_finish(s, "OK", "%s completed.", what);
}

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
    imap_buf_mbox(b, m->name, l->utf8);
    if (childinfo)
        buf_str(b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
    buf_str(b, "\r\n");
#undef ATTR
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool in_names(char **v, size_t n, const char *name)
{
    return bsearch(&name, v, n, sizeof(*v), cmp_name) != NULL;
}

static int push_name(struct list_job *l, char ***v, size_t *n, size_t *cap, const char *name,
                     size_t len)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 32;
        char **nv = realloc(*v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        *v = nv;
        *cap = ncap;
    }
    if (!((*v)[*n] = imap_arena_strndup(&l->ar, name, len)))
        return -1;
    (*n)++;
    return 0;
}

/* Whether a subscribed name lies under `name`: the names under it ("name/...")
 * are consecutive in bytewise order, from the first one not below "name/". */
static bool has_sub_descendant(struct list_job *l, const char *name)
{
    size_t nl = strlen(name), lo = 0, hi = l->nsubs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(l->subs[mid], name, nl);
        if (c == 0)
            c = (unsigned char)l->subs[mid][nl] < '/' ? -1 : (l->subs[mid][nl] == '/' ? 0 : 1);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->nsubs && !strncmp(l->subs[lo], name, nl) && l->subs[lo][nl] == '/';
}

static int cmp_sh(const void *a, const void *b)
{
    return strcmp(((const struct sh_entry *)a)->name, ((const struct sh_entry *)b)->name);
}

static struct sh_entry *sh_find(struct list_job *l, const char *name)
{
    struct sh_entry key = {(char *)name, false, false};
    if (!l->nsh)
        return NULL;
    return bsearch(&key, l->sh, l->nsh, sizeof(*l->sh), cmp_sh);
}

/* Whether name lies in the shared namespace (the root or under it). */
static bool in_shared(const struct list_job *l, const char *name)
{
    size_t rl = strlen(l->sh_root);
    return rl && !strncmp(name, l->sh_root, rl) && (name[rl] == '\0' || name[rl] == '/');
}

/* Whether an entry lies under sh[i] (consecutive in bytewise order, from
 * the first not below "name/"): \HasChildren among what the user sees. */
static bool sh_has_children(struct list_job *l, size_t i)
{
    const char *name = l->sh[i].name;
    size_t nl = strlen(name), lo = i + 1, hi = l->nsh;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(l->sh[mid].name, name, nl);
        if (c == 0)
            c = (unsigned char)l->sh[mid].name[nl] < '/' ? -1
                                                         : (l->sh[mid].name[nl] == '/' ? 0 : 1);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->nsh && !strncmp(l->sh[lo].name, name, nl) && l->sh[lo].name[nl] == '/';
}

/* The line of a shared entry: never a special-use attribute (those are
 * the owner's), levels \Noselect. */
static void sh_line(struct list_job *l, size_t i, bool childinfo)
{
    const struct sh_entry *e = &l->sh[i];
    struct buf *b = &l->st.out;

    buf_printf(b, "* %s (", kinds[l->mode]);
    if (l->mode == MODE_LSUB) {
        if (e->level)
            buf_str(b, "\\Noselect");
    } else {
        buf_str(b, e->level ? "\\Noselect " : "");
        buf_str(b, sh_has_children(l, i) ? "\\HasChildren" : "\\HasNoChildren");
        if (l->mode == MODE_LIST && e->subscribed && (l->opts & (RET_SUBSCRIBED | SEL_SUBSCRIBED)))
            buf_str(b, " \\Subscribed");
    }
    buf_str(b, ") \"/\" ");
    imap_buf_mbox(b, e->name, l->utf8);
    if (childinfo)
        buf_str(b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
    buf_str(b, "\r\n");
}

static int mark_cb(void *arg, const struct storage_mbox *m)
{
    struct sh_entry *e = sh_find(arg, m->name);
    if (e)
        e->subscribed = true;
    return 0;
}

/* The shared entries after the own names: the subscriptions to them
 * marked first (they are kept by name in the user's own index). */
static void list_shared(struct imap_job *j, struct list_job *l)
{
    bool subs_only = l->mode == MODE_LSUB || (l->opts & SEL_SUBSCRIBED);

    if (!l->sh_marked && (subs_only || (l->opts & RET_SUBSCRIBED))) {
        char pat[sizeof(l->sh_root) + 2];
        snprintf(pat, sizeof(pat), "%s*", l->sh_root);
        if ((l->st.err = storage_mbox_list(j->u, pat, true, NULL, mark_cb, l)) != 0)
            return;
    }
    l->sh_marked = true;
    for (; l->next_sh < l->nsh && l->st.out.len < IMAP_STEP_BYTES; l->next_sh++) {
        const struct sh_entry *e = &l->sh[l->next_sh];
        if ((subs_only && !e->subscribed) || (l->opts & SEL_SPECIAL) || !match_any(l, e->name))
            continue;
        size_t at = l->st.out.len;
        sh_line(l, l->next_sh,
                l->parents && l->mode == MODE_LIST && has_sub_descendant(l, e->name));
        if (l->ls && !e->level && !l->st.out.oom) {
            /* held back, to be followed by its STATUS */
            if (lstat_add(l->ls, l->st.out.p + at, l->st.out.len - at, e->name) < 0) {
                l->st.err = STORAGE_E_NOMEM;
                return;
            }
            l->st.out.len = at;
        }
    }
}

static int collect_cb(void *arg, const struct storage_mbox *m)
{
    struct list_job *l = arg;

    if (push_name(l, &l->subs, &l->nsubs, &l->capsubs, m->name, strlen(m->name)) < 0) {
        l->oom = true;
        return 1;
    }
    return 0;
}

/* The parents to mark (RFC 5258 3.5, RFC 3501 6.3.9): each ancestor that
 * matches a pattern of a subscribed name that matches none. A subscribed
 * name that is listed itself says nothing more of its parents, so that
 * "*" adds no line and "%" stops at the first level. Each name costs its
 * depth in pattern matches; the marks are sorted and made unique once. */
/* Whether a parent of an unmatched subscribed name is answered: for LIST
 * (RECURSIVEMATCH) when a pattern matches it; for LSUB only through a
 * pattern with "%" (RFC 3501 6.3.9 states the rule for "the % wildcard":
 * `LSUB "" "foo"` with only foo/bar subscribed answers nothing). */
static bool parent_matches(struct list_job *l, const char *parent)
{
    for (size_t i = 0; i < l->npat; i++)
        if ((l->mode == MODE_LIST || strchr(l->pat[i], '%')) &&
            storage_pattern_match(l->pat[i], parent))
            return true;
    return false;
}

static void mark_parents(struct list_job *l)
{
    for (size_t i = 0; i < l->nsubs && !l->oom; i++) {
        const char *name = l->subs[i];
        if (match_any(l, name))
            continue;
        for (size_t k = strlen(name); k > 0; k--) {
            if (name[k - 1] != '/')
                continue;
            char parent[STORAGE_MBOX_NAME_MAX + 1];
            size_t pl = k - 1;
            if (pl >= sizeof(parent))
                continue;
            memcpy(parent, name, pl);
            parent[pl] = '\0';
            if (parent_matches(l, parent) &&
                push_name(l, &l->marked, &l->nmarked, &l->capmarked, parent, pl) < 0)
                l->oom = true;
        }
    }
    if (l->oom || !l->nmarked)
        return;
    qsort(l->marked, l->nmarked, sizeof(*l->marked), cmp_name);
    size_t w = 1;
    for (size_t i = 1; i < l->nmarked; i++)
        if (strcmp(l->marked[i], l->marked[w - 1]))
            l->marked[w++] = l->marked[i];
    l->nmarked = w;
}

/* The STATUS of mailbox id after its LIST line (RFC 5819 2); none for
 * a mailbox deleted meanwhile. */
static int status_line(struct imap_job *j, struct list_job *l, int64_t id)
{
    int err = imap_status_read(j->u, NULL, id, &l->status);
    if (err == STORAGE_E_NOMBOX)
        return 0;
    if (err == 0)
        imap_status_write(&l->st.out, &l->status);
    return err;
}

/* The lines list_cb wrote, each followed by its STATUS. */
static int status_lines(struct imap_job *j, struct list_job *l)
{
    size_t from = 0;
    int err = 0;

    if (!l->npend)
        return 0;
    buf_reset(&l->lines);
    buf_add(&l->lines, l->st.out.p, l->st.out.len);
    if (l->lines.oom)
        return STORAGE_E_NOMEM;
    buf_reset(&l->st.out);
    for (size_t i = 0; i < l->npend && !err; i++) {
        buf_add(&l->st.out, l->lines.p + from, l->pend[i].end - from);
        from = l->pend[i].end;
        err = status_line(j, l, l->pend[i].id);
    }
    if (!err)
        buf_add(&l->st.out, l->lines.p + from, l->lines.len - from);
    l->npend = 0;
    return err;
}

static int array_grow_pend(struct list_job *l)
{
    if (l->npend < l->cappend)
        return 0;
    size_t ncap = l->cappend ? l->cappend * 2 : 16;
    void *nv = realloc(l->pend, ncap * sizeof(*l->pend));
    if (!nv)
        return -1;
    l->pend = nv;
    l->cappend = ncap;
    return 0;
}

static int list_cb(void *arg, const struct storage_mbox *m)
{
    struct list_job *l = arg;

    snprintf(l->after, sizeof(l->after), "%s", m->name);
    l->started = true;
    /* the shared namespace is answered from the ACL (list_shared): own
     * names there are subscriptions, those to what the user may not see
     * listed as any subscription to a name that does not exist */
    if (in_shared(l, m->name) && (m->id || sh_find(l, m->name)))
        return 0;
    if (match_any(l, m->name) && (!(l->opts & SEL_SPECIAL) || m->special_use)) {
        list_line(l, m, l->parents && l->mode == MODE_LIST && has_sub_descendant(l, m->name));
        if ((l->opts & RET_STATUS) && m->id) {
            if (array_grow_pend(l) != 0) {
                l->oom = true;
                return 1;
            }
            l->pend[l->npend].end = l->st.out.len;
            l->pend[l->npend++].id = m->id;
        }
    }
    if (l->st.out.oom)
        return 1;
    /* this step has written enough: the next one goes on after this name */
    l->step_full = l->st.out.len >= IMAP_STEP_BYTES || l->npend >= LIST_STATUS_STEP;
    return l->step_full;
}

/* The marked parents that are not subscribed themselves: LIST gives each
 * with its own attributes (\NonExistent when it is no mailbox) and
 * CHILDINFO, LSUB with \Noselect alone (RFC 3501 6.3.9). */
static void list_parents(struct imap_job *j, struct list_job *l)
{
    for (; l->next_mark < l->nmarked && l->st.out.len < IMAP_STEP_BYTES; l->next_mark++) {
        const char *parent = l->marked[l->next_mark];
        struct storage_mbox m;

        if (in_names(l->subs, l->nsubs, parent))
            continue;
        struct sh_entry *e = sh_find(l, parent);
        if (e) {
            bool sub = e->subscribed;
            e->subscribed = false;
            sh_line(l, (size_t)(e - l->sh), l->mode == MODE_LIST);
            e->subscribed = sub;
            continue;
        }
        memset(&m, 0, sizeof(m));
        if (l->mode == MODE_LSUB || storage_mbox_get(j->u, parent, &m) != 0) {
            memset(&m, 0, sizeof(m));
            snprintf(m.name, sizeof(m.name), "%s", parent);
        }
        m.subscribed = false;
        list_line(l, &m, l->mode == MODE_LIST);
        if ((l->opts & RET_STATUS) && m.id && (l->st.err = status_line(j, l, m.id)) != 0)
            return;
    }
    if (l->next_mark >= l->nmarked)
        l->st.finished = true;
}

/* One step: the subscriptions first when parents are wanted, then names
 * from where the last step stopped, then the parents. */
static void list_work(struct imap_job *j)
{
    struct list_job *l = (struct list_job *)j;
    bool subs_only = l->mode == MODE_LSUB || (l->opts & SEL_SUBSCRIBED);

    buf_reset(&l->st.out);
    if (l->parents && !l->collected) {
        l->st.err = storage_mbox_list(j->u, "*", true, NULL, collect_cb, l);
        if (!l->st.err)
            mark_parents(l);
        if (!l->st.err && l->oom)
            l->st.err = STORAGE_E_NOMEM;
        if (l->st.err)
            return;
        l->collected = true;
    }
    if (!l->names_done) {
        l->step_full = false;
        l->st.err =
            storage_mbox_list(j->u, "*", subs_only, l->started ? l->after : NULL, list_cb, l);
        if (!l->st.err && !l->oom)
            l->st.err = status_lines(j, l);
        if (!l->st.err && (l->st.out.oom || l->oom))
            l->st.err = STORAGE_E_NOMEM;
        if (l->st.err || l->step_full)
            return;
        l->names_done = true;
    }
    if (l->next_sh < l->nsh) {
        list_shared(j, l);
        if (l->st.err || l->next_sh < l->nsh)
            return;
    }
    if (!l->parents) {
        l->st.finished = true;
        return;
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
    free(l->marked);
    free(l->pend);
    free(l->sh);
    buf_free(&l->lines);
    lstat_free(l->ls);
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
    if (l->ls && l->ls->n) {
        struct lstat *c = l->ls;
        l->ls = NULL;
        c->what = kinds[l->mode];
        lstat_next(s, c);
        return;
    }
    imap_finish(s, "OK", "%s completed.", kinds[l->mode]);
}

static int list_opts(struct imap_args *a, unsigned *opts, bool ret, unsigned *status_items,
                     bool rev2)
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
        else if (ret && imap_word_is(w, n, "STATUS") && !(*opts & RET_STATUS)) {
            if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
                (r = imap_status_items(a, rev2, status_items)) != IMAP_ARG_OK)
                return r;
            *opts |= RET_STATUS;
        } else
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

static int sh_push(struct list_job *l, const char *name, size_t len, bool level)
{
    if (l->nsh == l->capsh) {
        size_t ncap = l->capsh ? l->capsh * 2 : 16;
        struct sh_entry *nv = realloc(l->sh, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        l->sh = nv;
        l->capsh = ncap;
    }
    if (!(l->sh[l->nsh].name = imap_arena_strndup(&l->ar, name, len)))
        return -1;
    l->sh[l->nsh].level = level;
    l->sh[l->nsh].subscribed = false;
    l->nsh++;
    return 0;
}

struct sh_build {
    struct list_job *l;
    struct imap_session *s;
    struct sh_owner {
        int64_t id;
        char *address;
    } * owners;
    size_t nowners, cap;
    const char *prefix;
    const char *owner; /* the owner being walked */
    bool oom;
};

static void owner_cb(void *arg, int64_t owner, const char *address)
{
    struct sh_build *sb = arg;
    if (sb->oom || owner == sb->s->account_id)
        return;
    if (sb->nowners == sb->cap) {
        size_t ncap = sb->cap ? sb->cap * 2 : 8;
        struct sh_owner *nv = realloc(sb->owners, ncap * sizeof(*nv));
        if (!nv) {
            sb->oom = true;
            return;
        }
        sb->owners = nv;
        sb->cap = ncap;
    }
    sb->owners[sb->nowners].id = owner;
    if (!(sb->owners[sb->nowners].address =
              imap_arena_strndup(&sb->l->ar, address, strlen(address)))) {
        sb->oom = true;
        return;
    }
    sb->nowners++;
}

/* A mailbox the user may list, with each of its levels under the owner
 * (shared or not, they are levels to this user). */
static void mbox_cb(void *arg, const char *mailbox, unsigned rights)
{
    struct sh_build *sb = arg;
    char full[IMAP_NAME_MAX + 1];
    int n;

    if (sb->oom || !(rights & ACL_LOOKUP))
        return;
    n = snprintf(full, sizeof(full), "%s%s/%s", sb->prefix, sb->owner, mailbox);
    if (n < 0 || (size_t)n >= sizeof(full))
        return;
    size_t base = strlen(sb->prefix) + strlen(sb->owner) + 1;
    if (sh_push(sb->l, full, (size_t)n, false) < 0)
        sb->oom = true;
    for (size_t k = base; k < (size_t)n && !sb->oom; k++)
        if (full[k] == '/' && sh_push(sb->l, full, k, true) < 0)
            sb->oom = true;
}

/* Whether a pattern may match a name under the root: its part before the
 * first wildcard and the root agree as far as both go. */
static bool may_reach(const char *pat, const char *root)
{
    size_t lit = strcspn(pat, "*%"), rl = strlen(root);
    size_t n = lit < rl ? lit : rl;
    return !strncmp(pat, root, n) && (lit <= rl || pat[rl] == '/');
}

/* The shared entries the patterns may reach, from the ACL snapshot (loop
 * thread, no I/O). 0 or -1 out of memory. */
static int sh_build(struct imap_session *s, struct list_job *l)
{
    const char *prefix = imap_ns_prefix(s);
    size_t pl = strlen(prefix);
    const struct acl_snap *snap;
    struct sh_build sb = {l, s, NULL, 0, 0, prefix, NULL, false};
    bool reach = false;

    if (!pl || pl > sizeof(l->sh_root))
        return 0;
    memcpy(l->sh_root, prefix, pl - 1);
    l->sh_root[pl - 1] = '\0';
    for (size_t i = 0; i < l->npat; i++)
        reach = reach || may_reach(l->pat[i], l->sh_root);
    /* subscriptions and RECURSIVEMATCH parents may name shared entries
     * whatever the patterns */
    if (!reach && !l->parents && !(l->opts & SEL_SUBSCRIBED) && l->mode != MODE_LSUB)
        return 0;
    snap = auth_service_acl(conn_auth(s->c));
    if (!snap)
        return 0;
    acl_snap_owners(snap, s->account_id, s->user ? s->user : "", owner_cb, &sb);
    for (size_t i = 0; i < sb.nowners && !sb.oom; i++) {
        size_t before = l->nsh;
        sb.owner = sb.owners[i].address;
        acl_snap_mailboxes(snap, sb.owners[i].id, s->account_id, s->user ? s->user : "", mbox_cb,
                           &sb);
        if (l->nsh > before && !sb.oom) {
            char lv[IMAP_NAME_MAX + 1];
            int n = snprintf(lv, sizeof(lv), "%s%s", prefix, sb.owner);
            if (n > 0 && (size_t)n < sizeof(lv) && sh_push(l, lv, (size_t)n, true) < 0)
                sb.oom = true;
        }
    }
    free(sb.owners);
    if (sb.oom)
        return -1;
    if (!l->nsh)
        return 0;
    /* the prefix's levels ("Shared", or "Other" and "Other/Users") */
    for (size_t k = 0; k < pl; k++)
        if (prefix[k] == '/' && sh_push(l, prefix, k, true) < 0)
            return -1;
    qsort(l->sh, l->nsh, sizeof(*l->sh), cmp_sh);
    /* unique; a mailbox wins over a level of the same name */
    size_t w = 1;
    for (size_t i = 1; i < l->nsh; i++) {
        if (!strcmp(l->sh[i].name, l->sh[w - 1].name)) {
            l->sh[w - 1].level = l->sh[w - 1].level && l->sh[i].level;
            continue;
        }
        l->sh[w++] = l->sh[i];
    }
    l->nsh = w;
    return 0;
}

static void do_list(struct imap_session *s, struct imap_args *a, enum list_mode mode)
{
    char ref[IMAP_MBOX_ARG_MAX], pat[IMAP_MBOX_ARG_MAX];
    unsigned status_items = 0;
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
    l->utf8 = s->utf8;
    if (imap_args_sp(a) != IMAP_ARG_OK)
        r = IMAP_ARG_BAD;
    if (r == IMAP_ARG_OK && mode == MODE_LIST && imap_args_peek(a, '(')) {
        r = list_opts(a, &l->opts, false, NULL, s->rev2);
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
            r = list_opts(a, &l->opts, true, &status_items, s->rev2);
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
    if (l->opts & RET_STATUS) {
        imap_status_prepare(s, status_items, &l->status);
        if (!(l->ls = calloc(1, sizeof(*l->ls)))) {
            list_free(l);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
        l->ls->tmpl = l->status;
    }
    l->parents = mode == MODE_LSUB || (l->opts & SEL_RECURSIVE);
    if (sh_build(s, l) < 0) {
        list_free(l);
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
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
