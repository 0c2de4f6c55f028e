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

int acl_rights_parse(const char *text, size_t len, unsigned *rights, char *mode)
{
    (void)text;
    (void)len;
    *rights = 0;
    *mode = '=';
    return ACL_E_BADRIGHTS;
}

void acl_rights_format(unsigned rights, char *out)
{
    size_t n = 0;
    for (unsigned i = 0; ACL_RIGHTS_CHARS[i]; i++)
        if (rights & (1u << i))
            out[n++] = ACL_RIGHTS_CHARS[i];
    out[n] = '\0';
}

int acl_ident_normalize(const char *in, size_t len, const char *default_domain, char *out)
{
    (void)in;
    (void)len;
    (void)default_domain;
    out[0] = '\0';
    return ACL_E_BADIDENT;
}

void acl_snap_entries(const struct acl_snap *s, int64_t owner, const char *mailbox,
                      void (*cb)(void *arg, const char *ident, unsigned rights), void *arg)
{
    (void)s;
    (void)owner;
    (void)mailbox;
    (void)cb;
    (void)arg;
}

void acl_snap_owners(const struct acl_snap *s, int64_t user, const char *address,
                     void (*cb)(void *arg, int64_t owner, const char *owner_address), void *arg)
{
    (void)s;
    (void)user;
    (void)address;
    (void)cb;
    (void)arg;
}

void acl_snap_mailboxes(const struct acl_snap *s, int64_t owner, int64_t user, const char *address,
                        void (*cb)(void *arg, const char *mailbox, unsigned rights), void *arg)
{
    (void)s;
    (void)owner;
    (void)user;
    (void)address;
    (void)cb;
    (void)arg;
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
