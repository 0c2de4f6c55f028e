/* What SELECT, EXAMINE and STATUS need of a mailbox, kept in memory by the
 * open store and shared by every session of the account: its UIDs, the
 * UIDs without \Seen and with \Deleted (each as ranges), the keywords in
 * use, stamped with the mailbox row (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ)
 * they are true for.
 *
 * A state is built by one scan of the mailbox's rows the first time it is
 * asked for, then kept up to date by every write transaction of this
 * process from the events it queued, inside the transaction after its
 * work and before its COMMIT (mstate_apply): the write lock is held then,
 * so what it reads of the index (the new messages, the mailbox row of the
 * stamp) is exactly that transaction's result, and no other connection (a
 * light delivery handle, coffrectl) can commit in between; a COMMIT that
 * fails marks the states stale (mstate_abort). A change this process did
 * not make moves HIGHESTMODSEQ or UIDNEXT: each use compares the stamp with
 * the mailbox row read in the same read transaction, and each write
 * transaction compares the stamps with the rows once it holds the write
 * lock (mstate_begin), before any change of its own is applied; a state
 * that differs is built again. A state built on a reader is installed only
 * when no write transaction began or applied meanwhile (ms_gen), so that a
 * change is never lost between the scan and the install. */
#include "storage/internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/base/buf.h"

/* Keywords in use listed by SELECT's FLAGS (a list for clients, not an
 * inventory). */
#define MSTATE_MAX_KEYWORDS 200
/* A flag change on more messages than this is not applied message by
 * message: the state is built again at its next use. */
#define MSTATE_MAX_NOTE 100000

struct ranges {
    struct storage_range *r;
    size_t n, cap;
    uint32_t count; /* UIDs in all ranges */
};

struct mstate {
    int64_t id;
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
    struct ranges uids, unseen, deleted;
    bool kw_valid; /* kw is the keywords in use */
    char *kw;      /* " kw1 kw2", NULL for none */
    bool stale;    /* built again at the next use */
    bool checked;  /* mstate_begin found its row */
    struct mstate *next;
};

static void ranges_free(struct ranges *r)
{
    free(r->r);
    memset(r, 0, sizeof(*r));
}

static int ranges_push(struct ranges *s, uint32_t lo, uint32_t hi)
{
    if (s->n && s->r[s->n - 1].hi + 1 == lo) {
        s->r[s->n - 1].hi = hi;
    } else {
        if (array_grow(&s->r, &s->cap, s->n, sizeof(*s->r), 8) != 0)
            return STORAGE_E_NOMEM;
        s->r[s->n].lo = lo;
        s->r[s->n].hi = hi;
        s->n++;
    }
    s->count += hi - lo + 1;
    return 0;
}

/* Adds (add) or removes the ascending uids[0..n) to or from s, in one
 * pass over both. */
static int ranges_apply(struct ranges *s, const uint32_t *uids, size_t n, bool add)
{
    struct ranges out = {0};
    size_t i = 0, k = 0;

    if (!n)
        return 0;
    while (i < s->n || k < n) {
        /* the next run of consecutive uids */
        uint32_t ulo = 0, uhi = 0;
        bool have_u = k < n;
        if (have_u) {
            ulo = uhi = uids[k];
            size_t e = k + 1;
            while (e < n && uids[e] <= uhi + 1 && uids[e] >= uhi) {
                uhi = uids[e];
                e++;
            }
            (void)e;
        }
        if (i < s->n && (!have_u || s->r[i].hi < ulo)) {
            /* a range wholly before the next run */
            if (ranges_push(&out, s->r[i].lo, s->r[i].hi) != 0)
                goto oom;
            i++;
            continue;
        }
        if (i >= s->n || uhi < s->r[i].lo) {
            /* a run wholly before the next range */
            if (add && ranges_push(&out, ulo, uhi) != 0)
                goto oom;
            while (k < n && uids[k] <= uhi)
                k++;
            continue;
        }
        /* overlap: range i meets the run [ulo, uhi] */
        struct storage_range cur = s->r[i++];
        if (add) {
            uint32_t lo = cur.lo < ulo ? cur.lo : ulo, hi = cur.hi > uhi ? cur.hi : uhi;
            while (k < n && uids[k] <= hi)
                k++;
            /* ranges that the union now reaches */
            while (i < s->n && s->r[i].lo <= hi + 1) {
                if (s->r[i].hi > hi)
                    hi = s->r[i].hi;
                i++;
                while (k < n && uids[k] <= hi)
                    k++;
            }
            if (out.n && out.r[out.n - 1].hi + 1 >= lo) {
                /* joins the range before */
                if (hi > out.r[out.n - 1].hi) {
                    out.count += hi - out.r[out.n - 1].hi;
                    out.r[out.n - 1].hi = hi;
                }
            } else if (ranges_push(&out, lo, hi) != 0) {
                goto oom;
            }
        } else {
            /* cut every uid inside cur out of it */
            uint32_t lo = cur.lo;
            while (k < n && uids[k] <= cur.hi) {
                uint32_t u = uids[k++];
                if (u < lo)
                    continue;
                if (u > lo && ranges_push(&out, lo, u - 1) != 0)
                    goto oom;
                if (u == UINT32_MAX)
                    goto next;
                lo = u + 1;
            }
            if (lo <= cur.hi && ranges_push(&out, lo, cur.hi) != 0)
                goto oom;
        next:;
        }
    }
    ranges_free(s);
    *s = out;
    return 0;
oom:
    ranges_free(&out);
    return STORAGE_E_NOMEM;
}

static void mstate_free(struct mstate *m)
{
    if (!m)
        return;
    ranges_free(&m->uids);
    ranges_free(&m->unseen);
    ranges_free(&m->deleted);
    free(m->kw);
    free(m);
}

void mstate_drop_all(struct storage_user *u)
{
    sortcache_drop_all(u); /* keyed by the same index */
    pthread_mutex_lock(&u->ms_lock);
    struct mstate *m = u->ms;
    u->ms = NULL;
    u->ms_gen++;
    pthread_mutex_unlock(&u->ms_lock);
    while (m) {
        struct mstate *next = m->next;
        mstate_free(m);
        m = next;
    }
}

/* The states are kept in ascending mailbox id, so that a write
 * transaction checks them all in one walk beside the mailbox rows. The
 * place of id in the list: its state, or where it would go. Under
 * ms_lock. */
static struct mstate **mstate_slot(struct storage_user *u, int64_t id)
{
    struct mstate **pp = &u->ms;
    while (*pp && (*pp)->id < id)
        pp = &(*pp)->next;
    return pp;
}

/* The state at a place from mstate_slot, if it is id's. */
static struct mstate *slot_state(struct mstate **pp, int64_t id)
{
    return *pp && (*pp)->id == id ? *pp : NULL;
}

/* ---- keywords in use ---- */

/* Adds the keywords of kws (space-separated) not yet in b, compared
 * without case, up to MSTATE_MAX_KEYWORDS in all. */
static void kw_add(struct buf *b, unsigned *nkw, const char *kws)
{
    const char *p = kws;
    while (*p && *nkw < MSTATE_MAX_KEYWORDS) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if (e == p)
            break;
        size_t n = (size_t)(e - p);
        bool seen = false;
        for (const char *q = b->p; q && q < b->p + b->len;) {
            const char *qe = memchr(q + 1, ' ', (size_t)(b->p + b->len - q - 1));
            if (!qe)
                qe = b->p + b->len;
            if ((size_t)(qe - q - 1) == n && !strncasecmp(q + 1, p, n)) {
                seen = true;
                break;
            }
            q = qe;
        }
        if (!seen) {
            buf_add(b, " ", 1);
            buf_add(b, p, n);
            (*nkw)++;
        }
        p = e;
    }
}

/* ---- building a state from the index ---- */

/* The rows of mailbox m->id (its uids, \Seen, \Deleted, and, when
 * with_kw, the keywords) in db's read transaction. */
static int mstate_scan(sqlite3 *db, struct mstate *m, bool with_kw)
{
    sqlite3_stmt *st;
    struct buf kw = {0};
    unsigned nkw = 0;
    int rc, s;

    ranges_free(&m->uids);
    ranges_free(&m->unseen);
    ranges_free(&m->deleted);
    rc = db_prepare(db,
                    with_kw ? "SELECT uid, flags, keywords FROM messages WHERE mailbox_id = ?"
                              " ORDER BY uid"
                            : "SELECT uid, flags FROM messages WHERE mailbox_id = ? ORDER BY uid",
                    &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, m->id);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
        unsigned flags = (unsigned)sqlite3_column_int(st, 1);
        if (ranges_push(&m->uids, uid, uid) != 0 ||
            (!(flags & STORAGE_FLAG_SEEN) && ranges_push(&m->unseen, uid, uid) != 0) ||
            ((flags & STORAGE_FLAG_DELETED) && ranges_push(&m->deleted, uid, uid) != 0)) {
            rc = STORAGE_E_NOMEM;
            break;
        }
        if (with_kw && nkw < MSTATE_MAX_KEYWORDS) {
            const char *k = (const char *)sqlite3_column_text(st, 2);
            if (k && *k)
                kw_add(&kw, &nkw, k);
        }
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc == 0 && with_kw) {
        if (kw.oom) {
            rc = STORAGE_E_NOMEM;
        } else {
            free(m->kw);
            m->kw = kw.len ? buf_take(&kw) : NULL;
            m->kw_valid = true;
        }
    }
    buf_free(&kw);
    return rc;
}

/* Only the keywords in use (a state whose ranges are right). */
static int mstate_scan_kw(sqlite3 *db, struct mstate *m)
{
    sqlite3_stmt *st;
    struct buf kw = {0};
    unsigned nkw = 0;
    int rc, s;

    rc = db_prepare(db,
                    "SELECT keywords FROM messages WHERE mailbox_id = ? AND keywords != ''"
                    " ORDER BY uid",
                    &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, m->id);
    while (nkw < MSTATE_MAX_KEYWORDS && (s = sqlite3_step(st)) == SQLITE_ROW)
        kw_add(&kw, &nkw, (const char *)sqlite3_column_text(st, 0));
    if (nkw < MSTATE_MAX_KEYWORDS && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc == 0 && kw.oom)
        rc = STORAGE_E_NOMEM;
    if (rc == 0) {
        free(m->kw);
        m->kw = kw.len ? buf_take(&kw) : NULL;
        m->kw_valid = true;
    }
    buf_free(&kw);
    return rc;
}

static int ranges_copy(struct ranges *dst, const struct ranges *src)
{
    memset(dst, 0, sizeof(*dst));
    if (!src->n)
        return 0;
    if (!(dst->r = malloc(src->n * sizeof(*dst->r))))
        return STORAGE_E_NOMEM;
    memcpy(dst->r, src->r, src->n * sizeof(*dst->r));
    dst->n = dst->cap = src->n;
    dst->count = src->count;
    return 0;
}

static struct mstate *mstate_clone(const struct mstate *m)
{
    struct mstate *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    *c = *m;
    c->next = NULL;
    c->kw = NULL;
    memset(&c->uids, 0, sizeof(c->uids));
    memset(&c->unseen, 0, sizeof(c->unseen));
    memset(&c->deleted, 0, sizeof(c->deleted));
    if (ranges_copy(&c->uids, &m->uids) != 0 || ranges_copy(&c->unseen, &m->unseen) != 0 ||
        ranges_copy(&c->deleted, &m->deleted) != 0 || (m->kw && !(c->kw = strdup(m->kw)))) {
        mstate_free(c);
        return NULL;
    }
    return c;
}

/* ---- the answer ---- */

static int info_fill(struct storage_mbox_info *out, const struct mstate *m, bool want_uids)
{
    out->messages = m->uids.count;
    out->unseen = m->unseen.count;
    out->deleted = m->deleted.count;
    out->first_unseen = m->unseen.n ? m->unseen.r[0].lo : 0;
    if (m->kw && !(out->keywords = strdup(m->kw)))
        return STORAGE_E_NOMEM;
    if (!want_uids || !m->uids.n)
        return 0;
    if (!(out->ranges = malloc(m->uids.n * sizeof(*out->ranges))))
        return STORAGE_E_NOMEM;
    memcpy(out->ranges, m->uids.r, m->uids.n * sizeof(*out->ranges));
    out->nranges = m->uids.n;
    return 0;
}

void storage_mbox_info_free(struct storage_mbox_info *info)
{
    free(info->ranges);
    info->ranges = NULL;
    info->nranges = 0;
    free(info->keywords);
    info->keywords = NULL;
}

int storage_mbox_info(struct storage_user *u, const char *name, int64_t id, bool want_uids,
                      struct storage_mbox_info *out)
{
    char norm[STORAGE_MBOX_NAME_MAX + 1];
    struct mstate *m = NULL, *fresh = NULL;
    uint64_t gen;
    sqlite3 *db;
    int rc;

    memset(out, 0, sizeof(*out));
    if (name && (rc = name_normalize(name, norm, sizeof(norm))) != 0)
        return rc;
    if (!(db = reader_get(u)))
        return STORAGE_E_TEMP;
    pthread_mutex_lock(&u->ms_lock);
    gen = u->ms_gen;
    pthread_mutex_unlock(&u->ms_lock);
    if ((rc = db_exec(db, "BEGIN")) != 0 ||
        (rc = mbox_info_read(db, name ? norm : NULL, id, &out->mb)) != 0)
        goto out;

    pthread_mutex_lock(&u->ms_lock);
    struct mstate **pp = mstate_slot(u, out->mb.id);
    if (slot_state(pp, out->mb.id) && !(*pp)->stale && (*pp)->uidvalidity == out->mb.uidvalidity &&
        (*pp)->uidnext == out->mb.uidnext && (*pp)->highestmodseq == out->mb.highestmodseq) {
        if ((*pp)->kw_valid) {
            /* the common case: answered from memory */
            rc = info_fill(out, *pp, want_uids);
            pthread_mutex_unlock(&u->ms_lock);
            goto out;
        }
        /* only the keywords in use need the index */
        m = mstate_clone(*pp);
        pthread_mutex_unlock(&u->ms_lock);
        if (!m) {
            rc = STORAGE_E_NOMEM;
            goto out;
        }
        rc = mstate_scan_kw(db, m);
    } else {
        pthread_mutex_unlock(&u->ms_lock);
        if (!(m = calloc(1, sizeof(*m)))) {
            rc = STORAGE_E_NOMEM;
            goto out;
        }
        m->id = out->mb.id;
        m->uidvalidity = out->mb.uidvalidity;
        m->uidnext = out->mb.uidnext;
        m->highestmodseq = out->mb.highestmodseq;
        rc = mstate_scan(db, m, true);
    }
    if (rc == 0)
        rc = info_fill(out, m, want_uids);
    if (rc == 0) {
        /* kept for the next use, unless a write committed meanwhile (its
         * change may or may not be in what was read) */
        pthread_mutex_lock(&u->ms_lock);
        if (u->ms_gen == gen) {
            pp = mstate_slot(u, m->id);
            if (slot_state(pp, m->id)) {
                m->next = (*pp)->next;
                fresh = *pp;
            } else
                m->next = *pp;
            *pp = m;
            m = NULL;
        }
        pthread_mutex_unlock(&u->ms_lock);
    }
out:
    mstate_free(m);
    mstate_free(fresh);
    reader_put(u, db);
    if (rc)
        storage_mbox_info_free(out);
    return rc;
}

/* ---- keeping it up to date ---- */

/* The flags of the messages of mbox from UID lo up, for a state: the new
 * messages of a NEW event. In the write transaction, before its COMMIT. */
static int note_new(sqlite3 *db, struct mstate *m, uint32_t lo)
{
    sqlite3_stmt *st;
    struct storage_uidlist all = {0}, unseen = {0}, deleted = {0};
    bool kw = false;
    int rc, s;

    if ((rc = db_prepare(db,
                         "SELECT uid, flags, keywords != '' FROM messages WHERE mailbox_id = ?"
                         " AND uid >= ? ORDER BY uid",
                         &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, m->id);
    sqlite3_bind_int64(st, 2, lo);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
        unsigned flags = (unsigned)sqlite3_column_int(st, 1);
        if (uidlist_add(&all, uid) != 0 ||
            (!(flags & STORAGE_FLAG_SEEN) && uidlist_add(&unseen, uid) != 0) ||
            ((flags & STORAGE_FLAG_DELETED) && uidlist_add(&deleted, uid) != 0)) {
            rc = STORAGE_E_NOMEM;
            break;
        }
        kw |= sqlite3_column_int(st, 2) != 0;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc == 0)
        rc = ranges_apply(&m->uids, all.uids, all.n, true);
    if (rc == 0)
        rc = ranges_apply(&m->unseen, unseen.uids, unseen.n, true);
    if (rc == 0)
        rc = ranges_apply(&m->deleted, deleted.uids, deleted.n, true);
    if (kw)
        m->kw_valid = false;
    storage_uidlist_free(&all);
    storage_uidlist_free(&unseen);
    storage_uidlist_free(&deleted);
    return rc;
}

static int note_event(sqlite3 *db, struct mstate *m, const struct pending_event *pe)
{
    const uint32_t *v = pe->uids.uids;
    size_t n = pe->uids.n;
    int rc = 0;

    if (pe->viewer)
        return 0; /* a viewer's own \Seen: the rows' flags are as they were */
    if (pe->partial)
        return STORAGE_E_NOMEM; /* built again */
    switch (pe->type) {
    case STORAGE_EV_NEW:
        return n ? note_new(db, m, v[0]) : STORAGE_E_FAIL;
    case STORAGE_EV_EXPUNGE:
        if (m->kw)
            m->kw_valid = false;
        if ((rc = ranges_apply(&m->uids, v, n, false)) != 0 ||
            (rc = ranges_apply(&m->unseen, v, n, false)) != 0)
            return rc;
        return ranges_apply(&m->deleted, v, n, false);
    case STORAGE_EV_FLAGS:
        if (!pe->store_known || n != pe->store_count || n > MSTATE_MAX_NOTE)
            return STORAGE_E_FAIL;
        if (pe->store_kw)
            m->kw_valid = false;
        if ((pe->store_set & STORAGE_FLAG_SEEN) &&
            (rc = ranges_apply(&m->unseen, v, n, false)) != 0)
            return rc;
        if ((pe->store_clear & STORAGE_FLAG_SEEN) &&
            (rc = ranges_apply(&m->unseen, v, n, true)) != 0)
            return rc;
        if ((pe->store_set & STORAGE_FLAG_DELETED) &&
            (rc = ranges_apply(&m->deleted, v, n, true)) != 0)
            return rc;
        if ((pe->store_clear & STORAGE_FLAG_DELETED) &&
            (rc = ranges_apply(&m->deleted, v, n, false)) != 0)
            return rc;
        return 0;
    case STORAGE_EV_MAILBOX:
    case STORAGE_EV_EXTERNAL:
        return STORAGE_E_FAIL; /* built again */
    }
    return 0;
}

void mstate_apply(struct txn *t)
{
    struct storage_user *u = t->u;

    pthread_mutex_lock(&u->ms_lock);
    u->ms_gen++;
    for (size_t i = 0; i < t->nev; i++) {
        const struct pending_event *pe = &t->ev[i];
        struct mstate **pp = mstate_slot(u, pe->mbox);
        struct mbox_row row;
        if (!slot_state(pp, pe->mbox))
            continue;
        if (pe->type == STORAGE_EV_MAILBOX || pe->type == STORAGE_EV_EXTERNAL) {
            struct mstate *m = *pp;
            *pp = m->next;
            mstate_free(m);
            continue;
        }
        if ((*pp)->stale)
            continue;
        /* the state was true when this transaction began (mstate_begin) */
        if (note_event(t->db, *pp, pe) != 0 || mbox_by_id(t->db, pe->mbox, &row) != 0) {
            (*pp)->stale = true;
            continue;
        }
        (*pp)->uidvalidity = row.uidvalidity;
        (*pp)->uidnext = row.uidnext;
        (*pp)->highestmodseq = row.highestmodseq;
    }
    pthread_mutex_unlock(&u->ms_lock);
}

void mstate_begin(struct txn *t)
{
    struct storage_user *u = t->u;
    sqlite3_stmt *st;
    bool any;

    pthread_mutex_lock(&u->ms_lock);
    u->ms_gen++; /* a state a reader builds from now on waits for the next use */
    any = u->ms != NULL;
    pthread_mutex_unlock(&u->ms_lock);
    if (!any)
        return;
    /* a change another program committed since the last transaction
     * shows in the stamps: those states are built again */
    bool ok = db_prepare(t->db, "SELECT " MBOX_COLS " FROM mailboxes ORDER BY id", &st) == 0;
    pthread_mutex_lock(&u->ms_lock);
    for (struct mstate *m = u->ms; m; m = m->next)
        m->checked = false;
    /* both in ascending id: one walk */
    struct mstate *at = u->ms;
    while (ok && at && sqlite3_step(st) == SQLITE_ROW) {
        struct mbox_row row;
        if (mbox_row_decode(st, &row) != 0)
            continue;
        while (at && at->id < row.id)
            at = at->next;
        if (!at || at->id != row.id)
            continue;
        at->checked = true;
        if (at->uidvalidity != row.uidvalidity || at->uidnext != row.uidnext ||
            at->highestmodseq != row.highestmodseq)
            at->stale = true;
    }
    for (struct mstate *m = u->ms; m; m = m->next)
        if (!m->checked)
            m->stale = true; /* gone, or the query failed */
    pthread_mutex_unlock(&u->ms_lock);
    if (ok)
        db_finalize(st);
}

void mstate_abort(struct storage_user *u)
{
    pthread_mutex_lock(&u->ms_lock);
    u->ms_gen++;
    for (struct mstate *m = u->ms; m; m = m->next)
        m->stale = true;
    pthread_mutex_unlock(&u->ms_lock);
}
