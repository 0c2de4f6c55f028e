/* What SELECT, EXAMINE and STATUS need of a mailbox, kept in memory by the
 * open store and shared by every session of the account: its UIDs, the
 * UIDs without \Seen, with each other flag and with keywords (each as
 * ranges), the keywords in use, stamped with the mailbox row (UIDVALIDITY,
 * UIDNEXT, HIGHESTMODSEQ) they are true for. The same ranges answer a
 * FLAGS resync (FETCH of FLAGS and UID alone) without reading the index
 * but for the keywords of the messages that have some (mstate_fetch).
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

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/base/buf.h"
#include "server/base/log.h"

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

/* The ranges of the UIDs with a flag, or (W_KEYWORDS) with keywords. */
enum { W_ANSWERED, W_FLAGGED, W_DELETED, W_DRAFT, W_KEYWORDS, W_N };
static const unsigned with_flag[W_KEYWORDS] = {STORAGE_FLAG_ANSWERED, STORAGE_FLAG_FLAGGED,
                                               STORAGE_FLAG_DELETED, STORAGE_FLAG_DRAFT};

struct mstate {
    int64_t id;
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
    struct ranges uids, unseen;
    struct ranges with[W_N];
    bool kwuids_valid; /* with[W_KEYWORDS] is right (a STORE may have changed it) */
    bool kw_valid;     /* kw is the keywords in use */
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

/* Adds the ranges of add to s, in one pass over both. */
static int ranges_merge(struct ranges *s, const struct ranges *add)
{
    struct ranges out = {0};
    size_t i = 0, k = 0;

    if (!add->n)
        return 0;
    while (i < s->n || k < add->n) {
        const struct storage_range *r =
            k >= add->n || (i < s->n && s->r[i].lo <= add->r[k].lo) ? &s->r[i++] : &add->r[k++];
        struct storage_range *last = out.n ? &out.r[out.n - 1] : NULL;
        if (last && (uint64_t)last->hi + 1 >= r->lo) {
            if (r->hi > last->hi) {
                out.count += r->hi - last->hi;
                last->hi = r->hi;
            }
        } else if (ranges_push(&out, r->lo, r->hi) != 0) {
            ranges_free(&out);
            return STORAGE_E_NOMEM;
        }
    }
    ranges_free(s);
    *s = out;
    return 0;
}

static void mstate_free(struct mstate *m)
{
    if (!m)
        return;
    ranges_free(&m->uids);
    ranges_free(&m->unseen);
    for (int w = 0; w < W_N; w++)
        ranges_free(&m->with[w]);
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

/* Adds uid, whose row has flags (and keywords when has_kw), to the
 * ranges of m it belongs to; uid is above all of them. */
static int push_row(struct mstate *m, uint32_t uid, unsigned flags, bool has_kw)
{
    if (ranges_push(&m->uids, uid, uid) != 0 ||
        (!(flags & STORAGE_FLAG_SEEN) && ranges_push(&m->unseen, uid, uid) != 0) ||
        (has_kw && ranges_push(&m->with[W_KEYWORDS], uid, uid) != 0))
        return STORAGE_E_NOMEM;
    for (int w = 0; w < W_KEYWORDS; w++)
        if ((flags & with_flag[w]) && ranges_push(&m->with[w], uid, uid) != 0)
            return STORAGE_E_NOMEM;
    return 0;
}

/* The rows of mailbox m->id (its uids, flags, which have keywords, and,
 * when with_kw, the keywords in use) in db's read transaction. */
static int mstate_scan(sqlite3 *db, struct mstate *m, bool with_kw)
{
    sqlite3_stmt *st;
    struct buf kw = {0};
    unsigned nkw = 0;
    int rc, s;

    ranges_free(&m->uids);
    ranges_free(&m->unseen);
    for (int w = 0; w < W_N; w++)
        ranges_free(&m->with[w]);
    rc = db_prepare(
        db, "SELECT uid, flags, keywords FROM messages WHERE mailbox_id = ? ORDER BY uid", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, m->id);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
        unsigned flags = (unsigned)sqlite3_column_int(st, 1);
        const char *k = (const char *)sqlite3_column_text(st, 2);
        if (push_row(m, uid, flags, k && *k) != 0) {
            rc = STORAGE_E_NOMEM;
            break;
        }
        if (with_kw && nkw < MSTATE_MAX_KEYWORDS && k && *k)
            kw_add(&kw, &nkw, k);
    }
    if (rc == 0 && s == SQLITE_DONE)
        m->kwuids_valid = true;
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

/* Only the keywords in use and the UIDs with keywords (a state whose
 * other ranges are right). */
static int mstate_scan_kw(sqlite3 *db, struct mstate *m)
{
    sqlite3_stmt *st;
    struct buf kw = {0};
    struct ranges with = {0};
    unsigned nkw = 0;
    int rc, s;

    rc = db_prepare(db,
                    "SELECT uid, keywords FROM messages WHERE mailbox_id = ? AND keywords != ''"
                    " ORDER BY uid",
                    &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, m->id);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
        if (ranges_push(&with, uid, uid) != 0) {
            rc = STORAGE_E_NOMEM;
            break;
        }
        if (nkw < MSTATE_MAX_KEYWORDS)
            kw_add(&kw, &nkw, (const char *)sqlite3_column_text(st, 1));
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc == 0 && kw.oom)
        rc = STORAGE_E_NOMEM;
    if (rc == 0) {
        free(m->kw);
        m->kw = kw.len ? buf_take(&kw) : NULL;
        m->kw_valid = true;
        ranges_free(&m->with[W_KEYWORDS]);
        m->with[W_KEYWORDS] = with;
        memset(&with, 0, sizeof(with));
        m->kwuids_valid = true;
    }
    ranges_free(&with);
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
    memset(c->with, 0, sizeof(c->with));
    bool ok = ranges_copy(&c->uids, &m->uids) == 0 && ranges_copy(&c->unseen, &m->unseen) == 0 &&
              (!m->kw || (c->kw = strdup(m->kw)));
    for (int w = 0; ok && w < W_N; w++)
        ok = ranges_copy(&c->with[w], &m->with[w]) == 0;
    if (!ok) {
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
    out->deleted = m->with[W_DELETED].count;
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
    struct mstate add = {0}; /* the ranges of the new messages */
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
        bool has_kw = sqlite3_column_int(st, 2) != 0;
        if (push_row(&add, (uint32_t)sqlite3_column_int64(st, 0),
                     (unsigned)sqlite3_column_int(st, 1), has_kw) != 0) {
            rc = STORAGE_E_NOMEM;
            break;
        }
        kw |= has_kw;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc == 0)
        rc = ranges_merge(&m->uids, &add.uids);
    if (rc == 0)
        rc = ranges_merge(&m->unseen, &add.unseen);
    for (int w = 0; rc == 0 && w < W_N; w++)
        rc = ranges_merge(&m->with[w], &add.with[w]);
    if (kw)
        m->kw_valid = false;
    ranges_free(&add.uids);
    ranges_free(&add.unseen);
    for (int w = 0; w < W_N; w++)
        ranges_free(&add.with[w]);
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
        for (int w = 0; w < W_N; w++)
            if ((rc = ranges_apply(&m->with[w], v, n, false)) != 0)
                return rc;
        return 0;
    case STORAGE_EV_FLAGS:
        if (!pe->store_known || n != pe->store_count || n > MSTATE_MAX_NOTE)
            return STORAGE_E_FAIL;
        if (pe->store_kw) {
            m->kw_valid = false;
            /* keywords added: every message changed has some; taken off
             * or replaced: which still have some is read again */
            if (!pe->store_kw_added)
                m->kwuids_valid = false;
            else if ((rc = ranges_apply(&m->with[W_KEYWORDS], v, n, true)) != 0)
                return rc;
        }
        if ((pe->store_set & STORAGE_FLAG_SEEN) &&
            (rc = ranges_apply(&m->unseen, v, n, false)) != 0)
            return rc;
        if ((pe->store_clear & STORAGE_FLAG_SEEN) &&
            (rc = ranges_apply(&m->unseen, v, n, true)) != 0)
            return rc;
        for (int w = 0; w < W_KEYWORDS; w++) {
            if ((pe->store_set & with_flag[w]) && (rc = ranges_apply(&m->with[w], v, n, true)) != 0)
                return rc;
            if ((pe->store_clear & with_flag[w]) &&
                (rc = ranges_apply(&m->with[w], v, n, false)) != 0)
                return rc;
        }
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

/* ---- a FLAGS resync from memory ---- */

static atomic_uint_fast64_t from_memory; /* storage_fetch calls answered by mstate_fetch */
static atomic_uint_fast64_t disagreed;   /* states the rows showed wrong */

uint64_t storage_flags_from_memory(uint64_t *wrong)
{
    if (wrong)
        *wrong = atomic_load_explicit(&disagreed, memory_order_relaxed);
    return atomic_load_explicit(&from_memory, memory_order_relaxed);
}

/* The part of src within [lo, hi], into dst (empty before). */
static int ranges_slice(struct ranges *dst, const struct ranges *src, uint32_t lo, uint32_t hi)
{
    size_t a = 0, b = src->n;

    while (a < b) {
        size_t mid = (a + b) / 2;
        if (src->r[mid].hi < lo)
            a = mid + 1;
        else
            b = mid;
    }
    for (size_t i = a; i < src->n && src->r[i].lo <= hi; i++)
        if (ranges_push(dst, src->r[i].lo < lo ? lo : src->r[i].lo,
                        src->r[i].hi > hi ? hi : src->r[i].hi) != 0)
            return STORAGE_E_NOMEM;
    return 0;
}

/* Whether uid is in s, for uids asked in ascending order (*at moves on). */
static bool ranges_has(const struct ranges *s, size_t *at, uint32_t uid)
{
    while (*at < s->n && s->r[*at].hi < uid)
        (*at)++;
    return *at < s->n && s->r[*at].lo <= uid;
}

/* The keywords of the messages with some, read for a resync: row i's
 * are at text + at[i].off. */
struct kw_rows {
    struct kw_row {
        uint32_t uid;
        size_t off;
    } * at;
    size_t n, cap;
    struct buf text;
};

static void kw_rows_free(struct kw_rows *k)
{
    free(k->at);
    buf_free(&k->text);
}

/* More than this many ranges of messages with keywords in a resync: their
 * rows are read in one pass over the span rather than range by range. */
#define MSTATE_KW_SEEKS 64

/* The rows with keywords among UIDs lo..hi (ascending), added to k. */
static int kw_rows_read(sqlite3 *db, sqlite3_stmt *st, int64_t mbox, uint32_t lo, uint32_t hi,
                        struct kw_rows *k)
{
    int s;

    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, mbox);
    sqlite3_bind_int64(st, 2, lo);
    sqlite3_bind_int64(st, 3, hi);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 1);
        if (array_grow(&k->at, &k->cap, k->n, sizeof(*k->at), 64) != 0)
            return STORAGE_E_NOMEM;
        k->at[k->n].uid = (uint32_t)sqlite3_column_int64(st, 0);
        k->at[k->n++].off = k->text.len;
        buf_add(&k->text, t ? t : "", t ? strlen(t) + 1 : 1);
        if (k->text.oom)
            return STORAGE_E_NOMEM;
    }
    return s == SQLITE_DONE ? 0 : err_from_sqlite(db, s);
}

int mstate_fetch(struct storage_user *u, sqlite3 *db, const struct mbox_row *row,
                 const struct storage_range *r, size_t nr, storage_msg_cb cb, void *arg)
{
    struct mstate part = {0}; /* the state's ranges within the span asked for */
    struct kw_rows kw = {0};
    sqlite3_stmt *st = NULL;
    int rc = 0;

    if (!nr)
        return 0;
    uint32_t lo = r[0].lo, hi = r[nr - 1].hi;
    pthread_mutex_lock(&u->ms_lock);
    struct mstate *m = slot_state(mstate_slot(u, row->id), row->id);
    if (!m || m->stale || !m->kwuids_valid || m->uidvalidity != row->uidvalidity ||
        m->uidnext != row->uidnext || m->highestmodseq != row->highestmodseq) {
        pthread_mutex_unlock(&u->ms_lock);
        return MSTATE_ABSENT;
    }
    /* copied: a write may change the state once the lock is let go */
    rc = ranges_slice(&part.uids, &m->uids, lo, hi);
    if (rc == 0)
        rc = ranges_slice(&part.unseen, &m->unseen, lo, hi);
    for (int w = 0; rc == 0 && w < W_N; w++)
        rc = ranges_slice(&part.with[w], &m->with[w], lo, hi);
    pthread_mutex_unlock(&u->ms_lock);

    /* the keywords, from the rows of the messages that have some: each
     * must be there, as the state says (else the index is read instead) */
    const struct ranges *kr = &part.with[W_KEYWORDS];
    if (rc == 0 && kr->n)
        rc = db_prepare(db,
                        "SELECT uid, keywords FROM messages WHERE mailbox_id = ?"
                        " AND uid BETWEEN ? AND ? AND keywords != '' ORDER BY uid",
                        &st);
    if (rc == 0 && kr->n > MSTATE_KW_SEEKS)
        rc = kw_rows_read(db, st, row->id, kr->r[0].lo, kr->r[kr->n - 1].hi, &kw);
    for (size_t i = 0; rc == 0 && kr->n <= MSTATE_KW_SEEKS && i < kr->n; i++)
        rc = kw_rows_read(db, st, row->id, kr->r[i].lo, kr->r[i].hi, &kw);
    db_finalize(st);
    if (rc == 0 && kw.n != kr->count)
        rc = MSTATE_ABSENT;
    for (size_t i = 0, at = 0; rc == 0 && i < kw.n; i++)
        if (!ranges_has(kr, &at, kw.at[i].uid))
            rc = MSTATE_ABSENT;
    if (rc == MSTATE_ABSENT) {
        /* the state and the index disagree (a fault in keeping it): it
         * is built again at its next use, the index answers now */
        atomic_fetch_add_explicit(&disagreed, 1, memory_order_relaxed);
        log_error("storage: user %" PRId64 ": mailbox %" PRId64
                  ": its state in memory disagreed with the index; built again",
                  u->id, row->id);
        pthread_mutex_lock(&u->ms_lock);
        if ((m = slot_state(mstate_slot(u, row->id), row->id)) != NULL)
            m->stale = true;
        pthread_mutex_unlock(&u->ms_lock);
    }

    /* every UID asked for that is there, in order */
    size_t at_u = 0, at_unseen = 0, at_w[W_N] = {0}, at_kw = 0;
    bool stop = false;
    for (size_t i = 0; rc == 0 && !stop && i < nr; i++) {
        while (at_u < part.uids.n && part.uids.r[at_u].hi < r[i].lo)
            at_u++;
        for (size_t j = at_u; !stop && j < part.uids.n && part.uids.r[j].lo <= r[i].hi; j++) {
            uint32_t a = part.uids.r[j].lo > r[i].lo ? part.uids.r[j].lo : r[i].lo;
            uint32_t b = part.uids.r[j].hi < r[i].hi ? part.uids.r[j].hi : r[i].hi;
            for (uint64_t v = a; !stop && v <= b; v++) {
                struct storage_msg msg = {.uid = (uint32_t)v, .keywords = ""};
                if (!ranges_has(&part.unseen, &at_unseen, msg.uid))
                    msg.flags |= STORAGE_FLAG_SEEN;
                for (int w = 0; w < W_KEYWORDS; w++)
                    if (ranges_has(&part.with[w], &at_w[w], msg.uid))
                        msg.flags |= with_flag[w];
                if (ranges_has(kr, &at_w[W_KEYWORDS], msg.uid)) {
                    while (at_kw < kw.n && kw.at[at_kw].uid < msg.uid)
                        at_kw++;
                    msg.keywords = kw.text.p + kw.at[at_kw].off;
                }
                stop = cb(arg, &msg) != 0;
            }
        }
    }
    if (rc == 0)
        atomic_fetch_add_explicit(&from_memory, 1, memory_order_relaxed);
    kw_rows_free(&kw);
    ranges_free(&part.uids);
    ranges_free(&part.unseen);
    for (int w = 0; w < W_N; w++)
        ranges_free(&part.with[w]);
    return rc;
}
