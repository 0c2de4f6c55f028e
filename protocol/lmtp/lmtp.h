/* LMTP (RFC 2033): the connection handler. */
#ifndef COFFRE_LMTP_H
#define COFFRE_LMTP_H

#include <stdint.h>

#include "server/base/conn.h"

extern const struct conn_handler lmtp_handler;

/* Account id leaves this server (the control socket's RELEASE, for
 * `coffrectl user move`): each transaction with a recipient of it that is
 * not delivering ends its session with a 421 (nothing of it was
 * acknowledged: the MTA sends it again); one delivering finishes. Returns
 * how many transactions with a recipient of it are still here. Loop
 * thread. */
unsigned lmtp_release_account(int64_t id);

#endif
