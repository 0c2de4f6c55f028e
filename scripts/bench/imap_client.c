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
 *       With FILL_FROM set to a file genstream wrote (messages FIRST..LAST),
 *       the messages are read from it instead: a client's messages are at
 *       hand (its local folders), and generating them would make the
 *       client, not the server, what the rate measures.
 *   imap_client steps PORT CAFILE 1 PASS SERVER_PID warm|measure|sort
 *       the big-folder steps in one session (SELECT, UID FETCH 1:* FLAGS,
 *       Thunderbird's header fetch of the last 1,000 and of all, UID STORE
 *       1:* +FLAGS.SILENT \Seen, UID SEARCH TEXT, UID SEARCH SUBJECT,
 *       STATUS, SELECT again), each on a line "step NAME seconds S bytes B
 *       result R server_cpu C others_cpu O" (C: CPU seconds of SERVER_PID's
 *       process tree; O: the rest of the machine's, this client included).
 *       warm: the same, then \Seen taken off again; sort: SELECT and the
 *       SORT and THREAD steps only.
 *   imap_client compress PORT CAFILE 1 PASS SERVER_PID
 *       Thunderbird's header fetch of all (as in steps) in one session,
 *       then in another after COMPRESS DEFLATE (the client inflates and
 *       counts the FETCH answers): steps headers_all_plain and
 *       headers_all_deflate, "bytes" the TLS plaintext read (the
 *       compressed stream), "plain" the protocol after inflating.
 *   imap_client headers PORT CAFILE 1 PASS SERVER_PID N
 *       Thunderbird's header fetch of all, N times in one session (for a
 *       profile of that command alone; BENCH_FETCH_ITEMS: other items).
 *   imap_client open PORT CAFILE 1 PASS SERVER_PID
 *       a folder opened in a new session: SELECT, the flags of all,
 *       Thunderbird's header fetch of all (steps pause_*).
 *   imap_client qresync PORT CAFILE 1 PASS SERVER_PID NCHANGES
 *       a QRESYNC client's reconnect: records UIDVALIDITY and
 *       HIGHESTMODSEQ, leaves, another session makes NCHANGES changes
 *       (2/5 flag changes, 3/10 expunges, the rest APPENDs), then ENABLE
 *       QRESYNC + SELECT INBOX (QRESYNC (...)): steps qresync_select,
 *       qresync_reconnect (connect to SELECT's OK) and resync_flags_all
 *       (what a client without QRESYNC fetches instead); "skip" when the
 *       server does not offer QRESYNC.
 *   imap_client idlepush PORT CAFILE 1 PASS LMTP_PORT SECONDS INTERVAL
 *       one session with COMPRESS DEFLATE in IDLE for SECONDS while a
 *       message is delivered by LMTP every INTERVAL seconds; each push
 *       ends the IDLE, the message is fetched and compared with what was
 *       delivered. Prints "pushes sent S arrived A right R ...".
 *   imap_client login PORT CAFILE NUSERS PASS NCLIENTS SECONDS MECH SERVER_PID [CERTDIR]
 *       NCLIENTS threads, each looping over whole logins: connect, TLS
 *       handshake (full, no resumption), greeting, AUTHENTICATE MECH
 *       (SASL-IR), LOGOUT; the accounts in turn, first each once
 *       ("first"), then for SECONDS ("timed"). MECH: plain, scram
 *       (SCRAM-SHA-256: PBKDF2, ClientProof, the server's signature
 *       checked), scram-plus (-PLUS with tls-exporter), external (the
 *       account's certificate CERTDIR/<prefix><n>.pem with CERTDIR/key.pem,
 *       AUTHENTICATE EXTERNAL =), login (the LOGIN command, PASS without
 *       '"' or '\\'). SCRAM keeps each account's SaltedPassword
 *       for its next login while the salt and count stay the same (RFC
 *       5802 section 5.1), so PBKDF2 runs in the first pass only. Prints
 *       for each part "first|timed logins N failed F seconds T cpu U
 *       pbkdf2 P server_cpu C others_cpu O load L" (C: CPU seconds of
 *       SERVER_PID's process tree, O: the rest of the machine's, this
 *       client included) and "failed COUNT REASON" lines.
 *   imap_client gen I
 *       prints the big folder's message I.
 *
 * BENCH_COMPRESS=1: the sessions of warm and idle send COMPRESS DEFLATE
 * after LOGIN.
 *
 * Users are u1..uNUSERS@bench.example (another prefix than u in
 * BENCH_USER_PREFIX), all with password PASS. Host is
 * 127.0.0.1, or BENCH_HOST (an IPv4 address). BENCH_QUICKACK=1 sets
 * TCP_QUICKACK after the TLS handshake. Not a test: a load generator. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
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
#include <strings.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <dirent.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

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
    gnutls_certificate_credentials_t cred; /* this connection's (a client certificate), or NULL */
    char buf[65536];
    size_t have, off;
    unsigned tagn;
    char tag[16];
    char err[160];             /* why the last step failed */
    unsigned long long rbytes; /* bytes received */
    unsigned long spaces;      /* spaces in the last line (beyond its cut too) */
    unsigned long uidnext;     /* from the last SELECT */
    unsigned long exists;      /* from the last EXISTS */
    unsigned long long pbytes; /* protocol bytes received (inflated when compressed) */
    int z;                     /* COMPRESS=DEFLATE is on: zi inflates, zo deflates */
    z_stream zi, zo;
    unsigned char *zraw; /* compressed bytes read, not inflated yet */
    char *lit;           /* when set, literals are kept here (litcap bytes) */
    size_t litlen, litcap;
};

#define ZRAW 16384

/* BENCH_COMPRESS=1: every session of the idle and warm modes sends
 * COMPRESS DEFLATE right after LOGIN (as Thunderbird does). */
static int want_compress;

static const char *uprefix = "u"; /* BENCH_USER_PREFIX */
static const char *host;          /* BENCH_HOST: NULL = 127.0.0.1 */
static int quickack;              /* BENCH_QUICKACK=1 */

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
    if (c->z) {
        inflateEnd(&c->zi);
        deflateEnd(&c->zo);
        free(c->zraw);
        c->zraw = NULL;
        c->z = 0;
    }
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
    if (host && inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        cl_err(c, "connect", "BENCH_HOST is not an IPv4 address");
        return -1;
    }
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
    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred ? c->cred : cred);
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
    /* BENCH_QUICKACK=1: acknowledge the server's last handshake flight at
     * once, so that a server writing its greeting with Nagle's algorithm on
     * (nginx's mail proxy) is not held for this side's delayed ACK */
    if (quickack)
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    return 0;
fail:
    cl_close(c);
    return -1;
}

static int raw_write(struct cl *c, const void *p, size_t n)
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

/* Writes n bytes of protocol: deflated (a sync flush after them) once
 * COMPRESS is on. */
static int cl_write(struct cl *c, const void *p, size_t n)
{
    unsigned char out[16384];
    if (!c->z)
        return raw_write(c, p, n);
    c->zo.next_in = (unsigned char *)p;
    c->zo.avail_in = (uInt)n;
    do {
        c->zo.next_out = out;
        c->zo.avail_out = sizeof(out);
        if (deflate(&c->zo, Z_SYNC_FLUSH) == Z_STREAM_ERROR) {
            cl_err(c, "deflate", "stream error");
            return -1;
        }
        if (raw_write(c, out, sizeof(out) - c->zo.avail_out) < 0)
            return -1;
    } while (c->zo.avail_out == 0);
    return 0;
}

/* Reads more protocol into c->buf: what TLS gives, inflated once COMPRESS
 * is on. rbytes counts the TLS plaintext (the compressed stream), pbytes
 * the protocol. */
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
        if (c->z && c->zi.avail_in) {
            size_t room = sizeof(c->buf) - c->have;
            c->zi.next_out = (unsigned char *)c->buf + c->have;
            c->zi.avail_out = (uInt)room;
            int zr = inflate(&c->zi, Z_SYNC_FLUSH);
            if (zr == Z_STREAM_END) { /* the server ended its stream (LOGOUT) */
                size_t got = room - c->zi.avail_out;
                c->have += got;
                c->pbytes += got;
                c->zi.avail_in = 0;
                inflateReset(&c->zi);
                if (got)
                    return 0;
                continue;
            }
            if (zr != Z_OK && zr != Z_BUF_ERROR) {
                cl_err(c, "inflate", c->zi.msg ? c->zi.msg : "error");
                return -1;
            }
            size_t got = room - c->zi.avail_out;
            c->have += got;
            c->pbytes += got;
            if (got)
                return 0;
            if (c->zi.avail_in)
                continue;
        }
        char *into = c->z ? (char *)c->zraw : c->buf + c->have;
        size_t cap = c->z ? ZRAW : sizeof(c->buf) - c->have;
        ssize_t r = gnutls_record_recv(c->tls, into, cap);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r <= 0) {
            tls_err(c, "read", r);
            return -1;
        }
        c->rbytes += (unsigned long long)r;
        if (c->z) {
            c->zi.next_in = c->zraw;
            c->zi.avail_in = (uInt)r;
            continue;
        }
        c->have += (size_t)r;
        c->pbytes += (unsigned long long)r;
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
                    if (c->lit) {
                        size_t k2 = take < c->litcap - c->litlen ? take : c->litcap - c->litlen;
                        memcpy(c->lit + c->litlen, c->buf + c->off, k2);
                        c->litlen += k2;
                    }
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
            unsigned long n;
            char w[16];
            if (sscanf(line, "* %lu %15s", &n, w) == 2 && !strcmp(w, "EXISTS"))
                c->exists = n;
        }
        if (!strncmp(line, c->tag, tl) && line[tl] == ' ') {
            if (last)
                snprintf(last, lastcap, "%s", line);
            return strncmp(line + tl + 1, "OK", 2) ? 1 : 0;
        }
    }
}

/* COMPRESS DEFLATE (RFC 4978): 0 when the server said OK and both
 * directions are raw deflate from then on. The client's compressor is
 * small (it sends only commands); its decompressor takes any window. */
static int cl_compress(struct cl *c)
{
    char line[8192];
    int r = cl_cmd(c, line, sizeof(line), "COMPRESS DEFLATE");
    if (r) {
        if (r > 0)
            cl_err(c, "COMPRESS", untag(line));
        return -1;
    }
    memset(&c->zi, 0, sizeof(c->zi));
    memset(&c->zo, 0, sizeof(c->zo));
    c->zraw = malloc(ZRAW);
    if (!c->zraw || inflateInit2(&c->zi, -15) != Z_OK)
        return -1;
    if (deflateInit2(&c->zo, 6, Z_DEFLATED, -10, 1, Z_DEFAULT_STRATEGY) != Z_OK) {
        inflateEnd(&c->zi);
        return -1;
    }
    c->z = 1;
    if (c->have > c->off) { /* the server sent nothing after its OK */
        cl_err(c, "COMPRESS", "data after the tagged OK");
        return -1;
    }
    return 0;
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
    if (want_compress && cl_compress(c) < 0) {
        fprintf(stderr, "COMPRESS %s%d: %s\n", uprefix, user, c->err);
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
    /* compressed sessions are cut in IDLE, without DONE: the zlib state
     * coffred logs when they close is then what an idle session holds */
    for (int i = 0; i < n; i++) {
        if (idles[i].tls) {
            if (!idles[i].z)
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
        unsigned long v;
        char w[16];
        if (sscanf(line, "* %lu %15s", &v, w) == 2 && !strcmp(w, "EXISTS"))
            c->exists = v;
        if (!strncmp(line, c->tag, tl) && line[tl] == ' ')
            return strncmp(line + tl + 1, "OK", 2) ? 1 : 0;
    }
}

/* Where the messages of a fill come from: generated from their numbers,
 * or read from a stream genstream wrote (length line, then the message). */
struct fill_src {
    const char *p, *end; /* the stream, mapped; NULL: generate */
};

/* The next message (number i) into *m, *len; -1 when the stream ends. */
static int fill_next(struct fill_src *src, struct sbuf *msg, unsigned long i, const char **m,
                     size_t *len)
{
    if (!src->p) {
        big_message(msg, i);
        *m = msg->p;
        *len = msg->len;
        return 0;
    }
    char *e;
    unsigned long n = strtoul(src->p, &e, 10);
    if (e == src->p || e >= src->end || *e != '\n' || n > (size_t)(src->end - e - 1))
        return -1;
    *m = e + 1;
    *len = n;
    src->p = e + 1 + n;
    return 0;
}

/* One MULTIAPPEND command of messages *i.. (about batch bytes) into out,
 * tagged tag; *i and *bytes move past them. */
static int fill_batch(struct fill_src *src, struct sbuf *out, struct sbuf *msg, const char *tag,
                      unsigned long *i, unsigned long last, size_t batch, unsigned long long *bytes)
{
    out->len = 0;
    sb_printf(out, "%s APPEND INBOX", tag);
    while (*i <= last) {
        const char *m;
        size_t len;
        if (fill_next(src, msg, *i, &m, &len) < 0)
            return -1;
        sb_printf(out, " {%zu+}\r\n", len);
        sb_add(out, m, len);
        *bytes += len;
        (*i)++;
        if (out->len >= batch)
            break;
    }
    sb_add(out, "\r\n", 2);
    return 0;
}

/* Appends messages first..last (numbered from 1) to INBOX, MULTIAPPEND
 * batches of about batch bytes (LITERAL+). The next batch is generated
 * while the server saves the one just sent, as a client with its messages
 * at hand would have them ready: the generation is the benchmark's own
 * cost, not a client's, and would otherwise add to every server's time. */
static int run_fill(unsigned long first, unsigned long last, size_t batch)
{
    struct cl *c = calloc(1, sizeof(*c));
    struct sbuf msg = {0}, out = {0}, next = {0}, swap;
    struct fill_src src = {0};
    char line[8192], tag[16], next_tag[16];
    unsigned long i = first, batches = 0;
    unsigned long long bytes = 0;
    const char *from = getenv("FILL_FROM");

    if (from && *from) {
        struct stat st;
        int fd = open(from, O_RDONLY);
        void *p = MAP_FAILED;
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0)
            p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "fill: cannot read %s\n", from);
            return 1;
        }
        close(fd);
        madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
        src.p = p;
        src.end = src.p + st.st_size;
    }
    double t0 = now(), c0 = cpu_seconds();

    if (!c || cl_connect(c) < 0 || login_select(c, 1) < 0) {
        fprintf(stderr, "fill: cannot log in: %s\n", c ? c->err : "");
        return 1;
    }
    snprintf(tag, sizeof(tag), "b%u", ++c->tagn);
    if (fill_batch(&src, &out, &msg, tag, &i, last, batch, &bytes) < 0) {
        fprintf(stderr, "fill: %s ends before message %lu\n", from, i);
        return 1;
    }
    for (;;) {
        int more = i <= last;
        if (cl_write(c, out.p, out.len) < 0) {
            fprintf(stderr, "fill: APPEND batch %lu failed: %s\n", batches + 1, c->err);
            return 1;
        }
        if (more) {
            snprintf(next_tag, sizeof(next_tag), "b%u", ++c->tagn);
            if (fill_batch(&src, &next, &msg, next_tag, &i, last, batch, &bytes) < 0) {
                fprintf(stderr, "fill: %s ends before message %lu\n", from, i);
                return 1;
            }
        }
        snprintf(c->tag, sizeof(c->tag), "%s", tag);
        if (cl_wait_tag(c, line, sizeof(line))) {
            fprintf(stderr, "fill: APPEND batch %lu failed: %s %s\n", batches + 1, line, c->err);
            return 1;
        }
        batches++;
        if (!more)
            break;
        swap = out;
        out = next;
        next = swap;
        memcpy(tag, next_tag, sizeof(tag));
    }
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    printf("appended %lu bytes %llu batches %lu seconds %.2f cpu %.2f\n", last - first + 1, bytes,
           batches, now() - t0, cpu_seconds() - c0);
    return 0;
}

/* Prints messages first..last, each after a line with its length (for
 * scripts/bench/import, which writes them into a Maildir). */
static int run_genstream(unsigned long first, unsigned long last)
{
    struct sbuf b = {0};
    for (unsigned long i = first; i <= last; i++) {
        b.len = 0;
        big_message(&b, i);
        printf("%zu\n", b.len);
        fwrite(b.p, 1, b.len, stdout);
    }
    return fflush(stdout) == 0 ? 0 : 1;
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
/* The page faults of the server's processes, as tree_cpu last read them
 * (minor: a page mapped that was in memory; major: one read from disk). */
static unsigned long long tree_minflt, tree_majflt;

/* The CPU seconds of root and its descendants (and their faults). */
static double tree_cpu(long root)
{
    static long ppid[4194305];
    static double cpu[4194305];
    static unsigned long long minf[4194305], majf[4194305];
    long maxpid = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    double t = 0;
    tree_minflt = tree_majflt = 0;
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
        unsigned long long ut, st, cut, cst, mi, cmi, ma, cma;
        long pp;
        if (!p || sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %llu %llu %llu %llu %llu %llu %llu %llu",
                         &pp, &mi, &cmi, &ma, &cma, &ut, &st, &cut, &cst) != 9)
            continue;
        ppid[pid] = pp;
        minf[pid] = mi + cmi;
        majf[pid] = ma + cma;
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
        if (p == root) {
            t += cpu[pid];
            tree_minflt += minf[pid];
            tree_majflt += majf[pid];
        }
    }
    memset(ppid, 0, sizeof(ppid[0]) * (size_t)(maxpid + 1));
    memset(minf, 0, sizeof(minf[0]) * (size_t)(maxpid + 1));
    memset(majf, 0, sizeof(majf[0]) * (size_t)(maxpid + 1));
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

/* How many UIDs a VANISHED response names: "(EARLIER) 3:5,9" is 4. */
static long vanished_count(const char *p)
{
    long n = 0;
    if (!strncmp(p, "(EARLIER) ", 10))
        p += 10;
    while (*p >= '0' && *p <= '9') {
        char *e;
        unsigned long a = strtoul(p, &e, 10), b = a;
        if (*e == ':')
            b = strtoul(e + 1, &e, 10);
        n += (long)(a > b ? a - b : b - a) + 1;
        p = *e == ',' ? e + 1 : e;
    }
    return n;
}

/* One timed command: prints "step NAME seconds S bytes B result R server_cpu C others_cpu O"
 * (R: untagged responses, or the hits of a SEARCH). */
/* Sends "TAG fmt" (fmt with one %s, arg) under a new tag. */
static int cl_send(struct cl *c, const char *fmt, const char *arg)
{
    char cmd[2048];
    snprintf(c->tag, sizeof(c->tag), "b%u", ++c->tagn);
    int n = snprintf(cmd, sizeof(cmd), "%s ", c->tag);
    n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, arg);
    n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "\r\n");
    return cl_write(c, cmd, (size_t)n);
}

static long last_fetches, last_vanished; /* of the last step */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs a command reps times (at most STEP_REPS_MAX) and prints one step
 * line: the median time, and per run the bytes and the CPU. A step under
 * a millisecond is repeated, so that its figure is not one reading's luck
 * (a scheduling delay of either server). */
#define STEP_REPS_MAX 64

static int step_reps(struct cl *c, const char *name, const char *fmt, const char *arg, int reps)
{
    char line[8192];
    double dts[STEP_REPS_MAX];
    double s0 = tree_cpu(server_root), m0 = machine_cpu();
    unsigned long long f0 = tree_minflt, j0 = tree_majflt;
    unsigned long long b0 = c->rbytes, p0 = c->pbytes;
    long untagged = 0, hits = -1;
    int search = strstr(fmt, "SEARCH") != NULL || strstr(fmt, "SORT") != NULL;
    int rc = 0;

    if (reps < 1 || reps > STEP_REPS_MAX)
        reps = 1;
    for (int k = 0; k < reps && rc == 0; k++) {
        double t0 = now();
        last_fetches = last_vanished = 0;
        untagged = 0;
        if (cl_send(c, fmt, arg) < 0)
            return -1;
        size_t tl = strlen(c->tag);
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
                unsigned long n;
                char w[16];
                if (sscanf(line, "* %lu %15s", &n, w) == 2) {
                    if (!strcmp(w, "FETCH"))
                        last_fetches++;
                    else if (!strcmp(w, "EXISTS"))
                        c->exists = n;
                }
                if (!strncmp(line, "* VANISHED ", 11))
                    last_vanished += vanished_count(line + 11);
                continue;
            }
            if (!strncmp(line, c->tag, tl) && line[tl] == ' ') {
                rc = strncmp(line + tl + 1, "OK", 2) ? 1 : 0;
                break;
            }
        }
        dts[k] = now() - t0;
        if (rc)
            reps = k + 1;
    }
    double s1 = tree_cpu(server_root), m1 = machine_cpu();
    double others = (m1 - m0) - (s1 - s0);
    qsort(dts, (size_t)reps, sizeof(dts[0]), cmp_double);
    printf("step %s seconds %.6f bytes %llu result %ld server_cpu %.2f others_cpu %.2f plain %llu "
           "fetches %ld vanished %ld runs %d server_minflt %llu server_majflt %llu%s%s\n",
           name, dts[reps / 2], (c->rbytes - b0) / (unsigned)reps, hits >= 0 ? hits : untagged,
           (s1 - s0) / reps, others > 0 ? others / reps : 0, (c->pbytes - p0) / (unsigned)reps,
           last_fetches, last_vanished, reps, (tree_minflt - f0) / (unsigned)reps,
           (tree_majflt - j0) / (unsigned)reps, rc ? " FAILED " : "", rc ? untag(line) : "");
    fflush(stdout);
    return rc;
}

static int step(struct cl *c, const char *name, const char *fmt, const char *arg)
{
    return step_reps(c, name, fmt, arg, 1);
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
        /* answered in well under a millisecond: the median of 21 */
        bad |=
            step_reps(c, "status", "STATUS %s (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)", "INBOX", 21);
        bad |= step_reps(c, "select_again", "SELECT %s", "INBOX", 21);
    }
    if (warm && cl_cmd(c, line, sizeof(line), "UID STORE 1:* -FLAGS.SILENT (\\Seen)"))
        bad = 1;
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    return bad ? 1 : 0;
}

/* Runs one command and keeps its untagged lines (newline-separated) in
 * out; 0 when OK. */
static int cl_cmd_keep(struct cl *c, struct sbuf *out, const char *fmt, const char *arg)
{
    char line[8192];
    if (cl_send(c, fmt, arg) < 0)
        return -1;
    size_t tl = strlen(c->tag);
    out->len = 0;
    for (;;) {
        if (cl_line(c, line, sizeof(line)) < 0)
            return -1;
        if (!strncmp(line, c->tag, tl) && line[tl] == ' ') {
            sb_add(out, "", 1);
            out->len--;
            if (strncmp(line + tl + 1, "OK", 2)) {
                cl_err(c, fmt, untag(line));
                return 1;
            }
            return 0;
        }
        unsigned long v;
        char w[16];
        if (sscanf(line, "* %lu %15s", &v, w) == 2 && !strcmp(w, "EXISTS"))
            c->exists = v;
        sb_printf(out, "%s\n", line);
    }
}

/* connect, greeting, LOGIN as <prefix>1 */
static struct cl *big_login(void)
{
    struct cl *c = calloc(1, sizeof(*c));
    char line[8192];
    if (!c || cl_connect(c) < 0)
        return NULL;
    if (cl_line(c, line, sizeof(line)) < 0 ||
        cl_cmd(c, line, sizeof(line), "LOGIN %s1@bench.example \"%s\"", uprefix, pass)) {
        fprintf(stderr, "LOGIN: %s %s\n", line, c->err);
        cl_close(c);
        free(c);
        return NULL;
    }
    return c;
}

/* A folder opened the way a client opens it after a while: in a new
 * session, SELECT, the flags of all, the header fetch of all (each a step
 * line, the server's page faults with it). */
static int run_open(void)
{
    char line[8192];
    int bad = 0;
    struct cl *c = big_login();
    if (!c)
        return 1;
    bad |= step(c, "pause_select", "SELECT %s", "INBOX");
    bad |= step(c, "pause_flags_all", "UID FETCH %s (FLAGS)", "1:*");
    bad |= step(c, "pause_headers_all", "UID FETCH %s " TB_FIELDS, "1:*");
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    free(c);
    return bad;
}

/* Thunderbird's header fetch of all, in one session without compression
 * and in another after COMPRESS DEFLATE: each a step line (bytes: TLS
 * plaintext read, that is the compressed stream; plain: the protocol
 * after inflating) and a "check" line when the number of FETCH answers
 * is not the number of messages. */
static int run_compress(void)
{
    int bad = 0;
    char line[8192];
    for (int z = 0; z < 2; z++) {
        const char *name = z ? "headers_all_deflate" : "headers_all_plain";
        struct cl *c = big_login();
        if (!c)
            return 1;
        if (z && cl_compress(c) < 0) {
            printf("step %s FAILED %s\n", name, c->err);
            return 1;
        }
        if (cl_cmd(c, line, sizeof(line), "SELECT INBOX"))
            return 1;
        unsigned long n = c->exists;
        bad |= step(c, name, "UID FETCH %s " TB_FIELDS, "1:*");
        if ((unsigned long)last_fetches != n) {
            printf("check %s FAILED: %ld FETCH answers for %lu messages\n", name, last_fetches, n);
            bad = 1;
        }
        cl_cmd(c, line, sizeof(line), "LOGOUT");
        cl_close(c);
        free(c);
    }
    return bad;
}

/* The header fetch of all, n times in one session (for profiles of that
 * command alone). */
static int run_headers(int n)
{
    int bad = 0;
    char line[8192];
    struct cl *c = big_login();
    if (!c || cl_cmd(c, line, sizeof(line), "SELECT INBOX"))
        return 1;
    /* BENCH_FETCH_ITEMS: other items to fetch n times (a profile of one) */
    const char *items = getenv("BENCH_FETCH_ITEMS");
    for (int i = 0; i < n; i++)
        bad |= items ? step(c, "fetch_all", "UID FETCH 1:* %s", items)
                     : step(c, "headers_all", "UID FETCH %s " TB_FIELDS, "1:*");
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    free(c);
    return bad;
}

/* How a QRESYNC client comes back: a session records UIDVALIDITY and
 * HIGHESTMODSEQ and leaves; another makes nchanges changes (2/5 flag
 * changes, 3/10 expunges, the rest new messages by APPEND); the first
 * comes back with ENABLE QRESYNC + SELECT INBOX (QRESYNC (uidvalidity
 * modseq)). Prints the reconnect (connect to SELECT's OK) and the SELECT
 * as steps, then a full flag fetch for comparison, and "check" lines when
 * the answer does not hold what changed. "skip" when the server does not
 * offer QRESYNC. */
static int run_qresync(int nchanges)
{
    struct sbuf out = {0}, msg = {0}, cmd = {0};
    char line[8192], arg[128];
    struct cl *c = big_login();
    int bad = 0;
    if (!c)
        return 1;
    if (cl_cmd_keep(c, &out, "CAPABILITY", "") || !strstr(out.p, " QRESYNC")) {
        printf("skip QRESYNC not offered\n");
        return 0;
    }
    if (cl_cmd_keep(c, &out, "ENABLE QRESYNC", "") || cl_cmd_keep(c, &out, "SELECT INBOX", "")) {
        fprintf(stderr, "qresync: %s\n", c->err);
        return 1;
    }
    const char *v = strstr(out.p, "[UIDVALIDITY "), *m = strstr(out.p, "[HIGHESTMODSEQ ");
    if (!v || !m) {
        fprintf(stderr, "qresync: no UIDVALIDITY or HIGHESTMODSEQ in SELECT\n");
        return 1;
    }
    snprintf(arg, sizeof(arg), "INBOX (QRESYNC (%lu %llu))", strtoul(v + 13, NULL, 10),
             strtoull(m + 15, NULL, 10));
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    free(c);

    /* the changes, from another session */
    int nflags = nchanges * 2 / 5, nexp = nchanges * 3 / 10, nnew = nchanges - nflags - nexp;
    c = big_login();
    if (!c || cl_cmd(c, line, sizeof(line), "SELECT INBOX"))
        return 1;
    unsigned long n = c->exists, stride = n / (unsigned long)(nflags + nexp + 1);
    unsigned long off = stride ? (unsigned long)time(NULL) % stride : 0;
    if (stride == 0) {
        fprintf(stderr, "qresync: %lu messages are too few\n", n);
        return 1;
    }
    for (int k = 0; k < nflags + nexp; k++) {
        unsigned long seq = 1 + off + (unsigned long)k * stride;
        if (cl_cmd(c, line, sizeof(line),
                   k < nflags ? "STORE %lu +FLAGS.SILENT (\\Flagged)"
                              : "STORE %lu +FLAGS.SILENT (\\Deleted)",
                   seq))
            bad = 1;
    }
    if (cl_cmd(c, line, sizeof(line), "EXPUNGE"))
        bad = 1;
    for (int k = 0; k < nnew; k++) {
        big_message(&msg, 1000000 + (unsigned long)time(NULL) % 1000 * 100 + (unsigned long)k);
        snprintf(c->tag, sizeof(c->tag), "b%u", ++c->tagn);
        cmd.len = 0;
        sb_printf(&cmd, "%s APPEND INBOX {%zu+}\r\n", c->tag, msg.len);
        sb_add(&cmd, msg.p, msg.len);
        sb_add(&cmd, "\r\n", 2);
        if (cl_write(c, cmd.p, cmd.len) < 0 || cl_wait_tag(c, line, sizeof(line)))
            bad = 1;
    }
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    free(c);
    if (bad) {
        fprintf(stderr, "qresync: the changes failed: %s\n", line);
        return 1;
    }

    /* the reconnect */
    double t0 = now(), s0 = tree_cpu(server_root);
    c = big_login();
    if (!c || cl_cmd(c, line, sizeof(line), "ENABLE QRESYNC"))
        return 1;
    bad |= step(c, "qresync_select", "SELECT %s", arg);
    printf("step qresync_reconnect seconds %.4f bytes %llu result 0 server_cpu %.2f\n", now() - t0,
           c->rbytes, tree_cpu(server_root) - s0);
    if (last_fetches < nflags + nnew || last_vanished < nexp) {
        printf("check qresync_select FAILED: %ld FETCH and %ld UIDs VANISHED for %d flag changes, "
               "%d new, %d expunged\n",
               last_fetches, last_vanished, nflags, nnew, nexp);
        bad = 1;
    }
    /* what a client without QRESYNC fetches to learn the same */
    bad |= step(c, "resync_flags_all", "UID FETCH %s (FLAGS)", "1:*");
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    free(c);
    free(out.p);
    free(msg.p);
    free(cmd.p);
    return bad;
}

/* ---- a long IDLE with compression, mail arriving by LMTP ---- */

static int lmtp_port;
static struct {
    pthread_mutex_t lock;
    int sent, failed, done;
    double t[4096]; /* when message k's final dot was sent */
} push = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* message k of the long IDLE: about 3 kB, its subject and text from k */
static void push_message(struct sbuf *b, int k)
{
    b->len = 0;
    sb_printf(b,
              "From: Pusher <push@example.org>\r\nTo: %s1@bench.example\r\n"
              "Subject: idle push %d\r\nMessage-ID: <push%d@bench.example>\r\n\r\n",
              uprefix, k, k);
    for (int i = 0; i < 40; i++)
        sb_printf(b, "line %d of push %d: %s %s %s %s\r\n", i, k, words[(k + i) % NWORDS],
                  words[(k * 7 + i) % NWORDS], words[(k * 13 + i * 3) % NWORDS],
                  words[(i * 5) % NWORDS]);
}

static int lmtp_expect(FILE *f, const char *code)
{
    char l[1024];
    do {
        if (!fgets(l, sizeof(l), f))
            return -1;
    } while (strlen(l) > 3 && l[3] == '-');
    return strncmp(l, code, 3) ? -1 : 0;
}

static int lmtp_deliver(int k)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lmtp_port)};
    struct sbuf b = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc = -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    FILE *r = fdopen(fd, "r"), *w = fdopen(dup(fd), "w");
    push_message(&b, k);
    if (lmtp_expect(r, "220") == 0 && fprintf(w, "LHLO bench.example\r\n") > 0 && !fflush(w) &&
        lmtp_expect(r, "250") == 0 && fprintf(w, "MAIL FROM:<push@example.org>\r\n") > 0 &&
        !fflush(w) && lmtp_expect(r, "250") == 0 &&
        fprintf(w, "RCPT TO:<%s1@bench.example>\r\n", uprefix) > 0 && !fflush(w) &&
        lmtp_expect(r, "250") == 0 && fprintf(w, "DATA\r\n") > 0 && !fflush(w) &&
        lmtp_expect(r, "354") == 0) {
        fwrite(b.p, 1, b.len, w);
        pthread_mutex_lock(&push.lock);
        push.t[k] = now();
        pthread_mutex_unlock(&push.lock);
        if (fprintf(w, ".\r\n") > 0 && !fflush(w) && lmtp_expect(r, "250") == 0)
            rc = 0;
        fprintf(w, "QUIT\r\n");
        fflush(w);
    }
    fclose(w);
    fclose(r);
    free(b.p);
    return rc;
}

static double push_seconds, push_interval;
static int push_planned; /* deliveries in push_seconds */
static struct cl *push_cl;
static volatile int push_received;

static void *push_deliverer(void *arg)
{
    (void)arg;
    double t0 = now();
    for (int k = 1; k <= push_planned; k++) {
        double at = t0 + push_interval * k;
        if (at > t0 + push_seconds)
            break;
        while (now() < at)
            usleep(100000);
        int r = lmtp_deliver(k);
        pthread_mutex_lock(&push.lock);
        if (r == 0)
            push.sent = k;
        else
            push.failed++;
        pthread_mutex_unlock(&push.lock);
        if (r)
            break;
    }
    /* the last push has 60 s to arrive, then the session is cut */
    double end = now() + 60;
    while (now() < end && push_received < push.sent)
        usleep(100000);
    pthread_mutex_lock(&push.lock);
    push.done = 1;
    pthread_mutex_unlock(&push.lock);
    if (push_received < push_planned) /* the session waits for more: end it */
        shutdown(push_cl->fd, SHUT_RDWR);
    return NULL;
}

/* One session of <prefix>1: COMPRESS DEFLATE, SELECT INBOX, IDLE for
 * seconds while a thread delivers a message by LMTP every interval
 * seconds. Each new EXISTS ends the IDLE (DONE), the new messages are
 * fetched (BODY.PEEK[]) and compared with what was delivered, and IDLE
 * starts again. Prints "pushes sent S arrived A right R failed F
 * latency_median M latency_max X seconds T bytes B plain P" (latency:
 * from the end of the LMTP DATA to the EXISTS in IDLE). */
static int run_idlepush(void)
{
    struct cl *c = big_login();
    struct sbuf want = {0};
    char line[8192];
    pthread_t th;
    double lat[4096];
    int nlat = 0, right = 0, wrong = 0;
    double t0 = now();

    if (!c)
        return 1;
    if (cl_compress(c) < 0) {
        printf("COMPRESS refused: %s\n", c->err);
        return 1;
    }
    if (cl_cmd(c, line, sizeof(line), "SELECT INBOX"))
        return 1;
    unsigned long base = c->exists, known = base;
    c->litcap = 1 << 20;
    c->lit = malloc(c->litcap);
    push_cl = c;
    push_planned = (int)(push_seconds / push_interval);
    if (push_planned < 1 || push_planned > 4095)
        return 2;
    pthread_create(&th, NULL, push_deliverer, NULL);
    for (;;) {
        pthread_mutex_lock(&push.lock);
        int stop = push.done || push_received >= push_planned;
        pthread_mutex_unlock(&push.lock);
        if (stop)
            break;
        snprintf(c->tag, sizeof(c->tag), "i%u", ++c->tagn);
        snprintf(line, sizeof(line), "%s IDLE\r\n", c->tag);
        if (cl_write(c, line, strlen(line)) < 0)
            break;
        int ended = 0;
        while (!ended) {
            if (cl_line(c, line, sizeof(line)) < 0)
                goto out;
            unsigned long v;
            char w[16];
            if (line[0] == '+')
                continue;
            if (sscanf(line, "* %lu %15s", &v, w) == 2 && !strcmp(w, "EXISTS") && v > known) {
                double t = now();
                pthread_mutex_lock(&push.lock);
                for (unsigned long k = known + 1 - base; k <= v - base && k < 4096; k++)
                    if (push.t[k] > 0)
                        lat[nlat++] = t - push.t[k];
                pthread_mutex_unlock(&push.lock);
                c->exists = v;
                ended = 1;
            } else if (line[0] != '*') {
                fprintf(stderr, "idlepush: IDLE ended: %s\n", line);
                goto out;
            }
        }
        if (cl_write(c, "DONE\r\n", 6) < 0 || cl_wait_tag(c, line, sizeof(line)))
            break;
        /* the new messages, each compared with what was sent */
        for (unsigned long seq = known + 1; seq <= c->exists; seq++) {
            c->litlen = 0;
            if (cl_cmd(c, line, sizeof(line), "FETCH %lu (BODY.PEEK[])", seq)) {
                wrong++;
                continue;
            }
            push_message(&want, (int)(seq - base));
            /* as delivered, after the headers the server put on top */
            if (c->litlen >= want.len && !memcmp(c->lit + c->litlen - want.len, want.p, want.len))
                right++;
            else
                wrong++;
        }
        push_received = (int)(c->exists - base);
        known = c->exists;
    }
out:
    pthread_join(th, NULL);
    qsort(lat, (size_t)nlat, sizeof(lat[0]), cmp_double);
    printf("pushes sent %d arrived %d right %d wrong %d delivery_failures %d latency_median %.3f "
           "latency_max %.3f seconds %.0f bytes %llu plain %llu\n",
           push.sent, push_received, right, wrong, push.failed, nlat ? lat[nlat / 2] : -1.0,
           nlat ? lat[nlat - 1] : -1.0, now() - t0, c->rbytes, c->pbytes);
    cl_cmd(c, line, sizeof(line), "LOGOUT");
    cl_close(c);
    return push.sent > 0 && right == push.sent && !wrong && !push.failed ? 0 : 1;
}

/* ---- login rate: PLAIN, SCRAM-SHA-256(-PLUS), EXTERNAL ---- */

enum login_mech { LM_PLAIN, LM_SCRAM, LM_SCRAM_PLUS, LM_EXTERNAL, LM_LOGIN };
static enum login_mech lmech;
static const char *const lmech_name[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "EXTERNAL",
                                         "LOGIN"};
static gnutls_certificate_credentials_t *user_cred; /* EXTERNAL: [user - 1] */
static char prep_pass[1024];                        /* PASS prepared (RFC 5802 2.2) */
static size_t prep_len;
static int login_next, login_pass_only;
static long login_ok, login_failed, login_pbkdf2;

/* RFC 5802 section 5.1: a client may keep SaltedPassword for the next
 * login to the same server while the salt and count stay the same. */
struct salted {
    unsigned char salt[64];
    size_t salt_len;
    unsigned iter;
    unsigned char key[32];
};
static struct salted *salted_cache; /* [user - 1], each touched by one thread at a time */

/* base64 through GnuTLS (f: its encode2 or decode2) into out,
 * NUL-terminated: the length, or -1. */
static int b64x(int (*f)(const gnutls_datum_t *, gnutls_datum_t *), const void *p, size_t n,
                void *out, size_t cap)
{
    gnutls_datum_t d = {(unsigned char *)p, (unsigned)n}, r = {NULL, 0};
    int len = -1;
    if (f(&d, &r) < 0)
        return -1;
    if (r.size < cap) {
        memcpy(out, r.data, r.size);
        ((char *)out)[r.size] = '\0';
        len = (int)r.size;
    }
    gnutls_free(r.data);
    return len;
}
#define b64e(p, n, out, cap) b64x(gnutls_base64_encode2, p, n, out, cap)
#define b64d(p, n, out, cap) b64x(gnutls_base64_decode2, p, n, out, cap)

static int hmac256(const void *key, size_t klen, const void *msg, size_t len, unsigned char *out)
{
    return gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, klen, msg, len, out);
}

/* Sends one AUTHENTICATE response line (base64 of n bytes) and reads the
 * next line into line. */
static int sasl_send(struct cl *c, const void *p, size_t n, char *line, size_t cap)
{
    char b[4096];
    int k = n ? b64e(p, n, b, sizeof(b) - 2) : 0;
    if (k < 0)
        return -1;
    b[k++] = '\r';
    b[k++] = '\n';
    if (cl_write(c, b, (size_t)k) < 0 || cl_line(c, line, cap) < 0)
        return -1;
    return 0;
}

/* The tagged answer after an exchange: 0 when OK. */
static int sasl_tagged(struct cl *c, char *line, size_t cap, const char *what)
{
    size_t tl = strlen(c->tag);
    while (strncmp(line, c->tag, tl) || line[tl] != ' ') {
        if (line[0] == '+') {
            cl_err(c, what, "unexpected continuation");
            return -1;
        }
        if (cl_line(c, line, cap) < 0)
            return -1;
    }
    if (strncmp(line + tl + 1, "OK", 2)) {
        cl_err(c, what, untag(line));
        return -1;
    }
    return 0;
}

/* The whole SCRAM-SHA-256 client exchange (RFC 5802 section 3, RFC 7677),
 * with the server's signature checked; -PLUS binds it to this TLS session
 * with tls-exporter (RFC 9266, TLS 1.3). */
static int login_scram(struct cl *c, int user, int plus)
{
    char line[8192], cnonce[32], bare[512], first[600], sfirst[1024], wp[1024], auth[3072];
    char final[1200], b[4096], cbind_b64[256];
    unsigned char rnd[18], salt[64], cbind[128], salted[32], ck[32], sk[32], svk[32], sig[32];
    unsigned char proof[32], want[32];
    const char *what = lmech_name[lmech];
    int n;

    if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof(rnd)) < 0 || b64e(rnd, 18, cnonce, 32) < 0)
        return -1;
    const char *gs2 = plus ? "p=tls-exporter,," : "n,,";
    snprintf(bare, sizeof(bare), "n=%s%d@bench.example,r=%s", uprefix, user, cnonce);
    n = snprintf(first, sizeof(first), "%s%s", gs2, bare);
    snprintf(c->tag, sizeof(c->tag), "b%u", ++c->tagn);
    if (b64e(first, (size_t)n, b, sizeof(b)) < 0)
        return -1;
    /* SASL-IR: the client-first message on the command line */
    n = snprintf(line, sizeof(line), "%s AUTHENTICATE %s %s\r\n", c->tag, what, b);
    if (cl_write(c, line, (size_t)n) < 0 || cl_line(c, line, sizeof(line)) < 0)
        return -1;
    if (strncmp(line, "+ ", 2)) {
        cl_err(c, what, untag(line));
        return -1;
    }
    n = b64d(line + 2, strlen(line + 2), (unsigned char *)sfirst, sizeof(sfirst));
    if (n <= 0) {
        cl_err(c, what, "server-first not base64");
        return -1;
    }
    /* r=<cnonce><snonce>,s=<salt>,i=<iter> */
    const char *sp = strstr(sfirst, ",s="), *ip = strstr(sfirst, ",i=");
    size_t cl = strlen(cnonce);
    if (strncmp(sfirst, "r=", 2) || strncmp(sfirst + 2, cnonce, cl) || !sp || !ip || ip < sp ||
        sp == sfirst + 2 + cl) {
        cl_err(c, what, sfirst);
        return -1;
    }
    int slen = b64d(sp + 3, (size_t)(ip - sp - 3), salt, sizeof(salt));
    unsigned iter = (unsigned)strtoul(ip + 3, NULL, 10);
    if (slen <= 0 || iter < 4096) {
        cl_err(c, what, "bad salt or iteration count");
        return -1;
    }
    struct salted *kc = &salted_cache[user - 1];
    if (kc->iter == iter && kc->salt_len == (size_t)slen && !memcmp(kc->salt, salt, (size_t)slen)) {
        memcpy(salted, kc->key, 32);
    } else {
        gnutls_datum_t pw = {(unsigned char *)prep_pass, (unsigned)prep_len};
        gnutls_datum_t sd = {salt, (unsigned)slen};
        if (gnutls_pbkdf2(GNUTLS_MAC_SHA256, &pw, &sd, iter, salted, 32) < 0)
            return -1;
        __atomic_fetch_add(&login_pbkdf2, 1, __ATOMIC_RELAXED);
        memcpy(kc->salt, salt, (size_t)slen);
        kc->salt_len = (size_t)slen;
        kc->iter = iter;
        memcpy(kc->key, salted, 32);
    }
    if (hmac256(salted, 32, "Client Key", 10, ck) < 0 ||
        gnutls_hash_fast(GNUTLS_DIG_SHA256, ck, 32, sk) < 0 ||
        hmac256(salted, 32, "Server Key", 10, svk) < 0)
        return -1;
    /* c=: the gs2 header, then (-PLUS) this session's exporter */
    size_t cbl = strlen(gs2);
    memcpy(cbind, gs2, cbl);
    if (plus) {
        gnutls_datum_t cb = {NULL, 0};
        if (gnutls_session_channel_binding(c->tls, GNUTLS_CB_TLS_EXPORTER, &cb) < 0 ||
            cb.size > sizeof(cbind) - cbl) {
            cl_err(c, what, "no tls-exporter on this session");
            return -1;
        }
        memcpy(cbind + cbl, cb.data, cb.size);
        cbl += cb.size;
        gnutls_free(cb.data);
    }
    if (b64e(cbind, cbl, cbind_b64, sizeof(cbind_b64)) < 0)
        return -1;
    snprintf(wp, sizeof(wp), "c=%s,r=%.*s", cbind_b64, (int)(sp - sfirst - 2), sfirst + 2);
    n = snprintf(auth, sizeof(auth), "%s,%s,%s", bare, sfirst, wp);
    if (hmac256(sk, 32, auth, (size_t)n, sig) < 0)
        return -1;
    for (int i = 0; i < 32; i++)
        proof[i] = ck[i] ^ sig[i];
    if (b64e(proof, 32, b, sizeof(b)) < 0)
        return -1;
    n = snprintf(final, sizeof(final), "%s,p=%s", wp, b);
    if (sasl_send(c, final, (size_t)n, line, sizeof(line)) < 0)
        return -1;
    if (strncmp(line, "+ ", 2)) {
        cl_err(c, what, untag(line));
        return -1;
    }
    /* server-final: v=ServerSignature, checked before going on */
    n = b64d(line + 2, strlen(line + 2), (unsigned char *)b, sizeof(b));
    if (hmac256(svk, 32, auth, strlen(auth), want) < 0)
        return -1;
    char wantb[64];
    if (n < 3 || strncmp(b, "v=", 2) || b64e(want, 32, wantb, sizeof(wantb)) < 0 ||
        strcmp(b + 2, wantb)) {
        cl_err(c, what, "server signature does not verify");
        return -1;
    }
    if (sasl_send(c, "", 0, line, sizeof(line)) < 0)
        return -1;
    return sasl_tagged(c, line, sizeof(line), what);
}

/* One login: connect (with the account's certificate for EXTERNAL), TLS
 * handshake, greeting, AUTHENTICATE, LOGOUT. */
static int login_one(struct cl *c, int user)
{
    char line[8192], b[1024];
    int n, r = -1;

    c->fd = -1;
    c->err[0] = '\0';
    c->cred = lmech == LM_EXTERNAL ? user_cred[user - 1] : NULL;
    if (cl_connect(c) < 0)
        return -1;
    if (cl_line(c, line, sizeof(line)) < 0)
        goto out;
    if (strncmp(line, "* OK", 4)) {
        cl_err(c, "greeting", line);
        goto out;
    }
    switch (lmech) {
    case LM_PLAIN:
        n = snprintf(line, sizeof(line), "%c%s%d@bench.example%c%.*s", 0, uprefix, user, 0,
                     (int)strlen(pass), pass);
        if (b64e(line, (size_t)n, b, sizeof(b)) < 0)
            goto out;
        n = cl_cmd(c, line, sizeof(line), "AUTHENTICATE PLAIN %s", b);
        if (n > 0)
            cl_err(c, "PLAIN", untag(line));
        if (n)
            goto out;
        break;
    case LM_LOGIN: /* what a proxy such as nginx's mail module takes too */
        n = cl_cmd(c, line, sizeof(line), "LOGIN \"%s%d@bench.example\" \"%s\"", uprefix, user,
                   pass);
        if (n > 0)
            cl_err(c, "LOGIN", untag(line));
        if (n)
            goto out;
        break;
    case LM_EXTERNAL: /* an empty authorization identity: the certificate's account */
        n = cl_cmd(c, line, sizeof(line), "AUTHENTICATE EXTERNAL =");
        if (n > 0)
            cl_err(c, "EXTERNAL", untag(line));
        if (n)
            goto out;
        break;
    case LM_SCRAM:
    case LM_SCRAM_PLUS:
        if (login_scram(c, user, lmech == LM_SCRAM_PLUS) < 0)
            goto out;
        break;
    }
    if (cl_cmd(c, line, sizeof(line), "LOGOUT") < 0)
        goto out;
    r = 0;
out:
    cl_close(c);
    return r;
}

static void *login_worker(void *arg)
{
    struct cl *c = calloc(1, sizeof(*c));
    (void)arg;
    if (!c)
        return NULL;
    for (;;) {
        int i = __atomic_fetch_add(&login_next, 1, __ATOMIC_RELAXED);
        if (login_pass_only ? i >= nusers : now() >= deadline)
            break;
        if (login_one(c, i % nusers + 1) == 0) {
            __atomic_fetch_add(&login_ok, 1, __ATOMIC_RELAXED);
        } else {
            pthread_mutex_lock(&idle_lock);
            login_failed++;
            count_reason(c->err[0] ? c->err : "unknown");
            pthread_mutex_unlock(&idle_lock);
        }
    }
    free(c);
    return NULL;
}

/* EXTERNAL: CERTDIR/<prefix><n>.pem (certificate) and CERTDIR/key.pem. */
static int load_user_certs(const char *dir)
{
    char crt[4096], key[4096];
    user_cred = calloc((size_t)nusers, sizeof(*user_cred));
    if (!user_cred)
        return -1;
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    for (int u = 1; u <= nusers; u++) {
        snprintf(crt, sizeof(crt), "%s/%s%d.pem", dir, uprefix, u);
        if (gnutls_certificate_allocate_credentials(&user_cred[u - 1]) < 0 ||
            gnutls_certificate_set_x509_trust_file(user_cred[u - 1], cafile, GNUTLS_X509_FMT_PEM) <=
                0 ||
            gnutls_certificate_set_x509_key_file(user_cred[u - 1], crt, key, GNUTLS_X509_FMT_PEM) <
                0) {
            fprintf(stderr, "cannot load %s with %s\n", crt, key);
            return -1;
        }
    }
    return 0;
}

/* One part of a run: every account once (seconds <= 0) or logins until
 * seconds have passed; prints "LABEL logins N failed F seconds T cpu U
 * pbkdf2 P server_cpu C others_cpu O load L" and the failures by reason. */
static void login_part(const char *label, pthread_t *th, int nclients, double seconds)
{
    login_next = 0;
    login_ok = login_failed = login_pbkdf2 = 0;
    memset(reasons, 0, sizeof(reasons));
    login_pass_only = seconds <= 0;
    double s0 = tree_cpu(server_root), m0 = machine_cpu(), t0 = now(), c0 = cpu_seconds();
    deadline = t0 + seconds;
    for (int i = 0; i < nclients; i++)
        pthread_create(&th[i], NULL, login_worker, NULL);
    for (int i = 0; i < nclients; i++)
        pthread_join(th[i], NULL);
    double el = now() - t0, s1 = tree_cpu(server_root), m1 = machine_cpu();
    double others = (m1 - m0) - (s1 - s0);
    char la[64] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%63s", la) != 1)
            snprintf(la, sizeof(la), "?");
        fclose(f);
    }
    printf("%s logins %ld failed %ld seconds %.2f cpu %.2f pbkdf2 %ld server_cpu %.2f "
           "others_cpu %.2f load %s\n",
           label, login_ok, login_failed, el, cpu_seconds() - c0, login_pbkdf2, s1 - s0,
           others > 0 ? others : 0, la);
    print_reasons();
    fflush(stdout);
}

/* MECH: one login of every account ("first": nothing of theirs cached
 * anywhere yet), then, with SECONDS > 0, logins for SECONDS ("timed"). */
static int run_login(const char *mech, int nclients, double seconds, const char *certdir)
{
    pthread_t *th = calloc((size_t)nclients, sizeof(*th));
    gnutls_datum_t np = {NULL, 0};

    if (!strcasecmp(mech, "plain"))
        lmech = LM_PLAIN;
    else if (!strcasecmp(mech, "scram"))
        lmech = LM_SCRAM;
    else if (!strcasecmp(mech, "scram-plus"))
        lmech = LM_SCRAM_PLUS;
    else if (!strcasecmp(mech, "external"))
        lmech = LM_EXTERNAL;
    else if (!strcasecmp(mech, "login"))
        lmech = LM_LOGIN;
    else
        return 2;
    if (!th || nclients < 1)
        return 2;
    if (lmech == LM_EXTERNAL && (!certdir || load_user_certs(certdir) < 0))
        return 1;
    /* RFC 5802 2.2: the password prepared as the server prepares its
     * secrets (OpaqueString; the identity for an ASCII password) */
    if (gnutls_utf8_password_normalize((const unsigned char *)pass, (unsigned)strlen(pass), &np,
                                       GNUTLS_UTF8_IGNORE_ERRS) < 0 ||
        np.size >= sizeof(prep_pass))
        return 1;
    memcpy(prep_pass, np.data, np.size);
    prep_len = np.size;
    gnutls_free(np.data);
    salted_cache = calloc((size_t)nusers, sizeof(*salted_cache));
    if (!salted_cache)
        return 1;
    login_part("first", th, nclients, 0);
    if (seconds > 0)
        login_part("timed", th, nclients, seconds);
    free(th);
    return 0;
}

int main(int argc, char **argv)
{
    if (getenv("BENCH_USER_PREFIX"))
        uprefix = getenv("BENCH_USER_PREFIX");
    host = getenv("BENCH_HOST");
    quickack = getenv("BENCH_QUICKACK") && !strcmp(getenv("BENCH_QUICKACK"), "1");
    want_compress = getenv("BENCH_COMPRESS") && !strcmp(getenv("BENCH_COMPRESS"), "1");
    if (argc == 3 && !strcmp(argv[1], "gen"))
        return run_gen(strtoul(argv[2], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "genstream"))
        return run_genstream(strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10));
    if (argc < 6) {
        fprintf(
            stderr,
            "usage: %s mixed PORT CAFILE NUSERS PASS NCLIENTS SECONDS NMSGS\n"
            "       %s warm PORT CAFILE NUSERS PASS\n"
            "       %s idle PORT CAFILE NUSERS PASS NCONN\n"
            "       %s fill PORT CAFILE 1 PASS FIRST LAST BATCH_BYTES\n"
            "       %s steps PORT CAFILE 1 PASS SERVER_PID warm|measure|sort\n"
            "       %s compress PORT CAFILE 1 PASS SERVER_PID\n"
            "       %s headers PORT CAFILE 1 PASS SERVER_PID N\n"
            "       %s open PORT CAFILE 1 PASS SERVER_PID\n"
            "       %s qresync PORT CAFILE 1 PASS SERVER_PID NCHANGES\n"
            "       %s idlepush PORT CAFILE 1 PASS LMTP_PORT SECONDS INTERVAL\n"
            "       %s login PORT CAFILE NUSERS PASS NCLIENTS SECONDS MECH SERVER_PID [CERTDIR]\n"
            "       %s gen I\n"
            "       %s genstream FIRST LAST\n",
            argv[0], argv[0], argv[0], argv[0], argv[0], argv[0], argv[0], argv[0], argv[0],
            argv[0], argv[0], argv[0], argv[0]);
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
    if (!strcmp(argv[1], "compress") && argc == 7) {
        server_root = atol(argv[6]);
        return run_compress();
    }
    if (!strcmp(argv[1], "headers") && argc == 8) {
        server_root = atol(argv[6]);
        return run_headers(atoi(argv[7]));
    }
    if (!strcmp(argv[1], "open") && argc == 7) {
        server_root = atol(argv[6]);
        return run_open();
    }
    if (!strcmp(argv[1], "qresync") && argc == 8) {
        server_root = atol(argv[6]);
        return run_qresync(atoi(argv[7]));
    }
    if (!strcmp(argv[1], "idlepush") && argc == 9) {
        lmtp_port = atoi(argv[6]);
        push_seconds = atof(argv[7]);
        push_interval = atof(argv[8]);
        return run_idlepush();
    }
    if (!strcmp(argv[1], "login") && (argc == 10 || argc == 11)) {
        server_root = atol(argv[9]);
        return run_login(argv[8], atoi(argv[6]), atof(argv[7]), argc == 11 ? argv[10] : NULL);
    }
    if (!strcmp(argv[1], "steps") && argc == 8) {
        server_root = atol(argv[6]);
        return run_steps(!strcmp(argv[7], "warm"), !strcmp(argv[7], "sort"));
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
