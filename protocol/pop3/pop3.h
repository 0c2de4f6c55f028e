/* POP3 (RFC 1939, 2449, 2595, 5034): the connection handler. */
#ifndef COFFRE_POP3_H
#define COFFRE_POP3_H

#include "server/base/conn.h"

extern const struct conn_handler pop3_handler;

#endif
