/* Slots (user-sharded coffred behind nginx and Postfix): whether an
 * account that logs in or receives mail is served by this coffred. */
#ifndef COFFRE_PROTO_SLOT_H
#define COFFRE_PROTO_SLOT_H

#include <stddef.h>

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

#endif
