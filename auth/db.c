/* The account directory's statement layer (see auth/db.h): SQLite through
 * one shared connection (FULLMUTEX, WAL, busy timeout), PostgreSQL
 * through libpq and a small pool of connections guarded by a mutex. */
#include "auth/db.h"
#include "server/base/log.h"
#include "server/base/sqlcache.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DB_BUSY_TIMEOUT_MS 10000
#define PG_POOL_DEFAULT 8
#define PG_POOL_MAX 256
#define PG_WAIT_S 10               /* a statement waits so long for a free connection */
#define PG_STATEMENT_TIMEOUT "10s" /* a statement that runs longer fails */
#define PG_INT8OID 20
#define PG_TEXTOID 25

static unsigned pg_pool_size = PG_POOL_DEFAULT;

void adb_pg_set_pool_size(unsigned n)
{
    if (n >= 1 && n <= PG_POOL_MAX)
        pg_pool_size = n;
}

struct pg_slot {
    PGconn *c;       /* NULL: not connected (or lost inside a transaction) */
    bool busy;       /* a thread uses it */
    bool txn;        /* a transaction is open: it stays with owner */
    pthread_t owner; /* while busy */
};

struct adb_conn {
    sqlite3 *h; /* SQLite */
    /* PostgreSQL */
    char *conninfo;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned n;
    struct pg_slot *slots;
};

struct adb_stmt {
    struct auth_db *db;
    int64_t changes;
    sqlite3_stmt *s; /* SQLite */
    /* PostgreSQL */
    char *sql; /* translated */
    int nparams;
    char *values[DB_PARAMS_MAX];
    unsigned types[DB_PARAMS_MAX];
    PGresult *res;
    int row, nrows;
    bool done;
};

/* ---- SQLite ---- */

int adb_open_sqlite(struct auth_db *db, const char *path, char *err, size_t errlen)
{
    struct adb_conn *c = calloc(1, sizeof(*c));
    int r;

    if (!c) {
        snprintf(err, errlen, "%s: out of memory", path);
        return DB_ERROR;
    }
    r = sqlite3_open_v2(path, &c->h,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
    if (r != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, c->h ? sqlite3_errmsg(c->h) : sqlite3_errstr(r));
        sqlite3_close(c->h);
        free(c);
        return DB_ERROR;
    }
    sqlite3_busy_timeout(c->h, DB_BUSY_TIMEOUT_MS);
    db->backend = AUTH_BACKEND_SQLITE;
    db->c = c;
    return DB_OK;
}

struct sqlite3 *adb_sqlite(struct auth_db *db)
{
    return db->backend == AUTH_BACKEND_SQLITE ? db->c->h : NULL;
}

static int sqlite_result(sqlite3 *h, int r)
{
    if (r == SQLITE_ROW)
        return DB_ROW;
    if (r == SQLITE_DONE || r == SQLITE_OK)
        return r == SQLITE_DONE ? DB_DONE : DB_OK;
    if ((r & 0xff) == SQLITE_CONSTRAINT ||
        (sqlite3_extended_errcode(h) & 0xff) == SQLITE_CONSTRAINT)
        return DB_CONSTRAINT;
    if ((r & 0xff) == SQLITE_BUSY)
        return DB_BUSY;
    return DB_ERROR;
}

/* ---- PostgreSQL: connections ---- */

static void pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation ... already exists, skipping" and the like */
}

/* A line in the log about the directory, at most every PG_LOG_EVERY_S:
 * while PostgreSQL is down every login would say the same. */
#define PG_LOG_EVERY_S 10
static void pg_log(const char *what, const char *msg)
{
    static _Atomic int64_t last;
    int64_t now = (int64_t)time(NULL), prev = atomic_load(&last);
    char one[256];
    size_t n;

    if (now - prev < PG_LOG_EVERY_S || !atomic_compare_exchange_strong(&last, &prev, now))
        return;
    snprintf(one, sizeof(one), "%s", msg ? msg : "");
    n = strcspn(one, "\r\n"); /* libpq's messages end in a newline */
    one[n] = '\0';
    log_warn("accounts directory (postgresql): %s: %s", what, one);
}

/* A new connection, set up; NULL when the server cannot be reached. */
static PGconn *pg_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *res;

    if (!c)
        return NULL;
    if (PQstatus(c) != CONNECTION_OK) {
        pg_log("cannot connect", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, pg_quiet, NULL);
    res = PQexec(c, "SET statement_timeout = '" PG_STATEMENT_TIMEOUT "'");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        PQclear(res);
        PQfinish(c);
        return NULL;
    }
    PQclear(res);
    return c;
}

/* Whether an idle connection still stands. Nothing is expected on it
 * while idle: readable means the server sent its goodbye (a shutdown's
 * FATAL message) or closed it, which PQconsumeInput turns into
 * CONNECTION_BAD. Costs no round trip. */
static bool pg_alive(PGconn *c)
{
    struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};

    if (PQstatus(c) != CONNECTION_OK || p.fd < 0)
        return false;
    if (poll(&p, 1, 0) > 0 && (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK))
        return false;
    return true;
}

static bool pg_is_self(const struct pg_slot *s)
{
    return s->busy && pthread_equal(s->owner, pthread_self());
}

/* The connection of the calling thread's transaction, or a free one
 * (connecting when needed). The slot index, or -1 (server unreachable,
 * or no connection free within PG_WAIT_S). */
static int pg_acquire(struct adb_conn *c)
{
    struct timespec until;
    int got = -1;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PG_WAIT_S;
    pthread_mutex_lock(&c->mu);
    for (unsigned i = 0; i < c->n; i++)
        if (c->slots[i].txn && pg_is_self(&c->slots[i])) {
            pthread_mutex_unlock(&c->mu);
            return c->slots[i].c ? (int)i : -1;
        }
    while (got < 0) {
        int empty = -1;

        for (unsigned i = 0; i < c->n && got < 0; i++) {
            if (c->slots[i].busy)
                continue;
            if (c->slots[i].c)
                got = (int)i;
            else if (empty < 0)
                empty = (int)i;
        }
        if (got < 0 && empty >= 0)
            got = empty;
        if (got >= 0)
            break;
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&c->mu);
            return -1;
        }
    }
    c->slots[got].busy = true;
    c->slots[got].owner = pthread_self();
    pthread_mutex_unlock(&c->mu);

    struct pg_slot *s = &c->slots[got];
    if (s->c && !s->txn && !pg_alive(s->c)) {
        PQfinish(s->c);
        s->c = NULL;
    }
    if (!s->c)
        s->c = pg_connect(c->conninfo); /* outside the lock: up to connect_timeout */
    if (!s->c) {
        pthread_mutex_lock(&c->mu);
        s->busy = false;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return -1;
    }
    return got;
}

/* Gives the slot back unless a transaction keeps it; a broken connection
 * is closed (a transaction on it then fails at its end). */
static void pg_release(struct adb_conn *c, int i, bool broken)
{
    struct pg_slot *s = &c->slots[i];

    if (s->c && !broken && PQstatus(s->c) != CONNECTION_OK)
        broken = true;
    if (s->c && !broken && !s->txn && PQtransactionStatus(s->c) != PQTRANS_IDLE) {
        PGresult *res = PQexec(s->c, "ROLLBACK");
        broken = PQresultStatus(res) != PGRES_COMMAND_OK;
        PQclear(res);
    }
    if (broken && s->c) {
        PQfinish(s->c);
        s->c = NULL;
    }
    if (s->txn)
        return;
    pthread_mutex_lock(&c->mu);
    s->busy = false;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Whether res failed because the connection did (rather than the SQL). */
static bool pg_broken(PGconn *conn, PGresult *res)
{
    const char *state;

    if (PQstatus(conn) != CONNECTION_OK || !res)
        return true;
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    /* 08: connection exception; 57: operator intervention (shutdown,
     * statement timeout); 53: insufficient resources */
    return !state || !strncmp(state, "08", 2) || !strncmp(state, "57", 2) ||
           !strncmp(state, "53", 2);
}

static int pg_result(PGresult *res)
{
    const char *state;

    switch (PQresultStatus(res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        return DB_OK;
    default:
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        return state && !strncmp(state, "23", 2) ? DB_CONSTRAINT : DB_ERROR;
    }
}

/* "connect_timeout=3" added when the string has none. */
char *adb_pg_conninfo(const char *dsn)
{
    bool uri = !strncmp(dsn, "postgresql://", 13) || !strncmp(dsn, "postgres://", 11);
    size_t n = strlen(dsn) + 32;
    char *s = malloc(n);

    if (!s)
        return NULL;
    if (strstr(dsn, "connect_timeout"))
        snprintf(s, n, "%s", dsn);
    else if (uri)
        snprintf(s, n, "%s%sconnect_timeout=3", dsn, strchr(dsn, '?') ? "&" : "?");
    else
        snprintf(s, n, "%s connect_timeout=3", dsn);
    return s;
}

int adb_open_pg(struct auth_db *db, const char *dsn, char *err, size_t errlen)
{
    struct adb_conn *c = calloc(1, sizeof(*c));
    PQconninfoOption *opts;
    char *msg = NULL;

    if (!c || !(c->conninfo = adb_pg_conninfo(dsn)) ||
        !(c->slots = calloc(pg_pool_size, sizeof(*c->slots)))) {
        snprintf(err, errlen, "accounts_dsn: out of memory");
        goto fail;
    }
    opts = PQconninfoParse(c->conninfo, &msg);
    if (!opts) {
        snprintf(err, errlen, "accounts_dsn: %s", msg ? msg : "not a connection string");
        PQfreemem(msg);
        goto fail;
    }
    PQconninfoFree(opts);
    c->n = pg_pool_size;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    db->backend = AUTH_BACKEND_POSTGRESQL;
    db->c = c;
    return DB_OK;
fail:
    if (c) {
        free(c->conninfo);
        free(c->slots);
        free(c);
    }
    return DB_ERROR;
}

void adb_close(struct auth_db *db)
{
    struct adb_conn *c = db ? db->c : NULL;

    if (!c)
        return;
    if (db->backend == AUTH_BACKEND_SQLITE) {
        sqlc_close(c->h);
    } else {
        for (unsigned i = 0; i < c->n; i++)
            if (c->slots[i].c)
                PQfinish(c->slots[i].c);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c->slots);
        free(c->conninfo);
    }
    free(c);
    db->c = NULL;
}

/* The error message of the last failed open-time statement, for logs. */
const char *adb_errmsg(struct auth_db *db)
{
    return db->backend == AUTH_BACKEND_SQLITE ? sqlite3_errmsg(db->c->h) : "PostgreSQL error";
}

/* ---- statements ---- */

/* SQLite's SQL for PostgreSQL: ?/?N to $n (outside quotes), COLLATE
 * BINARY to COLLATE "C". The number of parameters into *nparams. */
char *adb_pg_translate(const char *sql, int *nparams)
{
    size_t len = strlen(sql), cap = len * 2 + 16, n = 0;
    char *out = malloc(cap);
    int max = 0;
    bool quoted = false;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char ch = sql[i];

        if (n + 16 >= cap) {
            free(out);
            return NULL;
        }
        if (ch == '\'') {
            quoted = !quoted;
        } else if (!quoted && ch == '?') {
            int idx = 0;

            while (i + 1 < len && sql[i + 1] >= '0' && sql[i + 1] <= '9')
                idx = idx * 10 + (sql[++i] - '0');
            if (idx == 0)
                idx = max + 1;
            if (idx > max)
                max = idx;
            n += (size_t)snprintf(out + n, cap - n, "$%d", idx);
            continue;
        } else if (!quoted && !strncmp(sql + i, " COLLATE BINARY", 15)) {
            n += (size_t)snprintf(out + n, cap - n, " COLLATE \"C\"");
            i += 14;
            continue;
        }
        out[n++] = ch;
    }
    out[n] = '\0';
    *nparams = max;
    return max <= DB_PARAMS_MAX ? out : (free(out), NULL);
}

int adb_prepare(struct auth_db *db, const char *sql, struct adb_stmt **out)
{
    struct adb_stmt *st = calloc(1, sizeof(*st));

    *out = NULL;
    if (!st)
        return DB_ERROR;
    st->db = db;
    if (db->backend == AUTH_BACKEND_SQLITE) {
        if (sqlc_prepare(db->c->h, sql, &st->s) != SQLITE_OK) {
            free(st);
            return DB_ERROR;
        }
    } else if (!(st->sql = adb_pg_translate(sql, &st->nparams))) {
        free(st);
        return DB_ERROR;
    }
    *out = st;
    return DB_OK;
}

static void pg_set(struct adb_stmt *st, int i, char *v, unsigned type)
{
    if (i < 1 || i > DB_PARAMS_MAX) {
        free(v);
        return;
    }
    free(st->values[i - 1]);
    st->values[i - 1] = v;
    st->types[i - 1] = type;
    if (i > st->nparams)
        st->nparams = i;
}

void adb_bind_text(struct adb_stmt *st, int i, const char *text)
{
    if (!st)
        return;
    if (st->db->backend == AUTH_BACKEND_SQLITE)
        sqlite3_bind_text(st->s, i, text, -1, SQLITE_TRANSIENT);
    else
        pg_set(st, i, text ? strdup(text) : NULL, PG_TEXTOID);
}

void adb_bind_int64(struct adb_stmt *st, int i, int64_t v)
{
    char buf[24];

    if (!st)
        return;
    if (st->db->backend == AUTH_BACKEND_SQLITE) {
        sqlite3_bind_int64(st->s, i, v);
        return;
    }
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    pg_set(st, i, strdup(buf), PG_INT8OID);
}

void adb_bind_null(struct adb_stmt *st, int i)
{
    if (!st)
        return;
    if (st->db->backend == AUTH_BACKEND_SQLITE)
        sqlite3_bind_null(st->s, i);
    else
        pg_set(st, i, NULL, PG_TEXTOID);
}

int adb_step(struct adb_stmt *st)
{
    struct adb_conn *c;
    int slot, rc;

    if (!st)
        return DB_ERROR;
    c = st->db->c;
    if (st->db->backend == AUTH_BACKEND_SQLITE) {
        rc = sqlite_result(c->h, sqlite3_step(st->s));
        if (rc == DB_DONE)
            st->changes = sqlite3_changes(c->h);
        return rc == DB_BUSY ? DB_ERROR : rc;
    }
    if (st->res) {
        if (++st->row < st->nrows)
            return DB_ROW;
        return DB_DONE;
    }
    if (st->done)
        return DB_ERROR;
    st->done = true;
    Oid types[DB_PARAMS_MAX];
    for (int i = 0; i < st->nparams; i++)
        types[i] = st->types[i] ? st->types[i] : PG_TEXTOID; /* never bound: NULL */
    PGresult *res = NULL;
    /* A read that meets a connection the server dropped (restarted, say)
     * runs again on a new one, once; a write is not repeated (it may have
     * been done) and fails. */
    bool read = !strncmp(st->sql, "SELECT", 6);
    for (int attempt = 0;; attempt++) {
        bool in_txn, broken;

        if ((slot = pg_acquire(c)) < 0)
            return DB_ERROR;
        in_txn = c->slots[slot].txn;
        PGconn *conn = c->slots[slot].c;
        res = PQexecParams(conn, st->sql, st->nparams, types, (const char *const *)st->values, NULL,
                           NULL, 0);
        rc = res ? pg_result(res) : DB_ERROR;
        broken = rc == DB_ERROR && pg_broken(conn, res);
        if (rc == DB_ERROR)
            pg_log(broken ? "connection lost" : "statement failed", PQerrorMessage(conn));
        pg_release(c, slot, broken);
        if (rc == DB_OK)
            break;
        PQclear(res);
        if (!broken || !read || in_txn || attempt > 0)
            return rc;
    }
    st->res = res;
    st->nrows = PQntuples(res);
    st->row = 0;
    {
        const char *t = PQcmdTuples(res);
        st->changes = t && *t ? strtoll(t, NULL, 10) : 0;
    }
    return st->nrows > 0 ? DB_ROW : DB_DONE;
}

const unsigned char *adb_column_text(struct adb_stmt *st, int col)
{
    if (st->db->backend == AUTH_BACKEND_SQLITE)
        return sqlite3_column_text(st->s, col);
    if (!st->res || st->row >= st->nrows || col >= PQnfields(st->res) ||
        PQgetisnull(st->res, st->row, col))
        return NULL;
    return (const unsigned char *)PQgetvalue(st->res, st->row, col);
}

int64_t adb_column_int64(struct adb_stmt *st, int col)
{
    const unsigned char *t;

    if (st->db->backend == AUTH_BACKEND_SQLITE)
        return sqlite3_column_int64(st->s, col);
    t = adb_column_text(st, col);
    return t ? strtoll((const char *)t, NULL, 10) : 0;
}

int adb_column_int(struct adb_stmt *st, int col)
{
    return (int)adb_column_int64(st, col);
}

bool adb_column_null(struct adb_stmt *st, int col)
{
    if (st->db->backend == AUTH_BACKEND_SQLITE)
        return sqlite3_column_type(st->s, col) == SQLITE_NULL;
    return adb_column_text(st, col) == NULL;
}

int64_t adb_changes(struct adb_stmt *st)
{
    return st ? st->changes : 0;
}

void adb_finalize(struct adb_stmt *st)
{
    if (!st)
        return;
    sqlc_finalize(st->s);
    PQclear(st->res);
    for (int i = 0; i < DB_PARAMS_MAX; i++)
        free(st->values[i]);
    free(st->sql);
    free(st);
}

/* ---- plain statements and transactions ---- */

static int pg_exec_slot(struct adb_conn *c, int slot, const char *sql)
{
    PGconn *conn = c->slots[slot].c;
    PGresult *res;
    int rc;

    if (!conn)
        return DB_ERROR;
    res = PQexec(conn, sql);
    rc = res ? pg_result(res) : DB_ERROR;
    /* COMMIT of a transaction that failed answers ROLLBACK */
    if (rc == DB_OK && !strcmp(sql, "COMMIT") && strcmp(PQcmdStatus(res), "COMMIT") != 0)
        rc = DB_ERROR;
    if (rc != DB_OK && !pg_broken(conn, res) && !c->slots[slot].txn &&
        PQtransactionStatus(conn) == PQTRANS_INERROR) {
        PGresult *r2 = PQexec(conn, "ROLLBACK");
        PQclear(r2);
    }
    if (rc != DB_OK && pg_broken(conn, res)) {
        PQfinish(conn);
        c->slots[slot].c = NULL;
    }
    PQclear(res);
    return rc;
}

int adb_exec(struct auth_db *db, const char *sql)
{
    struct adb_conn *c = db->c;
    int slot, rc;

    if (db->backend == AUTH_BACKEND_SQLITE) {
        rc = sqlite_result(c->h, sqlite3_exec(c->h, sql, NULL, NULL, NULL));
        return rc;
    }
    if ((slot = pg_acquire(c)) < 0)
        return DB_ERROR;
    rc = pg_exec_slot(c, slot, sql);
    pg_release(c, slot, false);
    return rc;
}

bool adb_in_txn(struct auth_db *db)
{
    struct adb_conn *c = db->c;
    bool in = false;

    if (db->backend == AUTH_BACKEND_SQLITE)
        return sqlite3_get_autocommit(c->h) == 0;
    pthread_mutex_lock(&c->mu);
    for (unsigned i = 0; i < c->n && !in; i++)
        in = c->slots[i].txn && pg_is_self(&c->slots[i]);
    pthread_mutex_unlock(&c->mu);
    return in;
}

static int pg_begin(struct auth_db *db, const char *sql)
{
    struct adb_conn *c = db->c;
    int slot = pg_acquire(c), rc;

    if (slot < 0)
        return DB_ERROR;
    rc = pg_exec_slot(c, slot, sql);
    if (rc == DB_OK)
        c->slots[slot].txn = true; /* under busy: no other thread looks at it */
    pg_release(c, slot, false);
    return rc;
}

int adb_begin(struct auth_db *db)
{
    if (db->backend == AUTH_BACKEND_SQLITE)
        return adb_exec(db, "BEGIN IMMEDIATE") == DB_OK ? DB_OK : DB_ERROR;
    return pg_begin(db, "BEGIN");
}

int adb_begin_read(struct auth_db *db)
{
    if (db->backend == AUTH_BACKEND_SQLITE)
        return adb_exec(db, "BEGIN") == DB_OK ? DB_OK : DB_ERROR;
    return pg_begin(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

/* Ends the calling thread's transaction with sql; the slot goes back. */
static int pg_end(struct auth_db *db, const char *sql)
{
    struct adb_conn *c = db->c;
    int slot = -1, rc;

    pthread_mutex_lock(&c->mu);
    for (unsigned i = 0; i < c->n && slot < 0; i++)
        if (c->slots[i].txn && pg_is_self(&c->slots[i]))
            slot = (int)i;
    pthread_mutex_unlock(&c->mu);
    if (slot < 0)
        return DB_ERROR;
    rc = c->slots[slot].c ? pg_exec_slot(c, slot, sql) : DB_ERROR;
    c->slots[slot].txn = false;
    pg_release(c, slot, rc != DB_OK);
    return rc == DB_OK ? DB_OK : DB_ERROR;
}

int adb_commit(struct auth_db *db)
{
    if (db->backend == AUTH_BACKEND_SQLITE)
        return adb_exec(db, "COMMIT") == DB_OK ? DB_OK : DB_ERROR;
    return pg_end(db, "COMMIT");
}

void adb_rollback(struct auth_db *db)
{
    if (db->backend == AUTH_BACKEND_SQLITE)
        adb_exec(db, "ROLLBACK");
    else
        pg_end(db, "ROLLBACK");
}
