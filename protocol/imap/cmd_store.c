/* STORE and UID STORE: flags of messages of the selected mailbox changed
 * in one storage call on the thread pool; the FETCH FLAGS answers are
 * written on the loop with this session's sequence numbers (none with
 * .SILENT, except for messages others changed meanwhile). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

struct st_flag {
    uint32_t uid;
    unsigned flags;
    uint32_t kwoff;
};

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
    struct st_flag *res;
    size_t nres, capres;
    struct buf kw;
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
    if (sj->nres == sj->capres) {
        size_t ncap = sj->capres ? sj->capres * 2 : 64;
        struct st_flag *n = realloc(sj->res, ncap * sizeof(*n));
        if (!n)
            return 1;
        sj->res = n;
        sj->capres = ncap;
    }
    struct st_flag *f = &sj->res[sj->nres++];
    f->uid = m->uid;
    f->flags = m->flags;
    f->kwoff = UINT32_MAX;
    if (m->keywords && *m->keywords) {
        f->kwoff = (uint32_t)sj->kw.len;
        buf_add(&sj->kw, m->keywords, strlen(m->keywords) + 1);
    }
    return 0;
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
    free(sj->res);
    buf_free(&sj->kw);
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
    for (size_t i = 0; i < sj->nres && s->sel; i++) {
        uint32_t seq = imap_sel_seq(s->sel, sj->res[i].uid);
        if (!seq)
            continue;
        struct buf *b = imap_outbuf(s);
        buf_printf(b, "* %u FETCH (", seq);
        if (sj->uid_cmd)
            buf_printf(b, "UID %u ", sj->res[i].uid);
        buf_str(b, "FLAGS ");
        imap_buf_flags(b, sj->res[i].flags,
                       sj->res[i].kwoff == UINT32_MAX ? NULL : sj->kw.p + sj->res[i].kwoff,
                       imap_sel_recent(s->sel, sj->res[i].uid));
        buf_str(b, ")\r\n");
        if (b->len >= 64 * 1024)
            imap_flush(s);
    }
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
    if (!imap_storage(s)) {
        store_free(&sj->j);
        return;
    }
    if (imap_job_start(s, &sj->j, store_work, store_done) < 0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}
