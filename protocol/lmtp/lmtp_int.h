/* LMTP internals shared by the files of protocol/lmtp: the session, the
 * mail transaction handed to thread-pool jobs, the pure parsers (fuzzed on
 * their own). */
#ifndef COFFRE_LMTP_INT_H
#define COFFRE_LMTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "protocol/job.h"
#include "protocol/linebuf.h"
#include "protocol/mailuser.h"
#include "server/base/conn.h"
#include "storage/storage.h"

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including <>. */
#define LMTP_PATH_MAX 256
/* Body bytes gathered before they are written to the drafts on the pool. */
#define LMTP_CHUNK (256u * 1024)

/* ---- parsing (lmtp_parse.c, pure) ---- */

/* MAIL FROM / RCPT TO parameters we know. */
enum lmtp_body { LMTP_BODY_7BIT, LMTP_BODY_8BITMIME };
struct lmtp_params {
    bool has_size;
    uint64_t size;
    enum lmtp_body body;
    bool smtputf8;
};

enum {
    LMTP_PARSE_OK = 0,
    LMTP_PARSE_SYNTAX = -1,   /* 501 5.5.4 / 5.1.7 */
    LMTP_PARSE_UNKNOWN = -2,  /* 555 5.5.4 unknown parameter */
    LMTP_PARSE_BADVALUE = -3, /* 501 5.5.4 bad parameter value */
};

/* Parses the argument of MAIL ("FROM:<path> params") or RCPT ("TO:<path>
 * params"): keyword is "FROM:" or "TO:". The path without <> and without a
 * source route goes to path (NUL-terminated, at most LMTP_PATH_MAX bytes).
 * Parameters: SIZE=, BODY=, SMTPUTF8 for MAIL; none for RCPT
 * (allow_params false). Returns LMTP_PARSE_*. */
int lmtp_parse_path(const char *arg, size_t len, const char *keyword, bool allow_params, char *path,
                    size_t pathcap, size_t *pathlen, struct lmtp_params *p);

/* Splits "user<delim>detail@domain": writes "user@domain" to base and the
 * detail to detail (both NUL-terminated; detail "" when none). delims is
 * the set of delimiter characters ("" = none). Returns 0, -1 when it does
 * not fit. */
int lmtp_split_detail(const char *addr, size_t len, const char *delims, char *base, size_t basecap,
                      char *detail, size_t detailcap);

/* "BDAT <size> [LAST]". Returns 0 or -1 (syntax). */
int lmtp_parse_bdat(const char *arg, size_t len, uint64_t *size, bool *last);

/* Streaming DATA decoder: removes the leading dot of dot-stuffed lines and
 * finds the end (CRLF.CRLF, a lone "." line also with bare LF ends). The
 * CRLF before the final dot belongs to the message. */
struct lmtp_undot {
    int state;
    bool done;
};
void lmtp_undot_init(struct lmtp_undot *u);
/* Consumes input from in[0..inlen), writes at most inlen + 1 bytes to out.
 * *used gets the bytes consumed (all, or up to the end marker), *outlen the
 * bytes written. Sets u->done at the end marker. */
void lmtp_undot(struct lmtp_undot *u, const char *in, size_t inlen, char *out, size_t *used,
                size_t *outlen);

/* ---- what the audit line takes from the header (lmtp_audit.c) ---- */

#define LMTP_QUEUE_ID_MAX 32
#define LMTP_MSGID_MAX 250
#define LMTP_HDR_LINE 1024          /* bytes of one header kept (unfolded) */
#define LMTP_HDR_SCAN (256u * 1024) /* header bytes looked at, at most */
struct lmtp_hdrscan {
    int state;
    size_t seen;
    bool done;
    bool got_received, got_msgid;
    size_t cur_len;
    char cur[LMTP_HDR_LINE + 1];
    char queue_id[LMTP_QUEUE_ID_MAX + 1]; /* from the topmost Received, if Postfix's */
    char msgid[LMTP_MSGID_MAX + 1];
};
/* Feeds message bytes (after unstuffing) from the start; stops by itself. */
void lmtp_hdrscan_feed(struct lmtp_hdrscan *h, const char *p, size_t n);

/* ---- transaction (lmtp_deliver.c) ---- */

struct lmtp_rcpt {
    struct auth_account acct;
    char addr[LMTP_PATH_MAX + 1]; /* as given, lower-cased: Delivered-To */
    char detail[STORAGE_MBOX_NAME_MAX + 1];
    struct mailuser *mu; /* held; NULL for a light recipient */
    /* A recipient whose account had no open store at RCPT: its delivery
     * opens a light handle (storage_open_light) on the pool instead, or a
     * full one when the account has no index yet (full_open). On leaders
     * only, from the first chunk to the end of the delivery. */
    bool light;
    bool full_open;
    struct storage_user *u;
    size_t leader;           /* index of the recipient whose draft this one uses */
    struct storage_draft *d; /* only on leaders, during DATA/BDAT */
    bool over_quota;         /* leaders: the message passed the quota room */
    int result;              /* 0 delivered, or STORAGE_E_* */
    uint32_t uid;            /* where it went, for the audit line */
    char folder[STORAGE_MBOX_NAME_MAX + 1];
    /* a shared folder's owner (acct is the owner's then): "" for the
     * recipient's own store */
    char shared_owner[AUTH_ADDR_MAX];
};

/* A mail transaction. Owned by its session; while a pool job runs on it, the
 * job's work may touch it, and when the session goes away meanwhile the job
 * frees it (orphan). */
struct lmtp_txn {
    char from[LMTP_PATH_MAX + 1];
    size_t from_len;
    struct lmtp_rcpt *rcpts;
    size_t n_rcpts, cap_rcpts;
    bool data_started; /* DATA or BDAT seen: drafts may exist */
    bool bdat;         /* BDAT used (then DATA is refused) */
    bool drafts_made;  /* leaders' drafts created (pool) */
    char *buf;         /* LMTP_CHUNK bytes waiting for the pool */
    size_t buf_len;
    uint64_t body_size; /* after unstuffing */
    uint64_t max_size;
    bool too_big;
    int err; /* first storage error while writing, 0 */
    bool detail_mailbox;
    bool orphan;    /* the session let go: the running job frees it */
    char *data_dir; /* for light recipients' handles */
    uv_loop_t *loop;
    struct lmtp_session *s; /* for the jobs' done callbacks only */
    struct lmtp_hdrscan hs;
    uint64_t t0;                          /* uv_hrtime at MAIL FROM */
    bool released;                        /* lmtp_release_account: the session ends after its job */
    struct lmtp_txn *all_prev, *all_next; /* every transaction (lmtp_deliver.c) */
};

struct lmtp_session;

struct lmtp_txn *lmtp_txn_new(uv_loop_t *loop, uint64_t max_size, bool detail_mailbox);
/* Frees a transaction that no job touches any more: drafts removed on the
 * pool, stores let go to linger (mailuser_release_delivered). Loop thread. */
void lmtp_txn_discard(uv_loop_t *loop, struct lmtp_txn *t);

/* ---- session (lmtp_session.c) ---- */

enum lmtp_phase {
    LMTP_GREETED, /* before LHLO */
    LMTP_READY,   /* no transaction */
    LMTP_MAIL,    /* after MAIL FROM, RCPTs being added */
    LMTP_DATA,    /* reading the DATA body */
    LMTP_BDAT,    /* reading a BDAT chunk */
    LMTP_QUIT,
};

struct lmtp_session {
    struct conn *c;
    enum lmtp_phase phase;
    struct linebuf in;
    unsigned bad_count;
    bool busy;                /* waiting on the pool: input is held */
    struct proto_job *job;    /* the pending job, if any */
    bool job_on_txn;          /* that job's work uses txn */
    bool shutdown_pending;    /* say goodbye once the job has answered */
    struct mailuser_req *req; /* a pending store open (RCPT) */
    struct lmtp_txn *txn;     /* NULL outside a transaction */
    struct lmtp_undot undot;
    uint64_t bdat_left; /* bytes of the current chunk still to read */
    bool bdat_last;
    bool bdat_discard;         /* chunk read and dropped (refused BDAT) */
    enum lmtp_phase bdat_prev; /* phase to return to after a dropped chunk */
    const char *bdat_reply;    /* reply for a refused chunk */
    /* the recipient being looked up */
    char rcpt_addr[LMTP_PATH_MAX + 1];
    char rcpt_detail[STORAGE_MBOX_NAME_MAX + 1];
    struct auth_account rcpt_acct;
    char rcpt_shared_owner[AUTH_ADDR_MAX]; /* the detail names this owner's folder */
};

/* Replies and the bad-command counter. */
void lmtp_reply(struct lmtp_session *s, const char *line);
void lmtp_bad(struct lmtp_session *s, const char *line);
/* Ends the session after its last reply: an open transaction is dropped
 * (none of it was acknowledged), the connection closes once the output is
 * out. */
void lmtp_end_session(struct lmtp_session *s);
/* A pool job of this session started (busy, input paused) / finished. */
void lmtp_wait(struct lmtp_session *s, struct proto_job *j);
void lmtp_resume(struct lmtp_session *s);

/* A command of the table in lmtp_session.c; arg is what follows the verb
 * and a space. */
typedef void lmtp_cmd_fn(struct lmtp_session *s, const char *arg, size_t len);

/* Commands (lmtp_cmd.c). */
lmtp_cmd_fn lmtp_cmd_lhlo, lmtp_cmd_mail, lmtp_cmd_rcpt, lmtp_cmd_rset, lmtp_cmd_vrfy;
/* Ends the transaction (RSET, QUIT, close, after delivery). */
void lmtp_end_txn(struct lmtp_session *s);

/* Message bodies (lmtp_deliver.c). */
lmtp_cmd_fn lmtp_cmd_data, lmtp_cmd_bdat;
/* Consumes body bytes from the line buffer; returns false when it must
 * wait (pool busy) or has nothing to read. */
bool lmtp_body_input(struct lmtp_session *s);

/* Audit lines (lmtp_audit.c): a recipient's outcome after the message
 * (code "250 2.0.0", "552 5.2.2", ...), or a recipient refused at RCPT. */
void lmtp_audit_rcpt(struct lmtp_session *s, const struct lmtp_txn *t, const struct lmtp_rcpt *r,
                     const char *code);
void lmtp_audit_refused(struct lmtp_session *s, const char *addr, const char *code);

#endif
