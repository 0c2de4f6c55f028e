/* Object ids (RFC 8474) of the index: a mailbox's (MAILBOXID), a body's
 * (EMAILID: copies share their body, so a COPY or MOVE keeps it) and the
 * thread a body belongs to (THREADID). Ids are random 64-bit numbers drawn
 * when the row is made, never derived from a row id that SQLite may hand
 * out again after a DELETE, so that a mailbox deleted and created again
 * under the same name, or a message expunged and another saved, never
 * gets an id seen before.
 *
 * Threads are decided once, when a body is saved, and never change: the
 * table threads maps every message id met so far (a message's own, and
 * those of its References and In-Reply-To) to a thread. A new message
 * takes the thread of the first of its ids already there (its own first,
 * so that a reply that came before its parent puts the parent in its
 * thread), else starts one (its EMAILID); then all its ids not yet mapped
 * map to that thread. */
#include "storage/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t object_id_new(void)
{
    int64_t v = 0;
    while (v == 0)
        sqlite3_randomness(sizeof(v), &v);
    return v;
}

/* At most this many ids of one message are looked up and mapped. */
#define THREAD_IDS_MAX 64

int thread_assign(sqlite3 *db, int64_t oid, const char *message_id, const char *in_reply_to,
                  const char *references, int64_t *thread)
{
    struct buf ids = {0};
    sqlite3_stmt *get = NULL, *put = NULL;
    size_t n = msgid_list(&ids, message_id, 1);
    int rc = 0;

    if (n < THREAD_IDS_MAX) {
        if (n)
            buf_addc(&ids, ' ');
        n += msgid_list(&ids, references, THREAD_IDS_MAX - n);
    }
    if (n < THREAD_IDS_MAX) {
        if (n)
            buf_addc(&ids, ' ');
        n += msgid_list(&ids, in_reply_to, THREAD_IDS_MAX - n);
    }
    *thread = oid;
    if (ids.oom) {
        buf_free(&ids);
        return STORAGE_E_NOMEM;
    }
    if (n == 0 || !ids.p)
        goto out;
    if ((rc = db_prepare(db, "SELECT thread FROM threads WHERE msgid = ?", &get)) != 0 ||
        (rc = db_prepare(db, "INSERT OR IGNORE INTO threads(msgid, thread) VALUES (?, ?)", &put)))
        goto out;
    /* ids are "<...>" tokens separated by single spaces */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (const char *p = ids.p; *p && rc == 0;) {
            const char *e = strchr(p, ' ');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len == 0) {
                p++;
                continue;
            }
            if (pass == 0) {
                sqlite3_reset(get);
                sqlite3_bind_text(get, 1, p, (int)len, SQLITE_STATIC);
                int s = sqlite3_step(get);
                if (s == SQLITE_ROW) {
                    *thread = sqlite3_column_int64(get, 0);
                    break;
                }
                if (s != SQLITE_DONE)
                    rc = err_from_sqlite(db, s);
            } else {
                sqlite3_reset(put);
                sqlite3_bind_text(put, 1, p, (int)len, SQLITE_STATIC);
                sqlite3_bind_int64(put, 2, *thread);
                int s = sqlite3_step(put);
                if (s != SQLITE_DONE)
                    rc = err_from_sqlite(db, s);
            }
            p += len;
        }
    }
out:
    db_finalize(get);
    db_finalize(put);
    buf_free(&ids);
    return rc;
}

/* Adds the column to table unless it is there. */
static int add_column(sqlite3 *db, const char *table, const char *col, const char *decl)
{
    char sql[256];
    sqlite3_stmt *st;
    int rc = db_prepare(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", &st);

    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    db_finalize(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc != SQLITE_DONE)
        return err_from_sqlite(db, rc);
    snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s;", table, col, decl);
    return db_exec(db, sql);
}

int objectid_migrate_8(sqlite3 *db)
{
    int64_t last = 0;
    int rc = add_column(db, "mailboxes", "oid", "INTEGER NOT NULL DEFAULT 0");

    if (rc == 0)
        rc = add_column(db, "bodies", "oid", "INTEGER NOT NULL DEFAULT 0");
    if (rc == 0)
        rc = add_column(db, "bodies", "thread", "INTEGER NOT NULL DEFAULT 0");
    if (rc == 0)
        rc = add_column(db, "bodies", "preview", "TEXT");
    if (rc == 0)
        rc = db_exec(db, THREADS_TABLE "UPDATE mailboxes SET oid = random() WHERE oid = 0;"
                                       "UPDATE bodies SET oid = random() WHERE oid = 0;");

    /* threads in the order the bodies came, from what the index holds
     * (sortkeys.parents: the References, else the first In-Reply-To id) */
    for (bool more = rc == 0; more && rc == 0;) {
        sqlite3_stmt *st = NULL;
        struct row {
            int64_t id, oid;
            char *mid, *irt, *refs;
        } *rows = calloc(1000, sizeof(*rows));
        size_t n = 0;
        int s = SQLITE_DONE;
        more = false;
        if (!rows)
            return STORAGE_E_NOMEM;
        rc = db_prepare(db,
                        "SELECT b.id, b.oid, b.message_id, b.in_reply_to, k.parents"
                        " FROM bodies b LEFT JOIN sortkeys k ON k.body_id = b.id"
                        " WHERE b.id > ? AND b.thread = 0 ORDER BY b.id LIMIT 1000",
                        &st);
        if (rc == 0) {
            sqlite3_bind_int64(st, 1, last);
            while ((s = sqlite3_step(st)) == SQLITE_ROW) {
                struct row *r = &rows[n++];
                const char *t;
                r->id = sqlite3_column_int64(st, 0);
                r->oid = sqlite3_column_int64(st, 1);
                if ((t = (const char *)sqlite3_column_text(st, 2)) && !(r->mid = strdup(t)))
                    rc = STORAGE_E_NOMEM;
                if ((t = (const char *)sqlite3_column_text(st, 3)) && !(r->irt = strdup(t)))
                    rc = STORAGE_E_NOMEM;
                if ((t = (const char *)sqlite3_column_text(st, 4)) && !(r->refs = strdup(t)))
                    rc = STORAGE_E_NOMEM;
            }
            if (rc == 0 && s != SQLITE_DONE)
                rc = err_from_sqlite(db, s);
            db_finalize(st);
        }
        more = n == 1000;
        for (size_t i = 0; i < n; i++) {
            int64_t thread;
            if (rc == 0)
                rc =
                    thread_assign(db, rows[i].oid, rows[i].mid, rows[i].irt, rows[i].refs, &thread);
            if (rc == 0)
                rc = db_run(db, "UPDATE bodies SET thread = ? WHERE id = ?", thread, rows[i].id);
            last = rows[i].id;
            free(rows[i].mid);
            free(rows[i].irt);
            free(rows[i].refs);
        }
        free(rows);
    }
    return rc;
}
