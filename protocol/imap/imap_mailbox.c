/* The selected mailbox: the sequence-number <-> UID map (UID ranges, a
 * few for a mailbox of any size), the session's share of \Recent (claimed
 * in the index by SELECT, storage_recent_claim; here, which session takes
 * the messages that arrive), and the changes other sessions and
 * deliveries make: collected from storage events on the loop, announced (EXISTS,
 * RECENT, EXPUNGE, FETCH FLAGS) at the moments RFC 3501 allows. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

/* ---- UID arrays ---- */

int uidarr_push(struct uidarr *a, uint32_t uid)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 16;
        uint32_t *v = realloc(a->v, ncap * sizeof(*v));
        if (!v)
            return -1;
        a->v = v;
        a->cap = ncap;
    }
    a->v[a->n++] = uid;
    return 0;
}

void uidarr_free(struct uidarr *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

ssize_t uidarr_find(const struct uidarr *a, uint32_t uid)
{
    size_t i = imap_lower_bound(a->v, a->n, uid);
    return i < a->n && a->v[i] == uid ? (ssize_t)i : -1;
}

/* ---- the sequence-number <-> UID map ---- */

static void uidmap_count(struct uidmap *m)
{
    size_t n = 0;
    for (size_t k = 0; k < m->nr; k++) {
        m->before[k] = n;
        n += (size_t)m->r[k].hi - m->r[k].lo + 1;
    }
    m->n = n;
}

static int uidmap_room(struct uidmap *m, size_t nr)
{
    if (nr <= m->cap)
        return 0;
    size_t ncap = m->cap ? m->cap : 4;
    while (ncap < nr)
        ncap *= 2;
    struct storage_range *r = realloc(m->r, ncap * sizeof(*r));
    if (!r)
        return -1;
    m->r = r;
    size_t *b = realloc(m->before, ncap * sizeof(*b));
    if (!b)
        return -1;
    m->before = b;
    m->cap = ncap;
    return 0;
}

void uidmap_free(struct uidmap *m)
{
    free(m->r);
    free(m->before);
    memset(m, 0, sizeof(*m));
}

void uidmap_adopt(struct uidmap *m, struct storage_range *r, size_t nr)
{
    uidmap_free(m);
    m->r = r;
    m->nr = m->cap = nr;
    if (nr && !(m->before = malloc(nr * sizeof(*m->before)))) {
        /* without the counts the map cannot be used: empty it */
        free(r);
        memset(m, 0, sizeof(*m));
        return;
    }
    uidmap_count(m);
}

uint32_t uidmap_max(const struct uidmap *m)
{
    return m->nr ? m->r[m->nr - 1].hi : 0;
}

/* The range holding index i (i < m->n). */
static size_t range_of_index(const struct uidmap *m, size_t i)
{
    size_t lo = 0, hi = m->nr;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->before[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

uint32_t uidmap_at(const struct uidmap *m, size_t i)
{
    size_t k = range_of_index(m, i);
    return m->r[k].lo + (uint32_t)(i - m->before[k]);
}

size_t uidmap_range(const struct uidmap *m, uint32_t uid)
{
    size_t lo = 0, hi = m->nr;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->r[mid].hi < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t uidmap_lower_bound(const struct uidmap *m, uint32_t uid)
{
    size_t k = uidmap_range(m, uid);
    if (k == m->nr)
        return m->n;
    return m->before[k] + (uid > m->r[k].lo ? uid - m->r[k].lo : 0);
}

ssize_t uidmap_find(const struct uidmap *m, uint32_t uid)
{
    size_t k = uidmap_range(m, uid);
    if (k == m->nr || uid < m->r[k].lo)
        return -1;
    return (ssize_t)(m->before[k] + (uid - m->r[k].lo));
}

int uidmap_push(struct uidmap *m, uint32_t uid)
{
    if (m->nr && m->r[m->nr - 1].hi + 1 == uid) {
        m->r[m->nr - 1].hi = uid;
        m->n++;
        return 0;
    }
    if (uidmap_room(m, m->nr + 1) < 0)
        return -1;
    m->r[m->nr].lo = m->r[m->nr].hi = uid;
    m->before[m->nr] = m->n;
    m->nr++;
    m->n++;
    return 0;
}

int uidmap_remove(struct uidmap *m, const uint32_t *uids, size_t n)
{
    struct storage_range *out;
    size_t no = 0, j = 0;

    if (!n || !m->nr)
        return 0;
    /* each UID taken out splits at most one range */
    if (!(out = malloc((m->nr + n) * sizeof(*out))))
        return -1;
    for (size_t k = 0; k < m->nr; k++) {
        uint32_t lo = m->r[k].lo, hi = m->r[k].hi;
        bool end = false;
        while (j < n && uids[j] < lo)
            j++;
        while (j < n && uids[j] <= hi && !end) {
            uint32_t u = uids[j++];
            if (u > lo) {
                out[no].lo = lo;
                out[no].hi = u - 1;
                no++;
            }
            if (u == hi)
                end = true;
            else
                lo = u + 1;
        }
        if (!end) {
            out[no].lo = lo;
            out[no].hi = hi;
            no++;
        }
    }
    size_t *b = no ? malloc(no * sizeof(*b)) : NULL;
    if (no && !b) {
        free(out);
        return -1;
    }
    free(m->r);
    free(m->before);
    m->r = out;
    m->before = b;
    m->nr = m->cap = no;
    uidmap_count(m);
    return 0;
}

uint32_t imap_sel_seq(const struct imap_sel *sel, uint32_t uid)
{
    ssize_t i = uidmap_find(&sel->uids, uid);
    return i < 0 ? 0 : (uint32_t)i + 1;
}

/* ---- \Recent ownership ---- */

/* The session whose claim is the latest of a mailbox takes the messages
 * that arrive (its range of \Recent UIDs has no end); a session whose
 * claim is superseded keeps its range up to the floor the next claim
 * found. Claims are numbered by the storage, so that two SELECTs whose
 * answers come back in the other order still agree with the index. */
struct imap_recent {
    int64_t user, mbox;
    struct imap_session *owner; /* the session getting new arrivals, or NULL */
    uint64_t gen;               /* the latest claim installed */
    uint32_t prev;              /* the floor that claim found */
    struct imap_recent *next;
};
#define RECENT_BUCKETS 1024
static struct imap_recent *recent_tab[RECENT_BUCKETS];

static struct imap_recent **recent_slot(int64_t user, int64_t mbox)
{
    uint64_t h = (uint64_t)user * 0x9e3779b97f4a7c15ull ^ (uint64_t)mbox * 0xc2b2ae3d27d4eb4full;
    struct imap_recent **pp = &recent_tab[(h >> 32) % RECENT_BUCKETS];
    while (*pp && ((*pp)->user != user || (*pp)->mbox != mbox))
        pp = &(*pp)->next;
    return pp;
}

static struct imap_recent *recent_get(int64_t user, int64_t mbox)
{
    struct imap_recent **pp = recent_slot(user, mbox);
    if (!*pp) {
        struct imap_recent *r = calloc(1, sizeof(*r));
        if (!r)
            return NULL;
        r->user = user;
        r->mbox = mbox;
        *pp = r;
    }
    return *pp;
}

bool imap_sel_recent(const struct imap_sel *sel, uint32_t uid)
{
    return uid >= sel->recent_lo && uid <= sel->recent_hi;
}

uint32_t imap_sel_recent_count(const struct imap_sel *sel)
{
    if (sel->recent_lo > sel->recent_hi)
        return 0;
    size_t a = uidmap_lower_bound(&sel->uids, sel->recent_lo);
    size_t b = sel->recent_hi == UINT32_MAX ? sel->uids.n
                                            : uidmap_lower_bound(&sel->uids, sel->recent_hi + 1);
    return (uint32_t)(b - a);
}

void imap_sel_free(struct imap_session *s)
{
    struct imap_sel *sel = s->sel;
    if (!sel)
        return;
    if (sel->rec && sel->rec->owner == s)
        sel->rec->owner = NULL;
    if (!sel->readonly && s->mu && !sel->mu)
        storage_recent_release(mailuser_storage(s->mu), sel->id, s);
    if (sel->mu) {
        /* another account's: its store goes (jobs on it hold it still) */
        mailuser_unlisten(&sel->listener);
        mailuser_release(sel->mu);
        free(sel->owner_address);
        free(sel->oname);
    }
    uidmap_free(&sel->uids);
    free(sel->name);
    uidarr_free(&sel->pend_new);
    uidarr_free(&sel->pend_exp);
    uidarr_free(&sel->pend_flags);
    if (sel->ctx_ops)
        sel->ctx_ops->free_all(sel);
    free(sel->saved);
    free(sel);
    s->sel = NULL;
    if (s->state == IMAP_SELECTED)
        s->state = IMAP_AUTH;
}

/* ---- the rights on another account's mailbox (RFC 4314) ---- */

static void count_entry(void *arg, const char *ident, unsigned rights)
{
    (void)ident;
    (void)rights;
    (*(size_t *)arg)++;
}

unsigned imap_sel_rights(struct imap_session *s)
{
    const struct imap_sel *sel = s->sel;
    if (!sel || !sel->mu)
        return ACL_ALL;
    if (sel->revoked)
        return 0;
    const struct acl_snap *snap = conn_auth(s->c) ? auth_service_acl(conn_auth(s->c)) : NULL;
    if (!snap || !s->user)
        return 0;
    unsigned r = acl_snap_rights(snap, sel->owner, sel->oname, s->account_id, s->user);
    /* renamed by its owner (acl_db_rename moved every entry to the new
     * name) and not read again yet: the rights it had, until the update
     * that follows the command reads its name by id. A name that still
     * has entries was not renamed: its rights are in force. */
    if (!r && sel->name_stale) {
        size_t n = 0;
        acl_snap_entries(snap, sel->owner, sel->oname, count_entry, &n);
        if (!n)
            return sel->rights;
    }
    return r;
}

bool imap_rights_readwrite(unsigned rights)
{
    /* RFC 4314 5.2: i, e and the rights of the flags others see. \Seen is
     * one of those while it is kept in the message for everybody. */
    return rights & (ACL_INSERT | ACL_EXPUNGE | ACL_SEEN | ACL_WRITE | ACL_DELMSG);
}

void imap_buf_permflags(struct buf *b, unsigned rights, const char *keywords)
{
    const char *sep = "";
    buf_addc(b, '(');
    if (rights & ACL_WRITE) {
        buf_str(b, "\\Answered \\Flagged");
        sep = " ";
    }
    if (rights & ACL_DELMSG) {
        buf_str(b, sep);
        buf_str(b, "\\Deleted");
        sep = " ";
    }
    if (rights & ACL_SEEN) {
        buf_str(b, sep);
        buf_str(b, "\\Seen");
        sep = " ";
    }
    if (rights & ACL_WRITE) {
        buf_str(b, sep);
        buf_str(b, "\\Draft");
        if (keywords)
            buf_str(b, keywords); /* " kw1 kw2" */
        buf_str(b, " \\*");
    }
    buf_addc(b, ')');
}

bool imap_sel_refresh(struct imap_session *s)
{
    struct imap_sel *sel = s->sel;
    if (!sel || !sel->mu)
        return true;
    unsigned r = imap_sel_rights(s);
    if (!(r & ACL_READ) && !sel->revoked) {
        /* RFC 4314 5.1.1: the commands of the selected state are refused
         * until the mailbox is closed (a BYE would take the user's other
         * work with it); nothing of it is announced any more */
        sel->revoked = true;
        sel->rights = 0;
    }
    if (sel->revoked)
        return false;
    if (r != sel->rights && !sel->readonly) {
        /* 5.1.1: PERMANENTFLAGS again when they changed, and READ-ONLY or
         * READ-WRITE when that changed */
        struct buf *b = imap_outbuf(s);
        buf_str(b, "* OK [PERMANENTFLAGS ");
        imap_buf_permflags(b, r, NULL);
        buf_str(b, "] Your rights on the mailbox changed.\r\n");
        if (imap_rights_readwrite(r) != imap_rights_readwrite(sel->rights))
            buf_str(b, imap_rights_readwrite(r) ? "* OK [READ-WRITE] Writable now.\r\n"
                                                : "* OK [READ-ONLY] Read-only now.\r\n");
    }
    sel->rights = r;
    return true;
}

/* ---- sets ---- */

/* '*' is last; "4:2" is "2:4" (RFC 3501 9, seq-range). */
static void range_order(uint32_t *lo, uint32_t *hi, uint32_t last)
{
    if (*hi == IMAP_STAR)
        *hi = last;
    if (*lo == IMAP_STAR)
        *lo = last;
    if (*lo > *hi) {
        uint32_t t = *lo;
        *lo = *hi;
        *hi = t;
    }
}

int imap_sel_save(struct imap_sel *sel, const uint32_t *uids, size_t n)
{
    size_t runs = 0, k = 0;

    free(sel->saved);
    sel->saved = NULL;
    sel->nsaved = 0;
    for (size_t i = 0; i < n; i++)
        runs += i == 0 || uids[i] != uids[i - 1] + 1;
    if (!runs)
        return 0;
    if (!(sel->saved = malloc(runs * sizeof(*sel->saved))))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || uids[i] != uids[i - 1] + 1)
            sel->saved[k++].lo = uids[i];
        sel->saved[k - 1].hi = uids[i];
    }
    sel->nsaved = k;
    return 0;
}

int imap_sel_resolve(struct imap_session *s, const struct imap_seqset *in, bool uid,
                     struct imap_arena *ar, struct storage_uidset *out)
{
    const struct uidmap *u = &s->sel->uids;
    struct storage_range *r;
    size_t k = 0;

    out->n = 0;
    if (in->saved) {
        /* the UIDs saved: expunged ones match nothing any more */
        const struct imap_sel *sel = s->sel;
        out->r = r = imap_arena_alloc(ar, (sel->nsaved ? sel->nsaved : 1) * sizeof(*r));
        if (!r)
            return -1;
        if (sel->nsaved)
            memcpy(r, sel->saved, sel->nsaved * sizeof(*r));
        out->n = sel->nsaved;
        return 0;
    }
    r = imap_arena_alloc(ar, (in->n ? in->n : 1) * sizeof(*r));
    out->r = r;
    if (!r)
        return -1;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t lo = in->r[i].lo, hi = in->r[i].hi;
        if (!uid) {
            uint32_t n = (uint32_t)u->n;
            range_order(&lo, &hi, n);
            if (n == 0 && in->r[i].hi == IMAP_STAR)
                continue; /* "1:*" in an empty mailbox: nothing */
            if (lo == 0 || hi > n)
                return -1;
            r[k].lo = uidmap_at(u, lo - 1);
            r[k].hi = uidmap_at(u, hi - 1);
            k++;
        } else {
            uint32_t m = uidmap_max(u);
            if (m == 0)
                continue;
            range_order(&lo, &hi, m);
            if (lo > m)
                continue;
            if (hi > m)
                hi = m; /* messages not announced yet are not addressable */
            r[k].lo = lo;
            r[k].hi = hi;
            k++;
        }
    }
    out->n = k;
    return 0;
}

/* A sequence set argument (SP set), resolved; answers BAD when invalid. */
bool imap_sel_set_arg(struct imap_session *s, struct imap_args *a, struct imap_arena *ar,
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

/* ---- announcing changes ---- */

void imap_sel_expunged(struct imap_session *s, const uint32_t *uids, size_t n)
{
    struct imap_sel *sel = s->sel;
    size_t removed = 0;

    if (!sel || !n)
        return;
    if (sel->ctx_ops)
        sel->ctx_ops->expunged(s, uids, n);
    /* uids ascending: each one's sequence number, less those gone before;
     * once QRESYNC or UIDONLY is on, their UIDs in one VANISHED (RFC 7162
     * 3.2.10, RFC 9586) */
    struct imap_runs runs = {0};
    for (size_t j = 0; j < n; j++) {
        ssize_t i = uidmap_find(&sel->uids, uids[j]);
        if (i < 0 || (j && uids[j] == uids[j - 1]))
            continue;
        if (s->qresync || s->uidonly)
            imap_runs_add(&runs, imap_outbuf(s), "* VANISHED ", uids[j], uids[j]);
        else
            imap_printf(s, "* %zu EXPUNGE\r\n", (size_t)i + 1 - removed);
        removed++;
    }
    if (imap_runs_end(&runs, imap_outbuf(s)))
        imap_flush(s);
    if (uidmap_remove(&sel->uids, uids, n) < 0) {
        /* the announcements are out: the map must follow them */
        for (size_t j = n; j-- > 0;) {
            ssize_t i = uidmap_find(&sel->uids, uids[j]);
            if (i >= 0 && uidmap_remove(&sel->uids, &uids[j], 1) < 0)
                break;
        }
    }
    sel->exists_sent = sel->exists_sent > removed ? sel->exists_sent - removed : 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void pending_overflow(struct imap_session *s)
{
    struct imap_sel *sel = s->sel;
    if (sel->pend_new.n + sel->pend_exp.n > conn_conf(s->c)->imap_max_pending_updates) {
        /* too many to remember one by one: ask the index instead */
        uidarr_free(&sel->pend_new);
        uidarr_free(&sel->pend_exp);
        sel->resync = true;
    }
}

void imap_sel_note_new(struct imap_session *s, const uint32_t *uids, size_t n)
{
    struct imap_sel *sel = s->sel;
    if (!sel)
        return;
    sel->ctx_dirty = sel->ctx_dirty || (sel->ctx && n);
    if (sel->resync)
        return;
    for (size_t i = 0; i < n; i++) {
        if (uids[i] <= uidmap_max(&sel->uids))
            continue;
        if (uidarr_push(&sel->pend_new, uids[i]) < 0)
            sel->resync = true;
    }
    pending_overflow(s);
}

void imap_condstore_enable(struct imap_session *s)
{
    if (s->condstore)
        return;
    s->condstore = true;
    if (s->sel)
        imap_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest.\r\n",
                    (unsigned long long)s->sel->known_modseq);
}

void imap_sel_note_own_store(struct imap_session *s, uint64_t modseq)
{
    struct imap_sel *sel = s->sel;
    if (!sel || !modseq)
        return;
    /* the contexts look at it before the command's answer, whenever its
     * event comes */
    sel->ctx_dirty = sel->ctx != NULL;
    if (sel->n_own < sizeof(sel->own_modseq) / sizeof(sel->own_modseq[0]))
        sel->own_modseq[sel->n_own++] = modseq;
    /* full: the end of this command looks at the changes now, while all of
     * ours are still listed, and empties the list; one more of ours would
     * not be listed, and its event would announce it back as another's */
    if (sel->n_own == sizeof(sel->own_modseq) / sizeof(sel->own_modseq[0]))
        sel->flags_dirty = true;
}

static bool own_modseq(const struct imap_sel *sel, uint64_t m)
{
    for (unsigned i = 0; i < sel->n_own; i++)
        if (sel->own_modseq[i] == m)
            return true;
    return false;
}

static void sel_event(struct imap_session *s, const struct storage_event *ev);

/* Another account's own \Seen changed in a mailbox (per-user \Seen,
 * storage/pseen.c): not ours to see. The messages took a new modseq all
 * the same; in the selected mailbox, it is noted, so that the next look
 * at the changes does not announce them for that alone. */
static bool others_seen(struct imap_session *s, const struct storage_event *ev, bool shared)
{
    struct imap_sel *sel = s->sel;

    if (!ev->viewer || ev->viewer == s->account_id)
        return false;
    if (sel && ev->mbox == sel->id && !sel->mu == !shared && ev->type == STORAGE_EV_FLAGS) {
        if (sel->n_other < sizeof(sel->other_modseq) / sizeof(sel->other_modseq[0]))
            sel->other_modseq[sel->n_other++] = ev->modseq;
        else
            sel->other_all = true;
    }
    return true;
}

void imap_on_event(void *arg, const struct storage_event *ev)
{
    struct imap_session *s = arg;

    if (others_seen(s, ev, false))
        return;
    if (s->notify)
        s->notify_ops->event(s, ev);
    if (s->sel && !s->sel->mu)
        sel_event(s, ev); /* the selected mailbox is one of ours */
    if (s->notify) {
        s->notify_ops->kick(s); /* NOTIFY announces it now */
        imap_flush(s);
    }
}

/* Events of the store of the selected mailbox's owner (another account):
 * its own listener, so that a mailbox id is only ever compared with ids
 * of the same account. */
static void on_shared_event(void *arg, const struct storage_event *ev)
{
    struct imap_session *s = arg;
    if (!s->sel || !s->sel->mu)
        return;
    if (others_seen(s, ev, true))
        return;
    if (ev->type == STORAGE_EV_MAILBOX || ev->type == STORAGE_EV_EXTERNAL) {
        /* a rename names the folder renamed first, not its children:
         * any change of the owner's list may have renamed this one */
        s->sel->name_stale = true;
        s->sel->name_gen++;
        s->sel->resync = true;
    }
    sel_event(s, ev);
    if (s->notify) {
        s->notify_ops->kick(s);
        imap_flush(s);
    }
}

void imap_sel_attach(struct imap_session *s, struct imap_sel *sel, struct mailuser *mu,
                     const struct imap_mref *r)
{
    sel->mu = mu;
    sel->owner = r->owner;
    sel->owner_address = strdup(r->owner_address);
    sel->oname = strdup(r->name);
    sel->rights = r->rights;
    sel->listener.on_event = on_shared_event;
    sel->listener.arg = s;
    mailuser_listen(mu, &sel->listener);
    if (!sel->owner_address || !sel->oname)
        sel->revoked = true; /* out of memory: rights cannot be checked */
}

static void sel_event(struct imap_session *s, const struct storage_event *ev)
{
    struct imap_sel *sel = s->sel;

    if (s->state != IMAP_SELECTED || !sel || ev->mbox != sel->id)
        return;
    /* search contexts look at new messages and changed flags, this
     * session's own included (and after an expunge, at what waited for
     * it) */
    if (sel->ctx)
        sel->ctx_dirty = true;
    switch (ev->type) {
    case STORAGE_EV_NEW:
        imap_sel_note_new(s, ev->uids, ev->n);
        break;
    case STORAGE_EV_FLAGS:
        if (ev->modseq <= sel->known_modseq || own_modseq(sel, ev->modseq))
            break;
        sel->flags_dirty = true;
        /* changed for everybody: announced even when another account's
         * \Seen moved its modseq since (past IMAP_PEND_FLAGS_MAX of them,
         * nothing is left out) */
        for (size_t i = 0; i < ev->n && !sel->other_all; i++)
            if (sel->pend_flags.n >= IMAP_PEND_FLAGS_MAX ||
                uidarr_push(&sel->pend_flags, ev->uids[i]) < 0) {
                sel->other_all = true;
                uidarr_free(&sel->pend_flags);
            }
        break;
    case STORAGE_EV_EXPUNGE:
        if (sel->resync)
            break;
        for (size_t i = 0; i < ev->n; i++)
            if (uidarr_push(&sel->pend_exp, ev->uids[i]) < 0)
                sel->resync = true;
        pending_overflow(s);
        break;
    case STORAGE_EV_MAILBOX:
    case STORAGE_EV_EXTERNAL:
        sel->resync = true;
        break;
    }
    imap_cont_nudge(s); /* IDLE announces it now */
    imap_flush(s);
}

bool imap_updates_need_job(struct imap_session *s)
{
    return s->sel && (s->sel->flags_dirty || s->sel->resync || (s->sel->ctx && s->sel->ctx_dirty));
}

/* Announces what is known without the pool: expunges (when allowed), new
 * messages, the counts. */
static void apply_pending(struct imap_session *s, bool expunge_ok)
{
    struct imap_sel *sel = s->sel;

    if (sel->pend_exp.n > 1)
        qsort(sel->pend_exp.v, sel->pend_exp.n, sizeof(uint32_t), cmp_u32);
    if (expunge_ok && sel->pend_exp.n) {
        imap_sel_expunged(s, sel->pend_exp.v, sel->pend_exp.n);
        /* expunged before being announced: they never will be */
        size_t w = 0;
        for (size_t i = 0; i < sel->pend_new.n; i++)
            if (uidarr_find(&sel->pend_exp, sel->pend_new.v[i]) < 0)
                sel->pend_new.v[w++] = sel->pend_new.v[i];
        sel->pend_new.n = w;
        uidarr_free(&sel->pend_exp);
    }
    if (sel->pend_new.n) {
        qsort(sel->pend_new.v, sel->pend_new.n, sizeof(uint32_t), cmp_u32);
        for (size_t i = 0; i < sel->pend_new.n; i++) {
            uint32_t v = sel->pend_new.v[i];
            if (v <= uidmap_max(&sel->uids))
                continue;
            if (sel->pend_exp.n && uidarr_find(&sel->pend_exp, v) >= 0)
                continue;
            if (uidmap_push(&sel->uids, v) < 0) {
                sel->resync = true;
                break;
            }
        }
        uidarr_free(&sel->pend_new);
    }
    if (sel->uids.n != sel->exists_sent) {
        uint32_t rc = imap_sel_recent_count(sel);
        imap_printf(s, "* %zu EXISTS\r\n", sel->uids.n);
        if ((sel->uids.n > sel->exists_sent || rc != sel->recent_sent) && !s->rev2)
            imap_printf(s, "* %u RECENT\r\n", rc);
        sel->exists_sent = sel->uids.n;
        sel->recent_sent = rc;
    }
}

/* ---- flags read on the pool, announced as FETCH FLAGS ---- */

int imap_flagset_add(struct imap_flagset *fs, const struct storage_msg *m)
{
    if (fs->n == fs->cap) {
        size_t ncap = fs->cap ? fs->cap * 2 : 64;
        struct imap_msgflags *n = realloc(fs->v, ncap * sizeof(*n));
        if (!n)
            return 1;
        fs->v = n;
        fs->cap = ncap;
    }
    struct imap_msgflags *f = &fs->v[fs->n++];
    f->uid = m->uid;
    f->flags = m->flags;
    f->modseq = m->modseq;
    f->kwoff = UINT32_MAX;
    if (m->keywords && *m->keywords) {
        f->kwoff = (uint32_t)fs->kw.len;
        buf_add(&fs->kw, m->keywords, strlen(m->keywords) + 1);
    }
    return 0;
}

void imap_flagset_free(struct imap_flagset *fs)
{
    free(fs->v);
    buf_free(&fs->kw);
    memset(fs, 0, sizeof(*fs));
}

void imap_flagset_announce(struct imap_session *s, const struct imap_flagset *fs, bool uid)
{
    for (size_t i = 0; i < fs->n && s->sel; i++) {
        const struct imap_msgflags *f = &fs->v[i];
        uint32_t seq = imap_sel_seq(s->sel, f->uid);
        if (!seq)
            continue;
        struct buf *b = imap_outbuf(s);
        /* RFC 9051 7.5.2: unsolicited FETCH carries UID */
        if (imap_buf_fetch_open(b, s->uidonly, seq, f->uid, uid || s->rev2))
            buf_addc(b, ' ');
        buf_str(b, "FLAGS ");
        imap_buf_flags(b, f->flags, f->kwoff == UINT32_MAX ? NULL : fs->kw.p + f->kwoff,
                       !s->rev2 && imap_sel_recent(s->sel, f->uid));
        if (s->condstore) {
            buf_str(b, " MODSEQ (");
            buf_addu(b, f->modseq);
            buf_addc(b, ')');
        }
        buf_str(b, ")\r\n");
        if (b->len >= 64 * 1024)
            imap_flush(s);
    }
}

/* ---- the pool part: flags changed by others, full resync ---- */

struct upd_job {
    struct imap_job j;
    int64_t mbox;
    uint64_t since;
    uint64_t own[8];
    unsigned n_own;
    bool flags, resync;
    bool expunge_ok;
    void (*then)(struct imap_session *s);
    /* another account's mailbox: its name read again by id (name_stale
     * as of name_gen when the job started) */
    bool want_name;
    unsigned name_gen;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    /* results */
    int err;
    bool gone;
    uint64_t highest;
    struct storage_range *all; /* every UID of the index, as ranges */
    size_t nall;
    struct imap_flagset fl; /* flags changed by others */
    const struct imap_ctx_ops *ctx_ops;
    struct imap_ctx_eval *ctx; /* search contexts to evaluate */
    size_t nctx;
    int64_t viewer; /* per-user \Seen (imap_sel.seen_viewer), and its set */
    struct storage_seen seen;
    /* other accounts' own \Seen changes, and the messages changed for
     * everybody meanwhile (imap_sel.other_modseq) */
    uint64_t other[8];
    unsigned n_other;
    struct uidarr changed;
};

static int upd_cb(void *arg, const struct storage_msg *m)
{
    struct upd_job *u = arg;
    if (m->modseq > u->highest)
        u->highest = m->modseq;
    for (unsigned i = 0; i < u->n_own; i++)
        if (u->own[i] == m->modseq)
            return 0;
    for (unsigned i = 0; i < u->n_other; i++)
        if (u->other[i] == m->modseq && uidarr_find(&u->changed, m->uid) < 0)
            return 0; /* moved only for another account's \Seen */
    if (u->viewer) {
        struct storage_msg v = *m;
        v.flags = storage_seen_flags(&u->seen, m->uid, m->flags);
        return imap_flagset_add(&u->fl, &v);
    }
    return imap_flagset_add(&u->fl, m);
}

static void upd_work(struct imap_job *j)
{
    struct upd_job *u = (struct upd_job *)j;

    if (u->resync) {
        struct storage_mbox_info info;
        int rc = storage_mbox_info(j->u, NULL, u->mbox, true, &info);
        if (rc == STORAGE_E_NOMBOX) {
            storage_mbox_info_free(&info);
            u->gone = true;
            return;
        }
        if (rc == 0) {
            memcpy(u->name, info.mb.name, sizeof(u->name));
            u->highest = info.mb.highestmodseq;
            u->all = info.ranges;
            u->nall = info.nranges;
            info.ranges = NULL;
            info.nranges = 0;
        } else {
            u->err = rc;
        }
        storage_mbox_info_free(&info);
    }
    if (u->changed.n > 1)
        qsort(u->changed.v, u->changed.n, sizeof(uint32_t), cmp_u32);
    if ((u->flags || u->resync) && u->viewer && !u->err)
        u->err = storage_pseen_get(j->u, u->mbox, u->viewer, &u->seen);
    if (u->flags || u->resync)
        u->err = u->err ? u->err : storage_changes(j->u, u->mbox, u->since, upd_cb, u, NULL);
    if (u->ctx)
        u->ctx_ops->eval_work(j->u, u->mbox, u->ctx, u->nctx);
}

static void upd_free(struct imap_job *j)
{
    struct upd_job *u = (struct upd_job *)j;
    free(u->all);
    imap_flagset_free(&u->fl);
    storage_seen_free(&u->seen);
    uidarr_free(&u->changed);
    if (u->ctx_ops)
        u->ctx_ops->eval_free(u->ctx, u->nctx);
    free(u);
}

/* A walk over the UIDs of ascending ranges, one at a time. */
struct rcur {
    const struct storage_range *r;
    size_t n, k;
    uint32_t v;
};

static void rcur_init(struct rcur *c, const struct storage_range *r, size_t n)
{
    c->r = r;
    c->n = n;
    c->k = 0;
    c->v = n ? r[0].lo : 0;
}

static bool rcur_get(const struct rcur *c, uint32_t *v)
{
    if (c->k >= c->n)
        return false;
    *v = c->v;
    return true;
}

static void rcur_next(struct rcur *c)
{
    if (c->v < c->r[c->k].hi)
        c->v++;
    else if (++c->k < c->n)
        c->v = c->r[c->k].lo;
}

/* The owner renamed the mailbox (its id stays): the rights are the new
 * name's from now on, as the ACL moved with it. */
static void follow_name(struct imap_sel *sel, const struct upd_job *u)
{
    if (strcmp(u->name, sel->oname)) {
        char *n = strdup(u->name);
        if (!n)
            return; /* stale still: read again at the next update */
        free(sel->oname);
        sel->oname = n;
    }
    if (u->name_gen == sel->name_gen)
        sel->name_stale = false;
}

static void upd_done(struct imap_session *s, struct imap_job *j)
{
    struct upd_job *u = (struct upd_job *)j;
    struct imap_sel *sel = s->sel;

    if (!sel || s->state != IMAP_SELECTED) {
        if (u->then)
            u->then(s);
        return;
    }
    if (u->gone) {
        imap_printf(s, "* BYE The selected mailbox was deleted.\r\n");
        imap_close(s);
        return;
    }
    if (u->err == 0 && u->resync) {
        /* differences between our view and the index become pending */
        struct rcur a, b;
        uint32_t va = 0, vb = 0, maxv = uidmap_max(&sel->uids);
        rcur_init(&a, sel->uids.r, sel->uids.nr);
        rcur_init(&b, u->all, u->nall);
        uidarr_free(&sel->pend_exp);
        uidarr_free(&sel->pend_new);
        for (;;) {
            bool ha = rcur_get(&a, &va), hb = rcur_get(&b, &vb);
            if (!ha && !hb)
                break;
            if (!hb || (ha && va < vb)) {
                uidarr_push(&sel->pend_exp, va);
                rcur_next(&a);
            } else if (!ha || vb < va) {
                if (vb > maxv)
                    uidarr_push(&sel->pend_new, vb);
                rcur_next(&b);
            } else {
                rcur_next(&a);
                rcur_next(&b);
            }
        }
    }
    if (u->err == 0 && u->resync && u->want_name && sel->mu)
        follow_name(sel, u);
    apply_pending(s, u->expunge_ok);
    if (u->err == 0) {
        imap_flagset_announce(s, &u->fl, true);
        if (u->highest > sel->known_modseq)
            sel->known_modseq = u->highest;
        sel->n_own = 0;
    } else {
        /* try again at the next chance */
        sel->flags_dirty = u->flags;
        sel->resync = sel->resync || u->resync;
    }
    if (u->ctx)
        u->ctx_ops->eval_done(s, u->ctx, u->nctx); /* after the EXISTS and FETCH */
    if (u->then)
        u->then(s);
}

void imap_updates(struct imap_session *s, bool expunge_ok, void (*then)(struct imap_session *s))
{
    struct imap_sel *sel = s->sel;

    if (!sel || s->state != IMAP_SELECTED) {
        if (then)
            then(s);
        return;
    }
    if (sel->mu && !imap_sel_refresh(s)) {
        /* access revoked: nothing more of the mailbox is told */
        uidarr_free(&sel->pend_new);
        uidarr_free(&sel->pend_exp);
        sel->flags_dirty = sel->resync = sel->ctx_dirty = false;
        if (then)
            then(s);
        return;
    }
    if (!imap_updates_need_job(s) || s->job || !s->mu) {
        apply_pending(s, expunge_ok);
        if (then)
            then(s);
        return;
    }
    struct upd_job *u = calloc(1, sizeof(*u));
    if (!u) {
        apply_pending(s, expunge_ok);
        if (then)
            then(s);
        return;
    }
    u->mbox = sel->id;
    u->viewer = sel->seen_viewer;
    u->since = sel->known_modseq;
    memcpy(u->own, sel->own_modseq, sizeof(u->own));
    u->n_own = sel->n_own;
    if (!sel->other_all) {
        memcpy(u->other, sel->other_modseq, sizeof(u->other));
        u->n_other = sel->n_other;
        u->changed = sel->pend_flags;
        memset(&sel->pend_flags, 0, sizeof(sel->pend_flags));
    }
    uidarr_free(&sel->pend_flags);
    sel->n_other = 0;
    sel->other_all = false;
    u->flags = sel->flags_dirty;
    u->resync = sel->resync;
    u->want_name = sel->name_stale;
    u->name_gen = sel->name_gen;
    u->expunge_ok = expunge_ok;
    u->then = then;
    u->j.free_fn = upd_free;
    if (sel->ctx_dirty && sel->ctx_ops) {
        u->ctx_ops = sel->ctx_ops;
        u->ctx = sel->ctx_ops->eval_new(sel, &u->nctx);
    }
    sel->ctx_dirty = false;
    sel->flags_dirty = false;
    sel->resync = false;
    u->j.store = sel->mu;
    if (imap_job_start(s, &u->j, upd_work, upd_done) < 0) {
        apply_pending(s, expunge_ok);
        if (then)
            then(s);
    }
}

/* ---- selecting ---- */

struct imap_sel *imap_sel_install(struct imap_session *s, const struct storage_mbox *mb,
                                  struct storage_mbox_info *info, bool readonly,
                                  uint32_t recent_floor, uint64_t recent_gen, uint32_t *uidnext)
{
    struct imap_sel *sel = calloc(1, sizeof(*sel));
    if (!sel)
        return NULL;
    sel->id = mb->id;
    sel->name = strdup(mb->name);
    if (!sel->name) {
        free(sel);
        return NULL;
    }
    sel->readonly = readonly;
    sel->uidvalidity = mb->uidvalidity;
    sel->known_modseq = mb->highestmodseq;
    /* the UID ranges move into the session */
    if (info->nranges) {
        uidmap_adopt(&sel->uids, info->ranges, info->nranges);
        info->ranges = NULL;
        info->nranges = 0;
        if (!sel->uids.nr) {
            free(sel->name);
            free(sel);
            return NULL;
        }
    }
    uint32_t maxu = uidmap_max(&sel->uids);
    *uidnext = mb->uidnext > maxu ? mb->uidnext : maxu + 1;

    /* \Recent: above the floor, up to what EXAMINE found, or for the
     * claim of a SELECT, without end until a later claim */
    sel->recent_lo = recent_floor + 1;
    sel->recent_hi = maxu;
    if (!readonly && (sel->rec = recent_get(s->account_id, sel->id)) != NULL) {
        struct imap_recent *r = sel->rec;
        if (r->owner && r->owner != s && r->gen > recent_gen) {
            /* a later claim came back first (gens compare while an owner
             * holds the store: they restart when it opens again) */
            sel->recent_hi = r->prev;
        } else {
            if (r->owner && r->owner != s && r->owner->sel && r->owner->sel->id == sel->id)
                r->owner->sel->recent_hi = recent_floor; /* hands over */
            sel->recent_hi = UINT32_MAX;
            r->owner = s;
            r->gen = recent_gen;
            r->prev = recent_floor;
        }
    }
    s->sel = sel;
    s->state = IMAP_SELECTED;
    sel->exists_sent = sel->uids.n;
    sel->recent_sent = imap_sel_recent_count(sel);
    return sel;
}
