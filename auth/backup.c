/* The account database in backups (coffrectl backup / restore): an online
 * copy of <data_dir>/accounts.sqlite, and one account's row carried from a
 * backup's copy into a live database. */
#include "auth/auth.h"
#include "auth/auth_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BUSY_MS 10000

static void set_err(char *err, size_t len, const char *what, const char *why)
{
    if (err && len)
        snprintf(err, len, "%s: %s", what, why);
}

int auth_db_backup(const char *data_dir, const char *dest_file, char *err, size_t errlen)
{
    char path[PATH_MAX];
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *bk;
    int r, fd;

    if (auth_db_backend(data_dir) == AUTH_BACKEND_POSTGRESQL) {
        set_err(err, errlen, "accounts_backend",
                "not with postgresql: back the directory up with pg_dump");
        return AUTH_E_TEMP;
    }
    if (auth_db_sqlite_path(data_dir, path, sizeof(path)) < 0) {
        set_err(err, errlen, data_dir, "path too long");
        return AUTH_E_TEMP;
    }
    if (access(path, F_OK) < 0) {
        set_err(err, errlen, path, strerror(errno));
        return AUTH_E_NOUSER;
    }
    unlink(dest_file);
    /* it holds password hashes: private from its creation */
    if ((fd = open(dest_file, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        set_err(err, errlen, dest_file, strerror(errno));
        return AUTH_E_TEMP;
    }
    close(fd);
    r = sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_open_v2(dest_file, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
    if (r != SQLITE_OK) {
        set_err(err, errlen, path, sqlite3_errstr(r));
        goto out;
    }
    sqlite3_busy_timeout(src, BUSY_MS);
    /* one step: one read transaction, which in WAL mode holds no writer */
    if (!(bk = sqlite3_backup_init(dst, "main", src, "main"))) {
        set_err(err, errlen, dest_file, sqlite3_errmsg(dst));
        r = SQLITE_ERROR;
        goto out;
    }
    for (int attempt = 0; (r = sqlite3_backup_step(bk, -1)) == SQLITE_BUSY && attempt < 200;
         attempt++)
        sqlite3_sleep(50);
    sqlite3_backup_finish(bk);
    if (r == SQLITE_DONE)
        r = sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    else
        set_err(err, errlen, path, sqlite3_errstr(r));
out:
    sqlite3_close(src);
    if (sqlite3_close(dst) != SQLITE_OK && r == SQLITE_OK)
        r = SQLITE_ERROR;
    if (r != SQLITE_OK) {
        unlink(dest_file);
        return AUTH_E_TEMP;
    }
    if ((fd = open(dest_file, O_RDONLY | O_CLOEXEC)) >= 0) {
        fsync(fd);
        close(fd);
    }
    return AUTH_OK;
}

/* The row of address in db: the columns copied, in this order. */
#define COPY_COLUMNS "id, address, hash, disabled, quota, created, max_messages"

/* The accounts of a backup's database (src_dir/accounts.sqlite), opened
 * read-only (a backup may be on a medium that cannot be written): all of
 * them (address NULL) or address's. */
static int backup_accounts(const char *src_dir, const char *address,
                           int (*cb)(const struct auth_account *a, void *arg), void *arg)
{
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int rc = AUTH_E_TEMP, r = SQLITE_ERROR;

    snprintf(path, sizeof(path), "%s/accounts.sqlite", src_dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL) ==
            SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT id, address, disabled, quota, max_messages, created"
                           " FROM accounts WHERE ?1 IS NULL OR address = ?1 ORDER BY id",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, address, -1, SQLITE_STATIC);
        rc = address ? AUTH_E_NOUSER : AUTH_OK;
        while ((r = sqlite3_step(q)) == SQLITE_ROW) {
            struct auth_account a = {0};
            a.id = sqlite3_column_int64(q, 0);
            snprintf(a.address, sizeof(a.address), "%s", (const char *)sqlite3_column_text(q, 1));
            a.disabled = sqlite3_column_int(q, 2) != 0;
            a.quota_bytes = (uint64_t)sqlite3_column_int64(q, 3);
            a.quota_messages = (uint64_t)sqlite3_column_int64(q, 4);
            a.created = sqlite3_column_int64(q, 5);
            rc = AUTH_OK;
            if (cb(&a, arg) != 0) {
                rc = AUTH_E_TEMP;
                break;
            }
        }
        if (r != SQLITE_DONE && r != SQLITE_ROW)
            rc = AUTH_E_TEMP;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return rc;
}

static int copy_one(const struct auth_account *a, void *arg)
{
    *(struct auth_account *)arg = *a;
    return 0;
}

int auth_backup_lookup(const char *src_dir, const char *address, struct auth_account *out)
{
    return backup_accounts(src_dir, address, copy_one, out);
}

int auth_backup_list(const char *src_dir, int (*cb)(const struct auth_account *a, void *arg),
                     void *arg)
{
    return backup_accounts(src_dir, NULL, cb, arg);
}

/* One column of the account's row beyond COPY_COLUMNS; nothing when the
 * backup has no such column. 0 or -1. */
static int copy_column(sqlite3 *src, sqlite3 *dst, const char *column, const char *address,
                       int64_t id, char *err, size_t errlen)
{
    sqlite3_stmt *q = NULL, *up = NULL;
    char sql[128];
    int rc = 0;

    snprintf(sql, sizeof(sql), "SELECT %s FROM accounts WHERE address = ?", column);
    if (sqlite3_prepare_v2(src, sql, -1, &q, NULL) != SQLITE_OK)
        return 0; /* no such column in this backup */
    sqlite3_bind_text(q, 1, address, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) {
        snprintf(sql, sizeof(sql), "UPDATE accounts SET %s = ? WHERE id = ?", column);
        if (sqlite3_prepare_v2(dst, sql, -1, &up, NULL) != SQLITE_OK ||
            sqlite3_bind_value(up, 1, sqlite3_column_value(q, 0)) != SQLITE_OK ||
            sqlite3_bind_int64(up, 2, id) != SQLITE_OK || sqlite3_step(up) != SQLITE_DONE) {
            set_err(err, errlen, "accounts", sqlite3_errmsg(dst));
            rc = -1;
        }
    }
    sqlite3_finalize(q);
    sqlite3_finalize(up);
    return rc;
}

/* The rows of one of the account's tables, under the id the account has
 * here: select (one parameter, the address) gives the columns that follow
 * the account's id in insert. Nothing when the backup has no such table. */
static int copy_rows(sqlite3 *src, sqlite3 *dst, const char *table, const char *select,
                     const char *insert, int ncols, const char *address, int64_t id, char *err,
                     size_t errlen)
{
    sqlite3_stmt *q = NULL, *up = NULL;
    int rc = 0;

    if (sqlite3_prepare_v2(src, select, -1, &q, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(q, 1, address, -1, SQLITE_STATIC);
    if (sqlite3_prepare_v2(dst, insert, -1, &up, NULL) != SQLITE_OK) {
        set_err(err, errlen, table, sqlite3_errmsg(dst));
        rc = -1;
    }
    while (rc == 0 && sqlite3_step(q) == SQLITE_ROW) {
        sqlite3_reset(up);
        sqlite3_bind_int64(up, 1, id);
        for (int c = 0; c < ncols; c++)
            sqlite3_bind_value(up, c + 2, sqlite3_column_value(q, c));
        if (sqlite3_step(up) != SQLITE_DONE) {
            set_err(err, errlen, table, sqlite3_errmsg(dst));
            rc = -1;
        }
    }
    sqlite3_finalize(q);
    sqlite3_finalize(up);
    return rc;
}

/* The access control lists of the account's mailboxes and their share
 * settings, its group memberships (groups that exist here), and what
 * others granted it on mailboxes that still have an access control list
 * here (a mailbox deleted since is not brought back by a grant). An entry
 * naming an address is taken only when that address is an account here:
 * rights are never granted ahead to an address someone may take later. */
static int copy_acl(sqlite3 *src, sqlite3 *dst, const char *address, int64_t id, char *err,
                    size_t errlen)
{
    if (copy_rows(src, dst, "acl",
                  "SELECT x.mailbox, x.ident, x.rights FROM acl x"
                  " JOIN accounts a ON a.id = x.owner WHERE a.address = ?",
                  "INSERT OR IGNORE INTO acl (owner, mailbox, ident, rights)"
                  " SELECT ?1, ?2, ?3, ?4 WHERE ltrim(?3, '-') = 'anyone'"
                  " OR EXISTS (SELECT 1 FROM accounts WHERE address = ltrim(?3, '-'))"
                  " OR EXISTS (SELECT 1 FROM acl_group WHERE '$' || name = ltrim(?3, '-'))",
                  3, address, id, err, errlen) != 0 ||
        copy_rows(src, dst, "mailbox_share",
                  "SELECT x.mailbox, x.seen_shared FROM mailbox_share x"
                  " JOIN accounts a ON a.id = x.owner WHERE a.address = ?",
                  "INSERT OR IGNORE INTO mailbox_share (owner, mailbox, seen_shared)"
                  " VALUES (?, ?, ?)",
                  2, address, id, err, errlen) != 0 ||
        copy_rows(src, dst, "acl_member",
                  "SELECT g.name FROM acl_member m JOIN acl_group g ON g.id = m.group_id"
                  " JOIN accounts a ON a.id = m.account WHERE a.address = ?",
                  "INSERT OR IGNORE INTO acl_member (group_id, account)"
                  " SELECT id, ?1 FROM acl_group WHERE name = ?2",
                  1, address, id, err, errlen) != 0)
        return -1;
    return copy_rows(src, dst, "acl",
                     "SELECT o.address, x.mailbox, x.ident, x.rights FROM acl x"
                     " JOIN accounts o ON o.id = x.owner"
                     " WHERE x.ident = ?1 OR x.ident = '-' || ?1",
                     "INSERT OR IGNORE INTO acl (owner, mailbox, ident, rights)"
                     " SELECT o.id, ?3, ?4, ?5 FROM accounts o WHERE ?1 IS NOT NULL"
                     " AND o.address = ?2"
                     " AND EXISTS (SELECT 1 FROM acl WHERE owner = o.id AND mailbox = ?3)",
                     4, address, id, err, errlen);
}

/* What an account has beyond COPY_COLUMNS, carried when the backup has it
 * (a backup made before it existed has not): the SCRAM secrets, so that a
 * client that logs in with SCRAM only still can after a restore, the app
 * passwords of its phones and mail clients, and its client certificate
 * settings (require_client_cert and the pinned fingerprints). 0 or -1. */
static int copy_extra(sqlite3 *src, sqlite3 *dst, const char *address, int64_t id, char *err,
                      size_t errlen)
{
    if (copy_column(src, dst, "scram", address, id, err, errlen) != 0 ||
        copy_column(src, dst, "require_client_cert", address, id, err, errlen) != 0)
        return -1;
    /* its app passwords and pinned client certificates, under the id the
     * account has here */
    if (copy_rows(src, dst, "app_passwords",
                  "SELECT p.selector, p.label, p.hash, p.services, p.created, p.last_used"
                  " FROM app_passwords p JOIN accounts a ON a.id = p.account"
                  " WHERE a.address = ?",
                  "INSERT INTO app_passwords (account, selector, label, hash, services,"
                  " created, last_used) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  6, address, id, err, errlen) != 0)
        return -1;
    if (copy_rows(src, dst, "client_certs",
                  "SELECT c.fingerprint, c.added"
                  " FROM client_certs c JOIN accounts a ON a.id = c.account_id"
                  " WHERE a.address = ?",
                  "INSERT INTO client_certs (account_id, fingerprint, added) VALUES (?, ?, ?)", 2,
                  address, id, err, errlen) != 0)
        return -1;
    return copy_acl(src, dst, address, id, err, errlen);
}

int auth_user_copy(const char *src_dir, const char *dst_dir, const char *address,
                   struct auth_account *out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_stmt *q = NULL, *ins = NULL;
    struct auth_db *live;
    int r, rc = AUTH_E_TEMP;

    if (auth_db_backend(dst_dir) == AUTH_BACKEND_POSTGRESQL) {
        set_err(err, errlen, "accounts_backend",
                "not with postgresql: restore the account with coffrectl accounts import");
        return AUTH_E_TEMP;
    }
    /* the live database with its schema as coffre makes it */
    if ((rc = auth_db_open(dst_dir, &live, err, errlen)) != AUTH_OK)
        return rc;
    rc = auth_user_get(live, address, out);
    auth_db_close(live);
    if (rc != AUTH_E_NOUSER)
        return rc == AUTH_OK ? AUTH_E_EXISTS : rc;
    rc = AUTH_E_TEMP;

    snprintf(path, sizeof(path), "%s/accounts.sqlite", src_dir);
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(src, "SELECT " COPY_COLUMNS " FROM accounts WHERE address = ?", -1, &q,
                           NULL) != SQLITE_OK) {
        set_err(err, errlen, path, src ? sqlite3_errmsg(src) : "cannot open");
        goto out;
    }
    sqlite3_bind_text(q, 1, address, -1, SQLITE_STATIC);
    if ((r = sqlite3_step(q)) != SQLITE_ROW) {
        rc = r == SQLITE_DONE ? AUTH_E_NOUSER : AUTH_E_TEMP;
        set_err(err, errlen, address, "not in the backup");
        goto out;
    }
    auth_db_sqlite_path(dst_dir, path, sizeof(path));
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) !=
        SQLITE_OK) {
        set_err(err, errlen, path, dst ? sqlite3_errmsg(dst) : "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(dst, BUSY_MS);
    /* the same id when it is free (the store is users/<id>), else a new one */
    if (sqlite3_prepare_v2(dst,
                           "INSERT INTO accounts(" COPY_COLUMNS ") SELECT CASE WHEN EXISTS"
                           " (SELECT 1 FROM accounts WHERE id = ?1) THEN NULL ELSE ?1 END,"
                           " ?2, ?3, ?4, ?5, ?6, ?7",
                           -1, &ins, NULL) != SQLITE_OK) {
        set_err(err, errlen, path, sqlite3_errmsg(dst));
        goto out;
    }
    for (int c = 0; c < 7; c++)
        sqlite3_bind_value(ins, c + 1, sqlite3_column_value(q, c));
    if (sqlite3_step(ins) != SQLITE_DONE) {
        set_err(err, errlen, path, sqlite3_errmsg(dst));
        goto out;
    }
    memset(out, 0, sizeof(*out));
    out->id = sqlite3_last_insert_rowid(dst);
    snprintf(out->address, sizeof(out->address), "%s", address);
    if (copy_extra(src, dst, address, out->id, err, errlen) != 0)
        goto out;
    rc = AUTH_OK;
out:
    sqlite3_finalize(q);
    sqlite3_finalize(ins);
    sqlite3_close(src);
    sqlite3_close(dst);
    return rc;
}
