/* Access control lists (RFC 4314): the rights strings, the tables of the
 * account database (acl, acl_group, acl_member, mailbox_share) and the
 * immutable snapshot of them that coffred reads on its loop thread.
 *
 * The snapshot keeps the mailboxes that have entries (or a share setting)
 * sorted by owner address, then name, so that a rights check is two binary
 * searches and a walk of the mailbox's entries (at most acl_max_entries),
 * and the shared namespace of a user (acl_snap_owners, _mailboxes) comes
 * from postings: for "anyone", each account and each group, the mailboxes
 * whose positive entries name it. A user's view then costs what names
 * them, not what the site shares with others. */
#include "auth/acl.h"
#include "auth/auth_priv.h"
#include "auth/db.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

/* ---- rights strings ---- */

#define RIGHTS_N (sizeof(ACL_RIGHTS_CHARS) - 1)
#define ACL_CREATE_VIRTUAL (ACL_CREATE | ACL_DELETE)  /* "c" */
#define ACL_DELETE_VIRTUAL (ACL_DELMSG | ACL_EXPUNGE) /* "d" */

int acl_rights_parse(const char *text, size_t len, unsigned *rights, char *mode)
{
    unsigned r = 0;
    size_t i = 0;

    *rights = 0;
    *mode = '=';
    if (len && (text[0] == '+' || text[0] == '-')) {
        *mode = text[0];
        i = 1;
    }
    for (; i < len; i++) {
        const char *p = memchr(ACL_RIGHTS_CHARS, text[i], RIGHTS_N);

        if (p)
            r |= 1u << (p - ACL_RIGHTS_CHARS);
        else if (text[i] == 'c')
            r |= ACL_CREATE_VIRTUAL;
        else if (text[i] == 'd')
            r |= ACL_DELETE_VIRTUAL;
        else
            return ACL_E_BADRIGHTS; /* RFC 4314 3.1: never ignored silently */
    }
    *rights = r;
    return 0;
}

void acl_rights_format(unsigned rights, char *out)
{
    size_t n = 0;

    for (size_t i = 0; i < RIGHTS_N; i++)
        if (rights & (1u << i))
            out[n++] = ACL_RIGHTS_CHARS[i];
    out[n] = '\0';
}

void acl_rights_format_virtual(unsigned rights, char *out)
{
    size_t n;

    acl_rights_format(rights, out);
    n = strlen(out);
    if (rights & ACL_CREATE_VIRTUAL)
        out[n++] = 'c';
    if (rights & ACL_DELETE_VIRTUAL)
        out[n++] = 'd';
    out[n] = '\0';
}

/* ---- identifiers and names ---- */

static bool group_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* A group name (no '$') lower-cased into out (ACL_GROUP_MAX + 1). */
static int group_name(const char *in, size_t len, char *out)
{
    if (len == 0 || len > ACL_GROUP_MAX)
        return ACL_E_BADIDENT;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (!group_char_ok(c))
            return ACL_E_BADIDENT;
        out[i] = (char)c;
    }
    out[len] = '\0';
    return 0;
}

int acl_ident_normalize(const char *in, size_t len, const char *default_domain, char *out)
{
    char base[AUTH_ADDR_MAX];
    bool neg = false;

    if (!in)
        return ACL_E_BADIDENT;
    if (len && in[0] == '-') {
        neg = true;
        in++;
        len--;
    }
    if (len == 0 || memchr(in, '\0', len))
        return ACL_E_BADIDENT;
    if (len == 6 && strncasecmp(in, "anyone", 6) == 0) {
        memcpy(base, "anyone", 7);
    } else if (in[0] == '$') {
        base[0] = '$';
        if (group_name(in + 1, len - 1, base + 1) != 0)
            return ACL_E_BADIDENT;
    } else if (auth_normalize_address(in, len, default_domain, base, sizeof(base)) != AUTH_OK) {
        return ACL_E_BADIDENT;
    }
    snprintf(out, ACL_IDENT_MAX, "%s%s", neg ? "-" : "", base);
    return 0;
}

enum ident_kind { K_ANYONE, K_USER, K_GROUP };

/* Whether ident is in its stored form; *kind and *base (after '-'). */
static int ident_check(const char *ident, enum ident_kind *kind, const char **base, bool *neg)
{
    char norm[ACL_IDENT_MAX];
    size_t len = ident ? strlen(ident) : 0;

    if (len == 0 || len >= ACL_IDENT_MAX || acl_ident_normalize(ident, len, NULL, norm) != 0 ||
        strcmp(norm, ident) != 0)
        return ACL_E_BADIDENT;
    *neg = ident[0] == '-';
    *base = ident + (*neg ? 1 : 0);
    *kind = !strcmp(*base, "anyone") ? K_ANYONE : (*base)[0] == '$' ? K_GROUP : K_USER;
    return 0;
}

/* The stored form of a mailbox name: "INBOX" as the first level in any
 * case is "INBOX" (as the store has it). ACL_E_BADNAME for what no store
 * holds. */
static int mbox_canon(const char *in, char *out)
{
    size_t len = in ? strlen(in) : 0;

    if (len == 0 || len >= ACL_MAILBOX_MAX || in[0] == '/' || in[len - 1] == '/')
        return ACL_E_BADNAME;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c < 0x20 || c == 0x7f || (c == '/' && in[i + 1] == '/'))
            return ACL_E_BADNAME;
    }
    memcpy(out, in, len + 1);
    if ((len == 5 || (len > 5 && in[5] == '/')) && strncasecmp(in, "INBOX", 5) == 0)
        memcpy(out, "INBOX", 5);
    return 0;
}

/* ---- database ---- */

const char acl_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS acl ("
    " owner INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " mailbox TEXT NOT NULL,"
    " ident TEXT NOT NULL," /* address, anyone, $group; '-' first when negative */
    " rights INTEGER NOT NULL,"
    " PRIMARY KEY (owner, mailbox, ident)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS acl_ident ON acl(ident);"
    "CREATE TABLE IF NOT EXISTS acl_group ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT UNIQUE NOT NULL);"
    "CREATE TABLE IF NOT EXISTS acl_member ("
    " group_id INTEGER NOT NULL REFERENCES acl_group(id) ON DELETE CASCADE,"
    " account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " PRIMARY KEY (group_id, account)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS acl_member_account ON acl_member(account);"
    "CREATE TABLE IF NOT EXISTS mailbox_share ("
    " owner INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " mailbox TEXT NOT NULL,"
    " seen_shared INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (owner, mailbox)) WITHOUT ROWID;";

int acl_db_init(struct auth_db *db)
{
    return adb_exec(db, acl_schema_sql) == DB_OK ? AUTH_OK : AUTH_E_TEMP;
}

/* A write transaction, unless the caller has one open already (*own tells
 * whether it is ours to end). */
static int txn_begin(struct auth_db *h, bool *own)
{
    *own = !adb_in_txn(h);
    if (*own && adb_begin(h) != DB_OK)
        return AUTH_E_TEMP;
    return AUTH_OK;
}

static int txn_end(struct auth_db *h, bool own, int rc)
{
    if (!own)
        return rc;
    if (rc == AUTH_OK && adb_commit(h) == DB_OK)
        return AUTH_OK;
    adb_rollback(h);
    return rc == AUTH_OK ? AUTH_E_TEMP : rc;
}

/* Runs sql with up to four parameters: int64 a, then texts t1..t3 (NULL:
 * not bound). Returns AUTH_OK or AUTH_E_TEMP; *changes (may be NULL) the
 * rows changed. */
static int exec4(struct auth_db *h, const char *sql, int64_t a, const char *t1, const char *t2,
                 const char *t3, int *changes)
{
    struct adb_stmt *st = NULL;
    int r;

    if (adb_prepare(h, sql, &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_int64(st, 1, a);
    if (t1)
        adb_bind_text(st, 2, t1);
    if (t2)
        adb_bind_text(st, 3, t2);
    if (t3)
        adb_bind_text(st, 4, t3);
    r = adb_step(st);
    if (changes)
        *changes = (int)adb_changes(st);
    adb_finalize(st);
    return r == DB_DONE || r == DB_ROW ? AUTH_OK : r == DB_CONSTRAINT ? AUTH_E_EXISTS : AUTH_E_TEMP;
}

/* One integer (or text into out) from a query of the same parameters;
 * AUTH_E_NOUSER when no row. */
static int query4(struct auth_db *h, const char *sql, int64_t a, const char *t1, const char *t2,
                  int64_t *num, char *out, size_t cap)
{
    struct adb_stmt *st = NULL;
    int r, rc;

    if (adb_prepare(h, sql, &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_int64(st, 1, a);
    if (t1)
        adb_bind_text(st, 2, t1);
    if (t2)
        adb_bind_text(st, 3, t2);
    r = adb_step(st);
    if (r == DB_ROW) {
        if (num)
            *num = adb_column_int64(st, 0);
        if (out) {
            const unsigned char *t = adb_column_text(st, 0);
            snprintf(out, cap, "%s", t ? (const char *)t : "");
        }
        rc = AUTH_OK;
    } else {
        rc = r == DB_DONE ? AUTH_E_NOUSER : AUTH_E_TEMP;
    }
    adb_finalize(st);
    return rc;
}

#define IN_TREE(p) "(mailbox = " p " OR substr(mailbox, 1, length(" p ") + 1) = " p " || '/')"

int acl_db_set(struct auth_db *db, int64_t owner, const char *mailbox, const char *ident,
               unsigned rights, char mode)
{
    struct auth_db *h = db;
    char name[ACL_MAILBOX_MAX], owner_addr[AUTH_ADDR_MAX];
    enum ident_kind kind;
    const char *base;
    int64_t cur = 0, count = 0;
    bool neg, own, exists;
    unsigned next;
    int rc;

    if ((rc = mbox_canon(mailbox, name)) != 0 || (rc = ident_check(ident, &kind, &base, &neg)) != 0)
        return rc;
    if ((rights & ~ACL_ALL) || (mode != '=' && mode != '+' && mode != '-'))
        return ACL_E_BADRIGHTS;
    if ((rc = txn_begin(h, &own)) != AUTH_OK)
        return rc;
    rc = query4(h, "SELECT address FROM accounts WHERE id = ?1", owner, NULL, NULL, NULL,
                owner_addr, sizeof(owner_addr));
    if (rc != AUTH_OK)
        goto out;
    if (kind == K_USER) {
        if (!strcasecmp(base, owner_addr)) {
            rc = ACL_E_OWNER;
            goto out;
        }
        rc = query4(h, "SELECT id FROM accounts WHERE ?1 = ?1 AND address = ?2", 0, base, NULL,
                    NULL, NULL, 0);
    } else if (kind == K_GROUP) {
        rc = query4(h, "SELECT id FROM acl_group WHERE ?1 = ?1 AND name = ?2", 0, base + 1, NULL,
                    NULL, NULL, 0);
        if (rc == AUTH_E_NOUSER)
            rc = ACL_E_NOGROUP;
    }
    if (rc != AUTH_OK)
        goto out;
    rc = query4(h, "SELECT rights FROM acl WHERE owner = ?1 AND mailbox = ?2 AND ident = ?3", owner,
                name, ident, &cur, NULL, 0);
    if (rc != AUTH_OK && rc != AUTH_E_NOUSER)
        goto out;
    exists = rc == AUTH_OK;
    next = mode == '+'   ? ((unsigned)cur | rights)
           : mode == '-' ? ((unsigned)cur & ~rights)
                         : rights;
    if (next == 0) {
        rc = exists ? exec4(h, "DELETE FROM acl WHERE owner = ?1 AND mailbox = ?2 AND ident = ?3",
                            owner, name, ident, NULL, NULL)
                    : AUTH_OK;
    } else if (exists) {
        char v[16];
        snprintf(v, sizeof(v), "%u", next);
        rc = exec4(h,
                   "UPDATE acl SET rights = CAST(?4 AS INTEGER) WHERE owner = ?1"
                   " AND mailbox = ?2 AND ident = ?3",
                   owner, name, ident, v, NULL);
    } else {
        char v[16];
        rc = query4(h, "SELECT count(*) FROM acl WHERE owner = ?1 AND mailbox = ?2", owner, name,
                    NULL, &count, NULL, 0);
        if (rc != AUTH_OK)
            goto out;
        if ((uint64_t)count >= auth_db_acl_max(db)) {
            rc = ACL_E_LIMIT;
            goto out;
        }
        snprintf(v, sizeof(v), "%u", next);
        rc = exec4(h,
                   "INSERT INTO acl (owner, mailbox, ident, rights)"
                   " VALUES (?1, ?2, ?3, CAST(?4 AS INTEGER))",
                   owner, name, ident, v, NULL);
    }
out:
    return txn_end(h, own, rc);
}

int acl_db_delete(struct auth_db *db, int64_t owner, const char *mailbox, const char *ident)
{
    char name[ACL_MAILBOX_MAX];
    enum ident_kind kind;
    const char *base;
    bool neg;
    int rc;

    if ((rc = mbox_canon(mailbox, name)) != 0 || (rc = ident_check(ident, &kind, &base, &neg)) != 0)
        return rc;
    return exec4(db, "DELETE FROM acl WHERE owner = ?1 AND mailbox = ?2 AND ident = ?3", owner,
                 name, ident, NULL, NULL);
}

/* The rows of `from` and every name under "from/" move to `to` (the rest
 * of the name kept). Moved rows are marked first (a name never starts
 * with a control character), so that a move into the tree itself ("a" to
 * "a/b") meets no row of its own; rows found under `to` are stale (the
 * store has nothing there) and go. */
static int move_tree(struct auth_db *h, const char *table, int64_t owner, const char *from,
                     const char *to)
{
    char sql[512];
    int rc;

    snprintf(sql, sizeof(sql),
             "UPDATE %s SET mailbox = ?4 || ?3 || substr(mailbox, length(?2) + 1)"
             " WHERE owner = ?1 AND " IN_TREE("?2"),
             table);
    rc = exec4(h, sql, owner, from, to, "\001", NULL);
    if (rc == AUTH_OK) {
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE owner = ?1 AND " IN_TREE("?2"), table);
        rc = exec4(h, sql, owner, to, NULL, NULL, NULL);
    }
    if (rc == AUTH_OK) {
        snprintf(sql, sizeof(sql),
                 "UPDATE %s SET mailbox = substr(mailbox, 2) WHERE owner = ?1"
                 " AND substr(mailbox, 1, 1) = ?2",
                 table);
        rc = exec4(h, sql, owner, "\001", NULL, NULL, NULL);
    }
    return rc;
}

/* child's rows become a copy of parent's. */
static int copy_one(struct auth_db *h, int64_t owner, const char *parent, const char *child)
{
    int rc = exec4(h, "DELETE FROM acl WHERE owner = ?1 AND mailbox = ?2", owner, child, NULL, NULL,
                   NULL);

    if (rc == AUTH_OK)
        rc = exec4(h, "DELETE FROM mailbox_share WHERE owner = ?1 AND mailbox = ?2", owner, child,
                   NULL, NULL, NULL);
    if (rc == AUTH_OK)
        rc = exec4(h,
                   "INSERT INTO acl (owner, mailbox, ident, rights) SELECT owner, ?2, ident,"
                   " rights FROM acl WHERE owner = ?1 AND mailbox = ?3",
                   owner, child, parent, NULL, NULL);
    if (rc == AUTH_OK)
        rc = exec4(h,
                   "INSERT INTO mailbox_share (owner, mailbox, seen_shared) SELECT owner, ?2,"
                   " seen_shared FROM mailbox_share WHERE owner = ?1 AND mailbox = ?3",
                   owner, child, parent, NULL, NULL);
    return rc;
}

int acl_db_rename(struct auth_db *db, int64_t owner, const char *from, const char *to)
{
    struct auth_db *h = db;
    char f[ACL_MAILBOX_MAX], t[ACL_MAILBOX_MAX];
    bool own;
    int rc;

    if ((rc = mbox_canon(from, f)) != 0 || (rc = mbox_canon(to, t)) != 0)
        return rc;
    if (!strcmp(f, "INBOX")) /* INBOX stays: the new one takes a copy */
        return acl_db_inherit(db, owner, f, t);
    if (!strcmp(f, t) || (rc = txn_begin(h, &own)) != AUTH_OK)
        return rc;
    rc = move_tree(h, "acl", owner, f, t);
    if (rc == AUTH_OK)
        rc = move_tree(h, "mailbox_share", owner, f, t);
    return txn_end(h, own, rc);
}

int acl_db_drop(struct auth_db *db, int64_t owner, const char *mailbox)
{
    struct auth_db *h = db;
    char name[ACL_MAILBOX_MAX];
    bool own;
    int rc;

    if ((rc = mbox_canon(mailbox, name)) != 0)
        return rc;
    if ((rc = txn_begin(h, &own)) != AUTH_OK)
        return rc;
    rc = exec4(h, "DELETE FROM acl WHERE owner = ?1 AND " IN_TREE("?2"), owner, name, NULL, NULL,
               NULL);
    if (rc == AUTH_OK)
        rc = exec4(h, "DELETE FROM mailbox_share WHERE owner = ?1 AND " IN_TREE("?2"), owner, name,
                   NULL, NULL, NULL);
    return txn_end(h, own, rc);
}

int acl_db_inherit(struct auth_db *db, int64_t owner, const char *parent, const char *child)
{
    struct auth_db *h = db;
    char p[ACL_MAILBOX_MAX], c[ACL_MAILBOX_MAX];
    bool own;
    int rc;

    if ((rc = mbox_canon(parent, p)) != 0 || (rc = mbox_canon(child, c)) != 0)
        return rc;
    if (!strcmp(p, c))
        return AUTH_OK;
    if ((rc = txn_begin(h, &own)) != AUTH_OK)
        return rc;
    rc = copy_one(h, owner, p, c);
    return txn_end(h, own, rc);
}

int acl_db_set_seen_shared(struct auth_db *db, int64_t owner, const char *mailbox, bool shared)
{
    struct auth_db *h = db;
    char name[ACL_MAILBOX_MAX];
    int rc;

    if ((rc = mbox_canon(mailbox, name)) != 0)
        return rc;
    if (query4(h, "SELECT id FROM accounts WHERE id = ?1", owner, NULL, NULL, NULL, NULL, 0) !=
        AUTH_OK)
        return AUTH_E_NOUSER;
    /* per user is the default: no row needed for it */
    if (!shared)
        return exec4(h, "DELETE FROM mailbox_share WHERE owner = ?1 AND mailbox = ?2", owner, name,
                     NULL, NULL, NULL);
    return exec4(h,
                 "INSERT INTO mailbox_share (owner, mailbox, seen_shared)"
                 " VALUES (?1, ?2, 1) ON CONFLICT (owner, mailbox) DO UPDATE SET seen_shared = 1",
                 owner, name, NULL, NULL, NULL);
}

/* ---- groups ---- */

int acl_group_add(struct auth_db *db, const char *name)
{
    struct auth_db *h = db;
    char g[ACL_GROUP_MAX + 1];
    int rc;

    if (!name || group_name(name, strlen(name), g) != 0)
        return ACL_E_BADIDENT;
    rc = exec4(h, "INSERT INTO acl_group (name) SELECT ?2 WHERE ?1 = ?1", 0, g, NULL, NULL, NULL);
    return rc; /* AUTH_E_EXISTS when the name is taken */
}

int acl_group_del(struct auth_db *db, const char *name)
{
    struct auth_db *h = db;
    char g[ACL_GROUP_MAX + 1], ident[ACL_GROUP_MAX + 2], neg[ACL_GROUP_MAX + 3];
    int64_t id = 0;
    bool own;
    int rc;

    if (!name || group_name(name, strlen(name), g) != 0)
        return ACL_E_BADIDENT;
    snprintf(ident, sizeof(ident), "$%s", g);
    snprintf(neg, sizeof(neg), "-$%s", g);
    if ((rc = txn_begin(h, &own)) != AUTH_OK)
        return rc;
    rc =
        query4(h, "SELECT id FROM acl_group WHERE ?1 = ?1 AND name = ?2", 0, g, NULL, &id, NULL, 0);
    if (rc == AUTH_E_NOUSER)
        rc = ACL_E_NOGROUP;
    if (rc == AUTH_OK)
        rc = exec4(h, "DELETE FROM acl WHERE ?1 = ?1 AND ident IN (?2, ?3)", 0, ident, neg, NULL,
                   NULL);
    if (rc == AUTH_OK)
        rc = exec4(h, "DELETE FROM acl_member WHERE group_id = ?1", id, NULL, NULL, NULL, NULL);
    if (rc == AUTH_OK)
        rc = exec4(h, "DELETE FROM acl_group WHERE id = ?1", id, NULL, NULL, NULL, NULL);
    return txn_end(h, own, rc);
}

int acl_group_member(struct auth_db *db, const char *name, const char *address, bool add)
{
    struct auth_db *h = db;
    char g[ACL_GROUP_MAX + 1];
    int64_t gid = 0, uid = 0;
    bool own;
    int rc;

    if (!name || group_name(name, strlen(name), g) != 0)
        return ACL_E_BADIDENT;
    if ((rc = txn_begin(h, &own)) != AUTH_OK)
        return rc;
    rc = query4(h, "SELECT id FROM acl_group WHERE ?1 = ?1 AND name = ?2", 0, g, NULL, &gid, NULL,
                0);
    if (rc == AUTH_E_NOUSER)
        rc = ACL_E_NOGROUP;
    if (rc == AUTH_OK)
        rc = query4(h, "SELECT id FROM accounts WHERE ?1 = ?1 AND address = ?2", 0, address, NULL,
                    &uid, NULL, 0);
    if (rc == AUTH_OK) {
        struct adb_stmt *st = NULL;
        const char *sql = add ? "INSERT INTO acl_member (group_id, account) VALUES (?, ?)"
                                " ON CONFLICT DO NOTHING"
                              : "DELETE FROM acl_member WHERE group_id = ? AND account = ?";
        rc = AUTH_E_TEMP;
        if (adb_prepare(h, sql, &st) == DB_OK) {
            adb_bind_int64(st, 1, gid);
            adb_bind_int64(st, 2, uid);
            if (adb_step(st) == DB_DONE)
                rc = adb_changes(st) ? AUTH_OK : add ? AUTH_E_EXISTS : AUTH_E_NOUSER;
        }
        adb_finalize(st);
    }
    return txn_end(h, own, rc);
}

int acl_group_list(struct auth_db *db, const char *name,
                   int (*cb)(void *arg, const char *group, const char *address), void *arg)
{
    struct auth_db *h = db;
    char g[ACL_GROUP_MAX + 1];
    struct adb_stmt *st = NULL;
    int r, rc = AUTH_OK;
    bool any = false;

    if (name && group_name(name, strlen(name), g) != 0)
        return ACL_E_BADIDENT;
    if (adb_prepare(h,
                    "SELECT g.name, a.address FROM acl_group g"
                    " LEFT JOIN acl_member m ON m.group_id = g.id"
                    " LEFT JOIN accounts a ON a.id = m.account"
                    " WHERE ?1 IS NULL OR g.name = ?1"
                    " ORDER BY g.name, a.address COLLATE BINARY",
                    &st) != DB_OK)
        return AUTH_E_TEMP;
    if (name)
        adb_bind_text(st, 1, g);
    while ((r = adb_step(st)) == DB_ROW) {
        const unsigned char *gn = adb_column_text(st, 0), *ad = adb_column_text(st, 1);
        any = true;
        if (cb(arg, gn ? (const char *)gn : "", ad ? (const char *)ad : "") != 0) {
            r = DB_DONE;
            break;
        }
    }
    adb_finalize(st);
    if (r != DB_DONE)
        rc = AUTH_E_TEMP;
    else if (name && !any)
        rc = ACL_E_NOGROUP;
    return rc;
}

int acl_db_forget_account(struct auth_db *db, int64_t account, const char *address)
{
    struct auth_db *h = db;
    char neg[ACL_IDENT_MAX];
    bool own;
    int rc;

    snprintf(neg, sizeof(neg), "-%s", address);
    if ((rc = txn_begin(h, &own)) != AUTH_OK)
        return rc;
    rc = exec4(h, "DELETE FROM acl WHERE owner = ?1", account, NULL, NULL, NULL, NULL);
    if (rc == AUTH_OK)
        rc = exec4(h, "DELETE FROM acl WHERE ?1 = ?1 AND ident IN (?2, ?3)", 0, address, neg, NULL,
                   NULL);
    if (rc == AUTH_OK)
        rc = exec4(h, "DELETE FROM acl_member WHERE account = ?1", account, NULL, NULL, NULL, NULL);
    if (rc == AUTH_OK)
        rc =
            exec4(h, "DELETE FROM mailbox_share WHERE owner = ?1", account, NULL, NULL, NULL, NULL);
    return txn_end(h, own, rc);
}

/* ---- the snapshot ---- */

struct snap_entry {
    uint32_t ident; /* offset in strings: the stored form */
    uint8_t kind;   /* enum ident_kind */
    bool neg;
    unsigned rights;
    int64_t who; /* account id (K_USER), group id (K_GROUP), 0 */
};

struct snap_mbox {
    uint32_t name;  /* offset in strings */
    uint32_t owner; /* index in owners */
    uint32_t first, n;
    bool seen_shared;
};

struct snap_owner {
    int64_t id;
    uint32_t address; /* offset in strings */
    uint32_t first, n;
};

/* A positive entry, by what it names, for the shared namespace. */
struct snap_post {
    uint8_t kind;
    int64_t who;
    uint32_t mbox;
};

struct snap_member {
    int64_t account, group;
};

struct snap_id {
    int64_t id;
    uint32_t owner; /* index in owners */
};

struct acl_snap {
    atomic_uint refs;
    char *strings;
    size_t str_len, str_cap;
    struct snap_owner *owners; /* by address */
    struct snap_id *by_id;     /* owners by id */
    size_t n_owners, cap_owners;
    struct snap_mbox *mboxes; /* by owner address, then name */
    size_t n_mboxes, cap_mboxes;
    struct snap_entry *entries; /* per mailbox, by ident */
    size_t n_entries, cap_entries;
    struct snap_post *posts; /* by kind, who, mbox */
    size_t n_posts;
    struct snap_member *members; /* by account, group */
    size_t n_members, cap_members;
};

#define S(s, off) ((s)->strings + (off))

static void snap_free(struct acl_snap *s)
{
    if (!s)
        return;
    free(s->strings);
    free(s->owners);
    free(s->by_id);
    free(s->mboxes);
    free(s->entries);
    free(s->posts);
    free(s->members);
    free(s);
}

/* Makes room for one more element of size sz in *p (n used, *cap). */
static bool grow(void **p, size_t n, size_t *cap, size_t sz)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, nc * sz);
    if (!q)
        return false;
    *p = q;
    *cap = nc;
    return true;
}

/* The offset of a copy of t in s->strings, or UINT32_MAX without memory. */
static uint32_t add_string(struct acl_snap *s, const char *t)
{
    size_t len = strlen(t) + 1;

    if (s->str_len + len > UINT32_MAX - 1)
        return UINT32_MAX;
    while (s->str_len + len > s->str_cap) {
        size_t nc = s->str_cap ? s->str_cap * 2 : 4096;
        char *q = realloc(s->strings, nc);
        if (!q)
            return UINT32_MAX;
        s->strings = q;
        s->str_cap = nc;
    }
    memcpy(s->strings + s->str_len, t, len);
    s->str_len += len;
    return (uint32_t)(s->str_len - len);
}

static int cmp_post(const void *a, const void *b)
{
    const struct snap_post *x = a, *y = b;

    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->who != y->who)
        return x->who < y->who ? -1 : 1;
    return x->mbox < y->mbox ? -1 : x->mbox > y->mbox;
}

static int cmp_by_id(const void *a, const void *b)
{
    int64_t x = ((const struct snap_id *)a)->id, y = ((const struct snap_id *)b)->id;

    return x < y ? -1 : x > y;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/* Reads the rows: every entry and share setting, with the owner's address
 * and what the identifier names resolved (rows naming an account or group
 * that no longer exists are left out). In one read transaction. */
static int snap_read(struct auth_db *h, struct acl_snap *s)
{
    struct adb_stmt *st = NULL;
    int64_t cur_owner = 0;
    bool have_name = false;
    uint32_t cur_name_off = 0;
    int r;

    if (adb_prepare(
            h,
            "SELECT o.id, o.address, x.mailbox, x.ident, x.rights, x.seen, u.id, g.id FROM"
            " (SELECT owner, mailbox, ident, rights, NULL AS seen FROM acl"
            "  UNION ALL SELECT owner, mailbox, NULL, NULL, seen_shared FROM mailbox_share) x"
            " JOIN accounts o ON o.id = x.owner"
            " LEFT JOIN accounts u ON x.ident IS NOT NULL AND u.address = ltrim(x.ident, '-')"
            " LEFT JOIN acl_group g ON substr(ltrim(x.ident, '-'), 1, 1) = '$'"
            "  AND g.name = substr(ltrim(x.ident, '-'), 2)"
            " ORDER BY o.address COLLATE BINARY, x.mailbox COLLATE BINARY,"
            "  x.ident COLLATE BINARY",
            &st) != DB_OK)
        return AUTH_E_TEMP;
    while ((r = adb_step(st)) == DB_ROW) {
        int64_t owner = adb_column_int64(st, 0);
        const char *oaddr = (const char *)adb_column_text(st, 1);
        const char *name = (const char *)adb_column_text(st, 2);
        const char *ident = (const char *)adb_column_text(st, 3);
        struct snap_mbox *m;

        if (!oaddr || !name)
            continue;
        if (s->n_owners == 0 || owner != cur_owner) {
            uint32_t off = add_string(s, oaddr);
            if (off == UINT32_MAX ||
                !grow((void **)&s->owners, s->n_owners, &s->cap_owners, sizeof(*s->owners)))
                goto oom;
            s->owners[s->n_owners++] =
                (struct snap_owner){.id = owner, .address = off, .first = (uint32_t)s->n_mboxes};
            cur_owner = owner;
            have_name = false;
        }
        if (!have_name || strcmp(S(s, cur_name_off), name) != 0) {
            cur_name_off = add_string(s, name);
            if (cur_name_off == UINT32_MAX ||
                !grow((void **)&s->mboxes, s->n_mboxes, &s->cap_mboxes, sizeof(*s->mboxes)))
                goto oom;
            s->mboxes[s->n_mboxes++] = (struct snap_mbox){
                .name = cur_name_off,
                .owner = (uint32_t)(s->n_owners - 1),
                .first = (uint32_t)s->n_entries,
            };
            s->owners[s->n_owners - 1].n++;
            have_name = true;
        }
        m = &s->mboxes[s->n_mboxes - 1];
        if (!ident) { /* the share setting */
            m->seen_shared = adb_column_int(st, 5) != 0;
            continue;
        }
        enum ident_kind kind;
        const char *base;
        bool neg;
        int64_t who = 0;
        if (ident_check(ident, &kind, &base, &neg) != 0)
            continue;
        if (kind == K_USER || kind == K_GROUP) {
            int col = kind == K_USER ? 6 : 7;
            if (adb_column_null(st, col))
                continue; /* names nobody now */
            who = adb_column_int64(st, col);
        }
        uint32_t off = add_string(s, ident);
        if (off == UINT32_MAX ||
            !grow((void **)&s->entries, s->n_entries, &s->cap_entries, sizeof(*s->entries)))
            goto oom;
        s->entries[s->n_entries++] = (struct snap_entry){
            .ident = off,
            .kind = (uint8_t)kind,
            .neg = neg,
            .rights = (unsigned)adb_column_int64(st, 4) & ACL_ALL,
            .who = who,
        };
        m->n++;
    }
    adb_finalize(st);
    if (r != DB_DONE)
        return AUTH_E_TEMP;

    if (adb_prepare(h, "SELECT account, group_id FROM acl_member ORDER BY account, group_id",
                    &st) != DB_OK)
        return AUTH_E_TEMP;
    while ((r = adb_step(st)) == DB_ROW) {
        if (!grow((void **)&s->members, s->n_members, &s->cap_members, sizeof(*s->members)))
            goto oom;
        s->members[s->n_members++] =
            (struct snap_member){adb_column_int64(st, 0), adb_column_int64(st, 1)};
    }
    adb_finalize(st);
    return r == DB_DONE ? AUTH_OK : AUTH_E_TEMP;
oom:
    adb_finalize(st);
    return AUTH_E_TEMP;
}

/* The indexes: owners by id, postings of the positive entries. */
static int snap_index(struct acl_snap *s)
{
    size_t n = 0;

    s->by_id = malloc((s->n_owners ? s->n_owners : 1) * sizeof(*s->by_id));
    for (size_t i = 0; i < s->n_entries; i++)
        n += !s->entries[i].neg;
    s->posts = malloc((n ? n : 1) * sizeof(*s->posts));
    if (!s->by_id || !s->posts)
        return AUTH_E_TEMP;
    for (size_t i = 0; i < s->n_owners; i++)
        s->by_id[i] = (struct snap_id){.id = s->owners[i].id, .owner = (uint32_t)i};
    qsort(s->by_id, s->n_owners, sizeof(*s->by_id), cmp_by_id);
    for (size_t m = 0; m < s->n_mboxes; m++) {
        const struct snap_mbox *mb = &s->mboxes[m];
        for (uint32_t e = mb->first; e < mb->first + mb->n; e++) {
            const struct snap_entry *en = &s->entries[e];
            if (!en->neg)
                s->posts[s->n_posts++] =
                    (struct snap_post){.kind = en->kind, .who = en->who, .mbox = (uint32_t)m};
        }
    }
    qsort(s->posts, s->n_posts, sizeof(*s->posts), cmp_post);
    return AUTH_OK;
}

int acl_snap_load(struct auth_db *db, struct acl_snap **out)
{
    struct auth_db *h = db;
    struct acl_snap *s = calloc(1, sizeof(*s));
    bool own;
    int rc;

    *out = NULL;
    if (!s)
        return AUTH_E_TEMP;
    atomic_init(&s->refs, 1);
    own = !adb_in_txn(h);
    if (own && adb_begin_read(h) != DB_OK) {
        snap_free(s);
        return AUTH_E_TEMP;
    }
    rc = snap_read(h, s);
    if (own) {
        if (rc == AUTH_OK)
            adb_commit(h);
        else
            adb_rollback(h);
    }
    if (rc == AUTH_OK)
        rc = snap_index(s);
    if (rc != AUTH_OK) {
        snap_free(s);
        return rc;
    }
    *out = s;
    return AUTH_OK;
}

struct acl_snap *acl_snap_ref(struct acl_snap *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void acl_snap_unref(struct acl_snap *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snap_free(s);
}

size_t acl_snap_count(const struct acl_snap *s, size_t *mailboxes)
{
    if (mailboxes)
        *mailboxes = s ? s->n_mboxes : 0;
    return s ? s->n_entries : 0;
}

static const struct snap_owner *owner_by_id(const struct acl_snap *s, int64_t id)
{
    size_t lo = 0, hi = s->n_owners;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->by_id[mid].id == id)
            return &s->owners[s->by_id[mid].owner];
        if (s->by_id[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const struct snap_mbox *find_mbox(const struct acl_snap *s, int64_t owner,
                                         const char *mailbox)
{
    char name[ACL_MAILBOX_MAX];
    const struct snap_owner *o;

    if (!s || !mailbox || mbox_canon(mailbox, name) != 0 || !(o = owner_by_id(s, owner)))
        return NULL;
    size_t lo = o->first, hi = o->first + o->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(S(s, s->mboxes[mid].name), name);
        if (c == 0)
            return &s->mboxes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The user's groups: members[*lo, *hi). */
static void user_groups(const struct acl_snap *s, int64_t user, size_t *lo, size_t *hi)
{
    size_t a = 0, b = s->n_members;

    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (s->members[mid].account < user)
            a = mid + 1;
        else
            b = mid;
    }
    *lo = a;
    b = s->n_members;
    while (a < b && s->members[a].account == user)
        a++;
    *hi = a;
}

static bool in_group(const struct acl_snap *s, size_t lo, size_t hi, int64_t group)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->members[mid].group == group)
            return true;
        if (s->members[mid].group < group)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static unsigned mbox_rights(const struct acl_snap *s, const struct snap_mbox *m, int64_t user,
                            size_t glo, size_t ghi)
{
    unsigned pos = 0, neg = 0;

    for (uint32_t i = m->first; i < m->first + m->n; i++) {
        const struct snap_entry *e = &s->entries[i];
        bool match = e->kind == K_ANYONE || (e->kind == K_USER && user && e->who == user) ||
                     (e->kind == K_GROUP && in_group(s, glo, ghi, e->who));
        if (!match)
            continue;
        if (e->neg)
            neg |= e->rights;
        else
            pos |= e->rights;
    }
    return pos & ~neg;
}

unsigned acl_snap_rights(const struct acl_snap *s, int64_t owner, const char *mailbox, int64_t user,
                         const char *address)
{
    const struct snap_mbox *m;
    size_t glo, ghi;

    (void)address; /* entries are resolved to account ids at load */
    if (user && owner == user)
        return ACL_ALL;
    if (!(m = find_mbox(s, owner, mailbox)))
        return 0;
    user_groups(s, user, &glo, &ghi);
    return mbox_rights(s, m, user, glo, ghi);
}

void acl_snap_entries(const struct acl_snap *s, int64_t owner, const char *mailbox,
                      void (*cb)(void *arg, const char *ident, unsigned rights), void *arg)
{
    const struct snap_mbox *m = find_mbox(s, owner, mailbox);

    if (!m)
        return;
    for (uint32_t i = m->first; i < m->first + m->n; i++)
        cb(arg, S(s, s->entries[i].ident), s->entries[i].rights);
}

/* The postings of (kind, who) with mbox in [mlo, mhi): posts[*a, *b). */
static void post_range(const struct acl_snap *s, uint8_t kind, int64_t who, uint32_t mlo,
                       uint32_t mhi, size_t *a, size_t *b)
{
    struct snap_post key = {.kind = kind, .who = who, .mbox = mlo};
    size_t lo = 0, hi = s->n_posts;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_post(&s->posts[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *a = lo;
    while (lo < s->n_posts && s->posts[lo].kind == kind && s->posts[lo].who == who &&
           s->posts[lo].mbox < mhi)
        lo++;
    *b = lo;
}

/* The mailboxes in [mlo, mhi) whose positive entries may name user, in
 * order, without duplicates: *out (caller frees), their number; -1 when
 * out of memory. */
static ssize_t candidates(const struct acl_snap *s, int64_t user, size_t glo, size_t ghi,
                          uint32_t mlo, uint32_t mhi, uint32_t **out)
{
    size_t keys = 2 + (ghi - glo), total = 0, n = 0;
    size_t(*ranges)[2] = calloc(keys, sizeof(*ranges));
    uint32_t *v;

    *out = NULL;
    if (!ranges)
        return -1;
    post_range(s, K_ANYONE, 0, mlo, mhi, &ranges[0][0], &ranges[0][1]);
    if (user)
        post_range(s, K_USER, user, mlo, mhi, &ranges[1][0], &ranges[1][1]);
    for (size_t g = glo; g < ghi; g++)
        post_range(s, K_GROUP, s->members[g].group, mlo, mhi, &ranges[2 + g - glo][0],
                   &ranges[2 + g - glo][1]);
    for (size_t k = 0; k < keys; k++)
        total += ranges[k][1] - ranges[k][0];
    v = malloc((total ? total : 1) * sizeof(*v));
    if (!v) {
        free(ranges);
        return -1;
    }
    for (size_t k = 0; k < keys; k++)
        for (size_t i = ranges[k][0]; i < ranges[k][1]; i++)
            v[n++] = s->posts[i].mbox;
    free(ranges);
    qsort(v, n, sizeof(*v), cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || v[u - 1] != v[i])
            v[u++] = v[i];
    *out = v;
    return (ssize_t)u;
}

void acl_snap_owners(const struct acl_snap *s, int64_t user, const char *address,
                     void (*cb)(void *arg, int64_t owner, const char *owner_address), void *arg)
{
    size_t glo, ghi;
    uint32_t *v;
    ssize_t n;
    uint32_t last = UINT32_MAX;

    (void)address;
    if (!s)
        return;
    user_groups(s, user, &glo, &ghi);
    n = candidates(s, user, glo, ghi, 0, (uint32_t)s->n_mboxes, &v);
    for (ssize_t i = 0; i < n; i++) {
        const struct snap_mbox *m = &s->mboxes[v[i]];
        const struct snap_owner *o = &s->owners[m->owner];
        if (m->owner == last || (user && o->id == user))
            continue;
        if (mbox_rights(s, m, user, glo, ghi) & ACL_LOOKUP) {
            last = m->owner;
            cb(arg, o->id, S(s, o->address));
        }
    }
    free(v);
}

void acl_snap_mailboxes(const struct acl_snap *s, int64_t owner, int64_t user, const char *address,
                        void (*cb)(void *arg, const char *mailbox, unsigned rights), void *arg)
{
    const struct snap_owner *o;
    size_t glo, ghi;
    uint32_t *v;
    ssize_t n;

    (void)address;
    if (!s || !(o = owner_by_id(s, owner)))
        return;
    if (user && owner == user) {
        for (uint32_t i = o->first; i < o->first + o->n; i++)
            cb(arg, S(s, s->mboxes[i].name), ACL_ALL);
        return;
    }
    user_groups(s, user, &glo, &ghi);
    n = candidates(s, user, glo, ghi, o->first, o->first + o->n, &v);
    for (ssize_t i = 0; i < n; i++) {
        const struct snap_mbox *m = &s->mboxes[v[i]];
        unsigned r = mbox_rights(s, m, user, glo, ghi);
        if (r)
            cb(arg, S(s, m->name), r);
    }
    free(v);
}

int64_t acl_snap_owner_id(const struct acl_snap *s, const char *owner_address)
{
    size_t lo = 0, hi;

    if (!s || !owner_address)
        return 0;
    hi = s->n_owners;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(S(s, s->owners[mid].address), owner_address);
        if (c == 0)
            return s->owners[mid].id;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

bool acl_snap_seen_shared(const struct acl_snap *s, int64_t owner, const char *mailbox)
{
    const struct snap_mbox *m = find_mbox(s, owner, mailbox);

    return m && m->seen_shared;
}
