/* POP3 internals shared by the files of protocol/pop3/: the session, the
 * maildrop snapshot, and the maildrop back end (storage in coffred, a
 * stand-in in the fuzz target). Not for other modules. */
#ifndef COFFRE_POP3_INT_H
#define COFFRE_POP3_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "protocol/linebuf.h"
#include "protocol/sasl.h"
#include "server/base/conn.h"

enum pop3_state { POP3_AUTHORIZATION = 1, POP3_TRANSACTION = 2, POP3_QUIT = 4 };

/* Bytes of a message read per back-end call while RETR/TOP streams. */
#define POP3_CHUNK (64u * 1024)

/* One message of the snapshot taken at login. */
struct pop3_msg {
    uint32_t uid;
    uint64_t size; /* RFC 822 size: exactly what RETR sends before the dot-stuffing */
    bool deleted;  /* DELE in this session */
    bool seen;     /* RETR'd: \Seen is set at UPDATE */
};

/* The RETR/TOP in progress. */
struct pop3_xfer {
    bool active;
    bool started;       /* +OK sent */
    bool top;           /* TOP: stop after `lines` body lines */
    bool wait_drain;    /* next read waits for the output to drain */
    bool at_bol;        /* the next byte starts a line */
    bool in_body;       /* the blank line after the header was sent */
    bool line_nonempty; /* the current line has a byte other than CR/LF */
    size_t idx;         /* message index in the snapshot */
    uint64_t lines;     /* TOP's n */
    uint64_t body_lines;
};

struct pop3_session {
    struct conn *c;
    enum pop3_state state;
    struct linebuf in;
    bool busy; /* a login or a back-end call runs: input waits */
    struct auth_login *login;
    bool sasl_active;
    struct proto_sasl sasl;
    char user[AUTH_ADDR_MAX * 2]; /* from USER, until PASS */
    size_t user_len;
    bool have_user;
    unsigned bad_count;
    int64_t account_id;
    char address[AUTH_ADDR_MAX];
    bool locked; /* holds the maildrop lock of account_id */

    /* the command in progress for the metrics (metrics.h): its start (0:
     * not timed) and row (or METRICS_CMD_UNKNOWN); the login's mechanism */
    uint64_t metrics_t0;
    unsigned metrics_cmd;
    enum metrics_mech login_mech;
    uint64_t login_t0; /* uv_now when the login began: mailuser_unblock */

    /* TRANSACTION: the snapshot */
    struct pop3_msg *msgs;
    size_t nmsgs;
    uint32_t uidvalidity;
    struct pop3_xfer xfer;
    char *xbuf; /* dot-stuffed output of one chunk (2 * POP3_CHUNK + 8) */

    void *store; /* back-end state */
};

/* The maildrop back end. Calls that return 0 answer later, on the loop, with
 * the matching pop3_*_done() unless pop3_store->cancel() came first; -1
 * means nothing was started. */
struct pop3_store {
    /* Opens the maildrop of acct and takes the snapshot. */
    int (*open)(struct pop3_session *s, const struct auth_account *acct);
    /* Reads the next chunk of message uid; first = from its start. */
    int (*read)(struct pop3_session *s, uint32_t uid, bool first);
    /* UPDATE: \Seen on seen[], then expunges deleted[] (one call each). */
    int (*update)(struct pop3_session *s, const uint32_t *seen, size_t nseen,
                  const uint32_t *deleted, size_t ndeleted);
    /* Cancels the pending call, if any. */
    void (*cancel)(struct pop3_session *s);
    /* Frees the back-end state (after cancel). */
    void (*release)(struct pop3_session *s);
};

/* The back end in use: storage by default; the fuzz target swaps it. */
extern const struct pop3_store *pop3_store;
extern const struct pop3_store pop3_store_storage;

/* Results from the back end. err is 0 or a STORAGE_E_* code. msgs is
 * malloc'd and handed over; buf is borrowed for the call. */
void pop3_open_done(struct pop3_session *s, int err, struct pop3_msg *msgs, size_t n,
                    uint32_t uidvalidity);
void pop3_read_done(struct pop3_session *s, int err, const char *buf, size_t len, bool eof);
void pop3_update_done(struct pop3_session *s, int err, size_t expunged);

/* One POP3 session per maildrop in this process (RFC 1939's exclusive
 * lock). pop3_lock returns false when another session holds it. */
bool pop3_lock(int64_t account_id);
void pop3_unlock(int64_t account_id);

/* pop3_session.c */
void pop3_err(struct pop3_session *s, const char *msg); /* -ERR, counted as a bad command */
void pop3_resume(struct pop3_session *s);               /* busy ended: go on with input */

/* A command of the table in pop3_session.c; arg is what follows the
 * command name and a space. */
typedef void pop3_cmd_fn(struct pop3_session *s, const char *arg, size_t len);

/* pop3_cmd.c: TRANSACTION commands */
pop3_cmd_fn pop3_cmd_stat, pop3_cmd_list, pop3_cmd_uidl, pop3_cmd_retr, pop3_cmd_top, pop3_cmd_dele,
    pop3_cmd_rset;
void pop3_cmd_quit_update(struct pop3_session *s);
void pop3_xfer_drain(struct pop3_session *s);

#endif
