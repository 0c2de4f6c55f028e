/* The account directory's statement layer (auth/db.c), private to the auth
 * module: one SQL text serves both backends, SQLite and PostgreSQL.
 *
 * SQL is written for SQLite with `?` or `?N` placeholders; for PostgreSQL
 * they become `$n` and ` COLLATE BINARY` becomes ` COLLATE "C"`. Texts
 * are bound as text (CAST them where a number is meant), integers as
 * int8. Statements read on PostgreSQL fetch all their rows
 * at the first adb_step.
 *
 * Transactions: adb_begin() opens one (SQLite: BEGIN IMMEDIATE on the
 * shared connection; PostgreSQL: BEGIN on a pooled connection, which then
 * stays with the calling thread until adb_commit/adb_rollback). Every
 * failure of PostgreSQL (down, timed out, connection lost) is DB_ERROR,
 * which callers answer with AUTH_E_TEMP; the broken connection is dropped
 * and a new one made at the next use. */
#ifndef COFFRE_AUTH_DB_H
#define COFFRE_AUTH_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"

enum {
    DB_OK = 0,
    DB_ERROR = 1,       /* anything else: AUTH_E_TEMP */
    DB_BUSY = 5,        /* SQLite's database is locked (adb_exec at open only) */
    DB_CONSTRAINT = 19, /* a UNIQUE, PRIMARY KEY, FOREIGN KEY or CHECK constraint failed */
    DB_ROW = 100,
    DB_DONE = 101,
};

#define DB_PARAMS_MAX 16 /* placeholders of one statement */

struct adb_stmt;
struct adb_conn; /* backend connections (db.c) */

struct auth_db {
    int backend;         /* AUTH_BACKEND_* */
    struct adb_conn *c;  /* the connection(s) */
    unsigned scram_iter; /* for the SCRAM secrets of passwords set here */
    unsigned acl_max;    /* entries of one mailbox's ACL */
};

/* Opening: SQLite file at path, or PostgreSQL with conninfo (the pool
 * connects lazily; the schema is made at open, so an unreachable server
 * fails the open). DB_OK or DB_ERROR with a reason in err. */
int adb_open_sqlite(struct auth_db *db, const char *path, char *err, size_t errlen);
int adb_open_pg(struct auth_db *db, const char *conninfo, char *err, size_t errlen);
void adb_close(struct auth_db *db);
/* What the last failure was, for the open's error message. */
const char *adb_errmsg(struct auth_db *db);

/* DB_OK or DB_ERROR; *st is NULL on error. */
int adb_prepare(struct auth_db *db, const char *sql, struct adb_stmt **st);
/* 1-based; a parameter never bound is NULL; text is copied. */
void adb_bind_text(struct adb_stmt *st, int i, const char *text);
void adb_bind_int64(struct adb_stmt *st, int i, int64_t v);
void adb_bind_null(struct adb_stmt *st, int i);
/* DB_ROW, DB_DONE, DB_CONSTRAINT or DB_ERROR. */
int adb_step(struct adb_stmt *st);
/* Columns of the current row, 0-based: NULL for SQL NULL (borrowed until
 * the next adb_step or adb_finalize). */
const unsigned char *adb_column_text(struct adb_stmt *st, int col);
int64_t adb_column_int64(struct adb_stmt *st, int col);
int adb_column_int(struct adb_stmt *st, int col);
bool adb_column_null(struct adb_stmt *st, int col);
/* Rows changed by the statement's last step that wrote. */
int64_t adb_changes(struct adb_stmt *st);
void adb_finalize(struct adb_stmt *st); /* NULL ok */

/* Runs sql (no parameters, one or more statements for SQLite, one for
 * PostgreSQL). DB_OK, DB_CONSTRAINT or DB_ERROR. */
int adb_exec(struct auth_db *db, const char *sql);

/* Whether the calling thread has a transaction open on db. */
bool adb_in_txn(struct auth_db *db);
/* A write transaction (adb_begin) or a consistent read (adb_begin_read). */
int adb_begin(struct auth_db *db);
int adb_begin_read(struct auth_db *db);
int adb_commit(struct auth_db *db);
void adb_rollback(struct auth_db *db);

/* The SQLite handle (backup.c, unit tests); NULL with PostgreSQL. */
struct sqlite3;
struct sqlite3 *adb_sqlite(struct auth_db *db);

/* For the unit tests: SQLite's SQL as PostgreSQL wants it (NULL past
 * DB_PARAMS_MAX parameters), and the DSN with connect_timeout; caller
 * frees both. */
char *adb_pg_translate(const char *sql, int *nparams);
char *adb_pg_conninfo(const char *dsn);

/* Connections to PostgreSQL made at once at most (accounts_pool_size). */
void adb_pg_set_pool_size(unsigned n);

#endif
