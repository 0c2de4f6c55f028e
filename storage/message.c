/* Messages: Maildir file names, drafts written into tmp/ (LF -> CRLF),
 * durable save/deliver (tmp -> fsync -> link into cur|new -> fsync dir ->
 * index commit), reading whole messages, byte ranges and MIME sections, and
 * metadata fetches answered from the index alone. */
#include "storage/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "server/base/log.h"
#include "server/base/metrics.h"
#include "storage/mime.h"

#define DRAFT_BUF 65536
/* A draft synced later with others (storage_draft_end) of at least this
 * size has its writeback started as it ends, while the next messages
 * come; a smaller one is started with the others at the save, where the
 * call is made on several threads at once rather than one after another
 * in the chain of writes that the client waits on. */
#define DRAFT_EARLY_WRITEBACK 65536
/* A message file of at least this size leaves the page cache once it is
 * on disk: its pages are clean then, and dropping them is cheaper than
 * the reclaim that would otherwise make room for the next writes when
 * memory is full of cache (a big attachment is seldom read again at
 * once; the index holds what listings need). */
#define DRAFT_UNCACHE (256u * 1024)

/* ---- file names ---- */

void flags_to_letters(unsigned flags, char *out, size_t len)
{
    size_t o = 0;
    /* Maildir wants the letters in ASCII order */
    static const struct {
        char c;
        unsigned f;
    } map[] = {{'D', STORAGE_FLAG_DRAFT},
               {'F', STORAGE_FLAG_FLAGGED},
               {'R', STORAGE_FLAG_ANSWERED},
               {'S', STORAGE_FLAG_SEEN},
               {'T', STORAGE_FLAG_DELETED}};

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]) && o + 1 < len; i++)
        if (flags & map[i].f)
            out[o++] = map[i].c;
    if (len)
        out[o] = '\0';
}

unsigned letters_to_flags(const char *s)
{
    unsigned f = 0;
    for (; *s; s++) {
        switch (*s) {
        case 'D':
            f |= STORAGE_FLAG_DRAFT;
            break;
        case 'F':
            f |= STORAGE_FLAG_FLAGGED;
            break;
        case 'R':
            f |= STORAGE_FLAG_ANSWERED;
            break;
        case 'S':
            f |= STORAGE_FLAG_SEEN;
            break;
        case 'T':
            f |= STORAGE_FLAG_DELETED;
            break;
        default:
            break;
        }
    }
    return f;
}

int make_unique(char *buf, size_t len)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static unsigned long counter;
    static char host[64];
    struct timeval tv;
    unsigned long q;
    unsigned r = 0;
    int n;

    pthread_mutex_lock(&lock);
    if (!host[0]) {
        if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
            pathf(host, sizeof(host), "localhost");
        for (char *p = host; *p; p++)
            if (*p == '/' || *p == ':' || *p == ',' || *p == '.' || (unsigned char)*p < 0x21)
                *p = '_';
    }
    q = ++counter;
    pthread_mutex_unlock(&lock);
    /* one system call, no file descriptor (this runs twice per delivery) */
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = 0;
    gettimeofday(&tv, NULL);
    n = pathf(buf, len, "%lld.M%ldP%dQ%luR%08x.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
              (int)getpid(), q, r, host);
    return n < 0 || (size_t)n >= len ? STORAGE_E_FAIL : 0;
}

int msg_file_name(char *buf, size_t len, const char *unique, uint32_t uid, uint64_t size,
                  unsigned flags)
{
    char letters[8];
    int n;

    flags_to_letters(flags, letters, sizeof(letters));
    n = pathf(buf, len, "%s,U=%" PRIu32 ",S=%" PRIu64 ":2,%s", unique, uid, size, letters);
    return n < 0 || (size_t)n >= len ? STORAGE_E_FAIL : 0;
}

void msg_file_parse(const char *fname, char *unique, size_t ulen, uint32_t *uid, unsigned *flags,
                    bool *has_info)
{
    const char *colon = strchr(fname, ':');
    const char *base_end = colon ? colon : fname + strlen(fname);
    const char *comma = memchr(fname, ',', (size_t)(base_end - fname));
    const char *ue = comma ? comma : base_end;
    size_t ul = (size_t)(ue - fname);

    if (ul >= ulen)
        ul = ulen - 1;
    memcpy(unique, fname, ul);
    unique[ul] = '\0';
    *uid = 0;
    for (const char *p = comma; p && p < base_end;
         p = memchr(p + 1, ',', (size_t)(base_end - p - 1))) {
        if (p[1] == 'U' && p[2] == '=') {
            unsigned long long v = 0;
            const char *q = p + 3;
            while (q < base_end && *q >= '0' && *q <= '9' && v <= UINT32_MAX)
                v = v * 10 + (unsigned)(*q++ - '0');
            if (q > p + 3 && v > 0 && v <= UINT32_MAX)
                *uid = (uint32_t)v;
        }
    }
    *flags = 0;
    *has_info = false;
    if (colon && colon[1] == '2' && colon[2] == ',') {
        *flags = letters_to_flags(colon + 3);
        *has_info = true;
    }
}

/* ---- keywords ---- */

static bool keyword_ok(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > STORAGE_KEYWORD_MAX || k[0] == '\\')
        return false;
    for (const char *p = k; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
            return false;
    }
    return true;
}

int keywords_check(const char *const *kw, size_t n)
{
    if (n > STORAGE_KEYWORDS_MAX)
        return STORAGE_E_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!kw[i] || !keyword_ok(kw[i]))
            return STORAGE_E_INVAL;
    return 0;
}

static int kwcmp(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* cur: space-separated list; result sorted, without duplicates
 * (case-insensitive, as IMAP keywords are). */
int keywords_merge(const char *cur, enum storage_store_op op, const char *const *kw, size_t n,
                   char *out, size_t outlen)
{
    char buf[(STORAGE_KEYWORD_MAX + 1) * (STORAGE_KEYWORDS_MAX + 1) + 1];
    const char *list[2 * STORAGE_KEYWORDS_MAX + 2];
    size_t cnt = 0, o = 0;

    pathf(buf, sizeof(buf), "%s", op == STORAGE_STORE_SET ? "" : (cur ? cur : ""));
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        bool drop = false;
        if (op == STORAGE_STORE_REMOVE)
            for (size_t i = 0; i < n; i++)
                if (strcasecmp(t, kw[i]) == 0)
                    drop = true;
        if (!drop && cnt < STORAGE_KEYWORDS_MAX)
            list[cnt++] = t;
    }
    if (op != STORAGE_STORE_REMOVE)
        for (size_t i = 0; i < n && cnt < 2 * STORAGE_KEYWORDS_MAX; i++)
            list[cnt++] = kw[i];
    qsort(list, cnt, sizeof(list[0]), kwcmp);
    for (size_t i = 0, kept = 0; i < cnt; i++) {
        size_t l = strlen(list[i]);
        if (i > 0 && strcasecmp(list[i], list[i - 1]) == 0)
            continue;
        if (++kept > STORAGE_KEYWORDS_MAX)
            return STORAGE_E_INVAL;
        if (o + l + 2 > outlen)
            return STORAGE_E_INVAL;
        if (o)
            out[o++] = ' ';
        memcpy(out + o, list[i], l);
        o += l;
    }
    out[o] = '\0';
    return 0;
}

/* ---- index rows ---- */

int body_release(sqlite3 *db, int64_t body_id)
{
    sqlite3_stmt *st;
    int64_t refs = 0;
    int rc = db_prepare(db, "UPDATE bodies SET refs = refs - 1 WHERE id = ? RETURNING refs", &st);

    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, body_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        refs = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    }
    db_finalize(st);
    if (rc != SQLITE_DONE)
        return err_from_sqlite(db, rc);
    if (refs > 0)
        return 0;
    /* its text first, indexed or waiting: the index's removal reads the row */
    if ((rc = fts_forget(db, body_id)) != 0)
        return rc;
    if ((rc = db_run(db, "DELETE FROM sortkeys WHERE body_id = ?", body_id)) != 0 ||
        (rc = db_run(db, "DELETE FROM headers WHERE body_id = ?", body_id)) != 0 ||
        (rc = db_run(db, "DELETE FROM listings WHERE body_id = ?", body_id)) != 0)
        return rc;
    return db_run(db, "DELETE FROM bodies WHERE id = ?", body_id);
}

int body_ref(sqlite3 *db, int64_t body_id)
{
    return db_run(db, "UPDATE bodies SET refs = refs + 1 WHERE id = ?", body_id);
}

void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* subject, from_, to_, cc, bcc: the header columns of bodies and of the
 * full-text index, from parameter i on. */
static void bind_addressing(sqlite3_stmt *st, int i, const struct mime_summary *ms)
{
    bind_opt(st, i, ms->subject);
    bind_opt(st, i + 1, ms->from);
    bind_opt(st, i + 2, ms->to);
    bind_opt(st, i + 3, ms->cc);
    bind_opt(st, i + 4, ms->bcc);
}

/* The statements msg_insert runs for each message, prepared once for all
 * the messages of one transaction (a MULTIAPPEND's hundreds). */
struct ins_stmts {
    sqlite3_stmt *body, *header, *listing, *fts, *msg, *meta;
    struct buf lbuf; /* the listing block being inserted */
};

static const char sql_body[] = "INSERT INTO bodies(refs, sent_date, envelope, bodystructure, body,"
                               " subject, from_, to_, cc, bcc, message_id, in_reply_to, header,"
                               " oid, thread, preview)"
                               " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char sql_header[] = "INSERT INTO headers(body_id, header) VALUES (?, ?)";
static const char sql_listing[] = "INSERT INTO listings(body_id, fields, header) VALUES (?, ?, ?)";
static const char sql_fts[] = "INSERT INTO fts_pending(body_id, subject, from_, to_, cc, bcc, text)"
                              " VALUES (?, ?, ?, ?, ?, ?, ?)";
static const char sql_msg[] =
    "INSERT INTO messages(mailbox_id, uid, body_id, path, size, internal_date,"
    " save_date, flags, file_flags, keywords, modseq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char sql_meta_add[] = "INSERT INTO meta(key, value) VALUES (?1, ?2) "
                                   "ON CONFLICT(key) DO UPDATE SET value = value + ?2";

static void ins_stmts_free(struct ins_stmts *ss)
{
    db_finalize(ss->body);
    db_finalize(ss->header);
    db_finalize(ss->listing);
    buf_free(&ss->lbuf);
    db_finalize(ss->fts);
    db_finalize(ss->msg);
    db_finalize(ss->meta);
    memset(ss, 0, sizeof(*ss));
}

/* *st prepared once (kept in ss) or, without ss, for this call alone. */
static int ins_prepare(sqlite3 *db, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **st)
{
    int rc;
    if (slot && *slot) {
        *st = *slot;
        return 0;
    }
    if ((rc = db_prepare(db, sql, st)) != 0)
        return rc;
    if (slot)
        *slot = *st;
    return 0;
}

/* Steps st to its end; a statement of ss is reset and its bindings
 * cleared (the strings bound are the caller's), any other finalized. */
static int ins_step(sqlite3 *db, const struct ins_stmts *ss, sqlite3_stmt *st)
{
    if (!ss)
        return db_step_done(db, st);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : err_from_sqlite(db, rc);
}

/* The listing block of a body's header block: its row in listings, none
 * when the header has none of the fields (readers take the whole block). */
static int listing_insert(sqlite3 *db, struct ins_stmts *ss, int64_t body_id, const char *hdr,
                          size_t len)
{
    struct buf own = {0}, *b = ss ? &ss->lbuf : &own;
    sqlite3_stmt *st;
    int rc;

    buf_reset(b);
    unsigned fields = storage_listing_block(hdr, len, b);
    if (b->oom)
        rc = STORAGE_E_NOMEM;
    else if (!fields)
        rc = 0;
    else if ((rc = ins_prepare(db, ss ? &ss->listing : NULL, sql_listing, &st)) == 0) {
        sqlite3_bind_int64(st, 1, body_id);
        sqlite3_bind_int64(st, 2, fields);
        sqlite3_bind_blob(st, 3, b->p, (int)b->len, SQLITE_STATIC);
        rc = ins_step(db, ss, st);
    }
    buf_free(&own);
    return rc;
}

static int ins_meta_add(sqlite3 *db, struct ins_stmts *ss, const char *key, int64_t delta)
{
    sqlite3_stmt *st;
    int rc;
    if (!ss)
        return db_meta_add(db, key, delta);
    if ((rc = ins_prepare(db, &ss->meta, sql_meta_add, &st)) != 0)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, delta);
    return ins_step(db, ss, st);
}

static int msg_insert_with(sqlite3 *db, struct ins_stmts *ss, int64_t mbox, uint32_t uid,
                           const char *path, uint64_t size, int64_t internal_date, unsigned flags,
                           unsigned file_flags, const char *keywords, const struct mime_summary *ms,
                           int64_t body_id, int64_t *body_id_out, uint64_t modseq)
{
    sqlite3_stmt *st;
    int rc;

    if (body_id > 0) {
        if ((rc = body_ref(db, body_id)) != 0)
            return rc;
    } else {
        int64_t oid = object_id_new(), thread;
        if ((rc = thread_assign(db, oid, ms->message_id, ms->in_reply_to, ms->references,
                                &thread)) != 0)
            return rc;
        if ((rc = ins_prepare(db, ss ? &ss->body : NULL, sql_body, &st)) != 0)
            return rc;
        sqlite3_bind_int64(st, 13, oid);
        sqlite3_bind_int64(st, 14, thread);
        sqlite3_bind_text(st, 15, ms->preview ? ms->preview : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 1, ms->date);
        bind_opt(st, 2, ms->envelope);
        bind_opt(st, 3, ms->bodystructure);
        bind_opt(st, 4, ms->body);
        bind_addressing(st, 5, ms);
        bind_opt(st, 10, ms->message_id);
        bind_opt(st, 11, ms->in_reply_to);
        sqlite3_bind_null(st, 12); /* bodies.header: before schema 10 */
        if ((rc = ins_step(db, ss, st)) != 0)
            return rc;
        body_id = sqlite3_last_insert_rowid(db);
        if (ms->header) {
            if ((rc = ins_prepare(db, ss ? &ss->header : NULL, sql_header, &st)) != 0)
                return rc;
            sqlite3_bind_int64(st, 1, body_id);
            sqlite3_bind_blob(st, 2, ms->header, (int)ms->header_len, SQLITE_STATIC);
            if ((rc = ins_step(db, ss, st)) != 0 ||
                (rc = listing_insert(db, ss, body_id, ms->header, ms->header_len)) != 0)
                return rc;
        }
        if ((rc = sortkeys_insert(db, body_id, ms->date, ms->envelope, ms->subject, ms->message_id,
                                  ms->in_reply_to, ms->references)) != 0)
            return rc;
        /* into the full-text index later (storage_fts_index), not here */
        if ((rc = ins_prepare(db, ss ? &ss->fts : NULL, sql_fts, &st)) != 0)
            return rc;
        sqlite3_bind_int64(st, 1, body_id);
        bind_addressing(st, 2, ms);
        bind_opt(st, 7, ms->text);
        if ((rc = ins_step(db, ss, st)) != 0)
            return rc;
    }
    if (body_id_out)
        *body_id_out = body_id;
    if ((rc = ins_prepare(db, ss ? &ss->msg : NULL, sql_msg, &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, mbox);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_int64(st, 3, body_id);
    sqlite3_bind_text(st, 4, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)size);
    sqlite3_bind_int64(st, 6, internal_date);
    sqlite3_bind_int64(st, 7, now_unix());
    sqlite3_bind_int(st, 8, (int)flags);
    sqlite3_bind_int(st, 9, (int)file_flags);
    sqlite3_bind_text(st, 10, keywords ? keywords : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, (int64_t)modseq);
    if ((rc = ins_step(db, ss, st)) != 0)
        return rc;
    if ((rc = ins_meta_add(db, ss, "quota_bytes", (int64_t)size)) != 0)
        return rc;
    return ins_meta_add(db, ss, "quota_messages", 1);
}

int msg_insert(sqlite3 *db, int64_t mbox, uint32_t uid, const char *path, uint64_t size,
               int64_t internal_date, unsigned flags, unsigned file_flags, const char *keywords,
               const struct mime_summary *ms, int64_t body_id, int64_t *body_id_out,
               uint64_t modseq)
{
    return msg_insert_with(db, NULL, mbox, uid, path, size, internal_date, flags, file_flags,
                           keywords, ms, body_id, body_id_out, modseq);
}

/* Files up to this size are read into the heap for the MIME parse rather
 * than mapped: a munmap in this multi-threaded process interrupts every
 * CPU running one of its threads to flush the mapping, and each page of a
 * mapping faults once; at delivery rates that costs more than the copy. */
#define SUMMARY_READ_MAX (1024 * 1024)

static int summarize_read(int fd, uint64_t size, struct mime_summary *ms)
{
    char *buf = malloc((size_t)size);
    size_t off = 0;
    int rc;

    if (!buf)
        return STORAGE_E_NOMEM;
    while (off < size) {
        ssize_t n = pread(fd, buf + off, (size_t)size - off, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? err_from_errno(errno) : STORAGE_E_FAIL; /* shrunk under us */
            free(buf);
            return rc;
        }
        off += (size_t)n;
    }
    rc = mime_parse(buf, (size_t)size, ms) == 0 ? 0 : STORAGE_E_NOMEM;
    free(buf);
    return rc;
}

int summarize_fd(int fd, uint64_t size, struct mime_summary *ms)
{
    void *p;
    int rc;

    memset(ms, 0, sizeof(*ms));
    if (size == 0)
        return mime_parse("", 0, ms) == 0 ? 0 : STORAGE_E_NOMEM;
    if (size <= SUMMARY_READ_MAX)
        return summarize_read(fd, size, ms);
    p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return err_from_errno(errno);
    rc = mime_parse(p, (size_t)size, ms) == 0 ? 0 : STORAGE_E_NOMEM;
    munmap(p, (size_t)size);
    return rc;
}

/* ---- drafts ---- */

struct storage_draft {
    struct storage_user *u;
    char path[STORAGE_PATH_MAX];
    int fd;
    uint64_t size, max;
    uint64_t room; /* quota room, UINT64_MAX = none */
    bool last_cr;
    bool finished;
    bool synced;   /* its bytes on stable storage (fsync'd) */
    bool flushing; /* their writeback started (sync_file_range) */
    bool failed;
    struct mime_summary ms;
    size_t blen;
    char buf[DRAFT_BUF];
};

int tmp_file_open(const char *tmpdir, char *out, size_t outlen, int *fd)
{
    char unique[256];
    int rc = STORAGE_E_FAIL;

    *fd = -1;
    /* a name taken meanwhile (another process's counter): another one */
    for (int i = 0; i < 5; i++) {
        if ((rc = make_unique(unique, sizeof(unique))) != 0 ||
            pathf(out, outlen, "%s/%s", tmpdir, unique) < 0)
            return rc ? rc : STORAGE_E_FAIL;
        if ((*fd = open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0)
            return 0;
        rc = err_from_errno(errno);
        if (errno != EEXIST)
            break;
    }
    return rc;
}

static int draft_new(struct storage_user *u, uint64_t max_size, bool more,
                     struct storage_draft **out)
{
    /* the buffer is not cleared: a message of 5 kB would pay for 64 */
    struct storage_draft *d = malloc(sizeof(*d));
    char tmpdir[STORAGE_PATH_MAX];
    int rc;

    *out = NULL;
    if (!d)
        return STORAGE_E_NOMEM;
    memset(d, 0, offsetof(struct storage_draft, buf));
    d->u = u;
    d->max = max_size;
    d->room = UINT64_MAX;
    d->fd = ahead_take(u, d->path, sizeof(d->path), more);
    if (d->fd < 0) {
        rc = pathf(tmpdir, sizeof(tmpdir), "%s/tmp", u->maildir) < 0
                 ? STORAGE_E_FAIL
                 : tmp_file_open(tmpdir, d->path, sizeof(d->path), &d->fd);
        if (rc) {
            free(d);
            return rc;
        }
    }
    *out = d;
    return 0;
}

int storage_draft_new(struct storage_user *u, uint64_t max_size, struct storage_draft **out)
{
    return draft_new(u, max_size, false, out);
}

int storage_draft_next(struct storage_user *u, uint64_t max_size, struct storage_draft **out)
{
    return draft_new(u, max_size, true, out);
}

static int draft_flush(struct storage_draft *d)
{
    size_t off = 0;

    while (off < d->blen) {
        ssize_t n = write(d->fd, d->buf + off, d->blen - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            d->failed = true;
            return err_from_errno(errno);
        }
        off += (size_t)n;
    }
    d->blen = 0;
    return 0;
}

static int draft_put(struct storage_draft *d, char c)
{
    int rc;

    if (d->blen == sizeof(d->buf) && (rc = draft_flush(d)) != 0)
        return rc;
    d->buf[d->blen++] = c;
    d->size++;
    return 0;
}

void storage_draft_set_room(struct storage_draft *d, uint64_t room)
{
    d->room = room;
}

/* Whether n more bytes fit under the size limit and the quota room; the
 * draft fails when they do not (nothing of them is written). */
static int draft_fits(struct storage_draft *d, uint64_t n)
{
    if (d->max && n > d->max - d->size) {
        d->failed = true;
        return STORAGE_E_TOOBIG;
    }
    if (n > d->room - d->size) {
        d->failed = true;
        return STORAGE_E_QUOTA;
    }
    return 0;
}

/* Writes p[0..n) to the file whole. */
static int draft_write_all(struct storage_draft *d, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(d->fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            d->failed = true;
            return err_from_errno(errno);
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Appends n bytes whose line ends need no change. A run that does not
 * fit in what the buffer has left goes to the file straight from the
 * caller's memory, after what the buffer holds: a big literal is copied
 * once, by write(), not through the buffer first. */
static int draft_append(struct storage_draft *d, const char *p, size_t n)
{
    int rc;

    if ((rc = draft_fits(d, n)) != 0)
        return rc;
    if (n > sizeof(d->buf) - d->blen) {
        if ((rc = draft_flush(d)) != 0 || (rc = draft_write_all(d, p, n)) != 0)
            return rc;
        d->size += n;
        return 0;
    }
    memcpy(d->buf + d->blen, p, n);
    d->blen += n;
    d->size += n;
    return 0;
}

int storage_draft_write(struct storage_draft *d, const void *buf, size_t len)
{
    const char *p = buf, *end = p + len;
    int rc;

    if (d->finished || d->failed)
        return STORAGE_E_INVAL;
    while (p < end) {
        /* the bytes up to the next bare LF go in one piece (a message
         * with CRLF line ends, as IMAP sends it, in one); a bare LF gets
         * a CR */
        const char *q = p, *nl;
        while ((nl = memchr(q, '\n', (size_t)(end - q))) != NULL &&
               (nl > p ? nl[-1] == '\r' : d->last_cr))
            q = nl + 1;
        size_t run = (size_t)((nl ? nl : end) - p);
        if (run) {
            if ((rc = draft_append(d, p, run)) != 0)
                return rc;
            d->last_cr = p[run - 1] == '\r';
            p += run;
        }
        if (!nl)
            break;
        if ((rc = draft_fits(d, 2)) != 0)
            return rc;
        if ((rc = draft_put(d, '\r')) != 0 || (rc = draft_put(d, '\n')) != 0)
            return rc;
        d->last_cr = false;
        p++;
    }
    return 0;
}

static int draft_end(struct storage_draft *d, bool sync)
{
    int rc;

    if (d->finished && (d->synced || !sync))
        return 0;
    if (d->failed)
        return STORAGE_E_INVAL;
    if (!d->finished) {
        if (d->blen == d->size) {
            /* the whole message is still in the buffer: parsed there,
             * not read back from the file */
            memset(&d->ms, 0, sizeof(d->ms));
            if (mime_parse(d->buf, d->blen, &d->ms) != 0)
                return STORAGE_E_NOMEM;
            if ((rc = draft_flush(d)) != 0)
                return rc;
        } else if ((rc = draft_flush(d)) != 0 || (rc = summarize_fd(d->fd, d->size, &d->ms)) != 0) {
            return rc;
        }
        d->finished = true;
        if (!sync && d->size >= DRAFT_EARLY_WRITEBACK) {
            /* synced later with others (storage_save_many): the disk
             * starts on it now, while the next messages are read */
            (void)sync_file_range(d->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint only */
            d->flushing = true;
        }
    }
    if (sync && !d->synced) {
        uint64_t t0 = metrics_now();
        if (fsync(d->fd) < 0) {
            d->failed = true;
            return err_from_errno(errno);
        }
        metrics_since(METRICS_FSYNC_SECONDS, METRICS_FSYNC_MESSAGE, t0);
        d->synced = true;
        if (d->size >= DRAFT_UNCACHE)
            (void)posix_fadvise(d->fd, 0, 0, POSIX_FADV_DONTNEED); /* a hint only */
    }
    return 0;
}

int storage_draft_finish(struct storage_draft *d)
{
    return draft_end(d, true);
}

int storage_draft_end(struct storage_draft *d)
{
    return draft_end(d, false);
}

/* Makes the drafts not synced yet durable. A big group is split among a
 * few threads, each of which starts the writeback of all of its share
 * first, so that the disk takes it in one stream and the fsyncs that
 * follow mostly find their data written (and their inodes' blocks, which
 * neighbours share, written by an earlier one), then fsyncs them: each
 * fsync then mostly waits for a cache flush of the disk, and flushes asked
 * for together are one flush, where fsyncs one after another each wait
 * for their own. */
#define SYNC_THREADS 8
#define SYNC_PER_THREAD 16 /* drafts below which a helper is not worth its start */

/* ds[from..to): neighbours, whose inodes share blocks, in one share */
struct sync_share {
    struct storage_draft *const *ds;
    size_t from, to;
    int rc;
};

static void *sync_share_run(void *arg)
{
    struct sync_share *sh = arg;
    for (size_t i = sh->from; i < sh->to; i++) {
        struct storage_draft *d = sh->ds[i];
        if (!d->synced && !d->failed && !d->flushing)
            (void)sync_file_range(d->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint only */
    }
    for (size_t i = sh->from; i < sh->to && !sh->rc; i++)
        sh->rc = draft_end(sh->ds[i], true);
    return NULL;
}

static int drafts_sync(struct storage_draft *const *ds, size_t n)
{
    struct sync_share sh[SYNC_THREADS];
    pthread_t th[SYNC_THREADS];
    size_t nt = n / SYNC_PER_THREAD, started = 1;
    int rc = 0;

    nt = nt < 1 ? 1 : nt > SYNC_THREADS ? SYNC_THREADS : nt;
    for (size_t t = 0; t < nt; t++)
        sh[t] = (struct sync_share){ds, n * t / nt, n * (t + 1) / nt, 0};
    /* a helper that cannot start leaves its share to this thread */
    while (started < nt && pthread_create(&th[started], NULL, sync_share_run, &sh[started]) == 0)
        started++;
    for (size_t t = started; t < nt; t++)
        sync_share_run(&sh[t]);
    sync_share_run(&sh[0]);
    for (size_t t = 1; t < started; t++)
        pthread_join(th[t], NULL);
    for (size_t t = 0; t < nt && !rc; t++)
        rc = sh[t].rc;
    return rc;
}

uint64_t storage_draft_size(const struct storage_draft *d)
{
    return d->size;
}

const char *draft_path(const struct storage_draft *d)
{
    return d->path;
}

const struct mime_summary *draft_summary(const struct storage_draft *d)
{
    return &d->ms;
}

void storage_draft_free(struct storage_draft *d)
{
    if (!d)
        return;
    if (d->fd >= 0)
        close(d->fd);
    unlink(d->path);
    mime_summary_free(&d->ms);
    free(d);
}

int tmp_file_close(int fd, const char *path, int rc)
{
    if (rc == 0 && fsync(fd) < 0)
        rc = err_from_errno(errno);
    close(fd);
    if (rc)
        unlink(path);
    return rc;
}

/* Copies the draft into tmpdir and fsyncs it (the draft is on another
 * filesystem than the target mailbox). */
static int copy_into_tmp(struct storage_draft *d, const char *tmpdir, char *out, size_t outlen)
{
    char buf[65536];
    off_t off = 0;
    int fd, rc;

    if ((rc = tmp_file_open(tmpdir, out, outlen, &fd)) != 0)
        return rc;
    for (;;) {
        ssize_t n = pread(d->fd, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_from_errno(errno);
            break;
        }
        if (n == 0)
            break;
        if (write(fd, buf, (size_t)n) != n) {
            rc = err_from_errno(errno ? errno : ENOSPC);
            break;
        }
        off += n;
    }
    return tmp_file_close(fd, out, rc);
}

static int quota_check(struct storage_user *u, uint64_t add_bytes, uint64_t add_msgs)
{
    uint64_t room, msgs;
    int rc = quota_room_db(u, u->wdb, &room, &msgs);
    if (rc)
        return rc;
    return add_bytes > room || add_msgs > msgs ? STORAGE_E_QUOTA : 0;
}

/* One save waiting for its batch (group commit). It lives on the stack of
 * the thread that saves; the leader of the batch fills in uid and rc. */
struct save_ctx {
    int64_t mbox;        /* 0: by name (mailbox, else INBOX), in the transaction */
    const char *mailbox; /* delivery: the folder asked for, NULL */
    char mbox_name[STORAGE_MBOX_NAME_MAX + 1]; /* the folder it went into */
    struct storage_draft *d;
    bool to_new; /* delivery: into new/, flags not in the name */
    unsigned flags;
    int64_t internal_date;
    char kw[(STORAGE_KEYWORD_MAX + 1) * (STORAGE_KEYWORDS_MAX + 1) + 1];
    char src[STORAGE_PATH_MAX]; /* the draft, or its copy in the mailbox's tmp/ */
    char dst[STORAGE_PATH_MAX];
    char subdir[STORAGE_PATH_MAX]; /* where dst was linked */
    char mdir[STORAGE_PATH_MAX];
    bool copied, linked;
    bool mtime_stale; /* the folder changed behind the index: its times stay */
    uint32_t uid;
    int64_t mbox_id; /* the mailbox it went into */
    int rc;
    bool done;
    /* on the first save of an all-or-nothing group (storage_save_many):
     * how many saves it has, written alone in their own batch; 0 or 1 for
     * a save on its own */
    size_t group;
    struct save_ctx *next;
};

/* Saves one message of a batch inside its transaction: UID, link into new/
 * or cur/, its rows. A failure of this message alone (quota, a link that
 * cannot be made, no such mailbox) goes to c->rc and the batch goes on;
 * an index error is returned and fails the whole batch. */
static int save_one(struct txn *t, const struct save_ctx *batch, struct save_ctx *c,
                    struct ins_stmts *ss)
{
    struct storage_user *u = t->u;
    struct storage_draft *d = c->d;
    char unique[256], fname[512], rel[600];
    const char *sub = c->to_new ? "new" : "cur";
    struct pending_event *pe;
    struct mbox_row m;
    uint64_t modseq;
    uint32_t uid;
    int rc;

    if (c->mbox > 0) {
        rc = mbox_by_id(t->db, c->mbox, &m);
    } else {
        char norm[STORAGE_MBOX_NAME_MAX + 1];
        rc = STORAGE_E_NOMBOX;
        if (c->mailbox && *c->mailbox && name_normalize(c->mailbox, norm, sizeof(norm)) == 0)
            rc = mbox_by_name(t->db, norm, &m);
        if (rc == STORAGE_E_NOMBOX)
            rc = mbox_by_name(t->db, "INBOX", &m);
    }
    if (rc == STORAGE_E_NOMBOX) {
        c->rc = rc;
        return 0;
    }
    if (rc)
        return rc;
    if ((rc = quota_check(u, d->size, 1)) != 0) {
        if (rc != STORAGE_E_QUOTA)
            return rc;
        c->rc = rc;
        return 0;
    }
    if (m.uidnext == 0 || m.uidnext == UINT32_MAX) {
        c->rc = STORAGE_E_FAIL;
        return 0;
    }
    uid = m.uidnext;
    if ((rc = mbox_path(u, m.name, c->mdir, sizeof(c->mdir))) != 0) {
        c->rc = rc;
        return 0;
    }
    /* A light handle opened the index without looking at the Maildir: if
     * another program changed the folder since the index last saw it, the
     * times recorded stay as they are, so that the next full open still
     * picks up what it dropped there. */
    if (u->light) {
        const struct save_ctx *p = batch;
        while (p != c && !(p->linked && !p->rc && p->mbox_id == m.id))
            p = p->next;
        if (p != c) /* the batch linked there already: as found before that */
            c->mtime_stale = p->mtime_stale;
        else if ((rc = dir_mtime_changed(u, m.id, c->mdir, false)) < 0)
            return rc;
        else
            c->mtime_stale = rc > 0;
    }
    pathf(c->subdir, sizeof(c->subdir), "%s/%s", c->mdir, sub);
    for (int attempt = 0;; attempt++) {
        if ((rc = make_unique(unique, sizeof(unique))) != 0) {
            c->rc = rc;
            return 0;
        }
        if (c->to_new)
            pathf(fname, sizeof(fname), "%s,U=%" PRIu32 ",S=%" PRIu64, unique, uid, d->size);
        else if ((rc = msg_file_name(fname, sizeof(fname), unique, uid, d->size, c->flags)) != 0) {
            c->rc = rc;
            return 0;
        }
        pathf(c->dst, sizeof(c->dst), "%s/%s", c->subdir, fname);
        if (link(c->src, c->dst) == 0)
            break;
        if (errno == EXDEV && !c->copied) {
            char tmpdir[STORAGE_PATH_MAX];
            pathf(tmpdir, sizeof(tmpdir), "%s/tmp", c->mdir);
            if ((rc = copy_into_tmp(d, tmpdir, c->src, sizeof(c->src))) != 0) {
                c->rc = rc;
                return 0;
            }
            c->copied = true;
            continue;
        }
        if (errno == EEXIST && attempt < 5)
            continue;
        c->rc = err_from_errno(errno);
        return 0;
    }
    c->linked = true;
    c->mbox_id = m.id;
    snprintf(c->mbox_name, sizeof(c->mbox_name), "%s", m.name);
    pathf(rel, sizeof(rel), "%s/%s", sub, fname);
    if ((rc = mbox_bump_modseq(t->db, m.id, &modseq)) != 0)
        return rc;
    rc = msg_insert_with(t->db, ss, m.id, uid, rel, d->size, c->internal_date, c->flags,
                         c->to_new ? 0 : c->flags, c->kw, &d->ms, 0, NULL, modseq);
    if (rc)
        return rc;
    if ((rc = mbox_set_uidnext(t->db, m.id, uid + 1)) != 0)
        return rc;
    /* the messages of a batch going into one mailbox make one event */
    pe = t->nev ? &t->ev[t->nev - 1] : NULL;
    if (!pe || pe->type != STORAGE_EV_NEW || pe->mbox != m.id)
        pe = txn_event(t, STORAGE_EV_NEW, m.id);
    if (!pe || uidlist_add(&pe->uids, uid) != 0)
        return STORAGE_E_NOMEM;
    pe->modseq = modseq;
    c->uid = uid;
    return 0;
}

/* Durability: each draft was fsync'd when finished (by its own thread,
 * in parallel with the others); the links of the whole batch are made
 * durable here by one fsync per directory, before the one index commit
 * makes them visible. */
static int batch_work(struct txn *t, void *ctx)
{
    struct save_ctx *batch = ctx;
    unsigned saved = 0;
    int rc;

    if (t->u->light) {
        /* not checked at open: a light handle never opened the index fully */
        int64_t ver = 0;
        if ((rc = light_check_index(t->u)) == 0 && (rc = db_meta_get(t->db, "schema", &ver)) == 0 &&
            ver != STORAGE_SCHEMA_VERSION)
            rc = STORAGE_E_CORRUPT;
        if (rc) {
            /* the next delivery opens again, rather than keep this one */
            __atomic_store_n(&t->u->light_stale, true, __ATOMIC_RELAXED);
            return rc;
        }
    }
    struct ins_stmts ss = {0};
    rc = 0;
    for (struct save_ctx *c = batch; c && !rc; c = c->next)
        rc = save_one(t, batch, c, &ss);
    ins_stmts_free(&ss);
    if (rc)
        return rc;
    if (batch->group > 1) {
        /* all or nothing: one message that cannot be saved fails them all */
        for (struct save_ctx *c = batch; c; c = c->next)
            if (c->rc)
                return c->rc;
    }
    for (struct save_ctx *c = batch; c; c = c->next) {
        bool first = true;
        if (!c->linked || c->rc)
            continue;
        saved++;
        for (struct save_ctx *p = batch; p != c && first; p = p->next)
            first = !(p->linked && !p->rc && strcmp(p->subdir, c->subdir) == 0);
        if (first && (rc = fsync_dir(c->subdir)) != 0)
            return rc;
    }
    /* the folders' times as of the last link, which the next open compares */
    for (struct save_ctx *c = batch; c; c = c->next) {
        bool last = c->linked && !c->rc && !c->mtime_stale;
        for (struct save_ctx *p = c->next; p && last; p = p->next)
            last = !(p->linked && !p->rc && p->mbox_id == c->mbox_id);
        if (last && (rc = dir_mtime_changed(t->u, c->mbox_id, c->mdir, true)) != 0)
            return rc;
    }
    return saved ? 0 : TXN_NOTHING;
}

static void batch_undo(struct txn *t, void *ctx)
{
    (void)t;
    for (struct save_ctx *c = ctx; c; c = c->next) {
        if (c->linked)
            unlink(c->dst);
        c->linked = false;
    }
}

/* Group commit: the saves that arrive while a batch is being written wait
 * together, and the first of them to find no batch running writes them
 * all in one transaction (one directory fsync, one index commit), then
 * wakes the others. Each save returns only once its batch committed. */
#define SAVE_BATCH_MAX 64

static uint64_t stat_commits, stat_saves;

void storage_save_stats(uint64_t *commits, uint64_t *saves)
{
    *commits = __atomic_load_n(&stat_commits, __ATOMIC_RELAXED);
    *saves = __atomic_load_n(&stat_saves, __ATOMIC_RELAXED);
}

static void run_batch(struct storage_user *u, struct save_ctx *batch)
{
    static const struct txn_path path = {.work = batch_work, .undo = batch_undo};
    int rc = write_txn_path(u, &path, batch);
    uint64_t saved = 0;

    for (struct save_ctx *c = batch; c; c = c->next) {
        if (rc && !c->rc)
            c->rc = rc;
        if (!c->rc && !c->linked)
            c->rc = STORAGE_E_FAIL; /* not reached: every save ends linked or failed */
        saved += !c->rc;
    }
    if (saved) {
        __atomic_add_fetch(&stat_commits, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&stat_saves, saved, __ATOMIC_RELAXED);
    }
}

/* Queues the n saves at c (n > 1: one all-or-nothing group) and returns
 * once they are written. */
static int save_queued(struct storage_user *u, struct save_ctx *c, size_t n)
{
    pthread_mutex_lock(&u->cq_lock);
    c[0].group = n;
    for (size_t i = 0; i < n; i++) {
        c[i].next = NULL;
        *u->cq_tail = &c[i];
        u->cq_tail = &c[i].next;
    }
    while (!c->done) {
        struct save_ctx *batch, *last, *p;
        size_t k = 1;
        if (u->cq_leading) {
            pthread_cond_wait(&u->cq_cond, &u->cq_lock);
            continue;
        }
        batch = last = u->cq_head;
        if (batch->group > 1) {
            /* a group goes alone, whole */
            while (k < batch->group) {
                last = last->next;
                k++;
            }
        } else {
            while (last->next && k < SAVE_BATCH_MAX && last->next->group <= 1) {
                last = last->next;
                k++;
            }
        }
        u->cq_head = last->next;
        if (!u->cq_head)
            u->cq_tail = &u->cq_head;
        last->next = NULL;
        u->cq_leading = true;
        pthread_mutex_unlock(&u->cq_lock);
        run_batch(u, batch);
        pthread_mutex_lock(&u->cq_lock);
        for (p = batch; p; p = p->next)
            p->done = true;
        u->cq_leading = false;
        pthread_cond_broadcast(&u->cq_cond);
    }
    pthread_mutex_unlock(&u->cq_lock);
    return c->rc;
}

static int save_init(struct save_ctx *c, int64_t mbox, const char *mailbox, struct storage_draft *d,
                     bool to_new, unsigned flags, const char *const *keywords, size_t nkeywords,
                     int64_t internal_date)
{
    int rc;

    if (!d->finished)
        return STORAGE_E_INVAL;
    c->mbox = mbox;
    c->mailbox = mailbox;
    c->d = d;
    c->to_new = to_new;
    c->flags = flags & STORAGE_FLAGS_ALL;
    if ((rc = keywords_check(keywords, nkeywords)) != 0 ||
        (rc = keywords_merge("", STORAGE_STORE_SET, keywords, nkeywords, c->kw, sizeof(c->kw))) !=
            0)
        return rc;
    c->internal_date = internal_date <= 0 ? now_unix() : internal_date;
    pathf(c->src, sizeof(c->src), "%s", d->path);
    return 0;
}

static int save_common(struct storage_user *u, int64_t mbox, const char *mailbox,
                       struct storage_draft *d, bool to_new, unsigned flags,
                       const char *const *keywords, size_t nkeywords, int64_t internal_date,
                       uint32_t *uid_out, int64_t *mbox_out, char *name_out)
{
    struct save_ctx *c;
    int rc;

    if (!d->finished)
        return STORAGE_E_INVAL;
    if ((rc = drafts_sync(&d, 1)) != 0)
        return rc;
    /* about 20 kB: on the heap rather than on a pool thread's stack */
    if (!(c = calloc(1, sizeof(*c))))
        return STORAGE_E_NOMEM;
    if ((rc = save_init(c, mbox, mailbox, d, to_new, flags, keywords, nkeywords, internal_date)) !=
        0) {
        free(c);
        return rc;
    }
    rc = save_queued(u, c, 1);
    if (c->copied)
        unlink(c->src);
    if (rc == 0) {
        *uid_out = c->uid;
        if (mbox_out)
            *mbox_out = c->mbox_id;
        if (name_out)
            memcpy(name_out, c->mbox_name, sizeof(c->mbox_name));
    }
    free(c);
    return rc;
}

int storage_save_many(struct storage_user *u, int64_t mbox, struct storage_save_req *reqs, size_t n)
{
    struct storage_draft **ds;
    struct save_ctx *c;
    int rc = 0;

    if (mbox <= 0)
        return STORAGE_E_NOMBOX;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!reqs[i].d->finished)
            return STORAGE_E_INVAL;
    if (!(ds = malloc(n * sizeof(*ds))))
        return STORAGE_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        ds[i] = reqs[i].d;
    rc = drafts_sync(ds, n);
    free(ds);
    if (rc)
        return rc;
    if (!(c = calloc(n, sizeof(*c))))
        return STORAGE_E_NOMEM;
    for (size_t i = 0; i < n && !rc; i++)
        rc = save_init(&c[i], mbox, NULL, reqs[i].d, false, reqs[i].flags, reqs[i].keywords,
                       reqs[i].nkeywords, reqs[i].internal_date);
    if (rc == 0)
        rc = save_queued(u, c, n);
    for (size_t i = 0; i < n; i++) {
        if (c[i].copied)
            unlink(c[i].src);
        reqs[i].uid = rc == 0 ? c[i].uid : 0;
    }
    free(c);
    return rc;
}

int storage_save(struct storage_user *u, int64_t mbox, struct storage_draft *d, unsigned flags,
                 const char *const *keywords, size_t nkeywords, int64_t internal_date,
                 uint32_t *uid)
{
    if (mbox <= 0)
        return STORAGE_E_NOMBOX;
    return save_common(u, mbox, NULL, d, false, flags, keywords, nkeywords, internal_date, uid,
                       NULL, NULL);
}

int storage_deliver(struct storage_user *u, const char *mailbox, struct storage_draft *d,
                    uint32_t *uid, int64_t *mbox_id)
{
    return storage_deliver_named(u, mailbox, d, uid, mbox_id, NULL);
}

int storage_deliver_named(struct storage_user *u, const char *mailbox, struct storage_draft *d,
                          uint32_t *uid, int64_t *mbox_id, char name[STORAGE_MBOX_NAME_MAX + 1])
{
    if (u->light && (!mailbox || !*mailbox)) {
        /* to an account no session has open: the delivery journal, whose
         * UID comes when the index takes it in (journal.c) */
        int rc = storage_draft_end(d);
        if (rc == 0)
            rc = journal_deliver(u, d);
        if (rc != JOURNAL_NO) {
            *uid = 0;
            if (mbox_id)
                *mbox_id = 0;
            if (name && rc == 0)
                memcpy(name, "INBOX", sizeof("INBOX"));
            return rc;
        }
    }
    /* the folder is looked up in the transaction: no read connection */
    return save_common(u, 0, mailbox, d, true, 0, NULL, 0, 0, uid, mbox_id, name);
}

int storage_append(struct storage_user *u, int64_t mbox, const void *msg, size_t len,
                   unsigned flags, const char *const *keywords, size_t nkeywords,
                   int64_t internal_date, uint32_t *uid)
{
    struct storage_draft *d;
    int rc = storage_draft_new(u, 0, &d);

    if (rc)
        return rc;
    if ((rc = storage_draft_write(d, msg, len)) == 0 && (rc = storage_draft_finish(d)) == 0)
        rc = storage_save(u, mbox, d, flags, keywords, nkeywords, internal_date, uid);
    storage_draft_free(d);
    return rc;
}

/* ---- reading ---- */

/* Message files are opened without following a symlink (a user with access
 * to the Maildir could point one at another user's mail) and without
 * blocking on a FIFO planted under a message's name; the caller checks that
 * the result is a regular file. */
#define MSG_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)

/* Finds the current file of unique in mdir/{cur,new} (renamed behind us). */
static int find_by_unique(const char *mdir, const char *unique, char *out, size_t outlen)
{
    static const char *const sub[] = {"cur", "new"};
    size_t ul = strlen(unique);

    for (size_t i = 0; i < 2; i++) {
        char p[STORAGE_PATH_MAX];
        struct dirent *de;
        DIR *d;
        pathf(p, sizeof(p), "%s/%s", mdir, sub[i]);
        if (!(d = opendir(p)))
            continue;
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, unique, ul) == 0 &&
                (de->d_name[ul] == ',' || de->d_name[ul] == ':' || de->d_name[ul] == '\0')) {
                pathf(out, outlen, "%s/%s", p, de->d_name);
                closedir(d);
                return 0;
            }
        }
        closedir(d);
    }
    return -1;
}

int msg_file_open_rel(const char *mdir, const char *rel)
{
    char path[STORAGE_PATH_MAX], unique[256];
    const char *slash = strchr(rel, '/');
    uint32_t fu;
    unsigned ff;
    bool hi;
    int fd;

    if (pathf(path, sizeof(path), "%s/%s", mdir, rel) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if ((fd = open(path, MSG_OPEN_FLAGS)) >= 0 || errno != ENOENT)
        return fd;
    /* renamed by a flag sync that has not committed yet: look it up. A
     * directory read may miss an entry renamed while it reads (POSIX
     * leaves it open), and the file may be renamed again between the
     * lookup and the open: a few lookups, each from the start. */
    msg_file_parse(slash ? slash + 1 : rel, unique, sizeof(unique), &fu, &ff, &hi);
    for (int attempt = 0; attempt < 4; attempt++) {
        if (find_by_unique(mdir, unique, path, sizeof(path)) != 0)
            continue;
        if ((fd = open(path, MSG_OPEN_FLAGS)) >= 0 || errno != ENOENT)
            return fd;
    }
    errno = ENOENT;
    return -1;
}

int open_msg_file(struct storage_user *u, sqlite3 *db, int64_t mbox, uint32_t uid, int *fd,
                  uint64_t *size)
{
    char mdir[STORAGE_PATH_MAX], rel[1024];
    struct mbox_row m;
    sqlite3_stmt *st;
    struct stat sb;
    int rc;

    *fd = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        if ((rc = mbox_by_id(db, mbox, &m)) != 0)
            return rc;
        if ((rc = db_prepare(db, "SELECT path FROM messages WHERE mailbox_id = ? AND uid = ?",
                             &st)) != 0)
            return rc;
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, uid);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            pathf(rel, sizeof(rel), "%s", (const char *)sqlite3_column_text(st, 0));
        db_finalize(st);
        if (rc == SQLITE_DONE)
            return STORAGE_E_NOMSG;
        if (rc != SQLITE_ROW)
            return err_from_sqlite(db, rc);
        if ((rc = mbox_path(u, m.name, mdir, sizeof(mdir))) != 0)
            return rc;
        if ((*fd = msg_file_open_rel(mdir, rel)) >= 0)
            break;
        if (errno == ELOOP || errno == ENXIO)
            return STORAGE_E_NOMSG; /* a symlink or a FIFO planted in the Maildir */
        if (errno != ENOENT)
            return err_from_errno(errno);
    }
    if (*fd < 0)
        return STORAGE_E_NOMSG;
    if (fstat(*fd, &sb) < 0) {
        rc = err_from_errno(errno);
        close(*fd);
        *fd = -1;
        return rc;
    }
    if (!S_ISREG(sb.st_mode)) {
        /* a FIFO, device or directory under a message's name is no message */
        close(*fd);
        *fd = -1;
        return STORAGE_E_NOMSG;
    }
    *size = (uint64_t)sb.st_size;
    return 0;
}

int storage_msg_open(struct storage_user *u, int64_t mbox, uint32_t uid, int *fd, uint64_t *size)
{
    sqlite3 *db = reader_get(u);
    int rc;

    if (!db)
        return STORAGE_E_TEMP;
    rc = open_msg_file(u, db, mbox, uid, fd, size);
    reader_put(u, db);
    return rc;
}

int storage_msg_section(struct storage_user *u, int64_t mbox, uint32_t uid, const char *section,
                        int *fd, uint64_t *off, uint64_t *len)
{
    uint64_t size;
    size_t o = 0, l = 0;
    void *p;
    int rc = storage_msg_open(u, mbox, uid, fd, &size);

    if (rc)
        return rc;
    if (!section || !*section || size == 0) {
        *off = 0;
        *len = size;
        if (section && *section && size == 0 && strcasecmp(section, "TEXT") != 0 &&
            strcasecmp(section, "HEADER") != 0) {
            close(*fd);
            *fd = -1;
            return STORAGE_E_INVAL;
        }
        return 0;
    }
    p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, *fd, 0);
    if (p == MAP_FAILED) {
        rc = err_from_errno(errno);
        close(*fd);
        *fd = -1;
        return rc;
    }
    rc = mime_find_section(p, (size_t)size, section, &o, &l) == 0 ? 0 : STORAGE_E_INVAL;
    munmap(p, (size_t)size);
    if (rc) {
        close(*fd);
        *fd = -1;
        return rc;
    }
    *off = o;
    *len = l;
    return 0;
}

int storage_msg_binary(struct storage_user *u, int64_t mbox, uint32_t uid, const char *part,
                       uint64_t *off, uint64_t *len, enum storage_cte *cte)
{
    uint64_t size;
    size_t o = 0, l = 0;
    int fd = -1, c = STORAGE_CTE_IDENTITY;
    void *p;
    int rc = storage_msg_open(u, mbox, uid, &fd, &size);

    if (rc)
        return rc;
    *cte = STORAGE_CTE_IDENTITY;
    if (!part || !*part || size == 0) {
        close(fd);
        *off = 0;
        *len = size;
        return part && *part && size == 0 ? STORAGE_E_INVAL : 0;
    }
    p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        rc = err_from_errno(errno);
        close(fd);
        return rc;
    }
    rc = mime_find_binary(p, (size_t)size, part, &o, &l, &c) == 0 ? 0 : STORAGE_E_INVAL;
    munmap(p, (size_t)size);
    close(fd);
    if (rc)
        return rc;
    *off = o;
    *len = l;
    *cte = (enum storage_cte)c;
    return 0;
}

/* BODY[HEADER.FIELDS] of the top-level header from the copy kept in the
 * index. Returns HEADER_NOT_INDEXED when the index has no copy (a header
 * over MIME_MAX_INDEXED_HEADER): the caller then reads the file. */
#define HEADER_NOT_INDEXED 1
static int header_fields_from_index(struct storage_user *u, int64_t mbox, uint32_t uid,
                                    const char *const *names, size_t n, bool negate, char **out,
                                    size_t *outlen)
{
    sqlite3 *db = reader_get(u);
    sqlite3_stmt *st = NULL;
    int rc;

    if (!db)
        return STORAGE_E_TEMP;
    rc = db_prepare(
        db,
        "SELECT " HEADER_OF("h", "b") " FROM messages m JOIN bodies b ON b.id = m.body_id"
                                      " LEFT JOIN headers h ON h.body_id = m.body_id"
                                      " WHERE m.mailbox_id = ? AND m.uid = ?",
        &st);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, uid);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_NULL) {
            rc = HEADER_NOT_INDEXED;
        } else if (r == SQLITE_ROW) {
            const char *h = sqlite3_column_blob(st, 0);
            size_t hl = (size_t)sqlite3_column_bytes(st, 0);
            rc = mime_header_fields(h ? h : "", hl, names, n, negate ? 1 : 0, out, outlen) == 0
                     ? 0
                     : STORAGE_E_NOMEM;
        } else if (r == SQLITE_DONE) {
            rc = STORAGE_E_NOMSG;
        } else {
            rc = err_from_sqlite(db, r);
        }
        db_finalize(st);
    }
    reader_put(u, db);
    return rc;
}

int storage_msg_header_fields(struct storage_user *u, int64_t mbox, uint32_t uid, const char *part,
                              const char *const *names, size_t n, bool negate, char **out,
                              size_t *outlen)
{
    char section[128];
    uint64_t size;
    size_t o = 0, l = 0;
    void *p;
    int fd, rc;

    *out = NULL;
    *outlen = 0;
    if (!part || !*part) {
        /* the top-level header is in the index: no file is opened */
        rc = header_fields_from_index(u, mbox, uid, names, n, negate, out, outlen);
        if (rc != HEADER_NOT_INDEXED)
            return rc;
    }
    if (part && *part) {
        int k = pathf(section, sizeof(section), "%s.HEADER", part);
        if (k < 0 || (size_t)k >= sizeof(section))
            return STORAGE_E_INVAL;
    } else {
        pathf(section, sizeof(section), "HEADER");
    }
    if ((rc = storage_msg_open(u, mbox, uid, &fd, &size)) != 0)
        return rc;
    if (size == 0) {
        close(fd);
        return mime_header_fields("", 0, names, n, negate ? 1 : 0, out, outlen) == 0
                   ? 0
                   : STORAGE_E_NOMEM;
    }
    p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return err_from_errno(errno);
    if (mime_find_section(p, (size_t)size, section, &o, &l) != 0)
        rc = STORAGE_E_INVAL;
    else if (mime_header_fields((const char *)p + o, l, names, n, negate ? 1 : 0, out, outlen) != 0)
        rc = STORAGE_E_NOMEM;
    munmap(p, (size_t)size);
    return rc;
}

/* ---- metadata ---- */

static int range_cmp(const void *a, const void *b)
{
    const struct storage_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorted, merged copy of a set (NULL = everything). Caller frees *out. */
int uidset_normalize(const struct storage_uidset *set, struct storage_range **out, size_t *n);
int uidset_normalize(const struct storage_uidset *set, struct storage_range **out, size_t *n)
{
    struct storage_range *r;
    size_t cnt = set ? set->n : 1, k = 0;

    r = malloc((cnt ? cnt : 1) * sizeof(*r));
    if (!r)
        return STORAGE_E_NOMEM;
    if (!set) {
        r[0].lo = 1;
        r[0].hi = UINT32_MAX;
        *out = r;
        *n = 1;
        return 0;
    }
    for (size_t i = 0; i < cnt; i++) {
        uint32_t lo = set->r[i].lo, hi = set->r[i].hi;
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        r[i].lo = lo;
        r[i].hi = hi;
    }
    qsort(r, cnt, sizeof(*r), range_cmp);
    for (size_t i = 0; i < cnt; i++) {
        if (k > 0 && (uint64_t)r[i].lo <= (uint64_t)r[k - 1].hi + 1) {
            if (r[i].hi > r[k - 1].hi)
                r[k - 1].hi = r[i].hi;
        } else {
            r[k++] = r[i];
        }
    }
    *out = r;
    *n = k;
    return 0;
}

int storage_uidset_normalize(const struct storage_uidset *set, struct storage_range **out,
                             size_t *n)
{
    return uidset_normalize(set, out, n);
}

#define FETCH_BODIES                                                                               \
    (STORAGE_FETCH_ENVELOPE | STORAGE_FETCH_BODYSTRUCTURE | STORAGE_FETCH_BODY |                   \
     STORAGE_FETCH_HEADER | STORAGE_FETCH_OBJECTID | STORAGE_FETCH_PREVIEW)

/* The one decoder of a message row: MSG_COLS, then MSG_BODY_COLS when
 * `what` asks for any of FETCH_BODIES, then b.header for
 * STORAGE_FETCH_HEADER. */
static void msg_from_row(sqlite3_stmt *st, unsigned what, struct storage_msg *m)
{
    const char *kw = (const char *)sqlite3_column_text(st, 2);

    memset(m, 0, sizeof(*m));
    m->uid = (uint32_t)sqlite3_column_int64(st, 0);
    m->flags = (unsigned)sqlite3_column_int(st, 1);
    m->keywords = kw ? kw : "";
    m->modseq = (uint64_t)sqlite3_column_int64(st, 3);
    m->size = (uint64_t)sqlite3_column_int64(st, 4);
    m->internal_date = sqlite3_column_int64(st, 5);
    m->save_date = sqlite3_column_int64(st, 6);
    if (!(what & FETCH_BODIES))
        return;
    m->sent_date = sqlite3_column_int64(st, 7);
    if (what & STORAGE_FETCH_ENVELOPE)
        m->envelope = (const char *)sqlite3_column_text(st, 8);
    if (what & STORAGE_FETCH_BODYSTRUCTURE)
        m->bodystructure = (const char *)sqlite3_column_text(st, 9);
    if (what & STORAGE_FETCH_BODY)
        m->body = (const char *)sqlite3_column_text(st, 10);
    if ((what & STORAGE_FETCH_HEADER) && sqlite3_column_type(st, 11) != SQLITE_NULL) {
        m->header = sqlite3_column_blob(st, 11);
        m->header_len = (size_t)sqlite3_column_bytes(st, 11);
        if (!m->header)
            m->header = "";
    }
    if (what & STORAGE_FETCH_OBJECTID) {
        m->emailid = (uint64_t)sqlite3_column_int64(st, 12);
        m->threadid = (uint64_t)sqlite3_column_int64(st, 13);
    }
    if (what & STORAGE_FETCH_PREVIEW)
        m->preview = (const char *)sqlite3_column_text(st, 14);
    if ((what & STORAGE_FETCH_LISTING) && m->header)
        m->listing_fields = (unsigned)sqlite3_column_int(st, 15);
}

int msg_rows(sqlite3 *db, sqlite3_stmt *st, unsigned what, storage_msg_cb cb, void *arg,
             bool *stopped)
{
    int s;

    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct storage_msg m;
        msg_from_row(st, what, &m);
        if (cb(arg, &m) != 0) {
            if (stopped)
                *stopped = true;
            return 0;
        }
    }
    return s == SQLITE_DONE ? 0 : err_from_sqlite(db, s);
}

/* storage_fetch of STORAGE_FETCH_HEADER: a message whose header the
 * index does not keep (longer than MIME_MAX_INDEXED_HEADER) has it read
 * from its file for the callback. */
struct header_pass {
    struct storage_user *u;
    sqlite3 *db;
    int64_t mbox;
    storage_msg_cb cb;
    void *arg;
    int err;
};

static int header_pass_cb(void *arg, const struct storage_msg *m)
{
    struct header_pass *hp = arg;
    struct storage_msg mm;
    uint64_t size = 0;
    size_t o = 0, l = 0;
    void *p = MAP_FAILED;
    int fd, rc;

    if (m->header)
        return hp->cb(hp->arg, m);
    mm = *m;
    rc = open_msg_file(hp->u, hp->db, hp->mbox, m->uid, &fd, &size);
    if (rc == STORAGE_E_NOMSG)
        return hp->cb(hp->arg, &mm); /* its file is gone: no header (header NULL) */
    if (rc) {
        hp->err = rc;
        return 1;
    }
    if (size > 0)
        p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (size > 0 && p == MAP_FAILED) {
        hp->err = err_from_errno(errno);
        return 1;
    }
    if (size > 0 && mime_find_section(p, (size_t)size, "HEADER", &o, &l) == 0)
        mm.header = (const char *)p + o;
    else
        mm.header = "", l = 0;
    mm.header_len = l;
    rc = hp->cb(hp->arg, &mm);
    if (size > 0)
        munmap(p, (size_t)size);
    return rc;
}

int storage_fetch(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                  unsigned what, storage_msg_cb cb, void *arg)
{
    struct storage_range *r = NULL;
    struct mbox_row mr;
    struct header_pass hp = {.u = u, .mbox = mbox, .cb = cb, .arg = arg};
    sqlite3_stmt *st = NULL;
    bool stopped = false;
    size_t nr = 0;
    sqlite3 *db;
    int rc;

    if ((rc = uidset_normalize(set, &r, &nr)) != 0)
        return rc;
    if (!(db = reader_get(u))) {
        free(r);
        return STORAGE_E_TEMP;
    }
    if ((rc = db_exec(db, "BEGIN")) != 0 || (rc = mbox_by_id(db, mbox, &mr)) != 0)
        goto out;
    if (what == (STORAGE_FETCH_NO_SIZES | STORAGE_FETCH_NO_MODSEQ) &&
        (rc = mstate_fetch(u, db, &mr, r, nr, cb, arg)) != MSTATE_ABSENT)
        goto out;
    rc = 0;
    what &= ~(unsigned)STORAGE_FETCH_NO_MODSEQ;
    if ((what & ~(unsigned)(STORAGE_FETCH_LISTING | STORAGE_FETCH_NO_DATES)) !=
        STORAGE_FETCH_HEADER)
        what &= ~(unsigned)STORAGE_FETCH_LISTING; /* with the header block alone */
    if (what & ~(unsigned)(STORAGE_FETCH_HEADER | STORAGE_FETCH_LISTING | STORAGE_FETCH_NO_DATES))
        what &= ~(unsigned)STORAGE_FETCH_NO_DATES; /* the dates come with the bodies' columns */
    if (what & STORAGE_FETCH_HEADER) {
        hp.db = db;
        cb = header_pass_cb;
        arg = &hp;
    }
    {
        /* only the columns asked for: a column in the list is read (and
         * its overflow pages with it) for every row, whether or not the
         * caller looks at it */
        char sql[768];
        const char *cols = what & STORAGE_FETCH_NO_DATES ? MSG_COLS_LIST : MSG_COLS;
        if ((what & ~(unsigned)(STORAGE_FETCH_LISTING | STORAGE_FETCH_NO_DATES)) ==
            STORAGE_FETCH_HEADER)
            /* the header blocks alone (Thunderbird's listing): the listing
             * block where it is enough, else the whole block; bodies is
             * read only for a body saved before schema 10 (coalesce
             * evaluates a subquery only when those before it are NULL) */
            pathf(sql, sizeof(sql),
                  "SELECT %s, 0, NULL, NULL, NULL, coalesce(%s"
                  "(SELECT h.header FROM headers h WHERE h.body_id = m.body_id),"
                  " (SELECT b.header FROM bodies b WHERE b.id = m.body_id)),"
                  " 0, 0, NULL, %s FROM messages m%s"
                  " WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
                  cols, what & STORAGE_FETCH_LISTING ? "l.header, " : "",
                  what & STORAGE_FETCH_LISTING ? "l.fields" : "0",
                  what & STORAGE_FETCH_LISTING ? " LEFT JOIN listings l ON l.body_id = m.body_id"
                                               : "");
        else if (what & FETCH_BODIES)
            pathf(sql, sizeof(sql),
                  "SELECT " MSG_COLS ", b.sent_date, %s, %s, %s, %s, %s, %s"
                  " FROM messages m JOIN bodies b ON b.id = m.body_id%s"
                  " WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
                  what & STORAGE_FETCH_ENVELOPE ? "b.envelope" : "NULL",
                  what & STORAGE_FETCH_BODYSTRUCTURE ? "b.bodystructure" : "NULL",
                  what & STORAGE_FETCH_BODY ? "b.body" : "NULL",
                  what & STORAGE_FETCH_HEADER ? HEADER_OF("h", "b") : "NULL",
                  what & STORAGE_FETCH_OBJECTID ? "b.oid, b.thread" : "0, 0",
                  what & STORAGE_FETCH_PREVIEW ? "b.preview" : "NULL",
                  what & STORAGE_FETCH_HEADER ? " LEFT JOIN headers h ON h.body_id = m.body_id"
                                              : "");
        else if (what & STORAGE_FETCH_NO_SIZES)
            /* covered by messages_flags, narrower than messages_list
             * (which the planner would take as well) */
            pathf(sql, sizeof(sql),
                  "SELECT m.uid, m.flags, m.keywords, m.modseq, 0, 0, 0"
                  " FROM messages m INDEXED BY messages_flags"
                  " WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid");
        else
            /* covered by messages_list without the dates */
            pathf(sql, sizeof(sql),
                  "SELECT %s FROM messages m"
                  " WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
                  cols);
        rc = db_prepare(db, sql, &st);
    }
    for (size_t i = 0; i < nr && rc == 0 && !stopped; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, mbox);
        sqlite3_bind_int64(st, 2, r[i].lo);
        sqlite3_bind_int64(st, 3, r[i].hi);
        rc = msg_rows(db, st, what, cb, arg, &stopped);
    }
    if (rc == 0 && hp.err)
        rc = hp.err;
out:
    db_finalize(st);
    reader_put(u, db);
    free(r);
    return rc;
}

int storage_uids(struct storage_user *u, int64_t mbox, struct storage_uidlist *out)
{
    struct mbox_row mr;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = reader_get(u);
    int rc;

    memset(out, 0, sizeof(*out));
    if (!db)
        return STORAGE_E_TEMP;
    if ((rc = db_exec(db, "BEGIN")) != 0 || (rc = mbox_by_id(db, mbox, &mr)) != 0)
        goto out;
    if ((rc = db_prepare(db, "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", &st)))
        goto out;
    sqlite3_bind_int64(st, 1, mbox);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (uidlist_add(out, (uint32_t)sqlite3_column_int64(st, 0)) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    rc = rc == SQLITE_DONE ? 0 : (rc == SQLITE_NOMEM ? STORAGE_E_NOMEM : err_from_sqlite(db, rc));
out:
    db_finalize(st);
    reader_put(u, db);
    if (rc)
        storage_uidlist_free(out);
    return rc;
}

/* ---- previews of bodies saved before schema 9 ---- */

struct preview_ctx {
    int64_t mbox;
    uint32_t uid;
    const char *text;
};

static int preview_work(struct txn *t, void *ctx)
{
    struct preview_ctx *c = ctx;
    sqlite3_stmt *st;
    int rc = db_prepare(t->db,
                        "UPDATE bodies SET preview = ?1 WHERE preview IS NULL AND id ="
                        " (SELECT body_id FROM messages WHERE mailbox_id = ?2 AND uid = ?3)",
                        &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, c->text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, c->mbox);
    sqlite3_bind_int64(st, 3, c->uid);
    return db_step_done(t->db, st);
}

int storage_msg_preview(struct storage_user *u, int64_t mbox, uint32_t uid, char **out)
{
    /* a preview lost at a crash is computed again */
    static const struct txn_path path = {.before = txn_unsynced_before,
                                         .work = preview_work,
                                         .undo = txn_unsynced_after,
                                         .committed = txn_unsynced_after};
    struct mime_summary ms;
    struct preview_ctx c = {mbox, uid, NULL};
    uint64_t size = 0;
    int fd = -1, rc;

    *out = NULL;
    if ((rc = storage_msg_open(u, mbox, uid, &fd, &size)) != 0)
        return rc;
    rc = summarize_fd(fd, size, &ms);
    close(fd);
    if (rc)
        return rc;
    *out = ms.preview ? ms.preview : strdup("");
    ms.preview = NULL;
    mime_summary_free(&ms);
    if (!*out)
        return STORAGE_E_NOMEM;
    c.text = *out;
    /* kept, so that the file is read once; a failure to keep it costs a
     * read the next time, not the answer */
    (void)write_txn_path(u, &path, &c);
    return 0;
}
