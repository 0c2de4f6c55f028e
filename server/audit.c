/* The hash-chained audit log (see audit.h). A line is
 *   text:  LINE " seq=" N " chain=" HASH
 *   JSON:  LINE without its final '}' ",\"seq\":" N ",\"chain\":\"" HASH "\"}"
 * where HASH is the hex SHA-256 of the previous line's HASH (64 zeros
 * before the first line) followed by everything before the chain field.
 * The seq numbers say which line went missing or moved; the hash says a
 * line was changed. */
#include "server/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/base/config.h"
#include "server/base/log.h"

#define TAIL_READ (64u * 1024)
static const char ZERO[AUDIT_HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct audit_log {
    char *path;
    int fd;
    unsigned anchor_ms;
    uint64_t last_anchor_ms;
    /* the head as of known_size bytes of the file (-1: not read yet) */
    off_t known_size;
    dev_t dev;
    ino_t ino;
    uint64_t seq;
    char head[AUDIT_HASH_HEX + 1];
    bool have_state; /* seq/head are true for some file (for a continue line) */
};

void audit_hash(const char prev[AUDIT_HASH_HEX + 1], const char *payload, size_t len,
                char out[AUDIT_HASH_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    char *buf = malloc(AUDIT_HASH_HEX + len);

    if (!buf) {
        memcpy(out, ZERO, sizeof(ZERO));
        return;
    }
    memcpy(buf, prev, AUDIT_HASH_HEX);
    memcpy(buf + AUDIT_HASH_HEX, payload, len);
    gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, AUDIT_HASH_HEX + len, d);
    free(buf);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[AUDIT_HASH_HEX] = '\0';
}

static bool is_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

/* Splits a full line: *plen = the payload's length, hash = its chain
 * field, *seq = its seq field. false when the line has not that form. */
static bool parse_line(const char *l, size_t len, size_t *plen, char hash[AUDIT_HASH_HEX + 1],
                       uint64_t *seq)
{
    static const char tk[] = " chain=", jk[] = ",\"chain\":\"";
    const char *sk;
    size_t p, sklen;

    if (len > AUDIT_HASH_HEX + sizeof(jk) + 1 && l[len - 1] == '}' && l[len - 2] == '"' &&
        !memcmp(l + len - 2 - AUDIT_HASH_HEX - (sizeof(jk) - 1), jk, sizeof(jk) - 1)) {
        p = len - 2 - AUDIT_HASH_HEX - (sizeof(jk) - 1);
        memcpy(hash, l + len - 2 - AUDIT_HASH_HEX, AUDIT_HASH_HEX);
        sk = ",\"seq\":";
    } else if (len > AUDIT_HASH_HEX + sizeof(tk) &&
               !memcmp(l + len - AUDIT_HASH_HEX - (sizeof(tk) - 1), tk, sizeof(tk) - 1)) {
        p = len - AUDIT_HASH_HEX - (sizeof(tk) - 1);
        memcpy(hash, l + len - AUDIT_HASH_HEX, AUDIT_HASH_HEX);
        sk = " seq=";
    } else {
        return false;
    }
    hash[AUDIT_HASH_HEX] = '\0';
    if (!is_hex(hash, AUDIT_HASH_HEX))
        return false;
    /* the seq digits end the payload */
    size_t d = p;
    while (d > 0 && l[d - 1] >= '0' && l[d - 1] <= '9' && p - d < 20)
        d--;
    sklen = strlen(sk);
    if (d == p || d < sklen || memcmp(l + d - sklen, sk, sklen))
        return false;
    *seq = 0;
    for (size_t i = d; i < p; i++)
        *seq = *seq * 10 + (uint64_t)(l[i] - '0');
    *plen = p;
    return true;
}

/* The prev_chain and prev_seq of an audit.continue line. */
static bool parse_continue(const char *l, size_t plen, char prev[AUDIT_HASH_HEX + 1],
                           uint64_t *prev_seq)
{
    const char *e = l + plen, *p;
    if (!memmem(l, plen, "audit.continue", 14))
        return false;
    p = memmem(l, plen, "prev_chain", 10);
    if (!p)
        return false;
    p += 10;
    p += (p < e && *p == '=') ? 1 : 3; /* text: =HEX, JSON: ":"HEX */
    if (e - p < AUDIT_HASH_HEX || !is_hex(p, AUDIT_HASH_HEX))
        return false;
    memcpy(prev, p, AUDIT_HASH_HEX);
    prev[AUDIT_HASH_HEX] = '\0';
    p = memmem(l, plen, "prev_seq", 8);
    if (!p)
        return false;
    p += 8;
    while (p < e && (*p == '=' || *p == '"' || *p == ':'))
        p++;
    *prev_seq = 0;
    while (p < e && *p >= '0' && *p <= '9')
        *prev_seq = *prev_seq * 10 + (uint64_t)(*p++ - '0');
    return true;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void anchor(struct audit_log *a, const char *why)
{
    log_info("audit log %s head (%s): seq=%llu chain=%s", a->path, why, (unsigned long long)a->seq,
             a->have_state ? a->head : ZERO);
    a->last_anchor_ms = now_ms();
}

static void sync_head(struct audit_log *a, off_t size);

static int open_fd(const char *path)
{
    /* read too: the tail is read through it, after a privilege drop */
    return open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

int audit_open(const char *path, unsigned anchor_ms, struct audit_log **out, char *err,
               size_t errlen)
{
    struct audit_log *a = calloc(1, sizeof(*a));
    if (!a || !(a->path = strdup(path))) {
        free(a);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->fd = open_fd(path);
    if (a->fd < 0) {
        snprintf(err, errlen, "cannot open the audit log %s: %s", path, strerror(errno));
        free(a->path);
        free(a);
        return -1;
    }
    a->anchor_ms = anchor_ms;
    a->known_size = -1;
    memcpy(a->head, ZERO, sizeof(ZERO));
    /* the head now, from the tail (at most TAIL_READ bytes), so that the
     * chain goes on across a restart and the head is logged at start */
    struct stat st;
    if (flock(a->fd, LOCK_EX) == 0) {
        if (fstat(a->fd, &st) == 0)
            sync_head(a, st.st_size);
        flock(a->fd, LOCK_UN);
    }
    if (anchor_ms)
        anchor(a, "start");
    *out = a;
    return 0;
}

static void append_locked(struct audit_log *a, const char *line, size_t len);

/* Under the lock: the head as of the file's end, read from its tail when
 * someone else wrote since (or at the first append). A last line cut short
 * (a crash, a full disk) gets its newline, so that it stays one bad line
 * and not the start of the next one. */
static void sync_head(struct audit_log *a, off_t size)
{
    char *buf;
    size_t n, end, start;
    off_t from;
    ssize_t r;

    if (size == a->known_size)
        return;
    if (size == 0) {
        /* a new file: after a rotation the chain goes on from what we had */
        if (a->have_state) {
            struct log_rec rec;
            char line[1024];
            char seqs[24];
            size_t ln;
            snprintf(seqs, sizeof(seqs), "%llu", (unsigned long long)a->seq);
            log_rec_begin(&rec, "audit.continue");
            log_rec_str(&rec, "prev_seq", seqs);
            log_rec_str(&rec, "prev_chain", a->head);
            ln = log_rec_format(&rec, log_get_format(), line, sizeof(line));
            a->known_size = 0;
            append_locked(a, line, ln);
        } else {
            a->seq = 0;
            memcpy(a->head, ZERO, sizeof(ZERO));
            a->have_state = true;
            a->known_size = 0;
        }
        return;
    }
    from = size > (off_t)TAIL_READ ? size - (off_t)TAIL_READ : 0;
    n = (size_t)(size - from);
    buf = malloc(n);
    if (!buf)
        return;
    r = pread(a->fd, buf, n, from);
    if (r != (ssize_t)n) {
        log_error("audit log %s: cannot read its tail", a->path);
        free(buf);
        return;
    }
    end = n;
    if (buf[n - 1] != '\n') {
        if (write(a->fd, "\n", 1) == 1)
            size++;
    } else {
        end--;
    }
    start = end;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    size_t plen;
    uint64_t seq;
    char h[AUDIT_HASH_HEX + 1];
    if ((start > 0 || from == 0) && parse_line(buf + start, end - start, &plen, h, &seq)) {
        a->seq = seq;
        memcpy(a->head, h, sizeof(h));
    } else {
        log_error("audit log %s: its last line is not a chained audit line; the chain goes on "
                  "from seq %llu and `coffrectl log verify` reports that line",
                  a->path, (unsigned long long)a->seq);
    }
    a->have_state = true;
    a->known_size = size;
    free(buf);
}

/* Under the lock, the head in sync: writes the line with its fields. */
static void append_locked(struct audit_log *a, const char *line, size_t len)
{
    struct stat st;
    char *out;
    size_t n, cap;
    bool json;
    int k;

    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    json = len >= 2 && line[0] == '{' && line[len - 1] == '}';
    cap = len + 128;
    out = malloc(cap);
    if (!out)
        return;
    a->seq++;
    if (json)
        k = snprintf(out, cap, "%.*s,\"seq\":%llu", (int)(len - 1), line,
                     (unsigned long long)a->seq);
    else
        k = snprintf(out, cap, "%.*s seq=%llu", (int)len, line, (unsigned long long)a->seq);
    n = (size_t)k;
    audit_hash(a->head, out, n, a->head);
    k = snprintf(out + n, cap - n, json ? ",\"chain\":\"%s\"}\n" : " chain=%s\n", a->head);
    n += (size_t)k;
    ssize_t w = write(a->fd, out, n);
    if (w != (ssize_t)n)
        log_error("audit log %s: write failed: %s", a->path,
                  w < 0 ? strerror(errno) : "short write");
    if (fstat(a->fd, &st) == 0)
        a->known_size = st.st_size;
    free(out);
}

void audit_append(struct audit_log *a, const char *line, size_t len)
{
    struct stat st;

    if (flock(a->fd, LOCK_EX) < 0) {
        log_error("audit log %s: cannot lock: %s", a->path, strerror(errno));
        return;
    }
    if (fstat(a->fd, &st) == 0) {
        sync_head(a, st.st_size);
        append_locked(a, line, len);
    }
    flock(a->fd, LOCK_UN);
    if (a->anchor_ms && now_ms() - a->last_anchor_ms >= a->anchor_ms)
        anchor(a, "periodic");
}

void audit_reopen(struct audit_log *a)
{
    struct stat st;
    int fd;

    /* the old file's head as it is now (another writer may have added to
     * it since our last line): the new file's continue line names it */
    if (flock(a->fd, LOCK_EX) == 0) {
        if (fstat(a->fd, &st) == 0)
            sync_head(a, st.st_size);
        flock(a->fd, LOCK_UN);
    }
    fd = open_fd(a->path);
    if (fd < 0) {
        log_error("audit log %s: cannot reopen: %s", a->path, strerror(errno));
        return;
    }
    close(a->fd);
    a->fd = fd;
    a->known_size = -1;
    /* a new file gets its continue line now, before another writer
     * (coffrectl) could start a chain of its own in it */
    if (flock(a->fd, LOCK_EX) == 0) {
        if (fstat(a->fd, &st) == 0)
            sync_head(a, st.st_size);
        flock(a->fd, LOCK_UN);
    }
}

void audit_close(struct audit_log *a)
{
    if (!a)
        return;
    if (a->have_state && a->anchor_ms)
        anchor(a, "close");
    close(a->fd);
    free(a->path);
    free(a);
}

/* ---- verification ---- */

struct vstate {
    char prev[AUDIT_HASH_HEX + 1];
    uint64_t seq; /* of the last good line */
    bool started;
    const char *anchor_hash;
    uint64_t anchor_seq;
    bool anchor_seen;
};

/* Whether a line with that seq comes later in f (from where it is). */
static long later_line_with_seq(FILE *f, uint64_t want, long lineno)
{
    char *l = NULL;
    size_t cap = 0;
    ssize_t len;
    long found = 0;
    while ((len = getline(&l, &cap, f)) > 0) {
        size_t plen;
        uint64_t seq;
        char h[AUDIT_HASH_HEX + 1];
        lineno++;
        if (l[len - 1] == '\n')
            len--;
        if (parse_line(l, (size_t)len, &plen, h, &seq) && seq == want) {
            found = lineno;
            break;
        }
    }
    free(l);
    return found;
}

static int verify_file(const char *path, struct vstate *v, long *total, FILE *out)
{
    FILE *f = fopen(path, "r");
    char *l = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;

    if (!f) {
        fprintf(out, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    while ((len = getline(&l, &cap, f)) >= 0) {
        size_t plen;
        uint64_t seq, pseq;
        char h[AUDIT_HASH_HEX + 1], calc[AUDIT_HASH_HEX + 1], cprev[AUDIT_HASH_HEX + 1];
        const char *prev = v->prev;
        uint64_t expect = v->seq + 1;

        lineno++;
        if (len == 0 || l[len - 1] != '\n') {
            fprintf(out, "%s:%ld: line cut short (no newline): the file was truncated\n", path,
                    lineno);
            rc = 1;
            break;
        }
        len--;
        if ((size_t)len > AUDIT_LINE_MAX || !parse_line(l, (size_t)len, &plen, h, &seq)) {
            fprintf(out,
                    "%s:%ld: not a chained audit line (no seq and chain at its end): "
                    "altered, truncated or inserted\n",
                    path, lineno);
            rc = 1;
            break;
        }
        if (lineno == 1 && parse_continue(l, plen, cprev, &pseq)) {
            /* the first line of a rotated file names the head it goes on from */
            if (v->started && (strcmp(cprev, v->prev) || pseq != v->seq)) {
                fprintf(out,
                        "%s:%ld: goes on from seq %llu chain %s, but the file before ends at "
                        "seq %llu chain %s\n",
                        path, lineno, (unsigned long long)pseq, cprev, (unsigned long long)v->seq,
                        v->prev);
                rc = 1;
                break;
            }
            prev = cprev;
            expect = pseq + 1;
        } else if (!v->started && lineno == 1 && seq != 1) {
            fprintf(out,
                    "%s:%ld: the log starts at seq %llu, not 1: its first line(s) were "
                    "removed\n",
                    path, lineno, (unsigned long long)seq);
            rc = 1;
            break;
        }
        audit_hash(prev, l, plen, calc);
        if (strcmp(calc, h) || seq != expect) {
            if (seq > expect) {
                long at = later_line_with_seq(f, expect, lineno);
                if (at)
                    fprintf(out,
                            "%s:%ld: line out of order: seq %llu where %llu was due (it is "
                            "at line %ld)\n",
                            path, lineno, (unsigned long long)seq, (unsigned long long)expect, at);
                else
                    fprintf(out,
                            "%s:%ld: %llu line(s) removed before this one (seq %llu, "
                            "expected %llu)\n",
                            path, lineno, (unsigned long long)(seq - expect),
                            (unsigned long long)seq, (unsigned long long)expect);
            } else if (seq < expect) {
                fprintf(out, "%s:%ld: line out of order or repeated: seq %llu after %llu\n", path,
                        lineno, (unsigned long long)seq, (unsigned long long)(expect - 1));
            } else {
                fprintf(out,
                        "%s:%ld: altered line: its hash does not match its content and "
                        "the line before\n",
                        path, lineno);
            }
            rc = 1;
            break;
        }
        memcpy(v->prev, h, sizeof(h));
        v->seq = seq;
        (*total)++;
        v->started = true;
        if (v->anchor_hash && seq == v->anchor_seq) {
            if (strcmp(h, v->anchor_hash)) {
                fprintf(out,
                        "%s:%ld: seq %llu has chain %s, not the anchor's %s: the log was "
                        "rewritten\n",
                        path, lineno, (unsigned long long)seq, h, v->anchor_hash);
                rc = 1;
                break;
            }
            v->anchor_seen = true;
        }
    }
    free(l);
    fclose(f);
    return rc;
}

int audit_verify(const char *const *paths, size_t n, const char *anchor_s, FILE *out)
{
    struct vstate v = {.seq = 0};
    long total = 0;
    char ahash[AUDIT_HASH_HEX + 1];

    memcpy(v.prev, ZERO, sizeof(ZERO));
    if (anchor_s) {
        const char *colon = strchr(anchor_s, ':');
        char *end;
        if (!colon || strlen(colon + 1) != AUDIT_HASH_HEX || !is_hex(colon + 1, AUDIT_HASH_HEX)) {
            fprintf(out, "anchor must be SEQ:HASH (64 lower-case hex digits)\n");
            return -1;
        }
        v.anchor_seq = strtoull(anchor_s, &end, 10);
        if (end != colon) {
            fprintf(out, "anchor must be SEQ:HASH (64 lower-case hex digits)\n");
            return -1;
        }
        memcpy(ahash, colon + 1, sizeof(ahash));
        v.anchor_hash = ahash;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = verify_file(paths[i], &v, &total, out);
        if (rc)
            return rc;
    }
    if (v.anchor_hash && !v.anchor_seen) {
        fprintf(out,
                "the anchor's seq %llu is not in the log, which ends at seq %llu: lines "
                "were cut from its end\n",
                (unsigned long long)v.anchor_seq, (unsigned long long)v.seq);
        return 1;
    }
    fprintf(out, "OK: %ld line(s), head seq=%llu chain=%s\n", total, (unsigned long long)v.seq,
            v.prev);
    return 0;
}

/* ---- set-up from the configuration ---- */

static void sink_append(void *ctx, const char *line, size_t len)
{
    audit_append(ctx, line, len);
}

static void sink_reopen(void *ctx)
{
    audit_reopen(ctx);
}

int audit_setup(const struct conf *c, const char *ident, bool anchors, struct audit_log **out,
                char *err, size_t errlen)
{
    enum log_format f = !strcmp(c->log_format, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;

    *out = NULL;
    if (log_configure(f, c->log_target, ident, (size_t)c->log_queue_size, err, errlen) < 0)
        return -1;
    if (!c->audit_log[0])
        return 0;
    if (audit_open(c->audit_log, anchors ? c->audit_anchor_interval_ms : 0, out, err, errlen) < 0)
        return -1;
    log_set_audit_sink(
        &(struct log_audit_sink){.ctx = *out, .append = sink_append, .reopen = sink_reopen});
    log_set_audit_only_sink(true);
    return 0;
}

void audit_teardown(struct audit_log *a)
{
    log_flush();
    if (!a)
        return;
    log_set_audit_sink(NULL);
    audit_close(a);
    log_flush(); /* the head line audit_close wrote */
}
