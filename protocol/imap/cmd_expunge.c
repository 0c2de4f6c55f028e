/* Ending messages and the selection: EXPUNGE and UID EXPUNGE (RFC 4315),
 * CLOSE (expunges silently, then unselects), UNSELECT (RFC 3691) and
 * CHECK. Expunging runs on the thread pool. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"

struct expunge_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    struct storage_uidset set;
    bool close, uid_cmd;
    int err;
    struct storage_uidlist gone;
};

static void expunge_work(struct imap_job *j)
{
    struct expunge_job *ej = (struct expunge_job *)j;
    ej->err = storage_expunge(j->u, ej->mbox, &ej->set, true, &ej->gone);
}

static void expunge_free(struct imap_job *j)
{
    struct expunge_job *ej = (struct expunge_job *)j;
    imap_arena_free(&ej->ar);
    storage_uidlist_free(&ej->gone);
    free(ej);
}

static void expunge_done(struct imap_session *s, struct imap_job *j)
{
    struct expunge_job *ej = (struct expunge_job *)j;
    if (ej->close) {
        /* CLOSE: silent, whatever happened to the expunge */
        imap_sel_free(s);
        imap_finish(s, "OK", "CLOSE completed.");
        return;
    }
    if (ej->err) {
        imap_finish_storage_err(s, ej->err, "EXPUNGE");
        return;
    }
    if (s->sel)
        imap_sel_expunged(s, ej->gone.uids, ej->gone.n);
    imap_finish(s, "OK", "%sEXPUNGE completed.", ej->uid_cmd ? "UID " : "");
}

static void start_expunge(struct imap_session *s, struct expunge_job *ej, bool close)
{
    ej->mbox = s->sel->id;
    ej->close = close;
    ej->uid_cmd = s->uid_cmd;
    if (!s->mu || ej->set.n == 0) {
        expunge_free(&ej->j);
        if (close) {
            imap_sel_free(s);
            imap_finish(s, "OK", "CLOSE completed.");
        } else if (!s->mu) {
            imap_storage(s);
        } else {
            imap_finish(s, "OK", "%sEXPUNGE completed.", s->uid_cmd ? "UID " : "");
        }
        return;
    }
    imap_sel_job(s, &ej->j, expunge_work, expunge_done);
}

/* the whole view: UIDs 1 .. the last one announced */
static bool whole_view(struct imap_session *s, struct expunge_job *ej)
{
    struct storage_range *r = imap_arena_alloc(&ej->ar, sizeof(*r));
    if (!r)
        return false;
    r->lo = 1;
    r->hi = uidmap_max(&s->sel->uids);
    ej->set.r = r;
    ej->set.n = s->sel->uids.n ? 1 : 0;
    return true;
}

void imap_cmd_expunge(struct imap_session *s, struct imap_args *a)
{
    struct expunge_job *ej = calloc(1, sizeof(*ej));
    if (!ej) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    if (s->uid_cmd) {
        struct storage_uidset us;
        if (!imap_sel_set_arg(s, a, &ej->ar, &us)) {
            expunge_free(&ej->j);
            return;
        }
        ej->set = us;
    } else if (!whole_view(s, ej)) {
        expunge_free(&ej->j);
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    if (!imap_args_at_end(a)) {
        expunge_free(&ej->j);
        imap_bad(s, "Unexpected arguments.");
        return;
    }
    if (s->sel->readonly) {
        expunge_free(&ej->j);
        imap_finish(s, "NO", "[READ-ONLY] The mailbox is read-only.");
        return;
    }
    if (!(imap_sel_rights(s) & ACL_EXPUNGE)) {
        expunge_free(&ej->j);
        imap_finish(s, "NO", "[NOPERM] EXPUNGE: you may not expunge messages here.");
        return;
    }
    ej->j.free_fn = expunge_free;
    start_expunge(s, ej, false);
}

void imap_cmd_close(struct imap_session *s, struct imap_args *a)
{
    /* RFC 4314 4: without e (or r any more) CLOSE only closes */
    if (s->sel->readonly ||
        (imap_sel_rights(s) & (ACL_READ | ACL_EXPUNGE)) != (ACL_READ | ACL_EXPUNGE)) {
        imap_sel_free(s);
        imap_finish(s, "OK", "CLOSE completed.");
        return;
    }
    struct expunge_job *ej = calloc(1, sizeof(*ej));
    if (!ej || !whole_view(s, ej)) {
        if (ej)
            expunge_free(&ej->j);
        imap_sel_free(s);
        imap_finish(s, "OK", "CLOSE completed.");
        return;
    }
    ej->j.free_fn = expunge_free;
    start_expunge(s, ej, true);
}

void imap_cmd_unselect(struct imap_session *s, struct imap_args *a)
{
    imap_sel_free(s);
    imap_finish(s, "OK", "UNSELECT completed.");
}

void imap_cmd_check(struct imap_session *s, struct imap_args *a)
{
    imap_finish(s, "OK", "CHECK completed.");
}
