/* Unit tests of the auth module: address normalization, password hashing,
 * the account database in a temporary directory, and the login service end
 * to end on a real libuv loop (results, throttling delay, cache, cancel). */
#include "auth/auth.h"
#include "auth/auth_priv.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/check.h"

static char tmpdir[256];

/* ---- addresses ---- */

static void test_normalize(void)
{
    static const struct {
        const char *in, *dom, *out; /* out NULL: refused */
    } v[] = {
        {"alice@example.org", "", "alice@example.org"},
        {"Alice@Example.ORG", "", "alice@example.org"},
        {"alice", "example.org", "alice@example.org"},
        {"ALICE", "Example.Org", "alice@example.org"},
        {"alice", "", NULL},
        {"a.b+tag@sub.example.org", "", "a.b+tag@sub.example.org"},
        {"o'brien@example.org", "", NULL},
        {"a b@example.org", "", NULL},
        {"a/b@example.org", "", NULL},
        {"a\\b@example.org", "", NULL},
        {"\"ab\"@example.org", "", NULL},
        {"a@b@example.org", "", NULL},
        {"@example.org", "", NULL},
        {"alice@", "", NULL},
        {"alice@.org", "", NULL},
        {"alice@example..org", "", NULL},
        {"alice@-example.org", "", NULL},
        {"alice@example.org.", "", NULL},
        {".alice@example.org", "", NULL},
        {"al..ice@example.org", "", NULL},
        {"alice\t@example.org", "", NULL},
        {"alice\x7f@example.org", "", NULL},
        {"al\xc3\xa9@example.org", "", NULL},
        {"", "example.org", NULL},
        {"../x", "example.org", NULL},
    };
    char out[AUTH_ADDR_MAX], what[160];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int r = auth_normalize_address(v[i].in, strlen(v[i].in), v[i].dom, out, sizeof(out));

        snprintf(what, sizeof(what), "normalize #%zu -> %s", i, v[i].out ? v[i].out : "refused");
        if (v[i].out)
            CHECK(r == AUTH_OK && strcmp(out, v[i].out) == 0, what);
        else
            CHECK(r == AUTH_E_BADADDR, what);
    }
    CHECK(auth_normalize_address("a\0b@x.org", 9, "", out, sizeof(out)) == AUTH_E_BADADDR,
          "normalize refuses an embedded NUL");

    char longaddr[400];
    memset(longaddr, 'a', sizeof(longaddr));
    memcpy(longaddr + 300, "@example.org", 12);
    CHECK(auth_normalize_address(longaddr, 312, "", out, sizeof(out)) == AUTH_E_BADADDR,
          "normalize refuses an over-long address");
    memcpy(longaddr + 65, "@example.org", 12);
    CHECK(auth_normalize_address(longaddr, 77, "", out, sizeof(out)) == AUTH_E_BADADDR,
          "normalize refuses a local part over 64");
    CHECK(auth_normalize_address("alice@example.org", 17, "", out, 10) == AUTH_E_BADADDR,
          "normalize refuses a short output buffer");
}

/* ---- passwords ---- */

static void test_password(void)
{
    char h[CRYPT_OUTPUT_SIZE], h2[CRYPT_OUTPUT_SIZE], err[128];

    CHECK(auth_password_hash("correct horse", h, sizeof(h)) == AUTH_OK, "hash a password");
    CHECK(strncmp(h, "$y$", 3) == 0, "hash is yescrypt ($y$)");
    CHECK(auth_password_verify("correct horse", h), "verify the right password");
    CHECK(!auth_password_verify("correct horsf", h), "refuse a wrong password");
    CHECK(!auth_password_verify("correct hors", h), "refuse a prefix of the password");
    CHECK(!auth_password_verify("", h), "refuse an empty password");
    CHECK(!auth_password_verify("correct horse", ""), "refuse against an empty hash");
    CHECK(!auth_password_verify("correct horse", "*"), "refuse against a locked hash");
    CHECK(auth_password_hash("correct horse", h2, sizeof(h2)) == AUTH_OK && strcmp(h, h2) != 0,
          "two hashes of one password differ (salt)");
    CHECK(auth_password_hash("", h2, sizeof(h2)) == AUTH_OK && auth_password_verify("", h2) &&
              !auth_password_verify("x", h2),
          "empty password hashes and verifies (policy is separate)");

    CHECK(auth_password_check("goodpassword", 12, err, sizeof(err)) == AUTH_OK,
          "check accepts a good password");
    CHECK(auth_password_check("", 0, err, sizeof(err)) == AUTH_E_WEAKPW && err[0],
          "check refuses an empty password");
    CHECK(auth_password_check("short", 5, err, sizeof(err)) == AUTH_E_WEAKPW,
          "check refuses a short password");
    CHECK(auth_password_check("12345678", 8, err, sizeof(err)) == AUTH_OK,
          "check accepts the minimum length");
    CHECK(auth_password_check("good\npassword", 13, err, sizeof(err)) == AUTH_E_WEAKPW,
          "check refuses LF");
    CHECK(auth_password_check("good\rpassword", 13, err, sizeof(err)) == AUTH_E_WEAKPW,
          "check refuses CR");
    CHECK(auth_password_check("good\0password", 13, err, sizeof(err)) == AUTH_E_WEAKPW,
          "check refuses NUL");
    char *big = malloc(AUTH_PASSWORD_MAX + 2);
    if (big) {
        memset(big, 'x', AUTH_PASSWORD_MAX + 1);
        CHECK(auth_password_check(big, AUTH_PASSWORD_MAX, err, sizeof(err)) == AUTH_OK,
              "check accepts the maximum length");
        CHECK(auth_password_check(big, AUTH_PASSWORD_MAX + 1, err, sizeof(err)) == AUTH_E_WEAKPW,
              "check refuses an over-long password");
        free(big);
    }
}

/* ---- account database ---- */

static int list_cb(const struct auth_account *a, void *arg)
{
    char *buf = arg;
    size_t n = strlen(buf);

    snprintf(buf + n, 512 - n, "%s%s", n ? "," : "", a->address);
    return 0;
}

static int list_stop_cb(const struct auth_account *a, void *arg)
{
    (*(int *)arg)++;
    return 1;
}

static void test_db(void)
{
    struct auth_db *db = NULL;
    struct auth_account a, b;
    char err[256], hash[CRYPT_OUTPUT_SIZE], list[512] = "";
    int64_t bob_id;
    int n = 0;

    CHECK(auth_db_open(tmpdir, &db, err, sizeof(err)) == AUTH_OK, "open the account database");
    if (!db) {
        printf("  %s\n", err);
        return;
    }
    CHECK(auth_user_add(db, "bob@example.org", "bobpassword", 0, 0, &a) == AUTH_OK && a.id > 0 &&
              strcmp(a.address, "bob@example.org") == 0 && !a.disabled && a.created > 0,
          "add bob");
    bob_id = a.id;
    CHECK(auth_user_add(db, "alice@example.org", "alicepassword", 1048576, 0, &b) == AUTH_OK &&
              b.id > bob_id && b.quota_bytes == 1048576 && b.quota_messages == 0,
          "add alice with a quota");
    CHECK(a.quota_messages == 0, "bob has no message quota");
    CHECK(auth_user_add(db, "BOB@example.org", "otherpassword", 0, 0, NULL) == AUTH_E_EXISTS,
          "add refuses a duplicate (any case)");
    CHECK(auth_user_add(db, "carol@example.org", "short", 0, 0, NULL) == AUTH_E_WEAKPW,
          "add refuses a weak password");
    CHECK(auth_user_get(db, "bob@example.org", &a) == AUTH_OK && a.id == bob_id, "get bob");
    CHECK(auth_user_get(db, "nobody@example.org", &a) == AUTH_E_NOUSER, "get unknown");

    CHECK(auth_db_lookup(db, "bob@example.org", &a, hash, sizeof(hash)) == AUTH_OK &&
              auth_password_verify("bobpassword", hash),
          "stored hash verifies bob's password");
    CHECK(auth_user_passwd(db, "bob@example.org", "newbobpassword") == AUTH_OK, "passwd bob");
    CHECK(auth_db_lookup(db, "bob@example.org", &a, hash, sizeof(hash)) == AUTH_OK &&
              auth_password_verify("newbobpassword", hash) &&
              !auth_password_verify("bobpassword", hash),
          "new hash verifies only the new password");
    CHECK(auth_user_passwd(db, "nobody@example.org", "whateverpw") == AUTH_E_NOUSER,
          "passwd unknown");
    CHECK(auth_user_passwd(db, "bob@example.org", "") == AUTH_E_WEAKPW, "passwd refuses empty");

    CHECK(auth_user_set_disabled(db, "bob@example.org", true) == AUTH_OK &&
              auth_user_get(db, "bob@example.org", &a) == AUTH_OK && a.disabled,
          "disable bob");
    CHECK(auth_user_set_disabled(db, "bob@example.org", false) == AUTH_OK &&
              auth_user_get(db, "bob@example.org", &a) == AUTH_OK && !a.disabled,
          "enable bob");
    CHECK(auth_user_set_disabled(db, "nobody@example.org", true) == AUTH_E_NOUSER,
          "disable unknown");
    CHECK(auth_user_set_quota(db, "bob@example.org", 500u << 20) == AUTH_OK &&
              auth_user_get(db, "bob@example.org", &a) == AUTH_OK && a.quota_bytes == 500u << 20,
          "set bob's quota");
    CHECK(auth_user_set_quota(db, "nobody@example.org", 1) == AUTH_E_NOUSER, "quota unknown");
    CHECK(auth_user_set_max_messages(db, "bob@example.org", 1000) == AUTH_OK &&
              auth_user_get(db, "bob@example.org", &a) == AUTH_OK && a.quota_messages == 1000 &&
              a.quota_bytes == 500u << 20,
          "set bob's message quota, his byte quota kept");
    CHECK(auth_db_lookup(db, "bob@example.org", &a, hash, sizeof(hash)) == AUTH_OK &&
              a.quota_messages == 1000,
          "the login lookup reads the message quota");
    CHECK(auth_user_set_max_messages(db, "nobody@example.org", 1) == AUTH_E_NOUSER,
          "message quota unknown");
    CHECK(auth_user_add(db, "dave@example.org", "davepassword", 2048, 7, &b) == AUTH_OK &&
              b.quota_bytes == 2048 && b.quota_messages == 7 &&
              auth_user_del(db, "dave@example.org", NULL) == AUTH_OK,
          "add dave with both quotas");

    CHECK(auth_user_list(db, list_cb, list) == AUTH_OK &&
              strcmp(list, "alice@example.org,bob@example.org") == 0,
          "list in address order");
    CHECK(auth_user_list(db, list_stop_cb, &n) == AUTH_OK && n == 1,
          "list stops when the callback asks");

    CHECK(auth_user_del(db, "BOB@example.org", &a) == AUTH_OK && a.id == bob_id,
          "delete bob (any case) returns his id");
    CHECK(auth_user_get(db, "bob@example.org", &a) == AUTH_E_NOUSER, "bob is gone");
    CHECK(auth_user_del(db, "bob@example.org", &a) == AUTH_E_NOUSER, "delete unknown");

    /* the highest id is the one deleted last: AUTOINCREMENT must not reuse it */
    CHECK(auth_user_del(db, "alice@example.org", &b) == AUTH_OK, "delete alice");
    CHECK(auth_user_add(db, "alice@example.org", "alicepassword", 0, 0, &a) == AUTH_OK &&
              a.id > b.id,
          "ids are never reused");
    CHECK(auth_user_del(db, "alice@example.org", NULL) == AUTH_OK, "delete alice again");
    auth_db_close(db);
}

/* An accounts database made before the message quota: opening it adds
 * the column, keeps the accounts (no message quota), and a second open
 * finds it there. */
static void test_db_upgrade(void)
{
    char dir[300], path[340], err[256], hash[CRYPT_OUTPUT_SIZE];
    struct auth_account a;
    struct auth_db *db = NULL;
    sqlite3 *h = NULL;

    snprintf(dir, sizeof(dir), "%s/old", tmpdir);
    snprintf(path, sizeof(path), "%s/accounts.sqlite", dir);
    CHECK(mkdir(dir, 0700) == 0, "a directory for the old database");
    CHECK(sqlite3_open(path, &h) == SQLITE_OK &&
              sqlite3_exec(h,
                           "CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                           " address TEXT UNIQUE NOT NULL COLLATE NOCASE, hash TEXT NOT NULL,"
                           " disabled INTEGER NOT NULL DEFAULT 0,"
                           " quota INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
                           "INSERT INTO accounts (address, hash, quota, created)"
                           " VALUES ('old@example.org', 'x', 4096, 1);",
                           NULL, NULL, NULL) == SQLITE_OK,
          "an accounts database of the first schema");
    sqlite3_close(h);
    for (int round = 0; round < 2; round++) {
        CHECK(auth_db_open(dir, &db, err, sizeof(err)) == AUTH_OK, "open the old database");
        if (!db)
            break;
        CHECK(auth_db_lookup(db, "old@example.org", &a, hash, sizeof(hash)) == AUTH_OK &&
                  a.quota_bytes == 4096 && a.quota_messages == (round ? 50u : 0u),
              round ? "the message quota set is kept" : "the old account has no message quota");
        CHECK(round || auth_user_set_max_messages(db, "old@example.org", 50) == AUTH_OK,
              "the old account takes a message quota");
        CHECK(auth_user_add(db, round ? "new2@example.org" : "new@example.org", "newpassword", 0, 3,
                            &a) == AUTH_OK &&
                  a.quota_messages == 3,
              "a new account in the upgraded database");
        auth_db_close(db);
        db = NULL;
    }
    static const char *files[] = {"accounts.sqlite", "accounts.sqlite-wal", "accounts.sqlite-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- login service ---- */

struct result {
    bool called;
    int calls;
    int result;
    struct auth_account acct;
    uint64_t t_done;
    struct auth_login *self; /* for cancel-in-callback */
    bool cancel_in_cb;
};

static void on_login(void *arg, int result, const struct auth_account *acct)
{
    struct result *r = arg;

    r->called = true;
    r->calls++;
    r->result = result;
    r->t_done = uv_hrtime();
    if (acct)
        r->acct = *acct;
    if (r->cancel_in_cb)
        auth_login_cancel(r->self);
}

static struct sockaddr_in ip4(const char *a)
{
    struct sockaddr_in sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(40000);
    inet_pton(AF_INET, a, &sin.sin_addr);
    return sin;
}

/* Runs one login to completion; returns its result, elapsed ms in *ms. */
static int login(uv_loop_t *loop, struct auth_service *s, const char *user, const char *pw,
                 const char *ip, uint64_t *ms, struct auth_account *acct)
{
    struct sockaddr_in sin = ip4(ip);
    struct result r;
    uint64_t t0 = uv_hrtime();

    memset(&r, 0, sizeof(r));
    if (!auth_login_start(s, user, strlen(user), pw, strlen(pw), (struct sockaddr *)&sin, on_login,
                          &r))
        return 99;
    uv_run(loop, UV_RUN_DEFAULT);
    if (!r.called || r.calls != 1)
        return 98;
    if (ms)
        *ms = (r.t_done - t0) / 1000000;
    if (acct)
        *acct = r.acct;
    return r.result;
}

/* login(), and in *crypts how many times it ran yescrypt (0: answered by
 * the cache). */
static int login_crypts(uv_loop_t *loop, struct auth_service *s, const char *user, const char *pw,
                        const char *ip, uint64_t *ms, unsigned long *crypts)
{
    unsigned long before = auth_crypt_calls();
    int r = login(loop, s, user, pw, ip, ms, NULL);

    *crypts = auth_crypt_calls() - before;
    return r;
}

struct delay_probe {
    uv_timer_t poll;
    struct auth_login *l;
    bool cancelled;
};

static void find_delay_timer(uv_handle_t *h, void *arg)
{
    bool *found = arg;
    struct delay_probe *p = h->loop->data;

    if (h->type == UV_TIMER && h != (uv_handle_t *)&p->poll && uv_is_active(h))
        *found = true;
}

/* Polls until the login's delay timer runs, then cancels it there. */
static void on_probe(uv_timer_t *t)
{
    struct delay_probe *p = t->loop->data;
    bool found = false;

    uv_walk(t->loop, find_delay_timer, &found);
    if (found) {
        auth_login_cancel(p->l);
        p->cancelled = true;
        uv_close((uv_handle_t *)&p->poll, NULL);
    }
}

/* Starts loop and a service on tmpdir with two accounts added (or kept
 * from an earlier test); *db is the admin connection. NULL on failure,
 * with nothing left open. */
static struct auth_service *start_service(uv_loop_t *loop, const struct auth_service_opts *o,
                                          struct auth_db **db, const char *u1, const char *p1,
                                          const char *u2, const char *p2)
{
    struct auth_service *s = NULL;
    char err[256];

    uv_loop_init(loop);
    CHECK(auth_db_open(tmpdir, db, err, sizeof(err)) == AUTH_OK, "admin connection opened");
    if (!*db)
        return NULL;
    CHECK(auth_user_add(*db, u1, p1, 0, 0, NULL) == AUTH_OK, "first account added");
    CHECK(auth_user_add(*db, u2, p2, 0, 0, NULL) == AUTH_OK, "second account added");
    CHECK(auth_service_new(loop, o, &s, err, sizeof(err)) == AUTH_OK, "service started");
    if (!s) {
        printf("  %s\n", err);
        auth_db_close(*db);
    }
    return s;
}

static void test_service(void)
{
    struct auth_service_opts o = {
        .data_dir = tmpdir,
        .default_domain = "example.org",
        .cache_ttl_s = 60,
        .failure_delay_ms = 100,
        .failure_delay_max_ms = 400,
    };
    struct auth_service *s = NULL;
    struct auth_db *db = NULL;
    struct auth_account acct;
    uv_loop_t loop;
    uint64_t ms = 0;
    unsigned long crypts;
    int r;

    s = start_service(&loop, &o, &db, "dave@example.org", "davepassword", "erin@example.org",
                      "erinpassword");
    if (!s)
        return;

    r = login(&loop, s, "Dave", "davepassword", "192.0.2.1", &ms, &acct);
    CHECK(r == AUTH_OK && strcmp(acct.address, "dave@example.org") == 0 && acct.id > 0,
          "right password: OK, name completed with default_domain");

    r = login_crypts(&loop, s, "dave@example.org", "davepassword", "192.0.2.1", &ms, &crypts);
    CHECK(r == AUTH_OK && crypts == 0, "second login answered by the cache");

    r = login_crypts(&loop, s, "dave@example.org", "wrongpassword", "192.0.2.2", &ms, &crypts);
    CHECK(r == AUTH_E_FAIL, "wrong password: FAIL");
    CHECK(ms >= 100, "wrong password: callback delayed by at least 100 ms");
    CHECK(crypts == 1, "wrong password runs yescrypt (not cached)");
    r = login(&loop, s, "dave@example.org", "wrongpassword", "192.0.2.2", &ms, NULL);
    CHECK(r == AUTH_E_FAIL && ms >= 200, "second failure: delay doubled (>= 200 ms)");
    r = login(&loop, s, "dave@example.org", "wrongpassword", "192.0.2.3", &ms, NULL);
    CHECK(r == AUTH_E_FAIL && ms >= 400, "third failure on the account from a new ip: >= 400 ms");

    r = login_crypts(&loop, s, "nobody@example.org", "whatever1", "192.0.2.4", &ms, &crypts);
    CHECK(r == AUTH_E_FAIL && ms >= 100, "unknown user: FAIL, delayed");
    CHECK(crypts == 1, "unknown user runs yescrypt on the dummy hash");
    r = login_crypts(&loop, s, "bad/name", "whatever1", "192.0.2.5", &ms, &crypts);
    CHECK(r == AUTH_E_FAIL && crypts == 1, "invalid name: FAIL, same cost as a wrong password");
    r = login(&loop, s, "dave@example.org", "", "192.0.2.6", &ms, NULL);
    CHECK(r == AUTH_E_FAIL, "empty password: FAIL");

    /* a success after failures, then the cache still works */
    r = login(&loop, s, "dave@example.org", "davepassword", "192.0.2.7", &ms, NULL);
    CHECK(r == AUTH_OK, "right password after failures: OK");

    /* disabled */
    auth_user_set_disabled(db, "erin@example.org", true);
    r = login(&loop, s, "erin@example.org", "erinpassword", "192.0.2.8", &ms, NULL);
    CHECK(r == AUTH_E_DISABLED, "disabled, right password: DISABLED");
    r = login(&loop, s, "erin@example.org", "wrongpassword", "192.0.2.8", &ms, NULL);
    CHECK(r == AUTH_E_FAIL, "disabled, wrong password: FAIL");
    r = login_crypts(&loop, s, "erin@example.org", "erinpassword", "192.0.2.8", &ms, &crypts);
    CHECK(r == AUTH_E_DISABLED && crypts == 1, "disabled account never answered by the cache");
    auth_user_set_disabled(db, "erin@example.org", false);
    r = login(&loop, s, "erin@example.org", "erinpassword", "192.0.2.8", &ms, NULL);
    CHECK(r == AUTH_OK, "enabled again: OK");

    /* passwd invalidates the cache */
    r = login_crypts(&loop, s, "erin@example.org", "erinpassword", "192.0.2.8", &ms, &crypts);
    CHECK(r == AUTH_OK && crypts == 0, "erin cached");
    CHECK(auth_user_passwd(db, "erin@example.org", "erinnewpassword") == AUTH_OK,
          "passwd erin while the service runs");
    r = login_crypts(&loop, s, "erin@example.org", "erinpassword", "192.0.2.9", &ms, &crypts);
    CHECK(r == AUTH_E_FAIL && crypts == 1, "old password refused after passwd (cache not used)");
    r = login(&loop, s, "erin@example.org", "erinnewpassword", "192.0.2.9", &ms, NULL);
    CHECK(r == AUTH_OK, "new password accepted at once");

    /* deleted row never matches the cache */
    r = login(&loop, s, "dave@example.org", "davepassword", "192.0.2.10", &ms, NULL);
    CHECK(r == AUTH_OK, "dave cached before delete");
    auth_user_del(db, "dave@example.org", NULL);
    r = login(&loop, s, "dave@example.org", "davepassword", "192.0.2.10", &ms, NULL);
    CHECK(r == AUTH_E_FAIL, "deleted account: FAIL");

    /* cancel while the work runs: no callback */
    {
        struct sockaddr_in sin = ip4("192.0.2.11");
        struct result res;
        struct auth_login *l;

        memset(&res, 0, sizeof(res));
        l = auth_login_start(s, "erin", 4, "erinnewpassword", 15, (struct sockaddr *)&sin, on_login,
                             &res);
        CHECK(l != NULL, "login started");
        auth_login_cancel(l);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(!res.called, "cancel during the work: no callback");
    }
    /* cancel during the failure delay */
    {
        struct sockaddr_in sin = ip4("192.0.2.12");
        struct delay_probe p;
        struct result res;

        memset(&res, 0, sizeof(res));
        memset(&p, 0, sizeof(p));
        loop.data = &p;
        p.l = auth_login_start(s, "erin", 4, "badpassword", 11, (struct sockaddr *)&sin, on_login,
                               &res);
        uv_timer_init(&loop, &p.poll);
        uv_timer_start(&p.poll, on_probe, 2, 2);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(p.cancelled && !res.called, "cancel during the delay: no callback");
        loop.data = NULL;
    }
    /* cancel from inside the callback */
    {
        struct sockaddr_in sin = ip4("192.0.2.13");
        struct result res;

        memset(&res, 0, sizeof(res));
        res.cancel_in_cb = true;
        res.self = auth_login_start(s, "erin", 4, "erinnewpassword", 15, (struct sockaddr *)&sin,
                                    on_login, &res);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(res.calls == 1 && res.result == AUTH_OK, "cancel inside the callback is harmless");
    }
    /* several at once on the thread pool */
    {
        struct sockaddr_in sin = ip4("192.0.2.14");
        struct result res[6];
        int ok = 0;

        memset(res, 0, sizeof(res));
        for (int i = 0; i < 6; i++) {
            const char *pw = i % 2 ? "erinnewpassword" : "erinpasswordx";

            auth_login_start(s, "erin", 4, pw, strlen(pw), (struct sockaddr *)&sin, on_login,
                             &res[i]);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        for (int i = 0; i < 6; i++)
            ok += res[i].calls == 1 && res[i].result == (i % 2 ? AUTH_OK : AUTH_E_FAIL);
        CHECK(ok == 6, "parallel logins each answered once, correctly");
    }
    /* one IPv6 /64 is throttled as one address */
    {
        struct sockaddr_in6 a6;
        struct result res;
        const char *hosts[] = {"2001:db8:1:2::10", "2001:db8:1:2::20"};
        uint64_t t0 = 0;

        for (int i = 0; i < 2; i++) {
            char name[32];

            memset(&a6, 0, sizeof(a6));
            a6.sin6_family = AF_INET6;
            inet_pton(AF_INET6, hosts[i], &a6.sin6_addr);
            snprintf(name, sizeof(name), "ghost%d", i);
            memset(&res, 0, sizeof(res));
            t0 = uv_hrtime();
            auth_login_start(s, name, strlen(name), "whatever1", 9, (struct sockaddr *)&a6,
                             on_login, &res);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
        CHECK(res.calls == 1 && res.result == AUTH_E_FAIL && (res.t_done - t0) / 1000000 >= 200,
              "second failure from the same IPv6 /64, other name: delay doubled");
    }
    /* freeing the service with a login pending */
    {
        struct sockaddr_in sin = ip4("192.0.2.15");
        struct result res;

        memset(&res, 0, sizeof(res));
        auth_login_start(s, "erin", 4, "erinnewpassword", 15, (struct sockaddr *)&sin, on_login,
                         &res);
        auth_service_free(s);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(!res.called, "service freed with a pending login: no callback");
    }
    CHECK(uv_loop_close(&loop) == 0, "loop closes: no handle left behind");
    auth_db_close(db);
}

static void count_timers(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TIMER && uv_is_active(h))
        ++*(unsigned *)arg;
}

/* Cancels a login from a timer: a client dropping its connection. */
struct dropper {
    uv_timer_t t;
    struct auth_login *l;
};

static void on_drop(uv_timer_t *t)
{
    struct dropper *d = (struct dropper *)t;

    auth_login_cancel(d->l);
    uv_close((uv_handle_t *)t, NULL);
}

/* The throttle holds attempts back before they are checked, on any
 * connection; answers after failures are held alike whatever their result;
 * a success forgives only its own (account, address) failures; attempts in
 * progress are limited. */
static void test_throttle_model(void)
{
    struct auth_service_opts o = {
        .data_dir = tmpdir,
        .default_domain = "example.org",
        .cache_ttl_s = 60,
        .failure_delay_ms = 200,
        .failure_delay_max_ms = 400,
        .max_pending_per_ip = 3,
        .max_pending_per_user = 3,
    };
    struct auth_service *s = NULL;
    struct auth_db *db = NULL;
    uv_loop_t loop;
    uint64_t ms = 0;
    unsigned long crypts;
    int r;

    s = start_service(&loop, &o, &db, "mallory@example.org", "mallorypassword",
                      "victor@example.org", "victorpassword");
    if (!s)
        return;

    /* an attempt dropped while it waits is never checked */
    r = login(&loop, s, "victor", "guess0", "203.0.113.1", &ms, NULL);
    CHECK(r == AUTH_E_FAIL, "first guess fails");
    {
        struct sockaddr_in sin = ip4("203.0.113.1");
        struct dropper d;
        struct result a, b;
        unsigned long before = auth_crypt_calls();

        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        /* a takes the address's turn; b, on another connection, must wait
         * 200 ms for the next one, and its client gives up after 30 */
        auth_login_start(s, "victor", 6, "guess1", 6, (struct sockaddr *)&sin, on_login, &a);
        d.l = auth_login_start(s, "victor", 6, "guess2", 6, (struct sockaddr *)&sin, on_login, &b);
        uv_timer_init(&loop, &d.t);
        uv_timer_start(&d.t, on_drop, 30, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(a.calls == 1 && a.result == AUTH_E_FAIL && !b.called &&
                  auth_crypt_calls() - before == 1,
              "a second attempt at once from a failing address waits before its check: dropped "
              "at 30 ms, it was never checked");
    }
    /* ... and the wait is per address, not per connection or name */
    r = login_crypts(&loop, s, "mallory", "mallorypassword", "203.0.113.1", &ms, &crypts);
    CHECK(r == AUTH_OK && ms >= 200, "own account from the failing address: waits (>= 200 ms)");
    /* own success does not forgive the guesses on another account */
    r = login(&loop, s, "victor", "guess3", "203.0.113.1", &ms, NULL);
    CHECK(r == AUTH_E_FAIL && ms >= 200,
          "a guess after one's own success still waits: the address's failures remain");
    /* a success after failures is answered no sooner than a failure */
    {
        uint64_t fail_ms, ok_ms;

        r = login(&loop, s, "victor", "guess3", "203.0.113.9", &fail_ms, NULL);
        CHECK(r == AUTH_E_FAIL, "guess from another address");
        r = login(&loop, s, "victor", "victorpassword", "203.0.113.9", &ok_ms, NULL);
        CHECK(r == AUTH_OK && ok_ms >= 400,
              "the right password after failures: held like a failure (>= 400 ms, the cap)");
    }
    /* victor's success from .9 forgave its failures from .9 only */
    r = login(&loop, s, "nobody1", "x", "203.0.113.1", &ms, NULL);
    CHECK(r == AUTH_E_FAIL && ms >= 200, "the failing address still waits");
    /* victor is known good at .9: a distributed attack on the account does
     * not hold its owner back there */
    r = login(&loop, s, "victor", "guess4", "203.0.113.50", &ms, NULL);
    {
        struct sockaddr_in home = ip4("203.0.113.9"), other = ip4("203.0.113.51");
        struct result a, b, c;
        unsigned timers = 0;

        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        memset(&c, 0, sizeof(c));
        /* b takes the account's turn, c must wait for the next one */
        auth_login_start(s, "victor", 6, "guess5", 6, (struct sockaddr *)&other, on_login, &b);
        auth_login_start(s, "victor", 6, "victorpassword", 14, (struct sockaddr *)&home, on_login,
                         &a);
        uv_walk(&loop, count_timers, &timers);
        CHECK(timers == 0, "owner at a known-good address checked at once (no wait)");
        other = ip4("203.0.113.52");
        auth_login_start(s, "victor", 6, "guess6", 6, (struct sockaddr *)&other, on_login, &c);
        uv_walk(&loop, count_timers, &timers);
        CHECK(timers == 1, "while a guess on the account from elsewhere waits");
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(a.result == AUTH_OK && b.result == AUTH_E_FAIL && c.result == AUTH_E_FAIL,
              "all answered");
    }

    /* at most 3 attempts in progress per address: the fourth is refused
     * at once, unchecked */
    {
        struct sockaddr_in sin = ip4("198.51.100.77");
        struct result res[4];
        unsigned long before = auth_crypt_calls();

        memset(res, 0, sizeof(res));
        for (int i = 0; i < 4; i++) {
            char name[16];

            snprintf(name, sizeof(name), "ghost%d", i);
            auth_login_start(s, name, strlen(name), "pw", 2, (struct sockaddr *)&sin, on_login,
                             &res[i]);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(res[3].calls == 1 && res[3].result == AUTH_E_BUSY,
              "fourth attempt in progress from one address: BUSY");
        CHECK(res[0].result == AUTH_E_FAIL && res[2].result == AUTH_E_FAIL &&
                  auth_crypt_calls() - before == 3,
              "the three others checked; the busy one not");
    }
    auth_service_free(s);
    uv_run(&loop, UV_RUN_DEFAULT); /* the service's handle closes */
    CHECK(uv_loop_close(&loop) == 0, "loop closes: no handle left behind");
    auth_db_close(db);
}

/* A service with the cache off and no delay still answers correctly. */
static void test_service_nocache(void)
{
    struct auth_service_opts o = {
        .data_dir = tmpdir,
        .default_domain = "",
        .cache_ttl_s = 0,
        .failure_delay_ms = 0,
        .failure_delay_max_ms = 0,
    };
    struct auth_service *s = NULL;
    uv_loop_t loop;
    char err[256];
    unsigned long crypts;
    int r;

    uv_loop_init(&loop);
    CHECK(auth_service_new(&loop, &o, &s, err, sizeof(err)) == AUTH_OK, "service without cache");
    if (!s)
        return;
    r = login(&loop, s, "erin@example.org", "erinnewpassword", "198.51.100.1", NULL, NULL);
    r = login_crypts(&loop, s, "erin@example.org", "erinnewpassword", "198.51.100.1", NULL,
                     &crypts);
    CHECK(r == AUTH_OK && crypts == 1, "no cache: yescrypt every time");
    r = login(&loop, s, "erin", "erinnewpassword", "198.51.100.1", NULL, NULL);
    CHECK(r == AUTH_E_FAIL, "no default_domain: a bare name fails");
    auth_service_free(s);
    uv_run(&loop, UV_RUN_DEFAULT); /* the service's handle closes */
    CHECK(uv_loop_close(&loop) == 0, "loop closes");
}

/* ---- the login service's own threads ---- */

#define BLOCKERS 4 /* UV_THREADPOOL_SIZE, set in main */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int started;
    bool released;
    bool timed_out;
} fill = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, false};

/* Holds a libuv pool thread until the login is answered (or 3 s). */
static void block_work(uv_work_t *w)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3;
    pthread_mutex_lock(&fill.mu);
    fill.started++;
    pthread_cond_broadcast(&fill.cond);
    while (!fill.released)
        if (pthread_cond_timedwait(&fill.cond, &fill.mu, &until) != 0) {
            fill.timed_out = true;
            break;
        }
    pthread_mutex_unlock(&fill.mu);
}

static void block_done(uv_work_t *w, int status)
{
}

static void on_login_release(void *arg, int result, const struct auth_account *acct)
{
    on_login(arg, result, acct);
    pthread_mutex_lock(&fill.mu);
    fill.released = true;
    pthread_cond_broadcast(&fill.cond);
    pthread_mutex_unlock(&fill.mu);
}

/* Every libuv pool thread is taken by other work: a login is checked all
 * the same, on the service's own threads. */
static void test_service_own_threads(void)
{
    struct auth_service_opts o = {
        .data_dir = tmpdir,
        .default_domain = "example.org",
        .threads = 1,
    };
    struct sockaddr_in sin = ip4("198.51.100.2");
    struct auth_service *s = NULL;
    uv_work_t w[BLOCKERS];
    struct result res;
    uv_loop_t loop;
    char err[256];
    bool full_meanwhile;

    uv_loop_init(&loop);
    CHECK(auth_service_new(&loop, &o, &s, err, sizeof(err)) == AUTH_OK, "service with 1 thread");
    if (!s)
        return;
    for (int i = 0; i < BLOCKERS; i++)
        uv_queue_work(&loop, &w[i], block_work, block_done);
    pthread_mutex_lock(&fill.mu);
    while (fill.started < BLOCKERS)
        pthread_cond_wait(&fill.cond, &fill.mu);
    pthread_mutex_unlock(&fill.mu);

    memset(&res, 0, sizeof(res));
    auth_login_start(s, "erin", 4, "erinnewpassword", 15, (struct sockaddr *)&sin, on_login_release,
                     &res);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_mutex_lock(&fill.mu);
    full_meanwhile = !fill.timed_out;
    pthread_mutex_unlock(&fill.mu);
    CHECK(res.calls == 1 && res.result == AUTH_OK && full_meanwhile,
          "login answered while every libuv pool thread was busy");
    auth_service_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "loop closes");
}

static void cleanup(void)
{
    char p[512];
    static const char *files[] = {"accounts.sqlite", "accounts.sqlite-wal", "accounts.sqlite-shm"};

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tmpdir, files[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

int main(void)
{
    /* before libuv's pool starts: BLOCKERS threads */
    setenv("UV_THREADPOOL_SIZE", "4", 1);
    if (check_mkdtemp(tmpdir, sizeof(tmpdir), "coffre-test-auth") != 0)
        return 1;
    test_normalize();
    test_password();
    test_db();
    test_db_upgrade();
    test_service();
    test_service_nocache();
    test_throttle_model();
    test_service_own_threads();
    cleanup();
    return check_summary();
}
