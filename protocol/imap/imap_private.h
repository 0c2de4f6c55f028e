/* What the IMAP files share, bottom up: response writers, the arena and
 * modified UTF-7 (imap_util.c); the argument parser, RFC 3501 grammar
 * (imap_args.c); the session state, its output, replies, continuation
 * and thread-pool jobs (imap_io.c); the selected mailbox with its
 * sequence-number/UID map and pending updates (imap_mailbox.c); the
 * session core (imap_session.c); the commands (cmd_*.c) and their table
 * (imap_commands.c). Each file calls only files listed before it. */
#ifndef COFFRE_IMAP_PRIVATE_H
#define COFFRE_IMAP_PRIVATE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth/auth.h"
#include "protocol/linebuf.h"
#include "protocol/mailuser.h"
#include "protocol/sasl.h"
#include "server/base/mutf7.h"
#include "server/base/buf.h"
#include "server/base/conn.h"
#include "storage/storage.h"

enum imap_state {
    IMAP_NOTAUTH = 1 << 0,
    IMAP_AUTH = 1 << 1,
    IMAP_SELECTED = 1 << 2,
    IMAP_LOGOUT = 1 << 3,
};
#define IMAP_ANY (IMAP_NOTAUTH | IMAP_AUTH | IMAP_SELECTED)
#define IMAP_AUTHED (IMAP_AUTH | IMAP_SELECTED)

#define IMAP_TAG_MAX 64
/* '*' in a sequence set before it is resolved: 0, which no number can be
 * (nz-number), so that 4294967295 stays a number. */
#define IMAP_STAR 0
/* Bytes a LIST or search step produces before handing back to the loop. */
#define IMAP_STEP_BYTES (256u * 1024)
/* the largest non-synchronizing literal LITERAL- allows (RFC 7888 section 5) */
#define IMAP_LITERAL_MINUS_MAX 4096u
/* The same for FETCH, whose answers are the largest: each step is two
 * hand-overs between the loop and the pool, and a folder's headers are
 * tens of megabytes. A session holds at most two steps beside what it has
 * queued (CONN_WRITE_HIGH). */
#define IMAP_FETCH_STEP_BYTES (1024u * 1024)
/* A mailbox name as the client writes it (modified UTF-7 is longer). */
#define IMAP_MBOX_ARG_MAX 1024

/* ---- IMAP writers into a struct buf (loop or pool thread) ---- */

/* A mailbox name (UTF-8 from storage) as the session writes names: a
 * quoted UTF-8 string when utf8 (IMAP4rev2 or UTF8=ACCEPT enabled, the
 * session's s->utf8), else a quoted modified UTF-7 string. */
void imap_buf_mbox(struct buf *b, const char *name, bool utf8);
/* "(\Seen kw ...)" */
void imap_buf_flags(struct buf *b, unsigned flags, const char *keywords, bool recent);
/* "* seq FETCH (" with "UID u" when uid, or after ENABLE UIDONLY (RFC
 * 9586) "* u UIDFETCH (" with no UID item (the caller adds one the client
 * asked for); true when an item was written */
bool imap_buf_fetch_open(struct buf *b, bool uidonly, uint32_t seq, uint32_t u, bool uid);
/* The text of the BAD for a sequence number after ENABLE UIDONLY */
#define IMAP_UIDREQUIRED                                                                           \
    "[UIDREQUIRED] Message sequence numbers are not allowed after ENABLE UIDONLY."
/* "dd-Mon-yyyy hh:mm:ss +0000" in quotes (UTC) */
void imap_buf_date(struct buf *b, int64_t t);
/* Object ids (RFC 8474): a letter saying what the id is for ('F' mailbox,
 * 'M' message, 'T' thread) and the storage's 64-bit id in 16 hex digits.
 * imap_objectid_parse: the number back from s[0..n), false when s is not
 * such an id. */
void imap_buf_objectid(struct buf *b, char kind, uint64_t id);
bool imap_objectid_parse(const char *s, size_t n, char kind, uint64_t *id);
/* UIDs as a uid-set, runs of consecutive ones as ranges ("1:3,7"), in
 * list order (COPYUID, APPENDUID). */
void imap_buf_uids(struct buf *b, const uint32_t *u, size_t n);

/* A uid-set written as ascending UIDs or ranges come (lo..hi, each above
 * the last), runs joined: the first call writes prefix ("* VANISHED "),
 * imap_runs_end the CRLF (true when it wrote anything). Zeroed is empty. */
struct imap_runs {
    bool open, any;
    uint32_t lo, hi;
};
void imap_runs_add(struct imap_runs *r, struct buf *b, const char *prefix, uint32_t lo,
                   uint32_t hi);
bool imap_runs_end(struct imap_runs *r, struct buf *b);

/* ---- arena for a command's parsed arguments ---- */

struct imap_arena_blk;
struct imap_arena {
    struct imap_arena_blk *head;
};
void *imap_arena_alloc(struct imap_arena *a, size_t n); /* zeroed; NULL on failure */
char *imap_arena_strndup(struct imap_arena *a, const char *s, size_t n);

/* SEARCH CHARSET (imap_charset.c) */
extern const char imap_charsets[]; /* "(UTF-8 US-ASCII ...)" for [BADCHARSET] */
bool imap_charset_is_utf8(const char *cs);
/* On the pool, before a search runs: its strings from charset cs ("" for
 * UTF-8) to UTF-8. 0, 1 when the charset is unknown (NO [BADCHARSET]),
 * -1 on allocation failure. */
int imap_search_in_charset(struct storage_search *q, struct imap_arena *ar, const char *cs);
void imap_arena_free(struct imap_arena *a);

/* ---- argument parser ---- */

struct imap_args {
    const char *p, *end;
    unsigned depth, max_depth; /* parenthesis nesting */
    bool utf8;                 /* mailbox names are UTF-8, not modified UTF-7 */
};

enum {
    IMAP_ARG_OK = 0,
    IMAP_ARG_END = 1,      /* nothing left */
    IMAP_ARG_BAD = -1,     /* syntax error */
    IMAP_ARG_DEEP = -2,    /* nesting over the limit */
    IMAP_ARG_BADNAME = -3, /* invalid modified UTF-7 (or UTF-8, a->utf8) */
    IMAP_ARG_NOMEM = -4,
};

void imap_args_init(struct imap_args *a, const char *p, size_t len, unsigned max_depth);
bool imap_args_at_end(const struct imap_args *a);
bool imap_args_peek(const struct imap_args *a, char ch);
int imap_args_sp(struct imap_args *a);
/* Consumes ch if it is next. */
bool imap_args_eat(struct imap_args *a, char ch);
int imap_args_open(struct imap_args *a);  /* '(' with the depth check */
int imap_args_close(struct imap_args *a); /* ')' */
/* atom (ATOM-CHAR run); *s borrowed from the command */
int imap_args_atom(struct imap_args *a, const char **s, size_t *len);
/* mod-sequence-valzer (RFC 7162 7): 0 to 2^63 - 1 */
int imap_args_modseq(struct imap_args *a, uint64_t *out);
/* run of chars up to SP, ')' or the end (for keys like BODY[...]<...>) */
int imap_args_word(struct imap_args *a, const char **s, size_t *len);
/* astring: atom, quoted string (escapes resolved) or literal, into out
 * (NUL-terminated; NUL inside refused); *len its length. */
int imap_args_astring(struct imap_args *a, char *out, size_t outcap, size_t *len);
/* string (quoted or literal) or astring, copied into the arena. */
int imap_args_astring_dup(struct imap_args *a, struct imap_arena *ar, char **out, size_t *len);
int imap_args_string_dup(struct imap_args *a, struct imap_arena *ar, char **out, size_t *len);
/* NIL or a string; *out NULL for NIL. */
int imap_args_nstring_dup(struct imap_args *a, struct imap_arena *ar, char **out, size_t *len);
/* A mailbox argument: astring, modified UTF-7 decoded to UTF-8 (or, with
 * a->utf8, UTF-8 checked), "INBOX" in any case made "INBOX". */
int imap_args_mailbox(struct imap_args *a, char *out, size_t outcap);
/* list-mailbox (LIST pattern: atom chars plus % * ]), decoded like a mailbox */
int imap_args_pattern(struct imap_args *a, char *out, size_t outcap);

/* A sequence or UID set as written: ranges with IMAP_STAR for '*' (then
 * always in hi; lo is IMAP_STAR only in "*" or "*:*"), or "$", the result
 * a SEARCH saved (RFC 5182: saved true, no ranges). */
struct imap_seqset {
    size_t n;
    struct storage_range *r;
    bool saved;
};
int imap_parse_seqset(const char *s, size_t len, struct imap_arena *ar, struct imap_seqset *out);
int imap_args_seqset(struct imap_args *a, struct imap_arena *ar, struct imap_seqset *out);

/* flag-list "(...)" or, when bare is true, a single flag or flags
 * separated by SP without parentheses (STORE). Keywords go to the arena. */
struct imap_flags {
    unsigned flags;
    const char **kw;
    size_t nkw;
    bool recent; /* \Recent was named (ignored by STORE) */
};
int imap_args_flags(struct imap_args *a, struct imap_arena *ar, bool bare, struct imap_flags *out);
/* "dd-Mon-yyyy hh:mm:ss +zzzz" (quoted) -> unix time */
int imap_args_datetime(struct imap_args *a, int64_t *t);
/* date: dd-Mon-yyyy, quoted or not -> unix time of 00:00 UTC */
int imap_parse_date(const char *s, size_t len, int64_t *t);
int imap_args_date(struct imap_args *a, int64_t *t);

/* The first index i with v[i] >= x in the ascending v[0..n), or n. */
size_t imap_lower_bound(const uint32_t *v, size_t n, uint32_t x);

/* Whether the atom w[0..n) is kw (case-insensitive). */
bool imap_word_is(const char *w, size_t n, const char *kw);

/* The special-use attributes (RFC 6154): name, storage bit, and the name
 * XLIST gives it. */
#define IMAP_NSPECIAL 7
struct imap_special {
    const char *name;
    unsigned bit;
    const char *xlist;
};
extern const struct imap_special imap_special_use[IMAP_NSPECIAL];

/* UTF-8 to modified UTF-7 (RFC 3501 5.1.3; the decoder is mutf7_decode in
 * server/base/mutf7.h). Return 0 or -1 (invalid / too long). */
int imap_mutf7_encode(const char *in, size_t len, char *out, size_t outcap);
/* Whether in[0..len) is a mailbox name in UTF-8 (RFC 3629, no control
 * characters, no U+2028 or U+2029: RFC 6855 3): 0 or -1. */
int imap_utf8_name_check(const char *in, size_t len);

/* ---- SEARCH keys ---- */

/* Parses search keys into a storage_search tree (in the arena). Sequence
 * sets are left as STORAGE_SEARCH_UID nodes with flags IMAP_SK_SEQ (and
 * RECENT as IMAP_SK_RECENT) to be mapped by imap_search_resolve. */
enum { IMAP_SK_SEQ = 1, IMAP_SK_RECENT = 2, IMAP_SK_UIDSTAR = 4, IMAP_SK_SAVED = 8 };
int imap_search_parse(struct imap_args *a, struct imap_arena *ar, struct storage_search **out,
                      const char **err);

/* The result options of RFC 4731 (ESEARCH) and RFC 5182 (SEARCHRES). */
enum {
    IMAP_SR_MIN = 1 << 0,
    IMAP_SR_MAX = 1 << 1,
    IMAP_SR_ALL = 1 << 2,
    IMAP_SR_COUNT = 1 << 3,
    IMAP_SR_SAVE = 1 << 4,
    IMAP_SR_RETURN = 1 << 5,  /* RETURN was given: an ESEARCH answer */
    IMAP_SR_PARTIAL = 1 << 6, /* PARTIAL range (RFC 9394) */
    IMAP_SR_UPDATE = 1 << 7,  /* UPDATE (RFC 5267 4): a context kept up to date */
    IMAP_SR_CONTEXT = 1 << 8, /* CONTEXT (RFC 5267 4.2): a hint, nothing more */
};
/* A PARTIAL range of RFC 9394: positions 1-based in the result, counted
 * from its first message, or from its last when last ("-1:-30"); lo <= hi.
 * The range is answered as the client wrote it (a, b). */
struct imap_partial {
    bool last;
    uint32_t lo, hi;
    uint32_t a, b;
};
/* partial-range (RFC 9394 4): "n:m" or "-n:-m", nz-numbers. IMAP_ARG_OK
 * or IMAP_ARG_BAD. */
int imap_args_partial(struct imap_args *a, struct imap_partial *out);
/* The part [*from, *to) of n results a PARTIAL range names (empty when
 * *from == *to). */
void imap_partial_window(const struct imap_partial *p, size_t n, size_t *from, size_t *to);
/* "RETURN SP (opt ...) SP" when next (else nothing consumed, *opts 0):
 * IMAP_SR_* in *opts, RETURN () being ALL; a PARTIAL range in *part (one
 * PARTIAL at most, never with ALL: RFC 9394 3.1). IMAP_ARG_OK or
 * IMAP_ARG_BAD. */
int imap_search_return(struct imap_args *a, unsigned *opts, struct imap_partial *part);
/* ---- SORT and THREAD arguments (cmd_sort.c) ---- */

#define IMAP_SORT_MAX_KEYS 16
struct imap_sort_spec {
    struct storage_sort_crit crit[IMAP_SORT_MAX_KEYS];
    size_t n;                      /* SORT */
    enum storage_thread_algo algo; /* THREAD */
    struct storage_search *q;      /* the search keys (arena), as imap_search_parse */
    unsigned opts;                 /* SORT RETURN (...) (RFC 5267 ESORT): IMAP_SR_* */
    struct imap_partial partial;   /* with IMAP_SR_PARTIAL */
    char charset[64];              /* a charset other than UTF-8 and US-ASCII, or "" */
};
/* What follows "SORT" (thread false) or "THREAD" (thread true): criteria
 * or algorithm, charset, search keys. IMAP_ARG_OK, or an IMAP_ARG_* error
 * with *err the reason; the charset is checked when the command runs. */
int imap_sort_parse(struct imap_args *a, struct imap_arena *ar, bool thread,
                    struct imap_sort_spec *out, const char **err);

/* ---- FETCH attributes ---- */

enum imap_fi_type {
    FI_FLAGS,
    FI_INTERNALDATE,
    FI_RFC822_SIZE,
    FI_ENVELOPE,
    FI_BODY,
    FI_BODYSTRUCTURE,
    FI_UID,
    FI_MODSEQ,      /* MODSEQ (RFC 7162 3.1.4.1) */
    FI_SAVEDATE,    /* SAVEDATE (RFC 8514) */
    FI_EMAILID,     /* EMAILID (RFC 8474) */
    FI_THREADID,    /* THREADID */
    FI_PREVIEW,     /* PREVIEW [(LAZY)] (RFC 8970) */
    FI_SECTION,     /* BODY[...] / BODY.PEEK[...] / RFC822 / RFC822.HEADER / RFC822.TEXT */
    FI_BINARY,      /* BINARY[part] / BINARY.PEEK[part] (RFC 3516) */
    FI_BINARY_SIZE, /* BINARY.SIZE[part] */
};

enum imap_sec_kind {
    SEC_WHOLE,      /* part "" or "1.2": the bytes of the part */
    SEC_HEADER,     /* part.HEADER */
    SEC_TEXT,       /* part.TEXT */
    SEC_MIME,       /* part.MIME */
    SEC_FIELDS,     /* part.HEADER.FIELDS (...) */
    SEC_FIELDS_NOT, /* part.HEADER.FIELDS.NOT (...) */
};

struct imap_fetch_item {
    enum imap_fi_type type;
    /* FI_SECTION */
    bool peek;
    const char *label; /* as answered: "BODY[1.TEXT]", "RFC822", ... (arena) */
    char part[64];     /* "" or "1.2" */
    enum imap_sec_kind kind;
    const char **names; /* header field names (arena) */
    size_t nnames;
    unsigned listing_fields; /* their bits, when all are listing fields (storage.h) */
    bool partial;
    uint64_t origin, count;
    /* FI_BINARY*: the part in the message being answered (found first for
     * every such item, so that an unknown encoding fails the command
     * before anything of that message is written) */
    bool bfound;
    enum storage_cte bcte;
    uint64_t boff, blen;
    struct imap_fetch_item *next;
};

struct imap_fetch_spec {
    struct imap_fetch_item *items;
    unsigned storage_what; /* STORAGE_FETCH_* needed */
    bool need_body;        /* some item reads the message file */
    bool sets_seen;        /* BODY[...] without PEEK, RFC822, RFC822.TEXT */
    bool flags, uid, modseq;
    bool preview;    /* PREVIEW */
    unsigned nitems; /* items asked for, macros expanded */
};
int imap_fetch_parse(struct imap_args *a, struct imap_arena *ar, struct imap_fetch_spec *out,
                     const char **err);
struct imap_session;
/* NOTIFY's MessageNew with fetch attributes (RFC 5465 5.2): FETCH
 * responses with the items atts[0..len) (as the client wrote them, parsed
 * again) of the selected mailbox's messages from index from on, made on
 * the pool in jobs of about IMAP_FETCH_STEP_BYTES, \Seen never set, the
 * UID always given; then(s) after the last. 0, or -1: nothing started.
 * When the client has not read what went before, the fetch waits in *park
 * (the session stalled, IMAP_WAIT_OUTPUT) for imap_fetch_unsolicited_resume
 * (0, or -1: freed, then not called), or imap_fetch_unsolicited_free. */
struct imap_fetch;
int imap_fetch_unsolicited(struct imap_session *s, const char *atts, size_t len, size_t from,
                           void (*then)(struct imap_session *s), struct imap_fetch **park);
int imap_fetch_unsolicited_resume(struct imap_session *s, struct imap_fetch *f);
void imap_fetch_unsolicited_free(struct imap_fetch *f);

/* ---- session ---- */

struct uidarr {
    uint32_t *v;
    size_t n, cap;
};
int uidarr_push(struct uidarr *a, uint32_t uid);
void uidarr_free(struct uidarr *a);
/* Index of uid in the sorted array, or -1. */
ssize_t uidarr_find(const struct uidarr *a, uint32_t uid);

/* The sequence-number <-> UID map of a selected mailbox: its UIDs as
 * ascending ranges (disjoint, not adjacent), with the number of UIDs
 * before each, so that a mailbox of 100,000 messages without holes is one
 * range, not 100,000 numbers. Indexes are 0-based (sequence number i is
 * index i - 1). */
struct uidmap {
    struct storage_range *r;
    size_t *before; /* before[k]: UIDs in r[0..k) */
    size_t nr, cap;
    size_t n; /* UIDs in all */
};
uint32_t uidmap_max(const struct uidmap *m); /* 0 when empty */
uint32_t uidmap_at(const struct uidmap *m, size_t i);
/* The index of the first UID >= uid, or m->n. */
size_t uidmap_lower_bound(const struct uidmap *m, uint32_t uid);
/* The first range whose hi >= uid, or m->nr. */
size_t uidmap_range(const struct uidmap *m, uint32_t uid);
/* The index of uid, or -1. */
ssize_t uidmap_find(const struct uidmap *m, uint32_t uid);
/* Appends uid, above every UID of m. 0 or -1. */
int uidmap_push(struct uidmap *m, uint32_t uid);
/* Takes the ascending uids[0..n) out (those absent are ignored). 0 or -1
 * (m unchanged). */
int uidmap_remove(struct uidmap *m, const uint32_t *uids, size_t n);
/* Takes over the ranges r[0..nr) (malloc'd, ascending, disjoint). */
void uidmap_adopt(struct uidmap *m, struct storage_range *r, size_t nr);
void uidmap_free(struct uidmap *m);

struct imap_recent;

/* The selected mailbox as this session knows it. */
struct imap_sel {
    int64_t id;
    char *name; /* as selected (a later RENAME is not followed): for `coffrectl who` */
    bool readonly;
    uint32_t uidvalidity;
    struct uidmap uids;            /* sequence number i is uidmap_at(&uids, i - 1) */
    uint32_t recent_lo, recent_hi; /* \Recent: UIDs in [lo, hi] */
    struct imap_recent *rec;
    uint32_t recent_sent; /* last RECENT count announced */
    size_t exists_sent;   /* last EXISTS count announced */
    /* changes not yet announced */
    struct uidarr pend_new, pend_exp;
    bool flags_dirty, resync, gone;
    uint64_t known_modseq;
    uint64_t own_modseq[8]; /* our own STOREs, not to be echoed back */
    unsigned n_own;
    /* the search contexts of RETURN (UPDATE) (imap_context.c), their
     * count, and whether changes came since they were last evaluated */
    struct imap_ctx *ctx;
    unsigned nctx;
    bool ctx_dirty;
    const struct imap_ctx_ops *ctx_ops; /* NULL until the first context */
    /* "$", the result the last SEARCH ... RETURN (SAVE) saved (RFC 5182):
     * UIDs as ascending ranges (malloc'd), so that expunged messages drop
     * out by themselves; empty at SELECT/EXAMINE, gone with the mailbox */
    struct storage_range *saved;
    size_t nsaved;
    /* a mailbox of another account, selected through the shared namespace
     * (imap_shared.c): its owner's store (held while selected; NULL for
     * one's own mailbox), the session's listener on it (mailbox ids are
     * per account: the own listener never reaches this view), the owner,
     * the owner's name for it and the user's rights as of the last
     * command; revoked: `r` was taken away (selected-state commands are
     * refused, nothing more is announced, until the mailbox is left) */
    struct mailuser *mu;
    struct mailuser_listener listener;
    int64_t owner;
    char *owner_address;
    char *oname;
    unsigned rights;
    bool revoked;
    /* the owner's mailbox list changed (STORAGE_EV_MAILBOX): oname may
     * have been renamed (the id stays); the next update reads it again by
     * id, and until then a name the ACL no longer knows keeps the rights
     * it had. name_gen counts those events. */
    bool name_stale;
    unsigned name_gen;
    /* per-user \Seen (storage/pseen.c): the account whose own \Seen this
     * session reads and writes in this mailbox (the session's, on another
     * account's mailbox whose \Seen is not shared); 0: the message rows' */
    int64_t seen_viewer;
    /* another account's own \Seen changed (its event is not ours): the
     * modseqs the messages took then, and the messages others changed
     * for everybody meanwhile (uids), so that the next look at the
     * changes leaves out what moved only for that account (other_all: too
     * many to tell, nothing is left out) */
#define IMAP_PEND_FLAGS_MAX 10000
    uint64_t other_modseq[8];
    unsigned n_other;
    bool other_all;
    struct uidarr pend_flags;
};

struct imap_job;
struct imap_command;
struct imap_session;

/* A search context of CONTEXT=SEARCH (RFC 5267 4), imap_context.c. */
struct imap_ctx {
    struct imap_ctx *next;
    unsigned refs; /* the selected mailbox's, and an update job's */
    bool live;     /* still in the selected mailbox's list */
    bool uid;      /* a UID SEARCH: updates name UIDs */
    char tag[IMAP_TAG_MAX];
    struct imap_arena ar;     /* holds q */
    struct storage_search *q; /* the criteria, sets as UIDs */
    struct uidarr res;        /* the UIDs in the result, ascending */
    uint64_t since;           /* changes up to this modseq are in res */
    /* a SORT's context (CONTEXT=SORT): its criteria, and res in sort
     * order; updates name positions in it */
    bool sort;
    struct storage_sort_crit crit[IMAP_SORT_MAX_KEYS];
    size_t ncrit;
    struct uidarr order;
};
struct imap_ctx_eval;
/* The live context of that tag, or NULL. */
struct imap_ctx *imap_ctx_find(const struct imap_sel *sel, const char *tag);
/* A context for the command being answered (its tag, UID or not): the
 * criteria q (in ar, which moves into the context), the UIDs found
 * uids[0..n) ascending (those not in view are left out), changes after
 * modseq since to be evaluated. 0, 1 when the session has
 * imap_max_search_updates contexts already, -1 out of memory. */
int imap_ctx_add(struct imap_session *s, struct imap_arena *ar, struct storage_search *q,
                 const uint32_t *uids, size_t n, uint64_t since);
/* The same for a SORT (uids in sort order), with its n criteria. */
int imap_ctx_add_sort(struct imap_session *s, struct imap_arena *ar, struct storage_search *q,
                      const struct storage_sort_crit *crit, size_t ncrit, const uint32_t *uids,
                      size_t n, uint64_t since);
/* Ends the context c (CANCELUPDATE). */
void imap_ctx_cancel(struct imap_sel *sel, struct imap_ctx *c);
/* RFC 5267 4.3.1: "* NO [NOUPDATE "tag"]", the search answered without
 * updates. */
void imap_noupdate(struct imap_session *s);
/* What the selected mailbox's code calls of the contexts, set with the
 * first one (so that it depends on imap_context.c only through this):
 * REMOVEFROM of the ascending uids[0..n) about to be announced expunged;
 * the end of them all; an evaluation of every context made on the loop,
 * run on the pool (work), its ADDTO/REMOVEFROM written on the loop
 * (done, after the EXISTS and FETCH), then freed. */
struct imap_ctx_ops {
    void (*expunged)(struct imap_session *s, const uint32_t *uids, size_t n);
    void (*free_all)(struct imap_sel *sel);
    struct imap_ctx_eval *(*eval_new)(struct imap_sel *sel, size_t *n);
    void (*eval_work)(struct storage_user *u, int64_t mbox, struct imap_ctx_eval *ev, size_t n);
    void (*eval_done)(struct imap_session *s, struct imap_ctx_eval *ev, size_t n);
    void (*eval_free)(struct imap_ctx_eval *ev, size_t n);
};

/* NOTIFY (RFC 5465, cmd_notify.c), as the session core and the selected
 * mailbox call it (set by the first NOTIFY, so that they depend on
 * cmd_notify.c only through this): a storage event for the account; the
 * session may announce what is pending (it runs no command, or IDLEs);
 * the session ends. */
struct imap_notify;
struct imap_notify_ops {
    void (*event)(struct imap_session *s, const struct storage_event *ev);
    void (*kick)(struct imap_session *s);
    void (*free)(struct imap_session *s);
};

/* What the session reads next (see the diagram in imap_session.c). */
enum imap_input {
    IMAP_IN_COMMAND, /* command lines (and the lines between literals) */
    IMAP_IN_LITERAL, /* the bytes of a literal of the command being assembled */
    IMAP_IN_CONT,    /* the running command's own input (s->cont) */
    IMAP_IN_SKIP,    /* the rest of a refused over-long command line */
    IMAP_IN_DISCARD, /* the rest of a command refused while its client sends
                        it (a non-synchronizing literal over LITERAL-'s limit) */
};

/* What the session waits on before it reads or runs anything more. */
enum imap_wait {
    IMAP_WAIT_NONE,
    IMAP_WAIT_JOB,    /* a pool job, or another service's answer (login, store open) */
    IMAP_WAIT_RATE,   /* over imap_max_commands_per_second: the next second */
    IMAP_WAIT_OUTPUT, /* the client reading its output (output timeout armed) */
};

/* A command that takes several steps owns its continuation: the session
 * keeps a pointer to it (and to the command's state, s->cont_data) while
 * the command runs, and calls it instead of reading commands. */
struct imap_cont {
    /* The command's input, at most one of the two (none: it reads nothing
     * and the session reads nothing while it runs). line: the next line,
     * terminator stripped (SASL responses, IDLE's DONE). bytes: reads
     * s->in itself; returns false when it needs more input (APPEND data). */
    void (*line)(struct imap_session *s, const char *line, size_t len);
    bool (*bytes)(struct imap_session *s);
    /* The session may go on: the output drained, a job ended, or the
     * selected mailbox changed (NULL: nothing to do). */
    void (*resume)(struct imap_session *s);
    /* The session ends while the command runs: free its state (a running
     * job of its own is still s->job, detached after this call). */
    void (*abort)(struct imap_session *s);
};

struct imap_session {
    struct conn *c;
    enum imap_state state;
    enum imap_input input;
    enum imap_wait wait;
    struct linebuf in;
    const struct imap_command *commands; /* the command table, ncommands rows */
    size_t ncommands;

    /* the command being assembled: its lines and literals */
    struct buf cmd;
    uint64_t literal_left; /* IMAP_IN_LITERAL: bytes still to come */

    char tag[IMAP_TAG_MAX];
    bool uid_cmd;   /* the command in progress is a UID command */
    bool condstore; /* CONDSTORE enabled (RFC 7162 3.1): MODSEQ in the
                     * FETCH answers not asked for, HIGHESTMODSEQ at
                     * SELECT */
    /* IMAP4rev2 enabled (RFC 9051): no \Recent, ESEARCH for SEARCH, UID
     * in unsolicited FETCH; utf8: mailbox names in UTF-8 both ways (by
     * IMAP4rev2 or UTF8=ACCEPT, RFC 6855); utf8_accept: UTF8=ACCEPT itself
     * (APPEND's UTF8 data, no SEARCH CHARSET) */
    bool rev2, utf8, utf8_accept;
    bool qresync;                 /* QRESYNC enabled (RFC 7162 3.2.3): VANISHED instead of
                                   * EXPUNGE */
    bool uidonly;                 /* UIDONLY enabled (RFC 9586): no sequence numbers either
                                   * way; UIDFETCH and VANISHED instead */
    bool expunge_ok;              /* EXPUNGE responses allowed for the command in progress */
    bool in_loop;                 /* inside the reading loop (it goes on by itself) */
    const struct imap_cont *cont; /* the running multi-step command, or NULL */
    void *cont_data;              /* its state */
    char *tagline;                /* tagged reply held back until updates are out */
    struct imap_job *job;         /* at most one job in flight */

    /* the command in progress for the metrics (metrics.h): its start (0:
     * not timed) and row (or METRICS_CMD_UNKNOWN); the login's mechanism */
    uint64_t metrics_t0;
    unsigned metrics_cmd;
    enum metrics_mech login_mech;
    uint64_t login_t0; /* uv_now when the login began: mailuser_unblock */

    bool counted_userip;
    unsigned bad_count;
    int64_t account_id;
    struct mailuser *mu;
    struct mailuser_req *mu_req;
    struct mailuser_listener listener;
    struct imap_sel *sel;
    struct imap_notify *notify;                   /* NOTIFY SET in effect, or NULL */
    struct imap_shared_open *shared_open;         /* another account's store being acquired */
    void (*shared_abort)(struct imap_session *s); /* drops it (imap_shared.c) */
    const struct imap_notify_ops *notify_ops;
    bool idling;          /* in IDLE */
    bool idle_counted;    /* mailuser_idling(mu, true) said for this IDLE */
    uint64_t quota_bytes; /* the account's quota, 0 = none (login ALERT) */
    char *user;           /* the login's address, once logged in (CATENATE's URLs) */
    const char *kick;     /* the administrator ended the session: BYE text (static), said
                           * at the next safe point */

    uint64_t rate_sec;
    unsigned rate_n;
    struct imap_session *thr_next, *thr_prev;
};

/* Starts the continuation of the command in progress (data: its state). */
void imap_cont_start(struct imap_session *s, const struct imap_cont *cont, void *data);
/* The command is over (its state freed or about to be): commands again. */
void imap_cont_end(struct imap_session *s);
/* Sets what the session waits on; input is paused until it is NONE again. */
void imap_wait(struct imap_session *s, enum imap_wait w);
/* The running command's resume hook, when it may run now (a mailbox
 * change while it runs, e.g. during IDLE). */
static inline void imap_cont_nudge(struct imap_session *s)
{
    if (s->cont && s->cont->resume && s->wait == IMAP_WAIT_NONE)
        s->cont->resume(s);
}

/* ---- output ---- */

/* Appends to the session's pending output (flushed at the end of every
 * event handler, or when large). */
void imap_out(struct imap_session *s, const void *p, size_t len);
void imap_printf(struct imap_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct buf *imap_outbuf(struct imap_session *s); /* the pending output, for builders */
void imap_flush(struct imap_session *s);
/* Drops what s has not flushed yet (the session is closing). */
void imap_out_discard(struct imap_session *s);
/* Bytes written but not yet taken by the client, this event's included. */
size_t imap_out_pending(struct imap_session *s);
void imap_close(struct imap_session *s);
/* Lets go of everything the session holds for its account (selected
 * mailbox and its contexts, store, event listener, job, per-address count,
 * what ENABLE turned on): at the close, and at UNAUTHENTICATE. */
void imap_account_release(struct imap_session *s);
/* The session leaves IDLE (DONE, or its account is let go): the store is
 * told (mailuser_idling). */
void imap_idle_leave(struct imap_session *s);
/* A multi-step command waits for the client to read (IMAP_WAIT_OUTPUT):
 * arms the output timeout (imap_output_timeout) until the output drains,
 * then the continuation's resume runs. */
void imap_stall(struct imap_session *s);

void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void imap_bad(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The command in progress has its tagged answer, status: counted once. */
void imap_metrics_done(struct imap_session *s, const char *status);
/* BAD for an argument refused with r: invalid mailbox name, too deep, or
 * "Usage: <usage>". */
void imap_bad_arg(struct imap_session *s, int r, const char *usage);
/* A mailbox name that is not modified UTF-7 is still a well-formed astring
 * (RFC 3501 5.1.3): a command naming it is well formed and names no
 * mailbox. Turns IMAP_ARG_BADNAME into IMAP_ARG_OK, setting *invalid, so
 * the caller checks the rest of the syntax (BAD) before answering NO with
 * imap_no_name(); any other r is returned as is. */
int imap_name_lax(int r, bool *invalid);
/* NO for such a name: "[NONEXISTENT]" where the name must exist (exists
 * true), "[CANNOT]" where a mailbox would be made with it. */
void imap_no_name(struct imap_session *s, const char *what, bool exists);
/* The capability list for the current state (no leading "CAPABILITY "). */
const char *imap_capabilities(struct imap_session *s);

/* Ends the command in progress: announces pending mailbox changes (with
 * EXPUNGE only when s->expunge_ok), then the tagged reply; the session
 * goes on reading (at once when called outside its reading loop). */
void imap_finish(struct imap_session *s, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps a storage error to a tagged NO with a response code. */
void imap_finish_storage_err(struct imap_session *s, int err, const char *what);

/* The session goes on: reads and runs what it can (nothing when called
 * from inside its reading loop, which goes on by itself). */
void imap_resume(struct imap_session *s);
/* The store for mailbox commands; answers NO and returns NULL when absent. */
struct storage_user *imap_storage(struct imap_session *s);

/* ---- jobs ---- */

typedef void imap_job_work(struct imap_job *j);
typedef void imap_job_done(struct imap_session *s, struct imap_job *j);

/* Every job struct starts with this. The work function must not touch the
 * session: it uses what the job carries. */
struct imap_job {
    struct imap_session *s; /* NULL once the session is gone */
    struct mailuser *release;
    struct storage_user *u;
    imap_job_work *work;
    imap_job_done *done;
    void (*free_fn)(struct imap_job *j); /* frees the job (NULL: free()) */
    void *pj;
    /* the store it runs on: NULL for the session's own; another account's
     * (the shared namespace), which the job holds from its start to its
     * end (imap_job_take_store keeps that hold for the caller) */
    struct mailuser *store;
    struct mailuser *hold; /* private */
};
/* Starts j (allocated by the caller, zeroed header) for s; the session
 * waits on it (IMAP_WAIT_JOB) until its done function has run. Returns 0,
 * or -1 (j freed, nothing started). */
int imap_job_start(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                   imap_job_done *done);
/* The same, but the session goes on reading meanwhile (a continuation
 * that reads its own input: APPEND's next literal bytes while the last
 * are written); s->job is held as for any job. */
int imap_job_start_reading(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                           imap_job_done *done);

/* The job's hold on its store (another account's) passes to the caller
 * (done function): NULL when it has none. */
struct mailuser *imap_job_take_store(struct imap_job *j);

/* A command answered in steps on the pool (FETCH, LIST): each step (work)
 * writes about IMAP_STEP_BYTES into out; the loop sends it and starts the
 * next step only once the client has taken most of what is queued (above
 * CONN_WRITE_HIGH the session stalls, and a client that stops reading is
 * dropped after imap_output_timeout). Embedded first in the command's own
 * struct, which fills in work, end and destroy. */
struct imap_steps {
    struct imap_job j;
    struct buf out;
    struct buf spare; /* the step being sent while the next one is made */
    int err;          /* a step failed (STORAGE_E_*): no further step */
    bool finished;    /* set by the step that ended the answer */
    bool session_owned;
    imap_job_work *work;
    struct mailuser *store; /* each step's j.store (the selected mailbox's) */
    /* after the last step or a failure: the tagged reply; st is freed
     * (destroy) right after */
    void (*end)(struct imap_session *s, struct imap_steps *st);
    void (*destroy)(struct imap_steps *st);
};
/* Runs the steps as the session's continuation; s has a store
 * (imap_storage). */
void imap_steps_start(struct imap_session *s, struct imap_steps *st);

/* Starts the command's job, or ends the command with NO [UNAVAILABLE]
 * when there is no store (j freed) or the job cannot start. */
void imap_cmd_job(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                  imap_job_done *done);

/* ---- the stores of other accounts (imap_shared.c) ---- */

/* The store the selected mailbox lives in: its owner's, or s->mu. */
struct mailuser *imap_sel_store(struct imap_session *s);
/* imap_cmd_job on the selected mailbox's store. */
void imap_sel_job(struct imap_session *s, struct imap_job *j, imap_job_work *work,
                  imap_job_done *done);
/* Gets the store of account owner (address owner_address) for s: the
 * account is looked up (pool), its store opened or shared with its own
 * sessions and deliveries (mailuser_open), then cb(s, 0, mu, arg) runs on
 * the loop with mu held for the caller (mailuser_release), or cb(s, err,
 * NULL, arg) (STORAGE_E_NOMBOX: the owner is gone; STORAGE_E_TEMP). The
 * session waits meanwhile (IMAP_WAIT_JOB); when it ends first, cb is not
 * called but abort(arg) is (may be NULL). -1 when nothing started
 * (neither is called). */
typedef void imap_shared_cb(struct imap_session *s, int err, struct mailuser *mu, void *arg);
int imap_shared_acquire(struct imap_session *s, int64_t owner, const char *owner_address,
                        imap_shared_cb *cb, void (*abort)(void *arg), void *arg);
/* The store of owner when the session holds it already (the selected
 * mailbox's), with a hold for the caller; else NULL. */
struct mailuser *imap_shared_held(struct imap_session *s, int64_t owner);
/* The session ends: an acquisition in flight is dropped. */
void imap_shared_abort(struct imap_session *s);
struct imap_mref;
/* Runs j on the store of r's owner (s->mu for one's own names): as
 * imap_cmd_job, answering NO itself (j freed) when the store cannot be
 * had. The job holds the store until it ends. */
void imap_shared_job(struct imap_session *s, const struct imap_mref *r, struct imap_job *j,
                     imap_job_work *work, imap_job_done *done);
/* (imap_mailbox.c) The user's rights on the selected mailbox (ACL_ALL for
 * one's own), read again from the ACL snapshot. */
unsigned imap_sel_rights(struct imap_session *s);
/* (imap_mailbox.c) Before a command, and before changes are announced:
 * the rights on another account's selected mailbox are read again; when
 * they changed, PERMANENTFLAGS (and READ-ONLY or READ-WRITE) are said
 * again (RFC 4314 5.1.1). False once `r` is gone: the selected-state
 * commands are then refused, and nothing more is announced. */
bool imap_sel_refresh(struct imap_session *s);
/* The rights a STORE needs: s for \Seen, t for \Deleted, w for the other
 * flags and keywords; FLAGS (replace) changes every kind. */
unsigned imap_store_rights(int op, unsigned flags, size_t nkw);
/* The flags (and whether keywords) a COPY or APPEND into a mailbox with
 * rights keeps (RFC 4314 section 4: the others are dropped silently). */
unsigned imap_flags_allowed(unsigned rights, unsigned flags, bool *keywords);
/* (imap_mailbox.c) PERMANENTFLAGS of a mailbox with rights ("\Seen"
 * with s, ...), and whether SELECT says READ-WRITE (RFC 4314 5.2). */
void imap_buf_permflags(struct buf *b, unsigned rights, const char *keywords);
bool imap_rights_readwrite(unsigned rights);
/* (imap_mailbox.c) Makes the selected mailbox sel (just installed) another account's:
 * takes over the hold on mu, listens to its events. */
void imap_sel_attach(struct imap_session *s, struct imap_sel *sel, struct mailuser *mu,
                     const struct imap_mref *r);

/* ---- selected mailbox ---- */

/* Maps the sequence sets and RECENT of a parsed tree to UIDs of this
 * session's view, in place: 0, -1 for an invalid sequence number, -2 when
 * out of memory, -3 for RECENT, NEW or OLD after ENABLE IMAP4rev2, -4 for
 * a sequence set after ENABLE UIDONLY. */
int imap_search_resolve(struct imap_session *s, struct storage_search *n, struct imap_arena *ar);
/* Resolves a sequence set (uid=false) or UID set against the session's
 * view into UID ranges (arena); out->n may be 0. "$" is the saved result
 * either way. Returns 0, or -1 when a sequence number is beyond the
 * mailbox (BAD) or there is no memory. */
int imap_sel_resolve(struct imap_session *s, const struct imap_seqset *in, bool uid,
                     struct imap_arena *ar, struct storage_uidset *out);
/* Makes mb (with its UIDs, the ranges taken from info) the selected mailbox of s,
 * with its \Recent share: the messages above recent_floor (EXAMINE: the
 * floor; SELECT: the floor its claim found, recent_gen the claim's
 * number); *uidnext the UIDNEXT to announce. NULL when out of memory. */
struct imap_sel *imap_sel_install(struct imap_session *s, const struct storage_mbox *mb,
                                  struct storage_mbox_info *info, bool readonly,
                                  uint32_t recent_floor, uint64_t recent_gen, uint32_t *uidnext);
/* SP sequence-set (a UID set for a UID command), resolved into us (in
 * ar); false after answering BAD. */
bool imap_sel_set_arg(struct imap_session *s, struct imap_args *a, struct imap_arena *ar,
                      struct storage_uidset *us);
/* Flags of messages read on the pool (STORE's result, others' changes),
 * announced on the loop as FETCH FLAGS. Zeroed is empty. */
struct imap_flagset {
    struct imap_msgflags {
        uint32_t uid;
        unsigned flags;
        uint32_t kwoff; /* into kw; UINT32_MAX: no keywords */
        uint64_t modseq;
    } * v;
    size_t n, cap;
    struct buf kw;
};
/* Adds m's flags (a storage callback: returns 1 when out of memory). */
int imap_flagset_add(struct imap_flagset *fs, const struct storage_msg *m);
void imap_flagset_free(struct imap_flagset *fs);
/* "* seq FETCH ([UID u ]FLAGS (...)[ MODSEQ (n)])" for each message still
 * in view (MODSEQ once CONDSTORE is enabled). */
void imap_flagset_announce(struct imap_session *s, const struct imap_flagset *fs, bool uid);
/* Sequence number (1-based) of uid, 0 if not in view. */
uint32_t imap_sel_seq(const struct imap_sel *sel, uint32_t uid);
bool imap_sel_recent(const struct imap_sel *sel, uint32_t uid);
/* How many messages are \Recent in this session. */
uint32_t imap_sel_recent_count(const struct imap_sel *sel);
void imap_sel_free(struct imap_session *s);
/* Makes the ascending uids[0..n) "$" (n 0: empty). 0, or -1 out of
 * memory ("$" then empty). */
int imap_sel_save(struct imap_sel *sel, const uint32_t *uids, size_t n);
/* A CONDSTORE enabling command (RFC 7162 3.1): turns CONDSTORE on, and
 * the first time with a mailbox selected, tells its HIGHESTMODSEQ. */
void imap_condstore_enable(struct imap_session *s);
/* Events from the storage for this session. */
void imap_on_event(void *arg, const struct storage_event *ev);
/* Announces (or starts a job to announce) pending changes; calls then(s)
 * when done (at once if nothing needs the pool). */
void imap_updates(struct imap_session *s, bool expunge_ok, void (*then)(struct imap_session *s));
/* Whether announcing needs the pool (flags or full resync). */
bool imap_updates_need_job(struct imap_session *s);
/* Removes expunged UIDs (ascending) from the view, announcing each. */
void imap_sel_expunged(struct imap_session *s, const uint32_t *uids, size_t n);
/* New UIDs we know of (APPEND/COPY into the selected mailbox). */
void imap_sel_note_new(struct imap_session *s, const uint32_t *uids, size_t n);
void imap_sel_note_own_store(struct imap_session *s, uint64_t modseq);

/* ---- search (cmd_search.c), for the commands built on it ---- */

/* Maps the sequence sets, UID sets and RECENT of a tree imap_search_parse
 * made to UID ranges of this session's view (in ar). 0, -1 when a
 * sequence number is beyond the mailbox (BAD), -2 out of memory. */
int imap_search_resolve(struct imap_session *s, struct storage_search *q, struct imap_arena *ar);
/* "* ESEARCH (TAG "tag") [UID] [MIN n] [MAX n] [ALL set] [PARTIAL (range
 * set)] [COUNT n]" of v[0..n) (sequence numbers, or UIDs for a UID
 * command; ascending, or in sort order for SORT), as opts (IMAP_SR_*)
 * asks; when n is 0 nothing but the count and the PARTIAL range with NIL
 * (RFC 4731, RFC 9394); " MODSEQ m" at the end when modseq is not 0
 * (RFC 7162 3.1.5). */
void imap_esearch_answer(struct imap_session *s, unsigned opts, const uint32_t *v, size_t n,
                         const struct imap_partial *part, uint64_t modseq);
/* v[0..n) as a sequence set in the order given, runs ascending by one as
 * ranges, into b; written in pieces (the buffer flushed past 64 kB, so
 * that a long set is never held whole): returns the buffer to go on in. */
struct buf *imap_write_set(struct imap_session *s, struct buf *b, const uint32_t *v, size_t n);
/* The answer to SEARCH or SORT with RETURN: of the UIDs v[0..nv) found
 * (ascending, or in sort order when sorted), keeps those this session
 * knows (v is rewritten), saves "$" when opts has IMAP_SR_SAVE and writes
 * the ESEARCH answer when opts asks for one (MIN and MAX are then the
 * first and last in sort order, ALL is in sort order: RFC 5267 3). 0, or
 * -1 out of memory ("$" then empty). modseq: as imap_esearch_answer. */
int imap_esearch_result(struct imap_session *s, unsigned opts, const struct imap_partial *part,
                        uint32_t *v, size_t nv, bool sorted, uint64_t modseq);
/* MODSEQ in SEARCH and SORT (RFC 7162 3.1.5): whether q has a MODSEQ key;
 * the modseqs of the UIDs uids[0..n) (any order), read on the pool; the
 * highest of those of v[0..n) (the UIDs found, ascending or in sort order)
 * this session knows, of the MIN and MAX ones only when opts asks for
 * nothing else (0: none). */
bool imap_search_has_modseq(const struct storage_search *q);
struct imap_modseqs {
    uint32_t *uids; /* ascending */
    uint64_t *ms;   /* ms[i] of uids[i], 0 when expunged meanwhile */
    size_t n;
};
int imap_modseqs_load(struct storage_user *u, int64_t mbox, const uint32_t *uids, size_t n,
                      struct imap_modseqs *out);
void imap_modseqs_free(struct imap_modseqs *m);
uint64_t imap_modseqs_highest(struct imap_session *s, const struct imap_modseqs *m,
                              const uint32_t *v, size_t n, unsigned opts);
/* A SEARCH or SORT with SAVE in opts answered NO: "$" becomes empty. */
void imap_search_save_failed(struct imap_session *s, unsigned opts);

/* ---- STATUS (cmd_status.c), also for LIST ... RETURN (STATUS (...)) ---- */

struct imap_status {
    unsigned items;       /* the items asked for (cmd_status.c's ST_*) */
    uint64_t appendlimit; /* max_message_size */
    struct storage_mbox mb;
    struct storage_status st;
    uint32_t recent;
    bool utf8; /* the name in UTF-8 (the session's s->utf8) */
    /* the name written, when not mb.name (another account's mailbox in
     * the shared namespace) */
    const char *shown;
    /* per-user \Seen: UNSEEN as this account sees it (another account's
     * mailbox whose \Seen is not shared), 0: the rows' */
    int64_t viewer;
};
/* "(item *(SP item))": IMAP_ARG_OK, or IMAP_ARG_BAD for an unknown item
 * (RECENT in an IMAP4rev2 session: RFC 9051 has none) or an empty list. */
int imap_status_items(struct imap_args *a, bool rev2, unsigned *items);
/* Before the job: fills st's request, enables CONDSTORE for HIGHESTMODSEQ. */
void imap_status_prepare(struct imap_session *s, unsigned items, struct imap_status *st);
/* Reads the items of mailbox name (by id when name is NULL). Pool. */
int imap_status_read(struct storage_user *u, const char *name, int64_t id, struct imap_status *st);
/* "* STATUS name (...)" with the items asked for. */
void imap_status_write(struct buf *b, const struct imap_status *st);

/* ---- VANISHED (EARLIER) of QRESYNC (imap_vanished.c) ---- */

/* What a client asks about: expunges since a modseq, among the UIDs it
 * knows (all of them, or known: '*' resolved when it runs), with the
 * sequence match data of SELECT's QRESYNC (RFC 7162 3.2.5.2). Zeroed,
 * then filled by the caller; freed with imap_vanished_free. */
struct imap_vanished {
    uint64_t since;
    bool all;
    struct storage_range *known; /* malloc'd */
    size_t nknown;
    struct storage_range *mseq, *muid; /* seq-match data (malloc'd) */
    size_t nmseq, nmuid;
    /* the answer (pool) */
    uint64_t floor;              /* the mailbox's floor of forgotten expunges */
    bool full;                   /* since was below it: every missing UID reported */
    struct storage_uidlist gone; /* UIDs expunged since, as remembered */
    struct buf line;             /* "* VANISHED (EARLIER) set\r\n", or empty */
};
/* SELECT's "[SP known-uids [SP seq-match-data]]" up to its ")" (not
 * read): IMAP_ARG_OK, IMAP_ARG_BAD (sequence match sets of different
 * sizes too), IMAP_ARG_NOMEM. */
int imap_vanished_parse(struct imap_args *a, struct imap_arena *ar, struct imap_vanished *v);
/* The known UIDs: a copy of r[0..n) (resolved, ascending). 0 or -1. */
int imap_vanished_set_known(struct imap_vanished *v, const struct storage_range *r, size_t n);
bool imap_vanished_knows(const struct imap_vanished *v, uint32_t uid);
/* On the pool: reads the changes since v->since (cb for each changed
 * message, may be NULL) and writes the VANISHED (EARLIER) line into
 * v->line: the known UIDs expunged since, or, below the floor, every known
 * UID up to top not in exist[0..nexist) (the mailbox's UIDs, ascending
 * ranges) above the sequence match. 0 or a STORAGE_E_* error. */
int imap_vanished_run(struct storage_user *u, int64_t mbox, struct imap_vanished *v,
                      const struct storage_range *exist, size_t nexist, uint32_t top,
                      storage_msg_cb cb, void *arg);
void imap_vanished_free(struct imap_vanished *v);

/* ---- namespaces (imap_ns.c): the personal one and the shared one ---- */

/* A client-visible name: the shared namespace's prefix and an owner's
 * address before the owner's own name (modified UTF-7 is longer: the
 * argument buffers are IMAP_MBOX_ARG_MAX). */
#define IMAP_NAME_MAX (STORAGE_MBOX_NAME_MAX + AUTH_ADDR_MAX + 64)

/* A mailbox name resolved: own, or another account's through the shared
 * namespace. A shared name that names nothing the user may know of (an
 * unknown owner, a name the owner could not have, the user's own address)
 * has rights 0, as has a mailbox the user may not see: callers answer
 * both alike. */
struct imap_mref {
    bool shared;   /* in the shared namespace */
    bool level;    /* "Shared" or "Shared/<owner>": no mailbox */
    int64_t owner; /* account id; the session's own for own names; 0: none */
    char owner_address[AUTH_ADDR_MAX];
    char name[STORAGE_MBOX_NAME_MAX + 1]; /* the owner's name for it */
    unsigned rights;                      /* ACL_ALL for own names (auth/acl.h) */
    const char *prefix;                   /* shared_prefix (borrowed from the configuration) */
};
/* Resolves a name as decoded from the client (UTF-8), from the ACL
 * snapshot only (loop thread, no I/O): 0, or IMAP_ARG_BADNAME for an own
 * name too long to be one. */
int imap_ns_resolve(struct imap_session *s, const char *utf8name, struct imap_mref *out);
/* The client-visible name of r (LIST output, COPYUID, ...): 0 or -1 when
 * it does not fit in cap. */
int imap_ns_name(const struct imap_mref *r, char *out, size_t cap);
/* shared_prefix ("" for none). */
const char *imap_ns_prefix(struct imap_session *s);
/* Whether an own name would stand where the shared namespace is: its
 * first level equals the prefix's first level, in any case (CREATE and
 * RENAME refuse it). */
bool imap_ns_reserved(struct imap_session *s, const char *name);
/* A shared mailbox the user may know of (any right on it), as opposed to
 * a level, a name that names nothing or one hidden from the user. */
bool imap_ns_visible(const struct imap_mref *r);
/* Per-user \Seen (imap_seen.c): the account whose own \Seen the session
 * sees in mailbox r (imap_sel.seen_viewer), 0 for the message rows'. */
int64_t imap_seen_viewer(struct imap_session *s, const struct imap_mref *r);

/* ---- commands ---- */

enum {
    IMAP_CMD_NO_EXPUNGE = 1 << 0, /* RFC 3501 7.4.1: no EXPUNGE while answering it */
    IMAP_CMD_UID = 1 << 1,        /* a UID command: sets are UIDs, answers say "UID" */
    IMAP_CMD_NO_ARGS = 1 << 2,    /* takes no arguments ("X takes no arguments.") */
    IMAP_CMD_LEAVE = 1 << 4,      /* leaves the selected mailbox: runs when its rights
                                   * were revoked (RFC 4314 5.1.1) */
    IMAP_CMD_SEQ = 1 << 3,        /* names messages by sequence number: refused after
                                   * ENABLE UIDONLY (RFC 9586) */
};

typedef void imap_cmd_fn(struct imap_session *s, struct imap_args *args);

/* A row of the command table (imap_commands.c). */
struct imap_command {
    const char *name; /* as the client sends it: "FETCH", "UID FETCH" */
    imap_cmd_fn *fn;  /* runs the command; args start after the name */
    unsigned states;  /* IMAP_NOTAUTH, IMAP_AUTH, IMAP_SELECTED it is valid in */
    unsigned flags;   /* IMAP_CMD_* */
    /* Optional: a line of this command announces a literal of n bytes.
     * Returns true when the command takes the literal over (it reads it
     * through its continuation); false: read it as part of the command. */
    bool (*literal)(struct imap_session *s, uint64_t n, bool sync);
};

imap_cmd_fn imap_cmd_capability, imap_cmd_noop, imap_cmd_logout, imap_cmd_starttls,
    imap_cmd_compress, imap_cmd_login, imap_cmd_authenticate, imap_cmd_enable, imap_cmd_id,
    imap_cmd_namespace, imap_cmd_select, imap_cmd_examine, imap_cmd_create, imap_cmd_delete,
    imap_cmd_rename, imap_cmd_subscribe, imap_cmd_unsubscribe, imap_cmd_list, imap_cmd_lsub,
    imap_cmd_xlist, imap_cmd_status, imap_cmd_append, imap_cmd_check, imap_cmd_close,
    imap_cmd_unselect, imap_cmd_expunge, imap_cmd_search, imap_cmd_sort, imap_cmd_thread,
    imap_cmd_fetch, imap_cmd_store, imap_cmd_copy, imap_cmd_move, imap_cmd_idle,
    imap_cmd_cancelupdate, imap_cmd_getquota, imap_cmd_getquotaroot, imap_cmd_setquota,
    imap_cmd_notify;
imap_cmd_fn imap_cmd_unauthenticate, imap_cmd_replace;
imap_cmd_fn imap_cmd_setacl, imap_cmd_deleteacl, imap_cmd_getacl, imap_cmd_listrights,
    imap_cmd_myrights;

/* After a storage change of owner's mailbox succeeded (cmd_acl.c): its
 * ACL follows (op ACL_CH_RENAME a to b, ACL_CH_DROP a, ACL_CH_INHERIT
 * parent a to child b), then the command ends with OK ok (also when the
 * ACL could not follow: logged). */
void imap_acl_follow(struct imap_session *s, int64_t owner, int op, const char *a, const char *b,
                     const char *what, const char *ok);

/* The session core's side of the connection handler (imap_commands.c
 * serves sessions with its table). */
int imap_session_open(struct conn *c, const struct imap_command *commands, size_t n);
void imap_session_input(struct conn *c, const char *buf, size_t len);
void imap_session_drain(struct conn *c);
void imap_session_timeout(struct conn *c);
void imap_session_shutdown(struct conn *c);
void imap_session_kick(struct conn *c, const char *reason);
void imap_session_describe(struct conn *c, struct conn_state *st);
void imap_session_close(struct conn *c);

/* APPEND streams its message literal (the literal hook of its row). */
bool imap_append_literal(struct imap_session *s, uint64_t n, bool sync);

/* An IMAP URL (RFC 5092) of a message or a part of one in the user's
 * own mailboxes, as CATENATE (RFC 4469) takes it (imap_url.c). */
#define IMAP_URL_MAX_NAMES 32
#define IMAP_URL_NAME_MAX 200
struct imap_url {
    char mbox[STORAGE_MBOX_NAME_MAX + 1]; /* UTF-8 */
    uint32_t uidvalidity;                 /* 0: not given */
    uint32_t uid;
    char section[256]; /* "" the whole message, else as FETCH BODY[] */
    /* HEADER.FIELDS (1) or HEADER.FIELDS.NOT (2): the part before it is
     * section[0..part_len), the names NUL-separated */
    int fields;
    size_t part_len;
    char names[256];
    size_t nnames;
    bool partial;                      /* URL-PARTIAL (RFC 5550 section 4) */
    uint64_t partial_off, partial_len; /* partial_len UINT64_MAX: to the end */
};
/* Parses url[0..len), relative to the server ("/mailbox;UIDVALIDITY=n/
 * ;UID=n...") or absolute ("imap://user@host/...", user and host those
 * of the session: any other is refused). NULL, or why it is refused. */
const char *imap_url_parse(const char *url, size_t len, const char *user, const char *host,
                           struct imap_url *out);

/* The per user+address session count (login/close). */
bool imap_userip_add(struct imap_session *s);
void imap_userip_del(struct imap_session *s);

#endif
