/* For the unit tests of storage: a number read from a user's index behind
 * the storage's back. */
#ifndef COFFRE_TEST_INDEX_SQL_H
#define COFFRE_TEST_INDEX_SQL_H

#include <sqlite3.h>
#include <stdio.h>

/* The first column of the first row of sql in the index of user 1 under
 * the data directory dir; -1 when it cannot be read. */
static inline long long index_sql_int(const char *dir, const char *sql)
{
    char path[300];
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;

    snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* Runs sql (statements, no rows wanted) on the index of user 1 under dir,
 * as an older version would have left it: 0, or -1. */
static inline int index_sql_exec(const char *dir, const char *sql)
{
    char path[300];
    sqlite3 *db;
    int rc;

    snprintf(path, sizeof(path), "%s/users/1/index.sqlite", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* SQL that drops the listing blocks, which indexes before schema 11 did
 * not have: part of turning an index into one of schema 10. */
#define INDEX_SQL_LISTINGS_GONE "DROP TABLE listings;"
/* SQL that puts the header blocks back where indexes before schema 10
 * kept them (bodies.header) and drops their table: part of turning an
 * index into one of an older schema. */
#define INDEX_SQL_HEADERS_BACK                                                                     \
    INDEX_SQL_LISTINGS_GONE                                                                        \
    "UPDATE bodies SET header = (SELECT h.header FROM headers h WHERE h.body_id = bodies.id)"      \
    " WHERE id IN (SELECT body_id FROM headers); DROP TABLE headers;"

#endif
