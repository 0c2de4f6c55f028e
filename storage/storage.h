/* storage: the mailbox API every protocol uses. Messages live in a Maildir++
 * per user (<data_dir>/users/<id>/Maildir), metadata in a per-user SQLite
 * index (<data_dir>/users/<id>/index.sqlite, WAL) that can always be rebuilt
 * from the Maildir. The only header of this module that others include.
 *
 * Threads: every function is thread-safe and blocking unless it says
 * otherwise. "Disk" below means the call may wait on fsync or on a large
 * read/scan and must run on the thread pool, not on a loop thread. "Index"
 * means it only touches the SQLite index (usually well under a millisecond,
 * but it can still wait on another process holding the write lock for up to
 * STORAGE_BUSY_TIMEOUT_MS); callers that cannot wait at all use the pool too.
 *
 * Writes to one user are serialized (one writer connection per user handle,
 * plus SQLite's own lock against coffrectl in another process). Readers use
 * separate connections and never wait for writers (WAL).
 *
 * Mailbox names are UTF-8, hierarchy delimiter '/'. "INBOX" is
 * case-insensitive. On disk, folder "A/b.c" is the Maildir++ directory
 * ".A.b%2Ec": each component is escaped ('.' -> "%2E", '%' -> "%25") and the
 * components are joined by '.'.
 *
 * Message files are named
 *   <secs>.M<usecs>P<pid>Q<n>R<random>.<host>,U=<uid>,S=<size>:2,<flags>
 * so that a rebuild keeps the UIDs; each mailbox directory holds a small file
 * "coffre-uidvalidity" ("<uidvalidity> <uidnext>\n") so that a rebuild keeps
 * UIDVALIDITY and never hands out a UID again. Keywords and flags changed
 * since the last storage_sync_flags() live only in the index. */
#ifndef COFFRE_STORAGE_H
#define COFFRE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits. */
#define STORAGE_MBOX_NAME_MAX 200 /* bytes of a mailbox name (UTF-8) */
#define STORAGE_MBOX_DEPTH_MAX 16 /* hierarchy levels */
#define STORAGE_KEYWORD_MAX 64    /* bytes of one keyword */
#define STORAGE_KEYWORDS_MAX 64   /* keywords on one message */
#define STORAGE_BUSY_TIMEOUT_MS 10000
#define STORAGE_TMP_MAX_AGE (24 * 3600) /* tmp/ files older than a day are removed on open */

/* Error codes (negative). */
enum {
    STORAGE_OK = 0,
    STORAGE_E_FAIL = -1, /* unexpected internal error (logged) */
    STORAGE_E_TEMP = -2, /* disk full, I/O error, read-only fs, index busy: try later */
    STORAGE_E_NOMEM = -3,
    STORAGE_E_BADNAME = -4,   /* mailbox name refused (see storage_name_check) */
    STORAGE_E_NOMBOX = -5,    /* no such mailbox */
    STORAGE_E_EXISTS = -6,    /* mailbox already exists */
    STORAGE_E_QUOTA = -7,     /* over quota */
    STORAGE_E_NOMSG = -8,     /* no such message (UID) */
    STORAGE_E_INVAL = -9,     /* bad argument (keyword syntax, section, ...) */
    STORAGE_E_CHILDREN = -10, /* delete: the mailbox has children */
    STORAGE_E_NOPERM = -11,   /* delete INBOX, rename to/over INBOX, ... */
    STORAGE_E_CORRUPT = -12,  /* index corrupt (open rebuilds it; seen only by check) */
    STORAGE_E_TOOBIG = -13,   /* message larger than the limit given */
    STORAGE_E_LIMIT = -14,    /* over a work limit of storage_set_limits */
    STORAGE_E_CONFLICT = -15, /* import: the mailbox has messages under another UIDVALIDITY */
};

/* Static English text for an error code. */
const char *storage_strerror(int err);

/* Standard flags (bit mask). \Recent is left to the protocol layer. */
enum {
    STORAGE_FLAG_SEEN = 1 << 0,     /* Maildir 'S' */
    STORAGE_FLAG_ANSWERED = 1 << 1, /* 'R' */
    STORAGE_FLAG_FLAGGED = 1 << 2,  /* 'F' */
    STORAGE_FLAG_DELETED = 1 << 3,  /* 'T' */
    STORAGE_FLAG_DRAFT = 1 << 4,    /* 'D' */
    STORAGE_FLAGS_ALL = 0x1f,
};

/* Special-use attributes (RFC 6154), bit mask. */
enum {
    STORAGE_SPECIAL_DRAFTS = 1 << 0,
    STORAGE_SPECIAL_SENT = 1 << 1,
    STORAGE_SPECIAL_TRASH = 1 << 2,
    STORAGE_SPECIAL_JUNK = 1 << 3,
    STORAGE_SPECIAL_ARCHIVE = 1 << 4,
    STORAGE_SPECIAL_ALL = 1 << 5,
    STORAGE_SPECIAL_FLAGGED = 1 << 6,
};

/* A UID set: ranges lo..hi inclusive, any order; hi = UINT32_MAX reaches the
 * last message (the protocols resolve a client's '*' before they get here). */
struct storage_range {
    uint32_t lo, hi;
};
struct storage_uidset {
    size_t n;
    const struct storage_range *r;
};

/* A list of UIDs returned by the storage; free with storage_uidlist_free. */
struct storage_uidlist {
    size_t n, cap;
    uint32_t *uids;
};
void storage_uidlist_free(struct storage_uidlist *l);

/* ---- user handles ---- */

struct storage_user;

/* Opens the store of account `id` under data_dir, creating it (with INBOX,
 * Drafts, Sent, Trash, Junk, Archive) when new. Handles are shared: a second
 * open of the same account in this process returns the same handle with a
 * reference added. On the first open in the process: the index is checked
 * and rebuilt from the Maildir if missing or corrupt (logged), files dropped
 * into new/ or cur/ by other programs are picked up, stale tmp/ files are
 * removed. Disk. */
int storage_open(const char *data_dir, int64_t id, struct storage_user **out);
/* Drops a reference; the last one closes the index. Index. */
void storage_close(struct storage_user *u);
int64_t storage_user_id(const struct storage_user *u);

/* A light handle, for a delivery to an account whose store is not open in
 * this process: nothing is checked, rescanned or cleaned, the index opens
 * at the first write and its close does not checkpoint. Good for
 * storage_draft_new, storage_set_quota, storage_quota_room,
 * storage_deliver and storage_save, nothing else. Light handles of one
 * account are shared while in use (their saves join one group commit).
 * STORAGE_E_NOMBOX when the store has no index yet (or no Maildir): the
 * full storage_open creates it. Disk (a few stat calls). */
int storage_open_light(const char *data_dir, int64_t id, struct storage_user **out);
/* Drops a reference; the last one keeps the handle open for the next
 * delivery (storage_limits.light_keep_*) or closes its connection, leaving
 * the WAL for the next one. Index. */
void storage_close_light(struct storage_user *u);
/* Closes the light handles kept past their time (storage_limits
 * .light_keep_ms), as the next open or close of one would, so that
 * handles kept after the last delivery do not hold their descriptors
 * for good; returns how many stay kept. Index. */
unsigned storage_light_expire(void);
/* Account id leaves this process (`coffrectl user move`): its light
 * handles are never used again; those kept are closed now, those in use at
 * their last close. Returns how many are still in use. Index. */
unsigned storage_light_forget(int64_t id);
/* Closes the delivery journals this process opened (at exit). */
void storage_journal_close_all(void);
/* Whether a delivery journal's WAL grew enough for a checkpoint (a load of
 * an atomic flag: any thread), and the checkpoint of every journal this
 * process opened, beside the deliveries (pool thread). */
bool storage_journal_checkpoint_due(void);
void storage_journal_checkpoint(void);
/* Takes the account's journaled deliveries into its index (an open and a
 * close when there are any), as before a copy of its files. Disk. */
int storage_journal_flush(const char *data_dir, int64_t id);
/* How many times an index connection found its WAL's directory synced
 * already and so did not sync it again (storage/vfs.c), since the start. */
uint64_t storage_wal_dirsyncs_skipped(void);
/* Whether account id has an index already (its store was opened once):
 * a first delivery opens the store fully, at RCPT, so that the creation of
 * the store is over before the message is taken. Disk (one stat). */
bool storage_has_index(const char *data_dir, int64_t id);

/* Work limits, the same for every account of the process (0 = none);
 * past one a call fails with STORAGE_E_LIMIT and changes nothing:
 * - max_steps: SQLite VM steps one call may run on its read connection
 *   (counted in steps of 1,000, so a statement shorter than that is free);
 * - max_header_scans: storage_search criteria that read the message files
 *   (HEADER on a field the index does not keep);
 * - max_mailboxes: mailboxes of an account, for storage_mbox_create and
 *   storage_mbox_rename (an index rebuilt from the Maildir keeps them all);
 * - max_subscriptions: subscriptions of an account, for storage_subscribe.
 * Set before any other thread uses the storage. */
struct storage_limits {
    uint64_t max_steps;
    unsigned max_header_scans;
    unsigned max_mailboxes;
    unsigned max_subscriptions;
    /* light handles (storage_open_light) kept open after their last use,
     * at most so many, so long; 0: closed at once */
    unsigned light_keep_max;
    uint64_t light_keep_ms;
    /* deliveries into INBOX through a light handle go to the data
     * directory's delivery journal (journal.c), taken into the index at its
     * next write; false: straight into the index */
    bool delivery_journal;
    /* at most so many deliveries of one account wait in the journal; the
     * next goes through its index, which takes them in first */
    unsigned journal_per_account;
    /* bytes of sort keys and orders an open store keeps in memory for
     * SORT and THREAD (sortcache.c); 0: none, each reads the index */
    uint64_t sort_cache_bytes;
};
void storage_set_limits(const struct storage_limits *l);

/* Quota limits applied by storage_deliver and storage_append (0 = none). */
void storage_set_quota(struct storage_user *u, uint64_t max_bytes, uint64_t max_messages);
/* The limits storage_set_quota set last (0 = none). Pure (a short mutex). */
void storage_quota_limits(struct storage_user *u, uint64_t *max_bytes, uint64_t *max_messages);
/* Usage, kept incrementally in the index. Index. */
int storage_quota_usage(struct storage_user *u, uint64_t *bytes, uint64_t *messages);
/* Room left under the quota: the bytes and messages that may still be
 * added (UINT64_MAX where no limit is set; no index read when none is).
 * Index. */
int storage_quota_room(struct storage_user *u, uint64_t *bytes, uint64_t *messages);

/* ---- mailbox names ---- */

/* Checks a mailbox name: 0, or STORAGE_E_BADNAME with a reason in err (may be
 * NULL). Refused: empty, over STORAGE_MBOX_NAME_MAX, invalid UTF-8, control
 * characters (C0, DEL, C1), leading or trailing '/', empty components
 * ("a//b"), "." or ".." components, the IMAP wildcards '*' and '%', over
 * STORAGE_MBOX_DEPTH_MAX levels, or longer than 250 bytes once escaped for
 * the disk. Pure. */
int storage_name_check(const char *name, char *err, size_t errlen);

/* IMAP LIST pattern match: '*' matches anything, '%' anything but '/'.
 * "INBOX" in name and pattern compares case-insensitively. Pure. */
bool storage_pattern_match(const char *pattern, const char *name);

/* ---- mailboxes ---- */

struct storage_mbox {
    int64_t id; /* stable across renames */
    char name[STORAGE_MBOX_NAME_MAX + 1];
    unsigned special_use; /* STORAGE_SPECIAL_* */
    bool subscribed;
    bool has_children;
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
    uint64_t oid; /* MAILBOXID (RFC 8474): kept by RENAME, never reused */
};

struct storage_status {
    uint32_t messages;
    uint32_t unseen;
    uint32_t deleted;
    uint32_t uidnext;
    uint32_t uidvalidity;
    uint64_t highestmodseq;
    uint64_t size;         /* bytes */
    uint64_t deleted_size; /* bytes of the messages with \Deleted */
};

/* Looks a mailbox up by name. STORAGE_E_NOMBOX if absent. Index. */
int storage_mbox_get(struct storage_user *u, const char *name, struct storage_mbox *out);
/* Calls cb for each mailbox matching pattern (storage_pattern_match), in name
 * order (bytewise), from the first name after `after` (NULL: from the
 * start, so that a long list is read in steps); cb returning non-zero
 * stops. subscribed_only gives LSUB/LIST (SUBSCRIBED): existing subscribed
 * mailboxes plus subscriptions to names that do not exist (id 0). cb runs
 * with a read connection held: it must not call back into the storage.
 * Index. */
int storage_mbox_list(struct storage_user *u, const char *pattern, bool subscribed_only,
                      const char *after, int (*cb)(void *arg, const struct storage_mbox *m),
                      void *arg);
/* Creates a mailbox and any missing parents. Disk. */
int storage_mbox_create(struct storage_user *u, const char *name, unsigned special_use);
/* Deletes a mailbox and its messages. INBOX: STORAGE_E_NOPERM; with children:
 * STORAGE_E_CHILDREN. Disk. */
int storage_mbox_delete(struct storage_user *u, const char *name);
/* Renames a mailbox and its children (ids and UIDVALIDITY kept). Renaming
 * INBOX creates `to` with INBOX's messages and leaves INBOX empty (RFC 3501).
 * Missing parents of `to` are created. Disk. */
int storage_mbox_rename(struct storage_user *u, const char *from, const char *to);
/* Subscriptions are by name and may name a mailbox that does not exist. Index. */
int storage_subscribe(struct storage_user *u, const char *name, bool on);
int storage_mbox_status(struct storage_user *u, int64_t mbox, struct storage_status *st);
/* What SELECT, EXAMINE and STATUS need of a mailbox: kept in memory by the
 * open handle (shared by its users, kept up to date as this process
 * commits changes, checked against the mailbox row at each use), so that
 * asking again for an unchanged mailbox reads one row of the index. */
struct storage_mbox_info {
    struct storage_mbox mb;
    uint32_t messages, unseen, deleted;
    uint32_t first_unseen; /* UID of the first message without \Seen, 0 */
    char *keywords;        /* keywords in use, " kw1 kw2" (at most 200), NULL */
    /* all UIDs as ascending ranges, disjoint and not adjacent, when asked
     * for (a few ranges for a mailbox of any size, unless it has holes) */
    struct storage_range *ranges;
    size_t nranges;
};
/* By name, or by id when name is NULL. Free with storage_mbox_info_free
 * (also after an error). Index. */
int storage_mbox_info(struct storage_user *u, const char *name, int64_t id, bool want_uids,
                      struct storage_mbox_info *out);
void storage_mbox_info_free(struct storage_mbox_info *info);

/* ---- \Recent ---- */

/* \Recent (RFC 3501 2.3.2) is kept as a floor per mailbox: messages with
 * a UID above it are \Recent for the next session to SELECT the mailbox.
 * The floor is kept in the index, per UIDVALIDITY (a mailbox created again
 * starts with none claimed). */

/* SELECT (read-write) of mailbox mbox, as found with UIDVALIDITY
 * uidvalidity: claims every message in it, and makes owner (an opaque
 * token: the session) the one that claims the messages added to it from
 * now on, until storage_recent_release or the next claim. *prev gets the
 * floor before the claim (the messages above it are the caller's \Recent
 * ones) and *gen the claim's number (a later claim has a greater one).
 * STORAGE_E_NOMBOX when the mailbox is gone or is another incarnation.
 * Index. */
int storage_recent_claim(struct storage_user *u, int64_t mbox, uint32_t uidvalidity,
                         const void *owner, uint32_t *prev, uint64_t *gen);
/* owner no longer holds mbox (nothing when a later claim took it over).
 * Pure (a mutex held briefly). */
void storage_recent_release(struct storage_user *u, int64_t mbox, const void *owner);
/* The floor of mbox (UIDVALIDITY uidvalidity), claiming nothing: EXAMINE
 * and STATUS. Index. */
int storage_recent_floor(struct storage_user *u, int64_t mbox, uint32_t uidvalidity,
                         uint32_t *floor);

/* ---- saving messages ---- */

/* A message being written into tmp/: bare LF line ends become CRLF, so the
 * size stored and reported is the RFC 822 size. */
struct storage_draft;

/* Starts a draft in u's Maildir tmp/. max_size 0 = no limit (write then
 * fails with STORAGE_E_TOOBIG once exceeded). Disk. */
int storage_draft_new(struct storage_user *u, uint64_t max_size, struct storage_draft **out);
/* The same, for a draft that others follow at once (the second message of
 * a MULTIAPPEND on): files for the next ones are created ahead, on a
 * thread of their own, while this one is written, until the store sleeps
 * or closes. Disk. */
int storage_draft_next(struct storage_user *u, uint64_t max_size, struct storage_draft **out);
/* Caps the draft at the quota room left for it (storage_quota_room less
 * what the command already staged): a write that would take it past room
 * bytes fails with STORAGE_E_QUOTA, so an upload over the quota stops at
 * the quota instead of reaching the disk first. UINT64_MAX (the default)
 * = no cap. Pure. */
void storage_draft_set_room(struct storage_draft *d, uint64_t room);
/* Appends a chunk (any split). Past max_size: STORAGE_E_TOOBIG; past the
 * room: STORAGE_E_QUOTA; either leaves the draft failed. Disk. */
int storage_draft_write(struct storage_draft *d, const void *buf, size_t len);
/* Ends the message: fsync, MIME summary computed. Disk. */
int storage_draft_finish(struct storage_draft *d);
/* Ends the message without the fsync (MIME summary computed): the save
 * makes it durable, storage_save_many for all its drafts together. Disk. */
int storage_draft_end(struct storage_draft *d);
uint64_t storage_draft_size(const struct storage_draft *d);
/* Removes the tmp/ file (if still there) and frees. Disk (unlink). */
void storage_draft_free(struct storage_draft *d);

/* Saves a finished draft into mailbox mbox of u (u may be another user than
 * the one the draft was started for: the file is hard-linked, or copied when
 * on another filesystem; the draft stays usable for further saves): link
 * into cur/, fsync the directory, commit the index; only then *uid is set
 * and 0 returned. internal_date 0 = now. keywords may be NULL. Quota is
 * checked. Notifies watchers (STORAGE_EV_NEW). Disk. */
int storage_save(struct storage_user *u, int64_t mbox, struct storage_draft *d, unsigned flags,
                 const char *const *keywords, size_t nkeywords, int64_t internal_date,
                 uint32_t *uid);
/* LMTP delivery: like storage_save into `mailbox` (NULL = INBOX; INBOX
 * too when it does not exist), into new/, no flags, with the quota check.
 * *mbox_id (may be NULL) gets the mailbox it went into.
 *
 * Group commit: saves to one handle that run at the same time share their
 * durability. Each thread writes and fsyncs its draft on its own; then one
 * of the waiting saves links all of them, fsyncs each directory once and
 * commits them in one index transaction; each call returns only once the
 * transaction holding its message committed (or failed). A light handle's
 * first save also fails with STORAGE_E_CORRUPT when the index is not of
 * this version (storage_open repairs it). Disk. */
int storage_deliver(struct storage_user *u, const char *mailbox, struct storage_draft *d,
                    uint32_t *uid, int64_t *mbox_id);
/* storage_deliver that also names the folder the message went into (for
 * the audit line). Through a light handle into INBOX with
 * storage_limits.delivery_journal, the message goes to the delivery journal
 * (journal.c): durable when 0 is returned, *uid 0 (its UID is given when
 * the index takes it in), *mbox_id 0. */
int storage_deliver_named(struct storage_user *u, const char *mailbox, struct storage_draft *d,
                          uint32_t *uid, int64_t *mbox_id, char name[STORAGE_MBOX_NAME_MAX + 1]);
/* Several messages into mailbox mbox, all or none (MULTIAPPEND, RFC 3502):
 * like storage_save for each, but the drafts are synced together, and the
 * messages linked, their directory fsync'd once and committed in one index
 * transaction; when one cannot be saved (quota, ...), none is, and its
 * error is returned. On success each reqs[i].uid is set. Disk. */
struct storage_save_req {
    struct storage_draft *d; /* finished (storage_draft_end or _finish) */
    unsigned flags;
    const char *const *keywords; /* may be NULL */
    size_t nkeywords;
    int64_t internal_date; /* 0 = now */
    uint32_t uid;          /* out */
};
int storage_save_many(struct storage_user *u, int64_t mbox, struct storage_save_req *reqs,
                      size_t n);
/* Since the start of the process: index transactions that saved messages
 * (storage_save, storage_deliver, storage_append) and the messages they
 * saved; fewer commits than saves is group commit at work. Pure. */
void storage_save_stats(uint64_t *commits, uint64_t *saves);
/* Convenience for a message already in memory: draft + save. Disk. */
int storage_append(struct storage_user *u, int64_t mbox, const void *msg, size_t len,
                   unsigned flags, const char *const *keywords, size_t nkeywords,
                   int64_t internal_date, uint32_t *uid);

/* ---- reading messages ---- */

/* Opens a message read-only: *fd (caller closes) and *size (RFC 822 size =
 * file size). Large messages are never read into memory here. Disk (open). */
int storage_msg_open(struct storage_user *u, int64_t mbox, uint32_t uid, int *fd, uint64_t *size);
/* FETCH BODY[section] without the HEADER.FIELDS part: "" whole, "HEADER",
 * "TEXT", "1", "1.2", "1.MIME", "2.HEADER", "2.TEXT". *fd (caller closes)
 * with the section at [*off, *off + *len). STORAGE_E_INVAL when the section
 * does not exist in this message. Disk (maps the file). */
int storage_msg_section(struct storage_user *u, int64_t mbox, uint32_t uid, const char *section,
                        int *fd, uint64_t *off, uint64_t *len);
/* Content-Transfer-Encodings as FETCH BINARY (RFC 3516) meets them. */
enum storage_cte {
    STORAGE_CTE_IDENTITY, /* 7bit, 8bit, binary, or none given */
    STORAGE_CTE_BASE64,
    STORAGE_CTE_QP,      /* quoted-printable */
    STORAGE_CTE_UNKNOWN, /* anything else: cannot be decoded */
};
/* FETCH BINARY[part]: the body of part "" (the whole message, as it is),
 * "1", "1.2", ... at [*off, *off + *len) of the message file, and the
 * transfer encoding its header names. STORAGE_E_INVAL when the part does
 * not exist. Disk (maps the file). */
int storage_msg_binary(struct storage_user *u, int64_t mbox, uint32_t uid, const char *part,
                       uint64_t *off, uint64_t *len, enum storage_cte *cte);

/* Decoding a transfer encoding as the bytes come, a slice at a time, in
 * one linear pass with a fixed state: base64 as RFC 2045 6.8 reads it
 * (characters outside the alphabet ignored, the data ends at the first
 * '='), quoted-printable as 6.7 does (soft line breaks removed, white
 * space at the end of a line dropped, a '=' that starts no escape kept),
 * identity as it is. storage_decode writes at most len +
 * STORAGE_DECODE_SLACK bytes to out and returns how many; storage_decode_end
 * writes what the end of the input completes (at most
 * STORAGE_DECODE_SLACK). Pure. */
#define STORAGE_DECODE_PEND 64
#define STORAGE_DECODE_SLACK (STORAGE_DECODE_PEND + 4)
struct storage_decoder {
    enum storage_cte cte;
    unsigned acc;
    int bits;
    bool ended;   /* base64: a '=' was met */
    int state;    /* quoted-printable: where in a "=XX" / "= \r\n" / "  \r\n" */
    size_t npend; /* quoted-printable: white space or an escape not yet decided */
    char pend[STORAGE_DECODE_PEND];
};
void storage_decoder_init(struct storage_decoder *d, enum storage_cte cte);
size_t storage_decode(struct storage_decoder *d, const char *in, size_t len, char *out);
size_t storage_decode_end(struct storage_decoder *d, char *out);

/* FETCH BODY[<part.>HEADER.FIELDS (names)] / .NOT: part is "" or "1.2"
 * (message/rfc822 part). *out is malloc'd (caller frees). Disk. */
int storage_msg_header_fields(struct storage_user *u, int64_t mbox, uint32_t uid, const char *part,
                              const char *const *names, size_t n, bool negate, char **out,
                              size_t *outlen);

/* What storage_fetch loads besides uid/flags/keywords/modseq/size/dates. */
enum {
    STORAGE_FETCH_ENVELOPE = 1 << 0,
    STORAGE_FETCH_BODYSTRUCTURE = 1 << 1,
    STORAGE_FETCH_BODY = 1 << 2,
    /* the top-level header block (BODY[HEADER]): the copy kept in the
     * index, or read from the file for a header too long to be kept */
    STORAGE_FETCH_HEADER = 1 << 3,
    STORAGE_FETCH_OBJECTID = 1 << 4, /* emailid, threadid */
    STORAGE_FETCH_PREVIEW = 1 << 5,
    /* without any of the above: size, internal_date and save_date are not
     * read (0), for answers of FLAGS, UID and MODSEQ alone */
    STORAGE_FETCH_NO_SIZES = 1 << 6,
    /* with STORAGE_FETCH_HEADER alone: the header block may be a listing
     * block (listing_fields), for a caller that looks only at fields of
     * storage_listing_fields */
    STORAGE_FETCH_LISTING = 1 << 7,
    /* alone or with STORAGE_FETCH_HEADER (and LISTING): internal_date and
     * save_date are not read (0), for answers without INTERNALDATE or
     * SAVEDATE */
    STORAGE_FETCH_NO_DATES = 1 << 8,
    /* with STORAGE_FETCH_NO_SIZES alone: modseq is not needed (0), for a
     * FLAGS resync the open store answers from the mailbox's state in
     * memory when it has it (storage_flags_from_memory counts those) */
    STORAGE_FETCH_NO_MODSEQ = 1 << 9,
};

/* How many storage_fetch calls the mailbox states answered
 * (STORAGE_FETCH_NO_MODSEQ) since the process started; *wrong (unless
 * NULL) how many times a state was found to disagree with the index
 * (logged; the index answered instead). */
uint64_t storage_flags_from_memory(uint64_t *wrong);

/* Whether every name (a field name, any case) is one of those the index
 * keeps for folder listings apart from the whole header: From, Sender,
 * Reply-To, To, Cc, Bcc, Subject, Date, Message-ID, In-Reply-To,
 * References, Content-Type, Priority, X-Priority, Importance, Newsgroups,
 * List-Post, Disposition-Notification-To; *mask their bits, as a
 * listing block's listing_fields has them. Pure. */
bool storage_listing_fields(const char *const *names, size_t n, unsigned *mask);

/* Metadata of one message, from the index only (no file opened). Strings are
 * borrowed for the duration of the callback. */
struct storage_msg {
    uint32_t uid;
    unsigned flags;       /* STORAGE_FLAG_* */
    const char *keywords; /* space-separated, "" when none */
    uint64_t modseq;
    uint64_t size;         /* RFC 822 size */
    int64_t internal_date; /* unix time */
    int64_t save_date;
    int64_t sent_date;    /* Date: header, 0 if none */
    const char *envelope; /* NULL unless requested */
    const char *bodystructure;
    const char *body;
    const char *header; /* STORAGE_FETCH_HEADER: header_len bytes, not NUL-terminated;
                         * NULL when the message file is gone */
    size_t header_len;
    /* STORAGE_FETCH_LISTING: header is a listing block holding these
     * fields (storage_listing_block's bits); 0: the whole header block */
    unsigned listing_fields;
    /* STORAGE_FETCH_OBJECTID: RFC 8474's EMAILID (copies share it) and
     * THREADID, random numbers that are never reused (storage/objectid.c) */
    uint64_t emailid, threadid;
    const char *preview; /* STORAGE_FETCH_PREVIEW: NULL when not computed yet */
};
typedef int (*storage_msg_cb)(void *arg, const struct storage_msg *m);

/* The preview (RFC 8970) of a message whose body has none in the index
 * yet (saved before schema 9): computed from its file and kept. *out is
 * malloc'd (caller frees). STORAGE_E_NOMSG when it is gone. Disk. */
int storage_msg_preview(struct storage_user *u, int64_t mbox, uint32_t uid, char **out);

/* Calls cb for each message of set (NULL = all) in UID order; cb returning
 * non-zero stops. cb runs with a read connection held: it must not call back
 * into the storage. Index. */
int storage_fetch(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                  unsigned what, storage_msg_cb cb, void *arg);
/* BODY[HEADER.FIELDS (names)] (negate: .NOT) of a header block as
 * storage_fetch gives it (STORAGE_FETCH_HEADER), appended to out
 * (out->oom on allocation failure). Pure. */
struct buf;
void storage_header_fields(const char *hdr, size_t len, const char *const *names, size_t n,
                           bool negate, struct buf *out);
/* The listing block of a header block, appended to out: its fields of
 * the listing names, and the blank line if it ends with one; returns the
 * bits of the names it holds (0: none). Of names storage_listing_fields
 * accepts, HEADER.FIELDS of the block is that of the whole header block;
 * of names whose bits cover all it holds, the block itself. Pure. */
unsigned storage_listing_block(const char *hdr, size_t len, struct buf *out);
/* A sorted, merged copy of set (NULL = everything: 1..UINT32_MAX) into
 * *out (caller frees), *n ranges. Pure. */
int storage_uidset_normalize(const struct storage_uidset *set, struct storage_range **out,
                             size_t *n);
/* All UIDs of a mailbox, ascending (sequence number i is uids[i-1]). Index. */
int storage_uids(struct storage_user *u, int64_t mbox, struct storage_uidlist *out);

/* ---- changing messages ---- */

enum storage_store_op { STORAGE_STORE_SET, STORAGE_STORE_ADD, STORAGE_STORE_REMOVE };
/* In storage_store's flags: a SET leaves the rows' \Seen as it is (a
 * viewer's STORE on a shared mailbox: its own \Seen is storage_pseen_store's). */
#define STORAGE_STORE_KEEP_SEEN (1u << 8)

/* STORE: applies flags (and keywords, NULL/0 = none) to the messages of set
 * (in one index transaction, whatever the count). Each message that changes
 * gets the mailbox's next modseq (one modseq per call). unchangedsince 0 =
 * none, else messages whose modseq is greater are left alone and listed in
 * *failed (may be NULL). changed_cb (may be NULL) is called after commit for
 * each changed message with its new state. Flags reach the file names in the
 * next storage_sync_flags. Notifies watchers (STORAGE_EV_FLAGS). Index. */
int storage_store(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                  enum storage_store_op op, unsigned flags, const char *const *keywords,
                  size_t nkeywords, uint64_t unchangedsince, struct storage_uidlist *failed,
                  storage_msg_cb changed_cb, void *arg);

/* Expunges the messages of set (NULL = all) that have \Deleted (or all of
 * them when deleted_only is false: POP3 DELE). The expunged UIDs, ascending,
 * go to *expunged (may be NULL). Notifies (STORAGE_EV_EXPUNGE). Disk. */
int storage_expunge(struct storage_user *u, int64_t mbox, const struct storage_uidset *set,
                    bool deleted_only, struct storage_uidlist *expunged);

/* COPY / MOVE of set (in UID order) from src to dst. src_uids[i] became
 * dst_uids[i] (COPYUID). Files are hard-linked. MOVE expunges the sources in
 * the same index transaction. Disk. */
int storage_copy(struct storage_user *u, int64_t src, const struct storage_uidset *set, int64_t dst,
                 struct storage_uidlist *src_uids, struct storage_uidlist *dst_uids);
int storage_move(struct storage_user *u, int64_t src, const struct storage_uidset *set, int64_t dst,
                 struct storage_uidlist *src_uids, struct storage_uidlist *dst_uids);

/* Brings Maildir file names up to date with the index flags (renames files,
 * new/ -> cur/), at most `max` messages per call (0 = all). *done gets the
 * count renamed, *left how many still wait (either may be NULL). The daemon
 * runs it periodically on the thread pool. Disk. */
int storage_sync_flags(struct storage_user *u, size_t max, size_t *done, size_t *left);

/* CONDSTORE/QRESYNC: calls cb for messages whose modseq > since and puts the
 * UIDs expunged after since into *vanished (may be NULL). Index. */
int storage_changes(struct storage_user *u, int64_t mbox, uint64_t since, storage_msg_cb cb,
                    void *arg, struct storage_uidlist *vanished);
/* The same, with *floor the highest modseq whose expunges mbox no longer
 * remembers (storage_vanished_prune, or a rebuilt index): when since is
 * below it, *vanished may lack UIDs expunged after since. 0 when none. */
int storage_changes_floor(struct storage_user *u, int64_t mbox, uint64_t since, storage_msg_cb cb,
                          void *arg, struct storage_uidlist *vanished, uint64_t *floor);
/* Forgets expunged UIDs that are both older than keep_days days (0: any
 * age) and beyond the keep_count newest of their mailbox, at most max in
 * one call (*more: some are left for the next), raising each mailbox's
 * floor to the highest modseq forgotten. Records the day's mark of each
 * mailbox the first time it runs that day. Index. */
int storage_vanished_prune(struct storage_user *u, unsigned keep_days, uint64_t keep_count,
                           size_t max, bool *more);

/* ---- search ---- */

enum storage_search_op {
    STORAGE_SEARCH_ALL,
    STORAGE_SEARCH_AND,     /* children (child, child->next, ...) all match */
    STORAGE_SEARCH_OR,      /* any child matches */
    STORAGE_SEARCH_NOT,     /* child does not match */
    STORAGE_SEARCH_UID,     /* uid in set */
    STORAGE_SEARCH_FLAGS,   /* all flags in `flags` set */
    STORAGE_SEARCH_UNFLAGS, /* none of `flags` set */
    STORAGE_SEARCH_KEYWORD, /* keyword str set */
    STORAGE_SEARCH_UNKEYWORD,
    STORAGE_SEARCH_BEFORE,      /* internal date < num (unix time) */
    STORAGE_SEARCH_SINCE,       /* internal date >= num */
    STORAGE_SEARCH_SENTBEFORE,  /* Date: header < num */
    STORAGE_SEARCH_SENTSINCE,   /* Date: header >= num */
    STORAGE_SEARCH_LARGER,      /* size > num */
    STORAGE_SEARCH_SMALLER,     /* size < num */
    STORAGE_SEARCH_MODSEQ,      /* modseq >= num */
    STORAGE_SEARCH_SAVEDBEFORE, /* save date < num (RFC 8514) */
    STORAGE_SEARCH_SAVEDSINCE,  /* save date >= num */
    STORAGE_SEARCH_EMAILID,     /* emailid == num (RFC 8474) */
    STORAGE_SEARCH_THREADID,    /* threadid == num */
    STORAGE_SEARCH_HEADER,      /* header `field` contains str (case-insensitive);
                                 * Subject/From/To/Cc/Bcc/Message-ID/In-Reply-To come
                                 * from the index, other fields read the file */
    STORAGE_SEARCH_BODY,        /* text of the body parts contains str (substring,
                                 * case-insensitive; trigram full-text index) */
    STORAGE_SEARCH_TEXT,        /* headers (Subject/From/To/Cc/Bcc) or body text
                                 * contain str (same matching as BODY) */
};
/* IMAP ON d = AND(SINCE d, BEFORE d+1day); the protocol layer maps dates and
 * sequence numbers. */

struct storage_search {
    enum storage_search_op op;
    unsigned flags;
    int64_t num;
    const char *field;            /* HEADER */
    const char *str;              /* KEYWORD, HEADER, BODY, TEXT */
    struct storage_uidset set;    /* UID */
    struct storage_search *child; /* AND, OR, NOT */
    struct storage_search *next;  /* next sibling */
    /* read on the root only: \Seen in FLAGS and UNFLAGS is this account's
     * own (per-user \Seen, storage_pseen_*), not the message rows'; 0:
     * the rows' (the owner, or a mailbox whose \Seen is shared) */
    int64_t viewer;
};

/* SEARCH CHARSET (RFC 3501 6.4.4): whether the charset named is one the
 * strings of a search can be converted from (UTF-8, US-ASCII and what
 * iconv knows: ISO-8859-*, windows-125x, KOI8-R, ...). */
bool storage_charset_known(const char *name);
/* s[0..len) in charset, as UTF-8 in *out (malloc'd, NUL-terminated, *outlen
 * bytes); a byte sequence the charset does not have becomes U+FFFD.
 * 0, or -1 on allocation failure. */
int storage_charset_to_utf8(const char *charset, const char *s, size_t len, char **out,
                            size_t *outlen);

/* Matching UIDs, ascending, into *out. Index (the full-text index included;
 * a HEADER search on a field not in the index reads message headers). */
int storage_search(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                   struct storage_uidlist *out);

/* ---- per-user \Seen on shared mailboxes (storage/pseen.c) ----
 *
 * A viewer (an account other than the owner, to whom the owner's mailbox
 * is shared) may keep a \Seen of its own, kept in the owner's index as UID
 * ranges per mailbox and viewer; the owner's own \Seen stays in the
 * message rows. The ranges may cover UIDs that no message holds (expunged,
 * never given): UIDs do not come back within a UIDVALIDITY, so they mean
 * nothing, and the sets stay small. They go with their mailbox (deleted,
 * or given a new UIDVALIDITY), follow RENAME INBOX's messages and survive
 * storage_reindex. */

/* A viewer's seen UIDs: ascending, disjoint, not adjacent ranges. */
struct storage_seen {
    struct storage_range *r;
    size_t n;
};
void storage_seen_free(struct storage_seen *s);
/* Pure. */
bool storage_seen_has(const struct storage_seen *s, uint32_t uid);
/* flags (STORAGE_FLAG_*) with \Seen as s says for uid: FETCH FLAGS of a
 * viewer, from a storage_msg's flags. Pure. */
unsigned storage_seen_flags(const struct storage_seen *s, uint32_t uid, unsigned flags);
/* viewer's seen set of mailbox mbox (*out freed with storage_seen_free).
 * Index. */
int storage_pseen_get(struct storage_user *u, int64_t mbox, int64_t viewer,
                      struct storage_seen *out);
/* Sets (seen) or clears viewer's \Seen on the messages of set, in one
 * write transaction: each message whose \Seen changes for the viewer gets
 * the mailbox's next modseq (one per call; *modseq, may be NULL, gets it,
 * 0 when nothing changed), and watchers get a STORAGE_EV_FLAGS naming
 * the viewer. unchangedsince and failed as for storage_store. The UIDs
 * changed go to *changed (may be NULL). Index. */
int storage_pseen_store(struct storage_user *u, int64_t mbox, int64_t viewer,
                        const struct storage_uidset *set, bool seen, uint64_t unchangedsince,
                        struct storage_uidlist *failed, struct storage_uidlist *changed,
                        uint64_t *modseq);
/* storage_mbox_info with unseen and first_unseen as viewer sees them
 * (viewer 0: storage_mbox_info). Index. */
int storage_mbox_info_viewer(struct storage_user *u, const char *name, int64_t id, int64_t viewer,
                             bool want_uids, struct storage_mbox_info *out);

/* ---- sort and thread (RFC 5256, RFC 5957), from keys kept in the index ---- */

enum storage_sort_key {
    STORAGE_SORT_ARRIVAL, /* internal date */
    STORAGE_SORT_CC,      /* mailbox part of the first Cc address */
    STORAGE_SORT_DATE,    /* Date: header, else the internal date */
    STORAGE_SORT_FROM,
    STORAGE_SORT_SIZE,
    STORAGE_SORT_SUBJECT, /* base subject (RFC 5256 2.1) */
    STORAGE_SORT_TO,
    STORAGE_SORT_DISPLAYFROM, /* RFC 5957: display name, else the addr-spec */
    STORAGE_SORT_DISPLAYTO,
    STORAGE_SORT_DISPLAYCC,
};
struct storage_sort_crit {
    enum storage_sort_key key;
    bool reverse;
};
/* The UIDs q matches, in the order of the n criteria (i;ascii-casemap on
 * strings; ties in UID order, the order of sequence numbers). Index. */
int storage_sort(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                 const struct storage_sort_crit *crit, size_t n, struct storage_uidlist *out);

enum storage_thread_algo {
    STORAGE_THREAD_ORDEREDSUBJECT,
    STORAGE_THREAD_REFERENCES,
    STORAGE_THREAD_REFS, /* draft-ietf-morg-inthread: no subject gathering,
                          * threads by their latest message */
};
/* A thread forest: nodes[i] is a message (uid) or, uid 0, a dummy that
 * stands for a missing parent; child and next are indexes + 1 (0: none);
 * the roots are the chain from `root` through `next`. free with
 * storage_thread_free. */
struct storage_thread_node {
    uint32_t uid;
    uint32_t child, next;
};
struct storage_thread {
    struct storage_thread_node *nodes;
    size_t n;
    uint32_t root;
};
/* The threads of the messages q matches, by algo (RFC 5256 3). Index. */
int storage_thread(struct storage_user *u, int64_t mbox, const struct storage_search *q,
                   enum storage_thread_algo algo, struct storage_thread *out);
void storage_thread_free(struct storage_thread *t);

/* New message texts are not put in the full-text index at delivery (too
 * costly there): they wait in a plain table, where SEARCH finds them too,
 * with the same results, only by a scan. This moves up to max (0 = all) of
 * them into the index in one transaction under the writer lock; *left gets
 * how many still wait (may be NULL). The daemon runs it in the background,
 * at low priority, with storage_fts_index_for: the same, ending the
 * transaction after the first text done past ms milliseconds (0: no limit),
 * so that the writer lock is held only that long; *more (may be NULL) says
 * whether texts still wait. storage_fts_waiting counts them (a reader: the
 * writer is not held up). Disk. */
int storage_fts_index(struct storage_user *u, size_t max, size_t *left);
int storage_fts_index_for(struct storage_user *u, size_t max, unsigned ms, bool *more);
int storage_fts_waiting(struct storage_user *u, size_t *n);

/* ---- change notification ---- */

enum storage_event_type {
    STORAGE_EV_NEW,      /* uids appended */
    STORAGE_EV_FLAGS,    /* flags/keywords of uids changed */
    STORAGE_EV_EXPUNGE,  /* uids expunged */
    STORAGE_EV_MAILBOX,  /* mailbox created, deleted or renamed (uids empty) */
    STORAGE_EV_EXTERNAL, /* changed by another process; resync with storage_changes */
};
struct storage_event {
    enum storage_event_type type;
    int64_t mbox;
    const uint32_t *uids; /* borrowed for the call */
    size_t n;
    uint64_t modseq; /* the mailbox's HIGHESTMODSEQ after the change */
    /* STORAGE_EV_FLAGS of storage_pseen_store: the \Seen of this account
     * (a viewer of the owner's mailbox) changed, for its sessions alone;
     * every other listener leaves the event alone. 0: a change for all. */
    int64_t viewer;
};
typedef void (*storage_event_cb)(void *arg, const struct storage_event *ev);
struct storage_watch;

/* Subscribes to changes of u. cb is called from the thread that made the
 * change, after its commit, with no storage lock held (the daemon forwards to
 * its loop with uv_async_send). cb must not call storage_watch/unwatch. */
struct storage_watch *storage_watch(struct storage_user *u, storage_event_cb cb, void *arg);
/* After it returns, cb is not running and will not be called. */
void storage_unwatch(struct storage_watch *w);
/* Detects commits by other processes (PRAGMA data_version) and reports a
 * STORAGE_EV_EXTERNAL for each mailbox whose HIGHESTMODSEQ or UIDNEXT moved.
 * The daemon calls it periodically (thread pool). Index. */
int storage_poll(struct storage_user *u);
/* Picks up files added/removed/renamed in a mailbox's new/ and cur/ by other
 * programs (mbox 0 = every mailbox). Disk. */
int storage_rescan(struct storage_user *u, int64_t mbox);
/* What storage_open does to an index it finds: picks up files in the
 * directories whose mtime moved since the index last saw them. For a handle
 * kept open while no session used it. Disk. */
int storage_refresh(struct storage_user *u);
/* Gives back what an unused handle holds beyond the open index: idle read
 * connections are closed, the writer's cached pages freed. For a handle
 * kept open while no session uses it, or whose sessions are quiet. */
void storage_trim(struct storage_user *u);
/* When the handle was not used for idle_ms (no read, no write), closes
 * every connection to its index (it is checkpointed, its WAL and
 * shared-memory files go), so that an account whose sessions all wait
 * (IMAP IDLE) holds no file open. The handle, its watchers and its change
 * events stay; the next read or write opens the index again, and
 * storage_poll of an asleep handle only looks at the files' sizes and
 * times. Returns true when the handle is asleep. Disk. */
bool storage_sleep(struct storage_user *u, uint64_t idle_ms);
/* Whether the handle is asleep: a hint for the loop thread, no lock. */
bool storage_asleep(struct storage_user *u);
/* When the handle was last read or written (CLOCK_MONOTONIC, ms): a hint
 * for the loop thread, no lock. */
uint64_t storage_last_use(struct storage_user *u);

/* ---- import (coffrectl import; storage/import.c) ----
 *
 * Messages brought from another server keep their UIDVALIDITY, UIDs,
 * flags, keywords and internal dates. Every write goes through the
 * account's writer lock and one index transaction, like a delivery, so
 * an import runs while coffred serves the account (its sessions hear of
 * the new messages through storage_poll). How to call it:
 *
 *   struct storage_user *u;
 *   struct storage_mbox mb;
 *   storage_open(data_dir, account_id, &u);
 *   // each folder of the source:
 *   rc = storage_import_mailbox(u, "Sent", src_uidvalidity, STORAGE_SPECIAL_SENT, &mb);
 *   //   STORAGE_E_CONFLICT: the folder holds messages under another
 *   //   UIDVALIDITY: report it, import nothing into it
 *   // first the source's UIDNEXT: the UIDs below it are kept for the
 *   // import, a delivery meanwhile takes one above
 *   storage_import_uidnext(u, mb.id, src_uidnext);
 *   // its messages in ascending UID order, in batches (say 500-2,000):
 *   struct storage_import_msg m[n] = {{.uid = 7, .flags = STORAGE_FLAG_SEEN,
 *       .keywords = kw, .nkeywords = 1, .internal_date = t, .path = "/src/cur/..."},
 *       {.uid = 9, .data = buf, .len = len, ...}, ...};
 *   rc = storage_import_messages(u, mb.id, m, n);
 *   //   rc != 0: the batch failed as a whole (index or disk error), nothing
 *   //   of it is in; else look at each m[i].status (m[i].rc when FAILED)
 *   // a source without UIDs (n messages) numbers them from
 *   // storage_import_base(u, mb.id, "mbox:/path", n, &base): base + i
 *   // subscriptions: storage_subscribe(u, name, true) for each
 *   storage_close(u);
 *
 * A batch is durable as a whole: the files are written into tmp/ and
 * synced together, linked into the folder's cur/ (named with their UID
 * and flags, their mtime the internal date), the folder fsync'd once, and
 * the rows (the same as a delivery's: headers, envelope, sort keys,
 * preview, EMAILID/THREADID, the text queued for the background full-text
 * indexer) committed in one transaction. Line ends are stored as CRLF
 * (the size is the RFC 822 size, as IMAP servers report it).
 *
 * Running the same import again adds nothing: a UID the mailbox has is
 * skipped (STORAGE_IMPORT_PRESENT), and so is a UID below its UIDNEXT that
 * it no longer has (STORAGE_IMPORT_UID_USED: expunged here, never
 * reused), unless storage_import_uidnext reserved it for the import and
 * it was not expunged since.
 * After an interruption between the link and the commit of a batch, the
 * next open adopts the files from cur/ with their UID, flags and date; the
 * next import run gives them back the keywords they lacked (a message
 * present without any keyword gets the source's). No quota is checked:
 * the administrator imports. */

/* Finds the mailbox `name` or creates it (with any missing parents) with
 * UIDVALIDITY uidvalidity (0: a new one), and fills *out. A mailbox found
 * with another UIDVALIDITY takes the one given when it has no message
 * (its UIDNEXT back to 1, its remembered expunges forgotten); with
 * messages it is left alone and STORAGE_E_CONFLICT returned (*out filled).
 * special_use (STORAGE_SPECIAL_*, 0: none) replaces the mailbox's when not
 * 0. Disk. */
int storage_import_mailbox(struct storage_user *u, const char *name, uint32_t uidvalidity,
                           unsigned special_use, struct storage_mbox *out);

enum storage_import_status {
    STORAGE_IMPORT_ADDED = 1,
    STORAGE_IMPORT_PRESENT,  /* the UID is in the mailbox already: skipped */
    STORAGE_IMPORT_UID_USED, /* below UIDNEXT but gone (expunged here): skipped */
    STORAGE_IMPORT_FAILED,   /* rc says why (unreadable file, ...); the batch went on */
};
struct storage_import_msg {
    uint32_t uid;                /* 1..UINT32_MAX-1; ascending within a batch and across them */
    unsigned flags;              /* STORAGE_FLAG_* */
    const char *const *keywords; /* may be NULL; one coffre cannot hold is dropped */
    size_t nkeywords;
    int64_t internal_date; /* unix time; 0: the file's mtime (path), else now */
    const char *path;      /* the message from this file, or when NULL */
    bool decompress;       /* path: inflated when it is gzip or zlib data */
    const void *data;      /* from these len bytes */
    size_t len;
    /* out */
    enum storage_import_status status;
    int rc;                    /* STORAGE_E_* when FAILED */
    uint64_t size;             /* ADDED: bytes stored */
    unsigned keywords_dropped; /* keywords left out (syntax, length, count) */
    bool keywords_restored;    /* PRESENT: it had none, got the source's */
};
/* Adds the n messages (see above) to mailbox mbox in one transaction.
 * 0 and a status for each, or an error for the whole batch (nothing of it
 * added). Disk. */
int storage_import_messages(struct storage_user *u, int64_t mbox, struct storage_import_msg *m,
                            size_t n);
/* The same in two steps, so that the commit of one batch runs (on
 * another thread) beside the writing of the next: storage_import_write
 * reads, converts and writes the batch's files into tmp/ and makes them
 * durable, nothing visible yet (*out is set, NULL only when out of
 * memory); storage_import_commit links and indexes them in one
 * transaction, cleans up, frees the batch and returns what
 * storage_import_messages would (the write's error, if any). m stays in
 * place until the commit. The batches of a mailbox are committed in the
 * order they were written. Disk. */
struct storage_import_batch;
int storage_import_write(struct storage_user *u, int64_t mbox, struct storage_import_msg *m,
                         size_t n, struct storage_import_batch **out);
int storage_import_commit(struct storage_import_batch *b);
/* For a source without UIDs (an mbox file) of count messages: the UID its
 * first message takes in mailbox mbox, so that a rerun gives each message
 * the same UID (base + its position) and skips it. The first call for
 * source (any string naming it, say its path) records the mailbox's
 * UIDNEXT then and returns it; later calls return the same. UIDNEXT is
 * raised to base + count in the same transaction (as
 * storage_import_uidnext does): a delivery meanwhile takes a UID above.
 * STORAGE_E_LIMIT when base + count passes the last UID. Disk. */
int storage_import_base(struct storage_user *u, int64_t mbox, const char *source, size_t count,
                        uint32_t *base);
/* Raises mailbox mbox's UIDNEXT to uidnext (never lowers it), the UIDs
 * between the old UIDNEXT and the new reserved for the import (one range
 * per mailbox and UIDVALIDITY: a later call extends it): messages of the
 * import may take them, deliveries take UIDs above. Call it before the
 * messages, so that the account may receive mail during the import.
 * Disk. */
int storage_import_uidnext(struct storage_user *u, int64_t mbox, uint32_t uidnext);

/* ---- maintenance (coffrectl) ---- */

/* Reports inconsistencies between index and Maildir through report (one
 * line each, may be NULL); *problems gets their number. Does not change
 * anything and does not need the store open. Disk. */
int storage_check(const char *data_dir, int64_t id, void (*report)(void *arg, const char *line),
                  void *arg, unsigned *problems);
/* Fixes what check reports (rescan of every mailbox, quota recount). Disk. */
int storage_repair(const char *data_dir, int64_t id);
/* Rebuilds the index from the Maildir (flags synced to files first when the
 * old index is readable; keywords are lost). Disk. */
int storage_reindex(const char *data_dir, int64_t id);

/* ---- backup and restore (storage/backup.c) ---- */

struct storage_backup_opts {
    bool incremental; /* dest holds an earlier backup: only what changed */
    /* each mailbox of the copy, for the manifest (may be NULL) */
    void (*mailbox)(void *arg, const char *name, uint32_t uidvalidity, uint32_t uidnext,
                    uint64_t highestmodseq, uint64_t messages);
    void *arg;
    /* for the tests: when set, after step 1 (files) and after step 2 (the
     * index snapshot) of each account, the file "<pause>.files" or
     * "<pause>.index" is created and the backup waits until it is removed
     * (at most a minute), so that a test can change the store between them */
    const char *pause;
};

struct storage_backup_stats {
    bool empty;        /* the account has no store yet: nothing copied */
    bool index_copied; /* false: unchanged since the backup in dest */
    bool repaired;     /* restore: the check found problems, repaired */
    /* message files: linked or copied into the copy, already there (an
     * incremental run), removed from it (not in the snapshot), renamed in it
     * (to the snapshot's name), and lost (expunged before they could be
     * linked) */
    uint64_t linked, copied, kept, removed, renamed, lost;
    uint64_t bytes_copied;
    uint64_t mailboxes, messages, bytes; /* of the copy */
    unsigned problems;                   /* what storage_check found after */
    char signature[17];                  /* of the copy's visible state, hex */
};

/* Copies account id's store from data_dir into dest_dir/users/<id>, online
 * (see backup.c for the order and the guarantees). Disk. */
int storage_backup(const char *data_dir, int64_t id, const char *dest_dir,
                   const struct storage_backup_opts *o, struct storage_backup_stats *st);
/* Copies account src_id's store from a backup src_dir into
 * data_dir/users/<id>, which must not exist (STORAGE_E_EXISTS), then checks
 * it (repairs it should the check find anything). Disk. */
int storage_restore(const char *src_dir, int64_t src_id, const char *data_dir, int64_t id,
                    struct storage_backup_stats *st);
/* The sum of the mailboxes' HIGHESTMODSEQs and the message count of an
 * account's index, to tell which of two copies is newer. STORAGE_E_NOMBOX
 * when it has none. Disk. */
int storage_index_summary(const char *data_dir, int64_t id, uint64_t *modseq_sum,
                          uint64_t *messages);

#endif
