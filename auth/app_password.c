/* App passwords: extra passwords of one account, each with a label, each
 * revocable alone, usable only for the services listed with it (IMAP and
 * POP3). Stored in the table app_passwords of the accounts database, hashed
 * with yescrypt like the main password.
 *
 * An app password reads "SSSS-" followed by its secret: SSSS, four lower
 * case letters or digits, is its selector, stored in clear and unique within
 * the account, so that a login checks exactly one app password's hash (see
 * auth/service.c), never one per app password. A generated one is
 * "SSSS-xxxx-xxxx-xxxx-xxxx": 16 random characters of 36 (82 bits) after
 * the selector. */
#include "auth/auth.h"
#include "auth/auth_priv.h"
#include "auth/db.h"

#include <crypt.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALPHABET "abcdefghijklmnopqrstuvwxyz0123456789"
#define ALPHABET_LEN 36
#define SELECTOR_ATTEMPTS 20 /* new selectors drawn when one is taken */
#define TOUCH_EVERY_S 60     /* last_used is written at most once a minute */

static bool selector_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool auth_app_parse(const char *pw, size_t len, char selector[AUTH_APP_SELECTOR_LEN + 1])
{
    if (len < AUTH_APP_SELECTOR_LEN + 1 || pw[AUTH_APP_SELECTOR_LEN] != '-')
        return false;
    for (size_t i = 0; i < AUTH_APP_SELECTOR_LEN; i++)
        if (!selector_char((unsigned char)pw[i]))
            return false;
    if (selector) {
        memcpy(selector, pw, AUTH_APP_SELECTOR_LEN);
        selector[AUTH_APP_SELECTOR_LEN] = '\0';
    }
    return true;
}

/* n characters of ALPHABET, uniformly (bytes >= 252 are drawn again). */
static int random_chars(char *out, size_t n)
{
    unsigned char b[64];
    size_t have = 0;

    while (have < n) {
        if (gnutls_rnd(GNUTLS_RND_KEY, b, sizeof(b)) < 0)
            return AUTH_E_TEMP;
        for (size_t i = 0; i < sizeof(b) && have < n; i++)
            if (b[i] < 252)
                out[have++] = ALPHABET[b[i] % ALPHABET_LEN];
    }
    explicit_bzero(b, sizeof(b));
    return AUTH_OK;
}

int auth_app_generate(char *out, size_t outlen)
{
    char r[AUTH_APP_SELECTOR_LEN + 16];
    size_t o = 0;

    if (outlen < AUTH_APP_GENERATED_LEN + 1 || random_chars(r, sizeof(r)) != AUTH_OK)
        return AUTH_E_TEMP;
    for (size_t i = 0; i < sizeof(r); i++) {
        if (i && i % 4 == 0)
            out[o++] = '-';
        out[o++] = r[i];
    }
    out[o] = '\0';
    explicit_bzero(r, sizeof(r));
    return AUTH_OK;
}

int auth_app_check(const char *pw, size_t len)
{
    if (!auth_app_parse(pw, len, NULL))
        return AUTH_E_WEAKPW;
    return auth_password_check(pw + AUTH_APP_SELECTOR_LEN + 1, len - AUTH_APP_SELECTOR_LEN - 1,
                               NULL, 0) == AUTH_OK
               ? AUTH_OK
               : AUTH_E_WEAKPW;
}

bool auth_app_label_ok(const char *label)
{
    size_t n = strlen(label);
    bool digits = true;

    if (n == 0 || n >= AUTH_APP_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)label[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._-+@", c)))
            return false;
        if (c < '0' || c > '9')
            digits = false;
    }
    return !digits; /* all digits would read as an id */
}

bool auth_app_service_ok(const char *services, const char *service)
{
    size_t n = service ? strlen(service) : 0;

    if (!n)
        return false;
    for (const char *p = services; *p;) {
        size_t l = strcspn(p, ",");

        if (l == n && !memcmp(p, service, n))
            return true;
        p += l;
        if (*p == ',')
            p++;
    }
    return false;
}

static void row_to_app(struct adb_stmt *st, struct auth_app_password *a)
{
    const unsigned char *t;

    memset(a, 0, sizeof(*a));
    a->id = adb_column_int64(st, 0);
    t = adb_column_text(st, 1);
    snprintf(a->selector, sizeof(a->selector), "%s", t ? (const char *)t : "");
    t = adb_column_text(st, 2);
    snprintf(a->label, sizeof(a->label), "%s", t ? (const char *)t : "");
    t = adb_column_text(st, 3);
    snprintf(a->services, sizeof(a->services), "%s", t ? (const char *)t : "");
    a->created = adb_column_int64(st, 4);
    a->last_used = adb_column_int64(st, 5);
}

#define APP_COLUMNS "id, selector, label, services, created, last_used, hash"

int auth_app_lookup(struct auth_db *db, int64_t account, const char *selector,
                    struct auth_app_password *out, char *hash, size_t hashlen)
{
    struct adb_stmt *st = NULL;
    int r, rc;

    r = adb_prepare(
        db, "SELECT " APP_COLUMNS " FROM app_passwords WHERE account = ? AND selector = ?", &st);
    if (r != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_int64(st, 1, account);
    adb_bind_text(st, 2, selector);
    r = adb_step(st);
    if (r == DB_ROW) {
        const unsigned char *h = adb_column_text(st, 6);

        row_to_app(st, out);
        snprintf(hash, hashlen, "%s", h ? (const char *)h : "");
        rc = AUTH_OK;
    } else {
        rc = r == DB_DONE ? AUTH_E_NOUSER : AUTH_E_TEMP;
    }
    adb_finalize(st);
    return rc;
}

void auth_app_touch(struct auth_db *db, const struct auth_app_password *a)
{
    struct adb_stmt *st = NULL;
    int64_t now = (int64_t)time(NULL), id = a->id;

    /* noted lately: not even a write transaction */
    if (a->last_used > now - TOUCH_EVERY_S && a->last_used <= now)
        return;

    if (adb_prepare(db, "UPDATE app_passwords SET last_used = ? WHERE id = ? AND last_used <= ?",
                    &st) != DB_OK)
        return;
    adb_bind_int64(st, 1, now);
    adb_bind_int64(st, 2, id);
    adb_bind_int64(st, 3, now - TOUCH_EVERY_S);
    (void)adb_step(st); /* a busy database only loses this note */
    adb_finalize(st);
}

static int count_for(struct auth_db *h, int64_t account, int64_t *n)
{
    struct adb_stmt *st = NULL;
    int r;

    if (adb_prepare(h, "SELECT count(*) FROM app_passwords WHERE account = ?", &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_int64(st, 1, account);
    r = adb_step(st);
    *n = adb_column_int64(st, 0);
    adb_finalize(st);
    return r == DB_ROW ? AUTH_OK : AUTH_E_TEMP;
}

/* 1 when the account has a row with that column equal to value, 0, or <0. */
static int taken(struct auth_db *h, int64_t account, const char *column, const char *value)
{
    char sql[128];
    struct adb_stmt *st = NULL;
    int r;

    snprintf(sql, sizeof(sql), "SELECT 1 FROM app_passwords WHERE account = ? AND %s = ?", column);
    if (adb_prepare(h, sql, &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_int64(st, 1, account);
    adb_bind_text(st, 2, value);
    r = adb_step(st);
    adb_finalize(st);
    return r == DB_ROW ? 1 : r == DB_DONE ? 0 : AUTH_E_TEMP;
}

/* Ends a write transaction begun with BEGIN IMMEDIATE: committed when rc
 * is AUTH_OK (AUTH_E_TEMP when that fails), else rolled back. Finalizes st
 * (may be NULL). Returns the outcome. */
static int end_write(struct auth_db *h, struct adb_stmt *st, int rc)
{
    adb_finalize(st);
    if (rc == AUTH_OK && adb_commit(h) != DB_OK)
        rc = AUTH_E_TEMP;
    if (rc != AUTH_OK)
        adb_rollback(h);
    return rc;
}

int auth_app_add(struct auth_db *db, const char *address, const char *label, char *password,
                 size_t pwsize, unsigned max, struct auth_app_password *out)
{
    struct auth_db *h = db;
    char hash[CRYPT_OUTPUT_SIZE], sel[AUTH_APP_SELECTOR_LEN + 1];
    struct auth_account acct;
    struct adb_stmt *st = NULL;
    bool generate = password[0] == '\0';
    int64_t n;
    int r, rc;

    if (!auth_app_label_ok(label))
        return AUTH_E_BADLABEL;
    if (!generate && auth_app_check(password, strlen(password)) != AUTH_OK)
        return AUTH_E_WEAKPW;
    /* one write transaction: the count, the label and the selector are
     * checked against what is inserted (the hash, tens of ms, runs inside) */
    if (adb_begin(h) != DB_OK)
        return AUTH_E_TEMP;
    rc = auth_db_lookup(db, address, &acct, NULL, 0);
    if (rc != AUTH_OK)
        goto out;
    if ((rc = count_for(h, acct.id, &n)) != AUTH_OK)
        goto out;
    if (max && n >= (int64_t)max) {
        rc = AUTH_E_LIMIT;
        goto out;
    }
    if ((r = taken(h, acct.id, "label", label)) != 0) {
        rc = r > 0 ? AUTH_E_EXISTS : AUTH_E_TEMP;
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        if (generate && auth_app_generate(password, pwsize) != AUTH_OK) {
            rc = AUTH_E_TEMP;
            goto out;
        }
        auth_app_parse(password, strlen(password), sel);
        if ((r = taken(h, acct.id, "selector", sel)) < 0) {
            rc = AUTH_E_TEMP;
            goto out;
        }
        if (r == 0)
            break;
        if (!generate || attempt >= SELECTOR_ATTEMPTS) {
            rc = AUTH_E_SELECTOR;
            goto out;
        }
    }
    if (auth_password_hash(password, hash, sizeof(hash)) != AUTH_OK) {
        rc = AUTH_E_TEMP;
        goto out;
    }
    r = adb_prepare(h,
                    "INSERT INTO app_passwords (account, selector, label, hash, services,"
                    " created, last_used) VALUES (?, ?, ?, ?, ?, ?, 0) RETURNING id",
                    &st);
    if (r == DB_OK) {
        adb_bind_int64(st, 1, acct.id);
        adb_bind_text(st, 2, sel);
        adb_bind_text(st, 3, label);
        adb_bind_text(st, 4, hash);
        adb_bind_text(st, 5, AUTH_APP_SERVICES);
        adb_bind_int64(st, 6, (int64_t)time(NULL));
        r = adb_step(st);
    }
    explicit_bzero(hash, sizeof(hash));
    if (r != DB_ROW) {
        rc = AUTH_E_TEMP;
        goto out;
    }
    if (out) {
        memset(out, 0, sizeof(*out));
        out->id = adb_column_int64(st, 0);
        snprintf(out->selector, sizeof(out->selector), "%s", sel);
        snprintf(out->label, sizeof(out->label), "%s", label);
        snprintf(out->services, sizeof(out->services), "%s", AUTH_APP_SERVICES);
    }
    rc = AUTH_OK;
out:
    return end_write(h, st, rc);
}

int auth_app_list(struct auth_db *db, const char *address,
                  int (*cb)(const struct auth_app_password *a, void *arg), void *arg)
{
    struct auth_app_password a;
    struct auth_account acct;
    struct adb_stmt *st = NULL;
    int r;

    r = auth_db_lookup(db, address, &acct, NULL, 0);
    if (r != AUTH_OK)
        return r;
    if (adb_prepare(db, "SELECT " APP_COLUMNS " FROM app_passwords WHERE account = ? ORDER BY id",
                    &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_int64(st, 1, acct.id);
    while ((r = adb_step(st)) == DB_ROW) {
        row_to_app(st, &a);
        if (cb(&a, arg) != 0) {
            r = DB_DONE;
            break;
        }
    }
    adb_finalize(st);
    return r == DB_DONE ? AUTH_OK : AUTH_E_TEMP;
}

int auth_app_del(struct auth_db *db, const char *address, const char *which,
                 struct auth_app_password *out)
{
    struct auth_db *h = db;
    struct auth_account acct;
    struct adb_stmt *st = NULL;
    char *end;
    long long id = strtoll(which, &end, 10);
    bool by_id = which[0] >= '0' && which[0] <= '9' && *end == '\0';
    int r, rc;

    if (adb_begin(h) != DB_OK)
        return AUTH_E_TEMP;
    rc = auth_db_lookup(db, address, &acct, NULL, 0);
    if (rc != AUTH_OK)
        goto out;
    r = adb_prepare(h,
                    by_id ? "SELECT " APP_COLUMNS " FROM app_passwords WHERE account = ? AND id = ?"
                          : "SELECT " APP_COLUMNS
                            " FROM app_passwords WHERE account = ? AND label = ?",
                    &st);
    if (r != DB_OK) {
        rc = AUTH_E_TEMP;
        goto out;
    }
    adb_bind_int64(st, 1, acct.id);
    if (by_id)
        adb_bind_int64(st, 2, id);
    else
        adb_bind_text(st, 2, which);
    r = adb_step(st);
    if (r != DB_ROW) {
        rc = r == DB_DONE ? AUTH_E_NOAPP : AUTH_E_TEMP;
        goto out;
    }
    if (out)
        row_to_app(st, out);
    id = adb_column_int64(st, 0);
    adb_finalize(st);
    st = NULL;
    if (adb_prepare(h, "DELETE FROM app_passwords WHERE id = ?", &st) != DB_OK) {
        rc = AUTH_E_TEMP;
        goto out;
    }
    adb_bind_int64(st, 1, id);
    rc = adb_step(st) == DB_DONE ? AUTH_OK : AUTH_E_TEMP;
out:
    return end_write(h, st, rc);
}
