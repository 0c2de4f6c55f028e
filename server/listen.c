/* Listening sockets for every service: TCP over IPv4 and IPv6, and unix
 * sockets for LMTP. Bound before the privilege drop. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/imap/imap.h"
#include "protocol/lmtp/lmtp.h"
#include "protocol/pop3/pop3.h"
#include "server/base/log.h"
#include "server/server.h"

static void on_connection(uv_stream_t *st, int status)
{
    struct listener *l = st->data;
    if (status < 0) {
        log_warn("accept on %s: %s", l->text, uv_strerror(status));
        return;
    }
    conn_accept(l);
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
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
            uv_close((uv_handle_t *)&l->h, on_listener_closed);
            return -1;
        }
    } else {
        unsigned flags = a->ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
        uv_tcp_init(s->loop, &l->h.tcp);
        r = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&a->ss, flags);
    }
    l->h.pipe.data = l;
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->h, 511, on_connection);
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on %s (%s): %s", a->text, service, uv_strerror(r));
        uv_close((uv_handle_t *)&l->h, on_listener_closed);
        return -1;
    }
    l->next = s->listeners;
    s->listeners = l;
    log_info("listening on %s (%s)", a->text, service);
    return 0;
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
    };

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
        uv_close((uv_handle_t *)&l->h, on_listener_closed);
    }
}
