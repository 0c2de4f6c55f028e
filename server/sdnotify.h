/* The service manager's readiness protocol (sd_notify): datagrams of
 * "KEY=VALUE" lines sent to the unix socket named by NOTIFY_SOCKET.
 * Without NOTIFY_SOCKET every call does nothing. Loop thread only. */
#ifndef COFFRE_SDNOTIFY_H
#define COFFRE_SDNOTIFY_H

struct server;

/* Reads NOTIFY_SOCKET (a path, or "@name" for an abstract socket) and
 * opens the socket the messages leave by; the variable is removed from the
 * environment. One that names no usable socket is logged and ignored. */
void sdnotify_open(void);

/* READY=1 with a STATUS line (connections, listeners); while the manager
 * listens, STATUS is sent again every few seconds when the count of
 * connections changed. Called once every listener accepts, and after a
 * reload. */
void sdnotify_ready(struct server *s);
/* RELOADING=1 with MONOTONIC_USEC, before a reload (SIGHUP). */
void sdnotify_reloading(void);
/* STOPPING=1: the shutdown began. */
void sdnotify_stopping(struct server *s);

#endif
