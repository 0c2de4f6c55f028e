/* mbox files (RFC 4155 and its dialects), read for coffrectl import
 * --from-mbox: the split into messages, the From_ quoting undone, the
 * mailer's status headers turned into flags. Pure functions over a
 * buffer, each pass linear in its length. */
#ifndef COFFRE_MBOX_H
#define COFFRE_MBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mbox_format {
    MBOX_AUTO,
    MBOX_RD,  /* body lines ">*From " quoted with one more '>' (mboxrd) */
    MBOX_O,   /* only "From " quoted to ">From " (mboxo): ">From " unquoted */
    MBOX_CL2, /* Content-Length frames each body, nothing quoted (mboxcl2) */
};

/* One message as it lies in the file: its From_ line (without "From "
 * and the line end) and the bytes after it up to the next From_ line,
 * less the empty line that separates them. */
struct mbox_msg {
    const char *from;
    size_t from_len;
    const char *p;
    size_t len;
};

/* Which format p[0..len) is in: MBOX_CL2 when every message has a
 * Content-Length that ends its body exactly at the next From_ line (or
 * the end), else MBOX_RD (mboxo reads the same unless a line starts with
 * ">>From "). */
enum mbox_format mbox_detect(const char *p, size_t len);

/* Calls cb for each message of p[0..len) in fmt (not MBOX_AUTO); cb
 * returning non-zero stops (and is returned). Bytes before the first
 * From_ line (not an mbox) give no message. */
int mbox_split(const char *p, size_t len, enum mbox_format fmt,
               int (*cb)(void *arg, const struct mbox_msg *m), void *arg);

/* What the mailer recorded of a message, from the headers mbox_message
 * removes: Status (R: \Seen), X-Status (A: \Answered, F: \Flagged, T:
 * \Draft, D: \Deleted), X-Keywords (names separated by commas or
 * spaces). */
#define MBOX_KEYWORDS_MAX 64
#define MBOX_KEYWORD_LEN 64
struct mbox_meta {
    unsigned flags; /* STORAGE_FLAG_* values */
    size_t nkeywords;
    char keywords[MBOX_KEYWORDS_MAX][MBOX_KEYWORD_LEN + 1];
};

/* The message m as it was before it went into the mbox, into out
 * (malloc'd, caller frees, *outlen bytes): From_ quoting undone as fmt
 * says, and the headers that are the mbox's rather than the message's
 * removed (Status, X-Status, X-Keywords, X-UID, X-IMAP, X-IMAPbase, and
 * in mboxcl2 Content-Length) and read into *meta. 0, or -1 when out of
 * memory. */
int mbox_message(const struct mbox_msg *m, enum mbox_format fmt, char **out, size_t *outlen,
                 struct mbox_meta *meta);

/* The date of a From_ line ("sender Www Mmm dd hh:mm:ss yyyy", a zone
 * before or after the year allowed) as unix time, 0 when it has none. */
int64_t mbox_from_date(const char *s, size_t len);

#endif
