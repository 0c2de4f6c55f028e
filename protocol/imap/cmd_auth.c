/* LOGIN and AUTHENTICATE (PLAIN, LOGIN; SASL-IR). Credentials are checked
 * by the auth service on the thread pool; the session waits, reading
 * nothing, until the answer (delayed on failure) comes back. */
#include <string.h>

#include "protocol/imap/imap_private.h"
#include "server/config.h"
#include "server/log.h"

static void on_login_done(void *arg, int result, const struct auth_account *acct)
{
    struct imap_session *s = arg;

    s->login = NULL;
    s->busy = false;
    switch (result) {
    case AUTH_OK:
        s->state = IMAP_AUTH;
        s->account_id = acct->id;
        s->bad_count = 0;
        snprintf(s->user, sizeof(s->user), "%s", acct->address);
        conn_set_user(s->c, acct->address);
        conn_set_timeout(s->c, conn_conf(s->c)->imap_idle_timeout_ms);
        log_info("conn=%llu imap login user=%s", (unsigned long long)conn_info(s->c)->id,
                 acct->address);
        imap_tagged(s, "OK", "[CAPABILITY %s] Logged in.", imap_capabilities(s));
        break;
    case AUTH_E_DISABLED:
        imap_tagged(s, "NO", "[CONTACTADMIN] Account disabled; contact your administrator.");
        break;
    case AUTH_E_TEMP:
        imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure; try again later.");
        break;
    default:
        imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed.");
        break;
    }
    imap_resume(s);
}

static void start_login(struct imap_session *s, const char *user, size_t ulen, const char *pw,
                        size_t pwlen)
{
    s->login = auth_login_start(conn_auth(s->c), user, ulen, pw, pwlen, conn_info(s->c)->peer,
                                on_login_done, s);
    if (!s->login) {
        imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure; try again later.");
        return;
    }
    s->busy = true;
    conn_pause(s->c);
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
    if (!refuse_plaintext(s))
        start_login(s, user, ulen, pw, pwlen);
    explicit_bzero(pw, sizeof(pw));
}

static void sasl_result(struct imap_session *s, int r, const char *challenge)
{
    switch (r) {
    case SASL_CONTINUE:
        s->sasl_active = true;
        conn_printf(s->c, "+ %s\r\n", challenge);
        return;
    case SASL_DONE:
        s->sasl_active = false;
        start_login(s, s->sasl.user, s->sasl.user_len, s->sasl.pass, s->sasl.pass_len);
        proto_sasl_clear(&s->sasl);
        return;
    case SASL_CANCEL:
        s->sasl_active = false;
        proto_sasl_clear(&s->sasl);
        imap_bad(s, "Authentication cancelled.");
        return;
    default:
        s->sasl_active = false;
        proto_sasl_clear(&s->sasl);
        imap_bad(s, "Invalid base64 or SASL message.");
        return;
    }
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
    if (proto_sasl_start(&s->sasl, mech, mlen) < 0) {
        imap_tagged(s, "NO", "Unsupported authentication mechanism.");
        return;
    }
    /* "AUTHENTICATE PLAIN" without SASL-IR: an empty step asks for it */
    int r = proto_sasl_step(&s->sasl, ir, irlen, &challenge);
    sasl_result(s, r, challenge);
}

void imap_auth_sasl_line(struct imap_session *s, const char *line, size_t len)
{
    const char *challenge;
    if (len == 0) {
        /* an empty response line is a malformed (empty) SASL response */
        sasl_result(s, SASL_BAD, "");
        return;
    }
    int r = proto_sasl_step(&s->sasl, line, len, &challenge);
    sasl_result(s, r, challenge);
}

void imap_auth_cancel(struct imap_session *s)
{
    if (s->login) {
        auth_login_cancel(s->login);
        s->login = NULL;
    }
    proto_sasl_clear(&s->sasl);
}
