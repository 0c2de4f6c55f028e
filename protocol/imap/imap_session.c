/* IMAP session: greeting, assembling commands from lines and literals under
 * the configured limits, the command table with allowed states, dispatch,
 * and the session's end (LOGOUT, timeout, shutdown, too many errors). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap.h"
#include "protocol/imap/imap_private.h"
#include "server/config.h"
#include "server/log.h"

struct imap_command {
    const char *name;
    imap_cmd_fn *fn;
    unsigned states;
};

static const struct imap_command commands[] = {
    {"CAPABILITY", imap_cmd_capability, IMAP_ANY},
    {"NOOP", imap_cmd_noop, IMAP_ANY},
    {"LOGOUT", imap_cmd_logout, IMAP_ANY},
    {"STARTTLS", imap_cmd_starttls, IMAP_NOTAUTH},
    {"LOGIN", imap_cmd_login, IMAP_NOTAUTH},
    {"AUTHENTICATE", imap_cmd_authenticate, IMAP_NOTAUTH},
};

static void process(struct imap_session *s);

/* ---- replies ---- */

static void too_many_errors(struct imap_session *s)
{
    conn_printf(s->c, "* BYE Too many invalid commands.\r\n");
    s->state = IMAP_LOGOUT;
    conn_close(s->c);
}

void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    conn_printf(s->c, "%s %s %s\r\n", s->tag, status, text);
}

void imap_bad(struct imap_session *s, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    conn_printf(s->c, "%s BAD %s\r\n", s->tag[0] ? s->tag : "*", text);
    if (++s->bad_count >= conn_conf(s->c)->max_bad_commands)
        too_many_errors(s);
}

const char *imap_capabilities(struct imap_session *s)
{
    if (s->state != IMAP_NOTAUTH)
        return "IMAP4rev1 LITERAL+ SASL-IR";
    if (conn_is_tls(s->c))
        return "IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN AUTH=LOGIN";
    if (conn_plaintext_auth_ok(s->c))
        return "IMAP4rev1 LITERAL+ SASL-IR STARTTLS AUTH=PLAIN AUTH=LOGIN";
    return "IMAP4rev1 LITERAL+ SASL-IR STARTTLS LOGINDISABLED";
}

/* ---- command assembly ---- */

static int cmd_append(struct imap_session *s, const char *p, size_t len)
{
    const struct conf *cf = conn_conf(s->c);
    size_t limit = cf->max_line_length + (size_t)cf->max_literal_size;

    if (s->cmd_len + len > limit)
        return -1;
    if (s->cmd_len + len > s->cmd_cap) {
        size_t ncap = s->cmd_cap ? s->cmd_cap : 256;
        while (ncap < s->cmd_len + len)
            ncap *= 2;
        char *n = realloc(s->cmd, ncap);
        if (!n)
            return -1;
        s->cmd = n;
        s->cmd_cap = ncap;
    }
    memcpy(s->cmd + s->cmd_len, p, len);
    s->cmd_len += len;
    return 0;
}

static void cmd_reset(struct imap_session *s)
{
    if (s->cmd)
        explicit_bzero(s->cmd, s->cmd_len); /* may hold a LOGIN password */
    free(s->cmd);
    s->cmd = NULL;
    s->cmd_len = s->cmd_cap = 0;
    s->literal_left = 0;
}

/* A line ending in {N} or {N+} announces a literal. Returns 1 with *n and
 * *sync, 0 when the line has none, -1 when the number is malformed. */
static int literal_suffix(const char *line, size_t len, uint64_t *n, bool *sync)
{
    size_t i;
    uint64_t v = 0;

    if (len < 3 || line[len - 1] != '}')
        return 0;
    i = len - 2;
    *sync = true;
    if (line[i] == '+' || line[i] == '-') {
        *sync = false;
        if (i == 0)
            return 0;
        i--;
    }
    size_t digits_end = i + 1;
    while (i > 0 && isdigit((unsigned char)line[i]))
        i--;
    if (line[i] != '{' || i + 1 == digits_end)
        return 0;
    if (digits_end - (i + 1) > 19)
        return -1;
    for (size_t k = i + 1; k < digits_end; k++)
        v = v * 10 + (uint64_t)(line[k] - '0');
    *n = v;
    return 1;
}

/* Copies the tag of the command in cmd into s->tag ("*" when unusable). */
static bool take_tag(struct imap_session *s, const char *p, size_t len, size_t *taglen)
{
    size_t i = 0;
    while (i < len && p[i] != ' ' && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f &&
           !strchr("(){%*\"\\+", p[i]))
        i++;
    if (i == 0 || i >= IMAP_TAG_MAX || (i < len && p[i] != ' ')) {
        snprintf(s->tag, sizeof(s->tag), "*");
        return false;
    }
    memcpy(s->tag, p, i);
    s->tag[i] = '\0';
    *taglen = i;
    return true;
}

static void execute(struct imap_session *s)
{
    const char *p = s->cmd;
    size_t len = s->cmd_len, taglen, i;
    struct imap_args args;

    if (!take_tag(s, p, len, &taglen)) {
        imap_bad(s, "Invalid tag.");
        return;
    }
    if (taglen >= len) {
        imap_bad(s, "Missing command.");
        return;
    }
    p += taglen + 1;
    len -= taglen + 1;
    for (i = 0; i < len && isalpha((unsigned char)p[i]); i++)
        ;
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
        const struct imap_command *c = &commands[k];
        if (strlen(c->name) != i || strncasecmp(c->name, p, i))
            continue;
        if (!(c->states & s->state)) {
            imap_bad(s, "%s is not valid in this state.", c->name);
            return;
        }
        args.p = p + i;
        args.end = s->cmd + s->cmd_len;
        c->fn(s, &args);
        return;
    }
    imap_bad(s, "Unknown command.");
}

static void line_too_long(struct imap_session *s)
{
    conn_printf(s->c, "* BYE [TOOBIG] Command line too long.\r\n");
    log_info("conn=%llu imap: line over max_line_length, disconnecting",
             (unsigned long long)conn_info(s->c)->id);
    s->state = IMAP_LOGOUT;
    conn_close(s->c);
}

static void process(struct imap_session *s)
{
    const struct conf *cf = conn_conf(s->c);

    while (!s->busy && !conn_closing(s->c) && conn_write_queued(s->c) < CONN_WRITE_HIGH) {
        const char *line;
        size_t len;

        if (s->literal_left) {
            const char *p;
            size_t n = linebuf_take(&s->in, s->literal_left, &p);
            if (n == 0)
                break;
            if (cmd_append(s, p, n) < 0) {
                line_too_long(s);
                return;
            }
            s->literal_left -= n;
            continue;
        }

        int r = linebuf_line(&s->in, &line, &len);
        if (r == LINEBUF_MORE)
            break;
        if (r == LINEBUF_TOOLONG) {
            line_too_long(s);
            return;
        }
        if (s->sasl_active) {
            imap_auth_sasl_line(s, line, len);
            continue;
        }
        if (s->cmd_len == 0 && len == 0)
            continue; /* empty lines between commands are tolerated */

        uint64_t n;
        bool sync;
        int lit = literal_suffix(line, len, &n, &sync);
        if (cmd_append(s, line, len) < 0) {
            cmd_reset(s);
            line_too_long(s);
            return;
        }
        if (lit == 0) {
            execute(s);
            cmd_reset(s);
            continue;
        }
        if (lit < 0 || n > cf->max_literal_size || s->cmd_len + n > cf->max_line_length +
                                                                   cf->max_literal_size) {
            size_t taglen;
            take_tag(s, s->cmd, s->cmd_len, &taglen);
            cmd_reset(s);
            if (!sync) {
                /* the client sends the bytes anyway: no way to resynchronize */
                conn_printf(s->c, "* BYE [TOOBIG] Literal too large.\r\n");
                s->state = IMAP_LOGOUT;
                conn_close(s->c);
                return;
            }
            conn_printf(s->c, "%s NO [TOOBIG] Literal too large (at most %llu bytes).\r\n",
                        s->tag, (unsigned long long)cf->max_literal_size);
            continue;
        }
        if (cmd_append(s, "\r\n", 2) < 0) {
            cmd_reset(s);
            line_too_long(s);
            return;
        }
        s->literal_left = n;
        if (sync)
            conn_printf(s->c, "+ Ready for literal data\r\n");
        if (n == 0)
            continue;
    }
}

void imap_resume(struct imap_session *s)
{
    process(s);
    if (!s->busy && !conn_closing(s->c))
        conn_resume(s->c);
}

/* ---- connection handler ---- */

static int on_open(struct conn *c)
{
    struct imap_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->c = c;
    s->state = IMAP_NOTAUTH;
    linebuf_init(&s->in, conn_conf(c)->max_line_length);
    conn_set_proto(c, s);
    conn_printf(c, "* OK [CAPABILITY %s] coffre ready.\r\n", imap_capabilities(s));
    return 0;
}

static void on_input(struct conn *c, const char *buf, size_t len)
{
    struct imap_session *s = conn_proto(c);

    if (s->state == IMAP_LOGOUT)
        return;
    if (linebuf_append(&s->in, buf, len) < 0) {
        conn_close(c);
        return;
    }
    if (s->busy) {
        conn_pause(c); /* resumed when the pending command completes */
        return;
    }
    process(s);
    if (s->busy || conn_write_queued(c) >= CONN_WRITE_HIGH)
        conn_pause(c);
}

static void on_drain(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (s->state != IMAP_LOGOUT && !s->busy)
        imap_resume(s);
}

static void on_timeout(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    conn_printf(c, "* BYE Autologout; idle for too long.\r\n");
    s->state = IMAP_LOGOUT;
    conn_close(c);
}

static void on_shutdown(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    conn_printf(c, "* BYE Server shutting down.\r\n");
    s->state = IMAP_LOGOUT;
    conn_close(c);
}

static void on_close(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (!s)
        return;
    imap_auth_cancel(s);
    linebuf_free(&s->in);
    cmd_reset(s);
    free(s);
    conn_set_proto(c, NULL);
}

const struct conn_handler imap_handler = {
    .name = "imap",
    .on_open = on_open,
    .on_input = on_input,
    .on_tls_ready = NULL,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .busy_reply = "* BYE Too many connections; try again later.\r\n",
};
