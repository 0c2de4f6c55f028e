/* Client certificates and accounts: fingerprints pinned to an account in
 * the client_certs table of the accounts database, and the mapping rules
 * of SASL EXTERNAL and require_client_cert (a pinned fingerprint, or a SAN
 * rfc822Name equal to the account's address). */
#include "auth/auth.h"
#include "auth/auth_priv.h"
#include "auth/db.h"
#include "server/base/peercert.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char auth_certs_schema[] =
    "CREATE TABLE IF NOT EXISTS client_certs ("
    " fingerprint TEXT NOT NULL," /* SHA-256 of the DER certificate, lower-case hex */
    " account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    " added INTEGER NOT NULL,"
    " PRIMARY KEY (fingerprint, account_id))";

/* Lower-case hex without ':' into out; -1 unless 64 hex digits. */
static int normalize_fp(const char *in, char *out)
{
    size_t n = 0;

    for (; *in; in++) {
        char c = *in;
        if (c == ':')
            continue;
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n >= AUTH_FINGERPRINT_LEN)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return n == AUTH_FINGERPRINT_LEN ? 0 : -1;
}

int auth_cert_pin_add(struct auth_db *db, const char *address, const char *fingerprint)
{
    char fp[AUTH_FINGERPRINT_LEN + 1];
    struct adb_stmt *st = NULL;
    struct auth_account a;
    int r, rc;

    if (normalize_fp(fingerprint, fp) < 0)
        return AUTH_E_BADADDR;
    if ((rc = auth_user_get(db, address, &a)) != AUTH_OK)
        return rc;
    r = adb_prepare(db,
                    "INSERT INTO client_certs (fingerprint, account_id, added)"
                    " VALUES (?, ?, ?)",
                    &st);
    if (r != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, fp);
    adb_bind_int64(st, 2, a.id);
    adb_bind_int64(st, 3, (int64_t)time(NULL));
    r = adb_step(st);
    if (r == DB_DONE)
        rc = AUTH_OK;
    else if (r == DB_CONSTRAINT)
        rc = AUTH_E_EXISTS;
    else
        rc = AUTH_E_TEMP;
    adb_finalize(st);
    return rc;
}

int auth_cert_pin_del(struct auth_db *db, const char *address, const char *fingerprint)
{
    char fp[AUTH_FINGERPRINT_LEN + 1];
    struct adb_stmt *st = NULL;
    int r;

    if (normalize_fp(fingerprint, fp) < 0)
        return AUTH_E_BADADDR;
    r = adb_prepare(db,
                    "DELETE FROM client_certs WHERE fingerprint = ? AND account_id ="
                    " (SELECT id FROM accounts WHERE address = ?)",
                    &st);
    if (r != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, fp);
    adb_bind_text(st, 2, address);
    return auth_db_change(st);
}

int auth_cert_pin_list(struct auth_db *db, const char *address,
                       int (*cb)(const char *address, const char *fingerprint, int64_t added,
                                 void *arg),
                       void *arg)
{
    struct adb_stmt *st = NULL;
    int r, rc = AUTH_OK;

    r = adb_prepare(db,
                    "SELECT a.address, c.fingerprint, c.added FROM client_certs c"
                    " JOIN accounts a ON a.id = c.account_id"
                    " WHERE ?1 IS NULL OR a.address = ?1 ORDER BY a.address, c.added",
                    &st);
    if (r != DB_OK)
        return AUTH_E_TEMP;
    if (address)
        adb_bind_text(st, 1, address);
    while ((r = adb_step(st)) == DB_ROW) {
        const unsigned char *a = adb_column_text(st, 0), *f = adb_column_text(st, 1);
        if (cb(a ? (const char *)a : "", f ? (const char *)f : "", adb_column_int64(st, 2), arg)) {
            rc = AUTH_E_TEMP;
            break;
        }
    }
    if (rc == AUTH_OK && r != DB_DONE)
        rc = AUTH_E_TEMP;
    adb_finalize(st);
    return rc;
}

int auth_cert_file_fingerprint(const char *path, char *out, char *err, size_t errlen)
{
    gnutls_datum_t data = {0}, der = {0};
    gnutls_x509_crt_t crt = NULL;
    unsigned char md[32];
    size_t mdlen = sizeof(md);
    int r;

    r = gnutls_load_file(path, &data);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", path, gnutls_strerror(r));
        return -1;
    }
    if ((r = gnutls_x509_crt_init(&crt)) == 0) {
        r = gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_PEM);
        if (r < 0)
            r = gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_DER);
        if (r == 0)
            r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
        if (r == 0)
            r = gnutls_fingerprint(GNUTLS_DIG_SHA256, &der, md, &mdlen);
    }
    gnutls_free(der.data);
    gnutls_free(data.data);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (r < 0 || mdlen != sizeof(md)) {
        snprintf(err, errlen, "%s: not a certificate (%s)", path, r < 0 ? gnutls_strerror(r) : "?");
        return -1;
    }
    for (size_t i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Whether fp is pinned to the account of that id: 1, 0, or -1 on error. */
static int pinned(struct auth_db *db, const char *fp, int64_t id)
{
    struct adb_stmt *st = NULL;
    int r;

    if (adb_prepare(db, "SELECT 1 FROM client_certs WHERE fingerprint = ? AND account_id = ?",
                    &st) != DB_OK)
        return -1;
    adb_bind_text(st, 1, fp);
    adb_bind_int64(st, 2, id);
    r = adb_step(st);
    adb_finalize(st);
    return r == DB_ROW ? 1 : r == DB_DONE ? 0 : -1;
}

static bool has_email(const struct peer_cert *peer, const char *address)
{
    for (unsigned i = 0; i < peer->n_emails; i++)
        if (!strcasecmp(peer->emails[i], address))
            return true;
    return false;
}

bool auth_cert_matches(struct auth_db *db, const struct peer_cert *peer,
                       const struct auth_account *acct)
{
    if (!peer || !peer->valid)
        return false;
    return has_email(peer, acct->address) || pinned(db, peer->fingerprint, acct->id) == 1;
}

int auth_cert_map(struct auth_db *db, const struct peer_cert *peer, const char *authzid,
                  struct auth_account *acct)
{
    struct adb_stmt *st = NULL;
    int r;

    if (!peer || !peer->valid)
        return AUTH_E_NOUSER;
    if (authzid && *authzid) {
        r = auth_user_get(db, authzid, acct);
        if (r != AUTH_OK)
            return r;
        return auth_cert_matches(db, peer, acct) ? AUTH_OK : AUTH_E_NOUSER;
    }
    /* no authzid: a pin first (it names one account on purpose) */
    if (adb_prepare(db,
                    "SELECT a.address FROM client_certs c JOIN accounts a"
                    " ON a.id = c.account_id WHERE c.fingerprint = ? ORDER BY c.added"
                    " LIMIT 1",
                    &st) != DB_OK)
        return AUTH_E_TEMP;
    adb_bind_text(st, 1, peer->fingerprint);
    r = adb_step(st);
    if (r == DB_ROW) {
        char addr[AUTH_ADDR_MAX];
        const unsigned char *a = adb_column_text(st, 0);

        snprintf(addr, sizeof(addr), "%s", a ? (const char *)a : "");
        adb_finalize(st);
        return auth_user_get(db, addr, acct);
    }
    adb_finalize(st);
    if (r != DB_DONE)
        return AUTH_E_TEMP;
    for (unsigned i = 0; i < peer->n_emails; i++) {
        r = auth_user_get(db, peer->emails[i], acct);
        if (r != AUTH_E_NOUSER)
            return r;
    }
    return AUTH_E_NOUSER;
}
