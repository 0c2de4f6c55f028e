/* STATUS: a mailbox's counts from the state the account's store keeps of
 * it, on the thread pool; RECENT counts the messages above the \Recent
 * floor kept in the index (claiming nothing), and, for the mailbox this
 * session has selected, the messages it holds as \Recent itself; SIZE
 * (RFC 8438) and DELETED-STORAGE (RFC 9208 4.2) sum the sizes of its
 * messages in the index, only when asked for. LIST ... RETURN (STATUS
 * (...)) (RFC 5819, cmd_list.c) answers the same items through the same
 * functions. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"

enum {
    ST_MESSAGES = 1 << 0,
    ST_RECENT = 1 << 1,
    ST_UIDNEXT = 1 << 2,
    ST_UIDVALIDITY = 1 << 3,
    ST_UNSEEN = 1 << 4,
    ST_HIGHESTMODSEQ = 1 << 5,   /* RFC 7162 3.1.9 */
    ST_SIZE = 1 << 6,            /* RFC 8438 */
    ST_DELETED = 1 << 7,         /* RFC 9051 6.3.11 */
    ST_DELETED_STORAGE = 1 << 8, /* RFC 9208 4.2, in units of 1024 octets (rounded up) */
    ST_APPENDLIMIT = 1 << 9,     /* RFC 7889 */
    ST_MAILBOXID = 1 << 10,      /* RFC 8474 4.2 */
};

static const struct {
    const char *name;
    unsigned bit;
} items_known[] = {
    {"MESSAGES", ST_MESSAGES},
    {"RECENT", ST_RECENT},
    {"UIDNEXT", ST_UIDNEXT},
    {"UIDVALIDITY", ST_UIDVALIDITY},
    {"UNSEEN", ST_UNSEEN},
    {"HIGHESTMODSEQ", ST_HIGHESTMODSEQ},
    {"SIZE", ST_SIZE},
    {"DELETED", ST_DELETED},
    {"DELETED-STORAGE", ST_DELETED_STORAGE},
    {"APPENDLIMIT", ST_APPENDLIMIT},
    {"MAILBOXID", ST_MAILBOXID},
};

int imap_status_items(struct imap_args *a, bool rev2, unsigned *items)
{
    int r;

    *items = 0;
    if ((r = imap_args_open(a)) != IMAP_ARG_OK)
        return r;
    while (!imap_args_peek(a, ')')) {
        const char *w;
        size_t n, k;
        if (*items && imap_args_sp(a) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
        if (imap_args_atom(a, &w, &n) != IMAP_ARG_OK)
            return IMAP_ARG_BAD;
        for (k = 0; k < sizeof(items_known) / sizeof(items_known[0]); k++)
            if (imap_word_is(w, n, items_known[k].name))
                break;
        if (k == sizeof(items_known) / sizeof(items_known[0]) ||
            (rev2 && items_known[k].bit == ST_RECENT))
            return IMAP_ARG_BAD;
        *items |= items_known[k].bit;
    }
    if ((r = imap_args_close(a)) != IMAP_ARG_OK)
        return r;
    return *items ? IMAP_ARG_OK : IMAP_ARG_BAD;
}

void imap_status_prepare(struct imap_session *s, unsigned items, struct imap_status *st)
{
    memset(st, 0, sizeof(*st));
    st->items = items;
    st->appendlimit = conn_conf(s->c)->max_message_size;
    st->utf8 = s->utf8;
    if (items & ST_HIGHESTMODSEQ)
        imap_condstore_enable(s);
}

static int count_cb(void *arg, const struct storage_msg *m)
{
    struct imap_status *st = arg;
    (void)m;
    st->recent++;
    return 0;
}

int imap_status_read(struct storage_user *u, const char *name, int64_t id, struct imap_status *st)
{
    struct storage_mbox_info info;
    uint32_t floor = 0;
    int err;

    err = storage_mbox_info_viewer(u, name, id, st->viewer, false, &info);
    if (err == 0) {
        st->mb = info.mb;
        st->st.messages = info.messages;
        st->st.unseen = info.unseen;
        st->st.deleted = info.deleted;
        st->st.uidnext = info.mb.uidnext;
        st->st.uidvalidity = info.mb.uidvalidity;
        st->st.highestmodseq = info.mb.highestmodseq;
    }
    storage_mbox_info_free(&info);
    if (err)
        return err;
    if (st->items & (ST_SIZE | ST_DELETED_STORAGE)) {
        struct storage_status sizes;
        if ((err = storage_mbox_status(u, st->mb.id, &sizes)) != 0)
            return err;
        st->st.size = sizes.size;
        st->st.deleted_size = sizes.deleted_size;
    }
    st->recent = 0;
    if (!(st->items & ST_RECENT))
        return 0;
    err = storage_recent_floor(u, st->mb.id, st->mb.uidvalidity, &floor);
    if (err || floor >= st->st.uidnext - 1)
        return err; /* none above it */
    if (floor == 0) {
        st->recent = st->st.messages;
        return 0;
    }
    struct storage_range r = {floor + 1, UINT32_MAX};
    struct storage_uidset set = {1, &r};
    return storage_fetch(u, st->mb.id, &set, 0, count_cb, st);
}

void imap_status_write(struct buf *b, const struct imap_status *st)
{
    bool first = true;

    buf_str(b, "* STATUS ");
    imap_buf_mbox(b, st->shown ? st->shown : st->mb.name, st->utf8);
    buf_str(b, " (");
#define ITEM(bit, fmt, v)                                                                          \
    do {                                                                                           \
        if (st->items & (bit)) {                                                                   \
            buf_printf(b, "%s" fmt, first ? "" : " ", v);                                          \
            first = false;                                                                         \
        }                                                                                          \
    } while (0)
    ITEM(ST_MESSAGES, "MESSAGES %u", st->st.messages);
    ITEM(ST_RECENT, "RECENT %u", st->recent);
    ITEM(ST_UIDNEXT, "UIDNEXT %u", st->st.uidnext);
    ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", st->st.uidvalidity);
    ITEM(ST_UNSEEN, "UNSEEN %u", st->st.unseen);
    ITEM(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st->st.highestmodseq);
    ITEM(ST_SIZE, "SIZE %llu", (unsigned long long)st->st.size);
    ITEM(ST_DELETED, "DELETED %u", st->st.deleted);
    ITEM(ST_DELETED_STORAGE, "DELETED-STORAGE %llu",
         (unsigned long long)((st->st.deleted_size + 1023) / 1024));
    ITEM(ST_APPENDLIMIT, "APPENDLIMIT %llu", (unsigned long long)st->appendlimit);
#undef ITEM
    if (st->items & ST_MAILBOXID) {
        buf_str(b, first ? "MAILBOXID (" : " MAILBOXID (");
        imap_buf_objectid(b, 'F', st->mb.oid);
        buf_addc(b, ')');
    }
    buf_str(b, ")\r\n");
}

struct status_job {
    struct imap_job j;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    bool shared;
    char shown[IMAP_NAME_MAX + 1]; /* the client's name of a shared mailbox */
    int err;
    struct imap_status st;
};

static void status_work(struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    sj->err = imap_status_read(j->u, sj->name, 0, &sj->st);
}

static void status_done(struct imap_session *s, struct imap_job *j)
{
    struct status_job *sj = (struct status_job *)j;
    if (sj->err) {
        imap_finish_storage_err(s, sj->err, "STATUS");
        return;
    }
    /* the session's own \Recent messages are \Recent to it (RFC 3501
     * 6.3.10), though no other session sees them so (ids are an
     * account's: only for one's own mailboxes) */
    if (sj->shared)
        sj->st.shown = sj->shown;
    else if (s->sel && !s->sel->mu && !s->sel->readonly && s->sel->id == sj->st.mb.id &&
             s->sel->uidvalidity == sj->st.mb.uidvalidity)
        sj->st.recent += imap_sel_recent_count(s->sel);
    imap_status_write(imap_outbuf(s), &sj->st);
    imap_finish(s, "OK", "STATUS completed.");
}

void imap_cmd_status(struct imap_session *s, struct imap_args *a)
{
    char name[IMAP_NAME_MAX + 1];
    struct imap_mref ref;
    unsigned items = 0;
    bool invalid = false;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, name, sizeof(name)), &invalid)) != IMAP_ARG_OK ||
        (r = imap_args_sp(a)) != IMAP_ARG_OK) {
        imap_bad_arg(s, r, "STATUS mailbox (items)");
        return;
    }
    if ((r = imap_status_items(a, s->rev2, &items)) != IMAP_ARG_OK || !imap_args_at_end(a)) {
        if (r == IMAP_ARG_DEEP)
            imap_bad_arg(s, r, "STATUS mailbox (items)");
        else
            imap_bad(s, "Usage: STATUS mailbox (items), items among MESSAGES RECENT UIDNEXT "
                        "UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE DELETED DELETED-STORAGE "
                        "APPENDLIMIT MAILBOXID");
        return;
    }
    if (invalid) {
        imap_no_name(s, "STATUS", true);
        return;
    }
    /* another account's mailbox: known with any right, read with r */
    if (imap_ns_resolve(s, name, &ref) != 0 || (ref.shared && !imap_ns_visible(&ref))) {
        imap_finish_storage_err(s, STORAGE_E_NOMBOX, "STATUS");
        return;
    }
    if (ref.shared && !(ref.rights & ACL_READ)) {
        imap_finish(s, "NO", "[NOPERM] STATUS: permission denied.");
        return;
    }
    if (!imap_storage(s))
        return;
    struct status_job *sj = calloc(1, sizeof(*sj));
    if (!sj) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    memcpy(sj->name, ref.name, sizeof(sj->name));
    imap_status_prepare(s, items, &sj->st);
    sj->st.viewer = imap_seen_viewer(s, &ref);
    if (ref.shared) {
        sj->shared = true;
        imap_ns_name(&ref, sj->shown, sizeof(sj->shown));
    }
    imap_shared_job(s, &ref, &sj->j, status_work, status_done);
}
