/* Stand-ins for the login service's side of auth/acl.h until auth/
 * implements it: no snapshot (the shared namespace names nothing), and
 * no change can be made. */
#include <stddef.h>

#include "auth/acl.h"

const struct acl_snap *auth_service_acl(struct auth_service *s)
{
    (void)s;
    return NULL;
}

int auth_service_acl_change(struct auth_service *s, const struct acl_change *ch,
                            void (*cb)(void *arg, int result), void *arg)
{
    (void)s;
    (void)ch;
    (void)cb;
    (void)arg;
    return -1;
}
