/* COPY, MOVE and their UID forms (RFC 3501, RFC 6851): one storage call
 * on the thread pool; the answer carries COPYUID (RFC 4315), and MOVE's
 * EXPUNGE responses for the messages that left.
 *
 * Either mailbox may be another account's (the shared namespace, RFC
 * 4314): the source needs r (it is selected), the target i, MOVE t and e
 * on the source. Within one store, with every flag right on the target,
 * the storage copies (hard links, one transaction); otherwise the
 * messages are read from the source and saved into the target's store in
 * batches, each all or none, with only the flags the rights on the target
 * allow (section 4: the others are dropped, the command does not fail),
 * and a batch that fails takes the earlier ones out again. Where either
 * side keeps the user's own \Seen (per-user \Seen, imap_seen.c), the
 * messages are read and saved again too: \Seen as the user sees it in
 * the source becomes \Seen as the user sees it in the target. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

/* Messages saved into another store in one transaction, and the bytes
 * read from a message at a time. */
#define XCOPY_BATCH 64
#define XCOPY_CHUNK (256u * 1024)

struct copy_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    struct storage_uidset set;
    char dst[STORAGE_MBOX_NAME_MAX + 1]; /* the target's name in its owner's store */
    bool move, uid_cmd;
    bool into_sel;                  /* the target is in the selected mailbox's store */
    bool cross;                     /* read and saved again (another store, or flags to drop) */
    unsigned dst_rights;            /* the user's rights on the target */
    int64_t src_viewer, dst_viewer; /* per-user \Seen on each side, 0: the rows' */
    struct mailuser *dmu;           /* the target's store when not the job's (held) */
    struct storage_user *du;
    uint64_t max_size;
    int err;
    struct storage_mbox dmb;
    struct storage_uidlist src, dstu;
};

static void copy_free(struct imap_job *j)
{
    struct copy_job *cj = (struct copy_job *)j;
    if (cj->dmu)
        mailuser_release(cj->dmu);
    imap_arena_free(&cj->ar);
    storage_uidlist_free(&cj->src);
    storage_uidlist_free(&cj->dstu);
    free(cj);
}

static int uidlist_push(struct storage_uidlist *l, uint32_t uid)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        uint32_t *v = realloc(l->uids, ncap * sizeof(*v));
        if (!v)
            return -1;
        l->uids = v;
        l->cap = ncap;
    }
    l->uids[l->n++] = uid;
    return 0;
}

/* A message to copy into another store, as the index has it. */
struct xmsg {
    uint32_t uid;
    unsigned flags;
    int64_t date;
    char *kwbuf;     /* its keywords, NUL between them */
    const char **kw; /* into kwbuf */
    size_t nkw;
};

struct xlist {
    struct xmsg *v;
    size_t n, cap;
    unsigned rights; /* on the target: the flags kept */
    bool oom;
    const struct storage_seen *seen; /* the source's \Seen is this set */
};

static int xlist_cb(void *arg, const struct storage_msg *m)
{
    struct xlist *l = arg;
    bool kw_ok;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        struct xmsg *v = realloc(l->v, ncap * sizeof(*v));
        if (!v)
            return l->oom = true;
        l->v = v;
        l->cap = ncap;
    }
    struct xmsg *x = &l->v[l->n];
    memset(x, 0, sizeof(*x));
    x->uid = m->uid;
    x->date = m->internal_date;
    x->flags = imap_flags_allowed(
        l->rights, l->seen ? storage_seen_flags(l->seen, m->uid, m->flags) : m->flags, &kw_ok);
    l->n++;
    if (kw_ok && m->keywords && *m->keywords) {
        size_t len = strlen(m->keywords), n = 1;
        if (!(x->kwbuf = malloc(len + 1)))
            return l->oom = true;
        memcpy(x->kwbuf, m->keywords, len + 1);
        for (size_t i = 0; i < len; i++)
            n += x->kwbuf[i] == ' ';
        if (!(x->kw = malloc(n * sizeof(*x->kw))))
            return l->oom = true;
        for (char *p = x->kwbuf, *sp; p && *p; p = sp) {
            sp = strchr(p, ' ');
            if (sp)
                *sp++ = '\0';
            if (*p)
                x->kw[x->nkw++] = p;
        }
    }
    return 0;
}

static void xlist_free(struct xlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].kwbuf);
        free(l->v[i].kw);
    }
    free(l->v);
}

/* The message's bytes into a new draft of the target's store; NULL with
 * *err set (0: the message is gone meanwhile, and is left out). */
static struct storage_draft *xcopy_draft(struct copy_job *cj, struct storage_user *su, uint32_t uid,
                                         char *buf, int *err)
{
    struct storage_draft *d = NULL;
    uint64_t size, off = 0;
    int fd = -1;

    *err = storage_msg_open(su, cj->mbox, uid, &fd, &size);
    if (*err) {
        if (*err == STORAGE_E_NOMSG)
            *err = 0;
        return NULL;
    }
    if ((*err = storage_draft_new(cj->du, cj->max_size, &d)) != 0) {
        close(fd);
        return NULL;
    }
    while (off < size && !*err) {
        size_t want = size - off < XCOPY_CHUNK ? (size_t)(size - off) : XCOPY_CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got <= 0) {
            *err = STORAGE_E_TEMP;
            break;
        }
        *err = storage_draft_write(d, buf, (size_t)got);
        off += (uint64_t)got;
    }
    close(fd);
    if (!*err)
        *err = storage_draft_end(d);
    if (*err) {
        storage_draft_free(d);
        return NULL;
    }
    return d;
}

/* Saves l->v[from..to) into the target: one transaction. */
static int xcopy_batch(struct copy_job *cj, struct storage_user *su, struct xlist *l, size_t from,
                       size_t to, char *buf)
{
    struct storage_save_req req[XCOPY_BATCH];
    struct storage_range seen[XCOPY_BATCH];
    uint32_t srcu[XCOPY_BATCH];
    bool want_seen[XCOPY_BATCH];
    unsigned strip = cj->dst_viewer ? STORAGE_FLAG_SEEN : 0;
    size_t n = 0, nseen = 0;
    int err = 0;

    for (size_t i = from; i < to && !err; i++) {
        struct storage_draft *d = xcopy_draft(cj, su, l->v[i].uid, buf, &err);
        if (!d)
            continue;
        req[n] = (struct storage_save_req){d,           l->v[i].flags & ~strip, l->v[i].kw,
                                           l->v[i].nkw, l->v[i].date,           0};
        want_seen[n] = strip && (l->v[i].flags & STORAGE_FLAG_SEEN);
        srcu[n++] = l->v[i].uid;
    }
    if (!err && n)
        err = storage_save_many(cj->du, cj->dmb.id, req, n);
    for (size_t k = 0; k < n; k++) {
        if (!err &&
            (uidlist_push(&cj->src, srcu[k]) < 0 || uidlist_push(&cj->dstu, req[k].uid) < 0))
            err = STORAGE_E_NOMEM; /* saved: taken out again by the caller */
        storage_draft_free(req[k].d);
        if (want_seen[k]) {
            seen[nseen].lo = seen[nseen].hi = req[k].uid;
            nseen++;
        }
    }
    /* the target keeps the user's own \Seen: the copies seen go there */
    if (!err && nseen) {
        struct storage_uidset set = {nseen, seen};
        err = storage_pseen_store(cj->du, cj->dmb.id, cj->dst_viewer, &set, true, 0, NULL, NULL,
                                  NULL);
    }
    return err;
}

/* The UIDs of l as a set (malloc'd ranges of one). */
static struct storage_range *uid_ranges(const struct storage_uidlist *l)
{
    struct storage_range *r = malloc((l->n ? l->n : 1) * sizeof(*r));
    for (size_t i = 0; r && i < l->n; i++)
        r[i].lo = r[i].hi = l->uids[i];
    return r;
}

static void xcopy_work(struct copy_job *cj, struct storage_user *su)
{
    struct xlist l = {.rights = cj->dst_rights};
    struct storage_seen seen = {0};
    char *buf = malloc(XCOPY_CHUNK);

    if (!buf) {
        cj->err = STORAGE_E_NOMEM;
        return;
    }
    if (cj->src_viewer) {
        /* \Seen as the user sees it in the source */
        if ((cj->err = storage_pseen_get(su, cj->mbox, cj->src_viewer, &seen)) != 0) {
            free(buf);
            return;
        }
        l.seen = &seen;
    }
    cj->err = storage_fetch(su, cj->mbox, &cj->set, 0, xlist_cb, &l);
    storage_seen_free(&seen);
    if (!cj->err && l.oom)
        cj->err = STORAGE_E_NOMEM;
    for (size_t i = 0; i < l.n && !cj->err; i += XCOPY_BATCH)
        cj->err = xcopy_batch(cj, su, &l, i, i + XCOPY_BATCH < l.n ? i + XCOPY_BATCH : l.n, buf);
    free(buf);
    xlist_free(&l);
    if (cj->err) {
        /* RFC 3501 6.4.7: a COPY that fails leaves the target as it was */
        struct storage_range *r = cj->dstu.n ? uid_ranges(&cj->dstu) : NULL;
        if (r) {
            struct storage_uidset set = {cj->dstu.n, r};
            (void)storage_expunge(cj->du, cj->dmb.id, &set, false, NULL);
            free(r);
        }
        cj->src.n = cj->dstu.n = 0;
        return;
    }
    if (cj->move && cj->src.n) {
        /* the sources go once their copies are committed: a crash between
         * the two leaves both, never neither */
        struct storage_range *r = uid_ranges(&cj->src);
        if (!r) {
            cj->err = STORAGE_E_NOMEM;
            return;
        }
        struct storage_uidset set = {cj->src.n, r};
        cj->err = storage_expunge(su, cj->mbox, &set, false, NULL);
        free(r);
    }
}

static void copy_work(struct imap_job *j)
{
    struct copy_job *cj = (struct copy_job *)j;
    cj->du = cj->dmu ? mailuser_storage(cj->dmu) : j->u;
    /* the destination is checked even when there is nothing to copy */
    cj->err = storage_mbox_get(cj->du, cj->dst, &cj->dmb);
    if (cj->err || cj->set.n == 0)
        return;
    if (cj->cross)
        xcopy_work(cj, j->u);
    else if (cj->move)
        cj->err = storage_move(j->u, cj->mbox, &cj->set, cj->dmb.id, &cj->src, &cj->dstu);
    else
        cj->err = storage_copy(j->u, cj->mbox, &cj->set, cj->dmb.id, &cj->src, &cj->dstu);
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
    if (s->sel && cj->into_sel && cj->dmb.id == s->sel->id)
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

static void copy_drop(void *arg)
{
    struct copy_job *cj = arg;
    copy_free(&cj->j);
}

/* The target's store (another account's) is there. */
static void copy_go(struct imap_session *s, int err, struct mailuser *mu, void *arg)
{
    struct copy_job *cj = arg;
    if (err) {
        copy_free(&cj->j);
        if (err == STORAGE_E_NOMBOX)
            imap_finish(s, "NO", "[TRYCREATE] %s: no such destination mailbox.",
                        cj->move ? "MOVE" : "COPY");
        else
            imap_finish(s, "NO", "[UNAVAILABLE] Mail store unavailable; try again later.");
        return;
    }
    cj->dmu = mu; /* its hold passes to the job */
    imap_sel_job(s, &cj->j, copy_work, copy_done);
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
    const char *what = move ? "MOVE" : "COPY";
    unsigned src_rights = imap_sel_rights(s);
    if (move && (src_rights & (ACL_DELMSG | ACL_EXPUNGE)) != (ACL_DELMSG | ACL_EXPUNGE)) {
        copy_free(&cj->j);
        imap_finish(s, "NO", "[NOPERM] MOVE: you may not remove messages from this mailbox.");
        return;
    }
    struct imap_mref ref;
    if (imap_ns_resolve(s, cj->dst, &ref) != 0 || (ref.shared && !imap_ns_visible(&ref))) {
        /* hidden, or naming nothing: as a missing mailbox of one's own */
        copy_free(&cj->j);
        imap_finish(s, "NO", "[TRYCREATE] %s: no such destination mailbox.", what);
        return;
    }
    if (!(ref.rights & ACL_INSERT)) {
        copy_free(&cj->j);
        imap_finish(s, "NO", "[NOPERM] %s: you may not add messages to the destination.", what);
        return;
    }
    if (!imap_storage(s)) {
        copy_free(&cj->j);
        return;
    }
    memcpy(cj->dst, ref.name, sizeof(cj->dst));
    cj->mbox = s->sel->id;
    cj->move = move;
    cj->uid_cmd = s->uid_cmd;
    cj->dst_rights = ref.rights;
    cj->max_size = conn_conf(s->c)->max_message_size;
    /* the stores: the selected mailbox's (the job's own), the target's */
    int64_t src_owner = s->sel->mu ? s->sel->owner : s->account_id;
    int64_t dst_owner = ref.shared ? ref.owner : s->account_id;
    const unsigned all_flags = ACL_SEEN | ACL_WRITE | ACL_DELMSG;
    cj->into_sel = src_owner == dst_owner;
    cj->src_viewer = s->sel->seen_viewer;
    cj->dst_viewer = imap_seen_viewer(s, &ref);
    cj->cross =
        !cj->into_sel || (ref.rights & all_flags) != all_flags || cj->src_viewer || cj->dst_viewer;
    if (!cj->into_sel && dst_owner == s->account_id) {
        mailuser_hold(s->mu); /* one's own, held already */
        cj->dmu = s->mu;
    } else if (!cj->into_sel) {
        if (imap_shared_acquire(s, dst_owner, ref.owner_address, copy_go, copy_drop, cj) < 0) {
            copy_free(&cj->j);
            imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
        }
        return;
    }
    imap_sel_job(s, &cj->j, copy_work, copy_done);
}

void imap_cmd_copy(struct imap_session *s, struct imap_args *a)
{
    do_copy(s, a, false);
}

void imap_cmd_move(struct imap_session *s, struct imap_args *a)
{
    do_copy(s, a, true);
}
