/* Listening sockets for every service: TCP over IPv4 and IPv6, and unix
 * sockets for LMTP. Bound before the privilege drop, or passed by the
 * service manager (socket activation, coffred.socket). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

/* ---- sockets passed by the service manager ---- */

/* sd_listen_fds(3): LISTEN_PID names this process, LISTEN_FDS counts the
 * descriptors from 3 on, LISTEN_FDNAMES names them (colon-separated). A
 * configured address whose socket was passed takes it instead of binding;
 * coffred learns which is which from the sockets themselves. */
#define PASSED_MAX 64
#define SD_LISTEN_FDS_START 3

static struct passed {
    int fd;
    bool used;
    char name[64];
    struct sockaddr_storage ss;
    socklen_t sslen;
} passed[PASSED_MAX];
static unsigned npassed;

static int take_passed_fds(char *err, size_t errlen)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    char *end;
    unsigned long pid, n;

    npassed = 0;
    if (!pid_s || !fds_s)
        return 0;
    errno = 0;
    pid = strtoul(pid_s, &end, 10);
    if (errno || *end || pid != (unsigned long)getpid())
        return 0; /* meant for another process */
    n = strtoul(fds_s, &end, 10);
    if (errno || *end || n > PASSED_MAX) {
        snprintf(err, errlen, "LISTEN_FDS: not a count of at most %d sockets: %s", PASSED_MAX,
                 fds_s);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        struct passed *p = &passed[npassed];
        int fd = SD_LISTEN_FDS_START + (int)i, type = 0, acc = 0;
        socklen_t tl = sizeof(type), al = sizeof(acc);
        const char *colon;

        memset(p, 0, sizeof(*p));
        p->fd = fd;
        if (names && *names) {
            colon = strchr(names, ':');
            size_t len = colon ? (size_t)(colon - names) : strlen(names);
            snprintf(p->name, sizeof(p->name), "%.*s", (int)len, names);
            names = colon ? colon + 1 : NULL;
        }
        p->sslen = sizeof(p->ss);
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc ||
            getsockname(fd, (struct sockaddr *)&p->ss, &p->sslen) < 0) {
            snprintf(err, errlen, "passed descriptor %d (%s) is not a listening stream socket", fd,
                     p->name[0] ? p->name : "unnamed");
            return -1;
        }
        npassed++;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return 0;
}

static bool same_addr(const struct passed *p, const struct conf_addr *a)
{
    if (a->is_unix) {
        const struct sockaddr_un *u = (const struct sockaddr_un *)&p->ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        return u->sun_family == AF_UNIX && p->sslen > off &&
               !strncmp(u->sun_path, a->path, sizeof(u->sun_path)) && u->sun_path[0];
    }
    if (p->ss.ss_family != a->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&p->ss;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&a->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&p->ss;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&a->ss;
        return x->sin6_port == y->sin6_port &&
               !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
    }
    return false;
}

/* A passed [::]:PORT socket that also takes IPv4 (not IPV6_V6ONLY) covers
 * 0.0.0.0:PORT, which then cannot be bound beside it. */
static bool covered_by_dual_stack(const struct conf_addr *a)
{
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->ss;

    if (a->is_unix || a->ss.ss_family != AF_INET || v4->sin_addr.s_addr != htonl(INADDR_ANY))
        return false;
    for (unsigned i = 0; i < npassed; i++) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&passed[i].ss;
        int only = 1;
        socklen_t ol = sizeof(only);
        if (x->sin6_family == AF_INET6 && x->sin6_port == v4->sin_port &&
            IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) &&
            getsockopt(passed[i].fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, &ol) == 0 && !only)
            return true;
    }
    return false;
}

static struct passed *find_passed(const struct conf_addr *a)
{
    for (unsigned i = 0; i < npassed; i++)
        if (!passed[i].used && same_addr(&passed[i], a))
            return &passed[i];
    return NULL;
}

static int listen_one(struct server *s, const struct conf_addr *a, struct passed *p,
                      const char *service, const struct conn_handler *h, bool implicit_tls,
                      char *err, size_t errlen)
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
    /* the mail protocols over TCP may be reached through a proxy */
    l->proxy = !a->is_unix && h != &http_handler;
    snprintf(l->text, sizeof(l->text), "%s", a->text);
    if (p) {
        /* the manager's socket, bound and owned as its unit says */
        l->passed = true;
        if (a->is_unix) {
            uv_pipe_init(s->loop, &l->h.pipe, 0);
            r = uv_pipe_open(&l->h.pipe, p->fd);
        } else {
            uv_tcp_init(s->loop, &l->h.tcp);
            r = uv_tcp_open(&l->h.tcp, p->fd);
        }
        if (r == 0)
            p->used = true;
    } else if (a->is_unix) {
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
    if (p)
        log_info("listening on %s (%s), socket %s passed by the service manager", a->text, service,
                 p->name[0] ? p->name : "unnamed");
    else
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
    if (take_passed_fds(err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(svc) / sizeof(svc[0]); i++) {
        for (size_t j = 0; j < svc[i].list->n; j++) {
            const struct conf_addr *a = &svc[i].list->a[j];
            struct passed *p = find_passed(a);
            if (!p && covered_by_dual_stack(a)) {
                log_info("%s (%s): taken by the passed IPv6 socket of that port", a->text,
                         svc[i].service);
                continue;
            }
            if (listen_one(s, a, p, svc[i].service, svc[i].h, svc[i].tls, err, errlen) < 0)
                return -1;
        }
    }
    /* a socket of the unit that the configuration does not name serves
     * nothing: closed (the manager keeps its own copy) */
    for (unsigned i = 0; i < npassed; i++) {
        if (passed[i].used)
            continue;
        log_warn("socket %s passed by the service manager (descriptor %d) matches no "
                 "configured address: closed",
                 passed[i].name[0] ? passed[i].name : "unnamed", passed[i].fd);
        close(passed[i].fd);
    }
    return 0;
}

void server_close_listeners(struct server *s)
{
    struct listener *l = s->listeners, *next;
    s->listeners = NULL;
    for (; l; l = next) {
        next = l->next;
        if (l->is_unix && !l->passed) {
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
