/* APPEND with MULTIAPPEND (RFC 3502) and APPENDUID (RFC 4315). The message
 * literal is never assembled in memory: its bytes go, a chunk at a time,
 * into a storage draft on the thread pool while reading is paused. All
 * messages of one command are saved together at the end, or none: their
 * files are synced together, and they are linked and committed in one
 * index transaction (storage_save_many), so that a command of hundreds of
 * messages costs a few syncs, not three per message.
 *
 * The quota is checked as the data comes, not only at the save: a literal
 * whose announced size, with the messages of the command staged before
 * it, would pass the room left is refused before its "+" (a synchronizing
 * one) or read and dropped without a draft (LITERAL+), and each draft is
 * capped at that room while it is written (bare LFs grow it). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/imap/imap_private.h"
#include "protocol/job.h"
#include "server/base/config.h"

/* Bytes of a literal handed to the pool at a time: each is a trip from
 * the loop to a pool thread and back, with reading paused meanwhile, so a
 * 4 MB attachment takes 16 of them instead of 64. Held only while an
 * APPEND runs. */
#define APPEND_CHUNK (256u * 1024)
#define APPEND_MAX_MSGS 1000

enum ap_phase {
    AP_JOB,     /* a pool job runs (open draft, write, finish, save) */
    AP_DATA,    /* literal bytes to read */
    AP_LINE,    /* the rest of the command line after a literal */
    AP_DISCARD, /* skipping literal bytes after an error */
};

struct ap_msg {
    struct storage_draft *draft;
    unsigned flags;
    const char **kw;
    size_t nkw;
    int64_t date;
};

struct imap_append {
    struct imap_arena ar;
    enum ap_phase phase;
    char mbox[STORAGE_MBOX_NAME_MAX + 1];
    int64_t mbox_id;
    uint32_t uidvalidity;
    uint64_t left;
    uint64_t announced; /* the size of the current message's literal */
    uint64_t staged;    /* bytes of this command's messages written before */
    bool sync;
    int err;             /* first failure: answered when the command ends */
    const char *errwhat; /* or a syntax problem (BAD) */
    bool literal8;       /* the current message came as a literal8 (RFC 3516) */
    bool nul;            /* and holds NUL: NO [UNKNOWN-CTE] when the command ends */
    struct ap_msg *msgs;
    size_t nmsgs, capmsgs;
    char *chunk;
    size_t chunk_len;
};

/* A job works on a detached copy of what it needs. */
struct ap_job {
    struct imap_job j;
    int kind;  /* 0 open, 1 write, 2 end, 3 save */
    bool last; /* write: the message's last chunk, the draft is ended too */
    bool open; /* write: the draft is opened first (a LITERAL+ message) */
    const char *mbox;
    int64_t mbox_id;
    uint64_t max;
    /* open: the literal's announced size, and what the command staged
     * before it (bytes, messages), checked against the quota room */
    uint64_t announced, staged;
    size_t nstaged;
    struct storage_draft *draft;
    char *chunk;
    size_t chunk_len;
    struct ap_msg *msgs;
    size_t nmsgs;
    int err;
    struct storage_mbox mb;
    uint32_t *uids;
    /* drafts of a session that went away while this job ran */
    struct ap_msg *orphans;
    size_t norphans;
    uv_loop_t *loop;
};

static void ap_free_msgs(struct imap_append *ap)
{
    for (size_t i = 0; i < ap->nmsgs; i++)
        if (ap->msgs[i].draft)
            storage_draft_free(ap->msgs[i].draft);
    free(ap->msgs);
    ap->msgs = NULL;
    ap->nmsgs = ap->capmsgs = 0;
}

static void ap_destroy(struct imap_append *ap)
{
    if (!ap)
        return;
    ap_free_msgs(ap);
    free(ap->chunk);
    imap_arena_free(&ap->ar);
    free(ap);
}

/* Drafts are files in tmp/; dropping them means unlinks, done on the
 * pool when there is one. Takes the array. */
struct drop {
    struct ap_msg *msgs;
    size_t n;
};

static void drop_work(void *data)
{
    struct drop *d = data;
    for (size_t i = 0; i < d->n; i++)
        if (d->msgs[i].draft)
            storage_draft_free(d->msgs[i].draft);
}

static void drop_free(void *data)
{
    struct drop *d = data;
    free(d->msgs);
    free(d);
}

static void drafts_drop(uv_loop_t *loop, struct ap_msg *msgs, size_t n)
{
    struct drop *d;
    if (!msgs)
        return;
    d = malloc(sizeof(*d));
    if (d) {
        d->msgs = msgs;
        d->n = n;
        /* unlinks in tmp/, no index: not counted against the account */
        if (loop && proto_job_start(loop, PROTO_JOB_NO_ACCOUNT, drop_work, NULL, drop_free, d))
            return;
        drop_work(d);
        drop_free(d);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (msgs[i].draft)
            storage_draft_free(msgs[i].draft);
    free(msgs);
}

struct ap_job;
static void ap_job_orphan(struct imap_session *s, struct imap_append *ap);

/* The session ends while the APPEND runs. */
static void ap_abort(struct imap_session *s)
{
    struct imap_append *ap = s->cont_data;
    if (ap->phase == AP_JOB && s->job)
        ap_job_orphan(s, ap); /* the running job frees the drafts when done */
    else
        drafts_drop(conn_loop(s->c), ap->msgs, ap->nmsgs);
    ap->msgs = NULL;
    ap->nmsgs = 0;
    ap_destroy(ap);
}

/* ---- jobs ---- */

/* Opens the draft of the next message if the quota has room for it. */
static int open_draft(struct ap_job *aj, struct storage_user *u)
{
    uint64_t room, msgs;
    int err = storage_quota_room(u, &room, &msgs);
    if (err)
        return err;
    if (msgs <= aj->nstaged || room < aj->staged || aj->announced > room - aj->staged)
        return STORAGE_E_QUOTA;
    if ((err = storage_draft_new(u, aj->max, &aj->draft)) != 0)
        return err;
    if (room != UINT64_MAX)
        storage_draft_set_room(aj->draft, room - aj->staged);
    return 0;
}

static void ap_work(struct imap_job *j)
{
    struct ap_job *aj = (struct ap_job *)j;
    switch (aj->kind) {
    case 0:
        if (aj->mbox) {
            aj->err = storage_mbox_get(j->u, aj->mbox, &aj->mb);
            if (aj->err)
                return;
        }
        aj->err = open_draft(aj, j->u);
        break;
    case 1:
        if (aj->open && (aj->err = open_draft(aj, j->u)) != 0)
            break;
        aj->err = storage_draft_write(aj->draft, aj->chunk, aj->chunk_len);
        if (!aj->err && aj->last)
            aj->err = storage_draft_end(aj->draft);
        break;
    case 2:
        /* synced with the others at the save */
        aj->err = storage_draft_end(aj->draft);
        break;
    case 3: {
        /* all or nothing (RFC 3502): one transaction */
        struct storage_save_req *r = calloc(aj->nmsgs, sizeof(*r));
        if (!r) {
            aj->err = STORAGE_E_NOMEM;
        } else {
            for (size_t i = 0; i < aj->nmsgs; i++) {
                const struct ap_msg *m = &aj->msgs[i];
                r[i] = (struct storage_save_req){m->draft, m->flags, m->kw, m->nkw, m->date, 0};
            }
            aj->err = storage_save_many(j->u, aj->mbox_id, r, aj->nmsgs);
            for (size_t i = 0; i < aj->nmsgs && !aj->err; i++)
                aj->uids[i] = r[i].uid;
            free(r);
        }
        for (size_t k = 0; k < aj->nmsgs; k++) {
            storage_draft_free(aj->msgs[k].draft);
            aj->msgs[k].draft = NULL;
        }
        break;
    }
    }
}

static void ap_job_free(struct imap_job *j)
{
    struct ap_job *aj = (struct ap_job *)j;
    /* a draft opened for a session that is gone */
    if ((aj->kind == 0 || aj->open) && aj->draft && !j->s)
        storage_draft_free(aj->draft);
    if (aj->orphans)
        drafts_drop(aj->loop, aj->orphans, aj->norphans);
    free(aj->chunk);
    free(aj->uids);
    if (aj->kind == 3) {
        /* the messages moved to the job; the work freed the drafts unless
         * it never ran */
        for (size_t i = 0; i < aj->nmsgs; i++)
            if (aj->msgs[i].draft)
                storage_draft_free(aj->msgs[i].draft);
        free(aj->msgs);
    }
    free(aj);
}

static void ap_job_orphan(struct imap_session *s, struct imap_append *ap)
{
    struct ap_job *aj = (struct ap_job *)s->job;
    aj->orphans = ap->msgs;
    aj->norphans = ap->nmsgs;
    aj->loop = conn_loop(s->c);
}

static void ap_done(struct imap_session *s, struct imap_job *j);

static void ap_start(struct imap_session *s, struct ap_job *aj)
{
    struct imap_append *ap = s->cont_data;
    aj->j.free_fn = ap_job_free;
    ap->phase = AP_JOB;
    if (imap_job_start(s, &aj->j, ap_work, ap_done) < 0) {
        ap->err = STORAGE_E_TEMP;
        ap->phase = ap->left ? AP_DISCARD : AP_LINE;
    }
}

static void ap_open_draft(struct imap_session *s, bool lookup)
{
    struct imap_append *ap = s->cont_data;
    struct ap_job *aj = calloc(1, sizeof(*aj));
    if (!aj) {
        ap->err = STORAGE_E_NOMEM;
        ap->phase = ap->left ? AP_DISCARD : AP_LINE;
        if (ap->sync)
            ap->phase = AP_LINE, ap->left = 0;
        return;
    }
    aj->kind = 0;
    aj->mbox = lookup ? ap->mbox : NULL;
    aj->max = conn_conf(s->c)->max_message_size;
    aj->announced = ap->left;
    aj->staged = ap->staged;
    aj->nstaged = ap->nmsgs - 1; /* the new message is counted already */
    ap_start(s, aj);
}

static void ap_answer(struct imap_session *s);

/* All of the current message is written: its draft is ended on the pool
 * (an empty message: the last chunk's job ends the others). */
static void ap_finish_draft(struct imap_session *s, struct imap_append *ap)
{
    struct ap_job *fj = calloc(1, sizeof(*fj));
    if (!fj) {
        ap->err = STORAGE_E_NOMEM;
        ap->phase = AP_LINE;
        return;
    }
    fj->kind = 2;
    fj->draft = ap->msgs[ap->nmsgs - 1].draft;
    ap_start(s, fj);
}

static void ap_done(struct imap_session *s, struct imap_job *j)
{
    struct ap_job *aj = (struct ap_job *)j;
    struct imap_append *ap = s->cont_data;

    if (!ap) {
        if ((aj->kind == 0 || aj->open) && aj->draft)
            storage_draft_free(aj->draft); /* cannot happen: abort clears jobs too */
        return;
    }
    switch (aj->kind) {
    case 0:
        if (aj->err) {
            ap->err = aj->err;
            if (ap->sync) {
                /* the client waits for "+": answer now, it sends nothing */
                ap->left = 0;
                ap_answer(s);
                return;
            }
            ap->phase = AP_DISCARD;
            break;
        }
        if (aj->mbox) {
            ap->mbox_id = aj->mb.id;
            ap->uidvalidity = aj->mb.uidvalidity;
        }
        ap->msgs[ap->nmsgs - 1].draft = aj->draft;
        aj->draft = NULL;
        if (ap->sync)
            imap_printf(s, "+ Ready for literal data\r\n");
        ap->phase = AP_DATA;
        if (ap->left == 0)
            ap_finish_draft(s, ap); /* an empty message */
        break;
    case 1:
        ap->chunk = aj->chunk; /* the buffer comes back */
        aj->chunk = NULL;
        ap->chunk_len = 0;
        if (aj->open) {
            ap->msgs[ap->nmsgs - 1].draft = aj->draft; /* NULL if it could not open */
            aj->draft = NULL;
        }
        if (aj->err) {
            ap->err = aj->err;
            ap->phase = ap->left ? AP_DISCARD : AP_LINE;
            break;
        }
        if (ap->left) {
            ap->phase = AP_DATA;
            break;
        }
        /* the last chunk: the draft was ended with it */
        ap->staged += storage_draft_size(ap->msgs[ap->nmsgs - 1].draft);
        ap->phase = AP_LINE;
        break;
    case 2:
        if (aj->err)
            ap->err = aj->err;
        else
            ap->staged += storage_draft_size(aj->draft);
        ap->phase = AP_LINE;
        break;
    case 3: {
        struct buf code = {0};
        if (aj->err) {
            imap_cont_end(s);
            ap_destroy(ap);
            if (aj->err == STORAGE_E_NOMBOX)
                imap_finish(s, "NO", "[TRYCREATE] APPEND: no such mailbox.");
            else
                imap_finish_storage_err(s, aj->err, "APPEND");
            return;
        }
        if (s->sel && s->sel->id == ap->mbox_id)
            imap_sel_note_new(s, aj->uids, aj->nmsgs);
        buf_printf(&code, "[APPENDUID %u ", ap->uidvalidity);
        imap_buf_uids(&code, aj->uids, aj->nmsgs);
        buf_str(&code, "]");
        imap_cont_end(s);
        ap_destroy(ap);
        imap_finish(s, "OK", "%s APPEND completed.", code.oom ? "" : code.p);
        buf_free(&code);
        return;
    }
    }
    imap_resume(s);
}

/* Ends the command with the error met (literal bytes all read). */
static void ap_answer(struct imap_session *s)
{
    struct imap_append *ap = s->cont_data;
    int err = ap->err;
    const char *what = ap->errwhat;

    imap_cont_end(s);
    /* drafts written so far are dropped on the pool */
    drafts_drop(conn_loop(s->c), ap->msgs, ap->nmsgs);
    ap->msgs = NULL;
    ap->nmsgs = 0;
    bool nul = ap->nul;
    ap_destroy(ap);
    if (what)
        imap_finish(s, "BAD", "%s", what);
    else if (nul && !err)
        imap_finish(s, "NO", "[UNKNOWN-CTE] Messages with NUL bytes are not stored here.");
    else if (err == STORAGE_E_NOMBOX)
        imap_finish(s, "NO", "[TRYCREATE] APPEND: no such mailbox.");
    else
        imap_finish_storage_err(s, err, "APPEND");
}

/* ---- parsing ---- */

/* Parses [SP flag-list] [SP date-time] SP literal-header up to end (the
 * position of "{"). Returns false on a syntax error. */
static bool parse_msg_opts(struct imap_args *a, struct imap_append *ap, struct ap_msg *m)
{
    struct imap_flags fl;
    m->date = 0;
    if (imap_args_sp(a) != IMAP_ARG_OK)
        return false;
    if (imap_args_peek(a, '(')) {
        if (imap_args_flags(a, &ap->ar, false, &fl) != IMAP_ARG_OK)
            return false;
        m->flags = fl.flags;
        m->kw = fl.kw;
        m->nkw = fl.nkw;
        if (imap_args_sp(a) != IMAP_ARG_OK)
            return false;
    }
    if (imap_args_peek(a, '"')) {
        if (imap_args_datetime(a, &m->date) != IMAP_ARG_OK)
            return false;
        if (imap_args_sp(a) != IMAP_ARG_OK)
            return false;
    }
    return imap_args_at_end(a);
}

static struct ap_msg *new_msg(struct imap_append *ap)
{
    if (ap->nmsgs >= APPEND_MAX_MSGS)
        return NULL;
    if (ap->nmsgs == ap->capmsgs) {
        size_t ncap = ap->capmsgs ? ap->capmsgs * 2 : 4;
        struct ap_msg *n = realloc(ap->msgs, ncap * sizeof(*n));
        if (!n)
            return NULL;
        ap->msgs = n;
        ap->capmsgs = ncap;
    }
    struct ap_msg *m = &ap->msgs[ap->nmsgs++];
    memset(m, 0, sizeof(*m));
    return m;
}

/* the "{" of a line ending in {N} or {N+}; *literal8 when "~" comes
 * before it (RFC 3516), then the arguments end before the "~" */
static const char *literal_start(const char *p, size_t len, bool *literal8)
{
    const char *q = p + len;
    while (q > p && q[-1] != '{')
        q--;
    *literal8 = q > p + 1 && q[-2] == '~';
    return q > p ? q - 1 : NULL;
}

static bool too_big(struct imap_session *s, uint64_t n, bool sync)
{
    uint64_t max = conn_conf(s->c)->max_message_size;
    if (n <= max)
        return false;
    if (!sync) {
        imap_printf(s, "* BYE [TOOBIG] Message too large.\r\n");
        imap_close(s);
        return true;
    }
    imap_printf(s, "%s NO [TOOBIG] Message too large (at most %llu bytes).\r\n", s->tag,
                (unsigned long long)max);
    return true;
}

static bool ap_input(struct imap_session *s);

static const struct imap_cont append_cont = {
    .bytes = ap_input,
    .abort = ap_abort,
};

/* The literal hook of APPEND's row: a line announcing a literal. When it
 * is the message literal of an APPEND, the command takes over from here
 * and streams it. */
bool imap_append_literal(struct imap_session *s, uint64_t n, bool sync)
{
    const char *cmd = s->cmd.p, *lit;
    size_t len = s->cmd.len, i = 0;
    struct imap_args a;
    char tag[IMAP_TAG_MAX];

    /* tag SP "APPEND" SP mailbox ... */
    while (i < len && cmd[i] != ' ')
        i++;
    if (i == 0 || i >= IMAP_TAG_MAX || len - i < 8 || strncasecmp(cmd + i, " APPEND ", 8))
        return false;
    memcpy(tag, cmd, i);
    tag[i] = '\0';
    bool literal8;
    lit = literal_start(cmd, len, &literal8);
    if (!lit)
        return false;
    struct imap_append *ap = calloc(1, sizeof(*ap));
    if (!ap)
        return false;
    imap_args_init(&a, cmd + i + 7, (size_t)(lit - literal8 - (cmd + i + 7)),
                   conn_conf(s->c)->imap_max_nesting);
    struct ap_msg m = {0};
    if (imap_args_sp(&a) != IMAP_ARG_OK ||
        imap_args_mailbox(&a, ap->mbox, sizeof(ap->mbox)) != IMAP_ARG_OK ||
        !parse_msg_opts(&a, ap, &m)) {
        ap_destroy(ap);
        return false; /* the literal is something else: read it as such */
    }
    /* the message literal: from here on, APPEND streams it (the session
     * drops the command assembled so far) */
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    if (too_big(s, n, sync)) {
        ap_destroy(ap);
        return true;
    }
    struct ap_msg *mm = new_msg(ap);
    if (!mm) {
        ap_destroy(ap);
        imap_printf(s, "* BYE Out of memory.\r\n");
        imap_close(s);
        return true;
    }
    *mm = m;
    ap->left = n;
    ap->sync = sync;
    ap->literal8 = literal8;
    imap_cont_start(s, &append_cont, ap);
    if (!s->mu) {
        ap->err = STORAGE_E_TEMP;
        if (sync) {
            ap_answer(s);
            return true;
        }
        ap->phase = AP_DISCARD;
        return true;
    }
    ap_open_draft(s, true);
    return true;
}

void imap_cmd_append(struct imap_session *s, struct imap_args *a)
{
    imap_bad(s, "Usage: APPEND mailbox [(flags)] [\"date-time\"] {size}");
}

/* ---- input while an APPEND runs ---- */

static void next_line(struct imap_session *s, const char *line, size_t len)
{
    struct imap_append *ap = s->cont_data;
    uint64_t n = 0;
    bool sync = true;

    if (len == 0) {
        /* end of the command */
        if (ap->err || ap->errwhat || ap->nul) {
            ap_answer(s);
            return;
        }
        struct ap_job *aj = calloc(1, sizeof(*aj));
        uint32_t *uids = calloc(ap->nmsgs, sizeof(uint32_t));
        if (!aj || !uids) {
            free(aj);
            free(uids);
            ap->err = STORAGE_E_NOMEM;
            ap_answer(s);
            return;
        }
        aj->kind = 3;
        aj->mbox_id = ap->mbox_id;
        aj->msgs = ap->msgs;
        aj->nmsgs = ap->nmsgs;
        aj->uids = uids;
        ap->msgs = NULL;
        ap->nmsgs = ap->capmsgs = 0;
        ap_start(s, aj);
        if (ap->phase != AP_JOB) {
            /* could not start: the drafts went back with the job */
            ap_answer(s);
        }
        return;
    }
    /* another message (MULTIAPPEND): SP [flags] [date] literal */
    bool literal8 = false;
    const char *lit = literal_start(line, len, &literal8);
    size_t k = len;
    bool ok = lit && line[len - 1] == '}';
    if (ok) {
        const char *q = lit + 1;
        while (q < line + len && isdigit((unsigned char)*q) && n < (1ull << 40))
            n = n * 10 + (uint64_t)(*q++ - '0');
        ok = q > lit + 1;
        if (ok && *q == '+') {
            sync = false;
            q++;
        }
        ok = ok && q == line + len - 1;
        k = (size_t)(lit - literal8 - line);
    }
    struct imap_args a;
    struct ap_msg m = {0};
    imap_args_init(&a, line, k, conn_conf(s->c)->imap_max_nesting);
    if (!ok || !parse_msg_opts(&a, ap, &m)) {
        if (!ap->errwhat)
            ap->errwhat = "Invalid APPEND arguments.";
        if (ok && !sync) {
            ap->left = n; /* swallow the literal the client sends anyway */
            ap->phase = AP_DISCARD;
            return;
        }
        ap_answer(s);
        return;
    }
    if (!sync && n > IMAP_LITERAL_MINUS_MAX && !conn_conf(s->c)->imap_literal_plus && !ap->errwhat)
        ap->errwhat = "[TOOBIG] Non-synchronizing literal over 4096 bytes (LITERAL-): send it "
                      "synchronizing.";
    if (ap->err || ap->errwhat) {
        if (sync) {
            ap_answer(s);
            return;
        }
        ap->left = n;
        ap->phase = AP_DISCARD;
        return;
    }
    if (n > conn_conf(s->c)->max_message_size) {
        if (!sync) {
            imap_printf(s, "* BYE [TOOBIG] Message too large.\r\n");
            imap_close(s);
            return;
        }
        ap->err = STORAGE_E_TOOBIG;
        ap_answer(s);
        return;
    }
    struct ap_msg *mm = new_msg(ap);
    if (!mm) {
        ap->errwhat = "Too many messages in one APPEND.";
        if (!sync) {
            ap->left = n;
            ap->phase = AP_DISCARD;
            return;
        }
        ap_answer(s);
        return;
    }
    *mm = m;
    ap->left = n;
    ap->announced = n;
    ap->sync = sync;
    ap->literal8 = literal8;
    if (!sync && n > 0) {
        /* no "+" to wait for: the draft is opened by the job that writes
         * the first bytes, one trip to the pool fewer per message */
        ap->phase = AP_DATA;
        return;
    }
    ap_open_draft(s, false);
}

/* Input while the APPEND runs (false: needs more input). */
static bool ap_input(struct imap_session *s)
{
    struct imap_append *ap = s->cont_data;
    const char *p, *line;
    size_t n, len;

    switch (ap->phase) {
    case AP_JOB:
        return false;
    case AP_DISCARD:
        if (!ap->left) {
            ap->phase = AP_LINE;
            return true;
        }
        n = linebuf_take(&s->in, ap->left > SIZE_MAX ? SIZE_MAX : (size_t)ap->left, &p);
        ap->left -= n;
        if (!ap->left)
            ap->phase = AP_LINE;
        return n > 0 || !ap->left;
    case AP_DATA:
        if (!ap->chunk && !(ap->chunk = malloc(APPEND_CHUNK))) {
            ap->err = STORAGE_E_NOMEM;
            ap->phase = AP_DISCARD;
            return true;
        }
        size_t room = APPEND_CHUNK - ap->chunk_len;
        size_t want = ap->left < room ? (size_t)ap->left : room;
        n = linebuf_take(&s->in, want, &p);
        /* a NUL only a literal8 may carry; this store keeps none (RFC
         * 3516 4.4 lets it refuse them) */
        if (ap->literal8 && !ap->nul && memchr(p, 0, n))
            ap->nul = true;
        memcpy(ap->chunk + ap->chunk_len, p, n);
        ap->chunk_len += n;
        ap->left -= n;
        if (ap->chunk_len == APPEND_CHUNK || (ap->left == 0 && ap->chunk_len)) {
            struct ap_job *aj = calloc(1, sizeof(*aj));
            if (!aj) {
                ap->err = STORAGE_E_NOMEM;
                ap->phase = ap->left ? AP_DISCARD : AP_LINE;
                return true;
            }
            aj->kind = 1;
            aj->last = ap->left == 0;
            aj->draft = ap->msgs[ap->nmsgs - 1].draft;
            if (!aj->draft) {
                /* a LITERAL+ message: its draft is opened with its first bytes */
                aj->open = true;
                aj->max = conn_conf(s->c)->max_message_size;
                aj->announced = ap->announced;
                aj->staged = ap->staged;
                aj->nstaged = ap->nmsgs - 1;
            }
            aj->chunk = ap->chunk;
            aj->chunk_len = ap->chunk_len;
            ap->chunk = NULL;
            ap_start(s, aj);
            return true;
        }
        return n > 0;
    case AP_LINE: {
        int r = linebuf_line(&s->in, &line, &len);
        if (r == LINEBUF_MORE)
            return false;
        if (r != LINEBUF_LINE) {
            imap_cont_end(s);
            ap_destroy(ap);
            imap_printf(s, "* BYE [TOOBIG] Command line too long.\r\n");
            imap_close(s);
            return true;
        }
        next_line(s, line, len);
        return true;
    }
    }
    return false;
}
