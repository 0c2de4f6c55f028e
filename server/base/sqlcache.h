/* Prepared statements kept with their SQLite connection (sqlcache.c). */
#ifndef COFFRE_SQLCACHE_H
#define COFFRE_SQLCACHE_H

#include <sqlite3.h>

/* As sqlite3_prepare_v2 (the first statement of sql): a statement of db's
 * kept ones prepared from the same text when one is free, else a new one,
 * kept while db has room for it. Returns an SQLite result code. */
int sqlc_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);
/* Gives a kept statement back, reset and its bindings cleared, and
 * finalizes any other; returns what sqlite3_finalize would. NULL ok. */
int sqlc_finalize(sqlite3_stmt *st);
/* Finalizes db's kept statements unless one is still handed out (their
 * memory, for a connection kept open but idle); db stays open. */
void sqlc_release(sqlite3 *db);
/* Finalizes db's kept statements (unless one is still handed out), then
 * sqlite3_close(db). */
int sqlc_close(sqlite3 *db);

#endif
