/* IMAP session core: the greeting, assembling commands from lines and
 * literals under the configured limits, dispatch through the command table
 * (handed over by imap_commands.c), ending a command (pending mailbox
 * changes, then the tagged reply), the command rate limit, output
 * back-pressure, the per user+address session count, and the session's
 * end (LOGOUT, timeouts, shutdown, too many errors). Output, replies and
 * pool jobs are in imap_io.c. It names no command: one that takes several
 * steps runs through its continuation (struct imap_cont).
 *
 * The session is two enums. s->input, what it reads next:
 *
 *   COMMAND --line ends in {N}----------------> LITERAL --N bytes read--> COMMAND
 *   COMMAND --over-long line, end not yet seen: * BAD-> SKIP --end seen: tagged BAD--> COMMAND
 *                                                  \--line past 4x max_line_length: BYE
 *   COMMAND --imap_cont_start() (a command, or a row's literal hook)--> CONT
 *   CONT    --imap_cont_end()-----------------> COMMAND
 *
 *   Before login a line (or a command with its literals) may have
 *   max_line_length_prelogin bytes, and one over it gets BYE at once.
 *
 *   In CONT the command's line() gets the lines (SASL responses, IDLE's
 *   DONE), or its bytes() reads the input itself (APPEND's messages), or,
 *   with neither, nothing is read until it ends (FETCH).
 *
 * s->wait, what it waits on before reading or running anything more:
 *
 *   NONE --imap_job_start(), a login-----> JOB    --done callback--> NONE
 *   NONE --over the commands per second--> RATE   --next second----> NONE
 *   NONE --imap_stall()------------------> OUTPUT --on_drain-------> NONE
 *
 * run() reads while the wait is NONE, the output is below CONN_WRITE_HIGH
 * and the session is not closing; imap_resume() runs it again and then
 * the continuation's resume() (FETCH's next step, IDLE's announcements).
 * A tagged reply that must wait for updates announced by a pool job is
 * held in s->tagline (wait JOB) and written when the job is done. A
 * session closed while a job runs: the continuation's abort() frees the
 * command, the job is detached and frees what it holds when it ends. */
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

static bool reading(struct imap_session *s)
{
    return s->wait == IMAP_WAIT_NONE &&
           (s->input != IMAP_IN_CONT || s->cont->line || s->cont->bytes);
}

/* ---- ending a command ---- */

static void finish_tail(struct imap_session *s)
{
    if (s->tagline) {
        imap_out(s, s->tagline, strlen(s->tagline));
        free(s->tagline);
        s->tagline = NULL;
    }
    imap_resume(s);
}

void imap_finish(struct imap_session *s, const char *status, const char *fmt, ...)
{
    struct buf line = {0}; /* whole, however long (a MULTIAPPEND's APPENDUID) */
    va_list ap;

    /* max_bad_commands counts invalid commands in a row: a session that
     * lives for days is not closed for its occasional BAD */
    if (strcmp(status, "BAD") != 0)
        s->bad_count = 0;
    buf_printf(&line, "%s %s ", s->tag, status);
    imap_metrics_done(s, status);
    va_start(ap, fmt);
    buf_vprintf(&line, fmt, ap);
    va_end(ap);
    buf_add(&line, "\r\n", 2);
    if (line.oom) {
        buf_free(&line);
        buf_printf(&line, "%s NO [UNAVAILABLE] Out of memory.\r\n", s->tag);
    }

    if (s->state == IMAP_SELECTED && s->sel && imap_updates_need_job(s) && !line.oom) {
        free(s->tagline);
        s->tagline = buf_take(&line);
        imap_updates(s, s->expunge_ok, finish_tail);
        return;
    }
    if (s->state == IMAP_SELECTED && s->sel)
        imap_updates(s, s->expunge_ok, NULL);
    if (!line.oom)
        imap_out(s, line.p, line.len);
    buf_free(&line);
    imap_resume(s);
}

/* The answer to each storage error: response code and text. */
static const struct {
    int err;
    const char *code, *text; /* text NULL: storage_strerror() */
} storage_errs[] = {
    {STORAGE_E_NOMBOX, "[NONEXISTENT] ", "no such mailbox"},
    {STORAGE_E_EXISTS, "[ALREADYEXISTS] ", "mailbox already exists"},
    {STORAGE_E_QUOTA, "[OVERQUOTA] ", "quota exceeded"},
    {STORAGE_E_BADNAME, "[CANNOT] ", "invalid mailbox name"},
    {STORAGE_E_NOPERM, "[CANNOT] ", NULL},
    {STORAGE_E_CHILDREN, "[CANNOT] ", NULL},
    {STORAGE_E_TOOBIG, "[TOOBIG] ", "message too large"},
    {STORAGE_E_LIMIT, "[LIMIT] ", NULL},
    {STORAGE_E_NOMSG, "[EXPUNGEISSUED] ", "message expunged"},
    {STORAGE_E_INVAL, "", "invalid argument"},
    {STORAGE_E_TEMP, "[UNAVAILABLE] ", "temporary failure; try again later"},
    {STORAGE_E_NOMEM, "[UNAVAILABLE] ", "temporary failure; try again later"},
};

void imap_finish_storage_err(struct imap_session *s, int err, const char *what)
{
    const char *code = "[SERVERBUG] ", *text = "internal error";
    for (size_t i = 0; i < sizeof(storage_errs) / sizeof(storage_errs[0]); i++) {
        if (storage_errs[i].err == err) {
            code = storage_errs[i].code;
            text = storage_errs[i].text ? storage_errs[i].text : storage_strerror(err);
            break;
        }
    }
    imap_finish(s, "NO", "%s%s: %s.", code, what, text);
}

void imap_no_name(struct imap_session *s, const char *what, bool exists)
{
    if (s->utf8)
        imap_finish(s, "NO", "%s %s: invalid mailbox name (not UTF-8, or a control character).",
                    exists ? "[NONEXISTENT]" : "[CANNOT]", what);
    else if (exists)
        imap_finish(s, "NO", "[NONEXISTENT] %s: no such mailbox (the name is not modified UTF-7).",
                    what);
    else
        imap_finish(s, "NO", "[CANNOT] %s: invalid mailbox name (not modified UTF-7).", what);
}

void imap_cmd_job(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                  imap_job_done *done)
{
    if (!imap_storage(s)) {
        if (j->free_fn)
            j->free_fn(j);
        else
            free(j);
        return;
    }
    if (imap_job_start(s, j, work, done) < 0)
        imap_finish(s, "NO", "[UNAVAILABLE] Temporary failure; try again later.");
}

struct storage_user *imap_storage(struct imap_session *s)
{
    if (!s->mu) {
        imap_finish(s, "NO", "[UNAVAILABLE] Mail store unavailable.");
        return NULL;
    }
    return mailuser_storage(s->mu);
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

/* The client group of the peer (conf_client_group): an IPv6 /64 is one. */
static void peer_key(struct imap_session *s, uint8_t key[16])
{
    const struct conf *cf = conn_conf(s->c);
    conf_client_group(conn_info(s->c)->peer, cf->client_prefix_v4, cf->client_prefix_v6, key);
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
    if (s->wait != IMAP_WAIT_RATE)
        return;
    if (s->thr_prev)
        s->thr_prev->thr_next = s->thr_next;
    else
        thr_list = s->thr_next;
    if (s->thr_next)
        s->thr_next->thr_prev = s->thr_prev;
    s->thr_next = s->thr_prev = NULL;
    s->wait = IMAP_WAIT_NONE;
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
    s->thr_prev = NULL;
    s->thr_next = thr_list;
    if (thr_list)
        thr_list->thr_prev = s;
    thr_list = s;
    if (!uv_is_active((uv_handle_t *)&thr_timer))
        uv_timer_start(&thr_timer, on_thr_timer, 100, 100);
    imap_wait(s, IMAP_WAIT_RATE);
    return false;
}

/* ---- command assembly ---- */

/* The longest command (its lines and literals) the session takes now. */
static size_t cmd_limit(struct imap_session *s)
{
    const struct conf *cf = conn_conf(s->c);
    if (s->state == IMAP_NOTAUTH)
        return conf_prelogin_line(cf);
    return cf->max_line_length + (size_t)cf->max_literal_size;
}

/* The line limits for the session's state: before login a LOGIN or an
 * AUTHENTICATE line is short; after it, an over-long line is answered and
 * skipped to its end, but not past 4 x max_line_length. */
static void set_line_limits(struct imap_session *s)
{
    const struct conf *cf = conn_conf(s->c);
    if (s->state == IMAP_NOTAUTH)
        linebuf_limits(&s->in, conf_prelogin_line(cf), 0);
    else
        linebuf_limits(&s->in, cf->max_line_length, 4 * (uint64_t)cf->max_line_length);
}

static int cmd_add(struct imap_session *s, const char *p, size_t len)
{
    if (s->cmd.len + len > cmd_limit(s))
        return -1;
    buf_add(&s->cmd, p, len);
    return s->cmd.oom ? -1 : 0;
}

static void cmd_reset(struct imap_session *s)
{
    if (s->cmd.p)
        explicit_bzero(s->cmd.p, s->cmd.len); /* may hold a LOGIN password */
    buf_free(&s->cmd);
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

/* Whether the literal announced at the end of line is a literal8 "~{n}". */
static bool literal8(const char *line, size_t len)
{
    const char *open = len ? memrchr(line, '{', len) : NULL;
    return open && open > line && open[-1] == '~';
}

/* Length of the run of tag characters at p (RFC 3501 "tag"). */
static size_t tag_run(const char *p, size_t len)
{
    size_t i = 0;
    while (i < len && p[i] != ' ' && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f &&
           !strchr("(){%*\"\\+", p[i]))
        i++;
    return i;
}

/* Copies the tag of the command in cmd into s->tag ("*" when unusable). */
static bool take_tag(struct imap_session *s, const char *p, size_t len, size_t *taglen)
{
    size_t i = tag_run(p, len);
    if (i == 0 || i >= IMAP_TAG_MAX || (i < len && p[i] != ' ')) {
        snprintf(s->tag, sizeof(s->tag), "*");
        return false;
    }
    memcpy(s->tag, p, i);
    s->tag[i] = '\0';
    *taglen = i;
    return true;
}

/* The row named name[0..n) exactly (case-insensitive), or NULL. */
static const struct imap_command *find_row(struct imap_session *s, const char *name, size_t n)
{
    for (size_t k = 0; k < s->ncommands; k++) {
        const struct imap_command *c = &s->commands[k];
        if (strlen(c->name) == n && !strncasecmp(c->name, name, n))
            return c;
    }
    return NULL;
}

/* Whether name is "word ..." (a row of a two-word family like UID FETCH). */
static bool in_family(const char *name, const char *word, size_t n)
{
    return strlen(name) > n && name[n] == ' ' && !strncasecmp(name, word, n);
}

/* The family "word": the first of its rows' names (NULL when there is
 * none); *states the states its rows are valid in. */
static const char *find_family(struct imap_session *s, const char *word, size_t n, unsigned *states)
{
    const char *family = NULL;
    *states = 0;
    for (size_t k = 0; k < s->ncommands; k++) {
        const struct imap_command *c = &s->commands[k];
        if (in_family(c->name, word, n)) {
            *states |= c->states;
            if (!family)
                family = c->name;
        }
    }
    return family;
}

/* Looks the command up in the table: the first word (letters) names it,
 * or with the next atom when rows are spelled "WORD NEXT". Answers BAD and
 * returns NULL when there is none; a is left after the name. */
static const struct imap_command *lookup(struct imap_session *s, const char *p, size_t len,
                                         struct imap_args *a)
{
    size_t i;
    unsigned states;

    for (i = 0; i < len && isalpha((unsigned char)p[i]); i++)
        ;
    imap_args_init(a, p + i, len - i, conn_conf(s->c)->imap_max_nesting);
    a->utf8 = s->utf8;
    const struct imap_command *c = find_row(s, p, i);
    if (c)
        return c;
    const char *family = find_family(s, p, i, &states); /* as the table spells it */
    if (!family) {
        imap_bad(s, "Unknown command.");
        return NULL;
    }
    if (!(states & s->state)) {
        imap_bad(s, "%.*s is not valid in this state.", (int)i, family);
        return NULL;
    }
    const char *sub;
    size_t n;
    char name[64];
    if (imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &sub, &n) != IMAP_ARG_OK) {
        /* "Usage: UID FETCH|STORE|..." from the rows of the family */
        char usage[256];
        size_t u = (size_t)snprintf(usage, sizeof(usage), "%.*s ", (int)i, family);
        const char *sep = "";
        for (size_t k = 0; k < s->ncommands; k++) {
            const char *rn = s->commands[k].name;
            if (!in_family(rn, p, i) || u >= sizeof(usage))
                continue;
            u += (size_t)snprintf(usage + u, sizeof(usage) - u, "%s%s", sep, rn + i + 1);
            sep = "|";
        }
        imap_bad(s, "Usage: %s ...", usage);
        return NULL;
    }
    if (i + 1 + n < sizeof(name)) {
        memcpy(name, family, i);
        name[i] = ' ';
        memcpy(name + i + 1, sub, n);
        c = find_row(s, name, i + 1 + n);
    }
    if (!c)
        imap_bad(s, "Unknown %.*s command.", (int)i, family);
    return c;
}

static void execute(struct imap_session *s)
{
    const char *p = s->cmd.p;
    size_t len = s->cmd.len, taglen;
    struct imap_args args;

    s->metrics_t0 = metrics_now();
    s->metrics_cmd = METRICS_CMD_UNKNOWN;
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
    const struct imap_command *c = lookup(s, p, len, &args);
    if (!c)
        return;
    s->metrics_cmd = (unsigned)(c - s->commands);
    if (!(c->states & s->state)) {
        imap_bad(s, "%s is not valid in this state.", c->name);
        return;
    }
    if ((c->flags & IMAP_CMD_NO_ARGS) && !imap_args_at_end(&args)) {
        imap_bad(s, "%s takes no arguments.", c->name);
        return;
    }
    if ((c->flags & IMAP_CMD_SEQ) && s->uidonly) {
        imap_bad(s, IMAP_UIDREQUIRED); /* RFC 9586 */
        return;
    }
    s->uid_cmd = c->flags & IMAP_CMD_UID;
    s->expunge_ok = !(c->flags & IMAP_CMD_NO_EXPUNGE);
    conn_count_command(s->c);
    /* another account's mailbox selected: its rights are read again (a
     * revoked `r` refuses what works on it) */
    if (s->sel && s->sel->mu && !imap_sel_refresh(s) && c->states == IMAP_SELECTED &&
        !(c->flags & IMAP_CMD_LEAVE)) {
        imap_finish(s, "NO", "[NOPERM] Your access to the selected mailbox was revoked; close it.");
        return;
    }
    c->fn(s, &args);
}

/* A command line announcing a literal: the command may take it over (an
 * APPEND streams its message). The tag and the name are looked for in
 * their longest lengths only: this runs for every literal of a command,
 * on everything received of it so far (scanning it all each time was
 * quadratic in a command of many literals without a space). */
static bool literal_hook(struct imap_session *s, uint64_t n, bool sync)
{
    const size_t name_max = 16; /* AUTHENTICATE is the longest, 12 */
    const char *p = s->cmd.p;
    size_t len = s->cmd.len, i = 0, k;

    while (i < len && i < IMAP_TAG_MAX && p[i] != ' ')
        i++;
    if (i == 0 || i >= IMAP_TAG_MAX || i == len)
        return false;
    for (k = i + 1; k < len && k - i - 1 <= name_max && isalpha((unsigned char)p[k]); k++)
        ;
    if (k - i - 1 > name_max)
        return false; /* longer than any command name */
    const struct imap_command *c = find_row(s, p + i + 1, k - i - 1);
    if (!c && k < len && p[k] == ' ') {
        /* a row of a two-word family ("UID REPLACE") */
        size_t k2;
        for (k2 = k + 1; k2 < len && k2 - i - 1 <= 2 * name_max && isalpha((unsigned char)p[k2]);
             k2++)
            ;
        if (k2 - i - 1 <= 2 * name_max)
            c = find_row(s, p + i + 1, k2 - i - 1);
    }
    if (!c || !c->literal || !(c->states & s->state))
        return false;
    if ((c->flags & IMAP_CMD_SEQ) && s->uidonly) {
        if (!sync)
            return false; /* read as any command's literal, then refused */
        /* REPLACE after ENABLE UIDONLY: refused before its message is
         * asked for */
        size_t tl;
        take_tag(s, s->cmd.p, s->cmd.len, &tl);
        cmd_reset(s);
        imap_bad(s, IMAP_UIDREQUIRED);
        return true;
    }
    s->uid_cmd = c->flags & IMAP_CMD_UID;
    s->expunge_ok = !(c->flags & IMAP_CMD_NO_EXPUNGE);
    s->metrics_t0 = metrics_now();
    s->metrics_cmd = (unsigned)(c - s->commands);
    if (!c->literal(s, n, sync))
        return false;
    cmd_reset(s);
    return true;
}

static void line_too_long(struct imap_session *s)
{
    bool pre = s->state == IMAP_NOTAUTH;
    imap_printf(s, "* BYE [TOOBIG] Command line too long%s.\r\n", pre ? " before login" : "");
    log_info("conn=%llu imap: line over %s, disconnecting", (unsigned long long)conn_info(s->c)->id,
             pre ? "max_line_length_prelogin" : "max_line_length");
    imap_close(s);
}

/* One step of dropping a refused command as its client goes on sending
 * it: its literal's bytes, then its lines, each maybe announcing another
 * literal. A synchronizing one ends it: the client waits for a "+" that
 * does not come, having had its answer. */
static bool discard_command(struct imap_session *s)
{
    const struct conf *cf = conn_conf(s->c);
    const char *line;
    size_t len;

    if (s->literal_left) {
        const char *p;
        size_t n = linebuf_take(&s->in, s->literal_left, &p);
        if (n == 0)
            return false;
        s->literal_left -= n;
        return true;
    }
    int r = linebuf_line(&s->in, &line, &len);
    if (r == LINEBUF_MORE)
        return false;
    if (r != LINEBUF_LINE) {
        line_too_long(s);
        return false;
    }
    uint64_t n = 0;
    bool sync = false;
    int lit = literal_suffix(line, len, &n, &sync);
    if (lit > 0 && !sync && n <= cf->max_literal_size) {
        s->literal_left = n;
        return true;
    }
    if (lit != 0 && !sync) {
        imap_printf(s, "* BYE [TOOBIG] Literal too large.\r\n");
        imap_close(s);
        return false;
    }
    s->input = IMAP_IN_COMMAND;
    return true;
}

/* One step of reading a command: a line, or the end of a literal. Returns
 * false when the loop must stop (more input needed, or the session ends). */
static bool read_command(struct imap_session *s)
{
    const struct conf *cf = conn_conf(s->c);
    const char *line;
    size_t len;

    if (s->input == IMAP_IN_DISCARD)
        return discard_command(s);
    if (s->input == IMAP_IN_LITERAL) {
        const char *p;
        size_t n = linebuf_take(&s->in, s->literal_left, &p);
        if (n == 0)
            return false;
        if (cmd_add(s, p, n) < 0) {
            cmd_reset(s);
            line_too_long(s);
            return false;
        }
        s->literal_left -= n;
        if (!s->literal_left)
            s->input = IMAP_IN_COMMAND;
        return true;
    }

    /* a new command: within the rate limit? (only once a whole line is
     * there, so that partial lines are not counted) */
    if (s->cmd.len == 0 && s->in.len && memchr(s->in.p + s->in.off, '\n', s->in.len) && !rate_ok(s))
        return false;
    /* the tag of a new command, kept in case the line is too long */
    char tag[IMAP_TAG_MAX];
    size_t taglen = 0;
    if (s->cmd.len == 0 && s->in.len) {
        const char *p = s->in.p + s->in.off;
        size_t n = s->in.len < IMAP_TAG_MAX ? s->in.len : IMAP_TAG_MAX;
        taglen = tag_run(p, n);
        if (taglen == n || p[taglen] != ' ')
            taglen = 0;
        memcpy(tag, p, taglen);
        tag[taglen] = '\0';
    }
    int r = linebuf_line(&s->in, &line, &len);
    if (r == LINEBUF_ENDLESS) {
        /* an over-long line that goes on and on: not skipped forever */
        cmd_reset(s);
        line_too_long(s);
        return false;
    }
    if (s->input == IMAP_IN_SKIP && !s->in.skipping) {
        /* the end of a refused over-long line went by: the command is
         * answered before anything after it */
        s->input = IMAP_IN_COMMAND;
        imap_bad(s, "[TOOBIG] Command line too long (at most %zu bytes).", cf->max_line_length);
        if (conn_closing(s->c))
            return false;
    }
    if (r == LINEBUF_MORE)
        return false;
    if (r == LINEBUF_TOOLONG) {
        if (s->cmd.len == 0 && taglen && s->state != IMAP_NOTAUTH) {
            /* a plain over-long command line: refused, the session goes on
             * after its end (the reader skips it) */
            memcpy(s->tag, tag, taglen + 1);
            if (s->in.skipping) {
                /* said now, not at an end that may never come; the
                 * command is answered once its end is seen (above) */
                imap_printf(s,
                            "* BAD [TOOBIG] Command line too long (at most %zu bytes); "
                            "skipping to its end.\r\n",
                            cf->max_line_length);
                s->input = IMAP_IN_SKIP;
                return true;
            }
            imap_bad(s, "[TOOBIG] Command line too long (at most %zu bytes).", cf->max_line_length);
            return true;
        }
        cmd_reset(s);
        line_too_long(s);
        return false;
    }
    if (s->cmd.len == 0 && len == 0)
        return true; /* empty lines between commands are tolerated */
    uint64_t n = 0;
    bool sync = false;
    int lit = literal_suffix(line, len, &n, &sync);
    if (cmd_add(s, line, len) < 0) {
        cmd_reset(s);
        line_too_long(s);
        return false;
    }
    if (lit == 0) {
        execute(s);
        cmd_reset(s);
        return true;
    }
    if (lit > 0 && !sync && n > IMAP_LITERAL_MINUS_MAX && !cf->imap_literal_plus &&
        n <= cf->max_literal_size) {
        /* LITERAL- alone (RFC 7888 section 5): refused with BAD [TOOBIG];
         * the client sends the bytes anyway, so the rest of the command is
         * read and dropped */
        size_t tl;
        take_tag(s, s->cmd.p, s->cmd.len, &tl);
        cmd_reset(s);
        imap_bad(s, "[TOOBIG] Non-synchronizing literal over %u bytes: send it synchronizing.",
                 IMAP_LITERAL_MINUS_MAX);
        s->literal_left = n;
        s->input = IMAP_IN_DISCARD;
        return !conn_closing(s->c);
    }
    if (lit > 0 && literal_hook(s, n, sync))
        return !conn_closing(s->c); /* the command reads the literal itself from here */
    if (lit > 0 && n <= cf->max_literal_size && literal8(line, len)) {
        /* a literal8 (RFC 3516) is for APPEND's message data alone, which
         * the hook above took: refused before its bytes are asked for */
        size_t tl;
        take_tag(s, s->cmd.p, s->cmd.len, &tl);
        cmd_reset(s);
        imap_bad(s, "A literal8 (~{n}) is only for APPEND's message data.");
        if (!sync) {
            s->literal_left = n;
            s->input = IMAP_IN_DISCARD;
        }
        return !conn_closing(s->c);
    }
    if (lit < 0 || n > cf->max_literal_size || s->cmd.len + n > cmd_limit(s)) {
        size_t tl;
        take_tag(s, s->cmd.p, s->cmd.len, &tl);
        cmd_reset(s);
        if (!sync) {
            /* the client sends the bytes anyway: no way to resynchronize */
            imap_printf(s, "* BYE [TOOBIG] Literal too large.\r\n");
            imap_close(s);
            return false;
        }
        if (s->state == IMAP_NOTAUTH)
            imap_printf(s, "%s NO [TOOBIG] Command too long before login (at most %zu bytes).\r\n",
                        s->tag, cmd_limit(s));
        else
            imap_printf(s, "%s NO [TOOBIG] Literal too large (at most %llu bytes).\r\n", s->tag,
                        (unsigned long long)cf->max_literal_size);
        return true;
    }
    if (cmd_add(s, "\r\n", 2) < 0) {
        cmd_reset(s);
        line_too_long(s);
        return false;
    }
    s->literal_left = n;
    if (n)
        s->input = IMAP_IN_LITERAL;
    if (sync)
        imap_printf(s, "+ Ready for literal data\r\n");
    return true;
}

/* One step of the running command's own input. */
static bool read_cont(struct imap_session *s)
{
    const char *line;
    size_t len;

    if (s->cont->bytes)
        return s->cont->bytes(s);
    if (!s->cont->line)
        return false; /* it reads nothing: wait for it */
    int r = linebuf_line(&s->in, &line, &len);
    if (r == LINEBUF_MORE)
        return false;
    if (r != LINEBUF_LINE) {
        cmd_reset(s);
        line_too_long(s);
        return false;
    }
    s->cont->line(s, line, len);
    return true;
}

/* An administrator ended the session (s->kick): BYE and close, at a safe
 * point only: no job on the pool (a storage write finishes and is
 * answered), no response half written, no command running but one waiting
 * for the client (IDLE, AUTHENTICATE, an APPEND's literal: its draft is
 * dropped as at any close). Returns true when the session closed. */
static bool kick_now(struct imap_session *s)
{
    if (!s->kick || s->state == IMAP_LOGOUT || conn_closing(s->c))
        return false;
    if (s->job || s->tagline || (s->wait != IMAP_WAIT_NONE && s->wait != IMAP_WAIT_RATE) ||
        (s->cont && !s->cont->line && !s->cont->bytes))
        return false;
    log_info("conn=%llu imap user=%s ended by the administrator: %s",
             (unsigned long long)conn_info(s->c)->id, s->user ? s->user : "-", s->kick);
    imap_printf(s, "* BYE %s\r\n", s->kick);
    imap_close(s);
    return true;
}

/* The reading loop: the one place input is read and commands are run. */
static void run(struct imap_session *s)
{
    if (s->in_loop)
        return; /* the loop below goes on by itself */
    if (kick_now(s))
        return;
    s->in_loop = true;
    while (s->wait == IMAP_WAIT_NONE && !conn_closing(s->c) && s->state != IMAP_LOGOUT &&
           imap_out_pending(s) < CONN_WRITE_HIGH) {
        bool more;
        if (kick_now(s))
            break;
        set_line_limits(s); /* the state may have changed (a login) */
        switch (s->input) {
        case IMAP_IN_CONT:
            more = read_cont(s);
            break;
        case IMAP_IN_COMMAND:
        case IMAP_IN_LITERAL:
        case IMAP_IN_SKIP:
        default:
            more = read_command(s);
            break;
        }
        if (!more)
            break;
    }
    s->in_loop = false;
}

void imap_resume(struct imap_session *s)
{
    if (s->in_loop)
        return;
    if (s->state == IMAP_LOGOUT || conn_closing(s->c)) {
        imap_flush(s);
        return;
    }
    run(s);
    imap_flush(s);
    if (s->state != IMAP_LOGOUT && !conn_closing(s->c)) {
        imap_cont_nudge(s);
        imap_flush(s);
    }
    if (s->notify && s->state != IMAP_LOGOUT && !conn_closing(s->c)) {
        s->notify_ops->kick(s);
        imap_flush(s);
    }
    if (reading(s) && !conn_closing(s->c) && conn_write_queued(s->c) < CONN_WRITE_HIGH)
        conn_resume(s->c);
}

/* ---- connection handler ---- */

int imap_session_open(struct conn *c, const struct imap_command *commands, size_t n)
{
    struct imap_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->c = c;
    s->state = IMAP_NOTAUTH;
    s->commands = commands;
    s->ncommands = n;
    linebuf_init(&s->in, conn_conf(c)->max_line_length);
    set_line_limits(s);
    conn_set_proto(c, s);
    imap_printf(s, "* OK [CAPABILITY %s] coffre ready.\r\n", imap_capabilities(s));
    imap_flush(s);
    return 0;
}

void imap_session_input(struct conn *c, const char *buf, size_t len)
{
    struct imap_session *s = conn_proto(c);

    if (s->state == IMAP_LOGOUT)
        return;
    if (linebuf_append(&s->in, buf, len) < 0) {
        imap_close(s);
        return;
    }
    if (!reading(s)) {
        conn_pause(c); /* resumed when the pending command completes */
        return;
    }
    run(s);
    imap_flush(s);
    if (reading(s) && (s->input == IMAP_IN_COMMAND || s->input == IMAP_IN_CONT) &&
        linebuf_pending(&s->in) == 0)
        linebuf_free(&s->in); /* an idle session holds no input buffer */
    if (!reading(s) || conn_write_queued(c) >= CONN_WRITE_HIGH)
        conn_pause(c);
}

void imap_session_drain(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (s->wait == IMAP_WAIT_OUTPUT) {
        s->wait = IMAP_WAIT_NONE;
        conn_set_timeout(c, s->state == IMAP_NOTAUTH ? conn_conf(c)->login_timeout_ms
                                                     : conn_conf(c)->imap_idle_timeout_ms);
    }
    if (s->state != IMAP_LOGOUT && s->wait == IMAP_WAIT_NONE)
        imap_resume(s);
}

void imap_session_timeout(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (s->wait == IMAP_WAIT_OUTPUT || conn_write_queued(c) >= CONN_WRITE_HIGH) {
        log_info("conn=%llu imap: client does not read its responses; disconnecting",
                 (unsigned long long)conn_info(c)->id);
        s->state = IMAP_LOGOUT;
        conn_abort(c);
        return;
    }
    imap_printf(s, "* BYE Autologout; idle for too long.\r\n");
    imap_close(s);
}

void imap_session_shutdown(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    imap_printf(s, "* BYE Server shutting down.\r\n");
    imap_close(s);
}

void imap_session_kick(struct conn *c, const char *reason)
{
    struct imap_session *s = conn_proto(c);
    if (s->state == IMAP_LOGOUT)
        return;
    s->kick = reason;
    if (!s->in_loop)
        imap_resume(s); /* at once when nothing runs; else when it ends */
}

void imap_session_describe(struct conn *c, struct conn_state *st)
{
    struct imap_session *s = conn_proto(c);
    if (s->state == IMAP_NOTAUTH)
        st->state = "login";
    else if (s->idling)
        st->state = "idle";
    else if (s->cont || s->job || s->wait != IMAP_WAIT_NONE || s->input == IMAP_IN_LITERAL)
        st->state = "command";
    else
        st->state = "ready";
    st->mailbox = s->sel ? s->sel->name : NULL;
}

void imap_idle_leave(struct imap_session *s)
{
    if (s->idle_counted && s->mu)
        mailuser_idling(s->mu, false);
    s->idle_counted = false;
    s->idling = false;
}

void imap_account_release(struct imap_session *s)
{
    imap_idle_leave(s); /* before the store's hold goes */
    if (s->shared_abort)
        s->shared_abort(s); /* another account's store being got */
    imap_sel_free(s);
    if (s->notify)
        s->notify_ops->free(s);
    if (s->mu_req)
        mailuser_open_cancel(s->mu_req);
    s->mu_req = NULL;
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
    s->mu = NULL;
    imap_userip_del(s);
    free(s->user);
    s->user = NULL;
    s->account_id = 0;
    s->quota_bytes = 0;
    /* what ENABLE turned on goes with the account (RFC 8437 3) */
    s->condstore = false;
    s->qresync = false;
    s->uidonly = false;
    s->rev2 = s->utf8 = s->utf8_accept = false;
}

void imap_session_close(struct conn *c)
{
    struct imap_session *s = conn_proto(c);
    if (!s)
        return;
    imap_out_discard(s);
    thr_unlink(s);
    if (s->cont && s->cont->abort)
        s->cont->abort(s);
    s->cont = NULL;
    imap_account_release(s);
    free(s->tagline);
    linebuf_free(&s->in);
    cmd_reset(s);
    free(s);
    conn_set_proto(c, NULL);
}
