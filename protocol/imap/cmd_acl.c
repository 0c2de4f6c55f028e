/* ACL (RFC 4314 section 3): SETACL, DELETEACL, GETACL, LISTRIGHTS and
 * MYRIGHTS, on the user's own mailboxes (where the owner has every right)
 * and on others' through the shared namespace (imap_ns.c), where the
 * rights come from the ACL snapshot: `a` for all but MYRIGHTS, and a
 * mailbox the user may neither list nor read answers as one that does not
 * exist, with the same bytes. Rights are read from the snapshot on the
 * loop; a change goes to the login service's threads
 * (auth_service_acl_change) and is answered once the new snapshot is in.
 * The ACL following CREATE, RENAME and DELETE of own mailboxes goes the
 * same way (imap_acl_follow). */
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"
#include "server/base/log.h"

enum acl_cmd { AC_SET, AC_DELETE, AC_GET, AC_LIST, AC_MY };
static const char *const acl_names[] = {"SETACL", "DELETEACL", "GETACL", "LISTRIGHTS", "MYRIGHTS"};

/* ---- a change in flight: the command's continuation until it is in ---- */

struct acl_wait {
    struct imap_session *s; /* NULL once the session is gone */
    bool follow;            /* a storage change's follow-up: OK whatever happens */
    char what[16];
    char ok[192];
};

static void wait_abort(struct imap_session *s)
{
    struct acl_wait *w = s->cont_data;
    w->s = NULL; /* freed by on_changed */
}

static const struct imap_cont wait_cont = {NULL, NULL, NULL, wait_abort};

static void on_changed(void *arg, int result)
{
    struct acl_wait *w = arg;
    struct imap_session *s = w->s;

    if (w->follow && result != 0)
        log_warn("imap: %s: the ACL did not follow the mailbox (error %d)", w->what, result);
    if (!s) {
        free(w);
        return;
    }
    imap_cont_end(s);
    if (w->follow || result == 0)
        imap_finish(s, "OK", "%s", w->ok);
    else if (result == ACL_E_OWNER)
        imap_finish(s, "NO", "[CANNOT] %s: the owner's rights cannot be changed.", w->what);
    else if (result == ACL_E_BADIDENT || result == AUTH_E_BADADDR || result == AUTH_E_NOUSER)
        imap_finish(s, "NO", "[CANNOT] %s: invalid identifier.", w->what);
    else if (result == ACL_E_NOGROUP)
        imap_finish(s, "NO", "[CANNOT] %s: no such group.", w->what);
    else if (result == ACL_E_LIMIT)
        imap_finish(s, "NO", "[LIMIT] %s: too many entries on the mailbox.", w->what);
    else
        imap_finish(s, "NO", "[UNAVAILABLE] %s: temporary failure; try again later.", w->what);
    free(w);
    imap_flush(s);
}

/* Runs ch, then answers OK ok (follow: also when it failed, logged) or
 * the error. */
static void change_then(struct imap_session *s, const struct acl_change *ch, const char *what,
                        const char *ok, bool follow)
{
    struct acl_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    w->s = s;
    w->follow = follow;
    snprintf(w->what, sizeof(w->what), "%s", what);
    snprintf(w->ok, sizeof(w->ok), "%s", ok);
    imap_cont_start(s, &wait_cont, w);
    if (auth_service_acl_change(conn_auth(s->c), ch, on_changed, w) < 0) {
        imap_cont_end(s);
        free(w);
        if (follow)
            imap_finish(s, "OK", "%s", ok);
        else
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
    }
}

void imap_acl_follow(struct imap_session *s, int64_t owner, int op, const char *a, const char *b,
                     const char *what, const char *ok)
{
    struct acl_change ch;

    memset(&ch, 0, sizeof(ch));
    ch.op = op;
    ch.owner = owner;
    snprintf(ch.mailbox, sizeof(ch.mailbox), "%s", a);
    if (b)
        snprintf(ch.other, sizeof(ch.other), "%s", b);
    change_then(s, &ch, what, ok, true);
}

/* ---- the commands ---- */

struct acl_job {
    struct imap_job j;
    enum acl_cmd cmd;
    struct imap_mref ref;
    char ident[ACL_IDENT_MAX];
    unsigned rights;
    char mode;
    int err;
};

static void write_mbox(struct imap_session *s, struct buf *b, const struct imap_mref *r)
{
    char name[IMAP_NAME_MAX + 1];
    if (imap_ns_name(r, name, sizeof(name)) < 0)
        name[0] = '\0';
    imap_buf_mbox(b, name, s->utf8);
}

/* An identifier as an astring: an atom when it can be one. */
static void write_ident(struct buf *b, const char *id)
{
    bool atom = id[0] != '\0';
    for (const char *p = id; *p && atom; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || strchr("(){%*\"\\]", *p))
            atom = false;
    if (atom)
        buf_str(b, id);
    else
        buf_imap_string(b, id, strlen(id));
}

struct getacl_out {
    struct buf *b;
};

static void entry_cb(void *arg, const char *ident, unsigned rights)
{
    struct getacl_out *o = arg;
    char r[ACL_RIGHTS_MAX];
    acl_rights_format_virtual(rights, r);
    buf_addc(o->b, ' ');
    write_ident(o->b, ident);
    buf_addc(o->b, ' ');
    buf_imap_string(o->b, r, strlen(r));
}

/* The answer, the mailbox known to exist and the rights checked. */
static void acl_answer(struct imap_session *s, struct acl_job *aj)
{
    struct imap_mref *r = &aj->ref;
    const struct acl_snap *snap = auth_service_acl(conn_auth(s->c));
    struct buf *b;
    char rs[ACL_RIGHTS_MAX];
    struct acl_change ch;

    switch (aj->cmd) {
    case AC_SET:
    case AC_DELETE:
        memset(&ch, 0, sizeof(ch));
        ch.op = aj->cmd == AC_SET ? ACL_CH_SET : ACL_CH_DELETE;
        ch.owner = r->owner;
        snprintf(ch.mailbox, sizeof(ch.mailbox), "%s", r->name);
        memcpy(ch.ident, aj->ident, sizeof(ch.ident));
        ch.rights = aj->rights;
        ch.mode = aj->mode;
        change_then(s, &ch, acl_names[aj->cmd],
                    aj->cmd == AC_SET ? "SETACL completed." : "DELETEACL completed.", false);
        return;
    case AC_GET:
        b = imap_outbuf(s);
        buf_str(b, "* ACL ");
        write_mbox(s, b, r);
        /* the owner's rights are implicit: all of them */
        acl_rights_format_virtual(ACL_ALL, rs);
        buf_addc(b, ' ');
        write_ident(b, r->owner_address);
        buf_printf(b, " %s", rs);
        if (snap) {
            struct getacl_out o = {b};
            acl_snap_entries(snap, r->owner, r->name, entry_cb, &o);
        }
        buf_str(b, "\r\n");
        break;
    case AC_LIST:
        b = imap_outbuf(s);
        buf_str(b, "* LISTRIGHTS ");
        write_mbox(s, b, r);
        buf_addc(b, ' ');
        write_ident(b, aj->ident);
        if (!strcmp(aj->ident, r->owner_address)) {
            acl_rights_format_virtual(ACL_ALL, rs);
            buf_printf(b, " %s\r\n", rs);
        } else {
            /* RFC 4314 3.7: nothing required, each right on its own, and
             * the virtual c and d (2.1.1) */
            buf_str(b, " \"\"");
            for (const char *c = ACL_RIGHTS_CHARS; *c; c++)
                buf_printf(b, " %c", *c);
            buf_str(b, " c d\r\n");
        }
        break;
    case AC_MY:
        b = imap_outbuf(s);
        buf_str(b, "* MYRIGHTS ");
        write_mbox(s, b, r);
        acl_rights_format_virtual(r->rights, rs);
        buf_addc(b, ' ');
        buf_imap_string(b, rs, strlen(rs));
        buf_str(b, "\r\n");
        break;
    }
    imap_finish(s, "OK", "%s completed.", acl_names[aj->cmd]);
}

static void exists_work(struct imap_job *j)
{
    struct acl_job *aj = (struct acl_job *)j;
    struct storage_mbox mb;
    aj->err = storage_mbox_get(j->u, aj->ref.name, &mb);
}

static void exists_done(struct imap_session *s, struct imap_job *j)
{
    struct acl_job *aj = (struct acl_job *)j;
    if (aj->err) {
        imap_finish_storage_err(s, aj->err, acl_names[aj->cmd]);
        return;
    }
    acl_answer(s, aj);
}

static void acl_cmd(struct imap_session *s, struct imap_args *a, enum acl_cmd cmd)
{
    static const char *const usage[] = {"SETACL mailbox identifier rights",
                                        "DELETEACL mailbox identifier", "GETACL mailbox",
                                        "LISTRIGHTS mailbox identifier", "MYRIGHTS mailbox"};
    char name[IMAP_NAME_MAX + 1], ident[ACL_IDENT_MAX + 1], rights[64];
    size_t il = 0, rl = 0;
    bool invalid = false;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, name, sizeof(name)), &invalid)) != IMAP_ARG_OK) {
        imap_bad_arg(s, r, usage[cmd]);
        return;
    }
    if (cmd == AC_SET || cmd == AC_DELETE || cmd == AC_LIST) {
        if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
            (r = imap_args_astring(a, ident, sizeof(ident), &il)) != IMAP_ARG_OK) {
            imap_bad_arg(s, r == IMAP_ARG_DEEP ? r : IMAP_ARG_BAD, usage[cmd]);
            return;
        }
    }
    if (cmd == AC_SET) {
        if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
            (r = imap_args_astring(a, rights, sizeof(rights), &rl)) != IMAP_ARG_OK) {
            imap_bad_arg(s, IMAP_ARG_BAD, usage[cmd]);
            return;
        }
    }
    if (!imap_args_at_end(a)) {
        imap_bad(s, "Unexpected arguments.");
        return;
    }
    struct acl_job *aj = calloc(1, sizeof(*aj));
    if (!aj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    aj->cmd = cmd;
    /* RFC 4314 3.1: an unknown right is a BAD command */
    if (cmd == AC_SET && acl_rights_parse(rights, rl, &aj->rights, &aj->mode) != 0) {
        free(aj);
        imap_bad(s, "SETACL: invalid rights (RFC 4314: %s).", ACL_RIGHTS_CHARS);
        return;
    }
    if (invalid) {
        free(aj);
        imap_no_name(s, acl_names[cmd], true);
        return;
    }
    if (imap_ns_resolve(s, name, &aj->ref) != 0 || (aj->ref.shared && !imap_ns_visible(&aj->ref))) {
        /* too long, a level, or a shared name the user may not see: as
         * missing */
        free(aj);
        imap_finish_storage_err(s, STORAGE_E_NOMBOX, acl_names[cmd]);
        return;
    }
    if (cmd != AC_MY && !(aj->ref.rights & ACL_ADMIN)) {
        free(aj);
        imap_finish(s, "NO", "[NOPERM] %s: permission denied.", acl_names[cmd]);
        return;
    }
    if (cmd == AC_SET || cmd == AC_DELETE || cmd == AC_LIST) {
        const char *dd = conn_conf(s->c)->default_domain;
        char norm[ACL_IDENT_MAX];
        if (acl_ident_normalize(ident, il, dd, norm) != 0) {
            free(aj);
            if (cmd == AC_LIST)
                imap_bad(s, "LISTRIGHTS: invalid identifier.");
            else
                imap_finish(s, "NO", "[CANNOT] %s: invalid identifier.", acl_names[cmd]);
            return;
        }
        memcpy(aj->ident, norm, sizeof(aj->ident));
        if (cmd != AC_LIST && !strcmp(norm, aj->ref.owner_address)) {
            free(aj);
            imap_finish(s, "NO", "[CANNOT] %s: the owner's rights cannot be changed.",
                        acl_names[cmd]);
            return;
        }
    }
    if (aj->ref.shared) {
        /* the snapshot says it is there; rows go with DELETE and RENAME */
        acl_answer(s, aj);
        free(aj);
        return;
    }
    imap_cmd_job(s, &aj->j, exists_work, exists_done);
}

void imap_cmd_setacl(struct imap_session *s, struct imap_args *a)
{
    acl_cmd(s, a, AC_SET);
}

void imap_cmd_deleteacl(struct imap_session *s, struct imap_args *a)
{
    acl_cmd(s, a, AC_DELETE);
}

void imap_cmd_getacl(struct imap_session *s, struct imap_args *a)
{
    acl_cmd(s, a, AC_GET);
}

void imap_cmd_listrights(struct imap_session *s, struct imap_args *a)
{
    acl_cmd(s, a, AC_LIST);
}

void imap_cmd_myrights(struct imap_session *s, struct imap_args *a)
{
    acl_cmd(s, a, AC_MY);
}
