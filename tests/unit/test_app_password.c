/* Unit tests of app passwords (auth/app_password.c and their login in
 * auth/service.c): the password form and generator, labels, services, the
 * table in a temporary accounts database (add, limit, label and selector
 * uniqueness, list, delete, removal with the account, the table added to
 * an older database), and logins through the login service: the label
 * returned, the cost bounded at two yescrypt computations whatever the
 * number of app passwords, the cache forgetting a deleted one, and the
 * main-password-only auth_login_start. */
#include "auth/auth.h"
#include "auth/auth_priv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"

static char tmpdir[256];

static void test_form(void)
{
    char sel[AUTH_APP_SELECTOR_LEN + 1], a[AUTH_APP_LABEL_MAX + 8], b[64];

    CHECK(auth_app_parse("ab1z-secret", 11, sel) && !strcmp(sel, "ab1z"), "form: selector read");
    CHECK(!auth_app_parse("Ab1z-secret", 11, NULL), "form: upper case selector refused");
    CHECK(!auth_app_parse("ab1z_secret", 11, NULL), "form: no dash");
    CHECK(!auth_app_parse("ab1", 3, NULL), "form: short");
    CHECK(!auth_app_parse("ab-zsecret", 10, NULL), "form: dash too early");
    CHECK(auth_app_check("ab1z-eight ch", 13) == AUTH_OK, "chosen: selector and 8 characters");
    CHECK(auth_app_check("ab1z-seven c", 12) == AUTH_E_WEAKPW, "chosen: secret too short");
    CHECK(auth_app_check("plain password", 14) == AUTH_E_WEAKPW, "chosen: no selector");

    CHECK(auth_app_generate(a, sizeof(a)) == AUTH_OK && strlen(a) == AUTH_APP_GENERATED_LEN,
          "generated: length");
    bool shape = true;
    for (size_t i = 0; i < strlen(a); i++) {
        bool dash = i % 5 == 4;
        char c = a[i];
        if (dash ? c != '-' : !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            shape = false;
    }
    CHECK(shape && auth_app_check(a, strlen(a)) == AUTH_OK, "generated: SSSS-xxxx-xxxx-xxxx-xxxx");
    CHECK(auth_app_generate(b, sizeof(b)) == AUTH_OK && strcmp(a, b) != 0, "generated: random");
    CHECK(auth_app_generate(b, AUTH_APP_GENERATED_LEN) == AUTH_E_TEMP, "generated: room checked");

    CHECK(auth_app_label_ok("phone") && auth_app_label_ok("Pixel-8.work+x@home"), "labels ok");
    CHECK(!auth_app_label_ok("") && !auth_app_label_ok("12") && !auth_app_label_ok("a b") &&
              !auth_app_label_ok("a\"b") && !auth_app_label_ok("a=b"),
          "labels refused: empty, all digits, space, quote, =");
    memset(a, 'x', sizeof(a));
    a[AUTH_APP_LABEL_MAX] = '\0';
    CHECK(!auth_app_label_ok(a), "label too long refused");
    a[AUTH_APP_LABEL_MAX - 1] = '\0';
    CHECK(auth_app_label_ok(a), "label of the longest length ok");

    CHECK(auth_app_service_ok("imap,pop3", "imap") && auth_app_service_ok("imap,pop3", "pop3"),
          "services: imap and pop3 listed");
    CHECK(!auth_app_service_ok("imap,pop3", "http") && !auth_app_service_ok("imap,pop3", "ima") &&
              !auth_app_service_ok("imap,pop3", "") && !auth_app_service_ok("imap,pop3", NULL) &&
              !auth_app_service_ok("imaps", "imap"),
          "services: others, prefixes and none refused");
}

struct listing {
    int n;
    char labels[8][AUTH_APP_LABEL_MAX];
};

static int list_cb(const struct auth_app_password *a, void *arg)
{
    struct listing *l = arg;

    if (l->n < 8)
        snprintf(l->labels[l->n], sizeof(l->labels[0]), "%s", a->label);
    l->n++;
    return 0;
}

static int count_rows(struct auth_db *db, int64_t account)
{
    sqlite3_stmt *st = NULL;
    int n = -1;

    if (sqlite3_prepare_v2(auth_db_handle(db),
                           "SELECT count(*) FROM app_passwords WHERE account = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, account);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_db(void)
{
    char err[256], pw[64], hash[256], stored[256];
    struct auth_app_password a, b, c;
    struct auth_account acct, other;
    struct auth_db *db = NULL;
    struct listing l;
    int r;

    if (auth_db_open(tmpdir, &db, err, sizeof(err)) != AUTH_OK) {
        CHECK(false, "open the accounts database");
        return;
    }
    CHECK(auth_user_add(db, "ann@example.org", "annpassword", 0, 0, &acct) == AUTH_OK &&
              auth_user_add(db, "bob@example.org", "bobpassword", 0, 0, &other) == AUTH_OK,
          "two accounts");
    pw[0] = '\0';
    r = auth_app_add(db, "ann@example.org", "phone", pw, sizeof(pw), 3, &a);
    CHECK(r == AUTH_OK && strlen(pw) == AUTH_APP_GENERATED_LEN && !strncmp(pw, a.selector, 4) &&
              !strcmp(a.services, AUTH_APP_SERVICES),
          "add: generated, selector is its start");
    CHECK(auth_app_lookup(db, acct.id, a.selector, &b, hash, sizeof(hash)) == AUTH_OK &&
              b.id == a.id && !strcmp(b.label, "phone") && strncmp(hash, "$y$", 3) == 0 &&
              auth_password_verify(pw, hash) && !strstr(hash, pw + 5),
          "stored as a yescrypt hash that verifies it");
    snprintf(stored, sizeof(stored), "%s", hash);
    CHECK(auth_app_lookup(db, other.id, a.selector, &b, hash, sizeof(hash)) == AUTH_E_NOUSER,
          "lookup is per account");

    snprintf(pw, sizeof(pw), "lapt-laptop secret");
    CHECK(auth_app_add(db, "ann@example.org", "laptop", pw, sizeof(pw), 3, &b) == AUTH_OK &&
              !strcmp(b.selector, "lapt"),
          "add: a chosen one");
    snprintf(pw, sizeof(pw), "lapt-another secret");
    CHECK(auth_app_add(db, "ann@example.org", "tablet", pw, sizeof(pw), 3, &c) == AUTH_E_SELECTOR,
          "add: a taken selector refused");
    snprintf(pw, sizeof(pw), "tabl-another secret");
    CHECK(auth_app_add(db, "ann@example.org", "laptop", pw, sizeof(pw), 3, &c) == AUTH_E_EXISTS,
          "add: a taken label refused");
    CHECK(auth_app_add(db, "bob@example.org", "laptop", pw, sizeof(pw), 3, &c) == AUTH_OK,
          "labels and selectors are per account");
    snprintf(pw, sizeof(pw), "tabl-short");
    CHECK(auth_app_add(db, "ann@example.org", "tablet", pw, sizeof(pw), 3, &c) == AUTH_E_WEAKPW,
          "add: a weak chosen one refused");
    pw[0] = '\0';
    CHECK(auth_app_add(db, "ann@example.org", "99", pw, sizeof(pw), 3, &c) == AUTH_E_BADLABEL,
          "add: a label of digits refused");
    CHECK(auth_app_add(db, "nobody@example.org", "x", pw, sizeof(pw), 3, &c) == AUTH_E_NOUSER,
          "add: unknown account");
    pw[0] = '\0';
    CHECK(auth_app_add(db, "ann@example.org", "tablet", pw, sizeof(pw), 3, &c) == AUTH_OK,
          "add: third of three");
    pw[0] = '\0';
    CHECK(auth_app_add(db, "ann@example.org", "watch", pw, sizeof(pw), 3, &c) == AUTH_E_LIMIT &&
              count_rows(db, acct.id) == 3,
          "add: the limit holds, nothing added");

    memset(&l, 0, sizeof(l));
    CHECK(auth_app_list(db, "ann@example.org", list_cb, &l) == AUTH_OK && l.n == 3 &&
              !strcmp(l.labels[0], "phone") && !strcmp(l.labels[1], "laptop") &&
              !strcmp(l.labels[2], "tablet"),
          "list: oldest first");
    CHECK(auth_app_list(db, "nobody@example.org", list_cb, &l) == AUTH_E_NOUSER,
          "list: unknown account");

    CHECK(auth_app_del(db, "bob@example.org", "phone", NULL) == AUTH_E_NOAPP,
          "del: another account's label not found");
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)b.id);
    CHECK(auth_app_del(db, "bob@example.org", id, NULL) == AUTH_E_NOAPP,
          "del: another account's id not found");
    CHECK(auth_app_del(db, "ann@example.org", id, &c) == AUTH_OK && !strcmp(c.label, "laptop"),
          "del by id");
    CHECK(auth_app_del(db, "ann@example.org", "phone", &c) == AUTH_OK && c.id == a.id,
          "del by label");
    CHECK(auth_app_lookup(db, acct.id, a.selector, &c, hash, sizeof(hash)) == AUTH_E_NOUSER,
          "deleted: not found");
    CHECK(count_rows(db, acct.id) == 1, "one left");

    auth_app_touch(db, &a); /* a deleted one: nothing to note, no error */
    CHECK(auth_user_del(db, "ann@example.org", NULL) == AUTH_OK && count_rows(db, acct.id) == 0 &&
              count_rows(db, other.id) == 1,
          "the account's removal removes its app passwords only");
    auth_db_close(db);

    /* opening again: the table is kept (CREATE TABLE IF NOT EXISTS) */
    CHECK(auth_db_open(tmpdir, &db, err, sizeof(err)) == AUTH_OK && count_rows(db, other.id) == 1,
          "reopened: rows kept");
    CHECK(auth_user_del(db, "bob@example.org", NULL) == AUTH_OK, "cleanup");
    auth_db_close(db);
    explicit_bzero(stored, sizeof(stored));
}

/* A database made before app passwords: the table is added at open. */
static void test_upgrade(void)
{
    char dir[300], path[400], err[256], pw[64];
    struct auth_db *db = NULL;
    sqlite3 *h = NULL;

    snprintf(dir, sizeof(dir), "%s/old", tmpdir);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/accounts.sqlite", dir);
    CHECK(sqlite3_open(path, &h) == SQLITE_OK &&
              sqlite3_exec(h,
                           "CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                           " address TEXT UNIQUE NOT NULL COLLATE NOCASE, hash TEXT NOT NULL,"
                           " disabled INTEGER NOT NULL DEFAULT 0, quota INTEGER NOT NULL DEFAULT"
                           " 0, created INTEGER NOT NULL)",
                           NULL, NULL, NULL) == SQLITE_OK,
          "an old database");
    sqlite3_close(h);
    CHECK(auth_db_open(dir, &db, err, sizeof(err)) == AUTH_OK, "old database opened");
    CHECK(db && auth_user_add(db, "old@example.org", "oldpassword", 0, 0, NULL) == AUTH_OK &&
              (pw[0] = '\0',
               auth_app_add(db, "old@example.org", "phone", pw, sizeof(pw), 20, NULL)) == AUTH_OK,
          "app passwords in an old database");
    auth_db_close(db);
    unlink(path);
    snprintf(path, sizeof(path), "%s/accounts.sqlite-wal", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/accounts.sqlite-shm", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- logins ---- */

struct result {
    int calls, result;
    struct auth_account acct;
};

static void on_login(void *arg, int result, const struct auth_account *acct)
{
    struct result *r = arg;

    r->calls++;
    r->result = result;
    if (acct)
        r->acct = *acct;
}

/* One login to its end; *crypts yescrypt computations it ran. */
static int login(uv_loop_t *loop, struct auth_service *s, const char *svc, const char *user,
                 const char *pw, unsigned long *crypts, struct auth_account *acct)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(40000)};
    unsigned long before = auth_crypt_calls();
    struct result r;

    inet_pton(AF_INET, "192.0.2.9", &sin.sin_addr);
    memset(&r, 0, sizeof(r));
    if (!(svc ? auth_login_start_svc(s, svc, user, strlen(user), pw, strlen(pw),
                                     (struct sockaddr *)&sin, on_login, &r)
              : auth_login_start(s, user, strlen(user), pw, strlen(pw), (struct sockaddr *)&sin,
                                 on_login, &r)))
        return 99;
    uv_run(loop, UV_RUN_DEFAULT);
    if (r.calls != 1)
        return 98;
    if (crypts)
        *crypts = auth_crypt_calls() - before;
    if (acct)
        *acct = r.acct;
    return r.result;
}

static void test_login(void)
{
    struct auth_service_opts o = {
        .data_dir = tmpdir,
        .default_domain = "example.org",
        .cache_ttl_s = 60,
        .failure_delay_ms = 0,
        .failure_delay_max_ms = 0,
    };
    char err[256], pw[64], phone[64], wrong[64], last[64];
    struct auth_service *s = NULL;
    struct auth_db *db = NULL;
    struct auth_account acct;
    unsigned long crypts = 0;
    uv_loop_t loop;
    int r;

    uv_loop_init(&loop);
    if (auth_db_open(tmpdir, &db, err, sizeof(err)) != AUTH_OK ||
        auth_user_add(db, "cat@example.org", "catpassword", 0, 0, NULL) != AUTH_OK) {
        CHECK(false, "login: setup");
        return;
    }
    phone[0] = '\0';
    CHECK(auth_app_add(db, "cat@example.org", "phone", phone, sizeof(phone), 0, NULL) == AUTH_OK,
          "login: an app password");
    /* many more: the cost of a wrong password must not grow with them */
    for (int i = 0; i < 20; i++) {
        char label[16];
        snprintf(label, sizeof(label), "app%d", i);
        last[0] = '\0';
        if (auth_app_add(db, "cat@example.org", label, last, sizeof(last), 0, NULL) != AUTH_OK)
            CHECK(false, "login: more app passwords");
    }
    if (auth_service_new(&loop, &o, &s, err, sizeof(err)) != AUTH_OK) {
        CHECK(false, "login: service");
        auth_db_close(db);
        return;
    }

    r = login(&loop, s, "imap", "cat", phone, &crypts, &acct);
    CHECK(r == AUTH_OK && !strcmp(acct.app_label, "phone") && crypts == 1,
          "imap: app password accepted with one hash, its label returned");
    r = login(&loop, s, "pop3", "cat", phone, &crypts, &acct);
    CHECK(r == AUTH_OK && !strcmp(acct.app_label, "phone") && crypts == 0,
          "pop3: the same, from the cache");
    r = login(&loop, s, "imap", "cat", "catpassword", &crypts, &acct);
    CHECK(r == AUTH_OK && acct.app_label[0] == '\0' && crypts == 1,
          "main password: one hash, no label");
    r = login(&loop, s, NULL, "cat", last, &crypts, &acct);
    CHECK(r == AUTH_E_FAIL && crypts == 1, "auth_login_start: main password only");
    r = login(&loop, s, "http", "cat", last, &crypts, &acct);
    CHECK(r == AUTH_E_FAIL && crypts == 2, "a service not listed: refused");

    snprintf(wrong, sizeof(wrong), "%.5szzzz-zzzz-zzzz-zzzz", last);
    r = login(&loop, s, "imap", "cat", wrong, &crypts, NULL);
    CHECK(r == AUTH_E_FAIL && crypts == 2,
          "wrong secret of an existing selector: two hashes, not one per app password");
    snprintf(wrong, sizeof(wrong), "%s", last);
    wrong[0] = wrong[0] == 'z' ? 'y' : 'z';
    wrong[1] = wrong[1] == 'z' ? 'y' : 'z';
    wrong[2] = wrong[2] == 'z' ? 'y' : 'z';
    wrong[3] = wrong[3] == 'z' ? 'y' : 'z';
    r = login(&loop, s, "imap", "cat", wrong, &crypts, NULL);
    CHECK(r == AUTH_E_FAIL && crypts == 2, "unknown selector: the same two hashes");
    r = login(&loop, s, "imap", "cat", "wrong password", &crypts, NULL);
    CHECK(r == AUTH_E_FAIL && crypts == 1, "a wrong password of another form: one hash");
    r = login(&loop, s, "imap", "nobody", last, &crypts, NULL);
    CHECK(r == AUTH_E_FAIL && crypts == 2, "unknown user with an app-shaped password: two hashes");

    /* phone is in the cache; once deleted, it no longer opens the account */
    r = login(&loop, s, "imap", "cat", phone, &crypts, NULL);
    CHECK(r == AUTH_OK && crypts == 0, "phone cached");
    CHECK(auth_app_del(db, "cat@example.org", "phone", NULL) == AUTH_OK, "phone deleted");
    r = login(&loop, s, "imap", "cat", phone, &crypts, NULL);
    CHECK(r == AUTH_E_FAIL, "deleted: refused at once despite the cache");
    r = login(&loop, s, "imap", "cat", last, &crypts, &acct);
    CHECK(r == AUTH_OK && !strcmp(acct.app_label, "app19"), "another still accepted");
    CHECK(auth_user_set_disabled(db, "cat@example.org", true) == AUTH_OK, "disabled");
    r = login(&loop, s, "imap", "cat", last, &crypts, NULL);
    CHECK(r == AUTH_E_DISABLED, "a disabled account: refused with an app password too");

    auth_service_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    auth_user_del(db, "cat@example.org", NULL);
    auth_db_close(db);
    explicit_bzero(pw, sizeof(pw));
}

int main(void)
{
    char p[512];
    static const char *files[] = {"accounts.sqlite", "accounts.sqlite-wal", "accounts.sqlite-shm"};

    if (check_mkdtemp(tmpdir, sizeof(tmpdir), "coffre-test-apppw") != 0)
        return 1;
    test_form();
    test_db();
    test_upgrade();
    test_login();
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tmpdir, files[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return check_summary();
}
