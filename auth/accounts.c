/* The account database, <data_dir>/accounts.sqlite, and the rules for
 * account addresses. Used by coffrectl directly and by the login service
 * from the thread pool; WAL and a busy timeout let both run at once. */
#include "auth/auth.h"
#include "auth/acl.h"
#include "auth/auth_priv.h"
#include "auth/db.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DB_SETUP_ATTEMPTS 100    /* opening: BUSY without waiting, retried */
#define DB_SETUP_RETRY_US 100000 /* 10 s in all, like the busy timeout */
#define LOCAL_PART_MAX 64

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
    /* when a move last put the account on its slot (unix time, 0: never) */
    {"moved_at", "ALTER TABLE accounts ADD COLUMN moved_at INTEGER NOT NULL DEFAULT 0"},
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

/* Adds the columns an older SQLite accounts database lacks, in one write
 * transaction, so that two processes opening it at once add each once. */
static int upgrade(struct auth_db *h)
{
    int r = adb_exec(h, "BEGIN IMMEDIATE");

    for (size_t i = 0; r == DB_OK && i < sizeof(upgrades) / sizeof(upgrades[0]); i++) {
        struct adb_stmt *st = NULL;
        bool have;

        r = adb_prepare(h, "SELECT 1 FROM pragma_table_info('accounts') WHERE name = ?", &st);
        if (r != DB_OK)
            break;
        adb_bind_text(st, 1, upgrades[i].column);
        r = adb_step(st);
        have = r == DB_ROW;
        adb_finalize(st);
        if (r != DB_ROW && r != DB_DONE)
            break;
        r = have ? DB_OK : adb_exec(h, upgrades[i].sql);
    }
    if (r == DB_OK)
        return adb_exec(h, "COMMIT");
    adb_exec(h, "ROLLBACK");
    return r;
}

/* The PostgreSQL directory's schema, made when missing (the README's
 * "Account directory" shows it). Several processes may open it at once:
 * an advisory lock serializes them. Columns added later are added with
 * ADD COLUMN IF NOT EXISTS. */
static const char pg_schema_sql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(7365861);"
    "CREATE TABLE IF NOT EXISTS accounts ("
    " id BIGSERIAL PRIMARY KEY,"
    " address TEXT COLLATE \"C\" UNIQUE NOT NULL,"
    " hash TEXT NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0,"
    " quota BIGINT NOT NULL DEFAULT 0,"
    " created BIGINT NOT NULL,"
    " max_messages BIGINT NOT NULL DEFAULT 0,"
    " scram TEXT,"
    " require_client_cert INTEGER NOT NULL DEFAULT 0,"
    " slot TEXT NOT NULL DEFAULT '',"
    " move_to TEXT NOT NULL DEFAULT '',"
    " moved_at BIGINT NOT NULL DEFAULT 0);"
    "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS slot TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS move_to TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS moved_at BIGINT NOT NULL DEFAULT 0;"
    "CREATE TABLE IF NOT EXISTS app_passwords ("
    " id BIGSERIAL PRIMARY KEY,"
    " account BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " selector TEXT NOT NULL,"
    " label TEXT NOT NULL,"
    " hash TEXT NOT NULL,"
    " services TEXT NOT NULL,"
    " created BIGINT NOT NULL,"
    " last_used BIGINT NOT NULL DEFAULT 0,"
    " UNIQUE (account, selector), UNIQUE (account, label));"
    "CREATE TABLE IF NOT EXISTS slots ("
    " name TEXT PRIMARY KEY,"
    " host TEXT NOT NULL,"
    " imap_port INTEGER NOT NULL,"
    " pop3_port INTEGER NOT NULL,"
    " lmtp_port INTEGER NOT NULL,"
    " data_dir TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS client_certs ("
    " fingerprint TEXT NOT NULL,"
    " account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " added BIGINT NOT NULL,"
    " PRIMARY KEY (fingerprint, account_id));"
    "CREATE TABLE IF NOT EXISTS acl ("
    " owner BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " mailbox TEXT COLLATE \"C\" NOT NULL,"
    " ident TEXT COLLATE \"C\" NOT NULL,"
    " rights INTEGER NOT NULL,"
    " PRIMARY KEY (owner, mailbox, ident));"
    "CREATE INDEX IF NOT EXISTS acl_ident ON acl(ident);"
    "CREATE TABLE IF NOT EXISTS acl_group ("
    " id BIGSERIAL PRIMARY KEY,"
    " name TEXT COLLATE \"C\" UNIQUE NOT NULL);"
    "CREATE TABLE IF NOT EXISTS acl_member ("
    " group_id BIGINT NOT NULL REFERENCES acl_group(id) ON DELETE CASCADE,"
    " account BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " PRIMARY KEY (group_id, account));"
    "CREATE INDEX IF NOT EXISTS acl_member_account ON acl_member(account);"
    "CREATE TABLE IF NOT EXISTS mailbox_share ("
    " owner BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " mailbox TEXT COLLATE \"C\" NOT NULL,"
    " seen_shared INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (owner, mailbox));"
    "COMMIT;";

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

void auth_db_set_pool_size(unsigned n)
{
    adb_pg_set_pool_size(n);
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

static int open_pg(struct auth_db *db, char *err, size_t errlen)
{
    if (adb_open_pg(db, directory.dsn, err, errlen) != DB_OK)
        return AUTH_E_TEMP;
    if (adb_exec(db, pg_schema_sql) != DB_OK) {
        set_err(err, errlen, "accounts_dsn",
                "PostgreSQL unreachable, or the schema could not be made");
        return AUTH_E_TEMP;
    }
    return AUTH_OK;
}

static int open_sqlite(struct auth_db *db, const char *path, char *err, size_t errlen)
{
    int fd, r;

    /* create it private to us: it holds password hashes (SQLite gives the
     * -wal and -shm files the mode of the database file) */
    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_err(err, errlen, path, strerror(errno));
        return AUTH_E_TEMP;
    }
    close(fd);
    if (adb_open_sqlite(db, path, err, errlen) != DB_OK)
        return AUTH_E_TEMP;
    /* Switching to WAL and creating the schema can meet another process
     * doing the same (coffred starting while coffrectl adds a user); SQLite
     * then answers BUSY without waiting, to avoid a deadlock. Try again. */
    for (int attempt = 0;; attempt++) {
        r = adb_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                         "PRAGMA foreign_keys=ON;");
        if (r == DB_OK)
            r = adb_exec(db, schema_sql);
        if (r == DB_OK)
            r = upgrade(db);
        if (r == DB_OK)
            r = adb_exec(db, auth_certs_schema);
        if (r == DB_OK)
            r = adb_exec(db, acl_schema_sql);
        if (r != DB_BUSY || attempt >= DB_SETUP_ATTEMPTS)
            break;
        usleep(DB_SETUP_RETRY_US);
    }
    if (r != DB_OK) {
        set_err(err, errlen, path, adb_errmsg(db));
        return AUTH_E_TEMP;
    }
    return AUTH_OK;
}

int auth_db_open(const char *data_dir, struct auth_db **out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct auth_db *db;
    int rc;

    *out = NULL;
    db = calloc(1, sizeof(*db));
    if (!db) {
        set_err(err, errlen, data_dir, "out of memory");
        return AUTH_E_TEMP;
    }
    if (auth_db_backend(data_dir) == AUTH_BACKEND_POSTGRESQL) {
        rc = open_pg(db, err, errlen);
    } else if (auth_db_sqlite_path(data_dir, path, sizeof(path)) < 0) {
        set_err(err, errlen, data_dir, "path too long");
        rc = AUTH_E_TEMP;
    } else {
        rc = open_sqlite(db, path, err, errlen);
    }
    if (rc != AUTH_OK) {
        adb_close(db);
        free(db);
        return rc;
    }
    db->scram_iter = AUTH_SCRAM_ITER_DEFAULT;
    db->acl_max = ACL_MAX_ENTRIES_DEFAULT;
    *out = db;
    return AUTH_OK;
}

struct sqlite3 *auth_db_handle(struct auth_db *db)
{
    return adb_sqlite(db);
}

void auth_db_close(struct auth_db *db)
{
    if (!db)
        return;
    adb_close(db);
    free(db);
}

static void row_to_account(struct adb_stmt *st, struct auth_account *a)
{
    const unsigned char *addr;
    int64_t q;

    memset(a, 0, sizeof(*a));
    a->id = adb_column_int64(st, 0);
    addr = adb_column_text(st, 1);
    snprintf(a->address, sizeof(a->address), "%s", addr ? (const char *)addr : "");
    a->disabled = adb_column_int(st, 2) != 0;
    q = adb_column_int64(st, 3);
    a->quota_bytes = q > 0 ? (uint64_t)q : 0;
    a->created = adb_column_int64(st, 4);
    q = adb_column_int64(st, 6);
    a->quota_messages = q > 0 ? (uint64_t)q : 0;
    a->require_client_cert = adb_column_int(st, 8) != 0;
    addr = adb_column_text(st, 9);
    snprintf(a->slot, sizeof(a->slot), "%s", addr ? (const char *)addr : "");
    addr = adb_column_text(st, 10);
    snprintf(a->move_to, sizeof(a->move_to), "%s", addr ? (const char *)addr : "");
    a->moved_at = adb_column_int64(st, 11);
}

#define ACCOUNT_COLUMNS                                                                            \
    "id, address, disabled, quota, created, hash, max_messages, scram, require_client_cert, slot," \
    " move_to, moved_at"

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
    struct adb_stmt *st = NULL;
    int r, rc;

    r = adb_prepare(db, "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE address = ?", &st);
    if (r != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, address);
    r = adb_step(st);
    if (r == DB_ROW) {
        const unsigned char *h = adb_column_text(st, 5);

        if (acct)
            row_to_account(st, acct);
        const unsigned char *sc = adb_column_text(st, 7);

        if (hash && hashlen)
            snprintf(hash, hashlen, "%s", h ? (const char *)h : "");
        if (scram && scramlen)
            snprintf(scram, scramlen, "%s", sc ? (const char *)sc : "");
        rc = AUTH_OK;
    } else if (r == DB_DONE) {
        rc = AUTH_E_NOUSER;
    } else {
        rc = AUTH_E_TEMP;
    }
    adb_finalize(st);
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
    struct adb_stmt *st = NULL;
    int r, rc;

    if (!password || auth_password_check(password, strlen(password), NULL, 0) != AUTH_OK)
        return AUTH_E_WEAKPW;
    if (quota_bytes > INT64_MAX || quota_messages > INT64_MAX)
        return AUTH_E_TEMP;
    if (auth_password_hash(password, hash, sizeof(hash)) != AUTH_OK ||
        scram_text(db, password, scram, sizeof(scram)) != AUTH_OK)
        return AUTH_E_TEMP;
    r = adb_prepare(db,
                    "INSERT INTO accounts (address, hash, disabled, quota, created,"
                    " max_messages, scram) VALUES (?, ?, 0, ?, ?, ?, ?)",
                    &st);
    if (r != DB_OK) {
        rc = AUTH_E_TEMP;
        goto out;
    }
    adb_bind_text(st, 1, address);
    adb_bind_text(st, 2, hash);
    adb_bind_int64(st, 3, (int64_t)quota_bytes);
    adb_bind_int64(st, 4, (int64_t)time(NULL));
    adb_bind_int64(st, 5, (int64_t)quota_messages);
    adb_bind_text(st, 6, scram);
    r = adb_step(st);
    if (r == DB_DONE)
        rc = AUTH_OK;
    else if (r == DB_CONSTRAINT)
        rc = AUTH_E_EXISTS;
    else
        rc = AUTH_E_TEMP;
out:
    adb_finalize(st);
    explicit_bzero(hash, sizeof(hash));
    explicit_bzero(scram, sizeof(scram));
    if (rc == AUTH_OK && out)
        rc = auth_user_get(db, address, out);
    return rc;
}

/* Runs an UPDATE binding (text address, then one value) and reports
 * AUTH_E_NOUSER when no row matched. */
int auth_db_change(struct adb_stmt *st)
{
    int rc = AUTH_E_TEMP;

    if (adb_step(st) == DB_DONE)
        rc = adb_changes(st) ? AUTH_OK : AUTH_E_NOUSER;
    adb_finalize(st);
    return rc;
}

int auth_db_update_one(struct auth_db *db, const char *sql, const char *address, const char *text,
                       int64_t num)
{
    struct adb_stmt *st = NULL;

    if (adb_prepare(db, sql, &st) != DB_OK)
        return AUTH_E_TEMP;
    if (text)
        adb_bind_text(st, 1, text);
    else
        adb_bind_int64(st, 1, num);
    adb_bind_text(st, 2, address);
    return auth_db_change(st);
}

int auth_user_passwd(struct auth_db *db, const char *address, const char *password)
{
    char hash[CRYPT_OUTPUT_SIZE], scram[AUTH_SCRAM_TEXT_MAX];
    struct adb_stmt *st = NULL;
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
    if (adb_prepare(db, "UPDATE accounts SET hash = ?, scram = ? WHERE address = ?", &st) ==
        DB_OK) {
        adb_bind_text(st, 1, hash);
        adb_bind_text(st, 2, scram);
        adb_bind_text(st, 3, address);
        rc = auth_db_change(st);
    }
    explicit_bzero(hash, sizeof(hash));
    explicit_bzero(scram, sizeof(scram));
    return rc;
}

int auth_db_scram_fill(struct auth_db *db, const char *address, const char *hash, const char *scram)
{
    struct adb_stmt *st = NULL;

    /* only while the password is still the one verified, and only once */
    if (adb_prepare(db,
                    "UPDATE accounts SET scram = ? WHERE address = ? AND hash = ?"
                    " AND (scram IS NULL OR scram = '')",
                    &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, scram);
    adb_bind_text(st, 2, address);
    adb_bind_text(st, 3, hash);
    return auth_db_change(st);
}

int auth_user_set_disabled(struct auth_db *db, const char *address, bool disabled)
{
    return auth_db_update_one(db, "UPDATE accounts SET disabled = ? WHERE address = ?", address,
                              NULL, disabled ? 1 : 0);
}

int auth_user_set_quota(struct auth_db *db, const char *address, uint64_t quota_bytes)
{
    if (quota_bytes > INT64_MAX)
        return AUTH_E_TEMP;
    return auth_db_update_one(db, "UPDATE accounts SET quota = ? WHERE address = ?", address, NULL,
                              (int64_t)quota_bytes);
}

int auth_user_set_max_messages(struct auth_db *db, const char *address, uint64_t quota_messages)
{
    if (quota_messages > INT64_MAX)
        return AUTH_E_TEMP;
    return auth_db_update_one(db, "UPDATE accounts SET max_messages = ? WHERE address = ?", address,
                              NULL, (int64_t)quota_messages);
}

int auth_user_set_require_cert(struct auth_db *db, const char *address, bool on)
{
    return auth_db_update_one(db, "UPDATE accounts SET require_client_cert = ? WHERE address = ?",
                              address, NULL, on ? 1 : 0);
}

int auth_user_del(struct auth_db *db, const char *address, struct auth_account *out)
{
    struct auth_account a;
    struct adb_stmt *st = NULL;
    int r, rc;

    /* read and delete in one write transaction, so out describes the row
     * that was removed */
    if (adb_begin(db) != DB_OK)
        return AUTH_E_TEMP;
    rc = auth_user_get(db, address, &a);
    if (rc != AUTH_OK)
        goto rollback;
    r = adb_prepare(db, "DELETE FROM accounts WHERE id = ?", &st);
    if (r != DB_OK) {
        rc = AUTH_E_TEMP;
        goto rollback;
    }
    adb_bind_int64(st, 1, a.id);
    r = adb_step(st);
    adb_finalize(st);
    if (r != DB_DONE) {
        rc = AUTH_E_TEMP;
        goto rollback;
    }
    /* what others were granted on its mailboxes, what it was granted, its
     * groups: in the same transaction */
    if ((rc = acl_db_forget_account(db, a.id, a.address)) != AUTH_OK)
        goto rollback;
    if (adb_commit(db) != DB_OK) {
        rc = AUTH_E_TEMP;
        goto rollback;
    }
    if (out)
        *out = a;
    return AUTH_OK;
rollback:
    adb_rollback(db);
    return rc;
}

int auth_user_list(struct auth_db *db, int (*cb)(const struct auth_account *a, void *arg),
                   void *arg)
{
    struct auth_account a;
    struct adb_stmt *st = NULL;
    int r;

    r = adb_prepare(db, "SELECT " ACCOUNT_COLUMNS " FROM accounts ORDER BY address", &st);
    if (r != DB_OK)
        return AUTH_E_TEMP;
    while ((r = adb_step(st)) == DB_ROW) {
        row_to_account(st, &a);
        if (cb(&a, arg) != 0) {
            r = DB_DONE;
            break;
        }
    }
    adb_finalize(st);
    return r == DB_DONE ? AUTH_OK : AUTH_E_TEMP;
}
