/* Commands that change messages of the selected mailbox: STORE, COPY,
 * MOVE, EXPUNGE (and UID variants), plus CLOSE, UNSELECT and CHECK. Each
 * runs as one storage call on the thread pool; the answers (FETCH FLAGS,
 * COPYUID, EXPUNGE) are written on the loop with this session's sequence
 * numbers. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

/* "1:3,7" from an ascending or any-order UID list, in list order */
static void uid_list_text(struct imap_buf *b, const uint32_t *u, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k + 1 < n && u[k + 1] == u[k] + 1)
            k++;
        if (i)
            imap_buf_add(b, ",", 1);
        if (k > i)
            imap_buf_printf(b, "%u:%u", u[i], u[k]);
        else
            imap_buf_printf(b, "%u", u[i]);
        i = k + 1;
    }
}

static bool set_arg(struct imap_session *s, struct imap_args *a, struct imap_arena *ar,
                    struct storage_uidset *us)
{
    struct imap_seqset set;
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_seqset(a, ar, &set) != IMAP_ARG_OK) {
        imap_bad(s, "Invalid sequence set.");
        return false;
    }
    if (imap_sel_resolve(s, &set, s->uid_cmd, ar, us) < 0) {
        imap_bad(s, "Invalid message sequence number.");
        return false;
    }
    return true;
}

/* ---- STORE ---- */

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
    struct imap_buf kw;
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
        imap_buf_add(&sj->kw, m->keywords, strlen(m->keywords) + 1);
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
    imap_buf_free(&sj->kw);
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
        struct imap_buf *b = imap_outbuf(s);
        imap_buf_printf(b, "* %u FETCH (", seq);
        if (sj->uid_cmd)
            imap_buf_printf(b, "UID %u ", sj->res[i].uid);
        imap_buf_str(b, "FLAGS ");
        imap_buf_flags(b, sj->res[i].flags,
                       sj->res[i].kwoff == UINT32_MAX ? NULL : sj->kw.p + sj->res[i].kwoff,
                       imap_sel_recent(s->sel, sj->res[i].uid));
        imap_buf_str(b, ")\r\n");
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
    if (!set_arg(s, a, &sj->ar, &us)) {
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

/* ---- COPY / MOVE ---- */

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
    cj->err = storage_mbox_get(j->u, cj->dst, &cj->dmb);
    if (cj->err)
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
    struct imap_buf code = {0};

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
        imap_buf_printf(&code, "[COPYUID %u ", cj->dmb.uidvalidity);
        uid_list_text(&code, cj->src.uids, cj->src.n);
        imap_buf_add(&code, " ", 1);
        uid_list_text(&code, cj->dstu.uids, cj->dstu.n);
        imap_buf_add(&code, "] ", 2);
    }
    if (code.oom) {
        imap_buf_free(&code);
        imap_buf_add(&code, "", 0);
    }
    if (cj->move) {
        if (code.len)
            imap_printf(s, "* OK %.*s%s\r\n", (int)code.len - 1, code.p, "Moved.");
        /* our own expunges: announced now, whatever the command (RFC 6851) */
        if (s->sel)
            imap_sel_expunged(s, cj->src.uids, cj->src.n);
        imap_buf_free(&code);
        imap_finish(s, "OK", "%sMOVE completed.", cj->uid_cmd ? "UID " : "");
        return;
    }
    imap_buf_add(&code, "", 1);
    imap_finish(s, "OK", "%s%sCOPY completed.", code.p ? code.p : "", cj->uid_cmd ? "UID " : "");
    imap_buf_free(&code);
}

static void do_copy(struct imap_session *s, struct imap_args *a, bool move)
{
    struct copy_job *cj = calloc(1, sizeof(*cj));
    struct storage_uidset us;
    int r;

    if (!cj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    cj->j.free_fn = copy_free;
    if (!set_arg(s, a, &cj->ar, &us)) {
        copy_free(&cj->j);
        return;
    }
    cj->set = us;
    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_args_mailbox(a, cj->dst, sizeof(cj->dst))) != IMAP_ARG_OK ||
        !imap_args_at_end(a)) {
        copy_free(&cj->j);
        if (r == IMAP_ARG_BADNAME)
            imap_bad(s, "Invalid mailbox name (modified UTF-7).");
        else
            imap_bad(s, "Usage: %s set mailbox", move ? "MOVE" : "COPY");
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
    if (cj->set.n == 0) {
        copy_free(&cj->j);
        imap_finish(s, "OK", "%s%s completed.", s->uid_cmd ? "UID " : "", move ? "MOVE" : "COPY");
        return;
    }
    if (!imap_storage(s)) {
        copy_free(&cj->j);
        return;
    }
    if (imap_job_start(s, &cj->j, copy_work, copy_done) < 0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}

void imap_cmd_copy(struct imap_session *s, struct imap_args *a)
{
    do_copy(s, a, false);
}

void imap_cmd_move(struct imap_session *s, struct imap_args *a)
{
    do_copy(s, a, true);
}

/* ---- EXPUNGE / CLOSE ---- */

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
    if (imap_job_start(s, &ej->j, expunge_work, expunge_done) < 0) {
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
    }
}

/* the whole view: UIDs 1 .. the last one announced */
static bool whole_view(struct imap_session *s, struct expunge_job *ej)
{
    struct storage_range *r = imap_arena_alloc(&ej->ar, sizeof(*r));
    if (!r)
        return false;
    r->lo = 1;
    r->hi = s->sel->uids.n ? s->sel->uids.v[s->sel->uids.n - 1] : 0;
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
        if (!set_arg(s, a, &ej->ar, &us)) {
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
    ej->j.free_fn = expunge_free;
    start_expunge(s, ej, false);
}

void imap_cmd_close(struct imap_session *s, struct imap_args *a)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "CLOSE takes no arguments.");
        return;
    }
    if (s->sel->readonly) {
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
    if (!imap_args_at_end(a)) {
        imap_bad(s, "UNSELECT takes no arguments.");
        return;
    }
    imap_sel_free(s);
    imap_finish(s, "OK", "UNSELECT completed.");
}

void imap_cmd_check(struct imap_session *s, struct imap_args *a)
{
    if (!imap_args_at_end(a)) {
        imap_bad(s, "CHECK takes no arguments.");
        return;
    }
    imap_finish(s, "OK", "CHECK completed.");
}
