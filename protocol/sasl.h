/* Server side of the SASL exchanges offered by IMAP AUTHENTICATE and POP3
 * AUTH: PLAIN (RFC 4616), LOGIN, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
 * (RFC 5802, RFC 7677; channel bindings tls-exporter, RFC 9266, and
 * tls-server-end-point, RFC 5929). The protocol frames the base64 lines;
 * this decodes them and says what to send next, and for SCRAM when to ask
 * the auth service (protocol/sasl_scram.c). */
#ifndef COFFRE_SASL_H
#define COFFRE_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/auth.h"
#include "server/base/metrics.h"

enum proto_sasl_mech {
    SASL_MECH_PLAIN,
    SASL_MECH_LOGIN,
    SASL_MECH_SCRAM,      /* SCRAM-SHA-256 */
    SASL_MECH_SCRAM_PLUS, /* SCRAM-SHA-256-PLUS */
    SASL_MECH_EXTERNAL,   /* the TLS client certificate */
};

/* Fills out with the channel binding data of type name ("tls-exporter",
 * "tls-server-end-point") of the connection; returns its length, or -1
 * when that type does not work on it. */
typedef int (*proto_sasl_cb_fn)(void *arg, const char *name, unsigned char *out, size_t cap);

struct proto_scram;

struct proto_sasl {
    enum proto_sasl_mech mech;
    int step;
    proto_sasl_cb_fn cb_data; /* NULL: no TLS, no channel binding */
    void *cb_arg;
    struct proto_scram *scram;    /* SCRAM's state, owned */
    struct auth_login *login;     /* SCRAM: the auth service's step in flight */
    struct auth_account acct;     /* SCRAM: the account, once the proof was checked */
    char user[AUTH_ADDR_MAX * 2]; /* EXTERNAL: the authorization identity, may be empty */
    size_t user_len;
    char pass[AUTH_PASSWORD_MAX];
    size_t pass_len;
};

enum {
    SASL_CONTINUE = 1,     /* send "+ " challenge and wait for a line */
    SASL_DONE = 0,         /* user/pass ready */
    SASL_BAD = -1,         /* malformed response */
    SASL_CANCEL = -2,      /* client sent "*" */
    SASL_SCRAM_LOOKUP = 2, /* client-first read: auth_scram_begin(user) */
    SASL_SCRAM_CHECK = 3,  /* client-final read: auth_scram_finish(proto_sasl_scram_check) */
    SASL_SCRAM_DONE = 4,   /* the client took the server-final: logged in as acct */
};

/* Mechanism names offered, space separated: "PLAIN LOGIN". */
#define PROTO_SASL_MECHS "PLAIN LOGIN"

/* Offered only when the TLS session carries a valid client certificate. */
#define PROTO_SASL_EXTERNAL "EXTERNAL"

/* Returns 0, or -1 for an unknown mechanism (case-insensitive name). */
int proto_sasl_start(struct proto_sasl *s, const char *mech, size_t len);
/* The same on a connection whose channel bindings cb gives (NULL without
 * TLS); -1 too for SCRAM-SHA-256-PLUS where no channel binding works. */
int proto_sasl_start_cb(struct proto_sasl *s, const char *mech, size_t len, proto_sasl_cb_fn cb,
                        void *arg);
/* Whether SCRAM-SHA-256-PLUS works with cb (one channel binding type). */
bool proto_sasl_plus_ok(proto_sasl_cb_fn cb, void *arg);
/* The mechanisms offered on a connection: PLAIN LOGIN SCRAM-SHA-256, and
 * SCRAM-SHA-256-PLUS when plus. Static text. */
const char *proto_sasl_mechs(bool plus);

/* SCRAM: after SASL_SCRAM_LOOKUP, the server-first message from what the
 * auth service gave (snonce: the server's nonce, NULL for a random one;
 * for tests); returns SASL_CONTINUE with the challenge, or SASL_BAD. */
int proto_sasl_scram_first(struct proto_sasl *s, const struct auth_scram_params *p,
                           const char *snonce, const char **challenge);
/* After SASL_SCRAM_CHECK: what auth_scram_finish needs (borrowed until the
 * next call); *refuse a reason to fail whatever the proof, or NULL. */
void proto_sasl_scram_check(struct proto_sasl *s, const struct auth_scram_params **p,
                            const char **msg, size_t *len, const unsigned char **proof,
                            const char **refuse);
/* The proof was good: the server-final message carrying sig; returns
 * SASL_CONTINUE with the challenge (the client answers with an empty
 * line, then SASL_SCRAM_DONE). */
int proto_sasl_scram_final(struct proto_sasl *s, const unsigned char sig[AUTH_SCRAM_KEY_LEN],
                           const char **challenge);

/* Feeds one client response (base64; "=" is an empty initial response).
 * On SASL_CONTINUE, *challenge is the base64 text to send after "+ ". */
int proto_sasl_step(struct proto_sasl *s, const char *line, size_t len, const char **challenge);

/* The metrics' names of s's mechanism and of a login's auth result. */
enum metrics_mech proto_sasl_metric(const struct proto_sasl *s);
enum metrics_login_result proto_login_metric(int auth_result);

/* The mechanism's name for logs and the audit trail. */
const char *proto_sasl_name(const struct proto_sasl *s);

/* protocol/sasl_conn.c: the channel bindings of a struct conn (the cb
 * argument is the connection), and the auth service's step for
 * SASL_SCRAM_LOOKUP or SASL_SCRAM_CHECK (the final one begins the
 * connection's login record); NULL when it cannot start. */
struct conn;
int proto_sasl_conn_cb(void *conn, const char *name, unsigned char *out, size_t cap);
struct auth_login *proto_sasl_scram_ask(struct proto_sasl *s, int r, struct conn *c,
                                        auth_login_cb cb, void *arg);

/* A password login (LOGIN, USER/PASS, AUTHENTICATE PLAIN or LOGIN) on c
 * for service "imap" or "pop3": a password with a ticket's form on a
 * connection from proxy_networks is checked as a login ticket, with the
 * client's address the proxy passed on; anything else as a password, with
 * the TLS client certificate. NULL when it cannot start. */
struct auth_login *proto_login_password(struct conn *c, const char *service, const char *user,
                                        size_t ulen, const char *pw, size_t pwlen, auth_login_cb cb,
                                        void *arg);

/* Wipes the credentials and frees SCRAM's state. */
void proto_sasl_clear(struct proto_sasl *s);

#endif
