/* The control socket: coffrectl's way into the running coffred, for `who`,
 * `kick`, `reload`, `stats`, and ending the sessions of an account that
 * `coffrectl user disable/del` just changed. A unix stream socket
 * (control_socket), mode 0660, owned by run_user and its group; since a
 * mode is easily loosened by hand, every peer is checked again with
 * SO_PEERCRED: root, run_user, or a member of run_user's group (its primary
 * group or, by SO_PEERGROUPS, a supplementary one). Anyone else is refused
 * and logged.
 *
 * The protocol, one exchange per connection: the client sends one request
 * line (at most CONTROL_LINE_MAX bytes, ended by LF), coffred answers "OK"
 * or "ERR <reason>" on a first line, then the body, and closes. Each
 * exchange has control_timeout in all, a reply at most control_max_reply
 * bytes, and at most control_max_connections run at once.
 *
 *   WHO [ADDRESS]                   one line per session, tab-separated:
 *                                   id user protocol address tls mailbox
 *                                   state idle-seconds login-time
 *   KICK ID N                       ends session N          -> "OK <count>"
 *   KICK USER ADDRESS [disabled|deleted]
 *                                   ends the account's sessions
 *   RELOAD                          what SIGHUP does
 *   STATS                           metrics_render()'s OpenMetrics text
 *   RELEASE ID ADDRESS              account ID (ADDRESS) leaves this
 *                                   server (`coffrectl user move`): its
 *                                   sessions end, transactions with it as a
 *                                   recipient end (421) unless delivering,
 *                                   logins in flight are refused for a
 *                                   while, its store may not open again
 *                                   (control_release_hold), its
 *                                   authentication cache entries go; "OK"
 *                                   once nothing of it is held any more (no
 *                                   session, job, delivery, store open or
 *                                   closing, light handle), "ERR ..." when
 *                                   that is not so within control_timeout
 *   ACL                             reads the access control lists again
 *                                   (coffrectl changed them); "OK" once
 *                                   the new ones are in place, so that
 *                                   every session's next command sees them
 *
 * Everything runs on the loop thread and takes no more than a walk of the
 * connection list. */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "auth/acl.h"
#include "protocol/lmtp/lmtp.h"
#include "protocol/mailuser.h"
#include "server/base/buf.h"
#include "server/base/log.h"
#include "server/base/metrics.h"
#include "server/server.h"
#include "storage/storage.h"

#define CONTROL_LINE_MAX 1024 /* a request: a verb and an address or two */
#define CONTROL_ARGS 4
#define CONTROL_GROUPS_MAX 256 /* supplementary groups of a peer we look at */

struct ctl_conn {
    uv_pipe_t pipe;
    uv_timer_t timer;
    unsigned handles; /* pipe and timer, until both are closed */
    struct control *ctl;
    uint64_t id;
    unsigned uid; /* the peer's, for the log */
    int pid;
    char line[CONTROL_LINE_MAX + 1];
    size_t len;
    bool answered; /* the reply is on its way: input is ignored */
    uv_write_t wreq;
    struct buf reply;
    struct ctl_conn *prev, *next;
    /* RELEASE: the account, what is still awaited, until when */
    int64_t rel_id;
    char rel_addr[256];
    uint64_t rel_deadline;
    struct light_job *rel_light; /* storage_light_forget on the pool */
    bool rel_light_done;
    unsigned rel_light_busy;
    struct acl_wait *acl_wait; /* ACL: the reload runs */
};

/* ACL: the reply waits for the new snapshot, so that a session's next
 * command after coffrectl returns sees the change. */
struct acl_wait {
    struct ctl_conn *k; /* NULL once the request went */
};

struct light_job {
    uv_work_t w;
    int64_t id;
    unsigned busy;
    struct ctl_conn *k; /* NULL once the request went */
};

/* An account disabled or removed lately: a login checked before the change
 * but answered after it is refused (conn_login_revoked). Kept for
 * login_timeout, the longest a login may take. */
struct revoked {
    char address[256];
    const char *why; /* "disabled", "deleted" */
    uint64_t at;     /* uv_now */
    struct revoked *next;
};

struct control {
    struct server *srv;
    uv_pipe_t listener;
    bool listener_open;
    uid_t uid; /* run_user */
    gid_t gid; /* its group */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev; /* the socket file we made: unlinked at the end if still ours */
    ino_t ino;
    unsigned n;
    uint64_t next_id;
    struct ctl_conn *conns;
    struct revoked *revoked; /* newest first */
};

/* ---- closing ---- */

static void on_conn_closed(uv_handle_t *h)
{
    struct ctl_conn *k = h->data;
    if (--k->handles)
        return;
    buf_free(&k->reply);
    free(k);
}

static void conn_end(struct ctl_conn *k)
{
    struct control *ctl = k->ctl;
    if (uv_is_closing((uv_handle_t *)&k->pipe))
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        ctl->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    ctl->n--;
    if (k->rel_light)
        k->rel_light->k = NULL;
    if (k->acl_wait)
        k->acl_wait->k = NULL;
    uv_close((uv_handle_t *)&k->pipe, on_conn_closed);
    uv_close((uv_handle_t *)&k->timer, on_conn_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct ctl_conn *k = req->data;
    (void)status;
    conn_end(k);
}

static void on_timer(uv_timer_t *t)
{
    struct ctl_conn *k = t->data;
    log_info("control: request %" PRIu64 " from uid %u timed out", k->id, k->uid);
    conn_end(k);
}

/* Sends k->reply (which starts with the status line) and closes. */
static void send_reply(struct ctl_conn *k)
{
    size_t max = k->ctl->srv->conf.control_max_reply;

    k->answered = true;
    uv_read_stop((uv_stream_t *)&k->pipe);
    if (k->reply.oom) {
        buf_reset(&k->reply);
        k->reply.oom = false;
        buf_str(&k->reply, "ERR out of memory\n");
    }
    if (k->reply.len > max) {
        buf_reset(&k->reply);
        buf_str(&k->reply, "ERR reply longer than control_max_reply\n");
    }
    uv_buf_t b = uv_buf_init(k->reply.p, (unsigned)k->reply.len);
    k->wreq.data = k;
    if (uv_write(&k->wreq, (uv_stream_t *)&k->pipe, &b, 1, on_written) < 0)
        conn_end(k);
}

static void reply_err(struct ctl_conn *k, const char *why)
{
    buf_reset(&k->reply);
    buf_printf(&k->reply, "ERR %s\n", why);
    send_reply(k);
}

/* ---- requests ---- */

/* A field of a WHO line: bytes that would break the line or the columns
 * (controls, tab, backslash, DEL) are written \xNN. */
static void add_field(struct buf *b, const char *v)
{
    if (!v || !*v) {
        buf_addc(b, '-');
        return;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
            buf_printf(b, "\\x%02x", *p);
        else
            buf_addc(b, (char)*p);
    }
}

static void do_who(struct ctl_conn *k, const char *user)
{
    struct server *s = k->ctl->srv;
    size_t max = s->conf.control_max_reply;
    unsigned n = 0;

    buf_str(&k->reply, "OK\n");
    for (struct conn *c = conn_first(s); c; c = conn_next(c)) {
        struct conn_who w;
        char when[32] = "-";
        conn_who(c, &w);
        if (user && strcasecmp(w.user, user) != 0)
            continue;
        if (w.login_at) {
            struct tm tm;
            time_t t = (time_t)w.login_at;
            if (gmtime_r(&t, &tm))
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        size_t mark = k->reply.len;
        buf_printf(&k->reply, "%" PRIu64 "\t", w.id);
        add_field(&k->reply, w.user);
        buf_printf(&k->reply, "\t%s\t", w.service);
        add_field(&k->reply, w.remote);
        buf_printf(&k->reply, "\t%s\t", w.tls ? w.tls : "none");
        add_field(&k->reply, w.mailbox);
        buf_printf(&k->reply, "\t%s\t%" PRIu64 "\t%s\n", w.state, w.idle_ms / 1000, when);
        if (k->reply.len + 64 > max) {
            /* the list is cut, and says so, rather than refused */
            k->reply.len = mark;
            buf_printf(&k->reply, "# cut at control_max_reply after %u sessions\n", n);
            break;
        }
        n++;
    }
    send_reply(k);
}

static const char *kick_reason(const char *why)
{
    if (!why)
        return "Disconnected by the administrator.";
    if (!strcmp(why, "disabled"))
        return "Account disabled.";
    if (!strcmp(why, "deleted"))
        return "Account deleted.";
    return NULL;
}

static void revoked_prune(struct control *ctl)
{
    uint64_t now = uv_now(ctl->srv->loop), keep = ctl->srv->conf.login_timeout_ms;
    struct revoked **pp = &ctl->revoked, *r;

    while ((r = *pp)) {
        if (now - r->at > keep) {
            *pp = r->next;
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

const char *control_revoked(struct server *s, const char *address, uint64_t since)
{
    struct control *ctl = s->control;

    if (!ctl || !ctl->revoked)
        return NULL;
    revoked_prune(ctl);
    for (struct revoked *r = ctl->revoked; r; r = r->next)
        if (r->at >= since && !strcasecmp(r->address, address))
            return r->why;
    return NULL;
}

static void do_kick(struct ctl_conn *k, char **argv, int argc)
{
    struct server *s = k->ctl->srv;
    const char *reason;
    uint64_t id = 0;
    unsigned n = 0;
    bool by_id;

    if (argc < 3 || argc > 4 || (strcmp(argv[1], "ID") && strcmp(argv[1], "USER"))) {
        reply_err(k, "usage: KICK ID N | KICK USER ADDRESS [disabled|deleted]");
        return;
    }
    by_id = !strcmp(argv[1], "ID");
    if (by_id) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(argv[2], &end, 10);
        if (errno || *end || argv[2][0] < '0' || argv[2][0] > '9' || argc != 3) {
            reply_err(k, "KICK ID: not a session number");
            return;
        }
        id = v;
    }
    reason = kick_reason(argc == 4 ? argv[3] : NULL);
    if (!reason) {
        reply_err(k, "KICK USER: the reason is disabled or deleted");
        return;
    }
    if (argc == 4) {
        /* logins being checked now are refused when they are answered */
        struct revoked *r = calloc(1, sizeof(*r));
        if (!r) {
            reply_err(k, "out of memory");
            return;
        }
        snprintf(r->address, sizeof(r->address), "%s", argv[2]);
        r->why = !strcmp(argv[3], "disabled") ? "disabled" : "deleted";
        r->at = uv_now(s->loop);
        revoked_prune(k->ctl);
        r->next = k->ctl->revoked;
        k->ctl->revoked = r;
    }
    for (struct conn *c = conn_first(s); c; c = conn_next(c)) {
        struct conn_who w;
        conn_who(c, &w);
        if (by_id ? w.id != id : strcasecmp(w.user, argv[2]) != 0)
            continue;
        if (conn_kick(c, reason)) {
            log_info("control: uid %u ended conn=%" PRIu64 " user=%s (%s)", k->uid, w.id,
                     w.user[0] ? w.user : "-", reason);
            n++;
        }
    }
    log_info("control: uid %u kick %s %s: %u session(s)", k->uid, argv[1], argv[2], n);
    buf_printf(&k->reply, "OK %u\n", n);
    send_reply(k);
}

/* ---- RELEASE ---- */

static void light_work(uv_work_t *w)
{
    struct light_job *j = w->data;
    j->busy = storage_light_forget(j->id);
}

static void light_done(uv_work_t *w, int status)
{
    struct light_job *j = w->data;
    (void)status;
    if (j->k) {
        j->k->rel_light = NULL;
        j->k->rel_light_done = true;
        j->k->rel_light_busy = j->busy;
    }
    free(j);
}

/* The light handles of the account are closed on the pool (their SQLite
 * connections); false when that could not start. */
static bool light_forget(struct ctl_conn *k)
{
    struct light_job *j = calloc(1, sizeof(*j));

    if (!j)
        return false;
    j->id = k->rel_id;
    j->k = k;
    j->w.data = j;
    k->rel_light_done = false;
    if (uv_queue_work(k->ctl->srv->loop, &j->w, light_work, light_done) < 0) {
        free(j);
        return false;
    }
    k->rel_light = j;
    return true;
}

static unsigned release_sessions(struct ctl_conn *k, bool kick)
{
    unsigned n = 0;

    for (struct conn *c = conn_first(k->ctl->srv); c; c = conn_next(c)) {
        struct conn_who w;
        conn_who(c, &w);
        if (!w.user || strcasecmp(w.user, k->rel_addr) != 0)
            continue;
        n++;
        if (kick && conn_kick(c, "Mailbox being moved to another server; log in again."))
            log_info("control: uid %u ended conn=%" PRIu64 " user=%s (account moving)", k->uid,
                     w.id, w.user);
    }
    return n;
}

static void on_release_tick(uv_timer_t *t)
{
    struct ctl_conn *k = t->data;
    unsigned sessions = release_sessions(k, false);
    unsigned txns = lmtp_release_account(k->rel_id);
    bool store = mailuser_busy(k->rel_id);
    uint64_t now = uv_now(k->ctl->srv->loop);

    if (!sessions && !txns && !store && k->rel_light_done) {
        if (!k->rel_light_busy) {
            log_info("control: uid %u released account %" PRId64 " (%s)", k->uid, k->rel_id,
                     k->rel_addr);
            buf_str(&k->reply, "OK released\n");
            send_reply(k);
            return;
        }
        /* the deliveries that used them are over: close them now */
        if (!light_forget(k))
            k->rel_light_done = true;
    }
    if (now >= k->rel_deadline) {
        char why[160];
        snprintf(why, sizeof(why),
                 "account %" PRId64 " still in use: %u session(s), %u LMTP transaction(s)%s%s",
                 k->rel_id, sessions, txns, store ? ", its store open" : "",
                 k->rel_light_done && !k->rel_light_busy ? "" : ", delivery handles open");
        log_warn("control: uid %u release of %s: %s", k->uid, k->rel_addr, why);
        reply_err(k, why);
        return;
    }
    uv_timer_start(&k->timer, on_release_tick, 20, 0);
}

static void do_release(struct ctl_conn *k, char **argv, int argc)
{
    struct server *s = k->ctl->srv;
    uint64_t now = uv_now(s->loop), budget = s->conf.control_timeout_ms;
    struct revoked *r;
    unsigned n;
    char *end;
    long long id;

    errno = 0;
    id = argc == 3 ? strtoll(argv[1], &end, 10) : 0;
    if (argc != 3 || errno || *end || id <= 0 || strlen(argv[2]) >= sizeof(k->rel_addr)) {
        reply_err(k, "usage: RELEASE ID ADDRESS");
        return;
    }
    k->rel_id = id;
    snprintf(k->rel_addr, sizeof(k->rel_addr), "%s", argv[2]);
    /* logins checked before the move began and answered after it: refused
     * (temporarily) when they are answered */
    if (!(r = calloc(1, sizeof(*r)))) {
        reply_err(k, "out of memory");
        return;
    }
    snprintf(r->address, sizeof(r->address), "%s", argv[2]);
    r->why = "moved";
    r->at = now;
    revoked_prune(k->ctl);
    r->next = k->ctl->revoked;
    k->ctl->revoked = r;
    mailuser_block(s->loop, id, now + s->conf.control_release_hold_ms);
    n = release_sessions(k, true);
    lmtp_release_account(id);
    auth_service_forget(s->auth, k->rel_addr);
    if (!light_forget(k))
        k->rel_light_done = true, k->rel_light_busy = 1;
    log_info("control: uid %u release of account %" PRId64 " (%s): %u session(s) ending", k->uid,
             k->rel_id, k->rel_addr, n);
    /* answered before the connection's own timeout */
    k->rel_deadline = now + (budget > 400 ? budget - 300 : budget / 2);
    k->answered = true; /* nothing more is read */
    uv_read_stop((uv_stream_t *)&k->pipe);
    uv_timer_stop(&k->timer);
    uv_timer_start(&k->timer, on_release_tick, 0, 0);
}

/* ---- ACL ---- */

static void on_acl_loaded(void *arg, int result)
{
    struct acl_wait *a = arg;
    struct ctl_conn *k = a->k;

    free(a);
    if (!k)
        return;
    k->acl_wait = NULL;
    if (result != AUTH_OK) {
        reply_err(k, "the access control lists could not be read again");
        return;
    }
    buf_str(&k->reply, "OK\n");
    send_reply(k);
}

static void do_acl(struct ctl_conn *k)
{
    struct acl_wait *a = calloc(1, sizeof(*a));

    log_info("control: uid %u asks for the access control lists to be read again", k->uid);
    if (!a) {
        reply_err(k, "out of memory");
        return;
    }
    a->k = k;
    if (auth_service_acl_reload(k->ctl->srv->auth, on_acl_loaded, a) != 0) {
        free(a);
        reply_err(k, "out of memory");
        return;
    }
    k->acl_wait = a;
    k->answered = true; /* nothing more is read */
    uv_read_stop((uv_stream_t *)&k->pipe);
}

static void do_request(struct ctl_conn *k)
{
    char *argv[CONTROL_ARGS + 1], *save = NULL, *tok;
    int argc = 0;

    for (size_t i = 0; i < k->len; i++) {
        unsigned char ch = (unsigned char)k->line[i];
        if (ch < 0x20 || ch > 0x7e) {
            reply_err(k, "request: only printable ASCII");
            return;
        }
    }
    for (tok = strtok_r(k->line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (argc == CONTROL_ARGS) {
            reply_err(k, "request: too many words");
            return;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        reply_err(k, "request: empty");
        return;
    }
    if (!strcmp(argv[0], "WHO") && argc <= 2) {
        do_who(k, argc == 2 ? argv[1] : NULL);
    } else if (!strcmp(argv[0], "KICK")) {
        do_kick(k, argv, argc);
    } else if (!strcmp(argv[0], "RELOAD") && argc == 1) {
        char err[512];
        log_info("control: uid %u asks for a reload", k->uid);
        if (server_reload(k->ctl->srv, err, sizeof(err)) < 0) {
            reply_err(k, err);
            return;
        }
        buf_str(&k->reply, "OK\n");
        send_reply(k);
    } else if (!strcmp(argv[0], "RELEASE")) {
        do_release(k, argv, argc);
    } else if (!strcmp(argv[0], "ACL") && argc == 1) {
        do_acl(k);
    } else if (!strcmp(argv[0], "STATS") && argc == 1) {
        buf_str(&k->reply, "OK\n");
        metrics_render(&k->reply);
        send_reply(k);
    } else {
        reply_err(k, "unknown request");
    }
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char scratch[4096]; /* each read is copied out before the next */
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct ctl_conn *k = st->data;

    if (nread == 0 || k->answered)
        return;
    if (nread < 0) {
        conn_end(k); /* gone before a whole request */
        return;
    }
    const char *lf = memchr(buf->base, '\n', (size_t)nread);
    size_t take = lf ? (size_t)(lf - buf->base) : (size_t)nread;
    if (take > CONTROL_LINE_MAX - k->len) {
        log_warn("control: request %" PRIu64 " from uid %u longer than %u bytes", k->id, k->uid,
                 CONTROL_LINE_MAX);
        reply_err(k, "request too long");
        return;
    }
    memcpy(k->line + k->len, buf->base, take);
    k->len += take;
    if (!lf)
        return;
    if (k->len && k->line[k->len - 1] == '\r')
        k->len--;
    k->line[k->len] = '\0';
    do_request(k);
}

/* ---- accepting ---- */

/* Root, run_user, or a member of run_user's group. */
static bool peer_allowed(struct control *ctl, int fd, struct ucred *cr)
{
    socklen_t len = sizeof(*cr);
    gid_t groups[CONTROL_GROUPS_MAX];

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) < 0 || len != sizeof(*cr))
        return false;
    if (cr->uid == 0 || cr->uid == ctl->uid || cr->gid == ctl->gid)
        return true;
#ifdef SO_PEERGROUPS
    len = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
            if (groups[i] == ctl->gid)
                return true;
#endif
    return false;
}

static void on_spare_closed(uv_handle_t *h)
{
    *(bool *)h->data = false;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct control *ctl = server->data;
    struct ctl_conn *k;
    struct ucred cr = {0};
    uv_os_fd_t fd;

    if (status < 0)
        return;
    k = calloc(1, sizeof(*k));
    if (!k) {
        /* taken off the queue and closed, or it would stall the listener */
        static uv_pipe_t spare;
        static bool spare_busy;
        log_warn("control: connection refused: out of memory");
        if (!spare_busy && uv_pipe_init(ctl->srv->loop, &spare, 0) == 0) {
            spare_busy = true;
            spare.data = &spare_busy;
            (void)uv_accept(server, (uv_stream_t *)&spare);
            uv_close((uv_handle_t *)&spare, on_spare_closed);
        }
        return;
    }
    uv_pipe_init(ctl->srv->loop, &k->pipe, 0);
    uv_timer_init(ctl->srv->loop, &k->timer);
    k->handles = 2;
    k->ctl = ctl;
    k->pipe.data = k->timer.data = k;
    k->id = ++ctl->next_id;
    k->next = ctl->conns;
    if (ctl->conns)
        ctl->conns->prev = k;
    ctl->conns = k;
    ctl->n++;
    if (uv_accept(server, (uv_stream_t *)&k->pipe) < 0) {
        conn_end(k);
        return;
    }
    if (uv_fileno((uv_handle_t *)&k->pipe, &fd) < 0 || !peer_allowed(ctl, fd, &cr)) {
        log_warn("control: refused a connection from pid %d uid %u gid %u: not root, %s or "
                 "a member of its group",
                 (int)cr.pid, (unsigned)cr.uid, (unsigned)cr.gid, ctl->srv->conf.run_user);
        reply_err(k, "permission denied");
        return;
    }
    k->uid = cr.uid;
    k->pid = cr.pid;
    if (ctl->n > ctl->srv->conf.control_max_connections) {
        log_warn("control: refused a connection from uid %u: control_max_connections (%u) busy",
                 k->uid, ctl->srv->conf.control_max_connections);
        reply_err(k, "busy: too many control connections");
        return;
    }
    uv_timer_start(&k->timer, on_timer, ctl->srv->conf.control_timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&k->pipe, on_alloc, on_read) < 0)
        conn_end(k);
}

/* ---- the socket ---- */

/* A file already at path: a live socket (another coffred) is an error, a
 * dead one is removed. Returns 0 or -1. */
static int clear_path(const char *path, char *err, size_t errlen)
{
    struct stat st;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "control_socket %s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "control socket: %s", strerror(errno));
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (r == 0) {
        snprintf(err, errlen, "control_socket %s is in use (another coffred?)", path);
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove the old control socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int control_open(struct server *s, char *err, size_t errlen)
{
    const char *path = s->conf.control_socket;
    struct control *ctl;
    struct stat st;
    char dir[sizeof(ctl->path)];
    int r;

    if (!path[0])
        return 0;
    ctl = calloc(1, sizeof(*ctl));
    if (!ctl) {
        snprintf(err, errlen, "control socket: out of memory");
        return -1;
    }
    ctl->srv = s;
    ctl->uid = geteuid();
    ctl->gid = getegid();
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(s->conf.run_user);
        if (!pw) {
            snprintf(err, errlen, "control socket: run_user '%s' does not exist", s->conf.run_user);
            free(ctl);
            return -1;
        }
        ctl->uid = pw->pw_uid;
        ctl->gid = pw->pw_gid;
    }
    snprintf(ctl->path, sizeof(ctl->path), "%s", path);

    /* its directory (/run/coffre by default) is made when missing: run_user's,
     * open to its group */
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (stat(dir, &st) < 0 && errno == ENOENT) {
            if (mkdir(dir, 0750) < 0 || (geteuid() == 0 && chown(dir, ctl->uid, ctl->gid) < 0)) {
                snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
                free(ctl);
                return -1;
            }
        }
    }
    if (clear_path(path, err, errlen) < 0) {
        free(ctl);
        return -1;
    }

    uv_pipe_init(s->loop, &ctl->listener, 0);
    ctl->listener.data = ctl;
    ctl->listener_open = true;
    s->control = ctl;
    mode_t old = umask(0117); /* born 0660: never open to others, even for a moment */
    r = uv_pipe_bind(&ctl->listener, path);
    umask(old);
    if (r < 0) {
        snprintf(err, errlen, "control_socket %s: %s", path, uv_strerror(r));
        control_close(s);
        return -1;
    }
    if ((geteuid() == 0 && chown(path, ctl->uid, ctl->gid) < 0) || chmod(path, 0660) < 0 ||
        lstat(path, &st) < 0) {
        snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
        control_close(s);
        return -1;
    }
    ctl->dev = st.st_dev;
    ctl->ino = st.st_ino;
    r = uv_listen((uv_stream_t *)&ctl->listener, 16, on_connection);
    if (r < 0) {
        snprintf(err, errlen, "control_socket %s: %s", path, uv_strerror(r));
        control_close(s);
        return -1;
    }
    log_info("control socket on %s (root, %s and its group)", path, s->conf.run_user);
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

void control_close(struct server *s)
{
    struct control *ctl = s->control;
    struct stat st;

    if (!ctl)
        return;
    s->control = NULL;
    while (ctl->conns)
        conn_end(ctl->conns);
    while (ctl->revoked) {
        struct revoked *r = ctl->revoked;
        ctl->revoked = r->next;
        free(r);
    }
    /* removed when it is still the one we made (a new coffred may have
     * taken the path); after the privilege drop this may not be allowed */
    if (ctl->ino && lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
        (void)unlink(ctl->path);
    if (ctl->listener_open)
        uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
    else
        free(ctl);
}
