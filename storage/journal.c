/* The delivery journal: deliveries to accounts whose store is not open.
 *
 * Opening an account's index costs more than the rest of a delivery
 * together: the schema is read, the WAL read again, statements prepared,
 * and the connection closed after. When mail goes to thousands of accounts
 * that no session has open, every message paid for it. Instead, a delivery
 * to an INBOX through a light handle (light.c) is written to one journal for
 * the whole data directory, <data_dir>/deliveries.sqlite:
 *
 * - the message file, written in the account's tmp/, is linked into
 *   <data_dir>/pending/ as "<id>.<its unique name>", then the file and
 *   pending/ are fsync'd, by each delivery in its own thread;
 * - a row holds what the index needs of it: its file, size, arrival time
 *   and the summary parsed while it was written (envelope, structure,
 *   header block, preview), but not its search text: that is as long as
 *   the message's text parts, and writing it into the journal's WAL, then
 *   into the journal by the checkpoint, cost a quarter of a delivery's CPU
 *   for a text the index receives only later. The drain reads it again
 *   from the file (rows of older versions that hold one keep theirs);
 * - concurrent deliveries share one transaction (group commit, up to
 *   JOURNAL_BATCH_MAX): one commit of the journal, whatever the
 *   accounts; each is acknowledged only after that commit. When a
 *   process that journals opens the journal, the files of pending/ no
 *   row names (a crash before the commit) go.
 *
 * The next write transaction on the account's index, in any process, first
 * moves its rows in (journal_drain, called by write_txn_path): UIDs are
 * given then, in the order of delivery, each file is linked into INBOX's
 * new/ under its final name (",U=" and ",S=") and the index records the
 * newest journal row it took in (meta journal_seq, with the journal's
 * random epoch). A full open writes (its rescan) and so takes them in before
 * any session reads. The index commits first, then the journal forgets the
 * rows; a crash in between leaves rows the index already has, which the
 * next drain recognizes by journal_seq and only forgets. The final names are
 * the same when a drain is repeated after a crash (same UIDs), so a link
 * already there is the same file.
 *
 * In this process a journaled delivery never races an open store: a full
 * handle counts as an open of its account (journal_hold), an account with
 * one is delivered through it, and an open waits for the account's
 * deliveries being journaled (journal_hold) before its rescan takes them in.
 *
 * Quota: the journal keeps each account's usage as its index last counted
 * it (written when a connection to the index closes, and by each drain) and
 * the journal's own rows are added to it. An account with a quota and no
 * usage known is delivered through its index, whose close then records it.
 *
 * Deliveries into a folder (a detail address), to an account without an
 * index yet, and any the journal cannot take (no journal, an error) go
 * through the index as before. */
#include "storage/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/base/log.h"
#include "storage/mime.h"

#define JOURNAL_FILE "deliveries.sqlite"
#define JOURNAL_BATCH_MAX 64
/* rows moved into an index per transaction of a drain */
#define JOURNAL_DRAIN_CHUNK 256
#define ACCT_BUCKETS 4096 /* power of two */

struct jacct {
    int64_t id;
    unsigned opens;    /* full handles of the account open in this process */
    unsigned inflight; /* its deliveries being journaled now */
    bool pending;      /* the journal may hold rows of it */
    unsigned npending; /* its rows, as this process counts them */
    /* the usage last written for it (journal_note_usage skips the same) */
    bool noted;
    int64_t noted_bytes, noted_msgs, noted_seq;
    struct jacct *next;
};

/* One delivery waiting for its batch, on the stack of its thread. */
struct jitem {
    int64_t id;
    const char *src;  /* the draft's file */
    const char *base; /* its name in src, the row's file (link_synced) */
    uint64_t size;
    int64_t internal_date;
    const struct mime_summary *ms;
    uint64_t max_bytes, max_msgs; /* 0: no limit */
    char dst[STORAGE_PATH_MAX];
    bool linked, done;
    int rc;
    struct jitem *next;
};

struct journal {
    char *data_dir;
    char pdir[STORAGE_PATH_MAX]; /* <data_dir>/pending */
    int64_t epoch;
    sqlite3 *w; /* batches, drains' cleanup, usage; under wmu */
    sqlite3 *r; /* quota reads and drains' loads; under rmu */
    sqlite3 *ck; /* checkpoints (storage_journal_checkpoint); under ckmu */
    pthread_mutex_t wmu, rmu, ckmu;
    pthread_mutex_t mu;  /* accounts and the queue */
    pthread_cond_t cond; /* a batch ended; an account's inflight fell */
    struct jacct *acct[ACCT_BUCKETS];
    struct jitem *qhead, **qtail;
    bool leading;
    struct journal *next;
};

static pthread_mutex_t journals_lock = PTHREAD_MUTEX_INITIALIZER;
static struct journal *journals; /* only ever added to the head, until exit */

/* Checkpoints. The rows of a burst of deliveries (each with its search
 * text) fill the journal's WAL fast: SQLite's own checkpoint every 1,000
 * pages ran in the committing batch's leader, holding the journal's
 * writer while it copied 4 MB into the database and synced it, and every
 * delivery queued behind it waited as long. The writer now only notes
 * that the WAL grew past JOURNAL_CKPT_PAGES; the checkpoint runs on a
 * connection of its own (storage_journal_checkpoint, a pool job the
 * caller starts) beside the batches, which go on writing meanwhile. Past
 * JOURNAL_CKPT_INLINE pages (no job came) the writer checkpoints itself,
 * as before, so that the WAL stays bounded. */
#define JOURNAL_CKPT_PAGES 1000
#define JOURNAL_CKPT_INLINE (8 * JOURNAL_CKPT_PAGES)

static atomic_bool ckpt_due;

static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)arg;
    if (pages >= JOURNAL_CKPT_INLINE)
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    else if (pages >= JOURNAL_CKPT_PAGES)
        atomic_store(&ckpt_due, true);
    return SQLITE_OK;
}

bool storage_journal_checkpoint_due(void)
{
    return atomic_load(&ckpt_due);
}

void storage_journal_checkpoint(void)
{
    struct journal *j;
    char path[STORAGE_PATH_MAX];

    atomic_store(&ckpt_due, false);
    pthread_mutex_lock(&journals_lock);
    j = journals;
    pthread_mutex_unlock(&journals_lock);
    for (; j; j = j->next) {
        pthread_mutex_lock(&j->ckmu);
        if (!j->ck && pathf(path, sizeof(path), "%s/" JOURNAL_FILE, j->data_dir) >= 0 &&
            db_open_conn(path, false, &j->ck) != 0)
            j->ck = NULL;
        if (j->ck)
            sqlite3_wal_checkpoint_v2(j->ck, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_unlock(&j->ckmu);
    }
}

static const char journal_schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS pending("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  account INTEGER NOT NULL,"
    "  file TEXT NOT NULL," /* pending/<account>.<file> */
    "  size INTEGER NOT NULL,"
    "  internal_date INTEGER NOT NULL,"
    "  sent_date INTEGER NOT NULL,"
    "  envelope TEXT, bodystructure TEXT, body TEXT,"
    "  subject TEXT, from_ TEXT, to_ TEXT, cc TEXT, bcc TEXT,"
    "  message_id TEXT, in_reply_to TEXT, refs TEXT,"
    "  header BLOB, preview TEXT, text TEXT);"
    "CREATE INDEX IF NOT EXISTS pending_account ON pending(account, seq);"
    /* the account's usage as its index counted it, with the newest
     * journal row it had taken in then (rows after it are not counted) */
    "CREATE TABLE IF NOT EXISTS usage("
    "  account INTEGER PRIMARY KEY, bytes INTEGER NOT NULL, messages INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL);";

static struct jacct *acct_get(struct journal *j, int64_t id, bool create)
{
    struct jacct **b = &j->acct[(uint64_t)id & (ACCT_BUCKETS - 1)], *a;

    for (a = *b; a; a = a->next)
        if (a->id == id)
            return a;
    if (!create || !(a = calloc(1, sizeof(*a))))
        return NULL;
    a->id = id;
    a->next = *b;
    *b = a;
    return a;
}

static void journal_free(struct journal *j)
{
    db_close(j->w);
    db_close(j->r);
    db_close(j->ck);
    for (size_t i = 0; i < ACCT_BUCKETS; i++) {
        while (j->acct[i]) {
            struct jacct *a = j->acct[i];
            j->acct[i] = a->next;
            free(a);
        }
    }
    pthread_mutex_destroy(&j->wmu);
    pthread_mutex_destroy(&j->rmu);
    pthread_mutex_destroy(&j->ckmu);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cond);
    free(j->data_dir);
    free(j);
}

/* Removes the files of pending/ that no row names: linked by a batch whose
 * commit a crash prevented. Only a process that journals does it, when it
 * opens the journal, before it links anything. */
static void sweep(struct journal *j)
{
    char p[STORAGE_PATH_MAX];
    struct dirent *de;
    sqlite3_stmt *st;
    unsigned n = 0;
    DIR *d;

    if (!(d = opendir(j->pdir)))
        return;
    if (db_prepare(j->w, "SELECT 1 FROM pending WHERE account = ? AND file = ?", &st) != 0) {
        closedir(d);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char *dot;
        long long id = strtoll(de->d_name, &dot, 10);
        if (de->d_name[0] == '.' || dot == de->d_name || *dot != '.')
            continue;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, dot + 1, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE && pathf(p, sizeof(p), "%s/%s", j->pdir, de->d_name) >= 0 &&
            unlink(p) == 0)
            n++;
    }
    db_finalize(st);
    closedir(d);
    if (n)
        log_info("storage: delivery journal: removed %u file(s) of deliveries never committed", n);
}

static int journal_setup(struct journal *j, const char *path)
{
    sqlite3_stmt *st;
    int64_t epoch = 0;
    int rc;

    if ((rc = db_open_conn(path, true, &j->w)) != 0 || (rc = db_exec(j->w, journal_schema)) != 0)
        return rc;
    sqlite3_wal_hook(j->w, on_wal_commit, NULL); /* in place of SQLite's checkpoints */
    if ((rc = db_meta_get(j->w, "epoch", &epoch)) != 0)
        return rc;
    if (epoch == 0) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
            return STORAGE_E_FAIL;
        epoch = (int64_t)(r >> 2) | 1;
        /* another process may have set it meanwhile: the first one stays */
        if ((rc = db_run_text(j->w, "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", "epoch",
                              epoch)) != 0 ||
            (rc = db_meta_get(j->w, "epoch", &epoch)) != 0)
            return rc;
    }
    j->epoch = epoch;
    if (pathf(j->pdir, sizeof(j->pdir), "%s/pending", j->data_dir) < 0)
        return STORAGE_E_FAIL;
    if (mkdir(j->pdir, 0700) == 0) {
        if ((rc = fsync_dir(j->data_dir)) != 0) /* the directory made durable */
            return rc;
    } else if (errno != EEXIST) {
        return err_from_errno(errno);
    }
    if (storage_limits.delivery_journal)
        sweep(j);
    if ((rc = db_prepare(j->w, "SELECT account, count(*) FROM pending GROUP BY account", &st)) != 0)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct jacct *a = acct_get(j, sqlite3_column_int64(st, 0), true);
        if (!a) {
            db_finalize(st);
            return STORAGE_E_NOMEM;
        }
        a->pending = true;
        a->npending = (unsigned)sqlite3_column_int64(st, 1);
    }
    rc = rc == SQLITE_DONE ? 0 : err_from_sqlite(j->w, rc);
    db_finalize(st);
    if (rc)
        return rc;
    return db_open_conn(path, false, &j->r);
}

/* The journal of data_dir, opened at its first use in this process;
 * created when create, else NULL when there is no file. */
static struct journal *journal_get(const char *data_dir, bool create)
{
    char path[STORAGE_PATH_MAX];
    struct journal *j;
    struct stat sb;

    pthread_mutex_lock(&journals_lock);
    for (j = journals; j; j = j->next)
        if (strcmp(j->data_dir, data_dir) == 0)
            break;
    if (j || pathf(path, sizeof(path), "%s/" JOURNAL_FILE, data_dir) < 0 ||
        (!create && stat(path, &sb) < 0)) {
        pthread_mutex_unlock(&journals_lock);
        return j;
    }
    if (!(j = calloc(1, sizeof(*j))) || !(j->data_dir = strdup(data_dir))) {
        free(j);
        pthread_mutex_unlock(&journals_lock);
        return NULL;
    }
    pthread_mutex_init(&j->wmu, NULL);
    pthread_mutex_init(&j->rmu, NULL);
    pthread_mutex_init(&j->ckmu, NULL);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cond, NULL);
    j->qtail = &j->qhead;
    int rc = journal_setup(j, path);
    if (rc) {
        log_error("storage: delivery journal %s: %s", path, storage_strerror(rc));
        journal_free(j);
        j = NULL;
    } else {
        j->next = journals;
        journals = j;
    }
    pthread_mutex_unlock(&journals_lock);
    return j;
}

void storage_journal_close_all(void)
{
    pthread_mutex_lock(&journals_lock);
    while (journals) {
        struct journal *j = journals;
        journals = j->next;
        journal_free(j);
    }
    pthread_mutex_unlock(&journals_lock);
}

/* ---- full handles ---- */

void journal_hold(struct storage_user *u)
{
    struct journal *j = journal_get(u->data_dir, storage_limits.delivery_journal);
    struct jacct *a;

    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    if ((a = acct_get(j, u->id, true)) != NULL) {
        a->opens++;
        u->journal_held = true;
        while (a->inflight)
            pthread_cond_wait(&j->cond, &j->mu);
    }
    pthread_mutex_unlock(&j->mu);
}

void journal_release(struct storage_user *u)
{
    struct journal *j;
    struct jacct *a;

    if (!u->journal_held || !(j = journal_get(u->data_dir, false)))
        return;
    pthread_mutex_lock(&j->mu);
    if ((a = acct_get(j, u->id, false)) != NULL && a->opens)
        a->opens--;
    pthread_mutex_unlock(&j->mu);
    u->journal_held = false;
}

/* ---- usage and quota ---- */

/* Under j->wmu: records the usage the index counted with the newest row it
 * took in; an older count (a close that read the index before a drain
 * wrote it) does not replace a newer one. */
static int usage_write(struct journal *j, struct jacct *a, int64_t id, int64_t bytes, int64_t msgs,
                       int64_t seq)
{
    int rc = db_run(j->w,
                    "INSERT INTO usage(account, bytes, messages, seq) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT(account) DO UPDATE SET bytes = ?2, messages = ?3, seq = ?4"
                    " WHERE ?4 >= usage.seq",
                    id, bytes, msgs, seq);
    if (rc == 0 && a) {
        pthread_mutex_lock(&j->mu);
        a->noted = true;
        a->noted_bytes = bytes;
        a->noted_msgs = msgs;
        a->noted_seq = seq;
        pthread_mutex_unlock(&j->mu);
    }
    return rc;
}

/* The index's counters and the newest journal row it holds (0 when it
 * holds none of this journal's epoch). */
static int index_counts(struct journal *j, sqlite3 *db, int64_t *bytes, int64_t *msgs, int64_t *seq)
{
    int64_t epoch = 0;
    int rc;

    *bytes = *msgs = *seq = 0;
    if ((rc = db_meta_get(db, "quota_bytes", bytes)) != 0 ||
        (rc = db_meta_get(db, "quota_messages", msgs)) != 0 ||
        (rc = db_meta_get(db, "journal_epoch", &epoch)) != 0 ||
        (rc = db_meta_get(db, "journal_seq", seq)) != 0)
        return rc;
    if (epoch != j->epoch)
        *seq = 0;
    return 0;
}

void journal_note_usage(struct storage_user *u)
{
    struct journal *j;
    struct jacct *a;
    int64_t b, m, seq;
    bool same;

    if (!u->wdb || !(j = journal_get(u->data_dir, storage_limits.delivery_journal)))
        return;
    if (index_counts(j, u->wdb, &b, &m, &seq) != 0)
        return;
    pthread_mutex_lock(&j->mu);
    a = acct_get(j, u->id, true);
    same = a && a->noted && a->noted_bytes == b && a->noted_msgs == m && a->noted_seq == seq;
    pthread_mutex_unlock(&j->mu);
    if (same)
        return;
    pthread_mutex_lock(&j->wmu);
    if (usage_write(j, a, u->id, b, m, seq) != 0)
        log_warn("storage: user %" PRId64 ": its usage not recorded in the delivery journal",
                 u->id);
    pthread_mutex_unlock(&j->wmu);
}

static const char sql_used[] =
    "SELECT u.bytes + coalesce((SELECT sum(size) FROM pending p"
    "   WHERE p.account = u.account AND p.seq > u.seq), 0),"
    " u.messages + (SELECT count(*) FROM pending p WHERE p.account = u.account AND p.seq > u.seq)"
    " FROM usage u WHERE u.account = ?";

/* What the account uses, its journaled deliveries included: 0, JOURNAL_NO
 * when its usage is not known, or an error. */
static int used_by(sqlite3 *db, int64_t id, uint64_t *bytes, uint64_t *msgs)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = db_prepare(db, sql_used, &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int64_t b = sqlite3_column_int64(st, 0), m = sqlite3_column_int64(st, 1);
        *bytes = b < 0 ? 0 : (uint64_t)b;
        *msgs = m < 0 ? 0 : (uint64_t)m;
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? JOURNAL_NO : err_from_sqlite(db, rc);
    }
    db_finalize(st);
    return rc;
}

static void limits_of(struct storage_user *u, uint64_t *maxb, uint64_t *maxm)
{
    pthread_mutex_lock(&u->qlock);
    *maxb = u->quota_bytes;
    *maxm = u->quota_messages;
    pthread_mutex_unlock(&u->qlock);
}

int journal_quota_room(struct storage_user *u, uint64_t *bytes, uint64_t *messages)
{
    uint64_t maxb, maxm, b, m;
    struct journal *j;
    int rc;

    if (!storage_limits.delivery_journal || !u->light || !(j = journal_get(u->data_dir, false)))
        return JOURNAL_NO;
    limits_of(u, &maxb, &maxm);
    *bytes = *messages = UINT64_MAX;
    if (!maxb && !maxm)
        return 0;
    pthread_mutex_lock(&j->rmu);
    rc = used_by(j->r, u->id, &b, &m);
    pthread_mutex_unlock(&j->rmu);
    if (rc)
        return rc;
    if (maxb)
        *bytes = b < maxb ? maxb - b : 0;
    if (maxm)
        *messages = m < maxm ? maxm - m : 0;
    return 0;
}

/* ---- delivery ---- */

static const char sql_pending_ins[] =
    "INSERT INTO pending(account, file, size, internal_date, sent_date, envelope, bodystructure,"
    " body, subject, from_, to_, cc, bcc, message_id, in_reply_to, refs, header, preview, text)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/* Inside the batch's transaction: one delivery's quota check and row (its
 * file linked and synced already). Its own failure goes to c->rc; a
 * journal error is returned. */
static int item_write(struct journal *j, struct jitem *c)
{
    const struct mime_summary *ms = c->ms;
    sqlite3_stmt *st;
    int rc;

    if (c->max_bytes || c->max_msgs) {
        uint64_t b, m;
        if ((rc = used_by(j->w, c->id, &b, &m)) != 0) {
            if (rc < 0)
                return rc;
            c->rc = rc;
            return 0;
        }
        if ((c->max_bytes && (b > c->max_bytes || c->size > c->max_bytes - b)) ||
            (c->max_msgs && m >= c->max_msgs)) {
            c->rc = STORAGE_E_QUOTA;
            return 0;
        }
    }
    if ((rc = db_prepare(j->w, sql_pending_ins, &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, c->id);
    sqlite3_bind_text(st, 2, c->base, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)c->size);
    sqlite3_bind_int64(st, 4, c->internal_date);
    sqlite3_bind_int64(st, 5, ms->date);
    bind_opt(st, 6, ms->envelope);
    bind_opt(st, 7, ms->bodystructure);
    bind_opt(st, 8, ms->body);
    bind_opt(st, 9, ms->subject);
    bind_opt(st, 10, ms->from);
    bind_opt(st, 11, ms->to);
    bind_opt(st, 12, ms->cc);
    bind_opt(st, 13, ms->bcc);
    bind_opt(st, 14, ms->message_id);
    bind_opt(st, 15, ms->in_reply_to);
    bind_opt(st, 16, ms->references);
    if (ms->header)
        sqlite3_bind_blob(st, 17, ms->header, (int)ms->header_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 17);
    bind_opt(st, 18, ms->preview);
    sqlite3_bind_null(st, 19); /* the text: read from the file at the drain */
    return db_step_done(j->w, st);
}

static void run_batch(struct journal *j, struct jitem *batch)
{
    int rc;

    pthread_mutex_lock(&j->wmu);
    rc = db_begin(j->w);
    for (struct jitem *c = batch; c && !rc; c = c->next)
        rc = item_write(j, c);
    if (rc == 0)
        rc = db_commit(j->w);
    else
        db_rollback(j->w);
    if (rc) {
        log_error("storage: delivery journal: %s; delivering through the indexes",
                  storage_strerror(rc));
        for (struct jitem *c = batch; c; c = c->next)
            if (!c->rc)
                c->rc = JOURNAL_NO;
    }
    pthread_mutex_lock(&j->mu);
    for (struct jitem *c = batch; c; c = c->next) {
        if (c->linked && c->rc) {
            unlink(c->dst);
            c->linked = false;
        }
        if (c->rc == 0) {
            struct jacct *a = acct_get(j, c->id, false);
            if (a) {
                a->pending = true;
                a->npending++;
            }
        }
    }
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_unlock(&j->wmu);
}

/* Queues c and returns once its batch is written (as save_queued does for
 * one index). */
static void journal_queued(struct journal *j, struct jitem *c)
{
    pthread_mutex_lock(&j->mu);
    c->next = NULL;
    *j->qtail = c;
    j->qtail = &c->next;
    while (!c->done) {
        struct jitem *batch, *last;
        size_t k = 1;
        if (j->leading) {
            pthread_cond_wait(&j->cond, &j->mu);
            continue;
        }
        batch = last = j->qhead;
        while (last->next && k < JOURNAL_BATCH_MAX) {
            last = last->next;
            k++;
        }
        j->qhead = last->next;
        if (!j->qhead)
            j->qtail = &j->qhead;
        last->next = NULL;
        j->leading = true;
        pthread_mutex_unlock(&j->mu);
        run_batch(j, batch);
        pthread_mutex_lock(&j->mu);
        for (struct jitem *p = batch; p; p = p->next)
            p->done = true;
        j->leading = false;
        pthread_cond_broadcast(&j->cond);
    }
    pthread_mutex_unlock(&j->mu);
}

/* Links the draft into pending/, then syncs the file and pending/: the
 * sync of the file commits the new name with it on most file systems
 * (ext4, XFS), and the sync of pending/ that POSIX asks for then finds
 * little left to do: one wait for the disk per delivery, in its own
 * thread, instead of a second one in the batch that every delivery of it
 * waits for. A failed link (another file system, ...): JOURNAL_NO. */
static int link_synced(struct journal *j, struct jitem *c, struct storage_draft *d)
{
    const char *slash = strrchr(c->src, '/');
    int rc;

    c->base = slash ? slash + 1 : c->src;
    if (pathf(c->dst, sizeof(c->dst), "%s/%" PRId64 ".%s", j->pdir, c->id, c->base) < 0 ||
        link(c->src, c->dst) < 0)
        return JOURNAL_NO;
    if ((rc = storage_draft_finish(d)) != 0 || (rc = fsync_dir(j->pdir)) != 0) {
        unlink(c->dst);
        return rc;
    }
    c->linked = true;
    return 0;
}

int journal_deliver(struct storage_user *u, struct storage_draft *d)
{
    struct jitem c = {
        .id = u->id, .src = draft_path(d), .size = storage_draft_size(d), .ms = draft_summary(d)};
    struct journal *j;
    struct jacct *a;

    /* Even through a light handle whose connection stayed open: the
     * journal shares its commits across accounts, and the index then takes
     * in up to journal_per_account of them in one transaction, where a
     * stream of mail to one account (max_jobs_per_account at once) would
     * commit its index for every message or two. */
    if (!storage_limits.delivery_journal || !u->light || !(j = journal_get(u->data_dir, true)))
        return JOURNAL_NO;
    limits_of(u, &c.max_bytes, &c.max_msgs);
    c.internal_date = now_unix();
    pthread_mutex_lock(&j->mu);
    a = acct_get(j, u->id, true);
    if (!a || a->opens || a->npending >= storage_limits.journal_per_account) {
        /* a session has the store open: through it, so that it sees it;
         * or enough wait already: through the index, which takes them in
         * first, so that no login has many to take in */
        pthread_mutex_unlock(&j->mu);
        return JOURNAL_NO;
    }
    a->inflight++;
    pthread_mutex_unlock(&j->mu);
    if ((c.rc = link_synced(j, &c, d)) == 0)
        journal_queued(j, &c);
    pthread_mutex_lock(&j->mu);
    a->inflight--;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
    return c.rc;
}

/* ---- drain ---- */

bool journal_pending(struct storage_user *u)
{
    struct journal *j = journal_get(u->data_dir, false);
    struct jacct *a;
    bool p;

    if (!j)
        return false;
    pthread_mutex_lock(&j->mu);
    a = acct_get(j, u->id, false);
    p = a && a->pending;
    pthread_mutex_unlock(&j->mu);
    return p;
}

struct drow {
    int64_t seq;
    char *file;
    uint64_t size;
    int64_t internal_date;
    struct mime_summary ms;
    bool skip; /* in the index already, or its file gone */
    bool linked;
    char dst[STORAGE_PATH_MAX];
};

struct drain {
    struct journal *j;
    struct drow *rows;
    size_t n;
    int64_t bytes, msgs, seq; /* the index's counts after the chunk */
};

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? strdup((const char *)s) : NULL;
}

static void rows_free(struct drain *dr)
{
    for (size_t i = 0; i < dr->n; i++) {
        free(dr->rows[i].file);
        mime_summary_free(&dr->rows[i].ms);
    }
    free(dr->rows);
    dr->rows = NULL;
    dr->n = 0;
}

/* The search text of a row without one (the journal keeps none, see
 * above): parsed again from its pending/ file, outside any lock of the
 * journal. A file gone leaves none (row_link then drops the row). */
static int row_text(struct drain *dr, int64_t id, struct drow *r)
{
    char p[STORAGE_PATH_MAX];
    struct mime_summary ms;
    struct stat sb;
    int fd, rc;

    if (r->ms.text)
        return 0;
    if (pathf(p, sizeof(p), "%s/%" PRId64 ".%s", dr->j->pdir, id, r->file) < 0)
        return STORAGE_E_FAIL;
    if ((fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return errno == ENOENT ? 0 : err_from_errno(errno);
    rc = fstat(fd, &sb) == 0 ? summarize_fd(fd, (uint64_t)sb.st_size, &ms) : err_from_errno(errno);
    close(fd);
    if (rc)
        return rc;
    r->ms.text = ms.text;
    ms.text = NULL;
    mime_summary_free(&ms);
    return 0;
}

/* The oldest JOURNAL_DRAIN_CHUNK rows of the account. */
static int rows_load(struct drain *dr, int64_t id)
{
    sqlite3_stmt *st;
    int rc;

    if (!(dr->rows = calloc(JOURNAL_DRAIN_CHUNK, sizeof(*dr->rows))))
        return STORAGE_E_NOMEM;
    pthread_mutex_lock(&dr->j->rmu);
    rc = db_prepare(dr->j->r,
                    "SELECT seq, file, size, internal_date, sent_date, envelope, bodystructure,"
                    " body, subject, from_, to_, cc, bcc, message_id, in_reply_to, refs, header,"
                    " preview, text FROM pending WHERE account = ? ORDER BY seq LIMIT ?",
                    &st);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int(st, 2, JOURNAL_DRAIN_CHUNK);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && dr->n < JOURNAL_DRAIN_CHUNK) {
            struct drow *r = &dr->rows[dr->n++];
            struct mime_summary *ms = &r->ms;
            const void *h = sqlite3_column_blob(st, 16);
            int hl = sqlite3_column_bytes(st, 16);
            r->seq = sqlite3_column_int64(st, 0);
            r->file = col_dup(st, 1);
            r->size = (uint64_t)sqlite3_column_int64(st, 2);
            r->internal_date = sqlite3_column_int64(st, 3);
            ms->date = sqlite3_column_int64(st, 4);
            ms->envelope = col_dup(st, 5);
            ms->bodystructure = col_dup(st, 6);
            ms->body = col_dup(st, 7);
            ms->subject = col_dup(st, 8);
            ms->from = col_dup(st, 9);
            ms->to = col_dup(st, 10);
            ms->cc = col_dup(st, 11);
            ms->bcc = col_dup(st, 12);
            ms->message_id = col_dup(st, 13);
            ms->in_reply_to = col_dup(st, 14);
            ms->references = col_dup(st, 15);
            if (h && hl > 0 && (ms->header = malloc((size_t)hl)) != NULL) {
                memcpy(ms->header, h, (size_t)hl);
                ms->header_len = (size_t)hl;
            }
            ms->preview = col_dup(st, 17);
            ms->text = col_dup(st, 18);
            if (!r->file || strchr(r->file, '/') || r->file[0] == '.') {
                rc = r->file ? STORAGE_E_CORRUPT : STORAGE_E_NOMEM;
                break;
            }
        }
        if (rc == SQLITE_DONE || rc == SQLITE_ROW)
            rc = 0;
        else if (rc > 0)
            rc = err_from_sqlite(dr->j->r, rc);
        db_finalize(st);
    }
    pthread_mutex_unlock(&dr->j->rmu);
    for (size_t i = 0; rc == 0 && i < dr->n; i++)
        rc = row_text(dr, id, &dr->rows[i]);
    return rc;
}

/* Links a row's file into new/ under its final name. A link already there
 * (a drain before a crash) must be the same file. */
static int row_link(struct storage_user *u, struct drow *r, const char *mdir, uint32_t uid,
                    char *rel, size_t rlen)
{
    char src[STORAGE_PATH_MAX];
    struct stat a, b;

    pathf(src, sizeof(src), "%s/pending/%" PRId64 ".%s", u->data_dir, u->id, r->file);
    if (pathf(rel, rlen, "new/%s,U=%" PRIu32 ",S=%" PRIu64, r->file, uid, r->size) < 0 ||
        pathf(r->dst, sizeof(r->dst), "%s/%s", mdir, rel) < 0)
        return STORAGE_E_FAIL;
    if (link(src, r->dst) == 0) {
        r->linked = true;
        return 0;
    }
    if (errno == ENOENT && lstat(src, &a) < 0) {
        log_warn("storage: user %" PRId64 ": journaled delivery %s: its file is gone; dropped",
                 u->id, r->file);
        r->skip = true;
        return 0;
    }
    if (errno == EEXIST && stat(src, &a) == 0 && stat(r->dst, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        return 0;
    return err_from_errno(errno);
}

static int drain_work(struct txn *t, void *ctx)
{
    struct drain *dr = ctx;
    struct storage_user *u = t->u;
    char mdir[STORAGE_PATH_MAX], sub[STORAGE_PATH_MAX], rel[STORAGE_PATH_MAX];
    struct pending_event *pe = NULL;
    int64_t b, m, floor;
    struct mbox_row mb;
    bool stale, any = false;
    int rc;

    if ((rc = index_counts(dr->j, t->db, &b, &m, &floor)) != 0 ||
        (rc = mbox_by_name(t->db, "INBOX", &mb)) != 0 ||
        (rc = mbox_path(u, mb.name, mdir, sizeof(mdir))) != 0)
        return rc;
    /* the folder's times stay as they are when another program changed
     * it since the index looked (the next open rescans it) */
    if ((rc = dir_mtime_changed(u, mb.id, mdir, false)) < 0)
        return rc;
    stale = rc > 0;
    for (size_t i = 0; i < dr->n; i++) {
        struct drow *r = &dr->rows[i];
        uint64_t modseq;
        uint32_t uid;
        if (r->seq <= floor) {
            r->skip = true;
            continue;
        }
        uid = mb.uidnext;
        if (uid == 0 || uid == UINT32_MAX)
            return STORAGE_E_FAIL;
        if ((rc = row_link(u, r, mdir, uid, rel, sizeof(rel))) != 0)
            return rc;
        if (r->skip)
            continue;
        if ((rc = mbox_bump_modseq(t->db, mb.id, &modseq)) != 0 ||
            (rc = msg_insert(t->db, mb.id, uid, rel, r->size, r->internal_date, 0, 0, "", &r->ms, 0,
                             NULL, modseq)) != 0 ||
            (rc = mbox_set_uidnext(t->db, mb.id, uid + 1)) != 0)
            return rc;
        mb.uidnext = uid + 1;
        if (!pe && !(pe = txn_event(t, STORAGE_EV_NEW, mb.id)))
            return STORAGE_E_NOMEM;
        if (uidlist_add(&pe->uids, uid) != 0)
            return STORAGE_E_NOMEM;
        pe->modseq = modseq;
        any = true;
    }
    if (any) {
        pathf(sub, sizeof(sub), "%s/new", mdir);
        if ((rc = fsync_dir(sub)) != 0)
            return rc;
        if (!stale && (rc = dir_mtime_changed(u, mb.id, mdir, true)) != 0)
            return rc;
    }
    dr->seq = dr->rows[dr->n - 1].seq;
    if ((rc = db_meta_set(t->db, "journal_epoch", dr->j->epoch)) != 0 ||
        (rc = db_meta_set(t->db, "journal_seq", dr->seq)) != 0 ||
        (rc = db_meta_get(t->db, "quota_bytes", &dr->bytes)) != 0 ||
        (rc = db_meta_get(t->db, "quota_messages", &dr->msgs)) != 0)
        return rc;
    return 0;
}

static void drain_undo(struct txn *t, void *ctx)
{
    struct drain *dr = ctx;
    (void)t;
    for (size_t i = 0; i < dr->n; i++) {
        if (dr->rows[i].linked)
            unlink(dr->rows[i].dst);
        dr->rows[i].linked = false;
    }
}

/* The index has the rows: their pending/ files go, then the rows (a crash
 * between leaves rows the index's journal_seq covers), with the usage. */
/* Under j->wmu (no batch adds a row meanwhile): counts the account's rows
 * into its in-memory state. */
static int note_left(struct journal *j, int64_t id)
{
    int64_t left = 0;
    struct jacct *a;
    int rc = db_int_binds(j->w, &left, "SELECT count(*) FROM pending WHERE account = ?", NULL,
                          DB_INTS(id));
    if (rc)
        return rc;
    pthread_mutex_lock(&j->mu);
    if ((a = acct_get(j, id, false)) != NULL) {
        a->pending = left > 0;
        a->npending = (unsigned)left;
    }
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static void drain_committed(struct txn *t, void *ctx)
{
    struct drain *dr = ctx;
    struct journal *j = dr->j;
    struct storage_user *u = t->u;
    char p[STORAGE_PATH_MAX];
    struct jacct *a;
    int rc;

    for (size_t i = 0; i < dr->n; i++) {
        pathf(p, sizeof(p), "%s/pending/%" PRId64 ".%s", u->data_dir, u->id, dr->rows[i].file);
        unlink(p);
    }
    pthread_mutex_lock(&j->wmu);
    pthread_mutex_lock(&j->mu);
    a = acct_get(j, u->id, true);
    pthread_mutex_unlock(&j->mu);
    rc = db_begin(j->w);
    if (rc == 0)
        rc = db_run(j->w, "DELETE FROM pending WHERE account = ? AND seq <= ?", u->id, dr->seq);
    if (rc == 0)
        rc = usage_write(j, a, u->id, dr->bytes, dr->msgs, dr->seq);
    if (rc == 0)
        rc = db_commit(j->w);
    else
        db_rollback(j->w);
    if (rc == 0)
        rc = note_left(j, u->id);
    pthread_mutex_unlock(&j->wmu);
    if (rc)
        log_warn("storage: user %" PRId64 ": delivery journal not cleaned: %s (done next time)",
                 u->id, storage_strerror(rc));
}

void journal_drain(struct storage_user *u, struct txn_events *out)
{
    static const struct txn_path path = {
        .work = drain_work, .undo = drain_undo, .committed = drain_committed};
    struct journal *j = journal_get(u->data_dir, false);
    struct timespec c0, c1;
    int64_t prev = 0;
    size_t moved = 0;

    if (!j)
        return;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    for (;;) {
        struct drain dr = {.j = j};
        struct txn t = {.u = u};
        bool committed;
        int rc = rows_load(&dr, u->id);
        if (rc == 0 && dr.n == 0) {
            rows_free(&dr);
            pthread_mutex_lock(&j->wmu);
            note_left(j, u->id);
            pthread_mutex_unlock(&j->wmu);
            break;
        }
        if (rc == 0 && dr.rows[0].seq <= prev) {
            /* the last chunk's rows are still there (the journal could not
             * forget them): next time */
            rows_free(&dr);
            break;
        }
        if (rc == 0) {
            t.ev = t.ev_inline;
            t.capev = sizeof(t.ev_inline) / sizeof(t.ev_inline[0]);
            rc = txn_run(u, &path, &dr, &t, &committed);
            if (rc == 0 && committed) {
                for (size_t i = 0; i < dr.n; i++)
                    moved += !dr.rows[i].skip;
            }
            /* the events of a committed chunk are announced by the caller */
            for (size_t i = 0; i < t.nev; i++) {
                if (committed && array_grow(&out->ev, &out->cap, out->n, sizeof(*out->ev), 4) == 0)
                    out->ev[out->n++] = t.ev[i];
                else
                    storage_uidlist_free(&t.ev[i].uids);
            }
            if (t.ev != t.ev_inline)
                free(t.ev);
        }
        if (dr.n)
            prev = dr.rows[dr.n - 1].seq;
        rows_free(&dr);
        if (rc) {
            log_error("storage: user %" PRId64 ": journaled deliveries not taken in: %s", u->id,
                      storage_strerror(rc));
            break;
        }
        /* again: the next chunk, or none left (said above) */
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    if (moved)
        log_info("storage: user %" PRId64 ": %zu journaled deliveries taken in, %.2f ms CPU", u->id,
                 moved,
                 (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6);
}

int storage_journal_flush(const char *data_dir, int64_t id)
{
    struct storage_user *u;
    struct journal *j = journal_get(data_dir, false);
    struct jacct *a;
    bool pending;
    int rc;

    if (!j)
        return 0;
    pthread_mutex_lock(&j->mu);
    a = acct_get(j, id, false);
    pending = a && a->pending;
    pthread_mutex_unlock(&j->mu);
    if (!pending)
        return 0;
    /* the open's rescan is a write: it takes them in */
    if ((rc = storage_open(data_dir, id, &u)) != 0)
        return rc;
    storage_close(u);
    return 0;
}
