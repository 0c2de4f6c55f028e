/* Benchmark client for scripts/bench/imap: speaks IMAP over TLS (GnuTLS)
 * to any server, so that coffred and Dovecot get the same load.
 *
 *   imap_client mixed PORT CAFILE NUSERS PASS NCLIENTS SECONDS NMSGS
 *       NCLIENTS threads, each looping over whole sessions until SECONDS
 *       have passed: connect, LOGIN, SELECT INBOX, FETCH headers of 20,
 *       FETCH one body, STORE a flag, APPEND, UID STORE \Deleted + UID
 *       (each mailbox holds NMSGS messages, at least 21)
 *       EXPUNGE of what it appended, LOGOUT. User of thread t: u<t%NUSERS+1>.
 *       Prints "sessions S commands C errors E seconds T cpu U".
 *   imap_client warm PORT CAFILE NUSERS PASS
 *       logs every user in once (SELECT INBOX, FETCH 1:* FLAGS, LOGOUT), so
 *       that first-open indexing and login caches are not measured.
 *   imap_client idle PORT CAFILE NUSERS PASS NCONN
 *       opens NCONN connections, each LOGIN + SELECT INBOX + IDLE, prints
 *       "ready N failed F seconds T" and holds them until stdin closes.
 *
 * Users are u1..uNUSERS@bench.example, all with password PASS. Host is
 * 127.0.0.1. Not a test: a load generator. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;
static const char *cafile;
static int nusers;
static const char *pass;
static gnutls_certificate_credentials_t cred;
static double deadline;
static unsigned nmsgs = 200;

struct cl {
    int fd;
    gnutls_session_t tls;
    char buf[65536];
    size_t have, off;
    unsigned tagn;
    char tag[16];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void cl_close(struct cl *c)
{
    if (c->tls) {
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int cl_connect(struct cl *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1, r;

    c->have = c->off = 0;
    c->tagn = 0;
    c->tls = NULL;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    if (gnutls_init(&c->tls, GNUTLS_CLIENT) < 0)
        goto fail;
    gnutls_set_default_priority(c->tls);
    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, "localhost", 9);
    gnutls_session_set_verify_cert(c->tls, "localhost", 0);
    gnutls_transport_set_int(c->tls, c->fd);
    do
        r = gnutls_handshake(c->tls);
    while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) {
        fprintf(stderr, "handshake: %s\n", gnutls_strerror(r));
        goto fail;
    }
    return 0;
fail:
    cl_close(c);
    return -1;
}

static int cl_write(struct cl *c, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = gnutls_record_send(c->tls, s, n);
        if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cl_fill(struct cl *c)
{
    if (c->off) {
        memmove(c->buf, c->buf + c->off, c->have - c->off);
        c->have -= c->off;
        c->off = 0;
    }
    if (c->have == sizeof(c->buf))
        return -1;
    for (;;) {
        ssize_t r = gnutls_record_recv(c->tls, c->buf + c->have, sizeof(c->buf) - c->have);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r <= 0)
            return -1;
        c->have += (size_t)r;
        return 0;
    }
}

/* One line (without CRLF) into out; a literal announced at its end is
 * skipped (read and dropped) and the rest of the response appended after
 * a marker, so that the caller sees only response lines. */
static int cl_line(struct cl *c, char *out, size_t cap)
{
    size_t len = 0;
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->have - c->off);
        if (!nl) {
            if (cl_fill(c) < 0)
                return -1;
            continue;
        }
        size_t n = (size_t)(nl - (c->buf + c->off)) + 1;
        size_t k = n < cap - 1 - len ? n : cap - 1 - len;
        memcpy(out + len, c->buf + c->off, k);
        len += k;
        out[len] = '\0';
        c->off += n;
        /* literal? "{N}\r\n" */
        if (len >= 4 && out[len - 2] == '\r' && out[len - 3] == '}') {
            char *o = strrchr(out, '{');
            if (o) {
                unsigned long long lit = strtoull(o + 1, NULL, 10);
                while (lit) {
                    if (c->off == c->have && cl_fill(c) < 0)
                        return -1;
                    size_t avail = c->have - c->off;
                    size_t take = avail < lit ? avail : (size_t)lit;
                    c->off += take;
                    lit -= take;
                }
                len = (size_t)(o - out);
                continue;
            }
        }
        while (len && (out[len - 1] == '\n' || out[len - 1] == '\r'))
            out[--len] = '\0';
        return 0;
    }
}

/* Sends "TAG fmt" and reads up to the tagged line; 0 when OK. The
 * tagged line is left in last (if given). */
static int cl_cmd(struct cl *c, char *last, size_t lastcap, const char *fmt, ...)
{
    char cmd[2048], line[8192];
    va_list ap;
    int n;

    snprintf(c->tag, sizeof(c->tag), "b%u", ++c->tagn);
    n = snprintf(cmd, sizeof(cmd), "%s ", c->tag);
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "\r\n");
    if (cl_write(c, cmd, (size_t)n) < 0)
        return -1;
    size_t tl = strlen(c->tag);
    for (;;) {
        if (cl_line(c, line, sizeof(line)) < 0)
            return -1;
        if (!strncmp(line, c->tag, tl) && line[tl] == ' ') {
            if (last)
                snprintf(last, lastcap, "%s", line);
            return strncmp(line + tl + 1, "OK", 2) ? 1 : 0;
        }
    }
}

static int login_select(struct cl *c, int user)
{
    char line[8192];
    if (cl_line(c, line, sizeof(line)) < 0 || strncmp(line, "* OK", 4))
        return -1;
    if (cl_cmd(c, line, sizeof(line), "LOGIN u%d@bench.example \"%s\"", user, pass)) {
        fprintf(stderr, "LOGIN u%d: %s\n", user, line);
        return -1;
    }
    if (cl_cmd(c, line, sizeof(line), "SELECT INBOX")) {
        fprintf(stderr, "SELECT: %s\n", line);
        return -1;
    }
    return 0;
}

static const char appmsg[] = "From: Bench <bench@example.org>\r\n"
                             "To: someone@bench.example\r\n"
                             "Subject: appended by the benchmark\r\n"
                             "Date: Mon, 7 Feb 2022 21:52:25 +0000\r\n"
                             "Message-ID: <append@bench.example>\r\n"
                             "\r\n"
                             "A short message appended and expunged again.\r\n";

struct stats {
    long sessions, commands, errors;
};

static int one_session(struct cl *c, int user, unsigned seed, long *cmds)
{
    char line[8192] = "(connect)", cmd[256];
    unsigned long uid;
    int n = 0;

    if (cl_connect(c) < 0)
        return -1;
    if (login_select(c, user) < 0)
        goto fail;
    n = 2;
    unsigned first = 1 + seed % (nmsgs > 20 ? nmsgs - 20 : 1);
    if (cl_cmd(c, line, sizeof(line),
               "FETCH %u:%u (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date "
               "Message-ID)])",
               first, first + 19))
        goto fail;
    n++;
    if (cl_cmd(c, line, sizeof(line), "FETCH %u BODY.PEEK[]", first + seed % 20))
        goto fail;
    n++;
    if (cl_cmd(c, line, sizeof(line), "STORE %u +FLAGS (\\Seen)", first + seed % 7))
        goto fail;
    n++;
    /* LITERAL+ (both servers advertise it): one round trip */
    snprintf(c->tag, sizeof(c->tag), "b%u", ++c->tagn);
    snprintf(cmd, sizeof(cmd), "%s APPEND INBOX {%zu+}\r\n", c->tag, sizeof(appmsg) - 1);
    if (cl_write(c, cmd, strlen(cmd)) < 0 || cl_write(c, appmsg, sizeof(appmsg) - 1) < 0 ||
        cl_write(c, "\r\n", 2) < 0)
        goto fail;
    for (;;) {
        if (cl_line(c, line, sizeof(line)) < 0)
            goto fail;
        if (!strncmp(line, c->tag, strlen(c->tag)))
            break;
    }
    n++;
    char *au = strstr(line, "[APPENDUID ");
    if (strncmp(line + strlen(c->tag) + 1, "OK", 2) || !au) {
        fprintf(stderr, "APPEND: %s\n", line);
        goto fail;
    }
    au = strchr(au + 11, ' ');
    uid = au ? strtoul(au + 1, NULL, 10) : 0;
    if (!uid)
        goto fail;
    if (cl_cmd(c, line, sizeof(line), "UID STORE %lu +FLAGS.SILENT (\\Deleted)", uid))
        goto fail;
    n++;
    if (cl_cmd(c, line, sizeof(line), "UID EXPUNGE %lu", uid))
        goto fail;
    n++;
    if (cl_cmd(c, line, sizeof(line), "LOGOUT") < 0)
        goto fail;
    n++;
    *cmds += n;
    cl_close(c);
    return 0;
fail:
    fprintf(stderr, "session failed after %d commands: %.200s\n", n, line);
    *cmds += n;
    cl_close(c);
    return -1;
}

struct worker {
    pthread_t th;
    int id;
    struct stats st;
};

static void *mixed_worker(void *arg)
{
    struct worker *w = arg;
    struct cl *c = calloc(1, sizeof(*c));
    unsigned seed = (unsigned)w->id * 2654435761u;

    if (!c)
        return NULL;
    c->fd = -1;
    while (now() < deadline) {
        seed = seed * 1103515245u + 12345u;
        if (one_session(c, w->id % nusers + 1, seed >> 8, &w->st.commands) == 0)
            w->st.sessions++;
        else
            w->st.errors++;
    }
    free(c);
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int run_mixed(int nclients, double seconds)
{
    struct worker *w = calloc((size_t)nclients, sizeof(*w));
    struct stats tot = {0};
    double t0 = now(), c0 = cpu_seconds();

    if (!w)
        return 1;
    deadline = t0 + seconds;
    for (int i = 0; i < nclients; i++) {
        w[i].id = i;
        pthread_create(&w[i].th, NULL, mixed_worker, &w[i]);
    }
    for (int i = 0; i < nclients; i++) {
        pthread_join(w[i].th, NULL);
        tot.sessions += w[i].st.sessions;
        tot.commands += w[i].st.commands;
        tot.errors += w[i].st.errors;
    }
    double el = now() - t0;
    printf("sessions %ld commands %ld errors %ld seconds %.2f cpu %.2f\n", tot.sessions,
           tot.commands, tot.errors, el, cpu_seconds() - c0);
    free(w);
    return 0;
}

/* ---- warm-up ---- */

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;

static int warm_next;
static long warm_failed;

static void *warm_worker(void *arg)
{
    char line[8192];
    struct cl *c = calloc(1, sizeof(*c));

    (void)arg;
    if (!c)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&idle_lock);
        int u = warm_next < nusers ? ++warm_next : 0;
        pthread_mutex_unlock(&idle_lock);
        if (!u)
            break;
        c->fd = -1;
        if (cl_connect(c) < 0 || login_select(c, u) < 0 ||
            cl_cmd(c, line, sizeof(line), "FETCH 1:* (FLAGS)") ||
            cl_cmd(c, line, sizeof(line), "LOGOUT") < 0) {
            pthread_mutex_lock(&idle_lock);
            warm_failed++;
            pthread_mutex_unlock(&idle_lock);
        }
        cl_close(c);
    }
    free(c);
    return NULL;
}

static int run_warm(void)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, warm_worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    printf("warmed %d failed %ld\n", nusers, warm_failed);
    return warm_failed ? 1 : 0;
}

/* ---- idle ---- */

static struct cl *idles;
static int nidle;
static long idle_ok, idle_failed;
static int idle_next;

static void *idle_worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&idle_lock);
        int i = idle_next < nidle ? idle_next++ : -1;
        pthread_mutex_unlock(&idle_lock);
        if (i < 0)
            return NULL;
        struct cl *c = &idles[i];
        char line[8192];
        int ok = 0;
        c->fd = -1;
        if (cl_connect(c) == 0 && login_select(c, i % nusers + 1) == 0) {
            snprintf(c->tag, sizeof(c->tag), "i%d", i);
            snprintf(line, sizeof(line), "%s IDLE\r\n", c->tag);
            if (cl_write(c, line, strlen(line)) == 0) {
                for (;;) {
                    if (cl_line(c, line, sizeof(line)) < 0)
                        break;
                    if (line[0] == '+') {
                        ok = 1;
                        break;
                    }
                    if (line[0] != '*')
                        break;
                }
            }
        }
        pthread_mutex_lock(&idle_lock);
        if (ok)
            idle_ok++;
        else {
            idle_failed++;
            if (idle_failed < 5)
                fprintf(stderr, "connection %d failed: %s\n", i, strerror(errno));
        }
        pthread_mutex_unlock(&idle_lock);
        if (!ok)
            cl_close(c);
    }
}

static int run_idle(int n)
{
    pthread_t th[8];
    double t0 = now();
    char b[64];

    nidle = n;
    idles = calloc((size_t)n, sizeof(*idles));
    if (!idles)
        return 1;
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, idle_worker, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    printf("ready %ld failed %ld seconds %.1f\n", idle_ok, idle_failed, now() - t0);
    fflush(stdout);
    while (read(0, b, sizeof(b)) > 0)
        ;
    for (int i = 0; i < n; i++) {
        if (idles[i].tls) {
            cl_write(&idles[i], "DONE\r\n", 6);
            cl_close(&idles[i]);
        }
    }
    free(idles);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s mixed PORT CAFILE NUSERS PASS NCLIENTS SECONDS NMSGS\n"
                        "       %s warm PORT CAFILE NUSERS PASS\n"
                        "       %s idle PORT CAFILE NUSERS PASS NCONN\n",
                argv[0], argv[0], argv[0]);
        return 2;
    }
    port = atoi(argv[2]);
    cafile = argv[3];
    nusers = atoi(argv[4]);
    pass = argv[5];
    if (nusers < 1 || port < 1)
        return 2;
    gnutls_global_init();
    gnutls_certificate_allocate_credentials(&cred);
    if (gnutls_certificate_set_x509_trust_file(cred, cafile, GNUTLS_X509_FMT_PEM) <= 0) {
        fprintf(stderr, "cannot load %s\n", cafile);
        return 1;
    }
    if (!strcmp(argv[1], "mixed") && argc == 9) {
        nmsgs = (unsigned)atoi(argv[8]);
        if (nmsgs < 21)
            return 2;
        return run_mixed(atoi(argv[6]), atof(argv[7]));
    }
    if (!strcmp(argv[1], "warm"))
        return run_warm();
    if (!strcmp(argv[1], "idle") && argc == 7)
        return run_idle(atoi(argv[6]));
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
