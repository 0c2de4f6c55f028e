/* The audit line of each LMTP recipient, and what it takes from the
 * message on the way in: the queue id Postfix wrote into the topmost
 * Received header and the Message-ID, found by a scanner that sees each
 * header byte once, keeps at most one header of LMTP_HDR_LINE bytes and
 * stops at the end of the header (or LMTP_HDR_SCAN bytes). */
#include <ctype.h>
#include <string.h>
#include <uv.h>

#include "protocol/lmtp/lmtp_int.h"
#include "server/base/config.h"
#include "server/base/log.h"

enum { H_LINE_START, H_IN_LINE, H_CR_AT_START };

static bool name_is(const char *h, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && h[n] == ':' && !strncasecmp(h, name, n);
}

/* "by host (Postfix) with ESMTP id 4Q2x1y3zKQz9t for <...>; date": the id
 * after Postfix's mark ("Postfix, from userid N) id ..." for local mail). */
static void parse_received(struct lmtp_hdrscan *h, const char *v, size_t len)
{
    const char *mark = memmem(v, len, "(Postfix", 8);
    if (!mark)
        return;
    for (const char *p = mark; p + 4 <= v + len; p++) {
        if (strncasecmp(p, " id ", 4))
            continue;
        p += 4;
        size_t n = 0;
        while (p + n < v + len && n < LMTP_QUEUE_ID_MAX && isalnum((unsigned char)p[n]))
            n++;
        memcpy(h->queue_id, p, n);
        h->queue_id[n] = '\0';
        return;
    }
}

static void header_done(struct lmtp_hdrscan *h)
{
    const char *v;
    size_t len = h->cur_len;

    h->cur[len] = '\0';
    if (!len)
        return;
    if (!h->got_received && name_is(h->cur, len, "Received")) {
        h->got_received = true;
        parse_received(h, h->cur, len);
    } else if (!h->got_msgid && name_is(h->cur, len, "Message-ID")) {
        h->got_msgid = true;
        v = h->cur + 11;
        while (*v == ' ' || *v == '\t')
            v++;
        len = strlen(v);
        while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        if (len > LMTP_MSGID_MAX)
            len = LMTP_MSGID_MAX;
        memcpy(h->msgid, v, len);
        h->msgid[len] = '\0';
    }
    h->cur_len = 0;
}

static void cur_add(struct lmtp_hdrscan *h, char c)
{
    if (h->cur_len < sizeof(h->cur) - 1)
        h->cur[h->cur_len++] = c;
}

void lmtp_hdrscan_feed(struct lmtp_hdrscan *h, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !h->done; i++) {
        char c = p[i];
        if (++h->seen > LMTP_HDR_SCAN) {
            h->done = true;
            break;
        }
        switch (h->state) {
        case H_CR_AT_START:
            if (c == '\n') {
                header_done(h);
                h->done = true;
                break;
            }
            /* a lone CR at a line's start: part of a new line */
            header_done(h);
            h->state = H_IN_LINE;
            cur_add(h, c);
            break;
        case H_LINE_START:
            if (c == ' ' || c == '\t') {
                cur_add(h, ' '); /* unfolded */
                h->state = H_IN_LINE;
            } else if (c == '\r') {
                h->state = H_CR_AT_START;
            } else if (c == '\n') {
                header_done(h);
                h->done = true;
            } else {
                header_done(h);
                cur_add(h, c);
                h->state = H_IN_LINE;
            }
            break;
        default:
            if (c == '\n')
                h->state = H_LINE_START;
            else if (c != '\r')
                cur_add(h, c);
            break;
        }
    }
}

static void common(struct log_rec *r, struct lmtp_session *s, const char *from)
{
    log_rec_str(r, "proto", "lmtp");
    log_rec_num(r, "conn", conn_info(s->c)->id);
    log_rec_str(r, "remote", conn_info(s->c)->remote);
    log_rec_str(r, "from", from);
}

void lmtp_audit_rcpt(struct lmtp_session *s, const struct lmtp_txn *t, const struct lmtp_rcpt *r,
                     const char *code)
{
    struct log_rec rec;

    log_rec_begin(&rec, "delivery");
    common(&rec, s, t->from);
    log_rec_str(&rec, "queue_id", t->hs.queue_id);
    log_rec_str(&rec, "message_id", t->hs.msgid);
    log_rec_str(&rec, "rcpt", r->addr);
    log_rec_num(&rec, "size", t->body_size);
    if (r->result == 0 && r->shared_owner[0]) {
        /* as the recipient names it: in the shared namespace */
        char name[sizeof(((struct conf *)0)->shared_prefix) + AUTH_ADDR_MAX +
                  STORAGE_MBOX_NAME_MAX + 2];
        snprintf(name, sizeof(name), "%s%s/%s", conn_conf(s->c)->shared_prefix, r->shared_owner,
                 r->folder);
        log_rec_str(&rec, "folder", name);
        if (r->uid) /* 0: in the delivery journal, its UID not given yet */
            log_rec_num(&rec, "uid", r->uid);
    } else if (r->result == 0) {
        log_rec_str(&rec, "folder", r->folder);
        if (r->uid)
            log_rec_num(&rec, "uid", r->uid);
    }
    log_rec_str(&rec, "result",
                code[0] == '2'   ? "delivered"
                : code[0] == '4' ? "deferred"
                                 : "rejected");
    log_rec_str(&rec, "code", code);
    log_rec_ms(&rec, "duration_ms", uv_hrtime() - t->t0);
    log_rec_emit(&rec);
}

void lmtp_audit_refused(struct lmtp_session *s, const char *addr, const char *code)
{
    struct log_rec rec;

    log_rec_begin(&rec, "delivery");
    common(&rec, s, s->txn ? s->txn->from : "");
    log_rec_str(&rec, "rcpt", addr);
    log_rec_str(&rec, "result", code[0] == '4' ? "deferred" : "rejected");
    log_rec_str(&rec, "code", code);
    log_rec_str(&rec, "stage", "rcpt");
    if (s->txn)
        log_rec_ms(&rec, "duration_ms", uv_hrtime() - s->txn->t0);
    log_rec_emit(&rec);
}
