/* coffrectl's IMAP client, for importing from another server
 * (`coffrectl import --from-imap`). Blocking sockets and GnuTLS: coffrectl
 * is not the daemon and has no loop to keep free.
 *
 * The source server is not trusted, so its responses go through a reader
 * that is linear and bounded: each byte is looked at once, a response's
 * tokens, nesting and non-literal bytes are capped, and literals larger
 * than the inline cap are never kept by the reader: they are streamed in
 * chunks to a sink chosen by the caller (which keeps a message body up to
 * its own cap and drops the rest). Reader: imapc_parse.c; connection,
 * TLS and commands: imapc.c. */
#ifndef COFFRE_IMAPC_H
#define COFFRE_IMAPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- response reader (imapc_parse.c) ---- */

enum imapc_tok_type {
    IMAPC_ATOM,       /* atom, number, NIL, tag, "*", "+", BODY[...]<n> */
    IMAPC_STRING,     /* quoted string or inline literal, unescaped */
    IMAPC_STREAMED,   /* literal handed to the sink; len is its size */
    IMAPC_OPEN,       /* ( */
    IMAPC_CLOSE,      /* ) */
    IMAPC_CODE_OPEN,  /* [ of a response code after OK/NO/BAD/BYE/PREAUTH */
    IMAPC_CODE_CLOSE, /* its ] */
    IMAPC_TEXT,       /* human-readable text to the end of the line */
};

struct imapc_tok {
    uint8_t type;
    uint32_t depth;  /* parentheses around it */
    size_t off, len; /* in the reader's arena, NUL-terminated there */
};

/* Receives streamed literals: first with p == NULL and n the literal's size
 * (tok is its token's index, so r->toks[tok - 1] is what precedes it), then
 * the bytes in chunks. Non-zero stops the reader with an error. */
typedef int (*imapc_sink_fn)(void *arg, size_t tok, const char *p, uint64_t n);

#define IMAPC_INBUF 16384
#define IMAPC_ERR_MAX 160

struct imapc_reader {
    /* input: returns bytes read, 0 at end of stream, < 0 on error */
    ssize_t (*read)(void *arg, char *buf, size_t cap);
    void *rarg;
    /* limits, set by imapc_reader_init */
    size_t arena_max;   /* bytes of one response outside streamed literals */
    size_t inline_max;  /* literals up to this size are kept in the arena */
    unsigned depth_max; /* parenthesized list nesting */
    size_t toks_max;
    /* streamed literals go here when set; otherwise a literal over
     * inline_max is an error */
    imapc_sink_fn sink;
    void *sarg;

    /* the last response read */
    struct imapc_tok *toks;
    size_t ntoks;
    char *arena;
    size_t alen;

    char in[IMAPC_INBUF];
    size_t ipos, ilen;
    bool failed;
    char err[IMAPC_ERR_MAX];
};

/* Allocates the token array and arena (arena_max bytes). -1 on no memory. */
int imapc_reader_init(struct imapc_reader *r, size_t arena_max, size_t inline_max,
                      unsigned depth_max);
void imapc_reader_free(struct imapc_reader *r);
/* Reads one whole response (a line with its literals). 0, or -1 with
 * r->err set; after an error the reader stays failed. */
int imapc_read_response(struct imapc_reader *r);
/* Bytes received but not yet parsed (must be 0 when TLS starts). */
size_t imapc_reader_pending(const struct imapc_reader *r);

/* Token helpers; i past the end gives NULL / false. */
const char *imapc_tok_str(const struct imapc_reader *r, size_t i);           /* borrowed */
bool imapc_tok_is(const struct imapc_reader *r, size_t i, const char *atom); /* case-insensitive */
/* Index just past the list or token starting at i. */
size_t imapc_tok_skip(const struct imapc_reader *r, size_t i);
/* Unsigned number atom: 0, or -1 when not one / too large for max. */
int imapc_tok_u64(const struct imapc_reader *r, size_t i, uint64_t max, uint64_t *out);

/* ---- connection (imapc.c) ---- */

struct imapc;

struct imapc_opts {
    const char *url;      /* imaps://host[:port] or imap://host[:port] (STARTTLS) */
    const char *user;     /* source login */
    const char *password; /* borrowed */
    const char *ca_file;  /* NULL: the system trust store */
    unsigned timeout_ms;  /* each read and write */
    size_t arena_max, inline_max;
    unsigned depth_max;
};

/* Connects, starts TLS (verifying the certificate and the host name), reads
 * the capabilities and logs in (AUTHENTICATE PLAIN, else LOGIN). NULL with
 * the reason in err. */
struct imapc *imapc_connect(const struct imapc_opts *o, char *err, size_t errlen);
void imapc_close(struct imapc *c); /* LOGOUT when still usable */

/* Capabilities after login, upper case. */
bool imapc_has(const struct imapc *c, const char *cap);

/* Called for each untagged response of a command: toks[0] is "*". Non-zero
 * stops reading the command with an error. */
typedef int (*imapc_untagged_fn)(void *arg, const struct imapc_reader *r);

enum { IMAPC_OK = 0, IMAPC_NO = 1, IMAPC_BAD = 2, IMAPC_EIO = -1 };

/* Sends one command (the tag is added; `cmd` holds no CRLF) and reads up to
 * its tagged reply, calling cb for untagged responses. IMAPC_OK/NO/BAD, the
 * reply's text in err; IMAPC_EIO when the connection failed (reason in
 * err): the connection is then unusable. sink (may be NULL) receives
 * literals over inline_max during this command. */
int imapc_cmd(struct imapc *c, const char *cmd, imapc_untagged_fn cb, void *arg, imapc_sink_fn sink,
              void *sarg, char *err, size_t errlen);
/* Like imapc_cmd with a mailbox name argument: `fmt` holds one "%s" where
 * the name goes as an IMAP string. */
int imapc_cmd_mbox(struct imapc *c, const char *fmt, const char *name, imapc_untagged_fn cb,
                   void *arg, char *err, size_t errlen);

#endif
