/* LMTP session (RFC 2033): greeting, the command table with the phases each
 * command is allowed in, the input loop that answers pipelined commands in
 * order (input is held while a command waits on the thread pool), timeouts
 * and the session's end. Commands are in lmtp_cmd.c, message bodies and
 * delivery in lmtp_deliver.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/lmtp/lmtp.h"
#include "protocol/lmtp/lmtp_int.h"
#include "server/base/config.h"
#include "server/base/log.h"

enum {
    P_GREETED = 1 << LMTP_GREETED,
    P_READY = 1 << LMTP_READY,
    P_MAIL = 1 << LMTP_MAIL,
    P_ANY = P_GREETED | P_READY | P_MAIL,
};

static void cmd_noop(struct lmtp_session *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    lmtp_reply(s, "250 2.0.0 OK");
}

static void cmd_quit(struct lmtp_session *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    conn_printf(s->c, "221 2.0.0 %s closing connection\r\n", conn_hostname(s->c));
    lmtp_end_session(s);
}

static void cmd_helo(struct lmtp_session *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    lmtp_bad(s, "500 5.5.1 This is LMTP: use LHLO");
}

static const struct {
    const char *name;
    lmtp_cmd_fn *fn;
    unsigned phases;
    bool needs_arg;
} commands[] = {
    {"LHLO", lmtp_cmd_lhlo, P_ANY, true},  {"MAIL", lmtp_cmd_mail, P_READY, true},
    {"RCPT", lmtp_cmd_rcpt, P_MAIL, true}, {"DATA", lmtp_cmd_data, P_MAIL, false},
    {"BDAT", lmtp_cmd_bdat, P_ANY, true},  {"RSET", lmtp_cmd_rset, P_ANY, false},
    {"NOOP", cmd_noop, P_ANY, false},      {"QUIT", cmd_quit, P_ANY, false},
    {"VRFY", lmtp_cmd_vrfy, P_ANY, false}, {"HELO", cmd_helo, P_ANY, false},
    {"EHLO", cmd_helo, P_ANY, false},
};

void lmtp_reply(struct lmtp_session *s, const char *line)
{
    conn_printf(s->c, "%s\r\n", line);
}

void lmtp_bad(struct lmtp_session *s, const char *line)
{
    lmtp_reply(s, line);
    if (++s->bad_count >= conn_conf(s->c)->max_bad_commands) {
        lmtp_reply(s, "421 4.7.0 Too many invalid commands");
        lmtp_end_session(s);
    }
}

void lmtp_end_session(struct lmtp_session *s)
{
    lmtp_end_txn(s);
    s->phase = LMTP_QUIT;
    conn_close(s->c);
}

static const char *out_of_order(const struct lmtp_session *s, const char *name)
{
    if (s->phase == LMTP_GREETED)
        return "503 5.5.1 Send LHLO first";
    if (!strcmp(name, "MAIL"))
        return "503 5.5.1 Nested MAIL command";
    if (!strcmp(name, "RCPT"))
        return "503 5.5.1 Send MAIL first";
    return "503 5.5.1 Send MAIL and RCPT first";
}

static void execute(struct lmtp_session *s, const char *line, size_t len)
{
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (vlen != 4 || strncasecmp(line, commands[i].name, 4))
            continue;
        const char *arg = line + vlen;
        size_t alen = len - vlen;
        if (alen) { /* skip the one space after the verb */
            arg++;
            alen--;
        }
        if (commands[i].needs_arg && alen == 0) {
            lmtp_bad(s, "501 5.5.4 Syntax: argument required");
            return;
        }
        if (!(commands[i].phases & (1u << s->phase))) {
            lmtp_bad(s, out_of_order(s, commands[i].name));
            return;
        }
        commands[i].fn(s, arg, alen);
        return;
    }
    lmtp_bad(s, "500 5.5.2 Command unrecognized");
}

static void process(struct lmtp_session *s)
{
    while (!conn_closing(s->c) && !s->busy && conn_write_queued(s->c) < CONN_WRITE_HIGH) {
        const char *line;
        size_t len;
        int r;

        if (s->phase == LMTP_DATA || s->phase == LMTP_BDAT) {
            if (!lmtp_body_input(s))
                break;
            continue;
        }
        r = linebuf_line(&s->in, &line, &len);
        if (r == LINEBUF_MORE)
            break;
        if (r != LINEBUF_LINE) {
            /* said as soon as the line passes the limit, end or not */
            lmtp_reply(s, "500 5.5.2 Line too long");
            lmtp_end_session(s);
            return;
        }
        execute(s, line, len);
    }
}

static void say_goodbye(struct lmtp_session *s)
{
    conn_printf(s->c, "421 4.3.2 %s shutting down\r\n", conn_hostname(s->c));
    lmtp_end_session(s);
}

void lmtp_wait(struct lmtp_session *s, struct proto_job *j)
{
    s->busy = true;
    s->job = j;
    conn_pause(s->c);
}

void lmtp_resume(struct lmtp_session *s)
{
    s->busy = false;
    s->job = NULL;
    s->job_on_txn = false;
    if (s->phase == LMTP_QUIT || conn_closing(s->c))
        return;
    if (s->shutdown_pending) {
        say_goodbye(s);
        return;
    }
    process(s);
    if (!s->busy && !conn_closing(s->c) && conn_write_queued(s->c) < CONN_WRITE_HIGH)
        conn_resume(s->c);
}

static int on_open(struct conn *c)
{
    struct lmtp_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->c = c;
    s->phase = LMTP_GREETED;
    linebuf_init(&s->in, conn_conf(c)->max_line_length);
    conn_set_proto(c, s);
    conn_set_logged_in(c); /* the MTA does not log in: no login deadline */
    conn_set_timeout(c, conn_conf(c)->lmtp_idle_timeout_ms);
    conn_printf(c, "220 %s LMTP coffre ready\r\n", conn_hostname(c));
    return 0;
}

static void on_input(struct conn *c, const char *buf, size_t len)
{
    struct lmtp_session *s = conn_proto(c);
    if (s->phase == LMTP_QUIT)
        return;
    if (linebuf_append(&s->in, buf, len) < 0) {
        lmtp_reply(s, "421 4.3.0 Out of memory");
        lmtp_end_session(s);
        return;
    }
    process(s);
    if (s->busy || conn_write_queued(c) >= CONN_WRITE_HIGH)
        conn_pause(c);
}

static void on_drain(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    if (s->phase == LMTP_QUIT || s->busy)
        return;
    process(s);
    if (!s->busy && !conn_closing(c))
        conn_resume(c);
}

static void on_timeout(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    if (s->busy) { /* a slow disk is not an idle client */
        conn_set_timeout(c, conn_conf(c)->lmtp_idle_timeout_ms);
        return;
    }
    conn_printf(c, "421 4.4.2 %s idle timeout, closing connection\r\n", conn_hostname(c));
    lmtp_end_session(s);
}

static void on_shutdown(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    if (s->busy) { /* let a delivery in progress get its answer out */
        s->shutdown_pending = true;
        return;
    }
    say_goodbye(s);
}

static void describe(struct conn *c, struct conn_state *st)
{
    static const char *const names[] = {
        [LMTP_GREETED] = "ready", [LMTP_READY] = "ready", [LMTP_MAIL] = "transaction",
        [LMTP_DATA] = "data",     [LMTP_BDAT] = "data",   [LMTP_QUIT] = "closing",
    };
    struct lmtp_session *s = conn_proto(c);
    st->state = s->busy ? "delivering" : names[s->phase];
}

static void on_close(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    if (!s)
        return;
    if (s->job) {
        proto_job_cancel(s->job);
        s->job = NULL;
        /* the job's free_fn owns a transaction it was working on */
        if (s->txn && s->job_on_txn) {
            s->txn->orphan = true;
            s->txn = NULL;
        }
    }
    if (s->req) {
        mailuser_open_cancel(s->req);
        s->req = NULL;
    }
    lmtp_end_txn(s);
    linebuf_free(&s->in);
    free(s);
    conn_set_proto(c, NULL);
}

const struct conn_handler lmtp_handler = {
    .name = "lmtp",
    .on_open = on_open,
    .on_input = on_input,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .describe = describe, /* a kick is a shutdown: after the delivery in progress */
    .busy_reply = "421 4.3.2 Too many connections; try again later\r\n",
    .proxy_refused_reply = "421 4.7.0 PROXY header refused from this address\r\n",
};
