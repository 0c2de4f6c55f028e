/* APPEND with MULTIAPPEND (RFC 3502), APPENDUID (RFC 4315) and CATENATE
 * (RFC 4469). The message literal is never assembled in memory: its bytes
 * go, a chunk at a time, into a storage draft on the thread pool while
 * the next chunk is read (one write at a time; a CATENATE TEXT literal
 * with reading paused). The messages that arrive whole while a write
 * runs join one job in the same buffer, written together once it ends:
 * a command of many small messages costs a trip to the pool per buffer,
 * not per message. All messages of one command are saved together at
 * the end, or none: their files are synced together, and they are linked and committed in one
 * index transaction (storage_save_many), so that a command of hundreds of
 * messages costs a few syncs, not three per message.
 *
 * The quota is checked as the data comes, not only at the save: a literal
 * whose announced size, with the messages of the command staged before
 * it, would pass the room left is refused before its "+" (a synchronizing
 * one) or read and dropped without a draft (LITERAL+), and each draft is
 * capped at that room while it is written (bare LFs grow it).
 *
 * CATENATE: each piece of command text between two literals is parsed
 * into steps (open a message's draft, copy a URL's bytes into it, end it)
 * and what ends it (a TEXT literal, a message literal, or the end of the
 * command); the steps run one pool job each, then the literal is read
 * into the draft as a message literal is. After an error (a bad URL, a
 * message too big) the rest of the command is still parsed, its
 * non-synchronizing literals read and dropped, and the NO comes at its
 * end, or at once in place of the "+" of a synchronizing literal (RFC
 * 4469 section 5). Nothing is saved unless every message is complete. */
#include <ctype.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>

#include "auth/acl.h"
#include "protocol/imap/imap_private.h"
#include "protocol/job.h"
#include "server/base/config.h"

/* Bytes of a literal handed to the pool at a time: each is a trip from
 * the loop to a pool thread and back, so a 4 MB attachment takes 16 of
 * them instead of 64. Two such buffers (one written, one read into) are
 * held only while an APPEND runs. */
#define APPEND_CHUNK (256u * 1024)
#define APPEND_MAX_MSGS 1000
/* Messages (or pieces of one) written by one job at most. */
#define APPEND_JOB_SEGS 64

enum ap_phase {
    AP_JOB,     /* a pool job runs (open draft, write, finish, save) */
    AP_DATA,    /* literal bytes to read */
    AP_LINE,    /* the rest of the command line after a literal */
    AP_DISCARD, /* skipping literal bytes after an error */
    AP_URL,     /* a URL sent as a literal (an astring may be one) */
};

/* Where the parse of the command text stands. */
enum ap_ps {
    PS_MSG,        /* a message's options and data come next */
    PS_PART_FIRST, /* CATENATE's first part */
    PS_PART,       /* SP and another part, or ")" */
    PS_AFTER,      /* a message ended: another, or the end of the command */
    PS_UTF8_END,   /* the ")" after UTF8's literal (RFC 6855 4) */
};

/* What ends a piece of command text. */
enum ap_tail {
    TAIL_END,   /* the end of the command */
    TAIL_PLAIN, /* a message literal */
    TAIL_TEXT,  /* a CATENATE TEXT literal */
    TAIL_URL,   /* a CATENATE URL as a literal */
};

/* A step of a CATENATE message, run as a pool job. */
enum { OP_NEW, OP_URL, OP_END };
struct ap_op {
    int kind;
    size_t msg; /* index in msgs */
    const struct imap_url *url;
    const char *text; /* the URL as written (BADURL) */
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
    /* A message's bytes are written on the pool while the next ones are
     * read (one such job at a time, s->job): the buffer it gives back
     * (spare), a job that waits for it to end (pending; growing: the
     * messages read meanwhile join it, in chunk, which it shares, the
     * one read now from seg_off on), one that waits for that one (after),
     * and an answer that does (answer_wait: the drafts are dropped after
     * it). */
    char *spare;
    struct ap_job *pending, *after;
    size_t seg_off;
    bool answer_wait;
    /* CATENATE */
    enum ap_ps ps;
    unsigned nparts;   /* parts of the message being parsed */
    struct ap_op *ops; /* steps parsed, not yet run */
    size_t nops, opi, capops;
    enum ap_tail tail; /* and what ends the piece they came from */
    uint64_t tail_n;
    bool tail_sync, tail_lit8;
    bool looked_up;     /* the mailbox was found (mbox_id, uidvalidity) */
    bool cat;           /* the literal being read is a TEXT part */
    const char *badurl; /* the first URL that failed, and why */
    const char *badwhy;
    char *url; /* AP_URL: the literal read so far (arena) */
    size_t url_len;
    /* REPLACE (RFC 8508): the message of the selected mailbox that the
     * new one replaces (0: an APPEND); gone: not in this session's view
     * (UID REPLACE), readonly: the mailbox was EXAMINEd */
    uint32_t replace_uid;
    int64_t replace_mbox;
    bool replace_gone, replace_ro;
    /* the target in another account's store (the shared namespace): that
     * store (held), the user's rights on the target, and noperm: refused
     * for want of a right (NO [NOPERM] at the end) */
    struct mailuser *store;
    unsigned rights;
    bool noperm;
    int64_t viewer; /* per-user \Seen on the target (imap_seen_viewer), 0 */
};

/* What a write job writes of one message: bytes of its chunk. */
struct ap_seg {
    size_t msg; /* index in msgs */
    size_t off, len;
    bool last;          /* the message's last bytes: its draft is ended too */
    bool open;          /* the draft is opened first (a LITERAL+ message) */
    uint64_t announced; /* open: the literal's size */
    struct storage_draft *draft;
};

/* A job works on a detached copy of what it needs. */
struct ap_job {
    struct imap_job j;
    int kind; /* 0 open, 1 write, 2 end, 3 save, 4 copy a URL's bytes */
    bool op;  /* open or end: a CATENATE step */
    /* what the work reads is the job's own: the session may go (and
     * free its state) while the work runs */
    char mbox_copy[STORAGE_MBOX_NAME_MAX + 1];
    struct imap_url url; /* 4 */
    const char *why;     /* 4: why the URL failed (BADURL) */
    bool foreign;        /* 4: the target is another account's */
    bool reading;        /* write: the session reads on meanwhile */
    bool growing;        /* write, waiting: messages read meanwhile join it */
    struct ap_seg seg[APPEND_JOB_SEGS]; /* write: what it writes, in order */
    size_t nseg;
    const char *mbox;
    int64_t mbox_id;
    uint64_t max;
    /* open: the literal's announced size, and what the command staged
     * before it (bytes, messages), checked against the quota room (a
     * write: what was staged before its first message) */
    uint64_t announced, staged;
    size_t nstaged;
    struct storage_draft *draft;
    char *chunk;
    size_t chunk_len;
    struct ap_msg *msgs;
    size_t nmsgs;
    size_t msg; /* a CATENATE step's message */
    int err;
    struct storage_mbox mb;
    uint32_t *uids;
    /* save of a REPLACE: the message replaced, expunged once the new one
     * is committed (expunge_err: that failed, the new one is saved) */
    uint32_t replace_uid;
    int64_t replace_mbox;
    struct storage_uidlist expunged;
    int expunge_err;
    /* per-user \Seen on the target: a \Seen asked for goes to this
     * account's set once the messages are in, not to the rows */
    int64_t viewer;
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

static void ap_job_free(struct imap_job *j);

/* A growing job takes no more messages: the buffer is its own. */
static void ap_seal(struct imap_append *ap)
{
    struct ap_job *g = ap->pending;
    if (!g || !g->growing)
        return;
    g->growing = false;
    ap->chunk = NULL;
    ap->chunk_len = 0;
    ap->seg_off = 0;
}

/* The messages' array: the command's, or a save's waiting to run. */
static struct ap_msg *ap_msgs(struct imap_append *ap)
{
    if (ap->pending && ap->pending->kind == 3)
        return ap->pending->msgs;
    if (ap->after && ap->after->kind == 3)
        return ap->after->msgs;
    return ap->msgs;
}

static void ap_destroy(struct imap_append *ap)
{
    if (!ap)
        return;
    ap_seal(ap);
    if (ap->pending)
        ap_job_free(&ap->pending->j); /* never started */
    if (ap->after)
        ap_job_free(&ap->after->j);
    ap_free_msgs(ap);
    free(ap->chunk);
    free(ap->spare);
    free(ap->ops);
    imap_arena_free(&ap->ar);
    if (ap->store)
        mailuser_release(ap->store);
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

/* The drafts go: after the job that runs, which may write one of them,
 * or now (on the pool). */
static void ap_drop_drafts(struct imap_session *s, struct imap_append *ap)
{
    struct ap_job *save = ap->pending && ap->pending->kind == 3 ? ap->pending
                          : ap->after && ap->after->kind == 3   ? ap->after
                                                                : NULL;
    if (save) {
        /* a save waiting holds them (a write running may end one) */
        ap_free_msgs(ap);
        ap->msgs = save->msgs;
        ap->nmsgs = ap->capmsgs = save->nmsgs;
        save->msgs = NULL;
        save->nmsgs = 0;
    }
    if (s->job)
        ap_job_orphan(s, ap); /* the running job frees the drafts when done */
    else
        drafts_drop(conn_loop(s->c), ap->msgs, ap->nmsgs);
    ap->msgs = NULL;
    ap->nmsgs = ap->capmsgs = 0;
}

/* The session ends while the APPEND runs. */
static void ap_abort(struct imap_session *s)
{
    struct imap_append *ap = s->cont_data;
    ap_drop_drafts(s, ap);
    ap_destroy(ap);
}

/* ---- jobs ---- */

/* Opens the draft of a message of announced bytes, with nstaged
 * messages of staged bytes before it, if the quota has room for it. */
static int open_draft(struct storage_user *u, uint64_t max, uint64_t announced, uint64_t staged,
                      size_t nstaged, struct storage_draft **out)
{
    uint64_t room, msgs;
    int err = storage_quota_room(u, &room, &msgs);
    if (err)
        return err;
    if (msgs <= nstaged || room < staged || announced > room - staged)
        return STORAGE_E_QUOTA;
    /* from a MULTIAPPEND's second message on, the next drafts' files are
     * made ahead while this one is written */
    if ((err = (nstaged ? storage_draft_next : storage_draft_new)(u, max, out)) != 0)
        return err;
    if (room != UINT64_MAX)
        storage_draft_set_room(*out, room - staged);
    return 0;
}

/* URL-PARTIAL's range of a section of len bytes: *off and *len moved. */
static void url_range(const struct imap_url *url, uint64_t *off, uint64_t *len)
{
    if (!url->partial)
        return;
    /* as FETCH BODY[]<o.l>: past the end is empty */
    if (url->partial_off >= *len) {
        *len = 0;
        return;
    }
    *off += url->partial_off;
    *len -= url->partial_off;
    if (url->partial_len < *len)
        *len = url->partial_len;
}

/* A URL's message or section lookup: false when found; else true, with
 * why set for what the URL names wrongly (BADURL) or err for a failure. */
static bool url_failed(struct ap_job *aj, int err)
{
    if (err == STORAGE_E_NOMSG || err == STORAGE_E_INVAL) {
        aj->why = err == STORAGE_E_NOMSG ? "No such message." : "No such section.";
        return true;
    }
    if (err)
        aj->err = err;
    return err != 0;
}

/* A URL's [part.]HEADER.FIELDS[.NOT] (names): the lines FETCH gives. */
static void url_fields(struct ap_job *aj, struct storage_user *u, int64_t mbox)
{
    const struct imap_url *url = &aj->url;
    const char *names[IMAP_URL_MAX_NAMES];
    char part[sizeof(url->section)];
    const char *p = url->names;
    char *mem = NULL;
    size_t memlen = 0;
    uint64_t off = 0, len;

    for (size_t i = 0; i < url->nnames; i++) {
        names[i] = p;
        p += strlen(p) + 1;
    }
    memcpy(part, url->section, url->part_len);
    part[url->part_len] = '\0';
    int err = storage_msg_header_fields(u, mbox, url->uid, part, names, url->nnames,
                                        url->fields == 2, &mem, &memlen);
    if (url_failed(aj, err))
        return;
    len = memlen;
    url_range(url, &off, &len);
    if (len)
        aj->err = storage_draft_write(aj->draft, mem + off, (size_t)len);
    free(mem);
}

/* Copies the bytes a URL names into the draft, as they are stored (RFC
 * 4469 section 3: no decoding). A URL that names nothing here sets why. */
static void url_copy(struct ap_job *aj, struct storage_user *u)
{
    const struct imap_url *url = &aj->url;
    struct storage_mbox mb;
    uint64_t off, len;
    int fd = -1;
    int err = storage_mbox_get(u, url->mbox, &mb);

    if (err == STORAGE_E_NOMBOX || err == STORAGE_E_INVAL) {
        aj->why = "No such mailbox.";
        return;
    }
    if (err) {
        aj->err = err;
        return;
    }
    if (url->uidvalidity && url->uidvalidity != mb.uidvalidity) {
        aj->why = "The mailbox has another UIDVALIDITY.";
        return;
    }
    if (url->fields) {
        url_fields(aj, u, mb.id);
        return;
    }
    err = storage_msg_section(u, mb.id, url->uid, url->section, &fd, &off, &len);
    if (url_failed(aj, err))
        return;
    url_range(url, &off, &len);
    char *buf = len ? malloc(APPEND_CHUNK) : NULL;
    if (len && !buf)
        aj->err = STORAGE_E_NOMEM;
    while (len && !aj->err) {
        size_t want = len < APPEND_CHUNK ? (size_t)len : APPEND_CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got <= 0) {
            aj->err = STORAGE_E_TEMP; /* the file shrank under us or failed */
            break;
        }
        aj->err = storage_draft_write(aj->draft, buf, (size_t)got);
        off += (uint64_t)got;
        len -= (uint64_t)got;
    }
    free(buf);
    close(fd);
}

/* The messages saved with \Seen into a mailbox where the user's \Seen
 * is its own: \Seen in the user's set (a transaction after the save's;
 * should it fail, the messages are in, unseen, and the command says NO). */
static int viewer_seen(struct storage_user *u, struct ap_job *aj)
{
    struct storage_range *r = calloc(aj->nmsgs, sizeof(*r));
    size_t n = 0;
    int err;

    if (!r)
        return STORAGE_E_NOMEM;
    for (size_t i = 0; i < aj->nmsgs; i++)
        if (aj->msgs[i].flags & STORAGE_FLAG_SEEN) {
            r[n].lo = r[n].hi = aj->uids[i];
            n++;
        }
    struct storage_uidset set = {n, r};
    err = n ? storage_pseen_store(u, aj->mbox_id, aj->viewer, &set, true, 0, NULL, NULL, NULL) : 0;
    free(r);
    return err;
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
        aj->err = open_draft(j->u, aj->max, aj->announced, aj->staged, aj->nstaged, &aj->draft);
        break;
    case 1: {
        uint64_t staged = aj->staged;
        for (size_t i = 0; i < aj->nseg && !aj->err; i++) {
            struct ap_seg *g = &aj->seg[i];
            if (g->open &&
                (aj->err = open_draft(j->u, aj->max, g->announced, staged, g->msg, &g->draft)) != 0)
                break;
            aj->err = storage_draft_write(g->draft, aj->chunk + g->off, g->len);
            if (!aj->err && g->last && (aj->err = storage_draft_end(g->draft)) == 0)
                staged += storage_draft_size(g->draft);
        }
        break;
    }
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
            unsigned strip = aj->viewer ? STORAGE_FLAG_SEEN : 0;
            for (size_t i = 0; i < aj->nmsgs; i++) {
                const struct ap_msg *m = &aj->msgs[i];
                r[i] = (struct storage_save_req){m->draft, m->flags & ~strip, m->kw,
                                                 m->nkw,   m->date,           0};
            }
            aj->err = storage_save_many(j->u, aj->mbox_id, r, aj->nmsgs);
            for (size_t i = 0; i < aj->nmsgs && !aj->err; i++)
                aj->uids[i] = r[i].uid;
            free(r);
            if (!aj->err && aj->viewer)
                aj->err = viewer_seen(j->u, aj);
        }
        if (!aj->err && aj->replace_uid) {
            /* RFC 8508 3.4: the old message goes only once the new one is
             * committed; a failure up to here leaves it, and a crash
             * between the two leaves both */
            struct storage_range rr = {aj->replace_uid, aj->replace_uid};
            struct storage_uidset set = {1, &rr};
            aj->expunge_err = storage_expunge(j->u, aj->replace_mbox, &set, false, &aj->expunged);
        }
        for (size_t k = 0; k < aj->nmsgs; k++) {
            storage_draft_free(aj->msgs[k].draft);
            aj->msgs[k].draft = NULL;
        }
        break;
    }
    case 4:
        /* a URL names a message of the user's own mailboxes, which the
         * target's store (another account's) does not hold: never looked
         * up there */
        if (aj->foreign)
            aj->why = "URLs are not taken into another account's mailbox.";
        else
            url_copy(aj, j->u);
        break;
    }
}

static void ap_job_free(struct imap_job *j)
{
    struct ap_job *aj = (struct ap_job *)j;
    /* a draft opened for a session that is gone */
    if (aj->kind == 0 && aj->draft && !j->s)
        storage_draft_free(aj->draft);
    for (size_t i = 0; i < aj->nseg && !j->s; i++)
        if (aj->seg[i].open && aj->seg[i].draft)
            storage_draft_free(aj->seg[i].draft);
    if (aj->orphans)
        drafts_drop(aj->loop, aj->orphans, aj->norphans);
    free(aj->chunk);
    free(aj->uids);
    storage_uidlist_free(&aj->expunged);
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
static bool ap_run(struct imap_session *s);

static void ap_launch(struct imap_session *s, struct ap_job *aj)
{
    struct imap_append *ap = s->cont_data;
    aj->j.free_fn = ap_job_free;
    aj->j.store = ap->store;
    if (aj->kind == 1) {
        /* what the write needs of the jobs before it, which have ended: a
         * LITERAL+ message's draft is opened with its first bytes */
        struct ap_msg *msgs = ap_msgs(ap);
        aj->max = conn_conf(s->c)->max_message_size;
        aj->staged = ap->staged;
        for (size_t i = 0; i < aj->nseg; i++) {
            aj->seg[i].draft = msgs[aj->seg[i].msg].draft;
            aj->seg[i].open = !aj->seg[i].draft;
        }
    }
    if (aj->reading) {
        ap->phase = ap->left ? AP_DATA : AP_LINE;
        if (imap_job_start_reading(s, &aj->j, ap_work, ap_done) == 0)
            return;
    } else {
        ap->phase = AP_JOB;
        if (imap_job_start(s, &aj->j, ap_work, ap_done) == 0)
            return;
    }
    ap->err = STORAGE_E_TEMP;
    ap->phase = ap->left ? AP_DISCARD : AP_LINE;
}

/* Starts aj, or once the write running ends. */
static void ap_start(struct imap_session *s, struct ap_job *aj)
{
    struct imap_append *ap = s->cont_data;
    ap_seal(ap);
    if (!s->job && ap->pending) {
        /* a growing job left waiting for the message read meanwhile */
        struct ap_job *p = ap->pending;
        ap->pending = NULL;
        ap_launch(s, p);
    }
    if (s->job) {
        if (ap->pending)
            ap->after = aj; /* behind a job that grew */
        else
            ap->pending = aj;
        ap->phase = AP_JOB;
        imap_wait(s, IMAP_WAIT_JOB);
        return;
    }
    ap_launch(s, aj);
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
    if (lookup) {
        memcpy(aj->mbox_copy, ap->mbox, sizeof(aj->mbox_copy));
        aj->mbox = aj->mbox_copy;
    }
    aj->max = conn_conf(s->c)->max_message_size;
    aj->announced = ap->left;
    aj->staged = ap->staged;
    aj->nstaged = ap->nmsgs - 1; /* the new message is counted already */
    ap_start(s, aj);
}

static void ap_answer(struct imap_session *s);
static const char *cmd_name(const struct imap_session *s, const struct imap_append *ap);

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

/* A write that ran while the session read on has ended. */
static void ap_written(struct imap_session *s, struct imap_append *ap, struct ap_job *aj)
{
    if (!ap->spare) {
        ap->spare = aj->chunk; /* the buffer comes back */
        aj->chunk = NULL;
    }
    /* a save waiting (kind 3) holds the messages already */
    struct ap_msg *msgs = ap_msgs(ap);
    for (size_t i = 0; i < aj->nseg; i++) {
        struct ap_seg *g = &aj->seg[i];
        if (g->open) {
            msgs[g->msg].draft = g->draft; /* NULL if it could not open */
            g->draft = NULL;
        }
        if (!aj->err && g->last && msgs[g->msg].draft)
            ap->staged += storage_draft_size(msgs[g->msg].draft);
    }
    if (aj->err && !ap->err) {
        ap->err = aj->err;
        if (ap->phase == AP_DATA) {
            /* the literal read now is dropped too */
            ap_seal(ap);
            ap->chunk_len = 0;
            ap->phase = AP_DISCARD;
        }
    }
    if (ap->answer_wait) {
        ap_answer(s);
        return;
    }
    struct ap_job *next = ap->pending;
    if (next && next->growing && !ap->err && ap->phase == AP_DATA) {
        /* it takes the message being read first; it starts then */
        imap_resume(s);
        return;
    }
    /* a job that grew waited while the input went on (a message literal
     * or the line after one: any other piece seals it first): where that
     * stands is not the job's to set */
    bool flowing = next && next->growing;
    enum ap_phase phase = ap->phase;
    ap_seal(ap);
    if (next && !ap->err) {
        ap->pending = ap->after;
        ap->after = NULL;
        ap_launch(s, next);
        if (flowing && s->job)
            ap->phase = phase;
        if (ap->pending && s->job) {
            ap->phase = AP_JOB; /* the job behind waits for this one */
            imap_wait(s, IMAP_WAIT_JOB);
            return;
        }
        imap_resume(s);
        return;
    }
    /* after a failure the jobs waiting do not run */
    while ((next = ap->pending) != NULL) {
        ap->pending = ap->after;
        ap->after = NULL;
        if (next->kind == 1) {
            /* the bytes read meanwhile are dropped */
            ap_job_free(&next->j);
            ap->phase = ap->left ? AP_DISCARD : AP_LINE;
            continue;
        }
        if (next->kind == 3) {
            /* the save does not run: the drafts come back to be dropped */
            ap->msgs = next->msgs;
            ap->nmsgs = ap->capmsgs = next->nmsgs;
            next->msgs = NULL;
            next->nmsgs = 0;
        }
        ap_job_free(&next->j);
        if (!ap_run(s))
            return;
    }
    imap_resume(s);
}

static void ap_done(struct imap_session *s, struct imap_job *j)
{
    struct ap_job *aj = (struct ap_job *)j;
    struct imap_append *ap = s->cont_data;

    if (!ap) {
        /* cannot happen: abort clears jobs too */
        if (aj->kind == 0 && aj->draft)
            storage_draft_free(aj->draft);
        for (size_t i = 0; i < aj->nseg; i++)
            if (aj->seg[i].open && aj->seg[i].draft)
                storage_draft_free(aj->seg[i].draft);
        aj->nseg = 0;
        return;
    }
    if (aj->reading) {
        ap_written(s, ap, aj);
        return;
    }
    if (aj->kind == 0 && aj->mbox && !aj->err) {
        ap->mbox_id = aj->mb.id;
        ap->uidvalidity = aj->mb.uidvalidity;
        ap->looked_up = true;
    }
    if (aj->op || aj->kind == 4) {
        /* a CATENATE step: the next one, or what ends the piece */
        if (aj->err && !ap->err)
            ap->err = aj->err;
        if (aj->kind == 4 && aj->why && !ap->badurl) {
            ap->badurl = ap->ops[ap->opi - 1].text;
            ap->badwhy = aj->why;
        }
        if (aj->kind == 0) {
            ap->msgs[aj->msg].draft = aj->draft; /* NULL if it could not open */
            aj->draft = NULL;
        } else if (aj->kind == 2 && !aj->err) {
            ap->staged += storage_draft_size(aj->draft);
        }
        if (ap_run(s))
            imap_resume(s);
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
        if (aj->seg[0].open) {
            ap->msgs[ap->nmsgs - 1].draft = aj->seg[0].draft; /* NULL if it could not open */
            aj->seg[0].draft = NULL;
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
        /* the last chunk: the draft was ended with it (a TEXT part's
         * message goes on: it is ended by its step) */
        if (!ap->cat)
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
        const char *name = cmd_name(s, ap);
        if (aj->err) {
            imap_cont_end(s);
            ap_destroy(ap);
            if (aj->err == STORAGE_E_NOMBOX)
                imap_finish(s, "NO", "[TRYCREATE] %s: no such mailbox.", name);
            else
                imap_finish_storage_err(s, aj->err, name);
            return;
        }
        if (s->sel && s->sel->mu == ap->store && s->sel->id == ap->mbox_id)
            imap_sel_note_new(s, aj->uids, aj->nmsgs);
        if (ap->replace_uid) {
            bool uid = s->uid_cmd;
            /* RFC 8508 3.4: APPENDUID in an untagged OK, then the
             * EXPUNGE of the message replaced */
            imap_printf(s, "* OK [APPENDUID %u %u] Replacement Message ID\r\n", ap->uidvalidity,
                        aj->uids[0]);
            if (aj->expunge_err)
                imap_printf(s, "* NO The replaced message could not be expunged.\r\n");
            else if (s->sel && s->sel->id == ap->replace_mbox && aj->expunged.n)
                imap_sel_expunged(s, aj->expunged.uids, aj->expunged.n);
            imap_cont_end(s);
            ap_destroy(ap);
            imap_finish(s, "OK", "%sREPLACE completed.", uid ? "UID " : "");
            return;
        }
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
    if (s->job) {
        /* a write runs: answered once it ends (ap_written) */
        ap->answer_wait = true;
        ap->phase = AP_JOB;
        imap_wait(s, IMAP_WAIT_JOB);
        return;
    }
    int err = ap->err;
    const char *what = ap->errwhat;
    bool gone = ap->replace_gone, ro = ap->replace_ro, noperm = ap->noperm;
    const char *name = cmd_name(s, ap);

    imap_cont_end(s);
    /* drafts written so far are dropped on the pool */
    ap_drop_drafts(s, ap);
    bool nul = ap->nul;
    struct buf url = {0};
    const char *why = ap->badwhy;
    if (ap->badurl) {
        /* url-resp-text (RFC 4469 section 5, errata 2002): no "]", no
         * controls; those are written %-encoded */
        for (const unsigned char *p = (const unsigned char *)ap->badurl; *p; p++) {
            if (*p == ']' || *p < 0x20 || *p >= 0x7f)
                buf_printf(&url, "%%%02X", *p);
            else
                buf_add(&url, p, 1);
        }
        if (!url.len)
            buf_str(&url, "/");
    }
    ap_destroy(ap);
    if (what)
        imap_finish(s, "BAD", "%s", what);
    else if (ro)
        imap_finish(s, "NO", "[READ-ONLY] %s: the mailbox is read-only.", name);
    else if (noperm)
        imap_finish(s, "NO", "[NOPERM] %s: you may not add messages to this mailbox here.", name);
    else if (gone)
        imap_finish(s, "NO", "[NONEXISTENT] %s: no such message.", name);
    else if (url.len && !url.oom)
        imap_finish(s, "NO", "[BADURL %.*s] CATENATE: %s", (int)url.len, url.p, why);
    else if (url.len)
        imap_finish(s, "NO", "[BADURL /] CATENATE: %s", why);
    else if (nul && !err)
        imap_finish(s, "NO", "[UNKNOWN-CTE] Messages with NUL bytes are not stored here.");
    else if (err == STORAGE_E_NOMBOX)
        imap_finish(s, "NO", "[TRYCREATE] %s: no such mailbox.", name);
    else
        imap_finish_storage_err(s, err, name);
    buf_free(&url);
}

/* ---- parsing ---- */

static const char *cmd_name(const struct imap_session *s, const struct imap_append *ap)
{
    if (ap->replace_mbox)
        return s->uid_cmd ? "UID REPLACE" : "REPLACE";
    return "APPEND";
}

/* REPLACE's SP seq-number, UID REPLACE's SP uid: the message replaced, in
 * the selected mailbox. NULL, or why the syntax is wrong (BAD); a UID
 * this session does not see, or a mailbox only EXAMINEd, answer NO when
 * the command ends. */
static const char *replace_target(struct imap_session *s, struct imap_append *ap,
                                  struct imap_args *a, bool uid)
{
    const struct imap_sel *sel = s->sel;
    const char *w;
    size_t wl;
    uint64_t v = 0;

    if (!sel || imap_args_sp(a) != IMAP_ARG_OK || imap_args_atom(a, &w, &wl) != IMAP_ARG_OK ||
        wl == 0 || wl > 10)
        return "Usage: [UID] REPLACE n mailbox [(flags)] [\"date-time\"] message";
    if (!uid && wl == 1 && w[0] == '*') {
        v = sel->uids.n;
    } else {
        for (size_t i = 0; i < wl; i++) {
            if (w[i] < '0' || w[i] > '9')
                return "Invalid message number.";
            v = v * 10 + (uint64_t)(w[i] - '0');
        }
    }
    if (v == 0 || v > UINT32_MAX)
        return "Invalid message number.";
    ap->replace_mbox = sel->id;
    ap->replace_ro = sel->readonly;
    if (uid) {
        ap->replace_uid = (uint32_t)v;
        ap->replace_gone = uidmap_find(&sel->uids, (uint32_t)v) < 0;
    } else {
        if (v > sel->uids.n)
            return "Invalid message sequence number.";
        ap->replace_uid = uidmap_at(&sel->uids, (size_t)v - 1);
    }
    if (ap->replace_gone)
        ap->replace_uid = 0;
    return NULL;
}

/* Parses SP [flag-list SP] [date-time SP]: a message's options. */
static bool msg_opts(struct imap_args *a, struct imap_append *ap, struct ap_msg *m)
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
    return true;
}

/* Makes room for one more of n elements of size bytes in *arr (*cap of
 * them allocated). */
static bool grow(void *arr, size_t *cap, size_t n, size_t size)
{
    void **a = arr;
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*a, ncap * size);
    if (!p)
        return false;
    *a = p;
    *cap = ncap;
    return true;
}

static struct ap_msg *new_msg(struct imap_append *ap)
{
    if (ap->nmsgs >= APPEND_MAX_MSGS ||
        !grow(&ap->msgs, &ap->capmsgs, ap->nmsgs, sizeof(*ap->msgs)))
        return NULL;
    struct ap_msg *m = &ap->msgs[ap->nmsgs++];
    memset(m, 0, sizeof(*m));
    return m;
}

static bool add_op(struct imap_append *ap, int kind, const struct imap_url *url, const char *text)
{
    if (!grow(&ap->ops, &ap->capops, ap->nops, sizeof(*ap->ops)))
        return false;
    ap->ops[ap->nops++] = (struct ap_op){kind, ap->nmsgs - 1, url, text};
    return true;
}

/* The URL of a CATENATE part: parsed here, looked up by its step. */
static const char *cat_url_add(struct imap_session *s, struct imap_append *ap, const char *u,
                               size_t ul)
{
    struct imap_url *url = imap_arena_alloc(&ap->ar, sizeof(*url));
    if (!url)
        return "Out of memory.";
    const char *why = ul > conn_conf(s->c)->imap_url_max_length
                          ? "URL too long."
                          : imap_url_parse(u, ul, s->user, conn_hostname(s->c), url);
    if (why) {
        if (!ap->badurl) {
            ap->badurl = u;
            ap->badwhy = why;
        }
        return NULL;
    }
    return add_op(ap, OP_URL, url, u) ? NULL : "Out of memory.";
}

static const char *cat_url(struct imap_session *s, struct imap_append *ap, struct imap_args *a)
{
    char *u;
    size_t ul;
    if (imap_args_astring_dup(a, &ap->ar, &u, &ul) != IMAP_ARG_OK)
        return "Invalid CATENATE URL.";
    return cat_url_add(s, ap, u, ul);
}

/* Parses a piece of the command text (after the mailbox, or what follows
 * a literal) into steps, up to its end: a literal when lit, else the end
 * of the command (ap->tail). NULL, or the syntax error met. Linear: each
 * byte is read once. */
static const char *parse_piece(struct imap_session *s, struct imap_append *ap, struct imap_args *a,
                               bool lit)
{
    const char *w;
    size_t wl;
    struct ap_msg m, *mm;

    for (;;) {
        switch (ap->ps) {
        case PS_UTF8_END:
            if (!imap_args_eat(a, ')'))
                return "Usage: UTF8 (~{size}message).";
            ap->ps = PS_AFTER;
            break;
        case PS_AFTER:
            if (imap_args_at_end(a)) {
                if (lit)
                    return "Invalid APPEND arguments.";
                ap->tail = TAIL_END;
                return NULL;
            }
            if (ap->replace_mbox)
                return "REPLACE takes one message.";
            ap->ps = PS_MSG;
            break;
        case PS_MSG:
            memset(&m, 0, sizeof(m));
            if (!msg_opts(a, ap, &m))
                return "Invalid APPEND arguments.";
            if (imap_args_at_end(a)) {
                if (!lit)
                    return "Invalid APPEND arguments.";
                if (!(mm = new_msg(ap)))
                    return "Too many messages in one APPEND.";
                *mm = m;
                ap->tail = TAIL_PLAIN;
                ap->ps = PS_AFTER;
                return NULL;
            }
            if (imap_args_atom(a, &w, &wl) != IMAP_ARG_OK)
                return "Invalid APPEND arguments.";
            if (imap_word_is(w, wl, "UTF8")) {
                /* "UTF8" SP "(" literal8 ")" (RFC 6855 4), once enabled */
                if (!s->utf8_accept)
                    return "UTF8 needs ENABLE UTF8=ACCEPT first.";
                if (imap_args_sp(a) != IMAP_ARG_OK || !imap_args_eat(a, '(') ||
                    !imap_args_at_end(a) || !lit || !ap->tail_lit8)
                    return "Usage: UTF8 (~{size}message).";
                if (!(mm = new_msg(ap)))
                    return "Too many messages in one APPEND.";
                *mm = m;
                ap->tail = TAIL_PLAIN;
                ap->ps = PS_UTF8_END;
                return NULL;
            }
            if (!imap_word_is(w, wl, "CATENATE") || imap_args_sp(a) != IMAP_ARG_OK ||
                !imap_args_eat(a, '('))
                return "Invalid APPEND arguments.";
            if (!(mm = new_msg(ap)))
                return "Too many messages in one APPEND.";
            *mm = m;
            if (!add_op(ap, OP_NEW, NULL, NULL))
                return "Out of memory.";
            ap->nparts = 0;
            ap->ps = PS_PART_FIRST;
            break;
        case PS_PART:
            if (imap_args_eat(a, ')')) {
                if (!add_op(ap, OP_END, NULL, NULL))
                    return "Out of memory.";
                ap->ps = PS_AFTER;
                break;
            }
            if (imap_args_sp(a) != IMAP_ARG_OK)
                return "Invalid CATENATE arguments.";
            /* fall through */
        case PS_PART_FIRST:
            if (++ap->nparts > conn_conf(s->c)->imap_catenate_max_parts)
                return "Too many CATENATE parts.";
            if (imap_args_atom(a, &w, &wl) != IMAP_ARG_OK || imap_args_sp(a) != IMAP_ARG_OK)
                return "Invalid CATENATE arguments.";
            ap->ps = PS_PART;
            if (imap_word_is(w, wl, "TEXT")) {
                if (!lit || !imap_args_at_end(a))
                    return "CATENATE's TEXT takes a literal.";
                ap->tail = TAIL_TEXT;
                return NULL;
            }
            if (!imap_word_is(w, wl, "URL"))
                return "Invalid CATENATE arguments.";
            if (lit && imap_args_at_end(a)) {
                ap->tail = TAIL_URL; /* the URL is the literal */
                return NULL;
            }
            if ((w = cat_url(s, ap, a)) != NULL)
                return w;
            break;
        }
    }
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

static bool ap_input(struct imap_session *s);
static const char *replace_target(struct imap_session *s, struct imap_append *ap,
                                  struct imap_args *a, bool uid);

static const struct imap_cont append_cont = {
    .bytes = ap_input,
    .abort = ap_abort,
};

static bool ap_failed(const struct imap_append *ap)
{
    return ap->err || ap->errwhat || ap->badurl || ap->replace_gone || ap->replace_ro || ap->noperm;
}

/* After an error: the literal that ends the piece is refused in place of
 * its "+", or read and dropped; the end of the command answers. */
static void skip_tail(struct imap_session *s, struct imap_append *ap)
{
    if (ap->tail == TAIL_END || ap->tail_sync) {
        ap_answer(s);
        return;
    }
    ap->left = ap->tail_n;
    ap->phase = AP_DISCARD;
}

/* A literal that ends a piece, n bytes alone over max_message_size: a
 * synchronizing one is refused, a non-synchronizing one cannot be: BYE. */
static bool tail_too_big(struct imap_session *s, struct imap_append *ap)
{
    if (ap->tail_n <= conn_conf(s->c)->max_message_size)
        return false;
    if (!ap->tail_sync) {
        imap_printf(s, "* BYE [TOOBIG] Message too large.\r\n");
        imap_cont_end(s);
        ap_drop_drafts(s, ap);
        ap_destroy(ap);
        imap_close(s);
        return true;
    }
    ap->err = STORAGE_E_TOOBIG;
    ap_answer(s);
    return true;
}

/* Runs the next step parsed, or once they are all done, what ends the
 * piece. False when the command ended (answered) here. */
static bool ap_run(struct imap_session *s)
{
    struct imap_append *ap = s->cont_data;
    const struct conf *cf = conn_conf(s->c);

    if (!ap_failed(ap) && ap->opi < ap->nops) {
        const struct ap_op *op = &ap->ops[ap->opi++];
        struct ap_job *aj = calloc(1, sizeof(*aj));
        if (!aj) {
            ap->err = STORAGE_E_NOMEM;
            return ap_run(s);
        }
        aj->op = true;
        aj->msg = op->msg;
        aj->draft = ap->msgs[op->msg].draft;
        aj->max = cf->max_message_size;
        switch (op->kind) {
        case OP_NEW:
            aj->kind = 0;
            if (!ap->looked_up) {
                memcpy(aj->mbox_copy, ap->mbox, sizeof(aj->mbox_copy));
                aj->mbox = aj->mbox_copy;
            }
            aj->staged = ap->staged;
            aj->nstaged = op->msg;
            break;
        case OP_URL:
            aj->kind = 4;
            aj->url = *op->url;
            aj->foreign = ap->store != NULL;
            break;
        default:
            aj->kind = 2;
            break;
        }
        ap_start(s, aj);
        if (ap->phase != AP_JOB)
            return ap_run(s); /* could not start: the error set answers */
        return true;
    }
    ap->nops = ap->opi = 0;
    if (ap_failed(ap)) {
        skip_tail(s, ap);
        return s->cont == &append_cont;
    }
    switch (ap->tail) {
    case TAIL_END: {
        struct ap_job *aj = calloc(1, sizeof(*aj));
        uint32_t *uids = calloc(ap->nmsgs, sizeof(uint32_t));
        if (!aj || !uids || ap->nul) {
            free(aj);
            free(uids);
            if (!ap->nul)
                ap->err = STORAGE_E_NOMEM;
            ap_answer(s);
            return false;
        }
        aj->kind = 3;
        aj->mbox_id = ap->mbox_id;
        aj->viewer = ap->viewer;
        for (size_t i = 0; i < ap->nmsgs; i++) {
            /* RFC 4314 4: the flags the rights on the target do not
             * allow are dropped, the message is saved */
            bool kw;
            ap->msgs[i].flags = imap_flags_allowed(ap->rights, ap->msgs[i].flags, &kw);
            if (!kw)
                ap->msgs[i].nkw = 0;
        }
        aj->replace_uid = ap->replace_uid;
        aj->replace_mbox = ap->replace_mbox;
        aj->msgs = ap->msgs;
        aj->nmsgs = ap->nmsgs;
        aj->uids = uids;
        ap->msgs = NULL;
        ap->nmsgs = ap->capmsgs = 0;
        ap_start(s, aj);
        if (ap->phase != AP_JOB) {
            /* could not start: the drafts went back with the job */
            ap_answer(s);
            return false;
        }
        return true;
    }
    case TAIL_PLAIN:
        if (tail_too_big(s, ap))
            return false;
        ap->cat = false;
        ap->left = ap->announced = ap->tail_n;
        ap->sync = ap->tail_sync;
        ap->literal8 = ap->tail_lit8;
        if (!ap->sync && ap->left > 0 && ap->looked_up) {
            /* no "+" to wait for: the draft is opened by the job that
             * writes the first bytes, one trip to the pool fewer (a job
             * waiting takes it if it fits whole in what is left of the
             * buffer) */
            const struct ap_job *g = ap->pending;
            if (g && g->growing &&
                (g->nseg == APPEND_JOB_SEGS || ap->left > APPEND_CHUNK - ap->chunk_len))
                ap_seal(ap);
            ap->phase = AP_DATA;
            return true;
        }
        ap_open_draft(s, !ap->looked_up);
        return s->cont == &append_cont;
    case TAIL_URL:
        if (ap->tail_lit8) {
            ap->errwhat = "A URL is an astring, not a literal8.";
            skip_tail(s, ap);
            return s->cont == &append_cont;
        }
        if (ap->tail_n > cf->imap_url_max_length) {
            ap->badurl = "/";
            ap->badwhy = "URL too long.";
            skip_tail(s, ap);
            return s->cont == &append_cont;
        }
        ap->url = imap_arena_alloc(&ap->ar, (size_t)ap->tail_n + 1);
        if (!ap->url) {
            ap->err = STORAGE_E_NOMEM;
            skip_tail(s, ap);
            return s->cont == &append_cont;
        }
        ap->url_len = 0;
        ap->left = ap->tail_n;
        if (ap->tail_sync)
            imap_printf(s, "+ Ready for literal data\r\n");
        ap->phase = AP_URL;
        return true;
    case TAIL_TEXT: {
        ap_seal(ap); /* its bytes are not a message's of their own */
        if (tail_too_big(s, ap))
            return false;
        const struct storage_draft *d = ap->msgs[ap->nmsgs - 1].draft;
        if (!d || storage_draft_size(d) + ap->tail_n > cf->max_message_size) {
            ap->err = d ? STORAGE_E_TOOBIG : STORAGE_E_TEMP;
            skip_tail(s, ap);
            return s->cont == &append_cont;
        }
        ap->cat = true;
        ap->left = ap->tail_n;
        ap->sync = ap->tail_sync;
        ap->literal8 = ap->tail_lit8;
        if (ap->sync)
            imap_printf(s, "+ Ready for literal data\r\n");
        ap->phase = ap->left ? AP_DATA : AP_LINE;
        return true;
    }
    }
    return true;
}

/* Takes over the command: tag, mailbox and the first piece of text
 * parsed (the literal ending it announced when lit). */
/* The target's store (another account's) is there, or not. */
static void ap_store_go(struct imap_session *s, int err, struct mailuser *mu, void *arg)
{
    struct imap_append *ap = s->cont_data;
    (void)arg;
    if (!ap || s->cont != &append_cont) {
        if (mu)
            mailuser_release(mu);
        return;
    }
    if (err)
        ap->err = err == STORAGE_E_NOMBOX ? err : STORAGE_E_TEMP;
    ap->store = mu;
    ap->phase = AP_JOB; /* as ap_begin leaves it */
    if (ap_run(s))
        imap_resume(s);
}

/* Where the messages go: one's own mailbox, or another account's through
 * the shared namespace, which needs i (and REPLACE, t and e on the
 * selected mailbox, in the same store). False while that store is being
 * got (ap_store_go goes on). */
static bool ap_target(struct imap_session *s, struct imap_append *ap)
{
    struct imap_mref ref;

    ap->rights = ACL_ALL;
    if (imap_ns_resolve(s, ap->mbox, &ref) != 0 || (ref.shared && !imap_ns_visible(&ref))) {
        ap->err = STORAGE_E_NOMBOX; /* as a missing one of one's own */
        return true;
    }
    if (!(ref.rights & ACL_INSERT)) {
        ap->noperm = true;
        return true;
    }
    memcpy(ap->mbox, ref.name, sizeof(ap->mbox));
    ap->rights = ref.rights;
    ap->viewer = imap_seen_viewer(s, &ref);
    int64_t dst = ref.shared ? ref.owner : s->account_id;
    if (ap->replace_mbox) {
        int64_t src = s->sel && s->sel->mu ? s->sel->owner : s->account_id;
        const unsigned rm = ACL_DELMSG | ACL_EXPUNGE;
        if (src != dst || (imap_sel_rights(s) & rm) != rm) {
            ap->noperm = true;
            return true;
        }
    }
    if (dst == s->account_id)
        return true;
    if ((ap->store = imap_shared_held(s, dst)) != NULL)
        return true;
    /* no job of the command's own runs meanwhile (ap_abort) */
    ap->phase = AP_LINE;
    if (imap_shared_acquire(s, dst, ref.owner_address, ap_store_go, NULL, NULL) == 0)
        return false;
    ap->phase = AP_JOB;
    ap->err = STORAGE_E_TEMP;
    return true;
}

static void ap_begin(struct imap_session *s, struct imap_append *ap, const char *tag)
{
    if (tag)
        snprintf(s->tag, sizeof(s->tag), "%s", tag);
    imap_cont_start(s, &append_cont, ap);
    if (!s->mu)
        ap->err = STORAGE_E_TEMP;
    else if (!ap_target(s, ap))
        return;
    ap_run(s);
}

/* The literal hook of APPEND's row: a line announcing a literal. When it
 * is a literal of APPEND's message data (a message, or a TEXT part), the
 * command takes over from here and streams it. */
bool imap_append_literal(struct imap_session *s, uint64_t n, bool sync)
{
    const char *cmd = s->cmd.p, *lit;
    size_t len = s->cmd.len, i = 0;
    struct imap_args a;
    char tag[IMAP_TAG_MAX];

    /* tag SP "APPEND" SP mailbox ..., tag SP ["UID" SP] "REPLACE" SP n SP mailbox ... */
    while (i < len && cmd[i] != ' ')
        i++;
    size_t nl = len - i >= 8 && !strncasecmp(cmd + i, " APPEND ", 8)          ? 7
                : len - i >= 9 && !strncasecmp(cmd + i, " REPLACE ", 9)       ? 8
                : len - i >= 13 && !strncasecmp(cmd + i, " UID REPLACE ", 13) ? 12
                                                                              : 0;
    if (i == 0 || i >= IMAP_TAG_MAX || nl == 0)
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
    imap_args_init(&a, cmd + i + nl, (size_t)(lit - literal8 - (cmd + i + nl)),
                   conn_conf(s->c)->imap_max_nesting);
    a.utf8 = s->utf8;
    ap->ps = PS_MSG;
    ap->tail_lit8 = literal8;
    if ((nl != 7 && replace_target(s, ap, &a, nl == 12) != NULL) ||
        imap_args_sp(&a) != IMAP_ARG_OK ||
        imap_args_mailbox(&a, ap->mbox, sizeof(ap->mbox)) != IMAP_ARG_OK ||
        parse_piece(s, ap, &a, true) != NULL) {
        ap_destroy(ap);
        return false; /* the literal is something else: read it as such */
    }
    /* from here on, APPEND reads its input (the session drops the
     * command assembled so far) */
    ap->tail_n = n;
    ap->tail_sync = sync;
    ap->tail_lit8 = literal8;
    ap_begin(s, ap, tag);
    return true;
}

/* An APPEND, REPLACE or UID REPLACE (RFC 8508: APPEND with the message
 * replaced named first) whose data holds no literal (CATENATE of URLs
 * alone), or one the literal hook did not take (a syntax error). */
static void append_command(struct imap_session *s, struct imap_args *a, bool replace)
{
    struct imap_append *ap = calloc(1, sizeof(*ap));
    const char *why = NULL;
    int r = IMAP_ARG_OK;

    if (!ap) {
        imap_finish(s, "NO", "[UNAVAILABLE] Out of memory.");
        return;
    }
    ap->ps = PS_MSG;
    if ((replace && (why = replace_target(s, ap, a, s->uid_cmd)) != NULL) ||
        (r = imap_args_sp(a)) != IMAP_ARG_OK ||
        (r = imap_args_mailbox(a, ap->mbox, sizeof(ap->mbox))) != IMAP_ARG_OK ||
        (why = parse_piece(s, ap, a, false)) != NULL) {
        ap_destroy(ap);
        if (r != IMAP_ARG_OK)
            imap_bad_arg(s, r,
                         replace
                             ? "[UID] REPLACE n mailbox [(flags)] [\"date-time\"] {size}"
                             : "APPEND mailbox [(flags)] [\"date-time\"] {size} | CATENATE (...)");
        else
            imap_bad(s, "%s", why);
        return;
    }
    ap->tail = TAIL_END;
    ap_begin(s, ap, NULL);
}

void imap_cmd_append(struct imap_session *s, struct imap_args *a)
{
    append_command(s, a, false);
}

void imap_cmd_replace(struct imap_session *s, struct imap_args *a)
{
    append_command(s, a, true);
}

/* ---- input while an APPEND runs ---- */

/* The text after a literal, up to the next literal or the end. */
static void next_line(struct imap_session *s, const char *line, size_t len)
{
    struct imap_append *ap = s->cont_data;
    uint64_t n = 0;
    bool sync = true;

    bool literal8 = false;
    const char *lit = len ? literal_start(line, len, &literal8) : NULL;
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
    if (ap->errwhat) {
        /* the syntax went wrong: to the end of the command, dropping
         * the non-synchronizing literals the client sends anyway */
        if (ok && !sync) {
            ap->left = n;
            ap->phase = AP_DISCARD;
            return;
        }
        ap_answer(s);
        return;
    }
    struct imap_args a;
    imap_args_init(&a, line, k, conn_conf(s->c)->imap_max_nesting);
    ap->tail_lit8 = literal8;
    const char *why = parse_piece(s, ap, &a, ok);
    if (why) {
        ap->errwhat = why;
        if (ok && !sync) {
            ap->left = n; /* swallow the literal the client sends anyway */
            ap->phase = AP_DISCARD;
            return;
        }
        ap_answer(s);
        return;
    }
    if (ok && !sync && n > IMAP_LITERAL_MINUS_MAX && !conn_conf(s->c)->imap_literal_plus)
        ap->errwhat = "[TOOBIG] Non-synchronizing literal over 4096 bytes (LITERAL-): send it "
                      "synchronizing.";
    ap->tail_n = n;
    ap->tail_sync = sync;
    ap->tail_lit8 = literal8;
    ap_run(s);
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
    case AP_URL:
        n = linebuf_take(&s->in, (size_t)ap->left, &p);
        memcpy(ap->url + ap->url_len, p, n);
        ap->url_len += n;
        ap->left -= n;
        if (ap->left)
            return n > 0;
        ap->phase = AP_LINE;
        const char *why = memchr(ap->url, 0, ap->url_len)
                              ? "NUL in a URL."
                              : cat_url_add(s, ap, ap->url, ap->url_len);
        if (why && !ap->errwhat)
            ap->errwhat = why;
        return true;
    case AP_DATA:
        if (!ap->chunk && ap->spare) {
            ap->chunk = ap->spare;
            ap->spare = NULL;
        }
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
        if (n && ap->literal8 && !ap->nul && memchr(p, 0, n))
            ap->nul = true;
        if (n) /* nothing read yet: p may be NULL */
            memcpy(ap->chunk + ap->chunk_len, p, n);
        ap->chunk_len += n;
        ap->left -= n;
        if (ap->chunk_len == APPEND_CHUNK || (ap->left == 0 && ap->chunk_len > ap->seg_off)) {
            struct ap_seg g = {.msg = ap->nmsgs - 1,
                               .off = ap->seg_off,
                               .len = ap->chunk_len - ap->seg_off,
                               .last = ap->left == 0 && !ap->cat,
                               .announced = ap->announced};
            struct ap_job *aj = ap->pending && ap->pending->growing ? ap->pending : NULL;
            if (aj) {
                /* the message joins the job waiting (it fit, whole) */
                aj->seg[aj->nseg++] = g;
                aj->chunk_len = ap->chunk_len;
                ap->seg_off = ap->chunk_len;
                ap->phase = AP_LINE;
                if (!s->job) {
                    /* the write it waited for has ended */
                    ap->pending = NULL;
                    ap->chunk = NULL;
                    ap->chunk_len = ap->seg_off = 0;
                    aj->growing = false;
                    ap_launch(s, aj);
                } else if (aj->nseg == APPEND_JOB_SEGS || ap->chunk_len == APPEND_CHUNK) {
                    ap_seal(ap);
                }
                return true;
            }
            if (!(aj = calloc(1, sizeof(*aj)))) {
                ap->err = STORAGE_E_NOMEM;
                ap->phase = ap->left ? AP_DISCARD : AP_LINE;
                return true;
            }
            aj->kind = 1;
            aj->seg[0] = g;
            aj->nseg = 1;
            /* a message literal is read on while its bytes are written;
             * a TEXT part's, whose message goes on with steps, is not */
            aj->reading = !ap->cat;
            aj->chunk = ap->chunk;
            aj->chunk_len = ap->chunk_len;
            if (s->job && !ap->pending && aj->reading && g.last && ap->chunk_len < APPEND_CHUNK) {
                /* a write runs: this message waits for it, and the ones
                 * that come whole meanwhile join it in the same buffer */
                aj->growing = true;
                ap->pending = aj;
                ap->seg_off = ap->chunk_len;
                ap->phase = AP_LINE;
                return true;
            }
            ap->chunk = NULL;
            ap->chunk_len = ap->seg_off = 0;
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
            ap_drop_drafts(s, ap);
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
