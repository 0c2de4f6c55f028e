/* Whether a slot's port accepts connections, asked by auth_http before it
 * sends nginx there: nginx that cannot reach the slot tells its client
 * "internal server error", where a slot that is down should cost its
 * accounts a temporary failure only. A non-blocking TCP connect on the
 * loop, bounded by auth_http_slot_check_timeout and closed as soon as it
 * is made (the slot sees a connection that sends nothing); its result is
 * kept per address for auth_http_slot_check_ttl, and logins that come
 * while a probe runs wait for it rather than open their own.
 *
 * The table and the probes' handles are static, one row per slot address:
 * a row's handles are closed (both close callbacks in) before its waiters
 * are told, so a row is either idle or owns open handles, and nothing is
 * left to free when the daemon closes every handle at exit. Loop thread. */
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "protocol/http/http_int.h"
#include "server/base/config.h"
#include "server/base/log.h"

#define ROWS 64

enum row_state { ROW_FREE, ROW_KNOWN, ROW_PROBING };

struct row {
    enum row_state state;
    char host[64];
    unsigned port;
    bool up;
    char why[64];  /* the last failure, for the log */
    uint64_t at;   /* uv_now when the result came, for the ttl */
    uint64_t used; /* uv_now of the last look-up, for reuse of rows */
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_timer_t timer;
    unsigned open; /* handles not closed yet */
    bool decided;  /* the probe's result is in, its handles closing */
    struct http_slotcheck_wait *waiters;
};

static struct row rows[ROWS];

static void unlink_wait(struct http_slotcheck_wait *w)
{
    if (!w->pprev)
        return;
    *w->pprev = w->next;
    if (w->next)
        w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
}

/* Both handles closed: the waiters are told, each taken off the list
 * before its callback (which may answer, resume its session, and start or
 * cancel other waits). */
static void row_closed(struct row *r)
{
    struct http_slotcheck_wait *list = r->waiters;

    r->waiters = NULL;
    r->state = ROW_KNOWN;
    if (list)
        list->pprev = &list;
    while (list) {
        struct http_slotcheck_wait *w = list;
        unlink_wait(w);
        w->cb(w->arg, r->up, r->why);
    }
}

static void on_close(uv_handle_t *h)
{
    struct row *r = h->data;

    if (--r->open == 0)
        row_closed(r);
}

/* The result is in: remembered, the probe's handles closed (the
 * connection at once, before a byte is sent). */
static void decide(struct row *r, bool up, const char *why)
{
    if (r->decided)
        return;
    r->decided = true;
    r->up = up;
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->at = uv_now(r->timer.loop);
    if (!up)
        log_warn("auth_http slot check: %s:%u does not accept connections (%s)", r->host, r->port,
                 why);
    else
        log_debug("auth_http slot check: %s:%u accepts connections", r->host, r->port);
    uv_close((uv_handle_t *)&r->tcp, on_close);
    uv_close((uv_handle_t *)&r->timer, on_close);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct row *r = req->data;

    /* UV_ECANCELED: closed by the timer, already decided */
    decide(r, status == 0, status == 0 ? "" : uv_strerror(status));
}

static void on_timer(uv_timer_t *t)
{
    decide(t->data, false, "no answer within auth_http_slot_check_timeout");
}

/* A row for host:port: its own, or a free one, or the one least recently
 * used that no probe holds; NULL when every row is probing. */
static struct row *find_row(const char *host, unsigned port)
{
    struct row *spare = NULL;

    for (size_t i = 0; i < ROWS; i++) {
        struct row *r = &rows[i];
        if (r->state != ROW_FREE && r->port == port && !strcmp(r->host, host))
            return r;
        if (r->state == ROW_PROBING)
            continue;
        if (!spare || r->state == ROW_FREE || (spare->state != ROW_FREE && r->used < spare->used))
            spare = r;
    }
    if (spare) {
        memset(spare, 0, sizeof(*spare));
        snprintf(spare->host, sizeof(spare->host), "%s", host);
        spare->port = port;
        spare->state = ROW_FREE;
    }
    return spare;
}

static int start_probe(struct row *r, uv_loop_t *loop, const struct sockaddr *sa,
                       unsigned timeout_ms)
{
    int e;

    r->decided = false;
    r->waiters = NULL;
    if ((e = uv_tcp_init(loop, &r->tcp)) < 0)
        return e;
    r->tcp.data = r;
    r->open = 1;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->open = 2;
    r->req.data = r;
    r->state = ROW_PROBING;
    e = uv_tcp_connect(&r->req, &r->tcp, sa, on_connect);
    if (e < 0) {
        /* refused before any packet (no route): closed, decided now */
        decide(r, false, uv_strerror(e));
        return 0;
    }
    uv_timer_start(&r->timer, on_timer, timeout_ms, 0);
    return 0;
}

int http_slotcheck(struct uv_loop_s *loop, const struct conf *cf, const char *host, unsigned port,
                   struct http_slotcheck_wait *w, http_slotcheck_cb cb, void *arg, const char **why)
{
    struct sockaddr_storage ss;
    struct row *r;
    uint64_t now = uv_now(loop);

    *why = "";
    if (!cf->auth_http_slot_check_timeout_ms || strlen(host) >= sizeof(r->host))
        return 1;
    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0)
        return 1; /* not an address: nginx says so itself */
    r = find_row(host, port);
    if (!r) {
        log_debug("auth_http slot check: every row busy; %s:%u not checked", host, port);
        return 1;
    }
    r->used = now;
    if (r->state == ROW_KNOWN && now - r->at < cf->auth_http_slot_check_ttl_ms) {
        *why = r->why;
        return r->up ? 1 : 0;
    }
    if (r->state != ROW_PROBING) {
        int e =
            start_probe(r, loop, (const struct sockaddr *)&ss, cf->auth_http_slot_check_timeout_ms);
        if (e < 0) {
            log_warn("auth_http slot check: %s:%u: cannot probe (%s); not checked", host, port,
                     uv_strerror(e));
            r->state = ROW_FREE;
            return 1;
        }
    }
    w->cb = cb;
    w->arg = arg;
    w->next = r->waiters;
    w->pprev = &r->waiters;
    if (r->waiters)
        r->waiters->pprev = &w->next;
    r->waiters = w;
    return -1;
}

void http_slotcheck_cancel(struct http_slotcheck_wait *w)
{
    unlink_wait(w);
}
