/* QUOTA (RFC 9208): GETQUOTA and GETQUOTAROOT. An account has one quota
 * root, "User quota" (the name Dovecot gives its default root, so that a
 * client moved from it shows the same), holding every mailbox of the
 * account, with the resources the administrator limited: STORAGE (in
 * units of 1024 octets, the usage rounded up as Dovecot does, the limit
 * down) and MESSAGE; an account without limits has no
 * root. Limits are set with `coffrectl user quota`: SETQUOTA is refused. */
#include <stdlib.h>
#include <string.h>

#include "protocol/imap/imap_private.h"

#define QUOTA_ROOT "User quota"

struct quota_job {
    struct imap_job j;
    char name[STORAGE_MBOX_NAME_MAX + 1]; /* GETQUOTAROOT's mailbox, "" for GETQUOTA */
    int err;
    uint64_t max_bytes, max_messages, bytes, messages;
};

static void quota_work(struct imap_job *j)
{
    struct quota_job *q = (struct quota_job *)j;
    struct storage_mbox m;

    if (q->name[0] && (q->err = storage_mbox_get(j->u, q->name, &m)) != 0)
        return;
    storage_quota_limits(j->u, &q->max_bytes, &q->max_messages);
    if (q->max_bytes || q->max_messages)
        q->err = storage_quota_usage(j->u, &q->bytes, &q->messages);
}

/* "* QUOTA root (...)" with the resources that have a limit. */
static void quota_line(struct imap_session *s, const struct quota_job *q)
{
    struct buf *b = imap_outbuf(s);

    buf_str(b, "* QUOTA \"" QUOTA_ROOT "\" (");
    if (q->max_bytes)
        buf_printf(b, "STORAGE %llu %llu", (unsigned long long)((q->bytes + 1023) / 1024),
                   (unsigned long long)(q->max_bytes / 1024));
    if (q->max_messages)
        buf_printf(b, "%sMESSAGE %llu %llu", q->max_bytes ? " " : "",
                   (unsigned long long)q->messages, (unsigned long long)q->max_messages);
    buf_str(b, ")\r\n");
}

static void getquotaroot_done(struct imap_session *s, struct imap_job *j)
{
    struct quota_job *q = (struct quota_job *)j;
    struct buf *b = imap_outbuf(s);

    if (q->err) {
        imap_finish_storage_err(s, q->err, "GETQUOTAROOT");
        return;
    }
    buf_str(b, "* QUOTAROOT ");
    imap_buf_mbox(b, q->name, s->utf8);
    if (q->max_bytes || q->max_messages) {
        buf_str(b, " \"" QUOTA_ROOT "\"\r\n");
        quota_line(s, q);
    } else {
        buf_str(b, "\r\n");
    }
    imap_finish(s, "OK", "GETQUOTAROOT completed.");
}

static void getquota_done(struct imap_session *s, struct imap_job *j)
{
    struct quota_job *q = (struct quota_job *)j;

    if (q->err) {
        imap_finish_storage_err(s, q->err, "GETQUOTA");
        return;
    }
    if (!q->max_bytes && !q->max_messages) {
        imap_finish(s, "NO", "No such quota root (the account has no quota).");
        return;
    }
    quota_line(s, q);
    imap_finish(s, "OK", "GETQUOTA completed.");
}

static void quota_start(struct imap_session *s, const char *name, imap_job_done *done)
{
    struct quota_job *q;

    if (!imap_storage(s))
        return;
    if (!(q = calloc(1, sizeof(*q)))) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    snprintf(q->name, sizeof(q->name), "%s", name);
    imap_cmd_job(s, &q->j, quota_work, done);
}

/* The quota root argument: "User quota" (astring) is the only one. */
static int quota_root(struct imap_args *a, bool *known)
{
    char root[1024];
    size_t n;
    int r = imap_args_astring(a, root, sizeof(root), &n);

    *known = r == IMAP_ARG_OK && !strcmp(root, QUOTA_ROOT);
    return r;
}

void imap_cmd_getquota(struct imap_session *s, struct imap_args *a)
{
    bool known = false;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK || (r = quota_root(a, &known)) != IMAP_ARG_OK ||
        !imap_args_at_end(a)) {
        imap_bad_arg(s, r, "GETQUOTA quota-root");
        return;
    }
    if (!known) {
        imap_finish(s, "NO", "No such quota root.");
        return;
    }
    quota_start(s, "", getquota_done);
}

void imap_cmd_getquotaroot(struct imap_session *s, struct imap_args *a)
{
    char name[STORAGE_MBOX_NAME_MAX + 1];
    bool invalid = false;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_name_lax(imap_args_mailbox(a, name, sizeof(name)), &invalid)) != IMAP_ARG_OK ||
        !imap_args_at_end(a)) {
        imap_bad_arg(s, r, "GETQUOTAROOT mailbox");
        return;
    }
    if (invalid) {
        imap_no_name(s, "GETQUOTAROOT", true);
        return;
    }
    quota_start(s, name, getquotaroot_done);
}

/* SETQUOTA root (resource limit ...): parsed, then refused; the limits
 * are the administrator's (RFC 9208 4.1.3 lets a server refuse). */
void imap_cmd_setquota(struct imap_session *s, struct imap_args *a)
{
    bool known = false, first = true;
    int r;

    if ((r = imap_args_sp(a)) != IMAP_ARG_OK || (r = quota_root(a, &known)) != IMAP_ARG_OK ||
        (r = imap_args_sp(a)) != IMAP_ARG_OK || (r = imap_args_open(a)) != IMAP_ARG_OK)
        goto bad;
    while (!imap_args_peek(a, ')')) {
        const char *w;
        size_t n;
        if ((!first && (r = imap_args_sp(a)) != IMAP_ARG_OK) ||
            (r = imap_args_atom(a, &w, &n)) != IMAP_ARG_OK ||
            (r = imap_args_sp(a)) != IMAP_ARG_OK || (r = imap_args_atom(a, &w, &n)) != IMAP_ARG_OK)
            goto bad;
        for (size_t i = 0; i < n; i++)
            if (w[i] < '0' || w[i] > '9') {
                r = IMAP_ARG_BAD;
                goto bad;
            }
        first = false;
    }
    if ((r = imap_args_close(a)) != IMAP_ARG_OK || !imap_args_at_end(a))
        goto bad;
    imap_finish(s, "NO", "[NOPERM] Quotas are set by the administrator.");
    return;
bad:
    imap_bad_arg(s, r, "SETQUOTA quota-root (resource limit ...)");
}
