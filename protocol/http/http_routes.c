/* What the HTTP listener serves: /metrics, /health, autoconfig and
 * autodiscover (the TLS listener, meant for mail clients, only the last
 * two). Anything else is 404; a known path asked with another method is
 * 405 with Allow. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "protocol/http/http.h"
#include "protocol/http/http_int.h"
#include "server/base/config.h"
#include "server/base/metrics.h"

#define OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define XML "application/xml; charset=utf-8"

static http_listeners_fn listeners_fn;
static void *listeners_arg;

void http_set_listener_check(http_listeners_fn fn, void *arg)
{
    listeners_fn = fn;
    listeners_arg = arg;
}

static bool path_is(const struct http_request *r, const char *p)
{
    return r->path_len == strlen(p) && !memcmp(r->path, p, r->path_len);
}

static void not_allowed(struct http_session *s, const char *allow)
{
    http_respond(s, 405, "text/plain; charset=utf-8", allow, "Method Not Allowed\n", 19);
}

static void answer_buf(struct http_session *s, int status, const char *type, struct buf *b)
{
    if (b->oom) {
        http_respond_text(s, 500, "out of memory");
        return;
    }
    if (status != 200)
        type = "text/plain; charset=utf-8";
    http_respond(s, status, type, NULL, b->p ? b->p : "", b->len);
}

void http_health_answer(struct http_session *s, const char *problem)
{
    char text[512];

    if (problem) {
        snprintf(text, sizeof(text), "unhealthy: %s", problem);
        http_respond_text(s, 503, text);
    } else {
        http_respond_text(s, 200, "ok");
    }
}

static bool health(struct http_session *s)
{
    char why[256] = "";
    const char *problem = NULL;

    if (listeners_fn && !listeners_fn(listeners_arg, why, sizeof(why))) {
        http_health_answer(s, why);
        return true;
    }
    switch (http_probe->start(s, s->c, &problem)) {
    case 0:
        return false;
    case 1:
        http_health_answer(s, problem);
        return true;
    default:
        http_health_answer(s, "the data directory's probe cannot start");
        return true;
    }
}

bool http_route(struct http_session *s, const struct http_request *r)
{
    const struct conf *cf = conn_conf(s->c);
    bool get = r->method == HTTP_GET || r->method == HTTP_HEAD;
    struct buf b = {0};
    int status;

    if (path_is(r, cf->auth_http_path) && !conn_is_tls(s->c)) {
        /* nginx's auth_http speaks plain HTTP, from proxy_networks */
        return http_authhttp(s, r);
    } else if ((path_is(r, "/metrics") || path_is(r, "/health")) && conn_is_tls(s->c)) {
        /* http_tls_listen faces the mail clients of the Internet: the
         * server's figures stay on http_listen */
        http_respond_text(s, 404, "Not Found");
    } else if (path_is(r, "/metrics")) {
        if (!get) {
            not_allowed(s, "Allow: GET, HEAD\r\n");
            return true;
        }
        metrics_render(&b);
        answer_buf(s, 200, OPENMETRICS, &b);
    } else if (path_is(r, "/health")) {
        if (!get) {
            not_allowed(s, "Allow: GET, HEAD\r\n");
            return true;
        }
        return health(s);
    } else if (path_is(r, "/.well-known/autoconfig/mail/config-v1.1.xml") ||
               path_is(r, "/mail/config-v1.1.xml")) {
        if (!get) {
            not_allowed(s, "Allow: GET, HEAD\r\n");
            return true;
        }
        status = http_autoconfig(cf, conn_hostname(s->c), r, &b);
        answer_buf(s, status, XML, &b);
    } else if (r->path_len == strlen("/autodiscover/autodiscover.xml") &&
               !strncasecmp(r->path, "/autodiscover/autodiscover.xml", r->path_len)) {
        if (r->method != HTTP_POST) {
            not_allowed(s, "Allow: POST\r\n");
            return true;
        }
        status = http_autodiscover(cf, conn_hostname(s->c), r->body, r->content_length, &b);
        answer_buf(s, status, XML, &b);
    } else {
        http_respond_text(s, 404, "Not Found");
    }
    buf_free(&b);
    return true;
}
