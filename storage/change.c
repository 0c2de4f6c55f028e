/* Changing messages: STORE (flags and keywords, one transaction and one
 * modseq per call), EXPUNGE, COPY/MOVE by hard link with UID maps, the
 * batched catch-up of Maildir file names with index flags, and CONDSTORE
 * change listings. */
#include "storage/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/base/log.h"

int uidset_normalize(const struct storage_uidset *set, struct storage_range **out, size_t *n);

#define KWBUF ((STORAGE_KEYWORD_MAX + 1) * (STORAGE_KEYWORDS_MAX + 1) + 1)

static int step_done(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
}

/* Calls cb for each row of `mbox` with modseq == ms (the rows one call
 * changed), from a reader, after commit. */
static void report_changed(struct storage_user *u, int64_t mbox, uint64_t ms, storage_msg_cb cb,
                           void *arg)
{
    sqlite3 *db = reader_get(u);
    sqlite3_stmt *st;

    if (!db)
        return;
    if (db_prepare(db,
                   "SELECT " MSG_COLS " FROM messages m WHERE m.mailbox_id = ? AND m.modseq = ?"
                   " ORDER BY m.uid",
                   &st) == 0) {
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, (int64_t)ms);
        msg_rows(db, st, 0, cb, arg, NULL);
        db_finalize(st);
    }
    reader_put(u, db);
}

static const char *const store_sql_flags[3] = {
    /* SET without keywords also clears the keywords; ?7: the flags it keeps */
    "UPDATE messages SET flags = (flags & ?7) | ?4, keywords = '', modseq = ?5"
    " WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 AND modseq <= ?6"
    " AND ((flags & ~?7) != ?4 OR keywords != '')",
    "UPDATE messages SET flags = flags | ?4, modseq = ?5"
    " WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 AND modseq <= ?6"
    " AND (flags & ?4) != ?4",
    "UPDATE messages SET flags = flags & ~?4, modseq = ?5"
    " WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 AND modseq <= ?6"
    " AND (flags & ?4) != 0",
};

struct store_ctx {
    int64_t mbox;
    const struct storage_range *r;
    size_t nr;
    enum storage_store_op op;
    unsigned flags;
    unsigned keep; /* SET: the flags it leaves as they are (STORAGE_STORE_KEEP_SEEN) */
    const char *const *keywords;
    size_t nkeywords;
    uint64_t unchangedsince, limit;
    struct storage_uidlist *failed;
    uint64_t ms; /* the modseq of the changed messages */
    size_t changed;
};

/* UNCHANGEDSINCE: the messages of the set it leaves alone. */
static int store_list_failed(sqlite3 *db, struct store_ctx *c)
{
    sqlite3_stmt *st;
    int rc = db_prepare(db,
                        "SELECT uid FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND"
                        " ? AND modseq > ? ORDER BY uid",
                        &st);

    if (rc)
        return rc;
    for (size_t i = 0; i < c->nr && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, c->mbox);
        sqlite3_bind_int64(st, 2, c->r[i].lo);
        sqlite3_bind_int64(st, 3, c->r[i].hi);
        sqlite3_bind_int64(st, 4, (int64_t)c->unchangedsince);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            if (uidlist_add(c->failed, (uint32_t)sqlite3_column_int64(st, 0)) != 0) {
                rc = SQLITE_NOMEM;
                break;
            }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            rc = rc == SQLITE_NOMEM ? STORAGE_E_NOMEM : err_from_sqlite(db, rc);
        else
            rc = 0;
    }
    db_finalize(st);
    return rc;
}

/* Flags only: set-based, one statement per range. */
static int store_flags(sqlite3 *db, struct store_ctx *c)
{
    sqlite3_stmt *up;
    int rc = db_prepare(db, store_sql_flags[c->op], &up);

    for (size_t i = 0; i < c->nr && rc == 0; i++) {
        sqlite3_bind_int64(up, 1, c->mbox);
        sqlite3_bind_int64(up, 2, c->r[i].lo);
        sqlite3_bind_int64(up, 3, c->r[i].hi);
        sqlite3_bind_int(up, 4, (int)c->flags);
        sqlite3_bind_int64(up, 5, (int64_t)c->ms);
        sqlite3_bind_int64(up, 6, (int64_t)c->limit);
        if (c->op == STORAGE_STORE_SET)
            sqlite3_bind_int(up, 7, (int)c->keep);
        if ((rc = step_done(db, up)) == 0)
            c->changed += (size_t)sqlite3_changes(db);
    }
    db_finalize(up);
    return rc;
}

/* Keywords: each message's list merged with the change. */
static int store_keywords(sqlite3 *db, struct store_ctx *c)
{
    sqlite3_stmt *st = NULL, *up = NULL;
    int rc;

    if ((rc = db_prepare(db,
                         "SELECT uid, flags, keywords FROM messages WHERE mailbox_id = ?"
                         " AND uid BETWEEN ? AND ? AND modseq <= ? ORDER BY uid",
                         &st)) != 0 ||
        (rc = db_prepare(db,
                         "UPDATE messages SET flags = ?, keywords = ?, modseq = ?"
                         " WHERE mailbox_id = ? AND uid = ?",
                         &up)) != 0)
        goto out;
    for (size_t i = 0; i < c->nr && rc == 0; i++) {
        int s;
        sqlite3_bind_int64(st, 1, c->mbox);
        sqlite3_bind_int64(st, 2, c->r[i].lo);
        sqlite3_bind_int64(st, 3, c->r[i].hi);
        sqlite3_bind_int64(st, 4, (int64_t)c->limit);
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            char kw[KWBUF];
            unsigned f = (unsigned)sqlite3_column_int(st, 1), nf;
            const char *cur = (const char *)sqlite3_column_text(st, 2);
            nf = c->op == STORAGE_STORE_SET   ? (f & c->keep) | c->flags
                 : c->op == STORAGE_STORE_ADD ? (f | c->flags)
                                              : (f & ~c->flags);
            if ((rc = keywords_merge(cur, c->op, c->keywords, c->nkeywords, kw, sizeof(kw))) != 0)
                goto out;
            if (nf == f && strcmp(kw, cur ? cur : "") == 0)
                continue;
            sqlite3_bind_int(up, 1, (int)nf);
            sqlite3_bind_text(up, 2, kw, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(up, 3, (int64_t)c->ms);
            sqlite3_bind_int64(up, 4, c->mbox);
            sqlite3_bind_int64(up, 5, sqlite3_column_int64(st, 0));
            if ((rc = step_done(db, up)) != 0)
                goto out;
            c->changed++;
        }
        sqlite3_reset(st);
        if (s != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
    }
out:
    db_finalize(st);
    db_finalize(up);
    return rc;
}

static int store_work(struct txn *t, void *ctx)
{
    struct store_ctx *c = ctx;
    struct pending_event *pe;
    struct mbox_row m;
    sqlite3_stmt *st;
    int rc;

    if ((rc = mbox_by_id(t->db, c->mbox, &m)) != 0)
        return rc;
    c->ms = m.highestmodseq + 1;
    if (c->unchangedsince && c->failed && (rc = store_list_failed(t->db, c)) != 0)
        return rc;
    rc = c->nkeywords == 0 ? store_flags(t->db, c) : store_keywords(t->db, c);
    if (rc)
        return rc;
    if (c->changed == 0)
        return TXN_NOTHING;
    if ((rc = db_run(t->db, "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", c->ms,
                     c->mbox)) != 0)
        return rc;
    if (!(pe = txn_event(t, STORAGE_EV_FLAGS, c->mbox)))
        return STORAGE_E_NOMEM;
    pe->modseq = c->ms;
    pe->store_known = true;
    pe->store_count = c->changed;
    pe->store_kw = c->nkeywords > 0 || c->op == STORAGE_STORE_SET;
    pe->store_kw_added = c->nkeywords > 0 && c->op == STORAGE_STORE_ADD;
    pe->store_set = c->op == STORAGE_STORE_REMOVE ? 0 : c->flags;
    pe->store_clear = c->op == STORAGE_STORE_SET      ? (STORAGE_FLAGS_ALL & ~c->flags & ~c->keep)
                      : c->op == STORAGE_STORE_REMOVE ? c->flags
                                                      : 0;
    /* the changed UIDs, for watchers */
    if ((rc = db_prepare(t->db,
                         "SELECT uid FROM messages WHERE mailbox_id = ? AND modseq = ?"
                         " ORDER BY uid",
                         &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, c->mbox);
    sqlite3_bind_int64(st, 2, (int64_t)c->ms);
    while (sqlite3_step(st) == SQLITE_ROW)
        if (uidlist_add(&pe->uids, (uint32_t)sqlite3_column_int64(st, 0)) != 0)
            break;
    db_finalize(st);
    return 0;
}

int storage_store(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                  enum storage_store_op op, unsigned flags, const char *const *keywords,
                  size_t nkeywords, uint64_t unchangedsince, struct storage_uidlist *failed,
                  storage_msg_cb changed_cb, void *arg)
{
    struct storage_range *r = NULL;
    struct store_ctx c = {.mbox = mbox,
                          .op = op,
                          .flags = flags & STORAGE_FLAGS_ALL,
                          .keep = flags & STORAGE_STORE_KEEP_SEEN ? STORAGE_FLAG_SEEN : 0,
                          .keywords = keywords,
                          .nkeywords = nkeywords,
                          .unchangedsince = unchangedsince,
                          .limit = unchangedsince ? unchangedsince : (uint64_t)INT64_MAX,
                          .failed = failed};
    int rc;

    if (op != STORAGE_STORE_SET && op != STORAGE_STORE_ADD && op != STORAGE_STORE_REMOVE)
        return STORAGE_E_INVAL;
    c.flags &= ~c.keep;
    if ((rc = keywords_check(keywords, nkeywords)) != 0)
        return rc;
    if ((rc = uidset_normalize(set, &r, &c.nr)) != 0)
        return rc;
    c.r = r;
    rc = write_txn(u, store_work, &c);
    free(r);
    if (rc == 0 && c.changed && changed_cb)
        report_changed(u, mbox, c.ms, changed_cb, arg);
    return rc;
}

struct victim {
    uint32_t uid;
    unsigned flags;
    int64_t body_id;
    int64_t size;
    char *path;
};

static void victims_free(struct victim *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].path);
    free(v);
}

/* Collects the rows of set (optionally only \Deleted ones) in UID order. */
static int collect(sqlite3 *db, int64_t mbox, const struct storage_range *r, size_t nr,
                   bool deleted_only, struct victim **out, size_t *n)
{
    sqlite3_stmt *st;
    struct victim *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = db_prepare(db,
                        "SELECT uid, body_id, size, path, flags FROM messages WHERE mailbox_id = ?"
                        " AND uid BETWEEN ? AND ? AND (? = 0 OR (flags & 8) != 0) ORDER BY uid",
                        &st);
    if (rc)
        return rc;
    for (size_t i = 0; i < nr && rc == 0; i++) {
        int s;
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, r[i].lo);
        sqlite3_bind_int64(st, 3, r[i].hi);
        sqlite3_bind_int(st, 4, deleted_only ? 1 : 0);
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            if (array_grow(&v, &cap, cnt, sizeof(*v), 64) != 0) {
                rc = STORAGE_E_NOMEM;
                break;
            }
            v[cnt].uid = (uint32_t)sqlite3_column_int64(st, 0);
            v[cnt].flags = (unsigned)sqlite3_column_int(st, 4);
            v[cnt].body_id = sqlite3_column_int64(st, 1);
            v[cnt].size = sqlite3_column_int64(st, 2);
            v[cnt].path = strdup((const char *)sqlite3_column_text(st, 3));
            if (!v[cnt].path) {
                rc = STORAGE_E_NOMEM;
                break;
            }
            cnt++;
        }
        if (rc == 0 && s != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
        sqlite3_reset(st);
    }
    db_finalize(st);
    if (rc) {
        victims_free(v, cnt);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* Deletes the rows (expunged table, bodies, quota), and unlinks the files.
 * Caller holds the writer lock inside a transaction. */
static int remove_rows(struct storage_user *u, const struct mbox_row *m, struct victim *v, size_t n,
                       uint64_t *ms_out)
{
    char mdir[STORAGE_PATH_MAX], p[STORAGE_PATH_MAX];
    sqlite3_stmt *del = NULL, *ins = NULL;
    int64_t bytes = 0;
    uint64_t ms;
    int rc;

    if ((rc = mbox_path(u, m->name, mdir, sizeof(mdir))) != 0)
        return rc;
    if ((rc = mbox_bump_modseq(u->wdb, m->id, &ms)) != 0)
        return rc;
    /* a rebuilt index must never hand these UIDs out again */
    if ((rc = uidvalidity_file_write(mdir, m->uidvalidity, m->uidnext)) != 0)
        return rc;
    if ((rc = db_prepare(u->wdb, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", &del)) !=
            0 ||
        (rc = db_prepare(u->wdb,
                         "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq)"
                         " VALUES (?, ?, ?)",
                         &ins)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(del, 1, m->id);
        sqlite3_bind_int64(del, 2, v[i].uid);
        if ((rc = step_done(u->wdb, del)) != 0)
            goto out;
        sqlite3_bind_int64(ins, 1, m->id);
        sqlite3_bind_int64(ins, 2, v[i].uid);
        sqlite3_bind_int64(ins, 3, (int64_t)ms);
        if ((rc = step_done(u->wdb, ins)) != 0)
            goto out;
        if ((rc = body_release(u->wdb, v[i].body_id)) != 0)
            goto out;
        bytes += v[i].size;
    }
    if ((rc = db_meta_add(u->wdb, "quota_bytes", -bytes)) != 0 ||
        (rc = db_meta_add(u->wdb, "quota_messages", -(int64_t)n)) != 0)
        goto out;
    /* Unlinked before the commit: a crash in between leaves rows without
     * files, which the next rescan removes; an unlink lost leaves a file
     * whose UID is in `expunged`, which the rescan deletes. */
    {
        bool clean = dir_mtime_changed(u, m->id, mdir, false) == 0;
        for (size_t i = 0; i < n; i++) {
            pathf(p, sizeof(p), "%s/%s", mdir, v[i].path);
            if (unlink(p) < 0 && errno != ENOENT)
                log_warn("storage: user %" PRId64 ": unlink %s: %s", u->id, p, strerror(errno));
        }
        if (clean)
            dir_mtime_changed(u, m->id, mdir, true);
    }
    *ms_out = ms;
out:
    db_finalize(del);
    db_finalize(ins);
    return rc;
}

/* The messages a call expunges, copies or moves. */
struct victims_ctx {
    int64_t src, dst;
    const struct storage_range *r;
    size_t nr;
    bool deleted_only, move;
    struct victim *v;
    size_t n;
    char **made; /* COPY/MOVE: the links made in dst */
    size_t nmade;
    uint32_t first_uid; /* COPY/MOVE: dst UID of v[0], then one by one */
};

/* Queues the event of a change of c's messages in mbox. */
static int victims_event(struct txn *t, const struct victims_ctx *c, enum storage_event_type type,
                         int64_t mbox, uint64_t modseq)
{
    struct pending_event *pe = txn_event(t, type, mbox);

    if (!pe)
        return STORAGE_E_NOMEM;
    pe->modseq = modseq;
    for (size_t i = 0; i < c->n; i++)
        if (uidlist_add(&pe->uids,
                        type == STORAGE_EV_NEW ? c->first_uid + (uint32_t)i : c->v[i].uid) != 0) {
            pe->partial = true;
            break;
        }
    return 0;
}

static int expunge_work(struct txn *t, void *ctx)
{
    struct victims_ctx *c = ctx;
    struct mbox_row m;
    uint64_t ms = 0;
    int rc;

    if ((rc = mbox_by_id(t->db, c->src, &m)) != 0 ||
        (rc = collect(t->db, c->src, c->r, c->nr, c->deleted_only, &c->v, &c->n)) != 0)
        return rc;
    if (c->n == 0)
        return TXN_NOTHING;
    if ((rc = remove_rows(t->u, &m, c->v, c->n, &ms)) != 0)
        return rc;
    return victims_event(t, c, STORAGE_EV_EXPUNGE, c->src, ms);
}

int storage_expunge(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                    bool deleted_only, struct storage_uidlist *expunged)
{
    struct victims_ctx c = {.src = mbox, .deleted_only = deleted_only};
    struct storage_range *r = NULL;
    int rc;

    if ((rc = uidset_normalize(set, &r, &c.nr)) != 0)
        return rc;
    c.r = r;
    rc = write_txn(u, expunge_work, &c);
    for (size_t i = 0; rc == 0 && expunged && i < c.n; i++)
        uidlist_add(expunged, c.v[i].uid);
    victims_free(c.v, c.n);
    free(r);
    return rc;
}

/* Each message of v gets a row more sharing its body (body_ref, with one
 * statement for all). */
static int bodies_ref(sqlite3 *db, const struct victim *v, size_t n)
{
    sqlite3_stmt *st;
    int rc = db_prepare(db, "UPDATE bodies SET refs = refs + 1 WHERE id = ?", &st);

    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, v[i].body_id);
        rc = step_done(db, st);
    }
    db_finalize(st);
    return rc;
}

/* Links each message into dst/cur under its new UID and adds its row. */
static int copy_rows(struct txn *t, struct victims_ctx *c, const char *sdir, const char *ddir,
                     uint64_t dms)
{
    char a[STORAGE_PATH_MAX], b[STORAGE_PATH_MAX];
    sqlite3_stmt *st;
    int rc = db_prepare(t->db,
                        "INSERT INTO messages(mailbox_id, uid, body_id, path, size,"
                        " internal_date, save_date, flags, file_flags, keywords, modseq)"
                        " SELECT ?1, ?2, body_id, ?3, size, internal_date, ?4, flags, flags,"
                        " keywords, ?5 FROM messages WHERE mailbox_id = ?6 AND uid = ?7",
                        &st);

    for (size_t i = 0; i < c->n && rc == 0; i++) {
        char unique[256], fname[512], rel[600];
        uint32_t nu = c->first_uid + (uint32_t)i;
        /* current flags go into the new name */
        if ((rc = make_unique(unique, sizeof(unique))) != 0 ||
            (rc = msg_file_name(fname, sizeof(fname), unique, nu, (uint64_t)c->v[i].size,
                                c->v[i].flags)) != 0)
            break;
        pathf(a, sizeof(a), "%s/%s", sdir, c->v[i].path);
        pathf(b, sizeof(b), "%s/cur/%s", ddir, fname);
        if (link(a, b) < 0) {
            rc = errno == ENOENT ? STORAGE_E_NOMSG : err_from_errno(errno);
            break;
        }
        if (!(c->made[c->nmade] = strdup(b))) {
            unlink(b);
            rc = STORAGE_E_NOMEM;
            break;
        }
        c->nmade++;
        pathf(rel, sizeof(rel), "cur/%s", fname);
        sqlite3_bind_int64(st, 1, c->dst);
        sqlite3_bind_int64(st, 2, nu);
        sqlite3_bind_text(st, 3, rel, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, now_unix());
        sqlite3_bind_int64(st, 5, (int64_t)dms);
        sqlite3_bind_int64(st, 6, c->src);
        sqlite3_bind_int64(st, 7, c->v[i].uid);
        rc = step_done(t->db, st);
    }
    db_finalize(st);
    return rc;
}

static int copy_work(struct txn *t, void *ctx)
{
    struct victims_ctx *c = ctx;
    struct storage_user *u = t->u;
    char sdir[STORAGE_PATH_MAX], ddir[STORAGE_PATH_MAX], p[STORAGE_PATH_MAX];
    struct mbox_row ms_row, md_row;
    uint64_t dms = 0, sms = 0;
    int64_t bytes = 0;
    bool clean;
    int rc;

    if ((rc = mbox_by_id(t->db, c->src, &ms_row)) != 0 ||
        (rc = mbox_by_id(t->db, c->dst, &md_row)) != 0 ||
        (rc = collect(t->db, c->src, c->r, c->nr, false, &c->v, &c->n)) != 0)
        return rc;
    if (c->n == 0)
        return TXN_NOTHING;
    for (size_t i = 0; i < c->n; i++)
        bytes += c->v[i].size;
    if (!c->move) {
        uint64_t room, msgs;
        if ((rc = quota_room_db(u, t->db, &room, &msgs)) != 0)
            return rc;
        if ((uint64_t)bytes > room || c->n > msgs)
            return STORAGE_E_QUOTA;
    }
    if ((uint64_t)md_row.uidnext + c->n >= UINT32_MAX)
        return STORAGE_E_FAIL;
    c->first_uid = md_row.uidnext;
    if ((rc = mbox_path(u, ms_row.name, sdir, sizeof(sdir))) != 0 ||
        (rc = mbox_path(u, md_row.name, ddir, sizeof(ddir))) != 0)
        return rc;
    if (!(c->made = calloc(c->n, sizeof(*c->made))))
        return STORAGE_E_NOMEM;
    clean = dir_mtime_changed(u, c->dst, ddir, false) == 0;
    if ((rc = mbox_bump_modseq(t->db, c->dst, &dms)) != 0 ||
        (rc = copy_rows(t, c, sdir, ddir, dms)) != 0)
        return rc;
    pathf(p, sizeof(p), "%s/cur", ddir);
    if ((rc = fsync_dir(p)) != 0)
        return rc;
    if ((rc = mbox_set_uidnext(t->db, c->dst, md_row.uidnext + (uint32_t)c->n)) != 0)
        return rc;
    if (clean)
        dir_mtime_changed(u, c->dst, ddir, true);
    /* the new rows share the bodies and count in the quota (a MOVE's
     * remove_rows then releases the old rows and takes their part off) */
    if ((rc = bodies_ref(t->db, c->v, c->n)) != 0 ||
        (rc = db_meta_add(t->db, "quota_bytes", bytes)) != 0 ||
        (rc = db_meta_add(t->db, "quota_messages", (int64_t)c->n)) != 0)
        return rc;
    if (c->move) {
        /* refresh the row: uidnext moved */
        if (c->src == c->dst && (rc = mbox_by_id(t->db, c->src, &ms_row)) != 0)
            return rc;
        if ((rc = remove_rows(u, &ms_row, c->v, c->n, &sms)) != 0)
            return rc;
    }
    if ((rc = victims_event(t, c, STORAGE_EV_NEW, c->dst, dms)) != 0)
        return rc;
    return c->move ? victims_event(t, c, STORAGE_EV_EXPUNGE, c->src, sms) : 0;
}

/* A failed COPY or MOVE leaves no link behind. */
static void copy_undo(struct txn *t, void *ctx)
{
    struct victims_ctx *c = ctx;

    for (size_t i = 0; i < c->nmade; i++)
        unlink(c->made[i]);
}

static int copy_move(struct storage_user *u, int64_t src, const struct storage_uidset *set,
                     int64_t dst, bool move, struct storage_uidlist *src_uids,
                     struct storage_uidlist *dst_uids)
{
    static const struct txn_path path = {.work = copy_work, .undo = copy_undo};
    struct victims_ctx c = {.src = src, .dst = dst, .move = move};
    struct storage_range *r = NULL;
    int rc;

    if ((rc = uidset_normalize(set, &r, &c.nr)) != 0)
        return rc;
    c.r = r;
    rc = write_txn_path(u, &path, &c);
    for (size_t i = 0; rc == 0 && i < c.n; i++) {
        if (src_uids)
            uidlist_add(src_uids, c.v[i].uid);
        if (dst_uids)
            uidlist_add(dst_uids, c.first_uid + (uint32_t)i);
    }
    for (size_t i = 0; i < c.nmade; i++)
        free(c.made[i]);
    free(c.made);
    victims_free(c.v, c.n);
    free(r);
    return rc;
}

int storage_copy(struct storage_user *u, int64_t src, const struct storage_uidset *set, int64_t dst,
                 struct storage_uidlist *src_uids, struct storage_uidlist *dst_uids)
{
    return copy_move(u, src, set, dst, false, src_uids, dst_uids);
}

int storage_move(struct storage_user *u, int64_t src, const struct storage_uidset *set, int64_t dst,
                 struct storage_uidlist *src_uids, struct storage_uidlist *dst_uids)
{
    return copy_move(u, src, set, dst, true, src_uids, dst_uids);
}

/* A rename the sync did, undone when its transaction does not commit. */
struct sync_rename {
    char *from, *to;
};

struct sync_ctx {
    size_t max, done;
    size_t *left;
    struct sync_rename *ren;
    size_t nren, capren;
};

static void sync_renames_free(struct sync_ctx *c)
{
    for (size_t i = 0; i < c->nren; i++) {
        free(c->ren[i].from);
        free(c->ren[i].to);
    }
    free(c->ren);
    c->ren = NULL;
    c->nren = c->capren = 0;
}

/* Notes the rename from -> to, done; out of memory, it is undone at once
 * (a rename the transaction could not put back is not made). */
static int sync_note_rename(struct sync_ctx *c, const char *from, const char *to)
{
    struct sync_rename *r;

    if (array_grow(&c->ren, &c->capren, c->nren, sizeof(*c->ren), 64) != 0)
        goto oom;
    r = &c->ren[c->nren];
    if (!(r->from = strdup(from)) || !(r->to = strdup(to))) {
        free(r->from);
        goto oom;
    }
    c->nren++;
    return 0;
oom:
    if (rename(to, from) < 0)
        log_warn("storage: %s: could not be renamed back: %s", to, strerror(errno));
    return STORAGE_E_NOMEM;
}

/* The renames in one mailbox are over: its cur/ is made durable. */
static void sync_dir_done(struct storage_user *u, int64_t mbox, const char *mdir, bool clean)
{
    char p[STORAGE_PATH_MAX];

    pathf(p, sizeof(p), "%s/cur", mdir);
    fsync_dir(p);
    if (clean)
        dir_mtime_changed(u, mbox, mdir, true);
}

static int sync_work(struct txn *t, void *ctx)
{
    struct sync_ctx *c = ctx;
    struct storage_user *u = t->u;
    char mdir[STORAGE_PATH_MAX], a[STORAGE_PATH_MAX], b[STORAGE_PATH_MAX];
    sqlite3_stmt *st = NULL, *up = NULL;
    int64_t last_mbox = -1;
    bool clean = false;
    int rc, s;

    if ((rc = db_prepare(t->db,
                         "SELECT m.mailbox_id, b.name, m.uid, m.path, m.flags, m.size"
                         " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
                         " WHERE m.flags != m.file_flags ORDER BY m.mailbox_id, m.uid LIMIT ?",
                         &st)) != 0 ||
        (rc = db_prepare(t->db,
                         "UPDATE messages SET path = ?, file_flags = ? WHERE mailbox_id = ?"
                         " AND uid = ?",
                         &up)) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, c->max ? (int64_t)c->max : INT64_MAX);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t mbox = sqlite3_column_int64(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        uint32_t uid = (uint32_t)sqlite3_column_int64(st, 2);
        const char *path = (const char *)sqlite3_column_text(st, 3);
        unsigned flags = (unsigned)sqlite3_column_int(st, 4);
        uint64_t size = (uint64_t)sqlite3_column_int64(st, 5);
        const char *slash = strchr(path, '/');
        char unique[256], fname[512], rel[600];
        uint32_t fu;
        unsigned ff;
        bool hi;

        if (mbox != last_mbox) {
            if (last_mbox >= 0)
                sync_dir_done(u, last_mbox, mdir, clean);
            if ((rc = mbox_path(u, name, mdir, sizeof(mdir))) != 0)
                goto out;
            clean = dir_mtime_changed(u, mbox, mdir, false) == 0;
            last_mbox = mbox;
        }
        msg_file_parse(slash ? slash + 1 : path, unique, sizeof(unique), &fu, &ff, &hi);
        if ((rc = msg_file_name(fname, sizeof(fname), unique, uid, size, flags)) != 0)
            goto out;
        pathf(rel, sizeof(rel), "cur/%s", fname);
        pathf(a, sizeof(a), "%s/%s", mdir, path);
        pathf(b, sizeof(b), "%s/%s", mdir, rel);
        if (strcmp(a, b) != 0) {
            if (rename(a, b) < 0) {
                if (errno != ENOENT) {
                    rc = err_from_errno(errno);
                    goto out;
                }
                continue; /* gone: the next rescan settles it */
            }
            /* a name the index does not hold until the commit: one left
             * by a rollback would be taken by the next rescan as a rename
             * by another program, its flags over those stored since */
            if ((rc = sync_note_rename(c, a, b)) != 0)
                goto out;
        }
        sqlite3_bind_text(up, 1, rel, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(up, 2, (int)flags);
        sqlite3_bind_int64(up, 3, mbox);
        sqlite3_bind_int64(up, 4, uid);
        if ((rc = step_done(t->db, up)) != 0)
            goto out;
        c->done++;
    }
    if (s != SQLITE_DONE) {
        rc = err_from_sqlite(t->db, s);
        goto out;
    }
    if (last_mbox >= 0)
        sync_dir_done(u, last_mbox, mdir, clean);
out:
    db_finalize(st);
    db_finalize(up);
    return rc;
}

/* The transaction did not commit: the files get back the names the index
 * holds, the last renamed first. */
static void sync_undo(struct txn *t, void *ctx)
{
    struct sync_ctx *c = ctx;

    (void)t;
    for (size_t i = c->nren; i-- > 0;)
        if (rename(c->ren[i].to, c->ren[i].from) < 0 && errno != ENOENT)
            log_warn("storage: %s: could not be renamed back: %s", c->ren[i].to, strerror(errno));
}

static void sync_committed(struct txn *t, void *ctx)
{
    struct sync_ctx *c = ctx;
    sqlite3_stmt *st;

    if (!c->left)
        return;
    *c->left = 0;
    if (db_prepare(t->db, "SELECT count(*) FROM messages WHERE flags != file_flags", &st) == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            *c->left = (size_t)sqlite3_column_int64(st, 0);
        db_finalize(st);
    }
}

int storage_sync_flags(struct storage_user *u, size_t max, size_t *done, size_t *left)
{
    static const struct txn_path path = {
        .work = sync_work, .undo = sync_undo, .committed = sync_committed};
    struct sync_ctx c = {.max = max, .left = left};
    int rc;

    if (done)
        *done = 0;
    rc = write_txn_path(u, &path, &c);
    sync_renames_free(&c);
    if (rc == 0 && done)
        *done = c.done;
    return rc;
}

int storage_changes(struct storage_user *u, int64_t mbox, uint64_t since, storage_msg_cb cb,
                    void *arg, struct storage_uidlist *vanished)
{
    return storage_changes_floor(u, mbox, since, cb, arg, vanished, NULL);
}

int storage_changes_floor(struct storage_user *u, int64_t mbox, uint64_t since, storage_msg_cb cb,
                          void *arg, struct storage_uidlist *vanished, uint64_t *floor)
{
    struct mbox_row m;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = reader_get(u);
    int rc, s;

    if (!db)
        return STORAGE_E_TEMP;
    if ((rc = db_exec(db, "BEGIN")) != 0 || (rc = mbox_by_id(db, mbox, &m)) != 0)
        goto out;
    /* read in the same transaction as the expunges: a prune between the
     * two cannot hide any */
    if (floor && (rc = vanished_floor_get(db, mbox, m.uidvalidity, floor)) != 0)
        goto out;
    if (cb) {
        if ((rc = db_prepare(db,
                             "SELECT " MSG_COLS " FROM messages m WHERE m.mailbox_id = ?"
                             " AND m.modseq > ? ORDER BY m.uid",
                             &st)) != 0)
            goto out;
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, (int64_t)since);
        if ((rc = msg_rows(db, st, 0, cb, arg, NULL)) != 0)
            goto out;
        db_finalize(st);
        st = NULL;
    }
    if (vanished) {
        if ((rc = db_prepare(db,
                             "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ?"
                             " ORDER BY uid",
                             &st)) != 0)
            goto out;
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, (int64_t)since);
        while ((s = sqlite3_step(st)) == SQLITE_ROW)
            if (uidlist_add(vanished, (uint32_t)sqlite3_column_int64(st, 0)) != 0) {
                rc = STORAGE_E_NOMEM;
                goto out;
            }
        if (s != SQLITE_DONE)
            rc = err_from_sqlite(db, s);
    }
out:
    db_finalize(st);
    reader_put(u, db);
    return rc;
}
