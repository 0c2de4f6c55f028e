/* Unit tests of the account directory's statement layer (auth/db.c): the
 * SQL given to PostgreSQL (placeholders, collation), the connection string
 * (connect_timeout added), the SQLite side (RETURNING, constraint errors,
 * changes, transactions, parameters never bound), and a PostgreSQL server
 * that cannot be reached: errors, never a crash or a hang. */
#include "auth/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/check.h"

static char tmpdir[256];

static bool translates(const char *in, const char *want, int nwant)
{
    int n = -1;
    char *out = adb_pg_translate(in, &n);
    bool ok = out && !strcmp(out, want) && n == nwant;

    if (!ok)
        printf("     %s -> %s (%d)\n", in, out ? out : "(null)", n);
    free(out);
    return ok;
}

static void test_translate(void)
{
    char *out, many[256];
    int n;

    CHECK(translates("SELECT a FROM t WHERE x = ? AND y = ?",
                     "SELECT a FROM t WHERE x = $1 AND y = $2", 2),
          "translate: ? in order");
    CHECK(translates("UPDATE t SET a = ?2 WHERE b = ?1 OR c = ?1",
                     "UPDATE t SET a = $2 WHERE b = $1 OR c = $1", 2),
          "translate: ?N kept");
    CHECK(translates("SELECT ?2, ?", "SELECT $2, $3", 3), "translate: ? after ?N takes the next");
    CHECK(translates("SELECT '?' || ?, 'it''s ?'", "SELECT '?' || $1, 'it''s ?'", 1),
          "translate: quoted ? untouched");
    CHECK(translates("SELECT a FROM t ORDER BY a COLLATE BINARY, b",
                     "SELECT a FROM t ORDER BY a COLLATE \"C\", b", 0),
          "translate: COLLATE BINARY");
    snprintf(many, sizeof(many), "SELECT ?1, ?%d", DB_PARAMS_MAX + 1);
    out = adb_pg_translate(many, &n);
    CHECK(out == NULL, "translate: past DB_PARAMS_MAX refused");
    free(out);
}

static bool dsn_is(const char *in, const char *want)
{
    char *out = adb_pg_conninfo(in);
    bool ok = out && !strcmp(out, want);

    if (!ok)
        printf("     %s -> %s\n", in, out ? out : "(null)");
    free(out);
    return ok;
}

static void test_conninfo(void)
{
    CHECK(dsn_is("host=db dbname=coffre", "host=db dbname=coffre connect_timeout=3"),
          "dsn: connect_timeout added");
    CHECK(dsn_is("host=db connect_timeout=10", "host=db connect_timeout=10"),
          "dsn: a given connect_timeout kept");
    CHECK(dsn_is("postgresql://db/coffre", "postgresql://db/coffre?connect_timeout=3"),
          "dsn: URI without parameters");
    CHECK(dsn_is("postgres://db/coffre?sslmode=require",
                 "postgres://db/coffre?sslmode=require&connect_timeout=3"),
          "dsn: URI with parameters");
}

static void test_sqlite(void)
{
    struct auth_db db = {0};
    struct adb_stmt *st = NULL;
    char path[512], err[256];
    int64_t id;

    snprintf(path, sizeof(path), "%s/t.sqlite", tmpdir);
    fclose(fopen(path, "w"));
    CHECK(adb_open_sqlite(&db, path, err, sizeof(err)) == DB_OK, "sqlite: opened");
    CHECK(adb_exec(&db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)") ==
              DB_OK,
          "sqlite: table made");
    CHECK(adb_prepare(&db, "INSERT INTO t (name, n) VALUES (?, ?) RETURNING id", &st) == DB_OK,
          "sqlite: insert prepared");
    adb_bind_text(st, 1, "one");
    adb_bind_int64(st, 2, 1);
    CHECK(adb_step(st) == DB_ROW && (id = adb_column_int64(st, 0)) > 0, "sqlite: RETURNING id");
    adb_finalize(st);
    adb_prepare(&db, "INSERT INTO t (name, n) VALUES (?, ?)", &st);
    adb_bind_text(st, 1, "one");
    CHECK(adb_step(st) == DB_CONSTRAINT, "sqlite: UNIQUE violation is DB_CONSTRAINT");
    adb_finalize(st);
    adb_prepare(&db, "INSERT INTO t (name, n) VALUES (?, ?)", &st);
    adb_bind_text(st, 1, "two"); /* ?2 never bound: NULL */
    CHECK(adb_step(st) == DB_DONE && adb_changes(st) == 1, "sqlite: insert, one change");
    adb_finalize(st);
    adb_prepare(&db, "SELECT n FROM t WHERE name = ?", &st);
    adb_bind_text(st, 1, "two");
    CHECK(adb_step(st) == DB_ROW && adb_column_null(st, 0) && !adb_column_text(st, 0),
          "sqlite: a parameter never bound is NULL");
    adb_finalize(st);
    adb_prepare(&db, "UPDATE t SET n = 5", &st);
    CHECK(adb_step(st) == DB_DONE && adb_changes(st) == 2, "sqlite: changes of an update");
    adb_finalize(st);

    CHECK(!adb_in_txn(&db) && adb_begin(&db) == DB_OK && adb_in_txn(&db),
          "sqlite: in a transaction");
    adb_exec(&db, "DELETE FROM t");
    adb_rollback(&db);
    adb_prepare(&db, "SELECT count(*) FROM t", &st);
    CHECK(!adb_in_txn(&db) && adb_step(st) == DB_ROW && adb_column_int64(st, 0) == 2,
          "sqlite: rollback keeps the rows");
    adb_finalize(st);
    adb_finalize(NULL);
    adb_close(&db);
    remove(path);
}

/* Nothing listens on the port: every call fails at once, nothing hangs. */
static void test_pg_unreachable(void)
{
    struct auth_db db = {0};
    struct adb_stmt *st = NULL;
    char err[256];
    time_t t0 = time(NULL);

    adb_pg_set_pool_size(2);
    CHECK(adb_open_pg(&db, "host=127.0.0.1 port=1 dbname=x user=x", err, sizeof(err)) == DB_OK,
          "pg: open is lazy");
    CHECK(adb_exec(&db, "SELECT 1") == DB_ERROR, "pg: exec fails");
    CHECK(adb_prepare(&db, "SELECT ?", &st) == DB_OK, "pg: prepare needs no server");
    adb_bind_text(st, 1, "x");
    CHECK(adb_step(st) == DB_ERROR && adb_step(st) == DB_ERROR, "pg: step fails, and again");
    adb_finalize(st);
    CHECK(adb_begin(&db) == DB_ERROR && !adb_in_txn(&db), "pg: no transaction");
    CHECK(adb_commit(&db) == DB_ERROR, "pg: commit without a transaction fails");
    adb_rollback(&db);
    for (int i = 0; i < 10; i++) /* the pool's slots all come back */
        adb_exec(&db, "SELECT 1");
    CHECK(time(NULL) - t0 < 20, "pg: failures are quick");
    adb_close(&db);
    CHECK(adb_open_pg(&db, "host='unterminated", err, sizeof(err)) == DB_ERROR,
          "pg: a malformed DSN refused at open");
}

int main(void)
{
    if (check_mkdtemp(tmpdir, sizeof(tmpdir), "coffre-test-db") != 0)
        return 1;
    test_translate();
    test_conninfo();
    test_sqlite();
    test_pg_unreachable();
    check_rmtree(tmpdir);
    return check_summary();
}
