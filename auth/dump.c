/* The whole account directory as text (coffrectl accounts export|import):
 * every account with its password hash and SCRAM secret, quota, state and
 * slot, its app passwords, pinned certificates, the groups, the ACL
 * entries and share settings, and the slots; written from one backend and
 * read into the other (the move from the SQLite file to PostgreSQL).
 *
 * One record a line, fields separated by a tab, each field with '%', tab,
 * CR, LF and the other control characters written %XX:
 *
 *   coffre-accounts	1
 *   slot	NAME	HOST	IMAP_PORT	POP3_PORT	LMTP_PORT	DATA_DIR
 *   account	ID	ADDRESS	HASH	SCRAM	DISABLED	QUOTA	MAX_MESSAGES	CREATED
 *           REQUIRE_CLIENT_CERT	SLOT	MOVE_TO
 *   app	ADDRESS	SELECTOR	LABEL	HASH	SERVICES	CREATED	LAST_USED
 *   cert	ADDRESS	FINGERPRINT	ADDED
 *   group	NAME
 *   member	GROUP	ADDRESS
 *   acl	OWNER	MAILBOX	IDENT	RIGHTS
 *   share	OWNER	MAILBOX	SEEN_SHARED
 *   end	ACCOUNTS
 *
 * The last line guards against a truncated file: without it nothing is
 * imported. An import is one transaction. An account whose address is
 * there already, or whose id another account holds (the id names its mail
 * directory, users/<id>), is refused and reported, with its app
 * passwords, pins, memberships and mailboxes' entries; everything else
 * goes in. Importing the same file again thus changes nothing and refuses
 * every account. */
#include "auth/auth.h"
#include "auth/auth_priv.h"
#include "auth/db.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DUMP_MAGIC "coffre-accounts"
#define DUMP_VERSION "1"
#define FIELDS_MAX 13
#define LINE_MAX_BYTES (64 * 1024)

/* ---- writing ---- */

static void put_field(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '%')
            fprintf(f, "%%%02X", *p);
        else
            fputc(*p, f);
    }
}

/* Writes the columns of every row of sql, after the record name. */
static int dump_query(struct auth_db *db, FILE *f, const char *record, const char *sql, int ncols,
                      unsigned long *count)
{
    struct adb_stmt *st = NULL;
    int r;

    if (adb_prepare(db, sql, &st) != DB_OK)
        return AUTH_E_TEMP;
    while ((r = adb_step(st)) == DB_ROW) {
        fputs(record, f);
        for (int c = 0; c < ncols; c++) {
            const unsigned char *t = adb_column_text(st, c);
            fputc('\t', f);
            put_field(f, (const char *)t);
        }
        fputc('\n', f);
        if (count)
            (*count)++;
    }
    adb_finalize(st);
    return r == DB_DONE ? AUTH_OK : AUTH_E_TEMP;
}

int auth_dump(struct auth_db *db, FILE *f, unsigned long *accounts)
{
    unsigned long n = 0;
    int rc;

    /* one consistent read */
    if (adb_begin_read(db) != DB_OK)
        return AUTH_E_TEMP;
    fprintf(f, DUMP_MAGIC "\t" DUMP_VERSION "\n");
    rc = dump_query(db, f, "slot",
                    "SELECT name, host, imap_port, pop3_port, lmtp_port, data_dir FROM slots"
                    " ORDER BY name COLLATE BINARY",
                    6, NULL);
    if (rc == AUTH_OK)
        rc = dump_query(db, f, "account",
                        "SELECT id, address, hash, coalesce(scram, ''), disabled, quota,"
                        " max_messages, created, require_client_cert, slot, move_to FROM accounts"
                        " ORDER BY id",
                        11, &n);
    if (rc == AUTH_OK)
        rc = dump_query(db, f, "app",
                        "SELECT a.address, p.selector, p.label, p.hash, p.services, p.created,"
                        " p.last_used FROM app_passwords p JOIN accounts a ON a.id = p.account"
                        " ORDER BY p.id",
                        7, NULL);
    if (rc == AUTH_OK)
        rc = dump_query(db, f, "cert",
                        "SELECT a.address, c.fingerprint, c.added FROM client_certs c"
                        " JOIN accounts a ON a.id = c.account_id ORDER BY a.id, c.added",
                        3, NULL);
    if (rc == AUTH_OK)
        rc = dump_query(db, f, "group", "SELECT name FROM acl_group ORDER BY id", 1, NULL);
    if (rc == AUTH_OK)
        rc = dump_query(db, f, "member",
                        "SELECT g.name, a.address FROM acl_member m JOIN acl_group g"
                        " ON g.id = m.group_id JOIN accounts a ON a.id = m.account"
                        " ORDER BY g.id, a.id",
                        2, NULL);
    if (rc == AUTH_OK)
        rc = dump_query(db, f, "acl",
                        "SELECT a.address, x.mailbox, x.ident, x.rights FROM acl x"
                        " JOIN accounts a ON a.id = x.owner ORDER BY a.id, x.mailbox COLLATE"
                        " BINARY, x.ident COLLATE BINARY",
                        4, NULL);
    if (rc == AUTH_OK)
        rc = dump_query(db, f, "share",
                        "SELECT a.address, x.mailbox, x.seen_shared FROM mailbox_share x"
                        " JOIN accounts a ON a.id = x.owner ORDER BY a.id, x.mailbox COLLATE"
                        " BINARY",
                        3, NULL);
    if (rc == AUTH_OK)
        fprintf(f, "end\t%lu\n", n);
    if (rc == AUTH_OK && adb_commit(db) != DB_OK)
        rc = AUTH_E_TEMP;
    if (rc != AUTH_OK)
        adb_rollback(db);
    if (accounts)
        *accounts = n;
    return rc;
}

/* ---- reading ---- */

/* Splits line (modified) at tabs, decoding %XX in place. The number of
 * fields, or -1 for a bad escape or too many fields. */
static int split(char *line, char **fields)
{
    int n = 0;
    char *p = line;

    for (;;) {
        char *start = p, *w = p;

        if (n >= FIELDS_MAX)
            return -1;
        while (*p && *p != '\t') {
            if (*p == '%') {
                unsigned v;
                if (!p[1] || !p[2] || sscanf(p + 1, "%2x", &v) != 1 || v == 0)
                    return -1;
                *w++ = (char)v;
                p += 3;
            } else {
                *w++ = *p++;
            }
        }
        fields[n++] = start;
        if (!*p) {
            *w = '\0';
            return n;
        }
        p++;
        *w = '\0';
    }
}

static bool num(const char *s, int64_t *out)
{
    char *end;

    if (!*s)
        return false;
    *out = strtoll(s, &end, 10);
    return *end == '\0';
}

/* The addresses imported by this run: only their dependent rows go in. */
struct addr_set {
    char **v;
    size_t cap, n;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool set_has(const struct addr_set *set, const char *s)
{
    if (!set->cap)
        return false;
    for (size_t i = hash_str(s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->v[i])
            return false;
        if (!strcmp(set->v[i], s))
            return true;
    }
}

static int set_add(struct addr_set *set, const char *s)
{
    if ((set->n + 1) * 2 > set->cap) {
        struct addr_set bigger = {calloc(set->cap ? set->cap * 2 : 64, sizeof(char *)),
                                  set->cap ? set->cap * 2 : 64, 0};
        if (!bigger.v)
            return -1;
        for (size_t i = 0; i < set->cap; i++)
            if (set->v[i]) {
                size_t j = hash_str(set->v[i]) & (bigger.cap - 1);
                while (bigger.v[j])
                    j = (j + 1) & (bigger.cap - 1);
                bigger.v[j] = set->v[i];
                bigger.n++;
            }
        free(set->v);
        *set = bigger;
    }
    size_t i = hash_str(s) & (set->cap - 1);
    while (set->v[i])
        i = (i + 1) & (set->cap - 1);
    if (!(set->v[i] = strdup(s)))
        return -1;
    set->n++;
    return 0;
}

static void set_free(struct addr_set *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->v[i]);
    free(set->v);
}

/* Runs sql with fields bound: 'i' an integer, 't' a text, per kinds. */
static int run(struct auth_db *db, const char *sql, const char *kinds, char **fields,
               int64_t *changes)
{
    struct adb_stmt *st = NULL;
    int r;

    if (adb_prepare(db, sql, &st) != DB_OK)
        return DB_ERROR;
    for (int i = 0; kinds[i]; i++) {
        int64_t v;
        if (kinds[i] == 'i') {
            if (!num(fields[i], &v)) {
                adb_finalize(st);
                return DB_CONSTRAINT;
            }
            adb_bind_int64(st, i + 1, v);
        } else if (kinds[i] == 'n' && !fields[i][0]) {
            adb_bind_null(st, i + 1); /* text, NULL when empty */
        } else {
            adb_bind_text(st, i + 1, fields[i]);
        }
    }
    r = adb_step(st);
    if (changes)
        *changes = adb_changes(st);
    adb_finalize(st);
    return r == DB_DONE || r == DB_ROW ? DB_OK : r;
}

/* Why address or id cannot be imported, or NULL. */
static const char *account_conflict(struct auth_db *db, const char *address, int64_t id, int *err)
{
    static __thread char why[AUTH_ADDR_MAX + 64];
    struct adb_stmt *st = NULL;
    int r;

    *err = 0;
    if (adb_prepare(db, "SELECT address FROM accounts WHERE address = ? OR id = ?", &st) != DB_OK) {
        *err = 1;
        return NULL;
    }
    adb_bind_text(st, 1, address);
    adb_bind_int64(st, 2, id);
    r = adb_step(st);
    if (r == DB_ROW) {
        const unsigned char *a = adb_column_text(st, 0);
        if (a && !strcmp((const char *)a, address))
            snprintf(why, sizeof(why), "exists already");
        else
            snprintf(why, sizeof(why), "its id %" PRId64 " belongs to %s", id,
                     a ? (const char *)a : "?");
    } else if (r != DB_DONE) {
        *err = 1;
    }
    adb_finalize(st);
    return r == DB_ROW ? why : NULL;
}

static int load_line(struct auth_db *db, char **f, int n, struct addr_set *done,
                     void (*refused)(void *arg, const char *address, const char *why), void *arg,
                     struct auth_load_report *rep, char *err, size_t errlen)
{
    const char *rec = f[0];
    int r = DB_OK;

#define WANT(k)                                                                                    \
    do {                                                                                           \
        if (n != (k) + 1) {                                                                        \
            snprintf(err, errlen, "%s: %d fields, %d wanted", rec, n - 1, (k));                    \
            return AUTH_E_BADADDR;                                                                 \
        }                                                                                          \
    } while (0)

    if (!strcmp(rec, "slot")) {
        int64_t ch = 0;
        WANT(6);
        r = run(db,
                "INSERT INTO slots (name, host, imap_port, pop3_port, lmtp_port, data_dir)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                "ttiiit", f + 1, &ch);
        rep->slots += (unsigned long)ch;
    } else if (!strcmp(rec, "account")) {
        char addr[AUTH_ADDR_MAX];
        const char *why;
        int64_t id;
        int e;

        WANT(11);
        if (!num(f[1], &id) || id <= 0 ||
            auth_normalize_address(f[2], strlen(f[2]), NULL, addr, sizeof(addr)) != AUTH_OK ||
            strcmp(addr, f[2]) != 0 || !f[3][0]) {
            snprintf(err, errlen, "account %s: not a valid id, address or hash", f[2]);
            return AUTH_E_BADADDR;
        }
        why = account_conflict(db, addr, id, &e);
        if (e)
            return AUTH_E_TEMP;
        if (why) {
            rep->refused++;
            if (refused)
                refused(arg, addr, why);
            return AUTH_OK;
        }
        r = run(db,
                "INSERT INTO accounts (id, address, hash, scram, disabled, quota, max_messages,"
                " created, require_client_cert, slot, move_to)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "ittniiiiitt", f + 1, NULL);
        if (r == DB_OK) {
            if (set_add(done, addr) < 0)
                return AUTH_E_TEMP;
            rep->accounts++;
        }
    } else if (!strcmp(rec, "app")) {
        WANT(7);
        if (!set_has(done, f[1]))
            return AUTH_OK;
        r = run(db,
                "INSERT INTO app_passwords (account, selector, label, hash, services, created,"
                " last_used) SELECT id, ?2, ?3, ?4, ?5, CAST(?6 AS INTEGER), CAST(?7 AS INTEGER)"
                " FROM accounts WHERE address = ?1",
                "ttttttt", f + 1, NULL);
        rep->apps++;
    } else if (!strcmp(rec, "cert")) {
        WANT(3);
        if (!set_has(done, f[1]))
            return AUTH_OK;
        r = run(db,
                "INSERT INTO client_certs (fingerprint, account_id, added)"
                " SELECT ?2, id, CAST(?3 AS INTEGER) FROM accounts WHERE address = ?1",
                "ttt", f + 1, NULL);
        rep->certs++;
    } else if (!strcmp(rec, "group")) {
        int64_t ch = 0;
        WANT(1);
        r = run(db, "INSERT INTO acl_group (name) VALUES (?) ON CONFLICT DO NOTHING", "t", f + 1,
                &ch);
        rep->groups += (unsigned long)ch;
    } else if (!strcmp(rec, "member")) {
        WANT(2);
        if (!set_has(done, f[2]))
            return AUTH_OK;
        r = run(db,
                "INSERT INTO acl_member (group_id, account) SELECT g.id, a.id FROM acl_group g,"
                " accounts a WHERE g.name = ?1 AND a.address = ?2 ON CONFLICT DO NOTHING",
                "tt", f + 1, NULL);
        rep->members++;
    } else if (!strcmp(rec, "acl")) {
        WANT(4);
        if (!set_has(done, f[1]))
            return AUTH_OK;
        r = run(db,
                "INSERT INTO acl (owner, mailbox, ident, rights) SELECT id, ?2, ?3,"
                " CAST(?4 AS INTEGER) FROM accounts WHERE address = ?1",
                "tttt", f + 1, NULL);
        rep->acls++;
    } else if (!strcmp(rec, "share")) {
        WANT(3);
        if (!set_has(done, f[1]))
            return AUTH_OK;
        r = run(db,
                "INSERT INTO mailbox_share (owner, mailbox, seen_shared) SELECT id, ?2,"
                " CAST(?3 AS INTEGER) FROM accounts WHERE address = ?1",
                "ttt", f + 1, NULL);
        rep->shares++;
    } else {
        snprintf(err, errlen, "unknown record '%s'", rec);
        return AUTH_E_BADADDR;
    }
#undef WANT
    if (r == DB_CONSTRAINT) {
        snprintf(err, errlen, "%s %s: refused by the database (duplicate or bad value)", rec,
                 n > 1 ? f[1] : "");
        return AUTH_E_BADADDR;
    }
    return r == DB_OK ? AUTH_OK : AUTH_E_TEMP;
}

int auth_load(struct auth_db *db, FILE *in,
              void (*refused)(void *arg, const char *address, const char *why), void *arg,
              struct auth_load_report *rep, char *err, size_t errlen)
{
    struct addr_set done = {0};
    char *line = malloc(LINE_MAX_BYTES), *f[FIELDS_MAX];
    unsigned long lineno = 0;
    bool ended = false, header = false;
    int rc = AUTH_OK, n;

    memset(rep, 0, sizeof(*rep));
    err[0] = '\0';
    if (!line)
        return AUTH_E_TEMP;
    if (adb_begin(db) != DB_OK) {
        free(line);
        snprintf(err, errlen, "cannot begin a transaction");
        return AUTH_E_TEMP;
    }
    while (rc == AUTH_OK && fgets(line, LINE_MAX_BYTES, in)) {
        size_t len = strlen(line);

        lineno++;
        if (len == 0 || line[len - 1] != '\n') {
            snprintf(err, errlen, "line %lu: too long or not ended", lineno);
            rc = AUTH_E_BADADDR;
            break;
        }
        line[len - 1] = '\0';
        if (ended) {
            snprintf(err, errlen, "line %lu: after the end record", lineno);
            rc = AUTH_E_BADADDR;
            break;
        }
        n = split(line, f);
        if (n < 1) {
            snprintf(err, errlen, "line %lu: bad escape or too many fields", lineno);
            rc = AUTH_E_BADADDR;
            break;
        }
        if (!header) {
            if (n != 2 || strcmp(f[0], DUMP_MAGIC) != 0 || strcmp(f[1], DUMP_VERSION) != 0) {
                snprintf(err, errlen, "not a coffre accounts export (version " DUMP_VERSION ")");
                rc = AUTH_E_BADADDR;
            }
            header = true;
            continue;
        }
        if (!strcmp(f[0], "end")) {
            ended = true;
            continue;
        }
        char sub[200];
        rc = load_line(db, f, n, &done, refused, arg, rep, sub, sizeof(sub));
        if (rc != AUTH_OK)
            snprintf(err, errlen, "line %lu: %s", lineno, sub[0] ? sub : "database error");
    }
    if (rc == AUTH_OK && ferror(in)) {
        snprintf(err, errlen, "read error");
        rc = AUTH_E_TEMP;
    }
    if (rc == AUTH_OK && !ended) {
        snprintf(err, errlen, "no end record: the file is truncated; nothing imported");
        rc = AUTH_E_BADADDR;
    }
    /* PostgreSQL's sequences do not follow ids inserted explicitly */
    if (rc == AUTH_OK && db->backend == AUTH_BACKEND_POSTGRESQL &&
        adb_exec(db, "SELECT setval(pg_get_serial_sequence('accounts', 'id'),"
                     " (SELECT max(id) FROM accounts)) WHERE EXISTS (SELECT 1 FROM accounts)") !=
            DB_OK) {
        snprintf(err, errlen, "cannot move the account id sequence");
        rc = AUTH_E_TEMP;
    }
    if (rc == AUTH_OK && adb_commit(db) != DB_OK) {
        snprintf(err, errlen, "commit failed");
        rc = AUTH_E_TEMP;
    }
    if (rc != AUTH_OK)
        adb_rollback(db);
    set_free(&done);
    free(line);
    return rc;
}
