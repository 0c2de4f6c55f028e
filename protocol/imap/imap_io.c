/* What every part of an IMAP session writes and waits with: the batched
 * output (one buffer for the loop thread, flushed at the end of every event
 * or when large), the untagged and tagged replies that do not end a
 * command, the capability list, the running command's continuation and
 * what the session waits on, and the thread-pool jobs. Below the session
 * core and the commands; it calls neither. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap_private.h"
#include "protocol/job.h"
#include "server/base/config.h"

/* ---- output: one buffer for the loop thread, flushed per event ---- */

static struct buf obuf;
static struct imap_session *obuf_owner;

void imap_flush(struct imap_session *s)
{
    if (obuf_owner != s || obuf.len == 0)
        return;
    conn_write(s->c, obuf.p, obuf.len);
    buf_reset(&obuf);
    obuf_owner = NULL;
    if (obuf.cap > 256 * 1024)
        buf_free(&obuf); /* do not keep a large buffer around */
}

struct buf *imap_outbuf(struct imap_session *s)
{
    if (obuf_owner && obuf_owner != s)
        imap_flush(obuf_owner);
    obuf_owner = s;
    return &obuf;
}

struct buf *imap_write_set(struct imap_session *s, struct buf *b, const uint32_t *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = i + 1;
        while (k < n && v[k] == v[k - 1] + 1)
            k++;
        imap_buf_uids(b, v + i, k - i);
        if (k < n)
            buf_addc(b, ',');
        i = k;
        if (b->len >= 64 * 1024) {
            imap_flush(s);
            b = imap_outbuf(s);
        }
    }
    return b;
}

void imap_out(struct imap_session *s, const void *p, size_t len)
{
    struct buf *b = imap_outbuf(s);
    buf_add(b, p, len);
    if (b->len >= 64 * 1024)
        imap_flush(s);
}

void imap_printf(struct imap_session *s, const char *fmt, ...)
{
    va_list ap;
    struct buf *b = imap_outbuf(s);
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (b->len >= 64 * 1024)
        imap_flush(s);
}

void imap_close(struct imap_session *s)
{
    imap_flush(s);
    s->state = IMAP_LOGOUT;
    conn_close(s->c);
}

void imap_out_discard(struct imap_session *s)
{
    if (obuf_owner == s) {
        buf_reset(&obuf);
        obuf_owner = NULL;
    }
}

size_t imap_out_pending(struct imap_session *s)
{
    return conn_write_queued(s->c) + (obuf_owner == s ? obuf.len : 0);
}

/* ---- replies ---- */

static void too_many_errors(struct imap_session *s)
{
    imap_printf(s, "* BYE Too many invalid commands.\r\n");
    imap_close(s);
}

void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    imap_printf(s, "%s %s %s\r\n", s->tag, status, text);
    imap_metrics_done(s, status);
}

void imap_metrics_done(struct imap_session *s, const char *status)
{
    metrics_imap_command(s->metrics_cmd, status, s->metrics_t0);
    s->metrics_t0 = 0;
}

void imap_bad(struct imap_session *s, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    imap_printf(s, "%s BAD %s\r\n", s->tag[0] ? s->tag : "*", text);
    imap_metrics_done(s, "BAD");
    if (++s->bad_count >= conn_conf(s->c)->max_bad_commands)
        too_many_errors(s);
}

/* What the server offers; AUTH= and STARTTLS depend on the connection,
 * LITERAL+ or LITERAL- on imap_literal_plus (RFC 7888 section 5: a server
 * does not advertise both). */
#define CAPS_COMMON(lit)                                                                           \
    "IMAP4rev1 IMAP4rev2 " lit                                                                     \
    "SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MULTIAPPEND CATENATE URL-PARTIAL "                   \
    "MOVE UNSELECT BINARY COMPRESS=DEFLATE "                                                       \
    "CHILDREN ESEARCH SEARCHRES WITHIN "                                                           \
    "SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED XLIST SORT SORT=DISPLAY ESORT PARTIAL "          \
    "CONTEXT=SEARCH CONTEXT=SORT CONDSTORE QRESYNC NOTIFY "                                        \
    "QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE LIST-STATUS ACL RIGHTS=texk "           \
    "THREAD=ORDEREDSUBJECT THREAD=REFERENCES THREAD=REFS I18NLEVEL=1 UTF8=ACCEPT"                  \
    " SAVEDATE UNAUTHENTICATE OBJECTID PREVIEW REPLACE UIDONLY"
#define CAPS_STATES(lit)                                                                           \
    {                                                                                              \
        CAPS_COMMON(lit), CAPS_COMMON(lit) " AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256",            \
            CAPS_COMMON(lit) " STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256",                 \
            CAPS_COMMON(lit) " STARTTLS LOGINDISABLED"                                             \
    }

/* APPENDLIMIT (RFC 7889) is max_message_size, added to the list here:
 * the answer is written at once, on the loop thread. */
const char *imap_capabilities(struct imap_session *s)
{
    static const char *const caps[2][4] = {CAPS_STATES("LITERAL- "), CAPS_STATES("LITERAL+ ")};
    static char line[sizeof(CAPS_COMMON("LITERAL- ")) + 128];
    const struct conf *cf = conn_conf(s->c);
    const char *const *c = caps[cf->imap_literal_plus ? 1 : 0];
    const char *base;

    if (s->state != IMAP_NOTAUTH)
        base = c[0];
    else if (conn_is_tls(s->c))
        base = c[1];
    else if (conn_plaintext_auth_ok(s->c))
        base = c[2];
    else
        base = c[3];
    /* SCRAM-SHA-256-PLUS where a channel binding works: over TLS */
    snprintf(line, sizeof(line), "%s%s%s APPENDLIMIT=%llu", base,
             base == c[1] && proto_sasl_plus_ok(proto_sasl_conn_cb, s->c)
                 ? " AUTH=SCRAM-SHA-256-PLUS"
                 : "",
             s->state == IMAP_NOTAUTH && conn_client_cert_valid(s->c) ? " AUTH=EXTERNAL" : "",
             (unsigned long long)cf->max_message_size);
    return line;
}

/* BAD for an argument the parser refused (r): the mailbox name, the
 * nesting, or else the usage. */
void imap_bad_arg(struct imap_session *s, int r, const char *usage)
{
    if (r == IMAP_ARG_BADNAME)
        imap_bad(s, "Invalid mailbox name (%s).", s->utf8 ? "UTF-8" : "modified UTF-7");
    else if (r == IMAP_ARG_DEEP)
        imap_bad(s, "Too deeply nested.");
    else
        imap_bad(s, "Usage: %s", usage);
}

/* ---- the running command ---- */

void imap_cont_start(struct imap_session *s, const struct imap_cont *cont, void *data)
{
    s->cont = cont;
    s->cont_data = data;
    s->input = IMAP_IN_CONT;
}

void imap_cont_end(struct imap_session *s)
{
    s->cont = NULL;
    s->cont_data = NULL;
    s->input = IMAP_IN_COMMAND;
}

void imap_wait(struct imap_session *s, enum imap_wait w)
{
    s->wait = w;
    if (w != IMAP_WAIT_NONE)
        conn_pause(s->c);
}

/* The session reads input now (a running command without input of its
 * own holds it). */
/* ---- jobs ---- */

static void job_work(void *data)
{
    struct imap_job *j = data;
    j->work(j);
}

static void job_done(void *data)
{
    struct imap_job *j = data;
    struct imap_session *s = j->s;
    if (!s)
        return;
    s->job = NULL;
    s->wait = IMAP_WAIT_NONE;
    j->done(s, j);
    imap_flush(s);
}

static void job_free(void *data)
{
    struct imap_job *j = data;
    struct mailuser *mu = j->release, *hold = j->hold;
    /* the free function may still use the store (j->u): released after */
    if (j->free_fn)
        j->free_fn(j);
    else
        free(j);
    if (mu)
        mailuser_release(mu);
    if (hold)
        mailuser_release(hold);
}

struct mailuser *imap_job_take_store(struct imap_job *j)
{
    struct mailuser *mu = j->hold;
    j->hold = NULL;
    return mu;
}

static int job_start(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                     imap_job_done *done, bool wait)
{
    /* the session's own store, or another account's (counted in that
     * account's queue, held by the job until it ends) */
    struct mailuser *mu = j->store ? j->store : s->mu;
    j->s = s;
    j->u = mu ? mailuser_storage(mu) : NULL;
    j->work = work;
    j->done = done;
    j->release = NULL;
    j->hold = NULL;
    if (mu && mu != s->mu) {
        mailuser_hold(mu);
        j->hold = mu;
    }
    if (!j->u || !conn_loop(s->c)) {
        job_free(j);
        return -1;
    }
    j->pj = proto_job_start(conn_loop(s->c), mailuser_id(mu), job_work, job_done, job_free, j);
    if (!j->pj) {
        job_free(j);
        return -1;
    }
    s->job = j;
    if (wait)
        imap_wait(s, IMAP_WAIT_JOB);
    return 0;
}

int imap_job_start(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                   imap_job_done *done)
{
    return job_start(s, j, work, done, true);
}

int imap_job_start_reading(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                           imap_job_done *done)
{
    return job_start(s, j, work, done, false);
}

void imap_stall(struct imap_session *s)
{
    if (s->wait != IMAP_WAIT_OUTPUT) {
        s->wait = IMAP_WAIT_OUTPUT;
        conn_set_timeout(s->c, conn_conf(s->c)->imap_output_timeout_ms);
    }
}
