/* The account database, <data_dir>/accounts.sqlite, and the rules for
 * account addresses. Used by coffrectl directly and by the login service
 * from the thread pool; WAL and a busy timeout let both run at once. */
#include "auth/auth.h"
#include "auth/acl.h"
#include "auth/auth_priv.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DB_BUSY_TIMEOUT_MS 10000
#define DB_SETUP_ATTEMPTS 100    /* opening: BUSY without waiting, retried */
#define DB_SETUP_RETRY_US 100000 /* 10 s in all, like the busy timeout */
#define LOCAL_PART_MAX 64

struct auth_db {
    sqlite3 *h;
    unsigned scram_iter; /* for the SCRAM secrets of passwords set here */
    unsigned acl_max;    /* entries of one mailbox's ACL */
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS accounts ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT," /* never reused: names users/<id> */
    " address TEXT UNIQUE NOT NULL COLLATE NOCASE,"
    " hash TEXT NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0,"
    " quota INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER NOT NULL,"
    " max_messages INTEGER NOT NULL DEFAULT 0);" AUTH_APP_SCHEMA_SQL AUTH_SLOTS_SCHEMA_SQL;

/* Columns added since the first release, for databases made before them:
 * each is added once (a process that finds it there leaves it). */
static const struct {
    const char *column, *sql;
} upgrades[] = {
    {"max_messages", "ALTER TABLE accounts ADD COLUMN max_messages INTEGER NOT NULL DEFAULT 0"},
    /* SCRAM-SHA-256 secrets (auth/scram.c's text form); NULL until the
     * password is set or next used with PLAIN/LOGIN */
    {"scram", "ALTER TABLE accounts ADD COLUMN scram TEXT"},
    {"require_client_cert",
     "ALTER TABLE accounts ADD COLUMN require_client_cert INTEGER NOT NULL DEFAULT 0"},
    /* the slot that holds the account, and the target of a move in progress */
    {"slot", "ALTER TABLE accounts ADD COLUMN slot TEXT NOT NULL DEFAULT ''"},
    {"move_to", "ALTER TABLE accounts ADD COLUMN move_to TEXT NOT NULL DEFAULT ''"},
};

/* ---- addresses ---- */

/* RFC 5322 atext without the characters that mean something in paths,
 * shells or our own logs: '/', '\'', '`'. */
static bool local_char_ok(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&*+-=?^_{|}~.", c) != NULL;
}

static bool domain_ok(const char *d, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)d[i];

        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && d[len - 1] != '-';
}

static bool local_ok(const char *l, size_t len)
{
    if (len == 0 || len > LOCAL_PART_MAX)
        return false;
    if (l[0] == '.' || l[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!local_char_ok((unsigned char)l[i]))
            return false;
        if (l[i] == '.' && l[i + 1] == '.')
            return false;
    }
    return true;
}

int auth_normalize_address(const char *in, size_t len, const char *default_domain, char *out,
                           size_t outlen)
{
    char buf[AUTH_ADDR_MAX];
    const char *at;
    size_t n, dlen = 0;

    if (!in || !out || outlen == 0 || len == 0 || len >= sizeof(buf))
        return AUTH_E_BADADDR;
    at = memchr(in, '@', len);
    if (!at) {
        if (!default_domain || !*default_domain)
            return AUTH_E_BADADDR;
        dlen = strlen(default_domain);
        if (len + 1 + dlen >= sizeof(buf))
            return AUTH_E_BADADDR;
    }
    n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        buf[n++] = (char)c;
    }
    if (!at) {
        buf[n++] = '@';
        for (size_t i = 0; i < dlen; i++) {
            unsigned char c = (unsigned char)default_domain[i];

            if (c >= 'A' && c <= 'Z')
                c = (unsigned char)(c - 'A' + 'a');
            buf[n++] = (char)c;
        }
    }
    buf[n] = '\0';

    /* exactly one '@', splitting two valid halves */
    at = memchr(buf, '@', n);
    if (!at || memchr(at + 1, '@', n - (size_t)(at - buf) - 1))
        return AUTH_E_BADADDR;
    if (!local_ok(buf, (size_t)(at - buf)) || !domain_ok(at + 1, n - (size_t)(at - buf) - 1))
        return AUTH_E_BADADDR;
    if (n + 1 > outlen)
        return AUTH_E_BADADDR;
    memcpy(out, buf, n + 1);
    return AUTH_OK;
}

/* ---- database ---- */

static void set_err(char *err, size_t errlen, const char *what, const char *detail)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", what, detail);
}

/* Adds the columns an older accounts database lacks, in one write
 * transaction, so that two processes opening it at once add each once. */
static int upgrade(sqlite3 *h, char **msg)
{
    int r = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, msg);

    for (size_t i = 0; r == SQLITE_OK && i < sizeof(upgrades) / sizeof(upgrades[0]); i++) {
        sqlite3_stmt *st = NULL;
        bool have;

        r = sqlite3_prepare_v2(h, "SELECT 1 FROM pragma_table_info('accounts') WHERE name = ?", -1,
                               &st, NULL);
        if (r != SQLITE_OK)
            break;
        sqlite3_bind_text(st, 1, upgrades[i].column, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        have = r == SQLITE_ROW;
        sqlite3_finalize(st);
        if (r != SQLITE_ROW && r != SQLITE_DONE)
            break;
        r = have ? SQLITE_OK : sqlite3_exec(h, upgrades[i].sql, NULL, NULL, msg);
    }
    if (r == SQLITE_OK)
        return sqlite3_exec(h, "COMMIT", NULL, NULL, msg);
    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* The process's directory (auth_db_configure): set once at start, before
 * any thread opens a database, read-only afterwards. */
static struct {
    int backend;
    char dsn[4096];
    char home[PATH_MAX]; /* the data directory the setting is for */
} directory;

int auth_db_configure(const char *backend, const char *dsn, const char *data_dir, char *err,
                      size_t errlen)
{
    int b;

    if (!backend || !*backend || !strcmp(backend, "sqlite"))
        b = AUTH_BACKEND_SQLITE;
    else if (!strcmp(backend, "postgresql"))
        b = AUTH_BACKEND_POSTGRESQL;
    else {
        set_err(err, errlen, "accounts_backend", "must be sqlite or postgresql");
        return AUTH_E_TEMP;
    }
    if (b == AUTH_BACKEND_POSTGRESQL && (!dsn || !*dsn)) {
        set_err(err, errlen, "accounts_dsn", "postgresql needs a connection string");
        return AUTH_E_TEMP;
    }
    if (b == AUTH_BACKEND_SQLITE && dsn && *dsn && dsn[0] != '/') {
        set_err(err, errlen, "accounts_dsn", "with sqlite, the absolute path of the accounts file");
        return AUTH_E_TEMP;
    }
    if (snprintf(directory.dsn, sizeof(directory.dsn), "%s", dsn ? dsn : "") >=
            (int)sizeof(directory.dsn) ||
        snprintf(directory.home, sizeof(directory.home), "%s", data_dir ? data_dir : "") >=
            (int)sizeof(directory.home)) {
        set_err(err, errlen, "accounts_dsn", "too long");
        return AUTH_E_TEMP;
    }
    directory.backend = b;
    return AUTH_OK;
}

int auth_db_backend(const char *data_dir)
{
    if (data_dir && directory.home[0] && !strcmp(data_dir, directory.home))
        return directory.backend;
    return AUTH_BACKEND_SQLITE;
}

/* The accounts file of data_dir: the configured one for the configured data
 * directory, <data_dir>/accounts.sqlite otherwise. */
int auth_db_sqlite_path(const char *data_dir, char *path, size_t cap)
{
    int r;

    if (data_dir && directory.home[0] && !strcmp(data_dir, directory.home) &&
        directory.backend == AUTH_BACKEND_SQLITE && directory.dsn[0])
        r = snprintf(path, cap, "%s", directory.dsn);
    else
        r = snprintf(path, cap, "%s/accounts.sqlite", data_dir);
    return r < 0 || (size_t)r >= cap ? -1 : 0;
}

int auth_db_open(const char *data_dir, struct auth_db **out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct auth_db *db;
    char *msg = NULL;
    int fd, r;

    *out = NULL;
    if (auth_db_backend(data_dir) == AUTH_BACKEND_POSTGRESQL) {
        set_err(err, errlen, "accounts_backend", "postgresql is not built in");
        return AUTH_E_TEMP;
    }
    r = auth_db_sqlite_path(data_dir, path, sizeof(path));
    if (r < 0) {
        set_err(err, errlen, data_dir, "path too long");
        return AUTH_E_TEMP;
    }
    /* create it private to us: it holds password hashes (SQLite gives the
     * -wal and -shm files the mode of the database file) */
    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, errlen, path, strerror(errno));
        return AUTH_E_TEMP;
    }
    close(fd);

    db = calloc(1, sizeof(*db));
    if (!db) {
        set_err(err, errlen, path, "out of memory");
        return AUTH_E_TEMP;
    }
    r = sqlite3_open_v2(path, &db->h,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
    if (r != SQLITE_OK) {
        set_err(err, errlen, path, db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(r));
        goto fail;
    }
    sqlite3_busy_timeout(db->h, DB_BUSY_TIMEOUT_MS);
    /* Switching to WAL and creating the schema can meet another process
     * doing the same (coffred starting while coffrectl adds a user); SQLite
     * then answers BUSY without waiting, to avoid a deadlock. Try again. */
    for (int attempt = 0;; attempt++) {
        r = sqlite3_exec(db->h,
                         "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                         "PRAGMA foreign_keys=ON;",
                         NULL, NULL, &msg);
        if (r == SQLITE_OK)
            r = sqlite3_exec(db->h, schema_sql, NULL, NULL, &msg);
        if (r == SQLITE_OK)
            r = upgrade(db->h, &msg);
        if (r == SQLITE_OK)
            r = sqlite3_exec(db->h, auth_certs_schema, NULL, NULL, &msg);
        if (r == SQLITE_OK)
            r = sqlite3_exec(db->h, acl_schema_sql, NULL, NULL, &msg);
        if ((r & 0xff) != SQLITE_BUSY || attempt >= DB_SETUP_ATTEMPTS)
            break;
        sqlite3_free(msg);
        msg = NULL;
        usleep(DB_SETUP_RETRY_US);
    }
    if (r != SQLITE_OK) {
        set_err(err, errlen, path, msg ? msg : sqlite3_errstr(r));
        sqlite3_free(msg);
        goto fail;
    }
    db->scram_iter = AUTH_SCRAM_ITER_DEFAULT;
    db->acl_max = ACL_MAX_ENTRIES_DEFAULT;
    *out = db;
    return AUTH_OK;
fail:
    sqlite3_close(db->h);
    free(db);
    return AUTH_E_TEMP;
}

struct sqlite3 *auth_db_handle(struct auth_db *db)
{
    return db->h;
}

void auth_db_close(struct auth_db *db)
{
    if (!db)
        return;
    sqlite3_close(db->h);
    free(db);
}

static void row_to_account(sqlite3_stmt *st, struct auth_account *a)
{
    const unsigned char *addr;
    int64_t q;

    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, 0);
    addr = sqlite3_column_text(st, 1);
    snprintf(a->address, sizeof(a->address), "%s", addr ? (const char *)addr : "");
    a->disabled = sqlite3_column_int(st, 2) != 0;
    q = sqlite3_column_int64(st, 3);
    a->quota_bytes = q > 0 ? (uint64_t)q : 0;
    a->created = sqlite3_column_int64(st, 4);
    q = sqlite3_column_int64(st, 6);
    a->quota_messages = q > 0 ? (uint64_t)q : 0;
    a->require_client_cert = sqlite3_column_int(st, 8) != 0;
    addr = sqlite3_column_text(st, 9);
    snprintf(a->slot, sizeof(a->slot), "%s", addr ? (const char *)addr : "");
    addr = sqlite3_column_text(st, 10);
    snprintf(a->move_to, sizeof(a->move_to), "%s", addr ? (const char *)addr : "");
}

#define ACCOUNT_COLUMNS                                                                            \
    "id, address, disabled, quota, created, hash, max_messages, scram, require_client_cert, slot," \
    " move_to"

void auth_db_set_scram_iterations(struct auth_db *db, unsigned iter)
{
    if (iter >= AUTH_SCRAM_ITER_MIN && iter <= AUTH_SCRAM_ITER_MAX)
        db->scram_iter = iter;
}

unsigned auth_db_scram_iterations(const struct auth_db *db)
{
    return db->scram_iter;
}

void acl_db_set_max_entries(struct auth_db *db, unsigned max)
{
    if (max)
        db->acl_max = max;
}

unsigned auth_db_acl_max(const struct auth_db *db)
{
    return db->acl_max;
}

int auth_db_lookup(struct auth_db *db, const char *address, struct auth_account *acct, char *hash,
                   size_t hashlen)
{
    return auth_db_lookup_scram(db, address, acct, hash, hashlen, NULL, 0);
}

int auth_db_lookup_scram(struct auth_db *db, const char *address, struct auth_account *acct,
                         char *hash, size_t hashlen, char *scram, size_t scramlen)
{
    sqlite3_stmt *st = NULL;
    int r, rc;

    r = sqlite3_prepare_v2(db->h, "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE address = ?", -1,
                           &st, NULL);
    if (r != SQLITE_OK)
        return AUTH_E_TEMP;
    sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const unsigned char *h = sqlite3_column_text(st, 5);

        if (acct)
            row_to_account(st, acct);
        const unsigned char *sc = sqlite3_column_text(st, 7);

        if (hash && hashlen)
            snprintf(hash, hashlen, "%s", h ? (const char *)h : "");
        if (scram && scramlen)
            snprintf(scram, scramlen, "%s", sc ? (const char *)sc : "");
        rc = AUTH_OK;
    } else if (r == SQLITE_DONE) {
        rc = AUTH_E_NOUSER;
    } else {
        rc = AUTH_E_TEMP;
    }
    sqlite3_finalize(st);
    return rc;
}

int auth_user_get(struct auth_db *db, const char *address, struct auth_account *out)
{
    return auth_db_lookup(db, address, out, NULL, 0);
}

/* The SCRAM secret's text form for a new password. */
static int scram_text(struct auth_db *db, const char *password, char *out, size_t cap)
{
    struct auth_scram_secret sec;
    int rc = auth_scram_new_secret(password, strlen(password), db->scram_iter, &sec);

    if (rc == AUTH_OK)
        rc = auth_scram_secret_format(&sec, out, cap);
    explicit_bzero(&sec, sizeof(sec));
    return rc;
}

int auth_user_add(struct auth_db *db, const char *address, const char *password,
                  uint64_t quota_bytes, uint64_t quota_messages, struct auth_account *out)
{
    char hash[CRYPT_OUTPUT_SIZE], scram[AUTH_SCRAM_TEXT_MAX];
    sqlite3_stmt *st = NULL;
    int r, rc;

    if (!password || auth_password_check(password, strlen(password), NULL, 0) != AUTH_OK)
        return AUTH_E_WEAKPW;
    if (quota_bytes > INT64_MAX || quota_messages > INT64_MAX)
        return AUTH_E_TEMP;
    if (auth_password_hash(password, hash, sizeof(hash)) != AUTH_OK ||
        scram_text(db, password, scram, sizeof(scram)) != AUTH_OK)
        return AUTH_E_TEMP;
    r = sqlite3_prepare_v2(db->h,
                           "INSERT INTO accounts (address, hash, disabled, quota, created,"
                           " max_messages, scram) VALUES (?, ?, 0, ?, ?, ?, ?)",
                           -1, &st, NULL);
    if (r != SQLITE_OK) {
        rc = AUTH_E_TEMP;
        goto out;
    }
    sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)quota_bytes);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    sqlite3_bind_int64(st, 5, (sqlite3_int64)quota_messages);
    sqlite3_bind_text(st, 6, scram, -1, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        rc = AUTH_OK;
    else if (sqlite3_extended_errcode(db->h) == SQLITE_CONSTRAINT_UNIQUE)
        rc = AUTH_E_EXISTS;
    else
        rc = AUTH_E_TEMP;
out:
    sqlite3_finalize(st);
    explicit_bzero(hash, sizeof(hash));
    explicit_bzero(scram, sizeof(scram));
    if (rc == AUTH_OK && out)
        rc = auth_user_get(db, address, out);
    return rc;
}

/* Runs an UPDATE binding (text address, then one value) and reports
 * AUTH_E_NOUSER when no row matched. */
static int update_one(struct auth_db *db, const char *sql, const char *address, const char *text,
                      int64_t num)
{
    sqlite3_stmt *st = NULL;
    int r, rc;

    r = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (r != SQLITE_OK)
        return AUTH_E_TEMP;
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, num);
    sqlite3_bind_text(st, 2, address, -1, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r != SQLITE_DONE)
        rc = AUTH_E_TEMP;
    else if (sqlite3_changes(db->h) == 0)
        rc = AUTH_E_NOUSER;
    else
        rc = AUTH_OK;
    sqlite3_finalize(st);
    return rc;
}

int auth_user_passwd(struct auth_db *db, const char *address, const char *password)
{
    char hash[CRYPT_OUTPUT_SIZE], scram[AUTH_SCRAM_TEXT_MAX];
    sqlite3_stmt *st = NULL;
    int rc;

    if (!password || auth_password_check(password, strlen(password), NULL, 0) != AUTH_OK)
        return AUTH_E_WEAKPW;
    /* fail early, before spending a hash, for an unknown address */
    rc = auth_user_get(db, address, NULL);
    if (rc != AUTH_OK)
        return rc;
    if (auth_password_hash(password, hash, sizeof(hash)) != AUTH_OK ||
        scram_text(db, password, scram, sizeof(scram)) != AUTH_OK) {
        explicit_bzero(hash, sizeof(hash));
        return AUTH_E_TEMP;
    }
    /* the hash and the SCRAM secret change together */
    rc = AUTH_E_TEMP;
    if (sqlite3_prepare_v2(db->h, "UPDATE accounts SET hash = ?, scram = ? WHERE address = ?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, scram, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, address, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE)
            rc = sqlite3_changes(db->h) ? AUTH_OK : AUTH_E_NOUSER;
    }
    sqlite3_finalize(st);
    explicit_bzero(hash, sizeof(hash));
    explicit_bzero(scram, sizeof(scram));
    return rc;
}

int auth_db_scram_fill(struct auth_db *db, const char *address, const char *hash, const char *scram)
{
    sqlite3_stmt *st = NULL;
    int rc = AUTH_E_TEMP;

    /* only while the password is still the one verified, and only once */
    if (sqlite3_prepare_v2(db->h,
                           "UPDATE accounts SET scram = ? WHERE address = ? AND hash = ?"
                           " AND (scram IS NULL OR scram = '')",
                           -1, &st, NULL) != SQLITE_OK)
        return AUTH_E_TEMP;
    sqlite3_bind_text(st, 1, scram, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, address, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = sqlite3_changes(db->h) ? AUTH_OK : AUTH_E_NOUSER;
    sqlite3_finalize(st);
    return rc;
}

int auth_user_set_disabled(struct auth_db *db, const char *address, bool disabled)
{
    return update_one(db, "UPDATE accounts SET disabled = ? WHERE address = ?", address, NULL,
                      disabled ? 1 : 0);
}

int auth_user_set_quota(struct auth_db *db, const char *address, uint64_t quota_bytes)
{
    if (quota_bytes > INT64_MAX)
        return AUTH_E_TEMP;
    return update_one(db, "UPDATE accounts SET quota = ? WHERE address = ?", address, NULL,
                      (int64_t)quota_bytes);
}

int auth_user_set_max_messages(struct auth_db *db, const char *address, uint64_t quota_messages)
{
    if (quota_messages > INT64_MAX)
        return AUTH_E_TEMP;
    return update_one(db, "UPDATE accounts SET max_messages = ? WHERE address = ?", address, NULL,
                      (int64_t)quota_messages);
}

int auth_user_set_require_cert(struct auth_db *db, const char *address, bool on)
{
    return update_one(db, "UPDATE accounts SET require_client_cert = ? WHERE address = ?", address,
                      NULL, on ? 1 : 0);
}

int auth_user_del(struct auth_db *db, const char *address, struct auth_account *out)
{
    struct auth_account a;
    sqlite3_stmt *st = NULL;
    int r, rc;

    /* read and delete in one write transaction, so out describes the row
     * that was removed */
    if (sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return AUTH_E_TEMP;
    rc = auth_user_get(db, address, &a);
    if (rc != AUTH_OK)
        goto rollback;
    r = sqlite3_prepare_v2(db->h, "DELETE FROM accounts WHERE id = ?", -1, &st, NULL);
    if (r != SQLITE_OK) {
        rc = AUTH_E_TEMP;
        goto rollback;
    }
    sqlite3_bind_int64(st, 1, a.id);
    r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) {
        rc = AUTH_E_TEMP;
        goto rollback;
    }
    /* what others were granted on its mailboxes, what it was granted, its
     * groups: in the same transaction */
    if ((rc = acl_db_forget_account(db, a.id, a.address)) != AUTH_OK)
        goto rollback;
    if (sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = AUTH_E_TEMP;
        goto rollback;
    }
    if (out)
        *out = a;
    return AUTH_OK;
rollback:
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int auth_user_list(struct auth_db *db, int (*cb)(const struct auth_account *a, void *arg),
                   void *arg)
{
    struct auth_account a;
    sqlite3_stmt *st = NULL;
    int r;

    r = sqlite3_prepare_v2(db->h, "SELECT " ACCOUNT_COLUMNS " FROM accounts ORDER BY address", -1,
                           &st, NULL);
    if (r != SQLITE_OK)
        return AUTH_E_TEMP;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        row_to_account(st, &a);
        if (cb(&a, arg) != 0) {
            r = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? AUTH_OK : AUTH_E_TEMP;
}
