/* Private to the auth module and its unit tests: helpers shared between the
 * account database, the password code and the login service. */
#ifndef COFFRE_AUTH_PRIV_H
#define COFFRE_AUTH_PRIV_H

#include "auth/auth.h"

/* Reads one account with its stored hash. Returns 0, AUTH_E_NOUSER or
 * AUTH_E_TEMP. Safe from several threads on one db. */
int auth_db_lookup(struct auth_db *db, const char *address, struct auth_account *acct, char *hash,
                   size_t hashlen);

/* Certificate mapping (auth/certs.c), blocking. The account peer maps to
 * (authzid "" or NULL: the first pinned one, else the first SAN address
 * that is an account; otherwise authzid itself when the certificate maps to
 * it): AUTH_OK, AUTH_E_NOUSER (maps to nothing, or not to authzid) or
 * AUTH_E_TEMP. */
int auth_cert_map(struct auth_db *db, const struct peer_cert *peer, const char *authzid,
                  struct auth_account *acct);
/* Whether a valid peer certificate maps to acct. */
bool auth_cert_matches(struct auth_db *db, const struct peer_cert *peer,
                       const struct auth_account *acct);
/* CREATE TABLE IF NOT EXISTS for the pins, run at open. */
extern const char auth_certs_schema[];
/* The same, with the SCRAM secret's text ("" when the account has none). */
int auth_db_lookup_scram(struct auth_db *db, const char *address, struct auth_account *acct,
                         char *hash, size_t hashlen, char *scram, size_t scramlen);

/* Stores the SCRAM secret of an account that has none, if its hash is
 * still hash (the password verified). AUTH_OK, AUTH_E_NOUSER (nothing
 * changed) or AUTH_E_TEMP. */
int auth_db_scram_fill(struct auth_db *db, const char *address, const char *hash,
                       const char *scram);

/* Steps a statement that changes one row (an account's, a pin, a slot)
 * and finalizes it: AUTH_OK when a row changed, AUTH_E_NOUSER when none
 * matched, AUTH_E_TEMP on an error. */
struct adb_stmt;
int auth_db_change(struct adb_stmt *st);
/* "UPDATE ... SET col = ?1 WHERE address = ?2" with text (or num when
 * text is NULL): auth_db_change's answers. */
int auth_db_update_one(struct auth_db *db, const char *sql, const char *address, const char *text,
                       int64_t num);

/* Number of yescrypt computations (hash or verify) run by this process;
 * lets the tests see whether the authentication cache answered. */
unsigned long auth_crypt_calls(void);

/* The SQLite connection of db (unit tests); NULL with PostgreSQL. */
struct sqlite3;
struct sqlite3 *auth_db_handle(struct auth_db *db);

/* The app password table, made when the database is opened. */
#define AUTH_APP_SCHEMA_SQL                                                                        \
    "CREATE TABLE IF NOT EXISTS app_passwords ("                                                   \
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"                                                       \
    " account INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"                         \
    " selector TEXT NOT NULL,"                                                                     \
    " label TEXT NOT NULL,"                                                                        \
    " hash TEXT NOT NULL,"                                                                         \
    " services TEXT NOT NULL,"                                                                     \
    " created INTEGER NOT NULL,"                                                                   \
    " last_used INTEGER NOT NULL DEFAULT 0,"                                                       \
    " UNIQUE (account, selector), UNIQUE (account, label));"

/* The slots table (auth/slots.c), made when the database is opened. */
#define AUTH_SLOTS_SCHEMA_SQL                                                                      \
    "CREATE TABLE IF NOT EXISTS slots ("                                                           \
    " name TEXT PRIMARY KEY,"                                                                      \
    " host TEXT NOT NULL,"                                                                         \
    " imap_port INTEGER NOT NULL,"                                                                 \
    " pop3_port INTEGER NOT NULL,"                                                                 \
    " lmtp_port INTEGER NOT NULL,"                                                                 \
    " data_dir TEXT NOT NULL DEFAULT '');"

/* The path of data_dir's SQLite accounts file (see auth_db_configure).
 * 0, or -1 when it does not fit. */
int auth_db_sqlite_path(const char *data_dir, char *path, size_t cap);

/* The app password of account with this selector, with its hash. AUTH_OK,
 * AUTH_E_NOUSER (none) or AUTH_E_TEMP. Safe from several threads. */
int auth_app_lookup(struct auth_db *db, int64_t account, const char *selector,
                    struct auth_app_password *out, char *hash, size_t hashlen);
/* Notes a login with app password a, as read by auth_app_lookup (written
 * at most once a minute). */
void auth_app_touch(struct auth_db *db, const struct auth_app_password *a);

/* The ACL tables (auth/acl.c), made when the database is opened, and the
 * bound on one mailbox's entries (acl_db_set_max_entries). */
extern const char acl_schema_sql[];
unsigned auth_db_acl_max(const struct auth_db *db);

#endif
