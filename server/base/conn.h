/* A client connection as the protocol handlers see it: bytes in (already
 * decrypted), bytes out (encrypted when TLS is up), STARTTLS, timers, close.
 * The connection layer (server/conn.c) owns the socket, the TLS session and
 * the life cycle; a protocol owns its session state in conn->proto. */
#ifndef COFFRE_CONN_H
#define COFFRE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct conn;
struct conf;
struct auth_service;
struct uv_loop_s;

/* What `coffrectl who` shows of a session beyond the connection's own
 * fields, filled by the protocol (conn_handler.describe). */
struct conn_state {
    const char *state;   /* "login", "ready", "command", "idle", ... (static) */
    const char *mailbox; /* the selected mailbox (IMAP), or NULL; borrowed for the call */
};

/* What a protocol implements. All calls come on the loop thread. */
struct conn_handler {
    const char *name; /* "imap", "pop3", "lmtp" */
    /* Connection ready (after the handshake on implicit-TLS ports): allocate
     * state, send the greeting. Return -1 to close. */
    int (*on_open)(struct conn *c);
    /* Plaintext bytes from the client. */
    void (*on_input)(struct conn *c, const char *buf, size_t len);
    /* The TLS handshake started by conn_starttls() finished. */
    void (*on_tls_ready)(struct conn *c);
    /* Output queue drained below the low-water mark after being high. */
    void (*on_drain)(struct conn *c);
    /* The timer set with conn_set_timeout() fired. */
    void (*on_timeout)(struct conn *c);
    /* The server is stopping: say goodbye and call conn_close(). */
    void (*on_shutdown)(struct conn *c);
    /* The connection is gone: free state, cancel pending work. */
    void (*on_close)(struct conn *c);
    /* Optional, for `coffrectl who`: the session's state and mailbox. */
    void (*describe)(struct conn *c, struct conn_state *st);
    /* Optional: an administrator ends the session (reason: a short text,
     * "Account disabled."). The protocol tells the client and closes at its
     * next safe point, never in the middle of a storage write or of a
     * response. NULL: on_shutdown serves. */
    void (*on_kick)(struct conn *c, const char *reason);
    /* Line sent (in plaintext) to a client refused for too many
     * connections, before closing; NULL to just close. */
    const char *busy_reply;
    /* Line sent (in plaintext, after the greeting) to a client outside
     * proxy_networks whose first bytes are a PROXY header, before closing;
     * NULL to just close. */
    const char *proxy_refused_reply;
};

/* Output above this many queued bytes: stop processing input until on_drain. */
#define CONN_WRITE_HIGH (256u * 1024)

struct conn_info {
    uint64_t id;
    const char *service; /* "imap", "imaps", "pop3", "pop3s", "lmtp" */
    /* The client: the socket's peer, or the address a PROXY header from
     * proxy_networks carried. For logs, throttling and per-address limits;
     * trust decisions use conn_from_proxy_network() and
     * conn_plaintext_auth_ok(), which look at the socket. */
    const char *remote; /* "ADDR:PORT" for logs */
    const struct sockaddr *peer;
};

/* Protocol state, owned by the handler. */
void *conn_proto(struct conn *c);
void conn_set_proto(struct conn *c, void *p);

const struct conn_info *conn_info(struct conn *c);
const struct conf *conn_conf(struct conn *c);
struct auth_service *conn_auth(struct conn *c);
const char *conn_hostname(struct conn *c);
struct uv_loop_s *conn_loop(struct conn *c);

/* Sends bytes (encrypted once TLS is up). Errors close the connection
 * later; callers need not check. */
void conn_write(struct conn *c, const void *buf, size_t len);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t conn_write_queued(struct conn *c);

/* After the reply already written, start a TLS handshake on this
 * connection. The caller must have discarded any input buffered after the
 * STARTTLS command. Returns 0, or -1 (TLS not configured, already on). */
int conn_starttls(struct conn *c);
bool conn_is_tls(struct conn *c);
/* The client's certificate (server/base/peercert.h) once TLS is up, else NULL. */
struct peer_cert;
const struct peer_cert *conn_tls_peer(struct conn *c);
/* TLS with a valid client certificate: SASL EXTERNAL is offered. */
bool conn_client_cert_valid(struct conn *c);
/* True when TLS is up, or the socket's peer is in plaintext_auth_networks
 * or proxy_networks. */
bool conn_plaintext_auth_ok(struct conn *c);
/* True when the socket's peer (not an address a PROXY header carried) is
 * in proxy_networks. */
bool conn_from_proxy_network(struct conn *c);
/* Channel binding data for SCRAM-SHA-256-PLUS (tls_session_channel_binding):
 * its length, or -1 without TLS or for a type that does not work here. */
int conn_channel_binding(struct conn *c, const char *name, unsigned char *out, size_t cap);

/* COMPRESS=DEFLATE (RFC 4978) from here on, both ways: everything written
 * after this call is compressed, everything read is inflated. pending:
 * input that came after the command, already compressed. Returns 0, or -1
 * (already on, closing, out of memory). */
int conn_compress(struct conn *c, const char *pending, size_t len);
bool conn_compressed(struct conn *c);

/* Stops/starts reading from the socket (back-pressure while a command waits). */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);

/* (Re)arms the single per-connection timer; 0 disarms. Input re-arms it.
 * Until conn_set_logged_in, it never runs past the login deadline
 * (login_timeout counted from accept, TLS handshake included). */
void conn_set_timeout(struct conn *c, unsigned ms);
/* The client has logged in (LMTP: needs no login): the login deadline no
 * longer applies, only the timeout set with conn_set_timeout. */
void conn_set_logged_in(struct conn *c);

/* A login just checked for address may rest on the account as it was
 * before `coffrectl user disable/del` changed it: that change reached
 * coffred after this connection's last input (the login's own). Returns
 * "disabled" or "deleted" (then the login must be refused), or NULL. */
const char *conn_login_revoked(struct conn *c, const char *address);

/* Records the logged-in user for log lines ("" after UNAUTHENTICATE,
 * which ends that user's session in the audit trail). */
void conn_set_user(struct conn *c, const char *user);

/* The audit trail of IMAP and POP3 sessions (server/conn.c writes the
 * lines): a login attempt starts with its mechanism and the user named;
 * its outcome (an AUTH_* code, or a reason of the protocol's own for a
 * login refused after the check, such as a limit) writes the login line,
 * after conn_set_user on success. The logout line comes when the
 * connection closes (or at UNAUTHENTICATE), with bytes in and out and the
 * number of commands. */
void conn_login_begin(struct conn *c, const char *mech, const char *user, size_t ulen);
void conn_login_end(struct conn *c, int auth_result, const char *refused);
/* The label of the app password the login in flight used ("" for the main
 * password), written in its login line (field app_password). */
void conn_set_login_label(struct conn *c, const char *label);
/* IMAP ID's name and version (either may be NULL), for those lines. */
void conn_set_client_id(struct conn *c, const char *name, const char *version);
/* One more command read from the client. */
void conn_count_command(struct conn *c);

/* Flushes what is queued (and a TLS close_notify), then closes. on_close is
 * called once, later, from the loop. Safe to call more than once. */
void conn_close(struct conn *c);
bool conn_closing(struct conn *c);
/* Closes at once with a TCP reset, dropping what is queued: for a peer
 * that stopped reading. on_close follows later, as with conn_close. */
void conn_abort(struct conn *c);

#endif
