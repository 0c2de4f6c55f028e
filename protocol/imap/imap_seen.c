/* Per-user \Seen on shared mailboxes (RFC 4314 section 4 leaves it to the
 * server): whose \Seen a session sees in a mailbox. On another account's
 * mailbox whose \Seen is not shared (acl_snap_seen_shared, the default),
 * the session's account keeps a \Seen of its own, in the owner's index
 * (storage/pseen.c); on one's own mailboxes, and on shared ones whose
 * \Seen is shared, everybody sees the message rows' \Seen. */
#include "auth/acl.h"
#include "protocol/imap/imap_private.h"

int64_t imap_seen_viewer(struct imap_session *s, const struct imap_mref *r)
{
    const struct acl_snap *snap;

    if (!r->shared || r->owner <= 0 || r->owner == s->account_id)
        return 0;
    snap = auth_service_acl(conn_auth(s->c));
    if (snap && acl_snap_seen_shared(snap, r->owner, r->name))
        return 0;
    return s->account_id;
}
