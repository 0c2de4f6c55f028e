/* Listening sockets for every service: TCP over IPv4 and IPv6, and unix
 * sockets for LMTP. Bound before the privilege drop. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/http/http.h"
#include "protocol/imap/imap.h"
#include "protocol/lmtp/lmtp.h"
#include "protocol/pop3/pop3.h"
#include "server/base/log.h"
#include "server/server.h"

/* ---- refused connections ---- */

#define REFUSED_LOG_INTERVAL_MS 1000
#define PAUSE_MS 100     /* out of descriptors with no reserve: wait that long */
#define ACCEPT_BURST 128 /* connections accepted per wake-up, for fairness */

static void log_refused(struct server *s)
{
    if (!s->refused_unlogged)
        return;
    log_warn("%llu connection(s) refused or failed since the last report: %s",
             (unsigned long long)s->refused_unlogged, s->refused_why);
    s->refused_unlogged = 0;
    s->refused_next_log_ms = uv_now(s->loop) + REFUSED_LOG_INTERVAL_MS;
}

static void restart_paused(struct server *s);

static void on_refuse_timer(uv_timer_t *t)
{
    struct server *s = t->data;
    log_refused(s);
    restart_paused(s);
}

static void arm_refuse_timer(struct server *s, uint64_t delay)
{
    if (!uv_is_active((uv_handle_t *)&s->refuse_timer) ||
        uv_timer_get_due_in(&s->refuse_timer) > delay)
        uv_timer_start(&s->refuse_timer, on_refuse_timer, delay, 0);
}

void server_note_refused(struct server *s, const struct listener *l, uint64_t n, const char *why)
{
    uint64_t now = uv_now(s->loop);

    (void)l;
    s->refused_unlogged += n;
    s->refused_why = why;
    if (now >= s->refused_next_log_ms)
        log_refused(s);
    else
        arm_refuse_timer(s, s->refused_next_log_ms - now);
}

/* ---- accepting ---- */

static void on_listen_ready(uv_poll_t *p, int status, int events);

static void restart_paused(struct server *s)
{
    for (struct listener *l = s->listeners; l; l = l->next) {
        if (l->paused) {
            l->paused = false;
            uv_poll_start(&l->poll, UV_READABLE, on_listen_ready);
        }
    }
}

static void take_reserve(struct server *s)
{
    if (s->reserve_fd < 0)
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors: the connections waiting cannot be served. Each is
 * accepted with the reserve descriptor and closed at once, so that its
 * client learns it now rather than after its own timeout, and counted. */
static void shed(struct listener *l, int lfd, int err)
{
    struct server *s = l->srv;
    uint64_t n = 0;
    int fd;

    if (s->reserve_fd >= 0) {
        close(s->reserve_fd);
        s->reserve_fd = -1;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0 || errno == EINTR) {
            if (fd >= 0) {
                close(fd);
                n++;
            }
        }
        take_reserve(s);
    }
    if (n) {
        server_note_refused(s, l, n, strerror(err));
        return;
    }
    /* nothing to accept with (no reserve, or a pool thread took it): stop
     * listening a moment rather than wake up at once for the same client */
    server_note_refused(s, l, 1, strerror(err));
    l->paused = true;
    uv_poll_stop(&l->poll);
    arm_refuse_timer(s, PAUSE_MS);
}

static void on_listen_ready(uv_poll_t *p, int status, int events)
{
    struct listener *l = p->data;
    int lfd;

    (void)events;
    if (status < 0) {
        server_note_refused(l->srv, l, 1, uv_strerror(status));
        return;
    }
    if (uv_fileno((uv_handle_t *)&l->h, &lfd) < 0)
        return;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_accept(l, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            shed(l, lfd, errno);
        else
            server_note_refused(l->srv, l, 1, strerror(errno));
        return;
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    if (--l->open_handles == 0)
        free(l);
}

/* lmtp_socket_user/group: so that the MTA's user may connect. */
static int socket_owner(const char *path, const struct conf *conf, char *err, size_t errlen)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;

    if (conf->lmtp_socket_user[0]) {
        struct passwd *pw = getpwnam(conf->lmtp_socket_user);
        if (!pw) {
            snprintf(err, errlen, "lmtp_socket_user: no such user %s", conf->lmtp_socket_user);
            return -1;
        }
        uid = pw->pw_uid;
    }
    if (conf->lmtp_socket_group[0]) {
        struct group *gr = getgrnam(conf->lmtp_socket_group);
        if (!gr) {
            snprintf(err, errlen, "lmtp_socket_group: no such group %s", conf->lmtp_socket_group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) < 0) {
        snprintf(err, errlen, "cannot set the owner of %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int listen_one(struct server *s, const struct conf_addr *a, const char *service,
                      const struct conn_handler *h, bool implicit_tls, char *err, size_t errlen)
{
    struct listener *l = calloc(1, sizeof(*l));
    uv_os_fd_t fd = -1;
    int r;

    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->srv = s;
    l->service = service;
    l->handler = h;
    l->implicit_tls = implicit_tls;
    l->is_unix = a->is_unix;
    snprintf(l->text, sizeof(l->text), "%s", a->text);
    if (a->is_unix) {
        uv_pipe_init(s->loop, &l->h.pipe, 0);
        unlink(a->path); /* a stale socket from an earlier run */
        r = uv_pipe_bind(&l->h.pipe, a->path);
        if (r == 0 && chmod(a->path, s->conf.lmtp_socket_mode) < 0)
            r = -errno;
        if (r == 0 && socket_owner(a->path, &s->conf, err, errlen) < 0) {
            l->h.pipe.data = l;
            l->open_handles = 1;
            uv_close((uv_handle_t *)&l->h, on_listener_closed);
            return -1;
        }
    } else {
        unsigned flags = a->ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
        uv_tcp_init(s->loop, &l->h.tcp);
        r = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&a->ss, flags);
    }
    l->h.pipe.data = l;
    l->open_handles = 1;
    if (r == 0)
        r = uv_fileno((uv_handle_t *)&l->h, &fd);
    if (r == 0 && listen(fd, 511) < 0)
        r = -errno;
    if (r == 0)
        r = uv_poll_init_socket(s->loop, &l->poll, fd);
    if (r == 0) {
        l->poll.data = l;
        l->open_handles++;
        r = uv_poll_start(&l->poll, UV_READABLE, on_listen_ready);
    }
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on %s (%s): %s", a->text, service, uv_strerror(r));
        if (l->open_handles == 2)
            uv_close((uv_handle_t *)&l->poll, on_listener_closed);
        uv_close((uv_handle_t *)&l->h, on_listener_closed);
        return -1;
    }
    l->next = s->listeners;
    s->listeners = l;
    log_info("listening on %s (%s)", a->text, service);
    return 0;
}

/* GET /health: every listener accepts (none paused for want of
 * descriptors). */
static bool listeners_ok(void *arg, char *why, size_t whylen)
{
    struct server *s = arg;
    for (struct listener *l = s->listeners; l; l = l->next) {
        if (l->paused) {
            snprintf(why, whylen, "listener %s (%s) paused: out of file descriptors", l->text,
                     l->service);
            return false;
        }
    }
    return true;
}

int server_listen_all(struct server *s, char *err, size_t errlen)
{
    const struct {
        const struct conf_addr_list *list;
        const char *service;
        const struct conn_handler *h;
        bool tls;
    } svc[] = {
        {&s->conf.imap_listen, "imap", &imap_handler, false},
        {&s->conf.imaps_listen, "imaps", &imap_handler, true},
        {&s->conf.pop3_listen, "pop3", &pop3_handler, false},
        {&s->conf.pop3s_listen, "pop3s", &pop3_handler, true},
        {&s->conf.lmtp_listen, "lmtp", &lmtp_handler, false},
        {&s->conf.http_listen, "http", &http_handler, false},
        {&s->conf.http_tls_listen, "https", &http_handler, true},
    };

    s->reserve_fd = -1;
    take_reserve(s);
    http_set_listener_check(listeners_ok, s);
    uv_timer_init(s->loop, &s->refuse_timer);
    s->refuse_timer.data = s;
    uv_unref((uv_handle_t *)&s->refuse_timer);
    for (size_t i = 0; i < sizeof(svc) / sizeof(svc[0]); i++)
        for (size_t j = 0; j < svc[i].list->n; j++)
            if (listen_one(s, &svc[i].list->a[j], svc[i].service, svc[i].h, svc[i].tls, err,
                           errlen) < 0)
                return -1;
    return 0;
}

void server_close_listeners(struct server *s)
{
    struct listener *l = s->listeners, *next;
    s->listeners = NULL;
    for (; l; l = next) {
        next = l->next;
        if (l->is_unix) {
            char path[256];
            size_t len = sizeof(path);
            if (uv_pipe_getsockname(&l->h.pipe, path, &len) == 0 && len < sizeof(path)) {
                path[len] = '\0';
                unlink(path);
            }
        }
        /* the poll first: closing h closes the descriptor it watches */
        uv_close((uv_handle_t *)&l->poll, on_listener_closed);
        uv_close((uv_handle_t *)&l->h, on_listener_closed);
    }
    if (uv_is_active((uv_handle_t *)&s->refuse_timer))
        uv_timer_stop(&s->refuse_timer);
    log_refused(s);
}
