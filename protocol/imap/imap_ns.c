/* The namespaces (RFC 2342) a session's mailbox names live in: its own
 * (personal, "" with delimiter '/') and, with shared_prefix set, the
 * shared one, where another account's mailbox that its owner shared
 * (RFC 4314) is "<prefix><owner address>/<owner's name>". A name is
 * resolved on the loop thread from the ACL snapshot alone, never touching
 * a store: a name the user may not see and a name that does not exist
 * resolve alike (rights 0), so that the commands built on it answer both
 * with the same bytes. */
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

const char *imap_ns_prefix(struct imap_session *s)
{
    return conn_conf(s->c)->shared_prefix;
}

bool imap_ns_reserved(struct imap_session *s, const char *name)
{
    const char *pfx = imap_ns_prefix(s);
    const char *slash = strchr(pfx, '/');
    size_t fl, nl;

    if (!pfx[0] || !slash)
        return false;
    fl = (size_t)(slash - pfx);
    nl = strcspn(name, "/");
    return nl == fl && !strncasecmp(name, pfx, fl);
}

static int copy_name(char *out, size_t cap, const char *in, size_t len)
{
    if (len >= cap)
        return -1;
    memcpy(out, in, len);
    out[len] = '\0';
    return 0;
}

/* Whether the address part is one an account could have: normalized
 * addresses are lower case, with no '/' and no control character. */
static bool plausible_owner(const char *p, size_t n)
{
    if (n == 0 || n >= AUTH_ADDR_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x21 || c == 0x7f || (c >= 'A' && c <= 'Z'))
            return false;
    }
    return true;
}

int imap_ns_resolve(struct imap_session *s, const char *utf8name, struct imap_mref *out)
{
    const char *pfx = imap_ns_prefix(s);
    size_t pl = strlen(pfx), nl = strlen(utf8name);

    memset(out, 0, sizeof(*out));
    out->prefix = pfx;
    /* the personal namespace: everything outside the prefix */
    if (!pl || nl + 1 < pl || strncmp(utf8name, pfx, pl - 1) ||
        (utf8name[pl - 1] != '\0' && utf8name[pl - 1] != '/')) {
        /* a proper level of a prefix of several levels ("Other" of "Other/Users/") */
        if (pl && nl < pl - 1 && !strncmp(utf8name, pfx, nl) && pfx[nl] == '/' && nl > 0) {
            out->shared = out->level = true;
            return 0;
        }
        if (copy_name(out->name, sizeof(out->name), utf8name, nl) < 0)
            return IMAP_ARG_BADNAME;
        out->owner = s->account_id;
        snprintf(out->owner_address, sizeof(out->owner_address), "%s", s->user ? s->user : "");
        out->rights = ACL_ALL;
        return 0;
    }
    out->shared = true;
    if (nl == pl - 1) {
        /* the namespace's root: a level, never a mailbox */
        out->level = true;
        return 0;
    }
    /* "<prefix><owner>" or "<prefix><owner>/<name>" */
    const char *owner = utf8name + pl;
    const char *slash = strchr(owner, '/');
    size_t ol = slash ? (size_t)(slash - owner) : strlen(owner);
    const struct acl_snap *snap = auth_service_acl(conn_auth(s->c));

    if (!plausible_owner(owner, ol) || !snap)
        return 0; /* names nothing */
    memcpy(out->owner_address, owner, ol);
    out->owner_address[ol] = '\0';
    if (s->user && !strcmp(out->owner_address, s->user)) {
        /* one's own mailboxes are named in the personal namespace only */
        out->owner_address[0] = '\0';
        return 0;
    }
    out->owner = acl_snap_owner_id(snap, out->owner_address);
    if (!out->owner) {
        out->owner_address[0] = '\0';
        return 0;
    }
    if (!slash) {
        out->level = true;
        return 0;
    }
    const char *rest = slash + 1;
    size_t rl = strlen(rest);
    char err[8];
    if (copy_name(out->name, sizeof(out->name), rest, rl) < 0) {
        out->name[0] = '\0';
        return 0;
    }
    /* INBOX is case-insensitive, also as the owner's first level */
    if (rl >= 5 && !strncasecmp(out->name, "INBOX", 5) && (rl == 5 || out->name[5] == '/'))
        memcpy(out->name, "INBOX", 5);
    /* a name the owner could not have names nothing: no "..", no empty
     * level, nothing over the length */
    if (storage_name_check(out->name, err, sizeof(err)) < 0) {
        out->name[0] = '\0';
        return 0;
    }
    out->rights = acl_snap_rights(snap, out->owner, out->name, s->account_id, s->user);
    return 0;
}

int imap_ns_name(const struct imap_mref *r, char *out, size_t cap)
{
    const char *pfx = r->prefix ? r->prefix : "";
    int n;

    if (!r->shared)
        n = snprintf(out, cap, "%s", r->name);
    else if (r->level && !r->owner_address[0])
        n = snprintf(out, cap, "%.*s", pfx[0] ? (int)strlen(pfx) - 1 : 0, pfx);
    else if (r->level)
        n = snprintf(out, cap, "%s%s", pfx, r->owner_address);
    else
        n = snprintf(out, cap, "%s%s/%s", pfx, r->owner_address, r->name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* RFC 4314 section 4 and 6: a mailbox hides only from a user with no
 * right on it at all; any right lets the user know it is there (MYRIGHTS
 * answers for any right, APPEND needs i alone), each command then asking
 * for its own right (NO [NOPERM]). */
bool imap_ns_visible(const struct imap_mref *r)
{
    return !r->level && r->owner && r->name[0] && r->rights != 0;
}
