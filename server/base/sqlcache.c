/* Prepared statements kept with their connection. Preparing a statement
 * parses its SQL and plans it against the schema: tens of microseconds,
 * and a delivery, a login or a command runs several, each prepared on
 * every call. sqlc_prepare hands out a statement of the connection prepared
 * earlier from the same SQL text when one is free, and sqlc_finalize gives
 * it back (reset, its bindings cleared) instead of finalizing it; a
 * statement that is not kept is finalized as before. So callers keep the
 * prepare/finalize pairs they always had. The store (storage/) and the
 * account database (auth/db.c) prepare through it.
 *
 * A connection keeps at most STMT_KEEP_MAX statements (the first distinct
 * ones it prepares; past that a statement is prepared and finalized per
 * call), found by a hash of the SQL text and compared in full. A statement
 * already handed out is not handed out again: a second user of the same
 * SQL on the connection at once (a nested query) gets one prepared for it.
 * sqlc_close finalizes the kept ones before it closes the connection:
 * sqlite3_close refuses a connection that still has statements.
 *
 * The kept statements are found by their connection in a table under one
 * lock, held only to find or mark a slot. A statement handed out is its
 * user's alone until given back: the store's connections are used by one
 * thread at a time (its writer lock, a reader slot), and the account
 * database's, shared by the login threads, is serialized by SQLite itself
 * (SQLITE_OPEN_FULLMUTEX). */
#include "server/base/sqlcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STMT_KEEP_MAX 48
#define STMT_BUCKETS 512 /* power of two */

struct stmt_slot {
    uint32_t hash;
    bool out; /* handed out, not given back yet */
    sqlite3_stmt *st;
};

struct stmt_cache {
    sqlite3 *db;
    struct stmt_cache *next;
    unsigned n;
    struct stmt_slot slot[STMT_KEEP_MAX];
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stmt_cache *buckets[STMT_BUCKETS];

static uint32_t sql_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct stmt_cache **bucket_of(const sqlite3 *db)
{
    uintptr_t p = (uintptr_t)db;
    return &buckets[(p >> 4 ^ p >> 13) & (STMT_BUCKETS - 1)];
}

/* Under cache_lock. */
static struct stmt_cache *cache_find(const sqlite3 *db)
{
    for (struct stmt_cache *c = *bucket_of(db); c; c = c->next)
        if (c->db == db)
            return c;
    return NULL;
}

int sqlc_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    struct stmt_cache *c;
    uint32_t h = sql_hash(sql);
    int rc;

    *st = NULL;
    pthread_mutex_lock(&cache_lock);
    if ((c = cache_find(db)) != NULL) {
        for (unsigned i = 0; i < c->n; i++) {
            struct stmt_slot *s = &c->slot[i];
            if (s->hash == h && !s->out && strcmp(sqlite3_sql(s->st), sql) == 0) {
                s->out = true;
                *st = s->st;
                pthread_mutex_unlock(&cache_lock);
                return SQLITE_OK;
            }
        }
    }
    pthread_mutex_unlock(&cache_lock);

    /* not SQLITE_PREPARE_PERSISTENT: that keeps the statement out of the
     * connection's lookaside memory, and most connections that prepare
     * here are opened for one delivery and closed after it, where the
     * lookaside is the fast allocator */
    rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return rc;
    }
    if (!*st)
        return SQLITE_OK; /* only a comment or white space: nothing to keep */
    pthread_mutex_lock(&cache_lock);
    if (!(c = cache_find(db)) && (c = calloc(1, sizeof(*c))) != NULL) {
        c->db = db;
        c->next = *bucket_of(db);
        *bucket_of(db) = c;
    }
    if (c && c->n < STMT_KEEP_MAX)
        c->slot[c->n++] = (struct stmt_slot){.hash = h, .out = true, .st = *st};
    pthread_mutex_unlock(&cache_lock);
    return SQLITE_OK;
}

int sqlc_finalize(sqlite3_stmt *st)
{
    struct stmt_cache *c;
    struct stmt_slot *kept = NULL;
    int rc;

    if (!st)
        return SQLITE_OK;
    pthread_mutex_lock(&cache_lock);
    if ((c = cache_find(sqlite3_db_handle(st))) != NULL)
        for (unsigned i = 0; i < c->n && !kept; i++)
            if (c->slot[i].st == st)
                kept = &c->slot[i];
    pthread_mutex_unlock(&cache_lock);
    if (!kept)
        return sqlite3_finalize(st);
    /* the slot stays ours until marked free: only the connection's user
     * could take it, and that is this thread */
    rc = sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_lock(&cache_lock);
    kept->out = false;
    pthread_mutex_unlock(&cache_lock);
    return rc;
}

/* Under cache_lock: takes db's cache out of the table unless one of its
 * statements is handed out (then NULL, the cache left in place). */
static struct stmt_cache *cache_take(sqlite3 *db)
{
    struct stmt_cache *c = NULL;

    for (struct stmt_cache **p = bucket_of(db); *p; p = &(*p)->next) {
        if ((*p)->db != db)
            continue;
        c = *p;
        for (unsigned i = 0; c && i < c->n; i++)
            if (c->slot[i].out)
                c = NULL;
        if (c)
            *p = c->next;
        break;
    }
    return c;
}

static void cache_free(struct stmt_cache *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->n; i++)
        sqlite3_finalize(c->slot[i].st);
    free(c);
}

void sqlc_release(sqlite3 *db)
{
    struct stmt_cache *c;

    if (!db)
        return;
    pthread_mutex_lock(&cache_lock);
    c = cache_take(db);
    pthread_mutex_unlock(&cache_lock);
    cache_free(c);
}

int sqlc_close(sqlite3 *db)
{
    struct stmt_cache *c;

    if (!db)
        return SQLITE_OK;
    pthread_mutex_lock(&cache_lock);
    c = cache_take(db); /* still in use: sqlite3_close refuses, as without a cache */
    pthread_mutex_unlock(&cache_lock);
    cache_free(c);
    return sqlite3_close(db);
}
