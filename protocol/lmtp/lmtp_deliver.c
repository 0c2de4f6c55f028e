/* LMTP message bodies and delivery: DATA (dot-unstuffing) and BDAT
 * (CHUNKING) streamed in LMTP_CHUNK pieces into storage drafts on the thread
 * pool, input held while a piece is written, so a message is never held in
 * memory whatever its size; then one storage_deliver per recipient and the
 * per-recipient replies in RCPT order (RFC 2033 4.2).
 *
 * Each message file starts with Return-Path: and Delivered-To: (the RCPT
 * address). Recipients given the same address share one draft, hard-linked
 * into each store; recipients with different addresses get one draft each,
 * all written from the same chunks as they arrive (the body crosses the
 * socket and memory once). A 250 is sent only after storage_deliver
 * returned 0: file and directory fsync'd, index committed.
 *
 * Each draft is capped at its account's quota room: the chunk that would
 * pass it is not written, the draft is dropped at once and that recipient
 * gets the over-quota answer at the end, the others their delivery. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/lmtp/lmtp.h"
#include "protocol/lmtp/lmtp_int.h"
#include "server/base/config.h"
#include "server/base/log.h"
#include "server/base/metrics.h"

/* Every transaction until it is freed: lmtp_release_account looks for an
 * account's. Loop thread. */
static struct lmtp_txn *all_txns;

struct lmtp_txn *lmtp_txn_new(uv_loop_t *loop, uint64_t max_size, bool detail_mailbox)
{
    struct lmtp_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->all_next = all_txns;
    if (all_txns)
        all_txns->all_prev = t;
    all_txns = t;
    t->loop = loop;
    t->max_size = max_size;
    t->detail_mailbox = detail_mailbox;
    t->t0 = uv_hrtime();
    return t;
}

/* Pool: removes the drafts' tmp/ files, then closes the light
 * recipients' handles. */
static void drafts_free(struct lmtp_txn *t)
{
    for (size_t i = 0; i < t->n_rcpts; i++) {
        if (t->rcpts[i].d) {
            storage_draft_free(t->rcpts[i].d);
            t->rcpts[i].d = NULL;
        }
    }
    for (size_t i = 0; i < t->n_rcpts; i++) {
        struct lmtp_rcpt *r = &t->rcpts[i];
        if (!r->u)
            continue;
        if (r->full_open)
            storage_close(r->u);
        else
            storage_close_light(r->u);
        r->u = NULL;
    }
}

static void discard_work(void *data)
{
    drafts_free(data);
}

/* Loop: lets the stores go (they linger for the next delivery) and frees. */
static void txn_free(void *data)
{
    struct lmtp_txn *t = data;
    bool light = false;
    for (size_t i = 0; i < t->n_rcpts; i++) {
        if (t->rcpts[i].mu)
            mailuser_release_delivered(t->rcpts[i].mu);
        light = light || t->rcpts[i].light;
    }
    if (light && t->loop)
        mailuser_light_used(t->loop);
    if (t->all_prev)
        t->all_prev->all_next = t->all_next;
    else
        all_txns = t->all_next;
    if (t->all_next)
        t->all_next->all_prev = t->all_prev;
    free(t->rcpts);
    free(t->buf);
    free(t->data_dir);
    free(t);
}

/* The account of every recipient, for the account's queue of jobs; a
 * transaction to several accounts is not counted against any. */
static int64_t txn_account(const struct lmtp_txn *t)
{
    int64_t id = t->n_rcpts ? t->rcpts[0].acct.id : PROTO_JOB_NO_ACCOUNT;

    for (size_t i = 1; i < t->n_rcpts; i++)
        if (t->rcpts[i].acct.id != id)
            return PROTO_JOB_NO_ACCOUNT;
    return id;
}

void lmtp_txn_discard(uv_loop_t *loop, struct lmtp_txn *t)
{
    bool drafts = false;
    for (size_t i = 0; i < t->n_rcpts; i++)
        drafts = drafts || t->rcpts[i].d || t->rcpts[i].u;
    t->loop = loop;
    t->s = NULL; /* the session may go before the discard's job ends */
    if (drafts && proto_job_start(loop, txn_account(t), discard_work, NULL, txn_free, t))
        return;
    if (drafts)
        drafts_free(t); /* no pool: unlink here rather than leave tmp/ files */
    txn_free(t);
}

/* ---- pool work ---- */

/* The handle a recipient delivers through: its held store, or for a light
 * one its leader's handle (the leader has the same address, so the same
 * account, though a session may have opened it between their RCPTs). */
static struct storage_user *rcpt_store(const struct lmtp_txn *t, const struct lmtp_rcpt *r)
{
    const struct lmtp_rcpt *l = &t->rcpts[r->leader];

    if (!r->light)
        return mailuser_storage(r->mu);
    return l->light ? l->u : mailuser_storage(l->mu);
}

/* Opens a light leader's handle: light, or full when the account has no
 * index yet (its first delivery) or a light handle found it of another
 * version (retry). */
static int light_open(struct lmtp_txn *t, struct lmtp_rcpt *r, bool full)
{
    int e = STORAGE_E_NOMBOX;

    if (!full)
        e = storage_open_light(t->data_dir, r->acct.id, &r->u);
    if (e == STORAGE_E_NOMBOX) {
        e = storage_open(t->data_dir, r->acct.id, &r->u);
        r->full_open = e == 0;
    }
    if (e) {
        r->u = NULL;
        return e;
    }
    storage_set_quota(r->u, r->acct.quota_bytes, r->acct.quota_messages);
    return 0;
}

/* Writes to a leader's draft. A recipient over its quota stops there:
 * its draft goes at once and it is answered so at the end; 0 is returned
 * so that the others go on. */
static int rcpt_write(struct lmtp_rcpt *r, const char *p, size_t n)
{
    int e = storage_draft_write(r->d, p, n);
    if (e != STORAGE_E_QUOTA)
        return e;
    log_info("lmtp: account %lld over quota after %llu bytes of the message; its copy is dropped",
             (long long)r->acct.id, (unsigned long long)storage_draft_size(r->d));
    storage_draft_free(r->d);
    r->d = NULL;
    r->over_quota = true;
    return 0;
}

/* One draft per distinct recipient address, in that recipient's store,
 * capped at its quota room (none for a recipient already over it). */
static int drafts_make(struct lmtp_txn *t)
{
    char hdr[2 * LMTP_PATH_MAX + 64];
    for (size_t i = 0; i < t->n_rcpts; i++) {
        struct lmtp_rcpt *r = &t->rcpts[i];
        struct storage_user *u;
        uint64_t room, msgs;
        int n, e;
        if (r->leader != i)
            continue;
        if (r->light && (e = light_open(t, r, false)) != 0)
            return e;
        u = rcpt_store(t, r);
        if ((e = storage_quota_room(u, &room, &msgs)) != 0)
            return e;
        if (msgs == 0) {
            log_info("lmtp: account %lld at its message quota; no copy written",
                     (long long)r->acct.id);
            r->over_quota = true;
            continue;
        }
        if ((e = storage_draft_new(u, 0, &r->d)) != 0)
            return e;
        storage_draft_set_room(r->d, room);
        n = snprintf(hdr, sizeof(hdr), "Return-Path: <%s>\r\nDelivered-To: %s\r\n", t->from,
                     r->addr);
        if (n < 0 || (size_t)n >= sizeof(hdr))
            return STORAGE_E_FAIL;
        if ((e = rcpt_write(r, hdr, (size_t)n)) != 0)
            return e;
    }
    t->drafts_made = true;
    return 0;
}

static int write_chunk(struct lmtp_txn *t)
{
    int e = 0;
    if (!t->drafts_made)
        e = drafts_make(t);
    for (size_t i = 0; !e && t->buf_len && i < t->n_rcpts; i++)
        if (t->rcpts[i].d)
            e = rcpt_write(&t->rcpts[i], t->buf, t->buf_len);
    return e;
}

static void write_work(void *data)
{
    struct lmtp_txn *t = data;
    if (!t->err && !t->too_big) {
        int e = write_chunk(t);
        if (e) {
            log_error("lmtp: writing a message: %s", storage_strerror(e));
            t->err = e;
        }
    }
}

static void deliver_work(void *data)
{
    struct lmtp_txn *t = data;
    int e = 0;

    if (!t->err && !t->too_big) {
        e = write_chunk(t);
        for (size_t i = 0; !e && i < t->n_rcpts; i++)
            if (t->rcpts[i].d)
                e = storage_draft_finish(t->rcpts[i].d);
        if (e) {
            log_error("lmtp: writing a message: %s", storage_strerror(e));
            t->err = e;
        }
    }
    for (size_t i = 0; i < t->n_rcpts; i++) {
        struct lmtp_rcpt *r = &t->rcpts[i];
        struct lmtp_rcpt *leader = &t->rcpts[r->leader];
        const char *mailbox = t->detail_mailbox && r->detail[0] ? r->detail : NULL;
        uint32_t uid = 0;
        int64_t mbox_id;

        if (t->too_big) {
            r->result = STORAGE_E_TOOBIG;
            continue;
        }
        if (t->err) {
            r->result = t->err;
            continue;
        }
        if (t->rcpts[r->leader].over_quota) {
            r->result = STORAGE_E_QUOTA;
            continue;
        }
        /* the detail names a folder, INBOX when there is none of that name */
        r->result =
            storage_deliver_named(rcpt_store(t, r), mailbox, leader->d, &uid, &mbox_id, r->folder);
        if (r->result == STORAGE_E_CORRUPT && r->light && leader->light && !leader->full_open) {
            /* an index a light handle cannot write: the full open repairs it */
            storage_close_light(leader->u);
            leader->u = NULL;
            r->result = light_open(t, leader, true);
            if (r->result == 0)
                r->result =
                    storage_deliver_named(leader->u, mailbox, leader->d, &uid, &mbox_id, r->folder);
        }
        if (r->result)
            log_error("lmtp: delivery to account %lld: %s", (long long)r->acct.id,
                      storage_strerror(r->result));
        else if (uid == 0)
            log_info("lmtp: delivered to account %lld, %llu bytes, into the delivery journal",
                     (long long)r->acct.id, (unsigned long long)t->body_size);
        else
            log_info("lmtp: delivered to account %lld, uid %u, %llu bytes", (long long)r->acct.id,
                     uid, (unsigned long long)t->body_size);
        r->uid = r->result ? 0 : uid;
    }
    drafts_free(t);
}

/* Runs after done (or instead of it when cancelled): a transaction the
 * session let go of (delivered, or the session closed) is freed here. */
static void job_free(void *data)
{
    struct lmtp_txn *t = data;
    if (t->orphan)
        lmtp_txn_discard(t->loop, t);
}

/* ---- loop side ---- */

static void write_done(void *data)
{
    struct lmtp_txn *t = data;
    struct lmtp_session *s = t->s;

    t->buf_len = 0;
    if (t->released) {
        /* its account left while the body came: job_free drops it */
        t->orphan = true;
        s->txn = NULL;
        s->busy = false;
        s->job = NULL;
        s->job_on_txn = false;
        lmtp_reply(s, "421 4.2.1 Mailbox being moved; try again later");
        lmtp_end_session(s);
        return;
    }
    lmtp_resume(s);
}

unsigned lmtp_release_account(int64_t id)
{
    struct lmtp_txn *t, *next;
    unsigned n = 0;

    for (t = all_txns; t; t = next) {
        bool mine = false;

        next = t->all_next;
        for (size_t i = 0; i < t->n_rcpts && !mine; i++)
            mine = t->rcpts[i].acct.id == id;
        if (!mine)
            continue;
        n++;
        if (t->orphan || !t->s || t->released || t->s->txn != t)
            continue; /* delivering or being freed: it ends by itself */
        if (t->s->busy && t->s->job_on_txn) {
            t->released = true; /* write_done ends it; a delivery finishes */
            continue;
        }
        log_info("conn=%llu lmtp: transaction ended: a recipient's mailbox is being moved",
                 (unsigned long long)conn_info(t->s->c)->id);
        lmtp_reply(t->s, "421 4.2.1 Mailbox being moved; try again later");
        lmtp_end_session(t->s); /* frees t (or its discard job does) */
    }
    return n;
}

static void deliver_done(void *data)
{
    struct lmtp_txn *t = data;
    struct lmtp_session *s = t->s;
    bool quota_temp = conn_conf(s->c)->lmtp_quota_temporary;

    for (size_t i = 0; i < t->n_rcpts; i++) {
        const struct lmtp_rcpt *r = &t->rcpts[i];
        const char *code, *text;
        switch (r->result) {
        case 0:
            code = "250 2.0.0";
            text = "Delivered";
            break;
        case STORAGE_E_TOOBIG:
            code = "552 5.3.4";
            text = "Message size exceeds the limit";
            break;
        case STORAGE_E_QUOTA:
            code = quota_temp ? "452 4.2.2" : "552 5.2.2";
            text = "Mailbox full";
            break;
        default:
            code = "451 4.3.0";
            text = "Temporary failure, try again later";
            break;
        }
        conn_printf(s->c, "%s <%s> %s\r\n", code, r->addr, text);
        metrics_lmtp_delivery(code, t->body_size);
        lmtp_audit_rcpt(s, t, r, code);
    }
    /* job_free releases it next (the drafts are gone already) */
    t->orphan = true;
    s->txn = NULL;
    s->phase = LMTP_READY;
    lmtp_resume(s);
}

static void start(struct lmtp_session *s, proto_job_fn work, proto_job_fn done)
{
    struct lmtp_txn *t = s->txn;
    struct proto_job *j;

    t->s = s;
    j = proto_job_start(conn_loop(s->c), txn_account(t), work, done, job_free, t);
    if (!j) {
        /* no pool: the transaction cannot go on; the MTA retries */
        for (size_t i = 0; i < t->n_rcpts; i++)
            conn_printf(s->c, "451 4.3.0 <%s> Temporary failure\r\n", t->rcpts[i].addr);
        lmtp_reply(s, "421 4.3.0 Closing connection");
        lmtp_end_session(s);
        return;
    }
    lmtp_wait(s, j);
    s->job_on_txn = true;
}

static int prepare(struct lmtp_session *s)
{
    struct lmtp_txn *t = s->txn;
    if (!t->buf) {
        t->buf = malloc(LMTP_CHUNK);
        if (!t->buf)
            return -1;
    }
    if (!t->data_started) {
        for (size_t i = 0; i < t->n_rcpts; i++) {
            t->rcpts[i].leader = i;
            for (size_t k = 0; k < i; k++) {
                if (!strcmp(t->rcpts[k].addr, t->rcpts[i].addr)) {
                    t->rcpts[i].leader = k;
                    break;
                }
            }
        }
        t->data_started = true;
    }
    return 0;
}

void lmtp_cmd_data(struct lmtp_session *s, const char *arg, size_t len)
{
    (void)arg;
    if (len) {
        lmtp_bad(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (s->txn->bdat) {
        lmtp_bad(s, "503 5.5.1 DATA after BDAT");
        return;
    }
    if (s->txn->n_rcpts == 0) {
        lmtp_bad(s, "503 5.5.1 No valid recipients");
        return;
    }
    if (prepare(s) < 0) {
        lmtp_reply(s, "451 4.3.0 Out of memory");
        return;
    }
    lmtp_undot_init(&s->undot);
    s->phase = LMTP_DATA;
    lmtp_reply(s, "354 Start mail input; end with <CRLF>.<CRLF>");
}

void lmtp_cmd_bdat(struct lmtp_session *s, const char *arg, size_t len)
{
    uint64_t size;
    bool last;

    if (lmtp_parse_bdat(arg, len, &size, &last) < 0) {
        lmtp_bad(s, "501 5.5.4 Syntax: BDAT size [LAST]");
        return;
    }
    s->bdat_left = size;
    s->bdat_last = last;
    s->bdat_discard = false;
    s->bdat_prev = s->phase;
    if (s->phase != LMTP_MAIL) {
        s->bdat_discard = true;
        s->bdat_reply = s->phase == LMTP_GREETED ? "503 5.5.1 Send LHLO first"
                                                 : "503 5.5.1 Send MAIL and RCPT first";
    } else if (s->txn->n_rcpts == 0) {
        s->bdat_discard = true;
        s->bdat_reply = "503 5.5.1 No valid recipients";
    } else if (prepare(s) < 0) {
        s->bdat_discard = true;
        s->bdat_reply = "451 4.3.0 Out of memory";
    } else {
        s->txn->bdat = true;
    }
    s->phase = LMTP_BDAT;
}

/* Adds decoded body bytes, or drops them once the message is refused. */
static void add(struct lmtp_txn *t, const char *p, size_t n)
{
    if (!t->hs.done)
        lmtp_hdrscan_feed(&t->hs, p, n);
    if (t->too_big || t->err)
        return;
    if (n > t->max_size - t->body_size) {
        t->too_big = true;
        return;
    }
    memcpy(t->buf + t->buf_len, p, n);
    t->buf_len += n;
    t->body_size += n;
}

static bool data_input(struct lmtp_session *s)
{
    struct lmtp_txn *t = s->txn;
    char out[4096 + 1];
    size_t room = LMTP_CHUNK - t->buf_len, avail = linebuf_pending(&s->in), want, used, olen;
    const char *p;

    if (room <= sizeof(out)) {
        start(s, write_work, write_done);
        return false;
    }
    if (avail == 0)
        return false;
    /* peek, decode, then consume exactly what the decoder used: what follows
     * the final dot is the next pipelined command */
    want = avail < sizeof(out) - 1 ? avail : sizeof(out) - 1;
    p = s->in.p + s->in.off;
    lmtp_undot(&s->undot, p, want, out, &used, &olen);
    linebuf_take(&s->in, used, &p);
    add(t, out, olen);
    if (s->undot.done) {
        s->phase = LMTP_MAIL;
        start(s, deliver_work, deliver_done);
        return false;
    }
    return true;
}

static bool bdat_input(struct lmtp_session *s)
{
    struct lmtp_txn *t = s->txn;
    const char *p;
    size_t n;

    if (s->bdat_left == 0) {
        if (s->bdat_discard) {
            s->phase = s->bdat_prev;
            lmtp_bad(s, s->bdat_reply);
            return true;
        }
        s->phase = LMTP_MAIL;
        if (s->bdat_last) {
            start(s, deliver_work, deliver_done);
            return false;
        }
        conn_printf(s->c, "250 2.0.0 %llu octets received\r\n", (unsigned long long)t->body_size);
        return true;
    }
    if (!s->bdat_discard && t->buf_len == LMTP_CHUNK) {
        start(s, write_work, write_done);
        return false;
    }
    n = s->bdat_discard ? SIZE_MAX : LMTP_CHUNK - t->buf_len;
    if (n > s->bdat_left)
        n = (size_t)s->bdat_left;
    n = linebuf_take(&s->in, n, &p);
    if (n == 0)
        return false;
    s->bdat_left -= n;
    if (!s->bdat_discard)
        add(t, p, n);
    return true;
}

bool lmtp_body_input(struct lmtp_session *s)
{
    return s->phase == LMTP_DATA ? data_input(s) : bdat_input(s);
}
