/* HTTP/1.1 (RFC 9112) for operations and mail-client set-up: GET /metrics,
 * GET /health, Thunderbird's autoconfig and Outlook's POX autodiscover.
 * The connection handler, and the two things the daemon tells it. */
#ifndef COFFRE_HTTP_H
#define COFFRE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "server/base/conn.h"

extern const struct conn_handler http_handler;

/* What GET /health asks the daemon about its listeners: true when every
 * one accepts; else false with the reason in why. Loop thread. */
typedef bool (*http_listeners_fn)(void *arg, char *why, size_t whylen);
void http_set_listener_check(http_listeners_fn fn, void *arg);

#endif
