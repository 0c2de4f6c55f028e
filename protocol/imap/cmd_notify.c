/* NOTIFY (RFC 5465): the events a session asked to hear of, announced
 * whenever it runs no command and during IDLE. The selected mailbox's
 * (SELECTED, SELECTED-DELAYED) go out through the selected mailbox's own
 * updates (EXISTS, EXPUNGE, FETCH FLAGS), with a FETCH of the attributes
 * MessageNew names for new messages; other mailboxes' as STATUS, computed
 * on the pool from the same storage events that drive IDLE, at most one
 * pending per mailbox however many events came, the first at once and the
 * next at most once per imap_notify_interval (a burst is a few STATUS);
 * MailboxName and SubscriptionChange as LIST, from a comparison of the
 * account's mailbox list and subscriptions before and after a change.
 * The session core and the selected mailbox reach this file only through
 * imap_notify_ops, set by the first NOTIFY. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

enum {
    NE_NEW = 1 << 0,
    NE_EXPUNGE = 1 << 1,
    NE_FLAGS = 1 << 2,
    NE_NAME = 1 << 3,
    NE_SUBS = 1 << 4,
};
#define NE_MESSAGE (NE_NEW | NE_EXPUNGE | NE_FLAGS)
#define NE_SUPPORTED "(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)"

enum nfilter { NF_INBOXES, NF_PERSONAL, NF_SUBSCRIBED, NF_SUBTREE, NF_MAILBOXES };

struct ngroup {
    enum nfilter f;
    unsigned ev;
    char **names; /* SUBTREE, MAILBOXES */
    size_t nnames;
};

/* A mailbox of the account as last listed. */
struct nmbox {
    int64_t id;
    char *name;
    bool subscribed, has_children;
    unsigned ev;  /* the events watched on it */
    bool pending; /* a STATUS to send */
    bool sent;    /* the values below were sent, at sent_at (loop ms) */
    uint64_t sent_at;
    uint32_t messages, uidnext, unseen;
    uint64_t highestmodseq;
};

struct imap_notify {
    unsigned sel_ev; /* SELECTED / SELECTED-DELAYED: its message events */
    bool sel_delayed, sel_given;
    char *fetch; /* MessageNew's fetch attributes, "(...)", or NULL */
    size_t fetch_len;
    struct ngroup *g;
    size_t ng;
    unsigned all_ev;  /* the groups' events together */
    struct nmbox *mb; /* sorted by id */
    size_t nmb;
    char **subs; /* subscribed names, sorted */
    size_t nsubs;
    bool relist;     /* the mailbox list or the subscriptions changed */
    size_t npending; /* mailboxes with pending set */
    /* MessageNew's FETCH: the selected mailbox it last looked at and
     * the highest UID it fetched there */
    int64_t f_mbox;
    uint32_t f_uidvalidity, f_max;
    struct imap_fetch *parked; /* its next step, once the client has read */
    /* in the list of sessions whose pending STATUS waits for
     * imap_notify_interval */
    struct imap_session *s;
    struct imap_notify *dnext, **dprev;
};

/* ---- STATUS held back by imap_notify_interval: one timer for all ---- */

static uv_timer_t defer_timer;
static bool defer_timer_init;
static struct imap_notify *defer_list;

static void defer_unlink(struct imap_notify *n)
{
    if (!n->dprev)
        return;
    *n->dprev = n->dnext;
    if (n->dnext)
        n->dnext->dprev = n->dprev;
    n->dnext = NULL;
    n->dprev = NULL;
}

static void notify_kick(struct imap_session *s);

static void on_defer_timer(uv_timer_t *t)
{
    struct imap_notify *list = defer_list;

    (void)t;
    /* the list is taken whole: a session kicked that must wait again goes
     * to a new one, and the timer starts again */
    defer_list = NULL;
    if (list)
        list->dprev = &list;
    while (list) {
        struct imap_notify *n = list;
        defer_unlink(n); /* list is now the next one */
        notify_kick(n->s);
        imap_flush(n->s);
    }
}

static void defer(struct imap_session *s, struct imap_notify *n, unsigned ms)
{
    uv_loop_t *loop = conn_loop(s->c);
    if (n->dprev || !loop)
        return;
    if (!defer_timer_init) {
        uv_timer_init(loop, &defer_timer);
        uv_unref((uv_handle_t *)&defer_timer);
        defer_timer_init = true;
    }
    n->s = s;
    n->dnext = defer_list;
    if (defer_list)
        defer_list->dprev = &n->dnext;
    n->dprev = &defer_list;
    defer_list = n;
    if (!uv_is_active((uv_handle_t *)&defer_timer))
        uv_timer_start(&defer_timer, on_defer_timer, ms ? ms : 1, 0);
}

static void mb_free(struct nmbox *mb, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(mb[i].name);
    free(mb);
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void notify_free(struct imap_notify *n)
{
    if (!n)
        return;
    defer_unlink(n);
    imap_fetch_unsolicited_free(n->parked);
    for (size_t i = 0; i < n->ng; i++)
        names_free(n->g[i].names, n->g[i].nnames);
    free(n->g);
    free(n->fetch);
    mb_free(n->mb, n->nmb);
    names_free(n->subs, n->nsubs);
    free(n);
}

/* The events groups g[0..ng) watch on a mailbox (not as the selected one). */
static unsigned mask_of(const struct ngroup *g, size_t ng, const char *name, bool subscribed)
{
    unsigned ev = 0;
    for (size_t i = 0; i < ng; i++) {
        bool in = false;
        switch (g[i].f) {
        case NF_INBOXES: /* LMTP may deliver to any folder (a detail): all of
                          * them, as RFC 5465 6.3 says then */
        case NF_PERSONAL:
            in = true;
            break;
        case NF_SUBSCRIBED:
            in = subscribed;
            break;
        case NF_SUBTREE:
            for (size_t k = 0; k < g[i].nnames && !in; k++) {
                size_t l = strlen(g[i].names[k]);
                in = !strncmp(name, g[i].names[k], l) && (name[l] == 0 || name[l] == '/');
            }
            break;
        case NF_MAILBOXES:
            for (size_t k = 0; k < g[i].nnames && !in; k++)
                in = !strcmp(name, g[i].names[k]);
            break;
        }
        if (in)
            ev |= g[i].ev;
    }
    return ev;
}

static int cmp_mb(const void *a, const void *b)
{
    const struct nmbox *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static struct nmbox *mb_find(struct nmbox *mb, size_t n, int64_t id)
{
    struct nmbox key = {.id = id};
    return n ? bsearch(&key, mb, n, sizeof(*mb), cmp_mb) : NULL;
}

static bool subs_has(char **v, size_t n, const char *name)
{
    return n && bsearch(&name, v, n, sizeof(*v), cmp_str) != NULL;
}

/* ---- the pool part: the mailbox list, and STATUS ---- */

struct nstat {
    int64_t id;
    int err;
    uint32_t messages, uidnext, unseen, uidvalidity;
    uint64_t highestmodseq;
};

struct notify_job {
    struct imap_job j;
    /* NOTIFY SET: the new settings (owned by the job until its done),
     * STATUS of each mailbox they watch but sel_id */
    struct imap_notify *set;
    bool set_status;
    int64_t sel_id;
    /* the mailbox list to be read again */
    bool relist;
    /* STATUS of these (events) */
    int64_t *ids;
    size_t nids;
    /* results */
    int err;
    struct nmbox *mb;
    size_t nmb, capmb;
    char **subs;
    size_t nsubs, capsubs;
    struct nstat *st;
    size_t nst;
};

static int list_cb(void *arg, const struct storage_mbox *m)
{
    struct notify_job *nj = arg;
    if (nj->nmb == nj->capmb) {
        size_t nc = nj->capmb ? nj->capmb * 2 : 32;
        struct nmbox *v = realloc(nj->mb, nc * sizeof(*v));
        if (!v)
            return 1;
        nj->mb = v;
        nj->capmb = nc;
    }
    struct nmbox *e = &nj->mb[nj->nmb];
    memset(e, 0, sizeof(*e));
    if (!(e->name = strdup(m->name)))
        return 1;
    e->id = m->id;
    e->subscribed = m->subscribed;
    e->has_children = m->has_children;
    nj->nmb++;
    return 0;
}

static int subs_cb(void *arg, const struct storage_mbox *m)
{
    struct notify_job *nj = arg;
    if (nj->nsubs == nj->capsubs) {
        size_t nc = nj->capsubs ? nj->capsubs * 2 : 16;
        char **v = realloc(nj->subs, nc * sizeof(*v));
        if (!v)
            return 1;
        nj->subs = v;
        nj->capsubs = nc;
    }
    if (!(nj->subs[nj->nsubs] = strdup(m->name)))
        return 1;
    nj->nsubs++;
    return 0;
}

static void stat_one(struct storage_user *u, struct nstat *st)
{
    struct storage_mbox_info info;
    st->err = storage_mbox_info(u, NULL, st->id, false, &info);
    if (st->err == 0) {
        st->messages = info.messages;
        st->unseen = info.unseen;
        st->uidnext = info.mb.uidnext;
        st->uidvalidity = info.mb.uidvalidity;
        st->highestmodseq = info.mb.highestmodseq;
    }
    storage_mbox_info_free(&info);
}

static void notify_work(struct imap_job *j)
{
    struct notify_job *nj = (struct notify_job *)j;

    if (nj->relist) {
        int rc = storage_mbox_list(j->u, "*", false, NULL, list_cb, nj);
        if (rc == 0)
            rc = storage_mbox_list(j->u, "*", true, NULL, subs_cb, nj);
        if (rc != 0 || (nj->nmb && nj->mb[nj->nmb - 1].name == NULL)) {
            nj->err = rc ? rc : STORAGE_E_NOMEM;
            return;
        }
        if (nj->nmb > 1)
            qsort(nj->mb, nj->nmb, sizeof(*nj->mb), cmp_mb);
        if (nj->nsubs > 1)
            qsort(nj->subs, nj->nsubs, sizeof(*nj->subs), cmp_str);
    }
    if (nj->set && nj->set_status) {
        /* the job owns the new settings: their mailboxes are known here */
        size_t k = 0;
        if (nj->nmb && !(nj->ids = malloc(nj->nmb * sizeof(*nj->ids)))) {
            nj->err = STORAGE_E_NOMEM;
            return;
        }
        for (size_t i = 0; i < nj->nmb; i++)
            if (nj->mb[i].id != nj->sel_id &&
                (mask_of(nj->set->g, nj->set->ng, nj->mb[i].name, nj->mb[i].subscribed) &
                 NE_MESSAGE))
                nj->ids[k++] = nj->mb[i].id;
        nj->nids = k;
    }
    if (nj->nids && !(nj->st = calloc(nj->nids, sizeof(*nj->st)))) {
        nj->err = STORAGE_E_NOMEM;
        return;
    }
    for (size_t i = 0; i < nj->nids; i++) {
        nj->st[i].id = nj->ids[i];
        stat_one(j->u, &nj->st[i]);
    }
    nj->nst = nj->nids;
}

static void notify_job_free(struct imap_job *j)
{
    struct notify_job *nj = (struct notify_job *)j;
    notify_free(nj->set);
    free(nj->ids);
    mb_free(nj->mb, nj->nmb);
    names_free(nj->subs, nj->nsubs);
    free(nj->st);
    free(nj);
}

/* ---- announcing, on the loop ---- */

static void list_line(struct imap_session *s, const char *attrs, const char *name,
                      const char *oldname)
{
    struct buf *b = imap_outbuf(s);
    buf_printf(b, "* LIST (%s) \"/\" ", attrs);
    imap_buf_mbox(b, name, s->utf8);
    if (oldname) {
        buf_str(b, " (\"OLDNAME\" (");
        imap_buf_mbox(b, oldname, s->utf8);
        buf_str(b, "))");
    }
    buf_str(b, "\r\n");
}

static void attrs_of(char *out, size_t cap, const struct nmbox *e)
{
    snprintf(out, cap, "%s%s", e->has_children ? "\\HasChildren" : "\\HasNoChildren",
             e->subscribed ? " \\Subscribed" : "");
}

/* Whether the renamed e is a child of another mailbox renamed with it
 * (RFC 5465 5.4: no event of its own). */
static bool renamed_with_parent(const struct imap_notify *n, const struct nmbox *nw, size_t nnw,
                                const char *oldname)
{
    for (size_t i = 0; i < nnw; i++) {
        const struct nmbox *o = mb_find(n->mb, n->nmb, nw[i].id);
        if (!o || !strcmp(o->name, nw[i].name))
            continue;
        size_t l = strlen(o->name);
        if (!strncmp(oldname, o->name, l) && oldname[l] == '/')
            return true;
    }
    return false;
}

/* n takes the list nj read in place of its own. */
static void take_list(struct imap_notify *n, struct notify_job *nj)
{
    mb_free(n->mb, n->nmb);
    names_free(n->subs, n->nsubs);
    n->mb = nj->mb;
    n->nmb = nj->nmb;
    n->subs = nj->subs;
    n->nsubs = nj->nsubs;
    nj->mb = NULL;
    nj->nmb = 0;
    nj->subs = NULL;
    nj->nsubs = 0;
}

/* The mailbox list read again: MailboxName and SubscriptionChange
 * announced from the differences, the new list installed (each
 * mailbox's events as the groups say, its pending STATUS kept). */
static void relisted(struct imap_session *s, struct notify_job *nj)
{
    struct imap_notify *n = s->notify;
    char attrs[64];

    for (size_t i = 0; i < nj->nmb; i++) {
        struct nmbox *e = &nj->mb[i];
        const struct nmbox *o = mb_find(n->mb, n->nmb, e->id);
        e->ev = mask_of(n->g, n->ng, e->name, e->subscribed);
        if (o) {
            e->pending = o->pending;
            e->sent = o->sent;
            e->sent_at = o->sent_at;
            e->messages = o->messages;
            e->uidnext = o->uidnext;
            e->unseen = o->unseen;
            e->highestmodseq = o->highestmodseq;
        }
        if (!((e->ev | (o ? o->ev : 0)) & NE_NAME))
            continue;
        if (!o) {
            attrs_of(attrs, sizeof(attrs), e);
            list_line(s, attrs, e->name, NULL);
        } else if (strcmp(o->name, e->name) && !renamed_with_parent(n, nj->mb, nj->nmb, o->name)) {
            attrs_of(attrs, sizeof(attrs), e);
            list_line(s, attrs, e->name, o->name);
        }
    }
    for (size_t i = 0; i < n->nmb; i++) {
        const struct nmbox *o = &n->mb[i];
        if (!mb_find(nj->mb, nj->nmb, o->id) && (o->ev & NE_NAME))
            list_line(s, "\\NonExistent", o->name, NULL);
    }
    /* SubscriptionChange: names subscribed or no longer */
    for (size_t i = 0; i < nj->nsubs; i++)
        if (!subs_has(n->subs, n->nsubs, nj->subs[i]) &&
            (mask_of(n->g, n->ng, nj->subs[i], true) & NE_SUBS))
            list_line(s, "\\Subscribed", nj->subs[i], NULL);
    for (size_t i = 0; i < n->nsubs; i++)
        if (!subs_has(nj->subs, nj->nsubs, n->subs[i]) &&
            (mask_of(n->g, n->ng, n->subs[i], true) & NE_SUBS))
            list_line(s, "", n->subs[i], NULL);
    take_list(n, nj);
    n->npending = 0;
    for (size_t i = 0; i < n->nmb; i++)
        n->npending += n->mb[i].pending;
}

/* "* STATUS name (...)" of st, unless it says what was said last. */
static void status_line(struct imap_session *s, struct nmbox *e, const struct nstat *st,
                        bool initial)
{
    if (!initial && e->sent && e->messages == st->messages && e->uidnext == st->uidnext &&
        e->unseen == st->unseen && (!s->condstore || e->highestmodseq == st->highestmodseq))
        return;
    struct buf *b = imap_outbuf(s);
    buf_str(b, "* STATUS ");
    imap_buf_mbox(b, e->name, s->utf8);
    buf_printf(b, " (MESSAGES %u UIDNEXT %u UNSEEN %u", st->messages, st->uidnext, st->unseen);
    if (initial || s->condstore)
        buf_printf(b, " UIDVALIDITY %u", st->uidvalidity);
    if (s->condstore)
        buf_printf(b, " HIGHESTMODSEQ %llu", (unsigned long long)st->highestmodseq);
    buf_str(b, ")\r\n");
    e->sent = true;
    e->sent_at = conn_loop(s->c) ? uv_now(conn_loop(s->c)) : 0;
    e->messages = st->messages;
    e->uidnext = st->uidnext;
    e->unseen = st->unseen;
    e->highestmodseq = st->highestmodseq;
}

static void statuses(struct imap_session *s, struct notify_job *nj, bool initial)
{
    struct imap_notify *n = s->notify;
    int64_t sel_id = s->state == IMAP_SELECTED && s->sel && !s->sel->mu ? s->sel->id : 0;

    for (size_t i = 0; i < nj->nst; i++) {
        struct nmbox *e = mb_find(n->mb, n->nmb, nj->st[i].id);
        if (!e || nj->st[i].err || e->id == sel_id || !(e->ev & NE_MESSAGE))
            continue;
        status_line(s, e, &nj->st[i], initial);
    }
}

static void event_done(struct imap_session *s, struct imap_job *j)
{
    struct notify_job *nj = (struct notify_job *)j;

    /* on an error what it was to tell is dropped, not tried again at
     * once (the next event of those mailboxes brings it back) */
    if (s->notify && !nj->err) {
        if (nj->relist)
            relisted(s, nj);
        statuses(s, nj, false);
    }
    imap_resume(s);
}

/* Starts the job announcing what is pending for other mailboxes. */
static void start_event_job(struct imap_session *s)
{
    struct imap_notify *n = s->notify;
    unsigned ms = conn_conf(s->c)->imap_notify_interval_ms;
    uint64_t now = conn_loop(s->c) ? uv_now(conn_loop(s->c)) : 0;
    struct notify_job *nj;
    size_t k = 0, due = 0;

    /* a mailbox announced less than imap_notify_interval ago waits for
     * the rest of it, its changes meanwhile told together */
    for (size_t i = 0; i < n->nmb; i++)
        if (n->mb[i].pending && (!n->mb[i].sent || now - n->mb[i].sent_at >= ms))
            due++;
    if (due < n->npending)
        defer(s, n, ms);
    if (!due && !n->relist)
        return;
    if (!(nj = calloc(1, sizeof(*nj))))
        return;
    if (due && !(nj->ids = malloc(due * sizeof(*nj->ids)))) {
        free(nj);
        return;
    }
    for (size_t i = 0; i < n->nmb && k < due; i++)
        if (n->mb[i].pending && (!n->mb[i].sent || now - n->mb[i].sent_at >= ms)) {
            nj->ids[k++] = n->mb[i].id;
            n->mb[i].pending = false;
        }
    nj->nids = k;
    n->npending -= k;
    nj->relist = n->relist;
    n->relist = false;
    nj->j.free_fn = notify_job_free;
    (void)imap_job_start(s, &nj->j, notify_work, event_done);
}

/* ---- when the session may be told ---- */

/* Whether s runs no command (or is in IDLE): notifications may go out. */
static bool at_rest(struct imap_session *s)
{
    if (s->job || s->wait != IMAP_WAIT_NONE || s->in_loop || s->state == IMAP_LOGOUT ||
        s->state == IMAP_NOTAUTH || conn_closing(s->c) || imap_out_pending(s) >= CONN_WRITE_HIGH)
        return false;
    if (s->idling)
        return true;
    return !s->cont && s->input == IMAP_IN_COMMAND && s->cmd.len == 0 && !s->tagline;
}

static void after_job(struct imap_session *s)
{
    imap_resume(s);
}

/* Whether the selected mailbox has changes SELECTED asks to hear of now. */
static bool sel_wanted(struct imap_session *s)
{
    struct imap_notify *n = s->notify;
    struct imap_sel *sel = s->sel;

    if (!n->sel_ev || s->state != IMAP_SELECTED || !sel || s->idling)
        return false; /* IDLE announces them itself */
    return sel->pend_new.n || (!n->sel_delayed && sel->pend_exp.n) ||
           ((n->sel_ev & NE_FLAGS) && sel->flags_dirty) || sel->resync;
}

static void notify_kick(struct imap_session *s)
{
    struct imap_notify *n = s->notify;

    if (!n || !at_rest(s))
        return;
    if (n->parked) {
        struct imap_fetch *f = n->parked;
        n->parked = NULL;
        if (imap_fetch_unsolicited_resume(s, f) == 0)
            return;
    }
    if (sel_wanted(s)) {
        /* the selected mailbox's updates, EXPUNGE held back by
         * SELECTED-DELAYED until a command allows it */
        bool job = imap_updates_need_job(s);
        imap_updates(s, !n->sel_delayed, job ? after_job : NULL);
        imap_flush(s);
        if (job || !at_rest(s))
            return;
    }
    struct imap_sel *sel = s->state == IMAP_SELECTED ? s->sel : NULL;
    if (n->fetch && sel && (n->sel_ev & NE_NEW)) {
        if (n->f_mbox != sel->id || n->f_uidvalidity != sel->uidvalidity) {
            n->f_mbox = sel->id;
            n->f_uidvalidity = sel->uidvalidity;
            n->f_max = uidmap_max(&sel->uids);
        }
        uint32_t max = uidmap_max(&sel->uids);
        if (max > n->f_max) {
            size_t from = uidmap_lower_bound(&sel->uids, n->f_max + 1);
            n->f_max = max;
            if (imap_fetch_unsolicited(s, n->fetch, n->fetch_len, from, after_job, &n->parked) == 0)
                return;
        }
    }
    if (n->npending || n->relist)
        start_event_job(s);
}

static void notify_event(struct imap_session *s, const struct storage_event *ev)
{
    struct imap_notify *n = s->notify;
    struct nmbox *e;

    if (!n)
        return;
    if (ev->type == STORAGE_EV_MAILBOX) {
        n->relist = true;
        return;
    }
    if (s->state == IMAP_SELECTED && s->sel && !s->sel->mu && ev->mbox == s->sel->id)
        return; /* SELECTED's, through the selected mailbox */
    if (!(e = mb_find(n->mb, n->nmb, ev->mbox)) || e->pending)
        return;
    unsigned want = ev->type == STORAGE_EV_NEW       ? NE_NEW
                    : ev->type == STORAGE_EV_EXPUNGE ? NE_EXPUNGE
                    : ev->type == STORAGE_EV_FLAGS   ? NE_FLAGS
                                                     : NE_MESSAGE;
    if (e->ev & want) {
        e->pending = true;
        n->npending++;
    }
}

static void notify_end(struct imap_session *s)
{
    notify_free(s->notify);
    s->notify = NULL;
}

static const struct imap_notify_ops notify_ops = {
    .event = notify_event,
    .kick = notify_kick,
    .free = notify_end,
};

/* ---- the command ---- */

static void set_done(struct imap_session *s, struct imap_job *j)
{
    struct notify_job *nj = (struct notify_job *)j;

    if (nj->err) {
        imap_finish_storage_err(s, nj->err, "NOTIFY");
        return;
    }
    notify_free(s->notify);
    s->notify = nj->set;
    s->notify_ops = &notify_ops;
    nj->set = NULL;
    struct imap_notify *n = s->notify;
    take_list(n, nj);
    for (size_t i = 0; i < n->nmb; i++)
        n->mb[i].ev = mask_of(n->g, n->ng, n->mb[i].name, n->mb[i].subscribed);
    if (s->state == IMAP_SELECTED && s->sel) {
        n->f_mbox = s->sel->id;
        n->f_uidvalidity = s->sel->uidvalidity;
        n->f_max = uidmap_max(&s->sel->uids);
    }
    statuses(s, nj, true);
    /* RFC 5465 3.1: an implicit NOOP (imap_finish announces) */
    imap_finish(s, "OK", "NOTIFY completed.");
}

/* Parses "(filter events)" into g (or the selected part of n).
 * IMAP_ARG_OK, or an error with *err. *unsupported is set for an event
 * this server does not offer. */
static int parse_group(struct imap_args *a, struct imap_arena *ar, struct imap_notify *n,
                       struct ngroup *g, bool *is_sel, bool *unsupported, const char **err)
{
    const char *w;
    size_t wl;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    unsigned ev = 0;
    const char *fetch = NULL;
    size_t fetch_len = 0;
    int r;

    *err = "Usage: NOTIFY SET [STATUS] (filter events) ...";
    if ((r = imap_args_open(a)) != IMAP_ARG_OK || (r = imap_args_atom(a, &w, &wl)) != IMAP_ARG_OK)
        return r;
    *is_sel = false;
    if (imap_word_is(w, wl, "SELECTED") || imap_word_is(w, wl, "SELECTED-DELAYED")) {
        if (n->sel_given) {
            *err = "Only one of SELECTED and SELECTED-DELAYED.";
            return IMAP_ARG_BAD;
        }
        *is_sel = true;
        n->sel_given = true;
        n->sel_delayed = wl > 8;
    } else if (imap_word_is(w, wl, "INBOXES")) {
        g->f = NF_INBOXES;
    } else if (imap_word_is(w, wl, "PERSONAL")) {
        g->f = NF_PERSONAL;
    } else if (imap_word_is(w, wl, "SUBSCRIBED")) {
        g->f = NF_SUBSCRIBED;
    } else if (imap_word_is(w, wl, "SUBTREE") || imap_word_is(w, wl, "MAILBOXES")) {
        g->f = imap_word_is(w, wl, "SUBTREE") ? NF_SUBTREE : NF_MAILBOXES;
        if ((r = imap_args_sp(a)) != IMAP_ARG_OK)
            return r;
        bool many = imap_args_peek(a, '(');
        if (many && (r = imap_args_open(a)) != IMAP_ARG_OK)
            return r;
        do {
            if (g->nnames && (r = imap_args_sp(a)) != IMAP_ARG_OK)
                return r;
            if ((r = imap_args_mailbox(a, name, sizeof(name))) != IMAP_ARG_OK)
                return r;
            char **v = realloc(g->names, (g->nnames + 1) * sizeof(*v));
            if (!v)
                return IMAP_ARG_NOMEM;
            g->names = v;
            if (!(v[g->nnames] = strdup(name)))
                return IMAP_ARG_NOMEM;
            g->nnames++;
        } while (many && !imap_args_peek(a, ')'));
        if (many && (r = imap_args_close(a)) != IMAP_ARG_OK)
            return r;
    } else {
        *err = "Unknown NOTIFY mailbox filter.";
        return IMAP_ARG_BAD;
    }
    if ((r = imap_args_sp(a)) != IMAP_ARG_OK)
        return r;
    if (!imap_args_peek(a, '(')) {
        if ((r = imap_args_atom(a, &w, &wl)) != IMAP_ARG_OK || !imap_word_is(w, wl, "NONE"))
            return IMAP_ARG_BAD;
    } else {
        if ((r = imap_args_open(a)) != IMAP_ARG_OK)
            return r;
        for (bool first = true; !imap_args_peek(a, ')'); first = false) {
            if (!first && (r = imap_args_sp(a)) != IMAP_ARG_OK)
                return r;
            if ((r = imap_args_atom(a, &w, &wl)) != IMAP_ARG_OK)
                return r;
            if (imap_word_is(w, wl, "MessageNew")) {
                ev |= NE_NEW;
                if (imap_args_peek(a, ' ') && a->p + 1 < a->end && a->p[1] == '(') {
                    /* the fetch attributes, checked now, kept as written */
                    struct imap_fetch_spec spec;
                    const char *ferr;
                    if ((r = imap_args_sp(a)) != IMAP_ARG_OK)
                        return r;
                    fetch = a->p;
                    if ((r = imap_fetch_parse(a, ar, &spec, &ferr)) != IMAP_ARG_OK) {
                        *err = ferr;
                        return r;
                    }
                    fetch_len = (size_t)(a->p - fetch);
                }
            } else if (imap_word_is(w, wl, "MessageExpunge")) {
                ev |= NE_EXPUNGE;
            } else if (imap_word_is(w, wl, "FlagChange")) {
                ev |= NE_FLAGS;
            } else if (imap_word_is(w, wl, "MailboxName")) {
                ev |= NE_NAME;
            } else if (imap_word_is(w, wl, "SubscriptionChange")) {
                ev |= NE_SUBS;
            } else {
                *unsupported = true; /* AnnotationChange, METADATA's, others */
            }
        }
        if ((r = imap_args_close(a)) != IMAP_ARG_OK)
            return r;
    }
    if ((r = imap_args_close(a)) != IMAP_ARG_OK)
        return r;
    /* RFC 5465 5: MessageNew and MessageExpunge together, FlagChange with
     * both; 6.1: only message events for the selected mailbox; 8: fetch
     * attributes only there */
    if (!(ev & NE_NEW) != !(ev & NE_EXPUNGE)) {
        *err = "MessageNew and MessageExpunge go together.";
        return IMAP_ARG_BAD;
    }
    if ((ev & NE_FLAGS) && !(ev & NE_NEW)) {
        *err = "FlagChange needs MessageNew and MessageExpunge.";
        return IMAP_ARG_BAD;
    }
    if (*is_sel && (ev & ~NE_MESSAGE)) {
        *err = "Only message events for SELECTED.";
        return IMAP_ARG_BAD;
    }
    if (fetch && !*is_sel) {
        *err = "Fetch attributes only for SELECTED.";
        return IMAP_ARG_BAD;
    }
    if (*is_sel) {
        n->sel_ev = ev;
        if (fetch) {
            if (!(n->fetch = malloc(fetch_len)))
                return IMAP_ARG_NOMEM;
            memcpy(n->fetch, fetch, fetch_len);
            n->fetch_len = fetch_len;
        }
    } else {
        g->ev = ev;
    }
    return IMAP_ARG_OK;
}

void imap_cmd_notify(struct imap_session *s, struct imap_args *a)
{
    const char *w, *err = "Usage: NOTIFY SET [STATUS] (filter events) ... or NOTIFY NONE";
    size_t wl;
    bool status = false, unsupported = false;
    struct imap_arena ar = {0};
    int r;

    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &w, &wl) != IMAP_ARG_OK) {
        imap_bad(s, "%s", err);
        return;
    }
    if (imap_word_is(w, wl, "NONE")) {
        if (!imap_args_at_end(a)) {
            imap_bad(s, "%s", err);
            return;
        }
        notify_free(s->notify);
        s->notify = NULL;
        imap_finish(s, "OK", "NOTIFY completed.");
        return;
    }
    if (!imap_word_is(w, wl, "SET") || imap_args_sp(a) != IMAP_ARG_OK) {
        imap_bad(s, "%s", err);
        return;
    }
    if (!imap_args_peek(a, '(')) {
        if (imap_args_atom(a, &w, &wl) != IMAP_ARG_OK || !imap_word_is(w, wl, "STATUS") ||
            imap_args_sp(a) != IMAP_ARG_OK) {
            imap_bad(s, "%s", err);
            return;
        }
        status = true;
    }
    struct imap_notify *n = calloc(1, sizeof(*n));
    if (!n) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    r = IMAP_ARG_OK;
    for (size_t k = 0;; k++) {
        struct ngroup g = {0};
        bool is_sel = false;
        if (k && (imap_args_at_end(a) || (r = imap_args_sp(a)) != IMAP_ARG_OK))
            break;
        r = parse_group(a, &ar, n, &g, &is_sel, &unsupported, &err);
        if (r == IMAP_ARG_OK && !is_sel) {
            struct ngroup *v = realloc(n->g, (n->ng + 1) * sizeof(*v));
            if (v) {
                n->g = v;
                n->g[n->ng++] = g;
                n->all_ev |= g.ev;
                continue;
            }
            r = IMAP_ARG_NOMEM;
        }
        names_free(g.names, g.nnames);
        if (r != IMAP_ARG_OK)
            break;
    }
    imap_arena_free(&ar);
    if (r == IMAP_ARG_NOMEM) {
        notify_free(n);
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    if (r != IMAP_ARG_OK) {
        notify_free(n);
        if (r == IMAP_ARG_DEEP || r == IMAP_ARG_BADNAME)
            imap_bad_arg(s, r, "NOTIFY SET [STATUS] (filter events) ...");
        else
            imap_bad(s, "%s", err);
        return;
    }
    if (unsupported) {
        notify_free(n);
        imap_finish(s, "NO", "[BADEVENT " NE_SUPPORTED "] Unsupported event.");
        return;
    }
    struct notify_job *nj = calloc(1, sizeof(*nj));
    if (!nj) {
        notify_free(n);
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    nj->set = n;
    nj->set_status = status;
    nj->sel_id = s->state == IMAP_SELECTED && s->sel && !s->sel->mu ? s->sel->id : 0;
    nj->relist = true;
    nj->j.free_fn = notify_job_free;
    imap_cmd_job(s, &nj->j, notify_work, set_done);
}
