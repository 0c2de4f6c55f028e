/* CONTEXT=SEARCH (RFC 5267 section 4): a SEARCH with RETURN (UPDATE)
 * leaves a context behind, its criteria (sets already UIDs) and the UIDs
 * it found; while the mailbox stays selected the session tells the client
 * how the result changes, as ESEARCH ADDTO and REMOVEFROM. Expunged
 * messages leave a result on the loop, before their EXPUNGE (4.3.4). New
 * messages and changed flags are evaluated on the pool, with the changes
 * the update job reads anyway: only the messages whose modseq moved since
 * the context last looked are searched, never the whole mailbox, and the
 * ADDTO/REMOVEFROM follow the EXISTS and FETCH they come from (4.3.3).
 * A SORT's context (CONTEXT=SORT) also keeps its result in sort order;
 * its updates name positions, and new matches are placed by sorting them
 * with the result on the pool (sort keys never change, so the order of
 * what stays holds). A context ends with CANCELUPDATE or when the mailbox
 * is no longer selected; imap_max_search_updates caps the live ones per
 * session. */
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

static const struct imap_ctx_ops ctx_ops;

static void ctx_unref(struct imap_ctx *c)
{
    if (!c || --c->refs)
        return;
    imap_arena_free(&c->ar);
    uidarr_free(&c->res);
    uidarr_free(&c->order);
    free(c);
}

struct imap_ctx *imap_ctx_find(const struct imap_sel *sel, const char *tag)
{
    for (struct imap_ctx *c = sel ? sel->ctx : NULL; c; c = c->next)
        if (!strcmp(c->tag, tag))
            return c;
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int imap_ctx_add_sort(struct imap_session *s, struct imap_arena *ar, struct storage_search *q,
                      const struct storage_sort_crit *crit, size_t ncrit, const uint32_t *uids,
                      size_t n, uint64_t since)
{
    struct imap_sel *sel = s->sel;
    struct imap_ctx *c;
    bool oom = false;

    if (!sel)
        return -1;
    if (sel->nctx >= conn_conf(s->c)->imap_max_search_updates)
        return 1;
    if (!(c = calloc(1, sizeof(*c))))
        return -1;
    for (size_t i = 0; i < n && !oom; i++)
        if (imap_sel_seq(sel, uids[i]))
            oom =
                uidarr_push(&c->res, uids[i]) < 0 || (crit && uidarr_push(&c->order, uids[i]) < 0);
    if (oom) {
        uidarr_free(&c->res);
        uidarr_free(&c->order);
        free(c);
        return -1;
    }
    if (crit) {
        /* res is a set: ascending; order keeps the sort */
        qsort(c->res.v, c->res.n, sizeof(uint32_t), cmp_u32);
        c->sort = true;
        c->ncrit = ncrit < IMAP_SORT_MAX_KEYS ? ncrit : IMAP_SORT_MAX_KEYS;
        memcpy(c->crit, crit, c->ncrit * sizeof(*crit));
    }
    memcpy(c->tag, s->tag, sizeof(c->tag));
    c->uid = s->uid_cmd;
    c->ar = *ar; /* the criteria live in the arena: it moves here */
    memset(ar, 0, sizeof(*ar));
    c->q = q;
    c->since = since;
    c->refs = 1;
    c->live = true;
    c->next = sel->ctx;
    sel->ctx = c;
    sel->nctx++;
    sel->ctx_ops = &ctx_ops;
    return 0;
}

int imap_ctx_add(struct imap_session *s, struct imap_arena *ar, struct storage_search *q,
                 const uint32_t *uids, size_t n, uint64_t since)
{
    return imap_ctx_add_sort(s, ar, q, NULL, 0, uids, n, since);
}

void imap_noupdate(struct imap_session *s)
{
    struct buf *b = imap_outbuf(s);
    buf_str(b, "* NO [NOUPDATE ");
    buf_imap_string(b, s->tag, strlen(s->tag));
    buf_str(b, "] Too many search contexts.\r\n");
}

void imap_ctx_cancel(struct imap_sel *sel, struct imap_ctx *c)
{
    for (struct imap_ctx **p = &sel->ctx; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            sel->nctx--;
            c->live = false;
            ctx_unref(c);
            return;
        }
}

static void imap_ctx_free_all(struct imap_sel *sel)
{
    while (sel->ctx)
        imap_ctx_cancel(sel, sel->ctx);
}

/* "* ESEARCH (TAG "t") [UID]" */
static void write_head(struct imap_session *s, const struct imap_ctx *c)
{
    struct buf *b = imap_outbuf(s);
    buf_str(b, "* ESEARCH (TAG ");
    buf_imap_string(b, c->tag, strlen(c->tag));
    buf_addc(b, ')');
    if (c->uid)
        buf_str(b, " UID");
}

/* " name (position set ...)" of the UIDs v[0..n), as sequence numbers of
 * the view unless the context is a UID one. A SEARCH context names
 * position 0 and one set (RFC 5267 4.3.3); a SORT one, pos[i] for v[i],
 * the positions taken one after the other as the client applies them:
 * messages added at consecutive positions, or removed at the same one,
 * share a set, in sort order. */
static void write_update(struct imap_session *s, const struct imap_ctx *c, const char *name,
                         const uint32_t *pos, uint32_t *v, size_t n)
{
    struct buf *b = imap_outbuf(s);
    bool add = name[0] == 'A';

    buf_printf(b, " %s (", name);
    for (size_t i = 0; i < n && !c->uid; i++)
        v[i] = imap_sel_seq(s->sel, v[i]);
    for (size_t i = 0; i < n;) {
        size_t k = i + 1;
        while (pos && k < n && pos[k] == pos[i] + (add ? k - i : 0))
            k++;
        if (!pos)
            k = n;
        if (i)
            buf_addc(b, ' ');
        buf_addu(b, pos ? pos[i] : 0);
        buf_addc(b, ' ');
        b = imap_write_set(s, b, v + i, k - i);
        i = k;
    }
    buf_addc(b, ')');
}

/* Removes the ascending uids[0..n) from r (ascending); those removed are
 * left in out[0..*k). */
static void res_remove(struct uidarr *r, const uint32_t *uids, size_t n, uint32_t *out, size_t *k)
{
    size_t w = 0, j = 0;
    *k = 0;
    for (size_t i = 0; i < r->n; i++) {
        while (j < n && uids[j] < r->v[i])
            j++;
        if (j < n && uids[j] == r->v[i])
            out[(*k)++] = r->v[i];
        else
            r->v[w++] = r->v[i];
    }
    r->n = w;
}

/* Drops the ascending uids[0..n) from a SORT context's order; those
 * dropped go to out[0..*k) with their positions, counted as the client
 * removes them one after the other. */
static void order_remove(struct uidarr *order, const uint32_t *uids, size_t n, uint32_t *out,
                         uint32_t *pos, size_t *k)
{
    size_t w = 0;
    *k = 0;
    for (size_t i = 0; i < order->n; i++) {
        uint32_t v = order->v[i];
        size_t j = imap_lower_bound(uids, n, v);
        if (j < n && uids[j] == v) {
            pos[*k] = (uint32_t)w + 1;
            out[(*k)++] = v;
        } else {
            order->v[w++] = v;
        }
    }
    order->n = w;
}

static void imap_ctx_expunged(struct imap_session *s, const uint32_t *uids, size_t n)
{
    struct imap_sel *sel = s->sel;
    uint32_t *gone, *pos;

    if (!sel || !sel->ctx || !n)
        return;
    gone = malloc(n * sizeof(*gone));
    pos = malloc(n * sizeof(*pos));
    for (struct imap_ctx *c = sel->ctx; c && gone && pos; c = c->next) {
        size_t k;
        res_remove(&c->res, uids, n, gone, &k);
        if (c->sort)
            order_remove(&c->order, uids, n, gone, pos, &k);
        if (!k)
            continue;
        /* 4.3.4: before the EXPUNGE, while the numbers still hold */
        write_head(s, c);
        write_update(s, c, "REMOVEFROM", c->sort ? pos : NULL, gone, k);
        buf_str(imap_outbuf(s), "\r\n");
    }
    free(gone);
    free(pos);
}

/* ---- re-evaluation on the pool ---- */

struct imap_ctx_eval {
    struct imap_ctx *c;
    struct uidarr cand;            /* UIDs whose modseq moved since c->since, ascending */
    struct uidarr match;           /* those of them the criteria match */
    struct storage_uidlist sorted; /* SORT: the old result and match, in order */
    bool have_sorted;
    uint64_t highest;
    int err;
};

static struct imap_ctx_eval *imap_ctx_eval_new(struct imap_sel *sel, size_t *n)
{
    struct imap_ctx_eval *ev;
    size_t k = 0;

    *n = 0;
    if (!sel->nctx || !(ev = calloc(sel->nctx, sizeof(*ev))))
        return NULL;
    for (struct imap_ctx *c = sel->ctx; c && k < sel->nctx; c = c->next) {
        ev[k].c = c;
        c->refs++;
        k++;
    }
    *n = k;
    return ev;
}

static int cand_cb(void *arg, const struct storage_msg *m)
{
    struct imap_ctx_eval *e = arg;
    if (m->modseq > e->highest)
        e->highest = m->modseq;
    return uidarr_push(&e->cand, m->uid) < 0;
}

/* The ascending v[0..n) (repeats allowed) as UID ranges (malloc'd). */
static struct storage_range *to_ranges(const uint32_t *v, size_t n, size_t *nr)
{
    struct storage_range *r = malloc((n ? n : 1) * sizeof(*r));
    *nr = 0;
    for (size_t j = 0; r && j < n; j++) {
        if (*nr && r[*nr - 1].hi + 1 == v[j]) {
            r[*nr - 1].hi = v[j];
        } else if (!*nr || r[*nr - 1].hi != v[j]) {
            r[*nr].lo = r[*nr].hi = v[j];
            (*nr)++;
        }
    }
    return r;
}

/* A SORT context's new messages need their places: the old result and
 * the matches sorted together (the old result keeps its order, sort keys
 * do not change). Only when some match is new to the result. */
static int sort_work(struct storage_user *u, int64_t mbox, struct imap_ctx_eval *e)
{
    const struct imap_ctx *c = e->c;
    struct uidarr all = {0};
    struct storage_search and = {0}, set = {0};
    struct storage_range *r;
    size_t i = 0, j = 0, nr;
    bool news = false;
    int err;

    for (size_t k = 0; k < e->match.n && !news; k++)
        news = uidarr_find(&c->res, e->match.v[k]) < 0;
    if (!news)
        return 0;
    while (i < c->res.n || j < e->match.n) {
        uint32_t v;
        if (j >= e->match.n || (i < c->res.n && c->res.v[i] < e->match.v[j]))
            v = c->res.v[i++];
        else if (i >= c->res.n || e->match.v[j] < c->res.v[i])
            v = e->match.v[j++];
        else
            v = c->res.v[i++], j++;
        if (uidarr_push(&all, v) < 0) {
            uidarr_free(&all);
            return STORAGE_E_NOMEM;
        }
    }
    r = to_ranges(all.v, all.n, &nr);
    uidarr_free(&all);
    if (!r)
        return STORAGE_E_NOMEM;
    set.op = STORAGE_SEARCH_UID;
    set.set.n = nr;
    set.set.r = r;
    and.op = STORAGE_SEARCH_AND;
    and.child = &set;
    err = storage_sort(u, mbox, &and, c->crit, c->ncrit, &e->sorted);
    free(r);
    e->have_sorted = err == 0;
    return err;
}

static void imap_ctx_eval_work(struct storage_user *u, int64_t mbox, struct imap_ctx_eval *ev,
                               size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct imap_ctx_eval *e = &ev[i];
        struct storage_search and = {0}, view = {0};
        struct storage_range *r;
        struct storage_uidlist res = {0};
        size_t nr;

        e->highest = e->c->since;
        if ((e->err = storage_changes(u, mbox, e->c->since, cand_cb, e, NULL)) != 0)
            continue;
        if (!e->cand.n)
            continue;
        qsort(e->cand.v, e->cand.n, sizeof(uint32_t), cmp_u32);
        if (!(r = to_ranges(e->cand.v, e->cand.n, &nr))) {
            e->err = STORAGE_E_NOMEM;
            continue;
        }
        /* the criteria on the changed messages only */
        view.op = STORAGE_SEARCH_UID;
        view.set.n = nr;
        view.set.r = r;
        view.next = e->c->q;
        and.op = STORAGE_SEARCH_AND;
        and.child = &view;
        and.viewer = e->c->q->viewer;
        e->err = storage_search(u, mbox, &and, &res);
        free(r);
        for (size_t j = 0; !e->err && j < res.n; j++)
            if (uidarr_push(&e->match, res.uids[j]) < 0)
                e->err = STORAGE_E_NOMEM;
        storage_uidlist_free(&res);
        if (!e->err && e->c->sort)
            e->err = sort_work(u, mbox, e);
    }
}

/* A SORT context's updates: positions of rem (ascending) as the client
 * removes them from the old order, then the new order (the sorted old
 * result and matches, those in nres) and the positions of add in it.
 * add is rewritten in sort order. */
static int sort_positions(struct imap_ctx *c, const struct imap_ctx_eval *e,
                          const struct uidarr *nres, struct uidarr *rem, struct uidarr *add,
                          struct uidarr *rpos, struct uidarr *apos)
{
    struct uidarr order = {0}, sadd = {0}, srem = {0};
    size_t kept = 0;

    for (size_t i = 0; i < c->order.n; i++) {
        uint32_t v = c->order.v[i];
        if (uidarr_find(rem, v) >= 0) {
            if (uidarr_push(rpos, (uint32_t)kept + 1) < 0 || uidarr_push(&srem, v) < 0) {
                uidarr_free(&srem);
                return -1;
            }
        } else {
            kept++;
        }
    }
    if (!add->n) {
        /* no sort needed: the old order less what left */
        size_t w = 0;
        for (size_t i = 0; i < c->order.n; i++)
            if (uidarr_find(rem, c->order.v[i]) < 0)
                c->order.v[w++] = c->order.v[i];
        c->order.n = w;
    }
    uidarr_free(rem);
    *rem = srem; /* in the order removed */
    if (!add->n)
        return 0;
    for (size_t i = 0; i < e->sorted.n; i++) {
        uint32_t v = e->sorted.uids[i];
        if (uidarr_find(nres, v) < 0)
            continue;
        if (uidarr_push(&order, v) < 0)
            goto oom;
        if (uidarr_find(add, v) >= 0 &&
            (uidarr_push(&sadd, v) < 0 || uidarr_push(apos, (uint32_t)order.n) < 0))
            goto oom;
    }
    if (order.n != nres->n)
        goto oom; /* one of the result gone from the index: after its EXPUNGE */
    uidarr_free(&c->order);
    c->order = order;
    uidarr_free(add);
    *add = sadd;
    return 0;
oom:
    uidarr_free(&order);
    uidarr_free(&sadd);
    return -1;
}

static void imap_ctx_eval_done(struct imap_session *s, struct imap_ctx_eval *ev, size_t n)
{
    struct imap_sel *sel = s->sel;

    /* a context whose evaluation failed, or that met messages not yet
     * announced, keeps its modseq: the next change looks at them again */
    for (size_t i = 0; i < n && sel; i++) {
        struct imap_ctx_eval *e = &ev[i];
        struct imap_ctx *c = e->c;
        struct uidarr add = {0}, rem = {0}, nres = {0}, rpos = {0}, apos = {0};
        bool unseen = false, oom = false;
        size_t a = 0;

        if (!c->live || e->err)
            continue;
        for (size_t j = 0; j < e->cand.n; j++) {
            uint32_t uid = e->cand.v[j];
            if (j && uid == e->cand.v[j - 1])
                continue;
            if (!imap_sel_seq(sel, uid)) {
                /* not announced yet (or gone): looked at again later */
                unseen = unseen || uid > uidmap_max(&sel->uids);
                continue;
            }
            bool in = uidarr_find(&c->res, uid) >= 0, match = uidarr_find(&e->match, uid) >= 0;
            if (match && !in)
                oom |= uidarr_push(&add, uid) < 0;
            else if (!match && in)
                oom |= uidarr_push(&rem, uid) < 0;
        }
        if (c->sort && add.n && !e->have_sorted)
            oom = true; /* a place for them is not known: next time */
        /* the new result: the old one less rem, merged with add */
        for (size_t j = 0, r = 0; j < c->res.n && !oom; j++) {
            uint32_t v = c->res.v[j];
            if (r < rem.n && rem.v[r] == v) {
                r++;
                continue;
            }
            while (a < add.n && add.v[a] < v)
                oom |= uidarr_push(&nres, add.v[a++]) < 0;
            oom |= uidarr_push(&nres, v) < 0;
        }
        while (a < add.n && !oom)
            oom |= uidarr_push(&nres, add.v[a++]) < 0;
        if (!oom && c->sort && sort_positions(c, e, &nres, &rem, &add, &rpos, &apos) < 0)
            oom = true;
        if (!oom) {
            uidarr_free(&c->res);
            c->res = nres;
            nres = (struct uidarr){0};
            if (rem.n || add.n)
                write_head(s, c);
            if (rem.n)
                write_update(s, c, "REMOVEFROM", c->sort ? rpos.v : NULL, rem.v, rem.n);
            if (add.n)
                write_update(s, c, "ADDTO", c->sort ? apos.v : NULL, add.v, add.n);
            if (rem.n || add.n)
                buf_str(imap_outbuf(s), "\r\n");
            if (!unseen)
                c->since = e->highest;
        }
        uidarr_free(&nres);
        uidarr_free(&add);
        uidarr_free(&rem);
        uidarr_free(&rpos);
        uidarr_free(&apos);
    }
}

static void imap_ctx_eval_free(struct imap_ctx_eval *ev, size_t n)
{
    for (size_t i = 0; ev && i < n; i++) {
        uidarr_free(&ev[i].cand);
        uidarr_free(&ev[i].match);
        storage_uidlist_free(&ev[i].sorted);
        ctx_unref(ev[i].c);
    }
    free(ev);
}

static const struct imap_ctx_ops ctx_ops = {
    .expunged = imap_ctx_expunged,
    .free_all = imap_ctx_free_all,
    .eval_new = imap_ctx_eval_new,
    .eval_work = imap_ctx_eval_work,
    .eval_done = imap_ctx_eval_done,
    .eval_free = imap_ctx_eval_free,
};
