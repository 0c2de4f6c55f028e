/* The daemon's process-wide state, private to server/: the loop, the
 * configuration, TLS credentials, the login service, listeners and the list
 * of live connections. */
#ifndef COFFRE_SERVER_H
#define COFFRE_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/base/config.h"
#include "server/base/conn.h"

struct tls_server;
struct auth_service;

struct listener {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    /* Readiness of the listening socket: coffred accepts itself rather than
     * through uv_listen, whose way out of EMFILE closes connections without
     * telling anyone. */
    uv_poll_t poll;
    int open_handles; /* h and poll, until both are closed */
    bool paused;      /* out of descriptors and of the reserve: waits */
    struct server *srv;
    const char *service; /* "imap", "imaps", ... */
    const struct conn_handler *handler;
    bool implicit_tls;
    bool is_unix;
    bool proxy;  /* a PROXY header may start its connections (proxy_networks) */
    bool passed; /* by the service manager: its unit owns the address */
    char text[80];
    struct listener *next;
};

struct ipcount;
struct control;

struct server {
    uv_loop_t *loop;
    struct conf conf;
    struct tls_server *tls;
    struct auth_service *auth;
    char hostname[256];

    uint64_t nofile; /* the open-file limit coffred runs with */
    struct listener *listeners;
    struct conn *conns; /* doubly linked list of live connections */
    unsigned nconns;
    unsigned max_conns; /* max_connections, or fewer: what the open-file limit leaves */
    uint64_t next_conn_id;
    struct ipcount **ipbuckets; /* per-IP connection counts */

    /* Connections refused or failed before a session began: logged at
     * most once a second with how many since the last line. */
    uint64_t refused_unlogged;
    uint64_t refused_next_log_ms;
    const char *refused_why;
    uv_timer_t refuse_timer; /* logs the rest of a burst; restarts paused listeners */
    int reserve_fd;          /* one descriptor kept to accept and close when out of them */

    /* COMPRESS: connections to serve at the end of the loop iteration
     * (input left to inflate, output to flush), in order */
    struct conn *zlist, *zlast;
    unsigned zcount;
    bool zprepare_init;
    uv_prepare_t zprepare;
    uv_idle_t zidle;

    struct control *control; /* the control socket (server/control.c), or NULL */

    bool stopping;
    uv_timer_t stop_timer;
    uv_signal_t sig_term, sig_int, sig_hup;
    struct audit_log *audit; /* the hash-chained audit log, NULL when none */
};

/* server/listen.c */
int server_listen_all(struct server *s, char *err, size_t errlen);
void server_close_listeners(struct server *s);
/* n connections on l refused or failed (why: a short reason); logged at
 * most once a second, with the count since the last line. Loop thread. */
void server_note_refused(struct server *s, const struct listener *l, uint64_t n, const char *why);

/* server/conn.c */
/* A connection accepted on l: fd is the new socket, owned from here. */
void conn_accept(struct listener *l, int fd);
/* Asks every connection to say goodbye; closes the rest. */
void conn_shutdown_all(struct server *s);
void conn_abort_all(struct server *s);

/* For the control socket: the live connections (conn_first, then
 * conn_next), what `who` shows of one, and ending one. */
struct conn_who {
    uint64_t id;
    const char *service, *remote;
    const char *user; /* the logged-in address, "" before a login */
    const char *tls;  /* "TLS1.3", ... or NULL */
    const char *state, *mailbox;
    uint64_t idle_ms; /* since the last input */
    int64_t login_at; /* time(2) of the login, 0 before one */
    bool closing;
};
struct conn *conn_first(struct server *s);
struct conn *conn_next(struct conn *c);
void conn_who(struct conn *c, struct conn_who *w);
/* Ends c for the administrator (conn_handler.on_kick). Returns false for a
 * connection already closing or still in its TLS handshake (then closed). */
bool conn_kick(struct conn *c, const char *reason);

/* server/main.c: reloads what SIGHUP reloads (the certificate and key).
 * Returns 0, or -1 with the reason in err. */
int server_reload(struct server *s, char *err, size_t errlen);

/* server/control.c: the control socket (control_socket), created before
 * the privilege drop, and closed with its connections at the end. */
int control_open(struct server *s, char *err, size_t errlen);
void control_close(struct server *s);
/* "disabled" or "deleted" when address was ended so (KICK USER ... disabled|
 * deleted) at or after since (uv_now), within login_timeout; else NULL. */
const char *control_revoked(struct server *s, const char *address, uint64_t since);

#endif
