/* Slots (user-sharded coffred behind nginx and Postfix): whether an
 * account that logs in or receives mail is served by this coffred. */
#ifndef COFFRE_PROTO_SLOT_H
#define COFFRE_PROTO_SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"

enum proto_slot {
    PROTO_SLOT_HERE = 0,  /* slot_name empty, or the account's slot is this one */
    PROTO_SLOT_ELSEWHERE, /* it lives on another slot */
    PROTO_SLOT_MOVING,    /* `coffrectl user move` runs on it */
};

/* What slot_name (this coffred's, "" = not sharded) makes of a: with it
 * empty every account is served here, whatever its slot column says. why
 * (may be NULL) gets "lives on slot X" or "is moving to slot X". */
enum proto_slot proto_slot_check(const char *slot_name, const struct auth_account *a, char *why,
                                 size_t whylen);

struct conn;
/* A login's account (after a successful check that began at t0, uv_now):
 * true when this slot does not serve it, logged with the slot it lives on
 * ("conn=N proto login of A refused: the account lives on slot X"); the
 * login is then a temporary failure. Otherwise a block left over from a
 * move (mailuser_unblock) ends. */
bool proto_slot_login_refused(struct conn *c, const char *proto, const struct auth_account *a,
                              uint64_t t0);

#endif
