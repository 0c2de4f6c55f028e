/* Stand-ins for the ACL snapshot of auth/acl.h until auth/ implements it:
 * no snapshot, so that the shared namespace names nothing. */
#include <stddef.h>

#include "auth/acl.h"

const struct acl_snap *auth_service_acl(struct auth_service *s)
{
    (void)s;
    return NULL;
}

int64_t acl_snap_owner_id(const struct acl_snap *s, const char *owner_address)
{
    (void)s;
    (void)owner_address;
    return 0;
}

unsigned acl_snap_rights(const struct acl_snap *s, int64_t owner, const char *mailbox, int64_t user,
                         const char *address)
{
    (void)s;
    (void)owner;
    (void)mailbox;
    (void)user;
    (void)address;
    return 0;
}
