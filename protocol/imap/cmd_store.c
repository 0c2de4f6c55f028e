/* STORE and UID STORE: flags of messages of the selected mailbox changed
 * in one storage call on the thread pool; the FETCH FLAGS answers are
 * written on the loop with this session's sequence numbers (none with
 * .SILENT, except for messages others changed meanwhile). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

struct store_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    struct storage_uidset set;
    enum storage_store_op op;
    struct imap_flags fl;
    bool silent, uid_cmd;
    int err;
    uint64_t modseq;
    struct imap_flagset res; /* the flags after the change */
};

static int store_changed(void *arg, const struct storage_msg *m)
{
    struct store_job *sj = arg;
    sj->modseq = m->modseq;
    return 0;
}

static int store_state(void *arg, const struct storage_msg *m)
{
    struct store_job *sj = arg;
    return imap_flagset_add(&sj->res, m);
}

static void store_work(struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;
    sj->err = storage_store(j->u, sj->mbox, &sj->set, sj->op, sj->fl.flags, sj->fl.kw, sj->fl.nkw,
                            0, NULL, store_changed, sj);
    if (sj->err == 0 && !sj->silent)
        sj->err = storage_fetch(j->u, sj->mbox, &sj->set, 0, store_state, sj);
}

static void store_free(struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;
    imap_arena_free(&sj->ar);
    imap_flagset_free(&sj->res);
    free(sj);
}

static void store_done(struct imap_session *s, struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;

    if (sj->modseq)
        imap_sel_note_own_store(s, sj->modseq);
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "STORE");
        return;
    }
    imap_flagset_announce(s, &sj->res, sj->uid_cmd);
    imap_finish(s, "OK", "%sSTORE completed.", sj->uid_cmd ? "UID " : "");
}

void imap_cmd_store(struct imap_session *s, struct imap_args *a)
{
    struct store_job *sj = calloc(1, sizeof(*sj));
    struct storage_uidset us;
    const char *w;
    size_t n;
    int r;

    if (!sj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    sj->j.free_fn = store_free;
    if (!imap_sel_set_arg(s, a, &sj->ar, &us)) {
        store_free(&sj->j);
        return;
    }
    sj->set = us;
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
        store_free(&sj->j);
        imap_bad(s, "Usage: STORE set [+|-]FLAGS[.SILENT] (flags)");
        return;
    }
    sj->op = STORAGE_STORE_SET;
    if (n && (*w == '+' || *w == '-')) {
        sj->op = *w == '+' ? STORAGE_STORE_ADD : STORAGE_STORE_REMOVE;
        w++;
        n--;
    }
    if (n == 12 && !strncasecmp(w, "FLAGS.SILENT", 12))
        sj->silent = true;
    else if (n != 5 || strncasecmp(w, "FLAGS", 5)) {
        store_free(&sj->j);
        imap_bad(s, "Usage: STORE set [+|-]FLAGS[.SILENT] (flags)");
        return;
    }
    if (imap_args_sp(a) != IMAP_ARG_OK ||
        (r = imap_args_flags(a, &sj->ar, true, &sj->fl)) != IMAP_ARG_OK || !imap_args_at_end(a)) {
        store_free(&sj->j);
        imap_bad(s, "Invalid flag list.");
        return;
    }
    if (s->sel->readonly) {
        store_free(&sj->j);
        imap_finish(s, "NO", "[READ-ONLY] The mailbox is read-only.");
        return;
    }
    sj->mbox = s->sel->id;
    sj->uid_cmd = s->uid_cmd;
    if (sj->set.n == 0) {
        store_free(&sj->j);
        imap_finish(s, "OK", "%sSTORE completed.", s->uid_cmd ? "UID " : "");
        return;
    }
    imap_cmd_job(s, &sj->j, store_work, store_done);
}
