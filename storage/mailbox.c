/* Mailboxes: lookup, LIST, CREATE, DELETE, RENAME, subscriptions, STATUS,
 * and the per-folder "coffre-uidvalidity" file that lets a rebuilt index keep
 * UIDVALIDITY and never reuse a UID. */
#include "storage/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/base/log.h"

int mbox_row_decode(sqlite3_stmt *st, struct mbox_row *out)
{
    const unsigned char *name = sqlite3_column_text(st, 1);
    size_t len = name ? strlen((const char *)name) : 0;

    if (len > STORAGE_MBOX_NAME_MAX)
        return STORAGE_E_CORRUPT;
    out->id = sqlite3_column_int64(st, 0);
    memcpy(out->name, name ? (const char *)name : "", len + 1);
    out->uidvalidity = (uint32_t)sqlite3_column_int64(st, 2);
    out->uidnext = (uint32_t)sqlite3_column_int64(st, 3);
    out->highestmodseq = (uint64_t)sqlite3_column_int64(st, 4);
    return 0;
}

/* The one row of st, a query of MBOX_COLS with its parameter bound;
 * finalizes st. */
static int mbox_one(sqlite3 *db, sqlite3_stmt *st, struct mbox_row *out)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        rc = mbox_row_decode(st, out);
    else if (rc == SQLITE_DONE)
        rc = STORAGE_E_NOMBOX;
    else
        rc = err_from_sqlite(db, rc);
    db_finalize(st);
    return rc;
}

int mbox_by_id(sqlite3 *db, int64_t id, struct mbox_row *out)
{
    sqlite3_stmt *st;
    int rc = db_prepare(db, "SELECT " MBOX_COLS " FROM mailboxes WHERE id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    return mbox_one(db, st, out);
}

int mbox_by_name(sqlite3 *db, const char *name, struct mbox_row *out)
{
    sqlite3_stmt *st;
    int rc = db_prepare(db, "SELECT " MBOX_COLS " FROM mailboxes WHERE name = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    return mbox_one(db, st, out);
}

int mbox_bump_modseq(sqlite3 *db, int64_t mbox, uint64_t *modseq)
{
    sqlite3_stmt *st;
    int rc = db_prepare(db,
                        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ? "
                        "RETURNING highestmodseq",
                        &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, mbox);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *modseq = (uint64_t)sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    }
    rc = rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
    db_finalize(st);
    return rc;
}

int mbox_set_uidnext(sqlite3 *db, int64_t mbox, uint32_t uidnext)
{
    return db_run(db, "UPDATE mailboxes SET uidnext = max(uidnext, ?) WHERE id = ?", uidnext, mbox);
}

uint32_t new_uidvalidity(sqlite3 *db)
{
    int64_t last = 0, v = now_unix();

    db_meta_get(db, "last_uidvalidity", &last);
    if (v <= last)
        v = last + 1;
    if (v > (int64_t)UINT32_MAX || v <= 0)
        v = 1;
    db_meta_set(db, "last_uidvalidity", v);
    return (uint32_t)v;
}

/* Written with tmp + rename + fsync: a crash leaves the old or the new one. */
int uidvalidity_file_write(const char *mdir, uint32_t uidvalidity, uint32_t uidnext)
{
    char path[STORAGE_PATH_MAX], tmp[STORAGE_PATH_MAX], buf[64];
    int fd, n, rc = 0;

    pathf(path, sizeof(path), "%s/" UIDVALIDITY_FILE, mdir);
    pathf(tmp, sizeof(tmp), "%s/tmp/" UIDVALIDITY_FILE ".%d", mdir, (int)getpid());
    n = pathf(buf, sizeof(buf), "%" PRIu32 " %" PRIu32 "\n", uidvalidity, uidnext);
    /* tmp/ is the user's Maildir: whatever sits under this name (a leftover,
     * or a symlink planted to make us truncate another file) is removed and
     * the file created anew, never opened through a link */
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_from_errno(errno);
    if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0)
        rc = err_from_errno(errno ? errno : EIO);
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = err_from_errno(errno);
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return fsync_dir(mdir);
}

int uidvalidity_file_read(const char *mdir, uint32_t *uidvalidity, uint32_t *uidnext)
{
    char path[STORAGE_PATH_MAX], buf[64];
    unsigned long v, nx;
    ssize_t n;
    int fd;

    pathf(path, sizeof(path), "%s/" UIDVALIDITY_FILE, mdir);
    /* not through a symlink, and a FIFO under this name must not block */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (sscanf(buf, "%lu %lu", &v, &nx) != 2 || v == 0 || v > UINT32_MAX || nx > UINT32_MAX)
        return -1;
    *uidvalidity = (uint32_t)v;
    *uidnext = nx ? (uint32_t)nx : 1;
    return 0;
}

int ensure_maildir_dirs(const char *mdir)
{
    static const char *const sub[] = {"cur", "new", "tmp"};
    char p[STORAGE_PATH_MAX];
    bool made = false;

    if (mkdir(mdir, 0700) == 0)
        made = true;
    else if (errno != EEXIST)
        return err_from_errno(errno);
    for (size_t i = 0; i < 3; i++) {
        pathf(p, sizeof(p), "%s/%s", mdir, sub[i]);
        if (mkdir(p, 0700) == 0)
            made = true;
        else if (errno != EEXIST)
            return err_from_errno(errno);
    }
    if (made) {
        int rc = fsync_dir(mdir);
        char parent[STORAGE_PATH_MAX];
        char *slash;
        pathf(parent, sizeof(parent), "%s", mdir);
        slash = strrchr(parent, '/');
        if (rc == 0 && slash) {
            *slash = '\0';
            rc = fsync_dir(parent);
        }
        return rc;
    }
    return 0;
}

/* Caller holds the writer lock inside a transaction; name is normalized. */
int mbox_create_locked(struct storage_user *u, const char *name, unsigned special_use,
                       uint32_t uidvalidity, uint32_t uidnext, int64_t *id_out)
{
    char mdir[STORAGE_PATH_MAX];
    struct mbox_row row;
    int rc;

    rc = mbox_by_name(u->wdb, name, &row);
    if (rc == 0)
        return STORAGE_E_EXISTS;
    if (rc != STORAGE_E_NOMBOX)
        return rc;
    /* parents first (RFC 3501 CREATE: superior names are created) */
    {
        char parent[STORAGE_MBOX_NAME_MAX + 1];
        const char *slash = strrchr(name, '/');
        if (slash) {
            size_t pl = (size_t)(slash - name);
            memcpy(parent, name, pl);
            parent[pl] = '\0';
            rc = mbox_create_locked(u, parent, 0, 0, 0, NULL);
            if (rc && rc != STORAGE_E_EXISTS)
                return rc;
        }
    }
    if ((rc = mbox_path(u, name, mdir, sizeof(mdir))) != 0)
        return rc;
    if ((rc = ensure_maildir_dirs(mdir)) != 0)
        return rc;
    if (uidvalidity == 0) {
        uint32_t fv, fn;
        /* a folder left on disk (index lost) keeps its numbers */
        if (uidvalidity_file_read(mdir, &fv, &fn) == 0) {
            uidvalidity = fv;
            if (fn > uidnext)
                uidnext = fn;
        } else {
            uidvalidity = new_uidvalidity(u->wdb);
        }
    }
    if (uidnext == 0)
        uidnext = 1;
    if ((rc = uidvalidity_file_write(mdir, uidvalidity, uidnext)) != 0)
        return rc;
    rc = db_run_text(u->wdb,
                     "INSERT INTO mailboxes(name, uidvalidity, uidnext, highestmodseq, special_use,"
                     " oid) VALUES (?, ?, ?, 1, ?, ?)",
                     name, uidvalidity, uidnext, special_use, object_id_new());
    if (rc == 0 && id_out)
        *id_out = sqlite3_last_insert_rowid(u->wdb);
    return rc;
}

/* What LIST and storage_mbox_get give of a mailbox: MBOX_COLS, then
 * special_use, subscribed, has_children, oid (decoded by mbox_info_decode). */
#define MBOX_INFO_SELECT                                                                           \
    "SELECT id, name, uidvalidity, uidnext, highestmodseq, special_use,"                           \
    " EXISTS (SELECT 1 FROM subscriptions s WHERE s.name = m.name) AS sub,"                        \
    " EXISTS (SELECT 1 FROM mailboxes c WHERE c.name > m.name || '/'"                              \
    "   AND c.name < m.name || '0'), oid"                                                          \
    " FROM mailboxes m"

static void mbox_info_decode(sqlite3_stmt *st, const char *name, struct storage_mbox *m)
{
    memset(m, 0, sizeof(*m));
    m->id = sqlite3_column_int64(st, 0);
    pathf(m->name, sizeof(m->name), "%s", name);
    m->uidvalidity = (uint32_t)sqlite3_column_int64(st, 2);
    m->uidnext = (uint32_t)sqlite3_column_int64(st, 3);
    m->highestmodseq = (uint64_t)sqlite3_column_int64(st, 4);
    m->special_use = (unsigned)sqlite3_column_int(st, 5);
    m->subscribed = sqlite3_column_int(st, 6) != 0;
    m->has_children = sqlite3_column_int(st, 7) != 0;
    m->oid = (uint64_t)sqlite3_column_int64(st, 8);
}

int mbox_info_read(sqlite3 *db, const char *name, int64_t id, struct storage_mbox *out)
{
    sqlite3_stmt *st;
    int rc;

    rc = db_prepare(
        db, name ? MBOX_INFO_SELECT " WHERE name = ?" : MBOX_INFO_SELECT " WHERE id = ?", &st);
    if (rc)
        return rc;
    if (name)
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        mbox_info_decode(st, (const char *)sqlite3_column_text(st, 1), out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? STORAGE_E_NOMBOX : err_from_sqlite(db, rc);
    }
    db_finalize(st);
    return rc;
}

int storage_mbox_get(struct storage_user *u, const char *name, struct storage_mbox *out)
{
    char norm[STORAGE_MBOX_NAME_MAX + 1];
    sqlite3 *db;
    int rc;

    if ((rc = name_normalize(name, norm, sizeof(norm))) != 0)
        return rc;
    if (!(db = reader_get(u)))
        return STORAGE_E_TEMP;
    rc = mbox_info_read(db, norm, 0, out);
    reader_put(u, db);
    return rc;
}

int storage_mbox_list(struct storage_user *u, const char *pattern, bool subscribed_only,
                      const char *after, int (*cb)(void *arg, const struct storage_mbox *m),
                      void *arg)
{
    sqlite3_stmt *st;
    sqlite3 *db;
    int rc;

    if (!(db = reader_get(u)))
        return STORAGE_E_TEMP;
    rc = db_prepare(db,
                    MBOX_INFO_SELECT
                    " WHERE m.name > ?2 AND (?1 = 0 OR sub)"
                    " UNION ALL"
                    " SELECT 0, name, 0, 0, 0, 0, 1, 0, 0 FROM subscriptions s"
                    " WHERE ?1 AND s.name > ?2"
                    " AND NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.name = s.name)"
                    " ORDER BY 2",
                    &st);
    if (rc) {
        reader_put(u, db);
        return rc;
    }
    sqlite3_bind_int(st, 1, subscribed_only ? 1 : 0);
    sqlite3_bind_text(st, 2, after ? after : "", -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct storage_mbox m;
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (!name || strlen(name) > STORAGE_MBOX_NAME_MAX)
            continue;
        if (!storage_pattern_match(pattern, name))
            continue;
        mbox_info_decode(st, name, &m);
        if (cb(arg, &m) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
    db_finalize(st);
    reader_put(u, db);
    return rc;
}

/* Announces a change of the mailbox list (create, delete, rename). */
static int mailbox_event(struct txn *t, int64_t id)
{
    return txn_event(t, STORAGE_EV_MAILBOX, id) ? 0 : STORAGE_E_NOMEM;
}

struct create_ctx {
    char name[STORAGE_MBOX_NAME_MAX + 1];
    unsigned special_use;
};

/* STORAGE_E_LIMIT when creating name and its missing parents would take
 * the account past storage_limits.max_mailboxes. */
int mailbox_room(sqlite3 *db, const char *name)
{
    char p[STORAGE_MBOX_NAME_MAX + 1];
    int64_t have = 0, missing = 0;
    char *slash;
    int rc;

    if (!storage_limits.max_mailboxes)
        return 0;
    pathf(p, sizeof(p), "%s", name);
    /* the name, then each parent until one exists */
    for (;;) {
        int64_t exists = 0;
        if ((rc = db_int_binds(db, &exists, "SELECT count(*) FROM mailboxes WHERE name = ?", p,
                               NULL, 0)) != 0)
            return rc;
        if (exists)
            break;
        missing++;
        if (!(slash = strrchr(p, '/')))
            break;
        *slash = '\0';
    }
    if ((rc = db_int_binds(db, &have, "SELECT count(*) FROM mailboxes", NULL, NULL, 0)) != 0)
        return rc;
    return missing && have + missing > (int64_t)storage_limits.max_mailboxes ? STORAGE_E_LIMIT : 0;
}

static int create_work(struct txn *t, void *ctx)
{
    struct create_ctx *c = ctx;
    int64_t id = 0;
    int rc = mailbox_room(t->db, c->name);

    if (rc == 0)
        rc = mbox_create_locked(t->u, c->name, c->special_use, 0, 0, &id);

    return rc ? rc : mailbox_event(t, id);
}

/* A write on the mailbox a client named: its name is normalized into norm
 * (STORAGE_MBOX_NAME_MAX + 1 bytes, in ctx) first. */
static int named_write(struct storage_user *u, const char *name, char *norm, txn_work work,
                       void *ctx)
{
    int rc = name_normalize(name, norm, STORAGE_MBOX_NAME_MAX + 1);

    return rc ? rc : write_txn(u, work, ctx);
}

int storage_mbox_create(struct storage_user *u, const char *name, unsigned special_use)
{
    struct create_ctx c = {.special_use = special_use};

    return named_write(u, name, c.name, create_work, &c);
}

/* Removes every message row of a mailbox (bodies released, quota adjusted). */
static int drop_messages(sqlite3 *db, int64_t mbox)
{
    sqlite3_stmt *st;
    int rc = db_prepare(db,
                        "SELECT body_id, count(*), sum(size) FROM messages WHERE mailbox_id = ?"
                        " GROUP BY body_id",
                        &st);
    int64_t bytes = 0, count = 0;

    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, mbox);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t body = sqlite3_column_int64(st, 0);
        int64_t n = sqlite3_column_int64(st, 1);
        count += n;
        bytes += sqlite3_column_int64(st, 2);
        for (int64_t i = 0; i < n && rc == SQLITE_ROW; i++)
            if (body_release(db, body) != 0)
                rc = SQLITE_ERROR;
        if (rc != SQLITE_ROW)
            break;
    }
    rc = rc == SQLITE_DONE ? 0 : (rc == SQLITE_ERROR ? STORAGE_E_FAIL : err_from_sqlite(db, rc));
    db_finalize(st);
    if (rc)
        return rc;
    if ((rc = db_meta_add(db, "quota_bytes", -bytes)) != 0 ||
        (rc = db_meta_add(db, "quota_messages", -count)) != 0 ||
        (rc = db_run(db, "DELETE FROM messages WHERE mailbox_id = ?", mbox)) != 0)
        return rc;
    if ((rc = db_run(db, "DELETE FROM expunged WHERE mailbox_id = ?", mbox)) != 0 ||
        (rc = pseen_forget_mailbox(db, mbox)) != 0)
        return rc;
    return vanished_forget_mailbox(db, mbox);
}

void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    char p[STORAGE_PATH_MAX];

    if (d) {
        while ((de = readdir(d)) != NULL) {
            struct stat sb;
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            pathf(p, sizeof(p), "%s/%s", path, de->d_name);
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                remove_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static int has_children(sqlite3 *db, const char *name, bool *out)
{
    int64_t v = 0;
    int rc = db_int_binds(db, &v,
                          "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE name > ?1 || '/'"
                          " AND name < ?1 || '0')",
                          name, NULL, 0);

    *out = v != 0;
    return rc;
}

struct delete_ctx {
    char name[STORAGE_MBOX_NAME_MAX + 1];
    char mdir[STORAGE_PATH_MAX], trash[STORAGE_PATH_MAX];
    bool moved;
};

static int delete_work(struct txn *t, void *ctx)
{
    struct delete_ctx *c = ctx;
    struct storage_user *u = t->u;
    struct mbox_row m;
    bool kids = false;
    int rc;

    if ((rc = mbox_by_name(t->db, c->name, &m)) != 0)
        return rc;
    if ((rc = has_children(t->db, c->name, &kids)) != 0)
        return rc;
    if (kids)
        return STORAGE_E_CHILDREN;
    if ((rc = mbox_path(u, c->name, c->mdir, sizeof(c->mdir))) != 0)
        return rc;
    /* out of sight first ("..name" is never a folder), removed after commit */
    pathf(c->trash, sizeof(c->trash), "%s/..deleted.%" PRId64 ".%" PRId64, u->maildir, m.id,
          now_unix());
    if (rename(c->mdir, c->trash) == 0)
        c->moved = true;
    else if (errno != ENOENT)
        return err_from_errno(errno);
    if ((rc = drop_messages(t->db, m.id)) != 0 ||
        (rc = db_run(t->db, "DELETE FROM mailboxes WHERE id = ?", m.id)) != 0 ||
        (rc = recent_forget(t, m.id)) != 0)
        return rc;
    return mailbox_event(t, m.id);
}

static void delete_undo(struct txn *t, void *ctx)
{
    struct delete_ctx *c = ctx;

    if (c->moved && rename(c->trash, c->mdir) < 0)
        log_error("storage: user %" PRId64 ": cannot restore %s", t->u->id, c->mdir);
}

static void delete_committed(struct txn *t, void *ctx)
{
    struct delete_ctx *c = ctx;

    fsync_dir(t->u->maildir);
    if (c->moved)
        remove_tree(c->trash);
}

int storage_mbox_delete(struct storage_user *u, const char *name)
{
    static const struct txn_path path = {
        .work = delete_work, .undo = delete_undo, .committed = delete_committed};
    struct delete_ctx c = {.moved = false};
    int rc;

    if ((rc = name_normalize(name, c.name, sizeof(c.name))) != 0)
        return rc;
    if (strcmp(c.name, "INBOX") == 0)
        return STORAGE_E_NOPERM;
    return write_txn_path(u, &path, &c);
}

struct ren {
    int64_t id;
    char from[STORAGE_MBOX_NAME_MAX + 1];
    char to[STORAGE_MBOX_NAME_MAX + 1];
    char from_dir[STORAGE_PATH_MAX];
    char to_dir[STORAGE_PATH_MAX];
    bool done;
};

static int move_subscription(sqlite3 *db, const char *from, const char *to)
{
    sqlite3_stmt *st;
    int rc = db_prepare(db, "UPDATE OR REPLACE subscriptions SET name = ? WHERE name = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, to, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, from, -1, SQLITE_STATIC);
    return db_step_done(db, st);
}

/* RFC 3501 RENAME INBOX: its messages go to a new mailbox `to`, INBOX stays
 * (empty, same UIDVALIDITY, UIDNEXT kept so no UID comes back). */
static int rename_inbox(struct storage_user *u, const char *to, int64_t *newid)
{
    char src[STORAGE_PATH_MAX], dst[STORAGE_PATH_MAX], a[STORAGE_PATH_MAX], b[STORAGE_PATH_MAX];
    struct mbox_row inbox;
    sqlite3_stmt *st;
    int64_t id;
    int rc;

    if ((rc = mbox_by_name(u->wdb, "INBOX", &inbox)) != 0)
        return rc;
    if ((rc = mbox_create_locked(u, to, 0, 0, inbox.uidnext, &id)) != 0)
        return rc;
    *newid = id;
    if ((rc = mbox_path(u, "INBOX", src, sizeof(src))) != 0 ||
        (rc = mbox_path(u, to, dst, sizeof(dst))) != 0)
        return rc;
    if ((rc = db_prepare(u->wdb, "SELECT path FROM messages WHERE mailbox_id = ?", &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, inbox.id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 0);
        pathf(a, sizeof(a), "%s/%s", src, p);
        pathf(b, sizeof(b), "%s/%s", dst, p);
        if (link(a, b) < 0 && errno != EEXIST && errno != ENOENT) {
            rc = err_from_errno(errno);
            db_finalize(st);
            return rc;
        }
    }
    db_finalize(st);
    if (rc != SQLITE_DONE)
        return err_from_sqlite(u->wdb, rc);
    pathf(a, sizeof(a), "%s/cur", dst);
    if ((rc = fsync_dir(a)) != 0)
        return rc;
    pathf(a, sizeof(a), "%s/new", dst);
    if ((rc = fsync_dir(a)) != 0)
        return rc;
    if ((rc = db_run(u->wdb, "UPDATE messages SET mailbox_id = ? WHERE mailbox_id = ?", id,
                     inbox.id)) != 0)
        return rc;
    if ((rc = mbox_set_uidnext(u->wdb, id, inbox.uidnext)) != 0)
        return rc;
    {
        /* the viewers' \Seen goes with the messages */
        struct mbox_row nb;
        if ((rc = mbox_by_id(u->wdb, id, &nb)) != 0 ||
            (rc = pseen_move_mailbox(u->wdb, inbox.id, id, nb.uidvalidity)) != 0)
            return rc;
    }
    {
        uint64_t ms;
        if ((rc = mbox_bump_modseq(u->wdb, inbox.id, &ms)) != 0)
            return rc;
    }
    return 0;
}

/* After the commit of rename_inbox: the INBOX links can go. */
static void unlink_inbox_files(struct storage_user *u, const char *to)
{
    char src[STORAGE_PATH_MAX], dst[STORAGE_PATH_MAX], p[STORAGE_PATH_MAX];
    static const char *const sub[] = {"cur", "new"};

    if (mbox_path(u, "INBOX", src, sizeof(src)) || mbox_path(u, to, dst, sizeof(dst)))
        return;
    for (size_t i = 0; i < 2; i++) {
        DIR *d;
        struct dirent *de;
        pathf(p, sizeof(p), "%s/%s", dst, sub[i]);
        if (!(d = opendir(p)))
            continue;
        while ((de = readdir(d)) != NULL) {
            char a[STORAGE_PATH_MAX];
            if (de->d_name[0] == '.')
                continue;
            pathf(a, sizeof(a), "%s/%s/%s", src, sub[i], de->d_name);
            unlink(a);
        }
        closedir(d);
    }
}

struct rename_ctx {
    char from[STORAGE_MBOX_NAME_MAX + 1], to[STORAGE_MBOX_NAME_MAX + 1];
    struct ren *list; /* the mailbox and its children, parents first */
    size_t n, cap;
    bool inbox;
};

/* The mailbox and its children into c->list, with their new names. */
static int rename_list(sqlite3 *db, struct rename_ctx *c)
{
    size_t fl = strlen(c->from);
    sqlite3_stmt *st;
    int rc = db_prepare(db,
                        "SELECT id, name FROM mailboxes WHERE name = ?1 OR (name > ?1 || '/'"
                        " AND name < ?1 || '0') ORDER BY name",
                        &st);

    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, c->from, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        struct ren *r;
        int k;
        if (array_grow(&c->list, &c->cap, c->n, sizeof(*c->list), 8) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        r = &c->list[c->n];
        memset(r, 0, sizeof(*r));
        r->id = sqlite3_column_int64(st, 0);
        pathf(r->from, sizeof(r->from), "%s", name);
        k = pathf(r->to, sizeof(r->to), "%s%s", c->to, name + fl);
        if (k < 0 || (size_t)k >= sizeof(r->to) || storage_name_check(r->to, NULL, 0) != 0) {
            rc = SQLITE_RANGE;
            break;
        }
        c->n++;
    }
    db_finalize(st);
    if (rc == SQLITE_RANGE)
        return STORAGE_E_BADNAME;
    if (rc != SQLITE_DONE)
        return rc == SQLITE_NOMEM ? STORAGE_E_NOMEM : err_from_sqlite(db, rc);
    return 0;
}

static int rename_work(struct txn *t, void *ctx)
{
    struct rename_ctx *c = ctx;
    struct storage_user *u = t->u;
    struct mbox_row m;
    int rc;

    if ((rc = mbox_by_name(t->db, c->from, &m)) != 0)
        return rc;
    rc = mbox_by_name(t->db, c->to, &m);
    if (rc == 0)
        return STORAGE_E_EXISTS;
    if (rc != STORAGE_E_NOMBOX)
        return rc;
    if (strcmp(c->from, "INBOX") == 0) {
        int64_t id = 0;
        if ((rc = mailbox_room(t->db, c->to)) != 0 || (rc = rename_inbox(u, c->to, &id)) != 0)
            return rc;
        c->inbox = true;
        return mailbox_event(t, id);
    }
    if ((rc = rename_list(t->db, c)) != 0)
        return rc;
    /* missing parents of the new name */
    {
        const char *slash = strrchr(c->to, '/');
        if (slash) {
            char parent[STORAGE_MBOX_NAME_MAX + 1];
            size_t pl = (size_t)(slash - c->to);
            memcpy(parent, c->to, pl);
            parent[pl] = '\0';
            if ((rc = mailbox_room(t->db, parent)) != 0)
                return rc;
            rc = mbox_create_locked(u, parent, 0, 0, 0, NULL);
            if (rc && rc != STORAGE_E_EXISTS)
                return rc;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        struct ren *r = &c->list[i];
        if ((rc = mbox_path(u, r->from, r->from_dir, sizeof(r->from_dir))) != 0 ||
            (rc = mbox_path(u, r->to, r->to_dir, sizeof(r->to_dir))) != 0)
            return rc;
        /* Maildir++ folders are flat: each one is renamed on its own */
        if (rename(r->from_dir, r->to_dir) < 0) {
            if (errno != ENOENT)
                return err_from_errno(errno);
            if ((rc = ensure_maildir_dirs(r->to_dir)) != 0)
                return rc;
        } else {
            r->done = true;
        }
        if ((rc = db_run_text(t->db, "UPDATE mailboxes SET name = ? WHERE id = ?", r->to, r->id)) !=
                0 ||
            (rc = move_subscription(t->db, r->from, r->to)) != 0)
            return rc;
    }
    if ((rc = fsync_dir(u->maildir)) != 0)
        return rc;
    return mailbox_event(t, c->n ? c->list[0].id : 0);
}

/* Folders already renamed go back, children first. */
static void rename_undo(struct txn *t, void *ctx)
{
    struct rename_ctx *c = ctx;

    for (size_t i = c->n; i-- > 0;)
        if (c->list[i].done && rename(c->list[i].to_dir, c->list[i].from_dir) < 0)
            log_error("storage: user %" PRId64 ": rename undo failed for %s", t->u->id,
                      c->list[i].from);
}

static void rename_committed(struct txn *t, void *ctx)
{
    struct rename_ctx *c = ctx;

    if (c->inbox)
        unlink_inbox_files(t->u, c->to);
}

int storage_mbox_rename(struct storage_user *u, const char *from, const char *to)
{
    static const struct txn_path path = {
        .work = rename_work, .undo = rename_undo, .committed = rename_committed};
    struct rename_ctx c = {.list = NULL};
    size_t fl;
    int rc;

    if ((rc = name_normalize(from, c.from, sizeof(c.from))) != 0 ||
        (rc = name_normalize(to, c.to, sizeof(c.to))) != 0)
        return rc;
    if (strcmp(c.to, "INBOX") == 0)
        return STORAGE_E_NOPERM;
    fl = strlen(c.from);
    if (strcmp(c.from, "INBOX") != 0 && strncmp(c.to, c.from, fl) == 0 &&
        (c.to[fl] == '/' || c.to[fl] == '\0'))
        return strcmp(c.to, c.from) == 0 ? STORAGE_E_EXISTS : STORAGE_E_NOPERM;
    rc = write_txn_path(u, &path, &c);
    free(c.list);
    return rc;
}

int subscription_set(sqlite3 *db, const char *name, bool on)
{
    return db_run_binds(db,
                        on ? "INSERT OR IGNORE INTO subscriptions(name) VALUES (?)"
                           : "DELETE FROM subscriptions WHERE name = ?",
                        name, NULL, 0);
}

struct subscribe_ctx {
    char name[STORAGE_MBOX_NAME_MAX + 1];
    bool on;
};

static int subscribe_work(struct txn *t, void *ctx)
{
    struct subscribe_ctx *c = ctx;
    int64_t have = 0, exists = 0;
    int rc;

    if (c->on && storage_limits.max_subscriptions) {
        if ((rc = db_int_binds(t->db, &exists, "SELECT count(*) FROM subscriptions WHERE name = ?",
                               c->name, NULL, 0)) != 0 ||
            (rc = db_int_binds(t->db, &have, "SELECT count(*) FROM subscriptions", NULL, NULL,
                               0)) != 0)
            return rc;
        if (!exists && have >= (int64_t)storage_limits.max_subscriptions)
            return STORAGE_E_LIMIT;
    }
    /* sessions that follow subscriptions (NOTIFY) hear of it as a
     * change of the mailbox list, of no mailbox in particular */
    return (rc = subscription_set(t->db, c->name, c->on)) != 0 ? rc : mailbox_event(t, 0);
}

int storage_subscribe(struct storage_user *u, const char *name, bool on)
{
    struct subscribe_ctx c = {.on = on};

    return named_write(u, name, c.name, subscribe_work, &c);
}

int storage_mbox_status(struct storage_user *u, int64_t mbox, struct storage_status *out)
{
    struct mbox_row m;
    sqlite3_stmt *st;
    sqlite3 *db;
    int rc;

    if (!(db = reader_get(u)))
        return STORAGE_E_TEMP;
    /* one read transaction: counters and mailbox row agree */
    if ((rc = db_exec(db, "BEGIN")) != 0)
        goto out;
    if ((rc = mbox_by_id(db, mbox, &m)) != 0)
        goto out;
    rc = db_prepare(db,
                    "SELECT count(*), total(flags & 1 = 0), total(flags & 8 != 0), total(size),"
                    " total(CASE WHEN flags & 8 != 0 THEN size END)"
                    " FROM messages WHERE mailbox_id = ?",
                    &st);
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, mbox);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->messages = (uint32_t)sqlite3_column_int64(st, 0);
        out->unseen = (uint32_t)sqlite3_column_double(st, 1);
        out->deleted = (uint32_t)sqlite3_column_double(st, 2);
        out->size = (uint64_t)sqlite3_column_double(st, 3);
        out->deleted_size = (uint64_t)sqlite3_column_double(st, 4);
        out->uidnext = m.uidnext;
        out->uidvalidity = m.uidvalidity;
        out->highestmodseq = m.highestmodseq;
        rc = 0;
    } else {
        rc = err_from_sqlite(db, rc);
    }
    db_finalize(st);
out:
    reader_put(u, db);
    return rc;
}
