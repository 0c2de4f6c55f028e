/* How long expunged UIDs are remembered (QRESYNC, RFC 7162 3.2): the
 * `expunged` table keeps each with the modseq of its expunge, and
 * storage_vanished_prune forgets the old ones, keeping those of the last
 * keep_days days and the keep_count newest per mailbox, whichever is more.
 * What it forgets leaves a floor per mailbox in `meta`
 * ("vanished_floor:<id>:<uidvalidity>", the highest modseq forgotten): a
 * client asking for the expunges since a modseq below it cannot be told
 * them one by one, and is told every UID it names that no longer exists.
 *
 * The table has no time column: the age of an expunge is known from
 * marks, one per mailbox and day ("vanished_mark:<id>:<day>", the
 * mailbox's HIGHESTMODSEQ the first time a prune ran that day). An
 * expunge whose modseq is at most the mark of day D happened before the
 * end of day D. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/internal.h"

void vanished_floor_key(char *out, size_t cap, int64_t mbox, uint32_t uidvalidity)
{
    snprintf(out, cap, "vanished_floor:%" PRId64 ":%" PRIu32, mbox, uidvalidity);
}

static void mark_key(char *out, size_t cap, int64_t mbox, int64_t day)
{
    /* zero-padded: keys of one mailbox sort by day */
    snprintf(out, cap, "vanished_mark:%" PRId64 ":%08" PRId64, mbox, day);
}

int vanished_floor_get(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint64_t *floor)
{
    char key[96];
    int64_t v = 0;
    int rc;

    vanished_floor_key(key, sizeof(key), mbox, uidvalidity);
    rc = db_meta_get(db, key, &v);
    *floor = rc == 0 && v > 0 ? (uint64_t)v : 0;
    return rc;
}

int vanished_floor_raise(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint64_t floor)
{
    char key[96];
    uint64_t old = 0;
    int rc;

    if ((rc = vanished_floor_get(db, mbox, uidvalidity, &old)) != 0 || old >= floor)
        return rc;
    vanished_floor_key(key, sizeof(key), mbox, uidvalidity);
    return db_meta_set(db, key, (int64_t)floor);
}

int vanished_forget_mailbox(sqlite3 *db, int64_t mbox)
{
    static const char *const kinds[] = {"floor", "mark"};
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < 2; i++) {
        char a[96], b[96];
        sqlite3_stmt *st;
        /* every key "vanished_<kind>:<id>:..." (';' follows ':') */
        snprintf(a, sizeof(a), "vanished_%s:%" PRId64 ":", kinds[i], mbox);
        snprintf(b, sizeof(b), "vanished_%s:%" PRId64 ";", kinds[i], mbox);
        if ((rc = db_prepare(db, "DELETE FROM meta WHERE key >= ? AND key < ?", &st)) != 0)
            break;
        sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
        rc = db_step_done(db, st);
    }
    return rc;
}

struct prune_ctx {
    int64_t now;
    unsigned keep_days;
    uint64_t keep_count;
    size_t max;  /* rows this run may still forget */
    size_t done; /* rows forgotten */
    bool more;   /* some mailbox has more to forget */
};

/* The modseq at or below which mbox's expunges are older than keep_days
 * (UINT64_MAX: keep_days 0, the count alone decides); records today's
 * mark and drops the marks no longer needed. */
static int time_cut(sqlite3 *db, const struct mbox_row *m, const struct prune_ctx *c, uint64_t *cut)
{
    char key[96], lo[96], hi[96];
    int64_t today = c->now / 86400, v = 0;
    int rc;

    mark_key(key, sizeof(key), m->id, today);
    if ((rc = db_run_text(db, "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)", key,
                          (int64_t)m->highestmodseq)) != 0)
        return rc;
    if (c->keep_days == 0) {
        *cut = UINT64_MAX;
        return 0;
    }
    /* the mark of the last day that ended keep_days ago or earlier */
    int64_t last = (c->now - (int64_t)c->keep_days * 86400) / 86400 - 1;
    *cut = 0;
    if (last < 0)
        return 0;
    mark_key(lo, sizeof(lo), m->id, 0);
    mark_key(hi, sizeof(hi), m->id, last);
    sqlite3_stmt *st;
    if ((rc = db_prepare(db,
                         "SELECT key, value FROM meta WHERE key >= ? AND key <= ?"
                         " ORDER BY key DESC LIMIT 1",
                         &st)) != 0)
        return rc;
    sqlite3_bind_text(st, 1, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hi, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        v = sqlite3_column_int64(st, 1);
        snprintf(key, sizeof(key), "%s", k ? k : lo);
    }
    db_finalize(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        return err_from_sqlite(db, s);
    if (s != SQLITE_ROW)
        return 0;
    *cut = v > 0 ? (uint64_t)v : 0;
    /* older marks say nothing more than this one */
    sqlite3_stmt *del;
    if ((rc = db_prepare(db, "DELETE FROM meta WHERE key >= ? AND key < ?", &del)) != 0)
        return rc;
    sqlite3_bind_text(del, 1, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(del, 2, key, -1, SQLITE_STATIC);
    return db_step_done(db, del);
}

/* The modseq at or below which mbox's expunges may be forgotten (0:
 * none): older than the days keep (at or below tc) and beyond the
 * keep_count newest, those sharing the modseq of the last one kept
 * staying too. Only counts are read until some may go, and a mailbox is
 * looked at once it holds a sixteenth more than keep_count, so that the
 * sort finding the boundary is paid once per so many expunges. */
static int prune_cut(sqlite3 *db, int64_t mbox, uint64_t tc, uint64_t keep, uint64_t *cut)
{
    static const char nth[] = "SELECT modseq FROM expunged WHERE mailbox_id = ? AND modseq <= ?"
                              " ORDER BY modseq DESC LIMIT 1 OFFSET ?";
    int64_t t = tc > INT64_MAX ? INT64_MAX : (int64_t)tc;
    int64_t total = 0, old = 0, x = 0, y = 0;
    uint64_t young, need;
    int rc;

    *cut = 0;
    if (tc == 0)
        return 0;
    if ((rc = db_int_binds(db, &total, "SELECT count(*) FROM expunged WHERE mailbox_id = ?", NULL,
                           DB_INTS(mbox))) != 0 ||
        (uint64_t)total <= keep + keep / 16)
        return rc;
    if ((rc = db_int_binds(db, &old,
                           "SELECT count(*) FROM expunged WHERE mailbox_id = ? AND modseq <= ?",
                           NULL, DB_INTS(mbox, t))) != 0 ||
        old <= 0)
        return rc;
    young = (uint64_t)(total - old);
    if (young >= keep) {
        *cut = tc; /* the young ones make the count: every old one may go */
        return 0;
    }
    /* the newest `need` of the old ones stay too: x the newest beyond them,
     * y the oldest of them */
    need = keep - young;
    if ((rc = db_int_binds(db, &x, nth, NULL, DB_INTS(mbox, t, (int64_t)need))) != 0 || x <= 0)
        return rc;
    if ((rc = db_int_binds(db, &y, nth, NULL, DB_INTS(mbox, t, (int64_t)need - 1))) != 0)
        return rc;
    *cut = y > x ? (uint64_t)x : (uint64_t)x - 1;
    return 0;
}

static int prune_mailbox(sqlite3 *db, const struct mbox_row *m, struct prune_ctx *c)
{
    uint64_t tc, cut, last = 0;
    sqlite3_stmt *sel = NULL, *del = NULL;
    size_t n = 0;
    int rc, s;

    if ((rc = time_cut(db, m, c, &tc)) != 0 ||
        (rc = prune_cut(db, m->id, tc, c->keep_count, &cut)) != 0)
        return rc;
    if (cut == 0 || c->done >= c->max)
        return 0;
    if ((rc = db_prepare(db,
                         "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? AND modseq <= ?"
                         " ORDER BY modseq, uid LIMIT ?",
                         &sel)) != 0 ||
        (rc = db_prepare(db, "DELETE FROM expunged WHERE mailbox_id = ? AND uid = ?", &del)) != 0)
        goto out;
    sqlite3_bind_int64(sel, 1, m->id);
    sqlite3_bind_int64(sel, 2, (int64_t)(cut > INT64_MAX ? INT64_MAX : cut));
    sqlite3_bind_int64(sel, 3, (int64_t)(c->max - c->done) + 1);
    while ((s = sqlite3_step(sel)) == SQLITE_ROW) {
        if (c->done >= c->max) {
            c->more = true; /* one row beyond the bound: the next run */
            break;
        }
        sqlite3_bind_int64(del, 1, m->id);
        sqlite3_bind_int64(del, 2, sqlite3_column_int64(sel, 0));
        last = (uint64_t)sqlite3_column_int64(sel, 1);
        if ((s = sqlite3_step(del)) != SQLITE_DONE) {
            rc = err_from_sqlite(db, s);
            goto out;
        }
        sqlite3_reset(del);
        c->done++;
        n++;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = err_from_sqlite(db, s);
    /* expunges of modseq `last` may remain: a floor at it only makes
     * clients below it resync in full, which they would anyway */
    if (rc == 0 && n)
        rc = vanished_floor_raise(db, m->id, m->uidvalidity, last);
out:
    db_finalize(sel);
    db_finalize(del);
    return rc;
}

static int prune_work(struct txn *t, void *ctx)
{
    struct prune_ctx *c = ctx;
    struct mbox_row *rows = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st;
    int rc, s;

    /* the mailboxes that remember expunges */
    if ((rc = db_prepare(t->db,
                         "SELECT " MBOX_COLS " FROM mailboxes m WHERE EXISTS"
                         " (SELECT 1 FROM expunged e WHERE e.mailbox_id = m.id) ORDER BY id",
                         &st)) != 0)
        return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = array_grow(&rows, &cap, n, sizeof(*rows), 16)) != 0 ||
            (rc = mbox_row_decode(st, &rows[n])) != 0)
            break;
        n++;
    }
    if (rc == 0 && s != SQLITE_ROW && s != SQLITE_DONE)
        rc = err_from_sqlite(t->db, s);
    db_finalize(st);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = prune_mailbox(t->db, &rows[i], c);
    free(rows);
    return rc;
}

int storage_vanished_prune(struct storage_user *u, unsigned keep_days, uint64_t keep_count,
                           size_t max, bool *more)
{
    struct prune_ctx c = {
        .now = (int64_t)time(NULL), .keep_days = keep_days, .keep_count = keep_count, .max = max};
    int rc = write_txn(u, prune_work, &c);

    if (more)
        *more = rc == 0 && c.more;
    return rc;
}
