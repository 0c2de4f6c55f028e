/* LMTP session: greeting, LHLO, NOOP, RSET, QUIT, answered in order for
 * pipelining clients. Mail transactions (MAIL, RCPT, DATA, BDAT) are not
 * served yet and get 502. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/linebuf.h"
#include "protocol/lmtp/lmtp.h"
#include "server/config.h"
#include "server/log.h"

enum lmtp_phase { LMTP_GREETED, LMTP_READY, LMTP_QUIT };

struct lmtp_session {
    struct conn *c;
    enum lmtp_phase phase;
    struct linebuf in;
    unsigned bad_count;
};

static bool verb_is(const char *line, size_t len, const char *verb)
{
    size_t n = strlen(verb);
    return len >= n && !strncasecmp(line, verb, n) && (len == n || line[n] == ' ');
}

static void bad(struct lmtp_session *s, const char *reply)
{
    conn_printf(s->c, "%s\r\n", reply);
    if (++s->bad_count >= conn_conf(s->c)->max_bad_commands) {
        conn_printf(s->c, "421 4.7.0 Too many invalid commands\r\n");
        s->phase = LMTP_QUIT;
        conn_close(s->c);
    }
}

static void execute(struct lmtp_session *s, const char *line, size_t len)
{
    if (verb_is(line, len, "LHLO")) {
        if (len <= 5) {
            bad(s, "501 5.5.4 Usage: LHLO hostname");
            return;
        }
        s->phase = LMTP_READY;
        conn_printf(s->c, "250-%s\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n",
                    conn_hostname(s->c));
        return;
    }
    if (verb_is(line, len, "NOOP")) {
        conn_printf(s->c, "250 2.0.0 OK\r\n");
        return;
    }
    if (verb_is(line, len, "RSET")) {
        conn_printf(s->c, "250 2.0.0 OK\r\n");
        return;
    }
    if (verb_is(line, len, "QUIT")) {
        conn_printf(s->c, "221 2.0.0 %s closing connection\r\n", conn_hostname(s->c));
        s->phase = LMTP_QUIT;
        conn_close(s->c);
        return;
    }
    if (verb_is(line, len, "HELO") || verb_is(line, len, "EHLO")) {
        bad(s, "500 5.5.1 This is LMTP: use LHLO");
        return;
    }
    if (verb_is(line, len, "MAIL") || verb_is(line, len, "RCPT") || verb_is(line, len, "DATA") ||
        verb_is(line, len, "BDAT") || verb_is(line, len, "VRFY")) {
        if (s->phase != LMTP_READY) {
            bad(s, "503 5.5.1 Send LHLO first");
            return;
        }
        bad(s, "502 5.5.1 Command not implemented");
        return;
    }
    bad(s, "500 5.5.2 Command unrecognized");
}

static void process(struct lmtp_session *s)
{
    while (!conn_closing(s->c) && conn_write_queued(s->c) < CONN_WRITE_HIGH) {
        const char *line;
        size_t len;
        int r = linebuf_line(&s->in, &line, &len);
        if (r == LINEBUF_MORE)
            break;
        if (r == LINEBUF_TOOLONG) {
            conn_printf(s->c, "500 5.5.2 Line too long\r\n");
            s->phase = LMTP_QUIT;
            conn_close(s->c);
            return;
        }
        execute(s, line, len);
    }
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
        conn_close(c);
        return;
    }
    process(s);
    if (conn_write_queued(c) >= CONN_WRITE_HIGH)
        conn_pause(c);
}

static void on_drain(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    if (s->phase == LMTP_QUIT)
        return;
    process(s);
    if (!conn_closing(c))
        conn_resume(c);
}

static void on_timeout(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    conn_printf(c, "421 4.4.2 %s idle timeout, closing connection\r\n", conn_hostname(c));
    s->phase = LMTP_QUIT;
    conn_close(c);
}

static void on_shutdown(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    conn_printf(c, "421 4.3.2 %s shutting down\r\n", conn_hostname(c));
    s->phase = LMTP_QUIT;
    conn_close(c);
}

static void on_close(struct conn *c)
{
    struct lmtp_session *s = conn_proto(c);
    if (!s)
        return;
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
    .busy_reply = "421 4.3.2 Too many connections; try again later\r\n",
};
