/* Private declarations shared by the storage core files (store.c, names.c,
 * mailbox.c, message.c, change.c, search.c, recover.c). Not for other modules. */
#ifndef COFFRE_STORAGE_INTERNAL_H
#define COFFRE_STORAGE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "server/base/buf.h"
#include "storage/storage.h"

#define STORAGE_READERS 4 /* read connections per user handle */
#define STORAGE_PATH_MAX 4096
/* 2: trigram full-text index; 3: headers kept; 4: fts_pending (texts wait
 * there until storage_fts_index moves them into the full-text index); 5: a
 * word index and the texts deflated in place of the trigram index (fts.c) */
/* 9: object ids (RFC 8474) and previews (RFC 8970), objectid.c */
#define STORAGE_SCHEMA_VERSION 11
#define UIDVALIDITY_FILE "coffre-uidvalidity"

struct storage_watch {
    struct storage_user *u;
    storage_event_cb cb;
    void *arg;
    struct storage_watch *next;
};

struct storage_user {
    int64_t id;
    char *data_dir;
    char *root;      /* <data_dir>/users/<id> */
    char *maildir;   /* <root>/Maildir */
    int refs;        /* under the registry lock */
    bool busy;       /* being set up or closed; under the registry lock */
    dev_t index_dev; /* the index file the connections have open */
    ino_t index_ino;
    struct storage_user *next;

    pthread_mutex_t wlock; /* serializes writers; guards wdb */
    int wwaiting;          /* atomic: writers waiting for wlock (writer_lock) */
    sqlite3 *wdb;          /* NULL while asleep: opened again by writer_lock */
    int64_t data_version;
    /* storage_sleep: the index files as the last connection left them, for
     * a poll that need not open them to see that nothing changed */
    bool asleep; /* set under wlock; cleared by writer_lock, reader_get (atomic) */
    struct timespec sleep_mtime, sleep_wal_mtime;
    off_t sleep_size, sleep_wal_size;
    uint64_t last_use_ms; /* monotonic, the last reader_get or writer_lock */

    pthread_mutex_t rlock; /* guards the reader pool */
    pthread_cond_t rcond;  /* a reader given back, for readers_close */
    sqlite3 *rdb[STORAGE_READERS];
    bool rbusy[STORAGE_READERS];
    uint64_t rsteps[STORAGE_READERS]; /* VM steps of the current borrower */
    unsigned rextra;                  /* connections opened past the pool, in use */

    pthread_rwlock_t watch_lock;
    struct storage_watch *watches;

    pthread_mutex_t qlock;
    uint64_t quota_bytes, quota_messages;

    /* mailbox states (mstate.c) */
    pthread_mutex_t ms_lock;
    struct mstate *ms;
    uint64_t ms_gen; /* write transactions applied to the states */

    /* sort keys and orders (sortcache.c) */
    pthread_mutex_t sc_lock;
    struct scache *sc;
    size_t sc_bytes; /* all of sc */
    uint64_t sc_tick;

    /* \Recent (recent.c): the session of each mailbox selected read-write
     * that claims the messages added to it; rc_gen counts the claims
     * (under the writer lock) */
    pthread_mutex_t rc_lock;
    struct recent_owner *rc_owners;
    uint64_t rc_gen;

    /* group commit (message.c): saves waiting for the next batch */
    pthread_mutex_t cq_lock;
    pthread_cond_t cq_cond;
    struct save_ctx *cq_head, **cq_tail;
    bool cq_leading; /* a batch is being written */

    /* a light handle (light.c): no full open behind it, outside the
     * registry; refs, next (its bucket of the light handles), the kept
     * list links and light_idle_since are under the light handles' lock */
    bool light;
    bool journal_held;                          /* counted as an open by the delivery journal */
    bool light_stale;                           /* atomic: not to be used again (index replaced) */
    uint64_t light_idle_since;                  /* mono_ms when its last user let it go */
    struct storage_user *kept_prev, *kept_next; /* kept: idle longest first */

    struct ahead *ahead; /* drafts opened ahead (ahead.c, under its lock) */
};

/* A change waiting to be announced after commit. */
struct pending_event {
    enum storage_event_type type;
    int64_t mbox;
    uint64_t modseq;
    struct storage_uidlist uids;
    /* STORAGE_EV_FLAGS of a STORE: what it did to every uid listed
     * (store_count of them), for the mailbox states */
    bool store_known, store_kw;
    bool store_kw_added; /* keywords added (so every uid has some) */
    bool partial;   /* uids lacks some of them (out of memory) */
    int64_t viewer; /* a viewer's own \Seen changed (pseen.c): for its sessions only */
    unsigned store_set, store_clear;
    size_t store_count;
};

/* ahead.c: an empty draft file made ahead in u's tmp/ (its path in
 * path), or -1 when none is ready (the caller opens one); more: others
 * follow, have more made meanwhile. */
int ahead_take(struct storage_user *u, char *path, size_t len, bool more);
/* Removes the files made ahead for u, waiting for a creation under way;
 * final: u is being freed. */
void ahead_drop(struct storage_user *u, bool final);
/* How many wait for u once none is being made (tests). */
unsigned ahead_ready(struct storage_user *u);

/* store.c */
/* snprintf that leaves "" (and returns -1) when the result does not fit, so
 * that a truncated path never names another file. */
int pathf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int err_from_errno(int e);
int err_from_sqlite(sqlite3 *db, int rc);
int db_open_conn(const char *path, bool create, sqlite3 **out);
int reopen_if_replaced(struct storage_user *u, bool *fresh);
int db_exec(sqlite3 *db, const char *sql);
int db_begin(sqlite3 *db); /* BEGIN IMMEDIATE */
int db_commit(sqlite3 *db);
void db_rollback(sqlite3 *db);
/* Through server/base/sqlcache.c: the statements prepared from the same
 * SQL are kept with their connection. Every statement and connection of
 * the store goes through these. */
int db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);
int db_finalize(sqlite3_stmt *st);
int db_close(sqlite3 *db);
/* Steps st, a statement that returns no row, and finalizes it. */
int db_step_done(sqlite3 *db, sqlite3_stmt *st);
int db_create_schema(sqlite3 *db);
int db_meta_get(sqlite3 *db, const char *key, int64_t *v);
int db_meta_set(sqlite3 *db, const char *key, int64_t v);
int db_meta_add(sqlite3 *db, const char *key, int64_t delta);
/* Room left under u's quota as db counts it: bytes and messages that may
 * still be added, UINT64_MAX where no limit is set (db not read then). */
int quota_room_db(struct storage_user *u, sqlite3 *db, uint64_t *bytes, uint64_t *messages);
/* Runs sql, a statement that returns no row, with ?1.. bound to the integers
 * given (db_run) or ?1 to text and ?2.. to the integers (db_run_text; at
 * least one integer: without any, call db_run_binds with v NULL). */
int db_run_binds(sqlite3 *db, const char *sql, const char *text, const int64_t *v, size_t n);
#define DB_INTS(...)                                                                               \
    (const int64_t[]){__VA_ARGS__}, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)
#define db_run(db, sql, ...) db_run_binds(db, sql, NULL, DB_INTS(__VA_ARGS__))
#define db_run_text(db, sql, text, ...) db_run_binds(db, sql, text, DB_INTS(__VA_ARGS__))
/* The same for a query: *out gets the first column of its first row, 0
 * when it has none. */
int db_int_binds(sqlite3 *db, int64_t *out, const char *sql, const char *text, const int64_t *v,
                 size_t n);
/* Makes room for element n of a growable array (*arr, *cap elements of
 * size bytes; `first` the capacity of a new one). 0 or STORAGE_E_NOMEM. */
int array_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first);
/* The limits of storage_set_limits. */
extern struct storage_limits storage_limits;
/* A read connection, for one call: its VM steps count against
 * storage_limits.max_steps from here (SQLITE_INTERRUPT past them, which
 * err_from_sqlite turns into STORAGE_E_LIMIT). */
sqlite3 *reader_get(struct storage_user *u);
void reader_put(struct storage_user *u, sqlite3 *db);
/* Takes the writer lock; opens the writer connection again when the handle
 * was asleep (storage_sleep). 0, or the error of that open (lock not held). */
int writer_lock(struct storage_user *u);
void writer_unlock(struct storage_user *u);
void emit_event(struct storage_user *u, struct pending_event *ev);

/* The write transaction. Every change to an index goes through write_txn:
 * it takes the account's writer lock, begins (BEGIN IMMEDIATE), runs the
 * work, commits, releases the lock and only then announces the change
 * events the work queued with txn_event. When the work or the commit fails,
 * the transaction is rolled back, nothing is announced and the error is
 * returned. A work function returns 0, a negative STORAGE_E_* code, or
 * TXN_NOTHING: nothing to change; rolled back, write_txn returns 0. */
#define TXN_NOTHING 1
struct txn {
    struct storage_user *u;
    sqlite3 *db; /* u->wdb, inside the transaction */
    struct pending_event *ev;
    size_t nev, capev;
    struct pending_event ev_inline[2];
};
typedef int (*txn_work)(struct txn *t, void *ctx);
int write_txn(struct storage_user *u, txn_work work, void *ctx);
/* A write path that also changes things beside the index. Each hook runs with
 * the writer lock held; any may be NULL. Once before() succeeded, exactly one
 * of committed() and undo() runs. */
struct txn_path {
    /* before BEGIN; an error ends there, and so does TXN_NOTHING (returned
     * as is: nothing to write) */
    int (*before)(struct storage_user *u, void *ctx);
    txn_work work;
    /* the transaction did not commit (work or COMMIT failed, or there was
     * nothing to do) and is rolled back: puts back what was changed on disk */
    void (*undo)(struct txn *t, void *ctx);
    void (*committed)(struct txn *t, void *ctx); /* after the COMMIT */
};
int write_txn_path(struct storage_user *u, const struct txn_path *p, void *ctx);
/* A transaction not worth a sync of its own (what it writes is found or
 * computed again when a crash loses it; the next durable commit syncs it
 * anyway): txn_unsynced_before as before() (or at its end), and
 * txn_unsynced_after as both undo() and committed(). */
int txn_unsynced_before(struct storage_user *u, void *ctx);
void txn_unsynced_after(struct txn *t, void *ctx);
/* Under the writer lock: one transaction of p's work, then committed() or
 * undo() (before() is the caller's); *announce when it committed, and the
 * events t queued are then the caller's to announce. */
int txn_run(struct storage_user *u, const struct txn_path *p, void *ctx, struct txn *t,
            bool *announce);
/* Events of committed transactions, announced later. */
struct txn_events {
    struct pending_event *ev;
    size_t n, cap;
};

/* journal.c: deliveries to accounts whose store is not open (see there).
 * JOURNAL_NO: not for the journal; deliver through the index. */
#define JOURNAL_NO 2
struct storage_draft;
/* A delivery into INBOX through light handle u of draft d, ended
 * (storage_draft_end) but maybe not synced: 0 once journaled (d synced),
 * JOURNAL_NO (d as it was), or an error (STORAGE_E_QUOTA, a failed sync). */
int journal_deliver(struct storage_user *u, struct storage_draft *d);
/* message.c: an ended draft's file and what its parse found. */
const char *draft_path(const struct storage_draft *d);
const struct mime_summary *draft_summary(const struct storage_draft *d);
/* Room under u's quota as the journal counts it; JOURNAL_NO when unknown. */
int journal_quota_room(struct storage_user *u, uint64_t *bytes, uint64_t *messages);
/* A full handle of the account opens (waits for its deliveries being
 * journaled) / closes. */
void journal_hold(struct storage_user *u);
void journal_release(struct storage_user *u);
/* Before u's writer connection closes: its usage, for the journal's quota. */
void journal_note_usage(struct storage_user *u);
/* The journal may hold deliveries to u's account; under the writer lock,
 * journal_drain moves them into the index (their events into out). */
bool journal_pending(struct storage_user *u);
void journal_drain(struct storage_user *u, struct txn_events *out);
/* Queues an event of type for mbox, announced after the commit; its uids
 * (filled by the caller) belong to the transaction. NULL when out of memory. */
struct pending_event *txn_event(struct txn *t, enum storage_event_type type, int64_t mbox);
int uidlist_add(struct storage_uidlist *l, uint32_t uid);
int fsync_dir(const char *path);
int fsync_dirat(int dfd);
int64_t now_unix(void);
uint64_t mono_ms(void); /* CLOCK_MONOTONIC, milliseconds */
void register_sql_functions(sqlite3 *db, struct storage_user *u);
/* search.c: ASCII case-insensitive substring search (only ASCII folds). */
bool contains_ci(const char *hay, size_t hl, const char *needle, size_t nl);

/* fts.c: the full-text index (see there). A sorted set of body ids. */
struct fts_ids {
    int64_t *v;
    size_t n, cap;
};
/* The bodies whose text (the body's only when body_only) contains str, as
 * SEARCH BODY/TEXT matches: indexed or waiting. Caller frees *out. */
int fts_search(sqlite3 *db, const char *str, bool body_only, struct fts_ids *out);
bool fts_ids_has(const struct fts_ids *s, int64_t id);
void fts_ids_free(struct fts_ids *s);
/* Inside a write transaction: moves up to max (-1: all) waiting texts into
 * the index, oldest first, stopping after the first text done past the
 * monotonic time until_ms (0: no limit) or found *yield above 0 (NULL:
 * not asked); *last the newest body moved, 0 when none waited. */
int fts_index_batch(sqlite3 *db, int64_t max, uint64_t until_ms, const int *yield, int64_t *last);
/* Inside a write transaction, before its bodies row goes: the body's text
 * out of the index or the waiting texts. */
int fts_forget(sqlite3 *db, int64_t body_id);
/* Schema 4 to 5, inside a write transaction, before the schema is created. */
int fts_migrate_4(sqlite3 *db);
/* Schema 5 to 8, inside a write transaction: the indexed texts wait again,
 * to be indexed anew (with the whole header, in casemapped form). */
int fts_reindex_all(sqlite3 *db);

/* names.c */
/* Encodes a checked name into the Maildir++ directory name (".A.b%2Ec", ""
 * for INBOX). Returns 0 or STORAGE_E_BADNAME. */
int name_to_dir(const char *name, char *out, size_t outlen);
/* Decodes a Maildir++ directory name (without the leading '.'); -1 if it is
 * not one we could have written. */
int dir_to_name(const char *dir, char *out, size_t outlen);
/* Canonical form: "INBOX" for any case of it. Returns 0 or STORAGE_E_BADNAME. */
int name_normalize(const char *name, char *out, size_t outlen);
int mbox_path(struct storage_user *u, const char *name, char *out, size_t outlen);

/* mailbox.c */
struct mbox_row {
    int64_t id;
    char name[STORAGE_MBOX_NAME_MAX + 1];
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
};
#define MBOX_COLS "id, name, uidvalidity, uidnext, highestmodseq"
/* A row of MBOX_COLS; STORAGE_E_CORRUPT for a name too long. */
int mbox_row_decode(sqlite3_stmt *st, struct mbox_row *out);
int mbox_by_id(sqlite3 *db, int64_t id, struct mbox_row *out);
/* vanished.c: the floor of forgotten expunges of a mailbox (meta), read
 * (0 when none) and raised; the meta keys of a mailbox being deleted. */
void vanished_floor_key(char *out, size_t cap, int64_t mbox, uint32_t uidvalidity);
int vanished_floor_get(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint64_t *floor);
int vanished_floor_raise(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint64_t floor);
int vanished_forget_mailbox(sqlite3 *db, int64_t mbox);
int mbox_by_name(sqlite3 *db, const char *name, struct mbox_row *out);
int mbox_create_locked(struct storage_user *u, const char *name, unsigned special_use,
                       uint32_t uidvalidity, uint32_t uidnext, int64_t *id_out);
int mbox_bump_modseq(sqlite3 *db, int64_t mbox, uint64_t *modseq);
int mbox_set_uidnext(sqlite3 *db, int64_t mbox, uint32_t uidnext);
/* STORAGE_E_LIMIT when creating name and its missing parents would take
 * the account past storage_limits.max_mailboxes. */
int mailbox_room(sqlite3 *db, const char *name);
int subscription_set(sqlite3 *db, const char *name, bool on);
int uidvalidity_file_write(const char *mdir, uint32_t uidvalidity, uint32_t uidnext);
int uidvalidity_file_read(const char *mdir, uint32_t *uidvalidity, uint32_t *uidnext);
uint32_t new_uidvalidity(sqlite3 *db);
int ensure_maildir_dirs(const char *mdir);

/* message.c */
/* Builds a file name for uid in buf: "<unique>,U=<uid>,S=<size>:2,<flags>". */
int msg_file_name(char *buf, size_t len, const char *unique, uint32_t uid, uint64_t size,
                  unsigned flags);
/* Splits a file name: unique part (before ",U=" / ":2,"), uid (0 if none),
 * flags from ":2,". */
void msg_file_parse(const char *fname, char *unique, size_t ulen, uint32_t *uid, unsigned *flags,
                    bool *has_info);
void flags_to_letters(unsigned flags, char *out, size_t len);
unsigned letters_to_flags(const char *s);
int make_unique(char *buf, size_t len);
/* A new file in tmpdir under a unique name (its path into out), open for
 * reading and writing: every draft and every copy made in a tmp/. */
int tmp_file_open(const char *tmpdir, char *out, size_t outlen, int *fd);
/* Ends a file of tmp_file_open, whose writing gave rc: fsync'd when rc is 0,
 * closed, removed when the result is an error. Returns the result. */
int tmp_file_close(int fd, const char *path, int rc);
/* Inserts a message row (and its body/FTS rows) for a file already in place. */
struct mime_summary;
/* Binds s as text, or NULL when s is NULL. */
void bind_opt(sqlite3_stmt *st, int i, const char *s);
int msg_insert(sqlite3 *db, int64_t mbox, uint32_t uid, const char *path, uint64_t size,
               int64_t internal_date, unsigned flags, unsigned file_flags, const char *keywords,
               const struct mime_summary *ms, int64_t body_id, int64_t *body_id_out,
               uint64_t modseq);
int summarize_fd(int fd, uint64_t size, struct mime_summary *ms);
int keywords_merge(const char *cur, enum storage_store_op op, const char *const *kw, size_t n,
                   char *out, size_t outlen);
int keywords_check(const char *const *kw, size_t n);
int open_msg_file(struct storage_user *u, sqlite3 *db, int64_t mbox, uint32_t uid, int *fd,
                  uint64_t *size);
/* Opens the message file mdir/rel (rel as the index holds it) read-only,
 * not following a symlink nor blocking on a FIFO; when it is gone, the file
 * of the same unique name in cur/ or new/ (a flag sync renamed it and has
 * not committed yet). -1 with errno set when neither opens. */
int msg_file_open_rel(const char *mdir, const char *rel);
/* A message row more (body_ref) or less (body_release) shares the body. */
int body_ref(sqlite3 *db, int64_t body_id);
int body_release(sqlite3 *db, int64_t body_id);
/* The columns of a message that msg_rows decodes, in this order (messages
 * m); MSG_BODY_COLS follow when envelope, body structure or body are asked
 * for (JOIN bodies b). */
#define MSG_COLS "m.uid, m.flags, m.keywords, m.modseq, m.size, m.internal_date, m.save_date"
/* MSG_COLS without the dates (0), as messages_list covers them */
#define MSG_COLS_LIST "m.uid, m.flags, m.keywords, m.modseq, m.size, 0, 0"
#define MSG_BODY_COLS "b.sent_date, b.envelope, b.bodystructure, b.body"
/* Steps st, a query of those columns, and calls cb with each message (what:
 * STORAGE_FETCH_*); cb returning non-zero stops (*stopped set, may be NULL).
 * 0, or the error of the query. */
int msg_rows(sqlite3 *db, sqlite3_stmt *st, unsigned what, storage_msg_cb cb, void *arg,
             bool *stopped);

/* sort.c: the SORT/THREAD keys of a body (table sortkeys, one row per
 * bodies row; strings casemapped, NULL when empty; message ids as "<id>"
 * tokens, parents the References, else the first id of In-Reply-To). */
#define SORTKEYS_COLUMNS                                                                           \
    "body_id INTEGER PRIMARY KEY, sent_date INTEGER NOT NULL, subject TEXT,"                       \
    " refwd INTEGER NOT NULL, from_ TEXT, to_ TEXT, cc TEXT, dfrom TEXT, dto TEXT, dcc TEXT,"      \
    " message_id TEXT, parents TEXT"
int sortkeys_insert(sqlite3 *db, int64_t body_id, int64_t sent_date, const char *envelope,
                    const char *subject, const char *message_id, const char *in_reply_to,
                    const char *references);
/* Schema 6 to 7, inside a write transaction: the keys of every body. */
int sortkeys_migrate_6(sqlite3 *db);
/* The message ids of v ("<id>" tokens) appended to b, separated by
 * spaces; at most max of them (0: all). The count. */
size_t msgid_list(struct buf *b, const char *v, size_t max);

/* objectid.c: object ids (RFC 8474). A new random id, never 0. */
int64_t object_id_new(void);
/* The thread of a new body whose EMAILID is oid (threads table). */
int thread_assign(sqlite3 *db, int64_t oid, const char *message_id, const char *in_reply_to,
                  const char *references, int64_t *thread);
/* Schema 8 to 9, inside a write transaction: the columns, an id for every
 * mailbox and body, every body's thread; no message file read (previews
 * wait until asked for: storage_msg_preview). */
int objectid_migrate_8(sqlite3 *db);
#define THREADS_TABLE                                                                              \
    "CREATE TABLE IF NOT EXISTS threads(msgid TEXT PRIMARY KEY, thread INTEGER NOT NULL)"          \
    " WITHOUT ROWID;"

/* import.c: whether uid is among the UIDs storage_import_uidnext kept
 * for an import in mailbox mbox (incarnation uidvalidity). */
bool import_reserved(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, uint32_t uid);

/* pseen.c: per-user \Seen on shared mailboxes (see there). The table,
 * created at every open of an index (an idempotent addition). */
#define PSEEN_TABLE                                                                                \
    "CREATE TABLE IF NOT EXISTS pseen(mailbox_id INTEGER NOT NULL, viewer INTEGER NOT NULL,"       \
    " lo INTEGER NOT NULL, hi INTEGER NOT NULL, uidvalidity INTEGER NOT NULL,"                     \
    " PRIMARY KEY(mailbox_id, viewer, lo)) WITHOUT ROWID;"
/* search.c: fts_pending's ids alone, so that storage_fts_waiting counts a
 * few bytes a row, not the rows of texts; created at every open of an
 * index too (an idempotent addition). */
#define FTS_PENDING_IDS "CREATE INDEX IF NOT EXISTS fts_pending_ids ON fts_pending(body_id);"
/* What a fetch of FLAGS (a client's resync of a folder) reads of each
 * message, narrow: a scan of it reads a seventh of the pages of messages,
 * whose rows hold the file's name, sizes and dates. Made at every open
 * when an index lacks it. */
#define MESSAGES_FLAGS                                                                             \
    "CREATE INDEX IF NOT EXISTS messages_flags ON messages(mailbox_id, uid, flags, keywords,"      \
    " modseq);"
/* What a folder's listing (UID, RFC822.SIZE, FLAGS and header fields)
 * reads of each message: the same and the size and body, a fifth of the
 * pages of messages. Beside messages_flags rather than in its place: the
 * FLAGS resync, the commonest command on a big folder, reads the narrower
 * one. Made at every open when an index lacks it. */
#define MESSAGES_LIST                                                                              \
    "CREATE INDEX IF NOT EXISTS messages_list ON messages(mailbox_id, uid, flags, keywords,"       \
    " modseq, size, body_id);"
/* The top-level header block of each body (schema 10): apart from the
 * rest of the body's row, so that a fetch of header fields over a big
 * folder reads the blocks alone, not every page of bodies. Bodies saved
 * before keep theirs in bodies.header: readers take
 * HEADER_OF(h, b) with headers h joined on the body's id. */
#define HEADERS_TABLE                                                                              \
    "CREATE TABLE IF NOT EXISTS headers(body_id INTEGER PRIMARY KEY, header BLOB NOT NULL);"
#define HEADER_OF(h, b) "coalesce(" h ".header, " b ".header)"
/* The fields of each body's top-level header that mail clients ask for in
 * a folder's listing (storage_listing_fields), apart from the whole block
 * (schema 11): a listing of a big folder reads a fraction of the pages of
 * headers, whose blocks also hold the Received lines, signatures and
 * every other field; fields: which of them it holds (the bits of
 * storage_listing_block). A body saved before, or with none of the
 * fields, has no row: readers fall back to the whole block. */
#define LISTINGS_TABLE                                                                             \
    "CREATE TABLE IF NOT EXISTS listings(body_id INTEGER PRIMARY KEY, fields INTEGER NOT NULL,"    \
    " header BLOB NOT NULL);"
/* A UID set as search.c's coffre_inset(set, uid) takes it (bound as a
 * pointer of type "coffre_rangeset"): ascending, disjoint ranges. */
struct rangeset {
    struct storage_range *r;
    size_t n;
};
int uidset_normalize(const struct storage_uidset *set, struct storage_range **out, size_t *n);
/* viewer's ranges of mailbox mbox (incarnation uidvalidity), in db's
 * transaction. */
int pseen_read(sqlite3 *db, int64_t mbox, uint32_t uidvalidity, int64_t viewer,
               struct storage_seen *out);
/* In the write transaction that deletes mailbox mbox or gives it another
 * UIDVALIDITY: every viewer's rows go. */
int pseen_forget_mailbox(sqlite3 *db, int64_t mbox);
/* RENAME INBOX: the messages, and so the viewers' rows, go to mailbox to
 * (incarnation uidvalidity). */
int pseen_move_mailbox(sqlite3 *db, int64_t from, int64_t to, uint32_t uidvalidity);

/* recover.c */
enum rescan_mode {
    RESCAN_OPEN,    /* mailboxes whose new/ or cur/ changed since last time */
    RESCAN_FORCE,   /* every mailbox */
    RESCAN_REBUILD, /* fresh index: adopt everything, trusting U= in names */
    RESCAN_CHECK,   /* report only, change nothing */
};
struct rescan_report {
    void (*report)(void *arg, const char *line);
    void *arg;
    unsigned problems;
    int64_t *changed; /* mailbox ids whose content changed */
    size_t nchanged, capchanged;
};
/* Rescans mailbox mbox (0: every one) in a write transaction and announces
 * each mailbox whose content changed (STORAGE_EV_EXTERNAL). reopen: first
 * opens the index again if its file was replaced (and then rebuilds it).
 * committed (may be NULL) runs after the commit, with the writer lock. */
int rescan_write(struct storage_user *u, int64_t mbox, enum rescan_mode mode, bool reopen,
                 void (*committed)(struct txn *t, void *ctx));
void clean_tmp(const char *mdir);
int dir_mtime_changed(struct storage_user *u, int64_t mbox, const char *mdir, bool update);

/* mailbox.c */
void remove_tree(const char *path);
/* A mailbox as storage_mbox_get gives it, by name (normalized) or, with
 * name NULL, by id, in db's transaction. */
int mbox_info_read(sqlite3 *db, const char *name, int64_t id, struct storage_mbox *out);

/* mstate.c: the mailbox states kept for SELECT and STATUS */
struct mstate;
/* In a write transaction, once it holds the write lock: states whose
 * mailbox row moved without this process are marked to be built again. */
void mstate_begin(struct txn *t);
/* In the write transaction, after its work and before its COMMIT: applies
 * its events to the states (nothing else can commit meanwhile). */
void mstate_apply(struct txn *t);
/* The COMMIT after mstate_apply failed: every state is built again. */
void mstate_abort(struct storage_user *u);
/* Frees every state (the index was replaced, the handle closes). */
void mstate_drop_all(struct storage_user *u);
/* A FLAGS resync (storage_fetch of STORAGE_FETCH_NO_SIZES and
 * STORAGE_FETCH_NO_MODSEQ) of the UIDs of r[0..nr) (normalized) in the
 * mailbox of row, read in db's read transaction: cb for each message,
 * from the mailbox's state when it is current for row (the keywords read
 * from the rows of the messages with some); MSTATE_ABSENT when it is not
 * (nothing was called: the caller reads the index). */
#define MSTATE_ABSENT 1
int mstate_fetch(struct storage_user *u, sqlite3 *db, const struct mbox_row *row,
                 const struct storage_range *r, size_t nr, storage_msg_cb cb, void *arg);

/* sort.c, sortcache.c: the rows SORT and THREAD read */
/* the string columns of sortkeys, in the order sort.c selects them */
enum { S_SUBJECT, S_FROM, S_TO, S_CC, S_DFROM, S_DTO, S_DCC, S_MSGID, S_PARENTS, S_N };
/* want: bits 1 << S_* for the strings, KEYS_DATE for the sent date */
#define KEYS_DATE (1u << S_N)
#define KEYS_ANY ((1u << (S_N + 1)) - 1)

struct srow {
    uint32_t uid;
    int refwd;
    int64_t date, arrival, size;
    const char *s[S_N]; /* offsets into the pool while loading, then pointers */
};

struct rows {
    struct srow *r;
    size_t n, cap;
    struct buf pool;
};

/* Column k of row r: t[0..len) added to rs's pool (r->s[k] its offset;
 * parents split into NUL-terminated ids for the threading). */
void rows_add_str(struct rows *rs, struct srow *r, int k, const char *t, size_t len);

/* UID sets ANDed (SORT ... ALL, the commonest query, is the session's
 * view AND ALL): told apart in memory, without a search query. */
struct uidsets {
    struct {
        struct storage_range *r;
        size_t n;
    } s[8];
    size_t n;
};
/* Is q only ALL and UID sets under ANDs? Their sets, normalized, added
 * to us (the caller frees them, also after false). */
bool sort_only_uidsets(const struct storage_search *q, struct uidsets *us, int *rc);

/* sortcache.c: each mailbox's sort keys and orders kept in memory by the
 * open store (see there). The rows q matches in UID order with the
 * columns of want, from the cache: 1 when the cache cannot serve (it is
 * off, or the mailbox's keys would not fit), the caller reads the index. */
int sortcache_rows(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                   unsigned want, struct rows *rs);
/* storage_sort from the cache; 1 when the cache cannot serve. */
int sortcache_sort(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                   const struct storage_sort_crit *crit, size_t n, struct storage_uidlist *out);
/* Frees every cached mailbox (the index was replaced, the handle closes). */
void sortcache_drop_all(struct storage_user *u);

/* recent.c: the \Recent floors (see there) */
struct recent_owner;
/* In a write transaction, after its work: the messages it added to a
 * mailbox a session holds selected read-write are claimed (the floor moves
 * up to them). */
int recent_apply(struct txn *t);
/* In the write transaction that deletes mailbox mbox: its floor goes. */
int recent_forget(struct txn *t, int64_t mbox);
/* Frees the owner entries (the handle closes). */
void recent_drop_all(struct storage_user *u);

/* store.c: a handle with its locks, nothing open (NULL when out of
 * memory), and its end (connections closed, freed) */
struct storage_user *user_new(int64_t id, const char *data_dir);
void user_free(struct storage_user *u);

/* vfs.c: the name of the VFS the index connections open through (SQLite's
 * own, but a WAL's directory synced once per file rather than once per
 * connection), NULL for SQLite's default when it could not be set up. */
const char *index_vfs(void);

/* light.c: STORAGE_E_TEMP when the index file is no longer the one the
 * light handle found (replaced by coffrectl mailbox reindex). */
int light_check_index(struct storage_user *u);

/* store.c: a handle outside the registry (coffrectl check) */
int user_open_private(const char *data_dir, int64_t id, struct storage_user **out);
void user_close_private(struct storage_user *u);

#endif
