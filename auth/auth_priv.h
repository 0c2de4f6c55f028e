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
/* The SQLite handle, for auth/certs.c. */
struct sqlite3;
struct sqlite3 *auth_db_handle(struct auth_db *db);
/* CREATE TABLE IF NOT EXISTS for the pins, run at open. */
extern const char auth_certs_schema[];

/* Number of yescrypt computations (hash or verify) run by this process;
 * lets the tests see whether the authentication cache answered. */
unsigned long auth_crypt_calls(void);

#endif
