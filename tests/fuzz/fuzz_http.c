/* libFuzzer target for HTTP: the session (request parser, pipelining,
 * body reading, routes, autoconfig and autodiscover) fed arbitrary client
 * bytes in arbitrary chunks, with GET /health's probe a stand-in whose
 * answer comes between chunks as a pool job's would; and the head parser
 * and the autodiscover reader alone on the same bytes, checking that what
 * they return lies inside their input. Input: byte 0 picks TLS, the chunk
 * size and the probe's result; the rest is the client. */
#include <stdlib.h>
#include <string.h>

#include "protocol/http/http.h"
#include "protocol/http/http_int.h"
#include "server/base/config.h"
#include "tests/fuzz/fake_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http_session *waiting;
static bool probe_ok;

static int fake_start(struct http_session *s, struct conn *c, const char **problem)
{
    if (waiting)
        abort(); /* one request of one session at a time */
    (void)c;
    (void)problem;
    waiting = s;
    s->probe_waiting = true;
    return 0;
}

static void fake_cancel(struct http_session *s)
{
    if (s != waiting || !s->probe_waiting)
        abort();
    waiting = NULL;
    s->probe_waiting = false;
}

static const struct http_probe_ops fake_probe = {.start = fake_start, .cancel = fake_cancel};

static void finish_probe(void)
{
    struct http_session *s = waiting;
    if (!s)
        return;
    waiting = NULL;
    s->probe_waiting = false;
    http_session_probe_done(s, probe_ok ? NULL : "data directory /x: cannot create a file in it");
    probe_ok = !probe_ok;
}

static void inside(const char *p, size_t len, const char *q, size_t qlen)
{
    if (q && (q < p || q + qlen > p + len))
        abort();
}

static void parse_alone(const char *p, size_t len, const struct conf *cf)
{
    const struct http_limits lim = {cf->http_max_request_line, cf->http_max_header_bytes,
                                    cf->http_max_headers};
    struct http_request r;
    const char *why = NULL;
    struct http_scan scan = {0};

    memset(&r, 0, sizeof(r));
    long n = http_parse_head(p, len, &scan, &lim, &r, &why);
    if (n < 0 && (!why || n < -599 || n > -400))
        abort();
    if (n > 0) {
        if ((size_t)n > len || (size_t)n > lim.max_header_bytes || r.path[0] != '/')
            abort();
        if (r.path_len > 1)
            inside(p, (size_t)n, r.path, r.path_len);
        inside(p, (size_t)n, r.query, r.query_len);
        if (r.host_len)
            inside(p, (size_t)n, r.host, r.host_len);
    }
    struct buf b = {0};
    int st = http_autodiscover(cf, "fuzz.example", p, len, &b);
    if (st != 200 && st != 400)
        abort();
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf *cf = fake_conn_conf();

    if (size < 1)
        return 0;
    /* small limits reach the edges sooner */
    cf->http_max_request_line = 256;
    cf->http_max_header_bytes = 1024;
    cf->http_max_headers = 16;
    cf->http_max_body = 1024;
    cf->http_max_pipeline = 4;
    http_probe = &fake_probe;
    waiting = NULL;

    uint8_t flags = data[0];
    parse_alone((const char *)data + 1, size - 1, cf);

    struct conn *c = fake_conn_new(flags & 1, false);
    const struct conn_handler *h = &http_handler;
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    size_t chunk = 1 + ((flags >> 2) & 0x3f) * 7;

    probe_ok = flags & 2;
    if (h->on_open(c) < 0)
        return 0;
    while (left && !conn_closing(c)) {
        size_t n = left < chunk ? left : chunk;
        h->on_input(c, (const char *)p, n);
        p += n;
        left -= n;
        finish_probe();
        h->on_drain(c);
    }
    if (!conn_closing(c))
        h->on_timeout(c);
    h->on_close(c);
    if (waiting)
        abort(); /* on_close cancels the probe's wait */
    return 0;
}
