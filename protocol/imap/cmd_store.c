/* STORE and UID STORE: flags of messages of the selected mailbox changed
 * in one storage call on the thread pool; the FETCH FLAGS answers are
 * written on the loop with this session's sequence numbers (none with
 * .SILENT, except for messages others changed meanwhile). The
 * UNCHANGEDSINCE modifier (RFC 7162 3.1.3) leaves the messages changed
 * since alone and names them in [MODIFIED set]; once CONDSTORE is on, the
 * answers carry MODSEQ, and with .SILENT they are MODSEQ alone. On a
 * shared mailbox whose \Seen is per user (imap_sel.seen_viewer), \Seen
 * goes to the session's own set (storage_pseen_store) and the other
 * flags to the message rows: two transactions, two modseqs. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"

struct store_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    struct storage_uidset set;
    enum storage_store_op op;
    struct imap_flags fl;
    bool silent, uid_cmd, condstore;
    bool conditional;        /* UNCHANGEDSINCE given */
    uint64_t unchangedsince; /* its value (0: every message fails) */
    int err;
    uint64_t modseq;
    int64_t viewer;       /* per-user \Seen: the session's account, else 0 */
    uint64_t seen_modseq; /* the viewer's \Seen change */
    struct storage_seen seen;
    struct imap_flagset res;       /* the flags after the change */
    struct imap_flagset changed;   /* .SILENT with CONDSTORE: the messages changed */
    struct storage_uidlist failed; /* UNCHANGEDSINCE: left alone, ascending */
};

static int store_changed(void *arg, const struct storage_msg *m)
{
    struct store_job *sj = arg;
    sj->modseq = m->modseq;
    if (sj->silent && sj->condstore)
        return imap_flagset_add(&sj->changed, m);
    return 0;
}

static bool store_failed(const struct store_job *sj, uint32_t uid)
{
    size_t i = imap_lower_bound(sj->failed.uids, sj->failed.n, uid);
    return i < sj->failed.n && sj->failed.uids[i] == uid;
}

static int store_state(void *arg, const struct storage_msg *m)
{
    struct store_job *sj = arg;
    if (sj->failed.n && store_failed(sj, m->uid))
        return 0; /* not stored: named in MODIFIED */
    if (sj->viewer) {
        struct storage_msg v = *m;
        v.flags = storage_seen_flags(&sj->seen, m->uid, m->flags);
        if (sj->silent) /* .SILENT with CONDSTORE: the messages changed */
            return v.modseq == sj->modseq || v.modseq == sj->seen_modseq
                       ? imap_flagset_add(&sj->changed, &v)
                       : 0;
        return imap_flagset_add(&sj->res, &v);
    }
    return imap_flagset_add(&sj->res, m);
}

/* The UIDs of a, less those of b (both ascending), as a set in ar. */
static bool set_minus(struct imap_arena *ar, const struct storage_uidset *a,
                      const struct storage_uidlist *b, struct storage_uidset *out)
{
    struct storage_range *r;
    size_t n = 0, k = 0;

    *out = *a;
    if (!b->n)
        return true;
    if (!(r = imap_arena_alloc(ar, (a->n + b->n) * sizeof(*r))))
        return false;
    for (size_t i = 0; i < a->n; i++) {
        uint64_t lo = a->r[i].lo, hi = a->r[i].hi;
        for (k = 0; k < b->n && lo <= hi; k++) {
            if (b->uids[k] < lo || b->uids[k] > hi)
                continue;
            if (b->uids[k] > lo)
                r[n++] = (struct storage_range){(uint32_t)lo, b->uids[k] - 1};
            lo = (uint64_t)b->uids[k] + 1;
        }
        if (lo <= hi)
            r[n++] = (struct storage_range){(uint32_t)lo, (uint32_t)hi};
    }
    out->r = r;
    out->n = n;
    return true;
}

static bool uid_push(struct storage_uidlist *l, uint32_t uid)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        uint32_t *v = realloc(l->uids, ncap * sizeof(*v));
        if (!v)
            return false;
        l->uids = v;
        l->cap = ncap;
    }
    l->uids[l->n++] = uid;
    return true;
}

/* *a becomes a | b (both ascending, without repeats). */
static bool merge_failed(struct storage_uidlist *a, const struct storage_uidlist *b)
{
    struct storage_uidlist all = {0};
    size_t i = 0, k = 0;

    while (i < a->n || k < b->n) {
        uint32_t v;
        if (k >= b->n || (i < a->n && a->uids[i] <= b->uids[k])) {
            v = a->uids[i++];
            if (k < b->n && b->uids[k] == v)
                k++;
        } else {
            v = b->uids[k++];
        }
        if (!uid_push(&all, v)) {
            free(all.uids);
            return false;
        }
    }
    free(a->uids);
    *a = all;
    return true;
}

/* UNCHANGEDSINCE 0: every message of the set fails (RFC 7162 3.1.3). */
static int store_all_failed(void *arg, const struct storage_msg *m)
{
    struct store_job *sj = arg;
    return uid_push(&sj->failed, m->uid) ? 0 : 1;
}

/* A viewer's STORE: \Seen to its own set, the rest to the rows. With
 * UNCHANGEDSINCE, the second step leaves out what the first did not
 * store, and takes the first's changes as unchanged. */
static void store_viewer(struct store_job *sj, struct storage_user *u)
{
    unsigned other = sj->fl.flags & ~(unsigned)STORAGE_FLAG_SEEN;
    bool seen = sj->fl.flags & STORAGE_FLAG_SEEN;
    struct storage_uidset set = sj->set;
    uint64_t since = sj->unchangedsince;

    if (sj->op == STORAGE_STORE_SET || other || sj->fl.nkw) {
        sj->err = storage_store(u, sj->mbox, &sj->set, sj->op,
                                other | (sj->op == STORAGE_STORE_SET ? STORAGE_STORE_KEEP_SEEN : 0),
                                sj->fl.kw, sj->fl.nkw, sj->unchangedsince,
                                sj->conditional ? &sj->failed : NULL, store_changed, sj);
        if (sj->err)
            return;
        if (sj->conditional && !set_minus(&sj->ar, &sj->set, &sj->failed, &set)) {
            sj->err = STORAGE_E_NOMEM;
            return;
        }
        if (sj->conditional && sj->modseq > since)
            since = sj->modseq;
    }
    if (sj->op == STORAGE_STORE_SET || seen) {
        struct storage_uidlist failed = {0};
        sj->err =
            storage_pseen_store(u, sj->mbox, sj->viewer, &set,
                                sj->op == STORAGE_STORE_SET ? seen : sj->op == STORAGE_STORE_ADD,
                                since, sj->conditional ? &failed : NULL, NULL, &sj->seen_modseq);
        if (sj->err == 0 && failed.n && !merge_failed(&sj->failed, &failed))
            sj->err = STORAGE_E_NOMEM;
        storage_uidlist_free(&failed);
        if (sj->err)
            return;
    }
    /* the answers: the flags as the viewer sees them */
    if (sj->silent && !sj->condstore)
        return;
    imap_flagset_free(&sj->changed);
    if ((sj->err = storage_pseen_get(u, sj->mbox, sj->viewer, &sj->seen)) == 0)
        sj->err = storage_fetch(u, sj->mbox, &sj->set, 0, store_state, sj);
}

static void store_work(struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;
    if (sj->conditional && sj->unchangedsince == 0) {
        sj->err = storage_fetch(j->u, sj->mbox, &sj->set, 0, store_all_failed, sj);
        return;
    }
    if (sj->viewer) {
        store_viewer(sj, j->u);
        return;
    }
    sj->err =
        storage_store(j->u, sj->mbox, &sj->set, sj->op, sj->fl.flags, sj->fl.kw, sj->fl.nkw,
                      sj->unchangedsince, sj->conditional ? &sj->failed : NULL, store_changed, sj);
    if (sj->err == 0 && !sj->silent)
        sj->err = storage_fetch(j->u, sj->mbox, &sj->set, 0, store_state, sj);
}

static void store_free(struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;
    imap_arena_free(&sj->ar);
    imap_flagset_free(&sj->res);
    imap_flagset_free(&sj->changed);
    storage_uidlist_free(&sj->failed);
    storage_seen_free(&sj->seen);
    free(sj);
}

/* "* seq FETCH ([UID u ]MODSEQ (n))" for each message changed (UIDFETCH
 * after ENABLE UIDONLY). */
static void store_announce_modseq(struct imap_session *s, const struct imap_flagset *fs, bool uid)
{
    for (size_t i = 0; i < fs->n && s->sel; i++) {
        uint32_t seq = imap_sel_seq(s->sel, fs->v[i].uid);
        if (!seq)
            continue;
        struct buf *b = imap_outbuf(s);
        if (imap_buf_fetch_open(b, s->uidonly, seq, fs->v[i].uid, uid))
            buf_addc(b, ' ');
        buf_str(b, "MODSEQ (");
        buf_addu(b, fs->v[i].modseq);
        buf_str(b, "))\r\n");
        if (b->len >= 64 * 1024)
            imap_flush(s);
    }
}

static void store_done(struct imap_session *s, struct imap_job *j)
{
    struct store_job *sj = (struct store_job *)j;

    if (sj->modseq)
        imap_sel_note_own_store(s, sj->modseq);
    if (sj->seen_modseq)
        imap_sel_note_own_store(s, sj->seen_modseq);
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "STORE");
        return;
    }
    imap_flagset_announce(s, &sj->res, sj->uid_cmd);
    store_announce_modseq(s, &sj->changed, sj->uid_cmd);
    if (sj->failed.n && s->sel) {
        /* the set in this session's numbers: UIDs, or sequence numbers
         * (ascending with the UIDs); those not in view are left out */
        struct buf set = {0};
        bool first = true;
        uint32_t lo = 0, hi = 0;
        for (size_t i = 0; i <= sj->failed.n; i++) {
            uint32_t v = 0;
            if (i < sj->failed.n && (v = imap_sel_seq(s->sel, sj->failed.uids[i])) != 0 &&
                sj->uid_cmd)
                v = sj->failed.uids[i];
            if (i < sj->failed.n && !v)
                continue;
            if (v && lo && v == hi + 1) {
                hi = v; /* runs as ranges */
                continue;
            }
            if (lo) {
                buf_printf(&set, lo == hi ? "%s%u" : "%s%u:%u", first ? "" : ",", lo, hi);
                first = false;
            }
            lo = hi = v;
        }
        if (set.oom) {
            buf_free(&set);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
        if (!first) {
            imap_finish(s, "OK", "[MODIFIED %s] Conditional STORE failed.", set.p);
            buf_free(&set);
            return;
        }
        buf_free(&set);
    }
    imap_finish(s, "OK", "%sSTORE completed.", sj->uid_cmd ? "UID " : "");
}

/* SP "(" UNCHANGEDSINCE n ")" (RFC 7162 3.1.3), the one store modifier. */
static bool store_modifiers(struct imap_args *a, uint64_t *unchangedsince)
{
    const char *w;
    size_t n;

    return imap_args_sp(a) == IMAP_ARG_OK && imap_args_open(a) == IMAP_ARG_OK &&
           imap_args_atom(a, &w, &n) == IMAP_ARG_OK && imap_word_is(w, n, "UNCHANGEDSINCE") &&
           imap_args_sp(a) == IMAP_ARG_OK && imap_args_modseq(a, unchangedsince) == IMAP_ARG_OK &&
           imap_args_close(a) == IMAP_ARG_OK;
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
    if (a->p + 1 < a->end && a->p[0] == ' ' && a->p[1] == '(') {
        if (!store_modifiers(a, &sj->unchangedsince)) {
            store_free(&sj->j);
            imap_bad(s, "Usage: STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] (flags)");
            return;
        }
        sj->conditional = true;
    }
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
    if (imap_store_rights(sj->op, sj->fl.flags, sj->fl.nkw) & ~imap_sel_rights(s)) {
        /* RFC 4314 4: \Seen needs s, \Deleted t, the others w; nothing
         * is changed when one of the flags named is not the user's to
         * change */
        store_free(&sj->j);
        imap_finish(s, "NO", "[NOPERM] STORE: you may not change some of these flags here.");
        return;
    }
    if (sj->conditional)
        imap_condstore_enable(s); /* RFC 7162 3.1 */
    sj->mbox = s->sel->id;
    sj->viewer = s->sel->seen_viewer;
    sj->uid_cmd = s->uid_cmd;
    sj->condstore = s->condstore;
    if (sj->set.n == 0) {
        store_free(&sj->j);
        imap_finish(s, "OK", "%sSTORE completed.", s->uid_cmd ? "UID " : "");
        return;
    }
    imap_sel_job(s, &sj->j, store_work, store_done);
}
