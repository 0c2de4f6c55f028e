/* Private declarations shared by the storage core files (store.c, names.c,
 * mailbox.c, message.c, change.c, search.c, recover.c). Not for other modules. */
#ifndef COFFRE_STORAGE_INTERNAL_H
#define COFFRE_STORAGE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>

#include "storage/storage.h"

#define STORAGE_READERS 4 /* read connections per user handle */
#define STORAGE_PATH_MAX 4096
/* 2: trigram full-text index; 3: headers kept; 4: fts_pending (texts wait
 * there until storage_fts_index moves them into the full-text index) */
#define STORAGE_SCHEMA_VERSION 4
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
    char *root;    /* <data_dir>/users/<id> */
    char *maildir; /* <root>/Maildir */
    int refs;      /* under the registry lock */
    bool busy;     /* being set up or closed; under the registry lock */
    dev_t index_dev; /* the index file the connections have open */
    ino_t index_ino;
    struct storage_user *next;

    pthread_mutex_t wlock; /* serializes writers; guards wdb */
    sqlite3 *wdb;
    int64_t data_version;

    pthread_mutex_t rlock; /* guards the reader pool */
    pthread_cond_t rcond;
    sqlite3 *rdb[STORAGE_READERS];
    bool rbusy[STORAGE_READERS];

    pthread_rwlock_t watch_lock;
    struct storage_watch *watches;

    pthread_mutex_t qlock;
    uint64_t quota_bytes, quota_messages;
};

/* A change waiting to be announced after commit. */
struct pending_event {
    enum storage_event_type type;
    int64_t mbox;
    uint64_t modseq;
    struct storage_uidlist uids;
};

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
int db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);
int db_create_schema(sqlite3 *db);
int db_meta_get(sqlite3 *db, const char *key, int64_t *v);
int db_meta_set(sqlite3 *db, const char *key, int64_t v);
int db_meta_add(sqlite3 *db, const char *key, int64_t delta);
sqlite3 *reader_get(struct storage_user *u);
void reader_put(struct storage_user *u, sqlite3 *db);
void writer_lock(struct storage_user *u);
void writer_unlock(struct storage_user *u);
void emit_event(struct storage_user *u, struct pending_event *ev);
int uidlist_add(struct storage_uidlist *l, uint32_t uid);
int fsync_dir(const char *path);
int fsync_dirat(int dfd);
int64_t now_unix(void);
void register_sql_functions(sqlite3 *db, struct storage_user *u);

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
int mbox_by_id(sqlite3 *db, int64_t id, struct mbox_row *out);
int mbox_by_name(sqlite3 *db, const char *name, struct mbox_row *out);
int mbox_create_locked(struct storage_user *u, const char *name, unsigned special_use,
                       uint32_t uidvalidity, uint32_t uidnext, int64_t *id_out);
int mbox_bump_modseq(sqlite3 *db, int64_t mbox, uint64_t *modseq);
int mbox_set_uidnext(sqlite3 *db, int64_t mbox, uint32_t uidnext);
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
/* Inserts a message row (and its body/FTS rows) for a file already in place. */
struct mime_summary;
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
int body_release(sqlite3 *db, int64_t body_id);

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
/* Caller holds the writer lock; begins and commits its own transaction. */
int rescan_all_locked(struct storage_user *u, enum rescan_mode mode, struct rescan_report *rep);
void clean_tmp(const char *mdir);
int dir_mtime_changed(struct storage_user *u, int64_t mbox, const char *mdir, bool update);

/* mailbox.c */
void remove_tree(const char *path);

/* store.c: a handle outside the registry (coffrectl check) */
int user_open_private(const char *data_dir, int64_t id, struct storage_user **out);
void user_close_private(struct storage_user *u);

#endif
