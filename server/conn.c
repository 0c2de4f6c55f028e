/* Connection life cycle: accept, connection limits, the PROXY header of
 * connections from proxy_networks, reading, TLS (implicit and STARTTLS),
 * writing with back-pressure, timers, graceful and abrupt close. Protocol
 * handlers see only server/conn.h. */
#include "server/base/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "server/base/log.h"
#include "server/base/metrics.h"
#include "server/base/proxyproto.h"
#include "server/server.h"
#include "server/zlayer.h"
#include "tls/tls.h"

enum tls_state { C_PLAIN, C_HANDSHAKE, C_TLS };

struct conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_timer_t timer;
    struct server *srv;
    struct listener *lst;
    const struct conn_handler *handler;
    void *proto;
    struct conn_info info;
    struct sockaddr_storage peer;      /* the client (a PROXY header's address, if any) */
    struct sockaddr_storage sock_peer; /* the socket's peer: trust decisions */
    char remote[INET6_ADDRSTRLEN + 8];
    char user[128];
    char address[256];   /* the login's address as given, for `coffrectl who/kick` */
    int64_t login_at;    /* time(2) of the login, 0 before one */
    uint64_t last_input; /* uv_now of the last bytes read */

    struct tls_session *tls;
    enum tls_state tls_state;
    bool opened;       /* on_open has run */
    bool closing;      /* conn_close or abort started */
    bool tcp;          /* a TCP socket: reads ask for quick ACKs */
    bool close_called; /* handles are being closed */
    bool paused;
    bool reading;
    bool drain_wanted;
    bool counted_ip;
    bool from_proxy;    /* sock_peer is in proxy_networks */
    bool greet_pending; /* on_open waits for a PROXY header, or for its absence */
    /* A proxy's connection: "connected" is logged (at info) once its first
     * bytes are decided, so that one that sends nothing and closes (a
     * health check, auth_http's probe of a slot) is logged at debug only. */
    bool quiet_open;
    /* The first bytes, watched for a PROXY header (parsed from
     * proxy_networks, refused from elsewhere); NULL once decided. */
    struct proxyproto *px;
    unsigned handles;    /* open libuv handles of this connection */
    unsigned timeout_ms; /* the protocol's idle timer, 0 = none; input re-arms it */
    uint64_t deadline;   /* uv_now of the login deadline (accept + login_timeout), 0 = over */
    size_t queued;
    size_t queued_peak; /* the most output ever queued at once (close log) */
    uint64_t bytes_in, bytes_out;
    struct conn *prev, *next;

    struct metrics_conn metrics; /* its place in the connection gauges */

    /* COMPRESS=DEFLATE: between TLS (or the socket) and the protocol */
    struct zlayer *z;
    char *zin; /* compressed input not yet inflated */
    size_t zin_len;
    bool zin_more;      /* the decompressor may hold more output */
    bool zheld;         /* reading stopped until zin is inflated */
    bool zlisted;       /* on the server's list for the end of the burst */
    size_t zheld_bytes; /* zlib state when closing began (close log) */
    struct conn *zprev, *znext;

    /* the audit trail (login and logout lines) */
    char *audit_user;                     /* logged in as (raw), NULL before login */
    char *login_try;                      /* the user named by the login in flight */
    char login_label[AUTH_APP_LABEL_MAX]; /* the app password of that login, "" none */
    const char *login_mech;
    char *client_id; /* IMAP ID: "name/version" */
    uint64_t commands;
    uint64_t login_ns; /* when the login succeeded */
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    size_t len;
    char *data; /* owned */
};

struct ipcount {
    uint8_t addr[16];
    unsigned n;
    struct ipcount *next;
};

#define IP_BUCKETS 4096
#define WRITE_LOW (CONN_WRITE_HIGH / 4)

static char read_buf[65536]; /* every read is consumed before the next */

static void finish_close(struct conn *c);
static void do_handshake(struct conn *c);
static void input(struct conn *c, const char *buf, size_t len);
static void proxy_input(struct conn *c, const char *buf, size_t len);
static void proxy_wait_over(struct conn *c);
static void format_peer(struct conn *c);
static void decrypt_input(struct conn *c);
static void z_schedule(struct conn *c);
static void start_reading(struct conn *c);
static void z_flush(struct conn *c, bool release);

/* ---- accessors ---- */

void *conn_proto(struct conn *c)
{
    return c->proto;
}

void conn_set_proto(struct conn *c, void *p)
{
    c->proto = p;
}

const struct conn_info *conn_info(struct conn *c)
{
    return &c->info;
}

const struct conf *conn_conf(struct conn *c)
{
    return &c->srv->conf;
}

struct auth_service *conn_auth(struct conn *c)
{
    return c->srv->auth;
}

const char *conn_hostname(struct conn *c)
{
    return c->srv->hostname;
}

uv_loop_t *conn_loop(struct conn *c)
{
    return c->srv->loop;
}

const struct peer_cert *conn_tls_peer(struct conn *c)
{
    return c->tls_state == C_TLS ? tls_session_peer(c->tls) : NULL;
}

bool conn_client_cert_valid(struct conn *c)
{
    return c->tls_state == C_TLS && tls_session_peer(c->tls)->valid;
}

bool conn_is_tls(struct conn *c)
{
    return c->tls_state == C_TLS;
}

int conn_channel_binding(struct conn *c, const char *name, unsigned char *out, size_t cap)
{
    return c->tls_state == C_TLS ? tls_session_channel_binding(c->tls, name, out, cap) : -1;
}

bool conn_closing(struct conn *c)
{
    return c->closing;
}

size_t conn_write_queued(struct conn *c)
{
    return c->queued;
}

static void audit_logout(struct conn *c);

void conn_set_user(struct conn *c, const char *user)
{
    log_quote(c->user, sizeof(c->user), user); /* for the close line */
    snprintf(c->address, sizeof(c->address), "%s", user);
    c->login_at = user[0] ? (int64_t)time(NULL) : 0;
    if (c->audit_user)
        audit_logout(c);
    if (*user) {
        c->audit_user = strdup(user);
        c->login_ns = uv_hrtime();
    }
}

/* ---- the audit trail ---- */

static void audit_common(struct conn *c, struct log_rec *r, const char *user)
{
    log_rec_str(r, "proto", c->handler->name);
    log_rec_str(r, "service", c->info.service);
    log_rec_num(r, "conn", c->info.id);
    log_rec_str(r, "user", user);
    log_rec_str(r, "mech", c->login_mech);
    log_rec_str(r, "tls", c->tls_state == C_TLS ? tls_session_version(c->tls) : "none");
    log_rec_str(r, "remote", c->remote);
    log_rec_str(r, "client_id", c->client_id);
}

void conn_login_begin(struct conn *c, const char *mech, const char *user, size_t ulen)
{
    free(c->login_try);
    c->login_try = strndup(user, ulen);
    c->login_mech = mech;
}

void conn_login_end(struct conn *c, int auth_result, const char *refused)
{
    struct log_rec r;
    const char *res;

    switch (auth_result) {
    case AUTH_OK:
        res = "ok";
        break;
    case AUTH_E_DISABLED:
        res = "disabled";
        break;
    case AUTH_E_TEMP:
        res = "tempfail";
        break;
    case AUTH_E_BUSY:
        res = "busy";
        break;
    default:
        res = "failed";
        break;
    }
    log_rec_begin(&r, "login");
    audit_common(c, &r,
                 auth_result == AUTH_OK && !refused && c->audit_user ? c->audit_user
                 : c->login_try                                      ? c->login_try
                                                                     : "");
    log_rec_str(&r, "result", refused ? refused : res);
    if (c->login_label[0])
        log_rec_str(&r, "app_password", c->login_label);
    log_rec_emit(&r);
    free(c->login_try);
    c->login_try = NULL;
    c->login_label[0] = '\0';
}

void conn_set_login_label(struct conn *c, const char *label)
{
    snprintf(c->login_label, sizeof(c->login_label), "%s", label ? label : "");
}

void conn_set_client_id(struct conn *c, const char *name, const char *version)
{
    char id[300];
    snprintf(id, sizeof(id), "%.128s%s%.128s", name ? name : "", version ? "/" : "",
             version ? version : "");
    free(c->client_id);
    c->client_id = strdup(id);
}

void conn_count_command(struct conn *c)
{
    c->commands++;
}

static void audit_logout(struct conn *c)
{
    struct log_rec r;

    log_rec_begin(&r, "logout");
    audit_common(c, &r, c->audit_user);
    log_rec_num(&r, "bytes_in", c->bytes_in);
    log_rec_num(&r, "bytes_out", c->bytes_out);
    log_rec_num(&r, "commands", c->commands);
    log_rec_ms(&r, "duration_ms", uv_hrtime() - c->login_ns);
    log_rec_emit(&r);
    free(c->audit_user);
    c->audit_user = NULL;
}

bool conn_plaintext_auth_ok(struct conn *c)
{
    const struct conf *cf = &c->srv->conf;
    if (c->tls_state == C_TLS || c->from_proxy)
        return true;
    if (c->sock_peer.ss_family != AF_INET && c->sock_peer.ss_family != AF_INET6)
        return false;
    return conf_net_match(cf->plaintext_auth_networks, cf->n_plaintext_nets,
                          (const struct sockaddr *)&c->sock_peer);
}

bool conn_from_proxy_network(struct conn *c)
{
    return c->from_proxy;
}

/* ---- per-IP counts ---- */

/* Counted per client group: an IPv6 /64 (client_prefix_v6) as one, as the
 * login throttle counts it. */
static void ip_key(const struct server *s, const struct sockaddr_storage *ss, uint8_t key[16])
{
    conf_client_group((const struct sockaddr *)ss, s->conf.client_prefix_v4,
                      s->conf.client_prefix_v6, key);
}

static unsigned ip_hash(const uint8_t key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % IP_BUCKETS;
}

/* Returns the count after adding delta (+1 or -1); -1 on allocation failure. */
static long ip_adjust(struct server *s, const struct sockaddr_storage *ss, int delta)
{
    uint8_t key[16];
    struct ipcount **pp, *e;

    if (!s->ipbuckets) {
        s->ipbuckets = calloc(IP_BUCKETS, sizeof(*s->ipbuckets));
        if (!s->ipbuckets)
            return -1;
    }
    ip_key(s, ss, key);
    for (pp = &s->ipbuckets[ip_hash(key)]; (e = *pp); pp = &e->next)
        if (!memcmp(e->addr, key, 16))
            break;
    if (!e) {
        if (delta < 0)
            return 0;
        e = calloc(1, sizeof(*e));
        if (!e)
            return -1;
        memcpy(e->addr, key, 16);
        e->next = *pp;
        *pp = e;
    }
    if (delta > 0) {
        e->n++;
    } else if (--e->n == 0) {
        *pp = e->next;
        free(e);
        return 0;
    }
    return e->n;
}

/* ---- writing ---- */

static void on_write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;

    c->queued -= w->len;
    free(w->data);
    free(w);
    if (status < 0) {
        if (!c->close_called) {
            log_debug("conn=%llu write failed: %s", (unsigned long long)c->info.id,
                      uv_strerror(status));
            c->closing = true;
            finish_close(c);
        }
        return;
    }
    if (c->closing) {
        if (c->queued == 0 && !c->close_called)
            finish_close(c);
        return;
    }
    if (c->z && c->queued == 0 && !zlayer_unflushed(c->z)) {
        zlayer_release_output(c->z); /* all sent: an idle session holds no compressor */
        if (!c->zin_len && !c->zin_more)
            zlayer_park_input(c->z);
    }
    if (c->drain_wanted && c->queued < WRITE_LOW) {
        c->drain_wanted = false;
        if (c->handler->on_drain)
            c->handler->on_drain(c);
    }
}

/* Sends raw bytes; takes ownership of data (malloc'd). */
static void write_raw(struct conn *c, char *data, size_t len)
{
    struct wreq *w;
    uv_buf_t b;
    size_t sent = 0; /* what the socket took at once: the rest is queued from there */

    if (c->close_called) {
        free(data);
        return;
    }
    c->bytes_out += len;
    if (c->queued == 0) {
        b = uv_buf_init(data, (unsigned)len);
        int r = uv_try_write(&c->h.stream, &b, 1);
        if (r == (int)len) {
            free(data);
            return;
        }
        if (r > 0) {
            sent = (size_t)r;
            len -= sent;
        } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
            free(data);
            c->closing = true;
            finish_close(c);
            return;
        }
    }
    w = malloc(sizeof(*w));
    if (!w) {
        free(data);
        c->closing = true;
        finish_close(c);
        return;
    }
    w->c = c;
    w->len = len;
    w->data = data;
    b = uv_buf_init(data + sent, (unsigned)len);
    if (uv_write(&w->req, &c->h.stream, &b, 1, on_write_done) < 0) {
        free(data);
        free(w);
        c->closing = true;
        finish_close(c);
        return;
    }
    c->queued += len;
    if (c->queued > c->queued_peak)
        c->queued_peak = c->queued;
    if (c->queued >= CONN_WRITE_HIGH)
        c->drain_wanted = true;
}

static void flush_tls(struct conn *c)
{
    char *out;
    size_t n = tls_session_take_output(c->tls, &out);
    if (n)
        write_raw(c, out, n);
}

/* Compressed bytes (owned, malloc'd) to TLS or the socket. */
static void write_compressed(void *arg, char *data, size_t len)
{
    struct conn *c = arg;

    if (c->close_called) {
        free(data);
        return;
    }
    if (c->tls_state == C_TLS) {
        int r = tls_session_write(c->tls, data, len);
        free(data);
        if (r < 0) {
            c->closing = true;
            finish_close(c);
            return;
        }
        flush_tls(c);
        return;
    }
    write_raw(c, data, len);
}

void conn_write(struct conn *c, const void *buf, size_t len)
{
    if (c->close_called || len == 0)
        return;
    if (c->z) {
        /* flushed at the end of the burst (z_flush) */
        if (zlayer_deflate(c->z, buf, len, false, write_compressed, c) < 0) {
            c->closing = true;
            finish_close(c);
            return;
        }
        z_schedule(c);
        return;
    }
    if (c->tls_state == C_TLS) {
        if (tls_session_write(c->tls, buf, len) < 0) {
            c->closing = true;
            finish_close(c);
            return;
        }
        flush_tls(c);
        return;
    }
    if (c->tls_state == C_HANDSHAKE) {
        /* nothing may be said in clear once TLS has started */
        log_warn("conn=%llu %s wrote during the TLS handshake; dropped",
                 (unsigned long long)c->info.id, c->handler->name);
        return;
    }
    char *copy = malloc(len);
    if (!copy) {
        c->closing = true;
        finish_close(c);
        return;
    }
    memcpy(copy, buf, len);
    write_raw(c, copy, len);
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
    char small[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        conn_write(c, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        return;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    conn_write(c, big, (size_t)n);
    free(big);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;

    if (c->closing) {
        /* the peer did not take our last bytes in time */
        finish_close(c);
        return;
    }
    if (c->greet_pending) {
        proxy_wait_over(c);
        return;
    }
    if (c->tls_state == C_HANDSHAKE) {
        log_info("conn=%llu remote=%s TLS handshake timed out%s", (unsigned long long)c->info.id,
                 c->remote,
                 c->deadline && uv_now(c->srv->loop) >= c->deadline ? " (login deadline)" : "");
        c->closing = true;
        finish_close(c);
        return;
    }
    if (c->handler->on_timeout && c->opened)
        c->handler->on_timeout(c);
    else
        conn_close(c);
}

/* Arms the timer for ms from now (0: no timer of its own), never past the
 * login deadline while it is in force. */
static void arm_timer(struct conn *c, uint64_t ms)
{
    uint64_t now = uv_now(c->srv->loop), due = ms ? now + ms : 0;

    if (c->deadline && (!due || c->deadline < due))
        due = c->deadline;
    if (!due)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

void conn_set_timeout(struct conn *c, unsigned ms)
{
    c->timeout_ms = ms;
    if (c->closing || c->tls_state == C_HANDSHAKE)
        return;
    arm_timer(c, ms);
}

void conn_set_logged_in(struct conn *c)
{
    c->deadline = 0;
    if (c->closing || c->tls_state == C_HANDSHAKE)
        return;
    arm_timer(c, c->timeout_ms);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

/* ---- COMPRESS=DEFLATE ---- */

/* What one pass inflates before it lets other connections run: input is
 * then held (reading stops) until the end of the loop iteration. The
 * protocol receives it in ZIN_CHUNK pieces and applies its own line and
 * literal limits; nothing is inflated while it has paused the connection,
 * so what waits is at most one read of compressed bytes. */
#define ZIN_CHUNK 16384
#define ZIN_BUDGET (256u * 1024)

static void z_fail(struct conn *c)
{
    log_info("conn=%llu remote=%s invalid compressed input; closing",
             (unsigned long long)c->info.id, c->remote);
    c->closing = true;
    finish_close(c);
}

/* Keeps in/len for later (appended to what already waits). */
static int z_keep(struct conn *c, const char *in, size_t len)
{
    if (!len)
        return 0;
    if (c->zin && in >= c->zin && in < c->zin + c->zin_len) {
        /* the rest of zin itself */
        memmove(c->zin, in, len);
        c->zin_len = len;
        return 0;
    }
    char *p = realloc(c->zin, c->zin_len + len);
    if (!p)
        return -1;
    memcpy(p + c->zin_len, in, len);
    c->zin = p;
    c->zin_len += len;
    return 0;
}

/* Inflates what waits in zin into the protocol, within the budget. */
static void z_run_input(struct conn *c)
{
    char out[ZIN_CHUNK];
    size_t done = 0;
    const char *in = c->zin;
    size_t len = c->zin_len;

    while ((len || c->zin_more) && !c->closing && !c->paused && done < ZIN_BUDGET) {
        long n = zlayer_inflate(c->z, &in, &len, out, sizeof(out), &c->zin_more);
        if (n < 0) {
            z_fail(c);
            return;
        }
        if (n == 0 && !len)
            c->zin_more = false;
        done += (size_t)n;
        if (n)
            c->handler->on_input(c, out, (size_t)n);
    }
    if (c->close_called)
        return;
    if (len && in != c->zin) {
        if (z_keep(c, in, len) < 0) {
            c->closing = true;
            finish_close(c);
            return;
        }
    } else if (!len) {
        free(c->zin);
        c->zin = NULL;
        c->zin_len = 0;
    }
    bool waiting = c->zin_len || c->zin_more;
    if (waiting && !c->zheld) {
        c->zheld = true; /* no more reads until this is inflated */
        if (c->reading) {
            uv_read_stop(&c->h.stream);
            c->reading = false;
        }
    } else if (!waiting && c->zheld) {
        c->zheld = false;
        start_reading(c);
    }
    if (waiting && !c->paused)
        z_schedule(c); /* the budget ran out: on at the end of the iteration */
}

/* Plaintext from the socket or TLS for the protocol. */
static void deliver(struct conn *c, const char *buf, size_t len)
{
    if (!c->z) {
        c->handler->on_input(c, buf, len);
        return;
    }
    if (z_keep(c, buf, len) < 0) {
        c->closing = true;
        finish_close(c);
        return;
    }
    z_run_input(c);
}

/* Runs once per loop iteration, before waiting: inflates input left over,
 * then ends each burst of output with a sync flush. */
static void on_zidle(uv_idle_t *h)
{
    (void)h;
}

static void z_unlist(struct conn *c);

static void on_zprepare(uv_prepare_t *p)
{
    struct server *s = p->data;
    struct conn *c;
    /* only those listed now: a connection that lists itself again (input
     * left over) runs in the next iteration */
    unsigned n = s->zcount;

    while (n-- > 0 && (c = s->zlist)) {
        z_unlist(c);
        if (c->close_called || !c->z)
            continue;
        if ((c->zin_len || c->zin_more) && !c->paused) {
            z_run_input(c);
            if (c->close_called)
                continue;
        }
        z_flush(c, true);
    }
    if (s->zlist) {
        uv_idle_start(&s->zidle, on_zidle); /* more to do: the loop must not wait */
    } else {
        uv_idle_stop(&s->zidle);
        uv_prepare_stop(p);
    }
}

static void z_unlist(struct conn *c)
{
    struct server *s = c->srv;
    if (!c->zlisted)
        return;
    if (c->zprev)
        c->zprev->znext = c->znext;
    else
        s->zlist = c->znext;
    if (c->znext)
        c->znext->zprev = c->zprev;
    else
        s->zlast = c->zprev;
    s->zcount--;
    c->zlisted = false;
    c->znext = c->zprev = NULL;
}

static void z_schedule(struct conn *c)
{
    struct server *s = c->srv;
    if (c->zlisted || c->close_called)
        return;
    c->zlisted = true;
    c->znext = NULL;
    c->zprev = s->zlast;
    if (s->zlast)
        s->zlast->znext = c;
    else
        s->zlist = c;
    s->zlast = c;
    s->zcount++;
    if (!s->zprepare_init) {
        uv_prepare_init(s->loop, &s->zprepare);
        s->zprepare.data = s;
        uv_unref((uv_handle_t *)&s->zprepare);
        uv_idle_init(s->loop, &s->zidle);
        uv_unref((uv_handle_t *)&s->zidle);
        s->zprepare_init = true;
    }
    uv_prepare_start(&s->zprepare, on_zprepare);
}

/* Ends the burst with a sync flush; release: free the compressor when
 * everything went out (it is re-created for the next output). */
static void z_flush(struct conn *c, bool release)
{
    if (!c->z || c->close_called)
        return;
    if (zlayer_unflushed(c->z) && zlayer_deflate(c->z, NULL, 0, true, write_compressed, c) < 0) {
        c->closing = true;
        finish_close(c);
        return;
    }
    if (release && c->queued == 0 && !c->close_called) {
        zlayer_release_output(c->z);
        if (!c->zin_len && !c->zin_more)
            zlayer_park_input(c->z);
    }
}

int conn_compress(struct conn *c, const char *pending, size_t len)
{
    if (c->z || c->closing || c->tls_state == C_HANDSHAKE)
        return -1;
    c->z = zlayer_new();
    if (!c->z)
        return -1;
    if (len) {
        /* compressed bytes that came with the command: inflated at the
         * end of this iteration, not inside the protocol's call */
        if (z_keep(c, pending, len) < 0)
            return -1;
        z_schedule(c);
    }
    return 0;
}

bool conn_compressed(struct conn *c)
{
    return c->z != NULL;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("conn=%llu read: %s", (unsigned long long)c->info.id,
                      uv_strerror((int)nread));
        c->closing = true;
        finish_close(c);
        return;
    }
    if (c->closing)
        return; /* a closing connection ignores what still arrives */
    c->bytes_in += (size_t)nread;
    c->last_input = uv_now(c->srv->loop);
    if (c->tcp) {
        /* A client that writes a command in two segments (the line, then
         * its CRLF; a line, then its literal) with Nagle's algorithm on
         * sends the second only once the first is acknowledged, and the
         * kernel delays that ACK (40 ms) while the server has nothing to
         * say. Quick ACK mode lasts for a few segments only: asked again
         * on every read. */
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)st, &fd) == 0)
            (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
    if (c->timeout_ms && c->tls_state != C_HANDSHAKE)
        arm_timer(c, c->timeout_ms);
    if (c->px)
        proxy_input(c, buf->base, (size_t)nread);
    else
        input(c, buf->base, (size_t)nread);
}

/* Bytes from the socket: to TLS, or to the protocol. */
static void input(struct conn *c, const char *buf, size_t len)
{
    switch (c->tls_state) {
    case C_PLAIN:
        deliver(c, buf, len);
        break;
    case C_HANDSHAKE:
    case C_TLS:
        if (tls_session_feed(c->tls, buf, len) < 0) {
            c->closing = true;
            finish_close(c);
            return;
        }
        if (c->tls_state == C_HANDSHAKE)
            do_handshake(c);
        else
            decrypt_input(c);
        break;
    }
}

static void decrypt_input(struct conn *c)
{
    char plain[16384];

    while (!c->closing) {
        ssize_t n = tls_session_read(c->tls, plain, sizeof(plain));
        if (n == 0)
            break;
        if (n < 0) {
            c->closing = true;
            flush_tls(c);
            finish_close(c);
            return;
        }
        deliver(c, plain, (size_t)n);
    }
    if (c->tls && !c->close_called)
        flush_tls(c); /* e.g. TLS 1.3 key update replies */
}

static void start_reading(struct conn *c)
{
    if (c->reading || c->paused || c->zheld || c->close_called)
        return;
    if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0)
        c->reading = true;
}

void conn_pause(struct conn *c)
{
    c->paused = true;
    if (c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
}

void conn_resume(struct conn *c)
{
    if (c->closing)
        return;
    c->paused = false;
    if (c->zin_len || c->zin_more)
        z_schedule(c); /* what waits is inflated first, at the end of the iteration */
    start_reading(c);
}

/* ---- TLS ---- */

/* The listener kind's *_client_cert setting. */
static enum tls_client_cert client_cert_mode(const struct conf *cf, const char *service)
{
    const char *v = !strcmp(service, "imap")    ? cf->imap_client_cert
                    : !strcmp(service, "imaps") ? cf->imaps_client_cert
                    : !strcmp(service, "pop3")  ? cf->pop3_client_cert
                    : !strcmp(service, "pop3s") ? cf->pop3s_client_cert
                                                : "none";

    return !strcmp(v, "required")   ? TLS_CLIENT_CERT_REQUIRED
           : !strcmp(v, "optional") ? TLS_CLIENT_CERT_OPTIONAL
                                    : TLS_CLIENT_CERT_NONE;
}

static void begin_tls(struct conn *c)
{
    c->tls = tls_session_new(c->srv->tls);
    if (!c->tls) {
        log_error("conn=%llu cannot start a TLS session", (unsigned long long)c->info.id);
        c->closing = true;
        finish_close(c);
        return;
    }
    tls_session_client_cert(c->tls, client_cert_mode(&c->srv->conf, c->info.service));
    c->tls_state = C_HANDSHAKE;
    arm_timer(c, c->srv->conf.tls_handshake_timeout_ms);
}

static void do_handshake(struct conn *c)
{
    const char *why = NULL;
    int r = tls_session_handshake(c->tls, &why);

    flush_tls(c);
    if (c->close_called)
        return;
    if (r == TLS_AGAIN)
        return;
    if (r == TLS_ERROR) {
        const struct peer_cert *p = tls_session_peer(c->tls);

        log_info("conn=%llu service=%s remote=%s TLS handshake failed: %s%s%s",
                 (unsigned long long)c->info.id, c->info.service, c->remote, why ? why : "?",
                 p->why[0] ? "; client certificate: " : "", p->why);
        c->closing = true;
        finish_close(c);
        return;
    }
    c->tls_state = C_TLS;
    metrics_conn_tls(&c->metrics, tls_session_version(c->tls));
    log_info("conn=%llu service=%s remote=%s tls=%s cipher=%s kx=%s resumed=%s",
             (unsigned long long)c->info.id, c->info.service, c->remote,
             tls_session_version(c->tls), tls_session_cipher(c->tls), tls_session_kx(c->tls),
             tls_session_resumed(c->tls) ? "yes" : "no");
    const struct peer_cert *peer = tls_session_peer(c->tls);
    if (peer->present)
        log_info("conn=%llu client certificate sha256=%s %s%s", (unsigned long long)c->info.id,
                 peer->fingerprint, peer->valid ? "valid" : "refused: ", peer->why);
    arm_timer(c, c->timeout_ms);
    if (!c->opened) {
        c->opened = true;
        if (c->handler->on_open(c) < 0) {
            conn_close(c);
            return;
        }
    } else if (c->handler->on_tls_ready) {
        c->handler->on_tls_ready(c);
    }
    decrypt_input(c);
}

int conn_starttls(struct conn *c)
{
    if (c->tls_state != C_PLAIN || !c->srv->tls || c->closing)
        return -1;
    begin_tls(c);
    return c->tls ? 0 : -1;
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct server *s = c->srv;

    if (--c->handles)
        return;
    if (c->opened && c->handler->on_close)
        c->handler->on_close(c);
    if (c->audit_user)
        audit_logout(c);
    free(c->login_try);
    free(c->client_id);
    if (c->quiet_open && !c->bytes_in && !c->bytes_out)
        log_debug("conn=%llu service=%s remote=%s closed with nothing sent",
                  (unsigned long long)c->info.id, c->info.service, c->remote);
    else if (c->z)
        log_info("conn=%llu service=%s remote=%s user=%s closed in=%llu out=%llu queued_peak=%zu "
                 "zlib_held=%zu zlib_peak=%zu",
                 (unsigned long long)c->info.id, c->info.service, c->remote,
                 c->user[0] ? c->user : "-", (unsigned long long)c->bytes_in,
                 (unsigned long long)c->bytes_out, c->queued_peak, c->zheld_bytes,
                 zlayer_peak(c->z));
    else
        log_info("conn=%llu service=%s remote=%s user=%s closed in=%llu out=%llu queued_peak=%zu",
                 (unsigned long long)c->info.id, c->info.service, c->remote,
                 c->user[0] ? c->user : "-", (unsigned long long)c->bytes_in,
                 (unsigned long long)c->bytes_out, c->queued_peak);
    zlayer_free(c->z);
    free(c->zin);
    free(c->px);
    if (c->counted_ip)
        ip_adjust(s, &c->peer, -1);
    metrics_conn_close(&c->metrics);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    tls_session_free(c->tls);
    free(c);
    if (s->stopping && !s->conns)
        uv_stop(s->loop);
}

static void finish_close(struct conn *c)
{
    if (c->close_called)
        return;
    c->close_called = true;
    c->closing = true;
    c->zheld_bytes = zlayer_bytes(c->z);
    z_unlist(c);
    uv_close(&c->h.handle, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    conn_pause(c);
    z_flush(c, false);
    if (c->tls_state == C_TLS) {
        tls_session_bye(c->tls);
        flush_tls(c);
    }
    if (c->close_called)
        return;
    if (c->queued == 0) {
        finish_close(c);
        return;
    }
    /* give the peer a bounded time to take what is queued */
    unsigned grace = c->srv->conf.shutdown_timeout_ms ? c->srv->conf.shutdown_timeout_ms : 1000;
    uv_timer_start(&c->timer, on_timer, grace, 0);
}

void conn_abort(struct conn *c)
{
    uv_os_fd_t fd;
    if (c->close_called)
        return;
    /* a reset: neither our queue nor the kernel's send buffer is kept for
     * a peer that does not read */
    if (!c->lst || !c->lst->is_unix) {
        if (uv_fileno(&c->h.handle, &fd) == 0) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
    }
    c->closing = true;
    finish_close(c);
}

void conn_shutdown_all(struct server *s)
{
    struct conn *c, *next;
    for (c = s->conns; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (c->opened && c->handler->on_shutdown && c->tls_state != C_HANDSHAKE)
            c->handler->on_shutdown(c);
        else
            conn_close(c);
    }
}

void conn_abort_all(struct server *s)
{
    struct conn *c, *next;
    for (c = s->conns; c; c = next) {
        next = c->next;
        c->closing = true;
        finish_close(c);
    }
}

/* ---- the control socket's view ---- */

const char *conn_login_revoked(struct conn *c, const char *address)
{
    return control_revoked(c->srv, address, c->last_input);
}

struct conn *conn_first(struct server *s)
{
    return s->conns;
}

struct conn *conn_next(struct conn *c)
{
    return c->next;
}

void conn_who(struct conn *c, struct conn_who *w)
{
    struct conn_state st = {0};
    uint64_t now = uv_now(c->srv->loop);

    w->id = c->info.id;
    w->service = c->info.service;
    w->remote = c->remote;
    w->user = c->address;
    w->tls = c->tls_state == C_TLS ? tls_session_version(c->tls) : NULL;
    w->idle_ms = now > c->last_input ? now - c->last_input : 0;
    w->login_at = c->login_at;
    w->closing = c->closing;
    if (c->greet_pending)
        st.state = "proxy-header";
    else if (c->tls_state == C_HANDSHAKE)
        st.state = "handshake";
    else if (c->opened && !c->closing && c->proto && c->handler->describe)
        c->handler->describe(c, &st);
    w->state = c->closing ? "closing" : st.state ? st.state : "-";
    w->mailbox = st.mailbox;
}

bool conn_kick(struct conn *c, const char *reason)
{
    if (c->closing)
        return false;
    if (!c->opened || c->tls_state == C_HANDSHAKE || !c->proto) {
        conn_close(c);
        return true;
    }
    if (c->handler->on_kick)
        c->handler->on_kick(c, reason);
    else
        c->handler->on_shutdown(c);
    return true;
}

/* ---- the PROXY header ---- */

/* A plaintext listener's session begins: on_open sends the greeting.
 * Returns false when the connection is closing. */
static bool open_plain(struct conn *c)
{
    c->greet_pending = false;
    c->opened = true;
    arm_timer(c, 0);
    if (c->handler->on_open(c) < 0) {
        conn_close(c);
        return false;
    }
    return !c->closing;
}

/* A proxy's connection is counted under its client's address, now known.
 * Returns false when that client has too many connections. */
static bool proxy_count(struct conn *c)
{
    struct server *s = c->srv;
    long per_ip = ip_adjust(s, &c->peer, +1);

    c->counted_ip = per_ip > 0;
    if (per_ip >= 0 && (unsigned long)per_ip <= s->conf.max_connections_per_ip)
        return true;
    log_warn("conn=%llu service=%s remote=%s refused: too many connections from this client",
             (unsigned long long)c->info.id, c->info.service, c->remote);
    if (c->tls_state == C_PLAIN && c->handler->busy_reply)
        conn_write(c, c->handler->busy_reply, strlen(c->handler->busy_reply));
    conn_close(c);
    return false;
}

/* The first bytes are decided; the connection goes on to TLS or to the
 * protocol, with rest (bytes that followed) as its first input. */
static void proxy_done(struct conn *c, const char *rest, size_t len)
{
    free(c->px);
    c->px = NULL;
    if (c->from_proxy && c->lst->proxy && !proxy_count(c))
        return;
    if (c->greet_pending && !open_plain(c))
        return;
    if (len)
        input(c, rest, len);
}

/* The bytes before the PROXY header's end (or before its absence shows). */
static void proxy_input(struct conn *c, const char *buf, size_t len)
{
    static char joined[sizeof(read_buf) + 16];
    struct proxyproto *p = c->px;
    size_t used;

    switch (proxyproto_feed(p, (const uint8_t *)buf, len, &used)) {
    case PROXYPROTO_MORE:
        if (c->greet_pending)
            arm_timer(c, 0); /* begun: the login deadline bounds the rest */
        return;
    case PROXYPROTO_NONE: {
        /* the client's own bytes: those held, then the rest */
        size_t held = p->len;
        if (c->quiet_open)
            log_info("conn=%llu service=%s remote=%s connected without a PROXY header",
                     (unsigned long long)c->info.id, c->info.service, c->remote);
        if (held + len - used > sizeof(joined)) {
            c->closing = true;
            finish_close(c);
            return;
        }
        memcpy(joined, p->buf, held);
        memcpy(joined + held, buf + used, len - used);
        proxy_done(c, joined, held + len - used);
        return;
    }
    case PROXYPROTO_HEADER:
        /* sniffed from a peer outside proxy_networks: never parsed */
        log_warn("conn=%llu service=%s remote=%s refused: PROXY header from outside "
                 "proxy_networks",
                 (unsigned long long)c->info.id, c->info.service, c->remote);
        if (c->opened && c->tls_state == C_PLAIN && c->handler->proxy_refused_reply)
            conn_write(c, c->handler->proxy_refused_reply, strlen(c->handler->proxy_refused_reply));
        conn_close(c);
        return;
    case PROXYPROTO_BAD:
        log_warn("conn=%llu service=%s remote=%s malformed PROXY header (%s); closing",
                 (unsigned long long)c->info.id, c->info.service, c->remote, p->why);
        conn_close(c);
        return;
    case PROXYPROTO_DONE:
        break;
    }
    char via[sizeof(c->remote)];
    memcpy(via, c->remote, sizeof(via));
    if (!p->hdr.local) {
        memcpy(&c->peer, &p->hdr.src, sizeof(c->peer));
        format_peer(c);
    }
    log_info("conn=%llu service=%s remote=%s via=%s PROXY v%d%s", (unsigned long long)c->info.id,
             c->info.service, c->remote, via, p->hdr.version,
             p->hdr.local ? " without an address: the proxy's own" : "");
    proxy_done(c, buf + used, len - used);
}

/* proxy_header_wait passed with nothing read (a direct client waiting for
 * the greeting), or the login deadline with a header begun. */
static void proxy_wait_over(struct conn *c)
{
    uv_os_fd_t fd;
    char b;

    if (c->px && c->px->len == 0 && c->deadline && uv_now(c->srv->loop) < c->deadline) {
        /* bytes already in the socket that a busy loop has not read yet
         * are the header's, or the client's: they decide */
        if (uv_fileno(&c->h.handle, &fd) == 0 && recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
            arm_timer(c, 0);
            return;
        }
        if (c->quiet_open)
            log_info("conn=%llu service=%s remote=%s connected without a PROXY header",
                     (unsigned long long)c->info.id, c->info.service, c->remote);
        proxy_done(c, NULL, 0);
        return;
    }
    log_info("conn=%llu service=%s remote=%s PROXY header not complete by the login deadline",
             (unsigned long long)c->info.id, c->info.service, c->remote);
    conn_close(c);
}

/* ---- accepting ---- */

static void format_peer(struct conn *c)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (c->peer.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&c->peer;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
        snprintf(c->remote, sizeof(c->remote), "%s:%u", ip, port);
    } else if (c->peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&c->peer;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
        snprintf(c->remote, sizeof(c->remote), "[%s]:%u", ip, port);
    } else {
        snprintf(c->remote, sizeof(c->remote), "unix");
    }
}

void conn_accept(struct listener *l, int fd)
{
    struct server *s = l->srv;
    struct conn *c = calloc(1, sizeof(*c));
    int r;

    if (!c) {
        close(fd);
        server_note_refused(s, l, 1, "out of memory");
        return;
    }
    c->srv = s;
    c->lst = l;
    c->handler = l->handler;
    if (l->is_unix)
        r = uv_pipe_init(s->loop, &c->h.pipe, 0);
    else
        r = uv_tcp_init(s->loop, &c->h.tcp);
    if (r < 0) {
        close(fd);
        free(c);
        server_note_refused(s, l, 1, uv_strerror(r));
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->h.handle.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->info.id = ++s->next_conn_id;
    c->info.service = l->service;
    c->info.remote = c->remote;
    c->info.peer = (const struct sockaddr *)&c->peer;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;

    r = l->is_unix ? uv_pipe_open(&c->h.pipe, fd) : uv_tcp_open(&c->h.tcp, fd);
    if (r < 0) {
        close(fd);
        server_note_refused(s, l, 1, uv_strerror(r));
        c->closing = true;
        finish_close(c);
        return;
    }
    if (!l->is_unix) {
        int len = sizeof(c->peer);
        uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&c->peer, &len);
        uv_tcp_nodelay(&c->h.tcp, 1);
        c->tcp = true;
        uv_tcp_keepalive(&c->h.tcp, 1, 300);
        c->sock_peer = c->peer;
        c->from_proxy = conf_net_match(s->conf.proxy_networks, s->conf.n_proxy_nets,
                                       (const struct sockaddr *)&c->sock_peer);
    }
    format_peer(c);

    /* A proxy's connections are counted per address under the client's
     * address, once its PROXY header (or the lack of one) is known. */
    bool counted_later = l->proxy && c->from_proxy;
    long per_ip = 0;
    if (!l->is_unix && !counted_later) {
        per_ip = ip_adjust(s, &c->peer, +1);
        c->counted_ip = per_ip > 0;
    }
    if (s->stopping || per_ip < 0 || s->nconns > s->max_conns ||
        (unsigned long)per_ip > s->conf.max_connections_per_ip) {
        log_warn("conn=%llu service=%s remote=%s refused: too many connections (%u total)",
                 (unsigned long long)c->info.id, l->service, c->remote, s->nconns);
        if (!l->implicit_tls && c->handler->busy_reply)
            conn_write(c, c->handler->busy_reply, strlen(c->handler->busy_reply));
        conn_close(c);
        return;
    }
    c->quiet_open = counted_later;
    if (c->quiet_open)
        log_debug("conn=%llu service=%s remote=%s connected", (unsigned long long)c->info.id,
                  l->service, c->remote);
    else
        log_info("conn=%llu service=%s remote=%s connected", (unsigned long long)c->info.id,
                 l->service, c->remote);
    metrics_conn_open(&c->metrics, l->service);
    /* login_timeout is a deadline counted from here, across the TLS
     * handshake: neither a slow handshake nor a client trickling bytes holds
     * the slot longer; the protocol ends it once logged in */
    c->deadline = uv_now(s->loop) + s->conf.login_timeout_ms;
    c->last_input = uv_now(s->loop);
    if (l->proxy) {
        /* the first bytes are looked at before TLS or the protocol */
        c->px = malloc(sizeof(*c->px));
        if (!c->px) {
            conn_close(c);
            return;
        }
        proxyproto_init(c->px, c->from_proxy);
    }
    if (l->implicit_tls) {
        begin_tls(c); /* the ClientHello comes after the header */
        if (c->closing)
            return;
    } else if (counted_later) {
        /* the client speaks after the greeting, the proxy before it */
        c->greet_pending = true;
        arm_timer(c, s->conf.proxy_header_wait_ms);
    } else if (!open_plain(c)) {
        return;
    }
    start_reading(c);
}
