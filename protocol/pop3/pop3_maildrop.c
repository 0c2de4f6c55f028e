/* POP3 maildrop on the storage: the INBOX snapshot taken at login, message
 * bytes read in chunks for RETR/TOP, the UPDATE state's \Seen and expunge,
 * all on the thread pool; and the per-account lock that keeps POP3 sessions
 * of one maildrop exclusive. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol/job.h"
#include "protocol/mailuser.h"
#include "protocol/pop3/pop3_int.h"
#include "server/base/config.h"
#include "server/base/log.h"
#include "storage/storage.h"

/* ---- the lock table (loop thread only) ---- */

static int64_t *locks;
static size_t nlocks, caplocks;

bool pop3_lock(int64_t id)
{
    for (size_t i = 0; i < nlocks; i++)
        if (locks[i] == id)
            return false;
    if (nlocks == caplocks) {
        size_t ncap = caplocks ? caplocks * 2 : 16;
        int64_t *n = realloc(locks, ncap * sizeof(*n));
        if (!n)
            return false;
        locks = n;
        caplocks = ncap;
    }
    locks[nlocks++] = id;
    return true;
}

void pop3_unlock(int64_t id)
{
    for (size_t i = 0; i < nlocks; i++) {
        if (locks[i] == id) {
            locks[i] = locks[--nlocks];
            return;
        }
    }
}

/* ---- back end state ---- */

/* An open message being streamed; owned by the job while it runs. */
struct md_stream {
    int fd;
    uint32_t uid;
};

enum md_kind { MD_SNAPSHOT, MD_READ, MD_UPDATE };

/* A job's own data: the work function touches only this. */
struct md_job {
    enum md_kind kind;
    struct pop3_session *s; /* loop side only (done); never read by the work */
    struct storage_user *u;
    int64_t mbox;
    int err;
    struct mailuser *release_mu; /* the session went away: drop its hold here */
    /* snapshot */
    struct pop3_msg *msgs;
    size_t n, cap;
    uint32_t uidvalidity;
    /* read */
    struct md_stream *st;
    char *buf;
    size_t len;
    bool eof;
    /* update */
    uint32_t *seen, *deleted;
    size_t nseen, ndeleted, expunged;
};

struct md {
    struct mailuser_req *req;
    struct mailuser *mu;
    int64_t mbox;
    struct proto_job *job;
    struct md_job *jd;
    struct md_stream *st; /* between reads */
};

static void stream_free(struct md_stream *st)
{
    if (!st)
        return;
    if (st->fd >= 0)
        close(st->fd);
    free(st);
}

static void md_job_free(void *data)
{
    struct md_job *j = data;
    stream_free(j->st);
    free(j->buf);
    free(j->msgs);
    free(j->seen);
    free(j->deleted);
    if (j->release_mu)
        mailuser_release(j->release_mu);
    free(j);
}

/* A job of the session ended, or could not start (loop): the back end is
 * free again, the stream it read back between reads. Returns the session. */
static struct pop3_session *job_ended(struct md_job *j)
{
    struct pop3_session *s = j->s;
    struct md *md = s->store;

    md->job = NULL;
    md->jd = NULL;
    if (j->st) {
        md->st = j->st;
        j->st = NULL;
    }
    return s;
}

/* ---- snapshot ---- */

static int snap_cb(void *arg, const struct storage_msg *m)
{
    struct md_job *j = arg;
    if (j->n == j->cap) {
        size_t ncap = j->cap ? j->cap * 2 : 256;
        struct pop3_msg *n = realloc(j->msgs, ncap * sizeof(*n));
        if (!n) {
            j->err = STORAGE_E_NOMEM;
            return 1;
        }
        j->msgs = n;
        j->cap = ncap;
    }
    j->msgs[j->n++] = (struct pop3_msg){.uid = m->uid, .size = m->size};
    return 0;
}

static void snap_work(void *data)
{
    struct md_job *j = data;
    struct storage_mbox m;
    int r = storage_mbox_get(j->u, "INBOX", &m);
    if (r < 0) {
        j->err = r;
        return;
    }
    j->mbox = m.id;
    j->uidvalidity = m.uidvalidity;
    r = storage_fetch(j->u, m.id, NULL, 0, snap_cb, j);
    if (r < 0 && !j->err)
        j->err = r;
}

static void snap_done(void *data)
{
    struct md_job *j = data;
    struct pop3_session *s = job_ended(j);
    struct md *md = s->store;
    struct pop3_msg *msgs = j->msgs;

    if (!j->err)
        md->mbox = j->mbox;
    j->msgs = NULL;
    if (j->err) {
        free(msgs);
        msgs = NULL;
    }
    pop3_open_done(s, j->err, msgs, j->err ? 0 : j->n, j->uidvalidity);
}

static struct md_job *job_new(struct pop3_session *s, enum md_kind kind)
{
    struct md *md = s->store;
    struct md_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->kind = kind;
    j->s = s;
    j->u = mailuser_storage(md->mu);
    j->mbox = md->mbox;
    return j;
}

static int job_run(struct pop3_session *s, struct md_job *j, proto_job_fn work, proto_job_fn done)
{
    struct md *md = s->store;
    md->job = proto_job_start(conn_loop(s->c), mailuser_id(md->mu), work, done, md_job_free, j);
    if (!md->job) {
        /* the caller still owns what it put in j; give the stream back */
        job_ended(j);
        md_job_free(j);
        return -1;
    }
    md->jd = j;
    return 0;
}

static void on_mailuser(void *arg, int err, struct mailuser *mu)
{
    struct pop3_session *s = arg;
    struct md *md = s->store;

    md->req = NULL;
    if (err < 0) {
        pop3_open_done(s, err, NULL, 0, 0);
        return;
    }
    md->mu = mu;
    struct md_job *j = job_new(s, MD_SNAPSHOT);
    if (!j || job_run(s, j, snap_work, snap_done) < 0)
        pop3_open_done(s, STORAGE_E_NOMEM, NULL, 0, 0);
}

static int md_open(struct pop3_session *s, const struct auth_account *acct)
{
    uv_loop_t *loop = conn_loop(s->c);
    if (!loop)
        return -1;
    struct md *md = calloc(1, sizeof(*md));
    if (!md)
        return -1;
    s->store = md;
    md->req = mailuser_open(loop, conn_conf(s->c)->data_dir, acct, on_mailuser, s);
    if (!md->req) {
        free(md);
        s->store = NULL;
        return -1;
    }
    return 0;
}

/* ---- reading ---- */

static void read_work(void *data)
{
    struct md_job *j = data;
    struct md_stream *st = j->st;

    if (st->fd < 0) {
        uint64_t size;
        int r = storage_msg_open(j->u, j->mbox, st->uid, &st->fd, &size);
        if (r < 0) {
            st->fd = -1;
            j->err = r;
            return;
        }
    }
    while (j->len < POP3_CHUNK) {
        ssize_t n = read(st->fd, j->buf + j->len, POP3_CHUNK - j->len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            j->err = STORAGE_E_TEMP;
            return;
        }
        if (n == 0) {
            j->eof = true;
            return;
        }
        j->len += (size_t)n;
    }
}

static void read_done(void *data)
{
    struct md_job *j = data;
    struct pop3_session *s = job_ended(j);

    pop3_read_done(s, j->err, j->buf, j->len, j->eof);
}

static int md_read(struct pop3_session *s, uint32_t uid, bool first)
{
    struct md *md = s->store;
    if (!md || !md->mu || md->job)
        return -1;
    if (first || !md->st || md->st->uid != uid) {
        stream_free(md->st);
        md->st = calloc(1, sizeof(*md->st));
        if (!md->st)
            return -1;
        md->st->fd = -1;
        md->st->uid = uid;
    }
    struct md_job *j = job_new(s, MD_READ);
    if (!j)
        return -1;
    j->buf = malloc(POP3_CHUNK);
    if (!j->buf) {
        free(j);
        return -1;
    }
    j->st = md->st;
    md->st = NULL;
    return job_run(s, j, read_work, read_done);
}

/* ---- UPDATE ---- */

/* The uids (snapshot order, which is ascending UID order) as ranges in
 * *r (caller frees), set over them. 0, or STORAGE_E_NOMEM. */
static int uidset(const uint32_t *uids, size_t n, struct storage_range **r,
                  struct storage_uidset *set)
{
    size_t k = 0;
    *r = malloc((n ? n : 1) * sizeof(**r));
    if (!*r)
        return STORAGE_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (k && (*r)[k - 1].hi != UINT32_MAX && (*r)[k - 1].hi + 1 == uids[i])
            (*r)[k - 1].hi = uids[i];
        else
            (*r)[k++] = (struct storage_range){uids[i], uids[i]};
    }
    *set = (struct storage_uidset){k, *r};
    return 0;
}

static void update_work(void *data)
{
    struct md_job *j = data;
    struct storage_range *r;
    struct storage_uidset set;

    if (j->nseen) {
        j->err = uidset(j->seen, j->nseen, &r, &set);
        if (j->err)
            return;
        int e = storage_store(j->u, j->mbox, &set, STORAGE_STORE_ADD, STORAGE_FLAG_SEEN, NULL, 0, 0,
                              NULL, NULL, NULL);
        free(r);
        /* a message expunged meanwhile by IMAP is not an error here */
        if (e < 0 && e != STORAGE_E_NOMSG) {
            j->err = e;
            return;
        }
    }
    if (j->ndeleted) {
        struct storage_uidlist gone = {0};
        j->err = uidset(j->deleted, j->ndeleted, &r, &set);
        if (j->err)
            return;
        int e = storage_expunge(j->u, j->mbox, &set, false, &gone);
        free(r);
        j->expunged = gone.n;
        storage_uidlist_free(&gone);
        if (e < 0)
            j->err = e;
    }
}

static void update_done(void *data)
{
    struct md_job *j = data;

    pop3_update_done(job_ended(j), j->err, j->expunged);
}

static int md_update(struct pop3_session *s, const uint32_t *seen, size_t nseen,
                     const uint32_t *deleted, size_t ndeleted)
{
    struct md *md = s->store;
    if (!md || !md->mu || md->job)
        return -1;
    struct md_job *j = job_new(s, MD_UPDATE);
    if (!j)
        return -1;
    j->seen = malloc((nseen ? nseen : 1) * sizeof(uint32_t));
    j->deleted = malloc((ndeleted ? ndeleted : 1) * sizeof(uint32_t));
    if (!j->seen || !j->deleted) {
        md_job_free(j);
        return -1;
    }
    if (nseen)
        memcpy(j->seen, seen, nseen * sizeof(uint32_t));
    if (ndeleted)
        memcpy(j->deleted, deleted, ndeleted * sizeof(uint32_t));
    j->nseen = nseen;
    j->ndeleted = ndeleted;
    return job_run(s, j, update_work, update_done);
}

/* ---- end ---- */

static void md_cancel(struct pop3_session *s)
{
    struct md *md = s->store;
    if (!md)
        return;
    if (md->req) {
        mailuser_open_cancel(md->req);
        md->req = NULL;
    }
    if (md->job) {
        /* the work may still be using the store: the job drops the hold */
        proto_job_cancel(md->job);
        md->jd->release_mu = md->mu;
        md->mu = NULL;
        md->job = NULL;
        md->jd = NULL;
    }
}

static void md_release(struct pop3_session *s)
{
    struct md *md = s->store;
    if (!md)
        return;
    md_cancel(s);
    stream_free(md->st);
    if (md->mu)
        mailuser_release(md->mu);
    free(md);
    s->store = NULL;
}

const struct pop3_store pop3_store_storage = {
    .open = md_open,
    .read = md_read,
    .update = md_update,
    .cancel = md_cancel,
    .release = md_release,
};

const struct pop3_store *pop3_store = &pop3_store_storage;
