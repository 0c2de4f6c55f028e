/* tls: GnuTLS sessions driven from memory buffers, so the connection layer
 * can run them on libuv streams: ciphertext read from the socket is fed in,
 * ciphertext to send is taken out. Server credentials are reference counted
 * so SIGHUP can load new ones while old sessions keep theirs. */
#ifndef COFFRE_TLS_H
#define COFFRE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "server/base/peercert.h"

struct tls_server_opts {
    const char *cert, *key;         /* required: PEM files (ECDSA recommended) */
    const char *cert_rsa, *key_rsa; /* optional second pair; NULL or "" when unused */
    const char *priority;           /* GnuTLS priority string */
    const char *client_ca;          /* PEM CAs for client certificates; NULL or "" when unused */
    const char *client_crl;         /* their revocation list (PEM or DER); NULL or "" */
};

/* Whether a session asks the client for a certificate. */
enum tls_client_cert { TLS_CLIENT_CERT_NONE, TLS_CLIENT_CERT_OPTIONAL, TLS_CLIENT_CERT_REQUIRED };

struct tls_server;
struct tls_session;

/* Loads credentials and the priority. Returns 0, or -1 with a reason. */
int tls_server_new(const struct tls_server_opts *o, struct tls_server **out, char *err,
                   size_t errlen);
/* Reads the certificate and key files again; new sessions use them. On
 * failure the old credentials stay in force. Returns 0 or -1 with a reason. */
int tls_server_reload(struct tls_server *s, char *err, size_t errlen);
void tls_server_free(struct tls_server *s);

/* A server-side session; NULL on allocation or GnuTLS failure. */
struct tls_session *tls_session_new(struct tls_server *s);
/* Asks the client for a certificate (before the handshake). OPTIONAL
 * verifies what comes; REQUIRED fails the handshake without a valid one.
 * Without tls_client_ca nothing is asked. */
void tls_session_client_cert(struct tls_session *t, enum tls_client_cert mode);
/* The client's certificate, filled once the handshake is done (or failed:
 * why then tells what was wrong with it). Borrowed for the session's life. */
const struct peer_cert *tls_session_peer(struct tls_session *t);
void tls_session_free(struct tls_session *t);

/* Ciphertext received from the peer. Returns 0 or -1 (allocation). */
int tls_session_feed(struct tls_session *t, const char *buf, size_t len);

enum { TLS_DONE = 0, TLS_AGAIN = 1, TLS_ERROR = -1 };
/* Advances the handshake with what was fed. */
int tls_session_handshake(struct tls_session *t, const char **errmsg);

/* Decrypts into out. Returns bytes (> 0), 0 when more input is needed, or
 * -1 when the peer closed (close_notify) or the record layer failed. */
ssize_t tls_session_read(struct tls_session *t, char *out, size_t cap);

/* Encrypts plaintext; the records land in the output buffer. 0 or -1. */
int tls_session_write(struct tls_session *t, const char *buf, size_t len);

/* Queues a close_notify alert into the output buffer. */
void tls_session_bye(struct tls_session *t);

/* Takes the pending ciphertext: *buf is malloc'd, caller frees. Returns its
 * length, 0 when nothing is pending. */
size_t tls_session_take_output(struct tls_session *t, char **buf);

/* "TLS1.3" and "AES-256-GCM" style names, valid for the session's life. */
const char *tls_session_version(struct tls_session *t);
const char *tls_session_cipher(struct tls_session *t);
const char *tls_session_kx(struct tls_session *t);
bool tls_session_resumed(struct tls_session *t);
/* The session's channel binding data of type name: "tls-exporter" (RFC
 * 9266, TLS 1.3 only) or "tls-server-end-point" (RFC 5929). Returns its
 * length, or -1 (unknown or unusable type, out too small). */
int tls_session_channel_binding(struct tls_session *t, const char *name, unsigned char *out,
                                size_t cap);

#endif
