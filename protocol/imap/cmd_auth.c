/* Getting authenticated: STARTTLS, LOGIN and AUTHENTICATE (PLAIN, LOGIN;
 * SASL-IR). Credentials are checked by the auth service on the thread
 * pool; the session waits, reading nothing, until the answer (delayed on
 * failure) comes back. AUTHENTICATE reads the client's SASL responses as
 * its continuation's lines; a login in flight is a continuation too, so
 * that a session closed meanwhile cancels it. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/slot.h"
#include "protocol/imap/imap_private.h"
#include "server/base/config.h"
#include "server/base/log.h"

static void login_complete(struct imap_session *s)
{
    s->state = IMAP_AUTH;
    s->bad_count = 0;
    conn_set_logged_in(s->c);
    conn_set_timeout(s->c, conn_conf(s->c)->imap_idle_timeout_ms);
    imap_tagged(s, "OK", "[CAPABILITY %s] Logged in.", imap_capabilities(s));
    imap_wait(s, IMAP_WAIT_NONE);
    imap_resume(s);
}

/* The login ALERT (RFC 3501 7.1): the store is read on the pool for the
 * quota use, and a client nearly out of room is told before it fails. */
struct quota_job {
    struct imap_job j;
    uint64_t used;
    int err;
};

static void quota_work(struct imap_job *j)
{
    struct quota_job *q = (struct quota_job *)j;
    uint64_t messages;
    q->err = storage_quota_usage(j->u, &q->used, &messages);
}

static void quota_done(struct imap_session *s, struct imap_job *j)
{
    struct quota_job *q = (struct quota_job *)j;
    uint64_t limit = s->quota_bytes;

    if (q->err == 0 && limit && q->used * 100 >= limit * conn_conf(s->c)->quota_warning_percent) {
        unsigned pct = (unsigned)(q->used * 100 / limit);
        conn_printf(s->c,
                    "* OK [ALERT] Your mailbox is %u%% full (%llu of %llu MB); delete or "
                    "archive mail to make room.\r\n",
                    pct, (unsigned long long)(q->used >> 20), (unsigned long long)(limit >> 20));
    }
    login_complete(s);
}

static void on_store_open(void *arg, int err, struct mailuser *mu)
{
    struct imap_session *s = arg;

    s->mu_req = NULL;
    if (err) {
        imap_userip_del(s);
        imap_tagged(s, "NO", "[UNAVAILABLE] Your mailbox cannot be opened now; try again later.");
        imap_wait(s, IMAP_WAIT_NONE);
        imap_resume(s);
        return;
    }
    s->mu = mu;
    s->listener.on_event = imap_on_event;
    s->listener.arg = s;
    mailuser_listen(mu, &s->listener);
    if (s->quota_bytes && conn_conf(s->c)->quota_warning_percent) {
        struct quota_job *q = calloc(1, sizeof(*q));
        if (q && imap_job_start(s, &q->j, quota_work, quota_done) == 0)
            return;
    }
    login_complete(s);
}

static void on_login_done(void *arg, int result, const struct auth_account *acct)
{
    struct imap_session *s = arg;
    const char *why;

    imap_cont_end(s); /* the login is over */
    if (result == AUTH_OK && (why = conn_login_revoked(s->c, acct->address)))
        result = !strcmp(why, "disabled") ? AUTH_E_DISABLED
                 : !strcmp(why, "moved")  ? AUTH_E_TEMP
                                          : AUTH_E_FAIL;
    if (result == AUTH_OK && proto_slot_login_refused(s->c, "imap", acct, s->login_t0))
        result = AUTH_E_TEMP;
    metrics_login(METRICS_LOGIN_IMAP, s->login_mech, proto_login_metric(result));
    if (result != AUTH_OK)
        conn_login_end(s->c, result, NULL);
    switch (result) {
    case AUTH_OK:
        s->account_id = acct->id;
        s->quota_bytes = acct->quota_bytes;
        if (!imap_userip_add(s)) {
            log_info("conn=%llu imap user=%s: too many sessions from this address",
                     (unsigned long long)conn_info(s->c)->id, acct->address);
            conn_login_end(s->c, AUTH_OK, "refused-limit");
            imap_tagged(s, "NO", "[LIMIT] Too many connections for this user from your address.");
            break;
        }
        conn_set_user(s->c, acct->address);
        conn_set_login_label(s->c, acct->app_label);
        conn_login_end(s->c, AUTH_OK, NULL);
        free(s->user);
        s->user = strdup(acct->address);
        log_info("conn=%llu imap login user=%s", (unsigned long long)conn_info(s->c)->id,
                 acct->address);
        if (!conn_loop(s->c)) {
            login_complete(s); /* no loop (fuzzing): no store */
            return;
        }
        s->mu_req =
            mailuser_open(conn_loop(s->c), conn_conf(s->c)->data_dir, acct, on_store_open, s);
        if (!s->mu_req) {
            imap_userip_del(s);
            imap_tagged(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
            break;
        }
        return; /* still waiting until the store is open */
    case AUTH_E_DISABLED:
        imap_tagged(s, "NO", "[CONTACTADMIN] Account disabled; contact your administrator.");
        break;
    case AUTH_E_TEMP:
        imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure; try again later.");
        break;
    case AUTH_E_BUSY:
        imap_tagged(s, "NO",
                    "[UNAVAILABLE] Too many logins in progress from your address or for this "
                    "account; try again later.");
        break;
    default:
        imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed.");
        break;
    }
    imap_wait(s, IMAP_WAIT_NONE);
    imap_resume(s);
}

static void login_abort(struct imap_session *s)
{
    auth_login_cancel(s->cont_data);
}

static const struct imap_cont login_cont = {
    .abort = login_abort,
};

static void start_login(struct imap_session *s, const char *mech, const char *user, size_t ulen,
                        const char *pw, size_t pwlen)
{
    conn_login_begin(s->c, mech, user, ulen);
    s->login_t0 = conn_loop(s->c) ? uv_now(conn_loop(s->c)) : 0;
    struct auth_login *l =
        pw ? proto_login_password(s->c, "imap", user, ulen, pw, pwlen, on_login_done, s)
           : auth_login_external(conn_auth(s->c), user, ulen, conn_tls_peer(s->c),
                                 conn_info(s->c)->peer, on_login_done, s);
    if (!l) {
        imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure; try again later.");
        return;
    }
    imap_cont_start(s, &login_cont, l);
    imap_wait(s, IMAP_WAIT_JOB);
}

void imap_cmd_starttls(struct imap_session *s, struct imap_args *a)
{
    if (conn_is_tls(s->c)) {
        imap_bad(s, "TLS is already active.");
        return;
    }
    imap_tagged(s, "OK", "Begin TLS negotiation now.");
    imap_flush(s);
    /* Whatever the client pipelined after STARTTLS was sent in clear and
     * may have been injected on the way: it is discarded, never run. */
    linebuf_clear(&s->in);
    if (conn_starttls(s->c) < 0)
        imap_close(s);
}

/* COMPRESS DEFLATE (RFC 4978): after the tagged OK, everything is raw
 * deflate both ways; the connection layer does the work. Offered where
 * plaintext logins are (TLS, or plaintext_auth_networks): compressing
 * before encryption on an open network would leak lengths for nothing. */
void imap_cmd_compress(struct imap_session *s, struct imap_args *a)
{
    const char *alg;
    size_t alen;

    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &alg, &alen) != IMAP_ARG_OK ||
        !imap_args_at_end(a)) {
        imap_bad(s, "Usage: COMPRESS DEFLATE");
        return;
    }
    if (alen != 7 || strncasecmp(alg, "DEFLATE", 7) != 0) {
        imap_bad(s, "Unknown compression algorithm.");
        return;
    }
    if (conn_compressed(s->c)) {
        imap_tagged(s, "NO", "[COMPRESSIONACTIVE] DEFLATE is already active.");
        return;
    }
    if (!conn_plaintext_auth_ok(s->c)) {
        imap_tagged(s, "NO", "[PRIVACYREQUIRED] Compression needs TLS.");
        return;
    }
    imap_tagged(s, "OK", "DEFLATE active.");
    imap_flush(s);
    /* what the client sent after the command line is compressed already */
    int r = conn_compress(s->c, linebuf_data(&s->in), linebuf_pending(&s->in));
    linebuf_clear(&s->in);
    if (r < 0)
        imap_close(s);
}

static bool refuse_plaintext(struct imap_session *s)
{
    if (conn_plaintext_auth_ok(s->c))
        return false;
    imap_tagged(s, "NO",
                "[PRIVACYREQUIRED] Plaintext authentication is disabled; use STARTTLS first.");
    return true;
}

void imap_cmd_login(struct imap_session *s, struct imap_args *a)
{
    char user[AUTH_ADDR_MAX * 2], pw[AUTH_PASSWORD_MAX];
    size_t ulen, pwlen;

    if (imap_args_sp(a) != IMAP_ARG_OK ||
        imap_args_astring(a, user, sizeof(user), &ulen) != IMAP_ARG_OK ||
        imap_args_sp(a) != IMAP_ARG_OK ||
        imap_args_astring(a, pw, sizeof(pw), &pwlen) != IMAP_ARG_OK || !imap_args_at_end(a)) {
        explicit_bzero(pw, sizeof(pw));
        imap_bad(s, "Usage: LOGIN user password");
        return;
    }
    s->login_mech = METRICS_MECH_LOGIN_COMMAND;
    if (!refuse_plaintext(s))
        start_login(s, "LOGIN", user, ulen, pw, pwlen);
    explicit_bzero(pw, sizeof(pw));
}

static void sasl_free(struct proto_sasl *sasl)
{
    proto_sasl_clear(sasl);
    free(sasl);
}

static void sasl_line(struct imap_session *s, const char *line, size_t len);

static void sasl_abort(struct imap_session *s)
{
    sasl_free(s->cont_data);
}

static const struct imap_cont sasl_cont = {
    .line = sasl_line,
    .abort = sasl_abort,
};

/* ---- SCRAM: the auth service's two steps, the session waiting ---- */

static void sasl_result(struct imap_session *s, struct proto_sasl *sasl, int r,
                        const char *challenge);

static void scram_wait_abort(struct imap_session *s)
{
    struct proto_sasl *sasl = s->cont_data;

    auth_login_cancel(sasl->login);
    sasl_free(sasl);
}

static const struct imap_cont scram_wait_cont = {
    .abort = scram_wait_abort,
};

/* The auth service answered: the session reads again. */
static struct proto_sasl *scram_answered(struct imap_session *s)
{
    struct proto_sasl *sasl = s->cont_data;

    sasl->login = NULL;
    imap_cont_end(s);
    imap_wait(s, IMAP_WAIT_NONE);
    return sasl;
}

static void on_scram_first(void *arg, int result, const struct auth_account *acct)
{
    struct imap_session *s = arg;
    struct auth_login *l = ((struct proto_sasl *)s->cont_data)->login;
    struct proto_sasl *sasl = scram_answered(s);
    const char *challenge = "";
    int r;

    (void)acct;
    if (result != AUTH_OK) {
        sasl_free(sasl);
        on_login_done(s, result, NULL);
        return;
    }
    r = proto_sasl_scram_first(sasl, auth_login_scram_params(l), NULL, &challenge);
    sasl_result(s, sasl, r, challenge);
    imap_resume(s);
}

static void on_scram_final(void *arg, int result, const struct auth_account *acct)
{
    struct imap_session *s = arg;
    struct auth_login *l = ((struct proto_sasl *)s->cont_data)->login;
    struct proto_sasl *sasl = scram_answered(s);
    const char *challenge = "";
    int r;

    if (result != AUTH_OK) {
        sasl_free(sasl);
        on_login_done(s, result, NULL);
        return;
    }
    /* logged in once the client takes the server's signature */
    sasl->acct = *acct;
    r = proto_sasl_scram_final(sasl, auth_login_scram_signature(l), &challenge);
    sasl_result(s, sasl, r, challenge);
    imap_resume(s);
}

/* Hands a SCRAM step to the auth service; the session reads nothing
 * meanwhile. */
static void scram_ask(struct imap_session *s, struct proto_sasl *sasl, int r)
{
    if (r == SASL_SCRAM_CHECK) {
        s->login_mech = proto_sasl_metric(sasl);
        s->login_t0 = conn_loop(s->c) ? uv_now(conn_loop(s->c)) : 0;
    }
    sasl->login = proto_sasl_scram_ask(sasl, r, s->c,
                                       r == SASL_SCRAM_LOOKUP ? on_scram_first : on_scram_final, s);
    if (!sasl->login) {
        sasl_free(sasl);
        imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure; try again later.");
        return;
    }
    imap_cont_start(s, &scram_wait_cont, sasl);
    imap_wait(s, IMAP_WAIT_JOB);
}

/* Answers a SASL step; the exchange ends unless it continues. */
static void sasl_result(struct imap_session *s, struct proto_sasl *sasl, int r,
                        const char *challenge)
{
    if (r == SASL_CONTINUE) {
        if (s->cont != &sasl_cont)
            imap_cont_start(s, &sasl_cont, sasl);
        imap_printf(s, "+ %s\r\n", challenge);
        return;
    }
    if (s->cont == &sasl_cont)
        imap_cont_end(s);
    switch (r) {
    case SASL_SCRAM_LOOKUP:
    case SASL_SCRAM_CHECK:
        scram_ask(s, sasl, r);
        return; /* sasl goes with the wait */
    case SASL_SCRAM_DONE: {
        struct auth_account acct = sasl->acct;

        sasl_free(sasl);
        /* on_login_done ends the login's continuation */
        imap_cont_start(s, &login_cont, NULL);
        imap_wait(s, IMAP_WAIT_JOB);
        on_login_done(s, AUTH_OK, &acct);
        explicit_bzero(&acct, sizeof(acct));
        return;
    }
    case SASL_DONE:
        s->login_mech = proto_sasl_metric(sasl);
        /* EXTERNAL has no password: the certificate stands for it */
        start_login(s, proto_sasl_name(sasl), sasl->user, sasl->user_len,
                    sasl->mech == SASL_MECH_EXTERNAL ? NULL : sasl->pass, sasl->pass_len);
        break;
    case SASL_CANCEL:
        imap_bad(s, "Authentication cancelled.");
        break;
    default:
        imap_bad(s, "Invalid base64 or SASL message.");
        break;
    }
    sasl_free(sasl);
}

void imap_cmd_authenticate(struct imap_session *s, struct imap_args *a)
{
    const char *mech, *ir = "";
    size_t mlen, irlen = 0;
    const char *challenge;

    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &mech, &mlen) != IMAP_ARG_OK) {
        imap_bad(s, "Usage: AUTHENTICATE mechanism [initial-response]");
        return;
    }
    if (!imap_args_at_end(a)) {
        if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &ir, &irlen) != IMAP_ARG_OK ||
            !imap_args_at_end(a)) {
            imap_bad(s, "Invalid initial response.");
            return;
        }
    }
    if (refuse_plaintext(s))
        return;
    struct proto_sasl *sasl = calloc(1, sizeof(*sasl));
    if (!sasl) {
        imap_tagged(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    if (proto_sasl_start_cb(sasl, mech, mlen, conn_is_tls(s->c) ? proto_sasl_conn_cb : NULL, s->c) <
        0) {
        sasl_free(sasl);
        imap_tagged(s, "NO", "Unsupported authentication mechanism.");
        return;
    }
    /* "AUTHENTICATE PLAIN" without SASL-IR: an empty step asks for it */
    int r = proto_sasl_step(sasl, ir, irlen, &challenge);
    sasl_result(s, sasl, r, challenge);
}

/* A SASL response line. */
static void sasl_line(struct imap_session *s, const char *line, size_t len)
{
    struct proto_sasl *sasl = s->cont_data;
    const char *challenge;
    if (len == 0 && sasl->mech != SASL_MECH_EXTERNAL && !sasl->scram) {
        /* an empty response line is a malformed (empty) SASL response
         * (EXTERNAL's empty authorization identity and SCRAM's last,
         * empty answer excepted) */
        sasl_result(s, sasl, SASL_BAD, "");
        return;
    }
    int r = proto_sasl_step(sasl, line, len, &challenge);
    sasl_result(s, sasl, r, challenge);
}

/* UNAUTHENTICATE (RFC 8437): back to the not authenticated state with the
 * connection (and its TLS, its compression) kept; everything the session
 * held for the account goes, as at a close. */
void imap_cmd_unauthenticate(struct imap_session *s, struct imap_args *a)
{
    (void)a;
    log_info("conn=%llu imap unauthenticate user=%s", (unsigned long long)conn_info(s->c)->id,
             s->user ? s->user : "");
    imap_account_release(s);
    conn_set_user(s->c, "");
    s->state = IMAP_NOTAUTH;
    s->bad_count = 0;
    conn_set_timeout(s->c, conn_conf(s->c)->login_timeout_ms);
    imap_tagged(s, "OK", "Not authenticated any more.");
}
