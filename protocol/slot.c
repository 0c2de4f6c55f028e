/* Slots: the one rule every protocol applies to an account it is handed
 * (a login's, an LMTP recipient's). See protocol/slot.h. */
#include <stdio.h>
#include <string.h>

#include "protocol/mailuser.h"
#include "protocol/slot.h"
#include "server/base/config.h"
#include "server/base/conn.h"
#include "server/base/log.h"

enum proto_slot proto_slot_check(const char *slot_name, const struct auth_account *a, char *why,
                                 size_t whylen)
{
    enum proto_slot r = PROTO_SLOT_HERE;

    if (!slot_name || !slot_name[0])
        return PROTO_SLOT_HERE;
    if (a->move_to[0])
        r = PROTO_SLOT_MOVING;
    else if (strcmp(a->slot, slot_name) != 0)
        r = PROTO_SLOT_ELSEWHERE;
    if (why && whylen) {
        if (r == PROTO_SLOT_MOVING)
            snprintf(why, whylen, "is moving to slot %s", a->move_to);
        else if (r == PROTO_SLOT_ELSEWHERE)
            snprintf(why, whylen, "lives on slot %s", a->slot[0] ? a->slot : "(none)");
        else
            why[0] = '\0';
    }
    return r;
}

bool proto_slot_login_refused(struct conn *c, const char *proto, const struct auth_account *a,
                              uint64_t t0)
{
    char where[AUTH_SLOT_MAX + 32];

    if (proto_slot_check(conn_conf(c)->slot_name, a, where, sizeof(where)) != PROTO_SLOT_HERE) {
        log_info("conn=%llu %s login of %s refused: the account %s",
                 (unsigned long long)conn_info(c)->id, proto, a->address, where);
        return true;
    }
    /* served here, as a read made after t0 says: no block left over */
    if (conn_loop(c))
        mailuser_unblock(a->id, t0);
    return false;
}
