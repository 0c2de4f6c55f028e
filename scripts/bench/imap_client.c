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
 *       "ready N failed F seconds T", then "failed COUNT REASON" for each
 *       reason of failure (the server's answer without its tag, or what
 *       happened to the connection), holds them until stdin closes and
 *       prints "still open N" (those the server has not closed meanwhile).
 *   imap_client fill PORT CAFILE 1 PASS FIRST LAST BATCH_BYTES
 *       appends the big folder's messages FIRST..LAST to INBOX of
 *       <prefix>1 in MULTIAPPEND commands of about BATCH_BYTES (LITERAL+);
 *       message i is generated from i alone (big_message: about 1 kB to
 *       several MB, median about 5 kB, mean about 90 kB, 4.5 % with a base64
 *       attachment). Prints "appended N bytes B batches K seconds T cpu U".
 *   imap_client steps PORT CAFILE 1 PASS SERVER_PID warm|measure|sort
 *       the big-folder steps in one session (SELECT, UID FETCH 1:* FLAGS,
 *       Thunderbird's header fetch of the last 1,000 and of all, UID STORE
 *       1:* +FLAGS.SILENT \Seen, UID SEARCH TEXT, UID SEARCH SUBJECT,
 *       STATUS, SELECT again), each on a line "step NAME seconds S bytes B
 *       result R server_cpu C others_cpu O" (C: CPU seconds of SERVER_PID's
 *       process tree; O: the rest of the machine's, this client included).
 *       warm: the same, then \Seen taken off again; sort: SELECT and the
 *       SORT and THREAD steps only.
 *   imap_client gen I
 *       prints the big folder's message I.
 *
 * Users are u1..uNUSERS@bench.example (another prefix than u in
 * BENCH_USER_PREFIX), all with password PASS. Host is
 * 127.0.0.1. Not a test: a load generator. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <dirent.h>
#include <math.h>
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
    char err[160];             /* why the last step failed */
    unsigned long long rbytes; /* bytes received */
    unsigned long spaces;      /* spaces in the last line (beyond its cut too) */
    unsigned long uidnext;     /* from the last SELECT */
};

static const char *uprefix = "u"; /* BENCH_USER_PREFIX */

static void cl_err(struct cl *c, const char *what, const char *detail)
{
    snprintf(c->err, sizeof(c->err), "%s: %.140s", what, detail);
}

/* The text of a tagged line without its tag. */
static const char *untag(const char *line)
{
    const char *sp = strchr(line, ' ');
    return sp ? sp + 1 : line;
}

static void tls_err(struct cl *c, const char *what, ssize_t r)
{
    if (r == 0)
        cl_err(c, what, "connection closed by the server");
    else if (r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR)
        cl_err(c, what, strerror(errno));
    else
        cl_err(c, what, gnutls_strerror((int)r));
}

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
    if (c->fd < 0) {
        cl_err(c, "socket", strerror(errno));
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        cl_err(c, "connect", strerror(errno));
        goto fail;
    }
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
        tls_err(c, "handshake", r);
        fprintf(stderr, "%s\n", c->err);
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
        if (w <= 0) {
            tls_err(c, "write", w);
            return -1;
        }
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
        if (r <= 0) {
            tls_err(c, "read", r);
            return -1;
        }
        c->have += (size_t)r;
        c->rbytes += (unsigned long long)r;
        return 0;
    }
}

/* One line (without CRLF) into out; a literal announced at its end is
 * skipped (read and dropped) and the rest of the response appended after
 * a marker, so that the caller sees only response lines. */
static int cl_line(struct cl *c, char *out, size_t cap)
{
    size_t len = 0;
    c->spaces = 0;
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->have - c->off);
        if (!nl && c->have - c->off == sizeof(c->buf)) {
            /* a line longer than the buffer: keep its start, count the rest */
            size_t n = c->have - c->off;
            for (const char *q = c->buf + c->off; q < c->buf + c->have; q++)
                c->spaces += *q == ' ';
            size_t k = n < cap - 1 - len ? n : cap - 1 - len;
            memcpy(out + len, c->buf + c->off, k);
            len += k;
            out[len] = '\0';
            c->off = c->have;
        }
        if (!nl) {
            if (cl_fill(c) < 0)
                return -1;
            continue;
        }
        size_t n = (size_t)(nl - (c->buf + c->off)) + 1;
        for (const char *q = c->buf + c->off; q < nl; q++)
            c->spaces += *q == ' ';
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
        if (line[0] == '*') {
            const char *u = strstr(line, "[UIDNEXT ");
            if (u)
                c->uidnext = strtoul(u + 9, NULL, 10);
        }
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
    int r;
    if (cl_line(c, line, sizeof(line)) < 0)
        return -1;
    if (strncmp(line, "* OK", 4)) {
        cl_err(c, "greeting", line);
        return -1;
    }
    r = cl_cmd(c, line, sizeof(line), "LOGIN %s%d@bench.example \"%s\"", uprefix, user, pass);
    if (r) {
        if (r > 0)
            cl_err(c, "LOGIN", untag(line));
        fprintf(stderr, "LOGIN %s%d: %s\n", uprefix, user, c->err);
        return -1;
    }
    r = cl_cmd(c, line, sizeof(line), "SELECT INBOX");
    if (r) {
        if (r > 0)
            cl_err(c, "SELECT", untag(line));
        fprintf(stderr, "SELECT: %s\n", c->err);
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

/* Failures by reason (the server's answer without its tag, or the error of
 * the connection), under idle_lock. */
#define NREASONS 32
static struct {
    char text[160];
    long n;
} reasons[NREASONS + 1]; /* the last one: any other */

static void count_reason(const char *why)
{
    int i;
    for (i = 0; i < NREASONS && reasons[i].n; i++)
        if (!strcmp(reasons[i].text, why))
            break;
    if (i < NREASONS && !reasons[i].n)
        snprintf(reasons[i].text, sizeof(reasons[i].text), "%s", why);
    if (i == NREASONS)
        snprintf(reasons[i].text, sizeof(reasons[i].text), "other reasons");
    reasons[i].n++;
}

static void print_reasons(void)
{
    for (int i = 0; i <= NREASONS; i++)
        if (reasons[i].n)
            printf("failed %ld %s\n", reasons[i].n, reasons[i].text);
}

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
        c->err[0] = '\0';
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
                    if (line[0] != '*') {
                        cl_err(c, "IDLE", untag(line));
                        break;
                    }
                }
            }
        }
        pthread_mutex_lock(&idle_lock);
        if (ok)
            idle_ok++;
        else {
            idle_failed++;
            count_reason(c->err[0] ? c->err : "unknown");
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
    print_reasons();
    fflush(stdout);
    /* how many are still there when stdin closes: the server may drop some */
    while (read(0, b, sizeof(b)) > 0)
        ;
    long alive = 0;
    for (int i = 0; i < n; i++) {
        if (!idles[i].tls)
            continue;
        struct pollfd pf = {.fd = idles[i].fd, .events = POLLIN};
        char peek;
        if (poll(&pf, 1, 0) == 1 && recv(idles[i].fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
            continue;
        alive++;
    }
    printf("still open %ld\n", alive);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        if (idles[i].tls) {
            cl_write(&idles[i], "DONE\r\n", 6);
            cl_close(&idles[i]);
        }
    }
    free(idles);
    return 0;
}

/* ---- big folder ---- */

/* A deterministic generator: message i is always the same bytes. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unit(void)
{
    return (double)(rng() >> 11) / 9007199254740992.0;
}

static const char *const words[] = {
    "the",     "of",     "and",      "to",      "in",       "is",       "that",    "for",
    "it",      "as",     "was",      "with",    "be",       "by",       "on",      "not",
    "this",    "are",    "or",       "from",    "at",       "which",    "have",    "an",
    "they",    "you",    "were",     "there",   "been",     "one",      "all",     "we",
    "meeting", "report", "budget",   "invoice", "attached", "please",   "regards", "thanks",
    "project", "review", "schedule", "team",    "release",  "customer", "server",  "monday"};
#define NWORDS (sizeof(words) / sizeof(words[0]))

/* The word that SEARCH TEXT looks for (in the body of 1 % of the messages)
 * and the one SEARCH SUBJECT looks for (in the subject of 5 %). */
#define BODY_WORD "zanzibar"
#define SUBJECT_WORD "quarterly"

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_grow(struct sbuf *b, size_t n)
{
    if (b->len + n <= b->cap)
        return;
    while (b->len + n > b->cap)
        b->cap = b->cap ? 2 * b->cap : 65536;
    b->p = realloc(b->p, b->cap);
    if (!b->p)
        abort();
}
static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[2048];
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Lines of words up to about n bytes; the body word once if asked. */
static void text_lines(struct sbuf *b, size_t n, int body_word)
{
    size_t start = b->len, col = 0;
    while (b->len - start < n) {
        const char *w = words[rng() % NWORDS];
        if (body_word && b->len - start >= n / 2) {
            w = BODY_WORD;
            body_word = 0;
        }
        size_t wl = strlen(w);
        if (col + wl + 1 > 72) {
            sb_add(b, "\r\n", 2);
            col = 0;
        } else if (col) {
            sb_add(b, " ", 1);
            col++;
        }
        sb_add(b, w, wl);
        col += wl;
    }
    sb_add(b, "\r\n", 2);
}

/* Message i of the big folder: sizes from about 1 kB to several MB, median
 * about 5 kB, mean about 90 kB: 96 % text (log-normal around 5 kB, some
 * replies with References), 4.5 % with a base64 attachment log-uniform
 * between 200 kB and 8 MB. */
static void big_message(struct sbuf *b, unsigned long i)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    rng_state = 0x5eed0000ull + i * 0x100000001b3ull;
    b->len = 0;
    int attach = rng_unit() < 0.045;
    int body_word = i % 100 == 42;
    double u1 = rng_unit(), u2 = rng_unit();
    double z = sqrt(-2 * log(u1 + 1e-12)) * cos(2 * M_PI * u2);
    double tsize = 4000 * exp(1.1 * z);
    if (tsize < 300)
        tsize = 300;
    if (tsize > 2e6)
        tsize = 2e6;
    sb_printf(b,
              "Return-Path: <sender%lu@remote.example>\r\n"
              "Received: from mx.remote.example (mx.remote.example [192.0.2.%lu])\r\n"
              "\tby mx.bench.example with ESMTPS id %08lX\r\n"
              "\tfor <big1@bench.example>; Mon, 3 Mar 2025 10:%02lu:%02lu +0000\r\n"
              "From: Sender %lu <sender%lu@remote.example>\r\n"
              "To: Big One <big1@bench.example>\r\n",
              i % 997, i % 250, i, i / 60 % 60, i % 60, i % 997, i % 997);
    if (i % 4 == 1)
        sb_printf(b, "Cc: Team %lu <team%lu@bench.example>\r\n", i % 13, i % 13);
    sb_printf(b, "Subject: %s%s %s %s %lu\r\n", i % 7 == 0 ? "Re: " : "",
              i % 20 == 3 ? SUBJECT_WORD : words[rng() % NWORDS], words[rng() % NWORDS],
              words[rng() % NWORDS], i);
    sb_printf(b, "Date: Mon, %lu Mar 2025 %02lu:%02lu:%02lu +0000\r\n", 1 + i % 28, i / 3600 % 24,
              i / 60 % 60, i % 60);
    sb_printf(b, "Message-ID: <big-%lu@remote.example>\r\n", i);
    if (i % 7 == 0 && i > 1)
        sb_printf(
            b, "In-Reply-To: <big-%lu@remote.example>\r\nReferences: <big-%lu@remote.example>\r\n",
            i - 1, i - 1);
    sb_printf(b, "MIME-Version: 1.0\r\n");
    if (!attach) {
        sb_printf(b, "Content-Type: text/plain; charset=utf-8\r\n\r\n");
        text_lines(b, (size_t)tsize, body_word);
        return;
    }
    double asize = 200e3 * exp(rng_unit() * log(40.0)); /* 200 kB .. 8 MB */
    sb_printf(b,
              "Content-Type: multipart/mixed; boundary=\"b-%lu\"\r\n\r\n"
              "--b-%lu\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
              i, i);
    text_lines(b, (size_t)tsize / 4 + 200, body_word);
    sb_printf(b,
              "--b-%lu\r\nContent-Type: application/pdf; name=\"doc%lu.pdf\"\r\n"
              "Content-Transfer-Encoding: base64\r\n"
              "Content-Disposition: attachment; filename=\"doc%lu.pdf\"\r\n\r\n",
              i, i, i);
    size_t n = (size_t)asize, k = 0;
    sb_grow(b, n + n / 76 * 2 + 4);
    while (k < n) {
        uint64_t r = rng();
        for (int j = 0; j < 10 && k < n; j++, k++) {
            b->p[b->len++] = b64[r & 63];
            r >>= 6;
            if (k % 76 == 75) {
                b->p[b->len++] = '\r';
                b->p[b->len++] = '\n';
            }
        }
    }
    sb_printf(b, "\r\n--b-%lu--\r\n", i);
}

/* Reads up to the tagged line of c->tag; 0 when OK. */
static int cl_wait_tag(struct cl *c, char *line, size_t cap)
{
    size_t tl = strlen(c->tag);
    for (;;) {
        if (cl_line(c, line, cap) < 0)
            return -1;
        if (!strncmp(line, c->tag, tl) && line[tl] == ' ')
            return strncmp(line + tl + 1, "OK", 2) ? 1 : 0;
    }
}

/* Appends messages first..last (numbered from 1) to INBOX, MULTIAPPEND
 * batches of about batch bytes (LITERAL+). */
static int run_fill(unsigned long first, unsigned long last, size_t batch)
{
    struct cl *c = calloc(1, sizeof(*c));
    struct sbuf msg = {0}, out = {0};
    char line[8192];
    unsigned long i = first, batches = 0;
    unsigned long long bytes = 0;
    double t0 = now(), c0 = cpu_seconds();

    if (!c || cl_connect(c) < 0 || login_select(c, 1) < 0) {
        fprintf(stderr, "fill: cannot log in: %s\n", c ? c->err : "");
        return 1;
    }
    while (i <= last) {
        snprintf(c->tag, sizeof(c->tag), "b%u", ++c->tagn);
        out.len = 0;
        sb_printf(&out, "%s APPEND INBOX", c->tag);
        while (i <= last && (out.len == 0 || out.len < batch)) {
            big_message(&msg, i);
            sb_printf(&out, " {%zu+}\r\n", msg.len);
            sb_add(&out, msg.p, msg.len);
            bytes += msg.len;
            i++;
            if (out.len >= batch)
                break;
        }
        sb_add(&out, "\r\n", 2);
        if (cl_write(c, out.p, out.len) < 0 || cl_wait_tag(c, line, sizeof(line))) {
            fprintf(stderr, "fill: APPEND batch %lu failed: %s %s\n", batches + 1, line, c->err);
            return 1;
        }
        batches++;
    }
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    printf("appended %lu bytes %llu batches %lu seconds %.2f cpu %.2f\n", last - first + 1, bytes,
           batches, now() - t0, cpu_seconds() - c0);
    return 0;
}

/* Prints message i (for looking at the generator). */
static int run_gen(unsigned long i)
{
    struct sbuf b = {0};
    big_message(&b, i);
    fwrite(b.p, 1, b.len, stdout);
    return 0;
}

/* CPU seconds of a process tree (with its reaped children's), for the
 * server's CPU beside each step; and the machine's busy seconds. */
static double tree_cpu(long root)
{
    static long ppid[4194305];
    static double cpu[4194305];
    long maxpid = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    double t = 0;
    if (root <= 0 || !d)
        return 0;
    while ((e = readdir(d))) {
        long pid = atol(e->d_name);
        char path[64], buf[1024];
        if (pid <= 0 || pid > 4194304)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        unsigned long long ut, st, cut, cst;
        long pp;
        if (!p || sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                         &pp, &ut, &st, &cut, &cst) != 5)
            continue;
        ppid[pid] = pp;
        cpu[pid] = (double)(ut + st + cut + cst) / (double)sysconf(_SC_CLK_TCK);
        if (pid > maxpid)
            maxpid = pid;
    }
    closedir(d);
    for (long pid = 1; pid <= maxpid; pid++) {
        if (!cpu[pid] && !ppid[pid])
            continue;
        long p = pid;
        for (int depth = 0; p > 1 && p != root && depth < 64; depth++)
            p = ppid[p];
        if (p == root)
            t += cpu[pid];
    }
    memset(ppid, 0, sizeof(ppid[0]) * (size_t)(maxpid + 1));
    memset(cpu, 0, sizeof(cpu[0]) * (size_t)(maxpid + 1));
    return t;
}

static double machine_cpu(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) != 8)
        v[0] = 0;
    fclose(f);
    /* user nice system irq softirq steal: busy, like scripts/bench/common.sh */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)sysconf(_SC_CLK_TCK);
}

static long server_root;

/* One timed command: prints "step NAME seconds S bytes B result R server_cpu C others_cpu O"
 * (R: untagged responses, or the hits of a SEARCH). */
static int step(struct cl *c, const char *name, const char *fmt, const char *arg)
{
    char line[8192];
    double s0 = tree_cpu(server_root), m0 = machine_cpu(), t0 = now();
    unsigned long long b0 = c->rbytes;
    long untagged = 0, hits = -1;
    int search = strstr(fmt, "SEARCH") != NULL || strstr(fmt, "SORT") != NULL;

    snprintf(c->tag, sizeof(c->tag), "b%u", ++c->tagn);
    char cmd[2048];
    int n = snprintf(cmd, sizeof(cmd), "%s ", c->tag);
    n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, arg);
    n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "\r\n");
    if (cl_write(c, cmd, (size_t)n) < 0)
        return -1;
    size_t tl = strlen(c->tag);
    int rc;
    for (;;) {
        if (cl_line(c, line, sizeof(line)) < 0)
            return -1;
        if (line[0] == '*') {
            untagged++;
            if (search && (!strncmp(line, "* SEARCH", 8) || !strncmp(line, "* SORT", 6)))
                hits = (long)c->spaces - 1;
            const char *u = strstr(line, "[UIDNEXT ");
            if (u)
                c->uidnext = strtoul(u + 9, NULL, 10);
            continue;
        }
        if (!strncmp(line, c->tag, tl) && line[tl] == ' ') {
            rc = strncmp(line + tl + 1, "OK", 2) ? 1 : 0;
            break;
        }
    }
    double dt = now() - t0, s1 = tree_cpu(server_root), m1 = machine_cpu();
    double others = (m1 - m0) - (s1 - s0);
    printf("step %s seconds %.4f bytes %llu result %ld server_cpu %.2f others_cpu %.2f%s%s\n", name,
           dt, c->rbytes - b0, hits >= 0 ? hits : untagged, s1 - s0, others > 0 ? others : 0,
           rc ? " FAILED " : "", rc ? untag(line) : "");
    fflush(stdout);
    return rc;
}

#define TB_FIELDS                                                                                  \
    "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID "      \
    "Priority X-Priority References Newsgroups In-Reply-To Content-Type)])"

/* The big-folder steps in one session. warm: the same steps, then the
 * \Seen flags taken off again so that the measured STORE sets them;
 * only_sort: SELECT, then the SORT and THREAD steps. */
static int run_steps(int warm, int only_sort)
{
    struct cl *c = calloc(1, sizeof(*c));
    char line[8192], range[64];
    int bad = 0;

    if (!c || cl_connect(c) < 0)
        return 1;
    if (cl_line(c, line, sizeof(line)) < 0 ||
        cl_cmd(c, line, sizeof(line), "LOGIN %s1@bench.example \"%s\"", uprefix, pass)) {
        fprintf(stderr, "steps: LOGIN: %s %s\n", line, c->err);
        return 1;
    }
    bad |= step(c, "select", "SELECT %s", "INBOX");
    if (!only_sort) {
        unsigned long lo = c->uidnext > 1000 ? c->uidnext - 1000 : 1;
        snprintf(range, sizeof(range), "%lu:*", lo);
        bad |= step(c, "fetch_flags_all", "UID FETCH %s (FLAGS)", "1:*");
        bad |= step(c, "headers_last_1000", "UID FETCH %s " TB_FIELDS, range);
        bad |= step(c, "headers_all", "UID FETCH %s " TB_FIELDS, "1:*");
        bad |= step(c, "store_seen_all", "UID STORE %s +FLAGS.SILENT (\\Seen)", "1:*");
        bad |= step(c, "search_text", "UID SEARCH TEXT %s", BODY_WORD);
        bad |= step(c, "search_subject", "UID SEARCH SUBJECT %s", SUBJECT_WORD);
    }
    /* SORT and THREAD twice each, the second reported: a server that
     * caches sort keys on first use (Dovecot) has them then */
    static const struct {
        const char *name, *fmt, *arg;
    } sorts[] = {
        {"sort_arrival", "UID SORT (%s) UTF-8 ALL", "ARRIVAL"},
        {"sort_date", "UID SORT (%s) UTF-8 ALL", "DATE"},
        {"sort_subject", "UID SORT (%s) UTF-8 ALL", "SUBJECT"},
        {"sort_from", "UID SORT (%s) UTF-8 ALL", "FROM"},
        {"thread_references", "UID THREAD %s UTF-8 ALL", "REFERENCES"},
    };
    for (size_t i = 0; i < sizeof(sorts) / sizeof(sorts[0]); i++) {
        char first[64];
        snprintf(first, sizeof(first), "%s_first", sorts[i].name);
        bad |= step(c, first, sorts[i].fmt, sorts[i].arg);
        bad |= step(c, sorts[i].name, sorts[i].fmt, sorts[i].arg);
    }
    if (!only_sort) {
        bad |= step(c, "status", "STATUS %s (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)", "INBOX");
        bad |= step(c, "select_again", "SELECT %s", "INBOX");
    }
    if (warm && cl_cmd(c, line, sizeof(line), "UID STORE 1:* -FLAGS.SILENT (\\Seen)"))
        bad = 1;
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (getenv("BENCH_USER_PREFIX"))
        uprefix = getenv("BENCH_USER_PREFIX");
    if (argc == 3 && !strcmp(argv[1], "gen"))
        return run_gen(strtoul(argv[2], NULL, 10));
    if (argc < 6) {
        fprintf(stderr,
                "usage: %s mixed PORT CAFILE NUSERS PASS NCLIENTS SECONDS NMSGS\n"
                "       %s warm PORT CAFILE NUSERS PASS\n"
                "       %s idle PORT CAFILE NUSERS PASS NCONN\n"
                "       %s fill PORT CAFILE 1 PASS FIRST LAST BATCH_BYTES\n"
                "       %s steps PORT CAFILE 1 PASS SERVER_PID warm|measure|sort\n"
                "       %s gen I\n",
                argv[0], argv[0], argv[0], argv[0], argv[0], argv[0]);
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
    if (!strcmp(argv[1], "fill") && argc == 9)
        return run_fill(strtoul(argv[6], NULL, 10), strtoul(argv[7], NULL, 10),
                        (size_t)strtoul(argv[8], NULL, 10));
    if (!strcmp(argv[1], "steps") && argc == 8) {
        server_root = atol(argv[6]);
        return run_steps(!strcmp(argv[7], "warm"), !strcmp(argv[7], "sort"));
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
