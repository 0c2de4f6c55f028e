/* Logging: text or JSON lines to stderr (one write per line, so lines from
 * the loop and the thread pool never interleave), to syslog or to a file.
 * Syslog and file lines go through a bounded queue to a writer thread of
 * their own: a slow disk, a full syslog socket or a held lock on the audit
 * log stalls that thread, never the loop that logged. Audit lines also go
 * to the audit sink (server/audit.c) on that thread, in order. */
#include "server/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

static bool debug_on;

enum target { T_STDERR, T_SYSLOG, T_FILE };

/* A queued line: prio is the syslog priority, audit says it goes to the
 * sink, normal that it goes to the target. */
struct qline {
    struct qline *next;
    int prio;
    bool audit, normal;
    size_t len;
    char text[];
};

static struct {
    enum log_format format;
    enum target target;
    char path[4096];
    int fd;
    size_t queue_max;
    struct log_audit_sink sink;
    bool have_sink, audit_only_sink;

    pthread_mutex_t mu;
    pthread_cond_t cv, idle;
    struct qline *head, *tail;
    size_t queued;
    uint64_t dropped;
    bool reopen, stop, running, busy;
    pid_t pid; /* the process the writer runs in (a fork loses it) */
    pthread_t th;
} L = {
    .fd = -1,
    .queue_max = 1u << 20,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
};

void log_set_debug(bool on)
{
    debug_on = on;
}

bool log_debug_enabled(void)
{
    return debug_on;
}

enum log_format log_get_format(void)
{
    return L.format;
}

/* ---- the writer thread ---- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere left to report it */
        p += w;
        n -= (size_t)w;
    }
}

static void open_file(void)
{
    int fd = open(L.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) {
        char msg[4200];
        int n = snprintf(msg, sizeof(msg), "coffre: cannot reopen the log %s: %s\n", L.path,
                         strerror(errno));
        if (n > 0)
            write_all(STDERR_FILENO, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
        return; /* keep the old descriptor */
    }
    if (L.fd >= 0)
        close(L.fd);
    L.fd = fd;
}

/* Writes a line (text without newline, room for one more byte after it). */
static void target_write(int prio, char *text, size_t len)
{
    switch (L.target) {
    case T_SYSLOG:
        syslog(prio, "%.*s", (int)len, text);
        break;
    case T_FILE:
    case T_STDERR:
        text[len] = '\n';
        write_all(L.target == T_FILE ? L.fd : STDERR_FILENO, text, len + 1);
        text[len] = '\0';
        break;
    }
}

static size_t format_line(enum log_format f, char *buf, size_t cap, const char *level,
                          const char *msg, size_t msglen, bool fields);

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&L.mu);
    for (;;) {
        while (!L.head && !L.reopen && !L.dropped && !L.stop)
            pthread_cond_wait(&L.cv, &L.mu);
        if (!L.head && !L.reopen && !L.dropped && L.stop)
            break;
        struct qline *q = L.head;
        bool reopen = L.reopen;
        uint64_t dropped = L.dropped;
        L.head = L.tail = NULL;
        L.queued = 0;
        L.reopen = false;
        L.dropped = 0;
        L.busy = true;
        pthread_mutex_unlock(&L.mu);

        if (reopen) {
            if (L.target == T_FILE)
                open_file();
            if (L.have_sink && L.sink.reopen)
                L.sink.reopen(L.sink.ctx);
        }
        while (q) {
            struct qline *next = q->next;
            if (q->normal)
                target_write(q->prio, q->text, q->len);
            if (q->audit && L.have_sink)
                L.sink.append(L.sink.ctx, q->text, q->len);
            free(q);
            q = next;
        }
        if (dropped) {
            char msg[128], line[512];
            size_t n;
            snprintf(msg, sizeof(msg), "%llu log line(s) dropped: the log target did not keep up",
                     (unsigned long long)dropped);
            n = format_line(L.format, line, sizeof(line) - 1, "warning", msg, strlen(msg), false);
            target_write(LOG_WARNING, line, n);
            if (L.have_sink) {
                /* the audit log says where it may have a gap */
                struct log_rec r;
                log_rec_begin(&r, "log.dropped");
                log_rec_num(&r, "count", dropped);
                n = log_rec_format(&r, L.format, line, sizeof(line));
                L.sink.append(L.sink.ctx, line, n);
            }
        }

        pthread_mutex_lock(&L.mu);
        L.busy = false;
        pthread_cond_broadcast(&L.idle);
    }
    L.running = false;
    pthread_cond_broadcast(&L.idle);
    pthread_mutex_unlock(&L.mu);
    return NULL;
}

/* Under L.mu: makes sure the writer runs in this process. */
static bool writer_start_locked(void)
{
    if (L.running && L.pid == getpid())
        return true;
    L.running = false;
    L.stop = false;
    L.busy = false;
    if (pthread_create(&L.th, NULL, writer_main, NULL) != 0)
        return false;
    L.running = true;
    L.pid = getpid();
    return true;
}

static void after_fork_child(void)
{
    /* the writer stayed in the parent: the next line starts one here */
    pthread_mutex_init(&L.mu, NULL);
    pthread_cond_init(&L.cv, NULL);
    pthread_cond_init(&L.idle, NULL);
    L.running = false;
}

/* Queues a line for the writer; false when it could not (then the caller
 * writes it itself, or it is dropped). */
static void enqueue(int prio, const char *text, size_t len, bool normal, bool audit)
{
    struct qline *q;

    pthread_mutex_lock(&L.mu);
    if (L.queued + len > L.queue_max || !writer_start_locked()) {
        L.dropped++;
        pthread_cond_signal(&L.cv);
        pthread_mutex_unlock(&L.mu);
        return;
    }
    q = malloc(sizeof(*q) + len + 2);
    if (!q) {
        L.dropped++;
        pthread_mutex_unlock(&L.mu);
        return;
    }
    q->next = NULL;
    q->prio = prio;
    q->normal = normal;
    q->audit = audit;
    q->len = len;
    memcpy(q->text, text, len);
    q->text[len] = '\0';
    if (L.tail)
        L.tail->next = q;
    else
        L.head = q;
    L.tail = q;
    L.queued += len;
    pthread_cond_signal(&L.cv);
    pthread_mutex_unlock(&L.mu);
}

int log_configure(enum log_format format, const char *target, const char *ident, size_t queue_max,
                  char *err, size_t errlen)
{
    static bool atfork;

    L.format = format;
    if (queue_max)
        L.queue_max = queue_max;
    if (!target || !*target || !strcmp(target, "stderr")) {
        L.target = T_STDERR;
    } else if (!strcmp(target, "syslog")) {
        L.target = T_SYSLOG;
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
    } else if (target[0] == '/') {
        if (strlen(target) >= sizeof(L.path)) {
            snprintf(err, errlen, "log_target: path too long");
            return -1;
        }
        memcpy(L.path, target, strlen(target) + 1);
        int fd = open(L.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0) {
            snprintf(err, errlen, "log_target: cannot open %s: %s", L.path, strerror(errno));
            return -1;
        }
        if (L.fd >= 0)
            close(L.fd);
        L.fd = fd;
        L.target = T_FILE;
    } else {
        snprintf(err, errlen, "log_target must be stderr, syslog or an absolute file path");
        return -1;
    }
    if (!atfork) {
        pthread_atfork(NULL, NULL, after_fork_child);
        atexit(log_flush);
        atfork = true;
    }
    return 0;
}

void log_set_audit_sink(const struct log_audit_sink *sink)
{
    pthread_mutex_lock(&L.mu);
    L.have_sink = sink != NULL;
    if (sink)
        L.sink = *sink;
    pthread_mutex_unlock(&L.mu);
}

void log_set_audit_only_sink(bool only)
{
    L.audit_only_sink = only;
}

void log_reopen(void)
{
    pthread_mutex_lock(&L.mu);
    if (L.running && L.pid == getpid()) {
        L.reopen = true;
        pthread_cond_signal(&L.cv);
    } else if (L.target == T_FILE || L.have_sink) {
        L.reopen = true;
        writer_start_locked();
        pthread_cond_signal(&L.cv);
    }
    pthread_mutex_unlock(&L.mu);
}

void log_flush(void)
{
    pthread_mutex_lock(&L.mu);
    if (!L.running || L.pid != getpid()) {
        pthread_mutex_unlock(&L.mu);
        return;
    }
    L.stop = true;
    pthread_cond_signal(&L.cv);
    pthread_mutex_unlock(&L.mu);
    pthread_join(L.th, NULL);
    pthread_mutex_lock(&L.mu);
    L.running = false;
    L.stop = false;
    pthread_mutex_unlock(&L.mu);
}

/* ---- formatting ---- */

static size_t put_time(char *buf, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(buf + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    if (r > 0 && (size_t)r < cap - n)
        n += (size_t)r;
    return n;
}

static size_t put(char *buf, size_t cap, size_t n, const char *s, size_t len)
{
    if (n >= cap)
        return n;
    if (len > cap - 1 - n)
        len = cap - 1 - n;
    memcpy(buf + n, s, len);
    buf[n + len] = '\0';
    return n + len;
}

/* A line: text "TIME LEVEL: MSG" (syslog: "LEVEL: MSG", syslog stamps it),
 * JSON {"time":..,"level":..,"msg":..} or, for audit records (fields is
 * true), {"time":..,"level":"audit",FIELDS} with msg the fields already in
 * JSON. The result is NUL-terminated, its length returned. */
static size_t format_line(enum log_format f, char *buf, size_t cap, const char *level,
                          const char *msg, size_t msglen, bool fields)
{
    size_t n = 0;

    if (f == LOG_FORMAT_JSON) {
        n = put(buf, cap, n, "{\"time\":\"", 9);
        n += put_time(buf + n, cap - n);
        n = put(buf, cap, n, "\",\"level\":\"", 11);
        n = put(buf, cap, n, level, strlen(level));
        if (fields) {
            n = put(buf, cap, n, "\"", 1);
            n = put(buf, cap, n, msg, msglen);
        } else {
            n = put(buf, cap, n, "\",\"msg\":\"", 9);
            if (n + 3 < cap)
                n += log_json_escape(buf + n, cap - n - 2, msg, msglen);
            n = put(buf, cap, n, "\"", 1);
        }
        n = put(buf, cap, n, "}", 1);
        return n;
    }
    if (L.target != T_SYSLOG) {
        n = put_time(buf, cap);
        n = put(buf, cap, n, " ", 1);
    }
    n = put(buf, cap, n, level, strlen(level));
    n = put(buf, cap, n, ": ", 2);
    size_t start = n;
    n = put(buf, cap, n, msg, msglen);
    /* control characters from remote input never reach the terminal raw */
    for (size_t i = start; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = '?';
    return n;
}

static void emit(const char *level, int prio, const char *fmt, va_list ap)
{
    char msg[2048], line[LINE_MAX_BYTES];
    size_t n;
    int r;

    r = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (r < 0)
        return;
    n = (size_t)r < sizeof(msg) ? (size_t)r : sizeof(msg) - 1;
    n = format_line(L.format, line, sizeof(line) - 1, level, msg, n, false);
    if (L.target == T_STDERR) {
        line[n] = '\n';
        write_all(STDERR_FILENO, line, n + 1);
        return;
    }
    enqueue(prio, line, n, true, false);
}

#define LOG_FN(name, level, prio, cond)                                                            \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        if (!(cond))                                                                               \
            return;                                                                                \
        va_start(ap, fmt);                                                                         \
        emit(level, prio, fmt, ap);                                                                \
        va_end(ap);                                                                                \
    }

LOG_FN(log_error, "error", LOG_ERR, 1)
LOG_FN(log_warn, "warning", LOG_WARNING, 1)
LOG_FN(log_info, "info", LOG_INFO, 1)
LOG_FN(log_debug, "debug", LOG_DEBUG, debug_on)

/* ---- audit records ---- */

void log_rec_begin(struct log_rec *r, const char *event)
{
    r->tlen = r->jlen = 0;
    r->text[0] = r->json[0] = '\0';
    log_rec_str(r, "event", event);
}

void log_rec_strn(struct log_rec *r, const char *key, const char *val, size_t len)
{
    char q[LOG_QUOTE_MAX], tmp[LOG_QUOTE_MAX];
    size_t klen = strlen(key);

    if (!val)
        return;
    /* text: key=value, the value as log_quote gives it */
    if (len >= sizeof(tmp))
        len = sizeof(tmp) - 1;
    memcpy(tmp, val, len);
    tmp[len] = '\0'; /* an embedded NUL ends the value */
    log_quote(q, sizeof(q), tmp);
    if (r->tlen)
        r->tlen = put(r->text, sizeof(r->text), r->tlen, " ", 1);
    r->tlen = put(r->text, sizeof(r->text), r->tlen, key, klen);
    r->tlen = put(r->text, sizeof(r->text), r->tlen, "=", 1);
    r->tlen = put(r->text, sizeof(r->text), r->tlen, q, strlen(q));
    /* JSON: ,"key":"value" */
    r->jlen = put(r->json, sizeof(r->json), r->jlen, ",\"", 2);
    r->jlen = put(r->json, sizeof(r->json), r->jlen, key, klen);
    r->jlen = put(r->json, sizeof(r->json), r->jlen, "\":\"", 3);
    if (r->jlen + 2 < sizeof(r->json))
        r->jlen +=
            log_json_escape(r->json + r->jlen, sizeof(r->json) - r->jlen - 1, tmp, strlen(tmp));
    r->jlen = put(r->json, sizeof(r->json), r->jlen, "\"", 1);
}

void log_rec_str(struct log_rec *r, const char *key, const char *val)
{
    if (val)
        log_rec_strn(r, key, val, strlen(val));
}

static void rec_raw(struct log_rec *r, const char *key, const char *v)
{
    size_t klen = strlen(key), vlen = strlen(v);
    if (r->tlen)
        r->tlen = put(r->text, sizeof(r->text), r->tlen, " ", 1);
    r->tlen = put(r->text, sizeof(r->text), r->tlen, key, klen);
    r->tlen = put(r->text, sizeof(r->text), r->tlen, "=", 1);
    r->tlen = put(r->text, sizeof(r->text), r->tlen, v, vlen);
    r->jlen = put(r->json, sizeof(r->json), r->jlen, ",\"", 2);
    r->jlen = put(r->json, sizeof(r->json), r->jlen, key, klen);
    r->jlen = put(r->json, sizeof(r->json), r->jlen, "\":", 2);
    r->jlen = put(r->json, sizeof(r->json), r->jlen, v, vlen);
}

void log_rec_num(struct log_rec *r, const char *key, uint64_t val)
{
    char v[24];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)val);
    rec_raw(r, key, v);
}

void log_rec_ms(struct log_rec *r, const char *key, uint64_t ns)
{
    char v[32];
    snprintf(v, sizeof(v), "%llu.%03llu", (unsigned long long)(ns / 1000000),
             (unsigned long long)(ns / 1000 % 1000));
    rec_raw(r, key, v);
}

size_t log_rec_format(const struct log_rec *r, enum log_format f, char *out, size_t cap)
{
    size_t n;
    if (f == LOG_FORMAT_JSON)
        return format_line(f, out, cap, "audit", r->json, r->jlen, true);
    n = put_time(out, cap);
    n = put(out, cap, n, " audit: ", 8);
    return put(out, cap, n, r->text, r->tlen);
}

void log_rec_emit(struct log_rec *r)
{
    char line[LINE_MAX_BYTES], sl[LINE_MAX_BYTES];
    size_t n, sn = 0;
    bool normal = !(L.have_sink && L.audit_only_sink);

    /* the audit log's lines always carry their time; syslog stamps its own */
    n = log_rec_format(r, L.format, line, sizeof(line) - 1);
    if (normal && L.target == T_SYSLOG && L.format == LOG_FORMAT_TEXT) {
        sn = format_line(L.format, sl, sizeof(sl) - 1, "audit", r->text, r->tlen, false);
        enqueue(LOG_NOTICE, sl, sn, true, false);
        normal = false;
    }
    if (L.target == T_STDERR && normal) {
        line[n] = '\n';
        write_all(STDERR_FILENO, line, n + 1);
        line[n] = '\0';
        normal = false;
    }
    if (normal || L.have_sink)
        enqueue(LOG_NOTICE, line, n, normal, L.have_sink);
}

/* ---- quoting ---- */

size_t log_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *e = p + len;
    size_t o = 0;

    if (!cap)
        return 0;
    while (p < e) {
        unsigned char c = *p;
        char tmp[8];
        size_t tl = 0, used = 1;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tl = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 15];
            tl = 6;
        } else if (c < 0x80) {
            tmp[0] = (char)c;
            tl = 1;
        } else {
            /* a valid UTF-8 sequence as it is (no overlong form, no
             * surrogate, at most U+10FFFF), anything else as U+FFFD */
            size_t need = c >= 0xc2 && c <= 0xdf   ? 2
                          : c >= 0xe0 && c <= 0xef ? 3
                          : c >= 0xf0 && c <= 0xf4 ? 4
                                                   : 0;
            bool ok = need && (size_t)(e - p) >= need;
            for (size_t i = 1; ok && i < need; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok && need == 3)
                ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
            if (ok && need == 4)
                ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
            if (ok) {
                memcpy(tmp, p, need);
                tl = used = need;
            } else {
                memcpy(tmp, "\xef\xbf\xbd", 3);
                tl = 3;
            }
        }
        if (o + tl >= cap)
            break;
        memcpy(out + o, tmp, tl);
        o += tl;
        p += used;
    }
    out[o] = '\0';
    return o;
}

const char *log_quote(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    bool plain = *s != '\0';
    size_t o = 0;

    if (cap < 8) {
        if (cap)
            out[0] = '\0';
        return out;
    }
    for (const char *p = s; *p && plain; p++) {
        unsigned char c = (unsigned char)*p;
        plain = c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
    }
    if (plain && strlen(s) < cap) {
        memcpy(out, s, strlen(s) + 1);
        return out;
    }
    out[o++] = '"';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (o + 4 + 5 > cap) { /* room for this byte, '..."' and the NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c > 0x7e) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
