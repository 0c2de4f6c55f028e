/* LMTP (RFC 2033): the connection handler. */
#ifndef COFFRE_LMTP_H
#define COFFRE_LMTP_H

#include "server/base/conn.h"

extern const struct conn_handler lmtp_handler;

#endif
