/* POP3 session: AUTHORIZATION state (CAPA, STLS, USER/PASS, AUTH, QUIT),
 * the command table with allowed states, and the session's end. Plaintext
 * logins are refused until STLS unless the peer is in
 * plaintext_auth_networks. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "protocol/linebuf.h"
#include "protocol/pop3/pop3.h"
#include "protocol/sasl.h"
#include "server/config.h"
#include "server/log.h"

enum pop3_state { POP3_AUTHORIZATION = 1, POP3_TRANSACTION = 2, POP3_QUIT = 4 };

struct pop3_session {
    struct conn *c;
    enum pop3_state state;
    struct linebuf in;
    bool busy;
    struct auth_login *login;
    bool sasl_active;
    struct proto_sasl sasl;
    char user[AUTH_ADDR_MAX * 2]; /* from USER, until PASS */
    size_t user_len;
    bool have_user;
    unsigned bad_count;
    int64_t account_id;
};

typedef void pop3_cmd_fn(struct pop3_session *s, const char *arg, size_t len);

struct pop3_command {
    const char *name;
    pop3_cmd_fn *fn;
    unsigned states;
};

static void process(struct pop3_session *s);

#define AUTH_FAILED "-ERR [AUTH] Authentication failed.\r\n"
#define NEED_TLS                                                                                   \
    "-ERR [AUTH] Plaintext authentication is disabled on non-secure connections; "              \
    "use STLS first.\r\n"

static void err_reply(struct pop3_session *s, const char *msg)
{
    conn_printf(s->c, "-ERR %s\r\n", msg);
    if (++s->bad_count >= conn_conf(s->c)->max_bad_commands) {
        conn_printf(s->c, "-ERR Too many invalid commands.\r\n");
        s->state = POP3_QUIT;
        conn_close(s->c);
    }
}

static void on_login_done(void *arg, int result, const struct auth_account *acct)
{
    struct pop3_session *s = arg;

    s->login = NULL;
    s->busy = false;
    switch (result) {
    case AUTH_OK:
        s->state = POP3_TRANSACTION;
        s->account_id = acct->id;
        s->bad_count = 0;
        conn_set_user(s->c, acct->address);
        conn_set_timeout(s->c, conn_conf(s->c)->pop3_idle_timeout_ms);
        log_info("conn=%llu pop3 login user=%s", (unsigned long long)conn_info(s->c)->id,
                 acct->address);
        conn_printf(s->c, "+OK Logged in.\r\n");
        break;
    case AUTH_E_DISABLED:
        conn_printf(s->c, "-ERR [AUTH] Account disabled; contact your administrator.\r\n");
        break;
    case AUTH_E_TEMP:
        conn_printf(s->c, "-ERR [SYS/TEMP] Temporary authentication failure; try again later.\r\n");
        break;
    default:
        conn_printf(s->c, AUTH_FAILED);
        break;
    }
    process(s);
    if (!s->busy && !conn_closing(s->c))
        conn_resume(s->c);
}

static void start_login(struct pop3_session *s, const char *user, size_t ulen, const char *pw,
                        size_t pwlen)
{
    s->login = auth_login_start(conn_auth(s->c), user, ulen, pw, pwlen, conn_info(s->c)->peer,
                                on_login_done, s);
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
            conn_printf(s->c, "USER\r\nSASL " PROTO_SASL_MECHS "\r\n");
    }
    conn_printf(s->c, "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION coffre\r\n.\r\n");
}

static void cmd_stls(struct pop3_session *s, const char *arg, size_t len)
{
    if (conn_is_tls(s->c)) {
        err_reply(s, "TLS is already active.");
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
        err_reply(s, "Usage: USER name");
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
        err_reply(s, "USER first.");
        return;
    }
    s->have_user = false;
    start_login(s, s->user, s->user_len, arg, len);
}

static void sasl_result(struct pop3_session *s, int r, const char *challenge)
{
    switch (r) {
    case SASL_CONTINUE:
        s->sasl_active = true;
        conn_printf(s->c, "+ %s\r\n", challenge);
        return;
    case SASL_DONE:
        s->sasl_active = false;
        start_login(s, s->sasl.user, s->sasl.user_len, s->sasl.pass, s->sasl.pass_len);
        break;
    case SASL_CANCEL:
        s->sasl_active = false;
        conn_printf(s->c, "-ERR Authentication cancelled.\r\n");
        break;
    default:
        s->sasl_active = false;
        err_reply(s, "Invalid base64 or SASL message.");
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
            conn_printf(s->c, "PLAIN\r\nLOGIN\r\n");
        conn_printf(s->c, ".\r\n");
        return;
    }
    if (!conn_plaintext_auth_ok(s->c)) {
        conn_printf(s->c, NEED_TLS);
        return;
    }
    sp = memchr(arg, ' ', len);
    mlen = sp ? (size_t)(sp - arg) : len;
    if (proto_sasl_start(&s->sasl, arg, mlen) < 0) {
        err_reply(s, "Unsupported authentication mechanism.");
        return;
    }
    if (sp) {
        const char *ir = sp + 1;
        size_t irlen = len - mlen - 1;
        if (irlen == 0) {
            err_reply(s, "Invalid initial response.");
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
    conn_printf(s->c, "+OK Logging out.\r\n");
    s->state = POP3_QUIT;
    conn_close(s->c);
}

static const struct pop3_command commands[] = {
    {"CAPA", cmd_capa, POP3_AUTHORIZATION | POP3_TRANSACTION},
    {"STLS", cmd_stls, POP3_AUTHORIZATION},
    {"USER", cmd_user, POP3_AUTHORIZATION},
    {"PASS", cmd_pass, POP3_AUTHORIZATION},
    {"AUTH", cmd_auth, POP3_AUTHORIZATION},
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

    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strlen(commands[i].name) != n || strncasecmp(commands[i].name, line, n))
            continue;
        if (!(commands[i].states & s->state)) {
            err_reply(s, "Command not valid in this state.");
            return;
        }
        commands[i].fn(s, arg, alen);
        return;
    }
    err_reply(s, "Unknown command.");
}

static void process(struct pop3_session *s)
{
    while (!s->busy && !conn_closing(s->c) && conn_write_queued(s->c) < CONN_WRITE_HIGH) {
        const char *line;
        size_t len;
        int r = linebuf_line(&s->in, &line, &len);
        if (r == LINEBUF_MORE)
            break;
        if (r == LINEBUF_TOOLONG) {
            conn_printf(s->c, "-ERR Line too long.\r\n");
            s->state = POP3_QUIT;
            conn_close(s->c);
            return;
        }
        if (s->sasl_active) {
            const char *challenge = "";
            int sr = len ? proto_sasl_step(&s->sasl, line, len, &challenge) : SASL_BAD;
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
    if (s->state == POP3_QUIT || s->busy)
        return;
    process(s);
    if (!s->busy && !conn_closing(c))
        conn_resume(c);
}

static void on_timeout(struct conn *c)
{
    struct pop3_session *s = conn_proto(c);
    /* RFC 1939: a timeout closes without entering UPDATE: nothing is deleted */
    conn_printf(c, "-ERR Autologout; idle for too long.\r\n");
    s->state = POP3_QUIT;
    conn_close(c);
}

static void on_shutdown(struct conn *c)
{
    struct pop3_session *s = conn_proto(c);
    conn_printf(c, "-ERR [SYS/TEMP] Server shutting down.\r\n");
    s->state = POP3_QUIT;
    conn_close(c);
}

static void on_close(struct conn *c)
{
    struct pop3_session *s = conn_proto(c);
    if (!s)
        return;
    if (s->login)
        auth_login_cancel(s->login);
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
    .busy_reply = "-ERR [SYS/TEMP] Too many connections; try again later.\r\n",
};
