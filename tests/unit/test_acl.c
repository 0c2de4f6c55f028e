/* Unit tests of access control lists (auth/acl.c): rights strings (every
 * letter, the obsolete "c" and "d" of RFC 4314 section 2.1.1, the +/-
 * modes, refusals), identifiers, the tables in a temporary accounts
 * database (set, change, delete, owner refused, unknown address or group,
 * acl_max_entries, rename and drop of a tree where "a" never takes "ab"
 * along, inherit, seen setting, groups, the account's removal), and the
 * snapshot: effective rights (owner, user, anyone, groups, negative
 * entries), entries in order, owners and mailboxes of the shared
 * namespace, and lookups among thousands of accounts and entries. */
#include "auth/acl.h"
#include "auth/auth.h"
#include "auth/auth_priv.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/unit/check.h"

static char tmpdir[256];

static void test_rights(void)
{
    unsigned r;
    char mode, out[ACL_RIGHTS_MAX];

    for (size_t i = 0; i < strlen(ACL_RIGHTS_CHARS); i++) {
        char one[2] = {ACL_RIGHTS_CHARS[i], 0};
        CHECK(acl_rights_parse(one, 1, &r, &mode) == 0 && r == 1u << i && mode == '=');
        acl_rights_format(r, out);
        CHECK(!strcmp(out, one));
    }
    CHECK(acl_rights_parse("lrswipkxtea", 11, &r, &mode) == 0 && r == ACL_ALL,
          "rights: all eleven letters");
    acl_rights_format(ACL_ALL, out);
    CHECK(!strcmp(out, ACL_RIGHTS_CHARS), "rights: formatted in order");
    CHECK(acl_rights_parse("aerl", 4, &r, &mode) == 0 &&
              r == (ACL_ADMIN | ACL_EXPUNGE | ACL_READ | ACL_LOOKUP),
          "rights: any order");
    acl_rights_format(r, out);
    CHECK(!strcmp(out, "lrea"), "rights: formatted in bit order");
    CHECK(acl_rights_parse("c", 1, &r, &mode) == 0 && r == (ACL_CREATE | ACL_DELETE),
          "obsolete c: k and x");
    CHECK(acl_rights_parse("d", 1, &r, &mode) == 0 && r == (ACL_DELMSG | ACL_EXPUNGE),
          "obsolete d: t and e");
    CHECK(acl_rights_parse("lrswicda", 8, &r, &mode) == 0, "RFC 4314 example: +cda parses");
    acl_rights_format(r, out);
    CHECK(!strcmp(out, "lrswikxtea"), "lrswicda is lrswikxtea");
    acl_rights_format_virtual(ACL_CREATE, out);
    CHECK(!strcmp(out, "kc"), "virtual: c after k alone");
    acl_rights_format_virtual(ACL_EXPUNGE, out);
    CHECK(!strcmp(out, "ed"), "virtual: d after e alone");
    acl_rights_format_virtual(ACL_ALL, out);
    CHECK(!strcmp(out, "lrswipkxteacd") && strlen(out) < ACL_RIGHTS_MAX, "virtual: all");
    acl_rights_format_virtual(ACL_LOOKUP | ACL_READ, out);
    CHECK(!strcmp(out, "lr"), "virtual: none without their members");
    CHECK(acl_rights_parse("+lr", 3, &r, &mode) == 0 && mode == '+' && r == (ACL_LOOKUP | ACL_READ),
          "mode +");
    CHECK(acl_rights_parse("-w", 2, &r, &mode) == 0 && mode == '-' && r == ACL_WRITE, "mode -");
    CHECK(acl_rights_parse("", 0, &r, &mode) == 0 && mode == '=' && r == 0, "empty: none");
    CHECK(acl_rights_parse("+", 1, &r, &mode) == 0 && mode == '+' && r == 0, "+ alone");
    CHECK(acl_rights_parse("lrQ", 3, &r, &mode) == ACL_E_BADRIGHTS, "upper case refused");
    CHECK(acl_rights_parse("lrq", 3, &r, &mode) == ACL_E_BADRIGHTS, "unknown letter refused");
    CHECK(acl_rights_parse("l0", 2, &r, &mode) == ACL_E_BADRIGHTS, "RFC 2086 digits refused");
    CHECK(acl_rights_parse("l+r", 3, &r, &mode) == ACL_E_BADRIGHTS, "sign inside refused");
    CHECK(acl_rights_parse("l\0r", 3, &r, &mode) == ACL_E_BADRIGHTS, "NUL refused");
    CHECK(acl_rights_parse("++l", 3, &r, &mode) == ACL_E_BADRIGHTS, "two signs refused");
}

static void test_idents(void)
{
    char out[ACL_IDENT_MAX], big[400];

#define ID(in, want)                                                                               \
    CHECK(acl_ident_normalize(in, strlen(in), "example.com", out) == 0 && !strcmp(out, want),      \
          "ident " in " -> " want)
    ID("Bob@Example.COM", "bob@example.com");
    ID("bob", "bob@example.com");
    ID("-bob", "-bob@example.com");
    ID("anyone", "anyone");
    ID("ANYONE", "anyone");
    ID("-anyone", "-anyone");
    ID("$Team.Sales", "$team.sales");
    ID("-$team", "-$team");
#undef ID
    CHECK(acl_ident_normalize("", 0, "example.com", out) == ACL_E_BADIDENT, "ident: empty");
    CHECK(acl_ident_normalize("-", 1, "example.com", out) == ACL_E_BADIDENT, "ident: - alone");
    CHECK(acl_ident_normalize("$", 1, "example.com", out) == ACL_E_BADIDENT, "ident: $ alone");
    CHECK(acl_ident_normalize("$a b", 4, "example.com", out) == ACL_E_BADIDENT,
          "ident: group with a space");
    CHECK(acl_ident_normalize("$a@b", 4, "example.com", out) == ACL_E_BADIDENT,
          "ident: group with @");
    CHECK(acl_ident_normalize("bob", 3, "", out) == ACL_E_BADIDENT,
          "ident: no domain and no default");
    CHECK(acl_ident_normalize("a/b@x.org", 9, "", out) == ACL_E_BADIDENT, "ident: '/' refused");
    CHECK(acl_ident_normalize("bob\0@x.org", 10, "", out) == ACL_E_BADIDENT, "ident: NUL");
    memset(big, 'g', sizeof(big));
    big[0] = '$';
    CHECK(acl_ident_normalize(big, ACL_GROUP_MAX + 1, "", out) == 0, "ident: longest group");
    CHECK(acl_ident_normalize(big, ACL_GROUP_MAX + 2, "", out) == ACL_E_BADIDENT,
          "ident: group too long");
    memset(big, 'a', sizeof(big));
    memcpy(big + 300, "@x.org", 6);
    CHECK(acl_ident_normalize(big + 100, 206, "", out) == ACL_E_BADIDENT,
          "ident: address too long");
}

static int64_t add_user(struct auth_db *db, const char *address)
{
    struct auth_account a;

    if (auth_user_add(db, address, "a long password", 0, 0, &a) != AUTH_OK)
        return 0;
    return a.id;
}

struct collect {
    char text[4096];
};

static void on_entry(void *arg, const char *ident, unsigned rights)
{
    struct collect *c = arg;
    char r[ACL_RIGHTS_MAX];
    size_t n = strlen(c->text);

    acl_rights_format(rights, r);
    snprintf(c->text + n, sizeof(c->text) - n, "%s%s=%s", n ? " " : "", ident, r);
}

static void on_owner(void *arg, int64_t owner, const char *address)
{
    struct collect *c = arg;
    size_t n = strlen(c->text);

    (void)owner;
    snprintf(c->text + n, sizeof(c->text) - n, "%s%s", n ? " " : "", address);
}

static void on_mailbox(void *arg, const char *mailbox, unsigned rights)
{
    on_entry(arg, mailbox, rights);
}

static const char *entries(struct auth_db *db, int64_t owner, const char *mailbox)
{
    static struct collect c;
    struct acl_snap *s;

    c.text[0] = '\0';
    if (acl_snap_load(db, &s) != AUTH_OK)
        return "(load failed)";
    acl_snap_entries(s, owner, mailbox, on_entry, &c);
    acl_snap_unref(s);
    return c.text;
}

static unsigned rights_of(struct auth_db *db, int64_t owner, const char *mailbox, int64_t user)
{
    struct acl_snap *s;
    unsigned r;

    if (acl_snap_load(db, &s) != AUTH_OK)
        return 0xdead;
    r = acl_snap_rights(s, owner, mailbox, user, NULL);
    acl_snap_unref(s);
    return r;
}

static int on_group(void *arg, const char *group, const char *address)
{
    struct collect *c = arg;
    size_t n = strlen(c->text);

    snprintf(c->text + n, sizeof(c->text) - n, "%s%s:%s", n ? " " : "", group, address);
    return 0;
}

static void test_db(void)
{
    struct auth_db *db;
    char err[256];
    struct collect c;
    int64_t alice, bob, carol, dave;

    if (auth_db_open(tmpdir, &db, err, sizeof(err)) != AUTH_OK) {
        CHECK(false, "db: open");
        return;
    }
    CHECK(acl_db_init(db) == AUTH_OK, "db: tables made again (idempotent)");
    alice = add_user(db, "alice@example.com");
    bob = add_user(db, "bob@example.com");
    carol = add_user(db, "carol@example.com");
    dave = add_user(db, "dave@example.com");
    CHECK(alice && bob && carol && dave, "db: four accounts");

    /* set, change, replace, delete */
    CHECK(acl_db_set(db, alice, "support", "bob@example.com", ACL_LOOKUP | ACL_READ, '=') ==
              AUTH_OK,
          "set: bob lr");
    CHECK(!strcmp(entries(db, alice, "support"), "bob@example.com=lr"), "set: read back");
    CHECK(acl_db_set(db, alice, "support", "bob@example.com", ACL_SEEN | ACL_WRITE, '+') == AUTH_OK,
          "set: +sw");
    CHECK(!strcmp(entries(db, alice, "support"), "bob@example.com=lrsw"), "set: added");
    CHECK(acl_db_set(db, alice, "support", "bob@example.com", ACL_READ, '-') == AUTH_OK &&
              !strcmp(entries(db, alice, "support"), "bob@example.com=lsw"),
          "set: -r");
    CHECK(acl_db_set(db, alice, "support", "bob@example.com", ACL_INSERT, '=') == AUTH_OK &&
              !strcmp(entries(db, alice, "support"), "bob@example.com=i"),
          "set: = replaces");
    CHECK(acl_db_set(db, alice, "support", "bob@example.com", ACL_INSERT, '-') == AUTH_OK &&
              !strcmp(entries(db, alice, "support"), ""),
          "set: an entry left with nothing goes");
    CHECK(acl_db_set(db, alice, "support", "bob@example.com", ACL_INSERT, '-') == AUTH_OK &&
              !strcmp(entries(db, alice, "support"), ""),
          "set: - on nothing stays nothing");
    CHECK(acl_db_set(db, alice, "support", "alice@example.com", ACL_READ, '=') == ACL_E_OWNER,
          "set: owner refused");
    CHECK(acl_db_set(db, alice, "support", "-alice@example.com", ACL_READ, '=') == ACL_E_OWNER,
          "set: owner refused, negative too");
    CHECK(acl_db_set(db, alice, "support", "nobody@example.com", ACL_READ, '=') == AUTH_E_NOUSER,
          "set: unknown address refused");
    CHECK(acl_db_set(db, alice, "support", "$nosuch", ACL_READ, '=') == ACL_E_NOGROUP,
          "set: unknown group refused");
    CHECK(acl_db_set(db, alice, "support", "Bob@example.com", ACL_READ, '=') == ACL_E_BADIDENT,
          "set: not the stored form");
    CHECK(acl_db_set(db, 999999, "support", "bob@example.com", ACL_READ, '=') == AUTH_E_NOUSER,
          "set: unknown owner");
    CHECK(acl_db_set(db, alice, "a//b", "bob@example.com", ACL_READ, '=') == ACL_E_BADNAME &&
              acl_db_set(db, alice, "", "bob@example.com", ACL_READ, '=') == ACL_E_BADNAME &&
              acl_db_set(db, alice, "a\nb", "bob@example.com", ACL_READ, '=') == ACL_E_BADNAME,
          "set: bad names refused");
    CHECK(acl_db_set(db, alice, "inbox", "bob@example.com", ACL_READ, '=') == AUTH_OK &&
              !strcmp(entries(db, alice, "INBOX"), "bob@example.com=r") &&
              !strcmp(entries(db, alice, "Inbox"), "bob@example.com=r"),
          "set: INBOX in any case");
    CHECK(acl_db_delete(db, alice, "INBOX", "bob@example.com") == AUTH_OK &&
              !strcmp(entries(db, alice, "INBOX"), ""),
          "delete");

    /* the limit */
    acl_db_set_max_entries(db, 3);
    CHECK(acl_db_set(db, alice, "lim", "bob@example.com", ACL_READ, '=') == AUTH_OK &&
              acl_db_set(db, alice, "lim", "carol@example.com", ACL_READ, '=') == AUTH_OK &&
              acl_db_set(db, alice, "lim", "anyone", ACL_LOOKUP, '=') == AUTH_OK,
          "limit: three entries");
    CHECK(acl_db_set(db, alice, "lim", "dave@example.com", ACL_READ, '=') == ACL_E_LIMIT,
          "limit: the fourth refused");
    CHECK(acl_db_set(db, alice, "lim", "bob@example.com", ACL_WRITE, '+') == AUTH_OK,
          "limit: an existing entry still changes");
    CHECK(acl_db_set(db, alice, "other", "dave@example.com", ACL_READ, '=') == AUTH_OK,
          "limit: per mailbox");
    acl_db_set_max_entries(db, ACL_MAX_ENTRIES_DEFAULT);

    /* groups */
    c.text[0] = '\0';
    CHECK(acl_group_add(db, "Sales") == AUTH_OK, "group: add");
    CHECK(acl_group_add(db, "sales") == AUTH_E_EXISTS, "group: add twice");
    CHECK(acl_group_add(db, "bad name") == ACL_E_BADIDENT, "group: bad name");
    CHECK(acl_group_add(db, "empty") == AUTH_OK, "group: another");
    CHECK(acl_group_member(db, "sales", "carol@example.com", true) == AUTH_OK &&
              acl_group_member(db, "sales", "dave@example.com", true) == AUTH_OK,
          "group: members added");
    CHECK(acl_group_member(db, "sales", "carol@example.com", true) == AUTH_E_EXISTS,
          "group: member twice");
    CHECK(acl_group_member(db, "sales", "nobody@example.com", true) == AUTH_E_NOUSER,
          "group: unknown address");
    CHECK(acl_group_member(db, "nosuch", "carol@example.com", true) == ACL_E_NOGROUP,
          "group: unknown group");
    CHECK(acl_group_member(db, "empty", "carol@example.com", false) == AUTH_E_NOUSER,
          "group: del of a non-member");
    CHECK(acl_group_list(db, NULL, on_group, &c) == AUTH_OK &&
              !strcmp(c.text, "empty: sales:carol@example.com sales:dave@example.com"),
          "group: list");
    c.text[0] = '\0';
    CHECK(acl_group_list(db, "nosuch", on_group, &c) == ACL_E_NOGROUP, "group: list unknown");

    /* effective rights */
    CHECK(acl_db_set(db, alice, "team", "$sales", ACL_LOOKUP | ACL_READ | ACL_INSERT, '=') ==
              AUTH_OK,
          "rights: $sales lri");
    CHECK(acl_db_set(db, alice, "team", "anyone", ACL_LOOKUP, '=') == AUTH_OK, "rights: anyone l");
    CHECK(acl_db_set(db, alice, "team", "-dave@example.com", ACL_INSERT, '=') == AUTH_OK,
          "rights: -dave i");
    CHECK(acl_db_set(db, alice, "team", "bob@example.com", ACL_SEEN, '=') == AUTH_OK,
          "rights: bob s");
    CHECK(rights_of(db, alice, "team", alice) == ACL_ALL, "rights: the owner has all");
    CHECK(rights_of(db, alice, "team", bob) == (ACL_LOOKUP | ACL_SEEN),
          "rights: bob: anyone + own");
    CHECK(rights_of(db, alice, "team", carol) == (ACL_LOOKUP | ACL_READ | ACL_INSERT),
          "rights: carol through $sales");
    CHECK(rights_of(db, alice, "team", dave) == (ACL_LOOKUP | ACL_READ),
          "rights: dave: the group's minus his negative entry");
    CHECK(rights_of(db, alice, "team", 0) == ACL_LOOKUP, "rights: nobody gets anyone's");
    CHECK(rights_of(db, alice, "nothere", bob) == 0, "rights: a mailbox without entries");
    CHECK(rights_of(db, bob, "team", alice) == 0, "rights: another owner's same name");
    CHECK(acl_db_set(db, alice, "team", "-$sales", ACL_LOOKUP, '=') == AUTH_OK &&
              rights_of(db, alice, "team", carol) == (ACL_READ | ACL_INSERT),
          "rights: a negative group entry takes anyone's l away");
    CHECK(!strcmp(entries(db, alice, "team"), "$sales=lri -$sales=l -dave@example.com=i "
                                              "anyone=l bob@example.com=s"),
          "entries: in identifier order");

    /* the shared namespace */
    {
        struct acl_snap *s;
        CHECK(acl_snap_load(db, &s) == AUTH_OK, "snapshot: load");
        c.text[0] = '\0';
        acl_snap_owners(s, bob, "bob@example.com", on_owner, &c);
        CHECK(!strcmp(c.text, "alice@example.com"), "owners: bob sees alice");
        c.text[0] = '\0';
        acl_snap_mailboxes(s, alice, bob, "bob@example.com", on_mailbox, &c);
        CHECK(!strcmp(c.text, "lim=lrw team=ls"), "mailboxes: bob's view of alice's");
        c.text[0] = '\0';
        acl_snap_mailboxes(s, alice, carol, "carol@example.com", on_mailbox, &c);
        CHECK(!strcmp(c.text, "lim=lr team=ri"), "mailboxes: carol's, through her group");
        c.text[0] = '\0';
        acl_snap_owners(s, alice, "alice@example.com", on_owner, &c);
        CHECK(!strcmp(c.text, ""), "owners: not oneself");
        CHECK(acl_snap_owner_id(s, "alice@example.com") == alice &&
                  acl_snap_owner_id(s, "ALICE@example.com") == 0 &&
                  acl_snap_owner_id(s, "carol@example.com") == 0,
              "owner id: byte for byte, owners only");
        acl_snap_unref(s);
    }

    /* removing a group takes its entries along */
    CHECK(acl_group_del(db, "sales") == AUTH_OK &&
              rights_of(db, alice, "team", carol) == ACL_LOOKUP,
          "group del: its entries go");
    CHECK(!strcmp(entries(db, alice, "team"), "-dave@example.com=i anyone=l bob@example.com=s"),
          "group del: positive and negative entries");
    CHECK(acl_group_del(db, "sales") == ACL_E_NOGROUP, "group del: twice");

    /* rename, drop and inherit of trees */
    acl_db_set(db, alice, "a", "bob@example.com", ACL_READ, '=');
    acl_db_set(db, alice, "a/x", "bob@example.com", ACL_WRITE, '=');
    acl_db_set(db, alice, "ab", "bob@example.com", ACL_INSERT, '=');
    acl_db_set(db, alice, "ab/y", "bob@example.com", ACL_POST, '=');
    acl_db_set_seen_shared(db, alice, "a/x", true);
    CHECK(acl_db_rename(db, alice, "a", "c") == AUTH_OK, "rename: a to c");
    CHECK(rights_of(db, alice, "c", bob) == ACL_READ &&
              rights_of(db, alice, "c/x", bob) == ACL_WRITE,
          "rename: a and a/x moved");
    CHECK(rights_of(db, alice, "a", bob) == 0 && rights_of(db, alice, "a/x", bob) == 0,
          "rename: nothing left under a");
    CHECK(rights_of(db, alice, "ab", bob) == ACL_INSERT &&
              rights_of(db, alice, "ab/y", bob) == ACL_POST,
          "rename: ab is not a child of a");
    {
        struct acl_snap *s;
        acl_snap_load(db, &s);
        CHECK(acl_snap_seen_shared(s, alice, "c/x") && !acl_snap_seen_shared(s, alice, "a/x"),
              "rename: the seen setting moved");
        acl_snap_unref(s);
    }
    CHECK(acl_db_rename(db, alice, "c", "c/in") == AUTH_OK &&
              rights_of(db, alice, "c/in", bob) == ACL_READ &&
              rights_of(db, alice, "c/in/x", bob) == ACL_WRITE &&
              rights_of(db, alice, "c", bob) == 0,
          "rename: into its own tree");
    acl_db_set(db, alice, "INBOX", "carol@example.com", ACL_READ, '=');
    acl_db_set(db, alice, "INBOX/kid", "carol@example.com", ACL_WRITE, '=');
    CHECK(acl_db_rename(db, alice, "INBOX", "old") == AUTH_OK &&
              rights_of(db, alice, "old", carol) == ACL_READ &&
              rights_of(db, alice, "INBOX", carol) == ACL_READ &&
              rights_of(db, alice, "INBOX/kid", carol) == ACL_WRITE &&
              rights_of(db, alice, "old/kid", carol) == 0,
          "rename INBOX: a copy for the new one, INBOX and its children stay");
    CHECK(acl_db_drop(db, alice, "ab") == AUTH_OK && rights_of(db, alice, "ab", bob) == 0 &&
              rights_of(db, alice, "ab/y", bob) == 0 &&
              rights_of(db, alice, "c/in", bob) == ACL_READ,
          "drop: ab and its children, nothing else");
    acl_db_set(db, alice, "a", "bob@example.com", ACL_READ, '=');
    CHECK(acl_db_drop(db, alice, "a") == AUTH_OK && rights_of(db, alice, "c/in", bob) == ACL_READ,
          "drop: a leaves c alone");
    CHECK(acl_db_inherit(db, alice, "c/in", "c/in/new") == AUTH_OK &&
              !strcmp(entries(db, alice, "c/in/new"), "bob@example.com=r"),
          "inherit: the parent's entries copied");
    CHECK(acl_db_inherit(db, alice, "none", "c/in/new") == AUTH_OK &&
              !strcmp(entries(db, alice, "c/in/new"), ""),
          "inherit: from a parent without entries, none");

    /* an account goes */
    acl_db_set(db, bob, "bobs", "alice@example.com", ACL_READ, '=');
    acl_db_set(db, bob, "bobs", "carol@example.com", ACL_READ, '=');
    acl_group_member(db, "empty", "bob@example.com", true);
    CHECK(auth_user_del(db, "bob@example.com", NULL) == AUTH_OK, "forget: user del");
    {
        sqlite3 *h = auth_db_handle(db);
        sqlite3_stmt *st;
        int n = -1;
        sqlite3_prepare_v2(h,
                           "SELECT (SELECT count(*) FROM acl WHERE owner = ?1 OR ident IN"
                           " ('bob@example.com', '-bob@example.com')) + (SELECT count(*)"
                           " FROM acl_member WHERE account = ?1) + (SELECT count(*) FROM"
                           " mailbox_share WHERE owner = ?1)",
                           -1, &st, NULL);
        sqlite3_bind_int64(st, 1, bob);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        CHECK(n == 0, "forget: no row of or naming bob left");
    }
    int64_t newbob = add_user(db, "bob@example.com");
    CHECK(newbob != 0 && newbob != bob && rights_of(db, alice, "team", newbob) == ACL_LOOKUP,
          "forget: a new bob has anyone's rights, not the old bob's");
    auth_db_close(db);
}

/* Thousands of accounts, groups and shared mailboxes, inserted directly:
 * every lookup agrees with a walk of the table made in the test. */
static void test_snapshot_big(void)
{
    enum { USERS = 3000, GROUPS = 50, MBOXES = 4 };
    struct auth_db *db;
    char err[256], dir[300];
    sqlite3 *h;
    struct acl_snap *s;
    bool ok = true;

    snprintf(dir, sizeof(dir), "%s/big", tmpdir);
    if (mkdir(dir, 0700) != 0 || auth_db_open(dir, &db, err, sizeof(err)) != AUTH_OK) {
        CHECK(false, "big: open");
        return;
    }
    h = auth_db_handle(db);
    sqlite3_exec(h, "BEGIN", NULL, NULL, NULL);
    for (int u = 1; u <= USERS; u++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO accounts (id, address, hash, created) VALUES (%d, 'u%05d@x.org',"
                 " 'x', 0)",
                 u, u);
        sqlite3_exec(h, sql, NULL, NULL, NULL);
    }
    for (int g = 1; g <= GROUPS; g++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "INSERT INTO acl_group (id, name) VALUES (%d, 'g%d')", g, g);
        sqlite3_exec(h, sql, NULL, NULL, NULL);
    }
    /* user u is in group u % GROUPS + 1 */
    for (int u = 1; u <= USERS; u++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "INSERT INTO acl_member VALUES (%d, %d)", u % GROUPS + 1, u);
        sqlite3_exec(h, sql, NULL, NULL, NULL);
    }
    /* owner o shares box k with user (o * 7 + k) % USERS + 1 (lr), with
     * group (o + k) % GROUPS + 1 (i), and takes w from its next user */
    for (int o = 1; o <= USERS; o++) {
        for (int k = 0; k < MBOXES; k++) {
            char sql[512];
            int u = (o * 7 + k) % USERS + 1, g = (o + k) % GROUPS + 1, v = u % USERS + 1;
            snprintf(sql, sizeof(sql),
                     "INSERT OR IGNORE INTO acl VALUES (%d, 'box%d', 'u%05d@x.org', %u);"
                     "INSERT OR IGNORE INTO acl VALUES (%d, 'box%d', '$g%d', %u);"
                     "INSERT OR IGNORE INTO acl VALUES (%d, 'box%d', '-u%05d@x.org', %u);",
                     o, k, u, ACL_LOOKUP | ACL_READ | ACL_WRITE, o, k, g, ACL_INSERT, o, k, v,
                     ACL_WRITE);
            sqlite3_exec(h, sql, NULL, NULL, NULL);
        }
    }
    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    if (acl_snap_load(db, &s) != AUTH_OK) {
        CHECK(false, "big: load");
        auth_db_close(db);
        return;
    }
    size_t nm = 0, ne = acl_snap_count(s, &nm);
    CHECK(nm == (size_t)USERS * MBOXES && ne == (size_t)USERS * MBOXES * 3,
          "big: 12,000 mailboxes, 36,000 entries");
    /* the rights each user should have, computed from the rule above */
    for (int o = 1; o <= USERS && ok; o += 37) {
        for (int k = 0; k < MBOXES; k++) {
            char box[16];
            snprintf(box, sizeof(box), "box%d", k);
            for (int user = 1; user <= USERS; user++) {
                unsigned pos = 0, neg = 0;
                if (user == (o * 7 + k) % USERS + 1)
                    pos |= ACL_LOOKUP | ACL_READ | ACL_WRITE;
                if (user % GROUPS + 1 == (o + k) % GROUPS + 1)
                    pos |= ACL_INSERT;
                if (user == ((o * 7 + k) % USERS + 1) % USERS + 1)
                    neg |= ACL_WRITE;
                unsigned exp = user == o ? ACL_ALL : pos & ~neg;
                if (acl_snap_rights(s, o, box, user, NULL) != exp) {
                    printf("big: owner %d %s user %d: %x, want %x\n", o, box, user,
                           acl_snap_rights(s, o, box, user, NULL), exp);
                    ok = false;
                    break;
                }
            }
        }
    }
    CHECK(ok, "big: every user's rights on a sample of owners agree with the rule");
    /* the owners a user sees: those whose box names them with l */
    ok = true;
    for (int user = 1; user <= USERS && ok; user += 101) {
        struct collect c = {.text = ""}, w = {.text = ""};
        acl_snap_owners(s, user, NULL, on_owner, &c);
        for (int o = 1; o <= USERS; o++) {
            bool seen = false;
            for (int k = 0; k < MBOXES; k++)
                if (o != user && (o * 7 + k) % USERS + 1 == user)
                    seen = true;
            if (seen) {
                char a[32];
                snprintf(a, sizeof(a), "u%05d@x.org", o);
                on_owner(&w, o, a);
            }
        }
        if (strcmp(c.text, w.text) != 0) {
            printf("big: owners of %d: '%s', want '%s'\n", user, c.text, w.text);
            ok = false;
        }
    }
    CHECK(ok, "big: the owners each user sees, in address order");
    acl_snap_unref(s);
    auth_db_close(db);
}

/* The login service's side: a change runs on its threads and the new
 * snapshot is in place when the callback runs; a refused change leaves
 * it; a reload shows what another process wrote. */
struct change_seen {
    struct auth_service *s;
    int calls, result;
    unsigned rights_then; /* bob's rights in the service's snapshot at the callback */
    int64_t owner, user;
};

static void on_change(void *arg, int result)
{
    struct change_seen *c = arg;

    c->calls++;
    c->result = result;
    c->rights_then = acl_snap_rights(auth_service_acl(c->s), c->owner, "svc", c->user, NULL);
}

static void test_service(void)
{
    struct auth_service_opts o = {.data_dir = tmpdir, .default_domain = "example.com"};
    struct change_seen seen = {0};
    struct auth_service *s;
    struct auth_account alice, bob;
    struct auth_db *db;
    uv_loop_t loop;
    char err[256];

    if (auth_db_open(tmpdir, &db, err, sizeof(err)) != AUTH_OK ||
        auth_user_get(db, "alice@example.com", &alice) != AUTH_OK ||
        auth_user_get(db, "bob@example.com", &bob) != AUTH_OK) {
        CHECK(false, "service: accounts");
        return;
    }
    uv_loop_init(&loop);
    if (auth_service_new(&loop, &o, &s, err, sizeof(err)) != AUTH_OK) {
        CHECK(false, "service: start");
        auth_db_close(db);
        return;
    }
    seen.s = s;
    seen.owner = alice.id;
    seen.user = bob.id;
    CHECK(auth_service_acl(s) != NULL, "service: a snapshot from the start");
    CHECK(acl_snap_rights(auth_service_acl(s), alice.id, "team", bob.id, NULL) == ACL_LOOKUP,
          "service: the start's snapshot has the tables");

    struct acl_change ch = {
        .op = ACL_CH_SET, .owner = alice.id, .rights = ACL_LOOKUP | ACL_READ, .mode = '='};
    snprintf(ch.mailbox, sizeof(ch.mailbox), "svc");
    snprintf(ch.ident, sizeof(ch.ident), "bob@example.com");
    CHECK(auth_service_acl_change(s, &ch, on_change, &seen) == 0, "change: queued");
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(seen.calls == 1 && seen.result == AUTH_OK && seen.rights_then == (ACL_LOOKUP | ACL_READ),
          "change: written, the new snapshot in place before the callback");

    snprintf(ch.ident, sizeof(ch.ident), "alice@example.com");
    auth_service_acl_change(s, &ch, on_change, &seen);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(seen.calls == 2 && seen.result == ACL_E_OWNER &&
              seen.rights_then == (ACL_LOOKUP | ACL_READ),
          "change: refused, the snapshot as it was");

    /* another process (coffrectl) writes; the reload shows it */
    acl_db_set(db, alice.id, "svc", "bob@example.com", ACL_POST, '+');
    CHECK(acl_snap_rights(auth_service_acl(s), alice.id, "svc", bob.id, NULL) ==
              (ACL_LOOKUP | ACL_READ),
          "reload: not before it is asked");
    seen.calls = 0;
    CHECK(auth_service_acl_reload(s, on_change, &seen) == 0, "reload: queued");
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(acl_snap_rights(auth_service_acl(s), alice.id, "svc", bob.id, NULL) ==
              (ACL_LOOKUP | ACL_READ | ACL_POST),
          "reload: the other process's change in place");
    CHECK(seen.calls == 1 && seen.result == AUTH_OK &&
              seen.rights_then == (ACL_LOOKUP | ACL_READ | ACL_POST),
          "reload: its callback runs once the new snapshot is in place");

    /* freed with a change pending: its callback is not called; a pending
     * reload's is, with an error, so that its waiter can let go */
    struct change_seen waiter = seen;
    seen.calls = 0;
    waiter.calls = 0;
    auth_service_acl_change(s, &ch, on_change, &seen);
    auth_service_acl_reload(s, on_change, &waiter);
    auth_service_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(seen.calls == 0, "free: a pending change's callback not called");
    CHECK(waiter.calls == 1 && waiter.result == AUTH_E_TEMP,
          "free: a pending reload's callback called with an error");
    uv_loop_close(&loop);
    auth_db_close(db);
}

int main(void)
{
    if (check_mkdtemp(tmpdir, sizeof(tmpdir), "coffre-test-acl") != 0)
        return 1;
    test_rights();
    test_idents();
    test_db();
    test_service();
    test_snapshot_big();
    check_rmtree(tmpdir);
    return check_summary();
}
