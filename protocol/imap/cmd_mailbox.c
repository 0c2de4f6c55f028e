/* Mailbox management: CREATE (with USE, RFC 6154), DELETE, RENAME,
 * SUBSCRIBE and UNSUBSCRIBE, each one storage call on the thread pool. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"

enum mbop { OP_CREATE, OP_DELETE, OP_RENAME, OP_SUBSCRIBE, OP_UNSUBSCRIBE };

struct mbop_job {
    struct imap_job j;
    enum mbop op;
    char a[STORAGE_MBOX_NAME_MAX + 1], b[STORAGE_MBOX_NAME_MAX + 1];
    unsigned special;
    int err;
    uint64_t oid;  /* CREATE: the new mailbox's MAILBOXID (RFC 8474 4.1), 0 */
    int64_t owner; /* whose mailboxes a and b are */
    /* CREATE in the shared namespace of a name the user may not see:
     * ALREADYEXISTS would tell it exists */
    bool hide_exists;
};

static void mbop_work(struct imap_job *j)
{
    struct mbop_job *m = (struct mbop_job *)j;
    switch (m->op) {
    case OP_CREATE:
        m->err = storage_mbox_create(j->u, m->a, m->special);
        if (m->err == 0) {
            struct storage_mbox mb;
            if (storage_mbox_get(j->u, m->a, &mb) == 0)
                m->oid = mb.oid;
        }
        break;
    case OP_DELETE:
        m->err = storage_mbox_delete(j->u, m->a);
        break;
    case OP_RENAME:
        m->err = storage_mbox_rename(j->u, m->a, m->b);
        break;
    case OP_SUBSCRIBE:
    case OP_UNSUBSCRIBE:
        m->err = storage_subscribe(j->u, m->a, m->op == OP_SUBSCRIBE);
        break;
    }
}

static const char *const op_names[] = {"CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE"};

struct has_entries {
    const char *name;
    size_t len;
    bool below, found;
};

static void has_cb(void *arg, const char *mailbox, unsigned rights)
{
    struct has_entries *h = arg;
    if (!h->found && !strncmp(mailbox, h->name, h->len) &&
        (mailbox[h->len] == '\0' || (h->below && mailbox[h->len] == '/')))
        h->found = true;
}

/* Whether owner's mailbox name (or, below, one under it) has entries in
 * the snapshot: a change of the tables (and the snapshot read again) only
 * when there is something to follow. */
static bool has_entries(const struct acl_snap *snap, int64_t owner, const char *name, bool below)
{
    struct has_entries h = {name, strlen(name), below, false};
    acl_snap_mailboxes(snap, owner, owner, "", has_cb, &h);
    return h.found;
}

/* The ACL of a mailbox follows its CREATE (a child takes its parent's
 * entries), RENAME and DELETE (with what is under it), once the storage
 * change is made; nothing to do when the snapshot has no entry there. */
static bool acl_follows(struct imap_session *s, struct mbop_job *m, int *op, char *parent,
                        size_t cap)
{
    const struct acl_snap *snap = auth_service_acl(conn_auth(s->c));
    if (!snap)
        return false;
    switch (m->op) {
    case OP_CREATE: {
        const char *slash = strrchr(m->a, '/');
        if (!slash || (size_t)(slash - m->a) >= cap)
            return false;
        memcpy(parent, m->a, (size_t)(slash - m->a));
        parent[slash - m->a] = '\0';
        *op = ACL_CH_INHERIT;
        return has_entries(snap, m->owner, parent, false);
    }
    case OP_DELETE:
        *op = ACL_CH_DROP;
        return has_entries(snap, m->owner, m->a, true);
    case OP_RENAME:
        *op = ACL_CH_RENAME;
        return has_entries(snap, m->owner, m->a, true);
    default:
        return false;
    }
}

static void mbop_done(struct imap_session *s, struct imap_job *j)
{
    struct mbop_job *m = (struct mbop_job *)j;
    char ok[160], parent[STORAGE_MBOX_NAME_MAX + 1];
    int op;

    if (m->err == 0) {
        if (m->oid) {
            struct buf id = {0};
            imap_buf_objectid(&id, 'F', m->oid);
            snprintf(ok, sizeof(ok), "[MAILBOXID (%s)] %s completed.", id.p ? id.p : "",
                     op_names[m->op]);
            buf_free(&id);
        } else {
            snprintf(ok, sizeof(ok), "%s completed.", op_names[m->op]);
        }
        if (acl_follows(s, m, &op, parent, sizeof(parent)))
            imap_acl_follow(s, m->owner, op, op == ACL_CH_INHERIT ? parent : m->a,
                            op == ACL_CH_INHERIT ? m->a : m->b, op_names[m->op], ok);
        else
            imap_finish(s, "OK", "%s", ok);
        return;
    }
    if (m->op == OP_CREATE && m->err == STORAGE_E_EXISTS && m->hide_exists) {
        imap_finish(s, "NO", "[NOPERM] CREATE: permission denied.");
        return;
    }
    if (m->op == OP_CREATE && m->err == STORAGE_E_INVAL) {
        imap_finish(s, "NO", "[USEATTR] CREATE: special-use attribute refused.");
        return;
    }
    imap_finish_storage_err(s, m->err, op_names[m->op]);
}

/* Runs op on the store of r's owner (own names: r NULL). */
static void mbop_start(struct imap_session *s, enum mbop op, const char *a, const char *b,
                       unsigned special, const struct imap_mref *r, bool hide_exists)
{
    char err[128];
    if (!imap_storage(s))
        return;
    if (op != OP_SUBSCRIBE && op != OP_UNSUBSCRIBE) {
        if (storage_name_check(a, err, sizeof(err)) < 0 ||
            (b && storage_name_check(b, err, sizeof(err)) < 0)) {
            imap_finish(s, "NO", "[CANNOT] %s: %s", op_names[op], err);
            return;
        }
    }
    struct mbop_job *m = calloc(1, sizeof(*m));
    if (!m) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    m->op = op;
    snprintf(m->a, sizeof(m->a), "%s", a);
    if (b)
        snprintf(m->b, sizeof(m->b), "%s", b);
    m->special = special;
    m->owner = r ? r->owner : s->account_id;
    m->hide_exists = hide_exists;
    if (r)
        imap_shared_job(s, r, &m->j, mbop_work, mbop_done);
    else
        imap_cmd_job(s, &m->j, mbop_work, mbop_done);
}

static void strip_trailing_slash(char *name)
{
    size_t l = strlen(name);
    while (l > 1 && name[l - 1] == '/')
        name[--l] = '\0';
}

/* The end of the arguments and the name a mailbox is created or renamed
 * to (trailing '/' dropped, never INBOX, invalid: not modified UTF-7);
 * false after answering. */
static bool new_name_ok(struct imap_session *s, struct imap_args *a, char *name, bool invalid,
                        const char *what)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "Unexpected arguments.");
        return false;
    }
    if (invalid) {
        imap_no_name(s, what, false);
        return false;
    }
    strip_trailing_slash(name);
    if (!strcmp(name, "INBOX")) {
        imap_finish(s, "NO", "[ALREADYEXISTS] INBOX always exists.");
        return false;
    }
    return true;
}

/* A name in the shared namespace that the user may not see (or that
 * names nothing) answers as a missing mailbox, with the same bytes. */
static bool shared_visible(struct imap_session *s, const struct imap_mref *r, const char *what)
{
    if (!imap_ns_visible(r)) {
        imap_finish_storage_err(s, STORAGE_E_NOMBOX, what);
        return false;
    }
    return true;
}

/* Where a mailbox may be made (CREATE, RENAME's new name): among one's
 * own names, not where the shared namespace is (its first level in any
 * case, so that no own "shared/x" looks like it); in the shared
 * namespace, under a parent of the same owner on which the user has k (a
 * parent the user may not see answers as one without k). *r is the
 * resolved name; false after answering. */
static bool new_place_ok(struct imap_session *s, const char *name, const char *what,
                         struct imap_mref *r)
{
    struct imap_mref parent;
    char pname[IMAP_NAME_MAX + 1];
    const char *slash;

    if (imap_ns_resolve(s, name, r) != 0) {
        imap_finish(s, "NO", "[CANNOT] %s: mailbox name too long.", what);
        return false;
    }
    if (!r->shared) {
        if (!imap_ns_reserved(s, name))
            return true;
    } else if (!r->level) {
        slash = strrchr(name, '/');
        if (r->owner && r->name[0] && strchr(r->name, '/') && slash &&
            (size_t)(slash - name) < sizeof(pname)) {
            memcpy(pname, name, (size_t)(slash - name));
            pname[slash - name] = '\0';
            if (imap_ns_resolve(s, pname, &parent) == 0 && imap_ns_visible(&parent) &&
                parent.owner == r->owner && (parent.rights & ACL_CREATE))
                return true;
        }
        imap_finish(s, "NO", "[NOPERM] %s: permission denied.", what);
        return false;
    }
    imap_finish(s, "NO", "[CANNOT] %s: the name is the shared namespace's (%s).", what,
                imap_ns_prefix(s));
    return false;
}

void imap_cmd_create(struct imap_session *s, struct imap_args *a)
{
    char name[STORAGE_MBOX_NAME_MAX + 2];
    unsigned special = 0;
    bool invalid = false;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, name, sizeof(name)), &invalid)) != IMAP_ARG_OK) {
        imap_bad_arg(s, r, "CREATE mailbox [(USE (\\Attr ...))]");
        return;
    }
    if (imap_args_sp(a) == IMAP_ARG_OK) {
        /* create-param list: only USE (RFC 6154) */
        const char *w;
        size_t n;
        if (imap_args_open(a) != IMAP_ARG_OK || imap_args_atom(a, &w, &n) != IMAP_ARG_OK ||
            n != 3 || strncasecmp(w, "USE", 3) || imap_args_sp(a) != IMAP_ARG_OK ||
            imap_args_open(a) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: CREATE mailbox (USE (\\Attr ...))");
            return;
        }
        while (!imap_args_peek(a, ')')) {
            if (special && imap_args_sp(a) != IMAP_ARG_OK)
                break;
            if (!imap_args_eat(a, '\\') || imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
                break;
            size_t k;
            for (k = 0; k < IMAP_NSPECIAL; k++)
                if (strlen(imap_special_use[k].name) - 1 == n &&
                    !strncasecmp(imap_special_use[k].name + 1, w, n))
                    break;
            if (k == IMAP_NSPECIAL) {
                imap_finish(s, "NO", "[USEATTR] Unknown special-use attribute.");
                return;
            }
            special |= imap_special_use[k].bit;
        }
        if (imap_args_close(a) != IMAP_ARG_OK || imap_args_close(a) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: CREATE mailbox (USE (\\Attr ...))");
            return;
        }
    }
    struct imap_mref ref;
    if (!new_name_ok(s, a, name, invalid, "CREATE") || !new_place_ok(s, name, "CREATE", &ref))
        return;
    if (ref.shared && special) {
        imap_finish(s, "NO", "[CANNOT] CREATE: special-use is the owner's to set.");
        return;
    }
    mbop_start(s, OP_CREATE, ref.name, NULL, special, ref.shared ? &ref : NULL,
               ref.shared && !imap_ns_visible(&ref));
}

static void one_name_cmd(struct imap_session *s, struct imap_args *a, enum mbop op)
{
    char name[STORAGE_MBOX_NAME_MAX + 1];
    bool invalid = false;
    int r;
    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, name, sizeof(name)), &invalid)) != IMAP_ARG_OK) {
        imap_bad_arg(s, r, "COMMAND mailbox");
        return;
    }
    if (!imap_args_at_end(a)) {
        imap_bad(s, "Unexpected arguments.");
        return;
    }
    if (invalid) {
        /* such a name can neither exist nor be subscribed */
        imap_no_name(s, op_names[op], op != OP_SUBSCRIBE);
        return;
    }
    if (op == OP_DELETE && !strcmp(name, "INBOX")) {
        imap_finish(s, "NO", "[CANNOT] INBOX cannot be deleted.");
        return;
    }
    /* a subscription is the subscriber's own, to any name (a shared one
     * by the name the subscriber sees) */
    if (op == OP_DELETE) {
        struct imap_mref ref;
        if (imap_ns_resolve(s, name, &ref) != 0) {
            imap_finish_storage_err(s, STORAGE_E_NOMBOX, op_names[op]);
            return;
        }
        if (ref.shared) {
            if (!shared_visible(s, &ref, op_names[op]))
                return;
            if (!(ref.rights & ACL_DELETE)) {
                imap_finish(s, "NO", "[NOPERM] DELETE: permission denied.");
                return;
            }
            if (!strcmp(ref.name, "INBOX")) {
                imap_finish(s, "NO", "[CANNOT] INBOX cannot be deleted.");
                return;
            }
            mbop_start(s, op, ref.name, NULL, 0, &ref, false);
            return;
        }
    }
    mbop_start(s, op, name, NULL, 0, NULL, false);
}

void imap_cmd_delete(struct imap_session *s, struct imap_args *a)
{
    one_name_cmd(s, a, OP_DELETE);
}

void imap_cmd_subscribe(struct imap_session *s, struct imap_args *a)
{
    one_name_cmd(s, a, OP_SUBSCRIBE);
}

void imap_cmd_unsubscribe(struct imap_session *s, struct imap_args *a)
{
    one_name_cmd(s, a, OP_UNSUBSCRIBE);
}

void imap_cmd_rename(struct imap_session *s, struct imap_args *a)
{
    char from[STORAGE_MBOX_NAME_MAX + 1], to[STORAGE_MBOX_NAME_MAX + 2];
    bool bad_from = false, bad_to = false;
    int r;
    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, from, sizeof(from)), &bad_from)) != IMAP_ARG_OK ||
        (r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, to, sizeof(to)), &bad_to)) != IMAP_ARG_OK) {
        imap_bad_arg(s, r, "RENAME from to");
        return;
    }
    if (bad_from && imap_args_at_end(a)) {
        imap_no_name(s, "RENAME", true);
        return;
    }
    if (!new_name_ok(s, a, to, bad_to, "RENAME"))
        return;
    /* the old name first: one the user may not see answers as missing */
    struct imap_mref rf, rt;
    if (imap_ns_resolve(s, from, &rf) != 0) {
        imap_finish_storage_err(s, STORAGE_E_NOMBOX, "RENAME");
        return;
    }
    if (rf.shared) {
        if (!shared_visible(s, &rf, "RENAME"))
            return;
        if (!(rf.rights & ACL_DELETE)) {
            imap_finish(s, "NO", "[NOPERM] RENAME: permission denied.");
            return;
        }
    }
    if (!new_place_ok(s, to, "RENAME", &rt))
        return;
    if (rf.shared != rt.shared || rf.owner != rt.owner) {
        imap_finish(s, "NO", "[CANNOT] RENAME: a mailbox cannot move to another account.");
        return;
    }
    mbop_start(s, OP_RENAME, rf.name, rt.name, 0, rf.shared ? &rf : NULL, false);
}
