/* The HTTP session: input buffering, one request at a time in the order
 * they came (pipelining, bounded by http_max_pipeline), the head and body
 * deadlines, keep-alive and Connection: close, and the response writer
 * (status line, Date, Content-Length; no Server field). A refused request
 * is answered and the connection closed, since what follows it cannot be
 * framed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "protocol/http/http.h"
#include "protocol/http/http_int.h"
#include "protocol/linebuf.h"
#include "server/base/config.h"
#include "server/base/log.h"

static void process(struct http_session *s);

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static unsigned long long conn_id(struct http_session *s)
{
    return (unsigned long long)conn_info(s->c)->id;
}

/* IMF-fixdate (RFC 9110 5.6.7), without the locale's names. */
static void http_date(char out[40])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;

    if (!gmtime_r(&t, &tm)) {
        snprintf(out, 40, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void http_respond(struct http_session *s, int status, const char *type, const char *extra,
                  const char *body, size_t len)
{
    struct buf b = {0};
    char date[40];

    http_date(date);
    if (status >= 400 && status != 404 && status != 405 && status != 503)
        s->force_close = true; /* what follows a refused request cannot be framed */
    buf_printf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %zu\r\n", status,
               http_reason(status), date, len);
    if (type)
        buf_printf(&b, "Content-Type: %s\r\n", type);
    buf_str(&b, "Cache-Control: no-store\r\n");
    if (extra)
        buf_str(&b, extra);
    if (s->force_close || s->req.close)
        buf_str(&b, "Connection: close\r\n");
    buf_str(&b, "\r\n");
    if (s->req.method != HTTP_HEAD && len)
        buf_add(&b, body, len);
    if (b.oom) {
        buf_free(&b);
        conn_abort(s->c);
        return;
    }
    conn_write(s->c, b.p, b.len);
    buf_free(&b);
    if (status >= 400)
        log_info("conn=%llu http %d %s", conn_id(s), status, http_reason(status));
}

void http_respond_text(struct http_session *s, int status, const char *text)
{
    struct buf b = {0};
    buf_printf(&b, "%s\n", text);
    http_respond(s, status, "text/plain; charset=utf-8", NULL, b.oom ? "" : b.p, b.oom ? 0 : b.len);
    buf_free(&b);
}

/* A request refused before it was routed: answered, then closed. */
static void refuse(struct http_session *s, int status, const char *why)
{
    log_info("conn=%llu http request refused: %s", conn_id(s), why);
    s->force_close = true;
    if (status == 405)
        http_respond(s, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD, POST\r\n",
                     "Method Not Allowed\n", 19);
    else
        http_respond_text(s, status, http_reason(status));
    s->phase = HTTP_PH_DONE;
    conn_close(s->c);
}

/* The deadline of the request in progress, else the idle timeout. */
static void set_timer(struct http_session *s)
{
    const struct conf *cf = conn_conf(s->c);

    if (s->phase == HTTP_PH_DONE)
        conn_set_timeout(s->c, 0);
    else if (s->phase == HTTP_PH_WAIT)
        /* a login may be held back by the failure throttle first */
        conn_set_timeout(s->c, cf->http_header_timeout_ms +
                                   (s->authhttp ? cf->login_failure_delay_max_ms : 0));
    else if (s->stalled)
        conn_set_timeout(s->c, cf->http_idle_timeout_ms);
    else if (s->deadline) {
        uint64_t now = now_ms();
        conn_set_timeout(s->c, s->deadline > now ? (unsigned)(s->deadline - now) : 1);
    } else
        conn_set_timeout(s->c, cf->http_idle_timeout_ms);
}

static int on_open(struct conn *c)
{
    struct http_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->c = c;
    s->phase = HTTP_PH_HEAD;
    linebuf_init(&s->in, 0); /* bytes only: the head parser reads the lines */
    conn_set_proto(c, s);
    conn_set_logged_in(c); /* no login: the deadlines below apply */
    set_timer(s);
    return 0;
}

/* The current request is answered: on to the next one. */
static void finish_request(struct http_session *s)
{
    const char *done;
    linebuf_take(&s->in, (size_t)s->head_len + (size_t)s->req.content_length, &done);
    s->head_len = 0;
    memset(&s->scan, 0, sizeof(s->scan));
    s->deadline = 0;
    s->phase = HTTP_PH_HEAD;
    if (s->force_close || s->req.close) {
        s->phase = HTTP_PH_DONE;
        conn_close(s->c);
        return;
    }
    if (conn_write_queued(s->c) > CONN_WRITE_HIGH) {
        s->stalled = true;
        conn_pause(s->c);
    }
}

static void dispatch(struct http_session *s, const struct http_limits *lim)
{
    size_t whole = (size_t)s->head_len + (size_t)s->req.content_length;

    if (linebuf_pending(&s->in) > whole) {
        /* another request waits behind this one */
        if (++s->pipelined >= conn_conf(s->c)->http_max_pipeline)
            s->force_close = true;
    } else {
        s->pipelined = 0;
    }
    if (s->req.content_length) {
        /* the body came in later reads, which may have moved the buffer:
         * the head's fields are found again where it is now */
        struct http_scan sc = {0};
        const char *why;
        if (http_parse_head(linebuf_data(&s->in), (size_t)s->head_len, &sc, lim, &s->req, &why) !=
            s->head_len) {
            refuse(s, 500, "request head changed");
            return;
        }
        s->req.body = linebuf_data(&s->in) + s->head_len;
    }
    if (!http_route(s, &s->req)) {
        s->phase = HTTP_PH_WAIT;
        /* an auth_http request keeps reading (into the buffer, bounded by
         * on_input) so that nginx going away cancels its login */
        if (!s->authhttp)
            conn_pause(s->c);
        return;
    }
    finish_request(s);
}

static void process(struct http_session *s)
{
    const struct conf *cf = conn_conf(s->c);
    const struct http_limits lim = {
        .max_request_line = cf->http_max_request_line,
        .max_header_bytes = cf->http_max_header_bytes,
        .max_headers = cf->http_max_headers,
    };

    while (!s->stalled && !conn_closing(s->c)) {
        if (s->phase == HTTP_PH_HEAD) {
            /* empty lines before a request line (RFC 9112 2.2) */
            if (!s->scan.pos) {
                const char *p = linebuf_data(&s->in), *skipped;
                size_t n = 0, have = linebuf_pending(&s->in);
                while (n < have && (p[n] == '\r' || p[n] == '\n'))
                    n++;
                linebuf_take(&s->in, n, &skipped);
            }
            if (!linebuf_pending(&s->in))
                break;
            if (!s->deadline)
                s->deadline = now_ms() + cf->http_header_timeout_ms;
            const char *why = "";
            memset(&s->req, 0, sizeof(s->req));
            long n = http_parse_head(linebuf_data(&s->in), linebuf_pending(&s->in), &s->scan, &lim,
                                     &s->req, &why);
            if (n == HTTP_PARSE_MORE)
                break;
            if (n < 0) {
                s->req.close = true;
                refuse(s, (int)-n, why);
                return;
            }
            s->head_len = n;
            if (s->req.content_length > cf->http_max_body) {
                refuse(s, 413, "request body too large");
                return;
            }
            if (s->req.method == HTTP_POST && !s->req.has_length) {
                refuse(s, 411, "POST without Content-Length");
                return;
            }
            s->phase = HTTP_PH_BODY;
            if (s->req.expect_continue && s->req.content_length &&
                linebuf_pending(&s->in) - (size_t)n < s->req.content_length)
                conn_printf(s->c, "HTTP/1.1 100 Continue\r\n\r\n");
        }
        if (s->phase == HTTP_PH_BODY) {
            if (linebuf_pending(&s->in) < (size_t)s->head_len + s->req.content_length)
                break;
            dispatch(s, &lim);
            continue;
        }
        break; /* waiting or closing */
    }
}

static void on_input(struct conn *c, const char *buf, size_t len)
{
    struct http_session *s = conn_proto(c);
    const struct conf *cf = conn_conf(c);
    /* a request's head and body, and one read's worth behind them */
    size_t cap = (size_t)cf->http_max_header_bytes + cf->http_max_body + 65536;

    if (!s || s->phase == HTTP_PH_DONE)
        return;
    if (linebuf_pending(&s->in) + len > cap) {
        log_info("conn=%llu http input beyond %zu bytes; closing", conn_id(s), cap);
        s->phase = HTTP_PH_DONE;
        conn_abort(c);
        return;
    }
    if (linebuf_append(&s->in, buf, len) < 0) {
        s->phase = HTTP_PH_DONE;
        conn_abort(c);
        return;
    }
    if (s->phase == HTTP_PH_HEAD || s->phase == HTTP_PH_BODY)
        process(s);
    set_timer(s);
}

void http_session_resume(struct http_session *s)
{
    if (s->phase != HTTP_PH_WAIT)
        return;
    finish_request(s);
    if (s->phase == HTTP_PH_DONE)
        return;
    if (!s->stalled)
        conn_resume(s->c);
    process(s);
    set_timer(s);
}

void http_session_probe_done(struct http_session *s, const char *problem)
{
    http_health_answer(s, problem);
    http_session_resume(s);
}

static void on_drain(struct conn *c)
{
    struct http_session *s = conn_proto(c);

    if (!s || !s->stalled)
        return;
    s->stalled = false;
    if (s->phase == HTTP_PH_WAIT)
        return;
    conn_resume(c);
    process(s);
    set_timer(s);
}

static void on_timeout(struct conn *c)
{
    struct http_session *s = conn_proto(c);

    if (!s || s->phase == HTTP_PH_DONE)
        return;
    if (s->phase == HTTP_PH_WAIT && s->authhttp) {
        http_authhttp_abort(s, true);
        http_session_resume(s);
        return;
    }
    if (s->phase == HTTP_PH_WAIT) {
        /* a data directory that hangs a write is not healthy either */
        if (s->probe_waiting)
            http_probe->cancel(s);
        http_health_answer(s, "the data directory's write probe did not finish within "
                              "http_header_timeout");
        http_session_resume(s);
        return;
    }
    if (s->stalled) {
        log_info("conn=%llu http client not reading its answers; closing", conn_id(s));
        s->phase = HTTP_PH_DONE;
        conn_abort(c);
        return;
    }
    if ((s->phase == HTTP_PH_HEAD && linebuf_pending(&s->in)) || s->phase == HTTP_PH_BODY) {
        s->req.method = HTTP_GET;
        refuse(s, 408, "request not complete within http_header_timeout");
        return;
    }
    s->phase = HTTP_PH_DONE;
    conn_close(c);
}

static void on_shutdown(struct conn *c)
{
    conn_close(c);
}

static void on_close(struct conn *c)
{
    struct http_session *s = conn_proto(c);

    if (!s)
        return;
    if (s->probe_waiting)
        http_probe->cancel(s);
    http_authhttp_abort(s, false);
    conn_set_proto(c, NULL);
    linebuf_free(&s->in);
    free(s);
}

const struct conn_handler http_handler = {
    .name = "http",
    .on_open = on_open,
    .on_input = on_input,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .busy_reply = NULL,
};
