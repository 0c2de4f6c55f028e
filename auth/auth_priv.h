/* Private to the auth module and its unit tests: helpers shared between the
 * account database, the password code and the login service. */
#ifndef COFFRE_AUTH_PRIV_H
#define COFFRE_AUTH_PRIV_H

#include "auth/auth.h"

/* Reads one account with its stored hash. Returns 0, AUTH_E_NOUSER or
 * AUTH_E_TEMP. Safe from several threads on one db. */
int auth_db_lookup(struct auth_db *db, const char *address, struct auth_account *acct, char *hash,
                   size_t hashlen);

/* The same, with the SCRAM secret's text ("" when the account has none). */
int auth_db_lookup_scram(struct auth_db *db, const char *address, struct auth_account *acct,
                         char *hash, size_t hashlen, char *scram, size_t scramlen);

/* Stores the SCRAM secret of an account that has none, if its hash is
 * still hash (the password verified). AUTH_OK, AUTH_E_NOUSER (nothing
 * changed) or AUTH_E_TEMP. */
int auth_db_scram_fill(struct auth_db *db, const char *address, const char *hash,
                       const char *scram);

/* Number of yescrypt computations (hash or verify) run by this process;
 * lets the tests see whether the authentication cache answered. */
unsigned long auth_crypt_calls(void);

#endif
