/* COPY, MOVE and their UID forms (RFC 3501, RFC 6851): one storage call
 * on the thread pool; the answer carries COPYUID (RFC 4315), and MOVE's
 * EXPUNGE responses for the messages that left. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

struct copy_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    struct storage_uidset set;
    char dst[STORAGE_MBOX_NAME_MAX + 1];
    bool move, uid_cmd;
    int err;
    struct storage_mbox dmb;
    struct storage_uidlist src, dstu;
};

static void copy_work(struct imap_job *j)
{
    struct copy_job *cj = (struct copy_job *)j;
    /* the destination is checked even when there is nothing to copy */
    cj->err = storage_mbox_get(j->u, cj->dst, &cj->dmb);
    if (cj->err || cj->set.n == 0)
        return;
    if (cj->move)
        cj->err = storage_move(j->u, cj->mbox, &cj->set, cj->dmb.id, &cj->src, &cj->dstu);
    else
        cj->err = storage_copy(j->u, cj->mbox, &cj->set, cj->dmb.id, &cj->src, &cj->dstu);
}

static void copy_free(struct imap_job *j)
{
    struct copy_job *cj = (struct copy_job *)j;
    imap_arena_free(&cj->ar);
    storage_uidlist_free(&cj->src);
    storage_uidlist_free(&cj->dstu);
    free(cj);
}

static void copy_done(struct imap_session *s, struct imap_job *j)
{
    struct copy_job *cj = (struct copy_job *)j;
    const char *name = cj->move ? "MOVE" : "COPY";
    struct buf code = {0};

    if (cj->err == STORAGE_E_NOMBOX) {
        imap_finish(s, "NO", "[TRYCREATE] %s: no such destination mailbox.", name);
        return;
    }
    if (cj->err) {
        imap_finish_storage_err(s, cj->err, name);
        return;
    }
    if (s->sel && cj->dmb.id == s->sel->id)
        imap_sel_note_new(s, cj->dstu.uids, cj->dstu.n);
    if (cj->src.n) {
        buf_printf(&code, "[COPYUID %u ", cj->dmb.uidvalidity);
        imap_buf_uids(&code, cj->src.uids, cj->src.n);
        buf_add(&code, " ", 1);
        imap_buf_uids(&code, cj->dstu.uids, cj->dstu.n);
        buf_add(&code, "] ", 2);
    }
    if (code.oom)
        buf_free(&code);
    if (cj->move) {
        if (code.len)
            imap_printf(s, "* OK %.*s%s\r\n", (int)code.len - 1, code.p, "Moved.");
        /* our own expunges: announced now, whatever the command (RFC 6851) */
        if (s->sel)
            imap_sel_expunged(s, cj->src.uids, cj->src.n);
        buf_free(&code);
        imap_finish(s, "OK", "%sMOVE completed.", cj->uid_cmd ? "UID " : "");
        return;
    }
    imap_finish(s, "OK", "%s%sCOPY completed.", code.p ? code.p : "", cj->uid_cmd ? "UID " : "");
    buf_free(&code);
}

static void do_copy(struct imap_session *s, struct imap_args *a, bool move)
{
    struct copy_job *cj = calloc(1, sizeof(*cj));
    struct storage_uidset us;
    bool invalid = false;
    int r;

    if (!cj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    cj->j.free_fn = copy_free;
    if (!imap_sel_set_arg(s, a, &cj->ar, &us)) {
        copy_free(&cj->j);
        return;
    }
    cj->set = us;
    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, cj->dst, sizeof(cj->dst)), &invalid)) !=
            IMAP_ARG_OK ||
        !imap_args_at_end(a)) {
        copy_free(&cj->j);
        imap_bad_arg(s, r, move ? "MOVE set mailbox" : "COPY set mailbox");
        return;
    }
    if (invalid) {
        copy_free(&cj->j);
        imap_no_name(s, move ? "MOVE" : "COPY", true);
        return;
    }
    if (move && s->sel->readonly) {
        copy_free(&cj->j);
        imap_finish(s, "NO", "[READ-ONLY] The mailbox is read-only.");
        return;
    }
    cj->mbox = s->sel->id;
    cj->move = move;
    cj->uid_cmd = s->uid_cmd;
    imap_cmd_job(s, &cj->j, copy_work, copy_done);
}

void imap_cmd_copy(struct imap_session *s, struct imap_args *a)
{
    do_copy(s, a, false);
}

void imap_cmd_move(struct imap_session *s, struct imap_args *a)
{
    do_copy(s, a, true);
}
