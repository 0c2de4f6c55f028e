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
    struct server *srv;
    const char *service; /* "imap", "imaps", ... */
    const struct conn_handler *handler;
    bool implicit_tls;
    bool is_unix;
    char text[80];
    struct listener *next;
};

struct ipcount;

struct server {
    uv_loop_t *loop;
    struct conf conf;
    struct tls_server *tls;
    struct auth_service *auth;
    char hostname[256];

    struct listener *listeners;
    struct conn *conns; /* doubly linked list of live connections */
    unsigned nconns;
    uint64_t next_conn_id;
    struct ipcount **ipbuckets; /* per-IP connection counts */

    bool stopping;
    uv_timer_t stop_timer;
    uv_signal_t sig_term, sig_int, sig_hup;
};

/* server/listen.c */
int server_listen_all(struct server *s, char *err, size_t errlen);
void server_close_listeners(struct server *s);

/* server/conn.c */
void conn_accept(struct listener *l);
/* Asks every connection to say goodbye; closes the rest. */
void conn_shutdown_all(struct server *s);
void conn_abort_all(struct server *s);

#endif
