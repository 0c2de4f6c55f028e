/* VANISHED (EARLIER) of QRESYNC (RFC 7162 3.2.5 and 3.2.6): the UIDs a
 * client knew that were expunged since a modseq, for SELECT/EXAMINE's
 * QRESYNC parameter and UID FETCH's VANISHED modifier. The index keeps
 * expunged UIDs with their modseq for a while (storage/vanished.c); for a
 * modseq below what it forgot (its floor), every UID the client names
 * that no longer exists is reported, narrowed by the sequence match data
 * the client may give (3.2.5.2). Parsing on the loop, the answer made on
 * the pool. */
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap_private.h"

void imap_vanished_free(struct imap_vanished *v)
{
    free(v->known);
    free(v->mseq);
    free(v->muid);
    storage_uidlist_free(&v->gone);
    buf_free(&v->line);
    memset(v, 0, sizeof(*v));
}

static uint64_t set_count(const struct imap_seqset *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += (uint64_t)s->r[i].hi - s->r[i].lo + 1;
    return n;
}

static struct storage_range *dup_ranges(const struct imap_seqset *s)
{
    struct storage_range *r = malloc((s->n ? s->n : 1) * sizeof(*r));
    if (r && s->n)
        memcpy(r, s->r, s->n * sizeof(*r));
    return r;
}

/* known-uids [SP seq-match-data] after "uidvalidity SP modseq"; the caller
 * has read those. */
int imap_vanished_parse(struct imap_args *a, struct imap_arena *ar, struct imap_vanished *v)
{
    struct imap_seqset known, seqs, uids;

    v->all = true;
    if (imap_args_peek(a, ')'))
        return IMAP_ARG_OK;
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_seqset(a, ar, &known) != IMAP_ARG_OK ||
        known.saved || !known.n)
        return IMAP_ARG_BAD;
    if (!(v->known = dup_ranges(&known)))
        return IMAP_ARG_NOMEM;
    v->nknown = known.n;
    v->all = false;
    if (imap_args_peek(a, ')'))
        return IMAP_ARG_OK;
    /* SP "(" known-sequence-set SP known-uid-set ")" */
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_open(a) != IMAP_ARG_OK ||
        imap_args_seqset(a, ar, &seqs) != IMAP_ARG_OK || imap_args_sp(a) != IMAP_ARG_OK ||
        imap_args_seqset(a, ar, &uids) != IMAP_ARG_OK || imap_args_close(a) != IMAP_ARG_OK)
        return IMAP_ARG_BAD;
    if (seqs.saved || uids.saved || !seqs.n || !uids.n)
        return IMAP_ARG_BAD;
    for (size_t i = 0; i < seqs.n; i++)
        if (seqs.r[i].lo == IMAP_STAR || seqs.r[i].hi == IMAP_STAR)
            return IMAP_ARG_BAD;
    for (size_t i = 0; i < uids.n; i++)
        if (uids.r[i].lo == IMAP_STAR || uids.r[i].hi == IMAP_STAR)
            return IMAP_ARG_BAD;
    /* 3.2.5: as many sequence numbers as UIDs */
    if (set_count(&seqs) != set_count(&uids))
        return IMAP_ARG_BAD;
    if (!(v->mseq = dup_ranges(&seqs)) || !(v->muid = dup_ranges(&uids)))
        return IMAP_ARG_NOMEM;
    v->nmseq = seqs.n;
    v->nmuid = uids.n;
    return IMAP_ARG_OK;
}

int imap_vanished_set_known(struct imap_vanished *v, const struct storage_range *r, size_t n)
{
    free(v->known);
    v->known = NULL;
    v->nknown = 0;
    v->all = false;
    if (!n)
        return 0;
    if (!(v->known = malloc(n * sizeof(*r))))
        return -1;
    memcpy(v->known, r, n * sizeof(*r));
    v->nknown = n;
    return 0;
}

/* Whether uid is in the ascending, disjoint ranges r[0..n). */
static bool in_ranges(const struct storage_range *r, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].hi < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && r[lo].lo <= uid;
}

bool imap_vanished_knows(const struct imap_vanished *v, uint32_t uid)
{
    return v->all || in_ranges(v->known, v->nknown, uid);
}

/* A walk over the numbers of ranges in the order written. */
struct walk {
    const struct storage_range *r;
    size_t n, k;
    uint32_t v;
};

static bool walk_next(struct walk *w, uint32_t *out)
{
    if (w->k >= w->n)
        return false;
    *out = w->v;
    if (w->v < w->r[w->k].hi)
        w->v++;
    else if (++w->k < w->n)
        w->v = w->r[w->k].lo;
    return true;
}

/* 3.2.5.2: the highest UID of the sequence match data up to which the
 * client's sequence numbers still hold in exist (the mailbox now): every
 * UID the client knew below it still exists. 0 when none holds. */
static uint32_t seq_match(const struct imap_vanished *v, const struct storage_range *exist,
                          size_t nexist)
{
    struct walk ws = {v->mseq, v->nmseq, 0, v->nmseq ? v->mseq[0].lo : 0};
    struct walk wu = {v->muid, v->nmuid, 0, v->nmuid ? v->muid[0].lo : 0};
    uint32_t seq, uid, last = 0, lastseq = 0, good = 0;
    size_t k = 0;
    uint64_t before = 0; /* UIDs of exist[0..k) */

    while (walk_next(&ws, &seq) && walk_next(&wu, &uid)) {
        if (uid <= last || seq <= lastseq)
            break; /* not ascending: nothing more is trusted */
        last = uid;
        lastseq = seq;
        while (k < nexist && exist[k].hi < uid) {
            before += (uint64_t)exist[k].hi - exist[k].lo + 1;
            k++;
        }
        if (k >= nexist || exist[k].lo > uid)
            break; /* expunged since */
        if (before + (uid - exist[k].lo) + 1 != seq)
            break; /* a message below it went */
        good = uid;
    }
    return good;
}

int imap_vanished_run(struct storage_user *u, int64_t mbox, struct imap_vanished *v,
                      const struct storage_range *exist, size_t nexist, uint32_t top,
                      storage_msg_cb cb, void *arg)
{
    static const char prefix[] = "* VANISHED (EARLIER) ";
    struct imap_runs runs = {0};
    struct storage_range *norm = NULL;
    size_t nnorm = 0;
    int rc;

    /* '*' in the known UIDs is the highest UID there is */
    for (size_t i = 0; i < v->nknown; i++) {
        if (v->known[i].hi == IMAP_STAR)
            v->known[i].hi = top ? top : 1;
        if (v->known[i].lo == IMAP_STAR)
            v->known[i].lo = top ? top : 1;
        if (v->known[i].lo > v->known[i].hi) {
            uint32_t t = v->known[i].lo;
            v->known[i].lo = v->known[i].hi;
            v->known[i].hi = t;
        }
    }
    if (v->nknown) {
        struct storage_uidset set = {v->nknown, v->known};
        if ((rc = storage_uidset_normalize(&set, &norm, &nnorm)) != 0)
            return rc;
        free(v->known);
        v->known = norm;
        v->nknown = nnorm;
    }
    rc = storage_changes_floor(u, mbox, v->since, cb, arg, &v->gone, &v->floor);
    if (rc)
        return rc;
    if (v->since >= v->floor) {
        /* every expunge since is remembered */
        for (size_t i = 0; i < v->gone.n; i++)
            if (imap_vanished_knows(v, v->gone.uids[i]))
                imap_runs_add(&runs, &v->line, prefix, v->gone.uids[i], v->gone.uids[i]);
    } else {
        /* forgotten: every known UID up to top that no longer exists,
         * above what the sequence match shows unchanged */
        struct storage_range all = {1, top};
        const struct storage_range *kr = v->all ? &all : v->known;
        size_t nk = v->all ? (top ? 1 : 0) : v->nknown, e = 0;
        uint32_t from = seq_match(v, exist, nexist) + 1;
        v->full = true;
        for (size_t i = 0; i < nk; i++) {
            uint64_t lo = kr[i].lo > from ? kr[i].lo : from, hi = kr[i].hi < top ? kr[i].hi : top;
            while (lo <= hi) {
                while (e < nexist && exist[e].hi < lo)
                    e++;
                if (e >= nexist || exist[e].lo > hi) {
                    imap_runs_add(&runs, &v->line, prefix, (uint32_t)lo, (uint32_t)hi);
                    break;
                }
                if (exist[e].lo > lo)
                    imap_runs_add(&runs, &v->line, prefix, (uint32_t)lo, exist[e].lo - 1);
                lo = (uint64_t)exist[e].hi + 1;
            }
        }
    }
    imap_runs_end(&runs, &v->line);
    return v->line.oom ? STORAGE_E_NOMEM : 0;
}
