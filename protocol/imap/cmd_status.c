/* STATUS: a mailbox's counts from the state the account's store keeps of
 * it, on the thread pool; RECENT counts the messages above the \Recent
 * floor kept in the index (claiming nothing), and, for the mailbox this
 * session has selected, the messages it holds as \Recent itself. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"

enum {
    ST_MESSAGES = 1 << 0,
    ST_RECENT = 1 << 1,
    ST_UIDNEXT = 1 << 2,
    ST_UIDVALIDITY = 1 << 3,
    ST_UNSEEN = 1 << 4,
    ST_HIGHESTMODSEQ = 1 << 5, /* RFC 7162 3.1.9 */
};

struct status_job {
    struct imap_job j;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    unsigned items;
    int err;
    struct storage_mbox mb;
    struct storage_status st;
    uint32_t recent; /* messages with a UID above the floor */
};

static int count_cb(void *arg, const struct storage_msg *m)
{
    struct status_job *sj = arg;
    (void)m;
    sj->recent++;
    return 0;
}

static void status_work(struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    struct storage_mbox_info info;
    uint32_t floor = 0;

    sj->err = storage_mbox_info(j->u, sj->name, 0, false, &info);
    if (sj->err == 0) {
        sj->mb = info.mb;
        sj->st.messages = info.messages;
        sj->st.unseen = info.unseen;
        sj->st.deleted = info.deleted;
        sj->st.uidnext = info.mb.uidnext;
        sj->st.uidvalidity = info.mb.uidvalidity;
        sj->st.highestmodseq = info.mb.highestmodseq;
    }
    storage_mbox_info_free(&info);
    if (sj->err || !(sj->items & ST_RECENT))
        return;
    sj->err = storage_recent_floor(j->u, sj->mb.id, sj->mb.uidvalidity, &floor);
    if (sj->err || floor >= sj->st.uidnext - 1)
        return; /* none above it */
    if (floor == 0) {
        sj->recent = sj->st.messages;
        return;
    }
    struct storage_range r = {floor + 1, UINT32_MAX};
    struct storage_uidset set = {1, &r};
    sj->err = storage_fetch(j->u, sj->mb.id, &set, 0, count_cb, sj);
}

static void status_done(struct imap_session *s, struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "STATUS");
        return;
    }
    /* the session's own \Recent messages are \Recent to it (RFC 3501
     * 6.3.10), though no other session sees them so */
    if (s->sel && !s->sel->readonly && s->sel->id == sj->mb.id &&
        s->sel->uidvalidity == sj->mb.uidvalidity)
        sj->recent += imap_sel_recent_count(s->sel);
    struct buf *b = imap_outbuf(s);
    bool first = true;
    buf_str(b, "* STATUS ");
    imap_buf_mailbox(b, sj->mb.name);
    buf_str(b, " (");
#define ITEM(bit, fmt, v)                                                                          \
    do {                                                                                           \
        if (sj->items & (bit)) {                                                                   \
            buf_printf(b, "%s" fmt, first ? "" : " ", v);                                          \
            first = false;                                                                         \
        }                                                                                          \
    } while (0)
    ITEM(ST_MESSAGES, "MESSAGES %u", sj->st.messages);
    ITEM(ST_RECENT, "RECENT %u", sj->recent);
    ITEM(ST_UIDNEXT, "UIDNEXT %u", sj->st.uidnext);
    ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", sj->st.uidvalidity);
    ITEM(ST_UNSEEN, "UNSEEN %u", sj->st.unseen);
    ITEM(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)sj->st.highestmodseq);
#undef ITEM
    buf_str(b, ")\r\n");
    imap_finish(s, "OK", "STATUS completed.");
}

void imap_cmd_status(struct imap_session *s, struct imap_args *a)
{
    char name[STORAGE_MBOX_NAME_MAX + 1];
    unsigned items = 0;
    bool invalid = false;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, name, sizeof(name)), &invalid)) != IMAP_ARG_OK ||
        (r = imap_args_sp(a)) != IMAP_ARG_OK || (r = imap_args_open(a)) != IMAP_ARG_OK) {
        imap_bad_arg(s, r, "STATUS mailbox (items)");
        return;
    }
    while (!imap_args_peek(a, ')')) {
        const char *w;
        size_t n;
        if (items && imap_args_sp(a) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: STATUS mailbox (items)");
            return;
        }
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK) {
            imap_bad(s, "Usage: STATUS mailbox (items)");
            return;
        }
        if (imap_word_is(w, n, "MESSAGES"))
            items |= ST_MESSAGES;
        else if (imap_word_is(w, n, "RECENT"))
            items |= ST_RECENT;
        else if (imap_word_is(w, n, "UIDNEXT"))
            items |= ST_UIDNEXT;
        else if (imap_word_is(w, n, "UIDVALIDITY"))
            items |= ST_UIDVALIDITY;
        else if (imap_word_is(w, n, "UNSEEN"))
            items |= ST_UNSEEN;
        else if (imap_word_is(w, n, "HIGHESTMODSEQ"))
            items |= ST_HIGHESTMODSEQ;
        else {
            imap_bad(s, "Unknown STATUS item.");
            return;
        }
    }
    if (imap_args_close(a) != IMAP_ARG_OK || !imap_args_at_end(a) || !items) {
        imap_bad(s, "Usage: STATUS mailbox (items)");
        return;
    }
    if (invalid) {
        imap_no_name(s, "STATUS", true);
        return;
    }
    if (items & ST_HIGHESTMODSEQ)
        imap_condstore_enable(s);
    if (!imap_storage(s))
        return;
    struct status_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    memcpy(sj->name, name, sizeof(sj->name));
    sj->items = items;
    imap_cmd_job(s, &sj->j, status_work, status_done);
}
