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
    uint64_t oid; /* CREATE: the new mailbox's MAILBOXID (RFC 8474 4.1), 0 */
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

/* The ACL of an own mailbox follows its CREATE (a child takes its
 * parent's entries), RENAME and DELETE, once the storage change is made;
 * nothing to do when the snapshot has no entry there. */
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
        return true;
    }
    case OP_DELETE:
        *op = ACL_CH_DROP;
        return true;
    case OP_RENAME:
        *op = ACL_CH_RENAME;
        return true;
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
            imap_acl_follow(s, op, op == ACL_CH_INHERIT ? parent : m->a,
                            op == ACL_CH_INHERIT ? m->a : m->b, op_names[m->op], ok);
        else
            imap_finish(s, "OK", "%s", ok);
        return;
    }
    if (m->op == OP_CREATE && m->err == STORAGE_E_INVAL) {
        imap_finish(s, "NO", "[USEATTR] CREATE: special-use attribute refused.");
        return;
    }
    imap_finish_storage_err(s, m->err, op_names[m->op]);
}

static void mbop_start(struct imap_session *s, enum mbop op, const char *a, const char *b,
                       unsigned special)
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

/* Whether a mailbox may be made or renamed to name among one's own: not
 * where the shared namespace is (its first level in any case, so that no
 * own "shared/x" looks like it). A name in the shared namespace is
 * answered here: made there only with k on the parent and the owner's
 * store; a parent the user may not see answers as one that lacks k.
 * False after answering. */
static bool own_name_ok(struct imap_session *s, const char *name, const char *what)
{
    struct imap_mref r;

    if (imap_ns_resolve(s, name, &r) != 0) {
        imap_finish(s, "NO", "[CANNOT] %s: mailbox name too long.", what);
        return false;
    }
    if (r.shared && !r.level) {
        imap_finish(s, "NO", "[NOPERM] %s: permission denied.", what);
        return false;
    }
    if (r.shared || imap_ns_reserved(s, name)) {
        imap_finish(s, "NO", "[CANNOT] %s: the name is the shared namespace's (%s).", what,
                    imap_ns_prefix(s));
        return false;
    }
    return true;
}

/* A mailbox named in the shared namespace that the user may not see, or
 * names nothing, answers as a missing one; one the user sees but may
 * not change, NOPERM. False after answering. */
static bool shared_name_ok(struct imap_session *s, const char *name, const char *what)
{
    struct imap_mref r;

    if (imap_ns_resolve(s, name, &r) != 0 || !r.shared)
        return true;
    if (!imap_ns_visible(&r)) {
        imap_finish_storage_err(s, STORAGE_E_NOMBOX, what);
        return false;
    }
    imap_finish(s, "NO", "[NOPERM] %s: permission denied.", what);
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
    if (new_name_ok(s, a, name, invalid, "CREATE") && own_name_ok(s, name, "CREATE"))
        mbop_start(s, OP_CREATE, name, NULL, special);
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
    /* a subscription is the subscriber's own, to any name */
    if (op == OP_DELETE && !shared_name_ok(s, name, op_names[op]))
        return;
    mbop_start(s, op, name, NULL, 0);
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
    if (new_name_ok(s, a, to, bad_to, "RENAME") && shared_name_ok(s, from, "RENAME") &&
        own_name_ok(s, to, "RENAME"))
        mbop_start(s, OP_RENAME, from, to, 0);
}
