/* auth: the account database (<data_dir>/accounts.sqlite), password hashing
 * with libxcrypt, the login service the daemon uses (verification on the
 * thread pool, authentication cache, failed-login throttling) and SASL
 * decoding. The only header of this module that others include. */
#ifndef COFFRE_AUTH_H
#define COFFRE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <uv.h>

#define AUTH_ADDR_MAX 256      /* longest account address, NUL included */
#define AUTH_PASSWORD_MAX 1024 /* longest password accepted, in bytes */
#define AUTH_PASSWORD_MIN 8    /* shortest password coffrectl accepts */

/* SCRAM-SHA-256 (auth/scram.c) */
#define AUTH_SCRAM_KEY_LEN 32        /* SHA-256 */
#define AUTH_SCRAM_SALT_LEN 16       /* salts made here */
#define AUTH_SCRAM_SALT_MAX 64       /* salts accepted from the database */
#define AUTH_SCRAM_ITER_MIN 4096     /* RFC 7677 section 4 */
#define AUTH_SCRAM_ITER_MAX 10000000 /* what a client may be asked to compute */
#define AUTH_SCRAM_ITER_DEFAULT 10000
#define AUTH_SCRAM_TEXT_MAX 256 /* the secret's text form, NUL included */

/* Error codes (negative), shared by the account functions. */
enum {
    AUTH_OK = 0,
    AUTH_E_FAIL = -1,      /* wrong password or unknown user: one answer */
    AUTH_E_DISABLED = -2,  /* right password, account disabled */
    AUTH_E_TEMP = -3,      /* database or system error: try later */
    AUTH_E_EXISTS = -4,    /* user add: address taken */
    AUTH_E_NOUSER = -5,    /* admin operations on an unknown address */
    AUTH_E_BADADDR = -6,   /* not a valid address */
    AUTH_E_WEAKPW = -7,    /* empty, too short, too long or containing NUL/CR/LF */
    AUTH_E_BUSY = -8,      /* login: too many in progress for the address or account */
    AUTH_E_LIMIT = -20,    /* app password add: the account has max_app_passwords */
    AUTH_E_BADLABEL = -21, /* app password label: empty, long, odd characters, all digits */
    AUTH_E_SELECTOR = -22, /* app password add: its selector is taken in the account */
    AUTH_E_NOAPP = -23,    /* app password del: no such label or id */
};

#define AUTH_APP_LABEL_MAX 64         /* longest app password label, NUL included */
#define AUTH_APP_SELECTOR_LEN 4       /* "SSSS-" starts an app password */
#define AUTH_APP_GENERATED_LEN 24     /* "SSSS-xxxx-xxxx-xxxx-xxxx" */
#define AUTH_APP_SERVICES "imap,pop3" /* what an app password may log in to */
#define AUTH_SLOT_MAX 64              /* longest slot name, NUL included */

struct auth_account {
    int64_t id;                  /* stable; names the user's directory users/<id> */
    char address[AUTH_ADDR_MAX]; /* normalized: lower case, local@domain */
    bool disabled;
    uint64_t quota_bytes;               /* 0 = unlimited */
    uint64_t quota_messages;            /* at most so many messages, 0 = unlimited */
    int64_t created;                    /* unix time */
    bool require_client_cert;           /* password logins need this account's certificate too */
    char app_label[AUTH_APP_LABEL_MAX]; /* login results: the app password used, "" if none */
    char slot[AUTH_SLOT_MAX];           /* the slot that holds it; "" : not sharded */
    char move_to[AUTH_SLOT_MAX];        /* target of a move in progress; "" : not moving */
    int64_t moved_at;                   /* unix time a move last put it on its slot; 0: never */
};

/* A coffred slot of a sharded installation (the slots table): where nginx
 * and Postfix send an account's sessions and mail. */
struct auth_slot {
    char name[AUTH_SLOT_MAX];
    char host[64];                            /* an IP address */
    unsigned imap_port, pop3_port, lmtp_port; /* its plaintext listeners for the proxy */
    char data_dir[4096]; /* its data directory as seen from here, "" = unknown */
};

struct peer_cert; /* server/base/peercert.h: a client certificate as TLS verified it */

/* ---- addresses ---- */

/* Normalizes a login name or address: lower case, "@default_domain" added
 * when there is no '@' (refused when default_domain is empty), checked for
 * allowed characters (no control chars, no spaces, no '/', exactly one '@',
 * non-empty local part and domain). Returns 0 or AUTH_E_BADADDR. */
int auth_normalize_address(const char *in, size_t len, const char *default_domain, char *out,
                           size_t outlen);

/* ---- passwords ---- */

/* Hashes with libxcrypt's strongest default (yescrypt). out holds
 * CRYPT_OUTPUT_SIZE bytes. Returns 0 or AUTH_E_TEMP. Blocking (tens of ms). */
int auth_password_hash(const char *pw, char *out, size_t outlen);

/* Verifies pw against a stored hash, comparing in constant time. Blocking. */
bool auth_password_verify(const char *pw, const char *hash);

/* Refuses empty, short (< AUTH_PASSWORD_MIN), over-long passwords and those
 * with NUL, CR or LF. Returns 0 or AUTH_E_WEAKPW with a reason in err. */
int auth_password_check(const char *pw, size_t len, char *err, size_t errlen);

/* ---- account database (blocking; coffrectl and the thread pool) ---- */

struct auth_db;

enum { AUTH_BACKEND_SQLITE = 0, AUTH_BACKEND_POSTGRESQL = 1 };

/* The process's account directory, from the settings accounts_backend
 * ("sqlite" or "postgresql"), accounts_dsn (sqlite: "" or the absolute
 * path of the accounts file; postgresql: a libpq connection string) and
 * data_dir. Called once by coffred and coffrectl after reading the
 * configuration, before any thread opens a database. auth_db_open(data_dir)
 * then opens that directory; any other directory (a backup's) opens its own
 * accounts.sqlite. Without a call: <data_dir>/accounts.sqlite. */
int auth_db_configure(const char *backend, const char *dsn, const char *data_dir, char *err,
                      size_t errlen);
/* Connections to PostgreSQL one directory keeps at most
 * (accounts_pool_size; 8 until set). Call before auth_db_open. */
void auth_db_set_pool_size(unsigned n);
/* The backend auth_db_open(data_dir) uses. */
int auth_db_backend(const char *data_dir);

/* Opens the account directory of data_dir (see auth_db_configure); with
 * SQLite, creating the file when missing, in WAL mode, safe against
 * concurrent coffrectl and coffred. Returns 0 or AUTH_E_TEMP. */
int auth_db_open(const char *data_dir, struct auth_db **out, char *err, size_t errlen);
void auth_db_close(struct auth_db *db);
/* PBKDF2 iterations of the SCRAM secrets made for passwords set through db
 * (scram_iterations; AUTH_SCRAM_ITER_DEFAULT until set). */
void auth_db_set_scram_iterations(struct auth_db *db, unsigned iter);
unsigned auth_db_scram_iterations(const struct auth_db *db);

/* address must already be normalized. password is checked and hashed here. */
int auth_user_add(struct auth_db *db, const char *address, const char *password,
                  uint64_t quota_bytes, uint64_t quota_messages, struct auth_account *out);
int auth_user_passwd(struct auth_db *db, const char *address, const char *password);
int auth_user_set_disabled(struct auth_db *db, const char *address, bool disabled);
int auth_user_set_quota(struct auth_db *db, const char *address, uint64_t quota_bytes);
int auth_user_set_max_messages(struct auth_db *db, const char *address, uint64_t quota_messages);
int auth_user_set_require_cert(struct auth_db *db, const char *address, bool on);

/* ---- client certificates pinned to accounts (auth/certs.c) ---- */

#define AUTH_FINGERPRINT_LEN 64 /* SHA-256, lower-case hex */

/* Pins a certificate's SHA-256 fingerprint (hex, any case, ':' allowed) to
 * an account: it then maps to it for SASL EXTERNAL and require_client_cert.
 * AUTH_OK, AUTH_E_NOUSER, AUTH_E_EXISTS (pinned already), AUTH_E_BADADDR
 * (not a fingerprint) or AUTH_E_TEMP. */
int auth_cert_pin_add(struct auth_db *db, const char *address, const char *fingerprint);
/* AUTH_OK, or AUTH_E_NOUSER when that pin does not exist. */
int auth_cert_pin_del(struct auth_db *db, const char *address, const char *fingerprint);
/* Each pin (of address, or of every account when NULL), by address. */
int auth_cert_pin_list(struct auth_db *db, const char *address,
                       int (*cb)(const char *address, const char *fingerprint, int64_t added,
                                 void *arg),
                       void *arg);
/* The SHA-256 fingerprint of the first certificate of a PEM or DER file
 * into out (AUTH_FINGERPRINT_LEN + 1 bytes). 0 or -1 with a reason. */
int auth_cert_file_fingerprint(const char *path, char *out, char *err, size_t errlen);
/* Removes the account row; the caller decides about the mail directory. */
int auth_user_del(struct auth_db *db, const char *address, struct auth_account *out);
int auth_user_get(struct auth_db *db, const char *address, struct auth_account *out);
/* Calls cb for each account in address order; cb returning non-zero stops. */
int auth_user_list(struct auth_db *db, int (*cb)(const struct auth_account *a, void *arg),
                   void *arg);

/* ---- slots (auth/slots.c; blocking) ---- */

/* AUTH_OK, AUTH_E_NOUSER (no such slot) or AUTH_E_TEMP. */
int auth_slot_get(struct auth_db *db, const char *name, struct auth_slot *out);
/* Adds or replaces a slot. AUTH_OK, AUTH_E_BADADDR (bad name, host or
 * port) or AUTH_E_TEMP. */
int auth_slot_set(struct auth_db *db, const struct auth_slot *s);
/* AUTH_OK, AUTH_E_NOUSER (no such slot), AUTH_E_EXISTS (accounts live on
 * it or move to it) or AUTH_E_TEMP. */
int auth_slot_del(struct auth_db *db, const char *name);
/* Each slot in name order; cb returning non-zero stops. */
int auth_slot_list(struct auth_db *db, int (*cb)(const struct auth_slot *s, void *arg), void *arg);
/* Whether name is a valid slot name: 1 to 63 of [A-Za-z0-9._-]. */
bool auth_slot_name_ok(const char *name);
/* The account's slot ("" : none); not checked against the slots table.
 * AUTH_OK, AUTH_E_NOUSER, AUTH_E_BADADDR (bad name) or AUTH_E_TEMP. */
int auth_user_set_slot(struct auth_db *db, const char *address, const char *slot);
/* The target of a move in progress, "" when none. The same answers. */
int auth_user_set_move(struct auth_db *db, const char *address, const char *to);
/* The end of a move (coffrectl user move): slot set and move_to cleared in
 * one update. The same answers. */
int auth_user_move_done(struct auth_db *db, const char *address, const char *slot);

/* ---- app passwords (auth/app_password.c; blocking) ---- */

struct auth_app_password {
    int64_t id; /* stable, shown by list, accepted by del */
    char selector[AUTH_APP_SELECTOR_LEN + 1];
    char label[AUTH_APP_LABEL_MAX];
    char services[32]; /* comma-separated, AUTH_APP_SERVICES */
    int64_t created;   /* unix time */
    int64_t last_used; /* unix time of a login with it (to the minute), 0 = never */
};

/* Whether pw has the form of an app password, "SSSS-..." (SSSS lower case
 * letters or digits); selector (may be NULL) receives SSSS. */
bool auth_app_parse(const char *pw, size_t len, char selector[AUTH_APP_SELECTOR_LEN + 1]);
/* A new random app password, AUTH_APP_GENERATED_LEN characters; outlen at
 * least AUTH_APP_GENERATED_LEN + 1. AUTH_OK or AUTH_E_TEMP. */
int auth_app_generate(char *out, size_t outlen);
/* A chosen app password: the form above, then what auth_password_check
 * wants of a password. AUTH_OK or AUTH_E_WEAKPW. */
int auth_app_check(const char *pw, size_t len);
/* Labels: 1 to 63 of [A-Za-z0-9._+@-], not all digits (that reads as an id). */
bool auth_app_label_ok(const char *label);
/* Whether service ("imap", "pop3") is in the comma-separated list. */
bool auth_app_service_ok(const char *services, const char *service);
/* Adds an app password to address's account. password holds a chosen one,
 * or "" to generate one there (pwsize bytes, at least
 * AUTH_APP_GENERATED_LEN + 1). At most max per account (0: no limit).
 * AUTH_OK, AUTH_E_NOUSER, AUTH_E_BADLABEL, AUTH_E_WEAKPW, AUTH_E_EXISTS
 * (label taken), AUTH_E_SELECTOR, AUTH_E_LIMIT or AUTH_E_TEMP. */
int auth_app_add(struct auth_db *db, const char *address, const char *label, char *password,
                 size_t pwsize, unsigned max, struct auth_app_password *out);
/* Calls cb for each app password of the account, oldest first. */
int auth_app_list(struct auth_db *db, const char *address,
                  int (*cb)(const struct auth_app_password *a, void *arg), void *arg);
/* Removes the app password whose label, or id when which is all digits, is
 * which. AUTH_OK, AUTH_E_NOUSER, AUTH_E_NOAPP or AUTH_E_TEMP. */
int auth_app_del(struct auth_db *db, const char *address, const char *which,
                 struct auth_app_password *out);

/* ---- the login service (daemon, loop thread) ---- */

struct auth_service_opts {
    const char *data_dir;
    const char *default_domain;
    unsigned cache_ttl_s;          /* 0 disables the authentication cache */
    unsigned failure_delay_ms;     /* delay after the first failure */
    unsigned failure_delay_max_ms; /* cap of the growing delay */
    unsigned client_prefix_v4;     /* addresses throttled as one client (0: 32) */
    unsigned client_prefix_v6;     /* the same for IPv6 (0: 64) */
    unsigned max_pending_per_ip;   /* logins waiting or checked per client group (0: no limit) */
    unsigned max_pending_per_user; /* the same per account name (0: no limit) */
    unsigned threads;              /* password checks at once; 0: AUTH_THREADS_DEFAULT */
    unsigned scram_iterations;     /* of SCRAM secrets made at login; 0: the default */
    unsigned acl_max_entries;      /* entries per mailbox's ACL; 0: ACL_MAX_ENTRIES_DEFAULT */
};

#define AUTH_THREADS_DEFAULT 2

struct auth_service;

/* Opens the account database and makes the dummy hash for unknown users
 * (one yescrypt computation, at start-up). */
int auth_service_new(uv_loop_t *loop, const struct auth_service_opts *o, struct auth_service **out,
                     char *err, size_t errlen);
/* Callers cancel their logins first. Any login still pending is cancelled
 * here (its callback is not called). The service's threads are joined once
 * no work is pending (a check already running is waited for). Memory goes
 * back when the pending work or timers end and the service's handle is
 * closed, which happens only if the loop runs again (as it must anyway to
 * close handles); until then nothing touches freed memory. May run after
 * uv_run has returned. */
void auth_service_free(struct auth_service *s);

/* Result of a login. result is AUTH_OK, AUTH_E_FAIL, AUTH_E_DISABLED,
 * AUTH_E_TEMP or AUTH_E_BUSY (too many logins in progress for the client's
 * address group or the account; nothing was checked); acct is filled only on
 * AUTH_OK (borrowed for the call). An attempt on a throttled address or
 * account waits before it is checked, and every answer given while failures
 * are counted is held as long as a failure's (see service.c), so the caller
 * replies at once. Runs on the loop thread. */
typedef void (*auth_login_cb)(void *arg, int result, const struct auth_account *acct);

struct auth_login;

/* Starts checking user/password for a client at remote. The name is
 * normalized (default_domain added). The password is copied and wiped after
 * use. Verification (database read, yescrypt or the cache) runs on the
 * service's own threads (never behind mail work on libuv's pool); an unknown
 * user costs the same as a wrong password. Returns a handle,
 * or NULL on allocation failure. */
struct auth_login *auth_login_start(struct auth_service *s, const char *user, size_t ulen,
                                    const char *pw, size_t pwlen, const struct sockaddr *remote,
                                    auth_login_cb cb, void *arg);

/* The same for a mail service (service "imap" or "pop3"): the password may
 * also be one of the account's app passwords allowed for that service; the
 * account passed to cb then names it in app_label. auth_login_start accepts
 * the main password only. At most two yescrypt computations per attempt
 * (see service.c), whatever the number of app passwords. */
struct auth_login *auth_login_start_svc(struct auth_service *s, const char *service,
                                        const char *user, size_t ulen, const char *pw, size_t pwlen,
                                        const struct sockaddr *remote, auth_login_cb cb, void *arg);
/* The same with the TLS session's client certificate (NULL: none), which
 * an account with require_client_cert needs besides its password (main or
 * app password): valid, and mapping to that account (a pinned fingerprint
 * or a SAN rfc822Name equal to its address). Refused as a wrong password
 * otherwise. IMAP and POP3 password logins start here; auth_login_start_svc
 * is this without a certificate. */
struct auth_login *auth_login_start_tls(struct auth_service *s, const char *service,
                                        const char *user, size_t ulen, const char *pw, size_t pwlen,
                                        const struct peer_cert *peer, const struct sockaddr *remote,
                                        auth_login_cb cb, void *arg);

/* SASL EXTERNAL (RFC 4422 appendix A): the certificate must be valid and
 * map to an account, by a pinned fingerprint or else by a SAN rfc822Name
 * equal to an account's address; authzid (may be empty) must be empty or
 * that account. Throttled, logged and answered as a password login. */
struct auth_login *auth_login_external(struct auth_service *s, const char *authzid, size_t alen,
                                       const struct peer_cert *peer, const struct sockaddr *remote,
                                       auth_login_cb cb, void *arg);

/* The session went away: cb will not be called; memory is freed by the
 * service when the pending work or delay timer ends (failures are still
 * counted for throttling). Valid while the login is pending and from inside
 * its callback; the handle is gone once the callback has returned. */
void auth_login_cancel(struct auth_login *l);

/* SCRAM-SHA-256's two server steps, through the same threads, throttle
 * and log as password logins. The first gives the salt and iteration
 * count for a name (made up, the same at each exchange, for a name
 * without a secret: an unknown user, or an account whose password was set
 * before SCRAM and not used with PLAIN/LOGIN since); it checks nothing,
 * is never held back and counts no failure. Its callback's result is
 * AUTH_OK (acct NULL), AUTH_E_TEMP or AUTH_E_BUSY; auth_login_scram_params
 * reads the answer from inside the callback. */
struct auth_scram_params {
    unsigned char salt[AUTH_SCRAM_SALT_MAX];
    size_t salt_len;
    unsigned iter;
};
struct auth_login *auth_scram_begin(struct auth_service *s, const char *user, size_t ulen,
                                    const struct sockaddr *remote, auth_login_cb cb, void *arg);
const struct auth_scram_params *auth_login_scram_params(const struct auth_login *l);
/* The second checks the client's proof over AuthMessage against the
 * account's secret, which must still have the salt and count p that the
 * client was given; a failure counts and is held like a wrong password.
 * refuse (static text, or NULL) fails it whatever the proof, with that
 * reason in the log: the protocol layer's own refusals (channel binding
 * mismatch) cost and count the same. On AUTH_OK,
 * auth_login_scram_signature gives the ServerSignature (in the callback).
 * peer is the TLS session's client certificate (NULL: none): an account
 * with require_client_cert fails as with a wrong proof unless it is valid
 * and maps to the account. */
struct auth_login *auth_scram_finish(struct auth_service *s, const char *user, size_t ulen,
                                     const struct auth_scram_params *p, const void *auth_msg,
                                     size_t len, const unsigned char proof[AUTH_SCRAM_KEY_LEN],
                                     const char *refuse, const struct peer_cert *peer,
                                     const struct sockaddr *remote, auth_login_cb cb, void *arg);
const unsigned char *auth_login_scram_signature(const struct auth_login *l);

/* Forgets the authentication cache's entries of address (normalized): the
 * account left this server. Loop thread (a walk of the cache). */
void auth_service_forget(struct auth_service *s, const char *address);

/* Looks an account up by address for delivery (LMTP RCPT): the name is
 * normalized as for a login. Blocking and thread-safe: run it on the thread
 * pool. Returns AUTH_OK, AUTH_E_NOUSER, AUTH_E_BADADDR or AUTH_E_TEMP. */
int auth_service_lookup(struct auth_service *s, const char *address, size_t len,
                        struct auth_account *out);
/* A slot of the directory, for the daemon's pool threads: blocking,
 * thread-safe. AUTH_OK, AUTH_E_NOUSER or AUTH_E_TEMP. */
int auth_service_slot(struct auth_service *s, const char *name, struct auth_slot *out);

/* ---- login tickets (auth/ticket.c; see there for the form) ---- */

#define AUTH_TICKET_MAX 80     /* a ticket's text, NUL included */
#define AUTH_TICKET_IP_MAX 48  /* a client address's text, NUL included */
#define AUTH_TICKET_KEY_MIN 32 /* bytes of ticket_key_file at least */
#define AUTH_TICKET_KEY_MAX 4096

/* A ticket for address (normalized) logging in from client_ip (the text
 * auth_ticket_ip gives), good until expiry (unix time). AUTH_OK, or
 * AUTH_E_FAIL (no key, too long), AUTH_E_TEMP (GnuTLS). */
int auth_ticket_make(const unsigned char *key, size_t keylen, const char *address,
                     const char *client_ip, int64_t expiry, char *out, size_t cap);
/* Whether ticket[0..len) is a ticket made with key for address and
 * client_ip that has not expired at now: AUTH_OK or AUTH_E_FAIL. Constant
 * time in the MAC. */
int auth_ticket_check(const unsigned char *key, size_t keylen, const char *ticket, size_t len,
                      const char *address, const char *client_ip, int64_t now);
/* Whether a password has a ticket's form (and is then checked as one on a
 * connection from proxy_networks). */
bool auth_ticket_shape(const char *pw, size_t len);
/* The text of an address as tickets bind it (a v4-mapped IPv6 address as
 * IPv4). AUTH_OK or AUTH_E_FAIL. */
int auth_ticket_ip(const struct sockaddr *sa, char *out, size_t cap);
/* Reads ticket_key_file: a regular file of AUTH_TICKET_KEY_MIN to cap
 * bytes that other users can neither read nor write (its owner and group
 * may). AUTH_OK with the key's length in *len, else a reason in err. */
int auth_ticket_key_load(const char *path, unsigned char *key, size_t cap, size_t *len, char *err,
                         size_t errlen);

/* The login service's ticket key (len 0: tickets off) and their lifetime.
 * Loop thread; replaces the previous key (at reload). */
void auth_service_set_ticket_key(struct auth_service *s, const unsigned char *key, size_t len,
                                 unsigned lifetime_s);
/* Whether a ticket key is set. */
bool auth_service_tickets(const struct auth_service *s);
/* A ticket for address from client, good for the lifetime from now.
 * AUTH_OK, AUTH_E_FAIL when tickets are off. Loop thread. */
int auth_service_ticket_make(struct auth_service *s, const char *address,
                             const struct sockaddr *client, char *out, size_t cap);
/* A login with a ticket in place of the password, for a connection from
 * proxy_networks: checked with the service's key against user (normalized)
 * and remote (the client's address the proxy passed on), then the account
 * read as for a password login (it must exist and be enabled); no hashing.
 * Throttled, counted and answered as a password login (an invalid ticket
 * is a wrong password). */
struct auth_login *auth_login_ticket(struct auth_service *s, const char *service, const char *user,
                                     size_t ulen, const char *ticket, size_t tlen,
                                     const struct sockaddr *remote, auth_login_cb cb, void *arg);

/* ---- SASL ---- */

/* SASL PLAIN message (RFC 4616): [authzid] NUL authcid NUL passwd. An authzid
 * other than empty or equal to authcid is refused. Pointers are into msg. */
struct auth_sasl_plain {
    const char *authcid;
    size_t authcid_len;
    const char *passwd;
    size_t passwd_len;
};
int auth_sasl_plain_parse(const unsigned char *msg, size_t len, struct auth_sasl_plain *out);

/* ---- SCRAM-SHA-256 (auth/scram.c; RFC 5802, RFC 7677) ---- */

/* What the server keeps of a password for SCRAM: enough to check a proof,
 * not enough to log in as the user elsewhere. */
struct auth_scram_secret {
    unsigned iter;
    unsigned char salt[AUTH_SCRAM_SALT_MAX];
    size_t salt_len;
    unsigned char stored_key[AUTH_SCRAM_KEY_LEN];
    unsigned char server_key[AUTH_SCRAM_KEY_LEN];
};

/* RFC 5802's Normalize(): s[0..len) prepared with the PRECIS OpaqueString
 * profile (RFC 8265, the successor of SASLprep; GnuTLS's
 * gnutls_utf8_password_normalize): non-ASCII spaces mapped to U+0020,
 * then Unicode NFC. A string the profile refuses is returned as it is.
 * Writes it NUL-terminated into out; its length, or -1 when it does not
 * fit in cap bytes. */
#define AUTH_SCRAM_PREPARED_MAX (AUTH_PASSWORD_MAX * 3 + 1) /* NFC grows by 3x at most */
long auth_scram_prepare(const char *s, size_t len, char *out, size_t cap);
/* ClientKey, StoredKey and ServerKey from SaltedPassword. */
int auth_scram_keys(const unsigned char salted[AUTH_SCRAM_KEY_LEN],
                    unsigned char client_key[AUTH_SCRAM_KEY_LEN],
                    unsigned char stored_key[AUTH_SCRAM_KEY_LEN],
                    unsigned char server_key[AUTH_SCRAM_KEY_LEN]);
/* PBKDF2-HMAC-SHA-256 of pw (prepared as above) with salt and iter, then the keys. Blocking
 * (iter HMACs). AUTH_OK or AUTH_E_TEMP. */
int auth_scram_derive(const char *pw, size_t pwlen, const unsigned char *salt, size_t salt_len,
                      unsigned iter, struct auth_scram_secret *out);
/* The same with a fresh random salt of AUTH_SCRAM_SALT_LEN bytes. */
int auth_scram_new_secret(const char *pw, size_t pwlen, unsigned iter,
                          struct auth_scram_secret *out);
/* The database's text form, "SCRAM-SHA-256:iter:salt:StoredKey:ServerKey"
 * (base64), and back (strict: AUTH_E_FAIL on anything else). */
int auth_scram_secret_format(const struct auth_scram_secret *sec, char *out, size_t cap);
int auth_scram_secret_parse(const char *text, struct auth_scram_secret *out);
/* Checks a ClientProof over AuthMessage in constant time; on success
 * server_sig is the ServerSignature to send back. */
bool auth_scram_verify(const struct auth_scram_secret *sec, const void *auth_msg, size_t len,
                       const unsigned char proof[AUTH_SCRAM_KEY_LEN],
                       unsigned char server_sig[AUTH_SCRAM_KEY_LEN]);

/* ---- the directory as text (auth/dump.c: its format) ---- */

/* Writes every slot, account (hash, SCRAM secret, quota, state, slot), app
 * password, pinned certificate, group, member, ACL entry and share
 * setting, in one read transaction. *accounts the accounts written.
 * AUTH_OK or AUTH_E_TEMP. */
int auth_dump(struct auth_db *db, FILE *out, unsigned long *accounts);
struct auth_load_report {
    unsigned long accounts, refused, slots, apps, certs, groups, members, acls, shares;
};
/* Reads what auth_dump wrote, in one transaction. An account whose
 * address, or whose id, is taken is refused (refused() says why) with its
 * dependent rows; the rest goes in. AUTH_OK, AUTH_E_BADADDR (not such a
 * file, truncated, a bad line: nothing imported, err says where) or
 * AUTH_E_TEMP. */
int auth_load(struct auth_db *db, FILE *in,
              void (*refused)(void *arg, const char *address, const char *why), void *arg,
              struct auth_load_report *rep, char *err, size_t errlen);

/* ---- backups (auth/backup.c) ---- */

/* An online copy of <data_dir>/accounts.sqlite into dest_file (one read
 * transaction; a standalone file, not in WAL mode). AUTH_OK, AUTH_E_NOUSER
 * when there is no database, AUTH_E_TEMP. */
int auth_db_backup(const char *data_dir, const char *dest_file, char *err, size_t errlen);
/* address's account in a backup's database (src_dir/accounts.sqlite),
 * opened read-only. AUTH_OK, AUTH_E_NOUSER or AUTH_E_TEMP. */
int auth_backup_lookup(const char *src_dir, const char *address, struct auth_account *out);
/* Calls cb with each account of a backup's database, read-only; cb
 * returning non-zero stops (AUTH_E_TEMP). */
int auth_backup_list(const char *src_dir, int (*cb)(const struct auth_account *a, void *arg),
                     void *arg);
/* Adds address's row of the backup's database (src_dir/accounts.sqlite:
 * password hash, quota, ...) to dst_dir's, with the same id when that is
 * free; *out the account as added. AUTH_E_EXISTS when dst_dir has the
 * address already (*out then that account), AUTH_E_NOUSER when the backup
 * lacks it. */
int auth_user_copy(const char *src_dir, const char *dst_dir, const char *address,
                   struct auth_account *out, char *err, size_t errlen);

#endif
