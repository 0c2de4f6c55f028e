/* IMAP4rev1 (RFC 3501): the connection handler the listeners use. */
#ifndef COFFRE_IMAP_H
#define COFFRE_IMAP_H

#include "server/base/conn.h"

extern const struct conn_handler imap_handler;

#endif
