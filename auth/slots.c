/* Slots of a sharded installation: the slots table of the account
 * directory (where each coffred slot listens, for nginx's auth_http
 * answers and Postfix's transport maps) and each account's slot and
 * move target. */
#include "auth/auth.h"
#include "auth/auth_priv.h"

#include <arpa/inet.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

bool auth_slot_name_ok(const char *name)
{
    size_t n = 0;

    if (!name)
        return false;
    for (; name[n]; n++) {
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
        if (n + 1 >= AUTH_SLOT_MAX)
            return false;
    }
    return n > 0;
}

static bool host_ok(const char *h)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

static void row_to_slot(sqlite3_stmt *st, struct auth_slot *s)
{
    const unsigned char *t;

    memset(s, 0, sizeof(*s));
    t = sqlite3_column_text(st, 0);
    snprintf(s->name, sizeof(s->name), "%s", t ? (const char *)t : "");
    t = sqlite3_column_text(st, 1);
    snprintf(s->host, sizeof(s->host), "%s", t ? (const char *)t : "");
    s->imap_port = (unsigned)sqlite3_column_int(st, 2);
    s->pop3_port = (unsigned)sqlite3_column_int(st, 3);
    s->lmtp_port = (unsigned)sqlite3_column_int(st, 4);
    t = sqlite3_column_text(st, 5);
    snprintf(s->data_dir, sizeof(s->data_dir), "%s", t ? (const char *)t : "");
}

#define SLOT_COLUMNS "name, host, imap_port, pop3_port, lmtp_port, data_dir"

int auth_slot_get(struct auth_db *db, const char *name, struct auth_slot *out)
{
    sqlite3_stmt *st = NULL;
    int r, rc;

    if (sqlite3_prepare_v2(auth_db_handle(db), "SELECT " SLOT_COLUMNS " FROM slots WHERE name = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return AUTH_E_TEMP;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        if (out)
            row_to_slot(st, out);
        rc = AUTH_OK;
    } else {
        rc = r == SQLITE_DONE ? AUTH_E_NOUSER : AUTH_E_TEMP;
    }
    sqlite3_finalize(st);
    return rc;
}

int auth_slot_set(struct auth_db *db, const struct auth_slot *s)
{
    sqlite3_stmt *st = NULL;
    int rc = AUTH_E_TEMP;

    if (!auth_slot_name_ok(s->name) || !host_ok(s->host) || s->imap_port > 65535 ||
        s->pop3_port > 65535 || s->lmtp_port > 65535 ||
        !memchr(s->data_dir, 0, sizeof(s->data_dir)))
        return AUTH_E_BADADDR;
    if (sqlite3_prepare_v2(auth_db_handle(db),
                           "INSERT INTO slots (" SLOT_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)"
                           " ON CONFLICT (name) DO UPDATE SET host = excluded.host,"
                           " imap_port = excluded.imap_port, pop3_port = excluded.pop3_port,"
                           " lmtp_port = excluded.lmtp_port, data_dir = excluded.data_dir",
                           -1, &st, NULL) != SQLITE_OK)
        return AUTH_E_TEMP;
    sqlite3_bind_text(st, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->host, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, s->imap_port);
    sqlite3_bind_int64(st, 4, s->pop3_port);
    sqlite3_bind_int64(st, 5, s->lmtp_port);
    sqlite3_bind_text(st, 6, s->data_dir, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = AUTH_OK;
    sqlite3_finalize(st);
    return rc;
}

int auth_slot_del(struct auth_db *db, const char *name)
{
    sqlite3 *h = auth_db_handle(db);
    sqlite3_stmt *st = NULL;
    int rc = AUTH_E_TEMP, r;

    /* the check and the removal in one write transaction: no account is
     * given the slot in between */
    if (sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return AUTH_E_TEMP;
    if (sqlite3_prepare_v2(h, "SELECT 1 FROM accounts WHERE slot = ?1 OR move_to = ?1 LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    r = sqlite3_step(st);
    sqlite3_finalize(st);
    st = NULL;
    if (r == SQLITE_ROW) {
        rc = AUTH_E_EXISTS;
        goto out;
    }
    if (r != SQLITE_DONE)
        goto out;
    if (sqlite3_prepare_v2(h, "DELETE FROM slots WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = sqlite3_changes(h) ? AUTH_OK : AUTH_E_NOUSER;
    sqlite3_finalize(st);
    if (rc == AUTH_OK && sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = AUTH_E_TEMP;
out:
    if (rc != AUTH_OK)
        sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int auth_slot_list(struct auth_db *db, int (*cb)(const struct auth_slot *s, void *arg), void *arg)
{
    struct auth_slot s;
    sqlite3_stmt *st = NULL;
    int r;

    if (sqlite3_prepare_v2(auth_db_handle(db), "SELECT " SLOT_COLUMNS " FROM slots ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return AUTH_E_TEMP;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        row_to_slot(st, &s);
        if (cb(&s, arg) != 0) {
            r = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? AUTH_OK : AUTH_E_TEMP;
}

static int set_column(struct auth_db *db, const char *sql, const char *address, const char *value)
{
    sqlite3_stmt *st = NULL;
    int rc = AUTH_E_TEMP;

    if (!value || (*value && !auth_slot_name_ok(value)))
        return AUTH_E_BADADDR;
    if (sqlite3_prepare_v2(auth_db_handle(db), sql, -1, &st, NULL) != SQLITE_OK)
        return AUTH_E_TEMP;
    sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, address, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = sqlite3_changes(auth_db_handle(db)) ? AUTH_OK : AUTH_E_NOUSER;
    sqlite3_finalize(st);
    return rc;
}

int auth_user_set_slot(struct auth_db *db, const char *address, const char *slot)
{
    return set_column(db, "UPDATE accounts SET slot = ? WHERE address = ?", address, slot);
}

int auth_user_set_move(struct auth_db *db, const char *address, const char *to)
{
    return set_column(db, "UPDATE accounts SET move_to = ? WHERE address = ?", address, to);
}
