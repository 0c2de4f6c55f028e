/* SORT and THREAD (RFC 5256; SORT=DISPLAY, RFC 5957), and their UID forms:
 * the argument parser (a pure function the fuzz target calls directly),
 * the search on the thread pool, where the storage orders the messages by
 * the keys it keeps in the index (storage/sort.c), and the answers: SORT,
 * THREAD, or ESEARCH for SORT RETURN (...) (ESORT, RFC 5267 3; with
 * UPDATE, a context kept in sort order, imap_context.c). Only
 * messages this session knows of take part: sequence numbers are its own. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

static const struct {
    const char *name;
    enum storage_sort_key key;
} sort_keys[] = {
    {"ARRIVAL", STORAGE_SORT_ARRIVAL},
    {"CC", STORAGE_SORT_CC},
    {"DATE", STORAGE_SORT_DATE},
    {"FROM", STORAGE_SORT_FROM},
    {"SIZE", STORAGE_SORT_SIZE},
    {"SUBJECT", STORAGE_SORT_SUBJECT},
    {"TO", STORAGE_SORT_TO},
    {"DISPLAYFROM", STORAGE_SORT_DISPLAYFROM},
    {"DISPLAYTO", STORAGE_SORT_DISPLAYTO},
};

/* charset SP search-key *(SP search-key): a charset other than UTF-8 and
 * US-ASCII is kept in out->charset, checked and used on the pool as for
 * SEARCH (imap_charset.c) */
static int parse_criteria(struct imap_args *a, struct imap_arena *ar, struct imap_sort_spec *out,
                          const char **err)
{
    char cs[64];
    size_t cl;
    int r;

    if (imap_args_sp(a) != IMAP_ARG_OK ||
        imap_args_astring(a, cs, sizeof(cs), &cl) != IMAP_ARG_OK ||
        imap_args_sp(a) != IMAP_ARG_OK) {
        *err = "Expected a charset and search keys.";
        return IMAP_ARG_BAD;
    }
    if (!imap_charset_is_utf8(cs))
        memcpy(out->charset, cs, cl + 1);
    if ((r = imap_search_parse(a, ar, &out->q, err)) != IMAP_ARG_OK)
        return r;
    return IMAP_ARG_OK;
}

int imap_sort_parse(struct imap_args *a, struct imap_arena *ar, bool thread,
                    struct imap_sort_spec *out, const char **err)
{
    const char *w;
    size_t n;

    memset(out, 0, sizeof(*out));
    if (imap_args_sp(a) != IMAP_ARG_OK) {
        *err = thread ? "Usage: THREAD algorithm charset key ..."
                      : "Usage: SORT (criteria) charset key ...";
        return IMAP_ARG_BAD;
    }
    if (thread) {
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
            *err = "Expected a threading algorithm.";
            return IMAP_ARG_BAD;
        }
        if (imap_word_is(w, n, "ORDEREDSUBJECT"))
            out->algo = STORAGE_THREAD_ORDEREDSUBJECT;
        else if (imap_word_is(w, n, "REFERENCES"))
            out->algo = STORAGE_THREAD_REFERENCES;
        else if (imap_word_is(w, n, "REFS"))
            out->algo = STORAGE_THREAD_REFS;
        else {
            *err = "Unknown threading algorithm.";
            return IMAP_ARG_BAD;
        }
        return parse_criteria(a, ar, out, err);
    }
    /* RFC 5267 3 (ESORT): SORT RETURN (options) (criteria) ... */
    if (imap_search_return(a, &out->opts, &out->partial) != IMAP_ARG_OK) {
        *err = "Usage: SORT [RETURN (MIN MAX ALL COUNT SAVE)] (criteria) charset key ...";
        return IMAP_ARG_BAD;
    }
    if (!imap_args_peek(a, '(') || imap_args_open(a) != IMAP_ARG_OK) {
        *err = "Expected a parenthesized list of sort criteria.";
        return IMAP_ARG_BAD;
    }
    for (;;) {
        bool rev = false, found = false;
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
            *err = "Expected a sort criterion.";
            return IMAP_ARG_BAD;
        }
        if (imap_word_is(w, n, "REVERSE")) {
            rev = true;
            if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
                *err = "REVERSE needs a sort key.";
                return IMAP_ARG_BAD;
            }
        }
        for (size_t i = 0; i < sizeof(sort_keys) / sizeof(sort_keys[0]); i++)
            if (imap_word_is(w, n, sort_keys[i].name)) {
                if (out->n >= IMAP_SORT_MAX_KEYS) {
                    *err = "Too many sort criteria.";
                    return IMAP_ARG_BAD;
                }
                out->crit[out->n].key = sort_keys[i].key;
                out->crit[out->n++].reverse = rev;
                found = true;
                break;
            }
        if (!found) {
            *err = "Unknown sort key.";
            return IMAP_ARG_BAD;
        }
        if (imap_args_peek(a, ')'))
            break;
        if (imap_args_sp(a) != IMAP_ARG_OK) {
            *err = "Expected a space or ')'.";
            return IMAP_ARG_BAD;
        }
    }
    imap_args_close(a);
    return parse_criteria(a, ar, out, err);
}

struct sort_job {
    struct imap_job j;
    struct imap_arena ar;
    int64_t mbox;
    bool thread;
    struct imap_sort_spec spec;
    bool badcharset;
    uint64_t since;           /* UPDATE: the modseq known when the command came */
    struct storage_search *q; /* UPDATE: the criteria without the view's UIDs */
    bool modseq;              /* a MODSEQ key: a SORT answer tells the highest modseq found */
    int err;
    struct storage_uidlist res;
    struct storage_thread thr;
    struct imap_modseqs ms;
};

static void sort_work(struct imap_job *j)
{
    struct sort_job *sj = (struct sort_job *)j;
    int r = imap_search_in_charset(sj->spec.q, &sj->ar, sj->spec.charset);
    if (r != 0) {
        sj->badcharset = r > 0;
        sj->err = r < 0 ? STORAGE_E_NOMEM : 0;
        return;
    }
    if (sj->thread)
        sj->err = storage_thread(j->u, sj->mbox, sj->spec.q, sj->spec.algo, &sj->thr);
    else
        sj->err = storage_sort(j->u, sj->mbox, sj->spec.q, sj->spec.crit, sj->spec.n, &sj->res);
    if (sj->err == 0 && sj->modseq && !sj->thread)
        sj->err = imap_modseqs_load(j->u, sj->mbox, sj->res.uids, sj->res.n, &sj->ms);
}

static void sort_free(struct imap_job *j)
{
    struct sort_job *sj = (struct sort_job *)j;
    imap_arena_free(&sj->ar);
    storage_uidlist_free(&sj->res);
    storage_thread_free(&sj->thr);
    imap_modseqs_free(&sj->ms);
    free(sj);
}

/* The number this session gives uid: its UID or its sequence number (0
 * when the session does not know it: the query keeps to those it does). */
static uint32_t number(struct imap_session *s, uint32_t uid)
{
    if (!s->sel)
        return 0;
    return s->uid_cmd ? (imap_sel_seq(s->sel, uid) ? uid : 0) : imap_sel_seq(s->sel, uid);
}

static struct buf *room(struct imap_session *s, struct buf *b)
{
    if (b->len < 64 * 1024)
        return b;
    imap_flush(s);
    return imap_outbuf(s);
}

/* RFC 5256 4: thread-list = "(" (thread-members / thread-nested) ")",
 * thread-members = nz-number *(SP nz-number) [SP thread-nested],
 * thread-nested = 2*thread-list. A node with one child continues the
 * members; one with several opens a thread-list per child; a dummy only
 * nests its children. Written with a stack of its own: a thread may be as
 * deep as the mailbox is long. */
static void write_threads(struct imap_session *s, const struct storage_thread *t)
{
    const struct storage_thread_node *nd = t->nodes;
    struct buf *b = imap_outbuf(s);
    uint32_t *stack = NULL; /* per open nesting: the next child to open */
    size_t depth = 0, cap = 0;

    buf_str(b, "* THREAD");
    if (t->n)
        buf_addc(b, ' ');
    for (uint32_t root = t->root; root; root = nd[root - 1].next) {
        uint32_t cur = root;
        buf_addc(b, '(');
        for (;;) {
            /* a thread-list is open: write the members from cur */
            bool first = true;
            for (;;) {
                const struct storage_thread_node *x = &nd[cur - 1];
                uint32_t num = x->uid ? number(s, x->uid) : 0;
                if (num) {
                    if (!first)
                        buf_addc(b, ' ');
                    buf_addu(b, num);
                    first = false;
                }
                if (x->child && !nd[x->child - 1].next && num) {
                    cur = x->child;
                    continue;
                }
                if (x->child) {
                    /* children nested: each a thread-list of its own */
                    if (!first)
                        buf_addc(b, ' ');
                    if (depth == cap) {
                        uint32_t *ns = realloc(stack, (cap ? cap * 2 : 64) * sizeof(*ns));
                        if (!ns) {
                            b->oom = true;
                            goto out;
                        }
                        stack = ns;
                        cap = cap ? cap * 2 : 64;
                    }
                    stack[depth++] = x->child;
                } else {
                    buf_addc(b, ')');
                }
                break;
            }
            /* the next thread-list to open, closing those done */
            cur = 0;
            while (depth) {
                uint32_t nx = stack[depth - 1];
                if (nx) {
                    stack[depth - 1] = nd[nx - 1].next;
                    cur = nx;
                    break;
                }
                depth--;
                buf_addc(b, ')');
            }
            if (!cur)
                break;
            b = room(s, b);
            buf_addc(b, '(');
        }
        b = room(s, b);
    }
out:
    free(stack);
    buf_str(b, "\r\n");
}

static void sort_done(struct imap_session *s, struct imap_job *j)
{
    struct sort_job *sj = (struct sort_job *)j;
    const char *what = sj->thread ? "THREAD" : "SORT";

    if (sj->err || sj->badcharset)
        imap_search_save_failed(s, sj->spec.opts);
    if (sj->badcharset) {
        imap_finish(s, "NO", "[BADCHARSET %s] Unsupported charset.", imap_charsets);
        return;
    }
    if (sj->err == STORAGE_E_INVAL) {
        imap_finish(s, "NO", "[CANNOT] %s: invalid search.", what);
        return;
    }
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, what);
        return;
    }
    if (sj->thread) {
        write_threads(s, &sj->thr);
    } else if (sj->spec.opts & IMAP_SR_RETURN) {
        /* ESORT: an ESEARCH answer in sort order; with UPDATE, a context
         * kept in sort order (CONTEXT=SORT, RFC 5267 4) */
        int ctx = 0;
        if ((sj->spec.opts & IMAP_SR_UPDATE) &&
            (ctx = imap_ctx_add_sort(s, &sj->ar, sj->q, sj->spec.crit, sj->spec.n, sj->res.uids,
                                     sj->res.n, sj->since)) < 0) {
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
        uint64_t highest = imap_modseqs_highest(s, &sj->ms, sj->res.uids, sj->res.n, sj->spec.opts);
        if (imap_esearch_result(s, sj->spec.opts, &sj->spec.partial, sj->res.uids, sj->res.n, true,
                                highest) < 0) {
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
            return;
        }
        if (ctx > 0)
            imap_noupdate(s);
    } else {
        struct buf *b = imap_outbuf(s);
        buf_str(b, "* SORT");
        for (size_t i = 0; i < sj->res.n; i++) {
            uint32_t num = number(s, sj->res.uids[i]);
            if (num) {
                buf_addc(b, ' ');
                buf_addu(b, num);
            }
            b = room(s, b);
        }
        uint64_t highest = imap_modseqs_highest(s, &sj->ms, sj->res.uids, sj->res.n, 0);
        if (highest) {
            buf_str(b, " (MODSEQ ");
            buf_addu(b, highest);
            buf_addc(b, ')');
        }
        buf_str(b, "\r\n");
    }
    imap_finish(s, "OK", "%s%s completed.", s->uid_cmd ? "UID " : "", what);
}

/* The parsed query AND the UIDs of this session's view. */
static int restrict_to_view(struct imap_session *s, struct sort_job *sj)
{
    const struct uidmap *m = &s->sel->uids;
    struct storage_search *and = imap_arena_alloc(&sj->ar, sizeof(*and));
    struct storage_search *view = imap_arena_alloc(&sj->ar, sizeof(*view));
    struct storage_range *r = imap_arena_alloc(&sj->ar, (m->nr ? m->nr : 1) * sizeof(*r));

    if (!and || !view || !r)
        return -2;
    if (m->nr) /* an empty view has no ranges at all */
        memcpy(r, m->r, m->nr * sizeof(*r));
    view->op = STORAGE_SEARCH_UID;
    view->set.n = m->nr;
    view->set.r = r;
    view->next = sj->spec.q;
    and->op = STORAGE_SEARCH_AND;
    and->child = view;
    sj->spec.q = and;
    return 0;
}

static void sort_or_thread(struct imap_session *s, struct imap_args *a, bool thread)
{
    struct sort_job *sj = calloc(1, sizeof(*sj));
    const char *err;
    int r;

    if (!sj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    sj->j.free_fn = sort_free;
    sj->thread = thread;
    if ((r = imap_sort_parse(a, &sj->ar, thread, &sj->spec, &err)) != IMAP_ARG_OK) {
        sort_free(&sj->j);
        imap_bad(s, "%s", err);
        return;
    }
    if (s->utf8_accept && sj->spec.charset[0]) {
        /* RFC 6855 3 (erratum 4029): a charset other than UTF-8 conflicts */
        sort_free(&sj->j);
        imap_bad(s, "Only the UTF-8 charset after ENABLE UTF8=ACCEPT.");
        return;
    }
    if ((sj->spec.opts & IMAP_SR_UPDATE) && imap_ctx_find(s->sel, s->tag)) {
        /* RFC 5267 4.3: the tag names a live context */
        sort_free(&sj->j);
        imap_bad(s, "Tag in use by a search context.");
        return;
    }
    if ((sj->modseq = imap_search_has_modseq(sj->spec.q)))
        imap_condstore_enable(s); /* RFC 7162 3.1 */
    sj->since = s->sel->known_modseq;
    sj->q = sj->spec.q; /* restrict_to_view puts it under an AND, unchanged */
    if ((r = imap_search_resolve(s, sj->spec.q, &sj->ar)) < 0 ||
        (r = restrict_to_view(s, sj)) < 0) {
        unsigned opts = sj->spec.opts;
        sort_free(&sj->j);
        if (r == -3) {
            imap_bad(s, "RECENT, NEW and OLD are not search keys in IMAP4rev2.");
        } else if (r == -4) {
            imap_bad(s, IMAP_UIDREQUIRED);
        } else if (r == -1) {
            imap_bad(s, "Invalid message sequence number.");
        } else {
            imap_search_save_failed(s, opts);
            imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        }
        return;
    }
    sj->mbox = s->sel->id;
    sj->q->viewer = sj->spec.q->viewer = s->sel->seen_viewer; /* per-user \Seen */
    imap_sel_job(s, &sj->j, sort_work, sort_done);
}

void imap_cmd_sort(struct imap_session *s, struct imap_args *a)
{
    sort_or_thread(s, a, false);
}

void imap_cmd_thread(struct imap_session *s, struct imap_args *a)
{
    sort_or_thread(s, a, true);
}
