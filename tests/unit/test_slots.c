/* Unit tests of the slots of the account directory (auth/slots.c): slots
 * added, replaced, listed and removed (refused while an account lives on
 * one or moves to it), an account's slot and move target read back by
 * auth_user_get and auth_user_list, the columns added to an older
 * database, and auth_db_configure's accounts file outside the data
 * directory. */
#include "auth/auth.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"

static char tmpdir[256];

struct names {
    char v[8][200];
    int n;
};

static int on_slot(const struct auth_slot *s, void *arg)
{
    struct names *l = arg;

    if (l->n < 8)
        snprintf(l->v[l->n++], sizeof(l->v[0]), "%s:%u", s->name, s->imap_port);
    return 0;
}

static int on_account(const struct auth_account *a, void *arg)
{
    struct names *l = arg;

    if (l->n < 8)
        snprintf(l->v[l->n++], sizeof(l->v[0]), "%.20s=%s>%s", a->address, a->slot, a->move_to);
    return 0;
}

/* The slot API on an open directory (either backend). */
static void test_slots(struct auth_db *db)
{
    struct auth_slot s, g;
    struct auth_account a;
    struct names l;

    memset(&s, 0, sizeof(s));
    snprintf(s.name, sizeof(s.name), "s1");
    snprintf(s.host, sizeof(s.host), "127.0.0.11");
    s.imap_port = 10143;
    s.pop3_port = 10110;
    s.lmtp_port = 10024;
    CHECK(auth_slot_get(db, "s1", &g) == AUTH_E_NOUSER, "slot: unknown before it is added");
    CHECK(auth_slot_set(db, &s) == AUTH_OK, "slot: s1 added");
    CHECK(auth_slot_get(db, "s1", &g) == AUTH_OK && !strcmp(g.host, "127.0.0.11") &&
              g.imap_port == 10143 && g.pop3_port == 10110 && g.lmtp_port == 10024 &&
              g.data_dir[0] == '\0',
          "slot: s1 read back");
    s.imap_port = 20143;
    snprintf(s.data_dir, sizeof(s.data_dir), "/srv/coffre/s1");
    CHECK(auth_slot_set(db, &s) == AUTH_OK && auth_slot_get(db, "s1", &g) == AUTH_OK &&
              g.imap_port == 20143 && !strcmp(g.data_dir, "/srv/coffre/s1"),
          "slot: set again replaces");
    snprintf(s.name, sizeof(s.name), "s0");
    snprintf(s.host, sizeof(s.host), "::1");
    CHECK(auth_slot_set(db, &s) == AUTH_OK, "slot: s0 on an IPv6 address");
    snprintf(s.host, sizeof(s.host), "slot.example.org");
    CHECK(auth_slot_set(db, &s) == AUTH_E_BADADDR, "slot: a host name refused (nginx needs an IP)");
    snprintf(s.host, sizeof(s.host), "127.0.0.1");
    snprintf(s.name, sizeof(s.name), "bad name");
    CHECK(auth_slot_set(db, &s) == AUTH_E_BADADDR, "slot: a name with a space refused");
    memset(&l, 0, sizeof(l));
    CHECK(auth_slot_list(db, on_slot, &l) == AUTH_OK && l.n == 2 && !strcmp(l.v[0], "s0:20143") &&
              !strcmp(l.v[1], "s1:20143"),
          "slot: list in name order");

    CHECK(auth_user_add(db, "a@example.org", "password one", 0, 0, &a) == AUTH_OK &&
              a.slot[0] == '\0' && a.move_to[0] == '\0',
          "account: no slot when added");
    CHECK(auth_user_add(db, "b@example.org", "password two", 0, 0, NULL) == AUTH_OK, "account b");
    CHECK(auth_user_set_slot(db, "a@example.org", "s1") == AUTH_OK &&
              auth_user_get(db, "a@example.org", &a) == AUTH_OK && !strcmp(a.slot, "s1"),
          "account: slot set and read back");
    CHECK(auth_user_set_slot(db, "nobody@example.org", "s1") == AUTH_E_NOUSER,
          "account: slot of an unknown address");
    CHECK(auth_user_set_slot(db, "a@example.org", "s/1") == AUTH_E_BADADDR,
          "account: a bad slot name refused");
    CHECK(auth_user_set_move(db, "b@example.org", "s0") == AUTH_OK &&
              auth_user_get(db, "b@example.org", &a) == AUTH_OK && !strcmp(a.move_to, "s0") &&
              a.slot[0] == '\0',
          "account: move target set");
    memset(&l, 0, sizeof(l));
    CHECK(auth_user_list(db, on_account, &l) == AUTH_OK && l.n == 2 &&
              !strcmp(l.v[0], "a@example.org=s1>") && !strcmp(l.v[1], "b@example.org=>s0"),
          "account: list gives slot and move target");

    CHECK(auth_slot_del(db, "s1") == AUTH_E_EXISTS,
          "slot del: refused while an account lives on it");
    CHECK(auth_slot_del(db, "s0") == AUTH_E_EXISTS, "slot del: refused while one moves to it");
    CHECK(auth_slot_del(db, "s9") == AUTH_E_NOUSER, "slot del: unknown slot");
    CHECK(auth_user_set_move(db, "b@example.org", "") == AUTH_OK &&
              auth_user_get(db, "b@example.org", &a) == AUTH_OK && a.move_to[0] == '\0',
          "account: move target cleared");
    CHECK(auth_slot_del(db, "s0") == AUTH_OK && auth_slot_get(db, "s0", NULL) == AUTH_E_NOUSER,
          "slot del: removed once no account uses it");
    CHECK(auth_user_del(db, "a@example.org", NULL) == AUTH_OK &&
              auth_user_del(db, "b@example.org", NULL) == AUTH_OK &&
              auth_slot_del(db, "s1") == AUTH_OK,
          "slot del: after its accounts are gone");
}

/* A database made before the slot columns gets them at open. */
static void test_upgrade(void)
{
    char dir[512], path[600], err[256];
    struct auth_account a;
    struct auth_db *db = NULL;
    sqlite3 *h;

    snprintf(dir, sizeof(dir), "%s/old", tmpdir);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/accounts.sqlite", dir);
    CHECK(sqlite3_open(path, &h) == SQLITE_OK &&
              sqlite3_exec(h,
                           "CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                           " address TEXT UNIQUE NOT NULL COLLATE NOCASE, hash TEXT NOT NULL,"
                           " disabled INTEGER NOT NULL DEFAULT 0, quota INTEGER NOT NULL DEFAULT"
                           " 0, created INTEGER NOT NULL);"
                           "INSERT INTO accounts (address, hash, created) VALUES"
                           " ('old@example.org', 'x', 1)",
                           NULL, NULL, NULL) == SQLITE_OK,
          "an old database");
    sqlite3_close(h);
    CHECK(auth_db_open(dir, &db, err, sizeof(err)) == AUTH_OK, "old database opened");
    CHECK(db && auth_user_get(db, "old@example.org", &a) == AUTH_OK && a.slot[0] == '\0' &&
              auth_user_set_slot(db, "old@example.org", "s2") == AUTH_OK &&
              auth_user_get(db, "old@example.org", &a) == AUTH_OK && !strcmp(a.slot, "s2"),
          "slot column added to an old database");
    auth_db_close(db);
    db = NULL;
    CHECK(auth_db_open(dir, &db, err, sizeof(err)) == AUTH_OK &&
              auth_user_get(db, "old@example.org", &a) == AUTH_OK && !strcmp(a.slot, "s2"),
          "opened again: nothing added twice");
    auth_db_close(db);
}

/* accounts_dsn with sqlite: the configured data directory's accounts live
 * in that file; another directory (a backup's) keeps its own. */
static void test_configure(void)
{
    char home[512], other[512], file[600], p[700], err[256];
    struct auth_db *db = NULL;
    struct stat st;

    snprintf(home, sizeof(home), "%s/home", tmpdir);
    snprintf(other, sizeof(other), "%s/other", tmpdir);
    snprintf(file, sizeof(file), "%s/shared.sqlite", tmpdir);
    mkdir(home, 0700);
    mkdir(other, 0700);
    CHECK(auth_db_configure("ldap", "", home, err, sizeof(err)) != AUTH_OK,
          "configure: unknown backend refused");
    CHECK(auth_db_configure("sqlite", "relative.sqlite", home, err, sizeof(err)) != AUTH_OK,
          "configure: a relative sqlite path refused");
    CHECK(auth_db_configure("postgresql", "", home, err, sizeof(err)) != AUTH_OK,
          "configure: postgresql without a connection string refused");
    CHECK(auth_db_configure("sqlite", file, home, err, sizeof(err)) == AUTH_OK,
          "configure: sqlite file outside the data directory");
    CHECK(auth_db_open(home, &db, err, sizeof(err)) == AUTH_OK &&
              auth_user_add(db, "c@example.org", "password three", 0, 0, NULL) == AUTH_OK,
          "configure: account added through the data directory");
    auth_db_close(db);
    snprintf(p, sizeof(p), "%s/accounts.sqlite", home);
    CHECK(stat(file, &st) == 0 && stat(p, &st) != 0, "configure: it went to the configured file");
    db = NULL;
    CHECK(auth_db_open(other, &db, err, sizeof(err)) == AUTH_OK &&
              auth_user_get(db, "c@example.org", NULL) == AUTH_E_NOUSER,
          "configure: another directory keeps its own accounts");
    auth_db_close(db);
    auth_db_configure("sqlite", "", "", err, sizeof(err));
}

int main(void)
{
    char err[256];
    struct auth_db *db = NULL;

    if (check_mkdtemp(tmpdir, sizeof(tmpdir), "coffre-test-slots") != 0)
        return 1;
    if (auth_db_open(tmpdir, &db, err, sizeof(err)) != AUTH_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    test_slots(db);
    auth_db_close(db);
    test_upgrade();
    test_configure();
    check_rmtree(tmpdir);
    return check_summary();
}
