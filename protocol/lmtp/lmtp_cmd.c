/* LMTP commands around the message: LHLO, MAIL FROM, RCPT TO (account
 * lookup and store opening on the thread pool), RSET, VRFY. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/acl.h"
#include "protocol/lmtp/lmtp_int.h"
#include "protocol/slot.h"
#include "server/base/config.h"
#include "server/base/log.h"
#include "server/base/metrics.h"

void lmtp_end_txn(struct lmtp_session *s)
{
    if (s->txn) {
        lmtp_txn_discard(conn_loop(s->c), s->txn);
        s->txn = NULL;
    }
    if (s->phase == LMTP_MAIL || s->phase == LMTP_DATA || s->phase == LMTP_BDAT)
        s->phase = LMTP_READY;
}

void lmtp_cmd_lhlo(struct lmtp_session *s, const char *arg, size_t len)
{
    const struct conf *conf = conn_conf(s->c);
    (void)arg;
    (void)len;
    lmtp_end_txn(s); /* LHLO resets like RSET (RFC 5321 4.1.4) */
    s->phase = LMTP_READY;
    conn_printf(s->c,
                "250-%s\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                "250-SIZE %llu\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
                conn_hostname(s->c), (unsigned long long)conf->max_message_size);
}

static const char *parse_error(int r, bool rcpt)
{
    switch (r) {
    case LMTP_PARSE_UNKNOWN:
        return "555 5.5.4 Unsupported parameter";
    case LMTP_PARSE_BADVALUE:
        return "501 5.5.4 Invalid parameter value";
    default:
        return rcpt ? "501 5.1.3 Syntax: RCPT TO:<address>"
                    : "501 5.1.7 Syntax: MAIL FROM:<address>";
    }
}

void lmtp_cmd_mail(struct lmtp_session *s, const char *arg, size_t len)
{
    const struct conf *conf = conn_conf(s->c);
    struct lmtp_params p;
    char path[LMTP_PATH_MAX + 1];
    size_t plen;
    int r = lmtp_parse_path(arg, len, "FROM:", true, path, sizeof(path), &plen, &p);

    if (r != LMTP_PARSE_OK) {
        lmtp_bad(s, parse_error(r, false));
        return;
    }
    if (p.has_size && p.size > conf->max_message_size) {
        lmtp_reply(s, "552 5.3.4 Message size exceeds the limit");
        return;
    }
    s->txn =
        lmtp_txn_new(conn_loop(s->c), conf->max_message_size, conf->lmtp_save_to_detail_mailbox);
    if (!s->txn) {
        lmtp_reply(s, "451 4.3.0 Out of memory");
        return;
    }
    s->txn->s = s;
    memcpy(s->txn->from, path, plen + 1);
    s->txn->from_len = plen;
    s->phase = LMTP_MAIL;
    lmtp_reply(s, "250 2.1.0 Sender OK");
}

/* ---- RCPT ---- */

struct rcpt_job {
    struct lmtp_session *s; /* for done only */
    struct auth_service *svc;
    char base[LMTP_PATH_MAX + 1]; /* without the detail */
    char full[LMTP_PATH_MAX + 1];
    bool has_detail;
    bool used_full; /* found under the address with its detail */
    char *data_dir;
    bool has_index; /* the account's store was created already */
    int rc;
    struct auth_account acct;
    /* a detail in the shared namespace: "<prefix><local>/<folder>" names
     * the folder of <local>@<the recipient's domain> */
    struct acl_snap *acl; /* a reference, taken on the loop */
    char owner_addr[AUTH_ADDR_MAX];
    char folder[STORAGE_MBOX_NAME_MAX + 1];
    bool shared; /* the owner's folder takes it (ACL_POST, the folder exists) */
    struct auth_account owner;
    bool owner_index;
    uint64_t t0; /* uv_now at the start of the lookup */
};

/* Whether detail names another account's folder through the shared
 * namespace; owner_addr and folder then say which. */
static bool shared_detail(const char *prefix, const char *detail, const char *base,
                          const char *default_domain, char *owner_addr, char *folder)
{
    size_t plen = strlen(prefix);
    const char *rest, *slash, *domain = strchr(base, '@');
    char local[AUTH_ADDR_MAX];

    if (!plen || strncmp(detail, prefix, plen) != 0 || !domain)
        return false;
    rest = detail + plen;
    slash = strchr(rest, '/');
    if (!slash || slash == rest || !slash[1] || strlen(slash + 1) > STORAGE_MBOX_NAME_MAX ||
        (size_t)(slash - rest) + strlen(domain) >= sizeof(local))
        return false;
    size_t ll = (size_t)(slash - rest), dl = strlen(domain);
    memcpy(local, rest, ll);
    memcpy(local + ll, domain, dl + 1);
    if (auth_normalize_address(local, strlen(local), default_domain, owner_addr, AUTH_ADDR_MAX) !=
        AUTH_OK)
        return false;
    snprintf(folder, STORAGE_MBOX_NAME_MAX + 1, "%s", slash + 1);
    return true;
}

/* The owner's folder takes the message when the recipient may post to it
 * (ACL_POST) and it exists; otherwise it goes where a detail naming no
 * folder of the recipient's goes. The sender is told the same either way. */
static void shared_work(struct rcpt_job *j)
{
    struct storage_user *u;
    struct storage_mbox mb;

    j->shared = false;
    if (auth_service_lookup(j->svc, j->owner_addr, strlen(j->owner_addr), &j->owner) != AUTH_OK ||
        j->owner.disabled ||
        !(acl_snap_rights(j->acl, j->owner.id, j->folder, j->acct.id, j->acct.address) & ACL_POST))
        return;
    if (!(j->owner_index = storage_has_index(j->data_dir, j->owner.id)))
        return; /* no store: no folder */
    /* a store open for sessions is shared; otherwise this opens it as the
     * first delivery to an account does */
    if (storage_open(j->data_dir, j->owner.id, &u) != 0)
        return;
    j->shared = storage_mbox_get(u, j->folder, &mb) == 0;
    storage_close(u);
}

static void rcpt_work(void *data)
{
    struct rcpt_job *j = data;
    j->rc = auth_service_lookup(j->svc, j->base, strlen(j->base), &j->acct);
    /* an account whose name really contains the delimiter */
    if (j->rc == AUTH_E_NOUSER && j->has_detail &&
        auth_service_lookup(j->svc, j->full, strlen(j->full), &j->acct) == AUTH_OK) {
        j->rc = AUTH_OK;
        j->used_full = true;
    }
    if (j->rc == AUTH_OK && !j->used_full && j->owner_addr[0] && !j->acct.disabled)
        shared_work(j);
    if (j->rc == AUTH_OK)
        j->has_index = storage_has_index(j->data_dir, j->acct.id);
}

static void rcpt_free(void *data)
{
    struct rcpt_job *j = data;
    acl_snap_unref(j->acl);
    free(j->data_dir);
    free(j);
}

static void rcpt_answer(struct lmtp_session *s, const char *code, const char *text)
{
    conn_printf(s->c, "%s <%s> %s\r\n", code, s->rcpt_addr, text);
    metrics_lmtp_rcpt(code);
    if (code[0] != '2')
        lmtp_audit_refused(s, s->rcpt_addr, code);
}

/* Adds the recipient looked up to the transaction: with its store held
 * (mu), or light (mu NULL). */
static void rcpt_add(struct lmtp_session *s, struct mailuser *mu)
{
    struct lmtp_txn *t = s->txn;

    if (!mu && !t->data_dir && !(t->data_dir = strdup(conn_conf(s->c)->data_dir))) {
        rcpt_answer(s, "451 4.3.0", "Out of memory");
        lmtp_resume(s);
        return;
    }
    if (t->n_rcpts == t->cap_rcpts) {
        size_t cap = t->cap_rcpts ? t->cap_rcpts * 2 : 4;
        struct lmtp_rcpt *n = realloc(t->rcpts, cap * sizeof(*n));
        if (!n) {
            if (mu)
                mailuser_release_delivered(mu);
            rcpt_answer(s, "451 4.3.0", "Out of memory");
            lmtp_resume(s);
            return;
        }
        t->rcpts = n;
        t->cap_rcpts = cap;
    }
    struct lmtp_rcpt *r = &t->rcpts[t->n_rcpts++];
    memset(r, 0, sizeof(*r));
    r->acct = s->rcpt_acct;
    memcpy(r->addr, s->rcpt_addr, sizeof(r->addr));
    memcpy(r->detail, s->rcpt_detail, sizeof(r->detail));
    memcpy(r->shared_owner, s->rcpt_shared_owner, sizeof(r->shared_owner));
    r->mu = mu;
    r->light = !mu;
    rcpt_answer(s, "250 2.1.5", "OK");
    lmtp_resume(s);
}

static void on_store_open(void *arg, int err, struct mailuser *mu)
{
    struct lmtp_session *s = arg;

    s->req = NULL;
    if (err) {
        rcpt_answer(s, "451 4.3.0", "Mailbox temporarily unavailable");
        lmtp_resume(s);
        return;
    }
    rcpt_add(s, mu);
}

static void rcpt_done(void *data)
{
    struct rcpt_job *j = data;
    struct lmtp_session *s = j->s;

    s->job = NULL;
    switch (j->rc) {
    case AUTH_OK:
        break;
    case AUTH_E_NOUSER:
        rcpt_answer(s, "550 5.1.1", "User unknown");
        lmtp_resume(s);
        return;
    case AUTH_E_BADADDR:
        rcpt_answer(s, "501 5.1.3", "Bad recipient address syntax");
        lmtp_resume(s);
        return;
    default:
        rcpt_answer(s, "451 4.3.0", "Temporary lookup failure");
        lmtp_resume(s);
        return;
    }
    if (j->acct.disabled) {
        rcpt_answer(s, "550 5.2.1", "Mailbox disabled");
        lmtp_resume(s);
        return;
    }
    switch (proto_slot_check(conn_conf(s->c)->slot_name, &j->acct, NULL, 0)) {
    case PROTO_SLOT_ELSEWHERE: {
        /* an MTA that looked the slot up just before a move flipped it, or
         * that still caches the old route (Postfix: about 30 s), must try
         * again rather than bounce: temporary for lmtp_moved_grace after
         * the move, permanent otherwise */
        int64_t since = (int64_t)time(NULL) - j->acct.moved_at;
        if (j->acct.moved_at && since >= 0 &&
            (uint64_t)since * 1000 < conn_conf(s->c)->lmtp_moved_grace_ms)
            rcpt_answer(s, "451 4.2.1", "Mailbox moved to another server; try again later");
        else
            rcpt_answer(s, "550 5.1.1", "Mailbox not on this server");
        lmtp_resume(s);
        return;
    }
    case PROTO_SLOT_MOVING:
        rcpt_answer(s, "451 4.2.1", "Mailbox being moved; try again later");
        lmtp_resume(s);
        return;
    case PROTO_SLOT_HERE:
        break;
    }
    /* a folder of an owner who is not served here is no folder here */
    if (j->shared &&
        proto_slot_check(conn_conf(s->c)->slot_name, &j->owner, NULL, 0) != PROTO_SLOT_HERE)
        j->shared = false;
    /* released by this server (the control socket's RELEASE) before it was
     * looked up: served here again (moved back, or the move called off);
     * released while it was looked up: it waits */
    mailuser_unblock(j->shared ? j->owner.id : j->acct.id, j->t0);
    if (mailuser_blocked(j->shared ? j->owner.id : j->acct.id)) {
        rcpt_answer(s, "451 4.2.1", "Mailbox being moved; try again later");
        lmtp_resume(s);
        return;
    }
    s->rcpt_acct = j->acct;
    s->rcpt_shared_owner[0] = '\0';
    if (j->used_full)
        s->rcpt_detail[0] = '\0';
    if (j->shared) {
        /* the owner's store, quota and folder */
        s->rcpt_acct = j->owner;
        snprintf(s->rcpt_shared_owner, sizeof(s->rcpt_shared_owner), "%s", j->owner.address);
        snprintf(s->rcpt_detail, sizeof(s->rcpt_detail), "%s", j->folder);
        j->acct = j->owner;
        j->has_index = j->owner_index;
    }
    if (j->has_index && !mailuser_in_use(j->acct.id)) {
        /* no session has it open: the delivery need not open it either */
        rcpt_add(s, NULL);
        return;
    }
    s->req = mailuser_open(conn_loop(s->c), conn_conf(s->c)->data_dir, &j->acct, on_store_open, s);
    if (!s->req) {
        rcpt_answer(s, "451 4.3.0", "Out of memory");
        lmtp_resume(s);
    }
}

void lmtp_cmd_rcpt(struct lmtp_session *s, const char *arg, size_t len)
{
    const struct conf *conf = conn_conf(s->c);
    struct lmtp_params p;
    size_t plen;
    struct rcpt_job *j;
    struct proto_job *job;
    int r = lmtp_parse_path(arg, len, "TO:", false, s->rcpt_addr, sizeof(s->rcpt_addr), &plen, &p);

    if (r != LMTP_PARSE_OK) {
        s->rcpt_addr[0] = '\0';
        lmtp_bad(s, parse_error(r, true));
        return;
    }
    if (plen == 0) {
        lmtp_bad(s, "501 5.1.3 Empty recipient address");
        return;
    }
    if (s->txn->n_rcpts >= conf->lmtp_max_recipients) {
        lmtp_reply(s, "452 4.5.3 Too many recipients");
        metrics_lmtp_rcpt("452 4.5.3");
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        lmtp_reply(s, "451 4.3.0 Out of memory");
        return;
    }
    /* the detail keeps its case (it may name a folder); the address does not */
    if (lmtp_split_detail(s->rcpt_addr, plen, conf->recipient_delimiter, j->base, sizeof(j->base),
                          s->rcpt_detail, sizeof(s->rcpt_detail)) < 0) {
        free(j);
        lmtp_bad(s, "501 5.1.3 Bad recipient address syntax");
        return;
    }
    for (size_t i = 0; i < plen; i++)
        s->rcpt_addr[i] = (char)tolower((unsigned char)s->rcpt_addr[i]);
    j->s = s;
    j->t0 = conn_loop(s->c) ? uv_now(conn_loop(s->c)) : 0;
    j->svc = conn_auth(s->c);
    if (!(j->data_dir = strdup(conf->data_dir))) {
        free(j);
        lmtp_reply(s, "451 4.3.0 Out of memory");
        return;
    }
    memcpy(j->full, s->rcpt_addr, plen + 1);
    j->has_detail = s->rcpt_detail[0] != '\0' || strcmp(j->base, j->full) != 0;
    if (conf->lmtp_save_to_detail_mailbox &&
        shared_detail(conf->shared_prefix, s->rcpt_detail, j->base, conf->default_domain,
                      j->owner_addr, j->folder))
        j->acl = acl_snap_ref((struct acl_snap *)auth_service_acl(j->svc));
    job =
        proto_job_start(conn_loop(s->c), PROTO_JOB_NO_ACCOUNT, rcpt_work, rcpt_done, rcpt_free, j);
    if (!job) {
        rcpt_free(j);
        lmtp_reply(s, "451 4.3.0 Temporary failure");
        return;
    }
    lmtp_wait(s, job);
}

void lmtp_cmd_rset(struct lmtp_session *s, const char *arg, size_t len)
{
    (void)arg;
    if (len) {
        lmtp_bad(s, "501 5.5.4 Syntax: RSET");
        return;
    }
    lmtp_end_txn(s);
    lmtp_reply(s, "250 2.0.0 OK");
}

void lmtp_cmd_vrfy(struct lmtp_session *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    lmtp_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}
