/* IMAP session state and what the command files share. */
#ifndef COFFRE_IMAP_PRIVATE_H
#define COFFRE_IMAP_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "protocol/linebuf.h"
#include "protocol/sasl.h"
#include "server/conn.h"

enum imap_state {
    IMAP_NOTAUTH = 1 << 0,
    IMAP_AUTH = 1 << 1,
    IMAP_SELECTED = 1 << 2,
    IMAP_LOGOUT = 1 << 3,
};
#define IMAP_ANY (IMAP_NOTAUTH | IMAP_AUTH | IMAP_SELECTED)

#define IMAP_TAG_MAX 64

struct imap_session {
    struct conn *c;
    enum imap_state state;
    struct linebuf in;

    /* the command being assembled: its lines and literals */
    char *cmd;
    size_t cmd_len, cmd_cap;
    uint64_t literal_left; /* bytes of a literal still to read into cmd */

    char tag[IMAP_TAG_MAX];
    bool busy;             /* a command waits for the thread pool */
    struct auth_login *login;
    bool sasl_active;
    struct proto_sasl sasl;
    unsigned bad_count;

    char user[AUTH_ADDR_MAX];
    int64_t account_id;
};

/* Argument reader over an assembled command (literals inline). */
struct imap_args {
    const char *p, *end;
};

enum { IMAP_ARG_OK = 0, IMAP_ARG_END = 1, IMAP_ARG_BAD = -1 };

/* Skips one SP; IMAP_ARG_BAD if the next byte is not SP. */
int imap_args_sp(struct imap_args *a);
/* atom (RFC 3501 ATOM-CHAR run) */
int imap_args_atom(struct imap_args *a, const char **s, size_t *len);
/* astring: atom, quoted string (escapes resolved into out) or literal.
 * out/outcap receive the value; *len its length. */
int imap_args_astring(struct imap_args *a, char *out, size_t outcap, size_t *len);
bool imap_args_at_end(const struct imap_args *a);

/* Replies. */
void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void imap_bad(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The capability list for the current state (no leading "CAPABILITY "). */
const char *imap_capabilities(struct imap_session *s);

/* Continue reading commands (after an async command completed). */
void imap_resume(struct imap_session *s);

/* Command handlers: args point just after the command name. */
typedef void imap_cmd_fn(struct imap_session *s, struct imap_args *args);
imap_cmd_fn imap_cmd_capability, imap_cmd_noop, imap_cmd_logout, imap_cmd_starttls,
    imap_cmd_login, imap_cmd_authenticate;

/* The SASL continuation line for AUTHENTICATE. */
void imap_auth_sasl_line(struct imap_session *s, const char *line, size_t len);
void imap_auth_cancel(struct imap_session *s);

#endif
