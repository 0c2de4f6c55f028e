/* POP3 TRANSACTION and UPDATE states (RFC 1939): STAT, LIST, UIDL, RETR,
 * TOP, DELE, RSET over the snapshot taken at login, the dot-stuffed
 * streaming of message bytes with back-pressure, and QUIT's UPDATE.
 *
 * RETR marks the message \Seen, as Dovecot does by default; like the
 * deletions, the flag is written only in the UPDATE state after QUIT, so a
 * dropped connection changes nothing at all. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/pop3/pop3_int.h"
#include "server/base/config.h"
#include "server/base/log.h"
#include "storage/storage.h"

/* Digits only, no sign, no overflow past UINT64_MAX / 10. */
static int parse_num(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

/* Splits "a b" into its words; returns the count (at most max), -1 when
 * there are more words or empty ones (two spaces). */
static int split_args(const char *arg, size_t len, const char **w, size_t *wl, int max)
{
    int n = 0;
    size_t i = 0;
    if (len == 0)
        return 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && arg[i] != ' ')
            i++;
        if (i == start || n == max)
            return -1;
        w[n] = arg + start;
        wl[n] = i - start;
        n++;
        i++; /* past the space, or past the end */
    }
    return n;
}

/* A message number of the snapshot, not deleted: 0 and *idx, or -1 after
 * answering -ERR. */
static int msg_arg(struct pop3_session *s, const char *p, size_t len, size_t *idx)
{
    uint64_t n;
    if (parse_num(p, len, &n) < 0) {
        pop3_err(s, "Invalid message number.");
        return -1;
    }
    if (n == 0 || n > s->nmsgs) {
        conn_printf(s->c, "-ERR There is no message %" PRIu64 ".\r\n", n);
        return -1;
    }
    if (s->msgs[n - 1].deleted) {
        conn_printf(s->c, "-ERR Message %" PRIu64 " is deleted.\r\n", n);
        return -1;
    }
    *idx = (size_t)(n - 1);
    return 0;
}

/* The one argument of RETR, DELE, LIST n and UIDL n: a message number as
 * msg_arg takes it, or -1 after answering usage. */
static int one_msg_arg(struct pop3_session *s, const char *arg, size_t len, const char *usage,
                       size_t *idx)
{
    const char *w[1];
    size_t wl[1];
    if (split_args(arg, len, w, wl, 1) != 1) {
        pop3_err(s, usage);
        return -1;
    }
    return msg_arg(s, w[0], wl[0], idx);
}

/* The drop listing of what is not deleted: "+OK nn mm" for STAT (RFC 1939
 * 5), "+OK nn messages (mm octets)" for LIST and RSET. */
static void say_totals(struct pop3_session *s, bool stat)
{
    size_t count = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < s->nmsgs; i++) {
        if (!s->msgs[i].deleted) {
            count++;
            bytes += s->msgs[i].size;
        }
    }
    if (stat)
        conn_printf(s->c, "+OK %zu %" PRIu64 "\r\n", count, bytes);
    else
        conn_printf(s->c, "+OK %zu messages (%" PRIu64 " octets)\r\n", count, bytes);
}

void pop3_cmd_stat(struct pop3_session *s, const char *arg, size_t len)
{
    if (len) {
        pop3_err(s, "STAT takes no argument.");
        return;
    }
    say_totals(s, true);
}

/* LIST and UIDL: one line per message, written in batches. */
static void listing(struct pop3_session *s, const char *arg, size_t len, bool uidl)
{
    char line[64];
    size_t idx;

    if (len) {
        if (one_msg_arg(s, arg, len, "Too many arguments.", &idx) < 0)
            return;
        if (uidl)
            conn_printf(s->c, "+OK %zu %" PRIu32 ".%" PRIu32 "\r\n", idx + 1, s->uidvalidity,
                        s->msgs[idx].uid);
        else
            conn_printf(s->c, "+OK %zu %" PRIu64 "\r\n", idx + 1, s->msgs[idx].size);
        return;
    }

    size_t k = 0;
    if (uidl)
        conn_printf(s->c, "+OK\r\n");
    else
        say_totals(s, false);
    char *out = s->xbuf;
    size_t cap = 2 * POP3_CHUNK;
    for (size_t i = 0; i < s->nmsgs; i++) {
        if (s->msgs[i].deleted)
            continue;
        int n = uidl ? snprintf(line, sizeof(line), "%zu %" PRIu32 ".%" PRIu32 "\r\n", i + 1,
                                s->uidvalidity, s->msgs[i].uid)
                     : snprintf(line, sizeof(line), "%zu %" PRIu64 "\r\n", i + 1, s->msgs[i].size);
        if (n <= 0 || (size_t)n >= sizeof(line))
            continue;
        if (k + (size_t)n > cap) {
            conn_write(s->c, out, k);
            k = 0;
        }
        memcpy(out + k, line, (size_t)n);
        k += (size_t)n;
    }
    memcpy(out + k, ".\r\n", 3);
    k += 3;
    conn_write(s->c, out, k);
}

void pop3_cmd_list(struct pop3_session *s, const char *arg, size_t len)
{
    listing(s, arg, len, false);
}

void pop3_cmd_uidl(struct pop3_session *s, const char *arg, size_t len)
{
    listing(s, arg, len, true);
}

/* ---- RETR / TOP ---- */

static void xfer_start(struct pop3_session *s, size_t idx, bool top, uint64_t lines)
{
    struct pop3_xfer *x = &s->xfer;
    *x = (struct pop3_xfer){.active = true, .top = top, .at_bol = true, .idx = idx, .lines = lines};
    s->busy = true;
    if (pop3_store->read(s, s->msgs[idx].uid, true) < 0) {
        x->active = false;
        s->busy = false;
        conn_printf(s->c, "-ERR [SYS/TEMP] Unable to read the message; try again later.\r\n");
    }
}

void pop3_cmd_retr(struct pop3_session *s, const char *arg, size_t len)
{
    size_t idx;
    if (one_msg_arg(s, arg, len, "Usage: RETR msg", &idx) < 0)
        return;
    xfer_start(s, idx, false, 0);
}

void pop3_cmd_top(struct pop3_session *s, const char *arg, size_t len)
{
    size_t idx;
    uint64_t lines;
    const char *w[2];
    size_t wl[2];
    if (split_args(arg, len, w, wl, 2) != 2) {
        pop3_err(s, "Usage: TOP msg lines");
        return;
    }
    if (parse_num(w[1], wl[1], &lines) < 0) {
        pop3_err(s, "Invalid number of lines.");
        return;
    }
    if (msg_arg(s, w[0], wl[0], &idx) < 0)
        return;
    xfer_start(s, idx, true, lines);
}

/* Dot-stuffs buf into s->xbuf; returns its length. *stop is set when TOP
 * has sent all it should. */
static size_t stuff(struct pop3_session *s, const char *buf, size_t len, bool *stop)
{
    struct pop3_xfer *x = &s->xfer;
    char *o = s->xbuf;
    size_t k = 0, i = 0;

    *stop = false;
    if (!x->top) {
        while (i < len) {
            if (x->at_bol && buf[i] == '.')
                o[k++] = '.';
            const char *nl = memchr(buf + i, '\n', len - i);
            size_t end = nl ? (size_t)(nl - buf) + 1 : len;
            memcpy(o + k, buf + i, end - i);
            k += end - i;
            i = end;
            x->at_bol = nl != NULL;
        }
        return k;
    }
    for (; i < len; i++) {
        char ch = buf[i];
        if (x->at_bol && ch == '.')
            o[k++] = '.';
        o[k++] = ch;
        x->at_bol = false;
        if (ch == '\n') {
            x->at_bol = true;
            if (!x->in_body) {
                if (!x->line_nonempty) {
                    x->in_body = true;
                    if (x->lines == 0) {
                        *stop = true;
                        break;
                    }
                }
            } else if (++x->body_lines >= x->lines) {
                *stop = true;
                break;
            }
            x->line_nonempty = false;
        } else if (ch != '\r') {
            x->line_nonempty = true;
        }
    }
    return k;
}

static void xfer_end(struct pop3_session *s)
{
    s->xfer.active = false;
    s->xfer.wait_drain = false;
    s->busy = false;
    pop3_resume(s);
}

static void xfer_next(struct pop3_session *s)
{
    if (pop3_store->read(s, s->msgs[s->xfer.idx].uid, false) < 0) {
        /* the multi-line answer cannot be finished: the client must not
         * take a truncated message for a whole one */
        log_error("conn=%llu pop3 message read could not be started; closing",
                  (unsigned long long)conn_info(s->c)->id);
        s->state = POP3_QUIT;
        conn_close(s->c);
        xfer_end(s);
    }
}

void pop3_read_done(struct pop3_session *s, int err, const char *buf, size_t len, bool eof)
{
    struct pop3_xfer *x = &s->xfer;
    bool stop;

    if (!x->active)
        return;
    if (err) {
        if (!x->started) {
            if (err == STORAGE_E_NOMSG)
                conn_printf(s->c, "-ERR Message was removed by another session.\r\n");
            else
                conn_printf(s->c, "-ERR [SYS/TEMP] Unable to read the message: %s.\r\n",
                            storage_strerror(err));
        } else {
            log_error("conn=%llu pop3 message read failed: %s; closing",
                      (unsigned long long)conn_info(s->c)->id, storage_strerror(err));
            s->state = POP3_QUIT;
            conn_close(s->c);
        }
        xfer_end(s);
        return;
    }
    if (!x->started) {
        x->started = true;
        if (x->top)
            conn_printf(s->c, "+OK\r\n");
        else
            conn_printf(s->c, "+OK %" PRIu64 " octets\r\n", s->msgs[x->idx].size);
    }
    conn_set_timeout(s->c, conn_conf(s->c)->pop3_idle_timeout_ms);
    size_t k = stuff(s, buf, len, &stop);
    if (stop || eof) {
        if (!x->at_bol) {
            memcpy(s->xbuf + k, "\r\n", 2);
            k += 2;
        }
        memcpy(s->xbuf + k, ".\r\n", 3);
        k += 3;
        conn_write(s->c, s->xbuf, k);
        if (!x->top)
            s->msgs[x->idx].seen = true;
        xfer_end(s);
        return;
    }
    conn_write(s->c, s->xbuf, k);
    if (conn_closing(s->c)) {
        xfer_end(s);
        return;
    }
    if (conn_write_queued(s->c) >= CONN_WRITE_HIGH)
        x->wait_drain = true;
    else
        xfer_next(s);
}

void pop3_xfer_drain(struct pop3_session *s)
{
    if (!s->xfer.active || !s->xfer.wait_drain)
        return;
    s->xfer.wait_drain = false;
    xfer_next(s);
}

/* ---- DELE, RSET ---- */

void pop3_cmd_dele(struct pop3_session *s, const char *arg, size_t len)
{
    size_t idx;
    if (one_msg_arg(s, arg, len, "Usage: DELE msg", &idx) < 0)
        return;
    s->msgs[idx].deleted = true;
    conn_printf(s->c, "+OK Message %zu deleted.\r\n", idx + 1);
}

void pop3_cmd_rset(struct pop3_session *s, const char *arg, size_t len)
{
    if (len) {
        pop3_err(s, "RSET takes no argument.");
        return;
    }
    for (size_t i = 0; i < s->nmsgs; i++)
        s->msgs[i].deleted = false;
    say_totals(s, false);
}

/* ---- UPDATE ---- */

static void bye(struct pop3_session *s)
{
    s->state = POP3_QUIT;
    conn_close(s->c);
}

void pop3_cmd_quit_update(struct pop3_session *s)
{
    size_t nseen = 0, ndel = 0;
    for (size_t i = 0; i < s->nmsgs; i++) {
        if (s->msgs[i].deleted)
            ndel++;
        else if (s->msgs[i].seen)
            nseen++;
    }
    if (nseen == 0 && ndel == 0) {
        conn_printf(s->c, "+OK Logging out.\r\n");
        bye(s);
        return;
    }
    uint32_t *seen = malloc((nseen ? nseen : 1) * sizeof(uint32_t));
    uint32_t *del = malloc((ndel ? ndel : 1) * sizeof(uint32_t));
    int r = -1;
    if (seen && del) {
        size_t a = 0, b = 0;
        for (size_t i = 0; i < s->nmsgs; i++) {
            if (s->msgs[i].deleted)
                del[b++] = s->msgs[i].uid;
            else if (s->msgs[i].seen)
                seen[a++] = s->msgs[i].uid;
        }
        s->busy = true;
        r = pop3_store->update(s, seen, nseen, del, ndel);
    }
    free(seen);
    free(del);
    if (r < 0) {
        s->busy = false;
        conn_printf(s->c, "-ERR [SYS/TEMP] Unable to update the maildrop; nothing deleted.\r\n");
        bye(s);
    }
}

void pop3_update_done(struct pop3_session *s, int err, size_t expunged)
{
    s->busy = false;
    if (err) {
        log_error("conn=%llu pop3 update failed: %s", (unsigned long long)conn_info(s->c)->id,
                  storage_strerror(err));
        conn_printf(s->c, "-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n");
    } else {
        log_info("conn=%llu pop3 quit expunged=%zu", (unsigned long long)conn_info(s->c)->id,
                 expunged);
        conn_printf(s->c, "+OK Logging out, %zu messages deleted.\r\n", expunged);
    }
    bye(s);
}
