/* Per-user \Seen on shared mailboxes. A mailbox shared with other
 * accounts keeps, for each of them (a viewer), a \Seen of its own in the
 * owner's index, table pseen: the UIDs the viewer has seen, as ranges, one
 * row per range, keyed by (mailbox, viewer, first UID).
 *
 * Ranges rather than one row per message: a team inbox of 100,000
 * messages that a few dozen people read holds a few ranges per reader
 * (people read most of it, in runs), where rows would be millions; the
 * set of a viewer is one scan of a key range, and a change rewrites only
 * the rows of the ranges it touches. A range may run over UIDs that no
 * message holds (expunged, or never given): a UID never comes back within
 * one UIDVALIDITY, so those mean nothing, and letting the ranges cover
 * them keeps them few (STORE 1:* \Seen is one row, whatever the holes).
 * So an expunge leaves the ranges alone (its UIDs drop out of the counts,
 * which look only at the messages there); the rows go with their mailbox
 * (deleted, or given a new UIDVALIDITY), and each row carries the
 * UIDVALIDITY it was written under, so that a row of an older incarnation
 * is never read as the current one's.
 *
 * A change is a write transaction like STORE: every message whose \Seen
 * changes for the viewer takes the mailbox's next modseq (so that the
 * viewer's CONDSTORE clients see it; others see a change with nothing
 * new in it, which RFC 7162 allows), and its STORAGE_EV_FLAGS event names
 * the viewer, for whose sessions alone it is. */
#include "storage/internal.h"

#include <stdlib.h>
#include <string.h>

void storage_seen_free(struct storage_seen *s)
{
    if (!s)
        return;
    free(s->r);
    s->r = NULL;
    s->n = 0;
}

bool storage_seen_has(const struct storage_seen *s, uint32_t uid)
{
    size_t lo = 0, hi = s ? s->n : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (uid < s->r[mid].lo)
            hi = mid;
        else if (uid > s->r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

unsigned storage_seen_flags(const struct storage_seen *s, uint32_t uid, unsigned flags)
{
    return storage_seen_has(s, uid) ? flags | STORAGE_FLAG_SEEN : flags & ~STORAGE_FLAG_SEEN;
}

/* ---- range lists (ascending, disjoint, not adjacent) ---- */

static int push(struct storage_seen *s, size_t *cap, uint32_t lo, uint32_t hi)
{
    if (s->n && (uint64_t)s->r[s->n - 1].hi + 1 >= lo) {
        if (hi > s->r[s->n - 1].hi)
            s->r[s->n - 1].hi = hi;
        return 0;
    }
    if (array_grow(&s->r, cap, s->n, sizeof(*s->r), 8) != 0)
        return STORAGE_E_NOMEM;
    s->r[s->n].lo = lo;
    s->r[s->n].hi = hi;
    s->n++;
    return 0;
}

/* a | b into *out */
static int seen_union(const struct storage_seen *a, const struct storage_seen *b,
                      struct storage_seen *out)
{
    size_t i = 0, k = 0, cap = 0;

    memset(out, 0, sizeof(*out));
    while (i < a->n || k < b->n) {
        const struct storage_range *r =
            k >= b->n || (i < a->n && a->r[i].lo <= b->r[k].lo) ? &a->r[i++] : &b->r[k++];
        if (push(out, &cap, r->lo, r->hi) != 0) {
            storage_seen_free(out);
            return STORAGE_E_NOMEM;
        }
    }
    return 0;
}

/* a - b into *out */
static int seen_minus(const struct storage_seen *a, const struct storage_seen *b,
                      struct storage_seen *out)
{
    size_t k = 0, cap = 0;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < a->n; i++) {
        uint64_t lo = a->r[i].lo, hi = a->r[i].hi;
        while (k < b->n && b->r[k].hi < lo)
            k++;
        for (size_t j = k; j < b->n && b->r[j].lo <= hi && lo <= hi; j++) {
            if (b->r[j].lo > lo && push(out, &cap, (uint32_t)lo, b->r[j].lo - 1) != 0)
                goto oom;
            lo = (uint64_t)b->r[j].hi + 1;
        }
        if (lo <= hi && push(out, &cap, (uint32_t)lo, (uint32_t)hi) != 0)
            goto oom;
    }
    return 0;
oom:
    storage_seen_free(out);
    return STORAGE_E_NOMEM;
}

/* ---- the table ---- */

int pseen_read(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, int64_t viewer,
               struct storage_seen *out)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc, s;

    memset(out, 0, sizeof(*out));
    if ((rc = db_prepare(db,
                         "SELECT lo, hi FROM pseen WHERE mailbox_id = ? AND viewer = ?"
                         " AND uidvalidity = ? ORDER BY lo",
                         &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, mbox);
    sqlite3_bind_int64(st, 2, viewer);
    sqlite3_bind_int64(st, 3, uidvalidity);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t lo = sqlite3_column_int64(st, 0), hi = sqlite3_column_int64(st, 1);
        if (lo < 1 || hi < lo || hi > UINT32_MAX)
            continue; /* not one this file wrote */
        if (push(out, &cap, (uint32_t)lo, (uint32_t)hi) != 0) {
            rc = STORAGE_E_NOMEM;
            break;
        }
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    db_finalize(st);
    if (rc)
        storage_seen_free(out);
    return rc;
}

int pseen_forget_mailbox(sqlite3 *db, int64_t mbox)
{
    return db_run(db, "DELETE FROM pseen WHERE mailbox_id = ?", mbox);
}

int pseen_move_mailbox(sqlite3 *db, int64_t from, int64_t to, uint32_t uidvalidity)
{
    return db_run(db, "UPDATE pseen SET mailbox_id = ?, uidvalidity = ? WHERE mailbox_id = ?", to,
                  uidvalidity, from);
}

int storage_pseen_get(struct storage_user *u, int64_t mbox, int64_t viewer,
                      struct storage_seen *out)
{
    struct mbox_row m;
    sqlite3 *db;
    int rc;

    memset(out, 0, sizeof(*out));
    if (viewer <= 0)
        return STORAGE_E_INVAL;
    if (!(db = reader_get(u)))
        return STORAGE_E_TEMP;
    if ((rc = db_exec(db, "BEGIN")) == 0 && (rc = mbox_by_id(db, mbox, &m)) == 0)
        rc = pseen_read(db, mbox, m.uidvalidity, viewer, out);
    reader_put(u, db);
    return rc;
}

struct pseen_ctx {
    int64_t mbox, viewer;
    struct storage_range *req; /* the set asked for, normalized */
    size_t nreq;
    bool seen;
    uint64_t limit; /* UNCHANGEDSINCE, or INT64_MAX */
    struct storage_uidlist *failed;
    uint64_t ms;
    size_t changed;
};

/* Rewrites the viewer's rows from old to new: the rows of ranges only
 * old has go, those only new has come. */
static int write_diff(sqlite3 *db, const struct pseen_ctx *c, uint32_t uidvalidity,
                      const struct storage_seen *old, const struct storage_seen *new)
{
    sqlite3_stmt *del = NULL, *ins = NULL;
    size_t i = 0, k = 0;
    int rc;

    if ((rc = db_prepare(db, "DELETE FROM pseen WHERE mailbox_id = ? AND viewer = ? AND lo = ?",
                         &del)) != 0 ||
        (rc = db_prepare(db,
                         "INSERT OR REPLACE INTO pseen(mailbox_id, viewer, lo, hi, uidvalidity)"
                         " VALUES (?, ?, ?, ?, ?)",
                         &ins)) != 0)
        goto out;
    /* old's rows that new lacks (a range of both, same bounds, stays) */
    for (i = 0, k = 0; i < old->n && rc == 0; i++) {
        while (k < new->n &&new->r[k].lo < old->r[i].lo)
            k++;
        if (k < new->n &&new->r[k].lo == old->r[i].lo &&new->r[k].hi == old->r[i].hi)
            continue;
        sqlite3_bind_int64(del, 1, c->mbox);
        sqlite3_bind_int64(del, 2, c->viewer);
        sqlite3_bind_int64(del, 3, old->r[i].lo);
        rc = sqlite3_step(del) == SQLITE_DONE ? 0 : err_from_sqlite(db, sqlite3_errcode(db));
        sqlite3_reset(del);
    }
    for (i = 0, k = 0; k < new->n &&rc == 0; k++) {
        while (i < old->n && old->r[i].lo < new->r[k].lo)
            i++;
        if (i < old->n && old->r[i].lo == new->r[k].lo && old->r[i].hi == new->r[k].hi)
            continue;
        sqlite3_bind_int64(ins, 1, c->mbox);
        sqlite3_bind_int64(ins, 2, c->viewer);
        sqlite3_bind_int64(ins, 3, new->r[k].lo);
        sqlite3_bind_int64(ins, 4, new->r[k].hi);
        sqlite3_bind_int64(ins, 5, uidvalidity);
        rc = sqlite3_step(ins) == SQLITE_DONE ? 0 : err_from_sqlite(db, sqlite3_errcode(db));
        sqlite3_reset(ins);
    }
out:
    db_finalize(del);
    db_finalize(ins);
    return rc;
}

/* UNCHANGEDSINCE: the messages of the set it leaves alone, listed in
 * c->failed and as ranges in *out. */
static int list_failed(sqlite3 *db, struct pseen_ctx *c, const struct storage_seen *req,
                       struct storage_seen *out)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc = db_prepare(db,
                        "SELECT uid FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?"
                        " AND modseq > ? ORDER BY uid",
                        &st);

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < req->n && rc == 0; i++) {
        int s;
        sqlite3_bind_int64(st, 1, c->mbox);
        sqlite3_bind_int64(st, 2, req->r[i].lo);
        sqlite3_bind_int64(st, 3, req->r[i].hi);
        sqlite3_bind_int64(st, 4, (int64_t)c->limit);
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
            if (push(out, &cap, uid, uid) != 0 || (c->failed && uidlist_add(c->failed, uid) != 0)) {
                rc = STORAGE_E_NOMEM;
                break;
            }
        }
        if (rc == 0 && s != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
        sqlite3_reset(st);
    }
    db_finalize(st);
    return rc;
}

static int pseen_work(struct txn *t, void *ctx)
{
    struct pseen_ctx *c = ctx;
    struct storage_seen old = {0}, req = {0}, skip = {0}, eff = {0}, new = {0};
    struct pending_event *pe;
    struct mbox_row m;
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int64_t stale = 0;
    int rc, s;

    if ((rc = mbox_by_id(t->db, c->mbox, &m)) != 0)
        return rc;
    /* rows of another incarnation of the mailbox are not this one's */
    if ((rc = db_int_binds(t->db, &stale,
                           "SELECT count(*) FROM pseen WHERE mailbox_id = ? AND viewer = ?"
                           " AND uidvalidity != ?",
                           NULL, DB_INTS(c->mbox, c->viewer, m.uidvalidity))) != 0 ||
        (stale && (rc = db_run(t->db,
                               "DELETE FROM pseen WHERE mailbox_id = ? AND viewer = ?"
                               " AND uidvalidity != ?",
                               c->mbox, c->viewer, m.uidvalidity)) != 0))
        return rc;
    /* the set, up to the last message there (not to UIDNEXT: an import
     * may still bring messages under it, storage_import_uidnext) */
    int64_t top = 0;
    if ((rc = db_int_binds(t->db, &top, "SELECT max(uid) FROM messages WHERE mailbox_id = ?", NULL,
                           DB_INTS(c->mbox))) != 0)
        return rc;
    for (size_t i = 0; i < c->nreq; i++) {
        uint32_t lo = c->req[i].lo, hi = c->req[i].hi;
        if (lo == 0)
            lo = 1;
        if (top < 1 || lo > top)
            break;
        if (hi > top)
            hi = (uint32_t)top;
        if (lo <= hi && push(&req, &cap, lo, hi) != 0) {
            rc = STORAGE_E_NOMEM;
            goto out;
        }
    }
    if (!req.n) {
        rc = TXN_NOTHING;
        goto out;
    }
    if ((rc = pseen_read(t->db, c->mbox, m.uidvalidity, c->viewer, &old)) != 0)
        goto out;
    c->ms = m.highestmodseq + 1;
    if (c->limit != (uint64_t)INT64_MAX) {
        if ((rc = list_failed(t->db, c, &req, &skip)) != 0 ||
            (rc = seen_minus(&req, &skip, &eff)) != 0)
            goto out;
    } else {
        eff = req;
        memset(&req, 0, sizeof(req));
    }
    /* the messages whose \Seen changes for the viewer take the next modseq */
    {
        struct rangeset rs = {.r = old.r, .n = old.n};
        /* "+modseq": the rows of the set by their key, never the whole
         * mailbox through the modseq index */
        if ((rc = db_prepare(t->db,
                             "UPDATE messages SET modseq = ?1 WHERE mailbox_id = ?2"
                             " AND uid BETWEEN ?3 AND ?4 AND +modseq <= ?5"
                             " AND coffre_inset(?6, uid) = ?7",
                             &st)) != 0)
            goto out;
        for (size_t i = 0; i < eff.n && rc == 0; i++) {
            sqlite3_bind_int64(st, 1, (int64_t)c->ms);
            sqlite3_bind_int64(st, 2, c->mbox);
            sqlite3_bind_int64(st, 3, eff.r[i].lo);
            sqlite3_bind_int64(st, 4, eff.r[i].hi);
            sqlite3_bind_int64(st, 5, (int64_t)c->limit);
            sqlite3_bind_pointer(st, 6, &rs, "coffre_rangeset", NULL);
            sqlite3_bind_int(st, 7, c->seen ? 0 : 1);
            s = sqlite3_step(st);
            if (s == SQLITE_DONE)
                c->changed += (size_t)sqlite3_changes(t->db);
            else
                rc = err_from_sqlite(t->db, s);
            sqlite3_reset(st);
        }
        db_finalize(st);
        st = NULL;
        if (rc)
            goto out;
    }
    if (c->changed == 0) {
        rc = TXN_NOTHING;
        goto out;
    }
    if ((rc = c->seen ? seen_union(&old, &eff, &new) : seen_minus(&old, &eff, &new)) != 0 ||
        (rc = write_diff(t->db, c, m.uidvalidity, &old, &new)) != 0 ||
        (rc = db_run(t->db, "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", c->ms,
                     c->mbox)) != 0)
        goto out;
    if (!(pe = txn_event(t, STORAGE_EV_FLAGS, c->mbox))) {
        rc = STORAGE_E_NOMEM;
        goto out;
    }
    pe->modseq = c->ms;
    pe->viewer = c->viewer;
    if ((rc = db_prepare(t->db,
                         "SELECT uid FROM messages WHERE mailbox_id = ? AND modseq = ?"
                         " ORDER BY uid",
                         &st)) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, c->mbox);
    sqlite3_bind_int64(st, 2, (int64_t)c->ms);
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        if (uidlist_add(&pe->uids, (uint32_t)sqlite3_column_int64(st, 0)) != 0) {
            pe->partial = true;
            break;
        }
out:
    db_finalize(st);
    storage_seen_free(&old);
    storage_seen_free(&req);
    storage_seen_free(&skip);
    storage_seen_free(&eff);
    storage_seen_free(&new);
    return rc;
}

int storage_pseen_store(struct storage_user *u, int64_t mbox, int64_t viewer,
                        const struct storage_uidset *set, bool seen, uint64_t unchangedsince,
                        struct storage_uidlist *failed, struct storage_uidlist *changed,
                        uint64_t *modseq)
{
    struct pseen_ctx c = {.mbox = mbox,
                          .viewer = viewer,
                          .seen = seen,
                          .limit = unchangedsince ? unchangedsince : (uint64_t)INT64_MAX,
                          .failed = failed};
    struct storage_range *r = NULL;
    int rc;

    if (modseq)
        *modseq = 0;
    if (viewer <= 0)
        return STORAGE_E_INVAL;
    if ((rc = uidset_normalize(set, &r, &c.nreq)) != 0)
        return rc;
    c.req = r;
    rc = write_txn(u, pseen_work, &c);
    free(r);
    if (rc == 0 && c.changed) {
        if (modseq)
            *modseq = c.ms;
        if (changed) {
            /* the messages of the modseq, as the event listed them */
            sqlite3 *db = reader_get(u);
            sqlite3_stmt *st;
            if (!db)
                return 0;
            if (db_prepare(db,
                           "SELECT uid FROM messages WHERE mailbox_id = ? AND modseq = ?"
                           " ORDER BY uid",
                           &st) == 0) {
                sqlite3_bind_int64(st, 1, mbox);
                sqlite3_bind_int64(st, 2, (int64_t)c.ms);
                while (sqlite3_step(st) == SQLITE_ROW)
                    if (uidlist_add(changed, (uint32_t)sqlite3_column_int64(st, 0)) != 0)
                        break;
                db_finalize(st);
            }
            reader_put(u, db);
        }
    }
    return rc;
}

/* The viewer's unseen count and first unseen UID: the UIDs of the
 * mailbox (ranges) less the seen set, in one walk of both. */
static void unseen_of(const struct storage_range *uids, size_t n, const struct storage_seen *seen,
                      uint32_t *count, uint32_t *first)
{
    size_t k = 0;

    *count = 0;
    *first = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t lo = uids[i].lo, hi = uids[i].hi;
        while (k < seen->n && seen->r[k].hi < lo)
            k++;
        for (size_t j = k; j < seen->n && seen->r[j].lo <= hi && lo <= hi; j++) {
            if (seen->r[j].lo > lo) {
                if (!*first)
                    *first = (uint32_t)lo;
                *count += (uint32_t)(seen->r[j].lo - lo);
            }
            lo = (uint64_t)seen->r[j].hi + 1;
        }
        if (lo <= hi) {
            if (!*first)
                *first = (uint32_t)lo;
            *count += (uint32_t)(hi - lo + 1);
        }
    }
}

int storage_mbox_info_viewer(struct storage_user *u, const char *name, int64_t id, int64_t viewer,
                             bool want_uids, struct storage_mbox_info *out)
{
    struct storage_seen seen = {0};
    int rc;

    if (viewer <= 0)
        return storage_mbox_info(u, name, id, want_uids, out);
    if ((rc = storage_mbox_info(u, name, id, true, out)) != 0)
        return rc;
    /* the messages from the state kept in memory, the set from the index
     * (a change between the two shows at the next use) */
    if ((rc = storage_pseen_get(u, out->mb.id, viewer, &seen)) != 0) {
        storage_mbox_info_free(out);
        return rc;
    }
    unseen_of(out->ranges, out->nranges, &seen, &out->unseen, &out->first_unseen);
    storage_seen_free(&seen);
    if (!want_uids) {
        free(out->ranges);
        out->ranges = NULL;
        out->nranges = 0;
    }
    return 0;
}
