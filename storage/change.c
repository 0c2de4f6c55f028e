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
                   "SELECT uid, flags, keywords, modseq, size, internal_date, save_date"
                   " FROM messages WHERE mailbox_id = ? AND modseq = ? ORDER BY uid",
                   &st) == 0) {
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, (int64_t)ms);
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct storage_msg m = {0};
            const char *kw = (const char *)sqlite3_column_text(st, 2);
            m.uid = (uint32_t)sqlite3_column_int64(st, 0);
            m.flags = (unsigned)sqlite3_column_int(st, 1);
            m.keywords = kw ? kw : "";
            m.modseq = (uint64_t)sqlite3_column_int64(st, 3);
            m.size = (uint64_t)sqlite3_column_int64(st, 4);
            m.internal_date = sqlite3_column_int64(st, 5);
            m.save_date = sqlite3_column_int64(st, 6);
            if (cb(arg, &m) != 0)
                break;
        }
        sqlite3_finalize(st);
    }
    reader_put(u, db);
}

static const char *const store_sql_flags[3] = {
    /* SET without keywords also clears the keywords */
    "UPDATE messages SET flags = ?4, keywords = '', modseq = ?5"
    " WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 AND modseq <= ?6"
    " AND (flags != ?4 OR keywords != '')",
    "UPDATE messages SET flags = flags | ?4, modseq = ?5"
    " WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 AND modseq <= ?6"
    " AND (flags & ?4) != ?4",
    "UPDATE messages SET flags = flags & ~?4, modseq = ?5"
    " WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 AND modseq <= ?6"
    " AND (flags & ?4) != 0",
};

int storage_store(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                  enum storage_store_op op, unsigned flags, const char *const *keywords,
                  size_t nkeywords, uint64_t unchangedsince, struct storage_uidlist *failed,
                  storage_msg_cb changed_cb, void *arg)
{
    struct pending_event pe = {.type = STORAGE_EV_FLAGS, .mbox = mbox};
    struct storage_range *r = NULL;
    sqlite3_stmt *st = NULL, *up = NULL;
    struct mbox_row m;
    uint64_t ms, limit = unchangedsince ? unchangedsince : (uint64_t)INT64_MAX;
    size_t nr = 0, changed = 0;
    int rc;

    if (op != STORAGE_STORE_SET && op != STORAGE_STORE_ADD && op != STORAGE_STORE_REMOVE)
        return STORAGE_E_INVAL;
    flags &= STORAGE_FLAGS_ALL;
    if ((rc = keywords_check(keywords, nkeywords)) != 0)
        return rc;
    if ((rc = uidset_normalize(set, &r, &nr)) != 0)
        return rc;

    writer_lock(u);
    if ((rc = db_begin(u->wdb)) != 0)
        goto out;
    if ((rc = mbox_by_id(u->wdb, mbox, &m)) != 0)
        goto fail;
    ms = m.highestmodseq + 1;
    if (unchangedsince && failed) {
        if ((rc = db_prepare(u->wdb,
                             "SELECT uid FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND"
                             " ? AND modseq > ? ORDER BY uid",
                             &st)) != 0)
            goto fail;
        for (size_t i = 0; i < nr; i++) {
            sqlite3_bind_int64(st, 1, mbox);
            sqlite3_bind_int64(st, 2, r[i].lo);
            sqlite3_bind_int64(st, 3, r[i].hi);
            sqlite3_bind_int64(st, 4, (int64_t)unchangedsince);
            while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                if (uidlist_add(failed, (uint32_t)sqlite3_column_int64(st, 0)) != 0) {
                    rc = SQLITE_NOMEM;
                    break;
                }
            sqlite3_reset(st);
            if (rc != SQLITE_DONE) {
                rc = rc == SQLITE_NOMEM ? STORAGE_E_NOMEM : err_from_sqlite(u->wdb, rc);
                goto fail;
            }
        }
        sqlite3_finalize(st);
        st = NULL;
    }

    if (nkeywords == 0) {
        /* flags only: set-based, one statement per range */
        if ((rc = db_prepare(u->wdb, store_sql_flags[op], &up)) != 0)
            goto fail;
        for (size_t i = 0; i < nr; i++) {
            sqlite3_bind_int64(up, 1, mbox);
            sqlite3_bind_int64(up, 2, r[i].lo);
            sqlite3_bind_int64(up, 3, r[i].hi);
            sqlite3_bind_int(up, 4, (int)flags);
            sqlite3_bind_int64(up, 5, (int64_t)ms);
            sqlite3_bind_int64(up, 6, (int64_t)limit);
            if ((rc = step_done(u->wdb, up)) != 0)
                goto fail;
            changed += (size_t)sqlite3_changes(u->wdb);
        }
    } else {
        if ((rc = db_prepare(u->wdb,
                             "SELECT uid, flags, keywords FROM messages WHERE mailbox_id = ?"
                             " AND uid BETWEEN ? AND ? AND modseq <= ? ORDER BY uid",
                             &st)) != 0 ||
            (rc = db_prepare(u->wdb,
                             "UPDATE messages SET flags = ?, keywords = ?, modseq = ?"
                             " WHERE mailbox_id = ? AND uid = ?",
                             &up)) != 0)
            goto fail;
        for (size_t i = 0; i < nr; i++) {
            int s;
            sqlite3_bind_int64(st, 1, mbox);
            sqlite3_bind_int64(st, 2, r[i].lo);
            sqlite3_bind_int64(st, 3, r[i].hi);
            sqlite3_bind_int64(st, 4, (int64_t)limit);
            while ((s = sqlite3_step(st)) == SQLITE_ROW) {
                char kw[KWBUF];
                unsigned f = (unsigned)sqlite3_column_int(st, 1), nf;
                const char *cur = (const char *)sqlite3_column_text(st, 2);
                nf = op == STORAGE_STORE_SET   ? flags
                     : op == STORAGE_STORE_ADD ? (f | flags)
                                               : (f & ~flags);
                if ((rc = keywords_merge(cur, op, keywords, nkeywords, kw, sizeof(kw))) != 0)
                    goto fail;
                if (nf == f && strcmp(kw, cur ? cur : "") == 0)
                    continue;
                sqlite3_bind_int(up, 1, (int)nf);
                sqlite3_bind_text(up, 2, kw, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(up, 3, (int64_t)ms);
                sqlite3_bind_int64(up, 4, mbox);
                sqlite3_bind_int64(up, 5, sqlite3_column_int64(st, 0));
                if ((rc = step_done(u->wdb, up)) != 0)
                    goto fail;
                changed++;
            }
            sqlite3_reset(st);
            if (s != SQLITE_DONE) {
                rc = err_from_sqlite(u->wdb, s);
                goto fail;
            }
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (changed == 0) {
        db_rollback(u->wdb);
        goto out;
    }
    sqlite3_finalize(up);
    up = NULL;
    if ((rc = db_prepare(u->wdb, "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", &up)) != 0)
        goto fail;
    sqlite3_bind_int64(up, 1, (int64_t)ms);
    sqlite3_bind_int64(up, 2, mbox);
    if ((rc = step_done(u->wdb, up)) != 0)
        goto fail;
    sqlite3_finalize(up);
    up = NULL;
    /* the changed UIDs, for watchers */
    if ((rc = db_prepare(u->wdb,
                         "SELECT uid FROM messages WHERE mailbox_id = ? AND modseq = ?"
                         " ORDER BY uid",
                         &st)) != 0)
        goto fail;
    sqlite3_bind_int64(st, 1, mbox);
    sqlite3_bind_int64(st, 2, (int64_t)ms);
    while (sqlite3_step(st) == SQLITE_ROW)
        if (uidlist_add(&pe.uids, (uint32_t)sqlite3_column_int64(st, 0)) != 0)
            break;
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = db_commit(u->wdb)) != 0)
        goto out;
    writer_unlock(u);
    free(r);
    if (changed_cb)
        report_changed(u, mbox, ms, changed_cb, arg);
    pe.modseq = ms;
    emit_event(u, &pe);
    storage_uidlist_free(&pe.uids);
    return 0;
fail:
    db_rollback(u->wdb);
out:
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    writer_unlock(u);
    free(r);
    storage_uidlist_free(&pe.uids);
    return rc;
}

struct victim {
    uint32_t uid;
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
                        "SELECT uid, body_id, size, path FROM messages WHERE mailbox_id = ?"
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
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct victim *p = realloc(v, nc * sizeof(*p));
                if (!p) {
                    rc = STORAGE_E_NOMEM;
                    break;
                }
                v = p;
                cap = nc;
            }
            v[cnt].uid = (uint32_t)sqlite3_column_int64(st, 0);
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
    sqlite3_finalize(st);
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
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    return rc;
}

int storage_expunge(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                    bool deleted_only, struct storage_uidlist *expunged)
{
    struct pending_event pe = {.type = STORAGE_EV_EXPUNGE, .mbox = mbox};
    struct storage_range *r = NULL;
    struct victim *v = NULL;
    struct mbox_row m;
    size_t nr = 0, n = 0;
    uint64_t ms = 0;
    int rc;

    if ((rc = uidset_normalize(set, &r, &nr)) != 0)
        return rc;
    writer_lock(u);
    if ((rc = db_begin(u->wdb)) != 0)
        goto out;
    if ((rc = mbox_by_id(u->wdb, mbox, &m)) != 0 ||
        (rc = collect(u->wdb, mbox, r, nr, deleted_only, &v, &n)) != 0)
        goto fail;
    if (n == 0) {
        db_rollback(u->wdb);
        goto out;
    }
    if ((rc = remove_rows(u, &m, v, n, &ms)) != 0)
        goto fail;
    if ((rc = db_commit(u->wdb)) != 0)
        goto out;
    writer_unlock(u);
    for (size_t i = 0; i < n; i++) {
        uidlist_add(&pe.uids, v[i].uid);
        if (expunged)
            uidlist_add(expunged, v[i].uid);
    }
    pe.modseq = ms;
    emit_event(u, &pe);
    storage_uidlist_free(&pe.uids);
    victims_free(v, n);
    free(r);
    return 0;
fail:
    db_rollback(u->wdb);
out:
    writer_unlock(u);
    victims_free(v, n);
    free(r);
    return rc;
}

static int copy_move(struct storage_user *u, int64_t src, const struct storage_uidset *set,
                     int64_t dst, bool move, struct storage_uidlist *src_uids,
                     struct storage_uidlist *dst_uids)
{
    struct pending_event pn = {.type = STORAGE_EV_NEW, .mbox = dst};
    struct pending_event px = {.type = STORAGE_EV_EXPUNGE, .mbox = src};
    char sdir[STORAGE_PATH_MAX], ddir[STORAGE_PATH_MAX], a[STORAGE_PATH_MAX], b[STORAGE_PATH_MAX];
    struct storage_range *r = NULL;
    struct victim *v = NULL;
    char **made = NULL;
    size_t nr = 0, n = 0, nmade = 0;
    sqlite3_stmt *st = NULL;
    struct mbox_row ms_row, md_row;
    uint64_t dms = 0, sms = 0;
    int64_t bytes = 0;
    bool clean;
    int rc;

    if ((rc = uidset_normalize(set, &r, &nr)) != 0)
        return rc;
    writer_lock(u);
    if ((rc = db_begin(u->wdb)) != 0)
        goto out;
    if ((rc = mbox_by_id(u->wdb, src, &ms_row)) != 0 ||
        (rc = mbox_by_id(u->wdb, dst, &md_row)) != 0 ||
        (rc = collect(u->wdb, src, r, nr, false, &v, &n)) != 0)
        goto fail;
    if (n == 0) {
        db_rollback(u->wdb);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        bytes += v[i].size;
    if (!move) {
        uint64_t maxb, maxm;
        int64_t qb = 0, qm = 0;
        pthread_mutex_lock(&u->qlock);
        maxb = u->quota_bytes;
        maxm = u->quota_messages;
        pthread_mutex_unlock(&u->qlock);
        if ((rc = db_meta_get(u->wdb, "quota_bytes", &qb)) != 0 ||
            (rc = db_meta_get(u->wdb, "quota_messages", &qm)) != 0)
            goto fail;
        if ((maxb && (uint64_t)qb + (uint64_t)bytes > maxb) || (maxm && (uint64_t)qm + n > maxm)) {
            rc = STORAGE_E_QUOTA;
            goto fail;
        }
    }
    if ((uint64_t)md_row.uidnext + n >= UINT32_MAX) {
        rc = STORAGE_E_FAIL;
        goto fail;
    }
    if ((rc = mbox_path(u, ms_row.name, sdir, sizeof(sdir))) != 0 ||
        (rc = mbox_path(u, md_row.name, ddir, sizeof(ddir))) != 0)
        goto fail;
    if (!(made = calloc(n, sizeof(*made)))) {
        rc = STORAGE_E_NOMEM;
        goto fail;
    }
    clean = dir_mtime_changed(u, dst, ddir, false) == 0;
    if ((rc = mbox_bump_modseq(u->wdb, dst, &dms)) != 0)
        goto fail;
    if ((rc = db_prepare(u->wdb,
                         "INSERT INTO messages(mailbox_id, uid, body_id, path, size,"
                         " internal_date, save_date, flags, file_flags, keywords, modseq)"
                         " SELECT ?1, ?2, body_id, ?3, size, internal_date, ?4, flags, flags,"
                         " keywords, ?5 FROM messages WHERE mailbox_id = ?6 AND uid = ?7",
                         &st)) != 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        char unique[256], fname[512], rel[600];
        uint32_t nu = md_row.uidnext + (uint32_t)i;
        unsigned flags = 0;
        sqlite3_stmt *fq;
        /* current flags go into the new name */
        if ((rc = db_prepare(u->wdb, "SELECT flags FROM messages WHERE mailbox_id = ? AND uid = ?",
                             &fq)) != 0)
            goto fail;
        sqlite3_bind_int64(fq, 1, src);
        sqlite3_bind_int64(fq, 2, v[i].uid);
        if (sqlite3_step(fq) == SQLITE_ROW)
            flags = (unsigned)sqlite3_column_int(fq, 0);
        sqlite3_finalize(fq);
        if ((rc = make_unique(unique, sizeof(unique))) != 0 ||
            (rc = msg_file_name(fname, sizeof(fname), unique, nu, (uint64_t)v[i].size, flags)) != 0)
            goto fail;
        pathf(a, sizeof(a), "%s/%s", sdir, v[i].path);
        pathf(b, sizeof(b), "%s/cur/%s", ddir, fname);
        if (link(a, b) < 0) {
            rc = errno == ENOENT ? STORAGE_E_NOMSG : err_from_errno(errno);
            goto fail;
        }
        if (!(made[nmade] = strdup(b))) {
            unlink(b);
            rc = STORAGE_E_NOMEM;
            goto fail;
        }
        nmade++;
        pathf(rel, sizeof(rel), "cur/%s", fname);
        sqlite3_bind_int64(st, 1, dst);
        sqlite3_bind_int64(st, 2, nu);
        sqlite3_bind_text(st, 3, rel, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, now_unix());
        sqlite3_bind_int64(st, 5, (int64_t)dms);
        sqlite3_bind_int64(st, 6, src);
        sqlite3_bind_int64(st, 7, v[i].uid);
        if ((rc = step_done(u->wdb, st)) != 0)
            goto fail;
        if (!move) {
            sqlite3_stmt *bq;
            if ((rc = db_prepare(u->wdb, "UPDATE bodies SET refs = refs + 1 WHERE id = ?", &bq)))
                goto fail;
            sqlite3_bind_int64(bq, 1, v[i].body_id);
            rc = step_done(u->wdb, bq);
            sqlite3_finalize(bq);
            if (rc)
                goto fail;
        }
    }
    pathf(a, sizeof(a), "%s/cur", ddir);
    if ((rc = fsync_dir(a)) != 0)
        goto fail;
    if ((rc = mbox_set_uidnext(u->wdb, dst, md_row.uidnext + (uint32_t)n)) != 0)
        goto fail;
    if (clean)
        dir_mtime_changed(u, dst, ddir, true);
    if (!move) {
        if ((rc = db_meta_add(u->wdb, "quota_bytes", bytes)) != 0 ||
            (rc = db_meta_add(u->wdb, "quota_messages", (int64_t)n)) != 0)
            goto fail;
    } else {
        /* the moved rows keep their bodies: take a reference for the new
         * rows so that remove_rows can release the old ones */
        sqlite3_stmt *bq;
        if ((rc = db_prepare(u->wdb, "UPDATE bodies SET refs = refs + 1 WHERE id = ?", &bq)))
            goto fail;
        for (size_t i = 0; i < n && rc == 0; i++) {
            sqlite3_bind_int64(bq, 1, v[i].body_id);
            rc = step_done(u->wdb, bq);
        }
        sqlite3_finalize(bq);
        if (rc)
            goto fail;
        /* remove_rows adjusts quota down; the new rows add it back */
        if ((rc = db_meta_add(u->wdb, "quota_bytes", bytes)) != 0 ||
            (rc = db_meta_add(u->wdb, "quota_messages", (int64_t)n)) != 0)
            goto fail;
        if (src == dst) {
            /* refresh the row: uidnext moved */
            if ((rc = mbox_by_id(u->wdb, src, &ms_row)) != 0)
                goto fail;
        }
        if ((rc = remove_rows(u, &ms_row, v, n, &sms)) != 0)
            goto fail;
    }
    if ((rc = db_commit(u->wdb)) != 0)
        goto fail_nodb;
    writer_unlock(u);
    for (size_t i = 0; i < n; i++) {
        if (src_uids)
            uidlist_add(src_uids, v[i].uid);
        if (dst_uids)
            uidlist_add(dst_uids, md_row.uidnext + (uint32_t)i);
        uidlist_add(&pn.uids, md_row.uidnext + (uint32_t)i);
        if (move)
            uidlist_add(&px.uids, v[i].uid);
    }
    pn.modseq = dms;
    emit_event(u, &pn);
    if (move) {
        px.modseq = sms;
        emit_event(u, &px);
    }
    storage_uidlist_free(&pn.uids);
    storage_uidlist_free(&px.uids);
    rc = 0;
    goto done;
fail:
    db_rollback(u->wdb);
fail_nodb:
    for (size_t i = 0; i < nmade; i++)
        unlink(made[i]);
out:
    writer_unlock(u);
done:
    sqlite3_finalize(st);
    for (size_t i = 0; i < nmade; i++)
        free(made[i]);
    free(made);
    victims_free(v, n);
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

int storage_sync_flags(struct storage_user *u, size_t max, size_t *done, size_t *left)
{
    char mdir[STORAGE_PATH_MAX], a[STORAGE_PATH_MAX], b[STORAGE_PATH_MAX];
    sqlite3_stmt *st = NULL, *up = NULL;
    int64_t last_mbox = -1;
    size_t cnt = 0;
    bool clean = false;
    int rc, s;

    if (done)
        *done = 0;
    writer_lock(u);
    if ((rc = db_begin(u->wdb)) != 0)
        goto out;
    if ((rc = db_prepare(u->wdb,
                         "SELECT m.mailbox_id, b.name, m.uid, m.path, m.flags, m.size"
                         " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
                         " WHERE m.flags != m.file_flags ORDER BY m.mailbox_id, m.uid LIMIT ?",
                         &st)) != 0 ||
        (rc = db_prepare(u->wdb,
                         "UPDATE messages SET path = ?, file_flags = ? WHERE mailbox_id = ?"
                         " AND uid = ?",
                         &up)) != 0)
        goto fail;
    sqlite3_bind_int64(st, 1, max ? (int64_t)max : INT64_MAX);
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
            if (last_mbox >= 0) {
                pathf(a, sizeof(a), "%s/cur", mdir);
                fsync_dir(a);
                if (clean)
                    dir_mtime_changed(u, last_mbox, mdir, true);
            }
            if ((rc = mbox_path(u, name, mdir, sizeof(mdir))) != 0)
                goto fail;
            clean = dir_mtime_changed(u, mbox, mdir, false) == 0;
            last_mbox = mbox;
        }
        msg_file_parse(slash ? slash + 1 : path, unique, sizeof(unique), &fu, &ff, &hi);
        if ((rc = msg_file_name(fname, sizeof(fname), unique, uid, size, flags)) != 0)
            goto fail;
        pathf(rel, sizeof(rel), "cur/%s", fname);
        pathf(a, sizeof(a), "%s/%s", mdir, path);
        pathf(b, sizeof(b), "%s/%s", mdir, rel);
        if (strcmp(a, b) != 0 && rename(a, b) < 0) {
            if (errno != ENOENT) {
                rc = err_from_errno(errno);
                goto fail;
            }
            continue; /* gone: the next rescan settles it */
        }
        sqlite3_bind_text(up, 1, rel, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(up, 2, (int)flags);
        sqlite3_bind_int64(up, 3, mbox);
        sqlite3_bind_int64(up, 4, uid);
        if ((rc = step_done(u->wdb, up)) != 0)
            goto fail;
        cnt++;
    }
    if (s != SQLITE_DONE) {
        rc = err_from_sqlite(u->wdb, s);
        goto fail;
    }
    if (last_mbox >= 0) {
        pathf(a, sizeof(a), "%s/cur", mdir);
        fsync_dir(a);
        if (clean)
            dir_mtime_changed(u, last_mbox, mdir, true);
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = db_commit(u->wdb)) != 0)
        goto out;
    if (left) {
        *left = 0;
        if (db_prepare(u->wdb, "SELECT count(*) FROM messages WHERE flags != file_flags", &st) ==
            0) {
            if (sqlite3_step(st) == SQLITE_ROW)
                *left = (size_t)sqlite3_column_int64(st, 0);
        }
    }
    if (done)
        *done = cnt;
    goto out;
fail:
    db_rollback(u->wdb);
out:
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    writer_unlock(u);
    return rc;
}

int storage_changes(struct storage_user *u, int64_t mbox, uint64_t since, storage_msg_cb cb,
                    void *arg, struct storage_uidlist *vanished)
{
    struct mbox_row m;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = reader_get(u);
    int rc, s;

    if (!db)
        return STORAGE_E_TEMP;
    if ((rc = db_exec(db, "BEGIN")) != 0 || (rc = mbox_by_id(db, mbox, &m)) != 0)
        goto out;
    if (cb) {
        if ((rc = db_prepare(db,
                             "SELECT uid, flags, keywords, modseq, size, internal_date, save_date"
                             " FROM messages WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                             &st)) != 0)
            goto out;
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, (int64_t)since);
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            struct storage_msg msg = {0};
            const char *kw = (const char *)sqlite3_column_text(st, 2);
            msg.uid = (uint32_t)sqlite3_column_int64(st, 0);
            msg.flags = (unsigned)sqlite3_column_int(st, 1);
            msg.keywords = kw ? kw : "";
            msg.modseq = (uint64_t)sqlite3_column_int64(st, 3);
            msg.size = (uint64_t)sqlite3_column_int64(st, 4);
            msg.internal_date = sqlite3_column_int64(st, 5);
            msg.save_date = sqlite3_column_int64(st, 6);
            if (cb(arg, &msg) != 0) {
                s = SQLITE_DONE;
                break;
            }
        }
        if (s != SQLITE_DONE) {
            rc = err_from_sqlite(db, s);
            goto out;
        }
        sqlite3_finalize(st);
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
    sqlite3_finalize(st);
    reader_put(u, db);
    return rc;
}
