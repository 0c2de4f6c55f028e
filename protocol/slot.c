/* Slots: the one rule every protocol applies to an account it is handed
 * (a login's, an LMTP recipient's). See protocol/slot.h. */
#include <stdio.h>
#include <string.h>

#include "protocol/slot.h"

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
