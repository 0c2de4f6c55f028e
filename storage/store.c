/* User handles: the process-wide registry of open stores (one per account,
 * refcounted), the SQLite connections (one writer, a small reader pool), the
 * index schema, error mapping, change watchers and polling for changes made
 * by other processes. */
#include "storage/internal.h"
#include "server/base/sqlcache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/base/log.h"
#include "server/base/metrics.h"

/* The registry lock is held only to look up, add and remove handles, never
 * while an index is set up or closed: a long rebuild of one account must not
 * hold up the others. An account being opened or closed is marked busy, and
 * an open of the same account waits on registry_cond until it is done. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t registry_cond = PTHREAD_COND_INITIALIZER;
static struct storage_user *registry;

const char *storage_strerror(int err)
{
    switch (err) {
    case STORAGE_OK:
        return "success";
    case STORAGE_E_FAIL:
        return "internal storage error";
    case STORAGE_E_TEMP:
        return "temporary storage failure, try again later";
    case STORAGE_E_NOMEM:
        return "out of memory";
    case STORAGE_E_BADNAME:
        return "invalid mailbox name";
    case STORAGE_E_NOMBOX:
        return "no such mailbox";
    case STORAGE_E_EXISTS:
        return "mailbox already exists";
    case STORAGE_E_QUOTA:
        return "quota exceeded";
    case STORAGE_E_NOMSG:
        return "no such message";
    case STORAGE_E_INVAL:
        return "invalid argument";
    case STORAGE_E_CHILDREN:
        return "mailbox has children";
    case STORAGE_E_NOPERM:
        return "operation not permitted on this mailbox";
    case STORAGE_E_CORRUPT:
        return "index corrupt";
    case STORAGE_E_TOOBIG:
        return "message too big";
    case STORAGE_E_LIMIT:
        return "over a limit of this server";
    case STORAGE_E_CONFLICT:
        return "mailbox exists with another UIDVALIDITY";
    }
    return "unknown storage error";
}

int err_from_errno(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
    case EIO:
    case EROFS:
    case EMFILE:
    case ENFILE:
    case EAGAIN:
    case EINTR:
    case ETIMEDOUT:
        return STORAGE_E_TEMP;
    case ENOMEM:
        return STORAGE_E_NOMEM;
    case ENOENT:
        return STORAGE_E_NOMSG;
    }
    return STORAGE_E_FAIL;
}

/* The temporary failures (busy, out of descriptors, disk full) repeat for
 * every account at once when the process runs short of something: one
 * line a second at most, with how many were left out since the last. */
#define TEMP_LOG_INTERVAL_MS 1000
static _Atomic uint64_t temp_logged_ms;
static atomic_ulong temp_unlogged;

static void warn_temp(sqlite3 *db)
{
    uint64_t now = mono_ms();
    uint64_t last = atomic_load(&temp_logged_ms);

    if ((last && now - last < TEMP_LOG_INTERVAL_MS) ||
        !atomic_compare_exchange_strong(&temp_logged_ms, &last, now)) {
        atomic_fetch_add(&temp_unlogged, 1);
        return;
    }
    unsigned long more = atomic_exchange(&temp_unlogged, 0);
    if (more)
        log_warn("storage: index: %s (%lu more temporary index failures since the last report)",
                 sqlite3_errmsg(db), more);
    else
        log_warn("storage: index: %s", sqlite3_errmsg(db));
}

int err_from_sqlite(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return STORAGE_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
        if (db)
            warn_temp(db);
        return STORAGE_E_TEMP;
    case SQLITE_NOMEM:
        return STORAGE_E_NOMEM;
    case SQLITE_INTERRUPT: /* only the step budget of reader_get interrupts */
        return STORAGE_E_LIMIT;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        if (db)
            log_error("storage: index corrupt: %s", sqlite3_errmsg(db));
        return STORAGE_E_CORRUPT;
    }
    if (db)
        log_error("storage: index: %s", sqlite3_errmsg(db));
    return STORAGE_E_FAIL;
}

int pathf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (len == 0)
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

int64_t now_unix(void)
{
    return (int64_t)time(NULL);
}

int fsync_dirat(int dfd)
{
    uint64_t t0 = metrics_now();
    if (fsync(dfd) < 0 && errno != EINVAL)
        return err_from_errno(errno);
    metrics_since(METRICS_FSYNC_SECONDS, METRICS_FSYNC_DIRECTORY, t0);
    return 0;
}

int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return err_from_errno(errno);
    rc = fsync_dirat(fd);
    close(fd);
    return rc;
}

int array_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first)
{
    void **a = arr;
    size_t nc;
    void *p;

    if (n < *cap)
        return 0;
    nc = *cap ? *cap * 2 : first;
    if (!(p = realloc(*a, nc * size)))
        return STORAGE_E_NOMEM;
    *a = p;
    *cap = nc;
    return 0;
}

int uidlist_add(struct storage_uidlist *l, uint32_t uid)
{
    if (array_grow(&l->uids, &l->cap, l->n, sizeof(*l->uids), 64) != 0)
        return STORAGE_E_NOMEM;
    l->uids[l->n++] = uid;
    return 0;
}

void storage_uidlist_free(struct storage_uidlist *l)
{
    if (!l)
        return;
    free(l->uids);
    l->uids = NULL;
    l->n = l->cap = 0;
}

/* ---- SQLite helpers ---- */

int db_exec(sqlite3 *db, const char *sql)
{
    if (!db)
        return STORAGE_E_TEMP; /* the index could not be opened again */
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return err_from_sqlite(db, rc);
}

int db_begin(sqlite3 *db)
{
    return db_run_binds(db, "BEGIN IMMEDIATE", NULL, NULL, 0); /* kept prepared */
}

int db_commit(sqlite3 *db)
{
    uint64_t t0 = metrics_now();
    int rc = db_run_binds(db, "COMMIT", NULL, NULL, 0);
    metrics_since(METRICS_COMMIT_SECONDS, 0, t0);
    if (rc)
        db_rollback(db);
    return rc;
}

void db_rollback(sqlite3 *db)
{
    if (db && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    int rc;

    *st = NULL;
    if (!db)
        return STORAGE_E_TEMP; /* the index could not be opened again */
    if ((rc = sqlc_prepare(db, sql, st)) != SQLITE_OK)
        return err_from_sqlite(db, rc);
    return 0;
}

int db_finalize(sqlite3_stmt *st)
{
    return sqlc_finalize(st);
}

int db_close(sqlite3 *db)
{
    return sqlc_close(db);
}

int db_step_done(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    db_finalize(st);
    return rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
}

/* Runs sql with ?1 bound to text (if not NULL) and the next parameters to
 * the n integers of v. out NULL: a statement that returns no row; else *out
 * gets the first column of its first row, 0 without a row. */
static int run_bound(sqlite3 *db, const char *sql, const char *text, const int64_t *v, size_t n,
                     int64_t *out)
{
    sqlite3_stmt *st;
    int k = 1, rc = db_prepare(db, sql, &st);

    if (rc)
        return rc;
    if (text)
        sqlite3_bind_text(st, k++, text, -1, SQLITE_STATIC);
    for (size_t i = 0; i < n; i++)
        sqlite3_bind_int64(st, k++, v[i]);
    if (!out)
        return db_step_done(db, st);
    rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    db_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
}

int db_run_binds(sqlite3 *db, const char *sql, const char *text, const int64_t *v, size_t n)
{
    return run_bound(db, sql, text, v, n, NULL);
}

int db_int_binds(sqlite3 *db, int64_t *out, const char *sql, const char *text, const int64_t *v,
                 size_t n)
{
    return run_bound(db, sql, text, v, n, out);
}

int db_meta_get(sqlite3 *db, const char *key, int64_t *v)
{
    return db_int_binds(db, v, "SELECT value FROM meta WHERE key = ?", key, NULL, 0);
}

int db_meta_set(sqlite3 *db, const char *key, int64_t v)
{
    return db_run_text(db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", key, v);
}

int db_meta_add(sqlite3 *db, const char *key, int64_t delta)
{
    return db_run_text(db,
                       "INSERT INTO meta(key, value) VALUES (?1, ?2) "
                       "ON CONFLICT(key) DO UPDATE SET value = value + ?2",
                       key, delta);
}

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS mailboxes("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  uidvalidity INTEGER NOT NULL,"
    "  uidnext INTEGER NOT NULL,"
    "  highestmodseq INTEGER NOT NULL,"
    "  special_use INTEGER NOT NULL DEFAULT 0,"
    "  new_mtime INTEGER NOT NULL DEFAULT 0,"
    "  cur_mtime INTEGER NOT NULL DEFAULT 0,"
    "  oid INTEGER NOT NULL DEFAULT 0);" /* MAILBOXID (objectid.c) */
    "CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY) WITHOUT ROWID;"
    /* What copies of one message share: computed once at save time. */
    "CREATE TABLE IF NOT EXISTS bodies("
    "  id INTEGER PRIMARY KEY,"
    "  refs INTEGER NOT NULL,"
    "  sent_date INTEGER NOT NULL DEFAULT 0,"
    "  envelope TEXT, bodystructure TEXT, body TEXT,"
    "  subject TEXT, from_ TEXT, to_ TEXT, cc TEXT, bcc TEXT,"
    "  message_id TEXT, in_reply_to TEXT,"
    "  header BLOB," /* top-level header block before schema 10; now in headers */
    "  oid INTEGER NOT NULL DEFAULT 0,"    /* EMAILID (objectid.c) */
    "  thread INTEGER NOT NULL DEFAULT 0," /* THREADID */
    "  preview TEXT);" /* RFC 8970; NULL: not computed yet (schema 8's bodies) */
    THREADS_TABLE HEADERS_TABLE LISTINGS_TABLE
    /* SORT and THREAD keys (sort.c): a narrow table, read whole by them */
    "CREATE TABLE IF NOT EXISTS sortkeys(" SORTKEYS_COLUMNS ");"
    "CREATE TABLE IF NOT EXISTS messages("
    "  mailbox_id INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL,"
    "  body_id INTEGER NOT NULL,"
    "  path TEXT NOT NULL," /* "cur/<file>" or "new/<file>" */
    "  size INTEGER NOT NULL,"
    "  internal_date INTEGER NOT NULL,"
    "  save_date INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL,"
    "  file_flags INTEGER NOT NULL," /* flags as in the file name */
    "  keywords TEXT NOT NULL DEFAULT '',"
    "  modseq INTEGER NOT NULL,"
    "  PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox_id, modseq);"
    "CREATE INDEX IF NOT EXISTS messages_body ON messages(body_id);"
    "CREATE INDEX IF NOT EXISTS messages_unsynced ON messages(mailbox_id, uid)"
    "  WHERE flags != file_flags;" MESSAGES_FLAGS MESSAGES_LIST
        /* each viewer's own \Seen on a shared mailbox (pseen.c) */
        PSEEN_TABLE
    /* expunged UIDs, for QRESYNC (vanished.c) */
    "CREATE TABLE IF NOT EXISTS expunged("
    "  mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,"
    "  PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
    /* The full-text index (fts.c). Texts of new bodies wait in fts_pending:
     * indexing costs too much inside a delivery; storage_fts_index moves
     * them later. A body's text is in exactly one of fts_pending and fts
     * (deflated; fts_words, the word index, has its words in body, and in
     * head those of the decoded Subject, From, To, Cc, Bcc and of the
     * header block, bodies.header); SEARCH looks at both. fts_terms: every word fts_words has held,
     * and fts_grams the trigrams of those words, to find the words containing a string. */
    "CREATE TABLE IF NOT EXISTS fts_pending("
    "  body_id INTEGER PRIMARY KEY, subject, from_, to_, cc, bcc, text);" FTS_PENDING_IDS
    "CREATE TABLE IF NOT EXISTS fts(body_id INTEGER PRIMARY KEY, len INTEGER NOT NULL, z BLOB);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts_words USING fts5(head, body,"
    "  tokenize = 'unicode61 remove_diacritics 0', content = '', detail = column,"
    "  columnsize = 0);"
    "CREATE TABLE IF NOT EXISTS fts_terms(id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts_grams USING fts5(term, tokenize = 'trigram',"
    "  content = 'fts_terms', content_rowid = 'id');";

int db_create_schema(sqlite3 *db)
{
    int rc = db_exec(db, schema_sql);
    if (rc)
        return rc;
    return db_meta_set(db, "schema", STORAGE_SCHEMA_VERSION);
}

/* Putting a new, empty index into WAL mode takes a lock that SQLite does
 * not wait for with the busy handler: coffred and coffrectl creating the
 * same account's index at one moment (a delivery beside an import) would
 * fail at once. It is tried again as the busy timeout would wait. */
#define WAL_RETRY_MS 5

static int set_wal(sqlite3 *db)
{
    for (unsigned waited = 0;; waited += WAL_RETRY_MS) {
        int rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if (rc != SQLITE_BUSY || waited >= STORAGE_BUSY_TIMEOUT_MS)
            return err_from_sqlite(db, rc);
        sqlite3_sleep(WAL_RETRY_MS);
    }
}

/* An index this big or bigger is read through a mapping of its file: a
 * listing of a big folder reads hundreds of megabytes of pages, and
 * reading each through pread copied it out of the page cache first (a
 * fifth of a header fetch's CPU). The small indexes of most accounts keep
 * pread, so that an account with sessions open holds no mapped pages. */
#define MMAP_MIN_BYTES (16 * 1024 * 1024)
#define MMAP_MAX_BYTES "2147418112" /* SQLite's default SQLITE_MAX_MMAP_SIZE */

int db_open_conn(const char *path, bool create, sqlite3 **out)
{
    sqlite3 *db = NULL;
    /* NOFOLLOW: an index replaced by a symlink (to another user's index)
     * is refused, never opened through the link */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW |
                (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &db, flags, index_vfs());

    if (rc != SQLITE_OK) {
        rc = err_from_sqlite(db, rc);
        db_close(db);
        return rc ? rc : STORAGE_E_FAIL;
    }
    sqlite3_busy_timeout(db, STORAGE_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(db, 0);
    rc = set_wal(db);
    if (rc == 0)
        rc = db_exec(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;"
                         "PRAGMA temp_store = MEMORY;");
    struct stat sb;
    if (rc == 0 && stat(path, &sb) == 0 && sb.st_size >= MMAP_MIN_BYTES)
        rc = db_exec(db, "PRAGMA mmap_size = " MMAP_MAX_BYTES);
    if (rc) {
        db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

/* ---- readers and the writer ---- */

struct storage_limits storage_limits;

void storage_set_limits(const struct storage_limits *l)
{
    storage_limits = *l;
}

/* SQLite calls it every STEP_CHUNK VM steps of a statement: the steps of
 * the connection's current borrower add up, and past the budget the
 * statement stops with SQLITE_INTERRUPT. */
#define STEP_CHUNK 1000

static int on_steps(void *arg)
{
    uint64_t *used = arg;

    *used += STEP_CHUNK;
    return storage_limits.max_steps && *used > storage_limits.max_steps;
}

uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void note_use(struct storage_user *u)
{
    __atomic_store_n(&u->last_use_ms, mono_ms(), __ATOMIC_RELAXED);
}

/* The steps of a connection opened past the pool for one call: it is used
 * by that call only, on its thread. */
static __thread uint64_t extra_steps;

/* A reader never waits for another caller's connection: with every pooled
 * one in use, it gets one of its own for the call (slot -1), closed when
 * given back. The protocols run at most max_jobs_per_account jobs of one
 * account at once, fewer than STORAGE_READERS by default, so that happens
 * only beside work not counted per account (a delivery to several
 * accounts), or with a larger setting. */
sqlite3 *reader_get(struct storage_user *u)
{
    char path[STORAGE_PATH_MAX];
    sqlite3 *db = NULL;
    int slot = -1;

    note_use(u);
    pthread_mutex_lock(&u->rlock);
    /* a reader may open: under the lock storage_sleep checks the readers
     * under, so that it never marks asleep a handle with one opening */
    __atomic_store_n(&u->asleep, false, __ATOMIC_RELAXED);
    for (int i = 0; i < STORAGE_READERS; i++) {
        if (!u->rbusy[i] && u->rdb[i]) {
            slot = i;
            break;
        }
    }
    if (slot < 0)
        for (int i = 0; i < STORAGE_READERS; i++)
            if (!u->rbusy[i]) {
                slot = i;
                break;
            }
    if (slot >= 0) {
        u->rbusy[slot] = true;
        u->rsteps[slot] = 0;
        db = u->rdb[slot];
    } else {
        u->rextra++;
        extra_steps = 0;
    }
    pthread_mutex_unlock(&u->rlock);
    if (db)
        return db;

    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if (db_open_conn(path, false, &db) == 0) {
        register_sql_functions(db, u);
        sqlite3_progress_handler(db, STEP_CHUNK, on_steps,
                                 slot >= 0 ? &u->rsteps[slot] : &extra_steps);
        if (slot >= 0) {
            pthread_mutex_lock(&u->rlock);
            u->rdb[slot] = db;
            pthread_mutex_unlock(&u->rlock);
        }
        return db;
    }
    pthread_mutex_lock(&u->rlock);
    if (slot >= 0)
        u->rbusy[slot] = false;
    else
        u->rextra--;
    pthread_cond_broadcast(&u->rcond);
    pthread_mutex_unlock(&u->rlock);
    return NULL;
}

void reader_put(struct storage_user *u, sqlite3 *db)
{
    bool pooled = false;

    pthread_mutex_lock(&u->rlock);
    for (int i = 0; i < STORAGE_READERS; i++) {
        if (u->rdb[i] == db) {
            u->rsteps[i] = 0; /* the ROLLBACK below is never interrupted */
            /* end any read transaction left open by an early return */
            if (!sqlite3_get_autocommit(db))
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            u->rbusy[i] = false;
            pooled = true;
            break;
        }
    }
    if (!pooled) {
        pthread_mutex_unlock(&u->rlock);
        db_close(db); /* opened past the pool for one call */
        pthread_mutex_lock(&u->rlock);
        u->rextra--;
    }
    pthread_cond_broadcast(&u->rcond); /* readers_close may wait for it */
    pthread_mutex_unlock(&u->rlock);
}

/* Closes the idle read connections. wait: first waits until no reader is
 * in use, so that none is left open. */
static void readers_close(struct storage_user *u, bool wait)
{
    sqlite3 *idle[STORAGE_READERS];
    int n = 0;

    pthread_mutex_lock(&u->rlock);
    for (;;) {
        bool busy = u->rextra > 0;
        for (int i = 0; i < STORAGE_READERS; i++)
            busy |= u->rbusy[i];
        if (!wait || !busy)
            break;
        pthread_cond_wait(&u->rcond, &u->rlock);
    }
    for (int i = 0; i < STORAGE_READERS; i++) {
        if (u->rbusy[i] || !u->rdb[i])
            continue;
        idle[n++] = u->rdb[i];
        u->rdb[i] = NULL;
    }
    pthread_mutex_unlock(&u->rlock);
    for (int i = 0; i < n; i++)
        db_close(idle[i]);
}

/* Closes every connection; wait as for readers_close. The last connection
 * to the file checkpoints it. */
static void close_dbs(struct storage_user *u, bool wait)
{
    readers_close(u, wait);
    if (u->wdb) {
        journal_note_usage(u); /* what a journaled delivery counts from */
        db_close(u->wdb);
    }
    u->wdb = NULL;
}

void storage_trim(struct storage_user *u)
{
    /* the writer keeps the index open (nothing is checkpointed here) and
     * answers the polls; the next read opens a reader again, a fraction of
     * a millisecond, where an idle one held its schema and pages */
    readers_close(u, false);
    pthread_mutex_lock(&u->wlock); /* an asleep writer stays closed */
    if (u->wdb) {
        sqlc_release(u->wdb); /* its kept statements too (server/base/sqlcache.c) */
        sqlite3_db_release_memory(u->wdb);
    }
    pthread_mutex_unlock(&u->wlock);
}

static void file_sig(const char *path, struct timespec *mtime, off_t *size)
{
    struct stat sb;
    if (stat(path, &sb) == 0) {
        *mtime = sb.st_mtim;
        *size = sb.st_size;
    } else {
        memset(mtime, 0, sizeof(*mtime));
        *size = -1;
    }
}

/* Under the writer lock: the index files are as the handle left them
 * when it fell asleep. */
static bool index_unchanged(struct storage_user *u)
{
    char path[STORAGE_PATH_MAX];
    struct timespec m, wm;
    off_t sz, wsz;

    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    file_sig(path, &m, &sz);
    pathf(path, sizeof(path), "%s/index.sqlite-wal", u->root);
    file_sig(path, &wm, &wsz);
    return sz == u->sleep_size && wsz == u->sleep_wal_size && m.tv_sec == u->sleep_mtime.tv_sec &&
           m.tv_nsec == u->sleep_mtime.tv_nsec && wm.tv_sec == u->sleep_wal_mtime.tv_sec &&
           wm.tv_nsec == u->sleep_wal_mtime.tv_nsec;
}

bool storage_sleep(struct storage_user *u, uint64_t idle_ms)
{
    char path[STORAGE_PATH_MAX];
    bool busy, had_writer;

    pthread_mutex_lock(&u->wlock);
    had_writer = u->wdb != NULL;
    if (u->asleep) {
        pthread_mutex_unlock(&u->wlock);
        return true;
    }
    if (mono_ms() - __atomic_load_n(&u->last_use_ms, __ATOMIC_RELAXED) < idle_ms) {
        pthread_mutex_unlock(&u->wlock);
        return false;
    }
    ahead_drop(u, false);
    readers_close(u, false);
    /* the reader lock is held until the handle is marked asleep: a reader
     * taking a slot meanwhile (open or still opening) keeps it awake */
    pthread_mutex_lock(&u->rlock);
    busy = u->rextra > 0;
    for (int i = 0; i < STORAGE_READERS; i++)
        busy |= u->rdb[i] != NULL || u->rbusy[i];
    if (!busy && u->wdb)
        journal_note_usage(u); /* what a journaled delivery counts from */
    /* the last connection to close checkpoints the index */
    if (busy || (u->wdb && db_close(u->wdb) != SQLITE_OK)) {
        pthread_mutex_unlock(&u->rlock);
        pthread_mutex_unlock(&u->wlock);
        return false;
    }
    u->wdb = NULL;
    /* without a writer since the last sleep (reads only), the files are
     * compared with what they were then: a change made meanwhile by another
     * program still shows */
    if (had_writer) {
        pathf(path, sizeof(path), "%s/index.sqlite", u->root);
        file_sig(path, &u->sleep_mtime, &u->sleep_size);
        pathf(path, sizeof(path), "%s/index.sqlite-wal", u->root);
        file_sig(path, &u->sleep_wal_mtime, &u->sleep_wal_size);
    }
    __atomic_store_n(&u->asleep, true, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&u->rlock);
    pthread_mutex_unlock(&u->wlock);
    return true;
}

uint64_t storage_last_use(struct storage_user *u)
{
    return __atomic_load_n(&u->last_use_ms, __ATOMIC_RELAXED);
}

bool storage_asleep(struct storage_user *u)
{
    return __atomic_load_n(&u->asleep, __ATOMIC_RELAXED);
}

/* writer_lock without counting as a use of the handle (a poll) */
static int writer_lock_quiet(struct storage_user *u)
{
    char path[STORAGE_PATH_MAX];
    int rc;

    pthread_mutex_lock(&u->wlock);
    if (u->wdb)
        return 0;
    /* asleep: the index opens again as a reader's connection does */
    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if ((rc = db_open_conn(path, false, &u->wdb)) != 0) {
        u->wdb = NULL;
        pthread_mutex_unlock(&u->wlock);
        return rc;
    }
    register_sql_functions(u->wdb, u);
    u->data_version = 0; /* the next poll compares every mailbox with what it saw */
    __atomic_store_n(&u->asleep, false, __ATOMIC_RELAXED);
    return 0;
}

int writer_lock(struct storage_user *u)
{
    int rc;

    note_use(u);
    /* seen by the indexer, which then lets go of the lock sooner */
    __atomic_add_fetch(&u->wwaiting, 1, __ATOMIC_RELAXED);
    rc = writer_lock_quiet(u);
    __atomic_sub_fetch(&u->wwaiting, 1, __ATOMIC_RELAXED);
    return rc;
}

void writer_unlock(struct storage_user *u)
{
    pthread_mutex_unlock(&u->wlock);
}

/* ---- the write transaction ---- */

struct pending_event *txn_event(struct txn *t, enum storage_event_type type, int64_t mbox)
{
    struct pending_event *pe;

    if (t->nev == t->capev) {
        size_t nc = t->capev * 2;
        struct pending_event *p = malloc(nc * sizeof(*p));
        if (!p)
            return NULL;
        memcpy(p, t->ev, t->nev * sizeof(*p));
        if (t->ev != t->ev_inline)
            free(t->ev);
        t->ev = p;
        t->capev = nc;
    }
    pe = &t->ev[t->nev++];
    memset(pe, 0, sizeof(*pe));
    pe->type = type;
    pe->mbox = mbox;
    return pe;
}

int txn_run(struct storage_user *u, const struct txn_path *p, void *ctx, struct txn *t,
            bool *announce)
{
    int rc;

    *announce = false;
    t->db = u->wdb;
    if ((rc = db_begin(t->db)) == 0) {
        mstate_begin(t);
        rc = p->work(t, ctx);
        if (rc == 0)
            rc = recent_apply(t);
        bool applied = rc == 0;
        if (applied)
            mstate_apply(t);
        if (rc == 0 && (rc = db_commit(t->db)) == 0) {
            *announce = true;
        } else {
            db_rollback(t->db);
            if (applied)
                mstate_abort(u);
        }
        if (rc == TXN_NOTHING)
            rc = 0;
    }
    if (*announce && p->committed)
        p->committed(t, ctx);
    else if (!*announce && p->undo)
        p->undo(t, ctx);
    return rc;
}

int txn_unsynced_before(struct storage_user *u, void *ctx)
{
    (void)ctx;
    return db_exec(u->wdb, "PRAGMA synchronous = NORMAL");
}

void txn_unsynced_after(struct txn *t, void *ctx)
{
    (void)ctx;
    db_exec(t->u->wdb, "PRAGMA synchronous = FULL");
}

int write_txn_path(struct storage_user *u, const struct txn_path *p, void *ctx)
{
    struct txn t = {.u = u};
    struct txn_events drained = {0};
    bool announce = false;
    int rc = 0;

    t.ev = t.ev_inline;
    t.capev = sizeof(t.ev_inline) / sizeof(t.ev_inline[0]);
    if ((rc = writer_lock(u)) != 0)
        return rc;
    /* deliveries the journal took for the account come first (journal.c) */
    if (journal_pending(u))
        journal_drain(u, &drained);
    if (p->before && (rc = p->before(u, ctx)) != 0)
        goto out;
    rc = txn_run(u, p, ctx, &t, &announce);
out:
    writer_unlock(u);
    for (size_t i = 0; i < drained.n; i++) {
        emit_event(u, &drained.ev[i]);
        storage_uidlist_free(&drained.ev[i].uids);
    }
    free(drained.ev);
    for (size_t i = 0; i < t.nev; i++) {
        if (announce)
            emit_event(u, &t.ev[i]);
        storage_uidlist_free(&t.ev[i].uids);
    }
    if (t.ev != t.ev_inline)
        free(t.ev);
    return rc;
}

int write_txn(struct storage_user *u, txn_work work, void *ctx)
{
    const struct txn_path p = {.work = work};
    return write_txn_path(u, &p, ctx);
}

/* ---- watchers ---- */

void emit_event(struct storage_user *u, struct pending_event *pe)
{
    struct storage_event ev = {
        .type = pe->type,
        .mbox = pe->mbox,
        .uids = pe->uids.uids,
        .n = pe->uids.n,
        .modseq = pe->modseq,
        .viewer = pe->viewer,
    };

    if (pe->type != STORAGE_EV_MAILBOX && pe->type != STORAGE_EV_EXTERNAL && pe->uids.n == 0)
        return;
    pthread_rwlock_rdlock(&u->watch_lock);
    for (struct storage_watch *w = u->watches; w; w = w->next)
        w->cb(w->arg, &ev);
    pthread_rwlock_unlock(&u->watch_lock);
}

struct storage_watch *storage_watch(struct storage_user *u, storage_event_cb cb, void *arg)
{
    struct storage_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->u = u;
    w->cb = cb;
    w->arg = arg;
    pthread_rwlock_wrlock(&u->watch_lock);
    w->next = u->watches;
    u->watches = w;
    pthread_rwlock_unlock(&u->watch_lock);
    return w;
}

void storage_unwatch(struct storage_watch *w)
{
    struct storage_user *u;

    if (!w)
        return;
    u = w->u;
    pthread_rwlock_wrlock(&u->watch_lock);
    for (struct storage_watch **p = &u->watches; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    pthread_rwlock_unlock(&u->watch_lock);
    free(w);
}

/* ---- polling for other processes ---- */

struct mbox_snap {
    int64_t id;
    uint32_t uidnext;
    uint64_t modseq;
};

static int read_snapshot(sqlite3 *db, struct mbox_snap **out, size_t *n)
{
    sqlite3_stmt *st;
    struct mbox_snap *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = db_prepare(db, "SELECT id, uidnext, highestmodseq FROM mailboxes ORDER BY id", &st);

    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (array_grow(&v, &cap, cnt, sizeof(*v), 16) != 0) {
            free(v);
            db_finalize(st);
            return STORAGE_E_NOMEM;
        }
        v[cnt].id = sqlite3_column_int64(st, 0);
        v[cnt].uidnext = (uint32_t)sqlite3_column_int64(st, 1);
        v[cnt].modseq = (uint64_t)sqlite3_column_int64(st, 2);
        cnt++;
    }
    rc = rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
    db_finalize(st);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

struct poll_state {
    struct mbox_snap *snap;
    size_t n;
};

static struct poll_state *poll_states_get(struct storage_user *u);

/* PRAGMA data_version of the writer connection: it moves when another
 * connection commits. Under the writer lock. */
static int data_version(struct storage_user *u, int64_t *dv)
{
    sqlite3_stmt *st;
    int rc = db_prepare(u->wdb, "PRAGMA data_version", &st);

    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        *dv = sqlite3_column_int64(st, 0);
    db_finalize(st);
    return 0;
}

int storage_poll(struct storage_user *u)
{
    int64_t dv = 0;
    struct mbox_snap *now = NULL;
    size_t n = 0;
    struct poll_state *ps;
    int rc;

    pthread_mutex_lock(&u->wlock);
    if (u->asleep && index_unchanged(u)) {
        /* nobody wrote the index since it was closed */
        pthread_mutex_unlock(&u->wlock);
        return 0;
    }
    pthread_mutex_unlock(&u->wlock);
    if ((rc = writer_lock_quiet(u)) != 0)
        return rc;
    if ((rc = data_version(u, &dv)) != 0) {
        writer_unlock(u);
        return rc;
    }
    if (dv == u->data_version) {
        writer_unlock(u);
        return 0;
    }
    u->data_version = dv;
    rc = read_snapshot(u->wdb, &now, &n);
    ps = poll_states_get(u);
    writer_unlock(u);
    if (rc)
        return rc;
    if (!ps) {
        free(now);
        return STORAGE_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        bool changed = true;
        for (size_t j = 0; j < ps->n; j++) {
            if (ps->snap[j].id == now[i].id) {
                changed =
                    ps->snap[j].uidnext != now[i].uidnext || ps->snap[j].modseq != now[i].modseq;
                break;
            }
        }
        /* no snapshot yet: the first poll that sees another process's
         * commit cannot tell which mailboxes it touched, so it reports
         * them all (a session rereads its mailbox's state) rather than
         * none of them */
        if (changed) {
            struct pending_event pe = {
                .type = STORAGE_EV_EXTERNAL, .mbox = now[i].id, .modseq = now[i].modseq};
            emit_event(u, &pe);
        }
    }
    free(ps->snap);
    ps->snap = now;
    ps->n = n;
    return 0;
}

/* One poll state per handle, kept beside it (allocated on first use). */
struct poll_entry {
    struct storage_user *u;
    struct poll_state ps;
    struct poll_entry *next;
};
static pthread_mutex_t poll_lock = PTHREAD_MUTEX_INITIALIZER;
static struct poll_entry *poll_entries;

static struct poll_state *poll_states_get(struct storage_user *u)
{
    struct poll_entry *e;

    pthread_mutex_lock(&poll_lock);
    for (e = poll_entries; e; e = e->next)
        if (e->u == u)
            break;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (e) {
            e->u = u;
            e->next = poll_entries;
            poll_entries = e;
        }
    }
    pthread_mutex_unlock(&poll_lock);
    return e ? &e->ps : NULL;
}

static void poll_states_drop(struct storage_user *u)
{
    pthread_mutex_lock(&poll_lock);
    for (struct poll_entry **p = &poll_entries; *p; p = &(*p)->next) {
        if ((*p)->u == u) {
            struct poll_entry *e = *p;
            *p = e->next;
            free(e->ps.snap);
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&poll_lock);
}

/* ---- open / close ---- */

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

static int mkdir_if(const char *p)
{
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return err_from_errno(errno);
    return 0;
}

/* Is the main database file shorter than its header says (truncated)? */
static bool db_file_truncated(const char *path)
{
    unsigned char h[100];
    struct stat sb;
    uint32_t pagesize, pages;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return false;
    n = read(fd, h, sizeof(h));
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return false;
    }
    close(fd);
    if (n == 0)
        return false; /* empty: a fresh database */
    {
        /* While a WAL exists, a checkpoint (of this or another process) may
         * be writing the file: page 1 with the new size lands before the
         * file grows. Only a database without a WAL is checked; the last
         * connection removes the WAL after its checkpoint is complete. */
        char wal[STORAGE_PATH_MAX];
        struct stat wb;
        pathf(wal, sizeof(wal), "%s-wal", path);
        if (stat(wal, &wb) == 0 && wb.st_size > 0)
            return false;
    }
    if (n < (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16) != 0)
        return true; /* garbage or cut inside the header */
    pagesize = (uint32_t)h[16] << 8 | h[17];
    if (pagesize == 1)
        pagesize = 65536;
    pages = (uint32_t)h[28] << 24 | (uint32_t)h[29] << 16 | (uint32_t)h[30] << 8 | h[31];
    /* the in-header size is valid only when the change counters agree */
    if (memcmp(h + 24, h + 92, 4) != 0)
        return false;
    return (uint64_t)sb.st_size < (uint64_t)pagesize * pages;
}

static void move_index_aside(struct storage_user *u, const char *why)
{
    char from[STORAGE_PATH_MAX], to[STORAGE_PATH_MAX];

    pathf(from, sizeof(from), "%s/index.sqlite", u->root);
    pathf(to, sizeof(to), "%s/index.sqlite.bad.%" PRId64, u->root, now_unix());
    log_error("storage: user %" PRId64 ": index %s (%s); moved to %s, rebuilding from Maildir",
              u->id, from, why, to);
    if (rename(from, to) < 0 && errno != ENOENT)
        unlink(from);
    pathf(from, sizeof(from), "%s/index.sqlite-wal", u->root);
    unlink(from);
    pathf(from, sizeof(from), "%s/index.sqlite-shm", u->root);
    unlink(from);
}

/* An index of schema 4 to 10 is upgraded on open, in one transaction;
 * the texts of its full-text index wait for the upkeep meanwhile (fts.c).
 *   4: the trigram full-text index gives way to the word index;
 *   5: the word index takes the whole header block too (SEARCH TEXT covers
 *      the header, RFC 3501 6.4.4);
 *   6: the SORT/THREAD keys of every body are computed from what the index
 *      holds (sort.c), in one pass, no message file read: once, rather
 *      than a check for missing keys in every SORT and THREAD;
 *   8: object ids and threads (objectid.c), from the index alone; the
 *      previews of the bodies already there are made when first asked for
 *      (storage_msg_preview, on the pool), never by reading every message
 *      file inside this transaction;
 *   9: the table of header blocks (HEADERS_TABLE), for the bodies saved
 *      from now on: those already there keep theirs where they are, no
 *      row is moved;
 *  10: the table of listing blocks (LISTINGS_TABLE), likewise for the
 *      bodies saved from now on. */
static int migrate(struct storage_user *u, int64_t from)
{
    int rc = db_begin(u->wdb);

    /* first: the steps below read the header blocks through it */
    if (rc == 0 && from <= 9)
        rc = db_exec(u->wdb, HEADERS_TABLE);
    if (rc == 0 && from <= 10)
        rc = db_exec(u->wdb, LISTINGS_TABLE);
    if (rc == 0 && from == 4)
        rc = fts_migrate_4(u->wdb);
    else if (rc == 0 && from <= 7)
        rc = fts_reindex_all(u->wdb);
    if (rc == 0 && from <= 7)
        rc = sortkeys_migrate_6(u->wdb);
    if (rc == 0 && from <= 8)
        rc = objectid_migrate_8(u->wdb);
    if (rc == 0)
        rc = from == 4 ? db_create_schema(u->wdb)
                       : db_meta_set(u->wdb, "schema", STORAGE_SCHEMA_VERSION);
    if (rc == 0)
        rc = db_commit(u->wdb);
    else
        db_rollback(u->wdb);
    if (rc == 0)
        log_info("storage: user %" PRId64 ": index schema %" PRId64 " upgraded to %d%s", u->id,
                 from, STORAGE_SCHEMA_VERSION,
                 from < 8 ? "; full-text index updated in the background" : "");
    return rc;
}

/* Opens the writer connection; *fresh when the schema had to be created
 * (new user, or index lost: the caller rebuilds from the Maildir). */
static int open_index(struct storage_user *u, bool *fresh)
{
    char path[STORAGE_PATH_MAX];
    struct stat sb;
    int64_t ver = 0;
    int rc;

    *fresh = false;
    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if (stat(path, &sb) < 0) {
        char p2[STORAGE_PATH_MAX];
        /* a WAL without its database would be replayed into a new file */
        pathf(p2, sizeof(p2), "%s/index.sqlite-wal", u->root);
        unlink(p2);
        pathf(p2, sizeof(p2), "%s/index.sqlite-shm", u->root);
        unlink(p2);
        *fresh = true;
    } else if (db_file_truncated(path)) {
        move_index_aside(u, "truncated or not a database");
        *fresh = true;
    }

    for (int attempt = 0; attempt < 2; attempt++) {
        rc = db_open_conn(path, true, &u->wdb);
        if (rc == STORAGE_E_CORRUPT && attempt == 0) {
            move_index_aside(u, "not a database");
            *fresh = true;
            continue;
        }
        if (rc)
            return rc;
        register_sql_functions(u->wdb, u);
        {
            sqlite3_stmt *st;
            rc = db_prepare(u->wdb, "SELECT count(*) FROM sqlite_schema WHERE name = 'meta'", &st);
            if (rc == 0) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                    if (sqlite3_column_int(st, 0) == 0)
                        *fresh = true;
                    rc = 0;
                } else {
                    rc = err_from_sqlite(u->wdb, rc);
                }
                db_finalize(st);
            }
        }
        if (rc == 0 && !*fresh)
            rc = db_meta_get(u->wdb, "schema", &ver);
        if (rc == 0 && !*fresh && ver >= 4 && ver < STORAGE_SCHEMA_VERSION)
            rc = migrate(u, ver);
        if (rc == 0 && !*fresh && (ver < 4 || ver > STORAGE_SCHEMA_VERSION)) {
            log_error("storage: user %" PRId64 ": index schema %" PRId64 " unknown", u->id, ver);
            rc = STORAGE_E_CORRUPT;
        }
        /* tables added without a new schema version, which an index of
         * this version may lack */
        if (rc == 0 && !*fresh)
            rc = db_exec(u->wdb, PSEEN_TABLE FTS_PENDING_IDS MESSAGES_FLAGS MESSAGES_LIST);
        if (rc == 0 && !*fresh) {
            /* touch every table once: a damaged page shows up here */
            rc = db_exec(u->wdb, "SELECT count(*) FROM mailboxes; SELECT max(uid) FROM messages;"
                                 "SELECT max(id) FROM bodies; SELECT count(*) FROM subscriptions;");
        }
        if (rc == STORAGE_E_CORRUPT && attempt == 0) {
            db_close(u->wdb);
            u->wdb = NULL;
            move_index_aside(u, "corrupt");
            *fresh = true;
            continue;
        }
        if (rc) {
            db_close(u->wdb);
            u->wdb = NULL;
            return rc;
        }
        break;
    }
    if (*fresh) {
        rc = db_begin(u->wdb);
        if (rc == 0)
            rc = db_create_schema(u->wdb);
        if (rc == 0)
            rc = db_commit(u->wdb);
        else
            db_rollback(u->wdb);
        if (rc)
            return rc;
    }
    return 0;
}

static void note_index_file(struct storage_user *u)
{
    char path[STORAGE_PATH_MAX];
    struct stat sb;

    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if (stat(path, &sb) == 0) {
        u->index_dev = sb.st_dev;
        u->index_ino = sb.st_ino;
    }
}

/* Under the writer lock. When the index file is no longer the one the
 * connections have open (coffrectl mailbox reindex put a new one in its
 * place while the handle stayed open), they are opened again on the new
 * file, after the readers in use are given back. *fresh: the file is new
 * and must be filled from the Maildir. */
int reopen_if_replaced(struct storage_user *u, bool *fresh)
{
    char path[STORAGE_PATH_MAX];
    struct stat sb;
    int rc;

    *fresh = false;
    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if (stat(path, &sb) == 0 && sb.st_dev == u->index_dev && sb.st_ino == u->index_ino)
        return 0;
    close_dbs(u, true);
    mstate_drop_all(u);
    log_info("storage: user %" PRId64 ": the index file was replaced; opening the new one", u->id);
    if ((rc = open_index(u, fresh)) != 0)
        return rc;
    note_index_file(u);
    u->data_version = 0; /* the next poll reports every mailbox */
    return 0;
}

void user_free(struct storage_user *u)
{
    if (!u)
        return;
    ahead_drop(u, true);
    close_dbs(u, false);
    pthread_mutex_destroy(&u->wlock);
    pthread_mutex_destroy(&u->rlock);
    pthread_cond_destroy(&u->rcond);
    pthread_rwlock_destroy(&u->watch_lock);
    pthread_mutex_destroy(&u->qlock);
    mstate_drop_all(u);
    pthread_mutex_destroy(&u->ms_lock);
    pthread_mutex_destroy(&u->sc_lock);
    pthread_mutex_destroy(&u->cq_lock);
    pthread_cond_destroy(&u->cq_cond);
    recent_drop_all(u);
    pthread_mutex_destroy(&u->rc_lock);
    poll_states_drop(u);
    free(u->data_dir);
    free(u->root);
    free(u->maildir);
    free(u);
}

struct storage_user *user_new(int64_t id, const char *data_dir)
{
    struct storage_user *u = calloc(1, sizeof(*u));

    if (!u)
        return NULL;
    if (!(u->data_dir = strdup(data_dir))) {
        free(u);
        return NULL;
    }
    u->id = id;
    pthread_mutex_init(&u->wlock, NULL);
    pthread_mutex_init(&u->rlock, NULL);
    pthread_cond_init(&u->rcond, NULL);
    pthread_rwlock_init(&u->watch_lock, NULL);
    pthread_mutex_init(&u->qlock, NULL);
    pthread_mutex_init(&u->ms_lock, NULL);
    pthread_mutex_init(&u->sc_lock, NULL);
    pthread_mutex_init(&u->cq_lock, NULL);
    pthread_cond_init(&u->cq_cond, NULL);
    pthread_mutex_init(&u->rc_lock, NULL);
    u->cq_tail = &u->cq_head;
    return u;
}

/* Under the registry lock. */
static void registry_unlink(struct storage_user *u)
{
    for (struct storage_user **p = &registry; *p; p = &(*p)->next) {
        if (*p == u) {
            *p = u->next;
            return;
        }
    }
}

/* The changes made until now are this handle's: storage_poll reports
 * those committed after. */
static void note_data_version(struct txn *t, void *ctx)
{
    (void)ctx;
    data_version(t->u, &t->u->data_version);
}

static int user_setup(struct storage_user *u)
{
    char idbuf[32], *users;
    bool fresh;
    int rc;

    pathf(idbuf, sizeof(idbuf), "%" PRId64, u->id);
    users = path_join(u->data_dir, "users");
    if (!users)
        return STORAGE_E_NOMEM;
    u->root = path_join(users, idbuf);
    rc = u->root ? mkdir_if(users) : STORAGE_E_NOMEM;
    free(users);
    if (rc)
        return rc;
    if ((rc = mkdir_if(u->root)) != 0)
        return rc;
    u->maildir = path_join(u->root, "Maildir");
    if (!u->maildir)
        return STORAGE_E_NOMEM;
    if ((rc = ensure_maildir_dirs(u->maildir)) != 0)
        return rc;

    if ((rc = open_index(u, &fresh)) != 0)
        return rc;
    note_index_file(u);
    clean_tmp(u->maildir);
    return rescan_write(u, 0, fresh ? RESCAN_REBUILD : RESCAN_OPEN, false, note_data_version);
}

/* A write transaction for what write_txn does first (journal_drain). */
static int nothing_to_write(struct txn *t, void *ctx)
{
    (void)t;
    (void)ctx;
    return TXN_NOTHING;
}

int storage_open(const char *data_dir, int64_t id, struct storage_user **out)
{
    struct storage_user *u;
    int rc;

    *out = NULL;
    if (id < 0 || !data_dir || !*data_dir)
        return STORAGE_E_INVAL;
    pthread_mutex_lock(&registry_lock);
again:
    for (u = registry; u; u = u->next) {
        if (u->id == id && strcmp(u->data_dir, data_dir) == 0) {
            if (u->busy) {
                /* being set up or closed by another thread */
                pthread_cond_wait(&registry_cond, &registry_lock);
                goto again;
            }
            u->refs++;
            pthread_mutex_unlock(&registry_lock);
            *out = u;
            return 0;
        }
    }
    u = user_new(id, data_dir);
    if (!u) {
        pthread_mutex_unlock(&registry_lock);
        return STORAGE_E_NOMEM;
    }
    u->refs = 1;
    u->busy = true;
    u->next = registry;
    registry = u;
    pthread_mutex_unlock(&registry_lock);

    journal_hold(u); /* no journaled delivery to it from now on */
    rc = user_setup(u);
    /* its rescan took in what the journal held for it; an index rebuilt
     * from the Maildir had no INBOX yet when the journal was looked at */
    if (rc == 0 && journal_pending(u))
        rc = write_txn(u, nothing_to_write, NULL);

    pthread_mutex_lock(&registry_lock);
    if (rc)
        registry_unlink(u);
    u->busy = false;
    pthread_cond_broadcast(&registry_cond);
    pthread_mutex_unlock(&registry_lock);
    if (rc) {
        log_error("storage: user %" PRId64 ": open failed: %s", id, storage_strerror(rc));
        journal_release(u);
        user_free(u);
        return rc;
    }
    *out = u;
    return 0;
}

/* For coffrectl check: the handle is not shared, nothing is created or
 * changed on open. STORAGE_E_NOMBOX when there is no index. */
int user_open_private(const char *data_dir, int64_t id, struct storage_user **out)
{
    char idbuf[32], path[STORAGE_PATH_MAX];
    struct storage_user *u = user_new(id, data_dir);
    struct stat sb;
    int rc;

    *out = NULL;
    if (!u)
        return STORAGE_E_NOMEM;
    pathf(idbuf, sizeof(idbuf), "users/%" PRId64, id);
    u->root = path_join(data_dir, idbuf);
    u->maildir = u->root ? path_join(u->root, "Maildir") : NULL;
    if (!u->root || !u->maildir) {
        user_free(u);
        return STORAGE_E_NOMEM;
    }
    pathf(path, sizeof(path), "%s/index.sqlite", u->root);
    if (stat(path, &sb) < 0 || sb.st_size == 0) {
        user_free(u);
        return STORAGE_E_NOMBOX;
    }
    if (db_file_truncated(path)) {
        user_free(u);
        return STORAGE_E_CORRUPT;
    }
    rc = db_open_conn(path, false, &u->wdb);
    if (rc == 0) {
        register_sql_functions(u->wdb, u);
        rc = db_exec(u->wdb, "SELECT count(*) FROM mailboxes; SELECT count(*) FROM messages");
    }
    if (rc) {
        user_free(u);
        return rc == STORAGE_E_TEMP ? rc : STORAGE_E_CORRUPT;
    }
    *out = u;
    return 0;
}

void user_close_private(struct storage_user *u)
{
    user_free(u);
}

void storage_close(struct storage_user *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&registry_lock);
    if (--u->refs > 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    /* An open of the same account must not run while this handle still
     * checkpoints its index, or it would see the file mid-checkpoint: it
     * waits while the handle is busy. Other accounts do not. */
    u->busy = true;
    pthread_mutex_unlock(&registry_lock);
    close_dbs(u, false);
    journal_release(u);
    pthread_mutex_lock(&registry_lock);
    registry_unlink(u);
    pthread_cond_broadcast(&registry_cond);
    pthread_mutex_unlock(&registry_lock);
    user_free(u);
}

int64_t storage_user_id(const struct storage_user *u)
{
    return u->id;
}

void storage_set_quota(struct storage_user *u, uint64_t max_bytes, uint64_t max_messages)
{
    pthread_mutex_lock(&u->qlock);
    u->quota_bytes = max_bytes;
    u->quota_messages = max_messages;
    pthread_mutex_unlock(&u->qlock);
}

void storage_quota_limits(struct storage_user *u, uint64_t *max_bytes, uint64_t *max_messages)
{
    pthread_mutex_lock(&u->qlock);
    *max_bytes = u->quota_bytes;
    *max_messages = u->quota_messages;
    pthread_mutex_unlock(&u->qlock);
}

int storage_quota_usage(struct storage_user *u, uint64_t *bytes, uint64_t *messages)
{
    sqlite3 *db = reader_get(u);
    int64_t b = 0, m = 0;
    int rc;

    if (!db)
        return STORAGE_E_TEMP;
    rc = db_meta_get(db, "quota_bytes", &b);
    if (rc == 0)
        rc = db_meta_get(db, "quota_messages", &m);
    reader_put(u, db);
    if (bytes)
        *bytes = (uint64_t)(b < 0 ? 0 : b);
    if (messages)
        *messages = (uint64_t)(m < 0 ? 0 : m);
    return rc;
}

int quota_room_db(struct storage_user *u, sqlite3 *db, uint64_t *bytes, uint64_t *messages)
{
    uint64_t maxb, maxm;
    int64_t b = 0, m = 0;
    int rc;

    pthread_mutex_lock(&u->qlock);
    maxb = u->quota_bytes;
    maxm = u->quota_messages;
    pthread_mutex_unlock(&u->qlock);
    *bytes = *messages = UINT64_MAX;
    if (!maxb && !maxm)
        return 0;
    if ((rc = db_meta_get(db, "quota_bytes", &b)) != 0 ||
        (rc = db_meta_get(db, "quota_messages", &m)) != 0)
        return rc;
    uint64_t used_b = b < 0 ? 0 : (uint64_t)b, used_m = m < 0 ? 0 : (uint64_t)m;
    if (maxb)
        *bytes = used_b < maxb ? maxb - used_b : 0;
    if (maxm)
        *messages = used_m < maxm ? maxm - used_m : 0;
    return 0;
}

int storage_quota_room(struct storage_user *u, uint64_t *bytes, uint64_t *messages)
{
    sqlite3 *db;
    int rc;

    pthread_mutex_lock(&u->qlock);
    bool limited = u->quota_bytes || u->quota_messages;
    pthread_mutex_unlock(&u->qlock);
    if (!limited) {
        *bytes = *messages = UINT64_MAX;
        return 0;
    }
    /* a light handle's account: as the journal counts it, when it knows */
    if (u->light && (rc = journal_quota_room(u, bytes, messages)) != JOURNAL_NO)
        return rc;
    if (!(db = reader_get(u)))
        return STORAGE_E_TEMP;
    rc = quota_room_db(u, db, bytes, messages);
    reader_put(u, db);
    return rc;
}
