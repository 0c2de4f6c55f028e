/* POP3 session: AUTHORIZATION state (CAPA, STLS, USER/PASS, AUTH, QUIT),
 * the maildrop lock and snapshot at login, the command table with allowed
 * states, the line limits, and the session's end. Plaintext logins are
 * refused until STLS unless the peer is in plaintext_auth_networks. The
 * TRANSACTION commands are in pop3_cmd.c, the storage side in
 * pop3_maildrop.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "protocol/slot.h"
#include "protocol/linebuf.h"
#include "protocol/mailuser.h"
#include "protocol/pop3/pop3.h"
#include "protocol/pop3/pop3_int.h"
#include "protocol/sasl.h"
#include "server/base/config.h"
#include "server/base/log.h"
#include "storage/storage.h"

struct pop3_command {
    const char *name;
    pop3_cmd_fn *fn;
    unsigned states;
};

static void process(struct pop3_session *s);

#define AUTH_FAILED "-ERR [AUTH] Authentication failed.\r\n"
#define NEED_TLS                                                                                   \
    "-ERR [AUTH] Plaintext authentication is disabled on non-secure connections; "                 \
    "use STLS first.\r\n"

void pop3_err(struct pop3_session *s, const char *msg)
{
    conn_printf(s->c, "-ERR %s\r\n", msg);
    if (++s->bad_count >= conn_conf(s->c)->max_bad_commands) {
        conn_printf(s->c, "-ERR Too many invalid commands.\r\n");
        s->state = POP3_QUIT;
        conn_close(s->c);
    }
}

static void open_failed(struct pop3_session *s, const char *reply)
{
    pop3_store->release(s);
    if (s->locked) {
        pop3_unlock(s->account_id);
        s->locked = false;
    }
    s->account_id = 0;
    conn_login_end(s->c, AUTH_OK, "maildrop-unavailable");
    conn_printf(s->c, "%s", reply);
}

void pop3_open_done(struct pop3_session *s, int err, struct pop3_msg *msgs, size_t n,
                    uint32_t uidvalidity)
{
    s->busy = false;
    if (err) {
        log_error("conn=%llu pop3 maildrop of %s not opened: %s",
                  (unsigned long long)conn_info(s->c)->id, s->address, storage_strerror(err));
        free(msgs);
        open_failed(s, "-ERR [SYS/TEMP] Unable to open the maildrop; try again later.\r\n");
        pop3_resume(s);
        return;
    }
    const char *why = conn_login_revoked(s->c, s->address);
    if (why) {
        /* disabled or removed while the login was checked or the maildrop
         * opened: the login stands on the account as it was */
        log_info("conn=%llu pop3 login of %s refused: account %s meanwhile",
                 (unsigned long long)conn_info(s->c)->id, s->address, why);
        free(msgs);
        open_failed(s, !strcmp(why, "disabled")
                           ? "-ERR [AUTH] Account disabled; contact your administrator.\r\n"
                       : !strcmp(why, "moved")
                           ? "-ERR [SYS/TEMP] Mailbox being moved; try again later.\r\n"
                           : AUTH_FAILED);
        pop3_resume(s);
        return;
    }
    s->msgs = msgs;
    s->nmsgs = n;
    s->uidvalidity = uidvalidity;
    s->state = POP3_TRANSACTION;
    s->bad_count = 0;
    conn_set_user(s->c, s->address);
    conn_login_end(s->c, AUTH_OK, NULL);
    conn_set_logged_in(s->c);
    conn_set_timeout(s->c, conn_conf(s->c)->pop3_idle_timeout_ms);
    log_info("conn=%llu pop3 login user=%s messages=%zu", (unsigned long long)conn_info(s->c)->id,
             s->address, n);
    conn_printf(s->c, "+OK Logged in.\r\n");
    pop3_resume(s);
}

/* Logged in: take the maildrop lock, then the snapshot (the +OK comes with
 * it). Returns true when the snapshot is on its way. */
static bool enter_maildrop(struct pop3_session *s, const struct auth_account *acct)
{
    if (!s->xbuf) {
        s->xbuf = malloc(2 * POP3_CHUNK + 8);
        if (!s->xbuf) {
            conn_printf(s->c, "-ERR [SYS/TEMP] Out of memory; try again later.\r\n");
            return false;
        }
    }
    if (!pop3_lock(acct->id)) {
        log_info("conn=%llu pop3 maildrop of %s in use", (unsigned long long)conn_info(s->c)->id,
                 acct->address);
        conn_login_end(s->c, AUTH_OK, "in-use");
        conn_printf(s->c, "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n");
        return false;
    }
    s->locked = true;
    s->account_id = acct->id;
    snprintf(s->address, sizeof(s->address), "%s", acct->address);
    if (pop3_store->open(s, acct) < 0) {
        open_failed(s, "-ERR [SYS/TEMP] Unable to open the maildrop; try again later.\r\n");
        return false;
    }
    s->busy = true;
    return true;
}

static void on_login_done(void *arg, int result, const struct auth_account *acct)
{
    struct pop3_session *s = arg;

    s->login = NULL;
    s->busy = false;
    if (result == AUTH_OK && proto_slot_login_refused(s->c, "pop3", acct, s->login_t0))
        result = AUTH_E_TEMP;
    metrics_login(METRICS_LOGIN_POP3, s->login_mech, proto_login_metric(result));
    if (result != AUTH_OK)
        conn_login_end(s->c, result, NULL);
    switch (result) {
    case AUTH_OK:
        conn_set_login_label(s->c, acct->app_label);
        if (enter_maildrop(s, acct))
            return; /* pop3_open_done goes on */
        break;
    case AUTH_E_DISABLED:
        conn_printf(s->c, "-ERR [AUTH] Account disabled; contact your administrator.\r\n");
        break;
    case AUTH_E_TEMP:
        conn_printf(s->c, "-ERR [SYS/TEMP] Temporary authentication failure; try again later.\r\n");
        break;
    case AUTH_E_BUSY:
        /* not [IN-USE]: that would say the password was right */
        conn_printf(s->c, "-ERR [SYS/TEMP] Too many logins in progress from your address or for "
                          "this account; try again later.\r\n");
        break;
    default:
        conn_printf(s->c, AUTH_FAILED);
        break;
    }
    pop3_resume(s);
}

void pop3_resume(struct pop3_session *s)
{
    if (s->busy || conn_closing(s->c))
        return;
    process(s);
    if (!s->busy && !conn_closing(s->c) && conn_write_queued(s->c) < CONN_WRITE_HIGH)
        conn_resume(s->c);
}

static void start_login(struct pop3_session *s, const char *mech, const char *user, size_t ulen,
                        const char *pw, size_t pwlen)
{
    conn_login_begin(s->c, mech, user, ulen);
    s->login_t0 = conn_loop(s->c) ? uv_now(conn_loop(s->c)) : 0;
    s->login = pw ? proto_login_password(s->c, "pop3", user, ulen, pw, pwlen, on_login_done, s)
                  : auth_login_external(conn_auth(s->c), user, ulen, conn_tls_peer(s->c),
                                        conn_info(s->c)->peer, on_login_done, s);
    if (!s->login) {
        conn_printf(s->c, "-ERR [SYS/TEMP] Temporary authentication failure; try again later.\r\n");
        return;
    }
    s->busy = true;
    conn_pause(s->c);
}

/* ---- commands ---- */

static void cmd_capa(struct pop3_session *s, const char *arg, size_t len)
{
    bool auth_ok = conn_plaintext_auth_ok(s->c);

    conn_printf(s->c, "+OK Capability list follows\r\n");
    if (s->state == POP3_AUTHORIZATION) {
        if (!conn_is_tls(s->c))
            conn_printf(s->c, "STLS\r\n");
        if (auth_ok)
            conn_printf(
                s->c, "USER\r\nSASL %s%s\r\n",
                proto_sasl_mechs(conn_is_tls(s->c) && proto_sasl_plus_ok(proto_sasl_conn_cb, s->c)),
                conn_client_cert_valid(s->c) ? " " PROTO_SASL_EXTERNAL : "");
    }
    conn_printf(s->c, "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
                      "EXPIRE NEVER\r\nIMPLEMENTATION coffre\r\n.\r\n");
}

static void cmd_stls(struct pop3_session *s, const char *arg, size_t len)
{
    if (conn_is_tls(s->c)) {
        pop3_err(s, "TLS is already active.");
        return;
    }
    conn_printf(s->c, "+OK Begin TLS negotiation now.\r\n");
    /* pipelined plaintext after STLS may be injected: discard it */
    linebuf_clear(&s->in);
    s->have_user = false;
    if (conn_starttls(s->c) < 0)
        conn_close(s->c);
}

static void cmd_user(struct pop3_session *s, const char *arg, size_t len)
{
    if (!conn_plaintext_auth_ok(s->c)) {
        conn_printf(s->c, NEED_TLS);
        return;
    }
    if (len == 0 || len >= sizeof(s->user)) {
        pop3_err(s, "Usage: USER name");
        return;
    }
    memcpy(s->user, arg, len);
    s->user_len = len;
    s->have_user = true;
    conn_printf(s->c, "+OK\r\n");
}

static void cmd_pass(struct pop3_session *s, const char *arg, size_t len)
{
    if (!conn_plaintext_auth_ok(s->c)) {
        conn_printf(s->c, NEED_TLS);
        return;
    }
    if (!s->have_user) {
        pop3_err(s, "USER first.");
        return;
    }
    s->have_user = false;
    s->login_mech = METRICS_MECH_USER_PASS;
    start_login(s, "USER", s->user, s->user_len, arg, len);
}

static void sasl_result(struct pop3_session *s, int r, const char *challenge);

/* SCRAM: the auth service gave the salt (first step) or checked the proof
 * (final step; acct set on success). */
static void on_scram_answer(void *arg, int result, const struct auth_account *acct)
{
    struct pop3_session *s = arg;
    struct auth_login *l = s->login;
    const char *challenge = "";
    int r;

    if (result != AUTH_OK) {
        s->sasl_active = false;
        proto_sasl_clear(&s->sasl);
        on_login_done(s, result, NULL);
        return;
    }
    s->login = NULL;
    s->busy = false;
    if (acct) {
        /* logged in once the client takes the server's signature */
        s->sasl.acct = *acct;
        r = proto_sasl_scram_final(&s->sasl, auth_login_scram_signature(l), &challenge);
    } else {
        r = proto_sasl_scram_first(&s->sasl, auth_login_scram_params(l), NULL, &challenge);
    }
    sasl_result(s, r, challenge);
    pop3_resume(s);
}

/* Hands a SCRAM step to the auth service; input waits meanwhile. */
static void scram_ask(struct pop3_session *s, int r)
{
    if (r == SASL_SCRAM_CHECK) {
        s->login_mech = proto_sasl_metric(&s->sasl);
        s->login_t0 = conn_loop(s->c) ? uv_now(conn_loop(s->c)) : 0;
    }
    s->login = proto_sasl_scram_ask(&s->sasl, r, s->c, on_scram_answer, s);
    if (!s->login) {
        s->sasl_active = false;
        proto_sasl_clear(&s->sasl);
        conn_printf(s->c, "-ERR [SYS/TEMP] Temporary authentication failure; try again later.\r\n");
        return;
    }
    s->busy = true;
    conn_pause(s->c);
}

static void sasl_result(struct pop3_session *s, int r, const char *challenge)
{
    switch (r) {
    case SASL_SCRAM_LOOKUP:
    case SASL_SCRAM_CHECK:
        s->sasl_active = true;
        scram_ask(s, r);
        return;
    case SASL_SCRAM_DONE: {
        struct auth_account acct = s->sasl.acct;

        s->sasl_active = false;
        proto_sasl_clear(&s->sasl);
        on_login_done(s, AUTH_OK, &acct);
        explicit_bzero(&acct, sizeof(acct));
        return;
    }
    case SASL_CONTINUE:
        s->sasl_active = true;
        conn_printf(s->c, "+ %s\r\n", challenge);
        return;
    case SASL_DONE:
        s->sasl_active = false;
        s->login_mech = proto_sasl_metric(&s->sasl);
        /* EXTERNAL has no password: the certificate stands for it */
        start_login(s, proto_sasl_name(&s->sasl), s->sasl.user, s->sasl.user_len,
                    s->sasl.mech == SASL_MECH_EXTERNAL ? NULL : s->sasl.pass, s->sasl.pass_len);
        break;
    case SASL_CANCEL:
        s->sasl_active = false;
        conn_printf(s->c, "-ERR Authentication cancelled.\r\n");
        break;
    default:
        s->sasl_active = false;
        pop3_err(s, "Invalid base64 or SASL message.");
        break;
    }
    proto_sasl_clear(&s->sasl);
}

static void cmd_auth(struct pop3_session *s, const char *arg, size_t len)
{
    const char *sp, *challenge;
    size_t mlen;

    if (len == 0) {
        /* bare AUTH lists the mechanisms (older Outlook asks this way) */
        conn_printf(s->c, "+OK\r\n");
        if (conn_plaintext_auth_ok(s->c))
            conn_printf(s->c, "PLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n%s%s",
                        conn_is_tls(s->c) && proto_sasl_plus_ok(proto_sasl_conn_cb, s->c)
                            ? "SCRAM-SHA-256-PLUS\r\n"
                            : "",
                        conn_client_cert_valid(s->c) ? "EXTERNAL\r\n" : "");
        conn_printf(s->c, ".\r\n");
        return;
    }
    if (!conn_plaintext_auth_ok(s->c)) {
        conn_printf(s->c, NEED_TLS);
        return;
    }
    sp = memchr(arg, ' ', len);
    mlen = sp ? (size_t)(sp - arg) : len;
    if (proto_sasl_start_cb(&s->sasl, arg, mlen, conn_is_tls(s->c) ? proto_sasl_conn_cb : NULL,
                            s->c) < 0) {
        pop3_err(s, "Unsupported authentication mechanism.");
        return;
    }
    if (sp) {
        const char *ir = sp + 1;
        size_t irlen = len - mlen - 1;
        if (irlen == 0) {
            proto_sasl_clear(&s->sasl); /* SCRAM's state is allocated */
            pop3_err(s, "Invalid initial response.");
            return;
        }
        int r = proto_sasl_step(&s->sasl, ir, irlen, &challenge);
        sasl_result(s, r, challenge);
        return;
    }
    int r = proto_sasl_step(&s->sasl, "", 0, &challenge);
    sasl_result(s, r, challenge);
}

static void cmd_noop(struct pop3_session *s, const char *arg, size_t len)
{
    conn_printf(s->c, "+OK\r\n");
}

static void cmd_quit(struct pop3_session *s, const char *arg, size_t len)
{
    if (s->state == POP3_TRANSACTION) {
        pop3_cmd_quit_update(s);
        return;
    }
    conn_printf(s->c, "+OK Logging out.\r\n");
    s->state = POP3_QUIT;
    conn_close(s->c);
}

/* AUTH lines may carry a long initial response: max_line_length_prelogin
 * bounds them (and the SASL responses); other commands have
 * pop3_max_command_length. */
#define LONG_OK 8

static const struct pop3_command commands[] = {
    {"CAPA", cmd_capa, POP3_AUTHORIZATION | POP3_TRANSACTION},
    {"STLS", cmd_stls, POP3_AUTHORIZATION},
    {"USER", cmd_user, POP3_AUTHORIZATION},
    {"PASS", cmd_pass, POP3_AUTHORIZATION},
    {"AUTH", cmd_auth, POP3_AUTHORIZATION | LONG_OK},
    {"STAT", pop3_cmd_stat, POP3_TRANSACTION},
    {"LIST", pop3_cmd_list, POP3_TRANSACTION},
    {"UIDL", pop3_cmd_uidl, POP3_TRANSACTION},
    {"RETR", pop3_cmd_retr, POP3_TRANSACTION},
    {"TOP", pop3_cmd_top, POP3_TRANSACTION},
    {"DELE", pop3_cmd_dele, POP3_TRANSACTION},
    {"RSET", pop3_cmd_rset, POP3_TRANSACTION},
    {"NOOP", cmd_noop, POP3_TRANSACTION},
    {"QUIT", cmd_quit, POP3_AUTHORIZATION | POP3_TRANSACTION},
};

static void execute(struct pop3_session *s, const char *line, size_t len)
{
    size_t n = 0;
    while (n < len && line[n] != ' ')
        n++;
    const char *arg = n < len ? line + n + 1 : line + len;
    size_t alen = n < len ? len - n - 1 : 0;

    s->metrics_t0 = metrics_now();
    s->metrics_cmd = METRICS_CMD_UNKNOWN;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strlen(commands[i].name) != n || strncasecmp(commands[i].name, line, n))
            continue;
        s->metrics_cmd = (unsigned)i;
        if (len + 2 > conn_conf(s->c)->pop3_max_command_length && !(commands[i].states & LONG_OK)) {
            pop3_err(s, "Command line too long.");
            return;
        }
        if (!(commands[i].states & s->state)) {
            pop3_err(s, "Command not valid in this state.");
            return;
        }
        conn_count_command(s->c);
        commands[i].fn(s, arg, alen);
        return;
    }
    pop3_err(s, "Unknown command.");
}

/* The limits of the line the reader is at: an over-long one is answered
 * as soon as it passes its limit, and the connection closed when it goes
 * on past max_line_length (max_line_length_prelogin before login). */
static void set_line_limits(struct pop3_session *s)
{
    const struct conf *cf = conn_conf(s->c);
    bool pre = s->state == POP3_AUTHORIZATION;
    size_t max = cf->pop3_max_command_length;
    const char *head = s->in.p ? s->in.p + s->in.off : "";

    if (pre && (s->sasl_active || (s->in.len >= 5 && !strncasecmp(head, "AUTH ", 5))))
        max = conf_prelogin_line(cf);
    if (pre && max > conf_prelogin_line(cf))
        max = conf_prelogin_line(cf);
    linebuf_limits(&s->in, max, pre ? conf_prelogin_line(cf) : cf->max_line_length);
}

/* The command in progress is over: counted once. */
static void metrics_done(struct pop3_session *s)
{
    metrics_pop3_command(s->metrics_cmd, s->metrics_t0);
    s->metrics_t0 = 0;
}

static void process(struct pop3_session *s)
{
    while (!s->busy && !conn_closing(s->c) && conn_write_queued(s->c) < CONN_WRITE_HIGH) {
        const char *line;
        size_t len;
        if (!s->sasl_active)
            metrics_done(s); /* the last command's answer is out */
        set_line_limits(s);
        int r = linebuf_line(&s->in, &line, &len);
        if (r == LINEBUF_MORE)
            break;
        if (r == LINEBUF_TOOLONG && !s->sasl_active) {
            /* said at once; the rest of the line is skipped */
            pop3_err(s, "Command line too long.");
            continue;
        }
        if (r != LINEBUF_LINE) {
            conn_printf(s->c, "-ERR Line too long.\r\n");
            s->state = POP3_QUIT;
            conn_close(s->c);
            return;
        }
        if (s->sasl_active) {
            const char *challenge = "";
            int sr = len || s->sasl.mech == SASL_MECH_EXTERNAL || s->sasl.scram
                         ? proto_sasl_step(&s->sasl, line, len, &challenge)
                         : SASL_BAD;
            sasl_result(s, sr, challenge);
            continue;
        }
        execute(s, line, len);
    }
}

/* ---- connection handler ---- */

static int on_open(struct conn *c)
{
    struct pop3_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->c = c;
    s->state = POP3_AUTHORIZATION;
    metrics_command_names(METRICS_CMD_POP3, &commands[0].name,
                          sizeof(commands) / sizeof(commands[0]), sizeof(commands[0]));
    linebuf_init(&s->in, conn_conf(c)->max_line_length);
    conn_set_proto(c, s);
    conn_printf(c, "+OK coffre ready.\r\n");
    return 0;
}

static void on_input(struct conn *c, const char *buf, size_t len)
{
    struct pop3_session *s = conn_proto(c);

    if (s->state == POP3_QUIT)
        return;
    if (linebuf_append(&s->in, buf, len) < 0) {
        conn_close(c);
        return;
    }
    if (s->busy) {
        conn_pause(c);
        return;
    }
    process(s);
    if (s->busy || conn_write_queued(c) >= CONN_WRITE_HIGH)
        conn_pause(c);
}

static void on_drain(struct conn *c)
{
    struct pop3_session *s = conn_proto(c);
    if (s->state == POP3_QUIT)
        return;
    if (s->xfer.active) {
        pop3_xfer_drain(s);
        return;
    }
    pop3_resume(s);
}

/* Closes without entering UPDATE: nothing is deleted (RFC 1939). Inside a
 * multi-line answer a status line would pass for message text: then the
 * reply is not sent. */
static void hang_up(struct conn *c, const char *reply)
{
    struct pop3_session *s = conn_proto(c);
    if (!s->xfer.active)
        conn_printf(c, "%s", reply);
    s->state = POP3_QUIT;
    conn_close(c);
}

static void on_timeout(struct conn *c)
{
    hang_up(c, "-ERR Autologout; idle for too long.\r\n");
}

static void on_shutdown(struct conn *c)
{
    hang_up(c, "-ERR [SYS/TEMP] Server shutting down.\r\n");
}

/* An administrator ended the session: closed without UPDATE, as after an
 * abnormal end (RFC 1939 6): nothing marked deleted is removed. A session
 * already in UPDATE (after QUIT) finishes it and ends by itself. */
static void on_kick(struct conn *c, const char *reason)
{
    struct pop3_session *s = conn_proto(c);
    char line[128];

    if (s->state == POP3_QUIT)
        return;
    log_info("conn=%llu pop3 user=%s ended by the administrator: %s",
             (unsigned long long)conn_info(c)->id, s->address[0] ? s->address : "-", reason);
    snprintf(line, sizeof(line), "-ERR [SYS/PERM] %s\r\n", reason);
    hang_up(c, line);
}

static void describe(struct conn *c, struct conn_state *st)
{
    struct pop3_session *s = conn_proto(c);
    if (s->state == POP3_AUTHORIZATION)
        st->state = "login";
    else if (s->state == POP3_QUIT)
        st->state = "update";
    else
        st->state = s->busy || s->xfer.active ? "command" : "ready";
}

static void on_close(struct conn *c)
{
    struct pop3_session *s = conn_proto(c);
    if (!s)
        return;
    metrics_done(s); /* QUIT, or a command the client left */
    if (s->login)
        auth_login_cancel(s->login);
    pop3_store->cancel(s);
    pop3_store->release(s);
    if (s->locked)
        pop3_unlock(s->account_id);
    free(s->msgs);
    free(s->xbuf);
    proto_sasl_clear(&s->sasl);
    explicit_bzero(s->user, sizeof(s->user));
    linebuf_free(&s->in);
    free(s);
    conn_set_proto(c, NULL);
}

const struct conn_handler pop3_handler = {
    .name = "pop3",
    .on_open = on_open,
    .on_input = on_input,
    .on_tls_ready = NULL,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .describe = describe,
    .on_kick = on_kick,
    .busy_reply = "-ERR [SYS/TEMP] Too many connections; try again later.\r\n",
    .proxy_refused_reply = "-ERR PROXY header refused from this address.\r\n",
};
