/* Slots of a sharded installation: the slots table of the account
 * directory (where each coffred slot listens, for nginx's auth_http
 * answers and Postfix's transport maps) and each account's slot and
 * move target. */
#include "auth/auth.h"
#include "auth/auth_priv.h"
#include "auth/db.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

static void row_to_slot(struct adb_stmt *st, struct auth_slot *s)
{
    const unsigned char *t;

    memset(s, 0, sizeof(*s));
    t = adb_column_text(st, 0);
    snprintf(s->name, sizeof(s->name), "%s", t ? (const char *)t : "");
    t = adb_column_text(st, 1);
    snprintf(s->host, sizeof(s->host), "%s", t ? (const char *)t : "");
    s->imap_port = (unsigned)adb_column_int(st, 2);
    s->pop3_port = (unsigned)adb_column_int(st, 3);
    s->lmtp_port = (unsigned)adb_column_int(st, 4);
    t = adb_column_text(st, 5);
    snprintf(s->data_dir, sizeof(s->data_dir), "%s", t ? (const char *)t : "");
}

#define SLOT_COLUMNS "name, host, imap_port, pop3_port, lmtp_port, data_dir"

int auth_slot_get(struct auth_db *db, const char *name, struct auth_slot *out)
{
    struct adb_stmt *st = NULL;
    int r, rc;

    if (adb_prepare(db, "SELECT " SLOT_COLUMNS " FROM slots WHERE name = ?", &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, name);
    r = adb_step(st);
    if (r == DB_ROW) {
        if (out)
            row_to_slot(st, out);
        rc = AUTH_OK;
    } else {
        rc = r == DB_DONE ? AUTH_E_NOUSER : AUTH_E_TEMP;
    }
    adb_finalize(st);
    return rc;
}

int auth_slot_set(struct auth_db *db, const struct auth_slot *s)
{
    struct adb_stmt *st = NULL;
    int rc = AUTH_E_TEMP;

    if (!auth_slot_name_ok(s->name) || !host_ok(s->host) || s->imap_port > 65535 ||
        s->pop3_port > 65535 || s->lmtp_port > 65535 ||
        !memchr(s->data_dir, 0, sizeof(s->data_dir)))
        return AUTH_E_BADADDR;
    if (adb_prepare(db,
                    "INSERT INTO slots (" SLOT_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET host = excluded.host,"
                    " imap_port = excluded.imap_port, pop3_port = excluded.pop3_port,"
                    " lmtp_port = excluded.lmtp_port, data_dir = excluded.data_dir",
                    &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, s->name);
    adb_bind_text(st, 2, s->host);
    adb_bind_int64(st, 3, s->imap_port);
    adb_bind_int64(st, 4, s->pop3_port);
    adb_bind_int64(st, 5, s->lmtp_port);
    adb_bind_text(st, 6, s->data_dir);
    if (adb_step(st) == DB_DONE)
        rc = AUTH_OK;
    adb_finalize(st);
    return rc;
}

int auth_slot_del(struct auth_db *db, const char *name)
{
    struct auth_db *h = db;
    struct adb_stmt *st = NULL;
    int rc = AUTH_E_TEMP, r;

    /* the check and the removal in one write transaction: no account is
     * given the slot in between */
    if (adb_begin(h) != DB_OK)
        return AUTH_E_TEMP;
    if (adb_prepare(h, "SELECT 1 FROM accounts WHERE slot = ?1 OR move_to = ?1 LIMIT 1", &st) !=
        DB_OK)
        goto out;
    adb_bind_text(st, 1, name);
    r = adb_step(st);
    adb_finalize(st);
    st = NULL;
    if (r == DB_ROW) {
        rc = AUTH_E_EXISTS;
        goto out;
    }
    if (r != DB_DONE)
        goto out;
    if (adb_prepare(h, "DELETE FROM slots WHERE name = ?", &st) != DB_OK)
        goto out;
    adb_bind_text(st, 1, name);
    rc = auth_db_change(st);
    if (rc == AUTH_OK && adb_commit(h) != DB_OK)
        rc = AUTH_E_TEMP;
out:
    if (rc != AUTH_OK)
        adb_rollback(h);
    return rc;
}

int auth_slot_list(struct auth_db *db, int (*cb)(const struct auth_slot *s, void *arg), void *arg)
{
    struct auth_slot s;
    struct adb_stmt *st = NULL;
    int r;

    if (adb_prepare(db, "SELECT " SLOT_COLUMNS " FROM slots ORDER BY name", &st) != DB_OK)
        return AUTH_E_TEMP;
    while ((r = adb_step(st)) == DB_ROW) {
        row_to_slot(st, &s);
        if (cb(&s, arg) != 0) {
            r = DB_DONE;
            break;
        }
    }
    adb_finalize(st);
    return r == DB_DONE ? AUTH_OK : AUTH_E_TEMP;
}

static int set_column(struct auth_db *db, const char *sql, const char *address, const char *value)
{
    if (!value || (*value && !auth_slot_name_ok(value)))
        return AUTH_E_BADADDR;
    return auth_db_update_one(db, sql, address, value, 0);
}

int auth_user_set_slot(struct auth_db *db, const char *address, const char *slot)
{
    return set_column(db, "UPDATE accounts SET slot = ? WHERE address = ?", address, slot);
}

int auth_user_set_move(struct auth_db *db, const char *address, const char *to)
{
    return set_column(db, "UPDATE accounts SET move_to = ? WHERE address = ?", address, to);
}

int auth_user_move_done(struct auth_db *db, const char *address, const char *slot)
{
    struct adb_stmt *st = NULL;

    if (!auth_slot_name_ok(slot))
        return AUTH_E_BADADDR;
    if (adb_prepare(db,
                    "UPDATE accounts SET slot = ?, move_to = '', moved_at = ? WHERE address = ?",
                    &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, slot);
    adb_bind_int64(st, 2, (int64_t)time(NULL));
    adb_bind_text(st, 3, address);
    return auth_db_change(st);
}
