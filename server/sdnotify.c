/* sd_notify's datagram protocol without libsystemd: a SOCK_DGRAM unix
 * socket, one datagram per state change (see sd_notify(3) for the keys).
 * coffred tells the manager when it is ready (every listener up), when it
 * reloads (SIGHUP) and when it stops, and keeps a STATUS line current. */
#include "server/sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server/base/log.h"
#include "server/server.h"

/* how often the STATUS line may be refreshed (only when it changed) */
#define STATUS_INTERVAL_MS 5000

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static uv_timer_t status_timer;
static bool status_timer_init;
static unsigned status_conns; /* the count the last STATUS line gave */

void sdnotify_open(void)
{
    const char *e = getenv("NOTIFY_SOCKET");
    size_t len;

    if (!e || !*e)
        return;
    len = strlen(e);
    if ((e[0] != '/' && e[0] != '@') || len >= sizeof(notify_addr.sun_path) || len < 2) {
        log_error("NOTIFY_SOCKET is not a unix socket path or @name: %s", e);
        unsetenv("NOTIFY_SOCKET");
        return;
    }
    memset(&notify_addr, 0, sizeof(notify_addr));
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, e, len);
    if (e[0] == '@') {
        /* abstract: a leading NUL, and the length says where the name ends */
        notify_addr.sun_path[0] = '\0';
        notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        notify_len = (socklen_t)sizeof(notify_addr);
    }
    unsetenv("NOTIFY_SOCKET");
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (notify_fd < 0)
        log_error("NOTIFY_SOCKET: cannot open a datagram socket: %s", strerror(errno));
}

static void send_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void send_msg(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int n;

    if (notify_fd < 0)
        return;
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return;
    /* never wait on the manager: a full socket loses this message, the
     * next state change says where things are */
    if (sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
               (const struct sockaddr *)&notify_addr, notify_len) < 0)
        log_warn("NOTIFY_SOCKET: %s", strerror(errno));
}

static unsigned count_listeners(const struct server *s)
{
    unsigned n = 0;
    for (const struct listener *l = s->listeners; l; l = l->next)
        n++;
    return n;
}

static void on_status_timer(uv_timer_t *t)
{
    struct server *s = t->data;

    if (s->nconns == status_conns || s->stopping)
        return;
    status_conns = s->nconns;
    send_msg("STATUS=%u connection(s), %u listener(s)", s->nconns, count_listeners(s));
}

void sdnotify_ready(struct server *s)
{
    if (notify_fd < 0 || s->stopping)
        return;
    status_conns = s->nconns;
    send_msg("READY=1\nSTATUS=%u connection(s), %u listener(s)", s->nconns, count_listeners(s));
    if (!status_timer_init) {
        uv_timer_init(s->loop, &status_timer);
        status_timer.data = s;
        uv_timer_start(&status_timer, on_status_timer, STATUS_INTERVAL_MS, STATUS_INTERVAL_MS);
        uv_unref((uv_handle_t *)&status_timer);
        status_timer_init = true;
    }
}

void sdnotify_reloading(void)
{
    struct timespec ts;

    if (notify_fd < 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    send_msg("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
}

void sdnotify_stopping(struct server *s)
{
    if (notify_fd < 0)
        return;
    send_msg("STOPPING=1\nSTATUS=stopping, %u connection(s) closing", s->nconns);
    if (status_timer_init && uv_is_active((uv_handle_t *)&status_timer))
        uv_timer_stop(&status_timer);
}
