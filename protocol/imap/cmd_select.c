/* SELECT and EXAMINE: the mailbox, its UID list, the keywords in use and
 * the first unseen message come from the state the account's store keeps
 * of it (storage_mbox_info, on the thread pool), and the \Recent floor
 * from the index, which SELECT moves up in the same work (it claims the
 * messages there: storage_recent_claim) and EXAMINE only reads; the
 * session then holds the mailbox as its view (imap_mailbox.c) and
 * announces it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"

struct select_job {
    struct imap_job j;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    bool readonly;
    const void *owner; /* the session, as the claim's token */
    int err;
    struct storage_mbox_info info;
    uint32_t recent_floor;
    uint64_t recent_gen;
    bool claimed, installed;
    /* QRESYNC (RFC 7162 3.2.5): the client's UIDVALIDITY and what it asks */
    bool qresync, qr_match;
    uint32_t qr_uidvalidity;
    struct imap_vanished qr;
    struct imap_flagset changed; /* the known messages changed since */
    /* another account's mailbox (the shared namespace) */
    bool shared;
    struct imap_mref ref;
    /* per-user \Seen: the account whose own \Seen the session reads in
     * this mailbox (imap_sel.seen_viewer), 0: the rows'; and its set */
    int64_t viewer;
    struct storage_seen seen;
};

static int changed_cb(void *arg, const struct storage_msg *m)
{
    struct select_job *sj = arg;
    if (!imap_vanished_knows(&sj->qr, m->uid))
        return 0;
    if (sj->viewer) {
        struct storage_msg v = *m;
        v.flags = storage_seen_flags(&sj->seen, m->uid, m->flags);
        return imap_flagset_add(&sj->changed, &v);
    }
    return imap_flagset_add(&sj->changed, m);
}

static void select_work(struct imap_job *j)
{
    struct select_job *sj = (struct select_job *)j;
    const struct storage_mbox *mb = &sj->info.mb;

    sj->err = storage_mbox_info_viewer(j->u, sj->name, 0, sj->viewer, true, &sj->info);
    if (sj->err)
        return;
    if (sj->viewer && sj->qresync && mb->uidvalidity == sj->qr_uidvalidity &&
        (sj->err = storage_pseen_get(j->u, mb->id, sj->viewer, &sj->seen)) != 0)
        return;
    if (sj->qresync && mb->uidvalidity == sj->qr_uidvalidity) {
        /* 3.2.5: a UIDVALIDITY other than the client's: no resync data */
        const struct storage_mbox_info *in = &sj->info;
        uint32_t top = mb->uidnext ? mb->uidnext - 1 : 0;
        if (in->nranges && in->ranges[in->nranges - 1].hi > top)
            top = in->ranges[in->nranges - 1].hi;
        sj->qr_match = true;
        sj->err =
            imap_vanished_run(j->u, mb->id, &sj->qr, in->ranges, in->nranges, top, changed_cb, sj);
        if (sj->err)
            return;
    }
    if (sj->shared) {
        /* \Recent of another account's mailbox is its owner's: no
         * message is \Recent in this view, and it claims none */
        const struct storage_mbox_info *in = &sj->info;
        sj->recent_floor = in->nranges ? in->ranges[in->nranges - 1].hi : 0;
    } else if (sj->readonly) {
        sj->err = storage_recent_floor(j->u, mb->id, mb->uidvalidity, &sj->recent_floor);
    } else {
        sj->err = storage_recent_claim(j->u, mb->id, mb->uidvalidity, sj->owner, &sj->recent_floor,
                                       &sj->recent_gen);
        sj->claimed = sj->err == 0;
    }
}

static void select_free(struct imap_job *j)
{
    struct select_job *sj = (struct select_job *)j;
    /* a claim whose session never took the mailbox takes no arrivals */
    if (sj->claimed && !sj->installed)
        storage_recent_release(j->u, sj->info.mb.id, sj->owner);
    storage_mbox_info_free(&sj->info);
    imap_vanished_free(&sj->qr);
    imap_flagset_free(&sj->changed);
    storage_seen_free(&sj->seen);
    free(sj);
}

static void select_done(struct imap_session *s, struct imap_job *j)
{
    struct select_job *sj = (struct select_job *)j;
    struct imap_sel *sel;
    uint32_t uidnext;

    if (sj->err) {
        imap_finish_storage_err(s, sj->err, sj->readonly ? "EXAMINE" : "SELECT");
        return;
    }
    sel = imap_sel_install(s, &sj->info.mb, &sj->info, sj->readonly || sj->shared, sj->recent_floor,
                           sj->recent_gen, &uidnext);
    if (!sel) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    sj->installed = true; /* imap_sel_free releases the claim */
    bool readonly = sj->readonly;
    if (sj->shared) {
        char vis[IMAP_NAME_MAX];
        char *n = imap_ns_name(&sj->ref, vis, sizeof(vis)) == 0 ? strdup(vis) : NULL;
        if (n) {
            free(sel->name); /* the name the user knows it by (`coffrectl who`) */
            sel->name = n;
        }
        sel->readonly = sj->readonly;
        imap_sel_attach(s, sel, imap_job_take_store(j), &sj->ref);
        /* RFC 4314 5.2: READ-ONLY without a right to change anything */
        readonly = readonly || !imap_rights_readwrite(sel->rights);
    }
    sel->seen_viewer = sj->viewer;

    const char *kp = sj->info.keywords ? sj->info.keywords : "";
    imap_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s)\r\n", kp);
    if (sj->shared && !sj->readonly) {
        /* 5.1.1: the flags this user may change */
        struct buf *b = imap_outbuf(s);
        buf_str(b, "* OK [PERMANENTFLAGS ");
        imap_buf_permflags(b, sel->rights, kp);
        buf_str(b, "] Flags permitted.\r\n");
    } else if (sj->readonly)
        imap_printf(s, "* OK [PERMANENTFLAGS ()] No permanent flags permitted.\r\n");
    else
        imap_printf(s,
                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s \\*)] "
                    "Flags permitted.\r\n",
                    kp);
    imap_printf(s, "* %zu EXISTS\r\n", sel->uids.n);
    if (s->rev2) {
        /* RFC 9051 6.3.2: no RECENT, no UNSEEN (deprecated), a LIST of
         * the mailbox instead */
        struct buf *b = imap_outbuf(s);
        buf_str(b, "* LIST (");
        buf_str(b, sj->info.mb.has_children ? "\\HasChildren" : "\\HasNoChildren");
        for (size_t k = 0; k < IMAP_NSPECIAL; k++)
            if (sj->info.mb.special_use & imap_special_use[k].bit) {
                buf_addc(b, ' ');
                buf_str(b, imap_special_use[k].name);
            }
        buf_str(b, ") \"/\" ");
        char vis[IMAP_NAME_MAX];
        if (sj->shared && imap_ns_name(&sj->ref, vis, sizeof(vis)) == 0)
            imap_buf_mbox(b, vis, true); /* the name the client knows it by */
        else
            imap_buf_mbox(b, sj->info.mb.name, true);
        buf_str(b, "\r\n");
    } else {
        imap_printf(s, "* %u RECENT\r\n", sel->recent_sent);
    }
    if (sj->info.first_unseen && !s->rev2 && !s->uidonly) /* a sequence number */
        imap_printf(s, "* OK [UNSEEN %u] First unseen.\r\n",
                    imap_sel_seq(sel, sj->info.first_unseen));
    imap_printf(s, "* OK [UIDVALIDITY %u] UIDs valid.\r\n* OK [UIDNEXT %u] Predicted next UID.\r\n",
                sel->uidvalidity, uidnext);
    if (s->condstore)
        imap_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest.\r\n",
                    (unsigned long long)sj->info.mb.highestmodseq);
    {
        /* RFC 8474 4.1 */
        struct buf *b = imap_outbuf(s);
        buf_str(b, "* OK [MAILBOXID (");
        imap_buf_objectid(b, 'F', sj->info.mb.oid);
        buf_str(b, ")] Ok\r\n");
    }
    if (sj->qr_match) {
        /* 3.2.5.1: the expunges, then the known messages changed */
        imap_out(s, sj->qr.line.p, sj->qr.line.len);
        imap_flagset_announce(s, &sj->changed, true);
    }
    imap_finish(s, "OK", "[%s] %s completed.", readonly ? "READ-ONLY" : "READ-WRITE",
                sj->readonly ? "Examine" : "Select");
}

/* The QRESYNC parameter after its name (RFC 7162 3.2.5): SP "("
 * uidvalidity SP mod-sequence-value [SP known-uids [SP seq-match-data]]
 * ")". */
static bool qresync_param(struct imap_args *a, struct imap_arena *ar, struct select_job *sj)
{
    const char *w;
    size_t n;
    char num[16];
    char *end;

    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_open(a) != IMAP_ARG_OK ||
        imap_args_atom(a, &w, &n) != IMAP_ARG_OK || n == 0 || n >= sizeof(num) || w[0] < '1' ||
        w[0] > '9')
        return false;
    memcpy(num, w, n);
    num[n] = '\0';
    unsigned long v = strtoul(num, &end, 10);
    if (*end || v > UINT32_MAX)
        return false;
    sj->qr_uidvalidity = (uint32_t)v;
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_modseq(a, &sj->qr.since) != IMAP_ARG_OK ||
        imap_vanished_parse(a, ar, &sj->qr) != IMAP_ARG_OK || imap_args_close(a) != IMAP_ARG_OK)
        return false;
    sj->qresync = true;
    return true;
}

/* SP "(" select-param *(SP select-param) ")" (RFC 4466 2.1): CONDSTORE
 * (RFC 7162 3.1.8) and QRESYNC (3.2.5), each once. */
static bool select_params(struct imap_args *a, struct imap_arena *ar, bool *condstore,
                          struct select_job *sj)
{
    const char *w;
    size_t n;

    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_open(a) != IMAP_ARG_OK)
        return false;
    for (;;) {
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
            return false;
        if (imap_word_is(w, n, "CONDSTORE"))
            *condstore = true;
        else if (!imap_word_is(w, n, "QRESYNC") || sj->qresync || !qresync_param(a, ar, sj))
            return false;
        if (imap_args_peek(a, ')'))
            break;
        if (imap_args_sp(a) != IMAP_ARG_OK)
            return false;
    }
    return imap_args_close(a) == IMAP_ARG_OK && imap_args_at_end(a);
}

static void do_select(struct imap_session *s, struct imap_args *a, bool readonly)
{
    char name[STORAGE_MBOX_NAME_MAX + 1];
    int r = IMAP_ARG_BAD;
    bool invalid = false, condstore = false;
    struct imap_arena ar = {0};
    struct select_job *sj = calloc(1, sizeof(*sj));

    if (!sj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    sj->j.free_fn = select_free;
    if (imap_args_sp(a) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, name, sizeof(name)), &invalid)) != IMAP_ARG_OK) {
        select_free(&sj->j);
        imap_bad_arg(s, r, readonly ? "EXAMINE mailbox" : "SELECT mailbox");
        return;
    }
    if (!imap_args_at_end(a) && !select_params(a, &ar, &condstore, sj)) {
        imap_arena_free(&ar);
        select_free(&sj->j);
        imap_bad(s, "Unexpected arguments after the mailbox name.");
        return;
    }
    imap_arena_free(&ar);
    if (sj->qresync && !s->qresync) {
        /* 3.2.5: only after ENABLE QRESYNC */
        select_free(&sj->j);
        imap_bad(s, "QRESYNC is not enabled.");
        return;
    }
    if (sj->qr.nmseq && s->uidonly) {
        /* RFC 9586: the sequence match data names sequence numbers */
        select_free(&sj->j);
        imap_bad(s, IMAP_UIDREQUIRED);
        return;
    }
    if (condstore)
        s->condstore = true; /* RFC 7162 3.1: SELECT (CONDSTORE) enables it */
    /* the previous mailbox is closed, whatever the outcome (RFC 3501) */
    if (s->sel) {
        imap_sel_free(s);
        imap_printf(s, "* OK [CLOSED] Previous mailbox closed.\r\n");
    }
    if (invalid) {
        select_free(&sj->j);
        imap_no_name(s, readonly ? "EXAMINE" : "SELECT", true);
        return;
    }
    if (!imap_storage(s)) {
        select_free(&sj->j);
        return;
    }
    const char *what = readonly ? "EXAMINE" : "SELECT";
    if (imap_ns_resolve(s, name, &sj->ref) != 0 || (sj->ref.shared && !imap_ns_visible(&sj->ref))) {
        /* a name that names nothing, or a mailbox the user may not know
         * of: the same answer as a missing one of the user's own */
        select_free(&sj->j);
        imap_finish_storage_err(s, STORAGE_E_NOMBOX, what);
        return;
    }
    if (!(sj->ref.rights & ACL_READ)) {
        select_free(&sj->j);
        imap_finish(s, "NO", "[NOPERM] %s: you may not read this mailbox.", what);
        return;
    }
    sj->shared = sj->ref.shared;
    sj->viewer = imap_seen_viewer(s, &sj->ref);
    memcpy(sj->name, sj->ref.name, sizeof(sj->name));
    sj->readonly = readonly;
    sj->owner = s;
    imap_shared_job(s, &sj->ref, &sj->j, select_work, select_done);
}

void imap_cmd_select(struct imap_session *s, struct imap_args *a)
{
    do_select(s, a, false);
}

void imap_cmd_examine(struct imap_session *s, struct imap_args *a)
{
    do_select(s, a, true);
}
