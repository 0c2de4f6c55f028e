/* IMAP session: greeting, assembling commands from lines and literals under
 * the configured limits, the command table with allowed states, dispatch,
 * output batching, thread-pool jobs, the command rate limit, the per
 * user+address session count, and the session's end (LOGOUT, timeouts,
 * shutdown, too many errors). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap.h"
#include "protocol/imap/imap_private.h"
#include "protocol/job.h"
#include "server/base/config.h"
#include "server/base/log.h"

enum {
    CMD_NO_EXPUNGE = 1 << 0, /* RFC 3501 7.4.1: no EXPUNGE while answering it */
};

struct imap_command {
    const char *name;
    imap_cmd_fn *fn;
    unsigned states;
    unsigned flags;
};

static const struct imap_command commands[] = {
    {"CAPABILITY", imap_cmd_capability, IMAP_ANY, 0},
    {"NOOP", imap_cmd_noop, IMAP_ANY, 0},
    {"LOGOUT", imap_cmd_logout, IMAP_ANY, 0},
    {"ID", imap_cmd_id, IMAP_ANY, 0},
    {"STARTTLS", imap_cmd_starttls, IMAP_NOTAUTH, 0},
    {"LOGIN", imap_cmd_login, IMAP_NOTAUTH, 0},
    {"AUTHENTICATE", imap_cmd_authenticate, IMAP_NOTAUTH, 0},
    {"ENABLE", imap_cmd_enable, IMAP_AUTHED, 0},
    {"NAMESPACE", imap_cmd_namespace, IMAP_AUTHED, 0},
    {"SELECT", imap_cmd_select, IMAP_AUTHED, 0},
    {"EXAMINE", imap_cmd_examine, IMAP_AUTHED, 0},
    {"CREATE", imap_cmd_create, IMAP_AUTHED, 0},
    {"DELETE", imap_cmd_delete, IMAP_AUTHED, 0},
    {"RENAME", imap_cmd_rename, IMAP_AUTHED, 0},
    {"SUBSCRIBE", imap_cmd_subscribe, IMAP_AUTHED, 0},
    {"UNSUBSCRIBE", imap_cmd_unsubscribe, IMAP_AUTHED, 0},
    {"LIST", imap_cmd_list, IMAP_AUTHED, 0},
    {"LSUB", imap_cmd_lsub, IMAP_AUTHED, 0},
    {"XLIST", imap_cmd_xlist, IMAP_AUTHED, 0},
    {"STATUS", imap_cmd_status, IMAP_AUTHED, 0},
    {"APPEND", imap_cmd_append, IMAP_AUTHED, 0},
    {"IDLE", imap_cmd_idle, IMAP_AUTHED, 0},
    {"CHECK", imap_cmd_check, IMAP_SELECTED, 0},
    {"CLOSE", imap_cmd_close, IMAP_SELECTED, 0},
    {"UNSELECT", imap_cmd_unselect, IMAP_SELECTED, 0},
    {"EXPUNGE", imap_cmd_expunge, IMAP_SELECTED, 0},
    {"SEARCH", imap_cmd_search, IMAP_SELECTED, CMD_NO_EXPUNGE},
    {"FETCH", imap_cmd_fetch, IMAP_SELECTED, CMD_NO_EXPUNGE},
    {"STORE", imap_cmd_store, IMAP_SELECTED, CMD_NO_EXPUNGE},
    {"COPY", imap_cmd_copy, IMAP_SELECTED, 0},
    {"MOVE", imap_cmd_move, IMAP_SELECTED, 0},
    {"UID", imap_cmd_uid, IMAP_SELECTED, 0},
};

static void process(struct imap_session *s);

/* ---- output: one buffer for the loop thread, flushed per event ---- */

static struct imap_buf obuf;
static struct imap_session *obuf_owner;

void imap_flush(struct imap_session *s)
{
    if (obuf_owner != s || obuf.len == 0)
        return;
    conn_write(s->c, obuf.p, obuf.len);
    imap_buf_reset(&obuf);
    obuf_owner = NULL;
    if (obuf.cap > 256 * 1024)
        imap_buf_free(&obuf); /* do not keep a large buffer around */
}

struct imap_buf *imap_outbuf(struct imap_session *s)
{
    if (obuf_owner && obuf_owner != s)
        imap_flush(obuf_owner);
    obuf_owner = s;
    return &obuf;
}

void imap_out(struct imap_session *s, const void *p, size_t len)
{
    struct imap_buf *b = imap_outbuf(s);
    imap_buf_add(b, p, len);
    if (b->len >= 64 * 1024)
        imap_flush(s);
}

void imap_printf(struct imap_session *s, const char *fmt, ...)
{
    va_list ap;
    struct imap_buf *b = imap_outbuf(s);
    va_start(ap, fmt);
    imap_buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (b->len >= 64 * 1024)
        imap_flush(s);
}

void imap_close(struct imap_session *s)
{
    imap_flush(s);
    s->state = IMAP_LOGOUT;
    conn_close(s->c);
}

static size_t out_pending(struct imap_session *s)
{
    return conn_write_queued(s->c) + (obuf_owner == s ? obuf.len : 0);
}

/* ---- replies ---- */

static void too_many_errors(struct imap_session *s)
{
    imap_printf(s, "* BYE Too many invalid commands.\r\n");
    imap_close(s);
}

void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    imap_printf(s, "%s %s %s\r\n", s->tag, status, text);
}

void imap_bad(struct imap_session *s, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    imap_printf(s, "%s BAD %s\r\n", s->tag[0] ? s->tag : "*", text);
    if (++s->bad_count >= conn_conf(s->c)->max_bad_commands)
        too_many_errors(s);
}

#define CAPS_COMMON                                                                                \
    "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN "         \
    "SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED XLIST"

const char *imap_capabilities(struct imap_session *s)
{
    if (s->state != IMAP_NOTAUTH)
        return CAPS_COMMON;
    if (conn_is_tls(s->c))
        return CAPS_COMMON " AUTH=PLAIN AUTH=LOGIN";
    if (conn_plaintext_auth_ok(s->c))
        return CAPS_COMMON " STARTTLS AUTH=PLAIN AUTH=LOGIN";
    return CAPS_COMMON " STARTTLS LOGINDISABLED";
}

/* ---- ending a command ---- */

static void finish_tail(struct imap_session *s)
{
    if (s->tagline) {
        imap_out(s, s->tagline, strlen(s->tagline));
        free(s->tagline);
        s->tagline = NULL;
    }
    s->busy = false;
    s->uid_cmd = false;
    imap_resume(s);
}

void imap_finish(struct imap_session *s, const char *status, const char *fmt, ...)
{
    char text[1200];
    va_list ap;
    bool async = s->busy;
    int n;

    n = snprintf(text, sizeof(text), "%s %s ", s->tag, status);
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    va_end(ap);

    if (s->state == IMAP_SELECTED && s->sel && imap_updates_need_job(s)) {
        size_t l = strlen(text);
        free(s->tagline);
        s->tagline = malloc(l + 3);
        if (s->tagline) {
            memcpy(s->tagline, text, l);
            memcpy(s->tagline + l, "\r\n", 3);
            s->busy = true;
            conn_pause(s->c);
            imap_updates(s, s->expunge_ok, finish_tail);
            return;
        }
    }
    if (s->state == IMAP_SELECTED && s->sel)
        imap_updates(s, s->expunge_ok, NULL);
    imap_printf(s, "%s\r\n", text);
    if (async) {
        s->busy = false;
        s->uid_cmd = false;
        imap_resume(s);
    }
}

void imap_finish_storage_err(struct imap_session *s, int err, const char *what)
{
    switch (err) {
    case STORAGE_E_NOMBOX:
        imap_finish(s, "NO", "[NONEXISTENT] %s: no such mailbox.", what);
        break;
    case STORAGE_E_EXISTS:
        imap_finish(s, "NO", "[ALREADYEXISTS] %s: mailbox already exists.", what);
        break;
    case STORAGE_E_QUOTA:
        imap_finish(s, "NO", "[OVERQUOTA] %s: quota exceeded.", what);
        break;
    case STORAGE_E_BADNAME:
        imap_finish(s, "NO", "[CANNOT] %s: invalid mailbox name.", what);
        break;
    case STORAGE_E_NOPERM:
    case STORAGE_E_CHILDREN:
        imap_finish(s, "NO", "[CANNOT] %s: %s.", what, storage_strerror(err));
        break;
    case STORAGE_E_TOOBIG:
        imap_finish(s, "NO", "[TOOBIG] %s: message too large.", what);
        break;
    case STORAGE_E_NOMSG:
        imap_finish(s, "NO", "[EXPUNGEISSUED] %s: message expunged.", what);
        break;
    case STORAGE_E_INVAL:
        imap_finish(s, "NO", "%s: invalid argument.", what);
        break;
    case STORAGE_E_TEMP:
    case STORAGE_E_NOMEM:
        imap_finish(s, "NO", "[UNAVAILABLE] %s: temporary failure; try again later.", what);
        break;
    default:
        imap_finish(s, "NO", "[SERVERBUG] %s: internal error.", what);
        break;
    }
}

struct storage_user *imap_storage(struct imap_session *s)
{
    if (!s->mu) {
        imap_finish(s, "NO", "[UNAVAILABLE] Mail store unavailable.");
        return NULL;
    }
    return mailuser_storage(s->mu);
}

/* ---- jobs ---- */

static void job_work(void *data)
{
    struct imap_job *j = data;
    j->work(j);
}

static void job_done(void *data)
{
    struct imap_job *j = data;
    struct imap_session *s = j->s;
    if (!s)
        return;
    s->job = NULL;
    j->done(s, j);
    imap_flush(s);
}

static void job_free(void *data)
{
    struct imap_job *j = data;
    if (j->release)
        mailuser_release(j->release);
    if (j->free_fn)
        j->free_fn(j);
    else
        free(j);
}

int imap_job_start(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                   imap_job_done *done)
{
    j->s = s;
    j->u = s->mu ? mailuser_storage(s->mu) : NULL;
    j->work = work;
    j->done = done;
    j->release = NULL;
    if (!j->u || !conn_loop(s->c)) {
        job_free(j);
        return -1;
    }
    j->pj = proto_job_start(conn_loop(s->c), job_work, job_done, job_free, j);
    if (!j->pj) {
        job_free(j);
        return -1;
    }
    s->job = j;
    conn_pause(s->c);
    return 0;
}

/* ---- per user+address session count ---- */

struct userip {
    int64_t user;
    uint8_t addr[16];
    unsigned n;
    struct userip *next;
};
#define USERIP_BUCKETS 1024
static struct userip *userip_tab[USERIP_BUCKETS];

static void peer_key(struct imap_session *s, uint8_t key[16])
{
    const struct sockaddr *sa = conn_info(s->c)->peer;
    memset(key, 0, 16);
    if (!sa)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(key + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(key, &in6->sin6_addr, 16);
    }
}

static struct userip **userip_find(int64_t user, const uint8_t key[16])
{
    uint32_t h = (uint32_t)user * 2654435761u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    struct userip **pp = &userip_tab[h % USERIP_BUCKETS];
    while (*pp && ((*pp)->user != user || memcmp((*pp)->addr, key, 16)))
        pp = &(*pp)->next;
    return pp;
}

bool imap_userip_add(struct imap_session *s)
{
    uint8_t key[16];
    peer_key(s, key);
    struct userip **pp = userip_find(s->account_id, key);
    if (!*pp) {
        struct userip *e = calloc(1, sizeof(*e));
        if (!e)
            return false;
        e->user = s->account_id;
        memcpy(e->addr, key, 16);
        *pp = e;
    }
    if ((*pp)->n >= conn_conf(s->c)->imap_max_connections_per_user_ip) {
        if ((*pp)->n == 0) {
            struct userip *e = *pp;
            *pp = e->next;
            free(e);
        }
        return false;
    }
    (*pp)->n++;
    s->counted_userip = true;
    return true;
}

void imap_userip_del(struct imap_session *s)
{
    uint8_t key[16];
    if (!s->counted_userip)
        return;
    s->counted_userip = false;
    peer_key(s, key);
    struct userip **pp = userip_find(s->account_id, key);
    if (*pp && --(*pp)->n == 0) {
        struct userip *e = *pp;
        *pp = e->next;
        free(e);
    }
}

/* ---- command rate limit: throttled sessions wait for the next second ---- */

static uv_timer_t thr_timer;
static bool thr_timer_init;
static struct imap_session *thr_list;

static void thr_unlink(struct imap_session *s)
{
    if (!s->throttled)
        return;
    if (s->thr_prev)
        s->thr_prev->thr_next = s->thr_next;
    else
        thr_list = s->thr_next;
    if (s->thr_next)
        s->thr_next->thr_prev = s->thr_prev;
    s->thr_next = s->thr_prev = NULL;
    s->throttled = false;
}

static void on_thr_timer(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop) / 1000;
    struct imap_session *s = thr_list, *next;
    for (; s; s = next) {
        next = s->thr_next;
        if (s->rate_sec != now) {
            thr_unlink(s);
            s->rate_sec = now;
            s->rate_n = 0;
            imap_resume(s);
        }
    }
    if (!thr_list)
        uv_timer_stop(t);
}

/* true when the session may run one more command now */
static bool rate_ok(struct imap_session *s)
{
    uv_loop_t *loop = conn_loop(s->c);
    if (!loop)
        return true;
    uint64_t now = uv_now(loop) / 1000;
    if (s->rate_sec != now) {
        s->rate_sec = now;
        s->rate_n = 0;
    }
    if (s->rate_n < conn_conf(s->c)->imap_max_commands_per_second) {
        s->rate_n++;
        return true;
    }
    if (!thr_timer_init) {
        uv_timer_init(loop, &thr_timer);
        uv_unref((uv_handle_t *)&thr_timer);
        thr_timer_init = true;
    }
    s->throttled = true;
    s->thr_prev = NULL;
    s->thr_next = thr_list;
    if (thr_list)
        thr_list->thr_prev = s;
    thr_list = s;
    if (!uv_is_active((uv_handle_t *)&thr_timer))
        uv_timer_start(&thr_timer, on_thr_timer, 100, 100);
    conn_pause(s->c);
    return false;
}

/* ---- command assembly ---- */

static int cmd_append(struct imap_session *s, const char *p, size_t len)
{
    const struct conf *cf = conn_conf(s->c);
    size_t limit = cf->max_line_length + (size_t)cf->max_literal_size;

    if (s->cmd_len + len > limit)
        return -1;
    if (s->cmd_len + len > s->cmd_cap) {
        size_t ncap = s->cmd_cap ? s->cmd_cap : 256;
        while (ncap < s->cmd_len + len)
            ncap *= 2;
        char *n = realloc(s->cmd, ncap);
        if (!n)
            return -1;
        s->cmd = n;
        s->cmd_cap = ncap;
    }
    memcpy(s->cmd + s->cmd_len, p, len);
    s->cmd_len += len;
    return 0;
}

static void cmd_reset(struct imap_session *s)
{
    if (s->cmd)
        explicit_bzero(s->cmd, s->cmd_len); /* may hold a LOGIN password */
    free(s->cmd);
    s->cmd = NULL;
    s->cmd_len = s->cmd_cap = 0;
    s->literal_left = 0;
}

/* A line ending in {N} or {N+} announces a literal. Returns 1 with *n and
 * *sync, 0 when the line has none, -1 when the number is malformed. */
static int literal_suffix(const char *line, size_t len, uint64_t *n, bool *sync)
{
    size_t i;
    uint64_t v = 0;

    if (len < 3 || line[len - 1] != '}')
        return 0;
    i = len - 2;
    *sync = true;
    if (line[i] == '+') {
        *sync = false;
        if (i == 0)
            return 0;
        i--;
    }
    size_t digits_end = i + 1;
    while (i > 0 && isdigit((unsigned char)line[i]))
        i--;
    if (line[i] != '{' || i + 1 == digits_end)
        return 0;
    if (digits_end - (i + 1) > 19)
        return -1;
    for (size_t k = i + 1; k < digits_end; k++)
        v = v * 10 + (uint64_t)(line[k] - '0');
    *n = v;
    return 1;
}

/* Copies the tag of the command in cmd into s->tag ("*" when unusable). */
static bool take_tag(struct imap_session *s, const char *p, size_t len, size_t *taglen)
{
    size_t i = 0;
    while (i < len && p[i] != ' ' && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f &&
           !strchr("(){%*\"\\+", p[i]))
        i++;
    if (i == 0 || i >= IMAP_TAG_MAX || (i < len && p[i] != ' ')) {
        snprintf(s->tag, sizeof(s->tag), "*");
        return false;
    }
    memcpy(s->tag, p, i);
    s->tag[i] = '\0';
    *taglen = i;
    return true;
}

static const struct imap_command *find_command(const char *p, size_t n)
{
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
        const struct imap_command *c = &commands[k];
        if (strlen(c->name) == n && !strncasecmp(c->name, p, n))
            return c;
    }
    return NULL;
}

static void execute(struct imap_session *s)
{
    const char *p = s->cmd;
    size_t len = s->cmd_len, taglen, i;
    struct imap_args args;

    if (!take_tag(s, p, len, &taglen)) {
        imap_bad(s, "Invalid tag.");
        return;
    }
    if (taglen >= len) {
        imap_bad(s, "Missing command.");
        return;
    }
    p += taglen + 1;
    len -= taglen + 1;
    for (i = 0; i < len && isalpha((unsigned char)p[i]); i++)
        ;
    const struct imap_command *c = find_command(p, i);
    if (!c) {
        imap_bad(s, "Unknown command.");
        return;
    }
    if (!(c->states & s->state)) {
        imap_bad(s, "%s is not valid in this state.", c->name);
        return;
    }
    imap_args_init(&args, p + i, len - i, conn_conf(s->c)->imap_max_nesting);
    s->uid_cmd = false;
    s->expunge_ok = !(c->flags & CMD_NO_EXPUNGE);
    c->fn(s, &args);
}

void imap_cmd_uid(struct imap_session *s, struct imap_args *a)
{
    const char *name;
    size_t n;
    static const char *const subs[] = {"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"};

    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &name, &n) != IMAP_ARG_OK) {
        imap_bad(s, "Usage: UID FETCH|STORE|SEARCH|COPY|MOVE|EXPUNGE ...");
        return;
    }
    for (size_t k = 0; k < sizeof(subs) / sizeof(subs[0]); k++) {
        if (strlen(subs[k]) != n || strncasecmp(subs[k], name, n))
            continue;
        const struct imap_command *c = find_command(subs[k], n);
        s->uid_cmd = true;
        s->expunge_ok = true; /* RFC 3501 7.4.1: allowed during UID commands */
        c->fn(s, a);
        return;
    }
    imap_bad(s, "Unknown UID command.");
}

static void line_too_long(struct imap_session *s)
{
    imap_printf(s, "* BYE [TOOBIG] Command line too long.\r\n");
    log_info("conn=%llu imap: line over max_line_length, disconnecting",
             (unsigned long long)conn_info(s->c)->id);
    imap_close(s);
}

static void process_loop(struct imap_session *s);

static void process(struct imap_session *s)
{
    if (s->in_process)
        return; /* the loop below goes on by itself */
    s->in_process = true;
    process_loop(s);
    s->in_process = false;
}

static void process_loop(struct imap_session *s)
{
    const struct conf *cf = conn_conf(s->c);

    while (!s->busy && !s->job && !s->throttled && !conn_closing(s->c) &&
           s->state != IMAP_LOGOUT && out_pending(s) < CONN_WRITE_HIGH) {
        const char *line;
        size_t len;

        if (s->app) {
            if (!imap_append_input(s))
                break;
            continue;
        }
        if (s->literal_left) {
            const char *p;
            size_t n = linebuf_take(&s->in, s->literal_left, &p);
            if (n == 0)
                break;
            if (cmd_append(s, p, n) < 0) {
                cmd_reset(s);
                line_too_long(s);
                return;
            }
            s->literal_left -= n;
            continue;
        }

        /* a new command: within the rate limit? (only once a whole line
         * is there, so that partial lines are not counted) */
        if (s->cmd_len == 0 && !s->sasl && !s->idling && s->in.len &&
            memchr(s->in.p + s->in.off, '\n', s->in.len) && !rate_ok(s))
            break;
        /* the tag of a new command, kept in case the line is too long */
        char tag[IMAP_TAG_MAX];
        size_t taglen = 0;
        if (s->cmd_len == 0 && !s->sasl && !s->idling && s->in.len) {
            const char *p = s->in.p + s->in.off;
            size_t n = s->in.len < IMAP_TAG_MAX ? s->in.len : IMAP_TAG_MAX;
            while (taglen < n && p[taglen] != ' ' && (unsigned char)p[taglen] > 0x20 &&
                   (unsigned char)p[taglen] < 0x7f && !strchr("(){%*\"\\+", p[taglen]))
                taglen++;
            if (taglen == n || p[taglen] != ' ')
                taglen = 0;
            memcpy(tag, p, taglen);
            tag[taglen] = '\0';
        }
        int r = linebuf_line(&s->in, &line, &len);
        if (s->skip_left && !s->in.skipping) {
            /* the end of a refused over-long line went by: its answer
             * comes before anything after it */
            s->skip_left = 0;
            imap_bad(s, "[TOOBIG] Command line too long (at most %zu bytes).",
                     cf->max_line_length);
            if (conn_closing(s->c))
                return;
        }
        if (r == LINEBUF_MORE)
            break;
        if (r == LINEBUF_TOOLONG) {
            if (s->cmd_len == 0 && taglen) {
                /* a plain over-long command line: refused, the session
                 * goes on after its end (the reader skips it) */
                memcpy(s->tag, tag, taglen + 1);
                if (s->in.skipping) {
                    /* answered once its end is seen (see the loop top); the
                     * rest of it is skipped, but not forever */
                    s->skip_left = 4 * cf->max_line_length;
                    continue;
                }
                imap_bad(s, "[TOOBIG] Command line too long (at most %zu bytes).",
                         cf->max_line_length);
                continue;
            }
            cmd_reset(s);
            line_too_long(s);
            return;
        }
        if (s->sasl) {
            imap_auth_sasl_line(s, line, len);
            continue;
        }
        if (s->idling) {
            imap_idle_line(s, line, len);
            continue;
        }
        if (s->cmd_len == 0 && len == 0)
            continue; /* empty lines between commands are tolerated */
        uint64_t n = 0;
        bool sync = false;
        int lit = literal_suffix(line, len, &n, &sync);
        if (cmd_append(s, line, len) < 0) {
            cmd_reset(s);
            line_too_long(s);
            return;
        }
        if (lit == 0) {
            execute(s);
            cmd_reset(s);
            continue;
        }
        if (lit > 0 && (s->state & IMAP_AUTHED) && imap_append_begin(s, n, sync))
            continue; /* the APPEND streams its message from here */
        if (lit < 0 || n > cf->max_literal_size ||
            s->cmd_len + n > cf->max_line_length + cf->max_literal_size) {
            size_t tl;
            take_tag(s, s->cmd, s->cmd_len, &tl);
            cmd_reset(s);
            if (!sync) {
                /* the client sends the bytes anyway: no way to resynchronize */
                imap_printf(s, "* BYE [TOOBIG] Literal too large.\r\n");
                imap_close(s);
                return;
            }
            imap_printf(s, "%s NO [TOOBIG] Literal too large (at most %llu bytes).\r\n", s->tag,
                        (unsigned long long)cf->max_literal_size);
            continue;
        }
        if (cmd_append(s, "\r\n", 2) < 0) {
            cmd_reset(s);
            line_too_long(s);
            return;
        }
        s->literal_left = n;
        if (sync)
            imap_printf(s, "+ Ready for literal data\r\n");
    }
}

void imap_resume(struct imap_session *s)
{
    if (s->state == IMAP_LOGOUT || conn_closing(s->c)) {
        imap_flush(s);
        return;
    }
    if (s->fetch && !s->job) {
        if (out_pending(s) < CONN_WRITE_HIGH)
            imap_fetch_continue(s);
        imap_flush(s);
        if (s->fetch || s->job)
            return;
    }
    process(s);
    imap_flush(s);
    if (s->idling && !s->job && s->sel)
        imap_idle_kick(s);
    if (!s->busy && !s->job && !s->throttled && !conn_closing(s->c) &&
        conn_write_queued(s->c) < CONN_WRITE_HIGH)
        conn_resume(s->c);
}

/* ---- connection handler ---- */

static int on_open(struct conn *c)
{
    struct imap_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->c = c;
    s->state = IMAP_NOTAUTH;
    linebuf_init(&s->in, conn_conf(c)->max_line_length);
    conn_set_proto(c, s);
    imap_printf(s, "* OK [CAPABILITY %s] coffre ready.\r\n", imap_capabilities(s));
    imap_flush(s);
    return 0;
}

static void on_input(struct conn *c, const char *buf, size_t len)
{
    struct imap_session *s = conn_proto(c);

    if (s->state == IMAP_LOGOUT)
        return;
    if (s->skip_left && s->in.skipping) {
        /* still inside a refused over-long line */
        if (len >= s->skip_left && !memchr(buf, '\n', s->skip_left)) {
            imap_printf(s, "* BYE [TOOBIG] Command line too long.\r\n");
            imap_close(s);
            return;
        } else {
            s->skip_left -= len;
        }
    }
    if (linebuf_append(&s->in, buf, len) < 0) {
        imap_close(s);
        return;
    }
    if (s->busy || s->job || s->throttled) {
        conn_pause(c); /* resumed when the pending command completes */
        return;
    }
    process(s);
    imap_flush(s);
    if (s->busy || s->job || s->throttled || conn_write_queued(c) >= CONN_WRITE_HIGH)
        conn_pause(c);
}

static void on_drain(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (s->stalled) {
        s->stalled = false;
        conn_set_timeout(c, s->state == IMAP_NOTAUTH ? conn_conf(c)->login_timeout_ms
                                                     : conn_conf(c)->imap_idle_timeout_ms);
    }
    if (s->state != IMAP_LOGOUT && !s->job && (!s->busy || s->fetch))
        imap_resume(s);
}

static void on_timeout(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (s->stalled || conn_write_queued(c) >= CONN_WRITE_HIGH) {
        log_info("conn=%llu imap: client does not read its responses; disconnecting",
                 (unsigned long long)conn_info(c)->id);
        s->state = IMAP_LOGOUT;
        conn_abort(c);
        return;
    }
    imap_printf(s, "* BYE Autologout; idle for too long.\r\n");
    imap_close(s);
}

static void on_shutdown(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    imap_printf(s, "* BYE Server shutting down.\r\n");
    imap_close(s);
}

static void on_close(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (!s)
        return;
    if (obuf_owner == s) {
        imap_buf_reset(&obuf);
        obuf_owner = NULL;
    }
    thr_unlink(s);
    imap_auth_cancel(s);
    imap_append_abort(s);
    imap_fetch_abort(s);
    imap_sel_free(s);
    if (s->mu_req)
        mailuser_open_cancel(s->mu_req);
    mailuser_unlisten(&s->listener);
    if (s->job) {
        /* the job still runs: it keeps the store open until it is done */
        proto_job_cancel(s->job->pj);
        s->job->s = NULL;
        s->job->release = s->mu;
        s->mu = NULL;
        s->job = NULL;
    }
    if (s->mu)
        mailuser_release(s->mu);
    imap_userip_del(s);
    free(s->tagline);
    linebuf_free(&s->in);
    cmd_reset(s);
    free(s);
    conn_set_proto(c, NULL);
}

void imap_stall(struct imap_session *s)
{
    if (!s->stalled) {
        s->stalled = true;
        conn_set_timeout(s->c, conn_conf(s->c)->imap_output_timeout_ms);
    }
}

const struct conn_handler imap_handler = {
    .name = "imap",
    .on_open = on_open,
    .on_input = on_input,
    .on_tls_ready = NULL,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .busy_reply = "* BYE Too many connections; try again later.\r\n",
};
